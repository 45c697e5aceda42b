"""Activation functions and their derivatives, by name.

Each entry maps a name to ``(f, df)`` where ``df(z, fz)`` is the derivative at ``z`` given ``fz = f(z)``
(passing ``fz`` lets tanh and sigmoid reuse the forward value). The integer codes are what the Numba
kernels receive.

    relu(z)     = max(z, 0)                     relu'(z)     = [z > 0]
    gelu(z)     = z Phi(z)  (exact, erf form)   gelu'(z)     = Phi(z) + z phi(z)
    tanh(z)                                     tanh'(z)     = 1 - tanh(z)^2
    sigmoid(z)  = 1 / (1 + e^-z)                sigmoid'(z)  = s (1 - s)
    identity(z) = z                             identity'(z) = 1

Phi is the standard normal CDF, phi its density.
"""
import numpy as np

_SQRT1_2 = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327


def erfc(z):
    """``scipy.special.erfc``, ``1 - erf(z)`` without the cancellation, imported at its first use.
    SciPy's import took two thirds of ``import fffcpu`` (0.23 of 0.37 s), and inference through the
    kernels never needs it."""
    from scipy.special import erfc as f
    return f(z)


def _phi_cdf(z):
    """The standard normal CDF ``Phi(z) = erfc(-z / sqrt 2) / 2`` in float64. Not ``(1 + erf(z /
    sqrt 2)) / 2`` in ``z``'s dtype: for z below about -5 that sum cancels in float32 (-1.49e-6 for
    gelu(-5), whose value is -1.43e-6, and 0 from about -6), where the kernels, which compute in
    float64, were right; and erfc of a float32 argument loses 1e-5 at z = -12."""
    return 0.5 * erfc(np.asarray(z, np.float64) * -_SQRT1_2)


def expit(z):
    """``scipy.special.expit``, the logistic sigmoid ``1 / (1 + e^-z)``, imported at its first use (see
    :func:`erfc`)."""
    from scipy.special import expit as f
    return f(z)


def relu(z):
    return np.maximum(z, 0)


def d_relu(z, fz):
    return (z > 0).astype(z.dtype)


def gelu(z):
    return (z * _phi_cdf(z)).astype(z.dtype, copy=False)


def d_gelu(z, fz):
    z64 = np.asarray(z, np.float64)  # as Phi: exp(-z^2 / 2) of a float32 z^2 loses 4e-6 at z = -12
    return (_phi_cdf(z) + z64 * (_INV_SQRT_2PI * np.exp(-0.5 * z64 * z64))).astype(z.dtype, copy=False)


def tanh(z):
    return np.tanh(z)


def d_tanh(z, fz):
    return 1 - fz * fz


def sigmoid(z):
    return expit(z)


def d_sigmoid(z, fz):
    return fz * (1 - fz)


def identity(z):
    return z


def d_identity(z, fz):
    return np.ones_like(z)


ACTIVATIONS = {
    "relu": (relu, d_relu),
    "gelu": (gelu, d_gelu),
    "tanh": (tanh, d_tanh),
    "sigmoid": (sigmoid, d_sigmoid),
    "identity": (identity, d_identity),
}

#: integer codes passed to the Numba kernels
ACTIVATION_CODES = {"relu": 0, "gelu": 1, "tanh": 2, "sigmoid": 3, "identity": 4}


def get(name):
    """Return ``(f, df)`` for an activation name, or raise naming the choices."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}"
        ) from None
