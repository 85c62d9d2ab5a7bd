"""Qualitative figure in the style of the paper's Figure 3: for chosen samples, the ground truth and,
per variant, the predicted box, points and SAM2 mask with the model's reasoning text."""
from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import numpy as np

from rise.config import Settings
from rise.contracts import decode_mask, load_eval_manifest, read_jsonl
from rise.imaging import open_rgb

log = logging.getLogger(__name__)


def choose_samples(manifest: list[dict], n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    idx = sorted(rng.choice(len(manifest), size=min(n, len(manifest)), replace=False))
    return [manifest[i] for i in idx]


def _overlay(ax, image, mask, colour):
    ax.imshow(image)
    if mask is not None:
        rgba = np.zeros((*mask.shape, 4))
        rgba[mask] = (*colour, 0.45)
        ax.imshow(rgba)
    ax.set_xticks([])
    ax.set_yticks([])


def qualitative_figure(settings: Settings, variants: list[str], dataset: str, n_samples: int, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    manifest = load_eval_manifest(settings.layout.dataset_manifest(dataset))
    preds = {v: {p["sample_id"]: p for p in read_jsonl(settings.layout.predictions(v, dataset))} for v in variants}
    samples = choose_samples(manifest, n_samples, settings.seed)
    cols = 1 + len(variants)
    fig, axes = plt.subplots(len(samples), cols, figsize=(3.6 * cols, 4.2 * len(samples)), squeeze=False)
    for row, sample in zip(axes, samples):
        image = np.asarray(open_rgb(sample["image"]))
        _overlay(row[0], image, decode_mask(sample["mask"]), (0.1, 0.8, 0.2))
        row[0].set_title(textwrap.fill(f"GT: {sample['instruction']}", 40), fontsize=8)
        for ax, variant in zip(row[1:], variants):
            p = preds[variant][sample["sample_id"]]
            _overlay(ax, image, decode_mask(p["mask"]) if p["mask"] else None, (0.9, 0.2, 0.2))
            if p["box"]:
                x1, y1, x2, y2 = p["box"]
                ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="yellow", linewidth=1.5))
            for x, y in p["points"] or []:
                ax.plot(x, y, marker="*", color="cyan", markersize=9)
            status = "" if p["parse_ok"] else f" [{p['parse_error']}]"
            ax.set_title(f"{variant}{status}", fontsize=8)
            reasoning = p["raw_text"].split("</think>")[0].replace("<think>", "").strip() or "(no reasoning text)"
            ax.set_xlabel(textwrap.fill(reasoning[:300], 45), fontsize=6)
    fig.suptitle(f"{dataset} ({settings.preset} preset)", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)
    log.info("qualitative figure -> %s", out)
    return out
