/* test_ops_cnn.c: conv2d, pooling, dropout, batch norm and residual_add on small
 * hand-computed cases, their documented semantics, and their errors; NaN and
 * infinities through every ReLU and pool as in PyTorch; extreme attributes. */
#include "check.h"
#include "kernels/kernels.h" /* tg__isa_use: each conv kernel in turn */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static tg_tensor *make(tg_tape *t, int ndim, const int *shape, const float *v) {
    tg_tensor *x = tg_tensor_tape(t, ndim, shape);
    for (int64_t i = 0; i < x->size; i++) x->data[i] = v ? v[i] : (float)i;
    return x;
}

static tg_tensor *param(int ndim, const int *shape, const float *v) {
    tg_tensor *x = tg_param_new(ndim, shape);
    for (int64_t i = 0; i < x->size; i++) x->data[i] = v ? v[i] : (float)i;
    return x;
}

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)(*s >> 40) / 16777216.0f * 2 - 1;
}

static void conv(void) {
    tg_tape *t = tg_tape_new();
    /* x 1x1x3x3 = 0..8, w 1x1x2x2 = [1 0; 0 -1]: y = x[i,j] - x[i+1,j+1] = -4 everywhere */
    tg_tensor *x = make(t, 4, (int[]){1, 1, 3, 3}, NULL);
    tg_tensor *w = make(t, 4, (int[]){1, 1, 2, 2}, (float[]){1, 0, 0, -1});
    tg_tensor *y = tg_conv2d(t, x, w, NULL, 1, 0, 1, 1);
    CHECK_INT(y->shape[2], 2);
    for (int i = 0; i < 4; i++) CHECK_NEAR(y->data[i], -4, 0);
    /* pad 1, stride 2: outputs at (-1,-1), (-1,1), (1,-1), (1,1) of the padded grid */
    tg_tensor *b = make(t, 1, (int[]){1}, (float[]){0.5f});
    y = tg_conv2d(t, x, w, b, 2, 1, 1, 1);
    CHECK_INT(y->shape[2], 2);
    CHECK_INT(y->shape[3], 2);
    /* (0,0): w[1][1]*x[0][0] = 0 -> 0.5; (0,1): -x[0][2] = -2 -> -1.5; (1,0): x[0][0]*... */
    CHECK_NEAR(y->data[0], 0.5, 0);
    CHECK_NEAR(y->data[1], -1.5, 0);
    CHECK_NEAR(y->data[2], -5.5, 0); /* x[1][-1] (padding) - x[2][0] */
    CHECK_NEAR(y->data[3], 0.5 + 4 - 8, 0); /* x[1][1] - x[2][2] */
    /* dilation 2 on 5x5: a 2x2 kernel spans 3x3 -> 3x3 output, y = x[i,j] - x[i+2,j+2] = -12 */
    tg_tensor *x5 = make(t, 4, (int[]){1, 1, 5, 5}, NULL);
    y = tg_conv2d(t, x5, w, NULL, 1, 0, 2, 1);
    CHECK_INT(y->shape[2], 3);
    CHECK_NEAR(y->data[4], -12, 0);
    /* output size (I + 2P - D(R-1) - 1)/S + 1 over a few combinations */
    tg_tensor *big = tg_tensor_tape(t, 4, (int[]){1, 2, 11, 9});
    tg_tensor *k3 = tg_tensor_tape(t, 4, (int[]){4, 2, 3, 3});
    int cases[][3] = {{1, 0, 1}, {2, 1, 1}, {3, 2, 2}, {2, 0, 3}};
    for (int i = 0; i < 4; i++) {
        int S = cases[i][0], P = cases[i][1], D = cases[i][2];
        y = tg_conv2d(t, big, k3, NULL, S, P, D, 1);
        CHECK_INT(y->shape[2], (11 + 2 * P - D * 2 - 1) / S + 1);
        CHECK_INT(y->shape[3], (9 + 2 * P - D * 2 - 1) / S + 1);
    }
    /* depthwise: each channel with its own filter */
    tg_tensor *x2 = make(t, 4, (int[]){1, 2, 2, 2}, (float[]){1, 2, 3, 4, 10, 20, 30, 40});
    tg_tensor *wd = make(t, 4, (int[]){2, 1, 1, 1}, (float[]){2, -1});
    y = tg_conv2d(t, x2, wd, NULL, 1, 0, 1, 2);
    CHECK_NEAR(y->data[3], 8, 0);
    CHECK_NEAR(y->data[4], -10, 0);

    /* errors */
    tg_tensor *x8 = tg_tensor_tape(t, 4, (int[]){8, 3, 28, 28});
    tg_tensor *w1 = tg_tensor_tape(t, 4, (int[]){16, 1, 3, 3});
    CHECK(tg_conv2d(t, x8, w1, NULL, 1, 0, 1, 1) == NULL);
    CHECK_MSG(tg_last_error(), "conv2d: input has 3 channels but weight expects 1 (x 8x3x28x28, w 16x1x3x3)");
    CHECK(tg_conv2d(t, x8, w1, NULL, 1, 0, 1, 2) == NULL);
    CHECK_MSG(tg_last_error(), "conv2d: groups 2 must divide the 3 input");
    CHECK(tg_conv2d(t, x8, k3, NULL, 0, 0, 1, 1) == NULL);
    CHECK_MSG(tg_last_error(), "need stride >= 1");
    tg_tensor *tiny = tg_tensor_tape(t, 4, (int[]){1, 2, 2, 2});
    CHECK(tg_conv2d(t, tiny, k3, NULL, 1, 0, 1, 1) == NULL);
    CHECK_MSG(tg_last_error(), "conv2d: kernel 3x3 (dilation 1) is larger than the padded input 2x2");
    CHECK(tg_conv2d(t, tiny, k3, tiny, 1, 1, 1, 1) == NULL);
    CHECK_MSG(tg_last_error(), "conv2d: bias has shape 1x2x2x2 but weight has 4 output channels");
    tg_tape_free(t);
}

/* The 2x2 stride-2 path takes eight windows at a time and the rest one by one:
 * on rows of 21 windows (8 + 8 + 5) and of 7 (the resnet's 14x14 planes), with
 * many ties and a few NaNs, it must pick what the scalar rule picks (the first
 * maximum in row-major order; a NaN wins, the first one), and its backward
 * (each element written once) must put dy at that position and zeros on the
 * window's other three */
static void pooling_2x2_wide(int W) {
    enum { N = 2, C = 3, H = 6 };
    uint64_t s = 3;
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_param_new(4, (int[]){N, C, H, W}), *one = tg_tensor_tape(t, 0, NULL);
    for (int64_t i = 0; i < x->size; i++) {
        float u = frand(&s);
        x->data[i] = u > 0.9f ? NAN : (float)(int)(3 * u); /* -2..2 and NaN: ties everywhere */
    }
    one->data[0] = 1.0f;
    tg_tensor *xv = tg_mul(t, x, one); /* its gradient starts unset: the backward that writes each element once */
    tg_tensor *y = tg_max_pool2d(t, xv, 2, 2, 0);
    tg_tensor *y_nograd;
    bool was = tg_tape_set_grad_enabled(t, false);
    y_nograd = tg_max_pool2d(t, xv, 2, 2, 0);
    tg_tape_set_grad_enabled(t, was);
    const int32_t *arg = tg_max_pool2d_argmax(y);
    CHECK(arg != NULL);
    if (!arg) return;
    float *dy = malloc((size_t)y->size * sizeof *dy);
    for (int64_t i = 0; i < y->size; i++) dy[i] = 1.0f + (float)i;
    CHECK_INT(tg_backward_seed(t, y, dy), 0);
    int bad = 0, bad_dx = 0, nans = 0;
    for (int p = 0; p < N * C; p++)
        for (int oh = 0; oh < H / 2; oh++)
            for (int ow = 0; ow < W / 2; ow++) {
                const float *xp = x->data + p * H * W, *dxp = xv->grad + p * H * W;
                int order[4] = {2 * oh * W + 2 * ow, 2 * oh * W + 2 * ow + 1, (2 * oh + 1) * W + 2 * ow,
                                (2 * oh + 1) * W + 2 * ow + 1}, best = order[0];
                for (int k = 1; k < 4; k++)
                    if (xp[order[k]] > xp[best] || (isnan(xp[order[k]]) && !isnan(xp[best]))) best = order[k];
                int o = (p * (H / 2) + oh) * (W / 2) + ow;
                float v = y->data[o];
                nans += isnan(v);
                bad += arg[o] != best || !(v == xp[best] || (isnan(v) && isnan(xp[best])));
                bad += memcmp(&y_nograd->data[o], &v, sizeof v) != 0;
                for (int k = 0; k < 4; k++) bad_dx += dxp[order[k]] != (order[k] == best ? dy[o] : 0.0f);
            }
    CHECK_INT(bad, 0);
    CHECK_INT(bad_dx, 0);
    CHECK(nans > 3);
    free(dy);
    tg_tape_free(t);
    tg_tensor_free(x);
}

static void pooling(void) {
    tg_tape *t = tg_tape_new();
    tg_tensor *x = param(4, (int[]){1, 1, 4, 4}, (float[]){1, 5, 2, 0, 3, 4, 9, 9, 0, 0, 1, 1, 7, 0, 1, 1});
    tg_tensor *y = tg_max_pool2d(t, x, 2, 2, 0);
    const float want[] = {5, 9, 7, 1};
    for (int i = 0; i < 4; i++) CHECK_NEAR(y->data[i], want[i], 0);
    const int32_t *arg = tg_max_pool2d_argmax(y);
    CHECK(arg != NULL);
    /* ties go to the first maximum in row-major order: 9 at (1,2) not (1,3); 1 at (2,2) */
    CHECK_INT(arg[0], 1);
    CHECK_INT(arg[1], 6);
    CHECK_INT(arg[2], 12);
    CHECK_INT(arg[3], 10);
    CHECK_INT(tg_backward_seed(t, y, (float[]){1, 2, 3, 4}), 0);
    CHECK_NEAR(x->grad[1], 1, 0);
    CHECK_NEAR(x->grad[6], 2, 0);
    CHECK_NEAR(x->grad[7], 0, 0);
    CHECK_NEAR(x->grad[12], 3, 0);
    CHECK_NEAR(x->grad[10], 4, 0);
    CHECK(tg_max_pool2d_argmax(x) == NULL);
    tg_tensor_free(x);

    /* padding never wins, even against negative values */
    tg_tensor *neg = make(t, 4, (int[]){1, 1, 2, 2}, (float[]){-4, -3, -2, -1});
    tg_tensor *xg = tg_tensor_new(1, (int[]){1});
    tg_tensor_set_requires_grad(xg, true);
    xg->data[0] = 1;
    y = tg_max_pool2d(t, tg_mul(t, neg, xg), 3, 1, 1); /* recorded: xg requires grad */
    CHECK_INT(y->shape[2], 2);
    CHECK_NEAR(y->data[0], -1, 0);
    CHECK(tg_max_pool2d_argmax(y) && tg_max_pool2d_argmax(y)[0] == 3);
    tg_tensor_free(xg);

    /* a NaN propagates through max pooling, as in PyTorch */
    tg_tensor *withnan = make(t, 4, (int[]){1, 1, 2, 2}, (float[]){1, NAN, 3, 2});
    y = tg_max_pool2d(t, withnan, 2, 2, 0);
    CHECK(isnan(y->data[0]));

    /* average pooling counts padded zeros: corner of 3x3 window on a 2x2 of ones = 4/9 */
    tg_tensor *ones = make(t, 4, (int[]){1, 1, 2, 2}, (float[]){1, 1, 1, 1});
    y = tg_avg_pool2d(t, ones, 3, 1, 1);
    CHECK_NEAR(y->data[0], 4.0 / 9, 1e-7);
    tg_tensor *x16 = make(t, 4, (int[]){1, 1, 4, 4}, NULL);
    y = tg_avg_pool2d(t, x16, 2, 2, 0);
    CHECK_NEAR(y->data[0], (0 + 1 + 4 + 5) / 4.0, 0);
    CHECK_NEAR(y->data[3], (10 + 11 + 14 + 15) / 4.0, 0);
    y = tg_global_avg_pool(t, make(t, 4, (int[]){2, 2, 2, 2}, NULL));
    CHECK_INT(y->ndim, 2);
    CHECK_NEAR(y->data[0], 1.5, 0);
    CHECK_NEAR(y->data[3], 13.5, 0);

    CHECK(tg_max_pool2d(t, x16, 0, 1, 0) == NULL);
    CHECK_MSG(tg_last_error(), "max_pool2d: kernel 0, stride 1, pad 0: need kernel >= 1");
    CHECK(tg_max_pool2d(t, x16, 2, -1, 0) == NULL);
    CHECK_MSG(tg_last_error(), "stride >= 1");
    CHECK(tg_avg_pool2d(t, x16, 2, 2, 2) == NULL);
    CHECK_MSG(tg_last_error(), "avg_pool2d: pad 2 is more than half the kernel 2");
    CHECK(tg_max_pool2d(t, x16, 5, 1, 0) == NULL);
    CHECK_MSG(tg_last_error(), "max_pool2d: kernel 5 is larger than the padded input 4x4");
    CHECK(tg_global_avg_pool(t, tg_tensor_tape(t, 2, (int[]){2, 2})) == NULL);
    CHECK_MSG(tg_last_error(), "global_avg_pool: input must be (N,C,H,W), got 2x2");
    tg_tape_free(t);
}

static void dropout(void) {
    tg_tape *t = tg_tape_new();
    const int n = 100000;
    tg_tensor *x = tg_param_new(1, (int[]){n});
    for (int i = 0; i < n; i++) x->data[i] = 1.0f + (float)(i % 7);
    tg_tape_seed(t, 3);
    tg_tensor *y = tg_dropout(t, x, 0.25f, true);
    const uint8_t *mask = tg_dropout_mask(y);
    CHECK(mask != NULL);
    int kept = 0, right = 1;
    for (int i = 0; i < n; i++) {
        kept += mask[i];
        right &= y->data[i] == (mask[i] ? x->data[i] * (1.0f / 0.75f) : 0.0f);
    }
    CHECK(right);
    CHECK_NEAR((double)kept / n, 0.75, 0.01);
    CHECK_INT(tg_backward_seed(t, y, x->data), 0); /* dy = x: dx = x * mask / 0.75 */
    int grads = 1;
    for (int i = 0; i < n; i++) grads &= x->grad[i] == (mask[i] ? x->data[i] * (1.0f / 0.75f) : 0.0f);
    CHECK(grads);
    /* same seed, same mask; another seed, another mask */
    tg_tape_seed(t, 3);
    const uint8_t *again = tg_dropout_mask(tg_dropout(t, x, 0.25f, true));
    CHECK(memcmp(mask, again, n) == 0);
    tg_tape_seed(t, 4);
    const uint8_t *other = tg_dropout_mask(tg_dropout(t, x, 0.25f, true));
    CHECK(memcmp(mask, other, n) != 0);
    /* evaluation and p = 0: the identity; p = 1: zeros and zero gradient */
    y = tg_dropout(t, x, 0.25f, false);
    CHECK(memcmp(y->data, x->data, n * sizeof(float)) == 0);
    y = tg_dropout(t, x, 0.0f, true);
    CHECK(memcmp(y->data, x->data, n * sizeof(float)) == 0);
    tg_tensor_zero_grad(x);
    y = tg_dropout(t, x, 1.0f, true);
    CHECK_INT(tg_backward(t, tg_sum(t, y)), 0);
    int zeros = 1;
    for (int i = 0; i < n; i++) zeros &= y->data[i] == 0.0f && x->grad[i] == 0.0f;
    CHECK(zeros);
    /* vanilla: no scaling in training, times (1-p) in evaluation */
    y = tg_dropout_vanilla(t, x, 0.25f, true);
    mask = tg_dropout_mask(y);
    CHECK(mask && y->data[0] == (mask[0] ? x->data[0] : 0.0f) && y->data[1] == (mask[1] ? x->data[1] : 0.0f));
    y = tg_dropout_vanilla(t, x, 0.25f, false);
    CHECK_NEAR(y->data[3], x->data[3] * 0.75f, 0);

    CHECK(tg_dropout(t, x, 1.5f, true) == NULL);
    CHECK_MSG(tg_last_error(), "dropout: p = 1.5 is outside [0, 1]");
    CHECK(tg_dropout(t, x, -0.1f, false) == NULL);
    CHECK(tg_dropout_vanilla(t, x, NAN, true) == NULL);
    CHECK_MSG(tg_last_error(), "dropout_vanilla: p = ");
    CHECK_MSG(tg_last_error(), "nan is outside [0, 1]");
    tg_tensor_free(x);
    tg_tape_free(t);
}

static void batch_norm(void) {
    tg_tape *t = tg_tape_new();
    tg_tensor *g = param(1, (int[]){1}, (float[]){2}), *b = param(1, (int[]){1}, (float[]){0.5f});
    tg_tensor *rm = tg_tensor_new(1, (int[]){1}), *rv = tg_tensor_new(1, (int[]){1});
    rv->data[0] = 1;
    tg_tensor *x = make(t, 2, (int[]){4, 1}, (float[]){1, 2, 3, 4});
    tg_tensor *y = tg_batch_norm(t, x, g, b, rm, rv, true, 0.1f, 1e-5f);
    /* mean 2.5, biased var 1.25: y = 2 (x - 2.5) / sqrt(1.25 + 1e-5) + 0.5 */
    CHECK_NEAR(y->data[0], 2 * -1.5 / sqrt(1.25 + 1e-5) + 0.5, 1e-5);
    CHECK_NEAR(y->data[3], 2 * 1.5 / sqrt(1.25 + 1e-5) + 0.5, 1e-5);
    /* running: 0.9 * 0 + 0.1 * 2.5; 0.9 * 1 + 0.1 * (1.25 * 4/3) (unbiased) */
    CHECK_NEAR(rm->data[0], 0.25, 1e-7);
    CHECK_NEAR(rv->data[0], 0.9 + 0.1 * 1.25 * 4 / 3, 1e-6);
    /* evaluation uses the running statistics and leaves them alone */
    y = tg_batch_norm(t, x, g, b, rm, rv, false, 0.1f, 1e-5f);
    CHECK_NEAR(y->data[1], 2 * (2 - 0.25) / sqrt(rv->data[0] + 1e-5) + 0.5, 1e-5);
    CHECK_NEAR(rm->data[0], 0.25, 1e-7);
    /* per channel over (N,C,H,W): channel 1 of a 2x2x1x2 */
    tg_tensor *g2 = param(1, (int[]){2}, (float[]){1, 1}), *b2 = param(1, (int[]){2}, (float[]){0, 0});
    tg_tensor *x4 = make(t, 4, (int[]){2, 2, 1, 2}, (float[]){0, 0, 1, 3, 0, 0, 5, 7});
    y = tg_batch_norm(t, x4, g2, b2, NULL, NULL, true, 0.1f, 0.0001f);
    /* channel 1 holds 1 3 5 7: mean 4, var 5 */
    CHECK_NEAR(y->data[2], -3 / sqrt(5.0001), 1e-5);
    CHECK_NEAR(y->data[7], 3 / sqrt(5.0001), 1e-5);

    /* statistics of values far from zero, several images and runs of odd length:
     * with momentum 1 the running statistics are the batch's (variance unbiased) */
    {
        enum { N = 6, C = 2, L = 35 };
        tg_tensor *xs = tg_tensor_tape(t, 4, (int[]){N, C, 5, 7});
        tg_tensor *rm2 = tg_tensor_new(1, (int[]){C}), *rv2 = tg_tensor_new(1, (int[]){C});
        uint64_t s = 9;
        for (int64_t i = 0; i < xs->size; i++) xs->data[i] = 1e4f * (float)(1 + i / L % C) + frand(&s);
        CHECK(tg_batch_norm(t, xs, g2, b2, rm2, rv2, true, 1.0f, 1e-5f) != NULL);
        for (int c = 0; c < C; c++) {
            double m = 0, v = 0;
            for (int i = 0; i < N; i++)
                for (int j = 0; j < L; j++) m += xs->data[(i * C + c) * L + j];
            m /= N * L;
            for (int i = 0; i < N; i++)
                for (int j = 0; j < L; j++) v += pow(xs->data[(i * C + c) * L + j] - m, 2);
            v /= N * L - 1;
            CHECK_NEAR(rm2->data[c], m, 1e-7 * m);
            CHECK_NEAR(rv2->data[c], v, 1e-5 * v);
        }
        tg_tensor_free(rm2), tg_tensor_free(rv2);
    }

    /* a batch holding NaN leaves the running statistics as they were */
    float rm0 = rm->data[0], rv0 = rv->data[0];
    tg_tensor *bad = make(t, 2, (int[]){4, 1}, (float[]){1, NAN, 3, 4});
    y = tg_batch_norm(t, bad, g, b, rm, rv, true, 0.1f, 1e-5f);
    CHECK(y && isnan(y->data[0]));
    CHECK(rm->data[0] == rm0 && rv->data[0] == rv0);

    /* one value per channel in training is an error, as in PyTorch */
    tg_tensor *one = tg_tensor_tape(t, 2, (int[]){1, 2});
    CHECK(tg_batch_norm(t, one, g2, b2, NULL, NULL, true, 0.1f, 1e-5f) == NULL);
    CHECK_MSG(tg_last_error(), "batch_norm: training needs more than one value per channel (x 1x2)");
    CHECK(tg_batch_norm(t, tg_tensor_tape(t, 4, (int[]){1, 2, 1, 1}), g2, b2, NULL, NULL, true, 0.1f, 1e-5f) == NULL);
    CHECK(tg_batch_norm(t, tg_tensor_tape(t, 4, (int[]){1, 2, 2, 1}), g2, b2, NULL, NULL, true, 0.1f, 1e-5f) != NULL);
    CHECK(tg_batch_norm(t, x4, g, b2, NULL, NULL, true, 0.1f, 1e-5f) == NULL);
    CHECK_MSG(tg_last_error(), "batch_norm: gamma has shape 1 but the input has 2 channels");
    CHECK(tg_batch_norm(t, x4, g2, b2, NULL, NULL, false, 0.1f, 1e-5f) == NULL);
    CHECK_MSG(tg_last_error(), "batch_norm: evaluation needs running statistics");
    CHECK(tg_batch_norm(t, x4, g2, b2, NULL, NULL, true, 1.5f, 1e-5f) == NULL);
    CHECK_MSG(tg_last_error(), "momentum 1.5");
    tg_tensor *ps[] = {g, b, rm, rv, g2, b2};
    for (int i = 0; i < 6; i++) tg_tensor_free(ps[i]);
    tg_tape_free(t);
}

/* The one-pass closed-form dx of batch norm against the three-term chain rule, in double. */
static void batch_norm_closed_form(void) {
    enum { N = 8, C = 3, L = 16 };
    uint64_t s = 99;
    tg_tensor *x = tg_param_new(4, (int[]){N, C, 4, 4});
    tg_tensor *g = tg_param_new(1, (int[]){C}), *b = tg_param_new(1, (int[]){C});
    static float dy[N * C * L];
    for (int i = 0; i < N * C * L; i++) x->data[i] = 3 * frand(&s) + 1, dy[i] = frand(&s);
    for (int c = 0; c < C; c++) g->data[c] = 1 + frand(&s) * 0.5f, b->data[c] = frand(&s);
    tg_tape *t = tg_tape_new();
    tg_tensor *y = tg_batch_norm(t, x, g, b, NULL, NULL, true, 0.1f, 1e-5f);
    CHECK_INT(tg_backward_seed(t, y, dy), 0);
    double worst = 0;
    for (int c = 0; c < C; c++) {
        double mu = 0, var = 0, n = N * L;
        for (int i = 0; i < N; i++)
            for (int l = 0; l < L; l++) mu += x->data[(i * C + c) * L + l] / n;
        for (int i = 0; i < N; i++)
            for (int l = 0; l < L; l++) var += pow(x->data[(i * C + c) * L + l] - mu, 2) / n;
        double rstd = 1 / sqrt(var + 1e-5), dvar = 0, dmu = 0, sum_xm = 0;
        /* dxhat = dy g; dvar = sum dxhat (x-mu) * -1/2 (var+eps)^-3/2; dmu = sum -dxhat rstd + dvar * mean(-2(x-mu)) */
        for (int i = 0; i < N; i++)
            for (int l = 0; l < L; l++) {
                int j = (i * C + c) * L + l;
                double xm = x->data[j] - mu;
                dvar += dy[j] * g->data[c] * xm * -0.5 * pow(var + 1e-5, -1.5);
                dmu += -dy[j] * g->data[c] * rstd;
                sum_xm += xm;
            }
        dmu += dvar * -2 * sum_xm / n;
        for (int i = 0; i < N; i++)
            for (int l = 0; l < L; l++) {
                int j = (i * C + c) * L + l;
                double dx = dy[j] * g->data[c] * rstd + dvar * 2 * (x->data[j] - mu) / n + dmu / n;
                double e = fabs(dx - x->grad[j]) / fmax(fabs(dx), 1e-2);
                if (e > worst) worst = e;
            }
    }
    printf("batch_norm: closed-form dx vs three-term chain rule, worst relative difference %.2e\n", worst);
    CHECK(worst < 1e-4);
    tg_tensor_free(x);
    tg_tensor_free(g);
    tg_tensor_free(b);
    tg_tape_free(t);
}

/* batch_norm with the ReLU epilogue is relu(batch_norm): the same output bit for bit, the same
 * gradients to rounding, in training and in evaluation, and the same running statistics */
static void batch_norm_act_relu(void) {
    enum { N = 4, C = 3, L = 9 };
    uint64_t s = 17;
    tg_tensor *x = tg_param_new(4, (int[]){N, C, 3, 3}), *g = tg_param_new(1, (int[]){C}),
              *b = tg_param_new(1, (int[]){C});
    tg_tensor *rm[2], *rv[2];
    static float dy[N * C * L], y0[N * C * L], dx0[N * C * L];
    float dg0[C], db0[C];
    for (int i = 0; i < N * C * L; i++) x->data[i] = 2 * frand(&s) + 0.3f, dy[i] = frand(&s);
    for (int c = 0; c < C; c++) g->data[c] = 1 + 0.5f * frand(&s), b->data[c] = 0.5f * frand(&s);
    for (int k = 0; k < 2; k++) {
        rm[k] = tg_tensor_new(1, (int[]){C}), rv[k] = tg_tensor_new(1, (int[]){C});
        for (int c = 0; c < C; c++) rv[k]->data[c] = 1;
    }
    for (int training = 1; training >= 0; training--)
        for (int fused = 0; fused < 2; fused++) {
            tg_tape *t = tg_tape_new();
            tg_tensor_zero_grad(x), tg_tensor_zero_grad(g), tg_tensor_zero_grad(b);
            tg_tensor *y = fused ? tg_batch_norm_act(t, x, g, b, rm[1], rv[1], training, 0.1f, 1e-5f, NULL, TG_ACT_RELU)
                                 : tg_relu(t, tg_batch_norm(t, x, g, b, rm[0], rv[0], training, 0.1f, 1e-5f));
            CHECK(y && strcmp(y->node->op->name, fused ? "batch_norm" : "relu") == 0);
            CHECK_INT(tg_backward_seed(t, y, dy), 0);
            if (!fused) {
                memcpy(y0, y->data, sizeof y0), memcpy(dx0, x->grad, sizeof dx0);
                memcpy(dg0, g->grad, sizeof dg0), memcpy(db0, b->grad, sizeof db0);
            } else {
                int zeros = 0;
                for (int i = 0; i < N * C * L; i++) {
                    CHECK(y->data[i] == y0[i]);
                    CHECK_NEAR(x->grad[i], dx0[i], 1e-5);
                    zeros += y0[i] == 0;
                }
                CHECK(zeros > 10 && zeros < N * C * L - 10); /* the ReLU really cuts */
                for (int c = 0; c < C; c++) {
                    CHECK_NEAR(g->grad[c], dg0[c], 1e-5);
                    CHECK_NEAR(b->grad[c], db0[c], 1e-5);
                    CHECK(rm[0]->data[c] == rm[1]->data[c] && rv[0]->data[c] == rv[1]->data[c]);
                }
            }
            tg_tape_free(t);
        }
    tg_tensor *bad = tg_param_new(1, (int[]){C + 1});
    tg_tape *t = tg_tape_new();
    CHECK(tg_batch_norm_act(t, x, bad, b, NULL, NULL, true, 0.1f, 1e-5f, NULL, TG_ACT_RELU) == NULL);
    CHECK_MSG(tg_last_error(), "batch_norm: gamma has shape 4 but the input has 3 channels");
    tg_tape_free(t);
    tg_tensor *all[] = {x, g, b, rm[0], rv[0], rm[1], rv[1], bad};
    for (int i = 0; i < 8; i++) tg_tensor_free(all[i]);
}

/* batch_norm with an add and the ReLU epilogue is relu(batch_norm(x) + s): the same output and gradients
 * (x, gamma, beta and the shortcut s), bit for bit, as the three ops */
static void batch_norm_add_act_relu(void) {
    enum { N = 4, C = 3, L = 16 };
    uint64_t s = 23;
    tg_tensor *x = tg_param_new(4, (int[]){N, C, 4, 4}), *sc = tg_param_new(4, (int[]){N, C, 4, 4});
    tg_tensor *g = tg_param_new(1, (int[]){C}), *b = tg_param_new(1, (int[]){C});
    static float dy[N * C * L], keep[4][N * C * L];
    for (int i = 0; i < N * C * L; i++) x->data[i] = 2 * frand(&s), sc->data[i] = frand(&s), dy[i] = frand(&s);
    for (int c = 0; c < C; c++) g->data[c] = 1 + 0.5f * frand(&s), b->data[c] = 0.3f * frand(&s);
    for (int fused = 0; fused < 2; fused++) {
        tg_tape *t = tg_tape_new();
        tg_tensor *all[4] = {x, g, b, sc};
        for (int k = 0; k < 4; k++) tg_tensor_zero_grad(all[k]);
        tg_tensor *y = fused ? tg_batch_norm_act(t, x, g, b, NULL, NULL, true, 0.1f, 1e-5f, sc, TG_ACT_RELU)
                             : tg_residual_add_act(t, sc, tg_batch_norm(t, x, g, b, NULL, NULL, true, 0.1f, 1e-5f),
                                                   TG_ACT_RELU);
        CHECK(y != NULL);
        CHECK_INT(tg_backward_seed(t, y, dy), 0);
        int same = 1, zeros = 0;
        for (int k = 0; k < 4; k++)
            for (int64_t i = 0; i < all[k]->size; i++) {
                if (!fused) keep[k][i] = all[k]->grad[i];
                else same &= keep[k][i] == all[k]->grad[i];
            }
        for (int i = 0; i < N * C * L; i++) zeros += y->data[i] == 0;
        CHECK(same);
        CHECK(zeros > 20 && zeros < N * C * L - 20);
        tg_tape_free(t);
    }
    tg_tape *t = tg_tape_new();
    tg_tensor *bad = tg_param_new(4, (int[]){N, C, 4, 5});
    CHECK(tg_batch_norm_act(t, x, g, b, NULL, NULL, true, 0.1f, 1e-5f, bad, TG_ACT_RELU) == NULL);
    CHECK_MSG(tg_last_error(), "batch_norm: the added tensor has shape 4x3x4x5 but x has 4x3x4x4");
    tg_tape_free(t);
    tg_tensor *all[] = {x, sc, g, b, bad};
    for (int i = 0; i < 5; i++) tg_tensor_free(all[i]);
}

/* The add given x itself (a tape tensor, so its gradient starts unset): the shortcut's
 * gradient is written first and stored, dx then added; the same as the separate ops, bit for bit */
static void batch_norm_add_self(void) {
    enum { N = 3, C = 2, L = 9 };
    uint64_t s = 41;
    tg_tensor *x = tg_param_new(4, (int[]){N, C, 3, 3}), *g = tg_param_new(1, (int[]){C}),
              *b = tg_param_new(1, (int[]){C});
    static float dy[N * C * L], keep[3][N * C * L], y0[N * C * L];
    for (int i = 0; i < N * C * L; i++) x->data[i] = 2 * frand(&s), dy[i] = frand(&s);
    for (int c = 0; c < C; c++) g->data[c] = 1 + 0.5f * frand(&s), b->data[c] = 0.3f * frand(&s);
    for (int fused = 0; fused < 2; fused++) {
        tg_tape *t = tg_tape_new();
        tg_tape_check_finite(t, true);
        tg_tensor *all[3] = {x, g, b};
        for (int k = 0; k < 3; k++) tg_tensor_zero_grad(all[k]);
        tg_tensor *one = tg_tensor_tape(t, 0, NULL);
        one->data[0] = 1.0f;
        tg_tensor *h = tg_mul(t, x, one);
        tg_tensor *y = fused ? tg_batch_norm_act(t, h, g, b, NULL, NULL, true, 0.1f, 1e-5f, h, TG_ACT_RELU)
                             : tg_residual_add_act(t, h, tg_batch_norm(t, h, g, b, NULL, NULL, true, 0.1f, 1e-5f),
                                                   TG_ACT_RELU);
        CHECK(y != NULL);
        if (!y) return;
        CHECK_INT(tg_backward_seed(t, y, dy), 0);
        int same = 1;
        for (int k = 0; k < 3; k++)
            for (int64_t i = 0; i < all[k]->size; i++) {
                if (!fused) keep[k][i] = all[k]->grad[i];
                else same &= keep[k][i] == all[k]->grad[i];
            }
        for (int i = 0; i < N * C * L; i++) {
            if (!fused) y0[i] = y->data[i];
            else same &= y0[i] == y->data[i];
        }
        CHECK(same);
        tg_tape_free(t);
    }
    tg_tensor_free(x), tg_tensor_free(g), tg_tensor_free(b);
}

/* batch_norm+relu+maxpool and batch_norm+add+relu+maxpool are the ops in a row: the same pooled
 * output, argmax, running statistics and gradients (x, gamma, beta, the shortcut), bit for bit;
 * planes wide enough for eight windows a vector (20 across), 7 windows (14), and odd sides */
static void batch_norm_relu_pool(void) {
    static const int sides[][3] = {{4, 18, 20}, {3, 14, 14}, {2, 5, 7}};
    enum { C = 3 };
    for (int si = 0; si < 3; si++)
        for (int add = 0; add < 2; add++)
            for (int training = 1; training >= 0; training--) {
                int N = sides[si][0], H = sides[si][1], W = sides[si][2], Ho = H / 2, Wo = W / 2;
                uint64_t s = 29 + (uint64_t)si;
                tg_tensor *x = tg_param_new(4, (int[]){N, C, H, W}), *sc = tg_param_new(4, (int[]){N, C, H, W});
                tg_tensor *g = tg_param_new(1, (int[]){C}), *b = tg_param_new(1, (int[]){C}), *rm[2], *rv[2];
                tg_tensor *all[4] = {x, g, b, sc};
                int64_t n = (int64_t)N * C * H * W, np = (int64_t)N * C * Ho * Wo;
                float *dy = malloc((size_t)np * sizeof *dy), *y0 = malloc((size_t)np * sizeof *y0);
                int32_t *a0 = malloc((size_t)np * sizeof *a0);
                float *keep[4];
                for (int k = 0; k < 4; k++) keep[k] = malloc((size_t)all[k]->size * sizeof(float));
                for (int64_t i = 0; i < n; i++) x->data[i] = 2 * frand(&s) + 0.2f, sc->data[i] = frand(&s);
                for (int64_t i = 0; i < np; i++) dy[i] = frand(&s);
                for (int c = 0; c < C; c++) g->data[c] = 1 + 0.5f * frand(&s), b->data[c] = 0.3f * frand(&s);
                for (int k = 0; k < 2; k++) {
                    rm[k] = tg_tensor_new(1, (int[]){C}), rv[k] = tg_tensor_new(1, (int[]){C});
                    for (int c = 0; c < C; c++) rm[k]->data[c] = 0.1f * c, rv[k]->data[c] = 1 + 0.2f * c;
                }
                int same = 1, zeros = 0;
                for (int fused = 0; fused < 2; fused++) {
                    tg_tape *t = tg_tape_new();
                    for (int k = 0; k < 4; k++) tg_tensor_zero_grad(all[k]);
                    tg_tensor *y;
                    if (fused) {
                        y = tg_batch_norm_relu_max_pool(t, x, g, b, rm[1], rv[1], training, 0.1f, 1e-5f,
                                                        add ? sc : NULL);
                    } else {
                        tg_tensor *h = tg_batch_norm(t, x, g, b, rm[0], rv[0], training, 0.1f, 1e-5f);
                        h = add ? tg_residual_add_act(t, sc, h, TG_ACT_RELU) : tg_relu(t, h);
                        y = tg_max_pool2d(t, h, 2, 2, 0);
                    }
                    CHECK(y && y->shape[2] == Ho && y->shape[3] == Wo);
                    if (!y) break;
                    const int32_t *arg = tg_max_pool2d_argmax(y);
                    CHECK(arg != NULL);
                    CHECK_INT(tg_backward_seed(t, y, dy), 0);
                    for (int64_t i = 0; i < np && arg; i++) {
                        if (!fused) y0[i] = y->data[i], a0[i] = arg[i], zeros += y->data[i] == 0;
                        else same &= y0[i] == y->data[i] && a0[i] == arg[i];
                    }
                    for (int k = 0; k < 3 + add; k++)
                        for (int64_t i = 0; i < all[k]->size; i++) {
                            if (!fused) keep[k][i] = all[k]->grad[i];
                            else same &= memcmp(&keep[k][i], &all[k]->grad[i], sizeof(float)) == 0;
                        }
                    if (fused)
                        for (int c = 0; c < C; c++)
                            same &= rm[0]->data[c] == rm[1]->data[c] && rv[0]->data[c] == rv[1]->data[c];
                    const char *variant = add ? "add+relu+maxpool" : "relu+maxpool";
                    if (fused) CHECK(strcmp(y->node->op->variant(y->node), variant) == 0);
                    tg_tape_free(t);
                }
                CHECK(same);
                CHECK(zeros > 0 && zeros < np); /* the ReLU cuts some windows whole */
                for (int k = 0; k < 4; k++) free(keep[k]), tg_tensor_free(all[k]);
                for (int k = 0; k < 2; k++) tg_tensor_free(rm[k]), tg_tensor_free(rv[k]);
                free(dy), free(y0), free(a0);
            }
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_param_new(4, (int[]){2, 3, 1, 4}), *g = tg_param_new(1, (int[]){3}),
              *b = tg_param_new(1, (int[]){3});
    CHECK(tg_batch_norm_relu_max_pool(t, x, g, b, NULL, NULL, true, 0.1f, 1e-5f, NULL) == NULL);
    CHECK_MSG(tg_last_error(), "batch_norm: pooling needs x (N,C,H,W) with H and W at least 2");
    tg_tape_free(t);
    tg_tensor_free(x), tg_tensor_free(g), tg_tensor_free(b);
}

/* In a residual block x feeds both branches: its gradient is the sum over both paths. */
static void residual(void) {
    uint64_t s = 5;
    tg_tensor *x = tg_param_new(4, (int[]){2, 3, 4, 4}), *w = tg_param_new(4, (int[]){3, 3, 3, 3});
    static float r[2 * 3 * 4 * 4], branch[2 * 3 * 4 * 4];
    for (int i = 0; i < x->size; i++) x->data[i] = frand(&s), r[i] = frand(&s);
    for (int i = 0; i < w->size; i++) w->data[i] = frand(&s) * 0.3f;
    tg_tape *t = tg_tape_new();
    /* the branch alone: dx = conv^T relu'(...) r */
    tg_tensor *f = tg_relu(t, tg_conv2d(t, x, w, NULL, 1, 1, 1, 1));
    CHECK_INT(tg_backward_seed(t, f, r), 0);
    memcpy(branch, x->grad, sizeof branch);
    tg_tensor_zero_grad(x);
    tg_tape_reset(t);
    /* the block: y = x + relu(conv(x)) */
    tg_tensor *y = tg_residual_add(t, x, tg_relu(t, tg_conv2d(t, x, w, NULL, 1, 1, 1, 1)));
    CHECK(y && strcmp(y->node->op->name, "residual_add") == 0);
    CHECK_INT(tg_backward_seed(t, y, r), 0);
    double worst = 0;
    for (int i = 0; i < x->size; i++) worst = fmax(worst, fabs(x->grad[i] - (branch[i] + r[i])));
    CHECK(worst < 1e-6);
    CHECK(tg_residual_add(t, x, tg_tensor_tape(t, 4, (int[]){2, 3, 4, 5})) == NULL);
    CHECK_MSG(tg_last_error(), "residual_add: shapes 2x3x4x4 and 2x3x4x5 differ");
    /* residual_add with the ReLU epilogue is relu(residual_add): the same output and gradients, bit for bit */
    static float y0[2 * 3 * 4 * 4], g0[2 * 3 * 4 * 4];
    for (int fused = 0; fused < 2; fused++) {
        tg_tape_reset(t);
        tg_tensor_zero_grad(x);
        tg_tensor *f = tg_conv2d(t, x, w, NULL, 1, 1, 1, 1);
        y = fused ? tg_residual_add_act(t, x, f, TG_ACT_RELU) : tg_relu(t, tg_residual_add(t, x, f));
        CHECK(y && strcmp(y->node->op->name, fused ? "residual_add" : "relu") == 0);
        CHECK_INT(tg_backward_seed(t, y, r), 0);
        int same = 1, zeros = 0;
        for (int i = 0; i < x->size; i++) {
            if (!fused) y0[i] = y->data[i], g0[i] = x->grad[i];
            else same &= y0[i] == y->data[i] && g0[i] == x->grad[i];
            zeros += y->data[i] == 0;
        }
        CHECK(same);
        CHECK(zeros > 5);
    }
    tg_tensor_free(x);
    tg_tensor_free(w);
    tg_tape_free(t);
}


// ----------------------------------------------------------------------------
// NaN and infinities through the ReLUs and pools, as in PyTorch: relu(NaN) is
// NaN, relu(x) is +0 for x <= 0 (-0 and -Inf too), and threshold_backward passes
// dy where NOT y <= 0 (so where y is NaN); a pool window holding a NaN gives NaN

static const float specials[7] = {NAN, INFINITY, -INFINITY, -0.0f, 0.0f, 1.5f, -2.0f};

static float torch_relu(float v) { return v <= 0.0f ? 0.0f : v; }
static float torch_mask(float y, float dy) { return y <= 0.0f ? 0.0f : dy; }
/* the same float: the same bits, or both NaN */
static bool same_float(float a, float b) { return isnan(a) ? isnan(b) : memcmp(&a, &b, sizeof a) == 0; }
static int64_t count_differ(const float *a, const float *b, int64_t n) {
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) k += !same_float(a[i], b[i]);
    return k;
}

/* relu and residual_add with the ReLU epilogue on every pair of special values, in the vector loop and its tail
 * (49 elements: 6 vectors of 8 and 1 more); dx stored (via a multiply by 1) and added */
static void relu_nan(void) {
    enum { N = 49 };
    for (int via = 0; via < 2; via++) {
        tg_tape *t = tg_tape_new();
        tg_tensor *a = tg_param_new(1, (int[]){N}), *b = tg_param_new(1, (int[]){N});
        tg_tensor *one = tg_tensor_tape(t, 0, NULL);
        one->data[0] = 1.0f;
        float dy[N], want[N];
        for (int i = 0; i < N; i++) a->data[i] = specials[i % 7], b->data[i] = specials[i / 7], dy[i] = 1.0f + i;
        tg_tensor *y = tg_relu(t, via ? tg_mul(t, a, one) : a);
        for (int i = 0; i < N; i++) want[i] = torch_relu(a->data[i]);
        CHECK_INT(count_differ(y->data, want, N), 0);
        CHECK_INT(tg_backward_seed(t, y, dy), 0);
        for (int i = 0; i < N; i++) want[i] = torch_mask(y->data[i], dy[i]);
        CHECK_INT(count_differ(a->grad, want, N), 0);
        tg_tensor_zero_grad(a);
        tg_tape_reset(t);
        one = tg_tensor_tape(t, 0, NULL);
        one->data[0] = 1.0f;
        y = tg_residual_add_act(t, via ? tg_mul(t, a, one) : a, via ? tg_mul(t, b, one) : b, TG_ACT_RELU);
        for (int i = 0; i < N; i++) want[i] = torch_relu(a->data[i] + b->data[i]);
        CHECK_INT(count_differ(y->data, want, N), 0);
        CHECK_INT(tg_backward_seed(t, y, dy), 0);
        for (int i = 0; i < N; i++) want[i] = torch_mask(y->data[i], dy[i]);
        CHECK_INT(count_differ(a->grad, want, N), 0);
        CHECK_INT(count_differ(b->grad, want, N), 0);
        int nans = 0, minus_zeros = 0;
        for (int i = 0; i < N; i++) nans += isnan(y->data[i]), minus_zeros += y->data[i] == 0 && signbit(y->data[i]);
        CHECK_INT(nans, 13 + 2); /* a or b NaN, and Inf + -Inf */
        CHECK_INT(minus_zeros, 0);
        tg_tensor_free(a), tg_tensor_free(b);
        tg_tape_free(t);
    }
}

/* batch_norm with the ReLU epilogue, without and with an add, in evaluation with mean 0 and variance + eps = 1,
 * so y = relu(x + beta (+ s)) element by element: special values in x, in beta (a whole
 * channel NaN, +Inf or -Inf) and in the shortcut s. Where x is finite dx = gamma * rstd * dy'
 * = dy' exactly, dy' = dy masked by PyTorch's rule; the shortcut's gradient is dy' itself. */
static void batch_norm_relu_nan(void) {
    enum { N = 3, C = 4, L = 7 * 3 }; /* runs of 21: 2 vectors and a tail of 5 */
    const float eps = 1.0f / 1024;
    tg_tensor *x = tg_param_new(3, (int[]){N, C, L}), *sc = tg_param_new(3, (int[]){N, C, L});
    tg_tensor *g = tg_param_new(1, (int[]){C}), *b = tg_param_new(1, (int[]){C});
    tg_tensor *rm = tg_tensor_new(1, (int[]){C}), *rv = tg_tensor_new(1, (int[]){C});
    const float beta[C] = {0.0f, NAN, INFINITY, -INFINITY};
    static float dy[N * C * L], want[N * C * L];
    for (int c = 0; c < C; c++) g->data[c] = 1.0f, b->data[c] = beta[c], rv->data[c] = 1.0f - eps;
    for (int add = 0; add < 2; add++) {
        uint64_t s = 31;
        for (int i = 0; i < N * C * L; i++) {
            /* without the add: the special values in x; with it: in the shortcut, x finite */
            x->data[i] = add ? frand(&s) : specials[i % 7];
            sc->data[i] = specials[(i + i / L) % 7];
            dy[i] = 1.0f + (float)i;
        }
        tg_tensor *all[4] = {x, sc, g, b};
        for (int k = 0; k < 4; k++) tg_tensor_zero_grad(all[k]);
        tg_tape *t = tg_tape_new();
        tg_tensor *y = tg_batch_norm_act(t, x, g, b, rm, rv, false, 0.1f, eps, add ? sc : NULL, TG_ACT_RELU);
        CHECK(y != NULL);
        if (!y) return;
        for (int i = 0; i < N * C * L; i++) {
            float v = x->data[i] + b->data[i / L % C];
            want[i] = torch_relu(add ? v + sc->data[i] : v);
        }
        CHECK_INT(count_differ(y->data, want, N * C * L), 0);
        CHECK_INT(tg_backward_seed(t, y, dy), 0);
        int64_t bad_dx = 0, passed_nan = 0;
        double dbeta[C] = {0};
        for (int i = 0; i < N * C * L; i++) {
            float d = torch_mask(y->data[i], dy[i]);
            bad_dx += isfinite(x->data[i]) && !same_float(x->grad[i], d);
            if (add) bad_dx += !same_float(sc->grad[i], d);
            passed_nan += isnan(y->data[i]) && d != 0;
            dbeta[i / L % C] += d;
        }
        CHECK_INT(bad_dx, 0);
        CHECK(passed_nan > L); /* beta NaN: the whole channel */
        for (int c = 0; c < C; c++) CHECK_NEAR(b->grad[c], dbeta[c], 1e-6 * dbeta[c]);
        tg_tape_free(t);
    }
    tg_tensor *all[] = {x, sc, g, b, rm, rv};
    for (int k = 0; k < 6; k++) tg_tensor_free(all[k]);
}

/* max_pool2d and avg_pool2d over windows holding NaN and infinities: the 2x2 stride-2
 * path (9 windows a row: 8 at a time and 1) and the general one (3x3, stride 1, pad 1) */
static void pooling_nan(void) {
    enum { H = 4, W = 18 };
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){1, 2, H, W});
    uint64_t s = 41;
    for (int64_t i = 0; i < x->size; i++) {
        float u = frand(&s);
        x->data[i] = u > 0.5f ? specials[i % 4] : u; /* NaN, Inf, -Inf, -0 in a quarter of the places */
    }
    const int cfg[2][3] = {{2, 2, 0}, {3, 1, 1}};
    for (int k = 0; k < 2; k++) {
        int K = cfg[k][0], S = cfg[k][1], P = cfg[k][2];
        tg_tensor *mx = tg_max_pool2d(t, x, K, S, P), *av = tg_avg_pool2d(t, x, K, S, P);
        int bad = 0, nans = 0;
        for (int p = 0; p < 2; p++)
            for (int oh = 0; oh < mx->shape[2]; oh++)
                for (int ow = 0; ow < mx->shape[3]; ow++) {
                    bool nan = false, pinf = false, ninf = false;
                    float best = -INFINITY;
                    for (int ih = oh * S - P; ih < oh * S - P + K; ih++)
                        for (int iw = ow * S - P; iw < ow * S - P + K; iw++) {
                            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                            float v = x->data[(p * H + ih) * W + iw];
                            nan |= isnan(v), pinf |= v == INFINITY, ninf |= v == -INFINITY;
                            best = v > best ? v : best;
                        }
                    int o = (p * mx->shape[2] + oh) * mx->shape[3] + ow;
                    float m = mx->data[o], a = av->data[o];
                    bad += nan ? !isnan(m) : !(m == best);
                    bad += isnan(a) != (nan || (pinf && ninf));
                    bad += !nan && !(pinf && ninf) && (pinf || ninf) && a != (pinf ? INFINITY : -INFINITY);
                    nans += nan;
                }
        CHECK_INT(bad, 0);
        CHECK(nans > 3);
    }
    tg_tape_free(t);
}

/* conv2d with the ReLU epilogue against conv2d on x holding NaN and infinities, with a NaN, a +Inf and a
 * -Inf bias: y = relu(conv2d) by PyTorch's rule, and the gradients are conv2d's for dy
 * masked by that rule. On each path (stride 1: the image shifted by tap, whose AVX-512
 * kernel applies the ReLU as it stores; stride 2: im2col; 1x1: GEMM on x) and kernel. */
static void conv2d_relu_nan(void) {
    static const int cases[][11] = {/* N, C, H, W, K, R, S, stride, pad, dilation, groups */
                                    {2, 5, 9, 7, 11, 3, 3, 1, 1, 1, 1},
                                    {2, 4, 9, 9, 6, 3, 3, 2, 1, 1, 1},
                                    {2, 5, 6, 6, 7, 1, 1, 1, 0, 1, 1}};
    static const char *kernels[] = {"avx512", "avx2", "generic"};
    for (int kk = 0; kk < 3; kk++) {
        if (tg__isa_use(kernels[kk]) < 0) continue;
        for (int ci = 0; ci < 3; ci++) {
            const int *c = cases[ci];
            uint64_t s = 13;
            tg_tensor *x = tg_param_new(4, (int[]){c[0], c[1], c[2], c[3]});
            tg_tensor *w = tg_param_new(4, (int[]){c[4], c[1] / c[10], c[5], c[6]}), *b = tg_param_new(1, &c[4]);
            for (int64_t i = 0; i < x->size; i++) x->data[i] = frand(&s);
            for (int64_t i = 0; i < w->size; i++) w->data[i] = frand(&s);
            for (int64_t i = 0; i < b->size; i++) b->data[i] = i < 3 ? specials[i] : frand(&s);
            x->data[c[3] + 2] = NAN, x->data[x->size - 3] = INFINITY, x->data[x->size / 2] = -INFINITY;
            tg_tape *t = tg_tape_new();
            tg_tensor *y0 = tg_conv2d(t, x, w, b, c[7], c[8], c[9], c[10]);
            int64_t n = y0->size;
            float *dy = malloc((size_t)n * sizeof *dy), *dym = malloc((size_t)n * sizeof *dym);
            float *want = malloc((size_t)n * sizeof *want), *keep[3];
            int nans = 0, infs = 0, cut = 0;
            for (int64_t i = 0; i < n; i++) {
                dy[i] = frand(&s), dym[i] = torch_mask(y0->data[i], dy[i]), want[i] = torch_relu(y0->data[i]);
                nans += isnan(y0->data[i]), infs += y0->data[i] == INFINITY, cut += y0->data[i] == -INFINITY;
            }
            CHECK(nans > 0 && infs > 0 && cut > 0);
            CHECK_INT(tg_backward_seed(t, y0, dym), 0);
            tg_tensor *p[3] = {x, w, b};
            for (int k = 0; k < 3; k++) {
                keep[k] = malloc((size_t)p[k]->size * sizeof(float));
                memcpy(keep[k], p[k]->grad, (size_t)p[k]->size * sizeof(float));
                tg_tensor_zero_grad(p[k]);
            }
            tg_tensor *y = tg_conv2d_act(t, x, w, b, c[7], c[8], c[9], c[10], TG_ACT_RELU);
            int64_t bad = count_differ(y->data, want, n);
            CHECK_INT(tg_backward_seed(t, y, dy), 0);
            for (int k = 0; k < 3; k++) bad += count_differ(p[k]->grad, keep[k], p[k]->size), free(keep[k]);
            if (bad) fprintf(stderr, "conv2d+relu NaN: %s, case %d: %lld differ\n", kernels[kk], ci, (long long)bad);
            CHECK_INT(bad, 0);
            free(dy), free(dym), free(want);
            tg_tape_free(t);
            tg_tensor_free(x), tg_tensor_free(w), tg_tensor_free(b);
        }
    }
    tg__isa_use(NULL);
}

// ----------------------------------------------------------------------------
// extreme attributes: every shape callback computes in 64 bits and refuses what
// does not fit; the few that fit run forward, backward and a tape dump (UBSan watches)

enum { E_CONV, E_CONV_RELU, E_CONVT, E_MAXPOOL, E_AVGPOOL, E_UPSAMPLE, E_RESHAPE };
#define BIG INT_MAX
#define MIN INT_MIN

typedef struct {
    int op;
    int x[4], w[4]; /* x of more than 2^24 elements is a tensor of shape alone (refused before its data is read) */
    int a[5];       /* the constructor's int attributes in order; reshape: ndim, then in w the shape */
    const char *msg; /* a substring of the message, or NULL: accepted with output shape out */
    int out[4];
} extreme;

static const extreme extremes[] = {
    /* conv2d: stride, pad, dilation, groups */
    {E_CONV, {1, 2, 8, 8}, {4, 2, 3, 3}, {BIG, 0, 1, 1},
     "conv2d: stride 2147483647, pad 0, dilation 1, groups 1: need"},
    {E_CONV, {1, 2, 8, 8}, {4, 2, 3, 3}, {MIN, 0, 1, 1}, "conv2d: stride -2147483648, pad 0"},
    {E_CONV, {1, 2, 8, 8}, {4, 2, 3, 3}, {0, 0, 1, 1}, "conv2d: stride 0, pad 0"},
    {E_CONV, {1, 2, 8, 8}, {4, 2, 3, 3}, {1, BIG, 1, 1}, "conv2d: stride 1, pad 2147483647, dilation 1"},
    {E_CONV, {1, 2, 8, 8}, {4, 2, 3, 3}, {1, -1, 1, 1}, "conv2d: stride 1, pad -1, dilation 1"},
    {E_CONV, {1, 2, 8, 8}, {4, 2, 3, 3}, {1, MIN, 1, 1}, "conv2d: stride 1, pad -2147483648,"},
    {E_CONV, {1, 2, 8, 8}, {4, 2, 3, 3}, {1, 65537, 1, 1}, "(and each at most 65536)"},
    {E_CONV, {1, 2, 8, 8}, {4, 2, 3, 3}, {1, 0, BIG, 1}, "conv2d: stride 1, pad 0, dilation 2147483647, groups 1"},
    {E_CONV, {1, 2, 8, 8}, {4, 2, 3, 3}, {1, 0, 0, 1}, "conv2d: stride 1, pad 0, dilation 0, groups 1"},
    {E_CONV, {1, 2, 8, 8}, {4, 2, 3, 3}, {1, 0, MIN, 1}, "dilation -2147483648, groups 1"},
    {E_CONV, {1, 2, 8, 8}, {4, 2, 3, 3}, {1, 0, 1, 0}, "conv2d: stride 1, pad 0, dilation 1, groups 0: need"},
    {E_CONV, {1, 2, 8, 8}, {4, 2, 3, 3}, {1, 0, 1, MIN}, "groups -2147483648: need"},
    {E_CONV, {1, 2, 8, 8}, {4, 2, 3, 3}, {1, 0, 1, BIG}, "conv2d: groups 2147483647 must divide the 2 input"},
    /* a huge dilation over a big kernel: the span (2^31 + 1) does not fit an int */
    {E_CONV, {1, 1, 8, 8}, {1, 1, 32769, 1}, {1, 0, 65536, 1},
     "conv2d: kernel 32769x1 (dilation 65536) is larger than the padded input 8x8"},
    {E_CONV, {1, 1, 8, 8}, {1, 1, 32769, 1}, {1, 65536, 65536, 1}, "is larger than the padded input 131080x131080"},
    {E_CONV, {1, 2, 8, 8}, {4, 2, 3, 3}, {1, 65536, 1, 1}, "conv2d: more than 2147483647 elements"},
    {E_CONV, {1, 1, BIG, 1}, {1, 1, 1, 1}, {1, 1, 1, 1},
     "conv2d: the padded input 2147483649x3 is larger than 2147483647 a side (x 1x1x2147483647x1, pad 1)"},
    {E_CONV, {1, 1, 1, BIG}, {1, 1, 1, 1}, {65536, 65536, 1, 1}, "conv2d: the padded input 131073x2147614719"},
    {E_CONV, {1, 1, 1, 1}, {1, 1, 2, 2}, {1, 32768, 65536, 1}, NULL, {1, 1, 1, 1}}, /* one output, 2^32 padded */
    {E_CONV, {1, 2, 8, 8}, {4, 2, 3, 3}, {65536, 0, 1, 1}, NULL, {1, 4, 1, 1}},
    {E_CONV_RELU, {1, 2, 8, 8}, {4, 2, 3, 3}, {BIG, MIN, BIG, MIN}, "conv2d: stride 2147483647, pad -2147483648"},
    {E_CONV_RELU, {1, 1, 8, 8}, {1, 1, 1, 32769}, {1, 0, 65536, 1}, "conv2d: kernel 1x32769 (dilation 65536)"},
    {E_CONV_RELU, {1, 1, 1, 1}, {1, 1, 2, 2}, {1, 32768, 65536, 1}, NULL, {1, 1, 1, 1}},
    /* conv_transpose2d: stride, pad, output_padding, dilation, groups */
    {E_CONVT, {1, 2, 4, 4}, {2, 3, 3, 3}, {BIG, 0, 0, 1, 1},
     "conv_transpose2d: stride 2147483647, pad 0, output_padding 0"},
    {E_CONVT, {1, 2, 4, 4}, {2, 3, 3, 3}, {MIN, 0, 0, 1, 1}, "conv_transpose2d: stride -2147483648,"},
    {E_CONVT, {1, 2, 4, 4}, {2, 3, 3, 3}, {0, 0, 0, 1, 1}, "conv_transpose2d: stride 0,"},
    {E_CONVT, {1, 2, 4, 4}, {2, 3, 3, 3}, {1, BIG, 0, 1, 1}, "conv_transpose2d: stride 1, pad 2147483647,"},
    {E_CONVT, {1, 2, 4, 4}, {2, 3, 3, 3}, {1, -1, 0, 1, 1}, "conv_transpose2d: stride 1, pad -1,"},
    {E_CONVT, {1, 2, 4, 4}, {2, 3, 3, 3}, {1, 0, BIG, 1, 1},
     "conv_transpose2d: output_padding 2147483647 must be smaller than the stride 1 or the dilation 1"},
    {E_CONVT, {1, 2, 4, 4}, {2, 3, 3, 3}, {1, 0, MIN, 1, 1}, "output_padding -2147483648, dilation 1, groups 1: need"},
    {E_CONVT, {1, 2, 4, 4}, {2, 3, 3, 3}, {1, 0, -1, 1, 1}, "output_padding -1, dilation 1"},
    {E_CONVT, {1, 2, 4, 4}, {2, 3, 3, 3}, {1, 0, 0, BIG, 1}, "dilation 2147483647, groups 1: need"},
    {E_CONVT, {1, 2, 4, 4}, {2, 3, 3, 3}, {1, 0, 0, 0, 1}, "dilation 0, groups 1: need"},
    {E_CONVT, {1, 2, 4, 4}, {2, 3, 3, 3}, {1, 0, 0, 1, MIN}, "groups -2147483648: need"},
    {E_CONVT, {1, 2, 4, 4}, {2, 3, 3, 3}, {1, 0, 0, 1, BIG}, "conv_transpose2d: groups 2147483647 must divide"},
    {E_CONVT, {1, 2, 4, 4}, {2, 3, 3, 3}, {1, 65537, 0, 1, 1}, "(and stride, pad, dilation at most 65536)"},
    {E_CONVT, {1, 2, 4, 4}, {2, 3, 3, 3}, {1, 65536, 0, 1, 1}, "conv_transpose2d: output would be -131066x-131066"},
    /* (H-1)*stride and dilation*(R-1) reach 2^31 */
    {E_CONVT, {1, 1, 32769, 1}, {1, 1, 1, 1}, {65536, 0, 0, 1, 1},
     "conv_transpose2d: output would be 2147483649x1, with the pad 0 more than 2147483647 a side"},
    {E_CONVT, {1, 1, 32769, 1}, {1, 1, 1, 1}, {65536, 1, 0, 1, 1},
     "conv_transpose2d: output would be 2147483647x-1 (x 1x1x32769x1"},
    {E_CONVT, {1, 1, 32769, 2}, {1, 1, 1, 1}, {65536, 1, 0, 1, 1},
     "conv_transpose2d: output would be 2147483647x65535, with the pad 1 more than 2147483647 a side"},
    {E_CONVT, {1, 1, 4, 4}, {1, 1, 32769, 1}, {1, 0, 0, 65536, 1}, "conv_transpose2d: output would be 2147483652x4,"},
    {E_CONVT, {1, 1, 2, 2}, {1, 1, 1, 1}, {65536, 0, 65535, 1, 1}, "conv_transpose2d: more than 2147483647 elements"},
    {E_CONVT, {1, 1, 1, 1}, {1, 1, 2, 2}, {1, 32768, 0, 65536, 1}, NULL, {1, 1, 1, 1}},
    /* max_pool2d and avg_pool2d: kernel, stride, pad */
    {E_MAXPOOL, {1, 1, 8, 8}, {0}, {BIG, 1, 0}, "max_pool2d: kernel 2147483647, stride 1, pad 0: need kernel >= 1"},
    {E_MAXPOOL, {1, 1, 8, 8}, {0}, {MIN, 1, 0}, "max_pool2d: kernel -2147483648, stride 1, pad 0: need"},
    {E_MAXPOOL, {1, 1, 8, 8}, {0}, {65537, 1, 0}, "(and kernel, stride at most 65536)"},
    {E_MAXPOOL, {1, 1, 8, 8}, {0}, {2, BIG, 0}, "max_pool2d: kernel 2, stride 2147483647, pad 0: need"},
    {E_MAXPOOL, {1, 1, 8, 8}, {0}, {2, MIN, 0}, "max_pool2d: kernel 2, stride -2147483648, pad 0: need"},
    {E_MAXPOOL, {1, 1, 8, 8}, {0}, {2, 0, 0}, "max_pool2d: kernel 2, stride 0, pad 0: need"},
    {E_MAXPOOL, {1, 1, 8, 8}, {0}, {2, 2, BIG}, "max_pool2d: pad 2147483647 is more than half the kernel 2"},
    {E_MAXPOOL, {1, 1, 8, 8}, {0}, {2, 2, MIN}, "max_pool2d: kernel 2, stride 2, pad -2147483648: need"},
    {E_MAXPOOL, {1, 1, 8, 8}, {0}, {65536, 1, 0}, "max_pool2d: kernel 65536 is larger than the padded input 8x8"},
    {E_MAXPOOL, {1, 1, BIG, 1}, {0}, {2, 1, 1},
     "max_pool2d: the padded input 2147483649x3 is larger than 2147483647 a side (x 1x1x2147483647x1, pad 1)"},
    {E_MAXPOOL, {1, 1, 1, 1}, {0}, {65536, 1, 32768}, NULL, {1, 1, 2, 2}}, /* 2^32 windows, all holding x */
    {E_MAXPOOL, {1, 1, 8, 8}, {0}, {3, 65536, 1}, NULL, {1, 1, 1, 1}},
    {E_AVGPOOL, {1, 1, 8, 8}, {0}, {-1, -1, -1}, "avg_pool2d: kernel -1, stride -1, pad -1: need"},
    {E_AVGPOOL, {1, 1, 8, 8}, {0}, {0, BIG, BIG}, "avg_pool2d: kernel 0, stride 2147483647, pad 2147483647: need"},
    {E_AVGPOOL, {1, 1, 8, 8}, {0}, {4, 1, 3}, "avg_pool2d: pad 3 is more than half the kernel 4"},
    {E_AVGPOOL, {1, 1, 1, BIG}, {0}, {65536, 1, 32768}, "avg_pool2d: the padded input 65537x2147549183 is larger"},
    {E_AVGPOOL, {1, 1, 1, 1}, {0}, {65536, 1, 32768}, NULL, {1, 1, 2, 2}},
    /* upsample: factor, mode */
    {E_UPSAMPLE, {1, 1, 2, 3}, {0}, {BIG, TG_UPSAMPLE_NEAREST},
     "upsample: factor 2147483647 would make the output 4294967294x6442450941, more than 1048576 a side (x 1x1x2x3)"},
    {E_UPSAMPLE, {1, 1, 2, 3}, {0}, {MIN, TG_UPSAMPLE_NEAREST}, "upsample: factor -2147483648 must be >= 1"},
    {E_UPSAMPLE, {1, 1, 2, 3}, {0}, {-1, TG_UPSAMPLE_BILINEAR}, "upsample: factor -1 must be >= 1"},
    {E_UPSAMPLE, {1, 1, 2, 3}, {0}, {524288, TG_UPSAMPLE_NEAREST}, "upsample: factor 524288 would make the output"},
    {E_UPSAMPLE, {1, 1, 2, 2}, {0}, {524288, TG_UPSAMPLE_NEAREST}, "upsample: more than 2147483647 elements"},
    {E_UPSAMPLE, {1, 1, 2, 3}, {0}, {2, BIG}, "upsample: unknown mode 2147483647"},
    {E_UPSAMPLE, {1, 1, 2, 3}, {0}, {2, MIN}, "upsample: unknown mode -2147483648"},
    {E_UPSAMPLE, {1, 1, 2, 3}, {0}, {3, TG_UPSAMPLE_BILINEAR}, NULL, {1, 1, 6, 9}},
    /* reshape: ndim, and the shape in w */
    {E_RESHAPE, {1, 2, 3, 4}, {2, 12}, {BIG}, "reshape: 2147483647 dimensions, at most 4 are supported"},
    {E_RESHAPE, {1, 2, 3, 4}, {2, 12}, {MIN}, "reshape: -2147483648 dimensions, at most 4 are supported"},
    {E_RESHAPE, {1, 2, 3, 4}, {2, 12}, {-1}, "reshape: -1 dimensions"},
    {E_RESHAPE, {1, 2, 3, 4}, {BIG, BIG, BIG, BIG}, {4},
     "reshape: cannot view 1x2x3x4 (24 elements) as 2147483647x2147483647x2147483647x2147483647"},
    {E_RESHAPE, {1, 2, 3, 4}, {65536, 65536, 65536, -1}, {4},
     "reshape: cannot view 1x2x3x4 (24 elements) as 65536x65536x65536x-1"},
    {E_RESHAPE, {1, 2, 3, 4}, {BIG, -1}, {2}, "reshape: cannot view 1x2x3x4 (24 elements) as 2147483647x-1"},
    {E_RESHAPE, {1, 2, 3, 4}, {MIN, 24}, {2}, "reshape: dimension 0 is -2147483648 (only one -1 is allowed)"},
    {E_RESHAPE, {1, 2, 3, 4}, {-1, 0}, {2}, "reshape: dimension 1 is 0"},
    {E_RESHAPE, {1, 2, 3, 4}, {-1, -1}, {2}, "reshape: dimension 1 is -1 (only one -1 is allowed)"},
    {E_RESHAPE, {1, 2, 3, 4}, {0}, {0}, "reshape: cannot view 1x2x3x4 (24 elements) as a scalar"},
    {E_RESHAPE, {1, 2, 3, 4}, {4, -1, 2}, {3}, NULL, {4, 3, 2, 1}},
};

static tg_tensor *extreme_apply(tg_tape *t, const extreme *e, tg_tensor *x, tg_tensor *w) {
    const int *a = e->a;
    switch (e->op) {
    case E_CONV: return tg_conv2d(t, x, w, NULL, a[0], a[1], a[2], a[3]);
    case E_CONV_RELU: return tg_conv2d_act(t, x, w, NULL, a[0], a[1], a[2], a[3], TG_ACT_RELU);
    case E_CONVT: return tg_conv_transpose2d(t, x, w, NULL, a[0], a[1], a[2], a[3], a[4]);
    case E_MAXPOOL: return tg_max_pool2d(t, x, a[0], a[1], a[2]);
    case E_AVGPOOL: return tg_avg_pool2d(t, x, a[0], a[1], a[2]);
    case E_UPSAMPLE: return tg_upsample(t, x, a[0], (tg_upsample_mode)a[1]);
    default: return tg_reshape(t, x, a[0], e->w);
    }
}

static void extreme_attributes(void) {
    static float dummy[1];
    FILE *devnull = fopen("/dev/null", "w");
    int accepted = 0;
    for (size_t i = 0; i < sizeof extremes / sizeof *extremes; i++) {
        const extreme *e = &extremes[i];
        bool conv = e->op == E_CONV || e->op == E_CONV_RELU || e->op == E_CONVT;
        int64_t nx = (int64_t)e->x[0] * e->x[1] * e->x[2] * e->x[3];
        tg_tape *t = tg_tape_new();
        /* too big to allocate: a tensor of shape alone, refused before its data is read */
        tg_tensor shape_only = {.data = dummy, .ndim = 4, .shape = {e->x[0], e->x[1], e->x[2], e->x[3]}, .size = nx};
        tg_tensor *x = nx > (1 << 24) ? &shape_only : tg_param_new(4, e->x);
        tg_tensor *w = conv ? tg_param_new(4, e->w) : NULL;
        for (int64_t j = 0; x != &shape_only && j < x->size; j++) x->data[j] = 1.0f + (float)j;
        for (int64_t j = 0; w && j < w->size; j++) w->data[j] = 0.5f;
        tg_clear_error();
        tg_tensor *y = extreme_apply(t, e, x, w);
        if (e->msg) {
            CHECK(y == NULL);
            CHECK_MSG(tg_last_error(), e->msg);
            if (y || !strstr(tg_last_error(), e->msg)) fprintf(stderr, "  (row %zu)\n", i);
        } else {
            CHECK(y != NULL);
            if (!y) fprintf(stderr, "row %zu: %s\n", i, tg_last_error());
            CHECK(y && memcmp(y->shape, e->out, sizeof e->out) == 0);
            if (y && memcmp(y->shape, e->out, sizeof e->out))
                fprintf(stderr, "  (row %zu: %dx%dx%dx%d)\n", i, y->shape[0], y->shape[1], y->shape[2], y->shape[3]);
            /* the rest of the op's callbacks on these attributes: backward and a tape dump */
            if (y) CHECK_INT(tg_backward(t, tg_sum(t, y)), 0);
            CHECK_INT(tg_tape_dump(t, devnull), 0);
            accepted++;
        }
        if (x != &shape_only) tg_tensor_free(x);
        tg_tensor_free(w);
        tg_tape_free(t);
    }
    fclose(devnull);
    printf("extreme attributes: %zu cases, %d accepted\n", sizeof extremes / sizeof *extremes, accepted);
    /* the values of two that ran: a one-pixel image in 2^32 windows */
    tg_tape *t = tg_tape_new();
    tg_tensor *one = tg_tensor_tape(t, 4, (int[]){1, 1, 1, 1});
    one->data[0] = 4294967296.0f;
    CHECK_NEAR(tg_avg_pool2d(t, one, 65536, 1, 32768)->data[0], 1.0, 0);
    CHECK_NEAR(tg_max_pool2d(t, one, 65536, 1, 32768)->data[0], 4294967296.0, 0);
    CHECK(tg_reshape(t, one, 2, NULL) == NULL);
    CHECK_MSG(tg_last_error(), "reshape: shape is NULL for 2 dimensions");
    tg_tape_free(t);
}

int main(void) {
    conv();
    pooling();
    pooling_2x2_wide(42);
    pooling_2x2_wide(14);
    dropout();
    batch_norm();
    batch_norm_closed_form();
    batch_norm_act_relu();
    batch_norm_relu_pool();
    batch_norm_add_act_relu();
    batch_norm_add_self();
    residual();
    relu_nan();
    batch_norm_relu_nan();
    pooling_nan();
    conv2d_relu_nan();
    extreme_attributes();
    CHECK_DONE();
}
