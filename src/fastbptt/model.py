"""The model: a recurrent layer and an output head, trained by backpropagation through time."""

import numpy as np

from . import heads as _heads
from ._backend import resolve_backend
from ._checks import as_dtype, positive_int, real_array
from .cells import CELLS, make_cell
from .init import init_params


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

    def update(self, other=(), **kw):
        staged = dict(other, **kw)
        checked = Params(self._shapes, self._dtype, {})
        for name, value in staged.items():
            checked[name] = value
        for name, value in checked.items():
            super().__setitem__(name, value)

    def check_finite(self):
        for name, value in self.items():
            if not np.isfinite(value).all():
                raise ValueError(f"parameter {name!r} contains NaN or Inf")


class RNN:
    """A recurrent network: one recurrent layer (tanh, relu, step, lstm or gru) and an output head.

    Inputs are time-major, X (T, B, I); a 2-D X (T, I) is a single sequence. See DESIGN.md for the
    parameter names and shapes (PyTorch's layout).
    """

    def __init__(self, input_size, hidden_size, output_size=None, cell="tanh", output="linear",
                 loss="mse", reduction="mean", target="all", dtype=np.float64, backend=None,
                 seed=0, init=None, n_threads=1):
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
        self.cell_name = cell
        self.cell = make_cell(cell, self.input_size, self.hidden_size)
        self.head = _heads.Head(output, loss, reduction, target, self.hidden_size, output_size)
        self.n_threads = positive_int("n_threads", n_threads)
        self._backend_request = backend
        self._backend = resolve_backend(backend)
        self.seed = seed
        self.init = init
        shapes = {**self.cell.param_shapes(), **self.head.param_shapes()}
        rng = np.random.default_rng(seed)
        values = init_params(shapes, init, rng, self.dtype, self.hidden_size)
        self.params = Params(shapes, self.dtype, values)

    # -- configuration ---------------------------------------------------------------------------------

    @property
    def backend(self):
        """The concrete backend the kernels run on: "cython", "numpy" or "python"."""
        return self._backend

    @backend.setter
    def backend(self, name):
        self._backend = resolve_backend(name)
        self._backend_request = name

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
        return dict(self.params._shapes)

    def get_config(self):
        """The constructor's arguments as plain JSON-able values: RNN(**config) rebuilds the model."""
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
        }

    def copy(self, dtype=None):
        """An independent copy (optionally in another dtype) with the same parameters and backend."""
        cfg = self.get_config()
        if dtype is not None:
            cfg["dtype"] = as_dtype(dtype).name
        other = RNN(**cfg, backend=self._backend_request)
        other.params.update({k: v.copy() for k, v in self.params.items()})
        return other

    def __repr__(self):
        return (f"RNN(input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"output_size={self.output_size}, cell={self.cell_name!r}, output={self.output!r}, "
                f"loss={self.loss!r}, reduction={self.reduction!r}, target={self.target!r}, "
                f"dtype={self.dtype.name}, backend={self.backend!r})")

    # -- inputs ----------------------------------------------------------------------------------------

    def _inputs(self, X):
        """X as a C-contiguous (T, B, I) array of the model's dtype, and whether it was one sequence."""
        X = real_array("X", X, self.dtype)
        single = X.ndim == 2
        if single:
            X = X[:, None, :]
        if X.ndim != 3:
            raise ValueError(f"X has shape {X.shape}; expected (T, B, {self.input_size}) time-major, "
                             f"or (T, {self.input_size}) for one sequence")
        T, B, I = X.shape
        if I != self.input_size:
            raise ValueError(f"X has {I} input features (shape {X.shape}); the model expects "
                             f"input_size={self.input_size}")
        if T == 0:
            raise ValueError("X has no time steps (T = 0); expected at least one")
        if B == 0:
            raise ValueError("X has an empty batch (B = 0); expected at least one sequence")
        return np.ascontiguousarray(X), single

    def _initial_state(self, B, single, h0=None, c0=None):
        given = {"h0": h0, "c0": c0}
        if c0 is not None and "c" not in self.cell.state_names:
            raise ValueError(f"c0 is only for the lstm cell; this model's cell is {self.cell_name!r}")
        state = []
        for sname in self.cell.state_names:
            key = sname + "0"
            value = given[key]
            if value is None:
                state.append(np.zeros((B, self.hidden_size), dtype=self.dtype))
                continue
            arr = real_array(key, value, self.dtype)
            if single and arr.shape == (self.hidden_size,):
                arr = arr[None, :]
            if arr.shape != (B, self.hidden_size):
                raise ValueError(f"{key} has shape {np.shape(value)}; expected "
                                 f"({B}, {self.hidden_size}) for a batch of {B}")
            state.append(np.ascontiguousarray(arr))
        return tuple(state)

    # -- forward / backward ------------------------------------------------------------------------------

    def _kernels(self):
        return self.cell.kernels(self._backend)

    def _run(self, X, state0):
        """Forward through the recurrent layer: states H (T+1, B, H) and the cell's cache."""
        self.params.check_finite()
        return self.cell.forward(self._kernels(), self.params, X, state0, self.n_threads)

    def _seen(self, H):
        """The states the head and loss look at: every step, or only the last."""
        return H[1:] if self.target == "all" else H[-1:]

    def _backward(self, X, H, cache, dHs, dstate_T=None, need_dX=False):
        """From the gradient at the seen states, the cell's parameter grads, dstate0 and dX."""
        if not self.cell.differentiable:
            raise ValueError(f"the {self.cell_name!r} cell is forward only: it has no useful gradient")
        if self.target == "all":
            dH = np.ascontiguousarray(dHs, dtype=self.dtype)
        else:
            dH = np.zeros((H.shape[0] - 1,) + H.shape[1:], dtype=self.dtype)
            dH[-1] = dHs[0]
        if dstate_T is None:
            dstate_T = tuple(np.zeros(H.shape[1:], dtype=self.dtype) for _ in self.cell.state_names)
        return self.cell.backward(self._kernels(), self.params, X, H, cache, dH, dstate_T,
                                  self.n_threads, need_dX)

    def forward(self, X, h0=None, c0=None):
        """Outputs and final state: (Y_hat, state) with state = (h_T,) or (h_T, c_T) for lstm."""
        X, single = self._inputs(X)
        state0 = self._initial_state(X.shape[1], single, h0, c0)
        H, cache = self._run(X, state0)
        Y_hat = self.head.forward(self.params, self._seen(H))
        state = self.cell.final_state(H, cache)
        if self.target == "last":
            Y_hat = Y_hat[0]
        if single:
            Y_hat = Y_hat[:, 0] if self.target == "all" else Y_hat[0]
            state = tuple(s[0] for s in state)
        return Y_hat, state

    def predict(self, X, h0=None, c0=None):
        """Outputs for X: (T, B, O) for target="all", (B, O) for target="last" (without B for 2-D X)."""
        return self.forward(X, h0, c0)[0]

    def predict_classes(self, X, h0=None, c0=None):
        """Arg-max class (softmax), 0/1 (sigmoid, threshold 0.5) or 0/1 (linear/None, threshold 0)."""
        Y_hat = self.predict(X, h0, c0)
        if self.output == "softmax":
            return Y_hat.argmax(axis=-1)
        threshold = 0.5 if self.output == "sigmoid" else 0.0
        return (Y_hat > threshold).astype(np.int64)

    def loss_and_grad(self, X, Y, h0=None, c0=None):
        """Loss and its gradient for every parameter (and for h0 / c0 when given).

        Returns (loss, grads) with grads keyed like `params` (plus "h0", "c0" for given initial states).
        """
        X, single = self._inputs(X)
        T, B, _ = X.shape
        state0 = self._initial_state(B, single, h0, c0)
        Y = self.head.prepare_targets(Y, T, B, single, self.dtype)
        H, cache = self._run(X, state0)
        loss, dHs, head_grads = self.head.loss_and_grad(self.params, self._seen(H), Y)
        grads, dstate0, _ = self._backward(X, H, cache, dHs)
        grads.update(head_grads)
        for name, value, given in zip(("h0", "c0"), dstate0, (h0, c0)):
            if given is not None:
                grads[name] = value[0] if single and np.ndim(given) == 1 else value
        if not np.isfinite(loss):
            raise FloatingPointError(f"the loss is not finite ({loss})")
        return loss, grads

    def evaluate(self, X, Y, h0=None, c0=None):
        """The loss alone (no backward pass through time)."""
        X, single = self._inputs(X)
        T, B, _ = X.shape
        state0 = self._initial_state(B, single, h0, c0)
        Y = self.head.prepare_targets(Y, T, B, single, self.dtype)
        H, _ = self._run(X, state0)
        return self.head.loss_and_grad(self.params, self._seen(H), Y)[0]

    # -- training and checkpoints (fastbptt.train, fastbptt.io) -----------------------------------------

    def fit(self, X, Y, **kwargs):
        """Train in place; see fastbptt.train.fit for the options. Returns a History."""
        from .train import fit

        return fit(self, X, Y, **kwargs)

    def save(self, path):
        """Write the model to `path` (.npz, atomically); read it back with fastbptt.load."""
        from .io import save

        save(self, path)
