"""The leaf FFF of Belcak & Wattenhofer in plain NumPy: forward and hand-derived backward (SPEC §1).

Functional core: a ``params`` dict goes in, arrays come out. Shapes use ``n`` samples, ``D`` inputs,
``l`` leaf width, ``O`` outputs, ``d`` depth, ``N = 2^d - 1`` nodes and ``L = 2^d`` leaves.

The soft forward is written as a recursion over the tree, which keeps the backward pass short and free of
divisions. For a node k with right-probability P_k (p_k, or [a_k >= 0] in hardened training, then
flipped to 1 - P_k where region leak swapped the children) and children left/right:

    reach:      R_root = 1,       R_left = R_k (1 - P_k),      R_right = R_k P_k
    mixture:    Y_leaf j = L_j(x),  Y_k = (1 - P_k) Y_left + P_k Y_right,      y = Y_root

so pi_j = R_(leaf j) and y = sum_j pi_j L_j(x). Its derivatives, with g = dL/dy:

    dL/dL_j(x) = pi_j g                     dL/dP_k = R_k <g, Y_right - Y_left>

and dL/da_k = dL/dp_k * p_k (1 - p_k) with dL/dp_k = dL/dP_k, or -dL/dP_k at a leaked (flipped) node,
or 0 in hardened training (P_k is then a constant). See docs/leaf_fff_gradients.md for the derivation.
"""
import numpy as np

from .. import activations
from ..activations import expit
from .._tree import n_leaves, n_nodes

#: probabilities are clamped to [EPS, 1 - EPS] inside the entropy (SPEC §1)
ENTROPY_EPS = 1e-6

MASTER_NAMES = ("magic_w1", "magic_b1", "magic_w2", "magic_b2", "k")

#: kappa, the master-leaf mixing logit, starts at 0.5 (SPEC §3)
KAPPA_INIT = 0.5


def param_shapes(input_width, leaf_width, output_width, depth, master_leaf=0):
    """Ordered ``{name: shape}`` of the parameters (the PyTorch package's state_dict).

    With ``master_leaf = m > 0`` the eFFF master leaf follows, in the eFFF authors' layout:
    ``magic_w1`` (1, D, m), ``magic_b1`` (1, m), ``magic_w2`` (1, m, O), ``magic_b2`` (1, O), ``k`` ().
    """
    N, L = n_nodes(depth), n_leaves(depth)
    D, l, O, m = input_width, leaf_width, output_width, master_leaf
    shapes = {
        "node_weights": (N, D),
        "node_biases": (N, 1),
        "w1s": (L, D, l),
        "b1s": (L, l),
        "w2s": (L, l, O),
        "b2s": (L, O),
    }
    if m:
        shapes.update(magic_w1=(1, D, m), magic_b1=(1, m), magic_w2=(1, m, O), magic_b2=(1, O), k=())
    return shapes


def init_params(input_width, leaf_width, output_width, depth, rng, dtype=np.float32, master_leaf=0):
    """Uniform initialisation of SPEC §1: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = D or l.

    The master leaf's layers are initialised like a leaf of width m; kappa starts at 0.5.
    """
    shapes = param_shapes(input_width, leaf_width, output_width, depth, master_leaf)
    params = {}
    for name, shape in shapes.items():
        if name == "k":
            params[name] = np.array(KAPPA_INIT, dtype=dtype)
            continue
        fan_in = {"w2s": leaf_width, "b2s": leaf_width, "magic_w2": master_leaf,
                  "magic_b2": master_leaf}.get(name, input_width)
        bound = 1.0 / np.sqrt(fan_in)
        params[name] = rng.uniform(-bound, bound, size=shape).astype(dtype)
    return params


def has_master_leaf(params):
    return "magic_w1" in params


def master_forward(params, x, activation):
    """The eFFF master leaf M(x) = act(x @ mw1 + mb1) @ mw2 + mb2: returns ``(M, z, fz)``."""
    f, _ = activations.get(activation)
    z = x @ params["magic_w1"][0] + params["magic_b1"][0]
    fz = f(z)
    return fz @ params["magic_w2"][0] + params["magic_b2"][0], z, fz


def master_mix(params, x, y_tree, activation):
    """y = s y_tree + (1 - s) M(x) with s = sigmoid(kappa); returns ``(y, parts)`` for the backward."""
    M, z, fz = master_forward(params, x, activation)
    s = expit(params["k"])
    return s * y_tree + (1 - s) * M, dict(y_tree=y_tree, M=M, mz=z, mfz=fz, s=s)


def master_backward(params, x, parts, g, activation):
    """Gradients of the mix: returns ``(grads of the master params, g for y_tree, dL/dx through M)``.

    dL/dkappa = s (1 - s) sum <g, y_tree - M>;  dL/dy_tree = s g;  dL/dM = (1 - s) g.
    """
    s = parts["s"]
    _, df = activations.get(activation)
    gM = (1 - s) * g
    dz = (gM @ params["magic_w2"][0].T) * df(parts["mz"], parts["mfz"])
    grads = {
        "magic_w1": (x.T @ dz)[None],
        "magic_b1": dz.sum(axis=0)[None],
        "magic_w2": (parts["mfz"].T @ gM)[None],
        "magic_b2": gM.sum(axis=0)[None],
        "k": np.asarray(s * (1 - s) * np.sum(g * (parts["y_tree"] - parts["M"]))),
    }
    return grads, s * g, dz @ params["magic_w1"][0].T


# ---------------------------------------------------------------------------------------------
# routing
# ---------------------------------------------------------------------------------------------
def node_logits(params, x):
    """a_k(x) = node_weights[k] . x + node_biases[k] for every node: (n, D) -> (n, N)."""
    return x @ params["node_weights"].T + params["node_biases"][:, 0]


def entropy(p):
    """H(p) = -p ln p - (1-p) ln(1-p) with p clamped to [1e-6, 1 - 1e-6] (elementwise)."""
    q = np.clip(p, ENTROPY_EPS, 1 - ENTROPY_EPS)
    return -q * np.log(q) - (1 - q) * np.log(1 - q)


def d_entropy_d_logit(a, p):
    """dH(p(a))/da = -a p (1-p) where p lies inside the clamp, 0 outside."""
    inside = (p >= ENTROPY_EPS) & (p <= 1 - ENTROPY_EPS)
    return np.where(inside, -a * p * (1 - p), 0)


def reach_probabilities(P):
    """Per level m, the probability R_m (n, 2^m) of reaching each node of that level, then the leaves.

    Returns a list of d+1 arrays; the last one, (n, L), holds the leaf weights pi_j.
    """
    n, N = P.shape
    depth = int(np.log2(N + 1))
    R = [np.ones((n, 1), dtype=P.dtype)]
    for m in range(depth):
        Pm = P[:, (1 << m) - 1:(1 << (m + 1)) - 1]  # (n, 2^m) this level's right-probabilities
        nxt = np.empty((n, 2 << m), dtype=P.dtype)
        nxt[:, 0::2] = R[m] * (1 - Pm)  # left children
        nxt[:, 1::2] = R[m] * Pm  # right children
        R.append(nxt)
    return R


# ---------------------------------------------------------------------------------------------
# leaves
# ---------------------------------------------------------------------------------------------
def all_leaves_forward(params, x, activation, dropout_mask=None):
    """Every leaf on every sample (training width): returns ``(out, z, fz, h)``.

    z = x @ w1s[j] + b1s[j]  (n, L, l);  fz = act(z);  h = fz times the dropout mask  (n, L, l);
    out = h @ w2s[j] + b2s[j]  (n, L, O).
    """
    w1_flat = flat_w1s(params["w1s"])
    n, (L, _, l) = x.shape[0], params["w1s"].shape
    z = (x @ w1_flat).reshape(n, L, l) + params["b1s"]  # one GEMM for all leaves
    f, _ = activations.get(activation)
    fz = f(z)
    h = fz if dropout_mask is None else fz * dropout_mask
    out = np.matmul(h.transpose(1, 0, 2), params["w2s"]).transpose(1, 0, 2) + params["b2s"]
    return out, z, fz, h


def flat_w1s(w1s):
    """All leaves' first layers side by side: (L, D, l) -> (D, L*l), column j*l + k = w1s[j, :, k]."""
    L, D, l = w1s.shape
    return np.ascontiguousarray(w1s.transpose(1, 0, 2)).reshape(D, L * l)


def leaf_forward(params, x, j, activation):
    """Leaf j alone on a batch: (n, D) -> (n, O)."""
    f, _ = activations.get(activation)
    h = f(x @ params["w1s"][j] + params["b1s"][j])
    return h @ params["w2s"][j] + params["b2s"][j]


# ---------------------------------------------------------------------------------------------
# soft (training) forward and its backward
# ---------------------------------------------------------------------------------------------
def soft_forward(params, x, activation="relu", flip_mask=None, dropout_mask=None, hardened=False):
    """The training forward: y = sum_j pi_j(x) L_j(x).

    Parameters
    ----------
    params : dict of ndarray
    x : ndarray of shape (n, D)
    activation : str
    flip_mask : ndarray of bool, shape (n, N), optional
        Region leak: where True, P_k = 1 - p_k.
    dropout_mask : ndarray of shape (n, L, l), optional
        Multiplies the hidden activations (already scaled by 1 / (1 - dropout)).
    hardened : bool
        Replace p_k by [a_k >= 0] (train_hardened); routing then gets no task gradient.

    Returns
    -------
    y : ndarray of shape (n, O)
    cache : dict
        Everything :func:`soft_backward` needs.
    """
    a = node_logits(params, x)  # (n, N)
    p = expit(a)  # (n, N) weight of the right child
    P = (a >= 0).astype(x.dtype) if hardened else p
    if flip_mask is not None:
        P = np.where(flip_mask, 1 - P, P)
    R = reach_probabilities(P)
    out, z, fz, h = all_leaves_forward(params, x, activation, dropout_mask)  # (n, L, O)
    # mixture bottom-up: Y at level d is the leaves, Y_k = (1 - P_k) Y_left + P_k Y_right
    depth = len(R) - 1
    Y = [None] * (depth + 1)
    Y[depth] = out
    for m in range(depth - 1, -1, -1):
        Pm = P[:, (1 << m) - 1:(1 << (m + 1)) - 1, None]  # (n, 2^m, 1)
        Y[m] = (1 - Pm) * Y[m + 1][:, 0::2] + Pm * Y[m + 1][:, 1::2]
    y = Y[0][:, 0]
    master = None
    if has_master_leaf(params):
        y, master = master_mix(params, x, y, activation)
    cache = dict(x=x, a=a, p=p, P=P, R=R, Y=Y, z=z, fz=fz, h=h, flip_mask=flip_mask,
                 dropout_mask=dropout_mask, hardened=hardened, activation=activation, master=master)
    return y, cache


def hardening_loss(cache):
    """L_harden = mean over the batch and all nodes of H(p_k(x)); 0 for depth 0 or an empty batch."""
    p = cache["p"]
    return float(entropy(p).mean()) if p.size else 0.0


def hard_leaf_counts(cache):
    """How many samples of the batch are hard-routed to each leaf: (L,) int64 (no gradient)."""
    a = cache["a"]
    return np.bincount(hard_leaf_index_from_logits(a), minlength=a.shape[1] + 1)


def hard_leaf_fractions(cache):
    """f_j: the fraction of the batch hard-routed to leaf j (SPEC §3; no gradient)."""
    a = cache["a"]
    return hard_leaf_counts(cache).astype(a.dtype) / max(a.shape[0], 1)


def balance_loss(cache):
    """L_balance = 2^d sum_j f_j P_j with P_j the batch mean of pi_j (SPEC §3)."""
    pi = cache["R"][-1]
    if pi.shape[0] == 0:
        return 0.0
    f = hard_leaf_fractions(cache)
    return float(pi.shape[1] * np.dot(f, pi.mean(axis=0)))


def soft_backward(params, cache, dL_dy, hardening=0.0, balance=0.0):
    """Gradients of L = L_task + hardening * L_harden + balance * L_balance.

    Parameters
    ----------
    params : dict of ndarray
    cache : dict from :func:`soft_forward`
    dL_dy : ndarray of shape (n, O)
        dL_task/dy (any upstream gradient).
    hardening, balance : float
        The weights h and alpha.

    Returns
    -------
    grads : dict of ndarray, the same keys and shapes as ``params``
    dL_dx : ndarray of shape (n, D)
    """
    x, a, p, P, R, Y = (cache[k] for k in ("x", "a", "p", "P", "R", "Y"))
    z, h, dropout_mask = cache["z"], cache["h"], cache["dropout_mask"]
    n, N = a.shape
    depth = len(R) - 1
    pi = R[-1]  # (n, L)
    g = dL_dy
    master_grads, dx_master = {}, 0
    if cache["master"] is not None:
        master_grads, g, dx_master = master_backward(params, x, cache["master"], g, cache["activation"])

    # leaves: dL/dout_j = pi_j g
    dL_dout = pi[:, :, None] * g[:, None, :]  # (n, L, O)
    grads = {"b2s": dL_dout.sum(axis=0)}
    grads["w2s"] = np.matmul(h.transpose(1, 2, 0), dL_dout.transpose(1, 0, 2))  # (L, l, O)
    dL_dh = np.matmul(dL_dout.transpose(1, 0, 2), params["w2s"].transpose(0, 2, 1)).transpose(1, 0, 2)
    if dropout_mask is not None:
        dL_dh = dL_dh * dropout_mask
    _, df = activations.get(cache["activation"])
    dL_dz = dL_dh * df(z, cache["fz"])  # (n, L, l)
    grads["b1s"] = dL_dz.sum(axis=0)
    L, D, l = params["w1s"].shape
    # one GEMM for all leaves, (D, n) @ (n, L*l); a broadcast matmul over the leaves falls off BLAS
    dL_dz_flat = dL_dz.reshape(n, L * l)
    grads["w1s"] = np.ascontiguousarray((x.T @ dL_dz_flat).reshape(D, L, l).transpose(1, 0, 2))
    dL_dx = dL_dz_flat @ flat_w1s(params["w1s"]).T

    # routing: dL/dP_k = R_k <g, Y_right - Y_left>  (+ the balance term through pi)
    dL_da = np.zeros_like(a)
    if depth > 0:
        dL_dP = np.empty_like(P)
        if balance:
            # L_balance = L sum_j f_j mean_n(pi_j): dL/dpi_j = balance * L f_j / n, spread up the tree
            f = hard_leaf_fractions(cache)
            coef = balance * pi.shape[1] * f / max(n, 1)  # (L,)
            up = [None] * (depth + 1)  # up[m]: (n or 1, 2^m) dL_balance/dR at level m
            up[depth] = np.broadcast_to(coef, pi.shape)
        for m in range(depth - 1, -1, -1):
            sl = slice((1 << m) - 1, (1 << (m + 1)) - 1)
            diff = Y[m + 1][:, 1::2] - Y[m + 1][:, 0::2]  # (n, 2^m, O)
            dL_dP[:, sl] = R[m] * np.einsum("no,nko->nk", g, diff)
            if balance:
                # R_left = R (1 - P), R_right = R P
                dL_dP[:, sl] += R[m] * (up[m + 1][:, 1::2] - up[m + 1][:, 0::2])
                Pm = P[:, sl]
                up[m] = (1 - Pm) * up[m + 1][:, 0::2] + Pm * up[m + 1][:, 1::2]
        if not cache["hardened"]:
            flip = cache["flip_mask"]
            dL_dp = dL_dP if flip is None else np.where(flip, -dL_dP, dL_dP)
            dL_da += dL_dp * p * (1 - p)
        if hardening and n:
            dL_da += (hardening / (n * N)) * d_entropy_d_logit(a, p)
    grads["node_weights"] = dL_da.T @ x
    grads["node_biases"] = dL_da.sum(axis=0)[:, None]
    dL_dx += dL_da @ params["node_weights"] + dx_master
    grads.update(master_grads)
    grads = {k: np.asarray(grads[k]).astype(x.dtype, copy=False) for k in params}
    return grads, dL_dx.astype(x.dtype, copy=False)


# ---------------------------------------------------------------------------------------------
# hard (inference) forward
# ---------------------------------------------------------------------------------------------
def hard_leaf_index_from_logits(a):
    """Descend with all logits known: k = 2k + 1 + [a_k >= 0], d times; returns the leaf j (n,)."""
    n, N = a.shape
    depth = int(np.log2(N + 1))
    k = np.zeros(n, dtype=np.intp)
    rows = np.arange(n)
    for _ in range(depth):
        k = 2 * k + 1 + (a[rows, k] >= 0)
    return k - N


def hard_leaf_index(params, x):
    """The leaf each sample reaches, computing only the d logits on its path: (n, D) -> (n,) int.

    Tie rule (SPEC §1): a_k >= 0 goes right.
    """
    nw, nb = params["node_weights"], params["node_biases"][:, 0]
    N = nw.shape[0]
    depth = int(np.log2(N + 1))
    k = np.zeros(x.shape[0], dtype=np.intp)
    for _ in range(depth):
        a_k = np.einsum("nd,nd->n", x, nw[k]) + nb[k]  # one dot product per sample
        k = 2 * k + 1 + (a_k >= 0)
    return k - N


def hard_forward(params, x, activation="relu"):
    """Log-time inference: d node dot products, then one leaf (b2s included), mixed with the master
    leaf if there is one. (n, D) -> (n, O)."""
    j = hard_leaf_index(params, x)
    y = np.empty((x.shape[0], params["b2s"].shape[1]), dtype=x.dtype)
    for leaf in np.unique(j):
        rows = np.nonzero(j == leaf)[0]
        y[rows] = leaf_forward(params, x[rows], leaf, activation)
    if has_master_leaf(params):
        y, _ = master_mix(params, x, y, activation)
    return y


def usage(params, x):
    """Routing mass per node and per leaf: soft (sum of path probabilities) and hard (sample counts).

    Returns
    -------
    dict with ``soft_node`` (N,), ``soft_leaf`` (L,), ``hard_node`` (N,), ``hard_leaf`` (L,)
    """
    a = node_logits(params, x)
    N = a.shape[1]
    R = reach_probabilities(expit(a))
    soft_node = np.concatenate([r.sum(axis=0) for r in R[:-1]]) if N else np.zeros(0)
    hard_leaf = np.bincount(hard_leaf_index_from_logits(a), minlength=N + 1)
    return {"soft_node": soft_node, "soft_leaf": R[-1].sum(axis=0),
            "hard_node": subtree_sums(hard_leaf), "hard_leaf": hard_leaf}


def subtree_sums(leaf_values):
    """Per node, the sum of ``leaf_values`` (L,) over the leaves below it: (L,) -> (N,) in heap order."""
    L = leaf_values.shape[0]
    out = np.zeros(L - 1, dtype=leaf_values.dtype)
    counts = leaf_values
    for m in range(L.bit_length() - 2, -1, -1):
        counts = counts[0::2] + counts[1::2]
        out[(1 << m) - 1:(1 << (m + 1)) - 1] = counts
    return out
