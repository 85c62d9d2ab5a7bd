#!/usr/bin/env bash
# Checks, without installing anything, what a GPU node's `pip install` would do:
#   1. the `deepspeed` extra resolves beside the pinned stack (it must);
#   2. vLLM does not (it pins another torch and caps transformers), so the HF generation path stays
#      the default and the rules that generate with vLLM get an environment of their own;
#   3. that environment's pip list (workflow/envs/rise-vllm.yaml) resolves, with TRL's vLLM extra.
# Usage: bash scripts/check_gpu_extras.sh   (uses .venv; needs the package registry; about 2 minutes)
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
vllm_pin=$("$PY" -c "import yaml; e = yaml.safe_load(open('workflow/envs/rise-vllm.yaml'))
print(next(p for d in e['dependencies'] if isinstance(d, dict) for p in d['pip'] if p.startswith('vllm==')))")
out=$(pip_dry "$vllm_pin" "torch==$torch_v" "transformers==$tf_v")
if ! grep -q "ResolutionImpossible" <<<"$out"; then
  echo "NOTE: $vllm_pin now resolves beside torch $torch_v / transformers $tf_v: one environment may do"
  exit 3
fi
echo "as documented: $vllm_pin cannot be installed beside torch $torch_v and transformers $tf_v:"
grep -E "depends on|requested" <<<"$out" | sed 's/^ */  /'

mapfile -t pins < <("$PY" -c "import yaml; e = yaml.safe_load(open('workflow/envs/rise-vllm.yaml'))
print('\n'.join(p for d in e['dependencies'] if isinstance(d, dict) for p in d['pip']))")
out=$(pip_dry --ignore-installed "${pins[@]}")
if ! grep -q "^Would install.*${vllm_pin/==/-}" <<<"$out"; then
  echo "FAIL: workflow/envs/rise-vllm.yaml does not resolve:"; echo "$out" | tail -15; exit 1
fi
echo "ok: workflow/envs/rise-vllm.yaml resolves: $(grep '^Would install' <<<"$out" | tr ' ' '\n' |
  grep -E '^(vllm|torch|torchvision|transformers|trl|accelerate|open_clip_torch)-' | tr '\n' ' ')"
