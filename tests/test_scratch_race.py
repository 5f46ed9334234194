"""The reused scratch arrays of the cells (cells._Scratch) under concurrent calls on one model."""

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastbptt as fb
from fastbptt import cells


@pytest.fixture
def slow_check(monkeypatch):
    """Widen the window between the check that an array is free and its hand-out: every check
    sleeps 0.5 ms after counting the references, so another thread can check the same array."""
    count = cells._Scratch._refs

    def delayed(entry):
        refs = count(entry)
        time.sleep(5e-4)
        return refs

    monkeypatch.setattr(cells._Scratch, "_refs", staticmethod(delayed))
    monkeypatch.setattr(cells, "SCRATCH_MIN_BYTES", 0)  # these small arrays go through the pool too


@pytest.mark.parametrize("cell", ["lstm", "tanh"])
def test_concurrent_calls_match_sequential_ones(cell, rng, slow_check):
    m = fb.RNN(3, 8, 2, cell=cell, backend="cython")
    data = [(rng.standard_normal((6, 2, 3)), rng.standard_normal((6, 2, 2))) for _ in range(8)]

    def run(i):
        X, Y = data[i]
        loss, grads = m.loss_and_grad(X, Y)
        return (loss, *grads.values(), *m.forward(X)[1])

    expected = [run(i) for i in range(len(data))]
    jobs = [i % len(data) for i in range(200)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(run, jobs))
    wrong = sum(not all(np.array_equal(a, b) for a, b in zip(g, expected[i], strict=True))
                for g, i in zip(got, jobs, strict=True))
    assert wrong == 0, f"{wrong} of {len(jobs)} concurrent results differ from the sequential ones"
