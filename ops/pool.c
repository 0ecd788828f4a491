/* pool.c: max pooling (recording its argmax), average pooling, global average
 * pooling; their loops are in ops/kernels/pool.c. */
#include "internal.h"
#include "kernels/kernels.h"
#include "ops.h"
#include <limits.h>

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

/* Backward FLOPs: max pooling adds dy into dx at the argmax, one per output element; average
 * pooling divides dy by k*k and adds it into each of the k*k inputs of the window */
static int64_t maxpool_flops_backward(const tg_node *n) { return n->out->size; }
static int64_t avgpool_flops_backward(const tg_node *n) {
    const pool_attr *a = n->attr;
    return n->out->size * ((int64_t)a->kernel * a->kernel + 1);
}

/* Bytes of max pooling's vjp: dy and the argmax read, dx written; x is not read */
static int64_t maxpool_bytes(const tg_node *n, bool backward) {
    if (!backward) return -1;
    return 4 * n->out->size + (int64_t)n->saved_bytes + (n->store[0] ? 4 : 8) * n->in[0]->size;
}

static void pool_window(const tg_node *n, int *span, int *stride, int *up) {
    const pool_attr *a = n->attr;
    *span = a->kernel;
    *stride = a->stride;
    (void)up;
}

// ----------------------------------------------------------------------------
// max pooling

static int maxpool_forward(tg_tape *t, tg_node *n) {
    const pool_attr *a = n->attr;
    const tg_tensor *x = n->in[0];
    tg_tensor *y = n->out;
    int32_t *arg = NULL;
    if (n->record && !(arg = tg_node_save(t, n, (size_t)y->size * sizeof(int32_t), "argmax"))) return TG_ERR_NOMEM;
    n->saved = arg;
    tg__max_pool2d(y->data, arg, x->data, (int64_t)x->shape[0] * x->shape[1], x->shape[2], x->shape[3], y->shape[2],
                   y->shape[3], a->kernel, a->stride, a->pad);
    return 0;
}

// dx[argmax] += dy
static int maxpool_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    const pool_attr *a = n->attr;
    tg_tensor *x = n->in[0];
    const tg_tensor *y = n->out;
    bool set = n->store[0]; /* dx holds nothing yet: store, don't add */
    tg__max_pool2d_backward(x->grad, y->grad, n->saved, (int64_t)x->shape[0] * x->shape[1], x->shape[2], x->shape[3],
                            y->shape[2], y->shape[3], a->kernel, a->stride, a->pad, set);
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

/* MaxPool and AveragePool; ONNX's pads never win a max either, and count_include_pad=1 divides
 * by the whole window as ours does (ONNX's default 0 would not) */
static int pool_onnx(const tg_node *n, tg_onnx *g) {
    const pool_attr *a = n->attr;
    bool avg = n->op == &tg__op_avg_pool2d;
    int rc = tg__onnx_simple(n, g, avg ? "AveragePool" : "MaxPool");
    if (!rc) rc = tg__onnx_window(g, a->kernel, a->kernel, a->stride, a->pad, 0);
    if (!rc && avg) rc = tg_onnx_attr_int(g, "count_include_pad", 1);
    return rc;
}

const tg_op tg__op_max_pool2d = {.name = "max_pool2d", .attr_size = sizeof(pool_attr), .shape = pool_shape,
                                 .forward = maxpool_forward, .vjp = maxpool_vjp, .describe = pool_describe,
                                 .flops = pool_flops, .flops_backward = maxpool_flops_backward,
                                 .bytes = maxpool_bytes, .stats = maxpool_stats, .window = pool_window,
                                 .overwrites_grads = true, .onnx = pool_onnx, .batch_split = true};

tg_tensor *tg_max_pool2d(tg_tape *t, tg_tensor *x, int kernel, int stride, int pad) {
    pool_attr a = {kernel, stride, pad};
    return tg_apply(t, &tg__op_max_pool2d, &x, 1, &a);
}

const int32_t *tg_max_pool2d_argmax(const tg_tensor *y) {
    if (!tg__tensor_current(y) || !y->node) return NULL;
    if (tg__bn_pools(y->node)) return tg__bn_argmax(y->node);
    return y->node->op == &tg__op_max_pool2d || tg__conv_pools(y->node) ? y->node->saved : NULL;
}

// ----------------------------------------------------------------------------
// average pooling: the divisor is always kernel*kernel (padded zeros count)

static int avgpool_forward(tg_tape *t, tg_node *n) {
    (void)t;
    const pool_attr *a = n->attr;
    const tg_tensor *x = n->in[0], *y = n->out;
    tg__avg_pool2d(y->data, x->data, (int64_t)x->shape[0] * x->shape[1], x->shape[2], x->shape[3], y->shape[2],
                   y->shape[3], a->kernel, a->stride, a->pad);
    return 0;
}

// dx[window] += dy / (kernel*kernel)
static int avgpool_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    const pool_attr *a = n->attr;
    tg_tensor *x = n->in[0];
    const tg_tensor *y = n->out;
    tg__avg_pool2d_backward(x->grad, y->grad, (int64_t)x->shape[0] * x->shape[1], x->shape[2], x->shape[3], y->shape[2],
                            y->shape[3], a->kernel, a->stride, a->pad);
    return 0;
}

const tg_op tg__op_avg_pool2d = {.name = "avg_pool2d", .attr_size = sizeof(pool_attr), .shape = pool_shape,
                                 .forward = avgpool_forward, .vjp = avgpool_vjp, .describe = pool_describe,
                                 .flops = pool_flops, .flops_backward = avgpool_flops_backward,
                                 .window = pool_window, .onnx = pool_onnx, .batch_split = true};

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
    tg__global_avg_pool(n->out->data, x->data, n->out->size, (int64_t)x->shape[2] * x->shape[3]);
    return 0;
}

// dx[n,c,:,:] += dy[n,c] / (H*W)
static int gap_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    tg_tensor *x = n->in[0];
    tg__global_avg_pool_backward(x->grad, n->out->grad, n->out->size, (int64_t)x->shape[2] * x->shape[3]);
    return 0;
}

/* FLOPs: one add per input element */
static int64_t gap_flops(const tg_node *n) { return n->in[0]->size; }

/* Backward FLOPs: dy / (H*W) per output, then one add per input element */
static int64_t gap_flops_backward(const tg_node *n) { return n->in[0]->size + n->out->size; }

/* GlobalAveragePool keeps H and W as 1s: a Flatten gives our (N,C) */
static int gap_onnx(const tg_node *n, tg_onnx *g) {
    const tg_tensor *x = n->in[0];
    const char *in = tg_onnx_name(g, x), *y = tg_onnx_name(g, n->out);
    const char *pooled = tg_onnx_temp(g, n, "pooled", 4, (const int[]){x->shape[0], x->shape[1], 1, 1},
                                          tg_onnx_batched(g, x));
    if (!in || !y || !pooled) return tg_last_error_code();
    int rc = tg_onnx_node(g, "GlobalAveragePool", &in, 1, &pooled, 1);
    if (!rc) rc = tg_onnx_node(g, "Flatten", &pooled, 1, &y, 1);
    if (!rc) rc = tg_onnx_attr_int(g, "axis", 1);
    return rc;
}

const tg_op tg__op_global_avg_pool = {.name = "global_avg_pool", .shape = gap_shape, .forward = gap_forward,
                                      .vjp = gap_vjp, .flops = gap_flops, .flops_backward = gap_flops_backward,
                                      .onnx = gap_onnx, .batch_split = true};

tg_tensor *tg_global_avg_pool(tg_tape *t, tg_tensor *x) { return tg_apply(t, &tg__op_global_avg_pool, &x, 1, NULL); }
