# The toy world's pretraining stages (docs/toy.md): a preset with `pretrain` trains its CLIP, SAM2
# and policy from scratch here, each where `presets.<preset>.models` names it, with its held-out
# report beside it (<model>.report.json). The three are independent and run side by side; each
# pretraining draw of the preset (`draws`) has its own three (rules pretrain_<model>_<draw>).
for preset, made_here in PRETRAINED.items():
    for stage, made in made_here.items():

        rule:
            name: f"pretrain_{stage}" if preset == PRESET else f"pretrain_{stage}_{preset.replace('-', '_')}"
            output:
                model=directory(made["model"]) if made["folder"] else made["model"],
                report=report(made["report"], caption="../report/pretrain.rst", category="Toy pretraining",
                              labels={"model": stage, "preset": preset}),
            params:
                settings=readable(stage_settings(SETTINGS[preset], "pretrain", stage)),
                code=code("pretrain"),
                # (a shell command is formatted, even evaluated, when the job runs: after the loop has ended)
                model=stage,
                preset=preset,
            log: str(SETTINGS[preset].layout.logs("pretrain", stage))
            threads: cpus("pretrain")
            resources: **resources("pretrain")
            conda: ENV
            shell: "{RISE_CLI} --preset {params.preset}{OVERRIDES_ARG} --log {log} pretrain --model {params.model}"
