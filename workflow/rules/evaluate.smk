rule predict:
    input:
        policy=str(L.policy_ref("{variant}")),
        manifest=str(L.dataset_manifest("{dataset}")),
        models=str(L.models_manifest()),
    output:
        predictions=str(L.predictions("{variant}", "{dataset}")),
        environment=str(L.prediction_environment("{variant}", "{dataset}")),
    params: settings=lambda w: S.stage_settings("predict", w.variant, w.dataset)
    log: log_file("predict", "{variant}-{dataset}")
    threads: cpus("predict")
    resources: **resources("predict")
    conda: ENV
    shell: "{RISE} --log {log} launch predict --variant {wildcards.variant} --eval-set {wildcards.dataset}"


rule evaluate:
    input:
        predictions=str(L.predictions("{variant}", "{dataset}")),
        manifest=str(L.dataset_manifest("{dataset}")),
    output:
        metrics=str(L.metrics("{variant}", "{dataset}")),
        samples=str(L.sample_scores("{variant}", "{dataset}")),
    params: settings=S.stage_settings("evaluate")
    log: log_file("evaluate", "{variant}-{dataset}")
    threads: cpus("evaluate")
    resources: **resources("evaluate")
    conda: ENV
    shell: "{RISE} --log {log} evaluate --variant {wildcards.variant} --eval-set {wildcards.dataset}"


rule table:
    input: table_inputs
    output:
        csv=report(str(L.table("{table}")), caption="../report/table.rst", category="Tables",
                   labels={"table": "{table}"}),
        markdown=str(L.table("{table}").with_suffix(".md")),
    params: caption=lambda w: S.tables[w.table]["caption"]
    log: log_file("table", "{table}")
    conda: ENV
    shell: "{RISE} --log {log} table --name {wildcards.table} && {RISE} --log {log} show --write --name {wildcards.table}"


rule table_alias:
    # results/<table>.csv is the active preset's table; every row names its preset.
    input: str(L.table("{table}"))
    output: "results/{table}.csv"
    log: log_file("table_alias", "{table}")
    conda: ENV
    shell: "cp {input} {output} 2> {log}"


rule all_tables:
    input: [str(L.table(t)) for t in S.tables]


rule figure_qualitative:
    input:
        lambda w: [str(L.predictions(v, S.figures["qualitative"]["dataset"])) for v in S.figures["qualitative"]["variants"]],
    output: report(str(L.figure("qualitative")), caption="../report/figure.rst", category="Figures")
    params: settings=repr(S.figures.get("qualitative"))
    log: log_file("figure", "qualitative")
    conda: ENV
    shell: "{RISE} --log {log} figure"
