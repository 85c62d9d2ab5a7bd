"""What a person follows while a job runs: one line per training step in the job log, labelled
progress bars, the project's own lines on the console and other libraries' noise in the log only."""
import re

import pytest

from conftest import QUICK, copy_project, run_rise


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = copy_project(tmp_path_factory.mktemp("logs"), QUICK)
    for stage in ("build-models", "prepare-data", "sample-train"):
        run_rise(stage, cwd=root)
    train = run_rise("--log", "logs/train.log", "train", "--variant", "full_3b", cwd=root)
    predict = run_rise("--log", "logs/predict.log", "predict", "--variant", "full_3b", "--eval-set", "reasonseg_val",
                       cwd=root)
    return root, train, predict


def test_each_training_step_writes_one_line_to_the_job_log(trained):
    root, _, _ = trained
    text = (root / "logs/train.log").read_text()
    steps = re.findall(r"train full_3b seed 0 step (\d+)/(\d+): reward [-\d.]+ \((semantic [-\d.]+, think_format "
                       r"[-\d.]+, seg_format [-\d.]+)\), kl \S+, completion length \d+, [\d.]+ s/step, "
                       r"\d\d:\d\d:\d\d left", text)
    assert [(int(s), int(n)) for s, n, _ in steps] == [(1, 2), (2, 2)]
    assert "{'loss'" not in text  # the raw dict the progress bar used to print


def test_the_console_carries_the_projects_lines_and_a_labelled_bar_not_library_noise(trained):
    root, train, predict = trained
    console = train.stderr + train.stdout
    assert "train full_3b seed 0: 100%" in console  # the bar names its run
    assert "train full_3b seed 0 step 2/2" in console
    for noise in ("FutureWarning", "{'loss'", "Loading weights", "Writing model shards", " root INFO",
                  "trl.trainer.grpo_trainer WARNING"):
        assert noise not in console, noise
    # ... and the job log keeps the libraries' warnings
    assert "FutureWarning" in (root / "logs/train.log").read_text()
    # SAM2's two lines per image are gone from prediction's log; the stage's own summary stays
    predict_log = (root / "logs/predict.log").read_text()
    assert "Computing image embeddings" not in predict_log and "Computing image embeddings" not in predict.stderr
    assert re.search(r"full_3b/seed0/final/reasonseg_val: \d+ SAM2 image encodes for \d+ samples", predict_log)
