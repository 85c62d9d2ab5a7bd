"""What a user opens in a browser, opened in headless Chromium with networking off: the page of
`dvc plots show` (every chart drawn, a colour per variant, only runs that exist in the legends)."""
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from conftest import copy_dvc_settings, copy_project, sh

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian: apt-get install chromium; "
                                                          ".ci/run installs it)")


def rendered_dom(page: Path, profile: Path) -> str:
    """The page's DOM once its scripts ran, in headless Chromium that cannot reach any host."""
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
         "--virtual-time-budget=20000", "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def charts(dom: str) -> dict[str, str]:
    """Each chart's id -> its HTML (DVC writes one <div id=...> per plot)."""
    parts = re.split(r'<div id="([^"]+)"', dom)
    return dict(zip(parts[1::2], parts[2::2]))


def drawn_lines(chart: str) -> int:
    """Line marks with a path: the lines a chart drew (an empty chart has none)."""
    groups = re.findall(r'<g class="mark-line role-mark[^"]*"[^>]*>(.*?)</g>', chart, re.S)
    return sum(len(re.findall(r'<path[^>]* d="M[^"]+"', g)) for g in groups)


def curve(root: Path, run: str, scale: float, steps: int = 3) -> None:
    path = root / "runs/demo/curves" / f"{run}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"step": range(1, steps + 1), "reward": [scale * s for s in range(1, steps + 1)],
                  "kl": [1e-4 * s for s in range(steps)], "completions/mean_length": [40 + s for s in range(steps)],
                  "rewards/semantic/mean": [0.1 * scale * s for s in range(steps)],
                  "rewards/think_format/mean": [1.0] * steps,
                  "rewards/seg_format/mean": [0.5] * steps}).to_csv(path, index=False)


def test_dvc_plots_page_draws_every_chart_offline_with_a_colour_per_variant(tmp_path):
    root = copy_project(tmp_path / "project")
    sh("git init -q && dvc init -q", root)
    copy_dvc_settings(root)
    curve(root, "full_3b-seed0", 1.0)  # two trained runs of the demo; the other nine not trained yet
    curve(root, "format_only_3b-seed0", 0.5)
    sh("dvc plots show -o plots", root)
    page = root / "plots" / "index.html"
    if "npm was unavailable" in page.read_text():  # scripts/offline_plots.py fell back to the CDN at setup
        pytest.skip("npm was unavailable when make setup wrote .dvc/offline-plots.html: no offline page to test")
    assert "cdn.jsdelivr" not in page.read_text()  # the libraries are in the page
    dom = rendered_dom(page, tmp_path / "profile")
    shown = charts(dom)
    assert len(shown) == 6, list(shown)  # the default preset's curves alone (sweeps: figures of their own)
    for name, chart in shown.items():
        assert drawn_lines(chart) > 0, f"{name} drew nothing"
    reward = shown["reward__total_"]
    labels = set(re.findall(r"<text[^>]*>([^<]+)</text>", reward))
    assert {"full_3b", "format_only_3b", "variant", "seed 0"} <= labels  # a colour per variant, a dash per seed
    assert not any(v in labels for v in ("clsonly_3b", "no_seg_format_3b", "full_7b"))  # never trained: not listed
    assert drawn_lines(reward) == 2
    x_axis = reward[reward.index("X-axis titled 'step'"):reward.index("Y-axis")]
    ticks = re.findall(r"<text[^>]*>([^<]+)</text>", x_axis)
    assert ticks and all(t.isdigit() for t in ticks if t != "step"), ticks  # whole steps only
