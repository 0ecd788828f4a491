/* speedrun.c: MNIST from the IDX files on disk to 99% test accuracy in as little
 * wall time as this machine allows.
 *
 *   build/demos/speedrun [--data DIR] [--threads N] [--seed N] [--precision highest|medium]
 *
 * THE RECIPE (all of it; the README has the same in PyTorch's words)
 *   data    MNIST's 60,000 training images, normalised (x/255 - 0.1307) / 0.3081,
 *           no augmentation; each epoch in an order from the seed
 *   net     conv 3x3 1->C1 pad 1, BN, ReLU, max pool 2      (C1x14x14)
 *           conv 3x3 C1->C2 pad 1, BN, ReLU, max pool 2     (C2x7x7)
 *           conv 3x3 C2->C3 pad 1, BN, ReLU, max pool 2     (C3x3x3)
 *           flatten, linear 9*C3 -> 10
 *           convs without bias; PyTorch's default initialisation; BN momentum 0.1, eps 1e-5
 *   train   SGD, Nesterov momentum 0.9, weight decay 5e-4 on conv and linear weights only,
 *           batch BATCH, 1.5 epochs (an epoch, then the first half of another in a new
 *           order), one-cycle learning rate over those steps (OneCycleLR: max_lr LR, 30%
 *           rising, cosine, div_factor 25, final_div_factor 1e4, no momentum cycling),
 *           cross-entropy
 *   test    at the end, all 10,000 test images in evaluation mode (batches of 100)
 *   C1, C2, C3, BATCH, LR: 16, 32, 64, 128, 0.1 (below)
 * Prints the time to 99% (from the start of the program, data loading included) and
 * ends with "test accuracy: NN.NN%". */
#include "tapegrad_nn.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "speedrun: %s: %s\n", what, tg_last_error());
    exit(1);
}

enum { C1 = 16, C2 = 32, C3 = 64, BATCH = 128, EPOCHS_X2 = 3 };
#define LR 0.1

static void block(tg_model *m, int in, int out) {
    tg_model_conv2d(m, in, out, 3, 1, 1, false);
    tg_model_batch_norm(m, out);
    tg_model_relu(m);
    tg_model_max_pool(m, 2, 2);
}

int main(int argc, char **argv) {
    double t0 = now();
    const char *data = "data/mnist";
    int threads = 2;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc) data = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc && tg_set_float32_matmul_precision(argv[++i]) == 0)
            continue;
        else {
            fprintf(stderr, "usage: speedrun [--data DIR] [--threads N] [--seed N] [--precision highest|medium]\n");
            return 2;
        }
    }
    tg_set_threads(threads);

    tg_dataset *train = tg_dataset_new(data, "train", 0, TG_MNIST_MEAN, TG_MNIST_STD);
    tg_dataset *test = tg_dataset_new(data, "t10k", 0, TG_MNIST_MEAN, TG_MNIST_STD);
    if (!train || !test) die(data);

    tg_model *m = tg_model_new(seed);
    block(m, 1, C1);
    block(m, C1, C2);
    block(m, C2, C3);
    tg_model_flatten(m);
    tg_model_linear(m, 9 * C3, 10, true);

    tg_tensor **params;
    int np = tg_model_params(m, &params), nn;
    tg_tensor **decay = malloc((size_t)np * sizeof *decay), **no_decay = malloc((size_t)np * sizeof *no_decay);
    int nd = tg_params_split_decay(params, np, decay, no_decay, &nn);
    tg_optim *opt = tg_optim_sgd(decay, nd, (tg_sgd_opts){LR, 0.9f, 0, 5e-4f, true});
    if (!opt || tg_optim_add_group(opt, no_decay, nn, LR, 0) < 0) die("optimizer");
    /* an epoch and a half: the second epoch's first half, in its own order */
    int steps = (train->n + BATCH - 1) / BATCH, total = steps * EPOCHS_X2 / 2;
    tg_sched *sched = tg_sched_new(opt, (tg_sched_opts){.kind = TG_SCHED_ONE_CYCLE, .steps = total});
    if (!sched) die("schedule");

    tg_tape *t = tg_tape_new();
    tg_tape_seed(t, seed);
    int *perm = malloc((size_t)train->n * sizeof *perm);
    int32_t *labels = malloc((size_t)BATCH * sizeof *labels);
    double t_train = now();
    printf("speedrun: %lld parameters; data loaded in %.2f s; %d threads, batch %d, %g epochs, precision %s\n",
           (long long)tg_model_param_count(m), t_train - t0, tg_get_threads(), BATCH, EPOCHS_X2 / 2.0,
           tg_get_float32_matmul_precision());
    for (int step = 0; step < total; step++) {
        int epoch = step / steps, s = step % steps;
        if (s == 0) tg_permutation(perm, train->n, seed + (uint64_t)epoch);
        int b = train->n - s * BATCH < BATCH ? train->n - s * BATCH : BATCH;
        tg_tensor *x = tg_tensor_tape(t, 4, (int[]){b, 1, 28, 28});
        if (!x || tg_dataset_batch(train, perm, s * BATCH, x, labels) < 0) die("batch");
        tg_tensor *loss = tg_cross_entropy(t, tg_model_forward(m, t, x), labels);
        if (!loss || tg_backward(t, loss) < 0 || tg_optim_step(opt) < 0) die("training step");
        tg_optim_zero_grad(opt);
        tg_sched_step(sched);
        tg_tape_reset(t);
    }
    /* tested once, at the end: each evaluation costs time */
    double trained = now() - t_train;
    tg_eval e = {0};
    if (tg_model_evaluate(m, test, 100, &e) < 0) die("evaluation");
    double acc = e.accuracy, at = now() - t0;
    printf("after %d steps (%.2f epochs): trained in %.2f s, tested in %.2f s\n", total, (double)total / steps, trained,
           at - (t_train - t0) - trained);
    if (acc >= 0.99) printf("99%% reached in %.2f s\n", at);
    else printf("99%% not reached (%.2f s)\n", at);
    printf("test accuracy: %.2f%%\n", 100 * acc);
    free(perm), free(labels), free(decay), free(no_decay);
    tg_tape_free(t);
    tg_sched_free(sched);
    tg_optim_free(opt);
    tg_model_free(m);
    tg_dataset_free(train), tg_dataset_free(test);
    return acc >= 0.99 ? 0 : 1;
}
