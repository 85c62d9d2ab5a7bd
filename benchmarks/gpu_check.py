"""The one-GPU check of the paper preset: does one GRPO step fit, learn, and how long would the run take?

Nothing is downloaded: Qwen2.5-VL is built from its published config with random weights, CLIP
ViT-B-32 and SAM2 have random weights. The training path is the project's own (`rise.train`),
instrumented from outside. Prints one JSON line last (keys below); `--out FILE` also writes it.

  python benchmarks/gpu_check.py                  # one GPU: Qwen2.5-VL-3B, SAM2-L (about 7 minutes on an H100 at 128 tokens)
  python benchmarks/gpu_check.py --cpu            # tiny models on the CPU, same keys (run by the tests)

Keys:
  device, gpus, policy, params_m                   what ran
  image_tokens_per_prompt, expected_image_tokens   900 for an 840x840 view (30 x 30 merged patches)
  step_checkpointing_on / _off                     one GRPO step each: peak GPU memory (GiB, or "oom"),
                                                   wall time, micro-batch and accumulation
  weights_changed_share                            share of the policy's weights changed by one step at lr 1e-6
  policy_dtype                                     dtype the trainable policy was held in
  finite                                           loss, KL and every reward term of the step are finite
  logged                                           those figures as TRL logged them
  phases_s                                         seconds per phase of the step (generation, rewards,
                                                   reference forward, policy forward/backward, rest)
  projected_2k_run_h                               125 such steps, on this one device and ideal on 8
  rsem                                             R_sem for 128 completions: batched vs one call per completion
  sam2                                             prediction of a batch of images with SAM2 under autocast
  host_peak_gib, projected_host_gib_8_ranks        peak host memory of this training process, times 8 ranks
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
STEPS_OF_PAPER_RUN = 125  # one epoch over 2,000 prompts at 16 per step


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def build_models(work: Path, cpu: bool, size: str) -> None:
    """Writes the policy, CLIP and SAM2 under `work` (run in a child process so that building does
    not count towards the training process's host memory)."""
    from rise.build import tokenizer_corpus
    from rise.models import build_policy_from_published_config, build_tiny_clip, build_tiny_policy, build_tiny_sam2

    if cpu:
        build_tiny_policy(work / "policy", tokenizer_corpus(), image_size=112)
        build_tiny_clip(work / "clip.pt")
        build_tiny_sam2(work / "sam2.pt", "configs/sam2.1/sam2.1_hiera_t.yaml", 256)
    else:
        build_policy_from_published_config(work / "policy", size, tokenizer_corpus(), image_size=840)
        build_tiny_sam2(work / "sam2.pt", "configs/sam2.1/sam2.1_hiera_l.yaml", 1024)  # full-size, random


def check_settings(args, work: Path, root: Path, prompts_per_step: int, checkpointing: bool):
    """The paper preset's training settings (or the demo's models on the CPU) for one step."""
    from rise.config import load_settings

    preset = "demo" if args.cpu else "paper"
    settings = load_settings(ROOT / "params.yaml", preset, root=root)
    paper_train = load_settings(ROOT / "params.yaml", "paper").train
    train = {**paper_train, "max_steps": 1, "prompts_per_step": prompts_per_step, "save_steps": 10_000,
             "max_completion_length": args.completion_length, "gradient_checkpointing": checkpointing}
    if args.cpu:
        train["num_generations"] = 4
    clip = ({"model": "RISE-tiny-CLIP", "pretrained": str(work / "clip.pt")} if args.cpu
            else {"model": "ViT-B-32", "pretrained": ""})
    return dataclasses.replace(
        settings, train=train, device="cpu" if args.cpu else "cuda",
        models={**settings.models, "policies": {"3b": str(work / "policy"), "7b": str(work / "policy")}, "clip": clip})


class Instrument:
    """Times the phases of TRL's GRPO step and snapshots the policy's weights around it."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.before: dict[str, torch.Tensor] = {}
        self.changed = self.total = 0
        self.dtype = None

    def timed(self, name, fn, when=None):
        def wrapper(*a, **kw):
            if when is not None and not when(*a, **kw):
                return fn(*a, **kw)
            sync()
            t0 = time.perf_counter()
            out = fn(*a, **kw)
            sync()
            self.seconds[name] += time.perf_counter() - t0
            return out
        return wrapper

    @staticmethod
    def with_probe_term(calculate_rewards):
        """A policy with random weights scores 0 on every real reward, so every advantage would be 0
        and no weight could move whatever the precision. The check adds a small deterministic term
        per completion (from its token ids) so the step has a gradient; the real terms are still
        computed and logged as they are."""
        def wrapper(inputs, prompts, completions, completion_ids_list):
            out = calculate_rewards(inputs, prompts, completions, completion_ids_list)
            probe = [(sum(ids) % 17) / 17 for ids in completion_ids_list]
            out[:, 0] += torch.tensor(probe, dtype=out.dtype, device=out.device)
            return out
        return wrapper

    def attach(self, trainer) -> None:
        from transformers import TrainerCallback

        ref = trainer.ref_model
        trainer._generate = self.timed("generation", trainer._generate)
        trainer._calculate_rewards = self.timed("rewards", self.with_probe_term(trainer._calculate_rewards))
        trainer._get_per_token_logps_and_entropies = self.timed(
            "reference_forward", trainer._get_per_token_logps_and_entropies,
            when=lambda model, *a, **kw: ref is not None and model is ref)
        trainer._prepare_inputs = self.timed("prepare_inputs", trainer._prepare_inputs)
        trainer.training_step = self.timed("training_step", trainer.training_step)
        check = self

        class Snapshot(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **kw):
                check.dtype = str(next(model.parameters()).dtype).replace("torch.", "")
                check.before = {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters()}

            def on_step_end(self, args, state, control, **kw):
                # runs after TRL's flow callback: no end-of-run checkpoint (a 3B policy's fp32 weights
                # and Adam state, 3.75B x 12 bytes, are about 45 GB: it filled the GPU machine's disk once)
                control.should_save = False

            def on_train_end(self, args, state, control, model=None, **kw):
                for n, p in model.named_parameters():
                    old = check.before.pop(n)
                    check.changed += int((p.detach().cpu() != old).sum())
                    check.total += old.numel()

        trainer.add_callback(Snapshot())

    def phases(self, step_s: float) -> dict:
        gen, rew, ref = self.seconds["generation"], self.seconds["rewards"], self.seconds["reference_forward"]
        fwd_bwd = self.seconds["training_step"] - self.seconds["prepare_inputs"]
        return {"generation": round(gen, 2), "rewards": round(rew, 2), "reference_forward": round(ref, 2),
                "forward_backward": round(fwd_bwd, 2),
                "rest": round(max(0.0, step_s - gen - rew - ref - fwd_bwd), 2)}


def one_step(args, work: Path, name: str, prompts_per_step: int, checkpointing: bool) -> dict:
    """One GRPO step through rise.train; peak GPU memory, time, phases, weights changed."""
    from rise.contracts import write_jsonl
    from rise.data.synthetic import generate
    from rise.sampling import sample_pairs
    from rise.train import train_variant

    root = work / name
    settings = check_settings(args, work, root, prompts_per_step, checkpointing)
    rows = generate("check", "train", prompts_per_step, ["attribute", "spatial"], work / "images", seed=0)
    write_jsonl(settings.layout.train_manifest("refcocog_2k"), sample_pairs(rows, prompts_per_step, 0, "check"))
    probe = Instrument()
    result = {"completions": prompts_per_step * settings.train["num_generations"],
              "micro_batch": settings.train["per_device_batch_size"], "checkpointing": checkpointing}
    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    try:
        train_variant(settings, "full_3b", on_trainer=probe.attach)
    except torch.OutOfMemoryError as exc:
        result.update(peak_gpu_gib="oom", error=str(exc).splitlines()[0])
        return result
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    wall = time.perf_counter() - started
    import pandas as pd

    logged = pd.read_csv(settings.layout.train_curves("full_3b")).to_dict("records")[-1]
    step_s = float(logged["step_time"])
    result.update(
        peak_gpu_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None,
        step_s=round(step_s, 2), wall_s=round(wall, 1), phases_s=probe.phases(step_s),
        weights_changed_share=round(probe.changed / max(probe.total, 1), 4), policy_dtype=probe.dtype,
        logged={k: logged[k] for k in logged if k in ("loss", "kl", "reward", "entropy", "completions/mean_length")
                or k.startswith("rewards/")},
    )
    return result


def rsem_comparison(args, work: Path, device: torch.device) -> dict:
    """R_sem for 16 prompts x 8 completions: one batched call vs one call per completion."""
    import random

    from rise.data.synthetic import generate
    from rise.imaging import open_rgb, policy_view
    from rise.models import load_clip
    from rise.rewards import SemanticReward

    name, weights = ("RISE-tiny-CLIP", str(work / "clip.pt")) if args.cpu else ("ViT-B-32", None)
    model, _, tokenizer = load_clip(name, weights, device=str(device))
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    rows = generate("rsem", "val", 16, ["attribute"], work / "rsem", seed=1)[:16]
    rng = random.Random(0)
    texts, images, instructions, keys = [], [], [], []
    for r in rows:
        view = policy_view(open_rgb(r["image"]), 840)
        for _ in range(8):
            x1, y1 = rng.randrange(0, 700), rng.randrange(0, 700)
            x2, y2 = x1 + rng.randrange(20, 140), y1 + rng.randrange(20, 140)
            texts.append(f"<think>t</think><answer>{{\"bbox\": [{x1},{y1},{x2},{y2}], "
                         f"\"points_1\": [{x1 + 5},{y1 + 5}], \"points_2\": [{x1 + 9},{y1 + 9}]}}</answer>")
            images.append(view)
            instructions.append(r["instruction"])
            keys.append(r["sample_id"])

    def batched():
        return SemanticReward(model, tokenizer, device=str(device), dtype=dtype).score(texts, images, instructions, keys)

    def per_completion():
        reward = SemanticReward(model, tokenizer, device=str(device), dtype=dtype)
        return [reward.score([t], [im], [ins], [k])[0] for t, im, ins, k in zip(texts, images, instructions, keys)]

    timings = {}
    for label, fn in (("batched", batched), ("per_completion", per_completion)):
        fn()  # warm-up
        sync()
        t0 = time.perf_counter()
        values = fn()
        sync()
        timings[label] = (time.perf_counter() - t0, values)
    a, b = timings["batched"][1], timings["per_completion"][1]
    agree = max(abs(x - y) for x, y in zip(a, b)) < (2e-2 if dtype == torch.float16 else 1e-4)
    if not agree:
        raise SystemExit("R_sem: the batched and per-completion paths disagree")
    return {"completions": len(texts), "batched_s": round(timings["batched"][0], 4),
            "per_completion_s": round(timings["per_completion"][0], 4),
            "ratio": round(timings["per_completion"][0] / timings["batched"][0], 2), "agree": agree}


def sam2_batch(args, work: Path, device: torch.device, n_images: int = 4) -> dict:
    """set_image + box-and-points prediction for a few COCO-sized images (bf16 autocast on GPU)."""
    import numpy as np

    from rise.models import load_sam2
    from rise.predict import Segmenter

    config, size = (("configs/sam2.1/sam2.1_hiera_t.yaml", 256) if args.cpu
                    else ("configs/sam2.1/sam2.1_hiera_l.yaml", 1024))
    seg = Segmenter(load_sam2(config, str(work / "sam2.pt"), size, device=str(device)))
    rng = np.random.default_rng(0)
    sync()
    t0 = time.perf_counter()
    areas = []
    for _ in range(n_images):
        image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        seg.set_image(image)
        for _ in range(3):
            mask, score = seg.segment([100, 80, 300, 260], [[150, 120], [250, 200]])
            assert mask.dtype == bool and mask.shape == (480, 640) and math.isfinite(score)
            areas.append(int(mask.sum()))
    sync()
    took = time.perf_counter() - t0
    return {"model": config.split("/")[-1], "images": n_images, "samples": 3 * n_images,
            "s_per_image": round(took / n_images, 3), "autocast": "bf16" if device.type == "cuda" else "none"}


def image_tokens(work: Path, size: int) -> int:
    from PIL import Image
    from transformers import AutoProcessor

    from rise.prompts import conversation

    processor = AutoProcessor.from_pretrained(str(work / "policy"))
    prompt = processor.apply_chat_template(conversation("the red circle"), add_generation_prompt=True, tokenize=False)
    batch = processor(text=[prompt], images=[Image.new("RGB", (size, size))], return_tensors="pt")
    image_token = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    return int((batch["input_ids"] == image_token).sum())


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", action="store_true", help="tiny models on the CPU (same keys; for the tests)")
    ap.add_argument("--size", default="3b", choices=["3b", "7b"])
    ap.add_argument("--completion-length", type=int, default=None,
                    help="max completion tokens of the step (default 256 on GPU, 24 on CPU; the paper's 1024 is projected)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--out", default=None, help="also write the JSON here")
    ap.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.completion_length = args.completion_length or (24 if args.cpu else 256)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rise-gpu-check-"))
    if args.build_only:
        build_models(work, args.cpu, args.size)
        return {}
    if not args.cpu and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA GPU visible; use --cpu for the CPU mode")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    cmd = [sys.executable, __file__, "--build-only", "--workdir", str(work), "--size", args.size] + (["--cpu"] if args.cpu else [])
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
    build_s = time.perf_counter() - started
    device = torch.device("cpu" if args.cpu else "cuda")
    size = 112 if args.cpu else 840
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(str(work / "policy"))
    prompts = 2 if args.cpu else 16
    result = {
        "device": torch.cuda.get_device_name() if not args.cpu else "cpu",
        "gpus": torch.cuda.device_count() if not args.cpu else 0,
        "policy": "tiny Qwen2.5-VL" if args.cpu else f"Qwen2.5-VL-{args.size.upper()} (published config, random weights)",
        "params_m": _params_m(cfg),
        "image_tokens_per_prompt": image_tokens(work, size), "expected_image_tokens": (size // 28) ** 2,
        "completion_length": args.completion_length,
        "build_s": round(build_s, 1),
        "versions": {m: __import__(m).__version__ for m in ("torch", "transformers", "trl", "accelerate")},
    }
    # the quick parts first, and the JSON rewritten after each part: a run cut short keeps what it measured
    result["rsem"] = rsem_comparison(args, work, device)
    _write(args.out, result)
    result["sam2"] = sam2_batch(args, work, device)
    _write(args.out, result)
    on = one_step(args, work, "checkpointing_on", prompts, True)
    host_peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    weights = on.pop("weights_changed_share", None)
    logged = on.pop("logged", {})
    step_s = on.get("step_s")
    result.update({
        "step_checkpointing_on": on, "weights_changed_share": weights, "policy_dtype": on.pop("policy_dtype", None),
        "finite": bool(logged) and all(math.isfinite(float(v)) for v in logged.values()),
        "logged": logged, "phases_s": on.pop("phases_s", {}),
        "projected_2k_run_h": ({"one_device": round(STEPS_OF_PAPER_RUN * step_s / 3600, 2),
                                "eight_gpus_ideal": round(STEPS_OF_PAPER_RUN * step_s / 8 / 3600, 2),
                                "note": f"at {args.completion_length} completion tokens; generation grows with length"}
                               if step_s else None),
        "host_peak_gib": round(host_peak_gib, 2), "projected_host_gib_8_ranks": round(8 * host_peak_gib, 1),
    })
    _write(args.out, result)
    # peak memory depends on the micro-batch, not on the accumulation: one prompt's 8 completions suffice
    off = one_step(args, work, "checkpointing_off", 1, False)
    for key in ("logged", "phases_s", "weights_changed_share", "policy_dtype"):
        off.pop(key, None)
    result["step_checkpointing_off"] = off
    result["total_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))
    _write(args.out, result)
    return result


def _write(out: str | None, result: dict) -> None:
    if out:
        Path(out).write_text(json.dumps(result) + "\n")


def _params_m(cfg) -> float:
    """Parameter count from the config, without loading the model again."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(cfg)
    return round(sum(p.numel() for p in model.parameters()) / 1e6, 1)


if __name__ == "__main__":
    main()
