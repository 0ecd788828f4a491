/* interop.c: tapegrad's side of the PyTorch interop test (tests/interop.sh).
 *
 *   interop data MNIST_DIR N_TRAIN N_TEST OUT_DIR
 *       the first images of each split exactly as tapegrad normalises them, as raw
 *       float32 (train_x.f32, test_x.f32) and int64 labels (train_y.i64), so that
 *       PyTorch trains and evaluates on the same numbers
 *   interop logits NET CHECKPOINT TEST_X N OUT
 *       loads CHECKPOINT (either format; a trainer's, with more tensors after the
 *       model's, too) into the demo's net NET and writes its evaluation-mode
 *       logits for the N images of TEST_X (raw float32, N x 10) to OUT
 *   interop half NET CHECKPOINT OUT f16|bf16
 *       loads CHECKPOINT into NET and saves its state to OUT as float16 or bfloat16
 *   interop names NET
 *       the net's state: one "name shape" per line */
#include "nets.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int die(const char *what) {
    fprintf(stderr, "interop: %s: %s\n", what, tg_last_error());
    return 1;
}

static int write_file(const char *dir, const char *name, const void *p, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(p, 1, n, f) == n;
    if (f && fclose(f) != 0) ok = 0;
    if (!ok) fprintf(stderr, "interop: cannot write %s\n", path);
    return ok ? 0 : 1;
}

static int data(const char *dir, int ntrain, int ntest, const char *out) {
    const char *split[2] = {"train", "t10k"};
    const int count[2] = {ntrain, ntest};
    for (int k = 0; k < 2; k++) {
        tg_dataset *ds = tg_dataset_new(dir, split[k], count[k], TG_MNIST_MEAN, TG_MNIST_STD);
        if (!ds) return die(dir);
        tg_tensor *x = tg_tensor_new(4, (int[]){count[k], 1, 28, 28});
        int32_t *labels = malloc((size_t)count[k] * sizeof *labels);
        int64_t *y = malloc((size_t)count[k] * sizeof *y);
        if (!x || !labels || !y || tg_dataset_batch(ds, NULL, 0, x, labels) != count[k]) return die(split[k]);
        for (int i = 0; i < count[k]; i++) y[i] = labels[i];
        int rc = write_file(out, k ? "test_x.f32" : "train_x.f32", x->data, (size_t)x->size * 4) ||
                 (!k && write_file(out, "train_y.i64", y, (size_t)count[k] * 8));
        free(labels), free(y), tg_tensor_free(x), tg_dataset_free(ds);
        if (rc) return rc;
    }
    return 0;
}

static int logits(const char *net, const char *ckpt, const char *images, int n, const char *out) {
    tg_model *m = net_new(net, 1);
    if (!m) return die(net);
    tg_tensor **state;
    int ns = tg_model_state(m, &state);
    if (tg_checkpoint_load_prefix(ckpt, state, ns) < 0) return die(ckpt);
    tg_tensor *x = tg_tensor_new(4, (int[]){n, 1, 28, 28});
    FILE *f = fopen(images, "rb");
    if (!x || !f || fread(x->data, 4, (size_t)x->size, f) != (size_t)x->size) {
        fprintf(stderr, "interop: cannot read %d images from %s\n", n, images);
        return 1;
    }
    fclose(f);
    tg_tape *t = tg_tape_new();
    tg_model_train(m, false);
    tg_tensor *y = tg_model_forward(m, t, x);
    if (!y) return die("forward");
    int rc = write_file(".", out, y->data, (size_t)y->size * 4);
    tg_tape_free(t), tg_tensor_free(x), tg_model_free(m);
    return rc;
}

static int half(const char *net, const char *ckpt, const char *out, const char *kind) {
    tg_model *m = net_new(net, 1);
    if (!m) return die(net);
    tg_tensor **state;
    int ns = tg_model_state(m, &state);
    if (tg_checkpoint_load_prefix(ckpt, state, ns) < 0) return die(ckpt);
    if (tg_safetensors_save_as(out, state, ns, NULL, strcmp(kind, "bf16") ? TG_SAVE_F16 : TG_SAVE_BF16) < 0)
        return die(out);
    tg_model_free(m);
    return 0;
}

static int names(const char *net) {
    tg_model *m = net_new(net, 1);
    if (!m) return die(net);
    tg_tensor **state;
    int ns = tg_model_state(m, &state);
    for (int i = 0; i < ns; i++) {
        char shape[64];
        printf("%s %s\n", state[i]->name, state[i]->ndim ? tg_shape_str(state[i], shape, sizeof shape) : "scalar");
    }
    tg_model_free(m);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 6 && !strcmp(argv[1], "data")) return data(argv[2], atoi(argv[3]), atoi(argv[4]), argv[5]);
    if (argc == 7 && !strcmp(argv[1], "logits")) return logits(argv[2], argv[3], argv[4], atoi(argv[5]), argv[6]);
    if (argc == 6 && !strcmp(argv[1], "half")) return half(argv[2], argv[3], argv[4], argv[5]);
    if (argc == 3 && !strcmp(argv[1], "names")) return names(argv[2]);
    fprintf(stderr, "usage: interop data MNIST_DIR N_TRAIN N_TEST OUT_DIR | logits NET CHECKPOINT TEST_X N OUT | "
                    "half NET CHECKPOINT OUT f16|bf16 | names NET\n");
    return 2;
}
