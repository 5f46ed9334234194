"""Seed 003's task: a one-neuron ReLU network (no output layer) counting the ones seen so far;
COUNTING_RECIPES name the original set-up and what makes long sequences work."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .. import tasks
from ..model import RNN
from ..optim import inverse_time_decay, make_optimizer
from ..train import Callback
from .tracking import Tracker, data_rng_for, dtype_name, pct, tracked_run

# seed 003's set-up, then what it lacked: T = 10 fails as the report says; clipping fixes T = 10;
# T = 50 needs a decaying step (the counts must be exact to 1 in 50) and one of Adam, W = 1, TBPTT
COUNTING_RECIPES = {
    "seed003": dict(T=5),
    "seed003-T10": dict(T=10),
    "clip-T10": dict(T=10, lr=0.01, clip_norm=1.0),
    "adam-T50": dict(T=50, optimizer="adam", lr=0.01, lr_decay=0.01, clip_norm=1.0,
                     iterations=3000),
    "identity-T50": dict(T=50, init="identity", optimizer="adam", lr=0.003, lr_decay=0.01,
                         clip_norm=1.0, iterations=3000),
    "tbptt-T50": dict(T=50, optimizer="adam", lr=0.01, lr_decay=0.01, clip_norm=1.0, tbptt=10,
                      iterations=3000),
}


def _report_uniform(name, shape, rng, hidden_size):
    """Seed 003's 2 * np.random.random(): U(0, 2) for both weights; the bias (which it lacks) 0."""
    if len(shape) == 1:
        return np.zeros(shape)
    return rng.uniform(0.0, 2.0, size=shape)


def _identity_recurrent(name, shape, rng, hidden_size):
    """W = I (Le et al. 2015: a ReLU unit that keeps its state), U from U(0, 2) as the report."""
    if name == "W":
        return np.eye(shape[0], shape[1])
    return _report_uniform(name, shape, rng, hidden_size)


def _counting_init(init):
    if init == "report":
        return _report_uniform
    if init == "identity":
        return _identity_recurrent
    return init


class _ZeroBias(Callback):
    """Holds b at 0 after every update: seed 003's unit has no bias."""

    def on_step(self, step, logs, model):
        model.params["b"] = np.zeros_like(model.params["b"])


def counting(T: int = 5, init="report", iterations: int = 1000, optimizer="sgd",
             lr: float = 0.001, lr_decay: float | None = None, clip_norm: float | None = None,
             tbptt=None, n_train: int = 4, n_test: int = 500, reduction: str = "sum",
             fix_bias: bool = True, eval_every: int | None = None, stop_at: float | None = None,
             seed: int = 0, backend: str | None = None, dtype=np.float64,
             log: Callable[[str], None] | None = None, label: str | None = None) -> dict:
    """Seed 003: one ReLU unit, no output layer, h_t = relu(W h_{t-1} + U x_t), counts the ones.

    Trains full batch on `n_train` fixed random bit sequences of length T, loss
    0.5 (h_t - count_t)^2 summed over steps and sequences, and measures the fraction of steps of
    `n_test` fresh sequences whose rounded output is the count. Weights so large that the test
    sequences overflow the state score accuracy 0. The defaults are the report's set-up;
    COUNTING_RECIPES name what makes T = 10 and T = 50 work.

    Parameters
    ----------
    T : int, default 5
        Sequence length.
    init : str, default "report"
        "report": U and W from U(0, 2); "identity": W = 1 (the unit keeps its count), U from
        U(0, 2); any other name is a fastbptt initialiser.
    iterations : int, default 1000
        Parameter updates.
    optimizer : str or Optimizer, default "sgd"
    lr : float, default 0.001
    lr_decay : float, optional
        r: the rate is divided by 1 + r * step.
    clip_norm : float, optional
        Clip the gradient's global norm.
    tbptt : int or tuple, optional
        Truncated BPTT, as `fit` takes it.
    n_train, n_test : int, default 4, 500
        Training and test sequences.
    reduction : {"sum", "mean"}, default "sum"
    fix_bias : bool, default True
        Hold the bias at 0 (the report's unit has none).
    eval_every : int, optional
        Iterations between evaluations (default: 100 evaluations in all).
    stop_at : float, optional
        Stop once the test accuracy reaches this.
    seed, backend, dtype, log, label
        As for `addition`.

    Returns
    -------
    dict
        "accuracy", "max_error" (largest absolute error of the count on the test set),
        "iterations_to_perfect", "weights" (final U, W, b), "diverged", "curves" (step, loss,
        accuracy, U, W, b), "config", "model" and "history".
    """
    if eval_every is None:
        eval_every = max(1, iterations // 100)
    config = dict(T=T, init=init, iterations=iterations, optimizer=optimizer, lr=lr,
                  lr_decay=lr_decay, clip_norm=clip_norm, tbptt=tbptt, n_train=n_train,
                  n_test=n_test, reduction=reduction, fix_bias=fix_bias, eval_every=eval_every,
                  stop_at=stop_at, seed=seed, dtype=dtype_name(dtype))
    data_rng = data_rng_for(seed)
    X, Y = tasks.running_sum(n_train, T, seed=data_rng, dtype=dtype)
    Xt, Yt = tasks.running_sum(n_test, T, seed=data_rng, dtype=dtype)
    model = RNN(1, 1, None, cell="relu", output=None, loss="mse", reduction=reduction,
                init=_counting_init(init), seed=seed, backend=backend, dtype=dtype)
    if fix_bias:
        model.params["b"] = np.zeros(1)

    def measure(m):
        weights = {name: float(m.params[name].ravel()[0]) for name in ("U", "W", "b")}
        try:
            Y_hat = m.predict(Xt)
        except FloatingPointError:  # weights so large the state overflows: no count is right
            return {"accuracy": 0.0, "max_error": math.inf, **weights}
        return {"accuracy": tasks.counting_accuracy(Y_hat, Yt),
                "max_error": float(np.max(np.abs(Y_hat - Yt))), **weights}

    def describe(step, loss_value, values):
        shown = "" if loss_value is None else f"{loss_value:10.4g}"
        return (f"iteration {step:6,d}  loss {shown:>10}  test accuracy {pct(values['accuracy'])}"
                f"  U {values['U']:.5g}  W {values['W']:.5g}")

    schedule = None if lr_decay is None else inverse_time_decay(lr_decay)
    opt = make_optimizer(optimizer, lr=lr, schedule=schedule)
    tracker = Tracker(measure, eval_every, stop_at, log, describe)
    # the bias is zeroed before the tracker measures, so every point shows the unit as trained
    result = tracked_run("counting", label or f"T={T} {optimizer} lr={lr:g}", config, model, X, Y,
                          dict(iterations=iterations, optimizer=opt, clip_norm=clip_norm,
                               tbptt=tbptt, seed=seed), tracker,
                          [_ZeroBias()] if fix_bias else [])
    result["max_error"] = result["curves"]["max_error"][-1]
    result["weights"] = {name: model.params[name].ravel().tolist() for name in ("U", "W", "b")}
    return result


def counting_recipe(name: str, **overrides) -> dict:
    """`counting` with the keyword arguments of ``COUNTING_RECIPES[name]``, then `overrides`.

    Parameters
    ----------
    name : str
        A key of COUNTING_RECIPES ("seed003", "clip-T10", "adam-T50", "identity-T50", ...).
    **overrides
        Keyword arguments of `counting` that replace the recipe's.

    Returns
    -------
    dict
        As `counting`, labelled with the recipe's name unless a label is given.
    """
    if name not in COUNTING_RECIPES:
        raise ValueError(f"unknown counting recipe {name!r}; expected one of "
                         f"{', '.join(COUNTING_RECIPES)}")
    kwargs = {**COUNTING_RECIPES[name], **overrides}
    kwargs.setdefault("label", name)
    return counting(**kwargs)
