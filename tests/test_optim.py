"""Optimizers against closed forms and a scalar oracle; local variants: gating, scaling, untouched state."""
import numpy as np
import pytest

from fffcpu.training.optim import SGD, Adam, AdamW, LocalAdam, LocalSGD, make_optimizer


def adam_oracle(p0, grads, lr, b1=0.9, b2=0.999, eps=1e-8, wd=0.0, decoupled=False):
    """Element by element, in Python floats: the textbook Adam/AdamW."""
    p = np.array(p0, dtype=np.float64)
    out = p.copy()
    for idx in np.ndindex(p.shape):
        x, m, v = float(p[idx]), 0.0, 0.0
        for t, g in enumerate(grads, start=1):
            g = float(g[idx])
            if decoupled:
                x = x * (1 - lr * wd)
            else:
                g = g + wd * x
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            mhat, vhat = m / (1 - b1 ** t), v / (1 - b2 ** t)
            x = x - lr * mhat / (np.sqrt(vhat) + eps)
        out[idx] = x
    return out


def test_sgd_plain_momentum_nesterov_closed_forms():
    g = np.array([[0.5, -2.0]])
    lr, mu = 0.1, 0.9
    for kw, factor in [({}, 3.0), ({"momentum": mu}, 3 + 2 * mu + mu ** 2),
                       ({"momentum": mu, "nesterov": True}, 3 + 3 * mu + 2 * mu ** 2 + mu ** 3)]:
        p = np.array([[1.0, 1.0]])
        opt = SGD({"w": p}, lr=lr, **kw)
        for _ in range(3):
            opt.step({"w": g})
        np.testing.assert_allclose(p, 1.0 - lr * factor * g, rtol=1e-14)


def test_sgd_weight_decay_closed_form():
    p = np.array([2.0, -1.0])
    g = np.array([0.3, 0.3])
    lr, wd = 0.1, 0.5
    opt = SGD({"w": p}, lr=lr, weight_decay=wd)
    for _ in range(4):
        opt.step({"w": g})
    # p_(t+1) = c p_t - lr g with c = 1 - lr wd  =>  p_4 = c^4 p_0 - lr g (1 + c + c^2 + c^3)
    c = 1 - lr * wd
    np.testing.assert_allclose(p, c ** 4 * np.array([2.0, -1.0]) - lr * g * (1 + c + c ** 2 + c ** 3), rtol=1e-14)


def test_adam_constant_gradient_moves_lr_per_step():
    # with a constant gradient the bias-corrected moments are g and g^2: each step is lr g/(|g| + eps)
    p = np.array([1.0, 1.0, 1.0])
    g = np.array([3.0, -0.01, 1e-3])
    opt = Adam({"w": p}, lr=0.01)
    for _ in range(5):
        opt.step({"w": g})
    np.testing.assert_allclose(p, 1.0 - 5 * 0.01 * g / (np.abs(g) + 1e-8), rtol=1e-12)


@pytest.mark.parametrize("wd, decoupled", [(0.0, False), (0.1, False), (0.1, True)])
def test_adam_and_adamw_match_the_scalar_oracle(wd, decoupled):
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal((3, 2))
    grads = [rng.standard_normal((3, 2)) for _ in range(4)]
    p = p0.copy()
    opt = Adam({"w": p}, lr=0.05, weight_decay=wd, decoupled=decoupled)
    for g in grads:
        opt.step({"w": g})
    np.testing.assert_allclose(p, adam_oracle(p0, grads, 0.05, wd=wd, decoupled=decoupled), rtol=1e-12)


def test_adamw_defaults_and_float32_in_place():
    p = np.ones((2, 2), dtype=np.float32)
    view = p
    opt = AdamW({"w": p}, lr=0.1)
    assert opt.decoupled and opt.weight_decay == 0.01
    opt.step({"w": np.ones((2, 2))})
    assert p is view and p.dtype == np.float32
    np.testing.assert_allclose(p, 1 * (1 - 0.1 * 0.01) - 0.1, rtol=1e-6)


def test_scalar_parameter_and_partial_grads():
    params = {"k": np.array(0.5), "w": np.zeros(2)}
    opt = Adam(params, lr=0.1)
    opt.step({"k": np.array(2.0)})
    assert params["k"] == pytest.approx(0.4)
    np.testing.assert_array_equal(params["w"], 0.0)  # no gradient, no change


def test_optimizer_errors_name_the_argument():
    with pytest.raises(ValueError, match="lr must be a finite number >= 0"):
        SGD({"w": np.zeros(2)}, lr=-1)
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        SGD({"w": np.zeros(2)}, nesterov=True)
    with pytest.raises(ValueError, match="betas must be two numbers"):
        Adam({"w": np.zeros(2)}, betas=(0.9, 1.0))
    opt = SGD({"w": np.zeros(2)})
    with pytest.raises(ValueError, match=r"grads\['w'\] must have the parameter's shape \(2,\)"):
        opt.step({"w": np.zeros(3)})
    with pytest.raises(KeyError, match="not a parameter"):
        opt.step({"v": np.zeros(2)})
    with pytest.raises(TypeError, match="must be a float ndarray"):
        SGD({"w": np.zeros(2, dtype=int)})
    with pytest.raises(ValueError, match="optimizer must be one of"):
        make_optimizer("rmsprop", {"w": np.zeros(2)})


# -- local optimizers -----------------------------------------------------------------------
def test_local_sgd_gates_scales_and_resets():
    rng = np.random.default_rng(3)
    p0 = rng.standard_normal((3, 2))
    p = p0.copy()
    G1, G2 = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    opt = LocalSGD({"w": p}, local_batch_size=4, lr=0.1)
    upd = opt.step({"w": G1}, {"w": np.array([2.0, 4.0, 0.0])})
    np.testing.assert_array_equal(upd["w"], [False, True, False])
    expect = p0.copy()
    expect[1] -= 0.1 * G1[1] * (4 / 4)
    np.testing.assert_allclose(p, expect, rtol=1e-14)
    opt.step({"w": G2}, {"w": np.array([3.0, 1.0, 0.0])})
    expect[0] -= 0.1 * (G1[0] + G2[0]) * (4 / 5)  # u = 5 >= 4: accumulated gradient times 4/5
    np.testing.assert_allclose(p, expect, rtol=1e-14)
    np.testing.assert_allclose(opt.accum["w"][1], G2[1])  # block 1 restarted after its update
    np.testing.assert_array_equal(opt.block_usage["w"], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(opt.accum["w"][2], G1[2] + G2[2])  # never used: accumulates, no update


def test_local_sgd_momentum_state_untouched_for_idle_blocks():
    p = np.zeros((2, 1))
    opt = LocalSGD({"w": p}, local_batch_size=1, lr=1.0, momentum=0.5)
    opt.step({"w": np.array([[1.0], [1.0]])}, {"w": np.array([1.0, 1.0])})
    opt.step({"w": np.array([[1.0], [7.0]])}, {"w": np.array([1.0, 0.0])})
    # block 0: buffers 1 then 1.5; block 1: one update, buffer stays 1 while idle
    np.testing.assert_allclose(opt.state["w"]["buf"], [[1.5], [1.0]])
    np.testing.assert_allclose(p, [[-2.5], [-1.0]])
    opt.step({"w": np.zeros((2, 1))}, {"w": np.array([0.0, 1.0])})
    # block 1 now updates with its accumulated 7 (usage 1): buffer 0.5 * 1 + 7
    np.testing.assert_allclose(opt.state["w"]["buf"], [[1.5], [7.5]])
    np.testing.assert_allclose(p, [[-2.5], [-8.5]])


def test_local_adam_counts_steps_per_block_and_leaves_idle_state():
    rng = np.random.default_rng(4)
    p0 = rng.standard_normal((3, 2))
    p = p0.copy()
    G1, G2 = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    opt = LocalAdam({"w": p}, local_batch_size=4, lr=0.01)
    opt.step({"w": G1}, {"w": np.array([2.0, 4.0, 0.0])})
    opt.step({"w": G2}, {"w": np.array([3.0, 5.0, 0.0])})
    st = opt.state["w"]
    np.testing.assert_array_equal(st["t"], [1, 2, 0])
    np.testing.assert_array_equal(st["m"][2], 0.0)
    np.testing.assert_array_equal(st["v"][2], 0.0)
    np.testing.assert_array_equal(p[2], p0[2])
    # a block's first update is lr g/(|g| + eps) whatever g (bias correction at t = 1)
    g0 = (G1[0] + G2[0]) * 4 / 5
    np.testing.assert_allclose(p[0], p0[0] - 0.01 * g0 / (np.abs(g0) + 1e-8), rtol=1e-12)
    # block 1: two ordinary Adam steps with gradients G1[1] and G2[1] * 4/5
    np.testing.assert_allclose(p[1], adam_oracle(p0[1], [G1[1], G2[1] * 4 / 5], 0.01), rtol=1e-12)


def test_local_optimizer_mixed_blocks_and_errors():
    params = {"w": np.zeros((2, 2)), "k": np.array(1.0)}
    opt = LocalSGD(params, local_batch_size=10, lr=1.0)
    opt.step({"w": np.ones((2, 2)), "k": np.array(1.0)}, {"w": np.array([1.0, 1.0])})
    assert params["k"] == 0.0  # no usage entry: an ordinary update every step
    np.testing.assert_array_equal(params["w"], 0.0)  # not yet due
    with pytest.raises(ValueError, match=r"usage\['w'\] must have shape \(2,\)"):
        opt.step({"w": np.ones((2, 2))}, {"w": np.ones(3)})
    with pytest.raises(ValueError, match="local_batch_size must be an integer >= 1"):
        LocalAdam({"w": np.zeros(2)}, local_batch_size=0)
    strict = LocalSGD({"w": np.zeros((2, 2))}, local_batch_size=1, blocks=["w"])
    with pytest.raises(KeyError, match="usage has no entry for the local parameter 'w'"):
        strict.step({"w": np.ones((2, 2))}, {})


def test_local_adam_on_a_real_fff_updates_only_used_leaves():
    import fffcpu
    layer = fffcpu.FFF(6, 2, 3, 2, seed=0, dtype="float64", backend="numpy")
    before = layer.state_dict()
    x = np.random.default_rng(0).standard_normal((5, 6))
    y, cache = layer.train_forward(x)
    grads, _ = layer.backward(cache, np.ones_like(y))
    usage = layer.block_usage(cache)
    opt = make_optimizer("local-adam", layer.params, lr=0.01, local_batch_size=1)
    opt.step(grads, usage)
    used = usage["w1s"] >= 1
    assert used.any()
    changed = np.any(layer.params["w1s"] != before["w1s"], axis=(1, 2))
    np.testing.assert_array_equal(changed, used)


@pytest.mark.parametrize("dtype, n, in_leaf0", [("float32", 37, 3), ("float64", 49, 1)])
def test_fff_block_usage_is_whole_counts(dtype, n, in_leaf0):
    # 3/37 * 37 is 2.9999998 in float32 and 1/49 * 49 is 0.9999999999999999 in float64: usage
    # computed from fractions made a block due after exactly local_batch_size samples wait a step.
    import fffcpu
    layer = fffcpu.FFF(2, 2, 1, depth=1, seed=0, dtype=dtype, backend="numpy")
    layer.params["node_weights"][...] = [[1.0, 0.0]]
    layer.params["node_biases"][...] = 0.0
    x = np.ones((n, 2), dtype)
    x[:in_leaf0, 0] = -1.0
    y, cache = layer.train_forward(x)
    usage = layer.block_usage(cache)
    np.testing.assert_array_equal(usage["w1s"], [in_leaf0, n - in_leaf0])
    np.testing.assert_array_equal(usage["node_weights"], [n])
    before = layer.params["w1s"].copy()
    LocalSGD(layer.params, local_batch_size=in_leaf0, lr=0.1).step(layer.backward(cache, np.ones_like(y))[0], usage)
    np.testing.assert_array_equal(np.any(layer.params["w1s"] != before, axis=(1, 2)), [True, True])


def test_adamw_by_name_decays_like_torch_by_default():
    # "adamw" by name was Adam with weight decay 0 (the same as "adam"); AdamW decays 0.01 by default.
    for name in ("adamw", "local-adamw"):
        opt = make_optimizer(name, {"w": np.ones(2)}, local_batch_size=1 if name.startswith("local") else None)
        assert opt.decoupled and opt.weight_decay == 0.01
        assert make_optimizer(name, {"w": np.ones(2)}, weight_decay=0.0).weight_decay == 0.0
    for name in ("adam", "sgd", "local-adam"):
        assert make_optimizer(name, {"w": np.ones(2)}).weight_decay == 0.0
    p = np.ones(3)
    opt = make_optimizer("adamw", {"w": p}, lr=0.1)
    opt.step({"w": np.zeros(3)})  # no gradient: only the decay moves p
    np.testing.assert_allclose(p, 1 - 0.1 * 0.01)


def test_fit_passes_weight_decay_on():
    import fffcpu
    from fffcpu.training import fit
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((32, 4)), rng.integers(0, 3, 32)
    runs = {}
    for name, wd in (("adam", None), ("adamw", 0.0), ("adamw", None), ("adamw", 0.5)):
        layer = fffcpu.FFF(4, 2, 3, 1, seed=0, dtype="float64", backend="numpy")
        fit(layer, X, y, optimizer=name, weight_decay=wd, epochs=2, batch_size=16, seed=0)
        runs[name, wd] = layer.params["w1s"].copy()
    np.testing.assert_array_equal(runs["adam", None], runs["adamw", 0.0])
    assert not np.array_equal(runs["adamw", None], runs["adamw", 0.0])
    assert not np.array_equal(runs["adamw", None], runs["adamw", 0.5])


def test_make_optimizer_refuses_local_batch_size_for_a_global_optimizer():
    for name in ("sgd", "adam", "adamw"):
        with pytest.raises(ValueError, match=f"local_batch_size applies to the local optimizers .* for optimizer '{name}'"):
            make_optimizer(name, {"w": np.ones(2)}, local_batch_size=8)
    assert make_optimizer("local-adam", {"w": np.ones(2)}, local_batch_size=8).local_batch_size == 8


@pytest.mark.parametrize("make", [
    lambda p: Adam(p, lr=0.1),
    lambda p: SGD(p, lr=0.1, momentum=0.9),
    lambda p: LocalSGD(p, local_batch_size=100, lr=0.1),
])
def test_a_parameter_rebound_to_another_shape_is_named(make):
    params = {"w": np.ones((3, 2))}
    opt = make(params)
    usage = {"w": np.ones(3)}
    step = (lambda g: opt.step(g, usage)) if isinstance(opt, LocalSGD) else opt.step
    step({"w": np.ones((3, 2))})
    params["w"] = np.ones((4, 2))
    usage["w"] = np.ones(4)
    with pytest.raises(ValueError, match=r"params\['w'\] has shape \(4, 2\), but .* made for shape \(3, 2\)"):
        step({"w": np.ones((4, 2))})


def test_more_optimizer_input_errors():
    with pytest.raises(ValueError, match="betas must be two numbers in \\[0, 1\\), got 0.9"):
        Adam({"w": np.zeros(2)}, betas=0.9)  # was "object of type 'float' has no len()"
    with pytest.raises(TypeError, match="must be a float ndarray, got ndarray of dtype int"):
        SGD({"w": np.zeros(2, dtype=int)})
    opt = LocalSGD({"w": np.ones((2, 2))}, local_batch_size=2, lr=1.0)
    for bad in ([-1.0, 1.0], [np.nan, 1.0]):
        with pytest.raises(ValueError, match=r"usage\['w'\] must hold finite counts >= 0"):
            opt.step({"w": np.ones((2, 2))}, {"w": np.array(bad)})
    np.testing.assert_array_equal(opt.params["w"], 1.0)


def test_adam_uses_its_eps():
    # a large eps dominates the denominator: the first step is lr g / (|g| + eps)
    p = np.array([1.0, 1.0])
    g = np.array([0.2, -0.05])
    Adam({"w": p}, lr=0.1, eps=0.1).step({"w": g})
    np.testing.assert_allclose(p, 1.0 - 0.1 * g / (np.abs(g) + 0.1), rtol=1e-14)


def test_make_optimizer_documented_defaults():
    for name, lr, mu, nesterov in (("sgd", 0.1, 0.0, False), ("momentum", 0.1, 0.9, False),
                                   ("nesterov", 0.1, 0.9, True), ("local-sgd", 0.1, 0.0, False)):
        opt = make_optimizer(name, {"w": np.ones(2)})
        assert (opt.lr, opt.momentum, opt.nesterov) == (lr, mu, nesterov), name
    for name in ("adam", "adamw", "local-adam", "local-adamw"):
        opt = make_optimizer(name, {"w": np.ones(2)})
        assert opt.lr == 1e-3 and opt.betas == (0.9, 0.999) and opt.eps == 1e-8, name
    assert make_optimizer("local-adam", {"w": np.ones(2)}).local_batch_size == 64


def test_local_sgd_weight_decay_uses_the_updated_blocks_only():
    # L2 decay of a local block is wd times that block's own parameters
    p0 = np.array([[1.0, 2.0], [3.0, 4.0], [-1.0, 5.0]])
    p = p0.copy()
    G = np.full((3, 2), 0.5)
    opt = LocalSGD({"w": p}, local_batch_size=2, lr=0.1, weight_decay=0.5)
    opt.step({"w": G}, {"w": np.array([2.0, 0.0, 4.0])})
    expect = p0.copy()
    for i, u in ((0, 2.0), (2, 4.0)):
        expect[i] = p0[i] - 0.1 * (G[i] * 2 / u + 0.5 * p0[i])
    np.testing.assert_allclose(p, expect, rtol=1e-14)


@pytest.mark.parametrize("cls", [LocalSGD, LocalAdam])
def test_a_bad_usage_entry_changes_nothing(cls):
    # usage was checked parameter by parameter inside the update loop, so the parameters before a bad
    # entry (and their optimizer state) were already updated when the error came
    params = {"a": np.ones((3, 2)), "b": np.ones((2, 2))}
    before = {k: v.copy() for k, v in params.items()}
    opt = cls(params, local_batch_size=1, lr=0.1)
    grads = {"a": np.ones((3, 2)), "b": np.ones((2, 2))}
    for bad, match in (({"a": np.ones(3), "b": np.ones(3)}, r"usage\['b'\] must have shape \(2,\)"),
                       ({"a": np.ones(3), "b": np.array([1.0, -1.0])}, r"usage\['b'\] must hold finite counts"),
                       ({"a": np.ones(3)}, "usage has no entry for the local parameter 'b'")):
        with pytest.raises((ValueError, KeyError), match=match):
            opt.step(grads, bad) if "b" in bad else cls(params, 1, lr=0.1, blocks=("a", "b")).step(grads, bad)
        for k in params:
            np.testing.assert_array_equal(params[k], before[k])
        assert opt.accum == {} and opt.block_usage == {} and opt.state == {}
    opt.step(grads, {"a": np.ones(3), "b": np.ones(2)})  # the same step with good counts updates both
    assert all(not np.array_equal(params[k], before[k]) for k in params)


def test_boolean_options_refuse_other_values():
    # nesterov and decoupled took any truthy value: decoupled="False" silently made AdamW
    for make, name in ((lambda v: SGD({"w": np.zeros(2)}, momentum=0.5, nesterov=v), "nesterov"),
                       (lambda v: Adam({"w": np.zeros(2)}, decoupled=v), "decoupled"),
                       (lambda v: LocalAdam({"w": np.zeros(2)}, 1, decoupled=v), "decoupled")):
        for bad in ("False", 1, None):
            with pytest.raises(TypeError, match=f"^{name} must be a bool, got {bad!r}"):
                make(bad)
        assert getattr(make(np.bool_(True)), name) is True and getattr(make(False), name) is False
