"""The finiteness checks find every NaN and infinity, on both of their ways (sums, extremes)."""

import numpy as np
import pytest

from fastbptt._checks import all_finite, sum_finite


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [7, 1 << 16])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_single_bad_value_is_found(dtype, n, bad, rng):
    a = rng.standard_normal(n).astype(dtype)
    assert all_finite(a) and sum_finite([a, a[:3]])
    for pos in (0, n // 2, n - 1):
        b = a.copy()
        b[pos] = bad
        assert not all_finite(b)
        assert not sum_finite([a[:5], b])


@pytest.mark.filterwarnings("ignore:overflow encountered")  # the sum's, before the exact test
def test_large_finite_values_that_overflow_a_sum_pass(rng):
    a = np.full(1 << 16, np.finfo(np.float32).max, np.float32)
    assert all_finite(a) and sum_finite([a, a[:10]])
