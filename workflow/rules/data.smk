rule build_models:
    # builds the demo's models, or checks the preset's (pretrained by stages, or Hub ids / paths)
    input: [m["model"] for m in PRETRAINED.values()]
    output: str(L.models_manifest())
    params:
        settings=readable(stage_settings(S, "models")),
        code=code("build-models"),
    log: log_file("build_models", PRESET)
    threads: cpus("build_models")
    resources: **resources("build_models")
    conda: ENV
    shell: "{RISE} --log {log} build-models"


rule prepare_data:
    output: str(L.dataset_manifest("{dataset}"))
    params:
        settings=lambda w: readable(stage_settings(S, "data", w.dataset)),
        code=code("prepare-data"),
    log: log_file("prepare_data", "{dataset}")
    threads: cpus("prepare_data")
    resources: **resources("prepare_data")
    conda: ENV
    shell: "{RISE} --log {log} prepare-data --dataset {wildcards.dataset}"


rule sample_train:
    input: lambda w: str(L.dataset_manifest(S.train_sets[w.train_set]["dataset"]))
    output: str(L.train_manifest("{train_set}"))
    params:
        settings=lambda w: readable(stage_settings(S, "sample", w.train_set)),
        code=code("sample-train"),
    log: log_file("sample_train", "{train_set}")
    conda: ENV
    shell: "{RISE} --log {log} sample-train --train-set {wildcards.train_set}"
