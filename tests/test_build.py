"""The compiled kernels must be there: a silent fallback to NumPy must never hide a broken build."""

import importlib
import re
from pathlib import Path

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


# -- the portable build (FASTBPTT_PORTABLE=1, no AVX2 + FMA) -----------------------------------------
# A build machine with AVX2 never compiles the plain-C half of cython/_tile_impl.h, and the compiler
# drops calls it can prove dead, so a kernel given only an AVX2 body imports here and breaks there
# (undefined symbol in a debug build, implicit declaration an error in newer compilers): check the
# sources instead, for both halves.

CYTHON_DIR = Path(__file__).resolve().parents[1] / "cython"


def _visible(path, tiled):
    """Names defined at file level when FASTBPTT_TILED is `tiled`: functions FB_SFX(name) and
    macros #define'd (the #if tests of other macros count as taken)."""
    names, stack = set(), []  # stack: per open #if, the FASTBPTT_TILED value it needs, or None
    for line in path.read_text().splitlines():
        d = line.strip()
        if d.startswith("#if"):
            tests_tiled = d == "#if FASTBPTT_TILED" or d == "#if defined(__AVX2__) && defined(__FMA__)"
            stack.append(True if tests_tiled else None)
        elif d.startswith("#elif"):
            assert stack[-1] is None, f"{path.name}: #elif on FASTBPTT_TILED is not understood here"
        elif d.startswith("#else"):
            stack[-1] = None if stack[-1] is None else not stack[-1]
        elif d.startswith("#endif"):
            stack.pop()
        elif all(v is None or v == tiled for v in stack):
            m = re.match(r"static\b.*\bFB_SFX\((\w+)\)\(", line) or re.match(r"#define (\w+)", d)
            if m:
                names.add(m.group(1))
    assert not stack, f"{path.name}: unbalanced #if"
    return names


def _tile_pxd_names():
    """What cython/_tile.pxd takes from _tile.h: functions (without their _d/_f) and constants."""
    text = (CYTHON_DIR / "_tile.pxd").read_text()
    block = re.search(r'cdef extern from "_tile.h" nogil:\n((?:[ \t]+.*\n|\n)+)', text).group(1)
    functions = set(re.findall(r"\b(fb_\w+)_[df]\(", block))
    constants = set(re.findall(r"^\s+int\s+(\w+)\s*$", block, re.M))
    return functions, constants


@pytest.mark.parametrize("tiled", [True, False], ids=["avx2", "portable"])
def test_every_tile_kernel_is_defined_with_and_without_avx2(tiled):
    impl = _visible(CYTHON_DIR / "_tile_impl.h", tiled)
    header = _visible(CYTHON_DIR / "_tile.h", tiled)
    # the parser sees the two halves apart: the register tile exists with AVX2 only
    assert ("fb_tile" in impl) == tiled
    functions, constants = _tile_pxd_names()
    assert {"fb_gemm_packed", "fb_elman_fwd_tiled"} <= functions and "FASTBPTT_TILED" in constants
    assert not functions - impl, f"declared in _tile.pxd, not defined: {sorted(functions - impl)}"
    assert not constants - header, f"declared in _tile.pxd, not defined: {sorted(constants - header)}"
