/* Which kernel tables this build holds and which of them the CPU can run. Compiled with the baseline
 * flags: nothing here may use an instruction the oldest supported CPU lacks. */
#include <string.h>
#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#include "_kernels.h"

const fb_kernels* fb_kernels_named(const char* name) {
#ifdef FASTBPTT_BUILT_AVX512
    if (strcmp(name, "avx512") == 0) return &fb_kernels_avx512;
#endif
#ifdef FASTBPTT_BUILT_AVX2
    if (strcmp(name, "avx2") == 0) return &fb_kernels_avx2;
#endif
    if (strcmp(name, "baseline") == 0) return &fb_kernels_baseline;
    return NULL;
}

const char* fb_kernels_built(void) {
    return ""
#ifdef FASTBPTT_BUILT_AVX512
           "avx512,"
#endif
#ifdef FASTBPTT_BUILT_AVX2
           "avx2,"
#endif
           "baseline";
}

int fb_cpu_runs(const char* name) {
    if (strcmp(name, "baseline") == 0) return 1;
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    /* __builtin_cpu_supports reads CPUID and XGETBV: a set counts only when the OS saves its
     * registers, so a kernel without zmm state support reports no avx512f */
    __builtin_cpu_init();
    if (strcmp(name, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (strcmp(name, "avx512") == 0)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return 0;
}

static int l1d_bytes = 32768;
static long l2_bytes = 1L << 20;

/* Read at load (before any thread can ask): the kernels size their blocks by them. Compilers
 * without load-time constructors keep the defaults. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((constructor)) static void fb_read_caches(void) {
#ifdef _SC_LEVEL1_DCACHE_SIZE
    long n = sysconf(_SC_LEVEL1_DCACHE_SIZE);
    if (n >= 16384 && n <= (1L << 22)) l1d_bytes = (int)n;
#endif
#ifdef _SC_LEVEL2_CACHE_SIZE
    long m = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (m >= 65536 && m <= (1L << 30)) l2_bytes = m;
#endif
}
#endif

int fb_l1d_bytes(void) { return l1d_bytes; }

long fb_l2_bytes(void) { return l2_bytes; }
