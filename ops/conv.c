/* conv.c: 2-D convolution (stride, padding, dilation, groups) by im2col + GEMM.
 * For each image and group: Y_g (K/groups, H'W') = W_g (K/groups, C/groups*R*S) col (C/groups*R*S, H'W'). */
#include "internal.h"
#include "ops.h"
#include <limits.h>
#include <string.h>

typedef struct {
    int stride, pad, dilation, groups;
} conv_attr;

typedef struct { /* the sizes every kernel needs, derived from the node */
    int N, C, H, W, K, R, S, Ho, Wo, G, Cg, Kg;
    int stride, pad, dil;
    int64_t rows; /* Cg * R * S */
} conv_dims;

static conv_dims dims_of(const tg_node *n) {
    const conv_attr *a = n->attr;
    const tg_tensor *x = n->in[0], *w = n->in[1];
    conv_dims d = {x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[0], w->shape[2], w->shape[3],
                   n->out ? n->out->shape[2] : 0, n->out ? n->out->shape[3] : 0, a->groups, x->shape[1] / a->groups,
                   w->shape[0] / a->groups, a->stride, a->pad, a->dilation, 0};
    d.rows = (int64_t)d.Cg * d.R * d.S;
    return d;
}

static int conv_shape(tg_node *n, int *ndim, int *shape) {
    const conv_attr *a = n->attr;
    const tg_tensor *x = n->in[0], *w = n->in[1], *b = n->n_in > 2 ? n->in[2] : NULL;
    char sx[64], sw[64], sb[64];
    tg_shape_str(x, sx, sizeof sx);
    tg_shape_str(w, sw, sizeof sw);
    if (x->ndim != 4 || w->ndim != 4)
        return tg_fail(TG_ERR_SHAPE, "%s: input and weight must have 4 dimensions (x %s, w %s)", n->op->name, sx, sw);
    if (a->stride < 1 || a->pad < 0 || a->dilation < 1 || a->groups < 1 || a->stride > TG_MAX_WINDOW ||
        a->pad > TG_MAX_WINDOW || a->dilation > TG_MAX_WINDOW)
        return tg_fail(TG_ERR_ARG, "%s: stride %d, pad %d, dilation %d, groups %d: need stride >= 1, pad >= 0, "
                                   "dilation >= 1, groups >= 1 (and each at most %d)", n->op->name, a->stride, a->pad,
                       a->dilation,
                       a->groups, TG_MAX_WINDOW);
    if (x->shape[1] % a->groups || w->shape[0] % a->groups)
        return tg_fail(TG_ERR_ARG, "%s: groups %d must divide the %d input and %d output channels (x %s, w %s)",
                       n->op->name, a->groups, x->shape[1], w->shape[0], sx, sw);
    if ((int64_t)w->shape[1] * a->groups != x->shape[1])
        return tg_fail(TG_ERR_SHAPE, "%s: input has %d channels but weight expects %lld (x %s, w %s)", n->op->name,
                       x->shape[1], (long long)w->shape[1] * a->groups, sx, sw);
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
        return tg_fail(TG_ERR_SHAPE, "%s: bias has shape %s but weight has %d output channels (w %s)",
                       n->op->name, tg_shape_str(b, sb, sizeof sb), w->shape[0], sw);
    /* in 64 bits: the padded input, the kernel's span (dilation * (R - 1) + 1), then (in - span) / stride + 1 */
    int64_t Hp = x->shape[2] + 2 * (int64_t)a->pad, Wp = x->shape[3] + 2 * (int64_t)a->pad;
    int64_t spanh = (int64_t)a->dilation * (w->shape[2] - 1) + 1, spanw = (int64_t)a->dilation * (w->shape[3] - 1) + 1;
    if (Hp < spanh || Wp < spanw)
        return tg_fail(TG_ERR_SHAPE, "%s: kernel %dx%d (dilation %d) is larger than the padded input %lldx%lld "
                                     "(x %s, w %s, pad %d)", n->op->name, w->shape[2], w->shape[3], a->dilation,
                       (long long)Hp, (long long)Wp, sx, sw, a->pad);
    /* the kernels index the padded input with int (and the output is never larger) */
    if (Hp > INT_MAX || Wp > INT_MAX)
        return tg_fail(TG_ERR_SHAPE, "%s: the padded input %lldx%lld is larger than %d a side (x %s, pad %d)",
                       n->op->name, (long long)Hp, (long long)Wp, INT_MAX, sx, a->pad);
    *ndim = 4;
    shape[0] = x->shape[0];
    shape[1] = w->shape[0];
    shape[2] = (int)((Hp - spanh) / a->stride + 1);
    shape[3] = (int)((Wp - spanw) / a->stride + 1);
    return 0;
}

/* Bytes of a * b * c floats, or SIZE_MAX (which no allocation satisfies) if that does not fit */
static size_t floats_bytes(int64_t a, int64_t b, int64_t c) {
    int64_t n;
    if (__builtin_mul_overflow(a, b, &n) || __builtin_mul_overflow(n, c, &n) || (uint64_t)n > SIZE_MAX / sizeof(float))
        return SIZE_MAX;
    return (size_t)n * sizeof(float);
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

static void im2col(float *col, const float *x, const conv_dims *d) {
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

// dx[c, ih, iw] += dcol[(c,r,s), (oh,ow)] for every position the window touched
static void col2im(float *dx, const float *col, const conv_dims *d) {
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

/* A 1x1 convolution with stride 1 and no padding needs no im2col: col is x itself. */
static bool is_pointwise(const conv_dims *d) { return d->R == 1 && d->S == 1 && d->stride == 1 && d->pad == 0; }

// ----------------------------------------------------------------------------
// stride 1: no im2col. Each plane is copied once into a zero border, row after
// row, Wp = W + 2*pad floats a row, and tap (r, s) becomes a constant shift of
// that copy (engine/shifted.c). Outputs are computed on the padded grid; the
// columns past Wo are dropped.
//
// Backward keeps dy on the same grid: rows Wp wide whose last PS = (S-1)*dil
// columns are zeros, with PR = (R-1)*dil zero rows above and below. That one
// copy is the left operand of the weight gradient, and, read through the
// flipped kernel, the right operand of dx: a dy column left of 0 wraps into the
// previous row's zero tail.

#define SHIFT_MAX_TAPS 49 /* kernels up to 7x7 */
#define SHIFT_MAX_SIZE (1 << 26) /* channels and padded plane sizes below this keep the kernels' int grids small */
static bool is_shifted(const conv_dims *d) {
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

static void shift_geom_of(const conv_dims *d, shift_geom *s) {
    s->PR = (d->R - 1) * d->dil, s->PS = (d->S - 1) * d->dil;
    s->Hp = d->H + 2 * d->pad, s->Wp = d->W + 2 * d->pad;
    s->P = round16((int64_t)d->Ho * s->Wp);
    s->xp_size = round16((int64_t)d->Cg * s->Hp * s->Wp + s->PS + 16); /* multiples of 16 keep buffers 64-byte aligned */
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

/* The short rows of padding and unpadding, copied inline (a libc call per row
 * costs more): for r < rows, j < w, with d = dst[r*sd + j] and v = src[r*ss + j]:
 *   ROWS_COPY d = v;  ROWS_ADD d += v;  ROWS_BIAS d = v + bias;  ROWS_BIAS_RELU d = relu(v + bias);
 *   ROWS_MASK d = keep[r*ss + j] <= 0 ? 0 : v (the gradient through a ReLU with output keep)
 * relu(u) is u <= 0 ? +0 : u, as PyTorch's: a NaN stays NaN, and passes dy */
enum { ROWS_COPY, ROWS_ADD, ROWS_BIAS, ROWS_BIAS_RELU, ROWS_MASK };
TG_CLONES static void copy_rows(float *dst, ptrdiff_t sd, const float *src, ptrdiff_t ss, int64_t rows, int w,
                                int mode, float bias, const float *keep) {
    for (int64_t r = 0; r < rows; r++, dst += sd, src += ss, keep = keep ? keep + ss : NULL) {
        switch (mode) {
        case ROWS_COPY:
            for (int j = 0; j < w; j++) dst[j] = src[j];
            break;
        case ROWS_ADD:
            for (int j = 0; j < w; j++) dst[j] += src[j];
            break;
        case ROWS_BIAS:
            for (int j = 0; j < w; j++) dst[j] = src[j] + bias;
            break;
        case ROWS_BIAS_RELU:
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

/* x's planes into a buffer whose border and slack are already zero (the
 * buffers are zeroed once per op; the copies only ever write the inside) */
static void pad_x(float *xp, const float *x, const conv_dims *d, const shift_geom *s) {
    for (int c = 0; c < d->Cg; c++)
        copy_rows(xp + ((int64_t)c * s->Hp + d->pad) * s->Wp + d->pad, s->Wp, x + (int64_t)c * d->H * d->W, d->W,
                  d->H, d->W, ROWS_COPY, 0.0f, NULL);
}

/* dy's planes on the grid described above, into a buffer zeroed once as for
 * pad_x; with y (conv2d_relu's output), dy where not y <= 0 */
static void pad_dy(float *dq, const float *dy, const float *y, const conv_dims *d, const shift_geom *s) {
    for (int k = 0; k < d->Kg; k++) {
        int64_t o = (int64_t)k * d->Ho * d->Wo;
        copy_rows(dq + s->front + k * s->Lq + (int64_t)s->PR * s->Wp, s->Wp, dy + o, d->Wo, d->Ho, d->Wo,
                  y ? ROWS_MASK : ROWS_COPY, 0.0f, y ? y + o : NULL);
    }
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

/* The weights of group g by tap, in blocks of 8 output rows (tg__shifted_gemm's
 * layout): fwd A[((k/8)*T*Cg + t*Cg + c)*8 + k%8] = w[k][c][t], for dx
 * A[((c/8)*T*Kg + t*Kg + k)*8 + c%8] = w[k][c][T-1-t] (the flipped kernel); padding rows zero. */
static void pack_taps(float *A, const float *w, const conv_dims *d, bool for_dx) {
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

/* conv2d_relu: relu(conv2d) as one op; forward clamps as it writes y, backward masks dy as it pads it */
static bool fused_relu(const tg_node *n) { return n->op == &tg__op_conv2d_relu; }

static int conv_forward_shifted(tg_tape *t, tg_node *n, const conv_dims *d) {
    const float *x = n->in[0]->data, *w = n->in[1]->data, *b = n->n_in > 2 ? n->in[2]->data : NULL;
    bool relu = fused_relu(n);
    float *y = n->out->data;
    shift_geom s;
    shift_geom_of(d, &s);
    int T = tg__threads_for(d->N, 1), taps = d->R * d->S, Kgp = round8(d->Kg);
    int64_t HWo = (int64_t)d->Ho * d->Wo, a_size = (int64_t)taps * d->Cg * Kgp;
    /* per thread: the padded x and the output grid, then the (tap, channel) offsets, 2 floats each */
    int64_t per = round16(s.xp_size + Kgp * s.P) + 2 * round16(taps * d->Cg);
    float *A = tg_tape_alloc(t, (size_t)d->G * a_size * sizeof(float));
    float *bufs = tg_tape_alloc(t, (size_t)T * per * sizeof(float));
    uint16_t *mask = tg_tape_alloc(t, (size_t)(s.P / 16) * sizeof *mask);
    int32_t *at = tg_tape_alloc(t, (size_t)(s.P / 16) * sizeof *at);
    if (!A || !bufs || !mask || !at) return TG_ERR_NOMEM;
    grid_map(mask, at, s.P, s.Wp, d->Ho, d->Wo);
    for (int g = 0; g < d->G; g++) pack_taps(A + g * a_size, w + (int64_t)g * d->Kg * d->rows, d, false);
#pragma omp parallel num_threads(T)
    {
        float *xp = bufs + (size_t)tg__thread_id() * per, *c = xp + s.xp_size;
        ptrdiff_t *offs = (ptrdiff_t *)(xp + round16(s.xp_size + Kgp * s.P));
        /* once: the borders pad_x never writes (the grid c is written whole before it is read) */
        memset(xp, 0, (size_t)s.xp_size * sizeof(float));
#pragma omp for schedule(static)
        for (int i = 0; i < d->N; i++)
            for (int g = 0; g < d->G; g++) {
                pad_x(xp, x + ((int64_t)i * d->C + (int64_t)g * d->Cg) * d->H * d->W, d, &s);
                float *yg = y + ((int64_t)i * d->K + (int64_t)g * d->Kg) * HWo;
                tg__shift_out out = {yg, HWo, b ? b + g * d->Kg : NULL, relu, false, mask, at};
                if (tg__shifted_gemm(d->Kg, (int)s.P, d->Cg, taps, A + g * a_size, xp, (ptrdiff_t)s.Hp * s.Wp,
                                     s.off, c, s.P, false, offs, &out))
                    continue; /* written into y already */
                for (int k = 0; k < d->Kg; k++)
                    copy_rows(yg + k * HWo, d->Wo, c + k * s.P, s.Wp, d->Ho, d->Wo,
                              relu ? ROWS_BIAS_RELU : ROWS_BIAS, b ? b[g * d->Kg + k] : 0.0f, NULL);
            }
    }
    return 0;
}

// ----------------------------------------------------------------------------

/* Work is split over images; each thread has its own im2col buffer. Results
 * do not depend on the number of threads: every image is computed the same
 * way, and the weight gradient is summed per fixed chunk of images, then over
 * the chunks in order. */
static int conv_forward(tg_tape *t, tg_node *n) {
    conv_dims d = dims_of(n);
    if (is_shifted(&d)) return conv_forward_shifted(t, n, &d);
    const float *x = n->in[0]->data, *w = n->in[1]->data, *b = n->n_in > 2 ? n->in[2]->data : NULL;
    float *y = n->out->data;
    int HWo = d.Ho * d.Wo, T = tg__threads_for(d.N, 1);
    bool pw = is_pointwise(&d);
    float *cols = pw ? NULL : tg_tape_alloc(t, floats_bytes(T, d.rows, HWo));
    if (!pw && !cols) return TG_ERR_NOMEM;
#pragma omp parallel for num_threads(T) schedule(static)
    for (int i = 0; i < d.N; i++) {
        float *col = pw ? NULL : cols + (size_t)tg__thread_id() * d.rows * HWo;
        for (int g = 0; g < d.G; g++) {
            const float *xg = x + ((int64_t)i * d.C + (int64_t)g * d.Cg) * d.H * d.W;
            float *yg = y + ((int64_t)i * d.K + (int64_t)g * d.Kg) * HWo;
            const float *src = xg;
            if (col) {
                im2col(col, xg, &d);
                src = col;
            }
            tg__sgemm(false, false, d.Kg, HWo, (int)d.rows, 1.0f, w + (int64_t)g * d.Kg * d.rows, (int)d.rows, src,
                      HWo, 0.0f, yg, HWo);
            if (b)
                for (int k = 0; k < d.Kg; k++)
                    for (int p = 0; p < HWo; p++) yg[(int64_t)k * HWo + p] += b[g * d.Kg + k];
            if (fused_relu(n))
                for (int64_t p = 0; p < (int64_t)d.Kg * HWo; p++) yg[p] = yg[p] <= 0.0f ? 0.0f : yg[p];
        }
    }
    return 0;
}

#define CONV_CHUNKS 16 /* the weight gradient is summed over at most this many chunks of images */

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

/* The weight gradient reads x in blocks of 16 channels when at most a fifth of
 * the blocks' lanes would be padding: its operands then stay in L1 (shifted.c) */
static bool blocked_pays(int Cg) { return (Cg + 15) / 16 * 16 * 4 <= Cg * 5; }

/* dW_g = the chunk's dy_g (on the forward grid) times x shifted by each tap, all
 * of the chunk's images in one product; dx_g += the flipped kernel run over
 * the same dy copy (stored, if dx_set). Chunks of images as in conv_vjp. */
static int conv_vjp_shifted(tg_tape *t, tg_node *n, const conv_dims *d, float *dws, float *dbs, int chunks,
                            bool dx_set) {
    tg_tensor *x = n->in[0], *w = n->in[1];
    const float *dy = n->out->grad, *ymask = fused_relu(n) ? n->out->data : NULL;
    shift_geom s;
    shift_geom_of(d, &s);
    int T = tg__threads_for(chunks, 1), taps = d->R * d->S, Cgp = round8(d->Cg), most = (d->N + chunks - 1) / chunks;
    int64_t HWo = (int64_t)d->Ho * d->Wo, a_size = (int64_t)taps * d->Kg * Cgp;
    bool blocked = blocked_pays(d->Cg);
    int64_t xsz = blocked ? s.xb_size : s.xp_size, ldx = (int64_t)s.Hp * s.Wp * 16;
    /* per thread: padded x and dy for each image of a chunk, the dx grid, then the offsets, 2 floats each */
    int64_t per = round16(most * (xsz + s.dq_size) + Cgp * s.P2) + 2 * round16(taps * d->Kg);
    float *A = x->requires_grad ? tg_tape_alloc(t, (size_t)d->G * a_size * sizeof(float)) : NULL;
    float *bufs = tg_tape_alloc(t, (size_t)T * per * sizeof(float));
    uint16_t *mask = tg_tape_alloc(t, (size_t)(s.P2 / 16) * sizeof *mask);
    int32_t *at = tg_tape_alloc(t, (size_t)(s.P2 / 16) * sizeof *at);
    if ((x->requires_grad && !A) || !bufs || !mask || !at) return TG_ERR_NOMEM;
    grid_map(mask, at, s.P2, s.Wp, d->H, d->W);
    for (int g = 0; A && g < d->G; g++) pack_taps(A + g * a_size, w->data + (int64_t)g * d->Kg * d->rows, d, true);
#pragma omp parallel num_threads(T)
    {
        float *xps = bufs + (size_t)tg__thread_id() * per, *dqs = xps + most * xsz;
        float *cx = dqs + most * s.dq_size;
        ptrdiff_t *offs = (ptrdiff_t *)(xps + round16(most * (xsz + s.dq_size) + Cgp * s.P2));
        /* once: the borders pad_x (or tg__pad_blocked) and pad_dy never write (the dx grid cx is
         * written whole before it is read) */
        memset(xps, 0, (size_t)most * (xsz + s.dq_size) * sizeof(float));
#pragma omp for schedule(static)
        for (int c = 0; c < chunks; c++) {
            float *dw = dws ? dws + (size_t)c * w->size : NULL;
            int i0 = (int)((int64_t)d->N * c / chunks), i1 = (int)((int64_t)d->N * (c + 1) / chunks);
            for (int g = 0; g < d->G; g++) {
                for (int i = i0; i < i1; i++) {
                    int64_t o = ((int64_t)i * d->K + (int64_t)g * d->Kg) * HWo;
                    float *dq = dqs + (i - i0) * s.dq_size;
                    pad_dy(dq, dy + o, ymask ? ymask + o : NULL, d, &s);
                    for (int k = 0; dbs && k < d->Kg; k++) /* this chunk's bias gradient, from the padded copy */
                        dbs[(size_t)c * d->K + g * d->Kg + k] +=
                            lane_sum(dq + s.front + k * s.Lq + (int64_t)s.PR * s.Wp, (int64_t)d->Ho * s.Wp);
                    const float *xi = x->data + ((int64_t)i * d->C + (int64_t)g * d->Cg) * d->H * d->W;
                    if (dw && blocked) tg__pad_blocked(xps + (i - i0) * xsz, ldx, xi, d->Cg, d->H, d->W, s.Wp, d->pad);
                    else if (dw) pad_x(xps + (i - i0) * xsz, xi, d, &s);
                }
                /* dy on the forward grid starts PR rows into each padded plane */
                const float *dq0 = dqs + s.front + (int64_t)s.PR * s.Wp;
                if (dw && blocked)
                    tg__shifted_wgt_blocked(d->Kg, d->Ho, d->Wo, s.Wp, d->Cg, taps, i1 - i0, dq0, s.Lq, s.dq_size, xps,
                                            ldx, xsz, s.off, dw + (int64_t)g * d->Kg * d->rows, false);
                else if (dw)
                    tg__shifted_gemm_nt(d->Kg, (int)s.P, d->Cg, taps, i1 - i0, dq0, s.Lq, s.dq_size, xps,
                                        (ptrdiff_t)s.Hp * s.Wp, xsz, s.off, dw + (int64_t)g * d->Kg * d->rows, false);
                for (int i = i0; x->requires_grad && i < i1; i++) {
                    float *dx = x->grad + ((int64_t)i * d->C + (int64_t)g * d->Cg) * d->H * d->W;
                    tg__shift_out out = {dx, (ptrdiff_t)d->H * d->W, NULL, false, !dx_set, mask, at};
                    if (tg__shifted_gemm(d->Cg, (int)s.P2, d->Kg, taps, A + g * a_size,
                                         dqs + (i - i0) * s.dq_size + s.front, s.Lq, s.off2, cx, s.P2, false, offs,
                                         &out))
                        continue; /* stored or added into dx already */
                    for (int ch = 0; ch < d->Cg; ch++)
                        copy_rows(dx + (int64_t)ch * d->H * d->W, d->W, cx + ch * s.P2, s.Wp, d->H, d->W,
                                  dx_set ? ROWS_COPY : ROWS_ADD, 0.0f, NULL);
                }
            }
        }
    }
    return 0;
}

// dW_g += dY_g col^T, dcol = W_g^T dY_g then dx += col2im(dcol); weight gradients per chunk into dws
static int conv_vjp_im2col(tg_tape *t, tg_node *n, const conv_dims *dp, const float *dy, float *dws, int chunks) {
    conv_dims d = *dp;
    tg_tensor *x = n->in[0], *w = n->in[1];
    int HWo = d.Ho * d.Wo, T = tg__threads_for(chunks, 1);
    bool pw = is_pointwise(&d);
    float *cols = tg_tape_alloc(t, floats_bytes(T, d.rows, HWo));
    if (!cols) return TG_ERR_NOMEM;
#pragma omp parallel for num_threads(T) schedule(static)
    for (int c = 0; c < chunks; c++) {
        float *col = cols + (size_t)tg__thread_id() * d.rows * HWo;
        float *dw = dws ? dws + (size_t)c * w->size : NULL;
        for (int i = (int)((int64_t)d.N * c / chunks); i < (int)((int64_t)d.N * (c + 1) / chunks); i++)
            for (int g = 0; g < d.G; g++) {
                int64_t xoff = ((int64_t)i * d.C + (int64_t)g * d.Cg) * d.H * d.W;
                const float *dyg = dy + ((int64_t)i * d.K + (int64_t)g * d.Kg) * HWo;
                const float *wg = w->data + (int64_t)g * d.Kg * d.rows;
                if (dw) {
                    const float *src = x->data + xoff;
                    if (!pw) {
                        im2col(col, src, &d);
                        src = col;
                    }
                    bool first = i == (int)((int64_t)d.N * c / chunks);
                    tg__sgemm(false, true, d.Kg, (int)d.rows, HWo, 1.0f, dyg, HWo, src, HWo, first ? 0.0f : 1.0f,
                              dw + (int64_t)g * d.Kg * d.rows, (int)d.rows);
                }
                if (x->requires_grad) {
                    if (pw) {
                        tg__sgemm(true, false, (int)d.rows, HWo, d.Kg, 1.0f, wg, (int)d.rows, dyg, HWo, 1.0f,
                                  x->grad + xoff, HWo);
                    } else {
                        tg__sgemm(true, false, (int)d.rows, HWo, d.Kg, 1.0f, wg, (int)d.rows, dyg, HWo, 0.0f, col,
                                  HWo);
                        col2im(x->grad + xoff, col, &d);
                    }
                }
            }
    }
    return 0;
}

/* The weight gradient is summed per fixed chunk of images, then over the chunks
 * in order; db += sum of dY over N, H', W' */
static int conv_vjp(tg_tape *t, tg_node *n) {
    conv_dims d = dims_of(n);
    tg_tensor *x = n->in[0], *w = n->in[1], *b = n->n_in > 2 ? n->in[2] : NULL;
    const float *dy = n->out->grad;
    int HWo = d.Ho * d.Wo, chunks = d.N < CONV_CHUNKS ? d.N : CONV_CHUNKS;
    bool shifted = is_shifted(&d), db_chunks = shifted && b && b->requires_grad;
    float *dws = w->requires_grad ? tg_tape_alloc(t, (size_t)chunks * w->size * sizeof(float)) : NULL;
    float *dbs = db_chunks ? tg_tape_alloc(t, (size_t)chunks * d.K * sizeof(float)) : NULL;
    if ((w->requires_grad && !dws) || (db_chunks && !dbs)) return TG_ERR_NOMEM;
    if (dbs) memset(dbs, 0, (size_t)chunks * d.K * sizeof(float));
    if (fused_relu(n) && !shifted) { /* the im2col path reads dy where it is: mask a copy first */
        float *m = tg_tape_alloc(t, (size_t)n->out->size * sizeof(float));
        if (!m) return TG_ERR_NOMEM;
        for (int64_t i = 0; i < n->out->size; i++) m[i] = n->out->data[i] <= 0.0f ? 0.0f : dy[i];
        dy = m;
    }
    bool dx_set = x->requires_grad && tg_grad_overwrite(x); /* dx holds nothing yet: store, don't add */
    if (dx_set && !shifted) { /* col2im adds */
        memset(x->grad, 0, (size_t)x->size * sizeof(float));
        dx_set = false;
    }
    int err = shifted ? conv_vjp_shifted(t, n, &d, dws, dbs, chunks, dx_set)
                      : conv_vjp_im2col(t, n, &d, dy, dws, chunks);
    if (err) return err;
    for (int i = 1; i < n->n_in; i++) /* weight and bias are small: zero them if unset, then add */
        if (n->in[i]->requires_grad && tg_grad_overwrite(n->in[i]))
            memset(n->in[i]->grad, 0, (size_t)n->in[i]->size * sizeof(float));
    if (dws) /* over the chunks in order, for each element */
#pragma omp parallel for num_threads(tg__threads_for(w->size * chunks, TG_MIN_PER_THREAD)) schedule(static)
        for (int64_t j = 0; j < w->size; j++)
            for (int c = 0; c < chunks; c++) w->grad[j] += dws[(size_t)c * w->size + j];
    for (int c = 0; dbs && c < chunks; c++) /* per chunk, then over the chunks in order */
        for (int k = 0; k < d.K; k++) b->grad[k] += dbs[(size_t)c * d.K + k];
    if (b && b->requires_grad && !dbs)
#pragma omp parallel for num_threads(tg__threads_for(d.K, 4)) schedule(static)
        for (int k = 0; k < d.K; k++)
            for (int i = 0; i < d.N; i++) b->grad[k] += lane_sum(dy + ((int64_t)i * d.K + k) * HWo, HWo);
    return 0;
}

static void conv_describe(const tg_node *n, char *buf, size_t len) {
    const conv_attr *a = n->attr;
    snprintf(buf, len, "kernel=%dx%d stride=%d pad=%d dilation=%d groups=%d%s", n->in[1]->shape[2],
             n->in[1]->shape[3], a->stride, a->pad, a->dilation, a->groups, n->n_in > 2 ? " bias" : "");
}

/* FLOPs: 2*(C/groups)*R*S multiply-adds for each of the N*K*H'*W' outputs, plus N*K*H'*W' bias adds
 * (and as many maxima for conv2d_relu) */
static int64_t conv_flops(const tg_node *n) {
    conv_dims d = dims_of(n);
    int64_t outputs = (int64_t)d.N * d.K * d.Ho * d.Wo; /* it and rows are below 2^31: no overflow */
    return 2 * d.rows * outputs + (n->n_in > 2 ? outputs : 0) + (fused_relu(n) ? outputs : 0);
}

/* conv2d_relu: the ReLU's share of zeros, as relu's dump shows it */
static void conv_relu_stats(const tg_node *n, char *buf, size_t len) {
    int64_t k = 0;
    for (int64_t i = 0; i < n->out->size; i++) k += n->out->data[i] == 0.0f;
    snprintf(buf, len, "zeros=%.1f%%", 100.0 * (double)k / (double)n->out->size);
}

/* The window over H, for the receptive field */
static void conv_window(const tg_node *n, int *span, int *stride, int *up) {
    const conv_attr *a = n->attr;
    *span = (int)((int64_t)(n->in[1]->shape[2] - 1) * a->dilation + 1); /* at most the padded input's height */
    *stride = a->stride;
    (void)up;
}

const tg_op tg__op_conv2d = {.name = "conv2d", .attr_size = sizeof(conv_attr), .shape = conv_shape,
                             .forward = conv_forward, .vjp = conv_vjp, .describe = conv_describe,
                             .flops = conv_flops, .window = conv_window, .overwrites_grads = true};

const tg_op tg__op_conv2d_relu = {.name = "conv2d_relu", .attr_size = sizeof(conv_attr), .shape = conv_shape,
                                  .forward = conv_forward, .vjp = conv_vjp, .describe = conv_describe,
                                  .flops = conv_flops, .stats = conv_relu_stats, .window = conv_window,
                                  .overwrites_grads = true};

tg_tensor *tg_conv2d(tg_tape *t, tg_tensor *x, tg_tensor *w, tg_tensor *b, int stride, int pad, int dilation,
                     int groups) {
    conv_attr a = {stride, pad, dilation, groups};
    return tg_apply(t, &tg__op_conv2d, (tg_tensor *[]){x, w, b}, b ? 3 : 2, &a);
}

tg_tensor *tg_conv2d_relu(tg_tape *t, tg_tensor *x, tg_tensor *w, tg_tensor *b, int stride, int pad, int dilation,
                          int groups) {
    conv_attr a = {stride, pad, dilation, groups};
    return tg_apply(t, &tg__op_conv2d_relu, (tg_tensor *[]){x, w, b}, b ? 3 : 2, &a);
}

// ----------------------------------------------------------------------------
// conv_transpose2d: the gradient of conv2d with respect to its input, as a forward op.
// x:(N,Cin,H,W) w:(Cin,Cout/groups,R,S) -> (N,Cout,H',W'), H' = (H-1)*s - 2p + d*(R-1) + output_padding + 1.
// It reuses the conv geometry seen from the large side: im2col of the output
// (Cout,H',W') gives the columns a conv2d with the same weight would multiply.

typedef struct {
    int stride, pad, output_padding, dilation, groups;
} convt_attr;

/* The conv2d that maps the output back onto x: C = Cout, H,W = H',W', Ho,Wo = x's H,W. */
static conv_dims convt_dims(const tg_node *n) {
    const convt_attr *a = n->attr;
    const tg_tensor *x = n->in[0], *w = n->in[1], *y = n->out;
    conv_dims d = {x->shape[0], y->shape[1], y->shape[2], y->shape[3], x->shape[1], w->shape[2], w->shape[3],
                   x->shape[2], x->shape[3], a->groups, y->shape[1] / a->groups, x->shape[1] / a->groups,
                   a->stride, a->pad, a->dilation, 0};
    d.rows = (int64_t)d.Cg * d.R * d.S;
    return d;
}

static int convt_shape(tg_node *n, int *ndim, int *shape) {
    const convt_attr *a = n->attr;
    const tg_tensor *x = n->in[0], *w = n->in[1], *b = n->n_in > 2 ? n->in[2] : NULL;
    char sx[64], sw[64], sb[64];
    tg_shape_str(x, sx, sizeof sx);
    tg_shape_str(w, sw, sizeof sw);
    if (x->ndim != 4 || w->ndim != 4)
        return tg_fail(TG_ERR_SHAPE, "conv_transpose2d: input and weight must have 4 dimensions (x %s, w %s)", sx, sw);
    if (a->stride < 1 || a->pad < 0 || a->dilation < 1 || a->groups < 1 || a->output_padding < 0 ||
        a->stride > TG_MAX_WINDOW || a->pad > TG_MAX_WINDOW || a->dilation > TG_MAX_WINDOW)
        return tg_fail(TG_ERR_ARG, "conv_transpose2d: stride %d, pad %d, output_padding %d, dilation %d, groups %d: "
                                   "need stride, dilation, groups >= 1 and pad, output_padding >= 0 (and stride, pad, "
                                   "dilation at most %d)",
                       a->stride, a->pad, a->output_padding, a->dilation, a->groups, TG_MAX_WINDOW);
    if (a->output_padding >= a->stride && a->output_padding >= a->dilation)
        return tg_fail(TG_ERR_ARG, "conv_transpose2d: output_padding %d must be smaller than the stride %d or the "
                                   "dilation %d", a->output_padding, a->stride, a->dilation);
    if (x->shape[1] % a->groups)
        return tg_fail(TG_ERR_ARG, "conv_transpose2d: groups %d must divide the %d input channels (x %s)", a->groups,
                       x->shape[1], sx);
    if (w->shape[0] != x->shape[1])
        return tg_fail(TG_ERR_SHAPE, "conv_transpose2d: input has %d channels but weight expects %d (x %s, w %s)",
                       x->shape[1], w->shape[0], sx, sw);
    int64_t Cout = (int64_t)w->shape[1] * a->groups; /* at most w's size: groups divides its Cin */
    if (b && (b->ndim != 1 || b->shape[0] != Cout))
        return tg_fail(TG_ERR_SHAPE, "conv_transpose2d: bias has shape %s but there are %lld output channels (w %s)",
                       tg_shape_str(b, sb, sizeof sb), (long long)Cout, sw);
    /* in 64 bits: every term is below 2^48 */
    int64_t Ho = (int64_t)(x->shape[2] - 1) * a->stride - 2 * (int64_t)a->pad +
                 (int64_t)a->dilation * (w->shape[2] - 1) + a->output_padding + 1;
    int64_t Wo = (int64_t)(x->shape[3] - 1) * a->stride - 2 * (int64_t)a->pad +
                 (int64_t)a->dilation * (w->shape[3] - 1) + a->output_padding + 1;
    if (Ho < 1 || Wo < 1)
        return tg_fail(TG_ERR_SHAPE, "conv_transpose2d: output would be %lldx%lld (x %s, w %s, stride %d, pad %d)",
                       (long long)Ho, (long long)Wo, sx, sw, a->stride, a->pad);
    /* the kernels index the output padded by pad on each side with int */
    if (Ho + 2 * a->pad > INT_MAX || Wo + 2 * a->pad > INT_MAX)
        return tg_fail(TG_ERR_SHAPE, "conv_transpose2d: output would be %lldx%lld, with the pad %d more than %d a side "
                                     "(x %s, w %s, stride %d, dilation %d)", (long long)Ho, (long long)Wo, a->pad,
                       INT_MAX, sx, sw, a->stride, a->dilation);
    *ndim = 4;
    shape[0] = x->shape[0];
    shape[1] = (int)Cout;
    shape[2] = (int)Ho;
    shape[3] = (int)Wo;
    return 0;
}

// y_g = col2im(W_g^T x_g) + b
static int convt_forward(tg_tape *t, tg_node *n) {
    conv_dims d = convt_dims(n);
    const float *x = n->in[0]->data, *w = n->in[1]->data, *b = n->n_in > 2 ? n->in[2]->data : NULL;
    float *y = n->out->data;
    int HWx = d.Ho * d.Wo, T = tg__threads_for(d.N, 1);
    int64_t HWy = (int64_t)d.H * d.W;
    float *cols = tg_tape_alloc(t, floats_bytes(T, d.rows, HWx));
    if (!cols) return TG_ERR_NOMEM;
#pragma omp parallel for num_threads(T) schedule(static)
    for (int i = 0; i < d.N; i++) {
        float *col = cols + (size_t)tg__thread_id() * d.rows * HWx;
        float *yi = y + (int64_t)i * d.C * HWy;
        for (int64_t c = 0; c < d.C; c++)
            for (int64_t p = 0; p < HWy; p++) yi[c * HWy + p] = b ? b[c] : 0.0f;
        for (int g = 0; g < d.G; g++) {
            const float *xg = x + ((int64_t)i * d.K + (int64_t)g * d.Kg) * HWx;
            tg__sgemm(true, false, (int)d.rows, HWx, d.Kg, 1.0f, w + (int64_t)g * d.Kg * d.rows, (int)d.rows, xg, HWx,
                      0.0f, col, HWx);
            col2im(yi + (int64_t)g * d.Cg * HWy, col, &d);
        }
    }
    return 0;
}

// dx_g += W_g im2col(dy_g), dW_g += x_g im2col(dy_g)^T, db += sum of dy over N, H', W'
static int convt_vjp(tg_tape *t, tg_node *n) {
    conv_dims d = convt_dims(n);
    tg_tensor *x = n->in[0], *w = n->in[1], *b = n->n_in > 2 ? n->in[2] : NULL;
    const float *dy = n->out->grad;
    int HWx = d.Ho * d.Wo;
    int64_t HWy = (int64_t)d.H * d.W;
    int chunks = d.N < CONV_CHUNKS ? d.N : CONV_CHUNKS, T = tg__threads_for(chunks, 1);
    float *cols = tg_tape_alloc(t, floats_bytes(T, d.rows, HWx));
    float *dws = w->requires_grad ? tg_tape_alloc(t, (size_t)chunks * w->size * sizeof(float)) : NULL;
    if (!cols || (w->requires_grad && !dws)) return TG_ERR_NOMEM;
#pragma omp parallel for num_threads(T) schedule(static)
    for (int c = 0; c < chunks; c++) {
        float *col = cols + (size_t)tg__thread_id() * d.rows * HWx;
        float *dw = dws ? dws + (size_t)c * w->size : NULL;
        int i0 = (int)((int64_t)d.N * c / chunks);
        for (int i = i0; i < (int)((int64_t)d.N * (c + 1) / chunks); i++)
            for (int g = 0; g < d.G; g++) {
                im2col(col, dy + (int64_t)i * d.C * HWy + (int64_t)g * d.Cg * HWy, &d);
                int64_t xoff = ((int64_t)i * d.K + (int64_t)g * d.Kg) * HWx;
                const float *wg = w->data + (int64_t)g * d.Kg * d.rows;
                if (x->requires_grad)
                    tg__sgemm(false, false, d.Kg, HWx, (int)d.rows, 1.0f, wg, (int)d.rows, col, HWx, 1.0f,
                              x->grad + xoff, HWx);
                if (dw)
                    tg__sgemm(false, true, d.Kg, (int)d.rows, HWx, 1.0f, x->data + xoff, HWx, col, HWx,
                              i == i0 ? 0.0f : 1.0f, dw + (int64_t)g * d.Kg * d.rows, (int)d.rows);
            }
    }
    for (int c = 0; dws && c < chunks; c++)
        for (int64_t j = 0; j < w->size; j++) w->grad[j] += dws[(size_t)c * w->size + j];
    if (b && b->requires_grad)
        for (int i = 0; i < d.N; i++)
            for (int c = 0; c < d.C; c++) {
                float s = 0;
                for (int64_t p = 0; p < HWy; p++) s += dy[((int64_t)i * d.C + c) * HWy + p];
                b->grad[c] += s;
            }
    return 0;
}

static void convt_describe(const tg_node *n, char *buf, size_t len) {
    const convt_attr *a = n->attr;
    snprintf(buf, len, "kernel=%dx%d stride=%d pad=%d output_padding=%d dilation=%d groups=%d%s", n->in[1]->shape[2],
             n->in[1]->shape[3], a->stride, a->pad, a->output_padding, a->dilation, a->groups,
             n->n_in > 2 ? " bias" : "");
}

/* FLOPs: 2*(Cout/groups)*R*S multiply-adds for each of the N*Cin*H*W inputs (the adds of col2im not
 * counted), plus N*Cout*H'*W' bias adds */
static int64_t convt_flops(const tg_node *n) {
    conv_dims d = convt_dims(n);
    return 2 * d.rows * n->in[0]->size + (n->n_in > 2 ? n->out->size : 0); /* each below 2^31: no overflow */
}

/* For the receptive field: output row o gets input row i through tap k when
 * i*stride + k*dilation = o + pad, so it reads at most (R-1)*dilation/stride + 1
 * input rows, and moves 1/stride of an input row per output row */
static void convt_window(const tg_node *n, int *span, int *stride, int *up) {
    const convt_attr *a = n->attr;
    *span = (int)((int64_t)(n->in[1]->shape[2] - 1) * a->dilation / a->stride + 1);
    *up = a->stride;
    (void)stride;
}

const tg_op tg__op_conv_transpose2d = {.name = "conv_transpose2d", .attr_size = sizeof(convt_attr),
                                       .shape = convt_shape, .forward = convt_forward, .vjp = convt_vjp,
                                       .describe = convt_describe, .flops = convt_flops, .window = convt_window};

tg_tensor *tg_conv_transpose2d(tg_tape *t, tg_tensor *x, tg_tensor *w, tg_tensor *b, int stride, int pad,
                               int output_padding, int dilation, int groups) {
    convt_attr a = {stride, pad, output_padding, dilation, groups};
    return tg_apply(t, &tg__op_conv_transpose2d, (tg_tensor *[]){x, w, b}, b ? 3 : 2, &a);
}
