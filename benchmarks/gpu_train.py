"""GRPO steps of a full-size Qwen2.5-VL built from its published config (random weights), at the
paper's settings on 840x840 images with 8 generations; prints step time, completions per second and
peak GPU memory, last line as JSON. Nothing is downloaded: CLIP ViT-B-32 also has random weights.

  python benchmarks/gpu_train.py --size 3b --steps 3            # on a GPU machine
  python benchmarks/gpu_train.py --smoke                        # CPU smoke test (tiny model, 1 step)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="3b", choices=["3b", "7b"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--prompts-per-step", type=int, default=16)
    ap.add_argument("--max-completion-length", type=int, default=256)
    ap.add_argument("--vllm", action="store_true", help="generate with vLLM (colocate mode)")
    ap.add_argument("--smoke", action="store_true", help="tiny model on CPU, one step (for the tests)")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)

    from rise.build import tokenizer_corpus
    from rise.config import load_settings
    from rise.contracts import write_jsonl
    from rise.data.synthetic import generate
    from rise.models import build_policy_from_published_config, build_tiny_clip, build_tiny_policy
    from rise.sampling import sample_pairs
    from rise.train import train_variant

    work = Path(args.workdir or tempfile.mkdtemp(prefix="rise-gpu-train-"))
    settings = load_settings(ROOT / "params.yaml", "demo" if args.smoke else "paper", root=work)
    policy_dir = work / "policy"
    clip = {"model": "ViT-B-32", "pretrained": ""}
    if args.smoke:
        build_tiny_policy(policy_dir, tokenizer_corpus(), image_size=settings.image["policy_size"])
        clip = {"model": "RISE-tiny-CLIP", "pretrained": str(build_tiny_clip(work / "clip.pt"))}
        train = {**settings.train, "max_steps": 1}
    else:
        build_policy_from_published_config(policy_dir, args.size, tokenizer_corpus(),
                                           image_size=settings.image["policy_size"])
        train = {**settings.train, "max_steps": args.steps, "prompts_per_step": args.prompts_per_step,
                 "max_completion_length": args.max_completion_length, "save_steps": 10_000,
                 "use_vllm": args.vllm}
    settings = dataclasses.replace(settings, train=train, device="cpu" if args.smoke else "cuda",
                                   models={**settings.models, "policies": {"3b": str(policy_dir), "7b": str(policy_dir)},
                                           "clip": clip})
    n = train["prompts_per_step"] * max(train["max_steps"], 1)
    rows = generate("bench", "train", n, ["attribute", "spatial"], work / "images", seed=0)
    write_jsonl(settings.layout.train_manifest("refcocog_2k"), sample_pairs(rows, min(n, len(rows)), 0, "bench"))
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    train_variant(settings, "full_3b")
    wall = time.perf_counter() - started
    import pandas as pd

    steps = pd.read_csv(settings.layout.train_curves("full_3b")).to_dict("records")
    per_step = train["prompts_per_step"] * train["num_generations"]
    step_time = sorted(s["step_time"] for s in steps)[len(steps) // 2]
    result = {
        "model": "tiny" if args.smoke else f"Qwen2.5-VL-{args.size.upper()} (random weights)",
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "steps": len(steps), "completions_per_step": per_step, "median_step_s": round(step_time, 3),
        "completions_per_s": round(per_step / step_time, 3), "wall_s": round(wall, 1),
        "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20) if torch.cuda.is_available() else None,
        "mean_completion_length": steps[-1].get("completions/mean_length"), "vllm": args.vllm,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
