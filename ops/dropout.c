/* dropout.c: inverted dropout (scale kept units by 1/(1-p) in training) and the
 * older vanilla dropout (no scaling in training, scale by 1-p in evaluation).
 * p is the probability of dropping, as in PyTorch. */
#include "internal.h"
#include "kernels/kernels.h"
#include "ops.h"
#include <string.h>

typedef struct {
    float p;
    bool training;
} dropout_attr;

static int dropout_shape(tg_node *n, int *ndim, int *shape) {
    const dropout_attr *a = n->attr;
    if (!(a->p >= 0.0f && a->p <= 1.0f)) /* NaN fails too */
        return tg_fail(TG_ERR_ARG, "%s: p = %g is outside [0, 1] (p is the probability of dropping)", n->op->name,
                       (double)a->p);
    *ndim = n->in[0]->ndim;
    for (int i = 0; i < *ndim; i++) shape[i] = n->in[0]->shape[i];
    return 0;
}

/* The factor applied to kept units, in training and in evaluation. */
static float train_scale(const tg_node *n) {
    const dropout_attr *a = n->attr;
    if (n->op == &tg__op_dropout_vanilla) return 1.0f;
    return a->p < 1.0f ? 1.0f / (1.0f - a->p) : 0.0f;
}
static float eval_scale(const tg_node *n) {
    const dropout_attr *a = n->attr;
    return n->op == &tg__op_dropout_vanilla ? 1.0f - a->p : 1.0f;
}

// training: mask ~ Bernoulli(1-p), y = x * mask * scale; evaluation: y = x * eval_scale
static int dropout_forward(tg_tape *t, tg_node *n) {
    const dropout_attr *a = n->attr;
    const float *x = n->in[0]->data;
    float *y = n->out->data;
    int64_t size = n->out->size;
    if (!a->training) {
        float s = eval_scale(n);
        for (int64_t i = 0; i < size; i++) y[i] = x[i] * s;
        return 0;
    }
    /* the mask is made even when no gradient will read it (scratch then) */
    uint8_t *mask = n->record ? tg_node_save(t, n, (size_t)size, "mask") : tg_tape_alloc(t, (size_t)size);
    if (!mask) return TG_ERR_NOMEM;
    n->saved = n->record ? mask : NULL;
    /* One draw from the tape's generator per op, whatever the mode, so the same
     * seed gives the same mask. Element i keeps with probability 1-p by a hash
     * of (that draw, i): the same mask for any thread count. */
    uint64_t key = tg_rand_u64(tg_tape_rng(t));
    double keep = 1.0 - (double)a->p;
    uint32_t below = keep >= 1.0 ? 0 : (uint32_t)(keep * 4294967296.0);
    float s = train_scale(n);
    if (keep >= 1.0) { /* p = 0 keeps everything */
        for (int64_t i = 0; i < size; i++) y[i] = x[i] * s;
        memset(mask, 1, (size_t)size);
        return 0;
    }
    TG_FOR_BLOCKS(size, i, k) tg__dropout(y + i, mask + i, x + i, k, i, key, below, s);
    return 0;
}

// training: dx += dy * mask * scale; evaluation: dx += dy * eval_scale
static int dropout_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    const dropout_attr *a = n->attr;
    const float *dy = n->out->grad;
    float *dx = n->in[0]->grad;
    const uint8_t *mask = a->training ? n->saved : NULL;
    int64_t size = n->out->size;
    bool set = n->store[0]; /* dx holds nothing yet: store, don't add */
    float s = a->training ? train_scale(n) : eval_scale(n);
    TG_FOR_BLOCKS(size, i, k) tg__dropout_backward(dx + i, dy + i, mask ? mask + i : NULL, k, s, set);
    return 0;
}

static void dropout_describe(const tg_node *n, char *buf, size_t len) {
    const dropout_attr *a = n->attr;
    snprintf(buf, len, "p=%g %s", (double)a->p, a->training ? "train" : "eval");
}

/* FLOPs: one multiply per element, in training and in evaluation */
static int64_t dropout_flops(const tg_node *n) { return n->out->size; }

/* Backward FLOPs: one multiply per element (dy * mask * scale, the mask as a select) */

/* The fraction kept by the recorded mask (about 1-p) */
static void dropout_stats(const tg_node *n, char *buf, size_t len) {
    const uint8_t *mask = n->saved;
    int64_t kept = 0;
    buf[0] = '\0';
    if (!mask) return; /* evaluation: no mask */
    for (int64_t i = 0; i < n->out->size; i++) kept += mask[i];
    snprintf(buf, len, "kept=%.1f%%", 100.0 * (double)kept / (double)n->out->size);
}

/* In evaluation inverted dropout is the identity (no node), vanilla dropout a Mul by 1-p; a
 * dropout still training (a layer that ignores its flag) has no inference form */
static int dropout_onnx(const tg_node *n, tg_onnx *g) {
    const dropout_attr *a = n->attr;
    if (a->training)
        return tg_fail(TG_ERR_STATE, "%s: runs in training mode (p = %g), and an exported graph evaluates",
                       n->op->name, (double)a->p);
    float s = eval_scale(n);
    if (s == 1.0f) return tg_onnx_alias(g, n->out, n->in[0]);
    const char *in[2] = {tg_onnx_name(g, n->in[0]), tg_onnx_const_floats(g, "keep", 0, NULL, &s)};
    const char *y = tg_onnx_name(g, n->out);
    if (!in[0] || !in[1] || !y) return tg_last_error_code();
    return tg_onnx_node(g, "Mul", in, 2, &y, 1);
}

const tg_op tg__op_dropout = {.name = "dropout", .attr_size = sizeof(dropout_attr), .shape = dropout_shape,
                              .forward = dropout_forward, .vjp = dropout_vjp, .describe = dropout_describe,
                              .flops = dropout_flops, .flops_backward = dropout_flops, .stats = dropout_stats,
                              .overwrites_grads = true, .onnx = dropout_onnx};
const tg_op tg__op_dropout_vanilla = {.name = "dropout_vanilla", .attr_size = sizeof(dropout_attr),
                                      .shape = dropout_shape, .forward = dropout_forward, .vjp = dropout_vjp,
                                      .describe = dropout_describe, .flops = dropout_flops,
                                      .flops_backward = dropout_flops, .stats = dropout_stats,
                                      .overwrites_grads = true, .onnx = dropout_onnx};

tg_tensor *tg_dropout(tg_tape *t, tg_tensor *x, float p, bool training) {
    dropout_attr a = {p, training};
    return tg_apply(t, &tg__op_dropout, &x, 1, &a);
}

tg_tensor *tg_dropout_vanilla(tg_tape *t, tg_tensor *x, float p, bool training) {
    dropout_attr a = {p, training};
    return tg_apply(t, &tg__op_dropout_vanilla, &x, 1, &a);
}

const uint8_t *tg_dropout_mask(const tg_tensor *y) {
    if (!tg__tensor_current(y) || !y->node) return NULL;
    const tg_op *op = y->node->op;
    return op == &tg__op_dropout || op == &tg__op_dropout_vanilla ? y->node->saved : NULL;
}
