"""An interrupted GRPO training resumes from its latest checkpoint and ends at the same step."""
import dataclasses
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from transformers import TrainerCallback

from rise.contracts import read_json
from rise.checkpoints import latest_checkpoint
from rise.train import train_variant


class KillAfterStep(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"killed after step {self.step}")


class RecordStart(TrainerCallback):
    """What the trainer holds when training begins (after any checkpoint is loaded), and the steps it runs."""

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        self.start_step = state.global_step
        self.optimizer_state = {i: {k: v.clone() for k, v in s.items() if torch.is_tensor(v)}
                                for i, s in optimizer.state_dict()["state"].items()}
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def test_resume_after_kill(in_demo):
    settings = dataclasses.replace(in_demo, train=dataclasses.replace(in_demo.train, max_steps=4, save_steps=2))
    layout = settings.layout
    variant = "full_7b"  # trained by no other test of the shared demo project
    with pytest.raises(KeyboardInterrupt):
        train_variant(settings, variant, callbacks=[KillAfterStep(3)])
    trainer_dir = layout.checkpoint_dir(variant) / "trainer"
    assert latest_checkpoint(trainer_dir).name == "checkpoint-2"
    assert not layout.policy_ref(variant).exists()  # no output until training completes

    saved = torch.load(trainer_dir / "checkpoint-2" / "optimizer.pt", weights_only=True)["state"]
    assert saved  # Adam's moments after two steps

    record = RecordStart()
    ref = read_json(train_variant(settings, variant, callbacks=[record]))
    assert ref["trained"] and ref["steps"] == 4
    # it continued from the checkpoint: step 2 and the optimizer's state loaded, steps 1-2 not redone
    assert record.start_step == 2 and record.steps == [3, 4]
    assert record.optimizer_state.keys() == saved.keys()
    for i, moments in saved.items():
        for name, value in moments.items():
            assert torch.equal(record.optimizer_state[i][name], value), (i, name)
    steps = list(pd.read_csv(layout.train_curves(variant))["step"])
    assert steps == [1, 2, 3, 4]  # steps 1-2 from the checkpoint, 3-4 after resuming, none twice
    assert latest_checkpoint(trainer_dir).name == "checkpoint-4"


def test_checkpoints_of_other_settings_are_not_resumed(in_demo):
    variant = "clsonly_7b"
    first = dataclasses.replace(in_demo, train=dataclasses.replace(in_demo.train, max_steps=2, save_steps=1))
    train_variant(first, variant)
    changed = dataclasses.replace(in_demo, train=dataclasses.replace(in_demo.train, max_steps=2, save_steps=1, learning_rate=3e-6))
    ref = read_json(train_variant(changed, variant))
    steps = list(pd.read_csv(changed.layout.train_curves(variant))["step"])
    assert ref["steps"] == 2 and steps == [1, 2]  # a fresh run, not a continuation of the first


def test_missing_training_image_names_itself_before_training(tmp_path):
    from rise.errors import DataError
    from rise.train import build_dataset

    rows = [{"sample_id": "a", "image": str(tmp_path / "gone.png"), "instruction": "x", "dataset": "d", "source_id": "s"}]
    with pytest.raises(DataError, match="gone.png does not exist"):
        build_dataset(rows, 112, cot=True, points=True)


def test_truncated_training_image_stops_training_before_the_first_step(tmp_path):
    """A JPEG cut short keeps a readable header; it must fail here, as prepare-data fails on it."""
    from rise.errors import DataError
    from rise.train import build_dataset

    pixels = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    good, cut = tmp_path / "good.jpg", tmp_path / "cut.jpg"
    Image.fromarray(pixels).save(good, quality=95)
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    rows = [{"sample_id": name, "image": str(path), "instruction": "the thing", "dataset": "refcocog_train",
             "source_id": name} for name, path in (("a", good), ("b", cut))]
    with pytest.raises(DataError, match=r"1 of 2 training images .*cut\.jpg cannot be read \(OSError: image file "
                                        r"is truncated.* skip_unreadable: true .*dataset refcocog_train"):
        build_dataset(rows, 112, cot=True, points=True)
    dataset = build_dataset(rows[:1], 112, cot=True, points=True)
    assert dataset[0]["image"].size == (112, 112)


def test_a_damaged_latest_checkpoint_resumes_from_the_one_before(in_demo, caplog):
    """A half-written model.safetensors in the latest checkpoint (an interrupted copy, a full disk):
    one warning naming it, then training goes on from the checkpoint before it, and a retry too."""
    from rise.config import Variant

    variant = "damaged_3b"  # a run of its own in the shared demo project
    variants = {**in_demo.variants, variant: Variant(**{**in_demo.variants["full_3b"].__dict__, "name": variant})}
    settings = dataclasses.replace(in_demo, variants=variants,
                                   train=dataclasses.replace(in_demo.train, max_steps=4, save_steps=1))
    with pytest.raises(KeyboardInterrupt):
        train_variant(settings, variant, callbacks=[KillAfterStep(3)])  # before step 3's save
    trainer_dir = settings.layout.checkpoint_dir(variant) / "trainer"
    weights = trainer_dir / "checkpoint-2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    record = RecordStart()
    with caplog.at_level("WARNING", logger="rise.checkpoints"):
        ref = read_json(train_variant(settings, variant, callbacks=[record]))
    assert ref["trained"] and ref["steps"] == 4
    assert record.start_step == 1 and record.steps == [2, 3, 4]
    damaged = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert len(damaged) == 1 and "checkpoint-2" in damaged[0] and "model.safetensors" in damaged[0]
    assert (trainer_dir / "damaged-checkpoint-2").is_dir()


@pytest.mark.parametrize("damage,reason", [
    (lambda c: (c / "optimizer.pt").write_bytes((c / "optimizer.pt").read_bytes()[:100]), "optimizer.pt"),
    (lambda c: (c / "trainer_state.json").write_text("{"), "trainer_state.json"),
    (lambda c: (c / "model.safetensors").unlink(), "no model weights"),
])
def test_checkpoint_problems_name_the_damaged_file(tmp_path, damage, reason):
    from safetensors.torch import save_file

    from rise.checkpoints import checkpoint_problem

    ckpt = tmp_path / "checkpoint-1"
    ckpt.mkdir()
    save_file({"w": torch.zeros(4)}, str(ckpt / "model.safetensors"))
    torch.save({"state": {0: torch.ones(3)}}, ckpt / "optimizer.pt")
    (ckpt / "trainer_state.json").write_text("{}")
    assert checkpoint_problem(ckpt) is None
    damage(ckpt)
    assert reason in checkpoint_problem(ckpt)


def test_a_full_disk_during_a_save_says_so_in_one_line_and_the_rerun_finishes(in_demo, monkeypatch):
    """A save that fails halfway (no space left while writing the RNG state of checkpoint-2): one
    error naming the folder and the space a checkpoint takes; checkpoint-1 is intact, and the same
    call again moves the half checkpoint aside and finishes from checkpoint-1."""
    import errno

    from transformers import Trainer

    from rise.config import Variant
    from rise.errors import MissingResourceError

    variant = "disk_full_3b"  # a run of its own in the shared demo project
    variants = {**in_demo.variants, variant: Variant(**{**in_demo.variants["full_3b"].__dict__, "name": variant})}
    settings = dataclasses.replace(in_demo, variants=variants,
                                   train=dataclasses.replace(in_demo.train, max_steps=3, save_steps=1))
    real_save = Trainer._save_rng_state

    def full_at_step_2(self, output_dir):
        if output_dir.endswith("checkpoint-2"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_rng_state", full_at_step_2)
    with pytest.raises(MissingResourceError) as error:
        train_variant(settings, variant)
    message = str(error.value)
    trainer_dir = settings.layout.checkpoint_dir(variant) / "trainer"
    assert sorted(p.name for p in trainer_dir.glob("checkpoint-*")) == ["checkpoint-1"]
    assert str(trainer_dir) in message and "MiB" in message and "checkpoint-1" in message
    assert "\n" not in message
    monkeypatch.setattr(Trainer, "_save_rng_state", real_save)
    record = RecordStart()
    ref = read_json(train_variant(settings, variant, callbacks=[record]))
    assert ref["steps"] == 3 and record.start_step == 1 and record.steps == [2, 3]
    assert not (trainer_dir / "damaged-checkpoint-2").exists()  # the half save was never a checkpoint


# A demo training in a process of its own, killed with SIGKILL where `where` says: mid-step (after
# step k's backward, before its optimizer step) or mid-save (checkpoint-k's weights and optimizer
# written, its RNG state not yet), or not at all. Four steps, a checkpoint after each.
TRAIN_AND_DIE = """
import dataclasses, logging, os, signal, sys
from transformers import Trainer, TrainerCallback
from rise.config import Variant, load_settings
from rise.train import train_variant

logging.basicConfig(level=logging.INFO)
name, where, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
demo = load_settings("params.yaml")
variant = Variant(**{**demo.variants["full_3b"].__dict__, "name": name})
settings = dataclasses.replace(demo, variants={**demo.variants, name: variant},
                               train=dataclasses.replace(demo.train, max_steps=4, save_steps=1))
die = lambda: os.kill(os.getpid(), signal.SIGKILL)

class KillMidStep(TrainerCallback):
    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if state.global_step + 1 == k:
            die()

save_rng_state = Trainer._save_rng_state

def save_and_die(self, output_dir):
    if where == "save" and output_dir.endswith(f"checkpoint-{k}"):
        die()
    save_rng_state(self, output_dir)

Trainer._save_rng_state = save_and_die
train_variant(settings, name, callbacks=[KillMidStep()] if where == "step" else [])
"""


def train_in_process(project, name, where="nowhere", k=0):
    return subprocess.run([sys.executable, "-c", TRAIN_AND_DIE, name, where, str(k)], cwd=project,
                          capture_output=True, text=True, timeout=600)


def final_weights(project, name):
    from safetensors.torch import load_file

    return load_file(str(project / "runs/demo/checkpoints" / name / "seed0/final/model.safetensors"))


@pytest.fixture(scope="module")
def uninterrupted(demo_project):
    proc = train_in_process(demo_project, "whole_3b")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return final_weights(demo_project, "whole_3b")


@pytest.mark.parametrize("where,k", [("step", 3), ("save", 2)])
def test_a_run_killed_mid_step_or_mid_save_resumes_to_the_weights_of_an_uninterrupted_run(
        demo_project, uninterrupted, where, k):
    """Fault injection: SIGKILL, then the same command again. The rerun must finish, and its final
    weights must equal an uninterrupted run's bitwise (same machine, same kernels): the weights,
    optimizer, scheduler and RNG states all come back, the data order goes on where it stopped."""
    name = f"killed_{where}_3b"
    killed = train_in_process(demo_project, name, where, k)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    trainer_dir = demo_project / "runs/demo/checkpoints" / name / "seed0/trainer"
    complete = sorted(p.name for p in trainer_dir.glob("checkpoint-*"))
    assert complete == [f"checkpoint-{i}" for i in range(1, k)]  # a half save is never a checkpoint
    if where == "save":
        assert (trainer_dir / "incomplete" / f"checkpoint-{k}" / "optimizer.pt").exists()
    rerun = train_in_process(demo_project, name)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming from {trainer_dir.relative_to(demo_project) / f'checkpoint-{k - 1}'}" in rerun.stderr
    assert not (trainer_dir / "incomplete").exists()
    resumed = final_weights(demo_project, name)
    assert resumed.keys() == uninterrupted.keys()
    changed = [key for key in resumed if not torch.equal(resumed[key], uninterrupted[key])]
    assert not changed, f"{len(changed)} of {len(resumed)} tensors differ from the uninterrupted run, e.g. {changed[:3]}"
