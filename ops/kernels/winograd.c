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
 * The weight gradient keeps F(2x2, 3x3), in its own section further down. */
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
#pragma omp parallel for num_threads(tg__threads_for((int64_t)K * C, 4096)) schedule(static)
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
           const wg_geom *g, const wg_rows *w, const in_perm *ip, const bool blend) {
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
                                         const in_perm *ip) {
    if (ip->blend) input_body(V, x, x_img, ldp, ldr, d, g, w, ip, true);
    else input_body(V, x, x_img, ldp, ldr, d, g, w, ip, false);
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
                                          ptrdiff_t ldp, ptrdiff_t ldr, const float *U,
                                          const float *b, bool relu, bool add, const tg__conv_dims *d, float *buf) {
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
        ptrdiff_t at[2][2][2][4];
        for (int v = 0; v < nv; v++) {
            w[v] = rows_of(&g, vec + v, nimg);
            out_rows(at[v], &g, &w[v], &op, y_img, d->Ho, d->Wo);
            input_block(V + v * vs, x, x_img, ldp, ldr, d, &g, &w[v], &ip);
        }
        for (int k0 = 0; k0 < d->K; k0 += WG_KB) {
            products(M, V, vs, U, d->C, k0, nv);
            for (int v = 0; v < nv; v++)
                for (int a = 0; a < WG_KB && k0 + a < d->K; a++)
                    output_tiles(y + (size_t)(k0 + a) * d->Ho * d->Wo, M + (size_t)v * 36 * WG_KB * 16 + a * 16,
                                 _mm512_set1_ps(b ? b[k0 + a] : 0.0f), relu, add, &op, at[v]);
        }
    }
}
#endif

/* the AVX-512 kernel under the AVX-512 switch, else the reference (the conv uses neither then) */
void tg__winograd_images(float *y, ptrdiff_t y_img, const float *x, ptrdiff_t x_img, int nimg, ptrdiff_t ldp,
                         ptrdiff_t ldr, const float *U, const float *b, bool relu, bool add,
                         const tg__conv_dims *d, float *buf) {
#if defined(__x86_64__)
    if (tg__isa() == TG_ISA_AVX512) {
        image_avx512(y, y_img, x, x_img, nimg, ldp, ldr, U, b, relu, add, d, buf);
        return;
    }
#endif
    (void)buf;
    for (int i = 0; i < nimg; i++) tg__winograd_image_ref(y + i * y_img, x + i * x_img, ldp, ldr, U, b, relu, add, d);
}

// ----------------------------------------------------------------------------
// The weight gradient, by F(2x2, 3x3): 2x2 tiles of outputs from 4x4 blocks of
// the input, with
//
//         | 1  0  0 |          | 1  0 -1  0 |
//   G   = | ½  ½  ½ |   B^T =  | 0  1  1  0 |   A^T = | 1  1  1  0 |
//         | ½ -½  ½ |          | 0 -1  1  0 |         | 0  1 -1 -1 |
//         | 0  0  1 |          | 0  1  0 -1 |
//
// (the larger tiles of the forward ran slower here: BENCHMARKS.md). A tile's Y is
// bilinear in U and V, so the gradient reaching U from the tile's dY is E .* V with
// E = A dY A^T, and w's is G^T (that) G.
// Summed over every tile of the images, per output channel k and input channel c:
//
//   M[p][k][c] = sum over tiles of E[p][k] V[p][c],   dw[k][c] = G^T M[.][k][c] G
//
// 16 multiplies a tile for each (k, c) again, where the direct sum does 36. With
// dY = [[a, b], [c, e]], E's rows are (u, u+v, u-v, -v) for u = (a, a+c, a-c, -c)
// and v = (b, b+e, b-e, -e). The tiles are summed in the order of the images and,
// in each, row after row: the AVX-512 kernel below and the reference agree bit for bit.

typedef struct {
    int Cp, Kp; /* C and K rounded up to 16 */
} wgw_geom;

static wgw_geom wgw_of(const tg__conv_dims *d) { return (wgw_geom){(d->C + 15) / 16 * 16, (d->K + 15) / 16 * 16}; }

/* F(2x2)'s tiles: 2x2 outputs from 4x4 inputs, in vectors of 16 tiles (one row of tiles, or two of 8) */
typedef struct {
    int TH, TW; /* tiles down and across */
    int slots;  /* rows of tiles a vector holds: 1 or 2 (8 lanes each) */
    int nvec;   /* vectors of tiles per image */
} wg2_geom;

static wg2_geom geom2_of(const tg__conv_dims *d) {
    wg2_geom g;
    g.TH = (d->Ho + 1) / 2, g.TW = (d->Wo + 1) / 2;
    g.slots = g.TW <= 8 ? 2 : 1;
    g.nvec = (g.TH + g.slots - 1) / g.slots;
    return g;
}

/* v = B^T dd B, in the order the AVX-512 kernel computes it */
static void input_tf(float v[16], const float dd[4][4]) {
    float t[4][4];
    for (int j = 0; j < 4; j++) {
        t[0][j] = dd[0][j] - dd[2][j];
        t[1][j] = dd[1][j] + dd[2][j];
        t[2][j] = dd[2][j] - dd[1][j];
        t[3][j] = dd[1][j] - dd[3][j];
    }
    for (int i = 0; i < 4; i++) {
        v[4 * i + 0] = t[i][0] - t[i][2];
        v[4 * i + 1] = t[i][1] + t[i][2];
        v[4 * i + 2] = t[i][2] - t[i][1];
        v[4 * i + 3] = t[i][1] - t[i][3];
    }
}

bool tg__winograd_wgrad_fits(const tg__conv_dims *d) {
    /* an odd height or width leaves the last row or column of tiles half dead: 7x7 to 15x15 ran
     * 0.83-0.99x the direct kernel with 16 channels, even sizes 1.13-1.41x (BENCHMARKS.md) */
    return tg__winograd_fits(d) && d->Ho % 2 == 0 && d->Wo % 2 == 0;
}

/* the tiles' E (16 tiles by Kp), the sums M (Kp by Cp), for each position, then the 2x2
 * gradients of 16 tiles by 16 output channels (4 of them) */
size_t tg__winograd_wgrad_floats(const tg__conv_dims *d) {
    wgw_geom w = wgw_of(d);
    return (size_t)16 * (16 * w.Kp + (size_t)w.Kp * w.Cp) + 4 * 256;
}

/* the padded x's rows and columns the tiles read: one more than x's padding when Ho, Wo are odd */
void tg__winograd_wgrad_grid(const tg__conv_dims *d, int *Hx, int *Wx) {
    *Hx = (d->Ho + 1) / 2 * 2 + 2, *Wx = (d->Wo + 1) / 2 * 2 + 2;
}

/* E = A dY A^T, in the order the AVX-512 kernel computes it */
static void grad_tf(float E[16], float a, float b, float c, float e) {
    float u[4] = {a, a + c, a - c, -c}, v[4] = {b, b + e, b - e, -e};
    for (int i = 0; i < 4; i++)
        E[4 * i] = u[i], E[4 * i + 1] = u[i] + v[i], E[4 * i + 2] = u[i] - v[i], E[4 * i + 3] = -v[i];
}

/* o (3x3) = G^T m G, likewise */
static void wgrad_out(float o[9], const float m[16]) {
    float r[3][4];
    for (int j = 0; j < 4; j++) {
        float s = m[4 + j] + m[8 + j], t = m[4 + j] - m[8 + j];
        r[0][j] = m[j] + 0.5f * s, r[1][j] = 0.5f * t, r[2][j] = 0.5f * s + m[12 + j];
    }
    for (int i = 0; i < 3; i++) {
        float s = r[i][1] + r[i][2], t = r[i][1] - r[i][2];
        o[3 * i] = r[i][0] + 0.5f * s, o[3 * i + 1] = 0.5f * t, o[3 * i + 2] = 0.5f * s + r[i][3];
    }
}

void tg__winograd_wgrad_ref(float *dw, const float *dq, ptrdiff_t ldq, ptrdiff_t ldqr, ptrdiff_t q_img,
                            const float *xb, ptrdiff_t ldx, ptrdiff_t x_img, int nimg, const tg__conv_dims *d,
                            float *buf) {
    int C = d->C, K = d->K, Hx, Wx;
    tg__winograd_wgrad_grid(d, &Hx, &Wx);
    float *M = buf, *V = M + (size_t)16 * K * C, *E = V + (size_t)16 * C; /* M[p][k][c], V[c][p], E[k][p] */
    memset(M, 0, (size_t)16 * K * C * sizeof *M);
    for (int i = 0; i < nimg; i++)
        for (int ty = 0; ty < (d->Ho + 1) / 2; ty++)
            for (int tx = 0; tx < (d->Wo + 1) / 2; tx++) {
                for (int c = 0; c < C; c++) {
                    float dd[4][4];
                    for (int r = 0; r < 4; r++)
                        for (int j = 0; j < 4; j++)
                            dd[r][j] = xb[i * x_img + c / 16 * ldx + ((2 * ty + r) * Wx + 2 * tx + j) * 16 + c % 16];
                    input_tf(V + (size_t)c * 16, dd);
                }
                for (int k = 0; k < K; k++) {
                    float g[2][2];
                    for (int r = 0; r < 2; r++)
                        for (int j = 0; j < 2; j++) {
                            int oy = 2 * ty + r, ox = 2 * tx + j;
                            g[r][j] = oy < d->Ho && ox < d->Wo ? dq[i * q_img + k * ldq + oy * ldqr + ox] : 0.0f;
                        }
                    grad_tf(E + (size_t)k * 16, g[0][0], g[0][1], g[1][0], g[1][1]);
                }
                for (int p = 0; p < 16; p++)
                    for (int k = 0; k < K; k++)
                        for (int c = 0; c < C; c++) {
                            float *m = &M[((size_t)p * K + k) * C + c];
                            *m = fmaf(E[(size_t)k * 16 + p], V[(size_t)c * 16 + p], *m);
                        }
            }
    for (int k = 0; k < K; k++)
        for (int c = 0; c < C; c++) {
            float m[16];
            for (int p = 0; p < 16; p++) m[p] = M[((size_t)p * K + k) * C + c];
            wgrad_out(dw + ((size_t)k * C + c) * 9, m);
        }
}

#if defined(__x86_64__)
/* B^T d B's rows (i) and columns (j): t[i] = d[ra] + (d[rb] ^ sign), v[j] = t[ca] + (t[cb] ^ sign) */
static const int tf_a[4] = {0, 1, 2, 1}, tf_b[4] = {2, 2, 1, 3}, tf_minus[4] = {1, 0, 1, 1};

/* One position's sums for 16 output channels by 16 input channels, as 4 x 4 blocks of 4 x 4:
 * acc[cg][kg] lane q holds (k = 4*kg + q%4, c = 4*cg + q/4). Over the tiles' lanes l (0..n0-1,
 * then 8..8+n1-1 from the next row of tiles), V (16 channels) is made from the four inputs it
 * reads, at x0 + off[0..3] for the tile at x0 (tiles 32 floats apart, rows of tiles row2), each
 * of its quarters spread to 4 lanes apiece, and E's 16 channels at Ep + l*ldE read as 4 x 4 */
TG_TARGET_AVX512 static void wgw_block(float *Mb, const float *Ep, ptrdiff_t ldE, const float *x0, ptrdiff_t row2,
                                       const ptrdiff_t off[4], __m512 sr, __m512 sc, int n0, int n1,
                                       const __m512i spread[4]) {
    __m512 acc[4][4];
    for (int cg = 0; cg < 4; cg++)
        for (int kg = 0; kg < 4; kg++) acc[cg][kg] = _mm512_load_ps(Mb + (cg * 4 + kg) * 16);
    for (int s = 0; s < 2; s++)
        for (int l = 8 * s; l < 8 * s + (s ? n1 : n0); l++) {
            const float *xt = x0 + s * row2 + (ptrdiff_t)(l - 8 * s) * 32, *e = Ep + l * ldE;
            __m512 ta = _mm512_add_ps(_mm512_load_ps(xt + off[0]), _mm512_xor_ps(_mm512_load_ps(xt + off[1]), sr));
            __m512 tb = _mm512_add_ps(_mm512_load_ps(xt + off[2]), _mm512_xor_ps(_mm512_load_ps(xt + off[3]), sr));
            __m512 v = _mm512_add_ps(ta, _mm512_xor_ps(tb, sc)), eb[4];
            for (int kg = 0; kg < 4; kg++) eb[kg] = _mm512_broadcast_f32x4(_mm_load_ps(e + 4 * kg));
            for (int cg = 0; cg < 4; cg++) {
                __m512 vc = _mm512_permutexvar_ps(spread[cg], v);
                for (int kg = 0; kg < 4; kg++) acc[cg][kg] = _mm512_fmadd_ps(vc, eb[kg], acc[cg][kg]);
            }
        }
    for (int cg = 0; cg < 4; cg++)
        for (int kg = 0; kg < 4; kg++) _mm512_store_ps(Mb + (cg * 4 + kg) * 16, acc[cg][kg]);
}

/* where the sums of position p, output channels kb.., input channels cb.. start in M */
static size_t m_at(int p, int kb, int cb, int Kp, int Cp) {
    return (((size_t)p * Kp / 16 + kb / 16) * (Cp / 16) + cb / 16) * 256;
}

TG_TARGET_AVX512 static void wgrad_avx512(float *dw, const float *dq, ptrdiff_t ldq, ptrdiff_t ldqr, ptrdiff_t q_img,
                                          const float *xb, ptrdiff_t ldx, ptrdiff_t x_img, int nimg,
                                          const tg__conv_dims *d, float *buf) {
    wg2_geom g = geom2_of(d);
    wgw_geom w = wgw_of(d);
    bool two = g.slots == 2;
    int Hx, Wx, Cp = w.Cp, Kp = w.Kp, K = d->K;
    tg__winograd_wgrad_grid(d, &Hx, &Wx);
    /* E[p][l][k], M[p][kb][cb][256] (kb, cb: blocks of 16 channels), T[4][l][16]: a tile's 2x2 for 16 channels */
    float *E = buf, *M = E + (size_t)16 * 16 * Kp, *T = M + (size_t)16 * Kp * Cp;
    memset(M, 0, (size_t)16 * Kp * Cp * sizeof *M);
    /* lane l's tile reads dy's columns 2l and 2l+1 (two slots: of the second pair of rows from l = 8 on) */
    int ev[16], od[16], sp[4][16];
    for (int l = 0; l < 16; l++) ev[l] = 2 * l, od[l] = 2 * l + 1;
    for (int cg = 0; cg < 4; cg++)
        for (int q = 0; q < 16; q++) sp[cg][q] = 4 * cg + q / 4;
    __m512i iev = _mm512_loadu_si512(ev), iod = _mm512_loadu_si512(od), spread[4];
    for (int cg = 0; cg < 4; cg++) spread[cg] = _mm512_loadu_si512(sp[cg]);
    __m512 neg = _mm512_set1_ps(-0.0f);
    ptrdiff_t row2 = (ptrdiff_t)2 * Wx * 16;
    /* dy's rows read only where they lie: columns 0-15 and 16 on */
    __mmask16 mlo = d->Wo >= 16 ? 0xffff : (__mmask16)((1u << d->Wo) - 1);
    __mmask16 mhi = d->Wo > 16 ? (__mmask16)((1u << (d->Wo - 16)) - 1) : 0;
    for (int i = 0; i < nimg; i++)
        for (int vec = 0; vec < g.nvec; vec++) {
            int ty0 = vec * g.slots, n0 = g.TW, n1 = two && ty0 + 1 < g.TH ? g.TW : 0;
            for (int kb = 0; kb < Kp; kb += 16) { /* E, 16 output channels at a time */
                __m512 in[4][16], tr[16];
                for (int kk = 0; kk < 16; kk++) { /* dY's four corners, by vectors of the tiles */
                    int k = kb + kk;
                    if (k >= K) {
                        for (int j = 0; j < 4; j++) in[j][kk] = _mm512_setzero_ps();
                        continue;
                    }
                    const float *q = dq + i * q_img + k * ldq + (ptrdiff_t)2 * ty0 * ldqr;
                    __m512 r0, r0h, r1, r1h; /* rows 2ty0, 2ty0+1 (two slots: and the next two), zero outside */
                    __mmask16 m1 = 2 * ty0 + 1 < d->Ho ? mlo : 0, m2 = n1 ? mlo : 0, m3 = 2 * ty0 + 3 < d->Ho ? m2 : 0;
                    if (!two) {
                        r0 = _mm512_maskz_loadu_ps(mlo, q), r0h = _mm512_maskz_loadu_ps(mhi, q + 16);
                        r1 = _mm512_maskz_loadu_ps(m1, q + ldqr), r1h = _mm512_maskz_loadu_ps(m1 & mhi, q + ldqr + 16);
                    } else {
                        r0 = _mm512_maskz_loadu_ps(mlo, q), r1 = _mm512_maskz_loadu_ps(m1, q + ldqr);
                        r0h = _mm512_maskz_loadu_ps(m2, q + 2 * ldqr), r1h = _mm512_maskz_loadu_ps(m3, q + 3 * ldqr);
                    }
                    in[0][kk] = _mm512_permutex2var_ps(r0, iev, r0h), in[1][kk] = _mm512_permutex2var_ps(r0, iod, r0h);
                    in[2][kk] = _mm512_permutex2var_ps(r1, iev, r1h), in[3][kk] = _mm512_permutex2var_ps(r1, iod, r1h);
                }
                for (int j = 0; j < 4; j++) { /* ... turned into vectors of the channels, a tile's each */
                    tg__transpose16(in[j], tr);
                    for (int l = 0; l < 16; l++) _mm512_store_ps(T + ((size_t)j * 16 + l) * 16, tr[l]);
                }
                for (int s = 0; s < 2; s++)
                    for (int l = 8 * s; l < 8 * s + (s ? n1 : n0); l++) {
                        __m512 a = _mm512_load_ps(T + l * 16), b = _mm512_load_ps(T + (16 + l) * 16);
                        __m512 c = _mm512_load_ps(T + (32 + l) * 16), e = _mm512_load_ps(T + (48 + l) * 16);
                        __m512 u[4] = {a, _mm512_add_ps(a, c), _mm512_sub_ps(a, c), _mm512_xor_ps(c, neg)};
                        __m512 v[4] = {b, _mm512_add_ps(b, e), _mm512_sub_ps(b, e), _mm512_xor_ps(e, neg)};
                        for (int r = 0; r < 4; r++) {
                            float *o = E + ((size_t)4 * r * 16 + l) * Kp + kb;
                            _mm512_store_ps(o, u[r]);
                            _mm512_store_ps(o + (size_t)16 * Kp, _mm512_add_ps(u[r], v[r]));
                            _mm512_store_ps(o + (size_t)32 * Kp, _mm512_sub_ps(u[r], v[r]));
                            _mm512_store_ps(o + (size_t)48 * Kp, _mm512_xor_ps(v[r], neg));
                        }
                    }
            }
            const float *x0 = xb + i * x_img + (ptrdiff_t)2 * ty0 * Wx * 16; /* the first tile's inputs */
            for (int p = 0; p < 16; p++) { /* the sums, position by position */
                int ri = p / 4, cj = p % 4;
                ptrdiff_t ra = (ptrdiff_t)tf_a[ri] * Wx, rb = (ptrdiff_t)tf_b[ri] * Wx, ca = tf_a[cj], cb = tf_b[cj];
                ptrdiff_t off[4] = {(ra + ca) * 16, (rb + ca) * 16, (ra + cb) * 16, (rb + cb) * 16};
                __m512 sr = tf_minus[ri] ? neg : _mm512_setzero_ps(), sc = tf_minus[cj] ? neg : _mm512_setzero_ps();
                for (int kb = 0; kb < Kp; kb += 16)
                    for (int c0 = 0; c0 < Cp; c0 += 16)
                        wgw_block(M + m_at(p, kb, c0, Kp, Cp), E + (size_t)p * 16 * Kp + kb, Kp, x0 + c0 / 16 * ldx,
                                  row2, off, sr, sc, n0, n1, spread);
            }
        }
    /* dw = G^T M G, a 4 x 4 block of channels at a time: the 9 taps of 16 (k, c) pairs, transposed
     * so that each pair's 9 are one store into dw's row of 9 (scattered, they took about 8% of
     * the kernel's time) */
    __m512 half = _mm512_set1_ps(0.5f);
    for (int kb = 0; kb < Kp; kb += 16)
        for (int cb = 0; cb < Cp; cb += 16)
            for (int cg = 0; cg < 4; cg++)
                for (int kg = 0; kg < 4; kg++) {
                    int id[16];
                    unsigned in = 0;
                    for (int q = 0; q < 16; q++) {
                        int k = kb + 4 * kg + q % 4, c = cb + 4 * cg + q / 4;
                        id[q] = k < K && c < d->C ? (k * d->C + c) * 9 : 0;
                        in |= (unsigned)(k < K && c < d->C) << q;
                    }
                    if (!in) continue;
                    __m512 m[16], r[3][4], v[16], tr[16];
                    for (int p = 0; p < 16; p++)
                        m[p] = _mm512_load_ps(M + m_at(p, kb, cb, Kp, Cp) + (cg * 4 + kg) * 16);
                    for (int j = 0; j < 4; j++) {
                        __m512 s = _mm512_add_ps(m[4 + j], m[8 + j]), t = _mm512_sub_ps(m[4 + j], m[8 + j]);
                        r[0][j] = _mm512_add_ps(m[j], _mm512_mul_ps(half, s));
                        r[1][j] = _mm512_mul_ps(half, t);
                        r[2][j] = _mm512_add_ps(_mm512_mul_ps(half, s), m[12 + j]);
                    }
                    for (int ii = 0; ii < 3; ii++) {
                        __m512 s = _mm512_add_ps(r[ii][1], r[ii][2]), t = _mm512_sub_ps(r[ii][1], r[ii][2]);
                        __m512 hs = _mm512_mul_ps(half, s);
                        v[3 * ii] = _mm512_add_ps(r[ii][0], hs);
                        v[3 * ii + 1] = _mm512_mul_ps(half, t);
                        v[3 * ii + 2] = _mm512_add_ps(hs, r[ii][3]);
                    }
                    for (int t = 9; t < 16; t++) v[t] = _mm512_setzero_ps();
                    tg__transpose16(v, tr);
                    for (int q = 0; q < 16; q++)
                        if (in >> q & 1) _mm512_mask_storeu_ps(dw + id[q], 0x1ff, tr[q]);
                }
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
