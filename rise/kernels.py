"""Which CPU kernels torch runs: the machine's own (native), or the same on every x86 CPU (portable).

torch, oneDNN and MKL each pick their kernels by the CPU they find (AVX-512 here, AVX2 on an older
machine), and torch splits reductions and matrix products by thread; each choice rounds
differently, and the toy policy's pretraining is chaotic enough that the difference decides its
base (docs/toy-log.md "Sixteenth round"; benchmarks/cpu_kernels.py measures it). A preset with
`cpu_kernels: portable` pins all of them before torch starts: torch's vectorised kernels to AVX2
(`ATEN_CPU_CAPABILITY`), oneDNN's to AVX2 (`ONEDNN_MAX_CPU_ISA`), MKL to its AVX2 code path with
conditional numerical reproducibility (`MKL_CBWR`), and one thread (`OMP_NUM_THREADS`,
`MKL_NUM_THREADS`), so any x86 CPU with AVX2 computes the same bits. No torch import here: the
pins must be set before torch is imported.
"""
from __future__ import annotations

import logging
import os
import sys

PORTABLE_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2",
                "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
CHOICES = ("native", "portable")

log = logging.getLogger(__name__)


def pin_cpu_kernels(choice: str) -> dict:
    """Sets this process's (and its children's) kernel choices; returns what was set."""
    if choice == "native":
        return {}
    if choice != "portable":
        raise ValueError(f"cpu_kernels: '{choice}' is not one of {CHOICES}")
    if "torch" in sys.modules:  # torch read some of them when it started: only children are pinned
        log.warning("cpu_kernels: portable asked after torch was imported; this process keeps its kernels")
    os.environ.update(PORTABLE_ENV)
    return dict(PORTABLE_ENV)
