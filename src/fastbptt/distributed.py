"""Data-parallel training over MPI: `fit(model, X, Y, comm=None, **fit_kwargs)` under
`mpiexec -n N python -m mpi4py script.py`.

Every rank holds the whole (X, Y) and the same model. Rank 0's parameters are broadcast first; then
every minibatch is split into N contiguous parts (sizes differing by at most one), each rank runs
forward and backward on its part, and one reduction per update combines the ranks' losses and
gradients, weighted by their share of the loss divisor, so the result is the whole minibatch's
gradient. Every rank then applies the same clipping and optimizer step. It is fastbptt.train.fit
itself that runs, with a `_MPIShard` (a fastbptt.train.Shard) choosing the rows and reducing.

One update, one round of two collectives on the communicator:

1. an Allgather of a few numbers per rank: its status (ok or failed), the kind of round and the
   update's number (to catch ranks out of step), its loss divisor and items, and every
   `check_every` updates a checksum of its parameters. A failed status makes every rank raise the
   failing rank's error (its text is broadcast), so an exception on one rank never hangs the rest;
2. a ring allreduce (reduce-scatter, then allgather, by Sendrecv) of one contiguous buffer holding
   the weighted loss and every gradient. Each segment is summed in a fixed order round the ring, so
   runs with the same number of ranks are bitwise repeatable, whatever the MPI library's own
   Allreduce would do; its cost is the textbook 2 (N - 1) messages of 1/N of the buffer.
"""

import os
import time
import zlib

import numpy as np

from . import train as _train
from ._checks import positive_int
from ._threads import _blas_pools
from .optim import make_optimizer

_MPI_HINT = "pip install 'fastbptt[mpi]' (mpi4py and the mpich wheel, which provides mpiexec)"

# the kinds of rounds; a rank in a different kind of round than the others is out of step
_UPDATE, _METRIC, _START, _END = 1.0, 2.0, 3.0, 4.0
# per rank in a round's header: status, kind, update number, a, b, c, d, parameter checksum
_HEADER = 8


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(f"fastbptt.distributed needs mpi4py and an MPI library: {_MPI_HINT}") \
            from exc
    return MPI


class RankFailed(RuntimeError):
    """An error on a rank of a distributed fit, of a type not among the builtin ones re-raised as
    such (ValueError, TypeError, FloatingPointError, ...). `.rank` is the failing rank."""


_REBUILT = {cls.__name__: cls for cls in (ValueError, TypeError, FloatingPointError,
                                          OverflowError, MemoryError, OSError, ImportError,
                                          RuntimeError)}


def _collective(err):
    """Mark an error that every rank raises at the same round (no further round announces it)."""
    err.fastbptt_every_rank = True
    return err


def _params_checksum(model):
    """Adler-32 of every parameter's bytes, in name order (exact in a float64)."""
    value = 1
    for name in sorted(model.params):
        value = zlib.adler32(np.ascontiguousarray(model.params[name]).data, value)
    return float(value)


def _split(n, size, rank):
    """[lo, hi) of rank's part when n items are split into `size` contiguous near-equal parts."""
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


def ring_allreduce(comm, buf, scratch=None):
    """Sum the ranks' arrays in place, the same on every rank and bitwise repeatable.

    A reduce-scatter, then an allgather, round the ring of ranks by Sendrecv, with `buf` cut into
    one segment per rank. Each segment is summed in a fixed order (starting from one rank, each
    next rank adds its own), whatever the MPI library would do: 2 (size - 1) messages of 1/size of
    the buffer per rank.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
    buf : ndarray
        1-D, contiguous, the same length and dtype on every rank; overwritten with the sum.
    scratch : ndarray, optional
        At least ``len(buf) // size + 1`` elements of buf's dtype, to reuse between calls.

    Returns
    -------
    ndarray
        `buf`.
    """
    size, rank = comm.Get_size(), comm.Get_rank()
    if size == 1:
        return buf
    bounds = [_split(len(buf), size, r) for r in range(size)]
    if scratch is None:
        scratch = np.empty(len(buf) // size + 1, dtype=buf.dtype)
    right, left = (rank + 1) % size, (rank - 1) % size
    for step in range(size - 1):  # after it, rank holds segment (rank + 1) % size summed
        s_lo, s_hi = bounds[(rank - step) % size]
        r_lo, r_hi = bounds[(rank - step - 1) % size]
        got = scratch[:r_hi - r_lo]
        comm.Sendrecv(buf[s_lo:s_hi], dest=right, recvbuf=got, source=left)
        buf[r_lo:r_hi] += got
    for step in range(size - 1):
        s_lo, s_hi = bounds[(rank + 1 - step) % size]
        r_lo, r_hi = bounds[(rank - step) % size]
        comm.Sendrecv(buf[s_lo:s_hi], dest=right, recvbuf=buf[r_lo:r_hi], source=left)
    return buf


class _MPIShard(_train.Shard):
    """fit's Shard over an MPI communicator: this rank's rows, and the rounds described above."""

    def __init__(self, comm, model, check_every):
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.model = model
        self.mean = model.reduction == "mean"
        self.check_every = check_every
        self.update = 0
        self.comm_seconds = 0.0
        self.head = np.zeros((self.size, _HEADER))
        self.layout, offset = [], 1  # entry 0 holds the weighted loss
        for name in sorted(model.params):
            shape = model.params[name].shape
            n = int(np.prod(shape))
            self.layout.append((name, offset, n, shape))
            offset += n
        self.buffer = np.empty(offset, dtype=model.dtype)
        self.incoming = np.empty(offset // self.size + 1, dtype=model.dtype)

    # -- the rounds --------------------------------------------------------------------------------

    def round(self, kind, values=(), check=False, failure=None):
        """One header round: Allgather every rank's header row, then raise on every rank if one
        failed, ran out of step or (when checked) holds different parameters. Returns the rows."""
        mine = np.zeros(_HEADER)
        mine[0] = 0.0 if failure is None else 1.0
        mine[1], mine[2] = kind, self.update
        mine[3:3 + len(values)] = values
        if check and failure is None:
            mine[7] = _params_checksum(self.model)
        started = time.perf_counter()
        self.comm.Allgather(mine, self.head)
        if kind in (_UPDATE, _METRIC):  # the cost of training, not of starting and ending
            self.comm_seconds += time.perf_counter() - started
        head = self.head
        if head[:, 0].any():
            self._raise_failure(head, failure)
        if not ((head[:, 1] == kind).all() and (head[:, 2] == self.update).all()):
            where = [(r, int(k), int(u)) for r, (k, u) in enumerate(head[:, 1:3])]
            raise _collective(RuntimeError(
                f"the ranks are out of step (rank, kind of round, update): {where}; a callback "
                "that stops training on some ranks only does this"))
        if check and len(set(head[:, 7])) > 1:
            raise _collective(RuntimeError(
                f"the ranks' parameters differ at update {self.update} (checksums "
                f"{[int(c) for c in head[:, 7]]}): every rank must run the same code on the same "
                "data"))
        return head

    def _raise_failure(self, head, failure):
        failed = [r for r in range(self.size) if head[r, 0]]
        root = failed[0]
        text = None
        if self.rank == root:
            text = (type(failure).__name__, str(failure))
        kind, message = self.comm.bcast(text, root=root)
        who = "every rank" if len(failed) == self.size > 1 else f"rank {root} of {self.size}"
        cls = _REBUILT.get(kind, RankFailed)
        shown = message if cls is not RankFailed else f"{kind}: {message}"
        err = cls(f"{who}: {shown}")
        err.rank = root
        err.history = getattr(failure, "history", None)
        raise _collective(err) from failure

    def fail(self, failure):
        """Take part in the round the other ranks are in, as failed: every rank raises."""
        self.round(_END, failure=failure)

    def _allreduce(self, buf):
        started = time.perf_counter()
        ring_allreduce(self.comm, buf, self.incoming)
        self.comm_seconds += time.perf_counter() - started

    # -- the Shard interface -----------------------------------------------------------------------

    def rows(self, idx, N):
        n = N if idx is None else len(idx)
        if n < self.size:
            raise ValueError(f"a minibatch of {n} sequences cannot be split over {self.size} "
                             "ranks: give batch_size (and the last minibatch, N % batch_size) "
                             "at least one sequence per rank")
        lo, hi = _split(n, self.size, self.rank)
        return np.arange(lo, hi) if idx is None else idx[lo:hi]

    def reduce(self, chunk, divisor):
        self.update += 1
        check = self.update % self.check_every == 0
        head = self.round(_UPDATE, (divisor, chunk.items), check=check)
        total = float(head[:, 3].sum())
        if not head[:, 4].any():  # no rank has a step that counts in this chunk: no update
            return chunk, total
        weight = divisor / total if self.mean else 1.0
        buf = self.buffer
        buf[0] = chunk.loss * weight
        for name, offset, n, _ in self.layout:
            np.multiply(chunk.grads[name].reshape(-1), weight, out=buf[offset:offset + n])
        self._allreduce(buf)
        grads = {name: buf[offset:offset + n].reshape(shape)
                 for name, offset, n, shape in self.layout}
        # this rank's outputs and states, the whole minibatch's loss, gradient and counts
        fields = {k: getattr(chunk, k) for k in type(chunk).__slots__}
        fields.update(loss=float(buf[0]), grads=grads, items=int(head[:, 4].sum()))
        if "divisor" in fields:
            fields["divisor"] = total
        return type(chunk)(**fields), total

    def metric(self, tally):
        return _ShardMetric(tally, self)


class _ShardMetric:
    """A Metric counted over the ranks: each call's counts are summed over the ranks in a round.
    Built-in metrics count exactly as one process would; a callable metric is averaged over the
    ranks' rows, weighted by their steps x sequences."""

    def __init__(self, inner, shard):
        self.inner = inner
        self.shard = shard
        self.name = inner.name

    def reset(self):
        self.inner.reset()

    def value(self):
        return self.inner.value()

    def _combine(self, num0, den0, extra=(0.0, 0.0)):
        inner = self.inner
        head = self.shard.round(_METRIC, (inner.num - num0, inner.den - den0) + tuple(extra))
        sums = head[:, 3:7].sum(axis=0)
        inner.num, inner.den = num0 + float(sums[0]), den0 + float(sums[1])
        return sums

    def add(self, Y_hat, Y, *more):
        inner = self.inner
        num0, den0 = inner.num, inner.den
        value = inner.add(Y_hat, Y, *more)
        rows = Y_hat.shape[1]
        sums = self._combine(num0, den0, (value * rows, rows))
        if self.name == "sequence_accuracy":
            return float(sums[2] / sums[3])
        return float(sums[0] / sums[1])

    def end_batch(self):
        if self.name == "sequence_accuracy":  # the only metric that settles at a batch's end
            num0, den0 = self.inner.num, self.inner.den
            self.inner.end_batch()
            self._combine(num0, den0)


class _Checkpoint(_train.Callback):
    """Rank 0's: the model and the optimizer's state, atomically, every `every` epochs."""

    def __init__(self, path, every, optimizer):
        self.path = os.fspath(path)
        self.every = every
        self.optimizer = optimizer

    def on_epoch(self, epoch, logs, model):
        if epoch % self.every == 0:
            model.save(self.path, optimizer=self.optimizer)

    def on_end(self, history, model):
        model.save(self.path, optimizer=self.optimizer)


def _threads_per_rank(MPI, comm):
    """Cores for each rank of this node: the cores this process may run on, shared by the node's
    ranks (at least one)."""
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        on_node = node.Get_size()
    finally:
        node.Free()
    cores = os.cpu_count() or 1
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return max(1, min(allowed, cores // on_node))


def _cap_pools(threads):
    """Lower the BLAS and OpenMP pools that have more than `threads` threads to `threads` (never
    raise one, e.g. one set by OMP_NUM_THREADS); the limits to restore after."""
    pools = _blas_pools()
    if pools is None:
        return []
    over = sorted({p["user_api"] for p in pools.info() if p["num_threads"] > threads})
    return [pools.limit(limits=threads, user_api=api) for api in over]


def _start(shard, check_every, checkpoint_every, fit_kwargs):
    """The first round: every rank checks its arguments and learns of any rank's failure, and the
    ranks' parameter layouts must agree. Returns the one optimizer object (taken out of
    fit_kwargs, so that rank 0's checkpoints hold its state) and checkpoint_every, checked."""
    failure = opt = None
    try:
        check_every = positive_int("check_every", check_every)
        checkpoint_every = positive_int("checkpoint_every", checkpoint_every)
        if fit_kwargs.get("stateful"):
            raise ValueError("stateful=True is not supported by fastbptt.distributed.fit: each "
                             "rank would carry only its own rows' states across calls")
        opt = make_optimizer(fit_kwargs.pop("optimizer", "sgd"), lr=fit_kwargs.pop("lr", None),
                             schedule=fit_kwargs.pop("schedule", None),
                             weight_decay=fit_kwargs.pop("weight_decay", None))
    except Exception as exc:  # every rank must learn of it in the first round
        failure = exc
    shard.round(_START, (float(len(shard.buffer)), float(shard.buffer.dtype.itemsize)),
                failure=failure)
    head = shard.head
    if len(set(head[:, 3])) > 1 or len(set(head[:, 4])) > 1:
        raise ValueError(f"the ranks' models differ: parameter counts {head[:, 3].tolist()}, "
                         f"bytes per value {head[:, 4].tolist()}")
    shard.check_every = check_every
    return opt, checkpoint_every


def _share_rank0_params(comm, model, shard):
    """Every rank starts from rank 0's parameters."""
    shard.buffer[1:] = np.concatenate([model.params[name].reshape(-1)
                                       for name, *_ in shard.layout])
    comm.Bcast(shard.buffer, root=0)
    for name, offset, n, shape in shard.layout:
        model.params[name] = shard.buffer[offset:offset + n].reshape(shape)


def fit(model, X, Y, comm=None, *, checkpoint=None, checkpoint_every=1, check_every=100,
        **fit_kwargs):
    """Train `model` on (X, Y) over the ranks of an MPI communicator, as fastbptt.train.fit would
    on one process, and return the History.

    Call it on every rank with the same model configuration and the same data, under
    ``mpiexec -n N python -m mpi4py script.py``. Rank 0's parameters are broadcast first; each rank
    trains on its part of every minibatch (see the module docstring). Rank 0 alone shows progress.
    Validation runs on every rank over the whole validation set, so that callbacks see the same
    logs everywhere and stop together. Each rank runs with at most cores / (ranks on its node)
    threads, for the kernels (``n_threads``), BLAS and OpenMP, during the call.

    Parameters
    ----------
    model : RNN
        Trained in place; the same configuration on every rank.
    X, Y : ndarray
        The whole data set, the same on every rank, as fit takes it.
    comm : mpi4py.MPI.Comm, optional
        The ranks that train together (default ``MPI.COMM_WORLD``).
    checkpoint : str or path, optional
        Rank 0 writes the model and the optimizer's state there (atomically) every
        `checkpoint_every` epochs and at the end; ``fastbptt.load(path, with_optimizer=True)``
        reads it back.
    checkpoint_every : int, default 1
        Epochs between checkpoints.
    check_every : int, default 100
        Updates between the comparisons of a checksum of every rank's parameters.
    **fit_kwargs
        fastbptt.train.fit's keyword arguments: optimizer, lr, schedule, weight_decay, clip_norm,
        clip_value, tbptt, lengths, validation, metric, callbacks, ... (stateful=True is not
        supported: each rank holds only its own sequences' states).

    Returns
    -------
    History
        The same on every rank; ``config`` also holds "ranks" and "threads_per_rank", and
        ``communication_seconds`` the time spent in the updates' rounds.

    Raises
    ------
    ImportError
        Without mpi4py (the ``mpi`` extra).
    Exception
        An exception on any rank is raised on every rank, prefixed with the failing rank ("rank 1
        of 4: ..."), as the same builtin type (ValueError, FloatingPointError, ...) or RankFailed.
    """
    MPI = _mpi()
    comm = MPI.COMM_WORLD if comm is None else comm
    if "shard" in fit_kwargs:
        raise TypeError("fastbptt.distributed.fit sets fit's shard itself; do not pass one")
    shard = _MPIShard(comm, model, 1)
    opt, checkpoint_every = _start(shard, check_every, checkpoint_every, fit_kwargs)
    _share_rank0_params(comm, model, shard)

    callbacks = fit_kwargs.pop("callbacks", None) or ()
    callbacks = list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
    if checkpoint is not None and shard.rank == 0:
        callbacks.append(_Checkpoint(checkpoint, checkpoint_every, opt))
    if shard.rank != 0:
        fit_kwargs["progress"] = False
    threads = _threads_per_rank(MPI, comm)
    saved_threads = model.n_threads
    model.n_threads = min(model.n_threads, threads)
    limits = _cap_pools(threads)
    try:
        try:
            history = _train.fit(model, X, Y, optimizer=opt, callbacks=callbacks, shard=shard,
                                 **fit_kwargs)
        except Exception as exc:
            if not getattr(exc, "fastbptt_every_rank", False):
                shard.fail(exc)  # raises on every rank
            raise
        shard.round(_END, check=True)
    finally:
        model.n_threads = saved_threads
        for limit in limits:
            limit.restore_original_limits()
    history.config.update(ranks=shard.size, threads_per_rank=threads)
    # seconds in the rounds of the updates (waiting for the slowest rank included)
    history.communication_seconds = shard.comm_seconds
    return history
