/* winograd.c: a 3x3 stride-1 convolution in fewer multiplies, Winograd's F(2x2, 3x3).
 *
 * Each 2x2 block of outputs (a tile) reads a 4x4 block d of the padded input.
 * With the weights g of a (k, c) pair turned once into U = G g G^T (4x4) and
 * each input block into V = B^T d B, the tile is
 *
 *   Y[k] = A^T (sum_c U[k][c] .* V[c]) A
 *
 *         | 1  0  0 |          | 1  0 -1  0 |
 *   G   = | ½  ½  ½ |   B^T =  | 0  1  1  0 |   A^T = | 1  1  1  0 |
 *         | ½ -½  ½ |          | 0 -1  1  0 |         | 0  1 -1 -1 |
 *         | 0  0  1 |          | 0  1  0 -1 |
 *
 * so the products are 16 matrix products over the channels, one per position
 * p of the 4x4 blocks: 16 multiplies a tile for each (k, c) where the direct
 * convolution does 36, 2.25x fewer, while the transforms are additions only.
 * The results differ from the direct sum in the last bits (the inputs are
 * added before they are multiplied), not in their determinism.
 *
 * The AVX-512 kernel works on one image at a time, in vectors of 16 tiles:
 * one row of tiles when the output is 17 to 32 columns wide, two rows (8
 * lanes each) when it is at most 16. For each such vector it transforms every
 * input channel (two loads and four permutes per row of d: V, 1 KiB a
 * channel), then for each block of 8 output channels runs the 16 products
 * with 8 accumulators over the channels and transforms their results back
 * into y's rows, bias added and ReLU applied, or added onto y (the input
 * gradient). V and the products stay in L1 up to 32 input channels. The
 * reference below computes the same formulas in the same order with plain
 * loops: the two agree bit for bit. */
#include "kernels.h"
#include <math.h>
#include <string.h>

#define WG_KB 8 /* output channels per block of products */

typedef struct {
    int TH, TW;  /* tiles down and across */
    int slots;   /* rows of tiles a vector holds: 1 or 2 (8 lanes each) */
    int nvec;    /* vectors of tiles per image */
    int Kp;      /* K rounded up to WG_KB */
} wg_geom;

static wg_geom geom_of(const tg__conv_dims *d) {
    wg_geom g;
    g.TH = (d->Ho + 1) / 2, g.TW = (d->Wo + 1) / 2;
    g.slots = g.TW <= 8 ? 2 : 1;
    g.nvec = (g.TH + g.slots - 1) / g.slots;
    g.Kp = (d->K + WG_KB - 1) / WG_KB * WG_KB;
    return g;
}

bool tg__winograd_fits(const tg__conv_dims *d) {
    if (d->G != 1 || d->R != 3 || d->S != 3 || d->stride != 1 || d->dil != 1 || d->pad > 2) return false;
    /* it pays from 16 channels in and out, on AVX-512, up to 32 channels in: more, and a vector of
     * tiles' transforms (1 KiB a channel) outgrow L1 (BENCHMARKS.md) */
    if (d->C < 16 || d->C > 32 || d->K < 16 || tg__isa() != TG_ISA_AVX512) return false;
    if (d->Ho < 4 || d->Wo < 4) return false;
    return d->Wo <= 16 ? d->W <= 16 : d->W <= 32 && d->Wo <= 32;
}

/* U by blocks of WG_KB output channels, so that a block's products read WG_KB/16 as much:
 * U[k/WG_KB][p][c][k%WG_KB] */
static size_t u_at(int p, int c, int k, int C) { return (((size_t)(k / WG_KB) * 16 + p) * C + c) * WG_KB + k % WG_KB; }

size_t tg__winograd_weights_floats(const tg__conv_dims *d) { return (size_t)16 * d->C * geom_of(d).Kp; }
size_t tg__winograd_floats(const tg__conv_dims *d) { return (size_t)16 * (d->C + WG_KB) * 16; }

void tg__winograd_weights(float *U, const float *w, const tg__conv_dims *d, bool flipped) {
    int C = d->C, K = d->K, Kp = geom_of(d).Kp;
    memset(U, 0, (size_t)16 * C * Kp * sizeof(float));
    for (int k = 0; k < K; k++)
        for (int c = 0; c < C; c++) {
            float g[9]; /* w[k][c], or (flipped) w[c][k] turned by 180 degrees */
            for (int i = 0; i < 9; i++) g[i] = flipped ? w[((size_t)c * K + k) * 9 + 8 - i] : w[((size_t)k * C + c) * 9 + i];
            float t[4][3]; /* G g */
            for (int j = 0; j < 3; j++) {
                t[0][j] = g[j];
                t[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
                t[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
                t[3][j] = g[6 + j];
            }
            for (int i = 0; i < 4; i++) { /* (G g) G^T */
                float u[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]), 0.5f * (t[i][0] - t[i][1] + t[i][2]),
                              t[i][2]};
                for (int j = 0; j < 4; j++) U[u_at(4 * i + j, c, k, C)] = u[j];
            }
        }
}

/* relu(u) as PyTorch's: +0 where u <= 0, a NaN stays NaN */
static float relu1(float u) { return u <= 0.0f ? 0.0f : u; }

void tg__winograd_image_ref(float *y, const float *x, ptrdiff_t ldp, ptrdiff_t ldr, const float *U, const float *b,
                            bool relu, bool add, const tg__conv_dims *d) {
    int C = d->C, H = d->H, W = d->W, pad = d->pad;
    for (int ty = 0; ty < (d->Ho + 1) / 2; ty++)
        for (int tx = 0; tx < (d->Wo + 1) / 2; tx++)
            for (int k = 0; k < d->K; k++) {
                float m[16] = {0};
                for (int c = 0; c < C; c++) {
                    float dd[4][4], t[4][4], v[16];
                    for (int r = 0; r < 4; r++)
                        for (int j = 0; j < 4; j++) {
                            int iy = 2 * ty + r - pad, ix = 2 * tx + j - pad;
                            dd[r][j] = iy >= 0 && iy < H && ix >= 0 && ix < W ? x[c * ldp + iy * ldr + ix] : 0.0f;
                        }
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
                    for (int p = 0; p < 16; p++) m[p] = fmaf(U[u_at(p, c, k, C)], v[p], m[p]);
                }
                float s0[4], s1[4];
                for (int j = 0; j < 4; j++) {
                    s0[j] = m[j] + m[4 + j] + m[8 + j];
                    s1[j] = m[4 + j] - m[8 + j] - m[12 + j];
                }
                float o[2][2] = {{s0[0] + s0[1] + s0[2], s0[1] - s0[2] - s0[3]},
                                 {s1[0] + s1[1] + s1[2], s1[1] - s1[2] - s1[3]}};
                for (int i = 0; i < 2; i++)
                    for (int j = 0; j < 2; j++) {
                        int oy = 2 * ty + i, ox = 2 * tx + j;
                        if (oy >= d->Ho || ox >= d->Wo) continue;
                        float u = o[i][j] + (b ? b[k] : 0.0f), *to = &y[((size_t)k * d->Ho + oy) * d->Wo + ox];
                        u = relu ? relu1(u) : u;
                        *to = add ? *to + u : u;
                    }
            }
}

#if defined(__x86_64__)
/* bias, ReLU */
TG_TARGET_AVX512 static inline __m512 finish(__m512 v, __m512 bias, bool relu) {
    v = _mm512_add_ps(v, bias);
    return relu ? _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NLE_UQ), v) : v;
}

/* v into p (add: onto what p holds, for the lanes of fresh; the others hold what an
 * overlapping store before this one wrote) */
TG_TARGET_AVX512 static inline void put(float *p, __m512 v, bool add, __mmask16 fresh) {
    if (add) {
        __m512 old = _mm512_loadu_ps(p);
        v = _mm512_mask_add_ps(old, fresh, old, v);
    }
    _mm512_storeu_ps(p, v);
}

/* One vector of tiles (number vec): V[p][c][16] for every channel */
TG_TARGET_AVX512 static void input_block(float *V, const float *x, ptrdiff_t ldp, ptrdiff_t ldr, const float *xend,
                                         const tg__conv_dims *d, const wg_geom *g, int vec, const __m512i idx[4],
                                         const __mmask16 msk[4]) {
    int C = d->C, H = d->H, W = d->W, ty = vec * g->slots; /* the first row of tiles of the vector */
    __mmask16 wm = W >= 16 ? 0xffff : (__mmask16)((1u << W) - 1), wm2 = W > 16 ? (__mmask16)((1u << (W - 16)) - 1) : 0;
    size_t ps = (size_t)C * 16; /* between positions */
    for (int c = 0; c < C; c++) {
        const float *xc = x + c * ldp;
        __m512 dd[4][4];
        for (int r = 0; r < 4; r++) {
            /* A and B: the 32 floats the permutes choose from (slots 1: one row; 2: two rows, 16 each) */
            __m512 A = _mm512_setzero_ps(), B = _mm512_setzero_ps();
            int iy = 2 * ty + r - d->pad;
            if (g->slots == 1) {
                if (iy >= 0 && iy < H) {
                    const float *row = xc + iy * ldr;
                    if (xend - row >= 32) { /* what lies past the row is dropped by the permutes' masks */
                        A = _mm512_loadu_ps(row), B = _mm512_loadu_ps(row + 16);
                    } else {
                        A = _mm512_maskz_loadu_ps(wm, row), B = _mm512_maskz_loadu_ps(wm2, row + 16);
                    }
                }
            } else {
                if (iy >= 0 && iy < H) {
                    const float *row = xc + iy * ldr;
                    A = xend - row >= 16 ? _mm512_loadu_ps(row) : _mm512_maskz_loadu_ps(wm, row);
                }
                if (iy + 2 >= 0 && iy + 2 < H && ty + 1 < g->TH) {
                    const float *row = xc + (iy + 2) * ldr;
                    B = xend - row >= 16 ? _mm512_loadu_ps(row) : _mm512_maskz_loadu_ps(wm, row);
                }
            }
            for (int j = 0; j < 4; j++) dd[r][j] = _mm512_maskz_permutex2var_ps(msk[j], A, idx[j], B);
        }
        __m512 t[4][4];
        for (int j = 0; j < 4; j++) {
            t[0][j] = _mm512_sub_ps(dd[0][j], dd[2][j]);
            t[1][j] = _mm512_add_ps(dd[1][j], dd[2][j]);
            t[2][j] = _mm512_sub_ps(dd[2][j], dd[1][j]);
            t[3][j] = _mm512_sub_ps(dd[1][j], dd[3][j]);
        }
        for (int i = 0; i < 4; i++) {
            float *o = V + (size_t)(4 * i) * ps + (size_t)c * 16;
            _mm512_store_ps(o, _mm512_sub_ps(t[i][0], t[i][2]));
            _mm512_store_ps(o + ps, _mm512_add_ps(t[i][1], t[i][2]));
            _mm512_store_ps(o + 2 * ps, _mm512_sub_ps(t[i][2], t[i][1]));
            _mm512_store_ps(o + 3 * ps, _mm512_sub_ps(t[i][1], t[i][3]));
        }
    }
}

/* M[p][a][16] = (U[p]^T V[p])[k0 + a] for a < WG_KB, each element one chain of FMAs over c in order */
TG_TARGET_AVX512 static void products(float *M, const float *V, const float *U, int C, int k0) {
    for (int p = 0; p < 16; p++) {
        __m512 acc[WG_KB];
#pragma GCC unroll 8
        for (int a = 0; a < WG_KB; a++) acc[a] = _mm512_setzero_ps();
        const float *vp = V + (size_t)p * C * 16, *up = U + u_at(p, 0, k0, C);
        for (int c = 0; c < C; c++) {
            __m512 xv = _mm512_load_ps(vp + (size_t)c * 16);
#pragma GCC unroll 8
            for (int a = 0; a < WG_KB; a++) acc[a] = _mm512_fmadd_ps(_mm512_set1_ps(up[(size_t)c * WG_KB + a]), xv, acc[a]);
        }
#pragma GCC unroll 8
        for (int a = 0; a < WG_KB; a++) _mm512_store_ps(M + ((size_t)p * WG_KB + a) * 16, acc[a]);
    }
}

/* How a vector of tiles' outputs go back into rows: with one slot, a row's columns 0..15 and
 * Wo-16..Wo-1 from the (even, odd) columns; with two, the four rows 2ty..2ty+3 are 4*Wo floats
 * in a row, stored as vectors at seg[q] (the last may overlap the one before), rows 1 and 3 from
 * the second pair. Adding, an overlapping store adds only its fresh lanes. */
typedef struct {
    __m512i even_odd, last16, seg[4];
    __mmask16 fresh, seg_odd[4], seg_fresh[4];
    int seg_at[4], nseg;
} out_perm;

TG_TARGET_AVX512 static void out_perm_of(out_perm *o, int Wo, bool two) {
    int id0[16], idq[16];
    for (int l = 0; l < 16; l++) {
        id0[l] = l / 2 + (l % 2 ? 16 : 0);
        int col = Wo - 16 + l;
        idq[l] = col < 0 ? 0 : col / 2 + (col % 2 ? 16 : 0);
    }
    o->even_odd = _mm512_loadu_si512(id0), o->last16 = _mm512_loadu_si512(idq);
    o->fresh = (__mmask16)(0xffffu << (Wo >= 16 ? 32 - Wo : 0));
    o->nseg = two ? (4 * Wo + 15) / 16 : 0;
    for (int q = 0; q < o->nseg; q++) {
        int at = q * 16 < 4 * Wo - 16 ? q * 16 : 4 * Wo - 16, id[16];
        unsigned m = 0;
        for (int l = 0; l < 16; l++) {
            int pos = at + l, row = pos / Wo, col = pos % Wo;
            id[l] = (row >= 2 ? 8 : 0) + col / 2 + (col % 2 ? 16 : 0);
            if (row & 1) m |= 1u << l;
        }
        o->seg[q] = _mm512_loadu_si512(id), o->seg_odd[q] = (__mmask16)m;
        o->seg_at[q] = at, o->seg_fresh[q] = (__mmask16)(0xffffu << (q * 16 - at));
    }
}

/* One output channel's tiles from M (16 vectors 16*WG_KB floats apart) into its plane yk, rows
 * from 2ty on: Y = A^T M A, bias added, ReLU applied, stored or added */
TG_TARGET_AVX512 static void output_tiles(float *yk, const float *M, __m512 bias, bool relu, bool add,
                                          const out_perm *o, int ty, int Ho, int Wo, bool two) {
    __m512 m[16], s0[4], s1[4];
    for (int p = 0; p < 16; p++) m[p] = _mm512_load_ps(M + (size_t)p * WG_KB * 16);
    for (int j = 0; j < 4; j++) {
        s0[j] = _mm512_add_ps(_mm512_add_ps(m[j], m[4 + j]), m[8 + j]);
        s1[j] = _mm512_sub_ps(_mm512_sub_ps(m[4 + j], m[8 + j]), m[12 + j]);
    }
    __m512 y00 = finish(_mm512_add_ps(_mm512_add_ps(s0[0], s0[1]), s0[2]), bias, relu);
    __m512 y01 = finish(_mm512_sub_ps(_mm512_sub_ps(s0[1], s0[2]), s0[3]), bias, relu);
    __m512 y10 = finish(_mm512_add_ps(_mm512_add_ps(s1[0], s1[1]), s1[2]), bias, relu);
    __m512 y11 = finish(_mm512_sub_ps(_mm512_sub_ps(s1[1], s1[2]), s1[3]), bias, relu);
    float *r0 = yk + (size_t)2 * ty * Wo;
    if (!two) { /* rows 2ty and 2ty+1 (if inside): two full stores each, overlapping */
        put(r0, _mm512_permutex2var_ps(y00, o->even_odd, y01), add, 0xffff);
        put(r0 + Wo - 16, _mm512_permutex2var_ps(y00, o->last16, y01), add, o->fresh);
        if (2 * ty + 1 < Ho) {
            put(r0 + Wo, _mm512_permutex2var_ps(y10, o->even_odd, y11), add, 0xffff);
            put(r0 + 2 * Wo - 16, _mm512_permutex2var_ps(y10, o->last16, y11), add, o->fresh);
        }
    } else if (2 * ty + 3 < Ho) { /* four whole rows */
        for (int q = 0; q < o->nseg; q++)
            put(r0 + o->seg_at[q],
                _mm512_mask_blend_ps(o->seg_odd[q], _mm512_permutex2var_ps(y00, o->seg[q], y01),
                                     _mm512_permutex2var_ps(y10, o->seg[q], y11)),
                add, o->seg_fresh[q]);
    } else { /* the last rows: each under a mask */
        __mmask16 wm = (__mmask16)((1u << Wo) - 1);
        __m512i oi1 = _mm512_add_epi32(o->even_odd, _mm512_set1_epi32(8));
        for (int row = 2 * ty; row < Ho; row++) {
            __m512i oi = row - 2 * ty >= 2 ? oi1 : o->even_odd;
            __m512 e = row % 2 ? y10 : y00, od = row % 2 ? y11 : y01, v = _mm512_permutex2var_ps(e, oi, od);
            float *to = yk + (size_t)row * Wo;
            if (add) v = _mm512_add_ps(_mm512_maskz_loadu_ps(wm, to), v);
            _mm512_mask_storeu_ps(to, wm, v);
        }
    }
}

TG_TARGET_AVX512 static void image_avx512(float *y, const float *x, ptrdiff_t ldp, ptrdiff_t ldr, const float *xend,
                                          const float *U, const float *b, bool relu, bool add, const tg__conv_dims *d,
                                          float *buf) {
    wg_geom g = geom_of(d);
    bool two = g.slots == 2;
    float *V = buf, *M = buf + (size_t)16 * d->C * 16;
    /* the permutes: lane l is tile (slot l/8, column l%8) with two slots, column l with one;
     * tap column j reads input column 2*col + j - pad, zero outside the row */
    __m512i idx[4];
    __mmask16 msk[4];
    for (int j = 0; j < 4; j++) {
        int id[16];
        unsigned m = 0;
        for (int l = 0; l < 16; l++) {
            int slot = two ? l / 8 : 0, col = two ? l % 8 : l, ix = 2 * col + j - d->pad;
            id[l] = (slot * 16 + (ix < 0 ? 0 : ix)) & 31;
            if (col < g.TW && ix >= 0 && ix < d->W) m |= 1u << l;
        }
        idx[j] = _mm512_loadu_si512(id), msk[j] = (__mmask16)m;
    }
    out_perm o;
    out_perm_of(&o, d->Wo, two);
    for (int vec = 0; vec < g.nvec; vec++) {
        input_block(V, x, ldp, ldr, xend, d, &g, vec, idx, msk);
        for (int k0 = 0; k0 < d->K; k0 += WG_KB) {
            products(M, V, U, d->C, k0);
            for (int a = 0; a < WG_KB && k0 + a < d->K; a++)
                output_tiles(y + (size_t)(k0 + a) * d->Ho * d->Wo, M + a * 16, _mm512_set1_ps(b ? b[k0 + a] : 0.0f),
                             relu, add, &o, vec * g.slots, d->Ho, d->Wo, two);
        }
    }
}
#endif

/* the AVX-512 kernel under the AVX-512 switch, else the reference (the conv uses neither then) */
void tg__winograd_image(float *y, const float *x, ptrdiff_t ldp, ptrdiff_t ldr, const float *xend, const float *U,
                        const float *b, bool relu, bool add, const tg__conv_dims *d, float *buf) {
#if defined(__x86_64__)
    if (tg__isa() == TG_ISA_AVX512) {
        image_avx512(y, x, ldp, ldr, xend, U, b, relu, add, d, buf);
        return;
    }
#endif
    (void)xend, (void)buf;
    tg__winograd_image_ref(y, x, ldp, ldr, U, b, relu, add, d);
}
