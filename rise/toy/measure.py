"""Measuring GRPO variants in the toy world with the real stages (sample-train, train, predict,
evaluate), each seed in its own run folder, plus the box hit rate per instruction family.

It is how docs/toy.md's GRPO experiments are run without a whole table:
`python -m rise.toy measure --root DIR --seeds 0,1,2 --variants full_3b,format_only_3b`. Seed s
here is the workflow's seed s (the training set drawn at the preset's seed, GRPO at s), so a
measured row is the one the table would hold.
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
    # the training set stays drawn at the preset's seed, as in the workflow (a run's seed is GRPO's only)
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


def group_advantages(rewards) -> np.ndarray:
    """GRPO's advantages within one group: each reward less the group's mean, over its standard deviation."""
    r = np.asarray(rewards, dtype=float)
    return (r - r.mean()) / (r.std() + 1e-4)


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
            advantage += group_advantages(r)[h].tolist()

    def mean(values):
        return round(float(np.mean(values)), 3) if values else None

    return {"groups": len(rewards), "hit_rate": mean([x for h in hits for x in h]),
            "reward_hit": mean(r_hit), "reward_miss": mean(r_miss),
            "mixed_groups": round(mixed / len(rewards), 3) if rewards else None,
            "best_is_hit": mean(best), "hit_advantage": mean(advantage)}


def held_out_groups(model, processor, reward, settings, *, families=("classname", "shape"), n_prompts: int = 48,
                    group: int = 8, seed: int = 0, stream: str = "reward_ranking") -> dict:
    """Per family, `n_prompts` held-out scenes with 2-4 objects and one instruction each; for each,
    `group` answers sampled from `model` (the train prompt, `train.temperature`), scored by `reward`
    (R_sem as training scores it) and called hits when the box is the named object's cell. Returns
    {family: [(prompt, image, answers, hits, rewards), ...]}."""
    import random

    import torch

    from rise.answer import parse_answer
    from rise.prompts import conversation
    from rise.toy.policy import box_iou
    from rise.toy.world import SIZE, instructions, scenes

    t = settings.train
    rng, scenes_ = random.Random(seed), scenes(seed, stream)
    prompts: dict[str, list] = {f: [] for f in families}
    while min(len(v) for v in prompts.values()) < n_prompts:
        objects, image = next(scenes_)
        family = min(families, key=lambda f: len(prompts[f]))
        options = instructions(objects, family)
        if len(objects) < 2 or not options:
            continue
        text, target = rng.choice(options)
        prompt = processor.apply_chat_template(conversation(text), add_generation_prompt=True, tokenize=False)
        prompts[family].append((prompt, image, text, objects[target].cell_box))
    processor.tokenizer.padding_side = "left"
    out: dict[str, list] = {}
    for family, items in prompts.items():
        for prompt, image, text, cell in items:
            batch = processor(text=[prompt], images=[image], return_tensors="pt")
            with torch.no_grad():
                ids = model.generate(**batch, do_sample=True, temperature=t["temperature"], num_return_sequences=group,
                                     max_new_tokens=t["max_completion_length"])
            answers = processor.batch_decode(ids[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
            rewards = reward.score(answers, [image] * group, [text] * group, keys=[0] * group)
            boxes = [parse_answer(a, SIZE, SIZE, points=False, single_quotes=t["json_single_quotes"]) for a in answers]
            hits = [bool(b.ok and box_iou(b.box, cell) >= 0.5) for b in boxes]
            out.setdefault(family, []).append((prompt, image, answers, hits, rewards))
    return out


def _toy_policy_and_reward(settings, policy_dir: str | Path, seed: int):
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from rise.models import load_clip
    from rise.rewards import build_rewards

    torch.manual_seed(seed)
    t, c = settings.train, settings.models["clip"]
    processor = AutoProcessor.from_pretrained(policy_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(policy_dir).eval()

    def clip_loader():
        clip, _, tokenizer = load_clip(c["model"], c["pretrained"], f"presets.{settings.preset}.models.clip")
        return clip, tokenizer

    # R_sem built as the train stage builds it
    reward, = build_rewards(["semantic"], points=True, cot=True, clip_loader=clip_loader,
                            single_quotes=t["json_single_quotes"], semantic_scale=t["semantic_scale"])
    return model, processor, reward


def reward_ranking(settings, policy_dir: str | Path, *, families=("classname", "shape"), n_prompts: int = 48,
                   group: int = 8, seed: int = 0) -> dict:
    """Per family, `held_out_groups` read by `group_ranking`: whether GRPO's groups hold a signal for
    the named object, apart from whether training then follows it (docs/toy.md, "Seventh round")."""
    model, processor, reward = _toy_policy_and_reward(settings, policy_dir, seed)
    groups = held_out_groups(model, processor, reward, settings, families=families, n_prompts=n_prompts,
                             group=group, seed=seed)
    return {f: group_ranking([g[4] for g in gs], [g[3] for g in gs]) for f, gs in groups.items()}


UPDATES = ("grpo", "grpo_kl", "grpo_positive", "supervised_on_hits")


def update_comparison(settings, policy_dir: str | Path, *, n_prompts: int = 4, group: int = 8, steps=(1, 3, 10),
                      seed: int = 0, updates=("grpo", "supervised_on_hits"), kl_beta: float = 0.04) -> dict:
    """What updates on one batch of GRPO groups do to the policy: from the same start, AdamW steps
    (`train.learning_rate`, `weight_decay`, `max_grad_norm`) of each of `updates` (UPDATES):
    `grpo`, GRPO's loss at its first step (ratio 1, each answer's mean token log-probability times its
    group-normalised R_sem advantage: TRL's `grpo` loss without the KL term); `grpo_kl`, the same
    plus `kl_beta` times TRL's per-token KL estimate to the starting policy; `grpo_positive`, the same
    with negative advantages set to 0; `supervised_on_hits`, a supervised loss on the batch's hits
    alone. After each of `steps`, the mean token log-probability of the batch's hits and misses and
    the hit rate of fresh samples on the same prompts (docs/toy.md, "Seventh round")."""
    import copy

    import torch

    from rise.warmup import answer_batch

    unknown = [u for u in updates if u not in UPDATES]
    if unknown:
        raise ConfigError(f"updates {unknown} are not known (known: {list(UPDATES)})")
    t = settings.train
    base, processor, reward = _toy_policy_and_reward(settings, policy_dir, seed)
    groups = held_out_groups(base, processor, reward, settings, n_prompts=n_prompts, group=group, seed=seed,
                             stream="update_comparison")
    rows = []  # (prompt, image, answer, advantage, hit)
    for prompt, image, answers, hits, rewards in (g for gs in groups.values() for g in gs):
        rows += [(prompt, image, a, float(adv), h) for a, adv, h in zip(answers, group_advantages(rewards), hits)]
    end = processor.tokenizer.eos_token
    processor.tokenizer.padding_side = "right"
    batch, labels = answer_batch(processor, [r[0] for r in rows], [r[0] + r[2] + end for r in rows],
                                 [r[1] for r in rows])
    advantage = torch.tensor([r[3] for r in rows])
    hit = torch.tensor([r[4] for r in rows])

    taught = (labels[:, 1:] != -100).float()

    def per_token_logp(model):
        logits = model(**batch).logits[:, :-1].float()
        return torch.log_softmax(logits, -1).gather(-1, labels[:, 1:].clamp(min=0).unsqueeze(-1)).squeeze(-1)

    def token_logp(model):
        return (per_token_logp(model) * taught).sum(1) / taught.sum(1)

    with torch.no_grad():
        start_logp = per_token_logp(base)

    def loss_of(name, model):
        if name == "supervised_on_hits":
            return -token_logp(model)[hit].mean()
        logp = per_token_logp(model)
        weight = advantage.clamp(min=0) if name == "grpo_positive" else advantage
        per_token = -weight[:, None] * logp
        if name == "grpo_kl":  # TRL's k3 estimate of KL(policy || reference), per token
            gap = start_logp - logp
            per_token = per_token + kl_beta * (torch.exp(gap) - gap - 1)
        return ((per_token * taught).sum(1) / taught.sum(1)).mean()

    def state(model):
        model.eval()
        with torch.no_grad():
            logp = token_logp(model)
        fresh = held_out_groups(model, processor, reward, settings, n_prompts=n_prompts, group=group, seed=seed,
                                stream="update_comparison")
        model.train()

        def mean(x):
            return round(float(x.mean()), 4) if len(x) else None

        return {"logp_hits": mean(logp[hit]), "logp_misses": mean(logp[~hit]),
                "fresh_hit_rate": round(float(np.mean([h for gs in fresh.values() for g in gs for h in g[3]])), 3)}

    report = {"answers": len(rows), "hit_rate": round(float(hit.float().mean()), 3), "start": state(base)}
    for name in updates:
        if name == "supervised_on_hits" and not hit.any():
            report[name] = {"skipped": "the batch holds no hit to learn from"}
            continue
        model = copy.deepcopy(base).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=t["learning_rate"], weight_decay=t["weight_decay"])
        report[name] = {}
        for step in range(1, max(steps) + 1):
            loss = loss_of(name, model)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), t["max_grad_norm"])
            optimizer.step()
            if step in steps:
                report[name][f"step {step}"] = state(model)
    return report
