"""Neuron-tree FFF (UltraFastBERT, SPEC §2): reference against a naive oracle, hand-derived gradients
against float64 central differences, the layer protocol, and awkward inputs."""
import warnings

import numpy as np
import pytest

from fffcpu import activations
from fffcpu.neuron_tree import NeuronTreeFFF
from fffcpu.reference import neuron_tree as ref

from . import naive
from .gradcheck import grad_check

ACTS = sorted(activations.ACTIVATIONS)
SIZES = [(0, 1), (1, 1), (4, 1), (0, 3), (1, 3), (4, 3)]  # (depth, parallel_size)


def make_params(D, O, depth, P, seed, dtype=np.float64, scale=1.0):
    rng = np.random.default_rng(seed)
    params = ref.init_params(D, O, depth, P, rng, dtype)
    params["linear_in.weight"] *= scale
    return params


def naive_forward(params, x, depth, P, activation):
    """The shared per-sample oracle of tests/naive.py (SPEC §2 word for word): y (n, O)."""
    return naive.neuron_tree(params["linear_in.weight"], params["linear_in.bias"], params["linear_out.weight"],
                             depth, P, x, activation)[0]


# ---------------------------------------------------------------------------------------------
# forward: naive oracle == conditional reference == masked training forward
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth,P", SIZES)
@pytest.mark.parametrize("activation", ACTS)
def test_conditional_and_masked_forward_match_naive(depth, P, activation):
    D, O, n = 5, 3, 9
    params = make_params(D, O, depth, P, seed=depth * 10 + P)
    x = np.random.default_rng(1).normal(size=(n, D))
    want = naive_forward(params, x, depth, P, activation)
    np.testing.assert_allclose(ref.hard_forward(params, x, depth, P, activation), want, rtol=1e-12, atol=1e-12)
    y, cache = ref.masked_forward(params, x, depth, P, activation)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    # the mask keeps exactly depth + 1 neurons per tree, and they are the conditional path
    assert cache["mask"].sum(axis=1).tolist() == [P * (depth + 1)] * n
    rows, _ = ref.hard_path(params, x, depth, P)
    np.testing.assert_array_equal(rows, naive.neuron_tree(params["linear_in.weight"], params["linear_in.bias"],
                                                          params["linear_out.weight"], depth, P, x, activation)[1])
    expect = np.zeros_like(cache["mask"])
    np.put_along_axis(expect, rows.reshape(n, -1), 1.0, axis=1)
    np.testing.assert_array_equal(cache["mask"], expect)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_layer_train_forward_equals_inference(dtype):
    layer = NeuronTreeFFF(6, 4, depth=3, parallel_size=2, seed=3, dtype=dtype, backend="numpy")
    x = np.random.default_rng(0).normal(size=(2, 5, 6))
    y_hard = layer(x)
    y_train, _ = layer.train_forward(x)
    assert y_hard.shape == y_train.shape == (2, 5, 4)
    assert y_hard.dtype == y_train.dtype == np.dtype(dtype)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(y_train, y_hard, rtol=tol, atol=tol)


def test_depth_zero_is_one_neuron_per_tree():
    D, O, P = 4, 3, 3
    params = make_params(D, O, 0, P, seed=5)
    x = np.random.default_rng(2).normal(size=(6, D))
    a = x @ params["linear_in.weight"].T + params["linear_in.bias"]  # (n, P): one neuron per tree
    want = activations.gelu(a) @ params["linear_out.weight"].T
    np.testing.assert_allclose(ref.hard_forward(params, x, 0, P), want, rtol=1e-12)
    np.testing.assert_allclose(ref.masked_forward(params, x, 0, P)[0], want, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# ties: a == 0 exactly goes left (SPEC §2), in every forward
# ---------------------------------------------------------------------------------------------
def tie_params(D=3, O=2, depth=2, P=2):
    params = make_params(D, O, depth, P, seed=11)
    N = 2 ** (depth + 1) - 1
    for t in range(P):  # the root of every tree has a == 0 for every x
        params["linear_in.weight"][t * N] = 0
        params["linear_in.bias"][t * N] = 0
    return params


def test_tie_goes_left():
    depth, P = 2, 2
    params = tie_params(depth=depth, P=P)
    x = np.random.default_rng(4).normal(size=(8, 3))
    rows, a = ref.hard_path(params, x, depth, P)
    assert np.all(a[:, :, 0] == 0)
    np.testing.assert_array_equal(rows[:, :, 1] % 7, 1)  # left child of the root
    mask = ref.masked_forward(params, x, depth, P)[1]["mask"]
    assert np.all(mask[:, [1, 8]] == 1) and np.all(mask[:, [2, 9]] == 0)
    np.testing.assert_allclose(ref.hard_forward(params, x, depth, P), naive_forward(params, x, depth, P, "gelu"),
                               rtol=1e-12, atol=1e-12)
    # a bias just above 0 sends every sample right instead
    params["linear_in.bias"][[0, 7]] = 1e-300
    rows, _ = ref.hard_path(params, x, depth, P)
    np.testing.assert_array_equal(rows[:, :, 1] % 7, 2)


def test_tie_goes_left_in_layer():
    layer = NeuronTreeFFF(3, 2, depth=2, parallel_size=2, dtype="float64", backend="numpy")
    layer.load_state_dict(tie_params())
    x = np.random.default_rng(4).normal(size=(8, 3))
    np.testing.assert_array_equal(layer.path(x)[:, :, 1], 1)
    assert np.all(layer.leaf_index(x) <= 1)  # leaves 0, 1 lie below the left child


# ---------------------------------------------------------------------------------------------
# gradients: float64 central differences of the conditional forward
# ---------------------------------------------------------------------------------------------
def check_gradients(D, O, depth, P, activation, n=4, seed=0):
    """Hand-derived gradients of the masked forward against central differences of the conditional one."""
    rng = np.random.default_rng(seed)
    params = make_params(D, O, depth, P, seed=seed + 1, scale=3.0)  # larger logits: further from ties
    x = rng.normal(size=(n, D))
    G = rng.normal(size=(n, O))  # L = sum(G * y), so dL/dy = G
    rows0, _ = ref.hard_path(params, x, depth, P)

    def loss():
        rows, _ = ref.hard_path(params, x, depth, P)
        np.testing.assert_array_equal(rows, rows0, err_msg="a perturbation changed a path")
        return float(np.sum(G * ref.hard_forward(params, x, depth, P, activation)))

    _, cache = ref.masked_forward(params, x, depth, P, activation)
    grads, dL_dx = ref.masked_backward(params, cache, G)
    assert all(grads[k].shape == params[k].shape for k in ref.PARAM_NAMES)
    report = grad_check(loss, dict(params, x=x), dict(grads, x=dL_dx), tol=1e-6, eps=1e-6)
    assert set(report) == {*ref.PARAM_NAMES, "x"}
    for name, (worst, mean) in report.items():
        assert mean < 1e-7, f"gradient of {name}: mean relative error {mean:.2e}"
    return grads, rows0


@pytest.mark.parametrize("depth,P", SIZES)
def test_gradients_finite_differences(depth, P):
    check_gradients(D=3, O=2, depth=depth, P=P, activation="gelu", seed=depth + 7 * P)


@pytest.mark.parametrize("activation", ACTS)
def test_gradients_finite_differences_every_activation(activation):
    check_gradients(D=3, O=2, depth=2, P=2, activation=activation, seed=42)


def test_gradients_only_on_path():
    D, O, depth, P = 4, 3, 3, 2
    grads, rows = check_gradients(D, O, depth, P, "gelu", n=1, seed=9)
    on = np.zeros(P * (2 ** (depth + 1) - 1), dtype=bool)
    on[rows.ravel()] = True
    assert on.sum() == P * (depth + 1)
    for g in (grads["linear_in.weight"], grads["linear_in.bias"], grads["linear_out.weight"].T):
        assert np.all(g[~on] == 0)
        assert np.all(np.abs(g[on]).reshape(on.sum(), -1).max(axis=1) > 0)


def test_layer_backward_matches_reference_and_ignores_hardening():
    layer = NeuronTreeFFF(5, 3, depth=2, parallel_size=2, seed=1, dtype="float64", backend="numpy")
    x = np.random.default_rng(0).normal(size=(2, 3, 5))
    G = np.random.default_rng(1).normal(size=(2, 3, 3))
    y, cache = layer.train_forward(x)
    grads, dL_dx = layer.backward(cache, G)
    _, rcache = ref.masked_forward(layer.params, x.reshape(6, 5), 2, 2)
    rgrads, rdx = ref.masked_backward(layer.params, rcache, G.reshape(6, 3))
    assert dL_dx.shape == x.shape
    np.testing.assert_array_equal(dL_dx.reshape(6, 5), rdx)
    assert list(grads) == list(layer.params)
    for k in grads:
        assert grads[k].shape == layer.params[k].shape
        np.testing.assert_array_equal(grads[k], rgrads[k])
    grads_h, dL_dx_h = layer.backward(cache, G, hardening=3.0, balance=1.0)
    for k in grads:
        np.testing.assert_array_equal(grads_h[k], grads[k])
    np.testing.assert_array_equal(dL_dx_h, dL_dx)
    assert layer.hardening_loss(cache) == 0.0 and layer.balance_loss(cache) == 0.0


def test_float32_gradients_close_to_float64():
    l32 = NeuronTreeFFF(5, 3, depth=3, seed=2, dtype="float32", backend="numpy")
    l64 = NeuronTreeFFF.from_state_dict(l32.state_dict(), dtype="float64", backend="numpy")
    x = np.random.default_rng(0).normal(size=(7, 5))
    G = np.ones((7, 3))
    g32, dx32 = l32.backward(l32.train_forward(x)[1], G)
    g64, dx64 = l64.backward(l64.train_forward(x)[1], G)
    assert dx32.dtype == np.float32 and all(g.dtype == np.float32 for g in g32.values())
    for k in g32:
        np.testing.assert_allclose(g32[k], g64[k], rtol=1e-4, atol=1e-5)


def test_sgd_step_reduces_loss():
    layer = NeuronTreeFFF(4, 2, depth=2, seed=0, dtype="float64", backend="numpy")
    rng = np.random.default_rng(0)
    x, target = rng.normal(size=(32, 4)), rng.normal(size=(32, 2))
    losses = []
    for _ in range(20):
        y, cache = layer.train_forward(x)
        losses.append(0.5 * np.mean(np.sum((y - target) ** 2, axis=1)))
        grads, _ = layer.backward(cache, (y - target) / len(x))
        for k, g in grads.items():
            layer.params[k] -= 0.1 * g
    assert losses[-1] < losses[0]


# ---------------------------------------------------------------------------------------------
# awkward inputs
# ---------------------------------------------------------------------------------------------
def test_one_sample_and_leading_dims():
    layer = NeuronTreeFFF(4, 3, depth=2, parallel_size=2, seed=0, backend="numpy")
    x = np.random.default_rng(0).normal(size=(2, 3, 4))
    y = layer(x)
    assert y.shape == (2, 3, 3)
    np.testing.assert_array_equal(layer(x[1, 2]), y[1, 2])  # (D,) -> (O,)
    np.testing.assert_array_equal(y.reshape(6, 3), layer(x.reshape(6, 4)))
    y1, cache = layer.train_forward(x[0, 0])
    grads, dx = layer.backward(cache, np.ones(3))
    assert y1.shape == (3,) and dx.shape == (4,)
    assert layer.path(x).shape == (2, 3, 2, 3) and layer.leaf_index(x).shape == (2, 3, 2)


def test_empty_batch():
    layer = NeuronTreeFFF(4, 3, depth=2, parallel_size=2, seed=0, backend="numpy")
    for shape in [(0, 4), (2, 0, 4)]:
        x = np.zeros(shape)
        assert layer(x).shape == shape[:-1] + (3,)
        y, cache = layer.train_forward(x)
        grads, dx = layer.backward(cache, y)
        assert dx.shape == shape
        assert all(not g.any() and g.shape == layer.params[k].shape for k, g in grads.items())
    u = layer.usage(np.zeros((0, 4)))
    assert u["hard_node"].shape == (14,) and not u["hard_node"].any()
    assert u["hard_leaf"].shape == (2, 4)


def test_non_contiguous_and_integer_input():
    layer = NeuronTreeFFF(4, 3, depth=3, seed=0, dtype="float64", backend="numpy")
    wide = np.random.default_rng(0).normal(size=(5, 8))
    x = wide[:, ::2]
    assert not x.flags.c_contiguous
    np.testing.assert_array_equal(layer(x), layer(np.ascontiguousarray(x)))
    np.testing.assert_array_equal(layer(np.asfortranarray(x)), layer(np.ascontiguousarray(x)))
    xi = np.arange(12).reshape(3, 4)
    np.testing.assert_array_equal(layer(xi), layer(xi.astype(float)))


def test_usage_counts():
    depth, P, n = 3, 2, 50
    layer = NeuronTreeFFF(4, 3, depth=depth, parallel_size=P, seed=0, backend="numpy")
    x = np.random.default_rng(0).normal(size=(n, 4))
    u = layer.usage(x)
    N = 15
    node = u["hard_node"].reshape(P, N)
    np.testing.assert_array_equal(node[:, 0], n)
    for k in range(7):  # every sample at node k goes on to exactly one child
        np.testing.assert_array_equal(node[:, k], node[:, 2 * k + 1] + node[:, 2 * k + 2])
    np.testing.assert_array_equal(u["hard_leaf"], node[:, 7:])
    leaf = layer.leaf_index(x)
    for t in range(P):
        np.testing.assert_array_equal(np.bincount(leaf[:, t], minlength=8), u["hard_leaf"][t])
    cache = layer.train_forward(x)[1]
    np.testing.assert_array_equal(layer.block_usage(cache)["linear_in.weight"], u["hard_node"])
    np.testing.assert_array_equal(layer.block_usage(cache)["linear_out.weight"], [n] * 3)  # every sample


@pytest.mark.parametrize("kwargs,err,words", [
    (dict(input_width=0), ValueError, "input_width"),
    (dict(output_width=2.5), TypeError, "output_width"),
    (dict(depth=-1), ValueError, "depth"),
    (dict(depth=True), TypeError, "depth"),
    (dict(parallel_size=0), ValueError, "parallel_size"),
    (dict(activation="swish"), ValueError, "activation"),
    (dict(dtype="int8"), ValueError, "dtype"),
    (dict(backend="torch"), ValueError, "backend"),
    (dict(backend=None), ValueError, "backend"),
    (dict(dtype="floaty"), ValueError, "dtype must be 'float32' or 'float64'"),
    (dict(depth=61), MemoryError, "depth"),
    (dict(depth=45), MemoryError, "GiB"),
])
def test_bad_constructor_arguments(kwargs, err, words):
    args = dict(input_width=3, output_width=2, depth=1, backend="numpy")
    args.update(kwargs)
    with pytest.raises(err, match=words):
        NeuronTreeFFF(**args)


def test_bad_call_arguments():
    layer = NeuronTreeFFF(4, 3, depth=1, seed=0, backend="numpy")
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\).*got shape \(2, 5\)"):
        layer(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="scalar"):
        layer(1.0)
    with pytest.raises(ValueError, match="finite"):
        layer(np.array([[0, 0, np.nan, 0]]))
    with pytest.raises(TypeError, match="real numbers"):
        layer(np.array([["a", "b", "c", "d"]]))
    with pytest.raises(TypeError, match=r"x must hold real numbers \(float or int\), got dtype bool"):
        layer(np.ones((2, 4), dtype=bool))
    with warnings.catch_warnings():  # one error, no overflow warning from the conversion before it
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="x must fit the layer's dtype float32"):
            layer(np.full((1, 4), 1e300))
    y, cache = layer.train_forward(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="dL_dy"):
        layer.backward(cache, np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"dL_dy must have the forward output's shape .* got shape \(3, 2\)"):
        layer.backward(cache, np.zeros((3, 2)))  # as many numbers as (2, 3): it was reshaped silently
    with pytest.raises(TypeError, match="dL_dy must hold real numbers, got dtype bool"):
        layer.backward(cache, np.ones((2, 3), dtype=bool))
    with pytest.raises(TypeError, match="hardening must be a real number, got True"):
        layer.backward(cache, y, hardening=True)
    with pytest.raises(ValueError, match="hardening"):
        layer.backward(cache, y, hardening=-1.0)
    with pytest.raises(TypeError, match="balance"):
        layer.backward(cache, y, balance="1")


# ---------------------------------------------------------------------------------------------
# parameters: init, state_dict, from_state_dict, in-place updates
# ---------------------------------------------------------------------------------------------
def test_init_shapes_bounds_and_seed():
    layer = NeuronTreeFFF(16, 5, depth=3, parallel_size=2, seed=7)
    shapes = {k: v.shape for k, v in layer.params.items()}
    assert shapes == {"linear_in.weight": (30, 16), "linear_in.bias": (30,), "linear_out.weight": (5, 30)}
    assert layer.kind == "neuron_tree" and layer.n_params == 30 * (16 + 1 + 5)
    assert layer.training_width == 30 and layer.inference_width == 8
    assert np.abs(layer.params["linear_in.weight"]).max() <= 1 / 4
    assert np.abs(layer.params["linear_in.weight"]).max() > 0.2  # the bound is 1/sqrt(D), not 1/D
    assert np.abs(layer.params["linear_out.weight"]).max() <= 1 / np.sqrt(8)
    assert np.abs(layer.params["linear_out.weight"]).max() > 1 / 4  # its own, wider bound
    assert all(v.dtype == np.float32 for v in layer.params.values())
    same = NeuronTreeFFF(**layer.config())
    other = NeuronTreeFFF(16, 5, depth=3, parallel_size=2, seed=8)
    for k in layer.params:
        np.testing.assert_array_equal(same.params[k], layer.params[k])
        assert not np.array_equal(other.params[k], layer.params[k])


def test_linear_out_is_a_view_of_the_kernel_layout():
    layer = NeuronTreeFFF(4, 3, depth=2, seed=0, backend="numpy")
    w = layer.params["linear_out.weight"]
    assert layer._w_out_t.flags.c_contiguous and layer._w_out_t.shape == (7, 3)
    assert np.shares_memory(w, layer._w_out_t)
    y, cache = layer.train_forward(np.ones((2, 4)))
    grads, _ = layer.backward(cache, np.ones((2, 3)))
    before = layer._w_out_t.copy()
    layer.params["linear_out.weight"] -= 0.5 * grads["linear_out.weight"]  # an optimizer's in-place step
    np.testing.assert_array_equal(layer._w_out_t, (before.T - 0.5 * grads["linear_out.weight"]).T)
    assert not np.array_equal(layer._w_out_t, before)
    sd = layer.state_dict()
    sd["linear_out.weight"] = np.arange(21, dtype=np.float32).reshape(3, 7)
    layer.load_state_dict(sd)
    np.testing.assert_array_equal(layer._w_out_t, sd["linear_out.weight"].T)
    w_in, b_in, w_out_t = layer._kernel_arrays()
    assert np.shares_memory(w_out_t, layer._w_out_t) and w_out_t.flags.c_contiguous
    assert np.shares_memory(w_in, layer.params["linear_in.weight"])
    # assigning to a name copies into the same storage, after the shape check that kept the kernels
    # from reading past the end of a smaller array
    layer.params["linear_out.weight"] = np.full((3, 7), 2.0)
    assert layer.params["linear_out.weight"] is w and (layer._w_out_t == 2).all()
    with pytest.raises(ValueError, match=r"'linear_in.weight' must have shape \(7, 4\), got \(3, 4\)"):
        layer.params["linear_in.weight"] = np.ones((3, 4))


def test_state_dict_round_trip():
    layer = NeuronTreeFFF(4, 3, depth=2, parallel_size=3, activation="relu", seed=0, dtype="float64",
                          backend="numpy")
    sd = layer.state_dict()
    assert list(sd) == ["linear_in.weight", "linear_in.bias", "linear_out.weight"]
    assert all(v.flags.c_contiguous for v in sd.values())
    sd["linear_in.bias"][:] = 99  # a copy, not the layer's memory
    assert not np.any(layer.params["linear_in.bias"] == 99)
    sd = layer.state_dict()
    x = np.random.default_rng(0).normal(size=(5, 4))
    for config in [layer.config(), dict(parallel_size=3, activation="relu", backend="numpy"),
                   dict(depth=2, activation="relu", backend="numpy")]:
        again = NeuronTreeFFF.from_state_dict(sd, **config)
        assert again.config()["parallel_size"] == 3 and again.depth == 2 and again.dtype == np.float64
        np.testing.assert_array_equal(again(x), layer(x))
        for k in sd:
            np.testing.assert_array_equal(again.params[k], sd[k])


class FakeTensor:
    """Duck-typed like a torch tensor: .detach().cpu().numpy()."""

    def __init__(self, arr):
        self.arr = arr

    def detach(self):
        return self

    def cpu(self):
        return self

    def numpy(self):
        return self.arr


def test_from_state_dict_torch_like_ultrafastbert_mapping():
    D, O, depth = 6, 4, 3
    params = make_params(D, O, depth, 1, seed=3, dtype=np.float32)
    mapping = {k: FakeTensor(v) for k, v in params.items()}
    layer = NeuronTreeFFF.from_state_dict(mapping, backend="numpy")
    assert (layer.depth, layer.parallel_size, layer.input_width, layer.output_width) == (depth, 1, D, O)
    assert layer.dtype == np.float32 and layer.activation == "gelu"
    x = np.random.default_rng(0).normal(size=(4, D)).astype(np.float32)
    np.testing.assert_allclose(layer(x), naive_forward(params, x, depth, 1, "gelu"), rtol=1e-5, atol=1e-6)


def test_from_state_dict_errors():
    sd = NeuronTreeFFF(4, 3, depth=1, parallel_size=3, seed=0).state_dict()  # 9 rows
    with pytest.raises(ValueError) as info:
        NeuronTreeFFF.from_state_dict(sd)
    assert str(info.value) == ("'linear_in.weight' has 9 rows, which is not parallel_size 1 times 2^(depth+1) - 1 "
                               "for any depth; the rows fit parallel_size 3 at depth 1, parallel_size 9 at depth 0: "
                               "pass parallel_size (or depth) to from_state_dict or fffcpu.interop.load_any (fffcpu "
                               "convert: --parallel-size)")
    rows = 3 * 5 * 7 * 31  # 2^(d+1) - 1 divides it for d = 0 .. 4: the four deepest are listed
    wide = {"linear_in.weight": np.zeros((rows, 1)), "linear_in.bias": np.zeros(rows),
            "linear_out.weight": np.zeros((1, rows))}
    with pytest.raises(ValueError, match=r"the rows fit parallel_size 105 at depth 4, parallel_size 217 at depth 3, "
                                         r"parallel_size 465 at depth 2, parallel_size 1085 at depth 1, \.\.\.: pass"):
        NeuronTreeFFF.from_state_dict(wide)
    with pytest.raises(ValueError, match="parallel_size 2") as info:
        NeuronTreeFFF.from_state_dict(sd, parallel_size=2)
    assert "fit" not in str(info.value)  # the hint is for a parallel_size not given
    rows = 3 * 5 * 7  # exactly four fits (d = 0 .. 3): all listed, no "..."
    four = {"linear_in.weight": np.zeros((rows, 1)), "linear_in.bias": np.zeros(rows),
            "linear_out.weight": np.zeros((1, rows))}
    with pytest.raises(ValueError, match=r"the rows fit parallel_size 7 at depth 3, parallel_size 15 at depth 2, "
                                         r"parallel_size 35 at depth 1, parallel_size 105 at depth 0: pass"):
        NeuronTreeFFF.from_state_dict(four)
    empty = {"linear_in.weight": np.zeros((0, 1)), "linear_in.bias": np.zeros(0), "linear_out.weight": np.zeros((1, 0))}
    with pytest.raises(ValueError) as info:
        NeuronTreeFFF.from_state_dict(empty)
    assert str(info.value) == ("'linear_in.weight' has 0 rows, which is not parallel_size 1 times 2^(depth+1) - 1 "
                               "for any depth")
    with pytest.raises(ValueError, match="multiple of 7"):
        NeuronTreeFFF.from_state_dict(sd, depth=2)
    with pytest.raises(ValueError, match="parallel_size 1 trees of depth 1"):
        NeuronTreeFFF.from_state_dict(sd, depth=1, parallel_size=1)
    with pytest.raises(ValueError, match="input_width given as 5"):
        NeuronTreeFFF.from_state_dict(sd, parallel_size=3, input_width=5)
    with pytest.raises(KeyError, match="linear_out.weight"):
        NeuronTreeFFF.from_state_dict({"linear_in.weight": sd["linear_in.weight"]})
    bad = dict(sd, **{"linear_out.weight": sd["linear_out.weight"][:, :8]})
    with pytest.raises(ValueError, match="one column per row"):
        NeuronTreeFFF.from_state_dict(bad, parallel_size=3)
    bad = dict(sd, **{"linear_in.bias": sd["linear_in.bias"][:8]})
    with pytest.raises(ValueError, match="linear_in.bias"):
        NeuronTreeFFF.from_state_dict(bad, parallel_size=3)
    empty = {"linear_in.weight": np.zeros((0, 4)), "linear_in.bias": np.zeros(0), "linear_out.weight": np.zeros((3, 0))}
    for hint in ({}, {"depth": 1}):
        with pytest.raises(ValueError, match="'linear_in.weight' has 0 rows"):
            NeuronTreeFFF.from_state_dict(empty, **hint)
    with pytest.raises(ValueError, match="depth must be <= 60, got 61"):
        NeuronTreeFFF.from_state_dict(sd, depth=61)
    layer = NeuronTreeFFF(4, 3, depth=1, parallel_size=3)
    with pytest.raises(ValueError, match="finite"):
        layer.load_state_dict(dict(sd, **{"linear_in.bias": np.full(9, np.inf)}))


# ---------------------------------------------------------------------------------------------
# kernels (fffcpu._kernel_api) against the reference
# ---------------------------------------------------------------------------------------------
def require_kernel_api():
    # the kernels ship with fffcpu: a failed import or a missing entry point is a failure, not a skip
    from fffcpu import _kernel_api
    assert hasattr(_kernel_api, "neuron_tree_forward")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", ["auto", "numba"])
def test_kernel_backend_matches_reference(dtype, backend):
    require_kernel_api()
    x = np.random.default_rng(0).normal(size=(2, 9, 5))
    for depth, P in [(0, 1), (3, 2)]:
        layer = NeuronTreeFFF(5, 3, depth=depth, parallel_size=P, seed=1, dtype=dtype, backend=backend)
        ref_layer = NeuronTreeFFF.from_state_dict(layer.state_dict(), **dict(layer.config(), backend="numpy"))
        tol = 1e-5 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(layer(x), ref_layer(x), rtol=tol, atol=tol)
        assert layer(x[0, 0]).shape == (3,) and layer(np.zeros((0, 5))).shape == (0, 3)
        layer.params["linear_out.weight"] *= 2  # in-place updates reach the kernel layout
        np.testing.assert_allclose(layer(x), 2 * ref_layer(x), rtol=tol, atol=tol)
    layer = NeuronTreeFFF(3, 2, depth=2, parallel_size=2, dtype=dtype, backend=backend)
    layer.load_state_dict(tie_params())
    xt = np.random.default_rng(4).normal(size=(8, 3))
    ref_layer = NeuronTreeFFF.from_state_dict(layer.state_dict(), **dict(layer.config(), backend="numpy"))
    np.testing.assert_allclose(layer(xt), ref_layer(xt), rtol=1e-5, atol=1e-6)


def test_sizes_are_fixed_and_activation_checked_when_set():
    layer = NeuronTreeFFF(4, 3, 2, parallel_size=2, seed=0)
    with pytest.raises(AttributeError, match=r"parallel_size is fixed at construction \(this layer's is 2, got 3\)"):
        layer.parallel_size = 3
    for bad in ("swish", ["relu"]):  # an unhashable value too
        with pytest.raises(ValueError, match="activation must be one of"):
            layer.activation = bad
    layer.activation = "relu"
    assert layer.parallel_size == 2 and layer.activation == "relu"


@pytest.mark.parametrize("activation", ACTS)
def test_activations_and_derivatives_keep_float32(activation):
    f, df = activations.get(activation)
    z = np.linspace(-2, 2, 5, dtype=np.float32)
    fz = f(z)
    assert fz.dtype == np.float32 and df(z, fz).dtype == np.float32


def test_memory_check_counts_every_parameter(monkeypatch):
    from fffcpu import _validate
    need = NeuronTreeFFF(3, 2, depth=1, parallel_size=2, backend="numpy").n_params * 4  # float32 bytes
    monkeypatch.setattr(_validate, "physical_memory_bytes", lambda: need)
    NeuronTreeFFF(3, 2, depth=1, parallel_size=2, backend="numpy")  # fits exactly
    monkeypatch.setattr(_validate, "physical_memory_bytes", lambda: need - 1)
    with pytest.raises(MemoryError, match="a neuron-tree FFF of depth 1 with 2 tree"):
        NeuronTreeFFF(3, 2, depth=1, parallel_size=2, backend="numpy")


def test_load_state_dict_checks_values_at_the_dtype_boundary():
    layer = NeuronTreeFFF(4, 3, depth=1, seed=0, backend="numpy")  # float32
    sd = {k: v.astype(np.float64) for k, v in layer.state_dict().items()}
    top = float(np.finfo(np.float32).max)
    sd["linear_in.bias"][0] = top  # the largest float32 fits
    layer.load_state_dict(sd)
    assert layer.params["linear_in.bias"][0] == np.float32(top)
    sd["linear_in.bias"][0] = 2 * top
    with pytest.raises(ValueError, match="'linear_in.bias' must fit the layer's dtype float32"):
        layer.load_state_dict(sd)
    with pytest.raises(TypeError, match="'linear_in.bias' must hold real numbers, got dtype bool"):
        layer.load_state_dict(dict(sd, **{"linear_in.bias": np.ones(3, dtype=bool)}))


def test_assigned_params_mapping_is_converted_and_followed_by_the_kernels():
    layer = NeuronTreeFFF(5, 3, depth=3, parallel_size=2, seed=1)  # float32, kernels
    x = np.random.default_rng(0).normal(size=(9, 5)).astype(np.float32)
    tol = dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer(x), ref.hard_forward(layer.params, x, 3, 2), **tol)
    # a mapping that keeps the layer's own linear_in.weight and linear_out.weight and brings a new bias
    layer.params = dict(layer.params, **{"linear_in.bias": layer.params["linear_in.bias"] + 1})
    np.testing.assert_allclose(layer(x), ref.hard_forward(layer.params, x, 3, 2), **tol)
    # a whole new mapping, float64: converted; its linear_out.weight is not the kernel layout
    layer.params = NeuronTreeFFF(5, 3, depth=3, parallel_size=2, seed=2, dtype="float64").state_dict()
    assert all(p.dtype == np.float32 for p in layer.params.values())  # converted to the layer's dtype
    # and linear_out.weight to the kernel layout: kept as given, every call copied its transpose
    # and bound a new one-sample function
    assert layer.params["linear_out.weight"].T.flags.c_contiguous
    want = ref.hard_forward(layer.params, x, 3, 2)
    np.testing.assert_allclose(layer(x), want, **tol)
    layer(x[0])
    assert layer.__dict__.get("_one_sample_fn") is not None
    layer.params["linear_out.weight"] *= 2  # in place, as an optimizer's step: the kernels see it
    np.testing.assert_allclose(layer(x), 2 * want, **tol)
    np.testing.assert_allclose(layer(x[0]), 2 * want[0], **tol)


def test_linear_in_bias_follows_the_spec_init_bound():
    """SPEC §2: linear_in.bias ~ U(-1/sqrt(D), 1/sqrt(D)), like linear_in.weight. Drawn with
    linear_out.weight's bound 1/sqrt((d+1) P) it passed (a SPEC audit). D = 64: 1/8, against 1/sqrt(14)."""
    layer = NeuronTreeFFF(64, 5, depth=6, parallel_size=2, seed=0, dtype="float64")
    v = layer.params["linear_in.bias"]
    assert v.size == 254 and 0.9 / 8 < np.abs(v).max() <= 1 / 8
    assert abs(v.std() / (1 / 8 / np.sqrt(3)) - 1) < 0.15
