"""Checking one call's inputs: X, Y, the initial states and the sequence lengths, into a `Call`.

Every entry point (RNN.loss_and_grad / forward / evaluate, fit, truncated_bptt) checks its inputs here
and nowhere else; see docs/architecture.md for where a Call goes next.
"""

import numpy as np

from ._checks import real_array


class Call:
    """One checked call: X (T, B, I) C-contiguous, Y prepared by the head (or None), the initial
    states, and `lengths` (B,) int64 or None when every sequence fills all T steps. After `sort()`,
    the batch is in decreasing length, `batch_sizes` (T,) counts the sequences still running at
    each step and `order` is the permutation applied (None when it was the identity)."""

    __slots__ = ("X", "Y", "state0", "single", "lengths", "batch_sizes", "order")

    def __init__(self, X, Y, state0, single, lengths=None):
        self.X, self.Y, self.state0, self.single, self.lengths = X, Y, state0, single, lengths
        self.batch_sizes = self.order = None

    @property
    def T(self):
        return self.X.shape[0]

    @property
    def B(self):
        return self.X.shape[1]

    def rows(self, idx):
        """The call restricted to batch rows idx (a minibatch), unsorted."""
        return Call(np.ascontiguousarray(self.X[:, idx]),
                    None if self.Y is None else np.ascontiguousarray(self.Y[:, idx]),
                    tuple(np.ascontiguousarray(s[..., idx, :]) for s in self.state0), self.single,
                    None if self.lengths is None else _full_is_none(self.lengths[idx], self.T))

    def sort(self):
        """This call sorted by decreasing length: itself when there are no lengths or it is
        sorted already, else a new Call (arrays copied only when the order changes)."""
        if self.lengths is None or self.batch_sizes is not None:
            return self
        order = np.argsort(-self.lengths, kind="stable")
        out = Call(self.X, self.Y, self.state0, self.single, np.ascontiguousarray(self.lengths[order]))
        # at step t only the sequences still running (a prefix, once sorted) are advanced
        out.batch_sizes = batch_sizes_of(out.lengths, self.T)
        if np.any(order != np.arange(self.B)):
            out.order = order
            out.X = np.ascontiguousarray(self.X[:, order])
            out.state0 = tuple(np.ascontiguousarray(s[..., order, :]) for s in self.state0)
            if self.Y is not None:
                out.Y = np.ascontiguousarray(self.Y[:, order])
        return out

    def unsort(self, a):
        """a (..., B, k) back in the caller's batch order."""
        return a if self.order is None else a[..., np.argsort(self.order), :]


def batch_sizes_of(lengths, T):
    """(T,) intp: how many of the (sorted, decreasing) lengths exceed each step."""
    ascending = lengths[::-1]
    return (len(lengths) - np.searchsorted(ascending, np.arange(T), side="right")).astype(np.intp)


def _full_is_none(lengths, T):
    return None if np.all(lengths == T) else lengths


def check_X(model, X):
    """X as a C-contiguous (T, B, I) array of the model's dtype, and whether it was one sequence."""
    X = real_array("X", X, model.dtype)
    single = X.ndim == 2
    if single:
        X = X[:, None, :]
    if X.ndim != 3:
        raise ValueError(f"X has shape {X.shape}; expected (T, B, {model.input_size}) time-major, "
                         f"or (T, {model.input_size}) for one sequence")
    T, B, I = X.shape
    if I != model.input_size:
        raise ValueError(f"X has {I} input features (shape {X.shape}); the model expects "
                         f"input_size={model.input_size}")
    if T == 0:
        raise ValueError("X has no time steps (T = 0); expected at least one")
    if B == 0:
        raise ValueError("X has an empty batch (B = 0); expected at least one sequence")
    return X if X.flags.c_contiguous else np.ascontiguousarray(X), single


def state_shape(model, B):
    """(B, H) for one layer and direction, else (num_layers * num_directions, B, H)."""
    k = model.num_layers * (2 if model.bidirectional else 1)
    return (B, model.hidden_size) if k == 1 else (k, B, model.hidden_size)


def initial_state(model, B, single, h0=None, c0=None):
    """The checked initial states, zeros where not given: (h0,) or (h0, c0) for lstm."""
    names = model.layers.state_names
    if c0 is not None and "c" not in names:
        raise ValueError(f"c0 is only for the lstm cell; this model's cell is {model.cell_name!r}")
    shape = state_shape(model, B)
    state = []
    for name in names:
        key, value = name + "0", (h0 if name == "h" else c0)
        if value is None:
            state.append(np.zeros(shape, dtype=model.dtype))
            continue
        arr = real_array(key, value, model.dtype)
        if single and arr.ndim == len(shape) - 1:
            arr = np.expand_dims(arr, axis=-2)
        if arr.shape != shape:
            layout = "(B, H)" if len(shape) == 2 else "(num_layers * num_directions, B, H)"
            raise ValueError(f"{key} has shape {np.shape(value)}; expected {shape}, that is "
                             f"{layout} for a batch of {B}")
        state.append(np.ascontiguousarray(arr))
    return tuple(state)


def check_lengths(lengths, T, B, name="lengths"):
    """Validated lengths (B,) int64, or None when every sequence fills all T steps."""
    if lengths is None:
        return None
    arr = np.asarray(lengths)
    if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and np.all(arr == np.round(arr))):
        raise TypeError(f"{name} has dtype {arr.dtype}; expected integers")
    arr = arr.astype(np.int64).reshape(-1) if arr.ndim == 0 else arr.astype(np.int64)
    if arr.shape != (B,):
        raise ValueError(f"{name} has shape {np.shape(lengths)}; expected ({B},), one length "
                         "per sequence")
    if arr.min() < 1 or arr.max() > T:
        raise ValueError(f"{name} must lie in [1, T={T}] (empty sequences are not allowed); "
                         f"got range [{arr.min()}, {arr.max()}]")
    return _full_is_none(arr, T)


def check_call(model, X, Y=None, h0=None, c0=None, lengths=None, lengths_name="lengths"):
    """Everything a call is given, checked: a Call (not yet sorted by length)."""
    X, single = check_X(model, X)
    T, B, _ = X.shape
    state0 = initial_state(model, B, single, h0, c0)
    lengths = check_lengths(lengths, T, B, lengths_name)
    if Y is not None:
        Y = model.head.prepare_targets(Y, T, B, single, model.dtype)
    return Call(X, Y, state0, single, lengths)
