"""Where a toy preset's pretrained models and their held-out reports lie, from its settings alone
(the engines plan the pretraining jobs with these, `rise draws` reads the reports), apart from the
pretraining code so that reading a path does not depend on it."""
from __future__ import annotations

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
