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

Both run in the same process, on the same model, interleaved (baseline, batched, baseline, ...),
after one warm-up call each; the median of the repeats is reported. The share of the batched
time spent outside the CLIP image tower's forward pass is measured with forward hooks on
`model.visual` (the image tower proper) during the timed batched runs.

Run:  HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/reward.py [--repeats 3] [--budget-s 120]
Last line of output: {"baseline_s", "batched_s", "ratio", "outside_image_tower_share", "completions"}.
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


def workload(tmp: Path, seed: int = 0):
    """16 groups of 8 completions: (completions, images, instructions, sample_ids) as TRL passes them."""
    rows = generate("bench", "reward", 40, ["attribute", "spatial", "comparative"], tmp / "images", seed)
    first: dict[str, dict] = {}
    for r in rows:
        first.setdefault(r["image"], r)
    picked = list(first.values())[:PROMPTS]
    assert len(picked) == PROMPTS
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=120.0,
                    help="stop repeating once this much time went into the timed repeats (at least one runs)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import open_clip

    warnings.filterwarnings("ignore")
    torch.manual_seed(args.seed)
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    model = model.eval().float()
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    tower = TowerTimer(model.visual)

    with tempfile.TemporaryDirectory() as tmp:
        completions, images, instructions, sample_ids = workload(Path(tmp), args.seed)
    n = len(completions)
    valid = sum(parse_answer(completion_text(c), SIZE, SIZE, points=False).ok for c in completions)
    print(f"workload: {PROMPTS} prompts x {GENERATIONS} completions = {n}, {valid} with a valid box, "
          f"images {SIZE}x{SIZE}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.2f}")

    def run_batched():
        reward = SemanticReward(model, tokenizer)  # cold instruction cache, as in a new training step
        t0 = time.perf_counter()
        tower.total = 0.0
        got = reward(completions=completions, image=images, instruction=instructions, sample_id=sample_ids)
        return got, time.perf_counter() - t0, tower.total, reward.last_stats

    # warm-up: one call of each path on the first group
    g = slice(0, GENERATIONS)
    baseline_rewards(model, preprocess, tokenizer, completions[g], images[g], instructions[g])
    SemanticReward(model, tokenizer)(completions=completions[g], image=images[g],
                                     instruction=instructions[g], sample_id=sample_ids[g])

    base_t, batch_t, shares = [], [], []
    start = time.perf_counter()
    for rep in range(args.repeats):
        if rep and time.perf_counter() - start > args.budget_s:
            print(f"time budget of {args.budget_s:.0f} s spent: stopping after {rep} repeats")
            break
        t0 = time.perf_counter()
        want = baseline_rewards(model, preprocess, tokenizer, completions, images, instructions)
        base_t.append(time.perf_counter() - t0)
        got, dt, tower_s, stats = run_batched()
        batch_t.append(dt)
        shares.append(1.0 - tower_s / dt)
        print(f"repeat {rep + 1}: baseline {base_t[-1]:.2f} s, batched {dt:.2f} s "
              f"(image tower {tower_s:.2f} s, {stats['distinct_crops']} distinct crops)")

    diff = max(abs(a - b) for a, b in zip(got, want))
    zeros_agree = all((a == 0.0) == (b == 0.0) for a, b in zip(got, want))
    print(f"agreement: max |batched - baseline| = {diff:.4f} (PIL vs tensor resize), "
          f"malformed -> 0 in both: {zeros_agree}")
    baseline_s, batched_s = statistics.median(base_t), statistics.median(batch_t)
    share = statistics.median(shares)
    ratio = baseline_s / batched_s
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (other processes on the cores distort "
          f"both timings, the per-completion baseline most)")
    print(f"baseline (one CLIP call per completion): {baseline_s:.2f} s")
    print(f"batched (SemanticReward.score):          {batched_s:.2f} s")
    print(f"ratio: {ratio:.2f}x (target >= 2x); outside the image tower: {100 * share:.1f} % of batched "
          f"time (target < 15 %)")
    print(json.dumps({"baseline_s": round(baseline_s, 3), "batched_s": round(batched_s, 3),
                      "ratio": round(ratio, 2), "outside_image_tower_share": round(share, 4),
                      "completions": n}))


if __name__ == "__main__":
    main()
