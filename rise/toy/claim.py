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

import numpy as np
import pandas as pd

from rise.errors import RiseError


def _std(value) -> float:
    return 0.0 if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def row_kind(variant) -> str:
    """What a table row is to the claim: `base` (untrained), `rsem` (trained with R_sem) or `format_only`."""
    return "base" if not variant.train else "rsem" if "semantic" in variant.rewards else "format_only"


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
    # "<dataset> <metric>" (a dataset's name has no space), and in a table by family
    # "<dataset> <family> <metric>": compared too, apart from the verdict
    columns = [c[: -len(f" {metric}")] for c in df.columns if c.endswith(f" {metric}") and not c.startswith("paper ")]
    datasets = [c for c in columns if " " not in c]
    by_family = [tuple(c.split(" ", 1)) for c in columns if " " in c and c.split(" ", 1)[0] in datasets]
    if not datasets:
        raise RiseError(f"{table}: no '<dataset> {metric}' column")

    df["kind"] = [row_kind(variants[v]) for v in df["variant"]]
    references = df[df["kind"].isin(["base", "format_only"])]
    if not (df["kind"] == "rsem").any() or references.empty:
        raise RiseError(f"{table}: needs R_sem rows and a base or Format-only row to compare with")
    out = []
    for _, row in df[df["kind"] == "rsem"].iterrows():
        for _, ref in references.iterrows():
            for ds, family in [(d, None) for d in datasets] + by_family:
                column = f"{ds} {family}" if family else ds
                a, b = row[f"{column} {metric}"], ref[f"{column} {metric}"]
                sa, sb = _std(row.get(f"{column} {metric} std")), _std(ref.get(f"{column} {metric} std"))
                gap = float(a) - float(b)
                spread = [x for x in (sa, sb) if x > 0]  # a row of one run has no std: left out of the pool
                strict = max(spread, default=0.0)
                pooled = math.sqrt(sum(x ** 2 for x in spread) / len(spread)) if spread else 0.0
                out.append({"row": row["label"], "against": ref["label"], "dataset": ds, "family": family,
                            "gap": round(gap, 2),
                            "row_variant": row["variant"], "against_variant": ref["variant"],
                            "std": round(strict, 2), "gap_in_std": round(gap / strict, 2) if strict else None,
                            "gap_in_pooled_std": round(gap / pooled, 2) if pooled else None,
                            "met": bool(strict) and gap > margin * strict})
    return out


def report(records: list[dict], metric: str = "gIoU", margin: float = 2.0) -> str:
    """The comparisons as Markdown and the verdict: the 2-SD rule over the overall columns; beside it
    the bootstrap's 95% interval where `with_intervals` found one; per-family comparisons (a table by
    family) follow, not counted in the verdict."""
    intervals = any(r.get("interval") for r in records)

    def table(rows):
        head = (f"| R_sem row | against | dataset | {metric} gap | larger std | gap / std | gap / pooled std | "
                f"met (> {margin:g} std) |" + (" 95% interval | P(gap <= 0) |" if intervals else ""))
        lines = [head, "|---" * head.count(" | ") + "|---|"]
        for r in rows:
            where = f"{r['dataset']} {r['family']}" if r.get("family") else r["dataset"]
            line = (f"| {r['row']} | {r['against']} | {where} | {r['gap']:+.2f} | {r['std']:.2f} | "
                    f"{r['gap_in_std'] if r['gap_in_std'] is not None else '-'} | "
                    f"{r['gap_in_pooled_std'] if r['gap_in_pooled_std'] is not None else '-'} | "
                    f"{'yes' if r['met'] else 'no'} |")
            if intervals:
                line += (f" [{r['interval'][0]:+.2f}, {r['interval'][1]:+.2f}] | {r['p_not_above']:.3f} |"
                         if r.get("interval") else " - | - |")
            lines.append(line)
        return lines

    overall = [r for r in records if not r.get("family")]
    families = [r for r in records if r.get("family")]
    lines = table(overall)
    met = sum(r["met"] for r in overall)
    lines.append(f"\n{met} of {len(overall)} comparisons meet the bar"
                 + ("" if met == len(overall) else ": the claim is not shown at this bar")
                 + ("; a comparison of rows without a std (one seed each) never meets it"
                    if any(not r["std"] for r in overall) else ""))
    if intervals:
        above = sum(bool(r.get("above")) for r in overall)
        lines.append(f"{above} of {len(overall)} have a 95% interval above 0 (paired bootstrap over the test "
                     "samples and each row's seeds)")
    missing = next((r["why_no_interval"] for r in records if r.get("why_no_interval")), None)
    if missing:
        lines.append(f"no interval where the runs' per-sample scores are missing, e.g. {missing}")
    if families:
        lines += ["", "Per instruction family (not counted in the verdict):", *table(families)]
    return "\n".join(lines)


# ------------------------------------------------------------------ a seed-level test: the bootstrap

def run_scores(settings, variant: str, dataset: str, family: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample intersections and unions of each run (seed) of a variant at its final checkpoint,
    as (seeds x samples) arrays in one sample order; `family`: that family's samples alone."""
    from rise.layout import FINAL

    runs = []
    for seed in settings.seeds(variant):
        path = settings.layout.sample_scores(variant, dataset, seed, FINAL)
        if not path.exists():
            raise RiseError(f"{path}: no per-sample scores (run the evaluate stage, or pull them)")
        df = pd.read_csv(path, keep_default_na=False).sort_values("sample_id")
        if family is not None:
            df = df[df["kind"] == family]
        runs.append(df[["sample_id", "intersection", "union"]].to_numpy())
    ids = runs[0][:, 0]
    if any(len(r) != len(ids) or (r[:, 0] != ids).any() for r in runs):
        raise RiseError(f"{variant} on {dataset}: the runs' per-sample scores hold different samples")
    return (np.array([r[:, 1] for r in runs], dtype=float), np.array([r[:, 2] for r in runs], dtype=float))


def bootstrap_gap(settings, variant: str, against: str, dataset: str, metric: str = "gIoU", *,
                  family: str | None = None, resamples: int = 2000, seed: int = 0,
                  keep_resamples: bool = False, against_settings=None) -> dict:
    """The gap (variant minus against, percent: each row's mean over its runs) with a 95% interval
    from a paired bootstrap: each resample draws the test samples with replacement (the same ones for
    both rows: paired) and each row's seeds with replacement, and takes the difference of the rows'
    means over their drawn seeds. `p_not_above` is the share of resamples whose gap is 0 or below
    (a one-sided p-value for "the variant is above"). `keep_resamples`: the resampled gaps too, as
    `resampled` (rise/toy/draws.py pools them over pretraining draws). `against_settings`: where the
    `against` row's runs lie when another preset's (a weaker judge's row against the preset's own)."""
    from rise.metrics import sample_iou

    protocol = settings.evaluate["protocol"]
    rng = np.random.default_rng(seed)
    (ia, ua), (ib, ub) = (run_scores(s, v, dataset, family)
                          for s, v in ((settings, variant), (against_settings or settings, against)))
    if ia.shape[1] != ib.shape[1]:
        raise RiseError(f"{variant} and {against} were scored on different samples of {dataset}")
    n = ia.shape[1]
    if n == 0:
        raise RiseError(f"{dataset}: no samples" + (f" of family {family}" if family else ""))
    every = np.arange(n)[None, :]
    idx = np.concatenate([every, rng.integers(0, n, size=(resamples, n))])  # row 0: the samples as they are

    def per_run(inter, union):  # (seeds, 1 + resamples): each run's metric on each draw of the samples
        if metric == "cIoU":
            return 100 * inter[:, idx].sum(-1) / np.maximum(union[:, idx].sum(-1), 1)
        iou = np.array([[sample_iou(i, u, protocol) for i, u in zip(ri, ru)] for ri, ru in zip(inter, union)])
        return 100 * iou[:, idx].mean(-1)

    def row_means(values):  # the mean over seeds drawn with replacement, per resample
        drawn = rng.integers(0, values.shape[0], size=(resamples, values.shape[0]))
        return np.take_along_axis(values[:, 1:].T, drawn, axis=1).mean(1)

    a, b = per_run(ia, ua), per_run(ib, ub)
    gaps = np.round(row_means(a) - row_means(b), 9)  # identical rows: exactly 0, not float noise
    low, high = np.percentile(gaps, [2.5, 97.5])
    return {"gap": round(float(a[:, 0].mean() - b[:, 0].mean()), 2), "low": round(float(low), 2),
            "high": round(float(high), 2), "p_not_above": round(float((gaps <= 0).mean()), 4), "samples": n,
            "seeds": [int(ia.shape[0]), int(ib.shape[0])], "resamples": resamples,
            **({"resampled": gaps} if keep_resamples else {})}


def with_intervals(settings, records: list[dict], metric: str = "gIoU", resamples: int = 2000) -> list[dict]:
    """Each comparison of `check_claim` with its bootstrap interval (`bootstrap_gap`), where the runs'
    per-sample scores are on disk; where not, the record says so in `interval`."""
    out = []
    for r in records:
        try:
            found = bootstrap_gap(settings, r["row_variant"], r["against_variant"], r["dataset"], metric,
                                  family=r.get("family"), resamples=resamples)
            out.append({**r, "interval": [found["low"], found["high"]], "p_not_above": found["p_not_above"],
                        "above": found["low"] > 0})
        except RiseError as exc:
            out.append({**r, "interval": None, "p_not_above": None, "above": None, "why_no_interval": str(exc)})
    return out
