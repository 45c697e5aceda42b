"""benchmarks/leaf_phases.py, the leaf FFF's batch call split into its phases, at tiny sizes."""
import io

import numpy as np
import pytest

from .benchtools import import_fresh


@pytest.fixture
def phases(monkeypatch):
    return import_fresh(monkeypatch, "leaf_phases")


def test_the_phases_together_give_the_layers_output(phases):
    """route then leaves is the whole kernel: the rows time the code that layer(x) runs."""
    from benchmarks.common import LEAF_INFER, make_layer, make_x
    layer = make_layer("fff", LEAF_INFER)
    x = make_x(64, LEAF_INFER["input_width"])
    calls, y = phases.phase_calls(layer, x, 2)
    y[...] = np.nan
    calls["route"]()
    calls["leaves"]()
    # to the last bit or so: a kernel compiled on its own and one linked into its caller may
    # contract other FMAs (docs/kernels.md, round 17); the kernels' contract is 1e-5 in float32
    expected = layer(x)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    calls["leaves, 8 per leaf"]()  # 64 samples, 8 leaves: every leaf gets eight, in another order
    assert np.isfinite(y).all() and not np.allclose(y, expected)


def test_a_run_prints_every_row_with_its_ratio(phases):
    out = io.StringIO()
    assert phases.main(["--batch", "64", "--repeats", "1", "--rounds", "1"], stdout=out) == 0
    text = out.getvalue()
    rows = ("layer(x)", "route", "leaves ", "leaves, 8 per leaf", "floor", "weights leaf by leaf", "dense",
            "leaves after a flush")
    for row in rows:
        assert f"  {row}" in text, row
    assert text.count("dense / this") == len(rows) and text.count("GB/s") == 2


def test_counts_below_one_are_refused(phases, capsys):
    with pytest.raises(SystemExit):
        phases.main(["--rounds", "0"])
    assert "--rounds must be a positive integer, got 0" in capsys.readouterr().err
    import numba  # round 22's review: more threads than Numba has ended in set_num_threads' traceback
    most = numba.config.NUMBA_NUM_THREADS
    with pytest.raises(SystemExit):
        phases.main(["--threads", str(most + 1)])
    assert f"--threads must be at most {most} (NUMBA_NUM_THREADS), got {most + 1}" in capsys.readouterr().err
