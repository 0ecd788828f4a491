/* nets.c: the MNIST demo's nets, each a few lines of layers. */
#include "nets.h"
#include <string.h>

const char *const net_names[3] = {"mlp", "lenet", "resnet"};

/* 784 -> 512, ReLU, dropout 0.2, -> 10 */
static void mlp(tg_model *m) {
    tg_model_flatten(m);
    tg_model_linear(m, 784, 512, true);
    tg_model_relu(m);
    tg_model_dropout(m, 0.2f);
    tg_model_linear(m, 512, 10, true);
}

/* PyTorch's examples/mnist net */
static void lenet(tg_model *m) {
    tg_model_conv2d(m, 1, 32, 3, 1, 0, true);   /* 32x26x26 */
    tg_model_relu(m);
    tg_model_conv2d(m, 32, 64, 3, 1, 0, true);  /* 64x24x24 */
    tg_model_relu(m);
    tg_model_max_pool(m, 2, 2);                 /* 64x12x12 */
    tg_model_dropout(m, 0.25f);
    tg_model_flatten(m);
    tg_model_linear(m, 9216, 128, true);
    tg_model_relu(m);
    tg_model_dropout(m, 0.5f);
    tg_model_linear(m, 128, 10, true);
}

/* conv-BN-ReLU and a v1 residual block at 16 and 32 channels; convs before BN have no bias */
static void resnet(tg_model *m) {
    tg_model_conv2d(m, 1, 16, 3, 1, 1, false);
    tg_model_batch_norm(m, 16);
    tg_model_relu(m);
    tg_model_residual(m, 16, 16, 1, 1);
    tg_model_max_pool(m, 2, 2);                 /* 16x14x14 */
    tg_model_conv2d(m, 16, 32, 3, 1, 1, false);
    tg_model_batch_norm(m, 32);
    tg_model_relu(m);
    tg_model_residual(m, 32, 32, 1, 1);
    tg_model_max_pool(m, 2, 2);                 /* 32x7x7 */
    tg_model_flatten(m);
    tg_model_dropout(m, 0.5f);
    tg_model_linear(m, 32 * 7 * 7, 10, true);
}

tg_model *net_new(const char *name, uint64_t seed) {
    void (*build[3])(tg_model *) = {mlp, lenet, resnet};
    for (int i = 0; i < 3; i++)
        if (strcmp(name, net_names[i]) == 0) {
            tg_model *m = tg_model_new(seed);
            if (m) build[i](m);
            return m;
        }
    return NULL;
}
