"""What each job asks a scheduler for: GPUs, CPUs, host memory and wall time, in one place.

The numbers are settings (`presets.<preset>.resources` in params.yaml); the rules (Snakefile) pass
them on as `threads` and resources, which the SLURM profile turns into sbatch options. GPU jobs load
the policy straight onto each rank's GPU, so the host holds about one bf16 copy of it per rank while
loading; host memory is `bf16_copies x policy_bf16_gb + extra_gb` per rank.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from rise.config import Settings

GPU_STAGES = ("train", "predict")


@dataclass(frozen=True)
class JobResources:
    gpus: int
    cpus: int  # Snakemake threads: cores locally, --cpus-per-task on SLURM
    mem_mb: int  # host memory of the whole job (one node)
    first_runtime_min: int

    def runtime_min(self, attempt: int = 1) -> int:
        """Wall time of the `attempt`-th try: each retry asks for as much again (training resumes from
        its latest checkpoint, prediction from its finished shards)."""
        return self.first_runtime_min * attempt


def _host_mb(settings: Settings, kind: str, variant: str) -> int:
    r = settings.resources
    gb = r["host_memory"][kind]["bf16_copies"] * r["policy_bf16_gb"][settings.variants[variant].policy]
    return _mb(gb + r["host_memory"][kind]["extra_gb"])


def _mb(gb: float) -> int:
    """Snakemake's mem_mb (1 GB = 1000 MB; SLURM reads it as MiB, a little more), never rounded down."""
    return math.ceil(round(gb * 1000, 3))


def job_resources(settings: Settings, stage: str, variant: str | None = None) -> JobResources:
    """Resources of one job of `stage` (a rule name); `variant` for train and predict."""
    r = settings.resources
    cpu_job = JobResources(gpus=0, cpus=r["cpu_job"]["cpus"], mem_mb=_mb(r["cpu_job"]["mem_gb"]),
                           first_runtime_min=r["runtime_min"]["cpu"])
    if stage == "train" and settings.variants[variant].train:
        gpus = settings.train_gpus(variant)
        ranks = max(gpus, 1)
        return JobResources(gpus=gpus, cpus=r["cpus_per_gpu"] * ranks if gpus else cpu_job.cpus,
                            mem_mb=ranks * _host_mb(settings, "train_rank", variant),
                            first_runtime_min=r["runtime_min"]["train"])
    if stage == "predict":
        gpus = 1 if settings.device == "cuda" else 0
        return JobResources(gpus=gpus, cpus=r["cpus_per_gpu"] if gpus else cpu_job.cpus,
                            mem_mb=_host_mb(settings, "predict", variant),
                            first_runtime_min=r["runtime_min"]["predict"])
    return cpu_job
