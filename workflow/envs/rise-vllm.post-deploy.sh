#!/usr/bin/env bash
# Run by Snakemake inside the new rise-vllm.yaml environment, once, after it is created. Both packages
# compile against the torch already installed, so pip must not build them in an isolated
# environment (which would fetch another torch): sam2 without its optional CUDA extension, as
# scripts/setup_env.sh does; DeepSpeed (the ZeRO configs of workflow/accelerate/) with its ops
# compiled just in time on the GPU nodes.
set -euo pipefail
SAM2_BUILD_CUDA=0 SAM2_BUILD_ALLOW_ERRORS=1 python -m pip install --no-build-isolation "sam2==1.1.0"
DS_BUILD_OPS=0 python -m pip install --no-build-isolation "deepspeed==0.19.8"
python -c "import torch, sam2, deepspeed, trl, open_clip, vllm; print('rise-vllm environment ready: torch', torch.__version__, 'vllm', vllm.__version__)"
