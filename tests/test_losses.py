"""Task losses: values against direct formulas, gradients against float64 central differences."""
import numpy as np
import pytest

from fffcpu.training import losses
from fffcpu.training.losses import cross_entropy, log_softmax, mse, softmax


def numeric_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = f(x)
        x[i] = old - eps
        down = f(x)
        x[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


def test_cross_entropy_value_and_gradient():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((5, 4))
    t = np.array([0, 3, 1, 1, 2])
    loss, g = cross_entropy(z, t)
    direct = -np.mean([np.log(np.exp(z[i, t[i]]) / np.exp(z[i]).sum()) for i in range(5)])
    assert loss == pytest.approx(direct, rel=1e-12)
    num = numeric_grad(lambda zz: cross_entropy(zz, t)[0], z.copy())
    assert np.max(np.abs(g - num)) < 1e-8
    assert np.mean(np.abs(g - num)) < 1e-9


def test_cross_entropy_is_stable_for_huge_logits():
    z = np.array([[1000.0, 0.0, -1000.0], [-5e4, 5e4, 0.0]])
    loss, g = cross_entropy(z, np.array([0, 2]))
    assert np.isfinite(loss) and np.all(np.isfinite(g))
    assert loss == pytest.approx(5e4 / 2)
    np.testing.assert_allclose(softmax(z).sum(axis=1), 1.0)
    assert np.all(log_softmax(z) <= 0)


def test_cross_entropy_keeps_float32_and_handles_empty_batch():
    z = np.zeros((3, 2), dtype=np.float32)
    loss, g = cross_entropy(z, np.array([0, 1, 1]))
    assert g.dtype == np.float32 and loss == pytest.approx(np.log(2))
    loss, g = cross_entropy(np.zeros((0, 2)), np.zeros(0, dtype=int))
    assert loss == 0.0 and g.shape == (0, 2)
    loss, g = cross_entropy(np.zeros((0, 2), dtype=np.float32), np.zeros(0, dtype=int))
    assert loss == 0.0 and g.shape == (0, 2) and g.dtype == np.float32


@pytest.mark.parametrize("labels, match", [
    (np.array([0, 5]), r"class indices in \[0, 2\]"),
    (np.array([0.0, 1.0]), "integers"),
    (np.array([0, 1, 1]), "2 rows"),
    (np.array([0]), "2 rows"),  # one label broadcast against both rows
    (np.array([0, 3]), r"class indices in \[0, 2\], got values in \[0, 3\]"),  # C itself is out of range
    (np.array([-1, 0]), r"class indices in \[0, 2\], got values in \[-1, 0\]"),  # not the last class
    (np.array([[0], [1]]), r"1-d array .* got shape \(2, 1\)"),  # (n, 1) broadcast into (n, n)
])
def test_cross_entropy_rejects_bad_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        cross_entropy(np.zeros((2, 3)), labels)


def test_mse_value_and_gradient():
    rng = np.random.default_rng(1)
    y = rng.standard_normal((4, 3))
    t = rng.standard_normal((4, 3))
    loss, g = mse(y, t)
    assert loss == pytest.approx(np.mean((y - t) ** 2), rel=1e-12)
    num = numeric_grad(lambda yy: mse(yy, t)[0], y.copy())
    assert np.max(np.abs(g - num)) < 1e-8


def test_mse_accepts_1d_targets_for_one_output_and_checks_shapes():
    loss, g = mse(np.array([[1.0], [3.0]]), np.array([0.0, 1.0]))
    assert loss == pytest.approx((1 + 4) / 2)
    np.testing.assert_allclose(g, [[1.0], [2.0]])
    with pytest.raises(ValueError, match=r"targets must have shape \(2, 2\)"):
        mse(np.zeros((2, 2)), np.zeros((2, 3)))
    assert mse(np.zeros((0, 2)), np.zeros((0, 2)))[0] == 0.0


def test_integer_outputs_are_not_truncated():
    # int logits gave an all-zero gradient (cast back to int), int outputs an mse with the targets
    # truncated to integers (loss 2.5 instead of 1.25)
    z = np.array([[1, 2], [3, 0]])
    t = np.array([0, 1])
    loss, g = cross_entropy(z, t)
    loss_f, g_f = cross_entropy(z.astype(np.float64), t)
    assert g.dtype == np.float64 and loss == loss_f
    np.testing.assert_array_equal(g, g_f)
    loss, g = mse(np.array([[1], [2]]), np.array([0.5, 0.5]))
    assert loss == pytest.approx(1.25) and g.dtype == np.float64
    np.testing.assert_allclose(g, [[0.5], [1.5]])
    with pytest.raises(TypeError, match="logits must hold real numbers, got dtype complex128"):
        cross_entropy(np.zeros((1, 2), dtype=complex), np.array([0]))
    with pytest.raises(TypeError, match="outputs must hold real numbers, got dtype <U1"):
        mse(np.array([["a"]]), np.zeros(1))


def test_loss_shapes_and_dtypes_are_checked_and_kept():
    with pytest.raises(ValueError, match=r"logits must have shape \(n, n_classes\), got shape \(3,\)"):
        cross_entropy(np.zeros(3), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"outputs must have shape \(n, n_outputs\), got shape \(3,\)"):
        mse(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"targets must have shape \(2, 2\), got shape \(2,\)"):
        mse(np.zeros((2, 2)), np.zeros(2))  # the shape given, not a reshaped (2, 1)
    with pytest.raises(TypeError, match="targets must hold real numbers, got dtype complex128"):
        mse(np.zeros((2, 1)), np.array([1 + 1j, 2.0]))  # the imaginary parts were dropped
    # the gradient has the outputs' dtype, whatever the targets' (float32 training stays float32)
    loss, g = mse(np.ones((2, 1), dtype=np.float32), np.array([0.5, 0.0]))
    assert g.dtype == np.float32 and loss == pytest.approx((0.25 + 1) / 2)
    # bool outputs count as 0/1 numbers, as integers do
    loss, g = mse(np.array([[True], [False]]), np.array([0.5, 0.5]))
    assert loss == pytest.approx(0.25) and g.dtype == np.float64
    np.testing.assert_allclose(g, [[0.5], [-0.5]])


def test_get_names_the_choices():
    assert losses.get("mse") is mse and losses.get("cross_entropy") is cross_entropy
    for bad in ("hinge", ["mse"]):  # an unhashable name too
        with pytest.raises(ValueError, match=r"loss must be one of \['cross_entropy', 'mse'\]"):
            losses.get(bad)
