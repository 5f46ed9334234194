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
    """X as a C-contiguous (T, B, I) array of the model's dtype, or for input="tokens" a (T, B)
    intp array of ids, time-major either way; and whether it was one sequence."""
    if model.input == "tokens":
        return check_tokens(model, X)
    X = real_array("X", X, model.dtype)
    single = X.ndim == 2
    if single:
        X = X[:, None, :]
    if X.ndim != 3:
        layout = "(B, T, {0}) batch-first" if model.batch_first else "(T, B, {0}) time-major"
        raise ValueError(f"X has shape {X.shape}; expected {layout.format(model.input_size)}, "
                         f"or (T, {model.input_size}) for one sequence")
    if model.batch_first and not single:
        X = X.swapaxes(0, 1)
    T, B, I = X.shape
    if I != model.input_size:
        raise ValueError(f"X has {I} input features (shape {X.shape}); the model expects "
                         f"input_size={model.input_size}")
    _check_steps(T, B)
    return X if X.flags.c_contiguous else np.ascontiguousarray(X), single


def _check_steps(T, B):
    if T == 0:
        raise ValueError("X has no time steps (T = 0); expected at least one")
    if B == 0:
        raise ValueError("X has an empty batch (B = 0); expected at least one sequence")


def check_tokens(model, X):
    """Token ids as a C-contiguous (T, B) intp array, time-major, and whether it was one
    sequence; every id must lie in [0, input_size)."""
    try:
        ids = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"X could not be read as an array: {exc}") from exc
    if ids.dtype.kind not in "iu":
        raise TypeError(f"X has dtype {ids.dtype}; input='tokens' expects integer token ids")
    layout = "(B, T)" if model.batch_first else "(T, B)"
    if ids.ndim not in (1, 2):
        raise ValueError(f"X has shape {ids.shape}; input='tokens' expects ids shaped {layout}, "
                         "or (T,) for one sequence")
    bad = (ids < 0) | (ids >= model.input_size)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"X[{', '.join(map(str, where))}] = {ids[where]} is not a token id: ids "
                         f"must lie in [0, input_size={model.input_size})")
    single = ids.ndim == 1
    if single:
        ids = ids[:, None]
    elif model.batch_first:
        ids = ids.T
    _check_steps(*ids.shape)
    return np.ascontiguousarray(ids, dtype=np.intp), single


def to_user_layout(model, a, single):
    """A time-major (T, B, ...) array of a call's outputs in the user's layout: (B, T, ...) for a
    batch-first model (one sequence, (T, ...), is the same either way)."""
    return np.ascontiguousarray(a.swapaxes(0, 1)) if model.batch_first and not single else a


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
    T, B = X.shape[:2]
    state0 = initial_state(model, B, single, h0, c0)
    lengths = check_lengths(lengths, T, B, lengths_name)
    if Y is not None:
        Y = _targets(model, Y, T, B, single)
    return Call(X, Y, state0, single, lengths)


def _targets(model, Y, T, B, single):
    """Y prepared by the head; a batch-first model's per-step targets (B, T, ...) are swapped to
    time-major first."""
    if not (model.batch_first and model.target == "all" and not single):
        return model.head.prepare_targets(Y, T, B, single, model.dtype)
    try:
        Yarr = np.asarray(Y)
    except ValueError as exc:  # ragged nested lists
        raise ValueError(f"Y could not be read as an array: {exc}") from exc
    if Yarr.ndim < 2:
        return model.head.prepare_targets(Yarr, T, B, single, model.dtype)
    if Yarr.shape[:2] != (B, T):
        raise ValueError(f"Y has shape {Yarr.shape}; batch_first=True expects (B, T, ...) = "
                         f"({B}, {T}, ...), the batch and steps of X")
    # contiguous, so the loss sums in the same order as for time-major targets
    return model.head.prepare_targets(np.ascontiguousarray(Yarr.swapaxes(0, 1)), T, B, single,
                                      model.dtype)
