"""Arrays whose first element starts on a 64-byte boundary (one cache line, one AVX-512 register).

Why: the kernels read weight rows and write output rows with 64-byte vector operations. NumPy
aligns its buffers to 16 bytes only, so most of those loads straddle two cache lines. Measured
(docs/kernels.md, round 7): the leaf FFF's hidden-layer pass 12 % slower, a dot product with a
768-wide row 30-50 %, one sample through either kernel about 0.3 us. Rows stay aligned when a row is
a whole number of 64-byte lines (768 float32 values are 48 lines).

The layers keep their parameters in such arrays (:func:`aligned_copy` at construction; updates go in
place). Alignment changes speed only, never a result: a parameter array a caller puts in its place
works as well.
"""
import numpy as np

#: bytes
ALIGNMENT = 64


def aligned_empty(shape, dtype):
    """An uninitialised C-contiguous array of ``shape`` and ``dtype`` starting on a 64-byte boundary.

    It is a view of a byte buffer one alignment larger (``.base``), writable like any other array.
    """
    dtype = np.dtype(dtype)
    shape = tuple(shape) if np.ndim(shape) else (int(shape),)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buf = np.empty(nbytes + ALIGNMENT, np.uint8)
    start = -buf.ctypes.data % ALIGNMENT
    return buf[start:start + nbytes].view(dtype).reshape(shape)


def aligned_copy(a):
    """A C-contiguous copy of ``a`` (same dtype) starting on a 64-byte boundary."""
    a = np.asarray(a)
    out = aligned_empty(a.shape, a.dtype)
    out[...] = a
    return out
