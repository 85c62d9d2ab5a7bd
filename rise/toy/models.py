"""Where a toy preset's pretrained models and their held-out reports lie, from its settings alone
(the engines plan the pretraining jobs with these, `rise draws` reads the reports), apart from the
pretraining code so that reading a path does not depend on it."""
from __future__ import annotations

import json
from pathlib import Path

from rise.config import Settings
from rise.errors import ConfigError


def report_file(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.name + ".report.json")


def policy_dir(settings: Settings) -> str:
    """The one policy folder the toy world pretrains (every policy key of the preset names it)."""
    folders = set(settings.models["policies"].values())
    if len(folders) != 1:
        raise ConfigError(f"presets.{settings.preset}.models.policies: the toy world pretrains one policy; "
                          "every key must name the same folder")
    return folders.pop()


def pretrained_models(settings: Settings, every: bool = False) -> dict[str, dict]:
    """Per pretraining stage the preset runs (`Settings.pretrains`; `every`: also those of the models
    it shares with the preset it copies): the model it writes (a file, or the policy's folder) and
    its report."""
    models = {"clip": settings.models["clip"]["pretrained"], "sam2": settings.models["sam2"]["checkpoint"],
              "policy": policy_dir(settings)}
    return {stage: {"model": str(m), "report": str(report_file(m)), "folder": stage == "policy"}
            for stage, m in models.items() if every or stage in settings.pretrains}


def base_check_problems(settings: Settings) -> list[str]:
    """What the base policy's pretraining report says against `pretrain.base_check` (per family of its
    greedy answers, the [low, high] hit rate the recipe declares); empty when it holds or none is set."""
    wanted = (settings.pretrain or {}).get("base_check") or {}
    if not wanted:
        return []
    path = Path(pretrained_models(settings, every=True)["policy"]["report"])
    if not path.exists():
        return [f"{path}: no pretraining report to check presets.{settings.preset}.pretrain.base_check against"]
    greedy = json.loads(path.read_text())["heldout"]["greedy"]
    problems = []
    for family, (low, high) in wanted.items():
        if family not in greedy:
            problems.append(f"presets.{settings.preset}.pretrain.base_check.{family}: {path} reports no such "
                            f"family (it has {sorted(k for k in greedy if k != 'example')})")
        elif not low <= greedy[family]["hit_rate"] <= high:
            problems.append(f"the base policy reads '{family}' at a greedy hit rate of {greedy[family]['hit_rate']} "
                            f"({path}), outside [{low}, {high}] (presets.{settings.preset}.pretrain.base_check): "
                            "GRPO would start from another base than the recipe declares")
    return problems
