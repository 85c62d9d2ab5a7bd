"""The paper's tables, regenerated from metrics files, with the paper's numbers alongside."""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from rise.config import Settings
from rise.layout import FINAL
from rise.contracts import atomic_write_text, read_json, read_metrics, write_json
from rise.families import families_of, grpo_trained_on
from rise.fingerprints import describe_models
from rise.provenance import summary

log = logging.getLogger(__name__)



def _describe(spec: dict) -> str:
    where = spec.get("root") or spec.get("path") or spec.get("split", "")
    return f"{spec['loader']}:{where}"


def protocol_lines(settings: Settings) -> list[str]:
    """The reading of each ambiguous choice that the preset's tables will carry (`rise check`)."""
    t, e, sam = settings.train, settings.evaluate, settings.models["sam2"]
    prompts = sorted({spec.get("eval_prompt", "segzero") for name, spec in settings.datasets.items()
                      if name in settings.eval_sets})
    return [
        f"metric protocol: {e['protocol']} (evaluate.protocol); answer read by: {e['answer']} (evaluate.answer)",
        f"SAM2: {sam['config']} with {Path(sam['checkpoint']).name} (models.sam2)",
        f"GRPO loss: {t.loss_type}, entropy bonus {t.entropy_coef}, KL {t.beta}, "
        f"max completion {t.max_completion_length} tokens, strict JSON in rewards: {not t.json_single_quotes}, "
        f"R_sem scale: {t.semantic_scale}",
        f"training seeds: {t.seeds} (train.seeds; tables show mean and std over a variant's seeds); "
        "checkpoint read by each table: " + ", ".join(
            f"{name}={settings.tables[name].get('checkpoint', 'final')}" for name in settings.tables),
        "evaluation prompts: " + ", ".join(
            f"{name}={settings.datasets[name].get('eval_prompt', 'segzero')}" for name in settings.eval_sets)
        + f" ({'/'.join(prompts)})",
    ]


def table_metrics(df: pd.DataFrame, columns: list, families: dict[str, list[str]] | None = None) -> dict:
    """{variant: {dataset: {metric, "<metric> std", "families": {family: {metric, "<metric> std"}}},
    "seeds"}}: the table as DVC reads metrics (`dvc metrics show`, `dvc metrics diff`); "families"
    only in a table `by_family`."""
    def number(value):
        return None if pd.isna(value) else float(value)

    out = {}
    for _, row in df.iterrows():
        rec = out.setdefault(row["variant"], {"seeds": int(row["seeds"])})
        for dataset, metric in columns:
            rec.setdefault(dataset, {})[metric] = number(row[f"{dataset} {metric}"])
            rec[dataset][f"{metric} std"] = number(row[f"{dataset} {metric} std"])
            for family in (families or {}).get(dataset, []):
                column = f"{dataset} {family} {metric}"
                fam = rec[dataset].setdefault("families", {}).setdefault(family, {})
                fam[metric], fam[f"{metric} std"] = number(row.get(column)), number(row.get(f"{column} std"))
    return out


def _mean_and_std(rec: dict, column: str, values: list) -> None:
    """The mean over a row's runs, and beside it their sample standard deviation (None with one run)."""
    values = pd.Series(values, dtype=float)
    rec[column] = round(values.mean(), 2)
    rec[f"{column} std"] = round(values.std(ddof=1), 2) if len(values) > 1 else None


def build_table(settings: Settings, name: str) -> Path:
    """One row per variant: each metric's mean over the variant's runs (seeds) and its standard
    deviation (`... std`, sample std; empty with one run), the seed count and the checkpoint read."""
    from rise.sweep import chosen_checkpoint

    table = settings.tables[name]
    layout = settings.layout
    select = settings.table_selection(name)
    datasets = settings.table_datasets(name)
    records = []
    families: dict[str, list[str]] = {}  # per dataset, the families shown (`by_family`)
    for row in table["rows"]:
        variant = row["variant"]
        rec = {"label": row["label"], "variant": variant}
        runs = []  # per seed: (checkpoint, {dataset: metrics})
        for seed in settings.seeds(variant):
            ckpt = chosen_checkpoint(settings, variant, seed, select)
            runs.append((ckpt, {d: read_metrics(layout, variant, d, seed, ckpt) for d in datasets}))
        for dataset, metric in table["columns"]:
            _mean_and_std(rec, f"{dataset} {metric}", [m[dataset][metric] for _, m in runs])
        for dataset in (datasets if table.get("by_family") else []):
            per_run = [read_json(layout.family_metrics(variant, dataset, seed, ckpt))
                       for seed, (ckpt, _) in zip(settings.seeds(variant), runs)]
            shown = families.setdefault(dataset, [])
            shown += [f for f in families_of(settings, dataset, per_run) if f not in shown]
            for family in families_of(settings, dataset, per_run):
                for metric in (m for d, m in table["columns"] if d == dataset):
                    _mean_and_std(rec, f"{dataset} {family} {metric}", [run[family][metric] for run in per_run])
        rec["GRPO trained on"] = grpo_trained_on(settings, variant)
        rec["seeds"] = len(runs)
        rec["checkpoint"] = FINAL if select is None or not settings.variants[variant].train else \
            f"best on {select}: " + ", ".join(c for c, _ in runs)
        reported = row.get("reported") or [None] * len(table["columns"])
        for (dataset, metric), paper in zip(table["columns"], reported):
            rec[f"paper {dataset} {metric}"] = paper
        every = [m for _, ms in runs for m in ms.values()]
        for dataset in datasets:
            rec[f"{dataset} samples"] = runs[0][1][dataset]["n_samples"]
            rec[f"{dataset} failed parses"] = round(sum(m[dataset]["n_failed_parse"] for _, m in runs) / len(runs), 1)
        rec["protocol"] = ",".join(sorted({m["protocol"] for m in every}))
        rec["answer"] = ",".join(sorted({m.get("answer", "strict") for m in every}))
        prov = settings.provenance()
        rec.update(preset=settings.preset, policy=prov["policies"][settings.variants[variant].policy],
                   clip=f"{prov['clip']['model']}:{prov['clip']['pretrained']}",
                   sam2=f"{prov['sam2']['config']}:{Path(prov['sam2']['checkpoint']).name}",
                   data="; ".join(f"{d}={_describe(settings.datasets[d])}" for d in datasets),
                   note=settings.table_note)
        # the weights behind the row, one fingerprint per distinct model (rise/fingerprints.py)
        rec["models"] = describe_models({role: [(m.get("models") or {}).get(role) for m in every]
                                         for role in ("policy", "base", "clip", "sam2")
                                         if any((m.get("models") or {}).get(role) for m in every)})
        envs = [m.get("environment") or {} for m in every]
        rec["trained with"] = "; ".join(sorted({summary(e.get("train")) for e in envs} - {""}))
        rec["predicted with"] = "; ".join(sorted({summary(e.get("predict")) for e in envs} - {""}))
        records.append(rec)
    df = pd.DataFrame.from_records(records)
    out = layout.table(name)
    atomic_write_text(out, df.to_csv(index=False))
    write_json(out.with_suffix(".json"), table_metrics(df, table["columns"], families))
    shown = [c for d, m in table["columns"] for c in (f"{d} {m}", f"{d} {m} std")]
    log.info("%s (%s) -> %s\n%s", name, table["caption"], out, df[["label", *shown, "seeds"]].to_string(index=False))
    return out
