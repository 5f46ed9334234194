"""Which SIMD set the compiled kernels run: the best this CPU can run, or FASTBPTT_SIMD's.

The build holds every set's kernels (baseline, AVX2 + FMA, AVX-512 F/BW/DQ/VL on x86-64; the baseline
elsewhere); each compiled module calls through the table it was bound to. `use()` binds them all.
A set the CPU lacks is refused here, before any of its instructions could run.
"""

import os

SETS = ("avx512", "avx2", "baseline")  # best first

_modules = {}  # module name -> its bind function
_current = None
_error = None


def built():
    """The sets this build holds, best first (empty without the compiled kernels)."""
    try:
        from . import _build
    except ImportError:
        return ()
    return tuple(s for s in SETS if s in _build.SIMD_BUILT)


def supported():
    """The sets this build holds that this CPU can run, best first."""
    from . import _build

    return tuple(s for s in built() if _build.cpu_runs(s))


def choose(name=None):
    """The set to run: `name`, else FASTBPTT_SIMD, else the best supported. ValueError for an unknown
    name, RuntimeError for a set this CPU (or build) cannot run."""
    if name is None:
        name = os.environ.get("FASTBPTT_SIMD") or None
    ok = supported()
    if name is None:
        return ok[0]
    if not isinstance(name, str) or name.lower() not in SETS:
        raise ValueError(f"FASTBPTT_SIMD={name!r} is not a SIMD set; expected one of {', '.join(SETS)}")
    name = name.lower()
    if name not in ok:
        why = "this build does not hold it" if name not in built() else "this CPU cannot run it"
        raise RuntimeError(f"FASTBPTT_SIMD={name!r} refused: {why}; this machine runs "
                           f"{', '.join(ok)}")
    return name


def use(name=None):
    """Bind every compiled module to set `name` (default: FASTBPTT_SIMD, else the best supported).
    On a refused name the modules keep their set and the error is raised."""
    global _current, _error
    try:
        chosen = choose(name)
    except (ValueError, RuntimeError) as exc:
        _error = exc
        raise
    for bind in _modules.values():
        bind(chosen)
    _current, _error = chosen, None
    return chosen


def register(module, bind):
    """Called by each compiled module at import: bind it to the set in use (the baseline while the
    requested one is refused, so nothing runs an instruction the CPU lacks)."""
    global _current, _error
    _modules[module] = bind
    if _current is None and _error is None:
        try:
            _current = choose()
        except (ValueError, RuntimeError) as exc:
            _error = exc
    bind(_current or "baseline")


def current():
    """The set in use; raises the refusal when FASTBPTT_SIMD named one that cannot run."""
    if _error is not None:
        raise _error
    return _current
