"""Run by tests/test_distributed.py under `mpiexec -n N`: fastbptt.distributed.fit on the scenarios
below, each twice; every rank writes what it got to OUT/rank<r>.npz.

Also imported by the test, which trains the same scenarios with the single-process fit."""

import inspect
import json
import sys

import numpy as np

import fastbptt as fb
from fastbptt import train

FIT_TAKES_LENGTHS = "lengths" in inspect.signature(train.fit).parameters


def scenarios():
    """name -> (model factory, X, Y, fit keyword arguments)."""
    rng = np.random.default_rng(7)
    T, N = 9, 11  # minibatches of 4, 4, 3: uneven parts on 2 and on 3 ranks
    X = rng.normal(size=(T, N, 3))
    Ybits = (rng.random(size=(T, N, 2)) < 0.5).astype(float)
    Xv = rng.normal(size=(T, 5, 3))
    Yv = (rng.random(size=(T, 5, 2)) < 0.5).astype(float)
    out = {
        # clipping by value and norm, a schedule, Adam, shuffled minibatches, TBPTT with k2 > k1,
        # a metric and validation
        "lstm_tbptt": (lambda: fb.RNN(3, 6, 2, cell="lstm", output="sigmoid", loss="bce", seed=3),
                       X, Ybits,
                       dict(epochs=2, batch_size=4, optimizer="adam", lr=0.05, clip_norm=0.3,
                            clip_value=0.5, schedule=fb.optim.inverse_time_decay(0.1),
                            tbptt=(3, 5), metric="bit_accuracy", validation=(Xv, Yv), seed=5)),
        # reduction "sum", the loss on the last step only, classes, sequence accuracy
        "gru_last_sum": (lambda: fb.RNN(3, 5, 4, cell="gru", output="softmax", loss="ce",
                                        target="last", reduction="sum", seed=4),
                         X, rng.integers(0, 4, size=N),
                         dict(epochs=2, batch_size=6, optimizer="momentum", lr=0.02,
                              metric="accuracy", seed=1)),
        # the whole batch in one minibatch, full BPTT, sequence accuracy
        "tanh_full": (lambda: fb.RNN(3, 4, 2, cell="tanh", output="sigmoid", loss="bce", seed=2),
                      X, Ybits, dict(iterations=3, optimizer="sgd", lr=0.5, weight_decay=0.01,
                                     metric="sequence_accuracy")),
    }
    if FIT_TAKES_LENGTHS:
        lengths = rng.integers(2, T + 1, size=N)
        out["lstm_lengths"] = (lambda: fb.RNN(3, 5, 2, cell="lstm", seed=6), X,
                               rng.normal(size=(T, N, 2)),
                               dict(epochs=2, batch_size=4, optimizer="adam", lr=0.01,
                                    lengths=lengths, tbptt=4, seed=2))
    return out


def _flat(history):
    return np.array([v if v is not None else np.nan
                     for key in ("loss", "grad_norm", "metric") if key in history.steps
                     for v in history.steps[key]], dtype=float)


def main(out_dir):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    arrays, errors = {}, {}
    for name, (make, X, Y, kwargs) in scenarios().items():
        for run in (0, 1):
            model = make()
            if rank:  # rank 0's parameters must win
                model.params.update({k: v + 1.0 for k, v in model.params.items()})
            history = fb.distributed.fit(model, X, Y, progress=False, **kwargs)
            for key, value in model.params.items():
                arrays[f"{name}/{run}/param/{key}"] = value
            arrays[f"{name}/{run}/history"] = _flat(history)
            if "val_loss" in history.epochs:
                arrays[f"{name}/{run}/val_loss"] = np.array(history.epochs["val_loss"])

    make, X, Y, kwargs = scenarios()["lstm_tbptt"]
    # rank 0 alone writes the checkpoint
    model = make()
    fb.distributed.fit(model, X, Y, progress=False, checkpoint=f"{out_dir}/ckpt.npz",
                       **{**kwargs, "epochs": 1})
    for key, value in model.params.items():
        arrays[f"checkpointed/param/{key}"] = value

    # bad input on the last rank only
    bad = X[:, :, :2] if rank == comm.Get_size() - 1 else X
    try:
        fb.distributed.fit(make(), bad, Y, progress=False, **kwargs)
    except Exception as exc:
        errors["bad_input"] = [type(exc).__name__, str(exc)]

    # a callback that fails on rank 1 only, at update 3
    def fails_on_rank_1(step, logs, model):
        if rank == 1 and step == 3:
            raise KeyError("no such thing")

    cb = train.Callback()
    cb.on_step = fails_on_rank_1
    try:
        fb.distributed.fit(make(), X, Y, progress=False, callbacks=[cb], **kwargs)
    except Exception as exc:
        errors["callback"] = [type(exc).__name__, str(exc)]

    # parameters nudged on the last rank only: the periodic check finds it
    def nudge(step, logs, model):
        if rank == comm.Get_size() - 1 and step == 2:
            model.params["b"] = model.params["b"] + 1e-9

    cb = train.Callback()
    cb.on_step = nudge
    try:
        fb.distributed.fit(make(), X, Y, progress=False, callbacks=[cb], check_every=2, **kwargs)
    except Exception as exc:
        errors["nudged"] = [type(exc).__name__, str(exc)]

    # a callback that stops training on rank 1 only
    cb = train.Callback()
    cb.on_step = lambda step, logs, model: rank == 1 and step == 2
    try:
        fb.distributed.fit(make(), X, Y, progress=False, callbacks=[cb], **kwargs)
    except Exception as exc:
        errors["stopped_alone"] = [type(exc).__name__, str(exc)]

    # a loss that overflows on rank 0's rows only
    Yhuge = np.zeros((X.shape[0], X.shape[1], 2))
    if rank == 0:
        Yhuge[:, 0] = 1e200
    try:
        fb.distributed.fit(fb.RNN(3, 4, 2, cell="tanh", seed=1), X, Yhuge, progress=False,
                           iterations=2, batch_size=4, shuffle=False)
    except Exception as exc:
        errors["nonfinite"] = [type(exc).__name__, str(exc)]

    # after all that, the ranks are still in step; the threads while training, per rank
    seen_threads = []

    def threads(step, logs, model):
        from threadpoolctl import threadpool_info

        seen_threads.append(max([model.n_threads] + [p["num_threads"] for p in threadpool_info()]))

    cb = train.Callback()
    cb.on_step = threads
    model = make()
    model.n_threads = 8
    history = fb.distributed.fit(model, X, Y, progress=False, callbacks=[cb], **kwargs)
    arrays["after_errors/history"] = _flat(history)
    np.savez(f"{out_dir}/rank{rank}.npz", **arrays)
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump({"errors": errors, "ranks": history.config["ranks"],
                   "threads_per_rank": history.config["threads_per_rank"],
                   "threads_seen": max(seen_threads), "n_threads_after": model.n_threads,
                   "fit_takes_lengths": FIT_TAKES_LENGTHS}, f)


if __name__ == "__main__":
    main(sys.argv[1])
