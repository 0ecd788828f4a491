/* elementwise.c: add, sub, mul with NumPy broadcasting; relu, relu6, hardswish, sigmoid, tanh;
 * the reductions sum and mean. */
#include "internal.h"
#include "kernels/kernels.h"
#include "ops.h"
#include <math.h>

// ----------------------------------------------------------------------------
// broadcasting: shapes align on the right, a dimension of 1 stretches

static int broadcast_shape(tg_node *n, int *ndim, int *shape) {
    const tg_tensor *a = n->in[0], *b = n->in[1];
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < nd; i++) {
        int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
        int da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char sa[64], sb[64];
            return tg_fail(TG_ERR_SHAPE, "%s: shapes %s and %s do not broadcast (dimension %d: %d vs %d)",
                           n->op->name, tg_shape_str(a, sa, sizeof sa), tg_shape_str(b, sb, sizeof sb), i, da,
                           db);
        }
        shape[i] = da > db ? da : db;
    }
    *ndim = nd;
    return 0;
}

/* Strides of x seen as an output of 4 dimensions (right-aligned); 0 where x stretches. */
static void broadcast_strides(const tg_tensor *x, const tg_tensor *out, int64_t *s) {
    int off = 4 - x->ndim, ooff = 4 - out->ndim;
    int64_t st = 1;
    for (int i = 3; i >= 0; i--) {
        int d = i >= off ? x->shape[i - off] : 1;
        int od = i >= ooff ? out->shape[i - ooff] : 1;
        s[i] = (d == 1 && od != 1) ? 0 : st;
        st *= d;
    }
}

/* Runs BODY for every output element with ia, ib, io indexing a, b and out. */
#define BROADCAST_LOOP(n, BODY)                                                         \
    do {                                                                                \
        const tg_tensor *a_ = (n)->in[0], *b_ = (n)->in[1], *o_ = (n)->out;             \
        if (tg_same_shape(a_, b_)) {                                                    \
            for (int64_t io = 0; io < o_->size; io++) {                                 \
                int64_t ia = io, ib = io;                                               \
                (void)ia, (void)ib;                                                     \
                BODY;                                                                   \
            }                                                                           \
            break;                                                                      \
        }                                                                               \
        int64_t sa[4], sb[4];                                                           \
        int d[4];                                                                       \
        broadcast_strides(a_, o_, sa);                                                  \
        broadcast_strides(b_, o_, sb);                                                  \
        for (int i = 0; i < 4; i++) d[i] = i >= 4 - o_->ndim ? o_->shape[i - (4 - o_->ndim)] : 1; \
        int64_t io = 0;                                                                 \
        for (int i0 = 0; i0 < d[0]; i0++)                                               \
            for (int i1 = 0; i1 < d[1]; i1++)                                           \
                for (int i2 = 0; i2 < d[2]; i2++) {                                     \
                    int64_t ia = i0 * sa[0] + i1 * sa[1] + i2 * sa[2];                  \
                    int64_t ib = i0 * sb[0] + i1 * sb[1] + i2 * sb[2];                  \
                    for (int i3 = 0; i3 < d[3]; i3++, io++, ia += sa[3], ib += sb[3]) { \
                        BODY;                                                           \
                    }                                                                   \
                }                                                                       \
    } while (0)

// ----------------------------------------------------------------------------
// add, sub, mul

static int add_forward(tg_tape *t, tg_node *n) {
    (void)t;
    const float *a = n->in[0]->data, *b = n->in[1]->data;
    float *y = n->out->data;
    BROADCAST_LOOP(n, y[io] = a[ia] + b[ib]);
    return 0;
}

// da += dy, db += dy (summed over stretched dimensions)
static int add_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    const float *dy = n->out->grad;
    float *da = n->in[0]->requires_grad ? n->in[0]->grad : NULL;
    float *db = n->in[1]->requires_grad ? n->in[1]->grad : NULL;
    if (da) BROADCAST_LOOP(n, da[ia] += dy[io]);
    if (db) BROADCAST_LOOP(n, db[ib] += dy[io]);
    return 0;
}

static int sub_forward(tg_tape *t, tg_node *n) {
    (void)t;
    const float *a = n->in[0]->data, *b = n->in[1]->data;
    float *y = n->out->data;
    BROADCAST_LOOP(n, y[io] = a[ia] - b[ib]);
    return 0;
}

// da += dy, db -= dy
static int sub_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    const float *dy = n->out->grad;
    float *da = n->in[0]->requires_grad ? n->in[0]->grad : NULL;
    float *db = n->in[1]->requires_grad ? n->in[1]->grad : NULL;
    if (da) BROADCAST_LOOP(n, da[ia] += dy[io]);
    if (db) BROADCAST_LOOP(n, db[ib] -= dy[io]);
    return 0;
}

static int mul_forward(tg_tape *t, tg_node *n) {
    (void)t;
    const float *a = n->in[0]->data, *b = n->in[1]->data;
    float *y = n->out->data;
    BROADCAST_LOOP(n, y[io] = a[ia] * b[ib]);
    return 0;
}

// da += dy * b, db += dy * a
static int mul_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    const float *dy = n->out->grad, *a = n->in[0]->data, *b = n->in[1]->data;
    float *da = n->in[0]->requires_grad ? n->in[0]->grad : NULL;
    float *db = n->in[1]->requires_grad ? n->in[1]->grad : NULL;
    if (da) BROADCAST_LOOP(n, da[ia] += dy[io] * b[ib]);
    if (db) BROADCAST_LOOP(n, db[ib] += dy[io] * a[ia]);
    return 0;
}

/* FLOPs of every elementwise op: one per output element (a transcendental counts as one). */
static int64_t per_output_flops(const tg_node *n) { return n->out->size; }

/* The inputs among the first two whose gradient the vjp computes */
static int64_t grads_of2(const tg_node *n) { return n->in[0]->requires_grad + n->in[1]->requires_grad; }

/* Backward FLOPs of add and sub: one add into each gradient computed per output element (the
 * sum over a stretched dimension included); of mul, a multiply and that add */
static int64_t add_flops_backward(const tg_node *n) { return n->out->size * grads_of2(n); }
static int64_t mul_flops_backward(const tg_node *n) { return 2 * n->out->size * grads_of2(n); }

/* Bytes of add's and sub's vjp: they read dy only, not the inputs (and each gradient as the engine counts it) */
static int64_t add_bytes(const tg_node *n, bool backward) {
    if (!backward) return -1;
    int64_t b = 4 * n->out->size;
    for (int i = 0; i < 2; i++)
        if (n->in[i]->requires_grad) b += (n->store[i] ? 4 : 8) * n->in[i]->size;
    return b;
}

/* ONNX's Add, Sub and Mul broadcast as NumPy does, as these do */
static int add_onnx(const tg_node *n, tg_onnx *g) { return tg__onnx_simple(n, g, "Add"); }
static int sub_onnx(const tg_node *n, tg_onnx *g) { return tg__onnx_simple(n, g, "Sub"); }
static int mul_onnx(const tg_node *n, tg_onnx *g) { return tg__onnx_simple(n, g, "Mul"); }

const tg_op tg__op_add = {.name = "add", .shape = broadcast_shape, .forward = add_forward, .vjp = add_vjp,
                          .flops = per_output_flops, .flops_backward = add_flops_backward, .bytes = add_bytes,
                          .onnx = add_onnx};
const tg_op tg__op_sub = {.name = "sub", .shape = broadcast_shape, .forward = sub_forward, .vjp = sub_vjp,
                          .flops = per_output_flops, .flops_backward = add_flops_backward, .bytes = add_bytes,
                          .onnx = sub_onnx};
const tg_op tg__op_mul = {.name = "mul", .shape = broadcast_shape, .forward = mul_forward, .vjp = mul_vjp,
                          .flops = per_output_flops, .flops_backward = mul_flops_backward, .onnx = mul_onnx};

tg_tensor *tg_add(tg_tape *t, tg_tensor *a, tg_tensor *b) { return tg_apply(t, &tg__op_add, (tg_tensor *[]){a, b}, 2, NULL); }
tg_tensor *tg_sub(tg_tape *t, tg_tensor *a, tg_tensor *b) { return tg_apply(t, &tg__op_sub, (tg_tensor *[]){a, b}, 2, NULL); }
tg_tensor *tg_mul(tg_tape *t, tg_tensor *a, tg_tensor *b) { return tg_apply(t, &tg__op_mul, (tg_tensor *[]){a, b}, 2, NULL); }

// ----------------------------------------------------------------------------
// unary: relu, relu6, hardswish, sigmoid, tanh; the VJPs of relu, sigmoid and tanh use the output y only

static int same_shape(tg_node *n, int *ndim, int *shape) {
    *ndim = n->in[0]->ndim;
    for (int i = 0; i < *ndim; i++) shape[i] = n->in[0]->shape[i];
    return 0;
}

/* relu and the residual adds run in blocks over threads (TG_FOR_BLOCKS), each
 * block one call of a memory-bound kernel (ops/kernels/elementwise.c). */

static int relu_forward(tg_tape *t, tg_node *n) {
    (void)t;
    const float *x = n->in[0]->data;
    float *y = n->out->data;
    int64_t size = n->out->size;
    TG_FOR_BLOCKS(size, i, k) tg__add_relu(y + i, x + i, NULL, k, true);
    return 0;
}

// dx += dy where not y <= 0 (y > 0, or NaN: PyTorch's threshold_backward)
static int relu_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    const float *y = n->out->data, *dy = n->out->grad;
    float *dx = n->in[0]->grad;
    int64_t size = n->out->size;
    bool set = n->store[0]; /* dx holds nothing yet: store, don't add */
    TG_FOR_BLOCKS(size, i, k) tg__relu_backward(dx + i, dy + i, y + i, k, set);
    return 0;
}

/* relu6 and hardswish: plain loops, each block of TG_FOR_BLOCKS one call. The comparisons
 * are PyTorch's (clamp, hardtanh_backward, hardswish and its backward as their scalar code
 * reads), so NaN falls through every test: it stays NaN, and its gradient is dy. */

static void relu6_block(float *y, const float *x, int64_t n) {
    for (int64_t j = 0; j < n; j++) y[j] = x[j] < 0.0f ? 0.0f : x[j] > 6.0f ? 6.0f : x[j]; /* -0 stays -0 */
}

// dx (=, +=) dy where not x <= 0 and not x >= 6 (0 < x < 6, or NaN)
static void relu6_backward_block(float *dx, const float *dy, const float *x, int64_t n, bool set) {
    for (int64_t j = 0; j < n; j++) {
        float d = x[j] <= 0.0f || x[j] >= 6.0f ? 0.0f : dy[j];
        dx[j] = set ? d : dx[j] + d;
    }
}

/* x <= -3: +0; x >= 3: x itself; between, x (x + 3) / 6, rounded as PyTorch rounds it */
static void hardswish_block(float *y, const float *x, int64_t n) {
    for (int64_t j = 0; j < n; j++) y[j] = x[j] <= -3.0f ? 0.0f : x[j] >= 3.0f ? x[j] : x[j] * (x[j] + 3.0f) / 6.0f;
}

// dx (=, +=) 0 where x < -3, dy (x/3 + 1/2) where x <= 3, else dy (NaN too)
static void hardswish_backward_block(float *dx, const float *dy, const float *x, int64_t n, bool set) {
    for (int64_t j = 0; j < n; j++) {
        float d = x[j] < -3.0f ? 0.0f : x[j] <= 3.0f ? dy[j] * (x[j] / 3.0f + 0.5f) : dy[j];
        dx[j] = set ? d : dx[j] + d;
    }
}

/* one forward and one vjp for both, each calling its op's block */
static int hard_forward(tg_tape *t, tg_node *n) {
    (void)t;
    const float *x = n->in[0]->data;
    float *y = n->out->data;
    void (*block)(float *, const float *, int64_t) = n->op == &tg__op_relu6 ? relu6_block : hardswish_block;
    TG_FOR_BLOCKS(n->out->size, i, k) block(y + i, x + i, k);
    return 0;
}

/* reads x: hardswish's y does not tell x <= -3 from x = 0 */
static int hard_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    const float *x = n->in[0]->data, *dy = n->out->grad;
    float *dx = n->in[0]->grad;
    bool set = n->store[0]; /* dx holds nothing yet: store, don't add */
    void (*block)(float *, const float *, const float *, int64_t, bool) =
        n->op == &tg__op_relu6 ? relu6_backward_block : hardswish_backward_block;
    TG_FOR_BLOCKS(n->out->size, i, k) block(dx + i, dy + i, x + i, k, set);
    return 0;
}

static int sigmoid_forward(tg_tape *t, tg_node *n) {
    (void)t;
    const float *x = n->in[0]->data;
    float *y = n->out->data;
    for (int64_t i = 0; i < n->out->size; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
    return 0;
}

// dx += dy * y * (1 - y)
static int sigmoid_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    const float *y = n->out->data, *dy = n->out->grad;
    float *dx = n->in[0]->grad;
    for (int64_t i = 0; i < n->out->size; i++) dx[i] += dy[i] * y[i] * (1.0f - y[i]);
    return 0;
}

static int tanh_forward(tg_tape *t, tg_node *n) {
    (void)t;
    const float *x = n->in[0]->data;
    float *y = n->out->data;
    for (int64_t i = 0; i < n->out->size; i++) y[i] = tanhf(x[i]);
    return 0;
}

// dx += dy * (1 - y^2)
static int tanh_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    const float *y = n->out->data, *dy = n->out->grad;
    float *dx = n->in[0]->grad;
    for (int64_t i = 0; i < n->out->size; i++) dx[i] += dy[i] * (1.0f - y[i] * y[i]);
    return 0;
}

/* The fraction of outputs where the gradient is (about) zero: ReLU's zeros (dead units), and
 * sigmoids and tanhs with y <= lo or y >= hi (saturated). */
static void flat_fraction(const tg_node *n, float lo, float hi, const char *what, char *buf, size_t len) {
    int64_t k = 0;
    for (int64_t i = 0; i < n->out->size; i++) k += n->out->data[i] <= lo || n->out->data[i] >= hi;
    snprintf(buf, len, "%s=%.1f%%", what, 100.0 * (double)k / (double)n->out->size);
}
static void relu_stats(const tg_node *n, char *buf, size_t len) {
    int64_t k = 0;
    for (int64_t i = 0; i < n->out->size; i++) k += n->out->data[i] == 0.0f;
    snprintf(buf, len, "zeros=%.1f%%", 100.0 * (double)k / (double)n->out->size);
}
static void sigmoid_stats(const tg_node *n, char *buf, size_t len) {
    flat_fraction(n, 0.01f, 0.99f, "saturated", buf, len);
}
static void tanh_stats(const tg_node *n, char *buf, size_t len) { flat_fraction(n, -0.99f, 0.99f, "saturated", buf, len); }
/* relu6: y at 0 or 6, where no gradient passes */
static void relu6_stats(const tg_node *n, char *buf, size_t len) { flat_fraction(n, 0.0f, 6.0f, "saturated", buf, len); }

/* A finding when half the units or more are zero for the whole batch, as the run log's dead_relu
 * over its window: a unit or two silent on one batch is common in a healthy net (1 of 128 in
 * lenet's first steps, a fifth of its hidden layer later on), half is capacity lost */
#define DEAD_SHARE 0.5
void tg__dead_units(const tg_tensor *y, char *buf, size_t len) {
    buf[0] = '\0';
    if (y->ndim < 2 || y->shape[0] < 1 || y->shape[1] < 1) return;
    int64_t N = y->shape[0], C = y->shape[1], L = y->size / (N * C), dead = 0;
    for (int64_t c = 0; c < C; c++) {
        bool zero = true;
        for (int64_t i = 0; i < N && zero; i++)
            for (int64_t j = 0; j < L && zero; j++) zero = y->data[(i * C + c) * L + j] == 0.0f;
        dead += zero;
    }
    if (dead && (double)dead >= DEAD_SHARE * (double)C)
        snprintf(buf, len, "dead: %lld of %lld %s (%.0f%%) zero for every %s of the batch; usual remedies: a lower "
                           "learning rate, He initialisation, a bias that starts at 0, or LeakyReLU", (long long)dead,
                 (long long)C, y->ndim == 2 ? "features" : "channels", 100.0 * (double)dead / (double)C,
                 y->ndim == 2 ? "sample" : "image");
}

static void relu_diagnose(const tg_node *n, char *buf, size_t len) { tg__dead_units(n->out, buf, len); }

/* Backward FLOPs per element: relu one compare-select; relu6 two compares and a select; hardswish two
 * compares, x/3 + 1/2 and the product with dy; sigmoid dy*y*(1-y) and tanh dy*(1-y*y), three each,
 * and the add into dx */
static int64_t relu_flops_backward(const tg_node *n) { return n->out->size; }
static int64_t relu6_flops_backward(const tg_node *n) { return 2 * n->out->size; }
static int64_t hardswish_flops_backward(const tg_node *n) { return 5 * n->out->size; }
static int64_t sigmoid_flops_backward(const tg_node *n) { return 4 * n->out->size; }

static int relu_onnx(const tg_node *n, tg_onnx *g) { return tg__onnx_simple(n, g, "Relu"); }
static int hardswish_onnx(const tg_node *n, tg_onnx *g) { return tg__onnx_simple(n, g, "HardSwish"); }
static int sigmoid_onnx(const tg_node *n, tg_onnx *g) { return tg__onnx_simple(n, g, "Sigmoid"); }
static int tanh_onnx(const tg_node *n, tg_onnx *g) { return tg__onnx_simple(n, g, "Tanh"); }
/* Clip with its bounds as inputs (opset 11 on) */
static int relu6_onnx(const tg_node *n, tg_onnx *g) {
    const float lo = 0.0f, hi = 6.0f;
    const char *in[3] = {tg_onnx_name(g, n->in[0]), tg_onnx_const_floats(g, "min", 0, NULL, &lo),
                         tg_onnx_const_floats(g, "max", 0, NULL, &hi)};
    const char *y = tg_onnx_name(g, n->out);
    if (!in[0] || !in[1] || !in[2] || !y) return tg_last_error_code();
    return tg_onnx_node(g, "Clip", in, 3, &y, 1);
}

const tg_op tg__op_relu = {.name = "relu", .shape = same_shape, .forward = relu_forward, .vjp = relu_vjp,
                           .flops = per_output_flops, .flops_backward = relu_flops_backward, .stats = relu_stats,
                           .diagnose = relu_diagnose, .overwrites_grads = true, .onnx = relu_onnx};
const tg_op tg__op_relu6 = {.name = "relu6", .shape = same_shape, .forward = hard_forward, .vjp = hard_vjp,
                            .flops = per_output_flops, .flops_backward = relu6_flops_backward, .stats = relu6_stats,
                            .overwrites_grads = true, .onnx = relu6_onnx};
/* hardswish's zeros: x <= -3 (dead units), and x = 0 */
const tg_op tg__op_hardswish = {.name = "hardswish", .shape = same_shape, .forward = hard_forward,
                                .vjp = hard_vjp, .flops = per_output_flops,
                                .flops_backward = hardswish_flops_backward, .stats = relu_stats,
                                .overwrites_grads = true, .onnx = hardswish_onnx};
const tg_op tg__op_sigmoid = {.name = "sigmoid", .shape = same_shape, .forward = sigmoid_forward, .vjp = sigmoid_vjp,
                              .flops = per_output_flops, .flops_backward = sigmoid_flops_backward,
                              .stats = sigmoid_stats, .onnx = sigmoid_onnx};
const tg_op tg__op_tanh = {.name = "tanh", .shape = same_shape, .forward = tanh_forward, .vjp = tanh_vjp,
                           .flops = per_output_flops, .flops_backward = sigmoid_flops_backward,
                           .stats = tanh_stats, .onnx = tanh_onnx};

tg_tensor *tg_relu(tg_tape *t, tg_tensor *x) { return tg_apply(t, &tg__op_relu, &x, 1, NULL); }
tg_tensor *tg_relu6(tg_tape *t, tg_tensor *x) { return tg_apply(t, &tg__op_relu6, &x, 1, NULL); }
tg_tensor *tg_hardswish(tg_tape *t, tg_tensor *x) { return tg_apply(t, &tg__op_hardswish, &x, 1, NULL); }
tg_tensor *tg_sigmoid(tg_tape *t, tg_tensor *x) { return tg_apply(t, &tg__op_sigmoid, &x, 1, NULL); }
tg_tensor *tg_tanh(tg_tape *t, tg_tensor *x) { return tg_apply(t, &tg__op_tanh, &x, 1, NULL); }

// ----------------------------------------------------------------------------
// reductions to a scalar: sum and mean (accumulated in double)

static int scalar_shape(tg_node *n, int *ndim, int *shape) {
    (void)n, (void)shape;
    *ndim = 0;
    return 0;
}

static int sum_forward(tg_tape *t, tg_node *n) {
    (void)t;
    double s = 0;
    for (int64_t i = 0; i < n->in[0]->size; i++) s += n->in[0]->data[i];
    n->out->data[0] = (float)(n->op == &tg__op_mean ? s / (double)n->in[0]->size : s);
    return 0;
}

// sum: dx += dy; mean: dx += dy / size
static int sum_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    float g = n->out->grad[0];
    if (n->op == &tg__op_mean) g /= (float)n->in[0]->size;
    float *dx = n->in[0]->grad;
    for (int64_t i = 0; i < n->in[0]->size; i++) dx[i] += g;
    return 0;
}

/* FLOPs: one add per input element (mean's final division not counted). */
static int64_t sum_flops(const tg_node *n) { return n->in[0]->size; }

/* Backward FLOPs: one add into dx per input element (mean's one division not counted), as forward */

const tg_op tg__op_sum = {.name = "sum", .shape = scalar_shape, .forward = sum_forward, .vjp = sum_vjp,
                          .flops = sum_flops, .flops_backward = sum_flops};
const tg_op tg__op_mean = {.name = "mean", .shape = scalar_shape, .forward = sum_forward, .vjp = sum_vjp,
                           .flops = sum_flops, .flops_backward = sum_flops};

tg_tensor *tg_sum(tg_tape *t, tg_tensor *x) { return tg_apply(t, &tg__op_sum, &x, 1, NULL); }
tg_tensor *tg_mean(tg_tape *t, tg_tensor *x) { return tg_apply(t, &tg__op_mean, &x, 1, NULL); }

// ----------------------------------------------------------------------------
// residual_add: y = x + fx for equal shapes, its own node so blocks show in dumps

typedef struct {
    tg_act act; /* TG_ACT_RELU: relu(x + fx) in one pass */
} residual_attr;

static bool residual_relu(const tg_node *n) { return ((const residual_attr *)n->attr)->act == TG_ACT_RELU; }

static int residual_shape(tg_node *n, int *ndim, int *shape) {
    char sa[64], sb[64];
    if (!residual_relu(n) && ((const residual_attr *)n->attr)->act != TG_ACT_NONE)
        return tg_fail(TG_ERR_ARG, "%s: unknown activation %d", n->op->name, (int)((const residual_attr *)n->attr)->act);
    if (!tg_same_shape(n->in[0], n->in[1]))
        return tg_fail(TG_ERR_SHAPE, "%s: shapes %s and %s differ (use a 1x1 conv on the shortcut)", n->op->name,
                       tg_shape_str(n->in[0], sa, sizeof sa), tg_shape_str(n->in[1], sb, sizeof sb));
    return same_shape(n, ndim, shape);
}

/* equal shapes: a flat loop, split over threads */
static int residual_forward(tg_tape *t, tg_node *n) {
    (void)t;
    const float *a = n->in[0]->data, *b = n->in[1]->data;
    float *y = n->out->data;
    int64_t size = n->out->size;
    bool relu = residual_relu(n);
    TG_FOR_BLOCKS(size, i, k) tg__add_relu(y + i, a + i, b + i, k, relu);
    return 0;
}

// dx += dy, dfx += dy (where not y <= 0, with the ReLU epilogue)
static int residual_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    const float *dy = n->out->grad, *y = residual_relu(n) ? n->out->data : NULL;
    int64_t size = n->out->size;
    for (int k = 0; k < 2; k++) {
        if (!n->in[k]->requires_grad) continue;
        float *dx = n->in[k]->grad;
        bool set = n->store[k]; /* dx holds nothing yet: store, don't add */
        TG_FOR_BLOCKS(size, i, m) tg__relu_backward(dx + i, dy + i, y ? y + i : NULL, m, set);
    }
    return 0;
}

/* with the ReLU epilogue: the ReLU's share of zeros */
static void residual_stats(const tg_node *n, char *buf, size_t len) {
    buf[0] = '\0';
    if (residual_relu(n)) relu_stats(n, buf, len);
}

/* Backward FLOPs: per output element, for each of x and fx that takes a gradient, its add (or store)
 * of dy, a compare-select with the ReLU epilogue */
static int64_t residual_flops_backward(const tg_node *n) { return n->out->size * grads_of2(n); }

/* Bytes of the vjp: dy (and y, with the ReLU) read, each gradient written; x and fx are not read */
static int64_t residual_bytes(const tg_node *n, bool backward) {
    if (!backward) return -1;
    int64_t b = (residual_relu(n) ? 8 : 4) * n->out->size;
    for (int i = 0; i < 2; i++)
        if (n->in[i]->requires_grad) b += (n->store[i] ? 4 : 8) * n->in[i]->size;
    return b;
}

static void residual_diagnose(const tg_node *n, char *buf, size_t len) {
    buf[0] = '\0';
    if (residual_relu(n)) tg__dead_units(n->out, buf, len);
}

/* For tape dumps: "residual_add+relu" */
static const char *residual_variant(const tg_node *n) { return residual_relu(n) ? "relu" : NULL; }

/* Add, then Relu when fused */
static int residual_onnx(const tg_node *n, tg_onnx *g) {
    const char *in[2] = {tg_onnx_name(g, n->in[0]), tg_onnx_name(g, n->in[1])};
    const char *y = tg__onnx_pre_relu(n, g, residual_relu(n));
    if (!in[0] || !in[1] || !y) return tg_last_error_code();
    int rc = tg_onnx_node(g, "Add", in, 2, &y, 1);
    return rc || !residual_relu(n) ? rc : tg__onnx_relu(n, g, y);
}

const tg_op tg__op_residual_add = {.name = "residual_add", .attr_size = sizeof(residual_attr),
                                   .shape = residual_shape, .forward = residual_forward, .vjp = residual_vjp,
                                   .flops = per_output_flops, .flops_backward = residual_flops_backward,
                                   .bytes = residual_bytes, .stats = residual_stats, .diagnose = residual_diagnose,
                                   .variant = residual_variant,
                                   .overwrites_grads = true, .onnx = residual_onnx};

tg_tensor *tg_residual_add_act(tg_tape *t, tg_tensor *x, tg_tensor *fx, tg_act act) {
    residual_attr a = {act};
    return tg_apply(t, &tg__op_residual_add, (tg_tensor *[]){x, fx}, 2, &a);
}

tg_tensor *tg_residual_add(tg_tape *t, tg_tensor *x, tg_tensor *fx) { return tg_residual_add_act(t, x, fx, TG_ACT_NONE); }
