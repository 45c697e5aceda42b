"""The ``fffcpu`` command line: each subcommand lives with the code it drives and registers itself here."""
import argparse
import sys

from . import __version__


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fffcpu",
        description="Fast feedforward networks on the CPU: train, evaluate, benchmark and convert FFF models.",
    )
    parser.add_argument("--version", action="version", version=f"fffcpu {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    from .training import commands as training_commands
    training_commands.add_parsers(sub)
    from . import bench
    bench.add_parser(sub)
    from . import interop_cli
    interop_cli.add_parser(sub)
    from . import inspect_cmd
    inspect_cmd.add_parser(sub)
    from . import efff
    efff.add_parser(sub)
    return parser


def main(argv=None):
    """Entry point of the ``fffcpu`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.func(args)
    except (ImportError, ValueError, TypeError, KeyError, OSError, MemoryError, FloatingPointError) as exc:
        print(f"fffcpu {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0 if status is None else int(status)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
