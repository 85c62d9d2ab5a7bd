"""params.yaml: loading, validation and preset resolution, into `Settings`.

Every stage, the Snakefile and the DVC stages go through `load_settings`, so a malformed file fails
the same way everywhere, with the setting named. The schema (workflow/schemas/params.schema.yaml)
validates the file; `TrainSettings` and `PredictSettings` document the sections code reads most.
Where files go: rise/layout.py; which jobs the settings plan: rise/plan.py.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rise.errors import ConfigError
from rise.layout import FINAL, Layout

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


def _help(text: str, **default) -> Any:
    return field(metadata={"help": text}, **default)


@dataclass
class TrainSettings:
    """The `train` section (with the preset's `overrides.train` merged): GRPO as the train stage runs it
    (rise/train.py:grpo_kwargs maps it onto TRL's GRPOConfig). Every field without a default is
    required by the schema."""

    num_generations: int = _help("completions sampled per prompt (a GRPO group; the paper: 8)")
    prompts_per_step: int = _help("prompts per optimiser update; x num_generations completions")
    learning_rate: float = _help("AdamW learning rate (the paper: 1e-6)")
    lr_scheduler: str = _help("transformers' lr_scheduler_type")
    weight_decay: float = _help("AdamW weight decay")
    beta: float = _help("KL coefficient against the frozen reference (0: no reference is loaded)")
    epsilon: float = _help("PPO clip ratio")
    max_grad_norm: float = _help("gradient clipping")
    temperature: float = _help("sampling temperature of the completions")
    num_epochs: float = _help("passes over the training set (when max_steps is -1)")
    max_steps: int = _help("optimiser updates; -1: num_epochs over the training set")
    max_completion_length: int = _help("tokens per completion")
    save_steps: int = _help("a checkpoint every this many updates (the sweeps read them)")
    loss_type: str = _help("TRL's loss normalisation: grpo | dapo | dr_grpo | bnpo")
    bf16: bool = _help("bf16 compute (GPU); the trained policy keeps fp32 master weights")
    gradient_checkpointing: bool = _help("recompute activations in the backward pass")
    per_device_batch_size: int = _help("completions per GPU per forward; accumulation makes up the update")
    repetition_penalty: float = _help("sampling penalty during training")
    entropy_coef: float = _help("entropy bonus (Seg-Zero's actor: 1e-3)")
    top_entropy_quantile: float = _help("share of tokens trained, by entropy (1: all)")
    json_single_quotes: bool = _help("R_seg/R_sem also read single-quoted JSON answers")
    semantic_scale: str = _help("R_sem as the cosine (eq. 5) or as (1 + cosine) / 2 (`unit`)")
    save_total_limit: int = _help("trainer checkpoints kept (with optimiser state)")
    vllm_gpu_memory_utilization: float = _help("share of each GPU a colocated vLLM engine may take")
    seeds: list[int] = _help("one training run per seed; tables show mean and std over them")
    attn_implementation: str = _help("attention kernels of the policy and its reference: sdpa | eager | "
                                     "flash_attention_2")
    encode_images_once: bool = _help("the vision tower runs once per distinct image of a batch")
    use_vllm: bool = _help("generate with vLLM (colocate mode; GPU, the vLLM environment)", default=False)


@dataclass
class PredictSettings:
    """The `predict` section: how the policy answers and SAM2 turns an answer into a mask."""

    max_new_tokens: int = _help("tokens of each answer")
    batch_size: int = _help("prompts per generate call")
    repetition_penalty: float = _help("greedy decoding's penalty (Qwen2.5-VL's generation config: 1.05)")
    multimask: str = _help("which of SAM2's masks is kept: best_score | first | single")
    backend: str = _help("hf (transformers generate) | vllm (GPU, the vLLM environment)", default="hf")



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
    train: TrainSettings
    predict: PredictSettings
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
    # pretraining draws (`draws`): seed -> the preset that pretrains with it, and the tables each builds
    draws: dict[int, str] = field(default_factory=dict)
    draw_tables: list[str] = field(default_factory=list)
    # weaker judges (`judges`): CLIP steps -> the preset whose CLIP trained that long, and their table
    judges: dict[int, str] = field(default_factory=dict)
    judge_table: str | None = None
    judge_variants: list[str] = field(default_factory=list)  # the rows each judge trains again
    copy_of: str | None = None    # a derived preset (a draw, a judge): the preset it copies
    copy_kind: str | None = None  # "draws" or "judges"

    @property
    def pretrains(self) -> tuple[str, ...]:
        """The toy models this preset pretrains itself (a judge, its CLIP alone; it shares the rest)."""
        if not self.pretrain:
            return ()
        return ("clip",) if self.copy_kind == "judges" else ("clip", "sam2", "policy")

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
        seeds = self.train.seeds
        return list(seeds) if self.variants[variant].train else [seeds[0]]

    def train_steps(self, variant: str) -> int:
        """Optimisation steps of one training run: `max_steps`, or the complete groups of prompts in
        the training set times the epochs (TRL's sampler drops an incomplete last group)."""
        t = self.train
        if t.max_steps > 0:
            return t.max_steps
        n = self.train_sets[self.variants[variant].train_set]["n"]
        return (n // t.prompts_per_step) * t.num_epochs

    def checkpoints(self, variant: str) -> list[str]:
        """The checkpoints a run keeps for sweeps: `step<N>` every `save_steps`, then `final`."""
        if not self.variants[variant].train:
            return [FINAL]
        total, every = self.train_steps(variant), self.train.save_steps
        return [f"step{k}" for k in range(every, total, every)] + [FINAL]

    def table_selection(self, table: str) -> str | None:
        """None when the table reads each run's final checkpoint; else the dataset whose gIoU picks
        the checkpoint (`checkpoint: best on <dataset>`)."""
        choice = self.tables[table].get("checkpoint", FINAL)
        return None if choice == FINAL else choice.removeprefix("best on ").strip()

    def table_datasets(self, table: str) -> list[str]:
        return list(dict.fromkeys(d for d, _ in self.tables[table]["columns"]))

    def provenance(self) -> dict:
        """What made a result: recorded in every metrics and table file."""
        return {"preset": self.preset, "description": self.description,
                "policies": self.models["policies"], "clip": self.models["clip"], "sam2": self.models["sam2"],
                "datasets": self.datasets, "train_sets": self.train_sets, "params_file": str(self.source),
                **({"overrides": self.overrides} if self.overrides else {})}



# ------------------------------------------------------------------ pretraining draws and judges
# Presets derived from one of params.yaml, never written there, each under its own name in runs/ and
# results/ (in DVC's cache, not in git):
#   `draws: {seeds: [...], tables: [...]}`: the copy for seed k, `<preset>-draw<k>`, pretrains its
#     three models with `pretrain.seed: k` into runs/<preset>-draw<k>/models/ and builds `draws.tables`;
#     `rise draws` (rise/toy/draws.py) reads them.
#   `judges: {clip_steps: [...], table: ..., variants: [...]}`: the copy for k steps,
#     `<preset>-judge<k>`, pretrains its CLIP alone for k steps (a weaker judge for R_sem), shares the
#     preset's policy and SAM2, and builds `judges.table` with the rows of `judges.variants` alone (the
#     rows that read the judge); `rise judges` (rise/toy/judges.py) reads them.
# The value the preset itself has (its `pretrain.seed`, its CLIP's steps) is the preset, so its own
# tables are one of the draws and the strongest judge.

COPIES = {"draws": "-draw", "judges": "-judge"}  # a derived preset's mark, by the key that declares it


def _own_value(raw: dict, base: str, kind: str) -> int:
    pretrain = raw["presets"][base].get("pretrain", {})
    return pretrain.get("seed", raw["seed"]) if kind == "draws" else pretrain.get("clip", {}).get("steps")


def _declared(spec: dict, kind: str) -> list[int]:
    return (spec.get(kind) or {}).get("seeds" if kind == "draws" else "clip_steps", [])


def copy_preset(raw: dict, base: str, kind: str, value: int) -> str:
    """The preset of `base`'s draw (kind `draws`, a seed) or judge (`judges`, CLIP steps) with
    `value`: the base itself for its own value."""
    return base if value == _own_value(raw, base, kind) else f"{base}{COPIES[kind]}{value}"


def draw_preset(raw: dict, base: str, seed: int) -> str:
    return copy_preset(raw, base, "draws", seed)


def preset_names(raw: dict) -> list[str]:
    """Every preset: those of params.yaml, each followed by its draws and judges (not itself again)."""
    names = []
    for name, spec in raw["presets"].items():
        names.append(name)
        for kind in COPIES:
            names += [n for n in (copy_preset(raw, name, kind, v) for v in _declared(spec, kind)) if n != name]
    return names


def preset_spec(raw: dict, preset: str, where: str = "params.yaml") -> tuple[dict, str | None, str | None]:
    """A preset's mapping; for a derived one also the preset it copies and how (`draws`, `judges`)."""
    if preset in raw["presets"]:
        return raw["presets"][preset], None, None
    for kind, mark in COPIES.items():
        base, found, value = preset.rpartition(mark)
        spec = raw["presets"].get(base) if found and value.isdigit() else None
        if spec is not None and int(value) in _declared(spec, kind) and copy_preset(raw, base, kind, int(value)) == preset:
            return _derive(raw, spec, base, preset, kind, int(value)), base, kind
    raise ConfigError(f"{where}: preset '{preset}' is not defined under presets (known: {preset_names(raw)})")


def _derive(raw: dict, spec: dict, base: str, preset: str, kind: str, value: int) -> dict:
    out = copy.deepcopy({k: v for k, v in spec.items() if k not in COPIES})
    out["results_in_git"] = False
    folder = f"runs/{preset}/models"
    models = out["models"]
    models["clip"]["pretrained"] = f"{folder}/{Path(models['clip']['pretrained']).name}"
    if kind == "draws":
        out["pretrain"]["seed"] = value
        out["tables"] = list(spec["draws"]["tables"])
        out["description"] = f"{spec['description']} Pretraining draw: seed {value} (presets.{base}.draws)."
        models["policies"] = {k: f"{folder}/{Path(v).name}" for k, v in models["policies"].items()}
        models["sam2"]["checkpoint"] = f"{folder}/{Path(models['sam2']['checkpoint']).name}"
        return out
    judges = spec["judges"]
    out["pretrain"]["clip"]["steps"] = value
    out["tables"] = [judges["table"]]
    table = deep_merge(raw["tables"], spec.get("overrides", {}).get("tables", {})).get(judges["table"], {})
    rows = [r for r in table.get("rows", []) if r["variant"] in judges["variants"]]
    out.setdefault("overrides", {}).setdefault("tables", {}).setdefault(judges["table"], {})["rows"] = rows
    out["description"] = f"{spec['description']} A weaker judge: CLIP pretrained {value} steps (presets.{base}.judges)."
    return out


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
    p, copy_of, copy_kind = preset_spec(raw, preset, where)
    effective = {k: deep_merge(raw[k], p.get("overrides", {}).get(k, {})) for k in OVERRIDABLE}
    # a preset may build some tables only (`tables: [...]`) and give them rows of its own
    all_tables = deep_merge(raw["tables"], p.get("overrides", {}).get("tables", {}))
    unknown = [t for t in p.get("tables", []) if t not in all_tables]
    if unknown:
        raise ConfigError(f"{where}: presets.{preset}.tables names {unknown}, which tables does not define "
                          f"(known: {sorted(all_tables)})")
    tables = {t: all_tables[t] for t in p["tables"]} if "tables" in p else all_tables

    # a preset may add variants of its own (the toy's name-split runs, whose training set only it has)
    own_variants = p.get("variants", {})
    clash = sorted(set(own_variants) & set(raw["variants"]))
    if clash:
        raise ConfigError(f"{where}: presets.{preset}.variants redefines {clash}, which variants already "
                          "defines: give the preset's own variants names of their own")
    variants = {}
    for name, spec in {**raw["variants"], **own_variants}.items():
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

    draws, judges = p.get("draws"), p.get("judges")
    for kind, named in (("draws", draws["tables"] if draws else []), ("judges", [judges["table"]] if judges else [])):
        if p.get(kind) and not p.get("pretrain"):
            raise ConfigError(f"{where}: presets.{preset}.{kind}: a preset without `pretrain` has no pretraining to vary")
        missing = [t for t in named if t not in tables]
        if missing:
            raise ConfigError(f"{where}: presets.{preset}.{kind} names tables {missing}, not tables of the preset "
                              f"(its tables: {sorted(tables)})")
    if judges:
        unknown = [v for v in judges["variants"] if not any(r["variant"] == v for r in tables[judges["table"]]["rows"])]
        if unknown:
            raise ConfigError(f"{where}: presets.{preset}.judges.variants names {unknown}, not rows of "
                              f"tables.{judges['table']}")
    sweeps = [] if copy_of else list(raw.get("sweeps", []))  # a derived preset builds its tables alone
    for v in sweeps:
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
        train_sets=p["train_sets"], image=effective["image"], train=TrainSettings(**effective["train"]),
        predict=PredictSettings(**effective["predict"]), evaluate=effective["evaluate"], variants=variants,
        tables=tables, figures={} if copy_of else raw.get("figures", {}), pretrain=p.get("pretrain"),
        table_note=p.get("table_note", ""), sweeps=sweeps, source=Path(source), overrides=overrides or {},
        draws={seed: copy_preset(raw, preset, "draws", seed) for seed in draws["seeds"]} if draws else {},
        draw_tables=list(draws["tables"]) if draws else [],
        judges={k: copy_preset(raw, preset, "judges", k) for k in judges["clip_steps"]} if judges else {},
        judge_table=judges["table"] if judges else None, judge_variants=list(judges["variants"]) if judges else [],
        copy_of=copy_of, copy_kind=copy_kind,
        layout=Layout(preset, Path(root) if root else Path("."), primary_seed=effective["train"]["seeds"][0]),
    )
