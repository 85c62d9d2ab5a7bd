# The toy world's pretraining stages (docs/toy.md): a preset with `pretrain` trains its CLIP, SAM2
# and policy from scratch here, each where `presets.<preset>.models` names it, with its held-out
# report beside it (<model>.report.json). The three are independent and run side by side.
for stage, made in PRETRAINED.items():

    rule:
        name: f"pretrain_{stage}"
        output:
            model=directory(made["model"]) if made["folder"] else made["model"],
            report=report(made["report"], caption="../report/pretrain.rst", category="Toy pretraining",
                          labels={"model": stage}),
        params:
            settings=readable(stage_settings(S, "pretrain", stage)),
            code=code("pretrain"),
            model=stage,  # (a shell command is formatted when the job runs, after the loop has ended)
        log: log_file("pretrain", stage)
        threads: cpus("pretrain")
        resources: **resources("pretrain")
        conda: ENV
        shell: "{RISE} --log {log} pretrain --model {params.model}"
