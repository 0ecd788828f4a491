/* test_ops_dense.c: elementwise ops (relu6 and hardswish at their kinks, a squeeze-and-excitation
 * gate), matmul and linear, reshape, cat, softmax and cross-entropy on small hand-computed cases and
 * values PyTorch printed, and their errors. */
#include "check.h"
#include "ops.h"
#include "tapegrad.h"

static tg_tensor *make(tg_tape *t, int ndim, const int *shape, const float *v) {
    tg_tensor *x = tg_tensor_tape(t, ndim, shape);
    for (int64_t i = 0; i < x->size; i++) x->data[i] = v[i];
    return x;
}

static tg_tensor *param(int ndim, const int *shape, const float *v) {
    tg_tensor *x = tg_param_new(ndim, shape);
    for (int64_t i = 0; i < x->size; i++) x->data[i] = v[i];
    return x;
}

static void elementwise(void) {
    tg_tape *t = tg_tape_new();
    tg_tensor *a = make(t, 2, (int[]){2, 3}, (float[]){1, 2, 3, 4, 5, 6});
    tg_tensor *b = make(t, 1, (int[]){3}, (float[]){10, 20, 30});
    tg_tensor *y = tg_add(t, a, b);
    const float add[] = {11, 22, 33, 14, 25, 36};
    for (int i = 0; i < 6; i++) CHECK_NEAR(y->data[i], add[i], 0);
    y = tg_sub(t, a, b);
    CHECK_NEAR(y->data[4], -15, 0);
    /* (2,1) * (3): an outer product by broadcasting */
    tg_tensor *c = make(t, 2, (int[]){2, 1}, (float[]){2, -1});
    y = tg_mul(t, c, b);
    CHECK_INT(y->ndim, 2);
    CHECK_INT(y->shape[0], 2);
    CHECK_INT(y->shape[1], 3);
    CHECK_NEAR(y->data[2], 60, 0);
    CHECK_NEAR(y->data[3], -10, 0);
    /* per-channel bias on (N,C,H,W) */
    tg_tensor *img = tg_tensor_tape(t, 4, (int[]){1, 2, 1, 2});
    tg_tensor *bias = make(t, 3, (int[]){2, 1, 1}, (float[]){1, -1});
    y = tg_add(t, img, bias);
    CHECK_NEAR(y->data[0], 1, 0);
    CHECK_NEAR(y->data[1], 1, 0);
    CHECK_NEAR(y->data[2], -1, 0);
    CHECK_NEAR(y->data[3], -1, 0);

    tg_tensor *x = make(t, 1, (int[]){4}, (float[]){-2, -0.5f, 0, 3});
    y = tg_relu(t, x);
    CHECK_NEAR(y->data[0], 0, 0);
    CHECK_NEAR(y->data[3], 3, 0);
    y = tg_sigmoid(t, x);
    CHECK_NEAR(y->data[2], 0.5, 1e-7);
    CHECK_NEAR(y->data[0], 0.11920292, 1e-7);
    y = tg_tanh(t, x);
    CHECK_NEAR(y->data[1], -0.46211716, 1e-7);
    y = tg_sum(t, x);
    CHECK_INT(y->ndim, 0);
    CHECK_NEAR(y->data[0], 0.5, 0);
    y = tg_mean(t, x);
    CHECK_NEAR(y->data[0], 0.125, 0);
    tg_tape_free(t);
}

/* x (N,C,H,W) times a gate (N,C,1,1): dx = dy * gate, dgate = the sum over H,W of dy * x per (n,c) */
static void se_gate(void) {
    tg_tape *t = tg_tape_new();
    tg_tensor *x = param(4, (int[]){2, 2, 1, 2}, (float[]){1, 2, 3, 4, 5, 6, 7, 8});
    tg_tensor *g = param(4, (int[]){2, 2, 1, 1}, (float[]){0.5f, -2, 1, 3});
    tg_tensor *y = tg_mul(t, x, g);
    CHECK_INT(y->ndim, 4);
    CHECK_INT(y->shape[1], 2);
    CHECK_INT(y->shape[3], 2);
    const float fwd[8] = {0.5f, 1, -6, -8, 5, 6, 21, 24};
    for (int i = 0; i < 8; i++) CHECK_NEAR(y->data[i], fwd[i], 0);
    CHECK_INT(tg_backward_seed(t, y, (float[]){1, 0, 2, -1, 0, 1, 1, 1}), 0);
    const float dx[8] = {0.5f, 0, -4, 2, 0, 1, 3, 3}, dg[4] = {1 * 1 + 0 * 2, 2 * 3 - 1 * 4, 0 * 5 + 1 * 6, 7 + 8};
    for (int i = 0; i < 8; i++) CHECK_NEAR(x->grad[i], dx[i], 0);
    for (int i = 0; i < 4; i++) CHECK_NEAR(g->grad[i], dg[i], 0);
    tg_tensor_free(x), tg_tensor_free(g);
    tg_tape_free(t);
}

/* relu6 and hardswish at their kinks, one float either side, and at NaN and the infinities:
 * the values and gradients (dy = 1) PyTorch 1.13 printed for each element alone (its scalar path),
 *   x = torch.tensor([v], requires_grad=True); y = F.hardswish(x); y.backward(torch.ones_like(y))
 * except where tapegrad.h says it differs: +0 where PyTorch gives hardswish -0 below -3, and NaN at -Inf */
static void relu6_hardswish(void) {
    const float nan = NAN, inf = INFINITY;
    const float r6x[9] = {-1, -0.0f, 0, 3, 6, 7, nan, inf, -inf};
    const float r6y[9] = {0, -0.0f, 0, 3, 6, 6, nan, 6, 0}, r6g[9] = {0, 0, 0, 1, 0, 0, 1, 0, 0};
    const float hx[14] = {-4, nextafterf(-3, -4), -3, nextafterf(-3, 0), -1.5f, 0, 1, nextafterf(3, 0), 3,
                          nextafterf(3, 4), 3.5f, nan, inf, -inf};
    const float hy[14] = {0, 0, 0, -1.1920928244535389e-07f, -0.375f, 0, 0.6666666865348816f, 2.999999761581421f,
                          3, 3.000000238418579f, 3.5f, nan, inf, 0};
    const float hg[14] = {0, 0, -0.5f, -0.4999999403953552f, 0, 0.5f, 0.8333333730697632f, 1.5f, 1.5f, 1, 1, 1, 1, 0};
    struct { const char *name; tg_tensor *(*op)(tg_tape *, tg_tensor *); int n; const float *x, *y, *g; } cases[2] = {
        {"relu6", tg_relu6, 9, r6x, r6y, r6g}, {"hardswish", tg_hardswish, 14, hx, hy, hg}};
    for (int c = 0; c < 2; c++) {
        tg_tape *t = tg_tape_new();
        tg_tensor *x = param(1, (int[]){cases[c].n}, cases[c].x);
        tg_tensor *y = tg_sum(t, cases[c].op(t, x));
        CHECK_INT(tg_backward(t, y), 0);
        tg_tensor *out = y->node->in[0];
        for (int i = 0; i < cases[c].n; i++) {
            float v = out->data[i], want = cases[c].y[i];
            bool same = isnan(want) ? isnan(v) : v == want && signbit(v) == signbit(want);
            if (!same) fprintf(stderr, "%s(%g) = %g, want %g\n", cases[c].name, (double)cases[c].x[i], (double)v,
                               (double)want);
            CHECK(same);
            CHECK_NEAR(x->grad[i], cases[c].g[i], 0);
        }
        tg_tensor_free(x);
        tg_tape_free(t);
    }
    /* past one block of TG_FOR_BLOCKS and over threads: every element as alone */
    tg_tape *t = tg_tape_new();
    int n = 100000;
    tg_tensor *x = tg_param_new(1, &n);
    for (int i = 0; i < n; i++) x->data[i] = 0.01f * (float)(i % 1301) - 5;
    tg_tensor *y6 = tg_relu6(t, x), *yh = tg_hardswish(t, x);
    CHECK_INT(tg_backward(t, tg_add(t, tg_sum(t, y6), tg_sum(t, yh))), 0);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        float v = x->data[i];
        float r6 = v < 0 ? 0 : v > 6 ? 6 : v, h = v <= -3 ? 0 : v >= 3 ? v : v * (v + 3) / 6;
        float g = (v > 0 && v < 6 ? 1.0f : 0.0f) + (v < -3 ? 0 : v <= 3 ? v / 3 + 0.5f : 1);
        bad += y6->data[i] != r6 || yh->data[i] != h || x->grad[i] != g;
    }
    CHECK_INT(bad, 0);
    tg_tensor_free(x);
    tg_tape_free(t);
}

static void matmul_linear(void) {
    tg_tape *t = tg_tape_new();
    tg_tensor *a = make(t, 2, (int[]){2, 3}, (float[]){1, 2, 3, 4, 5, 6});
    tg_tensor *b = make(t, 2, (int[]){3, 2}, (float[]){7, 8, 9, 10, 11, 12});
    tg_tensor *y = tg_matmul(t, a, b);
    const float mm[] = {58, 64, 139, 154};
    for (int i = 0; i < 4; i++) CHECK_NEAR(y->data[i], mm[i], 0);

    /* linear: x w^T + b, and its gradients by hand */
    tg_tensor *x = make(t, 2, (int[]){1, 2}, (float[]){1, 2});
    tg_tensor *w = param(2, (int[]){2, 2}, (float[]){1, 0, -1, 3});
    tg_tensor *bias = param(1, (int[]){2}, (float[]){0.5f, 0});
    y = tg_linear(t, x, w, bias);
    CHECK_NEAR(y->data[0], 1.5, 0);
    CHECK_NEAR(y->data[1], 5, 0);
    CHECK_INT(tg_backward(t, tg_sum(t, y)), 0);
    /* dw = dy^T x = [[1,2],[1,2]], db = [1,1] */
    CHECK_NEAR(w->grad[0], 1, 0);
    CHECK_NEAR(w->grad[1], 2, 0);
    CHECK_NEAR(w->grad[3], 2, 0);
    CHECK_NEAR(bias->grad[1], 1, 0);
    tg_tensor_free(w);
    tg_tensor_free(bias);

    tg_tensor *r = tg_reshape(t, a, 2, (int[]){3, -1});
    CHECK_INT(r->shape[0], 3);
    CHECK_INT(r->shape[1], 2);
    CHECK(r->data == a->data);
    tg_tensor *img = tg_tensor_tape(t, 4, (int[]){2, 3, 4, 5});
    r = tg_flatten(t, img);
    CHECK_INT(r->ndim, 2);
    CHECK_INT(r->shape[1], 60);
    tg_tape_free(t);
}

static void cross_entropy(void) {
    tg_tape *t = tg_tape_new();
    /* logits (2,3): row 0 uniform -> loss log 3; row 1 [0, ln 2, 0] label 1 -> log(4/2) */
    tg_tensor *x = param(2, (int[]){2, 3}, (float[]){0, 0, 0, 0, 0.69314718f, 0});
    tg_tensor *loss = tg_cross_entropy(t, x, (int32_t[]){0, 1});
    CHECK_NEAR(loss->data[0], (log(3.0) + log(2.0)) / 2, 1e-6);
    CHECK_INT(tg_backward(t, loss), 0);
    /* dx = (softmax - onehot) / N */
    CHECK_NEAR(x->grad[0], (1.0 / 3 - 1) / 2, 1e-6);
    CHECK_NEAR(x->grad[1], (1.0 / 3) / 2, 1e-6);
    CHECK_NEAR(x->grad[4], (0.5 - 1) / 2, 1e-6);
    CHECK_NEAR(x->grad[5], 0.25 / 2, 1e-6);
    /* huge logits stay finite */
    tg_tensor *big = make(t, 2, (int[]){1, 2}, (float[]){1000, -1000});
    loss = tg_cross_entropy(t, big, (int32_t[]){1});
    CHECK_NEAR(loss->data[0], 2000, 1e-3);
    tg_tensor_free(x);
    tg_tape_free(t);
}

static void cat(void) {
    tg_tape *t = tg_tape_new();
    /* channels: (2,2,1,1) and (2,1,1,1) -> (2,3,1,1), each image's channels side by side */
    tg_tensor *a = param(4, (int[]){2, 2, 1, 1}, (float[]){1, 2, 3, 4});
    tg_tensor *b = param(4, (int[]){2, 1, 1, 1}, (float[]){5, 6});
    tg_tensor *y = tg_cat(t, (tg_tensor *[]){a, b}, 2, 1);
    CHECK_INT(y->ndim, 4);
    CHECK_INT(y->shape[0], 2);
    CHECK_INT(y->shape[1], 3);
    const float ch[6] = {1, 2, 5, 3, 4, 6};
    for (int i = 0; i < 6; i++) CHECK_NEAR(y->data[i], ch[i], 0);
    /* dy's slices go back: da = dy[:, 0:2], db = dy[:, 2:3] */
    CHECK_INT(tg_backward_seed(t, y, (float[]){10, 20, 30, 40, 50, 60}), 0);
    const float da[4] = {10, 20, 40, 50};
    for (int i = 0; i < 4; i++) CHECK_NEAR(a->grad[i], da[i], 0);
    CHECK_NEAR(b->grad[0], 30, 0);
    CHECK_NEAR(b->grad[1], 60, 0);

    /* the last dimension (-1), the first, and one tensor (a copy) */
    tg_tensor *m = make(t, 2, (int[]){2, 2}, (float[]){1, 2, 3, 4});
    tg_tensor *c = make(t, 2, (int[]){2, 1}, (float[]){9, 8}), *r = make(t, 2, (int[]){1, 2}, (float[]){7, 7});
    y = tg_cat(t, (tg_tensor *[]){m, c}, 2, -1);
    const float last[6] = {1, 2, 9, 3, 4, 8};
    CHECK_INT(y->shape[0], 2);
    CHECK_INT(y->shape[1], 3);
    for (int i = 0; i < 6; i++) CHECK_NEAR(y->data[i], last[i], 0);
    y = tg_cat(t, (tg_tensor *[]){m, r}, 2, 0);
    const float first[6] = {1, 2, 3, 4, 7, 7};
    CHECK_INT(y->shape[0], 3);
    CHECK_INT(y->shape[1], 2);
    for (int i = 0; i < 6; i++) CHECK_NEAR(y->data[i], first[i], 0);
    y = tg_cat(t, &m, 1, 1);
    CHECK(y->data != m->data && y->data[3] == 4 && tg_same_shape(y, m));

    /* one tensor twice, beside one that takes no gradient: the gradients of both places add */
    tg_tensor_zero_grad(a);
    tg_tensor *h = tg_relu(t, a), *z = tg_tensor_tape(t, 4, (int[]){2, 1, 1, 1});
    y = tg_cat(t, (tg_tensor *[]){h, z, h}, 3, 1);
    CHECK_INT(y->shape[1], 5);
    CHECK_INT(tg_backward_seed(t, y, (float[]){1, 2, 3, 4, 5, 6, 7, 8, 9, 10}), 0);
    const float twice[4] = {1 + 4, 2 + 5, 6 + 9, 7 + 10};
    for (int i = 0; i < 4; i++) CHECK_NEAR(a->grad[i], twice[i], 0);
    tg_tensor_free(a), tg_tensor_free(b);
    tg_tape_free(t);
}

static void softmax(void) {
    tg_tape *t = tg_tape_new();
    /* PyTorch 1.13:
     *   x = torch.tensor([[1., 2., 3., 4.], [-1., 0., 0.5, 2.]], requires_grad=True)
     *   y = torch.softmax(x, dim=-1)
     *   y.backward(torch.tensor([[0.1, -0.2, 0.3, 0.4], [1., 0., 0., -1.]]))  */
    tg_tensor *x = param(2, (int[]){2, 4}, (float[]){1, 2, 3, 4, -1, 0, 0.5f, 2});
    tg_tensor *y = tg_softmax(t, x);
    const float py[8] = {0.03205860f, 0.08714432f, 0.23688284f, 0.64391428f,
                         0.03535379f, 0.09610157f, 0.15844472f, 0.71009994f};
    const float pg[8] = {-0.00687361f, -0.04482770f, -0.00341290f, 0.05511420f,
                         0.05920863f,  0.06484417f,  0.10690996f, -0.23096274f};
    CHECK_INT(tg_backward_seed(t, y, (float[]){0.1f, -0.2f, 0.3f, 0.4f, 1, 0, 0, -1}), 0);
    for (int i = 0; i < 8; i++) {
        CHECK_NEAR(y->data[i], py[i], 1e-7);
        CHECK_NEAR(x->grad[i], pg[i], 1e-7);
    }
    /* by hand: [0, ln 2, 0] -> [1/4, 1/2, 1/4]; dy = [1, 0, 0]: sum dy y = 1/4, dx = y (dy - 1/4) */
    tg_tensor *h = param(3, (int[]){1, 1, 3}, (float[]){0, 0.69314718f, 0});
    y = tg_softmax(t, h);
    CHECK_INT(y->ndim, 3);
    CHECK_NEAR(y->data[0], 0.25, 1e-7);
    CHECK_NEAR(y->data[1], 0.5, 1e-7);
    CHECK_INT(tg_backward_seed(t, y, (float[]){1, 0, 0}), 0);
    CHECK_NEAR(h->grad[0], 0.25 * 0.75, 1e-7);
    CHECK_NEAR(h->grad[1], 0.5 * -0.25, 1e-7);
    CHECK_NEAR(h->grad[2], 0.25 * -0.25, 1e-7);
    /* rows of each 3-D slice alone; a last dimension of 1 gives 1; huge values stay finite */
    y = tg_softmax(t, make(t, 3, (int[]){2, 1, 2}, (float[]){0, 0, 5, 5}));
    for (int i = 0; i < 4; i++) CHECK_NEAR(y->data[i], 0.5, 0);
    y = tg_softmax(t, make(t, 2, (int[]){2, 1}, (float[]){-3, 1e30f}));
    CHECK(y->data[0] == 1 && y->data[1] == 1);
    y = tg_softmax(t, make(t, 1, (int[]){3}, (float[]){1000, 1000, -1000}));
    CHECK_NEAR(y->data[0], 0.5, 0);
    CHECK_NEAR(y->data[2], 0, 0);
    /* non-finite rows, as torch.softmax prints them: [-inf]*3 -> nan; [0,-inf,1] -> 0.2689, 0, 0.7311;
     * a NaN anywhere, or +inf, -> nan across the row */
    const float inf = INFINITY;
    y = tg_softmax(t, make(t, 2, (int[]){5, 3}, (float[]){-inf, -inf, -inf, 0, -inf, 1, NAN, 0, 1, 0, NAN, 1, inf, 0, 1}));
    for (int j = 0; j < 3; j++) CHECK(isnan(y->data[j]) && isnan(y->data[6 + j]) && isnan(y->data[9 + j]) &&
                                      isnan(y->data[12 + j]));
    CHECK_NEAR(y->data[3], 0.26894142, 1e-7);
    CHECK(y->data[4] == 0);
    CHECK_NEAR(y->data[5], 0.73105858, 1e-7);
    tg_tensor_free(x), tg_tensor_free(h);
    tg_tape_free(t);
}

static void errors(void) {
    tg_tape *t = tg_tape_new();
    tg_tensor *a = tg_tensor_tape(t, 2, (int[]){8, 3});
    tg_tensor *w = tg_tensor_tape(t, 2, (int[]){16, 4});
    tg_clear_error();
    CHECK(tg_linear(t, a, w, NULL) == NULL);
    CHECK_INT(tg_last_error_code(), TG_ERR_SHAPE);
    CHECK_MSG(tg_last_error(), "linear: input has 3 features but weight expects 4 (x 8x3, w 16x4)");

    tg_tensor *b = tg_tensor_tape(t, 2, (int[]){8, 4});
    CHECK(tg_add(t, a, b) == NULL);
    CHECK_MSG(tg_last_error(), "add: shapes 8x3 and 8x4 do not broadcast");
    CHECK(tg_matmul(t, a, a) == NULL);
    CHECK_MSG(tg_last_error(), "matmul: needs (M,K) and (K,N) matrices, got 8x3 and 8x3");

    /* a NULL propagates: the chain fails once, with the first cause */
    tg_tensor *y = tg_relu(t, tg_sigmoid(t, tg_linear(t, a, w, NULL)));
    CHECK(y == NULL);
    CHECK_MSG(tg_last_error(), "linear: input has 3 features");
    CHECK(tg_cross_entropy(t, NULL, (int32_t[]){0}) == NULL);
    CHECK_MSG(tg_last_error(), "linear:");

    tg_tensor *logits = tg_tensor_tape(t, 2, (int[]){2, 10});
    CHECK(tg_cross_entropy(t, logits, (int32_t[]){3, 10}) == NULL);
    CHECK_MSG(tg_last_error(), "cross_entropy: label 10 of sample 1 is outside [0, 10)");
    CHECK(tg_cross_entropy(t, logits, (int32_t[]){-1, 0}) == NULL);
    CHECK_MSG(tg_last_error(), "label -1 of sample 0");
    CHECK(tg_cross_entropy(t, logits, NULL) == NULL);
    CHECK_MSG(tg_last_error(), "cross_entropy: labels are NULL");

    CHECK(tg_reshape(t, a, 2, (int[]){5, -1}) == NULL);
    CHECK_MSG(tg_last_error(), "reshape: cannot view 8x3");
    CHECK(tg_reshape(t, a, 2, (int[]){-1, -1}) == NULL);
    CHECK_MSG(tg_last_error(), "reshape:");
    CHECK(tg_tensor_new(2, (int[]){3, 0}) == NULL);
    CHECK_MSG(tg_last_error(), "tensor_new: dimension 1 is 0");
    CHECK(tg_tensor_tape(t, 5, (int[]){1, 1, 1, 1, 1}) == NULL);
    CHECK_MSG(tg_last_error(), "at most 4");
    CHECK(tg_relu(NULL, a) == NULL);
    CHECK_MSG(tg_last_error(), "relu: tape is NULL");
    /* the descriptor API refuses what it cannot record, without aborting */
    tg_tensor *many[6] = {a, a, a, a, a, a};
    tg_tensor *ins[1] = {a};
    CHECK(tg_apply(t, &tg__op_relu, many, 6, NULL) == NULL);
    CHECK_MSG(tg_last_error(), "relu: 6 inputs, an op takes 0 to 5");
    CHECK(tg_apply(t, &tg__op_relu, ins, 1, NULL) != NULL);
    tg_tape_free(t);
}

int main(void) {
    elementwise();
    se_gate();
    relu6_hardswish();
    matmul_linear();
    cat();
    softmax();
    cross_entropy();
    errors();
    CHECK_DONE();
}
