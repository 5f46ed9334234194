"""The finiteness checks find every NaN and infinity, on each of their ways (the compiled test,
sums, extremes)."""

import numpy as np
import pytest

from fastbptt import _checks
from fastbptt._checks import all_finite, sum_finite


@pytest.fixture(params=["compiled", "numpy"])
def way(request, monkeypatch):
    """Each test runs on the compiled test and on NumPy's reductions."""
    if request.param == "numpy":
        monkeypatch.setattr(_checks, "_compiled_finite", None)
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [7, 1 << 16])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_single_bad_value_is_found(dtype, n, bad, rng, way):
    a = rng.standard_normal(n).astype(dtype)
    assert all_finite(a) and sum_finite([a, a[:3]])
    for pos in (0, n // 2, n - 1):
        b = a.copy()
        b[pos] = bad
        assert not all_finite(b)
        assert not sum_finite([a[:5], b])


@pytest.mark.filterwarnings("ignore:overflow encountered")  # the sum's, before the exact test
def test_large_finite_values_that_overflow_a_sum_pass(rng, way):
    a = np.full(1 << 16, np.finfo(np.float32).max, np.float32)
    assert all_finite(a) and sum_finite([a, a[:10]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_compiled_test_reads_bits_not_sums(dtype):
    """NaNs of any payload and sign, both infinities, and nothing else: the largest and the
    smallest (subnormal) finite values pass; other arrays are left to NumPy (None)."""
    from fastbptt._build import all_finite as compiled

    info = np.finfo(dtype)
    fine = np.array([0.0, -0.0, info.max, -info.max, info.smallest_subnormal, 1.0], dtype)
    assert compiled(fine) is True and compiled(fine[:0]) is True
    uint = np.uint32 if dtype == np.float32 else np.uint64
    exponent = np.array(np.inf, dtype).view(uint)  # every exponent bit set, no mantissa
    for bits in (exponent, exponent | 1, exponent | (uint(1) << uint(info.nmant - 1))):
        for sign in (uint(0), uint(1) << uint(info.bits - 1)):
            bad = fine.copy()
            bad[3:4].view(uint)[0] = bits | sign  # inf, a signalling and a quiet NaN, both signs
            assert not np.isfinite(bad[3]) and compiled(bad) is False
    assert compiled(fine[::2]) is None and compiled(np.ones(3, np.int64)) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [37, 1 << 13])
def test_the_range_test_finds_every_value_outside(dtype, n, rng, way):
    """all_within (bce targets in [0, 1]): the ends pass, a value just outside either end, a NaN
    and both infinities fail, anywhere in the array; an empty array passes."""
    a = rng.random(n).astype(dtype)
    a[0], a[-1] = 0, 1
    assert _checks.all_within(a, 0, 1) and _checks.all_within(a[:0], 0, 1)
    below, above = -np.finfo(dtype).smallest_subnormal, np.nextafter(dtype(1), dtype(2))
    for bad in (below, above, np.nan, np.inf, -np.inf):
        for pos in (0, n // 2, n - 1):
            b = a.copy()
            b[pos] = bad
            assert not _checks.all_within(b, 0, 1), (bad, pos)
            assert not _checks.all_within(b.reshape(1, n, 1), 0, 1)
    assert _checks.all_within(np.arange(3), 0, 2) and not _checks.all_within(a[::2] + 1, 0, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_compiled_tests_leave_other_arrays_to_numpy(dtype):
    """The range test and the one-call test of several arrays answer None (not a guess) for an
    array they do not read: strided, integer, or not an ndarray."""
    from fastbptt._build import all_within, each_finite

    a = np.linspace(0, 1, 6, dtype=dtype)
    assert all_within(a, 0, 1) is True and all_within(a, 0.5, 1) is False
    assert all_within(a[::2], 0, 1) is None and all_within(np.arange(3), 0, 3) is None
    bad = a.copy()
    bad[2] = np.nan
    assert each_finite([a, a[:2]]) is True and each_finite(()) is True
    assert each_finite([a, bad]) is False and each_finite((bad, a[::2])) is False
    assert each_finite([a, a[::2]]) is None and each_finite([a, [1.0]]) is None
    assert sum_finite([a[::2], a]) and not sum_finite([a[::2], bad])  # NumPy's way then
