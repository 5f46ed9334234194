"""Seed 004's task: a tanh RNN + softmax reading images one row per step (scikit-learn's 8x8
digits, or MNIST IDX files you have), loss over every step or only the last one."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np

from .. import tasks
from ..model import RNN
from ..train import Callback
from .tracking import dtype_name, pct, quiet_fit


def _last_step_scores(model, X):
    scores = model.predict(X)
    return scores[-1] if scores.ndim == 3 else scores


class _EpochTracker(Callback):
    """After every epoch: fit's training and test losses and `measure(model)`; `log` gets a line."""

    def __init__(self, measure, log=None):
        self.measure = measure
        self.log = log
        self.curves = {"epoch": [], "step": [], "loss": [], "test_loss": [], "accuracy": []}
        self.eval_seconds = 0.0

    def on_epoch(self, epoch, logs, model):
        started = time.perf_counter()
        accuracy = self.measure(model)
        self.eval_seconds += time.perf_counter() - started
        for key, value in (("epoch", epoch), ("step", logs["step"]), ("loss", logs["loss"]),
                           ("test_loss", logs.get("val_loss")), ("accuracy", accuracy)):
            self.curves[key].append(value)
        if self.log is not None:
            self.log(f"epoch {epoch:4d}  step {logs['step']:6,d}  loss {logs['loss']:.4f}  "
                     f"test loss {logs.get('val_loss'):.4f}  test accuracy {pct(accuracy)}")
        return None


def digits(target: str = "all", hidden_size: int = 64, epochs: int = 80, batch_size: int = 32,
           optimizer="adam", lr: float = 0.01, clip_norm: float | None = None,
           test_fraction: float = 0.25, seed: int = 0, backend: str | None = None,
           dtype=np.float64, log: Callable[[str], None] | None = None,
           label: str | None = None) -> dict:
    """Seed 004 on scikit-learn's 8x8 digits: a tanh RNN reads an image one row (8 pixels) per
    step, a softmax head with cross-entropy classifies it.

    Accuracy is always that of the last step's prediction on the held-out split. Needs
    scikit-learn (the `data` extra).

    Parameters
    ----------
    target : {"all", "last"}, default "all"
        "all": the loss is averaged over every step, the label repeated over time (seed 004's
        E = 1/(NT) sum_n sum_t E_t); "last": the loss of the last step only.
    hidden_size : int, default 64
    epochs : int, default 80
    batch_size : int, default 32
    optimizer : str or Optimizer, default "adam"
    lr : float, default 0.01
    clip_norm : float, optional
        Clip the gradient's global norm.
    test_fraction : float, default 0.25
        Held out, stratified by class.
    seed, backend, dtype, log, label
        As for `addition`.

    Returns
    -------
    dict
        "accuracy" (test, last step), "accuracy_by_step" (test accuracy of the prediction after
        reading 1, 2, ..., 8 rows), "train_accuracy", "n_train", "n_test", "epochs", "seconds",
        "curves" (epoch, step, loss, test_loss, accuracy), "config", "model" and "history".
    """
    config = dict(target=target, hidden_size=hidden_size, epochs=epochs, batch_size=batch_size,
                  optimizer=optimizer, lr=lr, clip_norm=clip_norm, test_fraction=test_fraction,
                  seed=seed, dtype=dtype_name(dtype))
    data = tasks.load_digits_sequences(test_fraction, seed=seed, dtype=dtype)
    return _row_wise("digits", data, config, backend, log, label)


def mnist(idx_dir: str | os.PathLike, target: str = "last", hidden_size: int = 128,
          epochs: int = 2, batch_size: int = 64, optimizer="adam", lr: float = 0.002,
          clip_norm: float | None = 1.0, max_train: int | None = None,
          max_test: int | None = None, seed: int = 0, backend: str | None = None,
          dtype=np.float32, log: Callable[[str], None] | None = None,
          label: str | None = None) -> dict:
    """Seed 004's row-by-row set-up on MNIST IDX files you have (28 rows of 28 pixels).

    Nothing is downloaded. The files' own train/test split is used.

    Parameters
    ----------
    idx_dir : str or path-like
        Holds train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
        t10k-labels-idx1-ubyte (optionally .gz; see `fastbptt.tasks.load_mnist`).
    target : {"all", "last"}, default "last"
        As for `digits`.
    hidden_size, epochs, batch_size, optimizer, lr, clip_norm
        As for `digits` (defaults 128, 2, 64, "adam", 0.002, 1.0).
    max_train, max_test : int, optional
        Keep only the first so many training and test images.
    dtype : numpy dtype
        float32 (the default) or float64.
    seed, backend, log, label
        As for `addition`.

    Returns
    -------
    dict
        As `digits`, with "task": "mnist".
    """
    config = dict(idx_dir=os.fspath(idx_dir), target=target, hidden_size=hidden_size,
                  epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                  clip_norm=clip_norm, max_train=max_train, max_test=max_test, seed=seed,
                  dtype=dtype_name(dtype))
    data = tasks.load_mnist(idx_dir, dtype=dtype, max_train=max_train, max_test=max_test)
    return _row_wise("mnist", data, config, backend, log, label)


def _row_wise(task, data, config, backend, log, label):
    """Train a tanh RNN + softmax on images read one row per step; the result dict of `digits`."""
    target, seed = config["target"], config["seed"]
    T = data.X_train.shape[0]
    Y = tasks.sequence_targets(data.y_train, T, target)
    Yt = tasks.sequence_targets(data.y_test, T, target)
    model = RNN(data.X_train.shape[2], config["hidden_size"], data.n_classes, cell="tanh",
                output="softmax", loss="ce", target=target, seed=seed, backend=backend,
                dtype=data.X_train.dtype)

    def accuracy(m, X, y):
        return tasks.classification_accuracy(_last_step_scores(m, X), y)

    tracker = _EpochTracker(lambda m: accuracy(m, data.X_test, data.y_test), log)
    history, diverged, seconds = quiet_fit(model, data.X_train, Y, dict(
        epochs=config["epochs"], batch_size=config["batch_size"], optimizer=config["optimizer"],
        lr=config["lr"], clip_norm=config["clip_norm"], seed=seed,
        validation=(data.X_test, Yt)), [tracker])
    by_step = [accuracy(model, data.X_test[:t], data.y_test) for t in range(1, T + 1)]
    curves = tracker.curves
    return {
        "task": task,
        "label": label or f"loss on {'every step' if target == 'all' else 'the last step'}",
        "config": config,
        "curves": curves,
        "accuracy": by_step[-1],
        "accuracy_by_step": by_step,
        "train_accuracy": accuracy(model, data.X_train, data.y_train),
        "n_train": int(data.X_train.shape[1]),
        "n_test": int(data.X_test.shape[1]),
        "epochs": len(curves["epoch"]),
        "seconds": seconds,
        "eval_seconds": tracker.eval_seconds,
        "diverged": diverged,
        "model": model,
        "history": history,
    }
