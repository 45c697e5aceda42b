"""Helpers for the tests of the benchmark tools in benchmarks/ (a repository folder, not a package
that pip installs)."""
import importlib
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def import_fresh(monkeypatch, name):
    """Import ``benchmarks.<name>`` afresh from the repository, with the tiny configurations
    (``FFFCPU_BENCH_TINY=1``, read when ``benchmarks.common`` is imported)."""
    monkeypatch.setenv("FFFCPU_BENCH_TINY", "1")
    monkeypatch.syspath_prepend(ROOT)
    for module in [m for m in sys.modules if m == "benchmarks" or m.startswith("benchmarks.")]:
        monkeypatch.delitem(sys.modules, module)
    return importlib.import_module(f"benchmarks.{name}")


def in_git_checkout():
    """True when the repository is a git checkout and git runs."""
    try:
        done = subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=ROOT, capture_output=True)
    except OSError:
        return False
    return done.returncode == 0
