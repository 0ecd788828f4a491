/* shape.c: reshape and flatten; the output shares the input's data. */
#include "internal.h"
#include "ops.h"
#include <string.h>

typedef struct {
    int ndim;
    int shape[TG_MAX_DIMS];
} reshape_attr;

static int reshape_shape(tg_node *n, int *ndim, int *shape) {
    const reshape_attr *a = n->attr;
    const tg_tensor *x = n->in[0];
    char sx[64];
    if (a->ndim < 0 || a->ndim > TG_MAX_DIMS)
        return tg_fail(TG_ERR_ARG, "reshape: %d dimensions, at most %d are supported", a->ndim, TG_MAX_DIMS);
    int64_t known = 1; /* the given dimensions' product, which stops growing past x->size: no overflow */
    int infer = -1;
    for (int i = 0; i < a->ndim; i++) {
        if (a->shape[i] == -1 && infer < 0) infer = i;
        else if (a->shape[i] < 1)
            return tg_fail(TG_ERR_ARG, "reshape: dimension %d is %d (only one -1 is allowed)", i, a->shape[i]);
        else if (known <= x->size) known *= a->shape[i];
        shape[i] = a->shape[i];
    }
    if (infer >= 0 && known <= x->size && x->size % known == 0) shape[infer] = (int)(x->size / known), known = x->size;
    if (known != x->size) {
        char want[64] = "a scalar";
        for (int i = 0, o = 0; i < a->ndim; i++)
            o += snprintf(want + o, sizeof want - (size_t)o, "%s%d", i ? "x" : "", a->shape[i]);
        return tg_fail(TG_ERR_SHAPE, "reshape: cannot view %s (%lld elements) as %s", tg_shape_str(x, sx, sizeof sx),
                       (long long)x->size, want);
    }
    *ndim = a->ndim;
    return 0;
}

static int reshape_forward(tg_tape *t, tg_node *n) {
    (void)t, (void)n; /* out->data is x->data */
    return 0;
}

// dx += dy (same elements, other shape)
static int reshape_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    float *dx = n->in[0]->grad;
    const float *dy = n->out->grad;
    int64_t size = n->out->size;
    bool set = n->store[0]; /* dx holds nothing yet: copy, don't add */
    TG_FOR_BLOCKS(size, i, k) {
        if (set) memcpy(dx + i, dy + i, (size_t)k * sizeof *dx);
        else
            for (int64_t j = i; j < i + k; j++) dx[j] += dy[j];
    }
    return 0;
}

/* FLOPs: none, the output is the input's data */
static int64_t reshape_flops(const tg_node *n) {
    (void)n;
    return 0;
}

static void reshape_describe(const tg_node *n, char *buf, size_t len) {
    char s[64];
    snprintf(buf, len, "to=%s", tg_shape_str(n->out, s, sizeof s));
}

const tg_op tg__op_reshape = {.name = "reshape", .attr_size = sizeof(reshape_attr), .shape = reshape_shape,
                              .forward = reshape_forward, .vjp = reshape_vjp, .describe = reshape_describe, .overwrites_grads = true,
                              .flops = reshape_flops, .aliases_input = true};

tg_tensor *tg_reshape(tg_tape *t, tg_tensor *x, int ndim, const int *shape) {
    reshape_attr a = {.ndim = ndim}; /* an ndim out of range is refused by reshape_shape, naming it */
    if (x && ndim > 0 && !shape) {
        tg_fail(TG_ERR_ARG, "reshape: shape is NULL for %d dimensions", ndim);
        return NULL;
    }
    if (ndim > 0 && ndim <= TG_MAX_DIMS && shape) memcpy(a.shape, shape, (size_t)ndim * sizeof(int));
    return tg_apply(t, &tg__op_reshape, &x, 1, &a);
}

tg_tensor *tg_flatten(tg_tape *t, tg_tensor *x) {
    if (!x) { /* an earlier op failed: keep its message */
        if (!tg_last_error_code()) tg_fail(TG_ERR_ARG, "flatten: input 0 is NULL");
        return NULL;
    }
    if (t && tg__check_tensor("flatten", t, x, "input 0") < 0) return NULL;
    return tg_reshape(t, x, 2, (int[]){x->ndim ? x->shape[0] : 1, -1});
}
