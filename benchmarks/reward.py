"""Benchmark: the semantic reward R_sem for one GRPO generation batch, batched vs per completion.

Workload: 16 prompts x 8 completions = 128 completions, as one GRPO step of the paper
(8 generations per prompt). Every prompt has its own 840x840 image (a synthetic demo image
resized to the policy's square view with rise.imaging.policy_view) and its own instruction.
The completions carry realistic boxes: jittered around the target object, two exact duplicates
per group (as happens when the policy converges) and one or two malformed completions in most
groups (unordered box, missing answer block, truncated JSON).

Model: open_clip ViT-B-32 with random weights (pretrained=None, nothing downloaded), CPU,
float32. Random weights do not change the cost of a forward pass.

  baseline  the pattern of the public reward code: for every completion, parse the answer,
            crop the PIL image, run open_clip's own preprocess on the crop, then one
            `encode_image` and one `encode_text` call for that completion, cosine similarity.
  batched   this project's `rise.rewards.SemanticReward.score` (what TRL calls through
            `__call__`): every distinct crop in one `encode_image` pass, identical boxes of
            one image scored once, each distinct instruction encoded once. A fresh reward
            object is made for every timed repeat so its instruction cache starts cold (in
            training every step brings new instructions); the text tower's cost is counted.

The gain is split into its three parts by two intermediate arms, each adding one change:
  batching     one `encode_image` pass over every valid completion's crop and one `encode_text`
               pass over every valid completion's instruction (nothing shared: each completion
               counts as its own image, so no crop is reused, and instructions are not deduplicated)
  + duplicates identical boxes of one image cropped and scored once (instructions still one per crop)
  + text cache each distinct instruction encoded once: the batched arm above
The three factors (baseline/batching, batching/duplicates, duplicates/batched) multiply to the
headline ratio.

All arms run in the same process, on the same model, interleaved, after one warm-up call each; the
median of the repeats is reported. The share of the batched time spent outside the CLIP image
tower's forward pass is measured with forward hooks on `model.visual` (the image tower proper).

Every arm must give the batched arm's rewards (the same crops through the same code: to 1e-4) and
the baseline's (PIL's resize against the tensor resize: to --tolerance, default 0.005, with the same
completions scoring 0); a disagreement ends the run with an error, before any figure is printed.

Run:  HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/reward.py [--repeats 3] [--budget-s 120] [--prompts 16]
Last line of output: {"baseline_s", "batched_s", "ratio", "parts": {"batching", "duplicate_crops",
"text_cache"}, "arm_s": {...}, "outside_image_tower_share", "completions", "max_abs_diff"}.
Targets (2-core CPU): ratio >= 2 and outside_image_tower_share < 0.15.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rise.answer import parse_answer  # noqa: E402
from rise.contracts import decode_mask  # noqa: E402
from rise.data.synthetic import generate  # noqa: E402
from rise.imaging import open_rgb, policy_view  # noqa: E402
from rise.rewards import SemanticReward, completion_text, crop_box  # noqa: E402

PROMPTS, GENERATIONS, SIZE = 16, 8, 840


# ---------------------------------------------------------------------------------------------
# Workload
# ---------------------------------------------------------------------------------------------

def answer_text(box, pts) -> str:
    b = ",".join(str(int(round(v))) for v in box)
    return (f"<think> the target is near ({pts[0][0]},{pts[0][1]}) </think><answer>{{'bbox': [{b}], "
            f"'points_1': [{pts[0][0]},{pts[0][1]}], 'points_2': [{pts[1][0]},{pts[1][1]}]}}</answer>")


MALFORMED = [
    lambda box: answer_text((box[2], box[1], box[0], box[3]), ((10, 10), (20, 20))),  # x1 > x2
    lambda box: "<think> I cannot tell which shape is meant </think>",                 # no answer
    lambda box: "<think> ok </think><answer>{'bbox': [" + f"{int(box[0])},{int(box[1])}," ,  # truncated
]


def target_box(mask: np.ndarray, w: int, h: int) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask)
    sx, sy = SIZE / w, SIZE / h
    return xs.min() * sx, ys.min() * sy, (xs.max() + 1) * sx, (ys.max() + 1) * sy


def jitter(rng: random.Random, box) -> tuple[int, int, int, int]:
    """A plausible policy box: the target's box, shifted and rescaled by up to ~30 %, or sometimes
    a box on another part of the image; always valid in the 840x840 square."""
    x1, y1, x2, y2 = box
    if rng.random() < 0.2:  # a wrong object / a loose region
        w, h = rng.uniform(60, 500), rng.uniform(60, 500)
        x1, y1 = rng.uniform(0, SIZE - w), rng.uniform(0, SIZE - h)
        x2, y2 = x1 + w, y1 + h
    else:
        w, h = x2 - x1, y2 - y1
        cx, cy = (x1 + x2) / 2 + rng.uniform(-0.2, 0.2) * w, (y1 + y2) / 2 + rng.uniform(-0.2, 0.2) * h
        w, h = w * rng.uniform(0.8, 1.4), h * rng.uniform(0.8, 1.4)
        x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    x1, y1 = max(0, int(x1)), max(0, int(y1))
    x2, y2 = min(SIZE, max(x1 + 8, int(x2))), min(SIZE, max(y1 + 8, int(y2)))
    return x1, y1, x2, y2


def workload(tmp: Path, seed: int = 0, prompts: int = PROMPTS):
    """`prompts` groups of 8 completions: (completions, images, instructions, sample_ids) as TRL passes them."""
    rows = generate("bench", "reward", max(40, 3 * prompts), ["attribute", "spatial", "comparative"],
                    tmp / "images", seed)
    first: dict[str, dict] = {}
    for r in rows:
        first.setdefault(r["image"], r)
    picked = list(first.values())[:prompts]
    assert len(picked) == prompts
    rng = random.Random(seed)
    completions, images, instructions, sample_ids = [], [], [], []
    for g, r in enumerate(picked):
        view = policy_view(open_rgb(r["image"]), SIZE)
        box = target_box(decode_mask(r["mask"]), r["width"], r["height"])
        n_bad = (0, 1, 1, 2)[g % 4]
        n_distinct = GENERATIONS - 2 - n_bad  # two exact duplicates per group
        boxes = [jitter(rng, box) for _ in range(n_distinct)]
        texts = [answer_text(b, ((b[0] + 4, b[1] + 4), (b[2] - 4, b[3] - 4))) for b in boxes]
        texts += [texts[0], texts[1 % n_distinct]]
        texts += [MALFORMED[(g + k) % len(MALFORMED)](boxes[0]) for k in range(n_bad)]
        rng.shuffle(texts)
        for t in texts:
            completions.append([{"role": "assistant", "content": t}])
            images.append(view)
            instructions.append(r["instruction"])
            sample_ids.append(r["sample_id"])
    return completions, images, instructions, sample_ids


# ---------------------------------------------------------------------------------------------
# The two paths
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def baseline_rewards(model, preprocess, tokenizer, completions, images, instructions) -> list[float]:
    """One CLIP call per completion, as in the public reward code."""
    out = []
    for c, im, instr in zip(completions, images, instructions):
        w, h = im.size
        ans = parse_answer(completion_text(c), w, h, points=False)
        if not ans.ok:
            out.append(0.0)
            continue
        crop = im.crop(crop_box(ans.box, w, h))
        f_img = model.encode_image(preprocess(crop).unsqueeze(0))
        f_txt = model.encode_text(tokenizer([instr]))
        out.append(F.cosine_similarity(f_img, f_txt).item())
    return out


class NoTextCache(SemanticReward):
    """SemanticReward encoding one instruction per crop, repeats included (no cache, no deduplication)."""

    @torch.no_grad()
    def text_features(self, texts: list[str]) -> torch.Tensor:
        return F.normalize(self.model.encode_text(self.tokenizer(texts).to(self.device)).float(), dim=-1)


def arms(model, tokenizer) -> dict:
    """The batched path built up one change at a time: name -> fn(completions, images, instructions, ids)."""
    def batching(completions, images, instructions, sample_ids):
        unique = list(range(len(completions)))  # every completion its own image: no crop is shared
        return NoTextCache(model, tokenizer)(completions=completions, image=images, instruction=instructions,
                                             sample_id=unique)

    def duplicates(completions, images, instructions, sample_ids):
        return NoTextCache(model, tokenizer)(completions=completions, image=images, instruction=instructions,
                                             sample_id=sample_ids)

    def batched(completions, images, instructions, sample_ids):
        return SemanticReward(model, tokenizer)(completions=completions, image=images, instruction=instructions,
                                                sample_id=sample_ids)

    return {"batching": batching, "duplicate_crops": duplicates, "batched": batched}


class Disagreement(RuntimeError):
    pass


def check_agreement(name: str, got: list[float], want: list[float], tolerance: float) -> float:
    """Largest |got - want|; raises Disagreement if it exceeds `tolerance` or a zero (no valid box) differs."""
    if len(got) != len(want):
        raise Disagreement(f"{name}: {len(got)} rewards for {len(want)} completions")
    zeros = [i for i, (a, b) in enumerate(zip(got, want)) if (a == 0.0) != (b == 0.0)]
    if zeros:
        raise Disagreement(f"{name}: completion {zeros[0]} scores {got[zeros[0]]} against {want[zeros[0]]} "
                           "(one of the two found no valid box)")
    diff = max((abs(a - b) for a, b in zip(got, want)), default=0.0)
    if diff > tolerance:
        worst = max(range(len(got)), key=lambda i: abs(got[i] - want[i]))
        raise Disagreement(f"{name}: completion {worst} scores {got[worst]:.5f} against {want[worst]:.5f} "
                           f"(|difference| {diff:.5f} > {tolerance})")
    return diff


class TowerTimer:
    """Wall time spent inside `module.forward` (forward pre-hook / hook pair)."""

    def __init__(self, module):
        self.total, self._t0 = 0.0, None
        module.register_forward_pre_hook(self._pre)
        module.register_forward_hook(self._post)

    def _pre(self, *_):
        self._t0 = time.perf_counter()

    def _post(self, *_):
        self.total += time.perf_counter() - self._t0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=120.0,
                    help="stop repeating once this much time went into the timed repeats (at least one runs)")
    ap.add_argument("--prompts", type=int, default=PROMPTS, help="prompts of 8 completions (the paper: 16)")
    ap.add_argument("--tolerance", type=float, default=0.005,
                    help="largest |batched - baseline| reward allowed (PIL against tensor resizing)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import open_clip

    warnings.filterwarnings("ignore")
    torch.manual_seed(args.seed)
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    model = model.eval().float()
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    tower = TowerTimer(model.visual)

    with tempfile.TemporaryDirectory() as tmp:
        completions, images, instructions, sample_ids = workload(Path(tmp), args.seed, args.prompts)
    n = len(completions)
    valid = sum(parse_answer(completion_text(c), SIZE, SIZE, points=False).ok for c in completions)
    print(f"workload: {args.prompts} prompts x {GENERATIONS} completions = {n}, {valid} with a valid box, "
          f"images {SIZE}x{SIZE}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.2f}")

    paths = arms(model, tokenizer)
    batch = (completions, images, instructions, sample_ids)
    # warm-up: one call of each path on the first group
    g = slice(0, GENERATIONS)
    baseline_rewards(model, preprocess, tokenizer, completions[g], images[g], instructions[g])
    for fn in paths.values():
        fn(*(part[g] for part in batch))

    times: dict[str, list[float]] = {"baseline": [], **{name: [] for name in paths}}
    shares, results, stats = [], {}, {}
    start = time.perf_counter()
    for rep in range(args.repeats):
        if rep and time.perf_counter() - start > args.budget_s:
            print(f"time budget of {args.budget_s:.0f} s spent: stopping after {rep} repeats")
            break
        t0 = time.perf_counter()
        results["baseline"] = baseline_rewards(model, preprocess, tokenizer, completions, images, instructions)
        times["baseline"].append(time.perf_counter() - t0)
        for name, fn in paths.items():
            tower.total = 0.0
            t0 = time.perf_counter()
            results[name] = fn(*batch)
            times[name].append(time.perf_counter() - t0)
            if name == "batched":
                shares.append(1.0 - tower.total / times[name][-1])
        print(f"repeat {rep + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()))

    diffs = {name: check_agreement(name, results[name], results["batched"], 1e-4) for name in paths}
    diff = check_agreement("batched against baseline", results["batched"], results["baseline"], args.tolerance)
    print(f"agreement: max |batched - baseline| = {diff:.4f} (PIL vs tensor resize; allowed {args.tolerance}), "
          f"intermediate arms against batched: {max(diffs.values()):.1e}; malformed -> 0 in every arm")
    median = {k: statistics.median(v) for k, v in times.items()}
    ratio = median["baseline"] / median["batched"]
    parts = {"batching": median["baseline"] / median["batching"],
             "duplicate_crops": median["batching"] / median["duplicate_crops"],
             "text_cache": median["duplicate_crops"] / median["batched"]}
    share = statistics.median(shares)
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (other processes on the cores distort "
          f"both timings, the per-completion baseline most)")
    print(f"baseline (one CLIP call per completion): {median['baseline']:.2f} s")
    print(f"+ batching (one pass, nothing shared):   {median['batching']:.2f} s  ({parts['batching']:.2f}x)")
    print(f"+ duplicate crops scored once:           {median['duplicate_crops']:.2f} s  "
          f"({parts['duplicate_crops']:.2f}x)")
    print(f"+ instructions encoded once (batched):   {median['batched']:.2f} s  ({parts['text_cache']:.2f}x)")
    print(f"ratio: {ratio:.2f}x = {' x '.join(f'{v:.2f}' for v in parts.values())} (target >= 2x); outside the "
          f"image tower: {100 * share:.1f} % of batched time (target < 15 %)")
    summary = {"baseline_s": round(median["baseline"], 3), "batched_s": round(median["batched"], 3),
               "ratio": round(ratio, 2), "parts": {k: round(v, 2) for k, v in parts.items()},
               "arm_s": {k: round(v, 3) for k, v in median.items()},
               "outside_image_tower_share": round(share, 4), "completions": n, "max_abs_diff": round(diff, 5)}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    try:
        main()
    except Disagreement as exc:
        sys.exit(f"reward.py: the arms disagree: {exc}")
