rule train:
    input: unpack(train_inputs)
    output: str(L.policy_ref("{variant}"))
    params:
        settings=lambda w: S.stage_settings("train", w.variant),
        launcher=train_launcher,
    log: log_file("train", "{variant}")
    resources:
        # a zero-shot variant only writes a reference to the base policy: no GPU for it
        gpu=train_gpus,
        runtime=lambda w: 24 * 60 if GPU and S.variants[w.variant].train else 10,
        mem_mb=lambda w: 64000 if GPU and S.variants[w.variant].train else 4000,
    shell: "{params.launcher} --log {log} train --variant {wildcards.variant}"
