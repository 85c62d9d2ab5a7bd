"""Presets derived from the toy: pretraining draws (`draws`) and weaker judges (`judges`), declared in
params.yaml (rise/config.py), and the tables over them (rise/toy/draws.py, `rise draws`;
rise/toy/judges.py, `rise judges`). Both engines plan them alike: tests/test_dvc_pipeline.py."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import copy_project
from rise.config import PROJECT_ROOT, load_settings, preset_names, read_params
from rise.errors import ConfigError, RiseError
from test_claim import _write_scores

TABLE4 = [("Base", "zeroshot_3b"), ("Format-only", "format_only_3b"), ("Semantic-only", "semantic_only_3b"),
          ("w/o Seg", "no_seg_format_3b"), ("w/o Think", "no_think_format_3b"), ("Full", "full_3b")]


def test_each_declared_draw_is_a_preset_with_its_own_seed_models_and_tables():
    raw = read_params(PROJECT_ROOT / "params.yaml")
    toy = load_settings(PROJECT_ROOT / "params.yaml", "toy")
    assert len(toy.draws) >= 5 and 0 in toy.draws  # the bar: five draws, seed 0 among them
    assert toy.draws[toy.pretrain["seed"]] == "toy"  # the preset's own seed is the preset
    assert [n for n in preset_names(raw) if n.startswith("toy-draw")] == [
        f"toy-draw{k}" for k in toy.draws if k != toy.pretrain["seed"]]
    d0 = load_settings(PROJECT_ROOT / "params.yaml", "toy-draw0")
    assert d0.copy_of == "toy" and d0.pretrain["seed"] == 0 and list(d0.tables) == toy.draw_tables
    assert d0.models["clip"]["pretrained"] == "runs/toy-draw0/models/clip.pt"
    assert set(d0.models["policies"].values()) == {"runs/toy-draw0/models/policy"}
    assert d0.layout.table("table4").as_posix() == "results/toy-draw0/table4.csv"
    assert d0.sweeps == [] and d0.figures == {} and d0.draws == {}
    # everything else is the preset's: the same data, GRPO and tables
    assert (d0.datasets, d0.train, d0.tables["table4"]) == (toy.datasets, toy.train, toy.tables["table4"])
    with pytest.raises(ConfigError, match=r"preset 'toy-draw9' is not defined.*toy-draw0"):
        load_settings(PROJECT_ROOT / "params.yaml", "toy-draw9")
    with pytest.raises(ConfigError, match="preset 'toy-draw1' is not defined"):  # that one is `toy` itself
        load_settings(PROJECT_ROOT / "params.yaml", "toy-draw1")


def test_draws_name_a_table_of_the_preset_and_need_pretraining():
    path = PROJECT_ROOT / "params.yaml"
    with pytest.raises(ConfigError, match=r"presets.toy.draws names tables \[.table2.\]"):
        load_settings(path, "toy", overrides={"presets": {"toy": {"draws": {"tables": ["table2"]}}}})
    with pytest.raises(ConfigError, match="presets.demo.draws: a preset without `pretrain`"):
        load_settings(path, "demo", overrides={"presets": {"demo": {"draws": {"seeds": [0, 1], "tables": ["table4"]}}}})


def _draw_files(settings, lift, rng, by_family: bool = False) -> None:
    """A draw's Table 4 as the workflow writes it: per-sample scores of every run, the table's means
    computed from them, and the two pretraining reports the draws table reads. R_sem rows gain `lift`
    (intersection units of 20; or {variant: lift}, the others none) over the base and Format-only on
    every sample. `by_family`: a table by family too (every sample here is a class-name instruction,
    so that family's columns are the overall's)."""
    hard = rng.integers(0, 8, 80)
    means, stds = {}, {}
    for label, variant in TABLE4:
        gain = lift.get(variant, 0) if isinstance(lift, dict) else lift if variant not in ("zeroshot_3b", "format_only_3b") else 0
        runs = [[(int(min(20, 6 + h + (gain + seed % 2 if gain else 0))), 20, "classname") for h in hard]
                for seed in settings.seeds(variant)]
        _write_scores(settings, variant, "reasonseg_test", runs)
        per_run = [100 * np.mean([i / u for i, u, _ in run]) for run in runs]
        means[label], stds[label] = np.mean(per_run), (np.std(per_run, ddof=1) if len(per_run) > 1 else None)
    table = settings.layout.table("table4")
    table.parent.mkdir(parents=True, exist_ok=True)
    family = ["", "classname "] if by_family else [""]
    pd.DataFrame([{"label": label, "variant": variant,
                   **{f"reasonseg_test {f}gIoU{s}": v for f in family for s, v in (("", means[label]), (" std", stds[label]))}}
                  for label, variant in TABLE4]).to_csv(table, index=False)
    from rise.toy.models import pretrained_models

    made = pretrained_models(settings, every=True)
    for stage, body in (("policy", {"heldout": {"greedy": {f: {"hit_rate": 0.5} for f in ("classname", "colour")}}}),
                        ("clip", {"heldout": {"zero_shot_accuracy_classname": 0.9}})):
        path = settings.layout.root / made[stage]["report"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(body))


def test_the_draws_table_reports_each_draw_the_share_that_holds_and_intervals_across_draws(tmp_path, monkeypatch):
    root = copy_project(tmp_path / "p", {"presets": {"toy": {"draws": {"seeds": [1, 7, 8, 9]}}}})
    monkeypatch.chdir(root)  # model paths in params.yaml are relative to the project root
    toy = load_settings(root / "params.yaml", "toy", root=root)
    assert toy.draws == {1: "toy", 7: "toy-draw7", 8: "toy-draw8", 9: "toy-draw9"}
    rng = np.random.default_rng(0)
    # draws 1 and 7: every R_sem row well above; draw 8: no effect; draw 9: Full alone above (2 of 8)
    lifts = {1: 4, 7: 3, 8: 0, 9: {"full_3b": 4}}
    for seed, name in toy.draws.items():
        _draw_files(load_settings(root / "params.yaml", name, root=root), lifts[seed], rng, by_family=True)
    proc = subprocess.run([sys.executable, "-m", "rise.cli", "--preset", "toy", "draws", "--name", "table4",
                           "--resamples", "300"], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "holds in **2 of 4** draws by the 2-std rule and in **2 of 4** by the bootstrap" in proc.stdout
    base = root / "results/toy/draws/table4"
    by_draw = pd.read_csv(f"{base}.csv")
    assert list(by_draw["draw"]) == [1, 7, 8, 9] and list(by_draw["preset"]) == ["toy", "toy-draw7", "toy-draw8", "toy-draw9"]
    assert list(by_draw["claim holds (2 std)"]) == [True, True, False, False]
    assert list(by_draw["comparisons"]) == [8, 8, 8, 8] and list(by_draw["met (2 std)"].iloc[2:]) == [0, 2]
    assert by_draw["base hit classname"].iloc[0] == 0.5 and by_draw["clip zero-shot classname"].iloc[0] == 0.9
    every = pd.read_csv(f"{base}.comparisons.csv")
    # each comparison overall (what the verdict counts) and on each family of the table, read apart
    assert len(every) == 64 and list(every["family"].value_counts().items()) == [("all", 32), ("classname", 32)]
    comparisons, classname = every[every["family"] == "all"], every[every["family"] == "classname"]
    assert set(comparisons["against"]) == {"Base", "Format-only"}
    assert list(classname["gap"]) == list(comparisons["gap"]) and list(classname["low"]) == list(comparisons["low"])
    full = comparisons[(comparisons["row"] == "Full") & (comparisons["against"] == "Base")]
    assert (full["low"].iloc[:2] > 0).all() and full["low"].iloc[2] <= 0 <= full["high"].iloc[2]
    summary = json.loads((base.with_suffix(".json")).read_text())
    assert summary["share holds (2 std)"] == pytest.approx(2 / 4, abs=1e-3)
    across = summary["across draws"]["Full vs Base (reasonseg_test)"]
    gaps = list(full["gap"])
    assert across["mean gap"] == pytest.approx(np.mean(gaps), abs=0.01)
    assert across["low"] < min(gaps[:2]) and across["high"] > 0  # four draws, one without effect: wide
    assert "## Across draws" in (base.with_suffix(".md")).read_text()
    assert "## Across draws, per instruction family" in (base.with_suffix(".md")).read_text()
    assert all("classname" not in key for key in summary["across draws"])  # the metrics: the overall gaps
    # the family columns change nothing overall: the same table without them gives the same intervals
    for name in toy.draws.values():
        table = root / "results" / name / "table4.csv"
        df = pd.read_csv(table)
        df.drop(columns=[c for c in df.columns if "classname" in c]).to_csv(table, index=False)
    proc = subprocess.run([sys.executable, "-m", "rise.cli", "--preset", "toy", "draws", "--name", "table4",
                           "--resamples", "300"], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads((base.with_suffix(".json")).read_text()) == summary


def test_a_draw_not_built_yet_is_named(tmp_path, monkeypatch):
    from rise.toy.draws import draws_table

    root = copy_project(tmp_path / "p")
    monkeypatch.chdir(root)
    with pytest.raises(RiseError, match="results/toy-draw0/table4.csv: no such table"):
        draws_table(load_settings(root / "params.yaml", "toy", root=root), "table4")
    with pytest.raises(RiseError, match="does not name 'table1'"):
        draws_table(load_settings(root / "params.yaml", "toy", root=root), "table1")


def test_each_judge_is_a_preset_that_pretrains_its_clip_alone_and_trains_the_judged_rows():
    toy = load_settings(PROJECT_ROOT / "params.yaml", "toy")
    assert len(toy.judges) >= 2 and all(k < toy.pretrain["clip"]["steps"] for k in toy.judges)
    weakest = load_settings(PROJECT_ROOT / "params.yaml", toy.judges[min(toy.judges)])
    assert weakest.copy_of == "toy" and weakest.copy_kind == "judges" and weakest.pretrains == ("clip",)
    assert weakest.pretrain["clip"]["steps"] == min(toy.judges)
    assert weakest.models["clip"]["pretrained"] == f"runs/{weakest.preset}/models/clip.pt"
    # the policy and SAM2 are the preset's own: the judge alone differs
    assert (weakest.models["policies"], weakest.models["sam2"]) == (toy.models["policies"], toy.models["sam2"])
    rows = weakest.tables[toy.judge_table]["rows"]
    assert [r["variant"] for r in rows] == toy.judge_variants == ["full_3b"]
    with pytest.raises(ConfigError, match="judges.variants names \\['nosuch_3b'\\]"):
        load_settings(PROJECT_ROOT / "params.yaml", "toy",
                      overrides={"presets": {"toy": {"judges": {"variants": ["nosuch_3b"]}}}})


def test_the_judges_table_sets_each_judges_gain_over_format_only_against_its_accuracy(tmp_path, monkeypatch):
    """Three judges of rising quality: the preset's Format-only and base are read from its own runs,
    each judge's Full from its own; the gain and its interval follow the judge."""
    root = copy_project(tmp_path / "p", {"presets": {"toy": {"judges": {"clip_steps": [10, 30]}}}})
    monkeypatch.chdir(root)
    toy = load_settings(root / "params.yaml", "toy", root=root)
    _draw_files(toy, 4, np.random.default_rng(1))  # the preset: every R_sem row 4 units above
    for steps, lift, accuracy in ((10, 0, 0.2), (30, 2, 0.5)):
        judge = load_settings(root / "params.yaml", toy.judges[steps], root=root)
        _draw_files(judge, lift, np.random.default_rng(1))  # the same samples: paired
        report = root / judge.models["clip"]["pretrained"]
        (report.parent / (report.name + ".report.json")).write_text(json.dumps({"heldout": {
            "zero_shot_accuracy_classname": accuracy, "rsem_top1_cell_classname": accuracy}}))
    (root / "runs/toy/models/clip.pt.report.json").write_text(json.dumps({"heldout": {
        "zero_shot_accuracy_classname": 0.9, "rsem_top1_cell_classname": 0.97}}))
    proc = subprocess.run([sys.executable, "-m", "rise.cli", "--preset", "toy", "judges", "--resamples", "300"],
                          cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    df = pd.read_csv(root / "results/toy/judges/table4.csv")
    assert list(df["clip steps"]) == [10, 30, 400] and set(df["row"]) == {"Full"}  # the judged rows alone
    assert set(df["family"]) == {"all"}  # (this table has no family columns)
    assert list(df["zero-shot classname"]) == [0.2, 0.5, 0.9]
    gaps = list(df["gap vs Format-only"])
    assert gaps[0] < gaps[1] < gaps[2] and df["low vs Format-only"].iloc[2] > 0
    assert df["low vs Format-only"].iloc[0] <= 0 <= df["high vs Format-only"].iloc[0]
    assert (root / "results/toy/judges/table4.png").stat().st_size > 10_000
