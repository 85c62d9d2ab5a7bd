"""Toy research tool: whether R_sem ranks a policy's right answers first in GRPO's groups, per
instruction family, apart from whether training then follows it.

    python experiments/toy/rank_rewards.py POLICY [--prompts 48] [--seed 0]

POLICY is a policy folder: the pretrained base (runs/toy/models/policy) or a GRPO checkpoint.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from groups import group_ranking, held_out_groups, toy_policy_and_reward

from rise.config import load_settings
from rise.errors import RiseError


def reward_ranking(settings, policy_dir: str | Path, *, families=("classname", "shape"), n_prompts: int = 48,
                   group: int = 8, seed: int = 0) -> dict:
    """Per family, `held_out_groups` read by `group_ranking`: whether GRPO's groups hold a signal for
    the named object, apart from whether training then follows it (docs/toy.md, "Seventh round")."""
    model, processor, reward = toy_policy_and_reward(settings, policy_dir, seed)
    groups = held_out_groups(model, processor, reward, settings, families=families, n_prompts=n_prompts,
                             group=group, seed=seed)
    return {f: group_ranking([g[4] for g in gs], [g[3] for g in gs]) for f, gs in groups.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy", help="a policy folder: the pretrained base or a GRPO checkpoint")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--preset", default="toy")
    parser.add_argument("--prompts", type=int, default=48, help="prompts per family")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.params, preset=args.preset)
        print(json.dumps(reward_ranking(settings, args.policy, n_prompts=args.prompts, seed=args.seed), indent=1))
    except RiseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
