"""fastbptt: recurrent networks trained by backpropagation through time on the CPU, fast.

Only the time recurrence is sequential: it runs in compiled Cython kernels; everything parallel over time
steps is one BLAS call.
"""

from . import distributed, experiments, init, optim, train
from ._backend import BACKENDS, HAVE_CYTHON, resolve_backend, show_config
from .cells import CELLS
from .gradcheck import gradcheck
from .heads import LOSSES, OUTPUTS
from .model import RNN
from .train import EarlyStopping, History, StopTraining


def load(path, backend=None, with_optimizer=False):
    """Read a model written by RNN.save (no pickle; corrupt or incompatible files are refused).

    With `with_optimizer=True`, return (model, optimizer) to resume training."""
    from .io import load as _load

    return _load(path, backend=backend, with_optimizer=with_optimizer)


__all__ = [
    "BACKENDS",
    "EarlyStopping",
    "History",
    "StopTraining",
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
    "resolve_backend",
    "show_config",
]
