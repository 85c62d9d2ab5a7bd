"""Tables to read: Markdown with paper / ours / difference, and `rise show`."""
from pathlib import Path

from conftest import copy_project, run_rise
from rise.config import load_settings
from rise.contracts import write_json
from rise.plan import table_needs
from rise.report import table_markdown
from rise.tables import build_table

ROOT = Path(__file__).resolve().parent.parent


def project_with_metrics(tmp_path) -> Path:
    """A demo project whose table4 metrics are given numbers (what `rise evaluate` writes)."""
    root = copy_project(tmp_path)
    s = load_settings(root / "params.yaml", root=root)
    for i, n in enumerate(table_needs(s, "table4")):
        write_json(s.layout.metrics(n.variant, n.dataset, n.seed, n.checkpoint),
                   {"gIoU": 30.0 + i, "cIoU": 20.04 + i, "n_samples": 11, "n_failed_parse": i, "protocol": "segzero"})
    build_table(s, "table4")
    return root


def test_markdown_puts_paper_ours_and_difference_side_by_side(tmp_path):
    root = project_with_metrics(tmp_path)
    md = table_markdown(load_settings(root / "params.yaml", root=root), "table4")
    lines = md.splitlines()
    assert lines[0] == "### table4: Reward ablation on ReasonSeg test (preset `demo`)"
    assert lines[2] == ("|  | reasonseg_test gIoU: paper | ours | Δ | reasonseg_test cIoU: paper | ours | Δ | seeds "
                        "| checkpoint |")
    assert "| Format-only | 28.6 | 30.0 | +1.4 | 21.1 | 20.0 | -1.1 | 1 | final |" in lines
    assert "| RISE (Full) | 52.9 | 34.0 | -18.9 | 45.1 | 24.0 | -21.1 | 1 | final |" in lines
    assert "reasonseg_test: 11 samples, failed parses per row (mean over its seeds): 0, 1, 2, 3, 4" in md
    assert "numbers are not comparable to the paper" in md  # the demo says so


def test_rise_show_prints_and_writes_the_table(tmp_path):
    root = project_with_metrics(tmp_path)
    shown = run_rise("show", "--name", "table4", cwd=root)
    assert "| Semantic-only | 51.5 | 31.0 | -20.5 |" in shown.stdout
    assert max(map(len, shown.stdout.splitlines())) <= 100  # a terminal's width: two tables, not one line of 103
    assert "| Semantic-only | 44.0 | 21.0 | -23.0 | 1 | final |" in shown.stdout  # the second holds cIoU
    assert "Every trained row is the same" in shown.stdout  # the demo says why
    run_rise("show", "--write", "--name", "table4", cwd=root)
    assert (root / "results/demo/table4.md").read_text() == shown.stdout.rstrip("\n") + "\n"
    missing = run_rise("show", "--name", "table1", cwd=root, check=False)
    assert missing.returncode == 2 and "table1.csv" in missing.stderr


def test_several_seeds_give_mean_and_std_and_best_checkpoints_are_named(tmp_path):
    """Three seeds: the mean, the sample standard deviation and the seed count per row; with
    `checkpoint: best on reasonseg_val` each seed reads its checkpoint with the best validation gIoU."""
    import pandas as pd

    root = copy_project(tmp_path, {"train": {"seeds": [0, 1, 2]},
                                   "tables": {"table4": {"checkpoint": "best on reasonseg_val"}}})
    s = load_settings(root / "params.yaml", root=root)
    assert s.checkpoints("full_3b") == ["step1", "final"]
    val = {0: {"step1": 40.0, "final": 30.0}, 1: {"step1": 10.0, "final": 20.0}, 2: {"step1": 5.0, "final": 50.0}}
    for n in table_needs(s, "table4"):
        test_giou = {"step1": 100.0, "final": 0.0}[n.checkpoint] + n.seed  # which checkpoint was read shows
        giou = val[n.seed][n.checkpoint] if n.dataset == "reasonseg_val" else test_giou
        write_json(s.layout.metrics(n.variant, n.dataset, n.seed, n.checkpoint),
                   {"gIoU": giou, "cIoU": giou / 2, "n_samples": 7, "n_failed_parse": n.seed, "protocol": "segzero"})
    df = pd.read_csv(build_table(s, "table4")).set_index("label")
    full = df.loc["RISE (Full)"]
    # seed 0 reads step1 (100 + 0), seeds 1 and 2 read final (0 + 1, 0 + 2)
    assert full["reasonseg_test gIoU"] == 34.33 and full["seeds"] == 3
    assert full["reasonseg_test gIoU std"] == round(pd.Series([100.0, 1.0, 2.0]).std(), 2)
    assert full["checkpoint"] == "best on reasonseg_val: step1, final, final"
    assert full["reasonseg_test failed parses"] == 1.0  # the mean over seeds
    md = table_markdown(s, "table4")
    assert f"| 34.3 ± {full['reasonseg_test gIoU std']:.1f} |" in md and "| 3 | best on reasonseg_val: step1" in md


def test_a_table_by_family_has_a_column_per_family_marked_trained_or_unseen(tmp_path):
    """`by_family`: gIoU/cIoU per instruction family beside the overall columns (mean and std over
    seeds), the families GRPO trained on marked apart from those it never saw, and each row's training
    set named."""
    import json

    import pandas as pd

    root = copy_project(tmp_path, {"train": {"seeds": [0, 1]}, "tables": {"table4": {"by_family": True}},
                                   "presets": {"demo": {"datasets": {"refcocog_train": {"kinds": ["attribute", "spatial"]}}}}})
    s = load_settings(root / "params.yaml", root=root)
    for n in table_needs(s, "table4"):
        write_json(s.layout.metrics(n.variant, n.dataset, n.seed, n.checkpoint),
                   {"gIoU": 30.0, "cIoU": 20.0, "n_samples": 8, "n_failed_parse": 0, "protocol": "segzero"})
        write_json(s.layout.family_metrics(n.variant, n.dataset, n.seed, n.checkpoint),
                   {"comparative": {"gIoU": 10.0 + n.seed, "cIoU": 5.0, "n_samples": 3, "n_failed_parse": 0},
                    "spatial": {"gIoU": 40.0 + 2 * n.seed, "cIoU": 30.0, "n_samples": 5, "n_failed_parse": 0}})
    df = pd.read_csv(build_table(s, "table4")).set_index("label")
    full = df.loc["RISE (Full)"]
    assert full["reasonseg_test spatial gIoU"] == 41.0 and full["reasonseg_test comparative gIoU"] == 10.5
    assert full["reasonseg_test spatial gIoU std"] == round(pd.Series([40.0, 42.0]).std(), 2)
    assert full["reasonseg_test comparative cIoU"] == 5.0
    assert full["GRPO trained on"] == "refcocog_train: attribute, spatial"
    # the spec's order of families (spatial, comparative), not the file's
    assert list(df.columns).index("reasonseg_test spatial gIoU") < list(df.columns).index("reasonseg_test comparative gIoU")
    metrics = json.loads((root / "results/demo/table4.json").read_text())
    assert metrics["full_3b"]["reasonseg_test"]["families"]["spatial"] == {"gIoU": 41.0, "gIoU std": 1.41,
                                                                          "cIoU": 30.0, "cIoU std": 0.0}
    md = table_markdown(s, "table4")
    assert "reasonseg_test spatial (trained) gIoU" in md and "reasonseg_test comparative (unseen) gIoU" in md
    assert "| RISE (Full) | 41.0 ± 1.4 |" in md
    assert "refcocog_train: attribute, spatial" in md
    shown = table_markdown(s, "table4", width=100)
    assert max(len(line) for line in shown.splitlines() if line.startswith("|")) <= 100
