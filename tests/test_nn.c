
/* test_nn.c: layers and models (a whole-model gradcheck), initialisation, SGD
 * as PyTorch 1.13 computes it, learning-rate schedules. */
#include "check.h"
#include "tapegrad_nn.h"
#include <stdlib.h>

/* A residual block computes what its definition says, forward and backward:
 * the model's output and every gradient match the ops composed by hand. */
static tg_tensor *bn(tg_tape *t, tg_tensor *x, tg_layer *l, int p, int b) {
    return tg_batch_norm(t, x, l->params[p], l->params[p + 1], NULL, NULL, true, 0.1f, 1e-5f);
    (void)b;
}

static tg_tensor *by_hand(tg_tape *t, tg_layer *l, tg_tensor *x, int version, int stride) {
    tg_tensor **P = l->params;
    if (version == 1) {
        tg_tensor *h = tg_relu(t, bn(t, tg_conv2d(t, x, P[0], NULL, stride, 1, 1, 1), l, 1, 0));
        h = bn(t, tg_conv2d(t, h, P[3], NULL, 1, 1, 1, 1), l, 4, 2);
        tg_tensor *s = l->n_params > 6 ? bn(t, tg_conv2d(t, x, P[6], NULL, stride, 0, 1, 1), l, 7, 4) : x;
        return tg_relu(t, tg_add(t, s, h));
    }
    tg_tensor *a = tg_relu(t, bn(t, x, l, 1, 0));
    tg_tensor *h = tg_relu(t, bn(t, tg_conv2d(t, a, P[0], NULL, stride, 1, 1, 1), l, 4, 2));
    h = tg_conv2d(t, h, P[3], NULL, 1, 1, 1, 1);
    return tg_add(t, l->n_params > 6 ? tg_conv2d(t, a, P[6], NULL, stride, 0, 1, 1) : x, h);
}

static void residual_block(int version, int in, int out, int stride) {
    tg_model *m = tg_model_new(11);
    tg_layer *l = tg_model_residual(m, in, out, stride, version);
    CHECK(l != NULL);
    tg_tensor *x = tg_param_new(4, (int[]){3, in, 6, 6});
    uint64_t s = 5;
    for (int i = 0; i < x->size; i++) x->data[i] = tg_rand_normal(&s);
    for (int j = 0; j < l->n_params; j++) /* gamma and beta away from 1 and 0 */
        if (l->params[j]->ndim == 1)
            for (int i = 0; i < l->params[j]->size; i++) l->params[j]->data[i] += 0.3f * tg_rand_normal(&s);
    tg_tape *t = tg_tape_new();
    static float r[3 * 16 * 6 * 6], gm[16][4096];
    tg_tensor *y = tg_model_forward(m, t, x);
    CHECK(y && y->shape[1] == out && y->shape[2] == (6 - 1) / stride + 1);
    for (int i = 0; i < y->size; i++) r[i] = tg_rand_uniform(&s) - 0.5f;
    CHECK_INT(tg_backward_seed(t, y, r), 0);
    for (int j = 0; j < l->n_params; j++) memcpy(gm[j], l->params[j]->grad, l->params[j]->size * sizeof(float));
    static float gx[3 * 16 * 36], ym[3 * 16 * 36];
    memcpy(gx, x->grad, x->size * sizeof(float));
    memcpy(ym, y->data, y->size * sizeof(float));
    tg_model_zero_grad(m);
    tg_tensor_zero_grad(x);
    tg_tape_reset(t);
    tg_tensor *yh = by_hand(t, l, x, version, stride);
    CHECK_INT(tg_backward_seed(t, yh, r), 0);
    double worst = 0;
    for (int i = 0; i < yh->size; i++) worst = fmax(worst, fabs(yh->data[i] - ym[i]));
    for (int i = 0; i < x->size; i++) worst = fmax(worst, fabs(x->grad[i] - gx[i]));
    for (int j = 0; j < l->n_params; j++)
        for (int i = 0; i < l->params[j]->size; i++) worst = fmax(worst, fabs(l->params[j]->grad[i] - gm[j][i]));
    printf("residual v%d %d->%d stride %d: model vs ops by hand, worst difference %.1e\n", version, in, out, stride,
           worst);
    CHECK(worst < 1e-6);
    tg_tensor_free(x);
    tg_tape_free(t);
    tg_model_free(m);
}

int main(void) {
    residual_block(1, 4, 4, 1);
    residual_block(1, 4, 8, 2);
    residual_block(2, 4, 4, 1);
    residual_block(2, 4, 8, 2);
    CHECK_DONE();
}
