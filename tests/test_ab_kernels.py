"""benchmarks/ab_kernels.py, the paired A/B timing of two versions of the kernels.

Its pieces are tested one by one, and its whole run with the installed kernels standing in for
both versions: a real run compiles two more copies of the batch kernels (about half a minute each),
which the test suite does not pay for.
"""
import importlib
import io
import os

import numpy as np
import pytest

from .benchtools import ROOT, import_fresh, in_git_checkout

KERNELS_FILE = os.path.join(ROOT, "fffcpu", "kernels.py")


@pytest.fixture
def ab(monkeypatch):
    return import_fresh(monkeypatch, "ab_kernels")


def test_base_from_a_file(ab, tmp_path):
    path = tmp_path / "old_kernels.py"
    path.write_text("# an old version\n", encoding="utf-8")
    assert ab.kernels_source(str(path)) == "# an old version\n"


@pytest.mark.skipif(not in_git_checkout(), reason="not a git checkout")
def test_base_from_a_git_revision(ab):
    source = ab.kernels_source("HEAD")
    assert "def leaf_forward_batch(" in source and "def nt_forward_batch(" in source


def test_a_bad_base_is_refused_naming_it(ab):
    with pytest.raises(SystemExit, match=r"--base .*'no-such-revision-or-file'"):
        ab.kernels_source("no-such-revision-or-file")


def test_the_copies_are_compiled_without_the_disk_cache(ab, tmp_path):
    source = "from numba import njit\n\n\n@njit(cache=True)\ndef twice(x):\n    return 2 * x\n"
    module = ab.load_kernels(source, "_ab_test_twice", str(tmp_path))
    assert module.twice(21) == 42
    assert "cache=False" in (tmp_path / "_ab_test_twice.py").read_text(encoding="utf-8")
    assert not os.path.exists(tmp_path / "__pycache__")  # Numba wrote no cache index next to it


def test_a_file_that_is_not_the_kernels_is_refused(ab, tmp_path):
    with pytest.raises(SystemExit, match="cache=True"):
        ab.load_kernels("x = 1\n", "_ab_test_other", str(tmp_path))


def test_blocks_alternate_and_the_warm_calls_are_not_timed(ab):
    order = []
    calls = {"base": lambda: order.append("b"), "work": lambda: order.append("w")}
    times = ab.paired(calls, blocks=3, per_block=2, warm=1)
    assert "".join(order) == "bbb" "www" "www" "bbb" "bbb" "www"
    assert {k: len(v) for k, v in times.items()} == {"base": 6, "work": 6}
    assert all((v >= 0).all() for v in times.values())


@pytest.mark.parametrize("variant", ["fff", "neuron_tree"])
def test_a_kernel_call_computes_what_the_layer_computes(ab, variant):
    from fffcpu import kernels

    common = importlib.import_module("benchmarks.common")
    sizes = common.LEAF_INFER if variant == "fff" else common.TREE_INFER
    layer = common.make_layer(variant, sizes)
    x = common.make_x(40, sizes["input_width"])
    call = ab.kernel_call(variant, layer, x, kernels, 1)
    expected = layer(x)
    for _ in range(2):  # the leaf FFF alternates its leaf order: both orders
        np.testing.assert_allclose(call(), expected, rtol=1e-5, atol=1e-6)


def test_a_whole_run_reports_a_ratio_per_config_and_restores_the_threads(ab, monkeypatch):
    import numba
    from fffcpu import kernels

    loaded = []
    monkeypatch.setattr(ab, "load_kernels", lambda source, name, folder: loaded.append(name) or kernels)
    before = numba.get_num_threads()
    out = io.StringIO()
    argv = ["--base", KERNELS_FILE, "--batch", "40", "--blocks", "2", "--calls", "1", "--threads", "1"]
    assert ab.main(argv, stdout=out) == 0
    assert numba.get_num_threads() == before
    assert loaded == ["_ab_kernels_base", "_ab_kernels_work"]
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"base {KERNELS_FILE} against the working tree; 2 blocks of 1 calls")
    assert [line.split(":")[0] for line in lines[1:]] == ["leaf-768-d8-l16 batch 40 threads 1",
                                                          "ufb-768-d11 batch 40 threads 1"]
    for line in lines[1:]:
        assert " ratio " in line and line.endswith("outputs differ by 0.0e+00 (relative to the largest)")


@pytest.mark.parametrize("argv, message", [
    (["--calls", "0"], "--calls must be a positive integer, got 0"),
    (["--blocks", "-1"], "--blocks must be a positive integer, got -1"),
    (["--threads", "0"], "--threads must be integers from 1 to {most} (NUMBA_NUM_THREADS), got [0]"),
    # round 22's review: a count above Numba's was lowered to it without a word
    (["--threads", "1", "{over}"], "--threads must be integers from 1 to {most} (NUMBA_NUM_THREADS), got [1, {over}]"),
])
def test_bad_numbers_are_refused(ab, capsys, argv, message):
    import numba
    most = numba.config.NUMBA_NUM_THREADS
    with pytest.raises(SystemExit):
        ab.main(["--base", KERNELS_FILE] + [a.format(over=most + 1) for a in argv])
    assert message.format(most=most, over=most + 1) in capsys.readouterr().err
