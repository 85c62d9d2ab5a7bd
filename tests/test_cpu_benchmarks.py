"""benchmarks/eval.py and benchmarks/reward.py: reduced runs, and disagreement between the arms is an
error; benchmarks/cpu_kernels.py: a reduced run repeats its weights."""
import importlib.util
import logging
import math

import pytest

from conftest import ROOT


@pytest.fixture(autouse=True)
def restore_logging():
    yield
    logging.disable(logging.NOTSET)  # eval.py's main silences warnings process-wide


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_eval_agreement_is_checked_per_sample():
    bench = load("eval")
    same = {"a": (3, 4), "b": (0, 5)}
    assert bench.check_agreement("w", same, dict(same))["cIoU"] == pytest.approx(100 * 3 / 9)
    with pytest.raises(bench.Disagreement, match="sample b has intersection/union \\(0, 5\\) in the baseline"):
        bench.check_agreement("w", same, {"a": (3, 4), "b": (0, 6)})
    with pytest.raises(bench.Disagreement, match="different samples"):
        bench.check_agreement("w", same, {"a": (3, 4)})


def test_reward_agreement_is_checked_per_completion():
    bench = load("reward")
    assert bench.check_agreement("arm", [0.0, 0.25], [0.0, 0.251], 0.005) == pytest.approx(0.001)
    with pytest.raises(bench.Disagreement, match="completion 1 scores 0.26000 against 0.25000"):
        bench.check_agreement("arm", [0.0, 0.26], [0.0, 0.25], 0.005)
    with pytest.raises(bench.Disagreement, match="one of the two found no valid box"):
        bench.check_agreement("arm", [0.1, 0.25], [0.0, 0.25], 0.005)


@pytest.mark.slow
def test_eval_benchmark_reduced_run_reports_both_workloads():
    result = load("eval").main(["--images", "1", "--repeats", "1", "--sam2-size", "256"])
    three, one = result["three_per_image"], result["one_per_image"]
    assert three["samples"] == one["samples"] == 3
    assert three["encodes_per_sample_baseline"] == 1.0 and three["encodes_per_sample_pipeline"] == pytest.approx(1 / 3, abs=1e-3)
    assert one["encodes_per_sample_baseline"] == one["encodes_per_sample_pipeline"] == 1.0


@pytest.mark.slow
def test_eval_benchmark_stops_when_the_paths_disagree(monkeypatch):
    bench = load("eval")
    real = bench.pipeline

    def off_by_one(rows, policy, segmenter):
        scores = real(rows, policy, segmenter)
        first = sorted(scores)[0]
        scores[first] = (scores[first][0], scores[first][1] + 1)
        return scores

    monkeypatch.setattr(bench, "pipeline", off_by_one)
    with pytest.raises(bench.Disagreement, match="three_per_image: sample .* in the pipeline"):
        bench.main(["--images", "1", "--repeats", "1", "--sam2-size", "256"])


@pytest.mark.slow
def test_reward_benchmark_reduced_run_splits_the_gain():
    result = load("reward").main(["--prompts", "1", "--repeats", "1"])
    assert result["completions"] == 8 and result["max_abs_diff"] <= 0.005
    assert set(result["parts"]) == {"batching", "duplicate_crops", "text_cache"}
    assert math.prod(result["parts"].values()) == pytest.approx(result["ratio"], rel=0.03)  # rounding only


def test_kernel_benchmark_reduced_run_repeats_itself_on_one_machine(tmp_path):
    result = load("cpu_kernels").main(["--steps", "10", "--only", "native", "--only", "native again",
                                   "--out", str(tmp_path / "kernels.json")])
    assert [r["config"] for r in result["runs"]] == ["native", "native again"]
    assert result["groups"] == [["native", "native again"]] and len(result["runs"][0]["fingerprint"]) == 12
