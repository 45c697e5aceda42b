"""Save/load: exact round trips, atomic writes, and a clear ModelFileError for every malformed file."""
import io as io_bytes
import json
import os
import pathlib
import re
import stat
import warnings
import zipfile

import numpy as np
import pytest

import fffcpu
from fffcpu import io
from fffcpu.io import ModelFileError

from . import canary
from .fuzzing import damaged_copies

from fffcpu.neuron_tree import NeuronTreeFFF


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _perturbed_fff(depth, dtype, **kw):
    """An FFF whose parameters differ from what its seed gives, so a load that re-initialises fails."""
    layer = fffcpu.FFF(5, 3, 2, depth, seed=7, dtype=dtype, **kw)
    rng = np.random.default_rng(123)
    for p in layer.params.values():
        p += rng.standard_normal(p.shape).astype(p.dtype)
    return layer


def _assert_same_layer(a, b):
    assert type(a) is type(b)
    assert a.config() == b.config()
    assert a.dtype == b.dtype
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert sa[name].dtype == sb[name].dtype, name
        assert sa[name].shape == sb[name].shape, name
        assert sa[name].tobytes() == sb[name].tobytes(), name  # bit for bit


def _members(path):
    """The header (dict) and the arrays of a file, read with plain NumPy."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays.pop("__header__").tobytes().decode("utf-8"))
    return header, arrays


def _write_raw(path, header, arrays):
    """Write an npz with ``np.savez`` (independent of the code under test); ``header`` dict or raw array.

    An object array is pickled into its member (``np.savez`` does that by default; its
    ``allow_pickle`` keyword is recent: NumPy 1.24 stores it as one more array).
    """
    if isinstance(header, dict):
        header = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    members = dict(arrays) if header is None else {"__header__": header, **arrays}
    with open(path, "wb") as f:
        np.savez(f, **members)


@pytest.fixture
def saved(tmp_path):
    """A valid file of a depth-2 float32 FFF: returns (path, header, arrays)."""
    path = tmp_path / "model.npz"
    io.save(_perturbed_fff(2, "float32"), path)
    header, arrays = _members(path)
    return path, header, arrays


def _load_fails(path, *needles):
    with pytest.raises(ModelFileError) as info:
        io.load(path)
    msg = str(info.value)
    assert str(path) in msg
    problem = msg.replace(str(path), "")  # test names in tmp_path must not satisfy the needles
    for needle in needles:
        assert needle in problem, (needle, msg)
    return msg


# ---------------------------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [0, 3])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("master_leaf", [0, 4])
def test_fff_round_trip_is_exact(tmp_path, depth, dtype, master_leaf):
    layer = _perturbed_fff(depth, dtype, activation="gelu", dropout=0.25, region_leak=0.125,
                           train_hardened=True, backend="numpy", master_leaf=master_leaf)
    path = tmp_path / "fff.npz"
    io.save(layer, path)
    loaded = io.load(path)
    _assert_same_layer(layer, loaded)
    x = np.random.default_rng(0).standard_normal((4, 5))
    np.testing.assert_array_equal(loaded(x), layer(x))
    assert os.listdir(tmp_path) == ["fff.npz"]


def test_header_records_format_kind_config_and_arrays(saved):
    path, header, arrays = saved
    assert header["format_version"] == io.FORMAT_VERSION == 1
    assert header["fffcpu_version"] == fffcpu.__version__
    assert header["kind"] == "fff"
    assert header["config"]["depth"] == 2 and header["config"]["dtype"] == "float32"
    assert [a["name"] for a in header["arrays"]] == list(arrays)
    for a in header["arrays"]:
        assert tuple(a["shape"]) == arrays[a["name"]].shape
        assert a["dtype"] == arrays[a["name"]].dtype.name == "float32"


@pytest.mark.parametrize("depth", [0, 3])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_neuron_tree_round_trip_is_exact(tmp_path, depth, dtype):
    layer = NeuronTreeFFF(5, 3, depth, parallel_size=2, seed=3, dtype=dtype, backend="numpy")
    rng = np.random.default_rng(1)
    for p in layer.params.values():
        p += rng.standard_normal(p.shape).astype(p.dtype)
    path = tmp_path / "tree.npz"
    io.save(layer, path)
    loaded = io.load(path)
    _assert_same_layer(layer, loaded)
    x = rng.standard_normal((4, 5))
    np.testing.assert_array_equal(loaded(x), layer(x))


def test_neuron_tree_forest_config_must_match_rows(tmp_path):
    path = tmp_path / "tree.npz"
    io.save(NeuronTreeFFF(4, 2, 1, parallel_size=3, seed=0), path)  # 9 rows: 3 trees of 3 neurons
    header, arrays = _members(path)
    header["config"]["parallel_size"] = 1
    _write_raw(path, header, arrays)
    _load_fails(path, "parallel_size", "9 rows")


def test_path_is_used_exactly_as_given(tmp_path):
    layer = _perturbed_fff(1, "float64")
    io.save(layer, str(tmp_path / "weights.bin"))  # str, no .npz suffix appended
    io.save(layer, tmp_path / "plain")  # PathLike
    assert sorted(os.listdir(tmp_path)) == ["plain", "weights.bin"]
    _assert_same_layer(layer, io.load(tmp_path / "weights.bin"))
    _assert_same_layer(layer, io.load(str(tmp_path / "plain")))


def test_file_is_a_plain_npz(saved):
    path, _, arrays = saved
    assert set(arrays) == {"node_weights", "node_biases", "w1s", "b1s", "w2s", "b2s"}


@pytest.mark.skipif(not os.path.exists("/dev/null") or not hasattr(os, "mkfifo"), reason="POSIX devices and pipes")
def test_load_refuses_devices_and_pipes(tmp_path):
    """fffcpu.load("/dev/zero") took memory without limit (zipfile reads a file that reports no size to
    its end), and a pipe (``cat m.npz | ... load("/dev/stdin")``) was called a damaged archive."""
    link = tmp_path / "model.npz"
    link.symlink_to("/dev/null")
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    import threading
    for path, kind in ((link, "a character device"), (fifo, "a pipe")):
        for read in (fffcpu.load, fffcpu.load_classes):
            errors = []

            def attempt():
                try:
                    read(path)
                except Exception as exc:  # noqa: BLE001 - checked below
                    errors.append(exc)

            # in a thread: opening a pipe with no writer blocks, so a regression hangs it, not the run
            worker = threading.Thread(target=attempt, daemon=True)
            worker.start()
            worker.join(30)
            assert not worker.is_alive(), f"{read.__name__}({path.name}) blocked"
            assert len(errors) == 1 and isinstance(errors[0], ModelFileError), errors
            assert f"{path.name}' is {kind}, not a file: an fffcpu model file is read from a regular file" \
                in str(errors[0])


def test_save_needs_a_file_name(tmp_path):
    """save(layer, "") failed with "FileNotFoundError: '/tmp/..xxxx.tmp' -> ''" and a path ending in a
    separator with a bare NotADirectoryError, neither naming the argument."""
    layer = fffcpu.FFF(4, 3, 2, 1, seed=0)
    with pytest.raises(ValueError, match=r"path must name a file to save to, got ''$"):
        fffcpu.save(layer, "")
    with pytest.raises(ValueError, match=r"path must name a file to save to, got '.*m\.npz/' \(it ends with a "
                                         r"separator, so it names a directory\)"):
        fffcpu.save(layer, str(tmp_path / "m.npz") + "/")
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_and_keeps_mode(tmp_path):
    path = tmp_path / "m.npz"
    io.save(_perturbed_fff(1, "float32"), path)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~io._umask()  # as open() would, not mkstemp's 0o600
    os.chmod(path, 0o640)
    second = _perturbed_fff(2, "float64")
    io.save(second, path)
    assert os.stat(path).st_mode & 0o777 == 0o640
    _assert_same_layer(second, io.load(path))


def test_save_through_a_symlink_writes_its_target(tmp_path):
    """Saving to a link (current.npz -> v1.npz) replaced the link by a file and left v1.npz stale."""
    target, link = tmp_path / "v1.npz", tmp_path / "current.npz"
    io.save(_perturbed_fff(1, "float32"), target)
    link.symlink_to(target.name)
    second = _perturbed_fff(2, "float64")
    io.save(second, link)
    assert link.is_symlink()
    _assert_same_layer(second, io.load(target))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current.npz", "v1.npz"]  # no temporary left


@pytest.mark.parametrize("how", ["chmod", "access"])
def test_save_refuses_a_write_protected_file(tmp_path, monkeypatch, how):
    """The rename into place needs only the folder's permission, so a file chmod 0o444 was replaced."""
    path = tmp_path / "kept.npz"
    io.save(_perturbed_fff(1, "float32"), path)
    before = path.read_bytes()
    if how == "chmod":  # real permissions; root may write any file, as open() would
        if os.geteuid() == 0:
            pytest.skip("root may write a write-protected file")
        os.chmod(path, 0o444)
    else:  # the same answer from the permission check, also where the tests run as root
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if os.fspath(p) == str(path)
                            else real_access(p, mode, **kw))
    from fffcpu import interop
    saves = [io.save]
    try:  # the safetensors writer shares the check; it needs the optional package
        import safetensors  # noqa: F401
        saves.append(interop.save_safetensors)
    except ImportError:
        pass
    for save in saves:
        with pytest.raises(PermissionError, match=r"kept\.npz': the file is write-protected"):
            save(_perturbed_fff(2, "float32"), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.npz"]


class _FFFWithScale(fffcpu.FFF):
    """An option that adds an array (as eFFF's master leaf does): expected names come from the layer."""

    kind = "test_fff_scale"

    def __init__(self, *args, scale=False, **kw):
        super().__init__(*args, **kw)
        self.scale = scale
        if scale:
            self.params["k"] = np.array(0.5, dtype=self.dtype)

    def _param_shapes(self):
        shapes = super()._param_shapes()
        if self.scale:
            shapes["k"] = ()
        return shapes

    def config(self):
        return {**super().config(), "scale": self.scale}


def test_registered_kind_with_extra_arrays(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "LAYER_KINDS", dict(io.LAYER_KINDS))
    io.register_kind("test_fff_scale", _FFFWithScale)
    layer = _FFFWithScale(3, 2, 2, 1, seed=0, scale=True)
    layer.params["k"][...] = -1.25
    io.save(layer, tmp_path / "s.npz")
    loaded = io.load(tmp_path / "s.npz")
    _assert_same_layer(layer, loaded)
    assert float(loaded.params["k"]) == -1.25
    # the same file with the option off in its config: "k" is now unexpected
    header, arrays = _members(tmp_path / "s.npz")
    header["config"]["scale"] = False
    _write_raw(tmp_path / "off.npz", header, arrays)
    _load_fails(tmp_path / "off.npz", "unexpected ['k']")


# ---------------------------------------------------------------------------------------------
# save errors
# ---------------------------------------------------------------------------------------------
def test_save_refuses_unregistered_layers(tmp_path):
    with pytest.raises(TypeError, match="registered"):
        io.save(object(), tmp_path / "x.npz")

    class Sub(fffcpu.FFF):
        pass

    with pytest.raises(TypeError, match="Sub"):
        io.save(Sub(2, 1, 1, 0, seed=0), tmp_path / "x.npz")
    assert os.listdir(tmp_path) == []


def test_save_refuses_non_finite_parameters(tmp_path):
    layer = _perturbed_fff(1, "float32")
    layer.params["b2s"][0, 0] = np.nan
    with pytest.raises(ValueError, match="b2s"):
        io.save(layer, tmp_path / "x.npz")
    assert os.listdir(tmp_path) == []


def test_save_refuses_config_that_json_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match="seed must be an integer"):  # the constructor refuses it now
        fffcpu.FFF(2, 1, 1, 0, seed=np.random.default_rng(0))
    layer = fffcpu.FFF(2, 1, 1, 0)
    object.__setattr__(layer, "seed", np.random.default_rng(0))  # as a layer kind of a user's might hold
    with pytest.raises(TypeError, match="seed"):
        io.save(layer, tmp_path / "x.npz")
    assert os.listdir(tmp_path) == []


def test_save_into_missing_directory_or_onto_a_directory(tmp_path):
    layer = _perturbed_fff(0, "float32")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        io.save(layer, tmp_path / "nope" / "m.npz")
    with pytest.raises(IsADirectoryError):
        io.save(layer, tmp_path)


# ---------------------------------------------------------------------------------------------
# atomic write
# ---------------------------------------------------------------------------------------------
class _Boom(RuntimeError):
    pass


@pytest.mark.parametrize("where", ["mid_write", "fsync", "replace"])
def test_failed_save_leaves_old_file_and_no_temp_files(tmp_path, monkeypatch, where):
    path = tmp_path / "m.npz"
    io.save(_perturbed_fff(1, "float32"), path)
    before = path.read_bytes()

    if where == "mid_write":
        real = io._write_npz

        def partial(f, members):
            real(f, dict(list(members.items())[:2]))  # some bytes reach the temp file
            raise _Boom("disk full")

        monkeypatch.setattr(io, "_write_npz", partial)
    elif where == "fsync":
        def bad_fsync(fd):
            raise _Boom("fsync failed")

        monkeypatch.setattr(io.os, "fsync", bad_fsync)
    else:
        def bad_replace(src, dst):
            assert os.path.getsize(src) > 0
            raise _Boom("rename failed")

        monkeypatch.setattr(io.os, "replace", bad_replace)

    with pytest.raises(_Boom):
        io.save(_perturbed_fff(3, "float64"), path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["m.npz"]
    assert path.read_bytes() == before
    assert io.load(path).depth == 1


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    def boom(f, members):
        f.write(b"partial")
        raise _Boom()

    monkeypatch.setattr(io, "_write_npz", boom)
    with pytest.raises(_Boom):
        io.save(_perturbed_fff(1, "float32"), tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# malformed files
# ---------------------------------------------------------------------------------------------
def test_missing_file_gives_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        io.load(tmp_path / "absent.npz")


def test_array_listed_in_header_but_missing_from_archive(saved, tmp_path):
    path, header, arrays = saved
    del arrays["w2s"]
    _write_raw(path, header, arrays)
    _load_fails(path, "missing ['w2s']")


def test_array_in_archive_but_not_in_header(saved):
    path, header, arrays = saved
    arrays["stowaway"] = np.zeros(3, np.float32)
    _write_raw(path, header, arrays)
    _load_fails(path, "unexpected ['stowaway']")


def test_array_the_layer_needs_is_missing_everywhere(saved):
    path, header, arrays = saved
    del arrays["b1s"]
    header["arrays"] = [a for a in header["arrays"] if a["name"] != "b1s"]
    _write_raw(path, header, arrays)
    _load_fails(path, "missing ['b1s']")


def test_array_the_layer_does_not_know(saved):
    path, header, arrays = saved
    arrays["bonus_w"] = np.zeros((1, 2), np.float32)
    header["arrays"].append({"name": "bonus_w", "shape": [1, 2], "dtype": "float32"})
    _write_raw(path, header, arrays)
    _load_fails(path, "unexpected ['bonus_w']")


def test_master_leaf_arrays_without_master_leaf_in_config(tmp_path):
    path = tmp_path / "m.npz"
    io.save(_perturbed_fff(2, "float32", master_leaf=3), path)
    header, arrays = _members(path)
    header["config"]["master_leaf"] = 0
    _write_raw(path, header, arrays)
    _load_fails(path, "master_leaf")
    del arrays["magic_w1"]
    header["arrays"] = [a for a in header["arrays"] if a["name"] != "magic_w1"]
    header["config"]["master_leaf"] = 3
    _write_raw(path, header, arrays)
    _load_fails(path, "master_leaf is 3 in the config but 0 from the arrays")


@pytest.mark.parametrize("master_leaf", [10 ** 8, 10 ** 30])
def test_huge_master_leaf_in_config_without_its_arrays(saved, master_leaf):
    """Only the sizes the arrays showed were checked before building the layer: master_leaf=10**8 in the
    config of a file without a master leaf allocated gigabytes, and 10**30 raised MemoryError."""
    path, header, arrays = saved
    header["config"]["master_leaf"] = master_leaf
    _write_raw(path, header, arrays)
    _load_fails(path, f"master_leaf is {master_leaf} in the config but 0 from the arrays")


def test_a_config_without_master_leaf_is_a_layer_without_one(saved):
    path, header, arrays = saved
    del header["config"]["master_leaf"]
    _write_raw(path, header, arrays)
    assert io.load(path).master_leaf == 0


def test_array_shape_differs_from_header(saved):
    path, header, arrays = saved
    arrays["b2s"] = arrays["b2s"][:, :1].copy()
    _write_raw(path, header, arrays)
    _load_fails(path, "'b2s'", "shape")


def _declare(header, name, **fields):
    """Make the header declare ``fields`` (``shape``, ``dtype``) for the array ``name``."""
    next(a for a in header["arrays"] if a["name"] == name).update(fields)


def test_array_shape_does_not_fit_the_config(saved):
    path, header, arrays = saved
    arrays["node_biases"] = np.zeros((3, 2), np.float32)
    _declare(header, "node_biases", shape=[3, 2])
    _write_raw(path, header, arrays)
    _load_fails(path, "'node_biases'", "(3, 1)", "(3, 2)")


def test_config_sizes_disagree_with_arrays(saved):
    path, header, arrays = saved
    header["config"]["input_width"] = 4000  # would allocate far more than the file holds
    _write_raw(path, header, arrays)
    _load_fails(path, "input_width", "4000")


def test_array_dtype_differs_from_header(saved):
    path, header, arrays = saved
    arrays["w1s"] = arrays["w1s"].astype(np.float64)
    _write_raw(path, header, arrays)
    _load_fails(path, "'w1s'", "float64 in the archive but float32 in the header")
    # the other way round the layer's dtype matches the archive: only the header check can see it
    header, arrays = _members(path)
    arrays["w1s"] = arrays["w1s"].astype(np.float32)
    _declare(header, "w1s", dtype="float64")
    _write_raw(path, header, arrays)
    _load_fails(path, "'w1s'", "float32 in the archive but float64 in the header")


def test_array_dtype_differs_from_layer_dtype(saved):
    path, header, arrays = saved
    arrays["w1s"] = arrays["w1s"].astype(np.float64)
    _declare(header, "w1s", dtype="float64")
    _write_raw(path, header, arrays)
    _load_fails(path, "'w1s'", "dtype float32")


@pytest.mark.parametrize("version", [2, 0, "1", None, True])
def test_wrong_format_version(saved, version):
    path, header, arrays = saved
    header["format_version"] = version
    _write_raw(path, header, arrays)
    _load_fails(path, "format_version", repr(version))


def test_wrong_format_name(saved):
    path, header, arrays = saved
    header["format"] = "someone-else"
    _write_raw(path, header, arrays)
    _load_fails(path, "format", "'someone-else'")


def test_missing_format_version(saved):
    path, header, arrays = saved
    del header["format_version"]
    _write_raw(path, header, arrays)
    _load_fails(path, "format_version")


def test_unknown_kind(saved):
    path, header, arrays = saved
    header["kind"] = "mystery"
    _write_raw(path, header, arrays)
    _load_fails(path, "unknown layer kind 'mystery'")


def test_config_that_does_not_build_the_layer(saved):
    path, header, arrays = saved
    header["config"]["activation"] = "swish"
    _write_raw(path, header, arrays)
    _load_fails(path, "swish")
    header["config"] = {**header["config"], "activation": "relu", "bogus": 1}
    _write_raw(path, header, arrays)
    _load_fails(path, "bogus")


def test_corrupt_json_header(saved):
    path, _, arrays = saved
    _write_raw(path, np.frombuffer(b'{"format": "fffcpu-layer", ', np.uint8), arrays)
    _load_fails(path, "JSON")
    _write_raw(path, np.frombuffer(b"\xff\xfe", np.uint8), arrays)
    _load_fails(path, "JSON")
    _write_raw(path, np.frombuffer(b"[1, 2]", np.uint8), arrays)
    _load_fails(path, "JSON object")


@pytest.mark.parametrize("raw", [b"[" * 100000 + b"]" * 100000, b'{"a": ' * 50000 + b"1" + b"}" * 50000])
def test_json_header_nested_too_deeply(saved, raw):
    """json.loads raised RecursionError, which load let through."""
    path, _, arrays = saved
    _write_raw(path, np.frombuffer(raw, np.uint8), arrays)
    _load_fails(path, "nested too deeply")


@pytest.mark.parametrize("training, kept", [
    ("mse", {}),
    ({"loss": "huber", "label_column": "price"}, {"label_column": "price"}),  # a later version's loss
    ({"label_column": True, "loss": "mse"}, {"loss": "mse"}),
    ({"label_column": None}, {}),
    ({"loss": "mse", "epochs": 3}, {"loss": "mse"}),  # a later version's entry
    ({"feature_columns": list("abcde")}, {"feature_columns": list("abcde")}),
    ({"feature_columns": list("abcd"), "loss": "mse"}, {"loss": "mse"}),  # not the layer's 5 inputs
    ({"feature_columns": ["a", "b", "c", "d", 5]}, {}),
    ({"feature_columns": "abcde"}, {}),
])
def test_the_training_entry_of_the_header_is_informational(saved, training, kept):
    """fffcpu train saves its loss and label column (header key "training"), which evaluate, predict and
    inspect read (io._read(..., with_training=True)). An entry this version cannot use is left out, not
    a reason to refuse the model, which fffcpu.load reads anyway; save refuses one."""
    path, header, arrays = saved
    assert "training" not in header  # fffcpu.save writes none
    _write_raw(path, dict(header, training=training), arrays)
    assert io._read(path, with_training=True)[2] == kept
    io.load(path)
    if isinstance(training, dict) and "huber" in training.values():
        with pytest.raises(ValueError, match="'loss' must be 'cross_entropy' or 'mse', got 'huber'"):
            io.save(_perturbed_fff(1, "float32"), path, _training=training)


def test_the_training_entry_round_trips(tmp_path):
    path = tmp_path / "t.npz"
    io.save(_perturbed_fff(1, "float32"), path, _training={"loss": "mse", "label_column": "price"})
    assert _members(path)[0]["training"] == {"loss": "mse", "label_column": "price"}
    assert io._read(path, with_training=True)[2] == {"loss": "mse", "label_column": "price"}
    assert io._read(tmp_path / "t.npz")[1] is None and len(io._read(path)) == 2
    io.save(_perturbed_fff(1, "float32"), path)
    assert io._read(path, with_training=True)[2] == {}
    names = ["x0", "x 1", "größe", "", "x0"]  # any text, as a CSV header has it; a tuple is stored as a list
    io.save(_perturbed_fff(1, "float32"), path, _training={"feature_columns": tuple(names)})
    assert io._read(path, with_training=True)[2] == {"feature_columns": names}
    for bad, message in ((names[:4], "'feature_columns' must name the layer's 5 inputs, got 4 names"),
                         (names[:4] + [None], "'feature_columns' must be a list of column names, got")):
        with pytest.raises(ValueError, match=re.escape(message)):
            io.save(_perturbed_fff(1, "float32"), path, _training={"feature_columns": bad})
    assert io._read(path, with_training=True)[2] == {"feature_columns": names}  # the refused saves left it


def test_header_missing_or_of_the_wrong_type(saved):
    path, header, arrays = saved
    _write_raw(path, None, arrays)
    # a plain np.savez of a state dict: the message names the way to read one
    _load_fails(path, "__header__", "it holds the arrays 'b1s', 'b2s', ", "plain NumPy archive (np.savez)",
                "if they are a layer's state dict, read them with "
                "fffcpu.interop.from_torch_state_dict(dict(np.load(path)))")
    _write_raw(path, np.zeros((2, 2), np.uint8), arrays)
    _load_fails(path, "__header__", "uint8")


@pytest.mark.parametrize("content", [b"", b"hello, not a model\n", b"PK\x03\x04garbage"])
def test_not_an_npz(tmp_path, content):
    path = tmp_path / "m.npz"
    path.write_bytes(content)
    _load_fails(path, "not an npz")


def test_a_plain_npy_file_is_not_a_model(tmp_path):
    path = tmp_path / "m.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    _load_fails(path, "not an npz")


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.99])
def test_truncated_file(saved, fraction):
    path = saved[0]
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    _load_fails(path, "truncated")


def test_flipped_byte_in_array_data_is_caught_by_crc(saved):
    path, _, arrays = saved
    data = bytearray(path.read_bytes())
    needle = arrays["w2s"].tobytes()[:16]
    at = data.index(needle)
    data[at + 3] ^= 0xFF
    path.write_bytes(bytes(data))
    _load_fails(path, "'w2s'", "corrupt")


def test_unsupported_zip_records_are_model_file_errors(saved):
    """zipfile raises NotImplementedError for a compression method or zip version it cannot read;
    load let it through."""
    path = saved[0]
    good = path.read_bytes()
    entry = good.rfind(b"PK\x01\x02")  # the last member's central directory record
    data = bytearray(good)
    data[entry + 10] = 1  # compression method 1 (shrunk)
    path.write_bytes(bytes(data))
    _load_fails(path, "corrupt", "compression method")
    data = bytearray(good)
    data[entry + 6] = 200  # version needed to extract: 20.0
    path.write_bytes(bytes(data))
    _load_fails(path, "not an npz", "version")


def test_damaged_deflate_data_in_a_compressed_file(saved):
    """load reads np.savez_compressed files too; damaged deflate data raised zlib.error."""
    path, header, arrays = saved
    blob = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez_compressed(path, __header__=blob, **arrays)
    io.load(path)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("w2s.npy")
    data = bytearray(path.read_bytes())
    local = info.header_offset  # the local header's name and extra lengths (its extra is not the central one)
    start = local + 30 + int.from_bytes(data[local + 26: local + 28], "little") \
        + int.from_bytes(data[local + 28: local + 30], "little")
    data[start + 4: start + 12] = bytes(b ^ 0xFF for b in data[start + 4: start + 12])
    path.write_bytes(bytes(data))
    _load_fails(path, "'w2s'", "corrupt", "decompressing")


def test_npy_header_numpy_cannot_tokenize(tmp_path):
    """NumPy's fallback parser of .npy headers raises tokenize.TokenError on an unclosed bracket."""
    text = b"{'descr': '|u1', 'fortran_order': False, 'shape': (3, }"
    text += b" " * (117 - len(text)) + b"\n"
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("__header__.npy", b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + b"abc")
    _load_fails(path, "'__header__'", "corrupt")




@pytest.mark.parametrize("member", ["w1s", "__header__"])
def test_pickled_object_array_is_refused_not_unpickled(saved, member):
    path, header, arrays = saved
    evil = np.empty(1, dtype=object)
    evil[0] = canary.Canary()
    if member == "__header__":
        header = evil
    else:
        arrays[member] = evil
        _declare(header, member, shape=[1])  # so that only the object dtype is wrong
    _write_raw(path, header, arrays)
    canary.unpickled.clear()
    _load_fails(path, repr(member), "Python objects (pickled data)")
    assert canary.unpickled == []


def test_trailing_bytes_after_array_data(saved):
    path, header, arrays = saved
    with zipfile.ZipFile(path, "w") as zf:
        blob = np.frombuffer(json.dumps(header).encode(), np.uint8)
        for name, arr in {"__header__": blob, **arrays}.items():
            buf = io_bytes.BytesIO()
            np.save(buf, arr)
            zf.writestr(name + ".npy", buf.getvalue() + (b"extra" if name == "b1s" else b""))
    _load_fails(path, "'b1s'", "trailing bytes")


def test_messages_name_the_file_for_pathlike_and_str(saved):
    path, header, arrays = saved
    header["kind"] = 3
    _write_raw(path, header, arrays)
    _load_fails(path, "'kind'")
    _load_fails(pathlib.Path(str(path)), "'kind'")


def test_non_finite_values_in_the_file(saved):
    path, header, arrays = saved
    arrays["w2s"] = arrays["w2s"].copy()
    arrays["w2s"][0, 0, 0] = np.inf
    _write_raw(path, header, arrays)
    _load_fails(path, "'w2s'", "finite")


def test_archive_member_that_is_not_an_array(saved):
    path = saved[0]
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("notes.txt", b"hello")
    _load_fails(path, "'notes.txt'")


def test_saved_members_are_in_the_layers_native_dtype(tmp_path):
    """What save writes, np.load users (and torch.from_numpy, which refuses another byte order) read
    as the layer holds it: a save writing big-endian members passed every round trip, since load
    converts them to native order."""
    for layer in (fffcpu.FFF(4, 3, 2, depth=2, seed=0, dtype="float64"), fffcpu.NeuronTreeFFF(4, 2, 2, seed=0)):
        fffcpu.save(layer, tmp_path / "m.npz")
        with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
            for name, value in layer.state_dict().items():
                assert z[name].dtype == value.dtype and z[name].dtype.isnative, name


def test_big_endian_arrays_load_as_native_values(saved):
    # another writer may store big-endian .npy members: same values, the layer's native dtype
    path, header, arrays = saved
    want = {k: v.copy() for k, v in arrays.items()}
    _write_raw(path, header, {k: v.astype(v.dtype.newbyteorder(">")) for k, v in arrays.items()})
    layer = io.load(path)
    for name, value in want.items():
        assert layer.params[name].dtype == np.float32 and layer.params[name].dtype.isnative
        np.testing.assert_array_equal(layer.params[name], value)


def test_save_fsyncs_the_directory_after_the_rename(tmp_path, monkeypatch):
    # the rename is durable only once the directory entry is synced
    synced = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append((stat.S_ISDIR(os.fstat(fd).st_mode), os.path.exists(tmp_path / "m.npz")))
        real_fsync(fd)

    monkeypatch.setattr(io.os, "fsync", spy)
    io.save(_perturbed_fff(1, "float32"), tmp_path / "m.npz")
    assert synced[0] == (False, False)  # the temporary file, before the rename
    assert synced[-1] == (True, True)  # the directory, after it


def test_interrupted_save_leaves_old_file_and_no_temp_files(tmp_path, monkeypatch):
    # Ctrl-C during the write is a BaseException, not an Exception: the temporary must go too
    path = tmp_path / "m.npz"
    io.save(_perturbed_fff(1, "float32"), path)
    before = path.read_bytes()

    def interrupted(f, members):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(io, "_write_npz", interrupted)
    with pytest.raises(KeyboardInterrupt):
        io.save(_perturbed_fff(2, "float32"), path)
    assert os.listdir(tmp_path) == ["m.npz"]
    assert path.read_bytes() == before


@pytest.mark.parametrize("umask", [0o002, 0o077])
def test_new_file_mode_follows_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        io.save(_perturbed_fff(1, "float32"), tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "m.npz").st_mode & 0o777 == 0o666 & ~umask


def test_duplicate_archive_member_is_refused(saved):
    # two w1s.npy members: which one a reader takes is up to the reader, so neither is taken
    path, _, arrays = saved
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name"
        with zipfile.ZipFile(path, "a") as zf:
            buf = io_bytes.BytesIO()
            np.save(buf, arrays["w1s"] + 1)
            zf.writestr("w1s.npy", buf.getvalue())
    _load_fails(path, "duplicate archive member 'w1s.npy'")


def test_header_declaring_more_bytes_than_the_file_holds(saved):
    path, header, arrays = saved
    _declare(header, "w1s", shape=[4, 5, 10 ** 6])
    _write_raw(path, header, arrays)
    _load_fails(path, "the header declares", "bytes of arrays but the file has only")


# ---------------------------------------------------------------------------------------------
# class names
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("classes, expected", [
    (["cat", "dog"], ("cat", "dog")),
    (("cat", "dog"), ("cat", "dog")),
    (np.array(["setosa", "versicolor"]), ("setosa", "versicolor")),  # numpy str_ items
    (np.array(["ä", "€"], dtype=object), ("ä", "€")),
    ([np.str_("a"), "b"], ("a", "b")),
    ([3, -1], (3, -1)),
    (np.array([3, 7], dtype=np.int64), (3, 7)),  # an FFFClassifier's classes_ of int labels
    ([np.int32(1), np.uint8(2)], (1, 2)),
    ([2 ** 63 - 1, -2 ** 63], (2 ** 63 - 1, -2 ** 63)),
])
def test_class_names_round_trip_as_plain_python(tmp_path, classes, expected):
    layer = _perturbed_fff(1, "float32")  # output_width 2
    path = tmp_path / "named.npz"
    io.save(layer, path, classes=classes)
    got = io.load_classes(path)
    assert got == expected and type(got) is tuple
    assert [type(name) for name in got] == [type(name) for name in expected]  # str and int, not NumPy's
    header, _ = _members(path)
    assert header["classes"] == list(expected) and header["format_version"] == 1
    _assert_same_layer(layer, io.load(path))  # the layer itself is unchanged by its names
    both = io.load(path, with_classes=True)  # one reading of the file for both
    assert type(both) is tuple and len(both) == 2 and both[1] == expected
    _assert_same_layer(layer, both[0])
    assert fffcpu.load_classes is io.load_classes
    assert "load_classes" in io.__all__ and "load_classes" in fffcpu.__all__


def test_a_file_without_class_names_has_none(saved):
    path, header, _ = saved
    assert "classes" not in header
    layer, classes = io.load(path, with_classes=True)
    assert classes is None and isinstance(layer, (fffcpu.FFF, fffcpu.NeuronTreeFFF))
    with pytest.raises(TypeError, match="with_classes must be True or False, got 'yes'"):
        io.load(path, with_classes="yes")
    assert io.load_classes(path) is None
    io.save(_perturbed_fff(1, "float32"), path, classes=None)
    assert "classes" not in _members(path)[0]


@pytest.mark.parametrize("classes, error, message", [
    ("ab", TypeError, "classes must be a list, tuple or 1-D array of class names, got str"),
    ({"a", "b"}, TypeError, "classes must be a list, tuple or 1-D array of class names, got set"),
    (np.array([["a"], ["b"]]), ValueError, "classes must be 1-D (one name per output), got an array of shape (2, 1)"),
    (["a"], ValueError, "classes must name each of the layer's 2 outputs (output_width), got 1 name"),
    (["a", "b", "c"], ValueError, "classes must name each of the layer's 2 outputs (output_width), got 3 names"),
    (["a", 1], TypeError, "classes must be all str or all integers, not both: got 'a' at index 0 and 1 at index 1"),
    ([True, False], TypeError, "classes must be all str or all integers, got True (bool) at index 0"),
    (np.array([True, False]), TypeError, "classes must be all str or all integers, got True (bool) at index 0"),
    ([0, 1.0], TypeError, "classes must be all str or all integers, got 1.0 (float) at index 1"),
    (np.array([0.0, 1.0]), TypeError, "classes must be all str or all integers, got 0.0 (float) at index 0"),
    ([None, "b"], TypeError, "classes must be all str or all integers, got None (NoneType) at index 0"),
    (["a", "a"], ValueError, "classes must be unique, got 'a' at index 0 and at index 1"),
    ([np.int64(4), 4], ValueError, "classes must be unique, got 4 at index 0 and at index 1"),
    (["", "b"], ValueError, "classes must be non-empty names, got '' at index 0"),
    ([0, 2 ** 63], ValueError, "classes must be integers in the int64 range, got 9223372036854775808 at index 1"),
    (["a", "b\ud800"], ValueError,
     "classes must be text that UTF-8 can encode, got 'b\\ud800' at index 1 (a lone surrogate)"),
])
def test_save_refuses_bad_class_names(tmp_path, classes, error, message):
    with pytest.raises(error) as info:
        io.save(_perturbed_fff(1, "float32"), tmp_path / "x.npz", classes=classes)
    assert str(info.value) == message
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("classes, needle", [
    ("ab", "the header's 'classes' must be a JSON list of class names, got 'ab'"),
    (None, "the header's 'classes' must be a JSON list of class names, got None"),
    ({"a": 0, "b": 1}, "the header's 'classes' must be a JSON list of class names, got {'a': 0, 'b': 1}"),
    (["a"], "the header's 'classes' must name each of the layer's 2 outputs (output_width), got 1 name"),
    ([0, 1, 2], "the header's 'classes' must name each of the layer's 2 outputs (output_width), got 3 names"),
    ([], "the header's 'classes' must name each of the layer's 2 outputs (output_width), got 0 names"),
    (["a", 1], "the header's 'classes' must be all str or all integers, not both: got 'a' at index 0 and 1 at "),
    ([True, False], "the header's 'classes' must be all str or all integers, got True (bool) at index 0"),
    ([0, 1.0], "the header's 'classes' must be all str or all integers, got 1.0 (float) at index 1"),
    ([["a"], "b"], "the header's 'classes' must be all str or all integers, got ['a'] (list) at index 0"),
    ([None, None], "the header's 'classes' must be all str or all integers, got None (NoneType) at index 0"),
    (["b", "b"], "the header's 'classes' must be unique, got 'b' at index 0 and at index 1"),
    ([7, 7], "the header's 'classes' must be unique, got 7 at index 0 and at index 1"),
    (["a", ""], "the header's 'classes' must be non-empty names, got '' at index 1"),
    # JSON's "\ud800" is a lone surrogate, which loaded, and fffcpu predict could not write as UTF-8
    (["\ud800", "b"], "the header's 'classes' must be text that UTF-8 can encode, got '\\ud800' at index 0"),
    ([-2 ** 63 - 1, 0], "the header's 'classes' must be integers in the int64 range, got -9223372036854775809 at "),
])
def test_load_refuses_bad_class_names_in_the_header(saved, classes, needle):
    path, header, arrays = saved
    header["classes"] = classes
    _write_raw(path, header, arrays)
    msg = _load_fails(path, needle)
    with pytest.raises(ModelFileError) as info:
        io.load_classes(path)  # the same checks, the same message
    assert str(info.value) == msg


def test_load_classes_refuses_what_load_refuses(saved, tmp_path):
    path, header, arrays = saved
    header["classes"] = ["a", "b"]
    _write_raw(path, header, arrays)
    assert io.load_classes(path) == ("a", "b")
    arrays["w1s"] = arrays["w1s"][:1]  # the names are fine, the arrays are not
    _write_raw(path, header, arrays)
    with pytest.raises(ModelFileError, match="'w1s'"):
        io.load_classes(path)
    with pytest.raises(FileNotFoundError):
        io.load_classes(tmp_path / "missing.npz")


# ---------------------------------------------------------------------------------------------
# fuzzing
# ---------------------------------------------------------------------------------------------
def test_fuzz_damaged_model_files_load_the_same_or_name_the_file(tmp_path):
    """Every truncation of a small model file with class names and 200 seeded byte changes: the same layer
    and names, or a ModelFileError naming the file (the zip CRCs catch a changed byte of a member; one in
    a timestamp does not matter). About 40,000 such cases ad hoc found nothing more."""
    layer = _perturbed_fff(1, "float32")
    path = tmp_path / "fuzz.npz"
    io.save(layer, path, classes=["a", "b"])
    loaded = 0
    for raw, _ in damaged_copies(path.read_bytes(), seed=11):
        path.write_bytes(raw)
        try:
            got = io.load(path)
        except ModelFileError as err:
            assert str(path) in str(err)
            continue
        _assert_same_layer(got, layer)
        assert io.load_classes(path) == ("a", "b")
        loaded += 1
    assert 0 < loaded < 100  # some changes hit bytes that do not matter, most are refused


def test_save_replaces_a_model_file_but_not_a_file_that_holds_no_model(tmp_path):
    """A bad-input review: fffcpu.save(layer, "train.csv") turned the data file into a zip archive
    without a word (the commands refused it; the library did not). An np.savez archive of data is no
    model either; an empty file, or a model file, is replaced as before."""
    layer = _perturbed_fff(1, "float32")
    data = tmp_path / "train.csv"
    data.write_text("a,b,label\n1,2,0\n")
    np.savez(tmp_path / "data.npz", X=np.ones((2, 5)))
    for path in (data, tmp_path / "data.npz"):
        kept = path.read_bytes()
        with pytest.raises(FileExistsError, match=re.escape(f"cannot save to {str(path)!r}: the file exists and "
                                                            "holds no model (a data or text file")):
            io.save(layer, path)
        assert path.read_bytes() == kept
    (tmp_path / "empty.npz").write_bytes(b"")
    for path in (tmp_path / "empty.npz", tmp_path / "empty.npz"):  # empty, then a model: both replaced
        io.save(layer, path)
        assert io.load(path).config() == layer.config()


def test_save_to_a_long_file_name(tmp_path):
    """A 250-character name (255 is the limit) failed with "File name too long" naming the temporary
    file, whose name added mkstemp's letters and ".tmp" to the whole name."""
    for name in ("m" * 246 + ".npz", "\U0001F600" * 62 + ".npz"):  # 250 and 252 bytes (4 a character)
        path = tmp_path / name
        io.save(_perturbed_fff(1, "float32"), path)
        assert io.load(path).config() == _perturbed_fff(1, "float32").config()
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []
        path.unlink()
    with pytest.raises(ValueError, match=re.escape("path must name a file to save to, got 'a\\x00b.npz' (it holds "
                                                   "a NUL character, which no file name may)")):
        io.save(_perturbed_fff(1, "float32"), "a\0b.npz")


def test_save_refuses_pipes_link_loops_and_folders_that_take_no_file(tmp_path):
    """Round 22's review: the atomic rename replaced a pipe (and, as root, /dev/full) with a regular
    file; a dangling link, a loop of links or a folder that takes no new file failed only at the write,
    naming a temporary file. All are refused before anything is written. (No device is used here: a
    broken check would replace it.)"""
    layer = fffcpu.FFF(3, 2, 2, depth=1, seed=0)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "to_fifo.npz").symlink_to(fifo)
    (tmp_path / "dangling.npz").symlink_to(tmp_path / "nodir" / "x.npz")
    (tmp_path / "loop1.npz").symlink_to(tmp_path / "loop2.npz")
    (tmp_path / "loop2.npz").symlink_to(tmp_path / "loop1.npz")
    for name, error, problem in (
            ("fifo", OSError, "it is a pipe, not a regular file"),
            ("to_fifo.npz", OSError, f"(the link's target {str(fifo)!r}): it is a pipe, not a regular file"),
            ("dangling.npz", FileNotFoundError, f"directory {str(tmp_path / 'nodir')!r} does not exist"),
            ("loop1.npz", OSError, "it is a loop of symbolic links")):
        with pytest.raises(error, match=re.escape(f"cannot save to {str(tmp_path / name)!r}") + ".*" + re.escape(problem)):
            fffcpu.save(layer, tmp_path / name)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    if os.path.isdir("/proc/self"):  # a folder no one may create a file in, root included
        with pytest.raises(OSError, match=re.escape("cannot save to '/proc/self/m.npz': no file can be created in "
                                                    "directory '/proc/self'")):
            fffcpu.save(layer, "/proc/self/m.npz")
    fffcpu.save(layer, tmp_path / "good.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling.npz", "fifo", "good.npz", "loop1.npz",
                                                           "loop2.npz", "to_fifo.npz"]  # no trial file left
