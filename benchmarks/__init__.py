"""The asv suites of fffcpu (docs/benchmarks.md, "asv"), and the paired A/B tools ab_kernels, ab_layers.

Importing this package reads the thread count the suites run at, ``FFFCPU_ASV_THREADS`` (default 1).
Multi-threaded timings on a shared machine swung by up to 80x from run to run (the dense baseline's
BLAS and the kernels' Numba threads competing with whatever else ran), so the recorded history
would show noise as regressions; one thread is slower but repeatable. Under asv (which imports
``asv_runner`` before this package) the count also goes into the environment variables that Numba,
OpenBLAS, MKL, BLIS and OpenMP read once, when they are loaded. For Numba that works: it keeps the
pool at that size without starting it in the process asv forks every benchmark from (with GNU
OpenMP a child forked after the pool started aborts). For BLAS it mostly does not: asv-runner
imports pympler, which imports NumPy, before the suites (checked with asv 0.6.6), so BLAS is
limited by threadpoolctl in :func:`benchmarks.common.fix_threads`, which every setup calls, and
where threadpoolctl is missing the versions say so (:func:`benchmarks.common.suite`). Outside asv
(the A/B tools' ``--threads``, the tests) the environment is left alone unless the variable is set.
"""
import os
import sys

THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def _asv_threads():
    text = os.environ.get("FFFCPU_ASV_THREADS", "1")
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"FFFCPU_ASV_THREADS must be a positive integer, got {text!r}")
    return n


#: the threads every suite runs at (Numba and BLAS); part of every benchmark's asv version
THREADS = _asv_threads()

if "asv_runner" in sys.modules or "FFFCPU_ASV_THREADS" in os.environ:
    for _name in THREAD_VARIABLES:
        os.environ[_name] = str(THREADS)
