"""Toy research tool: what updates on one batch of GRPO's groups do to a policy, GRPO's own
against a supervised one on the batch's right answers.

    python experiments/toy/compare_updates.py POLICY [--prompts 4] [--steps 1,3,10]
        [--updates grpo,supervised_on_hits] [--kl-beta 0.04] [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from groups import group_advantages, held_out_groups, toy_policy_and_reward

from rise.config import load_settings
from rise.errors import ConfigError, RiseError


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

    from rise.warmup import answer_batch, optimiser_step

    unknown = [u for u in updates if u not in UPDATES]
    if unknown:
        raise ConfigError(f"updates {unknown} are not known (known: {list(UPDATES)})")
    t = settings.train
    base, processor, reward = toy_policy_and_reward(settings, policy_dir, seed)
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
        optimizer = torch.optim.AdamW(model.parameters(), lr=t.learning_rate, weight_decay=t.weight_decay)
        report[name] = {}
        for step in range(1, max(steps) + 1):
            loss = loss_of(name, model)
            optimiser_step(loss, optimizer, model.parameters(), max_grad_norm=t.max_grad_norm)
            if step in steps:
                report[name][f"step {step}"] = state(model)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy", help="a policy folder: the pretrained base or a GRPO checkpoint")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--preset", default="toy")
    parser.add_argument("--prompts", type=int, default=4, help="prompts per family (classname, shape)")
    parser.add_argument("--steps", default="1,3,10", help="after which update steps to report, comma-separated")
    parser.add_argument("--updates", default="grpo,supervised_on_hits",
                        help="comma-separated, of " + ", ".join(UPDATES))
    parser.add_argument("--kl-beta", type=float, default=0.04, help="the KL coefficient of grpo_kl")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        try:
            steps = tuple(int(x) for x in args.steps.split(","))
        except ValueError:
            raise RiseError(f"--steps {args.steps}: expected whole numbers separated by commas") from None
        settings = load_settings(args.params, preset=args.preset)
        print(json.dumps(update_comparison(settings, args.policy, n_prompts=args.prompts, steps=steps, seed=args.seed,
                                           updates=tuple(args.updates.split(",")), kl_beta=args.kl_beta), indent=1))
    except RiseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
