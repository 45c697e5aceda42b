"""The test run's hang guard (setup.cfg, [tool:pytest]): a stuck test ends the run, it does not hang it.

A kernel bug can loop forever inside nopython code, where neither a signal handler nor pytest can
interrupt it. The guard is faulthandler's watchdog thread, which needs no GIL: past
``faulthandler_timeout`` it dumps every thread's traceback and exits the process.
"""
import configparser
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pytest_ini():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg["tool:pytest"]


def test_the_guard_is_configured_with_a_timeout_ci_can_wait_for():
    ini = _pytest_ini()
    timeout = float(ini["faulthandler_timeout"])
    assert 60 <= timeout <= 600, timeout  # the slowest test, cold, is far below 60 s; CI allows 20 min
    assert ini.getboolean("faulthandler_exit_on_timeout")


def test_a_stuck_test_ends_the_run_with_a_traceback(tmp_path):
    # The project's own setup.cfg with the timeout cut to 2 s, on a test that sleeps far past it:
    # without exit-on-timeout the run would sleep on (and fail here only at the 90 s limit).
    (tmp_path / "test_stuck.py").write_text(textwrap.dedent("""
        import time

        def test_stuck():
            time.sleep(120)
    """))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(ROOT / "setup.cfg"),
         "--rootdir", str(tmp_path), "-o", "faulthandler_timeout=2", str(tmp_path / "test_stuck.py")],
        capture_output=True, text=True, timeout=90, cwd=tmp_path)
    assert proc.returncode != 0
    assert "Timeout" in proc.stderr and "test_stuck" in proc.stderr, proc.stderr[-2000:]
