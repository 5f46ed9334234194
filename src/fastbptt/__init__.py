"""fastbptt: recurrent networks trained by backpropagation through time on the CPU, fast.

Only the time recurrence is sequential: it runs in compiled Cython kernels; everything parallel over time
steps is one BLAS call.
"""

from ._backend import BACKENDS, HAVE_CYTHON, resolve_backend, show_config
from .cells import CELLS
from .gradcheck import gradcheck
from .heads import LOSSES, OUTPUTS
from .model import RNN



def load(path, backend=None):
    """Read a model written by RNN.save (no pickle; corrupt or incompatible files are refused)."""
    from .io import load as _load

    return _load(path, backend=backend)


__all__ = [
    "BACKENDS",
    "CELLS",
    "HAVE_CYTHON",
    "LOSSES",
    "OUTPUTS",
    "RNN",
    "gradcheck",
    "load",
    "resolve_backend",
    "show_config",
]
