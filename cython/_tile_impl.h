/* Body of _tile.h, instantiated once per element type (FT, FB_SFX, FB_W and the V* macros set by it).
 * No include guard: it is meant to be included twice. */

#define FB_NR (2 * FB_W)
/* A tile's packed strip of A^T: whole registers of at least FB_MR values (a copy may spill past mr) */
#define FB_STRIP ((FB_MR + FB_W - 1) / FB_W * FB_W)

/* Elements the packed copy of a K x N operand takes (N rounded up to whole panels). */
static inline size_t FB_SFX(fb_pack_size)(ptrdiff_t K, ptrdiff_t N) {
    return (size_t)((N + FB_NR - 1) / FB_NR) * (size_t)K * FB_NR;
}

/* P <- op(B) (K x N) in panels of NR columns, zero past N.
 * op(B)[k][j] = B[k * ldb + j], or B[j * ldb + k] when trans. */
static inline void FB_SFX(fb_pack)(const FT* B, ptrdiff_t ldb, int trans, ptrdiff_t K, ptrdiff_t N,
                                    FT* P) {
    ptrdiff_t panels = (N + FB_NR - 1) / FB_NR;
    for (ptrdiff_t p = 0; p < panels; p++) {
        FT* dst = P + p * K * FB_NR;
        if (trans) {
            /* B's rows read in order, written down a column of the panel (which stays in L1): the
             * other order would read NR rows at once with a stride */
            for (ptrdiff_t c = 0; c < FB_NR; c++) {
                ptrdiff_t j = p * FB_NR + c;
                for (ptrdiff_t k = 0; k < K; k++) dst[k * FB_NR + c] = j < N ? B[j * ldb + k] : (FT)0;
            }
            continue;
        }
        if ((p + 1) * FB_NR <= N) {
            /* a whole panel: two register copies a row */
            for (ptrdiff_t k = 0; k < K; k++) {
                VSTORE(dst + k * FB_NR, VLOAD(B + k * ldb + p * FB_NR));
                VSTORE(dst + k * FB_NR + FB_W, VLOAD(B + k * ldb + p * FB_NR + FB_W));
            }
            continue;
        }
        for (ptrdiff_t k = 0; k < K; k++) {
            for (ptrdiff_t c = 0; c < FB_NR; c++) {
                ptrdiff_t j = p * FB_NR + c;
                dst[k * FB_NR + c] = j < N ? B[k * ldb + j] : (FT)0;
            }
        }
    }
}


/* One mr x NR tile over kb steps of k: C = C0 + A @ panel (C0 may be NULL, or C itself). */
static inline __attribute__((always_inline)) void FB_SFX(fb_tile)(
        const int mr, ptrdiff_t kb, const FT* A, ptrdiff_t lda, const FT* Pp, const FT* bias,
        const FT* C0, ptrdiff_t ldc0, FT* C, ptrdiff_t ldc, ptrdiff_t ncols) {
    VT c0[FB_MR], c1[FB_MR];
    FT bpad[FB_NR] = {0};
    if (bias) memcpy(bpad, bias, (size_t)ncols * sizeof(FT));
    for (int r = 0; r < mr; r++) {
        c0[r] = VLOAD(bpad);
        c1[r] = VLOAD(bpad + FB_W);
    }
    for (ptrdiff_t k = 0; k < kb; k++) {
        VT b0 = VLOAD(Pp + k * FB_NR), b1 = VLOAD(Pp + k * FB_NR + FB_W);
        for (int r = 0; r < mr; r++) {
            VT a = VBCAST(A[r * lda + k]);
            c0[r] = VFMA(a, b0, c0[r]);
            c1[r] = VFMA(a, b1, c1[r]);
        }
    }
    if (ncols == FB_NR) {
        for (int r = 0; r < mr; r++) {
            if (C0) {
                c0[r] = VADD(c0[r], VLOAD(C0 + r * ldc0));
                c1[r] = VADD(c1[r], VLOAD(C0 + r * ldc0 + FB_W));
            }
            VSTORE(C + r * ldc, c0[r]);
            VSTORE(C + r * ldc + FB_W, c1[r]);
        }
    } else {
        FT buf[FB_NR];
        for (int r = 0; r < mr; r++) {
            VSTORE(buf, c0[r]);
            VSTORE(buf + FB_W, c1[r]);
            for (ptrdiff_t j = 0; j < ncols; j++)
                C[r * ldc + j] = buf[j] + (C0 ? C0[r * ldc0 + j] : (FT)0);
        }
    }
}

/* C (M x N) = C0 + bias + A (M x K) @ op(B), op(B) packed by fb_pack; bias (N) is added to every
 * row. C0 and bias may be NULL; C0 may be C itself. */
static inline void FB_SFX(fb_gemm_packed)(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const FT* A,
                                           ptrdiff_t lda, const FT* P, const FT* bias, const FT* C0,
                                           ptrdiff_t ldc0, FT* C, ptrdiff_t ldc) {
    ptrdiff_t panels = (N + FB_NR - 1) / FB_NR;
    ptrdiff_t tiles = (M + FB_MR - 1) / FB_MR;
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        for (ptrdiff_t m = 0; m < M; m++)
            for (ptrdiff_t j = 0; j < N; j++)
                C[m * ldc + j] = (C0 ? C0[m * ldc0 + j] : (FT)0) + (bias ? bias[j] : (FT)0);
        return;
    }
    /* K in equal chunks of about FB_KC (a short last chunk would store and reload C for little) */
    const ptrdiff_t kchunks = (K + FB_KC / 2) / FB_KC > 1 ? (K + FB_KC / 2) / FB_KC : 1;
    const ptrdiff_t kstep = (K + kchunks - 1) / kchunks;
    for (ptrdiff_t kc = 0; kc < K; kc += kstep) {
        ptrdiff_t kb = K - kc < kstep ? K - kc : kstep;
        for (ptrdiff_t p = 0; p < panels; p++) {
            const FT* Pp = P + p * K * FB_NR + kc * FB_NR;
            ptrdiff_t ncols = N - p * FB_NR < FB_NR ? N - p * FB_NR : FB_NR;
            ptrdiff_t m = 0;
            for (ptrdiff_t t = 0; t < tiles; t++) {
                /* rows spread evenly over the tiles: a 2-row leftover tile would run latency-bound */
                int mr = (int)((M - m + (tiles - t) - 1) / (tiles - t));
                const FT* c0;
                const FT* bp = kc == 0 && bias ? bias + p * FB_NR : NULL;
                ptrdiff_t ld0;
                if (kc == 0) {
                    c0 = C0 ? C0 + m * ldc0 + p * FB_NR : NULL;
                    ld0 = ldc0;
                } else {
                    c0 = C + m * ldc + p * FB_NR;
                    ld0 = ldc;
                }
                const FT* a = A + m * lda + kc;
                FT* c = C + m * ldc + p * FB_NR;
#define FB_CALL(MR) FB_SFX(fb_tile)(MR, kb, a, lda, Pp, bp, c0, ld0, c, ldc, ncols)
                FB_MR_SWITCH(mr, FB_CALL)
#undef FB_CALL
                m += mr;
            }
        }
    }
}

/* One mr x NR tile of C += A^T B over K rows: the tile's mr values of A's row k at A + k * sa
 * (sa = mr once packed), B's row k at B + k * ldb (B is read in place). */
static inline __attribute__((always_inline)) void FB_SFX(fb_tile_tn)(
        const int mr, ptrdiff_t K, const FT* A, ptrdiff_t sa, const FT* B, ptrdiff_t ldb, FT* C,
        ptrdiff_t ldc) {
    VT c0[FB_MR], c1[FB_MR];
    /* sums start from zero and C is added at the end, so no FMA waits for C to arrive from memory;
     * C's lines are asked for now, to be in L1 by then */
    for (int r = 0; r < mr; r++) {
        c0[r] = VZERO();
        c1[r] = VZERO();
        __builtin_prefetch(C + r * ldc, 1);
        __builtin_prefetch(C + r * ldc + FB_NR - 1, 1);
    }
    for (ptrdiff_t k = 0; k < K; k++) {
        VT b0 = VLOAD(B + k * ldb), b1 = VLOAD(B + k * ldb + FB_W);
        for (int r = 0; r < mr; r++) {
            VT a = VBCAST(A[k * sa + r]);
            c0[r] = VFMA(a, b0, c0[r]);
            c1[r] = VFMA(a, b1, c1[r]);
        }
    }
    for (int r = 0; r < mr; r++) {
        VSTORE(C + r * ldc, VADD(VLOAD(C + r * ldc), c0[r]));
        VSTORE(C + r * ldc + FB_W, VADD(VLOAD(C + r * ldc + FB_W), c1[r]));
    }
}

#define FB_TN_TILE(MR) FB_SFX(fb_tile_tn)(MR, kb, a, sa, b, sb, c, ldc)

/* Elements of the scratch fb_gemm_tn packs its operands into, for M x N results. */
static inline size_t FB_SFX(fb_gemm_tn_work)(ptrdiff_t M, ptrdiff_t N) {
    (void)M;
    (void)N;
    return (size_t)FB_KC * (size_t)(FB_MC + FB_NC) + (size_t)(FB_MC / FB_MR + 2) * FB_STRIP;
}

/* C (M x N) += A^T B with A (K x M) and B (K x N) row-major: the weight-gradient product
 * sum_k a_k^T b_k. `work` (fb_gemm_tn_work elements, or NULL to read in place) is scratch: per chunk
 * of K rows both operands are first packed into it, A's columns tile by tile and
 * B's panel by panel: rows of the same matrix 2^k bytes apart would otherwise fall into the same few
 * L1 sets and evict each other. Whole panels of NR columns run tiled, the last N % NR plainly. */
static inline void FB_SFX(fb_gemm_tn)(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const FT* A,
                                       ptrdiff_t lda, const FT* B, ptrdiff_t ldb, FT* C,
                                       ptrdiff_t ldc, FT* work) {
    ptrdiff_t all_panels = N / FB_NR;
    if (M <= 0 || N <= 0 || K <= 0) return;
    /* operands that fit in L1 together gain nothing from packing */
    FT* packed = all_panels && (size_t)K * (size_t)(M + N) * sizeof(FT) > 16384 ? work : NULL;
    FT* bpack = packed ? packed + (size_t)FB_KC * FB_MC + (size_t)(FB_MC / FB_MR + 2) * FB_STRIP
                       : NULL;
    /* blocks of FB_NC columns and FB_KC rows of B: the packed block of B and the packed block of A
     * both stay in L2 */
    for (ptrdiff_t nc = 0; nc < all_panels * FB_NR; nc += FB_NC)
    for (ptrdiff_t kc = 0; kc < K; kc += FB_KC) {
        ptrdiff_t kb = K - kc < FB_KC ? K - kc : FB_KC;
        ptrdiff_t panels = (all_panels * FB_NR - nc < FB_NC ? all_panels * FB_NR - nc : FB_NC) / FB_NR;
        if (packed) {
            /* B's panels for this block, row by row so each source row is read once, in order */
            for (ptrdiff_t k = 0; k < kb; k++) {
                const FT* brow = B + (kc + k) * ldb + nc;
                for (ptrdiff_t p = 0; p < panels; p++) {
                    VSTORE(bpack + (p * kb + k) * FB_NR, VLOAD(brow + p * FB_NR));
                    VSTORE(bpack + (p * kb + k) * FB_NR + FB_W, VLOAD(brow + p * FB_NR + FB_W));
                }
            }
        }
        /* blocks of FB_MC rows of C, so the packed block of A stays in L2 across B's panels */
        for (ptrdiff_t mc = 0; mc < M; mc += FB_MC) {
            ptrdiff_t mb = M - mc < FB_MC ? M - mc : FB_MC;
            ptrdiff_t tiles = (mb + FB_MR - 1) / FB_MR;
            /* each tile's first row and row count, worked out once: a division per row of A
             * inside the packing loop cost as much as a fifth of the product */
            int tile_mr[FB_MC / FB_MR + 1];
            ptrdiff_t tile_m[FB_MC / FB_MR + 1];
            for (ptrdiff_t t = 0, m = 0; t < tiles; t++) {
                tile_mr[t] = (int)((mb - m + (tiles - t) - 1) / (tiles - t));
                tile_m[t] = m;
                m += tile_mr[t];
            }
            if (packed) {
                /* strip by strip down the rows (the per-copy offsets and tests of a row-by-row
                 * order cost more than the copies); strips are FB_STRIP apart so the whole-register
                 * copy of a row may spill past mr */
                for (ptrdiff_t t = 0; t < tiles; t++) {
                    ptrdiff_t m = tile_m[t];
                    int mr = tile_mr[t];
                    const FT* src = A + kc * lda + mc + m;
                    FT* dst = packed + m * kb + t * FB_STRIP;
                    if (mc + m + FB_STRIP <= M) {
                        for (ptrdiff_t k = 0; k < kb; k++, src += lda, dst += mr)
                            for (int q = 0; q < FB_STRIP; q += FB_W) VSTORE(dst + q, VLOAD(src + q));
                    } else {
                        for (ptrdiff_t k = 0; k < kb; k++, src += lda, dst += mr)
                            for (int r = 0; r < mr; r++) dst[r] = src[r];
                    }
                }
            }
            for (ptrdiff_t p = 0; p < panels; p++) {
                for (ptrdiff_t t = 0; t < tiles; t++) {
                    ptrdiff_t m = tile_m[t];
                    int mr = tile_mr[t];
                    /* without the scratch, read both in place */
                    const FT* a = packed ? packed + m * kb + t * FB_STRIP : A + kc * lda + mc + m;
                    ptrdiff_t sa = packed ? mr : lda;
                    const FT* b = packed ? bpack + p * kb * FB_NR : B + kc * ldb + nc + p * FB_NR;
                    ptrdiff_t sb = packed ? FB_NR : ldb;
                    FT* c = C + (mc + m) * ldc + nc + p * FB_NR;
                    FB_MR_SWITCH(mr, FB_TN_TILE)
                }
            }
        }
    }
    for (ptrdiff_t i = 0; i < M; i++)
        for (ptrdiff_t j = all_panels * FB_NR; j < N; j++) {
            FT s = C[i * ldc + j];
            for (ptrdiff_t k = 0; k < K; k++) s += A[k * lda + i] * B[k * ldb + j];
            C[i * ldc + j] = s;
        }
}
#undef FB_TN_TILE

/* ---- Elman recurrence of one sequence, n = NV * width units, the whole time loop in one call ----------
 * Rows are `s*` elements apart (the batch interleaves sequences). Keeping one sequence through all its
 * steps avoids any per-step overhead; it is the path for a batch of one or two. */

/* The sums of the lanes of FB_W accumulators, as one vector (lane j: the sum of a[j]'s lanes). */
static inline __attribute__((always_inline)) VT FB_SFX(fb_lane_sums)(const VT* a) {
#if defined(FB_SET_AVX2) && FB_W == 8
    VT u0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    VT u1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
#elif defined(FB_SET_AVX2)
    VT t0 = _mm256_hadd_pd(a[0], a[1]), t1 = _mm256_hadd_pd(a[2], a[3]);
    return _mm256_add_pd(_mm256_permute2f128_pd(t0, t1, 0x20), _mm256_permute2f128_pd(t0, t1, 0x31));
#else
    VT sums;
    for (int j = 0; j < FB_W; j++) {
        FT s = 0;
        for (int l = 0; l < FB_W; l++) s += a[j][l];
        sums[j] = s;
    }
    return sums;
#endif
}

static inline __attribute__((always_inline)) VT FB_SFX(fb_act)(int act, VT s) {
    const VT zero = VZERO();
    if (act == 0) return VTANH(s);
    if (act == 1) return VMAX(zero, s); /* NaN passes: max returns its second operand */
    return VAND(VGT(s, zero), VBCAST((FT)1));
}

/* h_t = f(a_t + W h_{t-1}) for t = 0..T-1 (H points at h_0, rows sh apart). a_t is A's row t, or
 * bias + U x_t formed here when X is given (Ut = U transposed, I x n). Wt is W transposed.
 * With out, a linear output layer's logits too: out's row t (rows so apart) = V h_{t+1} + c, V (O x n),
 * while h_{t+1} is in registers (no step waits for them). Returns the first step whose state is not
 * finite, or -1. */
static inline __attribute__((always_inline)) ptrdiff_t FB_SFX(fb_elman_fwd_nv)(
        const int NV, int act, ptrdiff_t T, const FT* Wt, const FT* A, ptrdiff_t sa, const FT* X,
        ptrdiff_t sx, ptrdiff_t I, const FT* Ut, const FT* bias, FT* H, ptrdiff_t sh, ptrdiff_t O,
        const FT* V, const FT* c, FT* out, ptrdiff_t so) {
    const ptrdiff_t n = (ptrdiff_t)NV * FB_W;
    const VT zero = VZERO();
    VT acc0[FB_NV_MAX], acc1[FB_NV_MAX];
    for (ptrdiff_t t = 0; t < T; t++) {
        const FT* hp = H + t * sh;
        FT* hn = H + (t + 1) * sh;
        if (X) {
            const FT* x = X + t * sx;
            for (int v = 0; v < NV; v++) acc0[v] = VLOAD(bias + v * FB_W);
            for (ptrdiff_t k = 0; k < I; k++) {
                VT xk = VBCAST(x[k]);
                for (int v = 0; v < NV; v++) acc0[v] = VFMA(xk, VLOAD(Ut + k * n + v * FB_W), acc0[v]);
            }
        } else {
            for (int v = 0; v < NV; v++) acc0[v] = VLOAD(A + t * sa + v * FB_W);
        }
        for (int v = 0; v < NV; v++) acc1[v] = zero;
        if (NV <= 4) {
            /* two interleaved sums halve the FMA dependency chain */
#pragma GCC unroll 64
            for (ptrdiff_t j = 0; j < n; j += 2) {
                VT h0 = VBCAST(hp[j]), h1 = VBCAST(hp[j + 1]);
                for (int v = 0; v < NV; v++) {
                    acc0[v] = VFMA(h0, VLOAD(Wt + j * n + v * FB_W), acc0[v]);
                    acc1[v] = VFMA(h1, VLOAD(Wt + (j + 1) * n + v * FB_W), acc1[v]);
                }
            }
        } else {
            /* wide rows: NV sums are already enough in flight, and 2 NV would not fit in registers */
#pragma GCC unroll 64
            for (ptrdiff_t j = 0; j < n; j++) {
                VT hj = VBCAST(hp[j]);
                for (int v = 0; v < NV; v++) acc0[v] = VFMA(hj, VLOAD(Wt + j * n + v * FB_W), acc0[v]);
            }
        }
        VT nan = zero;
        for (int v = 0; v < NV; v++) {
            acc0[v] = FB_SFX(fb_act)(act, VADD(acc0[v], acc1[v]));
            VSTORE(hn + v * FB_W, acc0[v]);
            nan = VADD(nan, VMUL(acc0[v], zero));
        }
        if (VANY_NAN(nan)) return t;
        for (ptrdiff_t o0 = 0; out && o0 < O; o0 += FB_W) {
            /* a dot product per output unit, FB_W of them summed across their lanes at once */
            VT dots[FB_W];
            FT sums[FB_W];
            for (int j = 0; j < FB_W; j++) {
                const FT* v = V + (o0 + j < O ? o0 + j : o0) * n;
                dots[j] = VMUL(acc0[0], VLOAD(v));
                for (int k = 1; k < NV; k++) dots[j] = VFMA(acc0[k], VLOAD(v + k * FB_W), dots[j]);
            }
            VSTORE(sums, FB_SFX(fb_lane_sums)(dots));
            for (ptrdiff_t j = 0; j < FB_W && o0 + j < O; j++) out[t * so + o0 + j] = c[o0 + j] + sums[j];
        }
    }
    return -1;
}

/* G[k] += sum over the rows of z_r[k] da_r, z_r = (x_r, h_r), for `rows` rows; db += sum of da_r.
 * G is (I + n) x n: its first I rows are dU transposed, the rest dW transposed. */
static inline __attribute__((always_inline)) void FB_SFX(fb_wgrad_nv)(
        const int NV, ptrdiff_t rows, const FT* dA, ptrdiff_t sa, const FT* X, ptrdiff_t sx,
        ptrdiff_t I, const FT* H, ptrdiff_t sh, FT* G, FT* db, FT* work) {
    const ptrdiff_t n = (ptrdiff_t)NV * FB_W, K = I + n;
    if (n % FB_NR == 0) {
        /* whole panels: the tiled A^T B, dU^T from the inputs and dW^T from the states */
        if (I > 0) FB_SFX(fb_gemm_tn)(I, n, rows, X, sx, dA, sa, G, n, work);
        FB_SFX(fb_gemm_tn)(n, n, rows, H, sh, dA, sa, G + I * n, n, work);
        VT s[FB_NV_MAX];
        for (int v = 0; v < NV; v++) s[v] = VLOAD(db + v * FB_W);
        for (ptrdiff_t r = 0; r < rows; r++)
            for (int v = 0; v < NV; v++) s[v] = VADD(s[v], VLOAD(dA + r * sa + v * FB_W));
        for (int v = 0; v < NV; v++) VSTORE(db + v * FB_W, s[v]);
        return;
    }
    /* kb rows of G at a time: about 12 independent sums cover the FMA latency on both pipes */
    enum { KB = 12 };
    static const FT none[1] = {0};
    VT acc[KB][FB_NV_MAX];
    const int kb = NV >= 7 ? 1 : 12 / NV;
    for (ptrdiff_t k0 = 0; k0 < K; k0 += kb) {
        const FT* z[KB];
        ptrdiff_t sz[KB];
        for (int q = 0; q < kb; q++) {
            ptrdiff_t k = k0 + q;
            z[q] = k < I ? X + k : k < K ? H + (k - I) : none;
            sz[q] = k < I ? sx : k < K ? sh : 0;
            for (int v = 0; v < NV; v++) acc[q][v] = k < K ? VLOAD(G + k * n + v * FB_W) : VZERO();
        }
        for (ptrdiff_t r = 0; r < rows; r++) {
            const FT* da = dA + r * sa;
            for (int q = 0; q < kb; q++) {
                VT zq = VBCAST(z[q][r * sz[q]]);
                for (int v = 0; v < NV; v++) acc[q][v] = VFMA(zq, VLOAD(da + v * FB_W), acc[q][v]);
            }
        }
        for (int q = 0; q < kb; q++)
            if (k0 + q < K)
                for (int v = 0; v < NV; v++) VSTORE(G + (k0 + q) * n + v * FB_W, acc[q][v]);
    }
    for (int v = 0; v < NV; v++) acc[0][v] = VLOAD(db + v * FB_W);
    for (ptrdiff_t r = 0; r < rows; r++)
        for (int v = 0; v < NV; v++) acc[0][v] = VADD(acc[0][v], VLOAD(dA + r * sa + v * FB_W));
    for (int v = 0; v < NV; v++) VSTORE(db + v * FB_W, acc[0][v]);
}

/* Backward through time for one sequence: da_t = (g_t + dh) f'(a_t), dh <- W^T da_t, for t = T-1..0,
 * where g_t, the loss gradient reaching h_t, is dH's row t (dH may be NULL: zero) plus, when dO is
 * given, dO_t V: dO's row t holds the O gradients at a linear head's outputs (rows so apart), V (O x n)
 * the head's weights, so the (T x n) dH never has to exist.
 * dh holds dh_T on entry and dh_0 on return. H points at h_0 (rows sh apart), dH and dA at step 0.
 * When G is given, dU^T / dW^T / db are accumulated (fb_wgrad) every FB_TB steps; dA may then be NULL,
 * and `ring` (FB_TB x n) holds the last block instead. Returns the first bad step, or -1. */
static inline __attribute__((always_inline)) ptrdiff_t FB_SFX(fb_elman_bwd_nv)(
        const int NV, int act, ptrdiff_t T, const FT* W, const FT* H, ptrdiff_t sh, const FT* dH,
        ptrdiff_t sg, const FT* dO, ptrdiff_t so, ptrdiff_t O, const FT* V, FT* dA, ptrdiff_t sa,
        FT* dh, const FT* X, ptrdiff_t sx, ptrdiff_t I, FT* G, FT* db, FT* ring, FT* work) {
    const ptrdiff_t n = (ptrdiff_t)NV * FB_W;
    const VT zero = VZERO(), one = VBCAST((FT)1);
    VT d[FB_NV_MAX], acc0[FB_NV_MAX], acc1[FB_NV_MAX];
    ptrdiff_t end = T; /* rows [t + 1, end) are waiting to be folded into G */
    for (int v = 0; v < NV; v++) d[v] = VLOAD(dh + v * FB_W);
    for (ptrdiff_t t = T - 1; t >= 0; t--) {
        const FT* h = H + (t + 1) * sh;
        ptrdiff_t start = end - FB_TB > 0 ? end - FB_TB : 0; /* first row of the current block */
        FT* da = dA ? dA + t * sa : ring + (t - start) * n;
        /* g_t first: it does not wait for dh, so only one add joins the chain through time */
        VT g[FB_NV_MAX];
        for (int v = 0; v < NV; v++) g[v] = dH ? VLOAD(dH + t * sg + v * FB_W) : zero;
        if (dO) {
            for (ptrdiff_t o = 0; o < O; o++) {
                VT q = VBCAST(dO[t * so + o]);
                for (int v = 0; v < NV; v++) g[v] = VFMA(q, VLOAD(V + o * n + v * FB_W), g[v]);
            }
        }
        for (int v = 0; v < NV; v++) {
            VT x = VADD(g[v], d[v]);
            VT hv = VLOAD(h + v * FB_W);
            x = act == 0 ? VMUL(x, VSUB(one, VMUL(hv, hv))) : VMUL(x, VAND(VGT(hv, zero), one));
            VSTORE(da + v * FB_W, x);
            acc0[v] = zero;
            acc1[v] = zero;
        }
        if (NV <= 4) {
#pragma GCC unroll 64
            for (ptrdiff_t i = 0; i < n; i += 2) {
                VT a0 = VBCAST(da[i]), a1 = VBCAST(da[i + 1]);
                for (int v = 0; v < NV; v++) {
                    acc0[v] = VFMA(a0, VLOAD(W + i * n + v * FB_W), acc0[v]);
                    acc1[v] = VFMA(a1, VLOAD(W + (i + 1) * n + v * FB_W), acc1[v]);
                }
            }
        } else {
#pragma GCC unroll 64
            for (ptrdiff_t i = 0; i < n; i++) {
                VT ai = VBCAST(da[i]);
                for (int v = 0; v < NV; v++) acc0[v] = VFMA(ai, VLOAD(W + i * n + v * FB_W), acc0[v]);
            }
        }
        VT nan = zero;
        for (int v = 0; v < NV; v++) {
            d[v] = VADD(acc0[v], acc1[v]);
            nan = VADD(nan, VMUL(d[v], zero));
        }
        if (VANY_NAN(nan)) return t;
        if (G && t == start) {
            const FT* rows_dA = dA ? dA + start * sa : ring;
            FB_SFX(fb_wgrad_nv)(NV, end - start, rows_dA, dA ? sa : n, X ? X + start * sx : X, sx, I,
                                H + start * sh, sh, G, db, work);
            end = start;
        }
    }
    for (int v = 0; v < NV; v++) VSTORE(dh + v * FB_W, d[v]);
    return -1;
}

/* The same three, dispatched on NV so each width gets its own fully unrolled copy. */
#define FB_NV_SWITCH(CALL)                                                                        \
    switch (nv) {                                                                                 \
    case 1: return CALL(1); case 2: return CALL(2); case 3: return CALL(3); case 4: return CALL(4); \
    case 5: return CALL(5); case 6: return CALL(6); case 7: return CALL(7); default: return CALL(8); \
    }

static ptrdiff_t FB_SFX(fb_elman_fwd)(int nv, int act, ptrdiff_t T, const FT* Wt, const FT* A,
                                     ptrdiff_t sa, const FT* X, ptrdiff_t sx, ptrdiff_t I,
                                     const FT* Ut, const FT* bias, FT* H, ptrdiff_t sh, ptrdiff_t O,
                                     const FT* V, const FT* c, FT* out, ptrdiff_t so) {
#define FB_CALL(NV) \
    FB_SFX(fb_elman_fwd_nv)(NV, act, T, Wt, A, sa, X, sx, I, Ut, bias, H, sh, O, V, c, out, so)
    FB_NV_SWITCH(FB_CALL)
#undef FB_CALL
}

static ptrdiff_t FB_SFX(fb_elman_bwd)(int nv, int act, ptrdiff_t T, const FT* W, const FT* H,
                                     ptrdiff_t sh, const FT* dH, ptrdiff_t sg, const FT* dO,
                                     ptrdiff_t so, ptrdiff_t O, const FT* V, FT* dA, ptrdiff_t sa,
                                     FT* dh, const FT* X, ptrdiff_t sx, ptrdiff_t I, FT* G, FT* db,
                                     FT* ring, FT* work) {
#define FB_CALL(NV)                                                                              \
    FB_SFX(fb_elman_bwd_nv)(NV, act, T, W, H, sh, dH, sg, dO, so, O, V, dA, sa, dh, X, sx, I, G, \
                            db, ring, work)
    FB_NV_SWITCH(FB_CALL)
#undef FB_CALL
}
#undef FB_NV_SWITCH


/* ---- Elman recurrence of a whole batch, one tiled product per step ------------------------------
 * With n_threads > 1 each step's rows are cut into chunks run as OpenMP tasks inside one parallel
 * region for the whole loop: the thread that waits for a step runs any chunk nobody has started, so
 * a helper thread that the OS has parked on a busy machine delays nothing (a barrier per step, as a
 * prange per step has, waits for it). Chunks never share an output element, and every element is
 * computed the same way whichever thread runs it: results do not depend on the thread count.
 * Written once for both builds, over the products above (plain loops without AVX2 + FMA, where
 * _elman.pyx takes other paths; they are defined there all the same, so every module links). */

/* Chunks to cut `rows` into for n_threads (1: no tasks): one per thread, as long as each keeps at
 * least two full row tiles (smaller chunks run the product on short, latency-bound tiles). */
static inline ptrdiff_t FB_SFX(fb_chunks)(int n_threads, ptrdiff_t rows) {
    ptrdiff_t c = n_threads > 1 ? (ptrdiff_t)n_threads : 1;
    ptrdiff_t most = rows / (2 * FB_MR);
    if (c > most) c = most;
    return c > 1 ? c : 1;
}

static inline void FB_SFX(fb_activate)(int act, FT* h, ptrdiff_t m) {
    if (act == 0) {
        FB_TANH_ARRAY(h, m);
    } else if (act == 1) {
        for (ptrdiff_t i = 0; i < m; i++) h[i] = h[i] <= 0 ? (FT)0 : h[i]; /* NaN passes */
    } else {
        for (ptrdiff_t i = 0; i < m; i++) h[i] = h[i] > 0 ? (FT)1 : (FT)0;
    }
}


/* out[o] = c[o] + h . V[o] for the OB output units of one block, from the sums acc[o] over whole
 * registers of h (lanes to add) and the last n % FB_W values of h, added here. */
static inline __attribute__((always_inline)) void FB_SFX(fb_logits_finish)(
        const int OB, const VT* acc, const FT* h, ptrdiff_t n, const FT* V, const FT* c, FT* out) {
    const ptrdiff_t whole = n / FB_W * FB_W;
    for (int g = 0; g * FB_W < OB; g++) {
        VT group[FB_W];
        FT sums[FB_W];
        for (int j = 0; j < FB_W; j++) group[j] = g * FB_W + j < OB ? acc[g * FB_W + j] : VZERO();
        VSTORE(sums, FB_SFX(fb_lane_sums)(group));
        for (int j = 0; j < FB_W && g * FB_W + j < OB; j++) {
            const int o = g * FB_W + j;
            FT r = c[o] + sums[j];
            for (ptrdiff_t k = whole; k < n; k++) r += h[k] * V[o * n + k];
            out[o] = r;
        }
    }
}

/* The OB (<= 6) output units of one block for R (1 or 2) rows of h (n apart) at once: each load of
 * V serves both rows, so the FMA units rather than the loads set the pace; the R * OB dot products
 * are independent chains. */
static inline __attribute__((always_inline)) void FB_SFX(fb_logits_block)(
        const int R, const int OB, const FT* h, ptrdiff_t n, const FT* V, const FT* c, FT* out,
        ptrdiff_t O) {
    VT acc0[6], acc1[6];
    const ptrdiff_t whole = n / FB_W * FB_W;
    for (int o = 0; o < OB; o++) {
        acc0[o] = VZERO();
        acc1[o] = VZERO();
    }
    for (ptrdiff_t k = 0; k < whole; k += FB_W) {
        VT h0 = VLOAD(h + k), h1 = R == 2 ? VLOAD(h + n + k) : VZERO();
        for (int o = 0; o < OB; o++) {
            VT v = VLOAD(V + o * n + k);
            acc0[o] = VFMA(h0, v, acc0[o]);
            if (R == 2) acc1[o] = VFMA(h1, v, acc1[o]);
        }
    }
    FB_SFX(fb_logits_finish)(OB, acc0, h, n, V, c, out);
    if (R == 2) FB_SFX(fb_logits_finish)(OB, acc1, h + n, n, V, c, out + O);
}

/* out (rows x O) = c + h V^T, h (rows x n), V (O x n) as given: rows in pairs, the output units in
 * balanced blocks of at most 6, one dot product each. For a few outputs this beats the register
 * tile, which computes whole panels of columns (16 floats for 1 output). */
static inline void FB_SFX(fb_logits_rows)(ptrdiff_t rows, ptrdiff_t n, ptrdiff_t O, const FT* h,
                                         const FT* V, const FT* c, FT* out) {
    const ptrdiff_t blocks = (O + 5) / 6;
    for (ptrdiff_t r = 0; r < rows; r += 2) {
        const int two = r + 1 < rows;
        for (ptrdiff_t q = 0, o0 = 0; q < blocks; q++) {
            ptrdiff_t ob = (O - o0 + (blocks - q) - 1) / (blocks - q);
            const FT* hr = h + r * n;
            const FT* Vb = V + o0 * n;
            FT* orow = out + r * O + o0;
            switch (ob * 2 + two) {
#define FB_LOGITS_CASE(K)                                                                         \
            case 2 * K + 1: FB_SFX(fb_logits_block)(2, K, hr, n, Vb, c + o0, orow, O); break;     \
            case 2 * K: FB_SFX(fb_logits_block)(1, K, hr, n, Vb, c + o0, orow, O); break;
            FB_LOGITS_CASE(6) FB_LOGITS_CASE(5) FB_LOGITS_CASE(4) FB_LOGITS_CASE(3)
            FB_LOGITS_CASE(2) FB_LOGITS_CASE(1)
#undef FB_LOGITS_CASE
            }
            o0 += ob;
        }
    }
}


/* h = f(a + h_prev W^T) for `rows` rows of one step; a = A's rows, or bias + X's rows U^T (PU).
 * With out, also the logits out = c + h V^T of those rows while h is in L1: by the register tile
 * over PV (V^T packed) when given, else by dot products with V (O x n) as given. */
static inline void FB_SFX(fb_tiled_rows)(int act, const FT* PW, const FT* A, const FT* X, ptrdiff_t I,
                                        const FT* PU, const FT* bias, const FT* h_prev, FT* h,
                                        ptrdiff_t rows, ptrdiff_t n, ptrdiff_t O, const FT* V,
                                        const FT* PV, const FT* c, FT* out) {
    if (X) {
        FB_SFX(fb_gemm_packed)(rows, n, I, X, I, PU, bias, NULL, 0, h, n);
        FB_SFX(fb_gemm_packed)(rows, n, n, h_prev, n, PW, NULL, h, n, h, n);
    } else {
        FB_SFX(fb_gemm_packed)(rows, n, n, h_prev, n, PW, NULL, A, n, h, n);
    }
    FB_SFX(fb_activate)(act, h, rows * n);
    if (out && PV) FB_SFX(fb_gemm_packed)(rows, O, n, h, n, PV, c, NULL, 0, out, O);
    else if (out) FB_SFX(fb_logits_rows)(rows, n, O, h, V, c, out);
}

/* Forward over T steps of B rows: PW = W^T packed; a_t from A, or bias + U x_t when X is given
 * (PU = U^T packed). H points at h_0. With out (T x B x O), the logits of a linear output layer
 * too, out_t = c + h_{t+1} V^T (V as given, O x n; PV = V^T packed, or NULL for dot products),
 * each chunk's rows right after their states. Returns the first step whose state is not finite,
 * or -1. */
static ptrdiff_t FB_SFX(fb_elman_fwd_tiled)(int act, const FT* PW, const FT* A, const FT* X,
                                           ptrdiff_t I, const FT* PU, const FT* bias, FT* H,
                                           ptrdiff_t T, ptrdiff_t B, ptrdiff_t n, ptrdiff_t O,
                                           const FT* V, const FT* PV, const FT* c, FT* out,
                                           int n_threads) {
    const ptrdiff_t step = B * n, chunks = FB_SFX(fb_chunks)(n_threads, B);
    ptrdiff_t bad = -1;
#pragma omp parallel num_threads(n_threads) if (chunks > 1)
#pragma omp single
    for (ptrdiff_t t = 0; t < T; t++) {
        FT* h = H + (t + 1) * step;
        for (ptrdiff_t k = 0; k < chunks; k++) {
#pragma omp task if (chunks > 1)
            {
                ptrdiff_t lo = k * B / chunks, hi = (k + 1) * B / chunks;
                FB_SFX(fb_tiled_rows)(act, PW, A ? A + t * step + lo * n : NULL,
                                      X ? X + (t * B + lo) * I : NULL, I, PU, bias,
                                      H + t * step + lo * n, h + lo * n, hi - lo, n, O, V, PV, c,
                                      out ? out + (t * B + lo) * O : NULL);
            }
        }
#pragma omp taskwait
        if (!FB_ALL_FINITE(h, step)) {
            bad = t;
            break;
        }
    }
    return bad;
}

/* Columns the joined product packs B into at once: about FB_CAT_BYTES of L2 per block. */
#define FB_CAT_NC ((ptrdiff_t)(FB_CAT_BYTES / (FB_KC * sizeof(FT))) / FB_NR * FB_NR)

/* Elements of the scratch fb_gemm_tn_cat needs. */
static inline size_t FB_SFX(fb_gemm_tn_cat_work)(void) {
    return (size_t)FB_KC * (size_t)(FB_MC + FB_CAT_NC) + (size_t)(FB_MC / FB_MR + 2) * FB_STRIP;
}


/* dst <- columns j0..j0+w-1 (w <= max(NR, FB_STRIP)) of the joined row (s1[0..n1), s2[0..n2), then
 * zeros; s2 NULL reads as n2 zeros). When w rounded up to whole registers lies in one source it goes
 * as whole registers (that many values written). */
static inline void FB_SFX(fb_cat_cols)(FT* dst, const FT* s1, ptrdiff_t n1, const FT* s2,
                                      ptrdiff_t n2, ptrdiff_t j0, ptrdiff_t w) {
    const ptrdiff_t wr = (w + FB_W - 1) / FB_W * FB_W;
    const FT* src = j0 + wr <= n1 ? s1 + j0 : s2 && j0 >= n1 && j0 + wr <= n1 + n2 ? s2 + j0 - n1 : NULL;
    if (src) {
        for (ptrdiff_t q = 0; q < wr; q += FB_W) VSTORE(dst + q, VLOAD(src + q));
        return;
    }
    /* three plain runs: a per-element choice of source compiles to masked loads, which stall
     * for hundreds of cycles when a masked-off lane points at an unmapped page (s2 NULL) */
    ptrdiff_t c = 0, e1 = n1 - j0 < w ? n1 - j0 : w, e2 = n1 + n2 - j0 < w ? n1 + n2 - j0 : w;
    for (; c < e1; c++) dst[c] = s1[j0 + c];
    if (s2)
        for (; c < e2; c++) dst[c] = s2[j0 + c - n1];
    for (; c < w; c++) dst[c] = (FT)0;
}

/* Rows lo..hi-1 of C += A^T B over K rows, both operands joined from two sources: row k of A is A1's
 * row k (M1 values) then A2's row k - a2_skip (M2 values; zeros for k < a2_skip, or when A2 is
 * NULL), row k of B is B1's row k (N1 values) then B2's (N2; B2 may be NULL), then zeros up to N, a
 * whole number of panels (C's columns past N1 + N2 get zeros added). The Elman weight-gradient fold: C = [dW | dU] (and dV below) from one packing of dA, where
 * two products of fb_gemm_tn would pack dA twice (costly beside the thin dU = dA^T X).
 * work: fb_gemm_tn_cat_work() elements; layout and blocking as fb_gemm_tn's. */
static void FB_SFX(fb_gemm_tn_cat)(ptrdiff_t lo, ptrdiff_t hi, ptrdiff_t K, const FT* A1,
                                   ptrdiff_t M1, ptrdiff_t lda1, const FT* A2, ptrdiff_t M2,
                                   ptrdiff_t lda2, ptrdiff_t a2_skip, const FT* B1, ptrdiff_t N1, ptrdiff_t ldb1,
                                   const FT* B2, ptrdiff_t N2, ptrdiff_t ldb2, ptrdiff_t N, FT* C,
                                   ptrdiff_t ldc, FT* work) {
    FT* apack = work;
    FT* bpack = work + (size_t)FB_KC * FB_MC + (size_t)(FB_MC / FB_MR + 2) * FB_STRIP;
    if (hi <= lo || N <= 0 || K <= 0) return;
    for (ptrdiff_t nc = 0; nc < N; nc += FB_CAT_NC)
    for (ptrdiff_t kc = 0; kc < K; kc += FB_KC) {
        ptrdiff_t kb = K - kc < FB_KC ? K - kc : FB_KC;
        ptrdiff_t panels = (N - nc < FB_CAT_NC ? N - nc : FB_CAT_NC) / FB_NR;
        /* B's panels row by row; a panel inside one source is two plain register copies a row
         * (the joined copy only for a panel across the seam or past the end) */
        for (ptrdiff_t p = 0; p < panels; p++) {
            ptrdiff_t j0 = nc + p * FB_NR;
            const FT* src = j0 + FB_NR <= N1 ? B1 + kc * ldb1 + j0
                            : B2 && j0 >= N1 && j0 + FB_NR <= N1 + N2 ? B2 + kc * ldb2 + j0 - N1
                                                                       : NULL;
            ptrdiff_t ld = j0 < N1 ? ldb1 : ldb2;
            FT* dst = bpack + p * kb * FB_NR;
            if (src) {
                for (ptrdiff_t k = 0; k < kb; k++, src += ld, dst += FB_NR) {
                    VSTORE(dst, VLOAD(src));
                    VSTORE(dst + FB_W, VLOAD(src + FB_W));
                }
            } else {
                for (ptrdiff_t k = 0; k < kb; k++, dst += FB_NR)
                    FB_SFX(fb_cat_cols)(dst, B1 + (kc + k) * ldb1, N1,
                                        B2 ? B2 + (kc + k) * ldb2 : NULL, N2, j0, FB_NR);
            }
        }
        for (ptrdiff_t mc = lo; mc < hi; mc += FB_MC) {
            ptrdiff_t mb = hi - mc < FB_MC ? hi - mc : FB_MC;
            ptrdiff_t tiles = (mb + FB_MR - 1) / FB_MR;
            int tile_mr[FB_MC / FB_MR + 1];
            ptrdiff_t tile_m[FB_MC / FB_MR + 1];
            for (ptrdiff_t t = 0, m = 0; t < tiles; t++) {
                tile_mr[t] = (int)((mb - m + (tiles - t) - 1) / (tiles - t));
                tile_m[t] = m;
                m += tile_mr[t];
            }
            /* A's strips, tile by tile down the rows; strips are 2W apart, so a whole-register copy
             * may spill past a tile's mr values. A strip inside A1 is two plain register copies a
             * row: the per-element joined copy, at every row and tile, took a fifth of the time */
            for (ptrdiff_t t = 0; t < tiles; t++) {
                ptrdiff_t m = mc + tile_m[t];
                int mr = tile_mr[t];
                FT* dst = apack + tile_m[t] * kb + t * FB_STRIP;
                if (m + FB_STRIP <= M1) {
                    const FT* src = A1 + kc * lda1 + m;
                    for (ptrdiff_t k = 0; k < kb; k++, src += lda1, dst += mr)
                        for (int q = 0; q < FB_STRIP; q += FB_W) VSTORE(dst + q, VLOAD(src + q));
                    continue;
                }
                for (ptrdiff_t k = 0; k < kb; k++, dst += mr) {
                    const FT* a2 = A2 && kc + k >= a2_skip ? A2 + (kc + k - a2_skip) * lda2 : NULL;
                    FB_SFX(fb_cat_cols)(dst, A1 + (kc + k) * lda1, M1, a2, M2, m, mr);
                }
            }
            for (ptrdiff_t p = 0; p < panels; p++) {
                const FT* b = bpack + p * kb * FB_NR;
                for (ptrdiff_t t = 0; t < tiles; t++) {
                    const FT* a = apack + tile_m[t] * kb + t * FB_STRIP;
                    FT* c = C + (mc + tile_m[t]) * ldc + nc + p * FB_NR;
#define FB_CALL(MR) FB_SFX(fb_tile_tn)(MR, kb, a, MR, b, FB_NR, c, ldc)
                    FB_MR_SWITCH(tile_mr[t], FB_CALL)
#undef FB_CALL
                }
            }
        }
    }
}


/* One chunk of the tiled backward's fold, over `rows` batch rows (`per_step` of them a step): rows
 * lo..hi-1 of G = [dW | dU] (n rows; ldg columns, a whole number of panels, >= n + I) += da^T [h | x]
 * with h the states before each step, and db += the sum of da's rows (its columns lo..hi-1). With
 * dO, G has O more rows += dO'^T [h | x], dO' being dO one step late (row r of dO' is dO's row
 * r - per_step, zero for r < per_step when dO_first): their first n columns sum dO_s^T h_{s+1}, the
 * head's dV, from the same packed [h | x] (but for the last step's term, which the caller adds). */
static inline void FB_SFX(fb_wgrad_rows)(const FT* da, const FT* dO, ptrdiff_t O, int dO_first,
                                        const FT* h, const FT* x, ptrdiff_t I, FT* G, ptrdiff_t ldg,
                                        FT* db, ptrdiff_t rows, ptrdiff_t per_step, ptrdiff_t n,
                                        ptrdiff_t lo, ptrdiff_t hi, FT* work) {
    FB_SFX(fb_gemm_tn_cat)(lo, hi, rows, da, n, n, dO, dO ? O : 0, O, dO_first ? per_step : 0, h, n,
                           n, I > 0 ? x : NULL, I, I, ldg, G, ldg, work);
    ptrdiff_t top = hi < n ? hi : n;
    for (ptrdiff_t r = 0; r < rows; r++) /* row by row: contiguous, vectorised adds */
        for (ptrdiff_t i = lo; i < top; i++) db[i] += da[r * n + i];
}

/* a = (g + base) f'(a) over m elements, f' written through h = f(a); g may be NULL (zero). */
static inline void FB_SFX(fb_grad_fprime)(int act, const FT* g, const FT* base, const FT* h, FT* a,
                                         ptrdiff_t m) {
    if (g && act == 0) {
        for (ptrdiff_t k = 0; k < m; k++) a[k] = (g[k] + base[k]) * (1 - h[k] * h[k]);
    } else if (g) {
        for (ptrdiff_t k = 0; k < m; k++) a[k] = (g[k] + base[k]) * (FT)(h[k] > 0);
    } else if (act == 0) {
        for (ptrdiff_t k = 0; k < m; k++) a[k] = base[k] * (1 - h[k] * h[k]);
    } else {
        for (ptrdiff_t k = 0; k < m; k++) a[k] = base[k] * (FT)(h[k] > 0);
    }
}

/* Backward over T steps of B rows: P = W packed; dh holds dh_T on entry, dh_0 on return. The loss
 * gradient reaching h_t is dH's step t (dH may be NULL: zero) plus, when dO is given, dO_t V, with
 * dO (T x B x O) the gradient at a linear head's outputs and PV its weights V (O x n) packed (op = V).
 * With G, every `span` steps the block's dA rows are folded into G = [dW | dU] and db (which the
 * caller zeroed; G has ldg columns, a whole number of panels, >= n + I) while they are in cache;
 * with fold_dO (and dO) G has O more rows whose first n columns are sum_t dO_t^T h_{t+1} over all
 * steps but the last (dV but for dO_{T-1}^T h_T, left to the caller). The output rows
 * are cut into chunks (work: fb_chunks(n_threads, n) times fb_gemm_tn_cat_work() elements); dA may
 * then be NULL, `ring` (span steps) holding the block instead. Returns the first step whose
 * gradient is not finite, or -1. */
static ptrdiff_t FB_SFX(fb_elman_bwd_tiled)(int act, const FT* P, const FT* H, const FT* dH,
                                           const FT* dO, ptrdiff_t O, const FT* PV, int fold_dO,
                                           FT* dA, FT* dh, const FT* X, ptrdiff_t I, FT* G,
                                           ptrdiff_t ldg, FT* db, FT* ring, FT* work,
                                           ptrdiff_t span, ptrdiff_t T, ptrdiff_t B, ptrdiff_t n,
                                           int n_threads) {
    const ptrdiff_t step = B * n, chunks = FB_SFX(fb_chunks)(n_threads, B);
    const ptrdiff_t grows = n + (fold_dO && dO ? O : 0);
    const ptrdiff_t gchunks = FB_SFX(fb_chunks)(n_threads, grows);
    const size_t wsize = FB_SFX(fb_gemm_tn_cat_work)();
    ptrdiff_t bad = -1, end = T;
#pragma omp parallel num_threads(n_threads) if (chunks > 1 || gchunks > 1)
#pragma omp single
    for (ptrdiff_t t = T - 1; t >= 0; t--) {
        ptrdiff_t start = end - span > 0 ? end - span : 0;
        FT* da = dA ? dA + t * step : ring + (t - start) * step;
        for (ptrdiff_t c = 0; c < chunks; c++) {
#pragma omp task if (chunks > 1)
            {
                ptrdiff_t lo = c * B / chunks, hi = (c + 1) * B / chunks;
                const FT* h = H + (t + 1) * step + lo * n;
                FT* d = dh + lo * n;
                FT* a = da + lo * n;
                /* a = dh + dO_t V first (one small product, K = O), then g and f' in one pass */
                if (dO) FB_SFX(fb_gemm_packed)(hi - lo, n, O, dO + (t * B + lo) * O, O, PV, NULL, d, n,
                                               a, n);
                FB_SFX(fb_grad_fprime)(act, dH ? dH + t * step + lo * n : NULL, dO ? a : d, h, a,
                                       (hi - lo) * n);
                FB_SFX(fb_gemm_packed)(hi - lo, n, n, a, n, P, NULL, NULL, 0, d, n);
            }
        }
#pragma omp taskwait
        if (!FB_ALL_FINITE(dh, step)) {
            bad = t;
            break;
        }
        if (G && t == start) {
            const FT* blk = dA ? dA + start * step : ring;
            /* dO one step late beside the states before each step: dO_{t-1} meets h_t */
            const FT* dO_blk = fold_dO && dO ? dO + (start > 0 ? (start - 1) * B * O : 0) : NULL;
            for (ptrdiff_t c = 0; c < gchunks; c++) {
#pragma omp task if (gchunks > 1)
                FB_SFX(fb_wgrad_rows)(blk, dO_blk, O, start == 0, H + start * step,
                                      X + start * B * I, I, G, ldg, db, (end - start) * B, B, n,
                                      c * grows / gchunks, (c + 1) * grows / gchunks,
                                      work + c * wsize);
            }
#pragma omp taskwait
            end = start;
        }
    }
    return bad;
}

/* y (m) = y0 (m) + v (p) @ X (p, m), X row-major; y0 may be y itself. Four rows of X a pass, so y is
 * loaded and stored once per four rows (a store-to-load chain through y per row is what limits the
 * plain loop at small sizes); the compiler vectorises the inner loop for the set's width. */
static void FB_SFX(fb_add_rows)(const FT* X, const FT* v, const FT* y0, FT* y, ptrdiff_t p,
                               ptrdiff_t m) {
    const FT* src = y0;
    ptrdiff_t j = 0;
    for (; j + 3 < p; j += 4) {
        const FT v0 = v[j], v1 = v[j + 1], v2 = v[j + 2], v3 = v[j + 3];
        const FT* x0 = X + j * m;
        const FT* x1 = x0 + m;
        const FT* x2 = x1 + m;
        const FT* x3 = x2 + m;
        for (ptrdiff_t k = 0; k < m; k++)
            y[k] = src[k] + (x0[k] * v0 + x1[k] * v1 + x2[k] * v2 + x3[k] * v3);
        src = y;
    }
    for (; j < p; j++) {
        const FT v0 = v[j];
        const FT* x0 = X + j * m;
        for (ptrdiff_t k = 0; k < m; k++) y[k] = src[k] + x0[k] * v0;
        src = y;
    }
    if (src != y) memcpy(y, src, (size_t)m * sizeof(FT));
}

#undef FB_NR
#undef FB_STRIP
