"""Thin calls into :mod:`fffcpu.kernels`: allocate outputs, pick the one-sample or the batch path.

Nothing here validates: the layers pass arrays that :func:`fffcpu._validate.as_input` already
checked and converted (C-contiguous, native byte order, the parameters' dtype, finite).

Thread safety: the one-sample kernels release the GIL and run concurrently from several Python
threads; calls into the parallel batch kernels are serialised by a lock (they already use every
Numba thread, and Numba's ``workqueue`` threading layer must not be entered twice at once).
Numba's thread count is per calling thread: :func:`set_num_threads` applies to the thread that
calls it.
"""
import threading

import numpy as np

from .activations import ACTIVATION_CODES

_PARALLEL_LOCK = threading.Lock()
#: batches smaller than this run the serial per-sample loop (a parallel launch costs microseconds)
SERIAL_BELOW = 8


_K = None


def _kernels():
    global _K
    if _K is None:
        from . import kernels  # imported on first use: importing fffcpu stays free of Numba work

        _K = kernels
    return _K


def _act_code(activation):
    if type(activation) is str:
        code = ACTIVATION_CODES.get(activation)
        if code is None:
            raise ValueError(f"activation must be one of {sorted(ACTIVATION_CODES)}, got {activation!r}")
        return code
    return int(activation)


def leaf_forward(params, activation, x2d, out=None):
    """Hard leaf-FFF inference (SPEC §1) with the Numba kernels.

    Parameters
    ----------
    params : dict
        ``node_weights`` (n_nodes, D), ``node_biases`` (n_nodes, 1), ``w1s`` (L, D, l), ``b1s`` (L, l),
        ``w2s`` (L, l, O), ``b2s`` (L, O), all of one dtype.
    activation : str or int
        Leaf activation name or code.
    x2d : ndarray of shape (n, D)
        C-contiguous, the parameters' dtype.
    out : ndarray of shape (n, O), optional
        C-contiguous output buffer of the same dtype.

    Returns
    -------
    y : ndarray of shape (n, O)
    """
    k = _kernels()
    w1s, b2s = params["w1s"], params["b2s"]
    n = x2d.shape[0]
    if out is None:
        out = np.empty((n, b2s.shape[1]), dtype=x2d.dtype)
    args = (params["node_weights"], params["node_biases"], w1s, params["b1s"], params["w2s"], b2s,
            _act_code(activation), x2d)
    if n < SERIAL_BELOW:
        if n:
            k.leaf_forward_serial(*args[:-1], x2d, np.empty(w1s.shape[2], x2d.dtype), out)
    else:
        with _PARALLEL_LOCK:
            k.leaf_forward_batch(*args, out, get_num_threads())
    return out


def leaf_forward_one(params, activation, x):
    """Hard leaf-FFF inference of one sample ``x`` (D,), C-contiguous in the parameters' dtype.

    Returns
    -------
    y : ndarray of shape (O,), or None
        None when ``x`` holds NaN or inf (checked in the same kernel call; the caller raises).
    """
    w1s, b2s = params["w1s"], params["b2s"]
    y = np.empty(b2s.shape[1], x.dtype)
    h = np.empty(w1s.shape[2], x.dtype)
    if (_K or _kernels()).leaf_forward_one_checked(params["node_weights"], params["node_biases"], w1s,
                                                   params["b1s"], params["w2s"], b2s,
                                                   _act_code(activation), x, h, y):
        return y
    return None


def neuron_tree_forward_one(w_in, b_in, w_out_t, depth, parallel_size, activation, x):
    """Hard neuron-tree inference of one sample ``x`` (D,), C-contiguous in the parameters' dtype.

    The lean path of ``layer(x)`` for one sample: one kernel call checks ``x`` and computes ``y``.
    Arrays as in :func:`neuron_tree_forward`.

    Returns
    -------
    y : ndarray of shape (O,), or None
        None when ``x`` holds NaN or inf (the caller raises its usual error).
    """
    y = np.empty(w_out_t.shape[1], x.dtype)
    if (_K or _kernels()).nt_forward_one_checked(w_in, b_in, w_out_t, depth, parallel_size,
                                                 _act_code(activation), x, y):
        return y
    return None


def neuron_tree_forward(w_in, b_in, w_out_t, depth, parallel_size, activation, x2d, out=None):
    """Hard neuron-tree inference (SPEC §2) with the Numba kernels.

    Parameters
    ----------
    w_in : ndarray of shape (P * n_nodes, D)
        ``linear_in.weight``; tree t, node k is row t * n_nodes + k, n_nodes = 2^(depth+1) - 1.
    b_in : ndarray of shape (P * n_nodes,)
        ``linear_in.bias``.
    w_out_t : ndarray of shape (P * n_nodes, O)
        ``linear_out.weight.T`` as a C-contiguous array.
    depth, parallel_size : int
    activation : str or int
    x2d : ndarray of shape (n, D)
        C-contiguous, the parameters' dtype.
    out : ndarray of shape (n, O), optional

    Returns
    -------
    y : ndarray of shape (n, O)
    """
    k = _K or _kernels()
    n = x2d.shape[0]
    if out is None:
        out = np.empty((n, w_out_t.shape[1]), dtype=x2d.dtype)
    act = _act_code(activation)
    if n < SERIAL_BELOW:
        if n:
            k.nt_forward_serial(w_in, b_in, w_out_t, depth, parallel_size, act, x2d, out)
    else:
        with _PARALLEL_LOCK:
            k.nt_forward_batch(w_in, b_in, w_out_t, depth, parallel_size, act, x2d, out)
    return out


def all_finite(x):
    """True when every value of the C-contiguous float array ``x`` is finite (a kernel: no temporaries)."""
    return (_K or _kernels()).all_finite(x)


def warmup(dtypes=("float32", "float64")):
    """Compile (or load from Numba's cache) every kernel the layers use, for each dtype.

    Calls each entry point once on tiny inputs of the layouts the layers pass (C-contiguous).
    """
    for name in dtypes:
        dt = np.dtype(name)
        rng = np.random.default_rng(0)
        D, l, O = 3, 2, 2
        p = {
            "node_weights": rng.standard_normal((1, D)).astype(dt),
            "node_biases": rng.standard_normal((1, 1)).astype(dt),
            "w1s": rng.standard_normal((2, D, l)).astype(dt),
            "b1s": rng.standard_normal((2, l)).astype(dt),
            "w2s": rng.standard_normal((2, l, O)).astype(dt),
            "b2s": rng.standard_normal((2, O)).astype(dt),
        }
        w_in, b_in, w_out_t = (rng.standard_normal(s).astype(dt) for s in ((3, D), 3, (3, O)))
        leaf_forward_one(p, 0, np.zeros(D, dt))
        neuron_tree_forward_one(w_in, b_in, w_out_t, 1, 1, 1, np.zeros(D, dt))
        for n in (1, SERIAL_BELOW):
            x = rng.standard_normal((n, D)).astype(dt)
            leaf_forward(p, 0, x)
            neuron_tree_forward(rng.standard_normal((3, D)).astype(dt), rng.standard_normal(3).astype(dt),
                                rng.standard_normal((3, O)).astype(dt), 1, 1, 1, x)
            all_finite(x)
            all_finite(x[0])


def set_num_threads(n):
    """Set the number of Numba threads used by the batch kernels (for the calling thread)."""
    import numba

    numba.set_num_threads(int(n))


def get_num_threads():
    """The number of Numba threads the batch kernels use (for the calling thread)."""
    import numba

    return numba.get_num_threads()
