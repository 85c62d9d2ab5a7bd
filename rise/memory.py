"""GPU memory of one GRPO training rank, estimated from the model size and the launch.

An estimate, not a measurement (`benchmarks/gpu_check.py` measures one GPU): it says which
launches can fit at all before anyone books a node, and `rise check` prints it for the preset.
Every term is written out so a reader can follow and correct it:

  weights, gradients, optimiser   by launch: plain data parallel keeps fp32 master weights, fp32
                                  gradients and AdamW's two fp32 moments on every GPU (16 bytes per
                                  parameter); ZeRO-2 keeps bf16 weights and shards the fp32 masters,
                                  moments and gradients over the GPUs; ZeRO-3 shards the weights too
  DDP buckets                     several processes without DeepSpeed (ddp.yaml): DDP's gradient
                                  buckets, a second fp32 copy of the gradients (4 bytes per parameter)
  reference                       the frozen KL reference in bf16 (sharded under ZeRO-3)
  activations                     per completion of a micro-batch: every saved tensor of every
                                  layer (or only the layer inputs with gradient checkpointing, plus
                                  one layer recomputed), the vision tower likewise, and the logits
                                  of the completion tokens (bf16, their temperature-scaled copy and
                                  their gradient)
  overhead                        CUDA context, allocator slack, CLIP
"""
from __future__ import annotations

GIB = 2**30

# Published Qwen2.5-VL shapes (config.json on the Hub); params in billions, vision tower included.
POLICY_SHAPES = {
    "3b": {"params_b": 3.75, "layers": 36, "hidden": 2048, "intermediate": 11008, "vocab": 151936},
    "7b": {"params_b": 8.29, "layers": 28, "hidden": 3584, "intermediate": 18944, "vocab": 152064},
}
VISION = {"layers": 32, "hidden": 1280, "intermediate": 3420}
PROMPT_TOKENS = 150  # Seg-Zero's prompt text with Qwen's system turn
OVERHEAD_GIB = 2.5   # CUDA context, allocator slack, CLIP ViT-B/32


def _saved_bytes_per_token(hidden: int, intermediate: int) -> int:
    # bf16 tensors autograd keeps per token and layer: attention inputs and outputs, two norms,
    # the MLP's gate, up, activation and product
    return 2 * (5 * hidden + 4 * intermediate)


def estimate_train_memory(size: str, *, gpus: int, zero_stage: int | None, micro_batch: int, checkpointing: bool,
                          completion_tokens: int, image_tokens: int = 900) -> dict:
    """GiB per GPU for one training rank; `zero_stage` None is plain data parallel (ddp.yaml or one GPU)."""
    shape = POLICY_SHAPES[size]
    p = shape["params_b"] * 1e9
    if zero_stage is None:
        weights, grads, optim, ref = 4 * p, 4 * p, 8 * p, 2 * p
    elif zero_stage == 2:
        weights, grads, optim, ref = 2 * p, 2 * p / gpus, 12 * p / gpus, 2 * p
    elif zero_stage == 3:
        weights, grads, optim, ref = 2 * p / gpus, 2 * p / gpus, 12 * p / gpus, 2 * p / gpus
    else:
        raise ValueError(f"zero_stage must be None, 2 or 3, not {zero_stage}")
    buckets = 4 * p if zero_stage is None and gpus > 1 else 0

    tokens = image_tokens + PROMPT_TOKENS + completion_tokens
    patches = image_tokens * 4  # the vision tower runs before the 2x2 merge
    text_layer = _saved_bytes_per_token(shape["hidden"], shape["intermediate"])
    vision_layer = _saved_bytes_per_token(VISION["hidden"], VISION["intermediate"])
    if checkpointing:
        text = shape["layers"] * tokens * shape["hidden"] * 2 + tokens * text_layer
        vision = VISION["layers"] * patches * VISION["hidden"] * 2 + patches * vision_layer
    else:
        text = shape["layers"] * tokens * text_layer
        vision = VISION["layers"] * patches * vision_layer
    logits = 3 * completion_tokens * shape["vocab"] * 2
    activations = micro_batch * (text + vision + logits)
    parts = {"weights": weights, "gradients": grads, "ddp_buckets": buckets, "optimiser": optim, "reference": ref,
             "activations": activations}
    out = {k: round(v / GIB, 1) for k, v in parts.items()}
    out["overhead"] = OVERHEAD_GIB
    out["total_gib"] = round(sum(parts.values()) / GIB + OVERHEAD_GIB, 1)
    return out


def launch_zero_stage(accelerate_config: str | None) -> int | None:
    """The ZeRO stage an accelerate config file asks for (None: no DeepSpeed)."""
    if not accelerate_config:
        return None
    import yaml
    from pathlib import Path

    path = Path(accelerate_config)
    if not path.exists():
        return None
    cfg = yaml.safe_load(path.read_text()) or {}
    if cfg.get("distributed_type") != "DEEPSPEED":
        return None
    return int(cfg.get("deepspeed_config", {}).get("zero_stage", 2))


def launch_report(settings) -> list[str]:
    """One line per trained policy size: the launch, the estimate per GPU, and whether it fits."""
    if settings.device != "cuda":
        return []
    t = settings.train
    capacity = settings.launch.get("gpu_memory_gib", 80)
    config = settings.launch.get("accelerate_config")
    lines = []
    for size in sorted({v.policy for v in settings.variants.values() if v.train}):
        if size not in POLICY_SHAPES:
            continue
        gpus = max(settings.train_gpus(name) for name, v in settings.variants.items() if v.train and v.policy == size)
        stage = launch_zero_stage(config) if gpus > 1 else None
        e = estimate_train_memory(size, gpus=gpus, zero_stage=stage, micro_batch=t.per_device_batch_size,
                                  checkpointing=t.gradient_checkpointing,
                                  completion_tokens=t.max_completion_length)
        launch = f"{gpus} GPU(s), " + (f"ZeRO-{stage}" if stage else "data parallel, fp32 master weights")
        verdict = "fits" if e["total_gib"] <= capacity else "DOES NOT FIT"
        largest = largest_micro_batch(size, capacity, gpus=gpus, zero_stage=stage,
                                      checkpointing=t.gradient_checkpointing,
                                      completion_tokens=t.max_completion_length)
        lines.append(f"train {size}: {launch}, micro-batch {t.per_device_batch_size}, checkpointing "
                     f"{'on' if t.gradient_checkpointing else 'off'}: about {e['total_gib']} GiB per GPU, "
                     f"{verdict} in launch.gpu_memory_gib={capacity}; the largest micro-batch that fits: "
                     f"{largest or 'none'} (train.per_device_batch_size; rise/memory.py)")
    return lines


def largest_micro_batch(size: str, capacity_gib: float, *, gpus: int, zero_stage: int | None, checkpointing: bool,
                        completion_tokens: int, limit: int = 64) -> int:
    """The largest micro-batch (completions per GPU per forward) whose estimate fits `capacity_gib`;
    0 when not even one does. Fewer accumulation steps per update is the cheaper step, as long as
    it fits (the estimate is not a measurement: leave a margin)."""
    fits = [mb for mb in range(1, limit + 1)
            if estimate_train_memory(size, gpus=gpus, zero_stage=zero_stage, micro_batch=mb, checkpointing=checkpointing,
                                     completion_tokens=completion_tokens)["total_gib"] <= capacity_gib]
    return max(fits, default=0)


def markdown_table(completion_tokens: int = 1300, micro_batch: int = 4) -> str:
    """The table in docs/training.md: `python -m rise.memory`."""
    rows = ["| policy | launch | GPUs | checkpointing | micro-batch | GiB per GPU (weights / grads / DDP buckets / optimiser / reference / activations) | total |",
            "|---|---|---|---|---|---|---|"]
    for size in POLICY_SHAPES:
        for launch, stage, gpus in (("one GPU, fp32 masters", None, 1), ("ddp.yaml", None, 8),
                                    ("zero2.yaml", 2, 8), ("zero3.yaml", 3, 8)):
            for ckpt, mb in ((True, micro_batch), (False, 8)):
                e = estimate_train_memory(size, gpus=gpus, zero_stage=stage, micro_batch=mb, checkpointing=ckpt,
                                          completion_tokens=completion_tokens)
                parts = " / ".join(str(e[k]) for k in ("weights", "gradients", "ddp_buckets", "optimiser", "reference",
                                                       "activations"))
                rows.append(f"| {size.upper()} | {launch} | {gpus} | {'on' if ckpt else 'off'} | {mb} | {parts} | "
                            f"**{e['total_gib']}** |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
