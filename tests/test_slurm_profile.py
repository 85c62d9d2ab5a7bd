"""The paper preset planned on the SLURM profile: the sbatch calls the executor plugin would make."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import copy_project
from rise.config import load_settings
from rise.resources import job_resources

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PROFILE = ROOT / "workflow" / "profiles" / "slurm" / "config.yaml"


def option(call: str, name: str) -> str | None:
    m = re.search(rf"(?:^|\s){re.escape(name)}[ =](\S+)", call)
    return m.group(1) if m else None


@pytest.fixture(scope="module")
def paper_jobs(tmp_path_factory):
    """Every job of `snakemake all_tables --profile workflow/profiles/slurm --config preset=paper`."""
    root = copy_project(tmp_path_factory.mktemp("slurm"))
    out = root / "jobs.json"
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "sbatch_calls.py"), str(out), "all_tables", "-n",
                           "--profile", "workflow/profiles/slurm", "--config", "preset=paper"],
                          cwd=root, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    # (the preset a job's paths name is a wildcard too: every job here is the paper preset's)
    return {(j["rule"], tuple(sorted(v for k, v in j["wildcards"].items() if k != "preset"))): j
            for j in json.loads(out.read_text())}


def test_eight_gpu_training_on_one_node_with_cpus_and_memory_per_rank(paper_jobs):
    settings = load_settings(ROOT / "params.yaml", "paper")
    r = settings.resources
    for variant, policy in (("full_3b", "3b"), ("full_7b", "7b")):
        call = paper_jobs[("train", ("0", variant))]["sbatch"]
        assert option(call, "--gpus") == "8" and option(call, "--nodes") == "1"
        assert option(call, "-p") == "gpu"
        assert option(call, "--cpus-per-task") == str(8 * r["cpus_per_gpu"])
        per_rank_gb = 2 * r["policy_bf16_gb"][policy] + 8  # one bf16 copy per rank twice over, plus 8 GB
        assert int(option(call, "--mem")) == round(8 * per_rank_gb * 1000)
        assert int(option(call, "-t")) == r["runtime_min"]["train"]
    assert option(paper_jobs[("train", ("0", "full_3b"))]["sbatch"], "--mem") == "184000"  # 8 x 23 GB


def test_prediction_one_gpu_and_its_memory(paper_jobs):
    call = paper_jobs[("predict", ("0", "final", "full_7b", "reasonseg_test"))]["sbatch"]
    assert option(call, "--gpus") == "1" and option(call, "--nodes") == "1" and option(call, "-p") == "gpu"
    assert option(call, "--mem") == str(round((1.5 * 16.6 + 8) * 1000)) and option(call, "--cpus-per-task") == "8"


def test_cpu_only_jobs_go_to_the_cpu_partition_without_gpus(paper_jobs):
    remote = [j for j in paper_jobs.values() if not j["local"]]
    cpu_jobs = [j for j in remote if j["rule"] not in ("train", "predict")]
    assert {j["rule"] for j in cpu_jobs} == {"build_models", "prepare_data", "evaluate"}
    for job in cpu_jobs:
        assert option(job["sbatch"], "-p") == "cpu" and "--gpus" not in job["sbatch"], job
    call = paper_jobs[("evaluate", ("0", "final", "full_3b", "reasonseg_test"))]["sbatch"]
    assert option(call, "--cpus-per-task") == "4" and option(call, "--mem") == "16000"


def test_cheap_steps_stay_on_the_submit_host(paper_jobs):
    local = {j["rule"] for j in paper_jobs.values() if j["local"]}
    assert local == {"sample_train", "base_policy", "table", "all_tables"}
    assert len([j for j in paper_jobs.values() if not j["local"]]) == 1 + 10 + 11 + 55 + 55


def test_retries_ask_for_more_wall_time(paper_jobs):
    profile = yaml.safe_load(PROFILE.read_text())
    assert profile["retries"] == 2 and profile["slurm-logdir"]
    call = paper_jobs[("train", ("0", "full_3b"))]
    assert int(option(call["sbatch_third_try"], "-t")) == 3 * int(option(call["sbatch"], "-t"))


def test_resources_come_from_the_settings():
    s = load_settings(ROOT / "params.yaml", "paper")
    s.resources["cpus_per_gpu"] = 4
    s.resources["policy_bf16_gb"]["3b"] = 10
    job = job_resources(s, "train", "full_3b")
    assert (job.gpus, job.cpus, job.mem_mb) == (8, 32, 8 * 28000)
    s.launch["gpus"] = 2
    assert job_resources(s, "train", "full_3b").cpus == 8
    assert job_resources(s, "train", "zeroshot_3b").gpus == 0
    demo = load_settings(ROOT / "params.yaml", "demo")
    assert job_resources(demo, "train", "full_3b").gpus == 0 and job_resources(demo, "predict", "full_3b").gpus == 0


def test_model_check_job_asks_for_no_gpu(tmp_path):
    # build_models runs on the CPU partition: it must not stop because the node has no GPU
    from conftest import run_rise

    root = copy_project(tmp_path)
    proc = run_rise("--preset", "paper", "build-models", cwd=root, check=False)
    assert proc.returncode == 2 and "presets.paper.datasets" in proc.stderr
    assert "CUDA" not in proc.stderr
