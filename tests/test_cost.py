"""`rise --preset <preset> cost TARGET`: GPU hours from the planned jobs and the recorded measurements,
each figure with its source; what was never measured is said, not guessed."""
from pathlib import Path

import pytest

from conftest import run_rise
from rise.config import load_settings
from rise.cost import MEASUREMENTS, project, report
from rise.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_training_hours_are_steps_times_the_measured_step_with_its_source(tmp_path):
    figures = tmp_path / "m.yaml"
    figures.write_text("train_step:\n  3b: {seconds: 36.0, gpus: 8, gpu: X100, completion_tokens: 1300, source: run 7}\n")
    paper = load_settings(ROOT / "params.yaml", "paper")
    [train, predict] = project(paper, ["table4"], figures)
    assert train.stage == "train 3b" and train.jobs == 5  # Table 4's five trained rows, one seed each
    assert train.gpu_hours == pytest.approx(5 * 125 * 36.0 * 8 / 3600)
    assert "run 7" in train.how and "lower bound" not in train.how
    assert predict.gpu_hours is None and "not measured" in predict.how
    text = report(paper, ["table4"], figures)
    assert "at least" in text and "50.0 GPU h" in text


def test_a_step_measured_at_fewer_tokens_is_a_lower_bound_and_a_missing_size_is_said():
    paper = load_settings(ROOT / "params.yaml", "paper")
    lines = {line.stage: line for line in project(paper, ["all_tables"], MEASUREMENTS)}
    assert "lower bound" in lines["train 3b"].how and "benchmarks/README.md" in lines["train 3b"].how
    assert lines["train 7b"].gpu_hours is None and "no measured step time" in lines["train 7b"].how


def test_an_unknown_target_lists_the_tables():
    paper = load_settings(ROOT / "params.yaml", "paper")
    with pytest.raises(ConfigError, match="known: .*table4"):
        project(paper, ["table9"])


def test_the_cli_prints_gpu_hours_for_the_paper_preset(tmp_path):
    out = run_rise("--preset", "paper", "cost", "table4", cwd=ROOT).stdout
    assert "GPU h" in out and "train 3b" in out and "measurements.yaml" in out
