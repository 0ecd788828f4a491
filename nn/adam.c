/* adam.c: Adam and AdamW as PyTorch 1.13's torch.optim.Adam and AdamW
 * (single-tensor path, without maximize). Hyperparameters are doubles, as
 * Python's floats are; the arithmetic on the tensors is float, as PyTorch's
 * on float32 tensors. */
#include "nn_internal.h"
#include <math.h>
#include <stdatomic.h>
#include <string.h>

/* Elements worth a thread: a square root and a division each, where SGD's take a multiply-add
 * (TG_MIN_PER_THREAD) */
#define ADAM_MIN_PER_THREAD 4096

struct tg_adam {
    tg_adam_opts o;
    int n;
    tg_tensor **params;   /* borrowed */
    tg_tensor **state;    /* per parameter exp_avg, exp_avg_sq (and max_exp_avg_sq with amsgrad), then steps */
    int n_state, per;     /* per: state tensors per parameter */
    tg_tensor *steps;     /* each parameter's own step count (a frozen one's stays put) */
    tg__blocks blocks;
    float *scale;         /* a step's two scalars for each parameter: step_size, sqrt(1 - beta2^step) */
};

static int check_opts(const char *who, const tg_adam_opts *o) {
    if (!(o->lr >= 0) || !isfinite(o->lr) || !(o->eps >= 0) || !isfinite(o->eps) || !(o->weight_decay >= 0) ||
        !isfinite(o->weight_decay) || !(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1))
        return tg_fail(TG_ERR_ARG, "%s: lr %g, betas (%g, %g), eps %g, weight_decay %g: need lr, eps and "
                       "weight_decay finite and >= 0, and betas in [0, 1)", who, o->lr, o->beta1, o->beta2, o->eps,
                       o->weight_decay);
    return 0;
}

tg_adam *tg_adam_new(tg_tensor *const *params, int n, tg_adam_opts o) {
    if (check_opts("adam", &o) < 0 || tg__check_params("adam", params, n) < 0) return NULL;
    tg_adam *a = tg__calloc(1, sizeof *a);
    if (!a) goto oom;
    a->o = o, a->n = n, a->per = o.amsgrad ? 3 : 2;
    a->params = tg__malloc((size_t)n * sizeof *a->params);
    a->state = tg__calloc((size_t)n * (size_t)a->per + 1, sizeof *a->state);
    if (!a->params || !a->state) goto oom;
    memcpy(a->params, params, (size_t)n * sizeof *a->params);
    if (tg__blocks_init(&a->blocks, params, n) < 0 || !(a->scale = tg__malloc(2 * (size_t)n * sizeof *a->scale)))
        goto oom;
    static const char *const what[3] = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
    for (int i = 0; i < n; i++)
        for (int k = 0; k < a->per; k++) {
            tg_tensor *b = tg_tensor_new(params[i]->ndim, params[i]->shape);
            if (!b) goto oom;
            char name[sizeof params[i]->name + 24]; /* tg_tensor_set_name keeps the first 63 characters */
            snprintf(name, sizeof name, "adam.%s.%s", params[i]->name, what[k]);
            tg_tensor_set_name(b, name);
            a->state[a->n_state++] = b;
        }
    if (!(a->steps = tg_tensor_new(1, (int[]){n}))) goto oom;
    tg_tensor_set_name(a->steps, "adam.steps");
    a->state[a->n_state++] = a->steps;
    return a;
oom:
    tg_adam_free(a);
    tg_fail(TG_ERR_NOMEM, "adam: out of memory");
    return NULL;
}

void tg_adam_free(tg_adam *a) {
    if (!a) return;
    for (int i = 0; a->state && i < a->n_state; i++) tg_tensor_free(a->state[i]);
    tg__free(a->state);
    tg__free(a->params);
    tg__blocks_free(&a->blocks);
    tg__free(a->scale);
    tg__free(a);
}

int tg_adam_step(tg_adam *a) {
    if (!a) return tg_fail(TG_ERR_ARG, "adam_step: optimizer is NULL");
    const tg_adam_opts *o = &a->o;
    for (int i = 0; i < a->n; i++) {
        if (!a->params[i]->requires_grad) continue; /* frozen: PyTorch skips a parameter without a gradient */
        double step = a->steps->data[i] += 1;
        /* the scalars as PyTorch makes them: in double, then float where they meet a tensor */
        a->scale[2 * i] = (float)-(o->lr / (1 - pow(o->beta1, step)));
        a->scale[2 * i + 1] = (float)sqrt(1 - pow(o->beta2, step));
    }
    float b1 = (float)o->beta1, b2 = (float)o->beta2, c1 = (float)(1 - o->beta1), c2 = (float)(1 - o->beta2);
    float wd = (float)o->weight_decay, decay = (float)(1 - o->lr * o->weight_decay), eps = (float)o->eps;
    bool adamw = o->decoupled, l2 = !o->decoupled && o->weight_decay != 0;
    _Atomic int bad = a->n; /* the first parameter whose gradient holds a NaN or an Inf */
    /* blocks as threads come free: they hold from one element to 8,192 (the resnet's 20 tensors make 23) */
#pragma omp parallel for num_threads(tg__threads_for(a->blocks.elements, ADAM_MIN_PER_THREAD)) schedule(dynamic)
    for (int64_t b = 0; b < a->blocks.n; b++) { /* every element on its own: the same for any thread count */
        int i = a->blocks.param[b];
        tg_tensor *p = a->params[i];
        if (!p->requires_grad) continue;
        int64_t j0 = a->blocks.at[b], k = tg__block_len(&a->blocks, a->params, b);
        float *m = a->state[i * a->per]->data + j0, *v = a->state[i * a->per + 1]->data + j0;
        float *vmax = o->amsgrad ? a->state[i * a->per + 2]->data + j0 : NULL;
        float step_size = a->scale[2 * i], bc2_sqrt = a->scale[2 * i + 1], *w = p->data + j0;
        const float *g = p->grad + j0;
        bool nonfinite = false;
        for (int64_t j = 0; j < k; j++) {
            float gj = l2 ? g[j] + wd * w[j] : g[j];
            if (adamw) w[j] *= decay;
            m[j] = m[j] * b1 + c1 * gj;
            v[j] = v[j] * b2 + c2 * gj * gj;
            float s = v[j];
            if (vmax) s = vmax[j] = fmaxf(vmax[j], s);
            w[j] += step_size * (m[j] / (sqrtf(s) / bc2_sqrt + eps));
            nonfinite |= !isfinite(g[j]);
        }
        if (nonfinite) tg__lower(&bad, i);
    }
    int first = atomic_load(&bad);
    return first == a->n ? 0 : tg__nonfinite_grad("adam", a->params[first]);
}

void tg_adam_zero_grad(tg_adam *a) {
    if (a) tg__zero_grads(a->params, &a->blocks);
}

int tg_adam_set_lr(tg_adam *a, double lr) {
    if (!a) return tg_fail(TG_ERR_ARG, "adam_set_lr: optimizer is NULL");
    if (!(lr >= 0) || !isfinite(lr)) return tg_fail(TG_ERR_ARG, "adam: lr %g: must be finite and >= 0", lr);
    a->o.lr = lr;
    return 0;
}

double tg_adam_lr(const tg_adam *a) { return a ? a->o.lr : 0.0; }

int tg_adam_state(tg_adam *a, tg_tensor ***state) {
    if (!a || !state) return tg_fail(TG_ERR_ARG, "adam_state: %s is NULL", !a ? "optimizer" : "state");
    *state = a->state;
    return a->n_state;
}
