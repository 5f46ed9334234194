"""The compiled drivers' work areas (fastbptt._build.Area) and their pool
(fastbptt._kernel_args.WorkPool): an area is handed out again only after it was given back, never to
two calls at once, and the pool stays bounded."""

import sys
import threading

import numpy as np
import pytest

import fastbptt as fb
from fastbptt._build import Area
from fastbptt._kernel_args import WORK, WorkPool


def test_areas_start_on_a_cache_line_and_refuse_a_negative_size():
    for nbytes in (0, 1, 100, 3 << 20):  # 3 MB: on huge pages where the OS gives them
        area = Area(nbytes)
        assert len(area) == nbytes and area.address % 64 == 0
    big = Area(3 << 20)
    assert big.address % (2 << 20) == 0 or sys.platform != "linux"
    with pytest.raises(ValueError, match="nbytes"):
        Area(-1)


def test_an_area_comes_back_only_after_it_was_given_back():
    pool = WorkPool(keep=2)
    a = pool.take(1000)
    assert len(a) >= 1000 and a.address % 64 == 0
    b = pool.take(1000)
    assert b is not a
    pool.give(a)
    assert pool.take(1000) is a
    assert pool.take(1000) is not b  # b was never given back


def test_sizes_far_apart_get_their_own_area():
    pool = WorkPool()
    small = pool.take(100)
    pool.give(small)
    big = pool.take(10_000)
    assert big is not small and len(big) >= 10_000
    pool.give(big)
    assert pool.take(100) is small  # a kept area over twice the need is left for larger calls


def test_the_pool_keeps_few_and_small_enough_areas():
    pool = WorkPool(keep=2, largest=4096)
    areas = [pool.take(1000) for _ in range(3)]
    for a in areas:
        pool.give(a)
    assert pool.take(1000) is areas[2] and pool.take(1000) is areas[1]
    fresh = pool.take(1000)
    assert all(fresh is not a for a in areas)  # the oldest was dropped
    huge = pool.take(8192)
    pool.give(huge)
    assert pool.take(8192) is not huge
    capped = WorkPool(keep=4, most=2500)
    first, second = capped.take(1000), capped.take(1000)
    capped.give(first)
    capped.give(second)  # 2000 bytes kept: both stay
    third = capped.take(1000)
    assert third is second
    capped.give(third)
    capped.give(capped.take(1200))  # 3200 bytes: the oldest, first, goes
    kept = capped._spare
    assert all(a is not first for a in kept) and any(a is second for a in kept)
    assert sum(len(a) for a in kept) <= 2500


def test_threads_never_hold_the_same_area():
    pool = WorkPool(keep=8)
    held, lock = [], threading.Lock()

    def work():
        for _ in range(200):
            a = pool.take(512)
            with lock:
                assert all(a is not b for b in held)
                held.append(a)
            with lock:
                held.remove(a)
            pool.give(a)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_gated_models_give_the_same_gradients_from_a_reused_area(rng):
    # the second call runs on the area the first gave back (the pool is the package's own)
    for cell in ("lstm", "gru"):
        m = fb.RNN(5, 40, 3, cell=cell, seed=2)
        X, Y = rng.normal(size=(12, 33, 5)), rng.normal(size=(12, 33, 3))
        first = m.loss_and_grad(X, Y)
        spare = len(WORK._spare)
        again = m.loss_and_grad(X, Y)
        assert spare > 0 and len(WORK._spare) == spare
        assert again[0] == first[0]
        for k in first[1]:
            np.testing.assert_array_equal(again[1][k], first[1][k])
