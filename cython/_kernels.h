/* The table of per-step vector kernels, one instance per SIMD set (baseline, AVX2 + FMA, AVX-512).
 *
 * csrc/kernel_table.c compiles the same width-generic bodies (_tile.h, _vmath.h, _lstm_pointwise.h,
 * _gru_pointwise.h)
 * once per set with that set's flags, exporting one `fb_kernels` each; csrc/cpu.c tells which the
 * CPU can run;
 * the Cython modules call through the one bound at import (_dispatch.h).
 */
#ifndef FASTBPTT_KERNELS_H
#define FASTBPTT_KERNELS_H

#include <stddef.h>

/* the sequence kernels handle n = NV * width units for NV up to this, and fold dA into the weight
 * gradients every FB_TB steps, while those rows are still in L1 */
#define FB_NV_MAX 8
#define FB_TB 32

#define FB_KERNEL_FIELDS(FT, SFX)                                                                    \
    int lanes_##SFX;                                                                                 \
    size_t (*pack_size_##SFX)(ptrdiff_t K, ptrdiff_t N);                                             \
    void (*pack_##SFX)(const FT* B, ptrdiff_t ldb, int trans, ptrdiff_t K, ptrdiff_t N, FT* P);    \
    void (*gemm_packed_##SFX)(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const FT* A, ptrdiff_t lda,   \
                              const FT* P, const FT* bias, const FT* C0, ptrdiff_t ldc0, FT* C,    \
                              ptrdiff_t ldc);                                                      \
    size_t (*gemm_tn_work_##SFX)(ptrdiff_t M, ptrdiff_t N);                                          \
    void (*gemm_tn_##SFX)(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const FT* A, ptrdiff_t lda,       \
                          const FT* B, ptrdiff_t ldb, FT* C, ptrdiff_t ldc, FT* work);             \
    ptrdiff_t (*elman_fwd_##SFX)(int nv, int act, ptrdiff_t T, const FT* Wt, const FT* A,          \
                                 ptrdiff_t sa, const FT* X, ptrdiff_t sx, ptrdiff_t I,             \
                                 const FT* Ut, const FT* bias, FT* H, ptrdiff_t sh, ptrdiff_t O,   \
                                 const FT* V, const FT* c, FT* out, ptrdiff_t so);                 \
    ptrdiff_t (*elman_bwd_##SFX)(int nv, int act, ptrdiff_t T, const FT* W, const FT* H,           \
                                 ptrdiff_t sh, const FT* dH, ptrdiff_t sg, const FT* dO,           \
                                 ptrdiff_t so, ptrdiff_t O, const FT* V, FT* dA, ptrdiff_t sa,     \
                                 FT* dh, const FT* X, ptrdiff_t sx, ptrdiff_t I, FT* G, FT* db,    \
                                 FT* ring, FT* work);                                              \
    ptrdiff_t (*elman_fwd_tiled_##SFX)(int act, const FT* PW, const FT* A, const FT* X,            \
                                       ptrdiff_t I, const FT* PU, const FT* bias, FT* H,           \
                                       ptrdiff_t T, ptrdiff_t B, ptrdiff_t n, ptrdiff_t O,         \
                                       const FT* V, const FT* PV, const FT* c, FT* out,            \
                                       int n_threads);                                             \
    size_t (*gemm_tn_cat_work_##SFX)(void);                                                          \
    ptrdiff_t (*elman_bwd_tiled_##SFX)(int act, const FT* P, const FT* H, const FT* dH,            \
                                       const FT* dO, ptrdiff_t O, const FT* PV, int fold_dO,       \
                                       FT* dA, FT* dh, const FT* X, ptrdiff_t I, FT* G,            \
                                       ptrdiff_t ldg, FT* db, FT* ring, FT* work, ptrdiff_t span,  \
                                       ptrdiff_t T, ptrdiff_t B, ptrdiff_t n, int n_threads);      \
    int (*all_finite_##SFX)(const FT* x, ptrdiff_t n);                                               \
    void (*vtanh_##SFX)(FT* x, ptrdiff_t n);                                                         \
    void (*tanh_##SFX)(FT* x, ptrdiff_t n);                                                          \
    void (*vsigmoid_##SFX)(FT* x, ptrdiff_t n);                                                      \
    void (*lstm_fwd_##SFX)(FT* z, const FT* cp, FT* c, FT* h, ptrdiff_t rows, ptrdiff_t n);        \
    void (*lstm_bwd_##SFX)(const FT* G, const FT* cp, const FT* c, const FT* dho, const FT* dhn,   \
                           FT* dc, FT* da, ptrdiff_t rows, ptrdiff_t n);                           \
    void (*gru_bwd_##SFX)(const FT* G, const FT* hn, const FT* hp, const FT* dho, FT* dh, FT* da,  \
                          FT* dg, ptrdiff_t rows, ptrdiff_t n);                                    \
    void (*cols_##SFX)(const FT* src, ptrdiff_t lds, ptrdiff_t rows, ptrdiff_t cols, FT* dst,      \
                       ptrdiff_t ldd);                                                             \
    void (*add_rows_##SFX)(const FT* X, const FT* v, const FT* y0, FT* y, ptrdiff_t p, ptrdiff_t m);

typedef struct fb_kernels {
    const char* name;
    /* 1 where the register-tiled products and sequence kernels exist (vector sets); 0: plain C */
    int tiled;
    int vector_math; /* glibc's libmvec behind vtanh / vsigmoid */
    ptrdiff_t (*chunks)(int n_threads, ptrdiff_t rows);
    FB_KERNEL_FIELDS(double, d)
    FB_KERNEL_FIELDS(float, f)
} fb_kernels;
#undef FB_KERNEL_FIELDS

/* Each exists when setup.py built that set (FASTBPTT_BUILT_AVX2 / _AVX512 in csrc/cpu.c). */
extern const fb_kernels fb_kernels_baseline;
extern const fb_kernels fb_kernels_avx2;
extern const fb_kernels fb_kernels_avx512;

/* The table of a set by name ("avx512", "avx2", "baseline"), or NULL when it was not built. */
const fb_kernels* fb_kernels_named(const char* name);
/* 1 when this CPU and its OS can run the set (the zmm / ymm state saved on context switches). */
int fb_cpu_runs(const char* name);
/* The sets this build holds, best first, comma-separated. */
const char* fb_kernels_built(void);

#endif
