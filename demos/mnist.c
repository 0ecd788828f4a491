/* mnist.c: train a small CNN on MNIST with tapegrad.
 *
 *   build/demos/mnist [--data DIR] [--net mlp|lenet|resnet] [--epochs N] [--batch N] [--lr X]
 *                     [--optim sgd|adam|adamw] [--augment] [--threads N] [--seed N] [--limit N]
 *                     [--test-limit N] [--warmup STEPS] [--save FILE] [--load FILE] [--out DIR]
 *                     [--resume FILE] [--stop-after STEPS] [--precision highest|medium]
 *   TG_TAPE_DUMP=FILE build/demos/mnist ...   also writes the first step's tape (tg_tape_dump) to FILE
 *
 * The training loop is demos/trainer.c's (shared with demos/fashion); this
 * file brings the data, the nets (nets.c) and the pictures. */
#include "nets.h"
#include "trainer.h"
#include "tapegrad_nn.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "stb_image_write.h"

// ----------------------------------------------------------------------------
// pictures: misclassified digits with "predicted>true" under each, and the first conv's filters

static const char *const font[10] = {/* 3x5 digits, rows top to bottom */
    "111101101101111", "010110010010111", "111001111100111", "111001111001111", "101101111001001",
    "111100111001111", "111100111101111", "111001001010010", "111101111101111", "111101111001111"};

static void draw_digit(uint8_t *img, int stride, int x0, int y0, int d, uint8_t v) {
    for (int r = 0; r < 5; r++)
        for (int c = 0; c < 3; c++)
            if (font[d][r * 3 + c] == '1') img[(y0 + r) * stride + x0 + c] = v;
}

static void write_errors_png(const char *path, const tg_dataset *ds, const int32_t *pred) {
    enum { COLS = 10, ROWS = 10, CW = 30, CH = 38 };
    static uint8_t img[ROWS * CH * COLS * CW];
    memset(img, 255, sizeof img);
    int k = 0;
    for (int i = 0; i < ds->n && k < COLS * ROWS; i++) {
        if (pred[i] == ds->labels[i]) continue;
        int x0 = (k % COLS) * CW + 1, y0 = (k / COLS) * CH + 1;
        for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++) { /* undo the normalisation; dark digits on white */
                img[(y0 + y) * COLS * CW + x0 + x] = (uint8_t)(255 - ds->pixels[(int64_t)i * 784 + y * 28 + x]);
            }
        draw_digit(img, COLS * CW, x0 + 6, y0 + 30, pred[i], 200); /* predicted, light */
        draw_digit(img, COLS * CW, x0 + 14, y0 + 30, ds->labels[i], 0); /* true, black */
        k++;
    }
    if (!stbi_write_png(path, COLS * CW, ROWS * CH, 1, img, COLS * CW))
        fprintf(stderr, "mnist: cannot write %s\n", path);
    else
        printf("wrote %s: %d misclassified test digits (grey: predicted, black: true)\n", path, k);
}

static void write_filters_png(const char *path, const tg_model *m) {
    const tg_layer *l = NULL;
    for (int i = 0; i < tg_model_layer_count(m) && !l; i++)
        if (!strcmp(tg_model_layer(m, i)->kind, "conv2d")) l = tg_model_layer(m, i);
    if (!l) return; /* the mlp has no conv */
    const tg_tensor *w = l->params[0];
    int K = w->shape[0], R = w->shape[2], S = w->shape[3], Z = 8, cell = R * Z + 2, cols = 8;
    int rows = (K + cols - 1) / cols, W = cols * cell, H = rows * cell;
    uint8_t *img = calloc((size_t)W * H, 1);
    if (!img) return;
    for (int k = 0; k < K; k++) {
        const float *f = w->data + (int64_t)k * w->shape[1] * R * S; /* the first input channel */
        float lo = f[0], hi = f[0];
        for (int j = 0; j < R * S; j++) lo = fminf(lo, f[j]), hi = fmaxf(hi, f[j]);
        for (int y = 0; y < R * Z; y++)
            for (int x = 0; x < S * Z; x++) {
                float v = (f[(y / Z) * S + x / Z] - lo) / (hi - lo + 1e-12f);
                img[((k / cols) * cell + 1 + y) * W + (k % cols) * cell + 1 + x] = (uint8_t)(v * 255);
            }
    }
    if (stbi_write_png(path, W, H, 1, img, W)) printf("wrote %s: the %d filters of the first conv\n", path, K);
    free(img);
}

// ----------------------------------------------------------------------------

int main(int argc, char **argv) {
    demo_options o = demo_parse(argc, argv, (demo_options){
        .prog = "mnist", .data = "data/mnist", .net = "resnet", .out = ".", .epochs = 5, .batch = 64, .lr = 0.05f,
        .momentum = 0.9f, .weight_decay = 5e-4f, .seed = 42, .warmup = 200,
        .aug = {.degrees = 10, .scale = 0.1f, .shift = 2}, /* as torchvision's RandomAffine(10, (0.07, 0.07), (0.9, 1.1)) */
        .usage = "[--data DIR] [--net mlp|lenet|resnet] [--epochs N] [--batch N] [--lr X]\n"
                 "             [--optim sgd|adam|adamw] [--augment] [--threads N] [--seed N] [--limit N]\n"
                 "             [--test-limit N] [--warmup STEPS] [--save FILE] [--load FILE] [--out DIR]\n"
                 "             [--resume FILE] [--stop-after STEPS] [--precision highest|medium]"});
    tg_dataset *train, *test;
    demo_data(&o, TG_MNIST_MEAN, TG_MNIST_STD, "run scripts/fetch-mnist.sh, or give --data DIR with the four IDX files",
              &train, &test);
    tg_model *m = net_new(o.net, o.seed);
    if (!m) demo_usage(&o, "--net must be mlp, lenet or resnet");
    int32_t *pred = malloc((size_t)test->n * sizeof *pred);
    double acc = demo_train(&o, m, train, test, pred);
    if (acc < 0) { /* --stop-after: the rest is the resumed run's */
        free(pred), tg_model_free(m), tg_dataset_free(train), tg_dataset_free(test);
        return 0;
    }

    char path[4096];
    snprintf(path, sizeof path, "%s/mnist_errors.png", o.out);
    write_errors_png(path, test, pred);
    snprintf(path, sizeof path, "%s/mnist_filters.png", o.out);
    write_filters_png(path, m);
    printf("test accuracy: %.2f%%\n", 100 * acc);

    free(pred);
    tg_model_free(m);
    tg_dataset_free(train);
    tg_dataset_free(test);
    return 0;
}
