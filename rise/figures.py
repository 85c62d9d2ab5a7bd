"""Qualitative figure in the style of the paper's Figure 3: for chosen samples, the ground truth and,
per variant, the predicted box, points and SAM2 mask with the model's reasoning text."""
from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import numpy as np

from rise.config import Settings
from rise.contracts import decode_mask, load_eval_manifest, read_jsonl, save_figure
from rise.imaging import open_rgb

log = logging.getLogger(__name__)


def choose_samples(manifest: list[dict], preds: dict, n: int, seed: int, sample_ids=None,
                   ious: dict | None = None) -> list[dict]:
    """The named samples; with `ious` ({variant: {sample_id: IoU}}), the samples where one variant beats
    every other by the widest margin, each variant's best wins in turn; else a seeded pick that favours
    samples some variant answered in a usable form."""
    if sample_ids:
        by_id = {m["sample_id"]: m for m in manifest}
        unknown = [s for s in sample_ids if s not in by_id]
        if unknown:
            raise ValueError(f"figures.qualitative.sample_ids: {unknown} are not in the dataset")
        return [by_id[s] for s in sample_ids]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(manifest))
    chosen: list[int] = []
    if ious and len(ious) > 1:
        wins = {v: sorted(((margin, -rank, i) for rank, i in enumerate(order)
                           if (margin := _win_margin(ious, v, manifest[i]["sample_id"])) > 0), reverse=True)
                for v in ious}
        while len(chosen) < n and any(wins.values()):
            for v in ious:
                if wins[v] and len(chosen) < n:
                    chosen.append(wins[v].pop(0)[2])
    answered = [i for i in order if any(p[manifest[i]["sample_id"]]["parse_ok"] for p in preds.values())]
    rest = [i for i in order if i not in set(answered)]
    if not chosen:  # the seeded pick, in manifest order
        return [manifest[i] for i in sorted((answered + rest)[:n])]
    taken = set(chosen)
    chosen += [i for i in answered + rest if i not in taken][: n - len(chosen)]
    return [manifest[i] for i in chosen]


def _win_margin(ious: dict, variant: str, sample_id: str) -> float:
    """How far `variant`'s IoU on a sample is above the best other variant's (<= 0: not a win)."""
    return ious[variant][sample_id] - max(ious[v][sample_id] for v in ious if v != variant)


def win_counts(ious: dict, threshold: float = 0.1) -> dict:
    """Per variant: samples where its IoU beats every other variant's by more than `threshold`."""
    ids = next(iter(ious.values())).keys()
    return {v: sum(_win_margin(ious, v, s) > threshold for s in ids) for v in ious}


def _overlay(ax, image, mask, colour, outline=None):
    """The image, a mask filled in `colour`, and the ground truth's outline (magenta, dashed: a colour
    no demo or toy shape has)."""
    ax.imshow(image)
    # the image's extent stays the axes' limits: a box or point on its edge must not widen one panel
    ax.set_autoscale_on(False)
    if mask is not None:
        rgba = np.zeros((*mask.shape, 4))
        rgba[mask] = (*colour, 0.45)
        ax.imshow(rgba)
    if outline is not None and outline.any():
        ax.contour(outline.astype(float), levels=[0.5], colors=["magenta"], linewidths=1.6, linestyles="--")
    ax.set_xticks([])
    ax.set_yticks([])


def mask_iou(pred, gt) -> float:
    """IoU of a predicted mask with the ground truth (0 without a prediction)."""
    if pred is None:
        return 0.0
    union = np.logical_or(pred, gt).sum()
    return float(np.logical_and(pred, gt).sum() / union) if union else 0.0


def qualitative_figure(settings: Settings, variants: list[str], dataset: str, n_samples: int, out: Path,
                       sample_ids: list[str] | None = None, pick: str = "random") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    manifest = load_eval_manifest(settings.layout.dataset_manifest(dataset))
    preds = {v: {p["sample_id"]: p for p in read_jsonl(settings.layout.predictions(v, dataset))} for v in variants}
    ious = None
    if pick == "disagree" and not sample_ids:
        gts = {m["sample_id"]: decode_mask(m["mask"]) for m in manifest}
        ious = {v: {s: mask_iou(decode_mask(p["mask"]) if p["mask"] else None, gts[s]) for s, p in preds[v].items()
                    if s in gts} for v in variants}
    samples = choose_samples(manifest, preds, n_samples, settings.seed, sample_ids, ious)
    cols = 1 + len(variants)
    fig, axes = plt.subplots(len(samples), cols, figsize=(3.6 * cols, 4.2 * len(samples)), squeeze=False)
    for row, sample in zip(axes, samples):
        image = np.asarray(open_rgb(sample["image"]))
        gt = decode_mask(sample["mask"])
        _overlay(row[0], image, None, (1.0, 0.0, 1.0), outline=gt)  # the image untouched, the object outlined
        row[0].set_title(textwrap.fill(f"ground truth (outlined): {sample['instruction']}", 40), fontsize=8)
        for ax, variant in zip(row[1:], variants):
            p = preds[variant][sample["sample_id"]]
            mask = decode_mask(p["mask"]) if p["mask"] else None
            _overlay(ax, image, mask, (0.9, 0.2, 0.2), outline=gt)
            if p["box"]:
                x1, y1, x2, y2 = p["box"]
                ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="yellow", linewidth=1.5))
            for x, y in p["points"] or []:
                ax.plot(x, y, marker="*", color="cyan", markersize=9)
            status = "" if p["parse_ok"] else f" [{p['parse_error']}]"
            ax.set_title(f"{variant}: IoU {mask_iou(mask, gt):.2f}{status}", fontsize=8)
            reasoning = p["raw_text"].split("</think>")[0].replace("<think>", "").strip() or "(no reasoning text)"
            ax.set_xlabel(textwrap.fill(f"{variant}'s reasoning: {reasoning[:300]}", 45), fontsize=6)
    title = (f"{dataset} ({settings.preset} preset; seed {settings.layout.primary_seed}, final checkpoint): "
             "ground truth outlined in magenta,\npredicted box yellow, points cyan, mask red")
    if ious:
        counts = win_counts(ious)
        title += (f"\nsamples where the variants differ most, each variant's in turn; of {len(manifest)}, IoU higher "
                  "by > 0.1 than the other" + ("s" if len(variants) > 2 else "") + ": "
                  + ", ".join(f"{v} {k}" for v, k in counts.items()))
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, out, dpi=110)
    log.info("qualitative figure -> %s", out)
    return out
