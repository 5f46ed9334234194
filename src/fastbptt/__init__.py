"""fastbptt: recurrent networks trained by backpropagation through time on the CPU, fast.

Only the time recurrence is sequential: it runs in compiled Cython kernels; everything parallel over time
steps is one BLAS call.
"""

from . import distributed, experiments, init, optim, train
from ._backend import BACKENDS, HAVE_CYTHON, config, resolve_backend, show_config
from ._version import __version__
from .cells import CELLS
from .gradcheck import gradcheck
from .heads import LOSSES, OUTPUTS
from .io import load
from .model import RNN
from .sampling import sample
from .train import EarlyStopping, History, StopTraining

__all__ = [
    "BACKENDS",
    "EarlyStopping",
    "History",
    "StopTraining",
    "__version__",
    "CELLS",
    "HAVE_CYTHON",
    "LOSSES",
    "OUTPUTS",
    "RNN",
    "distributed",
    "experiments",
    "gradcheck",
    "init",
    "optim",
    "train",
    "load",
    "config",
    "resolve_backend",
    "sample",
    "show_config",
]
