"""What a run needs and this machine lacks, found before any long work starts: by `rise check`,
`rise build-models` and Snakemake's onstart (workflow/rules/common.smk)."""
from __future__ import annotations


def preflight(settings, *, need_models: bool = True, check_gpu: bool = True, jobs=None) -> list[str]:
    """What the preset needs and this machine lacks; empty when ready.

    `jobs`: (rule name, wildcards) of the jobs a run is about to execute (Snakemake's onstart), so
    that only what those jobs read is checked; None checks everything the preset names."""
    from rise.build import model_problems
    from rise.data import check_dataset
    from rise.errors import RiseError

    if jobs is None:
        variants, datasets = set(settings.variants), set(settings.datasets)
        trains = predicts = True
    else:
        jobs = [(rule, dict(w)) for rule, w in jobs]
        trained = {w["variant"] for rule, w in jobs if rule == "train"}
        predicted = {w["variant"] for rule, w in jobs if rule == "predict"}
        variants = trained | predicted | {w["variant"] for rule, w in jobs if rule == "base_policy"}
        sets = {w["train_set"] for rule, w in jobs if rule == "sample_train"}
        datasets = ({w["dataset"] for rule, w in jobs if rule in ("prepare_data", "predict")}
                    | {settings.train_sets[t]["dataset"] for t in sets})
        trains, predicts = bool(trained), bool(predicted)
    problems = []
    if settings.device == "cuda" and check_gpu and (trains or predicts):  # a submit host needs no GPU itself
        import torch

        if not torch.cuda.is_available():
            problems.append(f"presets.{settings.preset}.device is 'cuda' but no CUDA GPU is visible "
                            "(run on a GPU node, e.g. with the slurm profile)")
    if need_models and not settings.build_demo_models and not settings.pretrain:  # those are built by stages
        problems += model_problems(settings, policies={settings.variants[v].policy for v in variants},
                                   clip=trains, sam2=predicts)
    for name in settings.datasets:
        if name in datasets:
            try:
                check_dataset(settings, name)
            except RiseError as exc:
                problems.append(str(exc))
    return problems
