"""`rise claim`: the toy claim's check of a table (rise/toy/claim.py)."""

import pytest



def _claim_table(path, rows):
    import pandas as pd

    pd.DataFrame([{"label": label, "variant": variant, "t gIoU": g, "t gIoU std": s, "seeds": n}
                  for label, variant, g, s, n in rows]).to_csv(path, index=False)
    return path


def test_claim_reads_the_larger_standard_deviation_of_the_two_rows(tmp_path):
    from rise.config import PROJECT_ROOT, load_settings
    from rise.toy.claim import check_claim

    variants = load_settings(PROJECT_ROOT / "params.yaml", preset="toy").variants
    table = _claim_table(tmp_path / "t.csv", [("Base", "zeroshot_3b", 38.0, None, 1),
                                              ("Format-only", "format_only_3b", 42.0, 3.0, 3),
                                              ("Full", "full_3b", 49.0, 1.0, 3)])
    by_ref = {r["against"]: r for r in check_claim(table, variants)}
    assert set(by_ref) == {"Base", "Format-only"}  # Format-only itself is a reference, not an R_sem row
    assert by_ref["Base"]["std"] == 1.0 and by_ref["Base"]["met"]  # 11 over Full's own std
    fo = by_ref["Format-only"]
    assert fo["gap"] == 7.0 and fo["std"] == 3.0 and fo["gap_in_std"] == pytest.approx(2.33, abs=0.01)
    assert fo["met"] and not check_claim(table, variants, margin=2.5)[1]["met"]
    assert fo["gap_in_pooled_std"] == pytest.approx(7 / (5 ** 0.5), abs=0.01)


def test_claim_entry_fails_when_a_row_misses_the_bar_and_names_an_unknown_variant(tmp_path):
    import subprocess
    import sys

    from rise.config import PROJECT_ROOT

    def run(table):
        return subprocess.run([sys.executable, "-m", "rise.cli", "--params", str(PROJECT_ROOT / "params.yaml"), "--preset", "toy",
                               "claim", str(table)], capture_output=True, text=True)

    close = _claim_table(tmp_path / "close.csv", [("Format-only", "format_only_3b", 42.0, 3.8, 3),
                                                 ("Full", "full_3b", 48.6, 0.9, 3)])
    proc = run(close)
    assert proc.returncode == 1 and "| Full | Format-only | t | +6.60 | 3.80 | 1.74 |" in proc.stdout
    unknown = _claim_table(tmp_path / "unknown.csv", [("X", "nosuch_3b", 1.0, 0.1, 3)])
    proc = run(unknown)
    assert proc.returncode == 2 and "nosuch_3b" in proc.stderr and "params.yaml" in proc.stderr
