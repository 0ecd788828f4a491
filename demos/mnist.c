/* mnist.c: train a small CNN on MNIST with tapegrad.
 *
 *   build/demos/mnist [--data DIR] [--net mlp|lenet|resnet] [--epochs N] [--batch N] [--lr X]
 *                     [--optim sgd|adam|adamw] [--augment] [--threads N] [--seed N] [--limit N]
 *                     [--test-limit N] [--warmup STEPS] [--save FILE] [--load FILE] [--out DIR]
 *                     [--resume FILE] [--stop-after STEPS] [--precision highest|medium] [--report DIR]
 *                     [--onnx FILE]
 *   TG_TRACE=FILE build/demos/mnist ...       also writes the timeline of the 11th step (tg_tape_trace:
 *                                             Perfetto, chrome://tracing) to FILE (TG_LOOK_STEP=N: another)
 *   TG_TAPE_DUMP=FILE build/demos/mnist ...   and the tape dump (tg_tape_dump) of the step after it
 *
 * --onnx FILE exports the trained net as ONNX (tg_onnx_export; input 1x1x28x28, any batch).
 * Writes mnist_errors.png, mnist_filters.png and mnist_features.png in --out DIR
 * (or the --report DIR, or here). --report DIR also logs the run to DIR/run.jsonl
 * and writes DIR/report.html, one page with everything (demos/report.c).
 *
 * The training loop is demos/trainer.c's (shared with demos/fashion); this
 * file brings the data, the nets (nets.c) and the pictures (pictures.c). */
#include "nets.h"
#include "pictures.h"
#include "report.h"
#include "trainer.h"
#include "tapegrad_nn.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// ----------------------------------------------------------------------------
// pictures (demos/pictures.c): the mistakes with the model's confidence, the first conv's filters,
// one test digit's feature maps through the net

static void die(const char *what) {
    fprintf(stderr, "mnist: %s: %s\n", what, tg_last_error());
    exit(1);
}

/* The model's probability of its prediction for each misclassified test image, in evaluation
 * mode and without gradients; *n receives how many there are. */
static int misclassified(tg_model *m, const tg_dataset *ds, const int32_t *pred, int **idx, float **conf) {
    int n = 0;
    *idx = malloc(((size_t)ds->n + 1) * sizeof **idx), *conf = malloc(((size_t)ds->n + 1) * sizeof **conf);
    if (!*idx || !*conf) return tg_fail(TG_ERR_NOMEM, "no memory"), -1;
    for (int i = 0; i < ds->n; i++)
        if (pred[i] != ds->labels[i]) (*idx)[n++] = i;
    tg_tape *t = tg_tape_new();
    bool was = tg_model_training(m);
    tg_model_train(m, false);
    tg_tape_set_grad_enabled(t, false);
    int rc = t ? 0 : -1;
    for (int s = 0; s < n && !rc; s += 100) {
        int b = n - s < 100 ? n - s : 100;
        tg_tensor *x = tg_tensor_tape(t, 4, (int[]){b, 1, 28, 28});
        if (!x || tg_dataset_batch(ds, *idx + s, 0, x, NULL) < 0) rc = -1;
        tg_tensor *p = rc ? NULL : tg_softmax(t, tg_model_forward(m, t, x));
        if (!p) rc = -1;
        for (int i = 0; i < b && !rc; i++) (*conf)[s + i] = p->data[(int64_t)i * p->shape[1] + pred[(*idx)[s + i]]];
        tg_tape_reset(t);
    }
    tg_model_train(m, was);
    tg_tape_free(t);
    return rc < 0 ? -1 : n;
}

static void write_errors_png(const char *path, tg_model *m, const tg_dataset *ds, const int32_t *pred) {
    int *idx = NULL;
    float *conf = NULL;
    int n = misclassified(m, ds, pred, &idx, &conf);
    uint8_t *digits = n >= 0 ? malloc(((size_t)n + 1) * 784) : NULL;
    int32_t *truth = n >= 0 ? malloc(((size_t)n + 1) * sizeof *truth) : NULL;
    int32_t *guess = n >= 0 ? malloc(((size_t)n + 1) * sizeof *guess) : NULL;
    if (!digits || !truth || !guess) die("the misclassified digits");
    for (int k = 0; k < n; k++) {
        memcpy(digits + (size_t)k * 784, ds->pixels + (size_t)idx[k] * 784, 784);
        truth[k] = ds->labels[idx[k]], guess[k] = pred[idx[k]];
    }
    if (pic_errors(path, digits, truth, guess, conf, n, 48) < 0) die("the misclassified digits");
    printf("wrote %s: %d misclassified test digits, most confident first\n", path, n);
    free(idx), free(conf), free(digits), free(truth), free(guess);
}

static void write_filters_png(const char *path, const tg_model *m) {
    const tg_layer *l = NULL;
    for (int i = 0; i < tg_model_layer_count(m) && !l; i++)
        if (!strcmp(tg_model_layer(m, i)->kind, "conv2d")) l = tg_model_layer(m, i);
    if (!l) return; /* the mlp has no conv */
    if (pic_filters(path, l->params[0], l->params[0]->name) < 0) die("the filters");
    printf("wrote %s: the %d filters of the first conv\n", path, l->params[0]->shape[0]);
}

/* The first test image through the net in evaluation mode, with gradients on so the tape
 * records each layer's nodes (no backward runs). */
static void write_features_png(const char *path, tg_model *m, const tg_dataset *ds) {
    tg_tape *t = tg_tape_new();
    bool was = tg_model_training(m);
    tg_model_train(m, false);
    tg_tensor *x = t ? tg_tensor_tape(t, 4, (int[]){1, 1, 28, 28}) : NULL;
    if (!x || tg_dataset_batch(ds, NULL, 0, x, NULL) < 0 || !tg_model_forward(m, t, x) ||
        pic_features(path, t, m, ds->pixels, ds->labels[0]) < 0)
        die("the feature maps");
    printf("wrote %s: a test digit's feature maps through the net\n", path);
    tg_model_train(m, was);
    tg_tape_free(t);
}

int main(int argc, char **argv) {
    demo_options o = demo_parse(argc, argv, (demo_options){
        .prog = "mnist", .data = "data/mnist", .net = "resnet", .epochs = 5, .batch = 64, .lr = 0.05f,
        .momentum = 0.9f, .weight_decay = 5e-4f, .seed = 42, .warmup = 200,
        .aug = {.degrees = 10, .scale = 0.1f, .shift = 2}, /* as torchvision's RandomAffine(10, (0.07, 0.07), (0.9, 1.1)) */
        .usage = "[--data DIR] [--net mlp|lenet|resnet] [--epochs N] [--batch N] [--lr X]\n"
                 "             [--optim sgd|adam|adamw] [--augment] [--threads N] [--seed N] [--limit N]\n"
                 "             [--test-limit N] [--warmup STEPS] [--save FILE] [--load FILE] [--out DIR]\n"
                 "             [--resume FILE] [--stop-after STEPS] [--precision highest|medium] [--report DIR]\n"
                 "             [--onnx FILE]"});
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

    /* the pictures go to --out, or beside the report */
    const char *out = o.out ? o.out : o.report ? o.report : ".";
    mkdir(out, 0777); /* if missing; a directory that cannot be written fails below, naming the file */
    char pics[3][4096];
    snprintf(pics[0], sizeof pics[0], "%s/mnist_errors.png", out);
    write_errors_png(pics[0], m, test, pred);
    snprintf(pics[1], sizeof pics[1], "%s/mnist_filters.png", out);
    write_filters_png(pics[1], m);
    bool conv = strcmp(o.net, "mlp") != 0; /* the mlp has no filters or feature maps */
    snprintf(pics[2], sizeof pics[2], "%s/mnist_features.png", out);
    if (conv) write_features_png(pics[2], m, test);
    printf("test accuracy: %.2f%%\n", 100 * acc);
    demo_export_onnx(&o, m);
    if (o.report) {
        char html[4096], log[4096], trace[4096];
        snprintf(log, sizeof log, "%s/run.jsonl", o.report);
        snprintf(html, sizeof html, "%s/report.html", o.report);
        snprintf(trace, sizeof trace, "%s/trace.json", o.report); /* the trainer's look at one step */
        const char *list[3] = {pics[0], pics[1], pics[2]};
        if (report_write(log, html, trace, list, conv ? 3 : 1) < 0) die("--report");
        printf("wrote %s: open it in a browser\n", html);
    }

    free(pred);
    tg_model_free(m);
    tg_dataset_free(train);
    tg_dataset_free(test);
    return 0;
}
