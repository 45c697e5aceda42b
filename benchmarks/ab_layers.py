"""Paired A/B timing of whole ``layer(x)`` calls: the ``fffcpu`` package of a base revision against
the working tree's, both imported in one process, both layers computing with the same parameter
arrays.

Why, next to ``benchmarks.ab_kernels``: that tool times the batch kernels alone. A batch call also
runs Python around its kernel, and that Python runs with the caches just flushed by the previous
kernel, at several times its usual cost (docs/kernels.md, round 8). Only a ``layer(x)`` comparison
shows a change there. The two layers share one set of weights, so the memory traffic is that of one
layer, as in real use (two copies would double the working set and slow both).

Run from the repository root::

    python -m benchmarks.ab_layers --base HEAD~3
    python -m benchmarks.ab_layers --base a658ac4 --configs leaf-768-d8-l16 --blocks 16

``--base`` is a git revision of this repository (its ``fffcpu`` package is extracted with
``git archive``) or a folder holding an ``fffcpu`` package. The copy is imported as
``_ab_fffcpu_base``; it compiles its own kernels on first use (about a minute for both
configurations). ``FFFCPU_BENCH_TINY=1`` shrinks the configurations, as for the asv suites.

Not an asv benchmark: asv imports this module and finds nothing to time in it.
"""
import importlib
import io
import os
import shutil
import sys
import tarfile
import tempfile

from .ab_kernels import CONFIGS, check_counts, compare_calls, git_output, make_parser
from .common import make_layer, make_x

BASE_NAME = "_ab_fffcpu_base"


def extract_package(base, folder):
    """Write the ``fffcpu`` package of ``base`` (a git revision, or a folder holding ``fffcpu/``) to
    ``folder/_ab_fffcpu_base``; returns that path."""
    target = os.path.join(folder, BASE_NAME)
    source = os.path.join(base, "fffcpu")
    if os.path.isdir(base):
        if not os.path.isfile(os.path.join(source, "__init__.py")):
            raise SystemExit(f"--base: the folder {base!r} holds no fffcpu package (fffcpu/__init__.py)")
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        return target
    archive = git_output(["archive", "--format=tar", base, "fffcpu"], base,
                         "a git revision holding fffcpu/ or a folder")
    unpacked = os.path.join(folder, "_unpacked")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():  # git archive writes plain files under fffcpu/ only
            if not (member.isfile() or member.isdir()) or not member.name.startswith("fffcpu"):
                raise SystemExit(f"--base {base!r}: unexpected archive entry {member.name!r}")
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.11.4
        tar.extractall(unpacked, **safe)
    shutil.move(os.path.join(unpacked, "fffcpu"), target)
    return target


def import_package(folder):
    """Import ``folder/_ab_fffcpu_base`` (written by :func:`extract_package`) as a package of that name."""
    sys.path.insert(0, folder)
    try:
        sys.modules.pop(BASE_NAME, None)
        return importlib.import_module(BASE_NAME)
    finally:
        sys.path.remove(folder)


def base_layer(package, layer):
    """A layer of ``package`` (the base) of the same kind and configuration as ``layer`` that computes
    with ``layer``'s own parameter arrays (the arrays are shared; since ``layer.params`` became a
    checked ``Params`` mapping, the base may hold them in a dict of its own)."""
    other = getattr(package, type(layer).__name__)(**layer.config())
    other.params = layer.params
    return other


def compare(layers, x, blocks, per_block):
    """One paired comparison of ``layers["base"](x)`` and ``layers["work"](x)``, as a line of text."""
    calls = {k: (lambda f=f: f(x)) for k, f in layers.items()}
    return compare_calls(calls, x.dtype, blocks, per_block)


def main(argv=None, stdout=None):
    out = stdout or sys.stdout
    parser = make_parser("python -m benchmarks.ab_layers", __doc__,
                         "git revision, or folder holding an fffcpu package")
    args = parser.parse_args(argv)
    check_counts(parser, args)

    with tempfile.TemporaryDirectory() as folder:
        extract_package(args.base, folder)
        package = import_package(folder)
        try:
            print(f"base {args.base} against the working tree, layer(x) with shared parameters; "
                  f"{args.blocks} blocks of {args.calls} calls each; ratio = base median / working-tree "
                  "median (> 1: the working tree is faster)", file=out)
            for config in args.configs:
                variant, sizes, default_batch = CONFIGS[config]
                batch = args.batch or default_batch
                work = make_layer(variant, sizes)
                layers = {"base": base_layer(package, work), "work": work}
                line = compare(layers, make_x(batch, sizes["input_width"]), args.blocks, args.calls)
                print(f"{config} batch {batch}: {line}", file=out, flush=True)
        finally:
            for name in [m for m in sys.modules if m == BASE_NAME or m.startswith(BASE_NAME + ".")]:
                del sys.modules[name]
    return 0


if __name__ == "__main__":
    sys.exit(main())
