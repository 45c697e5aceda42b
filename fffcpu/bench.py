"""``fffcpu bench``: the standard configurations of SPEC §5, measured side by side on this machine.

Every implementation of a configuration runs on the same weights and the same input batch:

- ``fffcpu kernels``      the public layer, ``layer(x)`` with ``backend="auto"`` (Numba kernels);
- ``fffcpu numpy``        the same layer with ``backend="numpy"`` (the NumPy reference);
- ``dense numpy``         the dense feedforward layer of the same training width in float32 BLAS,
                          ``act(x @ W1 + b1) @ W2 + b2`` (gelu in the exact erf form);
- at batch 1 also ``fffcpu kernels, stream`` and ``dense numpy, stream``: a different sample each
                          call, taken in turn from a pool of ``STREAM_POOL`` (a token stream). The
                          rows above repeat one sample, whose path stays in L1/L2; here the path's
                          weight rows come from L3 or memory. Their ``vs dense`` is against
                          ``dense numpy, stream``;
- peers, when installed:  ``dense torch``, ``torch index_select/bmm`` (the neuron tree written with
                          gathers and batched matmuls, from SPEC §2), ``fastfeedforward eval`` and
                          ``fastfeedforward train`` (the PyTorch reference package).

Timing: one warm-up call (Numba compilation, caches, lazy allocations) is excluded; each repeat runs the
call ``number`` times, with ``number`` chosen so that one repeat lasts at least ``min_time``; the result is
the median over repeats of the time per call. ``speedup_vs_dense`` is the dense NumPy median divided by
the implementation's median, for the same configuration and batch (so > 1 means faster than dense);
for the ``, stream`` rows the dense median is ``dense numpy, stream``'s.

``--scaling`` measures the cost per sample against the training width 2^6 .. 2^16 instead: a leaf FFF
with a fixed leaf width, a neuron tree, and the dense layers of the same width. There ``--configs``
picks the variants swept: leaf-768-d8-l16 the leaf FFF (and the dense layer with relu), ufb-768-d11
the neuron tree (and the dense layer with gelu); a training configuration is refused.

Examples
--------
    fffcpu bench                                  # all configurations, table
    fffcpu bench --configs ufb-768-d11 --batches 1 256 --threads 2
    fffcpu bench --json > results.jsonl           # one JSON object per line
    fffcpu bench --scaling --plot scaling.png
    fffcpu bench --scaling --configs ufb-768-d11     # the neuron tree and dense gelu only
"""
import datetime
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time

import numpy as np

from . import __version__
from ._argtypes import positive_int

# ---------------------------------------------------------------------------------------------
# configurations (SPEC §5)
# ---------------------------------------------------------------------------------------------
#: name -> what is measured. ``quick`` replaces sizes and batches under ``--quick`` (tests, smoke runs).
CONFIGS = {
    "ufb-768-d11": dict(
        variant="neuron_tree", task="inference", activation="gelu",
        what="neuron tree D 768, O 768, depth 11, P 1 (4095 neurons) vs dense 768-4095-768 gelu",
        sizes=dict(input_width=768, output_width=768, depth=11, parallel_size=1),
        batches=(1, 256, 4096),
        quick=dict(sizes=dict(input_width=24, output_width=16, depth=3, parallel_size=1), batches=(1, 16)),
    ),
    "leaf-768-d8-l16": dict(
        variant="fff", task="inference", activation="relu",
        what="leaf FFF D 768, O 768, depth 8, leaf 16 (width 4096) vs dense 768-4096-768 relu",
        sizes=dict(input_width=768, leaf_width=16, output_width=768, depth=8),
        batches=(1, 1024),
        quick=dict(sizes=dict(input_width=24, leaf_width=4, output_width=16, depth=3), batches=(1, 16)),
    ),
    "leaf-784-d6-l8": dict(
        variant="fff", task="training", activation="relu",
        what="one training step: soft forward, CE + h*harden, backward, SGD (leaf FFF 784-10, d 6, l 8)",
        sizes=dict(input_width=784, leaf_width=8, output_width=10, depth=6),
        batches=(256,),
        quick=dict(sizes=dict(input_width=24, leaf_width=4, output_width=10, depth=2), batches=(16,)),
    ),
}

#: hardening coefficient and learning rate of the training step
TRAIN_HARDENING = 0.1
TRAIN_LR = 0.01

SCALING_WIDTHS = tuple(2 ** k for k in range(6, 17))
SCALING_LEAF_WIDTH = 16
SCALING_IO = 768

SEED = 20240601
#: samples the batch-1 ``, stream`` rows take in turn (12.6 MB at width 768 in float32)
STREAM_POOL = 4096
#: the suffix of an implementation timed on a stream of samples, and its dense baseline
STREAM = ", stream"
DESCRIPTION = ("Measure fffcpu's kernels and NumPy reference against the dense feedforward layer and the "
               "PyTorch peers on the standard configurations of SPEC §5 (medians, warm-up excluded).")


class Unavailable(Exception):
    """An implementation that cannot run here (a peer not installed, a module missing)."""


# ---------------------------------------------------------------------------------------------
# timing and machine
# ---------------------------------------------------------------------------------------------
def measure(fn, repeats=7, min_time=0.02):
    """Median seconds per call of ``fn()``, warm-up excluded.

    Parameters
    ----------
    fn : callable taking no arguments
    repeats : int
        Number of timed repeats; the median is reported.
    min_time : float
        Each repeat calls ``fn`` ``number`` times, enough to last at least this long (so microsecond
        calls are not dominated by the clock's resolution): ``number`` grows until the faster of two
        runs of that many calls lasts ``min_time``.

    Returns
    -------
    median : float
        Seconds per call.
    number : int
        Calls per repeat.
    """
    fn()  # warm-up: compilation, caches, first-touch page faults
    number = 1
    while True:
        # the faster of two runs: one slowed run (a preemption, a lazy first call) ended the
        # calibration early, and every repeat then timed a few calls far shorter than min_time
        t = min(_run(fn, number), _run(fn, number))
        if t >= min_time or number >= 1 << 20:
            break
        # aim slightly past min_time, at most 10x more calls per step
        number = min(number * 10, max(number + 1, int(number * 1.2 * min_time / max(t, 1e-9))))
    times = [_run(fn, number) / number for _ in range(repeats)]
    return statistics.median(times), number


def _run(fn, number):
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return time.perf_counter() - t0


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512_bf16") if f in flags]
    except OSError:
        pass
    return []


def _blas_name():
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older NumPy: no dict mode
        return "unknown"


def _version(dist_name):
    """Installed version of a distribution, or None (without importing it)."""
    from importlib import metadata
    try:
        return metadata.version(dist_name)
    except metadata.PackageNotFoundError:
        return None


def _git_commit():
    """The commit of the source tree fffcpu is imported from (``-dirty``: with uncommitted edits), or None."""
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.isdir(os.path.join(root, ".git")):
        return None
    try:
        out = subprocess.run(["git", "-C", root, "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def usable_cores():
    """The CPUs this process may run on (its affinity: taskset, a container's cpuset), or
    ``os.cpu_count()`` where the platform cannot say (no ``os.sched_getaffinity``: macOS, Windows)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def machine_info(threads):
    """What the numbers depend on: CPU, cores, thread count, library versions, date, commit.

    ``cores`` is the number of CPUs this process may use (:func:`usable_cores`), the ones a run can
    actually spread over; ``host_cores`` is every CPU of the host (``os.cpu_count()``), which is more
    under taskset or a container's cpuset.
    """
    import numba
    import scipy
    return {
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores": usable_cores(),
        "host_cores": os.cpu_count(),
        "threads": threads,
        "python": platform.python_version(),
        "fffcpu": __version__,
        "commit": _git_commit(),
        "numpy": np.__version__,
        "blas": _blas_name(),
        "blas_threads": _blas_threads(threads),
        "numba": numba.__version__,
        "scipy": scipy.__version__,
        "torch": _version("torch"),
        "fastfeedforward": _version("fastfeedforward"),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average": _load_average(),
    }


def _blas_threads(threads):
    """The BLAS thread count of the dense baseline: ``threads`` where threadpoolctl can set it (see
    :class:`_Threads`), else a note that it was not limited (BLAS then uses its own default, often
    every core, whatever ``threads`` says)."""
    import importlib.util
    if importlib.util.find_spec("threadpoolctl") is None:
        return "not limited (threadpoolctl not installed)"
    return threads


def _load_average():
    """The 1-minute load average when the run starts (None where unknown): a busy machine slows
    multi-threaded code most, so the reader should know."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def default_threads():
    """The threads a run uses when none are asked for: as many as Numba can run (NUMBA_NUM_THREADS,
    the CPUs this process may run on unless the environment sets it). Not ``os.cpu_count()``: that
    counts every CPU of the host, also those outside the process's affinity (taskset, a container's
    cpuset), and asking Numba for more threads than it started with is an error."""
    import numba
    return numba.config.NUMBA_NUM_THREADS


class _Threads:
    """Use ``n`` threads in Numba, BLAS (through threadpoolctl when installed) and torch (if imported).
    Numba's and BLAS's thread counts are restored on exit (run_configs and run_scaling are called from
    Python too, and left the caller's kernels on the benchmark's thread count)."""

    def __init__(self, n):
        self.n = n
        self._limits = None
        self._numba_before = None

    def __enter__(self):
        from . import _kernel_api
        self._numba_before = _kernel_api.get_num_threads()
        _kernel_api.set_num_threads(self.n)
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            self.blas = "not limited (threadpoolctl not installed)"
        else:
            self._limits = threadpool_limits(limits=self.n, user_api="blas")
            self.blas = self.n
        return self

    def __exit__(self, *exc):
        if self._limits is not None:
            self._limits.unregister()
        if self._numba_before is not None:
            from . import _kernel_api
            _kernel_api.set_num_threads(self._numba_before)
        return False


def _torch(threads):
    """Import torch with ``threads`` intra-op threads, or raise :class:`Unavailable`."""
    try:
        import torch
    except ImportError:
        raise Unavailable("torch is not installed") from None
    torch.set_num_threads(threads)
    return torch


# ---------------------------------------------------------------------------------------------
# the dense baseline and the peers
# ---------------------------------------------------------------------------------------------
_SQRT1_2 = 1 / math.sqrt(2)  # a Python float keeps the array dtype (NEP 50)


def dense_forward(x, w1, b1, w2, b2, activation):
    """Dense feedforward layer ``act(x @ w1 + b1) @ w2 + b2`` in BLAS, with in-place activation.

    Parameters
    ----------
    x : ndarray of shape (n, D)
    w1 : ndarray of shape (D, W)
    b1 : ndarray of shape (W,)
    w2 : ndarray of shape (W, O)
    b2 : ndarray of shape (O,)
    activation : {"relu", "gelu"}
        gelu is exact: z * Phi(z), Phi(z) = (1 + erf(z / sqrt 2)) / 2.

    Returns
    -------
    ndarray of shape (n, O)
    """
    from scipy.special import erf
    h = x @ w1
    h += b1
    if activation == "relu":
        np.maximum(h, 0, out=h)
    elif activation == "gelu":
        phi = h * _SQRT1_2
        erf(phi, out=phi)
        phi += 1
        phi *= 0.5
        h *= phi
    else:
        raise ValueError(f"activation must be 'relu' or 'gelu' for the dense baseline, got {activation!r}")
    y = h @ w2
    y += b2
    return y


def dense_weights_of(layer):
    """The dense layer of the same training width as ``layer``, from its own weights.

    Leaf FFF: W1 stacks the leaves' first layers side by side, W2 the second layers on top of each other
    (b2 is the mean of the leaves' b2s). Neuron tree: ``linear_in`` and ``linear_out`` (no output bias).

    Returns
    -------
    w1 (D, W), b1 (W,), w2 (W, O), b2 (O,) : C-contiguous arrays of the layer's dtype
    """
    p = layer.params
    if layer.kind == "fff":
        L, D, l = p["w1s"].shape
        w1 = np.ascontiguousarray(p["w1s"].transpose(1, 0, 2).reshape(D, L * l))
        b1 = p["b1s"].reshape(L * l).copy()
        w2 = p["w2s"].reshape(L * l, -1).copy()
        b2 = p["b2s"].mean(axis=0)
    else:
        w1 = np.ascontiguousarray(p["linear_in.weight"].T)
        b1 = p["linear_in.bias"].copy()
        w2 = np.ascontiguousarray(p["linear_out.weight"].T)
        b2 = np.zeros(w2.shape[1], dtype=w2.dtype)
    return w1, b1, w2, b2.astype(w1.dtype)


def torch_neuron_tree(torch, layer):
    """The neuron tree of SPEC §2 in torch with gathers and batched matmuls, on ``layer``'s weights.

    Per level, each sample gathers the input row of its current neuron in every tree
    (``index_select``), takes the dot product with ``bmm``, and steps to child 2i+1+[a>0]; at the end the
    visited neurons' output rows are gathered and mixed with their gelu activations by one ``bmm``.

    Returns
    -------
    forward : callable, torch tensor (n, D) -> (n, O)
    """
    sd = layer.state_dict()
    w_in = torch.from_numpy(sd["linear_in.weight"])                                    # (P*N, D)
    b_in = torch.from_numpy(sd["linear_in.bias"])                                      # (P*N,)
    w_out_t = torch.from_numpy(np.ascontiguousarray(sd["linear_out.weight"].T))        # (P*N, O)
    depth, P, N = layer.depth, layer.parallel_size, layer.n_nodes
    D, O = layer.input_width, layer.output_width
    offsets = torch.arange(P, dtype=torch.long) * N                                    # (P,)
    act = {"gelu": torch.nn.functional.gelu, "relu": torch.relu}[layer.activation]

    def forward(x):
        n = x.shape[0]
        node = torch.zeros((n, P), dtype=torch.long)                                   # (n, P) in-tree index
        rows = torch.empty((n, P, depth + 1), dtype=torch.long)                        # visited rows
        logits = torch.empty((n, P, depth + 1), dtype=x.dtype)
        xs = x.unsqueeze(2)                                                            # (n, D, 1)
        for m in range(depth + 1):
            r = (node + offsets).reshape(-1)                                           # (n*P,)
            w = w_in.index_select(0, r).view(n, P, D)                                  # (n, P, D)
            a = torch.bmm(w, xs).view(n, P) + b_in.index_select(0, r).view(n, P)       # (n, P)
            rows[:, :, m] = r.view(n, P)
            logits[:, :, m] = a
            node = 2 * node + 1 + (a > 0).long()
        h = act(logits).view(n, 1, P * (depth + 1))                                    # (n, 1, P*(d+1))
        wo = w_out_t.index_select(0, rows.view(-1)).view(n, P * (depth + 1), O)        # (n, P*(d+1), O)
        return torch.bmm(h, wo).view(n, O)

    return forward


def _fastfeedforward_model(torch, layer):
    try:
        from fastfeedforward import FFF as TorchFFF
    except ImportError:
        raise Unavailable("fastfeedforward is not installed") from None
    act = {"relu": torch.nn.ReLU(), "gelu": torch.nn.GELU()}[layer.activation]
    model = TorchFFF(layer.input_width, layer.leaf_width, layer.output_width, layer.depth, activation=act)
    with torch.no_grad():
        for name, value in layer.state_dict().items():
            getattr(model, name).copy_(torch.from_numpy(value))
    return model


def _torch_dense(torch, layer):
    w1, b1, w2, b2 = (torch.from_numpy(np.ascontiguousarray(a)) for a in dense_weights_of(layer))
    act = {"gelu": torch.nn.functional.gelu, "relu": torch.relu}[layer.activation]
    w1t, w2t = w1.T.contiguous(), w2.T.contiguous()   # nn.Linear layout (out, in)
    F = torch.nn.functional
    return lambda x: F.linear(act(F.linear(x, w1t, b1)), w2t, b2)


# ---------------------------------------------------------------------------------------------
# implementations: each returns a callable of no arguments, or raises Unavailable
# ---------------------------------------------------------------------------------------------
def _layer_for(cfg, sizes, backend):
    if cfg["variant"] == "fff":
        from .fff import FFF
        return FFF(**sizes, activation=cfg["activation"], seed=SEED, backend=backend)
    try:
        from .neuron_tree import NeuronTreeFFF
    except ImportError as e:
        raise Unavailable(f"fffcpu.neuron_tree is missing ({e})") from None
    return NeuronTreeFFF(**sizes, activation=cfg["activation"], seed=SEED, backend=backend)


def _inference_impls(cfg, sizes, threads, peers, batch):
    """Yield ``(implementation name, builder)``; ``builder(x)`` returns a callable of no arguments."""
    layer = _layer_for(cfg, sizes, "auto")

    def kernels(x):
        try:
            from . import _kernel_api  # noqa: F401
            layer(x[:1])
        except ImportError as e:
            raise Unavailable(f"the Numba kernels are missing ({e})") from None
        return lambda: layer(x)

    def reference(x):
        ref = _layer_for(cfg, sizes, "numpy")
        ref.load_state_dict(layer.state_dict())
        return lambda: ref(x)

    dense = dense_weights_of(layer)

    def dense_numpy(x):
        return lambda: dense_forward(x, *dense, cfg["activation"])

    def stream(call):  # a builder: each call takes the next sample of a seeded pool, as (1, D)
        def build(x):
            pool = np.random.default_rng(SEED + 1).standard_normal((STREAM_POOL, x.shape[1]), dtype=x.dtype)
            rows = [pool[i:i + 1] for i in range(STREAM_POOL)]
            turn = itertools.cycle(rows)
            call(rows[0])  # compiles, as the kernels' builder does
            return lambda: call(next(turn))
        return build

    yield "fffcpu kernels", kernels
    yield "fffcpu numpy", reference
    yield "dense numpy", dense_numpy
    def kernels_stream(x):
        kernels(x)  # the kernels' availability check, as for their other rows
        return stream(layer)(x)

    if batch == 1:
        yield "fffcpu kernels" + STREAM, kernels_stream
        yield "dense numpy" + STREAM, stream(lambda x: dense_forward(x, *dense, cfg["activation"]))
    if not peers:
        return

    def dense_torch(x):
        torch = _torch(threads)
        f, xt = _torch_dense(torch, layer), torch.from_numpy(x)
        return _no_grad(torch, lambda: f(xt))

    yield "dense torch", dense_torch
    if cfg["variant"] == "neuron_tree":
        def tree_torch(x):
            torch = _torch(threads)
            f, xt = torch_neuron_tree(torch, layer), torch.from_numpy(x)
            return _no_grad(torch, lambda: f(xt))

        yield "torch index_select/bmm", tree_torch
    else:
        def ff_eval(x):
            torch = _torch(threads)
            model = _fastfeedforward_model(torch, layer).eval()
            xt = torch.from_numpy(x)
            return _no_grad(torch, lambda: model(xt))

        yield "fastfeedforward eval", ff_eval


def _no_grad(torch, fn):
    def call():
        with torch.inference_mode():
            return fn()
    return call


def _training_impls(cfg, sizes, threads, peers):
    """Training-step implementations; ``builder(x, t)`` returns a callable of no arguments."""
    from .fff import FFF

    layer0 = FFF(**sizes, activation=cfg["activation"], seed=SEED)

    def fffcpu_step(x, t):
        from .training.losses import cross_entropy
        from .training.optim import SGD
        layer = FFF(**sizes, activation=cfg["activation"], seed=SEED)
        opt = SGD(layer.params, lr=TRAIN_LR)

        def step():
            y, cache = layer.train_forward(x)
            _, dL_dy = cross_entropy(y, t)
            grads, _ = layer.backward(cache, dL_dy, hardening=TRAIN_HARDENING)
            opt.step(grads)
        return step

    def dense_step(x, t):
        from .training.losses import cross_entropy
        w1, b1, w2, b2 = dense_weights_of(layer0)

        def step():
            z = x @ w1
            z += b1
            h = np.maximum(z, 0)
            y = h @ w2
            y += b2
            _, g = cross_entropy(y, t)             # (n, O)
            gh = g @ w2.T                          # (n, W)
            gh *= z > 0
            for p, dp in ((w2, h.T @ g), (b2, g.sum(0)), (w1, x.T @ gh), (b1, gh.sum(0))):
                p -= TRAIN_LR * dp
        return step

    yield "fffcpu numpy", fffcpu_step
    yield "dense numpy", dense_step
    if not peers:
        return

    def ff_train(x, t):
        torch = _torch(threads)
        model = _fastfeedforward_model(torch, layer0).train()
        opt = torch.optim.SGD(model.parameters(), lr=TRAIN_LR)
        xt, tt = torch.from_numpy(x), torch.from_numpy(t.astype(np.int64))

        def step():
            logits, entropies = model(xt, return_entropies=True)
            loss = torch.nn.functional.cross_entropy(logits, tt) + TRAIN_HARDENING * entropies.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return step

    def dense_torch_train(x, t):
        torch = _torch(threads)
        w1, b1, w2, b2 = dense_weights_of(layer0)
        net = torch.nn.Sequential(torch.nn.Linear(w1.shape[0], w1.shape[1]), torch.nn.ReLU(),
                                  torch.nn.Linear(w2.shape[0], w2.shape[1]))
        with torch.no_grad():  # the same weights as the numpy dense step
            for lin, w, b in ((net[0], w1, b1), (net[2], w2, b2)):
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
                lin.bias.copy_(torch.from_numpy(b))
        opt = torch.optim.SGD(net.parameters(), lr=TRAIN_LR)
        xt, tt = torch.from_numpy(x), torch.from_numpy(t.astype(np.int64))

        def step():
            loss = torch.nn.functional.cross_entropy(net(xt), tt)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return step

    yield "fastfeedforward train", ff_train
    yield "dense torch", dense_torch_train


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------
def run_configs(configs, batches=None, repeats=7, min_time=0.02, threads=None, quick=False, peers=True,
                emit=None):
    """Measure every implementation of every configuration; return a list of result dicts.

    Parameters
    ----------
    configs : list of str
        Names from :data:`CONFIGS`.
    batches : list of int or None
        Batch sizes; None uses each configuration's own.
    repeats, min_time : see :func:`measure`
    threads : int or None
        Threads for Numba, BLAS and torch; None uses :func:`default_threads`.
    quick : bool
        Tiny sizes (see ``CONFIGS[...]["quick"]``) for tests and smoke runs.
    peers : bool
        Include the torch-based peers when installed.
    emit : callable or None
        Called with each result dict as soon as it is measured.

    Returns
    -------
    list of dict
        ``record`` "measurement" (``variant, config, task, implementation, batch, seconds,
        per_sample_seconds, speedup_vs_dense, number, repeats, threads``, and ``quick`` and ``sizes``:
        a ``--quick`` record keeps the configuration's name but not its sizes) or "skipped"
        (``config, implementation, reason``).
    """
    threads = threads or default_threads()
    results = []

    def out(record):
        results.append(record)
        if emit is not None:
            emit(record)

    with _Threads(threads):
        for name in configs:
            cfg = CONFIGS[name]
            sizes = cfg["quick"]["sizes"] if quick else cfg["sizes"]
            cfg_batches = batches or (cfg["quick"]["batches"] if quick else cfg["batches"])
            training = cfg["task"] == "training"
            rng = np.random.default_rng(SEED)
            for batch in cfg_batches:
                x = rng.standard_normal((batch, sizes["input_width"]), dtype=np.float32)
                t = rng.integers(0, sizes["output_width"], size=batch)
                impls = (_training_impls(cfg, sizes, threads, peers) if training
                         else _inference_impls(cfg, sizes, threads, peers, batch))
                dense_median = {}  # stream rows (True) and the others (False)
                measured = []
                for impl, build in impls:
                    try:
                        fn = build(x, t) if training else build(x)
                    except Unavailable as e:
                        out(dict(record="skipped", config=name, implementation=impl, batch=batch,
                                 reason=str(e)))
                        continue
                    median, number = measure(fn, repeats=repeats, min_time=min_time)
                    if impl in ("dense numpy", "dense numpy" + STREAM):
                        dense_median[impl.endswith(STREAM)] = median
                    measured.append(dict(record="measurement", variant=cfg["variant"], config=name,
                                         task=cfg["task"], implementation=impl, batch=batch,
                                         seconds=median, per_sample_seconds=median / batch,
                                         number=number, repeats=repeats, threads=threads,
                                         quick=quick, sizes=dict(sizes)))
                for m in measured:
                    base = dense_median.get(m["implementation"].endswith(STREAM))
                    m["speedup_vs_dense"] = None if base is None else base / m["seconds"]
                    out(m)
    return results


def _scaling_layer(variant, width, io, leaf_width, dtype=np.float32):
    """The leaf FFF (``"fff"``) or neuron tree (``"neuron_tree"``, ``width - 1`` neurons) of training
    width ``width``."""
    k = int(round(math.log2(width)))
    if variant == "fff":
        from .fff import FFF
        leaf_depth = max(k - int(round(math.log2(leaf_width))), 0)
        return FFF(io, leaf_width, io, leaf_depth, activation="relu", seed=SEED, dtype=dtype)
    from .neuron_tree import NeuronTreeFFF
    return NeuronTreeFFF(io, io, k - 1, activation="gelu", seed=SEED, dtype=dtype)


def _scaling_dense(width, io, dtype=np.float32):
    """Seeded dense weights io-width-io, uniform like the layers' initialisation: the same for every
    choice of variants (only their cost is measured, so they need not be a layer's own)."""
    rng = np.random.default_rng(SEED + 3)

    def uniform(shape, fan_in):
        a = rng.random(shape, dtype=dtype)
        a -= 0.5
        a *= 2 / math.sqrt(fan_in)
        return a

    return uniform((io, width), io), uniform(width, io), uniform((width, io), width), uniform(io, width)


#: the variants ``run_scaling`` can sweep: name -> (label, the dense layer's activation)
SCALING_VARIANTS = {"fff": ("leaf FFF kernels", "relu"), "neuron_tree": ("neuron tree kernels", "gelu")}


def run_scaling(widths=SCALING_WIDTHS, batches=(1, 256), repeats=5, min_time=0.02, threads=None,
                io=SCALING_IO, leaf_width=SCALING_LEAF_WIDTH, emit=None, variants=tuple(SCALING_VARIANTS),
                quick=False):
    """Cost per sample against training width for the kernels and the dense layers.

    For each width W (a power of two) and each of ``variants``: ``"fff"``, a leaf FFF io-W-io with
    leaves of ``leaf_width`` (depth log2(W / leaf_width)), relu, and the dense layer io-W-io with relu;
    ``"neuron_tree"``, a neuron tree io-(W-1)-io of depth log2(W) - 1, gelu, and the dense layer io-W-io
    with gelu.

    Returns
    -------
    list of dict
        ``record`` "scaling" with ``width, variant, implementation, batch, seconds, per_sample_seconds``,
        ``io_width`` (input and output width), ``quick`` (as given: whether these are ``--quick``'s
        sizes) and, for the leaf FFF's variant, ``leaf_width``.
    """
    if isinstance(variants, str) or not variants or not set(variants) <= set(SCALING_VARIANTS):
        known = ", ".join(map(repr, SCALING_VARIANTS))
        raise ValueError(f"variants must be a non-empty sequence of {known}, got {variants!r}")
    variants = [v for v in SCALING_VARIANTS if v in variants]  # the table's column order, no repeats
    threads = threads or default_threads()
    results = []
    rng = np.random.default_rng(SEED)
    with _Threads(threads):
        for width in widths:
            layers = {v: _scaling_layer(v, width, io, leaf_width) for v in variants}
            dense_w = _scaling_dense(width, io)
            for batch in batches:
                x = rng.standard_normal((batch, io), dtype=np.float32)
                impls = []  # (variant, implementation with its detail, call)
                for v, layer in layers.items():
                    shape = f"l={leaf_width}, d={layer.depth}" if v == "fff" else f"d={layer.depth}"
                    impls.append((v, f"{SCALING_VARIANTS[v][0]} ({shape})", lambda layer=layer: layer(x)))
                for v in variants:
                    act = SCALING_VARIANTS[v][1]
                    impls.append((v, f"dense numpy {act}", lambda act=act: dense_forward(x, *dense_w, act)))
                for variant, impl, fn in impls:
                    median, number = measure(fn, repeats=repeats, min_time=min_time)
                    rec = dict(record="scaling", width=width, variant=variant,
                               implementation=impl.split(" (")[0], detail=impl, batch=batch, seconds=median,
                               per_sample_seconds=median / batch, number=number, repeats=repeats,
                               threads=threads, io_width=io, quick=bool(quick))
                    if variant == "fff":
                        rec["leaf_width"] = leaf_width
                    results.append(rec)
                    if emit is not None:
                        emit(rec)
            del layers, dense_w
    return results


# ---------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------
def format_seconds(s):
    """Seconds as a short human string: ``3.1 µs``, ``12.4 ms``, ``1.20 s``."""
    if s is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if s >= scale:
            v = s / scale
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return "0 s"


def _cores_text(info):
    """``2 cores``, or ``2 of 16 cores`` when the process may use fewer CPUs than the host has (a record
    written before ``host_cores`` existed has ``cores`` only)."""
    cores, host = info["cores"], info.get("host_cores")
    of_host = f" of {host}" if host is not None and host != cores else ""
    return f"{cores}{of_host} core{'' if cores == 1 and not of_host else 's'}"


def format_machine(info):
    """The machine record as one line of text."""
    threads = f"{info['threads']} thread{'' if info['threads'] == 1 else 's'}"
    flags = " ".join(info["cpu_flags"]) or "no AVX flags"
    commit = f" @ {info['commit']}" if info["commit"] else ""
    return (f"{info['cpu']}, {_cores_text(info)} ({flags}), {threads}; Python {info['python']}, "
            f"NumPy {info['numpy']} ({info['blas']}{_blas_threads_text(info)}), Numba {info['numba']}, "
            f"SciPy {info['scipy']}, "
            f"torch {info['torch'] or '-'}, fastfeedforward {info['fastfeedforward'] or '-'}; "
            f"fffcpu {info['fffcpu']}{commit}; {info['date']}; load average {info['load_average']}")


def _blas_threads_text(info):
    """", 2 BLAS threads" or ", BLAS threads not limited (...)" (nothing for records without the key)."""
    n = info.get("blas_threads")
    if n is None:
        return ""
    if isinstance(n, int):
        return f", {n} BLAS thread{'' if n == 1 else 's'}"
    return f", BLAS threads {n}"


def format_table(results):
    """The measurements as a plain-text table, one block per configuration; skipped ones listed below."""
    rows = [("config", "batch", "implementation", "median", "per sample", "vs dense")]
    prev = None
    for r in results:
        if r["record"] != "measurement":
            continue
        key = (r["config"], r["batch"])
        if prev is not None and key != prev:
            rows.append(None)
        prev = key
        speed = "-" if r["speedup_vs_dense"] is None else f"{r['speedup_vs_dense']:.2f}x"
        rows.append((r["config"], str(r["batch"]), r["implementation"], format_seconds(r["seconds"]),
                     format_seconds(r["per_sample_seconds"]), speed))
    lines = _columns(rows, right=(1, 3, 4, 5))
    skipped = {(r["config"], r["implementation"], r["reason"]) for r in results if r["record"] == "skipped"}
    for config, impl, reason in sorted(skipped):
        lines.append(f"skipped {impl} for {config}: {reason}")
    return "\n".join(lines)


def format_scaling_table(results):
    """Per-sample cost by width (rows) and implementation/batch (columns)."""
    impls = list(dict.fromkeys((r["implementation"], r["batch"]) for r in results))
    widths = sorted({r["width"] for r in results})
    by = {(r["width"], r["implementation"], r["batch"]): r["per_sample_seconds"] for r in results}
    header = ("width",) + tuple(f"{impl} b{batch}" for impl, batch in impls)
    rows = [header]
    for w in widths:
        rows.append((str(w),) + tuple(format_seconds(by.get((w, i, b))) for i, b in impls))
    return "\n".join(_columns(rows, right=tuple(range(len(header)))))


def _columns(rows, right=()):
    cells = [r for r in rows if r is not None]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = []
    for r in rows:
        if r is None:
            lines.append("")
            continue
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(parts).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def plot_scaling(results, path, machine=None):
    """Write a log-log plot of per-sample cost against training width to ``path`` (needs matplotlib).

    ``path``: a file name, whose suffix names the format (none: PNG, ``.png`` added), written
    atomically; or a writable binary file object, which gets a PNG."""
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: the caller's backend and figures stay untouched
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    impls = list(dict.fromkeys(r["implementation"] for r in results))
    batches = list(dict.fromkeys(r["batch"] for r in results))
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, impl in enumerate(impls):         # colour: implementation; line style: batch
        for j, batch in enumerate(batches):
            pts = sorted((r["width"], r["per_sample_seconds"]) for r in results
                         if r["implementation"] == impl and r["batch"] == batch)
            ax.plot([p[0] for p in pts], [p[1] * 1e6 for p in pts], ("-", "--", ":", "-.")[j % 4],
                    color=colors[i % len(colors)], marker="o", ms=3, label=f"{impl}, batch {batch}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("training width (neurons)")
    ax.set_ylabel("time per sample (µs)")
    title = "fffcpu: inference cost per sample vs training width"
    if machine:
        title += f"\n{machine['cpu']}, {_cores_text(machine)}, {machine['threads']} thread(s)"
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        path = os.fspath(path)
    except TypeError:  # a file object: matplotlib writes into it
        fig.savefig(path, dpi=120, format="png")
        return
    fmt = os.path.splitext(path)[1][1:].lower()
    if not fmt:  # as matplotlib does with a bare name: PNG, with its suffix added
        fmt, path = "png", path + ".png"
    from .io import _atomic_write, _check_path  # a failed or interrupted write leaves an earlier plot as it was;
    path = _check_path(path)                     # a protected one is refused
    if _holds_something_else(path):
        raise FileExistsError(f"cannot write the plot to {path!r}: the file holds something other than a plot, "
                              "and the plot would replace it; remove it first or choose another path")
    _atomic_write(path, lambda f: fig.savefig(f, dpi=120, format=fmt))


def _plot_formats():
    """The image formats matplotlib can write (suffix -> description)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    return FigureCanvasAgg(Figure()).get_supported_filetypes()


#: how the image formats in which matplotlib does not name itself begin (JPEG, TIFF, WebP, gzip)
_IMAGE_MAGIC = {"jpg": (b"\xff\xd8\xff",), "jpeg": (b"\xff\xd8\xff",), "tif": (b"II*\x00", b"MM\x00*"),
                "tiff": (b"II*\x00", b"MM\x00*"), "webp": (b"RIFF",), "svgz": (b"\x1f\x8b",)}


def _holds_something_else(path):
    """Whether ``path`` is a non-empty file that an earlier plot cannot be: only a figure matplotlib
    wrote may be replaced (it names itself in the PNG, PDF, SVG and PostScript files it writes), or, in the
    formats where it does not, an image of the suffix's format. ``--plot notes.pdf`` replaced a
    user's text without a word."""
    if not (os.path.isfile(path) and os.path.getsize(path)):
        return False
    if os.path.getsize(path) > 64 << 20:  # no plot of this module is that large
        return True
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return True
    magic = _IMAGE_MAGIC.get(os.path.splitext(path)[1][1:].lower())
    return b"atplotlib" not in data and not (magic and data.startswith(magic))


def _plot_path_error(path):
    """Why ``--plot path`` cannot be written (None if it can): checked before a run of minutes. The
    format comes from the suffix: matplotlib added ``.png`` to a name without one (``--plot /tmp``
    wrote ``/tmp.png`` and said "plot written to /tmp") and refused an unknown one after the sweep."""
    if not path:
        return "must name an image file such as scaling.png, got ''"
    if os.path.isdir(path) or path.endswith(("/", os.sep)):
        return f"must name an image file such as scaling.png, got {path!r}, a folder"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"must be a file in an existing folder, got {path!r} ({folder!r} is not a folder)"
    if not os.access(folder, os.W_OK):
        return f"must be a file in a folder this user may write to, got {path!r} ({folder!r} is not writable)"
    if os.path.exists(path) and not os.access(path, os.W_OK):  # plot_scaling refuses it, after the sweep
        return f"names a write-protected file, got {path!r}; remove its protection or choose another path"
    if _holds_something_else(path):
        return (f"names a file that holds something other than a plot, got {path!r}: the plot would replace it; "
                "remove it first or choose another path")
    suffix = os.path.splitext(path)[1][1:].lower()
    formats = _plot_formats()
    if suffix not in formats:
        got = f"the suffix {'.' + suffix!r}" if suffix else "no suffix"
        return (f"must end in an image format's suffix ({', '.join('.' + f for f in sorted(formats))}), "
                f"got {path!r} with {got}")
    # where the atomic write will put its temporary file: a link's target's folder
    return _trial_plot_error(path, os.path.dirname(os.path.realpath(path)), suffix)


def _trial_plot_error(path, folder, fmt):
    """Why a small figure with text cannot be written in format ``fmt`` into ``folder`` (None if it can).
    ``os.access`` says yes to root in a folder such as /sys, which refuses new files, and ``.pgf``
    needs a LaTeX program to measure text: both failed only after the sweep."""
    import tempfile

    from matplotlib.figure import Figure

    from .io import _temp_prefix
    try:
        # named as io._atomic_write names its temporary file, so a name too long fails both or neither (the
        # name was not cut as the write cuts it, so a long valid name was refused)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=_temp_prefix(os.path.realpath(path)), suffix=".tmp")
    except OSError as exc:
        return f"must be a file in a folder this user may write to, got {path!r} ({folder!r}: {exc.strerror or exc})"
    try:
        with os.fdopen(fd, "wb") as f:
            fig = Figure(figsize=(1, 1))
            fig.text(0.5, 0.5, "µs")
            fig.savefig(f, format=fmt)
    except Exception as exc:  # whatever the writer raises (RuntimeError: 'xelatex' not found, ...)
        return f"names a format that cannot be written here, got {path!r}: {type(exc).__name__}: {exc}"
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    return None


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def add_arguments(parser):
    """Add the ``fffcpu bench`` options to ``parser``; returns it."""
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=None, metavar="NAME",
                        help=f"configurations to measure (default: all of {', '.join(CONFIGS)}); with "
                             f"--scaling, the inference configurations whose variant is swept over the "
                             f"width: {_scaling_configs_text()} (default: both)")
    parser.add_argument("--batches", nargs="+", type=positive_int, default=None, metavar="N",
                        help="batch sizes (default: each configuration's own; --scaling: 1 256)")
    parser.add_argument("--repeats", type=positive_int, default=None,
                        help="timed repeats per measurement, median reported "
                             "(default 7; --scaling 5; --quick 3)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="threads for Numba, BLAS and torch (default: as many as Numba can run, "
                             "normally the CPUs this process may use)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per line: a machine record, then one per measurement")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (smoke test)")
    parser.add_argument("--no-peers", dest="peers", action="store_false",
                        help="leave out the torch-based peers even when installed")
    parser.add_argument("--scaling", action="store_true",
                        help="cost per sample against training width 2^6 .. 2^16 "
                             "instead of the configurations (--configs picks the variants)")
    parser.add_argument("--plot", metavar="PATH", default=None,
                        help="with --scaling: write a plot there, in the format its suffix names "
                             "(.png, .svg, .pdf, ...; needs matplotlib)")
    return parser


def _scaling_configs_text():
    """``leaf-768-d8-l16 the leaf FFF and dense relu, ufb-768-d11 the neuron tree and dense gelu``."""
    parts = []
    for name, cfg in CONFIGS.items():
        if cfg["task"] == "inference":
            label, act = SCALING_VARIANTS[cfg["variant"]]
            parts.append(f"{name} the {label.replace(' kernels', '')} and dense {act}")
    return ", ".join(parts)


def _scaling_variants(configs):
    """The variants ``--scaling`` sweeps for ``--configs`` (None: all), or an error message."""
    if configs is None:
        return tuple(SCALING_VARIANTS), None
    training = [name for name in configs if CONFIGS[name]["task"] != "inference"]
    if training:
        inference = " ".join(name for name, cfg in CONFIGS.items() if cfg["task"] == "inference")
        return None, (f"--configs with --scaling must name inference configurations (of {inference}), got "
                      f"{' '.join(training)}: --scaling sweeps inference calls over the width")
    return tuple(dict.fromkeys(CONFIGS[name]["variant"] for name in configs)), None


def _scaling_sizes(quick):
    """``(widths, io, leaf_width)`` that ``fffcpu bench --scaling`` sweeps (``--quick``: tiny ones)."""
    if quick:
        return SCALING_WIDTHS[:3], 32, 4
    return SCALING_WIDTHS, SCALING_IO, SCALING_LEAF_WIDTH


def _physical_memory():
    """Bytes of memory this machine has, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _memory_error(args):
    """Why ``--batches`` cannot fit in memory (None if they may): the float32 inputs, the dense layer's
    hidden activations and the outputs of the largest batch, a lower bound of what its measurement
    holds. A batch of 10^12 failed with "Unable to allocate 87.3 TiB" after measuring had begun, naming
    no option."""
    total = _physical_memory()
    if not args.batches or total is None:
        return None
    batch = max(args.batches)
    if args.scaling:
        widths, io, _ = _scaling_sizes(args.quick)
        need, what = 4 * batch * (2 * io + max(widths)), "--scaling's widest layer"
    else:
        need = 0
        for name in args.configs or CONFIGS:
            cfg = CONFIGS[name]
            sizes = cfg["quick"]["sizes"] if args.quick else cfg["sizes"]
            if cfg["variant"] == "fff":
                width = sizes["leaf_width"] << sizes["depth"]
            else:
                width = ((2 << sizes["depth"]) - 1) * sizes["parallel_size"]
            size = 4 * batch * (sizes["input_width"] + width + sizes["output_width"])
            if size > need:
                need, what = size, name
    if need <= total:
        return None
    def gib(n):
        return f"{n / 2**30:.3g}" if n < 1000 * 2**30 else f"{n / 2**30:,.0f}"
    return (f"--batches {batch} needs at least {gib(need)} GiB for {what} (inputs, the dense layer's hidden "
            f"activations and outputs in float32), more than this machine's {gib(total)} GiB")


def add_parser(subparsers):
    """Add the ``bench`` subcommand to an ``argparse`` subparsers object; returns its parser."""
    parser = subparsers.add_parser(
        "bench", help="measure fffcpu against dense and peer implementations (SPEC §5)",
        description=DESCRIPTION)
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def run(args, stdout=None):
    """Handle parsed ``fffcpu bench`` arguments; returns the exit status."""
    stdout = stdout or sys.stdout
    if args.plot is not None and not args.scaling:
        print("fffcpu bench: error: --plot needs --scaling", file=sys.stderr)
        return 2
    if args.scaling and not args.peers:  # it was ignored without a word: the sweep measures no peers
        print("fffcpu bench: error: --no-peers applies to the configurations' run only: --scaling measures "
              "fffcpu and the dense layer, never the peers", file=sys.stderr)
        return 2
    if args.scaling:
        variants, error = _scaling_variants(args.configs)
        if error:
            print(f"fffcpu bench: error: {error}", file=sys.stderr)
            return 2
    max_threads = default_threads()
    if args.threads is not None and args.threads > max_threads:
        print(f"fffcpu bench: error: --threads must be at most {max_threads} (the threads Numba can run: "
              f"NUMBA_NUM_THREADS), got {args.threads}", file=sys.stderr)
        return 2
    for option, values in (("--configs", args.configs), ("--batches", args.batches)):
        repeated = [str(v) for i, v in enumerate(values or ()) if v in values[:i]]
        if repeated:  # each was measured again, its ratio against its own dense row
            print(f"fffcpu bench: error: {option} must name each value once, got {' '.join(map(str, values))} "
                  f"({', '.join(dict.fromkeys(repeated))} repeated)", file=sys.stderr)
            return 2
    error = _memory_error(args)
    if error:
        print(f"fffcpu bench: error: {error}", file=sys.stderr)
        return 2
    if args.plot is not None:  # checked before measuring, not after a run of minutes
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("fffcpu bench: matplotlib is not installed; no plot written", file=sys.stderr)
            return 1
        error = _plot_path_error(args.plot)
        if error:
            print(f"fffcpu bench: error: --plot {error}", file=sys.stderr)
            return 2
    threads = args.threads or max_threads
    repeats = args.repeats or (3 if args.quick else 5 if args.scaling else 7)
    min_time = 0.001 if args.quick else 0.02
    info = machine_info(threads)

    def emit(record):
        if args.json:
            print(json.dumps(record), file=stdout, flush=True)

    if args.json:
        emit(dict(record="machine", **info))
    else:
        print(f"machine: {format_machine(info)}", file=stdout)
        print(f"timing: median of {repeats} repeats, warm-up excluded", file=stdout, flush=True)

    if args.scaling:
        widths, io, leaf_width = _scaling_sizes(args.quick)
        results = run_scaling(widths=widths, batches=args.batches or (1, 256), repeats=repeats,
                              min_time=min_time, threads=threads, io=io, leaf_width=leaf_width, emit=emit,
                              variants=variants, quick=args.quick)
        if not args.json:
            leaf = f", leaf FFF leaf width {leaf_width}" if "fff" in variants else ""
            print(f"\ncost per sample, input and output width {io}{leaf}\n", file=stdout)
            print(format_scaling_table(results), file=stdout)
        if args.plot is not None:
            try:
                plot_scaling(results, args.plot, info)
            except ImportError:
                print("fffcpu bench: matplotlib is not installed; no plot written", file=sys.stderr)
                return 1
            if not args.json:
                print(f"\nplot written to {args.plot}", file=stdout)
        return 0

    configs = args.configs or list(CONFIGS)
    results = run_configs(configs, batches=args.batches, repeats=repeats, min_time=min_time,
                          threads=threads, quick=args.quick, peers=args.peers, emit=emit)
    if not args.json:
        print("", file=stdout)
        for name in configs:
            if args.quick:  # the rows keep the configuration's name, but not its sizes
                sizes = ", ".join(f"{k} {v}" for k, v in CONFIGS[name]["quick"]["sizes"].items())
                print(f"--quick: {name} at {sizes} (a smoke test, not the configuration's speed)",
                      file=stdout)
            else:
                print(f"{name}: {CONFIGS[name]['what']}", file=stdout)
        print("", file=stdout)
        print(format_table(results), file=stdout)
    return 0


def main(argv=None):
    """``python -m fffcpu.bench [options]``: the same as ``fffcpu bench``, through :func:`fffcpu.cli.main`
    (it parsed and ran here, so its errors were tracebacks and a closed pipe a BrokenPipeError)."""
    from .cli import main as cli_main
    return cli_main(["bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
