/* The Elman kernels of the table, instantiated once per element type by _tile.h (FT, FB_SFX, FB_W
 * and the V* macros set there), after _tile_impl.h's products. No include guard: it is meant to be
 * included twice. */

#define FB_NR (2 * FB_W)

/* ---- The sequence kernels: one sequence through all its steps in one call, n = NV * width units -----
 * The state stays in registers from step to step, so no step pays a call or a pass over memory: the
 * path for a batch of one to three small sequences, where a step is a few hundred cycles. The
 * arguments come in an fb_seq_args (_kernels.h); rows are its `s*` strides apart. */

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

/* acc[v] += sum over j < n of x[j] M[j][v-th register], n = NV * FB_W, M (n x n) row-major. The
 * sum is split over up to four interleaved partial sums (while they fit in registers beside the
 * loads), so the FMA chain through one step is n / 4 long rather than n: it is the step's latency. */
static inline __attribute__((always_inline)) void FB_SFX(fb_seq_matvec)(const int NV, const FT* x,
                                                                        const FT* M, VT* acc) {
    enum { CH_MAX = 4 };
    const ptrdiff_t n = (ptrdiff_t)NV * FB_W;
    const int ch = NV <= 2 ? 4 : NV <= 4 ? 2 : 1;
    VT part[CH_MAX - 1][FB_NV_MAX];
    for (int c = 0; c < ch - 1; c++)
        for (int v = 0; v < NV; v++) part[c][v] = VZERO();
#pragma GCC unroll 128
    for (ptrdiff_t j = 0; j < n; j += ch) {
        for (int c = 0; c < ch && j + c < n; c++) {
            VT xj = VBCAST(x[j + c]);
            for (int v = 0; v < NV; v++) {
                VT* a = c == 0 ? &acc[v] : &part[c - 1][v];
                *a = VFMA(xj, VLOAD(M + (j + c) * n + v * FB_W), *a);
            }
        }
    }
    for (int v = 0; v < NV; v++) {
        if (ch == 4) acc[v] = VADD(VADD(acc[v], part[0][v]), VADD(part[1][v], part[2][v]));
        else if (ch == 2) acc[v] = VADD(acc[v], part[0][v]);
    }
}

/* h_t = f(a_t + W h_{t-1}) for t = 0..T-1 (H points at h_0, rows sh apart). a_t is A's row t, or
 * bias + U x_t formed here when X is given (Ut = U transposed, I x n). Wt is W transposed.
 * With out, a linear output layer's logits too: out's row t (rows so apart) = V h_{t+1} + c, V (O x n),
 * while h_{t+1} is in registers (no step waits for them). Returns the first step whose state is not
 * finite, or -1. */
static inline __attribute__((always_inline)) ptrdiff_t FB_SFX(fb_elman_fwd_nv)(
        const int NV, const fb_seq_args* a) {
    const int act = a->act;
    const ptrdiff_t T = a->T, I = a->n_in, O = a->n_out, sa = a->sa, sx = a->sx, sh = a->sh, so = a->so;
    const FT *Wt = a->Wh, *Ut = a->Wx_t, *bias = a->b, *A = a->A, *X = a->X, *V = a->V, *c = a->c;
    FT* H = a->H;
    FT* out = a->out;
    const ptrdiff_t n = (ptrdiff_t)NV * FB_W;
    const VT zero = VZERO();
    VT acc0[FB_NV_MAX];
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
        FB_SFX(fb_seq_matvec)(NV, hp, Wt, acc0);
        VT nan = zero;
        for (int v = 0; v < NV; v++) {
            acc0[v] = FB_SFX(fb_act)(act, acc0[v]);
            VSTORE(hn + v * FB_W, acc0[v]);
            nan = VADD(nan, VMUL(acc0[v], zero));
        }
        if (VANY_NAN(nan)) return t;
        for (ptrdiff_t o0 = 0; out && o0 < O; o0 += FB_W) {
            /* a dot product per output unit; a full group of FB_W summed across their lanes at
             * once, a last partial group one by one (no dot computed for a missing unit) */
            const int m = O - o0 < FB_W ? (int)(O - o0) : FB_W;
            VT dots[FB_W];
            FT sums[FB_W] = {0};
            for (int j = 0; j < m; j++) {
                const FT* v = V + (o0 + j) * n;
                dots[j] = VMUL(acc0[0], VLOAD(v));
                for (int k = 1; k < NV; k++) dots[j] = VFMA(acc0[k], VLOAD(v + k * FB_W), dots[j]);
            }
            if (m == FB_W) VSTORE(sums, FB_SFX(fb_lane_sums)(dots));
            else
                for (int j = 0; j < m; j++) sums[j] = VHSUM(dots[j]);
            for (int j = 0; j < m; j++) out[t * so + o0 + j] = c[o0 + j] + sums[j];
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
        const int NV, const fb_seq_args* a) {
    const int act = a->act;
    const ptrdiff_t T = a->T, I = a->n_in, O = a->n_out, sa = a->sa, sx = a->sx, sh = a->sh, so = a->so;
    const ptrdiff_t sg = a->sg;
    const FT *W = a->Wh, *H = a->H, *dH = a->dH, *dO = a->dO, *V = a->V, *X = a->X;
    FT *dA = a->dA, *dh = a->dh, *G = a->G, *db = a->db, *ring = a->ring, *work = a->work;
    const ptrdiff_t n = (ptrdiff_t)NV * FB_W;
    const VT zero = VZERO(), one = VBCAST((FT)1);
    VT d[FB_NV_MAX], acc0[FB_NV_MAX];
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
        }
        FB_SFX(fb_seq_matvec)(NV, da, W, acc0);
        VT nan = zero;
        for (int v = 0; v < NV; v++) {
            d[v] = acc0[v];
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

/* The kernels of the table, dispatched on NV so each width gets its own fully unrolled copy. */
#define FB_NV_SWITCH(CALL)                                                                        \
    switch (a->n / FB_W) {                                                                        \
    case 1: return CALL(1); case 2: return CALL(2); case 3: return CALL(3); case 4: return CALL(4); \
    case 5: return CALL(5); case 6: return CALL(6); case 7: return CALL(7); default: return CALL(8); \
    }

static ptrdiff_t FB_SFX(fb_elman_fwd)(const fb_seq_args* a) {
#define FB_CALL(NV) FB_SFX(fb_elman_fwd_nv)(NV, a)
    FB_NV_SWITCH(FB_CALL)
#undef FB_CALL
}

static ptrdiff_t FB_SFX(fb_elman_bwd)(const fb_seq_args* a) {
#define FB_CALL(NV) FB_SFX(fb_elman_bwd_nv)(NV, a)
    FB_NV_SWITCH(FB_CALL)
#undef FB_CALL
}
#undef FB_NV_SWITCH

/* 1 when the sequence kernels take a layer of n units: a whole number of registers, at most FB_NV_MAX. */
static int FB_SFX(fb_elman_seq_ok)(ptrdiff_t n) {
    return n > 0 && n % FB_W == 0 && n / FB_W <= FB_NV_MAX;
}

/* Elements of the scratch `work` elman_bwd's weight-gradient fold needs. */
static size_t FB_SFX(fb_elman_bwd_work)(ptrdiff_t I, ptrdiff_t n) {
    return FB_SFX(fb_gemm_tn_work)(I > n ? I : n, n);
}


/* ---- Per-step kernels of the tiled path: _elman.pyx runs the loop over t and calls these -------- */

/* h <- f(h) over m values: 0 tanh, 1 relu, 2 step. */
static void FB_SFX(fb_elman_act)(int act, FT* h, ptrdiff_t m) {
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
static void FB_SFX(fb_logits_rows)(ptrdiff_t rows, ptrdiff_t n, ptrdiff_t O, const FT* h,
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

/* One chunk of the tiled backward's weight-gradient fold over a block of steps (fb_fold_args,
 * _kernels.h): rows lo..hi-1 of G = [dWh | dWx] += dA^T [H | X], and db's columns lo..hi-1 += the sum
 * of dA's rows; with dO, G's O rows below += dO'^T [H | X], dO' being dO one step late (row r of dO'
 * is dO's row r - per_step, zero for r < per_step when dO_first), whose first n columns sum
 * dO_s^T h_{s+1}, the head's dV (but for the last step's term, which the caller adds). Chunks of
 * rows of G never share an element: the chunks of one block may run on different threads. `work`:
 * fb_elman_fold_work() elements. */
static void FB_SFX(fb_elman_fold)(const fb_fold_args* a, ptrdiff_t lo, ptrdiff_t hi, FT* work) {
    const ptrdiff_t n = a->n, I = a->n_in, O = a->n_out, rows = a->rows;
    const FT *da = a->dA, *dO = a->dO, *X = a->X;
    FT* db = a->db;
    FB_SFX(fb_gemm_tn_cat)(lo, hi, rows, da, n, n, dO, dO ? O : 0, O, a->dO_first ? a->per_step : 0,
                           a->H, n, n, I > 0 ? X : NULL, I, I, a->ldg, a->G, a->ldg, work);
    ptrdiff_t top = hi < n ? hi : n;
    for (ptrdiff_t r = 0; r < rows; r++) /* row by row: contiguous, vectorised adds */
        for (ptrdiff_t i = lo; i < top; i++) db[i] += da[r * n + i];
}

/* Elements of the scratch one chunk of fb_elman_fold needs. */
static size_t FB_SFX(fb_elman_fold_work)(void) { return FB_SFX(fb_gemm_tn_cat_work)(); }

/* a = (g + base) f'(a) over m values, f' written through h = f(a); g may be NULL (zero). */
static void FB_SFX(fb_elman_dact)(int act, const FT* g, const FT* base, const FT* h, FT* a,
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

#undef FB_NR
