/* init.c: He (Kaiming) and Xavier (Glorot) initialisation, seeded. */
#include "internal.h"
#include "tapegrad_nn.h"
#include <math.h>

static void fans(const tg_tensor *w, float *fan_in, float *fan_out) {
    int64_t receptive = 1;
    for (int i = 2; i < w->ndim; i++) receptive *= w->shape[i];
    *fan_in = w->ndim > 1 ? (float)(w->size / w->shape[0]) : (float)w->size;
    *fan_out = (float)((int64_t)w->shape[0] * receptive);
}

static int check(const char *who, const tg_tensor *w, const uint64_t *rng) {
    if (!w || !rng) return tg_fail(TG_ERR_ARG, "%s: %s is NULL", who, !w ? "tensor" : "rng");
    if (!w->data) return tg_fail(TG_ERR_ARG, "%s: the tensor has no data", who);
    return 0;
}

static void normal(tg_tensor *w, float std, uint64_t *rng) {
    for (int64_t i = 0; i < w->size; i++) w->data[i] = std * tg_rand_normal(rng);
}

static void uniform(tg_tensor *w, float bound, uint64_t *rng) {
    for (int64_t i = 0; i < w->size; i++) w->data[i] = bound * (2.0f * tg_rand_uniform(rng) - 1.0f);
}

int tg_init_kaiming_normal(tg_tensor *w, uint64_t *rng) {
    if (check("init_kaiming_normal", w, rng) < 0) return TG_ERR_ARG;
    float fi, fo;
    fans(w, &fi, &fo);
    normal(w, sqrtf(2.0f / fi), rng);
    return 0;
}

int tg_init_kaiming_uniform(tg_tensor *w, uint64_t *rng) {
    if (check("init_kaiming_uniform", w, rng) < 0) return TG_ERR_ARG;
    float fi, fo;
    fans(w, &fi, &fo);
    uniform(w, sqrtf(6.0f / fi), rng);
    return 0;
}

int tg_init_xavier_normal(tg_tensor *w, uint64_t *rng) {
    if (check("init_xavier_normal", w, rng) < 0) return TG_ERR_ARG;
    float fi, fo;
    fans(w, &fi, &fo);
    normal(w, sqrtf(2.0f / (fi + fo)), rng);
    return 0;
}

int tg_init_xavier_uniform(tg_tensor *w, uint64_t *rng) {
    if (check("init_xavier_uniform", w, rng) < 0) return TG_ERR_ARG;
    float fi, fo;
    fans(w, &fi, &fo);
    uniform(w, sqrtf(6.0f / (fi + fo)), rng);
    return 0;
}

/* Every parameter of l and the layers inside it, in model order, by how it starts. */
static void init_layer(tg_layer *l, int (*fn)(tg_tensor *, uint64_t *), uint64_t *rng) {
    for (int j = 0; j < l->n_params; j++) {
        tg_tensor *p = l->params[j];
        if (l->param_init[j] == TG_PARAM_WEIGHT) fn(p, rng);
        else
            for (int64_t k = 0; k < p->size; k++) p->data[k] = l->param_init[j] == TG_PARAM_ONES ? 1.0f : 0.0f;
    }
    for (int i = 0; i < l->n_children; i++) init_layer(l->children[i], fn, rng);
}

int tg_model_init(tg_model *m, tg_init scheme, uint64_t seed) {
    if (!m) return tg_fail(TG_ERR_ARG, "model_init: model is NULL");
    if ((unsigned)scheme > TG_INIT_XAVIER_UNIFORM) return tg_fail(TG_ERR_ARG, "model_init: unknown scheme %d", (int)scheme);
    static int (*const fn[])(tg_tensor *, uint64_t *) = {tg_init_kaiming_normal, tg_init_kaiming_uniform,
                                                         tg_init_xavier_normal, tg_init_xavier_uniform};
    uint64_t rng = seed;
    for (int i = 0; i < tg_model_layer_count(m); i++) init_layer(tg_model_layer(m, i), fn[scheme], &rng);
    return 0;
}
