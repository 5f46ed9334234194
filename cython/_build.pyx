"""How the compiled kernels were built (read by fastbptt.show_config)."""

cdef extern from *:
    """
    #ifndef FASTBPTT_OPENMP
    #define FASTBPTT_OPENMP 0
    #endif
    #ifdef FASTBPTT_LIBMVEC
    #define FASTBPTT_HAVE_LIBMVEC 1
    #else
    #define FASTBPTT_HAVE_LIBMVEC 0
    #endif
    #ifndef FASTBPTT_CFLAGS
    #define FASTBPTT_CFLAGS ""
    #endif
    #if FASTBPTT_OPENMP
    #include <omp.h>
    static int fastbptt_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int fastbptt_max_threads(void) { return 1; }
    #endif
    """
    int FASTBPTT_OPENMP
    int FASTBPTT_HAVE_LIBMVEC
    const char* FASTBPTT_CFLAGS
    int fastbptt_max_threads() noexcept nogil

OPENMP = bool(FASTBPTT_OPENMP)
VECTOR_MATH = bool(FASTBPTT_HAVE_LIBMVEC)
CFLAGS = FASTBPTT_CFLAGS.decode()


def max_threads():
    """OpenMP's default thread count (1 without OpenMP)."""
    return fastbptt_max_threads()
