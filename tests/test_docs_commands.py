"""Every command shown in the README (and in the Snakefile's, profiles' and dvc.yaml's headers) runs
as written: Snakemake and DVC commands that run stages as dry runs, the others for real (`rise`
commands exit 2 where the paper's models and data are missing, with a message and no traceback)."""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import copy_dvc_settings, copy_project

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PROGRAMS = ("snakemake", "rise", "dvc")


def documented_commands() -> list[str]:
    """Code spans of the README that start with a program, command lines in the code blocks of docs/,
    and the commands in the usage comments at
    the top of the Snakefile, each dvc.yaml and the profiles. `rise launch` alone names the entry: the
    rules and stages call it with their arguments."""
    found = []
    for line in (ROOT / "README.md").read_text().splitlines():
        found += re.findall(r"`((?:%s) [^`]+)`" % "|".join(PROGRAMS), line)
    for doc in sorted((ROOT / "docs").glob("*.md")):  # command lines of the guides' code blocks
        fenced = False
        for line in doc.read_text().splitlines():
            if line.startswith("```"):
                fenced = not fenced
            elif fenced and re.match(r"(?:%s) " % "|".join(PROGRAMS), line):
                found.append(line.split("  #")[0].strip())
    headers = [ROOT / "Snakefile", ROOT / "dvc.yaml", *sorted((ROOT / "pipelines").glob("*/dvc.yaml")),
               *sorted((ROOT / "workflow" / "profiles").glob("*/config.yaml"))]
    for path in headers:
        for line in path.read_text().splitlines():
            m = re.match(r"#\s+(?:[\w ]+:\s+)?((?:%s) .*?)(?:\s+#.*)?$" % "|".join(PROGRAMS), line)
            if m:
                found.append(m.group(1).strip())
    return [c for c in dict.fromkeys(found) if c not in ("rise launch", *NEED_RESULTS)]


# need results first, so they run after a real run elsewhere: push and pull in
# test_dvc_pipeline.py::test_dvc_runs_a_variant_with_metrics_plots_and_a_local_remote, the report in
# test_workflow.py::test_report_holds_tables_curves_and_captions, `rise show` in test_report.py
NEED_RESULTS = ("dvc push", "dvc pull", "snakemake results/table4.csv all_sweeps figure_qualitative --report report.zip", "rise show --name table4")


COMMANDS = documented_commands()


def test_the_documented_commands_were_found():
    assert any("--profile workflow/profiles/slurm" in c for c in COMMANDS)
    assert any(c.startswith("rise ") for c in COMMANDS)
    assert len(COMMANDS) >= 8


COMMITTED_RESULTS = ["results/toy", "runs/toy/metrics", "runs/toy/scores"]  # the toy preset's, kept in git


def with_committed_results(root: Path) -> Path:
    """A project copy with the results a clone has (`rise --preset toy show`, `dvc metrics ...`)."""
    for name in COMMITTED_RESULTS:
        if (ROOT / name).exists():
            shutil.copytree(ROOT / name, root / name, dirs_exist_ok=True)
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return with_committed_results(copy_project(tmp_path_factory.mktemp("docs")))


def dvc_clone(tmp_path) -> Path:
    """A fresh clone for DVC: git (one commit, as `dvc exp run` needs), DVC and the repository's .dvc/config."""
    root = with_committed_results(copy_project(tmp_path))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    subprocess.run("git init -q && dvc init -q && git add -A && git -c user.name=t -c user.email=t@t commit -qm c",
                   shell=True, cwd=root, check=True, env=env, capture_output=True)
    copy_dvc_settings(root)
    return root


@pytest.mark.parametrize("command", COMMANDS)
def test_documented_command_runs(command, project, tmp_path):
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    words = shlex.split(command)
    cwd = project
    if words[0] == "snakemake":
        words.insert(1, "-n")  # a dry run: the plan, on any machine
    elif words[0] == "dvc":
        cwd = dvc_clone(tmp_path)
        runs_stages = words[1] == "repro" or words[1:3] == ["exp", "run"]
        if runs_stages and "--dry" not in words:
            words[3 if words[1] == "exp" else 2:0] = ["--dry", "--force"]  # see README: DVC issue #9818
    proc = subprocess.run(words, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and "Invalid config definition" not in out, out[-3000:]
    if words[0] == "snakemake":
        assert proc.returncode == 0, out[-3000:]
        assert "Job stats:" in out or "Nothing to be done" in out
    elif words[0] == "dvc":
        assert proc.returncode == 0, out[-3000:]
        if "--dry" in words:
            assert "Running stage" in out
    elif " claim " in command:  # a verdict, not a failure: exit 1 says the claim is not met
        assert proc.returncode in (0, 1) and "Format-only" in out, out[-3000:]
    elif "--preset paper" in command and " cost " not in command:  # cost needs no models or data
        # the paper preset is not ready on this machine: a list of what is missing, exit 2
        assert proc.returncode == 2 and "presets.paper" in out, out[-3000:]
    else:
        assert proc.returncode == 0, out[-3000:]
