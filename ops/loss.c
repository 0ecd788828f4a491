/* loss.c: fused, numerically stable log-softmax + cross-entropy; softmax on its own; mean squared error. */
#include "internal.h"
#include "ops.h"
#include <math.h>
#include <string.h>

typedef struct {
    const int32_t *labels; /* a copy in the tape's arena */
} ce_attr;

static int ce_shape(tg_node *n, int *ndim, int *shape) {
    const tg_tensor *x = n->in[0];
    const ce_attr *a = n->attr;
    char s[64];
    (void)shape;
    if (x->ndim != 2)
        return tg_fail(TG_ERR_SHAPE, "cross_entropy: logits must be (N,C), got %s", tg_shape_str(x, s, sizeof s));
    if (!a->labels) return tg_fail(TG_ERR_ARG, "cross_entropy: labels are NULL");
    for (int i = 0; i < x->shape[0]; i++)
        if (a->labels[i] < 0 || a->labels[i] >= x->shape[1])
            return tg_fail(TG_ERR_ARG, "cross_entropy: label %d of sample %d is outside [0, %d) (logits %s)",
                           (int)a->labels[i], i, x->shape[1], tg_shape_str(x, s, sizeof s));
    *ndim = 0;
    return 0;
}

// loss = mean_i (log sum_j e^x[i,j] - x[i,label_i]), computed with the row max subtracted
static int ce_forward(tg_tape *t, tg_node *n) {
    const tg_tensor *x = n->in[0];
    const ce_attr *a = n->attr;
    int N = x->shape[0], C = x->shape[1];
    float *p = n->record ? tg_node_save(t, n, (size_t)N * C * sizeof(float), "softmax") : NULL;
    if (n->record && !p) return TG_ERR_NOMEM;
    double total = 0;
    for (int i = 0; i < N; i++) {
        const float *row = x->data + (size_t)i * C;
        float mx = row[0];
        for (int j = 1; j < C; j++) mx = row[j] > mx ? row[j] : mx;
        double s = 0;
        for (int j = 0; j < C; j++) s += exp((double)(row[j] - mx));
        double lse = log(s) + mx;
        total += lse - row[a->labels[i]];
        if (p)
            for (int j = 0; j < C; j++) p[(size_t)i * C + j] = (float)exp(row[j] - lse);
    }
    n->saved = p;
    n->out->data[0] = (float)(total / N);
    return 0;
}

// dx[i,j] += dy / N * (softmax[i,j] - (j == label_i))
static int ce_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    tg_tensor *x = n->in[0];
    const ce_attr *a = n->attr;
    int N = x->shape[0], C = x->shape[1];
    const float *p = n->saved;
    float g = n->out->grad[0] / (float)N;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < C; j++)
            x->grad[(size_t)i * C + j] += g * (p[(size_t)i * C + j] - (j == a->labels[i] ? 1.0f : 0.0f));
    return 0;
}

static void ce_describe(const tg_node *n, char *buf, size_t len) {
    snprintf(buf, len, "classes=%d reduction=mean", n->in[0]->ndim == 2 ? n->in[0]->shape[1] : 0);
}

/* FLOPs: 4 per logit (the row max, subtract, exp, sum); the per-row log and pick are not counted */
static int64_t ce_flops(const tg_node *n) { return 4 * n->in[0]->size; }

/* The loss and the batch's accuracy (a row is right when its largest logit is the label's) */
static void ce_stats(const tg_node *n, char *buf, size_t len) {
    const tg_tensor *x = n->in[0];
    const ce_attr *a = n->attr;
    int N = x->shape[0], C = x->shape[1], right = 0;
    for (int i = 0; i < N; i++) {
        const float *row = x->data + (size_t)i * C;
        int best = 0;
        for (int j = 1; j < C; j++) best = row[j] > row[best] ? j : best;
        right += best == a->labels[i];
    }
    snprintf(buf, len, "loss=%.4f acc=%.1f%%", (double)n->out->data[0], 100.0 * right / N);
}

/* Backward FLOPs: 3 per logit, dx += g * (softmax - onehot): a subtract, a multiply, the add */
static int64_t ce_flops_backward(const tg_node *n) { return 3 * n->in[0]->size; }

/* A loss is training's, not inference's: the exported graph ends at what the loss reads */
static int loss_onnx(const tg_node *n, tg_onnx *g) {
    (void)g;
    return tg_fail(TG_ERR_ARG, "%s: a loss is not part of an inference graph (export the model, not its loss)",
                   n->op->name);
}

const tg_op tg__op_cross_entropy = {.name = "cross_entropy", .attr_size = sizeof(ce_attr), .shape = ce_shape,
                                    .forward = ce_forward, .vjp = ce_vjp, .describe = ce_describe,
                                    .flops = ce_flops, .flops_backward = ce_flops_backward, .stats = ce_stats,
                                    .onnx = loss_onnx};

tg_tensor *tg_cross_entropy(tg_tape *t, tg_tensor *logits, const int32_t *labels) {
    ce_attr a = {NULL};
    if (t && logits && tg__check_tensor("cross_entropy", t, logits, "input 0") < 0) return NULL;
    if (t && logits && labels && logits->ndim >= 1) {
        size_t bytes = (size_t)logits->shape[0] * sizeof(int32_t);
        int32_t *copy = tg_tape_alloc(t, bytes);
        if (!copy) return NULL;
        memcpy(copy, labels, bytes);
        a.labels = copy;
    }
    return tg_apply(t, &tg__op_cross_entropy, &logits, 1, &a);
}

// ----------------------------------------------------------------------------
// softmax over the last dimension: torch.softmax(x, dim=-1)

static int softmax_shape(tg_node *n, int *ndim, int *shape) {
    const tg_tensor *x = n->in[0];
    if (x->ndim < 1)
        return tg_fail(TG_ERR_SHAPE, "softmax: input 0 is a scalar; it needs a last dimension to normalise over");
    *ndim = x->ndim;
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    return 0;
}

/* y = e^(x - max) / sum e^(x - max), a row at a time: the largest term is 1, so nothing
 * overflows. NaN or +Inf in a row, or a row of -Inf only, make every term NaN (as PyTorch). */
static int softmax_forward(tg_tape *t, tg_node *n) {
    (void)t;
    int C = n->in[0]->shape[n->in[0]->ndim - 1];
    for (int64_t r = 0; r < n->out->size / C; r++) {
        const float *x = n->in[0]->data + r * C;
        float *y = n->out->data + r * C, mx = x[0];
        for (int j = 1; j < C; j++) mx = x[j] > mx ? x[j] : mx;
        double s = 0;
        for (int j = 0; j < C; j++) {
            y[j] = expf(x[j] - mx);
            s += y[j];
        }
        float inv = (float)(1.0 / s);
        for (int j = 0; j < C; j++) y[j] *= inv;
    }
    return 0;
}

// dx (=, +=) y * (dy - sum_j dy_j y_j), per row
static int softmax_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    int C = n->out->shape[n->out->ndim - 1];
    bool set = n->store[0]; /* dx holds nothing yet: store, don't add */
    for (int64_t r = 0; r < n->out->size / C; r++) {
        const float *y = n->out->data + r * C, *dy = n->out->grad + r * C;
        float *dx = n->in[0]->grad + r * C;
        double dot = 0;
        for (int j = 0; j < C; j++) dot += (double)dy[j] * y[j];
        for (int j = 0; j < C; j++) {
            float g = y[j] * (dy[j] - (float)dot);
            dx[j] = set ? g : dx[j] + g;
        }
    }
    return 0;
}

/* FLOPs: 4 per element (the row max, subtract and exp, sum, scale) */
static int64_t softmax_flops(const tg_node *n) { return 4 * n->out->size; }

/* Backward FLOPs: 4 per element, the row's dot of dy and y (a multiply-add) and y * (dy - dot) */
static int64_t softmax_flops_backward(const tg_node *n) { return 4 * n->out->size; }

static int softmax_onnx(const tg_node *n, tg_onnx *g) {
    int rc = tg__onnx_simple(n, g, "Softmax");
    return rc ? rc : tg_onnx_attr_int(g, "axis", -1);
}

const tg_op tg__op_softmax = {.name = "softmax", .shape = softmax_shape, .forward = softmax_forward,
                              .vjp = softmax_vjp, .flops = softmax_flops, .flops_backward = softmax_flops_backward,
                              .overwrites_grads = true, .onnx = softmax_onnx};

tg_tensor *tg_softmax(tg_tape *t, tg_tensor *x) { return tg_apply(t, &tg__op_softmax, &x, 1, NULL); }

// ----------------------------------------------------------------------------
// mse_loss: mean((pred - target)^2) over every element

static int mse_shape(tg_node *n, int *ndim, int *shape) {
    char sp[64], st[64];
    (void)shape;
    if (!tg_same_shape(n->in[0], n->in[1]))
        return tg_fail(TG_ERR_SHAPE, "mse_loss: prediction %s and target %s differ",
                       tg_shape_str(n->in[0], sp, sizeof sp), tg_shape_str(n->in[1], st, sizeof st));
    *ndim = 0;
    return 0;
}

static int mse_forward(tg_tape *t, tg_node *n) {
    (void)t;
    const float *p = n->in[0]->data, *q = n->in[1]->data;
    double s = 0;
    for (int64_t i = 0; i < n->in[0]->size; i++) s += (double)(p[i] - q[i]) * (p[i] - q[i]);
    n->out->data[0] = (float)(s / (double)n->in[0]->size);
    return 0;
}

// dpred += 2 (pred - target) / size * dy, dtarget -= the same
static int mse_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    tg_tensor *p = n->in[0], *q = n->in[1];
    float k = 2.0f * n->out->grad[0] / (float)p->size;
    for (int64_t i = 0; i < p->size; i++) {
        float g = k * (p->data[i] - q->data[i]);
        if (p->requires_grad) p->grad[i] += g;
        if (q->requires_grad) q->grad[i] -= g;
    }
    return 0;
}

/* FLOPs: 3 per element (subtract, square, add) */
static int64_t mse_flops(const tg_node *n) { return 3 * n->in[0]->size; }

/* Backward FLOPs per element: k * (pred - target) (2), then the add into each gradient computed */
static int64_t mse_flops_backward(const tg_node *n) {
    return (2 + n->in[0]->requires_grad + n->in[1]->requires_grad) * n->in[0]->size;
}

const tg_op tg__op_mse_loss = {.name = "mse_loss", .shape = mse_shape, .forward = mse_forward, .vjp = mse_vjp,
                               .flops = mse_flops, .flops_backward = mse_flops_backward, .onnx = loss_onnx};

tg_tensor *tg_mse_loss(tg_tape *t, tg_tensor *pred, tg_tensor *target) {
    return tg_apply(t, &tg__op_mse_loss, (tg_tensor *[]){pred, target}, 2, NULL);
}
