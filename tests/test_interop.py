"""Import/export of PyTorch FFF weights (fffcpu.interop), without torch.

The golden vectors in tests/data/ were made from the PyTorch packages by tests/data/make_golden.py, so
the cross-checks of tests/test_crosscheck_torch.py also run here, on stored numbers.
"""
import argparse
import builtins
import importlib.util
import json
import os
import pathlib
import re
import warnings

import numpy as np
import pytest

import fffcpu
from fffcpu import interop, interop_cli

from . import canary
from .fuzzing import damaged_copies
from .gradcheck import assert_rel

DATA = pathlib.Path(__file__).resolve().parent / "data"
ROOT = DATA.parents[1]
LEAF_NAMES = ("node_weights", "node_biases", "w1s", "b1s", "w2s", "b2s")
MASTER_NAMES = ("magic_w1", "magic_b1", "magic_w2", "magic_b2", "k")
NT_NAMES = ("linear_in.weight", "linear_in.bias", "linear_out.weight")
LEAF_FILES = sorted(DATA.glob("leaf_*.npz"))
NT_FILES = sorted(DATA.glob("neuron_tree_*.npz"))
#: fffcpu's own format, holding the weights of a golden file whose x, y_hard, y_soft it must reproduce
FFFCPU_FILE, FFFCPU_FILE_SOURCE = DATA / "fffcpu_leaf_d2_master_sigmoid.npz", DATA / "leaf_d2_master_sigmoid.npz"


def golden(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def leaf_state(rng, D=4, l=3, O=2, depth=2, prefix=""):
    N, L = 2 ** depth - 1, 2 ** depth
    shapes = {"node_weights": (N, D), "node_biases": (N, 1), "w1s": (L, D, l), "b1s": (L, l),
              "w2s": (L, l, O), "b2s": (L, O)}
    return {prefix + k: rng.normal(size=s) for k, s in shapes.items()}


def nt_state(rng, D=4, O=2, depth=2, P=1, prefix=""):
    rows = P * (2 ** (depth + 1) - 1)
    return {prefix + "linear_in.weight": rng.normal(size=(rows, D)),
            prefix + "linear_in.bias": rng.normal(size=rows),
            prefix + "linear_out.weight": rng.normal(size=(O, rows))}


# ---------------------------------------------------------------------------------------------
# golden vectors from the PyTorch packages
# ---------------------------------------------------------------------------------------------
def test_golden_files_are_there_small_and_float64():
    assert len(LEAF_FILES) >= 5 and len(NT_FILES) >= 3
    # every activation, and the eFFF master leaf, has a golden file (docs/porting.md lists them)
    acts = {str(golden(p)["activation"]) for p in LEAF_FILES + NT_FILES}
    assert acts == {"relu", "gelu", "tanh", "sigmoid", "identity"}
    assert any("magic_w1" in golden(p) for p in LEAF_FILES)
    assert FFFCPU_FILE.stat().st_size < 20_000
    for path in LEAF_FILES + NT_FILES:
        assert path.stat().st_size < 100_000, path.name
        for name, arr in golden(path).items():
            assert arr.dtype.kind in "fiU", (path.name, name, arr.dtype)
            if arr.dtype.kind == "f":
                assert arr.dtype == np.float64, (path.name, name)


@pytest.mark.parametrize("path", LEAF_FILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_leaf_golden(path, backend):
    g = golden(path)
    names = LEAF_NAMES + (MASTER_NAMES if "magic_w1" in g else ())  # eFFF: the master leaf too
    state = {k: g[k] for k in names + ("depth",)}  # as the package's state_dict, depth included
    layer = interop.from_torch_state_dict(state, activation=str(g["activation"]), backend=backend)
    assert layer.dtype is np.float64 and layer.depth == int(g["depth"])
    assert layer.master_leaf == (g["magic_w1"].shape[2] if "magic_w1" in g else 0)
    x = g["x"]
    assert_rel(layer.soft_forward(x), g["y_soft"], 1e-12, "soft forward")
    assert_rel(layer(x), g["y_hard"], 1e-12, "hard forward")
    assert (layer.leaf_index(x) == g["leaf"]).all()
    if "y_package_eval" in g:  # the package's eval omits b2s (SPEC §1)
        assert_rel(layer(x) - g["b2s"][g["leaf"]], g["y_package_eval"], 1e-12, "package eval")
    else:  # its eval crashes at depth 0; it has no master leaf
        assert int(g["depth"]) == 0 or layer.master_leaf
    y, cache = layer.train_forward(x)
    assert_rel(y, g["y_soft"], 1e-12, "train_forward")
    assert layer.hardening_loss(cache) == pytest.approx(float(g["l_harden"]), rel=1e-12, abs=1e-15)
    grads, dL_dx = layer.backward(cache, g["dL_dy"], hardening=float(g["hardening"]))
    assert sorted(grads) == sorted(names)
    for name in names:
        if grads[name].size:
            assert_rel(grads[name], g["grad_" + name], 1e-10, name)
    assert_rel(dL_dx, g["grad_x"], 1e-10, "dL_dx")


@pytest.mark.parametrize("path", NT_FILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_neuron_tree_golden(path, backend):
    g = golden(path)
    P = int(g["parallel_size"])
    layer = interop.from_torch_state_dict({k: g[k] for k in NT_NAMES}, parallel_size=P,
                                          activation=str(g["activation"]), backend=backend)
    assert (layer.kind, layer.depth, layer.parallel_size) == ("neuron_tree", int(g["depth"]), P)
    x = g["x"]
    assert_rel(layer(x), g["y"], 1e-12, "hard forward")
    assert (layer.path(x) == g["rows"] % layer.n_nodes).all()
    y, cache = layer.train_forward(x)
    assert_rel(y, g["y"], 1e-12, "masked forward")
    grads, dL_dx = layer.backward(cache, g["dL_dy"])
    for name in NT_NAMES:
        assert_rel(grads[name], g["grad_" + name], 1e-10, name)
    assert_rel(dL_dx, g["grad_x"], 1e-10, "dL_dx")


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_fffcpu_format_golden_file(backend):
    # the layout docs/porting.md describes ("fffcpu's own file format"), read here by hand first
    with np.load(FFFCPU_FILE, allow_pickle=False) as z:
        members = {k: z[k] for k in z.files}
    raw = members.pop("__header__")
    assert raw.dtype == np.uint8 and raw.ndim == 1
    header = json.loads(raw.tobytes().decode("utf-8"))
    assert {"format", "format_version", "fffcpu_version", "kind", "config", "arrays"} <= set(header)
    assert (header["format"], header["format_version"], header["kind"]) == ("fffcpu-layer", 1, "fff")
    config = header["config"]
    assert (config["activation"], config["master_leaf"], config["dtype"]) == ("sigmoid", 3, "float64")
    assert [a["name"] for a in header["arrays"]] == list(members) == list(LEAF_NAMES + MASTER_NAMES)
    g = golden(FFFCPU_FILE_SOURCE)
    for entry in header["arrays"]:  # PyTorch names and layout, no "depth"
        arr = members[entry["name"]]
        assert (list(arr.shape), arr.dtype.name) == (entry["shape"], entry["dtype"])
        assert np.array_equal(arr, g[entry["name"]])
    assert config["depth"] == int(g["depth"]) and config["activation"] == str(g["activation"])
    # and fffcpu reads it as the golden file's layer
    layer = fffcpu.load(FFFCPU_FILE)
    layer.backend = backend
    assert layer.config() == dict(config, backend=backend)
    assert_rel(layer(g["x"]), g["y_hard"], 1e-12, "hard forward")
    assert_rel(layer.soft_forward(g["x"]), g["y_soft"], 1e-12, "soft forward")


# ---------------------------------------------------------------------------------------------
# state dicts: detection, prefixes, errors
# ---------------------------------------------------------------------------------------------
def test_prefix_is_detected_and_other_modules_ignored():
    rng = np.random.default_rng(0)
    state = leaf_state(rng, prefix="mlp.fff.")
    state.update({"mlp.norm.weight": np.ones(2), "head.weight": np.ones((2, 2))})
    assert interop.detect_kind(state) == ("fff", "mlp.fff.")
    layer = interop.from_torch_state_dict(state)
    assert np.array_equal(layer.params["w1s"], state["mlp.fff.w1s"])
    assert interop.detect_kind(nt_state(rng, prefix="encoder.0.ffn.")) == ("neuron_tree", "encoder.0.ffn.")


def test_checkpoint_wrapper_and_usage_counters():
    rng = np.random.default_rng(1)
    state = leaf_state(rng)
    state.update(depth=np.array(2), node_usage=np.arange(3.0), leaf_usage=np.arange(4.0))
    layer = interop.from_torch_state_dict({"state_dict": state, "epoch": 3})
    assert sorted(layer.params) == sorted(LEAF_NAMES)


def test_model_wrapper_child_modules_and_lookalike_keys():
    rng = np.random.default_rng(5)
    state = leaf_state(rng, prefix="fff.")
    # a child module's parameters under the layer's prefix are not the layer's own arrays
    state.update({"fff.activation.weight": np.ones(3), "fff.proj.bias": np.ones(2)})
    # a key that merely ends with an anchor's text belongs to no FFF layer
    state.update({"decoder.gate_w1s": np.ones((2, 2)), "xlinear_in.weight": np.ones((2, 2))})
    assert interop.detect_kind(state) == ("fff", "fff.")
    layer = interop.from_torch_state_dict({"model": state, "optimizer": {"lr": 0.1}})
    assert sorted(layer.params) == sorted(LEAF_NAMES)
    np.testing.assert_array_equal(layer.params["w2s"], state["fff.w2s"])


def test_to_numpy_widens_half_floats_only():
    torch = pytest.importorskip("torch", reason="needs torch")
    assert interop.to_numpy(torch.ones(2, dtype=torch.float16)).dtype == np.float32
    assert interop.to_numpy(torch.ones(2, dtype=torch.bfloat16)).dtype == np.float32
    for dt, want in ((torch.int8, np.int8), (torch.int16, np.int16), (torch.uint8, np.uint8),
                     (torch.float64, np.float64)):
        assert interop.to_numpy(torch.tensor([1, 2], dtype=dt)).dtype == want


def test_several_layers_need_a_prefix():
    rng = np.random.default_rng(2)
    state = {**leaf_state(rng, prefix="a."), **leaf_state(rng, prefix="b."), **nt_state(rng, prefix="c.")}
    with pytest.raises(KeyError, match="found 3 FFF layers.*prefix="):
        interop.from_torch_state_dict(state)
    assert interop.from_torch_state_dict(state, prefix="b.").kind == "fff"
    assert interop.from_torch_state_dict(state, prefix="c.").kind == "neuron_tree"
    with pytest.raises(KeyError, match="kind='neuron_tree' was asked for"):
        interop.from_torch_state_dict(state, kind="neuron_tree", prefix="a.")
    # a prefix without its dot said only "found no FFF layer under prefix 'b'"
    with pytest.raises(KeyError, match="found no FFF layer under prefix 'b', but one under 'b.': a prefix is "
                                       "the keys' whole start, ending with its dot"):
        interop.from_torch_state_dict(state, prefix="b")


def test_integer_weights_are_taken_as_values_with_a_warning():
    """int8 weights (often quantized values, which need their scales) loaded as float32 without a word."""
    state = leaf_state(np.random.default_rng(4), prefix="m.")
    state["m.w1s"] = np.round(state["m.w1s"] * 10).astype(np.int8)
    with pytest.warns(UserWarning, match=r"the arrays m\.w1s \(int8\) hold integers, taken as the weights' "
                                         "values; if they are quantized weights, dequantize them"):
        layer = interop.from_torch_state_dict(state)
    np.testing.assert_array_equal(layer.params["w1s"], state["m.w1s"].astype(np.float32))


@pytest.mark.parametrize("change,error,match", [
    (lambda s: s.pop("b2s"), KeyError, r"missing \['b2s'\]"),
    (lambda s: s.update(w3s=np.ones(2)), KeyError, r"unexpected \['w3s'\]"),
    (lambda s: s.update(depth=np.array(3)), ValueError, "'depth' .*does not match 'w1s'"),
    # a damaged depth: 1 << depth took 500 MB for 4278190082, and raised "negative shift count" for -1
    (lambda s: s.update(depth=np.array(4278190082)), ValueError, r"'depth' \(4278190082\) does not match 'w1s'"),
    (lambda s: s.update(depth=np.array(-1)), ValueError, r"'depth' \(-1\) does not match 'w1s'"),
    (lambda s: s.update(depth=np.array(np.inf)), ValueError, r"'depth' \(inf\) does not match 'w1s'"),
    # leaves that are no power of two, none, or a depth that is no number: refused before the layer is built
    (lambda s: s.update(w1s=np.ones((3, 4, 3)), depth=np.array(1)), ValueError, r"'depth' \(1\) does not match 'w1s'"),
    (lambda s: s.update(w1s=np.ones((0, 4, 3)), depth=np.array(-1)), ValueError, r"'depth' \(-1\) does not match 'w1s'"),
    (lambda s: s.update(w1s=np.ones((2, 4, 3)), depth=np.array(True)), ValueError,
         r"'depth' must hold a number \(the tree depth\), got dtype bool \(True\)"),
    (lambda s: s.update(magic_w1=np.ones((1, 4, 8))), KeyError, r"missing \['magic_b1'"),
    (lambda s: s.update(w1s=np.ones((3, 4, 3))), ValueError, "power of two"),
    (lambda s: s.update(b1s=np.array([["a"] * 3] * 4)), TypeError, "real numbers"),
    (lambda s: s.clear(), KeyError, "found no FFF layer"),
])
def test_bad_leaf_state_dicts(change, error, match):
    state = leaf_state(np.random.default_rng(3))
    change(state)
    with pytest.raises(error, match=match):
        interop.from_torch_state_dict(state)


def test_bad_neuron_tree_state_dicts():
    rng = np.random.default_rng(4)
    state = nt_state(rng, P=2)
    with pytest.raises(ValueError, match="parallel_size"):  # 14 rows are no single tree
        interop.from_torch_state_dict(state)
    state["linear_out.bias"] = np.zeros(2)
    with pytest.raises(KeyError, match="no output bias"):
        interop.from_torch_state_dict(state, parallel_size=2)
    with pytest.raises(ValueError, match="kind must be one of"):
        interop.from_torch_state_dict(state, kind="dense")


def test_parallel_size_is_not_guessed():
    """7 rows: one tree of depth 2 by default, seven trees of depth 0 when told."""
    state = nt_state(np.random.default_rng(5), depth=2, P=1)
    assert (interop.from_torch_state_dict(state).depth, interop.from_torch_state_dict(state).parallel_size) == (2, 1)
    forest = interop.from_torch_state_dict(state, parallel_size=7)
    assert (forest.depth, forest.parallel_size) == (0, 7)


@pytest.mark.parametrize("make", [
    lambda: fffcpu.FFF(4, 3, 2, 2, seed=0),
    lambda: fffcpu.FFF(4, 3, 2, 0, seed=0, dtype="float64", activation="tanh"),
    lambda: fffcpu.FFF(4, 3, 2, 1, seed=0, master_leaf=5),
    lambda: fffcpu.NeuronTreeFFF(4, 2, 2, parallel_size=3, seed=0),
])
def test_numpy_state_dict_round_trip(make):
    layer = make()
    sd = interop.to_numpy_state_dict(layer, prefix="m.")
    if layer.kind == "fff":
        assert list(sd)[0] == "m.depth" and sd["m.depth"] == layer.depth
    config = interop.hyperparameters(layer)
    again = interop.from_torch_state_dict(sd, **config)
    assert again.config() == {**layer.config(), "seed": None}
    for name, arr in layer.state_dict().items():
        assert np.array_equal(again.params[name], arr) and again.params[name].dtype == arr.dtype
    x = np.random.default_rng(6).normal(size=(7, 4))
    assert np.array_equal(again(x), layer(x))


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------
def test_safetensors_round_trip_keeps_hyperparameters(tmp_path):
    pytest.importorskip("safetensors", reason="needs the safetensors package (pip install fffcpu[torch])")
    layer = fffcpu.NeuronTreeFFF(4, 2, 1, parallel_size=5, activation="tanh", seed=1)
    path = tmp_path / "nt.safetensors"
    assert interop.save_safetensors(layer, path) == path
    arrays, meta = interop.read_safetensors(path)
    assert meta["fffcpu.kind"] == "neuron_tree" and sorted(arrays) == sorted(NT_NAMES)
    again = interop.load_safetensors(path)
    assert (again.parallel_size, again.activation, again.dtype) == (5, "tanh", np.float32)
    assert interop.load_safetensors(path, activation="relu").activation == "relu"
    x = np.random.default_rng(7).normal(size=(3, 4))
    assert np.array_equal(again(x), layer(x))
    leaf = fffcpu.FFF(4, 3, 2, 2, seed=0, region_leak=0.25, dtype="float64")
    interop.save_safetensors(leaf, tmp_path / "leaf.safetensors")
    back = interop.load_safetensors(tmp_path / "leaf.safetensors")
    assert (back.region_leak, back.dtype, back.depth) == (0.25, np.float64, 2)


def test_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    st = pytest.importorskip("safetensors.numpy", reason="needs the safetensors package")
    path = tmp_path / "m.safetensors"
    layer = fffcpu.FFF(4, 3, 2, 1, seed=0)
    interop.save_safetensors(layer, path)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(st, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        interop.save_safetensors(fffcpu.FFF(4, 3, 2, 1, seed=1), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


@pytest.mark.parametrize("save, module", [("save_safetensors", "safetensors"), ("save_pt", "torch")])
def test_save_into_missing_directory_or_onto_a_directory(tmp_path, save, module):
    """save_pt and save_safetensors check the path as fffcpu.save does; they failed on the temporary
    file's name ('.x.pt.a3we6h2g.tmp')."""
    pytest.importorskip(module, reason=f"{save} needs {module}")
    save = getattr(interop, save)
    layer = fffcpu.FFF(4, 3, 2, 1, seed=0)
    with pytest.raises(FileNotFoundError, match=r"cannot save to .*x\.pt'.*directory .*nodir' does not exist"):
        save(layer, tmp_path / "nodir" / "x.pt")
    with pytest.raises(IsADirectoryError, match="it is a directory"):
        save(layer, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_load_from_a_directory_names_it(tmp_path, capsys, suffix):
    """A directory named x.safetensors was reported as safetensors' "No such device (os error 19)",
    without its path."""
    pytest.importorskip("torch" if suffix == ".pt" else "safetensors", reason="needs its reader")
    path = tmp_path / ("x" + suffix)
    path.mkdir()
    with pytest.raises(IsADirectoryError, match="Is a directory") as info:
        interop.load_any(path)
    assert str(path) in str(info.value)
    assert run_cli("convert", str(path), str(tmp_path / "out.npz")) == 2
    err = capsys.readouterr().err  # round 22: the argument named too (it was "[Errno 21] Is a directory: ...")
    assert f"input file IN {str(path)!r} is a directory: give a model file" in err and "Traceback" not in err


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="a POSIX device")
def test_load_of_a_device_names_it(tmp_path, suffix):
    """A .pt or .safetensors path naming a device (a link to /dev/zero read without end) is refused by
    name, as fffcpu.load refuses it; save_pt and save_safetensors need a file name too."""
    module = "torch" if suffix == ".pt" else "safetensors"
    pytest.importorskip(module, reason="needs its reader")
    path = tmp_path / ("x" + suffix)
    path.symlink_to("/dev/null")
    with pytest.raises(ValueError, match=f"x{suffix}' is a character device, not a file: a {suffix} file is read "
                                         "from a regular file"):
        interop.load_any(path)
    save = interop.save_pt if suffix == ".pt" else interop.save_safetensors
    with pytest.raises(ValueError, match="path must name a file to save to, got ''"):
        save(fffcpu.FFF(4, 3, 2, 1, seed=0), "")


def test_fffcpu_load_of_a_pt_or_safetensors_file_points_to_load_any(tmp_path):
    """fffcpu.load (and `fffcpu inspect`) said only "not a valid fffcpu model file" for a .pt or
    .safetensors file, not where such a file is read."""
    pytest.importorskip("safetensors", reason="needs the safetensors package")
    layer = fffcpu.FFF(4, 3, 2, 1, seed=0)
    path = interop.save_safetensors(layer, tmp_path / "m.safetensors")
    with pytest.raises(fffcpu.io.ModelFileError, match=r"m\.safetensors' is not a valid fffcpu model file: "
                       r".*its suffix names another format: read it with fffcpu\.interop\.load_any"):
        fffcpu.load(path)
    (tmp_path / "m.bin").write_bytes(b"junk")
    with pytest.raises(fffcpu.io.ModelFileError) as info:
        fffcpu.load(tmp_path / "m.bin")
    assert "suffix" not in str(info.value)


@pytest.mark.parametrize("content, match", [
    ("module", r"more than a state dict: a pickled torch\.nn\.modules\.linear\.Linear .*module\.state_dict\(\)"),
    ("canary", r"holds more than a state dict: a pickled .*record_unpickling"),
    (b"hello, not a checkpoint", "not a readable PyTorch .pt file"),
    (b"PK\x03\x04garbage", "not a readable PyTorch .pt file"),
    (b"", "is empty: expected a state dict"),
    ("list", "holds a list, not a state dict"),
])
def test_load_pt_refuses_bad_files_naming_them(tmp_path, capsys, content, match):
    """torch.load's UnpicklingError, KeyError, EOFError, RuntimeError came out as tracebacks."""
    torch = pytest.importorskip("torch", reason="needs torch")
    path = tmp_path / "bad.pt"
    if content == "module":
        torch.save(torch.nn.Linear(2, 2), path)
    elif content == "canary":
        torch.save({"w1s": canary.Canary()}, path)
    elif content == "list":
        torch.save([torch.ones(2)], path)
    else:
        path.write_bytes(content)
    canary.unpickled.clear()
    _refused_naming_the_file(interop.load_pt, path, match, tmp_path, capsys)
    assert canary.unpickled == []


def _refused_naming_the_file(load, path, match, tmp_path, capsys):
    """``load(path)`` raises a ValueError naming ``path``; ``fffcpu convert`` says so, exit 2."""
    with pytest.raises(ValueError, match=match) as info:
        load(path)
    assert str(path) in str(info.value)
    assert run_cli("convert", str(path), str(tmp_path / "out.npz")) == 2
    err = capsys.readouterr().err
    assert err.startswith("fffcpu convert: error: ") and str(path) in err and "Traceback" not in err
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("content, match", [
    (b"hello, not a safetensors file", "not a readable .safetensors file"),
    (b"", "is empty: expected a .safetensors file"),
    ({"fffcpu.kind": "fff", "fffcpu.hyperparameters": "{not json"},
     "metadata 'fffcpu.hyperparameters' must be a JSON object"),
    ({"fffcpu.kind": "bogus"}, r"metadata 'fffcpu.kind' must be one of \['fff', 'neuron_tree'\], got 'bogus'"),
    ({"fffcpu.kind": "neuron_tree"}, r"metadata 'fffcpu.kind' is 'neuron_tree', but the arrays hold "
                                     r"\(kind, prefix\) \('fff', ''\); pass kind='fff'"),
])
def test_load_safetensors_refuses_bad_files_naming_them(tmp_path, capsys, content, match):
    """safetensors' SafetensorError came out as a traceback; a bad 'fffcpu.kind' in the metadata was
    reported without the file's name (and a wrong one as if the caller had asked for that kind)."""
    st = pytest.importorskip("safetensors.numpy", reason="needs the safetensors package")
    path = tmp_path / "bad.safetensors"
    if isinstance(content, dict):  # a leaf FFF's arrays under this metadata
        st.save_file(interop.to_numpy_state_dict(fffcpu.FFF(4, 3, 2, 1, seed=0)), str(path), metadata=content)
    else:
        path.write_bytes(content)
    _refused_naming_the_file(interop.load_safetensors, path, match, tmp_path, capsys)


@pytest.mark.parametrize("change, match", [
    (lambda s: s.update(w1r=s.pop("w1s")), "found no FFF layer"),  # a damaged name: a KeyError naming no file
    (lambda s: s.update(depth=np.array(-1)), r"'depth' \(-1\) does not match 'w1s'"),
    (lambda s: s.update(node_biases=np.full((3, 1), np.nan)), "'node_biases' must be finite"),
])
def test_load_safetensors_names_the_file_when_its_arrays_build_no_layer(tmp_path, change, match):
    st = pytest.importorskip("safetensors.numpy", reason="needs the safetensors package")
    state = leaf_state(np.random.default_rng(3))
    change(state)
    path = tmp_path / "bad.safetensors"
    st.save_file(state, str(path))
    with pytest.raises(ValueError, match=match) as info:
        interop.load_safetensors(path)
    assert str(info.value).startswith(f"{str(path)!r}: ")


def test_load_safetensors_names_the_file_in_a_type_error(tmp_path):
    """A TypeError building the layer (a config value of the wrong type) stays a TypeError, naming the file."""
    st = pytest.importorskip("safetensors.numpy", reason="needs the safetensors package")
    path = tmp_path / "a.safetensors"
    st.save_file(leaf_state(np.random.default_rng(3)), str(path))
    with pytest.raises(TypeError, match=r"seed must be an integer, got 'x'") as info:
        interop.load_safetensors(path, seed="x")
    assert str(info.value).startswith(f"{str(path)!r}: ")


def test_load_safetensors_refuses_hyperparameters_nested_too_deeply(tmp_path):
    """json.loads' RecursionError came out raw."""
    st = pytest.importorskip("safetensors.numpy", reason="needs the safetensors package")
    path = tmp_path / "deep.safetensors"
    meta = {"fffcpu.kind": "fff", "fffcpu.hyperparameters": "[" * 100000 + "]" * 100000}
    st.save_file(interop.to_numpy_state_dict(fffcpu.FFF(4, 3, 2, 1, seed=0)), str(path), metadata=meta)
    with pytest.raises(ValueError, match="'fffcpu.hyperparameters' must be a JSON object") as info:
        interop.load_safetensors(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("directory, match", [
    # torch.load does not check the zip CRCs: a damaged weight loaded as a different number
    (False, r"its record '.*' is damaged \(BadZipFile: Bad CRC-32"),
    # with the zip64 end record damaged as well, zipfile cannot read the directory (so no CRC was checked),
    # but torch.load's reader still read the records
    (True, r"its zip directory is damaged \(BadZipFile"),
])
def test_load_pt_refuses_a_flipped_byte_in_tensor_data(tmp_path, directory, match):
    pytest.importorskip("torch", reason="needs torch")
    layer = fffcpu.FFF(4, 3, 2, 1, seed=0)
    path = tmp_path / "m.pt"
    interop.save_pt(layer, path)
    raw = bytearray(path.read_bytes())
    raw[raw.index(layer.params["w2s"].tobytes()) + 1] ^= 0x01
    if directory:
        raw[raw.rindex(b"PK\x06\x06")] ^= 0xFF  # the zip64 end of central directory record's signature
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"not a readable PyTorch \.pt file \(truncated or corrupt\): "
                                         + match) as info:
        interop.load_pt(path)
    assert str(info.value).startswith(repr(str(path)))


@pytest.mark.parametrize("change, error, match", [
    (lambda s: s.update(w1r=s.pop("w1s")), ValueError, "found no FFF layer"),  # a KeyError, as a ValueError
    (lambda s: s.update(depth=np.array(-1)), ValueError, r"'depth' \(-1\) does not match 'w1s'"),
])
def test_load_pt_names_the_file_when_its_arrays_build_no_layer(tmp_path, change, error, match):
    torch = pytest.importorskip("torch", reason="needs torch")
    state = leaf_state(np.random.default_rng(3))
    change(state)
    path = tmp_path / "bad.pt"
    torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, path)
    with pytest.raises(error, match=match) as info:
        interop.load_pt(path)
    assert str(info.value).startswith(f"{str(path)!r}: ")


def test_load_pt_reads_records_stored_without_a_crc(tmp_path):
    """torch.serialization.set_crc32_options(False) writes each record's CRC as 0: nothing to check, so
    the file loads (a CRC of 0 checked against the data would refuse every record)."""
    torch = pytest.importorskip("torch", reason="needs torch")
    layer = fffcpu.FFF(4, 3, 2, 1, seed=0)
    path = tmp_path / "m.pt"
    torch.serialization.set_crc32_options(False)
    try:
        interop.save_pt(layer, path)
    finally:
        torch.serialization.set_crc32_options(True)
    import zipfile
    with zipfile.ZipFile(path) as archive:
        assert any(info.CRC == 0 and info.file_size for info in archive.infolist())
    np.testing.assert_array_equal(interop.load_pt(path).params["w2s"], layer.params["w2s"])


def test_load_pt_refuses_a_record_marked_as_a_directory(tmp_path):
    """A flipped bit in a record's external attributes (the MS-DOS directory bit) made PyTorch read no data
    for it: the tensor loaded as zeros."""
    pytest.importorskip("torch", reason="needs torch")
    path = tmp_path / "m.pt"
    interop.save_pt(fffcpu.FFF(4, 3, 2, 1, seed=0), path)
    raw = bytearray(path.read_bytes())
    entry = raw.index(b"PK\x01\x02", raw.index(b"PK\x01\x02") + 4)  # the second central directory record
    raw[entry + 38] |= 0x10  # its external attributes
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"its record '.*' is marked as a directory") as info:
        interop.load_pt(path)
    assert str(info.value).startswith(repr(str(path)))


def test_master_leaf_goes_to_pt_files_but_not_to_fastfeedforward(tmp_path):
    """to_fastfeedforward raised torch's 'Unexpected key(s) "magic_w1"'; fffcpu's own .pt keeps it."""
    pytest.importorskip("torch", reason="needs torch")
    layer = fffcpu.FFF(6, 3, 4, 2, seed=0, master_leaf=4)
    interop.save_pt(layer, tmp_path / "m.pt")
    again = interop.load_pt(tmp_path / "m.pt")
    assert again.master_leaf == 4
    x = np.random.default_rng(10).normal(size=(5, 6)).astype(np.float32)
    np.testing.assert_array_equal(again(x), layer(x))
    pytest.importorskip("fastfeedforward", reason="needs the fastfeedforward package")
    with pytest.raises(ValueError, match=r"master_leaf=4: fastfeedforward\.FFF has no master leaf"):
        interop.to_fastfeedforward(layer)
    assert interop.to_fastfeedforward(fffcpu.FFF(6, 3, 4, 2, seed=0)).depth == 2


@pytest.fixture
def without_torch(monkeypatch):
    """Make ``import torch`` (and safetensors.torch) fail as if torch were not installed."""
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch.") or name == "safetensors.torch":
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_pt_without_torch_names_the_extra(tmp_path, without_torch):
    layer = fffcpu.FFF(4, 3, 2, 1, seed=0)
    for call in (lambda: interop.save_pt(layer, tmp_path / "m.pt"), lambda: interop.load_pt(tmp_path / "m.pt"),
                 lambda: interop.to_torch_state_dict(layer)):
        with pytest.raises(ImportError, match=re.escape("pip install fffcpu[torch]")):
            call()
    assert not (tmp_path / "m.pt").exists()
    # the torch-free paths still work
    assert interop.from_torch_state_dict(interop.to_numpy_state_dict(layer)).depth == 1


def test_file_format_by_suffix():
    assert [interop.file_format(p) for p in ("a.pt", "b.PTH", "c.safetensors", "d.npz", "e.fff")] == \
        ["pt", "pt", "safetensors", "npz", "npz"]
    with pytest.raises(ValueError, match="suffix '.bin'"):
        interop.file_format("model.bin")


# ---------------------------------------------------------------------------------------------
# fffcpu convert
# ---------------------------------------------------------------------------------------------
def run_cli(*argv):
    parser = argparse.ArgumentParser(prog="fffcpu")
    interop_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_convert_names_options_that_do_not_apply(tmp_path, capsys):
    """--parallel-size on a leaf FFF's file leaked "FFF.__init__() got an unexpected keyword argument";
    --parallel-size 0 was not checked."""
    fffcpu.save(fffcpu.FFF(4, 3, 2, 1, seed=0), tmp_path / "leaf.npz")
    with pytest.raises(ValueError, match=r"parallel_size does not apply to the file's layer, a FFF \(kind 'fff'\)"):
        interop.from_torch_state_dict(leaf_state(np.random.default_rng(0)), parallel_size=3)
    if importlib.util.find_spec("safetensors") is not None:  # the same from a .safetensors file
        interop.save_safetensors(fffcpu.FFF(4, 3, 2, 1, seed=0), tmp_path / "leaf.safetensors")
        assert run_cli("convert", str(tmp_path / "leaf.safetensors"), str(tmp_path / "x.npz"),
                       "--parallel-size", "2") == 2
        assert "error: 'leaf.safetensors': --parallel-size does not apply to the file's layer, a FFF" in \
            capsys.readouterr().err.replace(str(tmp_path) + "/", "")  # the option, not the Python keyword
    # an fffcpu input records its own hyperparameters: the options given are named as options
    for extra, named, them in ((["--dtype", "float64"], "--dtype does not apply", "it"),
                               (["--kind", "fff", "--parallel-size", "2"], "--kind and --parallel-size do not apply",
                                "them"),
                               (["--kind", "fff", "--prefix", "a.", "--dtype", "float32"],
                                "--kind, --prefix and --dtype do not apply", "them")):
        assert run_cli("convert", str(tmp_path / "leaf.npz"), str(tmp_path / "x.pt"), *extra) == 2
        err = capsys.readouterr().err
        assert f"error: {named} to IN {str(tmp_path / 'leaf.npz')!r}, an fffcpu .npz/.fff file, which records its own " \
               f"kind and hyperparameters; leave {them} out\n" in err, err
    assert not (tmp_path / "x.pt").exists()
    assert run_cli("convert", str(tmp_path / "leaf.npz"), str(tmp_path / "x.bin"), "--dtype", "float32") == 2
    assert "cannot tell the format of" in capsys.readouterr().err  # OUT first: one run says what to fix
    with pytest.raises(SystemExit):
        run_cli("convert", str(tmp_path / "leaf.npz"), str(tmp_path / "x.npz"), "--parallel-size", "0")
    assert "argument --parallel-size: expected an integer >= 1, got 0" in capsys.readouterr().err


def test_convert_between_all_formats(tmp_path, capsys):
    pytest.importorskip("safetensors", reason="needs the safetensors package")
    layer = fffcpu.NeuronTreeFFF(4, 2, 2, parallel_size=2, activation="relu", seed=3, dtype="float64")
    fffcpu.save(layer, tmp_path / "a.npz")
    x = np.random.default_rng(8).normal(size=(5, 4))
    assert run_cli("convert", str(tmp_path / "a.npz"), str(tmp_path / "b.safetensors")) == 0
    assert "wrote" in capsys.readouterr().out
    assert run_cli("convert", str(tmp_path / "b.safetensors"), str(tmp_path / "c.npz")) == 0
    c = fffcpu.load(tmp_path / "c.npz")
    assert (c.parallel_size, c.activation, c.dtype) == (2, "relu", np.float64)
    assert np.array_equal(c(x), layer(x))
    # a bare state dict (as torch would hold it, here without metadata) needs the hyperparameters
    import safetensors.numpy
    safetensors.numpy.save_file(interop.to_numpy_state_dict(layer), str(tmp_path / "bare.safetensors"))
    assert run_cli("convert", str(tmp_path / "bare.safetensors"), str(tmp_path / "d.npz")) == 2
    assert "the rows fit --parallel-size 2 at depth 2" in capsys.readouterr().err
    assert run_cli("convert", str(tmp_path / "bare.safetensors"), str(tmp_path / "d.npz"),
                   "--parallel-size", "2", "--activation", "relu", "--dtype", "float32") == 0
    d = fffcpu.load(tmp_path / "d.npz")
    assert (d.parallel_size, d.activation, d.dtype) == (2, "relu", np.float32)


def test_convert_reads_and_writes_the_fff_suffix(tmp_path):
    """``fffcpu train -o model.fff`` (docs/training.md) writes fffcpu's format under ``.fff``; convert
    refused that suffix."""
    layer = fffcpu.FFF(4, 3, 2, 1, seed=0, master_leaf=2)
    fffcpu.save(layer, tmp_path / "model.fff")
    assert run_cli("convert", str(tmp_path / "model.fff"), str(tmp_path / "copy.fff")) == 0
    x = np.random.default_rng(9).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_array_equal(fffcpu.load(tmp_path / "copy.fff")(x), layer(x))


def test_convert_keeps_class_names_between_npz_files_and_warns_where_it_cannot(tmp_path, capsys):
    layer = fffcpu.FFF(4, 3, 2, 1, seed=0)
    fffcpu.save(layer, tmp_path / "a.npz", classes=["cat", "dog"])
    assert run_cli("convert", str(tmp_path / "a.npz"), str(tmp_path / "b.fff")) == 0
    assert fffcpu.load_classes(tmp_path / "b.fff") == ("cat", "dog")
    assert capsys.readouterr().err == ""
    assert interop.convert(tmp_path / "b.fff", tmp_path / "c.npz").output_width == 2
    assert fffcpu.load_classes(tmp_path / "c.npz") == ("cat", "dog")
    fffcpu.save(layer, tmp_path / "plain.npz")
    interop.convert(tmp_path / "plain.npz", tmp_path / "d.npz")
    assert fffcpu.load_classes(tmp_path / "d.npz") is None
    pytest.importorskip("safetensors", reason="needs the safetensors package")
    # .safetensors keeps them in its metadata, there and back
    assert run_cli("convert", str(tmp_path / "a.npz"), str(tmp_path / "e.safetensors")) == 0
    assert capsys.readouterr().err == ""
    assert interop.read_safetensors(tmp_path / "e.safetensors")[1]["fffcpu.classes"] == '["cat", "dog"]'
    assert run_cli("convert", str(tmp_path / "e.safetensors"), str(tmp_path / "e.fff")) == 0
    assert fffcpu.load_classes(tmp_path / "e.fff") == ("cat", "dog")
    x = np.random.default_rng(9).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_array_equal(interop.load_any(tmp_path / "e.safetensors")(x), layer(x))
    assert run_cli("convert", str(tmp_path / "plain.npz"), str(tmp_path / "g.safetensors")) == 0
    assert "fffcpu.classes" not in interop.read_safetensors(tmp_path / "g.safetensors")[1]
    interop.convert(tmp_path / "g.safetensors", tmp_path / "g.npz")
    assert fffcpu.load_classes(tmp_path / "g.npz") is None
    # bad names in the metadata are refused naming the file; a .pt file has no place for them
    meta = dict(interop.read_safetensors(tmp_path / "e.safetensors")[1], **{"fffcpu.classes": '["cat"]'})
    import safetensors.numpy
    safetensors.numpy.save_file(interop.read_safetensors(tmp_path / "e.safetensors")[0], str(tmp_path / "bad.safetensors"),
                                metadata=meta)
    with pytest.raises(ValueError, match=r"bad\.safetensors': metadata 'fffcpu\.classes' must name each of the "
                                         r"layer's 2 outputs"):
        interop.convert(tmp_path / "bad.safetensors", tmp_path / "bad.npz")
    pytest.importorskip("torch", reason="needs torch")
    with pytest.warns(UserWarning, match=r"the class names of .*a\.npz' \(2: cat, dog\) are not in .*e\.pt'"
                                         r": a \.pt file has no place for them, only fffcpu's \.npz/\.fff and "
                                         r"\.safetensors do"):
        interop.convert(tmp_path / "a.npz", tmp_path / "e.pt")
    assert run_cli("convert", str(tmp_path / "a.npz"), str(tmp_path / "f.pt")) == 0
    assert capsys.readouterr().err.startswith("fffcpu convert: warning: the class names of ")
    import warnings
    with warnings.catch_warnings():  # the line is printed whatever the warning filters (python -W ignore)
        warnings.simplefilter("ignore")
        assert run_cli("convert", str(tmp_path / "a.npz"), str(tmp_path / "h.pt")) == 0
    assert capsys.readouterr().err.startswith("fffcpu convert: warning: the class names of ")
    # five names are all shown; of six, the first five and "..."
    for names, shown in ((list("abcde"), r"\(5: a, b, c, d, e\) are"), (list("abcdef"), r"\(6: a, b, c, d, e, \.\.\.\) are")):
        fffcpu.save(fffcpu.FFF(4, 3, len(names), 1, seed=0), tmp_path / "n.npz", classes=names)
        with pytest.warns(UserWarning, match=shown):
            interop.convert(tmp_path / "n.npz", tmp_path / "n.pt")


def test_convert_errors(tmp_path, capsys):
    fffcpu.save(fffcpu.FFF(4, 3, 2, 1, seed=0), tmp_path / "a.npz")
    assert run_cli("convert", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--activation", "gelu") == 2
    assert "--activation does not apply to IN" in capsys.readouterr().err
    assert run_cli("convert", str(tmp_path / "a.npz"), str(tmp_path / "b.txt")) == 2
    assert "suffix '.txt'" in capsys.readouterr().err
    assert run_cli("convert", str(tmp_path / "missing.safetensors"), str(tmp_path / "b.npz")) == 2
    assert not (tmp_path / "b.npz").exists()


def test_convert_picks_a_layer_by_prefix_or_kind(tmp_path, capsys):
    pytest.importorskip("safetensors", reason="needs the safetensors package")
    import safetensors.numpy
    leaf = fffcpu.FFF(4, 3, 2, 1, seed=0, dtype="float64")
    tree = fffcpu.NeuronTreeFFF(4, 2, 1, parallel_size=2, activation="relu", seed=1, dtype="float64")
    both = {f"a.{k}": v for k, v in interop.to_numpy_state_dict(leaf).items()}
    both.update({f"b.{k}": v for k, v in interop.to_numpy_state_dict(tree).items()})
    src = str(tmp_path / "two.safetensors")
    safetensors.numpy.save_file(both, src)
    x = np.random.default_rng(0).normal(size=(5, 4))
    assert run_cli("convert", src, str(tmp_path / "x.npz")) == 2
    assert "found 2 FFF layers" in capsys.readouterr().err
    assert run_cli("convert", src, str(tmp_path / "t.npz"), "--prefix", "b.", "--parallel-size", "2",
                   "--activation", "relu") == 0
    np.testing.assert_array_equal(fffcpu.load(tmp_path / "t.npz")(x), tree(x))
    assert run_cli("convert", src, str(tmp_path / "l.npz"), "--kind", "fff") == 0
    np.testing.assert_array_equal(fffcpu.load(tmp_path / "l.npz")(x), leaf(x))
    # a key error reads as the message itself, not as the repr of a dict key
    safetensors.numpy.save_file({"other.weight": np.zeros((2, 2))}, str(tmp_path / "none.safetensors"))
    capsys.readouterr()
    none = str(tmp_path / "none.safetensors")
    assert run_cli("convert", none, str(tmp_path / "n.npz")) == 2
    assert capsys.readouterr().err.startswith(f"fffcpu convert: error: {none!r}: found no FFF layer in a state dict")
    for option in (["--kind", "mlp"], ["--dtype", "float16"]):  # refused as argparse choices, before any work
        with pytest.raises(SystemExit):
            run_cli("convert", src, str(tmp_path / "c.npz"), *option)
        assert "invalid choice" in capsys.readouterr().err

def test_convert_pt_without_torch(tmp_path, capsys, without_torch):
    fffcpu.save(fffcpu.FFF(4, 3, 2, 1, seed=0), tmp_path / "a.npz")
    assert run_cli("convert", str(tmp_path / "a.npz"), str(tmp_path / "a.pt")) == 2
    assert "pip install fffcpu[torch]" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# docs/porting.md: every python block runs (blocks fenced ```python torch need torch)
# ---------------------------------------------------------------------------------------------
BLOCK = re.compile(r"^```python( torch)?\n(.*?)^```", re.S | re.M)
PORTING_BLOCKS = BLOCK.findall((ROOT / "docs" / "porting.md").read_text(encoding="utf-8"))


def test_porting_guide_has_torch_free_examples():
    assert sum(1 for tag, _ in PORTING_BLOCKS if not tag) >= 1
    assert sum(1 for tag, _ in PORTING_BLOCKS if tag) >= 1


@pytest.mark.parametrize("i", range(len(PORTING_BLOCKS)), ids=lambda i: f"block{i}")
def test_porting_guide_examples_run(i, tmp_path, monkeypatch):
    tag, code = PORTING_BLOCKS[i]
    if tag:
        for module in ("torch", "fastfeedforward", "safetensors"):
            pytest.importorskip(module, reason=f"this example of docs/porting.md needs {module}")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"docs/porting.md[block {i}]", "exec"), {"__name__": "__porting__"})


def _config(layer):
    return dict(layer.config(), seed=None)  # .pt and .safetensors files do not hold the seed


def _same_layer(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return _config(a) == _config(b) and all(sa[k].tobytes() == sb[k].tobytes() for k in sa)


def test_fuzz_damaged_safetensors_files_load_or_name_the_file(tmp_path):
    """Every truncation of a small .safetensors file and 200 seeded byte changes: a layer, or a ValueError
    naming the file. The format has no checksum: a changed byte of a tensor's data loads as that number
    (or is refused as NaN or inf), and one of the metadata's hyperparameters as that value (a dropout of
    0.0 as 0.1) if it is still valid; the layer's arrays always have the file's names and shapes."""
    pytest.importorskip("safetensors", reason="needs the safetensors package")
    layer = fffcpu.FFF(4, 3, 2, 1, seed=0)
    path = tmp_path / "fuzz.safetensors"
    interop.save_safetensors(layer, path)
    good = path.read_bytes()
    data_start = 8 + int.from_bytes(good[:8], "little")
    loaded = 0
    for raw, where in damaged_copies(good, seed=15):
        path.write_bytes(raw)
        try:
            got = interop.load_safetensors(path)
        except ValueError as err:
            assert str(path) in str(err), (where, err)
            continue
        assert got.state_dict().keys() == layer.state_dict().keys()
        assert all(got.params[k].shape == layer.params[k].shape for k in layer.params), where
        assert _same_layer(got, layer) or any(at >= data_start for at in where) or _config(got) != _config(layer)
        loaded += 1
    assert 0 < loaded < 150


def test_fuzz_damaged_pt_files_load_the_same_or_name_the_file(tmp_path):
    """Truncations of a small .pt file (every 13th length) and 200 seeded byte changes: the same layer, or a
    ValueError naming the file (load_pt checks the zip CRCs and directory bits that torch.load does not)."""
    pytest.importorskip("torch", reason="needs torch")
    layer = fffcpu.FFF(4, 3, 2, 1, seed=0)
    path = tmp_path / "fuzz.pt"
    interop.save_pt(layer, path)
    loaded = 0
    for raw, where in damaged_copies(path.read_bytes(), seed=16, step=13):
        path.write_bytes(raw)
        try:
            got = interop.load_pt(path)
        except ValueError as err:
            assert str(path) in str(err), (where, err)
            continue
        assert _same_layer(got, layer), where
        loaded += 1
    assert 0 < loaded < 150


def test_convert_messages_name_the_options_not_the_keywords():
    """interop's errors name its keyword arguments ("kind='neuron_tree' was asked for", "pass prefix=
    (and kind=)", "pass parallel_size (or depth) to from_state_dict ..."); convert's say --kind,
    --prefix and --parallel-size."""
    from fffcpu.interop_cli import _option_names as named
    assert named("'f.pt': kind='neuron_tree' was asked for, but the state dict holds (kind, prefix) "
                 "[('fff', '')]") == ("'f.pt': --kind 'neuron_tree' was asked for, but the state dict holds "
                                     "(kind, prefix) [('fff', '')]")
    assert named("found 2 FFF layers in the state dict (kind, prefix): [('fff', 'a.')]; pass prefix= (and kind=) "
                 "to choose one").endswith("; pass --prefix (and --kind) to choose one")
    assert named("'t.pt': 'linear_in.weight' has 6 rows, which is not parallel_size 1 times 2^(depth+1) - 1 for any "
                 "depth; the rows fit parallel_size 2 at depth 1: pass parallel_size (or depth) to from_state_dict "
                 "or fffcpu.interop.load_any (fffcpu convert: --parallel-size)") == (
        "'t.pt': 'linear_in.weight' has 6 rows, which is not --parallel-size 1 times 2^(depth+1) - 1 for any depth; "
        "the rows fit --parallel-size 2 at depth 1: give --parallel-size")
    assert named("'a: b.pt': parallel_size, dtype does not apply to the file's layer, a FFF (kind 'fff'); leave it "
                 "out") == "'a: b.pt': --parallel-size, --dtype does not apply to the file's layer, a FFF (kind 'fff'); " \
                          "leave it out"
    assert named("--kind 'fff' and --parallel-size stay as they are") == "--kind 'fff' and --parallel-size stay as " \
                                                                          "they are"
    # quoted text is the file's or the user's: paths and keys stay as they are (third review)
    assert named("'kind=x/two.pt': found 2 FFF layers ...; pass prefix= (and kind=) to choose one") == \
        "'kind=x/two.pt': found 2 FFF layers ...; pass --prefix (and --kind) to choose one"
    assert named("'runs/parallel_size/l.pt': parallel_size does not apply to the file's layer, a FFF") == \
        "'runs/parallel_size/l.pt': --parallel-size does not apply to the file's layer, a FFF"
    assert named("missing [], unexpected ['parallel_size']") == "missing [], unexpected ['parallel_size']"
    assert named("\"it's/prefix=a.pt\": kind='fff' (--kind fff) to read them") == "\"it's/prefix=a.pt\": --kind fff to read them"


def test_convert_refuses_to_replace_a_file_that_holds_no_model_and_warns_of_a_regression_model(tmp_path, capsys):
    """A fresh user's review: `convert` replaced any file named as OUT, and a model trained with --loss
    mse came back from a .safetensors file as a classifier (predict printed argmax indices)."""
    src = tmp_path / "m.npz"
    fffcpu.save(fffcpu.FFF(4, 3, 2, 1, seed=0), src)
    data = tmp_path / "data.npz"
    data.write_text("1,2,3,4\n")  # a CSV under a model's suffix
    assert run_cli("convert", str(src), str(data)) == 2
    assert "OUT '" + str(data) + "' exists and holds no model" in capsys.readouterr().err
    assert data.read_text() == "1,2,3,4\n"
    (tmp_path / "empty.npz").write_bytes(b"")  # nothing to lose; a model file is replaced as before
    assert run_cli("convert", str(src), str(tmp_path / "empty.npz")) == 0
    assert run_cli("convert", str(src), str(tmp_path / "empty.npz")) == 0
    fffcpu.io.save(fffcpu.FFF(4, 3, 1, 1, seed=0), tmp_path / "reg.fff", _training={"loss": "mse"})
    if importlib.util.find_spec("safetensors"):  # its metadata keeps the loss, there and back
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            interop.convert(tmp_path / "reg.fff", tmp_path / "reg.safetensors")
            interop.convert(tmp_path / "reg.safetensors", tmp_path / "reg2.fff")
        assert fffcpu.io._read(tmp_path / "reg2.fff", with_training=True)[2] == {"loss": "mse"}
    pytest.importorskip("torch", reason="needs torch")
    with pytest.warns(UserWarning, match=r"trained as a regression model \(loss mse\), which .*reg\.pt' "
                                         r"does not record"):
        interop.convert(tmp_path / "reg.fff", tmp_path / "reg.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a classifier's file says nothing of it
        interop.convert(src, tmp_path / "m.pt")


def test_convert_keeps_the_feature_columns_names_in_safetensors_metadata(tmp_path):
    """The input columns' names fffcpu train saves go to a .safetensors file's fffcpu.training metadata
    and back, as its loss and label column do."""
    pytest.importorskip("safetensors", reason="needs safetensors")
    training = {"loss": "mse", "label_column": "price", "feature_columns": ["a", "b", "c", "d"]}
    fffcpu.io.save(fffcpu.FFF(4, 3, 1, 1, seed=0), tmp_path / "m.fff", _training=training)
    interop.convert(tmp_path / "m.fff", tmp_path / "m.safetensors")
    interop.convert(tmp_path / "m.safetensors", tmp_path / "back.fff")
    assert fffcpu.io._read(tmp_path / "back.fff", with_training=True)[2] == training


def test_save_safetensors_and_save_pt_do_not_replace_a_file_that_holds_no_model(tmp_path):
    """As fffcpu.save: a data file named as the output is refused and left as it was."""
    layer = fffcpu.FFF(4, 3, 2, 1, seed=0)
    data = tmp_path / "train.csv"
    data.write_text("a,b,label\n1,2,0\n")
    savers = []
    if importlib.util.find_spec("safetensors"):
        savers.append(interop.save_safetensors)
    if importlib.util.find_spec("torch"):
        savers.append(interop.save_pt)
    if not savers:
        pytest.skip("needs safetensors or torch")
    for save in savers:
        with pytest.raises(FileExistsError, match="the file exists and holds no model"):
            save(layer, data)
        assert data.read_text() == "a,b,label\n1,2,0\n"


def test_interop_names_a_prefix_of_the_wrong_type_a_text_depth_and_a_non_layer():
    """A bad-input review: prefix=3 gave "unsupported operand type(s) for +: 'int' and 'str'", a depth
    array holding the text '2' was said not to match 4 leaves, hyperparameters("x") an AttributeError."""
    layer = fffcpu.FFF(4, 2, 3, 2, seed=0)
    sd = interop.to_numpy_state_dict(layer)
    with pytest.raises(TypeError, match=re.escape("prefix must be a str (the module prefix of the layer's keys, such "
                                                  "as 'mlp.fff.' or None to detect it), got 3 (int)")):
        interop.from_torch_state_dict(sd, prefix=3)
    with pytest.raises(TypeError, match=re.escape("such as 'mlp.fff.'), got None (NoneType)")):
        interop.to_numpy_state_dict(layer, prefix=None)
    with pytest.raises(ValueError, match=re.escape("array 'depth' must hold a number (the tree depth), got dtype <U1 "
                                                   "('2')")):
        interop.from_torch_state_dict({**sd, "depth": np.array("2")})
    with pytest.raises(TypeError, match="layer must be an fffcpu FFF or NeuronTreeFFF, got str"):
        interop.hyperparameters("x")


def test_from_fastfeedforward_names_a_module_that_is_not_one():
    """A torch.nn.Linear failed as "'Linear' object has no attribute 'activation'"."""
    class Linear:  # what torch.nn.Linear has of the attributes read (no torch needed)
        def state_dict(self):
            return {"weight": np.ones((2, 2)), "bias": np.ones(2)}
    with pytest.raises(TypeError, match=re.escape("module must be a fastfeedforward.FFF, got Linear (no activation, "
                                                  "dropout, region_leak, train_hardened); for a state dict use "
                                                  "from_torch_state_dict")):
        interop.from_fastfeedforward(Linear())

