"""Mistakes a user makes on the command line end in one line naming the file or setting, exit code 2."""
import json

import pytest

from conftest import copy_project, run_rise


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("cli"))


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


@pytest.mark.parametrize("bad_line,says", [
    ('{"sample_id": "b", "image": ', "not valid JSON"),
    ("[1, 2]", "expected a JSON object, found list"),
    ('{"sample_id": "b"}', "row 1 lacks fields ['image'"),
])
def test_corrupt_manifest_line_names_file_and_line(project, bad_line, says):
    manifest = project / "runs" / "demo" / "data" / "reasonseg_val.jsonl"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    good = {"sample_id": "a", "image": "x.png", "instruction": "the red one", "height": 4, "width": 4,
            "mask": None, "ignore": None, "dataset": "reasonseg_val", "split": "val", "source_id": "a"}
    manifest.write_text(json.dumps(good) + "\n" + bad_line + "\n")
    proc = run_rise("evaluate", "--variant", "zeroshot_3b", "--eval-set", "reasonseg_val", cwd=project, check=False)
    where = "reasonseg_val.jsonl:2:" if "row" not in says else "reasonseg_val.jsonl: row 1"
    assert_one_line_error(proc, "rise evaluate: error:", where, says)


@pytest.mark.parametrize("stage", ["predict", "evaluate"])
def test_unknown_eval_set_lists_the_known_names(project, stage):
    proc = run_rise(stage, "--variant", "zeroshot_3b", "--eval-set", "reasonseg_tset", cwd=project, check=False)
    assert_one_line_error(proc, "'reasonseg_tset' is not defined under presets.demo.datasets",
                          "known: ['imagenet_train', 'reasonseg_test', 'reasonseg_val', 'refcoco_testA'")
    assert "run the stage that makes it first" not in proc.stderr


def test_a_mistyped_settings_key_is_refused_with_the_closest_known_key(project):
    proc = run_rise("--overrides", '{"train": {"learning_rat": 2.0e-6}}', "check", cwd=project, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "'learning_rat' was unexpected" in proc.stderr and "did you mean: 'learning_rat' -> 'learning_rate'?" in proc.stderr


def test_check_data_ends_with_a_summary_and_the_doc_to_read(project):
    proc = run_rise("--preset", "paper", "check-data", cwd=project, check=False)
    assert proc.returncode == 2
    last = proc.stdout.strip().splitlines()[-1]
    missing = proc.stdout.count("MISSING ")
    assert missing > 0 and last.startswith(f"0 of {missing} datasets of preset 'paper' found, {missing} missing")
    assert last.endswith("docs/data.md")
