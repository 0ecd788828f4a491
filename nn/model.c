/* model.c: layers that own their parameters, composed in order into a model. */
#include "internal.h"
#include "kernels/kernels.h"
#include "tapegrad_nn.h"
#include <math.h>
#include <stdatomic.h>
#include <string.h>

struct tg_model {
    tg_layer **layers;
    int n_layers, cap;
    bool training;
    uint64_t rng;             /* initialisation */
    char error[256];          /* the first layer that failed to build */
    tg_tensor **params, **state; /* made anew by every add, read by the accessors */
    int n_params, n_state;
    void **retired;           /* earlier lists, kept until the model is freed: arrays handed out stay valid */
    int n_retired;
};

/* Named slots of each kind's tensors in params[] and buffers[] (the order
 * they are made in, which is the order of their names in a checkpoint). */
enum { WEIGHT, BIAS };                                     /* linear, conv2d, conv_transpose2d */
enum { GAMMA, BETA };                                      /* batch norm's params */
enum { RUNNING_MEAN, RUNNING_VAR };                        /* batch norm's buffers */
enum { CONV1, BN1 = CONV1 + 1, CONV2 = BN1 + 2, BN2 = CONV2 + 1, SHORTCUT = BN2 + 2, SHORTCUT_BN = SHORTCUT + 1 };
enum { BN1_STATS = 0, BN2_STATS = 2, SHORTCUT_BN_STATS = 4 }; /* residual: each a running mean, then var */

static tg_tensor *bn_relu_at(tg_layer *l, int p, int b, tg_tape *t, tg_tensor *x, bool training);

// ----------------------------------------------------------------------------
// the model

tg_model *tg_model_new(uint64_t seed) {
    tg_model *m = tg__calloc(1, sizeof *m);
    if (!m) {
        tg_fail(TG_ERR_NOMEM, "model_new: out of memory");
        return NULL;
    }
    m->training = true;
    m->rng = seed;
    return m;
}

static void layer_free(tg_layer *l) {
    if (!l) return;
    for (int i = 0; i < l->n_params; i++) tg_tensor_free(l->params[i]);
    for (int i = 0; i < l->n_buffers; i++) tg_tensor_free(l->buffers[i]);
    tg__free(l);
}

void tg_model_free(tg_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_layers; i++) layer_free(m->layers[i]);
    tg__free(m->layers);
    tg__free(m->params);
    tg__free(m->state);
    for (int i = 0; i < m->n_retired; i++) tg__free(m->retired[i]);
    tg__free(m->retired);
    tg__free(m);
}

/* Remember the first failure; the model then refuses to run. */
static tg_layer *failed(tg_model *m, tg_layer *l) {
    layer_free(l);
    if (m && !m->error[0]) snprintf(m->error, sizeof m->error, "model: layer %d: %s", m->n_layers, tg_last_error());
    return NULL;
}

static tg_layer *layer_new(tg_model *m, const char *kind) {
    if (!m) {
        tg_fail(TG_ERR_ARG, "model: %s added to a NULL model", kind);
        return NULL;
    }
    tg_layer *l = tg__calloc(1, sizeof *l);
    if (!l) {
        tg_fail(TG_ERR_NOMEM, "model: out of memory");
        return failed(m, NULL);
    }
    l->kind = kind;
    return l;
}

/* A new list of the parameters (then the buffers, if with_buffers) of the
 * layers, with l after them; NULL if out of memory. */
static tg_tensor **collect(const tg_model *m, const tg_layer *l, bool with_buffers, int *n_out) {
    int n = 0;
    for (int i = 0; i <= m->n_layers; i++) {
        const tg_layer *x = i < m->n_layers ? m->layers[i] : l;
        n += x->n_params + (with_buffers ? x->n_buffers : 0);
    }
    tg_tensor **list = tg__malloc((size_t)(n ? n : 1) * sizeof *list);
    if (!list) return NULL;
    int k = 0;
    for (int i = 0; i <= m->n_layers; i++) {
        const tg_layer *x = i < m->n_layers ? m->layers[i] : l;
        for (int j = 0; j < x->n_params; j++) list[k++] = x->params[j];
    }
    for (int i = 0; with_buffers && i <= m->n_layers; i++) {
        const tg_layer *x = i < m->n_layers ? m->layers[i] : l;
        for (int j = 0; j < x->n_buffers; j++) list[k++] = x->buffers[j];
    }
    *n_out = n;
    return list;
}

/* Appends l. The parameter and state lists are made here, once per layer, so
 * the accessors only read (several threads may call them on a shared model),
 * and the lists they handed out before stay valid until the model is freed. */
static tg_layer *add(tg_model *m, tg_layer *l) {
    if (m->n_layers == m->cap) {
        int cap = m->cap ? 2 * m->cap : 16;
        tg_layer **ls = tg__realloc(m->layers, (size_t)cap * sizeof *ls);
        if (!ls) goto oom;
        m->layers = ls, m->cap = cap;
    }
    void **retired = tg__realloc(m->retired, (size_t)(m->n_retired + 2) * sizeof *retired);
    if (!retired) goto oom;
    m->retired = retired;
    int np = 0, ns = 0;
    tg_tensor **params = collect(m, l, false, &np), **state = collect(m, l, true, &ns);
    if (!params || !state) {
        tg__free(params), tg__free(state);
        goto oom;
    }
    if (m->params) m->retired[m->n_retired++] = m->params;
    if (m->state) m->retired[m->n_retired++] = m->state;
    m->params = params, m->n_params = np;
    m->state = state, m->n_state = ns;
    m->layers[m->n_layers++] = l;
    return l;
oom:
    tg_fail(TG_ERR_NOMEM, "model: out of memory");
    return failed(m, l);
}

/* PyTorch's default for conv and linear layers (kaiming_uniform_ with a = sqrt(5)):
 * weight and bias both U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
static void default_init(tg_tensor *w, tg_tensor *b, uint64_t *rng) {
    float bound = 1.0f / sqrtf((float)(w->size / w->shape[0]));
    for (int64_t i = 0; i < w->size; i++) w->data[i] = bound * (2.0f * tg_rand_uniform(rng) - 1.0f);
    for (int64_t i = 0; b && i < b->size; i++) b->data[i] = bound * (2.0f * tg_rand_uniform(rng) - 1.0f);
}

/* A parameter or buffer of the layer, named "<layer>.<prefix><name>". */
static tg_tensor *tensor(tg_model *m, tg_layer *l, bool param, const char *prefix, const char *name, int ndim,
                         const int *shape) {
    tg_tensor *x = param ? tg_param_new(ndim, shape) : tg_tensor_new(ndim, shape);
    if (!x) return NULL;
    char full[64];
    snprintf(full, sizeof full, "%d.%s%s", m->n_layers, prefix, name);
    tg_tensor_set_name(x, full);
    if (param) l->params[l->n_params++] = x;
    else l->buffers[l->n_buffers++] = x;
    return x;
}

tg_tensor *tg_model_forward(tg_model *m, tg_tape *t, tg_tensor *x) {
    if (!m) {
        tg_fail(TG_ERR_ARG, "model: NULL model");
        return NULL;
    }
    if (m->error[0]) {
        tg_fail(TG_ERR_ARG, "%s", m->error);
        return NULL;
    }
    if (!x) { /* an earlier op failed: keep its message */
        if (!tg_last_error_code()) tg_fail(TG_ERR_ARG, "model_forward: input is NULL");
        return NULL;
    }
    /* a conv2d or batch_norm layer followed by a relu layer runs as one op with a ReLU epilogue
     * (conv2d+relu, batch_norm+relu) */
    for (int i = 0; i < m->n_layers && x; i++) {
        tg_layer *l = m->layers[i];
        bool then_relu = i + 1 < m->n_layers && m->layers[i + 1]->type == TG_LAYER_RELU;
        if (then_relu && l->type == TG_LAYER_BATCH_NORM) {
            x = bn_relu_at(l, GAMMA, RUNNING_MEAN, t, x, m->training);
            i++;
        } else if (then_relu && l->type == TG_LAYER_CONV2D) {
            x = tg_conv2d_act(t, x, l->params[WEIGHT], l->attr.conv.bias ? l->params[BIAS] : NULL,
                              l->attr.conv.stride, l->attr.conv.pad, 1, l->attr.conv.groups, TG_ACT_RELU);
            i++;
        } else {
            x = l->forward(l, t, x, m->training);
        }
    }
    return x;
}

void tg_model_train(tg_model *m, bool training) {
    if (m) m->training = training;
}
bool tg_model_training(const tg_model *m) { return m && m->training; }
int tg_model_layer_count(const tg_model *m) { return m ? m->n_layers : 0; }
tg_layer *tg_model_layer(const tg_model *m, int i) { return m && i >= 0 && i < m->n_layers ? m->layers[i] : NULL; }

/* The lists are made by add: reading them is safe from several threads. */
int tg_model_params(const tg_model *m, tg_tensor ***params) {
    if (!m || !params) return tg_fail(TG_ERR_ARG, "model_params: %s is NULL", !m ? "model" : "params");
    *params = m->params;
    return m->n_params;
}

int tg_model_state(const tg_model *m, tg_tensor ***state) {
    if (!m || !state) return tg_fail(TG_ERR_ARG, "model_state: %s is NULL", !m ? "model" : "state");
    *state = m->state;
    return m->n_state;
}

int64_t tg_model_param_count(const tg_model *m) {
    int64_t n = 0;
    if (!m) return 0;
    for (int i = 0; i < m->n_layers; i++)
        for (int j = 0; j < m->layers[i]->n_params; j++) n += m->layers[i]->params[j]->size;
    return n;
}

/* Index of the first NaN or Inf in x[0..n), or -1. */
static int64_t first_nonfinite(const float *x, int64_t n) {
    int64_t blocks = (n + TG_BLOCK - 1) / TG_BLOCK;
    _Atomic int64_t first = blocks; /* the first block that holds one */
    TG_FOR_BLOCKS(n, j, k) if (tg__nonfinite_probe(x + j, k) != 0.0f) {
        int64_t b = j / TG_BLOCK, f = atomic_load(&first);
        while (b < f && !atomic_compare_exchange_weak(&first, &f, b)) {}
    }
    for (int64_t j = atomic_load(&first) * TG_BLOCK; j < n; j++)
        if (!isfinite(x[j])) return j;
    return -1;
}

int tg_model_check_finite(const tg_model *m) {
    if (!m) return tg_fail(TG_ERR_ARG, "model_check_finite: model is NULL");
    for (int i = 0; i < m->n_state; i++) {
        const tg_tensor *x = m->state[i];
        for (int g = 0; g < 2; g++) {
            const float *v = g ? x->grad : x->data;
            int64_t j = v ? first_nonfinite(v, x->size) : -1;
            if (j >= 0)
                return tg_fail(TG_ERR_NONFINITE, "model: the %s of %s holds %s at element %lld", g ? "gradient" : "value",
                               x->name, isnan(v[j]) ? "NaN" : v[j] > 0 ? "+Inf" : "-Inf", (long long)j);
        }
    }
    return 0;
}

void tg_model_zero_grad(tg_model *m) {
    for (int i = 0; m && i < m->n_layers; i++)
        for (int j = 0; j < m->layers[i]->n_params; j++) tg_tensor_zero_grad(m->layers[i]->params[j]);
}

void tg_model_print(const tg_model *m, FILE *f) {
    if (!m || !f) return;
    for (int i = 0; i < m->n_layers; i++) {
        const tg_layer *l = m->layers[i];
        const tg_layer_attr *a = &l->attr;
        int64_t n = 0;
        for (int j = 0; j < l->n_params; j++) n += l->params[j]->size;
        fprintf(f, "%3d %-16s", i, l->kind);
        switch (l->type) {
        case TG_LAYER_LINEAR: fprintf(f, " %d -> %d%s", a->linear.in, a->linear.out, a->linear.bias ? "" : " no bias"); break;
        case TG_LAYER_CONV2D:
        case TG_LAYER_CONV_TRANSPOSE2D:
            fprintf(f, " %d -> %d kernel %d stride %d pad %d", a->conv.in, a->conv.out, a->conv.kernel, a->conv.stride,
                    a->conv.pad);
            if (a->conv.groups > 1) fprintf(f, " groups %d", a->conv.groups);
            if (!a->conv.bias) fprintf(f, " no bias");
            break;
        case TG_LAYER_BATCH_NORM: fprintf(f, " %d -> %d", a->batch_norm.channels, a->batch_norm.channels); break;
        case TG_LAYER_DROPOUT: fprintf(f, " p %g", (double)a->dropout.p); break;
        case TG_LAYER_MAX_POOL:
        case TG_LAYER_AVG_POOL: fprintf(f, " kernel %d stride %d", a->pool.kernel, a->pool.stride); break;
        case TG_LAYER_UPSAMPLE: fprintf(f, " factor %d", a->upsample.factor); break;
        case TG_LAYER_RESIDUAL:
            fprintf(f, " %d -> %d kernel 3 stride %d", a->residual.in, a->residual.out, a->residual.stride);
            break;
        default: break;
        }
        fprintf(f, "  %lld params\n", (long long)n);
    }
    fprintf(f, "    total %lld parameters\n", (long long)tg_model_param_count(m));
}

// ----------------------------------------------------------------------------
// layers: each a constructor and a forward

static tg_tensor *linear_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    return tg_linear(t, x, l->params[WEIGHT], l->attr.linear.bias ? l->params[BIAS] : NULL);
}

tg_layer *tg_model_linear(tg_model *m, int in, int out, bool bias) {
    tg_layer *l = layer_new(m, "linear");
    if (!l) return NULL;
    if (in < 1 || out < 1) {
        tg_fail(TG_ERR_ARG, "linear: %d inputs, %d outputs: both must be >= 1", in, out);
        return failed(m, l);
    }
    l->type = TG_LAYER_LINEAR, l->forward = linear_fwd;
    l->attr.linear.in = in, l->attr.linear.out = out, l->attr.linear.bias = bias;
    tg_tensor *w = tensor(m, l, true, "", "weight", 2, (int[]){out, in});
    tg_tensor *b = w && bias ? tensor(m, l, true, "", "bias", 1, (int[]){out}) : NULL;
    if (!w || (bias && !b)) return failed(m, l);
    default_init(w, b, &m->rng);
    return add(m, l);
}

static tg_tensor *conv_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    const tg_layer_attr *a = &l->attr;
    return tg_conv2d(t, x, l->params[WEIGHT], a->conv.bias ? l->params[BIAS] : NULL, a->conv.stride, a->conv.pad, 1,
                     a->conv.groups);
}

/* A conv's weight (and bias) into l, named with prefix ("" or "conv1."). */
static tg_tensor *conv_weight(tg_model *m, tg_layer *l, const char *prefix, int in, int out, int k, int groups,
                              bool bias) {
    tg_tensor *w = tensor(m, l, true, prefix, "weight", 4, (int[]){out, in / groups, k, k});
    tg_tensor *b = w && bias ? tensor(m, l, true, prefix, "bias", 1, (int[]){out}) : NULL;
    if (!w || (bias && !b)) return NULL;
    default_init(w, b, &m->rng);
    return w;
}

tg_layer *tg_model_conv2d_groups(tg_model *m, int in, int out, int kernel, int stride, int pad, int groups,
                                 bool bias) {
    tg_layer *l = layer_new(m, "conv2d");
    if (!l) return NULL;
    if (in < 1 || out < 1 || kernel < 1 || stride < 1 || pad < 0 || groups < 1 || in % groups || out % groups) {
        tg_fail(TG_ERR_ARG, "conv2d: in %d, out %d, kernel %d, stride %d, pad %d, groups %d: need positive sizes, "
                            "pad >= 0 and groups dividing both channel counts", in, out, kernel, stride, pad, groups);
        return failed(m, l);
    }
    l->type = TG_LAYER_CONV2D, l->forward = conv_fwd;
    l->attr.conv.in = in, l->attr.conv.out = out, l->attr.conv.kernel = kernel, l->attr.conv.stride = stride;
    l->attr.conv.pad = pad, l->attr.conv.groups = groups, l->attr.conv.bias = bias;
    if (!conv_weight(m, l, "", in, out, kernel, groups, bias)) return failed(m, l);
    return add(m, l);
}

tg_layer *tg_model_conv2d(tg_model *m, int in, int out, int kernel, int stride, int pad, bool bias) {
    return tg_model_conv2d_groups(m, in, out, kernel, stride, pad, 1, bias);
}

/* gamma, beta (params) and running mean, var (buffers) of a batch norm over c channels */
static bool bn_tensors(tg_model *m, tg_layer *l, const char *prefix, int c) {
    tg_tensor *g = tensor(m, l, true, prefix, "weight", 1, (int[]){c});
    if (!g || !tensor(m, l, true, prefix, "bias", 1, (int[]){c})) return false;
    if (!tensor(m, l, false, prefix, "running_mean", 1, (int[]){c})) return false;
    tg_tensor *rv = tensor(m, l, false, prefix, "running_var", 1, (int[]){c});
    if (!rv) return false;
    for (int i = 0; i < c; i++) g->data[i] = 1, rv->data[i] = 1;
    return true;
}

/* The batch norm of layer l whose gamma is params[p] (beta next) and running
 * mean buffers[b] (var next): alone, or with the ReLU after it as one op. */
static tg_tensor *bn_at(tg_layer *l, int p, int b, tg_tape *t, tg_tensor *x, bool training) {
    bool res = l->type == TG_LAYER_RESIDUAL;
    float momentum = res ? l->attr.residual.momentum : l->attr.batch_norm.momentum;
    float eps = res ? l->attr.residual.eps : l->attr.batch_norm.eps;
    return tg_batch_norm(t, x, l->params[p + GAMMA], l->params[p + BETA], l->buffers[b + RUNNING_MEAN],
                         l->buffers[b + RUNNING_VAR], training, momentum, eps);
}

static tg_tensor *bn_relu_at(tg_layer *l, int p, int b, tg_tape *t, tg_tensor *x, bool training) {
    bool res = l->type == TG_LAYER_RESIDUAL;
    float momentum = res ? l->attr.residual.momentum : l->attr.batch_norm.momentum;
    float eps = res ? l->attr.residual.eps : l->attr.batch_norm.eps;
    return tg_batch_norm_act(t, x, l->params[p + GAMMA], l->params[p + BETA], l->buffers[b + RUNNING_MEAN],
                             l->buffers[b + RUNNING_VAR], training, momentum, eps, NULL, TG_ACT_RELU);
}

static tg_tensor *bn_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    return bn_at(l, GAMMA, RUNNING_MEAN, t, x, training);
}

tg_layer *tg_model_batch_norm(tg_model *m, int channels) {
    tg_layer *l = layer_new(m, "batch_norm");
    if (!l) return NULL;
    if (channels < 1) {
        tg_fail(TG_ERR_ARG, "batch_norm: %d channels", channels);
        return failed(m, l);
    }
    l->type = TG_LAYER_BATCH_NORM, l->forward = bn_fwd;
    l->attr.batch_norm.channels = channels, l->attr.batch_norm.momentum = 0.1f, l->attr.batch_norm.eps = 1e-5f;
    if (!bn_tensors(m, l, "", channels)) return failed(m, l);
    return add(m, l);
}

static tg_tensor *relu_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)l, (void)training;
    return tg_relu(t, x);
}

static tg_tensor *dropout_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    return tg_dropout(t, x, l->attr.dropout.p, training);
}

tg_layer *tg_model_dropout(tg_model *m, float p) {
    tg_layer *l = layer_new(m, "dropout");
    if (!l) return NULL;
    if (!(p >= 0.0f && p <= 1.0f)) {
        tg_fail(TG_ERR_ARG, "dropout: p = %g is outside [0, 1]", (double)p);
        return failed(m, l);
    }
    l->type = TG_LAYER_DROPOUT, l->forward = dropout_fwd, l->attr.dropout.p = p;
    return add(m, l);
}

static tg_tensor *maxpool_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    return tg_max_pool2d(t, x, l->attr.pool.kernel, l->attr.pool.stride, 0);
}

static tg_tensor *avgpool_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    return tg_avg_pool2d(t, x, l->attr.pool.kernel, l->attr.pool.stride, 0);
}

static tg_layer *pool(tg_model *m, tg_layer_type type, const char *kind, int kernel, int stride) {
    tg_layer *l = layer_new(m, kind);
    if (!l) return NULL;
    if (kernel < 1 || stride < 1) {
        tg_fail(TG_ERR_ARG, "%s: kernel %d, stride %d: both must be >= 1", kind, kernel, stride);
        return failed(m, l);
    }
    l->type = type, l->forward = type == TG_LAYER_MAX_POOL ? maxpool_fwd : avgpool_fwd;
    l->attr.pool.kernel = kernel, l->attr.pool.stride = stride;
    return add(m, l);
}

tg_layer *tg_model_max_pool(tg_model *m, int kernel, int stride) {
    return pool(m, TG_LAYER_MAX_POOL, "max_pool2d", kernel, stride);
}
tg_layer *tg_model_avg_pool(tg_model *m, int kernel, int stride) {
    return pool(m, TG_LAYER_AVG_POOL, "avg_pool2d", kernel, stride);
}

static tg_tensor *gap_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)l, (void)training;
    return tg_global_avg_pool(t, x);
}

static tg_tensor *flatten_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)l, (void)training;
    return tg_flatten(t, x);
}

static tg_tensor *sigmoid_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)l, (void)training;
    return tg_sigmoid(t, x);
}

/* A layer without parameters or attributes. */
static tg_layer *plain(tg_model *m, tg_layer_type type, const char *kind,
                       tg_tensor *(*fwd)(tg_layer *, tg_tape *, tg_tensor *, bool)) {
    tg_layer *l = layer_new(m, kind);
    if (!l) return NULL;
    l->type = type, l->forward = fwd;
    return add(m, l);
}

tg_layer *tg_model_relu(tg_model *m) { return plain(m, TG_LAYER_RELU, "relu", relu_fwd); }
tg_layer *tg_model_global_avg_pool(tg_model *m) {
    return plain(m, TG_LAYER_GLOBAL_AVG_POOL, "global_avg_pool", gap_fwd);
}
tg_layer *tg_model_flatten(tg_model *m) { return plain(m, TG_LAYER_FLATTEN, "flatten", flatten_fwd); }
tg_layer *tg_model_sigmoid(tg_model *m) { return plain(m, TG_LAYER_SIGMOID, "sigmoid", sigmoid_fwd); }

static tg_tensor *convt_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    const tg_layer_attr *a = &l->attr;
    return tg_conv_transpose2d(t, x, l->params[WEIGHT], a->conv.bias ? l->params[BIAS] : NULL, a->conv.stride,
                               a->conv.pad, 0, 1, 1);
}

tg_layer *tg_model_conv_transpose2d(tg_model *m, int in, int out, int kernel, int stride, int pad, bool bias) {
    tg_layer *l = layer_new(m, "conv_transpose2d");
    if (!l) return NULL;
    if (in < 1 || out < 1 || kernel < 1 || stride < 1 || pad < 0) {
        tg_fail(TG_ERR_ARG, "conv_transpose2d: in %d, out %d, kernel %d, stride %d, pad %d: need positive sizes and "
                            "pad >= 0", in, out, kernel, stride, pad);
        return failed(m, l);
    }
    l->type = TG_LAYER_CONV_TRANSPOSE2D, l->forward = convt_fwd;
    l->attr.conv.in = in, l->attr.conv.out = out, l->attr.conv.kernel = kernel, l->attr.conv.stride = stride;
    l->attr.conv.pad = pad, l->attr.conv.groups = 1, l->attr.conv.bias = bias;
    /* weight (in, out, k, k); PyTorch's fan_in for it is out*k*k */
    tg_tensor *w = tensor(m, l, true, "", "weight", 4, (int[]){in, out, kernel, kernel});
    tg_tensor *b = w && bias ? tensor(m, l, true, "", "bias", 1, (int[]){out}) : NULL;
    if (!w || (bias && !b)) return failed(m, l);
    float bound = 1.0f / sqrtf((float)out * (float)kernel * (float)kernel);
    for (int64_t i = 0; i < w->size; i++) w->data[i] = bound * (2.0f * tg_rand_uniform(&m->rng) - 1.0f);
    for (int64_t i = 0; b && i < b->size; i++) b->data[i] = bound * (2.0f * tg_rand_uniform(&m->rng) - 1.0f);
    return add(m, l);
}

static tg_tensor *upsample_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    return tg_upsample(t, x, l->attr.upsample.factor, l->attr.upsample.mode);
}

tg_layer *tg_model_upsample(tg_model *m, int factor, tg_upsample_mode mode) {
    tg_layer *l = layer_new(m, "upsample");
    if (!l) return NULL;
    if (factor < 1) {
        tg_fail(TG_ERR_ARG, "upsample: factor %d must be >= 1", factor);
        return failed(m, l);
    }
    l->type = TG_LAYER_UPSAMPLE, l->forward = upsample_fwd;
    l->attr.upsample.factor = factor, l->attr.upsample.mode = mode;
    return add(m, l);
}

// ----------------------------------------------------------------------------
// residual blocks: the slots CONV1, BN1, CONV2, BN2, then the shortcut's
// SHORTCUT conv (+ SHORTCUT_BN in v1) when channels or stride change.

static bool has_shortcut(const tg_layer *l) { return l->n_params > SHORTCUT; }

/* v1: y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)) */
static tg_tensor *res_v1_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    const tg_layer_attr *a = &l->attr;
    tg_tensor *h = tg_conv2d(t, x, l->params[CONV1], NULL, a->residual.stride, 1, 1, 1);
    h = bn_relu_at(l, BN1, BN1_STATS, t, h, training);
    h = tg_conv2d(t, h, l->params[CONV2], NULL, 1, 1, 1, 1);
    tg_tensor *s = x;
    if (has_shortcut(l))
        s = bn_at(l, SHORTCUT_BN, SHORTCUT_BN_STATS, t,
                  tg_conv2d(t, x, l->params[SHORTCUT], NULL, a->residual.stride, 0, 1, 1), training);
    if (!s) return NULL; /* the shortcut failed: keep its message (a NULL add would mean no add) */
    return tg_batch_norm_act(t, h, l->params[BN2 + GAMMA], l->params[BN2 + BETA],
                             l->buffers[BN2_STATS + RUNNING_MEAN], l->buffers[BN2_STATS + RUNNING_VAR], training,
                             a->residual.momentum, a->residual.eps, s, TG_ACT_RELU); /* relu(bn2(h) + s) */
}

/* v2: a = relu(bn1(x)); y = conv2(relu(bn2(conv1(a)))) + (x or conv_1x1(a)) */
static tg_tensor *res_v2_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    int stride = l->attr.residual.stride;
    tg_tensor *a = bn_relu_at(l, BN1, BN1_STATS, t, x, training);
    tg_tensor *h = tg_conv2d(t, a, l->params[CONV1], NULL, stride, 1, 1, 1);
    h = bn_relu_at(l, BN2, BN2_STATS, t, h, training);
    h = tg_conv2d(t, h, l->params[CONV2], NULL, 1, 1, 1, 1);
    tg_tensor *s = has_shortcut(l) ? tg_conv2d(t, a, l->params[SHORTCUT], NULL, stride, 0, 1, 1) : x;
    return tg_residual_add(t, s, h);
}

tg_layer *tg_model_residual(tg_model *m, int in, int out, int stride, int version) {
    tg_layer *l = layer_new(m, version == 2 ? "residual_v2" : "residual_v1");
    if (!l) return NULL;
    if (in < 1 || out < 1 || stride < 1 || (version != 1 && version != 2)) {
        tg_fail(TG_ERR_ARG, "residual: in %d, out %d, stride %d, version %d: need positive sizes and version 1 or 2",
                in, out, stride, version);
        return failed(m, l);
    }
    l->type = TG_LAYER_RESIDUAL, l->forward = version == 2 ? res_v2_fwd : res_v1_fwd;
    l->attr.residual.in = in, l->attr.residual.out = out, l->attr.residual.stride = stride;
    l->attr.residual.version = version, l->attr.residual.momentum = 0.1f, l->attr.residual.eps = 1e-5f;
    /* made in slot order: CONV1, BN1, CONV2, BN2, SHORTCUT, SHORTCUT_BN */
    bool ok = conv_weight(m, l, "conv1.", in, out, 3, 1, false) && bn_tensors(m, l, "bn1.", version == 2 ? in : out) &&
              conv_weight(m, l, "conv2.", out, out, 3, 1, false) && bn_tensors(m, l, "bn2.", out);
    if (ok && (in != out || stride != 1)) {
        ok = conv_weight(m, l, "shortcut.0.", in, out, 1, 1, false);
        if (ok && version == 1) ok = bn_tensors(m, l, "shortcut.1.", out);
    }
    if (!ok) return failed(m, l);
    return add(m, l);
}
