"""The model: recurrent layers and an output head, trained by backpropagation through time.

RNN checks a call (fastbptt.calls), runs it through one forward and backward pass (fastbptt.graph)
and holds the parameters; its fit, save, load and PyTorch methods front modules that depend on it
(see docs/architecture.md).
"""

from __future__ import annotations

import functools
import importlib
import math
import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import heads as _heads
from ._backend import resolve_backend
from ._checks import as_dtype, thread_count
from ._threads import blas_single_in
from .calls import check_call, state_shape, to_user_layout
from .graph import Pass, plans_for, whole_ok
from .init import init_params
from .params import Params
from .settings import check_settings, config_of, describe
from .stack import Stack

__all__ = ["RNN", "Params"]


def _front(module):
    """A module that depends on the model (train, io, interop), imported when an RNN method that
    fronts it is first called: importing it here at the top would make a cycle."""
    return importlib.import_module(f"{__package__}.{module}")


def _state_grads(call, dstate0, h0, c0):
    """The gradients at the initial states the caller gave, "h0" / "c0", in the caller's batch
    order and with the caller's axes."""
    grads = {}
    for name, value, given in zip(("h0", "c0"), dstate0, (h0, c0), strict=False):
        if given is not None:
            value = call.unsort(value)
            grads[name] = value[..., 0, :] if call.single and np.ndim(given) < value.ndim \
                else value
    return grads


class _FrontedMethod:
    """An RNN method that is a function of a module above the model, ``module.name(model, ...)``:
    it shows that function's signature and docstring (help(), inspect.signature, the API
    reference), so the options are written down once, where they are implemented. The module is
    imported when the method is first looked up (after both modules exist, so no cycle)."""

    def __init__(self, module, name):
        self._where = (module, name)
        self._method = None

    def __set_name__(self, owner, name):
        self._owner_name = f"{owner.__name__}.{name}"

    def __get__(self, obj, owner=None):
        if self._method is None:
            target = getattr(_front(self._where[0]), self._where[1])

            @functools.wraps(target)
            def method(self, *args, **kwargs):
                return target(self, *args, **kwargs)

            method.__qualname__ = self._owner_name
            method.__module__ = __name__
            self._method = method
        return self._method if obj is None else self._method.__get__(obj, owner)


class RNN:
    """A recurrent network trained by backpropagation through time: recurrent layers of one cell
    type and an output head.

    Inputs are time-major, X (T, B, I), unless ``batch_first=True`` makes them (B, T, I); a 2-D X
    (T, I) is one sequence either way. Parameter names and shapes follow PyTorch's layout, so
    weights move between the two (see `to_torch_state_dict`); how a call runs:
    docs/architecture.md.

    Parameters
    ----------
    input_size : int
        Input features I per step; with ``input="tokens"``, the vocabulary size V.
    hidden_size : int
        Units H of each recurrent layer and direction.
    output_size : int, optional
        Outputs O of the head; must be None (or H) with ``output=None``.
    cell : {"tanh", "relu", "lstm", "gru", "step"}, default "tanh"
        The recurrent cell: Elman with tanh or relu, PyTorch's LSTM and GRU, or "step" (a Heaviside
        Elman cell for hand-set networks: forward only, it cannot be trained).
    output : {"linear", "sigmoid", "softmax", None}, default "linear"
        The head: a linear layer ``h V^T + c`` and its activation; None makes the hidden state the
        output.
    loss : {"mse", "bce", "ce"}, default "mse"
        "mse" is ``0.5 * (o - y)**2`` summed over the output units (so 0.5 x O times PyTorch's
        MSELoss for O outputs), "bce" binary cross-entropy, "ce" cross-entropy over a softmax (class
        ids or one-hot targets).
    reduction : {"mean", "sum"}, default "mean"
        "mean" divides the summed loss by the number of (valid) steps times sequences.
    target : {"all", "last"}, default "all"
        A target at every step (Y (T, B, O)), or at each sequence's last step only (Y (B, O)).
    dtype : {numpy.float64, numpy.float32}, default numpy.float64
        The dtype of the parameters and of every computation.
    backend : {"auto", "cython", "numpy", "python"}, optional
        The kernels: compiled, the NumPy reference, or pure Python. None reads
        ``FASTBPTT_BACKEND``, else "auto" (compiled when built).
    seed : int or None, default 0
        Seeds the initial weights and the dropout masks.
    init : str, callable or mapping, optional
        Initial weights; see fastbptt.init (default: PyTorch's uniform initialisation).
    n_threads : int, default 1
        Threads the kernels may use over the batch.
    num_layers : int, default 1
        Stacked recurrent layers; layer l > 0 reads the outputs of layer l - 1.
    bidirectional : bool, default False
        A second direction per layer that runs over each sequence reversed within its length.
    dropout : float, default 0.0
        Dropout on the outputs of every layer but the last, in training mode only.
    input : {"dense", "tokens"}, default "dense"
        "dense": X holds features (integers are cast to floats). "tokens": X holds integer token
        ids in [0, input_size), shaped (T, B) (or (B, T) with batch_first, (T,) for one sequence),
        meaning exactly their one-hot rows: the first layer's input projection is a gather of
        columns of its input weights, and their gradient a scatter-add, so no one-hot array is
        built. Every id is checked, padded steps' too: pad with any id below input_size.
    batch_first : bool, default False
        X, Y and the outputs are (B, T, ...) as PyTorch's ``batch_first=True``; ``lengths`` stays
        (B,). As in PyTorch, the states (h0, c0 and those returned) keep their layout, (B, H) or
        (num_layers * num_directions, B, H).

    Attributes
    ----------
    layers : Stack
        The recurrent layers.
    head : Head
        The output layer and the loss.

    Examples
    --------
    >>> import numpy as np, fastbptt as fb
    >>> m = fb.RNN(input_size=2, hidden_size=8, output_size=1, cell="lstm")
    >>> X = np.zeros((5, 3, 2))
    >>> m.predict(X).shape
    (5, 3, 1)
    >>> fb.RNN(100, 8, 100, output="softmax", loss="ce", input="tokens").predict(
    ...     np.array([[3, 14, 15]])).shape
    (1, 3, 100)
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int | None = None,
                 cell: str = "tanh", output: str | None = "linear", loss: str = "mse",
                 reduction: str = "mean", target: str = "all", dtype: DTypeLike = np.float64,
                 backend: str | None = None, seed: int | None = 0, init: Any = None,
                 n_threads: int = 1, num_layers: int = 1, bidirectional: bool = False,
                 dropout: float = 0.0, input: str = "dense", batch_first: bool = False) -> None:
        # input_size, hidden_size, output_size, cell_name, dtype, num_layers, bidirectional,
        # dropout, input and batch_first, each checked
        vars(self).update(check_settings(input_size, hidden_size, output_size, cell, output, dtype,
                                         num_layers, bidirectional, dropout, input, batch_first))
        self.n_threads = n_threads
        self.layers = Stack(cell, self.input_size, self.hidden_size, self.num_layers,
                            self.bidirectional, self.dropout)
        self.head = _heads.Head(output, loss, reduction, target, self.layers.output_size,
                                self.output_size)
        self._plans = plans_for(self.layers, self.head, self.dropout)
        self._whole = whole_ok(self.layers, self.head)
        self._whole_forward = whole_ok(self.layers, self.head, backward=False)
        self.training = True
        self._backend_request = backend
        self._backend = resolve_backend(backend)
        self.seed = seed
        self.init = init
        shapes = {**self.layers.param_shapes(), **self.head.param_shapes()}
        rng = np.random.default_rng(seed)
        values = init_params(shapes, init, rng, self.dtype, self.hidden_size)
        self._params = Params(shapes, self.dtype, values)
        self._dropout_rng = np.random.default_rng([seed, 1]) if isinstance(seed, int) else \
            np.random.default_rng()

    # -- configuration ---------------------------------------------------------------------------------

    @property
    def params(self) -> Params:
        """The parameters, name -> ndarray (a Params: every assignment is checked)."""
        return self._params

    @params.setter
    def params(self, values: Mapping[str, ArrayLike]) -> None:
        """Replace every parameter at once from a mapping with exactly the model's names (checked
        as one assignment: on any error the model keeps its parameters)."""
        self._params = Params.replacing_all(self.param_shapes(), self.dtype, values)

    @property
    def n_threads(self) -> int:
        """Threads the kernels may use (at most one per sequence of a call's batch)."""
        return self._n_threads

    @n_threads.setter
    def n_threads(self, value: int) -> None:
        self._n_threads = thread_count(value)

    @property
    def backend(self) -> str:
        """The concrete backend the kernels run on: "cython", "numpy" or "python"."""
        return self._backend

    @backend.setter
    def backend(self, name: str | None) -> None:
        self._backend = resolve_backend(name)
        self._backend_request = name

    @property
    def cell(self):
        """Deprecated alias of `layers` (the recurrent layers, a Stack); removed in the next release."""
        warnings.warn("RNN.cell is deprecated: it holds the recurrent layers, now RNN.layers",
                      DeprecationWarning, stacklevel=2)
        return self.layers

    @property
    def output(self) -> str | None:
        """The head's activation: "linear", "sigmoid", "softmax" or None."""
        return self.head.output

    @property
    def loss(self) -> str:
        """The loss: "mse", "bce" or "ce"."""
        return self.head.loss

    @property
    def reduction(self) -> str:
        """How the loss is reduced: "mean" or "sum"."""
        return self.head.reduction

    @property
    def target(self) -> str:
        """Where the targets are: "all" steps or the "last"."""
        return self.head.target

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Each parameter's shape, name -> tuple."""
        return dict(self._params._shapes)

    def state_shape(self, B: int) -> tuple[int, ...]:
        """The shape of each initial / final state for a batch of B: (B, H), or
        (num_layers * num_directions, B, H) for stacked or bidirectional models."""
        return state_shape(self, B)

    def get_config(self) -> dict[str, Any]:
        """The constructor's arguments as plain JSON-able values: ``RNN(**config)`` rebuilds the model."""
        return config_of(self)

    def train(self, mode: bool = True) -> RNN:
        """Training mode (dropout between layers active in loss_and_grad and fit); returns self."""
        self.training = bool(mode)
        return self

    def eval(self) -> RNN:
        """Evaluation mode: no dropout anywhere; returns self."""
        return self.train(False)

    def copy(self, dtype: DTypeLike | None = None) -> RNN:
        """An independent copy (optionally in another dtype) with the same parameters and backend."""
        cfg = self.get_config()
        if dtype is not None:
            cfg["dtype"] = as_dtype(dtype).name
        other = RNN(**cfg, backend=self._backend_request)
        other.params.update({k: v.copy() for k, v in self.params.items()})
        other.training = self.training
        return other

    def __repr__(self):
        return describe(self)

    # -- calls (checked in fastbptt.calls, run by fastbptt.graph; see docs/architecture.md) -------------

    @blas_single_in
    def forward(self, X: ArrayLike, h0: ArrayLike | None = None, c0: ArrayLike | None = None,
                lengths: ArrayLike | None = None) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Outputs and final state. Feed the state back as h0 / c0 to run a sequence in pieces.

        Parameters
        ----------
        X : array_like
            Inputs (T, B, I), or (B, T, I) with ``batch_first=True``; (T, I) for one sequence. With
            ``input="tokens"``, integer ids (T, B), (B, T) or (T,).
        h0, c0 : array_like, optional
            Initial states (c0 for lstm only), shaped as `state_shape` says, (H,) or (L*D, H) for
            one sequence; zeros when not given.
        lengths : array_like of int, shape (B,), optional
            Each sequence's length (1..T); the steps after it are padding.

        Returns
        -------
        Y_hat : ndarray
            Outputs (T, B, O), (B, T, O) with batch_first, (B, O) for target="last"; without B
            for one sequence. With `lengths`, zero at padded steps.
        state : tuple of ndarray
            ``(h_T,)``, or ``(h_T, c_T)`` for lstm: each sequence's state after its own last step,
            (B, H) or (num_layers * num_directions, B, H) (batch_first does not change them, as in
            PyTorch).
        """
        call = check_call(self, X, None, h0, c0, lengths).sort()
        run = Pass(self)
        if self._whole_forward and call.lengths is None:
            cell, H, cache, logits = run.whole(call.X, call.state0)
            Y_hat = self.head.forward(run.p, H[1:], logits)
            state = cell.final_state(H, cache)
        else:
            seg = run.forward(call.X, call.state0, 0, call.lengths, call.batch_sizes)
            Y_hat = call.unsort(run.outputs(seg, call.lengths))
            state = run.final_state(seg)
            if call.order is not None:
                state = tuple(call.unsort(s) for s in state)
        if self.target == "last":
            Y_hat = Y_hat[0]
        if call.single:
            Y_hat = Y_hat[:, 0] if self.target == "all" else Y_hat[0]
            state = tuple(s[..., 0, :] for s in state)
        elif self.target == "all":
            Y_hat = to_user_layout(self, Y_hat, call.single)
        return Y_hat, state

    def predict(self, X: ArrayLike, h0: ArrayLike | None = None, c0: ArrayLike | None = None,
                lengths: ArrayLike | None = None) -> np.ndarray:
        """The outputs of `forward` alone: (T, B, O) (or (B, T, O) with batch_first) for
        target="all", (B, O) for target="last"; without B for one sequence."""
        return self.forward(X, h0, c0, lengths)[0]

    def predict_classes(self, X: ArrayLike, h0: ArrayLike | None = None,
                        c0: ArrayLike | None = None,
                        lengths: ArrayLike | None = None) -> np.ndarray:
        """Predicted classes: the arg-max for softmax, else 0/1 by a threshold.

        Parameters
        ----------
        X, h0, c0, lengths
            As for `predict`.

        Returns
        -------
        numpy.ndarray of int64
            For softmax, the arg-max class, shaped like the predictions without their last axis;
            for sigmoid, 1 where the output exceeds 0.5; for linear or no output layer, 1 where it
            exceeds 0 (one 0/1 value per output unit).
        """
        Y_hat = self.predict(X, h0, c0, lengths)
        if self.output == "softmax":
            return Y_hat.argmax(axis=-1)
        threshold = 0.5 if self.output == "sigmoid" else 0.0
        return (Y_hat > threshold).astype(np.int64)

    @blas_single_in
    def loss_and_grad(self, X: ArrayLike, Y: ArrayLike, h0: ArrayLike | None = None,
                      c0: ArrayLike | None = None, lengths: ArrayLike | None = None
                      ) -> tuple[float, dict[str, np.ndarray]]:
        """The loss and its gradient for every parameter (and for h0 / c0 when given), by
        backpropagation through the whole sequence.

        Parameters
        ----------
        X, h0, c0, lengths
            As for `forward`.
        Y : array_like
            Targets in the layout of the outputs (see `forward`): (T, B, O), or class ids (T, B)
            for loss="ce"; (B, O) / (B,) for target="last".

        Returns
        -------
        loss : float
            Padded steps add nothing; reduction="mean" divides by the number of valid steps
            times sequences.
        grads : dict of str to ndarray
            Keyed like `params`, plus "h0" / "c0" for the initial states given.

        Notes
        -----
        In training mode (the default; see `train` / `eval`) dropout between stacked layers is
        applied.
        """
        if Y is None:
            raise TypeError("Y is None; the loss needs targets")
        call = check_call(self, X, Y, h0, c0, lengths).sort()
        run = Pass(self, self.training)
        if run.takes_whole(call):
            loss_value, grad, head_grads, cell, H, cache, _ = run.whole_loss(call.X, call.Y,
                                                                             call.state0)
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"the loss is not finite ({loss_value})")
            grads, dstate0 = run.whole_backward(call.X, cell, H, cache, grad, head_grads)
        else:
            seg = run.forward(call.X, call.state0, 0, call.lengths, call.batch_sizes)
            loss = run.loss([seg], call.Y, 0, call.T, call.T, call.lengths)
            loss_value = loss.value
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"the loss is not finite ({loss_value})")
            grads, dstate0, _ = run.backward([seg], loss, call.lengths)
        if h0 is not None or c0 is not None:
            grads.update(_state_grads(call, dstate0, h0, c0))
        return loss_value, grads

    @blas_single_in
    def evaluate(self, X: ArrayLike, Y: ArrayLike, h0: ArrayLike | None = None,
                 c0: ArrayLike | None = None, lengths: ArrayLike | None = None) -> float:
        """The loss alone (no backward pass, no dropout), arguments as `loss_and_grad`; with
        `lengths`, over the valid steps. fastbptt.train.evaluate adds a metric and bounded
        memory."""
        if Y is None:
            raise TypeError("Y is None; the loss needs targets")
        call = check_call(self, X, Y, h0, c0, lengths).sort()
        run = Pass(self)
        if self._whole_forward and call.lengths is None:
            return run.whole_loss(call.X, call.Y, call.state0, for_grad=False)[0]
        seg = run.forward(call.X, call.state0, 0, call.lengths, call.batch_sizes)
        return run.loss([seg], call.Y, 0, call.T, call.T, call.lengths, for_grad=False).value

    # -- fronts of the modules that depend on the model ---------------------------------------------

    @classmethod
    def from_torch_state_dict(cls, state_dict: Mapping[str, Any], cell: str | None = None,
                              nonlinearity: str = "tanh", output_size: int | None = None,
                              output: str | None = "linear", head: Any = None,
                              **kwargs: Any) -> RNN:
        """An RNN holding a PyTorch RNN / LSTM / GRU's weights; see fastbptt.interop.from_torch_state_dict.
        `kwargs` go to the constructor (loss, dtype, input, batch_first, ...)."""
        return _front("interop").from_torch_state_dict(state_dict, cell, nonlinearity, output_size,
                                                       output, head, **kwargs)

    def to_torch_state_dict(self) -> dict[str, np.ndarray]:
        """The recurrent weights keyed like PyTorch's (NumPy arrays); see fastbptt.interop."""
        return _front("interop").to_torch_state_dict(self)

    # fastbptt.train.fit with this model as `model`: its signature and docstring
    fit = _FrontedMethod("train", "fit")

    def save(self, path: str | os.PathLike, optimizer: Any = None) -> None:
        """Write the model (and an optimizer's state, to resume) to `path` (.npz, atomically).

        Read it back with fastbptt.load."""
        _front("io").save(self, path, optimizer=optimizer)
