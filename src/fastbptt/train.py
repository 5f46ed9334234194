"""Training: `fit` (minibatches, epochs or iterations, validation, metrics, callbacks, a progress
bar), truncated backpropagation through time, and the `History` that fit returns.

Truncated BPTT, `tbptt=(k1, k2)` (Williams & Peng 1990): every k1 time steps the parameters are
updated with the gradient of the losses at those k1 new steps, backpropagated through the last k2
steps (k2 >= k1). The state is carried forward across chunks, detached: the window's first state is
a constant. Each window is forwarded again from its first state with the current parameters (k2 / k1
forward work), and the input projection is formed one window at a time, so memory is O(k2 * B * H)
for any length T. `tbptt=k` means (k, k), the usual chunked TBPTT; k1 = k2 = T (or tbptt=None) is
full BPTT, bitwise.

Every chunk's loss is divided by the divisor of the whole sequence (T * B for reduction="mean"), so
the chunk losses of one pass add up to the sequence's loss and k1 = k2 = T gives exactly the
full-BPTT step. The parameters update after every chunk that has a loss (with target="last" only the
chunk that holds the last step has one; the others only carry the state).
"""

import math
import sys
import time
import weakref

import numpy as np

from ._checks import positive_int
from ._threads import blas_single_in
from .heads import HeadGrad
from .optim import _nonneg_float, clip_by_norm, clip_by_value, global_norm, make_optimizer

METRICS = ("accuracy", "bit_accuracy", "sequence_accuracy")

# state carried across fit calls for stateful=True, keyed weakly by model (see reset_state)
_CARRIED = weakref.WeakKeyDictionary()


class StopTraining(Exception):
    """Raise from a callback to stop training after the current step or epoch."""


# -- truncated BPTT --------------------------------------------------------------------------------

class Chunk:
    """One update's worth of truncated BPTT: the new steps [start, stop), backpropagated from
    window_start; `loss` (scaled by the whole sequence's divisor) and `grads` for every parameter;
    the states the head saw (`seen`), their logits when the recurrent kernel formed them
    (`logits`, else None) and their targets; `items` = seen steps x batch; `state` at `stop`."""

    __slots__ = ("start", "stop", "window_start", "loss", "grads", "seen", "logits", "targets",
                 "items", "state")

    def __init__(self, **kw):
        for key, value in kw.items():
            setattr(self, key, value)

    def __repr__(self):
        return (f"Chunk(steps [{self.start}, {self.stop}), backprop from {self.window_start}, "
                f"loss={self.loss:.6g})")


def parse_tbptt(tbptt, T):
    """(k1, k2) from None (full BPTT), k, or (k1, k2); both capped at T."""
    if tbptt is None:
        return T, T
    if isinstance(tbptt, (int, np.integer)) and not isinstance(tbptt, bool):
        k1 = k2 = positive_int("tbptt", tbptt)
    else:
        try:
            k1, k2 = tbptt
        except (TypeError, ValueError) as exc:
            raise ValueError(f"tbptt must be None, a positive int k, or a pair (k1, k2); "
                             f"got {tbptt!r}") from exc
        k1 = positive_int("tbptt k1", k1)
        k2 = positive_int("tbptt k2", k2)
        if k2 < k1:
            raise ValueError(f"tbptt=(k1, k2) needs k2 >= k1 (every k1 steps, backpropagate the "
                             f"last k2 steps); got k1={k1}, k2={k2}")
    return min(k1, T), min(k2, T)


def _loss_divisor(model, T, B):
    """What reduction="mean" divides the whole sequence's summed loss by."""
    return T * B if model.target == "all" else B


def _chunks(m, X3, Y3, state0, k1, k2):
    """Yield a Chunk per update; reads m.params afresh for every window, so a caller that updates
    the parameters between chunks gets TBPTT as training runs it."""
    T, B, _ = X3.shape
    last_only = m.target == "last"
    divisor = _loss_divisor(m, T, B)
    scale = 1.0 if m.reduction == "sum" else 1.0 / divisor
    # the output layer's work in the kernels' loops, as loss_and_grad does it (bitwise the same)
    want_logits, defer = m._head_plan()
    state, w = state0, 0  # the detached state at the window's first step w
    for s in range(0, T, k1):
        e = min(s + k1, T)
        nxt = max(0, min(e + k1, T) - k2) if e < T else e  # where the next window starts
        cuts = [w] + ([nxt] if w < nxt < e else []) + [e]
        # forward the window in segments so the next window's first state is at a segment end
        segs, st = [], state
        carry = state if nxt == w else None
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            Xs = X3[a:b]
            # logits only where the head looks: the segment holds steps of [s, e)
            H, cache = m._run(Xs, st, logits=want_logits and b > s)
            st = m.cell.final_state(H, cache)
            segs.append((a, b, Xs, H, cache))
            if b == nxt:
                carry = st
        if last_only and e < T:  # no loss in this window: it only carries the state
            state, w = carry, nxt
            continue
        logits = None
        if last_only:
            seen, Yc = segs[-1][3][-1:], Y3
        else:
            pieces = [H[1 + max(a, s) - a: 1 + b - a] for a, b, _, H, _ in segs if b > s]
            seen = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
            Yc = Y3[s:e]
            formed = [(a, b, cache.logits) for a, b, _, _, cache in segs if b > s]
            if all(f is not None for _, _, f in formed):
                pieces = [f[max(a, s) - a: b - a] for a, b, f in formed]
                logits = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        loss, dseen, head_grads = m.head.loss_and_grad(m.params, seen, Yc, scale=scale,
                                                       unformed=True, defer_weight_grad=defer,
                                                       logits=logits)
        grads, dstate = None, None
        dV = getattr(dseen, "dV", None)  # the head's dV, which the backward passes fill
        for a, b, Xs, H, cache in reversed(segs):  # latest segment first, chaining dstate
            # the latest segment fills the head's dV itself, earlier ones with loss add theirs
            part = None if dV is None or b <= s else dV if b == e else np.empty_like(dV)
            dH = _segment_dH(m, dseen, a, b, s, T, part)
            g, dstate, _ = m._backward(Xs, H, cache, dH, dstate_T=dstate)
            if part is not None and part is not dV:
                dV += part
            grads = g if grads is None else {k: grads[k] + v for k, v in g.items()}
        grads.update(head_grads)
        segs = H = cache = Xs = None  # free the window before the caller runs the next one
        yield Chunk(start=s, stop=e, window_start=w, loss=loss, grads=grads, seen=seen,
                    logits=logits, targets=Yc, items=seen.shape[0] * B, state=st)
        state, w = carry, nxt


def _segment_dH(m, dseen, a, b, s, T, dV=None):
    """The loss gradient reaching the states of segment [a, b), in the form m._backward takes: an
    array, or a HeadGrad (its dO's steps of the segment, and dV for the segment to fill)."""
    if isinstance(dseen, HeadGrad):
        return HeadGrad(_segment_steps(m, dseen.dO, a, b, s, T), dseen.V, dV)
    return _segment_steps(m, dseen, a, b, s, T)


def _segment_steps(m, seen, a, b, s, T):
    """Segment [a, b)'s steps of an array over the seen steps (zero where the head saw none)."""
    if m.target == "last":
        return seen if b == T else np.zeros_like(seen)
    lo = max(a, s)
    if lo == a:
        return seen[a - s: b - s]
    part = np.zeros((b - a,) + seen.shape[1:], dtype=seen.dtype)
    if lo < b:
        part[lo - a:] = seen[lo - s: b - s]
    return part


def truncated_bptt(model, X, Y, tbptt, h0=None, c0=None):
    """Iterate the Chunks of one TBPTT pass over (X, Y) from (h0, c0) without updating anything.

    Update model.params between chunks to train as fit does; leave them to get, per chunk, the
    gradient TBPTT would use. `tbptt` is k, (k1, k2) or None (one chunk: full BPTT).
    """
    X3, single = model._inputs(X)
    T, B, _ = X3.shape
    Y3 = model.head.prepare_targets(Y, T, B, single, model.dtype)
    state0 = model._initial_state(B, single, h0, c0)
    k1, k2 = parse_tbptt(tbptt, T)
    _check_trainable(model)
    return _chunks(model, X3, Y3, state0, k1, k2)


def _check_trainable(model):
    if not model.cell.differentiable:
        raise ValueError(f"the {model.cell_name!r} cell is forward only: it cannot be trained by "
                         "gradient descent (set its weights by hand)")


def reset_state(model):
    """Forget the state that fit(stateful=True) carries across calls."""
    _CARRIED.pop(model, None)


def carried_state(model):
    """The state fit(stateful=True) will start from next, ((h,) or (h, c)), or None."""
    state = _CARRIED.get(model)
    return None if state is None else tuple(s.copy() for s in state)


# -- metrics ---------------------------------------------------------------------------------------

def _labels(model, Y_hat, Y):
    """Predicted and true labels: class ids (softmax) or bits (outputs and targets above 0.5)."""
    if model.output == "softmax":
        true = Y if Y.ndim == 2 else Y.argmax(axis=-1)
        return Y_hat.argmax(axis=-1), true
    return Y_hat > 0.5, Y > 0.5


class Metric:
    """A metric over chunks of minibatches. Built-in ones count errors exactly across chunks:
    "accuracy" (a step is right when its class, or every output bit, is right), "bit_accuracy" (the
    fraction of output bits right; = accuracy for softmax) and "sequence_accuracy" (the fraction of
    sequences right at every step). A callable metric(y_pred, y_true) -> float is averaged over
    chunks weighted by their steps x batch."""

    def __init__(self, spec, model):
        self.model = model
        if callable(spec):
            self.name = getattr(spec, "__name__", "metric")
            self.fn = spec
        elif spec in METRICS:
            self.name = spec
            self.fn = None
        else:
            raise ValueError(f"unknown metric {spec!r}; expected one of "
                             f"{', '.join(repr(n) for n in METRICS)} or a callable(y_pred, y_true)")
        self.reset()

    def reset(self):
        self.num = 0.0
        self.den = 0.0
        self.batch_wrong = None

    def errors(self, Y_hat, Y):
        """Wrong units per sequence (B,) and units per sequence for one chunk."""
        pred, true = _labels(self.model, Y_hat, Y)
        wrong = pred != true
        steps = wrong.shape[0]
        if self.name == "bit_accuracy":
            per_step_units = 1 if wrong.ndim == 2 else wrong.shape[-1]
            return wrong.reshape(steps, wrong.shape[1], -1).sum(axis=(0, 2)), steps * per_step_units
        if wrong.ndim == 3:
            wrong = wrong.any(axis=-1)
        return wrong.sum(axis=0), steps

    def add(self, Y_hat, Y):
        """Count one chunk (outputs and targets (T', B, ...)); return the metric over that chunk."""
        if self.fn is not None:
            value = float(self.fn(Y_hat, Y))
            items = Y_hat.shape[0] * Y_hat.shape[1]
            self.num += value * items
            self.den += items
            return value
        wrong, units = self.errors(Y_hat, Y)
        if self.name == "sequence_accuracy":
            self.batch_wrong = wrong if self.batch_wrong is None else self.batch_wrong + wrong
            return float(np.mean(wrong == 0))
        self.num += float(wrong.size * units - wrong.sum())
        self.den += wrong.size * units
        return 1.0 - float(wrong.sum()) / (wrong.size * units)

    def end_batch(self):
        """A sequence's chunks are all counted: settle sequence_accuracy."""
        if self.batch_wrong is not None:
            self.num += float(np.sum(self.batch_wrong == 0))
            self.den += self.batch_wrong.size
            self.batch_wrong = None

    def value(self):
        return None if self.den == 0 else self.num / self.den


def evaluate(model, X, Y, metric=None, chunk=None, h0=None, c0=None):
    """(loss, metric value or None) over (X, Y), forwarding `chunk` steps at a time (memory
    O(chunk)); chunk=None forwards the whole sequence at once."""
    X3, single = model._inputs(X)
    T, B, _ = X3.shape
    Y3 = model.head.prepare_targets(Y, T, B, single, model.dtype)
    state0 = model._initial_state(B, single, h0, c0)
    tally = None if metric is None else Metric(metric, model)
    chunk = T if chunk is None else positive_int("chunk", chunk)
    loss = _evaluate(model, X3, Y3, state0, chunk, tally)
    return loss, None if tally is None else tally.value()


def _evaluate(m, X3, Y3, state0, chunk, tally):
    T, B, _ = X3.shape
    last_only = m.target == "last"
    scale = 1.0 if m.reduction == "sum" else 1.0 / _loss_divisor(m, T, B)
    total, state = 0.0, state0
    for s in range(0, T, chunk):
        e = min(s + chunk, T)
        H, trace = m._run(X3[s:e], state, logits=True)
        state = m.cell.final_state(H, trace)
        if last_only and e < T:
            continue
        seen, Yc = (H[-1:], Y3) if last_only else (H[1:], Y3[s:e])
        # the loss alone: an unformed gradient and a deferred dV cost nothing over the states
        total += m.head.loss_and_grad(m.params, seen, Yc, scale=scale, unformed=True,
                                      defer_weight_grad=True, logits=trace.logits)[0]
        if tally is not None:
            tally.add(m.head.forward(m.params, seen, trace.logits), Yc)
    if tally is not None:
        tally.end_batch()
    return total


# -- history, callbacks, progress ------------------------------------------------------------------

class History:
    """What fit recorded. `steps`: per update, "step", "epoch", "loss" (the loss of the data that
    update saw, reduced as the model reduces), "lr", "grad_norm" (before clipping) and "metric".
    `epochs`: per epoch, "epoch", "step" (the last step of the epoch), "loss" (over the epoch's data
    as trained), "metric", "val_loss", "val_metric", "seconds". `history["loss"]` is the per-epoch
    series."""

    def __init__(self, metric=None, validation=False, config=None):
        self.metric = metric
        self.config = dict(config or {})
        self.steps = {"step": [], "epoch": [], "loss": [], "lr": [], "grad_norm": []}
        self.epochs = {"epoch": [], "step": [], "loss": [], "seconds": []}
        if metric is not None:
            self.steps["metric"] = []
            self.epochs["metric"] = []
        if validation:
            self.epochs["val_loss"] = []
            if metric is not None:
                self.epochs["val_metric"] = []
        self.stopped_early = False
        self.stop_reason = None
        self.optimizer = None

    def _append(self, table, logs):
        for key, column in table.items():
            column.append(logs.get(key))

    def __getitem__(self, key):
        if key in self.epochs:
            return self.epochs[key]
        return self.steps[key]

    def __len__(self):
        return len(self.epochs["epoch"])

    def as_dict(self):
        return {"steps": {k: list(v) for k, v in self.steps.items()},
                "epochs": {k: list(v) for k, v in self.epochs.items()},
                "metric": self.metric, "config": self.config,
                "stopped_early": self.stopped_early, "stop_reason": self.stop_reason}

    def __repr__(self):
        last = {k: v[-1] for k, v in self.epochs.items() if v}
        return (f"History({len(self.steps['step'])} steps, {len(self)} epochs, last epoch {last}"
                f"{', stopped early' if self.stopped_early else ''})")

    def plot(self, path=None, axes=None, per_step=True, logy=False):
        """Loss (and metric) against the step: per step (thin), per epoch and validation (marks).

        Returns the matplotlib Figure; `path` also saves it. Needs matplotlib (the `plot` extra).
        """
        try:
            from matplotlib.figure import Figure
        except ImportError as exc:
            raise ImportError("History.plot needs matplotlib: "
                              "pip install 'fastbptt[plot]'") from exc
        panels = ["loss"] + (["metric"] if self.metric is not None else [])
        if axes is None:
            fig = Figure(figsize=(5.0 * len(panels), 3.6), layout="constrained")
            axes = fig.subplots(1, len(panels), squeeze=False)[0]
        else:
            axes = np.atleast_1d(axes)
            fig = axes[0].figure
        if len(axes) < len(panels):
            raise ValueError(f"plot needs {len(panels)} axes ({', '.join(panels)}), "
                             f"got {len(axes)}")
        for ax, key in zip(axes, panels, strict=False):  # spare axes stay empty
            label = key if key == "loss" else str(self.metric)
            if per_step and self.steps[key]:
                ax.plot(self.steps["step"], _floats(self.steps[key]), lw=0.8, alpha=0.45,
                        label=f"{label} per step")
            if self.epochs[key]:
                ax.plot(self.epochs["step"], _floats(self.epochs[key]), "o-", ms=3,
                        label=f"{label} per epoch")
            val = self.epochs.get("val_" + key)
            if val:
                ax.plot(self.epochs["step"], _floats(val), "s--", ms=3, label=f"validation {label}")
            ax.set_xlabel("step")
            ax.set_ylabel(label)
            if logy and key == "loss":
                ax.set_yscale("log")
            ax.legend(fontsize="small")
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig


def _floats(values):
    return [np.nan if v is None else v for v in values]


class Callback:
    """Base for callbacks with hooks; each hook may return True (or raise StopTraining) to stop.
    A plain callable given to fit is called as on_epoch(epoch, logs, model)."""

    def on_step(self, step, logs, model):
        return None

    def on_epoch(self, epoch, logs, model):
        return None

    def on_end(self, history, model):
        return None


class _FunctionCallback(Callback):
    def __init__(self, fn):
        self.fn = fn

    def on_epoch(self, epoch, logs, model):
        return self.fn(epoch, logs, model)


class EarlyStopping(Callback):
    """Stop after `patience` epochs (at least 1) in which the epoch log `monitor` did not improve by
    min_delta, or as soon as it reaches `target`. mode "min" | "max" | "auto" (min for names with
    "loss"). With restore_best, the model ends with the parameters of the best epoch."""

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, mode="auto", target=None,
                 restore_best=False):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.monitor = monitor
        self.patience = int(patience)
        self.min_delta = _nonneg_float("min_delta", min_delta)
        self.sign = -1.0 if (mode == "min" or (mode == "auto" and "loss" in monitor)) else 1.0
        self.target = target
        self.restore_best = restore_best
        self.best = None
        self.best_params = None
        self.best_epoch = None
        self.wait = 0

    def on_epoch(self, epoch, logs, model):
        value = logs.get(self.monitor)
        if value is None:
            have = sorted(k for k, v in logs.items() if v is not None)
            raise ValueError(f"EarlyStopping monitors {self.monitor!r}, which the epoch logs do "
                             f"not have (they have {have})")
        score = self.sign * value
        if self.best is None or score > self.sign * self.best + self.min_delta:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_params = {k: v.copy() for k, v in model.params.items()}
        else:
            self.wait += 1
            if self.wait >= max(self.patience, 1):
                raise StopTraining(f"{self.monitor} did not improve for {self.wait} epochs "
                                   f"(best {self.best:.6g} at epoch {self.best_epoch})")
        if self.target is not None and self.sign * value >= self.sign * self.target:
            raise StopTraining(f"{self.monitor} reached {value:.6g} (target {self.target:g})")
        return None

    def on_end(self, history, model):
        if self.best_params is not None:
            model.params.update(self.best_params)


def _callbacks(callbacks):
    if callbacks is None:
        return []
    if callable(callbacks) or isinstance(callbacks, Callback):
        callbacks = [callbacks]
    out = []
    for cb in callbacks:
        if isinstance(cb, Callback):
            out.append(cb)
        elif callable(cb):
            out.append(_FunctionCallback(cb))
        else:
            raise TypeError(f"a callback must be a Callback or a callable(epoch, logs, model), "
                            f"got {cb!r}")
    return out


def _fmt(logs, keys):
    parts = []
    for key in keys:
        value = logs.get(key)
        if value is not None:
            parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return " ".join(parts)


class _Progress:
    """A tqdm bar when tqdm is installed, else a plain line every log_every steps; never fails."""

    KEYS = ("loss", "metric", "val_loss", "val_metric")

    def __init__(self, enabled, total, log_every):
        self.bar = None
        self.plain = False
        self.total = total
        self.every = log_every
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:  # tqdm is the optional `progress` extra
            tqdm = None
        if tqdm is None:
            self.plain = True
            self.every = log_every or max(1, total // 10)
            return
        self.every = log_every or max(1, total // 100)
        self.bar = tqdm(total=total, unit="step", dynamic_ncols=True, file=sys.stderr)

    def step(self, step, epoch_logs_so_far):
        if self.bar is not None:
            self.bar.update(1)
            if step % self.every == 0:
                self.bar.set_postfix_str(_fmt(epoch_logs_so_far, self.KEYS), refresh=False)
        elif self.plain and (step % self.every == 0 or step == self.total):
            print(f"step {step}/{self.total} " + _fmt(epoch_logs_so_far, ("epoch",) + self.KEYS),
                  file=sys.stderr, flush=True)

    def epoch(self, logs):
        if self.bar is not None:
            self.bar.set_postfix_str(_fmt(logs, ("epoch",) + self.KEYS), refresh=True)

    def close(self, logs):
        if self.bar is not None:
            self.bar.close()
        elif self.plain and logs:
            print("done: " + _fmt(logs, ("epoch", "step") + self.KEYS), file=sys.stderr, flush=True)


# -- fit -------------------------------------------------------------------------------------------

class Shard:
    """fit's one extension point, for training across processes (fastbptt.distributed implements
    it over MPI). The default is one process: every row, nothing to combine.

    - rows(idx, N): this process's rows of a minibatch, given the minibatch's row indices (None: all
      N rows, in order); returns indices into the data, or None for all N rows.
    - reduce(chunk, divisor): one update's Chunk and loss divisor (what reduction="mean" divided the
      chunk's loss by) combined over the processes, before the gradient is checked, clipped and
      applied; returns the combined (chunk, divisor). Every process must offer a chunk for every
      update, even one in which its own rows have no step that counts (items 0, zero gradient);
      a combined chunk with items 0 means no process had one: no update.
    - metric(tally): the training Metric, counted over the processes.
    """

    def rows(self, idx, N):
        return idx

    def reduce(self, chunk, divisor):
        return chunk, divisor

    def metric(self, tally):
        return tally


_ONE_PROCESS = Shard()


def _prepare_validation(m, validation):
    try:
        Xv, Yv = validation
    except (TypeError, ValueError) as exc:
        raise ValueError("validation must be a pair (X_val, Y_val)") from exc
    Xv3, single = m._inputs(Xv)
    Tv, Bv, _ = Xv3.shape
    Yv3 = m.head.prepare_targets(Yv, Tv, Bv, single, m.dtype)
    return Xv3, Yv3, m._initial_state(Bv, single)


@blas_single_in
def fit(model, X, Y, *, epochs=None, iterations=None, batch_size=None, optimizer="sgd", lr=None,
        schedule=None, clip_norm=None, clip_value=None, shuffle=True, seed=0, validation=None,
        metric=None, tbptt=None, stateful=False, h0=None, c0=None, progress=True, callbacks=(),
        log_every=None, weight_decay=None, shard=None):
    """Train `model` in place on X (T, N, I) (or (T, I)) and targets Y; return a History.

    - epochs | iterations: passes over the data, or parameter updates (one per minibatch, or per
      chunk with tbptt); neither means one epoch.
    - batch_size: minibatches over the batch axis N (None: all N); shuffled each epoch with `seed`
      when shuffle=True and there is more than one minibatch.
    - optimizer: "sgd" | "momentum" | "nesterov" | "adagrad" | "rmsprop" | "adam" | "adamw" (with
      `lr`, `schedule`, `weight_decay`) or an Optimizer instance (which keeps its state across
      calls); see fastbptt.optim.
    - clip_value then clip_norm: clip every gradient entry, then the global norm.
    - validation=(X_val, Y_val): loss (and metric) after every epoch, from zero states, forwarded
      tbptt's k1 steps at a time; metric: "accuracy" | "bit_accuracy" | "sequence_accuracy" |
      callable(y_pred, y_true) -> float.
    - tbptt: None (full BPTT) | k | (k1, k2); see the module docstring.
    - stateful: start from the state the previous stateful fit left (per sequence; needs every
      sequence in one minibatch), and carry it across epochs; h0 / c0 start from given states
      instead. fastbptt.train.reset_state(model) forgets it.
    - callbacks: callables(epoch, logs, model) or Callback objects; True or StopTraining stops.
    - progress: a tqdm bar (a plain line every log_every steps when tqdm is missing); False for
      none.
    - shard: a Shard, for fastbptt.distributed (None: one process).

    A non-finite loss, gradient or update raises FloatingPointError naming the step; the model keeps
    the parameters it had before that step (the error carries `.history`).
    """
    m = model
    _check_trainable(m)
    if epochs is not None and iterations is not None:
        raise ValueError("give epochs or iterations, not both")
    epochs = positive_int("epochs", epochs, allow_none=True)
    iterations = positive_int("iterations", iterations, allow_none=True)
    if epochs is None and iterations is None:
        epochs = 1
    opt = make_optimizer(optimizer, lr=lr, schedule=schedule, weight_decay=weight_decay)
    if clip_norm is not None:
        clip_norm = _nonneg_float("clip_norm", clip_norm)
    if clip_value is not None:
        clip_value = _nonneg_float("clip_value", clip_value)
    X3, single = m._inputs(X)
    T, N, _ = X3.shape
    Y3 = m.head.prepare_targets(Y, T, N, single, m.dtype)
    bs = N if batch_size is None else min(positive_int("batch_size", batch_size), N)
    k1, k2 = parse_tbptt(tbptt, T)
    shard = _ONE_PROCESS if shard is None else shard
    tally = None if metric is None else shard.metric(Metric(metric, m))
    cbs = _callbacks(callbacks)
    log_every = positive_int("log_every", log_every, allow_none=True)

    state_all = None
    if stateful:
        if bs < N:
            raise ValueError(f"stateful=True carries each sequence's state into the next call, so "
                             f"all {N} sequences must be in one minibatch (batch_size None or "
                             f">= {N})")
        carried = _CARRIED.get(m)
        if carried is not None and h0 is None and c0 is None:
            if carried[0].shape[-2] != N:  # states are (B, H) or (L * D, B, H)
                raise ValueError(f"the carried state is for a batch of {carried[0].shape[-2]}, this "
                                 f"data has {N}; call fastbptt.train.reset_state(model) first")
            state_all = carried
    if state_all is None:
        state_all = m._initial_state(N, single, h0, c0)
    val = None if validation is None else _prepare_validation(m, validation)
    val_tally = None if (metric is None or val is None) else Metric(metric, m)

    n_batches = math.ceil(N / bs)
    per_batch = math.ceil(T / k1) if m.target == "all" else 1
    steps_per_epoch = n_batches * per_batch
    total = iterations if iterations is not None else epochs * steps_per_epoch
    n_epochs = epochs if epochs is not None else math.ceil(iterations / steps_per_epoch)
    history = History(None if tally is None else tally.name, validation=val is not None, config={
        "epochs": epochs, "iterations": iterations, "batch_size": bs, "optimizer": opt.get_config(),
        "clip_norm": clip_norm, "clip_value": clip_value, "shuffle": shuffle, "seed": seed,
        "tbptt": [k1, k2], "stateful": bool(stateful)})
    history.optimizer = opt
    rng = np.random.default_rng(seed)
    bar = _Progress(progress, total, log_every)
    divisor = _loss_divisor(m, T, 1)  # per sequence; x batch size below
    step, epoch_logs = 0, {}
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # checked explicitly
            for epoch in range(1, n_epochs + 1):
                started = time.perf_counter()
                order = rng.permutation(N) if (shuffle and bs < N) else None
                raw, items = 0.0, 0
                if tally is not None:
                    tally.reset()
                stop = False
                for b0 in range(0, N, bs):
                    idx = None
                    if bs < N:
                        idx = (order[b0:b0 + bs] if order is not None
                               else np.arange(b0, min(b0 + bs, N)))
                    idx = shard.rows(idx, N)
                    if idx is None:
                        Xb, Yb, st = X3, Y3, state_all
                    else:
                        Xb = np.ascontiguousarray(X3[:, idx])
                        Yb = np.ascontiguousarray(Y3[:, idx])
                        # the batch axis is the one before H: (B, H) or (L * D, B, H)
                        st = tuple(np.ascontiguousarray(s[..., idx, :]) for s in state_all)
                    B = Xb.shape[1]
                    chunks = _chunks(m, Xb, Yb, st, k1, k2)
                    while True:
                        try:
                            chunk = next(chunks, None)
                        except FloatingPointError as exc:
                            raise _diverged(step + 1, epoch, str(exc), history) from exc
                        if chunk is None:
                            break
                        chunk, batch_divisor = shard.reduce(chunk, B * divisor)
                        step += 1
                        logs = _train_step(m, opt, chunk, batch_divisor, clip_norm, clip_value,
                                           tally, step, epoch, history)
                        raw += chunk.loss * batch_divisor if m.reduction == "mean" else chunk.loss
                        items += chunk.items
                        history._append(history.steps, logs)
                        epoch_logs = {"epoch": epoch, "step": step,
                                      "loss": raw / items if m.reduction == "mean" else raw,
                                      "metric": logs.get("metric")}
                        bar.step(step, epoch_logs)
                        if stateful:
                            _CARRIED[m] = chunk.state
                        stop = _call(cbs, "on_step", step, logs, m, history) or step == iterations
                        if stop:
                            break
                    if tally is not None:
                        tally.end_batch()
                    if stateful and bs == N:
                        state_all = _CARRIED[m]
                    if stop:
                        break
                epoch_logs = {"epoch": epoch, "step": step,
                              "loss": raw / items if m.reduction == "mean" else raw,
                              "metric": None if tally is None else tally.value()}
                if val is not None:
                    if val_tally is not None:
                        val_tally.reset()
                    Xv3, Yv3, stv = val
                    chunk_v = k1 if tbptt is not None else Xv3.shape[0]
                    epoch_logs["val_loss"] = _evaluate(m, Xv3, Yv3, stv, chunk_v, val_tally)
                    epoch_logs["val_metric"] = None if val_tally is None else val_tally.value()
                epoch_logs["seconds"] = time.perf_counter() - started
                history._append(history.epochs, epoch_logs)
                bar.epoch(epoch_logs)
                if _call(cbs, "on_epoch", epoch, epoch_logs, m, history) or step == iterations:
                    break
                if history.stopped_early:
                    break
    finally:
        bar.close(epoch_logs)
    for cb in cbs:
        cb.on_end(history, m)
    return history


def _train_step(m, opt, chunk, divisor, clip_norm, clip_value, tally, step, epoch, history):
    """Check, clip and apply one chunk's gradient; return the step's logs."""
    grads = chunk.grads
    if not math.isfinite(chunk.loss):
        raise _diverged(step, epoch, f"the loss is {chunk.loss}", history)
    norm = global_norm(grads)  # NaN or Inf exactly when some entry is
    if not math.isfinite(norm):
        bad = sorted(k for k, g in grads.items() if not np.isfinite(g).all())
        why = f"non-finite gradient for {bad}" if bad else f"the gradient norm overflows ({norm})"
        raise _diverged(step, epoch, why, history)
    if clip_value is not None:
        grads = clip_by_value(grads, clip_value)
    if clip_norm is not None:
        grads = clip_by_norm(grads, clip_norm, None if clip_value is not None else norm)
    # the metric sees the outputs of the parameters that made this chunk's loss, before the update
    value = None
    if tally is not None:
        value = tally.add(m.head.forward(m.params, chunk.seen, chunk.logits), chunk.targets)
    try:
        lr = opt.step(m.params, grads)
    except FloatingPointError as exc:
        raise _diverged(step, epoch, str(exc), history) from exc
    # the loss as the model's reduction would give it for this chunk's data alone
    loss = chunk.loss * (divisor / chunk.items) if m.reduction == "mean" else chunk.loss
    return {"step": step, "epoch": epoch, "loss": loss, "lr": lr, "grad_norm": norm,
            "metric": value}


def _diverged(step, epoch, why, history):
    err = FloatingPointError(f"training diverged at step {step} (epoch {epoch}): {why}; the model "
                             "keeps the parameters from before this step")
    err.history = history
    return err


def _call(cbs, hook, index, logs, model, history):
    """Run one hook of every callback; True when one asks to stop."""
    stop = False
    for cb in cbs:
        try:
            if getattr(cb, hook)(index, logs, model) is True:
                stop = True
                history.stop_reason = (f"{type(cb).__name__}.{hook} returned True at "
                                       f"{hook[3:]} {index}")
        except StopTraining as exc:
            stop = True
            history.stop_reason = str(exc) or f"StopTraining at {hook[3:]} {index}"
    if stop:
        history.stopped_early = True
    return stop
