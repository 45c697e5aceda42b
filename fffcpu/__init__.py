"""fffcpu: fast feedforward networks on the CPU.

A NumPy reference of every FFF variant with hand-derived gradients, Numba kernels for log-time
inference, and benchmarks. See README.md and docs/.
"""
__version__ = "0.1.0"

from .fff import FFF  # noqa: E402
from .io import load, load_classes, save  # noqa: E402
from .neuron_tree import NeuronTreeFFF  # noqa: E402


def warmup(dtypes=("float32", "float64")):
    """Compile (or load from the on-disk cache) every inference kernel now, not on the first call.

    ``dtypes``: the layer dtypes to compile for, ``"float32"``, ``"float64"`` or a sequence of them
    (default both); a layer of another dtype than those warmed up compiles on its first call.
    Where no cache directory is writable (``NUMBA_CACHE_DIR``), the kernels are compiled anew in each
    process, with a warning.

    It runs the parallel batch kernels, so it starts Numba's threading layer: a process that forks
    workers should warm up in the workers (or before forking, with one-sample calls only; see
    :func:`set_num_threads`)."""
    from . import _kernel_api
    _kernel_api.warmup(dtypes)


def set_num_threads(n):
    """Threads used by the parallel batch kernels (default: all cores). Same as numba.set_num_threads.

    Applies to the calling Python thread and may not exceed ``NUMBA_NUM_THREADS`` (the size of
    Numba's thread pool, all cores by default; set that environment variable before the first
    parallel call to make the pool smaller). Small batches run serially whatever the setting.

    On a machine shared with other busy processes, a parallel call can wait for a descheduled
    worker: with Numba's default ``omp`` threading layer the waiting threads spin, and a 2-thread
    call has been measured 5x to 15x slower than on a quiet machine. Remedies, chosen before the
    first parallel call (they are process-wide, so fffcpu does not set them for you):

    - ``set_num_threads(1)`` (or fewer threads than idle cores);
    - ``OMP_WAIT_POLICY=passive``: waiting threads sleep; under a co-runner that spins (another
      multi-threaded BLAS/OpenMP process) it cut the median about 3x, but on a quiet machine it
      costs ~10 % on large batches and doubles the time of small ones (wake-up latency), and it
      made things worse under a single-threaded co-runner;
    - ``NUMBA_THREADING_LAYER=workqueue``: no spinning; slower than ``omp`` on a quiet machine
      (~25 %), between the two under load.

    Forked worker processes: with the ``omp`` layer, a child forked after the parent's first
    parallel batch call aborts at its own first one (GNU OpenMP); start workers with ``spawn`` or
    ``forkserver``, or use ``NUMBA_THREADING_LAYER=workqueue``. One-sample calls do not start it,
    nor does :func:`get_num_threads`; ``set_num_threads`` itself does (Numba keeps the count in
    the threading layer), so in a parent that forks workers, call it in each worker instead, or
    set ``NUMBA_NUM_THREADS``.

    See docs/kernels.md for the measurements.
    """
    from . import _kernel_api
    _kernel_api.set_num_threads(n)


def get_num_threads():
    """Threads the parallel batch kernels use now (for the calling thread). Reading it does not
    start Numba's threading layer (forked workers stay safe, see :func:`set_num_threads`)."""
    from . import _kernel_api
    return _kernel_api.get_num_threads()


__all__ = ["FFF", "NeuronTreeFFF", "save", "load", "load_classes", "warmup", "set_num_threads", "get_num_threads",
           "__version__"]
