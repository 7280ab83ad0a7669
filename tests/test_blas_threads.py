"""aar runs numpy's BLAS on one thread per process (aar._threads says why), unless the user said
otherwise; also when numpy was imported before aar."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

PROBE = (
    "import {first}, {second}, scipy.linalg\n"
    "from threadpoolctl import threadpool_info\n"
    "print(sorted({{i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'}}))\n"
)


def blas_threads(first: str, second: str, **env: str) -> list[int]:
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(first=first, second=second)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return ast.literal_eval(out.stdout.strip())


@pytest.mark.parametrize("order", [("aar", "numpy"), ("numpy", "aar")])
def test_one_blas_thread_whatever_the_import_order(order):
    assert blas_threads(*order) == [1]


def test_a_users_setting_wins():
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: OpenBLAS starts one thread whatever is asked")
    assert blas_threads("aar", "numpy", OPENBLAS_NUM_THREADS="2") == [2]
