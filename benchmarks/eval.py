"""Benchmark: prediction + SAM2 + metrics, this project's pipeline vs the reference loop.

Two workloads of 24 samples each (rise.data.synthetic.generate; images and masks upscaled 4x to
512-768 px, the size of COCO images, so SAM2's input handling and the metrics work on realistic
resolutions):
  three_per_image  8 images x 3 instructions (an attribute, a spatial and a comparative one), as
                   RefCOCO's several referring expressions per image
  one_per_image    24 images x 1 instruction, as ReasonSeg (one query per image): nothing to share
                   between samples, so the two paths should take about the same time

Models: the demo's tiny models, built into a temporary folder: build_tiny_policy (random-weight
Qwen2.5-VL, policy view 112x112, max_new_tokens 32, as the demo preset) and build_tiny_sam2
(configs/sam2.1/sam2.1_hiera_t.yaml, random weights) at SAM2 image size 512 (`--sam2-size`;
the paper's 1024 takes about twice as long per image encode).
Random weights do not change the cost of a forward pass.

The policy's text is substituted, identically in both paths. A random-weight policy never writes
a parseable answer, so SAM2 would never run. Both paths therefore really call `model.generate`
(through rise.predict.PolicyRunner, greedy, max_new_tokens 32, so the generation cost is real
and counted), then the decoded text is replaced by a valid answer derived from the sample's
ground truth: `<think>...</think><answer>{'bbox': [...], 'points_1': [...], 'points_2': [...]}</answer>`
with the box of the target mask and two pixels of the mask, in the policy view's coordinates.
Everything after that (parsing, mapping to the original image, SAM2, masks, metrics) is real.

  baseline  the reference loop, as the public evaluation scripts run: generation batched (batch
            size 8, the samples in manifest order), then per sample: parse, `set_image` on that
            sample's image, predict, score (rise.metrics).
  pipeline  this project's rise.predict: rows grouped by image (image_shards), predict_shard
            (batched generation with PolicyRunner, batch size 8 as in the demo preset; SAM2's
            set_image once per distinct image; masks RLE-encoded as written to disk), then
            rise.metrics on the decoded masks, as the evaluate stage does.
So the two differ only in how often SAM2 encodes an image (and in RLE-encoding the masks).

Both paths share the loaded models, run in the same process after a warm-up on one image's
samples each, interleaved when repeated; the median of the repeats is reported. Both must give
every sample the same intersection and union: a disagreement ends the run with an error.

Run:  HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/eval.py [--repeats 2] [--budget-s 110] [--sam2-size 512]
      [--images 8] (images of the three-per-image workload; the one-per-image one has 3x as many)
Last line of output: {"sam2_image_size", "three_per_image": {...}, "one_per_image": {...}}, each
{"samples", "baseline_samples_per_s", "pipeline_samples_per_s", "ratio", "encodes_per_sample_baseline",
"encodes_per_sample_pipeline"}.
Target (2-core CPU): ratio >= 2.5 on three_per_image; about 1 on one_per_image.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rise.answer import parse_answer  # noqa: E402
from rise.build import tokenizer_corpus  # noqa: E402
from rise.contracts import decode_mask, encode_mask  # noqa: E402
from rise.data.synthetic import generate  # noqa: E402
from rise.imaging import open_rgb, policy_view, to_original  # noqa: E402
from rise.metrics import intersection_union, summarize  # noqa: E402
from rise.models import build_tiny_policy, build_tiny_sam2, load_sam2  # noqa: E402
from rise.predict import PolicyRunner, Segmenter, image_shards, predict_shard  # noqa: E402

N_IMAGES, PER_IMAGE, SCALE = 8, 3, 4
POLICY_SIZE, MAX_NEW_TOKENS, BATCH_SIZE = 112, 32, 8
SAM2_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
PROTOCOL = "segzero"


# ---------------------------------------------------------------------------------------------
# Workload
# ---------------------------------------------------------------------------------------------

def workload(tmp: Path, n_images: int, per_image: int, seed: int = 0) -> list[dict]:
    """n_images x per_image evaluation-manifest rows, upscaled SCALE times, in manifest order
    (an image's samples are not next to each other unless per_image groups them)."""
    rows = generate("bench", "eval", max(40, 5 * n_images), ["attribute", "spatial", "comparative"],
                    tmp / "small", seed)
    by_image: dict[str, list[dict]] = {}
    for r in rows:
        by_image.setdefault(r["image"], []).append(r)
    groups = [g[:per_image] for g in by_image.values() if len(g) >= per_image][:n_images]
    assert len(groups) == n_images, f"not enough synthetic images with {per_image} instructions"
    folder = tmp / f"images_{per_image}"
    folder.mkdir()
    out = []
    for group in groups:
        src = group[0]["image"]
        w, h = group[0]["width"] * SCALE, group[0]["height"] * SCALE
        path = folder / Path(src).name
        open_rgb(src).resize((w, h), Image.BICUBIC).save(path)
        for r in group:
            mask = decode_mask(r["mask"]).repeat(SCALE, 0).repeat(SCALE, 1)
            out.append({**r, "image": str(path), "width": w, "height": h, "mask": encode_mask(mask)})
    return sorted(out, key=lambda r: r["sample_id"])  # manifest order: by kind, not by image


def substituted_answer(row: dict) -> str:
    """A valid answer for the sample: the target mask's box and two of its pixels, in the policy view."""
    mask = decode_mask(row["mask"])
    ys, xs = np.nonzero(mask)
    sx, sy = POLICY_SIZE / row["width"], POLICY_SIZE / row["height"]
    x1, y1 = int(np.floor(xs.min() * sx)), int(np.floor(ys.min() * sy))
    x2 = min(POLICY_SIZE, max(x1 + 1, int(np.ceil((xs.max() + 1) * sx))))
    y2 = min(POLICY_SIZE, max(y1 + 1, int(np.ceil((ys.max() + 1) * sy))))
    p1, p2 = [(int(xs[k] * sx), int(ys[k] * sy)) for k in (len(xs) // 3, 2 * len(xs) // 3)]
    return (f"<think> the target is the {row['kind']} match </think><answer>{{'bbox': [{x1},{y1},{x2},{y2}], "
            f"'points_1': [{p1[0]},{p1[1]}], 'points_2': [{p2[0]},{p2[1]}]}}</answer>")


class SubstitutedPolicy:
    """PolicyRunner's interface: really generates (cost counted), then returns the substituted text."""

    def __init__(self, runner: PolicyRunner, batch_size: int):
        self.runner, self.batch_size = runner, batch_size
        self.generated_chars, self.seconds = 0, 0.0

    def generate(self, rows: list[dict], images: dict) -> list[str]:
        t0 = time.perf_counter()
        self.runner.batch_size = self.batch_size
        texts = self.runner.generate(rows, images)  # real model.generate calls
        self.generated_chars += sum(len(t) for t in texts)
        self.seconds += time.perf_counter() - t0
        return [substituted_answer(r) for r in rows]


class TimedSegmenter(Segmenter):
    """rise.predict.Segmenter, with the time spent in set_image and in segment recorded."""

    def __init__(self, predictor):
        super().__init__(predictor)
        self.set_image_s = self.segment_s = 0.0

    def set_image(self, image):
        t0 = time.perf_counter()
        super().set_image(image)
        self.set_image_s += time.perf_counter() - t0

    def segment(self, box, points=None):
        t0 = time.perf_counter()
        out = super().segment(box, points)
        self.segment_s += time.perf_counter() - t0
        return out


# ---------------------------------------------------------------------------------------------
# The two paths
# ---------------------------------------------------------------------------------------------

def reference_loop(rows, policy: SubstitutedPolicy, segmenter: Segmenter) -> dict[str, tuple[int, int]]:
    """Generation in batches of the samples in manifest order; then per sample: parse, set_image on
    the sample's image, predict, score. Returns sample id -> (intersection, union)."""
    scores = {}
    for start in range(0, len(rows), policy.batch_size):
        batch = rows[start:start + policy.batch_size]
        originals = {r["image"]: open_rgb(r["image"]) for r in batch}
        texts = policy.generate(batch, {p: policy_view(im, POLICY_SIZE) for p, im in originals.items()})
        for r, text in zip(batch, texts):
            ans = parse_answer(text, POLICY_SIZE, POLICY_SIZE, points=True)
            pred = None
            if ans.ok:
                w, h = r["width"], r["height"]
                box = to_original(ans.box, POLICY_SIZE, w, h)
                pts = [to_original(p, POLICY_SIZE, w, h) for p in ans.points]
                segmenter.set_image(np.array(originals[r["image"]]))
                pred, _ = segmenter.segment(box, pts)
            scores[r["sample_id"]] = intersection_union(pred, decode_mask(r["mask"]), None, PROTOCOL)
    return scores


def pipeline(rows, policy: SubstitutedPolicy, segmenter: Segmenter) -> dict[str, tuple[int, int]]:
    """rise.predict's path (image-grouped shards, batched generation, one encode per image), then metrics."""
    gts = {r["sample_id"]: r for r in rows}
    scores = {}
    for shard in image_shards(rows, shard_size=32):
        for rec in predict_shard(shard, policy, segmenter, POLICY_SIZE, points=True):
            pred = decode_mask(rec["mask"]) if rec["parse_ok"] and rec["mask"] else None
            scores[rec["sample_id"]] = intersection_union(pred, decode_mask(gts[rec["sample_id"]]["mask"]), None,
                                                          PROTOCOL)
    return scores


class Disagreement(RuntimeError):
    pass


def check_agreement(name: str, baseline: dict, pipeline: dict) -> dict:
    """The metrics of both paths; raises Disagreement unless every sample has the same intersection and union."""
    if baseline.keys() != pipeline.keys():
        raise Disagreement(f"{name}: the paths scored different samples "
                           f"({sorted(baseline.keys() ^ pipeline.keys())[:3]} ...)")
    for sample_id in sorted(baseline):
        if baseline[sample_id] != pipeline[sample_id]:
            raise Disagreement(f"{name}: sample {sample_id} has intersection/union {baseline[sample_id]} in the "
                               f"baseline but {pipeline[sample_id]} in the pipeline")
    ids = sorted(baseline)
    return summarize([baseline[i][0] for i in ids], [baseline[i][1] for i in ids], PROTOCOL)


def compare(name: str, rows: list[dict], runner: PolicyRunner, predictor, repeats: int, budget_s: float) -> dict:
    """Warm-up, then interleaved timed repeats of both paths on one workload; returns its figures."""
    n, per_image = len(rows), len(rows) // len({r["image"] for r in rows})

    def run(path, subset):
        policy, segmenter = SubstitutedPolicy(runner, BATCH_SIZE), TimedSegmenter(predictor)
        t0 = time.perf_counter()
        scores = path(subset, policy, segmenter)
        dt = time.perf_counter() - t0
        parts = (f"generate {policy.seconds:.1f} s, set_image {segmenter.set_image_s:.1f} s "
                 f"({segmenter.image_encodes}x), predict {segmenter.segment_s:.1f} s, rest "
                 f"{dt - policy.seconds - segmenter.set_image_s - segmenter.segment_s:.1f} s")
        return dt, segmenter.image_encodes, scores, parts

    first_image = rows[0]["image"]
    warm = [r for r in rows if r["image"] == first_image]  # one image's samples
    run(reference_loop, warm)
    run(pipeline, warm)

    base_t, pipe_t = [], []
    start = time.perf_counter()
    for rep in range(repeats):
        if rep and time.perf_counter() - start > budget_s:
            print(f"{name}: time budget of {budget_s:.0f} s spent: stopping after {rep} repeats")
            break
        dt_b, enc_b, s_b, parts_b = run(reference_loop, rows)
        dt_p, enc_p, s_p, parts_p = run(pipeline, rows)
        base_t.append(dt_b)
        pipe_t.append(dt_p)
        print(f"{name} repeat {rep + 1}: baseline {dt_b:.2f} s ({parts_b})")
        print(f"{' ' * len(name)}           pipeline {dt_p:.2f} s ({parts_p})")
        metrics = check_agreement(name, s_b, s_p)
    base_tp, pipe_tp = n / statistics.median(base_t), n / statistics.median(pipe_t)
    print(f"{name}: {len(rows) // per_image} images x {per_image} = {n} samples; gIoU {metrics['gIoU']:.2f} "
          f"cIoU {metrics['cIoU']:.2f} in both paths, every sample identical (random-weight SAM2: the values "
          f"mean nothing)")
    print(f"{name}: baseline {base_tp:.3f} samples/s ({enc_b / n:.3f} encodes/sample), pipeline {pipe_tp:.3f} "
          f"samples/s ({enc_p / n:.3f} encodes/sample): {pipe_tp / base_tp:.2f}x")
    return {"samples": n, "baseline_samples_per_s": round(base_tp, 4), "pipeline_samples_per_s": round(pipe_tp, 4),
            "ratio": round(pipe_tp / base_tp, 2), "encodes_per_sample_baseline": round(enc_b / n, 4),
            "encodes_per_sample_pipeline": round(enc_p / n, 4)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--budget-s", type=float, default=110.0,
                    help="per workload: stop repeating once this much time went into its timed repeats "
                         "(at least one runs)")
    ap.add_argument("--sam2-size", type=int, default=512)
    ap.add_argument("--images", type=int, default=N_IMAGES,
                    help="images of the three-per-image workload; the one-per-image workload has 3x as many")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    results = {"sam2_image_size": args.sam2_size}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        workloads = {"three_per_image": workload(tmp, args.images, PER_IMAGE, args.seed),
                     "one_per_image": workload(tmp, PER_IMAGE * args.images, 1, args.seed)}
        policy_dir = build_tiny_policy(tmp / "policy", tokenizer_corpus(), seed=args.seed, image_size=POLICY_SIZE)
        sam_ckpt = build_tiny_sam2(tmp / "sam2.pt", SAM2_CONFIG, image_size=args.sam2_size, seed=args.seed)
        runner = PolicyRunner(str(policy_dir), "bench policy", size=POLICY_SIZE, cot=True, points=True,
                              max_new_tokens=MAX_NEW_TOKENS, batch_size=BATCH_SIZE, device="cpu")
        predictor = load_sam2(SAM2_CONFIG, str(sam_ckpt), args.sam2_size, device="cpu")
        sizes = sorted({(r["width"], r["height"]) for rows in workloads.values() for r in rows})
        print(f"workloads: {', '.join(f'{k} ({len(v)} samples)' for k, v in workloads.items())}, image sizes "
              f"{sizes}; SAM2 hiera-t at {args.sam2_size}; torch {torch.__version__}, {torch.get_num_threads()} "
              f"threads, load average {os.getloadavg()[0]:.2f}")
        for name, rows in workloads.items():
            results[name] = compare(name, rows, runner, predictor, args.repeats, args.budget_s)
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (other processes on the cores distort the timings)")
    print(f"ratio: {results['three_per_image']['ratio']:.2f}x with three instructions per image (target >= 2.5x), "
          f"{results['one_per_image']['ratio']:.2f}x with one (about 1x expected)")
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    try:
        main()
    except Disagreement as exc:
        sys.exit(f"eval.py: the paths disagree: {exc}")
