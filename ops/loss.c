/* loss.c: fused, numerically stable log-softmax + cross-entropy. */
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

const tg_op tg__op_cross_entropy = {.name = "cross_entropy", .attr_size = sizeof(ce_attr), .shape = ce_shape,
                                    .forward = ce_forward, .vjp = ce_vjp, .describe = ce_describe};

tg_tensor *tg_cross_entropy(tg_tape *t, tg_tensor *logits, const int32_t *labels) {
    ce_attr a = {NULL};
    if (t && logits && labels && logits->ndim >= 1) {
        size_t bytes = (size_t)logits->shape[0] * sizeof(int32_t);
        int32_t *copy = tg_tape_alloc(t, bytes);
        if (!copy) return NULL;
        memcpy(copy, labels, bytes);
        a.labels = copy;
    }
    return tg_apply(t, &tg__op_cross_entropy, &logits, 1, &a);
}
