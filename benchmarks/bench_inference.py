"""Hard (log-time) inference of both FFF variants: Numba kernels, NumPy reference, dense FF."""
import tracemalloc

from .common import (LEAF_INFER, TREE_INFER, dense_forward, dense_weights, fix_threads, make_layer, make_x,
                     paired_speedup, require, reset_peak_memory, suite, training_width, warm,
                     warm_kernel_cache)

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


@suite
class LeafFFFInference:
    """leaf-768-d8-l16: leaf FFF D 768, O 768, depth 8, leaf 16, vs dense 768-4096-768 relu."""

    params = (IMPLEMENTATIONS, [1, 256])
    param_names = ["implementation", "batch"]

    def setup(self, implementation, batch):
        fix_threads()
        self.call, _ = _build_once("fff", implementation, batch)
        warm(self.call)  # numba compilation (first run), then warm caches for the one timed call

    def time_forward(self, implementation, batch):
        self.call()


@suite
class NeuronTreeInference:
    """ufb-768-d11: neuron tree D 768, O 768, depth 11 (4095 neurons), vs dense 768-4095-768 gelu."""

    params = (IMPLEMENTATIONS, [1, 256])
    param_names = ["implementation", "batch"]

    def setup(self, implementation, batch):
        fix_threads()
        self.call, _ = _build_once("neuron_tree", implementation, batch)
        warm(self.call)  # numba compilation (first run), then warm caches for the one timed call

    def time_forward(self, implementation, batch):
        self.call()


#: the project's speed targets: the calls they are stated for, ``name -> (variant, batch)``, each
#: against the dense FF of the same training width (leaf-768-d8-l16: 4096, relu; ufb-768-d11: 4095, gelu)
TARGETS = {
    "ufb-768-d11 batch 4096": ("neuron_tree", 4096),
    "ufb-768-d11 batch 1": ("neuron_tree", 1),
    "leaf-768-d8-l16 batch 1024": ("fff", 1024),
}


@suite
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
        fix_threads()
        variant, batch = TARGETS[target]
        self.call, _ = _build_once(variant, implementation, batch)
        warm(self.call)  # numba compilation (first run), then warm caches for the one timed call

    def time_forward(self, target, implementation):
        self.call()


@suite
class TargetSpeedup:
    """Time of the dense FF divided by the kernels', at each speed target (higher is better), timed in
    alternating blocks (``paired_speedup``).

    ``'ufb-768-d11 batch 1'`` measures the same ratio as ``SpeedupVsDense('neuron_tree', 1)``; both are
    kept so that each keeps its history (this one lists the targets together, that one the variants).
    """

    params = [list(TARGETS)]
    param_names = ["target"]
    timeout = 120

    def setup(self, target):
        fix_threads()
        variant, batch = TARGETS[target]
        self.kernels, _ = _build(variant, "kernels", batch)
        self.dense, _ = _build(variant, "dense", batch)
        self.kernels()  # numba compilation

    def track_speedup(self, target):
        return paired_speedup(self.dense, self.kernels)

    track_speedup.unit = "x"


#: the batches of BatchInferenceMemory (tiny mode: the same, the layers are small)
MEMORY_BATCHES = [1024, 4096]


@suite
class BatchInferenceMemory:
    """Memory of one batch: the kernels should need the output plus O(batch) scratch only.

    ``peakmem_`` is the peak resident size of the whole process, so it includes the weights and the
    input built in setup, and the Numba runtime: setup loads the kernels for every implementation so
    that the implementations of a variant start from the same base and can be compared. They are
    compiled (if the disk cache is cold) in a child process, so LLVM's memory never counts here; that
    can take most of a minute, hence the timeout. Setup ends by resetting the peak
    (``reset_peak_memory``), so the number is what setup holds plus the most one call adds.
    ``none`` is that base: the kernels' layer and input built as for ``kernels``, and a body that
    calls nothing, so ``kernels`` minus ``none`` is what one call adds (at batch 4096 the output,
    12 MiB, and the scratch; at 1024 a quarter of that: both grow with the batch, nothing else).
    ``track_python_scratch`` counts the scratch bytes of one call, per sample: tracemalloc's peak
    minus what is still held after the call, so the output counts in neither. tracemalloc sees
    NumPy's allocations and the kernels' alike (Numba's runtime allocates through Python's raw
    allocator), so this is the O(batch) scratch of the kernels: about 73 bytes per sample for
    leaf-768-d8-l16 (leaf index, permutation, flags, hidden layer) and 170 for ufb-768-d11.
    """

    params = (["fff", "neuron_tree"], IMPLEMENTATIONS + ["none"], MEMORY_BATCHES)
    param_names = ["variant", "implementation", "batch"]
    timeout = 240

    def setup(self, variant, implementation, batch):
        fix_threads()
        warm_kernel_cache()  # compiled in a child process: this one only loads (see warm_kernel_cache)
        require("fffcpu._kernel_api").warmup(("float32",))  # the same runtime base for all
        self.batch = batch
        call, self.x = _build(variant, "kernels" if implementation == "none" else implementation, batch)
        call()  # numba compilation
        self.call = (lambda: None) if implementation == "none" else call
        reset_peak_memory()  # the peak from here on is what one call adds to what setup holds

    def peakmem_forward(self, variant, implementation, batch):
        self.call()

    def track_python_scratch(self, variant, implementation, batch):
        tracemalloc.start()
        try:
            y = self.call()  # held while the memory still in use is read
            held, peak = tracemalloc.get_traced_memory()
            del y
        finally:
            tracemalloc.stop()
        return max(peak - held, 0) / self.batch

    track_python_scratch.unit = "bytes/sample"


@suite
class SpeedupVsDense:
    """Time of the dense FF of the same training width divided by the kernels' (higher is better).

    A ratio measured in one process, in alternating blocks (``paired_speedup``), so it is less
    sensitive to the machine's speed and load than the absolute timings; FLOP-ratio ceilings:
    leaf-768-d8-l16 ~205x, ufb-768-d11 341x. ``('neuron_tree', 1)`` is also
    ``TargetSpeedup('ufb-768-d11 batch 1')``.
    """

    params = (["fff", "neuron_tree"], [1, 256])
    param_names = ["variant", "batch"]
    timeout = 120

    def setup(self, variant, batch):
        fix_threads()
        self.kernels, _ = _build(variant, "kernels", batch)
        self.dense, _ = _build(variant, "dense", batch)
        self.kernels()  # numba compilation

    def track_speedup(self, variant, batch):
        return paired_speedup(self.dense, self.kernels)

    track_speedup.unit = "x"
