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
    int FASTBPTT_NATIVE

cdef extern from "_kernels.h" nogil:
    int fb_cpu_runs(const char* name)
    const char* fb_kernels_built()

OPENMP = bool(FASTBPTT_OPENMP)
VECTOR_MATH = bool(FASTBPTT_HAVE_LIBMVEC)
CFLAGS = FASTBPTT_CFLAGS.decode()
NATIVE = bool(FASTBPTT_NATIVE)
# the SIMD sets whose kernels this build holds, best first
SIMD_BUILT = tuple(fb_kernels_built().decode().split(","))


def cpu_runs(str name):
    """True when this CPU (and its OS) can run the instructions of SIMD set `name`."""
    return bool(fb_cpu_runs(name.encode()))


def max_threads():
    """OpenMP's default thread count (1 without OpenMP)."""
    return fastbptt_max_threads()
