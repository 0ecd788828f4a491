/* conv.c: the kernels of conv2d and conv_transpose2d.
 *
 * Three paths, by the shape: stride 1 multiplies by the zero-padded image
 * shifted by each tap (shifted.c); a 1x1 conv with stride 1 and no padding is
 * one GEMM on x itself; anything else copies each image's windows into columns
 * (im2col) and multiplies those. Per image and group g:
 *   Y_g (Kg, Ho*Wo) = W_g (Kg, Cg*R*S) col (Cg*R*S, Ho*Wo)
 * Work is split over images, each thread with its own part of the scratch; the
 * weight and bias gradients are summed per fixed chunk of images, then over the
 * chunks in order, so no result depends on the thread count. */
#include "kernels.h"
#include <math.h>
#include <string.h>

#define CONV_CHUNKS 16 /* the weight gradient is summed over at most this many chunks of images */

_Static_assert(CONV_CHUNKS == TG_BATCH_CHUNKS, "a batch split across processes shares out the conv's chunks");
static int chunks_of(const tg__conv_dims *d) {
    return d->split ? d->split->chunks : d->N < CONV_CHUNKS ? d->N : CONV_CHUNKS;
}
/* the chunks computed here (split: this process's), and where chunk c starts among this tensor's images */
static int chunk_lo(const tg__conv_dims *d) { return d->split ? d->split->c0 : 0; }
static int chunk_hi(const tg__conv_dims *d) { return d->split ? d->split->c1 : chunks_of(d); }
static int chunk_start(const tg__conv_dims *d, int chunks, int c) {
    const tg__split *s = d->split;
    return s ? (int)((int64_t)s->global * c / chunks - s->first) : (int)((int64_t)d->N * c / chunks);
}
/* the most images a chunk holds */
static int chunk_most(const tg__conv_dims *d) {
    int n = d->split ? d->split->global : d->N, chunks = chunks_of(d);
    return (n + chunks - 1) / chunks;
}

/* A 1x1 convolution with stride 1 and no padding needs no im2col: col is x itself. */
static bool is_pointwise(const tg__conv_dims *d) { return d->R == 1 && d->S == 1 && d->stride == 1 && d->pad == 0; }

/* The paths the kernels below return, for tape dumps (tg_node's kernel_forward and kernel_backward):
 * static strings, by instruction set (TG_ISA_*) */
#define BY_ISA(path) {path " generic", path " avx2", path " avx512"}
enum { PATH_SHIFTED, PATH_SHIFTED_BF16, PATH_GEMM, PATH_IM2COL };
static const char *const fwd_paths[][3] = {BY_ISA("shifted"), BY_ISA("shifted bf16"), BY_ISA("gemm"),
                                           BY_ISA("im2col+gemm")};
/* shifted backward, by dx (none, float32, bf16, winograd) and dW (none, shifted, blocked, blocked bf16, winograd);
 * db alone: "shifted" */
#define DW_PATHS(dx, isa)                                                                                              \
    {dx isa, dx ", shifted wgrad" isa, dx ", blocked wgrad" isa, dx ", blocked wgrad bf16" isa,                        \
     dx ", winograd wgrad" isa}
#define DX_PATHS(isa)                                                                                                 \
    {{"shifted" isa, "shifted wgrad" isa, "blocked wgrad" isa, "blocked wgrad bf16" isa, "winograd wgrad" isa},        \
     DW_PATHS("shifted dx", isa), DW_PATHS("shifted dx bf16", isa), DW_PATHS("winograd dx", isa)}
static const char *const bwd_shifted_paths[3][4][5] = {DX_PATHS(" generic"), DX_PATHS(" avx2"), DX_PATHS(" avx512")};
static const char *const bwd_paths[][3] = {BY_ISA("gemm"), BY_ISA("im2col+gemm")}; /* 1x1, im2col */
static const char *const convt_paths[][3] = {BY_ISA("gemm+col2im"), BY_ISA("im2col+gemm")}; /* forward, backward */

// ----------------------------------------------------------------------------
// scratch: the kernels and their _scratch functions lay it out with the same
// calls, which only count bytes when there is no memory yet

typedef struct {
    char *base; /* NULL: count only */
    size_t used;
} carver;

/* a * b * c things of `size` bytes, 64-byte aligned; NULL when counting, or when
 * the total no longer fits a size_t (which then stays SIZE_MAX) */
static void *carve(carver *c, int64_t a, int64_t b, int64_t n, size_t size) {
    int64_t k;
    if (c->used == SIZE_MAX || __builtin_mul_overflow(a, b, &k) || __builtin_mul_overflow(k, n, &k) || k < 0 ||
        (uint64_t)k > (SIZE_MAX - 64 - c->used) / size) {
        c->used = SIZE_MAX;
        return NULL;
    }
    void *p = c->base ? c->base + c->used : NULL;
    c->used += ((size_t)k * size + 63) & ~(size_t)63;
    return p;
}

// ----------------------------------------------------------------------------
// im2col / col2im for one image and one group: x (Cg,H,W) <-> col (Cg*R*S, Ho*Wo)

/* The output columns [lo, hi) whose input column ow*stride + off lies inside [0, W). */
static void valid_cols(int off, int stride, int W, int Wo, int *lo, int *hi) {
    int64_t l = off < 0 ? (-(int64_t)off + stride - 1) / stride : 0;
    int64_t h = (int64_t)W - off <= 0 ? 0 : ((int64_t)W - off + stride - 1) / stride;
    *lo = (int)(l < Wo ? l : Wo);
    *hi = (int)(h < Wo ? h : Wo);
    if (*hi < *lo) *hi = *lo;
}

void tg__im2col(float *col, const float *x, const tg__conv_dims *d) {
    int HWo = d->Ho * d->Wo;
    for (int c = 0; c < d->Cg; c++)
        for (int r = 0; r < d->R; r++)
            for (int s = 0; s < d->S; s++) {
                float *row = col + ((int64_t)(c * d->R + r) * d->S + s) * HWo;
                const float *xc = x + (int64_t)c * d->H * d->W;
                int off = s * d->dil - d->pad, lo, hi;
                valid_cols(off, d->stride, d->W, d->Wo, &lo, &hi);
                for (int oh = 0; oh < d->Ho; oh++) {
                    int ih = oh * d->stride - d->pad + r * d->dil;
                    float *out = row + oh * d->Wo;
                    if (ih < 0 || ih >= d->H) {
                        memset(out, 0, (size_t)d->Wo * sizeof *out);
                        continue;
                    }
                    const float *xr = xc + (int64_t)ih * d->W; /* input column ow*stride + off */
                    for (int ow = 0; ow < lo; ow++) out[ow] = 0.0f;
                    if (d->stride == 1) memcpy(out + lo, xr + lo + off, (size_t)(hi - lo) * sizeof *out);
                    else
                        for (int ow = lo; ow < hi; ow++) out[ow] = xr[ow * d->stride + off];
                    for (int ow = hi; ow < d->Wo; ow++) out[ow] = 0.0f;
                }
            }
}

void tg__im2col_ref(float *col, const float *x, const tg__conv_dims *d) {
    int64_t HWo = (int64_t)d->Ho * d->Wo;
    for (int c = 0; c < d->Cg; c++)
        for (int r = 0; r < d->R; r++)
            for (int s = 0; s < d->S; s++)
                for (int oh = 0; oh < d->Ho; oh++)
                    for (int ow = 0; ow < d->Wo; ow++) {
                        int64_t ih = (int64_t)oh * d->stride - d->pad + (int64_t)r * d->dil;
                        int64_t iw = (int64_t)ow * d->stride - d->pad + (int64_t)s * d->dil;
                        bool in = ih >= 0 && ih < d->H && iw >= 0 && iw < d->W;
                        col[((int64_t)(c * d->R + r) * d->S + s) * HWo + (int64_t)oh * d->Wo + ow] =
                            in ? x[((int64_t)c * d->H + ih) * d->W + iw] : 0.0f;
                    }
}

void tg__col2im(float *dx, const float *col, const tg__conv_dims *d) {
    int HWo = d->Ho * d->Wo;
    for (int c = 0; c < d->Cg; c++)
        for (int r = 0; r < d->R; r++)
            for (int s = 0; s < d->S; s++) {
                const float *row = col + ((int64_t)(c * d->R + r) * d->S + s) * HWo;
                float *xc = dx + (int64_t)c * d->H * d->W;
                int off = s * d->dil - d->pad, lo, hi;
                valid_cols(off, d->stride, d->W, d->Wo, &lo, &hi);
                for (int oh = 0; oh < d->Ho; oh++) {
                    int ih = oh * d->stride - d->pad + r * d->dil;
                    if (ih < 0 || ih >= d->H) continue;
                    float *xr = xc + (int64_t)ih * d->W;
                    const float *in = row + oh * d->Wo;
                    if (d->stride == 1) {
                        float *xo = xr + lo + off;
                        const float *io = in + lo;
                        for (int k = 0; k < hi - lo; k++) xo[k] += io[k];
                    } else {
                        for (int ow = lo; ow < hi; ow++) xr[ow * d->stride + off] += in[ow];
                    }
                }
            }
}

void tg__col2im_ref(float *dx, const float *col, const tg__conv_dims *d) {
    int64_t HWo = (int64_t)d->Ho * d->Wo;
    for (int c = 0; c < d->Cg; c++)
        for (int r = 0; r < d->R; r++)
            for (int s = 0; s < d->S; s++)
                for (int oh = 0; oh < d->Ho; oh++)
                    for (int ow = 0; ow < d->Wo; ow++) {
                        int64_t ih = (int64_t)oh * d->stride - d->pad + (int64_t)r * d->dil;
                        int64_t iw = (int64_t)ow * d->stride - d->pad + (int64_t)s * d->dil;
                        if (ih >= 0 && ih < d->H && iw >= 0 && iw < d->W)
                            dx[((int64_t)c * d->H + ih) * d->W + iw] +=
                                col[((int64_t)(c * d->R + r) * d->S + s) * HWo + (int64_t)oh * d->Wo + ow];
                    }
}

// ----------------------------------------------------------------------------
// the short rows of padding and unpadding (TG_ROWS_*), copied inline: a libc
// call per row costs more

TG_INLINE void copy_rows_body(float *dst, ptrdiff_t sd, const float *src, ptrdiff_t ss, const float *keep,
                              int64_t rows, int w, int mode, float bias) {
    for (int64_t r = 0; r < rows; r++, dst += sd, src += ss, keep = keep ? keep + ss : NULL) {
        switch (mode) {
        case TG_ROWS_COPY:
            for (int j = 0; j < w; j++) dst[j] = src[j];
            break;
        case TG_ROWS_ADD:
            for (int j = 0; j < w; j++) dst[j] += src[j];
            break;
        case TG_ROWS_BIAS:
            for (int j = 0; j < w; j++) dst[j] = src[j] + bias;
            break;
        case TG_ROWS_BIAS_RELU:
            for (int j = 0; j < w; j++) {
                float v = src[j] + bias;
                dst[j] = v <= 0.0f ? 0.0f : v;
            }
            break;
        default:
            for (int j = 0; j < w; j++) {
                float v = src[j];
                dst[j] = keep[j] <= 0.0f ? 0.0f : v;
            }
        }
    }
}
TG_LOOP(copy_rows,
        (float *dst, ptrdiff_t sd, const float *src, ptrdiff_t ss, const float *keep, int64_t rows, int w, int mode,
         float bias),
        (dst, sd, src, ss, keep, rows, w, mode, bias))

void tg__copy_rows_ref(float *dst, ptrdiff_t sd, const float *src, ptrdiff_t ss, const float *keep, int64_t rows,
                       int w, int mode, float bias) {
    for (int64_t r = 0; r < rows; r++)
        for (int j = 0; j < w; j++) {
            float *o = dst + r * sd + j, v = src[r * ss + j];
            switch (mode) {
            case TG_ROWS_COPY: *o = v; break;
            case TG_ROWS_ADD: *o += v; break;
            case TG_ROWS_BIAS: *o = v + bias; break;
            case TG_ROWS_BIAS_RELU: *o = v + bias <= 0.0f ? 0.0f : v + bias; break;
            default: *o = keep[r * ss + j] <= 0.0f ? 0.0f : v;
            }
        }
}

/* sum of a run in 16 lanes (they vectorise, always in the same order) */
static float lane_sum(const float *p, int64_t n) {
    float acc[16] = {0}, s = 0;
    int64_t j = 0;
    for (; j + 16 <= n; j += 16)
        for (int k = 0; k < 16; k++) acc[k] += p[j + k];
    for (; j < n; j++) acc[j % 16] += p[j];
    for (int k = 0; k < 16; k++) s += acc[k];
    return s;
}

// ----------------------------------------------------------------------------
// stride 1: no im2col. Each plane is copied once into a zero border, row after
// row, Wp = W + 2*pad floats a row, and tap (r, s) becomes a constant shift of
// that copy (shifted.c). Outputs are computed on the padded grid and the
// columns past Wo dropped, or, by the AVX-512 kernels for rows 8 or more wide,
// on the plane itself (compact_map).
//
// Backward keeps dy on the same grid: rows Wp wide whose last PS = (S-1)*dil
// columns are zeros, with PR = (R-1)*dil zero rows above and below. That one
// copy is the left operand of the weight gradient, and, read through the
// flipped kernel, the right operand of dx: a dy column left of 0 wraps into the
// previous row's zero tail.

#define SHIFT_MAX_TAPS 49 /* kernels up to 7x7 */
#define SHIFT_MAX_SIZE (1 << 26) /* channels and padded plane sizes below this keep the kernels' int grids small */
static bool is_shifted(const tg__conv_dims *d) {
    return d->stride == 1 && !is_pointwise(d) && d->R * d->S <= SHIFT_MAX_TAPS && d->Cg < SHIFT_MAX_SIZE &&
           d->Kg < SHIFT_MAX_SIZE && (int64_t)(d->H + 2 * d->pad) * (d->W + 2 * d->pad) < SHIFT_MAX_SIZE;
}

static int64_t round16(int64_t n) { return (n + 15) & ~(int64_t)15; }
static int round8(int n) { return (n + 7) & ~7; }

typedef struct { /* the padded layouts of one image and group */
    int Hp, Wp, PR, PS;
    int64_t P;       /* forward grid: Ho*Wp rounded up to 16 */
    int64_t xp_size; /* floats of the padded x, slack included */
    int64_t xb_size; /* floats of the padded x in blocks of 16 channels (tg__pad_blocked) */
    int64_t Lq;      /* floats per padded dy plane */
    int64_t front;   /* zeros before the first dy plane (dx reads up to PS before a plane) */
    int64_t dq_size; /* floats of the padded dy, front and slack included */
    int64_t P2;      /* dx grid: H*Wp rounded up to 16 */
    ptrdiff_t off[SHIFT_MAX_TAPS], off2[SHIFT_MAX_TAPS];
} shift_geom;

static void shift_geom_of(const tg__conv_dims *d, shift_geom *s) {
    s->PR = (d->R - 1) * d->dil, s->PS = (d->S - 1) * d->dil;
    s->Hp = d->H + 2 * d->pad, s->Wp = d->W + 2 * d->pad;
    s->P = round16((int64_t)d->Ho * s->Wp);
    /* multiples of 16 keep buffers 64-byte aligned; the slack past the last plane covers the grid's
     * last row read across its end (PS + 16) and the compact loads' other rows (16 + 2*Wp more) */
    s->xp_size = round16((int64_t)d->Cg * s->Hp * s->Wp + s->PS + 32 + 2 * s->Wp);
    s->xb_size = (int64_t)(d->Cg + 15) / 16 * s->Hp * s->Wp * 16;
    s->Lq = round16((int64_t)(d->Ho + 2 * s->PR) * s->Wp) + 16;
    /* front: at least PS + 16 zeros, and dy's first row (PR rows in) starts 64-byte aligned */
    s->front = round16(s->PS + 16 + (int64_t)s->PR * s->Wp) - (int64_t)s->PR * s->Wp;
    s->P2 = round16((int64_t)d->H * s->Wp);
    s->dq_size = round16(s->front + (int64_t)d->Kg * s->Lq + s->P2 + (int64_t)(d->pad + s->PR + 1) * s->Wp + 16);
    for (int r = 0; r < d->R; r++)
        for (int c = 0; c < d->S; c++) {
            s->off[r * d->S + c] = (ptrdiff_t)r * d->dil * s->Wp + c * d->dil;
            /* dx tap t reads the kernel's tap R*S-1-t: dy row h + pad + r*dil, column w + pad - PS + c*dil */
            s->off2[r * d->S + c] = (ptrdiff_t)(d->pad + r * d->dil) * s->Wp + d->pad - s->PS + c * d->dil;
        }
}

/* x's planes into a buffer whose border and slack are already zero (the
 * buffers are zeroed once per call; the copies only ever write the inside) */
static void pad_x(float *xp, const float *x, const tg__conv_dims *d, const shift_geom *s) {
    for (int c = 0; c < d->Cg; c++)
        tg__copy_rows(xp + ((int64_t)c * s->Hp + d->pad) * s->Wp + d->pad, s->Wp, x + (int64_t)c * d->H * d->W, d->W,
                      NULL, d->H, d->W, TG_ROWS_COPY, 0.0f);
}

/* dy's planes on the grid described above, into a buffer zeroed once as for
 * pad_x; with y (the output of conv2d+relu), dy where not y <= 0 */
static void pad_dy(float *dq, const float *dy, const float *y, const tg__conv_dims *d, const shift_geom *s) {
    for (int k = 0; k < d->Kg; k++) {
        int64_t o = (int64_t)k * d->Ho * d->Wo;
        tg__copy_rows(dq + s->front + k * s->Lq + (int64_t)s->PR * s->Wp, s->Wp, dy + o, d->Wo, y ? y + o : NULL,
                      d->Ho, d->Wo, y ? TG_ROWS_MASK : TG_ROWS_COPY, 0.0f);
    }
}

/* With pooling after the conv+relu: the conv's gradient for `planes` planes from
 * plane0 on, from the pooled gradient (tg__relu_unpool), each Ho rows ld floats
 * apart, planes ldp floats apart (pad_dy's grid, or dense) */
static void unpool_dy(float *dq, int64_t ldp, ptrdiff_t ld, const tg__conv_pool *pool, int64_t plane0,
                      int64_t planes, const tg__conv_dims *d) {
    int64_t HWq = (int64_t)(d->Ho / 2) * (d->Wo / 2);
    for (int64_t k = 0; k < planes; k++) {
        int64_t o = (plane0 + k) * HWq;
        tg__relu_unpool(dq + k * ldp, ld, pool->dp + o, pool->arg + o, pool->p + o, d->Ho, d->Wo, d->Ho / 2, d->Wo / 2);
    }
}

/* With pooling: one image's K conv planes y (from the scratch) pooled into image i of pool->p */
static void pool_image(const tg__conv_pool *pool, const float *y, int i, const tg__conv_dims *d) {
    int64_t o = (int64_t)i * d->K * (d->Ho / 2) * (d->Wo / 2);
    tg__max_pool2d_planes(pool->p + o, pool->arg ? pool->arg + o : NULL, y, d->K, d->Ho, d->Wo, d->Ho / 2, d->Wo / 2,
                          2, 2, 0);
}

/* For writing straight into an unpadded output (tg__shift_out): on a grid of
 * rows Wp wide, of which `rows` rows and the first `cols` columns are real,
 * which lanes of each 16-column group are real and where the first goes */
static void grid_map(uint16_t *mask, int32_t *at, int64_t P, int Wp, int rows, int cols) {
    for (int64_t g = 0; g < P / 16; g++) {
        mask[g] = 0, at[g] = 0;
        for (int l = 15; l >= 0; l--) {
            int64_t p = g * 16 + l;
            if (p < (int64_t)rows * Wp && p % Wp < cols) {
                mask[g] |= (uint16_t)(1u << l);
                at[g] = (int32_t)(p / Wp * cols + p % Wp);
            }
        }
    }
}

/* The AVX-512 kernels can compute the unpadded plane itself (tg__shift_out's
 * compact) when its rows are 8 or more wide, so that a group of 16 outputs
 * spans at most three rows; the grid's columns past `cols` are then not
 * computed. Returns compact's value (0: use the grid) and fills mask and at,
 * and mask3 if a group spans three rows (else sets *three to false). */
static ptrdiff_t compact_map(uint16_t *mask, int32_t *at, uint16_t *mask3, bool *three, int Wp, int rows, int cols,
                             bool bf) {
    *three = false;
    if (!(bf || tg__isa() == TG_ISA_AVX512) || cols < 8 || Wp == cols) return 0;
    for (int64_t g = 0; g < ((int64_t)rows * cols + 15) / 16; g++) {
        int64_t q = g * 16, r = q / cols, c = q % cols, n = cols - c < 16 ? cols - c : 16;
        int n2 = 16 - n < cols ? 16 - (int)n : cols; /* lanes in the next row */
        mask[g] = (uint16_t)((1u << n) - 1u), at[g] = (int32_t)(r * Wp + c);
        mask3[g] = (uint16_t)(0xffffu & ~((1u << (n + n2)) - 1u));
        *three |= mask3[g] != 0;
    }
    return Wp - cols;
}

/* For tg__shift_out's tap spans, on the same grid: tap row r (taps r*S to
 * r*S + S-1) of output row h reads source row h + r*dil - e, all zeros unless
 * that row lies in [0, Hs) (a real output's column never leaves its row but
 * into a zero tail: see above). The forward's source is x (e = pad), dx's dy
 * (e = PR - pad): a kernel without padding reads zero rows for dx's first and
 * last PR rows. */
static void tap_spans(uint8_t *lo, uint8_t *hi, int64_t P, int Wp, int rows, int cols, bool compact,
                      const tg__conv_dims *d, int e, int Hs) {
    if (compact) Wp = cols, P = ((int64_t)rows * cols + 15) & ~(int64_t)15; /* groups of the plane */
    for (int64_t g = 0; g < P / 16; g++) {
        int l = d->R * d->S, h = 0;
        for (int64_t p = g * 16; p < g * 16 + 16; p++)
            for (int r = 0; p < (int64_t)rows * Wp && p % Wp < cols && r < d->R; r++) {
                int64_t src = p / Wp + (int64_t)r * d->dil - e;
                if (src < 0 || src >= Hs) continue;
                l = r * d->S < l ? r * d->S : l, h = (r + 1) * d->S > h ? (r + 1) * d->S : h;
            }
        lo[g] = (uint8_t)l, hi[g] = (uint8_t)h;
    }
}

/* tg__shift_out's map of an output grid of P/16 groups, in the kernels' scratch: the
 * lanes (grid_map or compact_map) and the tap spans */
typedef struct {
    uint16_t *mask, *mask3;
    int32_t *at;
    uint8_t *tap_lo, *tap_hi;
} out_map;

static void carve_map(carver *c, out_map *m, int64_t P) {
    m->mask = carve(c, P / 16, 1, 1, sizeof *m->mask);
    m->mask3 = carve(c, P / 16, 1, 1, sizeof *m->mask3);
    m->at = carve(c, P / 16, 1, 1, sizeof *m->at);
    m->tap_lo = carve(c, P / 16, 1, 1, 1);
    m->tap_hi = carve(c, P / 16, 1, 1, 1);
}

/* For `rows` x `cols` outputs on the grid of rows Wp wide, whose taps read source rows as
 * tap_spans says: the map's part of tg__shift_out (shift_out adds the rest) */
static tg__shift_out fill_map(const out_map *m, int64_t P, int Wp, int rows, int cols, bool bf,
                              const tg__conv_dims *d, int e, int Hs) {
    bool three;
    ptrdiff_t compact = compact_map(m->mask, m->at, m->mask3, &three, Wp, rows, cols, bf);
    if (!compact) grid_map(m->mask, m->at, P, Wp, rows, cols);
    tap_spans(m->tap_lo, m->tap_hi, P, Wp, rows, cols, compact != 0, d, e, Hs);
    return (tg__shift_out){.mask = m->mask, .at = m->at, .tap_lo = m->tap_lo, .tap_hi = m->tap_hi,
                           .compact = compact, .mask3 = three ? m->mask3 : NULL};
}

static tg__shift_out shift_out(tg__shift_out map, float *y, ptrdiff_t plane, const float *bias, bool relu, bool add) {
    map.y = y, map.plane = plane, map.bias = bias, map.relu = relu, map.add = add;
    return map;
}

/* The weights of group g by tap, in blocks of 8 output rows (tg__shifted_gemm's
 * layout): fwd A[((k/8)*T*Cg + t*Cg + c)*8 + k%8] = w[k][c][t], for dx
 * A[((c/8)*T*Kg + t*Kg + k)*8 + c%8] = w[k][c][T-1-t] (the flipped kernel); padding rows zero. */
static void pack_taps(float *A, const float *w, const tg__conv_dims *d, bool for_dx) {
    int T = d->R * d->S, Kgp = round8(d->Kg), Cgp = round8(d->Cg);
    memset(A, 0, (size_t)T * (for_dx ? (int64_t)d->Kg * Cgp : (int64_t)d->Cg * Kgp) * sizeof *A);
    for (int k = 0; k < d->Kg; k++)
        for (int c = 0; c < d->Cg; c++)
            for (int t = 0; t < T; t++) {
                float v = w[((int64_t)k * d->Cg + c) * T + t];
                if (for_dx) A[((int64_t)c / 8 * T * d->Kg + (int64_t)(T - 1 - t) * d->Kg + k) * 8 + c % 8] = v;
                else A[((int64_t)k / 8 * T * d->Cg + (int64_t)t * d->Cg + c) * 8 + k % 8] = v;
            }
}

/* pack_taps' layout (blocks of 8 rows, T*K columns each) as tg__shifted_gemm_bf16's: pairs over k */
static void pair_taps(uint32_t *A2, const float *A, int64_t blocks, int T, int K) {
    int K2 = (K + 1) / 2;
    for (int64_t bt = 0; bt < blocks * T; bt++)
        for (int kp = 0; kp < K2; kp++) {
            const float *lo = A + (bt * K + 2 * kp) * 8;
            tg__bf16_pairs(A2 + (bt * K2 + kp) * 8, lo, 2 * kp + 1 < K ? lo + 8 : NULL, 8);
        }
}

/* planes of n floats, K of them ld apart, as pairs of planes: d's plane kp holds planes 2kp and 2kp+1 */
static void pair_planes(uint32_t *d, const float *x, int64_t ld, int K, int64_t n) {
    for (int kp = 0; kp < (K + 1) / 2; kp++)
        tg__bf16_pairs(d + kp * ld, x + 2 * kp * ld, 2 * kp + 1 < K ? x + (2 * kp + 1) * ld : NULL, n);
}

/* pad_x and pair_planes in one pass: x's Cg planes, row by row, as pairs of planes into the
 * padded layout (xp2's border and slack zero already, as pad_x's) */
static void pad_pairs(uint32_t *xp2, const float *x, const tg__conv_dims *d, const shift_geom *s) {
    int64_t plane = (int64_t)s->Hp * s->Wp, HW = (int64_t)d->H * d->W;
    for (int kp = 0; kp < (d->Cg + 1) / 2; kp++) {
        const float *lo = x + 2 * kp * HW, *hi = 2 * kp + 1 < d->Cg ? lo + HW : NULL;
        uint32_t *dp = xp2 + kp * plane + (int64_t)d->pad * s->Wp + d->pad;
        for (int h = 0; h < d->H; h++)
            tg__bf16_pairs(dp + (int64_t)h * s->Wp, lo + (int64_t)h * d->W, hi ? hi + (int64_t)h * d->W : NULL, d->W);
    }
}

/* The weight gradient reads x in blocks of 16 channels when at most a fifth of
 * the blocks' lanes would be padding: its operands then stay in L1 (shifted.c) */
static bool blocked_pays(int Cg) { return (Cg + 15) / 16 * 16 * 4 <= Cg * 5; }
/* ... and in bf16 (tg__shifted_wgt_blocked_bf16) it takes each row's pixels two at a time */
static bool bf16_wgt(const tg__conv_dims *d) { return blocked_pays(d->Cg) && d->Wo % 2 == 0; }

// ----------------------------------------------------------------------------
// one input channel, 3x3, stride 1 (a net's first conv on grey images), the
// forward: each image padded once into a thread's buffer (rows of ONE_WQ
// floats, zeros past the plane), then 16 outputs of a row at a time from its 9
// shifted loads, each output channel's taps summed in tap order (FMAs from
// zero, then the bias, then the ReLU). The shifted products pad the plane to a
// grid, run 16 channels of products for one and copy the outputs out. Their
// weight gradient stays (BENCHMARKS.md: this layout's was slower).

static bool one_channel(const tg__conv_dims *d) {
    return tg__isa() == TG_ISA_AVX512 && d->G == 1 && d->C == 1 && d->R == 3 && d->S == 3 && d->stride == 1 &&
           d->dil == 1 && d->pad <= 1 && d->Ho >= 1 && d->Wo >= 1;
}
#define ONE_WQ(d) (((d)->Wo + 15) / 16 * 16 + 16) /* whole vectors of outputs, and the 2 taps past them */
static int64_t one_plane(const tg__conv_dims *d) { return (int64_t)(d->H + 2 * d->pad) * ONE_WQ(d); }

/* image x (H x W) into xp (zeroed once: only the inside is written) */
static void one_pad(float *xp, const float *x, const tg__conv_dims *d) {
    for (int h = 0; h < d->H; h++)
        memcpy(xp + (int64_t)(h + d->pad) * ONE_WQ(d) + d->pad, x + (int64_t)h * d->W, (size_t)d->W * sizeof *x);
}

#if defined(__x86_64__)
TG_TARGET_AVX512 static void one_forward_avx512(float *y, const float *xp, const float *w, const float *b,
                                                const tg__conv_dims *d, bool relu) {
    int Wq = ONE_WQ(d);
    int64_t HWo = (int64_t)d->Ho * d->Wo;
    for (int oh = 0; oh < d->Ho; oh++)
        for (int c0 = 0; c0 < d->Wo; c0 += 16) {
            __mmask16 m = d->Wo - c0 >= 16 ? 0xffff : (__mmask16)((1u << (d->Wo - c0)) - 1);
            __m512 in[9];
            for (int t = 0; t < 9; t++) in[t] = _mm512_loadu_ps(xp + (int64_t)(oh + t / 3) * Wq + c0 + t % 3);
            for (int k = 0; k < d->K; k++) {
                __m512 acc = _mm512_setzero_ps();
                for (int t = 0; t < 9; t++) acc = _mm512_fmadd_ps(_mm512_set1_ps(w[9 * k + t]), in[t], acc);
                if (b) acc = _mm512_add_ps(acc, _mm512_set1_ps(b[k]));
                if (relu) acc = _mm512_mask_mov_ps(acc, _mm512_cmp_ps_mask(acc, _mm512_setzero_ps(), _CMP_LE_OQ),
                                                   _mm512_setzero_ps());
                _mm512_mask_storeu_ps(y + k * HWo + (int64_t)oh * d->Wo + c0, m, acc);
            }
        }
}
#endif

void tg__conv_one_forward_ref(float *y, const float *x, const float *w, const float *b, const tg__conv_dims *d,
                              bool relu) {
    for (int k = 0; k < d->K; k++)
        for (int oh = 0; oh < d->Ho; oh++)
            for (int ow = 0; ow < d->Wo; ow++) {
                float acc = 0.0f;
                for (int t = 0; t < 9; t++) {
                    int ih = oh + t / 3 - d->pad, iw = ow + t % 3 - d->pad;
                    float v = ih >= 0 && ih < d->H && iw >= 0 && iw < d->W ? x[(int64_t)ih * d->W + iw] : 0.0f;
                    acc = fmaf(w[9 * k + t], v, acc);
                }
                if (b) acc += b[k];
                y[((int64_t)k * d->Ho + oh) * d->Wo + ow] = relu && acc <= 0.0f ? 0.0f : acc;
            }
}

// ----------------------------------------------------------------------------
// conv2d forward

typedef struct {
    float *A;              /* shifted: the packed weights of every group */
    uint32_t *A2;          /* shifted, on CPUs with bf16 products: the same as pairs */
    float *bufs;           /* shifted: per thread, `per` floats (the bf16 image last, if A2) */
    int64_t per, xp2_size;
    out_map map;           /* shifted: of the output grid */
    float *cols;           /* im2col: per thread, rows * Ho*Wo floats */
    float *ys;             /* with pooling: per thread, one image's output (K*Ho*Wo floats) */
    float *U;              /* winograd: the transformed weights */
} fwd_work;

/* Winograd's fewer multiplies where they pay (winograd.c), for float32 products */
static bool use_winograd(const tg__conv_dims *d) { return tg__winograd_fits(d) && !tg__bf16_active(); }
/* Its per-thread buffers each start 16 KiB past the end of what comes before them (the shared
 * weights, another thread's buffer): packed tight, the resnet's 16-channel forward took 0.72 ms
 * instead of 0.48 (BENCHMARKS.md) */
#define WG_APART 4096
/* Winograd's weight gradient reads x padded in blocks of 16 channels on a grid of its own
 * (tg__winograd_wgrad_grid): the floats of a block, and (if wx) its row width */
static int64_t wgw_block(const tg__conv_dims *d, int *wx) {
    int Hx, Wx;
    tg__winograd_wgrad_grid(d, &Hx, &Wx);
    if (wx) *wx = Wx;
    return (int64_t)Hx * Wx * 16;
}
/* the conv that computes d's input gradient: dy's K channels to x's C, flipped 3x3 weights */
static tg__conv_dims dx_conv(const tg__conv_dims *d) {
    tg__conv_dims t = *d;
    t.C = t.Cg = d->Kg, t.K = t.Kg = d->Cg, t.H = d->Ho, t.W = d->Wo, t.Ho = d->H, t.Wo = d->W;
    t.pad = d->dil * (d->R - 1) - d->pad, t.rows = (int64_t)t.Cg * d->R * d->S;
    return t;
}

static size_t fwd_layout(fwd_work *k, void *scratch, const tg__conv_dims *d, bool pool, int T) {
    carver c = {scratch, 0};
    memset(k, 0, sizeof *k);
    if (pool) k->ys = carve(&c, T, d->K, (int64_t)d->Ho * d->Wo, sizeof(float));
    if (use_winograd(d)) {
        k->per = round16((int64_t)tg__winograd_floats(d)) + WG_APART;
        k->U = carve(&c, (int64_t)tg__winograd_weights_floats(d) + WG_APART, 1, 1, sizeof(float));
        k->bufs = carve(&c, T, k->per, 1, sizeof(float));
    } else if (one_channel(d)) {
        k->per = round16(one_plane(d));
        k->bufs = carve(&c, T, k->per, 1, sizeof(float));
    } else if (is_shifted(d)) {
        shift_geom s;
        shift_geom_of(d, &s);
        int taps = d->R * d->S, Kgp = round8(d->Kg);
        /* per thread: the padded x and the output grid, then the (tap, channel) offsets, 2 floats each,
         * then (bf16) the padded x as pairs of channels */
        bool bf = tg__bf16_supported();
        k->xp2_size = bf ? round16((int64_t)(d->Cg + 1) / 2 * s.Hp * s.Wp + s.PS + 32 + 2 * s.Wp) : 0;
        k->per = round16(s.xp_size + Kgp * s.P) + 2 * round16(taps * d->Cg) + k->xp2_size;
        k->A = carve(&c, d->G, (int64_t)taps * d->Cg, Kgp, sizeof(float));
        if (bf) k->A2 = carve(&c, d->G, (int64_t)taps * ((d->Cg + 1) / 2), Kgp, sizeof(uint32_t));
        k->bufs = carve(&c, T, k->per, 1, sizeof(float));
        carve_map(&c, &k->map, s.P);
    } else if (!is_pointwise(d)) {
        k->cols = carve(&c, T, d->rows, (int64_t)d->Ho * d->Wo, sizeof(float));
    }
    return c.used;
}

size_t tg__conv2d_forward_scratch(const tg__conv_dims *d, bool pool, int *threads) {
    fwd_work k;
    *threads = tg__threads_for(d->N, 1);
    return fwd_layout(&k, NULL, d, pool, *threads);
}

static const char *forward_shifted(float *y, const float *x, const float *w, const float *b, const tg__conv_dims *d,
                                   bool relu, const tg__conv_pool *pool, const fwd_work *k, int T) {
    shift_geom s;
    shift_geom_of(d, &s);
    int taps = d->R * d->S, Kgp = round8(d->Kg);
    int64_t HWo = (int64_t)d->Ho * d->Wo, a_size = (int64_t)taps * d->Cg * Kgp, per = k->per;
    float *A = k->A;
    int K2 = (d->Cg + 1) / 2;
    int64_t plane = (int64_t)s.Hp * s.Wp, a2_size = (int64_t)taps * K2 * Kgp;
    bool bf = k->A2 && tg__bf16_active() && d->Cg > 1; /* one channel would pair with a zero: no gain */
    int64_t slack = s.xp_size - (int64_t)d->Cg * plane; /* how far the loads reach past an image's planes */
    tg__shift_out map = fill_map(&k->map, s.P, s.Wp, d->Ho, d->Wo, bf, d, d->pad, d->H);
    for (int g = 0; g < d->G; g++) {
        pack_taps(A + g * a_size, w + (int64_t)g * d->Kg * d->rows, d, false);
        if (bf) pair_taps(k->A2 + g * a2_size, A + g * a_size, Kgp / 8, taps, d->Cg);
    }
    TG_TRACE_CAPTURE();
#pragma omp parallel num_threads(T)
    {
        TG_TRACE_REGION();
        float *xp = k->bufs + (size_t)tg__thread_id() * per, *c = xp + s.xp_size;
        ptrdiff_t *offs = (ptrdiff_t *)(xp + round16(s.xp_size + Kgp * s.P));
        uint32_t *xp2 = (uint32_t *)(xp + per - k->xp2_size);
        float *yi = pool ? k->ys + (size_t)tg__thread_id() * d->K * HWo : NULL; /* with pooling: the image's y */
        /* once: the borders pad_x never writes (the grid c is written whole before it is read),
         * and the bf16 copy's border and slack (pad_pairs writes only the inside) */
        memset(xp, 0, (size_t)s.xp_size * sizeof(float));
        if (bf) memset(xp2, 0, (size_t)k->xp2_size * sizeof *xp2);
#pragma omp for schedule(static)
        for (int i = 0; i < d->N; i++) {
            for (int g = 0; g < d->G; g++) {
                const float *xg = x + ((int64_t)i * d->C + (int64_t)g * d->Cg) * d->H * d->W, *src = xp;
                /* unpadded, x's planes are the padded copy already: bf16 pairs them as they are, and the
                 * float32 product (one group) reads them in place when the images after this one cover its
                 * loads' reach past their end (those values land only in outputs that are dropped) */
                if (d->pad == 0 && (bf || (d->G == 1 && (int64_t)(d->N - 1 - i) * d->C * d->H * d->W >= slack)))
                    src = xg;
                else if (!bf) pad_x(xp, xg, d, &s);
                float *yg = (yi ? yi : y + (int64_t)i * d->K * HWo) + (int64_t)g * d->Kg * HWo;
                tg__shift_out out = shift_out(map, yg, HWo, b ? b + g * d->Kg : NULL, relu, false);
                bool wrote;
                if (bf) {
                    if (src == xg) pair_planes(xp2, src, plane, d->Cg, plane);
                    else pad_pairs(xp2, xg, d, &s);
                    wrote = tg__shifted_gemm_bf16(c, s.P, &out, k->A2 + g * a2_size, xp2, plane, s.off, d->Kg,
                                                  (int)s.P, K2, taps, false, offs);
                } else {
                    wrote = tg__shifted_gemm(c, s.P, &out, A + g * a_size, src, plane, s.off, d->Kg, (int)s.P, d->Cg,
                                             taps, false, offs);
                }
                if (wrote) continue; /* written into y already */
                for (int kk = 0; kk < d->Kg; kk++)
                    tg__copy_rows(yg + kk * HWo, d->Wo, c + kk * s.P, s.Wp, NULL, d->Ho, d->Wo,
                                  relu ? TG_ROWS_BIAS_RELU : TG_ROWS_BIAS, b ? b[g * d->Kg + kk] : 0.0f);
            }
            if (pool) pool_image(pool, yi, i, d);
        }
    }
    return fwd_paths[bf ? PATH_SHIFTED_BF16 : PATH_SHIFTED][tg__isa()];
}

/* one image at a time, each thread with its own transforms' buffer */
static const char *forward_winograd(float *y, const float *x, const float *w, const float *b, const tg__conv_dims *d,
                                    bool relu, const tg__conv_pool *pool, const fwd_work *k, int T) {
    int64_t HWo = (int64_t)d->Ho * d->Wo, image = (int64_t)d->C * d->H * d->W;
    tg__winograd_weights(k->U, w, d, false);
    TG_TRACE_CAPTURE();
#pragma omp parallel num_threads(T)
    {
        TG_TRACE_REGION();
        float *buf = k->bufs + (size_t)tg__thread_id() * k->per;
        float *yi = pool ? k->ys + (size_t)tg__thread_id() * d->K * HWo : NULL; /* with pooling: the image's y */
        int nb = pool ? 1 : tg__winograd_batch(d); /* images a call */
#pragma omp for schedule(static)
        for (int u = 0; u < (d->N + nb - 1) / nb; u++) {
            int i = u * nb, n = d->N - i < nb ? d->N - i : nb;
            int ahead = pool ? 0 : d->N - i - n < nb ? d->N - i - n : nb; /* the next call's images */
            tg__winograd_images(yi ? yi : y + i * d->K * HWo, d->K * HWo, x + i * image, image, n, ahead,
                                (ptrdiff_t)d->H * d->W, d->W, k->U, b, relu, false, d, buf);
            if (pool) pool_image(pool, yi, i, d);
        }
    }
    return "winograd avx512";
}

#if defined(__x86_64__)
static const char *forward_one(float *y, const float *x, const float *w, const float *b, const tg__conv_dims *d,
                               bool relu, const tg__conv_pool *pool, const fwd_work *k, int T) {
    int64_t HWo = (int64_t)d->Ho * d->Wo;
    TG_TRACE_CAPTURE();
#pragma omp parallel num_threads(T)
    {
        TG_TRACE_REGION();
        float *xp = k->bufs + (size_t)tg__thread_id() * k->per;
        float *yi = pool ? k->ys + (size_t)tg__thread_id() * d->K * HWo : NULL; /* with pooling: the image's y */
        memset(xp, 0, (size_t)k->per * sizeof *xp); /* once: the border one_pad never writes */
#pragma omp for schedule(static)
        for (int i = 0; i < d->N; i++) {
            one_pad(xp, x + (int64_t)i * d->H * d->W, d);
            one_forward_avx512(yi ? yi : y + (int64_t)i * d->K * HWo, xp, w, b, d, relu);
            if (pool) pool_image(pool, yi, i, d);
        }
    }
    return "one-channel avx512";
}
#endif

const char *tg__conv2d_forward(float *y, const float *x, const float *w, const float *b, const tg__conv_dims *d,
                               bool relu, const tg__conv_pool *pool, void *scratch, int T) {
    fwd_work k;
    fwd_layout(&k, scratch, d, pool != NULL, T);
    if (k.U) return forward_winograd(y, x, w, b, d, relu, pool, &k, T);
#if defined(__x86_64__)
    if (one_channel(d)) return forward_one(y, x, w, b, d, relu, pool, &k, T);
#endif
    if (is_shifted(d)) return forward_shifted(y, x, w, b, d, relu, pool, &k, T);
    const char *path = fwd_paths[k.cols ? PATH_IM2COL : PATH_GEMM][tg__isa()];
    int HWo = d->Ho * d->Wo;
    TG_TRACE_CAPTURE();
#pragma omp parallel for num_threads(T) schedule(static)
    for (int i = 0; i < d->N; i++) {
        TG_TRACE_ITER(i);
        float *col = k.cols ? k.cols + (size_t)tg__thread_id() * d->rows * HWo : NULL;
        float *yi = pool ? k.ys + (size_t)tg__thread_id() * d->K * HWo : y + (int64_t)i * d->K * HWo;
        for (int g = 0; g < d->G; g++) {
            const float *xg = x + ((int64_t)i * d->C + (int64_t)g * d->Cg) * d->H * d->W;
            float *yg = yi + (int64_t)g * d->Kg * HWo;
            const float *src = xg;
            if (col) {
                tg__im2col(col, xg, d);
                src = col;
            }
            tg__sgemm(yg, HWo, w + (int64_t)g * d->Kg * d->rows, (int)d->rows, src, HWo, d->Kg, HWo, (int)d->rows,
                      false, false, 1.0f, 0.0f);
            if (b)
                for (int kk = 0; kk < d->Kg; kk++)
                    for (int p = 0; p < HWo; p++) yg[(int64_t)kk * HWo + p] += b[g * d->Kg + kk];
            if (relu)
                for (int64_t p = 0; p < (int64_t)d->Kg * HWo; p++) yg[p] = yg[p] <= 0.0f ? 0.0f : yg[p];
        }
        if (pool) pool_image(pool, yi, i, d);
    }
    return path;
}

// ----------------------------------------------------------------------------
// conv2d backward

typedef struct {
    float *dws;            /* the weight gradient of each chunk of images */
    float *dbs;            /* shifted: the bias gradient of each chunk */
    float *A;              /* shifted, for dx: the flipped packed weights of every group */
    uint32_t *A2;          /* shifted, for dx on CPUs with bf16 products: the same as pairs */
    float *bufs;           /* shifted: per thread, `per` floats (the bf16 copies last) */
    int64_t per, dq2_size, wp_size, wgw_size, wg_size;
    int64_t dq_each, grid; /* shifted, per thread: floats of each image's padded dy (0 when Winograd's
                            * kernels read dy in place) and of the dx grid (0 with Winograd's dx) */
    bool dy_in_place;      /* Winograd's kernels do all the work and dy needs no ReLU mask, unpooling
                            * or bias sum: they read dy where it is, no padded copy */
    float *U;              /* winograd dx: the flipped weights, transformed (the per-thread buffers last) */
    out_map map;           /* shifted: of the dx grid */
    float *dym;            /* im2col with a ReLU: dy masked by it (with pooling: unpooled) */
    float *cols;           /* im2col: per thread, rows * Ho*Wo floats */
    float *dbi;            /* im2col with a split: each image's bias gradient, for the global batch */
} bwd_work;

static size_t bwd_layout(bwd_work *k, void *scratch, const tg__conv_dims *d, bool dx, bool dw, bool db, bool relu,
                         bool pool, int T) {
    carver c = {scratch, 0};
    int chunks = chunks_of(d);
    memset(k, 0, sizeof *k);
    if (dw) k->dws = carve(&c, chunks, d->K, d->rows, sizeof(float));
    if (is_shifted(d)) {
        shift_geom s;
        shift_geom_of(d, &s);
        int taps = d->R * d->S, Cgp = round8(d->Cg), most = chunk_most(d);
        bool wgw = dw && tg__winograd_wgrad_fits(d) && !tg__bf16_active(); /* Winograd's weight gradient */
        int64_t xsz = wgw ? (d->Cg + 15) / 16 * wgw_block(d, NULL) : blocked_pays(d->Cg) ? s.xb_size : s.xp_size;
        /* per thread: padded x and dy for each image of a chunk, the dx grid, then the offsets, 2 floats each */
        bool bf = dx && tg__bf16_supported();
        /* then one image's padded dy as pairs of channels (bf16 dx), and each image's padded x and dy
         * as pairs of pixels (bf16 dw) */
        k->dq2_size = bf ? s.dq_size : 0;
        k->wp_size = bf16_wgt(d) && dw && !wgw && tg__bf16_supported() ? most * (xsz + s.dq_size) : 0;
        tg__conv_dims t = dx_conv(d);
        bool wg = dx && use_winograd(&t);
        /* then Winograd's buffers, the weight gradient's and dx's, each with WG_APART after it */
        k->wgw_size = wgw ? round16((int64_t)tg__winograd_wgrad_floats(d)) + WG_APART : 0;
        k->wg_size = wg ? round16((int64_t)tg__winograd_floats(&t)) + WG_APART : 0;
        k->dy_in_place = !pool && !relu && !db && (!dw || wgw) && (!dx || wg);
        k->dq_each = k->dy_in_place ? 0 : s.dq_size, k->grid = wg ? 0 : Cgp * s.P2;
        k->per = round16(most * (xsz + k->dq_each) + k->grid) + 2 * round16(taps * d->Kg) + k->dq2_size + k->wp_size +
                 k->wgw_size + k->wg_size;
        if (db) k->dbs = carve(&c, chunks, d->K, 1, sizeof(float));
        if (wg) k->U = carve(&c, (int64_t)tg__winograd_weights_floats(&t) + WG_APART, 1, 1, sizeof(float));
        else if (dx) k->A = carve(&c, d->G, (int64_t)taps * d->Kg, Cgp, sizeof(float));
        if (bf) k->A2 = carve(&c, d->G, (int64_t)taps * ((d->Kg + 1) / 2), Cgp, sizeof(uint32_t));
        k->bufs = carve(&c, T, k->per, 1, sizeof(float));
        carve_map(&c, &k->map, s.P2);
    } else {
        if (relu || pool) k->dym = carve(&c, d->N, d->K, (int64_t)d->Ho * d->Wo, sizeof(float));
        k->cols = carve(&c, T, d->rows, (int64_t)d->Ho * d->Wo, sizeof(float));
        if (db && d->split) k->dbi = carve(&c, d->split->global, d->K, 1, sizeof(float));
    }
    return c.used;
}

size_t tg__conv2d_backward_scratch(const tg__conv_dims *d, bool dx, bool dw, bool db, bool relu, bool pool,
                                   int *threads) {
    bwd_work k;
    *threads = tg__threads_for(chunks_of(d), 1);
    return bwd_layout(&k, NULL, d, dx, dw, db, relu, pool, *threads);
}

/* dW_g = the chunk's dy_g (on the forward grid) times x shifted by each tap, all
 * of the chunk's images in one product; dx_g += the flipped kernel run over
 * the same dy copy (stored, if dx_set) */
static const char *backward_shifted(float *dx, float *dws, float *dbs, const float *dy, const float *ymask,
                                    const tg__conv_pool *pool, const float *x, const float *w,
                                    const tg__conv_dims *d, bool dx_set, const bwd_work *k, int T) {
    shift_geom s;
    shift_geom_of(d, &s);
    int chunks = chunks_of(d), taps = d->R * d->S, Cgp = round8(d->Cg), most = chunk_most(d);
    int lo = chunk_lo(d), hi = chunk_hi(d);
    int64_t HWo = (int64_t)d->Ho * d->Wo, a_size = (int64_t)taps * d->Kg * Cgp, wsize = (int64_t)d->K * d->rows;
    bool wgw = k->wgw_size != 0, blocked = blocked_pays(d->Cg) || wgw;
    int wx = s.Wp; /* the blocked x's row width */
    int64_t ldx = wgw ? wgw_block(d, &wx) : (int64_t)s.Hp * s.Wp * 16, per = k->per;
    int64_t xsz = wgw ? (d->Cg + 15) / 16 * ldx : blocked ? s.xb_size : s.xp_size;
    float *A = k->A;
    int K2 = (d->Kg + 1) / 2;
    int64_t a2_size = (int64_t)taps * K2 * Cgp;
    bool bf = k->A2 && tg__bf16_active() && d->Kg > 1, bfw = k->wp_size && tg__bf16_active();
    tg__conv_dims t = dx_conv(d);
    if (k->U) tg__winograd_weights(k->U, w, &t, true);
    bool dy_in_place = k->dy_in_place;
    /* the shifted dx kernel's output map (Winograd's dx has none) */
    tg__shift_out map = {0};
    if (!k->U) map = fill_map(&k->map, s.P2, s.Wp, d->H, d->W, bf, d, s.PR - d->pad, d->Ho);
    for (int g = 0; A && g < d->G; g++) {
        pack_taps(A + g * a_size, w + (int64_t)g * d->Kg * d->rows, d, true);
        if (bf) pair_taps(k->A2 + g * a2_size, A + g * a_size, Cgp / 8, taps, d->Kg);
    }
    TG_TRACE_CAPTURE();
#pragma omp parallel num_threads(T)
    {
        TG_TRACE_REGION();
        float *xps = k->bufs + (size_t)tg__thread_id() * per, *dqs = xps + most * xsz;
        float *cx = dqs + most * k->dq_each;
        ptrdiff_t *offs = (ptrdiff_t *)(xps + round16(most * (xsz + k->dq_each) + k->grid));
        float *wg = xps + per - k->wg_size, *wgwb = wg - k->wgw_size;
        uint32_t *dq2 = (uint32_t *)(wgwb - k->wp_size - k->dq2_size);
        uint32_t *xw = (uint32_t *)(wgwb - k->wp_size), *dqw = xw + most * xsz;
        /* once: the borders pad_x (or tg__pad_blocked) and pad_dy never write (the dx grid cx is
         * written whole before it is read), and the bf16 copy's front and slack */
        memset(xps, 0, (size_t)most * (xsz + k->dq_each) * sizeof(float));
        if (bf) memset(dq2, 0, (size_t)k->dq2_size * sizeof *dq2);
#pragma omp for schedule(static)
        for (int c = lo; c < hi; c++) {
            float *dw = dws ? dws + (size_t)c * wsize : NULL;
            int i0 = chunk_start(d, chunks, c), i1 = chunk_start(d, chunks, c + 1);
            for (int g = 0; g < d->G; g++) {
                for (int i = i0; i < i1; i++) {
                    int64_t o = ((int64_t)i * d->K + (int64_t)g * d->Kg) * HWo;
                    float *dq = dqs + (i - i0) * s.dq_size;
                    if (pool)
                        unpool_dy(dq + s.front + (int64_t)s.PR * s.Wp, s.Lq, s.Wp, pool, (int64_t)i * d->K + g * d->Kg,
                                  d->Kg, d);
                    else if (!dy_in_place) pad_dy(dq, dy + o, ymask ? ymask + o : NULL, d, &s);
                    for (int kk = 0; dbs && kk < d->Kg; kk++) /* this chunk's bias gradient, from the padded copy */
                        dbs[(size_t)c * d->K + g * d->Kg + kk] +=
                            lane_sum(dq + s.front + kk * s.Lq + (int64_t)s.PR * s.Wp, (int64_t)d->Ho * s.Wp);
                    const float *xi = x + ((int64_t)i * d->C + (int64_t)g * d->Cg) * d->H * d->W;
                    if (dw && blocked) tg__pad_blocked(xps + (i - i0) * xsz, ldx, xi, d->Cg, d->H, d->W, wx, d->pad);
                    else if (dw) pad_x(xps + (i - i0) * xsz, xi, d, &s);
                }
                /* dy on the forward grid starts PR rows into each padded plane */
                const float *dq0 = dqs + s.front + (int64_t)s.PR * s.Wp;
                /* what Winograd's kernels read: dy itself, or the padded copy's inside (the chunk's
                 * first image, its images, planes and rows apart) */
                const float *wq = dy_in_place ? dy + (int64_t)i0 * d->K * HWo : dq0;
                ptrdiff_t wq_img = dy_in_place ? d->K * HWo : s.dq_size, wq_plane = dy_in_place ? HWo : s.Lq,
                          wq_row = dy_in_place ? d->Wo : s.Wp;
                if (dw && wgw)
                    tg__winograd_wgrad(dw, wq, wq_plane, wq_row, wq_img, xps, ldx, xsz, i1 - i0, d, wgwb);
                else if (bfw) { /* pairs of pixels; every copy is written whole */
                    for (int j = 0; j < i1 - i0; j++) {
                        tg__bf16_pixel_pairs(xw + j * xsz, xps + j * xsz, xsz, 16);
                        tg__bf16_pixel_pairs(dqw + j * s.dq_size, dqs + j * s.dq_size, s.dq_size, 1);
                    }
                    tg__shifted_wgt_blocked_bf16(dw + (int64_t)g * d->Kg * d->rows, dqw + (dq0 - dqs), s.Lq, s.dq_size,
                                                 xw, ldx, xsz, s.off, d->Kg, d->Ho, d->Wo, s.Wp, d->Cg, taps, i1 - i0,
                                                 false);
                } else if (dw && blocked)
                    tg__shifted_wgt_blocked(dw + (int64_t)g * d->Kg * d->rows, dq0, s.Lq, s.dq_size, xps, ldx, xsz,
                                            s.off, d->Kg, d->Ho, d->Wo, s.Wp, d->Cg, taps, i1 - i0, false);
                else if (dw)
                    tg__shifted_gemm_nt(dw + (int64_t)g * d->Kg * d->rows, dq0, s.Lq, s.dq_size, xps,
                                        (ptrdiff_t)s.Hp * s.Wp, xsz, s.off, d->Kg, (int)s.P, d->Cg, taps, i1 - i0,
                                        false);
                for (int i = i0, nb = tg__winograd_batch(&t); dx && k->U && i < i1; i += nb) {
                    /* the images after these: dy itself runs on into the next chunk, a padded copy does not */
                    int n = i1 - i < nb ? i1 - i : nb, end = dy_in_place ? d->N : i1;
                    int ahead = end - i - n < nb ? end - i - n : nb;
                    tg__winograd_images(dx + (int64_t)i * d->C * d->H * d->W, (ptrdiff_t)d->C * d->H * d->W,
                                        wq + (i - i0) * wq_img, wq_img, n, ahead, wq_plane, wq_row, k->U, NULL, false,
                                        !dx_set, &t, wg);
                }
                for (int i = i0; dx && !k->U && i < i1; i++) {
                    float *dxi = dx + ((int64_t)i * d->C + (int64_t)g * d->Cg) * d->H * d->W;
                    tg__shift_out out = shift_out(map, dxi, (ptrdiff_t)d->H * d->W, NULL, false, !dx_set);
                    const float *dq = dqs + (i - i0) * s.dq_size + s.front;
                    bool wrote;
                    if (bf) {
                        pair_planes(dq2 + s.front, dq, s.Lq, d->Kg, s.Lq);
                        wrote = tg__shifted_gemm_bf16(cx, s.P2, &out, k->A2 + g * a2_size, dq2 + s.front, s.Lq,
                                                      s.off2, d->Cg, (int)s.P2, K2, taps, false, offs);
                    } else {
                        wrote = tg__shifted_gemm(cx, s.P2, &out, A + g * a_size, dq, s.Lq, s.off2, d->Cg, (int)s.P2,
                                                 d->Kg, taps, false, offs);
                    }
                    if (wrote) continue; /* stored or added into dx already */
                    for (int ch = 0; ch < d->Cg; ch++)
                        tg__copy_rows(dxi + (int64_t)ch * d->H * d->W, d->W, cx + ch * s.P2, s.Wp, NULL, d->H, d->W,
                                      dx_set ? TG_ROWS_COPY : TG_ROWS_ADD, 0.0f);
                }
            }
        }
    }
    int dxp = !dx ? 0 : k->U ? 3 : bf ? 2 : 1, dwp = !dws ? 0 : wgw ? 4 : bfw ? 3 : blocked ? 2 : 1;
    return bwd_shifted_paths[tg__isa()][dxp][dwp];
}

/* dW_g += dY_g col^T, dcol = W_g^T dY_g then dx += col2im(dcol); weight gradients per chunk into dws */
static void backward_im2col(float *dx, float *dws, const float *dy, const float *x, const float *w,
                            const tg__conv_dims *d, const bwd_work *k, int T) {
    int HWo = d->Ho * d->Wo, chunks = chunks_of(d);
    int64_t wsize = (int64_t)d->K * d->rows;
    bool pw = is_pointwise(d);
    TG_TRACE_CAPTURE();
#pragma omp parallel for num_threads(T) schedule(static)
    for (int c = chunk_lo(d); c < chunk_hi(d); c++) {
        TG_TRACE_ITER(c);
        float *col = k->cols + (size_t)tg__thread_id() * d->rows * HWo;
        float *dw = dws ? dws + (size_t)c * wsize : NULL;
        for (int i = chunk_start(d, chunks, c); i < chunk_start(d, chunks, c + 1); i++)
            for (int g = 0; g < d->G; g++) {
                int64_t xoff = ((int64_t)i * d->C + (int64_t)g * d->Cg) * d->H * d->W;
                const float *dyg = dy + ((int64_t)i * d->K + (int64_t)g * d->Kg) * HWo;
                const float *wg = w + (int64_t)g * d->Kg * d->rows;
                if (dw) {
                    const float *src = x + xoff;
                    if (!pw) {
                        tg__im2col(col, src, d);
                        src = col;
                    }
                    bool first = i == chunk_start(d, chunks, c);
                    tg__sgemm(dw + (int64_t)g * d->Kg * d->rows, (int)d->rows, dyg, HWo, src, HWo, d->Kg,
                              (int)d->rows, HWo, false, true, 1.0f, first ? 0.0f : 1.0f);
                }
                if (dx) {
                    if (pw) {
                        tg__sgemm(dx + xoff, HWo, wg, (int)d->rows, dyg, HWo, (int)d->rows, HWo, d->Kg, true, false,
                                  1.0f, 1.0f);
                    } else {
                        tg__sgemm(col, HWo, wg, (int)d->rows, dyg, HWo, (int)d->rows, HWo, d->Kg, true, false, 1.0f,
                                  0.0f);
                        tg__col2im(dx + xoff, col, d);
                    }
                }
            }
    }
}

const char *tg__conv2d_backward(float *dx, float *dw, float *db, const float *dy, const float *y,
                                const tg__conv_pool *pool, const float *x, const float *w, const tg__conv_dims *d,
                                bool dx_set, void *scratch, int T) {
    const char *path;
    bwd_work k;
    bwd_layout(&k, scratch, d, dx != NULL, dw != NULL, db != NULL, y != NULL, pool != NULL, T);
    int chunks = chunks_of(d);
    int64_t HWo = (int64_t)d->Ho * d->Wo, wsize = (int64_t)d->K * d->rows;
    if (k.dbs) memset(k.dbs, 0, (size_t)chunks * d->K * sizeof(float));
    if (is_shifted(d)) {
        path = backward_shifted(dx, k.dws, k.dbs, dy, y, pool, x, w, d, dx_set, &k, T);
    } else {
        path = bwd_paths[is_pointwise(d) ? 0 : 1][tg__isa()];
        if (pool) { /* the im2col path reads dy where it is: unpool it first */
            unpool_dy(k.dym, HWo, d->Wo, pool, 0, (int64_t)d->N * d->K, d);
            dy = k.dym;
        } else if (y) { /* ... or mask a copy */
            for (int64_t i = 0; i < (int64_t)d->N * d->K * HWo; i++) k.dym[i] = y[i] <= 0.0f ? 0.0f : dy[i];
            dy = k.dym;
        }
        if (dx && dx_set) /* col2im adds */
            memset(dx, 0, (size_t)d->N * d->C * d->H * d->W * sizeof(float));
        backward_im2col(dx, k.dws, dy, x, w, d, &k, T);
    }
    if (d->split) { /* the other processes' chunks */
        if (k.dws) tg__split_gather(d->split, k.dws, (size_t)wsize * sizeof(float), true);
        if (k.dbs) tg__split_gather(d->split, k.dbs, (size_t)d->K * sizeof(float), true);
    }
    if (dw) { /* over the chunks in order, for each element (a short loop: no worker spans of its own) */
        int T2 = tg__threads_for(wsize * chunks, 4096);
#pragma omp parallel num_threads(T2)
        { /* each thread a run of the elements, chunk after chunk across it (the loop vectorises) */
            int64_t j0 = wsize * tg__thread_id() / T2, j1 = wsize * (tg__thread_id() + 1) / T2;
            for (int c = 0; c < chunks; c++)
                for (int64_t j = j0; j < j1; j++) dw[j] += k.dws[(size_t)c * wsize + j];
        }
    }
    for (int c = 0; k.dbs && c < chunks; c++) /* per chunk, then over the chunks in order */
        for (int kk = 0; kk < d->K; kk++) db[kk] += k.dbs[(size_t)c * d->K + kk];
    if (db && k.dbi) { /* split: each image's sum, gathered, then over the global batch's images in order */
        const tg__split *sp = d->split;
        for (int i = 0; i < d->N; i++)
            for (int kk = 0; kk < d->K; kk++)
                k.dbi[(int64_t)(sp->first + i) * d->K + kk] = lane_sum(dy + ((int64_t)i * d->K + kk) * HWo, HWo);
        tg__split_gather(d->split, k.dbi, (size_t)d->K * sizeof(float), false);
        for (int i = 0; i < sp->global; i++)
            for (int kk = 0; kk < d->K; kk++) db[kk] += k.dbi[(int64_t)i * d->K + kk];
    } else if (db && !k.dbs) {
        TG_TRACE_CAPTURE();
#pragma omp parallel for num_threads(tg__threads_for(d->K, 4)) schedule(static)
        for (int kk = 0; kk < d->K; kk++) {
            TG_TRACE_ITER(kk);
            for (int i = 0; i < d->N; i++) db[kk] += lane_sum(dy + ((int64_t)i * d->K + kk) * HWo, HWo);
        }
    }
    return path;
}

// ----------------------------------------------------------------------------
// conv_transpose2d: the conv2d d maps its output back onto x, so its forward is
// that conv's input gradient and its weight gradient reads im2col of dy

size_t tg__conv_transpose2d_forward_scratch(const tg__conv_dims *d, int *threads) {
    carver c = {NULL, 0};
    *threads = tg__threads_for(d->N, 1);
    carve(&c, *threads, d->rows, (int64_t)d->Ho * d->Wo, sizeof(float));
    return c.used;
}

// y_g = col2im(W_g^T x_g) + b
const char *tg__conv_transpose2d_forward(float *y, const float *x, const float *w, const float *b,
                                         const tg__conv_dims *d, void *scratch, int T) {
    int HWx = d->Ho * d->Wo;
    int64_t HWy = (int64_t)d->H * d->W;
    float *cols = scratch;
    TG_TRACE_CAPTURE();
#pragma omp parallel for num_threads(T) schedule(static)
    for (int i = 0; i < d->N; i++) {
        TG_TRACE_ITER(i);
        float *col = cols + (size_t)tg__thread_id() * d->rows * HWx;
        float *yi = y + (int64_t)i * d->C * HWy;
        for (int64_t c = 0; c < d->C; c++)
            for (int64_t p = 0; p < HWy; p++) yi[c * HWy + p] = b ? b[c] : 0.0f;
        for (int g = 0; g < d->G; g++) {
            const float *xg = x + ((int64_t)i * d->K + (int64_t)g * d->Kg) * HWx;
            tg__sgemm(col, HWx, w + (int64_t)g * d->Kg * d->rows, (int)d->rows, xg, HWx, (int)d->rows, HWx, d->Kg,
                      true, false, 1.0f, 0.0f);
            tg__col2im(yi + (int64_t)g * d->Cg * HWy, col, d);
        }
    }
    return convt_paths[0][tg__isa()];
}

size_t tg__conv_transpose2d_backward_scratch(const tg__conv_dims *d, bool dw, int *threads) {
    carver c = {NULL, 0};
    *threads = tg__threads_for(chunks_of(d), 1);
    carve(&c, *threads, d->rows, (int64_t)d->Ho * d->Wo, sizeof(float));
    if (dw) carve(&c, chunks_of(d), d->K, d->rows, sizeof(float));
    return c.used;
}

// dx_g += W_g im2col(dy_g), dW_g += x_g im2col(dy_g)^T, db += sum of dy over N, H', W'
const char *tg__conv_transpose2d_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                                          const float *w, const tg__conv_dims *d, void *scratch, int T) {
    carver sc = {scratch, 0};
    int HWx = d->Ho * d->Wo, chunks = chunks_of(d);
    int64_t HWy = (int64_t)d->H * d->W, wsize = (int64_t)d->K * d->rows;
    float *cols = carve(&sc, T, d->rows, HWx, sizeof(float));
    float *dws = dw ? carve(&sc, chunks, d->K, d->rows, sizeof(float)) : NULL;
    TG_TRACE_CAPTURE();
#pragma omp parallel for num_threads(T) schedule(static)
    for (int c = 0; c < chunks; c++) {
        TG_TRACE_ITER(c);
        float *col = cols + (size_t)tg__thread_id() * d->rows * HWx;
        float *dwc = dws ? dws + (size_t)c * wsize : NULL;
        int i0 = (int)((int64_t)d->N * c / chunks);
        for (int i = i0; i < (int)((int64_t)d->N * (c + 1) / chunks); i++)
            for (int g = 0; g < d->G; g++) {
                tg__im2col(col, dy + (int64_t)i * d->C * HWy + (int64_t)g * d->Cg * HWy, d);
                int64_t xoff = ((int64_t)i * d->K + (int64_t)g * d->Kg) * HWx;
                const float *wg = w + (int64_t)g * d->Kg * d->rows;
                if (dx)
                    tg__sgemm(dx + xoff, HWx, wg, (int)d->rows, col, HWx, d->Kg, HWx, (int)d->rows, false, false, 1.0f,
                              1.0f);
                if (dwc)
                    tg__sgemm(dwc + (int64_t)g * d->Kg * d->rows, (int)d->rows, x + xoff, HWx, col, HWx, d->Kg,
                              (int)d->rows, HWx, false, true, 1.0f, i == i0 ? 0.0f : 1.0f);
            }
    }
    for (int c = 0; dws && c < chunks; c++)
        for (int64_t j = 0; j < wsize; j++) dw[j] += dws[(size_t)c * wsize + j];
    if (db)
        for (int i = 0; i < d->N; i++)
            for (int c = 0; c < d->C; c++) {
                float s = 0;
                for (int64_t p = 0; p < HWy; p++) s += dy[((int64_t)i * d->C + c) * HWy + p];
                db[c] += s;
            }
    return convt_paths[1][tg__isa()];
}
