"""The ``fffcpu`` command line: each subcommand lives with the code it drives and registers itself here."""
import argparse
import os
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


_NOT_GIVEN = object()


def given_options(argv):
    """The ``dest`` names of the options given on the command line ``argv`` (a list of strings), as
    opposed to those left at their defaults: ``argv`` parsed once more with every default replaced
    by a marker. A subcommand reads this set (``args.given``) to refuse an option that has no effect
    in the configuration asked for, whatever its value (``--leaf-width 32 --variant neuron-tree``
    trained the same tree as without it)."""
    parser = build_parser()
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
            elif action.dest != argparse.SUPPRESS:
                action.default = _NOT_GIVEN
    return {name for name, value in vars(parser.parse_args(argv)).items() if value is not _NOT_GIVEN}


def _subcommand_parser(parser, command):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    raise LookupError(command)  # pragma: no cover


def repeated_option(parser, argv):
    """``(name, first, then)`` for the first option of ``argv``'s subcommand that takes a value and is
    given more than once (as typed: ``--configs``, ``--conf``), or None. argparse keeps the last one,
    so ``--batches 1 --batches 2`` measured batch 2 alone without a word. A flag given twice loses
    nothing and is let through. ``parser`` is the subcommand's."""
    by_name = parser._option_string_actions
    seen = {}
    for token in argv:
        if token == "--":
            break
        if not token.startswith("-") or token == "-":
            continue
        if token.startswith("--"):
            name = token.split("=", 1)[0]
            action = by_name.get(name)
            if action is None:  # an abbreviation, as argparse takes them
                found = {a for s, a in by_name.items() if s.startswith(name)}
                action = found.pop() if len(found) == 1 else None
        else:  # -o, -oFILE, or flags run together with one that takes a value last: -qo FILE
            for k in range(1, len(token)):
                name = "-" + token[k]
                action = by_name.get(name)
                if action is None or action.nargs != 0:  # not a flag: it takes the rest as its value
                    break
        if type(action) is not argparse._StoreAction:
            continue
        if action.dest in seen:
            return max(action.option_strings, key=len), seen[action.dest], name
        seen[action.dest] = name
    return None


def parse_args(argv=None):
    """The parsed command line ``argv`` (default ``sys.argv[1:]``), with ``given``: the set of
    :func:`given_options`. An option given twice ends the program with a usage error
    (:func:`repeated_option`); so does an option the subcommand does not know, with the subcommand's
    usage."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    sub = _subcommand_parser(parser, args.command)
    at = argv.index(args.command)
    if unknown:  # parse_args prints the top-level usage, even for an option after the subcommand
        owner = parser if set(unknown) & set(argv[:at]) else sub
        owner.error(f"unrecognized arguments: {' '.join(unknown)}")
    repeated = repeated_option(sub, argv[at + 1:])
    if repeated:
        option, first, then = repeated
        typed = "" if first == then == option else f" (as {first}, then as {then})"
        sub.error(f"{option} was given twice{typed}, and only the last would count: give it once, with all "
                  "its values")
    args.given = given_options(argv)
    return args


def main(argv=None):
    """Entry point of the ``fffcpu`` console script; returns the exit status."""
    args = parse_args(argv)
    try:
        status = args.func(args)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is handled below
    except BrokenPipeError:  # the reader went away (`fffcpu predict MODEL | head`): nothing to report
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the flush at exit would fail again
        except (OSError, ValueError):
            pass
        return 141  # what a shell reports for a command ended by SIGPIPE
    except (ImportError, ValueError, TypeError, KeyError, OSError, MemoryError, FloatingPointError) as exc:
        print(f"fffcpu {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback (files are written whole or not at all)
        print(f"fffcpu {args.command}: interrupted; no file was left half-written", file=sys.stderr)
        return 130  # what a shell reports for a command ended by SIGINT
    return 0 if status is None else int(status)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
