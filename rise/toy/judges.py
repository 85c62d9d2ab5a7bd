"""How RISE's effect depends on its judge: the rows that read R_sem, trained again with weaker toy
CLIPs, against Format-only and the base.

A preset's `judges` (params.yaml; rise/config.py) declares CLIP step counts; each names a preset that
pretrains its CLIP alone for that many steps, shares the preset's policy and SAM2, and trains the rows
of `judges.variants` of `judges.table` with that CLIP as R_sem's judge. `judges_table` reads each of
them, and the preset itself as the strongest judge, and writes under results/<preset>/judges/:

  <table>.csv    one row per judge: its CLIP steps, its quality from its held-out report (zero-shot
                 accuracy on class names; how often R_sem ranks the named object's cell first among a
                 class-name group), each judged row's mean and std, and per reference row (Format-only,
                 the base: the preset's own runs, which no judge reads) the gap with a 95% interval
                 from the paired bootstrap (rise/toy/claim.py)
  <table>.png    the gap over Format-only against the judge's zero-shot accuracy, with the intervals
  <table>.md, <table>.json

  rise --preset toy judges      # after each judge's table is built
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from rise.config import Settings
from rise.contracts import atomic_write_text, save_figure, write_json
from rise.errors import RiseError
from rise.report import frame_markdown
from rise.toy.claim import bootstrap_gap, row_kind
from rise.toy.models import copy_settings, pretrained_models


def judge_quality(settings: Settings) -> dict:
    path = Path(pretrained_models(settings)["clip"]["report"])
    if not path.exists():
        raise RiseError(f"{path}: no CLIP pretraining report (run the judge's pretraining first)")
    heldout = json.loads(path.read_text())["heldout"]
    return {"zero-shot classname": heldout["zero_shot_accuracy_classname"],
            "R_sem top-1 classname": heldout["rsem_top1_cell_classname"]}


def judges_table(settings: Settings, metric: str = "gIoU", resamples: int = 2000) -> dict[str, Path]:
    name = settings.judge_table
    own = pd.read_csv(_table(settings, name))
    references = own[[row_kind(settings.variants[v]) != "rsem" for v in own["variant"]]]
    rows = []
    for steps, s in copy_settings(settings, "judges").items():
        judged = pd.read_csv(_table(s, name))
        quality = judge_quality(s)
        for _, row in judged.iterrows():
            if row["variant"] not in settings.judge_variants:  # the preset's own table has every row
                continue
            # each dataset overall, then per instruction family where the table shows them (`by_family`)
            columns = [c[: -len(f" {metric}")] for c in judged.columns
                       if c.endswith(f" {metric}") and not c.startswith("paper ")]
            for column in columns:
                dataset, _, family = column.partition(" ")
                if dataset not in s.table_datasets(name):
                    continue
                out = {"clip steps": steps, "preset": s.preset, **quality, "row": row["label"],
                       "dataset": dataset, "family": family or "all", metric: round(float(row[f"{column} {metric}"]), 2),
                       f"{metric} std": row.get(f"{column} {metric} std")}
                for _, ref in references.iterrows():
                    found = bootstrap_gap(s, row["variant"], ref["variant"], dataset, metric, resamples=resamples,
                                          against_settings=settings, family=family or None)
                    out.update({f"gap vs {ref['label']}": found["gap"], f"low vs {ref['label']}": found["low"],
                                f"high vs {ref['label']}": found["high"]})
                rows.append(out)
    return _write(settings, name, metric, pd.DataFrame(rows), list(references["label"]))


def _table(settings: Settings, name: str) -> Path:
    path = settings.layout.table(name)
    if not path.exists():
        raise RiseError(f"{path}: no such table (build it first: snakemake {path} --config preset=...)")
    return path


def _write(settings: Settings, name: str, metric: str, df: pd.DataFrame, references: list[str]) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = settings.layout.judges_table(name)
    against = next((r for r in references if "Format" in r), references[0])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups = list(df.groupby(["row", "dataset", "family"], sort=False))
    for k, ((row, dataset, family), part) in enumerate(groups):
        part = part.sort_values("zero-shot classname")
        # side by side, so that the intervals of the families do not hide each other
        x = part["zero-shot classname"] + 0.006 * (k - (len(groups) - 1) / 2)
        y = part[f"gap vs {against}"]
        ax.errorbar(x, y, yerr=[y - part[f"low vs {against}"], part[f"high vs {against}"] - y], marker="o",
                    capsize=3, lw=2 if family == "all" else 1, label=f"{row}, {dataset}: {family}")
        if family == "all":
            for xi, yi, steps in zip(x, y, part["clip steps"]):
                ax.annotate(f"{steps} steps", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("judge: toy CLIP zero-shot accuracy on class names (held out)")
    ax.set_ylabel(f"{metric} gap over {against} (95% interval)")
    ax.set_title(f"{name}: RISE's gain against the judge's quality")
    ax.legend(fontsize=8)
    paths = {"csv": base, "figure": base.with_suffix(".png"), "markdown": base.with_suffix(".md"),
             "metrics": base.with_suffix(".json")}
    save_figure(fig, paths["figure"])
    atomic_write_text(paths["csv"], df.to_csv(index=False))
    atomic_write_text(paths["markdown"], "\n".join([
        f"# {name}: the rows that read R_sem, by judge ({metric})", "",
        f"Each judge is the toy CLIP pretrained for that many steps; the references ({', '.join(references)}) are "
        f"preset `{settings.preset}`'s own runs. Intervals: paired bootstrap over test samples and seeds.", "",
        frame_markdown(df), ""]))
    write_json(paths["metrics"], {f"{r['row']} {r['dataset']} {r['family']} @ {r['clip steps']} steps":
                                  {"zero-shot": r["zero-shot classname"], f"gap vs {against}": r[f"gap vs {against}"]}
                                  for _, r in df.iterrows()})
    return paths
