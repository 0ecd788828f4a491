/* test_ops_decoder.c: transposed convolution (and that it is conv2d's adjoint),
 * upsampling, layer norm and mean squared error on hand-computed cases. */
#include "check.h"
#include "tapegrad.h"

static tg_tensor *make(tg_tape *t, int ndim, const int *shape, const float *v) {
    tg_tensor *x = tg_tensor_tape(t, ndim, shape);
    for (int64_t i = 0; i < x->size; i++) x->data[i] = v ? v[i] : 1.0f;
    return x;
}

static void conv_transpose(void) {
    tg_tape *t = tg_tape_new();
    tg_tensor *x = make(t, 4, (int[]){1, 1, 2, 2}, (float[]){1, 2, 3, 4});
    tg_tensor *w = make(t, 4, (int[]){1, 1, 2, 2}, NULL);
    /* stride 2: each input pixel fills its own 2x2 block */
    tg_tensor *y = tg_conv_transpose2d(t, x, w, NULL, 2, 0, 0, 1, 1);
    CHECK_INT(y->shape[2], 4);
    const float s2[16] = {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
    for (int i = 0; i < 16; i++) CHECK_NEAR(y->data[i], s2[i], 0);
    /* stride 1: the "full" convolution */
    y = tg_conv_transpose2d(t, x, w, make(t, 1, (int[]){1}, (float[]){0.5f}), 1, 0, 0, 1, 1);
    const float s1[9] = {1, 3, 2, 4, 10, 6, 3, 7, 4};
    for (int i = 0; i < 9; i++) CHECK_NEAR(y->data[i], s1[i] + 0.5f, 0);
    /* output size (i-1)s - 2p + d(k-1) + output_padding + 1 */
    tg_tensor *x5 = tg_tensor_tape(t, 4, (int[]){2, 4, 5, 6}), *w3 = tg_tensor_tape(t, 4, (int[]){4, 3, 3, 3});
    y = tg_conv_transpose2d(t, x5, w3, NULL, 2, 1, 1, 1, 1);
    CHECK_INT(y->shape[1], 3);
    CHECK_INT(y->shape[2], 4 * 2 - 2 + 2 + 1 + 1);
    CHECK_INT(y->shape[3], 5 * 2 - 2 + 2 + 1 + 1);
    y = tg_conv_transpose2d(t, x5, w3, NULL, 1, 0, 0, 2, 2);
    CHECK_INT(y->shape[1], 6);
    CHECK_INT(y->shape[2], 4 + 4 + 1);
    /* errors */
    CHECK(tg_conv_transpose2d(t, x5, w3, NULL, 2, 0, 2, 1, 1) == NULL);
    CHECK_MSG(tg_last_error(), "conv_transpose2d: output_padding 2 must be smaller than the stride 2");
    CHECK(tg_conv_transpose2d(t, x5, tg_tensor_tape(t, 4, (int[]){3, 3, 3, 3}), NULL, 1, 0, 0, 1, 1) == NULL);
    CHECK_MSG(tg_last_error(), "conv_transpose2d: input has 4 channels but weight expects 3");
    CHECK(tg_conv_transpose2d(t, x5, w3, NULL, 1, 0, 0, 1, 3) == NULL);
    CHECK_MSG(tg_last_error(), "groups 3 must divide the 4 input channels");
    CHECK(tg_conv_transpose2d(t, tg_tensor_tape(t, 4, (int[]){1, 4, 1, 1}), w3, NULL, 1, 2, 0, 1, 1) == NULL);
    CHECK_MSG(tg_last_error(), "conv_transpose2d: output would be -1x-1");
    CHECK(tg_conv_transpose2d(t, x5, w3, NULL, 0, 0, 0, 1, 1) == NULL);
    tg_tape_free(t);
}

/* <conv2d(x, w), y> == <x, conv_transpose2d(y, w)> for the same stride, padding, dilation, groups */
static void adjoint(void) {
    const int cfg[][6] = {/* C, K, stride, pad, dilation, groups */
                          {3, 4, 1, 1, 1, 1}, {4, 6, 2, 1, 1, 2}, {2, 3, 2, 0, 2, 1}, {4, 4, 3, 2, 1, 4}};
    uint64_t s = 9;
    for (int k = 0; k < 4; k++) {
        int C = cfg[k][0], K = cfg[k][1], S = cfg[k][2], P = cfg[k][3], D = cfg[k][4], G = cfg[k][5];
        tg_tape *t = tg_tape_new();
        tg_tensor *x = tg_tensor_tape(t, 4, (int[]){2, C, 9, 9}), *w = tg_tensor_tape(t, 4, (int[]){K, C / G, 3, 3});
        for (int i = 0; i < x->size; i++) x->data[i] = tg_rand_normal(&s);
        for (int i = 0; i < w->size; i++) w->data[i] = tg_rand_normal(&s);
        tg_tensor *cx = tg_conv2d(t, x, w, NULL, S, P, D, G);
        tg_tensor *y = tg_tensor_tape(t, 4, cx->shape);
        for (int i = 0; i < y->size; i++) y->data[i] = tg_rand_normal(&s);
        /* output_padding recovers the rows and columns the conv's stride dropped */
        int op_h = (9 + 2 * P - D * 2 - 1) % S, op_w = (9 + 2 * P - D * 2 - 1) % S;
        CHECK_INT(op_h, op_w); /* square inputs: one output_padding serves both */
        tg_tensor *ty = tg_conv_transpose2d(t, y, w, NULL, S, P, op_h, D, G);
        CHECK(ty && ty->shape[2] == 9 && ty->shape[3] == 9);
        double a = 0, b = 0;
        for (int i = 0; i < y->size; i++) a += (double)cx->data[i] * y->data[i];
        for (int i = 0; ty && i < x->size; i++) b += (double)x->data[i] * ty->data[i];
        printf("adjoint C%d K%d stride %d pad %d dilation %d groups %d: <conv x, y> %.6f, <x, convT y> %.6f\n", C, K, S,
               P, D, G, a, b);
        CHECK_NEAR(a, b, 1e-4 * fabs(a) + 1e-4);
        tg_tape_free(t);
    }
}

static void upsample(void) {
    tg_tape *t = tg_tape_new();
    tg_tensor *x = make(t, 4, (int[]){1, 1, 2, 2}, (float[]){1, 2, 3, 4});
    tg_tensor *y = tg_upsample(t, x, 2, TG_UPSAMPLE_NEAREST);
    const float nearest[16] = {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
    for (int i = 0; i < 16; i++) CHECK_NEAR(y->data[i], nearest[i], 0);
    /* bilinear, align_corners=False: F.interpolate(x, scale_factor=2, mode="bilinear") */
    y = tg_upsample(t, x, 2, TG_UPSAMPLE_BILINEAR);
    const float bilinear[16] = {1, 1.25f, 1.75f, 2, 1.5f, 1.75f, 2.25f, 2.5f,
                                2.5f, 2.75f, 3.25f, 3.5f, 3, 3.25f, 3.75f, 4};
    for (int i = 0; i < 16; i++) CHECK_NEAR(y->data[i], bilinear[i], 1e-6);
    CHECK(tg_upsample(t, x, 0, TG_UPSAMPLE_NEAREST) == NULL);
    CHECK_MSG(tg_last_error(), "upsample: factor 0 must be >= 1");
    CHECK(tg_upsample(t, tg_tensor_tape(t, 2, (int[]){2, 2}), 2, TG_UPSAMPLE_NEAREST) == NULL);
    CHECK_MSG(tg_last_error(), "upsample: input must be (N,C,H,W), got 2x2");
    tg_tape_free(t);
}

static void layer_norm_mse(void) {
    tg_tape *t = tg_tape_new();
    tg_tensor *x = make(t, 2, (int[]){2, 4}, (float[]){1, 2, 3, 4, 10, 10, 10, 14});
    tg_tensor *g = make(t, 1, (int[]){4}, (float[]){1, 1, 1, 2}), *b = make(t, 1, (int[]){4}, (float[]){0, 0, 0, 1});
    tg_tensor *y = tg_layer_norm(t, x, g, b, 1e-5f);
    /* row 0: mean 2.5, var 1.25; row 1: mean 11, var 3 */
    CHECK_NEAR(y->data[0], -1.5 / sqrt(1.25 + 1e-5), 1e-5);
    CHECK_NEAR(y->data[3], 2 * 1.5 / sqrt(1.25 + 1e-5) + 1, 1e-5);
    CHECK_NEAR(y->data[4], -1 / sqrt(3 + 1e-5), 1e-5);
    CHECK(tg_layer_norm(t, x, make(t, 1, (int[]){3}, NULL), make(t, 1, (int[]){3}, NULL), 1e-5f) == NULL);
    CHECK_MSG(tg_last_error(), "layer_norm: gamma 3 and beta 3 must hold the product of x's last dimensions (x 2x4)");
    tg_tensor *p = make(t, 1, (int[]){2}, (float[]){1, 2}), *q = make(t, 1, (int[]){2}, (float[]){0, 4});
    CHECK_NEAR(tg_mse_loss(t, p, q)->data[0], 2.5, 0);
    CHECK(tg_mse_loss(t, p, x) == NULL);
    CHECK_MSG(tg_last_error(), "mse_loss: prediction 2 and target 2x4 differ");
    tg_tape_free(t);
}

int main(void) {
    conv_transpose();
    adjoint();
    upsample();
    layer_norm_mse();
    CHECK_DONE();
}
