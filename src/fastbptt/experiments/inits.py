"""Seed 001's comparison: binary addition trained from three weight initialisations, several seeds
each, the runs spread over an executor."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .binary_addition import addition
from .runner import call, iter_results
from .summary import run_line

INITS_001 = ("fan_in", "uniform", "uniform_positive")


def compare_inits(inits: Iterable = INITS_001, seeds: Iterable[int] = (0, 1, 2, 3, 4),
                  log: Callable[[str], None] | None = None, executor=None, workers=None,
                  **kwargs) -> list[dict]:
    """Seed 001's comparison: `addition` for every init x seed, same data and budget per seed, run
    by run_many (on `executor`, else a local pool of `workers` processes).

    Parameters
    ----------
    inits : iterable, default INITS_001
        Initialisers to compare ("fan_in", "uniform", "uniform_positive").
    seeds : iterable of int, default (0, 1, 2, 3, 4)
        One run per seed and initialiser.
    log : callable, optional
        Called with one line per finished run.
    executor : concurrent.futures.Executor, optional
        Where the runs go (see `run_many`); None: a local pool of `workers` processes.
    workers : int, optional
        The local pool's size (default: one per core, at most one per run).
    **kwargs
        Passed on to `addition`.

    Returns
    -------
    list of dict
        The results, labelled "init=NAME"; `summarize` gives the iterations to 100 % per init.
    """
    runs = [(addition, dict(init=init, seed=seed, label=f"init={init}", **kwargs))
            for init in inits for seed in seeds]
    results = []
    for result in iter_results(call, runs, executor, workers):
        if log is not None:
            log(run_line(result))
        results.append(result)
    return results
