"""With n_threads > 1 the model runs BLAS on one thread while it works (so BLAS's spinning threads
do not take the cores the kernels' threads wait for), and gives the pools back as they were."""

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import fastbptt as fb
from fastbptt import heads


def _blas_threads():
    return sorted(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


@pytest.fixture
def seen(monkeypatch):
    """BLAS thread counts observed while the head runs (it always runs inside the model's work)."""
    log = []
    original = heads.Head.loss_and_grad

    def spy(self, *args, **kwargs):
        log.append(_blas_threads())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(heads.Head, "loss_and_grad", spy)
    return log


@pytest.mark.parametrize("cell", ["tanh", "lstm"])
def test_blas_runs_single_while_kernels_use_two_threads(cell, seen, rng):
    X, Y = rng.normal(size=(6, 4, 3)), rng.normal(size=(6, 4, 2))
    with threadpool_limits(2, user_api="blas"):
        before = _blas_threads()
        model = fb.RNN(3, 8, 2, cell=cell, n_threads=2)
        model.loss_and_grad(X, Y)
        model.fit(X, Y, iterations=2, progress=False)
        model.fit(X, Y, iterations=2, tbptt=3, progress=False)
        assert _blas_threads() == before
    assert seen and all(counts == [1] * len(counts) for counts in seen)


def test_one_kernel_thread_leaves_blas_alone(seen, rng):
    X, Y = rng.normal(size=(6, 4, 3)), rng.normal(size=(6, 4, 2))
    with threadpool_limits(2, user_api="blas"):
        fb.RNN(3, 8, 2, n_threads=1).loss_and_grad(X, Y)
    assert seen == [[2] * len(seen[0])]


def test_pools_are_given_back_after_an_error(rng):
    model = fb.RNN(3, 8, 2, n_threads=2)
    with threadpool_limits(2, user_api="blas"):
        before = _blas_threads()
        with pytest.raises(ValueError):
            model.loss_and_grad(np.zeros((6, 4, 5)), np.zeros((6, 4, 2)))
        assert _blas_threads() == before
    assert np.isfinite(model.loss_and_grad(rng.normal(size=(6, 4, 3)),
                                           rng.normal(size=(6, 4, 2)))[0])


def test_a_library_already_at_one_thread_is_left_alone(monkeypatch, rng):
    """Inside a user's limit of one BLAS thread, the model's call sets no library (a nested call
    is the same case); outside it, each library is set to one and given its count back."""
    from fastbptt._threads import _blas_libraries

    X, Y = rng.normal(size=(6, 4, 3)), rng.normal(size=(6, 4, 2))
    model = fb.RNN(3, 8, 2, n_threads=2)
    model.loss_and_grad(X, Y)  # finds the libraries
    libraries = _blas_libraries()
    assert libraries
    sets = []
    for lib in libraries:
        monkeypatch.setattr(lib, "set_num_threads",
                            lambda n, lib=lib, set_=lib.set_num_threads: sets.append(n) or set_(n))
    with threadpool_limits(1, user_api="blas"):
        model.loss_and_grad(X, Y)
    assert sets == []
    with threadpool_limits(2, user_api="blas"):
        model.loss_and_grad(X, Y)
        assert _blas_threads() == [2] * len(libraries)
    assert sets == [1] * len(libraries) + [2] * len(libraries)
