/* The table of per-step vector kernels, one instance per SIMD set (baseline, AVX2 + FMA, AVX-512).
 *
 * csrc/kernel_table.c compiles the same width-generic bodies (_tile.h with _tile_impl.h and
 * _elman_impl.h, _vmath.h, _lstm_pointwise.h, _gru_pointwise.h) once per set with that set's flags,
 * exporting one `fb_kernels` each; csrc/cpu.c tells which the CPU can run; the Cython modules call
 * through the one bound at import (_dispatch.h).
 */
#ifndef FASTBPTT_KERNELS_H
#define FASTBPTT_KERNELS_H

#include <stddef.h>

/* the sequence kernels handle n = NV * width units for NV up to this, and fold dA into the weight
 * gradients every FB_TB steps, while those rows are still in L1 */
#define FB_NV_MAX 8
#define FB_TB 32

/* The arrays of one sequence for the sequence kernels elman_fwd / elman_bwd. Pointers are to the
 * kernel's element type (double for _d, float for _f); rows of a (T, B, k) array are the s* strides
 * apart. Fields a kernel does not use are NULL / 0. */
typedef struct fb_seq_args {
    int act;              /* 0 tanh, 1 relu, 2 step (forward only) */
    ptrdiff_t T, n;       /* steps, units */
    ptrdiff_t n_in, n_out; /* inputs, head outputs (0: no head) */
    const void* Wh;       /* (n, n): transposed for elman_fwd, as given for elman_bwd */
    const void* Wx_t;     /* (n_in, n) Wx transposed: elman_fwd forms a_t = b + Wx x_t when A is NULL */
    const void* b;        /* (n) bias, with Wx_t */
    const void* A;        /* elman_fwd: the pre-activations a_t, or NULL */
    void* dA;             /* elman_bwd: the gradients at a_t, or NULL */
    ptrdiff_t sa;         /* A's / dA's */
    const void* X;        /* inputs x_t (elman_fwd with Wx_t; elman_bwd with G) */
    ptrdiff_t sx;
    void* H;              /* h_0 .. h_T: elman_fwd writes h_1.., elman_bwd reads them */
    ptrdiff_t sh;
    const void* V;        /* (n_out, n) a linear head's weights, or NULL */
    const void* c;        /* (n_out) its bias: elman_fwd */
    void* out;            /* elman_fwd: logits V h_t + c, or NULL */
    const void* dO;       /* elman_bwd: the gradient at the logits, or NULL */
    ptrdiff_t so;         /* out's / dO's */
    const void* dH;       /* elman_bwd: the loss gradient at h_t, or NULL */
    ptrdiff_t sg;
    void* dh;             /* elman_bwd: (n) dL/dh_T in, dL/dh_0 out */
    void* G;              /* elman_bwd: (n_in + n, n) += [dWx | dWh]^T, or NULL */
    void* db;             /* (n) += db, with G */
    void* ring;           /* (FB_TB, n) scratch, with G when dA is NULL */
    void* work;           /* elman_bwd_work(n_in, n) elements of scratch, with G */
} fb_seq_args;

/* One block of steps of the tiled backward, for its weight-gradient fold elman_fold: `rows` rows in
 * all (per_step of them a step), contiguous. Pointers as in fb_seq_args. */
typedef struct fb_fold_args {
    const void* dA;       /* (rows, n) gradients at the pre-activations */
    const void* H;        /* (rows, n) the states before each step */
    const void* X;        /* (rows, n_in) the inputs */
    const void* dO;       /* (rows, n_out) the gradient at the logits, or NULL */
    int dO_first;         /* the block starts at step 0: no dO of the step before */
    ptrdiff_t n, n_in, n_out, rows, per_step;
    void* G;              /* (n [+ n_out], ldg) [dWh | dWx] [+ dV rows] */
    ptrdiff_t ldg;        /* G's columns: whole panels, >= n + n_in */
    void* db;             /* (n) */
} fb_fold_args;

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
    int (*elman_seq_ok_##SFX)(ptrdiff_t n);                                                         \
    size_t (*elman_bwd_work_##SFX)(ptrdiff_t n_in, ptrdiff_t n);                                     \
    ptrdiff_t (*elman_fwd_##SFX)(const fb_seq_args* a);                                              \
    ptrdiff_t (*elman_bwd_##SFX)(const fb_seq_args* a);                                              \
    void (*elman_act_##SFX)(int act, FT* h, ptrdiff_t m);                                            \
    void (*elman_dact_##SFX)(int act, const FT* g, const FT* base, const FT* h, FT* a, ptrdiff_t m); \
    void (*logits_rows_##SFX)(ptrdiff_t rows, ptrdiff_t n, ptrdiff_t O, const FT* h, const FT* V,   \
                              const FT* c, FT* out);                                                 \
    size_t (*elman_fold_work_##SFX)(void);                                                           \
    void (*elman_fold_##SFX)(const fb_fold_args* a, ptrdiff_t lo, ptrdiff_t hi, FT* work);          \
    int (*all_finite_##SFX)(const FT* x, ptrdiff_t n);                                               \
    void (*vtanh_##SFX)(FT* x, ptrdiff_t n);                                                         \
    void (*tanh_##SFX)(FT* x, ptrdiff_t n);                                                          \
    void (*vsigmoid_##SFX)(FT* x, ptrdiff_t n);                                                      \
    void (*lstm_fwd_##SFX)(FT* z, const FT* cp, FT* c, FT* h, ptrdiff_t rows, ptrdiff_t n,       \
                           FT* gout);                                                             \
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
/* The bytes of a core's L1 data cache and L2 (32 KB and 1 MB where the OS does not say), read
 * once at load. */
int fb_l1d_bytes(void);
long fb_l2_bytes(void);

#endif
