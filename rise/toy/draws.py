"""The claim over pretraining draws: does it hold for every seed of the three pretraining stages, or
for the one a table was built on?

A preset's `draws` (params.yaml; rise/config.py) declares seeds; each names a preset that pretrains
its models with that seed and builds `draws.tables`. For one of those tables, `draws_table` reads
every draw's copy and, per draw, the claim's comparisons (rise/toy/claim.py: every R_sem row against
Format-only and the base, overall gIoU): the 2-SD rule and the paired bootstrap's 95% interval.
It writes, under results/<preset>/draws/:

  <table>.csv               one row per draw: its pretraining reports (the base policy's greedy
                            hit rate per family, CLIP's zero-shot accuracy on class names), each
                            row's overall mean, how many comparisons pass each way, and whether
                            every one does
  <table>.comparisons.csv   one row per draw, comparison and family (`all`: the overall columns,
                            the only ones the verdict counts; then each instruction family of a
                            table by family): gap, std, 2-SD verdict, interval
  <table>.md                both, the share of draws in which the claim holds, and per comparison
                            (overall, then per family) the mean gap over draws with a 95% interval
                            from a bootstrap over draws (each resample draws the draws with
                            replacement and, for each, one resample of its own paired bootstrap:
                            draws, samples and seeds)
  <table>.json              the shares and the overall across-draw gaps, for `dvc metrics show`

  rise --preset toy draws --name table4      # after every draw's table is built
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from rise.config import Settings
from rise.contracts import atomic_write_text, write_json
from rise.errors import RiseError
from rise.report import frame_markdown
from rise.toy.claim import bootstrap_gap, check_claim
from rise.toy.models import copy_settings, pretrained_models

FAMILIES_READ = ("classname", "colour", "shape")  # the base policy's greedy hit rate, per family
OVERALL = "all"  # the family column's value for a table's overall columns (what the verdict reads)


def pretraining_summary(settings: Settings) -> dict:
    """What the draw's pretraining reached, from its held-out reports."""
    made = pretrained_models(settings)
    policy, clip = Path(made["policy"]["report"]), Path(made["clip"]["report"])
    for path in (policy, clip):
        if not path.exists():
            raise RiseError(f"{path}: no pretraining report (run the draw's pretraining first)")
    greedy = json.loads(policy.read_text())["heldout"]["greedy"]
    out = {f"base hit {family}": greedy[family]["hit_rate"] for family in FAMILIES_READ if family in greedy}
    out["clip zero-shot classname"] = json.loads(clip.read_text())["heldout"]["zero_shot_accuracy_classname"]
    return out


def draws_table(settings: Settings, table: str, metric: str = "gIoU", margin: float = 2.0,
                resamples: int = 2000) -> dict[str, Path]:
    """Reads every draw's `table`, writes the four files above; returns their paths."""
    if table not in settings.draw_tables:
        raise RiseError(f"presets.{settings.preset}.draws.tables does not name '{table}' "
                        f"(it names {settings.draw_tables})")
    rows, comparisons, resampled = [], [], {}
    for seed, s in copy_settings(settings, "draws").items():
        path = s.layout.table(table)
        records = check_claim(path, s.variants, metric, margin)
        overall = [r for r in records if not r["family"]]
        for r in records:  # overall and, in a table by family, per family (read, not counted)
            family = r["family"] or OVERALL
            found = bootstrap_gap(s, r["row_variant"], r["against_variant"], r["dataset"], metric,
                                  family=r["family"], resamples=resamples, keep_resamples=True)
            key = (r["row"], r["against"], r["dataset"], family)
            resampled.setdefault(key, []).append(found.pop("resampled"))
            comparisons.append({"draw": seed, "preset": s.preset, "row": r["row"], "against": r["against"],
                                "dataset": r["dataset"], "family": family, "gap": r["gap"], "std": r["std"],
                                "met": r["met"], "low": found["low"], "high": found["high"],
                                "p_not_above": found["p_not_above"], "above": found["low"] > 0})
        mine = [c for c in comparisons if c["draw"] == seed and c["family"] == OVERALL]
        df = pd.read_csv(path).set_index("label")
        means = {f"{label} {ds} {metric}": round(float(df.loc[label, f"{ds} {metric}"]), 2) for label in df.index
                 for ds in {r["dataset"] for r in overall}}
        rows.append({"draw": seed, "preset": s.preset, **pretraining_summary(s), **means,
                     "met (2 std)": sum(c["met"] for c in mine), "interval above 0": sum(c["above"] for c in mine),
                     "comparisons": len(mine), "claim holds (2 std)": all(c["met"] for c in mine),
                     "claim holds (intervals)": all(c["above"] for c in mine)})
    across = _across_draws(resampled, comparisons, resamples)
    return _write(settings, table, metric, margin, rows, comparisons, across)


def _across_draws(resampled: dict, comparisons: list[dict], resamples: int, seed: int = 0) -> list[dict]:
    """Per comparison: the mean gap over draws and a 95% interval from a bootstrap over draws, each
    draw contributing one resample of its own paired bootstrap."""
    rng = np.random.default_rng(seed)
    out = []
    # the overall comparisons first, so their intervals are those of a table without family columns
    ordered = sorted(resampled.items(), key=lambda item: item[0][3] != OVERALL)
    for (row, against, dataset, family), per_draw in ordered:
        gaps = np.array(per_draw)  # (draws, resamples)
        n = gaps.shape[0]
        picked = rng.integers(0, n, size=(resamples, n))
        columns = rng.integers(0, gaps.shape[1], size=(resamples, n))
        means = gaps[picked, columns].mean(1)
        low, high = np.percentile(means, [2.5, 97.5])
        observed = [c["gap"] for c in comparisons
                    if (c["row"], c["against"], c["dataset"], c["family"]) == (row, against, dataset, family)]
        out.append({"row": row, "against": against, "dataset": dataset, "family": family, "draws": n,
                    "mean gap": round(float(np.mean(observed)), 2), "low": round(float(low), 2),
                    "high": round(float(high), 2), "draws with gap > 0": int(sum(g > 0 for g in observed))})
    return out


def _write(settings: Settings, table: str, metric: str, margin: float, rows: list[dict], comparisons: list[dict],
           across: list[dict]) -> dict[str, Path]:
    base = settings.layout.draws_table(table)
    n = len(rows)
    holds_std = sum(r["claim holds (2 std)"] for r in rows)
    holds_ci = sum(r["claim holds (intervals)"] for r in rows)
    summary = {"draws": n, "holds (2 std)": holds_std, "holds (intervals)": holds_ci,
               "share holds (2 std)": round(holds_std / n, 3), "share holds (intervals)": round(holds_ci / n, 3),
               "metric": metric, "margin": margin,
               "across draws": {f"{a['row']} vs {a['against']} ({a['dataset']})":
                                {"mean gap": a["mean gap"], "low": a["low"], "high": a["high"]}
                                for a in across if a["family"] == OVERALL}}
    by_draw = pd.DataFrame(rows)
    by_comparison = pd.DataFrame(comparisons)
    across_overall = pd.DataFrame([a for a in across if a["family"] == OVERALL]).drop(columns="family")
    across_families = pd.DataFrame([a for a in across if a["family"] != OVERALL])
    if not across_families.empty:  # grouped by family, so each family reads as one block
        across_families = across_families.sort_values("family", kind="stable")
    lines = [f"# {table} over {n} pretraining draws ({metric}, seeds {', '.join(str(r['draw']) for r in rows)})", "",
             f"The claim (every R_sem row above Format-only and the base on every dataset) holds in "
             f"**{holds_std} of {n}** draws by the {margin:g}-std rule and in **{holds_ci} of {n}** by the "
             "bootstrap's 95% intervals.", "", "## Per draw", "", frame_markdown(by_draw), "",
             "## Across draws", "",
             "Mean gap over the draws, with a 95% interval from a bootstrap over draws (each resample draws the "
             "draws with replacement and one resample of each drawn draw's paired bootstrap over test samples "
             "and seeds).", "", frame_markdown(across_overall), "",
             *(["## Across draws, per instruction family", "",
                "The same comparisons on each family's samples alone (not counted in the verdict).", "",
                frame_markdown(across_families), ""] if not across_families.empty else []),
             "## Every comparison", "", frame_markdown(by_comparison), ""]
    paths = {"csv": base, "comparisons": base.with_suffix(".comparisons.csv"), "markdown": base.with_suffix(".md"),
             "metrics": base.with_suffix(".json")}
    atomic_write_text(paths["csv"], by_draw.to_csv(index=False))
    atomic_write_text(paths["comparisons"], by_comparison.to_csv(index=False))
    atomic_write_text(paths["markdown"], "\n".join(lines))
    write_json(paths["metrics"], summary)
    return paths

