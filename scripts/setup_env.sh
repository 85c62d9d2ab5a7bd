#!/usr/bin/env bash
# Builds .venv from the project's own files. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${RISE_VENV:-.venv}
PY=${PYTHON:-python3.11}
stamp="$VENV/.rise-installed"
want=$(cat pyproject.toml scripts/setup_env.sh scripts/offline_plots.py | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "[setup] $VENV is up to date"; exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# pip's notes about this machine's local package folders are noise to a user: drop them
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@" 2>&1 | sed '/is ignored: it is neither a file nor a directory/d'; }
echo "[setup] installing torch 2.14.1 / torchvision 0.29.1"
pip install -q "torch==2.14.1" "torchvision==0.29.1"
# sam2 is source-only: build it against the installed torch, without its CUDA extension,
# so pip does not fetch another torch into an isolated build environment.
if ! "$VENV/bin/python" -c "import importlib.metadata as m; m.version('sam2')" 2>/dev/null; then
  echo "[setup] building sam2 1.1.0 (no CUDA extension)"
  pip install -q setuptools wheel
  SAM2_BUILD_CUDA=0 SAM2_BUILD_ALLOW_ERRORS=1 pip install -q --no-build-isolation "sam2==1.1.0"
fi
echo "[setup] installing the rise package and its stack"
pip install -q -e ".[dev]"
"$VENV/bin/python" scripts/offline_plots.py  # the page `dvc plots show` fills, drawing offline
echo "$want" > "$stamp"
echo "[setup] done: $VENV"
