"""params.yaml: loading, validation, preset resolution and the file layout of a run.

Every stage, the Snakefile and the DVC stages go through `load_settings`, so a malformed file fails
the same way everywhere, with the setting named.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rise.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = PROJECT_ROOT / "workflow" / "schemas" / "params.schema.yaml"
REWARD_NAMES = ("semantic", "think_format", "seg_format")
OVERRIDABLE = ("train", "predict", "evaluate", "image")


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class Variant:
    """One cell of the experiment grid, with every default filled in."""

    name: str
    train: bool
    policy: str
    train_set: str
    rewards: tuple[str, ...]
    cot: bool
    points: bool
    gpus: int | None = None  # GPUs for this variant's training; None: the preset's launch.gpus

    def as_dict(self) -> dict:
        return {"name": self.name, "train": self.train, "policy": self.policy, "train_set": self.train_set,
                "rewards": list(self.rewards), "cot": self.cot, "points": self.points}


@dataclass
class Layout:
    """Where each stage reads and writes; relative to the project root. See rise/contracts.py."""

    preset: str
    root: Path = field(default_factory=lambda: Path("."))

    @property
    def run_dir(self) -> Path:
        return self.root / "runs" / self.preset

    def models_dir(self) -> Path:
        return self.run_dir / "models"

    def models_manifest(self) -> Path:
        return self.models_dir() / "models.json"

    def dataset_manifest(self, dataset: str) -> Path:
        return self.run_dir / "data" / f"{dataset}.jsonl"

    def dataset_images(self, dataset: str) -> Path:
        return self.run_dir / "data" / "images" / dataset

    def train_manifest(self, train_set: str) -> Path:
        return self.run_dir / "train" / f"{train_set}.jsonl"

    def checkpoint_dir(self, variant: str) -> Path:
        return self.run_dir / "checkpoints" / variant

    def train_curves(self, variant: str) -> Path:
        """Per-step training metrics (CSV, for `dvc plots`); the PNG lies beside it."""
        return self.run_dir / "curves" / f"{variant}.csv"

    def policy_ref(self, variant: str) -> Path:
        return self.checkpoint_dir(variant) / "policy.json"

    def predictions(self, variant: str, eval_set: str) -> Path:
        return self.run_dir / "predictions" / variant / f"{eval_set}.jsonl"

    def prediction_environment(self, variant: str, eval_set: str) -> Path:
        """The software and GPU that made the predictions' masks (rise/provenance.py)."""
        return self.run_dir / "predictions" / variant / f"{eval_set}.env.json"

    def metrics(self, variant: str, eval_set: str) -> Path:
        return self.run_dir / "metrics" / variant / f"{eval_set}.json"

    def sample_scores(self, variant: str, eval_set: str) -> Path:
        return self.run_dir / "metrics" / variant / f"{eval_set}.samples.csv"

    def figure(self, name: str) -> Path:
        return self.root / "results" / self.preset / "figures" / f"{name}.png"

    def table(self, name: str) -> Path:
        return self.root / "results" / self.preset / f"{name}.csv"

    def logs(self, stage: str, name: str) -> Path:
        return self.run_dir / "logs" / stage / f"{name}.log"


@dataclass
class Settings:
    """params.yaml with the chosen preset applied."""

    preset: str
    seed: int
    description: str
    device: str
    build_demo_models: bool
    warm_up_steps: int
    launch: dict
    resources: dict
    models: dict
    datasets: dict
    train_sets: dict
    image: dict
    train: dict
    predict: dict
    evaluate: dict
    variants: dict[str, Variant]
    tables: dict
    figures: dict
    source: Path
    layout: Layout
    overrides: dict = field(default_factory=dict)  # merged over `source` (Snakemake's --config)

    @property
    def eval_sets(self) -> list[str]:
        """Every dataset that some table evaluates on, in first-use order."""
        seen: list[str] = []
        for table in self.tables.values():
            for dataset, _ in table["columns"]:
                if dataset not in seen:
                    seen.append(dataset)
        return seen

    def policy_ref(self, variant: str) -> str:
        return self.models["policies"][self.variants[variant].policy]

    def train_gpus(self, variant: str) -> int:
        """GPUs one training job of the variant uses (0 on CPU presets and for untrained variants)."""
        v = self.variants[variant]
        if self.device != "cuda" or not v.train:
            return 0
        return v.gpus or self.launch.get("gpus", 1)

    def table_needs(self, table: str) -> list[tuple[str, str]]:
        """(variant, eval_set) pairs whose metrics a table reads."""
        t = self.tables[table]
        sets = list(dict.fromkeys(d for d, _ in t["columns"]))
        return [(row["variant"], s) for row in t["rows"] for s in sets]

    def provenance(self) -> dict:
        """What made a result: recorded in every metrics and table file."""
        return {"preset": self.preset, "description": self.description,
                "policies": self.models["policies"], "clip": self.models["clip"], "sam2": self.models["sam2"],
                "datasets": self.datasets, "train_sets": self.train_sets, "params_file": str(self.source),
                **({"overrides": self.overrides} if self.overrides else {})}

    def stage_settings(self, stage: str, name: str | None = None, dataset: str | None = None) -> str:
        """A canonical JSON string of what a stage's output depends on (Snakemake reruns when it changes)."""
        parts: dict[str, Any] = {"preset": self.preset, "seed": self.seed}
        variant = name
        if stage == "train":
            v = self.variants[variant]
            parts.update(variant=v.as_dict(), train=self.train if v.train else None, image=self.image,
                         policy=self.policy_ref(variant), clip=self.models["clip"] if v.train else None)
        elif stage == "predict":
            v = self.variants[variant]
            parts.update(predict=self.predict, image=self.image, sam2=self.models["sam2"], cot=v.cot, points=v.points,
                         answer=self.evaluate.get("answer"),
                         eval_prompt=self.datasets[dataset].get("eval_prompt", "segzero") if dataset else None)
        elif stage == "evaluate":
            parts.update(evaluate=self.evaluate)
        elif stage == "data":
            parts.update(dataset=self.datasets[variant])
        elif stage == "sample":
            parts.update(train_set=self.train_sets[variant])
        elif stage == "models":
            parts.update(models=self.models, image=self.image, warm_up_steps=self.warm_up_steps)
        return json.dumps(parts, sort_keys=True)


def _format_path(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _validate_schema(raw: dict, source) -> None:
    import jsonschema

    schema = yaml.safe_load(SCHEMA_FILE.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(raw), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {_format_path(e.absolute_path)}: {e.message}" for e in errors[:10]]
        raise ConfigError(f"{source}: invalid settings\n" + "\n".join(lines))


def config_overrides(effective: dict, base: dict) -> dict:
    """The part of `effective` that differs from `base`, nested: what `--config` changed in params.yaml.

    Merging the result over `base` with `deep_merge` gives the engine's settings back (Snakemake merges
    `--config` values the same way). Snakemake reads nested `--config` values as strings (YAML's
    BaseLoader), so a string is read back as a YAML scalar unless params.yaml holds a string there.
    """
    out = {}
    for key, value in effective.items():
        old = base.get(key) if isinstance(base, dict) else None
        if isinstance(value, dict):
            sub = config_overrides(value, old if isinstance(old, dict) else {})
            if sub or not isinstance(old, dict):
                out[key] = sub
        else:
            value = _typed(value, old)
            if not isinstance(base, dict) or key not in base or old != value:
                out[key] = value
    return out


def _typed(value, old):
    if isinstance(value, list):
        return [_typed(v, None) for v in value]
    if not isinstance(value, str) or isinstance(old, str):
        return copy.deepcopy(value)
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    if isinstance(parsed, str):  # YAML 1.1 reads 2e-6 as a string
        try:
            return float(parsed)
        except ValueError:
            return value
    return parsed


def read_params(path: str | Path) -> dict:
    """params.yaml as a mapping (not yet validated)."""
    source = Path(path)
    if not source.exists():
        raise ConfigError(f"settings file {source} does not exist")
    try:
        raw = yaml.safe_load(source.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    return raw


def load_settings(path: str | Path = PROJECT_ROOT / "params.yaml", preset: str | None = None,
                  root: Path | None = None, overrides: dict | None = None) -> Settings:
    """Settings from a params file, with `overrides` (e.g. Snakemake's `--config`) merged over it."""
    source = Path(path)
    raw = read_params(source)
    if overrides:
        raw = deep_merge(raw, overrides)
    return settings_from_raw(raw, source, preset, root, overrides)


def settings_from_raw(raw: dict, source: Path, preset: str | None = None, root: Path | None = None,
                      overrides: dict | None = None) -> Settings:
    """Validates a params mapping and applies its preset. `source` names it in errors."""
    where = f"{source} with overrides {json.dumps(overrides, sort_keys=True)}" if overrides else str(source)
    _validate_schema(raw, where)

    preset = preset or raw["preset"]
    if preset not in raw["presets"]:
        raise ConfigError(f"{where}: preset '{preset}' is not defined under presets (known: {sorted(raw['presets'])})")
    p = raw["presets"][preset]
    effective = {k: deep_merge(raw[k], p.get("overrides", {}).get(k, {})) for k in OVERRIDABLE}

    variants = {}
    for name, spec in raw["variants"].items():
        merged = {**raw["variant_defaults"], **spec}
        missing = [k for k in ("train", "policy", "train_set", "rewards", "cot", "points") if k not in merged]
        if missing:
            raise ConfigError(f"{where}: variants.{name} lacks {missing} and variant_defaults does not give them")
        if merged["policy"] not in p["models"]["policies"]:
            raise ConfigError(f"{where}: variants.{name}.policy '{merged['policy']}' is not one of "
                              f"presets.{preset}.models.policies {sorted(p['models']['policies'])}")
        if merged["train"] and merged["train_set"] not in p["train_sets"]:
            raise ConfigError(f"{where}: variants.{name}.train_set '{merged['train_set']}' is not one of "
                              f"presets.{preset}.train_sets {sorted(p['train_sets'])}")
        rewards = tuple(merged["rewards"])
        if merged["train"] and not rewards:
            raise ConfigError(f"{where}: variants.{name}.rewards is empty: a trained variant needs a reward")
        variants[name] = Variant(name=name, train=merged["train"], policy=merged["policy"],
                                 train_set=merged["train_set"], rewards=rewards, cot=merged["cot"],
                                 points=merged["points"], gpus=merged.get("gpus"))

    q = raw.get("figures", {}).get("qualitative")
    if q:
        for v in q["variants"]:
            if v not in variants:
                raise ConfigError(f"{where}: figures.qualitative.variants: '{v}' is not a variant")
        if q["dataset"] not in p["datasets"]:
            raise ConfigError(f"{where}: figures.qualitative.dataset '{q['dataset']}' is not one of "
                              f"presets.{preset}.datasets")
    for ts_name, ts in p["train_sets"].items():
        if ts["dataset"] not in p["datasets"]:
            raise ConfigError(f"{where}: presets.{preset}.train_sets.{ts_name}.dataset '{ts['dataset']}' "
                              f"is not one of presets.{preset}.datasets")
    for t_name, table in raw["tables"].items():
        for d, _ in table["columns"]:
            if d not in p["datasets"]:
                raise ConfigError(f"{where}: tables.{t_name}.columns uses dataset '{d}', which "
                                  f"presets.{preset}.datasets does not define")
            if p["datasets"][d]["loader"] == "imagenet":
                raise ConfigError(f"{where}: tables.{t_name}.columns uses dataset '{d}', whose loader "
                                  "(imagenet) has no masks to evaluate against")
        for i, row in enumerate(table["rows"]):
            if row["variant"] not in variants:
                raise ConfigError(f"{where}: tables.{t_name}.rows[{i}].variant '{row['variant']}' is not a variant")
            if "reported" in row and len(row["reported"]) != len(table["columns"]):
                raise ConfigError(f"{where}: tables.{t_name}.rows[{i}].reported has {len(row['reported'])} "
                                  f"numbers for {len(table['columns'])} columns")

    return Settings(
        preset=preset, seed=raw["seed"], description=p["description"], device=p["device"],
        build_demo_models=p.get("build_demo_models", False),
        warm_up_steps=p.get("warm_up_steps", 0), launch=p.get("launch", {"gpus": 1}),
        resources=p["resources"],        models=p["models"], datasets=p["datasets"],
        train_sets=p["train_sets"], image=effective["image"], train=effective["train"],
        predict=effective["predict"], evaluate=effective["evaluate"], variants=variants,
        tables=raw["tables"], figures=raw.get("figures", {}), source=Path(source),
        overrides=overrides or {}, layout=Layout(preset, Path(root) if root else Path(".")),
    )
