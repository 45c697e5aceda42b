"""Seeded builders shared by the asv suites.

Every suite builds its data once in ``setup()`` from :data:`SEED` and calls the code under test once
there (``# numba compilation``), so no timed body compiles. The sizes are the standard configurations
of SPEC §5 with moderate batches; ``FFFCPU_BENCH_TINY=1`` shrinks them (tests/test_bench.py uses it to
run every benchmark once in seconds). Every suite class goes through :func:`suite`, whose asv
``version`` names the thread count and tiny mode, so asv never compares results taken at different
thread counts, or tiny results with full-size ones.

This module is self-contained on purpose: asv runs the current suites against the fffcpu of older
commits, so it imports only the public API (``fffcpu.FFF``, ``fffcpu.neuron_tree``, ``fffcpu.io``,
``fffcpu.training``) and skips (``NotImplementedError``) where a commit does not have it yet.
"""
import hashlib
import importlib
import importlib.util
import inspect
import math
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from . import THREADS

SEED = 20240601
TINY = os.environ.get("FFFCPU_BENCH_TINY") == "1"

if TINY:
    LEAF_INFER = dict(input_width=24, leaf_width=4, output_width=16, depth=3)
    TREE_INFER = dict(input_width=24, output_width=16, depth=3, parallel_size=1)
    LEAF_TRAIN = dict(input_width=24, leaf_width=4, output_width=10, depth=2)
    TREE_TRAIN = dict(input_width=24, output_width=10, depth=2, parallel_size=1)
else:
    #: leaf-768-d8-l16: width 4096, relu
    LEAF_INFER = dict(input_width=768, leaf_width=16, output_width=768, depth=8)
    #: ufb-768-d11: 4095 neurons, gelu
    TREE_INFER = dict(input_width=768, output_width=768, depth=11, parallel_size=1)
    #: leaf-784-d6-l8: width 512, 10 classes
    LEAF_TRAIN = dict(input_width=784, leaf_width=8, output_width=10, depth=6)
    #: a neuron tree of about the same training width (511 neurons)
    TREE_TRAIN = dict(input_width=784, output_width=10, depth=8, parallel_size=1)

TRAIN_BATCH = 256
HARDENING = 0.1
LR = 0.01


def suite(cls):
    """Class decorator: give an asv suite a ``version`` naming its code, ``THREADS`` and tiny mode.

    asv compares (``compare``, ``continuous``) and graphs (``publish``) only results whose benchmark
    version is the same, and its default version hashes the benchmark's source only: results taken
    at 1 and at 16 threads, or at tiny and full sizes, were compared as one series (ratios of 200 to
    1200 between tiny and full-size runs). Here the version is a hash of the class's source (an edit
    still starts a new series, as with asv's default) followed by ``threads=N`` and, in tiny mode,
    ``tiny``. Without threadpoolctl BLAS runs at its own default (the environment variables come too
    late under asv, see ``benchmarks/__init__.py``), so the version then ends in ``blas=default``.
    """
    code = hashlib.sha256(inspect.getsource(cls).encode("utf-8")).hexdigest()[:16]
    blas = "" if importlib.util.find_spec("threadpoolctl") else " blas=default"
    cls.version = f"{code} threads={THREADS}{blas}" + (" tiny" if TINY else "")
    return cls


_BLAS_LIMITS = []  # threadpoolctl's limiter, once this process has made one


def fix_threads():
    """Run Numba's kernels and BLAS at ``THREADS`` threads in this process (call it first in setup).

    The package's import set the environment variables (see ``benchmarks/__init__.py``), which act
    only on libraries loaded after it; this also covers a process that loaded them before (the
    tests, ``asv run --python=same`` in an interpreter that imported NumPy early): Numba through
    ``numba.set_num_threads`` (per calling thread: asv runs setup and the body in the same one),
    BLAS through threadpoolctl when it is installed, as ``fffcpu bench`` does. Cheap after the first
    call: asv re-runs setup before every timed sample.
    """
    import numba
    if THREADS > numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"FFFCPU_ASV_THREADS={THREADS}, but Numba started with "
                         f"{numba.config.NUMBA_NUM_THREADS} threads (NUMBA_NUM_THREADS)")
    numba.set_num_threads(THREADS)
    if not _BLAS_LIMITS:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            _BLAS_LIMITS.append(None)  # the environment variables alone
        else:
            _BLAS_LIMITS.append(threadpool_limits(limits=THREADS, user_api="blas"))


def warm(fn, calls=300, seconds=0.05):
    """Call ``fn`` up to ``calls`` times or for about ``seconds``, whichever ends first, untimed.

    A cheap call runs cold for its first calls after setup (25, 8, 4.8, 4.2 us for one ufb-768-d11
    sample), and ``asv run --quick`` times one call per benchmark: a few hundred calls bring the
    caches and branch predictors to their steady state. An expensive call stops after one or two.
    """
    end = time.perf_counter() + seconds
    for _ in range(calls):
        fn()
        if time.perf_counter() > end:
            break


def require(module):
    """Import ``module`` or skip the benchmark (asv skips when setup raises NotImplementedError)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise NotImplementedError(f"{module} is not available in this commit: {e}") from None


def warm_kernel_cache(dtypes=("float32",)):
    """Compile the kernels in a child process, so that this one only loads them from Numba's disk
    cache: a peakmem_ benchmark measures the whole process, and compiling (after an install or an
    edit of the kernels) takes LLVM hundreds of MB that no call needs."""
    require("fffcpu._kernel_api")
    code = f"import fffcpu; fffcpu.warmup({tuple(dtypes)!r})"
    subprocess.run([sys.executable, "-c", code], check=True)


def reset_peak_memory():
    """Make a ``peakmem_`` benchmark measure its body, not its setup (call it last in setup).

    asv reports the process's peak resident size (``ru_maxrss``), which setup's transients (building
    the weights, loading the kernels) had already pushed above anything a call adds, and glibc keeps
    the heap that setup freed resident, so a call's output and scratch reused it without raising the
    resident size at all. Here the free heap goes back to the kernel (``malloc_trim``) and the peak is
    reset to the current resident size (``/proc/self/clear_refs``), so the peak becomes what setup
    holds plus the most the body allocates. Linux with glibc; elsewhere a no-op.
    """
    import ctypes
    import ctypes.util
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except (OSError, AttributeError):
        pass


def make_layer(variant, sizes, backend="auto", activation=None, dtype="float32"):
    """A leaf FFF (``variant="fff"``, relu) or neuron tree (``"neuron_tree"``, gelu) seeded by SEED."""
    if backend != "numpy":
        require("fffcpu._kernel_api")
    if variant == "fff":
        cls = require("fffcpu").FFF
        activation = activation or "relu"
    else:
        cls = require("fffcpu.neuron_tree").NeuronTreeFFF
        activation = activation or "gelu"
    return cls(**sizes, activation=activation, seed=SEED, dtype=dtype, backend=backend)


def make_x(n, width, seed=SEED):
    """A standard-normal float32 batch of shape (n, width)."""
    return np.random.default_rng(seed + 1).standard_normal((n, width), dtype=np.float32)


def make_labels(n, n_classes, seed=SEED):
    """Integer class labels of shape (n,)."""
    return np.random.default_rng(seed + 2).integers(0, n_classes, size=n)


def dense_weights(input_width, width, output_width, seed=SEED):
    """``w1 (D, W), b1 (W,), w2 (W, O), b2 (O,)`` float32, uniform like the FFF initialisation."""
    rng = np.random.default_rng(seed + 3)
    b_in, b_out = 1 / np.sqrt(input_width), 1 / np.sqrt(width)
    return (rng.uniform(-b_in, b_in, (input_width, width)).astype(np.float32),
            rng.uniform(-b_in, b_in, width).astype(np.float32),
            rng.uniform(-b_out, b_out, (width, output_width)).astype(np.float32),
            rng.uniform(-b_out, b_out, output_width).astype(np.float32))


def training_width(variant, sizes):
    if variant == "fff":
        return (1 << sizes["depth"]) * sizes["leaf_width"]
    return sizes["parallel_size"] * ((1 << (sizes["depth"] + 1)) - 1)


def dense_forward(x, w1, b1, w2, b2, activation):
    """The dense baseline ``act(x @ w1 + b1) @ w2 + b2`` in float32 BLAS (gelu exact, erf form).

    The same computation as ``fffcpu.bench.dense_forward``, repeated here so that the suites run
    against commits that predate that module.
    """
    from scipy.special import erf
    h = x @ w1
    h += b1
    if activation == "relu":
        np.maximum(h, 0, out=h)
    else:
        phi = h * math.sqrt(0.5)
        erf(phi, out=phi)
        phi += 1
        phi *= 0.5
        h *= phi
    y = h @ w2
    y += b2
    return y


def _calls_for(fn, min_time):
    """How many calls of ``fn()`` last at least ``min_time`` seconds (the faster of two runs, as
    ``fffcpu.bench.measure``: one slowed run ends nothing)."""
    number = 1
    while True:
        t = min(_run(fn, number), _run(fn, number))
        if t >= min_time or number >= 1 << 16:
            return number
        number *= 4


def _run(fn, number):
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return time.perf_counter() - t0


def paired_speedup(slow, fast, min_time=0.01, repeats=7):
    """Seconds per call of ``slow()`` over those of ``fast()``: the median of ``repeats`` ratios, each
    from one block of calls of either, back to back (the order flips every repeat).

    Timing all of one and then all of the other (as the suites did) let a change in the machine's
    load between the two land in the ratio: SpeedupVsDense read 275, 86.6 and 3.29 in three runs.
    Pairing the blocks, as ``benchmarks/ab_kernels.py`` does, exposes both sides to the same load.
    """
    slow(), fast()  # warm-up
    numbers = {slow: _calls_for(slow, min_time), fast: _calls_for(fast, min_time)}
    ratios = []
    for r in range(repeats):
        seconds = {}
        for fn in ((slow, fast) if r % 2 == 0 else (fast, slow)):
            seconds[fn] = _run(fn, numbers[fn]) / numbers[fn]
        ratios.append(seconds[slow] / seconds[fast])
    return statistics.median(ratios)
