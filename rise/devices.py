"""Which device and precision a stage computes on: one place for training and prediction.

A preset says `device: cuda` or `device: cpu`. A CUDA preset on a machine without a visible GPU
stops with a clear message instead of silently running on the CPU; `RISE_ALLOW_CPU=1` is the
explicit override (for smoke tests of the paper settings on a CPU machine).
"""
from __future__ import annotations

import os

import torch

from rise.errors import MissingResourceError

ALLOW_CPU_ENV = "RISE_ALLOW_CPU"


def compute_device(preset: str, wanted: str, process_device: torch.device | None = None) -> torch.device:
    """The device this process computes on.

    `process_device` is the device `accelerate` assigned to this rank (`PartialState().device`),
    so every rank of a multi-GPU run builds its models and rewards on its own GPU."""
    if wanted != "cuda":
        return torch.device("cpu")
    if torch.cuda.is_available():
        if process_device is not None and process_device.type == "cuda":
            return process_device
        return torch.device("cuda", torch.cuda.current_device())
    if os.environ.get(ALLOW_CPU_ENV) == "1":
        return torch.device("cpu")
    raise MissingResourceError(
        f"presets.{preset}.device is 'cuda' but no CUDA GPU is visible to this process "
        f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}); run on a GPU node, "
        f"or set {ALLOW_CPU_ENV}=1 to run these settings on the CPU on purpose")


def launched_with_deepspeed() -> bool:
    """True inside `accelerate launch` with a DeepSpeed config (zero2.yaml / zero3.yaml)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def deepspeed_zero_stage() -> int | None:
    if not launched_with_deepspeed():
        return None
    return int(os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2"))


def policy_load_dtype(bf16: bool, deepspeed: bool) -> torch.dtype:
    """The dtype the *trainable* policy is loaded in.

    AdamW at lr 1e-6 on bf16-resident weights rounds almost every update away (a weight of
    magnitude 0.02 has a bf16 step of about 1.2e-4), so a run would log training and stay at
    zero-shot. Without DeepSpeed the policy therefore holds fp32 master weights and `bf16` only
    turns on bf16 autocast for compute. DeepSpeed keeps its own fp32 master copy in the optimiser,
    so there the policy may be loaded in bf16, which halves the load's memory."""
    if bf16 and deepspeed:
        return torch.bfloat16
    return torch.float32


def reference_dtype(bf16: bool, device: torch.device) -> torch.dtype:
    """The frozen KL reference needs no master weights: bf16 on GPU when bf16 is on."""
    return torch.bfloat16 if bf16 and device.type == "cuda" else torch.float32
