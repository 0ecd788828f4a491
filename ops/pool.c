/* pool.c: max pooling (recording its argmax), average pooling, global average pooling. */
#include "internal.h"
#include "ops.h"
#include <float.h>
#include <limits.h>
#include <math.h>
#include <string.h>

typedef struct {
    int kernel, stride, pad;
} pool_attr;

static int pool_shape(tg_node *n, int *ndim, int *shape) {
    const pool_attr *a = n->attr;
    const tg_tensor *x = n->in[0];
    const char *op = n->op->name;
    char sx[64];
    tg_shape_str(x, sx, sizeof sx);
    if (x->ndim != 4) return tg_fail(TG_ERR_SHAPE, "%s: input must be (N,C,H,W), got %s", op, sx);
    if (a->kernel < 1 || a->stride < 1 || a->pad < 0 || a->kernel > TG_MAX_WINDOW || a->stride > TG_MAX_WINDOW)
        return tg_fail(TG_ERR_ARG, "%s: kernel %d, stride %d, pad %d: need kernel >= 1, stride >= 1, pad >= 0 (and "
                                   "kernel, stride at most %d)", op, a->kernel, a->stride, a->pad, TG_MAX_WINDOW);
    if (a->pad > a->kernel / 2)
        return tg_fail(TG_ERR_ARG, "%s: pad %d is more than half the kernel %d", op, a->pad, a->kernel);
    int64_t Hp = x->shape[2] + 2 * (int64_t)a->pad, Wp = x->shape[3] + 2 * (int64_t)a->pad; /* in 64 bits */
    if (Hp < a->kernel || Wp < a->kernel)
        return tg_fail(TG_ERR_SHAPE, "%s: kernel %d is larger than the padded input %lldx%lld (x %s, pad %d)", op,
                       a->kernel, (long long)Hp, (long long)Wp, sx, a->pad);
    /* the loops index the padded input with int (and the output is never larger) */
    if (Hp > INT_MAX || Wp > INT_MAX)
        return tg_fail(TG_ERR_SHAPE, "%s: the padded input %lldx%lld is larger than %d a side (x %s, pad %d)", op,
                       (long long)Hp, (long long)Wp, INT_MAX, sx, a->pad);
    *ndim = 4;
    shape[0] = x->shape[0];
    shape[1] = x->shape[1];
    shape[2] = (int)((Hp - a->kernel) / a->stride + 1);
    shape[3] = (int)((Wp - a->kernel) / a->stride + 1);
    return 0;
}

static void pool_describe(const tg_node *n, char *buf, size_t len) {
    const pool_attr *a = n->attr;
    snprintf(buf, len, "kernel=%d stride=%d pad=%d", a->kernel, a->stride, a->pad);
}

/* FLOPs of max and average pooling: kernel*kernel (compares or adds) per output element
 * (below 2^31 * 2^32: no overflow) */
static int64_t pool_flops(const tg_node *n) {
    const pool_attr *a = n->attr;
    return n->out->size * a->kernel * a->kernel;
}

static void pool_window(const tg_node *n, int *span, int *stride, int *up) {
    const pool_attr *a = n->attr;
    *span = a->kernel;
    *stride = a->stride;
    (void)up;
}

// ----------------------------------------------------------------------------
// max pooling

/* Does v win over the best so far? Strictly greater keeps the first maximum; a NaN
 * wins over numbers (it propagates, as in PyTorch). */
static inline bool wins(float v, float best) { return v > best || (v != v && best == best); }

/* wins() on 8 lanes: all ones where v wins over best; and a where m, else b */
#define WINS8(v, best) (((v) > (best)) | (((v) != (v)) & ((best) == (best))))
#define PICK8(m, a, b) ((tg_f8)(((tg_i8)(a) & (m)) | ((tg_i8)(b) & ~(m))))

/* The 2x2, stride 2, unpadded pool of most CNNs, without bounds checks. Eight
 * windows at a time: the better of each row's two columns (the left one on a
 * tie), then the lower row's if it wins over the upper: the same first maximum
 * in row-major order that the scalar scan finds. */
TG_CLONES static void maxpool_2x2(const float *xp, int W, int Ho, int Wo, float *y, int32_t *arg) {
    const tg_i8 lane = {0, 1, 2, 3, 4, 5, 6, 7};
    for (int oh = 0; oh < Ho; oh++) {
        const float *r0 = xp + 2 * oh * W, *r1 = r0 + W;
        float *yo = y + oh * Wo;
        int ow = 0;
        for (; ow + 8 <= Wo; ow += 8) {
            tg_f8 a0 = TG_F8(r0 + 2 * ow), a1 = TG_F8(r0 + 2 * ow + 8);
            tg_f8 b0 = TG_F8(r1 + 2 * ow), b1 = TG_F8(r1 + 2 * ow + 8);
            tg_f8 ae = __builtin_shufflevector(a0, a1, 0, 2, 4, 6, 8, 10, 12, 14);
            tg_f8 ao = __builtin_shufflevector(a0, a1, 1, 3, 5, 7, 9, 11, 13, 15);
            tg_f8 be = __builtin_shufflevector(b0, b1, 0, 2, 4, 6, 8, 10, 12, 14);
            tg_f8 bo = __builtin_shufflevector(b0, b1, 1, 3, 5, 7, 9, 11, 13, 15);
            tg_i8 wa = WINS8(ao, ae), wb = WINS8(bo, be);
            tg_f8 ma = PICK8(wa, ao, ae), mb = PICK8(wb, bo, be);
            tg_i8 down = WINS8(mb, ma);
            *(tg_f8 *)(yo + ow) = PICK8(down, mb, ma);
            if (arg) /* window start, then + W for the lower row, + 1 for the right column */
                *(tg_i8 *)(arg + oh * Wo + ow) =
                    2 * oh * W + 2 * (lane + ow) + ((W + (wb & 1)) & down) + ((wa & 1) & ~down);
        }
        for (; ow < Wo; ow++) {
            int i = 2 * oh * W + 2 * ow, best = i;
            if (wins(xp[i + 1], xp[best])) best = i + 1;
            if (wins(xp[i + W], xp[best])) best = i + W;
            if (wins(xp[i + W + 1], xp[best])) best = i + W + 1;
            yo[ow] = xp[best];
            if (arg) arg[oh * Wo + ow] = best;
        }
    }
}

static int maxpool_forward(tg_tape *t, tg_node *n) {
    const pool_attr *a = n->attr;
    const tg_tensor *x = n->in[0];
    tg_tensor *y = n->out;
    int H = x->shape[2], W = x->shape[3], Ho = y->shape[2], Wo = y->shape[3];
    int64_t planes = (int64_t)x->shape[0] * x->shape[1];
    int32_t *arg = NULL;
    if (n->record && !(arg = tg_node_save(t, n, (size_t)y->size * sizeof(int32_t), "argmax"))) return TG_ERR_NOMEM;
    n->saved = arg;
#pragma omp parallel for num_threads(tg__threads_for(x->size, TG_MIN_PER_THREAD)) schedule(static)
    for (int64_t p = 0; p < planes; p++) {
        const float *xp = x->data + p * H * W;
        if (a->kernel == 2 && a->stride == 2 && a->pad == 0) {
            maxpool_2x2(xp, W, Ho, Wo, y->data + p * Ho * Wo, arg ? arg + p * Ho * Wo : NULL);
            continue;
        }
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++) {
                int h0 = oh * a->stride - a->pad, w0 = ow * a->stride - a->pad;
                int h1 = h0 + a->kernel < H ? h0 + a->kernel : H, w1 = w0 + a->kernel < W ? w0 + a->kernel : W;
                if (h0 < 0) h0 = 0;
                if (w0 < 0) w0 = 0;
                /* padding never wins: only real positions compete */
                int best = h0 * W + w0;
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++)
                        if (wins(xp[ih * W + iw], xp[best])) best = ih * W + iw;
                int64_t o = (p * Ho + oh) * Wo + ow;
                y->data[o] = xp[best];
                if (arg) arg[o] = best;
            }
    }
    return 0;
}

// dx[argmax] += dy
static int maxpool_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    tg_tensor *x = n->in[0];
    const tg_tensor *y = n->out;
    const int32_t *arg = n->saved;
    int64_t HW = (int64_t)x->shape[2] * x->shape[3], HWo = (int64_t)y->shape[2] * y->shape[3];
    int64_t planes = (int64_t)x->shape[0] * x->shape[1];
    const pool_attr *a = n->attr;
    int W = x->shape[3], Ho = y->shape[2], Wo = y->shape[3];
    bool set = tg_grad_overwrite(x); /* dx holds nothing yet: zero each plane just before its scatter */
    /* 2x2 windows that tile the plane: every input lies in at most one window, so one pass
     * writes each element once, the gradient at the argmax and zeros around it */
    bool tiles = set && a->kernel == 2 && a->stride == 2 && a->pad == 0;
    /* planes are independent (windows may overlap, but only within a plane) */
#pragma omp parallel for num_threads(tg__threads_for(x->size, TG_MIN_PER_THREAD)) schedule(static)
    for (int64_t p = 0; p < planes; p++) {
        float *dx = x->grad + p * HW;
        const float *dy = y->grad + p * HWo;
        const int32_t *ap = arg + p * HWo;
        if (!tiles) {
            if (set) memset(dx, 0, (size_t)HW * sizeof(float));
            for (int64_t o = 0; o < HWo; o++) dx[ap[o]] += dy[o];
            continue;
        }
        if (x->shape[2] > 2 * Ho || W > 2 * Wo) memset(dx, 0, (size_t)HW * sizeof(float)); /* an odd edge */
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++) {
                int o = oh * Wo + ow, i = 2 * oh * W + 2 * ow;
                float g = dy[o];
                dx[i] = ap[o] == i ? g : 0.0f;
                dx[i + 1] = ap[o] == i + 1 ? g : 0.0f;
                dx[i + W] = ap[o] == i + W ? g : 0.0f;
                dx[i + W + 1] = ap[o] == i + W + 1 ? g : 0.0f;
            }
    }
    return 0;
}

/* How often each position of the window (row-major, 0..k*k-1) held the maximum, from the recorded argmax;
 * only the first STATS_POSITIONS positions are counted (no more would fit the line) */
#define STATS_POSITIONS 256
static void maxpool_stats(const tg_node *n, char *buf, size_t len) {
    const pool_attr *a = n->attr;
    const int32_t *arg = n->saved;
    const tg_tensor *y = n->out;
    int W = n->in[0]->shape[3], Ho = y->shape[2], Wo = y->shape[3];
    int64_t kk = (int64_t)a->kernel * a->kernel, shown = kk < STATS_POSITIONS ? kk : STATS_POSITIONS;
    int64_t *count = arg ? tg__calloc((size_t)shown, sizeof *count) : NULL;
    buf[0] = '\0';
    if (!count) return;
    for (int64_t o = 0; o < y->size; o++) {
        int oh = (int)(o / Wo % Ho), ow = (int)(o % Wo);
        int r = arg[o] / W - (oh * a->stride - a->pad), c = arg[o] % W - (ow * a->stride - a->pad);
        int64_t pos = (int64_t)r * a->kernel + c;
        if (pos < shown) count[pos]++;
    }
    size_t o = (size_t)snprintf(buf, len, "argmax pos 0..%lld:", (long long)(kk - 1));
    for (int64_t i = 0; i < shown && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, " %lld", (long long)count[i]);
    tg__free(count);
}

const tg_op tg__op_max_pool2d = {.name = "max_pool2d", .attr_size = sizeof(pool_attr), .shape = pool_shape,
                                 .forward = maxpool_forward, .vjp = maxpool_vjp, .describe = pool_describe,
                                 .flops = pool_flops, .stats = maxpool_stats, .window = pool_window,
                                 .overwrites_grads = true};

tg_tensor *tg_max_pool2d(tg_tape *t, tg_tensor *x, int kernel, int stride, int pad) {
    pool_attr a = {kernel, stride, pad};
    return tg_apply(t, &tg__op_max_pool2d, &x, 1, &a);
}

const int32_t *tg_max_pool2d_argmax(const tg_tensor *y) {
    return tg__tensor_current(y) && y->node && y->node->op == &tg__op_max_pool2d ? y->node->saved : NULL;
}

// ----------------------------------------------------------------------------
// average pooling: the divisor is always kernel*kernel (padded zeros count)

static int avgpool_forward(tg_tape *t, tg_node *n) {
    (void)t;
    const pool_attr *a = n->attr;
    const tg_tensor *x = n->in[0];
    tg_tensor *y = n->out;
    int H = x->shape[2], W = x->shape[3], Ho = y->shape[2], Wo = y->shape[3];
    float inv = 1.0f / (float)((int64_t)a->kernel * a->kernel); /* kernel*kernel may pass INT_MAX */
    for (int64_t p = 0; p < (int64_t)x->shape[0] * x->shape[1]; p++) {
        const float *xp = x->data + p * H * W;
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++) {
                int h0 = oh * a->stride - a->pad, w0 = ow * a->stride - a->pad;
                float s = 0;
                for (int ih = h0 < 0 ? 0 : h0; ih < h0 + a->kernel && ih < H; ih++)
                    for (int iw = w0 < 0 ? 0 : w0; iw < w0 + a->kernel && iw < W; iw++) s += xp[ih * W + iw];
                y->data[(p * Ho + oh) * Wo + ow] = s * inv;
            }
    }
    return 0;
}

// dx[window] += dy / (kernel*kernel)
static int avgpool_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    const pool_attr *a = n->attr;
    tg_tensor *x = n->in[0];
    const tg_tensor *y = n->out;
    int H = x->shape[2], W = x->shape[3], Ho = y->shape[2], Wo = y->shape[3];
    float inv = 1.0f / (float)((int64_t)a->kernel * a->kernel); /* kernel*kernel may pass INT_MAX */
    for (int64_t p = 0; p < (int64_t)x->shape[0] * x->shape[1]; p++) {
        float *dx = x->grad + p * H * W;
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++) {
                int h0 = oh * a->stride - a->pad, w0 = ow * a->stride - a->pad;
                float g = y->grad[(p * Ho + oh) * Wo + ow] * inv;
                for (int ih = h0 < 0 ? 0 : h0; ih < h0 + a->kernel && ih < H; ih++)
                    for (int iw = w0 < 0 ? 0 : w0; iw < w0 + a->kernel && iw < W; iw++) dx[ih * W + iw] += g;
            }
    }
    return 0;
}

const tg_op tg__op_avg_pool2d = {.name = "avg_pool2d", .attr_size = sizeof(pool_attr), .shape = pool_shape,
                                 .forward = avgpool_forward, .vjp = avgpool_vjp, .describe = pool_describe,
                                 .flops = pool_flops, .window = pool_window};

tg_tensor *tg_avg_pool2d(tg_tape *t, tg_tensor *x, int kernel, int stride, int pad) {
    pool_attr a = {kernel, stride, pad};
    return tg_apply(t, &tg__op_avg_pool2d, &x, 1, &a);
}

// ----------------------------------------------------------------------------
// global average pooling: (N,C,H,W) -> (N,C)

static int gap_shape(tg_node *n, int *ndim, int *shape) {
    const tg_tensor *x = n->in[0];
    char sx[64];
    if (x->ndim != 4)
        return tg_fail(TG_ERR_SHAPE, "global_avg_pool: input must be (N,C,H,W), got %s", tg_shape_str(x, sx, sizeof sx));
    *ndim = 2;
    shape[0] = x->shape[0];
    shape[1] = x->shape[1];
    return 0;
}

static int gap_forward(tg_tape *t, tg_node *n) {
    (void)t;
    const tg_tensor *x = n->in[0];
    int64_t HW = (int64_t)x->shape[2] * x->shape[3];
    for (int64_t p = 0; p < n->out->size; p++) {
        float s = 0;
        for (int64_t j = 0; j < HW; j++) s += x->data[p * HW + j];
        n->out->data[p] = s / (float)HW;
    }
    return 0;
}

// dx[n,c,:,:] += dy[n,c] / (H*W)
static int gap_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    tg_tensor *x = n->in[0];
    int64_t HW = (int64_t)x->shape[2] * x->shape[3];
    for (int64_t p = 0; p < n->out->size; p++) {
        float g = n->out->grad[p] / (float)HW;
        for (int64_t j = 0; j < HW; j++) x->grad[p * HW + j] += g;
    }
    return 0;
}

/* FLOPs: one add per input element */
static int64_t gap_flops(const tg_node *n) { return n->in[0]->size; }

const tg_op tg__op_global_avg_pool = {.name = "global_avg_pool", .shape = gap_shape, .forward = gap_forward,
                                      .vjp = gap_vjp, .flops = gap_flops};

tg_tensor *tg_global_avg_pool(tg_tape *t, tg_tensor *x) { return tg_apply(t, &tg__op_global_avg_pool, &x, 1, NULL); }
