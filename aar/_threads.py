"""One BLAS thread per process, set before numpy loads its BLAS.

Why: aar's numpy work is many small, memory-bound products (logistic heads fitted by L-BFGS on a few
thousand rows, bootstrap means, scoring), and its parallelism is at the process level (extraction
workers, official-run units, researchers). OpenBLAS's default of one thread per core made those
products *slower* on two shared cores: its threads spin and wait on each other whenever another
process holds a core. Measured on a 2-core machine at load ~2 (bench/cold_start.py's set-up path):
the home task's C selection 32 s -> 1.7 s, the built-in baselines 17.1 s -> 5.1 s, the same numbers
to 12 digits. The sandboxes of official runs already ran with one thread (``aar.referee.units``).

A user's own setting wins: only unset variables are set. If numpy was imported before aar, the
environment is too late for its BLAS, so the limit is applied through threadpoolctl instead.
"""

from __future__ import annotations

import os
import sys

# numpy's wheels carry OpenBLAS. Not MKL: torch ships its own and sizes it by torch.set_num_threads
# (the LoRA tier and the torch encoders use both cores on purpose).
BLAS_ENV = ("OPENBLAS_NUM_THREADS",)


def limit_blas_threads() -> None:
    user_set = any(os.environ.get(name) for name in BLAS_ENV)
    if user_set:
        return
    for name in BLAS_ENV:
        os.environ[name] = "1"
    if "numpy" in sys.modules:  # its BLAS already read the environment
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=1, user_api="blas")
        except Exception:  # noqa: BLE001 (a missing or failing threadpoolctl costs speed, never a result)
            pass
