"""`rise claim`: the toy claim's check of a table (rise/toy/claim.py)."""

import numpy as np
import pandas as pd
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


def _write_scores(settings, variant, dataset, per_seed):
    """samples.csv of each seed of a variant: per_seed[k] = list of (intersection, union, kind)."""
    from rise.contracts import atomic_write_text

    for seed, samples in zip(settings.seeds(variant), per_seed):
        rows = "".join(f"s{i},{inter},{union},{inter / union},True,,,,{kind}\n"
                       for i, (inter, union, kind) in enumerate(samples))
        atomic_write_text(settings.layout.sample_scores(variant, dataset, seed),
                          "sample_id,intersection,union,iou,parse_ok,parse_error,box,think_chars,kind\n" + rows)


def test_the_bootstrap_interval_is_paired_over_samples_and_reads_each_rows_seeds(tmp_path):
    from rise.config import PROJECT_ROOT, load_settings
    from rise.toy.claim import bootstrap_gap

    s = load_settings(PROJECT_ROOT / "params.yaml", preset="toy", root=tmp_path)
    assert s.seeds("full_3b") == [0, 1, 2] and s.seeds("zeroshot_3b") == [0]
    rng = np.random.default_rng(0)
    hard = rng.integers(0, 2, 60)  # the same samples are hard for every row: pairing removes that spread
    base = [[(int(3 + 5 * h), 10, "classname" if i % 2 else "colour") for i, h in enumerate(hard)]]
    better = [[(min(10, int(3 + 5 * h) + 2 + (seed == 1)), 10, "classname" if i % 2 else "colour")
               for i, h in enumerate(hard)] for seed in range(3)]
    _write_scores(s, "zeroshot_3b", "reasonseg_test", base)
    _write_scores(s, "full_3b", "reasonseg_test", better)
    _write_scores(s, "format_only_3b", "reasonseg_test", [base[0]] * 3)
    up = bootstrap_gap(s, "full_3b", "zeroshot_3b", "reasonseg_test", resamples=500)
    per_seed = [np.mean([min(10, int(3 + 5 * h) + 2 + (seed == 1)) / 10 for h in hard]) for seed in range(3)]
    assert up["gap"] == round(100 * (np.mean(per_seed) - np.mean([(3 + 5 * h) / 10 for h in hard])), 2)
    assert 0 < up["low"] <= up["gap"] <= up["high"] and up["p_not_above"] == 0 and up["seeds"] == [3, 1]
    same = bootstrap_gap(s, "format_only_3b", "zeroshot_3b", "reasonseg_test", resamples=500)
    assert same["gap"] == 0 and same["low"] == same["high"] == 0 and same["p_not_above"] == 1
    colour = bootstrap_gap(s, "full_3b", "zeroshot_3b", "reasonseg_test", family="colour", resamples=200)
    assert colour["samples"] == 30
    ciou = bootstrap_gap(s, "full_3b", "zeroshot_3b", "reasonseg_test", "cIoU", resamples=200)
    assert ciou["low"] > 0


def test_claim_entry_prints_intervals_and_per_family_comparisons(tmp_path):
    import subprocess
    import sys

    from conftest import copy_project
    from rise.config import load_settings

    root = copy_project(tmp_path / "p")
    s = load_settings(root / "params.yaml", preset="toy", root=root)
    table = root / "results/toy/t.csv"
    table.parent.mkdir(parents=True)
    pd.DataFrame([{"label": "Base", "variant": "zeroshot_3b", "reasonseg_test gIoU": 40.0, "reasonseg_test gIoU std": None,
                   "reasonseg_test colour gIoU": 50.0, "reasonseg_test colour gIoU std": None, "seeds": 1},
                  {"label": "Full", "variant": "full_3b", "reasonseg_test gIoU": 49.0, "reasonseg_test gIoU std": 1.0,
                   "reasonseg_test colour gIoU": 51.0, "reasonseg_test colour gIoU std": 2.0, "seeds": 3}]).to_csv(table, index=False)
    _write_scores(s, "zeroshot_3b", "reasonseg_test", [[(4, 10, "colour"), (5, 10, "classname")] * 10])
    _write_scores(s, "full_3b", "reasonseg_test", [[(6, 10, "colour"), (7, 10, "classname")] * 10] * 3)
    proc = subprocess.run([sys.executable, "-m", "rise.cli", "--preset", "toy", "claim", str(table), "--resamples", "100"],
                          cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| Full | Base | reasonseg_test | +9.00 | 1.00 | 9.0 |" in proc.stdout
    assert "1 of 1 comparisons meet the bar" in proc.stdout and "1 of 1 have a 95% interval above 0" in proc.stdout
    assert "Per instruction family" in proc.stdout and "| Full | Base | reasonseg_test colour | +1.00 |" in proc.stdout
