/* shape.c: reshape and flatten, whose output shares the input's data; cat, which copies. */
#include "internal.h"
#include "ops.h"
#include <limits.h>
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
    /* out->data is x->data; with the batch split across processes, a view that keeps the samples apart */
    const tg_tensor *x = n->in[0], *y = n->out;
    if (tg_tape_batch_split(t) && (x->ndim < 1 || y->ndim < 1 || x->shape[0] != y->shape[0])) {
        char sx[64], sy[64];
        return tg_fail(TG_ERR_SHAPE, "reshape: %s to %s mixes the samples of a batch split across processes (keep "
                       "the first dimension)", tg_shape_str(x, sx, sizeof sx), tg_shape_str(y, sy, sizeof sy));
    }
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

/* FLOPs, forward and backward: none; reshape's output is the input's data, cat only copies (and
 * their vjps copy, or add, dy into the inputs' gradients: counted as copies) */
static int64_t no_flops(const tg_node *n) {
    (void)n;
    return 0;
}

static void reshape_describe(const tg_node *n, char *buf, size_t len) {
    char s[64];
    snprintf(buf, len, "to=%s", tg_shape_str(n->out, s, sizeof s));
}

/* Flatten for (N,...) -> (N,rest); else Reshape, whose 0 keeps the batch, whatever its size */
static int reshape_onnx(const tg_node *n, tg_onnx *g) {
    const tg_tensor *x = n->in[0], *y = n->out;
    bool batched = tg_onnx_batched(g, x);
    if (batched && (y->ndim < 1 || y->shape[0] != x->shape[0])) {
        char sx[64], sy[64];
        return tg_fail(TG_ERR_SHAPE, "reshape: %s to %s: the batch (dimension 0, %d) is not kept as dimension 0",
                       tg_shape_str(x, sx, sizeof sx), tg_shape_str(y, sy, sizeof sy), x->shape[0]);
    }
    const char *in[2] = {tg_onnx_name(g, x), NULL}, *out = tg_onnx_name(g, y);
    if (!in[0] || !out) return tg_last_error_code();
    if (batched && y->ndim == 2) {
        int rc = tg_onnx_node(g, "Flatten", in, 1, &out, 1);
        return rc ? rc : tg_onnx_attr_int(g, "axis", 1);
    }
    int64_t shape[TG_MAX_DIMS], nd = y->ndim;
    for (int i = 0; i < y->ndim; i++) shape[i] = i == 0 && batched ? 0 : y->shape[i];
    if (!(in[1] = tg_onnx_const_int64s(g, "shape", 1, &nd, shape))) return tg_last_error_code();
    return tg_onnx_node(g, "Reshape", in, 2, &out, 1);
}

const tg_op tg__op_reshape = {.name = "reshape", .attr_size = sizeof(reshape_attr), .shape = reshape_shape,
                              .forward = reshape_forward, .vjp = reshape_vjp, .describe = reshape_describe, .overwrites_grads = true,
                              .flops = no_flops, .flops_backward = no_flops, .aliases_input = true,
                              .onnx = reshape_onnx, .batch_split = true};

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

// ----------------------------------------------------------------------------
// cat: torch.cat, inputs side by side along one dimension

typedef struct {
    int dim; /* as given; cat_shape turns a negative one into its index from 0 */
} cat_attr;

static int cat_shape(tg_node *n, int *ndim, int *shape) {
    cat_attr *a = n->attr;
    const tg_tensor *x0 = n->in[0];
    int nd = x0->ndim, d = a->dim;
    char s0[64], sk[64];
    if (nd == 0) return tg_fail(TG_ERR_SHAPE, "cat: input 0 is a scalar: there is no dimension to concatenate along");
    if (d < -nd || d >= nd)
        return tg_fail(TG_ERR_ARG, "cat: dim %d is out of range for %d-dimensional inputs (-%d to %d)", d, nd, nd,
                       nd - 1);
    if (d < 0) d += nd;
    a->dim = d; /* once, here: forward, vjp and describe read the index */
    int64_t along = 0;
    for (int k = 0; k < n->n_in; k++) {
        const tg_tensor *x = n->in[k];
        if (x->ndim != nd)
            return tg_fail(TG_ERR_SHAPE, "cat: input %d has %d dimensions (%s) but input 0 has %d (%s)", k, x->ndim,
                           tg_shape_str(x, sk, sizeof sk), nd, tg_shape_str(x0, s0, sizeof s0));
        for (int i = 0; i < nd; i++)
            if (i != d && x->shape[i] != x0->shape[i])
                return tg_fail(TG_ERR_SHAPE, "cat: input %d is %s but input 0 is %s: dimension %d differs (%d vs %d); "
                               "only dimension %d (dim) may", k, tg_shape_str(x, sk, sizeof sk),
                               tg_shape_str(x0, s0, sizeof s0), i, x->shape[i], x0->shape[i], d);
        along += x->shape[d];
    }
    if (along > INT_MAX)
        return tg_fail(TG_ERR_SHAPE, "cat: dimension %d would be %lld long, more than %d", d, (long long)along, INT_MAX);
    *ndim = nd;
    for (int i = 0; i < nd; i++) shape[i] = i == d ? (int)along : x0->shape[i];
    return 0;
}

/* The output is outer runs (outer: the product of the dimensions before dim); in each,
 * input k's run of len[k] elements follows those of the inputs before it. */
static int64_t cat_runs(const tg_node *n, int64_t *len) {
    int d = ((const cat_attr *)n->attr)->dim;
    int64_t outer = 1;
    for (int i = 0; i < d; i++) outer *= n->out->shape[i];
    for (int k = 0; k < n->n_in; k++) len[k] = n->in[k]->size / outer;
    return outer;
}

static int cat_forward(tg_tape *t, tg_node *n) {
    (void)t;
    int64_t len[TG_MAX_INPUTS], outer = cat_runs(n, len);
    float *y = n->out->data;
    for (int64_t o = 0; o < outer; o++)
        for (int k = 0; k < n->n_in; k++) {
            memcpy(y, n->in[k]->data + o * len[k], (size_t)len[k] * sizeof *y);
            y += len[k];
        }
    return 0;
}

// dx_k (=, +=) its runs of dy
static int cat_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    int64_t len[TG_MAX_INPUTS], outer = cat_runs(n, len), row = n->out->size / outer, at = 0;
    for (int k = 0; k < n->n_in; at += len[k], k++) {
        if (!n->in[k]->requires_grad) continue;
        for (int64_t o = 0; o < outer; o++) {
            const float *dy = n->out->grad + o * row + at;
            float *dx = n->in[k]->grad + o * len[k];
            /* dx holds nothing yet: copy (a tensor given twice is stored at its first place, added at the next) */
            if (n->store[k]) memcpy(dx, dy, (size_t)len[k] * sizeof *dx);
            else
                for (int64_t j = 0; j < len[k]; j++) dx[j] += dy[j];
        }
    }
    return 0;
}

static void cat_describe(const tg_node *n, char *buf, size_t len) {
    snprintf(buf, len, "dim=%d inputs=%d", ((const cat_attr *)n->attr)->dim, n->n_in);
}

static int cat_onnx(const tg_node *n, tg_onnx *g) {
    int rc = tg__onnx_simple(n, g, "Concat");
    return rc ? rc : tg_onnx_attr_int(g, "axis", ((const cat_attr *)n->attr)->dim); /* from 0: cat_shape set it */
}

const tg_op tg__op_cat = {.name = "cat", .attr_size = sizeof(cat_attr), .shape = cat_shape, .forward = cat_forward,
                          .vjp = cat_vjp, .describe = cat_describe, .flops = no_flops, .flops_backward = no_flops,
                          .overwrites_grads = true, .onnx = cat_onnx};

tg_tensor *tg_cat(tg_tape *t, tg_tensor *const *xs, int n, int dim) {
    if (n < 1 || n > TG_MAX_INPUTS) {
        tg_fail(TG_ERR_ARG, "cat: n is %d, must be 1 to %d", n, TG_MAX_INPUTS);
        return NULL;
    }
    if (!xs) {
        tg_fail(TG_ERR_ARG, "cat: xs is NULL for %d tensors", n);
        return NULL;
    }
    tg_tensor *in[TG_MAX_INPUTS]; /* tg_apply takes a mutable array; it changes nothing in it */
    memcpy(in, xs, (size_t)n * sizeof *in);
    cat_attr a = {dim};
    return tg_apply(t, &tg__op_cat, in, n, &a); /* a NULL element: an earlier op failed, its message is kept */
}
