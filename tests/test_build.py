"""The compiled kernels must be there: a silent fallback to NumPy must never hide a broken build."""

import importlib
import os
import platform
import subprocess
import sys

import pytest

import fastbptt


@pytest.mark.parametrize(
    "module", ["fastbptt._elman", "fastbptt._lstm", "fastbptt._gru", "fastbptt._build"])
def test_compiled_module_importable(module):
    mod = importlib.import_module(module)
    assert mod.__file__.endswith((".so", ".pyd")), f"{module} is not a compiled extension: {mod.__file__}"


def test_have_cython_and_auto_is_cython(monkeypatch):
    monkeypatch.delenv("FASTBPTT_BACKEND", raising=False)
    assert fastbptt.HAVE_CYTHON
    assert fastbptt.resolve_backend("auto") == "cython"
    assert fastbptt.RNN(2, 3, 1).backend == "cython"


def test_show_config_reports_build(capsys):
    fastbptt.show_config()
    out = capsys.readouterr().out
    assert "compiled_kernels" in out and "elman" in out and "lstm" in out and "gru" in out
    assert "openmp" in out


# -- one build for every CPU: the kernels of each SIMD set, one chosen at import ---------------------

def test_default_build_is_not_tied_to_the_build_machine():
    """The build under test is the default one (CI builds it so): no -march=native nor any SIMD
    flag on the modules themselves; the wider sets live in their own kernel tables. A build made
    with FASTBPTT_NATIVE=1 fails here on purpose."""
    from fastbptt import _build
    assert "-march" not in _build.CFLAGS and "-mavx" not in _build.CFLAGS, _build.CFLAGS
    assert not _build.NATIVE
    assert "baseline" in _build.SIMD_BUILT
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert set(_build.SIMD_BUILT) == {"avx512", "avx2", "baseline"}


def test_config_reports_the_simd_set(monkeypatch):
    monkeypatch.delenv("FASTBPTT_SIMD", raising=False)
    info = fastbptt.config()
    assert info["simd_supported"] and info["simd_supported"][-1] == "baseline"
    assert info["simd"] == info["simd_supported"][0]  # the best one by default


_SIMD_CHILD = """
import fastbptt
try:
    m = fastbptt.RNN(2, 8, 1, cell="lstm", backend="cython")
except Exception as exc:
    print(type(exc).__name__, exc)
else:
    import numpy as np
    m.loss_and_grad(np.ones((3, 2, 2)), np.ones((3, 2, 1)))
    print("ran", fastbptt.config()["simd"])
"""


@pytest.mark.parametrize("name", ["avx512", "avx2", "baseline", "sse9"])
def test_forced_simd_set_runs_or_is_refused(name):
    """FASTBPTT_SIMD at import, as users set it: a set the CPU runs is used; one it lacks is refused
    with a RuntimeError at model creation (never an illegal instruction); an unknown name is a
    ValueError naming the valid ones."""
    from fastbptt import _simd
    env = dict(os.environ, FASTBPTT_SIMD=name, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", _SIMD_CHILD], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    if name == "sse9":
        assert out.stdout.startswith("ValueError") and "avx512, avx2, baseline" in out.stdout
    elif name in _simd.supported():
        assert out.stdout.strip() == f"ran {name}"
    else:
        assert out.stdout.startswith("RuntimeError") and "cannot run" in out.stdout
