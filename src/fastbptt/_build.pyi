"""Type stub for the build information module (cython/_build.pyx)."""

OPENMP: bool
VECTOR_MATH: bool
CFLAGS: str

def max_threads() -> int: ...
