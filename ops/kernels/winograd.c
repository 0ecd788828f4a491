/* winograd.c: a 3x3 stride-1 convolution in fewer multiplies, by Winograd's minimal filtering.
 *
 * The forward and the input gradient use F(4x4, 3x3): each 4x4 block of outputs
 * (a tile) reads a 6x6 block d of the padded input. With the weights g of a
 * (k, c) pair turned once into U = G g G^T (6x6) and each input block into
 * V = B^T d B, the tile is
 *
 *   Y[k] = A^T (sum_c U[k][c] .* V[c]) A
 *
 *         |  1/4    0     0   |         | 4  0 -5  0  1  0 |
 *         | -1/6  -1/6  -1/6  |         | 0 -4 -4  1  1  0 |        | 1  1  1  1  1  0 |
 *   G   = | -1/6   1/6  -1/6  |   B^T = | 0  4 -4 -1  1  0 |  A^T = | 0  1 -1  2 -2  0 |
 *         |  1/24  1/12  1/6  |         | 0 -2 -1  2  1  0 |        | 0  1  1  4  4  0 |
 *         |  1/24 -1/12  1/6  |         | 0  2 -1 -2  1  0 |        | 0  1 -1  8 -8  1 |
 *         |   0     0     1   |         | 0  4  0 -5  0  1 |
 *
 * so the products are 36 matrix products over the channels, one per position p
 * of the 6x6 blocks: 36 multiplies a tile of 16 outputs for each (k, c) where
 * the direct convolution does 144, 4x fewer (F(2x2, 3x3), which this replaced,
 * does 2.25x fewer), while the transforms are additions and multiplies by 2, 4,
 * 5 and 8. The results differ from the direct sum in the last bits (a few units
 * in 1e-6 of the outputs' size on random data, against about 1e-6 for F(2x2)),
 * not in their determinism.
 *
 * The AVX-512 kernel works in vectors of 16 tiles: two rows of tiles (8 lanes
 * each) when the output is 17 to 32 columns wide, four (4 lanes each) when it
 * is at most 16, the rows of one image or of several in a row (the images a
 * call fill an even number of vectors: tg__winograd_batch). For each vector it
 * transforms every input channel (down the columns of the rows as loaded, then
 * along each transformed row, its columns picked into the tiles' lanes by
 * permutes: V, 2.25 KiB a channel); then, two vectors at a time, for each block
 * of 8 output channels it runs the 36 products over the channels (each weight
 * broadcast feeding two FMAs) and transforms their results back into y's rows,
 * bias added and ReLU applied, or added onto y (the input gradient). The
 * reference below computes the same formulas in the same order with plain
 * loops: the two agree bit for bit.
 *
 * The weight gradient uses F(4x4, 3x3) too, in its own section further down. */
#include "kernels.h"
#include <math.h>
#include <string.h>

bool tg__winograd_fits(const tg__conv_dims *d) {
    if (d->G != 1 || d->R != 3 || d->S != 3 || d->stride != 1 || d->dil != 1 || d->pad > 2) return false;
    /* it pays from 16 channels in and out, on AVX-512; measured up to 256 channels in (1.3-3.5x the
     * direct kernel on one thread, 7x7 to 28x28: BENCHMARKS.md) */
    if (d->C < 16 || d->C > 256 || d->K < 16 || tg__isa() != TG_ISA_AVX512) return false;
    if (d->Ho < 4 || d->Wo < 4) return false;
    return d->Wo <= 16 ? d->W <= 16 : d->W <= 32 && d->Wo <= 32;
}

// ----------------------------------------------------------------------------
// The forward (and the input gradient's conv): F(4x4, 3x3)

#define WG_KB 8 /* output channels per block of products */

typedef struct {
    int TH, TW; /* tiles down and across */
    int slots;  /* rows of tiles a vector holds: 2 (8 lanes each) or 4 (4 lanes each) */
    int Kp;     /* K rounded up to WG_KB */
} wg_geom;

static wg_geom geom_of(const tg__conv_dims *d) {
    wg_geom g;
    g.TH = (d->Ho + 3) / 4, g.TW = (d->Wo + 3) / 4;
    g.slots = g.TW <= 4 ? 4 : 2;
    g.Kp = (d->K + WG_KB - 1) / WG_KB * WG_KB;
    return g;
}

int tg__winograd_batch(const tg__conv_dims *d) {
    /* the fewest images whose rows of tiles fill an even number of vectors (the products take two
     * at a time): the resnet's 28x28 layers have 7 rows of tiles, two a vector, so four images
     * take 14 vectors, where one image alone would take 4 */
    wg_geom g = geom_of(d);
    int n = 1;
    while (n * g.TH % (2 * g.slots)) n++;
    return n;
}

/* U by blocks of WG_KB output channels, so that a block's products read WG_KB/K of it:
 * U[k/WG_KB][p][c][k%WG_KB] */
static size_t u_at(int p, int c, int k, int C) { return (((size_t)(k / WG_KB) * 36 + p) * C + c) * WG_KB + k % WG_KB; }

size_t tg__winograd_weights_floats(const tg__conv_dims *d) { return (size_t)36 * d->C * geom_of(d).Kp; }
/* for two vectors of tiles: V (36 positions by C by 16 tiles), then a block's products (36 by WG_KB by 16) */
size_t tg__winograd_floats(const tg__conv_dims *d) { return (size_t)2 * 36 * (d->C + WG_KB) * 16; }

/* G's transform of a column (a, b, c) of 3 weights into 6 */
static void tf_w(float t[6], float a, float b, float c) {
    float s = a + c, p = a * (1.0f / 24) + c * (1.0f / 6);
    t[0] = a * 0.25f;
    t[1] = (s + b) * (-1.0f / 6);
    t[2] = (s - b) * (-1.0f / 6);
    t[3] = p + b * (1.0f / 12);
    t[4] = p - b * (1.0f / 12);
    t[5] = c;
}

static void weights_ref(float *U, const float *w, const tg__conv_dims *d, bool flipped) {
    int C = d->C, K = d->K, Kp = geom_of(d).Kp;
    for (int k = 0; k < Kp; k++)
        for (int c = 0; c < C; c++) {
            float g[9] = {0}, t[3][6], u[6]; /* w[k][c], or (flipped) w[c][k] turned by 180 degrees; (G g)^T */
            for (int i = 0; i < 9 && k < K; i++)
                g[i] = flipped ? w[((size_t)c * K + k) * 9 + 8 - i] : w[((size_t)k * C + c) * 9 + i];
            for (int j = 0; j < 3; j++) tf_w(t[j], g[j], g[3 + j], g[6 + j]);
            for (int i = 0; i < 6; i++) { /* (G g) G^T's row i */
                tf_w(u, t[0][i], t[1][i], t[2][i]);
                for (int j = 0; j < 6; j++) U[u_at(6 * i + j, c, k, C)] = u[j];
            }
        }
}

#if defined(__x86_64__)
TG_TARGET_AVX512 static inline void tf_w_v(__m512 t[6], __m512 a, __m512 b, __m512 c) {
    __m512 s = _mm512_add_ps(a, c), p = _mm512_add_ps(_mm512_mul_ps(a, _mm512_set1_ps(1.0f / 24)),
                                                       _mm512_mul_ps(c, _mm512_set1_ps(1.0f / 6)));
    __m512 b12 = _mm512_mul_ps(b, _mm512_set1_ps(1.0f / 12)), m6 = _mm512_set1_ps(-1.0f / 6);
    t[0] = _mm512_mul_ps(a, _mm512_set1_ps(0.25f));
    t[1] = _mm512_mul_ps(_mm512_add_ps(s, b), m6);
    t[2] = _mm512_mul_ps(_mm512_sub_ps(s, b), m6);
    t[3] = _mm512_add_ps(p, b12);
    t[4] = _mm512_sub_ps(p, b12);
    t[5] = c;
}

/* the same operations, 16 (k, c) pairs at a time in U's order: lane l is input channel c0 + l/8,
 * output channel kb + l%8, so each position's 16 results are one store */
TG_TARGET_AVX512 static void weights_avx512(float *U, const float *w, const tg__conv_dims *d, bool flipped) {
    int C = d->C, K = d->K, Kp = geom_of(d).Kp;
#pragma omp parallel for num_threads(tg__threads_for((int64_t)K * C, 128)) schedule(static)
    for (int kb = 0; kb < Kp; kb += WG_KB)
        for (int c0 = 0; c0 < C; c0 += 2) {
            int id[16];
            unsigned in = 0;
            for (int l = 0; l < 16; l++) {
                int c = c0 + l / 8, k = kb + l % 8;
                id[l] = flipped ? (c * K + k) * 9 + 8 : (k * C + c) * 9;
                in |= (unsigned)(c < C && k < K) << l;
            }
            __m512i at = _mm512_loadu_si512(id);
            __m512 g[9], t[3][6], u[6];
            for (int i = 0; i < 9; i++)
                g[i] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), (__mmask16)in, at, w + (flipped ? -i : i), 4);
            for (int j = 0; j < 3; j++) tf_w_v(t[j], g[j], g[3 + j], g[6 + j]);
            __mmask16 cm = c0 + 1 < C ? 0xffff : 0x00ff; /* an odd C's last channel fills half the lanes */
            for (int i = 0; i < 6; i++) {
                tf_w_v(u, t[0][i], t[1][i], t[2][i]);
                for (int j = 0; j < 6; j++) _mm512_mask_storeu_ps(U + u_at(6 * i + j, c0, kb, C), cm, u[j]);
            }
        }
}
#endif

/* U for w, by the AVX-512 loop under the AVX-512 switch: the two agree bit for bit */
void tg__winograd_weights(float *U, const float *w, const tg__conv_dims *d, bool flipped) {
#if defined(__x86_64__)
    if (tg__isa() == TG_ISA_AVX512) {
        weights_avx512(U, w, d, flipped);
        return;
    }
#endif
    weights_ref(U, w, d, flipped);
}

/* B^T's transform of 6 values, in the order the AVX-512 kernel computes it */
static void tf_in(float t[6], const float d[6]) {
    float s12 = d[1] + d[2], s34 = d[3] + d[4], u12 = d[1] - d[2], u43 = d[4] - d[3];
    float v = d[4] - d[2], w = d[3] - d[1];
    t[0] = fmaf(4.0f, d[0], fmaf(-5.0f, d[2], d[4]));
    t[1] = fmaf(-4.0f, s12, s34);
    t[2] = fmaf(4.0f, u12, u43);
    t[3] = fmaf(2.0f, w, v);
    t[4] = fmaf(-2.0f, w, v);
    t[5] = fmaf(4.0f, d[1], fmaf(-5.0f, d[3], d[5]));
}

/* A^T's: 6 values to 4 */
static void tf_out(float o[4], const float m[6]) {
    float a = m[1] + m[2], b = m[1] - m[2], c = m[3] + m[4], e = m[3] - m[4];
    o[0] = (m[0] + a) + c;
    o[1] = fmaf(2.0f, e, b);
    o[2] = fmaf(4.0f, c, a);
    o[3] = fmaf(8.0f, e, b) + m[5];
}

/* relu(u) as PyTorch's: +0 where u <= 0, a NaN stays NaN */
static float relu1(float u) { return u <= 0.0f ? 0.0f : u; }

void tg__winograd_image_ref(float *y, const float *x, ptrdiff_t ldp, ptrdiff_t ldr, const float *U, const float *b,
                            bool relu, bool add, const tg__conv_dims *d) {
    int C = d->C, H = d->H, W = d->W, pad = d->pad;
    wg_geom g = geom_of(d);
    for (int ty = 0; ty < g.TH; ty++)
        for (int tx = 0; tx < g.TW; tx++)
            for (int k = 0; k < d->K; k++) {
                float m[36] = {0};
                for (int c = 0; c < C; c++) {
                    float t[6][6], v[36]; /* t[j]: column j's transform; then each row i's */
                    for (int j = 0; j < 6; j++) {
                        float dd[6];
                        for (int r = 0; r < 6; r++) {
                            int iy = 4 * ty + r - pad, ix = 4 * tx + j - pad;
                            dd[r] = iy >= 0 && iy < H && ix >= 0 && ix < W ? x[c * ldp + iy * ldr + ix] : 0.0f;
                        }
                        tf_in(t[j], dd);
                    }
                    for (int i = 0; i < 6; i++) {
                        float row[6];
                        for (int j = 0; j < 6; j++) row[j] = t[j][i];
                        tf_in(v + 6 * i, row);
                    }
                    for (int p = 0; p < 36; p++) m[p] = fmaf(U[u_at(p, c, k, C)], v[p], m[p]);
                }
                float t[6][4], o[4][4];
                for (int r = 0; r < 6; r++) tf_out(t[r], m + 6 * r);
                for (int j = 0; j < 4; j++) {
                    float col[6], q[4];
                    for (int r = 0; r < 6; r++) col[r] = t[r][j];
                    tf_out(q, col);
                    for (int i = 0; i < 4; i++) o[i][j] = q[i];
                }
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < 4; j++) {
                        int oy = 4 * ty + i, ox = 4 * tx + j;
                        if (oy >= d->Ho || ox >= d->Wo) continue;
                        float u = o[i][j] + (b ? b[k] : 0.0f), *to = &y[((size_t)k * d->Ho + oy) * d->Wo + ox];
                        u = relu ? relu1(u) : u;
                        *to = add ? *to + u : u;
                    }
            }
}

#if defined(__x86_64__)
TG_TARGET_AVX512 static inline void tf_in_v(__m512 t[6], const __m512 d[6]) {
    __m512 s12 = _mm512_add_ps(d[1], d[2]), s34 = _mm512_add_ps(d[3], d[4]), u12 = _mm512_sub_ps(d[1], d[2]);
    __m512 u43 = _mm512_sub_ps(d[4], d[3]), v = _mm512_sub_ps(d[4], d[2]), w = _mm512_sub_ps(d[3], d[1]);
    __m512 four = _mm512_set1_ps(4.0f), five = _mm512_set1_ps(-5.0f), two = _mm512_set1_ps(2.0f);
    t[0] = _mm512_fmadd_ps(four, d[0], _mm512_fmadd_ps(five, d[2], d[4]));
    t[1] = _mm512_fnmadd_ps(four, s12, s34);
    t[2] = _mm512_fmadd_ps(four, u12, u43);
    t[3] = _mm512_fmadd_ps(two, w, v);
    t[4] = _mm512_fnmadd_ps(two, w, v);
    t[5] = _mm512_fmadd_ps(four, d[1], _mm512_fmadd_ps(five, d[3], d[5]));
}

TG_TARGET_AVX512 static inline void tf_out_v(__m512 o[4], const __m512 m[6]) {
    __m512 a = _mm512_add_ps(m[1], m[2]), b = _mm512_sub_ps(m[1], m[2]);
    __m512 c = _mm512_add_ps(m[3], m[4]), e = _mm512_sub_ps(m[3], m[4]);
    o[0] = _mm512_add_ps(_mm512_add_ps(m[0], a), c);
    o[1] = _mm512_fmadd_ps(_mm512_set1_ps(2.0f), e, b);
    o[2] = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), c, a);
    o[3] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0f), e, b), m[5]);
}

/* bias, ReLU */
TG_TARGET_AVX512 static inline __m512 finish(__m512 v, __m512 bias, bool relu) {
    v = _mm512_add_ps(v, bias);
    return relu ? _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NLE_UQ), v) : v;
}

/* The rows of tiles of nimg images, one after the other: slot s of vector vec holds row vec*slots + s */
typedef struct {
    int img[4], ty[4]; /* ty -1: no row in that slot */
} wg_rows;

static wg_rows rows_of(const wg_geom *g, int vec, int nimg) {
    wg_rows w;
    for (int s = 0; s < 4; s++) {
        int row = vec * g->slots + s;
        bool in = s < g->slots && row < nimg * g->TH;
        w.img[s] = in ? row / g->TH : 0, w.ty[s] = in ? row % g->TH : -1;
    }
    return w;
}

/* The rows a vector of tiles reads and writes, by slot: where they start in x (image and row,
 * before the plane) and in y, and how many floats they span (0: no row in that slot). The kernel
 * asks for the next pair of vectors' rows while it works on this pair: their planes are more
 * streams than the hardware's prefetchers follow, and y is cold when the tape hands it out */
typedef struct {
    ptrdiff_t in[4], out[4];
    ptrdiff_t nin[4], nout[4];
} wg_ahead;

static wg_ahead ahead_of(const wg_rows *w, ptrdiff_t x_img, ptrdiff_t ldr, ptrdiff_t y_img, const tg__conv_dims *d) {
    wg_ahead a = {0};
    for (int s = 0; s < 4; s++) {
        if (w->ty[s] < 0) continue;
        int y0 = 4 * w->ty[s] - d->pad, lo = y0 < 0 ? 0 : y0, hi = y0 + 5 < d->H ? y0 + 5 : d->H - 1;
        int o0 = 4 * w->ty[s], o1 = o0 + 3 < d->Ho ? o0 + 3 : d->Ho - 1;
        a.in[s] = w->img[s] * x_img + (ptrdiff_t)lo * ldr, a.nin[s] = hi < lo ? 0 : (ptrdiff_t)(hi - lo) * ldr + d->W;
        a.out[s] = w->img[s] * y_img + (ptrdiff_t)o0 * d->Wo, a.nout[s] = (ptrdiff_t)(o1 - o0 + 1) * d->Wo;
    }
    return a;
}

/* Where the tiles' columns come from. A row is loaded as four vectors Q: with two slots, slot
 * 0's row (its floats 0-15, 16-31) then slot 1's; with four, each slot's floats 0-15, the floats
 * past the row zero. Column j of the tiles is the first half's lanes picked from Q0, Q1 and the
 * second half's from Q2, Q3 by idx[j]: tile column tx reads input column 4tx + j - pad, or zero
 * outside the row. Where a lane past the row is sure to be zero (rows under 32 floats with two
 * slots, under 16 with four), the lanes that read zero pick it and the halves are blended;
 * otherwise they are zeroed by masks lo[j] and hi[j] (one more mask register each) */
typedef struct {
    __m512i idx[6];
    __mmask16 lo[6], hi[6];
    bool blend;
} in_perm;

TG_TARGET_AVX512 static void in_perm_of(in_perm *p, const tg__conv_dims *d, const wg_geom *g) {
    int L = 16 / g->slots;
    p->blend = g->slots == 2 ? d->W < 32 : d->W < 16;
    for (int j = 0; j < 6; j++) {
        int id[16];
        unsigned lo = 0, hi = 0;
        for (int l = 0; l < 16; l++) {
            int s = l / L, tx = l % L, ix = 4 * tx + j - d->pad, half = g->slots == 4 ? (s & 1) * 16 : 0;
            bool in = tx < g->TW && ix >= 0 && ix < d->W;
            id[l] = in ? half + ix : p->blend ? 31 : 0;
            if (in) *(l < 8 ? &lo : &hi) |= 1u << l;
        }
        p->idx[j] = _mm512_loadu_si512(id), p->lo[j] = (__mmask16)lo, p->hi[j] = (__mmask16)hi;
    }
}

/* 16 floats of a row, those past m zero (and not read), or zeros if !ok */
TG_TARGET_AVX512 static inline __m512 row16(const float *row, bool ok, __mmask16 m) {
    return ok ? (m == 0xffff ? _mm512_loadu_ps(row) : _mm512_maskz_loadu_ps(m, row)) : _mm512_setzero_ps();
}

/* One vector of tiles: V[p][c][16] for every channel. Per channel, B^T first down the columns
 * of the rows as loaded (Q's four vectors, 6 rows each), then along each transformed row, its
 * columns picked into the tiles' lanes */
TG_TARGET_AVX512 static inline __attribute__((always_inline)) void
input_body(float *V, const float *x, ptrdiff_t x_img, ptrdiff_t ldp, ptrdiff_t ldr, const tg__conv_dims *d,
           const wg_geom *g, const wg_rows *w, const in_perm *ip, const wg_ahead *next, const bool blend) {
    int W = d->W;
    __mmask16 wm = W >= 16 ? 0xffff : (__mmask16)((1u << W) - 1), wm2 = W > 16 ? (__mmask16)((1u << (W - 16)) - 1) : 0;
    size_t ps = (size_t)d->C * 16; /* between positions */
    const float *base[4];          /* Q's vector q, row 0 */
    unsigned ok[4];                /* bit r: that row lies inside the image (and, past 16, the row) */
    __mmask16 m[4];
    for (int q = 0; q < 4; q++) {
        int s = g->slots == 2 ? q / 2 : q, y0 = 4 * w->ty[s] - d->pad, off = g->slots == 2 ? 16 * (q % 2) : 0;
        base[q] = x + w->img[s] * x_img + (ptrdiff_t)y0 * ldr + off;
        m[q] = off ? wm2 : wm;
        ok[q] = 0;
        for (int r = 0; r < 6; r++) ok[q] |= (unsigned)(w->ty[s] >= 0 && m[q] && y0 + r >= 0 && y0 + r < d->H) << r;
    }
    for (int c = 0; c < d->C; c++) {
        __m512 T[6][4];
        for (int s = 0; s < 4; s++)
            if (next->nin[s]) tg__prefetch_row(x + next->in[s] + c * ldp, next->nin[s], false);
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) {
            __m512 R[6], o[6];
            const float *b = base[q] + c * ldp;
#pragma GCC unroll 6
            for (int r = 0; r < 6; r++) R[r] = row16(b + r * ldr, ok[q] >> r & 1, m[q]);
            tf_in_v(o, R);
#pragma GCC unroll 6
            for (int i = 0; i < 6; i++) T[i][q] = o[i];
        }
#pragma GCC unroll 6
        for (int i = 0; i < 6; i++) {
            __m512 dd[6], v[6];
#pragma GCC unroll 6
            for (int j = 0; j < 6; j++)
                dd[j] = blend ? _mm512_mask_blend_ps(0xff00, _mm512_permutex2var_ps(T[i][0], ip->idx[j], T[i][1]),
                                                     _mm512_permutex2var_ps(T[i][2], ip->idx[j], T[i][3]))
                              : _mm512_or_ps(_mm512_maskz_permutex2var_ps(ip->lo[j], T[i][0], ip->idx[j], T[i][1]),
                                             _mm512_maskz_permutex2var_ps(ip->hi[j], T[i][2], ip->idx[j], T[i][3]));
            tf_in_v(v, dd);
#pragma GCC unroll 6
            for (int j = 0; j < 6; j++) _mm512_store_ps(V + (size_t)(6 * i + j) * ps + (size_t)c * 16, v[j]);
        }
    }
}

TG_TARGET_AVX512 static void input_block(float *V, const float *x, ptrdiff_t x_img, ptrdiff_t ldp, ptrdiff_t ldr,
                                         const tg__conv_dims *d, const wg_geom *g, const wg_rows *w,
                                         const in_perm *ip, const wg_ahead *next) {
    if (ip->blend) input_body(V, x, x_img, ldp, ldr, d, g, w, ip, next, true);
    else input_body(V, x, x_img, ldp, ldr, d, g, w, ip, next, false);
}

/* For n (1 or 2) vectors of tiles, V's vs floats apart: M[v][p][a][16] = (U[p]^T V[v][p])[k0 + a]
 * for a < WG_KB, each element one chain of FMAs over c in order. With two, each weight broadcast
 * feeds two FMAs: one broadcast an FMA bound the loop at about 1.75 loads a cycle (BENCHMARKS.md) */
TG_TARGET_AVX512 static inline __attribute__((always_inline)) void products_n(float *M, const float *V, size_t vs,
                                                                            const float *U, int C, int k0,
                                                                            const int n) {
    for (int p = 0; p < 36; p++) {
        __m512 acc[2][WG_KB];
#pragma GCC unroll 8
        for (int a = 0; a < WG_KB; a++) acc[0][a] = acc[1][a] = _mm512_setzero_ps();
        const float *vp = V + (size_t)p * C * 16, *up = U + u_at(p, 0, k0, C);
        for (int c = 0; c < C; c++) {
            __m512 xv[2];
            for (int v = 0; v < n; v++) xv[v] = _mm512_load_ps(vp + v * vs + (size_t)c * 16);
#pragma GCC unroll 8
            for (int a = 0; a < WG_KB; a++) {
                __m512 u = _mm512_set1_ps(up[(size_t)c * WG_KB + a]);
                for (int v = 0; v < n; v++) acc[v][a] = _mm512_fmadd_ps(u, xv[v], acc[v][a]);
            }
        }
        for (int v = 0; v < n; v++)
#pragma GCC unroll 8
            for (int a = 0; a < WG_KB; a++) _mm512_store_ps(M + (((size_t)v * 36 + p) * WG_KB + a) * 16, acc[v][a]);
    }
}

TG_TARGET_AVX512 static void products(float *M, const float *V, size_t vs, const float *U, int C, int k0, int n) {
    if (n == 2) products_n(M, V, vs, U, C, k0, 2);
    else products_n(M, V, vs, U, C, k0, 1);
}

/* How a vector of tiles' outputs go back into rows. Output row i of half h's tiles (two slots:
 * slot h; four: slots 2h, 2h+1) is, with o[i][j] the vector of the tiles' column j: pairs
 * P01 = (o[i][0], o[i][1]) and P23 = (o[i][2], o[i][3]) interleaved by I[h], then 16 columns
 * picked from them by J[q] (two slots: columns 16q on of slot h's row; four: slot 2h+q's row),
 * stored under cm[q]; at[h][q][i] is where in a plane, -1 if that row is outside */
typedef struct {
    __m512i I[2], J[2];
    __mmask16 cm[2];
} out_perm;

TG_TARGET_AVX512 static void out_perm_of(out_perm *o, const wg_geom *g, int Wo) {
    for (int h = 0; h < 2; h++) {
        int I[16], J[16];
        for (int l = 0; l < 16; l++) {
            I[l] = (l % 2 ? 16 : 0) + 8 * h + l / 2;
            J[l] = (l % 4 < 2 ? 0 : 16) + 8 * h + 2 * (l / 4) + l % 2;
        }
        o->I[h] = _mm512_loadu_si512(I), o->J[h] = _mm512_loadu_si512(J);
    }
    for (int q = 0; q < 2; q++) {
        int cols = g->slots == 2 ? Wo - 16 * q : Wo;
        cols = cols < 0 ? 0 : cols > 16 ? 16 : cols;
        o->cm[q] = (__mmask16)((1u << cols) - 1);
    }
}

static void out_rows(ptrdiff_t at[2][2][4], const wg_geom *g, const wg_rows *w, const out_perm *o, ptrdiff_t y_img,
                     int Ho, int Wo) {
    for (int h = 0; h < 2; h++)
        for (int q = 0; q < 2; q++)
            for (int i = 0; i < 4; i++) {
                int s = g->slots == 2 ? h : 2 * h + q, row = 4 * w->ty[s] + i;
                bool in = w->ty[s] >= 0 && row < Ho && o->cm[q];
                at[h][q][i] = in ? w->img[s] * y_img + (ptrdiff_t)row * Wo + (g->slots == 2 ? 16 * q : 0) : -1;
            }
}

/* One output channel's tiles from M (36 vectors 16*WG_KB floats apart) into its plane yk of each
 * image: Y = A^T M A, bias added, ReLU applied, stored or added */
TG_TARGET_AVX512 static void output_tiles(float *yk, const float *M, __m512 bias, bool relu, bool add,
                                          const out_perm *op, ptrdiff_t at[2][2][4]) {
    __m512 t[6][4], o[4][4];
#pragma GCC unroll 6
    for (int r = 0; r < 6; r++) {
        __m512 m[6];
#pragma GCC unroll 6
        for (int j = 0; j < 6; j++) m[j] = _mm512_load_ps(M + (size_t)(6 * r + j) * WG_KB * 16);
        tf_out_v(t[r], m);
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        __m512 col[6], q[4];
#pragma GCC unroll 6
        for (int r = 0; r < 6; r++) col[r] = t[r][j];
        tf_out_v(q, col);
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) o[i][j] = finish(q[i], bias, relu);
    }
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++)
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            __m512 P01 = _mm512_permutex2var_ps(o[i][0], op->I[h], o[i][1]);
            __m512 P23 = _mm512_permutex2var_ps(o[i][2], op->I[h], o[i][3]);
#pragma GCC unroll 2
            for (int q = 0; q < 2; q++) {
                if (at[h][q][i] < 0) continue;
                float *to = yk + at[h][q][i];
                __m512 v = _mm512_permutex2var_ps(P01, op->J[q], P23);
                if (add) v = _mm512_add_ps(_mm512_maskz_loadu_ps(op->cm[q], to), v);
                _mm512_mask_storeu_ps(to, op->cm[q], v);
            }
        }
}

TG_TARGET_AVX512 static void image_avx512(float *y, ptrdiff_t y_img, const float *x, ptrdiff_t x_img, int nimg,
                                          int ahead, ptrdiff_t ldp, ptrdiff_t ldr, const float *U, const float *b,
                                          bool relu, bool add, const tg__conv_dims *d, float *buf) {
    wg_geom g = geom_of(d);
    size_t vs = (size_t)36 * d->C * 16; /* one vector of tiles' V */
    float *V = buf, *M = buf + 2 * vs;
    in_perm ip;
    out_perm op;
    in_perm_of(&ip, d, &g);
    out_perm_of(&op, &g, d->Wo);
    int nvec = (nimg * g.TH + g.slots - 1) / g.slots;
    for (int vec = 0; vec < nvec; vec += 2) { /* two vectors of tiles at a time, or the last one alone */
        int nv = nvec - vec < 2 ? 1 : 2;
        wg_rows w[2];
        wg_ahead next[2]; /* the next pair's rows, if any */
        ptrdiff_t at[2][2][2][4];
        for (int v = 0; v < nv; v++) {
            w[v] = rows_of(&g, vec + v, nimg);
            out_rows(at[v], &g, &w[v], &op, y_img, d->Ho, d->Wo);
            wg_rows wn = rows_of(&g, vec + 2 + v, nimg + ahead);
            next[v] = ahead_of(&wn, x_img, ldr, y_img, d);
            input_block(V + v * vs, x, x_img, ldp, ldr, d, &g, &w[v], &ip, &next[v]);
        }
        for (int k0 = 0; k0 < d->K; k0 += WG_KB) {
            products(M, V, vs, U, d->C, k0, nv);
            for (int v = 0; v < nv; v++)
                for (int a = 0; a < WG_KB && k0 + a < d->K; a++) {
                    float *yk = y + (size_t)(k0 + a) * d->Ho * d->Wo;
                    for (int s = 0; s < 4; s++)
                        if (next[v].nout[s]) tg__prefetch_row(yk + next[v].out[s], next[v].nout[s], true);
                    output_tiles(yk, M + (size_t)v * 36 * WG_KB * 16 + a * 16, _mm512_set1_ps(b ? b[k0 + a] : 0.0f),
                                 relu, add, &op, at[v]);
                }
        }
    }
}
#endif

/* the AVX-512 kernel under the AVX-512 switch, else the reference (the conv uses neither then) */
void tg__winograd_images(float *y, ptrdiff_t y_img, const float *x, ptrdiff_t x_img, int nimg, int ahead, ptrdiff_t ldp,
                         ptrdiff_t ldr, const float *U, const float *b, bool relu, bool add,
                         const tg__conv_dims *d, float *buf) {
#if defined(__x86_64__)
    if (tg__isa() == TG_ISA_AVX512) {
        image_avx512(y, y_img, x, x_img, nimg, ahead, ldp, ldr, U, b, relu, add, d, buf);
        return;
    }
#endif
    (void)buf, (void)ahead;
    for (int i = 0; i < nimg; i++) tg__winograd_image_ref(y + i * y_img, x + i * x_img, ldp, ldr, U, b, relu, add, d);
}

// ----------------------------------------------------------------------------
// The weight gradient, by F(4x4, 3x3) too. A tile's Y is bilinear in U and V, so
// the gradient reaching U from the tile's 4x4 dY is E .* V with E = A dY A^T (6x6),
// and w's is G^T (that) G. Summed over every tile of the images, per output channel
// k and input channel c:
//
//   M[p][k][c] = sum over tiles of E[p][k] V[p][c],   dw[k][c] = G^T M[.][k][c] G
//
// 36 multiplies a tile of 16 outputs for each (k, c) where the direct sum does 144.
// E's transform takes y0..y3 (a column or row of dY) to y0, (y0+y2) +- (y1+y3),
// (y0+4y2) +- 2(y1+4y3), y3; G^T's takes 6 values of M to 3.
//
// The AVX-512 kernel works in vectors of 16 channels: x comes blocked by 16
// channels (tg__pad_blocked, on the grid of tg__winograd_wgrad_grid) and dy is
// blocked so too, an image at a time. Each tile's V (per block of 16 input
// channels) and E (per block of 16 output channels) are made with the forward's
// operations, for a group of images of about 64 tiles; then for each position, each
// block of M (16 output by 16 input channels, or 8 by 32 where the input channels'
// blocks pair up) sums the group's tiles, each E value broadcast to FMAs with 16
// input channels' V. The tiles are summed in the order of the images and, in each,
// row after row: the kernel and the plain-loop reference agree bit for bit.

typedef struct {
    int TH, TW, T; /* tiles down and across, and an image's */
    int gi, TG;    /* images whose tiles the products take together (about 64 tiles), and their tiles */
    int Cp, Kp;    /* C and K rounded up to 16 */
    size_t vp, ep; /* floats between V's positions and E's: an odd number of cache lines, lest the
                    * 36 streams a transform stores fall in one L1 set */
} wgw_geom;

static size_t odd_lines(size_t floats) { return floats / 16 % 2 ? floats : floats + 16; }

static wgw_geom wgw_of(const tg__conv_dims *d) {
    wgw_geom w;
    w.TH = (d->Ho + 3) / 4, w.TW = (d->Wo + 3) / 4, w.T = w.TH * w.TW;
    w.gi = w.T >= 64 ? 1 : 64 / w.T, w.TG = w.gi * w.T;
    w.Cp = (d->C + 15) / 16 * 16, w.Kp = (d->K + 15) / 16 * 16;
    w.vp = odd_lines((size_t)w.Cp * w.TG), w.ep = odd_lines((size_t)w.TG * w.Kp);
    return w;
}

bool tg__winograd_wgrad_fits(const tg__conv_dims *d) { return tg__winograd_fits(d); }

/* M (36 by Kp by Cp), then a group of images' V (36 by Cp/16 by their tiles by 16) and E (36
 * by their tiles by Kp), and an image's dy blocked by 16 channels on the tiles' grid */
size_t tg__winograd_wgrad_floats(const tg__conv_dims *d) {
    wgw_geom w = wgw_of(d);
    return (size_t)36 * w.Kp * w.Cp + 36 * (w.vp + w.ep) + (size_t)w.Kp * 16 * w.T;
}

/* the padded x's rows and columns the tiles read: up to 3 more than x's padding */
void tg__winograd_wgrad_grid(const tg__conv_dims *d, int *Hx, int *Wx) {
    *Hx = (d->Ho + 3) / 4 * 4 + 2, *Wx = (d->Wo + 3) / 4 * 4 + 2;
}

/* A's transform of 4 values of dY into 6, in the order the AVX-512 kernel computes it */
static void tf_dy(float e[6], const float y[4]) {
    float a = y[0] + y[2], b = y[1] + y[3], c = fmaf(4.0f, y[2], y[0]), f = fmaf(4.0f, y[3], y[1]);
    e[0] = y[0];
    e[1] = a + b;
    e[2] = a - b;
    e[3] = fmaf(2.0f, f, c);
    e[4] = fmaf(-2.0f, f, c);
    e[5] = y[3];
}

/* G^T's: 6 values of M into 3 */
static void tf_dw(float o[3], const float m[6]) {
    float s = m[1] + m[2], t = m[3] + m[4], u = m[2] - m[1], v = m[3] - m[4];
    o[0] = fmaf(0.25f, m[0], fmaf(-1.0f / 6, s, t * (1.0f / 24)));
    o[1] = fmaf(1.0f / 6, u, v * (1.0f / 12));
    o[2] = fmaf(1.0f / 6, t - s, m[5]);
}

void tg__winograd_wgrad_ref(float *dw, const float *dq, ptrdiff_t ldq, ptrdiff_t ldqr, ptrdiff_t q_img,
                            const float *xb, ptrdiff_t ldx, ptrdiff_t x_img, int nimg, const tg__conv_dims *d,
                            float *buf) {
    int C = d->C, K = d->K, Hx, Wx;
    wgw_geom w = wgw_of(d);
    tg__winograd_wgrad_grid(d, &Hx, &Wx);
    float *M = buf, *V = M + (size_t)36 * K * C, *E = V + (size_t)36 * C; /* M[p][k][c], V[c][p], E[k][p] */
    memset(M, 0, (size_t)36 * K * C * sizeof *M);
    for (int i = 0; i < nimg; i++)
        for (int ty = 0; ty < w.TH; ty++)
            for (int tx = 0; tx < w.TW; tx++) {
                for (int c = 0; c < C; c++) { /* B^T d B: down the columns, then along the rows */
                    float t[6][6], dd[6];
                    for (int j = 0; j < 6; j++) {
                        for (int r = 0; r < 6; r++)
                            dd[r] = xb[i * x_img + c / 16 * ldx + ((4 * ty + r) * Wx + 4 * tx + j) * 16 + c % 16];
                        tf_in(t[j], dd);
                    }
                    for (int r = 0; r < 6; r++) {
                        for (int j = 0; j < 6; j++) dd[j] = t[j][r];
                        tf_in(V + (size_t)c * 36 + 6 * r, dd);
                    }
                }
                for (int k = 0; k < K; k++) { /* A dY A^T, likewise */
                    float t[4][6], g[4];
                    for (int j = 0; j < 4; j++) {
                        for (int r = 0; r < 4; r++) {
                            int oy = 4 * ty + r, ox = 4 * tx + j;
                            g[r] = oy < d->Ho && ox < d->Wo ? dq[i * q_img + k * ldq + oy * ldqr + ox] : 0.0f;
                        }
                        tf_dy(t[j], g);
                    }
                    for (int r = 0; r < 6; r++) {
                        for (int j = 0; j < 4; j++) g[j] = t[j][r];
                        tf_dy(E + (size_t)k * 36 + 6 * r, g);
                    }
                }
                for (int p = 0; p < 36; p++)
                    for (int k = 0; k < K; k++)
                        for (int c = 0; c < C; c++) {
                            float *m = &M[((size_t)p * K + k) * C + c];
                            *m = fmaf(E[(size_t)k * 36 + p], V[(size_t)c * 36 + p], *m);
                        }
            }
    for (int k = 0; k < K; k++) /* G^T M G, likewise */
        for (int c = 0; c < C; c++) {
            float r[6][3], m[6], o[3];
            for (int j = 0; j < 6; j++) {
                for (int i = 0; i < 6; i++) m[i] = M[((size_t)(6 * i + j) * K + k) * C + c];
                tf_dw(r[j], m);
            }
            for (int a = 0; a < 3; a++) {
                for (int j = 0; j < 6; j++) m[j] = r[j][a];
                tf_dw(o, m);
                for (int b = 0; b < 3; b++) dw[((size_t)k * C + c) * 9 + 3 * a + b] = o[b];
            }
        }
}

#if defined(__x86_64__)
TG_TARGET_AVX512 static inline void tf_dy_v(__m512 *e, const __m512 *y) { /* 4 values into 6 */
    __m512 four = _mm512_set1_ps(4.0f), two = _mm512_set1_ps(2.0f);
    __m512 a = _mm512_add_ps(y[0], y[2]), b = _mm512_add_ps(y[1], y[3]);
    __m512 c = _mm512_fmadd_ps(four, y[2], y[0]), f = _mm512_fmadd_ps(four, y[3], y[1]);
    e[0] = y[0];
    e[1] = _mm512_add_ps(a, b);
    e[2] = _mm512_sub_ps(a, b);
    e[3] = _mm512_fmadd_ps(two, f, c);
    e[4] = _mm512_fnmadd_ps(two, f, c);
    e[5] = y[3];
}

TG_TARGET_AVX512 static inline void tf_dw_v(__m512 o[3], const __m512 m[6]) {
    __m512 s = _mm512_add_ps(m[1], m[2]), t = _mm512_add_ps(m[3], m[4]);
    __m512 u = _mm512_sub_ps(m[2], m[1]), v = _mm512_sub_ps(m[3], m[4]), sixth = _mm512_set1_ps(1.0f / 6);
    o[0] = _mm512_fmadd_ps(_mm512_set1_ps(0.25f), m[0],
                           _mm512_fmadd_ps(_mm512_set1_ps(-1.0f / 6), s, _mm512_mul_ps(t, _mm512_set1_ps(1.0f / 24))));
    o[1] = _mm512_fmadd_ps(sixth, u, _mm512_mul_ps(v, _mm512_set1_ps(1.0f / 12)));
    o[2] = _mm512_fmadd_ps(sixth, _mm512_sub_ps(t, s), m[5]);
}

#define WGW_AHEAD 4 /* rows of dy asked for ahead of their transpose */

/* One image's dy (planes ldq apart, rows ldqr) as vectors of 16 output channels on the tiles'
 * grid (4 TH rows of 4 TW), Y[k/16][row][col][16], zero outside Ho x Wo and past K: 16 rows of
 * 16 columns loaded (under a mask past Wo), then transposed */
TG_TARGET_AVX512 static void wgw_dy(float *Y, const float *q, ptrdiff_t ldq, ptrdiff_t ldqr, const tg__conv_dims *d,
                                    const wgw_geom *w) {
    int Hy = 4 * w->TH, Wy = 4 * w->TW;
    for (int kb = 0; kb < w->Kp; kb += 16) {
        int nk = d->K - kb < 16 ? d->K - kb : 16;
        for (int y = 0; y < Hy; y++) {
            float *o = Y + ((size_t)kb / 16 * Hy + y) * Wy * 16;
            if (y >= d->Ho) { /* a row of tiles past dy's */
                for (int c = 0; c < Wy; c++) _mm512_store_ps(o + c * 16, _mm512_setzero_ps());
                continue;
            }
            for (int s = 0; s < Wy; s += 16) {
                int cols = d->Wo - s > 16 ? 16 : d->Wo - s, n = Wy - s < 16 ? Wy - s : 16;
                __mmask16 m = (__mmask16)((1u << cols) - 1);
                const float *qr = q + (ptrdiff_t)kb * ldq + y * ldqr + s;
                __m512 in[16], tr[16];
                for (int kk = 0; y + WGW_AHEAD < d->Ho && kk < nk; kk++) /* 16 planes: 16 streams */
                    tg__prefetch_row(qr + kk * ldq + WGW_AHEAD * ldqr, cols, false);
#pragma GCC unroll 16
                for (int kk = 0; kk < 16; kk++)
                    in[kk] = kk < nk ? _mm512_maskz_loadu_ps(m, qr + kk * ldq) : _mm512_setzero_ps();
                tg__transpose16(in, tr);
                for (int c = 0; c < n; c++) _mm512_store_ps(o + (s + c) * 16, tr[c]);
            }
        }
    }
}

/* One tile's 2D transform of 16 channels: the n x n vectors at src (rows rs floats apart) turned
 * by tf (n values into 6) down the columns, then along the rows, the 36 results stored ps floats
 * apart (tf and n constants, inlined) */
TG_TARGET_AVX512 static inline __attribute__((always_inline)) void
tile_tf(float *dst, size_t ps, const float *src, size_t rs, const int n, void (*tf)(__m512 *, const __m512 *)) {
    __m512 t[6][6];
#pragma GCC unroll 6
    for (int j = 0; j < n; j++) {
        __m512 col[6];
#pragma GCC unroll 6
        for (int r = 0; r < n; r++) col[r] = _mm512_load_ps(src + r * rs + j * 16);
        tf(t[j], col);
    }
#pragma GCC unroll 6
    for (int r = 0; r < 6; r++) {
        __m512 row[6], o[6];
#pragma GCC unroll 6
        for (int j = 0; j < n; j++) row[j] = t[j][r];
        tf(o, row);
#pragma GCC unroll 6
        for (int j = 0; j < 6; j++) _mm512_store_ps(dst + (6 * r + j) * ps, o[j]);
    }
}

/* E[p][t][Kp] of an image's tiles t (t0 on among the group's) from its blocked dy Y */
TG_TARGET_AVX512 static void wgw_grads(float *E, const float *Y, int t0, const wgw_geom *w) {
    int Hy = 4 * w->TH, Wy = 4 * w->TW;
    for (int kb = 0; kb < w->Kp; kb += 16)
        for (int ty = 0; ty < w->TH; ty++)
            for (int tx = 0; tx < w->TW; tx++)
                tile_tf(E + (size_t)(t0 + ty * w->TW + tx) * w->Kp + kb, w->ep,
                        Y + (((size_t)kb / 16 * Hy + 4 * ty) * Wy + 4 * tx) * 16, (size_t)Wy * 16, 4, tf_dy_v);
}

/* V[p][c/16][t][16] of an image's tiles t (t0 on) from its blocked x (blocks ldx apart, rows Wx) */
TG_TARGET_AVX512 static void wgw_inputs(float *V, const float *xi, ptrdiff_t ldx, int Wx, int t0, const wgw_geom *w) {
    for (int cb = 0; cb < w->Cp / 16; cb++)
        for (int ty = 0; ty < w->TH; ty++)
            for (int tx = 0; tx < w->TW; tx++)
                tile_tf(V + ((size_t)cb * w->TG + t0 + ty * w->TW + tx) * 16, w->vp,
                        xi + cb * ldx + ((size_t)4 * ty * Wx + 4 * tx) * 16, (size_t)Wx * 16, 6, tf_in_v);
}

/* M[p][k][c] (+)= sum over n tiles of E[p][t][k] V[p][c/16][t][c%16] (the first group's sums
 * stored), for nc (1 or 2) blocks of 16 input channels by 16 / nc output channels: with two, each
 * E value broadcast feeds two FMAs */
TG_TARGET_AVX512 static inline __attribute__((always_inline)) void
products_block(float *m, const float *vp, const float *ep, int n, bool first, const wgw_geom *w, const int nc) {
    const int nk = 16 / nc;
    __m512 acc[2][16];
    for (int b = 0; b < nc; b++)
#pragma GCC unroll 16
        for (int kk = 0; kk < nk; kk++)
            acc[b][kk] = first ? _mm512_setzero_ps() : _mm512_load_ps(m + (size_t)kk * w->Cp + 16 * b);
    for (int t = 0; t < n; t++) {
        __m512 v[2];
        for (int b = 0; b < nc; b++) v[b] = _mm512_load_ps(vp + ((size_t)b * w->TG + t) * 16);
        const float *e = ep + (size_t)t * w->Kp;
#pragma GCC unroll 16
        for (int kk = 0; kk < nk; kk++) {
            __m512 eb = _mm512_set1_ps(e[kk]);
            for (int b = 0; b < nc; b++) acc[b][kk] = _mm512_fmadd_ps(eb, v[b], acc[b][kk]);
        }
    }
    for (int b = 0; b < nc; b++)
#pragma GCC unroll 16
        for (int kk = 0; kk < nk; kk++) _mm512_store_ps(m + (size_t)kk * w->Cp + 16 * b, acc[b][kk]);
}

TG_TARGET_AVX512 static void wgw_products(float *M, const float *V, const float *E, int n, bool first,
                                          const wgw_geom *w) {
    int Cb = w->Cp / 16, Kp = w->Kp, Cp = w->Cp;
    for (int p = 0; p < 36; p++)
        for (int cb = 0; cb < Cb; cb += 2)
            for (int kb = 0; kb < Kp; kb += cb + 1 < Cb ? 8 : 16) {
                float *m = M + ((size_t)p * Kp + kb) * Cp + cb * 16;
                const float *vp = V + p * w->vp + (size_t)cb * w->TG * 16, *ep = E + p * w->ep + kb;
                if (cb + 1 < Cb) products_block(m, vp, ep, n, first, w, 2);
                else products_block(m, vp, ep, n, first, w, 1);
            }
}

/* dw = G^T M G for 16 input channels of an output channel at a time: the 9 taps' vectors
 * transposed so that each channel's 9 are one masked store into dw's row of 9 */
TG_TARGET_AVX512 static void wgw_out(float *dw, const float *M, const tg__conv_dims *d, const wgw_geom *w) {
    for (int k = 0; k < d->K; k++)
        for (int cb = 0; cb < w->Cp; cb += 16) {
            __m512 r[6][3], m[6], v[16], tr[16];
#pragma GCC unroll 6
            for (int j = 0; j < 6; j++) {
#pragma GCC unroll 6
                for (int i = 0; i < 6; i++) m[i] = _mm512_load_ps(M + ((size_t)(6 * i + j) * w->Kp + k) * w->Cp + cb);
                tf_dw_v(r[j], m);
            }
#pragma GCC unroll 3
            for (int a = 0; a < 3; a++) {
                __m512 row[6] = {r[0][a], r[1][a], r[2][a], r[3][a], r[4][a], r[5][a]};
                tf_dw_v(v + 3 * a, row);
            }
            for (int t = 9; t < 16; t++) v[t] = _mm512_setzero_ps();
            tg__transpose16(v, tr);
            for (int c = cb; c < cb + 16 && c < d->C; c++)
                _mm512_mask_storeu_ps(dw + ((size_t)k * d->C + c) * 9, 0x1ff, tr[c - cb]);
        }
}

TG_TARGET_AVX512 static void wgrad_avx512(float *dw, const float *dq, ptrdiff_t ldq, ptrdiff_t ldqr, ptrdiff_t q_img,
                                          const float *xb, ptrdiff_t ldx, ptrdiff_t x_img, int nimg,
                                          const tg__conv_dims *d, float *buf) {
    wgw_geom w = wgw_of(d);
    int Hx, Wx;
    tg__winograd_wgrad_grid(d, &Hx, &Wx);
    float *M = buf, *V = M + (size_t)36 * w.Kp * w.Cp, *E = V + 36 * w.vp, *Y = E + 36 * w.ep;
    for (int i0 = 0; i0 < nimg; i0 += w.gi) {
        int n = nimg - i0 < w.gi ? nimg - i0 : w.gi;
        for (int i = i0; i < i0 + n; i++) {
            wgw_dy(Y, dq + i * q_img, ldq, ldqr, d, &w);
            wgw_grads(E, Y, (i - i0) * w.T, &w);
            wgw_inputs(V, xb + i * x_img, ldx, Wx, (i - i0) * w.T, &w);
        }
        wgw_products(M, V, E, n * w.T, i0 == 0, &w);
    }
    wgw_out(dw, M, d, &w);
}
#endif

void tg__winograd_wgrad(float *dw, const float *dq, ptrdiff_t ldq, ptrdiff_t ldqr, ptrdiff_t q_img, const float *xb,
                        ptrdiff_t ldx, ptrdiff_t x_img, int nimg, const tg__conv_dims *d, float *buf) {
#if defined(__x86_64__)
    if (tg__isa() == TG_ISA_AVX512) {
        wgrad_avx512(dw, dq, ldq, ldqr, q_img, xb, ldx, x_img, nimg, d, buf);
        return;
    }
#endif
    tg__winograd_wgrad_ref(dw, dq, ldq, ldqr, q_img, xb, ldx, x_img, nimg, d, buf);
}
