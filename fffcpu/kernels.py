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
  then the bucket's outputs are summed in path order, two samples per pass sharing their common rows.
  A small tree (weights within ``_kernel_api.NT_EACH_MAX_BYTES``) runs sample by sample instead
  (:func:`nt_forward_each`).
- leaf FFF: routing by a depth-first walk that carries groups of samples (tasks of
  ``ROUTE_TASK`` samples), then samples are bucketed by leaf and each leaf's two small matrices are
  applied to its bucket four samples at a time, with register-resident accumulators in a stack
  block (:func:`_stack_block`) and the next leaf's weights prefetched (:func:`_prefetch`). Threads
  take tasks from an atomic counter (:func:`_atomic_next`), so the work balances itself. The eFFF
  master leaf is one more always-on leaf whose hidden units are scaled by ``1 - s`` (the tree's by
  ``s``), so the mix costs no extra pass over the output.
"""
import math

import numpy as np
from llvmlite import ir
from numba import carray, config, get_num_threads, njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import populate_array

#: fastmath flags for every kernel: no ``nnan``/``ninf`` (NaN and inf keep working)
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


def _cache_probe():  # pragma: no cover - never called; only decorated, by _can_cache
    return 0


def _can_cache():
    """Whether Numba finds a writable place for this file's on-disk cache (``NUMBA_CACHE_DIR``, the
    package's ``__pycache__``, the user's cache directory). Where none is (a read-only install run by
    a user with a read-only home), every ``cache=True`` decoration raised "cannot cache function ...:
    no locator available", so no kernel, and no layer call, worked; then the kernels compile in
    each process instead, with a warning."""
    try:
        njit(cache=True)(_cache_probe)
    except RuntimeError as exc:
        if "no locator available" not in str(exc):
            raise
        import warnings
        warnings.warn("fffcpu: Numba found no writable cache directory for its kernels (NUMBA_CACHE_DIR, "
                      f"{__file__}'s __pycache__, the user's cache directory), so they are compiled anew in "
                      "every process (tens of seconds, at the first call or in fffcpu.warmup()); set "
                      "NUMBA_CACHE_DIR to a writable directory to keep them", RuntimeWarning, stacklevel=2)
        return False
    return True


#: False where no cache directory is writable (see :func:`_can_cache`)
CACHE = _can_cache()
_SERIAL = dict(cache=CACHE, nogil=True, fastmath=FASTMATH)
_PARALLEL = dict(cache=CACHE, nogil=True, fastmath=FASTMATH, parallel=True)
#: the small wrappers on the per-sample path, inlined into their callers by Numba: a call from one
#: compiled function to another is not inlined by LLVM and passes each array as a struct of 5 + 2 *
#: ndim words, so the serial loop paid about 250 ns per sample in calls (docs/kernels.md, round 16)
_INLINE = dict(_SERIAL, inline="always")

_SQRT1_2 = 0.7071067811865476

#: neuron tree: target number of samples per bucket below the per-sample top levels (x and y rows
#: of a bucket, 2 * 64 * O * 4 bytes for O = 768 float32, stay in a 1 MB L2 next to the rows)
NT_BUCKET = 64
#: samples per task of the neuron tree's top levels (their x rows, 256 * D * 4 bytes, stay in L2)
NT_TOP_TASK = 256

#: batch outputs of at least this many bytes are written with streaming stores (:func:`_store16`);
#: smaller ones stay in cache for the caller, who likely reads them next
STREAM_MIN_BYTES = 1 << 21


# ---------------------------------------------------------------------------------------------
# scalar helpers
# ---------------------------------------------------------------------------------------------
@njit(**_SERIAL)
def activate(z, act):
    """Activation ``act`` of a scalar, computed in float64 (callers cast back to their dtype). gelu
    takes ``Phi(v) = erfc(-v / sqrt 2) / 2``, as the reference does: ``1 + erf(v / sqrt 2)`` cancels to
    0 below v = -8.3 in float64 (round 22)."""
    v = float(z)
    if act == 0:
        return v if v > 0.0 else 0.0
    if act == 1:
        return 0.5 * v * math.erfc(v * -_SQRT1_2)
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
def dot_3rows4(w, r0, r1, r2, x0, x1, x2, x3):
    """``w[r] . x*`` for three rows and four samples in one pass: 12 values, row-major
    (``r0`` with x0..x3, then ``r1``, then ``r2``). Each sample value loaded feeds three FMAs."""
    z = x0.dtype.type(0)
    a00 = z
    a01 = z
    a02 = z
    a03 = z
    a10 = z
    a11 = z
    a12 = z
    a13 = z
    a20 = z
    a21 = z
    a22 = z
    a23 = z
    for i in range(x0.shape[0]):
        u = w[r0, i]
        v = w[r1, i]
        q = w[r2, i]
        e0 = x0[i]
        e1 = x1[i]
        e2 = x2[i]
        e3 = x3[i]
        a00 += u * e0
        a01 += u * e1
        a02 += u * e2
        a03 += u * e3
        a10 += v * e0
        a11 += v * e1
        a12 += v * e2
        a13 += v * e3
        a20 += q * e0
        a21 += q * e1
        a22 += q * e2
        a23 += q * e3
    return a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23


@njit(**_SERIAL)
def axpy_row(g, w, r, y):
    """``y += g * w[r]``."""
    for o in range(y.shape[0]):
        y[o] += g * w[r, o]


@njit(**_SERIAL)
def is_finite(v):
    """True for a finite float: ``|v| < inf`` is False for inf and for NaN.

    A comparison keeps IEEE semantics under :data:`FASTMATH` (no ``nnan``/``ninf``). The older
    idiom, summing ``v * 0`` (NaN for inf and NaN) and testing the sum against 0, does not: with
    Numba 0.59 (LLVM 14) the check passed a 15-value array holding a NaN.
    """
    return abs(v) < np.inf


@njit(**_SERIAL)
def all_finite(x):
    """True when every value of the C-contiguous array ``x`` is finite (cheap input check)."""
    flat = x.reshape(x.size)
    ok = True
    for i in range(flat.shape[0]):
        ok &= is_finite(flat[i])  # no early exit: the loop vectorizes
    return ok


# ---------------------------------------------------------------------------------------------
# accumulator blocks on the stack
# ---------------------------------------------------------------------------------------------
#: elements of a stack accumulator block: up to 6 samples x 64 outputs (:func:`_leaf_passes`)
ACC_BLOCK = 512
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
    the next leaf's rows while leaf j computes overlaps that traffic with arithmetic (as far as it goes:
    docs/kernels.md, round 19). A hint never faults.
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


@intrinsic
def _borrow(typingctx, arr):
    """``arr`` without its owner: the same data, shape and strides, with no meminfo and no parent.

    Why: Numba counts references to an array's owner atomically at every view (``X[q]``) and every
    call that passes one, dozens of atomic adds per sample in the helpers below; in a batch kernel
    every thread adds to the same few counters (the weights', the input's), so their cache lines
    bounce between the cores. Views of a borrowed array, and calls given one, count nothing. Only
    valid while the caller holds ``arr``: borrow arguments, never an array the kernel made itself.
    """
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, signature, args):
        src = context.make_array(signature.args[0])(context, builder, args[0])
        dst = context.make_array(signature.return_type)(context, builder)
        populate_array(dst, data=src.data, shape=src.shape, strides=src.strides, itemsize=src.itemsize,
                       meminfo=None)
        return dst._getvalue()

    return arr(arr), codegen


@intrinsic
def _atomic_next(typingctx, counters, index):
    """``counters[index] += 1`` as one atomic step; returns the value before (a task number).

    Why: ``prange`` splits its range evenly in advance; threads that take their next task from a
    shared counter balance the work by itself (uneven buckets, a core shared with another process).
    ``counters`` must be an int64 array.
    """
    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(ary.data, [args[1]])
        return builder.atomic_rmw("add", ptr, context.get_constant(types.int64, 1), "monotonic")

    return types.int64(counters, types.intp), codegen


@intrinsic
def _num_threads(typingctx):
    """Numba's thread count for the calling thread (what ``numba.get_num_threads()`` returns), read
    inside a kernel. Numba's own overload of ``get_num_threads`` calls through a ctypes pointer, which
    keeps the caller out of the disk cache; this calls the threading layer's ``get_num_threads``
    symbol by name, as Numba's parallel loops do themselves.

    **Start the threading layer before a caller is loaded from the disk cache** (``numba.
    get_num_threads()`` does; ``_kernel_api._entry`` for the batch wrappers, :func:`thread_count`). The symbol is linked
    when the machine code is loaded; in a process whose layer had not started it resolved to
    something else and the call crashed (SIGSEGV). Numba restarts the layer itself only for cached
    functions that hold a parallel loop, not for a caller such as :func:`leaf_forward_new` whose loop
    sits in a callee loaded from the cache. Not at import: with GNU OpenMP a process that started the
    layer cannot run parallel code in a forked child, and one-sample users should keep that freedom."""
    get_num_threads()  # starts the threading layer, which registers the symbol

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(cgutils.intp_t, []),
                                            "get_num_threads")
        return builder.call(fn, [])

    return types.intp(), codegen




#: elements per streaming store (one 64-byte line of float32, two of float64)
STREAM_WIDTH = 16


@intrinsic
def _store16(typingctx, dst, dst_offset, src, src_offset, stream):
    """``dst[dst_offset:+16] = src[src_offset:+16]`` as one vector store; with ``stream`` true and
    the destination 64-byte aligned, a non-temporal (streaming) store.

    Why streaming: a batch's output (3 MB for leaf-768-d8-l16 at batch 1024, 12 MB for ufb-768-d11
    at 4096) is written once and not read again by the kernel. A plain store first reads each line
    from memory (read-for-ownership) and leaves it in the cache, where it evicts the weights that the
    next call needs; a streaming store does neither. Make the threads' streaming stores visible with
    :func:`_store_fence` before the results are used. Why an intrinsic for the plain case too: a
    copy loop with offsets that Numba must treat as possibly negative (index wraparound) compiles
    to scatters; a vector store addresses the elements directly.
    """
    def codegen(context, builder, signature, args):
        dty, _, sty, _, _ = signature.args
        d = context.make_array(dty)(context, builder, args[0])
        s = context.make_array(sty)(context, builder, args[2])
        vty = ir.VectorType(context.get_value_type(dty.dtype), STREAM_WIDTH)
        src_ptr = builder.bitcast(builder.gep(s.data, [args[3]]), vty.as_pointer())
        dst_ptr = builder.bitcast(builder.gep(d.data, [args[1]]), vty.as_pointer())
        value = builder.load(src_ptr, align=1)
        i64 = ir.IntType(64)
        low_bits = builder.and_(builder.ptrtoint(dst_ptr, i64), i64(63))
        aligned = builder.icmp_unsigned("==", low_bits, i64(0))
        flag = context.cast(builder, args[4], signature.args[4], types.boolean)
        with builder.if_else(builder.and_(flag, aligned)) as (streaming, plain):
            with streaming:
                store = builder.store(value, dst_ptr, align=64)
                store.set_metadata("nontemporal", builder.module.add_metadata([ir.IntType(32)(1)]))
            with plain:
                builder.store(value, dst_ptr, align=1)
        return context.get_dummy_value()

    return types.none(dst, types.intp, src, types.intp, stream), codegen


@intrinsic
def _store_fence(typingctx):
    """A full memory fence: orders this thread's streaming stores (:func:`_store16`) before
    everything after it, so that the results are complete when the parallel region ends."""
    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.none(), codegen


if config.DISABLE_JIT:  # pure Python (NUMBA_DISABLE_JIT=1, e.g. coverage): plain stand-ins
    def _stack_block(dtype):  # noqa: F811
        return np.empty(ACC_BLOCK, dtype)

    def carray(block, size):  # noqa: F811
        return block[:size]

    def _prefetch(arr, offset):  # noqa: F811
        return None

    def _atomic_next(counters, index):  # noqa: F811  (prange runs serially without the JIT)
        counters[index] += 1
        return counters[index] - 1

    def _store16(dst, dst_offset, src, src_offset, stream):  # noqa: F811
        dst[dst_offset:dst_offset + STREAM_WIDTH] = src[src_offset:src_offset + STREAM_WIDTH]

    def _store_fence():  # noqa: F811
        return None

    def _num_threads():  # noqa: F811
        return get_num_threads()

    def _borrow(arr):  # noqa: F811
        return arr


@njit(**_SERIAL)
def store_block(y, o0, acc, a0, stream):
    """``y[o0:o0 + OUT_BLOCK] = acc[a0:a0 + OUT_BLOCK]``; with ``stream``, by streaming stores
    (:func:`_store16`: for outputs too large to stay in cache). No allocation."""
    for t in range(OUT_BLOCK // STREAM_WIDTH):
        _store16(y, o0 + STREAM_WIDTH * t, acc, a0 + STREAM_WIDTH * t, stream)


# ---------------------------------------------------------------------------------------------
# leaf FFF (SPEC §1): k = 0; d times k = 2k + 1 + [a_k >= 0]; y = L_(k - n_nodes)(x)
# ---------------------------------------------------------------------------------------------
@njit(**_INLINE)
def leaf_route_from(node_weights, node_biases, k, x):
    """The leaf index j that one sample ``x`` (D,) reaches from node ``k``. No allocation."""
    n_nodes = node_weights.shape[0]
    while k < n_nodes:
        a = dot_row(node_weights, k, x) + node_biases[k, 0]
        k = 2 * k + (2 if a >= 0 else 1)
    return k - n_nodes


@njit(**_INLINE)
def leaf_route_one(node_weights, node_biases, x):
    """The leaf index j reached by one sample ``x`` (D,): d dot products, no allocation."""
    return leaf_route_from(node_weights, node_biases, 0, x)


@njit(**_SERIAL)
def split_group(perm, lo, hi, right):
    """Reorder ``perm[lo:hi]`` so that the samples with ``right[s]`` false come first; returns the
    split point (the first sample going right). No allocation."""
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
def goes_right(a, strict):
    """The routing rule: right where ``a > 0`` (``strict``: the neuron tree, ties go left) or
    ``a >= 0`` (the leaf FFF, ties go right)."""
    return a > 0 if strict else a >= 0


@njit(**_SERIAL)
def two_level_pass(w, r, c1, c2, b, b1, b2, strict, X, perm, lo, hi, A, level, right, right2):
    """Two levels of a grouped walk in one pass over the samples ``perm[lo:hi]`` of ``X``, which sit
    at the node of row ``r`` (bias ``b``) whose children have rows ``c1`` (left, bias ``b1``) and
    ``c2`` (right, ``b2``).

    The three rows against four samples at a time (:func:`dot_3rows4`: each sample row is read once
    for two levels, at 1.5x the multiply-adds; a last pass of one to three samples repeats one); each
    sample takes its child by :func:`goes_right`, then its grandchild by that child's logit. With
    ``A`` of nonzero height, the node's logit goes to ``A[s, level]`` and the child's to
    ``A[s, level + 1]`` (pass an empty writable array for none). Then ``perm[lo:hi]`` is split into the four
    grandchild groups ``[lo, m1)``, ``[m1, mid)``, ``[mid, m2)``, ``[m2, hi)``, left to right.
    ``right``, ``right2`` (n,) bool scratch. Returns ``(m1, mid, m2, finite)``: ``finite`` is True
    when the node's logits are all finite (:func:`is_finite`). No allocation.
    """
    store = A.shape[0] > 0
    finite = True
    for p in range(lo, hi, 4):
        q0 = perm[p]
        q1 = perm[min(p + 1, hi - 1)]
        q2 = perm[min(p + 2, hi - 1)]
        q3 = perm[min(p + 3, hi - 1)]
        a0, a1, a2, a3, l0, l1, l2, l3, r0, r1, r2, r3 = dot_3rows4(w, r, c1, c2, X[q0], X[q1], X[q2],
                                                                    X[q3])
        a0 += b
        a1 += b
        a2 += b
        a3 += b
        finite &= is_finite((a0 + a1) + (a2 + a3))
        g0 = goes_right(a0, strict)
        g1 = goes_right(a1, strict)
        g2 = goes_right(a2, strict)
        g3 = goes_right(a3, strict)
        e0 = (r0 + b2) if g0 else (l0 + b1)  # the logit of the child each one reaches
        e1 = (r1 + b2) if g1 else (l1 + b1)
        e2 = (r2 + b2) if g2 else (l2 + b1)
        e3 = (r3 + b2) if g3 else (l3 + b1)
        right[q0] = g0
        right[q1] = g1
        right[q2] = g2
        right[q3] = g3
        right2[q0] = goes_right(e0, strict)
        right2[q1] = goes_right(e1, strict)
        right2[q2] = goes_right(e2, strict)
        right2[q3] = goes_right(e3, strict)
        if store:
            A[q0, level] = a0
            A[q1, level] = a1
            A[q2, level] = a2
            A[q3, level] = a3
            A[q0, level + 1] = e0
            A[q1, level + 1] = e1
            A[q2, level + 1] = e2
            A[q3, level + 1] = e3
    mid = split_group(perm, lo, hi, right)
    m1 = split_group(perm, lo, mid, right2)
    m2 = split_group(perm, mid, hi, right2)
    return m1, mid, m2, finite


@njit(**_SERIAL)
def push(stack, top, k, level, lo, hi):
    """Push the row (node ``k``, ``level``, samples ``perm[lo:hi]``) onto a walk's stack (an int64
    array of such rows, ``top`` of them in use); returns the new top."""
    stack[top, 0] = k
    stack[top, 1] = level
    stack[top, 2] = lo
    stack[top, 3] = hi
    return top + 1


@njit(**_SERIAL)
def push_children(stack, top, k, level, lo, mid, hi):
    """Push node ``k``'s children (at ``level``) onto a walk's stack of (node, level, lo, hi) rows,
    each with its samples: ``perm[mid:hi]`` went right, ``perm[lo:mid]`` left. The left child is
    pushed last, so it runs next; a child without samples is skipped. Returns the new top."""
    if hi > mid:
        top = push(stack, top, 2 * k + 2, level, mid, hi)
    if mid > lo:
        top = push(stack, top, 2 * k + 1, level, lo, mid)
    return top


@njit(**_SERIAL)
def push_grandchildren(stack, top, k, level, lo, m1, mid, m2, hi):
    """Push node ``k``'s grandchildren 4k + 3 .. 4k + 6 (at ``level``) with their groups ``[lo, m1)``,
    ``[m1, mid)``, ``[mid, m2)``, ``[m2, hi)`` (:func:`two_level_pass`), the left-most last (it runs
    next); empty groups are skipped. Returns the new top."""
    for g in range(4):
        glo = (m2, mid, m1, lo)[g]
        ghi = (hi, m2, mid, m1)[g]
        if ghi > glo:
            top = push(stack, top, 4 * k + 6 - g, level, glo, ghi)
    return top


@njit(**_SERIAL)
def leaf_route_group(node_weights, node_biases, X, perm, lo0, hi0, leaf, right, right2, stack,
                     no_logits):
    """The leaf index of every sample ``perm[lo0:hi0]`` of ``X`` into ``leaf``.

    A depth-first walk of the tree that carries the group of samples sitting at each node. Where
    the node's children are internal nodes too, one pass computes two levels (round 5,
    :func:`two_level_pass`): the node's row and both children's rows for four samples at a time
    (each sample row is read once for two levels, at 1.5x the multiply-adds), then the group is split
    by the node (``a >= 0`` right) and each half by the child it went to, into four grandchild groups. At the
    last internal level, one pass per level: the row is read once per eight or four samples
    (:func:`dot_row8`, :func:`dot_row4`). A sample alone at a node finishes its descent by
    itself. ``right``, ``right2`` (n,) bool scratch; ``stack`` int64 scratch of shape
    (>= 2 * depth + 4, 4); ``no_logits`` an empty (0, 2) array of ``X``'s dtype, writable (the logits
    are not kept; ``X[:0]`` would not do for a read-only ``X``). No allocation.

    Returns False when a root logit is not finite (NaN or inf in a sample, with finite weights;
    or an overflow), else True: the batch's input check at no extra pass.
    """
    node_weights, node_biases, X, perm = _borrow(node_weights), _borrow(node_biases), _borrow(X), _borrow(perm)
    leaf, right, right2, stack = _borrow(leaf), _borrow(right), _borrow(right2), _borrow(stack)
    n_nodes = node_weights.shape[0]
    finite = True
    top = push(stack, 0, 0, 0, lo0, hi0)
    while top > 0:
        top -= 1
        k, level, lo, hi = stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3]
        if k >= n_nodes:
            for p in range(lo, hi):
                leaf[perm[p]] = k - n_nodes
            continue
        if hi - lo == 1:
            q = perm[lo]
            if k == 0:
                finite &= is_finite(dot_row(node_weights, 0, X[q]) + node_biases[0, 0])
            leaf[q] = leaf_route_from(node_weights, node_biases, k, X[q])
            continue
        b = node_biases[k, 0]
        c1 = 2 * k + 1
        c2 = 2 * k + 2
        if c2 < n_nodes:  # two levels per pass
            m1, mid, m2, root_finite = two_level_pass(node_weights, k, c1, c2, b, node_biases[c1, 0],
                                                node_biases[c2, 0], False, X, perm, lo, hi, no_logits, level,
                                                right, right2)
            if k == 0:
                finite &= root_finite
            top = push_grandchildren(stack, top, k, level + 2, lo, m1, mid, m2, hi)
            continue
        p = lo
        while p + 8 <= hi:
            a0, a1, a2, a3, a4, a5, a6, a7 = dot_row8(node_weights, k, X, perm, p)
            a0 += b
            a1 += b
            a2 += b
            a3 += b
            a4 += b
            a5 += b
            a6 += b
            a7 += b
            if k == 0:
                finite &= is_finite((a0 + a1) + (a2 + a3) + (a4 + a5) + (a6 + a7))
            right[perm[p]] = a0 >= 0
            right[perm[p + 1]] = a1 >= 0
            right[perm[p + 2]] = a2 >= 0
            right[perm[p + 3]] = a3 >= 0
            right[perm[p + 4]] = a4 >= 0
            right[perm[p + 5]] = a5 >= 0
            right[perm[p + 6]] = a6 >= 0
            right[perm[p + 7]] = a7 >= 0
            p += 8
        while p < hi:  # a last pass of two or three samples repeats its last one (costs one pass)
            q0 = perm[p]
            q1 = perm[min(p + 1, hi - 1)]
            q2 = perm[min(p + 2, hi - 1)]
            q3 = perm[min(p + 3, hi - 1)]
            a0, a1, a2, a3 = dot_row4(node_weights, k, X[q0], X[q1], X[q2], X[q3])
            a0 += b
            a1 += b
            a2 += b
            a3 += b
            if k == 0:
                finite &= is_finite((a0 + a1) + (a2 + a3))
            right[q0] = a0 >= 0
            right[q1] = a1 >= 0
            right[q2] = a2 >= 0
            right[q3] = a3 >= 0
            p += 4
        mid = split_group(perm, lo, hi, right)
        top = push_children(stack, top, k, level + 1, lo, mid, hi)
    return finite


@njit(**_INLINE)
def whole_block_rows(w, j, c0):
    """How many rows ``i`` of leaf j (from the first) may be read as a whole block of ``HID_BLOCK``
    values from column ``c0`` without leaving ``w`` (C-contiguous, (leaves, rows, width): ``w1s``
    with the hidden units as columns, ``w2s`` with the outputs): in a block narrower than 16 the
    read runs on into the next row, whose values land in accumulators that are never used. Only
    the last rows of the last leaf (or of the master leaf) fall short."""
    if config.DISABLE_JIT or config.BOUNDSCHECK:  # pure Python, or NUMBA_BOUNDSCHECK=1: an index
        return 0                                     # past the row's end is refused
    rows = w.shape[1]
    width = w.shape[2]
    room = w.size - HID_BLOCK - (j * rows * width + c0)
    if room < 0:
        return 0
    return min(rows, room // width + 1)


@njit(**_SERIAL)
def leaf_hidden(w1s, b1s, j, jn, act, scale, x, h):
    """``h = scale * act(x @ w1s[j] + b1s[j])`` for one sample: ``x`` (D,), ``h`` (l,). No allocation.

    ``scale`` is the output weight of this leaf (1, or the master-leaf mix s or 1 - s), folded
    into the hidden units so that the output layer needs no extra pass. Blocks of 16 hidden units
    accumulate in registers; four input rows per step go to four separate accumulators, so four
    FMA chains run side by side (summed at the end). A last block narrower than 16 reads whole
    blocks as well (:func:`whole_block_rows`, see :func:`leaf_hidden4`): one call of a leaf FFF
    with leaves of 8 units took 6.4 us, now as long as with 16 (round 16). Leaf ``jn``'s rows are
    prefetched alongside (pass ``jn = j`` when there is no next leaf).
    """
    l = h.shape[0]
    D = x.shape[0]
    B = HID_BLOCK
    acc = carray(_stack_block(x.dtype), ACC_BLOCK)
    for cb in range((l + B - 1) // B):
        c0 = cb * B  # (not range(0, l, B): LLVM must see c0 >= 0 to skip index wraparound)
        w = min(B, l - c0)
        for t in range(4 * B):
            acc[t] = 0
        rows = D if w == B else whole_block_rows(w1s, j, c0)
        nxt = jn * D * l + c0
        i = 0
        while i + 4 <= rows:
            _prefetch(w1s, nxt + i * l)
            _prefetch(w1s, nxt + (i + 1) * l)
            _prefetch(w1s, nxt + (i + 2) * l)
            _prefetch(w1s, nxt + (i + 3) * l)
            x0 = x[i]
            x1 = x[i + 1]
            x2 = x[i + 2]
            x3 = x[i + 3]
            for c in range(B):
                acc[c] += x0 * w1s[j, i, c0 + c]
                acc[B + c] += x1 * w1s[j, i + 1, c0 + c]
                acc[2 * B + c] += x2 * w1s[j, i + 2, c0 + c]
                acc[3 * B + c] += x3 * w1s[j, i + 3, c0 + c]
            i += 4
        while i < D:  # the last rows: fewer than four, or rows a whole block would overrun
            xi = x[i]
            for c in range(w):
                acc[c] += xi * w1s[j, i, c0 + c]
            i += 1
        for c in range(w):
            z = (acc[c] + acc[B + c]) + (acc[2 * B + c] + acc[3 * B + c])
            h[c0 + c] = scale * activate(z + b1s[j, c0 + c], act)


@njit(**_SERIAL)
def leaf_hidden4(w1s, b1s, j, jn, act, scale, x0, x1, x2, x3, h0, h1, h2, h3):
    """:func:`leaf_hidden` for four samples of leaf j at once (``x*`` (D,), ``h*`` (l,)).

    Each weight row is loaded once for the four samples. A block of 16 units keeps two
    accumulators per sample (even and odd input rows): eight independent FMA chains, twice the
    FMA latency's worth. A last block narrower than 16 (a leaf of 8 or 15 units, the eFFF master
    leaf of 8) reads whole blocks too, running on into the next row (:func:`whole_block_rows`), and
    keeps only its own units: with a block of variable width, LLVM kept the sums in memory and a
    leaf of 8 units cost more than one of 16 (round 16). Samples may repeat (same ``x`` and ``h``
    twice): the duplicate is computed twice and written with the same values. Leaf ``jn``'s rows
    are prefetched alongside (one cache line per row). No allocation.
    """
    l = h0.shape[0]
    D = x0.shape[0]
    B = HID_BLOCK
    acc = carray(_stack_block(x0.dtype), ACC_BLOCK)
    for cb in range((l + B - 1) // B):
        c0 = cb * B
        w = min(B, l - c0)
        for t in range(8 * B):
            acc[t] = 0
        rows = D if w == B else whole_block_rows(w1s, j, c0)
        nxt = jn * D * l + c0
        for i2 in range(rows // 2):
            i = 2 * i2
            _prefetch(w1s, nxt + i * l)
            _prefetch(w1s, nxt + (i + 1) * l)
            a0 = x0[i]
            a1 = x1[i]
            a2 = x2[i]
            a3 = x3[i]
            e0 = x0[i + 1]
            e1 = x1[i + 1]
            e2 = x2[i + 1]
            e3 = x3[i + 1]
            for c in range(B):
                wc = w1s[j, i, c0 + c]
                we = w1s[j, i + 1, c0 + c]
                acc[c] += a0 * wc
                acc[B + c] += a1 * wc
                acc[2 * B + c] += a2 * wc
                acc[3 * B + c] += a3 * wc
                acc[4 * B + c] += e0 * we
                acc[5 * B + c] += e1 * we
                acc[6 * B + c] += e2 * we
                acc[7 * B + c] += e3 * we
        # an odd last row; rows a whole block would overrun
        add_rows4(acc, B, w1s, j, 2 * (rows // 2), D, c0, w, x0, x1, x2, x3)
        for c in range(w):
            b = b1s[j, c0 + c]
            h0[c0 + c] = scale * activate((acc[c] + acc[4 * B + c]) + b, act)
            h1[c0 + c] = scale * activate((acc[B + c] + acc[5 * B + c]) + b, act)
            h2[c0 + c] = scale * activate((acc[2 * B + c] + acc[6 * B + c]) + b, act)
            h3[c0 + c] = scale * activate((acc[3 * B + c] + acc[7 * B + c]) + b, act)


@njit(**_SERIAL)
def leaf_hidden2(w1s, b1s, j, jn, act, scale, x0, x1, h0, h1):
    """:func:`leaf_hidden` for two samples of leaf j: each weight row loaded once for both; even and
    odd rows go to separate accumulators, so four FMA chains run side by side. A last block
    narrower than 16 reads whole blocks (:func:`whole_block_rows`). Leaf ``jn``'s rows are
    prefetched alongside. No allocation."""
    l = h0.shape[0]
    D = x0.shape[0]
    B = HID_BLOCK
    acc = carray(_stack_block(x0.dtype), ACC_BLOCK)
    for cb in range((l + B - 1) // B):
        c0 = cb * B
        w = min(B, l - c0)
        for t in range(4 * B):
            acc[t] = 0
        rows = D if w == B else whole_block_rows(w1s, j, c0)
        nxt = jn * D * l + c0
        i = 0
        while i + 2 <= rows:
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
        while i < D:  # an odd last row; rows a whole block would overrun
            a0 = x0[i]
            a1 = x1[i]
            for c in range(w):
                wc = w1s[j, i, c0 + c]
                acc[c] += a0 * wc
                acc[B + c] += a1 * wc
            i += 1
        for c in range(w):
            b = b1s[j, c0 + c]
            h0[c0 + c] = scale * activate((acc[c] + acc[2 * B + c]) + b, act)
            h1[c0 + c] = scale * activate((acc[B + c] + acc[3 * B + c]) + b, act)


@njit(**_INLINE)
def master_share(s, w):
    """The master leaf's share ``1 - s`` of an eFFF output, in the dtype of the weights ``w``.

    Why not ``1 - s``: for a float32 ``s`` Numba types it as float64, and every leaf output pass
    then computed its biases in float64, converting value by value (round 20: ``leaf_output4`` hot
    1.15 -> 1.05 us without that)."""
    return w.dtype.type(1) - s


@njit(**_INLINE)
def prefetch_out_row(w2s, jn, c, o0):
    """Prefetch into L2 the ``OUT_BLOCK`` values from column ``o0`` of row ``c`` of leaf ``jn``'s
    ``w2s``: an output pass's step over row c of block o0 of its leaf fetches the same place of the
    next leaf, so that pass after pass the whole next leaf arrives (one prefetch every 16 values)."""
    nxt = (jn * w2s.shape[1] + c) * w2s.shape[2] + o0
    _prefetch(w2s, nxt)
    _prefetch(w2s, nxt + OUT_BLOCK // 4)
    _prefetch(w2s, nxt + OUT_BLOCK // 2)
    _prefetch(w2s, nxt + 3 * OUT_BLOCK // 4)


@njit(**_SERIAL)
def leaf_output(w2s, b2s, j, jn, h, mw2, mb2, hm, s, y, stream):
    """``y = h @ w2s[j] + s b2s[j] + hm @ mw2[0] + (1 - s) mb2[0]`` for one sample.

    ``h`` (l,) are the leaf's hidden units already scaled by s, ``hm`` (m,) the master leaf's
    scaled by 1 - s (m = 0 and s = 1 without a master leaf: then ``y`` is exactly the leaf's output
    as long as ``mb2`` is finite). ``y`` (O,). Blocks of 64 outputs accumulate in registers over
    all hidden units, then are stored once; leaf ``jn``'s rows are prefetched alongside. No allocation.

    ``1 - s`` comes from :func:`master_share`, in the weights' dtype.
    """
    l = h.shape[0]
    m = hm.shape[0]
    O = y.shape[0]
    B = OUT_BLOCK
    sm = master_share(s, w2s)
    acc = carray(_stack_block(y.dtype), ACC_BLOCK)
    for ob in range(O // B):  # full blocks: every loop has a fixed size (registers, no branches)
        o0 = ob * B
        for t in range(B):
            acc[t] = s * b2s[j, o0 + t] + sm * mb2[0, o0 + t]
        for c in range(l):
            prefetch_out_row(w2s, jn, c, o0)
            g = h[c]
            for t in range(B):
                acc[t] += g * w2s[j, c, o0 + t]
        for c in range(m):
            g = hm[c]
            for t in range(B):
                acc[t] += g * mw2[0, c, o0 + t]
        store_block(y, o0, acc, 0, stream)
    if O % B:
        leaf_output_tail1(w2s, b2s, j, h, mw2, mb2, hm, s, y)


@njit(**_INLINE)
def add_rows4(acc, B, w, j, c_lo, c_hi, o0, width, g0, g1, g2, g3):
    """``acc[q * B + t] += sum_c g_q[c] * w[j, c, o0 + t]`` for four samples q, rows ``c_lo <= c <
    c_hi``, columns ``t < width``: a call with ``width`` the constant 16 keeps ``acc`` in registers."""
    for c in range(c_lo, c_hi):
        a0 = g0[c]
        a1 = g1[c]
        a2 = g2[c]
        a3 = g3[c]
        for t in range(width):
            wv = w[j, c, o0 + t]
            acc[t] += a0 * wv
            acc[B + t] += a1 * wv
            acc[2 * B + t] += a2 * wv
            acc[3 * B + t] += a3 * wv


@njit(**_INLINE)
def leaf_output_tail1(w2s, b2s, j, h, mw2, mb2, hm, s, y):
    """:func:`leaf_output` for the last ``O % 64`` outputs only (after the full blocks), one sum down
    a column of ``w2s`` per output: for one sample that runs faster than blocks of 16 do (1.22 against
    1.33 us for a whole one-sample call of a leaf FFF 64-16-10, round 17)."""
    O = y.shape[0]
    sm = master_share(s, w2s)
    for o in range((O // OUT_BLOCK) * OUT_BLOCK, O):
        v = s * b2s[j, o] + sm * mb2[0, o]
        for c in range(h.shape[0]):
            v += h[c] * w2s[j, c, o]
        for c in range(hm.shape[0]):
            v += hm[c] * mw2[0, c, o]
        y[o] = v


@njit(**_INLINE)
def leaf_output_tail(w2s, b2s, j, h0, h1, h2, h3, mw2, mb2, m0, m1, m2, m3, s, y0, y1, y2, y3):
    """:func:`leaf_output4` for the last ``O % 64`` outputs only (after the full blocks), in blocks
    of 16 whose accumulators stay in registers, for four samples (they may repeat: a group of two
    passes each twice). One sample alone takes :func:`leaf_output_tail1`.

    A block narrower than 16 (all of a classifier's 10 outputs) reads whole blocks too, running on
    into the next row, as the hidden layer does (:func:`whole_block_rows`); only the last rows of
    the last leaf, or of the master leaf, fall back to a loop of the block's width. The biases are
    added last. Until round 17 every tail output was its own scalar sum over the hidden units, down
    a column of ``w2s``.
    """
    l = h0.shape[0]
    m = m0.shape[0]
    O = y0.shape[0]
    B = HID_BLOCK
    sm = master_share(s, w2s)
    acc = carray(_stack_block(y0.dtype), ACC_BLOCK)
    first = (O // OUT_BLOCK) * OUT_BLOCK
    for tb in range((O - first + B - 1) // B):
        o0 = first + tb * B
        w = min(B, O - o0)
        for t in range(4 * B):
            acc[t] = 0
        rows = l if w == B else whole_block_rows(w2s, j, o0)
        mrows = m if w == B else whole_block_rows(mw2, 0, o0)
        add_rows4(acc, B, w2s, j, 0, rows, o0, B, h0, h1, h2, h3)
        add_rows4(acc, B, w2s, j, rows, l, o0, w, h0, h1, h2, h3)  # rows a whole block would overrun
        add_rows4(acc, B, mw2, 0, 0, mrows, o0, B, m0, m1, m2, m3)
        add_rows4(acc, B, mw2, 0, mrows, m, o0, w, m0, m1, m2, m3)
        for t in range(w):  # row by row: the rows may be one array twice
            b = s * b2s[j, o0 + t] + sm * mb2[0, o0 + t]
            y0[o0 + t] = acc[t] + b
            y1[o0 + t] = acc[B + t] + b
            y2[o0 + t] = acc[2 * B + t] + b
            y3[o0 + t] = acc[3 * B + t] + b


@njit(**_SERIAL)
def leaf_output4(w2s, b2s, j, jn, h0, h1, h2, h3, mw2, mb2, m0, m1, m2, m3, s, y0, y1, y2, y3, stream):
    """:func:`leaf_output` for four samples of leaf j (master hidden units ``m*``): each block of
    weights is loaded once for the four, 4 x 64 accumulators stay in registers. Samples may
    repeat. Leaf ``jn``'s rows are prefetched alongside. No allocation.

    Why the full blocks are a loop of their own: with a variable block width (the remainder handled
    in the same loop) LLVM kept the accumulators' setup and stores generic, and the block ran at
    about half the FMA rate.
    """
    l = h0.shape[0]
    m = m0.shape[0]
    O = y0.shape[0]
    B = OUT_BLOCK
    sm = master_share(s, w2s)
    acc = carray(_stack_block(y0.dtype), ACC_BLOCK)
    for ob in range(O // B):
        o0 = ob * B
        for t in range(B):
            b = s * b2s[j, o0 + t] + sm * mb2[0, o0 + t]
            acc[t] = b
            acc[B + t] = b
            acc[2 * B + t] = b
            acc[3 * B + t] = b
        for c in range(l):
            prefetch_out_row(w2s, jn, c, o0)
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
        add_rows4(acc, B, mw2, 0, 0, m, o0, B, m0, m1, m2, m3)
        # row by row: the rows may be one array twice (a repeated sample), each stored whole
        store_block(y0, o0, acc, 0, stream)
        store_block(y1, o0, acc, B, stream)
        store_block(y2, o0, acc, 2 * B, stream)
        store_block(y3, o0, acc, 3 * B, stream)
    if O % B:
        leaf_output_tail(w2s, b2s, j, h0, h1, h2, h3, mw2, mb2, m0, m1, m2, m3, s, y0, y1, y2, y3)


@njit(**_SERIAL)
def leaf_output2(w2s, b2s, j, jn, h0, h1, mw2, mb2, m0, m1, s, y0, y1, stream):
    """:func:`leaf_output` for two samples of leaf j: each block of weights loaded once for both,
    2 x 64 accumulators in registers; leaf ``jn``'s rows are prefetched alongside. No allocation."""
    l = h0.shape[0]
    m = m0.shape[0]
    O = y0.shape[0]
    B = OUT_BLOCK
    sm = master_share(s, w2s)
    acc = carray(_stack_block(y0.dtype), ACC_BLOCK)
    for ob in range(O // B):
        o0 = ob * B
        for t in range(B):
            b = s * b2s[j, o0 + t] + sm * mb2[0, o0 + t]
            acc[t] = b
            acc[B + t] = b
        for c in range(l):
            prefetch_out_row(w2s, jn, c, o0)
            g0 = h0[c]
            g1 = h1[c]
            for t in range(B):
                wv = w2s[j, c, o0 + t]
                acc[t] += g0 * wv
                acc[B + t] += g1 * wv
        for c in range(m):
            g0 = m0[c]
            g1 = m1[c]
            for t in range(B):
                wv = mw2[0, c, o0 + t]
                acc[t] += g0 * wv
                acc[B + t] += g1 * wv
        store_block(y0, o0, acc, 0, stream)  # row by row (see leaf_output4)
        store_block(y1, o0, acc, B, stream)
    if O % B:
        leaf_output_tail(w2s, b2s, j, h0, h1, h0, h1, mw2, mb2, m0, m1, m0, m1, s, y0, y1, y0, y1)


def _leaf_passes(K):
    """The hidden and the output pass of a leaf for ``K`` samples at once, :func:`leaf_hidden4` and
    :func:`leaf_output4` for ``K`` fixed at compile time (a closure's constant, so that the loops
    over the samples unroll and the accumulators stay in registers): ``hidden(w1s, b1s, j, jn, act,
    scale, X, perm, p, H)`` and ``output(w2s, b2s, j, jn, mw2, mb2, s, H, HM, p, perm, Y, stream)``
    for the samples ``perm[p:p + K]`` of ``X``, hidden rows ``H[p:p + K]`` (``HM`` the master
    leaf's) and output rows ``Y[perm[p:p + K]]``.

    Why: a leaf whose bucket holds five or six samples ran a pass of four and then a single sample
    or a pair, which brings the leaf's 96 KB of weights from L2 a second time for one or two samples
    (round 20). With six samples the output pass keeps 24 accumulator registers in float32 (48 in
    float64, which spill: float64 runs six as four and two). The same factory in place of the
    hand-written passes of four and two ran 3-7 % slower in the whole call (paired), so those stay.
    """

    @njit(**_SERIAL)
    def hidden(w1s, b1s, j, jn, act, scale, X, perm, p, H):
        l = H.shape[1]
        D = X.shape[1]
        B = HID_BLOCK
        acc = carray(_stack_block(X.dtype), ACC_BLOCK)
        for cb in range((l + B - 1) // B):
            c0 = cb * B
            w = min(B, l - c0)
            for t in range(2 * K * B):
                acc[t] = 0
            rows = D if w == B else whole_block_rows(w1s, j, c0)
            nxt = jn * D * l + c0
            for i2 in range(rows // 2):
                i = 2 * i2
                _prefetch(w1s, nxt + i * l)
                _prefetch(w1s, nxt + (i + 1) * l)
                for c in range(B):
                    wc = w1s[j, i, c0 + c]
                    we = w1s[j, i + 1, c0 + c]
                    for q in range(K):
                        acc[q * B + c] += X[perm[p + q], i] * wc
                        acc[(K + q) * B + c] += X[perm[p + q], i + 1] * we
            for i in range(2 * (rows // 2), D):
                for c in range(w):
                    wc = w1s[j, i, c0 + c]
                    for q in range(K):
                        acc[q * B + c] += X[perm[p + q], i] * wc
            for c in range(w):
                b = b1s[j, c0 + c]
                for q in range(K):
                    H[p + q, c0 + c] = scale * activate((acc[q * B + c] + acc[(K + q) * B + c]) + b, act)

    @njit(**_SERIAL)
    def output(w2s, b2s, j, jn, mw2, mb2, s, H, HM, p, perm, Y, stream):
        l = H.shape[1]
        m = HM.shape[1]
        O = Y.shape[1]
        B = OUT_BLOCK
        sm = master_share(s, w2s)
        acc = carray(_stack_block(Y.dtype), ACC_BLOCK)
        for ob in range(O // B):
            o0 = ob * B
            for t in range(B):
                b = s * b2s[j, o0 + t] + sm * mb2[0, o0 + t]
                for q in range(K):
                    acc[q * B + t] = b
            for c in range(l):
                prefetch_out_row(w2s, jn, c, o0)
                for t in range(B):
                    wv = w2s[j, c, o0 + t]
                    for q in range(K):
                        acc[q * B + t] += H[p + q, c] * wv
            for c in range(m):
                for t in range(B):
                    wv = mw2[0, c, o0 + t]
                    for q in range(K):
                        acc[q * B + t] += HM[p + q, c] * wv
            for q in range(K):
                store_block(Y[perm[p + q]], o0, acc, q * B, stream)
        if O % B:
            for q0 in range(0, K, 4):  # groups of four, the last one padded with repeats
                p0 = p + q0
                p1 = p + min(q0 + 1, K - 1)
                p2 = p + min(q0 + 2, K - 1)
                p3 = p + min(q0 + 3, K - 1)
                leaf_output_tail(w2s, b2s, j, H[p0], H[p1], H[p2], H[p3], mw2, mb2, HM[p0], HM[p1], HM[p2],
                                 HM[p3], s, Y[perm[p0]], Y[perm[p1]], Y[perm[p2]], Y[perm[p3]])

    return hidden, output


leaf_hidden5, leaf_output5 = _leaf_passes(5)
leaf_hidden6, leaf_output6 = _leaf_passes(6)


@njit(**_INLINE)
def leaf_apply_one(w1s, b1s, w2s, b2s, j, jn, act, mw1, mb1, mw2, mb2, s, x, h, hm, y, stream):
    """Leaf j on one sample, mixed with the master leaf:
    ``y = s L_j(x) + (1 - s) M(x)``, ``L_j(x) = act(x @ w1s[j] + b1s[j]) @ w2s[j] + b2s[j]``,
    ``M(x) = act(x @ mw1[0] + mb1[0]) @ mw2[0] + mb2[0]``.

    ``x`` (D,), scratch ``h`` (l,) and ``hm`` (m,), output ``y`` (O,). Without a master leaf m = 0
    and s = 1 (then ``y = L_j(x)`` exactly). No allocation; loops run over contiguous rows.
    """
    leaf_hidden(w1s, b1s, j, jn, act, s, x, h)
    if hm.shape[0]:
        leaf_hidden(mw1, mb1, 0, 0, act, master_share(s, w1s), x, hm)
    leaf_output(w2s, b2s, j, jn, h, mw2, mb2, hm, s, y, stream)


@njit(**_INLINE)
def leaf_forward_one(node_weights, node_biases, w1s, b1s, w2s, b2s, act, mw1, mb1, mw2, mb2, s,
                     x, h, hm, y):
    """Hard leaf-FFF inference of one sample (SPEC §1), with the eFFF master leaf (SPEC §3).

    Parameters
    ----------
    node_weights : ndarray of shape (n_nodes, D)
    node_biases : ndarray of shape (n_nodes, 1)
    w1s, b1s, w2s, b2s : ndarrays of shapes (L, D, l), (L, l), (L, l, O), (L, O)
    act : int
        Activation code of the leaves.
    mw1, mb1, mw2, mb2 : ndarrays of shapes (1, D, m), (1, m), (1, m, O), (1, O)
        The master leaf (``magic_w1`` ...); without one m = 0 and ``mb2`` any finite row.
    s : float
        ``sigmoid(k)``, the tree's share of the output; 1 without a master leaf.
    x : ndarray of shape (D,)
    h : ndarray of shape (l,)
        Scratch for the leaf's hidden layer.
    hm : ndarray of shape (m,)
        Scratch for the master leaf's hidden layer.
    y : ndarray of shape (O,)
        Output ``s L_j(x) + (1 - s) M(x)``, overwritten.

    Performance contract: d + 1 passes over weight rows (+1 with a master leaf), no allocation.
    """
    j = leaf_route_one(node_weights, node_biases, x)
    leaf_apply_one(w1s, b1s, w2s, b2s, j, j, act, mw1, mb1, mw2, mb2, s, x, h, hm, y, False)


@njit(**_SERIAL)
def leaf_forward_one_checked(node_weights, node_biases, w1s, b1s, w2s, b2s, act, x, h, y):
    """:func:`leaf_forward_one` without a master leaf, when every value of ``x`` is finite (returns
    True); else returns False and leaves ``y`` untouched. One dispatch for the check and the
    inference of one sample; fewer arguments than :func:`leaf_forward_one_master_checked` (each
    costs dispatch time). No allocation: the empty master arrays are views."""
    if not all_finite(x):
        return False
    node_weights, node_biases, x, h, y = _borrow(node_weights), _borrow(node_biases), _borrow(x), _borrow(h), _borrow(y)
    w1s, b1s, w2s, b2s = _borrow(w1s), _borrow(b1s), _borrow(w2s), _borrow(b2s)
    leaf_forward_one(node_weights, node_biases, w1s, b1s, w2s, b2s, act, w1s[:1, :, :0], b1s[:1, :0],
                     w2s[:1, :0, :], b2s[:1], x.dtype.type(1), x, h, h[:0], y)
    return True


@njit(**_SERIAL)
def leaf_forward_one_master_checked(node_weights, node_biases, w1s, b1s, w2s, b2s, act, mw1, mb1, mw2,
                                    mb2, s, x, h, hm, y):
    """:func:`leaf_forward_one` (master leaf included) when every value of ``x`` is finite (returns
    True); else returns False and leaves ``y`` untouched."""
    if not all_finite(x):
        return False
    node_weights, node_biases, x, h, hm, y = (_borrow(node_weights), _borrow(node_biases), _borrow(x), _borrow(h),
                                              _borrow(hm), _borrow(y))
    w1s, b1s, w2s, b2s = _borrow(w1s), _borrow(b1s), _borrow(w2s), _borrow(b2s)
    mw1, mb1, mw2, mb2 = _borrow(mw1), _borrow(mb1), _borrow(mw2), _borrow(mb2)
    leaf_forward_one(node_weights, node_biases, w1s, b1s, w2s, b2s, act, mw1, mb1, mw2, mb2, s, x, h,
                     hm, y)
    return True


@njit(**_SERIAL)
def leaf_forward_serial(node_weights, node_biases, w1s, b1s, w2s, b2s, act, mw1, mb1, mw2, mb2, s,
                        X, Y, check_finite):
    """:func:`leaf_forward_one` on each row of ``X`` (n, D) into ``Y`` (n, O).

    With ``check_finite``, returns False (``Y`` untouched) when ``X`` holds NaN or inf; else True.
    Performance contract: serial, scratch O(l + m), no allocation in the loop (small batches).
    """
    node_weights, node_biases, X, Y = _borrow(node_weights), _borrow(node_biases), _borrow(X), _borrow(Y)
    w1s, b1s, w2s, b2s = _borrow(w1s), _borrow(b1s), _borrow(w2s), _borrow(b2s)
    mw1, mb1, mw2, mb2 = _borrow(mw1), _borrow(mb1), _borrow(mw2), _borrow(mb2)
    if check_finite and not all_finite(X):
        return False
    h = np.empty(w1s.shape[2], X.dtype)
    hm = np.empty(mw1.shape[2], X.dtype)
    for q in range(X.shape[0]):
        leaf_forward_one(node_weights, node_biases, w1s, b1s, w2s, b2s, act, mw1, mb1, mw2, mb2, s,
                         X[q], h, hm, Y[q])
    return True


@njit(**_SERIAL)
def set_all(a, value):
    """Every element of the 1-d array ``a`` set to ``value``, in a plain loop; returns ``a``.

    Why: in a function compiled with ``parallel=True``, ``np.zeros`` and ``np.ones`` (and ``a[:] =
    v``) become parallel loops of their own, each a launch of the thread pool: three of them cost
    ``leaf_forward_batch`` about 3.5 us a call before its workers started (round 22). A call of this
    serial function is not turned into one."""
    for i in range(a.shape[0]):
        a[i] = value
    return a


@njit(**_SERIAL)
def take_samples(counters, size, perm):
    """The next task of a batch's samples, taken from the shared counter ``counters[0]``: its range
    ``[lo, hi)`` of at most ``size`` samples, with ``perm[lo:hi]`` reset to ``lo .. hi - 1``; an empty
    range (``lo == hi``) when none is left (``perm`` has one entry per sample)."""
    n = perm.shape[0]
    lo = min(n, _atomic_next(counters, 0) * size)
    hi = min(n, lo + size)
    for p in range(lo, hi):
        perm[p] = p
    return lo, hi


@njit(**_SERIAL)
def bucket_by(keys, n_keys, offsets, perm):
    """Counting sort: ``perm`` lists the samples grouped by key; key q owns perm[offsets[q]:offsets[q+1]].

    ``keys`` (n,) ints in [0, n_keys); ``offsets`` (n_keys + 1,) and ``perm`` (n,) are filled. Stable.
    """
    for q in range(n_keys + 1):
        offsets[q] = 0
    for q in range(keys.shape[0]):
        offsets[keys[q] + 1] += 1
    for q in range(n_keys):
        offsets[q + 1] += offsets[q]
    for q in range(keys.shape[0]):  # offsets[key] runs ahead while filling, then is restored
        key = keys[q]
        perm[offsets[key]] = q
        offsets[key] += 1
    for q in range(n_keys, 0, -1):
        offsets[q] = offsets[q - 1]
    offsets[0] = 0


@njit(**_SERIAL)
def leaf_apply_group(w1s, b1s, w2s, b2s, j, jn, act, mw1, mb1, mw2, mb2, s, X, perm, lo, hi, H, HM, Y,
                     stream):
    """Leaf j (mixed with the master leaf) on the samples ``perm[lo:hi]`` of ``X`` into ``Y``;
    hidden rows in ``H[lo:hi]`` (n, l) and ``HM[lo:hi]`` (n, m).

    Four samples at a time share every weight load (:func:`leaf_hidden4`, :func:`leaf_output4`);
    a rest of five or six runs as one pass (:func:`_leaf_passes`), of three as a four with a
    repeat, of two as a pair, a single one alone. The leaf's weights (2 * D * l values) come from
    memory once and stay in L2 for the rest; leaf ``jn``'s (the next one this thread runs) are
    prefetched meanwhile. The master leaf is one more leaf that every group runs (its rows stay in
    L2). No allocation.
    """
    w1s, b1s, w2s, b2s = _borrow(w1s), _borrow(b1s), _borrow(w2s), _borrow(b2s)
    mw1, mb1, mw2, mb2 = _borrow(mw1), _borrow(mb1), _borrow(mw2), _borrow(mb2)
    X, H, HM, Y = _borrow(X), _borrow(H), _borrow(HM), _borrow(Y)
    master = HM.shape[1] > 0
    sm = master_share(s, w1s)
    p = lo
    while hi - p >= 3:
        if hi - p == 5:  # the rest in one pass: a pass of four and a single one read the weights twice
            leaf_hidden5(w1s, b1s, j, jn, act, s, X, perm, p, H)
            if master:
                leaf_hidden5(mw1, mb1, 0, 0, act, sm, X, perm, p, HM)
            leaf_output5(w2s, b2s, j, jn, mw2, mb2, s, H, HM, p, perm, Y, stream)
            return
        if hi - p == 6 and Y.itemsize == 4:  # float64: 48 registers of sums spill (1.6x slower than 4 + 2)
            leaf_hidden6(w1s, b1s, j, jn, act, s, X, perm, p, H)
            if master:
                leaf_hidden6(mw1, mb1, 0, 0, act, sm, X, perm, p, HM)
            leaf_output6(w2s, b2s, j, jn, mw2, mb2, s, H, HM, p, perm, Y, stream)
            return
        q0 = perm[p]
        q1 = perm[p + 1]
        q2 = perm[p + 2]
        p3 = min(p + 3, hi - 1)
        q3 = perm[p3]
        leaf_hidden4(w1s, b1s, j, jn, act, s, X[q0], X[q1], X[q2], X[q3], H[p], H[p + 1], H[p + 2], H[p3])
        if master:
            leaf_hidden4(mw1, mb1, 0, 0, act, sm, X[q0], X[q1], X[q2], X[q3], HM[p], HM[p + 1], HM[p + 2],
                         HM[p3])
        leaf_output4(w2s, b2s, j, jn, H[p], H[p + 1], H[p + 2], H[p3], mw2, mb2, HM[p], HM[p + 1], HM[p + 2],
                     HM[p3], s, Y[q0], Y[q1], Y[q2], Y[q3], stream)
        p += 4
    if hi - p == 2:
        q0 = perm[p]
        q1 = perm[p + 1]
        leaf_hidden2(w1s, b1s, j, jn, act, s, X[q0], X[q1], H[p], H[p + 1])
        if master:
            leaf_hidden2(mw1, mb1, 0, 0, act, sm, X[q0], X[q1], HM[p], HM[p + 1])
        leaf_output2(w2s, b2s, j, jn, H[p], H[p + 1], mw2, mb2, HM[p], HM[p + 1], s, Y[q0], Y[q1], stream)
        p += 2
    if p < hi:
        q = perm[p]
        leaf_apply_one(w1s, b1s, w2s, b2s, j, jn, act, mw1, mb1, mw2, mb2, s, X[q], H[p], HM[p], Y[q],
                       stream)


#: samples per routing task. Its x rows do not all stay in L2 across the levels (512 rows of D = 768
#: are 1.5 MB, against Zen 4's 1 MB), but more samples share each node's row: 256 ran 2 % slower at
#: leaf-768-d8-l16, batch 1024 (paired 0.976 at 2 threads, 0.993 at 1; round 18)
ROUTE_TASK = 512
#: samples per worker thread at least (below, fewer threads: a launch costs more than it saves)
LEAF_MIN_SAMPLES = 4
#: leaves per leaf-phase task: each worker owns a range of tasks and takes the others' when its own
#: are done (:func:`next_task`), so a thread that runs slower (uneven buckets, a core shared with
#: another process) simply runs fewer
LEAF_TASK = 16


@njit(**_PARALLEL)
def leaf_forward_batch(node_weights, node_biases, w1s, b1s, w2s, b2s, act, mw1, mb1, mw2, mb2, s,
                       X, Y, n_threads, check_finite, reverse):
    """Hard leaf-FFF inference of a batch ``X`` (n, D) into ``Y`` (n, O) with ``n_threads`` threads,
    mixed with the master leaf (arguments as in :func:`leaf_forward_one`).

    With ``check_finite``, returns False when ``X`` holds NaN or inf (``Y`` is then left
    unfinished), else True; for depth >= 1 the check rides on the root logits (a non-finite input
    value makes its sample's root logit non-finite; a finite logit that overflows is also
    reported, a false alarm the caller resolves by validating ``X``), at depth 0 it is a separate
    pass.

    Two phases, each a parallel loop over the workers: routing (:func:`leaf_route_worker`: every
    sample's leaf), then, after a counting sort of the samples by leaf (:func:`bucket_by`), the
    leaves (:func:`leaf_apply_worker`). ``benchmarks/leaf_phases.py`` times the phases apart with
    these same workers. The loops stay in this function: Numba starts its threading layer when it
    loads a function holding a parallel loop from the disk cache, not when it loads one that calls
    such a function (a caller loaded that way crashed, round 18). Scratch O(n * (l + m)); no
    allocation in the loops.
    """
    n = X.shape[0]
    L = w1s.shape[0]
    depth = 0
    while (1 << depth) < L:
        depth += 1
    n_workers = max(1, min(n_threads, n // LEAF_MIN_SAMPLES))
    # task counters 128 bytes apart (no false sharing): one per worker for the routing, then for the leaves
    counters = set_all(np.empty(2 * n_workers * 16, np.int64), 0)
    ok = set_all(np.empty(n_workers, np.bool_), True)
    leaf = set_all(np.empty(n, np.int64), 0)
    perm = np.empty(n, np.int64)
    if depth > 0:
        right = np.empty(n, np.bool_)
        right2 = np.empty(n, np.bool_)
        stacks = np.empty((n_workers, 2 * depth + 4, 4), np.int64)
        no_logits = np.empty((0, 2), X.dtype)
        for t in prange(n_workers):
            ok[t] = leaf_route_worker(node_weights, node_biases, X, perm, leaf, right, right2, stacks[t],
                                      no_logits, counters, t, n_workers)
    elif check_finite:
        ok[0] = all_finite(X)
    if check_finite:
        for t in range(n_workers):
            if not ok[t]:
                return False
    offsets = np.empty(L + 1, np.int64)
    bucket_by(leaf, L, offsets, perm)
    H = np.empty((n, w1s.shape[2]), X.dtype)
    HM = np.empty((n, mw1.shape[2]), X.dtype)
    stream = Y.size * Y.itemsize >= STREAM_MIN_BYTES
    for t in prange(n_workers):
        leaf_apply_worker(w1s, b1s, w2s, b2s, act, mw1, mb1, mw2, mb2, s, X, perm, offsets, H, HM, Y,
                          stream, counters, 16 * n_workers, t, n_workers, reverse)
    return True


@njit(**_SERIAL)
def leaf_route_worker(node_weights, node_biases, X, perm, leaf, right, right2, stack, no_logits, counters,
                      t, n_workers):
    """Worker ``t``'s share (of ``n_workers``) of :func:`leaf_forward_batch`'s routing: tasks of
    ``ROUTE_TASK`` samples (:func:`next_task`: its own range first, then the others', through the
    counters ``counters[16 * r]``) until none is left, each walking the tree with groups of samples
    (:func:`leaf_route_group`), which write ``leaf``. False when one of its samples had a non-finite
    root logit, else True."""
    ok = True
    n = X.shape[0]
    n_tasks = (n + ROUTE_TASK - 1) // ROUTE_TASK
    v = 0
    while True:
        v, task = next_task(counters, 0, t, v, n_workers, n_tasks, False)
        if task < 0:
            return ok
        lo = task * ROUTE_TASK
        hi = min(n, lo + ROUTE_TASK)
        for p in range(lo, hi):
            perm[p] = p
        if not leaf_route_group(node_weights, node_biases, X, perm, lo, hi, leaf, right, right2, stack,
                                no_logits):
            ok = False


@njit(**_INLINE)
def task_leaves(task, L, reverse):
    """The leaves of leaf task ``task`` (leaves ``task * LEAF_TASK`` on) in the order a worker runs
    them: ``(first, stop, step)``, so that they are ``first, first + step, ...`` up to ``stop``
    excluded: downwards with ``reverse`` (see :func:`leaf_apply_worker`)."""
    j0 = task * LEAF_TASK
    j1 = min(L, j0 + LEAF_TASK)
    if reverse:
        return j1 - 1, j0 - 1, -1
    return j0, j1, 1


@njit(**_INLINE)
def next_task(counters, base, t, v, n_workers, n_tasks, reverse):
    """Worker ``t``'s next task of ``n_tasks`` (leaf tasks, or routing's): ``(v, task)``, ``task`` -1
    when none is left.

    Worker r owns the tasks ``[r * n_tasks // n_workers, (r + 1) * n_tasks // n_workers)``, taken
    in order (from the last with ``reverse``) through its counter ``counters[base + 16 * r]``.
    Worker t takes from its own range first (``v = 0``), then helps the workers after it (``v = 1,
    2, ...``: worker ``(t + v) % n_workers``), which take from the same counter, so that no task runs
    twice and a slower worker's last tasks go to those that finished (:func:`leaf_apply_worker`)."""
    while v < n_workers:
        r = (t + v) % n_workers
        t0 = r * n_tasks // n_workers
        t1 = (r + 1) * n_tasks // n_workers
        i = _atomic_next(counters, base + 16 * r)
        if i < t1 - t0:
            return v, (t1 - 1 - i if reverse else t0 + i)
        v += 1
    return v, -1


@njit(**_INLINE)
def next_bucket(offsets, j, stop, step):
    """The first leaf of ``j, j + step, ...`` (up to ``stop`` excluded) whose bucket holds samples,
    or -1."""
    while j != stop:
        if offsets[j + 1] > offsets[j]:
            return j
        j += step
    return -1


@njit(**_INLINE)
def take_task(counters, base, t, v, n_workers, L, reverse, offsets):
    """Worker ``t`` takes its next leaf task (:func:`next_task`): ``(v, task, j, stop, step)``, with
    ``j`` the task's first leaf with samples (-1 when it has none, or when no task is left: ``task <
    0``) and its leaves ``j, j + step, ...`` up to ``stop`` excluded (:func:`task_leaves`)."""
    n_tasks = (L + LEAF_TASK - 1) // LEAF_TASK
    v, task = next_task(counters, base, t, v, n_workers, n_tasks, reverse)
    if task < 0:
        return v, task, -1, 0, 1
    first, stop, step = task_leaves(task, L, reverse)
    return v, task, next_bucket(offsets, first, stop, step), stop, step


@njit(**_SERIAL)
def leaf_apply_worker(w1s, b1s, w2s, b2s, act, mw1, mb1, mw2, mb2, s, X, perm, offsets, H, HM, Y, stream,
                      counters, base, t, n_workers, reverse):
    """Worker ``t``'s share (of ``n_workers``) of :func:`leaf_forward_batch`'s leaves: tasks of
    ``LEAF_TASK`` leaves (:func:`next_task`: its own range of tasks first, then the rest of the
    others', through the counters ``counters[base + 16 * r]``) until none is left; each leaf j
    runs on its bucket ``perm[offsets[j]:offsets[j + 1]]`` reading its weights once, four samples
    per pass (:func:`leaf_apply_group`), while the weights of the next leaf this worker runs are
    prefetched: the next leaf with samples, taken from the worker's next task when this is its
    task's last (the worker claims that task one leaf early). Until round 19 the next leaf was
    simply j + 1 in the task: an empty leaf's weights were fetched for nothing and the one after it,
    like every task's first leaf, started cold.

    Why each worker owns a range: on some hosts a core reads the weights of the leaves it ran in the
    previous call faster than those another core ran. With every task taken from one shared counter,
    the leaves changed cores from call to call, and on round 21's host the leaf phase took 0.47 ms
    instead of 0.37 ms
    (leaf-768-d8-l16, batch 1024, 2 threads; the same tasks with their owner swapped at every call:
    0.53 ms; round 21, docs/kernels.md). A worker that finishes its range early still helps the
    others, from their counters, so a slower core does not hold up the call.

    With ``reverse`` the leaves run from the last to the first: callers alternate the direction from
    call to call, so that the leaves a call reads first are those the previous call read last, still
    in cache when all the weights do not fit (a fixed order evicts each leaf just before it is
    needed again). With ``stream`` the outputs are written with streaming stores (:func:`_store16`),
    fenced before the worker ends.
    """
    L = w1s.shape[0]
    v, task, j, stop, step = take_task(counters, base, t, 0, n_workers, L, reverse, offsets)
    while task >= 0:
        if j < 0:  # the task taken has no leaf with samples
            v, task, j, stop, step = take_task(counters, base, t, v, n_workers, L, reverse, offsets)
            continue
        jn = next_bucket(offsets, j + step, stop, step)
        if jn < 0:  # j is the task's last: take the next task now, to prefetch its first leaf
            v, task, jn, stop, step = take_task(counters, base, t, v, n_workers, L, reverse, offsets)
        leaf_apply_group(w1s, b1s, w2s, b2s, j, jn if jn >= 0 else j, act, mw1, mb1, mw2, mb2, s, X, perm,
                         offsets[j], offsets[j + 1], H, HM, Y, stream)
        j = jn
    if stream:
        _store_fence()


@njit(**_SERIAL)
def _thread_count():
    return _num_threads()


def thread_count():
    """The thread count the batch kernels read for the calling thread (:func:`_num_threads`)."""
    get_num_threads()  # start the threading layer before _thread_count loads from the disk cache
    return _thread_count()


@njit(**_SERIAL)
def aligned_output(n, width, X):
    """An uninitialised (n, width) output of ``X``'s dtype whose first row starts on a 64-byte
    boundary (the streaming stores of :func:`_store16` need whole aligned lines): a view into a
    buffer one line larger (Numba aligns its own arrays to 32 bytes only)."""
    pad = 64 // X.itemsize
    buf = np.empty(n * width + pad, X.dtype)
    start = (-buf.ctypes.data % 64) // X.itemsize
    return buf[start:start + n * width].reshape((n, width))


@njit(**_SERIAL)
def leaf_forward_new(node_weights, node_biases, w1s, b1s, w2s, b2s, act, mw1, mb1, mw2, mb2, s, X,
                     check_finite, reverse):
    """:func:`leaf_forward_batch` into a new output (:func:`aligned_output`) with the calling
    thread's Numba thread count; returns ``(ok, Y)``.

    Why it exists: a call from Python after a batch kernel runs with cold caches (the kernel has
    streamed the weights through them), so every Python step costs several times its usual price.
    Allocating the output and reading the thread count here instead of in Python saves about 0.03 ms
    per call (docs/kernels.md, round 8)."""
    Y = aligned_output(X.shape[0], w2s.shape[2], X)
    ok = leaf_forward_batch(node_weights, node_biases, w1s, b1s, w2s, b2s, act, mw1, mb1, mw2, mb2, s, X,
                            Y, _num_threads(), check_finite, reverse)
    return ok, Y


# ---------------------------------------------------------------------------------------------
# neuron tree (SPEC §2): per tree, i_(m+1) = 2 i_m + 1 + [a > 0]; y += act(a) * w_out_t[row]
# ---------------------------------------------------------------------------------------------
@njit(**_INLINE)
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


@njit(**_INLINE)
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
    w_in, b_in, w_out_t, x, y = _borrow(w_in), _borrow(b_in), _borrow(w_out_t), _borrow(x), _borrow(y)
    nt_forward_one(w_in, b_in, w_out_t, depth, parallel_size, act, x, y)
    return True


@njit(**_SERIAL)
def nt_forward_serial(w_in, b_in, w_out_t, depth, parallel_size, act, X, Y):
    """:func:`nt_forward_one` on each row of ``X`` (n, D) into ``Y`` (n, O).

    Performance contract: serial, no allocation (for one sample and tiny batches).
    """
    w_in, b_in, w_out_t, X, Y = _borrow(w_in), _borrow(b_in), _borrow(w_out_t), _borrow(X), _borrow(Y)
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
    return split_group(perm, lo, hi, right)


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
def dot_rows2(w, r0, r1, x0, x1):
    """``w[r0] . x0`` and ``w[r1] . x1`` in one loop: two independent dot products side by side."""
    a0 = x0.dtype.type(0)
    a1 = a0
    for i in range(x0.shape[0]):
        a0 += w[r0, i] * x0[i]
        a1 += w[r1, i] * x1[i]
    return a0, a1


@njit(**_SERIAL)
def nt_logits_two(w_in, b_in, base, k0, k1, level, depth, x0, x1, a0_out, a1_out):
    """:func:`nt_logits_one` for two samples at once, from nodes ``k0`` and ``k1`` at ``level``,
    each on its own path: the two descents do not wait for each other's branch (a descent alone is
    a chain of dependent dot products and branches). Returns the two node indices one level below
    ``depth``. No allocation."""
    for m in range(level, depth + 1):
        r0 = base + k0
        r1 = base + k1
        a0, a1 = dot_rows2(w_in, r0, r1, x0, x1)
        a0 += b_in[r0]
        a1 += b_in[r1]
        a0_out[m] = a0
        a1_out[m] = a1
        k0 = 2 * k0 + (2 if a0 > 0 else 1)
        k1 = 2 * k1 + (2 if a1 > 0 else 1)
    return k0, k1


@njit(**_SERIAL)
def nt_top_group(w_in, b_in, base, K, X, perm, lo0, hi0, A, node, right, right2, stack):
    """Logits of the top ``K`` levels (0 .. K - 1) of one tree for the samples ``perm[lo0:hi0]`` into
    ``A[s, :K]``, and the place of each sample's node within level ``K`` (0 .. 2^K - 1: its bucket)
    into ``node[s]``.

    A depth-first walk that carries the group of samples sitting at each node, two levels per pass
    where both fall within the top K (:func:`two_level_pass`, as in the leaf FFF's routing), else
    one (:func:`nt_group_logits`); a group of at most three samples finishes sample by sample, two side by
    side (:func:`nt_logits_two`). Ties go left (``a > 0`` goes right), as everywhere in the neuron
    tree. ``right``, ``right2`` (n,) bool scratch; ``stack`` int64 scratch of shape
    (>= 2 * K + 4, 4). ``perm[lo0:hi0]`` is reordered. No allocation.
    """
    w_in, b_in, X, perm, A = _borrow(w_in), _borrow(b_in), _borrow(X), _borrow(perm), _borrow(A)
    node, right, right2, stack = _borrow(node), _borrow(right), _borrow(right2), _borrow(stack)
    first = (1 << K) - 1  # heap index of the first node of level K
    top = push(stack, 0, 0, 0, lo0, hi0)
    while top > 0:
        top -= 1
        k, level, lo, hi = stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3]
        if level == K:
            for p in range(lo, hi):
                node[perm[p]] = k - first
            continue
        if hi - lo <= 3:  # a small group finishes sample by sample, two side by side
            q0 = perm[lo]
            q1 = perm[lo + 1] if hi - lo > 1 else q0
            k0, k1 = nt_logits_two(w_in, b_in, base, k, k, level, K - 1, X[q0], X[q1], A[q0], A[q1])
            node[q0] = k0 - first
            node[q1] = k1 - first
            if hi - lo == 3:
                q = perm[lo + 2]
                node[q] = nt_logits_one(w_in, b_in, base, k, level, K - 1, X[q], A[q]) - first
            continue
        r = base + k
        if level + 1 < K:  # two levels per pass
            c1 = r + k + 1  # rows of the children 2k + 1 and 2k + 2
            m1, mid, m2, _ = two_level_pass(w_in, r, c1, c1 + 1, b_in[r], b_in[c1], b_in[c1 + 1], True, X,
                                            perm, lo, hi, A, level, right, right2)
            top = push_grandchildren(stack, top, k, level + 2, lo, m1, mid, m2, hi)
            continue
        mid = nt_group_logits(w_in, b_in, r, level, X, perm, lo, hi, A, right)  # one level
        top = push_children(stack, top, k, level + 1, lo, mid, hi)


@njit(**_SERIAL)
def prefetch_row(w, r):
    """Hint the CPU to bring row ``r`` of the C-contiguous 2-D ``w`` into L2 (one hint per 64 bytes)."""
    D = w.shape[1]
    o = r * D
    for i in range(0, D, max(1, 64 // w.itemsize)):
        _prefetch(w, o + i)


@njit(**_SERIAL)
def nt_subtree_logits(w_in, b_in, base, k0, level0, depth, X, perm, lo0, hi0, A, right, stack):
    """Depth-first walk of the subtree under node ``k0`` (at ``level0``) for samples ``perm[lo0:hi0]``,
    filling their logits ``A[s, level0:]``.

    Each node is computed once for the whole group of samples that reach it
    (:func:`nt_group_logits`); a group of one sample finishes its descent alone. On return
    ``perm[lo0:hi0]`` is ordered by path (left subtrees first). ``stack`` is int64 scratch of shape
    (>= depth + 2, 4). No allocation.
    """
    w_in, b_in, X, perm = _borrow(w_in), _borrow(b_in), _borrow(X), _borrow(perm)
    A, right, stack = _borrow(A), _borrow(right), _borrow(stack)
    top = push(stack, 0, k0, level0, lo0, hi0)
    while top > 0:
        top -= 1
        k, level, lo, hi = stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3]
        if hi - lo == 1:
            nt_logits_one(w_in, b_in, base, k, level, depth, X[perm[lo]], A[perm[lo]])
            continue
        if level < depth:  # the next node is a child: its row arrives while this one computes
            prefetch_row(w_in, base + 2 * k + 1)
            prefetch_row(w_in, base + 2 * k + 2)
        mid = nt_group_logits(w_in, b_in, base + k, level, X, perm, lo, hi, A, right)
        if level < depth:
            top = push_children(stack, top, k, level + 1, lo, mid, hi)


@njit(**_SERIAL)
def nt_path_activations(base, act, a, rows):
    """Turn the logits ``a`` (levels,) of one sample into activations, in place, and write the rows
    its path visits (``base`` + node index, levels,) into ``rows``. No allocation."""
    dt = a.dtype.type
    k = 0
    for m in range(a.shape[0]):
        rows[m] = base + k
        k = 2 * k + (2 if a[m] > 0 else 1)
        a[m] = dt(activate(a[m], act))


@njit(**_SERIAL)
def nt_output_pair(w_out_t, g0, r0, g1, r1, accumulate, y0, y1, stream):
    """``y (+)= sum_m g[m] * w_out_t[r[m]]`` for two samples (activations ``g*``, rows ``r*``, levels,).

    Blocks of ``OUT_BLOCK`` outputs: 2 x 64 accumulators stay in registers over all the levels and
    each output row is stored once (was read and written once per four levels). Where both
    samples visit the same row (every level above their bucket, and deeper for neighbours in path
    order) its block is loaded once for both. ``y0`` and ``y1`` may be one array (a repeated
    sample). ``accumulate`` False overwrites. No allocation.
    """
    levels = g0.shape[0]
    O = y0.shape[0]
    B = OUT_BLOCK
    acc = carray(_stack_block(y0.dtype), ACC_BLOCK)
    for ob in range(O // B):
        o0 = ob * B
        if accumulate:
            for t in range(B):
                acc[t] = y0[o0 + t]
            for t in range(B):
                acc[B + t] = y1[o0 + t]
        else:
            for t in range(2 * B):
                acc[t] = 0
        for m in range(levels):
            ra = r0[m]
            rb = r1[m]
            ga = g0[m]
            gb = g1[m]
            if ra == rb:
                for t in range(B):
                    wv = w_out_t[ra, o0 + t]
                    acc[t] += ga * wv
                    acc[B + t] += gb * wv
            else:
                for t in range(B):
                    acc[t] += ga * w_out_t[ra, o0 + t]
                    acc[B + t] += gb * w_out_t[rb, o0 + t]
        # row by row (the rows may be one array: a repeated sample)
        store_block(y0, o0, acc, 0, stream)
        store_block(y1, o0, acc, B, stream)
    for o in range((O // B) * B, O):
        v0 = y0[o] if accumulate else y0.dtype.type(0)
        v1 = y1[o] if accumulate else y1.dtype.type(0)
        for m in range(levels):
            v0 += g0[m] * w_out_t[r0[m], o]
            v1 += g1[m] * w_out_t[r1[m], o]
        y0[o] = v0
        y1[o] = v1


@njit(**_PARALLEL)
def nt_forward_batch(w_in, b_in, w_out_t, depth, parallel_size, act, X, Y, n_threads, check_finite):
    """Hard neuron-tree inference of a batch ``X`` (n, D) into ``Y`` (n, O), all parallel trees;
    ``n_threads`` (Numba's thread count) workers take the top-level tasks.

    Performance contract, per tree:
    1. logits of the top K levels (K about log2(n / 64), at least 3): tasks of up to
       ``NT_TOP_TASK`` samples taken from a shared counter, each walking the top levels with its
       group of samples (:func:`nt_top_group`; these rows stay in L2);
    2. samples bucketed by their node at level K (counting sort); the 2^K subtrees are walked in
       parallel, each depth-first with its bucket: every node's row is read once per group of samples
       (:func:`nt_subtree_logits`), leaving the samples ordered by path;
    3. right after its walk, the bucket's outputs, sample by sample in path order: the output rows
       of neighbouring samples are shared and hot in L1/L2; two samples per pass, each output row
       ``Y[s]`` written once (:func:`nt_output_pair`); meanwhile the next bucket's x rows are
       prefetched (they come from memory: the batch's x does not stay in cache between phases).
    With ``check_finite``, returns False (``Y`` unfinished) when a root logit of tree 0 is not
    finite: ``X`` holds NaN or inf (or a logit overflowed, a false alarm the caller resolves by
    validating ``X``); else True. The check reads n logits instead of n * D inputs.
    An output of at least ``STREAM_MIN_BYTES`` is written with streaming stores by the last tree
    (:func:`_store16`). Scratch O(n * depth + 2^K * depth); no allocation in the loops.
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
    right2 = np.empty(n, np.bool_)
    stacks = np.empty((n_sub, levels + 2, 4), np.int64)
    n_workers = max(1, min(n_threads, n // LEAF_MIN_SAMPLES))
    top_stacks = np.empty((n_workers, 2 * K + 4, 4), np.int64)
    counters = set_all(np.empty(16, np.int64), 0)
    # tasks of NT_TOP_TASK samples, smaller for small batches (16 tasks at least: four per worker at
    # 4 threads). Not from the thread count: a task's groups decide the summation order of the
    # logits, and with n // (4 * n_workers) one batch gave other last bits at 1 thread than at 2
    task_size = max(8, min(NT_TOP_TASK, n // 16))
    big = Y.size * Y.itemsize >= STREAM_MIN_BYTES
    for t in range(parallel_size):
        base = t * n_nodes
        stream = big and t == parallel_size - 1  # earlier trees' sums are read back: keep them cached
        counters[0] = 0
        for wk in prange(n_workers):
            while True:
                lo, hi = take_samples(counters, task_size, perm)
                if lo == hi:
                    break
                nt_top_group(w_in, b_in, base, K, X, perm, lo, hi, A, node, right, right2, top_stacks[wk])
        if t == 0 and check_finite:  # a NaN or inf in a sample makes its root logit non-finite
            ok = True
            for q in range(n):
                ok &= is_finite(A[q, 0])
            if not ok:
                return False
        bucket_by(node, n_sub, offsets, perm)
        for q in prange(n_sub):
            lo = offsets[q]
            hi = offsets[q + 1]
            if hi > lo and K < levels:
                nt_subtree_logits(w_in, b_in, base, first + q, K, depth, X, perm, lo, hi, A, right,
                                  stacks[q])
            nt_bucket_outputs(w_out_t, base, act, A, rows, X, perm, lo, hi, offsets[min(q + 1, n_sub)],
                              offsets[min(q + 2, n_sub)], t > 0, Y, stream)
            if stream:
                _store_fence()
    return True


@njit(**_SERIAL)
def nt_bucket_outputs(w_out_t, base, act, A, rows, X, perm, lo, hi, pn, pn_end, accumulate, Y, stream):
    """Step 3 of :func:`nt_forward_batch` for the bucket ``perm[lo:hi]``, right after its walk (its
    rows are in L2): each sample's path activations, then its outputs, two samples per pass in path
    order (neighbours share rows), added to ``Y`` with ``accumulate``. Meanwhile the next bucket's x
    rows ``perm[pn:pn_end]`` are prefetched. No allocation."""
    w_out_t, A, rows, X, perm, Y = _borrow(w_out_t), _borrow(A), _borrow(rows), _borrow(X), _borrow(perm), _borrow(Y)
    for p in range(lo, hi):
        s = perm[p]
        nt_path_activations(base, act, A[s], rows[s])
    p = lo
    while p < hi:
        s0 = perm[p]
        s1 = perm[min(p + 1, hi - 1)]
        nt_output_pair(w_out_t, A[s0], rows[s0], A[s1], rows[s1], accumulate, Y[s0], Y[s1], stream)
        for _ in range(2):
            if pn < pn_end:
                prefetch_row(X, perm[pn])
                pn += 1
        p += 2


@njit(**_PARALLEL)
def nt_forward_each(w_in, b_in, w_out_t, depth, parallel_size, act, X, Y, n_threads, check_finite):
    """:func:`nt_forward_batch` for small trees (``_kernel_api.NT_EACH_MAX_BYTES``): the samples in
    ``4 * n_threads`` chunks, each sample through every tree by itself (:func:`nt_forward_one`), as
    the serial loop does; the weights stay in L2. For 16 trees of depth 0, or 16 of depth 2 on 4
    inputs, the grouped walk spent most of its time in two parallel regions, a counting sort and a
    pass over ``Y`` per tree (round 16). Returns False when a sample holds NaN or inf (with
    ``check_finite``), else True."""
    n = X.shape[0]
    n_chunks = max(1, min(n // LEAF_MIN_SAMPLES, 4 * n_threads))
    ok = set_all(np.empty(n_chunks, np.bool_), True)
    for c in prange(n_chunks):
        ok[c] = nt_rows(w_in, b_in, w_out_t, depth, parallel_size, act, X, Y, c * n // n_chunks,
                        (c + 1) * n // n_chunks, check_finite)
    for c in range(n_chunks):
        if not ok[c]:
            return False
    return True


@njit(**_SERIAL)
def nt_rows(w_in, b_in, w_out_t, depth, parallel_size, act, X, Y, lo, hi, check_finite):
    """:func:`nt_forward_one` for the samples ``lo .. hi - 1``; False at the first one holding NaN or
    inf (with ``check_finite``), else True. No allocation."""
    w_in, b_in, w_out_t, X, Y = _borrow(w_in), _borrow(b_in), _borrow(w_out_t), _borrow(X), _borrow(Y)
    for s in range(lo, hi):
        if check_finite and not all_finite(X[s]):
            return False
        nt_forward_one(w_in, b_in, w_out_t, depth, parallel_size, act, X[s], Y[s])
    return True


@njit(**_SERIAL)
def nt_forward_new(w_in, b_in, w_out_t, depth, parallel_size, act, X, check_finite, each):
    """:func:`nt_forward_batch`, or with ``each`` :func:`nt_forward_each`, into a new output with
    the calling thread's Numba thread count; returns ``(ok, Y)`` (see :func:`leaf_forward_new`)."""
    Y = aligned_output(X.shape[0], w_out_t.shape[1], X)
    if each:
        ok = nt_forward_each(w_in, b_in, w_out_t, depth, parallel_size, act, X, Y, _num_threads(), check_finite)
    else:
        ok = nt_forward_batch(w_in, b_in, w_out_t, depth, parallel_size, act, X, Y, _num_threads(),
                              check_finite)
    return ok, Y
