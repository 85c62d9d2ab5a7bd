rule build_models:
    # builds the demo's models, or checks the preset's (pretrained by stages, or Hub ids / paths)
    input: lambda w: [m["model"] for m in pretrained_models(settings_of(w), every=True).values()] if settings_of(w).pretrain else []
    output: str(LP.models_manifest())
    params:
        settings=stage_param("models"),
        code=code("build-models"),
    log: str(LP.logs("build_models", "{preset}"))
    threads: cpus("build_models")
    resources: **resources("build_models")
    conda: ENV
    shell: "{RISE_CLI} --preset {wildcards.preset}{OVERRIDES_ARG} --log {log} build-models"


rule prepare_data:
    output: str(LP.dataset_manifest("{dataset}"))
    params:
        settings=stage_param("data", "dataset"),
        code=code("prepare-data"),
    log: str(LP.logs("prepare_data", "{dataset}"))
    threads: cpus("prepare_data")
    resources: **resources("prepare_data")
    conda: ENV
    shell: "{RISE_CLI} --preset {wildcards.preset}{OVERRIDES_ARG} --log {log} prepare-data --dataset {wildcards.dataset}"


rule sample_train:
    input: lambda w: str(settings_of(w).layout.dataset_manifest(settings_of(w).train_sets[w.train_set]["dataset"]))
    output: str(LP.train_manifest("{train_set}"))
    params:
        settings=stage_param("sample", "train_set"),
        code=code("sample-train"),
    log: str(LP.logs("sample_train", "{train_set}"))
    conda: ENV
    shell: "{RISE_CLI} --preset {wildcards.preset}{OVERRIDES_ARG} --log {log} sample-train --train-set {wildcards.train_set}"
