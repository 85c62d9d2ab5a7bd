"""The toy world through the workflow at a tiny size: pretraining stages, two seeds, the toy
Table 4 (three of its rows) with mean and std over seeds, and a checkpoint sweep, from `snakemake` alone."""
import json
import subprocess
import sys

import pandas as pd
import pytest

from conftest import TINY_PRETRAIN, copy_project, sh

pytestmark = pytest.mark.slow


def test_toy_table4_and_sweep_from_pretraining_to_table(tmp_path):
    small = {"loader": "toy", "n_images": 4, "families": ["classname", "colour", "shape"]}
    root = copy_project(tmp_path, {"presets": {"toy": {
        "tables": ["table4"],
        "pretrain": TINY_PRETRAIN,
        # seed 0 is TINY_PRETRAIN's own: the preset itself; the tiny CLIP's own 2 steps are the strongest judge
        "draws": {"seeds": [0, 5], "tables": ["table4"]},
        "judges": {"clip_steps": [3], "table": "table4", "variants": ["full_3b"]},
        "datasets": {"refcocog_train": {**small, "split": "train"}, "reasonseg_test": {**small, "split": "test"}},
        "train_sets": {"refcocog_2k": {"dataset": "refcocog_train", "n": 8}},
        "overrides": {"train": {"max_steps": 2, "save_steps": 1, "prompts_per_step": 2, "num_generations": 2,
                                "per_device_batch_size": 4, "seeds": [0, 1]},
                      "predict": {"max_new_tokens": 24},
                      "tables": {"table4": {"rows": [{"label": "Base policy (zero-shot)", "variant": "zeroshot_3b"},
                                                     {"label": "Format-only", "variant": "format_only_3b"},
                                                     {"label": "RISE (Full)", "variant": "full_3b"}]}}}}}})
    sh("snakemake results/toy/table4.csv all_sweeps --cores 2 --config preset=toy", root,
       timeout=1800)
    models = root / "runs/toy/models"
    for report in ("clip.pt.report.json", "sam2.pt.report.json", "policy.report.json"):
        assert json.loads((models / report).read_text())["heldout"]  # each stage's held-out report
    df = pd.read_csv(root / "results/toy/table4.csv").set_index("label")
    assert list(df.index) == ["Base policy (zero-shot)", "Format-only", "RISE (Full)"]
    assert list(df["seeds"]) == [1, 2, 2]
    assert df["reasonseg_test gIoU std"].iloc[1:].notna().all() and pd.isna(df["reasonseg_test gIoU std"].iloc[0])
    assert df["note"].str.contains("toy world").all() and df["paper reasonseg_test gIoU"].isna().all()
    full = [json.loads((root / f"runs/toy/metrics/full_3b/seed{k}/final/reasonseg_test.json").read_text())["gIoU"]
            for k in range(2)]
    assert df.loc["RISE (Full)", "reasonseg_test gIoU"] == round(sum(full) / 2, 2)
    sweep = pd.read_csv(root / "results/toy/sweeps/full_3b.csv")
    assert sorted(set(sweep["step"])) == [1, 2] and sorted(set(sweep["seed"])) == [0, 1]
    assert (root / "results/toy/sweeps/full_3b.png").exists() and (root / "results/toy/figures/sweeps.png").exists()
    # the claim check runs on the table the workflow wrote (a 2-step table shows nothing: exit 1, not an error)
    claim = subprocess.run([sys.executable, "-m", "rise.cli", "--preset", "toy", "claim", "results/toy/table4.csv"], cwd=root,
                           capture_output=True, text=True)
    assert claim.returncode in (0, 1) and "| RISE (Full) | Format-only | reasonseg_test |" in claim.stdout
    again = sh("snakemake results/toy/table4.csv --cores 2 --config preset=toy", root)
    assert "Nothing to be done" in again.stdout + again.stderr

    # the pretraining draws and the weaker judges through the same rules: the preset's own runs are
    # reused, each copy pretrains what it owns into its own folder
    sh("snakemake all_draws results/toy/judges/table4.csv --cores 2 --config preset=toy", root, timeout=1800)
    draws = pd.read_csv(root / "results/toy/draws/table4.csv")
    assert list(draws["draw"]) == [0, 5] and list(draws["preset"]) == ["toy", "toy-draw5"]
    assert list(draws["comparisons"]) == [2, 2]  # Full against the base and Format-only
    for model in ("clip.pt", "sam2.pt", "policy"):
        assert (root / "runs/toy-draw5/models" / model).exists()
    assert json.loads((root / "runs/toy-draw5/models/policy.report.json").read_text())["training"]
    judges = pd.read_csv(root / "results/toy/judges/table4.csv")
    assert sorted(set(judges["clip steps"])) == [2, 3] and set(judges["row"]) == {"RISE (Full)"}
    assert {"all", "classname", "colour", "shape"} == set(judges["family"])  # overall, then per family
    assert not (root / "runs/toy-judge3/models/policy").exists()  # the judge shares the preset's policy
    assert not (root / "runs/toy-judge3/checkpoints/format_only_3b").exists()  # and its Format-only runs
    assert (root / "results/toy/judges/table4.png").exists()
