"""Where one batch call of the leaf FFF spends its time: each phase beside the whole call, the
memory floor and the dense layer, all in one process.

Rows (median seconds per call; a ratio is the dense layer's time over the row's):

- ``layer(x)``: the public call, as ``fffcpu bench`` times it;
- ``route``: the first phase alone (``kernels.leaf_route_worker`` on every thread: every sample's
  leaf);
- ``leaves``: the second phase alone (the counting sort, then ``kernels.leaf_apply_worker`` on every
  thread), on that routing;
- ``leaves, 4 per leaf``: the second phase with exactly four samples per leaf (the mean of the
  real buckets), which shows what the uneven bucket sizes cost;
- ``leaves after a flush``: the second phase after reading a 64 MB array, so that its weights come
  from memory instead of the cache that the previous call left them in (the flush's own time is
  subtracted);
- ``floor``: reading every byte a call must read (the leaves' weights and ``x``) with a parallel sum
  and writing the output with a parallel copy, nothing else; repeated calls find it in the cache
  as the kernel's do;
- ``weights leaf by leaf``: reading the leaves' weights (each leaf's ``w1s`` then ``w2s``) in the
  leaf phase's order, tasks of ``LEAF_TASK`` leaves, each worker its own range first, the direction
  alternating from call to call, with no arithmetic: the memory's rate for the leaf phase's own
  pattern;
- ``dense``: ``act(x @ W1 + b1) @ W2 + b2`` of the same training width with NumPy's BLAS.

Run from the repository root::

    python -m benchmarks.leaf_phases                      # leaf-768-d8-l16, batch 1024, 2 threads
    python -m benchmarks.leaf_phases --threads 1 --rounds 3

``FFFCPU_BENCH_TINY=1`` shrinks the configuration, as for the asv suites. Not an asv benchmark: asv
imports this module and finds nothing to time in it.
"""
import argparse
import sys

import numpy as np

from .common import LEAF_INFER, SEED, TINY, make_layer, make_x

#: what the flush reads: twice the 32 MB L3 of the machine the docs measured on (1 MB when tiny)
FLUSH_BYTES = (1 if TINY else 64) << 20


def _kernels():
    """The functions this tool compiles (Numba, no disk cache), made on first use: the two phases of
    ``kernels.leaf_forward_batch`` as parallel loops over its own workers, and the floor's passes."""
    from numba import njit, prange

    from fffcpu import kernels as k

    @njit(parallel=True, fastmath=k.FASTMATH, cache=False)
    def route(node_weights, node_biases, X, leaf, n_workers):
        n = X.shape[0]
        depth = 0
        while (1 << depth) < node_weights.shape[0] + 1:
            depth += 1
        counters = k.set_all(np.empty(16 * n_workers, np.int64), 0)  # np.zeros: a launch of its own
        perm = np.empty(n, np.int64)
        right = np.empty(n, np.bool_)
        right2 = np.empty(n, np.bool_)
        stacks = np.empty((n_workers, 2 * depth + 4, 4), np.int64)
        no_logits = np.empty((0, 2), X.dtype)
        for t in prange(n_workers):
            k.leaf_route_worker(node_weights, node_biases, X, perm, leaf, right, right2, stacks[t], no_logits,
                                counters, t, n_workers)

    @njit(parallel=True, fastmath=k.FASTMATH, cache=False)
    def apply(w1s, b1s, w2s, b2s, act, mw1, mb1, mw2, mb2, s, X, Y, leaf, n_workers, reverse):
        n = X.shape[0]
        L = w1s.shape[0]
        counters = k.set_all(np.empty(16 * n_workers, np.int64), 0)  # np.zeros: a launch of its own
        perm = np.empty(n, np.int64)
        offsets = np.empty(L + 1, np.int64)
        k.bucket_by(leaf, L, offsets, perm)
        H = np.empty((n, w1s.shape[2]), X.dtype)
        HM = np.empty((n, mw1.shape[2]), X.dtype)
        stream = Y.size * Y.itemsize >= k.STREAM_MIN_BYTES
        for t in prange(n_workers):
            k.leaf_apply_worker(w1s, b1s, w2s, b2s, act, mw1, mb1, mw2, mb2, s, X, perm, offsets, H, HM, Y,
                                stream, counters, 0, t, n_workers, reverse)

    @njit(parallel=True, fastmath=True, cache=False)
    def parallel_sum(a):
        total = np.float32(0)
        for i in prange(a.size):
            total += a[i]
        return total

    @njit(parallel=True, fastmath=True, cache=False)
    def leafwise_read(w1f, w2f, n_workers, reverse, sums):
        L = w1f.shape[0]
        n_tasks = (L + k.LEAF_TASK - 1) // k.LEAF_TASK
        counters = k.set_all(np.empty(16 * n_workers, np.int64), 0)  # np.zeros: a launch of its own
        for t in prange(n_workers):
            total = np.float32(0)
            v = 0
            while True:
                v, task = k.next_task(counters, 0, t, v, n_workers, n_tasks, reverse)  # the leaf phase's order
                if task < 0:
                    break
                j, stop, step = k.task_leaves(task, L, reverse)
                while j != stop:
                    for i in range(w1f.shape[1]):
                        total += w1f[j, i]
                    for i in range(w2f.shape[1]):
                        total += w2f[j, i]
                    j += step
            sums[t] = total

    @njit(parallel=True, cache=False)
    def parallel_copy(src, dst):
        for i in prange(src.size):
            dst[i] = src[i]

    return route, apply, parallel_sum, parallel_copy, leafwise_read


def phase_calls(layer, x, n_threads):
    """``(calls, y)``: name -> callable of no arguments, for every row but ``dense`` (see the module
    docstring), and the output array that the ``leaves`` rows write."""
    from fffcpu import _kernel_api as api
    from fffcpu import kernels as k
    from fffcpu.activations import ACTIVATION_CODES

    route, apply, parallel_sum, parallel_copy, leafwise_read = _kernels()
    args = api.leaf_kernel_args(layer.params)
    nw, nb, w1s, b1s, w2s, b2s = args[:6]
    master = args[6:]
    act = ACTIVATION_CODES[layer.activation]
    n = x.shape[0]
    n_workers = max(1, min(n_threads, n // k.LEAF_MIN_SAMPLES))
    y = api.batch_output(n, layer.output_width, x.dtype, k)
    leaf = np.zeros(n, np.int64)
    if layer.depth:
        route(nw, nb, x, leaf, n_workers)
    even = np.random.default_rng(SEED).permutation(n) * layer.n_leaves // n  # n / leaves per leaf
    flush = np.ones(FLUSH_BYTES // 4, np.float32)
    state = {"reverse": False}

    def leaves(which):
        def call():
            state["reverse"] = not state["reverse"]  # as the layers alternate the leaf order
            apply(w1s, b1s, w2s, b2s, act, *master, x, y, which, n_workers, state["reverse"])
        return call

    def floor():
        parallel_sum(w1s.reshape(-1))
        parallel_sum(w2s.reshape(-1))
        parallel_sum(x.reshape(-1))
        parallel_copy(x.reshape(-1)[:y.size], y.reshape(-1)[:x.size])

    w1f, w2f = w1s.reshape(w1s.shape[0], -1), w2s.reshape(w2s.shape[0], -1)
    sums = np.zeros(n_workers, x.dtype)

    def leafwise():
        state["reverse"] = not state["reverse"]
        leafwise_read(w1f, w2f, n_workers, state["reverse"], sums)

    return {"layer(x)": lambda: layer(x),
            "route": lambda: route(nw, nb, x, leaf, n_workers),
            "leaves": leaves(leaf),
            f"leaves, {max(1, n // layer.n_leaves)} per leaf": leaves(even),  # (fewer samples than leaves: one each)
            "flush": lambda: parallel_sum(flush),
            "flush + leaves": lambda: (parallel_sum(flush), leaves(leaf)()),
            "floor": floor,
            "weights leaf by leaf": leafwise}, y


def measure_rows(layer, x, n_threads, repeats, rounds):
    """``rounds`` lists of ``(row, seconds)``, each row timed by ``fffcpu.bench.measure``."""
    from fffcpu import bench

    calls = phase_calls(layer, x, n_threads)[0]
    dense_w = bench.dense_weights_of(layer)
    calls["dense"] = lambda: bench.dense_forward(x, *dense_w, layer.activation)
    results = []
    with bench._Threads(n_threads):
        for _ in range(rounds):
            t = {name: bench.measure(fn, repeats=repeats if name != "dense" else max(3, repeats // 3))[0]
                 for name, fn in calls.items()}
            t["leaves after a flush"] = max(t.pop("flush + leaves") - t.pop("flush"), 0.0)
            results.append(t)
    return results


def format_round(t, n_bytes, weight_bytes):
    """The lines of one round: each row's time, the dense ratio, and the rates of the rows that only
    move memory (``n_bytes`` for the floor, ``weight_bytes`` for the weights leaf by leaf)."""
    moved = {"floor": n_bytes, "weights leaf by leaf": weight_bytes}
    lines = []
    for name, seconds in t.items():
        extra = f"  ({moved[name] / seconds / 1e9:.0f} GB/s)" if name in moved and seconds else ""
        ratio = t["dense"] / seconds if seconds else float("inf")
        lines.append(f"  {name:24s} {seconds * 1e3:8.3f} ms  dense / this {ratio:7.1f}x{extra}")
    return lines


def main(argv=None, stdout=None):
    out = stdout or sys.stdout
    parser = argparse.ArgumentParser(prog="python -m benchmarks.leaf_phases", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1024, help="samples per call (default 1024)")
    from fffcpu.bench import default_threads
    most = default_threads()  # the threads Numba started with: no call can use more
    parser.add_argument("--threads", type=int, default=min(2, most),
                        help=f"Numba and BLAS threads, at most {most} (default {min(2, most)})")
    parser.add_argument("--repeats", type=int, default=21, help="timed repeats per row (default 21)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of all rows (default 2)")
    args = parser.parse_args(argv)
    for name in ("batch", "threads", "repeats", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer, got {getattr(args, name)}")
    if args.threads > most:  # set_num_threads' traceback before
        parser.error(f"--threads must be at most {most} (NUMBA_NUM_THREADS), got {args.threads}")
    layer = make_layer("fff", LEAF_INFER)
    x = make_x(args.batch, LEAF_INFER["input_width"])
    w = layer.params
    weight_bytes = w["w1s"].nbytes + w["w2s"].nbytes
    n_bytes = weight_bytes + x.nbytes + args.batch * layer.output_width * x.itemsize
    print(f"leaf FFF {LEAF_INFER}, batch {args.batch}, {args.threads} thread(s)", file=out)
    for r, t in enumerate(measure_rows(layer, x, args.threads, args.repeats, args.rounds)):
        print(f"round {r + 1}:", file=out)
        for line in format_round(t, n_bytes, weight_bytes):
            print(line, file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
