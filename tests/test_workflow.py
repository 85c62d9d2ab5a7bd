"""The demo DAG end to end through Snakemake and DVC, and the paper preset's start-up checks."""
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import copy_project, sh

pytestmark = pytest.mark.slow


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = copy_project(tmp_path_factory.mktemp("workflow"))
    proc = sh("snakemake results/table4.csv --cores 2", root)
    return root, proc


def test_dry_run_lists_every_stage(tmp_path):
    root = copy_project(tmp_path)
    counts = job_counts(sh("snakemake -n results/table4.csv", root).stdout)
    assert counts == {"build_models": 1, "prepare_data": 2, "sample_train": 1, "train": 5, "predict": 5,
                      "evaluate": 5, "table": 1, "table_alias": 1}


def test_demo_produces_table4_and_reruns_nothing(demo_run):
    root, _ = demo_run
    df = pd.read_csv(root / "results" / "table4.csv")
    assert list(df["label"]) == ["Format-only", "Semantic-only", "RISE (w/o Seg Format)",
                                 "RISE (w/o Think Format)", "RISE (Full)"]
    assert {"reasonseg_test gIoU", "reasonseg_test cIoU", "paper reasonseg_test gIoU"} <= set(df.columns)
    assert (df["preset"] == "demo").all()
    again = sh("snakemake results/table4.csv --cores 2", root)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_report_holds_tables_curves_sweeps_and_the_figure(demo_run, tmp_path):
    """The README's report command: the table shown as a page, every trained run's curves, the
    checkpoint sweeps and the qualitative figure, with captions that name only what is in the zip;
    and the report opens in a browser without network access, listing each of them."""
    import shutil
    import zipfile

    root, _ = demo_run
    targets = "results/table4.csv all_sweeps figure_qualitative"
    sh(f"snakemake {targets} --cores 2", root)
    sh(f"snakemake {targets} --report report.zip", root)
    with zipfile.ZipFile(root / "report.zip") as z:
        names = z.namelist()
        text = "".join(z.read(n).decode("utf-8", "ignore") for n in names if n.endswith((".html", ".js")))
        z.extractall(tmp_path / "unzipped")
    files = {Path(n).name for n in names if "/data/raw/" in n}  # report/data/raw/<hash>/<file>
    curves = {f"{v}-seed0.png" for v in ("format_only_3b", "semantic_only_3b", "no_seg_format_3b",
                                          "no_think_format_3b", "full_3b")}
    assert {"table4.html", "sweeps.png", "qualitative.png", "full_3b.png", "format_only_3b.png"} | curves <= files
    table = next(z for z in (tmp_path / "unzipped").rglob("table4.html"))
    assert "<table" in table.read_text() and "RISE (Full)" in table.read_text()
    assert "Reward ablation on ReasonSeg test" in text and "Training curves" in text  # table caption, category
    assert "GRPO training of variant" in text  # curve captions
    assert "table4.md" not in text  # captions name only what the zip holds (the CSV: "in the project")
    assert "settings={'" in text and 'settings={\\"' not in text  # parameters as mappings, not escaped JSON
    assert (root / "results/demo/table4.md").read_text().startswith("### table4: Reward ablation")
    chromium = shutil.which("chromium")
    if chromium:  # tests/test_browser.py opens the plots page the same way
        from test_browser import rendered_dom

        page = next((tmp_path / "unzipped").rglob("report.html"))
        dom = rendered_dom(page, tmp_path / "profile")
        for shown in ("Tables", "Training curves", "Checkpoint sweeps", "Figures"):
            assert shown in dom, shown


def planned_after_edit(root, old: str, new: str) -> dict[str, int]:
    """The jobs a dry run plans once `old` is replaced by `new` in params.yaml (restored after)."""
    params = root / "params.yaml"
    original = params.read_text()
    assert old in original
    try:
        params.write_text(original.replace(old, new))
        return job_counts(sh("snakemake -n results/table4.csv", root).stdout)
    finally:
        params.write_text(original)


def test_changing_a_training_setting_reruns_training_and_downstream_only(demo_run):
    root, _ = demo_run
    assert planned_after_edit(root, "learning_rate: 1.0e-6", "learning_rate: 2.0e-6") == \
        {"train": 5, "predict": 5, "evaluate": 5, "table": 1, "table_alias": 1}


def test_changing_the_protocol_reruns_evaluation_only(demo_run):
    root, _ = demo_run
    assert planned_after_edit(root, "protocol: segzero", "protocol: lisa") == \
        {"evaluate": 5, "table": 1, "table_alias": 1}


def planned_after_code_edit(root, module: str, old: str | None, new: str) -> dict[str, int]:
    """The jobs a dry run plans once the project's rise/<module> is edited (`old` None: `new` is
    appended), restored after."""
    path = root / "rise" / module
    original = path.read_text()
    assert old is None or old in original
    try:
        path.write_text(original + new if old is None else original.replace(old, new, 1))
        out = sh("snakemake -n results/table4.csv", root).stdout
        return job_counts(out) if "Job stats:" in out else {}
    finally:
        path.write_text(original)


NEW_FUNCTION = "\n\ndef added_helper():\n    return 1\n"
DOWNSTREAM_OF_TRAINING = {"train": 5, "predict": 5, "evaluate": 5, "table": 1, "table_alias": 1}


@pytest.mark.parametrize("module,old,new,planned", [
    ("metrics.py", "100.0", "50.0", {"evaluate": 5, "table": 1, "table_alias": 1}),
    ("answer.py", None, NEW_FUNCTION, DOWNSTREAM_OF_TRAINING),
    ("rewards.py", None, NEW_FUNCTION, DOWNSTREAM_OF_TRAINING),
    ("predict.py", None, NEW_FUNCTION, {"predict": 5, "evaluate": 5, "table": 1, "table_alias": 1}),
    ("train.py", "def ", "# a comment, and a docstring below\ndef ", {}),
    ("metrics.py", '"""', '"""Reworded. ', {}),
    ("memory.py", None, NEW_FUNCTION, {}),  # imported by `rise check` alone
], ids=["metrics", "answer", "rewards", "predict", "comment", "docstring", "unimported"])
def test_a_code_edit_reruns_the_stages_that_run_that_code(demo_run, module, old, new, planned):
    root, _ = demo_run
    assert planned_after_code_edit(root, module, old, new) == planned


def test_a_metric_fix_reruns_evaluation_and_tables_and_changes_them(demo_run):
    """The measured case: gIoU's scale edited on a built demo; the table follows, then goes back."""
    root, _ = demo_run
    metrics = root / "rise" / "metrics.py"
    original = metrics.read_text()
    before = pd.read_csv(root / "results" / "table4.csv")
    try:
        metrics.write_text(original.replace("100.0 * float(np.mean(ious))", "50.0 * float(np.mean(ious))"))
        out = sh("snakemake results/table4.csv --cores 2", root)
        assert job_counts(out.stdout + out.stderr) == {"evaluate": 5, "table": 1, "table_alias": 1}
        halved = pd.read_csv(root / "results" / "table4.csv")
        assert list(halved["reasonseg_test gIoU"]) == pytest.approx(list(before["reasonseg_test gIoU"] / 2), abs=0.01)
        assert list(halved["reasonseg_test cIoU"]) == list(before["reasonseg_test cIoU"])
    finally:
        metrics.write_text(original)
    sh("snakemake results/table4.csv --cores 2", root)
    assert list(pd.read_csv(root / "results" / "table4.csv")["reasonseg_test gIoU"]) == list(before["reasonseg_test gIoU"])


def test_config_overrides_reach_the_run(demo_run):
    root, _ = demo_run
    replanned = job_counts(sh("snakemake -n results/table4.csv --config seed=1", root).stdout)
    assert replanned["sample_train"] == 1 and replanned["train"] == 5 and replanned["table"] == 1
    replanned = job_counts(sh("snakemake -n results/table4.csv --config 'train={learning_rate: 2.0e-6}'", root).stdout)
    assert replanned == {"train": 5, "predict": 5, "evaluate": 5, "table": 1, "table_alias": 1}


def test_paper_preset_stops_at_once_naming_what_is_missing(tmp_path):
    root = copy_project(tmp_path)
    proc = sh("snakemake results/table4.csv --cores 1 --config preset=paper", root, check=False, timeout=120)
    err = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "presets.paper.models.policies.3b" in err and "Qwen/Qwen2.5-VL-3B-Instruct" in err
    assert "presets.paper.models.clip" in err
    assert "presets.paper.models.sam2.checkpoint" in err and "download sam2_hiera_large.pt" in err
    assert "no CUDA GPU" in err
    assert "presets.paper.datasets.reasonseg_test.root" in err and "presets.paper.datasets.refcocog_train" in err
    # only what Table 4's jobs read: its variants are 3B, trained on RefCOCOg and tested on ReasonSeg
    for other in ("policies.7b", "imagenet_train", "refcoco_testA", "reasonseg_val"):
        assert f"presets.paper.models.{other}" not in err and f"presets.paper.datasets.{other}" not in err
    assert len([line for line in err.splitlines() if line.startswith("  - ")]) == 6
    assert "Traceback" not in err
    assert not (root / "runs" / "paper").exists()


def test_an_unknown_table_target_lists_the_tables_there_are(tmp_path):
    root = copy_project(tmp_path)
    proc = sh("snakemake results/table9.csv -n", root, check=False, timeout=120)
    err = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "results/table9.csv: not a table of preset 'demo'; its tables: results/table1.csv" in err
    assert "results/table4.csv" in err and "snakemake all_tables" in err


def test_paper_dry_run_plans_every_table(tmp_path):
    root = copy_project(tmp_path)
    counts = job_counts(sh("snakemake -n all_tables --config preset=paper", root).stdout)
    # every variant: 11 trained, 2 zero-shot (a reference to the base policy); the six tables and
    # tables 2 and 3 with the training prompt
    assert counts["train"] == 11 and counts["base_policy"] == 2 and counts["table"] == 8


def test_malformed_params_fail_at_start_naming_the_setting(tmp_path):
    root = copy_project(tmp_path)
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["train"]["num_generations"] = "eight"
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    proc = sh("snakemake -n results/table4.csv", root, check=False)
    assert proc.returncode != 0 and "train.num_generations" in proc.stdout + proc.stderr
    proc = sh("rise check", root, check=False)
    assert proc.returncode == 2 and "train.num_generations" in proc.stderr
