"""Many runs (seeds, sweeps) on a local process pool, a Dask cluster or any
concurrent.futures.Executor, results in the order of the configs."""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import os

from .._checks import positive_int

_ONE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def call(run):
    """run = (function, keyword arguments): the function's result. What run_many's fn is when the
    runs call different functions (the command line's seeds and recipes)."""
    fn, kwargs = run
    return fn(**kwargs)


def _one_blas_thread(fn, config):
    """fn(config) with BLAS and OpenMP on one thread: the workers share the cores between them."""
    from .._threads import _blas_pools

    pools = _blas_pools()
    if pools is None:  # threadpoolctl is missing: the local pool's environment still says one
        return fn(config)
    with pools.limit(limits=1):
        return fn(config)


@contextlib.contextmanager
def _environment(**values):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def iter_results(fn, configs, executor=None, workers=None):
    """Yield fn(config) for every config, in the order of `configs`, each as soon as it and the
    ones before it have finished; see run_many."""
    configs = list(configs)
    own = executor is None
    if own:
        workers = max(1, min(len(configs), os.cpu_count() or 1) if workers is None
                      else positive_int("workers", workers))
        executor = concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        # the pool starts its workers while the runs are submitted: they inherit one thread
        with _environment(**dict.fromkeys(_ONE_THREAD, "1")) if own else contextlib.nullcontext():
            futures = [executor.submit(_one_blas_thread, fn, config) for config in configs]
        for future in futures:
            yield future.result()
    finally:
        if own:
            executor.shutdown(cancel_futures=True)


def run_many(fn, configs, executor=None, workers=None):
    """``[fn(config) for config in configs]``, run on a concurrent.futures.Executor.

    The results come in the order of `configs`, whatever order they finish in, and equal a serial
    run's bitwise: every run depends on its config alone. Every run has BLAS and OpenMP on one
    thread, so that the workers share the cores between them.

    Parameters
    ----------
    fn : callable
        ``fn(config)`` runs one training and returns its result. It must pickle (a function of a
        module, not a lambda), and so must the configs and the results. `call` runs
        ``(function, kwargs)`` pairs, for runs of different functions.
    configs : iterable
        One config per run.
    executor : concurrent.futures.Executor, optional
        A Dask cluster's (`dask_executor`, or ``distributed.Client(...).get_executor()``),
        ``mpi4py.futures.MPIPoolExecutor()``, a process pool, ...; None starts a local pool of
        processes and shuts it down after.
    workers : int, optional
        The local pool's size (default: one per core, at most one per config).

    Returns
    -------
    list
        fn's results, in the order of `configs`.

    Raises
    ------
    Exception
        The first run (in the order of `configs`) to raise raises here.
    """
    return list(iter_results(fn, configs, executor, workers))


class _DaskExecutor(concurrent.futures.Executor):
    """A Dask client's executor that closes the client when it shuts down."""

    def __init__(self, client):
        self.client = client
        self.inner = client.get_executor()

    def submit(self, fn, /, *args, **kwargs):
        return self.inner.submit(fn, *args, **kwargs)

    def shutdown(self, wait=True, *, cancel_futures=False):
        self.inner.shutdown(wait=wait)
        self.client.close()


def dask_executor(address):
    """A concurrent.futures.Executor on a Dask cluster, for `run_many`.

    Parameters
    ----------
    address : str
        The scheduler's address, such as ``"tcp://head:8786"``.

    Returns
    -------
    concurrent.futures.Executor
        Its ``shutdown()`` (or the end of a ``with`` block) also closes the Dask client.

    Raises
    ------
    ImportError
        Without distributed (the ``dask`` extra).
    """
    try:
        from distributed import Client
    except ImportError as exc:
        raise ImportError("running on a Dask cluster needs distributed: pip install "
                          "'fastbptt[dask]'") from exc
    return _DaskExecutor(Client(address))
