"""The neuron-tree FFF of UltraFastBERT in plain NumPy: forward and hand-derived backward (SPEC §2).

Functional core: a ``params`` dict goes in, arrays come out. Shapes use ``n`` samples, ``D`` inputs,
``O`` outputs, ``P`` trees (parallel_size), tree depth ``d`` (SPEC §2's D_t: d decisions on d + 1 levels)
and ``N = 2^(d+1) - 1`` neurons per tree (not the leaf FFF's N = 2^d - 1).
Neuron k of tree t is row ``t*N + k`` of ``linear_in.weight`` and column ``t*N + k`` of
``linear_out.weight``; inside a tree the neurons are in heap order (children of k: 2k+1, 2k+2).

Every neuron is both a router and a hidden unit. With a_r = linear_in.weight[r] . x + linear_in.bias[r]
and, per tree t, the path

    i_0 = 0,    i_(m+1) = 2 i_m + 1 + [a_(t, i_m) > 0]        (m = 0 .. d-1; a tie a = 0 goes left)

the output is

    y = sum_t sum_(m=0..d) act(a_(t, i_m)) * linear_out.weight[:, t*N + i_m]          (no output bias)

Written with the 0/1 mask M (n, P*N) of the visited neurons this is the dense layer
``y = (M * act(a)) @ linear_out.weight.T``, the masked training forward. The path is piecewise constant
in the parameters, so away from ties its derivative is 0 and, with g = dL/dy, h = M * act(a):

    dL/dlinear_out.weight = g^T h        dL/da = M * act'(a) * (g @ linear_out.weight)
    dL/dlinear_in.weight  = (dL/da)^T x   dL/dlinear_in.bias = sum_n dL/da    dL/dx = (dL/da) @ linear_in.weight

See docs/neuron_tree_gradients.md for the derivation.
"""
import numpy as np

from .. import activations

PARAM_NAMES = ("linear_in.weight", "linear_in.bias", "linear_out.weight")


def n_tree_nodes(depth):
    """Neurons in one tree of ``depth`` decisions: 2^(depth+1) - 1 (depth + 1 levels)."""
    return (1 << (depth + 1)) - 1


def param_shapes(input_width, output_width, depth, parallel_size=1):
    """Ordered ``{name: shape}`` of the parameters (the UltraFastBERT layer's state_dict)."""
    rows = parallel_size * n_tree_nodes(depth)
    return {
        "linear_in.weight": (rows, input_width),
        "linear_in.bias": (rows,),
        "linear_out.weight": (output_width, rows),
    }


def init_params(input_width, output_width, depth, parallel_size, rng, dtype=np.float32):
    """Uniform initialisation of SPEC §2.

    ``linear_in.*`` ~ U(-1/sqrt(D), 1/sqrt(D)); ``linear_out.weight`` ~ U(-1/sqrt(k), 1/sqrt(k)) with
    k = (d+1) P, the number of neurons one inference adds up. Drawn in this order from ``rng``.
    """
    shapes = param_shapes(input_width, output_width, depth, parallel_size)
    bound_in = 1.0 / np.sqrt(input_width)
    bound_out = 1.0 / np.sqrt((depth + 1) * parallel_size)
    params = {}
    for name, shape in shapes.items():
        bound = bound_out if name == "linear_out.weight" else bound_in
        params[name] = rng.uniform(-bound, bound, size=shape).astype(dtype)
    return params


# ---------------------------------------------------------------------------------------------
# conditional (inference) forward: only the d+1 neurons on each tree's path
# ---------------------------------------------------------------------------------------------
def hard_path(params, x, depth, parallel_size):
    """Descend every tree computing only the logits on its path.

    Parameters
    ----------
    params : dict of ndarray
    x : ndarray of shape (n, D)
    depth, parallel_size : int

    Returns
    -------
    rows : ndarray of int, shape (n, P, d+1)
        Global row ``t*N + i_m`` of the neuron visited at level m of tree t.
    a : ndarray of shape (n, P, d+1)
        Its logit a_(t, i_m).
    """
    w_in, b_in = params["linear_in.weight"], params["linear_in.bias"]
    N = n_tree_nodes(depth)
    n = x.shape[0]
    offsets = N * np.arange(parallel_size)  # (P,) first row of each tree
    rows = np.empty((n, parallel_size, depth + 1), dtype=np.intp)
    a = np.empty((n, parallel_size, depth + 1), dtype=x.dtype)
    i = np.zeros((n, parallel_size), dtype=np.intp)  # current node inside each tree
    for m in range(depth + 1):
        r = offsets + i  # (n, P)
        rows[:, :, m] = r
        # one dot product per (sample, tree); multiply-and-sum, since einsum's rounding depends on alignment
        a[:, :, m] = (x[:, None, :] * w_in[r]).sum(axis=2) + b_in[r]
        i = 2 * i + 1 + (a[:, :, m] > 0)  # tie rule (SPEC §2): a > 0 goes right
    return rows, a


def hard_forward(params, x, depth, parallel_size=1, activation="gelu"):
    """Conditional inference: P (d+1) neurons per sample. (n, D) -> (n, O)."""
    f, _ = activations.get(activation)
    rows, a = hard_path(params, x, depth, parallel_size)
    fa = f(a)  # (n, P, d+1)
    w_out_rows = params["linear_out.weight"].T  # (P*N, O): neuron r's output weights are row r
    y = np.zeros((x.shape[0], w_out_rows.shape[1]), dtype=x.dtype)
    for m in range(depth + 1):
        y += (fa[:, :, m, None] * w_out_rows[rows[:, :, m]]).sum(axis=1)
    return y


def leaf_index(rows, depth):
    """The last-level neuron each tree reached, numbered 0 .. 2^d - 1 inside its tree: (n, P, d+1) -> (n, P)."""
    N = n_tree_nodes(depth)
    return rows[:, :, -1] % N - ((1 << depth) - 1)


def usage(params, x, depth, parallel_size=1):
    """Hard visit counts over a batch.

    Returns
    -------
    dict with ``hard_node`` (P*N,): samples whose path visits each neuron (the root of every tree
    counts every sample), and ``hard_leaf`` (P, 2^d): samples ending at each last-level neuron per tree.
    """
    rows, _ = hard_path(params, x, depth, parallel_size)
    N = n_tree_nodes(depth)
    hard_node = np.bincount(rows.ravel(), minlength=parallel_size * N)
    hard_leaf = hard_node.reshape(parallel_size, N)[:, (1 << depth) - 1:]
    return {"hard_node": hard_node, "hard_leaf": np.ascontiguousarray(hard_leaf)}


# ---------------------------------------------------------------------------------------------
# masked (training) forward and its backward
# ---------------------------------------------------------------------------------------------
def logits(params, x):
    """a = x @ linear_in.weight.T + linear_in.bias for every neuron: (n, D) -> (n, P*N)."""
    return x @ params["linear_in.weight"].T + params["linear_in.bias"]


def path_mask(a, depth, parallel_size):
    """0/1 mask (n, P*N) of the neurons on each tree's hard path, read from all logits ``a`` (n, P*N)."""
    n = a.shape[0]
    N = n_tree_nodes(depth)
    mask = np.zeros_like(a)
    if n == 0:
        return mask
    samples = np.arange(n)[:, None]  # (n, 1)
    offsets = N * np.arange(parallel_size)  # (P,)
    i = np.zeros((n, parallel_size), dtype=np.intp)
    for _ in range(depth + 1):
        r = offsets + i  # (n, P)
        mask[samples, r] = 1
        i = 2 * i + 1 + (a[samples, r] > 0)  # same tie rule as hard_path
    return mask


def masked_forward(params, x, depth, parallel_size=1, activation="gelu"):
    """The training forward as published: all logits, activations off the hard path multiplied by 0.

    Equals :func:`hard_forward` (up to rounding), at the cost of the full width P*N.

    Returns
    -------
    y : ndarray of shape (n, O)
    cache : dict
        ``x`` (n, D), ``a`` and ``fa = act(a)`` and ``mask`` and ``h = mask * fa`` (n, P*N), and the sizes;
        what :func:`masked_backward` needs.
    """
    f, _ = activations.get(activation)
    a = logits(params, x)  # (n, P*N)
    fa = f(a)
    mask = path_mask(a, depth, parallel_size)
    h = mask * fa
    y = h @ params["linear_out.weight"].T  # (n, O)
    cache = dict(x=x, a=a, fa=fa, mask=mask, h=h, depth=depth, parallel_size=parallel_size,
                 activation=activation)
    return y, cache


def masked_backward(params, cache, dL_dy):
    """Gradients of the masked forward; the mask (the routing) is a constant.

    Parameters
    ----------
    params : dict of ndarray
    cache : dict from :func:`masked_forward`
    dL_dy : ndarray of shape (n, O)

    Returns
    -------
    grads : dict of ndarray, the same keys and shapes as ``params``
        Non-zero only in the on-path rows of ``linear_in.*`` and on-path columns of ``linear_out.weight``.
    dL_dx : ndarray of shape (n, D)
    """
    x, a, fa, mask, h = (cache[k] for k in ("x", "a", "fa", "mask", "h"))
    g = dL_dy
    _, df = activations.get(cache["activation"])
    grads = {"linear_out.weight": g.T @ h}  # (O, P*N); zero columns where no sample passed
    dL_dh = g @ params["linear_out.weight"]  # (n, P*N)
    dL_da = mask * df(a, fa) * dL_dh  # the mask stops the gradient off the path
    grads["linear_in.weight"] = dL_da.T @ x  # (P*N, D)
    grads["linear_in.bias"] = dL_da.sum(axis=0)
    dL_dx = dL_da @ params["linear_in.weight"]
    grads = {k: np.asarray(grads[k], dtype=x.dtype) for k in PARAM_NAMES}
    return grads, np.asarray(dL_dx, dtype=x.dtype)
