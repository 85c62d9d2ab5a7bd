"""`rise launch`: the one command both engines start GPU stages with; GPU reservation and pinning;
the local `gpu` limit; threads per rule."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import rise.launch
from conftest import copy_project, run_rise
from rise.config import load_settings
from rise.errors import RiseError
from rise.launch import reserved_gpus, stage_command

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_several_gpus_train_under_accelerate_and_the_rest_directly():
    paper = load_settings(ROOT / "params.yaml", "paper")
    cmd = stage_command(paper, "train", ["--variant", "full_7b"], ["--preset", "paper"])
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
    assert cmd[cmd.index("--config_file") + 1] == paper.launch["accelerate_config"]
    assert cmd[cmd.index("--num_processes") + 1] == "8"
    assert cmd[-6:] == ["-m", "rise.cli", "--preset", "paper", "train", "--variant", "full_7b"][-6:]
    predict = stage_command(paper, "predict", ["--variant", "full_7b", "--eval-set", "reasonseg_test"], ["--preset", "paper"])
    assert predict[1:] == ["-m", "rise.cli", "--preset", "paper", "predict", "--variant", "full_7b",
                           "--eval-set", "reasonseg_test"]
    demo = load_settings(ROOT / "params.yaml", "demo")
    assert "accelerate.commands.launch" not in stage_command(demo, "train", ["--variant", "full_3b"], [])


def test_reservations_never_share_a_gpu(tmp_path):
    devices = ["0", "1", "2", "3"]
    with reserved_gpus(2, devices, tmp_path) as first, reserved_gpus(2, devices, tmp_path) as second:
        assert len(set(first) | set(second)) == 4
        with pytest.raises(RiseError, match="fewer than 1 of the GPUs"):
            with reserved_gpus(1, devices, tmp_path, wait=False):
                pass
    with reserved_gpus(4, devices, tmp_path, wait=False) as again:
        assert again == devices
    with pytest.raises(RiseError, match="needs 8 GPUs but this machine shows 4"):
        with reserved_gpus(8, devices, tmp_path):
            pass


def test_launch_pins_the_stage_to_its_reserved_gpu(tmp_path, monkeypatch):
    paper = load_settings(ROOT / "params.yaml", "paper")
    probe = tmp_path / "seen"
    monkeypatch.setattr(rise.launch, "stage_command", lambda *a, **k: [
        sys.executable, "-c", f"import os; open({str(probe)!r}, 'w').write(os.environ['CUDA_VISIBLE_DEVICES'])"])
    monkeypatch.setattr(rise.launch, "lock_dir", lambda: tmp_path / "locks")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with reserved_gpus(1, ["4", "5"], tmp_path / "locks"):  # another job holds GPU 4
        assert rise.launch.launch(paper, "predict", ["--variant", "full_3b", "--eval-set", "reasonseg_test"], []) == 0
    assert probe.read_text() == "5"
    monkeypatch.setenv("SLURM_JOB_ID", "1")  # SLURM has pinned the job already: left as it is
    assert rise.launch.launch(paper, "predict", ["--variant", "full_3b", "--eval-set", "reasonseg_test"], []) == 0
    assert probe.read_text() == "4,5"


def test_rise_launch_runs_the_stage(tmp_path):
    root = copy_project(tmp_path)
    run_rise("--log", "runs/demo/logs/train/zeroshot_3b.log", "launch", "train", "--variant", "zeroshot_3b", cwd=root)
    assert (root / "runs/demo/checkpoints/zeroshot_3b/seed0/policy.json").exists()
    assert "no training (zero-shot)" in (root / "runs/demo/logs/train/zeroshot_3b.log").read_text()
    bad = run_rise("launch", "train", "--variant", "nope", cwd=root, check=False)
    assert bad.returncode == 2 and "'nope' is not defined under variants" in bad.stderr


GPU_LIMIT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else None  # --jobs: a cluster run
    with SnakemakeApi(OutputSettings()) as api:
        wf = api.workflow(resource_settings=ResourceSettings(cores=2, nodes=jobs), config_settings=ConfigSettings(),
                          snakefile=Path("Snakefile"))
        wf.dag()
        limits = wf._workflow.global_resources
        print("GPU LIMIT", limits["gpu"].value if "gpu" in limits else None)
""")


@pytest.mark.parametrize("visible, args, expected", [("0,1,3", [], "3"), ("", [], "0"), ("0,1,3", ["40"], "None")])
def test_local_runs_limit_gpu_jobs_to_the_visible_gpus(tmp_path, visible, args, expected):
    root = copy_project(tmp_path)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "CUDA_VISIBLE_DEVICES": visible}
    proc = subprocess.run([sys.executable, "-c", GPU_LIMIT, *args], cwd=root, capture_output=True, text=True, env=env)
    assert f"GPU LIMIT {expected}" in proc.stdout, proc.stderr[-2000:]


def test_threads_per_rule_come_from_the_settings(tmp_path):
    root = copy_project(tmp_path)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    out = subprocess.run("snakemake -n all_tables --cores 64 --config preset=paper", shell=True, cwd=root,
                         capture_output=True, text=True, env=env).stdout
    threads = {}
    for block in out.split("\nrule ")[1:]:
        name = block.split(":")[0]
        threads.setdefault(name, set()).add(next((l.split(":")[1].strip() for l in block.splitlines()
                                                  if l.strip().startswith("threads:")), "1"))
    assert threads["train"] == {"64"} and threads["predict"] == {"8"} and threads["evaluate"] == {"4"}
