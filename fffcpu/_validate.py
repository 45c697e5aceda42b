"""Input validation shared by every public entry point.

Every check raises *before* any work or allocation, and every message names the argument,
what was expected and what was received.
"""
import numbers
import os

import numpy as np

DTYPES = {"float32": np.float32, "float64": np.float64}


def check_int(name, value, minimum=None):
    """Return ``value`` as an int, or raise naming ``name`` if it is not an integer >= ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def check_bool(name, value):
    """Return ``value`` as a bool, or raise naming ``name`` if it is not a bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r} ({type(value).__name__})")
    return bool(value)


def check_rate(name, value, upper_inclusive=False):
    """Return ``value`` as a float in [0, 1) (or [0, 1]), or raise naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    ok = 0.0 <= value <= 1.0 if upper_inclusive else 0.0 <= value < 1.0
    if not ok:
        bound = "[0, 1]" if upper_inclusive else "[0, 1)"
        raise ValueError(f"{name} must be in {bound}, got {value}")
    return value


def check_nonneg_float(name, value):
    """Return ``value`` as a finite float >= 0, or raise naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def check_dtype(dtype, name="dtype"):
    """Return the NumPy scalar type for ``dtype`` (float32 or float64 only)."""
    try:  # None is refused: np.dtype(None) is float64, where the layers' default is float32
        key = None if dtype is None else np.dtype(dtype).name
    except TypeError:
        key = None
    if key not in DTYPES:
        raise ValueError(f"{name} must be 'float32' or 'float64', got {dtype!r}")
    return DTYPES[key]


def check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def physical_memory_bytes():
    """Total physical memory of this machine in bytes (a large fallback where unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 1 << 40


def check_fits_memory(what, n_values, itemsize):
    """Raise ``MemoryError`` if ``n_values`` numbers of ``itemsize`` bytes would not fit in memory."""
    need = int(n_values) * int(itemsize)
    have = physical_memory_bytes()
    if need > have:
        raise MemoryError(
            f"{what} would need {need / 2**30:.1f} GiB but this machine has {have / 2**30:.1f} GiB; "
            "choose a smaller depth or width"
        )


def as_input(x, width, dtype, name="x"):
    """Validate an input batch and return ``(x2d, leading_shape)``.

    Parameters
    ----------
    x : array_like of shape (..., width)
        Real numbers (floats, ints); anything else is refused.
    width : int
        Expected size of the last axis.
    dtype : numpy scalar type
        The layer's dtype; ``x`` is converted to it (C-contiguous, native byte order).

    Returns
    -------
    x2d : ndarray of shape (n, width), C-contiguous, ``dtype``
    leading_shape : tuple
        ``x.shape[:-1]``, to reshape outputs back.
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        x = x.detach().cpu()
        try:
            x = x.numpy()
        except TypeError:  # a dtype NumPy lacks: bfloat16 is exact in float32
            if not x.is_floating_point():
                raise TypeError(f"{name} must hold real numbers (float or int), got a tensor of {x.dtype}") from None
            x = x.float().numpy()
    if isinstance(x, np.ma.MaskedArray) and np.ma.is_masked(x):
        raise ValueError(f"{name} must not have masked values (the layer would read the data under the "
                         f"mask), got a masked array with {int(np.ma.count_masked(x))} masked value(s); "
                         f"fill them first: {name}.filled(value)")
    try:
        arr = np.asarray(x)
    except ValueError as err:  # ragged nested lists
        raise ValueError(f"{name} must be array_like of shape (..., {width}), got a {type(x).__name__} "
                         f"NumPy cannot make one array of ({err})") from None
    if arr.dtype.kind not in "fiu":
        raise TypeError(
            f"{name} must hold real numbers (float or int), got dtype {arr.dtype}"
        )
    if arr.ndim == 0:
        raise ValueError(f"{name} must have shape (..., {width}), got a scalar")
    if arr.shape[-1] != width:
        raise ValueError(
            f"{name} must have shape (..., {width}) (last axis = input_width {width}), "
            f"got shape {arr.shape}"
        )
    lead = arr.shape[:-1]
    with np.errstate(over="ignore"):  # values beyond float32: _check_finite says so
        x2d = np.ascontiguousarray(arr.reshape(-1, width), dtype=dtype)
    if x2d.dtype.byteorder not in "=|":  # pragma: no cover - ascontiguousarray with dtype gives native
        x2d = x2d.astype(x2d.dtype.newbyteorder("="))
    _check_finite(name, arr, x2d)
    return x2d, lead


def as_grad(g, n, width, dtype, name="dL_dy"):
    """Validate an upstream gradient of shape (..., width) with n rows in all."""
    arr = np.asarray(g)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim == 0 or arr.shape[-1] != width or arr.size != n * width:
        raise ValueError(
            f"{name} must have the forward output's shape (..., {width}) with {n} rows, got shape {arr.shape}"
        )
    g2d = np.ascontiguousarray(arr.reshape(n, width), dtype=dtype)
    _check_finite(name, arr, g2d)
    return g2d


def _check_finite(name, given, converted):
    """Raise naming ``name`` if ``converted`` (``given`` cast to the layer's dtype) has NaN or inf:
    either ``given`` has them, or its values overflow the dtype."""
    if not converted.size or np.isfinite(converted).all():
        return
    flags = ~np.isfinite(converted)
    bad = int(np.count_nonzero(flags))
    where = ""
    if np.ndim(given) > 1 and np.size(given) == converted.size:  # a vector's count says enough
        first = np.unravel_index(int(np.argmax(flags.reshape(-1))), np.shape(given))
        where = f", the first at index {tuple(int(i) for i in first)}"
    with np.errstate(invalid="ignore", over="ignore"):
        given_ok = np.isfinite(given).all()
    if given_ok:
        raise ValueError(
            f"{name} must fit the layer's dtype {converted.dtype.name} (largest magnitude "
            f"{np.finfo(converted.dtype).max:.4g}), got {bad} value(s) beyond it "
            f"(largest magnitude {float(np.abs(given).max()):.4g}){where}"
        )
    raise ValueError(f"{name} must be finite, got {bad} NaN or inf value(s){where}")
