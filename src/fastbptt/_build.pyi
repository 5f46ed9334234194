"""Type stub for the build information module (cython/_build.pyx)."""

from collections.abc import Iterable

import numpy as np

OPENMP: bool
VECTOR_MATH: bool
NATIVE: bool
CFLAGS: str
SIMD_BUILT: tuple[str, ...]

def cpu_runs(name: str) -> bool: ...
def max_threads() -> int: ...
def all_finite(a: np.ndarray) -> bool | None: ...
def each_finite(arrays: Iterable[np.ndarray]) -> bool | None: ...
def all_within(a: np.ndarray, lo: float, hi: float) -> bool | None: ...
