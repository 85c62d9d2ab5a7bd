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


FINAL = "final"  # the checkpoint a training run ends with; the others are `step<N>` (rise/sweep.py)


@dataclass
class Layout:
    """Where each stage reads and writes; relative to the project root. See rise/contracts.py.

    A trained variant is run once per seed (`train.seeds`); a run's files lie under
    `<variant>/seed<k>/`, and its predictions and metrics under `<variant>/seed<k>/<checkpoint>/`
    (`final`, or `step<N>` for a checkpoint sweep). `seed=None` means the first seed."""

    preset: str
    root: Path = field(default_factory=lambda: Path("."))
    primary_seed: int = 0

    @property
    def run_dir(self) -> Path:
        return self.root / "runs" / self.preset

    def run_name(self, variant: str, seed: int | None) -> Path:
        return Path(variant) / f"seed{self.primary_seed if seed is None else seed}"

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

    def checkpoint_dir(self, variant: str, seed: int | None = None) -> Path:
        return self.run_dir / "checkpoints" / self.run_name(variant, seed)

    def train_curves(self, variant: str, seed: int | None = None) -> Path:
        """Per-step training metrics (CSV, for `dvc plots`); the PNG lies beside it."""
        return self.run_dir / "curves" / f"{variant}-seed{self.primary_seed if seed is None else seed}.csv"

    def policy_ref(self, variant: str, seed: int | None = None) -> Path:
        """The run's policy and its saved checkpoints (rise/train.py writes it when training ends)."""
        return self.checkpoint_dir(variant, seed) / "policy.json"

    def _scored(self, kind: str, variant: str, seed: int | None, checkpoint: str) -> Path:
        return self.run_dir / kind / self.run_name(variant, seed) / checkpoint

    def predictions(self, variant: str, eval_set: str, seed: int | None = None, checkpoint: str = FINAL) -> Path:
        return self._scored("predictions", variant, seed, checkpoint) / f"{eval_set}.jsonl"

    def prediction_environment(self, variant: str, eval_set: str, seed: int | None = None,
                               checkpoint: str = FINAL) -> Path:
        """The software and GPU that made the predictions' masks (rise/provenance.py)."""
        return self._scored("predictions", variant, seed, checkpoint) / f"{eval_set}.env.json"

    def metrics(self, variant: str, eval_set: str, seed: int | None = None, checkpoint: str = FINAL) -> Path:
        return self._scored("metrics", variant, seed, checkpoint) / f"{eval_set}.json"

    def sample_scores(self, variant: str, eval_set: str, seed: int | None = None, checkpoint: str = FINAL) -> Path:
        return self._scored("scores", variant, seed, checkpoint) / f"{eval_set}.samples.csv"

    def metrics_provenance(self, variant: str, eval_set: str, seed: int | None = None,
                           checkpoint: str = FINAL) -> Path:
        """What the metrics file's numbers came from (settings, software, weights): outside
        `metrics/`, which holds numbers alone (`dvc metrics show` lists that folder)."""
        return self._scored("scores", variant, seed, checkpoint) / f"{eval_set}.provenance.json"

    def sweep(self, variant: str) -> Path:
        """gIoU/cIoU of every saved checkpoint of every seed (CSV; the PNG lies beside it)."""
        return self.root / "results" / self.preset / "sweeps" / f"{variant}.csv"

    def figure(self, name: str) -> Path:
        return self.root / "results" / self.preset / "figures" / f"{name}.png"

    def table(self, name: str) -> Path:
        return self.root / "results" / self.preset / f"{name}.csv"

    def logs(self, stage: str, name: str) -> Path:
        return self.run_dir / "logs" / stage / f"{name}.log"


@dataclass(frozen=True)
class Need:
    """One metrics file a table or sweep reads: a variant's run (seed) at a checkpoint, on a dataset."""

    variant: str
    seed: int
    checkpoint: str
    dataset: str

    @property
    def key(self) -> str:
        """The job's name in both engines (DVC stage item, log file)."""
        return f"{self.variant}-seed{self.seed}-{self.checkpoint}-{self.dataset}"


@dataclass
class Settings:
    """params.yaml with the chosen preset applied."""

    preset: str
    seed: int
    description: str
    device: str
    build_demo_models: bool
    warm_up_steps: int
    cpu_kernels: str  # native | portable (rise/kernels.py)
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
    sweeps: list[str]
    pretrain: dict | None  # the toy world's pretraining stages (rise/toy/pipeline.py); None: models come ready
    table_note: str        # written into every table row of the preset (e.g. that its numbers are not the paper's)
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

    def seeds(self, variant: str) -> list[int]:
        """The runs of a variant: one per training seed (`train.seeds`); a zero-shot variant has one."""
        seeds = self.train["seeds"]
        return list(seeds) if self.variants[variant].train else [seeds[0]]

    def train_steps(self, variant: str) -> int:
        """Optimisation steps of one training run: `max_steps`, or the complete groups of prompts in
        the training set times the epochs (TRL's sampler drops an incomplete last group)."""
        t = self.train
        if t["max_steps"] > 0:
            return t["max_steps"]
        n = self.train_sets[self.variants[variant].train_set]["n"]
        return (n // t["prompts_per_step"]) * t["num_epochs"]

    def checkpoints(self, variant: str) -> list[str]:
        """The checkpoints a run keeps for sweeps: `step<N>` every `save_steps`, then `final`."""
        if not self.variants[variant].train:
            return [FINAL]
        total, every = self.train_steps(variant), self.train["save_steps"]
        return [f"step{k}" for k in range(every, total, every)] + [FINAL]

    def table_selection(self, table: str) -> str | None:
        """None when the table reads each run's final checkpoint; else the dataset whose gIoU picks
        the checkpoint (`checkpoint: best on <dataset>`)."""
        choice = self.tables[table].get("checkpoint", FINAL)
        return None if choice == FINAL else choice.removeprefix("best on ").strip()

    def table_datasets(self, table: str) -> list[str]:
        return list(dict.fromkeys(d for d, _ in self.tables[table]["columns"]))

    def table_needs(self, table: str) -> list[Need]:
        """Every metrics file a table reads: each row's runs (seeds) at the final checkpoint, or at
        every checkpoint and on the selection dataset too when the table picks the best one."""
        select = self.table_selection(table)
        sets = self.table_datasets(table) + ([select] if select and select not in self.table_datasets(table) else [])
        needs = []
        for row in self.tables[table]["rows"]:
            v = row["variant"]
            for seed in self.seeds(v):
                for ckpt in (self.checkpoints(v) if select else [FINAL]):
                    needs += [Need(v, seed, ckpt, d) for d in sets]
        return needs

    def sweep_datasets(self, variant: str) -> list[str]:
        """The datasets of every table that has the variant in a row."""
        return list(dict.fromkeys(d for name, t in self.tables.items() if any(r["variant"] == variant for r in t["rows"])
                                  for d in self.table_datasets(name)))

    def sweep_needs(self, variant: str) -> list[Need]:
        """A checkpoint sweep: every saved checkpoint of every seed on every dataset of the variant's tables."""
        return [Need(variant, seed, ckpt, d) for seed in self.seeds(variant) for ckpt in self.checkpoints(variant)
                for d in self.sweep_datasets(variant)]

    def all_needs(self) -> list[Need]:
        """What the tables, the listed sweeps and the figure read, each once, in a stable order."""
        needs = [n for t in self.tables for n in self.table_needs(t)]
        needs += [n for v in self.sweeps for n in self.sweep_needs(v)]
        q = self.figures.get("qualitative")
        needs += [Need(v, self.seeds(v)[0], FINAL, q["dataset"]) for v in (q["variants"] if q else [])]
        return list(dict.fromkeys(needs))

    def provenance(self) -> dict:
        """What made a result: recorded in every metrics and table file."""
        return {"preset": self.preset, "description": self.description,
                "policies": self.models["policies"], "clip": self.models["clip"], "sam2": self.models["sam2"],
                "datasets": self.datasets, "train_sets": self.train_sets, "params_file": str(self.source),
                **({"overrides": self.overrides} if self.overrides else {})}

    def stage_settings(self, stage: str, name: str | None = None, dataset: str | None = None,
                       seed: int | None = None) -> str:
        """A canonical JSON string of what a stage's output depends on (Snakemake reruns when it changes).
        A training run depends on its own seed, not on the list of seeds."""
        parts: dict[str, Any] = {"preset": self.preset, "seed": self.seed}
        if self.cpu_kernels != "native":  # other kernels, other bits (rise/kernels.py)
            parts["cpu_kernels"] = self.cpu_kernels
        variant = name
        if stage == "train":
            v = self.variants[variant]
            train = {k: val for k, val in self.train.items() if k != "seeds"} if v.train else None
            parts.update(variant=v.as_dict(), train=train, image=self.image, policy=self.policy_ref(variant),
                         clip=self.models["clip"] if v.train else None,
                         train_seed=self.seeds(variant)[0] if seed is None else seed)
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
        elif stage == "pretrain":
            model = {"clip": self.models["clip"], "sam2": self.models["sam2"],
                     "policy": self.models["policies"]}[variant]
            parts.update(pretrain=(self.pretrain or {}).get(variant), pretrain_seed=(self.pretrain or {}).get("seed"),
                         model=model, image=self.image)
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
        lines = [f"  {_format_path(e.absolute_path)}: {e.message}{_did_you_mean(e)}" for e in errors[:10]]
        raise ConfigError(f"{source}: invalid settings\n" + "\n".join(lines))


def _did_you_mean(error) -> str:
    """For a key the schema does not know: the closest keys it does know, if any is close."""
    import difflib

    if error.validator != "additionalProperties" or not isinstance(error.instance, dict):
        return ""
    known = set(error.schema.get("properties", {}))
    hints = []
    for key in error.instance:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.6)
            if close:
                hints.append(f"'{key}' -> '{close[0]}'")
    return f" (did you mean: {', '.join(hints)}?)" if hints else ""


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
            value = typed_value(value, old)
            if not isinstance(base, dict) or key not in base or old != value:
                out[key] = value
    return out


def typed_value(value, old=None):
    """A setting given as text (a command line's KEY=VALUE) read as YAML, numbers such as 1e-4 as floats;
    left as text where the setting it replaces (`old`) is text."""
    if isinstance(value, list):
        return [typed_value(v, None) for v in value]
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
    # a preset may build some tables only (`tables: [...]`) and give them rows of its own
    all_tables = deep_merge(raw["tables"], p.get("overrides", {}).get("tables", {}))
    unknown = [t for t in p.get("tables", []) if t not in all_tables]
    if unknown:
        raise ConfigError(f"{where}: presets.{preset}.tables names {unknown}, which tables does not define "
                          f"(known: {sorted(all_tables)})")
    tables = {t: all_tables[t] for t in p["tables"]} if "tables" in p else all_tables

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
    for t_name, table in tables.items():
        select = table.get("checkpoint", FINAL)
        if select != FINAL and select.removeprefix("best on ").strip() not in p["datasets"]:
            raise ConfigError(f"{where}: tables.{t_name}.checkpoint '{select}': expected 'final' or "
                              f"'best on <dataset>' with a dataset of presets.{preset}.datasets")
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

    for v in raw.get("sweeps", []):
        if v not in variants:
            raise ConfigError(f"{where}: sweeps: '{v}' is not a variant")
        if not any(row["variant"] == v for t in tables.values() for row in t["rows"]):
            raise ConfigError(f"{where}: sweeps: '{v}' is in no table of preset '{preset}', so its sweep "
                              "would evaluate on no dataset")

    return Settings(
        preset=preset, seed=raw["seed"], description=p["description"], device=p["device"],
        build_demo_models=p.get("build_demo_models", False), cpu_kernels=p.get("cpu_kernels", "native"),
        warm_up_steps=p.get("warm_up_steps", 0), launch=p.get("launch", {"gpus": 1}),
        resources=p["resources"],        models=p["models"], datasets=p["datasets"],
        train_sets=p["train_sets"], image=effective["image"], train=effective["train"],
        predict=effective["predict"], evaluate=effective["evaluate"], variants=variants,
        tables=tables, figures=raw.get("figures", {}), pretrain=p.get("pretrain"), table_note=p.get("table_note", ""), sweeps=list(raw.get("sweeps", [])), source=Path(source),
        overrides=overrides or {},
        layout=Layout(preset, Path(root) if root else Path("."), primary_seed=effective["train"]["seeds"][0]),
    )
