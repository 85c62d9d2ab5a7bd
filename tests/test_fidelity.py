"""Where the paper preset follows Seg-Zero (commit 77f9ea5), and the switches for the other readings."""
from pathlib import Path

import pytest

from rise.answer import parse_answer, parse_answer_segzero
from rise.config import load_settings
from rise.rewards import SegFormatReward

ROOT = Path(__file__).resolve().parent.parent
POINTS = '"points_1": [20, 20], "points_2": [30, 30]'


def test_grpo_settings_follow_segzero():
    from rise.train import grpo_kwargs

    paper = load_settings(ROOT / "params.yaml", "paper")
    kw = grpo_kwargs(paper, Path("/tmp/unused"), world_size=8)
    # one sequence per update micro-batch in Seg-Zero: token mean per sequence, then over sequences
    assert kw["loss_type"] == "grpo"
    assert kw["entropy_coef"] == 1e-3  # Seg-Zero's ActorConfig.entropy_coeff
    assert kw["top_entropy_quantile"] == 1.0  # Seg-Zero's loss covers every response token
    assert kw["max_completion_length"] == 1300  # Seg-Zero's max_response_length
    assert kw["beta"] == 5e-3 and kw["learning_rate"] == 1e-6 and kw["num_generations"] == 8
    assert paper.train.json_single_quotes is False
    assert paper.models["sam2"]["config"] == "configs/sam2/sam2_hiera_l.yaml"  # SAM 2.0 Large, as Seg-Zero
    assert paper.evaluate["answer"] == "segzero"
    assert paper.datasets["refcocog_train"]["level"] == "instance"


def test_top_entropy_quantile_reaches_trl():
    from trl import GRPOConfig

    from rise.train import grpo_kwargs

    toy = load_settings(ROOT / "params.yaml", "toy")
    toy.train.top_entropy_quantile = 0.2
    assert GRPOConfig(**grpo_kwargs(toy, Path("/tmp/unused"))).top_entropy_quantile == 0.2


@pytest.mark.parametrize("text, segzero_ok, strict_ok, why", [
    (f'<think>t</think><answer>{{"bbox": [10, 10, 50, 50], {POINTS}}}</answer>', True, True, "well formed"),
    (f'<answer>{{"bbox": [10, 10, 50, 50], {POINTS}}}</answer>', False, True, "no think block"),
    ("<think>t</think><answer>{'bbox': [10, 10, 50, 50], 'points_1': [20, 20], 'points_2': [30, 30]}</answer>",
     False, True, "single quotes"),
    (f'<think>t {{"bbox": [1, 2, 3, 4]}}</think><answer>{{"bbox": [10, 10, 50, 50], {POINTS}}}</answer>',
     False, True, "first object outside the answer block"),
    (f'<think>t</think><answer>{{"bbox": [50, 50, 10, 10], {POINTS}}}</answer>', True, False, "unordered box"),
    (f'<think>t</think><answer>{{"bbox": [10, 10, 900, 50], {POINTS}}}</answer>', True, False, "box outside"),
    (f'<think><answer>t</think><answer>{{"bbox": [10, 10, 50, 50], {POINTS}}}</answer>', False, True,
     "an answer tag inside the think block"),
])
def test_segzero_and_strict_answer_protocols_on_tricky_outputs(text, segzero_ok, strict_ok, why):
    assert parse_answer_segzero(text, points=True, think=True).ok is segzero_ok, why
    assert parse_answer(text, 840, 840, points=True).ok is strict_ok, why


def test_segzero_extraction_details():
    a = parse_answer_segzero(f'<think>t</think><answer>{{"bbox": [10.9, 10, 50, 50], {POINTS}}}</answer>')
    assert a.box == (10.0, 10.0, 50.0, 50.0) and a.points == ((20.0, 20.0), (30.0, 30.0))  # int() truncation
    unordered = parse_answer_segzero(f'<think>t</think><answer>{{"bbox": [50, 50, 10, 10], {POINTS}}}</answer>')
    assert unordered.box == (50.0, 50.0, 10.0, 10.0)  # passed to SAM2 as written
    grounding = '[{"bbox_2d": [10, 20, 30, 40], "label": "the cat"}]'  # Qwen's prompt: box only, no think
    assert parse_answer_segzero(grounding, points=False, think=False).box == (10.0, 20.0, 30.0, 40.0)
    assert not parse_answer_segzero(grounding, points=True, think=False).ok
    assert "think" in parse_answer_segzero(f'<answer>{{"bbox": [1, 2, 3, 4], {POINTS}}}</answer>').error


def test_strict_json_in_r_seg_is_a_switch():
    double = [[{"role": "assistant", "content": f'<think>t</think><answer>{{"bbox": [10, 10, 50, 50], {POINTS}}}</answer>'}]]
    single = [[{"role": "assistant", "content": "<think>t</think><answer>{'bbox': [10, 10, 50, 50], "
                                                "'points_1': [20, 20], 'points_2': [30, 30]}</answer>"}]]
    from PIL import Image

    image = [Image.new("RGB", (84, 84))]
    strict, lenient = SegFormatReward(single_quotes=False), SegFormatReward(single_quotes=True)
    assert strict(completions=double, image=image) == [1.0] and strict(completions=single, image=image) == [0.0]
    assert lenient(completions=single, image=image) == [1.0]
    err = parse_answer(single[0][0]["content"], 84, 84, single_quotes=False).error
    assert "single quotes" in err


def test_training_pool_level_is_a_setting_and_sampling_is_deterministic_either_way():
    from rise.sampling import sample_pairs

    def row(sid):
        return {"sample_id": sid, "image": f"{sid}.jpg", "instruction": sid, "dataset": "refcocog_train",
                "source_id": sid}

    instance = [row(f"ref{i}") for i in range(50)]
    expression = [row(f"ref{i}_s{j}") for i in range(50) for j in range(3)]
    for pool in (instance, expression):
        a = sample_pairs(pool, 10, 0, "refcocog_2k")
        b = sample_pairs(list(reversed(pool)), 10, 0, "refcocog_2k")
        assert [r["sample_id"] for r in a] == [r["sample_id"] for r in b]


def test_environment_provenance_names_commit_versions_and_gpus():
    from rise.provenance import environment, summary

    env = environment()
    assert env["git_commit"] and {"torch", "transformers", "trl", "open_clip_torch", "sam2"} <= set(env["packages"])
    assert env["gpu_count"] == 0 and env["gpu"] is None  # this machine
    text = summary(env)
    assert text.startswith(env["git_commit"]) and "cpu" in text and "trl " in text


def test_refcoco_tables_exist_in_both_prompt_readings():
    """Tables 2 and 3 use Qwen2.5-VL's grounding prompt (box only); the *_cot_prompt tables read the
    same checkpoints with the prompt they were trained with (CoT, box + points)."""
    for preset in ("demo", "paper"):
        s = load_settings(ROOT / "params.yaml", preset)
        for table in ("table2", "table3"):
            grounding = [d for d, _ in s.tables[table]["columns"]]
            trained = [d for d, _ in s.tables[f"{table}_cot_prompt"]["columns"]]
            assert [s.datasets[d]["eval_prompt"] for d in grounding] == ["qwen_grounding"] * 3
            assert [s.datasets[d].get("eval_prompt", "segzero") for d in trained] == ["segzero"] * 3
            assert [{k: v for k, v in s.datasets[d].items() if k != "eval_prompt"} for d in grounding] == \
                   [s.datasets[d] for d in trained]  # the same data
            assert s.tables[table]["rows"] == s.tables[f"{table}_cot_prompt"]["rows"]


def test_format_rewards_accept_what_segzero_evaluation_fails():
    """Seg-Zero's format rewards and its evaluation disagree on an <answer> tag opened inside the think
    block: both rewards pay for it, the evaluation's think pattern `<think>([^<]+)</think>` fails it.
    A policy trained on the format rewards alone can drift there (docs/toy-log.md, Format-only seed 1)."""
    from PIL import Image

    from rise.rewards import ThinkFormatReward

    text = f'<think><answer>the red square 1 2</think><answer>{{"bbox": [28, 28, 56, 56], {POINTS}}}</answer>'
    completion = [{"role": "assistant", "content": text}]
    assert ThinkFormatReward()(completions=[completion]) == [1.0]
    assert SegFormatReward(single_quotes=False)(completions=[completion], image=[Image.new("RGB", (112, 112))]) == [1.0]
    assert not parse_answer_segzero(text, points=True, think=True).ok


def test_a_rerun_that_rewrites_committed_results_is_not_called_dirty(tmp_path):
    """A preset with committed results (the toy) rewrites them as it reruns: outputs under runs/ and
    results/ and the lock files do not make the commit '+dirty'; an edited source file does."""
    import subprocess
    import sys

    from conftest import copy_project

    root = copy_project(tmp_path / "p")
    (root / "results" / "toy").mkdir(parents=True)
    (root / "results" / "toy" / "table4.csv").write_text("a\n1\n")
    git = lambda *a: subprocess.run(["git", *a], cwd=root, check=True, capture_output=True, text=True)  # noqa: E731
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    probe = "import rise.provenance as p; print(p.git_commit())"

    def commit():
        return subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True).stdout.strip()

    (root / "results" / "toy" / "table4.csv").write_text("a\n2\n")
    assert not commit().endswith("+dirty")
    (root / "rise" / "metrics.py").write_text((root / "rise" / "metrics.py").read_text() + "\n# edited\n")
    assert commit().endswith("+dirty")
