"""Where a toy preset's pretrained models and their held-out reports lie, from its settings alone
(the engines plan the pretraining jobs with these, `rise draws` reads the reports), apart from the
pretraining code so that reading a path does not depend on it; and the presets derived from it (its
draws and judges, rise/config.py) with the files their tables read."""
from __future__ import annotations

import json
from pathlib import Path

from rise.config import Settings, load_settings
from rise.errors import ConfigError, RiseError
from rise.plan import table_needs


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


def copy_settings(settings: Settings, kind: str) -> dict[int, Settings]:
    """The settings of the preset's draws (`kind` "draws": seed -> Settings) or judges ("judges": CLIP
    steps -> Settings, the preset itself among them as the strongest), in order of that value; the
    same params file, root and overrides as `settings`."""
    named = settings.draws if kind == "draws" else settings.judges
    if not named:
        raise RiseError(f"{settings.source}: presets.{settings.preset} declares no `{kind}`")
    if kind == "judges":
        named = {settings.pretrain["clip"]["steps"]: settings.preset, **named}
    return {value: settings if name == settings.preset else
            load_settings(settings.source, name, root=settings.layout.root, overrides=settings.overrides or None)
            for value, name in sorted(named.items())}


def copies_inputs(settings: Settings, kind: str, table: str) -> list[str]:
    """What the table over the preset's draws or judges reads, as both engines declare it: each copy's
    table, its runs' per-sample scores (the bootstrap reads them) and its pretraining reports (a
    judge's CLIP alone)."""
    out = []
    for s in copy_settings(settings, kind).values():
        out.append(str(s.layout.table(table)))
        out += [str(s.layout.sample_scores(n.variant, n.dataset, n.seed, n.checkpoint)) for n in table_needs(s, table)]
        reports = pretrained_models(s, every=True)
        out += [reports["clip"]["report"]] if kind == "judges" else [m["report"] for m in reports.values()]
    return out
