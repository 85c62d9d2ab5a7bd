#!/usr/bin/env bash
# One prepared GPU check: 3 GRPO steps of Qwen2.5-VL-3B (published config, random weights) at the
# paper's settings (8 generations, 840x840 images), without and then with vLLM when installed.
# Usage: bash benchmarks/gpu_train.sh            (GPU machine)
#        bash benchmarks/gpu_train.sh --smoke    (CPU smoke mode, used by the tests)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export HF_HUB_OFFLINE=1
if [ "${1:-}" = "--smoke" ]; then
  exec "$PY" benchmarks/gpu_train.py --smoke
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
"$PY" benchmarks/gpu_train.py --size 3b --steps 3
if "$PY" -c "import vllm" 2>/dev/null; then
  "$PY" benchmarks/gpu_train.py --size 3b --steps 3 --vllm
else
  echo "vLLM not installed: skipped the vLLM run"
fi
