"""DVC as the same pipeline as Snakemake: one dvc.yaml per preset generated from params.yaml and up
to date, the same jobs planned by both engines, narrow params, metrics, plots and a local remote."""
import re
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import QUICK, copy_dvc_settings, copy_project, sh
from rise.config import load_settings
from rise.dvc_pipeline import copies_file, pipeline, pipeline_file, render

ROOT = Path(__file__).resolve().parent.parent


def dvc_project(tmp_path, overrides=None) -> Path:
    """A project as a fresh clone has it: git, DVC and the repository's .dvc/config."""
    root = copy_project(tmp_path, overrides)
    sh("git init -q && dvc init -q", root)
    copy_dvc_settings(root)
    return root


def test_dvc_yaml_is_generated_from_params_and_up_to_date():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for preset in raw["presets"]:
        assert (ROOT / pipeline_file(raw, preset)).read_text() == render(ROOT / "params.yaml", preset), \
            "run `rise dvc-yaml`"
    assert pipeline_file(raw, raw["preset"]) == Path("dvc.yaml")
    proc = sh("rise dvc-yaml --check", ROOT)
    assert "up to date" in proc.stdout


def test_a_new_variant_in_a_table_makes_dvc_yaml_stale(tmp_path):
    root = copy_project(tmp_path, {"variants": {"full_3b_lr2": {"policy": "3b"}}})
    sh("rise dvc-yaml --check", root)  # in no table: planned by neither engine
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["tables"]["table6"]["rows"].append({"label": "RISE (lr 2e-6)", "variant": "full_3b_lr2"})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = sh("rise dvc-yaml --check", root, check=False)
    assert proc.returncode == 2 and "out of date" in proc.stderr and "pipelines/paper/dvc.yaml" in proc.stderr
    sh("rise dvc-yaml", root)
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    assert "full_3b_lr2-seed0" in stages["train"]["foreach"]
    assert "full_3b_lr2-seed0-final-reasonseg_test" in stages["evaluate"]["foreach"]
    sh("rise dvc-yaml --check", root)


def test_each_stage_depends_on_its_own_settings_only():
    stages = pipeline(ROOT / "params.yaml", "demo")["stages"]
    train = stages["train"]["do"]["params"]
    assert "${item.variant_key}" in train and "variants" not in train
    assert stages["train"]["foreach"]["full_3b-seed0"]["variant_key"] == "variants.full_3b"
    assert "presets.demo.models.policies.${item.policy}" in train
    assert "presets.demo.overrides.train" in train and "presets.demo" not in train
    # a run depends on its own seed (the foreach item), not on the list of seeds
    assert "train.learning_rate" in train and "train" not in train and "train.seeds" not in train
    toy = pipeline(ROOT / "params.yaml", "toy")["stages"]["train"]["do"]["params"]
    assert "presets.toy.overrides.train.max_steps" in toy and "presets.toy.overrides.train.seeds" not in toy
    assert "predict" not in train and "evaluate" not in train
    predict = stages["predict"]["do"]["params"]
    assert "${item.variant_key}" in predict and "train" not in predict
    # a preset's own variant depends on its own key (DVC refuses a params key params.yaml lacks)
    toy_runs = pipeline(ROOT / "params.yaml", "toy")["stages"]
    assert toy_runs["train"]["foreach"]["transfer_full_3b-seed0"]["variant_key"] == "presets.toy.variants.transfer_full_3b"
    assert {i["variant_key"] for k, i in toy_runs["predict"]["foreach"].items() if k.startswith("transfer_full_3b-")} == {
        "presets.toy.variants.transfer_full_3b"}
    # a table depends on where it is defined: shared, the preset's own rows, or the preset's alone
    assert toy_runs["table4"]["params"][:2] == ["tables.table4", "presets.toy.overrides.tables.table4"]
    assert toy_runs["transfer"]["params"][0] == "presets.toy.overrides.tables.transfer"
    assert "tables" not in toy_runs["transfer"]["params"]
    assert stages["evaluate"]["do"]["params"] == ["seed", "evaluate", "presets.demo.overrides.evaluate"]
    assert stages["prepare_data"]["do"]["params"] == ["seed", "presets.demo.datasets.${item}"]
    # rise/launch.py, as Snakemake
    assert stages["train"]["do"]["cmd"].endswith("launch train --variant ${item.variant} --seed ${item.seed}")
    paper = pipeline(ROOT / "params.yaml", "paper")["stages"]
    assert paper["build_models"]["wdir"] == "../.." and paper["train"]["do"]["cmd"].startswith("rise --preset paper")


def snakemake_jobs(root, preset: str, targets: str | None = None, qualified: bool = False) -> set[str]:
    """The jobs of `snakemake -n <targets>` (default: all_tables all_sweeps <figure>), named as DVC
    names its stages; a job of another preset (a pretraining draw), or with `qualified` every job
    but the draws table, as `pipelines/<preset>/dvc.yaml:<stage>`."""
    targets = targets or f"all_tables all_sweeps results/{preset}/figures/qualitative.png"
    out = sh(f"snakemake -n {targets} --config preset={preset}", root).stdout
    jobs = set()
    for block in re.split(r"\n(?=rule \w+:)", out):
        m = re.match(r"rule (\w+):", block.strip())
        if not m or m.group(1) in ("all_tables", "all_sweeps", "all_draws", "table_alias"):
            continue
        rule = m.group(1)
        w = dict(re.findall(r"(\w+)=([\w.-]+)", (re.search(r"wildcards: (.*)", block) or [None, ""])[1] or ""))
        job_preset = w.pop("preset", preset)
        draw = re.match(r"(pretrain_\w+?)_(\w+_(?:draw|judge)\d+)$", rule)
        if draw:
            rule, job_preset = draw.group(1), draw.group(2).replace("_", "-")
        where = "" if job_preset == preset and not qualified else f"pipelines/{job_preset}/dvc.yaml:"
        if rule in ("draws_table", "judges_table"):
            jobs.add(f"{rule.split('_')[0]}_{w['table']}")
        elif rule == "table":
            jobs.add(where + w["table"])
        elif rule == "sweep":
            jobs.add(f"sweep_{w['variant']}")
        elif rule in ("predict", "evaluate"):
            jobs.add(f"{where}{rule}@{w['variant']}-seed{w['seed']}-{w['checkpoint']}-{w['dataset']}")
        elif rule in ("train", "base_policy"):
            jobs.add(f"{where}{rule}@{w['variant']}-seed{w['seed']}")
        elif w:
            jobs.add(f"{where}{rule}@{next(iter(w.values()))}")
        else:
            jobs.add(where + rule)
    return jobs


def dvc_jobs(root, preset: str, target: Path | None = None) -> set[str]:
    target = target or pipeline_file(yaml.safe_load((root / "params.yaml").read_text()), preset)
    # --force: on a clean checkout every stage runs; without it DVC's dry run stops at the first
    # stage whose input does not exist yet (DVC issue #9818)
    out = sh(f"dvc repro --dry --force {target}", root).stdout
    names = {name if not name.startswith(f"{target}:") else name.split(":")[-1]
             for name in re.findall(r"Running stage '([^']+)'", out)}
    # code_fingerprints is DVC's form of the `code` param of Snakemake's rules, not a job of its own
    return {n for n in names if not n.endswith("code_fingerprints")}


@pytest.mark.parametrize("preset", ["demo", "paper"])
def test_both_engines_plan_the_same_jobs(tmp_path, preset):
    root = dvc_project(tmp_path)
    planned = snakemake_jobs(root, preset)
    # 37 (variant, dataset) pairs for the six tables, 18 more for tables 2 and 3 with the training prompt,
    # and the sweeps of format_only_3b (1 dataset) and full_3b (8) at every checkpoint but the final one
    steps = {"demo": 1, "paper": 2}[preset]
    assert len([j for j in planned if j.startswith("evaluate@")]) == 55 + 9 * steps
    assert {"sweep_full_3b", "sweep_format_only_3b"} <= planned
    assert dvc_jobs(root, preset) == planned


def test_the_toy_world_pretrains_in_both_engines_and_runs_three_seeds(tmp_path):
    root = dvc_project(tmp_path)
    planned = snakemake_jobs(root, "toy")
    assert {"pretrain_clip", "pretrain_sam2", "pretrain_policy", "build_models"} <= planned
    assert {f"train@format_only_3b-seed{k}" for k in range(3)} <= planned
    assert {"table1", "table4"} == {j for j in planned if j.startswith("table")}  # presets.toy.tables
    assert dvc_jobs(root, "toy") == planned


def test_the_pretraining_draws_are_planned_alike_by_both_engines(tmp_path):
    """The draws target: each declared draw pretrains its own three models and builds Table 4; the
    draw of the preset's own seed is the preset. DVC's draws pipeline reaches every draw's pipeline;
    the toy's own pipeline does not start them (the toy test above plans it without any draw)."""
    root = dvc_project(tmp_path)
    planned = snakemake_jobs(root, "toy", "all_draws", qualified=True)
    draws = {f"toy-draw{k}" for k in (0, 2, 3, 4)}  # seed 1 is presets.toy.pretrain.seed: the preset itself
    for draw in ("toy", *draws):
        where = f"pipelines/{draw}/dvc.yaml:"
        assert {f"{where}pretrain_{m}" for m in ("clip", "sam2", "policy")} | {f"{where}table4"} <= planned
        assert {f"{where}train@full_3b-seed{k}" for k in range(3)} <= planned
        assert f"{where}table1" not in planned  # the draws table reads Table 4 alone
    assert "draws_table4" in planned
    assert not any(j.startswith("pipelines/toy-draw1/") for j in planned)
    assert dvc_jobs(root, "toy", copies_file("toy", "draws")) == planned


def test_the_weaker_judges_are_planned_alike_by_both_engines(tmp_path):
    """Each judge pretrains its CLIP alone (the preset's policy and SAM2 are shared, built once) and
    trains the judged rows again; the references are the preset's own runs."""
    root = dvc_project(tmp_path)
    planned = snakemake_jobs(root, "toy", "results/toy/judges/table4.csv", qualified=True)
    toy = load_settings(root / "params.yaml", "toy")
    for judge in toy.judges.values():
        where = f"pipelines/{judge}/dvc.yaml:"
        assert {f"{where}pretrain_clip", f"{where}table4", f"{where}train@full_3b-seed2"} <= planned
        assert f"{where}pretrain_policy" not in planned and f"{where}train@format_only_3b-seed0" not in planned
    assert {"pipelines/toy/dvc.yaml:pretrain_policy", "pipelines/toy/dvc.yaml:train@format_only_3b-seed0"} <= planned
    assert "judges_table4" in planned
    assert dvc_jobs(root, "toy", copies_file("toy", "judges")) == planned


def test_seeds_and_a_best_checkpoint_table_in_both_engines(tmp_path):
    """Three seeds and `checkpoint: best on reasonseg_val`: each seed's every checkpoint is evaluated."""
    root = dvc_project(tmp_path, {"train": {"seeds": [0, 1, 2]},
                                  "tables": {"table4": {"checkpoint": "best on reasonseg_val"}}})
    sh("rise dvc-yaml", root)
    planned = snakemake_jobs(root, "demo")
    assert {f"train@full_3b-seed{k}" for k in range(3)} <= planned
    assert "base_policy@zeroshot_3b-seed0" in planned and "base_policy@zeroshot_3b-seed1" not in planned
    for k in range(3):
        for ckpt in ("step1", "final"):
            assert f"evaluate@no_seg_format_3b-seed{k}-{ckpt}-reasonseg_val" in planned
    assert dvc_jobs(root, "demo") == planned


@pytest.mark.slow
def test_dvc_runs_a_variant_with_metrics_plots_and_a_local_remote(tmp_path):
    root = dvc_project(tmp_path / "clone", QUICK)
    target = "evaluate@full_3b-seed0-final-reasonseg_test"
    sh(f"dvc repro {target}", root)
    metrics = sh("dvc metrics show", root).stdout
    assert "runs/demo/metrics/full_3b/seed0/final/reasonseg_test.json" in metrics and "gIoU" in metrics and "cIoU" in metrics
    plots = sh("dvc plots show --json", root, check=False).stdout
    for plot in ("reward semantic", "reward think_format", "reward seg_format", "KL to the reference policy",
                 "completion length (tokens)"):
        assert f'"{plot}"' in plots  # (only the default preset's dvc.yaml declares plots)
    # code: a comment reruns only the fingerprints, a behaviour change the stage that runs it
    metrics_code = root / "rise" / "metrics.py"
    code = metrics_code.read_text()

    def ran_after(text):
        metrics_code.write_text(text)
        # a stage run before with the same inputs is restored from DVC's run cache
        return re.findall(r"(?:Running stage|Stage) '([^']+)'(?::| is cached)", sh(f"dvc repro {target}", root).stdout)

    assert ran_after(code + "# a comment\n") == ["code_fingerprints"]
    assert ran_after(code) == ["code_fingerprints"]
    assert ran_after(code.replace("100.0 * float", "50.0 * float")) == ["code_fingerprints", target]
    ran_after(code)
    assert "up to date" in sh(f"dvc status --with-deps {target}", root).stdout
    # only this variant's settings reach its stages
    params = root / "params.yaml"
    original = params.read_text()
    params.write_text(original.replace("no_cot_3b: {cot: false}", "no_cot_3b: {cot: false, points: false}"))
    assert "up to date" in sh(f"dvc status --with-deps {target}", root).stdout
    params.write_text(original.replace("full_3b: {}", "full_3b: {points: false}"))
    changed = sh(f"dvc status --with-deps {target}", root).stdout
    assert "train@full_3b-seed0" in changed and re.search(r"modified:\s+variants.full_3b", changed)
    params.write_text(original)
    # the repository's remote (a folder beside the checkout): push, lose everything, pull; only the
    # metrics file, kept out of the cache (rise/dvc_pipeline.py says why), is computed again
    sh("dvc push", root)
    assert any((tmp_path / "rise-dvc-storage").rglob("*"))
    shutil.rmtree(root / ".dvc" / "cache")
    shutil.rmtree(root / "runs")
    sh(f"dvc pull --with-deps {target}", root)
    assert (root / "runs/demo/checkpoints/full_3b/seed0/policy.json").exists()
    again = sh(f"dvc repro {target}", root).stdout
    assert re.findall(r"Running stage '([^']+)'", again) == [target], again
    assert (root / "runs/demo/metrics/full_3b/seed0/final/reasonseg_test.json").exists()
