"""The one-GPU check of the paper preset: where a GRPO step's time and memory go, and what a run costs.

Nothing is downloaded: Qwen2.5-VL is built from its published config with random weights, CLIP
ViT-B-32 and SAM2 have random weights. The training path is the project's own (`rise.train`),
instrumented from outside, with saves off. The main measurement is one rank's share of the
paper's 8-GPU run (2 prompts x 8 completions a step) at the paper preset's 1,300 completion
tokens, for two steps, so that step 2 carries the optimizer state. Every phase is timed with
`torch.cuda.synchronize`. The JSON is rewritten after each part and each step (`--out`), so a run
cut short keeps what it measured; the work folder is deleted at the end, and those of earlier runs
cut short are deleted at the start. Prints one JSON line last (keys below).

  python benchmarks/gpu_check.py                  # one GPU: Qwen2.5-VL-3B, SAM2-L (about 6-8 minutes on an H100-class GPU)
  python benchmarks/gpu_check.py --cpu            # tiny models on the CPU, same keys (run by the tests)

Keys:
  device, gpus, policy, params_m, versions         what ran
  image_tokens_per_prompt, expected_image_tokens   900 for an 840x840 view (30 x 30 merged patches)
  completion_length                                max completion tokens (random weights run to it)
  rsem, sam2                                       R_sem batched vs per completion; SAM2 on a batch of images
  steps                                            per step: step_s, phases_s (generation, rewards,
                                                   reference_forward, policy_forward_backward, optimizer,
                                                   rest), generated_tokens, decode_tokens_per_s (all
                                                   sequences), decode_steps_per_s, peak_allocated_gib,
                                                   peak_reserved_gib, logged (TRL's figures)
  steady_step                                      step 2 of those: with the optimizer state
  rank_share                                       prompts, completions, micro-batch, checkpointing
  weights_changed_share                            share of the policy's weights (every 64th element,
                                                   compared on the device) the two steps changed at lr 1e-6
  policy_dtype, finite, logged                     the trainable policy's dtype; loss, KL and every
                                                   reward finite in every step; step 2's logged figures
  projected_2k_run                                 125 x step 2's time on 8 GPUs and in GPU hours, with
                                                   what it leaves out (a lower bound)
  memory_model                                     rise/memory.py's terms beside the measured peaks
  host_peak_gib, host_gib_8_ranks_upper_bound      this process's peak host memory, and 8 times it
  step_checkpointing_off                           one step of one prompt without checkpointing (the
                                                   peak without optimizer state), or why it was skipped
  total_s, build_s
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import resource
import shutil
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


def check_settings(args, work: Path, root: Path, prompts_per_step: int, checkpointing: bool, steps: int):
    """The paper preset's training settings (or the demo's models on the CPU) for `steps` steps, saves off."""
    from rise.config import load_settings

    preset = "demo" if args.cpu else "paper"
    settings = load_settings(ROOT / "params.yaml", preset, root=root)
    paper_train = load_settings(ROOT / "params.yaml", "paper").train
    train = dataclasses.replace(paper_train, max_steps=steps, prompts_per_step=prompts_per_step, save_steps=10_000,
                                max_completion_length=args.completion_length, gradient_checkpointing=checkpointing)
    if args.cpu:
        train.num_generations = 4
    clip = ({"model": "RISE-tiny-CLIP", "pretrained": str(work / "clip.pt")} if args.cpu
            else {"model": "ViT-B-32", "pretrained": ""})
    return dataclasses.replace(
        settings, train=train, device="cpu" if args.cpu else "cuda",
        models={**settings.models, "policies": {"3b": str(work / "policy"), "7b": str(work / "policy")}, "clip": clip})


class Instrument:
    """Times the phases of TRL's GRPO steps (each with `torch.cuda.synchronize`), snapshots a sample
    of the policy's weights on its own device, and reports every step as it ends."""

    def __init__(self, on_step=None):
        self.seconds: dict[str, float] = defaultdict(float)
        self.before: dict[str, torch.Tensor] = {}
        self.changed = self.total = 0
        self.dtype = None
        self.steps: list[dict] = []
        self.on_step = on_step  # called with each step's figures once TRL has logged it

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
        # no final save: a 3B policy's fp32 weights are 15 GB, written after the timed steps
        trainer.save_model = lambda *a, **kw: None
        check = self

        class Steps(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **kw):
                check.dtype = str(next(model.parameters()).dtype).replace("torch.", "")
                # every 64th element, kept where the weights are: no 15 GB host copy in the timed run
                check.before = {n: p.detach().flatten()[::64].clone() for n, p in model.named_parameters()
                                if p.requires_grad}

            def on_step_begin(self, args, state, control, **kw):
                sync()
                if torch.cuda.is_available():
                    torch.cuda.reset_peak_memory_stats()
                check.step_started = time.perf_counter()
                check.seconds_before = dict(check.seconds)

            def on_pre_optimizer_step(self, args, state, control, **kw):
                sync()
                check.optimizer_started = time.perf_counter()

            def on_optimizer_step(self, args, state, control, **kw):
                sync()
                check.seconds["optimizer"] += time.perf_counter() - check.optimizer_started

            def on_step_end(self, args, state, control, **kw):
                sync()
                control.should_save = False  # saves off: the check measures steps, not the disk
                step_s = time.perf_counter() - check.step_started
                spent = {k: v - check.seconds_before.get(k, 0.0) for k, v in check.seconds.items()}
                record = {"step": state.global_step, "step_s": round(step_s, 2), "phases_s": phases(spent, step_s)}
                gpu = torch.cuda.is_available()  # (None on the CPU: the same keys)
                record.update(peak_allocated_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if gpu else None,
                              peak_reserved_gib=round(torch.cuda.max_memory_reserved() / 2**30, 2) if gpu else None)
                check.steps.append(record)

            def on_log(self, args, state, control, logs=None, **kw):
                if not check.steps or "completions/mean_length" not in (logs or {}) or "logged" in check.steps[-1]:
                    return
                step = check.steps[-1]
                completions = args.per_device_train_batch_size * args.gradient_accumulation_steps
                tokens = float(logs["completions/mean_length"]) * completions
                generation = step["phases_s"]["generation"]
                step.update(generated_tokens=round(tokens),
                            decode_tokens_per_s=round(tokens / generation, 1) if generation else None,
                            decode_steps_per_s=round(float(logs["completions/mean_length"]) / generation, 1)
                            if generation else None,
                            logged={k: logs[k] for k in logs if k in ("loss", "kl", "reward", "entropy",
                                                                      "completions/mean_length")
                                    or k.startswith("rewards/")})
                if check.on_step:
                    check.on_step(step)

            def on_train_end(self, args, state, control, model=None, **kw):
                for n, p in model.named_parameters():
                    if n in check.before:
                        old = check.before.pop(n)
                        check.changed += int((p.detach().flatten()[::64] != old).sum())
                        check.total += old.numel()

        trainer.add_callback(Steps())


def phases(spent: dict, step_s: float) -> dict:
    """Seconds of one step per phase: generation, rewards, the reference's forward, the policy's
    forward and backward, the optimizer, and the rest (data, logging, TRL's bookkeeping)."""
    gen, rew, ref = spent.get("generation", 0.0), spent.get("rewards", 0.0), spent.get("reference_forward", 0.0)
    fwd_bwd = spent.get("training_step", 0.0) - spent.get("prepare_inputs", 0.0)
    optim = spent.get("optimizer", 0.0)
    out = {"generation": gen, "rewards": rew, "reference_forward": ref, "policy_forward_backward": fwd_bwd,
           "optimizer": optim, "rest": max(0.0, step_s - gen - rew - ref - fwd_bwd - optim)}
    return {k: round(v, 3) for k, v in out.items()}


def run_steps(args, work: Path, name: str, prompts_per_step: int, checkpointing: bool, steps: int = 2,
              on_step=None) -> dict:
    """`steps` GRPO steps through rise.train (step 2 carries the optimizer state): per step its time,
    phases, decode speed and peak memory; the share of (sampled) weights that moved."""
    from rise.contracts import write_jsonl
    from rise.data.synthetic import generate
    from rise.sampling import sample_pairs
    from rise.train import train_variant

    root = work / name
    settings = check_settings(args, work, root, prompts_per_step, checkpointing, steps)
    n = prompts_per_step * steps
    rows = generate("check", "train", n, ["attribute", "spatial"], work / "images", seed=0)
    write_jsonl(settings.layout.train_manifest("refcocog_2k"), sample_pairs(rows, n, 0, "check"))
    probe = Instrument(on_step)
    result = {"prompts": prompts_per_step, "completions": prompts_per_step * settings.train.num_generations,
              "micro_batch": settings.train.per_device_batch_size, "checkpointing": checkpointing,
              # the cost levers of docs/training.md, as the preset sets them
              "levers": {k: getattr(settings.train, k) for k in ("attn_implementation", "encode_images_once")}}
    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()
    try:
        train_variant(settings, "full_3b", on_trainer=probe.attach)
    except torch.OutOfMemoryError as exc:
        result.update(peak_allocated_gib="oom", error=str(exc).splitlines()[0], steps=probe.steps)
        return result
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    result.update(steps=probe.steps, weights_changed_share=round(probe.changed / max(probe.total, 1), 4),
                  policy_dtype=probe.dtype)
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


RANK_PROMPTS = 2  # one rank's share of the paper's 16 prompts a step on 8 GPUs


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", action="store_true", help="tiny models on the CPU (same keys; for the tests)")
    ap.add_argument("--size", default="3b", choices=["3b", "7b"])
    ap.add_argument("--completion-length", type=int, default=None,
                    help="max completion tokens (default: the paper preset's 1300 on GPU, 24 on CPU)")
    ap.add_argument("--off-budget-s", type=float, default=360,
                    help="run the checkpointing-off step only if fewer seconds than this have passed")
    ap.add_argument("--workdir", default=None, help="keep the models here (default: a temporary folder, deleted)")
    ap.add_argument("--out", default=None, help="also write the JSON here (rewritten after each part)")
    ap.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.completion_length = args.completion_length or (24 if args.cpu else 1300)
    if args.build_only:
        build_models(Path(args.workdir), args.cpu, args.size)
        return {}
    if not args.cpu and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA GPU visible; use --cpu for the CPU mode")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.workdir:
        return _check(args, Path(args.workdir))
    remove_stale_workdirs()
    work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX))
    (work / "pid").write_text(str(os.getpid()))
    try:
        return _check(args, work)
    finally:  # about 9 GB for 3B: a second call on a warm machine must find its disk free
        shutil.rmtree(work, ignore_errors=True)


WORK_PREFIX = "rise-gpu-check-"


def remove_stale_workdirs() -> list[Path]:
    """Work folders of earlier checks whose process has ended (cut short by a time limit)."""
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{WORK_PREFIX}*"):
        pid_file = folder / "pid"
        try:
            os.kill(int(pid_file.read_text()), 0)
            continue  # still running
        except (OSError, ValueError):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _check(args, work: Path) -> dict:
    started = time.perf_counter()
    cmd = [sys.executable, __file__, "--build-only", "--workdir", str(work), "--size", args.size] + (["--cpu"] if args.cpu else [])
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
    build_s = time.perf_counter() - started
    device = torch.device("cpu" if args.cpu else "cuda")
    size = 112 if args.cpu else 840
    from transformers import AutoConfig

    from rise.memory import estimate_train_memory

    cfg = AutoConfig.from_pretrained(str(work / "policy"))
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
    result["steps"] = []

    def reported(step):
        result["steps"].append(step)
        _write(args.out, result)

    share = run_steps(args, work, "rank_share", RANK_PROMPTS, True, steps=2, on_step=reported)
    result["steps"] = share.pop("steps")
    steady = result["steps"][-1] if result["steps"] else {}
    logged = [s.get("logged", {}) for s in result["steps"]]
    weights_changed, dtype = share.pop("weights_changed_share", None), share.pop("policy_dtype", None)
    result.update({
        "rank_share": {**share, "what": f"{RANK_PROMPTS} prompts a step: one rank's share of 16 prompts on 8 GPUs; "
                                        "step 2 carries the optimizer state"},
        "weights_changed_share": weights_changed, "policy_dtype": dtype,
        "finite": bool(logged) and all(logged) and all(math.isfinite(float(v)) for lg in logged for v in lg.values()),
        "logged": steady.get("logged", {}),
        "steady_step": {k: v for k, v in steady.items() if k != "logged"},
    })
    if steady.get("step_s"):
        hours = STEPS_OF_PAPER_RUN * steady["step_s"] / 3600
        result["projected_2k_run"] = {
            "hours_on_8_gpus": round(hours, 2), "gpu_hours": round(8 * hours, 2),
            "what": f"{STEPS_OF_PAPER_RUN} steps x step 2 of one rank's share at {args.completion_length} completion "
                    "tokens (random weights never stop early: every completion runs to the maximum), one GPU "
                    "with fp32 master weights; leaves out the gradient all-reduce between ranks and ZeRO-2's "
                    "sharded optimizer: a lower bound for 8 GPUs of this kind"}
    if "micro_batch" in share:
        model = estimate_train_memory(args.size, gpus=1, zero_stage=None, micro_batch=share["micro_batch"],
                                      checkpointing=True, completion_tokens=args.completion_length,
                                      image_tokens=result["image_tokens_per_prompt"])
        result["memory_model"] = {"terms_gib": model, "measured_peak_allocated_gib": steady.get("peak_allocated_gib"),
                                  "measured_peak_reserved_gib": steady.get("peak_reserved_gib"),
                                  "what": "rise/memory.py's estimate for one GPU, fp32 masters, this micro-batch"}
    host_peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    result.update(host_peak_gib=round(host_peak_gib, 2),
                  host_gib_8_ranks_upper_bound=round(8 * host_peak_gib, 1))
    _write(args.out, result)
    # peak memory without checkpointing depends on the micro-batch, not on the accumulation: one
    # prompt's completions and one step suffice (so no optimizer state: said as such)
    elapsed = time.perf_counter() - started
    if args.cpu or elapsed < args.off_budget_s:
        off = run_steps(args, work, "checkpointing_off", 1, False, steps=1)
        step = (off.pop("steps") or [{}])[0]
        result["step_checkpointing_off"] = {
            **{k: v for k, v in off.items() if k not in ("weights_changed_share", "policy_dtype")},
            **{k: step.get(k) for k in ("step_s", "peak_allocated_gib", "peak_reserved_gib")},
            "what": "one step of one prompt: the peak without the optimizer state"}
    else:
        result["step_checkpointing_off"] = {"skipped": f"{elapsed:.0f} s had passed (--off-budget-s {args.off_budget_s:.0f})"}
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
