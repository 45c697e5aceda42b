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
- leaf FFF: routing by a depth-first walk that carries groups of samples (one chunk of the batch
  per thread), then samples are bucketed by leaf and each leaf's two small matrices are applied to
  its bucket four samples at a time, with register-resident accumulators in a stack block
  (:func:`_stack_block`) and the next leaf's weights prefetched (:func:`_prefetch`).
"""
import math

import numpy as np
from llvmlite import ir
from numba import carray, config, njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

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
def dot_row8(w, r, X, perm, p):
    """``w[r] . X[perm[p + m]]`` for m = 0..7: one pass over the row for eight samples."""
    x0 = X[perm[p]]
    x1 = X[perm[p + 1]]
    x2 = X[perm[p + 2]]
    x3 = X[perm[p + 3]]
    x4 = X[perm[p + 4]]
    x5 = X[perm[p + 5]]
    x6 = X[perm[p + 6]]
    x7 = X[perm[p + 7]]
    a0 = X.dtype.type(0)
    a1 = a0
    a2 = a0
    a3 = a0
    a4 = a0
    a5 = a0
    a6 = a0
    a7 = a0
    for i in range(x0.shape[0]):
        wi = w[r, i]
        a0 += wi * x0[i]
        a1 += wi * x1[i]
        a2 += wi * x2[i]
        a3 += wi * x3[i]
        a4 += wi * x4[i]
        a5 += wi * x5[i]
        a6 += wi * x6[i]
        a7 += wi * x7[i]
    return a0, a1, a2, a3, a4, a5, a6, a7


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
# accumulator blocks on the stack
# ---------------------------------------------------------------------------------------------
#: elements of a stack accumulator block: 4 samples x 16 hidden units, or 4 samples x 64 outputs
ACC_BLOCK = 256
#: hidden units per register block (16 float32 lanes: one AVX-512 register per sample)
HID_BLOCK = 16
#: outputs per register block (four AVX-512 registers per sample)
OUT_BLOCK = 64


@intrinsic
def _stack_block(typingctx, dtype):
    """A pointer to ``ACC_BLOCK`` uninitialised elements of ``dtype`` in the calling kernel's frame.

    Why: an accumulator kept in an array argument may alias the weights as far as LLVM knows, so it
    is stored and reloaded at every step (a store-to-load dependency per weight row, 4x to 5x slower
    for a leaf of 16 units). Stack memory provably aliases nothing: a fixed-size loop over it becomes
    FMAs into registers. Wrap with ``carray(ptr, ACC_BLOCK)``; never return it or store it.
    """
    elt = dtype.dtype

    def codegen(context, builder, signature, args):
        size = context.get_constant(types.intp, ACC_BLOCK)
        return cgutils.alloca_once(builder, context.get_value_type(elt), size=size)

    return types.CPointer(elt)(dtype), codegen


@intrinsic
def _prefetch(typingctx, arr, offset):
    """Hint the CPU to bring ``arr``'s element at flat ``offset`` (from its first element) into L2.

    Why: a batch reads every leaf's weights (25 MB for leaf-768-d8-l16) once from memory; fetching
    leaf j+1's rows while leaf j computes overlaps that traffic with arithmetic. A hint never faults.
    """
    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), cgutils.voidptr_t)
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [cgutils.voidptr_t, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch")
        builder.call(fn, [ptr, i32(0), i32(2), i32(1)])  # read, keep in L2, data cache
        return context.get_dummy_value()

    return types.none(arr, types.intp), codegen


if config.DISABLE_JIT:  # pure Python (NUMBA_DISABLE_JIT=1, e.g. coverage): plain stand-ins
    def _stack_block(dtype):  # noqa: F811
        return np.empty(ACC_BLOCK, dtype)

    def carray(block, size):  # noqa: F811
        return block[:size]

    def _prefetch(arr, offset):  # noqa: F811
        return None


# ---------------------------------------------------------------------------------------------
# leaf FFF (SPEC §1): k = 0; d times k = 2k + 1 + [a_k >= 0]; y = L_(k - n_nodes)(x)
# ---------------------------------------------------------------------------------------------
@njit(**_SERIAL)
def leaf_route_from(node_weights, node_biases, k, x):
    """The leaf index j that one sample ``x`` (D,) reaches from node ``k``. No allocation."""
    n_nodes = node_weights.shape[0]
    while k < n_nodes:
        a = dot_row(node_weights, k, x) + node_biases[k, 0]
        k = 2 * k + (2 if a >= 0 else 1)
    return k - n_nodes


@njit(**_SERIAL)
def leaf_route_one(node_weights, node_biases, x):
    """The leaf index j reached by one sample ``x`` (D,): d dot products, no allocation."""
    return leaf_route_from(node_weights, node_biases, 0, x)


@njit(**_SERIAL)
def leaf_route_group(node_weights, node_biases, X, perm, lo0, hi0, leaf, right, stack):
    """The leaf index of every sample ``perm[lo0:hi0]`` of ``X`` into ``leaf``.

    A depth-first walk of the tree that carries the group of samples sitting at each node: the
    node's row is read once per eight or four samples (:func:`dot_row8`, :func:`dot_row4`), then
    ``perm[lo:hi]`` is split in place into the samples going left and right (``a >= 0``). A sample
    alone at a node finishes its descent by itself. ``right`` (n,) bool scratch; ``stack`` int64
    scratch of shape (>= depth + 2, 3). No allocation.
    """
    n_nodes = node_weights.shape[0]
    stack[0, 0] = 0
    stack[0, 1] = lo0
    stack[0, 2] = hi0
    top = 1
    while top > 0:
        top -= 1
        k = stack[top, 0]
        lo = stack[top, 1]
        hi = stack[top, 2]
        if k >= n_nodes:
            for p in range(lo, hi):
                leaf[perm[p]] = k - n_nodes
            continue
        if hi - lo == 1:
            s = perm[lo]
            leaf[s] = leaf_route_from(node_weights, node_biases, k, X[s])
            continue
        b = node_biases[k, 0]
        p = lo
        while p + 8 <= hi:
            a0, a1, a2, a3, a4, a5, a6, a7 = dot_row8(node_weights, k, X, perm, p)
            right[perm[p]] = a0 + b >= 0
            right[perm[p + 1]] = a1 + b >= 0
            right[perm[p + 2]] = a2 + b >= 0
            right[perm[p + 3]] = a3 + b >= 0
            right[perm[p + 4]] = a4 + b >= 0
            right[perm[p + 5]] = a5 + b >= 0
            right[perm[p + 6]] = a6 + b >= 0
            right[perm[p + 7]] = a7 + b >= 0
            p += 8
        while p < hi:  # a last pass of two or three samples repeats its last one (costs one pass)
            s0 = perm[p]
            s1 = perm[min(p + 1, hi - 1)]
            s2 = perm[min(p + 2, hi - 1)]
            s3 = perm[min(p + 3, hi - 1)]
            a0, a1, a2, a3 = dot_row4(node_weights, k, X[s0], X[s1], X[s2], X[s3])
            right[s0] = a0 + b >= 0
            right[s1] = a1 + b >= 0
            right[s2] = a2 + b >= 0
            right[s3] = a3 + b >= 0
            p += 4
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
        if hi > i:
            stack[top, 0] = 2 * k + 2
            stack[top, 1] = i
            stack[top, 2] = hi
            top += 1
        if i > lo:
            stack[top, 0] = 2 * k + 1
            stack[top, 1] = lo
            stack[top, 2] = i
            top += 1


@njit(**_SERIAL)
def leaf_hidden(w1s, b1s, j, jn, act, x, h):
    """``h = act(x @ w1s[j] + b1s[j])`` for one sample: ``x`` (D,), ``h`` (l,). No allocation.

    Blocks of 16 hidden units accumulate in registers; four input rows per step go to four
    separate accumulators, so four FMA chains run side by side (summed at the end). Leaf ``jn``'s
    rows are prefetched alongside (pass ``jn = j`` when there is no next leaf).
    """
    l = h.shape[0]
    D = x.shape[0]
    acc = carray(_stack_block(x.dtype), ACC_BLOCK)
    for cb in range((l + HID_BLOCK - 1) // HID_BLOCK):
        c0 = cb * HID_BLOCK  # (not range(0, l, B): LLVM must see c0 >= 0 to skip index wraparound)
        w = min(HID_BLOCK, l - c0)
        for t in range(4 * HID_BLOCK):
            acc[t] = 0
        i = 0
        if w == HID_BLOCK:
            nxt = jn * D * l + c0
            while i + 4 <= D:
                _prefetch(w1s, nxt + i * l)
                _prefetch(w1s, nxt + (i + 1) * l)
                _prefetch(w1s, nxt + (i + 2) * l)
                _prefetch(w1s, nxt + (i + 3) * l)
                x0 = x[i]
                x1 = x[i + 1]
                x2 = x[i + 2]
                x3 = x[i + 3]
                for c in range(HID_BLOCK):
                    acc[c] += x0 * w1s[j, i, c0 + c]
                    acc[HID_BLOCK + c] += x1 * w1s[j, i + 1, c0 + c]
                    acc[2 * HID_BLOCK + c] += x2 * w1s[j, i + 2, c0 + c]
                    acc[3 * HID_BLOCK + c] += x3 * w1s[j, i + 3, c0 + c]
                i += 4
        while i < D:
            xi = x[i]
            for c in range(w):
                acc[c] += xi * w1s[j, i, c0 + c]
            i += 1
        for c in range(w):
            z = (acc[c] + acc[HID_BLOCK + c]) + (acc[2 * HID_BLOCK + c] + acc[3 * HID_BLOCK + c])
            h[c0 + c] = activate(z + b1s[j, c0 + c], act)


@njit(**_SERIAL)
def leaf_hidden4(w1s, b1s, j, jn, act, x0, x1, x2, x3, h0, h1, h2, h3):
    """:func:`leaf_hidden` for four samples of leaf j at once (``x*`` (D,), ``h*`` (l,)).

    Each weight row is loaded once for the four samples; their four accumulators (one register
    each for 16 float32 units) are independent FMA chains. Samples may repeat (same ``x`` and
    ``h`` twice): the duplicate is computed twice and written with the same values. Leaf ``jn``'s
    rows are prefetched alongside (one cache line per row). No allocation.
    """
    l = h0.shape[0]
    D = x0.shape[0]
    B = HID_BLOCK
    acc = carray(_stack_block(x0.dtype), ACC_BLOCK)
    for cb in range((l + B - 1) // B):
        c0 = cb * B
        w = min(B, l - c0)
        for t in range(4 * B):
            acc[t] = 0
        if w == B:
            nxt = jn * D * l + c0
            for i in range(D):
                _prefetch(w1s, nxt + i * l)
                a0 = x0[i]
                a1 = x1[i]
                a2 = x2[i]
                a3 = x3[i]
                for c in range(B):
                    wc = w1s[j, i, c0 + c]
                    acc[c] += a0 * wc
                    acc[B + c] += a1 * wc
                    acc[2 * B + c] += a2 * wc
                    acc[3 * B + c] += a3 * wc
        else:
            for i in range(D):
                a0 = x0[i]
                a1 = x1[i]
                a2 = x2[i]
                a3 = x3[i]
                for c in range(w):
                    wc = w1s[j, i, c0 + c]
                    acc[c] += a0 * wc
                    acc[B + c] += a1 * wc
                    acc[2 * B + c] += a2 * wc
                    acc[3 * B + c] += a3 * wc
        for c in range(w):
            b = b1s[j, c0 + c]
            h0[c0 + c] = activate(acc[c] + b, act)
            h1[c0 + c] = activate(acc[B + c] + b, act)
            h2[c0 + c] = activate(acc[2 * B + c] + b, act)
            h3[c0 + c] = activate(acc[3 * B + c] + b, act)


@njit(**_SERIAL)
def leaf_hidden2(w1s, b1s, j, jn, act, x0, x1, h0, h1):
    """:func:`leaf_hidden` for two samples of leaf j: each weight row loaded once for both; even and
    odd rows go to separate accumulators, so four FMA chains run side by side. Leaf ``jn``'s rows
    are prefetched alongside. No allocation."""
    l = h0.shape[0]
    D = x0.shape[0]
    B = HID_BLOCK
    acc = carray(_stack_block(x0.dtype), ACC_BLOCK)
    for cb in range((l + B - 1) // B):
        c0 = cb * B
        w = min(B, l - c0)
        for t in range(4 * B):
            acc[t] = 0
        i = 0
        if w == B:
            nxt = jn * D * l + c0
            while i + 2 <= D:
                _prefetch(w1s, nxt + i * l)
                _prefetch(w1s, nxt + (i + 1) * l)
                a0 = x0[i]
                a1 = x1[i]
                e0 = x0[i + 1]
                e1 = x1[i + 1]
                for c in range(B):
                    wc = w1s[j, i, c0 + c]
                    we = w1s[j, i + 1, c0 + c]
                    acc[c] += a0 * wc
                    acc[B + c] += a1 * wc
                    acc[2 * B + c] += e0 * we
                    acc[3 * B + c] += e1 * we
                i += 2
        while i < D:
            a0 = x0[i]
            a1 = x1[i]
            for c in range(w):
                wc = w1s[j, i, c0 + c]
                acc[c] += a0 * wc
                acc[B + c] += a1 * wc
            i += 1
        for c in range(w):
            b = b1s[j, c0 + c]
            h0[c0 + c] = activate((acc[c] + acc[2 * B + c]) + b, act)
            h1[c0 + c] = activate((acc[B + c] + acc[3 * B + c]) + b, act)


@njit(**_SERIAL)
def leaf_output(w2s, b2s, j, jn, h, y):
    """``y = h @ w2s[j] + b2s[j]`` for one sample: ``h`` (l,), ``y`` (O,). No allocation.

    Blocks of 64 outputs accumulate in registers over all l hidden units, then are stored once.
    Leaf ``jn``'s rows are prefetched alongside.
    """
    l = h.shape[0]
    O = y.shape[0]
    B = OUT_BLOCK
    acc = carray(_stack_block(y.dtype), ACC_BLOCK)
    for ob in range((O + B - 1) // B):
        o0 = ob * B
        if o0 + B <= O:
            for t in range(B):
                acc[t] = b2s[j, o0 + t]
            for c in range(l):
                nxt = (jn * l + c) * O + o0
                _prefetch(w2s, nxt)
                _prefetch(w2s, nxt + B // 4)
                _prefetch(w2s, nxt + B // 2)
                _prefetch(w2s, nxt + 3 * B // 4)
                g = h[c]
                for t in range(B):
                    acc[t] += g * w2s[j, c, o0 + t]
            for t in range(B):
                y[o0 + t] = acc[t]
        else:
            w = O - o0
            for t in range(w):
                acc[t] = b2s[j, o0 + t]
            for c in range(l):
                g = h[c]
                for t in range(w):
                    acc[t] += g * w2s[j, c, o0 + t]
            for t in range(w):
                y[o0 + t] = acc[t]


@njit(**_SERIAL)
def leaf_output4(w2s, b2s, j, jn, h0, h1, h2, h3, y0, y1, y2, y3):
    """:func:`leaf_output` for four samples of leaf j: each block of weights is loaded once for
    the four, 4 x 64 accumulators stay in registers. Samples may repeat. Leaf ``jn``'s rows are
    prefetched alongside. No allocation."""
    l = h0.shape[0]
    O = y0.shape[0]
    B = OUT_BLOCK
    acc = carray(_stack_block(y0.dtype), ACC_BLOCK)
    for ob in range((O + B - 1) // B):
        o0 = ob * B
        w = min(B, O - o0)
        for t in range(w):
            b = b2s[j, o0 + t]
            acc[t] = b
            acc[B + t] = b
            acc[2 * B + t] = b
            acc[3 * B + t] = b
        if w == B:
            for c in range(l):
                nxt = (jn * l + c) * O + o0
                _prefetch(w2s, nxt)
                _prefetch(w2s, nxt + B // 4)
                _prefetch(w2s, nxt + B // 2)
                _prefetch(w2s, nxt + 3 * B // 4)
                g0 = h0[c]
                g1 = h1[c]
                g2 = h2[c]
                g3 = h3[c]
                for t in range(B):
                    wv = w2s[j, c, o0 + t]
                    acc[t] += g0 * wv
                    acc[B + t] += g1 * wv
                    acc[2 * B + t] += g2 * wv
                    acc[3 * B + t] += g3 * wv
            for t in range(B):  # a fixed-size store loop: the registers go straight to the rows
                y0[o0 + t] = acc[t]
                y1[o0 + t] = acc[B + t]
                y2[o0 + t] = acc[2 * B + t]
                y3[o0 + t] = acc[3 * B + t]
            continue
        else:
            for c in range(l):
                g0 = h0[c]
                g1 = h1[c]
                g2 = h2[c]
                g3 = h3[c]
                for t in range(w):
                    wv = w2s[j, c, o0 + t]
                    acc[t] += g0 * wv
                    acc[B + t] += g1 * wv
                    acc[2 * B + t] += g2 * wv
                    acc[3 * B + t] += g3 * wv
        for t in range(w):
            y0[o0 + t] = acc[t]
            y1[o0 + t] = acc[B + t]
            y2[o0 + t] = acc[2 * B + t]
            y3[o0 + t] = acc[3 * B + t]


@njit(**_SERIAL)
def leaf_output2(w2s, b2s, j, jn, h0, h1, y0, y1):
    """:func:`leaf_output` for two samples of leaf j: each block of weights loaded once for both,
    2 x 64 accumulators in registers; leaf ``jn``'s rows are prefetched alongside. No allocation."""
    l = h0.shape[0]
    O = y0.shape[0]
    B = OUT_BLOCK
    acc = carray(_stack_block(y0.dtype), ACC_BLOCK)
    for ob in range((O + B - 1) // B):
        o0 = ob * B
        w = min(B, O - o0)
        for t in range(w):
            b = b2s[j, o0 + t]
            acc[t] = b
            acc[B + t] = b
        if w == B:
            for c in range(l):
                nxt = (jn * l + c) * O + o0
                _prefetch(w2s, nxt)
                _prefetch(w2s, nxt + B // 4)
                _prefetch(w2s, nxt + B // 2)
                _prefetch(w2s, nxt + 3 * B // 4)
                g0 = h0[c]
                g1 = h1[c]
                for t in range(B):
                    wv = w2s[j, c, o0 + t]
                    acc[t] += g0 * wv
                    acc[B + t] += g1 * wv
            for t in range(B):
                y0[o0 + t] = acc[t]
                y1[o0 + t] = acc[B + t]
            continue
        for c in range(l):
            g0 = h0[c]
            g1 = h1[c]
            for t in range(w):
                wv = w2s[j, c, o0 + t]
                acc[t] += g0 * wv
                acc[B + t] += g1 * wv
        for t in range(w):
            y0[o0 + t] = acc[t]
            y1[o0 + t] = acc[B + t]


@njit(**_SERIAL)
def leaf_apply_one(w1s, b1s, w2s, b2s, j, jn, act, x, h, y):
    """Leaf j on one sample: ``y = act(x @ w1s[j] + b1s[j]) @ w2s[j] + b2s[j]``.

    ``x`` (D,), scratch ``h`` (l,), output ``y`` (O,). No allocation; loops run over contiguous rows.
    """
    leaf_hidden(w1s, b1s, j, jn, act, x, h)
    leaf_output(w2s, b2s, j, jn, h, y)


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
    leaf_apply_one(w1s, b1s, w2s, b2s, j, j, act, x, h, y)


@njit(**_SERIAL)
def leaf_forward_one_checked(node_weights, node_biases, w1s, b1s, w2s, b2s, act, x, h, y):
    """:func:`leaf_forward_one` when every value of ``x`` is finite (returns True); else returns
    False and leaves ``y`` untouched. One dispatch for the check and the inference of one sample."""
    if not all_finite(x):
        return False
    leaf_forward_one(node_weights, node_biases, w1s, b1s, w2s, b2s, act, x, h, y)
    return True


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
def leaf_apply_group(w1s, b1s, w2s, b2s, j, jn, act, X, perm, lo, hi, H, Y):
    """Leaf j on the samples ``perm[lo:hi]`` of ``X``; hidden rows in ``H[lo:hi]``, outputs in ``Y``.

    Four samples at a time share every weight load (:func:`leaf_hidden4`, :func:`leaf_output4`);
    a rest of three runs as a four with a repeat, a rest of two as a pair, a single one alone. The leaf's
    weights (2 * D * l values) come from memory once and stay in L2 for the rest; leaf ``jn``'s
    (the next one this thread runs) are prefetched meanwhile. No allocation.
    """
    p = lo
    while hi - p >= 3:
        s0 = perm[p]
        s1 = perm[p + 1]
        s2 = perm[p + 2]
        q3 = min(p + 3, hi - 1)
        s3 = perm[q3]
        leaf_hidden4(w1s, b1s, j, jn, act, X[s0], X[s1], X[s2], X[s3], H[p], H[p + 1], H[p + 2], H[q3])
        leaf_output4(w2s, b2s, j, jn, H[p], H[p + 1], H[p + 2], H[q3], Y[s0], Y[s1], Y[s2], Y[s3])
        p += 4
    if hi - p == 2:
        s0 = perm[p]
        s1 = perm[p + 1]
        leaf_hidden2(w1s, b1s, j, jn, act, X[s0], X[s1], H[p], H[p + 1])
        leaf_output2(w2s, b2s, j, jn, H[p], H[p + 1], Y[s0], Y[s1])
        p += 2
    if p < hi:
        s = perm[p]
        leaf_apply_one(w1s, b1s, w2s, b2s, j, jn, act, X[s], H[p], Y[s])


@njit(**_PARALLEL)
def leaf_forward_batch(node_weights, node_biases, w1s, b1s, w2s, b2s, act, X, Y, n_threads):
    """Hard leaf-FFF inference of a batch ``X`` (n, D) into ``Y`` (n, O) with ``n_threads`` threads.

    Performance contract: routing parallel over one chunk of samples per thread, each chunk
    walking the tree with groups of samples (:func:`leaf_route_group`); then samples are bucketed
    by leaf (counting sort) and the loop over leaves is parallel, each leaf reading its weights once
    for its whole bucket, four samples per pass, while the next leaf's weights are prefetched.
    Scratch: O(n * l) (leaf index, permutation, flags, hidden rows); no allocation in the loops.
    """
    n = X.shape[0]
    L = w1s.shape[0]
    l = w1s.shape[2]
    depth = 0
    while (1 << depth) < L:
        depth += 1
    leaf = np.empty(n, np.int64)
    perm = np.empty(n, np.int64)
    right = np.empty(n, np.bool_)
    n_chunks = max(1, min(n_threads, n // 64))
    stacks = np.empty((n_chunks, depth + 2, 3), np.int64)
    for c in prange(n_chunks):
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        for p in range(lo, hi):
            perm[p] = p
        leaf_route_group(node_weights, node_biases, X, perm, lo, hi, leaf, right, stacks[c])
    offsets = np.empty(L + 1, np.int64)
    bucket_by(leaf, L, offsets, perm)
    H = np.empty((n, l), X.dtype)
    for j in prange(L):
        lo = offsets[j]
        hi = offsets[j + 1]
        if hi > lo:
            leaf_apply_group(w1s, b1s, w2s, b2s, j, min(j + 1, L - 1), act, X, perm, lo, hi, H, Y)


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
def nt_forward_one_checked(w_in, b_in, w_out_t, depth, parallel_size, act, x, y):
    """:func:`nt_forward_one` when every value of ``x`` is finite (returns True); else returns
    False and leaves ``y`` untouched. One dispatch for the check and the inference of one sample."""
    if not all_finite(x):
        return False
    nt_forward_one(w_in, b_in, w_out_t, depth, parallel_size, act, x, y)
    return True


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
