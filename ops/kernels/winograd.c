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
 * The AVX-512 kernel works in vectors of 16 tiles: one row of tiles when the
 * output is 17 to 32 columns wide, two rows (8 lanes each) when it is at most
 * 16, the rows of one image or of two in a row (where an image's last vector
 * would be half empty: tg__winograd_batch). For each vector it transforms every
 * input channel (two loads and four permutes per row of d: V, 1 KiB a
 * channel), then for each block of 8 output channels runs the 16 products
 * with 8 accumulators over the channels and transforms their results back
 * into y's rows, bias added and ReLU applied, or added onto y (the input
 * gradient). V and the products stay in L1 up to 32 input channels. The
 * reference below computes the same formulas in the same order with plain
 * loops: the two agree bit for bit. The weight gradient, by the same
 * transforms, has its own section further down. */
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

/* v = B^T dd B, in the order the AVX-512 kernels compute it */
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
                    float dd[4][4], v[16];
                    for (int r = 0; r < 4; r++)
                        for (int j = 0; j < 4; j++) {
                            int iy = 2 * ty + r - pad, ix = 2 * tx + j - pad;
                            dd[r][j] = iy >= 0 && iy < H && ix >= 0 && ix < W ? x[c * ldp + iy * ldr + ix] : 0.0f;
                        }
                    input_tf(v, dd);
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

// ----------------------------------------------------------------------------
// The weight gradient. A tile's Y is bilinear in U and V, so the gradient
// reaching U from the tile's dY is E .* V with E = A dY A^T, and w's is G^T (that) G.
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

int tg__winograd_batch(const tg__conv_dims *d) {
    /* with two rows of tiles a vector and an odd number of rows, an image's last vector is half
     * empty: two images share it (the resnet's 14x14 layers: 7 vectors for two images, not 8) */
    wg_geom g = geom_of(d);
    return g.slots == 2 && g.TH % 2 ? 2 : 1;
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

/* The rows of tiles of nimg images, one after the other: vector vec holds rows vec*slots and,
 * with two slots, the next (which may be the next image's first) */
typedef struct {
    int img[2], ty[2]; /* ty -1: no row in that slot */
} wg_rows;

static wg_rows rows_of(const wg_geom *g, int vec, int nimg) {
    wg_rows w;
    for (int s = 0; s < 2; s++) {
        int row = vec * g->slots + s;
        bool in = s < g->slots && row < nimg * g->TH;
        w.img[s] = in ? row / g->TH : 0, w.ty[s] = in ? row % g->TH : -1;
    }
    return w;
}

/* One vector of tiles: V[p][c][16] for every channel */
TG_TARGET_AVX512 static void input_block(float *V, const float *x, ptrdiff_t x_img, ptrdiff_t ldp, ptrdiff_t ldr,
                                         const float *xend, const tg__conv_dims *d, const wg_geom *g, const wg_rows *w,
                                         const __m512i idx[4], const __mmask16 msk[4]) {
    int C = d->C, H = d->H, W = d->W;
    __mmask16 wm = W >= 16 ? 0xffff : (__mmask16)((1u << W) - 1), wm2 = W > 16 ? (__mmask16)((1u << (W - 16)) - 1) : 0;
    size_t ps = (size_t)C * 16; /* between positions */
    for (int c = 0; c < C; c++) {
        const float *xc = x + w->img[0] * x_img + c * ldp, *xc1 = x + w->img[1] * x_img + c * ldp;
        __m512 dd[4][4];
        for (int r = 0; r < 4; r++) {
            /* A and B: the 32 floats the permutes choose from (slots 1: one row; 2: two rows, 16 each) */
            __m512 A = _mm512_setzero_ps(), B = _mm512_setzero_ps();
            int iy = 2 * w->ty[0] + r - d->pad, iy1 = 2 * w->ty[1] + r - d->pad;
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
                if (w->ty[1] >= 0 && iy1 >= 0 && iy1 < H) {
                    const float *row = xc1 + iy1 * ldr;
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

/* One output channel's tiles from M (16 vectors 16*WG_KB floats apart) into its plane yk of each
 * image (y_img apart), at the vector's rows w: Y = A^T M A, bias added, ReLU applied, stored or added */
TG_TARGET_AVX512 static void output_tiles(float *yk, ptrdiff_t y_img, const float *M, __m512 bias, bool relu, bool add,
                                          const out_perm *o, const wg_rows *w, int Ho, int Wo, bool two) {
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
    int ty = w->ty[0];
    float *r0 = yk + w->img[0] * y_img + (size_t)2 * ty * Wo;
    if (!two) { /* rows 2ty and 2ty+1 (if inside): two full stores each, overlapping */
        put(r0, _mm512_permutex2var_ps(y00, o->even_odd, y01), add, 0xffff);
        put(r0 + Wo - 16, _mm512_permutex2var_ps(y00, o->last16, y01), add, o->fresh);
        if (2 * ty + 1 < Ho) {
            put(r0 + Wo, _mm512_permutex2var_ps(y10, o->even_odd, y11), add, 0xffff);
            put(r0 + 2 * Wo - 16, _mm512_permutex2var_ps(y10, o->last16, y11), add, o->fresh);
        }
    } else if (w->img[1] == w->img[0] && w->ty[1] == ty + 1 && 2 * ty + 3 < Ho) { /* four whole rows */
        for (int q = 0; q < o->nseg; q++)
            put(r0 + o->seg_at[q],
                _mm512_mask_blend_ps(o->seg_odd[q], _mm512_permutex2var_ps(y00, o->seg[q], y01),
                                     _mm512_permutex2var_ps(y10, o->seg[q], y11)),
                add, o->seg_fresh[q]);
    } else { /* each slot's rows under a mask: an image's last, or a vector across two images */
        __mmask16 wm = (__mmask16)((1u << Wo) - 1);
        for (int s = 0; s < 2 && w->ty[s] >= 0; s++) {
            __m512i oi = s ? _mm512_add_epi32(o->even_odd, _mm512_set1_epi32(8)) : o->even_odd;
            for (int row = 2 * w->ty[s]; row < 2 * w->ty[s] + 2 && row < Ho; row++) {
                __m512 e = row % 2 ? y10 : y00, od = row % 2 ? y11 : y01, v = _mm512_permutex2var_ps(e, oi, od);
                float *to = yk + w->img[s] * y_img + (size_t)row * Wo;
                if (add) v = _mm512_add_ps(_mm512_maskz_loadu_ps(wm, to), v);
                _mm512_mask_storeu_ps(to, wm, v);
            }
        }
    }
}

TG_TARGET_AVX512 static void image_avx512(float *y, ptrdiff_t y_img, const float *x, ptrdiff_t x_img, int nimg,
                                          ptrdiff_t ldp, ptrdiff_t ldr, const float *xend, const float *U,
                                          const float *b, bool relu, bool add, const tg__conv_dims *d, float *buf) {
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
    for (int vec = 0; vec < (nimg * g.TH + g.slots - 1) / g.slots; vec++) {
        wg_rows w = rows_of(&g, vec, nimg);
        input_block(V, x, x_img, ldp, ldr, xend, d, &g, &w, idx, msk);
        for (int k0 = 0; k0 < d->K; k0 += WG_KB) {
            products(M, V, U, d->C, k0);
            for (int a = 0; a < WG_KB && k0 + a < d->K; a++)
                output_tiles(y + (size_t)(k0 + a) * d->Ho * d->Wo, y_img, M + a * 16,
                             _mm512_set1_ps(b ? b[k0 + a] : 0.0f), relu, add, &o, &w, d->Ho, d->Wo, two);
        }
    }
}

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
    wg_geom g = geom_of(d);
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
                    __m512 r0, r0h, r1, r1h;
                    if (!two) {
                        r0 = _mm512_loadu_ps(q), r0h = _mm512_loadu_ps(q + 16);
                        r1 = _mm512_loadu_ps(q + ldqr), r1h = _mm512_loadu_ps(q + ldqr + 16);
                    } else {
                        r0 = _mm512_loadu_ps(q), r1 = _mm512_loadu_ps(q + ldqr);
                        r0h = _mm512_loadu_ps(q + 2 * ldqr), r1h = _mm512_loadu_ps(q + 3 * ldqr);
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
    /* dw = G^T M G, a 4 x 4 block of channels at a time, scattered into dw's rows of 9 */
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
                    __m512i at = _mm512_loadu_si512(id);
                    __m512 m[16], r[3][4];
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
                        float *o = dw + 3 * ii;
                        __m512 hs = _mm512_mul_ps(half, s);
                        _mm512_mask_i32scatter_ps(o, (__mmask16)in, at, _mm512_add_ps(r[ii][0], hs), 4);
                        _mm512_mask_i32scatter_ps(o + 1, (__mmask16)in, at, _mm512_mul_ps(half, t), 4);
                        _mm512_mask_i32scatter_ps(o + 2, (__mmask16)in, at, _mm512_add_ps(hs, r[ii][3]), 4);
                    }
                }
}
#endif

/* the AVX-512 kernel under the AVX-512 switch, else the reference (the conv uses neither then) */
void tg__winograd_images(float *y, ptrdiff_t y_img, const float *x, ptrdiff_t x_img, int nimg, ptrdiff_t ldp,
                         ptrdiff_t ldr, const float *xend, const float *U, const float *b, bool relu, bool add,
                         const tg__conv_dims *d, float *buf) {
#if defined(__x86_64__)
    if (tg__isa() == TG_ISA_AVX512) {
        image_avx512(y, y_img, x, x_img, nimg, ldp, ldr, xend, U, b, relu, add, d, buf);
        return;
    }
#endif
    (void)xend, (void)buf;
    for (int i = 0; i < nimg; i++) tg__winograd_image_ref(y + i * y_img, x + i * x_img, ldp, ldr, U, b, relu, add, d);
}

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
