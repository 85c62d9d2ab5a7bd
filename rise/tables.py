"""The paper's tables, regenerated from metrics files, with the paper's numbers alongside."""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from rise.config import Settings
from rise.contracts import atomic_write_text, read_json
from rise.provenance import summary

log = logging.getLogger(__name__)

DEMO_NOTE = ("demo preset: synthetic data; tiny random-weight models (the policy only taught the answer format "
             "on random boxes); numbers are not comparable to the paper")


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
        f"GRPO loss: {t['loss_type']}, entropy bonus {t['entropy_coef']}, KL {t['beta']}, "
        f"max completion {t['max_completion_length']} tokens, strict JSON in rewards: {not t['json_single_quotes']}",
        "evaluation prompts: " + ", ".join(
            f"{name}={settings.datasets[name].get('eval_prompt', 'segzero')}" for name in settings.eval_sets)
        + f" ({'/'.join(prompts)})",
    ]


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
        rec["answer"] = ",".join(sorted({m.get("answer", "strict") for m in metrics.values()}))
        prov = settings.provenance()
        rec.update(preset=settings.preset, policy=prov["policies"][settings.variants[row["variant"]].policy],
                   clip=f"{prov['clip']['model']}:{prov['clip']['pretrained']}",
                   sam2=f"{prov['sam2']['config']}:{Path(prov['sam2']['checkpoint']).name}",
                   data="; ".join(f"{d}={_describe(settings.datasets[d])}" for d in metrics),
                   note=DEMO_NOTE if settings.build_demo_models else "")
        envs = [m.get("environment") or {} for m in metrics.values()]
        rec["trained with"] = "; ".join(sorted({summary(e.get("train")) for e in envs} - {""}))
        rec["predicted with"] = "; ".join(sorted({summary(e.get("predict")) for e in envs} - {""}))
        records.append(rec)
    df = pd.DataFrame.from_records(records)
    out = layout.table(name)
    atomic_write_text(out, df.to_csv(index=False))
    log.info("%s (%s) -> %s\n%s", name, table["caption"], out,
             df[["label"] + [f"{d} {m}" for d, m in table["columns"]]].to_string(index=False))
    return out
