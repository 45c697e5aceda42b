"""Arrays whose first element starts on a 64-byte boundary (one cache line, one AVX-512 register).

Why: the kernels read weight rows and write output rows with 64-byte vector operations. NumPy
aligns its buffers to 16 bytes only, so most of those loads straddle two cache lines. Measured
(docs/kernels.md, round 7): the leaf FFF's hidden-layer pass 12 % slower, a dot product with a
768-wide row 30-50 %, one sample through either kernel about 0.3 us. Rows stay aligned when a row is
a whole number of 64-byte lines (768 float32 values are 48 lines).

The layers keep their parameters in such arrays (:func:`aligned_copy` at construction; updates go in
place; an unpickled layer keeps the arrays the pickle gives it, so that what it shares stays shared).
Alignment changes speed only, never a result: a parameter array a caller puts in its place works as
well.
"""
import numpy as np

#: bytes
ALIGNMENT = 64


def aligned_empty(shape, dtype):
    """An uninitialised C-contiguous array of ``shape`` and ``dtype`` starting on a 64-byte boundary.

    It is a view of a buffer one alignment larger (``.base``), writable like any other array.

    Cheap on purpose: a batch call allocates its output here right after the previous call's
    kernel has streamed megabytes through the caches, when every interpreter and NumPy code path
    it touches runs cold. ``np.prod``, ``np.ndim`` and ``.ctypes`` then cost about 0.1 ms per call
    (a tenth of a leaf-768-d8-l16 batch of 1024); plain arithmetic and ``__array_interface__``
    about 0.03 ms (docs/kernels.md, round 8).
    """
    dtype = np.dtype(dtype)
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(shape)
    size = 1
    for s in shape:
        size *= s
    itemsize = dtype.itemsize
    if itemsize and ALIGNMENT % itemsize == 0:
        buf = np.empty(size + ALIGNMENT // itemsize, dtype)
        gap = -buf.__array_interface__["data"][0] % ALIGNMENT
        if gap % itemsize == 0:  # always for items of up to 16 bytes (allocations are 16-aligned)
            start = gap // itemsize
            return buf[start:start + size].reshape(shape)
    buf = np.empty(size * itemsize + ALIGNMENT, np.uint8)  # other item sizes: count in bytes
    start = -buf.__array_interface__["data"][0] % ALIGNMENT
    return buf[start:start + size * itemsize].view(dtype).reshape(shape)


def aligned_copy(a):
    """A C-contiguous copy of ``a`` (same dtype) starting on a 64-byte boundary."""
    a = np.asarray(a)
    out = aligned_empty(a.shape, a.dtype)
    out[...] = a
    return out
