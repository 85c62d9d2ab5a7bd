"""The paper's tables, regenerated from metrics files, with the paper's numbers alongside."""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from rise.config import Settings
from rise.contracts import atomic_write_text, read_json

log = logging.getLogger(__name__)

DEMO_NOTE = ("demo preset: synthetic data; tiny random-weight models (the policy only taught the answer format "
             "on random boxes); numbers are not comparable to the paper")


def _describe(spec: dict) -> str:
    where = spec.get("root") or spec.get("path") or spec.get("split", "")
    return f"{spec['loader']}:{where}"


def build_table(settings: Settings, name: str) -> Path:
    table = settings.tables[name]
    layout = settings.layout
    records = []
    for row in table["rows"]:
        rec = {"label": row["label"], "variant": row["variant"]}
        metrics = {d: read_json(layout.metrics(row["variant"], d)) for d, _ in table["columns"]}
        for dataset, metric in table["columns"]:
            rec[f"{dataset} {metric}"] = round(metrics[dataset][metric], 2)
        reported = row.get("reported") or [None] * len(table["columns"])
        for (dataset, metric), paper in zip(table["columns"], reported):
            rec[f"paper {dataset} {metric}"] = paper
        for dataset, m in metrics.items():
            rec[f"{dataset} samples"] = m["n_samples"]
            rec[f"{dataset} failed parses"] = m["n_failed_parse"]
        rec["protocol"] = ",".join(sorted({m["protocol"] for m in metrics.values()}))
        prov = settings.provenance()
        rec.update(preset=settings.preset, policy=prov["policies"][settings.variants[row["variant"]].policy],
                   clip=f"{prov['clip']['model']}:{prov['clip']['pretrained']}", sam2=prov["sam2"]["config"],
                   data="; ".join(f"{d}={_describe(settings.datasets[d])}" for d in metrics),
                   note=DEMO_NOTE if settings.build_demo_models else "")
        records.append(rec)
    df = pd.DataFrame.from_records(records)
    out = layout.table(name)
    atomic_write_text(out, df.to_csv(index=False))
    log.info("%s (%s) -> %s\n%s", name, table["caption"], out,
             df[["label"] + [f"{d} {m}" for d, m in table["columns"]]].to_string(index=False))
    return out
