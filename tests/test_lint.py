"""`snakemake --lint`: clean but for the lints explained where they arise."""
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import copy_project

ROOT = Path(__file__).resolve().parent.parent
# each remaining lint, and where the workflow says why it stays
EXPLAINED = {
    "Shell command directly uses variable RISE from outside of the rule": "workflow/rules/common.smk",
    "Shell command directly uses variable RISE_CLI from outside of the rule": "workflow/rules/common.smk",
    "Shell command directly uses variable OVERRIDES_ARG from outside of the rule": "workflow/rules/common.smk",
}


def test_lint_is_clean_but_for_explained_lints(tmp_path):
    root = copy_project(tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(["snakemake", "--lint"], cwd=root, capture_output=True, text=True, env=env, timeout=300)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out
    found = set(re.findall(r"^\s+\* (.+?):?$", out, re.M))
    assert found <= set(EXPLAINED), found - set(EXPLAINED)
    for lint, where in EXPLAINED.items():  # quoted in a comment of that file, with the reason
        comments = " ".join(line.strip().lstrip("#").strip() for line in (ROOT / where).read_text().splitlines()
                            if line.strip().startswith("#"))
        assert f'Lint "{lint}" is deliberate' in comments
