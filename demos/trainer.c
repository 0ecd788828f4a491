/* trainer.c: the training loop the demos share: SGD with momentum and weight
 * decay, a linear warm-up then cosine decay, a test after every epoch,
 * checkpoints of the model and the optimizer. Reads top to bottom: options,
 * data, progress, evaluation, the loop (forward, loss, backward, step, reset). */
#include "trainer.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

_Noreturn void demo_usage(const demo_options *o, const char *msg) {
    fprintf(stderr, "%s: %s\nusage: %s %s\n", o->prog, msg, o->prog, o->usage);
    exit(2);
}

_Noreturn void demo_die(const demo_options *o, const char *what, const char *hint) {
    fprintf(stderr, "%s: %s: %s\n", o->prog, what, tg_last_error());
    if (hint) fprintf(stderr, "---> HINT: %s\n", hint);
    exit(1);
}

demo_options demo_parse(int argc, char **argv, demo_options o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
#define NEXT() (v ? (i++, v) : (demo_usage(&o, "missing value"), ""))
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
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) demo_usage(&o, "train a CNN");
        else demo_usage(&o, "unknown option");
        if (end && *end) demo_usage(&o, "bad number");
#undef NEXT
    }
    if (o.epochs < 0 || o.batch < 2 || o.limit < 0 || o.test_limit < 0 || o.warmup < 1 || !(o.lr > 0))
        demo_usage(&o, "need --epochs >= 0, --batch >= 2, --lr > 0, --warmup >= 1, --limit and --test-limit >= 0");
    return o;
}

void demo_data(const demo_options *o, float mean, float std, const char *hint, tg_dataset **train, tg_dataset **test) {
    if (!(*train = tg_dataset_new(o->data, "train", o->limit, mean, std))) demo_die(o, "training data", hint);
    if (!(*test = tg_dataset_new(o->data, "t10k", o->test_limit, mean, std))) demo_die(o, "test data", hint);
    const tg_dataset *a = *train, *b = *test;
    if (a->h != 28 || a->w != 28 || b->h != 28 || b->w != 28 || a->classes > 10) {
        tg_fail(TG_ERR_FORMAT, "%s holds %dx%d images in %d classes", o->data, a->h, a->w, a->classes);
        demo_die(o, "data", "the nets take 28x28 images and 10 classes");
    }
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

static double evaluate(const demo_options *o, tg_model *m, const tg_dataset *ds, int32_t *pred) {
    tg_eval e = {.pred = pred};
    if (tg_model_evaluate(m, ds, 100, &e) < 0) demo_die(o, "evaluation", NULL);
    return e.accuracy;
}

// ----------------------------------------------------------------------------
// the loop

double demo_train(const demo_options *o, tg_model *m, const tg_dataset *train, const tg_dataset *test, int32_t *pred) {
    tg_tensor **params, **mstate, **ostate;
    int np = tg_model_params(m, &params);
    tg_sgd *opt = tg_sgd_new(params, np, (tg_sgd_opts){o->lr, o->momentum, 0, o->weight_decay, o->nesterov});
    if (!opt) demo_die(o, "optimizer", NULL);
    /* a checkpoint holds the model's parameters and buffers, then the optimizer's state */
    int nm = tg_model_state(m, &mstate), no = tg_sgd_state(opt, &ostate);
    tg_tensor **ck = malloc((size_t)(nm + no) * sizeof *ck);
    memcpy(ck, mstate, (size_t)nm * sizeof *ck);
    memcpy(ck + nm, ostate, (size_t)no * sizeof *ck);
    if (o->load && tg_checkpoint_load(o->load, ck, nm + no) < 0) demo_die(o, "--load", "was it saved with the same net?");
    if (tg_model_print(m, stdout, 4, (int[]){1, 1, 28, 28}) < 0) demo_die(o, "model", NULL);
    printf("%s: %lld parameters; %d training and %d test images from %s; batch %d, lr %g, %d epochs, %d threads\n",
           o->net ? o->net : o->prog, (long long)tg_model_param_count(m), train->n, test->n, o->data, o->batch, (double)o->lr, o->epochs,
           tg_get_threads());

    tg_tape *t = tg_tape_new();
    tg_tape_seed(t, o->seed);
    int *perm = malloc((size_t)train->n * sizeof *perm);
    int32_t *labels = malloc((size_t)o->batch * sizeof *labels), *guess = malloc((size_t)o->batch * sizeof *guess);
    bool tty = isatty(fileno(stdout));
    int steps = (train->n + o->batch - 1) / o->batch, total = steps * o->epochs;
    double t0 = now(), acc = 0;
    for (int epoch = 0; epoch < o->epochs; epoch++) {
        tg_permutation(perm, train->n, o->seed + (uint64_t)epoch);
        double loss_sum = 0, seen = 0, right = 0, te = now();
        for (int s = 0; s < steps; s++) {
            /* a linear warm-up (large early steps can kill the net), then cosine decay to 0 */
            int step = epoch * steps + s;
            float warm = step < o->warmup ? (float)(step + 1) / (float)o->warmup : 1.0f;
            tg_sgd_set_lr(opt, warm * tg_lr_cosine(o->lr, step, total, 0));
            int b = train->n - s * o->batch < o->batch ? train->n - s * o->batch : o->batch;
            if (b < 2) continue; /* batch norm needs two samples */
            tg_tensor *x = tg_tensor_tape(t, 4, (int[]){b, 1, 28, 28});
            if (!x || tg_dataset_batch(train, perm, s * o->batch, x, labels) < 0) demo_die(o, "batch", NULL);
            tg_tensor *logits = tg_model_forward(m, t, x);
            tg_tensor *loss = tg_cross_entropy(t, logits, labels);
            if (!loss || tg_backward(t, loss) < 0) demo_die(o, "training step", NULL);
            if (!isfinite(loss->data[0])) { /* name the weight that went bad, if one did */
                if (tg_model_check_finite(m) == 0)
                    tg_fail(TG_ERR_NONFINITE, "the loss is %g at epoch %d, step %d", (double)loss->data[0], epoch + 1, s);
                demo_die(o, "training step", "lower --lr, or check the data");
            }
            if (step == 0 && getenv("TG_TAPE_DUMP")) { /* the first step's tape, gradients and all */
                FILE *f = fopen(getenv("TG_TAPE_DUMP"), "w");
                if (!f || tg_tape_dump(t, f) < 0 || fclose(f) != 0) demo_die(o, "TG_TAPE_DUMP", "give a writable file");
                printf("wrote the tape of the first step to %s\n", getenv("TG_TAPE_DUMP"));
            }
            if (tg_sgd_step(opt) < 0) demo_die(o, "training step", "lower --lr, or check the data"); /* a NaN or Inf gradient */
            tg_sgd_zero_grad(opt);
            loss_sum += loss->data[0] * b, seen += b;
            tg_argmax(logits, guess);
            for (int i = 0; i < b; i++) right += guess[i] == labels[i];
            tg_tape_reset(t);
            if ((tty && (s % 10 == 0 || s == steps - 1)) || (!tty && (s + 1) % (steps / 10 + 1) == 0)) {
                double ips = seen / (now() - te), done = epoch * steps + s + 1;
                progress(epoch + 1, o->epochs, s + 1, steps, loss_sum / seen, right / seen, ips,
                         (now() - t0) / done * (total - done), tty);
            }
        }
        if (tty) printf("\n");
        acc = evaluate(o, m, test, pred);
        printf("epoch %d: train loss %.4f, test accuracy %.2f%% (%.1f s)\n", epoch + 1, loss_sum / seen, 100 * acc,
               now() - t0);
        if (o->save && tg_checkpoint_save(o->save, ck, nm + no) < 0) demo_die(o, "--save", NULL);
    }
    if (o->epochs == 0) acc = evaluate(o, m, test, pred);

    free(perm), free(labels), free(guess), free(ck);
    tg_tape_free(t);
    tg_sgd_free(opt);
    return acc;
}
