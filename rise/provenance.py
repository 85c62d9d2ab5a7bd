"""The software and hardware a result came from, recorded beside every training, prediction and
metrics file and summarised in every table row: results are known to move with package versions
and GPU type, so a table says which it had."""
from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess

from rise.config import PROJECT_ROOT

OUTPUTS = ("runs", "results", "dvc.lock", "pipelines/*/dvc.lock")  # what the workflow writes, not its code
PACKAGES = ("torch", "transformers", "trl", "accelerate", "open_clip_torch", "sam2", "deepspeed", "vllm")


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The project's commit, with '+dirty' when tracked files other than the workflow's outputs differ
    from it; 'unknown' outside git. Outputs (`runs/`, `results/`, the DVC lock files) do not count: a
    preset whose results are committed rewrites them as it reruns, and what made them is the code."""
    try:
        run = functools.partial(subprocess.run, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
        head = run(["git", "rev-parse", "--short=12", "HEAD"])
        if head.returncode != 0:
            return "unknown"
        dirty = run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *(f":(exclude){p}" for p in
                     OUTPUTS)]).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment() -> dict:
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return {
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "packages": {name: v for name in PACKAGES if (v := _version(name))},
        "gpu": torch.cuda.get_device_name(0) if gpus else None,
        "gpu_count": gpus,
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "host": platform.node(),
    }


def summary(env: dict | None) -> str:
    """One cell of a table: 'commit; N x GPU; torch a, transformers b, ...'."""
    if not env:
        return ""
    p = env.get("packages", {})
    hw = f"{env['gpu_count']} x {env['gpu']}" if env.get("gpu") else "cpu"
    soft = ", ".join(f"{k} {p[k]}" for k in ("torch", "transformers", "trl", "open_clip_torch", "sam2") if k in p)
    return f"{env.get('git_commit', 'unknown')}; {hw}; {soft}"
