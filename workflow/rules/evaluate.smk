rule predict:
    input:
        policy=str(LP.policy_ref("{variant}", "{seed}")),
        manifest=str(LP.dataset_manifest("{dataset}")),
        models=str(LP.models_manifest()),
    output:
        predictions=str(LP.predictions("{variant}", "{dataset}", "{seed}", "{checkpoint}")),
        environment=str(LP.prediction_environment("{variant}", "{dataset}", "{seed}", "{checkpoint}")),
    params:
        settings=stage_param("predict", "variant", "dataset"),
        code=code("launch", "predict"),
    log: str(LP.logs("predict", "{variant}-seed{seed}-{checkpoint}-{dataset}"))
    threads: cpus("predict")
    resources: **resources("predict")
    conda: PREDICT_ENV
    shell: "{RISE_CLI} --preset {wildcards.preset}{OVERRIDES_ARG} --log {log} launch predict --variant {wildcards.variant} --seed {wildcards.seed} "
           "--checkpoint {wildcards.checkpoint} --eval-set {wildcards.dataset}"


rule evaluate:
    input:
        predictions=str(LP.predictions("{variant}", "{dataset}", "{seed}", "{checkpoint}")),
        manifest=str(LP.dataset_manifest("{dataset}")),
    output:
        metrics=str(LP.metrics("{variant}", "{dataset}", "{seed}", "{checkpoint}")),
        samples=str(LP.sample_scores("{variant}", "{dataset}", "{seed}", "{checkpoint}")),
        provenance=str(LP.metrics_provenance("{variant}", "{dataset}", "{seed}", "{checkpoint}")),
        families=str(LP.family_metrics("{variant}", "{dataset}", "{seed}", "{checkpoint}")),
    params:
        settings=stage_param("evaluate"),
        code=code("evaluate"),
    log: str(LP.logs("evaluate", "{variant}-seed{seed}-{checkpoint}-{dataset}"))
    threads: cpus("evaluate")
    resources: **resources("evaluate")
    conda: ENV
    shell: "{RISE_CLI} --preset {wildcards.preset}{OVERRIDES_ARG} --log {log} evaluate --variant {wildcards.variant} --seed {wildcards.seed} "
           "--checkpoint {wildcards.checkpoint} --eval-set {wildcards.dataset}"


rule table:
    input: table_inputs
    output:
        csv=str(LP.table("{table}")),
        markdown=str(LP.table("{table}").with_suffix(".md")),
        # the report shows the table itself (paper, ours, difference), not a CSV to download
        html=report(str(LP.table("{table}").with_suffix(".html")), caption="../report/table.rst", category="Tables",
                    labels={"preset": "{preset}", "table": "{table}"}),
        metrics=str(LP.table("{table}").with_suffix(".json")),  # what `dvc metrics show` reads
    params:
        caption=lambda w: settings_of(w).tables[w.table]["caption"],
        settings=lambda w: {"table": settings_of(w).tables[w.table], "seeds": settings_of(w).train.seeds},
        code=code("table", "show"),
    log: str(LP.logs("table", "{table}"))
    conda: ENV
    shell: "{RISE_CLI} --preset {wildcards.preset}{OVERRIDES_ARG} --log {log} table --name {wildcards.table} && "
           "{RISE_CLI} --preset {wildcards.preset}{OVERRIDES_ARG} --log {log} show --write --name {wildcards.table}"


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


rule draws_table:
    # the claim over the preset's pretraining draws (`draws` in params.yaml): every draw's table,
    # per draw and across draws (rise/toy/draws.py)
    input: draws_inputs
    output:
        csv=str(L.draws_table("{table}")),
        comparisons=str(L.draws_table("{table}").with_suffix(".comparisons.csv")),
        markdown=str(L.draws_table("{table}").with_suffix(".md")),
        metrics=str(L.draws_table("{table}").with_suffix(".json")),
    params:
        settings=lambda w: {"draws": S.draws, "tables": S.draw_tables},
        code=code("draws"),
    log: log_file("draws", "{table}")
    conda: ENV
    shell: "{RISE} --log {log} draws --name {wildcards.table}"


rule all_draws:
    # every table of `draws.tables` over the draws
    input: [str(L.draws_table(t)) for t in S.draw_tables]


rule judges_table:
    # the rows that read R_sem against the judge's quality (`judges` in params.yaml): each weaker
    # CLIP's table against the preset's own Format-only and base (rise/toy/judges.py)
    wildcard_constraints:
        table=S.judge_table or "NONE",
    input: judges_inputs
    output:
        csv=str(L.judges_table("{table}")),
        figure=report(str(L.judges_table("{table}").with_suffix(".png")), caption="../report/judges.rst",
                      category="Toy claim"),
        markdown=str(L.judges_table("{table}").with_suffix(".md")),
        metrics=str(L.judges_table("{table}").with_suffix(".json")),
    params:
        settings=lambda w: {"judges": S.judges, "table": S.judge_table, "variants": S.judge_variants},
        code=code("judges"),
    log: log_file("judges", "{table}")
    conda: ENV
    shell: "{RISE} --log {log} judges"
