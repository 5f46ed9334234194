import os
import platform

import numpy as np
import pytest
from hypothesis import settings

# the property tests' budget: "ci" (the default) keeps the suite's time modest and runs the same
# examples every time; HYPOTHESIS_PROFILE=thorough draws ten times as many, fresh each run
settings.register_profile("ci", max_examples=150, deadline=None, derandomize=True,
                          print_blob=True)
settings.register_profile("thorough", max_examples=1500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

TOL = {np.float64: 1e-12, np.float32: 1e-5}


@pytest.fixture
def seed():
    """The tests' base seed: FASTBPTT_TESTS_SEED, else 0."""
    return int(os.environ.get("FASTBPTT_TESTS_SEED", "0"))


@pytest.fixture(params=["baseline", "avx2", "avx512"])
def simd(request, monkeypatch):
    """Runs a test once per SIMD set of the compiled kernels, chosen by FASTBPTT_SIMD as a user
    would. A set this CPU cannot run is skipped (a host limit); one an x86-64 build lacks fails.
    With FASTBPTT_SIMD set for the whole run, only that set runs."""
    from fastbptt import _simd

    name = request.param
    forced = os.environ.get("FASTBPTT_SIMD")
    if forced and forced != name:
        pytest.skip(f"FASTBPTT_SIMD={forced} restricts this run to that set")
    if name not in _simd.built():
        if platform.machine().lower() in ("x86_64", "amd64"):
            pytest.fail(f"this x86-64 build holds no {name} kernels (built: {_simd.built()})")
        pytest.skip(f"{platform.machine()} builds hold the baseline kernels only")
    if name not in _simd.supported():
        pytest.skip(f"this CPU cannot run {name} (it runs {', '.join(_simd.supported())})")
    monkeypatch.setenv("FASTBPTT_SIMD", name)
    _simd.use()
    yield name
    monkeypatch.undo()
    _simd.use()


@pytest.fixture
def rng(seed):
    return np.random.default_rng(seed)


def assert_close(actual, expected, dtype, what=""):
    """Max abs difference within the dtype's tolerance, relative to the values' scale (at least 1)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    err = float(np.abs(actual - expected).max(initial=0.0))
    tol = TOL[np.dtype(dtype).type]
    assert err <= tol * scale, f"{what}: max abs error {err:.3g} > {tol:g} x scale {scale:.3g}"


# cases tried by the generated tests (checkpoint fuzzing, the property test), reported at the end
_CASES = {}


def count_cases(kind, n=1):
    _CASES[kind] = _CASES.get(kind, 0) + n


def pytest_terminal_summary(terminalreporter):
    for kind, n in sorted(_CASES.items()):
        terminalreporter.write_line(f"{kind}: {n} cases tried")
