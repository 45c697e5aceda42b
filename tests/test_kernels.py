"""Kernels against the naive per-sample oracle (tests/naive.py) and the NumPy reference.

Shapes are few and reused: Numba compiles once per dtype/layout signature, not per shape. Batch
sizes cover the serial path (1, 5), the bucketed batch path with per-sample top levels only, and
batches large enough that whole subtrees are walked by groups of samples.
"""
import concurrent.futures
import warnings

import numpy as np
import pytest

import fffcpu
from fffcpu import _kernel_api as api
from fffcpu import kernels
from fffcpu.activations import ACTIVATION_CODES
from fffcpu.neuron_tree import NeuronTreeFFF
from fffcpu.reference import leaf as ref_leaf
from fffcpu.reference import neuron_tree as ref_nt

from . import naive

D, L_WIDTH, O = 5, 3, 4


@pytest.fixture(autouse=True)
def batch_kernels_for_small_shapes(monkeypatch):
    """The test shapes are tiny, so the work rule would send every batch to the serial loop: lift it
    (batches of SERIAL_BELOW or more then run the batch kernels, as large layers do)."""
    monkeypatch.setattr(api, "PARALLEL_MIN_WORK", 0)


TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}
DTYPES = [np.float32, np.float64]
LEAF_NAMES = ("node_weights", "node_biases", "w1s", "b1s", "w2s", "b2s")


def leaf_params(depth, dtype, rng, integer=False):
    shapes = ref_leaf.param_shapes(D, L_WIDTH, O, depth)
    if integer:  # small integers: every sum is exact in any order, so ties a == 0 are exact
        return {k: rng.integers(-1, 2, size=s).astype(dtype) for k, s in shapes.items()}
    return ref_leaf.init_params(D, L_WIDTH, O, depth, rng, dtype)


def nt_params(depth, P, dtype, rng, integer=False):
    shapes = ref_nt.param_shapes(D, O, depth, P)
    if integer:
        return {k: rng.integers(-1, 2, size=s).astype(dtype) for k, s in shapes.items()}
    return ref_nt.init_params(D, O, depth, P, rng, dtype)


def nt_call(params, depth, P, activation, x, out=None, check_finite=False):
    w_out_t = np.ascontiguousarray(params["linear_out.weight"].T)
    return api.neuron_tree_forward(params["linear_in.weight"], params["linear_in.bias"], w_out_t,
                                   depth, P, activation, x, out=out, check_finite=check_finite)


def nt_naive(params, depth, P, activation, x):
    return naive.neuron_tree(params["linear_in.weight"], params["linear_in.bias"],
                             params["linear_out.weight"], depth, P, x, activation)


# -- leaf FFF ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("depth,n", [(0, 5), (1, 1), (3, 40), (6, 700)])
def test_leaf_matches_naive_and_reference(dtype, depth, n):
    rng = np.random.default_rng(100 + depth)
    params = leaf_params(depth, dtype, rng)
    x = rng.standard_normal((n, D)).astype(dtype)
    for activation in ("relu", "gelu") if n > 5 else tuple(ACTIVATION_CODES):
        y = api.leaf_forward(params, activation, x)
        assert y.shape == (n, O) and y.dtype == dtype
        y_naive, leaf = naive.leaf_fff(params, x, activation)
        np.testing.assert_array_equal(leaf, ref_leaf.hard_leaf_index(params, x))
        np.testing.assert_allclose(y, y_naive, **TOL[dtype])
        np.testing.assert_allclose(y, ref_leaf.hard_forward(params, x, activation), **TOL[dtype])
    if n >= 40:  # the batch has leaves with buckets of every remainder mod 4 (a rest of 3, of 2, of 1)
        assert {1, 2, 3} <= set(np.bincount(leaf) % 4)  # so that a change of seed cannot lose them


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 40])
def test_leaf_exact_ties_route_right(dtype, n):
    rng = np.random.default_rng(7)
    params = leaf_params(3, dtype, rng, integer=True)
    x = rng.integers(-1, 2, size=(n, D)).astype(dtype)
    x[: n // 2 + 1] = 0  # with zero input a_k = bias_k, an exact 0 where the bias is 0
    params["node_weights"][1] = 0
    params["node_biases"][[0, 1]] = 0  # root and its left child tie for every zero sample
    y_naive, leaf = naive.leaf_fff(params, x, "tanh")
    assert leaf[0] >= 4 and (leaf[: n // 2 + 1] == leaf[0]).all()  # a_0 == 0 went right
    np.testing.assert_array_equal(leaf, ref_leaf.hard_leaf_index(params, x))
    np.testing.assert_allclose(api.leaf_forward(params, "tanh", x), y_naive, **TOL[dtype])


def test_leaf_all_zero_goes_to_last_leaf():
    rng = np.random.default_rng(8)
    params = leaf_params(3, np.float64, rng)
    params["node_biases"][:] = 0
    x = np.zeros((10, D))
    y = api.leaf_forward(params, "relu", x)
    expected = ref_leaf.leaf_forward(params, x, 7, "relu")  # a == 0 everywhere: right, right, right
    np.testing.assert_allclose(y, expected, rtol=1e-12)


# -- neuron tree -------------------------------------------------------------------------------
@pytest.fixture(params=["grouped", "each"])
def nt_batch_path(request, monkeypatch):
    """Both batch kernels of the neuron tree: the grouped walk, and sample by sample (round 16,
    for trees whose weights fit ``api.NT_EACH_MAX_BYTES``; every tree of these tests does)."""
    monkeypatch.setattr(api, "NT_EACH_MAX_BYTES", 0 if request.param == "grouped" else 1 << 40)
    return request.param


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("depth,P,n", [(0, 1, 5), (1, 3, 1), (3, 1, 41), (3, 3, 301), (6, 1, 1200)])
def test_neuron_tree_matches_naive_and_reference(dtype, depth, P, n, nt_batch_path):
    rng = np.random.default_rng(200 + depth + P)
    params = nt_params(depth, P, dtype, rng)
    x = rng.standard_normal((n, D)).astype(dtype)
    for activation in ("gelu", "relu") if n > 5 else tuple(ACTIVATION_CODES):
        y = nt_call(params, depth, P, activation, x)
        assert y.shape == (n, O) and y.dtype == dtype
        y_naive, rows = nt_naive(params, depth, P, activation, x)
        np.testing.assert_array_equal(rows, ref_nt.hard_path(params, x, depth, P)[0])
        np.testing.assert_allclose(y, y_naive, **TOL[dtype])
        np.testing.assert_allclose(y, ref_nt.hard_forward(params, x, depth, P, activation), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 300])
def test_neuron_tree_exact_ties_go_left(dtype, n, nt_batch_path):
    rng = np.random.default_rng(9)
    depth, P = 5, 3  # batch of 300: levels 3 to 5 are walked by groups of samples
    N = 2 ** (depth + 1) - 1
    params = nt_params(depth, P, dtype, rng, integer=True)
    x = rng.integers(-1, 2, size=(n, D)).astype(dtype)
    x[: n // 2 + 1] = 0
    # zero input: a == 0 at these nodes, which go left (tree 0 all the way, tree 1 at its root)
    params["linear_in.bias"][[0, 1, 3, 7, 15, N]] = 0
    y_naive, rows = nt_naive(params, depth, P, "identity", x)
    assert (rows[0, 0] == [0, 1, 3, 7, 15, 31]).all() and rows[0, 1, 1] == N + 1
    np.testing.assert_array_equal(rows, ref_nt.hard_path(params, x, depth, P)[0])
    # identity activation: the outputs carry the logits, so the route taken shows in y
    np.testing.assert_allclose(nt_call(params, depth, P, "identity", x), y_naive, **TOL[dtype])


def test_neuron_tree_zero_input_is_zero():
    rng = np.random.default_rng(10)
    params = nt_params(3, 3, np.float32, rng)
    params["linear_in.bias"][:] = 0
    y = nt_call(params, 3, 3, "gelu", np.zeros((50, D), np.float32))
    assert (y == 0).all()  # gelu(0) = 0 along the all-left path


# -- awkward calls -----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_batch_and_out_buffer(dtype):
    rng = np.random.default_rng(11)
    lp = leaf_params(3, dtype, rng)
    tp = nt_params(3, 3, dtype, rng)
    x0 = np.zeros((0, D), dtype)
    assert api.leaf_forward(lp, "relu", x0).shape == (0, O)
    assert nt_call(tp, 3, 3, "gelu", x0).shape == (0, O)
    for n in (1, 40):
        x = rng.standard_normal((n, D)).astype(dtype)
        out = np.full((n, O), np.nan, dtype)
        assert api.leaf_forward(lp, "relu", x, out=out) is out
        np.testing.assert_allclose(out, ref_leaf.hard_forward(lp, x, "relu"), **TOL[dtype])
        out[:] = np.nan
        assert nt_call(tp, 3, 3, "gelu", x, out=out) is out
        np.testing.assert_allclose(out, ref_nt.hard_forward(tp, x, 3, 3, "gelu"), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_batch_through_the_kernel_api(dtype):
    """leaf_forward and neuron_tree_forward documented a strided batch as compiled for its layout; it
    failed to type in Numba (all_finite reshapes its input). It is now copied to C order first."""
    rng = np.random.default_rng(12)
    lp = leaf_params(3, dtype, rng)
    tp = nt_params(3, 3, dtype, rng)
    base = rng.standard_normal((40, 2 * D)).astype(dtype)
    for x in (base[:, ::2], np.asfortranarray(base[:, :D])):
        assert not x.flags.c_contiguous
        want_leaf = ref_leaf.hard_forward(lp, np.ascontiguousarray(x), "relu")
        want_nt = ref_nt.hard_forward(tp, np.ascontiguousarray(x), 3, 3, "gelu")
        for out in (None, np.full((40, O), np.nan, dtype)):
            np.testing.assert_allclose(api.leaf_forward(lp, "relu", x, out=out, check_finite=True), want_leaf,
                                       **TOL[dtype])
            np.testing.assert_allclose(nt_call(tp, 3, 3, "gelu", x, out=out, check_finite=True), want_nt,
                                       **TOL[dtype])


def test_one_sample_kernels_write_only_the_output():
    rng = np.random.default_rng(12)
    tp = nt_params(3, 3, np.float64, rng)
    x = rng.standard_normal(D)
    y = np.full(O, np.nan)
    kernels.nt_forward_one(tp["linear_in.weight"], tp["linear_in.bias"],
                           np.ascontiguousarray(tp["linear_out.weight"].T), 3, 3, 1, x, y)
    np.testing.assert_allclose(y, ref_nt.hard_forward(tp, x[None], 3, 3, "gelu")[0], rtol=1e-12)
    lp = leaf_params(3, np.float64, rng)
    args = api.leaf_kernel_args(lp)
    y[:] = np.nan
    kernels.leaf_forward_one(*args[:6], 0, *args[6:], x, np.empty(L_WIDTH), np.empty(0), y)
    np.testing.assert_allclose(y, ref_leaf.hard_forward(lp, x[None], "relu")[0], rtol=1e-12)


def test_all_finite():
    x = np.ones((3, D), np.float32)
    assert api.all_finite(x) and api.all_finite(x[0])
    for bad in (np.nan, np.inf, -np.inf):
        x[1, 2] = bad
        assert not api.all_finite(x)
    assert api.all_finite(np.zeros((0, D), np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
def test_all_finite_finds_one_bad_value_at_every_length_and_position(dtype):
    """Every length through several vector widths and unrolled tails, the bad value in each place.

    The check used to sum ``v * 0`` and test the sum against 0; Numba 0.59 (LLVM 14) folded that
    sum to 0 for a NaN in 15 values, so NaN inputs reached the kernels unreported.
    """
    for n in range(1, 70):
        x = np.ones(n, dtype)
        assert api.all_finite(x)
        for i in range(n):
            for bad in (np.nan, np.inf, -np.inf):
                x[i] = bad
                assert not api.all_finite(x), (n, i, bad)
            x[i] = np.finfo(dtype).max  # the largest finite value is finite
            assert api.all_finite(x), (n, i)
            x[i] = 1


def test_layer_awkward_inputs_match_numpy_backend():
    layer = fffcpu.FFF(D, L_WIDTH, O, depth=3, seed=0, dtype="float32")
    rng = np.random.default_rng(13)
    base = rng.standard_normal((60, 2 * D))
    inputs = [base[:, ::2], np.asfortranarray(base[:, :D]), base[:, :D].astype(">f4"),
              base[:, :D].astype(np.float64), base[0, :D], base[:24, :D].reshape(2, 3, 4, D)]
    ref_layer = fffcpu.FFF.from_state_dict(layer.state_dict(), backend="numpy")
    for x in inputs:
        y = layer(x)
        assert y.shape == x.shape[:-1] + (O,) and y.dtype == np.float32
        np.testing.assert_allclose(y, ref_layer(x), **TOL[np.float32])


def test_layer_refuses_ragged_lists_and_masked_values_and_takes_bfloat16_tensors():
    """A ragged list failed with NumPy's message, naming no argument; the values under a masked
    array's mask were used silently; a bfloat16 tensor failed in torch ("Got unsupported ScalarType")."""
    layer = fffcpu.FFF(D, L_WIDTH, O, depth=3, seed=0, dtype="float32")
    with pytest.raises(ValueError, match=r"x must be array_like of shape \(\.\.\., 5\), got a list"):
        layer([[1.0] * D, [1.0] * (D - 1)])
    x = np.random.default_rng(15).standard_normal((3, D)).astype(np.float32)
    masked = np.ma.masked_array(x, mask=np.zeros(x.shape, bool))
    np.testing.assert_array_equal(layer(masked), layer(x))  # nothing masked: the data
    masked[1, 2] = np.ma.masked
    for call in (layer, layer.leaf_index):
        with pytest.raises(ValueError, match=r"x must not have masked values .* with 1 masked value\(s\); "
                                             r"fill them first: x.filled\(value\)"):
            call(masked)
    torch = pytest.importorskip("torch")
    half = torch.from_numpy(x).to(torch.bfloat16)
    np.testing.assert_array_equal(layer(half), layer(half.float().numpy()))
    with pytest.raises(TypeError, match="x must hold real numbers"):
        layer(torch.ones((2, D), dtype=torch.complex64))
    with warnings.catch_warnings():  # torch: "ComplexHalf support is experimental"
        warnings.simplefilter("ignore", UserWarning)
        chalf = torch.ones((2, D), dtype=torch.complex32)
    with pytest.raises(TypeError, match="x must hold real numbers"):  # no NumPy dtype, and not real: not .float()
        layer(chalf)


def test_neuron_tree_layer_awkward_inputs():
    NT = NeuronTreeFFF
    layer = NT(D, O, depth=3, parallel_size=3, seed=0, dtype="float32")
    rng = np.random.default_rng(14)
    base = rng.standard_normal((60, 2 * D))
    for x in (base[:, ::2], np.asfortranarray(base[:, :D]), base[:, :D].astype(">f8"), base[0, :D]):
        y = layer(x)
        y_ref = ref_nt.hard_forward(layer.params, np.asarray(x, np.float32).reshape(-1, D), 3, 3, "gelu")
        np.testing.assert_allclose(y.reshape(-1, O), y_ref, **TOL[np.float32])


def test_concurrent_calls_from_python_threads():
    layer = fffcpu.FFF(D, L_WIDTH, O, depth=3, seed=1, dtype="float64")
    rng = np.random.default_rng(15)
    xs = [rng.standard_normal((n, D)) for n in (1, 3, 40, 300) * 4]
    expected = [ref_leaf.hard_forward(layer.params, x, "relu") for x in xs]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        got = list(pool.map(layer, xs))
    for y, e in zip(got, expected):
        np.testing.assert_allclose(y, e, rtol=1e-12)
    tp = nt_params(3, 3, np.float64, rng)
    expected = [ref_nt.hard_forward(tp, x, 3, 3, "gelu") for x in xs]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda x: nt_call(tp, 3, 3, "gelu", x), xs))
    for y, e in zip(got, expected):
        np.testing.assert_allclose(y, e, rtol=1e-12)


def test_work_rule_picks_the_serial_loop_for_small_work(monkeypatch):
    monkeypatch.setattr(api, "PARALLEL_MIN_WORK", 200_000)
    assert not api.use_parallel(api.SERIAL_BELOW - 1, 10 ** 9)
    assert not api.use_parallel(100, 1000) and api.use_parallel(200, 1000)
    rng = np.random.default_rng(18)
    params = leaf_params(3, np.float32, rng)
    x = rng.standard_normal((100, D)).astype(np.float32)  # tiny work: the serial loop, same results
    np.testing.assert_allclose(api.leaf_forward(params, "relu", x), ref_leaf.hard_forward(params, x, "relu"),
                               **TOL[np.float32])
    x[50, 2] = np.nan
    assert api.leaf_forward(params, "relu", x, check_finite=True) is None


def test_thread_count_and_warmup():
    before = api.get_num_threads()
    try:
        api.set_num_threads(1)
        assert api.get_num_threads() == 1
        rng = np.random.default_rng(16)
        tp = nt_params(3, 3, np.float32, rng)
        x = rng.standard_normal((40, D)).astype(np.float32)
        np.testing.assert_allclose(nt_call(tp, 3, 3, "gelu", x), ref_nt.hard_forward(tp, x, 3, 3, "gelu"),
                                   **TOL[np.float32])
    finally:
        api.set_num_threads(before)
    api.warmup(("float32",))


def test_layer_fast_path_keeps_checks_and_shapes():
    layer = fffcpu.FFF(D, L_WIDTH, O, depth=3, seed=2, dtype="float32")
    ref_layer = fffcpu.FFF.from_state_dict(layer.state_dict(), backend="numpy")
    rng = np.random.default_rng(17)
    x = rng.standard_normal((40, D)).astype(np.float32)  # already in kernel layout: the lean path
    assert layer(x[0]).shape == (O,) and layer(x).shape == (40, O)
    np.testing.assert_allclose(layer(x[0]), ref_layer(x[0]), **TOL[np.float32])
    np.testing.assert_allclose(layer(x), ref_layer(x), **TOL[np.float32])
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match="must be finite"):
        layer(x)
    with pytest.raises(ValueError, match="must be finite"):
        layer(x[3])
    with pytest.raises(ValueError, match="activation must be one of"):
        api.leaf_forward(layer.params, "swish", x[:1])


# -- register-blocked leaf paths (round 2) -----------------------------------------------------
# widths that exercise a full 16-unit hidden block plus a remainder, a full 64-output block plus a
# remainder, and an input width that is not a multiple of the 4-row split
D_WIDE, L_WIDE, O_WIDE = 9, 19, 70


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("depth,n", [(0, 7), (2, 1), (3, 90), (6, 700)])
def test_leaf_wide_blocks_match_naive(dtype, depth, n):
    rng = np.random.default_rng(200 + depth)
    params = ref_leaf.init_params(D_WIDE, L_WIDE, O_WIDE, depth, rng, dtype)
    x = rng.standard_normal((n, D_WIDE)).astype(dtype)
    y = api.leaf_forward(params, "gelu", x)
    y_naive, leaf = naive.leaf_fff(params, x, "gelu")
    np.testing.assert_allclose(y, y_naive, **TOL[dtype])
    if n > 50:  # bucket sizes of every remainder mod 4: full groups, groups with repeats, singles
        assert {0, 1, 2, 3} <= set(np.bincount(leaf) % 4) or depth == 0
    for s in range(min(n, 3)):  # the one-sample kernel agrees as well
        np.testing.assert_allclose(api.leaf_forward_one(params, "gelu", x[s]), y_naive[s], **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_neuron_tree_wide_output_pairs_match_naive(dtype):
    """Round 4: outputs two samples per pass (a full 64-output block plus a remainder), buckets of
    odd sizes (a pair repeats its sample), two trees (the second accumulates into y)."""
    rng = np.random.default_rng(300)
    depth, P, n = 5, 2, 301
    params = ref_nt.init_params(D_WIDE, O_WIDE, depth, P, rng, dtype)
    x = rng.standard_normal((n, D_WIDE)).astype(dtype)
    y = api.neuron_tree_forward(params["linear_in.weight"], params["linear_in.bias"],
                                np.ascontiguousarray(params["linear_out.weight"].T), depth, P, "gelu", x)
    y_naive, rows = naive.neuron_tree(params["linear_in.weight"], params["linear_in.bias"],
                                      params["linear_out.weight"], depth, P, x, "gelu")
    np.testing.assert_allclose(y, y_naive, **TOL[dtype])
    assert (np.bincount(rows[:, 0, 3]) % 2 == 1).any()  # a bucket of odd size: a pair repeats a sample


def test_leaf_grouped_routing_exact_ties():
    """Routing by groups of samples (four per row pass) keeps the a >= 0 rule on exact zeros."""
    rng = np.random.default_rng(21)
    params = leaf_params(4, np.float64, rng, integer=True)
    x = rng.integers(-1, 2, size=(300, D)).astype(np.float64)
    x[::3] = 0
    params["node_biases"][:7] = 0
    y_naive, leaf = naive.leaf_fff(params, x, "relu")
    assert (leaf[::3] == leaf[0]).all()
    np.testing.assert_allclose(api.leaf_forward(params, "relu", x), y_naive, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_sample_entry_points_report_non_finite(dtype):
    rng = np.random.default_rng(22)
    lp = leaf_params(3, dtype, rng)
    tp = nt_params(3, 2, dtype, rng)
    w_out_t = np.ascontiguousarray(tp["linear_out.weight"].T)
    x = rng.standard_normal(D).astype(dtype)
    np.testing.assert_allclose(api.leaf_forward_one(lp, "relu", x),
                               ref_leaf.hard_forward(lp, x[None], "relu")[0], **TOL[dtype])
    np.testing.assert_allclose(
        api.neuron_tree_forward_one(tp["linear_in.weight"], tp["linear_in.bias"], w_out_t, 3, 2, "gelu", x),
        ref_nt.hard_forward(tp, x[None], 3, 2, "gelu")[0], **TOL[dtype])
    for bad in (np.nan, np.inf):
        x[2] = bad
        assert api.leaf_forward_one(lp, "relu", x) is None
        assert api.neuron_tree_forward_one(tp["linear_in.weight"], tp["linear_in.bias"], w_out_t, 3, 2,
                                           "gelu", x) is None


def test_neuron_tree_lean_path_checks_and_follows_rebound_params():
    NT = NeuronTreeFFF
    layer = NT(D, O, depth=3, parallel_size=2, seed=3, dtype="float32")
    rng = np.random.default_rng(23)
    x = rng.standard_normal((30, D)).astype(np.float32)

    def expected(v):
        return ref_nt.hard_forward(layer.params, v.reshape(-1, D), 3, 2, "gelu").reshape(v.shape[:-1] + (O,))

    for v in (x[0], x):
        np.testing.assert_allclose(layer(v), expected(v), **TOL[np.float32])
    layer.params["linear_in.weight"] *= -1  # in place: the cached kernel views see it
    np.testing.assert_allclose(layer(x[0]), expected(x[0]), **TOL[np.float32])
    layer.params["linear_in.weight"] = rng.standard_normal((2 * 15, D))  # rebound, float64: converted
    np.testing.assert_allclose(layer(x[1]), expected(x[1]), **TOL[np.float32])
    layer.params["linear_out.weight"] = np.asfortranarray(layer.params["linear_out.weight"] * 2)
    np.testing.assert_allclose(layer(x), expected(x), **TOL[np.float32])
    x[4, 1] = np.inf
    for v in (x[4], x):
        with pytest.raises(ValueError, match="must be finite"):
            layer(v)


def test_leaf_master_leaf_lean_path_matches_numpy_backend():
    layer = fffcpu.FFF(D, L_WIDTH, O, depth=2, seed=4, dtype="float64", master_leaf=2)
    ref_layer = fffcpu.FFF.from_state_dict(layer.state_dict(), backend="numpy", master_leaf=2)
    x = np.random.default_rng(24).standard_normal((12, D))
    np.testing.assert_allclose(layer(x[0]), ref_layer(x[0]), rtol=1e-12)
    np.testing.assert_allclose(layer(x), ref_layer(x), rtol=1e-12)


# -- eFFF master leaf inside the kernels (round 3) ---------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("depth,n", [(0, 1), (0, 40), (3, 1), (3, 5), (3, 90), (6, 700)])
def test_master_leaf_fused_matches_reference(dtype, depth, n):
    rng = np.random.default_rng(300 + depth)
    params = ref_leaf.init_params(D, L_WIDTH, O, depth, rng, dtype, master_leaf=2)
    params["k"][...] = -0.7  # s = sigmoid(k) away from 1/2: a wrong mix would show
    x = rng.standard_normal((n, D)).astype(dtype)
    expected = ref_leaf.hard_forward(params, x, "gelu")
    tree_only = ref_leaf.hard_forward({k: params[k] for k in LEAF_NAMES}, x, "gelu")
    assert np.abs(expected - tree_only).max() > 1e-3
    np.testing.assert_allclose(api.leaf_forward(params, "gelu", x), expected, **TOL[dtype])
    for s in range(min(n, 3)):
        np.testing.assert_allclose(api.leaf_forward_one(params, "gelu", x[s]), expected[s], **TOL[dtype])


def test_master_leaf_layer_follows_kappa_and_wide_blocks():
    """Through the layer: k updated in place is seen by the next call; 16-unit and 64-output
    blocks with remainders in both the leaf and the master leaf."""
    rng = np.random.default_rng(31)
    layer = fffcpu.FFF(D_WIDE, L_WIDE, O_WIDE, depth=3, seed=5, dtype="float32", master_leaf=17)
    x = rng.standard_normal((90, D_WIDE)).astype(np.float32)
    bound = []
    for kappa in (0.5, -2.0, -2.0, 0.5):
        layer.params["k"][...] = kappa
        expected = ref_leaf.hard_forward(layer.params, x, "relu")
        np.testing.assert_allclose(layer(x), expected, **TOL[np.float32])
        np.testing.assert_allclose(layer(x[7]), expected[7], **TOL[np.float32])
        bound.append(layer.__dict__.get("_batch_fn"))
    # the batch function is kept while k stays the same (it was bound anew on every call)
    assert bound[1] is bound[2] is not None and bound[0] is not bound[1] and bound[3] is not bound[2]


@pytest.mark.parametrize("depth", [0, 3])
def test_batch_kernel_reports_non_finite_input(depth):
    rng = np.random.default_rng(32)
    params = leaf_params(depth, np.float32, rng)
    x = rng.standard_normal((300, D)).astype(np.float32)
    assert api.leaf_forward(params, "relu", x, check_finite=True) is not None
    for bad, row in ((np.nan, 299), (np.inf, 0), (-np.inf, 150)):
        z = x.copy()
        z[row, 1] = bad
        assert api.leaf_forward(params, "relu", z, check_finite=True) is None
        assert api.leaf_forward(params, "relu", z[max(0, row - 4):row + 1], check_finite=True) is None  # serial
        assert api.leaf_forward(params, "relu", z).shape == (300, O)  # no check asked: computes


def test_leaf_layer_kernel_arrays_follow_rebound_params():
    layer = fffcpu.FFF(D, L_WIDTH, O, depth=3, seed=6, dtype="float32")
    rng = np.random.default_rng(33)
    x = rng.standard_normal((40, D)).astype(np.float32)
    np.testing.assert_allclose(layer(x), ref_leaf.hard_forward(layer.params, x, "relu"), **TOL[np.float32])
    layer.params["w2s"] *= -1  # in place: the cached arguments are the parameters themselves
    np.testing.assert_allclose(layer(x[0]), ref_leaf.hard_forward(layer.params, x[:1], "relu")[0],
                               **TOL[np.float32])
    layer.params["w1s"] = rng.standard_normal(layer.params["w1s"].shape)  # rebound, float64: converted
    np.testing.assert_allclose(layer(x), ref_leaf.hard_forward(layer.params, x, "relu"), **TOL[np.float32])


@pytest.mark.parametrize("depth", [0, 3])
def test_neuron_tree_batch_kernel_reports_non_finite_input(depth):
    rng = np.random.default_rng(34)
    tp = nt_params(depth, 2, np.float32, rng)
    x = rng.standard_normal((300, D)).astype(np.float32)
    assert nt_call(tp, depth, 2, "gelu", x, check_finite=True) is not None
    for bad, row in ((np.nan, 299), (-np.inf, 0)):
        z = x.copy()
        z[row, 3] = bad
        assert nt_call(tp, depth, 2, "gelu", z, check_finite=True) is None
        assert nt_call(tp, depth, 2, "gelu", z[max(0, row - 4):row + 1], check_finite=True) is None
        assert nt_call(tp, depth, 2, "gelu", z).shape == (300, O)


@pytest.mark.parametrize("dtype", DTYPES)
def test_leaf_batch_kernel_both_leaf_orders(dtype):
    """The batch kernel runs the leaves forward or backward (alternated between calls): same results."""
    rng = np.random.default_rng(35)
    params = ref_leaf.init_params(D_WIDE, L_WIDE, O_WIDE, 6, rng, dtype, master_leaf=3)
    x = rng.standard_normal((700, D_WIDE)).astype(dtype)
    expected = ref_leaf.hard_forward(params, x, "relu")
    args = api.leaf_kernel_args(params)
    for reverse in (False, True):
        for threads in (1, 2):
            y = np.full((700, O_WIDE), np.nan, dtype)
            assert kernels.leaf_forward_batch(*args[:6], 0, *args[6:], x, y, threads, True, reverse)
            np.testing.assert_allclose(y, expected, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_leaf_batch_kernel_runs_every_bucket_once_with_empty_leaves_and_tasks(dtype):
    """Workers prefetch the next leaf that has samples and take their next task one leaf early
    (round 19): with most leaves empty, whole tasks of ``LEAF_TASK`` leaves among them, and the
    samples crowded into a few leaves, every sample's row is still written once, right, in both
    leaf orders and with more workers than tasks that hold samples."""
    rng = np.random.default_rng(37)
    depth = 7  # 128 leaves: 8 tasks of 16
    assert 2 ** depth // kernels.LEAF_TASK >= 8
    params = ref_leaf.init_params(D_WIDE, L_WIDE, O_WIDE, depth, rng, dtype, master_leaf=3)
    base = rng.standard_normal((3, D_WIDE)).astype(dtype)
    x = np.concatenate([rng.standard_normal((9, D_WIDE)).astype(dtype),  # spread out
                        base[rng.integers(0, 3, 30)]])  # 30 samples in at most 3 leaves
    expected = ref_leaf.hard_forward(params, x, "relu")
    counts = np.bincount(ref_leaf.hard_leaf_index(params, x), minlength=2 ** depth)
    tasks = counts.reshape(-1, kernels.LEAF_TASK).sum(axis=1)
    assert (counts == 0).sum() > 100 and counts.max() >= 10 and (tasks == 0).sum() >= 2
    args = api.leaf_kernel_args(params)
    for reverse in (False, True):
        for threads in (1, 2, 3):
            y = np.full(expected.shape, np.nan, dtype)
            assert kernels.leaf_forward_batch(*args[:6], 0, *args[6:], x, y, threads, True, reverse)
            np.testing.assert_allclose(y, expected, **TOL[dtype])


@pytest.mark.parametrize("reverse", [False, True])
def test_next_task_gives_each_worker_its_own_range_first_and_every_task_once(reverse):
    """Round 21: worker r owns tasks [r T / W, (r + 1) T / W) and takes them in order (from the last
    with ``reverse``); once its own are gone it takes the others', from the workers after it. Taken
    in an interleaving where one worker runs ahead, every task comes out exactly once."""
    W, T = 3, 8
    owned = [list(range(r * T // W, (r + 1) * T // W)) for r in range(W)]
    if reverse:
        owned = [o[::-1] for o in owned]
    counters = np.zeros(16 * W, np.int64)
    state = [0] * W
    taken = {t: [] for t in range(W)}
    for t in (0, 0, 2, 1, 0, 0, 0, 2, 2, 1, 0):  # worker 0 runs ahead and helps the others
        state[t], task = kernels.next_task(counters, 0, t, state[t], W, T, reverse)
        taken[t].append(task)
    assert [len(o) for o in owned] == [2, 3, 3]
    assert taken[0] == owned[0] + owned[1][1:] + [owned[2][1], -1]  # its own, then worker 1's rest, 2's
    assert taken[1] == [owned[1][0], -1]
    assert taken[2] == [owned[2][0], owned[2][2], -1]
    every = [task for tasks in taken.values() for task in tasks if task >= 0]
    assert sorted(every) == list(range(T))
    for t in range(W):  # nothing is left for anyone
        assert kernels.next_task(counters, 0, t, state[t], W, T, reverse)[1] == -1


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_worker_alone_routes_and_runs_every_task_of_a_batch(dtype):
    """Round 21: each worker of a batch owns a range of tasks (routing's and the leaves') and then
    takes the others'. A worker whose partners never start (here: called by itself, worker 1 of
    3) still routes every sample and runs every leaf, so no sample is lost to a late thread."""
    rng = np.random.default_rng(39)
    depth = 7  # 128 leaves: 8 leaf tasks of 16
    params = ref_leaf.init_params(D_WIDE, L_WIDE, O_WIDE, depth, rng, dtype, master_leaf=3)
    n = 2 * kernels.ROUTE_TASK + 77  # three routing tasks
    x = rng.standard_normal((n, D_WIDE)).astype(dtype)
    args = api.leaf_kernel_args(params)
    nw, nb = args[:2]
    W = 3
    counters = np.zeros(2 * W * 16, np.int64)
    perm = np.empty(n, np.int64)
    leaf = np.full(n, -1, np.int64)
    right, right2 = np.empty(n, np.bool_), np.empty(n, np.bool_)
    stack = np.empty((2 * depth + 4, 4), np.int64)
    assert kernels.leaf_route_worker(nw, nb, x, perm, leaf, right, right2, stack, np.empty((0, 2), dtype),
                                     counters, 1, W)
    np.testing.assert_array_equal(leaf, ref_leaf.hard_leaf_index(params, x))
    offsets = np.empty(2 ** depth + 1, np.int64)
    kernels.bucket_by(leaf, 2 ** depth, offsets, perm)
    H = np.empty((n, L_WIDE), dtype)
    HM = np.empty((n, 3), dtype)
    for reverse in (False, True):
        counters[:] = 0
        y = np.full((n, O_WIDE), np.nan, dtype)
        kernels.leaf_apply_worker(*args[2:6], 0, *args[6:], x, perm, offsets, H, HM, y, False, counters,
                                  16 * W, 1, W, reverse)
        np.testing.assert_allclose(y, ref_leaf.hard_forward(params, x, "relu"), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("master_leaf", [0, 3])
def test_leaf_batch_kernel_every_bucket_size_up_to_thirteen(dtype, master_leaf):
    """Round 20: a bucket of five or six samples runs as one pass (``_leaf_passes``), of seven as
    four and three, of nine as four and five, and so on. With leaf j holding exactly j + 1 samples
    (sizes 1 to 13 in one batch, in both leaf orders, 1 and 2 workers), hidden units in a block of
    16 and a narrow one, outputs in a block of 64 and a tail, every row is the reference's."""
    rng = np.random.default_rng(38)
    depth = 4  # 16 leaves
    params = ref_leaf.init_params(D_WIDE, L_WIDE, O_WIDE, depth, rng, dtype, master_leaf=master_leaf)
    pool = rng.standard_normal((3000, D_WIDE)).astype(dtype)
    leaf = ref_leaf.hard_leaf_index(params, pool)
    sizes = np.arange(1, 14)
    assert (np.bincount(leaf, minlength=16)[:13] >= sizes).all()
    x = pool[np.concatenate([np.flatnonzero(leaf == j)[:size] for j, size in enumerate(sizes)])]
    x = x[rng.permutation(len(x))]
    np.testing.assert_array_equal(np.bincount(ref_leaf.hard_leaf_index(params, x), minlength=16),
                                  np.r_[sizes, 0, 0, 0])
    expected = ref_leaf.hard_forward(params, x, "relu")
    args = api.leaf_kernel_args(params)
    for reverse in (False, True):
        for threads in (1, 2):
            y = np.full(expected.shape, np.nan, dtype)
            assert kernels.leaf_forward_batch(*args[:6], 0, *args[6:], x, y, threads, True, reverse)
            np.testing.assert_allclose(y, expected, **TOL[dtype])


def test_a_batch_of_one_takes_the_one_sample_call_and_keeps_its_shape_and_errors():
    from fffcpu import FFF, NeuronTreeFFF
    rng = np.random.default_rng(11)
    for layer in (FFF(6, 3, 4, 2, seed=0), NeuronTreeFFF(6, 4, 2, seed=0)):
        x = rng.standard_normal((1, 6)).astype(np.float32)
        y = layer(x)
        assert y.shape == (1, 4)
        np.testing.assert_array_equal(y[0], layer(x[0]))
        np.testing.assert_array_equal(y, layer(np.concatenate([x, x]))[:1])
        x[0, 2] = np.inf
        with pytest.raises(ValueError, match="x must be finite"):
            layer(x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_outputs_streaming_stores_equal_plain_stores(dtype):
    """Outputs of at least STREAM_MIN_BYTES are written with streaming stores: the public path gets
    a 64-byte aligned output (so whole rows stream) and the results are bit for bit those that
    plain stores give (an unaligned buffer takes the plain-store fallback), for both variants,
    several parallel trees included (earlier trees' sums stay in cache, the last tree streams)."""
    rng = np.random.default_rng(36)
    width = 384  # six full blocks of 64 outputs
    n = -(-kernels.STREAM_MIN_BYTES // (width * np.dtype(dtype).itemsize)) + 3
    x = rng.standard_normal((n, D_WIDE)).astype(dtype)
    leaf = ref_leaf.init_params(D_WIDE, L_WIDE, width, 4, rng, dtype)
    tree = ref_nt.init_params(D_WIDE, width, 3, 2, rng, dtype)
    calls = [(lambda out, p=leaf: api.leaf_forward(p, "relu", x, out=out),
              ref_leaf.hard_forward(leaf, x, "relu")),
             (lambda out, p=tree: nt_call(p, 3, 2, "gelu", x, out=out),
              ref_nt.hard_forward(tree, x, 3, 2, "gelu"))]
    for call, expected in calls:
        y = call(None)
        assert y.nbytes >= kernels.STREAM_MIN_BYTES
        assert y.ctypes.data % 64 == 0 and y.flags.c_contiguous and y.flags.writeable
        np.testing.assert_allclose(y, expected, **TOL[dtype])
        # rows start 4 or 8 bytes past a line, or 32 (aligned for 32-byte vectors, not for a line)
        for offset in (y.itemsize, 32):
            buf = np.empty(y.nbytes + 64 + offset, np.uint8)
            start = (-buf.ctypes.data % 64) + offset
            unaligned = buf[start:start + y.nbytes].view(dtype).reshape(y.shape)
            assert call(unaligned) is unaligned
            np.testing.assert_array_equal(unaligned, y)


def test_bound_functions_follow_the_activation_and_run_from_threads():
    """layer(x) for one sample, and for a batch, calls a function bound to the layer's kernel
    arguments (the compiled kernel called directly); it is rebuilt when the activation changes and
    is safe to share."""
    NT = NeuronTreeFFF
    rng = np.random.default_rng(37)
    x = rng.standard_normal((24, D))
    for layer in (fffcpu.FFF(D, L_WIDTH, O, depth=3, seed=5, dtype="float64"),
                  NT(D, O, depth=3, parallel_size=2, seed=5, dtype="float64")):
        ref_layer = type(layer).from_state_dict(layer.state_dict(), backend="numpy",
                                                **({} if isinstance(layer, fffcpu.FFF) else {"parallel_size": 2}))
        for activation in ("relu", "tanh", "gelu"):
            layer.activation = ref_layer.activation = activation
            np.testing.assert_allclose(layer(x[0]), ref_layer(x[0]), rtol=1e-12)
            np.testing.assert_allclose(layer(x), ref_layer(x), rtol=1e-12)
            np.testing.assert_allclose(layer(x[:5]), ref_layer(x[:5]), rtol=1e-12)  # serial loop
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            got = list(pool.map(layer, list(x) * 8))
        np.testing.assert_allclose(np.stack(got), np.concatenate([ref_layer(x)] * 8), rtol=1e-12)


def test_direct_call_refuses_arrays_of_another_dtype():
    """The compiled entry point skips Numba's dispatch but still checks each array's dtype."""
    tp = nt_params(2, 1, np.float32, np.random.default_rng(38))
    w_out_t = np.ascontiguousarray(tp["linear_out.weight"].T)
    one = api.neuron_tree_one_sample(tp["linear_in.weight"], tp["linear_in.bias"], w_out_t, 2, 1, "gelu")
    x = np.ones(D, np.float32)
    np.testing.assert_allclose(one(x), nt_naive(tp, 2, 1, "gelu", x[None])[0][0], **TOL[np.float32])
    with pytest.raises(TypeError):
        one(x.astype(np.float64))


@pytest.mark.parametrize("master_leaf", [0, 2])
def test_a_deep_copy_computes_with_its_own_parameters(master_leaf):
    """copy.deepcopy (a common way to keep a snapshot of a model) copies the parameters, not the
    kernel caches: the copy follows its own parameters and not the original's, for one sample and
    for a batch, also after either is changed in place."""
    import copy
    NT = NeuronTreeFFF
    rng = np.random.default_rng(39)
    x = rng.standard_normal((40, D)).astype(np.float32)
    layers = [fffcpu.FFF(D, L_WIDTH, O, depth=2, seed=6, master_leaf=master_leaf)]
    if not master_leaf:
        layers.append(NT(D, O, depth=2, seed=6))
    for layer in layers:
        layer(x[0]), layer(x)  # fill the caches
        snapshot = copy.deepcopy(layer)
        for v in snapshot.params.values():
            v *= 1.5  # in place, in the copy only
        kw = {"master_leaf": master_leaf} if master_leaf else {}
        for model in (layer, snapshot):
            ref_layer = type(model).from_state_dict(model.state_dict(), backend="numpy", **kw)
            np.testing.assert_allclose(model(x[0]), ref_layer(x[0]), **TOL[np.float32])
            np.testing.assert_allclose(model(x), ref_layer(x), **TOL[np.float32])
        assert not np.allclose(layer(x), snapshot(x))


def _layers_of_every_kind(dtype):
    NT = NeuronTreeFFF
    return [fffcpu.FFF(D, L_WIDTH, O, depth=3, seed=6, dtype=dtype),
            fffcpu.FFF(D, L_WIDTH, O, depth=3, seed=7, master_leaf=2, dtype=dtype),
            NT(D, O, depth=3, parallel_size=2, seed=8, dtype=dtype)]


def test_an_unpickled_layer_keeps_its_kernel_arguments():
    """A layer sent through pickle (multiprocessing) got its arrays back with an equal dtype that is
    not the same object, so ascontiguousarray made new views on every call: the kernel arguments and
    bound functions were never kept, and one sample took 25 to 50 times as long. The results were
    right; the test checks the caches."""
    import pickle
    rng = np.random.default_rng(41)
    x = rng.standard_normal((40, D)).astype(np.float32)
    for layer in _layers_of_every_kind("float32"):
        copy = pickle.loads(pickle.dumps(layer))
        assert copy._descr is np.dtype(np.float32)  # the lean path's dtype check is then an identity test
        np.testing.assert_array_equal(copy(x[0]), layer(x[0]))
        np.testing.assert_array_equal(copy(x), layer(x))
        kept = (copy.__dict__.get("_kernel_cache"), copy.__dict__.get("_one_sample_fn"),
                copy.__dict__.get("_batch_fn"))
        if layer.kind == "fff" and layer.master_leaf:  # one sample calls the master-leaf kernel directly
            kept = kept[::2]
        assert all(k is not None for k in kept), type(layer).__name__
        copy(x[0])
        copy(x)
        assert copy.__dict__.get("_kernel_cache") is kept[0]
        copy.params["b2s" if layer.kind == "fff" else "linear_in.bias"] += 1  # in place: still seen
        np.testing.assert_allclose(copy(x), copy._hard_numpy(x), **TOL[np.float32])


@pytest.mark.parametrize("read_only", ["input", "parameters", "both"])
def test_read_only_inputs_and_parameters(read_only):
    """A read-only batch (a memory map, np.frombuffer) or read-only parameters compute as writable
    ones do: batch kernel, serial loop and one sample. (The leaf routing once passed an empty view
    of ``x`` as the array for its unused logits, so a read-only ``x`` failed to compile.)"""
    rng = np.random.default_rng(39)
    for layer in _layers_of_every_kind("float32"):
        expected = {n: None for n in (40, 5, 1)}
        for n in expected:
            x = rng.standard_normal((n, D)).astype(np.float32)
            expected[n] = (x, layer._hard_numpy(x))
        if read_only != "input":
            for a in layer.params.values():
                a.setflags(write=False)
        for n, (x, y_ref) in expected.items():
            if read_only != "parameters":
                x.setflags(write=False)
            np.testing.assert_allclose(layer(x), y_ref, **TOL[np.float32])
            np.testing.assert_allclose(layer(x[0]), y_ref[0], **TOL[np.float32])


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_outputs_are_new_aligned_arrays(dtype):
    """The batch kernels allocate their output themselves (one call from Python): each call returns
    a new C-contiguous, writable array starting on a 64-byte line, whatever its size."""
    rng = np.random.default_rng(40)
    x = rng.standard_normal((40, D)).astype(dtype)
    for layer in _layers_of_every_kind(dtype):
        y1 = layer(x)
        y2 = layer(x)
        assert not np.shares_memory(y1, y2)
        for y in (y1, y2):
            assert y.shape == (40, O) and y.dtype == dtype
            assert y.flags.c_contiguous and y.flags.writeable and y.ctypes.data % 64 == 0
        y1[...] = np.nan  # the caller owns it
        np.testing.assert_allclose(y2, layer._hard_numpy(x), **TOL[dtype])
        np.testing.assert_array_equal(layer(x), y2)


def test_kernels_read_the_calling_threads_thread_count():
    """The batch kernels read Numba's thread count inside the call (``kernels._num_threads``): per
    calling thread, as ``numba.get_num_threads()`` and ``set_num_threads`` have it."""
    main = api.get_num_threads()
    assert kernels.thread_count() == main

    def in_thread():
        api.set_num_threads(1)
        return kernels.thread_count(), api.get_num_threads()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert pool.submit(in_thread).result() == (1, 1)
    assert kernels.thread_count() == main


def test_dtype_is_fixed_and_astype_converts():
    """Setting layer.dtype after construction left parameters and compiled entry points of one dtype
    behind inputs of another, and broke the batch calls of every other layer in the process; it is
    refused now, with astype for a converted copy. backend is checked when set."""
    NT = NeuronTreeFFF
    rng = np.random.default_rng(41)
    x = rng.standard_normal((40, D)).astype(np.float32)
    for make in (lambda s: fffcpu.FFF(D, L_WIDTH, O, depth=2, seed=s, master_leaf=2),
                 lambda s: NT(D, O, depth=2, parallel_size=2, seed=s)):
        a, b = make(1), make(2)
        with pytest.raises(AttributeError, match=r"dtype is fixed at construction \(this layer's is float32, "
                                                 r"got 'float64'\); layer.astype\('float64'\)"):
            a.dtype = np.float64
        assert a.dtype is np.float32
        wide = a.astype("float64")
        assert wide.dtype is np.float64 and wide.config() == dict(a.config(), dtype="float64")
        assert wide(x).dtype == np.float64 and a(x).dtype == np.float32
        np.testing.assert_allclose(wide(x), a(x), **TOL[np.float32])
        np.testing.assert_allclose(b(x), b.astype("float64")(x.astype(np.float64)), **TOL[np.float32])
        with pytest.raises(ValueError, match=r"backend must be one of \['auto', 'numba', 'numpy'\], got 'torch'"):
            a.backend = "torch"
        a.backend = "numpy"
        np.testing.assert_allclose(a(x), wide(x), **TOL[np.float32])


def _run_python(code, env_extra=None, timeout=300):
    """Run ``code`` in a fresh Python process (environment plus ``env_extra``); the CompletedProcess."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)


def _need_fork():
    import multiprocessing
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")


#: the start of the fork tests' scripts: a small leaf FFF whose batches of 40 run the parallel kernels
_SMALL_FFF = r'''
import multiprocessing as mp, threading, time, numpy as np, fffcpu
from fffcpu import _kernel_api as api
api.PARALLEL_MIN_WORK = 0
layer = fffcpu.FFF(5, 3, 4, 3, seed=0)
x = np.random.default_rng(0).standard_normal((40, 5)).astype(np.float32)
'''

def test_warmup_compiles_every_kernel_the_layers_call():
    """After warmup(), layer calls of that dtype add no kernel signature (no compilation in the hot
    path), read-only inputs (a memory map, np.frombuffer) included: they compiled the serial loops
    anew, seconds on the first such call. A fresh process, since this one's kernels already carry
    the signatures of other tests; the kernels load from Numba's disk cache, so it takes seconds."""
    script = r'''
import numpy as np, fffcpu
from fffcpu import _kernel_api as api, kernels
from fffcpu.neuron_tree import NeuronTreeFFF
fffcpu.warmup(("float32",))
count = lambda: {n: len(f.signatures) for n, f in vars(kernels).items() if hasattr(f, "signatures")}
before = count()
api.PARALLEL_MIN_WORK = 0
x = np.random.default_rng(0).standard_normal((40, 5)).astype(np.float32)
ro = x.copy()
ro.flags.writeable = False
for layer in (fffcpu.FFF(5, 3, 4, 3), fffcpu.FFF(5, 3, 4, 3, master_leaf=2), NeuronTreeFFF(5, 4, 3),
              NeuronTreeFFF(5, 4, 3, parallel_size=2, activation="relu")):
    for batch in (x[0], x[:1], x[:3], x, x[:, ::-1], np.asfortranarray(x), x.astype(np.float64),
                  ro[0], ro[:1], ro[:3], ro):
        layer(batch)
after = count()
print({n: (before[n], after[n]) for n in after if after[n] != before[n]})
'''
    out = _run_python(script, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "{}", f"kernels compiled after warmup (name: (before, after)): {out.stdout}"


def test_layers_run_where_no_cache_directory_is_writable():
    """A read-only install run by a user whose NUMBA_CACHE_DIR and home are read-only too: every
    ``cache=True`` kernel raised "cannot cache function ...: no locator available" when
    fffcpu.kernels was imported, so every layer call failed. The kernels now compile uncached, with
    a warning. Simulated by making every Numba cache location refuse writing (as root, chmod would
    not); compiles the one-sample kernel anew, a few seconds."""
    script = r'''
import warnings
from numba.core import caching
def refuse(self):
    raise PermissionError(13, "Permission denied", self.get_cache_path())
caching._CacheLocator.ensure_cache_path = refuse
import numpy as np, fffcpu
layer = fffcpu.FFF(5, 3, 4, 3, seed=0)
x = np.random.default_rng(0).standard_normal(5).astype(np.float32)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    y = layer(x)
from fffcpu import kernels
ref = fffcpu.FFF.from_state_dict(layer.state_dict(), backend="numpy")(x)
print(kernels.CACHE, np.allclose(y, ref, rtol=1e-5, atol=1e-5),
      ["NUMBA_CACHE_DIR to a writable directory" in str(w.message) for w in caught])
'''
    out = _run_python(script, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False True [True]", out.stdout


def test_can_cache_warns_only_for_a_missing_cache_locator(monkeypatch):
    """_can_cache turns Numba's "no locator available" into a warning and False; any other error of
    the cache=True decoration is Numba's to report, and is raised."""
    from fffcpu import kernels

    def refusing(message):
        def njit(**options):
            raise RuntimeError(message)
        return njit
    monkeypatch.setattr(kernels, "njit", refusing("cannot cache function 'f': no locator available for file 'x'"))
    with pytest.warns(RuntimeWarning, match="no writable cache directory"):
        assert kernels._can_cache() is False
    monkeypatch.setattr(kernels, "njit", refusing("something else went wrong"))
    with pytest.raises(RuntimeError, match="something else went wrong"):
        kernels._can_cache()


def test_layers_run_without_the_jit():
    """Under NUMBA_DISABLE_JIT=1 (coverage tools) the kernels run as Python with stand-ins for the
    intrinsics; every layer path agrees with the reference. The parallel batch path broke once, when
    an intrinsic had no stand-in."""
    script = r'''
import numpy as np, fffcpu
from fffcpu import _kernel_api as api
from fffcpu.neuron_tree import NeuronTreeFFF
api.PARALLEL_MIN_WORK = 0
x = np.random.default_rng(0).standard_normal((20, 5)).astype(np.float32)
for layer in (fffcpu.FFF(5, 3, 4, 3), fffcpu.FFF(5, 3, 4, 3, master_leaf=2), NeuronTreeFFF(5, 4, 3)):
    ref = type(layer).from_state_dict(layer.state_dict(), **dict(layer.config(), backend="numpy"))
    for batch in (x[0], x[:3], x):
        np.testing.assert_allclose(layer(batch), ref(batch), rtol=1e-5, atol=1e-5)
print("ok")
'''
    out = _run_python(script, {"NUMBA_DISABLE_JIT": "1"}, timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


def test_set_num_threads_checks_its_argument():
    import numba
    top = numba.config.NUMBA_NUM_THREADS
    for bad, error, match in [(True, TypeError, r"n \(threads\) must be an integer, got True"),
                              ("2", TypeError, "must be an integer, got '2'"),
                              (1.5, TypeError, "must be an integer, got 1.5"),
                              (0, ValueError, r"n \(threads\) must be an integer >= 1, got 0"),
                              (top + 1, ValueError, f"must be at most {top} .*got {top + 1}")]:
        with pytest.raises(error, match=match):
            fffcpu.set_num_threads(bad)
    assert fffcpu.get_num_threads() >= 1


def test_warmup_checks_its_dtypes_and_takes_one_name():
    """warmup("float32") iterated the letters ("data type 'o' not understood"), and warmup(("int8",))
    compiled kernels for a dtype no layer has."""
    for bad, error, match in [(("float32", "int8"), ValueError, "dtypes must be 'float32' or 'float64', got 'int8'"),
                              ("float16", ValueError, "dtypes must be 'float32' or 'float64', got 'float16'"),
                              (None, TypeError, "dtypes must be 'float32', 'float64' or a sequence of them, got None"),
                              (32, TypeError, "or a sequence of them, got 32")]:
        with pytest.raises(error, match=match):
            fffcpu.warmup(bad)
    fffcpu.warmup("float32")
    fffcpu.warmup(np.float32)
    from fffcpu import _kernel_api as api  # a dtype object is one dtype too (it is no sequence of them)
    assert api._warmup_dtypes(np.dtype("float64")) == [np.dtype("float64")]


def test_batch_entry_loaded_from_the_disk_cache_in_a_fresh_process(tmp_path):
    """The batch wrappers (leaf_forward_new) read the thread count through the threading layer's
    ``get_num_threads`` symbol. Cached in the order below, a fresh process loaded leaf_forward_new
    before anything had started the threading layer, and its first batch call crashed (SIGSEGV):
    1. leaf_forward_batch alone compiled and cached;
    2. leaf_forward_new compiled on top of the cached leaf_forward_batch (no reload hook inherited);
    3. a new process calls the batch path: everything loads from the cache."""
    setup = r'''
import numpy as np
from fffcpu import _kernel_api as api
api.PARALLEL_MIN_WORK = 0
rng = np.random.default_rng(0)
p = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in
     [("node_weights", (1, 3)), ("node_biases", (1, 1)), ("w1s", (2, 3, 2)), ("b1s", (2, 2)),
      ("w2s", (2, 2, 2)), ("b2s", (2, 2))]}
x = rng.standard_normal((16, 3)).astype(np.float32)
'''
    steps = [setup + "api.leaf_forward(p, 0, x, out=np.empty((16, 2), np.float32))",  # the dispatcher only
             setup + "api.leaf_forward(p, 0, x)",  # the entry point of leaf_forward_new
             setup + "y = api.leaf_forward(p, 0, x); assert y.shape == (16, 2); print('ok')"]
    for i, code in enumerate(steps):
        out = _run_python(code, {"NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}, timeout=600)
        assert out.returncode == 0, f"step {i + 1} ended with {out.returncode}: {out.stderr[-2000:]}"
    assert out.stdout.strip() == "ok"


def test_a_process_that_ran_only_one_sample_calls_can_fork_batch_workers():
    """One-sample calls, serial batches and fffcpu.get_num_threads() do not start Numba's threading
    layer: with GNU OpenMP a forked child of a process that started it aborts at its first parallel
    call ("fork() called from a process already using GNU OpenMP"), and a Pool waits for it forever.
    (After a parallel batch call in the parent that is Numba's own limit.)"""
    _need_fork()
    script = _SMALL_FFF + r'''
expected = fffcpu.FFF.from_state_dict(layer.state_dict(), backend="numpy")(x)
layer(x[0])
layer(x[:3])  # below SERIAL_BELOW: the serial loop
import numba
assert fffcpu.get_num_threads() == numba.config.NUMBA_NUM_THREADS
def child(q):
    q.put(np.abs(layer(x) - expected).max())
ctx = mp.get_context("fork")
q = ctx.Queue()
p = ctx.Process(target=child, args=(q,))
p.start()
p.join(120)
print(p.exitcode, q.get(timeout=5) < 1e-5 if p.exitcode == 0 else None)
'''
    out = _run_python(script)
    assert out.returncode == 0 and out.stdout.split() == ["0", "True"], (out.stdout, out.stderr[-2000:])


def test_thread_count_loaded_from_the_disk_cache_in_a_fresh_process(tmp_path):
    """kernels.thread_count (a cached function calling _num_threads) crashed (SIGSEGV) when loaded
    from the disk cache into a process whose threading layer had not started."""
    code = ("from fffcpu import kernels; import numba\n"
            "assert kernels.thread_count() == numba.get_num_threads()\nprint('ok')")
    cache = {"NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    for step in ("compiles", "loads"):
        out = _run_python(code, cache)
        assert out.returncode == 0 and out.stdout.strip() == "ok", (step, out.returncode, out.stderr[-1500:])


def test_a_fork_while_another_thread_holds_the_batch_lock():
    """A forked child inherits the batch lock as the parent's threads held it; the holder does not
    exist in the child, whose first parallel batch call then waited forever. The child gets a
    fresh lock (os.register_at_fork), and a fresh warmup lock too."""
    _need_fork()
    code = _SMALL_FFF + r'''
held = threading.Event()
def hold():
    with api._PARALLEL_LOCK, api._WARMUP_LOCK:  # as a batch call (and a warmup) in another thread would
        held.set()
        time.sleep(3)
threading.Thread(target=hold, daemon=True).start()
held.wait()
def child(q):
    free = api._PARALLEL_LOCK.acquire(timeout=1)  # the parent holds its locks for 3 s more
    warm_free = api._WARMUP_LOCK.acquire(timeout=1)
    if free and warm_free:
        api._PARALLEL_LOCK.release()
        api._WARMUP_LOCK.release()
        q.put((True, layer(x).shape))  # (may compile first: no time limit on this part)
    else:
        q.put((False, None))
ctx = mp.get_context("fork")
q = ctx.Queue()
p = ctx.Process(target=child, args=(q,))
p.start()
print(*q.get(timeout=240))
p.join(10)
'''
    out = _run_python(code)
    assert out.returncode == 0 and out.stdout.split() == ["True", "(40,", "4)"], (out.stdout, out.stderr[-1500:])


def test_ctrl_c_during_a_batch_call_raises_keyboard_interrupt():
    """A signal that arrives while a batch kernel runs was raised while Numba boxed the returned
    array, and came out as SystemError ("returned a result with an exception set"), which
    ``except KeyboardInterrupt`` does not catch."""
    code = r'''
import os, signal, threading, time, numpy as np, fffcpu
from fffcpu.neuron_tree import NeuronTreeFFF
signal.signal(signal.SIGINT, signal.default_int_handler)  # a run started in the background inherits SIGINT ignored
x = np.random.default_rng(0).standard_normal((16384, 768), dtype=np.float32)
for layer in (fffcpu.FFF(768, 16, 768, 8, seed=0), NeuronTreeFFF(768, 768, 8, seed=0)):
    layer(x[:2048])
    for attempt in range(3):
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
        end = time.monotonic() + 10
        try:
            while time.monotonic() < end:
                layer(x)
            print("no interrupt")
        except KeyboardInterrupt:
            pass
        except BaseException as exc:
            print("wrong", type(exc).__name__, exc)
    assert layer(x[:2048]).shape == (2048, 768)
print("done")
'''
    out = _run_python(code)
    assert out.returncode == 0 and out.stdout.strip() == "done", (out.stdout, out.stderr[-1500:])


# -- the wrappers' own logic (mutation pass 12) -------------------------------------------------
def test_an_activation_code_computes_as_its_name():
    """The wrappers take an activation by name or by its code (ACTIVATION_CODES), on every path."""
    rng = np.random.default_rng(41)
    lp = leaf_params(3, np.float32, rng)
    tp = nt_params(3, 3, np.float32, rng)
    x = rng.standard_normal((40, D)).astype(np.float32)
    for name in ("gelu", "tanh"):
        code = ACTIVATION_CODES[name]
        for batch in (x, x[:5]):  # batch kernel, serial loop
            np.testing.assert_array_equal(api.leaf_forward(lp, code, batch), api.leaf_forward(lp, name, batch))
            np.testing.assert_array_equal(nt_call(tp, 3, 3, code, batch), nt_call(tp, 3, 3, name, batch))
        np.testing.assert_array_equal(api.leaf_forward_one(lp, code, x[0]), api.leaf_forward_one(lp, name, x[0]))
        np.testing.assert_allclose(api.leaf_forward(lp, code, x), ref_leaf.hard_forward(lp, x, name),
                                   **TOL[np.float32])


def test_mix_share_is_the_sigmoid_of_k_for_any_k():
    """sigmoid(k) in the parameters' dtype, without overflow at large |k| (a share of 0 or 1)."""
    from scipy.special import expit
    for k in (-1000.0, -40.0, -0.7, 0.0, 0.7, 40.0, 1000.0):
        for dtype in DTYPES:
            s = api.mix_share(np.array(k, dtype), dtype)
            assert type(s) is dtype
            np.testing.assert_allclose(s, expit(k), rtol=1e-6, atol=0)


@pytest.mark.parametrize("n", [5, 40])  # the serial loop, the batch kernel
def test_out_buffer_calls_report_non_finite_input(n):
    """With an output buffer too, check_finite returns None for NaN or inf, else the buffer."""
    rng = np.random.default_rng(42)
    lp = leaf_params(3, np.float32, rng)
    tp = nt_params(3, 3, np.float32, rng)
    x = rng.standard_normal((n, D)).astype(np.float32)
    out = np.empty((n, O), np.float32)
    assert api.leaf_forward(lp, "relu", x, out=out, check_finite=True) is out
    assert nt_call(tp, 3, 3, "gelu", x, out=out, check_finite=True) is out
    for bad in (np.nan, -np.inf):
        x[n - 1, 2] = bad
        assert api.leaf_forward(lp, "relu", x, out=out, check_finite=True) is None
        assert nt_call(tp, 3, 3, "gelu", x, out=out, check_finite=True) is None


def test_master_leaf_one_sample_reports_non_finite_input():
    """The master-leaf layer's one-sample kernel checks its input as the plain layer's does."""
    layer = fffcpu.FFF(D, L_WIDTH, O, depth=2, seed=4, dtype="float64", master_leaf=2)
    x = np.random.default_rng(43).standard_normal(D)
    assert api.leaf_forward_one(layer.params, "relu", x) is not None
    x[1] = np.nan
    assert api.leaf_forward_one(layer.params, "relu", x) is None
    with pytest.raises(ValueError, match="must be finite"):
        layer(x)


def test_batch_kernels_run_holding_the_lock(monkeypatch):
    """Every call into a parallel batch kernel holds _PARALLEL_LOCK (Numba's workqueue layer must
    not be entered twice at once); a stand-in lock and wrapped kernels record it."""
    class Lock:
        held = False

        def __enter__(self):
            assert not self.held
            self.held = True

        def __exit__(self, *exc):
            self.held = False

    lock = Lock()
    monkeypatch.setattr(api, "_PARALLEL_LOCK", lock)
    monkeypatch.setattr(api, "_ENTRIES", {})  # the wrapped kernels' entry points stay in this test
    names = ("leaf_forward_batch", "leaf_forward_new", "nt_forward_batch", "nt_forward_each", "nt_forward_new")
    seen = []
    for name in names:
        def wrapped(*args, kernel=getattr(kernels, name), name=name):
            seen.append((name, lock.held))
            return kernel(*args)
        monkeypatch.setattr(kernels, name, wrapped)
    rng = np.random.default_rng(44)
    lp = leaf_params(3, np.float32, rng)
    tp = nt_params(3, 3, np.float32, rng)
    x = rng.standard_normal((40, D)).astype(np.float32)
    out = np.empty((40, O), np.float32)
    for y in (api.leaf_forward(lp, "relu", x), api.leaf_forward(lp, "relu", x, out=out)):
        np.testing.assert_allclose(y, ref_leaf.hard_forward(lp, x, "relu"), **TOL[np.float32])
    for each_max_bytes in (0, 1 << 40):  # the grouped walk, then sample by sample
        monkeypatch.setattr(api, "NT_EACH_MAX_BYTES", each_max_bytes)
        for y in (nt_call(tp, 3, 3, "gelu", x), nt_call(tp, 3, 3, "gelu", x, out=out)):
            np.testing.assert_allclose(y, ref_nt.hard_forward(tp, x, 3, 3, "gelu"), **TOL[np.float32])
    assert sorted(set(seen)) == sorted((name, True) for name in names)


def test_warmup_gives_the_work_rule_back(monkeypatch):
    """warmup() lifts PARALLEL_MIN_WORK to compile the batch kernels on tiny inputs, then restores it."""
    monkeypatch.setattr(api, "PARALLEL_MIN_WORK", 123_456)
    api.warmup(("float32",))
    assert api.PARALLEL_MIN_WORK == 123_456


def test_warmups_in_several_threads_give_the_work_rule_back(monkeypatch):
    """Threads warming up at once each saved PARALLEL_MIN_WORK, a later one after another had set
    it to 0, and restored that 0: every batch of 8 or more then ran the parallel kernels. Here the
    second warmup starts while the first is inside (and, without the lock, finishes after it)."""
    import threading
    import time
    api.warmup("float32")  # everything loaded first: no compilation to reorder the threads
    monkeypatch.setattr(api, "PARALLEL_MIN_WORK", 123_456)
    all_finite = api.all_finite
    first_inside, second_inside = threading.Event(), threading.Event()

    def all_finite_in_order(x):
        if threading.current_thread().name == "first":
            if not first_inside.is_set():
                first_inside.set()
                second_inside.wait(0.5)  # with the lock the second cannot come in: go on after 0.5 s
        elif not second_inside.is_set():
            second_inside.set()
            time.sleep(0.05)  # the first finishes meanwhile
        return all_finite(x)

    monkeypatch.setattr(api, "all_finite", all_finite_in_order)

    def second():
        first_inside.wait(5)
        api.warmup("float32")

    threads = [threading.Thread(target=api.warmup, args=("float32",), name="first"),
               threading.Thread(target=second, name="second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert api.PARALLEL_MIN_WORK == 123_456


def test_one_sample_functions_keep_their_scratch_per_call():
    """A bound one-sample function allocates its hidden-layer scratch per call: Python threads that
    call it at once (the kernel runs without the GIL) never share it. Wide leaves make the calls long
    enough to overlap on two cores."""
    rng = np.random.default_rng(46)
    params = ref_leaf.init_params(64, 2048, 4, 1, rng, np.float64)
    one = api.leaf_one_sample(api.leaf_kernel_args(params), "relu")
    xs = rng.standard_normal((8, 64))
    expected = np.stack([one(x) for x in xs])
    np.testing.assert_allclose(expected, ref_leaf.hard_forward(params, xs, "relu"), rtol=1e-12)

    def worker(i):
        return all(np.array_equal(one(xs[(i + j) % 8]), expected[(i + j) % 8]) for j in range(400))

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert all(pool.map(worker, range(4)))


# -- the kernels' own pieces (mutation pass 12) -------------------------------------------------
@pytest.mark.parametrize("depth", [1, 3])  # root: one level per pass (eight, then four), two levels per pass
def test_leaf_batch_kernel_reports_a_bad_value_in_any_sample(depth):
    """The batch check rides on the root logits: of eight samples per pass, four per pass with a
    rest of three (depth 1), four per pass for two levels (depth 3), or a sample alone in the last
    routing task (ROUTE_TASK + 1 samples) that finishes its descent by itself. A NaN or inf in any
    one sample is reported (the other tests put it in a few samples: never in the second of a pass,
    at depth 1 or alone in a task)."""
    rng = np.random.default_rng(47)
    params = leaf_params(depth, np.float32, rng)
    x = rng.standard_normal((19, D)).astype(np.float32)
    assert api.leaf_forward(params, "relu", x, check_finite=True) is not None
    for row in range(19):
        for bad in (np.nan, -np.inf):
            z = x.copy()
            z[row, row % D] = bad
            assert api.leaf_forward(params, "relu", z, check_finite=True) is None, (row, bad)
    x = rng.standard_normal((kernels.ROUTE_TASK + 1, D)).astype(np.float32)
    assert api.leaf_forward(params, "relu", x, check_finite=True) is not None
    x[-1, 0] = np.inf
    assert api.leaf_forward(params, "relu", x, check_finite=True) is None


@pytest.mark.parametrize("depth", [1, 3])
def test_leaf_ties_route_right_in_every_lane_of_a_routing_pass(depth):
    """Zero input and zero biases: every logit is an exact 0, so every sample goes right at every
    node, whatever its place in a pass of eight or four samples (rests of one to four: a rest
    repeats its last sample, so a lane's rule shows only with some rests)."""
    rng = np.random.default_rng(48)
    params = leaf_params(depth, np.float64, rng)
    params["node_biases"][:] = 0
    for n in (9, 10, 11, 12, 19):
        y = api.leaf_forward(params, "relu", np.zeros((n, D)))
        expected = ref_leaf.leaf_forward(params, np.zeros((n, D)), 2 ** depth - 1, "relu")
        np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_neuron_tree_exact_ties_in_small_groups_and_lone_descents():
    """Small integers make exact ties frequent at every node. With 60 samples the top levels see
    groups of at most three (finished sample by sample, two side by side) and the subtrees see
    samples alone at a node (a descent of their own): ties go left there as well."""
    rng = np.random.default_rng(49)
    depth, P = 5, 2
    params = nt_params(depth, P, np.float64, rng, integer=True)
    x = rng.integers(-1, 2, size=(60, D)).astype(np.float64)
    y_naive, rows = nt_naive(params, depth, P, "identity", x)
    np.testing.assert_array_equal(rows, ref_nt.hard_path(params, x, depth, P)[0])
    np.testing.assert_allclose(nt_call(params, depth, P, "identity", x), y_naive, rtol=1e-12, atol=1e-12)


def test_leaf_batch_kernel_reads_every_workers_check():
    """Each routing worker records the check of the tasks it took (an atomic counter hands them
    out, so which worker takes which varies from call to call); the call reads every worker's
    record. A bad value in any one routing task of eight is reported, whoever took that task.
    (Inputs 64 wide: tasks long enough that both workers take some.)"""
    rng = np.random.default_rng(50)
    params = ref_leaf.init_params(64, L_WIDTH, O, 3, rng, np.float32)
    args = api.leaf_kernel_args(params)
    n = 8 * kernels.ROUTE_TASK
    x = rng.standard_normal((n, 64)).astype(np.float32)
    y = np.empty((n, O), np.float32)
    assert kernels.leaf_forward_batch(*args[:6], 0, *args[6:], x, y, 2, True, False)
    for task in range(8):
        z = x.copy()
        z[(task + 1) * kernels.ROUTE_TASK - 1, 2] = np.nan  # the last sample of the task
        assert not kernels.leaf_forward_batch(*args[:6], 0, *args[6:], z, y, 2, True, False), task


@pytest.mark.parametrize("depth", [0, 1])
def test_neuron_tree_batch_kernel_on_shallow_trees(depth):
    """Trees of fewer levels than the batch kernel's per-sample top levels (at least three): the
    top levels stop at the tree's own. At these depths the other tests check the batch kernel's
    NaN report only, not its outputs."""
    rng = np.random.default_rng(51)
    params = nt_params(depth, 2, np.float32, rng)
    x = rng.standard_normal((40, D)).astype(np.float32)
    y_naive, _ = nt_naive(params, depth, 2, "gelu", x)
    np.testing.assert_allclose(nt_call(params, depth, 2, "gelu", x), y_naive, **TOL[np.float32])


def test_one_sample_kernels_allocate_nothing_given_their_buffers():
    """Issue 5, item 1: the one-sample kernels allocate nothing when given an output buffer (and the
    leaf FFF its hidden-layer scratch). Counted by Numba's runtime (NUMBA_NRT_STATS, read at start-up,
    hence a fresh process), with the kernels called from compiled code: a call from Python counts the
    wrappers of its array arguments too. The batch kernel, which allocates its output and scratch,
    shows that the count works, and it makes as many allocations for 512 samples as for 64 (item 5:
    scratch arrays of O(batch) size, none per sample)."""
    script = r'''
import numba, numpy as np, fffcpu
from numba.core.runtime import rtsys
from fffcpu import _kernel_api as api, kernels
from fffcpu.activations import ACTIVATION_CODES
numba.get_num_threads()  # the threading layer before a cached parallel kernel runs
leaf = fffcpu.FFF(16, 4, 8, 3, seed=0, master_leaf=2)
tree = fffcpu.NeuronTreeFFF(16, 8, 3, parallel_size=2, seed=0)
x = np.random.default_rng(0).standard_normal(16).astype(np.float32)
a = api.leaf_kernel_args(leaf.params)
h, hm, y = np.empty(4, np.float32), np.empty(2, np.float32), np.empty(8, np.float32)
w_in, b_in, w_out_t = tree._kernel_arrays()
yt = np.empty(8, np.float32)
relu, gelu = ACTIVATION_CODES["relu"], ACTIVATION_CODES["gelu"]
X = np.repeat(x[None, :], 64, axis=0)

@numba.njit
def one(n, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, x, h, hm, y, w_in, b_in, w_out_t, yt):
    for _ in range(n):
        kernels.leaf_forward_one(a0, a1, a2, a3, a4, a5, relu, a6, a7, a8, a9, a10, x, h, hm, y)
        kernels.nt_forward_one(w_in, b_in, w_out_t, 3, 2, gelu, x, yt)

@numba.njit
def batch(n, w_in, b_in, w_out_t, X):
    for _ in range(n):
        kernels.nt_forward_new(w_in, b_in, w_out_t, 3, 2, gelu, X, True, False)
        kernels.nt_forward_new(w_in, b_in, w_out_t, 3, 2, gelu, X, True, True)  # sample by sample

@numba.njit
def leaf_batch(n, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, X):
    for _ in range(n):
        kernels.leaf_forward_new(a0, a1, a2, a3, a4, a5, relu, a6, a7, a8, a9, a10, X, True, False)

X8 = np.repeat(X, 8, axis=0)  # 512 samples: as many allocations per call as 64 (none per sample)
for name, f, rest in (("one", one, (*a, x, h, hm, y, w_in, b_in, w_out_t, yt)), ("batch", batch, (w_in, b_in, w_out_t, X)),
                      ("batch8", batch, (w_in, b_in, w_out_t, X8)), ("leaf_batch", leaf_batch, (*a, X)),
                      ("leaf_batch8", leaf_batch, (*a, X8))):
    counts = []
    for n in (0, 100):
        f(n, *rest)  # compiled before counting
        before = rtsys.get_allocation_stats().alloc
        f(n, *rest)
        counts.append(rtsys.get_allocation_stats().alloc - before)
    print(name, counts[1] - counts[0])
np.testing.assert_allclose(y, leaf(x), rtol=1e-5)
np.testing.assert_allclose(yt, tree(x), rtol=1e-5)
'''
    done = _run_python(script, {"NUMBA_NRT_STATS": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = dict(line.split() for line in done.stdout.split("\n") if line)
    assert counts["one"] == "0", done.stdout
    assert int(counts["batch"]) >= 100 and int(counts["leaf_batch"]) >= 100, done.stdout  # the counter counts
    # item 5: a batch call allocates its output and scratch, a fixed number of arrays whatever its size
    assert counts["batch8"] == counts["batch"] and counts["leaf_batch8"] == counts["leaf_batch"], done.stdout


def test_borrow_gives_the_same_array_without_its_owner():
    """kernels._borrow (round 16): views of the borrowed array read and write the caller's data, with
    its shape and strides, for any layout the kernels take (a strided view, a read-only array)."""
    from numba import njit

    @njit
    def through(a, b):
        v = kernels._borrow(a)
        w = kernels._borrow(b)
        v[1, 2] = w[0, 1] + 1.0
        row = v[2]
        return v.shape[0], v.shape[1], v.strides[0], v.strides[1], row[3], w[1, 0]

    base = np.arange(40.0).reshape(5, 8)
    a = base[::2, ::2]  # (3, 4), strides (128, 16)
    b = np.arange(6.0).reshape(2, 3)
    b.flags.writeable = False
    assert through(a, b) == (3, 4, 128, 16, base[4, 6], 3.0)
    assert base[2, 4] == 2.0 and a[1, 2] == 2.0


def test_narrow_leaf_blocks_never_read_past_the_weights():
    """Round 16: a leaf's last block of fewer than 16 hidden units reads whole blocks of 16, running
    on into the next row, except where that would leave the array (the last rows of the last leaf,
    and of the master leaf). Here the weights end right before a page that may not be read, so a
    read one value too far ends the process with SIGSEGV; and every path agrees with the reference
    (the batch kernel's groups of six, five, four, two and one, the serial loop and the
    one-sample call)."""
    import sys
    if not sys.platform.startswith("linux"):
        pytest.skip("mprotect through ctypes: Linux only")
    script = r'''
import ctypes, mmap, numpy as np, fffcpu
from fffcpu import _kernel_api as api, kernels as k
from fffcpu.activations import ACTIVATION_CODES
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
keep = []

def at_page_end(a):
    """A copy of ``a`` (C order) whose last byte is followed by an unreadable page."""
    page = mmap.PAGESIZE
    total = (a.nbytes + page - 1) // page * page + page
    buf = mmap.mmap(-1, total)
    start = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    assert libc.mprotect(start + total - page, page, 0) == 0, ctypes.get_errno()
    out = np.frombuffer(buf, a.dtype, count=a.size, offset=total - page - a.nbytes).reshape(a.shape)
    out[...] = a
    keep.append(buf)
    return out

for dt in (np.float32, np.float64):
    for l, m in ((8, 0), (15, 5), (17, 0), (3, 8)):
        layer = fffcpu.FFF(12, l, 6, depth=2, seed=l, master_leaf=m, dtype=dt)
        ref = fffcpu.FFF.from_state_dict(layer.state_dict(), backend="numpy", dtype=dt)
        args = list(api.leaf_kernel_args(layer.params))
        args[2] = at_page_end(args[2])  # w1s
        args[4] = at_page_end(args[4])  # w2s: 6 outputs, all in the tail's narrow block (round 17)
        if m:
            args[6] = at_page_end(args[6])  # the master leaf's w1
            args[8] = at_page_end(args[8])  # and w2
        X = np.random.default_rng(l).standard_normal((203, 12)).astype(dt)
        want = ref(X)
        leaves = np.asarray(ref.leaf_index(X))
        assert np.bincount(leaves, minlength=4).min() >= 5, leaves  # the last leaf too, in groups of 4
        relu = ACTIVATION_CODES[layer.activation]
        Y = np.empty((203, 6), dt)
        assert k.leaf_forward_batch(*args[:6], relu, *args[6:], X, Y, 2, True, False)
        np.testing.assert_allclose(Y, want, rtol=1e-4, atol=1e-5)
        for size in (5, 6):  # every bucket one pass of five or six samples (round 20)
            pick = np.concatenate([np.flatnonzero(leaves == j)[:size] for j in range(4)])
            Ys = np.empty((pick.size, 6), dt)
            assert k.leaf_forward_batch(*args[:6], relu, *args[6:], X[pick], Ys, 2, True, False)
            np.testing.assert_allclose(Ys, want[pick], rtol=1e-4, atol=1e-5)
        Y[...] = 0
        assert k.leaf_forward_serial(*args[:6], relu, *args[6:], X, Y, True)
        np.testing.assert_allclose(Y, want, rtol=1e-4, atol=1e-5)
        h, hm, y = np.empty(l, dt), np.empty(m, dt), np.empty(6, dt)
        for q in range(20):
            assert k.leaf_forward_one_master_checked(*args[:6], relu, *args[6:], X[q], h, hm, y)
            np.testing.assert_allclose(y, want[q], rtol=1e-4, atol=1e-5)
print("ok")
'''
    done = _run_python(script, timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.returncode, done.stderr[-3000:])


def test_batch_results_do_not_depend_on_the_thread_count():
    """The neuron tree's top-level tasks were sized by the thread count, and a task's groups decide
    the logits' summation order: at 190 samples two rows differed in the last bit between 1 and 2
    threads (float32 by 3e-8). Both variants, bit for bit."""
    import fffcpu
    layers = [fffcpu.NeuronTreeFFF(256, 64, depth=8, parallel_size=2, seed=2, dtype=dt)
              for dt in ("float32", "float64")]
    layers += [fffcpu.FFF(256, 16, 64, depth=6, seed=0, dtype=dt) for dt in ("float32", "float64")]
    import numba
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 threads")
    saved = fffcpu.get_num_threads()
    try:
        for layer in layers:
            for n in (64, 190, 1000):
                X = np.random.default_rng(5).standard_normal((n, 256)).astype(layer.dtype)
                fffcpu.set_num_threads(1)
                one = layer(X)
                fffcpu.set_num_threads(2)
                np.testing.assert_array_equal(layer(X), one)
    finally:
        fffcpu.set_num_threads(saved)


def test_kernels_run_under_numba_boundscheck():
    """NUMBA_BOUNDSCHECK=1 (a debugging setting) checks every index axis by axis, and refused the
    narrow leaf blocks' whole-block reads, which run on into the next row (round 16): they are
    left out under it."""
    script = r'''
import numpy as np, fffcpu
for layer in (fffcpu.FFF(12, 8, 6, depth=2, seed=0), fffcpu.FFF(12, 16, 6, depth=2, seed=0, master_leaf=8)):
    ref = fffcpu.FFF.from_state_dict(layer.state_dict(), backend="numpy")
    x = np.random.default_rng(0).standard_normal((64, 12)).astype(np.float32)
    np.testing.assert_allclose(layer(x[0]), ref(x[0]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer(x), ref(x), rtol=1e-5, atol=1e-6)
print("ok")
'''
    import tempfile
    with tempfile.TemporaryDirectory() as cache:  # compiled apart: the check is compiled in
        done = _run_python(script, {"NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": cache}, timeout=900)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_inference_through_the_kernels_does_not_import_scipy_special(tmp_path):
    """SciPy's import took two thirds of `import fffcpu` (0.23 of 0.37 s) for a function (erf,
    expit) that only the NumPy reference and training use: it is imported at their first call."""
    path = tmp_path / "layer.npz"
    script = f'''
import sys, numpy as np, fffcpu
assert "scipy.special" not in sys.modules
for layer in (fffcpu.FFF(8, 4, 3, depth=2, activation="gelu", master_leaf=2),
              fffcpu.NeuronTreeFFF(8, 3, depth=2, activation="sigmoid")):
    fffcpu.save(layer, {str(path)!r})
    layer = fffcpu.load({str(path)!r})
    layer(np.ones(8, np.float32)), layer(np.ones((5, 8)))
assert "scipy.special" not in sys.modules, "imported by inference"
fffcpu.FFF(8, 4, 3, depth=2).soft_forward(np.ones((5, 8)))
assert "scipy.special" in sys.modules
print("ok")
'''
    done = _run_python(script)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_parallel_kernels_launch_the_thread_pool_only_for_their_worker_loops():
    """In a function compiled with ``parallel=True``, Numba turns ``np.zeros``, ``np.ones`` and their
    kin into parallel loops of their own, each a launch of the thread pool: three such launches cost
    ``leaf_forward_batch`` about 3.5 us a call (round 22). The parallel kernels make their scratch with
    ``np.empty`` and fill it with ``set_all``; this reads their source for the calls that would launch."""
    import ast
    import inspect

    from fffcpu import kernels as k

    launching = {"zeros", "ones", "full", "zeros_like", "ones_like", "full_like", "arange", "sum", "cumsum"}
    tree = ast.parse(inspect.getsource(k))
    parallel = [f for f in tree.body if isinstance(f, ast.FunctionDef)
                and any("_PARALLEL" in ast.unparse(d) for d in f.decorator_list)]
    assert {"leaf_forward_batch", "nt_forward_batch"} <= {f.name for f in parallel}
    found = [(f.name, node.lineno, ast.unparse(node)) for f in parallel for node in ast.walk(f)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and isinstance(node.func.value, ast.Name) and node.func.value.id == "np" and node.func.attr in launching]
    assert found == []
    a = k.set_all(np.empty(5, np.int64), 3)
    b = k.set_all(np.empty(3, np.bool_), True)
    assert a.tolist() == [3] * 5 and b.tolist() == [True] * 3
