/* norm.c: batch normalisation per channel over (N,C) or (N,C,...) inputs.
 * Training normalises with the batch statistics and updates the running ones;
 * evaluation uses the running statistics. */
#include "internal.h"
#include "ops.h"
#include <math.h>

typedef struct {
    tg_tensor *running_mean, *running_var; /* heap tensors (C), may be NULL in training */
    bool training;
    float momentum, eps;
} bn_attr;

typedef struct { /* what the VJP needs: rstd per channel, and x-hat in training */
    float *rstd, *xhat;
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
    const tg_tensor *x = n->in[0], *g = n->in[1], *b = n->in[2];
    char sx[64], s2[64];
    tg_shape_str(x, sx, sizeof sx);
    if (x->ndim < 2) return tg_fail(TG_ERR_SHAPE, "batch_norm: input must be (N,C) or (N,C,...), got %s", sx);
    int C = x->shape[1];
    const tg_tensor *per_channel[4] = {g, b, a->running_mean, a->running_var};
    const char *names[4] = {"gamma", "beta", "running_mean", "running_var"};
    for (int i = 0; i < 4; i++)
        if (per_channel[i] && (per_channel[i]->ndim != 1 || per_channel[i]->shape[0] != C))
            return tg_fail(TG_ERR_SHAPE, "batch_norm: %s has shape %s but the input has %d channels (x %s)", names[i],
                           tg_shape_str(per_channel[i], s2, sizeof s2), C, sx);
    if ((a->running_mean == NULL) != (a->running_var == NULL))
        return tg_fail(TG_ERR_ARG, "batch_norm: give both running_mean and running_var, or neither");
    if (!a->training && !a->running_mean)
        return tg_fail(TG_ERR_ARG, "batch_norm: evaluation needs running statistics");
    if (!(a->eps > 0.0f) || !(a->momentum >= 0.0f && a->momentum <= 1.0f))
        return tg_fail(TG_ERR_ARG, "batch_norm: eps %g must be > 0 and momentum %g in [0, 1]", (double)a->eps,
                       (double)a->momentum);
    if (a->training && x->size / C < 2)
        return tg_fail(TG_ERR_SHAPE, "batch_norm: training needs more than one value per channel (x %s)", sx);
    *ndim = x->ndim;
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    return 0;
}

static int bn_forward(tg_tape *t, tg_node *n) {
    const bn_attr *a = n->attr;
    const tg_tensor *x = n->in[0];
    const float *gamma = n->in[1]->data, *beta = n->in[2]->data;
    int64_t N, C, L;
    bn_dims(x, &N, &C, &L);
    int64_t cnt = N * L;
    bn_saved *sv = NULL;
    if (n->record) {
        if (!(sv = tg_node_save(t, n, sizeof *sv, "rstd"))) return TG_ERR_NOMEM;
        if (!(sv->rstd = tg_node_save(t, n, (size_t)C * sizeof(float), "rstd"))) return TG_ERR_NOMEM;
        sv->xhat = NULL;
        if (a->training && !(sv->xhat = tg_node_save(t, n, (size_t)x->size * sizeof(float), "xhat+rstd")))
            return TG_ERR_NOMEM;
    }
    n->saved = sv;
    for (int64_t c = 0; c < C; c++) {
        double mean, var;
        if (a->training) { /* two passes in double: mean, then the biased variance */
            double s = 0, ss = 0;
            for (int64_t i = 0; i < N; i++)
                for (int64_t l = 0; l < L; l++) s += x->data[(i * C + c) * L + l];
            mean = s / (double)cnt;
            for (int64_t i = 0; i < N; i++)
                for (int64_t l = 0; l < L; l++) {
                    double d = x->data[(i * C + c) * L + l] - mean;
                    ss += d * d;
                }
            var = ss / (double)cnt;
            if (a->running_mean) {
                float m = a->momentum;
                a->running_mean->data[c] = (1 - m) * a->running_mean->data[c] + m * (float)mean;
                a->running_var->data[c] = (1 - m) * a->running_var->data[c] + m * (float)(var * cnt / (cnt - 1));
            }
        } else {
            mean = a->running_mean->data[c];
            var = a->running_var->data[c];
        }
        float rstd = (float)(1.0 / sqrt(var + a->eps)), mu = (float)mean;
        if (sv) sv->rstd[c] = rstd;
        for (int64_t i = 0; i < N; i++)
            for (int64_t l = 0; l < L; l++) {
                int64_t j = (i * C + c) * L + l;
                float xh = (x->data[j] - mu) * rstd;
                if (sv && sv->xhat) sv->xhat[j] = xh;
                n->out->data[j] = gamma[c] * xh + beta[c];
            }
    }
    return 0;
}

// training: dx = (gamma*rstd/n) * (n*dy - sum(dy) - xhat*sum(dy*xhat)), the closed form
// evaluation: dx = gamma * rstd * dy (the statistics are constants)
// both: dgamma += sum(dy*xhat), dbeta += sum(dy)
static int bn_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    const bn_attr *a = n->attr;
    tg_tensor *x = n->in[0], *g = n->in[1], *b = n->in[2];
    const bn_saved *sv = n->saved;
    const float *dy = n->out->grad;
    int64_t N, C, L;
    bn_dims(x, &N, &C, &L);
    float cnt = (float)(N * L);
    for (int64_t c = 0; c < C; c++) {
        float rstd = sv->rstd[c], mu = a->training ? 0.0f : a->running_mean->data[c];
        double sdy = 0, sdyx = 0;
        for (int64_t i = 0; i < N; i++)
            for (int64_t l = 0; l < L; l++) {
                int64_t j = (i * C + c) * L + l;
                float xh = a->training ? sv->xhat[j] : (x->data[j] - mu) * rstd;
                sdy += dy[j];
                sdyx += dy[j] * xh;
            }
        if (g->requires_grad) g->grad[c] += (float)sdyx;
        if (b->requires_grad) b->grad[c] += (float)sdy;
        if (!x->requires_grad) continue;
        float k = g->data[c] * rstd;
        if (!a->training) {
            for (int64_t i = 0; i < N; i++)
                for (int64_t l = 0; l < L; l++) x->grad[(i * C + c) * L + l] += k * dy[(i * C + c) * L + l];
            continue;
        }
        float s1 = (float)sdy, s2 = (float)sdyx, kn = k / cnt;
        for (int64_t i = 0; i < N; i++)
            for (int64_t l = 0; l < L; l++) {
                int64_t j = (i * C + c) * L + l;
                x->grad[j] += kn * (cnt * dy[j] - s1 - sv->xhat[j] * s2);
            }
    }
    return 0;
}

static void bn_describe(const tg_node *n, char *buf, size_t len) {
    const bn_attr *a = n->attr;
    snprintf(buf, len, "%s momentum=%g eps=%g", a->training ? "train" : "eval", (double)a->momentum, (double)a->eps);
}

const tg_op tg__op_batch_norm = {.name = "batch_norm", .attr_size = sizeof(bn_attr), .shape = bn_shape,
                                 .forward = bn_forward, .vjp = bn_vjp, .describe = bn_describe};

tg_tensor *tg_batch_norm(tg_tape *t, tg_tensor *x, tg_tensor *gamma, tg_tensor *beta, tg_tensor *running_mean,
                         tg_tensor *running_var, bool training, float momentum, float eps) {
    bn_attr a = {running_mean, running_var, training, momentum, eps};
    if (x && (!gamma || !beta)) {
        tg_fail(TG_ERR_ARG, "batch_norm: gamma and beta are required");
        return NULL;
    }
    return tg_apply(t, &tg__op_batch_norm, (tg_tensor *[]){x, gamma, beta}, 3, &a);
}
