/* model.c: a model is a tree of layers (PyTorch's modules): built-in layers,
 * layers of the user's own, and blocks that hold layers. Each layer owns its
 * tensors; the model keeps the lists of all of them in order. */
#include "internal.h"
#include "kernels/kernels.h"
#include "nn_internal.h"
#include "tapegrad_nn.h"
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>

#define MAX_OPEN 32 /* blocks open at once (nesting depth) */

struct tg_model {
    tg_layer root;            /* a sequential block, path "": the model's own layers are its children */
    tg_layer *open[MAX_OPEN]; /* the blocks being filled, innermost last */
    int n_open;
    bool evaluating;          /* tg_model_evaluate and tg_model_print: every layer evaluates */
    bool probing;             /* tg_model_print: layers record their output shapes */
    int pre_pool[TG_MAX_DIMS]; /* probing: the last pooled output's shape before the pooling */
    uint64_t rng;             /* initialisation */
    char error[256];          /* the first layer that failed to build */
    tg_tensor **params, **state; /* made anew by every change, read by the accessors */
    int n_params, n_state;
    uint64_t version;         /* counts those changes */
    void **retired;           /* earlier lists, kept until the model is freed: arrays handed out stay valid */
    int n_retired, cap_retired;
};

/* The layer whose forward failed first in this thread (innermost), for tg_model_forward's message. */
static _Thread_local const tg_layer *failed_layer;

// ----------------------------------------------------------------------------
// the tree

tg_model *tg_model_new(uint64_t seed) {
    tg_model *m = tg__calloc(1, sizeof *m);
    if (!m) {
        tg_fail(TG_ERR_NOMEM, "model_new: out of memory");
        return NULL;
    }
    m->root.type = TG_LAYER_SEQUENTIAL;
    snprintf(m->root.kind, sizeof m->root.kind, "model");
    m->root.training = true;
    m->root.model = m;
    m->rng = seed;
    return m;
}

static void layer_release(tg_layer *l) {
    for (int i = 0; i < l->n_params; i++) tg_tensor_free(l->params[i]);
    for (int i = 0; i < l->n_buffers; i++) tg_tensor_free(l->buffers[i]);
    for (int i = 0; i < l->n_children; i++) {
        layer_release(l->children[i]);
        tg__free(l->children[i]);
    }
    tg__free(l->params), tg__free(l->param_init), tg__free(l->buffers), tg__free(l->children), tg__free(l->all_params);
}

void tg_model_free(tg_model *m) {
    if (!m) return;
    layer_release(&m->root);
    tg__free(m->params);
    tg__free(m->state);
    for (int i = 0; i < m->n_retired; i++) tg__free(m->retired[i]);
    tg__free(m->retired);
    tg__free(m);
}

/* Remember the first failure (the message tg_fail set); the model then refuses to run. */
static void model_failed(tg_model *m) {
    if (m && !m->error[0]) snprintf(m->error, sizeof m->error, "model: %s", tg_last_error());
}

int tg_model_fail(tg_model *m, int code, const char *fmt, ...) {
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt ? fmt : "(no message)", ap);
    va_end(ap);
    tg_fail(code < 0 ? code : TG_ERR_ARG, "%s", msg);
    model_failed(m);
    return code < 0 ? code : TG_ERR_ARG;
}

static int count_tensors(const tg_layer *l, bool buffers) {
    int n = buffers ? l->n_buffers : l->n_params;
    for (int i = 0; i < l->n_children; i++) n += count_tensors(l->children[i], buffers);
    return n;
}

static void gather(const tg_layer *l, bool buffers, tg_tensor **list, int *k) {
    for (int i = 0; i < (buffers ? l->n_buffers : l->n_params); i++) list[(*k)++] = buffers ? l->buffers[i] : l->params[i];
    for (int i = 0; i < l->n_children; i++) gather(l->children[i], buffers, list, k);
}

/* A new list of l's parameters then (with_buffers) buffers, each in tree
 * order (a layer's own, then its children's); the old list it replaces is
 * kept until the model is freed, so arrays handed out stay valid. */
static tg_tensor **relist(tg_model *m, const tg_layer *l, bool with_buffers, tg_tensor **old, int *n_out) {
    int np = count_tensors(l, false), n = np + (with_buffers ? count_tensors(l, true) : 0);
    if (!tg__reserve((void **)&m->retired, m->n_retired, &m->cap_retired, sizeof *m->retired)) return NULL;
    tg_tensor **list = tg__malloc((size_t)(n ? n : 1) * sizeof *list);
    if (!list) return NULL;
    int k = 0;
    gather(l, false, list, &k);
    if (with_buffers) gather(l, true, list, &k);
    if (old) m->retired[m->n_retired++] = old;
    *n_out = n;
    return list;
}

/* The model's lists, made again after every change to its tensors: the
 * accessors only read them (several threads may call them on a shared model). */
static int update_lists(tg_model *m) {
    int np, ns;
    tg_tensor **p = relist(m, &m->root, false, m->params, &np);
    if (!p) return tg_fail(TG_ERR_NOMEM, "model: out of memory");
    m->params = p, m->n_params = np;
    tg_tensor **s = relist(m, &m->root, true, m->state, &ns);
    if (!s) return tg_fail(TG_ERR_NOMEM, "model: out of memory");
    m->state = s, m->n_state = ns;
    m->version++;
    return 0;
}

/* A name a layer or tensor may have: letters, digits, '_'; shorter than max. */
static bool valid_name(const char *s, size_t max) {
    if (!s || !s[0] || strlen(s) >= max) return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_') return false;
    return true;
}

/* path + "." + name into out (just name under the root); false if it does not fit. */
static bool join(char *out, const char *path, const char *name) {
    int n = snprintf(out, TG_NAME_MAX, "%s%s%s", path, path[0] ? "." : "", name);
    return n >= 0 && n < TG_NAME_MAX;
}

static tg_layer *container(tg_model *m) { return m->n_open ? m->open[m->n_open - 1] : &m->root; }

static bool sibling_named(const tg_layer *parent, const tg_layer *self, const char *name) {
    for (int i = 0; i < parent->n_children; i++)
        if (parent->children[i] != self && strcmp(parent->children[i]->name, name) == 0) return true;
    return false;
}

/* A new layer, appended to the open block and named by its index there. */
static tg_layer *layer_new(tg_model *m, const char *kind) {
    if (!m) {
        tg_fail(TG_ERR_ARG, "model: %s added to a NULL model", kind);
        return NULL;
    }
    tg_layer *parent = container(m), *l = tg__calloc(1, sizeof *l);
    if (!l ||
        !tg__reserve((void **)&parent->children, parent->n_children, &parent->cap_children, sizeof *parent->children)) {
        tg__free(l);
        tg_fail(TG_ERR_NOMEM, "model: out of memory");
        model_failed(m);
        return NULL;
    }
    snprintf(l->kind, sizeof l->kind, "%s", kind);
    snprintf(l->name, sizeof l->name, "%d", parent->n_children);
    if (sibling_named(parent, NULL, l->name) || !join(l->path, parent->path, l->name)) {
        tg__free(l);
        tg_fail(TG_ERR_ARG, "model: %s: the name %s%s%s is taken or too long", kind, parent->path,
                parent->path[0] ? "." : "", l->name);
        model_failed(m);
        return NULL;
    }
    l->parent = parent == &m->root ? NULL : parent;
    l->model = m;
    l->training = parent->training;
    parent->children[parent->n_children++] = l;
    return l;
}

/* A layer that failed to build: taken out of its parent and freed; the model fails. */
static tg_layer *failed(tg_model *m, tg_layer *l) {
    if (!m->error[0]) snprintf(m->error, sizeof m->error, "model: layer %s (%s): %s", l->path, l->kind, tg_last_error());
    tg_layer *parent = l->parent ? l->parent : &m->root;
    for (int i = 0; i < parent->n_children; i++)
        if (parent->children[i] == l) {
            memmove(parent->children + i, parent->children + i + 1,
                    (size_t)(parent->n_children - i - 1) * sizeof *parent->children);
            parent->n_children--;
            break;
        }
    for (int i = 0; i < m->n_open; i++)
        if (m->open[i] == l) m->n_open = i;
    layer_release(l);
    tg__free(l);
    update_lists(m);
    return NULL;
}

/* l's tensor of the given name, param or buffer, registered and named "<path>.<name>". */
static tg_tensor *register_tensor(tg_layer *l, bool param, const char *name, int ndim, const int *shape,
                                  tg_param_init init) {
    const char *who = param ? "layer_param" : "layer_buffer";
    if (!l) {
        tg_fail(TG_ERR_ARG, "%s: layer is NULL", who);
        return NULL;
    }
    tg_model *m = l->model;
    char full[TG_NAME_MAX];
    if (!valid_name(name, TG_NAME_MAX) || !join(full, l->path, name)) {
        tg_model_fail(m, TG_ERR_ARG, "%s: %s: the name \"%s\" must be letters, digits and '_', and %s.%s shorter "
                      "than %d characters", who, l->path, name ? name : "(NULL)", l->path, name ? name : "",
                      TG_NAME_MAX);
        return NULL;
    }
    for (int i = 0; i < l->n_params + l->n_buffers; i++) {
        const tg_tensor *x = i < l->n_params ? l->params[i] : l->buffers[i - l->n_params];
        if (strcmp(x->name, full) == 0) {
            tg_model_fail(m, TG_ERR_ARG, "%s: layer %s already has a tensor named %s", who, l->path, name);
            return NULL;
        }
    }
    if (param && (unsigned)init > TG_PARAM_ONES) {
        tg_model_fail(m, TG_ERR_ARG, "%s: %s: unknown init %d", who, full, (int)init);
        return NULL;
    }
    bool room;
    if (param) {
        room = tg__reserve((void **)&l->params, l->n_params, &l->cap_params, sizeof *l->params);
        tg_param_init *pi = room ? tg__realloc(l->param_init, (size_t)l->cap_params * sizeof *pi) : NULL;
        if (pi) l->param_init = pi;
        room = pi != NULL;
    } else {
        room = tg__reserve((void **)&l->buffers, l->n_buffers, &l->cap_buffers, sizeof *l->buffers);
    }
    tg_tensor *x = room ? (param ? tg_param_new(ndim, shape) : tg_tensor_new(ndim, shape)) : NULL;
    if (!x) {
        if (!room) tg_fail(TG_ERR_NOMEM, "%s: out of memory", who);
        model_failed(m);
        return NULL;
    }
    tg_tensor_set_name(x, full);
    if (param) {
        l->param_init[l->n_params] = init;
        l->params[l->n_params++] = x;
    } else {
        l->buffers[l->n_buffers++] = x;
    }
    if (update_lists(m) < 0) {
        model_failed(m);
        return NULL;
    }
    return x;
}

/* PyTorch's default for conv and linear layers (kaiming_uniform_ with a = sqrt(5)):
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the weight, and for the bias with the weight's fan_in. */
static void uniform(tg_tensor *x, float bound, uint64_t *rng) {
    for (int64_t i = 0; x && i < x->size; i++) x->data[i] = bound * (2.0f * tg_rand_uniform(rng) - 1.0f);
}

tg_tensor *tg_layer_param(tg_layer *l, const char *name, int ndim, const int *shape, tg_param_init init) {
    tg_tensor *x = register_tensor(l, true, name, ndim, shape, init);
    if (!x) return NULL;
    if (init == TG_PARAM_WEIGHT) uniform(x, 1.0f / sqrtf((float)(x->size / (x->ndim ? x->shape[0] : 1))), &l->model->rng);
    for (int64_t i = 0; init == TG_PARAM_ONES && i < x->size; i++) x->data[i] = 1.0f;
    return x;
}

tg_tensor *tg_layer_buffer(tg_layer *l, const char *name, int ndim, const int *shape, float value) {
    tg_tensor *x = register_tensor(l, false, name, ndim, shape, TG_PARAM_ZEROS);
    for (int64_t i = 0; x && i < x->size; i++) x->data[i] = value;
    return x;
}

/* Renames l's tensors and the layers inside it after l's path changed from
 * one of old_len characters to l->path. */
static void rename_below(tg_layer *l, const tg_layer *top, size_t old_len) {
    char buf[TG_NAME_MAX];
    for (int i = 0; i < l->n_params + l->n_buffers; i++) {
        tg_tensor *x = i < l->n_params ? l->params[i] : l->buffers[i - l->n_params];
        snprintf(buf, sizeof buf, "%s%s", top->path, x->name + old_len);
        tg_tensor_set_name(x, buf);
    }
    for (int i = 0; i < l->n_children; i++) {
        tg_layer *c = l->children[i];
        snprintf(buf, sizeof buf, "%s%s", top->path, c->path + old_len);
        memcpy(c->path, buf, sizeof c->path);
        rename_below(c, top, old_len);
    }
}

/* The longest tensor or layer name under l, to check a rename fits. */
static size_t longest_below(const tg_layer *l) {
    size_t n = strlen(l->path);
    for (int i = 0; i < l->n_params + l->n_buffers; i++) {
        size_t k = strlen(i < l->n_params ? l->params[i]->name : l->buffers[i - l->n_params]->name);
        n = k > n ? k : n;
    }
    for (int i = 0; i < l->n_children; i++) {
        size_t k = longest_below(l->children[i]);
        n = k > n ? k : n;
    }
    return n;
}

tg_layer *tg_layer_set_name(tg_layer *l, const char *name) {
    if (!l) return NULL; /* the layer failed to build: its message stands */
    tg_layer *parent = l->parent ? l->parent : &l->model->root;
    char path[TG_NAME_MAX];
    if (!valid_name(name, sizeof l->name) || !join(path, parent->path, name)) {
        tg_model_fail(l->model, TG_ERR_ARG, "layer_set_name: %s: \"%s\" must be 1 to %d letters, digits and '_'",
                      l->path, name ? name : "(NULL)", (int)sizeof l->name - 1);
        return NULL;
    }
    if (sibling_named(parent, l, name)) {
        tg_model_fail(l->model, TG_ERR_ARG, "layer_set_name: %s: a layer beside it is already named %s", l->path, name);
        return NULL;
    }
    size_t old_len = strlen(l->path);
    if (longest_below(l) - old_len + strlen(path) >= TG_NAME_MAX) {
        tg_model_fail(l->model, TG_ERR_ARG, "layer_set_name: %s: renamed %s, a tensor's name would reach %d characters",
                      l->path, name, TG_NAME_MAX);
        return NULL;
    }
    snprintf(l->name, sizeof l->name, "%s", name);
    memcpy(l->path, path, sizeof path);
    rename_below(l, l, old_len);
    return l;
}

tg_layer *tg_model_custom(tg_model *m, const char *kind, tg_forward_fn forward, void *ctx) {
    if (m && !forward) {
        tg_model_fail(m, TG_ERR_ARG, "model_custom: %s has no forward (a sequential block is tg_model_begin's)",
                      kind ? kind : "the layer");
        return NULL;
    }
    tg_layer *l = layer_new(m, kind ? kind : "custom");
    if (!l) return NULL;
    l->type = TG_LAYER_CUSTOM, l->forward = forward, l->ctx = ctx;
    return l;
}

tg_layer *tg_model_begin(tg_model *m, const char *kind, tg_forward_fn forward, void *ctx) {
    if (m && m->n_open == MAX_OPEN) {
        tg_model_fail(m, TG_ERR_ARG, "model_begin: more than %d blocks open at once", MAX_OPEN);
        return NULL;
    }
    tg_layer *l = layer_new(m, kind ? kind : forward ? "custom" : "sequential");
    if (!l) return NULL;
    l->type = forward ? TG_LAYER_CUSTOM : TG_LAYER_SEQUENTIAL, l->forward = forward, l->ctx = ctx;
    m->open[m->n_open++] = l;
    return l;
}

tg_layer *tg_model_end(tg_model *m) {
    if (!m) {
        tg_fail(TG_ERR_ARG, "model_end: model is NULL");
        return NULL;
    }
    if (!m->n_open) {
        tg_model_fail(m, TG_ERR_STATE, "model_end: no block is open");
        return NULL;
    }
    return m->open[--m->n_open];
}

void tg_layer_train(tg_layer *l, bool training) {
    if (!l) return;
    l->training = training;
    for (int i = 0; i < l->n_children; i++) tg_layer_train(l->children[i], training);
}

int tg_layer_params(tg_layer *l, tg_tensor ***params) {
    if (!l || !params) return tg_fail(TG_ERR_ARG, "layer_params: %s is NULL", !l ? "layer" : "params");
    tg_model *m = l->model;
    int n = count_tensors(l, false);
    if (!l->all_params || l->all_params_version != m->version) { /* made again only after a change */
        tg_tensor **list = relist(m, l, false, l->all_params, &n);
        if (!list) return tg_fail(TG_ERR_NOMEM, "layer_params: out of memory");
        l->all_params = list, l->all_params_version = m->version;
    }
    *params = l->all_params;
    return n;
}

// ----------------------------------------------------------------------------
// running layers

static tg_tensor *run_children(tg_layer *l, tg_tape *t, tg_tensor *x);

/* Batch norm's num_batches_tracked, as PyTorch counts it: one per forward in
 * training mode. A float counts exactly to 2^24 (16,777,216 batches); it stops
 * there rather than lose its exactness. */
static void count_batch(tg_layer *l, const tg_tensor *y, bool training) {
    float *n = l->buffers[2]->data;
    if (y && training && *n < 16777216.0f) *n += 1.0f;
}

/* conv2d layer l's output side for an input side of n (the model's convs have dilation 1; in 64
 * bits, and below 1 when the kernel does not fit) */
static int64_t conv_side(const tg_layer *l, int n) {
    int64_t in = (int64_t)n + 2 * (int64_t)l->attr.conv.pad;
    return in < l->attr.conv.kernel ? 0 : (in - l->attr.conv.kernel) / l->attr.conv.stride + 1;
}

/* A max_pool layer of the kind the ops fuse: kernel 2, stride 2 */
static bool pools_2x2(const tg_layer *l) {
    return l && l->type == TG_LAYER_MAX_POOL && l->attr.pool.kernel == 2 && l->attr.pool.stride == 2;
}

/* Runs l, with add and act after it, and with pool (act is then the ReLU) a 2x2 stride-2 max
 * pooling: fused into the op when the op has the epilogue (batch norm: all three; conv2d: the act,
 * and the pooling without add), else as ops of their own. */
static tg_tensor *run(tg_layer *l, tg_tape *t, tg_tensor *x, tg_tensor *add, tg_act act, bool pool) {
    if (!x) return NULL; /* an earlier op failed: keep its message */
    tg_model *m = l->model;
    const char *outer = tg_tape_scope(t);
    if (tg_tape_set_scope(t, l->path) < 0) return NULL;
    bool training = l->training && !m->evaluating, pooled = false;
    const tg_layer_attr *a = &l->attr;
    tg_tensor *y;
    if (l->type == TG_LAYER_BATCH_NORM) {
        y = pool ? tg_batch_norm_relu_max_pool(t, x, l->params[0], l->params[1], l->buffers[0], l->buffers[1],
                                               training, a->batch_norm.momentum, a->batch_norm.eps, add)
                 : tg_batch_norm_act(t, x, l->params[0], l->params[1], l->buffers[0], l->buffers[1], training,
                                     a->batch_norm.momentum, a->batch_norm.eps, add, act);
        count_batch(l, y, training);
        add = NULL, act = TG_ACT_NONE, pooled = pool;
    } else if (l->type == TG_LAYER_CONV2D && !add) {
        tg_tensor *b = a->conv.bias ? l->params[1] : NULL;
        y = pool ? tg_conv2d_relu_max_pool(t, x, l->params[0], b, a->conv.stride, a->conv.pad, 1, a->conv.groups)
                 : tg_conv2d_act(t, x, l->params[0], b, a->conv.stride, a->conv.pad, 1, a->conv.groups, act);
        act = TG_ACT_NONE, pooled = pool;
    } else {
        y = l->forward ? l->forward(l, t, x, training) : run_children(l, t, x);
    }
    if (y && add) y = tg_residual_add_act(t, y, add, act);
    else if (y && act == TG_ACT_RELU) y = tg_relu(t, y);
    int pre[TG_MAX_DIMS]; /* probing: the output's shape before the pooling */
    if (y) memcpy(pre, y->shape, sizeof pre);
    if (y && pooled) /* the op's own output, before its pooling */
        for (int i = 2; i < 4; i++) pre[i] = l->type == TG_LAYER_CONV2D ? (int)conv_side(l, x->shape[i]) : x->shape[i];
    if (y && pool && !pooled) y = tg_max_pool2d(t, y, 2, 2, 0);
    tg_tape_set_scope(t, outer); /* already on the tape: not copied again */
    if (!y && !failed_layer) failed_layer = l;
    if (y && m->probing) {
        l->out_ndim = y->ndim;
        memcpy(l->out_shape, pool ? pre : y->shape, sizeof l->out_shape);
        if (pool) memcpy(m->pre_pool, pre, sizeof pre);
    }
    return y;
}

/* A sequential block: its layers in order, a conv2d or batch norm followed by
 * a relu run as one op (conv2d+relu, batch_norm+relu; the relu records the
 * same output shape), and with a 2x2 stride-2 max pooling after the relu too
 * (conv2d+relu+max_pool2d, batch_norm+relu+max_pool2d); a block followed by
 * that pooling may take it on (tg_layer_pool_here). */
static tg_tensor *run_children(tg_layer *l, tg_tape *t, tg_tensor *x) {
    for (int i = 0; i < l->n_children && x; i++) {
        tg_layer *c = l->children[i], *next = i + 1 < l->n_children ? l->children[i + 1] : NULL;
        tg_layer *after = i + 2 < l->n_children ? l->children[i + 2] : NULL;
        bool fuse = next && next->type == TG_LAYER_RELU &&
                    (c->type == TG_LAYER_CONV2D || c->type == TG_LAYER_BATCH_NORM);
        /* (an output too small to pool, or an input not an image, is left to the ops to refuse) */
        bool pool = fuse && pools_2x2(after) && x->ndim == 4 &&
                    (c->type == TG_LAYER_CONV2D ? conv_side(c, x->shape[2]) >= 2 && conv_side(c, x->shape[3]) >= 2
                                                : x->shape[2] >= 2 && x->shape[3] >= 2);
        c->pool_offered = !fuse && c->forward && pools_2x2(next), c->pool_taken = false;
        x = run(c, t, x, NULL, fuse ? TG_ACT_RELU : TG_ACT_NONE, pool);
        bool taken = c->pool_offered && c->pool_taken;
        c->pool_offered = c->pool_taken = false;
        if (fuse && x) {
            if (l->model->probing)
                next->out_ndim = c->out_ndim, memcpy(next->out_shape, c->out_shape, sizeof c->out_shape);
            i++;
        }
        if ((pool || taken) && x) {
            tg_layer *p = pool ? after : next;
            if (l->model->probing) {
                p->out_ndim = x->ndim, memcpy(p->out_shape, x->shape, sizeof x->shape);
                if (taken) memcpy(c->out_shape, l->model->pre_pool, sizeof c->out_shape);
            }
            i++;
        }
    }
    return x;
}

tg_tensor *tg_layer_forward(tg_layer *l, tg_tape *t, tg_tensor *x) { return tg_layer_forward_act(l, t, x, NULL, TG_ACT_NONE); }

tg_tensor *tg_layer_forward_act(tg_layer *l, tg_tape *t, tg_tensor *x, tg_tensor *add, tg_act act) {
    if (!l || !t) {
        tg_fail(TG_ERR_ARG, "layer_forward: %s is NULL", !l ? "layer" : "tape");
        return NULL;
    }
    if ((unsigned)act > TG_ACT_RELU) {
        tg_fail(TG_ERR_ARG, "layer_forward: %s: unknown activation %d", l->path, (int)act);
        return NULL;
    }
    if (!x && !tg_last_error_code()) tg_fail(TG_ERR_ARG, "layer_forward: %s: input is NULL", l->path);
    return run(l, t, x, add, act, false);
}

tg_tensor *tg_layer_forward_pool(tg_layer *l, tg_tape *t, tg_tensor *x, tg_tensor *add) {
    if (!l || !t) {
        tg_fail(TG_ERR_ARG, "layer_forward_pool: %s is NULL", !l ? "layer" : "tape");
        return NULL;
    }
    if (!x && !tg_last_error_code()) tg_fail(TG_ERR_ARG, "layer_forward_pool: %s: input is NULL", l->path);
    return run(l, t, x, add, TG_ACT_RELU, true);
}

bool tg_layer_pool_here(tg_layer *block) {
    if (!block || !block->pool_offered) return false;
    block->pool_taken = true;
    return true;
}

/* "3.0" for the layer tg_model_layer(m, 3)->children[0] */
static void index_path(const tg_layer *l, char *buf, size_t len) {
    const tg_layer *parent = l->parent ? l->parent : &l->model->root;
    char up[TG_NAME_MAX] = "";
    if (l->parent) index_path(l->parent, up, sizeof up);
    int i = 0;
    while (i < parent->n_children && parent->children[i] != l) i++;
    snprintf(buf, len, "%s%s%d", up, up[0] ? "." : "", i);
}

tg_tensor *tg_model_forward(tg_model *m, tg_tape *t, tg_tensor *x) {
    if (!m || !t) {
        tg_fail(TG_ERR_ARG, !m ? "model: NULL model" : "model_forward: tape is NULL");
        return NULL;
    }
    if (m->error[0]) {
        tg_fail(TG_ERR_ARG, "%s", m->error);
        return NULL;
    }
    if (m->n_open) {
        tg_fail(TG_ERR_STATE, "model_forward: block %s (%s) was begun and not ended (tg_model_end)",
                m->open[m->n_open - 1]->path, m->open[m->n_open - 1]->kind);
        return NULL;
    }
    if (!x) { /* an earlier op failed: keep its message */
        if (!tg_last_error_code()) tg_fail(TG_ERR_ARG, "model_forward: input is NULL");
        return NULL;
    }
    failed_layer = NULL;
    tg_tensor *y = run(&m->root, t, x, NULL, TG_ACT_NONE, false);
    if (!y && failed_layer && failed_layer != &m->root) {
        char msg[512], where[TG_NAME_MAX];
        const tg_layer *l = failed_layer;
        snprintf(msg, sizeof msg, "%s", tg_last_error());
        index_path(l, where, sizeof where);
        if (strcmp(where, l->path) == 0) tg_fail(tg_last_error_code(), "model_forward: layer %s (%s): %s", where, l->kind, msg);
        else tg_fail(tg_last_error_code(), "model_forward: layer %s \"%s\" (%s): %s", where, l->path, l->kind, msg);
    }
    failed_layer = NULL;
    return y;
}

bool tg__model_evaluating(tg_model *m, bool on) {
    bool was = m->evaluating;
    m->evaluating = on;
    return was;
}

// ----------------------------------------------------------------------------
// what the model holds

void tg_model_train(tg_model *m, bool training) {
    if (m) tg_layer_train(&m->root, training);
}
bool tg_model_training(const tg_model *m) { return m && m->root.training; }
int tg_model_layer_count(const tg_model *m) { return m ? m->root.n_children : 0; }
tg_layer *tg_model_layer(const tg_model *m, int i) {
    return m && i >= 0 && i < m->root.n_children ? m->root.children[i] : NULL;
}

tg_layer *tg_model_find(const tg_model *m, const char *path) {
    if (!m || !path) return NULL;
    const tg_layer *l = &m->root;
    while (*path) {
        size_t n = strcspn(path, ".");
        const tg_layer *next = NULL;
        for (int i = 0; i < l->n_children && !next; i++)
            if (strlen(l->children[i]->name) == n && strncmp(l->children[i]->name, path, n) == 0) next = l->children[i];
        if (!next) return NULL;
        l = next;
        path += n + (path[n] == '.');
    }
    return l == &m->root ? NULL : (tg_layer *)l;
}

/* The lists are made as the model is built: reading them is safe from several threads. */
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
    for (int i = 0; m && i < m->n_params; i++) n += m->params[i]->size;
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
    for (int i = 0; m && i < m->n_params; i++) tg_tensor_zero_grad(m->params[i]);
}

// ----------------------------------------------------------------------------
// the summary

static void attributes(const tg_layer *l, char *buf, size_t len) {
    const tg_layer_attr *a = &l->attr;
    buf[0] = '\0';
    switch (l->type) {
    case TG_LAYER_LINEAR: snprintf(buf, len, "%d->%d bias=%s", a->linear.in, a->linear.out, a->linear.bias ? "yes" : "no"); break;
    case TG_LAYER_CONV2D:
    case TG_LAYER_CONV_TRANSPOSE2D:
        snprintf(buf, len, "%d->%d kernel=%d stride=%d pad=%d dilation=1 groups=%d bias=%s", a->conv.in, a->conv.out,
                 a->conv.kernel, a->conv.stride, a->conv.pad, a->conv.groups, a->conv.bias ? "yes" : "no");
        break;
    case TG_LAYER_BATCH_NORM:
        snprintf(buf, len, "%d eps=%g momentum=%g", a->batch_norm.channels, (double)a->batch_norm.eps,
                 (double)a->batch_norm.momentum);
        break;
    case TG_LAYER_DROPOUT: snprintf(buf, len, "p=%g", (double)a->dropout.p); break;
    case TG_LAYER_MAX_POOL:
    case TG_LAYER_AVG_POOL: snprintf(buf, len, "kernel=%d stride=%d pad=0", a->pool.kernel, a->pool.stride); break;
    case TG_LAYER_UPSAMPLE:
        snprintf(buf, len, "factor=%d %s", a->upsample.factor,
                 a->upsample.mode == TG_UPSAMPLE_BILINEAR ? "bilinear" : "nearest");
        break;
    default: snprintf(buf, len, "%s", l->info); break;
    }
}

static int64_t elements(const tg_layer *l, bool buffers, bool trainable_only) {
    int64_t n = 0;
    for (int i = 0; i < (buffers ? l->n_buffers : l->n_params); i++) {
        const tg_tensor *x = buffers ? l->buffers[i] : l->params[i];
        if (!trainable_only || x->requires_grad) n += x->size;
    }
    for (int i = 0; i < l->n_children; i++) n += elements(l->children[i], buffers, trainable_only);
    return n;
}

static void print_layer(const tg_layer *l, int depth, bool shapes, FILE *f) {
    char attr[160], shape[48] = "-";
    attributes(l, attr, sizeof attr);
    if (shapes && l->out_ndim > 0) {
        int k = 0;
        for (int i = 0; i < l->out_ndim; i++) k += snprintf(shape + k, sizeof shape - (size_t)k, i ? "x%d" : "%d", l->out_shape[i]);
    }
    fprintf(f, "%*s%-*s %-17s %-62s %-16s %10lld\n", 2 * depth, "", 18 - 2 * depth > 1 ? 18 - 2 * depth : 1, l->path,
            l->kind, attr, shape, (long long)elements(l, false, false));
    for (int i = 0; i < l->n_children; i++) print_layer(l->children[i], depth + 1, shapes, f);
}

static void forget_shapes(tg_layer *l) {
    l->out_ndim = 0;
    for (int i = 0; i < l->n_children; i++) forget_shapes(l->children[i]);
}

int tg_model_print(tg_model *m, FILE *f, int ndim, const int *input_shape) {
    if (!m || !f) return tg_fail(TG_ERR_ARG, "model_print: %s is NULL", !m ? "model" : "file");
    if (ndim && (ndim < 2 || ndim > TG_MAX_DIMS || !input_shape))
        return tg_fail(TG_ERR_ARG, "model_print: an input shape has 2 to %d dimensions (ndim %d%s)", TG_MAX_DIMS, ndim,
                       input_shape ? "" : ", shape NULL");
    int rc = 0;
    char in[48] = "", out[48] = "";
    tg_tensor *y = NULL;
    tg_tape *t = NULL;
    if (ndim) {
        if (!(t = tg_tape_new())) return TG_ERR_NOMEM;
        tg_tape_set_grad_enabled(t, false);
        tg_tensor *x = tg_tensor_tape(t, ndim, input_shape);
        bool was = tg__model_evaluating(m, true);
        m->probing = true;
        forget_shapes(&m->root);
        y = x ? tg_model_forward(m, t, x) : NULL;
        m->probing = false;
        tg__model_evaluating(m, was);
        if (x) tg_shape_str(x, in, sizeof in);
        if (y) tg_shape_str(y, out, sizeof out);
        if (!y) rc = tg_last_error_code() ? tg_last_error_code() : TG_ERR_ARG;
    }
    fprintf(f, "%-18s %-17s %-62s %-16s %10s\n", "layer", "kind", "attributes", ndim ? "output" : "", "params");
    for (int i = 0; i < m->root.n_children; i++) print_layer(m->root.children[i], 0, ndim > 0, f);
    int64_t all = elements(&m->root, false, false), trainable = elements(&m->root, false, true);
    int64_t buffers = elements(&m->root, true, false);
    fprintf(f, "total: %lld parameters (%lld trainable), %lld buffer elements, %.2f MiB of float32\n", (long long)all,
            (long long)trainable, (long long)buffers, (double)(all + buffers) * 4 / (1 << 20));
    if (ndim && y) fprintf(f, "input %s -> output %s\n", in, out);
    else if (ndim) fprintf(f, "input %s: %s\n", in, tg_last_error());
    if (rc) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", tg_last_error());
        tg_fail(rc, "model_print: %s", msg);
    }
    tg_tape_free(t);
    return rc;
}

// ----------------------------------------------------------------------------
// built-in layers: each a constructor and, unless the conv2d or batch norm
// path in run handles it, a forward

static tg_tensor *linear_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    return tg_linear(t, x, l->params[0], l->attr.linear.bias ? l->params[1] : NULL);
}

/* A weight and, if outputs > 0, a bias of that many elements, of a conv or linear layer:
 * PyTorch's default initialisation with fan_in. */
static bool weight_bias(tg_layer *l, int ndim, const int *shape, int outputs, float fan_in) {
    tg_tensor *w = register_tensor(l, true, "weight", ndim, shape, TG_PARAM_WEIGHT);
    tg_tensor *b = w && outputs ? register_tensor(l, true, "bias", 1, &outputs, TG_PARAM_ZEROS) : NULL;
    if (!w || (outputs && !b)) return false;
    float bound = 1.0f / sqrtf(fan_in);
    uniform(w, bound, &l->model->rng);
    uniform(b, bound, &l->model->rng);
    return true;
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
    if (!weight_bias(l, 2, (int[]){out, in}, bias ? out : 0, (float)in)) return failed(m, l);
    return l;
}

static tg_tensor *conv_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    const tg_layer_attr *a = &l->attr;
    return tg_conv2d(t, x, l->params[0], a->conv.bias ? l->params[1] : NULL, a->conv.stride, a->conv.pad, 1,
                     a->conv.groups);
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
    l->type = TG_LAYER_CONV2D, l->forward = conv_fwd; /* run fuses a relu after it (tg_conv2d_act) */
    l->attr.conv.in = in, l->attr.conv.out = out, l->attr.conv.kernel = kernel, l->attr.conv.stride = stride;
    l->attr.conv.pad = pad, l->attr.conv.groups = groups, l->attr.conv.bias = bias;
    if (!weight_bias(l, 4, (int[]){out, in / groups, kernel, kernel}, bias ? out : 0, (float)(in / groups * kernel * kernel)))
        return failed(m, l);
    return l;
}

tg_layer *tg_model_conv2d(tg_model *m, int in, int out, int kernel, int stride, int pad, bool bias) {
    return tg_model_conv2d_groups(m, in, out, kernel, stride, pad, 1, bias);
}

static tg_tensor *bn_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    const tg_layer_attr *a = &l->attr;
    tg_tensor *y = tg_batch_norm(t, x, l->params[0], l->params[1], l->buffers[0], l->buffers[1], training,
                                 a->batch_norm.momentum, a->batch_norm.eps);
    count_batch(l, y, training);
    return y;
}

tg_layer *tg_model_batch_norm(tg_model *m, int channels) {
    tg_layer *l = layer_new(m, "batch_norm");
    if (!l) return NULL;
    if (channels < 1) {
        tg_fail(TG_ERR_ARG, "batch_norm: %d channels", channels);
        return failed(m, l);
    }
    l->type = TG_LAYER_BATCH_NORM, l->forward = bn_fwd; /* run fuses an add and a relu after it */
    l->attr.batch_norm.channels = channels, l->attr.batch_norm.momentum = 0.1f, l->attr.batch_norm.eps = 1e-5f;
    const int c[1] = {channels};
    if (!tg_layer_param(l, "weight", 1, c, TG_PARAM_ONES) || !tg_layer_param(l, "bias", 1, c, TG_PARAM_ZEROS) ||
        !tg_layer_buffer(l, "running_mean", 1, c, 0.0f) || !tg_layer_buffer(l, "running_var", 1, c, 1.0f) ||
        !tg_layer_buffer(l, TG_BATCH_COUNTER, 0, NULL, 0.0f))
        return failed(m, l);
    return l;
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
    return l;
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
    return l;
}

tg_layer *tg_model_max_pool(tg_model *m, int kernel, int stride) {
    return pool(m, TG_LAYER_MAX_POOL, "max_pool2d", kernel, stride);
}
tg_layer *tg_model_avg_pool(tg_model *m, int kernel, int stride) {
    return pool(m, TG_LAYER_AVG_POOL, "avg_pool2d", kernel, stride);
}

static tg_tensor *relu_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)l, (void)training;
    return tg_relu(t, x);
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
static tg_layer *plain(tg_model *m, tg_layer_type type, const char *kind, tg_forward_fn fwd) {
    tg_layer *l = layer_new(m, kind);
    if (l) l->type = type, l->forward = fwd;
    return l;
}

tg_layer *tg_model_relu(tg_model *m) { return plain(m, TG_LAYER_RELU, "relu", relu_fwd); }
tg_layer *tg_model_global_avg_pool(tg_model *m) { return plain(m, TG_LAYER_GLOBAL_AVG_POOL, "global_avg_pool", gap_fwd); }
tg_layer *tg_model_flatten(tg_model *m) { return plain(m, TG_LAYER_FLATTEN, "flatten", flatten_fwd); }
tg_layer *tg_model_sigmoid(tg_model *m) { return plain(m, TG_LAYER_SIGMOID, "sigmoid", sigmoid_fwd); }

static tg_tensor *convt_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    const tg_layer_attr *a = &l->attr;
    return tg_conv_transpose2d(t, x, l->params[0], a->conv.bias ? l->params[1] : NULL, a->conv.stride, a->conv.pad,
                               0, 1, 1);
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
    if (!weight_bias(l, 4, (int[]){in, out, kernel, kernel}, bias ? out : 0, (float)out * (float)kernel * (float)kernel))
        return failed(m, l);
    return l;
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
    return l;
}
