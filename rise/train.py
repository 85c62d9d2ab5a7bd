"""GRPO training of the policy with TRL's GRPOTrainer and the paper's rewards.

How `params.yaml: train` maps onto GRPOConfig:
  num_generations        -> num_generations (paper: 8)
  prompts_per_step       -> completions per update = prompts_per_step x num_generations (Seg-Zero: 16 x 8),
                            split as per_device_batch_size x gradient_accumulation_steps x processes
  learning_rate, lr_scheduler, weight_decay, max_grad_norm, temperature, save_steps -> same names
  beta (KL coefficient)  -> beta;  epsilon (clip ratio) -> epsilon;  loss_type -> loss_type
  num_epochs, max_steps  -> num_train_epochs, max_steps
  seeds                  -> one run per seed: seed and data_seed of GRPOConfig
Every `save_steps` the policy's weights are also kept as `<run>/step<N>/` (TRL's own checkpoints,
with optimiser state, rotate after `save_total_limit`), so a checkpoint sweep can evaluate them.
Differences from Seg-Zero's veRL setup are written down in docs/training.md.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import shutil
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from rise.checkpoints import (CrashSafeCheckpoints, KeepCheckpointWeights, latest_checkpoint, no_space_message,
                              saved_checkpoints)
from rise.config import Settings
from rise.layout import FINAL
from rise.plan import stage_settings
from rise.contracts import atomic_write_text, load_train_manifest, save_figure, write_json
from rise.devices import (compute_device, deepspeed_zero_stage, launched_with_deepspeed, policy_load_dtype,
                          reference_dtype)
from rise.errors import ConfigError, DataError, MissingResourceError
from rise.imaging import open_rgb, policy_view
from rise.models import encode_each_image_once, load_clip, load_policy
from rise.prompts import context_tokens, conversation
from rise.fingerprints import weights_fingerprint
from rise.provenance import environment
from rise.rewards import build_rewards

log = logging.getLogger(__name__)


def build_dataset(rows: list[dict], size: int, cot: bool, points: bool, cached_views: int = 32):
    """Prompts plus the policy's view of each image. Images are read and resized when a batch asks
    for them, so 2,000 840x840 images are never all in memory; every image is decoded once first.

    TRL's sampler repeats each prompt once per generation and each generation batch once per
    accumulation step, so a batch names the same few images many times: the last `cached_views`
    views are kept (at least one generation batch's distinct images), and each is decoded once."""
    import functools

    from datasets import Dataset

    from rise.data.images import inspect_images

    # decoded to the end now (as prepare-data checks them), so a missing, truncated or corrupt image
    # stops training before its first step, naming itself, not when its batch is drawn
    problems = {p: why for p, why in inspect_images(r["image"] for r in rows).items() if isinstance(why, str)}
    if problems:
        first = sorted(problems)[0]
        sources = sorted({r["dataset"] for r in rows if r["image"] in problems})
        raise DataError(f"{len(problems)} of {len({r['image'] for r in rows})} training images are missing or "
                        f"unreadable; first: {first} {problems[first]}. Replace the files, or set skip_unreadable: "
                        f"true (for ImageNet also read_sizes: true) in the entry of dataset {', '.join(sources)} and "
                        "rerun prepare-data and sample-train: the data stage then leaves such images out and lists "
                        "them")
    records = {
        "prompt": [conversation(r["instruction"], cot=cot, points=points) for r in rows],
        "image_path": [r["image"] for r in rows],
        "instruction": [r["instruction"] for r in rows],
        "sample_id": [r["sample_id"] for r in rows],
    }

    @functools.lru_cache(maxsize=cached_views)
    def view(path: str):
        return policy_view(open_rgb(path), size)

    def with_policy_view(batch: dict) -> dict:
        batch["image"] = [view(path) for path in batch["image_path"]]
        return batch

    dataset = Dataset.from_dict(records)
    dataset.set_transform(with_policy_view)
    return dataset


def grpo_config(settings: Settings, output_dir: Path, world_size: int = 1, device: torch.device | None = None,
                seed: int | None = None):
    from trl import GRPOConfig

    return GRPOConfig(**grpo_kwargs(settings, output_dir, world_size, device, seed))


def grpo_kwargs(settings: Settings, output_dir: Path, world_size: int = 1, device: torch.device | None = None,
                seed: int | None = None) -> dict:
    """GRPOConfig's arguments for this run (a plain dict, so the GPU choices can be checked anywhere).
    `seed`: the run's training seed (default: the first of `train.seeds`)."""
    t = settings.train
    seed = t.seeds[0] if seed is None else seed
    per_update = t.prompts_per_step * t.num_generations
    per_device = t.per_device_batch_size
    if per_update % (per_device * world_size):
        raise ConfigError(f"train: {per_update} completions per update cannot be split over {world_size} "
                          f"processes of {per_device} (train.per_device_batch_size)")
    accumulation = per_update // (per_device * world_size)
    device = device or torch.device("cpu")
    on_cpu = device.type == "cpu"
    ref_init = {"dtype": reference_dtype(t.bf16, device), "attn_implementation": t.attn_implementation}
    if device.type == "cuda" and world_size == 1:
        ref_init["device_map"] = {"": device}  # the KL reference loads straight onto the GPU too
    return dict(
        output_dir=str(output_dir), seed=seed, data_seed=seed,
        num_generations=t.num_generations, per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accumulation, learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler, weight_decay=t.weight_decay, beta=t.beta,
        epsilon=t.epsilon, max_grad_norm=t.max_grad_norm, temperature=t.temperature,
        repetition_penalty=t.repetition_penalty,
        num_train_epochs=t.num_epochs, max_steps=t.max_steps,
        max_completion_length=t.max_completion_length, save_strategy="steps", save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        loss_type=t.loss_type, entropy_coef=t.entropy_coef, top_entropy_quantile=t.top_entropy_quantile,
        bf16=t.bf16 and not on_cpu, use_cpu=on_cpu,
        gradient_checkpointing=t.gradient_checkpointing, logging_steps=1, report_to="none",
        remove_unused_columns=False, disable_tqdm=False, save_only_model=False,
        # read by TRL for the reference model only (the policy is passed loaded)
        model_init_kwargs=ref_init,
        use_vllm=t.use_vllm, vllm_mode="colocate",
        vllm_max_model_length=context_tokens(settings.image["policy_size"], t.max_completion_length),
        vllm_gpu_memory_utilization=t.vllm_gpu_memory_utilization,
    )


# One colour per reward term in every curve figure (the total in black), whichever terms a variant has.
REWARD_COLOURS = {"semantic": "tab:blue", "think_format": "tab:orange", "seg_format": "tab:green", "reward": "black"}


def write_curves(log_history: list[dict], out_file: Path, title: str = "") -> None:
    """Per-step metrics as CSV (for `dvc plots`) and a PNG of reward terms, KL, length and step time."""
    import pandas as pd

    steps = [h for h in log_history if "reward" in h]
    table = pd.DataFrame.from_records(steps, columns=None if steps else ["step", "reward"])
    atomic_write_text(out_file, table.to_csv(index=False))
    if steps:
        save_figure(curves_figure(steps, title), out_file.with_suffix(".png"))


def curves_figure(steps: list[dict], title: str = ""):
    """Reward terms (one fixed colour each, REWARD_COLOURS), KL, completion length and step time
    against the (integer) step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    keys = [k for k in steps[0] if k.startswith("rewards/") and k.endswith("/mean")] + ["reward"]
    panels = [("reward", keys), ("kl", ["kl"]), ("completion length", ["completions/mean_length"]),
              ("step time (s)", ["step_time"])]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    for ax, (panel, ks) in zip(axes, panels):
        for k in ks:
            xs = [h["step"] for h in steps if k in h]
            ys = [h[k] for h in steps if k in h]
            name = k.replace("rewards/", "").replace("/mean", "")
            if xs:
                ax.plot(xs, ys, marker="o", label=name, color=REWARD_COLOURS.get(name, "tab:purple"))
        ax.set_title(panel)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(ks) > 1:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


class StepTimer(TrainerCallback):
    """Adds each optimisation step's wall time (`step_time`, seconds) to the logged history.

    Measured from the end of the previous step (the start of training for the first) to the end
    of this one, so it holds everything a step costs: data loading, generation, rewards, the
    reference forward, forward/backward and the optimiser step. `Trainer.log` stores a copy of the
    logs before callbacks see them, so the figure is written into that stored entry."""

    def on_train_begin(self, args, state, control, **kwargs):
        self.last = time.perf_counter()
        self.seconds = None

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        self.seconds, self.last = now - self.last, now

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.seconds is not None and state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1]["step_time"] = self.seconds
            self.seconds = None


class StepLog(TrainerCallback):
    """One line per optimisation step in the log (and so in the job's log file): the step, each
    reward term's mean, KL, mean completion length, seconds per step and the time left. It
    replaces the progress bar's print of the raw logged dict."""

    def __init__(self, label: str):
        self.label = label

    def on_train_begin(self, args, state, control, **kwargs):
        self.started, self.first_step = time.perf_counter(), state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "reward" not in logs or not state.is_world_process_zero:
            return
        terms = ", ".join(f"{k[len('rewards/'):-len('/mean')]} {v:.3f}" for k, v in logs.items()
                          if k.startswith("rewards/") and k.endswith("/mean"))
        per_step = (time.perf_counter() - self.started) / max(state.global_step - self.first_step, 1)
        left = per_step * max(state.max_steps - state.global_step, 0)
        log.info("%s step %d/%d: reward %.3f (%s), kl %.3g, completion length %.0f, %.1f s/step, %s left",
                 self.label, state.global_step, state.max_steps, logs["reward"], terms, logs.get("kl", float("nan")),
                 logs.get("completions/mean_length", float("nan")), per_step,
                 time.strftime("%H:%M:%S", time.gmtime(left)))


def labelled_progress(label: str):
    """transformers' training bar with the run's name on it (two jobs' bars stay apart) and
    without its print of every logged dict (StepLog writes one readable line instead)."""
    from tqdm.auto import tqdm
    from transformers.trainer_callback import ProgressCallback

    class LabelledProgress(ProgressCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.training_bar = tqdm(total=state.max_steps, initial=state.global_step, desc=label, unit="step",
                                         dynamic_ncols=True)
            self.current_step = state.global_step

        def on_log(self, args, state, control, logs=None, **kwargs):
            pass

    return LabelledProgress()


def train_variant(settings: Settings, variant_name: str, callbacks: list | None = None,
                  on_trainer=None, seed: int | None = None) -> Path:
    """Trains one run of a variant (resuming from its latest checkpoint) and writes its policy reference.

    `seed`: which of `train.seeds` (default: the first). `callbacks` are extra transformers
    TrainerCallbacks (custom logging, early stops); `on_trainer(trainer)` is called once the
    trainer exists (instrumentation, benchmarks)."""
    v = settings.variants[variant_name]
    seed = settings.seeds(variant_name)[0] if seed is None else seed
    if seed not in settings.seeds(variant_name):
        raise ConfigError(f"train.seeds: {seed} is not one of the seeds of {variant_name} "
                          f"({settings.seeds(variant_name)})")
    layout = settings.layout
    out_dir = layout.checkpoint_dir(variant_name, seed)
    ref_file = layout.policy_ref(variant_name, seed)
    curves = layout.train_curves(variant_name, seed)
    base = settings.policy_ref(variant_name)
    record = {"variant": variant_name, "seed": seed, "base": base, "settings": v.as_dict(),
              "provenance": settings.provenance(), "environment": environment()}

    def fingerprints() -> dict:
        """The weights the run started from and the CLIP that rewarded it (rise/fingerprints.py);
        hashed where policy.json is written, once, not on every rank or on a run already done."""
        return {"base": weights_fingerprint(base),
                "clip": weights_fingerprint(settings.models["clip"]["pretrained"]) if v.train else None}

    if not v.train:
        write_curves([], curves)  # no steps: an empty curve, so every variant has one
        write_json(ref_file, {**record, "policy": base, "trained": False, "steps": 0, "checkpoints": {FINAL: base},
                              "fingerprints": fingerprints()})
        log.info("%s: no training (zero-shot); policy is %s", variant_name, base)
        return ref_file

    trainer_dir = out_dir / "trainer"
    fingerprint_file = out_dir / "train_settings.json"
    fingerprint = stage_settings(settings, "train", variant_name, seed=seed)
    if ref_file.exists() and fingerprint_file.exists() and fingerprint_file.read_text() == fingerprint:
        log.info("%s seed %d: already trained with these settings (%s)", variant_name, seed, ref_file)
        return ref_file  # a finished run is not trained again (resuming at its last step would add one)

    from accelerate import PartialState

    # Sets this rank's device (and, under a multi-process launch, the process group: gloo on CPUs)
    # before anything is built, so every model and reward below lands on this rank's device.
    processes = PartialState(cpu=settings.device != "cuda" or not torch.cuda.is_available())
    device = compute_device(settings.preset, settings.device, processes.device)
    rows = load_train_manifest(layout.train_manifest(v.train_set))
    size = settings.image["policy_size"]
    dataset = build_dataset(rows, size, v.cot, v.points, cached_views=2 * settings.train.prompts_per_step)

    if processes.is_main_process:
        if trainer_dir.exists() and (not fingerprint_file.exists() or fingerprint_file.read_text() != fingerprint):
            # checkpoints of other settings must not be resumed: start this training afresh
            log.warning("%s: settings changed since the checkpoints in %s were written; starting afresh",
                        variant_name, trainer_dir)
            shutil.rmtree(trainer_dir)
            for old in saved_checkpoints(out_dir).values():
                shutil.rmtree(old)
        out_dir.mkdir(parents=True, exist_ok=True)
        ref_file.unlink(missing_ok=True)  # written again when this training completes
        fingerprint_file.write_text(fingerprint)
    processes.wait_for_everyone()
    # The config comes before the policy: under ZeRO-3 it is what lets the load shard at once.
    args = grpo_config(settings, trainer_dir, processes.num_processes, device, seed)

    deepspeed = launched_with_deepspeed()
    zero3 = deepspeed_zero_stage() == 3
    dtype = policy_load_dtype(settings.train.bf16, deepspeed)
    model, processor = load_policy(base, f"presets.{settings.preset}.models.policies.{v.policy}", dtype=dtype,
                                   device=None if zero3 else device,
                                   attn_implementation=settings.train.attn_implementation)
    clip_cfg = settings.models["clip"]

    def clip_loader():
        m, _, tok = load_clip(clip_cfg["model"], clip_cfg["pretrained"], f"presets.{settings.preset}.models.clip",
                              device=str(device))
        return m, tok

    rewards = build_rewards(v.rewards, points=v.points, cot=v.cot, clip_loader=clip_loader, device=str(device),
                            single_quotes=settings.train.json_single_quotes,
                            semantic_scale=settings.train.semantic_scale)
    if not rewards:
        raise ConfigError(f"variants.{variant_name}: no reward term applies (R_think is dropped without CoT)")
    log.info("%s: %d process(es) on %s; policy %s in %s (%s), gradient checkpointing %s, "
             "%d completions per micro-batch x %d accumulation", variant_name, processes.num_processes, device, base,
             dtype, "DeepSpeed ZeRO-%d" % deepspeed_zero_stage() if deepspeed else "fp32 master weights",
             "on" if args.gradient_checkpointing else "off", args.per_device_train_batch_size,
             args.gradient_accumulation_steps)

    from trl import GRPOTrainer

    class Trainer(CrashSafeCheckpoints, GRPOTrainer):
        pass

    # TRL loads the KL reference itself; on a GPU rank it is read straight onto this rank's device
    # (TRL drops device_map under multi-GPU launches, the default-device context still applies).
    placement = torch.device(device) if device.type == "cuda" and not zero3 else contextlib.nullcontext()
    with placement:
        trainer = Trainer(model=model, reward_funcs=rewards, args=args, train_dataset=dataset,
                              processing_class=processor,
                              callbacks=[StepTimer(), KeepCheckpointWeights(out_dir), StepLog(f"train {variant_name} "
                                         f"seed {seed}"), *(callbacks or [])])
    from transformers.trainer_callback import ProgressCallback

    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(labelled_progress(f"train {variant_name} seed {seed}"))
    if settings.train.encode_images_once:
        for m in (trainer.model, getattr(trainer, "ref_model", None)):
            if m is not None:
                encode_each_image_once(m)
    if on_trainer is not None:
        on_trainer(trainer)
    if processes.is_main_process:
        latest_checkpoint(trainer_dir)  # one rank moves damaged checkpoints aside, then all agree
    processes.wait_for_everyone()
    resume = latest_checkpoint(trainer_dir)
    if resume:
        log.info("%s: resuming from %s", variant_name, resume)
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise MissingResourceError(no_space_message(trainer_dir, model)) from exc
    final = out_dir / "final"
    trainer.save_model(str(final))
    if not trainer.is_world_process_zero():
        return ref_file
    processor.save_pretrained(str(final))
    write_curves(trainer.state.log_history, curves, title=f"{variant_name}, seed {seed}: GRPO training "
                 f"({settings.preset} preset)")
    steps = trainer.state.global_step
    if steps != settings.train_steps(variant_name):
        log.warning("%s: trained %d steps where the settings plan %d (Settings.train_steps): a checkpoint "
                    "sweep expects its step folders at multiples of save_steps below the plan",
                    variant_name, steps, settings.train_steps(variant_name))
    kept = {name: path for name, path in saved_checkpoints(out_dir).items() if int(name[4:]) < steps}
    write_json(ref_file, {**record, "policy": str(final), "trained": True, "steps": steps,
                          "checkpoints": {**kept, FINAL: str(final)},
                          "fingerprints": {**fingerprints(), "policy": weights_fingerprint(final)}})
    log.info("%s seed %d: %d steps -> %s (checkpoints kept: %s)", variant_name, seed, steps, final,
             ", ".join(kept) or "none")
    return ref_file

