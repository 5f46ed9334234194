"""The model: recurrent layers and an output head, trained by backpropagation through time.

RNN checks a call (fastbptt.calls), runs it through one forward and backward pass (fastbptt.graph)
and holds the parameters; its fit, save, load and PyTorch methods front modules that depend on it
(see docs/architecture.md).
"""

import importlib
import math
import warnings

import numpy as np

from . import heads as _heads
from ._backend import resolve_backend
from ._checks import (
    as_dtype,
    check_fits,
    param_bytes,
    positive_int,
    real_array,
    sum_finite,
    thread_count,
)
from ._threads import blas_single_in
from .calls import check_call, state_shape
from .cells import CELLS
from .graph import Pass, plans_for
from .init import init_params
from .stack import Stack


def _front(module):
    """A module that depends on the model (train, io, interop), imported when an RNN method that
    fronts it is first called: importing it here at the top would make a cycle."""
    return importlib.import_module(f"{__package__}.{module}")


class Params(dict):
    """The model's parameters, name -> ndarray. Assigning a value checks its name, shape and finiteness
    and stores a C-contiguous copy in the model's dtype, so a bad assignment leaves the model as it was."""

    def __init__(self, shapes, dtype, values):
        super().__init__()
        self._shapes = dict(shapes)
        self._dtype = dtype
        for name, value in values.items():
            self[name] = value

    def __setitem__(self, name, value):
        if name not in self._shapes:
            raise KeyError(f"unknown parameter {name!r}; the model has {list(self._shapes)}")
        arr = real_array(f"parameter {name!r}", value, self._dtype)
        if arr.shape != self._shapes[name]:
            raise ValueError(f"parameter {name!r} must have shape {self._shapes[name]}, "
                             f"got {arr.shape}")
        if arr is value or np.shares_memory(arr, np.asarray(value)):
            arr = arr.copy()
        super().__setitem__(name, arr)

    def __delitem__(self, name):
        raise TypeError("parameters cannot be deleted")

    def __reduce__(self):  # rebuilt through the checks, which need the shapes first
        return (Params, (self._shapes, self._dtype, dict(self)))

    def _no_deleting(self, *args):
        raise TypeError("parameters cannot be removed; assign new values instead")

    pop = popitem = clear = _no_deleting

    def setdefault(self, name, value=None):
        if name not in self:
            self[name] = value  # every name is always present: this refuses unknown ones
        return self[name]

    def __ior__(self, other):
        self.update(other)
        return self

    def update(self, other=(), **kw):
        staged = dict(other, **kw)
        checked = Params(self._shapes, self._dtype, {})
        for name, value in staged.items():
            checked[name] = value
        for name, value in checked.items():
            super().__setitem__(name, value)

    def _commit(self, values):
        """Store new values the caller has already checked (names, shapes, finiteness): the
        optimizer's step, which must not pay for the checks twice."""
        for name, value in values.items():
            super().__setitem__(name, np.ascontiguousarray(value, dtype=self._dtype))

    def check_finite(self):
        if sum_finite(list(self.values())):
            return
        for name, value in self.items():
            if not np.isfinite(value).all():
                raise ValueError(f"parameter {name!r} contains NaN or Inf")


class RNN:
    """A recurrent network: one recurrent layer (tanh, relu, step, lstm or gru) and an output head.

    Inputs are time-major, X (T, B, I); a 2-D X (T, I) is a single sequence. Parameter names and
    shapes follow PyTorch's layout (see the README); how a call runs: docs/architecture.md.
    """

    def __init__(self, input_size, hidden_size, output_size=None, cell="tanh", output="linear",
                 loss="mse", reduction="mean", target="all", dtype=np.float64, backend=None,
                 seed=0, init=None, n_threads=1, num_layers=1, bidirectional=False, dropout=0.0):
        self.input_size = positive_int("input_size", input_size)
        self.hidden_size = positive_int("hidden_size", hidden_size)
        if output is None:
            if output_size not in (None, hidden_size):
                raise ValueError(f"output=None makes the hidden state the output, so output_size must "
                                 f"be None or {hidden_size}, got {output_size!r}")
            output_size = hidden_size
        else:
            output_size = positive_int("output_size", output_size)
        self.output_size = output_size
        self.dtype = as_dtype(dtype)
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}; expected one of "
                             f"{', '.join(repr(c) for c in CELLS)}")
        self.cell_name = cell
        self.num_layers = positive_int("num_layers", num_layers)
        if not isinstance(bidirectional, (bool, np.bool_)):
            raise ValueError(f"bidirectional must be True or False, got {bidirectional!r}")
        self.bidirectional = bool(bidirectional)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.floating)) or not (
                0.0 <= dropout < 1.0):
            raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        self.n_threads = thread_count(n_threads)
        check_fits(param_bytes(cell, self.input_size, self.hidden_size,
                               None if output is None else output_size, self.num_layers,
                               2 if self.bidirectional else 1, self.dtype),
                   f"the parameters of a {cell} model of hidden_size={self.hidden_size}, "
                   f"num_layers={self.num_layers}")
        self.layers = Stack(cell, self.input_size, self.hidden_size, self.num_layers,
                          self.bidirectional, self.dropout)
        if output is None and self.layers.output_size != self.hidden_size:
            raise ValueError("output=None (the hidden state is the output) needs one direction; "
                             "use an output layer with bidirectional=True")
        self.head = _heads.Head(output, loss, reduction, target, self.layers.output_size,
                                 output_size)
        self._plans = plans_for(self.layers, self.head, self.dropout)
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
    def params(self):
        """The parameters, name -> ndarray (a Params: every assignment is checked)."""
        return self._params

    @params.setter
    def params(self, values):
        """Replace every parameter at once from a mapping with exactly the model's names (checked
        as one assignment: on any error the model keeps its parameters)."""
        if not hasattr(values, "keys"):
            raise TypeError(f"params must be a mapping of parameter names to arrays, got "
                            f"{type(values).__name__}")
        shapes = self.param_shapes()
        missing, unknown = set(shapes) - set(values.keys()), set(values.keys()) - set(shapes)
        if missing or unknown:
            raise ValueError(f"params must name every parameter of the model, {list(shapes)}; "
                             f"missing {sorted(missing)}, unknown {sorted(map(str, unknown))}")
        self._params = Params(shapes, self.dtype, {name: values[name] for name in shapes})

    @property
    def n_threads(self):
        """Threads the kernels may use (at most one per sequence of a call's batch)."""
        return self._n_threads

    @n_threads.setter
    def n_threads(self, value):
        self._n_threads = thread_count(value)

    @property
    def backend(self):
        """The concrete backend the kernels run on: "cython", "numpy" or "python"."""
        return self._backend

    @backend.setter
    def backend(self, name):
        self._backend = resolve_backend(name)
        self._backend_request = name

    @property
    def cell(self):
        """Deprecated alias of `layers` (the recurrent layers, a Stack); removed in the next release."""
        warnings.warn("RNN.cell is deprecated: it holds the recurrent layers, now RNN.layers",
                      DeprecationWarning, stacklevel=2)
        return self.layers

    @property
    def output(self):
        return self.head.output

    @property
    def loss(self):
        return self.head.loss

    @property
    def reduction(self):
        return self.head.reduction

    @property
    def target(self):
        return self.head.target

    def param_shapes(self):
        return dict(self._params._shapes)

    def state_shape(self, B):
        """The shape of each initial / final state for a batch of B."""
        return state_shape(self, B)

    def get_config(self):
        """The constructor's arguments as plain JSON-able values: ``RNN(**config)`` rebuilds the model."""
        return {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "output_size": None if self.output is None else self.output_size,
            "cell": self.cell_name,
            "output": self.output,
            "loss": self.loss,
            "reduction": self.reduction,
            "target": self.target,
            "dtype": self.dtype.name,
            "n_threads": self.n_threads,
            "num_layers": self.num_layers,
            "bidirectional": self.bidirectional,
            "dropout": self.dropout,
        }

    def train(self, mode=True):
        """Training mode (dropout between layers active in loss_and_grad and fit); returns self."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Evaluation mode: no dropout anywhere; returns self."""
        return self.train(False)

    def copy(self, dtype=None):
        """An independent copy (optionally in another dtype) with the same parameters and backend."""
        cfg = self.get_config()
        if dtype is not None:
            cfg["dtype"] = as_dtype(dtype).name
        other = RNN(**cfg, backend=self._backend_request)
        other.params.update({k: v.copy() for k, v in self.params.items()})
        other.training = self.training
        return other

    def __repr__(self):
        return (f"RNN(input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"output_size={self.output_size}, cell={self.cell_name!r}, output={self.output!r}, "
                f"loss={self.loss!r}, reduction={self.reduction!r}, target={self.target!r}, "
                f"dtype={self.dtype.name}, backend={self.backend!r}"
                + (f", num_layers={self.num_layers}" if self.num_layers > 1 else "")
                + (", bidirectional=True" if self.bidirectional else "")
                + (f", dropout={self.dropout}" if self.dropout else "") + ")")

    # -- calls (checked in fastbptt.calls, run by fastbptt.graph; see docs/architecture.md) -------------

    @blas_single_in
    def forward(self, X, h0=None, c0=None, lengths=None):
        """Outputs and final state: (Y_hat, state), state = (h_T,) or (h_T, c_T) for lstm.

        With `lengths`, outputs at padded steps are zero and the state is each sequence's state after
        its own last step. States are (B, H), or (num_layers * num_directions, B, H) for stacked or
        bidirectional models.
        """
        call = check_call(self, X, None, h0, c0, lengths).sort()
        run = Pass(self)
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
        return Y_hat, state

    def predict(self, X, h0=None, c0=None, lengths=None):
        """Outputs for X: (T, B, O) for target="all", (B, O) for target="last" (without B for 2-D X)."""
        return self.forward(X, h0, c0, lengths)[0]

    def predict_classes(self, X, h0=None, c0=None, lengths=None):
        """Arg-max class (softmax), 0/1 (sigmoid, threshold 0.5) or 0/1 (linear/None, threshold 0)."""
        Y_hat = self.predict(X, h0, c0, lengths)
        if self.output == "softmax":
            return Y_hat.argmax(axis=-1)
        threshold = 0.5 if self.output == "sigmoid" else 0.0
        return (Y_hat > threshold).astype(np.int64)

    @blas_single_in
    def loss_and_grad(self, X, Y, h0=None, c0=None, lengths=None):
        """Loss and its gradient for every parameter (and for h0 / c0 when given).

        Returns (loss, grads) with grads keyed like `params` (plus "h0", "c0" for given initial
        states). With `lengths` (B,), padded steps add nothing to the loss or the gradients, and
        reduction="mean" divides by the number of valid steps. In training mode (the default; see
        `train`/`eval`) dropout between stacked layers is applied.
        """
        if Y is None:
            raise TypeError("Y is None; the loss needs targets")
        call = check_call(self, X, Y, h0, c0, lengths).sort()
        run = Pass(self, self.training)
        seg = run.forward(call.X, call.state0, 0, call.lengths, call.batch_sizes)
        loss = run.loss([seg], call.Y, 0, call.T, call.T, call.lengths)
        if not math.isfinite(loss.value):
            raise FloatingPointError(f"the loss is not finite ({loss.value})")
        grads, dstate0, _ = run.backward([seg], loss, call.lengths)
        for name, value, given in zip(("h0", "c0"), dstate0, (h0, c0), strict=False):
            if given is not None:
                value = call.unsort(value)
                grads[name] = value[..., 0, :] if call.single and np.ndim(given) < value.ndim \
                    else value
        return loss.value, grads

    @blas_single_in
    def evaluate(self, X, Y, h0=None, c0=None, lengths=None):
        """The loss alone (no backward pass through time, no dropout); with `lengths`, over the
        valid steps. fastbptt.train.evaluate adds a metric and bounded memory."""
        if Y is None:
            raise TypeError("Y is None; the loss needs targets")
        call = check_call(self, X, Y, h0, c0, lengths).sort()
        run = Pass(self)
        seg = run.forward(call.X, call.state0, 0, call.lengths, call.batch_sizes)
        return run.loss([seg], call.Y, 0, call.T, call.T, call.lengths, for_grad=False).value

    # -- fronts of the modules that depend on the model ---------------------------------------------

    @classmethod
    def from_torch_state_dict(cls, state_dict, cell=None, nonlinearity="tanh", output_size=None,
                              output="linear", head=None, **kwargs):
        """An RNN holding a PyTorch RNN / LSTM / GRU's weights; see fastbptt.interop."""
        return _front("interop").from_torch_state_dict(state_dict, cell, nonlinearity, output_size,
                                                       output, head, **kwargs)

    def to_torch_state_dict(self):
        """The recurrent weights keyed like PyTorch's (NumPy arrays); see fastbptt.interop."""
        return _front("interop").to_torch_state_dict(self)

    def fit(self, X, Y, **kwargs):
        """Train in place; see fastbptt.train.fit for the options. Returns a History."""
        return _front("train").fit(self, X, Y, **kwargs)

    def save(self, path, optimizer=None):
        """Write the model (and an optimizer's state, to resume) to `path` (.npz, atomically).

        Read it back with fastbptt.load."""
        _front("io").save(self, path, optimizer=optimizer)
