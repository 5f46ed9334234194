"""The glue between the model and each cell's kernels.

A cell owns its parameter shapes, the time-parallel work around its kernel (the input projection of every
step before the loop, the weight gradients after it, each one GEMM) and the call into the sequential kernel
of the chosen backend. The time loops themselves live in cython/_<family>.pyx and its twins in
fastbptt/reference/; the contract they share, and how to add a cell: docs/architecture.md.
"""

import sys
import threading

import numpy as np

from . import valid_steps
from ._backend import kernels
from .heads import HeadGrad, dense_grad

CELLS = ("tanh", "relu", "step", "lstm", "gru")
_ACT = {"tanh": 0, "relu": 1, "step": 2}
_GIL_ENABLED = getattr(sys, "_is_gil_enabled", lambda: True)()
# scratch arrays smaller than this are allocated afresh (see _Scratch)
SCRATCH_MIN_BYTES = 1 << 14


def _flat(a):
    """(T, B, n) -> (T*B, n) view."""
    return a.reshape(-1, a.shape[-1])


def _project(X, Wx, b, batch_sizes=None):
    """A = X Wx^T + b for every step at once: (T, B, I) -> (T, B, G); with batch_sizes, at the
    valid steps only (zero elsewhere). Token ids X (T, B) stand for their one-hot rows: A is then
    a gather of Wx's columns."""
    if X.ndim == 2:
        return _gather(X, Wx, b)
    if batch_sizes is not None:
        return valid_steps.rows_times(X, Wx.T, batch_sizes, b)
    T, B, _ = X.shape
    A = np.empty((T, B, Wx.shape[0]), dtype=X.dtype)
    np.matmul(_flat(X), Wx.T, out=_flat(A))
    A += b
    return A


def _gather(ids, Wx, b):
    """A[t, b] = Wx[:, ids[t, b]] + b: the projection of one-hot inputs without forming them."""
    T, B = ids.shape
    A = np.empty((T, B, Wx.shape[0]), dtype=Wx.dtype)
    np.add(Wx.T[ids.reshape(-1)], b, out=_flat(A))
    return A


def token_weight_grad(dA, ids, vocabulary):
    """dWx (G, V) = sum over steps of dA_t^T onehot(ids_t): each row of dA (T, B, G) added into
    the column of its id. The rows are grouped by id (one stable sort); the first row of every
    group is taken at once, then the k-th rows of the groups that have k, so the loop runs as
    many times as the most frequent id occurs (np.add.at and np.add.reduceat along rows are
    several times slower)."""
    flat_ids, rows = ids.reshape(-1), _flat(dA)
    order = np.argsort(flat_ids, kind="stable")
    sorted_ids = flat_ids[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
    counts = np.diff(np.append(starts, len(sorted_ids)))
    sums = rows[order[starts]]
    for k in range(1, int(counts.max())):
        groups = np.flatnonzero(counts > k)
        sums[groups] += rows[order[starts[groups] + k]]
    dWx = np.zeros((rows.shape[1], vocabulary), dtype=dA.dtype)
    dWx[:, sorted_ids[starts]] = sums.T
    return dWx


class Cell:
    """Base: subclasses set `family`, `state_names`, `gates` and the four methods below.

    backward's dH, the loss gradient reaching each state, is a (T, B, H) ndarray, or a HeadGrad
    (dO, V) meaning dO @ V when it comes straight from an output layer. A cell whose kernels form
    dO_t V inside their loop sets `takes_head_grad`; for the others the caller (the Stack) forms the
    array with `dense_grad` first. A cell that also sets `fills_head_weight_grad` may be handed a
    HeadGrad whose dV is an array, and writes the head's weight gradient sum_t dO_t^T h_t into it
    (folded into its kernels, or with `fill_head_weight_grad`); the others get dV=None and the Stack
    forms dV itself.

    forward may also be handed `logits=(V, c, out)` when `logits_ok` says its kernel forms a linear
    output layer's logits inside its time loop: it then fills out (T, B, O) with H[t + 1] V^T + c
    (with batch_sizes at the valid rows only), so the head never reads the states back.
    """

    family = None
    state_names = ("h",)
    gates = 1
    differentiable = True
    takes_head_grad = False
    fills_head_weight_grad = False

    @staticmethod
    def dense_grad(dH):
        """dH as a (T, B, H) ndarray: formed from a HeadGrad, passed through otherwise."""
        return dense_grad(dH)

    @staticmethod
    def fill_head_weight_grad(dH, H):
        """When dH is a HeadGrad with a dV to fill: dV = sum_t dO_t^T h_t from the states H
        (T+1, B, H), one product."""
        if isinstance(dH, HeadGrad) and dH.dV is not None:
            dH.weight_grad_from(H[1:])

    def __init__(self, name, input_size, hidden_size):
        self.name = name
        self.input_size = input_size
        self.hidden_size = hidden_size
        self._scratch = _Scratch()  # the forward's states, handed out again once nobody holds them

    def kernels(self, backend):
        return kernels(self.family, backend)

    def logits_ok(self, kern, X):
        """Whether forward, with this kernel module and inputs X, can form the logits in its loop."""
        return False

    def input_grads(self, dA, Wx, need_dX):
        """dX = dA Wx, the gradient flowing down to the inputs (for stacked layers)."""
        if not need_dX:
            return None
        return (_flat(dA) @ Wx).reshape(dA.shape[0], dA.shape[1], -1)

    def input_weight_grad(self, dA, X):
        """sum_t dA_t^T X_t, the input weights' gradient: one product, or for token ids (T, B)
        a scatter-add of dA's rows into the columns of their ids."""
        if X.ndim == 2:
            return token_weight_grad(dA, X, self.input_size)
        return _flat(dA).T @ _flat(X)


class ElmanCell(Cell):
    """h_t = f(U x_t + W h_{t-1} + b), f = tanh | relu | step."""

    family = "elman"
    takes_head_grad = True
    fills_head_weight_grad = True

    def __init__(self, name, input_size, hidden_size):
        super().__init__(name, input_size, hidden_size)
        self.act = _ACT[name]
        self.differentiable = name != "step"
        self._fused_ok = {}

    def param_shapes(self):
        I, n = self.input_size, self.hidden_size
        return {"U": (n, I), "W": (n, n), "b": (n,)}

    def _fused(self, kern, X):
        """Whether the kernel forms the projection and the weight gradients inside its time loops
        (asked once per kernel module, batch size and dtype)."""
        if X.ndim == 2:  # token ids: the projection is a gather, done before the loop
            return False
        key = (kern.__name__, X.shape[1], X.dtype)
        ok = self._fused_ok.get(key)
        if ok is None:
            ask = getattr(kern, "fused_ok", None)
            ok = self._fused_ok[key] = ask is not None and ask(X.shape[2], self.hidden_size,
                                                               X.shape[1], X.dtype)
        return ok

    def logits_ok(self, kern, X):
        return self._fused(kern, X)

    def forward(self, kern, p, X, state0, n_threads, batch_sizes=None, logits=None):
        """Return the states H (T+1, B, H) and the cache backward needs (with batch_sizes, zero
        past each sequence's end); with logits=(V, c, out), fill out too (see Cell)."""
        (h0,) = state0
        if batch_sizes is not None:
            return self._forward_runs(kern, p, X, h0, n_threads, batch_sizes, logits), None
        # the kernels write every entry: an earlier call's states that nobody holds will do (a
        # fresh array costs page faults worth a tenth of a step at H=16)
        H = self._scratch.empty((X.shape[0] + 1,) + h0.shape, dtype=h0.dtype)
        self._forward_block(kern, p, X, h0, H, n_threads, logits)
        return H, None

    def _forward_block(self, kern, p, X, h0, H, n_threads, logits=None):
        """H (T+1, B, H) of one contiguous block, through the fused entry when the kernel has one
        (which forms the logits too when given)."""
        if self._fused(kern, X):
            kern.forward_fused(self.act, p["U"], p["b"], p["W"], X, h0, H, n_threads, None,
                               *(logits or ()))
        else:
            kern.forward(self.act, p["W"], _project(X, p["U"], p["b"]), h0, H, n_threads)

    def _forward_runs(self, kern, p, X, h0, n_threads, batch_sizes, logits=None):
        """Each run of steps with the same active batch b is one kernel call on rows [0, b): the
        rows are independent, and finished ones are neither read nor written (their states stay 0)."""
        T, B = X.shape[:2]
        H = np.zeros((T + 1, B, self.hidden_size), dtype=h0.dtype)
        H[0] = h0
        for t0, t1, b in valid_steps.runs(batch_sizes):
            block = np.empty((t1 - t0 + 1, b, self.hidden_size), dtype=h0.dtype)
            run_logits = None
            if logits is not None:
                V, c, out = logits
                run_logits = (V, c, np.empty((t1 - t0, b, V.shape[0]), dtype=h0.dtype))
            self._forward_block(kern, p, np.ascontiguousarray(X[t0:t1, :b]),
                                np.ascontiguousarray(H[t0, :b]), block, n_threads, run_logits)
            H[t0 + 1:t1 + 1, :b] = block[1:]
            if logits is not None:
                out[t0:t1, :b] = run_logits[2]
        return H

    def final_state(self, H, cache):
        return (H[-1].copy(),)

    def backward(self, kern, p, X, H, cache, dH, dstate_T, n_threads, need_dX=False,
                 batch_sizes=None):
        """Return (grads of U, W, b), the gradient at the initial state, and dX (or None); dH is
        an ndarray (T, B, H) or a HeadGrad."""
        (dh_T,) = dstate_T
        if batch_sizes is not None:
            return self._backward_runs(kern, p, X, H, dH, dh_T, n_threads, need_dX, batch_sizes)
        grads, dh0, dA = self._backward_block(kern, p, X, H, dH, dh_T, n_threads, need_dX)
        return grads, (dh0,), self.input_grads(dA, p["U"], need_dX)

    def _backward_block(self, kern, p, X, H, dH, dh_T, n_threads, need_dX):
        """(grads, dh0, dA or None) of one contiguous block; dH an ndarray or a HeadGrad."""
        dh0 = np.empty(dh_T.shape, dh_T.dtype)
        shape = (H.shape[0] - 1,) + H.shape[1:]
        if self._fused(kern, X):
            dA = np.empty(shape, dtype=H.dtype) if need_dX else None
            # np.empty_like goes through NumPy's dispatch, a fifth of a microsecond each
            U, W, b = p["U"], p["W"], p["b"]
            grads = {"U": np.empty(U.shape, U.dtype), "W": np.empty(W.shape, W.dtype),
                     "b": np.empty(b.shape, b.dtype)}
            # the fused kernels form dO_t V step by step (no (T, B, H) gradient array), and the
            # head's dV beside dW
            head = (dH.dO, dH.V, dH.dV) if isinstance(dH, HeadGrad) else ()
            kern.backward_fused(self.act, p["W"], X, H, None if head else dH, dh_T, dh0,
                                grads["U"], grads["W"], grads["b"], n_threads, None, dA, *head)
            return grads, dh0, dA
        self.fill_head_weight_grad(dH, H)
        dH = self.dense_grad(dH)
        dA = np.empty(shape, dtype=H.dtype)
        kern.backward(self.act, p["W"], H, dH, dh_T, dA, dh0, n_threads)
        dA2 = _flat(dA)
        grads = {"U": self.input_weight_grad(dA, X), "W": dA2.T @ _flat(H[:-1]),
                 "b": dA2.sum(axis=0)}
        return grads, dh0, dA

    def _backward_runs(self, kern, p, X, H, dH, dh_T, n_threads, need_dX, batch_sizes):
        """The runs of forward in reverse: a finished row's gradient passes its padded steps
        untouched, and enters the kernel at the run holding its last valid step."""
        # a fused kernel folds each run's share of dV beside dW; otherwise H is zero past each end
        # and so is dO: one product over the padded arrays gives dV
        fold_dV = isinstance(dH, HeadGrad) and dH.dV is not None and self._fused(kern, X)
        if not fold_dV:
            self.fill_head_weight_grad(dH, H)
        else:
            dH.dV[...] = 0
        dh = dh_T.copy()
        grads = {k: np.zeros_like(p[k]) for k in ("U", "W", "b")}
        dX = np.zeros_like(X) if need_dX else None
        for t0, t1, b in reversed(valid_steps.runs(batch_sizes)):
            dH_run = dH.rows(t0, t1, b) if isinstance(dH, HeadGrad) else \
                np.ascontiguousarray(dH[t0:t1, :b])
            if fold_dV:
                dH_run = dH_run._replace(dV=np.empty_like(dH.dV))
            g, dh0, dA = self._backward_block(
                kern, p, np.ascontiguousarray(X[t0:t1, :b]), np.ascontiguousarray(H[t0:t1 + 1, :b]),
                dH_run, np.ascontiguousarray(dh[:b]), n_threads, need_dX)
            if fold_dV:
                np.add(dH.dV, dH_run.dV, out=dH.dV)
            for k in grads:
                grads[k] += g[k]
            dh[:b] = dh0
            if need_dX:
                dX[t0:t1, :b] = self.input_grads(dA, p["U"], True)
        return grads, (dh,), dX


def _aligned_empty(shape, dtype, align=64):
    """np.empty(shape, dtype) starting on an `align`-byte boundary (a cache line), which the
    compiled kernels' streaming stores need."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.intp)) * dtype.itemsize
    raw = np.empty(nbytes + align, np.uint8)
    start = -raw.__array_interface__["data"][0] % align
    return raw[start:start + nbytes].view(dtype).reshape(shape)


class _Scratch:
    """Arrays a cell hands out again from one call to the next (the forward cache of a training
    step): a fresh array of that size is paid for in page faults, about a tenth of a step at
    T=1000, B=32, H=128. An array is handed out again only once nothing outside the pool holds it
    or a view of it (its reference count is back to the pool's own), so a cache still in use is
    never overwritten; the pool keeps the `keep` most recent arrays.

    The check and the hand-out happen under one lock, so two threads calling the same model never
    get the same array. Without the GIL (free-threaded CPython) another thread's references are
    counted lazily and the count cannot prove an array free, so every call gets a fresh array.
    Arrays under `min_bytes` are fresh: they cost no page faults, and less than the pool's search."""

    def __init__(self, keep=6, min_bytes=None):
        self._arrays = []  # [array, its and its base's reference counts when only the pool held it]
        self._keep = keep
        self._min_bytes = SCRATCH_MIN_BYTES if min_bytes is None else min_bytes
        self._lock = threading.Lock()

    def __reduce__(self):  # a copy of a model starts with an empty pool (and its own lock)
        return (_Scratch, (self._keep, self._min_bytes))

    @staticmethod
    def _refs(entry):
        # a view of the array refers to its base (the aligned buffer), not to the array itself
        return sys.getrefcount(entry[0]), sys.getrefcount(entry[0].base)

    def empty(self, shape, dtype):
        """An uninitialised array of this shape and dtype that nobody else holds."""
        # made first, as most are small and go out as they are; a large one that the pool has
        # free replaces it untouched (an allocation costs no page faults until it is written)
        fresh = np.empty(shape, dtype)
        if not _GIL_ENABLED or fresh.nbytes < self._min_bytes:
            return fresh
        with self._lock:
            for i, entry in enumerate(self._arrays):
                a = entry[0]
                if a.shape == fresh.shape and a.dtype == fresh.dtype:
                    del a
                    if self._refs(entry) == entry[1]:
                        self._arrays.append(self._arrays.pop(i))
                        return entry[0]
            # kept arrays start on a cache line, for the kernels' streaming stores
            entry = [_aligned_empty(shape, dtype), None]
            del fresh  # the count taken next must be the pool's own references alone
            entry[1] = self._refs(entry)
            self._arrays.append(entry)
            if len(self._arrays) > self._keep:
                self._arrays.pop(0)
            return entry[0]


class _PackSlot(list):
    """Where a compiled kernel keeps its packed weights between calls (at most one entry; see
    cython/_packcache.pxd). A copy of the model starts with an empty slot."""

    def __reduce__(self):
        return (_PackSlot, ())


def _has_fused(kern, X):
    """Whether a gated cell's kernel module forms the projection and the weight gradients inside
    its time loops (forward_fused / backward_fused) for inputs X; token ids (T, B) take the
    gather before the loop instead."""
    return X.ndim == 3 and hasattr(kern, "forward_fused")


def _given(batch_sizes):
    """The kernels' trailing batch_sizes argument: passed only when there is one, so kernels
    without it keep working for full batches."""
    return () if batch_sizes is None else (batch_sizes,)


class LSTMCell(Cell):
    """PyTorch's LSTM: gates i, f, g, o from Wx x_t + Wh h_{t-1} + b."""

    family = "lstm"
    state_names = ("h", "c")
    gates = 4
    # the fused kernels form a HeadGrad's dO_t V and the head's dV inside their loop; the others
    # get the array (dV from one product over the states)
    takes_head_grad = True
    fills_head_weight_grad = True

    def __init__(self, name, input_size, hidden_size):
        super().__init__(name, input_size, hidden_size)
        # the compiled forward's packed (Wx | Wh), kept between calls (cython/_packcache.pxd)
        self._packed = _PackSlot()

    def param_shapes(self):
        I, n = self.input_size, self.hidden_size
        return {"Wx": (4 * n, I), "Wh": (4 * n, n), "b": (4 * n,)}

    def logits_ok(self, kern, X):
        return _has_fused(kern, X)

    def forward(self, kern, p, X, state0, n_threads, batch_sizes=None, logits=None):
        """States H (T+1, B, H) and the cache (C, G); with batch_sizes, zero past each end. With
        logits=(V, c, out), out is filled too (see Cell)."""
        h0, c0 = state0
        T, B = X.shape[:2]
        n = self.hidden_size
        if batch_sizes is None:
            # the kernels write every entry: arrays of an earlier call that nobody holds will do
            alloc = self._scratch.empty
        else:
            alloc = np.zeros
        H = alloc((T + 1, B, n), dtype=h0.dtype)
        C = alloc(H.shape, dtype=h0.dtype)
        G = alloc((T, B, 4 * n), dtype=h0.dtype)
        if _has_fused(kern, X):
            kw = {"packed": self._packed} if getattr(kern, "KEEPS_PACKED", False) else {}
            kern.forward_fused(p["Wx"], p["b"], p["Wh"], X, h0, c0, H, C, G, n_threads,
                               batch_sizes, *(logits or (None, None, None)), **kw)
            return H, (C, G)
        A = _project(X, p["Wx"], p["b"], batch_sizes)
        kern.forward(p["Wh"], A, h0, c0, H, C, G, n_threads, *_given(batch_sizes))
        return H, (C, G)

    def final_state(self, H, cache):
        return (H[-1].copy(), cache[0][-1].copy())

    def backward(self, kern, p, X, H, cache, dH, dstate_T, n_threads, need_dX=False,
                 batch_sizes=None):
        """Parameter grads, (dh0, dc0) and dX (or None); with batch_sizes, from the valid steps."""
        C, G = cache
        dh_T, dc_T = dstate_T
        dh0 = np.empty(dh_T.shape, dh_T.dtype)
        dc0 = np.empty(dc_T.shape, dc_T.dtype)
        if _has_fused(kern, X):
            grads = {k: np.empty(p[k].shape, p[k].dtype) for k in ("Wx", "Wh", "b")}
            # np.zeros maps fresh zero pages (calloc); zeros_like would write every byte
            dA = None if not need_dX else np.zeros(G.shape, G.dtype)
            # a HeadGrad stays unformed: the kernel forms dO_t V (and dV) step by step
            head = (dH.dO, dH.V, dH.dV) if isinstance(dH, HeadGrad) else ()
            kern.backward_fused(p["Wh"], X, H, C, G, None if head else dH, dh_T, dc_T, dh0, dc0,
                                grads["Wx"], grads["Wh"], grads["b"], n_threads, batch_sizes, dA,
                                *head)
            return grads, (dh0, dc0), self.input_grads(dA, p["Wx"], need_dX)
        self.fill_head_weight_grad(dH, H)
        dH = self.dense_grad(dH)
        dA = np.empty_like(G) if batch_sizes is None else np.zeros(G.shape, G.dtype)
        kern.backward(p["Wh"], H, C, G, dH, dh_T, dc_T, dA, dh0, dc0, n_threads,
                      *_given(batch_sizes))
        if batch_sizes is None:
            dA2 = _flat(dA)
            grads = {"Wx": self.input_weight_grad(dA, X), "Wh": dA2.T @ _flat(H[:-1]),
                     "b": dA2.sum(axis=0)}
            return grads, (dh0, dc0), self.input_grads(dA, p["Wx"], need_dX)
        if X.ndim == 2:  # token ids: dA is zero at the padded steps, so all rows may be scattered
            (dWh,), (db,) = valid_steps.valid_grads(batch_sizes, (dA, H[:-1]), ((0, 1),), (0,))
            return ({"Wx": self.input_weight_grad(dA, X), "Wh": dWh, "b": db}, (dh0, dc0),
                    None)
        (dWx, dWh), (db,) = valid_steps.valid_grads(batch_sizes, (dA, X, H[:-1]), ((0, 1), (0, 2)), (0,))
        dX = valid_steps.rows_times(dA, p["Wx"], batch_sizes) if need_dX else None
        return {"Wx": dWx, "Wh": dWh, "b": db}, (dh0, dc0), dX


class GRUCell(Cell):
    """PyTorch's GRU: gates r, z, n; n = tanh(Wx_n x + bx_n + r * (Wh_n h + bh_n))."""

    family = "gru"
    gates = 3
    # as LSTMCell: the fused kernels take the head's work into their loops
    takes_head_grad = True
    fills_head_weight_grad = True

    def __init__(self, name, input_size, hidden_size):
        super().__init__(name, input_size, hidden_size)
        # the compiled forward's packed Wh and Wx, kept between calls (cython/_packcache.pxd)
        self._packed = _PackSlot()

    def param_shapes(self):
        I, n = self.input_size, self.hidden_size
        return {"Wx": (3 * n, I), "Wh": (3 * n, n), "bx": (3 * n,), "bh": (3 * n,)}

    def logits_ok(self, kern, X):
        return _has_fused(kern, X)

    def forward(self, kern, p, X, state0, n_threads, batch_sizes=None, logits=None):
        """States H (T+1, B, H) and the cache (G, HN); with batch_sizes, zero past each end. With
        logits=(V, c, out), out is filled too (see Cell)."""
        (h0,) = state0
        T, B = X.shape[:2]
        n = self.hidden_size
        # the kernels write every entry: arrays of an earlier call that nobody holds will do
        alloc = self._scratch.empty if batch_sizes is None else np.zeros
        H = alloc((T + 1, B, n), dtype=h0.dtype)
        G = alloc((T, B, 3 * n), dtype=h0.dtype)
        HN = alloc((T, B, n), dtype=h0.dtype)
        if _has_fused(kern, X):
            kw = {"packed": self._packed} if getattr(kern, "KEEPS_PACKED", False) else {}
            kern.forward_fused(p["Wx"], p["bx"], p["Wh"], p["bh"], X, h0, H, G, HN, n_threads,
                               batch_sizes, *(logits or (None, None, None)), **kw)
            return H, (G, HN)
        A = _project(X, p["Wx"], p["bx"], batch_sizes)
        kern.forward(p["Wh"], p["bh"], A, h0, H, G, HN, n_threads, *_given(batch_sizes))
        return H, (G, HN)

    def final_state(self, H, cache):
        return (H[-1].copy(),)

    def backward(self, kern, p, X, H, cache, dH, dstate_T, n_threads, need_dX=False,
                 batch_sizes=None):
        """Parameter grads, (dh0,) and dX (or None); with batch_sizes, from the valid steps."""
        G, HN = cache
        (dh_T,) = dstate_T
        if _has_fused(kern, X):
            dh0 = np.empty(dh_T.shape, dh_T.dtype)
            grads = {k: np.empty(p[k].shape, p[k].dtype) for k in ("Wx", "Wh", "bx", "bh")}
            # np.zeros maps fresh zero pages (calloc); zeros_like would write every byte
            dA = None if not need_dX else np.zeros(G.shape, G.dtype)
            # a HeadGrad stays unformed: the kernel forms dO_t V (and dV) step by step
            head = (dH.dO, dH.V, dH.dV) if isinstance(dH, HeadGrad) else ()
            kern.backward_fused(p["Wh"], X, H, G, HN, None if head else dH, dh_T, dh0, grads["Wx"],
                                grads["Wh"], grads["bx"], grads["bh"], n_threads, batch_sizes, dA,
                                *head)
            return grads, (dh0,), self.input_grads(dA, p["Wx"], need_dX)
        self.fill_head_weight_grad(dH, H)
        dH = self.dense_grad(dH)
        # np.zeros maps fresh zero pages (calloc); zeros_like would write every byte
        alloc = np.empty if batch_sizes is None else np.zeros
        dA = alloc(G.shape, G.dtype)
        dGh = alloc(G.shape, G.dtype)
        dh0 = np.empty_like(dh_T)
        kern.backward(p["Wh"], H, G, HN, dH, dh_T, dA, dGh, dh0, n_threads, *_given(batch_sizes))
        if batch_sizes is not None and X.ndim == 2:  # token ids: dA is zero at padded steps
            (dWh,), (dbx, dbh) = valid_steps.valid_grads(batch_sizes, (dA, dGh, H[:-1]),
                                                         ((1, 2),), (0, 1))
            return ({"Wx": self.input_weight_grad(dA, X), "Wh": dWh, "bx": dbx, "bh": dbh},
                    (dh0,), None)
        if batch_sizes is not None:
            (dWx, dWh), (dbx, dbh) = valid_steps.valid_grads(batch_sizes, (dA, dGh, X, H[:-1]),
                                                  ((0, 2), (1, 3)), (0, 1))
            dX = valid_steps.rows_times(dA, p["Wx"], batch_sizes) if need_dX else None
            return {"Wx": dWx, "Wh": dWh, "bx": dbx, "bh": dbh}, (dh0,), dX
        dA2, dGh2 = _flat(dA), _flat(dGh)
        grads = {
            "Wx": self.input_weight_grad(dA, X),
            "Wh": dGh2.T @ _flat(H[:-1]),
            "bx": dA2.sum(axis=0),
            "bh": dGh2.sum(axis=0),
        }
        return grads, (dh0,), self.input_grads(dA, p["Wx"], need_dX)


def make_cell(name, input_size, hidden_size):
    if name in _ACT:
        return ElmanCell(name, input_size, hidden_size)
    if name == "lstm":
        return LSTMCell(name, input_size, hidden_size)
    if name == "gru":
        return GRUCell(name, input_size, hidden_size)
    raise ValueError(f"unknown cell {name!r}; expected one of {', '.join(repr(c) for c in CELLS)}")
