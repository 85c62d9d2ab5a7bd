"""Checkpoint sweeps: how each saved checkpoint of a variant scores, and which one a table reads.

A training run keeps its policy every `train.save_steps` (`<run>/step<N>/`, rise/train.py) and at
the end (`final`). `rise sweep --variant V` gathers the metrics of every checkpoint of every seed
on every dataset of V's tables into `results/<preset>/sweeps/V.csv`, with a plot of gIoU and cIoU
against the training step beside it (mean over seeds, one line per dataset, the seeds' range shaded).
Tables read the `final` checkpoint, or with `checkpoint: best on <dataset>` the one with the best
gIoU on that dataset, chosen per seed (`chosen_checkpoint`).
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from rise.config import Settings
from rise.contracts import atomic_write_text, read_json, save_figure
from rise.layout import FINAL
from rise.plan import sweep_needs

log = logging.getLogger(__name__)


def checkpoint_step(settings: Settings, variant: str, seed: int, checkpoint: str) -> int:
    """The training step a checkpoint was saved at (`final`: the run's last step, from its policy.json)."""
    if checkpoint != FINAL:
        return int(checkpoint.removeprefix("step"))
    return int(read_json(settings.layout.policy_ref(variant, seed)).get("steps", 0))


def chosen_checkpoint(settings: Settings, variant: str, seed: int, select_on: str | None) -> str:
    """`final`, or the checkpoint with the best gIoU on `select_on` (the earliest among equals)."""
    if select_on is None or not settings.variants[variant].train:
        return FINAL
    scores = {c: read_json(settings.layout.metrics(variant, select_on, seed, c))["gIoU"]
              for c in settings.checkpoints(variant)}
    return max(scores, key=scores.get)


def sweep_frame(settings: Settings, variant: str) -> pd.DataFrame:
    records = []
    for need in sweep_needs(settings, variant):
        m = read_json(settings.layout.metrics(need.variant, need.dataset, need.seed, need.checkpoint))
        records.append({"variant": variant, "seed": need.seed, "checkpoint": need.checkpoint,
                        "step": checkpoint_step(settings, variant, need.seed, need.checkpoint),
                        "dataset": need.dataset, "gIoU": round(m["gIoU"], 2), "cIoU": round(m["cIoU"], 2),
                        "samples": m["n_samples"], "failed parses": m["n_failed_parse"]})
    return pd.DataFrame.from_records(records)


def _plot_by_step(ax, rows: pd.DataFrame, metric: str, label: str) -> None:
    """The mean over seeds against the step, the seeds' range shaded when there are several."""
    by_step = rows.groupby("step")[metric]
    mean = by_step.mean()
    ax.plot(mean.index, mean.values, marker="o", label=label)
    if rows["seed"].nunique() > 1:
        ax.fill_between(mean.index, by_step.min().values, by_step.max().values, alpha=0.2)


def write_sweep(settings: Settings, variant: str) -> Path:
    """The sweep's CSV and its PNG (gIoU and cIoU against step, a line per dataset)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    df = sweep_frame(settings, variant)
    out = settings.layout.sweep(variant)
    atomic_write_text(out, df.to_csv(index=False))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    for ax, metric in zip(axes, ("gIoU", "cIoU")):
        for dataset, part in df.groupby("dataset", sort=False):
            _plot_by_step(ax, part, metric, dataset)
        ax.set_xlabel("GRPO step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    seeds = df["seed"].nunique()
    fig.suptitle(f"{variant}: every saved checkpoint ({settings.preset}, {seeds} seed{'s' * (seeds > 1)}"
                 f"{', mean and range' if seeds > 1 else ''})", fontsize=10)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out.with_suffix(".png"))
    log.info("%s: %d checkpoints x %d seeds x %d datasets -> %s", variant, df["checkpoint"].nunique(), seeds,
             df["dataset"].nunique(), out)
    return out


def compare_figure(settings: Settings, variants: list[str], out: Path) -> Path:
    """Held-out gIoU against the training step for several variants on shared axes (one panel per
    dataset they share): the mean over seeds, the seeds' range shaded. Reads the sweeps' CSVs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    frames = {v: pd.read_csv(settings.layout.sweep(v)) for v in variants}
    datasets = [d for d in dict.fromkeys(d for f in frames.values() for d in f["dataset"])
                if all(d in set(f["dataset"]) for f in frames.values())]
    fig, axes = plt.subplots(1, max(len(datasets), 1), figsize=(5 * max(len(datasets), 1), 3.8), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for v, f in frames.items():
            _plot_by_step(ax, f[f["dataset"] == dataset], "gIoU", f"{v} ({f['seed'].nunique()} seeds)")
        ax.set_title(dataset, fontsize=9)
        ax.set_xlabel("GRPO step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("gIoU")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"gIoU of every saved checkpoint ({settings.preset} preset)\nmean over seeds, range shaded",
                 fontsize=10)
    fig.tight_layout()
    save_figure(fig, out)
    log.info("sweeps of %s -> %s", ", ".join(variants), out)
    return out
