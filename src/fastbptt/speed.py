"""Time the backends against each other on one workload (what `fastbptt bench` and bench/ run).

A workload is a whole training step: input projection, recurrence, linear head, mse loss (reduction
sum), backward through time and every gradient. Cost is linear in T, so the slow backends are timed on
a prefix of the sequence and compared per step.
"""

import statistics
import time

import numpy as np

from .model import RNN


def timeit(fn, repeats=5):
    """Median and minimum wall time of `fn()` over `repeats` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median": statistics.median(times), "min": min(times), "repeats": repeats}


def compare_backends(cell="tanh", input_size=2, hidden_size=16, output_size=1, batch=1, T=100_000,
                     dtype=np.float64, backends=("cython", "numpy", "python"), steps=None,
                     repeats=5, n_threads=1, seed=0, report=None):
    """Microseconds per time step of forward + full BPTT for each backend, and the speed-ups.

    `steps` maps a backend to the number of steps it is timed on (default: NumPy 20,000, pure
    Python 2,000, the rest T). The backends take turns within each repeat, so a change in the
    machine's load touches them alike and the speed-ups stay fair. `report` gets each backend's row.
    """
    steps = {"numpy": 20_000, "python": 2_000, **(steps or {})}
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    X = rng.normal(size=(T, batch, input_size)).astype(dtype)
    Y = rng.normal(size=(T, batch, output_size)).astype(dtype)
    calls, counts = {}, {}
    for backend in backends:
        n = min(T, steps.get(backend, T))
        m = RNN(input_size, hidden_size, output_size, cell=cell, reduction="sum", dtype=dtype,
                backend=backend, n_threads=n_threads, seed=seed)
        calls[backend] = lambda m=m, n=n: m.loss_and_grad(X[:n], Y[:n])
        counts[backend] = n
        calls[backend]()  # warm-up
    times = {backend: [] for backend in backends}
    for _ in range(repeats):
        for backend, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[backend].append(time.perf_counter() - start)
    rows = {}
    for backend in backends:
        n = counts[backend]
        rows[backend] = {"T": n, "us_per_step": statistics.median(times[backend]) / n * 1e6,
                         "us_per_step_min": min(times[backend]) / n * 1e6, "repeats": repeats}
        if report:
            report(backend, rows[backend])
    if "cython" in rows:
        for other in rows:
            if other != "cython":
                rows["cython"][f"speedup_vs_{other}"] = (rows[other]["us_per_step"]
                                                         / rows["cython"]["us_per_step"])
    return rows
