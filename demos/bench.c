/* bench.c: training and evaluation throughput of the MNIST demo's nets.
 *
 *   build/demos/bench [--data DIR] [--steps N] [--net mlp|lenet|resnet] [--threads N] [--ops]
 *                     [--precision highest|medium]
 *
 * For each net and thread count (1 and 2 unless given): 5 warm-up steps, then N
 * timed training steps at batch 64 (SGD, lr 0.05, momentum 0.9, consecutive
 * batches), then one evaluation pass over 2000 test images in batches of 100. GFLOP/s counts a
 * training step as three times its forward FLOPs (backward is about twice the
 * forward); "peak" is that as a share of the machine's FMA peak, measured first
 * (tg_fma_peak: independent chains of FMAs of the kernels' widest vectors on each thread).
 * The last column is the process's peak resident memory so far. With --ops, each net's ops
 * follow: their share of a step's time and their forward and backward GFLOP/s (backward by
 * each op's own FLOP count) and share of the peak, from 20 more steps. --precision
 * medium runs the convolutions' products in bf16 where the CPU can
 * (tg_set_float32_matmul_precision); the peak stays float32's. */
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

// ----------------------------------------------------------------------------
// the FMA peak (tg_fma_peak, measured on 1 and on 2 threads): what the tables' shares are of

static double fma_peak(int threads) {
    tg_set_threads(threads);
    tg_set_fma_peak(0); /* measure again, on this many threads */
    return tg_fma_peak();
}

static double peak[3]; /* by thread count */

// ----------------------------------------------------------------------------
// the nets

/* Training step i: batch i of 64 consecutive images, SGD (the tape is left for the caller
 * to read, then reset). */
static void train_step(tg_model *m, tg_sgd *opt, tg_tape *t, const tg_dataset *train, int i) {
    enum { B = 64 };
    int32_t labels[B];
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){B, 1, 28, 28});
    if (!x || tg_dataset_batch(train, NULL, (i * B) % (train->n - B), x, labels) < 0) die("batch");
    tg_tensor *loss = tg_cross_entropy(t, tg_model_forward(m, t, x), labels);
    if (!loss || tg_backward(t, loss) < 0) die("step");
    if (!isfinite(loss->data[0]) && tg_model_check_finite(m) == 0)
        tg_fail(TG_ERR_NONFINITE, "the loss is %g", (double)loss->data[0]);
    if (!isfinite(loss->data[0])) die("step");
    if (tg_sgd_step(opt) < 0) die("step"); /* a NaN or Inf gradient */
    tg_sgd_zero_grad(opt);
}

/* Each op's share of 20 training steps: time, and forward and backward GFLOP/s against the peak. */
static void op_table(tg_model *m, tg_sgd *opt, tg_tape *t, const tg_dataset *train, int threads) {
    enum { STEPS = 20, MAX = 64 };
    tg_op_total sum[MAX] = {{{0}}}, one[MAX];
    int n = 0;
    for (int i = 0; i < STEPS; i++) {
        train_step(m, opt, t, train, i);
        int k = tg_tape_op_totals(t, one, MAX);
        if (k < 0) die("op totals");
        n = k < MAX ? k : MAX;
        for (int j = 0; j < n; j++) {
            memcpy(sum[j].name, one[j].name, sizeof sum[j].name);
            sum[j].nodes = one[j].nodes, sum[j].flops = one[j].flops; /* per step */
            sum[j].flops_backward = one[j].flops_backward;
            sum[j].t_forward += one[j].t_forward, sum[j].t_backward += one[j].t_backward;
        }
        tg_tape_reset(t);
    }
    double total = 0;
    for (int j = 0; j < n; j++) total += sum[j].t_forward + sum[j].t_backward;
    printf("  %-22s %5s %7s %7s %9s %7s %9s %7s\n", "op", "nodes", "time", "ms", "fwd GF/s", "peak", "bwd GF/s",
           "peak");
    for (int j = 0; j < n; j++) {
        const tg_op_total *o = &sum[j];
        printf("  %-22s %5d %6.1f%% %7.3f", o->name, o->nodes, 100 * (o->t_forward + o->t_backward) / total,
               1e3 * (o->t_forward + o->t_backward) / STEPS);
        if (o->flops > 0 && o->t_forward > 0 && peak[threads] > 0) {
            double f = 1e-9 * (double)o->flops * STEPS / o->t_forward;
            /* the backward by each op's own count (a conv whose input needs no gradient has no dx) */
            double b = o->t_backward > 0 && o->flops_backward > 0
                           ? 1e-9 * (double)o->flops_backward * STEPS / o->t_backward : 0;
            printf(" %9.1f %6.1f%% %9.1f %6.1f%%", f, 100 * f / peak[threads], b, 100 * b / peak[threads]);
        }
        printf("\n");
    }
}

static bool show_ops;

static void bench(const char *net, int threads, int steps, const tg_dataset *train, const tg_dataset *test) {
    enum { B = 64 };
    tg_set_threads(threads);
    tg_model *m = net_new(net, 0);
    tg_tensor **ps;
    int np = tg_model_params(m, &ps);
    tg_sgd *opt = tg_sgd_new(ps, np, (tg_sgd_opts){0.05f, 0.9f, 0, 0, false});
    tg_tape *t = tg_tape_new();
    int64_t flops = 0;
    double t0 = 0;
    for (int i = 0; i < steps + 5; i++) {
        if (i == 5) t0 = now();
        train_step(m, opt, t, train, i);
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
    double gflops = 3.0 * (double)flops * steps / train_s * 1e-9;
    printf("%-7s %7d %12.0f %12.0f %10.1f %6.1f%% %10.0f\n", net, threads, steps * B / train_s, n / eval_s, gflops,
           peak[threads] > 0 ? 100 * gflops / peak[threads] : 0.0, ru.ru_maxrss / 1024.0);
    if (show_ops) {
        tg_model_train(m, true);
        tg_tape_set_grad_enabled(t, true);
        op_table(m, opt, t, train, threads);
    }
    fflush(stdout);
    tg_tape_free(t);
    tg_sgd_free(opt);
    tg_model_free(m);
}

int main(int argc, char **argv) {
    const char *data = "data/mnist", *only = NULL;
    int steps = 200, threads = 0;
    for (int i = 1; i < argc; i += 2) {
        if (!strcmp(argv[i], "--ops")) {
            show_ops = true, i--;
            continue;
        }
        if (i + 1 >= argc) argv[i] = "?"; /* an option without its value */
        if (!strcmp(argv[i], "--data")) data = argv[i + 1];
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--net")) only = argv[i + 1];
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--precision") && tg_set_float32_matmul_precision(argv[i + 1]) == 0) continue;
        else {
            fprintf(stderr, "usage: bench [--data DIR] [--steps N] [--net mlp|lenet|resnet] [--threads N] [--ops] "
                            "[--precision highest|medium]\n");
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
    for (int th = 1; th <= 2; th++)
        if (!threads || threads == th) peak[th] = fma_peak(th);
    printf("float32 matmul precision: %s\n", tg_get_float32_matmul_precision());
    printf("FMA peak (measured, tg_fma_peak):");
    for (int th = 1; th <= 2; th++)
        if (peak[th] > 0) printf(" %.0f GFLOP/s on %d thread%s", peak[th], th, th > 1 ? "s" : "");
    printf("\n");
    if (show_ops)
        printf("(--ops: an op's backward FLOPs by its own count, as tape dumps count them; ms is per step)\n");
    printf("%-7s %7s %12s %12s %10s %7s %10s\n", "net", "threads", "train img/s", "eval img/s", "GFLOP/s", "peak",
           "maxRSS MiB");
    for (int k = 0; k < 3; k++) {
        if (only && strcmp(only, net_names[k])) continue;
        for (int th = 1; th <= 2; th++)
            if (!threads || threads == th) bench(net_names[k], th, steps, train, test);
    }
    tg_dataset_free(train);
    tg_dataset_free(test);
    return 0;
}
