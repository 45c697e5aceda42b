"""Task losses with their gradients: each returns ``(loss, dL_dy)``.

Both are means over the batch (mse also over the outputs), so a learning rate means the same thing
at any batch size. The routing terms (hardening, eFFF balance) are not here: they belong to the layer
(``layer.backward(cache, dL_dy, hardening=h, balance=alpha)``).
"""
import numpy as np


def _as_real(name, arr):
    """``arr`` as a float array: integer (or bool) values become float64, so that neither the loss
    nor the gradient is computed in (and truncated to) integers."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr if arr.dtype.kind == "f" else arr.astype(np.float64)


def _check_batch(name, arr, n):
    if arr.shape[0] != n:
        raise ValueError(f"{name} must have {n} rows (one per sample), got shape {arr.shape}")


def log_softmax(logits):
    """Row-wise ``log softmax``, shifted by the row maximum so no exponential overflows.

    Parameters
    ----------
    logits : ndarray of shape (n, C)

    Returns
    -------
    ndarray of shape (n, C)
    """
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(logits):
    """Row-wise softmax of ``logits`` of shape (n, C) (each row sums to 1)."""
    return np.exp(log_softmax(logits))


def cross_entropy(logits, labels):
    """Softmax cross-entropy, mean over the batch.

    L = -(1/n) sum_i log softmax(z_i)[t_i],   dL/dz_i = (softmax(z_i) - onehot(t_i)) / n.

    Parameters
    ----------
    logits : ndarray of shape (n, C)
    labels : ndarray of int of shape (n,)
        Class indices in 0 .. C-1.

    Returns
    -------
    loss : float
        0.0 for an empty batch.
    dL_dlogits : ndarray of shape (n, C), the dtype of ``logits`` (float64 for integer logits)
    """
    logits = _as_real("logits", logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (n, n_classes), got shape {logits.shape}")
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(
            f"labels must be a 1-d array of class indices (integers), got shape {labels.shape} "
            f"dtype {labels.dtype}"
        )
    n, n_classes = logits.shape
    _check_batch("labels", labels, n)
    if n == 0:
        return 0.0, np.zeros_like(logits)
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(
            f"labels must be class indices in [0, {n_classes - 1}], got values in "
            f"[{labels.min()}, {labels.max()}]"
        )
    logp = log_softmax(logits)
    rows = np.arange(n)
    loss = -float(logp[rows, labels].sum(dtype=np.float64)) / n
    dL_dlogits = np.exp(logp)
    dL_dlogits[rows, labels] -= 1
    dL_dlogits /= n
    return loss, dL_dlogits.astype(logits.dtype, copy=False)


def mse(outputs, targets):
    """Mean squared error, mean over the batch and the outputs (as ``torch.nn.MSELoss``).

    L = (1/(n O)) sum_(i,o) (y_io - t_io)^2,   dL/dy = 2 (y - t) / (n O).

    Parameters
    ----------
    outputs : ndarray of shape (n, O)
    targets : ndarray of shape (n, O), or (n,) when O == 1

    Returns
    -------
    loss : float
        0.0 for an empty batch.
    dL_doutputs : ndarray of shape (n, O), the dtype of ``outputs`` (float64 for integer outputs)
    """
    outputs = _as_real("outputs", outputs)
    if outputs.ndim != 2:
        raise ValueError(f"outputs must have shape (n, n_outputs), got shape {outputs.shape}")
    targets = np.asarray(targets)
    if targets.dtype.kind not in "fiu":
        raise TypeError(f"targets must hold real numbers, got dtype {targets.dtype}")
    if targets.ndim == 1 and outputs.shape[1] == 1:
        targets = targets[:, None]
    if targets.shape != outputs.shape:
        raise ValueError(f"targets must have shape {outputs.shape}, got shape {targets.shape}")
    if outputs.size == 0:
        return 0.0, np.zeros_like(outputs)
    diff = outputs - targets.astype(outputs.dtype, copy=False)
    loss = float(np.mean(np.square(diff, dtype=np.float64)))
    return loss, (2.0 / diff.size) * diff


LOSSES = {"cross_entropy": cross_entropy, "mse": mse}


def get(name):
    """Return the loss function called ``name`` ("cross_entropy" or "mse")."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {name!r}") from None
