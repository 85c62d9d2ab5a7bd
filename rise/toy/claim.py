"""Does a toy table show the paper's claim? The variants rewarded with R_sem must beat Format-only
and the untrained base on held-out gIoU by more than `margin` seed standard deviations.

"Seed standard deviation" is read strictly: the larger of the two rows' (a base row, trained on no
seed, has none, so the other row's counts). The pooled one, sqrt((s1^2 + s2^2) / 2), is printed
beside it. Rows are recognised by their variants in params.yaml: a variant with `train: false` is
the base, one trained without the `semantic` reward is Format-only, one trained with it an R_sem
variant. Run it on a table the workflow wrote:

  rise --preset toy claim results/toy/table4.csv      # exit 0 when every R_sem row meets the bar
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from rise.errors import RiseError


def _std(value) -> float:
    return 0.0 if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def check_claim(table: str | Path, variants: dict, metric: str = "gIoU", margin: float = 2.0) -> list[dict]:
    """One record per (R_sem row, reference row, dataset): the gap, both standard deviations in units of
    which it is read, and whether it meets the bar."""
    table = Path(table)
    if not table.exists():
        raise RiseError(f"{table}: no such table (build it first, e.g. snakemake {table} --config preset=toy)")
    df = pd.read_csv(table)
    unknown = sorted(set(df["variant"]) - set(variants))
    if unknown:
        raise RiseError(f"{table}: variants {unknown} are not defined under `variants` in params.yaml")
    datasets = [c[: -len(f" {metric}")] for c in df.columns if c.endswith(f" {metric}") and not c.startswith("paper ")]
    if not datasets:
        raise RiseError(f"{table}: no '<dataset> {metric}' column")

    def kind(name: str) -> str:
        v = variants[name]
        return "base" if not v.train else "rsem" if "semantic" in v.rewards else "format_only"

    df["kind"] = [kind(v) for v in df["variant"]]
    references = df[df["kind"].isin(["base", "format_only"])]
    if not (df["kind"] == "rsem").any() or references.empty:
        raise RiseError(f"{table}: needs R_sem rows and a base or Format-only row to compare with")
    out = []
    for _, row in df[df["kind"] == "rsem"].iterrows():
        for _, ref in references.iterrows():
            for ds in datasets:
                a, b = row[f"{ds} {metric}"], ref[f"{ds} {metric}"]
                sa, sb = _std(row.get(f"{ds} {metric} std")), _std(ref.get(f"{ds} {metric} std"))
                gap = float(a) - float(b)
                spread = [x for x in (sa, sb) if x > 0]  # a row of one run has no std: left out of the pool
                strict = max(spread, default=0.0)
                pooled = math.sqrt(sum(x ** 2 for x in spread) / len(spread)) if spread else 0.0
                out.append({"row": row["label"], "against": ref["label"], "dataset": ds, "gap": round(gap, 2),
                            "std": round(strict, 2), "gap_in_std": round(gap / strict, 2) if strict else None,
                            "gap_in_pooled_std": round(gap / pooled, 2) if pooled else None,
                            "met": bool(strict) and gap > margin * strict})
    return out


def report(records: list[dict], metric: str = "gIoU", margin: float = 2.0) -> str:
    lines = [f"| R_sem row | against | dataset | {metric} gap | larger std | gap / std | gap / pooled std | met (> {margin:g} std) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['row']} | {r['against']} | {r['dataset']} | {r['gap']:+.2f} | {r['std']:.2f} | "
                     f"{r['gap_in_std'] if r['gap_in_std'] is not None else '-'} | "
                     f"{r['gap_in_pooled_std'] if r['gap_in_pooled_std'] is not None else '-'} | "
                     f"{'yes' if r['met'] else 'no'} |")
    met = sum(r["met"] for r in records)
    lines.append(f"\n{met} of {len(records)} comparisons meet the bar"
                 + ("" if met == len(records) else ": the claim is not shown at this bar")
                 + ("; a comparison of rows without a std (one seed each) never meets it"
                    if any(not r["std"] for r in records) else ""))
    return "\n".join(lines)
