"""Thin calls into :mod:`fffcpu.kernels`: pick the one-sample, serial or parallel batch path.

Keep this path short. A batch call from Python follows the previous call's kernel, which streamed
megabytes through the caches, so its Python steps run cold at several times their usual cost: the
parallel batch kernels therefore allocate their own output and read the thread count themselves
(``kernels.leaf_forward_new``, ``kernels.nt_forward_new``), called through their compiled entry
points (:func:`_entry`) without Numba's dispatch (docs/kernels.md, round 8).

Nothing here validates: the layers pass arrays that :func:`fffcpu._validate.as_input` already
checked and converted (C-contiguous, native byte order, the parameters' dtype, finite).

Thread safety: the one-sample kernels release the GIL and run concurrently from several Python
threads; calls into the parallel batch kernels are serialised by a lock (they already use every
Numba thread, and Numba's ``workqueue`` threading layer must not be entered twice at once).
Numba's thread count is per calling thread: :func:`set_num_threads` applies to the thread that
calls it.
"""
import math
import os
import threading

import numpy as np

from ._aligned import aligned_empty
from .activations import ACTIVATION_CODES

_PARALLEL_LOCK = threading.Lock()
#: held by :func:`warmup` while it lowers PARALLEL_MIN_WORK (see there)
_WARMUP_LOCK = threading.Lock()


def _new_lock_in_child():
    """A forked child gets fresh locks: it inherits each lock in whatever state another thread of
    the parent held it, and that thread does not exist in the child (the child's first batch call
    waited forever)."""
    global _PARALLEL_LOCK, _WARMUP_LOCK
    _PARALLEL_LOCK = threading.Lock()
    _WARMUP_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_new_lock_in_child)

#: batches smaller than this always run the serial per-sample loop
SERIAL_BELOW = 8
#: multiply-adds a batch must need before the parallel kernels pay: a parallel launch costs about
#: 10 us on a quiet machine (measured break-even, 2 threads: ~8 samples for leaf-768-d8-l16 and for
#: ufb-768-d11), and much more when another process holds a core, so small work stays serial
PARALLEL_MIN_WORK = 200_000


def use_parallel(n, work_per_sample):
    """True when a batch of ``n`` samples of ``work_per_sample`` multiply-adds should run in parallel."""
    return n >= SERIAL_BELOW and n * work_per_sample >= PARALLEL_MIN_WORK


_K = None
#: leaf order of the last batch call (alternated, under the lock, by every call)
_REVERSE = False


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


def batch_output(n, width, dtype, k):
    """An uninitialised (n, width) output for a batch kernel (``k``: the kernels module).

    An output large enough to be written with streaming stores (``k.STREAM_MIN_BYTES``) starts on a
    64-byte boundary, so that its rows do too when a row is a whole number of 64-byte lines
    (width 768 in float32 or float64): streaming stores need aligned lines and fall back to plain
    stores elsewhere. The array is then a view of a byte buffer (``.base``), C-contiguous and
    writable like any other.
    """
    dtype = np.dtype(dtype)
    if n * width * dtype.itemsize < k.STREAM_MIN_BYTES:
        return np.empty((n, width), dtype)
    return aligned_empty((n, width), dtype)


def leaf_kernel_args(params):
    """The leaf-FFF parameters as the kernels take them, master leaf included.

    Parameters
    ----------
    params : dict
        ``node_weights`` (n_nodes, D), ``node_biases`` (n_nodes, 1), ``w1s`` (L, D, l), ``b1s`` (L, l),
        ``w2s`` (L, l, O), ``b2s`` (L, O), all of one dtype and C-contiguous; optionally the eFFF
        master leaf ``magic_w1`` (1, D, m), ``magic_b1`` (1, m), ``magic_w2`` (1, m, O),
        ``magic_b2`` (1, O), ``k`` ().

    Returns
    -------
    tuple
        ``(node_weights, node_biases, w1s, b1s, w2s, b2s, mw1, mb1, mw2, mb2, s)`` with
        ``s = sigmoid(k)`` in the parameters' dtype. Without a master leaf the master arrays are
        empty views (m = 0) and s = 1, which the kernels compute exactly like a plain leaf FFF.
    """
    w1s, b1s, w2s, b2s = params["w1s"], params["b1s"], params["w2s"], params["b2s"]
    head = (params["node_weights"], params["node_biases"], w1s, b1s, w2s, b2s)
    if "magic_w1" in params:
        return head + (params["magic_w1"], params["magic_b1"], params["magic_w2"], params["magic_b2"],
                       mix_share(params["k"], w1s.dtype))
    return head + no_master(w1s, b1s, w2s, b2s)


def no_master(w1s, b1s, w2s, b2s):
    """Master-leaf arguments meaning "none": empty views of the leaf arrays (no copy) and s = 1."""
    return w1s[:1, :, :0], b1s[:1, :0], w2s[:1, :0, :], b2s[:1], w1s.dtype.type(1)


def mix_share(k, dtype):
    """``sigmoid(k)`` (the tree's share of the eFFF output) as a scalar of ``dtype``."""
    k = float(k)
    s = 1.0 / (1.0 + math.exp(-k)) if k >= 0 else math.exp(k) / (1.0 + math.exp(k))
    return np.dtype(dtype).type(s)


def _leaf_args(params):
    return params if type(params) is tuple else leaf_kernel_args(params)


def leaf_forward(params, activation, x2d, out=None, check_finite=False):
    """Hard leaf-FFF inference (SPEC §1, with the master leaf of SPEC §3) with the Numba kernels.

    Parameters
    ----------
    params : dict or tuple
        The layer's parameters (see :func:`leaf_kernel_args`), or that function's result.
    activation : str or int
        Leaf activation name or code.
    x2d : ndarray of shape (n, D)
        The parameters' dtype; copied to C order first if it is not C-contiguous.
    out : ndarray of shape (n, O), optional
        C-contiguous output buffer of the same dtype.
    check_finite : bool
        Check that ``x2d`` is finite, in the same kernel call (the batch kernel reads it off the
        root logits).

    Returns
    -------
    y : ndarray of shape (n, O), or None
        None (only with ``check_finite``) when ``x2d`` holds NaN or inf, or a root logit overflows:
        the caller then validates ``x2d`` itself.
    """
    args = _leaf_args(params)
    if not x2d.flags.c_contiguous:  # the kernels are compiled for C-contiguous rows only
        x2d = np.ascontiguousarray(x2d)
    if out is None:
        return leaf_batch(args, activation)(x2d, check_finite)
    global _REVERSE
    k = _K or _kernels()
    n = x2d.shape[0]
    if not use_parallel(n, _leaf_work(args)):
        ok = k.leaf_forward_serial(*args[:6], _act_code(activation), *args[6:], x2d, out, check_finite)
    else:
        with _PARALLEL_LOCK:
            _REVERSE = not _REVERSE
            ok = k.leaf_forward_batch(*args[:6], _act_code(activation), *args[6:], x2d, out,
                                      get_num_threads(), check_finite, _REVERSE)
    return out if ok else None


def _leaf_work(args):
    """Multiply-adds per sample of a leaf FFF (routing, leaf and master leaf) given its kernel args."""
    D, l, m, O = args[0].shape[1], args[2].shape[2], args[6].shape[2], args[5].shape[1]
    return D * args[0].shape[0].bit_length() + (l + m) * (D + O)


def leaf_batch(args, activation):
    """Batch inference bound to a leaf FFF's kernel arguments (as :func:`leaf_kernel_args` returns
    them): ``f(x2d, check_finite=False)`` for a C-contiguous batch in their dtype returns ``y``
    (n, O), or None (only with ``check_finite``) for NaN or inf in ``x2d``.

    The batch path of ``layer(x)``, which keeps one per layer (as the one-sample function). Few
    Python steps on purpose: they run with cold caches after the previous call's kernel (module
    docstring). Small work runs the serial loop into ``np.empty``; larger batches call
    ``kernels.leaf_forward_new`` through its entry point, which allocates the output itself.
    """
    k = _K or _kernels()
    act = _act_code(activation)
    head, tail = args[:6], args[6:]
    width = args[5].shape[1]
    work = _leaf_work(args)
    entry = [None]  # the compiled entry point, looked up on the first parallel call

    def batch(x2d, check_finite=False):
        global _REVERSE
        n = x2d.shape[0]
        if not use_parallel(n, work):
            y = np.empty((n, width), x2d.dtype)
            return y if k.leaf_forward_serial(*head, act, *tail, x2d, y, check_finite) else None
        with _PARALLEL_LOCK:
            _REVERSE = not _REVERSE  # alternate the leaf order: see kernels.leaf_forward_batch
            fn = entry[0]
            if fn is None:
                fn = entry[0] = _entry(k.leaf_forward_new, x2d.dtype,
                                       (*head, act, *tail, x2d, check_finite, _REVERSE))
            try:
                ok, y = fn(*head, act, *tail, x2d, check_finite, _REVERSE)
            except SystemError as exc:
                _reraise_interrupt(exc)
        return y if ok else None

    return batch


def _reraise_interrupt(exc):
    """Raise the KeyboardInterrupt (or other signal exception) behind ``exc``, a SystemError from a
    kernel that returns its own output, else ``exc`` itself.

    A signal that arrives while a kernel runs (without the GIL) is raised by the first Python code
    that runs after it: for these kernels, boxing the returned array. Numba still returns its
    result, and Python turns that into "SystemError: ... returned a result with an exception set",
    which ``except KeyboardInterrupt`` does not catch.
    """
    if isinstance(exc.__cause__, BaseException) and not isinstance(exc.__cause__, Exception):
        raise exc.__cause__ from None
    raise exc


def leaf_forward_one(params, activation, x):
    """Hard leaf-FFF inference of one sample ``x`` (D,), C-contiguous in the parameters' dtype.

    ``params`` as in :func:`leaf_forward`. Without a master leaf this is :func:`leaf_one_sample`
    called once (layers keep that function instead); with one, the master-leaf kernel.

    Returns
    -------
    y : ndarray of shape (O,), or None
        None when ``x`` holds NaN or inf (checked in the same kernel call; the caller raises).
    """
    args = params if type(params) is tuple else leaf_kernel_args(params)
    m = args[6].shape[2]
    if m == 0:
        return leaf_one_sample(args, activation)(x)
    y = np.empty(args[5].shape[1], x.dtype)
    ok = (_K or _kernels()).leaf_forward_one_master_checked(
        *args[:6], _act_code(activation), *args[6:], x, np.empty(args[2].shape[2], x.dtype),
        np.empty(m, x.dtype), y)
    return y if ok else None


def neuron_tree_forward_one(w_in, b_in, w_out_t, depth, parallel_size, activation, x):
    """Hard neuron-tree inference of one sample ``x`` (D,), C-contiguous in the parameters' dtype:
    :func:`neuron_tree_one_sample` called once (layers keep that function instead). Arrays as in
    :func:`neuron_tree_forward`.

    Returns
    -------
    y : ndarray of shape (O,), or None
        None when ``x`` holds NaN or inf (the caller raises its usual error).
    """
    return neuron_tree_one_sample(w_in, b_in, w_out_t, depth, parallel_size, activation)(x)


def direct_call(kernel, args):
    """``kernel``'s compiled entry point for the types of ``args`` (compiled now, or loaded from the
    disk cache); without the JIT (``NUMBA_DISABLE_JIT=1``), ``kernel`` itself.

    Calling the entry point skips Numba's dispatch by argument types (about 0.2 us per call for
    eight arguments, a tenth of a one-sample call). It checks each array's dtype and dimensions
    but not its layout: give it only arguments of exactly the types of ``args``, C-contiguous.
    """
    compile_signature = getattr(kernel, "compile", None)
    if compile_signature is None:
        return kernel
    from numba import typeof
    return compile_signature(tuple(typeof(a) for a in args))


#: compiled entry points of the lean batch kernels, by (kernel, dtype): see :func:`_entry`
_ENTRIES = {}


def _entry(kernel, dtype, args):
    """:func:`direct_call` for a batch kernel that allocates its output, kept by (kernel, ``dtype``
    of the batch).

    The dtype fixes every argument's type because the callers pass what the layers do: parameter
    arrays C-contiguous in the batch's dtype, the master-leaf share as a scalar of that dtype, a
    C-contiguous batch. (A read-only array passes for a writable one; the kernels write only their
    own output.) Call with the lock held (one compilation per key).
    """
    fn = _ENTRIES.get((kernel, dtype))
    if fn is None:
        # the wrappers read the thread count through the threading layer's symbol: start the layer
        # before their machine code is loaded from the disk cache (see kernels._num_threads)
        import numba
        numba.get_num_threads()
        fn = _ENTRIES[(kernel, dtype)] = direct_call(kernel, args)
    return fn


def neuron_tree_one_sample(w_in, b_in, w_out_t, depth, parallel_size, activation):
    """One-sample inference bound to a neuron tree's kernel arrays (as in :func:`neuron_tree_forward`).

    Returns
    -------
    callable
        ``f(x)`` for one sample ``x`` (D,), C-contiguous in the arrays' dtype: ``y`` (O,), or None
        when ``x`` holds NaN or inf; one kernel call checks ``x`` and computes ``y``, with the
        arguments fixed and the compiled kernel called directly (:func:`direct_call`). The lean
        path of ``layer(x)``, which keeps one per layer.
    """
    kernel = (_K or _kernels()).nt_forward_one_checked
    act = _act_code(activation)
    dtype, width = w_out_t.dtype, w_out_t.shape[1]
    empty = np.empty
    direct = direct_call(kernel, (w_in, b_in, w_out_t, depth, parallel_size, act,
                                  empty(w_in.shape[1], dtype), empty(width, dtype)))

    def one_sample(x):
        y = empty(width, dtype)
        if direct(w_in, b_in, w_out_t, depth, parallel_size, act, x, y):
            return y
        return None

    return one_sample


def leaf_one_sample(args, activation):
    """One-sample inference bound to a leaf FFF's kernel arguments without a master leaf
    (``args`` as :func:`leaf_kernel_args` returns them); see :func:`neuron_tree_one_sample`."""
    kernel = (_K or _kernels()).leaf_forward_one_checked
    node_weights, node_biases, w1s, b1s, w2s, b2s = args[:6]
    act = _act_code(activation)
    dtype, hidden, width = w1s.dtype, w1s.shape[2], w2s.shape[2]
    empty = np.empty
    direct = direct_call(kernel, (node_weights, node_biases, w1s, b1s, w2s, b2s, act,
                                  empty(w1s.shape[1], dtype), empty(hidden, dtype), empty(width, dtype)))

    def one_sample(x):
        y = empty(width, dtype)
        if direct(node_weights, node_biases, w1s, b1s, w2s, b2s, act, x, empty(hidden, dtype), y):
            return y
        return None

    return one_sample


def neuron_tree_forward(w_in, b_in, w_out_t, depth, parallel_size, activation, x2d, out=None,
                        check_finite=False):
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
        The parameters' dtype; copied to C order first if it is not C-contiguous.
    out : ndarray of shape (n, O), optional
    check_finite : bool
        Check that ``x2d`` is finite, in the same kernel call (the batch kernel reads it off the
        root logits).

    Returns
    -------
    y : ndarray of shape (n, O), or None
        None (only with ``check_finite``) when ``x2d`` holds NaN or inf, or a root logit overflows.
    """
    if not x2d.flags.c_contiguous:  # as in leaf_forward
        x2d = np.ascontiguousarray(x2d)
    if out is None:
        return neuron_tree_batch(w_in, b_in, w_out_t, depth, parallel_size, activation)(x2d, check_finite)
    k = _K or _kernels()
    act = _act_code(activation)
    if not use_parallel(x2d.shape[0], parallel_size * (depth + 1) * (x2d.shape[1] + w_out_t.shape[1])):
        if check_finite and not k.all_finite(x2d):
            return None
        if x2d.shape[0]:
            k.nt_forward_serial(w_in, b_in, w_out_t, depth, parallel_size, act, x2d, out)
    else:
        kernel = k.nt_forward_each if nt_each(w_in, w_out_t, depth, parallel_size) else k.nt_forward_batch
        with _PARALLEL_LOCK:
            if not kernel(w_in, b_in, w_out_t, depth, parallel_size, act, x2d, out, get_num_threads(),
                          check_finite):
                return None
    return out


#: the most bytes of weights (every tree's input and output rows) for which a neuron tree's batch
#: runs sample by sample (``kernels.nt_forward_each``): they stay in L2, and the grouped walk of
#: ``kernels.nt_forward_batch`` costs more than it shares (round 16)
NT_EACH_MAX_BYTES = 1 << 18


def nt_each(w_in, w_out_t, depth, parallel_size):
    """Whether a neuron tree's batches run sample by sample (see :data:`NT_EACH_MAX_BYTES`)."""
    n_nodes = (1 << (depth + 1)) - 1
    return parallel_size * n_nodes * (w_in.shape[1] + w_out_t.shape[1]) * w_in.itemsize <= NT_EACH_MAX_BYTES


def neuron_tree_batch(w_in, b_in, w_out_t, depth, parallel_size, activation):
    """Batch inference bound to a neuron tree's kernel arrays (as in :func:`neuron_tree_forward`):
    ``f(x2d, check_finite=False)``, as :func:`leaf_batch` for the leaf FFF."""
    k = _K or _kernels()
    act = _act_code(activation)
    width = w_out_t.shape[1]
    work = parallel_size * (depth + 1) * (w_in.shape[1] + width)
    each = nt_each(w_in, w_out_t, depth, parallel_size)
    entry = [None]

    def batch(x2d, check_finite=False):
        n = x2d.shape[0]
        if not use_parallel(n, work):
            if check_finite and not k.all_finite(x2d):
                return None
            y = np.empty((n, width), x2d.dtype)
            if n:
                k.nt_forward_serial(w_in, b_in, w_out_t, depth, parallel_size, act, x2d, y)
            return y
        with _PARALLEL_LOCK:
            fn = entry[0]
            if fn is None:
                fn = entry[0] = _entry(k.nt_forward_new, x2d.dtype, (w_in, b_in, w_out_t, depth,
                                                                     parallel_size, act, x2d, check_finite, each))
            try:
                ok, y = fn(w_in, b_in, w_out_t, depth, parallel_size, act, x2d, check_finite, each)
            except SystemError as exc:
                _reraise_interrupt(exc)
        return y if ok else None

    return batch


def all_finite(x):
    """True when every value of the C-contiguous float array ``x`` is finite (a kernel: no temporaries)."""
    return (_K or _kernels()).all_finite(x)


def _warmup_dtypes(dtypes):
    """``dtypes`` of :func:`warmup` as a list of NumPy dtypes, or raise naming the argument: a single
    name was iterated letter by letter ("data type 'o' not understood" for "float32"), and another
    dtype ("int8") compiled kernels that no layer calls."""
    from ._validate import check_dtype
    if isinstance(dtypes, (str, np.dtype, type)):
        dtypes = (dtypes,)
    try:
        items = list(dtypes)
    except TypeError:
        raise TypeError(f"dtypes must be 'float32', 'float64' or a sequence of them, got {dtypes!r}") from None
    return [np.dtype(check_dtype(d, "dtypes")) for d in items]


def warmup(dtypes=("float32", "float64")):
    """Compile (or load from Numba's cache) every kernel the layers use, for each dtype.

    Calls each entry point once on tiny inputs of the layouts the layers pass (C-contiguous,
    writable or read-only). ``dtypes``: "float32", "float64" or a sequence of them, checked first.

    One warmup at a time (a lock): two threads warming up at once each saved PARALLEL_MIN_WORK,
    the second after the first had set it to 0, so it was often left at 0 and every batch of 8 or
    more samples ran the parallel kernels however small.
    """
    dts = _warmup_dtypes(dtypes)
    with _WARMUP_LOCK:
        _warmup(dts)


def _warmup(dts):
    """:func:`warmup`'s work for checked NumPy dtypes ``dts``; call with ``_WARMUP_LOCK`` held."""
    for dt in dts:
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
        master = dict(p, magic_w1=p["w1s"][:1], magic_b1=p["b1s"][:1], magic_w2=p["w2s"][:1],
                      magic_b2=p["b2s"][:1], k=np.zeros((), dt))
        global PARALLEL_MIN_WORK
        saved, PARALLEL_MIN_WORK = PARALLEL_MIN_WORK, 0  # tiny inputs, yet compile the batch kernels
        try:
            # writable and read-only inputs (a memory map, np.frombuffer): Numba types a read-only
            # array apart, so the kernels called through its dispatch compile for each
            for writeable in (True, False):
                one = np.zeros(D, dt)
                one.flags.writeable = writeable
                leaf_forward_one(p, 0, one)
                leaf_forward_one(master, 0, one)  # the eFFF master leaf's own one-sample kernel
                neuron_tree_forward_one(w_in, b_in, w_out_t, 1, 1, 1, one)
                for n in (1, SERIAL_BELOW):
                    x = rng.standard_normal((n, D)).astype(dt)
                    x.flags.writeable = writeable
                    leaf_forward(p, 0, x)
                    neuron_tree_forward(w_in, b_in, w_out_t, 1, 1, 1, x)
                    all_finite(x)
                    all_finite(x[0])
        finally:
            PARALLEL_MIN_WORK = saved


def set_num_threads(n):
    """Set the number of Numba threads used by the batch kernels (for the calling thread)."""
    import numba

    from ._validate import check_int
    n = check_int("n (threads)", n, 1)
    if n > numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"n (threads) must be at most {numba.config.NUMBA_NUM_THREADS} (NUMBA_NUM_THREADS, "
                         f"the threads Numba started with), got {n}")
    numba.set_num_threads(n)


def get_num_threads():
    """The number of Numba threads the batch kernels use (for the calling thread).

    Before Numba's threading layer has started, that is ``NUMBA_NUM_THREADS``, answered without
    starting it: ``numba.get_num_threads()`` starts it, and with GNU OpenMP a child forked after
    that aborts at its first batch call (see :func:`fffcpu.set_num_threads`).
    """
    import numba
    from numba.np.ufunc import parallel

    if not getattr(parallel, "_is_initialized", True):
        return numba.config.NUMBA_NUM_THREADS
    return numba.get_num_threads()
