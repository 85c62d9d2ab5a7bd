rule train:
    # GRPO training of one run (seed) of a trained variant: a GPU job (several GPUs under
    # `accelerate launch`, rise/launch.py); it keeps a checkpoint every train.save_steps
    wildcard_constraints:
        variant="|".join(TRAINED) or "NONE",
    input: unpack(train_inputs)
    output:
        policy=str(LP.policy_ref("{variant}", "{seed}")),
        curves=str(LP.train_curves("{variant}", "{seed}")),
        figure=report(str(LP.train_curves("{variant}", "{seed}").with_suffix(".png")), caption="../report/curves.rst",
                      category="Training curves", labels={"preset": "{preset}", "variant": "{variant}", "seed": "{seed}"}),
    params:
        settings=lambda w: readable(stage_settings(settings_of(w), "train", w.variant, seed=int(w.seed))),
        code=code("launch", "train"),
    log: str(LP.logs("train", "{variant}-seed{seed}"))
    # training runs are the long jobs: started first, the short predictions fill the gaps after
    priority: 1
    threads: cpus("train")
    resources: **resources("train")
    conda: TRAIN_ENV
    shell: "{RISE_CLI} --preset {wildcards.preset}{OVERRIDES_ARG} --log {log} launch train --variant {wildcards.variant} --seed {wildcards.seed}"


rule base_policy:
    # a zero-shot variant only writes a reference to the base policy (cheap: a local rule)
    wildcard_constraints:
        variant="|".join(UNTRAINED) or "NONE",
    input: unpack(train_inputs)
    output:
        policy=str(LP.policy_ref("{variant}", "{seed}")),
        curves=str(LP.train_curves("{variant}", "{seed}")),  # no steps: an empty curve
    params:
        settings=lambda w: readable(stage_settings(settings_of(w), "train", w.variant, seed=int(w.seed))),
        code=code("train"),
    log: str(LP.logs("train", "{variant}-seed{seed}"))
    conda: ENV
    shell: "{RISE_CLI} --preset {wildcards.preset}{OVERRIDES_ARG} --log {log} train --variant {wildcards.variant} --seed {wildcards.seed}"
