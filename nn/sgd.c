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
    /* every parameter's elements by blocks of TG_BLOCK, in order: a step and zero_grad are one
     * parallel loop over them all (a loop a tensor cost 1.5 us to enter, forty a resnet step) */
    int64_t n_blocks, n_elements;
    int *block_param;
    int64_t *block_at;
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
    for (int i = 0; i < n; i++)
        s->n_blocks += (params[i]->size + TG_BLOCK - 1) / TG_BLOCK, s->n_elements += params[i]->size;
    s->block_param = tg__malloc((size_t)s->n_blocks * sizeof *s->block_param);
    s->block_at = tg__malloc((size_t)s->n_blocks * sizeof *s->block_at);
    if (!s->block_param || !s->block_at) goto oom;
    for (int i = 0, b = 0; i < n; i++)
        for (int64_t j = 0; j < params[i]->size; j += TG_BLOCK, b++) s->block_param[b] = i, s->block_at[b] = j;
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
    tg__free(s->block_param);
    tg__free(s->block_at);
    tg__free(s);
}

int tg_sgd_step(tg_sgd *s) {
    if (!s) return tg_fail(TG_ERR_ARG, "sgd_step: optimizer is NULL");
    const tg_sgd_opts *o = &s->o;
    bool first = s->steps->data[0] == 0;
    _Atomic int bad = s->n; /* the first parameter whose gradient holds a NaN or an Inf */
    /* every element on its own: the same result for any thread count; the update's loop
     * (ops/kernels/elementwise.c) also returns the largest exponent of the gradients it read */
#pragma omp parallel for num_threads(tg__threads_for(s->n_elements, TG_MIN_PER_THREAD)) schedule(static)
    for (int64_t b = 0; b < s->n_blocks; b++) {
        int i = s->block_param[b];
        tg_tensor *p = s->params[i];
        if (!p->requires_grad) continue; /* frozen: PyTorch skips a parameter without a gradient */
        int64_t j = s->block_at[b], k = p->size - j < TG_BLOCK ? p->size - j : TG_BLOCK;
        float *buf = o->momentum != 0 ? s->state[i]->data : NULL;
        uint32_t eb = tg__sgd_update(p->data + j, buf ? buf + j : NULL, p->grad + j, k, (float)o->lr, o->weight_decay,
                                     o->momentum, o->dampening, o->nesterov, first);
        if (eb == 0x7f800000u) { /* a NaN or an Inf: the lowest parameter's index wins */
            int at = atomic_load(&bad);
            while (i < at && !atomic_compare_exchange_weak(&bad, &at, i)) {}
        }
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
    if (!s) return;
#pragma omp parallel for num_threads(tg__threads_for(s->n_elements, TG_MIN_PER_THREAD)) schedule(static)
    for (int64_t b = 0; b < s->n_blocks; b++) {
        tg_tensor *p = s->params[s->block_param[b]];
        int64_t j = s->block_at[b], k = p->size - j < TG_BLOCK ? p->size - j : TG_BLOCK;
        if (p->grad) memset(p->grad + j, 0, (size_t)k * sizeof(float));
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
