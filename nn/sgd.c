/* sgd.c: stochastic gradient descent as PyTorch 1.13's torch.optim.SGD, and
 * learning-rate schedules. */
#include "internal.h"
#include "kernels/kernels.h"
#include "nn_internal.h"
#include <math.h>
#include <stdatomic.h>
#include <string.h>

struct tg_sgd {
    tg_sgd_opts o;
    int n;
    tg_tensor **params;   /* borrowed */
    tg_tensor **state;    /* n momentum buffers (if momentum != 0), then the step count */
    int n_state;
    tg_tensor *steps;     /* a scalar: how many steps were taken (buffers are "None" before the first) */
    tg__blocks blocks;
};

static int check_lr(double lr) {
    if (!(lr >= 0) || !isfinite(lr)) return tg_fail(TG_ERR_ARG, "sgd: lr %g: must be finite and >= 0", lr);
    return 0;
}

static int cmp_ptr(const void *a, const void *b) {
    uintptr_t x = (uintptr_t) * (tg_tensor *const *)a, y = (uintptr_t) * (tg_tensor *const *)b;
    return x < y ? -1 : x > y;
}

int tg__check_params(const char *who, tg_tensor *const *params, int n) {
    if (!params || n < 1) return tg_fail(TG_ERR_ARG, "%s: no parameters", who);
    for (int i = 0; i < n; i++) {
        if (!params[i]) return tg_fail(TG_ERR_ARG, "%s: parameter %d is NULL", who, i);
        if (!params[i]->on_heap || !params[i]->grad)
            return tg_fail(TG_ERR_ARG, "%s: parameter %d (%s) is not a heap tensor with a gradient (tg_param_new)", who,
                           i, params[i]->name[0] ? params[i]->name : "unnamed");
    }
    tg_tensor **sorted = tg__malloc((size_t)n * sizeof *sorted);
    if (!sorted) return tg_fail(TG_ERR_NOMEM, "%s: out of memory", who);
    memcpy(sorted, params, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_ptr);
    int rc = 0;
    for (int i = 1; i < n && !rc; i++)
        if (sorted[i] == sorted[i - 1]) {
            int first = -1, second = -1;
            for (int k = 0; k < n && second < 0; k++)
                if (params[k] == sorted[i]) {
                    if (first < 0) first = k;
                    else second = k;
                }
            rc = tg_fail(TG_ERR_ARG, "%s: parameters %d and %d are the same tensor (%s): each may be listed once",
                         who, first, second, sorted[i]->name[0] ? sorted[i]->name : "unnamed");
        }
    tg__free(sorted);
    return rc;
}

tg_sgd *tg_sgd_new(tg_tensor *const *params, int n, tg_sgd_opts o) {
    if (!params || n < 1) {
        tg_fail(TG_ERR_ARG, "sgd: no parameters");
        return NULL;
    }
    if (check_lr(o.lr) < 0) return NULL;
    if (!(o.momentum >= 0) || !(o.weight_decay >= 0) || !(o.dampening >= 0 && o.dampening <= 1) ||
        !isfinite(o.momentum) || !isfinite(o.weight_decay)) {
        tg_fail(TG_ERR_ARG, "sgd: lr %g, momentum %g, weight_decay %g, dampening %g: need lr, momentum, "
                            "weight_decay finite and >= 0 and dampening in [0, 1]",
                o.lr, (double)o.momentum, (double)o.weight_decay, (double)o.dampening);
        return NULL;
    }
    if (o.nesterov && (o.momentum <= 0 || o.dampening != 0)) {
        tg_fail(TG_ERR_ARG, "sgd: nesterov momentum requires a momentum and zero dampening");
        return NULL;
    }
    if (tg__check_params("sgd", params, n) < 0) return NULL;
    tg_sgd *s = tg__calloc(1, sizeof *s);
    if (!s) goto oom;
    s->o = o;
    s->n = n;
    s->params = tg__malloc((size_t)n * sizeof *s->params);
    s->state = tg__calloc((size_t)n + 1, sizeof *s->state);
    if (!s->params || !s->state) goto oom;
    memcpy(s->params, params, (size_t)n * sizeof *s->params);
    if (tg__blocks_init(&s->blocks, params, n) < 0) goto oom;
    if (o.momentum != 0)
        for (int i = 0; i < n; i++) {
            tg_tensor *b = tg_tensor_new(params[i]->ndim, params[i]->shape);
            if (!b) goto oom;
            char name[sizeof params[i]->name + 4]; /* tg_tensor_set_name keeps the first 63 characters */
            snprintf(name, sizeof name, "sgd.%s", params[i]->name);
            tg_tensor_set_name(b, name);
            s->state[s->n_state++] = b;
        }
    if (!(s->steps = tg_tensor_new(1, (int[]){1}))) goto oom;
    tg_tensor_set_name(s->steps, "sgd.steps");
    s->state[s->n_state++] = s->steps;
    return s;
oom:
    tg_sgd_free(s);
    tg_fail(TG_ERR_NOMEM, "sgd: out of memory");
    return NULL;
}

void tg_sgd_free(tg_sgd *s) {
    if (!s) return;
    for (int i = 0; s->state && i < s->n_state; i++) tg_tensor_free(s->state[i]);
    tg__free(s->state);
    tg__free(s->params);
    tg__blocks_free(&s->blocks);
    tg__free(s);
}

int tg_sgd_step(tg_sgd *s) {
    if (!s) return tg_fail(TG_ERR_ARG, "sgd_step: optimizer is NULL");
    const tg_sgd_opts *o = &s->o;
    bool first = s->steps->data[0] == 0;
    _Atomic int bad = s->n; /* the first parameter whose gradient holds a NaN or an Inf */
    /* every element on its own: the same result for any thread count; the update's loop
     * (ops/kernels/elementwise.c) also returns the largest exponent of the gradients it read */
#pragma omp parallel for num_threads(tg__threads_for(s->blocks.elements, TG_MIN_PER_THREAD)) schedule(static)
    for (int64_t b = 0; b < s->blocks.n; b++) {
        int i = s->blocks.param[b];
        tg_tensor *p = s->params[i];
        if (!p->requires_grad) continue; /* frozen: PyTorch skips a parameter without a gradient */
        int64_t j = s->blocks.at[b], k = tg__block_len(&s->blocks, s->params, b);
        float *buf = o->momentum != 0 ? s->state[i]->data : NULL;
        uint32_t eb = tg__sgd_update(p->data + j, buf ? buf + j : NULL, p->grad + j, k, (float)o->lr, o->weight_decay,
                                     o->momentum, o->dampening, o->nesterov, first);
        if (eb == 0x7f800000u) tg__lower(&bad, i); /* a NaN or an Inf */
    }
    s->steps->data[0] += 1;
    int first_bad = atomic_load(&bad);
    return first_bad == s->n ? 0 : tg__nonfinite_grad("sgd", s->params[first_bad]);
}

int tg__nonfinite_grad(const char *who, const tg_tensor *p) {
    int64_t j = 0;
    while (j < p->size && isfinite(p->grad[j])) j++;
    if (j == p->size) j = 0;
    return tg_fail(TG_ERR_NONFINITE, "%s: the gradient of %s holds %s at element %lld; the step was taken, and the "
                   "weights it made are not to be trusted", who, p->name[0] ? p->name : "a parameter",
                   isnan(p->grad[j]) ? "NaN" : p->grad[j] > 0 ? "+Inf" : "-Inf", (long long)j);
}

void tg_sgd_zero_grad(tg_sgd *s) {
    if (s) tg__zero_grads(s->params, &s->blocks);
}

int tg__blocks_init(tg__blocks *b, tg_tensor *const *params, int n) {
    *b = (tg__blocks){0};
    for (int i = 0; i < n; i++) b->n += (params[i]->size + TG_BLOCK - 1) / TG_BLOCK, b->elements += params[i]->size;
    b->param = tg__malloc((size_t)b->n * sizeof *b->param);
    b->at = tg__malloc((size_t)b->n * sizeof *b->at);
    if (!b->param || !b->at) return TG_ERR_NOMEM;
    for (int64_t i = 0, k = 0; i < n; i++)
        for (int64_t j = 0; j < params[i]->size; j += TG_BLOCK, k++) b->param[k] = (int)i, b->at[k] = j;
    return 0;
}

void tg__blocks_free(tg__blocks *b) {
    tg__free(b->param);
    tg__free(b->at);
    *b = (tg__blocks){0};
}

void tg__lower(_Atomic int *first, int i) {
    int at = atomic_load(first);
    while (i < at && !atomic_compare_exchange_weak(first, &at, i)) {}
}

void tg__zero_grads(tg_tensor *const *params, const tg__blocks *b) {
#pragma omp parallel for num_threads(tg__threads_for(b->elements, TG_MIN_PER_THREAD)) schedule(static)
    for (int64_t i = 0; i < b->n; i++) {
        tg_tensor *p = params[b->param[i]];
        if (p->grad) memset(p->grad + b->at[i], 0, (size_t)tg__block_len(b, params, i) * sizeof(float));
    }
}

int tg_sgd_set_lr(tg_sgd *s, float lr) {
    if (!s) return tg_fail(TG_ERR_ARG, "sgd_set_lr: optimizer is NULL");
    if (check_lr(lr) < 0) return TG_ERR_ARG;
    s->o.lr = lr;
    return 0;
}

float tg_sgd_lr(const tg_sgd *s) { return s ? (float)s->o.lr : 0.0f; }

int tg_sgd_state(tg_sgd *s, tg_tensor ***state) {
    if (!s || !state) return tg_fail(TG_ERR_ARG, "sgd_state: %s is NULL", !s ? "optimizer" : "state");
    *state = s->state;
    return s->n_state;
}

// ----------------------------------------------------------------------------
// schedules

float tg_lr_step(float lr, int e, int step_size, float gamma) {
    return step_size > 0 ? lr * powf(gamma, (float)(e / step_size)) : lr;
}

float tg_lr_cosine(float lr, int e, int t_max, float eta_min) {
    if (t_max <= 0) return lr;
    return eta_min + (lr - eta_min) * (1.0f + cosf(3.14159265358979f * (float)e / (float)t_max)) / 2.0f;
}
