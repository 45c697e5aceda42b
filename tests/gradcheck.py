"""Central-difference gradient checks in float64 and relative comparisons (shared by the test files)."""
import numpy as np


def numerical_grad(f, arr, eps=1e-6):
    """d f() / d arr by central differences, perturbing ``arr`` in place (restored afterwards)."""
    grad = np.zeros_like(arr, dtype=np.float64)
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        arr[idx] = old + eps
        fp = f()
        arr[idx] = old - eps
        fm = f()
        arr[idx] = old
        grad[idx] = (fp - fm) / (2 * eps)
    return grad


def rel_error(analytic, numeric):
    """(max, mean) absolute error, both relative to the largest numeric gradient magnitude."""
    scale = max(np.abs(numeric).max(initial=0.0), 1e-12)
    diff = np.abs(np.asarray(analytic, dtype=np.float64) - numeric)
    return diff.max(initial=0.0) / scale, (diff.mean() if diff.size else 0.0) / scale


def grad_check(f, arrays, grads, tol=1e-6, eps=1e-6):
    """Assert that ``grads[name]`` matches the numerical gradient of ``f`` for every ``arrays[name]``."""
    report = {}
    for name, arr in arrays.items():
        if arr.size == 0:
            assert np.asarray(grads[name]).shape == arr.shape
            continue
        num = numerical_grad(f, arr, eps)
        worst, mean = rel_error(grads[name], num)
        report[name] = (worst, mean)
        assert worst < tol, f"gradient of {name}: max relative error {worst:.2e} >= {tol:.0e} (mean {mean:.2e})"
    return report


def assert_rel(actual, expected, rtol, what=""):
    """|actual - expected| <= rtol * max|expected| (elementwise, one scale per array)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    scale = max(np.abs(expected).max(initial=0.0), 1e-300)
    err = np.abs(actual - expected).max(initial=0.0) / scale
    assert err <= rtol, f"{what}: relative error {err:.3g} > {rtol:g}"
