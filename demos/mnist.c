/* mnist.c: train a small CNN on MNIST (or Fashion-MNIST) with tapegrad.
 *
 *   build/demos/mnist [--data DIR] [--net mlp|lenet|resnet] [--epochs N] [--batch N] [--lr X]
 *                     [--threads N] [--seed N] [--limit N] [--test-limit N] [--warmup STEPS]
 *                     [--save FILE] [--load FILE] [--out DIR]
 *   TG_TAPE_DUMP=FILE build/demos/mnist ...   also writes the first step's tape (tg_tape_dump) to FILE
 *
 * Reads the program top to bottom: options, data, model, optimizer, the
 * training loop (forward, loss, backward, step, reset), evaluation, pictures. */
#include "nets.h"
#include "tapegrad_nn.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "stb_image_write.h"

typedef struct {
    const char *data, *net, *save, *load, *out;
    int epochs, batch, threads, limit, test_limit, warmup;
    float lr, momentum, weight_decay;
    uint64_t seed;
} options;

static void usage(const char *msg) {
    fprintf(stderr, "mnist: %s\n"
                    "usage: mnist [--data DIR] [--net mlp|lenet|resnet] [--epochs N] [--batch N] [--lr X]\n"
                    "             [--threads N] [--seed N] [--limit N] [--test-limit N] [--warmup STEPS]\n"
                    "             [--save FILE] [--load FILE] [--out DIR]\n", msg);
    exit(2);
}

static void die(const char *what, const char *hint) {
    fprintf(stderr, "mnist: %s: %s\n", what, tg_last_error());
    if (hint) fprintf(stderr, "---> HINT: %s\n", hint);
    exit(1);
}

static options parse(int argc, char **argv) {
    options o = {.data = "data/mnist", .net = "resnet", .out = ".", .epochs = 5, .batch = 64, .lr = 0.05f,
                 .momentum = 0.9f, .weight_decay = 5e-4f, .seed = 42,
                 .warmup = 200};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
#define NEXT() (v ? (i++, v) : (usage("missing value"), ""))
        if (!strcmp(a, "--data")) o.data = NEXT();
        else if (!strcmp(a, "--net")) o.net = NEXT();
        else if (!strcmp(a, "--save")) o.save = NEXT();
        else if (!strcmp(a, "--load")) o.load = NEXT();
        else if (!strcmp(a, "--out")) o.out = NEXT();
        else if (!strcmp(a, "--epochs")) o.epochs = (int)strtol(NEXT(), &end, 10);
        else if (!strcmp(a, "--batch")) o.batch = (int)strtol(NEXT(), &end, 10);
        else if (!strcmp(a, "--threads")) o.threads = (int)strtol(NEXT(), &end, 10);
        else if (!strcmp(a, "--limit")) o.limit = (int)strtol(NEXT(), &end, 10);
        else if (!strcmp(a, "--test-limit")) o.test_limit = (int)strtol(NEXT(), &end, 10);
        else if (!strcmp(a, "--warmup")) o.warmup = (int)strtol(NEXT(), &end, 10);
        else if (!strcmp(a, "--seed")) o.seed = strtoull(NEXT(), &end, 10);
        else if (!strcmp(a, "--lr")) o.lr = strtof(NEXT(), &end);
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) usage("train a CNN on MNIST");
        else usage("unknown option");
        if (end && *end) usage("bad number");
#undef NEXT
    }
    if (o.epochs < 0 || o.batch < 2 || o.limit < 0 || o.test_limit < 0 || o.warmup < 1 || !(o.lr > 0))
        usage("need --epochs >= 0, --batch >= 2, --lr > 0, --warmup >= 1, --limit and --test-limit >= 0");
    return o;
}

// ----------------------------------------------------------------------------
// progress: one live line on a terminal, a plain line every 10% otherwise

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void progress(int epoch, int epochs, int step, int steps, double loss, double acc, double ips, double left,
                     bool tty) {
    if (tty)
        printf("\repoch %d/%d  step %d/%d  loss %.4f  acc %.2f%%  %.0f img/s  %.0fs left   ", epoch, epochs, step,
               steps, loss, 100 * acc, ips, left);
    else
        printf("epoch %d/%d step %d/%d loss %.4f acc %.2f%% %.0f img/s %.0fs left\n", epoch, epochs, step, steps, loss,
               100 * acc, ips, left);
    fflush(stdout);
}

// ----------------------------------------------------------------------------
// evaluation: accuracy on a dataset, predictions kept for the pictures

static double evaluate(tg_model *m, const tg_dataset *ds, int32_t *pred) {
    tg_eval e = {.pred = pred};
    if (tg_model_evaluate(m, ds, 100, &e) < 0) die("evaluation", NULL);
    return e.accuracy;
}

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
    options o = parse(argc, argv);
    if (o.threads > 0) tg_set_threads(o.threads);

    tg_dataset *train = tg_dataset_new(o.data, "train", o.limit, TG_MNIST_MEAN, TG_MNIST_STD);
    if (!train) die("training data", "run scripts/fetch-mnist.sh, or give --data DIR with the four IDX files");
    tg_dataset *test = tg_dataset_new(o.data, "t10k", o.test_limit, TG_MNIST_MEAN, TG_MNIST_STD);
    if (!test) die("test data", "run scripts/fetch-mnist.sh, or give --data DIR with the four IDX files");
    if (train->h != 28 || train->w != 28 || test->h != 28 || test->w != 28 || train->classes > 10) {
        tg_fail(TG_ERR_FORMAT, "%s holds %dx%d images in %d classes", o.data, train->h, train->w, train->classes);
        die("data", "the nets take 28x28 images and 10 classes");
    }

    tg_model *m = net_new(o.net, o.seed);
    if (!m) usage("--net must be mlp, lenet or resnet");
    tg_tensor **params, **mstate, **ostate;
    int np = tg_model_params(m, &params);
    tg_sgd *opt = tg_sgd_new(params, np, (tg_sgd_opts){o.lr, o.momentum, 0, o.weight_decay, false});
    if (!opt) die("optimizer", NULL);
    /* a checkpoint holds the model's parameters and buffers, then the optimizer's state */
    int nm = tg_model_state(m, &mstate), no = tg_sgd_state(opt, &ostate);
    tg_tensor **ck = malloc((size_t)(nm + no) * sizeof *ck);
    memcpy(ck, mstate, (size_t)nm * sizeof *ck);
    memcpy(ck + nm, ostate, (size_t)no * sizeof *ck);
    if (o.load && tg_checkpoint_load(o.load, ck, nm + no) < 0) die("--load", "was it saved with the same --net?");
    if (tg_model_print(m, stdout, 4, (int[]){1, 1, 28, 28}) < 0) die("model", NULL);
    printf("%s: %lld parameters; %d training and %d test images from %s; batch %d, lr %g, %d epochs, %d threads\n",
           o.net, (long long)tg_model_param_count(m), train->n, test->n, o.data, o.batch, (double)o.lr, o.epochs,
           tg_get_threads());

    tg_tape *t = tg_tape_new();
    tg_tape_seed(t, o.seed);
    int *perm = malloc((size_t)train->n * sizeof *perm);
    int32_t *labels = malloc((size_t)o.batch * sizeof *labels), *guess = malloc((size_t)o.batch * sizeof *guess);
    int32_t *pred = malloc((size_t)test->n * sizeof *pred);
    bool tty = isatty(fileno(stdout));
    int steps = (train->n + o.batch - 1) / o.batch, total = steps * o.epochs;
    double t0 = now(), acc = 0;
    for (int epoch = 0; epoch < o.epochs; epoch++) {
        tg_permutation(perm, train->n, o.seed + (uint64_t)epoch);
        double loss_sum = 0, seen = 0, right = 0, te = now();
        for (int s = 0; s < steps; s++) {
            /* a linear warm-up (large early steps can kill the net), then cosine decay to 0 */
            int step = epoch * steps + s;
            float warm = step < o.warmup ? (float)(step + 1) / (float)o.warmup : 1.0f;
            tg_sgd_set_lr(opt, warm * tg_lr_cosine(o.lr, step, total, 0));
            int b = train->n - s * o.batch < o.batch ? train->n - s * o.batch : o.batch;
            if (b < 2) continue; /* batch norm needs two samples */
            tg_tensor *x = tg_tensor_tape(t, 4, (int[]){b, 1, 28, 28});
            if (!x || tg_dataset_batch(train, perm, s * o.batch, x, labels) < 0) die("batch", NULL);
            tg_tensor *logits = tg_model_forward(m, t, x);
            tg_tensor *loss = tg_cross_entropy(t, logits, labels);
            if (!loss || tg_backward(t, loss) < 0) die("training step", NULL);
            if (!isfinite(loss->data[0])) { /* name the weight that went bad, if one did */
                if (tg_model_check_finite(m) == 0)
                    tg_fail(TG_ERR_NONFINITE, "the loss is %g at epoch %d, step %d", (double)loss->data[0], epoch + 1, s);
                die("training step", "lower --lr, or check the data");
            }
            if (step == 0 && getenv("TG_TAPE_DUMP")) { /* the first step's tape, gradients and all */
                FILE *f = fopen(getenv("TG_TAPE_DUMP"), "w");
                if (!f || tg_tape_dump(t, f) < 0 || fclose(f) != 0) die("TG_TAPE_DUMP", "give a writable file");
                printf("wrote the tape of the first step to %s\n", getenv("TG_TAPE_DUMP"));
            }
            if (tg_sgd_step(opt) < 0) die("training step", "lower --lr, or check the data"); /* a NaN or Inf gradient */
            tg_sgd_zero_grad(opt);
            loss_sum += loss->data[0] * b, seen += b;
            tg_argmax(logits, guess);
            for (int i = 0; i < b; i++) right += guess[i] == labels[i];
            tg_tape_reset(t);
            if ((tty && (s % 10 == 0 || s == steps - 1)) || (!tty && (s + 1) % (steps / 10 + 1) == 0)) {
                double ips = seen / (now() - te), done = epoch * steps + s + 1;
                progress(epoch + 1, o.epochs, s + 1, steps, loss_sum / seen, right / seen, ips,
                         (now() - t0) / done * (total - done), tty);
            }
        }
        if (tty) printf("\n");
        acc = evaluate(m, test, pred);
        printf("epoch %d: train loss %.4f, test accuracy %.2f%% (%.1f s)\n", epoch + 1, loss_sum / seen, 100 * acc,
               now() - t0);
        if (o.save && tg_checkpoint_save(o.save, ck, nm + no) < 0) die("--save", NULL);
    }
    if (o.epochs == 0) acc = evaluate(m, test, pred);

    char path[4096];
    snprintf(path, sizeof path, "%s/mnist_errors.png", o.out);
    write_errors_png(path, test, pred);
    snprintf(path, sizeof path, "%s/mnist_filters.png", o.out);
    write_filters_png(path, m);
    printf("test accuracy: %.2f%%\n", 100 * acc);

    free(perm), free(pred), free(labels), free(guess), free(ck);
    tg_tape_free(t);
    tg_sgd_free(opt);
    tg_model_free(m);
    tg_dataset_free(train);
    tg_dataset_free(test);
    return 0;
}
