import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a missing model must fail at once, not retry a hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
# rise/ too: every rule's and stage's code fingerprint is read from the checkout's library
PROJECT_FILES = ["params.yaml", "Snakefile", "dvc.yaml", "pipelines", "workflow", "rise"]


# Stage tests drive the policy with a stand-in where they need parseable answers, so the demo
# policy's format warm-up can be short there; the end-to-end tests keep the demo as it ships.
QUICK = {"presets": {"demo": {"warm_up_steps": 20}}}


def copy_project(dest: Path, overrides: dict | None = None) -> Path:
    """A fresh project folder: settings, workflow files and a copy of the library (which the
    stages run from the folder, `python -m rise.cli`, and fingerprint)."""
    from rise.config import deep_merge

    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dest / name)
    if overrides:
        params = yaml.safe_load((dest / "params.yaml").read_text())
        (dest / "params.yaml").write_text(yaml.safe_dump(deep_merge(params, overrides), sort_keys=False))
    return dest


def copy_dvc_settings(root: Path) -> None:
    """The repository's DVC settings into a project that ran `dvc init`: .dvc/config (its remote,
    its plots page), the plot templates and the offline plots page `make setup` writes."""
    shutil.copy(ROOT / ".dvc" / "config", root / ".dvc" / "config")
    shutil.copytree(ROOT / ".dvc" / "plots", root / ".dvc" / "plots", dirs_exist_ok=True)
    page = ROOT / ".dvc" / "offline-plots.html"
    if not page.exists():  # written by scripts/setup_env.sh; a suite run without it writes it here
        subprocess.run([sys.executable, str(ROOT / "scripts" / "offline_plots.py")], check=True, capture_output=True)
    shutil.copy(page, root / ".dvc" / "offline-plots.html")


BIN = Path(sys.executable).parent


def sh(cmd, cwd, check=True, timeout=900):
    """A shell command with the venv's programs first on PATH; its output in the error when it fails."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=cwd, shell=True, capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def run_rise(*args, cwd, check=True):
    proc = subprocess.run([sys.executable, "-m", "rise.cli", *args], cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"rise {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory):
    """A project with the demo models built, datasets prepared and training pairs sampled."""
    root = copy_project(tmp_path_factory.mktemp("demo"), QUICK)
    for stage in ("build-models", "prepare-data", "sample-train"):
        run_rise(stage, cwd=root)
    return root


@pytest.fixture
def in_demo(demo_project, monkeypatch):
    """Run inside the demo project; returns its Settings."""
    from rise.config import load_settings

    monkeypatch.chdir(demo_project)
    return load_settings("params.yaml")


# ------------------------------------------------------------------------------------ the toy, tiny

# The toy policy at a size that pretrains in seconds (rise/toy/policy.py's `dims`).
TINY_DIMS = {"text_hidden": 32, "text_layers": 1, "text_heads": 2, "vision_depth": 1, "vision_width": 16}
# The toy preset's pretraining stages at that size: a few steps each, held-out reports of one scene.
TINY_PRETRAIN = {"seed": 0,
                 "clip": {"steps": 2, "batch_size": 8, "learning_rate": 1e-3, "report_scenes": 2},
                 "sam2": {"steps": 1, "batch_size": 1, "learning_rate": 3e-4, "report_images": 1},
                 "policy": {"vision_steps": 1, "steps": 2, "one_object_steps": 1, "short_prompt_steps": 1,
                            "batch_size": 2, "learning_rate": 1e-3, "report_images": 1, "dims": TINY_DIMS,
                            "attention_layer": 0}}


def tiny_toy_project(tmp_path: Path) -> tuple[Path, Path]:
    """A project whose toy preset pretrains its three models at the tiny size into tmp_path/models."""
    models = tmp_path / "models"
    overrides = {"presets": {"toy": {
        "pretrain": TINY_PRETRAIN,
        "models": {"policies": {"3b": str(models / "policy"), "7b": str(models / "policy")},
                   "clip": {"model": "RISE-tiny-CLIP", "pretrained": str(models / "clip.pt")},
                   "sam2": {"config": "configs/sam2.1/sam2.1_hiera_t.yaml", "checkpoint": str(models / "sam2.pt"),
                            "image_size": 128}}}}}
    root = copy_project(tmp_path / "project", overrides)
    assert yaml.safe_load((root / "params.yaml").read_text())["presets"]["toy"]["pretrain"]["clip"]["steps"] == 2
    return root, models
