"""Numba kernels: log-time hard inference for the leaf FFF (SPEC §1) and the neuron tree (SPEC §2).

Every ``@njit`` function of the package lives in this file, so that Numba's on-disk cache
(``cache=True``) sees an edit to any callee. Compilation is lazy (no eager signatures: importing
fffcpu compiles nothing); :func:`fffcpu._kernel_api.warmup` compiles ahead of time on request.

Conventions
-----------
- Kernels take C-contiguous arrays and integers only, and do no validation: the public layers and
  :mod:`fffcpu._kernel_api` validate, convert and allocate.
- ``act`` is an integer activation code (``fffcpu.activations.ACTIVATION_CODES``):
  relu 0, gelu 1 (exact, erf form), tanh 2, sigmoid 3, identity 4.
- Tie rules (SPEC): the leaf FFF goes right when ``a >= 0``, the neuron tree when ``a > 0``. With
  ``nsz`` a dot product may come out as -0.0 where NumPy gives +0.0; both compare equal to 0, so
  exact ties route exactly as in the reference.
- One fastmath set for the whole file, :data:`FASTMATH`, without ``nnan``/``ninf`` so that NaN and
  inf keep their IEEE meaning. ``reassoc`` lets LLVM split a dot product into vector partial sums;
  its rounding then differs from NumPy/BLAS in the last bits (a tolerance matter, not a routing rule).

Speed
-----
Batch kernels group samples that share a tree node, so each weight row is read from memory once per
group and reused from cache (see ``docs/kernels.md``):

- neuron tree: the logits of the top ``K`` levels are computed per sample (their rows stay in L2);
  the samples are bucketed by their node at level ``K``; each subtree below is walked depth-first
  with its bucket, one node at a time for the whole group (a group of one sample finishes alone);
  then the bucket's outputs are summed per sample in path order, four output rows per pass.
- leaf FFF: routing per sample (all node rows fit in L2), then samples are bucketed by leaf and each
  leaf's two small matrices are applied to its bucket back to back.
"""
import math

import numpy as np
from numba import njit, prange

#: fastmath flags for every kernel: no ``nnan``/``ninf`` (NaN and inf keep working)
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

_SERIAL = dict(cache=True, nogil=True, fastmath=FASTMATH)
_PARALLEL = dict(cache=True, nogil=True, fastmath=FASTMATH, parallel=True)

_SQRT1_2 = 0.7071067811865476

#: neuron tree: target number of samples per bucket below the per-sample top levels (x and y rows
#: of a bucket, 2 * 64 * O * 4 bytes for O = 768 float32, stay in a 1 MB L2 next to the rows)
NT_BUCKET = 64
#: below this batch size the batch entry points loop over samples (no bucketing)
SMALL_BATCH = 16


# ---------------------------------------------------------------------------------------------
# scalar helpers
# ---------------------------------------------------------------------------------------------
@njit(**_SERIAL)
def activate(z, act):
    """Activation ``act`` of a scalar, computed in float64 (callers cast back to their dtype)."""
    v = float(z)
    if act == 0:
        return v if v > 0.0 else 0.0
    if act == 1:
        return 0.5 * v * (1.0 + math.erf(v * _SQRT1_2))
    if act == 2:
        return math.tanh(v)
    if act == 3:
        if v >= 0.0:
            return 1.0 / (1.0 + math.exp(-v))
        e = math.exp(v)
        return e / (1.0 + e)
    return v


@njit(**_SERIAL)
def dot_row(w, r, x):
    """``w[r] . x`` accumulated in the arrays' dtype (vectorised partial sums under ``reassoc``)."""
    acc = x.dtype.type(0)
    for i in range(x.shape[0]):
        acc += w[r, i] * x[i]
    return acc


@njit(**_SERIAL)
def dot_row4(w, r, x0, x1, x2, x3):
    """``w[r] . x0 ... w[r] . x3``: one pass over the row for four samples (row loads shared)."""
    a0 = x0.dtype.type(0)
    a1 = a0
    a2 = a0
    a3 = a0
    for i in range(x0.shape[0]):
        wi = w[r, i]
        a0 += wi * x0[i]
        a1 += wi * x1[i]
        a2 += wi * x2[i]
        a3 += wi * x3[i]
    return a0, a1, a2, a3


@njit(**_SERIAL)
def axpy_row(g, w, r, y):
    """``y += g * w[r]``."""
    for o in range(y.shape[0]):
        y[o] += g * w[r, o]


@njit(**_SERIAL)
def all_finite(x):
    """True when every value of the C-contiguous array ``x`` is finite (cheap input check)."""
    flat = x.reshape(x.size)
    bad = flat.dtype.type(0)
    for i in range(flat.shape[0]):
        bad += flat[i] * 0  # 0 for finite values, NaN as soon as one is inf or NaN
    return bad == 0


# ---------------------------------------------------------------------------------------------
# leaf FFF (SPEC §1): k = 0; d times k = 2k + 1 + [a_k >= 0]; y = L_(k - n_nodes)(x)
# ---------------------------------------------------------------------------------------------
@njit(**_SERIAL)
def leaf_route_one(node_weights, node_biases, x):
    """The leaf index j reached by one sample ``x`` (D,): d dot products, no allocation."""
    n_nodes = node_weights.shape[0]
    k = 0
    while k < n_nodes:
        a = dot_row(node_weights, k, x) + node_biases[k, 0]
        k = 2 * k + (2 if a >= 0 else 1)
    return k - n_nodes


@njit(**_SERIAL)
def leaf_hidden(w1s, b1s, j, act, x, h):
    """``h = act(x @ w1s[j] + b1s[j])`` for one sample: ``x`` (D,), ``h`` (l,). No allocation.

    Eight input rows per pass over ``h`` (the inner loop runs over the l contiguous hidden units of
    eight rows), so ``h`` is read and written D / 8 times instead of D times.
    """
    l = h.shape[0]
    D = x.shape[0]
    for c in range(l):
        h[c] = 0
    i = 0
    while i + 8 <= D:
        x0 = x[i]
        x1 = x[i + 1]
        x2 = x[i + 2]
        x3 = x[i + 3]
        x4 = x[i + 4]
        x5 = x[i + 5]
        x6 = x[i + 6]
        x7 = x[i + 7]
        for c in range(l):
            h[c] += (((x0 * w1s[j, i, c] + x1 * w1s[j, i + 1, c]) + (x2 * w1s[j, i + 2, c] + x3 * w1s[j, i + 3, c]))
                     + ((x4 * w1s[j, i + 4, c] + x5 * w1s[j, i + 5, c]) + (x6 * w1s[j, i + 6, c] + x7 * w1s[j, i + 7, c])))
        i += 8
    while i < D:
        xi = x[i]
        for c in range(l):
            h[c] += xi * w1s[j, i, c]
        i += 1
    for c in range(l):
        h[c] = activate(h[c] + b1s[j, c], act)


@njit(**_SERIAL)
def leaf_output(w2s, b2s, j, h, y):
    """``y = h @ w2s[j] + b2s[j]`` for one sample: ``h`` (l,), ``y`` (O,), four rows per pass over ``y``.

    A short last chunk repeats its last row with weight 0 (finite weights: adds exact zeros).
    No allocation.
    """
    l = h.shape[0]
    dt = y.dtype.type
    for o in range(y.shape[0]):
        y[o] = b2s[j, o]
    for c0 in range(0, l, 4):
        c1 = min(c0 + 1, l - 1)
        c2 = min(c0 + 2, l - 1)
        c3 = min(c0 + 3, l - 1)
        g0 = h[c0]
        g1 = h[c1] if c0 + 1 < l else dt(0)
        g2 = h[c2] if c0 + 2 < l else dt(0)
        g3 = h[c3] if c0 + 3 < l else dt(0)
        for o in range(y.shape[0]):
            y[o] += (g0 * w2s[j, c0, o] + g1 * w2s[j, c1, o]) + (g2 * w2s[j, c2, o] + g3 * w2s[j, c3, o])


@njit(**_SERIAL)
def leaf_apply_one(w1s, b1s, w2s, b2s, j, act, x, h, y):
    """Leaf j on one sample: ``y = act(x @ w1s[j] + b1s[j]) @ w2s[j] + b2s[j]``.

    ``x`` (D,), scratch ``h`` (l,), output ``y`` (O,). No allocation; loops run over contiguous rows.
    """
    leaf_hidden(w1s, b1s, j, act, x, h)
    leaf_output(w2s, b2s, j, h, y)


@njit(**_SERIAL)
def leaf_forward_one(node_weights, node_biases, w1s, b1s, w2s, b2s, act, x, h, y):
    """Hard leaf-FFF inference of one sample.

    Parameters
    ----------
    node_weights : ndarray of shape (n_nodes, D)
    node_biases : ndarray of shape (n_nodes, 1)
    w1s, b1s, w2s, b2s : ndarrays of shapes (L, D, l), (L, l), (L, l, O), (L, O)
    act : int
        Activation code of the leaves.
    x : ndarray of shape (D,)
    h : ndarray of shape (l,)
        Scratch for the hidden layer.
    y : ndarray of shape (O,)
        Output, overwritten.

    Performance contract: d + 1 passes over weight rows, no allocation.
    """
    j = leaf_route_one(node_weights, node_biases, x)
    leaf_apply_one(w1s, b1s, w2s, b2s, j, act, x, h, y)


@njit(**_SERIAL)
def leaf_forward_serial(node_weights, node_biases, w1s, b1s, w2s, b2s, act, X, H, Y):
    """:func:`leaf_forward_one` on each row of ``X`` (n, D) into ``Y`` (n, O); ``H`` (l,) scratch.

    Performance contract: serial, no allocation (for one sample and tiny batches).
    """
    for s in range(X.shape[0]):
        leaf_forward_one(node_weights, node_biases, w1s, b1s, w2s, b2s, act, X[s], H, Y[s])


@njit(**_SERIAL)
def bucket_by(keys, n_keys, offsets, perm):
    """Counting sort: ``perm`` lists the samples grouped by key; key q owns perm[offsets[q]:offsets[q+1]].

    ``keys`` (n,) ints in [0, n_keys); ``offsets`` (n_keys + 1,) and ``perm`` (n,) are filled. Stable.
    """
    for q in range(n_keys + 1):
        offsets[q] = 0
    for s in range(keys.shape[0]):
        offsets[keys[s] + 1] += 1
    for q in range(n_keys):
        offsets[q + 1] += offsets[q]
    for s in range(keys.shape[0]):  # offsets[q] runs ahead while filling, then is restored
        q = keys[s]
        perm[offsets[q]] = s
        offsets[q] += 1
    for q in range(n_keys, 0, -1):
        offsets[q] = offsets[q - 1]
    offsets[0] = 0


@njit(**_SERIAL)
def leaf_apply_group(w1s, b1s, w2s, b2s, j, act, X, perm, lo, hi, H, Y):
    """Leaf j on the samples ``perm[lo:hi]`` of ``X``; hidden rows in ``H[lo:hi]``, outputs in ``Y``.

    The samples of one leaf run back to back, so the leaf's weights (2 * D * l values) are read
    from memory once and from L2 for the others. No allocation.
    """
    for p in range(lo, hi):
        s = perm[p]
        leaf_apply_one(w1s, b1s, w2s, b2s, j, act, X[s], H[p], Y[s])


@njit(**_PARALLEL)
def leaf_forward_batch(node_weights, node_biases, w1s, b1s, w2s, b2s, act, X, Y):
    """Hard leaf-FFF inference of a batch ``X`` (n, D) into ``Y`` (n, O).

    Performance contract: routing parallel over samples; then samples are bucketed by leaf
    (counting sort) and the loop over leaves is parallel, each leaf reading its weights once for its
    whole bucket. Scratch: O(n * l) (leaf index, permutation, hidden rows); no allocation in the loops.
    """
    n = X.shape[0]
    L = w1s.shape[0]
    l = w1s.shape[2]
    leaf = np.empty(n, np.int64)
    for s in prange(n):
        leaf[s] = leaf_route_one(node_weights, node_biases, X[s])
    offsets = np.empty(L + 1, np.int64)
    perm = np.empty(n, np.int64)
    bucket_by(leaf, L, offsets, perm)
    H = np.empty((n, l), X.dtype)
    for j in prange(L):
        lo = offsets[j]
        hi = offsets[j + 1]
        if hi > lo:
            leaf_apply_group(w1s, b1s, w2s, b2s, j, act, X, perm, lo, hi, H, Y)


# ---------------------------------------------------------------------------------------------
# neuron tree (SPEC §2): per tree, i_(m+1) = 2 i_m + 1 + [a > 0]; y += act(a) * w_out_t[row]
# ---------------------------------------------------------------------------------------------
@njit(**_SERIAL)
def nt_descend_one(w_in, b_in, w_out_t, base, k, level, depth, act, x, y):
    """Walk one tree (rows ``base + node``) from node ``k`` at ``level`` down to ``depth``.

    Adds ``act(a) * w_out_t[row]`` to ``y`` (O,) at every visited node; returns the node index
    reached one level below the last one visited. No allocation.
    """
    for _ in range(level, depth + 1):
        r = base + k
        a = dot_row(w_in, r, x) + b_in[r]
        g = y.dtype.type(activate(a, act))
        axpy_row(g, w_out_t, r, y)
        k = 2 * k + (2 if a > 0 else 1)
    return k


@njit(**_SERIAL)
def nt_forward_one(w_in, b_in, w_out_t, depth, parallel_size, act, x, y):
    """Hard neuron-tree inference of one sample, all parallel trees.

    Parameters
    ----------
    w_in : ndarray of shape (P * n_nodes, D)
        ``linear_in.weight``; tree t, node k is row t * n_nodes + k.
    b_in : ndarray of shape (P * n_nodes,)
    w_out_t : ndarray of shape (P * n_nodes, O)
        ``linear_out.weight.T``, C-contiguous (one output row per neuron).
    depth, parallel_size, act : int
    x : ndarray of shape (D,)
    y : ndarray of shape (O,)
        Output, overwritten.

    Performance contract: P * (depth + 1) dot products and row updates, no allocation.
    """
    n_nodes = (1 << (depth + 1)) - 1
    for o in range(y.shape[0]):
        y[o] = 0
    for t in range(parallel_size):
        nt_descend_one(w_in, b_in, w_out_t, t * n_nodes, 0, 0, depth, act, x, y)


@njit(**_SERIAL)
def nt_forward_serial(w_in, b_in, w_out_t, depth, parallel_size, act, X, Y):
    """:func:`nt_forward_one` on each row of ``X`` (n, D) into ``Y`` (n, O).

    Performance contract: serial, no allocation (for one sample and tiny batches).
    """
    for s in range(X.shape[0]):
        nt_forward_one(w_in, b_in, w_out_t, depth, parallel_size, act, X[s], Y[s])


@njit(**_SERIAL)
def nt_group_logits(w_in, b_in, r, level, X, perm, lo, hi, A, right):
    """Logits of node row r for the samples ``perm[lo:hi]`` into ``A[s, level]``, then reorder
    ``perm[lo:hi]`` so that the samples going left (a <= 0) come first; returns the split point.

    The row ``w_in[r]`` is read once per four samples and stays in L1 across the group.
    """
    b = b_in[r]
    p = lo
    while p + 4 <= hi:
        s0 = perm[p]
        s1 = perm[p + 1]
        s2 = perm[p + 2]
        s3 = perm[p + 3]
        a0, a1, a2, a3 = dot_row4(w_in, r, X[s0], X[s1], X[s2], X[s3])
        a0 += b
        a1 += b
        a2 += b
        a3 += b
        A[s0, level] = a0
        A[s1, level] = a1
        A[s2, level] = a2
        A[s3, level] = a3
        right[s0] = a0 > 0
        right[s1] = a1 > 0
        right[s2] = a2 > 0
        right[s3] = a3 > 0
        p += 4
    while p < hi:
        s = perm[p]
        a = dot_row(w_in, r, X[s]) + b
        A[s, level] = a
        right[s] = a > 0
        p += 1
    i = lo
    j = hi - 1
    while i <= j:
        if right[perm[i]]:
            tmp = perm[i]
            perm[i] = perm[j]
            perm[j] = tmp
            j -= 1
        else:
            i += 1
    return i


@njit(**_SERIAL)
def nt_logits_one(w_in, b_in, base, k, level, depth, x, a_out):
    """Logits along one sample's path from node ``k`` at ``level`` down to ``depth`` into
    ``a_out[level:depth + 1]``; returns the node index one level below. No allocation."""
    for m in range(level, depth + 1):
        r = base + k
        a = dot_row(w_in, r, x) + b_in[r]
        a_out[m] = a
        k = 2 * k + (2 if a > 0 else 1)
    return k


@njit(**_SERIAL)
def nt_subtree_logits(w_in, b_in, base, k0, level0, depth, X, perm, lo0, hi0, A, right, stack):
    """Depth-first walk of the subtree under node ``k0`` (at ``level0``) for samples ``perm[lo0:hi0]``,
    filling their logits ``A[s, level0:]``.

    Each node is computed once for the whole group of samples that reach it
    (:func:`nt_group_logits`); a group of one sample finishes its descent alone. On return
    ``perm[lo0:hi0]`` is ordered by path (left subtrees first). ``stack`` is int64 scratch of shape
    (>= depth + 2, 4). No allocation.
    """
    stack[0, 0] = k0
    stack[0, 1] = level0
    stack[0, 2] = lo0
    stack[0, 3] = hi0
    top = 1
    while top > 0:
        top -= 1
        k = stack[top, 0]
        level = stack[top, 1]
        lo = stack[top, 2]
        hi = stack[top, 3]
        if hi - lo == 1:
            nt_logits_one(w_in, b_in, base, k, level, depth, X[perm[lo]], A[perm[lo]])
            continue
        mid = nt_group_logits(w_in, b_in, base + k, level, X, perm, lo, hi, A, right)
        if level < depth:
            if hi > mid:
                stack[top, 0] = 2 * k + 2
                stack[top, 1] = level + 1
                stack[top, 2] = mid
                stack[top, 3] = hi
                top += 1
            if mid > lo:
                stack[top, 0] = 2 * k + 1
                stack[top, 1] = level + 1
                stack[top, 2] = lo
                stack[top, 3] = mid
                top += 1


@njit(**_SERIAL)
def nt_output_one(w_out_t, base, act, a, rows, accumulate, y):
    """``y (+)= sum_m act(a[m]) * w_out_t[base + node_m]`` along the path the logits ``a`` (levels,) take.

    ``rows`` (levels,) int64 scratch. The sum runs four rows at a time with ``y`` read and written
    once per four rows. ``accumulate`` False overwrites ``y``. No allocation.
    """
    levels = a.shape[0]
    dt = y.dtype.type
    k = 0
    for m in range(levels):
        rows[m] = base + k
        k = 2 * k + (2 if a[m] > 0 else 1)
        a[m] = dt(activate(a[m], act))  # the logit is no longer needed: keep the activation
    for m0 in range(0, levels, 4):
        # a short last chunk repeats its last row with weight 0 (finite weights: adds exact zeros)
        m1 = min(m0 + 1, levels - 1)
        m2 = min(m0 + 2, levels - 1)
        m3 = min(m0 + 3, levels - 1)
        g0 = a[m0]
        g1 = a[m1] if m0 + 1 < levels else dt(0)
        g2 = a[m2] if m0 + 2 < levels else dt(0)
        g3 = a[m3] if m0 + 3 < levels else dt(0)
        r0 = rows[m0]
        r1 = rows[m1]
        r2 = rows[m2]
        r3 = rows[m3]
        if m0 == 0 and not accumulate:
            for o in range(y.shape[0]):
                y[o] = (g0 * w_out_t[r0, o] + g1 * w_out_t[r1, o]) + (g2 * w_out_t[r2, o] + g3 * w_out_t[r3, o])
        else:
            for o in range(y.shape[0]):
                y[o] += (g0 * w_out_t[r0, o] + g1 * w_out_t[r1, o]) + (g2 * w_out_t[r2, o] + g3 * w_out_t[r3, o])


@njit(**_PARALLEL)
def nt_forward_batch(w_in, b_in, w_out_t, depth, parallel_size, act, X, Y):
    """Hard neuron-tree inference of a batch ``X`` (n, D) into ``Y`` (n, O), all parallel trees.

    Performance contract, per tree:
    1. logits of the top K levels (K about log2(n / 64), at least 3) per sample, parallel over samples
       (these rows stay in L2);
    2. samples bucketed by their node at level K (counting sort); the 2^K subtrees are walked in
       parallel, each depth-first with its bucket: every node's row is read once per group of samples
       (:func:`nt_subtree_logits`), leaving the samples ordered by path;
    3. right after its walk, the bucket's outputs, sample by sample in path order: the output rows
       of neighbouring samples are shared and hot in L1/L2, and each output row ``Y[s]`` is written
       once per four levels (:func:`nt_output_one`).
    Scratch O(n * depth + 2^K * depth); no allocation in the loops.
    """
    n = X.shape[0]
    levels = depth + 1
    n_nodes = (1 << levels) - 1
    K = 3
    while K < levels and (n >> (K + 1)) >= NT_BUCKET:
        K += 1
    if K > levels:
        K = levels
    n_sub = 1 << K
    first = n_sub - 1  # heap index of the first node of level K
    A = np.empty((n, levels), X.dtype)
    rows = np.empty((n, levels), np.int64)
    node = np.empty(n, np.int64)
    perm = np.empty(n, np.int64)
    offsets = np.empty(n_sub + 1, np.int64)
    right = np.empty(n, np.bool_)
    stacks = np.empty((n_sub, levels + 2, 4), np.int64)
    for t in range(parallel_size):
        base = t * n_nodes
        for s in prange(n):
            k = nt_logits_one(w_in, b_in, base, 0, 0, K - 1, X[s], A[s])
            node[s] = k - first
        bucket_by(node, n_sub, offsets, perm)
        for q in prange(n_sub):
            lo = offsets[q]
            hi = offsets[q + 1]
            if hi > lo and K < levels:
                nt_subtree_logits(w_in, b_in, base, first + q, K, depth, X, perm, lo, hi, A, right,
                                  stacks[q])
            for p in range(lo, hi):  # right away, while this bucket's rows are in L2
                s = perm[p]
                nt_output_one(w_out_t, base, act, A[s], rows[s], t > 0, Y[s])
