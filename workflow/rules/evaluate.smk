rule predict:
    input:
        policy=str(L.policy_ref("{variant}", "{seed}")),
        manifest=str(L.dataset_manifest("{dataset}")),
        models=str(L.models_manifest()),
    output:
        predictions=str(L.predictions("{variant}", "{dataset}", "{seed}", "{checkpoint}")),
        environment=str(L.prediction_environment("{variant}", "{dataset}", "{seed}", "{checkpoint}")),
    params:
        settings=lambda w: readable(stage_settings(S, "predict", w.variant, w.dataset)),
        code=code("launch", "predict"),
    log: log_file("predict", "{variant}-seed{seed}-{checkpoint}-{dataset}")
    threads: cpus("predict")
    resources: **resources("predict")
    conda: PREDICT_ENV
    shell: "{RISE} --log {log} launch predict --variant {wildcards.variant} --seed {wildcards.seed} "
           "--checkpoint {wildcards.checkpoint} --eval-set {wildcards.dataset}"


rule evaluate:
    input:
        predictions=str(L.predictions("{variant}", "{dataset}", "{seed}", "{checkpoint}")),
        manifest=str(L.dataset_manifest("{dataset}")),
    output:
        metrics=str(L.metrics("{variant}", "{dataset}", "{seed}", "{checkpoint}")),
        samples=str(L.sample_scores("{variant}", "{dataset}", "{seed}", "{checkpoint}")),
        provenance=str(L.metrics_provenance("{variant}", "{dataset}", "{seed}", "{checkpoint}")),
        families=str(L.family_metrics("{variant}", "{dataset}", "{seed}", "{checkpoint}")),
    params:
        settings=readable(stage_settings(S, "evaluate")),
        code=code("evaluate"),
    log: log_file("evaluate", "{variant}-seed{seed}-{checkpoint}-{dataset}")
    threads: cpus("evaluate")
    resources: **resources("evaluate")
    conda: ENV
    shell: "{RISE} --log {log} evaluate --variant {wildcards.variant} --seed {wildcards.seed} "
           "--checkpoint {wildcards.checkpoint} --eval-set {wildcards.dataset}"


rule table:
    input: table_inputs
    output:
        csv=str(L.table("{table}")),
        markdown=str(L.table("{table}").with_suffix(".md")),
        # the report shows the table itself (paper, ours, difference), not a CSV to download
        html=report(str(L.table("{table}").with_suffix(".html")), caption="../report/table.rst", category="Tables",
                    labels={"table": "{table}"}),
        metrics=str(L.table("{table}").with_suffix(".json")),  # what `dvc metrics show` reads
    params:
        caption=lambda w: S.tables[w.table]["caption"],
        settings=lambda w: {"table": S.tables[w.table], "seeds": S.train.seeds},
        code=code("table", "show"),
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


rule unknown_table:
    # a mistyped or undeclared table target: stop while planning, listing the tables there are
    wildcard_constraints:
        name=r"(?!(?:%s)\.csv$)[^/]+" % "|".join(S.tables),
    input: unknown_table
    output: "results/{name}.csv"
    log: log_file("unknown_table", "{name}")
    conda: ENV
    shell: "false"


rule all_tables:
    input: [str(L.table(t)) for t in S.tables]


rule sweep:
    # gIoU/cIoU of every saved checkpoint of every seed, on every dataset of the variant's tables
    input: sweep_inputs
    output:
        csv=str(L.sweep("{variant}")),
        png=report(str(L.sweep("{variant}").with_suffix(".png")), caption="../report/sweep.rst",
                   category="Checkpoint sweeps", labels={"variant": "{variant}"}),
    params: code=code("sweep")
    log: log_file("sweep", "{variant}")
    conda: ENV
    shell: "{RISE} --log {log} sweep --variant {wildcards.variant}"


rule figure_sweeps:
    # the sweeps listed under `sweeps` on shared axes: held-out gIoU against the GRPO step
    input: [str(L.sweep(v)) for v in S.sweeps]
    output: report(str(L.figure("sweeps")), caption="../report/sweeps.rst", category="Checkpoint sweeps")
    params: code=code("sweep-figure")
    log: log_file("figure", "sweeps")
    conda: ENV
    shell: "{RISE} --log {log} sweep-figure"


rule all_sweeps:
    # the sweeps listed under `sweeps` in params.yaml, and their figure
    input: [str(L.sweep(v)) for v in S.sweeps], str(L.figure("sweeps")) if S.sweeps else []


rule figure_qualitative:
    input:
        lambda w: [str(L.predictions(v, S.figures["qualitative"]["dataset"])) for v in S.figures["qualitative"]["variants"]],
    output: report(str(L.figure("qualitative")), caption="../report/figure.rst", category="Figures")
    params:
        settings=repr(S.figures.get("qualitative")),
        code=code("figure"),
    log: log_file("figure", "qualitative")
    conda: ENV
    shell: "{RISE} --log {log} figure"
