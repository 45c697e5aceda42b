"""fffcpu: fast feedforward networks on the CPU.

A NumPy reference of every FFF variant with hand-derived gradients, Numba kernels for log-time
inference, and benchmarks. See README.md and docs/.
"""
__version__ = "0.1.0"

from .fff import FFF  # noqa: E402

__all__ = ["FFF", "__version__"]
