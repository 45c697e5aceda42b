"""Paired A/B timing of the batch kernels: a base version of ``fffcpu/kernels.py`` against the
working tree's, both compiled in one process.

Why paired: a shared machine drifts by 10-50 % within minutes (docs/kernels.md, round 7), so two
separate ``fffcpu bench`` runs cannot show a 5 % change. Here both versions run on the same arrays
in alternating blocks of calls (the first calls of every block are discarded), and the ratio of their
medians is reported. This is how the "paired" numbers in docs/kernels.md were measured.

Run from the repository root::

    python -m benchmarks.ab_kernels --base HEAD~1
    python -m benchmarks.ab_kernels --base main --configs ufb-768-d11 --batch 1024 --threads 1 2
    python -m benchmarks.ab_kernels --base /path/to/old_kernels.py --blocks 16

``--base`` is a git revision (its ``fffcpu/kernels.py``) or a file. Both versions are loaded from
copies with Numba's disk cache off, so both are compiled the same way, here (about half a minute per
version and configuration). The base must take the same kernel arguments as the working tree's.
``FFFCPU_BENCH_TINY=1`` shrinks the configurations, as for the asv suites.

Not an asv benchmark: asv imports this module and finds nothing to time in it.
"""
import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from .common import LEAF_INFER, TREE_INFER, make_layer, make_x

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = os.path.join("fffcpu", "kernels.py")
CONFIGS = {"leaf-768-d8-l16": ("fff", LEAF_INFER, 1024), "ufb-768-d11": ("neuron_tree", TREE_INFER, 4096)}


def kernels_source(base):
    """The text of ``fffcpu/kernels.py`` at ``base``: a file path, or a git revision of this repository."""
    if os.path.isfile(base):
        with open(base, encoding="utf-8") as f:
            return f.read()
    source = git_output(["show", f"{base}:{KERNELS}"], base, f"a file or a git revision holding {KERNELS}")
    return source.decode("utf-8")


def git_output(args, base, expected):
    """The standard output (bytes) of ``git *args`` in this repository, reading revision ``base``;
    on failure, exits naming ``--base``, what it must be (``expected``) and git's message."""
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=False)
    except OSError as e:  # no git on the machine
        raise SystemExit(f"--base: cannot run git to read revision {base!r}: {e}") from None
    if done.returncode != 0:
        raise SystemExit(f"--base must be {expected}, got {base!r}: "
                         f"{done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def load_kernels(source, name, folder):
    """Import ``source`` as module ``name`` from a copy in ``folder``, with Numba's disk cache off."""
    if "cache=True" not in source:
        raise SystemExit(f"{name}: no 'cache=True' in the kernels source; is it fffcpu/kernels.py?")
    path = os.path.join(folder, f"{name}.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(source.replace("cache=True", "cache=False"))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kernel_call(variant, layer, x, module, n_threads):
    """A callable of no arguments: one batch-kernel call of ``module`` on ``x``, output allocated per
    call as the layers do; the leaf FFF alternates its leaf order from call to call as they do too."""
    from fffcpu import _kernel_api as api
    from fffcpu.activations import ACTIVATION_CODES

    n, width = x.shape[0], layer.output_width
    act = ACTIVATION_CODES[layer.activation]
    if variant == "fff":
        args = api.leaf_kernel_args(layer.params)
        state = {"reverse": False}

        def call():
            state["reverse"] = not state["reverse"]
            y = api.batch_output(n, width, x.dtype, module)
            module.leaf_forward_batch(*args[:6], act, *args[6:], x, y, n_threads, True, state["reverse"])
            return y
        return call
    w_in, b_in, w_out_t = layer._kernel_arrays()

    def call():
        y = api.batch_output(n, width, x.dtype, module)
        module.nt_forward_batch(w_in, b_in, w_out_t, layer.depth, layer.parallel_size, act, x, y, n_threads,
                                True)
        return y
    return call


def paired(calls, blocks, per_block, warm=3):
    """Time ``calls`` (name -> callable) in ``blocks`` alternating blocks of ``per_block`` timed calls
    each (after ``warm`` untimed ones); the order flips every block. Returns name -> seconds (array)."""
    names = list(calls)
    times = {name: [] for name in names}
    for b in range(blocks):
        for name in (names if b % 2 == 0 else names[::-1]):
            fn = calls[name]
            for i in range(warm + per_block):
                t0 = time.perf_counter()
                fn()
                t1 = time.perf_counter()
                if i >= warm:
                    times[name].append(t1 - t0)
    return {name: np.array(v) for name, v in times.items()}


def make_parser(prog, doc, base_help):
    """The command line both A/B tools share: ``--base`` (required), ``--configs``, ``--batch``,
    ``--blocks``, ``--calls``; the description is the first paragraph of ``doc``."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    parser.add_argument("--base", required=True, help=base_help)
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=sorted(CONFIGS))
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: 1024 leaf, 4096 ufb)")
    parser.add_argument("--blocks", type=int, default=8, help="alternating blocks per version (default 8)")
    parser.add_argument("--calls", type=int, default=25, help="timed calls per block (default 25)")
    return parser


def check_counts(parser, args):
    """Refuse (``parser.error``) a ``--batch``, ``--blocks`` or ``--calls`` below 1."""
    for name in ("batch", "blocks", "calls"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be a positive integer, got {value}")


def main(argv=None, stdout=None):
    out = stdout or sys.stdout
    parser = make_parser("python -m benchmarks.ab_kernels", __doc__,
                         "git revision or file of the base fffcpu/kernels.py")
    import numba

    from fffcpu.bench import default_threads
    most = default_threads()  # the threads Numba started with: no call can use more
    parser.add_argument("--threads", type=int, nargs="+", default=[min(2, most)], metavar="N",
                        help=f"thread counts to compare at, each at most {most} (default {min(2, most)})")
    args = parser.parse_args(argv)
    check_counts(parser, args)
    if min(args.threads) < 1 or max(args.threads) > most:  # a larger count was lowered without a word
        parser.error(f"--threads must be integers from 1 to {most} (NUMBA_NUM_THREADS), got {args.threads}")
    base_source = kernels_source(args.base)
    with open(os.path.join(ROOT, KERNELS), encoding="utf-8") as f:
        work_source = f.read()
    threads_before = numba.get_num_threads()
    try:
        with tempfile.TemporaryDirectory() as folder:
            modules = {"base": load_kernels(base_source, "_ab_kernels_base", folder),
                       "work": load_kernels(work_source, "_ab_kernels_work", folder)}
            print(f"base {args.base} against the working tree; {args.blocks} blocks of {args.calls} "
                  "calls each; ratio = base median / working-tree median (> 1: the working tree is "
                  "faster)", file=out)
            for config in args.configs:
                variant, sizes, default_batch = CONFIGS[config]
                batch = args.batch or default_batch
                layer = make_layer(variant, sizes)
                x = make_x(batch, sizes["input_width"])
                for n_threads in args.threads:
                    numba.set_num_threads(n_threads)
                    line = compare(variant, layer, x, modules, n_threads, args.blocks, args.calls)
                    print(f"{config} batch {batch} threads {n_threads}: {line}", file=out, flush=True)
    finally:
        numba.set_num_threads(threads_before)
    return 0


def compare(variant, layer, x, modules, n_threads, blocks, per_block):
    """One paired comparison of ``modules["base"]`` and ``modules["work"]``, as a line of text."""
    calls = {k: kernel_call(variant, layer, x, m, n_threads) for k, m in modules.items()}
    return compare_calls(calls, x.dtype, blocks, per_block)


def compare_calls(calls, dtype, blocks, per_block):
    """Paired timing of ``calls["base"]`` and ``calls["work"]`` (callables of no arguments returning
    their outputs, of ``dtype``) as a line of text: medians, minima, their ratio, and how far the
    outputs differ."""
    ys = {k: fn() for k, fn in calls.items()}  # compiles both, untimed
    scale = max(float(np.abs(ys["base"]).max()), float(np.finfo(dtype).tiny))
    diff = float(np.abs(ys["work"] - ys["base"]).max()) / scale
    t = paired(calls, blocks, per_block)
    b, w = np.median(t["base"]), np.median(t["work"])
    return (f"base {b * 1e3:.3f} ms (min {t['base'].min() * 1e3:.3f}), working tree {w * 1e3:.3f} ms "
            f"(min {t['work'].min() * 1e3:.3f}), ratio {b / w:.3f}; outputs differ by {diff:.1e} "
            "(relative to the largest)")

if __name__ == "__main__":
    sys.exit(main())
