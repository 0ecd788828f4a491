/* model.c: layers that own their parameters, composed in order into a model. */
#include "internal.h"
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

static tg_tensor *bn_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training);
static tg_tensor *conv_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training);
static tg_tensor *relu_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training);
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
    /* a conv2d or batch_norm layer followed by a relu layer runs as one op (conv2d_relu, batch_norm_relu) */
    for (int i = 0; i < m->n_layers && x; i++) {
        tg_layer *l = m->layers[i];
        bool then_relu = i + 1 < m->n_layers && m->layers[i + 1]->forward == relu_fwd;
        if (then_relu && l->forward == bn_fwd) {
            x = bn_relu_at(l, 0, 0, t, x, m->training);
            i++;
        } else if (then_relu && l->forward == conv_fwd) {
            x = tg_conv2d_relu(t, x, l->params[0], l->n_params > 1 ? l->params[1] : NULL, l->stride, l->pad, 1,
                               l->groups);
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

/* NaN if x[0..n) holds a NaN or an Inf (v * 0 is NaN only for those), else 0:
 * a vectorised pass with no branch, so a training loop can afford it every step. */
TG_CLONES static float nonfinite_probe(const float *x, int64_t n) {
    tg_f8 acc = {0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) acc += TG_F8(x + j) * 0.0f;
    float r = 0;
    for (int k = 0; k < 8; k++) r += acc[k];
    for (; j < n; j++) r += x[j] * 0.0f;
    return r;
}

/* Index of the first NaN or Inf in x[0..n), or -1. */
static int64_t first_nonfinite(const float *x, int64_t n) {
    int64_t blocks = (n + TG_BLOCK - 1) / TG_BLOCK;
    _Atomic int64_t first = blocks; /* the first block that holds one */
    TG_FOR_BLOCKS(n, j, k) if (nonfinite_probe(x + j, k) != 0.0f) {
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
        int64_t n = 0;
        for (int j = 0; j < l->n_params; j++) n += l->params[j]->size;
        fprintf(f, "%3d %-16s", i, l->kind);
        if (l->in || l->out) fprintf(f, " %d -> %d", l->in, l->out);
        if (l->kernel) fprintf(f, " kernel %d stride %d", l->kernel, l->stride);
        if (l->p > 0) fprintf(f, " p %g", (double)l->p);
        fprintf(f, "  %lld params\n", (long long)n);
    }
    fprintf(f, "    total %lld parameters\n", (long long)tg_model_param_count(m));
}

// ----------------------------------------------------------------------------
// layers: each a constructor and a forward

static tg_tensor *linear_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    return tg_linear(t, x, l->params[0], l->n_params > 1 ? l->params[1] : NULL);
}

tg_layer *tg_model_linear(tg_model *m, int in, int out, bool bias) {
    tg_layer *l = layer_new(m, "linear");
    if (!l) return NULL;
    if (in < 1 || out < 1) {
        tg_fail(TG_ERR_ARG, "linear: %d inputs, %d outputs: both must be >= 1", in, out);
        return failed(m, l);
    }
    l->in = in, l->out = out, l->forward = linear_fwd;
    tg_tensor *w = tensor(m, l, true, "", "weight", 2, (int[]){out, in});
    tg_tensor *b = w && bias ? tensor(m, l, true, "", "bias", 1, (int[]){out}) : NULL;
    if (!w || (bias && !b)) return failed(m, l);
    default_init(w, b, &m->rng);
    return add(m, l);
}

static tg_tensor *conv_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    return tg_conv2d(t, x, l->params[0], l->n_params > 1 ? l->params[1] : NULL, l->stride, l->pad, 1, l->groups);
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
    l->in = in, l->out = out, l->kernel = kernel, l->stride = stride, l->pad = pad, l->groups = groups;
    l->forward = conv_fwd;
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

/* batch norm with the params at index p and buffers at index b of layer l */
static tg_tensor *bn_at(tg_layer *l, int p, int b, tg_tape *t, tg_tensor *x, bool training) {
    return tg_batch_norm(t, x, l->params[p], l->params[p + 1], l->buffers[b], l->buffers[b + 1], training,
                         l->momentum, l->eps);
}

/* relu(batch norm) as one op, the same way */
static tg_tensor *bn_relu_at(tg_layer *l, int p, int b, tg_tape *t, tg_tensor *x, bool training) {
    return tg_batch_norm_relu(t, x, l->params[p], l->params[p + 1], l->buffers[b], l->buffers[b + 1], training,
                              l->momentum, l->eps);
}

static tg_tensor *bn_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) { return bn_at(l, 0, 0, t, x, training); }

tg_layer *tg_model_batch_norm(tg_model *m, int channels) {
    tg_layer *l = layer_new(m, "batch_norm");
    if (!l) return NULL;
    if (channels < 1) {
        tg_fail(TG_ERR_ARG, "batch_norm: %d channels", channels);
        return failed(m, l);
    }
    l->in = l->out = channels, l->momentum = 0.1f, l->eps = 1e-5f, l->forward = bn_fwd;
    if (!bn_tensors(m, l, "", channels)) return failed(m, l);
    return add(m, l);
}

static tg_tensor *relu_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)l, (void)training;
    return tg_relu(t, x);
}

tg_layer *tg_model_relu(tg_model *m) {
    tg_layer *l = layer_new(m, "relu");
    if (!l) return NULL;
    l->forward = relu_fwd;
    return add(m, l);
}

static tg_tensor *dropout_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    return tg_dropout(t, x, l->p, training);
}

tg_layer *tg_model_dropout(tg_model *m, float p) {
    tg_layer *l = layer_new(m, "dropout");
    if (!l) return NULL;
    if (!(p >= 0.0f && p <= 1.0f)) {
        tg_fail(TG_ERR_ARG, "dropout: p = %g is outside [0, 1]", (double)p);
        return failed(m, l);
    }
    l->p = p, l->forward = dropout_fwd;
    return add(m, l);
}

static tg_tensor *maxpool_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    return tg_max_pool2d(t, x, l->kernel, l->stride, 0);
}

static tg_tensor *avgpool_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    return tg_avg_pool2d(t, x, l->kernel, l->stride, 0);
}

static tg_layer *pool(tg_model *m, const char *kind, int kernel, int stride,
                      tg_tensor *(*fwd)(tg_layer *, tg_tape *, tg_tensor *, bool)) {
    tg_layer *l = layer_new(m, kind);
    if (!l) return NULL;
    if (kernel < 1 || stride < 1) {
        tg_fail(TG_ERR_ARG, "%s: kernel %d, stride %d: both must be >= 1", kind, kernel, stride);
        return failed(m, l);
    }
    l->kernel = kernel, l->stride = stride, l->forward = fwd;
    return add(m, l);
}

tg_layer *tg_model_max_pool(tg_model *m, int kernel, int stride) { return pool(m, "max_pool2d", kernel, stride, maxpool_fwd); }
tg_layer *tg_model_avg_pool(tg_model *m, int kernel, int stride) { return pool(m, "avg_pool2d", kernel, stride, avgpool_fwd); }

static tg_tensor *gap_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)l, (void)training;
    return tg_global_avg_pool(t, x);
}

tg_layer *tg_model_global_avg_pool(tg_model *m) {
    tg_layer *l = layer_new(m, "global_avg_pool");
    if (!l) return NULL;
    l->forward = gap_fwd;
    return add(m, l);
}

static tg_tensor *flatten_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)l, (void)training;
    return tg_flatten(t, x);
}

tg_layer *tg_model_flatten(tg_model *m) {
    tg_layer *l = layer_new(m, "flatten");
    if (!l) return NULL;
    l->forward = flatten_fwd;
    return add(m, l);
}

static tg_tensor *convt_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    return tg_conv_transpose2d(t, x, l->params[0], l->n_params > 1 ? l->params[1] : NULL, l->stride, l->pad, 0, 1, 1);
}

tg_layer *tg_model_conv_transpose2d(tg_model *m, int in, int out, int kernel, int stride, int pad, bool bias) {
    tg_layer *l = layer_new(m, "conv_transpose2d");
    if (!l) return NULL;
    if (in < 1 || out < 1 || kernel < 1 || stride < 1 || pad < 0) {
        tg_fail(TG_ERR_ARG, "conv_transpose2d: in %d, out %d, kernel %d, stride %d, pad %d: need positive sizes and "
                            "pad >= 0", in, out, kernel, stride, pad);
        return failed(m, l);
    }
    l->in = in, l->out = out, l->kernel = kernel, l->stride = stride, l->pad = pad, l->groups = 1;
    l->forward = convt_fwd;
    /* weight (in, out, k, k); PyTorch's fan_in for it is out*k*k */
    tg_tensor *w = tensor(m, l, true, "", "weight", 4, (int[]){in, out, kernel, kernel});
    tg_tensor *b = w && bias ? tensor(m, l, true, "", "bias", 1, (int[]){out}) : NULL;
    if (!w || (bias && !b)) return failed(m, l);
    float bound = 1.0f / sqrtf((float)(out * kernel * kernel));
    for (int64_t i = 0; i < w->size; i++) w->data[i] = bound * (2.0f * tg_rand_uniform(&m->rng) - 1.0f);
    for (int64_t i = 0; b && i < b->size; i++) b->data[i] = bound * (2.0f * tg_rand_uniform(&m->rng) - 1.0f);
    return add(m, l);
}

static tg_tensor *upsample_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    return tg_upsample(t, x, l->kernel, (tg_upsample_mode)l->groups);
}

tg_layer *tg_model_upsample(tg_model *m, int factor, tg_upsample_mode mode) {
    tg_layer *l = layer_new(m, "upsample");
    if (!l) return NULL;
    if (factor < 1) {
        tg_fail(TG_ERR_ARG, "upsample: factor %d must be >= 1", factor);
        return failed(m, l);
    }
    l->kernel = factor, l->stride = factor, l->groups = (int)mode, l->forward = upsample_fwd;
    return add(m, l);
}

static tg_tensor *sigmoid_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)l, (void)training;
    return tg_sigmoid(t, x);
}

tg_layer *tg_model_sigmoid(tg_model *m) {
    tg_layer *l = layer_new(m, "sigmoid");
    if (!l) return NULL;
    l->forward = sigmoid_fwd;
    return add(m, l);
}

// ----------------------------------------------------------------------------
// residual blocks. params: conv1.w, bn1.g, bn1.b, conv2.w, bn2.g, bn2.b, then the
// shortcut's conv.w (+ bn.g, bn.b in v1); buffers: bn1, bn2 (+ shortcut bn) stats.

/* v1: y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)) */
static tg_tensor *res_v1_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    tg_tensor *h = tg_conv2d(t, x, l->params[0], NULL, l->stride, 1, 1, 1);
    h = bn_relu_at(l, 1, 0, t, h, training);
    h = tg_conv2d(t, h, l->params[3], NULL, 1, 1, 1, 1);
    tg_tensor *s = x;
    if (l->n_params > 6) s = bn_at(l, 7, 4, t, tg_conv2d(t, x, l->params[6], NULL, l->stride, 0, 1, 1), training);
    return tg_batch_norm_add_relu(t, h, l->params[4], l->params[5], l->buffers[2], l->buffers[3], training,
                                  l->momentum, l->eps, s); /* relu(bn2(h) + s) */
}

/* v2: a = relu(bn1(x)); y = conv2(relu(bn2(conv1(a)))) + (x or conv_1x1(a)) */
static tg_tensor *res_v2_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    tg_tensor *a = bn_relu_at(l, 1, 0, t, x, training);
    tg_tensor *h = tg_conv2d(t, a, l->params[0], NULL, l->stride, 1, 1, 1);
    h = bn_relu_at(l, 4, 2, t, h, training);
    h = tg_conv2d(t, h, l->params[3], NULL, 1, 1, 1, 1);
    tg_tensor *s = l->n_params > 6 ? tg_conv2d(t, a, l->params[6], NULL, l->stride, 0, 1, 1) : x;
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
    l->in = in, l->out = out, l->kernel = 3, l->stride = stride, l->groups = 1;
    l->momentum = 0.1f, l->eps = 1e-5f;
    l->forward = version == 2 ? res_v2_fwd : res_v1_fwd;
    bool ok = conv_weight(m, l, "conv1.", in, out, 3, 1, false) && bn_tensors(m, l, "bn1.", version == 2 ? in : out) &&
              conv_weight(m, l, "conv2.", out, out, 3, 1, false) && bn_tensors(m, l, "bn2.", out);
    if (ok && (in != out || stride != 1)) {
        ok = conv_weight(m, l, "shortcut.0.", in, out, 1, 1, false);
        if (ok && version == 1) ok = bn_tensors(m, l, "shortcut.1.", out);
    }
    if (!ok) return failed(m, l);
    return add(m, l);
}
