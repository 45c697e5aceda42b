"""The leaf FFF reference: gradients, forward identities, validation."""
import re

import numpy as np
import pytest

import fffcpu
from fffcpu import FFF
from fffcpu.neuron_tree import NeuronTreeFFF
from fffcpu.reference import leaf as ref

from .gradcheck import grad_check

ACTS = ["relu", "gelu", "tanh", "sigmoid", "identity"]


def _loss_and_grads(layer, x, G, h, alpha, seed):
    """L = <y, G> + h L_harden + alpha L_balance with the training randomness fixed by ``seed``."""

    def loss():
        y, cache = layer.train_forward(x, rng=np.random.default_rng(seed))
        return float((y * G).sum() + h * layer.hardening_loss(cache) + alpha * layer.balance_loss(cache))

    y, cache = layer.train_forward(x, rng=np.random.default_rng(seed))
    grads, dx = layer.backward(cache, G, hardening=h, balance=alpha)
    return loss, grads, dx


@pytest.mark.parametrize("depth,leaf_width,act", [
    (0, 3, "relu"), (1, 2, "gelu"), (2, 2, "relu"), (3, 2, "tanh"), (3, 1, "sigmoid"), (4, 1, "gelu"),
    (5, 1, "identity"), (1, 4, "relu"), (3, 3, "gelu"),
])
@pytest.mark.parametrize("options", [
    dict(),
    dict(region_leak=0.3, dropout=0.25),
])
def test_gradients_match_finite_differences(depth, leaf_width, act, options):
    rng = np.random.default_rng(depth * 10 + leaf_width)
    layer = FFF(4, leaf_width, 3, depth, activation=act, seed=1, dtype="float64", **options)
    x = rng.normal(size=(6, 4))
    G = rng.normal(size=(6, 3))
    loss, grads, dx = _loss_and_grads(layer, x, G, h=0.7, alpha=0.4, seed=3)
    grad_check(loss, layer.params, grads, tol=1e-6)
    grad_check(loss, {"x": x}, {"x": dx}, tol=1e-6)


@pytest.mark.parametrize("act", ACTS)
def test_every_activation_gradient_depth3(act):
    rng = np.random.default_rng(7)
    layer = FFF(3, 2, 2, 3, activation=act, seed=2, dtype="float64")
    x, G = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    loss, grads, dx = _loss_and_grads(layer, x, G, h=1.3, alpha=0.0, seed=0)
    grad_check(loss, dict(layer.params, x=x), dict(grads, x=dx), tol=1e-6)


def test_hardened_training_gives_routing_only_the_hardening_gradient():
    rng = np.random.default_rng(0)
    layer = FFF(4, 2, 3, 3, train_hardened=True, seed=0, dtype="float64")
    x, G = rng.normal(size=(8, 4)), rng.normal(size=(8, 3))
    loss, grads, dx = _loss_and_grads(layer, x, G, h=0.5, alpha=0.0, seed=0)
    grad_check(loss, layer.params, grads)
    _, c = layer.train_forward(x)
    g0, _ = layer.backward(c, G, hardening=0.0)
    assert not g0["node_weights"].any() and not g0["node_biases"].any()
    assert grads["node_weights"].any()  # the hardening term still reaches the routing


def test_gradient_check_can_fail():
    """The checker itself must catch a wrong gradient."""
    rng = np.random.default_rng(0)
    layer = FFF(3, 2, 2, 2, seed=0, dtype="float64")
    x, G = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    loss, grads, _ = _loss_and_grads(layer, x, G, h=0.0, alpha=0.0, seed=0)
    grads["w1s"] = grads["w1s"] * 1.001
    with pytest.raises(AssertionError, match="w1s"):
        grad_check(loss, layer.params, grads)


@pytest.mark.parametrize("depth", [0, 1, 4])
def test_hard_forward_equals_soft_forward_with_rounded_decisions(depth):
    rng = np.random.default_rng(depth)
    layer = FFF(5, 3, 4, depth, seed=depth, dtype="float64", backend="numpy")
    x = rng.normal(size=(40, 5))
    soft_rounded, _ = ref.soft_forward(layer.params, x, "relu", hardened=True)
    np.testing.assert_allclose(layer(x), soft_rounded, rtol=1e-12, atol=1e-12)


def test_hard_inference_uses_the_tie_rule_and_b2s():
    layer = FFF(2, 1, 1, 1, activation="identity", dtype="float64", backend="numpy", seed=0)
    layer.params["node_weights"][:] = [[1.0, 0.0]]
    layer.params["node_biases"][:] = 0.0
    layer.params["w1s"][:] = [[[1.0], [0.0]], [[2.0], [0.0]]]
    layer.params["b1s"][:] = 0.0
    layer.params["w2s"][:] = 1.0
    layer.params["b2s"][:] = [[10.0], [20.0]]
    # a = 0 exactly goes right: leaf 1, y = 2*0 + 20
    assert layer([[0.0, 5.0]])[0, 0] == 20.0
    assert layer([[-1.0, 5.0]])[0, 0] == -1.0 + 10.0
    assert layer.leaf_index([[0.0, 1.0], [-1e-300, 1.0]]).tolist() == [1, 0]


def test_depth_zero_is_a_plain_feedforward_network():
    rng = np.random.default_rng(1)
    layer = FFF(6, 5, 2, 0, activation="gelu", seed=4, dtype="float64", backend="numpy")
    p = layer.params
    x = rng.normal(size=(9, 6))
    from fffcpu.activations import gelu
    dense = gelu(x @ p["w1s"][0] + p["b1s"][0]) @ p["w2s"][0] + p["b2s"][0]
    np.testing.assert_allclose(layer(x), dense, rtol=1e-12)
    np.testing.assert_allclose(layer.soft_forward(x), dense, rtol=1e-12)
    assert layer.usage(x)["hard_leaf"].tolist() == [9]


def test_leaf_weights_sum_to_one_and_usage_is_consistent():
    rng = np.random.default_rng(2)
    layer = FFF(4, 2, 3, 3, seed=0, dtype="float64")
    x = rng.normal(size=(50, 4))
    _, cache = layer.train_forward(x)
    np.testing.assert_allclose(cache["R"][-1].sum(axis=1), 1.0, rtol=1e-12)
    u = layer.usage(x)
    assert u["hard_leaf"].sum() == 50 and u["hard_node"][0] == 50
    assert u["hard_node"][1] + u["hard_node"][2] == 50
    np.testing.assert_allclose(u["soft_leaf"].sum(), 50.0)
    np.testing.assert_allclose(u["soft_node"][0], 50.0)
    np.testing.assert_allclose(u["soft_node"][1] + u["soft_node"][2], 50.0)
    assert np.bincount(layer.leaf_index(x), minlength=8).tolist() == u["hard_leaf"].tolist()


def test_entropies_match_definition():
    rng = np.random.default_rng(3)
    layer = FFF(3, 2, 2, 2, seed=0, dtype="float64")
    x = rng.normal(size=(2, 4, 3))
    H = layer.entropies(x)
    assert H.shape == (2, 4, 3)
    a = x.reshape(-1, 3) @ layer.params["node_weights"].T + layer.params["node_biases"][:, 0]
    p = 1 / (1 + np.exp(-a))
    np.testing.assert_allclose(H.reshape(-1, 3), -p * np.log(p) - (1 - p) * np.log(1 - p), rtol=1e-12)
    _, cache = layer.train_forward(x)
    assert layer.hardening_loss(cache) == pytest.approx(H.mean(), rel=1e-12)


def test_region_leak_and_dropout_are_seeded_and_training_only():
    rng = np.random.default_rng(0)
    layer = FFF(4, 3, 2, 3, region_leak=0.5, dropout=0.5, seed=0, dtype="float64")
    x = rng.normal(size=(10, 4))
    y1, _ = layer.train_forward(x, rng=np.random.default_rng(1))
    y2, _ = layer.train_forward(x, rng=np.random.default_rng(1))
    y3, _ = layer.train_forward(x, rng=np.random.default_rng(2))
    np.testing.assert_array_equal(y1, y2)
    assert not np.allclose(y1, y3)
    clean = FFF.from_state_dict(layer.state_dict(), dtype="float64")
    np.testing.assert_array_equal(layer.soft_forward(x), clean.soft_forward(x))
    np.testing.assert_array_equal(layer(x), clean(x))


def test_leading_dimensions_and_empty_batch():
    layer = FFF(3, 2, 4, 2, seed=0, backend="numpy")
    x = np.random.default_rng(0).normal(size=(2, 3, 3)).astype(np.float32)
    assert layer(x).shape == (2, 3, 4)
    np.testing.assert_allclose(layer(x).reshape(6, 4), layer(x.reshape(6, 3)))
    assert layer(x[0, 0]).shape == (4,)
    assert layer(np.zeros((0, 3))).shape == (0, 4)
    y, cache = layer.train_forward(np.zeros((0, 3)))
    grads, dx = layer.backward(cache, np.zeros((0, 4)), hardening=1.0, balance=1.0)
    assert y.shape == (0, 4) and dx.shape == (0, 3) and not grads["w1s"].any()
    assert layer.hardening_loss(cache) == 0.0 and layer.balance_loss(cache) == 0.0


def test_parameters_follow_the_spec_layout_and_init():
    layer = FFF(16, 4, 3, 3, seed=0)
    shapes = {k: v.shape for k, v in layer.params.items()}
    assert list(shapes) == ["node_weights", "node_biases", "w1s", "b1s", "w2s", "b2s"]
    assert shapes == {"node_weights": (7, 16), "node_biases": (7, 1), "w1s": (8, 16, 4),
                      "b1s": (8, 4), "w2s": (8, 4, 3), "b2s": (8, 3)}
    assert all(v.dtype == np.float32 for v in layer.params.values())
    assert np.abs(layer.params["w1s"]).max() <= 1 / 4 and np.abs(layer.params["w2s"]).max() <= 1 / 2
    assert np.abs(layer.params["w2s"]).max() > 1 / 4  # the leaf-width bound, not the input bound
    assert FFF(16, 4, 3, 3, seed=0, dtype="float64").params["w1s"].dtype == np.float64
    assert layer.training_width == 32 and layer.n_params == 7 * 17 + 8 * (64 + 4 + 12 + 3)


def test_state_dict_round_trip_and_torch_like_mapping():
    layer = FFF(5, 2, 3, 2, activation="tanh", seed=3)
    sd = layer.state_dict()
    sd["w1s"][...] = 0  # a copy: the layer is untouched
    assert layer.params["w1s"].any()
    again = FFF.from_state_dict(layer.state_dict(), activation="tanh")
    assert again.config()["depth"] == 2 and again.dtype == np.float32
    x = np.random.default_rng(0).normal(size=(7, 5))
    np.testing.assert_array_equal(again(x), layer(x))

    class FakeTensor:  # what a torch tensor offers, duck-typed
        def __init__(self, a):
            self.a = a

        def detach(self):
            return self

        def cpu(self):
            return self

        def numpy(self):
            return self.a

    wrapped = {k: FakeTensor(v.astype(np.float64)) for k, v in layer.state_dict().items()}
    assert FFF.from_state_dict(wrapped).dtype == np.float64


def test_a_state_dict_whose_w2s_disagrees_is_named():
    """The sizes come from w1s and w2s, so a wrong w2s was reported as "array 'b2s' must have shape
    (4, 5), got (4, 3)", blaming the right array."""
    sd = FFF(4, 4, 3, 2, seed=0).state_dict()
    for name, value, match in [
        ("w2s", np.zeros((4, 4, 5)), r"'w2s' of shape \(4, 4, 5\) and 'b2s' of shape \(4, 3\) disagree on the "
                                     r"output width \(5 against 3\)"),
        ("w2s", np.zeros((4, 3, 3)), r"'w2s' must have shape \(4, 4, output_width\) to match 'w1s' of shape "
                                     r"\(4, 4, 4\) \(n_leaves, input_width, leaf_width\), got \(4, 3, 3\)"),
    ]:
        with pytest.raises(ValueError, match=match):
            FFF.from_state_dict(dict(sd, **{name: value}))


@pytest.mark.parametrize("bad,error,match", [
    (dict(input_width=0), ValueError, "input_width must be an integer >= 1, got 0"),
    (dict(leaf_width=-2), ValueError, "leaf_width must be an integer >= 1, got -2"),
    (dict(output_width=2.5), TypeError, "output_width must be an integer"),
    (dict(depth=-1), ValueError, "depth must be an integer >= 0, got -1"),
    (dict(depth=40), MemoryError, "GiB"),
    (dict(activation="swish"), ValueError, "activation must be one of"),
    (dict(dropout=1.0), ValueError, r"dropout must be in \[0, 1\), got 1.0"),
    (dict(region_leak=-0.1), ValueError, "region_leak"),
    (dict(dtype="float16"), ValueError, "dtype must be 'float32' or 'float64', got 'float16'"),
    (dict(backend="gpu"), ValueError, "backend must be one of"),
    (dict(seed="a"), TypeError, "seed must be an integer, got 'a'"),
    (dict(seed=-1), ValueError, "seed must be an integer >= 0, got -1"),
    (dict(train_hardened="yes"), TypeError, "train_hardened must be a bool, got 'yes'"),
])
def test_bad_constructor_arguments(bad, error, match):
    kwargs = dict(input_width=4, leaf_width=2, output_width=3, depth=2)
    kwargs.update(bad)
    with pytest.raises(error, match=match):
        FFF(**kwargs)


@pytest.mark.parametrize("x,error,match", [
    (np.zeros((3, 5)), ValueError, r"x must have shape \(\.\.\., 4\).*got shape \(3, 5\)"),
    (np.array([[1.0, np.nan, 0, 0]]), ValueError, "x must be finite, got 1 NaN or inf"),
    (np.array([[1.0, np.inf, 0, 0]]), ValueError, "finite"),
    (np.array([["a", "b", "c", "d"]]), TypeError, "x must hold real numbers.*got dtype <U1"),
    (np.zeros((2, 4), dtype=complex), TypeError, "complex"),
    (np.float64(1.0), ValueError, "scalar"),
    (np.array([[1e300, 0, 0, 0]]), ValueError, r"x must fit the layer's dtype float32 \(largest magnitude "
                                               r"3.403e\+38\), got 1 value\(s\) beyond it \(largest magnitude 1e\+300\)"),
])
def test_bad_inputs_are_refused_with_clear_messages(x, error, match):
    layer = FFF(4, 2, 3, 2, seed=0, backend="numpy")
    with pytest.raises(error, match=match):
        layer(x)
    with pytest.raises(error, match=match):
        layer.train_forward(x)


def test_bad_state_dicts():
    layer = FFF(4, 2, 3, 2, seed=0)
    sd = layer.state_dict()
    with pytest.raises(KeyError, match=r"missing \['b2s'\]"):
        FFF.from_state_dict({k: v for k, v in sd.items() if k != "b2s"})
    with pytest.raises(KeyError, match=r"unexpected \['extra'\]"):
        FFF.from_state_dict(dict(sd, extra=np.zeros(1)))
    with pytest.raises(ValueError, match=r"'b1s' must have shape \(4, 2\), got \(4, 3\)"):
        FFF.from_state_dict(dict(sd, b1s=np.zeros((4, 3))))
    with pytest.raises(ValueError, match="power of two"):
        FFF.from_state_dict(dict(sd, w1s=np.zeros((3, 4, 2))))
    with pytest.raises(ValueError, match="finite"):
        layer.load_state_dict(dict(sd, b2s=np.full((4, 3), np.nan)))
    # finite in float64 but beyond float32: was cast to inf silently (and saving then failed)
    huge = dict(sd, b2s=np.full((4, 3), 1e300))
    with pytest.raises(ValueError, match=r"array 'b2s' must fit the layer's dtype float32 .* magnitude 1e\+300"):
        layer.load_state_dict(huge)
    with pytest.raises(ValueError, match="must fit the layer's dtype float32"):
        FFF.from_state_dict(huge, dtype="float32")
    assert np.isfinite(layer.params["b2s"]).all()
    assert FFF.from_state_dict(huge).params["b2s"][0, 0] == 1e300  # float64 holds it


def test_attributes_are_checked_when_set():
    """A value set after construction was used unchecked (a dropout of 2 trained) and then saved
    into a file that fffcpu.load refuses; the sizes and the seed could be changed under the arrays."""
    layer = FFF(4, 2, 3, 2, seed=0, master_leaf=2)
    for name, value, error, match in [
        ("dropout", 2.0, ValueError, r"dropout must be in \[0, 1\), got 2.0"),
        ("region_leak", -0.5, ValueError, r"region_leak must be in \[0, 1\], got -0.5"),
        ("region_leak", 1.5, ValueError, r"region_leak must be in \[0, 1\], got 1.5"),
        ("activation", "bogus", ValueError, "activation must be one of"),
        ("train_hardened", "yes", TypeError, "train_hardened must be a bool"),
        ("backend", "bogus", ValueError, "backend must be one of"),
        ("depth", 5, AttributeError, r"depth is fixed at construction \(this layer's is 2, got 5\)"),
        ("master_leaf", 8, AttributeError, "master_leaf is fixed at construction"),
        ("input_width", 5, AttributeError, "input_width is fixed at construction"),
        ("seed", -3, AttributeError, "seed is fixed at construction"),
        ("dtype", "float64", AttributeError, "dtype is fixed at construction"),
    ]:
        before = getattr(layer, name)
        with pytest.raises(error, match=match):
            setattr(layer, name, value)
        assert getattr(layer, name) == before
    layer.dropout, layer.region_leak, layer.activation, layer.train_hardened = 0.5, 0.1, "tanh", True
    assert (layer.dropout, layer.region_leak, layer.activation, layer.train_hardened) == (0.5, 0.1, "tanh", True)
    layer.dropout, layer.region_leak = np.float32(0.25), np.float64(0.5)
    assert type(layer.dropout) is float and type(layer.region_leak) is float  # stored as floats
    # a NumPy string (np.load(...)["activation"][()]) passed the check and then failed every kernel
    # call ("invalid literal for int()"); stored as a plain str now
    x = np.random.default_rng(2).normal(size=(9, 4)).astype(np.float32)
    layer.activation, layer.backend = np.str_("gelu"), np.str_("numba")
    assert type(layer.activation) is str and type(layer.backend) is str
    expected = layer._hard_numpy(x)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer(x[0]), expected[0], rtol=1e-5, atol=1e-6)


def test_assigned_parameters_are_checked_and_copied_in_place():
    """params["w1s"] = an array of another shape made the kernels read past its end (garbage, or a
    crash); a float64 params["k"] on a float32 layer made the NumPy reference answer in float64."""
    import copy
    layer = FFF(4, 2, 3, 2, seed=0, master_leaf=2)
    x = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
    expected, w1s = layer(x), layer.params["w1s"]
    for name, value, error, match in [
        ("w1s", np.ones((2, 4, 2), np.float32), ValueError, r"'w1s' must have shape \(4, 4, 2\), got \(2, 4, 2\)"),
        ("w2s", np.full((4, 2, 3), np.nan), ValueError, "'w2s' must be finite"),
        ("k", 1e300, ValueError, "'k' must fit the layer's dtype float32"),
        ("b2s", np.full((4, 3), "a"), TypeError, "'b2s' must hold real numbers"),
    ]:
        with pytest.raises(error, match=match):
            layer.params[name] = value
    with pytest.raises(ValueError, match=r"'w1s' must have shape"):
        layer.params.update(w1s=np.ones(3))
    b1s = layer.params["b1s"].copy()  # all or nothing: a good value before a bad one is not copied in
    with pytest.raises(ValueError, match="'w2s' must be finite"):
        layer.params.update({"b1s": b1s + 1, "w2s": np.full((4, 2, 3), np.nan)})
    np.testing.assert_array_equal(layer.params["b1s"], b1s)
    with pytest.raises(ValueError, match=r"'w1s' must have shape"):
        layer.params |= {"w1s": np.ones(3)}
    with pytest.raises(KeyError, match=r"must have the arrays .*missing \['node_weights'"):
        layer.params = {"w1s": w1s}
    np.testing.assert_array_equal(layer(x), expected)
    assert layer.params["w1s"] is w1s
    layer.params["k"] = np.float64(-1.5)  # copied into the float32 array
    layer.params["w1s"] = np.asfortranarray(w1s * 2, dtype=np.float64)
    assert layer.params["w1s"] is w1s and layer.params["k"].dtype == np.float32 and layer.params["k"] == -1.5
    ref_layer = copy.deepcopy(layer)
    ref_layer.backend = "numpy"
    assert ref_layer.params["w1s"] is not w1s and ref_layer(x).dtype == np.float32
    np.testing.assert_allclose(layer(x), ref_layer(x), rtol=1e-5, atol=1e-6)
    assert not np.allclose(layer(x), expected)
    before = layer(x)
    layer.params = layer.state_dict()  # a whole mapping of the right names and shapes is taken
    np.testing.assert_array_equal(layer(x), before)


@pytest.mark.parametrize("kw, error, match", [
    (dict(hardening="a"), TypeError, "hardening must be a real number, got 'a'"),
    (dict(hardening=-1.0), ValueError, "hardening must be a finite number >= 0, got -1.0"),
    (dict(balance=float("nan")), ValueError, "balance must be a finite number >= 0, got nan"),
])
def test_backward_checks_its_weights(kw, error, match):
    layer = FFF(4, 2, 3, 2, seed=0, backend="numpy")
    y, cache = layer.train_forward(np.ones((3, 4)))
    with pytest.raises(error, match=match):
        layer.backward(cache, np.ones_like(y), **kw)


def test_backward_refuses_non_finite_gradients():
    layer = FFF(4, 2, 3, 2, seed=0, backend="numpy")
    y, cache = layer.train_forward(np.ones((3, 4)))
    g = np.ones_like(y)
    g[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"dL_dy must be finite, got 1 NaN or inf value\(s\)"):
        layer.backward(cache, g)


def test_non_contiguous_fortran_and_big_endian_inputs():
    layer = FFF(4, 3, 2, 3, seed=0, dtype="float64", backend="numpy")
    base = np.random.default_rng(0).normal(size=(8, 8))
    x = base[:, ::2]
    expected = layer(np.ascontiguousarray(x))
    np.testing.assert_array_equal(layer(x), expected)
    np.testing.assert_array_equal(layer(np.asfortranarray(x)), expected)
    np.testing.assert_array_equal(layer(x.astype(">f8")), expected)
    np.testing.assert_array_equal(layer(x.astype(np.float32)), layer(x.astype(np.float32).astype(np.float64)))


@pytest.mark.parametrize("depth", [0, 2])
def test_master_leaf_gradients_and_mix(depth):
    rng = np.random.default_rng(depth)
    layer = FFF(4, 2, 3, depth, activation="gelu", master_leaf=3, region_leak=0.2, seed=0, dtype="float64")
    assert layer.params["k"].shape == () and layer.params["k"] == 0.5
    assert layer.params["magic_w1"].shape == (1, 4, 3) and layer.params["magic_w2"].shape == (1, 3, 3)
    x, G = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    loss, grads, dx = _loss_and_grads(layer, x, G, h=0.6, alpha=0.3, seed=1)
    assert sorted(grads) == sorted(layer.params)
    grad_check(loss, dict(layer.params, x=x), dict(grads, x=dx), tol=1e-6)
    # inference mixes the hard tree output with M(x)
    plain = FFF.from_state_dict({k: v for k, v in layer.state_dict().items() if not k.startswith(("magic", "k"))},
                                activation="gelu", backend="numpy")
    s = 1 / (1 + np.exp(-0.5))
    M, _, _ = ref.master_forward(layer.params, x, "gelu")
    np.testing.assert_allclose(FFF.from_state_dict(layer.state_dict(), activation="gelu", backend="numpy")(x),
                               s * plain(x) + (1 - s) * M, rtol=1e-12)


def test_master_leaf_state_dict_in_the_efff_layout_loads_as_is():
    layer = FFF(5, 2, 3, 2, master_leaf=8, seed=0)
    sd = layer.state_dict()
    assert list(sd)[-5:] == ["magic_w1", "magic_b1", "magic_w2", "magic_b2", "k"]
    again = FFF.from_state_dict(sd)
    assert again.master_leaf == 8 and again.n_params == layer.n_params
    x = np.random.default_rng(0).normal(size=(4, 5))
    np.testing.assert_array_equal(again.soft_forward(x), layer.soft_forward(x))


def test_from_state_dict_accepts_its_own_config_and_checks_sizes():
    layer = FFF(4, 2, 3, 2, activation="tanh", seed=0)
    again = FFF.from_state_dict(layer.state_dict(), **layer.config())
    assert again.config() == layer.config()
    with pytest.raises(ValueError, match="depth given as 3 does not match the arrays, which have 2"):
        FFF.from_state_dict(layer.state_dict(), **dict(layer.config(), depth=3))


def test_from_state_dict_takes_float64_from_big_endian_and_wider_floats():
    """A state dict of big-endian float64 arrays (a file written on such a machine, network order)
    was built as a float32 layer, silently rounding every weight: '>f8' != np.float64."""
    layer = FFF(4, 2, 3, 2, seed=0, dtype="float64")
    for kind in (">f8", np.longdouble):
        again = FFF.from_state_dict({k: v.astype(kind) for k, v in layer.state_dict().items()})
        assert again.dtype is np.float64, kind
        np.testing.assert_array_equal(again.params["w1s"], layer.params["w1s"])
    assert FFF.from_state_dict({k: v.astype(">f4") for k, v in layer.state_dict().items()}).dtype is np.float32
    # only floats are wide: integer arrays of 8 bytes build the default float32 layer
    assert FFF.from_state_dict({k: np.rint(v).astype(np.int64) for k, v in layer.state_dict().items()}).dtype is np.float32


# -- added by mutation testing: ties, the entropy clamp, the balance loss's value, leak and dropout --
def test_exact_ties_go_right_in_hardened_training_usage_and_balance():
    """a == 0 exactly at every node for zero inputs: every routing read (hard descent, hardened
    training, the hard counts behind usage, f_j and the local optimizers) sends it right."""
    layer = FFF(3, 2, 2, 2, dtype="float64", backend="numpy", seed=0)
    layer.params["node_biases"][:] = 0.0
    x = np.zeros((5, 3))
    x[3:] = np.random.default_rng(0).normal(size=(2, 3))
    leaf = layer.leaf_index(x)
    assert leaf[:3].tolist() == [3, 3, 3]  # right, right
    counts = np.bincount(leaf, minlength=4)
    y, cache = ref.soft_forward(layer.params, x, "relu", hardened=True)
    np.testing.assert_array_equal(cache["R"][-1], np.eye(4)[leaf])
    np.testing.assert_allclose(y, layer(x), rtol=1e-12, atol=1e-12)
    assert ref.hard_leaf_counts(cache).tolist() == counts.tolist()
    assert layer.usage(x)["hard_leaf"].tolist() == counts.tolist()
    assert layer.block_usage(cache)["w1s"].tolist() == counts.tolist()


def test_hardening_saturates_at_the_clamp():
    """|a| far beyond logit(1 - 1e-6): H(p) is the clamped constant H(1e-6) and its gradient is 0."""
    layer = FFF(2, 1, 1, 2, dtype="float64", seed=0)
    layer.params["node_weights"][:] = 0.0
    layer.params["node_biases"][:] = [[30.0], [-40.0], [25.0]]
    x = np.random.default_rng(0).normal(size=(4, 2))
    _, cache = layer.train_forward(x)
    e = 1e-6
    assert layer.hardening_loss(cache) == pytest.approx(-e * np.log(e) - (1 - e) * np.log(1 - e), rel=1e-9)
    grads, _ = layer.backward(cache, np.zeros((4, 1)), hardening=5.0)
    assert not grads["node_weights"].any() and not grads["node_biases"].any()


def test_balance_loss_value_follows_the_spec():
    """L_balance = 2^d sum_j f_j mean_n(pi_j), from an independent per-sample computation."""
    rng = np.random.default_rng(5)
    layer = FFF(3, 2, 2, 2, dtype="float64", seed=1)
    x = rng.normal(size=(7, 3))
    _, cache = layer.train_forward(x)
    p = 1 / (1 + np.exp(-(x @ layer.params["node_weights"].T + layer.params["node_biases"][:, 0])))
    pi = np.stack([(1 - p[:, 0]) * (1 - p[:, 1]), (1 - p[:, 0]) * p[:, 1],
                   p[:, 0] * (1 - p[:, 2]), p[:, 0] * p[:, 2]], axis=1)
    f = np.bincount(layer.leaf_index(x), minlength=4) / 7
    assert layer.balance_loss(cache) == pytest.approx(4 * np.dot(f, pi.mean(axis=0)), rel=1e-12)


def test_region_leak_flips_hardened_decisions():
    """With train_hardened, a leaked node takes the other child of its hard decision."""
    layer = FFF(3, 2, 2, 2, dtype="float64", backend="numpy", seed=2)
    x = np.random.default_rng(1).normal(size=(6, 3))
    flip = np.zeros((6, 3), dtype=bool)
    flip[:, 0] = True  # the root only
    a = ref.node_logits(layer.params, x)
    right0 = ~(a[:, 0] >= 0)  # the flipped root's hard decision
    child = np.where(right0, 2, 1)
    expected = 2 * right0 + (a[np.arange(6), child] >= 0)
    assert (expected != layer.leaf_index(x)).all()
    _, cache = ref.soft_forward(layer.params, x, "relu", flip_mask=flip, hardened=True)
    np.testing.assert_array_equal(cache["R"][-1], np.eye(4)[expected])


def test_region_leak_and_dropout_draw_at_their_rates():
    """Leak flips a fraction r of the decisions; dropout keeps 1 - p of the units, scaled by 1/(1-p)."""
    layer = FFF(3, 4, 2, 3, region_leak=0.3, dropout=0.25, dtype="float64", seed=0)
    x = np.random.default_rng(0).normal(size=(400, 3))
    _, cache = layer.train_forward(x, rng=np.random.default_rng(1))
    assert abs(cache["flip_mask"].mean() - 0.3) < 0.02  # 2800 draws: sd 0.009
    mask = cache["dropout_mask"]
    assert set(np.unique(mask).tolist()) == {0.0, 1 / (1 - 0.25)}  # exactly, in float64
    assert abs((mask > 0).mean() - 0.75) < 0.015  # 12800 draws: sd 0.004


def test_relu_derivative_at_zero_is_zero():
    """relu'(0) = 0 (activations: [z > 0]; as torch): a leaf unit sitting exactly at z = 0 gets no gradient."""
    layer = FFF(2, 1, 1, 0, dtype="float64", seed=0)
    layer.params["b1s"][:] = 0.0
    x = np.zeros((3, 2))
    _, cache = layer.train_forward(x)
    grads, dx = layer.backward(cache, np.ones((3, 1)))
    assert not grads["b1s"].any() and not grads["w1s"].any() and not dx.any()


@pytest.mark.parametrize("variant", ["leaf", "tree"])
def test_inputs_in_another_layout_take_the_lean_path(variant, monkeypatch):
    """Round 16: one sample of float64, a strided view or a (1, 1, width) array went through
    as_input (~5 us more than the same values in the layer's layout); they are cast like as_input
    casts them and go straight to the kernels, with the same results. NaN, inf and float32 overflow
    still reach as_input and its errors."""
    import fffcpu
    from fffcpu import _base
    layer = (fffcpu.FFF(12, 4, 5, depth=3, seed=1) if variant == "leaf"
             else fffcpu.NeuronTreeFFF(12, 5, depth=3, parallel_size=2, seed=1))
    sd = layer.state_dict()
    ref = (fffcpu.FFF.from_state_dict(sd, backend="numpy") if variant == "leaf"
           else fffcpu.NeuronTreeFFF.from_state_dict(sd, parallel_size=2, backend="numpy"))
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 12)).astype(np.float32)
    want = layer(X)
    ints = np.round(X * 4).astype(np.int16)[:3]
    cases = [(X[:1, None, :], want[:1, None, :]),                       # (1, 1, 12)
             (X.astype(np.float64)[2], want[2]),                        # float64, one sample
             (np.repeat(X, 2, axis=1)[:, ::2], want),                   # strided rows
             (X.astype(">f4"), want),                                   # big-endian
             (np.asfortranarray(X), want),
             (X.reshape(2, 3, 12), want.reshape(2, 3, 5)),              # (batch, tokens, width)
             (ints, ref(ints))]
    real = _base.as_input
    monkeypatch.setattr(_base, "as_input", lambda *a, **k: pytest.fail("as_input was called"))
    for x, expected in cases:
        got = layer(x)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(_base, "as_input", real)
    bad = X.astype(np.float64)
    bad[1, 3] = 1e300
    with pytest.raises(ValueError, match="must fit the layer's dtype float32"):
        layer(bad[1])
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        layer(bad[None, 1:2])


def test_train_forward_and_backward_check_rng_and_cache():
    """A bad-input review: train_forward(x, rng=0) failed as "'int' object has no attribute 'random'";
    backward with the cache of a layer of other sizes gave a NumPy broadcasting error (leaf FFF) or
    gradients of the other layer's shapes (neuron tree); backward({}) a KeyError 'x'; load_state_dict
    (None) "'NoneType' object is not iterable"; from_state_dict(..., depth="2") "depth given as '2'
    does not match the arrays, which have 2"."""
    x = np.ones((5, 4))
    layer = fffcpu.FFF(4, 2, 3, 2, dropout=0.5, seed=0)
    with pytest.raises(TypeError, match=re.escape("rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                                                  "a RandomState or None for the layer's own, got int")):
        layer.train_forward(x, rng=0)
    layer.train_forward(x, rng=np.random.RandomState(0))  # as before (diff review)
    for other, owner in ((fffcpu.FFF(4, 2, 3, 1), layer), (fffcpu.NeuronTreeFFF(6, 3, 2),
                                                           fffcpu.NeuronTreeFFF(4, 3, 2))):
        y, cache = other.train_forward(np.ones((5, other.input_width)))
        with pytest.raises(ValueError, match="cache comes from the train_forward of another layer"):
            owner.backward(cache, y)
        with pytest.raises(TypeError, match=re.escape("cache must be the dict that this layer's train_forward "
                                                      "returned, got dict with keys []")):
            owner.backward({}, y)
        with pytest.raises(TypeError, match="cache must be the dict that this layer's train_forward returned, got "
                                            "NoneType"):
            owner.backward(None, y)
    for twin in (layer.astype("float64"), FFF(4, 2, 3, 2, dropout=0.5, seed=1)):  # the same sizes
        y, cache = twin.train_forward(x)
        with pytest.raises(ValueError, match="cache comes from the train_forward of another layer"):
            layer.backward(cache, y)
    y, cache = layer.train_forward(x)
    layer.backward(cache, y)  # its own cache
    for bad in (None, "abc"):
        with pytest.raises(TypeError, match=re.escape("state for FFF must be a mapping of names to arrays (a state "
                                                      f"dict), got {type(bad).__name__}")):
            layer.load_state_dict(bad)
        for cls in (fffcpu.FFF, NeuronTreeFFF):  # from_state_dict said "'NoneType' object is not iterable"
            with pytest.raises(TypeError, match=re.escape(f"state for {cls.__name__} must be a mapping of names "
                                                          f"to arrays (a state dict), got {type(bad).__name__}")):
                cls.from_state_dict(bad)
    with pytest.raises(TypeError, match=re.escape("depth must be an integer, got '2' (str)")):
        fffcpu.FFF.from_state_dict(layer.state_dict(), depth="2")
    assert fffcpu.FFF.from_state_dict(layer.state_dict(), depth=np.int64(2)).depth == 2


def test_every_parameter_follows_the_spec_init_bound():
    """SPEC §1's table, row by row: U(-1/sqrt(D), 1/sqrt(D)) for node_weights, node_biases, w1s and
    b1s, U(-1/sqrt(l), 1/sqrt(l)) for w2s and b2s. Only the two weights' bounds were tested: node
    weights drawn within 1/D, or b1s and b2s with each other's bound, passed (a SPEC audit). D = 64 and
    l = 16 make the two bounds 1/8 and 1/4; each array holds at least 127 draws, so its largest
    magnitude lies within 10 % of its bound, and a uniform's spread is bound / sqrt(3)."""
    D, l = 64, 16
    layer = FFF(D, l, 32, depth=7, seed=0, dtype="float64")
    for name, bound in (("node_weights", D ** -0.5), ("node_biases", D ** -0.5), ("w1s", D ** -0.5),
                        ("b1s", D ** -0.5), ("w2s", l ** -0.5), ("b2s", l ** -0.5)):
        v = layer.params[name]
        assert v.size >= 127, name
        assert 0.9 * bound < np.abs(v).max() <= bound, (name, np.abs(v).max(), bound)
        assert abs(v.std() / (bound / np.sqrt(3)) - 1) < 0.15, (name, v.std())  # uniform, not normal
        assert abs(v.mean()) < 0.3 * bound, name


def test_block_usage_counts_each_node_by_the_samples_routed_through_it():
    """SPEC §1 (local optimizers: a block's hard usage): a node's count is the number of samples whose
    path passes it, in heap order. Only a depth-1 tree was tested, whose one node sees every sample:
    crediting every node with the whole batch, or the counts in reverse order, passed (a SPEC audit)."""
    layer = FFF(6, 2, 3, depth=3, seed=1, backend="numpy")
    x = np.random.default_rng(0).normal(size=(40, 6))
    x[:15] += 3 * layer.params["node_weights"][0]  # skew the routing, so that the counts differ
    _, cache = layer.train_forward(x)
    leaves = layer.leaf_index(x)
    expected = np.zeros(layer.n_nodes, dtype=np.int64)
    for leaf in leaves:  # walk each sample's path from the root: left child 2k + 1, right 2k + 2
        k = 0
        for level in range(layer.depth):
            expected[k] += 1
            k = 2 * k + 1 + (int(leaf) >> (layer.depth - 1 - level) & 1)
    usage = layer.block_usage(cache)
    np.testing.assert_array_equal(usage["node_weights"], expected)
    np.testing.assert_array_equal(usage["w1s"], np.bincount(leaves, minlength=layer.n_leaves))
    assert len(set(expected.tolist())) == layer.n_nodes and expected[0] == 40  # every count differs


def test_gelu_and_its_derivative_keep_their_precision_for_negative_inputs():
    """Round 22's kernel review: the reference computed Phi(z) as (1 + erf(z / sqrt 2)) / 2, which
    cancels in float32 for z below about -5 (gelu(-5) came out -1.49e-6 for -1.43e-6, and 0 from
    about -6), where the kernels, in float64, were right. Both dtypes now agree with float64 to their
    own precision over the whole range, and the leaf kernel agrees with the reference there."""
    from fffcpu.activations import ACTIVATIONS
    gelu, d_gelu = ACTIVATIONS["gelu"]
    z32 = np.linspace(-12.0, 6.0, 721).astype(np.float32)
    z64 = z32.astype(np.float64)  # the same inputs: float32's rounding of z alone moves gelu(-12) by 1e-5
    exact, slope = gelu(z64), d_gelu(z64, None)
    np.testing.assert_allclose(gelu(z32), exact, rtol=2e-6, atol=0)
    np.testing.assert_allclose(d_gelu(z32, None), slope, rtol=2e-6, atol=1e-30)
    assert gelu(z32).dtype == np.float32 and d_gelu(z32, None).dtype == np.float32
    # depth 0, one leaf of one unit with weight 1: the output is gelu of the input itself
    layer = FFF(1, 1, 1, depth=0, activation="gelu", seed=0)
    layer.params.update(w1s=np.ones((1, 1, 1)), b1s=np.zeros((1, 1)), w2s=np.ones((1, 1, 1)), b2s=np.zeros((1, 1)))
    x = z32[:, None]
    np.testing.assert_allclose(layer(x)[:, 0], exact, rtol=2e-6, atol=0)
    np.testing.assert_allclose(layer.astype("float32").__class__.from_state_dict(
        layer.state_dict(), activation="gelu", backend="numpy")(x)[:, 0], exact, rtol=2e-6, atol=0)
