/* shifted_kernel.h: the kernels of shifted.c, included once per ISA with the
 * SK_* macros set (vector type, lanes, tile sizes, load/store/FMA; SK_BF16 for
 * the build on bf16 pairs, without the plain weight product). No include guard
 * on purpose; the macros are cleared at the end. */

#ifndef SK_BCAST_AT /* a vector of the value at p (the bf16 build reads a pair's bits) */
#define SK_BCAST_AT(p) SK_BCAST(*(p))
#endif
#ifndef SK_PIX /* pixels a step of the blocked weight gradient takes: 2 for pairs of pixels */
#define SK_PIX 1
#endif

/* Forward tile: SK_MB rows of C (from A's zero-padded rows) by NB vectors of
 * columns. The sum runs over the KT = T*K pairs (t, k) in one loop; pair i
 * reads B at boff[i] = off[t] + k*ldb and the tile's rows of A at A + 8*i. */
SK_TARGET static inline __attribute__((always_inline)) void SK_NAME(fwd_tile)(const int NB, int KT,
                                                                              const float *A, const float *B,
                                                                              const ptrdiff_t *boff, float *C,
                                                                              ptrdiff_t ldc, bool accumulate,
                                                                              const tg__shift_out *out, int M,
                                                                              int m0, int p0) {
    SK_V acc[SK_MB][SK_NBMAX];
    for (int i = 0; i < SK_MB; i++)
        for (int j = 0; j < NB; j++) acc[i][j] = accumulate ? SK_LOAD(C + i * ldc + j * SK_W) : SK_ZERO();
    const float *a = A;
    for (int q = 0; q < KT; q++, a += 8) {
        const float *b = B + boff[q];
        SK_V bv[SK_NBMAX];
        for (int j = 0; j < NB; j++) bv[j] = SK_LOAD(b + j * SK_W);
        for (int i = 0; i < SK_MB; i++) {
            SK_V av = SK_BCAST_AT(a + i);
            for (int j = 0; j < NB; j++) acc[i][j] = SK_FMA(av, bv[j], acc[i][j]);
        }
    }
#if SK_OUT
    if (out) { /* the real lanes straight into y, bias added, ReLU applied */
        for (int i = 0; i < SK_MB && m0 + i < M; i++) {
            SK_V bias = out->bias ? SK_BCAST(out->bias[m0 + i]) : SK_ZERO();
            float *y = out->y + (ptrdiff_t)(m0 + i) * out->plane;
            for (int j = 0; j < NB; j++) {
                int g = p0 / 16 + j;
                SK_V v = acc[i][j] + bias;
                if (out->add) v += _mm512_maskz_expandloadu_ps(out->mask[g], y + out->at[g]);
                if (out->relu) /* +0 where v <= 0 (-0 too), else v: a NaN stays NaN, as PyTorch's relu */
                    v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, SK_ZERO(), _CMP_NLE_UQ), v);
                _mm512_mask_compressstoreu_ps(y + out->at[g], out->mask[g], v);
            }
        }
        return;
    }
#else
    (void)out, (void)M, (void)m0, (void)p0;
#endif
    for (int i = 0; i < SK_MB; i++)
        for (int j = 0; j < NB; j++) SK_STORE(C + i * ldc + j * SK_W, acc[i][j]);
}

#if SK_OUT
/* Asks for the lines of y the tile after (m0, p0) will write (its rows are planes apart) */
SK_TARGET static inline void SK_NAME(prefetch_next)(const tg__shift_out *out, int m0, int p0, int M, int Mp, int P,
                                                    int PB) {
    int m = m0 + SK_MB < Mp ? m0 + SK_MB : 0, p = m0 + SK_MB < Mp ? p0 : p0 + PB;
    if (out->compact) { /* the grid is the plane */
        for (int i = 0; i < SK_MB && m + i < M && p < out->plane; i++)
            tg__prefetch_row(out->y + (ptrdiff_t)(m + i) * out->plane + p, out->plane - p < PB ? out->plane - p : PB,
                             true);
        return;
    }
    if (p >= P) return;
    ptrdiff_t at = out->at[p / 16], n = out->plane - at < PB ? out->plane - at : PB; /* within the plane */
    for (int i = 0; i < SK_MB && m + i < M; i++)
        tg__prefetch_row(out->y + (ptrdiff_t)(m + i) * out->plane + at, n, true);
}
#endif

#if SK_OUT
/* The forward tile on the compact grid (tg__shift_out's compact): vector j
 * holds the 16 outputs of group g = p0/16 + j, whose lanes in mask[g] read B
 * at at[g] + lane and the others, the next row's, delta further on (with
 * THREE, the lanes in mask3[g], the row after, 2*delta on). The sums go
 * straight into y's plane at 16*g, bias added, ReLU applied. */
SK_TARGET static inline __attribute__((always_inline)) void SK_NAME(compact_tile)(const int NB, const bool THREE, int KT,
                                                                                  const float *A, const float *B,
                                                                                  const ptrdiff_t *boff,
                                                                                  const tg__shift_out *out, int M,
                                                                                  int m0, int p0, ptrdiff_t delta) {
    SK_V acc[SK_MB][SK_NBMAX];
    ptrdiff_t at[SK_NBMAX];
    __mmask16 hi[SK_NBMAX], third[SK_NBMAX];
    for (int j = 0; j < NB; j++) {
        int g = p0 / 16 + j;
        at[j] = out->at[g], hi[j] = (__mmask16)~out->mask[g], third[j] = THREE ? out->mask3[g] : 0;
    }
#pragma GCC unroll 8
    for (int i = 0; i < SK_MB; i++)
#pragma GCC unroll 3
        for (int j = 0; j < NB; j++) acc[i][j] = SK_ZERO();
    const float *a = A;
    for (int q = 0; q < KT; q++, a += 8) {
        const float *b = B + boff[q];
        SK_V bv[SK_NBMAX];
        for (int j = 0; j < NB; j++) {
            bv[j] = _mm512_mask_blend_ps(hi[j], SK_LOAD(b + at[j]), SK_LOAD(b + at[j] + delta));
            if (THREE) bv[j] = _mm512_mask_blend_ps(third[j], bv[j], SK_LOAD(b + at[j] + 2 * delta));
        }
#pragma GCC unroll 8
        for (int i = 0; i < SK_MB; i++) {
            SK_V av = SK_BCAST_AT(a + i);
#pragma GCC unroll 3
            for (int j = 0; j < NB; j++) acc[i][j] = SK_FMA(av, bv[j], acc[i][j]);
        }
    }
    /* through memory: an epilogue indexing acc by a row that stops at M kept acc in memory in the loop */
    _Alignas(64) float sum[SK_MB][SK_NBMAX * 16];
#pragma GCC unroll 8
    for (int i = 0; i < SK_MB; i++)
#pragma GCC unroll 3
        for (int j = 0; j < NB; j++) SK_STORE(sum[i] + 16 * j, acc[i][j]);
    for (int i = 0; i < SK_MB && m0 + i < M; i++) {
        SK_V bias = out->bias ? SK_BCAST(out->bias[m0 + i]) : SK_ZERO();
        float *y = out->y + (ptrdiff_t)(m0 + i) * out->plane + p0;
        for (int j = 0; j < NB; j++) {
            ptrdiff_t left = out->plane - p0 - 16 * j; /* the lanes inside the plane */
            __mmask16 st = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
            SK_V v = SK_LOAD(sum[i] + 16 * j) + bias;
            if (out->add) v += _mm512_maskz_loadu_ps(st, y + 16 * j);
            if (out->relu) /* as in fwd_tile */
                v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, SK_ZERO(), _CMP_NLE_UQ), v);
            _mm512_mask_storeu_ps(y + 16 * j, st, v);
        }
    }
}

/* Out of line: inlined into shifted_fwd beside fwd_tile, GCC kept the accumulators in memory (a store a step) */
SK_TARGET static __attribute__((noinline)) void SK_NAME(compact_one)(int nb, int KT, const float *A, const float *B,
                                                                     const ptrdiff_t *boff, const tg__shift_out *out,
                                                                     int M, int m0, int p0) {
    bool three = out->mask3 != NULL;
    if (nb == 3 && three) SK_NAME(compact_tile)(3, true, KT, A, B, boff, out, M, m0, p0, out->compact);
    else if (nb == 3) SK_NAME(compact_tile)(3, false, KT, A, B, boff, out, M, m0, p0, out->compact);
    else if (nb == 2 && three) SK_NAME(compact_tile)(2, true, KT, A, B, boff, out, M, m0, p0, out->compact);
    else if (nb == 2) SK_NAME(compact_tile)(2, false, KT, A, B, boff, out, M, m0, p0, out->compact);
    else if (three) SK_NAME(compact_tile)(1, true, KT, A, B, boff, out, M, m0, p0, out->compact);
    else SK_NAME(compact_tile)(1, false, KT, A, B, boff, out, M, m0, p0, out->compact);
}
#endif

/* C[m][p] (+)= sum_t sum_k A[((m/8)*T*K + t*K + k)*8 + m%8] * B[k*ldb + off[t] + p] for m < Mp, p < P.
 * Mp = M rounded up to 8 (A's rows M..Mp-1 are zeros, C has Mp rows); P is a multiple of 16.
 * A comes in blocks of 8 rows of C, each block's whole sum contiguous, so a tile reads whole cache lines.
 * boff has room for T*K offsets. */
SK_TARGET static bool SK_NAME(shifted_fwd)(float *C, ptrdiff_t ldc, const tg__shift_out *out, const float *A,
                                           const float *B, ptrdiff_t ldb, const ptrdiff_t *off, int M, int P, int K,
                                           int T, bool accumulate, ptrdiff_t *boff) {
    /* (a build that cannot write y computes the grid, for which spans by group of the plane do not hold) */
    const uint8_t *tap_lo = out && !accumulate && (SK_OUT || !out->compact) ? out->tap_lo : NULL;
    const uint8_t *tap_hi = tap_lo ? out->tap_hi : NULL;
    if (!SK_OUT || accumulate) out = NULL;
    const int Mp = (M + 7) & ~7, PB = SK_NBMAX * SK_W, KT = T * K;
    for (int t = 0; t < T; t++)
        for (int k = 0; k < K; k++) boff[t * K + k] = off[t] + (ptrdiff_t)k * ldb;
#if SK_OUT
    if (out && out->compact) P = (int)((out->plane + 15) & ~(ptrdiff_t)15);
#endif
    for (int p0 = 0; p0 < P; p0 += PB) {
        int nb = P - p0 >= PB ? SK_NBMAX : (P - p0) / SK_W;
        int t0 = 0, t1 = T; /* the taps this column block needs: pairs [t0*K, t1*K) of the sum */
        if (tap_lo) {
            t0 = T, t1 = 0;
            for (int g = p0 / 16; g <= (p0 + nb * SK_W - 1) / 16; g++)
                t0 = tap_lo[g] < t0 ? tap_lo[g] : t0, t1 = tap_hi[g] > t1 ? tap_hi[g] : t1;
            if (t0 > t1) t0 = t1 = 0;
        }
        const int kt = (t1 - t0) * K;
        const ptrdiff_t *bo = boff + t0 * K;
        for (int m0 = 0; m0 < Mp; m0 += SK_MB) {
            const float *a = A + (ptrdiff_t)(m0 / 8) * KT * 8 + m0 % 8 + (ptrdiff_t)t0 * K * 8, *b = B + p0;
            float *c = C + (ptrdiff_t)m0 * ldc + p0;
#if SK_OUT
            if (out) SK_NAME(prefetch_next)(out, m0, p0, M, Mp, P, PB);
            if (out && out->compact) {
                SK_NAME(compact_one)(nb, kt, a, B, bo, out, M, m0, p0);
                continue;
            }
#endif
            if (nb == 3) SK_NAME(fwd_tile)(3, kt, a, b, bo, c, ldc, accumulate, out, M, m0, p0);
            else if (nb == 2) SK_NAME(fwd_tile)(2, kt, a, b, bo, c, ldc, accumulate, out, M, m0, p0);
            else SK_NAME(fwd_tile)(1, kt, a, b, bo, c, ldc, accumulate, out, M, m0, p0);
        }
    }
    return out != NULL;
}

#ifndef SK_BF16 /* the bf16 build has no plain weight product */
/* C[m][k*T + t] (+)= sum over images g < G and p < P of A[g*a_img + m*lda + p] * B[g*b_img + k*ldb + off[t] + p]
 * for m < M, k < K, t < T. C is dense, M x K*T; P is a multiple of 16. Each tile
 * sums every image in registers before its one horizontal sum. Edge tiles
 * repeat a valid row or column and store only the real ones. */
SK_TARGET static void SK_NAME(shifted_wgt)(float *C, const float *A, ptrdiff_t lda, ptrdiff_t a_img, const float *B,
                                           ptrdiff_t ldb, ptrdiff_t b_img, const ptrdiff_t *off, int M, int P, int K,
                                           int T, int G, bool accumulate) {
    const int N = K * T;
    for (int m0 = 0; m0 < M; m0 += SK_WM)
        for (int j0 = 0; j0 < N; j0 += SK_WN) {
            const float *a[SK_WM], *b[SK_WN];
            for (int i = 0; i < SK_WM; i++) a[i] = A + (ptrdiff_t)(m0 + i < M ? m0 + i : m0) * lda;
            for (int j = 0; j < SK_WN; j++) {
                int jj = j0 + j < N ? j0 + j : j0;
                b[j] = B + (ptrdiff_t)(jj / T) * ldb + off[jj % T];
            }
            SK_V acc[SK_WM][SK_WN];
            for (int i = 0; i < SK_WM; i++)
                for (int j = 0; j < SK_WN; j++) acc[i][j] = SK_ZERO();
            for (int g = 0; g < G; g++) {
                for (int p = 0; p < P; p += SK_W) {
                    SK_V av[SK_WM];
                    for (int i = 0; i < SK_WM; i++) av[i] = SK_LOAD(a[i] + p);
                    for (int j = 0; j < SK_WN; j++) {
                        SK_V bv = SK_LOAD(b[j] + p);
                        for (int i = 0; i < SK_WM; i++) acc[i][j] = SK_FMA(av[i], bv, acc[i][j]);
                    }
                }
                for (int i = 0; i < SK_WM; i++) a[i] += a_img;
                for (int j = 0; j < SK_WN; j++) b[j] += b_img;
            }
            for (int i = 0; i < SK_WM && m0 + i < M; i++)
                for (int j = 0; j < SK_WN && j0 + j < N; j++) {
                    float *c = C + (ptrdiff_t)(m0 + i) * N + j0 + j;
                    *c = (accumulate ? *c : 0.0f) + SK_HSUM(acc[i][j]);
                }
        }
}

#endif /* SK_BF16 */

/* One tile of blocked_wgt below: BM rows of C from m0, SK_BT taps from t0, block cb */
SK_TARGET static inline __attribute__((always_inline)) void SK_NAME(blocked_tile)(
    const int BM, int m0, int t0, int cb, int M, int H, int W, ptrdiff_t ldr, int Cn, int T, int G, const float *A,
    ptrdiff_t lda, ptrdiff_t a_img, const float *X, ptrdiff_t ldx, ptrdiff_t x_img, const ptrdiff_t *off, float *C,
    bool accumulate) {
    enum { VB = 16 / SK_W }; /* vectors per pixel of a block */
    ptrdiff_t o[SK_BT];
    for (int j = 0; j < SK_BT; j++) o[j] = 16 * off[t0 + j < T ? t0 + j : t0];
    SK_V acc[SK_BMMAX][SK_BT][VB];
    for (int i = 0; i < BM; i++)
        for (int j = 0; j < SK_BT; j++)
            for (int v = 0; v < VB; v++) acc[i][j][v] = SK_ZERO();
    for (int g = 0; g < G; g++)
        for (int h = 0; h < H; h++) {
            const float *a[SK_BMMAX], *x = X + g * x_img + cb * ldx + h * ldr * 16;
            for (int i = 0; i < BM; i++) a[i] = A + g * a_img + (ptrdiff_t)(m0 + i < M ? m0 + i : m0) * lda + h * ldr;
            for (int w = 0; w < W; w += SK_PIX, x += 16 * SK_PIX) {
                SK_V bc[SK_BMMAX];
                for (int i = 0; i < BM; i++) bc[i] = SK_BCAST_AT(a[i] + w);
                for (int j = 0; j < SK_BT; j++)
                    for (int v = 0; v < VB; v++) {
                        SK_V xv = SK_LOAD(x + o[j] + v * SK_W);
                        SK_IN_REG(xv); /* one load for BM FMAs, not one folded into each */
                        for (int i = 0; i < BM; i++) acc[i][j][v] = SK_FMA(bc[i], xv, acc[i][j][v]);
                    }
            }
        }
    for (int i = 0; i < BM && m0 + i < M; i++)
        for (int j = 0; j < SK_BT && t0 + j < T; j++)
            for (int v = 0; v < VB; v++) {
                float lane[SK_W];
                SK_STORE(lane, acc[i][j][v]);
                for (int l = 0; l < SK_W && cb * 16 + v * SK_W + l < Cn; l++) {
                    float *c = C + ((ptrdiff_t)(m0 + i) * Cn + cb * 16 + v * SK_W + l) * T + t0 + j;
                    *c = (accumulate ? *c : 0.0f) + lane[l];
                }
            }
}

/* C[m][c*T + t] (+)= sum over images g < G and pixels h < H, w < W of
 *   A[g*a_img + m*lda + h*ldr + w] * X[g*x_img + (c/16)*ldx + (h*ldr + w + off[t])*16 + c%16]
 * for m < M, c < Cn, t < T. X holds the channels in blocks of 16, a pixel's 16
 * side by side (tg__pad_blocked), so one load serves 16 channels and the taps
 * of a tile read the same few rows: the operands stay in L1. Tiles are
 * SK_BMMAX rows of C (SK_BMMAX - 1 at the end when that fits M better) by SK_BT
 * taps of one block; each sums every pixel of every image in registers, one
 * FMA chain per element of C. Edge tiles repeat a valid row or tap and store
 * only the real ones. */
SK_TARGET static void SK_NAME(blocked_wgt)(float *C, const float *A, ptrdiff_t lda, ptrdiff_t a_img, const float *X,
                                           ptrdiff_t ldx, ptrdiff_t x_img, const ptrdiff_t *off, int M, int H, int W,
                                           ptrdiff_t ldr, int Cn, int T, int G, bool accumulate) {
    enum { B = SK_BMMAX };
    /* rows in full tiles: all but a remainder that (B - 1)-row tiles cover exactly, if there is one */
    int full = M;
    for (int r = 0; r <= M && r < B * (B - 1); r += B - 1)
        if ((M - r) % B == 0) {
            full = M - r;
            break;
        }
    for (int cb = 0; cb * 16 < Cn; cb++)
        for (int m0 = 0; m0 < M; m0 += m0 < full ? B : B - 1)
            for (int t0 = 0; t0 < T; t0 += SK_BT)
                if (m0 < full)
                    SK_NAME(blocked_tile)(B, m0, t0, cb, M, H, W, ldr, Cn, T, G, A, lda, a_img, X, ldx, x_img, off,
                                          C, accumulate);
                else
                    SK_NAME(blocked_tile)(B - 1, m0, t0, cb, M, H, W, ldr, Cn, T, G, A, lda, a_img, X, ldx, x_img,
                                          off, C, accumulate);
}

#undef SK_NAME
#undef SK_BF16
#undef SK_PIX
#undef SK_BCAST_AT
#undef SK_TARGET
#undef SK_V
#undef SK_W
#undef SK_MB
#undef SK_WM
#undef SK_WN
#undef SK_BMMAX
#undef SK_BT
#undef SK_IN_REG
#undef SK_ZERO
#undef SK_LOAD
#undef SK_STORE
#undef SK_BCAST
#undef SK_FMA
#undef SK_HSUM
#undef SK_OUT
