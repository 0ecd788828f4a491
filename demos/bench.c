/* bench.c: training and evaluation throughput of the MNIST demo's nets.
 *
 *   build/demos/bench [--data DIR] [--steps N] [--net mlp|lenet|resnet] [--threads N]
 *
 * For each net and thread count (1 and 2 unless given): 5 warm-up steps, then N
 * timed training steps at batch 64 (SGD, lr 0.05, momentum 0.9, consecutive
 * batches), then one evaluation pass over 2000 test images in batches of 100. GFLOP/s counts a
 * training step as three times its forward FLOPs (backward is about twice the
 * forward). The last column is the process's peak resident memory so far. */
#include "nets.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "bench: %s: %s\n", what, tg_last_error());
    exit(1);
}

static void bench(const char *net, int threads, int steps, const tg_dataset *train, const tg_dataset *test) {
    enum { B = 64 };
    tg_set_threads(threads);
    tg_model *m = net_new(net, 0);
    tg_tensor **ps;
    int np = tg_model_params(m, &ps);
    tg_sgd *opt = tg_sgd_new(ps, np, (tg_sgd_opts){0.05f, 0.9f, 0, 0, false});
    tg_tape *t = tg_tape_new();
    int32_t labels[B];
    int64_t flops = 0;
    double t0 = 0;
    for (int i = 0; i < steps + 5; i++) {
        if (i == 5) t0 = now();
        tg_tensor *x = tg_tensor_tape(t, 4, (int[]){B, 1, 28, 28});
        if (!x || tg_dataset_batch(train, NULL, (i * B) % (train->n - B), x, labels) < 0) die("batch");
        tg_tensor *loss = tg_cross_entropy(t, tg_model_forward(m, t, x), labels);
        if (!loss || tg_backward(t, loss) < 0) die("step");
        if (!isfinite(loss->data[0]) && tg_model_check_finite(m) == 0)
            tg_fail(TG_ERR_NONFINITE, "the loss is %g", (double)loss->data[0]);
        if (!isfinite(loss->data[0])) die("step");
        if (tg_sgd_step(opt) < 0) die("step"); /* a NaN or Inf gradient */
        tg_sgd_zero_grad(opt);
        if (i == 0) flops = tg_tape_flops(t);
        tg_tape_reset(t);
    }
    double train_s = now() - t0;

    /* evaluation: 2000 test images in batches of 100 (the tape keeps every
     * intermediate until it is reset, so one batch of 2000 would hold them all) */
    int n = test->n < 2000 ? test->n : 2000;
    tg_model_train(m, false);
    tg_tape_set_grad_enabled(t, false);
    t0 = now();
    for (int start = 0; start < n; start += 100) {
        int b = n - start < 100 ? n - start : 100;
        tg_tensor *x = tg_tensor_tape(t, 4, (int[]){b, 1, 28, 28});
        if (!x || tg_dataset_batch(test, NULL, start, x, NULL) < 0 || !tg_model_forward(m, t, x)) die("eval");
        tg_tape_reset(t);
    }
    double eval_s = now() - t0;

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%-7s %7d %12.0f %12.0f %10.1f %10.0f\n", net, threads, steps * B / train_s, n / eval_s,
           3.0 * (double)flops * steps / train_s * 1e-9, ru.ru_maxrss / 1024.0);
    fflush(stdout);
    tg_tape_free(t);
    tg_sgd_free(opt);
    tg_model_free(m);
}

int main(int argc, char **argv) {
    const char *data = "data/mnist", *only = NULL;
    int steps = 200, threads = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--data")) data = argv[i + 1];
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--net")) only = argv[i + 1];
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: bench [--data DIR] [--steps N] [--net mlp|lenet|resnet] [--threads N]\n");
            return 2;
        }
    }
    if (steps < 1) steps = 1;
    tg_dataset *train = tg_dataset_new(data, "train", 0, TG_MNIST_MEAN, TG_MNIST_STD);
    tg_dataset *test = tg_dataset_new(data, "t10k", 0, TG_MNIST_MEAN, TG_MNIST_STD);
    if (!train || !test) die("data (run scripts/fetch-mnist.sh)");
    if (train->n <= 64 || train->h != 28 || train->w != 28) { /* steps take consecutive batches of 64 */
        tg_fail(TG_ERR_ARG, "%d training images of %dx%d: the nets need more than 64 of 28x28", train->n, train->h,
                train->w);
        die("data");
    }
    printf("%-7s %7s %12s %12s %10s %10s\n", "net", "threads", "train img/s", "eval img/s", "GFLOP/s", "maxRSS MiB");
    for (int k = 0; k < 3; k++) {
        if (only && strcmp(only, net_names[k])) continue;
        for (int th = 1; th <= 2; th++)
            if (!threads || threads == th) bench(net_names[k], th, steps, train, test);
    }
    tg_dataset_free(train);
    tg_dataset_free(test);
    return 0;
}
