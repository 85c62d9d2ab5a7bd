"""The toy research tools under experiments/toy/ (measure, rank_rewards, compare_updates)."""
import json
import sys

import numpy as np
import pytest

from conftest import ROOT, tiny_toy_project
from rise.data.toy_world import CELL

TOOLS = ROOT / "experiments" / "toy"
sys.path.insert(0, str(TOOLS))  # the tools import their shared module (groups.py) as scripts do


def test_measure_entry_names_an_unknown_variant(tmp_path):
    import subprocess
    import sys

    root, _ = tiny_toy_project(tmp_path)
    proc = subprocess.run([sys.executable, str(TOOLS / "measure.py"), "--root", str(tmp_path / "run"),
                           "--variants", "full_3b,nosuch"], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 2 and "nosuch" in proc.stderr



def test_measure_draws_the_training_set_at_the_presets_seed_like_the_workflow(tmp_path, monkeypatch):
    """Seed s of `measure` is the table's seed s: only GRPO's seed moves, the training set does not."""
    import rise.data
    import rise.evaluate
    import rise.predict
    import rise.sampling
    import rise.train
    import measure as measure_mod

    root, _ = tiny_toy_project(tmp_path)
    drawn, trained = [], []
    monkeypatch.setattr(rise.data, "prepare_dataset", lambda settings, name: None)
    monkeypatch.setattr(rise.sampling, "sample_train_set", lambda settings, name: drawn.append(settings.seed))
    monkeypatch.setattr(rise.train, "train_variant",
                        lambda settings, v: trained.append((settings.train.seeds, settings.layout.primary_seed)))
    monkeypatch.setattr(rise.predict, "predict", lambda settings, v, eval_set: None)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"gIoU": 1.0, "cIoU": 1.0, "n_failed_parse": 0}))
    monkeypatch.setattr(rise.evaluate, "evaluate", lambda settings, v, eval_set: metrics)
    monkeypatch.setattr(measure_mod, "family_scores", lambda settings, v, eval_set: {})
    monkeypatch.setattr(measure_mod, "training_signal", lambda settings, v: {})
    preset_seed = measure_mod.load_settings(root / "params.yaml", preset="toy", root=tmp_path / "x").seed
    records = measure_mod.measure(root / "params.yaml", tmp_path / "run", 2, ["full_3b"])
    assert drawn == [preset_seed] and preset_seed != 2
    assert trained == [([2], 2)] and records[0]["seed"] == 2


def test_group_ranking_reads_how_a_reward_orders_each_groups_hits():
    from groups import group_ranking

    rewards = [[0.9, 0.2, 0.3, 0.2], [0.5, 0.5], [0.1, 0.8, 0.4]]
    hits = [[True, False, False, False], [False, False], [True, False, False]]
    r = group_ranking(rewards, hits)
    assert r["groups"] == 3 and r["mixed_groups"] == round(2 / 3, 3)
    assert r["best_is_hit"] == 0.5  # the first mixed group's best is its hit, the third's is a miss
    assert r["reward_hit"] == 0.5 and r["reward_miss"] == round(float(np.mean([0.2, 0.3, 0.2, 0.5, 0.5, 0.8, 0.4])), 3)
    first = (0.9 - 0.4) / (np.std([0.9, 0.2, 0.3, 0.2]) + 1e-4)
    third = (0.1 - 13 / 30) / (np.std([0.1, 0.8, 0.4]) + 1e-4)
    assert r["hit_advantage"] == round(float((first + third) / 2), 3)
    assert r["hit_rate"] == round(2 / 9, 3)


def test_rank_rewards_and_compare_updates_entries_read_a_policys_sampled_groups(tmp_path):
    import subprocess
    import sys

    root, models = tiny_toy_project(tmp_path)
    for stage in ("clip", "policy"):
        proc = subprocess.run([sys.executable, "-m", "rise.cli", "--preset", "toy", "pretrain", "--model", stage], cwd=root,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
    proc = subprocess.run([sys.executable, str(TOOLS / "rank_rewards.py"), str(models / "policy"), "--prompts", "1"],
                          cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert set(report) == {"classname", "shape"} and all(r["groups"] == 1 for r in report.values())
    proc = subprocess.run([sys.executable, str(TOOLS / "compare_updates.py"), str(models / "policy"),
                           "--prompts", "1", "--steps", "1,2", "--updates", "grpo,grpo_kl,grpo_positive,supervised_on_hits"],
                          cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["answers"] == 2 * 8
    assert set(report["grpo"]) == set(report["grpo_kl"]) == set(report["grpo_positive"]) == {"step 1", "step 2"}
    if report["hit_rate"]:
        assert set(report["supervised_on_hits"]) == {"step 1", "step 2"}
    else:  # a random tiny policy rarely finds the cell: nothing to learn from, said so
        assert report["supervised_on_hits"] == {"skipped": "the batch holds no hit to learn from"}
    assert 0 <= report["grpo"]["step 2"]["fresh_hit_rate"] <= 1
    proc = subprocess.run([sys.executable, str(TOOLS / "compare_updates.py"), str(models / "policy"), "--steps", "a"],
                          cwd=root, capture_output=True, text=True)
    assert proc.returncode == 2 and "--steps a" in proc.stderr
    proc = subprocess.run([sys.executable, str(TOOLS / "compare_updates.py"), str(models / "policy"),
                           "--updates", "grpo,nosuch"], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 2 and "nosuch" in proc.stderr

def test_family_scores_counts_a_box_on_the_target_cell_as_a_hit(tmp_path):
    from rise.config import PROJECT_ROOT, load_settings
    from rise.contracts import write_jsonl
    from measure import family_scores
    from rise.contracts import decode_mask, load_eval_manifest
    from rise.data import prepare_dataset

    settings = load_settings(PROJECT_ROOT / "params.yaml", preset="toy", root=tmp_path)
    settings.datasets["reasonseg_test"]["n_images"] = 4
    rows = load_eval_manifest(prepare_dataset(settings, "reasonseg_test"))
    preds = []
    for k, r in enumerate(rows):
        ys, xs = np.nonzero(decode_mask(r["mask"]))
        row, col = int(ys.mean() // CELL), int(xs.mean() // CELL)
        right = [col * CELL, row * CELL, (col + 1) * CELL, (row + 1) * CELL]
        preds.append({"sample_id": r["sample_id"], "box": right if k % 2 == 0 else None})
    layout = settings.layout
    write_jsonl(layout.predictions("v", "reasonseg_test"), preds)
    layout.sample_scores("v", "reasonseg_test").parent.mkdir(parents=True, exist_ok=True)
    layout.sample_scores("v", "reasonseg_test").write_text(
        "sample_id,iou,kind\n" + "".join(f"{r['sample_id']},{1.0 if k % 2 == 0 else ''},{r['kind']}\n"
                                         for k, r in enumerate(rows)))
    scores = family_scores(settings, "v", "reasonseg_test")
    hits = sum(s["hit_rate"] * sum(r["kind"] == kind for r in rows) for kind, s in scores.items())
    assert round(hits) == (len(rows) + 1) // 2


def test_summarise_gives_mean_and_seed_standard_deviation_per_variant():
    from measure import summarise

    def record(variant, seed, giou, hit):
        return {"variant": variant, "seed": seed, "gIoU": giou, "cIoU": giou / 2,
                "families": {"colour": {"gIoU": giou, "hit_rate": hit}}}

    rows = summarise([record("full_3b", 0, 50.0, 0.5), record("full_3b", 1, 54.0, 0.7),
                      record("format_only_3b", 0, 30.0, 0.3)])
    full, fmt = rows
    assert full["variant"] == "full_3b" and full["seeds"] == 2
    assert full["gIoU"] == 52.0 and full["gIoU std"] == pytest.approx(2.83, abs=0.01)
    assert full["cIoU std"] == pytest.approx(1.41, abs=0.01) and full["hit_rate"]["colour"] == 0.6
    assert fmt["gIoU std"] == 0.0


def test_measure_entry_refuses_a_setting_without_a_value(tmp_path):
    import subprocess
    import sys

    root, _ = tiny_toy_project(tmp_path)
    proc = subprocess.run([sys.executable, str(TOOLS / "measure.py"), "--root", str(tmp_path / "run"),
                           "--variants", "full_3b", "--set", "beta"], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 2 and "--set beta" in proc.stderr
