"""dvc.yaml, generated from params.yaml so that DVC runs the same jobs as Snakemake.

DVC cannot compute: the (variant, dataset) pairs the tables need, each variant's policy and
training set, and which tables read which metrics are written out here as `foreach` items and
explicit stages. `rise dvc-yaml` rewrites dvc.yaml; `rise dvc-yaml --check` says whether it is up
to date (a test runs it). Stages, as Snakemake's rules:

  build_models, prepare_data@<dataset>, sample_train@<train set>, train@<variant> (trained),
  base_policy@<variant> (zero-shot), predict@<variant>-<dataset>, evaluate@<variant>-<dataset>,
  <table> (table1 ...), figure_qualitative

Every path holds `${preset}`, so `dvc exp run -S preset=paper` runs the paper preset with the same
file. Every output is cached, so `dvc push` / `dvc pull` move models, data, checkpoints, predictions,
metrics and curves (the remote is in .dvc/config). Each stage depends on the narrowest settings it reads (`variants.<name>`,
`presets.${preset}.datasets.<name>`, ...), so editing one variant reruns that variant alone. GPU
stages start through `rise launch` (rise/launch.py), as in Snakemake.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from rise.config import Settings, load_settings, read_params
from rise.errors import ConfigError

RUN = "runs/${preset}"
HEADER = """\
# GENERATED from params.yaml by `rise dvc-yaml` (rise/dvc_pipeline.py): do not edit by hand;
# rerun it after adding a variant, dataset or table (a test checks that this file is up to date).
#   dvc repro                         # every table and the figure of the active preset
#   dvc repro table4                  # one table
#   dvc repro evaluate@full_3b-reasonseg_test
#   dvc exp run -S preset=paper       # the paper preset
#   dvc metrics show                  # gIoU / cIoU per variant and dataset
#   dvc plots show                    # reward per term, KL and completion length per step
"""


def _jobs(settings: Settings) -> dict:
    """What the pipeline runs for a preset: the names that must agree across presets."""
    pairs = {}
    for table in settings.tables:
        for v, d in settings.table_needs(table):
            pairs[f"{v}-{d}"] = {"variant": v, "dataset": d}
    q = settings.figures.get("qualitative")
    for v in (q["variants"] if q else []):
        pairs[f"{v}-{q['dataset']}"] = {"variant": v, "dataset": q["dataset"]}
    used = [n for n in settings.variants if any(p["variant"] == n for p in pairs.values())]
    train_sets = sorted({settings.variants[n].train_set for n in used if settings.variants[n].train})
    datasets = sorted({settings.train_sets[t]["dataset"] for t in train_sets} | {p["dataset"] for p in pairs.values()})
    return {"datasets": datasets, "train_sets": {t: settings.train_sets[t]["dataset"] for t in train_sets},
            "pairs": pairs, "variants": used}


class _Params:
    """Settings keys a stage depends on, each as narrow as every preset allows."""

    def __init__(self, raw: dict):
        self.raw = raw

    def _exists(self, dotted: str) -> bool:
        for preset in self.raw["presets"]:
            node = self.raw
            for part in re.split(r"\.(?![^{]*\})", dotted.replace("${preset}", preset)):  # not inside ${...}
                if not isinstance(node, dict):
                    return False
                if part.startswith("${"):  # a foreach key or item: one of the names taken from the settings
                    node = {}
                    continue
                if part not in node:
                    return False
                node = node[part]
        return True

    def __call__(self, *keys: str) -> list[str]:
        out = []
        for key in keys:
            while not self._exists(key):  # a key some preset lacks: depend on its parent instead
                key = key.rsplit(".", 1)[0]
            if key not in out:
                out.append(key)
        return out


def pipeline(params_file: str | Path = "params.yaml") -> dict:
    raw = read_params(params_file)
    plans = {p: _jobs(load_settings(params_file, p)) for p in raw["presets"]}
    first, *others = plans
    for other in others:
        if plans[other] != plans[first]:
            raise ConfigError(f"{params_file}: presets '{first}' and '{other}' name different datasets or training "
                              "sets for the tables; dvc.yaml serves every preset, so they must agree")
    jobs = plans[first]
    s = load_settings(params_file, first)
    params = _Params(raw)
    P = "presets.${preset}"
    image = (f"{P}.overrides.image", "image")

    def log(stage, name):
        return f"rise --log {RUN}/logs/{stage}/{name}.log"

    stages: dict = {
        "build_models": {
            "cmd": f"{log('build_models', '${preset}')} build-models",
            "params": params("preset", "seed", f"{P}.models", f"{P}.build_demo_models", f"{P}.warm_up_steps", *image),
            "outs": [f"{RUN}/models"],
        },
        "prepare_data": {
            "foreach": jobs["datasets"],
            "do": {
                # loaders that read images in place write no image folder: an empty one keeps the out
                "cmd": [f"{log('prepare_data', '${item}')} prepare-data --dataset ${{item}}",
                        f"mkdir -p {RUN}/data/images/${{item}}"],
                "params": params("preset", "seed", f"{P}.datasets.${{item}}"),
                "outs": [f"{RUN}/data/${{item}}.jsonl", f"{RUN}/data/images/${{item}}"],
            },
        },
        "sample_train": {
            "foreach": {t: {"dataset": d} for t, d in jobs["train_sets"].items()},
            "do": {
                "cmd": f"{log('sample_train', '${key}')} sample-train --train-set ${{key}}",
                "params": params("preset", "seed", f"{P}.train_sets.${{key}}"),
                "deps": [f"{RUN}/data/${{item.dataset}}.jsonl", f"{RUN}/data/images/${{item.dataset}}"],
                "outs": [f"{RUN}/train/${{key}}.jsonl"],
            },
        },
    }
    used = {n: s.variants[n] for n in jobs["variants"]}  # those the tables and the figure read, as Snakemake
    trained = {n: {"policy": v.policy, "train_set": v.train_set} for n, v in used.items() if v.train}
    untrained = {n: {"policy": v.policy} for n, v in used.items() if not v.train}
    variant = ("variant_defaults", "variants.${key}", f"{P}.models.policies.${{item.policy}}")
    if trained:
        stages["train"] = {
            "foreach": trained,
            "do": {
                "cmd": f"{log('train', '${key}')} launch train --variant ${{key}}",
                "params": params("preset", "seed", *variant, "train", f"{P}.overrides.train", *image,
                                 f"{P}.models.clip", f"{P}.launch"),
                "deps": [f"{RUN}/models", f"{RUN}/train/${{item.train_set}}.jsonl"],
                "outs": [{f"{RUN}/checkpoints/${{key}}": {"persist": True}}],  # resumes from its latest checkpoint
                "plots": [f"{RUN}/curves/${{key}}.csv", f"{RUN}/curves/${{key}}.png"],
            },
        }
    if untrained:
        stages["base_policy"] = {
            "foreach": untrained,
            "do": {
                "cmd": f"{log('train', '${key}')} train --variant ${{key}}",
                "params": params("preset", "seed", *variant),
                "deps": [f"{RUN}/models"],
                "outs": [f"{RUN}/checkpoints/${{key}}"],
                "plots": [f"{RUN}/curves/${{key}}.csv"],
            },
        }
    pair = "${item.variant}-${item.dataset}"
    stages["predict"] = {
        "foreach": jobs["pairs"],
        "do": {
            "cmd": f"{log('predict', pair)} launch predict --variant ${{item.variant}} --eval-set ${{item.dataset}}",
            "params": params("preset", "seed", "predict", f"{P}.overrides.predict", *image, f"{P}.models.sam2",
                             "evaluate.answer", f"{P}.overrides.evaluate",
                             "variant_defaults", "variants.${item.variant}", f"{P}.datasets.${{item.dataset}}"),
            "deps": [f"{RUN}/models", f"{RUN}/checkpoints/${{item.variant}}", f"{RUN}/data/${{item.dataset}}.jsonl",
                     f"{RUN}/data/images/${{item.dataset}}"],
            "outs": [f"{RUN}/predictions/${{item.variant}}/${{item.dataset}}.jsonl",
                     f"{RUN}/predictions/${{item.variant}}/${{item.dataset}}.env.json"],
        },
    }
    stages["evaluate"] = {
        "foreach": jobs["pairs"],
        "do": {
            "cmd": f"{log('evaluate', pair)} evaluate --variant ${{item.variant}} --eval-set ${{item.dataset}}",
            "params": params("preset", "seed", "evaluate", f"{P}.overrides.evaluate"),
            "deps": [f"{RUN}/predictions/${{item.variant}}/${{item.dataset}}.jsonl", f"{RUN}/data/${{item.dataset}}.jsonl"],
            "outs": [f"{RUN}/metrics/${{item.variant}}/${{item.dataset}}.samples.csv"],
            "metrics": [f"{RUN}/metrics/${{item.variant}}/${{item.dataset}}.json"],
        },
    }
    for name in s.tables:
        stages[name] = {
            "cmd": [f"{log('table', name)} table --name {name}", f"{log('table', name)} show --write --name {name}"],
            "params": params("preset", f"tables.{name}"),
            "deps": [f"{RUN}/metrics/{v}/{d}.json" for v, d in s.table_needs(name)],
            "outs": [f"results/${{preset}}/{name}.csv", f"results/${{preset}}/{name}.md"],
        }
    q = s.figures.get("qualitative")
    if q:
        stages["figure_qualitative"] = {
            "cmd": f"{log('figure', 'qualitative')} figure",
            "params": params("figures.qualitative"),
            "deps": [f"{RUN}/predictions/{v}/{q['dataset']}.jsonl" for v in q["variants"]],
            "outs": ["results/${preset}/figures/qualitative.png"],
        }
    return {"stages": stages, "plots": _plots(s, list(trained))}


def _plots(s: Settings, trained: list[str]) -> list[dict]:
    """`dvc plots show`: one plot per quantity, a line per trained variant."""
    def curve(name):
        return f"{RUN}/curves/{name}.csv"
    plots = [{"reward (total)": {"x": "step", "y": {curve(n): "reward" for n in trained}}}]
    for term in ("semantic", "think_format", "seg_format"):
        # as rise/rewards.py:build_rewards: without CoT, R_think is not applied (nor logged)
        having = [n for n in trained if term in s.variants[n].rewards and (term != "think_format" or s.variants[n].cot)]
        plots.append({f"reward {term}": {"x": "step", "y": {curve(n): f"rewards/{term}/mean" for n in having}}})
    plots.append({"KL to the reference policy": {"x": "step", "y": {curve(n): "kl" for n in trained}}})
    plots.append({"completion length (tokens)": {"x": "step", "y": {curve(n): "completions/mean_length" for n in trained}}})
    return plots


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data):  # write repeated foreach items out, no YAML anchors
        return True


def render(params_file: str | Path = "params.yaml") -> str:
    return HEADER + yaml.dump(pipeline(params_file), Dumper=_Dumper, sort_keys=False, width=120)


def write_or_check(params_file: str | Path = "params.yaml", dvc_file: str | Path = "dvc.yaml", check: bool = False) -> bool:
    """Writes dvc.yaml (or, with `check`, only compares); True when it was already up to date."""
    text = render(params_file)
    target = Path(dvc_file)
    current = target.read_text() if target.exists() else None
    if current == text:
        return True
    if not check:
        target.write_text(text)
    return False
