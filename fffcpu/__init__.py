"""fffcpu: fast feedforward networks on the CPU.

A NumPy reference of every FFF variant with hand-derived gradients, Numba kernels for log-time
inference, and benchmarks. See README.md and docs/.
"""
__version__ = "0.1.0"

from .fff import FFF  # noqa: E402
from .io import load, save  # noqa: E402
from .neuron_tree import NeuronTreeFFF  # noqa: E402


def warmup(dtypes=("float32", "float64")):
    """Compile (or load from the on-disk cache) every inference kernel now, not on the first call."""
    from . import _kernel_api
    _kernel_api.warmup(dtypes)


def set_num_threads(n):
    """Threads used by the parallel batch kernels (default: all cores). Same as numba.set_num_threads."""
    from . import _kernel_api
    _kernel_api.set_num_threads(n)


def get_num_threads():
    """Threads the parallel batch kernels use now."""
    from . import _kernel_api
    return _kernel_api.get_num_threads()


__all__ = ["FFF", "NeuronTreeFFF", "save", "load", "warmup", "set_num_threads", "get_num_threads",
           "__version__"]
