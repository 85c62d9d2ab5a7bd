"""How the GPU stages start, in one place for both engines: `rise launch train|predict ...`.

Snakemake rules and DVC stages both call `rise launch`, which
  1. reserves the GPUs the job needs (`rise/resources.py`: a training job its variant's GPUs, a
     prediction job one on CUDA presets) and pins the job to them with CUDA_VISIBLE_DEVICES;
  2. runs the stage's CLI entry, under `accelerate launch` (the preset's `launch.accelerate_config`,
     one process per GPU) when it trains on several GPUs.
Devices are reserved with a lock file per device (`rise-gpu-locks-<uid>` under the temp folder,
held while the stage runs), so jobs that Snakemake or two engines start side by side never share a
GPU; a job waits while too few are free. Under SLURM the allocation already pins the job: nothing
is reserved there.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rise.config import Settings
from rise.errors import RiseError
from rise.resources import job_resources

log = logging.getLogger(__name__)
STAGES = ("train", "predict")


def local_gpus() -> list[str]:
    """The GPUs this machine lets a job use: CUDA_VISIBLE_DEVICES when set, else `nvidia-smi -L`."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
    return [str(i) for i, line in enumerate(line for line in out.splitlines() if line.startswith("GPU "))]


def gpus_needed(settings: Settings, stage: str, variant: str) -> int:
    return job_resources(settings, stage, variant).gpus


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stage_command(settings: Settings, stage: str, stage_args: list[str], cli_args: list[str],
                  python: str = sys.executable) -> list[str]:
    """The command that runs one stage: `python -m rise.cli <cli_args> <stage> <stage_args>`, under
    `accelerate launch` with one process per GPU when it trains on several GPUs."""
    cli = ["-m", "rise.cli", *cli_args, stage, *stage_args]
    gpus = gpus_needed(settings, stage, _variant(stage_args))
    if stage == "train" and gpus > 1:
        return [python, "-m", "accelerate.commands.launch", "--config_file", settings.launch["accelerate_config"],
                "--num_processes", str(gpus), "--main_process_port", str(_free_port()), *cli]
    return [python, *cli]


def _variant(stage_args: list[str]) -> str:
    return stage_args[stage_args.index("--variant") + 1]


def lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"rise-gpu-locks-{os.getuid()}"


@contextlib.contextmanager
def reserved_gpus(n: int, devices: list[str], locks: Path | None = None, poll_s: float = 5.0,
                  wait: bool = True):
    """Holds `n` of `devices` (an exclusive lock file each) for the duration of the block."""
    if n > len(devices):
        raise RiseError(f"the job needs {n} GPUs but this machine shows {len(devices)} "
                        f"({', '.join(devices) or 'none'}; from CUDA_VISIBLE_DEVICES or nvidia-smi)")
    locks = locks or lock_dir()
    locks.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        held = []
        for device in devices:
            fh = open(locks / f"gpu{device}.lock", "w")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            held.append((device, fh))
            if len(held) == n:
                break
        if len(held) == n:
            break
        for _, fh in held:
            fh.close()
        if not wait:
            raise RiseError(f"fewer than {n} of the GPUs {', '.join(devices)} are free")
        if not waited:
            log.info("waiting for %d free GPUs among %s", n, ", ".join(devices))
            waited = True
        time.sleep(poll_s)
    try:
        yield [device for device, _ in held]
    finally:
        for _, fh in held:
            fh.close()


def launch(settings: Settings, stage: str, stage_args: list[str], cli_args: list[str]) -> int:
    """Runs a GPU stage on reserved, pinned devices; returns its exit status."""
    n = gpus_needed(settings, stage, _variant(stage_args))
    command = stage_command(settings, stage, stage_args, cli_args)
    env = dict(os.environ)
    with contextlib.ExitStack() as stack:
        if n and "SLURM_JOB_ID" not in os.environ:  # SLURM pins the job to its allocation itself
            devices = stack.enter_context(reserved_gpus(n, local_gpus()))
            env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
            log.info("%s on GPU %s", stage, env["CUDA_VISIBLE_DEVICES"])
        return _run(command, env)


def _run(command: list[str], env: dict) -> int:
    """Runs the stage; a SIGTERM to the launcher (a cancelled job) reaches the stage too."""
    proc = subprocess.Popen(command, env=env)
    previous = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        return proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
