"""Metrics that fit and evaluate count over the chunks of truncated BPTT, exactly."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .model import RNN

METRICS = ("accuracy", "bit_accuracy", "sequence_accuracy")


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
    chunks weighted by their steps x batch. Padded steps (a mask) are not counted.

    Parameters
    ----------
    spec : str or callable
        "accuracy" | "bit_accuracy" | "sequence_accuracy", or ``callable(y_pred, y_true) -> float``.
    model : RNN
        The model whose outputs are scored (its head says how outputs become labels).
    """

    def __init__(self, spec: str | Callable, model: RNN) -> None:
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

    def errors(self, Y_hat, Y, mask=None):
        """Wrong units per sequence (B,) and units per sequence (B,) for one chunk."""
        pred, true = _labels(self.model, Y_hat, Y)
        wrong = pred != true
        steps, B = wrong.shape[:2]
        valid = np.ones((steps, B), dtype=bool) if mask is None else mask
        if self.name == "bit_accuracy":
            per_step_units = 1 if wrong.ndim == 2 else wrong.shape[-1]
            wrong = wrong.reshape(steps, B, -1) & valid[:, :, None]
            return wrong.sum(axis=(0, 2)), valid.sum(axis=0) * per_step_units
        if wrong.ndim == 3:
            wrong = wrong.any(axis=-1)
        return (wrong & valid).sum(axis=0), valid.sum(axis=0)

    def add(self, Y_hat, Y, mask=None, rows=None, batch=None):
        """Count one chunk (outputs and targets (T', B', ...), `mask` (T', B') of the steps that
        count); return the metric over that chunk. `rows` (B',) places the chunk's sequences in
        a batch of `batch` (target="last" with lengths: only the sequences that end in the chunk)."""
        if self.fn is not None:
            if mask is not None:
                Y_hat, Y = Y_hat[mask][None], Y[mask][None]
            value = float(self.fn(Y_hat, Y))
            items = Y_hat.shape[0] * Y_hat.shape[1]
            self.num += value * items
            self.den += items
            return value
        wrong, units = self.errors(Y_hat, Y, mask)
        if self.name == "sequence_accuracy":
            if rows is not None:
                wrong = np.bincount(rows, weights=wrong, minlength=batch)
            self.batch_wrong = wrong if self.batch_wrong is None else self.batch_wrong + wrong
            return float(np.mean(wrong == 0))
        self.num += float(units.sum() - wrong.sum())
        self.den += float(units.sum())
        return 1.0 - float(wrong.sum()) / float(units.sum())

    def add_loss(self, Y_hat, loss, batch):
        """Count the outputs Y_hat of the steps a graph.Loss saw."""
        return self.add(Y_hat, loss.targets, loss.mask, loss.picks, batch)

    def end_batch(self):
        """A sequence's chunks are all counted: settle sequence_accuracy."""
        if self.batch_wrong is not None:
            self.num += float(np.sum(self.batch_wrong == 0))
            self.den += self.batch_wrong.size
            self.batch_wrong = None

    def value(self) -> float | None:
        return None if self.den == 0 else self.num / self.den
