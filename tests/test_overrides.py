"""`--config` overrides: merged over params.yaml, validated, and handed to every `rise` call."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import copy_project, run_rise
from rise.config import config_overrides, deep_merge, load_settings, read_params, typed_value
from rise.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def snakemake(args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(f"snakemake {args}", cwd=cwd, shell=True, capture_output=True, text=True, env=env,
                          timeout=300)


def test_a_setting_given_as_text_is_read_as_its_type():
    # YAML 1.1 reads 1e-4 as text; a learning rate given so on a command line must still be a number
    assert typed_value("1e-4") == 1e-4 and isinstance(typed_value("1e-4"), float)
    assert typed_value("0") == 0 and typed_value("[1, 2]") == [1, 2] and typed_value("dapo") == "dapo"
    assert typed_value("12", old="a name") == "12"


def test_overrides_are_the_nested_difference_and_merge_back():
    base = read_params(ROOT / "params.yaml")
    effective = deep_merge(base, {"seed": 3, "train": {"learning_rate": 2e-6}})
    assert config_overrides(effective, base) == {"seed": 3, "train": {"learning_rate": 2e-6}}
    assert deep_merge(base, config_overrides(effective, base)) == effective


def test_snakemake_string_values_are_read_back_as_yaml_unless_the_setting_is_a_string():
    # what `--config 'train={learning_rate: 2e-6, bf16: False}' 'variants={full_3b: {policy: 7b}}'` gives
    base = read_params(ROOT / "params.yaml")
    effective = deep_merge(base, {"train": {"learning_rate": "2e-6", "bf16": "False", "save_steps": "10"},
                                  "variants": {"full_3b": {"policy": "7b", "gpus": "4"}}})
    assert config_overrides(effective, base) == {
        "train": {"learning_rate": 2e-6, "bf16": False, "save_steps": 10},
        "variants": {"full_3b": {"policy": "7b", "gpus": 4}}}


def test_settings_with_overrides_and_unknown_keys_refused():
    s = load_settings(ROOT / "params.yaml", overrides={"train": {"learning_rate": 2e-6}, "seed": 5})
    assert s.train.learning_rate == 2e-6 and s.seed == 5 and s.train.weight_decay == 0.01
    assert s.provenance()["overrides"] == {"train": {"learning_rate": 2e-6}, "seed": 5}
    with pytest.raises(ConfigError, match=r"(?s)with overrides .*'learnig_rate' was unexpected"):
        load_settings(ROOT / "params.yaml", overrides={"train": {"learnig_rate": 2e-6}})


def test_cli_reads_overrides(tmp_path):
    root = copy_project(tmp_path)
    bad = run_rise("--overrides", json.dumps({"seed": "one"}), "check", cwd=root, check=False)
    assert bad.returncode == 2 and "seed: 'one' is not of type 'integer'" in bad.stderr
    bad = run_rise("--overrides", "[1]", "check", cwd=root, check=False)
    assert bad.returncode == 2 and "--overrides: expected a JSON mapping" in bad.stderr


def test_every_rise_call_of_a_run_carries_the_config_overrides(tmp_path):
    root = copy_project(tmp_path)
    proc = snakemake("-n -p results/table4.csv --config seed=1 'train={learning_rate: 2e-6}'", root)
    assert proc.returncode == 0, proc.stderr
    calls = [line for line in proc.stdout.splitlines() if "rise.cli" in line]
    assert len(calls) == 20  # build_models, 2 prepare_data, sample_train, 5 x (train, predict, evaluate), table
    expected = "--overrides " + "'" + json.dumps({"seed": 1, "train": {"learning_rate": 2e-6}}, sort_keys=True) + "'"
    assert all(expected in line for line in calls)


def test_preset_alone_adds_no_overrides(tmp_path):
    root = copy_project(tmp_path)
    proc = snakemake("-n -p all_tables --config preset=paper", root)
    assert proc.returncode == 0, proc.stderr
    assert "--preset paper" in proc.stdout and "--overrides" not in proc.stdout


@pytest.mark.parametrize("setting, message", [
    ("foo=1", "('foo' was unexpected)"),
    ("'train={learnig_rate: 2e-6}'", "train: Additional properties are not allowed ('learnig_rate' was unexpected)"),
    ("'evaluate={protocol: coco}'", "evaluate.protocol: 'coco' is not one of"),
])
def test_unknown_or_mistyped_config_key_stops_the_run_naming_it(tmp_path, setting, message):
    root = copy_project(tmp_path)
    proc = snakemake(f"-n results/table4.csv --config {setting}", root)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
