"""Seeded builders shared by the asv suites.

Every suite builds its data once in ``setup()`` from :data:`SEED` and calls the code under test once
there (``# numba compilation``), so no timed body compiles. The sizes are the standard configurations
of SPEC §5 with moderate batches; ``FFFCPU_BENCH_TINY=1`` shrinks them (tests/test_bench.py uses it to
run every benchmark once in seconds; asv never sets it).

This module is self-contained on purpose: asv runs the current suites against the fffcpu of older
commits, so it imports only the public API (``fffcpu.FFF``, ``fffcpu.neuron_tree``, ``fffcpu.io``,
``fffcpu.training``) and skips (``NotImplementedError``) where a commit does not have it yet.
"""
import importlib
import math
import os
import statistics
import subprocess
import sys
import time

import numpy as np

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


def median_time(fn, min_time=0.01, repeats=5):
    """Median seconds per call of ``fn()`` (for ``track_`` benchmarks that report ratios)."""
    fn()
    number = 1
    while True:
        t = math.inf
        for _ in range(2):  # the faster of two runs, as fffcpu.bench.measure: one slowed run ends nothing
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            t = min(t, time.perf_counter() - t0)
        if t >= min_time or number >= 1 << 16:
            break
        number *= 4
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    return statistics.median(times)
