#!/usr/bin/env bash
# Checks, without installing anything, what a GPU node's `pip install` would do:
#   1. the `deepspeed` extra resolves beside the pinned stack (it must);
#   2. vLLM does not (it pins another torch and transformers), so the HF generation path stays the default.
# Usage: bash scripts/check_gpu_extras.sh   (uses .venv; needs the package registry)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
pip_dry() { "$PY" -m pip --disable-pip-version-check install --dry-run --no-build-isolation "$@" 2>&1; }

out=$(pip_dry -e ".[deepspeed]")
if ! grep -q "^Would install.*deepspeed-0.19.8" <<<"$out"; then
  echo "FAIL: the deepspeed extra does not resolve beside the pinned stack:"; echo "$out" | tail -15; exit 1
fi
echo "ok: .[deepspeed] resolves ($(grep '^Would install' <<<"$out"))"

torch_v=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])")
tf_v=$("$PY" -c "import transformers; print(transformers.__version__)")
out=$(pip_dry "vllm==0.33.0" "torch==$torch_v" "transformers==$tf_v")
if grep -q "ResolutionImpossible" <<<"$out"; then
  echo "as documented: vllm 0.33.0 cannot be installed beside torch $torch_v and transformers $tf_v:"
  grep -E "depends on|requested" <<<"$out" | sed 's/^ */  /'
  exit 0
fi
echo "NOTE: vllm 0.33.0 now resolves beside torch $torch_v / transformers $tf_v: update README and pyproject"
exit 3
