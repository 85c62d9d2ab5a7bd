"""The files that pass between stages: their schemas, atomic writers and readers. One place.

All paths are laid out by `rise.layout.Layout` (runs/<preset>/...; tests/test_architecture.py
holds this catalogue to it). JSONL files hold one JSON
object per line. Masks are COCO RLE: {"size": [height, width], "counts": "<compressed string>"}.

Evaluation manifest   runs/<preset>/data/<dataset>.jsonl           (stage: prepare-data)
    sample_id    str    unique within the dataset
    image        str    path of the image file (original resolution)
    instruction  str    the referring expression or reasoning query
    height,width int    original image size
    mask         RLE    ground-truth mask; pixels of `ignore` are not part of it
    ignore       RLE|null  pixels marked "ignore" (ReasonSeg); the protocol decides what they count as
    dataset      str    dataset name in params.yaml;  split str;  source_id str  (trace back to the source)
    kind         str    optional tag (synthetic: attribute/spatial/comparative/classname)

Training manifest     runs/<preset>/train/<train_set>.jsonl         (stage: sample-train)
    sample_id, image, instruction, dataset, source_id. No geometry: a mask, box or point here
    is refused (RISE trains on image-instruction pairs alone).

Policy reference      runs/<preset>/checkpoints/<variant>/seed<k>/policy.json  (stage: train)
    {"variant", "policy": model folder or Hub id to load, "base": the untrained policy,
     "trained": bool, "steps": int, "provenance": {...},
     "fingerprints": {"base", "clip" (the reward's CLIP; null untrained), "policy" (trained: final)}}

Training curves       runs/<preset>/curves/<variant>-seed<k>.csv (+ .png)        (stage: train)
    one row per optimisation step as TRL logs it: step, reward, rewards/<term>/mean, kl,
    completions/mean_length, step_time, ... (empty for a variant that is not trained)

Predictions           runs/<preset>/predictions/<variant>/seed<k>/<checkpoint>/<dataset>.jsonl  (stage: predict)
    sample_id, raw_text (the policy's whole output), parse_ok bool, parse_error str|null,
    box [x1,y1,x2,y2] | null and points [[x,y],[x,y]] | null in ORIGINAL image pixels,
    mask RLE|null (SAM2 output), sam_score float|null, think_chars int
    beside it, <dataset>.env.json: the software and hardware (rise/provenance.py) and
    "models": {"policy", "sam2"}, the fingerprints of the weights used (rise/fingerprints.py)

Metrics               runs/<preset>/metrics/<variant>/seed<k>/<checkpoint>/<dataset>.json   (stage: evaluate)
    {"gIoU", "cIoU" (percent), "n_samples", "n_failed_parse"}: numbers alone (`dvc metrics show`);
    beside the scores, runs/<preset>/scores/<variant>/seed<k>/<checkpoint>/<dataset>.provenance.json:
    {"protocol", "answer", "variant", "seed", "checkpoint", "dataset", "provenance", "environment",
     "models": {"policy", "base", "clip", "sam2"} weight fingerprints} (rise.contracts.read_metrics joins
    the two), the per-sample rows, <dataset>.samples.csv (sample_id, intersection, union, iou,
    parse_ok, box, think_chars, kind), and per instruction family (the samples' `kind`),
    <dataset>.families.json: {family: {"gIoU", "cIoU", "n_samples", "n_failed_parse"}} ({} where
    the samples carry no family).

Table                 results/<preset>/<table>.csv                        (stage: table)
    label, variant, then one column per (dataset, metric) ours (with "<column> std"), in a table
    `by_family` one per (dataset, family, metric) "<dataset> <family> <metric>" (with std), then
    "GRPO trained on" ("<dataset>: <families>"; empty untrained), then the paper's number as
    "paper <dataset> <metric>", then per dataset its sample and failed-parse counts, then
    protocol, preset, policy, clip, sam2, data (loader and location of each dataset), note,
    models ("policy <fp>, <fp>; base <fp>; clip <fp>; sam2 <fp>": the weights' fingerprints,
    one per distinct model of the row's runs), trained with, predicted with (commit; hardware; versions).

Table metrics         results/<preset>/<table>.json                       (stage: table)
    {variant: {"seeds": int, <dataset>: {<metric>: mean, "<metric> std": std|null,
     "families": {<family>: {<metric>, "<metric> std"}} (a table `by_family`)}}}: the table
    as `dvc metrics show` and `dvc metrics diff` read it.

Checkpoint sweep      results/<preset>/sweeps/<variant>.csv (+ .png)      (stage: sweep)
    variant, seed, checkpoint, step, dataset, gIoU, cIoU, samples, failed parses: one row per
    saved checkpoint of every seed on every dataset of the variant's tables.

Qualitative figure    results/<preset>/figures/qualitative.png            (stage: figure)

Draws table           results/<preset>/draws/<table>.csv                  (stage: draws)
    per pretraining draw (presets.<preset>.draws): draw (seed), preset, the base policy's greedy
    hit rate per family and CLIP's zero-shot accuracy (the pretraining reports), each row's overall
    mean "<label> <dataset> <metric>", comparisons met by the 2-std rule and with a 95% interval
    above 0, and whether all are; beside it <table>.comparisons.csv (one row per draw and
    comparison), <table>.md and <table>.json (the share of draws where the claim holds, and the
    gaps across draws with their intervals).

Judges table          results/<preset>/judges/<table>.csv                 (stage: judges)
    per judge (presets.<preset>.judges: the toy CLIP pretrained for fewer steps) and judged row:
    clip steps, preset, the judge's held-out zero-shot accuracy and R_sem top-1 on class names, row,
    dataset, family ("all", or one of a table `by_family`), the row's mean and std, and per
    reference row (Format-only, the base) "gap vs <label>"
    with "low vs"/"high vs" (95% paired bootstrap); beside it <table>.png (the gap over Format-only
    against the judge's accuracy), <table>.md and <table>.json.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from rise.errors import DataError

EVAL_FIELDS = ("sample_id", "image", "instruction", "height", "width", "mask", "ignore", "dataset", "split", "source_id")
TRAIN_FIELDS = ("sample_id", "image", "instruction", "dataset", "source_id")
GEOMETRY_FIELDS = ("mask", "ignore", "bbox", "box", "points", "segmentation")
PREDICTION_FIELDS = ("sample_id", "raw_text", "parse_ok", "parse_error", "box", "points", "mask", "sam_score", "think_chars")


class ContractError(DataError):
    """A file between stages breaks its contract (the message names the file and line or row)."""


# --------------------------------------------------------------------------------------------- I/O

def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """A matplotlib figure as a PNG, written beside `path` then renamed (as atomic_write_text); closes it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())


def write_jsonl(path, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def read_jsonl(path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    rows = []
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ContractError(f"{path}:{lineno}: not valid JSON ({exc})") from exc
                if not isinstance(row, dict):
                    raise ContractError(f"{path}:{lineno}: expected a JSON object, found {type(row).__name__}")
                rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------- masks

def encode_mask(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_mask(rle: dict) -> np.ndarray:
    from pycocotools import mask as mask_utils

    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


# --------------------------------------------------------------------------------------------- checks

def check_rows(rows: list[dict], fields: tuple[str, ...], path) -> None:
    for i, row in enumerate(rows):
        missing = [f for f in fields if f not in row]
        if missing:
            raise ContractError(f"{path}: row {i} lacks fields {missing}")


def check_train_rows(rows: list[dict], path) -> None:
    check_rows(rows, TRAIN_FIELDS, path)
    for i, row in enumerate(rows):
        leaked = [f for f in GEOMETRY_FIELDS if f in row]
        if leaked:
            raise ContractError(f"{path}: row {i} carries geometry {leaked}; training sees image and instruction only")


def load_eval_manifest(path) -> list[dict]:
    rows = read_jsonl(path)
    check_rows(rows, EVAL_FIELDS, path)
    return rows


def load_train_manifest(path) -> list[dict]:
    rows = read_jsonl(path)
    check_train_rows(rows, path)
    return rows


def read_metrics(layout, variant: str, eval_set: str, seed: int, checkpoint: str = "final") -> dict:
    """A run's metrics with what they came from (protocol, answer reader, models, environment,
    provenance), as the table reads them: the metrics file and its provenance file together."""
    record = layout.metrics_provenance(variant, eval_set, seed, checkpoint)
    return {**(read_json(record) if record.exists() else {}), **read_json(layout.metrics(variant, eval_set, seed,
                                                                                          checkpoint))}
