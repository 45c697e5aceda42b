"""argparse ``type=`` converters shared by the subcommands: each names the expected and the given value."""
import argparse
import math


def positive_int(text):
    """An integer >= 1."""
    return _int_at_least(text, 1)


def nonneg_int(text):
    """An integer >= 0."""
    return _int_at_least(text, 0)


def _int_at_least(text, minimum):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
    return value


def nonneg_float(text):
    """A finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def _in_range(text, closed, what):
    """A number in [0, 1] (``closed``) or [0, 1); a value outside is named with the whole range (-0.1
    was "expected a finite number >= 0", as if 5 would do)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (0 <= value <= 1 if closed else 0 <= value < 1):  # NaN fails both
        raise argparse.ArgumentTypeError(f"expected {what} in [0, {'1]' if closed else '1)'}, got {text}")
    return value


def probability(text):
    """A number in [0, 1]."""
    return _in_range(text, True, "a probability")


def fraction(text):
    """A number in [0, 1)."""
    return _in_range(text, False, "a fraction")
