"""Training: `fit` (minibatches, epochs or iterations, validation, metrics, callbacks, a progress
bar) over fixed or variable lengths, with full or truncated BPTT.

fit only orders the work: it checks the data once (fastbptt.calls), cuts minibatches, and hands each
one to fastbptt.tbptt.windows, which runs the model's one forward and backward pass
(fastbptt.graph) per update; see docs/architecture.md. Truncated BPTT, the chunked evaluation,
metrics, callbacks and the History live in their own modules and are re-exported here.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from ._checks import nonneg_float, positive_int
from ._threads import blas_single_in
from .callbacks import Callback, EarlyStopping, StopTraining, as_callbacks, run_hook
from .calls import check_call
from .history import History, Progress
from .metrics import METRICS, Metric
from .optim import clip_by_norm, clip_by_value, global_norm, make_optimizer
from .tbptt import Chunk, check_trainable, evaluate, evaluate_call, parse_tbptt, truncated_bptt
from .tbptt import windows as _windows

if TYPE_CHECKING:
    from .model import RNN
    from .optim import Optimizer

__all__ = ["METRICS", "Callback", "Chunk", "EarlyStopping", "History", "Metric", "Shard",
           "StopTraining", "carried_state", "evaluate", "fit", "parse_tbptt", "reset_state",
           "truncated_bptt"]

# state carried across fit calls for stateful=True, keyed weakly by model (see reset_state)
_CARRIED = weakref.WeakKeyDictionary()


def reset_state(model: RNN) -> None:
    """Forget the state that ``fit(stateful=True)`` carries across calls."""
    _CARRIED.pop(model, None)


def carried_state(model: RNN) -> tuple[np.ndarray, ...] | None:
    """The state ``fit(stateful=True)`` will start from next, ``(h,)`` or ``(h, c)``, or None."""
    state = _CARRIED.get(model)
    return None if state is None else tuple(s.copy() for s in state)


class _Settings:
    """fit's options, checked."""

    def __init__(self, m, N, T, epochs, iterations, batch_size, opt, clip_norm, clip_value, tbptt,
                 metric, callbacks, log_every):
        if epochs is not None and iterations is not None:
            raise ValueError("give epochs or iterations, not both")
        self.epochs = positive_int("epochs", epochs, allow_none=True)
        self.iterations = positive_int("iterations", iterations, allow_none=True)
        if self.epochs is None and self.iterations is None:
            self.epochs = 1
        self.opt = opt
        self.clip_norm = None if clip_norm is None else nonneg_float("clip_norm", clip_norm)
        self.clip_value = None if clip_value is None else nonneg_float("clip_value", clip_value)
        self.bs = N if batch_size is None else min(positive_int("batch_size", batch_size), N)
        self.k1, self.k2 = parse_tbptt(tbptt, T)
        self.tally = None if metric is None else Metric(metric, m)
        self.callbacks = as_callbacks(callbacks)
        self.log_every = positive_int("log_every", log_every, allow_none=True)
        n_batches = math.ceil(N / self.bs)
        # updates per epoch (fewer when a chunk has no step that counts; see tbptt)
        self.per_epoch = n_batches * (math.ceil(T / self.k1) if m.target == "all" else 1)
        self.total = self.iterations or self.epochs * self.per_epoch


def _start_state(m, data, bs, stateful, h0, c0):
    """The initial states of all N sequences: given, carried from a stateful fit, or zeros."""
    if not stateful:
        return data.state0
    N = data.B
    if bs < N:
        raise ValueError(f"stateful=True carries each sequence's state into the next call, so "
                         f"all {N} sequences must be in one minibatch (batch_size None or >= {N})")
    carried = _CARRIED.get(m)
    if carried is not None and h0 is None and c0 is None:
        if carried[0].shape[-2] != N:
            raise ValueError(f"the carried state is for a batch of {carried[0].shape[-2]}, this "
                             f"data has {N}; call fastbptt.train.reset_state(model) first")
        return carried
    return data.state0


def _validation(m, validation):
    """(X_val, Y_val) or (X_val, Y_val, lengths_val), checked and sorted, or None."""
    if validation is None:
        return None
    if not isinstance(validation, (tuple, list)) or len(validation) not in (2, 3):
        raise ValueError("validation must be a pair (X_val, Y_val) or a triple "
                         "(X_val, Y_val, lengths_val)")
    Xv, Yv, *Lv = validation
    return check_call(m, Xv, Yv, lengths=Lv[0] if Lv else None, lengths_name="lengths_val").sort()


class Shard:
    """fit's one extension point, for training across processes.

    `fastbptt.distributed` implements it over MPI. The default is one process: every row, nothing
    to combine. Every process offers a chunk for every window, even one in which its own rows have
    no step that counts (items 0, zero gradient); a combined chunk with items 0 means no process
    had one, and no update is made.

    Methods
    -------
    rows(idx, N)
        This process's rows of a minibatch, given the minibatch's row indices (None: all N rows,
        in order); returns indices into the data, or None for all N rows.
    reduce(chunk, divisor)
        One update's `Chunk` and loss divisor (what reduction="mean" divided the chunk's loss by)
        combined over the processes, before the gradient is checked, clipped and applied; returns
        the combined (chunk, divisor).
    metric(tally)
        The training `Metric`, counted over the processes.
    """

    def rows(self, idx: np.ndarray | None, N: int) -> np.ndarray | None:
        return idx

    def reduce(self, chunk: Chunk, divisor: float) -> tuple[Chunk, float]:
        return chunk, divisor

    def metric(self, tally: Metric) -> Metric:
        return tally


_ONE_PROCESS = Shard()


def _minibatches(data, bs, order, shard):
    """The minibatches of one epoch as sorted Calls: rows in `order` (None: as given), bs each,
    of which this process takes the shard's rows."""
    N = data.B
    for b0 in range(0, N, bs):
        idx = None
        if bs < N:
            idx = order[b0:b0 + bs] if order is not None else np.arange(b0, min(b0 + bs, N))
        idx = shard.rows(idx, N)
        yield data.sort() if idx is None else data.rows(idx).sort()


@blas_single_in
def fit(model: RNN, X: ArrayLike, Y: ArrayLike, *, lengths: ArrayLike | None = None,
        epochs: int | None = None, iterations: int | None = None, batch_size: int | None = None,
        optimizer: str | Optimizer = "sgd", lr: float | None = None,
        schedule: str | Callable | None = None, clip_norm: float | None = None,
        clip_value: float | None = None, shuffle: bool = True, seed: int = 0,
        validation: tuple | None = None, metric: str | Callable | None = None,
        tbptt: int | tuple[int, int] | None = None, stateful: bool = False,
        h0: ArrayLike | None = None, c0: ArrayLike | None = None, progress: bool = True,
        callbacks: Iterable = (), log_every: int | None = None,
        weight_decay: float | None = None, shard: Shard | None = None) -> History:
    """Train `model` in place on inputs X and targets Y; return a History.

    ``RNN.fit(X, Y, ...)`` is this function with the model given.

    Parameters
    ----------
    model : RNN
        The model; its parameters are updated in place.
    X : array_like
        Inputs (T, N, I), (N, T, I) for a batch-first model, (T, I) for one sequence; token ids
        (T, N) / (N, T) / (T,) for ``input="tokens"``.
    Y : array_like
        Targets in the layout of X (see `RNN.loss_and_grad`).
    lengths : array_like of int, shape (N,), optional
        Each sequence's length; padded steps carry no loss and no gradient, and
        reduction="mean" averages over the valid steps of each minibatch.
    epochs, iterations : int, optional
        Passes over the data, or parameter updates (one per minibatch, or per chunk with tbptt);
        give at most one; neither means one epoch.
    batch_size : int, optional
        Minibatches over the batch axis N (None: all N); shuffled each epoch with `seed` when
        `shuffle` and there is more than one minibatch.
    optimizer : str or Optimizer, default "sgd"
        "sgd" | "momentum" | "nesterov" | "adagrad" | "rmsprop" | "adam" | "adamw" (with `lr`,
        `schedule`, `weight_decay`), or an Optimizer instance (which keeps its state across calls);
        see fastbptt.optim.
    lr : float, optional
        Learning rate (default: the optimizer's own).
    schedule : str or callable, optional
        Learning-rate schedule; see fastbptt.optim.
    clip_norm, clip_value : float, optional
        Clip every gradient entry to ``[-clip_value, clip_value]``, then the global norm to
        `clip_norm`.
    shuffle : bool, default True
        Shuffle the sequences into new minibatches every epoch.
    seed : int, default 0
        Seeds the shuffling.
    validation : tuple, optional
        ``(X_val, Y_val)`` or ``(X_val, Y_val, lengths_val)``: loss (and metric) after every epoch,
        from zero states, forwarded tbptt's k1 steps at a time.
    metric : str or callable, optional
        "accuracy" | "bit_accuracy" | "sequence_accuracy" | ``callable(y_pred, y_true) -> float``.
    tbptt : int or (int, int), optional
        None: full BPTT; k or (k1, k2): truncated BPTT, an update every k1 steps backpropagated
        through k2 steps; see fastbptt.tbptt.
    stateful : bool, default False
        Start from the state the previous stateful fit left (per sequence; needs every sequence in
        one minibatch) and carry it across epochs; ``reset_state(model)`` forgets it.
    h0, c0 : array_like, optional
        Initial states (instead of zeros or the carried state), shaped as `RNN.forward` takes
        them.
    progress : bool, default True
        A tqdm bar (a plain line every `log_every` steps when tqdm is missing); False for none.
    callbacks : iterable, default ()
        Callables ``(epoch, logs, model)`` or Callback objects; returning True or raising
        StopTraining stops.
    log_every : int, optional
        Steps between progress lines without tqdm.
    weight_decay : float, optional
        Decoupled weight decay (as AdamW) for the optimizers that take it.
    shard : Shard, optional
        This process's part of the data, for fastbptt.distributed (None: one process).

    Returns
    -------
    History
        The per-step and per-epoch logs.

    Raises
    ------
    FloatingPointError
        When a loss, gradient or update is not finite, naming the step; the model keeps the
        parameters it had before that step (the error carries ``.history``).
    """
    check_trainable(model)
    data = check_call(model, X, Y, h0, c0, lengths)
    cfg = _Settings(model, data.B, data.T, epochs, iterations, batch_size,
                    make_optimizer(optimizer, lr=lr, schedule=schedule, weight_decay=weight_decay),
                    clip_norm, clip_value, tbptt, metric, callbacks, log_every)
    data.state0 = _start_state(model, data, cfg.bs, stateful, h0, c0)
    cfg.shard = _ONE_PROCESS if shard is None else shard
    if cfg.tally is not None:
        cfg.tally = cfg.shard.metric(cfg.tally)
    val = _validation(model, validation)
    history = History(None if cfg.tally is None else cfg.tally.name, validation=val is not None,
                      config={"epochs": cfg.epochs, "iterations": cfg.iterations,
                              "batch_size": cfg.bs, "optimizer": cfg.opt.get_config(),
                              "clip_norm": cfg.clip_norm, "clip_value": cfg.clip_value,
                              "shuffle": shuffle, "seed": seed, "tbptt": [cfg.k1, cfg.k2],
                              "stateful": bool(stateful)})
    history.optimizer = cfg.opt
    val_chunk = None if val is None else (cfg.k1 if tbptt is not None else val.T)
    val_tally = None if (metric is None or val is None) else Metric(metric, model)
    rng = np.random.default_rng(seed)
    bar = Progress(progress, cfg.total, cfg.log_every)
    step, epoch, logs = 0, 0, {}
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # checked explicitly
            while cfg.epochs is None or epoch < cfg.epochs:
                epoch += 1
                started = time.perf_counter()
                order = rng.permutation(data.B) if (shuffle and cfg.bs < data.B) else None
                step, logs, stop = _epoch(model, cfg, data, order, epoch, step, stateful, history,
                                          bar)
                if val is not None:
                    logs["val_loss"] = _validate(model, val, val_chunk, val_tally)
                    logs["val_metric"] = None if val_tally is None else val_tally.value()
                logs["seconds"] = time.perf_counter() - started
                history._append(history.epochs, logs)
                bar.epoch(logs)
                if stop or run_hook(cfg.callbacks, "on_epoch", epoch, logs, model, history) \
                        or step == cfg.iterations or history.stopped_early:
                    break
    finally:
        bar.close(logs)
    for cb in cfg.callbacks:
        cb.on_end(history, model)
    return history


def _validate(m, val, chunk, tally):
    if tally is not None:
        tally.reset()
    return evaluate_call(m, val, chunk, tally)


def _epoch(m, cfg, data, order, epoch, step, stateful, history, bar):
    """One pass over the minibatches: (last step, the epoch's logs, whether to stop now)."""
    mean = m.reduction == "mean"
    raw, items, stop = 0.0, 0, False
    if cfg.tally is not None:
        cfg.tally.reset()
    logs = {}
    for batch in _minibatches(data, cfg.bs, order, cfg.shard):
        chunks = _windows(m, batch, cfg.k1, cfg.k2, keep_empty=cfg.shard is not _ONE_PROCESS)
        while not stop:
            try:
                chunk = next(chunks, None)
            except FloatingPointError as exc:
                raise _diverged(step + 1, epoch, str(exc), history) from exc
            if chunk is None:
                break
            chunk, _ = cfg.shard.reduce(chunk, chunk.divisor)
            if not chunk.items:  # no process has a step that counts in this window
                continue
            step += 1
            step_logs = _train_step(m, cfg, chunk, batch.B, step, epoch, history)
            raw += chunk.loss * chunk.divisor if mean else chunk.loss
            items += chunk.items
            history._append(history.steps, step_logs)
            logs = {"epoch": epoch, "step": step, "loss": raw / items if mean else raw,
                    "metric": step_logs.get("metric")}
            bar.step(step, logs)
            if stateful:
                _CARRIED[m] = chunk.state
            stop = run_hook(cfg.callbacks, "on_step", step, step_logs, m, history) \
                or step == cfg.iterations
        if cfg.tally is not None:
            cfg.tally.end_batch()
        if stateful:
            data.state0 = _CARRIED[m]
        if stop:
            break
    logs = {"epoch": epoch, "step": step, "loss": (raw / items if mean else raw) if items else None,
            "metric": None if cfg.tally is None else cfg.tally.value()}
    return step, logs, stop


def _train_step(m, cfg, chunk, batch, step, epoch, history):
    """Check, clip and apply one chunk's gradient; return the step's logs."""
    grads = chunk.grads
    if not math.isfinite(chunk.loss):
        raise _diverged(step, epoch, f"the loss is {chunk.loss}", history)
    norm = global_norm(grads)  # NaN or Inf exactly when some entry is
    if not math.isfinite(norm):
        bad = sorted(k for k, g in grads.items() if not np.isfinite(g).all())
        why = f"non-finite gradient for {bad}" if bad else f"the gradient norm overflows ({norm})"
        raise _diverged(step, epoch, why, history)
    if cfg.clip_value is not None:
        grads = clip_by_value(grads, cfg.clip_value)
    if cfg.clip_norm is not None:
        grads = clip_by_norm(grads, cfg.clip_norm, None if cfg.clip_value is not None else norm)
    # the metric sees the outputs of the parameters that made this chunk's loss, before the update
    value = None
    if cfg.tally is not None:
        Y_hat = m.head.forward(m.params, chunk.seen, chunk.logits)
        value = cfg.tally.add(Y_hat, chunk.targets, chunk.mask, chunk.picks, batch)
    try:
        lr = cfg.opt.step(m.params, grads)
    except FloatingPointError as exc:
        raise _diverged(step, epoch, str(exc), history) from exc
    # the loss as the model's reduction would give it for this chunk's data alone
    loss = chunk.loss * (chunk.divisor / chunk.items) if m.reduction == "mean" else chunk.loss
    return {"step": step, "epoch": epoch, "loss": loss, "lr": lr, "grad_norm": norm,
            "metric": value}


def _diverged(step, epoch, why, history):
    err = FloatingPointError(f"training diverged at step {step} (epoch {epoch}): {why}; the model "
                             "keeps the parameters from before this step")
    err.history = history
    return err
