"""GRPO's groups sampled from a toy policy, and how a reward ranks them: shared by
rank_rewards.py and compare_updates.py (docs/toy-log.md, "Seventh round")."""
from __future__ import annotations

from pathlib import Path

import numpy as np


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
    from rise.data.toy_world import SIZE, instructions, scenes

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
                ids = model.generate(**batch, do_sample=True, temperature=t.temperature, num_return_sequences=group,
                                     max_new_tokens=t.max_completion_length)
            answers = processor.batch_decode(ids[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
            rewards = reward.score(answers, [image] * group, [text] * group, keys=[0] * group)
            boxes = [parse_answer(a, SIZE, SIZE, points=False, single_quotes=t.json_single_quotes) for a in answers]
            hits = [bool(b.ok and box_iou(b.box, cell) >= 0.5) for b in boxes]
            out.setdefault(family, []).append((prompt, image, answers, hits, rewards))
    return out


def toy_policy_and_reward(settings, policy_dir: str | Path, seed: int):
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
                            single_quotes=t.json_single_quotes, semantic_scale=t.semantic_scale)
    return model, processor, reward
