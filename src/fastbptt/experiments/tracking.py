"""What every training experiment shares: its data stream, the tracker that records the curves
and can stop training, a quiet fit, and the result dict's common entries."""

from __future__ import annotations

import time

import numpy as np

from ..train import Callback, StopTraining


def data_rng_for(seed):
    """The data's stream: from `seed`, but independent of the model's RNN(seed=seed) draws."""
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])


def dtype_name(dtype):
    return np.dtype(dtype).name


class Tracker(Callback):
    """Every `every` updates: the mean training loss since the last point and `measure(model)`.

    Stops training once the measured "accuracy" reaches `stop_at`; `log` gets one line per point.
    """

    def __init__(self, measure, every, stop_at=None, log=None, describe=None):
        self.measure = measure
        self.every = max(1, int(every))
        self.stop_at = stop_at
        self.log = log
        self.describe = describe
        self.curves = {"step": [], "loss": []}
        self.loss_sum = 0.0
        self.loss_count = 0
        self.eval_seconds = 0.0
        self.last_step = 0

    def record(self, step, model):
        started = time.perf_counter()
        values = self.measure(model)
        self.eval_seconds += time.perf_counter() - started
        loss = self.loss_sum / self.loss_count if self.loss_count else None
        self.curves["step"].append(step)
        self.curves["loss"].append(loss)
        for key, value in values.items():
            self.curves.setdefault(key, []).append(value)
        self.loss_sum, self.loss_count = 0.0, 0
        self.last_step = step
        if self.log is not None and self.describe is not None:
            self.log(self.describe(step, loss, values))
        return values

    def on_step(self, step, logs, model):
        self.loss_sum += logs["loss"]
        self.loss_count += 1
        if step % self.every:
            return None
        values = self.record(step, model)
        if self.stop_at is not None and values["accuracy"] >= self.stop_at:
            raise StopTraining(f"accuracy reached {values['accuracy']:.4g} at step {step}")
        return None

    def finish(self, model):
        """One last point if training ended between two."""
        if self.loss_count:
            self.record(self.last_step + self.loss_count, model)


def first_reaching(curves, level=1.0):
    """The first recorded step whose accuracy is at least `level`, else None."""
    for step, acc in zip(curves["step"], curves["accuracy"], strict=True):
        if acc >= level:
            return step
    return None


def quiet_fit(model, X, Y, fit_kwargs, callbacks):
    """fit quietly; a divergence keeps what was recorded so far and is reported, not raised."""
    started = time.perf_counter()
    diverged = None
    history = None
    try:
        history = model.fit(X, Y, callbacks=callbacks, progress=False, **fit_kwargs)
    except FloatingPointError as exc:
        diverged = str(exc)
        history = getattr(exc, "history", None)
    for callback in callbacks:
        if isinstance(callback, Tracker):
            callback.finish(model)
    return history, diverged, time.perf_counter() - started


def tracked_run(task, label, config, model, X, Y, fit_kwargs, tracker, callbacks=()):
    """fit with a tracker recording from step 0; the result dict's entries every task shares."""
    tracker.record(0, model)
    history, diverged, seconds = quiet_fit(model, X, Y, fit_kwargs, [*callbacks, tracker])
    curves = tracker.curves
    return {
        "task": task,
        "label": label,
        "config": config,
        "curves": curves,
        "accuracy": curves["accuracy"][-1],
        "iterations_to_perfect": first_reaching(curves),
        "iterations": curves["step"][-1],
        "seconds": seconds,
        "eval_seconds": tracker.eval_seconds,
        "diverged": diverged,
        "model": model,
        "history": history,
    }


def pct(x):
    return f"{100.0 * x:6.2f} %"
