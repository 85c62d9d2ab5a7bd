rule train:
    # GRPO training of a trained variant: a GPU job (several GPUs under `accelerate launch`, rise/launch.py)
    wildcard_constraints:
        variant="|".join(TRAINED) or "NONE",
    input: unpack(train_inputs)
    output:
        policy=str(L.policy_ref("{variant}")),
        curves=str(L.train_curves("{variant}")),
        figure=report(str(L.train_curves("{variant}").with_suffix(".png")), caption="../report/curves.rst",
                      category="Training curves", labels={"variant": "{variant}"}),
    params:
        settings=lambda w: S.stage_settings("train", w.variant),
    log: log_file("train", "{variant}")
    threads: cpus("train")
    resources: **resources("train")
    conda: ENV
    shell: "{RISE} --log {log} launch train --variant {wildcards.variant}"


rule base_policy:
    # a zero-shot variant only writes a reference to the base policy (cheap: a local rule)
    wildcard_constraints:
        variant="|".join(UNTRAINED) or "NONE",
    input: unpack(train_inputs)
    output:
        policy=str(L.policy_ref("{variant}")),
        curves=str(L.train_curves("{variant}")),  # no steps: an empty curve
    params: settings=lambda w: S.stage_settings("train", w.variant)
    log: log_file("train", "{variant}")
    conda: ENV
    shell: "{RISE} --log {log} train --variant {wildcards.variant}"
