"""Tables to read: Markdown with paper / ours / difference, and `rise show`."""
from pathlib import Path

from conftest import copy_project, run_rise
from rise.config import load_settings
from rise.contracts import write_json
from rise.report import table_markdown
from rise.tables import build_table

ROOT = Path(__file__).resolve().parent.parent


def project_with_metrics(tmp_path) -> Path:
    """A demo project whose table4 metrics are given numbers (what `rise evaluate` writes)."""
    root = copy_project(tmp_path)
    s = load_settings(root / "params.yaml", root=root)
    for i, (variant, dataset) in enumerate(s.table_needs("table4")):
        write_json(s.layout.metrics(variant, dataset), {"gIoU": 30.0 + i, "cIoU": 20.04 + i, "n_samples": 11,
                                                         "n_failed_parse": i, "protocol": "segzero"})
    build_table(s, "table4")
    return root


def test_markdown_puts_paper_ours_and_difference_side_by_side(tmp_path):
    root = project_with_metrics(tmp_path)
    md = table_markdown(load_settings(root / "params.yaml", root=root), "table4")
    lines = md.splitlines()
    assert lines[0] == "### table4: Reward ablation on ReasonSeg test (preset `demo`)"
    assert lines[2] == ("|  | reasonseg_test gIoU: paper | ours | Δ | reasonseg_test cIoU: paper | ours | Δ |")
    assert "| Format-only | 28.6 | 30.0 | +1.4 | 21.1 | 20.0 | -1.1 |" in lines
    assert "| RISE (Full) | 52.9 | 34.0 | -18.9 | 45.1 | 24.0 | -21.1 |" in lines
    assert "reasonseg_test: 11 samples, 10 failed parses in all rows" in md
    assert "numbers are not comparable to the paper" in md  # the demo says so


def test_rise_show_prints_and_writes_the_table(tmp_path):
    root = project_with_metrics(tmp_path)
    shown = run_rise("show", "--name", "table4", cwd=root)
    assert "| Semantic-only | 51.5 | 31.0 | -20.5 |" in shown.stdout
    run_rise("show", "--write", "--name", "table4", cwd=root)
    assert (root / "results/demo/table4.md").read_text() == shown.stdout.rstrip("\n") + "\n"
    missing = run_rise("show", "--name", "table1", cwd=root, check=False)
    assert missing.returncode == 2 and "table1.csv" in missing.stderr
