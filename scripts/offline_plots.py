"""Writes .dvc/offline-plots.html, the page `dvc plots show` fills (`plots.html_template` in
.dvc/config), with Vega, Vega-Lite and Vega-Embed inlined so that the charts draw without network
access (DVC's own page loads them from a CDN). The three are the versions DVC's page names, taken
from the npm registry with `npm pack`; without npm the page keeps DVC's CDN scripts and says so.
Run by scripts/setup_env.sh; `python scripts/offline_plots.py` again is harmless."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / ".dvc" / "offline-plots.html"
PACKAGES = {"vega": "5.20.2", "vega-lite": "5.2.0", "vega-embed": "6.18.2"}  # dvc_render.vega's SCRIPTS
CDN = "\n".join(f'<script src="https://cdn.jsdelivr.net/npm/{name}@{version}"></script>'
                for name, version in PACKAGES.items())
TEMPLATE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>RISE: DVC plots</title>
{{scripts}}
<script>
// charts as SVG (their text can be read, searched and tested), without the export menu
window.vegaEmbed = ((embed) => (el, spec, opts) => embed(el, spec, Object.assign({{renderer: "svg", actions: false}}, opts)))(window.vegaEmbed);
</script>
<style>body {{ font-family: sans-serif; }} table {{ border-spacing: 15px; }}</style>
</head>
<body>
<!-- {origin} -->
{{plot_divs}}
</body>
</html>
"""


def bundled_scripts() -> str | None:
    """The three libraries as inline <script> elements, or None when npm cannot fetch them."""
    if shutil.which("npm") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        specs = [f"{name}@{version}" for name, version in PACKAGES.items()]
        proc = subprocess.run(["npm", "pack", "--silent", *specs], cwd=tmp, capture_output=True, text=True,
                              timeout=300)
        if proc.returncode != 0:
            print(f"[offline plots] npm pack failed: {proc.stderr.strip()[-300:]}", file=sys.stderr)
            return None
        scripts = []
        for name, version in PACKAGES.items():
            with tarfile.open(Path(tmp) / f"{name}-{version}.tgz") as archive:
                code = archive.extractfile(f"package/build/{name}.min.js").read().decode()
            code = code.replace("</script", "<\\/script")  # a closing tag inside the code would end the element
            scripts.append(f"<script>/* {name} {version} */\n{code}\n</script>")
        return "\n".join(scripts)


def main() -> int:
    scripts = bundled_scripts()
    if scripts is None:
        print("[offline plots] npm unavailable: `dvc plots show` will load Vega from the CDN", file=sys.stderr)
        origin, scripts = "Vega from the CDN (npm was unavailable when this page was written)", CDN
    else:
        origin = "Vega, Vega-Lite and Vega-Embed inlined: the page draws offline"
    # the scripts go in as they are; DVC fills {plot_divs} (its own {scripts} is left out: the CDN)
    page = TEMPLATE.format(origin=origin).replace("{scripts}", scripts)
    PAGE.write_text(page)
    print(f"[offline plots] {PAGE.relative_to(ROOT)}: {origin}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
