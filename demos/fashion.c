/* fashion.c: train a small MobileNet-style CNN on Fashion-MNIST: plain 3x3
 * convs, and at each scale a block of the demo's own, an inverted residual
 * with a squeeze-and-excitation gate (MobileNetV2's block, SE as in
 * MobileNetV3), built with the model API's blocks.
 *
 *   build/demos/fashion [--data DIR] [--epochs N] [--batch N] [--lr X] [--optim sgd|adam|adamw]
 *                       [--augment] [--threads N] [--seed N] [--limit N] [--test-limit N]
 *                       [--warmup STEPS] [--save FILE] [--load FILE] [--resume FILE] [--stop-after STEPS]
 *                       [--precision highest|medium] [--onnx FILE]
 *
 * --onnx FILE exports the trained net, its own blocks through their ops, as ONNX (tg_onnx_export).
 * Data: Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist). The
 * training loop is demos/trainer.c's; this file brings the net and prints the
 * confusion matrix at the end. */
#include "trainer.h"
#include <stdio.h>
#include <stdlib.h>

static const char *const classes[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                        "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

/* Squeeze-and-excitation: x * sigmoid(fc2(relu(fc1(mean of x over H, W)))), a gate per channel */
static tg_tensor *se_forward(tg_layer *b, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    tg_tensor *s = tg_layer_forward_act(b->children[0], t, tg_global_avg_pool(t, x), NULL, TG_ACT_RELU);
    s = tg_sigmoid(t, tg_layer_forward(b->children[1], t, s));
    return tg_mul(t, x, tg_reshape(t, s, 4, (int[]){x->shape[0], x->shape[1], 1, 1}));
}

/* Inverted residual: x + bn(project(se(dw(expand(x))))), where expand is a
 * 1x1 conv to `expand` times the channels, dw a depthwise 3x3 conv, each with
 * batch norm and ReLU; the add runs fused into the last batch norm. */
static tg_tensor *inverted_forward(tg_layer *b, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    tg_tensor *h = tg_layer_forward(b->children[0], t, x); /* expand */
    h = tg_layer_forward(b->children[1], t, h);            /* dw */
    h = tg_layer_forward(b->children[2], t, h);            /* se */
    h = tg_layer_forward(b->children[3], t, h);            /* project */
    return tg_layer_forward_act(b->children[4], t, h, x, TG_ACT_NONE); /* bn(h) + x */
}

static void conv_bn_relu(tg_model *m, int in, int out, int kernel, int groups) {
    tg_model_conv2d_groups(m, in, out, kernel, 1, kernel / 2, groups, false);
    tg_model_batch_norm(m, out);
    tg_model_relu(m);
}

static tg_layer *inverted_residual(tg_model *m, int c, int expand) {
    int h = c * expand;
    tg_layer *b = tg_model_begin(m, "inverted_residual", inverted_forward, NULL);
    if (b) snprintf(b->info, sizeof b->info, "%d->%d->%d expand=%d se=%d", c, h, c, expand, h / 4);
    tg_layer_set_name(tg_model_begin(m, NULL, NULL, NULL), "expand");
    conv_bn_relu(m, c, h, 1, 1);
    tg_model_end(m);
    tg_layer_set_name(tg_model_begin(m, NULL, NULL, NULL), "dw");
    conv_bn_relu(m, h, h, 3, h);
    tg_model_end(m);
    tg_layer_set_name(tg_model_begin(m, "squeeze_excite", se_forward, NULL), "se");
    tg_layer_set_name(tg_model_linear(m, h, h / 4, true), "fc1");
    tg_layer_set_name(tg_model_linear(m, h / 4, h, true), "fc2");
    tg_model_end(m);
    tg_layer_set_name(tg_model_conv2d(m, h, c, 1, 1, 0, false), "project");
    tg_layer_set_name(tg_model_batch_norm(m, c), "bn");
    return tg_model_end(m);
}

static tg_model *net_new(uint64_t seed) {
    tg_model *m = tg_model_new(seed);
    conv_bn_relu(m, 1, 32, 3, 1);
    conv_bn_relu(m, 32, 32, 3, 1);
    tg_model_max_pool(m, 2, 2); /* 32x14x14 */
    inverted_residual(m, 32, 4);
    conv_bn_relu(m, 32, 64, 3, 1);
    tg_model_max_pool(m, 2, 2); /* 64x7x7 */
    inverted_residual(m, 64, 4);
    tg_model_global_avg_pool(m);
    tg_model_dropout(m, 0.2f);
    tg_model_linear(m, 64, 10, true);
    return m;
}

int main(int argc, char **argv) {
    demo_options o = demo_parse(argc, argv, (demo_options){
        .prog = "fashion", .data = "/usr/share/datasets/fashion-mnist", .out = ".", .epochs = 6, .batch = 64,
        .lr = 0.05f, .momentum = 0.9f, .nesterov = true, .weight_decay = 5e-4f, .seed = 42, .warmup = 200,
        .aug = {.degrees = 5, .scale = 0.05f, .shift = 2}, /* clothes are upright: milder than digits */
        .usage = "[--data DIR] [--epochs N] [--batch N] [--lr X] [--optim sgd|adam|adamw]\n"
                 "               [--augment] [--threads N] [--seed N] [--limit N] [--test-limit N]\n"
                 "               [--warmup STEPS] [--save FILE] [--load FILE] [--resume FILE] [--stop-after STEPS]\n"
                 "               [--precision highest|medium] [--onnx FILE]"});
    tg_dataset *train, *test;
    demo_data(&o, 0.2860f, 0.3530f, "install Debian's dataset-fashion-mnist, or give --data DIR with its four files",
              &train, &test);
    tg_model *m = net_new(o.seed);
    int32_t *pred = malloc((size_t)test->n * sizeof *pred);
    double acc = demo_train(&o, m, train, test, pred);
    if (acc < 0) { /* --stop-after: the rest is the resumed run's */
        free(pred), tg_model_free(m), tg_dataset_free(train), tg_dataset_free(test);
        return 0;
    }

    int confusion[10][10] = {{0}};
    for (int i = 0; i < test->n; i++) confusion[test->labels[i]][pred[i]]++;
    printf("\nconfusion matrix (rows: true class, columns: predicted)\n%13s", "");
    for (int j = 0; j < 10; j++) printf(" %5d", j);
    printf("  right\n");
    for (int i = 0; i < 10; i++) {
        int n = 0;
        printf("%d %-11s", i, classes[i]);
        for (int j = 0; j < 10; j++) printf(" %5d", confusion[i][j]), n += confusion[i][j];
        printf("  %5.1f%%\n", n ? 100.0 * confusion[i][i] / n : 0.0);
    }
    printf("test accuracy: %.2f%%\n", 100 * acc);
    demo_export_onnx(&o, m);

    free(pred);
    tg_model_free(m);
    tg_dataset_free(train);
    tg_dataset_free(test);
    return 0;
}
