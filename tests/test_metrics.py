import numpy as np
import pytest

from rise.metrics import intersection_union, sample_iou, summarize


def independent(pred, gt, ignore, protocol):
    """Direct per-pixel loop, written separately from rise.metrics."""
    i = u = 0
    for p, g, ig in zip(pred.ravel() if pred is not None else [False] * gt.size, gt.ravel(),
                        ignore.ravel() if ignore is not None else [False] * gt.size):
        if protocol == "segzero":
            g = g or ig
        elif ig:
            continue
        i += p and g
        u += p or g
    return i, u


@pytest.mark.parametrize("protocol", ["segzero", "lisa"])
def test_random_masks_against_independent_computation(protocol):
    rng = np.random.default_rng(0)
    inters, unions, ious = [], [], []
    for k in range(30):
        gt = rng.random((17, 23)) < rng.random()
        pred = None if k % 7 == 0 else rng.random((17, 23)) < rng.random()
        ignore = rng.random((17, 23)) < 0.1 if k % 3 == 0 else None
        if protocol == "lisa" and pred is None:
            want = independent(np.zeros_like(gt), gt, ignore, protocol)
        elif pred is None:
            want = (0, int((gt | ignore).sum()) if ignore is not None else int(gt.sum()))
        else:
            want = independent(pred, gt, ignore, protocol)
        got = intersection_union(pred, gt, ignore, protocol)
        assert got == want
        inters.append(got[0]); unions.append(got[1])
        ious.append(got[0] / got[1] if got[1] else (1.0 if protocol == "lisa" else 0.0))
    s = summarize(inters, unions, protocol)
    assert s["gIoU"] == pytest.approx(100 * np.mean(ious))
    assert s["cIoU"] == pytest.approx(100 * sum(inters) / sum(unions))
    assert s["n_samples"] == 30


def test_edge_cases():
    empty = np.zeros((4, 4), bool)
    full = np.ones((4, 4), bool)
    assert intersection_union(empty, empty, None, "segzero") == (0, 0)
    assert sample_iou(0, 0, "segzero") == 0.0 and sample_iou(0, 0, "lisa") == 1.0
    assert intersection_union(empty, full, None, "segzero") == (0, 16)      # empty prediction
    assert intersection_union(full, empty, None, "lisa") == (0, 16)         # empty ground truth
    assert intersection_union(None, full, None, "segzero") == (0, 16)       # failed parse
    assert intersection_union(None, full, None, "lisa") == (0, 16)
    ignore = np.zeros((4, 4), bool); ignore[0] = True
    gt = np.zeros((4, 4), bool); gt[1] = True
    pred = ignore | gt
    assert intersection_union(pred, gt, ignore, "segzero") == (8, 8)  # ignore counts as object
    assert intersection_union(pred, gt, ignore, "lisa") == (4, 4)     # ignore excluded
    with pytest.raises(ValueError):
        intersection_union(pred, gt, None, "coco")


def test_family_metrics_are_the_metrics_of_each_familys_samples():
    from rise.evaluate import family_metrics
    from rise.metrics import summarize

    rows = [{"kind": "colour", "intersection": 5, "union": 10, "parse_ok": True},
            {"kind": "shape", "intersection": 0, "union": 8, "parse_ok": False},
            {"kind": "colour", "intersection": 9, "union": 10, "parse_ok": True},
            {"kind": "shape", "intersection": 4, "union": 4, "parse_ok": True}]
    out = family_metrics(rows, "segzero")
    assert list(out) == ["colour", "shape"]
    assert out["colour"] == {**summarize([5, 9], [10, 10], "segzero"), "n_failed_parse": 0}
    assert out["shape"]["gIoU"] == 50.0 and out["shape"]["cIoU"] == 100.0 * 4 / 12 and out["shape"]["n_failed_parse"] == 1
    assert family_metrics([{**r, "kind": ""} for r in rows], "segzero") == {}
