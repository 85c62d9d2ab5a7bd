"""Toy research tool: GRPO variants through the real stages (sample-train, train, predict,
evaluate) in a run folder of their own, each seed in ROOT/seed-N, with the box hit rate per
instruction family; prints one record per run, then the mean and standard deviation over seeds.

    python experiments/toy/measure.py --root runs/toy-measure --seeds 0,1,2 --variants full_3b,format_only_3b \
        [--learning-rate X --steps N --temperature T --set KEY=VALUE ...] [--eval-set reasonseg_val]

Seed s here is the workflow's seed s (the training set drawn at the preset's seed, GRPO at s), so a
measured row is the one the table would hold. Recipes are judged on `reasonseg_val` (the default):
the test split is for the tables alone. Settings change only through `load_settings(overrides=...)`.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from rise.config import load_settings, typed_value
from rise.contracts import decode_mask, load_eval_manifest, read_jsonl
from rise.errors import ConfigError, RiseError

log = logging.getLogger("rise.experiments.measure")


def family_scores(settings, variant: str, eval_set: str) -> dict:
    """Per family: gIoU (percent) and hit rate (box IoU with the target's cell >= 0.5)."""
    from rise.toy.policy import box_iou
    from rise.data.toy_world import CELL

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
            eval_set: str = "reasonseg_val", overrides: dict | None = None) -> list[dict]:
    """Data at the preset's seed (shared by every seed), GRPO at `seed`; returns one record per variant."""
    from rise.evaluate import evaluate
    from rise.predict import predict
    from rise.sampling import sample_train_set
    from rise.data import prepare_dataset
    from rise.train import train_variant

    # GRPO's seed is the run's; the data and training sets stay drawn at the preset's top-level seed,
    # as in the workflow
    train = {**(overrides or {}), "seeds": [seed]}  # over the preset's own train overrides
    settings = load_settings(params, preset=preset, root=Path(root),
                             overrides={"presets": {preset: {"overrides": {"train": train}}}})
    unknown = [v for v in variants if v not in settings.variants]
    if unknown:
        raise ConfigError(f"{params}: {unknown} are not variants (known: {sorted(settings.variants)})")
    needed = {eval_set} | {settings.train_sets[settings.variants[v].train_set]["dataset"]
                           for v in variants if settings.variants[v].train}
    for name in sorted(needed):
        if not settings.layout.dataset_manifest(name).exists():
            prepare_dataset(settings, name)
    for name in sorted({settings.variants[v].train_set for v in variants if settings.variants[v].train}):
        sample_train_set(settings, name)
    records = []
    for v in variants:
        start = time.perf_counter()
        train_variant(settings, v)
        trained = time.perf_counter() - start
        predict(settings, v, eval_set)
        metrics = json.loads(evaluate(settings, v, eval_set).read_text())
        records.append({"variant": v, "seed": seed, "train": {k: getattr(settings.train, k) for k in overrides or {}},
                        "gIoU": round(metrics["gIoU"], 2), "cIoU": round(metrics["cIoU"], 2),
                        "failed_parses": metrics["n_failed_parse"], "train_seconds": round(trained),
                        "families": family_scores(settings, v, eval_set),
                        "signal": training_signal(settings, v)})
        log.info("toy measure: %s", records[-1])
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--preset", default="toy")
    parser.add_argument("--root", required=True)
    parser.add_argument("--seeds", default="0", help="GRPO seeds, comma-separated; each runs in ROOT/seed-N")
    parser.add_argument("--variants", required=True)
    parser.add_argument("--eval-set", default="reasonseg_val", help="the split recipes are judged on")
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any train setting for these runs, the value read as YAML (e.g. --set beta=0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        chosen = {"learning_rate": args.learning_rate, "max_steps": args.steps, "temperature": args.temperature}
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                raise RiseError(f"--set {item}: expected KEY=VALUE (a train setting)")
            chosen[key] = typed_value(value)
        try:
            seeds = [int(s) for s in args.seeds.split(",")]
        except ValueError:
            raise RiseError(f"--seeds {args.seeds}: expected whole numbers separated by commas") from None
        records = []
        for seed in seeds:
            for record in measure(args.params, Path(args.root) / f"seed-{seed}", seed, args.variants.split(","),
                                  preset=args.preset, eval_set=args.eval_set,
                                  overrides={k: v for k, v in chosen.items() if v is not None}):
                print(json.dumps(record), flush=True)
                records.append(record)
        for row in summarise(records):
            print(json.dumps({"summary": row}))
    except RiseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
