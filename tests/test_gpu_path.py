"""The paper preset's GPU path, proved where a CPU can prove it: weights that move at lr 1e-6,
models on each rank's device, a two-process launch, the settings that make a step fit, and the
one-GPU check's CPU mode."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_trainable_policy_keeps_fp32_master_weights_unless_deepspeed_does():
    from rise.devices import policy_load_dtype, reference_dtype

    assert policy_load_dtype(bf16=True, deepspeed=False) is torch.float32  # one GPU, ddp.yaml
    assert policy_load_dtype(bf16=True, deepspeed=True) is torch.bfloat16  # ZeRO keeps fp32 masters itself
    assert policy_load_dtype(bf16=False, deepspeed=True) is torch.float32
    assert reference_dtype(True, torch.device("cuda", 0)) is torch.bfloat16  # frozen: no master copy needed
    assert reference_dtype(True, torch.device("cpu")) is torch.float32


def test_cuda_preset_without_gpu_stops_unless_allowed(monkeypatch):
    from rise.devices import compute_device
    from rise.errors import MissingResourceError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("RISE_ALLOW_CPU", raising=False)
    with pytest.raises(MissingResourceError, match="presets.paper.device is 'cuda'.*RISE_ALLOW_CPU"):
        compute_device("paper", "cuda")
    monkeypatch.setenv("RISE_ALLOW_CPU", "1")
    assert compute_device("paper", "cuda") == torch.device("cpu")
    assert compute_device("demo", "cpu") == torch.device("cpu")


def test_each_rank_computes_on_the_device_accelerate_gave_it(monkeypatch):
    from rise.devices import compute_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert compute_device("paper", "cuda", torch.device("cuda", 3)) == torch.device("cuda", 3)


def test_paper_settings_fit_and_make_up_128_completions_per_update():
    from rise.config import load_settings
    from rise.memory import estimate_train_memory
    from rise.train import grpo_config

    s = load_settings(ROOT / "params.yaml", "paper")
    t = s.train
    assert t.gradient_checkpointing is True
    assert t.prompts_per_step * t.num_generations == 128
    args = grpo_config(s, Path("/tmp/unused"), world_size=8)
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps * 8 == 128
    assert args.gradient_checkpointing and args.save_total_limit == t.save_total_limit
    assert args.repetition_penalty == t.repetition_penalty
    assert args.vllm_max_model_length == 900 + 256 + t.max_completion_length
    for size in ("3b", "7b"):
        est = estimate_train_memory(size, gpus=8, zero_stage=2, micro_batch=t.per_device_batch_size,
                                    checkpointing=True, completion_tokens=t.max_completion_length)
        assert est["total_gib"] < 75, (size, est)
    # what the settings were before: no checkpointing at 8 completions per micro-batch does not fit
    est = estimate_train_memory("3b", gpus=8, zero_stage=2, micro_batch=8, checkpointing=False,
                                completion_tokens=t.max_completion_length)
    assert est["total_gib"] > 80


def test_memory_model_counts_ddp_buckets_and_names_the_largest_micro_batch_that_fits():
    """DDP keeps a second fp32 copy of the gradients in its buckets (several processes, no
    DeepSpeed): 3B under ddp.yaml then misses 80 GB, as docs/training.md says."""
    from rise.memory import estimate_train_memory, largest_micro_batch

    kw = dict(micro_batch=4, checkpointing=True, completion_tokens=1300)
    ddp = estimate_train_memory("3b", gpus=8, zero_stage=None, **kw)
    one = estimate_train_memory("3b", gpus=1, zero_stage=None, **kw)
    zero2 = estimate_train_memory("3b", gpus=8, zero_stage=2, **kw)
    assert ddp["ddp_buckets"] == ddp["gradients"] > 0 and one["ddp_buckets"] == zero2["ddp_buckets"] == 0
    assert ddp["total_gib"] > 80 > one["total_gib"]
    largest = largest_micro_batch("3b", 80, gpus=8, zero_stage=2, checkpointing=True, completion_tokens=1300)
    assert largest >= 4
    for mb, fits in ((largest, True), (largest + 1, False)):
        total = estimate_train_memory("3b", gpus=8, zero_stage=2, micro_batch=mb, checkpointing=True,
                                      completion_tokens=1300)["total_gib"]
        assert (total <= 80) == fits
    assert largest_micro_batch("7b", 80, gpus=1, zero_stage=None, checkpointing=True, completion_tokens=1300) == 0


def test_gpu_check_cpu_mode_reports_every_key_and_moving_weights(tmp_path):
    """`bash benchmarks/gpu_check.sh --cpu`, as benchmarks/README.md shows it: two steps of one
    rank's share, per-step phases and decode speed, saves off, its work folder gone after, and a
    stale one from a run cut short removed at the start."""
    out = tmp_path / "gpu_check.json"
    temp = tmp_path / "tmp"
    stale = temp / "rise-gpu-check-cut-short"
    stale.mkdir(parents=True)
    (stale / "pid").write_text("999999999")  # no such process
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHON": sys.executable, "OUT": str(tmp_path), "TMPDIR": str(temp)}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu"], capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == result
    assert not list(temp.glob("rise-gpu-check-*")), "work folders left behind"
    assert result["image_tokens_per_prompt"] == result["expected_image_tokens"] == 16
    assert result["policy_dtype"] == "float32"
    assert result["weights_changed_share"] > 0.5  # two steps at lr 1e-6 move most weights in fp32
    assert result["finite"] and {"loss", "kl", "reward", "rewards/semantic/mean"} <= set(result["logged"])
    assert [s["step"] for s in result["steps"]] == [1, 2] and result["steady_step"]["step"] == 2
    for step in result["steps"]:
        assert set(step["phases_s"]) == {"generation", "rewards", "reference_forward", "policy_forward_backward",
                                         "optimizer", "rest"}
        assert step["phases_s"]["generation"] > 0 and step["phases_s"]["optimizer"] > 0
        assert sum(step["phases_s"].values()) == pytest.approx(step["step_s"], abs=0.05)
        assert step["generated_tokens"] > 0 and step["decode_tokens_per_s"] > 0
        assert {"peak_allocated_gib", "peak_reserved_gib"} <= set(step)
    assert result["rank_share"]["prompts"] == 2 and result["rank_share"]["completions"] == 8
    assert result["rank_share"]["levers"] == {"attn_implementation": "sdpa", "encode_images_once": True}
    assert "lower bound" in result["projected_2k_run"]["what"]
    assert result["projected_2k_run"]["gpu_hours"] == pytest.approx(8 * result["projected_2k_run"]["hours_on_8_gpus"], abs=0.05)
    assert {"weights", "gradients", "optimiser", "activations"} <= set(result["memory_model"]["terms_gib"])
    assert result["step_checkpointing_off"]["step_s"] > 0 and "optimizer state" in result["step_checkpointing_off"]["what"]
    assert result["rsem"]["agree"] and result["rsem"]["completions"] == 128
    assert result["sam2"]["samples"] == 12
    assert result["host_gib_8_ranks_upper_bound"] == pytest.approx(8 * result["host_peak_gib"], abs=0.1)


def test_bf16_resident_policy_barely_moves_at_the_paper_lr(tmp_path, monkeypatch):
    """The control for the test above: the same step with the policy held in bf16 (what the GPU
    path chose before) changes few weights, so the 0.5 threshold separates the two."""
    import argparse

    import gpu_check

    import rise.train

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    work = tmp_path / "work"
    gpu_check.build_models(work, cpu=True, size="3b")
    monkeypatch.setattr(rise.train, "policy_load_dtype", lambda bf16, deepspeed: torch.bfloat16)
    args = argparse.Namespace(cpu=True, completion_length=16)
    result = gpu_check.run_steps(args, work, "bf16", prompts_per_step=2, checkpointing=False, steps=1)
    assert result["policy_dtype"] == "bfloat16"
    assert result["weights_changed_share"] < 0.2
    # saves off: neither a checkpoint nor the final weights were written
    written = [p.name for p in (work / "bf16").rglob("*") if p.suffix in (".safetensors", ".bin", ".pt")]
    assert written == [], written


@pytest.mark.slow
def test_two_process_training_splits_the_update_over_ranks(demo_project):
    """The project's own ddp.yaml launch with 2 processes on CPUs (gloo): both ranks join one
    process group, build models and rewards on their own device, and share each update."""
    import yaml

    params = yaml.safe_load((demo_project / "params.yaml").read_text())
    params["presets"]["demo"]["overrides"]["train"]["per_device_batch_size"] = 4  # 8 per update = 4 x 1 x 2 ranks
    params["variants"]["two_ranks_3b"] = {}
    (demo_project / "params-two-ranks.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "workflow/accelerate/ddp.yaml",
           "--num_processes", "2", "--mixed_precision", "no",
           "-m", "rise.cli", "--params", "params-two-ranks.yaml", "train", "--variant", "two_ranks_3b"]
    proc = subprocess.run(cmd, cwd=demo_project, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert proc.stderr.count("2 process(es) on cpu") == 2  # one line per rank
    assert "4 completions per micro-batch x 1 accumulation" in proc.stderr
    ref = json.loads((demo_project / "runs/demo/checkpoints/two_ranks_3b/seed0/policy.json").read_text())
    assert ref["trained"] and ref["steps"] == 2
    import pandas as pd

    curve = pd.read_csv(demo_project / "runs/demo/curves/two_ranks_3b-seed0.csv")
    # 2 prompts of the 32-pair training set per update, whichever rank drew them
    assert list(curve["epoch"]) == pytest.approx([2 / 32, 4 / 32])


@pytest.mark.slow
def test_gpu_extras_resolve_as_documented():
    """`.[deepspeed]` resolves beside the pinned stack; vLLM does not, and its own environment
    (workflow/envs/rise-vllm.yaml) does (docs/training.md says so)."""
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "check_gpu_extras.sh")], capture_output=True, text=True,
                          env=env, timeout=600)
    if "Could not find a version" in proc.stdout + proc.stderr or "Network is unreachable" in proc.stdout:
        pytest.skip("package registry unreachable")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok: .[deepspeed] resolves" in proc.stdout and "cannot be installed beside" in proc.stdout
    assert "ok: workflow/envs/rise-vllm.yaml resolves" in proc.stdout and "vllm-0.31.0" in proc.stdout


def test_step_time_is_the_whole_step_wall_time(in_demo):
    """`step_time` in the curves counts everything a step costs, not only TRL's training_step:
    a callback that stalls each step by 1.5 s before TRL's own timer starts must show up in it."""
    import dataclasses
    import time

    import pandas as pd
    from transformers import TrainerCallback

    from rise.config import Variant
    from rise.train import train_variant

    class Stall(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            time.sleep(1.5)

    variants = {**in_demo.variants, "timed_3b": Variant(**{**in_demo.variants["full_3b"].__dict__, "name": "timed_3b"})}
    settings = dataclasses.replace(in_demo, variants=variants, train=dataclasses.replace(in_demo.train, max_steps=2))
    train_variant(settings, "timed_3b", callbacks=[Stall()])
    curve = pd.read_csv(settings.layout.train_curves("timed_3b"))
    assert list(curve["step"]) == [1, 2]
    assert (curve["step_time"] >= 1.5).all(), curve["step_time"].tolist()


def test_docs_memory_table_is_the_estimator_output():
    """docs/training.md shows `python -m rise.memory`; the two cannot drift apart."""
    from rise.memory import markdown_table

    assert markdown_table() in (ROOT / "docs" / "training.md").read_text()


def test_policy_and_reference_load_straight_onto_the_rank_gpu(monkeypatch, demo_project):
    """No full host copy per rank: the policy is read with device_map onto the rank's GPU, and TRL's
    reference gets the same placement and bf16 through model_init_kwargs."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from rise.config import load_settings
    from rise.models import load_policy
    from rise.train import grpo_kwargs

    seen = {}

    class Loaded:
        def to(self, device):
            seen["to"] = device
            return self

    def fake_from_pretrained(ref, **kwargs):
        seen.update(kwargs)
        return Loaded()

    monkeypatch.setattr(Qwen2_5_VLForConditionalGeneration, "from_pretrained", fake_from_pretrained)
    gpu = torch.device("cuda", 1)
    load_policy(str(demo_project / "runs/demo/models/policy"), dtype=torch.float32, device=gpu)
    assert seen["device_map"] == {"": gpu} and seen["dtype"] is torch.float32
    seen.clear()
    load_policy(str(demo_project / "runs/demo/models/policy"), device=None)  # ZeRO-3 places it itself
    assert "device_map" not in seen and "to" not in seen

    s = load_settings(ROOT / "params.yaml", "paper")
    one = grpo_kwargs(s, Path("/tmp/unused"), world_size=1, device=gpu)
    assert one["model_init_kwargs"] == {"dtype": torch.bfloat16, "device_map": {"": gpu}, "attn_implementation": "sdpa"} and one["bf16"]
    eight = grpo_kwargs(s, Path("/tmp/unused"), world_size=8, device=gpu)
    assert eight["model_init_kwargs"] == {"dtype": torch.bfloat16, "attn_implementation": "sdpa"}  # TRL drops device_map there; rise.train
    # then builds the trainer under the rank's default-device context instead


def test_greedy_decoding_uses_the_repetition_penalty_setting(demo_project, monkeypatch):
    """Prediction never inherits decoding settings from the checkpoint's generation config."""
    from PIL import Image

    from rise.config import load_settings
    from rise.predict import PolicyRunner

    paper = load_settings(ROOT / "params.yaml", "paper")
    assert paper.predict.repetition_penalty == 1.05  # Seg-Zero's evaluation, via Qwen's generation config
    runner = PolicyRunner(str(demo_project / "runs/demo/models/policy"), "policy", size=112, cot=True, points=True,
                          max_new_tokens=4, batch_size=2, device="cpu", repetition_penalty=1.05)
    calls = []
    original = runner.model.generate
    monkeypatch.setattr(runner.model, "generate", lambda **kw: calls.append(kw) or original(**kw))
    rows = [{"instruction": "the red circle", "image": "a"}]
    runner.generate(rows, {"a": Image.new("RGB", (112, 112))})
    assert calls and calls[0]["repetition_penalty"] == 1.05 and calls[0]["do_sample"] is False


def test_gpu_check_gpu_mode_stops_at_once_without_a_gpu(tmp_path):
    """`bash benchmarks/gpu_check.sh` as documented, on a machine without a GPU: a clear message, no work."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHON": sys.executable, "OUT": str(tmp_path)}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode != 0
    assert "no CUDA GPU visible; use --cpu" in proc.stdout + proc.stderr


def test_each_training_image_is_decoded_once_per_generation_batch(in_demo, monkeypatch):
    """TRL repeats every prompt per generation and every generation batch per accumulation step;
    the policy's view of an image is decoded once, not once per repetition."""
    import dataclasses

    import rise.train
    from rise.config import Variant
    from rise.train import train_variant

    opened = []
    real_open = rise.train.open_rgb
    monkeypatch.setattr(rise.train, "open_rgb", lambda path: opened.append(path) or real_open(path))
    variants = {**in_demo.variants, "decode_3b": Variant(**{**in_demo.variants["full_3b"].__dict__, "name": "decode_3b"})}
    # 2 prompts x 4 generations per update in micro-batches of 2: 4 accumulation steps
    settings = dataclasses.replace(in_demo, variants=variants,
                                   train=dataclasses.replace(in_demo.train, max_steps=2, per_device_batch_size=2))
    train_variant(settings, "decode_3b")
    # the 2 distinct images of each step (and of the batch the loader fetches ahead), each once;
    # without the cache each would be decoded 4 generations x 4 accumulation steps = 16 times
    assert 0 < len(opened) <= 3 * 2 and len(opened) == len(set(opened))
