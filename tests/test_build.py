"""The compiled kernels must be there: a silent fallback to NumPy must never hide a broken build."""

import importlib

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
