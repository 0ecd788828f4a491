/* norm.c: batch normalisation per channel over (N,C) or (N,C,...) inputs.
 * Training normalises with the batch statistics and updates the running ones;
 * evaluation uses the running statistics. The loops are in ops/kernels/norm.c.
 * Also layer normalisation. */
#include "internal.h"
#include "kernels/kernels.h"
#include "ops.h"
#include <math.h>
#include <string.h>

typedef struct {
    tg_tensor *running_mean, *running_var; /* heap tensors (C), may be NULL in training */
    bool training;
    float momentum, eps;
    tg_act act; /* TG_ACT_RELU: relu(batch_norm(x) [+ add]) as one node */
    bool pool;  /* and then 2x2 stride-2 max pooling (batch_norm+relu+max_pool2d; act is TG_ACT_RELU) */
} bn_attr;

typedef struct { /* what the VJP needs: the mean and rstd used, per channel (x-hat is recomputed from x) */
    float *mean, *rstd;
    float *batch; /* training: the batch mean, then the biased variance, per channel (for tape dumps) */
    int32_t *arg; /* with pooling: each window's argmax, as max_pool2d's */
} bn_saved;

/* x viewed as (N, C, L): L is the product of the dimensions after the channel. */
static void bn_dims(const tg_tensor *x, int64_t *N, int64_t *C, int64_t *L) {
    *N = x->shape[0];
    *C = x->shape[1];
    *L = 1;
    for (int i = 2; i < x->ndim; i++) *L *= x->shape[i];
}

static int bn_shape(tg_node *n, int *ndim, int *shape) {
    const bn_attr *a = n->attr;
    const tg_tensor *x = n->in[0], *g = n->in[1], *b = n->in[2], *sc = n->n_in > 3 ? n->in[3] : NULL;
    char sx[64], s2[64];
    tg_shape_str(x, sx, sizeof sx);
    if (sc && !tg_same_shape(x, sc))
        return tg_fail(TG_ERR_SHAPE, "%s: the added tensor has shape %s but x has %s", n->op->name,
                       tg_shape_str(sc, s2, sizeof s2), sx);
    if (x->ndim < 2) return tg_fail(TG_ERR_SHAPE, "%s: input must be (N,C) or (N,C,...), got %s", n->op->name, sx);
    int C = x->shape[1];
    const tg_tensor *per_channel[4] = {g, b, a->running_mean, a->running_var};
    const char *names[4] = {"gamma", "beta", "running_mean", "running_var"};
    for (int i = 0; i < 4; i++)
        if (per_channel[i] && (per_channel[i]->ndim != 1 || per_channel[i]->shape[0] != C))
            return tg_fail(TG_ERR_SHAPE, "%s: %s has shape %s but the input has %d channels (x %s)", n->op->name, names[i],
                           tg_shape_str(per_channel[i], s2, sizeof s2), C, sx);
    if (a->act != TG_ACT_NONE && a->act != TG_ACT_RELU)
        return tg_fail(TG_ERR_ARG, "%s: unknown activation %d", n->op->name, (int)a->act);
    if ((a->running_mean == NULL) != (a->running_var == NULL))
        return tg_fail(TG_ERR_ARG, "%s: give both running_mean and running_var, or neither", n->op->name);
    if (!a->training && !a->running_mean)
        return tg_fail(TG_ERR_ARG, "%s: evaluation needs running statistics", n->op->name);
    if (!(a->eps > 0.0f) || !(a->momentum >= 0.0f && a->momentum <= 1.0f))
        return tg_fail(TG_ERR_ARG, "%s: eps %g must be > 0 and momentum %g in [0, 1]", n->op->name, (double)a->eps,
                       (double)a->momentum);
    if (a->training && x->size / C < 2)
        return tg_fail(TG_ERR_SHAPE, "%s: training needs more than one value per channel (x %s)", n->op->name, sx);
    if (a->pool && (x->ndim != 4 || x->shape[2] < 2 || x->shape[3] < 2))
        return tg_fail(TG_ERR_SHAPE, "%s: pooling needs x (N,C,H,W) with H and W at least 2 (the 2x2 window), got %s",
                       n->op->name, sx);
    *ndim = x->ndim;
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    if (a->pool) shape[2] /= 2, shape[3] /= 2;
    return 0;
}

/* act relu: relu(batch_norm(x)) in one pass each way */
static bool fused_relu(const tg_node *n) { return ((const bn_attr *)n->attr)->act == TG_ACT_RELU; }
/* the optional add (the shortcut): act(batch_norm(x) + shortcut), the end of a v1 residual block; input 3 */
static tg_tensor *shortcut(const tg_node *n) { return n->n_in > 3 ? n->in[3] : NULL; }
/* with pooling: the output is each plane normalised into a buffer of the thread's, then pooled there;
 * backward unpools each plane's gradient into the buffer (the kernels' tg__bn_pool) */
static bool fused_pool(const tg_node *n) { return ((const bn_attr *)n->attr)->pool; }

static int pool_of(tg_tape *t, const tg_node *n, int32_t *arg, tg__bn_pool *p) {
    const tg_tensor *x = n->in[0];
    int64_t L = (int64_t)x->shape[2] * x->shape[3];
    *p = (tg__bn_pool){x->shape[2], x->shape[3], n->out->shape[2], n->out->shape[3], n->out->data, arg,
                       n->out->grad, tg_tape_alloc(t, (size_t)tg_get_threads() * TG_BN_POOL_PLANE(L) * sizeof(float))};
    return p->buf ? 0 : TG_ERR_NOMEM;
}

static int bn_forward(tg_tape *t, tg_node *n) {
    const bn_attr *a = n->attr;
    const tg_tensor *x = n->in[0];
    int64_t N, C, L;
    bn_dims(x, &N, &C, &L);
    tg__split sp, *split; /* across processes: the global batch's statistics (SyncBatchNorm) */
    if (tg__split_of(t, n->op->name, (int)N, &sp, &split) < 0) return TG_ERR_SHAPE;
    int64_t cnt = (split ? split->global : N) * L;
    bn_saved *sv = NULL;
    if (n->record) { /* saved bytes count the arrays the VJP reads; the struct and batch are bookkeeping */
        if (!(sv = tg_tape_alloc(t, sizeof *sv))) return TG_ERR_NOMEM;
        size_t arg = fused_pool(n) ? (size_t)n->out->size : 0;
        if (!(sv->mean = tg_node_save(t, n, 2 * (size_t)C * sizeof(float) + arg * sizeof(int32_t),
                                      arg ? "mean+rstd+argmax" : "mean+rstd")))
            return TG_ERR_NOMEM;
        sv->rstd = sv->mean + C;
        sv->arg = arg ? (int32_t *)(sv->rstd + C) : NULL;
        sv->batch = NULL;
        if (a->training && !(sv->batch = tg_tape_alloc(t, 2 * (size_t)C * sizeof(float)))) return TG_ERR_NOMEM;
    }
    n->saved = sv;
    float *mr = sv ? sv->mean : tg_tape_alloc(t, 2 * (size_t)C * sizeof(float)); /* mean, then rstd */
    double *part = tg_tape_alloc(t, 2 * (size_t)TG_BN_CHUNKS * C * sizeof(double));
    double *stat = tg_tape_alloc(t, 2 * (size_t)C * sizeof(double)); /* batch mean, then variance */
    if (!mr || !part || !stat) return TG_ERR_NOMEM;
    if (a->training) tg__bn_stats(stat, stat + C, part, x->data, N, C, L, split);
    if (split && split->rc) return split->rc;
    for (int64_t c = 0; c < C; c++) {
        double mean = a->training ? stat[c] : a->running_mean->data[c];
        double var = a->training ? stat[C + c] : a->running_var->data[c];
        if (a->training) {
            if (sv) sv->batch[c] = (float)mean, sv->batch[C + c] = (float)var;
            /* a batch holding NaN or Inf must not poison the running statistics */
            if (a->running_mean && isfinite(mean) && isfinite(var)) {
                float m = a->momentum;
                a->running_mean->data[c] = (1 - m) * a->running_mean->data[c] + m * (float)mean;
                a->running_var->data[c] = (1 - m) * a->running_var->data[c] + m * (float)(var * cnt / (cnt - 1));
            }
        }
        mr[c] = (float)mean, mr[C + c] = (float)(1.0 / sqrt(var + a->eps));
    }
    tg__bn_pool pool;
    if (fused_pool(n) && pool_of(t, n, sv ? sv->arg : NULL, &pool) < 0) return TG_ERR_NOMEM;
    tg__bn_forward(n->out->data, x->data, shortcut(n) ? shortcut(n)->data : NULL, mr, mr + C, n->in[1]->data,
                   n->in[2]->data, N, C, L, fused_relu(n), fused_pool(n) ? &pool : NULL);
    return 0;
}

// training: dx = (gamma*rstd/n) * (n*dy - sum(dy) - xhat*sum(dy*xhat)), the closed form
// evaluation: dx = gamma * rstd * dy (the statistics are constants)
// both: dgamma += sum(dy*xhat), dbeta += sum(dy)
static int bn_vjp(tg_tape *t, tg_node *n) {
    const bn_attr *a = n->attr;
    tg_tensor *x = n->in[0], *g = n->in[1], *bt = n->in[2];
    const bn_saved *sv = n->saved;
    const float *dy = n->out->grad, *mean = sv->mean, *rstd = sv->rstd;
    int64_t N, C, L;
    bn_dims(x, &N, &C, &L);
    tg__split sp, *split; /* across processes: the global batch's sums */
    if (tg__split_of(t, n->op->name, (int)N, &sp, &split) < 0) return TG_ERR_SHAPE;
    float cnt = (float)((split ? split->global : N) * L);
    double *part = tg_tape_alloc(t, 2 * (size_t)TG_BN_CHUNKS * C * sizeof(double));
    double *sums = tg_tape_alloc(t, 2 * (size_t)C * sizeof(double)); /* sum(dy), then sum(dy * (x - mean)) */
    float *coef = tg_tape_alloc(t, 4 * (size_t)C * sizeof(float));  /* per channel: kn, k1, s1, s2 */
    if (!part || !sums || !coef) return TG_ERR_NOMEM;
    for (int i = 1; i < 3; i++) /* gamma and beta are small: zero them if unset, then add */
        if (n->store[i])
            memset(n->in[i]->grad, 0, (size_t)n->in[i]->size * sizeof(float));
    tg_tensor *sct = shortcut(n);
    /* dy passes where the ReLU's output is not <= 0: without a shortcut that output is recomputed
     * from x (read anyway) with the forward's operations, instead of read; with pooling it is the
     * pooled value, which the unpooling reads */
    tg__bn_pool pool;
    if (fused_pool(n) && pool_of(t, n, sv->arg, &pool) < 0) return TG_ERR_NOMEM;
    const tg__bn_pool *pp = fused_pool(n) ? &pool : NULL;
    const float *yr = fused_relu(n) && sct && !pp ? n->out->data : NULL;
    float *rg = NULL; /* then per channel: rstd, gamma, beta */
    if (fused_relu(n) && !sct && !pp) {
        if (!(rg = tg_tape_alloc(t, 3 * (size_t)C * sizeof(float)))) return TG_ERR_NOMEM;
        for (int64_t c = 0; c < C; c++) rg[c] = rstd[c], rg[C + c] = g->data[c], rg[2 * C + c] = bt->data[c];
    }
    float *ds = sct && sct->requires_grad ? sct->grad : NULL; /* the shortcut's gradient: dy where not y <= 0 */
    /* store, don't add, into a gradient that holds nothing yet; the shortcut's is written first, so if the
     * shortcut is x itself (the engine marks x's first position) it stores and dx then adds to it */
    bool ds_set = ds && (n->store[3] || (sct == x && n->store[0]));
    bool set = n->store[0] && !(ds && sct == x);
    tg__bn_backward_sums(sums, sums + C, ds, part, dy, yr, x->data, mean, rg, N, C, L, ds_set, split, pp);
    if (split && split->rc) return split->rc;
    for (int64_t c = 0; c < C; c++) {
        double sdy = sums[c], sdyx = sums[C + c] * rstd[c]; /* sum dy * xhat */
        if (g->requires_grad) g->grad[c] += (float)sdyx;
        if (bt->requires_grad) bt->grad[c] += (float)sdy;
        /* training: dx = kn * (cnt*dy - s1 - xhat*s2); evaluation: dx = k * dy */
        float kk = g->data[c] * rstd[c];
        coef[c] = a->training ? kk / cnt : kk, coef[C + c] = a->training ? cnt : 1.0f;
        coef[2 * C + c] = a->training ? (float)sdy : 0.0f, coef[3 * C + c] = a->training ? (float)sdyx : 0.0f;
    }
    if (x->requires_grad) tg__bn_backward_dx(x->grad, dy, yr, x->data, coef, mean, rstd, rg, N, C, L, set, pp);
    return 0;
}

static void bn_describe(const tg_node *n, char *buf, size_t len) {
    const bn_attr *a = n->attr;
    snprintf(buf, len, "%s momentum=%g eps=%g", a->training ? "train" : "eval", (double)a->momentum, (double)a->eps);
}

/* FLOPs per element of x: training 8 (mean 1, variance 3, normalise 2, scale and shift 2), evaluation 4;
 * one more for a fused ReLU, one more for the shortcut's add; with pooling max_pool2d's 4 compares per
 * pooled output */
static int64_t bn_flops(const tg_node *n) {
    const bn_attr *a = n->attr;
    return ((a->training ? 8 : 4) + fused_relu(n) + (shortcut(n) != NULL)) * n->in[0]->size +
           (fused_pool(n) ? 4 * n->out->size : 0);
}

/* Backward FLOPs per element of x: the two sums, dy and dy*(x - mean) (4), then dx = kn*(k1*dy - s1 -
 * (x - mean)*rstd*s2) when x takes a gradient (7, in evaluation too: the same kernel with s1 = s2 = 0);
 * with the ReLU a compare-select on each pass that reads dy, and without a shortcut (or pooling,
 * whose unpooling masks by the pooled value) the ReLU's input recomputed from x first (4 more); the
 * shortcut's gradient is a copy of dy */
static int64_t bn_flops_backward(const tg_node *n) {
    bool dx = n->in[0]->requires_grad;
    int relu = fused_relu(n) ? (shortcut(n) || fused_pool(n) ? 1 : 5) : 0; /* per pass */
    return (4 + (dx ? 7 : 0) + relu * (1 + dx)) * n->in[0]->size;
}

/* Bytes of the vjp: two passes, the sums reading dy and x (and y with the ReLU and a shortcut, and
 * writing the shortcut's gradient; without a shortcut the ReLU is recomputed from x), then dx
 * reading them again; gamma, beta and the statistics are per channel */
static int64_t bn_bytes(const tg_node *n, bool backward) {
    if (!backward) return -1;
    const tg_tensor *x = n->in[0], *sc = shortcut(n);
    /* with pooling a pass reads x and, per pooled output, dy, the argmax and the pooled value */
    int64_t pass = fused_pool(n) ? 4 * x->size + 12 * n->out->size : (fused_relu(n) && sc ? 12 : 8) * x->size;
    int64_t b = pass;
    if (sc && sc->requires_grad) b += (n->store[3] ? 4 : 8) * sc->size;
    if (x->requires_grad) b += pass + (n->store[0] ? 4 : 8) * x->size;
    return b;
}

static void bn_diagnose(const tg_node *n, char *buf, size_t len) {
    buf[0] = '\0';
    if (fused_relu(n)) tg__dead_units(n->out, buf, len);
}

/* Training: the batch's statistics against the running ones (as they are after this batch's
 * update, what evaluation will use), averaged over channels */
static void bn_stats(const tg_node *n, char *buf, size_t len) {
    const bn_attr *a = n->attr;
    const bn_saved *sv = n->saved;
    int64_t C = n->in[0]->shape[1];
    buf[0] = '\0';
    if (fused_relu(n)) { /* the ReLU's share of zeros, as relu's dump shows it */
        int64_t k = 0;
        for (int64_t i = 0; i < n->out->size; i++) k += n->out->data[i] == 0.0f;
        size_t o = (size_t)snprintf(buf, len, "zeros=%.1f%%%s", 100.0 * (double)k / (double)n->out->size,
                                    sv && sv->batch ? " | " : "");
        buf += o < len ? o : len, len -= o < len ? o : len;
    }
    if (!sv || !sv->batch || !len) return;
    double m = 0, v = 0, dm = 0, rv = 0;
    for (int64_t c = 0; c < C; c++) {
        m += sv->batch[c], v += sv->batch[C + c];
        if (a->running_mean) {
            dm += fabs(sv->batch[c] - a->running_mean->data[c]);
            rv += sv->batch[C + c] / a->running_var->data[c];
        }
    }
    size_t o = (size_t)snprintf(buf, len, "batch mean=%.3g var=%.3g", m / C, v / C);
    if (a->running_mean && o < len)
        snprintf(buf + o, len - o, " |mean-running|=%.3g var/running=%.3g", dm / C, rv / C);
}

/* For tape dumps: "batch_norm+relu", "batch_norm+add+relu", "batch_norm+add", "batch_norm+relu+maxpool",
 * "batch_norm+add+relu+maxpool" */
static const char *bn_variant(const tg_node *n) {
    bool add = shortcut(n) != NULL;
    if (fused_pool(n)) return add ? "add+relu+maxpool" : "relu+maxpool";
    return fused_relu(n) ? (add ? "add+relu" : "relu") : (add ? "add" : NULL);
}

bool tg__bn_pools(const tg_node *n) { return n->op == &tg__op_batch_norm && fused_pool(n); }
const int32_t *tg__bn_argmax(const tg_node *n) { return n->saved ? ((const bn_saved *)n->saved)->arg : NULL; }

bool tg__batch_norm_affine(const tg_node *bn, float *scale, float *shift) {
    const bn_attr *a = bn->attr;
    if (a->training) return false;
    if (!scale || !shift) return true;
    const float *g = bn->in[1]->data, *b = bn->in[2]->data;
    for (int64_t c = 0; c < bn->in[1]->size; c++) {
        double s = g[c] / sqrt((double)a->running_var->data[c] + a->eps);
        scale[c] = (float)s, shift[c] = (float)(b[c] - a->running_mean->data[c] * s);
    }
    return true;
}

/* BatchNormalization with the running statistics (or nothing, folded into the conv before it),
 * then Add and Relu when fused, then MaxPool with pooling */
static int bn_onnx(const tg_node *n, tg_onnx *g) {
    const bn_attr *a = n->attr;
    if (a->training)
        return tg_fail(TG_ERR_STATE, "%s: runs in training mode (batch statistics), and an exported graph evaluates",
                       n->op->name);
    const tg_tensor *x = n->in[0];
    bool tail = shortcut(n) || fused_relu(n), batched = tg_onnx_batched(g, n->out);
    if (tg_onnx_marked(g, n) && !tail) return tg_onnx_alias(g, n->out, n->in[0]);
    const char *normed = tg_onnx_name(g, n->in[0]); /* already normalised when folded */
    if (!normed) return tg_last_error_code();
    int rc = 0;
    if (!tg_onnx_marked(g, n)) {
        const char *in[5] = {normed, tg_onnx_name(g, n->in[1]), tg_onnx_name(g, n->in[2]),
                             tg_onnx_name(g, a->running_mean), tg_onnx_name(g, a->running_var)};
        normed = tail ? tg_onnx_temp(g, n, "bn", x->ndim, x->shape, batched) : tg_onnx_name(g, n->out);
        if (!in[1] || !in[2] || !in[3] || !in[4] || !normed) return tg_last_error_code();
        rc = tg_onnx_node(g, "BatchNormalization", in, 5, &normed, 1);
        if (!rc) rc = tg_onnx_attr_float(g, "epsilon", a->eps);
    }
    if (!rc && shortcut(n)) {
        const char *in[2] = {normed, tg_onnx_name(g, shortcut(n))};
        const char *sum = fused_pool(n) ? tg_onnx_temp(g, n, "pre_relu", x->ndim, x->shape, batched)
                                        : tg__onnx_pre_relu(n, g, fused_relu(n));
        if (!in[1] || !sum) return tg_last_error_code();
        rc = tg_onnx_node(g, "Add", in, 2, &sum, 1);
        normed = sum;
    }
    if (!rc && fused_pool(n)) { /* Relu into r, MaxPool into the output */
        const char *r = tg_onnx_temp(g, n, "relu", x->ndim, x->shape, batched), *p = tg_onnx_name(g, n->out);
        if (!r || !p) return tg_last_error_code();
        rc = tg_onnx_node(g, "Relu", &normed, 1, &r, 1);
        if (!rc) rc = tg_onnx_node(g, "MaxPool", &r, 1, &p, 1);
        if (!rc) rc = tg__onnx_window(g, 2, 2, 2, 0, 0);
    } else if (!rc && fused_relu(n)) {
        rc = tg__onnx_relu(n, g, normed);
    }
    return rc;
}

const tg_op tg__op_batch_norm = {.name = "batch_norm", .attr_size = sizeof(bn_attr), .shape = bn_shape,
                                 .forward = bn_forward, .vjp = bn_vjp, .describe = bn_describe,
                                 .flops = bn_flops, .flops_backward = bn_flops_backward, .bytes = bn_bytes,
                                 .stats = bn_stats, .diagnose = bn_diagnose, .variant = bn_variant,
                                 .overwrites_grads = true, .onnx = bn_onnx, .batch_split = true};

static tg_tensor *bn_apply(tg_tape *t, tg_tensor *x, tg_tensor *gamma, tg_tensor *beta, tg_tensor *add,
                           const bn_attr *a) {
    const tg_op *op = &tg__op_batch_norm;
    if (x && (!gamma || !beta)) {
        tg_fail(TG_ERR_ARG, "%s: gamma and beta are required", op->name);
        return NULL;
    }
    /* the running statistics are attributes, not inputs: tg_apply does not see them */
    if (t && ((a->running_mean && tg__check_tensor(op->name, t, a->running_mean, "running_mean") < 0) ||
              (a->running_var && tg__check_tensor(op->name, t, a->running_var, "running_var") < 0)))
        return NULL;
    return tg_apply(t, op, (tg_tensor *[]){x, gamma, beta, add}, add ? 4 : 3, a);
}

/* act(batch_norm(x) + add), add may be NULL */
tg_tensor *tg_batch_norm_act(tg_tape *t, tg_tensor *x, tg_tensor *gamma, tg_tensor *beta, tg_tensor *running_mean,
                             tg_tensor *running_var, bool training, float momentum, float eps, tg_tensor *add,
                             tg_act act) {
    bn_attr a = {running_mean, running_var, training, momentum, eps, act, false};
    return bn_apply(t, x, gamma, beta, add, &a);
}

/* max_pool2d(relu(batch_norm(x) + add), 2, 2) as one op, add may be NULL */
tg_tensor *tg_batch_norm_relu_max_pool(tg_tape *t, tg_tensor *x, tg_tensor *gamma, tg_tensor *beta,
                                       tg_tensor *running_mean, tg_tensor *running_var, bool training, float momentum,
                                       float eps, tg_tensor *add) {
    bn_attr a = {running_mean, running_var, training, momentum, eps, TG_ACT_RELU, true};
    return bn_apply(t, x, gamma, beta, add, &a);
}

tg_tensor *tg_batch_norm(tg_tape *t, tg_tensor *x, tg_tensor *gamma, tg_tensor *beta, tg_tensor *running_mean,
                         tg_tensor *running_var, bool training, float momentum, float eps) {
    return tg_batch_norm_act(t, x, gamma, beta, running_mean, running_var, training, momentum, eps, NULL, TG_ACT_NONE);
}

// ----------------------------------------------------------------------------
// layer_norm: each row of the last D = gamma->size elements normalised on its own

typedef struct {
    float eps;
} ln_attr;

static int ln_shape(tg_node *n, int *ndim, int *shape) {
    const ln_attr *a = n->attr;
    const tg_tensor *x = n->in[0], *g = n->in[1], *b = n->in[2];
    char sx[64], sg[64], sb[64];
    tg_shape_str(x, sx, sizeof sx);
    int64_t D = g->size, tail = 1;
    bool fits = false;
    for (int i = x->ndim - 1; i >= 0 && !fits; i--) fits = (tail *= x->shape[i]) == D;
    if (!fits || b->size != D)
        return tg_fail(TG_ERR_SHAPE, "layer_norm: gamma %s and beta %s must hold the product of x's last dimensions "
                                     "(x %s)", tg_shape_str(g, sg, sizeof sg), tg_shape_str(b, sb, sizeof sb), sx);
    if (!(a->eps > 0)) return tg_fail(TG_ERR_ARG, "layer_norm: eps %g must be > 0", (double)a->eps);
    *ndim = x->ndim;
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    return 0;
}

typedef struct {
    float *rstd, *xhat;
} ln_saved;

// y = gamma * (x - mean) * rstd + beta, per row of D elements, biased variance
static int ln_forward(tg_tape *t, tg_node *n) {
    const ln_attr *a = n->attr;
    const tg_tensor *x = n->in[0];
    const float *g = n->in[1]->data, *b = n->in[2]->data;
    int64_t D = n->in[1]->size, rows = x->size / D;
    ln_saved *sv = NULL;
    if (n->record) {
        if (!(sv = tg_node_save(t, n, sizeof *sv, "xhat+rstd")) ||
            !(sv->rstd = tg_node_save(t, n, (size_t)rows * sizeof(float), "xhat+rstd")) ||
            !(sv->xhat = tg_node_save(t, n, (size_t)x->size * sizeof(float), "xhat+rstd")))
            return TG_ERR_NOMEM;
    }
    n->saved = sv;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x->data + r * D;
        double s = 0, ss = 0;
        for (int64_t j = 0; j < D; j++) s += xr[j];
        double mean = s / (double)D;
        for (int64_t j = 0; j < D; j++) ss += (xr[j] - mean) * (xr[j] - mean);
        float rstd = (float)(1.0 / sqrt(ss / (double)D + a->eps)), mu = (float)mean;
        if (sv) sv->rstd[r] = rstd;
        for (int64_t j = 0; j < D; j++) {
            float xh = (xr[j] - mu) * rstd;
            if (sv) sv->xhat[r * D + j] = xh;
            n->out->data[r * D + j] = g[j] * xh + b[j];
        }
    }
    return 0;
}

// dxhat = dy * gamma; dx = (rstd/D) (D dxhat - sum(dxhat) - xhat sum(dxhat xhat));
// dgamma += sum over rows of dy * xhat; dbeta += sum over rows of dy
static int ln_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    tg_tensor *x = n->in[0], *g = n->in[1], *b = n->in[2];
    const ln_saved *sv = n->saved;
    const float *dy = n->out->grad;
    int64_t D = g->size, rows = x->size / D;
    for (int64_t r = 0; r < rows; r++) {
        const float *xh = sv->xhat + r * D, *d = dy + r * D;
        double s1 = 0, s2 = 0;
        for (int64_t j = 0; j < D; j++) {
            float dxh = d[j] * g->data[j];
            s1 += dxh, s2 += dxh * xh[j];
            if (g->requires_grad) g->grad[j] += d[j] * xh[j];
            if (b->requires_grad) b->grad[j] += d[j];
        }
        if (!x->requires_grad) continue;
        float k = sv->rstd[r] / (float)D;
        for (int64_t j = 0; j < D; j++)
            x->grad[r * D + j] += k * ((float)D * d[j] * g->data[j] - (float)s1 - xh[j] * (float)s2);
    }
    return 0;
}

static void ln_describe(const tg_node *n, char *buf, size_t len) {
    snprintf(buf, len, "normalized=%lld eps=%g", (long long)n->in[1]->size, (double)((const ln_attr *)n->attr)->eps);
}

/* FLOPs: 8 per element, as batch norm's training (mean 1, variance 3, normalise 2, scale and shift 2) */
static int64_t ln_flops(const tg_node *n) { return 8 * n->out->size; }

/* Backward FLOPs per element: dy*gamma and the two sums (4); dgamma's multiply-add (2) and dbeta's add
 * (1) when they take gradients; dx += k*(D*dy*gamma - s1 - xhat*s2) when x does (7) */
static int64_t ln_flops_backward(const tg_node *n) {
    return (4 + 2 * n->in[1]->requires_grad + n->in[2]->requires_grad + 7 * n->in[0]->requires_grad) * n->out->size;
}

/* LayerNormalization over the last dimensions whose product is gamma's size; gamma and beta
 * reshaped to those dimensions when they are shaped otherwise (ONNX broadcasts them) */
static int ln_onnx(const tg_node *n, tg_onnx *g) {
    const ln_attr *a = n->attr;
    const tg_tensor *x = n->in[0], *gm = n->in[1];
    int axis = x->ndim - 1;
    for (int64_t tail = x->shape[axis]; tail != gm->size && axis > 0;) tail *= x->shape[--axis];
    if (axis == 0 && tg_onnx_batched(g, x)) {
        char sx[64];
        return tg_fail(TG_ERR_SHAPE,
                       "layer_norm: normalises over the batch too (gamma's %lld values cover x %s from dimension 0), "
                       "and the exported graph's batch is symbolic",
                       (long long)gm->size, tg_shape_str(x, sx, sizeof sx));
    }
    bool same = gm->ndim == x->ndim - axis && n->in[2]->ndim == gm->ndim;
    for (int i = 0; same && i < gm->ndim; i++) same = gm->shape[i] == x->shape[axis + i] && n->in[2]->shape[i] == gm->shape[i];
    const char *in[3] = {tg_onnx_name(g, x), tg_onnx_name(g, gm), tg_onnx_name(g, n->in[2])};
    const char *y = tg_onnx_name(g, n->out);
    if (!in[0] || !in[1] || !in[2] || !y) return tg_last_error_code();
    int rc = 0;
    if (!same) {
        int64_t dims[TG_MAX_DIMS], nd = x->ndim - axis;
        int tail[TG_MAX_DIMS];
        for (int i = 0; i < nd; i++) dims[i] = tail[i] = x->shape[axis + i];
        const char *shape = tg_onnx_const_int64s(g, "norm_shape", 1, &nd, dims);
        for (int k = 1; k < 3 && !rc; k++) {
            const char *r[2] = {in[k], shape}, *o = tg_onnx_temp(g, n, k == 1 ? "gamma" : "beta", (int)nd, tail, false);
            if (!shape || !o) return tg_last_error_code();
            rc = tg_onnx_node(g, "Reshape", r, 2, &o, 1);
            in[k] = o;
        }
    }
    if (!rc) rc = tg_onnx_node(g, "LayerNormalization", in, 3, &y, 1);
    if (!rc) rc = tg_onnx_attr_int(g, "axis", axis);
    if (!rc) rc = tg_onnx_attr_float(g, "epsilon", a->eps);
    return rc;
}

const tg_op tg__op_layer_norm = {.name = "layer_norm", .attr_size = sizeof(ln_attr), .shape = ln_shape,
                                 .forward = ln_forward, .vjp = ln_vjp, .describe = ln_describe,
                                 .flops = ln_flops, .flops_backward = ln_flops_backward, .onnx = ln_onnx};

tg_tensor *tg_layer_norm(tg_tape *t, tg_tensor *x, tg_tensor *gamma, tg_tensor *beta, float eps) {
    ln_attr a = {eps};
    if (x && (!gamma || !beta)) {
        tg_fail(TG_ERR_ARG, "layer_norm: gamma and beta are required");
        return NULL;
    }
    return tg_apply(t, &tg__op_layer_norm, (tg_tensor *[]){x, gamma, beta}, 3, &a);
}
