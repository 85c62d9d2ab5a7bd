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


def group_ranking(rewards: list[list[float]], hits: list[list[bool]]) -> dict:
    """How a reward ranks each GRPO group's right answers (hits) against its wrong ones: the mean
    reward of hits and of misses, the share of groups holding both, of those the share whose best
    answer is a hit, and the mean group-normalised advantage (GRPO's) a hit receives there."""
    r_hit, r_miss, best, advantage, mixed = [], [], [], [], 0
    for r, h in zip(rewards, hits):
        r, h = np.asarray(r, dtype=float), np.asarray(h, dtype=bool)
        r_hit += r[h].tolist()
        r_miss += r[~h].tolist()
        if h.any() and (~h).any():
            mixed += 1
            best.append(bool(h[r.argmax()]))
            advantage += ((r - r.mean()) / (r.std() + 1e-4))[h].tolist()

    def mean(values):
        return round(float(np.mean(values)), 3) if values else None

    return {"groups": len(rewards), "hit_rate": mean([x for h in hits for x in h]),
            "reward_hit": mean(r_hit), "reward_miss": mean(r_miss),
            "mixed_groups": round(mixed / len(rewards), 3) if rewards else None,
            "best_is_hit": mean(best), "hit_advantage": mean(advantage)}


def reward_ranking(settings, policy_dir: str | Path, *, families=("classname", "shape"), n_prompts: int = 48,
                   group: int = 8, seed: int = 0) -> dict:
    """Per family, on held-out scenes with 2-4 objects: `group` answers sampled from the policy (the
    train prompt, temperature `train.temperature`), each scored by R_sem as training scores it
    (the preset's CLIP, `train.semantic_scale`) and called a hit when its box is the named object's
    cell; then `group_ranking`. It says whether GRPO's groups hold a signal for the named object,
    apart from whether training then follows it (docs/toy.md, "Seventh round")."""
    import random

    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from rise.answer import parse_answer
    from rise.models import load_clip
    from rise.prompts import conversation
    from rise.rewards import SemanticReward
    from rise.toy.policy import box_iou
    from rise.toy.world import SIZE, instructions, scenes

    t, c = settings.train, settings.models["clip"]
    torch.manual_seed(seed)
    processor = AutoProcessor.from_pretrained(policy_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(policy_dir).eval()
    clip, _, tokenizer = load_clip(c["model"], c["pretrained"], f"presets.{settings.preset}.models.clip")
    reward = SemanticReward(clip, tokenizer, scale=t["semantic_scale"], single_quotes=t["json_single_quotes"])
    rng, stream = random.Random(seed), scenes(seed, "reward_ranking")
    groups: dict[str, tuple[list, list]] = {f: ([], []) for f in families}
    while min(len(g[0]) for g in groups.values()) < n_prompts:
        objects, image = next(stream)
        family = min(families, key=lambda f: len(groups[f][0]))
        options = instructions(objects, family)
        if len(objects) < 2 or not options:
            continue
        text, target = rng.choice(options)
        prompt = processor.apply_chat_template(conversation(text), add_generation_prompt=True, tokenize=False)
        batch = processor(text=[prompt], images=[image], return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**batch, do_sample=True, temperature=t["temperature"], num_return_sequences=group,
                                 max_new_tokens=t["max_completion_length"])
        answers = processor.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        rewards = reward.score(answers, [image] * group, [text] * group, keys=[0] * group)
        boxes = [parse_answer(a, SIZE, SIZE, points=False, single_quotes=t["json_single_quotes"]) for a in answers]
        groups[family][0].append(rewards)
        groups[family][1].append([b.ok and box_iou(b.box, objects[target].cell_box) >= 0.5 for b in boxes])
    return {f: group_ranking(*groups[f]) for f in families}
