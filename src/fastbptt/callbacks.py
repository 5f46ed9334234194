"""Callbacks of fit: hooks per step, per epoch and at the end; EarlyStopping."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._checks import nonneg_float

if TYPE_CHECKING:
    from .history import History
    from .model import RNN


class StopTraining(Exception):
    """Raise from a callback to stop training after the current step or epoch."""


class Callback:
    """Base for fit's callbacks: override the hooks wanted. A hook may return True (or raise
    StopTraining) to stop training. A plain callable given to fit is called as
    ``on_epoch(epoch, logs, model)``."""

    def on_step(self, step: int, logs: dict[str, Any], model: RNN) -> bool | None:
        """After each update, with that step's logs (see History.steps)."""
        return None

    def on_epoch(self, epoch: int, logs: dict[str, Any], model: RNN) -> bool | None:
        """After each epoch (and its validation), with the epoch's logs (see History.epochs)."""
        return None

    def on_end(self, history: History, model: RNN) -> None:
        """Once, when fit ends for any reason but an error."""
        return None


class _FunctionCallback(Callback):
    def __init__(self, fn):
        self.fn = fn

    def on_epoch(self, epoch, logs, model):
        return self.fn(epoch, logs, model)


class EarlyStopping(Callback):
    """Stop training when an epoch log stops improving, or reaches a target.

    Parameters
    ----------
    monitor : str, default "val_loss"
        The epoch log watched ("loss", "metric", "val_loss", "val_metric").
    patience : int, default 0
        Epochs without improvement tolerated (at least 1 is always waited).
    min_delta : float, default 0.0
        The smallest change that counts as an improvement.
    mode : {"auto", "min", "max"}, default "auto"
        Whether lower or higher is better; "auto" is "min" for names containing "loss".
    target : float, optional
        Stop as soon as the monitored value reaches it.
    restore_best : bool, default False
        End with the parameters of the best epoch.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0,
                 mode: str = "auto", target: float | None = None,
                 restore_best: bool = False) -> None:
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.monitor = monitor
        self.patience = int(patience)
        self.min_delta = nonneg_float("min_delta", min_delta)
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


def as_callbacks(callbacks):
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


def run_hook(cbs, hook, index, logs, model, history):
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
