"""Parameters and batch outputs start on 64-byte boundaries (fffcpu._aligned): the kernels' vector
loads then never straddle two cache lines. Alignment is a matter of speed only; these tests check that
every way of getting a layer keeps it, and that the helpers copy exactly."""
import numpy as np
import pytest

import fffcpu
import fffcpu.training
from fffcpu._aligned import ALIGNMENT, aligned_copy, aligned_empty

LINE = 64  # the contract: one cache line, one AVX-512 register (not whatever ALIGNMENT says)


def test_the_alignment_is_a_cache_line():
    assert ALIGNMENT == LINE


def _offsets(layer):
    return {name: a.ctypes.data % LINE for name, a in layer.params.items()}


def _layers(dtype):
    return [fffcpu.FFF(40, 4, 7, 3, seed=0, dtype=dtype),
            fffcpu.FFF(40, 4, 7, 2, master_leaf=3, seed=1, dtype=dtype),
            fffcpu.NeuronTreeFFF(40, 7, 3, seed=2, dtype=dtype),
            fffcpu.NeuronTreeFFF(40, 7, 2, parallel_size=3, seed=3, dtype=dtype)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_new_layers_keep_their_parameters_aligned(dtype):
    for layer in _layers(dtype):
        assert set(_offsets(layer).values()) == {0}, (type(layer).__name__, _offsets(layer))
        for a in layer._kernel_arrays():  # what the kernels get, the master leaf's mix share aside
            if isinstance(a, np.ndarray) and a.ndim:
                assert a.ctypes.data % LINE == 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_loaded_and_converted_layers_too(tmp_path, dtype):
    for i, layer in enumerate(_layers(dtype)):
        path = tmp_path / f"layer{i}.npz"
        fffcpu.save(layer, str(path))
        for copy in (fffcpu.load(str(path)), type(layer).from_state_dict(layer.state_dict(), **layer.config())):
            assert set(_offsets(copy).values()) == {0}, (type(copy).__name__, _offsets(copy))
            for name, a in layer.params.items():
                np.testing.assert_array_equal(copy.params[name], a)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_copies_keep_what_the_pickle_keeps_together(dtype):
    """pickle and copy keep a layer's arrays as the object graph has them: copy.copy leaves the
    original's arrays where they are, two layers that share an array still share it after
    copy.deepcopy, and a layer copied beside one of its arrays still holds that array (realigning
    unpickled arrays to 64 bytes broke all three). Values and layout are the same, and a neuron tree's
    pickle holds its output weights once (it held them twice, as ``linear_out.weight`` and as their
    transpose)."""
    import copy
    import pickle
    for layer in _layers(dtype):
        for twin in (pickle.loads(pickle.dumps(layer)), copy.deepcopy(layer), copy.copy(layer)):
            for name, a in layer.params.items():
                np.testing.assert_array_equal(twin.params[name], a)
                assert twin.params[name].strides == a.strides, name
        held = dict(layer.params)
        shallow = copy.copy(layer)
        assert all(layer.params[name] is a for name, a in held.items())  # the original's, untouched
        assert all(np.shares_memory(shallow.params[name], a) for name, a in held.items() if a.size)
        name = next(iter(held))
        twin, array = copy.deepcopy((layer, layer.params[name]))
        assert np.shares_memory(twin.params[name], array)
        twin, array = pickle.loads(pickle.dumps((layer, layer.params[name])))
        assert np.shares_memory(twin.params[name], array)
    a = fffcpu.FFF(40, 4, 7, 3, seed=0, dtype=dtype)
    b = fffcpu.FFF(40, 4, 7, 3, seed=1, dtype=dtype)
    b.params = a.params  # tied weights
    for c, d in (copy.deepcopy([a, b]), pickle.loads(pickle.dumps([a, b]))):
        assert all(np.shares_memory(c.params[name], d.params[name]) for name in a.params if a.params[name].size)
    for layer in (fffcpu.NeuronTreeFFF(64, 64, 4, seed=4, dtype=dtype), fffcpu.FFF(64, 4, 64, 3, dtype=dtype)):
        nbytes = sum(a.nbytes for a in layer.params.values())  # 16-36 KB, against ~1 KB of the rest
        assert len(pickle.dumps(layer)) < 1.15 * nbytes, type(layer).__name__


@pytest.mark.parametrize("layout", ["fortran", "strided", "read-only", "big-endian", "other dtype", "unpickled"])
def test_assigned_arrays_the_kernels_cannot_use_as_they_are_are_copied(layout):
    """``layer.params = mapping`` kept every array as given: with Fortran-order or strided arrays every
    call copied them all (one sample 4 to 130 times slower), read-only ones (a memory map) could not be
    trained. Such arrays are now copied once, aligned, C-contiguous, writable; arrays the kernels can use
    as they are stay the caller's own."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((40, 40)).astype(np.float32)
    for layer in _layers("float32"):
        state = layer.state_dict()
        given = {}
        for name, a in state.items():
            a = a.copy()
            if layout == "fortran":
                a = np.asfortranarray(a) if a.ndim else a  # (asfortranarray makes 0-d 1-D)
            elif layout == "strided":
                a = np.stack([a, a], axis=-1)[..., 0]
            elif layout == "read-only":
                a.setflags(write=False)
            elif layout == "big-endian":
                a = a.astype(a.dtype.newbyteorder())
            elif layout == "unpickled":  # a dtype equal to the layer's, but another object
                import pickle
                a = pickle.loads(pickle.dumps(a))
            else:
                a = a.astype(np.float64)
            given[name] = a
        expected = layer(x)
        layer.params = given
        np.testing.assert_array_equal(layer(x), expected)
        for name, a in layer.params.items():
            g = given[name].T if name == "linear_out.weight" else given[name]  # in the kernels' layout
            if g.flags.c_contiguous and g.flags.writeable and g.dtype == np.float32:
                # kept, as a view with the layer's own dtype object where the caller's is another one;
                # (n, 1) or 1-D arrays are C-contiguous in the other layouts too
                assert np.shares_memory(a, given[name]) and a.dtype is np.dtype(np.float32), name
                continue
            assert a is not given[name] and a.dtype == np.float32 and a.flags.writeable, name
            kernel_layout = a.T if name == "linear_out.weight" else a
            assert kernel_layout.flags.c_contiguous and kernel_layout.ctypes.data % LINE == 0, name
        layer(x[0])
        cache = layer.__dict__.get("_kernel_cache")
        assert cache is not None  # the kernel arguments are kept, not rebuilt by every call
        layer(x[0])
        layer(x)
        assert layer.__dict__.get("_kernel_cache") is cache
    plain = fffcpu.FFF(40, 4, 7, 3, seed=0)
    own = {name: a.copy() for name, a in plain.state_dict().items()}
    plain.params = own
    assert all(plain.params[name] is a for name, a in own.items())


def test_training_updates_keep_the_parameters_in_place():
    layer = fffcpu.FFF(12, 3, 4, 2, seed=0)
    before = {name: a.ctypes.data for name, a in layer.params.items()}
    x = np.random.default_rng(0).standard_normal((32, 12)).astype(np.float32)
    t = np.random.default_rng(1).integers(0, 4, 32)
    fffcpu.training.fit(layer, x, t, epochs=1, batch_size=16, seed=0)
    assert {name: a.ctypes.data for name, a in layer.params.items()} == before


@pytest.mark.parametrize("shape", [(), (0,), (5,), (3, 0, 2), (7, 13), (2, 3, 5)])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "uint8",
                                   "U3", np.clongdouble])  # 12 bytes, 32 bytes on x86-64: other paths
def test_aligned_copy_is_an_exact_aligned_c_contiguous_copy(shape, dtype):
    a = (np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape) * 3 + 1).astype(dtype)
    b = aligned_copy(a)
    assert b.size == 0 or b.ctypes.data % LINE == 0  # (an empty array's address means nothing)
    assert b.flags.c_contiguous and b.flags.writeable
    assert b.shape == a.shape and b.dtype == a.dtype
    np.testing.assert_array_equal(b, a)
    assert not np.shares_memory(a, b)


def test_aligned_copy_copies_non_contiguous_input():
    a = np.arange(24, dtype=np.float64).reshape(4, 6)[:, ::2].T  # strided, Fortran-like
    b = aligned_copy(a)
    assert b.dtype == np.float64 and b.flags.c_contiguous and b.ctypes.data % LINE == 0
    np.testing.assert_array_equal(b, a)
    b = aligned_copy([[1.5, 2.5]])  # anything np.asarray takes
    assert b.dtype == np.float64 and b.ctypes.data % LINE == 0
    np.testing.assert_array_equal(b, [[1.5, 2.5]])


def test_aligned_empty_takes_an_int_or_a_shape():
    assert aligned_empty(5, np.float32).shape == (5,)
    e = aligned_empty((4, 768), "float32")
    assert e.shape == (4, 768) and e.dtype == np.float32 and e.ctypes.data % LINE == 0
    e[...] = 1.5  # writable, no aliasing between rows
    assert e.sum() == 4 * 768 * 1.5
