"""Hard (log-time) inference of both FFF variants: Numba kernels, NumPy reference, dense FF."""
import time
import tracemalloc

from .common import (LEAF_INFER, TREE_INFER, dense_forward, dense_weights, make_layer, make_x,
                     median_time, require, reset_peak_memory, training_width, warm_kernel_cache)

IMPLEMENTATIONS = ["kernels", "numpy", "dense"]
_BACKEND = {"kernels": "auto", "numpy": "numpy"}


def _build(variant, implementation, batch):
    """``(call, x)``: a callable of no arguments running ``implementation`` on a seeded batch."""
    sizes = LEAF_INFER if variant == "fff" else TREE_INFER
    act = "relu" if variant == "fff" else "gelu"
    x = make_x(batch, sizes["input_width"])
    if implementation == "dense":
        w = dense_weights(sizes["input_width"], training_width(variant, sizes), sizes["output_width"])
        return (lambda: dense_forward(x, *w, act)), x
    layer = make_layer(variant, sizes, backend=_BACKEND[implementation])
    return (lambda: layer(x)), x


_BUILT = {}  # the latest _build of this process, by (variant, implementation, batch)


def _build_once(variant, implementation, batch):
    """:func:`_build`, memoised for the ``time_`` suites' setup().

    asv-runner 0.3+ re-runs setup() before every timed call of a benchmark that has one (its number
    is then 1). Rebuilding the layer there (25 MB of new weights) left each timed call with cold
    caches: a one-sample call timed at about 3x its steady-state time (16 µs for leaf-768-d8-l16, which
    `fffcpu bench` and SpeedupVsDense time at about 6 µs). A re-run now costs a look-up plus the
    untimed call setup makes, and the timed call runs warm, as in `fffcpu bench`.
    """
    key = (variant, implementation, batch)
    if key not in _BUILT:
        _BUILT.clear()  # asv runs each parameter set in its own process: hold one at most
        _BUILT[key] = _build(variant, implementation, batch)
    return _BUILT[key]


class LeafFFFInference:
    """leaf-768-d8-l16: leaf FFF D 768, O 768, depth 8, leaf 16, vs dense 768-4096-768 relu."""

    params = (IMPLEMENTATIONS, [1, 256])
    param_names = ["implementation", "batch"]

    def setup(self, implementation, batch):
        self.call, _ = _build_once("fff", implementation, batch)
        self.call()  # numba compilation (first run), warm caches (re-runs)

    def time_forward(self, implementation, batch):
        self.call()


class NeuronTreeInference:
    """ufb-768-d11: neuron tree D 768, O 768, depth 11 (4095 neurons), vs dense 768-4095-768 gelu."""

    params = (IMPLEMENTATIONS, [1, 256])
    param_names = ["implementation", "batch"]

    def setup(self, implementation, batch):
        self.call, _ = _build_once("neuron_tree", implementation, batch)
        self.call()  # numba compilation (first run), warm caches (re-runs)

    def time_forward(self, implementation, batch):
        self.call()


#: the project's speed targets: the calls they are stated for, ``name -> (variant, batch)``, each
#: against the dense FF of the same training width (leaf-768-d8-l16: 4096, relu; ufb-768-d11: 4095, gelu)
TARGETS = {
    "ufb-768-d11 batch 4096": ("neuron_tree", 4096),
    "ufb-768-d11 batch 1": ("neuron_tree", 1),
    "leaf-768-d8-l16 batch 1024": ("fff", 1024),
}


class TargetInference:
    """The calls of the speed targets, kernels and the dense baseline, so that the two can be compared
    commit by commit (:class:`TargetSpeedup` tracks their ratio measured in one process).

    The dense call at ufb-768-d11 batch 4096 is the slow one: about half a second, and 130 MB for its
    hidden layer and the gelu's scratch.
    """

    params = (list(TARGETS), ["kernels", "dense"])
    param_names = ["target", "implementation"]
    timeout = 120

    def setup(self, target, implementation):
        variant, batch = TARGETS[target]
        self.call, _ = _build_once(variant, implementation, batch)
        self.call()  # numba compilation (first run), warm caches (re-runs)
        t0 = time.perf_counter()
        self.call()
        if time.perf_counter() - t0 < 0.05:  # cheap calls run cold for a few more calls (25, 8, 4.8, 4.2 us
            for _ in range(8):               # for one ufb-768-d11 sample), and `asv run --quick` times one
                self.call()

    def time_forward(self, target, implementation):
        self.call()


class TargetSpeedup:
    """Median time of the dense FF divided by the kernels', at each speed target (higher is better)."""

    params = [list(TARGETS)]
    param_names = ["target"]
    timeout = 120

    def setup(self, target):
        variant, batch = TARGETS[target]
        self.kernels, _ = _build(variant, "kernels", batch)
        self.dense, _ = _build(variant, "dense", batch)
        self.kernels()  # numba compilation

    def track_speedup(self, target):
        return median_time(self.dense) / median_time(self.kernels)

    track_speedup.unit = "x"


class BatchInferenceMemory:
    """Memory of one batch of 4096: the kernels should need the output plus O(batch) scratch only.

    ``peakmem_`` is the peak resident size of the whole process, so it includes the weights and the
    input built in setup, and the Numba runtime: setup loads the kernels for every implementation so
    that the implementations of a variant start from the same base and can be compared. They are
    compiled (if the disk cache is cold) in a child process, so LLVM's memory never counts here.
    Setup ends by resetting the peak (``reset_peak_memory``), so the number is what setup holds plus
    the most one call adds (for the kernels: the output, 12 MiB, and their scratch).
    ``track_python_scratch`` counts the scratch bytes of one call, per sample: tracemalloc's peak
    minus what is still held after the call, so the output counts in neither. tracemalloc sees
    NumPy's allocations and the kernels' alike (Numba's runtime allocates through Python's raw
    allocator), so this is the O(batch) scratch of the kernels: about 73 bytes per sample for
    leaf-768-d8-l16 (leaf index, permutation, flags, hidden layer) and 170 for ufb-768-d11.
    """

    params = (["fff", "neuron_tree"], IMPLEMENTATIONS)
    param_names = ["variant", "implementation"]
    batch = 4096

    def setup(self, variant, implementation):
        warm_kernel_cache()  # compiled in a child process: this one only loads (see warm_kernel_cache)
        require("fffcpu._kernel_api").warmup(("float32",))  # the same runtime base for all
        self.call, self.x = _build(variant, implementation, self.batch)
        self.call()  # numba compilation
        reset_peak_memory()  # the peak from here on is what one call adds to what setup holds

    def peakmem_forward(self, variant, implementation):
        self.call()

    def track_python_scratch(self, variant, implementation):
        tracemalloc.start()
        try:
            y = self.call()  # held while the memory still in use is read
            held, peak = tracemalloc.get_traced_memory()
            del y
        finally:
            tracemalloc.stop()
        return max(peak - held, 0) / self.batch

    track_python_scratch.unit = "bytes/sample"


class SpeedupVsDense:
    """Median time of the dense FF of the same training width divided by the kernels' (higher is better).

    A ratio measured in one process, so it is less sensitive to the machine's speed than the absolute
    timings; FLOP-ratio ceilings: leaf-768-d8-l16 ~205x, ufb-768-d11 341x.
    """

    params = (["fff", "neuron_tree"], [1, 256])
    param_names = ["variant", "batch"]
    timeout = 120

    def setup(self, variant, batch):
        self.kernels, _ = _build(variant, "kernels", batch)
        self.dense, _ = _build(variant, "dense", batch)
        self.kernels()  # numba compilation

    def track_speedup(self, variant, batch):
        return median_time(self.dense) / median_time(self.kernels)

    track_speedup.unit = "x"
