"""Planning the DAG from the settings: which metrics files each table and sweep reads (`Need`), and
what each stage's output depends on (`stage_settings`). Both engines plan from these
(workflow/rules/common.smk, rise/dvc_pipeline.py), so they plan the same jobs."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from rise.config import Settings
from rise.layout import FINAL


@dataclass(frozen=True)
class Need:
    """One metrics file a table or sweep reads: a variant's run (seed) at a checkpoint, on a dataset."""

    variant: str
    seed: int
    checkpoint: str
    dataset: str

    @property
    def key(self) -> str:
        """The job's name in both engines (DVC stage item, log file)."""
        return f"{self.variant}-seed{self.seed}-{self.checkpoint}-{self.dataset}"


def table_needs(settings: Settings, table: str) -> list[Need]:
    """Every metrics file a table reads: each row's runs (seeds) at the final checkpoint, or at
    every checkpoint and on the selection dataset too when the table picks the best one."""
    select = settings.table_selection(table)
    sets = settings.table_datasets(table) + ([select] if select and select not in settings.table_datasets(table) else [])
    needs = []
    for row in settings.tables[table]["rows"]:
        v = row["variant"]
        for seed in settings.seeds(v):
            for ckpt in (settings.checkpoints(v) if select else [FINAL]):
                needs += [Need(v, seed, ckpt, d) for d in sets]
    return needs


def sweep_datasets(settings: Settings, variant: str) -> list[str]:
    """The datasets of every table that has the variant in a row."""
    return list(dict.fromkeys(d for name, t in settings.tables.items() if any(r["variant"] == variant for r in t["rows"])
                              for d in settings.table_datasets(name)))


def sweep_needs(settings: Settings, variant: str) -> list[Need]:
    """A checkpoint sweep: every saved checkpoint of every seed on every dataset of the variant's tables."""
    return [Need(variant, seed, ckpt, d) for seed in settings.seeds(variant) for ckpt in settings.checkpoints(variant)
            for d in sweep_datasets(settings, variant)]


def all_needs(settings: Settings) -> list[Need]:
    """What the tables, the listed sweeps and the figure read, each once, in a stable order."""
    needs = [n for t in settings.tables for n in table_needs(settings, t)]
    needs += [n for v in settings.sweeps for n in sweep_needs(settings, v)]
    q = settings.figures.get("qualitative")
    needs += [Need(v, settings.seeds(v)[0], FINAL, q["dataset"]) for v in (q["variants"] if q else [])]
    return list(dict.fromkeys(needs))


def _train_parts(settings: Settings, variant: str, dataset: str | None, seed: int | None) -> dict:
    v = settings.variants[variant]  # a run depends on its own seed, not on the list of seeds
    train = {k: val for k, val in dataclasses.asdict(settings.train).items() if k != "seeds"} if v.train else None
    return dict(variant=v.as_dict(), train=train, image=settings.image, policy=settings.policy_ref(variant),
                clip=settings.models["clip"] if v.train else None,
                train_seed=settings.seeds(variant)[0] if seed is None else seed)


def _predict_parts(settings: Settings, variant: str, dataset: str | None, seed: int | None) -> dict:
    v = settings.variants[variant]
    return dict(predict=dataclasses.asdict(settings.predict), image=settings.image, sam2=settings.models["sam2"],
                cot=v.cot, points=v.points, answer=settings.evaluate.get("answer"),
                eval_prompt=settings.datasets[dataset].get("eval_prompt", "segzero") if dataset else None)


def _pretrain_parts(settings: Settings, model: str, dataset: str | None, seed: int | None) -> dict:
    ref = {"clip": settings.models["clip"], "sam2": settings.models["sam2"], "policy": settings.models["policies"]}
    pretrain = settings.pretrain or {}
    return dict(pretrain=pretrain.get(model), pretrain_seed=pretrain.get("seed"), model=ref[model], image=settings.image)


# What each stage's output depends on beside the preset: stage -> (settings, name, dataset, seed) -> parts.
# `name` is the stage's wildcard: a variant (train, predict), dataset (data), train set (sample) or model (pretrain).
STAGE_PARTS = {
    "train": _train_parts,
    "predict": _predict_parts,
    "evaluate": lambda settings, name, dataset, seed: dict(evaluate=settings.evaluate),
    "data": lambda settings, name, dataset, seed: dict(dataset=settings.datasets[name]),
    "sample": lambda settings, name, dataset, seed: dict(train_set=settings.train_sets[name]),
    "pretrain": _pretrain_parts,
    "models": lambda settings, name, dataset, seed: dict(models=settings.models, image=settings.image,
                                                         warm_up_steps=settings.warm_up_steps),
}


def stage_settings(settings: Settings, stage: str, name: str | None = None, dataset: str | None = None,
                   seed: int | None = None) -> str:
    """A canonical JSON string of what a stage's output depends on (Snakemake reruns when it changes)."""
    parts: dict[str, Any] = {"preset": settings.preset, "seed": settings.seed}
    if settings.cpu_kernels != "native":  # other kernels, other bits (rise/kernels.py)
        parts["cpu_kernels"] = settings.cpu_kernels
    parts.update(STAGE_PARTS[stage](settings, name, dataset, seed))
    return json.dumps(parts, sort_keys=True)
