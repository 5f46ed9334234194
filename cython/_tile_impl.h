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


/* One mr x NR tile over kb steps of k: C = C0 + A @ panel (C0 may be NULL, or C itself). The npf
 * cache lines from pf on are asked into L2 meanwhile, one a step (pf may be NULL). */
static inline __attribute__((always_inline)) void FB_SFX(fb_tile)(
        const int mr, ptrdiff_t kb, const FT* A, ptrdiff_t lda, const FT* Pp, const FT* bias,
        const FT* C0, ptrdiff_t ldc0, FT* C, ptrdiff_t ldc, ptrdiff_t ncols, const char* pf,
        ptrdiff_t npf) {
    VT c0[FB_MR], c1[FB_MR];
    FT bpad[FB_NR] = {0};
    if (bias) memcpy(bpad, bias, (size_t)ncols * sizeof(FT));
    for (int r = 0; r < mr; r++) {
        c0[r] = VLOAD(bpad);
        c1[r] = VLOAD(bpad + FB_W);
    }
    for (ptrdiff_t k = 0; k < kb; k++) {
        VT b0 = VLOAD(Pp + k * FB_NR), b1 = VLOAD(Pp + k * FB_NR + FB_W);
        if (k < npf) __builtin_prefetch(pf + 64 * k, 0, 2);
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
    /* K in equal chunks of about kc (a short last chunk would store and reload C for little): 256
     * where the panel's chunk then takes at most two thirds of L1, as each chunk stores and
     * reloads C's tiles (about a twentieth of the product at 128); longer chunks were slower */
    const ptrdiff_t chunk_256 = 256 * FB_NR * (ptrdiff_t)sizeof(FT);
    const ptrdiff_t kc_l1 = FB_KC < 256 && 3 * chunk_256 <= 2 * (ptrdiff_t)fb_l1d_bytes() ? 256 : FB_KC;
    const ptrdiff_t kchunks = (K + kc_l1 / 2) / kc_l1 > 1 ? (K + kc_l1 / 2) / kc_l1 : 1;
    const ptrdiff_t kstep = (K + kchunks - 1) / kchunks;
    const int far = (size_t)K * (size_t)panels * FB_NR * sizeof(FT) >= FB_FAR_BYTES;
    for (ptrdiff_t kc = 0; kc < K; kc += kstep) {
        ptrdiff_t kb = K - kc < kstep ? K - kc : kstep;
        /* the packed operand's chunks are asked for ahead only when it is large (no lines else):
         * one that stays in L2 from one call to the next needs no help, and the asking costs
         * small products */
        const ptrdiff_t lines = far ? kb * FB_NR * (ptrdiff_t)sizeof(FT) / 64 : 0;
        const ptrdiff_t per_tile = (lines + tiles - 1) / tiles;
        for (ptrdiff_t p = 0; p < panels; p++) {
            const FT* Pp = P + p * K * FB_NR + kc * FB_NR;
            const FT* next = p + 1 < panels ? Pp + K * FB_NR
                             : kc + kb < K ? P + (kc + kb) * FB_NR : NULL;
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
                /* the panel chunk that comes next, a slice per tile: a chunk first met in L3
                 * stalls the tile that meets it */
                ptrdiff_t l0 = t * per_tile, l1 = l0 + per_tile < lines ? l0 + per_tile : lines;
                const char* pf = next && l1 > l0 ? (const char*)next + 64 * l0 : NULL;
#define FB_CALL(MR) FB_SFX(fb_tile)(MR, kb, a, lda, Pp, bp, c0, ld0, c, ldc, ncols, pf, l1 - l0)
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

/* Blocks to cut `rows` into for n_threads (1: one thread): one per thread, as long as each keeps at
 * least two full row tiles (smaller chunks run the product on short, latency-bound tiles). */
static inline ptrdiff_t FB_SFX(fb_chunks)(int n_threads, ptrdiff_t rows) {
    ptrdiff_t c = n_threads > 1 ? (ptrdiff_t)n_threads : 1;
    ptrdiff_t most = rows / (2 * FB_MR);
    if (c > most) c = most;
    return c > 1 ? c : 1;
}


/* Columns the joined product packs B into at once: a block of 3/8 of L2 (FB_CAT_MIN_BYTES at least). */
static inline ptrdiff_t FB_SFX(fb_cat_nc)(void) {
    const long l2 = fb_l2_bytes() / 8 * 3;
    const ptrdiff_t bytes = l2 > FB_CAT_MIN_BYTES ? (ptrdiff_t)l2 : FB_CAT_MIN_BYTES;
    return bytes / (ptrdiff_t)(FB_KC * sizeof(FT)) / FB_NR * FB_NR;
}

/* Elements of the scratch fb_gemm_tn_cat needs. */
static inline size_t FB_SFX(fb_gemm_tn_cat_work)(void) {
    const size_t cols = (size_t)FB_SFX(fb_cat_nc)();
    return (size_t)FB_KC * (FB_MC + cols) + (size_t)(FB_MC / FB_MR + 2) * FB_STRIP;
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
    const ptrdiff_t cat_nc = FB_SFX(fb_cat_nc)();
    for (ptrdiff_t nc = 0; nc < N; nc += cat_nc)
    for (ptrdiff_t kc = 0; kc < K; kc += FB_KC) {
        ptrdiff_t kb = K - kc < FB_KC ? K - kc : FB_KC;
        ptrdiff_t panels = (N - nc < cat_nc ? N - nc : cat_nc) / FB_NR;
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
            /* a packed block of B of 256 KB or more tile by tile: a tile's strip of A stays in
             * L1 while B's panels pass from L2 (the other order re-reads the block's strips, more
             * than L1 holds, at every panel); a smaller one panel by panel, which keeps the panel
             * in L1 (a few per cent either way) */
            const int by_tile = (size_t)panels * (size_t)kb * FB_NR * sizeof(FT) >= FB_BY_TILE_BYTES;
            const ptrdiff_t outer = by_tile ? tiles : panels, inner = by_tile ? panels : tiles;
            for (ptrdiff_t o = 0; o < outer; o++)
                for (ptrdiff_t i = 0; i < inner; i++) {
                    const ptrdiff_t t = by_tile ? o : i, p = by_tile ? i : o;
                    const FT* a = apack + tile_m[t] * kb + t * FB_STRIP;
                    const FT* b = bpack + p * kb * FB_NR;
                    FT* c = C + (mc + tile_m[t]) * ldc + nc + p * FB_NR;
#define FB_CALL(MR) FB_SFX(fb_tile_tn)(MR, kb, a, MR, b, FB_NR, c, ldc)
                    FB_MR_SWITCH(tile_mr[t], FB_CALL)
#undef FB_CALL
                }
        }
    }
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
