"""benchmarks/ab_layers.py, the paired A/B timing of whole layer(x) calls of two fffcpu versions.

The extraction and import of a base package are tested for real (importing fffcpu compiles
nothing); the whole run uses the installed package for both versions, as tests/test_ab_kernels.py
does, so that the suite compiles no second copy of the kernels.
"""
import importlib
import io
import os
import sys

import numpy as np
import pytest

from .benchtools import ROOT, import_fresh, in_git_checkout



@pytest.fixture
def ab(monkeypatch):
    return import_fresh(monkeypatch, "ab_layers")


def _check_copy(ab, folder):
    package = ab.import_package(str(folder))
    try:
        assert package.__name__ == ab.BASE_NAME
        assert os.path.dirname(package.__file__) == os.path.join(str(folder), ab.BASE_NAME)
        assert hasattr(package, "FFF") and hasattr(package, "NeuronTreeFFF")
        assert str(folder) not in sys.path
    finally:
        for name in [m for m in sys.modules if m == ab.BASE_NAME or m.startswith(ab.BASE_NAME + ".")]:
            del sys.modules[name]


@pytest.mark.skipif(not in_git_checkout(), reason="not a git checkout")
def test_a_git_revision_is_extracted_and_imported_under_its_own_name(ab, tmp_path):
    path = ab.extract_package("HEAD", str(tmp_path))
    for name in ("kernels.py", "__init__.py"):
        assert os.path.isfile(os.path.join(path, name))
    _check_copy(ab, tmp_path)


def test_a_folder_holding_the_package_is_copied(ab, tmp_path):
    path = ab.extract_package(ROOT, str(tmp_path))
    assert os.path.isfile(os.path.join(path, "kernels.py"))
    assert not os.path.exists(os.path.join(path, "__pycache__"))  # no stale Numba cache copied along
    _check_copy(ab, tmp_path)


def test_a_bad_base_is_refused_naming_it(ab, tmp_path):
    with pytest.raises(SystemExit, match=r"--base .*'no-such-revision-or-file'"):
        ab.extract_package("no-such-revision-or-file", str(tmp_path))
    with pytest.raises(SystemExit, match="holds no fffcpu package"):
        ab.extract_package(str(tmp_path), str(tmp_path / "out"))


@pytest.mark.parametrize("variant", ["fff", "neuron_tree"])
def test_the_base_layer_computes_with_the_same_arrays(ab, variant):
    import fffcpu

    common = importlib.import_module("benchmarks.common")
    sizes = common.LEAF_INFER if variant == "fff" else common.TREE_INFER
    layer = common.make_layer(variant, sizes)
    other = ab.base_layer(fffcpu, layer)
    assert type(other) is type(layer) and other is not layer
    assert other.params.keys() == layer.params.keys()
    assert all(other.params[name] is a for name, a in layer.params.items())  # the arrays, not copies
    x = common.make_x(40, sizes["input_width"])
    np.testing.assert_array_equal(other(x), layer(x))
    layer.params[next(iter(layer.params))] *= 2  # in place: both see it
    np.testing.assert_array_equal(other(x), layer(x))


def test_a_whole_run_reports_a_ratio_per_config(ab, monkeypatch):
    import fffcpu

    extracted = []
    monkeypatch.setattr(ab, "extract_package", lambda base, folder: extracted.append(base))
    monkeypatch.setattr(ab, "import_package", lambda folder: fffcpu)
    out = io.StringIO()
    assert ab.main(["--base", "HEAD", "--batch", "40", "--blocks", "2", "--calls", "1"], stdout=out) == 0
    assert extracted == ["HEAD"]
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("base HEAD against the working tree, layer(x) with shared parameters; "
                               "2 blocks of 1 calls")
    assert [line.split(":")[0] for line in lines[1:]] == ["leaf-768-d8-l16 batch 40", "ufb-768-d11 batch 40"]
    for line in lines[1:]:
        assert " ratio " in line and line.endswith("outputs differ by 0.0e+00 (relative to the largest)")


@pytest.mark.parametrize("argv, message", [
    (["--calls", "0"], "--calls must be a positive integer, got 0"),
    (["--blocks", "-1"], "--blocks must be a positive integer, got -1"),
    (["--batch", "0"], "--batch must be a positive integer, got 0"),
])
def test_bad_numbers_are_refused(ab, capsys, argv, message):
    with pytest.raises(SystemExit):
        ab.main(["--base", "HEAD"] + argv)
    assert message in capsys.readouterr().err
