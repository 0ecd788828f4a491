/* autoencoder.c: a small convolutional autoencoder on MNIST, trained with
 * mean squared error; writes a PNG of test inputs and their reconstructions.
 *
 *   build/demos/autoencoder [--data DIR] [--epochs N] [--batch N] [--lr X] [--limit N] [--seed N]
 *                           [--threads N] [--png FILE]
 *
 * Down: conv 3x3 16, ReLU, max pool 2 (14x14), conv 3x3 8, ReLU, max pool 2 (7x7): 392 numbers.
 * Up: transposed conv 2x2 stride 2 to 16x14x14, ReLU, nearest upsample x2, conv 3x3 to 1x28x28, sigmoid. */
#include "pictures.h"
#include "tapegrad_nn.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what, const char *hint) {
    fprintf(stderr, "autoencoder: %s: %s\n", what, tg_last_error());
    if (hint) fprintf(stderr, "---> HINT: %s\n", hint);
    exit(1);
}

static tg_model *autoencoder_new(uint64_t seed) {
    tg_model *m = tg_model_new(seed);
    tg_model_conv2d(m, 1, 16, 3, 1, 1, true);
    tg_model_relu(m);
    tg_model_max_pool(m, 2, 2);
    tg_model_conv2d(m, 16, 8, 3, 1, 1, true);
    tg_model_relu(m);
    tg_model_max_pool(m, 2, 2);
    tg_model_conv_transpose2d(m, 8, 16, 2, 2, 0, true);
    tg_model_relu(m);
    tg_model_upsample(m, 2, TG_UPSAMPLE_NEAREST);
    tg_model_conv2d(m, 16, 1, 3, 1, 1, true);
    tg_model_sigmoid(m);
    return m;
}

/* Mean squared error over the test set (pixels in [0,1]); keeps the first reconstructions. */
static double test_error(tg_model *m, tg_tape *t, const tg_dataset *ds, float *keep, int nkeep) {
    tg_model_train(m, false);
    tg_tape_set_grad_enabled(t, false);
    double sum = 0;
    for (int start = 0; start < ds->n; start += 500) {
        int b = ds->n - start < 500 ? ds->n - start : 500;
        tg_tensor *x = tg_tensor_tape(t, 4, (int[]){b, 1, 28, 28});
        if (!x || tg_dataset_batch(ds, NULL, start, x, NULL) < 0) die("evaluation", NULL);
        tg_tensor *loss = tg_mse_loss(t, tg_model_forward(m, t, x), x);
        if (!loss) die("evaluation", NULL);
        sum += (double)loss->data[0] * b;
        tg_tape_reset(t);
    }
    /* the first reconstructions, for the picture */
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){nkeep, 1, 28, 28});
    if (!x || tg_dataset_batch(ds, NULL, 0, x, NULL) < 0) die("evaluation", NULL);
    tg_tensor *y = tg_model_forward(m, t, x);
    if (!y) die("evaluation", NULL);
    memcpy(keep, y->data, (size_t)nkeep * 784 * sizeof(float));
    tg_tape_reset(t);
    tg_tape_set_grad_enabled(t, true);
    tg_model_train(m, true);
    return sum / ds->n;
}

int main(int argc, char **argv) {
    const char *data = "data/mnist", *png = "autoencoder.png";
    int epochs = 2, batch = 64, limit = 0, threads = 0;
    float lr = 0.5f;
    uint64_t seed = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--data")) data = argv[i + 1];
        else if (!strcmp(argv[i], "--png")) png = argv[i + 1];
        else if (!strcmp(argv[i], "--epochs")) epochs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--limit")) limit = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--lr")) lr = strtof(argv[i + 1], NULL);
        else if (!strcmp(argv[i], "--seed")) seed = strtoull(argv[i + 1], NULL, 10);
        else {
            fprintf(stderr, "autoencoder: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (argc % 2 == 0 || epochs < 0 || batch < 1 || !(lr > 0)) {
        fprintf(stderr, "usage: autoencoder [--data DIR] [--epochs N] [--batch N] [--lr X] [--limit N] [--seed N] "
                        "[--threads N] [--png FILE]\n");
        return 2;
    }
    if (threads > 0) tg_set_threads(threads);
    /* pixels in [0,1]: mean 0, std 1 leaves x/255 */
    tg_dataset *train = tg_dataset_new(data, "train", limit, 0.0f, 1.0f);
    tg_dataset *test = tg_dataset_new(data, "t10k", 0, 0.0f, 1.0f);
    if (!train || !test) die("data", "run scripts/fetch-mnist.sh, or give --data DIR");
    tg_model *m = autoencoder_new(seed);
    tg_tensor **ps;
    int np = tg_model_params(m, &ps);
    tg_sgd *opt = tg_sgd_new(ps, np, (tg_sgd_opts){lr, 0.9f, 0, 0, false});
    tg_tape *t = tg_tape_new();
    int *perm = malloc((size_t)train->n * sizeof *perm);
    printf("autoencoder: %lld parameters, %d training images, lr %g, %d epochs\n",
           (long long)tg_model_param_count(m), train->n, (double)lr, epochs);
    enum { SHOW = 16 };
    static float recon[SHOW * 784];
    for (int e = 0; e < epochs; e++) {
        tg_permutation(perm, train->n, seed + (uint64_t)e);
        double sum = 0;
        for (int start = 0; start < train->n; start += batch) {
            int b = train->n - start < batch ? train->n - start : batch;
            tg_tensor *x = tg_tensor_tape(t, 4, (int[]){b, 1, 28, 28});
            if (!x || tg_dataset_batch(train, perm, start, x, NULL) < 0) die("batch", NULL);
            tg_tensor *loss = tg_mse_loss(t, tg_model_forward(m, t, x), x);
            if (!loss || tg_backward(t, loss) < 0) die("training step", NULL);
            if (!isfinite(loss->data[0])) {
                if (tg_model_check_finite(m) == 0)
                    tg_fail(TG_ERR_NONFINITE, "the loss is %g at epoch %d", (double)loss->data[0], e + 1);
                die("training step", "lower --lr");
            }
            tg_sgd_set_lr(opt, tg_lr_cosine(lr, e * train->n + start, epochs * train->n, 0));
            if (tg_sgd_step(opt) < 0) die("training step", "lower --lr"); /* a NaN or Inf gradient */
            tg_sgd_zero_grad(opt);
            sum += (double)loss->data[0] * b;
            tg_tape_reset(t);
        }
        printf("epoch %d: train mse %.5f, test mse %.5f\n", e + 1, sum / train->n,
               test_error(m, t, test, recon, SHOW));
    }
    double err = test_error(m, t, test, recon, SHOW);

    /* rows of 8: test digits over their reconstructions, with each one's class and error */
    if (pic_autoencoder(png, test->pixels, recon, test->labels, SHOW) < 0)
        die("the picture", "give a writable --png FILE");
    printf("wrote %s: %d test digits over their reconstructions\n", png, SHOW);
    printf("test reconstruction error (mse): %.5f\n", err);
    free(perm);
    tg_tape_free(t);
    tg_sgd_free(opt);
    tg_model_free(m);
    tg_dataset_free(train);
    tg_dataset_free(test);
    return 0;
}
