"""``fffcpu convert IN OUT``: convert a layer between ``.pt``, ``.safetensors`` and fffcpu's ``.npz``.

The formats are told by the file suffixes (.pt/.pth, .safetensors, fffcpu's .npz or .fff). A
PyTorch state dict does not record the hyperparameters that its shapes cannot tell; give them with
--activation, --parallel-size (neuron tree: its rows count parallel_size * n_nodes; default 1) and,
where the key names leave it open, --kind and --prefix. An fffcpu file records all of them, so these
options are refused for an .npz/.fff input.
"""
import os
import re
import sys
import warnings

from . import activations
from . import interop
from .training.commands import _refuse_replacing
from ._argtypes import positive_int


def add_parser(subparsers):
    """Register the ``convert`` subcommand on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "convert",
        help="convert an FFF layer between .pt, .safetensors and fffcpu .npz",
        description=(__doc__ or "").split("\n\n", 1)[-1].strip(),  # no docstrings under python -OO
    )
    p.add_argument("src", metavar="IN", help="input file: .pt, .pth, .safetensors, or fffcpu's .npz/.fff")
    p.add_argument("dst", metavar="OUT", help="output file: .pt, .pth, .safetensors, or fffcpu's .npz/.fff")
    p.add_argument("--kind", choices=sorted(interop.PARAM_NAMES),
                   help="layer kind (default: detected from the key names)")
    p.add_argument("--prefix", help="key prefix of the layer inside a larger state dict, e.g. 'mlp.fff.' "
                                    "(default: detected when the file holds one FFF layer)")
    p.add_argument("--activation", choices=sorted(activations.ACTIVATIONS),
                   help="the layer's activation (default: relu for a leaf FFF, gelu for a neuron tree, "
                        "or what a .safetensors written by fffcpu records)")
    p.add_argument("--parallel-size", type=positive_int, dest="parallel_size",
                   help="neuron tree: number of parallel trees P (default 1)")
    p.add_argument("--dtype", choices=("float32", "float64"),
                   help="dtype of the converted layer (default: float64 if the file has float64 arrays, "
                        "else float32)")
    p.set_defaults(func=run_convert)
    return p


#: convert's options by the name of the keyword argument each one gives interop.convert
_OPTIONS = {"kind": "--kind", "prefix": "--prefix", "activation": "--activation",
            "parallel_size": "--parallel-size", "dtype": "--dtype"}


def _option_names(text):
    """An error of fffcpu.interop, which names its keyword arguments (``kind='fff'``, ``pass prefix=``,
    ``parallel_size does not apply``, ``parallel_size 3 times ...``), naming convert's options instead.
    Quoted text (paths, state-dict keys, prefixes) is left as it is."""
    # the library's advice to its Python callers, where convert's option says it all
    text = text.replace("pass parallel_size (or depth) to from_state_dict or fffcpu.interop.load_any (fffcpu "
                        "convert: --parallel-size)", "give --parallel-size")
    text = re.sub(r"\bkind='(\w+)' \(--kind \1\)", r"--kind \1", text)  # it names the option already
    head, sep, tail = text.partition(" does not apply to the file's layer")
    if sep:  # interop._check_config: "'f.pt': parallel_size, dtype does not apply ..."
        path, colon, names = head.rpartition(": ")
        text = path + colon + ", ".join(_OPTIONS.get(name, name) for name in names.split(", ")) + sep + tail
    parts = re.split(r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""", text)  # odd indices: quoted
    for i in range(0, len(parts), 2):
        part = re.sub(r"\b(kind|prefix)=$", r"--\1 ", parts[i])  # a quoted value follows
        part = re.sub(r"\b(kind|prefix)=", r"--\1", part)
        parts[i] = re.sub(r"(?<![-\w])parallel_size\b", "--parallel-size", part)
    return "".join(parts)


def run_convert(args):
    """Handler of ``fffcpu convert``: returns the exit status (0, or 2 with a message on stderr)."""
    options = {k: getattr(args, k) for k in ("activation", "parallel_size", "dtype")}
    options = {k: v for k, v in options.items() if v is not None}
    try:
        if not os.path.exists(args.src):  # it was "[Errno 2] No such file or directory: 'm.pt'"
            raise FileNotFoundError(f"input file IN {args.src!r} does not exist")
        if os.path.isdir(args.src):  # it was "[Errno 21] Is a directory: 'adir.npz'"
            raise IsADirectoryError(f"input file IN {args.src!r} is a directory: give a model file")
        given = [option for name, option in _OPTIONS.items() if getattr(args, name) is not None]
        interop.file_format(args.dst)  # an OUT it cannot write is said first, not after the options are fixed
        _refuse_replacing(f"OUT {args.dst!r}", args.dst, "converted model")
        if given and interop.file_format(args.src) == "npz":  # the library's message named keywords
            listed = given[0] if len(given) == 1 else ", ".join(given[:-1]) + " and " + given[-1]
            raise ValueError(f"{listed} do{'es' if len(given) == 1 else ''} not apply to IN {args.src!r}, an "
                             "fffcpu .npz/.fff file, which records its own kind and hyperparameters; leave "
                             f"{'it' if len(given) == 1 else 'them'} out")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            layer = interop.convert(args.src, args.dst, kind=args.kind, prefix=args.prefix, **options)
    except (ImportError, ValueError, TypeError, KeyError, OSError, MemoryError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"fffcpu convert: error: {_option_names(str(msg))}", file=sys.stderr)
        return 2
    for w in caught:  # class names left out of a .pt or .safetensors file: a line, not a traceback-like warning
        print(f"fffcpu convert: warning: {w.message}", file=sys.stderr)
    print(f"wrote {args.dst}: {layer!r}")
    return 0
