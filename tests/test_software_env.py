"""Software on the nodes: workflow/envs/rise.yaml (+ its post-deploy script), used by every rule
under `--software-deployment-method conda`, pinned as pyproject.toml pins the project."""
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

from conftest import copy_project

ROOT = Path(__file__).resolve().parent.parent
ENV = ROOT / "workflow" / "envs" / "rise.yaml"
POST_DEPLOY = ENV.with_name("rise.post-deploy.sh")
ENGINES = {"snakemake", "snakemake-executor-plugin-slurm", "dvc"}  # run on the submit host, not in rules
BUILT_AFTER = {"sam2"}  # compiled against the env's torch by the post-deploy script


def requirements(lines) -> dict[str, Requirement]:
    reqs = [Requirement(line) for line in lines]
    return {r.name.lower().replace("_", "-"): r for r in reqs}


def test_env_pins_what_pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = requirements(project["dependencies"])
    env = yaml.safe_load(ENV.read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps and project["requires-python"] == ">=3.11,<3.12"
    pip = requirements(next(d["pip"] for d in deps if isinstance(d, dict)))
    assert set(pip) == set(wanted) - ENGINES - BUILT_AFTER
    for name, req in pip.items():
        assert req.specifier == wanted[name].specifier, name


def test_post_deploy_builds_sam2_as_pinned_and_deepspeed():
    subprocess.run(["bash", "-n", str(POST_DEPLOY)], check=True)  # parses
    assert os.access(POST_DEPLOY, os.X_OK) and POST_DEPLOY.read_text().startswith("#!/usr/bin/env bash")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    installed = requirements(part.strip('"') for line in POST_DEPLOY.read_text().splitlines()
                             if "pip install" in line for part in line.split() if "==" in part)
    assert installed["sam2"].specifier == requirements(project["dependencies"])["sam2"].specifier
    assert str(installed["deepspeed"].specifier).startswith("==")  # the ZeRO configs of workflow/accelerate/
    # the same pin as the venv route's extra
    extra = requirements(project["optional-dependencies"]["deepspeed"])["deepspeed"]
    assert extra.specifier == installed["deepspeed"].specifier


WORKFLOW = textwrap.dedent("""
    import sys
    from pathlib import Path
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, DeploymentSettings, OutputSettings, ResourceSettings
    from snakemake_interface_executor_plugins.settings import DeploymentMethod
    methods = {DeploymentMethod.CONDA} if sys.argv[1:] == ["conda"] else set()
    with SnakemakeApi(OutputSettings()) as api:
        wf = api.workflow(resource_settings=ResourceSettings(cores=1), config_settings=ConfigSettings(),
                          deployment_settings=DeploymentSettings(deployment_method=methods),
                          snakefile=Path("Snakefile"))
        wf.dag()
        w = wf._workflow
        for rule in w.rules:
            if rule.shellcmd:
                print("ENV", rule.name, (Path(rule.basedir.get_path_or_uri(secret_free=True)) / str(rule.conda_env)).resolve())
        print("RISE", w.globals["RISE"])
""")


def test_every_rule_runs_in_the_env_and_conda_jobs_use_its_python(tmp_path):
    root = copy_project(tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    run = lambda *a: subprocess.run([sys.executable, "-c", WORKFLOW, *a], cwd=root, capture_output=True,
                                    text=True, env=env)
    out = run("conda")
    envs = [line.split() for line in out.stdout.splitlines() if line.startswith("ENV ")]
    assert len(envs) >= 10, out.stderr[-2000:]
    assert {e[2] for e in envs} == {str(root / "workflow" / "envs" / "rise.yaml")}
    assert "RISE python -m rise.cli --preset demo" in out.stdout
    assert f"RISE {sys.executable} -m rise.cli" in run().stdout  # the venv route on one machine


def test_the_rules_that_generate_with_vllm_run_in_the_vllm_env(tmp_path):
    root = copy_project(tmp_path, {"train": {"use_vllm": True}, "predict": {"backend": "vllm"}})
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    out = subprocess.run([sys.executable, "-c", WORKFLOW, "conda"], cwd=root, capture_output=True, text=True, env=env)
    envs = {e[1]: Path(e[2]).name for e in (line.split() for line in out.stdout.splitlines() if line.startswith("ENV "))}
    assert len(envs) >= 10, out.stderr[-2000:]
    assert {rule for rule, name in envs.items() if name == "rise-vllm.yaml"} == {"train", "predict"}
    assert set(envs.values()) == {"rise.yaml", "rise-vllm.yaml"}


def test_the_vllm_env_is_the_rise_env_but_for_the_vllm_stack():
    """Only vLLM and what it pins differ (the header of rise-vllm.yaml says which and why)."""
    pip = lambda path: requirements(next(d["pip"] for d in yaml.safe_load(path.read_text())["dependencies"]
                                         if isinstance(d, dict)))
    rise, vllm = pip(ENV), pip(ENV.with_name("rise-vllm.yaml"))
    differ = {name for name in rise.keys() | vllm.keys() if str(rise.get(name)) != str(vllm.get(name))}
    assert differ == {"vllm", "torch", "torchvision", "transformers", "trl"}
    assert vllm["trl"].extras == {"vllm"} and vllm["trl"].specifier == rise["trl"].specifier
    for name in differ - {"trl"}:
        assert str(vllm[name].specifier).startswith("=="), name
    post_deploy = ENV.with_name("rise-vllm.post-deploy.sh")
    subprocess.run(["bash", "-n", str(post_deploy)], check=True)
    assert os.access(post_deploy, os.X_OK)
    assert post_deploy.read_text().replace(", 'vllm', vllm.__version__", "").replace(", vllm;", ";").replace(
        "rise-vllm", "rise") == POST_DEPLOY.read_text()
