"""Which kernels run: "cython" (compiled), "numpy" (reference) or "python" (pure-Python baseline).

One function, `resolve_backend`, decides: the `backend=` argument, else the FASTBPTT_BACKEND environment
variable, else "auto" (Cython when built, NumPy with one warning when not).
"""

import importlib
import os
import platform
import sys
import warnings

import numpy as np

BACKENDS = ("auto", "cython", "numpy", "python")
FAMILIES = ("elman", "lstm", "gru")

_BUILD_HINT = (
    "build it with `pip install .` from the source tree (a C compiler is needed), "
    "or `python setup.py build_ext --inplace` for development"
)


def _import_compiled():
    found, errors = {}, {}
    for family in FAMILIES:
        try:
            found[family] = importlib.import_module(f"fastbptt._{family}")
        except ImportError as exc:  # a missing or broken build
            errors[family] = str(exc)
    return found, errors


_COMPILED, _COMPILE_ERRORS = _import_compiled()
HAVE_CYTHON = "elman" in _COMPILED
_warned = False


def resolve_backend(backend: str | None = None) -> str:
    """The concrete backend ("cython", "numpy" or "python") that a request resolves to.

    Parameters
    ----------
    backend : {"auto", "cython", "numpy", "python"}, optional
        None: the ``FASTBPTT_BACKEND`` environment variable, else "auto". "auto" is "cython" when
        the extension is built, else "numpy" (with one warning).

    Returns
    -------
    str

    Raises
    ------
    ValueError
        For an unknown name.
    ImportError
        For "cython" when the extension is not built; the message says how to build it.
    """
    global _warned
    if backend is None:
        backend = os.environ.get("FASTBPTT_BACKEND", "auto") or "auto"
    if not isinstance(backend, str) or backend.lower() not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    backend = backend.lower()
    if backend == "auto":
        if HAVE_CYTHON:
            return "cython"
        if not _warned:
            warnings.warn(
                "fastbptt's compiled kernels are not built; using the slower NumPy backend "
                f"({_BUILD_HINT})",
                RuntimeWarning,
                stacklevel=3,
            )
            _warned = True
        return "numpy"
    if backend in ("auto", "cython") and HAVE_CYTHON:
        from . import _simd

        _simd.current()  # refuses a FASTBPTT_SIMD set this CPU cannot run, or an unknown name
    if backend == "cython" and not HAVE_CYTHON:
        why = _COMPILE_ERRORS.get("elman", "not found")
        raise ImportError(f"backend 'cython' requested but the compiled kernels are missing ({why}); "
                          + _BUILD_HINT)
    return backend


def kernels(family, backend):
    """The kernel module for a cell family ("elman", "lstm", "gru") under a concrete backend."""
    if family not in FAMILIES:
        raise ValueError(f"unknown cell family {family!r}; expected one of {', '.join(FAMILIES)}")
    if backend == "cython":
        if family not in _COMPILED:
            why = _COMPILE_ERRORS.get(family, "not found")
            raise ImportError(f"compiled kernel fastbptt._{family} is missing ({why}); " + _BUILD_HINT)
        return _COMPILED[family]
    if backend == "numpy":
        return importlib.import_module(f"fastbptt.reference.{family}")
    if backend == "python":
        return importlib.import_module(f"fastbptt.reference.{family}_pure")
    raise ValueError(f"unknown backend {backend!r}; expected one of cython, numpy, python")


def config() -> dict:
    """The build and runtime configuration as a dict (what `show_config` prints)."""
    info = {
        "fastbptt": _version(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "numpy": np.__version__,
        "compiled_kernels": sorted(_COMPILED),
        "missing_kernels": {k: v for k, v in _COMPILE_ERRORS.items()},
        "default_backend": resolve_backend_quiet(),
        "FASTBPTT_BACKEND": os.environ.get("FASTBPTT_BACKEND"),
    }
    from . import _simd

    try:
        info["simd"] = _simd.current() if HAVE_CYTHON else None
    except (ValueError, RuntimeError) as exc:
        info["simd"] = f"error: {exc}"
    info["simd_supported"] = list(_simd.supported()) if HAVE_CYTHON else []
    info["simd_built"] = list(_simd.built())
    info["FASTBPTT_SIMD"] = os.environ.get("FASTBPTT_SIMD")
    try:
        import scipy

        info["scipy"] = scipy.__version__
    except ImportError:  # scipy is a dependency; report rather than fail
        info["scipy"] = None
    try:
        from . import _build

        info["openmp"] = _build.OPENMP
        info["openmp_max_threads"] = _build.max_threads()
        info["vector_math"] = _build.VECTOR_MATH
        info["cflags"] = _build.CFLAGS
        info["native"] = _build.NATIVE
        info["l1d_bytes"] = _build.L1D_BYTES
        info["l2_bytes"] = _build.L2_BYTES
    except ImportError:
        info["openmp"] = None
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE"):
        info[var] = os.environ.get(var)
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture", "filepath")}
            for p in threadpool_info()
        ]
    except ImportError:
        info["blas"] = "install threadpoolctl to list the BLAS libraries"
    return info


def resolve_backend_quiet():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return resolve_backend(None)
    except (ValueError, ImportError, RuntimeError) as exc:
        return f"error: {exc}"


def _version():
    from ._version import __version__

    return __version__


def show_config() -> None:
    """Print how fastbptt was built and which kernels run (`config`, one line per entry)."""
    for key, value in config().items():
        print(f"{key:>22}: {value}")
