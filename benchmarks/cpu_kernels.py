"""Which CPU kernels decide the toy policy's pretrained weights, measured on one machine.

The toy policy's pretraining (rise/toy/policy.py) is run at reduced length in a fresh process per
configuration, each with its own CPU-kernel settings, and the weights' fingerprint
(rise/fingerprints.py) of the result is compared. The knobs that let one machine stand in for others:

  ATEN_CPU_CAPABILITY   torch's own vectorised kernels (default, avx2, avx512)
  ONEDNN_MAX_CPU_ISA    oneDNN's (convolutions, some matmuls)
  MKL_CBWR              MKL's BLAS code path (AVX2, AVX512, COMPATIBLE): Intel's conditional
                        numerical reproducibility
  threads               torch.set_num_threads (reductions and GEMMs split by thread)

    python benchmarks/cpu_kernels.py [--steps 60] [--out benchmarks/out/cpu_kernels.json]

Prints one line per configuration (fingerprint, seconds) and which configurations give the same
weights. About 1 minute a configuration on 2 cores at the default length.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from rise.kernels import PORTABLE_ENV

AVX2 = {k: v for k, v in PORTABLE_ENV.items() if not k.endswith("_THREADS")}  # the three ISA pins
CONFIGS = {
    "native": ({}, 2),
    "native again": ({}, 2),
    "native, 1 thread": ({}, 1),
    "torch avx2 + oneDNN AVX2 (an AVX2 machine)": ({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}, 2),
    "MKL AVX2 alone": ({"MKL_CBWR": "AVX2"}, 2),
    "all three AVX2, 2 threads": (AVX2, 2),
    "portable (cpu_kernels: portable)": (PORTABLE_ENV, 1),
    "portable again": (PORTABLE_ENV, 1),
}

CHILD = """
import sys, json, time, torch
torch.set_num_threads(int(sys.argv[2]))
from rise.toy.policy import build_toy_policy, pretrain_policy, pretrain_vision
from rise.fingerprints import weights_fingerprint
out, steps = sys.argv[1], int(sys.argv[3])
start = time.perf_counter()
build_toy_policy(out, seed=1)
pretrain_vision(out, seed=1, steps=max(steps // 3, 20), cosine_heads=True)
pretrain_policy(out, seed=1, steps=steps, one_object_steps=steps // 2, two_object_steps=steps, think="compact",
                decision_weight=20, attention_weight=1.0, previous_token_weight=1.0, fact_share=0.1,
                attribute_weight=5, box_weight=5, batch_size=16, learning_rate=1e-3)
print(json.dumps({"fingerprint": weights_fingerprint(out), "seconds": round(time.perf_counter() - start, 1),
                  "capability": torch.backends.cpu.get_cpu_capability()}))
"""


def run(name: str, env: dict, threads: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        full = {k: v for k, v in os.environ.items() if k not in PORTABLE_ENV}
        proc = subprocess.run([sys.executable, "-c", CHILD, str(Path(tmp) / "policy"), str(threads), str(steps)],
                              env={**full, **env}, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    return {"config": name, "env": env, "threads": threads, **json.loads(proc.stdout.strip().splitlines()[-1])}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", default="benchmarks/out/cpu_kernels.json")
    parser.add_argument("--only", action="append", help="run these configurations alone")
    args = parser.parse_args(argv)
    rows = []
    for name, (env, threads) in CONFIGS.items():
        if args.only and name not in args.only:
            continue
        rows.append(run(name, env, threads, args.steps))
        r = rows[-1]
        print(f"{r['fingerprint']}  {r['seconds']:6.1f} s  {r['capability']:8s} {name}", flush=True)
    groups: dict[str, list[str]] = {}
    for r in rows:
        groups.setdefault(r["fingerprint"], []).append(r["config"])
    print("same weights:", *(" = ".join(g) for g in groups.values()), sep="\n  ")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    result = {"steps": args.steps, "runs": rows, "groups": list(groups.values())}
    Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
