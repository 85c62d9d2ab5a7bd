"""Training checkpoints that survive a crash: staged saves, a check before resuming, weights
that resume in the model's own key layout, and the kept `step<N>/` weights of checkpoint sweeps.

What can go wrong, and what answers it:
- killed or out of disk during a save: each checkpoint is written under `<trainer>/incomplete/`
  and renamed to `checkpoint-<N>` when complete (`CrashSafeCheckpoints`), so a half save is never
  taken for a checkpoint, and rotation (`save_total_limit`) runs only after the new one is complete;
- a checkpoint damaged afterwards (an interrupted copy or `dvc pull`): `latest_checkpoint` checks
  the files before resuming and moves a damaged one aside;
- resuming the weights: transformers saves Qwen2.5-VL's weights in the published key layout
  (`visual.*`, `model.layers.*`) but the trainer reloads them into the model's own
  (`model.visual.*`, `model.language_model.*`) without renaming, so every key misses and training
  would go on from the base weights in silence (transformers issue 43701); the weights are read
  back through `from_pretrained`, which renames them, and a key left unmatched is an error.
"""
from __future__ import annotations

import json
import logging
import shutil
import zipfile
from pathlib import Path

from transformers import TrainerCallback

log = logging.getLogger(__name__)

STAGING = "incomplete"  # under the trainer folder: saves in progress (never resumed from)


def checkpoint_problem(ckpt: Path) -> str | None:
    """Why a TRL checkpoint cannot be resumed from, or None when it is complete and readable: the
    trainer state parses, every weights file's header covers the file (safetensors), the optimizer,
    scheduler and RNG states are whole torch files (a truncated one lacks its zip directory).
    Cheap: headers and directories are read, not the tensors."""
    from safetensors import safe_open

    try:
        json.loads((ckpt / "trainer_state.json").read_text())
    except (OSError, ValueError) as exc:
        return f"trainer_state.json unreadable ({exc})"
    deepspeed = any(ckpt.glob("global_step*"))  # DeepSpeed keeps its own optimizer shards
    weights = sorted(ckpt.glob("*.safetensors"))
    if not weights and not (ckpt / "pytorch_model.bin").exists() and not deepspeed:
        return "no model weights"
    for w in weights:
        try:
            with safe_open(str(w), "pt") as f:
                f.keys()
        except Exception as exc:  # safetensors raises its own error types
            return f"{w.name} unreadable ({str(exc).splitlines()[0]})"
    if not deepspeed and not (ckpt / "optimizer.pt").exists():
        return "no optimizer.pt"
    for f in [ckpt / "optimizer.pt", ckpt / "scheduler.pt", *ckpt.glob("rng_state*.pth")]:
        if f.exists() and not zipfile.is_zipfile(f):
            return f"{f.name} is not a whole torch file"
    return None


def no_space_message(trainer_dir: Path, model) -> str:
    """One line for a full disk: the folder, the space one checkpoint takes, what is intact."""
    kept = [p for p in trainer_dir.glob("checkpoint-*") if checkpoint_problem(p) is None]
    if kept:
        need = sum(f.stat().st_size for f in kept[0].rglob("*") if f.is_file())
        how = f"about {need / 2**20:,.0f} MiB, as {kept[0].name}"
    else:  # weights, and AdamW's two moments beside them
        need = 3 * sum(p.numel() * p.element_size() for p in model.parameters())
        how = f"about {need / 2**20:,.0f} MiB (weights and optimizer state)"
    intact = ", ".join(sorted(p.name for p in kept)) or "none yet"
    return (f"{trainer_dir}: no space left on the device while training or saving a checkpoint; one "
            f"checkpoint takes {how}; complete checkpoints: {intact}. Free the space and run the same "
            "command again: it resumes from the last complete checkpoint")


def latest_checkpoint(trainer_dir: Path) -> Path | None:
    """The latest checkpoint that is complete and readable. A save that did not complete is removed;
    a damaged checkpoint (an interrupted copy, a full disk) is named in the log and moved aside as
    `damaged-<name>` (a name the trainer's rotation does not touch), so that resuming, and every
    retry after, goes on from the one before it. Called by one process at a time."""
    staging = trainer_dir / STAGING
    if staging.exists():
        log.warning("%s holds a save that did not complete (%s): removed", staging,
                    ", ".join(p.name for p in staging.iterdir()) or "empty")
        shutil.rmtree(staging)
    ckpts = sorted((p for p in trainer_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for ckpt in ckpts:
        problem = checkpoint_problem(ckpt)
        if problem is None:
            return ckpt
        damaged = ckpt.with_name(f"damaged-{ckpt.name}")
        shutil.rmtree(damaged, ignore_errors=True)
        ckpt.rename(damaged)
        log.warning("%s is damaged (%s): moved to %s; resuming from the checkpoint before it, if any",
                    ckpt, problem, damaged.name)
    if ckpts:
        log.warning("no complete checkpoint in %s: training starts over", trainer_dir)
    return None


class KeepCheckpointWeights(TrainerCallback):
    """Keeps the policy's weights of every saved checkpoint as `<run>/step<N>/` for checkpoint sweeps.

    Hard links where the file system allows (TRL's rotation then frees nothing but the optimiser
    state); the optimiser, scheduler and RNG states stay in TRL's checkpoint alone."""

    TRAINER_ONLY = ("optimizer", "scheduler", "rng_state", "trainer_state", "training_args", "global_step",
                    "latest", "zero_to_fp32")

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        source = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        target = self.run_dir / f"step{state.global_step}"
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for f in source.iterdir():
            if f.is_file() and not f.name.startswith(self.TRAINER_ONLY):
                try:
                    (partial / f.name).hardlink_to(f)
                except OSError:
                    shutil.copy2(f, partial / f.name)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)  # a step folder is complete or absent


def saved_checkpoints(run_dir: Path) -> dict[str, str]:
    """`step<N>` -> folder, for every complete step folder of a run, in step order."""
    steps = [p for p in run_dir.glob("step*") if p.is_dir() and p.name[4:].isdigit()]
    return {p.name: str(p) for p in sorted(steps, key=lambda p: int(p.name[4:]))}


class CrashSafeCheckpoints:
    """Mixed into the trainer class (before it): staged saves and weights resumed through their
    key mapping (the module docstring says why). Multi-process runs assume one file system shared
    by the ranks, as the trainer's own saving does."""

    def _save_checkpoint(self, model, trial):
        run_dir = Path(self._get_output_dir(trial=trial))
        name = f"checkpoint-{self.state.global_step}"
        staged, final = run_dir / STAGING / name, run_dir / name
        if self.args.should_save:
            shutil.rmtree(staged, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        output_dir = self.args.output_dir
        self.args.output_dir = str(staged.parent)  # every file of the save lands in the staging folder
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.output_dir = output_dir
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            shutil.rmtree(final, ignore_errors=True)
            staged.rename(final)  # complete or absent
            shutil.rmtree(staged.parent)
            from transformers.trainer_utils import rotate_checkpoints

            rotate_checkpoints(str(run_dir), self.args.save_total_limit, use_mtime=False)
        self.accelerator.wait_for_everyone()

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        model = self.model if model is None else model
        if self.is_deepspeed_enabled or self.is_fsdp_enabled or not hasattr(model, "config"):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        load_weights(model, Path(resume_from_checkpoint))


def load_weights(model, folder: Path) -> None:
    """Loads a saved checkpoint's weights into `model` in place, renaming keys as `from_pretrained`
    does. The copy is read onto the model's device and dropped after (one model's size, once per
    resume)."""
    param = next(model.parameters())
    placement = {"device_map": {"": param.device}} if param.device.type == "cuda" else {}
    saved = type(model).from_pretrained(str(folder), dtype=param.dtype, **placement)
    missing, unexpected = model.load_state_dict(saved.state_dict(), strict=False)
    del saved
    if missing or unexpected:
        raise RuntimeError(f"{folder}: its weights do not match the model ({len(missing)} missing, e.g. "
                           f"{missing[:3]}; {len(unexpected)} unexpected, e.g. {unexpected[:3]})")
    log.info("weights resumed from %s", folder)
