"""fastbptt: recurrent networks trained by backpropagation through time on the CPU, fast.

Only the time recurrence is sequential: it runs in compiled Cython kernels; everything parallel over time
steps is one BLAS call.
"""

from . import distributed, experiments, init, optim, train
from ._backend import BACKENDS, HAVE_CYTHON, resolve_backend, show_config
from ._version import __version__
from .cells import CELLS
from .gradcheck import gradcheck
from .heads import LOSSES, OUTPUTS
from .model import RNN
from .sampling import sample
from .train import EarlyStopping, History, StopTraining


def load(path, backend=None, with_optimizer=False):
    """Read a model written by ``RNN.save`` (no pickle; corrupt or incompatible files are refused).

    Parameters
    ----------
    path : str or path-like
        The checkpoint.
    backend : str, optional
        The kernels the model runs on; not stored in the file.
    with_optimizer : bool, default False
        Return (model, optimizer or None), to resume training.

    Returns
    -------
    RNN or tuple of (RNN, Optimizer or None)
        See `fastbptt.io.load`.
    """
    from .io import load as _load

    return _load(path, backend=backend, with_optimizer=with_optimizer)


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
    "resolve_backend",
    "sample",
    "show_config",
]
