"""The model: a recurrent layer and an output head, trained by backpropagation through time."""

import numpy as np

from . import heads as _heads
from ._backend import resolve_backend
from ._checks import as_dtype, check_fits, param_bytes, positive_int, real_array, thread_count
from ._threads import blas_single_in
from .cells import CELLS
from .init import init_params
from .stack import Stack


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
        for name, value in self.items():
            if not np.isfinite(value).all():
                raise ValueError(f"parameter {name!r} contains NaN or Inf")


class _Call:
    """One validated call: inputs (sorted by decreasing length when lengths are given)."""

    def __init__(self, X, single, state0, Y):
        self.X, self.single, self.state0, self.Y = X, single, state0, Y
        self.lengths = self.batch_sizes = self.order = None


class RNN:
    """A recurrent network: one recurrent layer (tanh, relu, step, lstm or gru) and an output head.

    Inputs are time-major, X (T, B, I); a 2-D X (T, I) is a single sequence. See DESIGN.md for the
    parameter names and shapes (PyTorch's layout).
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
        # the recurrent layers; `cell` keeps the name the training loop and older code use
        self.cell = Stack(cell, self.input_size, self.hidden_size, self.num_layers,
                          self.bidirectional, self.dropout)
        if output is None and self.cell.output_size != self.hidden_size:
            raise ValueError("output=None (the hidden state is the output) needs one direction; "
                             "use an output layer with bidirectional=True")
        self.head = _heads.Head(output, loss, reduction, target, self.cell.output_size, output_size)
        self.training = True
        self._backend_request = backend
        self._backend = resolve_backend(backend)
        self.seed = seed
        self.init = init
        shapes = {**self.cell.param_shapes(), **self.head.param_shapes()}
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

    def _state_shape(self, B):
        k = self.num_layers * (2 if self.bidirectional else 1)
        return (B, self.hidden_size) if k == 1 else (k, B, self.hidden_size)

    def _initial_state(self, B, single, h0=None, c0=None):
        given = {"h0": h0, "c0": c0}
        if c0 is not None and "c" not in self.cell.state_names:
            raise ValueError(f"c0 is only for the lstm cell; this model's cell is {self.cell_name!r}")
        shape = self._state_shape(B)
        state = []
        for sname in self.cell.state_names:
            key = sname + "0"
            value = given[key]
            if value is None:
                state.append(np.zeros(shape, dtype=self.dtype))
                continue
            arr = real_array(key, value, self.dtype)
            if single and arr.ndim == len(shape) - 1:
                arr = np.expand_dims(arr, axis=-2)
            if arr.shape != shape:
                layout = "(B, H)" if len(shape) == 2 else "(num_layers * num_directions, B, H)"
                raise ValueError(f"{key} has shape {np.shape(value)}; expected {shape}, that is "
                                 f"{layout} for a batch of {B}")
            state.append(np.ascontiguousarray(arr))
        return tuple(state)

    def _lengths(self, lengths, T, B):
        """Validated lengths (B,) int64, or None when every sequence fills all T steps."""
        if lengths is None:
            return None
        arr = np.asarray(lengths)
        if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and np.all(arr == np.round(arr))):
            raise TypeError(f"lengths has dtype {arr.dtype}; expected integers")
        arr = arr.astype(np.int64).reshape(-1) if arr.ndim == 0 else arr.astype(np.int64)
        if arr.shape != (B,):
            raise ValueError(f"lengths has shape {np.shape(lengths)}; expected ({B},), one length "
                             "per sequence")
        if arr.min() < 1 or arr.max() > T:
            raise ValueError(f"lengths must lie in [1, T={T}] (empty sequences are not allowed); "
                             f"got range [{arr.min()}, {arr.max()}]")
        return None if np.all(arr == T) else arr

    # -- forward / backward ------------------------------------------------------------------------------

    def _kernels(self):
        return self.cell.kernels(self._backend)

    def _prepare(self, X, h0=None, c0=None, lengths=None, Y=None):
        """Validate one call's inputs; with lengths, sort the batch by decreasing length."""
        X, single = self._inputs(X)
        T, B, _ = X.shape
        state0 = self._initial_state(B, single, h0, c0)
        lengths = self._lengths(lengths, T, B)
        if Y is not None:
            Y = self.head.prepare_targets(Y, T, B, single, self.dtype)
        call = _Call(X, single, state0, Y)
        if lengths is not None:
            order = np.argsort(-lengths, kind="stable")
            call.lengths = np.ascontiguousarray(lengths[order])
            # at step t only the sequences still running (a prefix, once sorted) are advanced
            ascending = call.lengths[::-1]
            call.batch_sizes = (B - np.searchsorted(ascending, np.arange(T), side="right")).astype(
                np.intp)
            if np.any(order != np.arange(B)):
                call.order = order
                call.X = np.ascontiguousarray(X[:, order])
                call.state0 = tuple(np.ascontiguousarray(s[..., order, :]) for s in state0)
                if Y is not None:
                    call.Y = np.ascontiguousarray(Y[:, order])
        return call

    def _run(self, X, state0, lengths=None, batch_sizes=None, training=None, logits=False):
        """Forward through the recurrent layers: the top layer's states Hout (T+1, B, H * D) and a
        trace. With `logits` (and _head_plan's say-so), the top layer's kernel forms the output
        layer's logits too, in trace.logits when it could (else None)."""
        self.params.check_finite()
        if training is None:
            training = self.training
        head = None
        if logits and self._head_plan()[0]:
            head = (self.params["V"], self.params["c"])
        return self.cell.forward(self._kernels(), self.params, X, state0, self.n_threads,
                                 lengths=lengths, batch_sizes=batch_sizes,
                                 training=training and self.dropout > 0, rng=self._dropout_rng,
                                 head=head)

    def _head_plan(self):
        """(logits, defer_weight_grad): whether the top layer's kernels do the output layer's work
        over the states while they are in cache, so the head never reads the (T, B, H) states: the
        logits in the forward loop (Stack.forward asks the cells that can), the weight gradient dV
        in the backward loop (when every top cell fills it). Only for target="all": with "last"
        the head reads one step, less than the loops would do. fit's truncated BPTT follows the
        same plan, so that it agrees with loss_and_grad bitwise."""
        if self.output is None or self.target != "all":
            return False, False
        top = self.cell.cells[-1]
        return True, all(c.takes_head_grad and c.fills_head_weight_grad for c in top)

    def _seen(self, H, lengths=None):
        """The states the head and loss look at: every step, or only each sequence's last."""
        if self.target == "all":
            return H[1:]
        if lengths is None:
            return H[-1:]
        return H[lengths, np.arange(H.shape[1])][None]

    def _backward(self, X, H, cache, dHs, dstate_T=None, need_dX=False):
        """From the gradient at the seen states, the parameter grads, dstate0 and dX.

        dHs is an ndarray, or a HeadGrad (dO, V) that stays unformed down to the recurrent layers."""
        if not self.cell.differentiable:
            raise ValueError(f"the {self.cell_name!r} cell is forward only: it has no useful gradient")
        unformed = isinstance(dHs, _heads.HeadGrad)
        # the array to spread over all T steps: dO (T', B, O) when unformed, else dHs (T', B, H)
        seen = dHs.dO if unformed else dHs
        if self.target == "all":
            full = np.ascontiguousarray(seen, dtype=self.dtype)
        else:
            full = np.zeros((H.shape[0] - 1, H.shape[1], seen.shape[-1]), dtype=self.dtype)
            lengths = getattr(cache, "lengths", None)
            if lengths is None:
                full[-1] = seen[0]
            else:
                full[lengths - 1, np.arange(H.shape[1])] = seen[0]
        dH = _heads.HeadGrad(full, dHs.V, dHs.dV) if unformed else full
        if dstate_T is None:
            shape = self._state_shape(H.shape[1])
            dstate_T = tuple(np.zeros(shape, dtype=self.dtype) for _ in self.cell.state_names)
        return self.cell.backward(self._kernels(), self.params, X, H, cache, dH, dstate_T,
                                  self.n_threads, need_dX)

    def _head_loss(self, call, H, trace, unformed=False, defer_weight_grad=False):
        mask = None
        if call.lengths is not None and self.target == "all":
            mask = np.arange(H.shape[0] - 1)[:, None] < call.lengths[None, :]
        return self.head.loss_and_grad(self.params, self._seen(H, call.lengths), call.Y, mask=mask,
                                       unformed=unformed, defer_weight_grad=defer_weight_grad,
                                       logits=trace.logits)

    @blas_single_in
    def forward(self, X, h0=None, c0=None, lengths=None):
        """Outputs and final state: (Y_hat, state), state = (h_T,) or (h_T, c_T) for lstm.

        With `lengths`, outputs at padded steps are zero and the state is each sequence's state after
        its own last step. States are (B, H), or (num_layers * num_directions, B, H) for stacked or
        bidirectional models.
        """
        call = self._prepare(X, h0, c0, lengths)
        H, trace = self._run(call.X, call.state0, call.lengths, call.batch_sizes, training=False,
                             logits=True)
        Y_hat = self.head.forward(self.params, self._seen(H, call.lengths), trace.logits)
        state = self.cell.final_state(H, trace)
        if call.lengths is not None and self.target == "all":
            Y_hat[np.arange(Y_hat.shape[0])[:, None] >= call.lengths[None, :]] = 0
        if call.order is not None:
            inverse = np.argsort(call.order)
            Y_hat = Y_hat[:, inverse]
            state = tuple(s[..., inverse, :] for s in state)
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
        call = self._prepare(X, h0, c0, lengths, Y)
        H, trace = self._run(call.X, call.state0, call.lengths, call.batch_sizes, logits=True)
        # the gradient at the states stays (dO, V) down to the kernels that take it, which fill
        # the head's dV too where _head_plan says so
        loss, dHs, head_grads = self._head_loss(call, H, trace, unformed=True,
                                                defer_weight_grad=self._head_plan()[1])
        if not np.isfinite(loss):
            raise FloatingPointError(f"the loss is not finite ({loss})")
        grads, dstate0, _ = self._backward(call.X, H, trace, dHs)
        grads.update(head_grads)
        if call.order is not None:
            inverse = np.argsort(call.order)
            dstate0 = tuple(d[..., inverse, :] for d in dstate0)
        for name, value, given in zip(("h0", "c0"), dstate0, (h0, c0), strict=False):
            if given is not None:
                grads[name] = value[..., 0, :] if call.single and np.ndim(given) < value.ndim \
                    else value
        return loss, grads

    @blas_single_in
    def evaluate(self, X, Y, h0=None, c0=None, lengths=None):
        """The loss alone (no backward pass through time, no dropout)."""
        if Y is None:
            raise TypeError("Y is None; the loss needs targets")
        call = self._prepare(X, h0, c0, lengths, Y)
        H, trace = self._run(call.X, call.state0, call.lengths, call.batch_sizes, training=False,
                             logits=True)
        # the loss alone: a gradient left unformed and a deferred dV cost nothing over the states
        return self._head_loss(call, H, trace, unformed=True, defer_weight_grad=True)[0]

    # -- PyTorch interop (fastbptt.interop) --------------------------------------------------------------

    @classmethod
    def from_torch_state_dict(cls, state_dict, cell=None, nonlinearity="tanh", output_size=None,
                              output="linear", head=None, **kwargs):
        """An RNN holding a PyTorch RNN / LSTM / GRU's weights; see fastbptt.interop."""
        from .interop import from_torch_state_dict

        return from_torch_state_dict(cls, state_dict, cell, nonlinearity, output_size, output, head,
                                     **kwargs)

    def to_torch_state_dict(self):
        """The recurrent weights keyed like PyTorch's (NumPy arrays); see fastbptt.interop."""
        from .interop import to_torch_state_dict

        return to_torch_state_dict(self)

    # -- training and checkpoints (fastbptt.train, fastbptt.io) -----------------------------------------

    def fit(self, X, Y, **kwargs):
        """Train in place; see fastbptt.train.fit for the options. Returns a History."""
        from .train import fit

        return fit(self, X, Y, **kwargs)

    def save(self, path, optimizer=None):
        """Write the model (and an optimizer's state, to resume) to `path` (.npz, atomically).

        Read it back with fastbptt.load."""
        from .io import save

        save(self, path, optimizer=optimizer)
