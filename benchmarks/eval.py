"""Benchmark: prediction + SAM2 + metrics, this project's pipeline vs the per-sample reference loop.

Workload: 8 images x 3 instructions = 24 samples (rise.data.synthetic.generate, keeping images
that carry an attribute, a spatial and a comparative instruction; images and masks upscaled 4x
to 512-768 px, the size of COCO images, so SAM2's input handling and the metrics work on
realistic resolutions).

Models: the demo's tiny models, built into a temporary folder: build_tiny_policy (random-weight
Qwen2.5-VL, policy view 112x112, max_new_tokens 32, as the demo preset) and build_tiny_sam2
(configs/sam2.1/sam2.1_hiera_t.yaml, random weights) at SAM2 image size 512 (`--sam2-size`;
the paper's 1024 takes about twice as long per image encode and pushes the run past 3 minutes).
Random weights do not change the cost of a forward pass.

The policy's text is substituted, identically in both paths. A random-weight policy never writes
a parseable answer, so SAM2 would never run. Both paths therefore really call `model.generate`
(through rise.predict.PolicyRunner, greedy, max_new_tokens 32, so the generation cost is real
and counted), then the decoded text is replaced by a valid answer derived from the sample's
ground truth: `<think>...</think><answer>{'bbox': [...], 'points_1': [...], 'points_2': [...]}</answer>`
with the box of the target mask and two pixels of the mask, in the policy view's coordinates.
Everything after that (parsing, mapping to the original image, SAM2, masks, metrics) is real.

  baseline  the reference loop: for each sample, open the image, generate with batch size 1,
            parse, `set_image` on that sample's image, predict, score (rise.metrics).
  pipeline  this project's rise.predict: rows grouped by image (image_shards), predict_shard
            (batched generation with PolicyRunner, batch size 8 as in the demo preset; SAM2's
            set_image once per distinct image; masks RLE-encoded as written to disk), then
            rise.metrics on the decoded masks, as the evaluate stage does.

Both paths share the loaded models, run in the same process after a warm-up on one image's
samples each, interleaved when repeated; the median of the repeats is reported. Both must yield
the same gIoU/cIoU (checked).

Run:  HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/eval.py [--repeats 2] [--budget-s 110] [--sam2-size 512]
Last line of output: {"baseline_samples_per_s", "pipeline_samples_per_s", "ratio",
"encodes_per_sample_baseline", "encodes_per_sample_pipeline", "sam2_image_size"}.
Target (2-core CPU): ratio >= 2.5.
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

def workload(tmp: Path, seed: int = 0) -> list[dict]:
    """24 evaluation-manifest rows: 8 images with 3 instructions each, upscaled SCALE times."""
    rows = generate("bench", "eval", 40, ["attribute", "spatial", "comparative"], tmp / "small", seed)
    by_image: dict[str, list[dict]] = {}
    for r in rows:
        by_image.setdefault(r["image"], []).append(r)
    groups = [g for g in by_image.values() if len(g) == PER_IMAGE][:N_IMAGES]
    assert len(groups) == N_IMAGES, "not enough synthetic images with 3 instructions"
    (tmp / "images").mkdir()
    out = []
    for group in groups:
        src = group[0]["image"]
        w, h = group[0]["width"] * SCALE, group[0]["height"] * SCALE
        path = tmp / "images" / Path(src).name
        open_rgb(src).resize((w, h), Image.BICUBIC).save(path)
        for r in group:
            mask = decode_mask(r["mask"]).repeat(SCALE, 0).repeat(SCALE, 1)
            out.append({**r, "image": str(path), "width": w, "height": h, "mask": encode_mask(mask)})
    return out


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

def reference_loop(rows, policy: SubstitutedPolicy, segmenter: Segmenter) -> dict:
    """Per sample: generate (batch 1), parse, set_image on the sample's image, predict, score."""
    inters, unions = [], []
    for r in rows:
        original = open_rgb(r["image"])
        view = policy_view(original, POLICY_SIZE)
        text = policy.generate([r], {r["image"]: view})[0]
        ans = parse_answer(text, POLICY_SIZE, POLICY_SIZE, points=True)
        pred = None
        if ans.ok:
            w, h = r["width"], r["height"]
            box = to_original(ans.box, POLICY_SIZE, w, h)
            pts = [to_original(p, POLICY_SIZE, w, h) for p in ans.points]
            segmenter.set_image(np.array(original))
            pred, _ = segmenter.segment(box, pts)
        i, u = intersection_union(pred, decode_mask(r["mask"]), None, PROTOCOL)
        inters.append(i)
        unions.append(u)
    return summarize(inters, unions, PROTOCOL)


def pipeline(rows, policy: SubstitutedPolicy, segmenter: Segmenter) -> dict:
    """rise.predict's path (image-grouped shards, batched generation, one encode per image), then metrics."""
    gts = {r["sample_id"]: r for r in rows}
    inters, unions = [], []
    for shard in image_shards(rows, shard_size=32):
        for rec in predict_shard(shard, policy, segmenter, POLICY_SIZE, points=True):
            pred = decode_mask(rec["mask"]) if rec["parse_ok"] and rec["mask"] else None
            i, u = intersection_union(pred, decode_mask(gts[rec["sample_id"]]["mask"]), None, PROTOCOL)
            inters.append(i)
            unions.append(u)
    return summarize(inters, unions, PROTOCOL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--budget-s", type=float, default=110.0,
                    help="stop repeating once this much time went into the timed repeats (at least one runs)")
    ap.add_argument("--sam2-size", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        rows = workload(tmp, args.seed)
        policy_dir = build_tiny_policy(tmp / "policy", tokenizer_corpus(), seed=args.seed, image_size=POLICY_SIZE)
        sam_ckpt = build_tiny_sam2(tmp / "sam2.pt", SAM2_CONFIG, image_size=args.sam2_size, seed=args.seed)
        runner = PolicyRunner(str(policy_dir), "bench policy", size=POLICY_SIZE, cot=True, points=True,
                              max_new_tokens=MAX_NEW_TOKENS, batch_size=BATCH_SIZE, device="cpu")
        predictor = load_sam2(SAM2_CONFIG, str(sam_ckpt), args.sam2_size, device="cpu")
        n = len(rows)
        sizes = sorted({(r["width"], r["height"]) for r in rows})
        print(f"workload: {N_IMAGES} images x {PER_IMAGE} instructions = {n} samples, image sizes {sizes}; "
              f"SAM2 hiera-t at {args.sam2_size}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"load average {os.getloadavg()[0]:.2f}")

        def run(path, batch_size, subset):
            policy, segmenter = SubstitutedPolicy(runner, batch_size), TimedSegmenter(predictor)
            t0 = time.perf_counter()
            metrics = path(subset, policy, segmenter)
            dt = time.perf_counter() - t0
            parts = (f"generate {policy.seconds:.1f} s, set_image {segmenter.set_image_s:.1f} s "
                     f"({segmenter.image_encodes}x), predict {segmenter.segment_s:.1f} s, rest "
                     f"{dt - policy.seconds - segmenter.set_image_s - segmenter.segment_s:.1f} s")
            return dt, segmenter.image_encodes, metrics, policy.generated_chars, parts

        warm = rows[:PER_IMAGE]  # one image's samples
        run(reference_loop, 1, warm)
        run(pipeline, BATCH_SIZE, warm)

        base_t, pipe_t = [], []
        start = time.perf_counter()
        for rep in range(args.repeats):
            if rep and time.perf_counter() - start > args.budget_s:
                print(f"time budget of {args.budget_s:.0f} s spent: stopping after {rep} repeats")
                break
            dt_b, enc_b, m_b, chars_b, parts_b = run(reference_loop, 1, rows)
            dt_p, enc_p, m_p, chars_p, parts_p = run(pipeline, BATCH_SIZE, rows)
            base_t.append(dt_b)
            pipe_t.append(dt_p)
            print(f"repeat {rep + 1}: baseline {dt_b:.2f} s ({parts_b})")
            print(f"          pipeline {dt_p:.2f} s ({parts_p})")

    same = all(abs(m_b[k] - m_p[k]) < 1e-9 for k in ("gIoU", "cIoU"))
    print(f"metrics: baseline gIoU {m_b['gIoU']:.2f} cIoU {m_b['cIoU']:.2f}, pipeline gIoU {m_p['gIoU']:.2f} "
          f"cIoU {m_p['cIoU']:.2f} (identical: {same}; random-weight SAM2, so the values mean nothing)")
    print(f"characters the policy decoded (then substituted): baseline {chars_b}, pipeline {chars_p}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (other processes on the cores distort the timings)")
    base_tp, pipe_tp = n / statistics.median(base_t), n / statistics.median(pipe_t)
    ratio = pipe_tp / base_tp
    print(f"baseline (per-sample reference loop): {base_tp:.3f} samples/s, {enc_b / n:.3f} image encodes per sample")
    print(f"pipeline (rise.predict + metrics):     {pipe_tp:.3f} samples/s, {enc_p / n:.3f} image encodes per sample")
    print(f"ratio: {ratio:.2f}x (target >= 2.5x)")
    print(json.dumps({"baseline_samples_per_s": round(base_tp, 4), "pipeline_samples_per_s": round(pipe_tp, 4),
                      "ratio": round(ratio, 2), "encodes_per_sample_baseline": round(enc_b / n, 4),
                      "encodes_per_sample_pipeline": round(enc_p / n, 4), "sam2_image_size": args.sam2_size}))


if __name__ == "__main__":
    main()
