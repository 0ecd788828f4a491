/* matmul.c: matmul and linear, both on the GEMM kernel (ops/kernels/gemm.c). */
#include "internal.h"
#include "kernels/kernels.h"
#include "ops.h"
#include <string.h>

// ----------------------------------------------------------------------------
// matmul: a:(M,K) b:(K,N) -> (M,N)

static int matmul_shape(tg_node *n, int *ndim, int *shape) {
    const tg_tensor *a = n->in[0], *b = n->in[1];
    char sa[64], sb[64];
    if (a->ndim != 2 || b->ndim != 2 || a->shape[1] != b->shape[0])
        return tg_fail(TG_ERR_SHAPE, "matmul: needs (M,K) and (K,N) matrices, got %s and %s",
                       tg_shape_str(a, sa, sizeof sa), tg_shape_str(b, sb, sizeof sb));
    *ndim = 2;
    shape[0] = a->shape[0];
    shape[1] = b->shape[1];
    return 0;
}

static int matmul_forward(tg_tape *t, tg_node *n) {
    (void)t;
    const tg_tensor *a = n->in[0], *b = n->in[1];
    int M = a->shape[0], K = a->shape[1], N = b->shape[1];
    n->kernel_forward = tg__sgemm(n->out->data, N, a->data, K, b->data, N, M, N, K, false, false, 1.0f, 0.0f);
    return 0;
}

// da += dy b^T, db += a^T dy
static int matmul_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    tg_tensor *a = n->in[0], *b = n->in[1];
    int M = a->shape[0], K = a->shape[1], N = b->shape[1];
    const float *dy = n->out->grad;
    const char *da = NULL, *db = NULL; /* the products' kernel paths */
    /* beta 0 stores into a gradient that holds nothing yet (a and b given twice: store, then add) */
    if (a->requires_grad)
        da = tg__sgemm(a->grad, K, dy, N, b->data, N, M, K, N, false, true, 1.0f, n->store[0] ? 0.0f : 1.0f);
    if (b->requires_grad)
        db = tg__sgemm(b->grad, N, a->data, K, dy, N, K, N, M, true, false, 1.0f, n->store[1] ? 0.0f : 1.0f);
    n->kernel_backward = tg__gemm_path_join(da, db);
    return 0;
}

/* FLOPs: 2*M*N*K (a multiply and an add per term) */
static int64_t matmul_flops(const tg_node *n) {
    return 2 * (int64_t)n->in[0]->shape[0] * n->in[1]->shape[1] * n->in[0]->shape[1];
}

/* Backward FLOPs: 2*M*N*K for da = dy b^T and as many for db = a^T dy, for each that is computed */
static int64_t matmul_flops_backward(const tg_node *n) {
    return matmul_flops(n) * (n->in[0]->requires_grad + n->in[1]->requires_grad);
}

/* MatMul; a product that sums over the batch (b computed from the input) has no graph for any batch */
static int matmul_onnx(const tg_node *n, tg_onnx *g) {
    if (tg_onnx_batched(g, n->in[1]))
        return tg_fail(TG_ERR_SHAPE,
                       "matmul: its second input is computed from the input, so the product sums over the batch, "
                       "and the exported graph's batch is symbolic");
    return tg__onnx_simple(n, g, "MatMul");
}

const tg_op tg__op_matmul = {.name = "matmul", .shape = matmul_shape, .forward = matmul_forward, .vjp = matmul_vjp,
                             .flops = matmul_flops, .flops_backward = matmul_flops_backward,
                             .overwrites_grads = true, .onnx = matmul_onnx};

tg_tensor *tg_matmul(tg_tape *t, tg_tensor *a, tg_tensor *b) {
    return tg_apply(t, &tg__op_matmul, (tg_tensor *[]){a, b}, 2, NULL);
}

// ----------------------------------------------------------------------------
// linear: x:(N,I) w:(O,I) b:(O) -> (N,O) = x w^T + b

static int linear_shape(tg_node *n, int *ndim, int *shape) {
    const tg_tensor *x = n->in[0], *w = n->in[1], *b = n->n_in > 2 ? n->in[2] : NULL;
    char sx[64], sw[64], sb[64];
    if (x->ndim != 2 || w->ndim != 2 || x->shape[1] != w->shape[1])
        return tg_fail(TG_ERR_SHAPE, "linear: input has %d features but weight expects %d (x %s, w %s)",
                       x->ndim == 2 ? x->shape[1] : -1, w->ndim == 2 ? w->shape[1] : -1,
                       tg_shape_str(x, sx, sizeof sx), tg_shape_str(w, sw, sizeof sw));
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
        return tg_fail(TG_ERR_SHAPE, "linear: bias has shape %s but weight has %d outputs (w %s)",
                       tg_shape_str(b, sb, sizeof sb), w->shape[0], tg_shape_str(w, sw, sizeof sw));
    *ndim = 2;
    shape[0] = x->shape[0];
    shape[1] = w->shape[0];
    return 0;
}

static int linear_forward(tg_tape *t, tg_node *n) {
    const tg_tensor *x = n->in[0], *w = n->in[1], *b = n->n_in > 2 ? n->in[2] : NULL;
    int N = x->shape[0], I = x->shape[1], O = w->shape[0];
    tg__split sp, *split; /* each row alone */
    if (tg__split_of(t, "linear", N, &sp, &split) < 0) return TG_ERR_SHAPE;
    float *y = n->out->data;
    if (b)
        for (int i = 0; i < N; i++)
            for (int o = 0; o < O; o++) y[(size_t)i * O + o] = b->data[o];
    /* split: the path of the global batch's product, so that each row is what it would be there */
    n->kernel_forward = tg__sgemm_rows_of(y, O, x->data, I, w->data, I, N, O, I, false, true, 1.0f, b ? 1.0f : 0.0f,
                                          split ? split->global : N);
    return 0;
}

/* With the batch split across processes: the global batch's rows of x (if xs) and dy gathered, so
 * that dw and db are the single-process products; NULL (message set) if out of memory. */
static int gather_rows(tg_tape *t, tg__split *s, const float *x, int I, const float *dy, int O, const float **xs,
                       const float **dys) {
    size_t G = (size_t)s->global, at = (size_t)s->first, n = (size_t)s->count;
    float *xa = xs ? tg_tape_alloc(t, G * I * sizeof(float)) : NULL, *dya = tg_tape_alloc(t, G * O * sizeof(float));
    if (!dya || (xs && !xa)) return TG_ERR_NOMEM;
    memcpy(dya + at * O, dy, n * O * sizeof(float));
    tg__split_gather(s, dya, (size_t)O * sizeof(float), false);
    if (xs) {
        memcpy(xa + at * I, x, n * I * sizeof(float));
        tg__split_gather(s, xa, (size_t)I * sizeof(float), false);
        *xs = xa;
    }
    *dys = dya;
    return s->rc;
}

// dx += dy w, dw += dy^T x, db += sum over rows of dy
static int linear_vjp(tg_tape *t, tg_node *n) {
    tg_tensor *x = n->in[0], *w = n->in[1], *b = n->n_in > 2 ? n->in[2] : NULL;
    int N = x->shape[0], I = x->shape[1], O = w->shape[0];
    const float *dy = n->out->grad;
    const char *dx = NULL, *dw = NULL; /* the products' kernel paths */
    /* beta 0 stores into a gradient that holds nothing yet */
    if (x->requires_grad)
        dx = tg__sgemm(x->grad, I, dy, O, w->data, I, N, I, O, false, false, 1.0f, n->store[0] ? 0.0f : 1.0f);
    /* dw and db sum over the batch: across processes, over the global batch's rows */
    tg__split sp, *split;
    const float *xs = x->data, *dys = dy;
    int rows = N;
    if (tg__split_of(t, "linear", N, &sp, &split) < 0) return TG_ERR_SHAPE;
    if (split && (w->requires_grad || (b && b->requires_grad))) {
        if (gather_rows(t, split, x->data, I, dy, O, w->requires_grad ? &xs : NULL, &dys) < 0)
            return tg_last_error_code();
        rows = split->global;
    }
    if (w->requires_grad)
        dw = tg__sgemm(w->grad, I, dys, O, xs, I, O, I, rows, true, false, 1.0f, n->store[1] ? 0.0f : 1.0f);
    n->kernel_backward = tg__gemm_path_join(dx, dw);
    if (b && n->store[2]) memset(b->grad, 0, (size_t)O * sizeof(float));
    if (b && b->requires_grad)
        for (int i = 0; i < rows; i++)
            for (int o = 0; o < O; o++) b->grad[o] += dys[(size_t)i * O + o];
    return 0;
}

/* FLOPs: 2*N*I*O, plus N*O bias adds */
static int64_t linear_flops(const tg_node *n) {
    int64_t N = n->in[0]->shape[0], I = n->in[0]->shape[1], O = n->in[1]->shape[0];
    return 2 * N * I * O + (n->n_in > 2 ? N * O : 0);
}

/* Backward FLOPs: 2*N*I*O for dx = dy w and as many for dw = dy^T x, N*O adds for db, for each computed */
static int64_t linear_flops_backward(const tg_node *n) {
    int64_t N = n->in[0]->shape[0], I = n->in[0]->shape[1], O = n->in[1]->shape[0];
    return 2 * N * I * O * (n->in[0]->requires_grad + n->in[1]->requires_grad) +
           (n->n_in > 2 && n->in[2]->requires_grad ? N * O : 0);
}

/* Gemm with transB: the weight stays (out, in) under its own name */
static int linear_onnx(const tg_node *n, tg_onnx *g) {
    int rc = tg__onnx_simple(n, g, "Gemm");
    return rc ? rc : tg_onnx_attr_int(g, "transB", 1);
}

const tg_op tg__op_linear = {.name = "linear", .shape = linear_shape, .forward = linear_forward, .vjp = linear_vjp,
                             .flops = linear_flops, .flops_backward = linear_flops_backward,
                             .overwrites_grads = true, .onnx = linear_onnx, .batch_split = true};

tg_tensor *tg_linear(tg_tape *t, tg_tensor *x, tg_tensor *w, tg_tensor *b) {
    return tg_apply(t, &tg__op_linear, (tg_tensor *[]){x, w, b}, b ? 3 : 2, NULL);
}
