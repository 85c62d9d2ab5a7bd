"""gIoU and cIoU under the two protocols found in the literature.

segzero (the paper's, default): a sample whose answer did not parse counts I = 0, U = |GT|;
    an empty union scores IoU 0; pixels marked "ignore" count as ground truth, as in the
    public evaluation sets the paper's group uses.
lisa: an empty union scores IoU 1; pixels marked "ignore" are excluded from prediction and
    ground truth; a failed parse is an empty prediction.
gIoU = mean over samples of I/U; cIoU = sum of I / sum of U. Both reported in percent.
"""
from __future__ import annotations

import numpy as np

PROTOCOLS = ("segzero", "lisa")


def intersection_union(pred: np.ndarray | None, gt: np.ndarray, ignore: np.ndarray | None, protocol: str) -> tuple[int, int]:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol '{protocol}' (known: {PROTOCOLS})")
    if protocol == "segzero":
        target = gt | ignore if ignore is not None else gt
        if pred is None:
            return 0, int(target.sum())
        return int((pred & target).sum()), int((pred | target).sum())
    keep = ~ignore if ignore is not None else np.ones_like(gt, dtype=bool)
    p = (pred if pred is not None else np.zeros_like(gt)) & keep
    g = gt & keep
    return int((p & g).sum()), int((p | g).sum())


def sample_iou(i: int, u: int, protocol: str) -> float:
    if u == 0:
        return 1.0 if protocol == "lisa" else 0.0
    return i / u


def summarize(inters: list[int], unions: list[int], protocol: str) -> dict:
    n = len(inters)
    ious = [sample_iou(i, u, protocol) for i, u in zip(inters, unions)]
    total_u = sum(unions)
    return {
        "gIoU": 100.0 * float(np.mean(ious)) if n else float("nan"),
        "cIoU": 100.0 * sum(inters) / total_u if total_u else (100.0 if protocol == "lisa" and n else 0.0),
        "n_samples": n,
    }
