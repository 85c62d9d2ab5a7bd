"""DVC as the same pipeline as Snakemake: dvc.yaml generated from params.yaml and up to date, the
same jobs planned by both engines, narrow params, metrics, plots and a local remote."""
import re
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import QUICK, copy_project, sh
from rise.dvc_pipeline import pipeline, render

ROOT = Path(__file__).resolve().parent.parent


def dvc_project(tmp_path, overrides=None) -> Path:
    """A project as a fresh clone has it: git, DVC and the repository's .dvc/config."""
    root = copy_project(tmp_path, overrides)
    sh("git init -q && dvc init -q", root)
    shutil.copy(ROOT / ".dvc" / "config", root / ".dvc" / "config")
    return root


def test_dvc_yaml_is_generated_from_params_and_up_to_date():
    assert (ROOT / "dvc.yaml").read_text() == render(ROOT / "params.yaml"), "run `rise dvc-yaml`"
    proc = sh("rise dvc-yaml --check", ROOT)
    assert "up to date" in proc.stdout


def test_a_new_variant_in_a_table_makes_dvc_yaml_stale(tmp_path):
    root = copy_project(tmp_path, {"variants": {"full_3b_lr2": {"policy": "3b"}}})
    sh("rise dvc-yaml --check", root)  # in no table: planned by neither engine
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["tables"]["table6"]["rows"].append({"label": "RISE (lr 2e-6)", "variant": "full_3b_lr2"})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = sh("rise dvc-yaml --check", root, check=False)
    assert proc.returncode == 2 and "dvc.yaml is out of date" in proc.stderr
    sh("rise dvc-yaml", root)
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    assert "full_3b_lr2" in stages["train"]["foreach"] and "full_3b_lr2-reasonseg_test" in stages["evaluate"]["foreach"]
    sh("rise dvc-yaml --check", root)


def test_each_stage_depends_on_its_own_settings_only():
    stages = pipeline(ROOT / "params.yaml")["stages"]
    train = stages["train"]["do"]["params"]
    assert "variants.${key}" in train and "variants" not in train
    assert "presets.${preset}.models.policies.${item.policy}" in train
    assert "presets.${preset}.overrides.train" in train and "presets.${preset}" not in train
    assert "predict" not in train and "evaluate" not in train
    predict = stages["predict"]["do"]["params"]
    assert "variants.${item.variant}" in predict and "train" not in predict
    assert stages["evaluate"]["do"]["params"] == ["preset", "seed", "evaluate", "presets.${preset}.overrides.evaluate"]
    assert stages["prepare_data"]["do"]["params"] == ["preset", "seed", "presets.${preset}.datasets.${item}"]
    assert stages["train"]["do"]["cmd"].endswith("launch train --variant ${key}")  # rise/launch.py, as Snakemake


def snakemake_jobs(root, preset: str) -> set[str]:
    """The jobs of `snakemake -n all_tables <figure>`, named as DVC names its stages."""
    out = sh(f"snakemake -n all_tables results/{preset}/figures/qualitative.png --config preset={preset}", root).stdout
    jobs = set()
    for block in re.split(r"\n(?=rule \w+:)", out):
        m = re.match(r"rule (\w+):", block.strip())
        if not m or m.group(1) in ("all_tables", "table_alias"):
            continue
        rule = m.group(1)
        w = dict(re.findall(r"(\w+)=([\w.]+)", (re.search(r"wildcards: (.*)", block) or [None, ""])[1] or ""))
        if rule == "table":
            jobs.add(w["table"])
        elif rule in ("predict", "evaluate"):
            jobs.add(f"{rule}@{w['variant']}-{w['dataset']}")
        elif w:
            jobs.add(f"{rule}@{next(iter(w.values()))}")
        else:
            jobs.add(rule)
    return jobs


def dvc_jobs(root, preset: str) -> set[str]:
    params = root / "params.yaml"
    params.write_text(re.sub(r"^preset: \w+", f"preset: {preset}", params.read_text(), flags=re.M))
    # --force: on a clean checkout every stage runs; without it DVC's dry run stops at the first
    # stage whose input does not exist yet (DVC issue #9818)
    out = sh("dvc repro --dry --force", root).stdout
    return set(re.findall(r"Running stage '([^']+)'", out))


@pytest.mark.parametrize("preset", ["demo", "paper"])
def test_both_engines_plan_the_same_jobs(tmp_path, preset):
    root = dvc_project(tmp_path)
    planned = snakemake_jobs(root, preset)
    # 37 (variant, dataset) pairs for the six tables, 18 more for tables 2 and 3 with the training prompt
    assert len([j for j in planned if j.startswith("evaluate@")]) == 55
    assert dvc_jobs(root, preset) == planned


@pytest.mark.slow
def test_dvc_runs_a_variant_with_metrics_plots_and_a_local_remote(tmp_path):
    root = dvc_project(tmp_path / "clone", QUICK)
    target = "evaluate@full_3b-reasonseg_test"
    sh(f"dvc repro {target}", root)
    metrics = sh("dvc metrics show", root).stdout
    assert "runs/demo/metrics/full_3b/reasonseg_test.json" in metrics and "gIoU" in metrics and "cIoU" in metrics
    plots = sh("dvc plots show --json", root, check=False).stdout
    for plot in ("reward semantic", "reward think_format", "reward seg_format", "KL to the reference policy",
                 "completion length (tokens)"):
        assert f'"{plot}"' in plots
    # only this variant's settings reach its stages
    params = root / "params.yaml"
    original = params.read_text()
    params.write_text(original.replace("no_cot_3b: {cot: false}", "no_cot_3b: {cot: false, points: false}"))
    assert "up to date" in sh(f"dvc status --with-deps {target}", root).stdout
    params.write_text(original.replace("full_3b: {}", "full_3b: {points: false}"))
    changed = sh(f"dvc status --with-deps {target}", root).stdout
    assert "train@full_3b" in changed and re.search(r"modified:\s+variants.full_3b", changed)
    params.write_text(original)
    # the repository's remote (a folder beside the checkout): push, lose everything, pull, nothing reruns
    sh("dvc push", root)
    assert any((tmp_path / "rise-dvc-storage").rglob("*"))
    shutil.rmtree(root / ".dvc" / "cache")
    shutil.rmtree(root / "runs")
    sh(f"dvc pull --with-deps {target}", root)
    assert (root / "runs/demo/checkpoints/full_3b/policy.json").exists()
    again = sh(f"dvc repro {target}", root).stdout
    assert "Running stage" not in again, again
