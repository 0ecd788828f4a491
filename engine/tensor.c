/* tensor.c: heap and tape tensors, shapes, gradient buffers, how messages and dumps name a tensor. */
#include "internal.h"
#include <string.h>

int64_t tg__numel(int ndim, const int *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

/* Shapes come from callers: check them before any allocation. */
int tg__check_shape(const char *who, int ndim, const int *shape) {
    if (ndim < 0 || ndim > TG_MAX_DIMS)
        return tg_fail(TG_ERR_ARG, "%s: %d dimensions, at most %d are supported", who, ndim, TG_MAX_DIMS);
    if (ndim > 0 && !shape) return tg_fail(TG_ERR_ARG, "%s: shape is NULL", who);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1) return tg_fail(TG_ERR_ARG, "%s: dimension %d is %d, must be at least 1", who, i, shape[i]);
        n *= shape[i];
        if (n > TG_MAX_ELEMENTS)
            return tg_fail(TG_ERR_ARG, "%s: more than %d elements", who, TG_MAX_ELEMENTS);
    }
    return 0;
}

static void set_shape(tg_tensor *x, int ndim, const int *shape) {
    x->ndim = ndim;
    for (int i = 0; i < TG_MAX_DIMS; i++) x->shape[i] = i < ndim ? shape[i] : 1;
    x->size = tg__numel(ndim, shape);
}

tg_tensor *tg_tensor_new(int ndim, const int *shape) {
    if (tg__check_shape("tensor_new", ndim, shape) < 0) return NULL;
    tg_tensor *x = tg__calloc(1, sizeof *x);
    if (!x) goto oom;
    set_shape(x, ndim, shape);
    x->on_heap = true;
    x->data = tg__calloc((size_t)x->size, sizeof(float));
    if (!x->data) goto oom;
    return x;
oom:
    tg__free(x);
    tg_fail(TG_ERR_NOMEM, "tensor_new: out of memory");
    return NULL;
}

tg_tensor *tg_param_new(int ndim, const int *shape) {
    tg_tensor *x = tg_tensor_new(ndim, shape);
    if (x && tg_tensor_set_requires_grad(x, true) < 0) {
        tg_tensor_free(x);
        return NULL;
    }
    return x;
}

void tg_tensor_free(tg_tensor *x) {
    if (!x || !x->on_heap) return;
    tg__free(x->data);
    tg__free(x->grad);
    tg__free(x);
}

tg_tensor *tg__tensor_arena(tg_tape *t, int ndim, const int *shape, bool zero) {
    tg_tensor *x = tg__arena_alloc(&t->arena, sizeof *x);
    if (!x) goto oom;
    memset(x, 0, sizeof *x);
    set_shape(x, ndim, shape);
    x->tape = t;
    x->generation = t->generation;
    x->data = tg__arena_alloc(&t->arena, (size_t)x->size * sizeof(float));
    if (!x->data) goto oom;
    if (zero) memset(x->data, 0, (size_t)x->size * sizeof(float));
    return x;
oom:
    tg_fail(TG_ERR_NOMEM, "tape: out of memory (arena at %zu bytes)", t->arena.used);
    return NULL;
}

tg_tensor *tg_tensor_tape(tg_tape *t, int ndim, const int *shape) {
    if (!t) {
        tg_fail(TG_ERR_ARG, "tensor_tape: tape is NULL");
        return NULL;
    }
    if (tg__check_shape("tensor_tape", ndim, shape) < 0) return NULL;
    return tg__tensor_arena(t, ndim, shape, true);
}

int tg_tensor_set_requires_grad(tg_tensor *x, bool on) {
    if (!x) return tg_fail(TG_ERR_ARG, "set_requires_grad: tensor is NULL");
    if (on && !x->on_heap && !x->grad)
        return tg_fail(TG_ERR_ARG, "set_requires_grad: only heap tensors (tg_tensor_new) can become leaves");
    if (on && !x->grad) {
        x->grad = tg__calloc((size_t)x->size, sizeof(float));
        if (!x->grad) return tg_fail(TG_ERR_NOMEM, "set_requires_grad: out of memory");
    }
    x->requires_grad = on;
    return 0;
}

void tg_tensor_zero_grad(tg_tensor *x) {
    if (x && x->grad) memset(x->grad, 0, (size_t)x->size * sizeof(float));
}

void tg_tensor_set_name(tg_tensor *x, const char *name) {
    if (!x) return;
    snprintf(x->name, sizeof x->name, "%s", name ? name : "");
}

char *tg_shape_str(const tg_tensor *x, char *buf, size_t len) {
    if (!buf || !len) return buf;
    buf[0] = '\0';
    if (!x) {
        snprintf(buf, len, "null");
        return buf;
    }
    if (x->ndim == 0) {
        snprintf(buf, len, "scalar");
        return buf;
    }
    size_t o = 0;
    for (int i = 0; i < x->ndim && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, i ? "x%d" : "%d", x->shape[i]);
    return buf;
}

/* Used by the tape's messages and by dumps: a leaf that takes a gradient is a parameter. */
const char *tg__label(const tg_tensor *x, char *buf, size_t len) {
    if (x->node) snprintf(buf, len, "%%%d", x->node->id);
    else snprintf(buf, len, "%s", x->name[0] ? x->name : x->requires_grad ? "param" : "input");
    return buf;
}

bool tg_same_shape(const tg_tensor *a, const tg_tensor *b) {
    if (!a || !b) return false;
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}
