"""The paper's tables, regenerated from metrics files, with the paper's numbers alongside."""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from rise.config import Settings
from rise.layout import FINAL
from rise.contracts import atomic_write_text, read_metrics, write_json
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


def table_metrics(df: pd.DataFrame, columns: list) -> dict:
    """{variant: {dataset: {metric, "<metric> std"}, "seeds"}}: the table as DVC reads metrics
    (`dvc metrics show`, `dvc metrics diff`)."""
    def number(value):
        return None if pd.isna(value) else float(value)

    out = {}
    for _, row in df.iterrows():
        rec = out.setdefault(row["variant"], {"seeds": int(row["seeds"])})
        for dataset, metric in columns:
            rec.setdefault(dataset, {})[metric] = number(row[f"{dataset} {metric}"])
            rec[dataset][f"{metric} std"] = number(row[f"{dataset} {metric} std"])
    return out


def build_table(settings: Settings, name: str) -> Path:
    """One row per variant: each metric's mean over the variant's runs (seeds) and its standard
    deviation (`... std`, sample std; empty with one run), the seed count and the checkpoint read."""
    from rise.sweep import chosen_checkpoint

    table = settings.tables[name]
    layout = settings.layout
    select = settings.table_selection(name)
    datasets = settings.table_datasets(name)
    records = []
    for row in table["rows"]:
        variant = row["variant"]
        rec = {"label": row["label"], "variant": variant}
        runs = []  # per seed: (checkpoint, {dataset: metrics})
        for seed in settings.seeds(variant):
            ckpt = chosen_checkpoint(settings, variant, seed, select)
            runs.append((ckpt, {d: read_metrics(layout, variant, d, seed, ckpt) for d in datasets}))
        for dataset, metric in table["columns"]:
            values = pd.Series([m[dataset][metric] for _, m in runs], dtype=float)
            rec[f"{dataset} {metric}"] = round(values.mean(), 2)
            rec[f"{dataset} {metric} std"] = round(values.std(ddof=1), 2) if len(values) > 1 else None
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
    write_json(out.with_suffix(".json"), table_metrics(df, table["columns"]))
    shown = [c for d, m in table["columns"] for c in (f"{d} {m}", f"{d} {m} std")]
    log.info("%s (%s) -> %s\n%s", name, table["caption"], out, df[["label", *shown, "seeds"]].to_string(index=False))
    return out
