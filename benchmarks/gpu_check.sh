#!/usr/bin/env bash
# The one-GPU check as one prepared command (benchmarks/gpu_check.py; its docstring lists the JSON keys).
#
#   bash benchmarks/gpu_check.sh wheels   # here, with the package registry: the packages a bare GPU image
#                                         # lacks, at this venv's versions, as wheels in .whl/ (about 25 MB)
#   bash benchmarks/gpu_check.sh          # on the GPU machine: installs .whl/ into /tmp/site when present,
#                                         # runs the check, writes the JSON to $OUT (or benchmarks/out/)
#   bash benchmarks/gpu_check.sh --cpu    # the same on the CPU with tiny models
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1

if [ "${1:-}" = "wheels" ]; then
  PY=${PYTHON:-.venv/bin/python}
  version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
  rm -rf .whl && mkdir -p .whl
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  # huggingface_hub is not carried: the image's own satisfies transformers, and a newer one needs
  # packages (httpx2) that the image lacks
  pure=()
  for pkg in transformers trl open_clip_torch ftfy wcwidth hydra-core omegaconf datasets dill multiprocess \
             pycocotools jsonschema jsonschema-specifications referencing rpds-py; do
    pure+=("$pkg==$(version "$pkg")")
  done
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${pure[@]}"
  # source-only packages, built here as pure-Python wheels (sam2 without its optional CUDA extension)
  SAM2_BUILD_CUDA=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation -w .whl \
    "antlr4-python3-runtime==$(version antlr4-python3-runtime)" "iopath==$(version iopath)" "sam2==$(version sam2)"
  ls .whl && du -sh .whl
  echo "now: run 'bash benchmarks/gpu_check.sh' on the GPU machine, carrying .whl"
  exit 0
fi

PY=${PYTHON:-python3}
if [ -d .whl ] && ! "$PY" -c "import trl, open_clip, sam2" 2>/dev/null; then
  rm -rf /tmp/site  # a stale copy from an earlier call on the same machine would shadow these versions
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
out=${OUT:-benchmarks/out}
mkdir -p "$out"
if [ "${1:-}" != "--cpu" ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
"$PY" benchmarks/gpu_check.py "$@" --out "$out/gpu_check.json" 2>&1 | tee "$out/gpu_check.log"
