"""Seed 000's task: an Elman network learning binary addition bit by bit, fresh random pairs every
iteration, accuracy on held-out pairs the training never sees."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import tasks
from ..model import RNN
from .tracking import Tracker, data_rng_for, dtype_name, pct, tracked_run


def addition(n_bits: int = 8, hidden_size: int = 16, init="fan_in", iterations: int = 3000,
             batch_size: int = 1, optimizer="sgd", lr: float = 0.1, loss: str = "mse",
             reduction: str = "sum", n_test: int | None = None, eval_every: int = 100,
             stop_at: float | None = None, seed: int = 0, backend: str | None = None,
             dtype=np.float64, log: Callable[[str], None] | None = None,
             label: str | None = None) -> dict:
    """Train a tanh RNN(2, hidden_size, 1) with a sigmoid output to add n-bit numbers.

    Each iteration is one update on `batch_size` fresh random pairs (seed 001 draws a new pair every
    iteration), drawn from outside a held-out set of `n_test` distinct pairs. The defaults are
    seed 001's network: H = 16, sigmoid output, mse summed over the steps, plain SGD, lr 0.1, one
    pair per iteration, U(+-1/sqrt(fan-in)).

    Parameters
    ----------
    n_bits : int, default 8
        Operand width; the sums have n_bits + 1 bits, one per step, lowest first.
    hidden_size : int, default 16
        Hidden units.
    init : str, callable or dict, default "fan_in"
        The initialiser (see `fastbptt.init`).
    iterations : int, default 3000
        Parameter updates.
    batch_size : int, default 1
        Fresh pairs per update.
    optimizer : str or Optimizer, default "sgd"
        As `fit` takes it.
    lr : float, default 0.1
        Learning rate.
    loss : {"mse", "bce"}, default "mse"
    reduction : {"sum", "mean"}, default "sum"
    n_test : int, optional
        Held-out pairs, distinct (default min(4096, 4**n_bits / 4)).
    eval_every : int, default 100
        Iterations between two evaluations on the held-out pairs.
    stop_at : float, optional
        Stop once the held-out accuracy reaches this.
    seed : int, default 0
        Seed of the data, the initial weights and the minibatch order.
    backend : str, optional
        The kernels: "auto", "cython", "numpy" or "python".
    dtype : numpy dtype
        float32 or float64.
    log : callable, optional
        Called with a progress line (str) at every evaluation.
    label : str, optional
        The run's label in summaries and plots.

    Returns
    -------
    dict
        "accuracy" (share of held-out sums right in every bit), "bit_accuracy",
        "iterations_to_perfect" (the first recorded iteration at 100 % held-out accuracy, or
        None), "iterations", "seconds", "curves" (step, loss = mean training loss since the
        previous point, accuracy, bit_accuracy), "config", "model" and "history".
    """
    grid = 4 ** n_bits
    n_test = min(4096, max(1, grid // 4)) if n_test is None else int(n_test)
    config = dict(n_bits=n_bits, hidden_size=hidden_size, init=init, iterations=iterations,
                  batch_size=batch_size, optimizer=optimizer, lr=lr, loss=loss,
                  reduction=reduction, n_test=n_test, eval_every=eval_every, stop_at=stop_at,
                  seed=seed, dtype=dtype_name(dtype))
    data_rng = data_rng_for(seed)
    train_pairs, test_pairs = tasks.train_test_pairs(n_bits, n_test, seed=data_rng,
                                                     n_train=iterations * batch_size)
    X, Y, _, _ = tasks.binary_addition(None, n_bits, pairs=train_pairs, dtype=dtype)
    Xt, Yt, _, _ = tasks.binary_addition(None, n_bits, pairs=test_pairs, dtype=dtype)
    model = RNN(2, hidden_size, 1, cell="tanh", output="sigmoid", loss=loss, reduction=reduction,
                init=init, seed=seed, backend=backend, dtype=dtype)

    def measure(m):
        Y_hat = m.predict(Xt)
        return {"accuracy": tasks.sequence_accuracy(Y_hat, Yt),
                "bit_accuracy": tasks.bit_accuracy(Y_hat, Yt)}

    def describe(step, loss_value, values):
        shown = "" if loss_value is None else f"{loss_value:9.4f}"
        return (f"iteration {step:7,d}  loss {shown:>9}  held-out accuracy "
                f"{pct(values['accuracy'])}  bits {pct(values['bit_accuracy'])}")

    tracker = Tracker(measure, eval_every, stop_at, log, describe)
    result = tracked_run("addition", label or f"init={init}", config, model, X, Y, dict(
        iterations=iterations, batch_size=batch_size, shuffle=False, optimizer=optimizer, lr=lr,
        seed=seed), tracker)
    result["bit_accuracy"] = result["curves"]["bit_accuracy"][-1]
    result["test_pairs"] = int(len(test_pairs))
    return result
