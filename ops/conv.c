/* conv.c: the ops conv2d (stride, padding, dilation, groups, an optional ReLU epilogue) and
 * conv_transpose2d: their attributes, shape checks, and forward and VJP
 * functions that hand the tensors' arrays to the convolution kernels
 * (ops/kernels/conv.c: padded images shifted by tap for stride 1, else im2col
 * and GEMM). */
#include "internal.h"
#include "kernels/kernels.h"
#include "ops.h"
#include <limits.h>
#include <string.h>

typedef struct {
    int stride, pad, dilation, groups;
    tg_act act; /* TG_ACT_RELU: relu(conv2d) as one node */
    bool pool;  /* and then 2x2 stride-2 max pooling (conv2d+relu+max_pool2d; act is TG_ACT_RELU) */
} conv_attr;

/* The conv's output size along one side of the padded input (in 64 bits; below 1 if the kernel's span
 * does not fit) */
static int64_t out_side(int64_t in, int pad, int kernel, int dilation, int stride) {
    int64_t span = (int64_t)dilation * (kernel - 1) + 1;
    return in + 2 * (int64_t)pad < span ? 0 : (in + 2 * (int64_t)pad - span) / stride + 1;
}

/* the sizes every kernel needs, from the node (Ho, Wo: the conv's output, before any pooling) */
static tg__conv_dims dims_of(const tg_node *n) {
    const conv_attr *a = n->attr;
    const tg_tensor *x = n->in[0], *w = n->in[1];
    tg__conv_dims d = {x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[0], w->shape[2], w->shape[3],
                       n->out ? n->out->shape[2] : 0, n->out ? n->out->shape[3] : 0, a->groups,
                       x->shape[1] / a->groups, w->shape[0] / a->groups, a->stride, a->pad, a->dilation, 0};
    if (a->pool) {
        d.Ho = (int)out_side(d.H, a->pad, d.R, a->dilation, a->stride);
        d.Wo = (int)out_side(d.W, a->pad, d.S, a->dilation, a->stride);
    }
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
    if (a->act != TG_ACT_NONE && a->act != TG_ACT_RELU)
        return tg_fail(TG_ERR_ARG, "%s: unknown activation %d", n->op->name, (int)a->act);
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
    shape[2] = (int)out_side(x->shape[2], a->pad, w->shape[2], a->dilation, a->stride);
    shape[3] = (int)out_side(x->shape[3], a->pad, w->shape[3], a->dilation, a->stride);
    if (a->pool && (shape[2] < 2 || shape[3] < 2))
        return tg_fail(TG_ERR_SHAPE, "%s: its output %dx%d is smaller than the 2x2 pooling window (x %s, w %s)",
                       n->op->name, shape[2], shape[3], sx, sw);
    if (a->pool) shape[2] /= 2, shape[3] /= 2;
    return 0;
}

/* act relu: relu(conv2d) as one node; forward clamps as it writes y, backward masks dy as it pads it */
static bool fused_relu(const tg_node *n) { return ((const conv_attr *)n->attr)->act == TG_ACT_RELU; }
/* with pooling: the output is pooled per image from scratch, argmax recorded; backward unpools the
 * gradient straight into the conv's padded dy */
static bool fused_pool(const tg_node *n) { return ((const conv_attr *)n->attr)->pool; }

/* The kernels' scratch, from the tape: bytes as the kernel asked (SIZE_MAX fails) */
static void *scratch(tg_tape *t, size_t bytes) { return tg_tape_alloc(t, bytes ? bytes : 1); }

static int conv_forward(tg_tape *t, tg_node *n) {
    tg__conv_dims d = dims_of(n);
    int threads;
    tg__conv_pool pool = {n->out->data, NULL, NULL};
    if (fused_pool(n) && n->record &&
        !(pool.arg = tg_node_save(t, n, (size_t)n->out->size * sizeof(int32_t), "argmax")))
        return TG_ERR_NOMEM;
    n->saved = pool.arg;
    void *s = scratch(t, tg__conv2d_forward_scratch(&d, fused_pool(n), &threads));
    if (!s) return TG_ERR_NOMEM;
    n->kernel_forward = tg__conv2d_forward(n->out->data, n->in[0]->data, n->in[1]->data,
                                           n->n_in > 2 ? n->in[2]->data : NULL, &d, fused_relu(n),
                                           fused_pool(n) ? &pool : NULL, s, threads);
    return 0;
}

// dx (= or +=) conv_transpose2d(dy, w), dw += dy correlated with x, db += sum of dy over N, H', W'
// (with the ReLU epilogue, dy only where the output is not <= 0)
static int conv_vjp(tg_tape *t, tg_node *n) {
    tg__conv_dims d = dims_of(n);
    tg__split sp; /* across processes: dw and db over the global batch's chunks */
    if (tg__split_of(t, n->op->name, d.N, &sp, &d.split) < 0) return TG_ERR_SHAPE;
    tg_tensor *x = n->in[0], *w = n->in[1], *b = n->n_in > 2 ? n->in[2] : NULL;
    bool dx_set = n->store[0]; /* dx holds nothing yet: store, don't add */
    for (int i = 1; i < n->n_in; i++) /* weight and bias are small: zero them if unset, then add */
        if (n->store[i])
            memset(n->in[i]->grad, 0, (size_t)n->in[i]->size * sizeof(float));
    float *dx = x->requires_grad ? x->grad : NULL, *dw = w->requires_grad ? w->grad : NULL;
    float *db = b && b->requires_grad ? b->grad : NULL;
    int threads;
    bool pooled = fused_pool(n);
    tg__conv_pool pool = {n->out->data, n->saved, n->out->grad};
    void *s = scratch(t, tg__conv2d_backward_scratch(&d, dx, dw, db, fused_relu(n), pooled, &threads));
    if (!s) return TG_ERR_NOMEM;
    n->kernel_backward = tg__conv2d_backward(dx, dw, db, n->out->grad, fused_relu(n) && !pooled ? n->out->data : NULL,
                                             pooled ? &pool : NULL, x->data, w->data, &d, dx_set, s, threads);
    return d.split ? d.split->rc : 0;
}

static void conv_describe(const tg_node *n, char *buf, size_t len) {
    const conv_attr *a = n->attr;
    snprintf(buf, len, "kernel=%dx%d stride=%d pad=%d dilation=%d groups=%d%s%s", n->in[1]->shape[2],
             n->in[1]->shape[3], a->stride, a->pad, a->dilation, a->groups, n->n_in > 2 ? " bias" : "",
             a->pool ? " pool=2x2" : "");
}

/* FLOPs: 2*(C/groups)*R*S multiply-adds for each of the N*K*H'*W' outputs, plus N*K*H'*W' bias adds
 * (and as many maxima with the ReLU epilogue, and with pooling max_pool2d's 4 compares per pooled output) */
static int64_t conv_flops(const tg_node *n) {
    tg__conv_dims d = dims_of(n);
    int64_t outputs = (int64_t)d.N * d.K * d.Ho * d.Wo; /* it and rows are below 2^31: no overflow */
    return 2 * d.rows * outputs + (n->n_in > 2 ? outputs : 0) + (fused_relu(n) ? outputs : 0) +
           (fused_pool(n) ? 4 * n->out->size : 0);
}

/* Backward FLOPs, for the gradients computed: dx and dW each the forward's multiply-adds (dx is the
 * transposed conv of dy, dW the correlation of dy with x), db one add per output, with the ReLU
 * epilogue one compare-select per output to mask dy, and with pooling max_pool2d's one add per pooled output */
static int64_t conv_flops_backward(const tg_node *n) {
    tg__conv_dims d = dims_of(n);
    int64_t outputs = (int64_t)d.N * d.K * d.Ho * d.Wo, macs = 2 * d.rows * outputs;
    return (n->in[0]->requires_grad ? macs : 0) + (n->in[1]->requires_grad ? macs : 0) +
           (n->n_in > 2 && n->in[2]->requires_grad ? outputs : 0) + (fused_relu(n) ? outputs : 0) +
           (fused_pool(n) ? n->out->size : 0);
}

/* with the ReLU epilogue: channels that are zero for every image */
static void conv_diagnose(const tg_node *n, char *buf, size_t len) {
    buf[0] = '\0';
    if (fused_relu(n)) tg__dead_units(n->out, buf, len);
}

/* with the ReLU epilogue: the ReLU's share of zeros, as relu's dump shows it (with pooling: of the
 * pooled output, whose zeros are the windows of four) */
static void conv_stats(const tg_node *n, char *buf, size_t len) {
    buf[0] = '\0';
    if (!fused_relu(n)) return;
    int64_t k = 0;
    for (int64_t i = 0; i < n->out->size; i++) k += n->out->data[i] == 0.0f;
    snprintf(buf, len, "zeros=%.1f%%", 100.0 * (double)k / (double)n->out->size);
}

/* The window over H, for the receptive field; with pooling, two conv rows a stride apart */
static void conv_window(const tg_node *n, int *span, int *stride, int *up) {
    const conv_attr *a = n->attr;
    *span = (int)((int64_t)(n->in[1]->shape[2] - 1) * a->dilation + 1); /* at most the padded input's height */
    *stride = a->stride;
    if (a->pool) *span += a->stride, *stride *= 2; /* the pooled output is at least 1 high: still in int */
    (void)up;
}

/* For tape dumps: "conv2d+relu", "conv2d+relu+maxpool" */
static const char *conv_variant(const tg_node *n) {
    return fused_pool(n) ? "relu+maxpool" : fused_relu(n) ? "relu" : NULL;
}

/* The batch norm this conv folds into its weights (tg_onnx_folding): the only reader of its output,
 * in evaluation, reading it as x only; else NULL (one in training mode then refuses in its own
 * callback, under its own layer). */
static const tg_node *fold_target(const tg_node *n, tg_onnx *g) {
    if (!tg_onnx_folding(g) || fused_relu(n)) return NULL;
    const tg_node *bn = tg_onnx_consumer(g, n->out);
    if (!bn || bn->op != &tg__op_batch_norm || bn->in[0] != n->out || (bn->n_in > 3 && bn->in[3] == n->out) ||
        !tg__batch_norm_affine(bn, NULL, NULL))
        return NULL;
    return bn;
}

/* w' = w * scale and b' = b * scale + shift per output channel: the conv then computes the batch norm's output */
static int fold(const tg_node *n, const tg_node *bn, tg_onnx *g, const char **w, const char **b) {
    const tg_tensor *wt = n->in[1], *bt = n->n_in > 2 ? n->in[2] : NULL;
    int64_t K = wt->shape[0], per = wt->size / K;
    float *scale = tg__malloc((size_t)(2 * K + wt->size + K) * sizeof(float));
    if (!scale) return tg_fail(TG_ERR_NOMEM, "conv2d: out of memory folding a batch norm");
    float *shift = scale + K, *wf = shift + K, *bf = wf + wt->size;
    int rc = 0;
    if (!tg__batch_norm_affine(bn, scale, shift)) {
        rc = tg_fail(TG_ERR_STATE, "conv2d: the batch norm after it is in training mode");
    } else {
        for (int64_t k = 0; k < K; k++) {
            for (int64_t i = 0; i < per; i++) wf[k * per + i] = wt->data[k * per + i] * scale[k];
            bf[k] = (bt ? bt->data[k] * scale[k] : 0.0f) + shift[k];
        }
        const int64_t dims[4] = {wt->shape[0], wt->shape[1], wt->shape[2], wt->shape[3]};
        *w = tg_onnx_const_floats(g, "weight_folded", 4, dims, wf);
        *b = *w ? tg_onnx_const_floats(g, "bias_folded", 1, &K, bf) : NULL;
        if (!*b || tg_onnx_mark(g, bn) < 0) rc = tg_last_error_code();
    }
    tg__free(scale);
    return rc;
}

/* Conv (then Relu when fused, then MaxPool); with folding, the batch norm after it goes into its weights */
static int conv_onnx(const tg_node *n, tg_onnx *g) {
    const conv_attr *a = n->attr;
    const tg_tensor *w = n->in[1];
    const tg_node *bn = fold_target(n, g);
    const char *in[3] = {tg_onnx_name(g, n->in[0]), NULL, NULL};
    int n_in = n->n_in, rc = 0;
    if (bn) {
        rc = fold(n, bn, g, &in[1], &in[2]);
        n_in = 3;
    } else {
        in[1] = tg_onnx_name(g, w);
        in[2] = n_in > 2 ? tg_onnx_name(g, n->in[2]) : "";
    }
    const char *y = NULL, *r = NULL, *p = NULL;
    if (!rc && a->pool) { /* Conv into y, Relu into r, MaxPool into the output */
        tg__conv_dims d = dims_of(n);
        const int shape[4] = {d.N, d.K, d.Ho, d.Wo};
        bool batched = tg_onnx_batched(g, n->out);
        y = tg_onnx_temp(g, n, "pre_relu", 4, shape, batched);
        r = y ? tg_onnx_temp(g, n, "relu", 4, shape, batched) : NULL;
        p = r ? tg_onnx_name(g, n->out) : NULL;
        if (!p) y = NULL;
    } else if (!rc) {
        y = tg__onnx_pre_relu(n, g, fused_relu(n));
    }
    if (!in[0] || !in[1] || !in[2] || !y) return rc ? rc : tg_last_error_code();
    rc = tg_onnx_node(g, "Conv", in, n_in, &y, 1);
    if (!rc) rc = tg__onnx_window(g, w->shape[2], w->shape[3], a->stride, a->pad, a->dilation);
    if (!rc) rc = tg_onnx_attr_int(g, "group", a->groups);
    if (!rc && a->pool) rc = tg_onnx_node(g, "Relu", &y, 1, &r, 1);
    else if (!rc && fused_relu(n)) rc = tg__onnx_relu(n, g, y);
    if (!rc && a->pool) rc = tg_onnx_node(g, "MaxPool", &r, 1, &p, 1);
    if (!rc && a->pool) rc = tg__onnx_window(g, 2, 2, 2, 0, 0);
    return rc;
}

const tg_op tg__op_conv2d = {.name = "conv2d", .attr_size = sizeof(conv_attr), .shape = conv_shape,
                             .forward = conv_forward, .vjp = conv_vjp, .describe = conv_describe,
                             .flops = conv_flops, .flops_backward = conv_flops_backward, .stats = conv_stats,
                             .diagnose = conv_diagnose, .window = conv_window, .variant = conv_variant,
                             .overwrites_grads = true, .onnx = conv_onnx, .batch_split = true};

tg_tensor *tg_conv2d_act(tg_tape *t, tg_tensor *x, tg_tensor *w, tg_tensor *b, int stride, int pad, int dilation,
                         int groups, tg_act act) {
    conv_attr a = {stride, pad, dilation, groups, act, false};
    return tg_apply(t, &tg__op_conv2d, (tg_tensor *[]){x, w, b}, b ? 3 : 2, &a);
}

tg_tensor *tg_conv2d_relu_max_pool(tg_tape *t, tg_tensor *x, tg_tensor *w, tg_tensor *b, int stride, int pad,
                                   int dilation, int groups) {
    conv_attr a = {stride, pad, dilation, groups, TG_ACT_RELU, true};
    return tg_apply(t, &tg__op_conv2d, (tg_tensor *[]){x, w, b}, b ? 3 : 2, &a);
}

bool tg__conv_pools(const tg_node *n) { return n->op == &tg__op_conv2d && fused_pool(n); }

tg_tensor *tg_conv2d(tg_tape *t, tg_tensor *x, tg_tensor *w, tg_tensor *b, int stride, int pad, int dilation,
                     int groups) {
    return tg_conv2d_act(t, x, w, b, stride, pad, dilation, groups, TG_ACT_NONE);
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
static tg__conv_dims convt_dims(const tg_node *n) {
    const convt_attr *a = n->attr;
    const tg_tensor *x = n->in[0], *w = n->in[1], *y = n->out;
    tg__conv_dims d = {x->shape[0], y->shape[1], y->shape[2], y->shape[3], x->shape[1], w->shape[2], w->shape[3],
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

// y = col2im(w^T x) + b
static int convt_forward(tg_tape *t, tg_node *n) {
    tg__conv_dims d = convt_dims(n);
    int threads;
    void *s = scratch(t, tg__conv_transpose2d_forward_scratch(&d, &threads));
    if (!s) return TG_ERR_NOMEM;
    n->kernel_forward = tg__conv_transpose2d_forward(n->out->data, n->in[0]->data, n->in[1]->data,
                                                     n->n_in > 2 ? n->in[2]->data : NULL, &d, s, threads);
    return 0;
}

// dx += w im2col(dy), dw += x im2col(dy)^T, db += sum of dy over N, H', W'
static int convt_vjp(tg_tape *t, tg_node *n) {
    tg__conv_dims d = convt_dims(n);
    tg_tensor *x = n->in[0], *w = n->in[1], *b = n->n_in > 2 ? n->in[2] : NULL;
    int threads;
    void *s = scratch(t, tg__conv_transpose2d_backward_scratch(&d, w->requires_grad, &threads));
    if (!s) return TG_ERR_NOMEM;
    n->kernel_backward = tg__conv_transpose2d_backward(x->requires_grad ? x->grad : NULL,
                                                       w->requires_grad ? w->grad : NULL,
                                                       b && b->requires_grad ? b->grad : NULL, n->out->grad, x->data,
                                                       w->data, &d, s, threads);
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
    tg__conv_dims d = convt_dims(n);
    return 2 * d.rows * n->in[0]->size + (n->n_in > 2 ? n->out->size : 0); /* each below 2^31: no overflow */
}

/* Backward FLOPs, for the gradients computed: dx (a conv2d of dy) and dW each the forward's
 * multiply-adds, db one add per output element */
static int64_t convt_flops_backward(const tg_node *n) {
    tg__conv_dims d = convt_dims(n);
    int64_t macs = 2 * d.rows * n->in[0]->size;
    return (n->in[0]->requires_grad ? macs : 0) + (n->in[1]->requires_grad ? macs : 0) +
           (n->n_in > 2 && n->in[2]->requires_grad ? n->out->size : 0);
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

/* ConvTranspose: the same weight layout (Cin, Cout/groups, R, S) and output size as ONNX's. ONNX
 * Runtime takes output_padding only below the stride; one below the dilation instead (ours takes
 * either) is the same as padding the end by that much less, which it takes when pad allows. */
static int convt_onnx(const tg_node *n, tg_onnx *g) {
    const convt_attr *a = n->attr;
    const tg_tensor *w = n->in[1];
    int op = a->output_padding;
    bool as_attr = op < a->stride;
    if (!as_attr && op > a->pad)
        return tg_fail(TG_ERR_ARG, "conv_transpose2d: output_padding %d is not below the stride %d, and above pad %d: "
                       "ONNX Runtime's ConvTranspose takes no such output_padding", op, a->stride, a->pad);
    int rc = tg__onnx_simple(n, g, "ConvTranspose");
    if (!rc) rc = tg_onnx_attr_ints(g, "kernel_shape", (const int64_t[]){w->shape[2], w->shape[3]}, 2);
    if (!rc) rc = tg_onnx_attr_ints(g, "strides", (const int64_t[]){a->stride, a->stride}, 2);
    if (!rc) rc = tg_onnx_attr_ints(g, "dilations", (const int64_t[]){a->dilation, a->dilation}, 2);
    int end = as_attr ? a->pad : a->pad - op;
    if (!rc) rc = tg_onnx_attr_ints(g, "pads", (const int64_t[]){a->pad, a->pad, end, end}, 4);
    if (!rc && as_attr && op) rc = tg_onnx_attr_ints(g, "output_padding", (const int64_t[]){op, op}, 2);
    if (!rc) rc = tg_onnx_attr_int(g, "group", a->groups);
    return rc;
}

const tg_op tg__op_conv_transpose2d = {.name = "conv_transpose2d", .attr_size = sizeof(convt_attr),
                                       .shape = convt_shape, .forward = convt_forward, .vjp = convt_vjp,
                                       .describe = convt_describe, .flops = convt_flops,
                                       .flops_backward = convt_flops_backward, .window = convt_window,
                                       .onnx = convt_onnx};

tg_tensor *tg_conv_transpose2d(tg_tape *t, tg_tensor *x, tg_tensor *w, tg_tensor *b, int stride, int pad,
                               int output_padding, int dilation, int groups) {
    convt_attr a = {stride, pad, output_padding, dilation, groups};
    return tg_apply(t, &tg__op_conv_transpose2d, (tg_tensor *[]){x, w, b}, b ? 3 : 2, &a);
}
