rule train:
    input: unpack(train_inputs)
    output: str(L.policy_ref("{variant}"))
    params: settings=lambda w: S.stage_settings("train", w.variant)
    log: log_file("train", "{variant}")
    resources:
        gpu=GPU,
        runtime=24 * 60 if GPU else 60,
        mem_mb=64000 if GPU else 8000,
    shell: "{RISE} --log {log} train --variant {wildcards.variant}"
