"""Measuring GRPO variants in the toy world with the real stages (sample-train, train, predict,
evaluate), each seed in its own run folder, plus the box hit rate per instruction family.

The later workflow wiring replaces this with rules; until then it is how docs/toy.md's GRPO
figures are made: `python -m rise.toy measure --root DIR --seed 0 --variants full_3b,format_only_3b`.
"""
from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path

import numpy as np

from rise.config import load_settings
from rise.contracts import decode_mask, load_eval_manifest, read_jsonl
from rise.errors import ConfigError

log = logging.getLogger(__name__)


def family_scores(settings, variant: str, eval_set: str) -> dict:
    """Per family: gIoU (percent) and hit rate (box IoU with the target's cell >= 0.5)."""
    from rise.toy.policy import box_iou
    from rise.toy.world import CELL

    layout = settings.layout
    gts = {r["sample_id"]: r for r in load_eval_manifest(layout.dataset_manifest(eval_set))}
    ious: dict[str, list[float]] = {}
    for row in csv.DictReader(open(layout.sample_scores(variant, eval_set))):
        ious.setdefault(row["kind"], []).append(float(row["iou"] or 0))
    hits: dict[str, list[bool]] = {}
    for p in read_jsonl(layout.predictions(variant, eval_set)):
        g = gts[p["sample_id"]]
        ys, xs = np.nonzero(decode_mask(g["mask"]))
        r, c = int(ys.mean() // CELL), int(xs.mean() // CELL)
        cell = [c * CELL, r * CELL, (c + 1) * CELL, (r + 1) * CELL]
        hits.setdefault(g["kind"], []).append(bool(p["box"]) and box_iou(p["box"], cell) >= 0.5)
    return {k: {"gIoU": round(100 * float(np.mean(v)), 1), "hit_rate": round(float(np.mean(hits[k])), 3)}
            for k, v in ious.items()}


def training_signal(settings, variant: str, window: int = 10) -> dict:
    """What GRPO saw, from the variant's per-step curve: R_sem in the first and last `window` steps,
    and the share of prompts whose group of generations all scored the same (no advantage)."""
    path = settings.layout.train_curves(variant)
    steps = list(csv.DictReader(open(path))) if path.exists() else []
    if not steps:
        return {}

    def mean(key, part):
        values = [float(r[key]) for r in part if r.get(key) not in (None, "")]
        return round(float(np.mean(values)), 3) if values else None

    head, tail = steps[:window], steps[-window:]
    return {"steps": len(steps), "semantic_first": mean("rewards/semantic/mean", head),
            "semantic_last": mean("rewards/semantic/mean", tail),
            "zero_std_groups_first": mean("frac_reward_zero_std", head),
            "zero_std_groups_last": mean("frac_reward_zero_std", tail),
            "entropy_first": mean("entropy", head), "entropy_last": mean("entropy", tail)}


def summarise(records: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds of each variant's gIoU, cIoU and hit rates."""
    by_variant: dict[str, list[dict]] = {}
    for r in records:
        by_variant.setdefault(r["variant"], []).append(r)
    out = []
    for v, rs in by_variant.items():
        row = {"variant": v, "seeds": len(rs)}
        for key in ("gIoU", "cIoU"):
            values = np.array([r[key] for r in rs], dtype=float)
            row[key] = round(float(values.mean()), 2)
            row[f"{key} std"] = round(float(values.std(ddof=1)), 2) if len(values) > 1 else 0.0
        row["hit_rate"] = {k: round(float(np.mean([r["families"][k]["hit_rate"] for r in rs])), 3)
                           for k in rs[0]["families"]}
        out.append(row)
    return out


def measure(params: str | Path, root: str | Path, seed: int, variants: list[str], *, preset: str = "toy",
            eval_set: str = "reasonseg_test", overrides: dict | None = None) -> list[dict]:
    """Data at the preset's seed (shared by every seed), GRPO at `seed`; returns one record per variant."""
    from rise.evaluate import evaluate
    from rise.predict import predict
    from rise.sampling import sample_train_set
    from rise.data import prepare_dataset
    from rise.train import train_variant

    settings = load_settings(params, preset=preset, root=Path(root))
    unknown = [v for v in variants if v not in settings.variants]
    if unknown:
        raise ConfigError(f"{params}: {unknown} are not variants (known: {sorted(settings.variants)})")
    needed = {eval_set} | {settings.train_sets[settings.variants[v].train_set]["dataset"]
                           for v in variants if settings.variants[v].train}
    for name in sorted(needed):
        if not settings.layout.dataset_manifest(name).exists():
            prepare_dataset(settings, name)
    settings.seed = seed
    settings.train.update(overrides or {})
    settings.train["seeds"], settings.layout.primary_seed = [seed], seed  # GRPO's seed: the run's
    for name in sorted({settings.variants[v].train_set for v in variants if settings.variants[v].train}):
        sample_train_set(settings, name)
    records = []
    for v in variants:
        start = time.perf_counter()
        train_variant(settings, v)
        trained = time.perf_counter() - start
        predict(settings, v, eval_set)
        metrics = json.loads(evaluate(settings, v, eval_set).read_text())
        records.append({"variant": v, "seed": seed, "train": {k: settings.train[k] for k in overrides or {}},
                        "gIoU": round(metrics["gIoU"], 2), "cIoU": round(metrics["cIoU"], 2),
                        "failed_parses": metrics["n_failed_parse"], "train_seconds": round(trained),
                        "families": family_scores(settings, v, eval_set),
                        "signal": training_signal(settings, v)})
        log.info("toy measure: %s", records[-1])
    return records
