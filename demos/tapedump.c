/* tapedump.c: one training step of the MNIST demo's resnet, and a look inside.
 *
 *   build/demos/tapedump [--data DIR] [--seed N] [TEXT [DOT [SVG]]]
 *
 * Builds the resnet, runs forward, loss and backward on the first 64 training
 * images, then writes the tape as text (tape.txt: one line per node, with the
 * gradient norms of the backward pass) and as a Graphviz graph (tape.dot), and
 * renders tape.svg when `dot` is on the PATH. Then takes the SGD step. */
#include "nets.h"
#include "tapegrad_nn.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what, const char *hint) {
    fprintf(stderr, "tapedump: %s: %s\n", what, tg_last_error());
    if (hint) fprintf(stderr, "---> HINT: %s\n", hint);
    exit(1);
}

static void usage(const char *msg) {
    fprintf(stderr, "tapedump: %s\nusage: tapedump [--data DIR] [--seed N] [TEXT [DOT [SVG]]]\n"
                    "       (defaults: data/mnist, 42, tape.txt tape.dot tape.svg)\n", msg);
    exit(2);
}

/* Writes the tape with dump (tg_tape_dump or tg_tape_dot) to path. */
static void write_tape(const char *path, tg_tape *t, int (*dump)(const tg_tape *, FILE *)) {
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    if (dump(t, f) < 0 || fclose(f) != 0) die(path, NULL);
}

/* 'path' for the shell, with any single quote in it escaped */
static void shell_quote(char *out, size_t len, const char *path) {
    size_t o = 0;
    out[o++] = '\'';
    for (; *path && o + 5 < len; path++) {
        if (*path == '\'') memcpy(out + o, "'\\''", 4), o += 4;
        else out[o++] = *path;
    }
    out[o++] = '\'';
    out[o] = '\0';
}

int main(int argc, char **argv) {
    const char *data = "data/mnist", *paths[3] = {"tape.txt", "tape.dot", "tape.svg"};
    uint64_t seed = 42;
    int np = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc) data = argv[++i];
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else if (argv[i][0] == '-') usage(strcmp(argv[i], "--help") ? "unknown option" : "dump one training step");
        else if (np < 3) paths[np++] = argv[i];
        else usage("at most three paths");
    }

    enum { B = 64 };
    tg_dataset *train = tg_dataset_new(data, "train", B, TG_MNIST_MEAN, TG_MNIST_STD);
    if (!train) die("training data", "run scripts/fetch-mnist.sh, or give --data DIR with the IDX files");
    if (train->n < B || train->h != 28 || train->w != 28) die("training data", "need 64 images of 28x28");
    tg_model *m = net_new("resnet", seed);
    if (!m) die("model", NULL);
    tg_tensor **params;
    int n = tg_model_params(m, &params);
    tg_sgd *opt = tg_sgd_new(params, n, (tg_sgd_opts){.lr = 0.05f, .momentum = 0.9f, .weight_decay = 5e-4f});
    if (!opt) die("optimizer", NULL);

    // one training step, stopped after backward to look at the tape
    tg_tape *t = tg_tape_new();
    tg_tape_seed(t, seed);
    int32_t labels[B];
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){B, 1, 28, 28});
    if (!x || tg_dataset_batch(train, NULL, 0, x, labels) < 0) die("batch", NULL);
    tg_tensor *loss = tg_cross_entropy(t, tg_model_forward(m, t, x), labels);
    if (!loss || tg_backward(t, loss) < 0) die("training step", NULL);
    if (tg_model_check_finite(m) < 0) die("training step", NULL);
    printf("resnet, %lld parameters, batch of %d: loss %.4f, %d nodes on the tape\n",
           (long long)tg_model_param_count(m), B, (double)loss->data[0], tg_tape_node_count(t));

    write_tape(paths[0], t, tg_tape_dump);
    printf("wrote %s\n", paths[0]);
    write_tape(paths[1], t, tg_tape_dot);
    printf("wrote %s\n", paths[1]);
    if (system("command -v dot >/dev/null 2>&1") == 0) {
        char dot[2048], svg[2048], cmd[4200];
        shell_quote(dot, sizeof dot, paths[1]);
        shell_quote(svg, sizeof svg, paths[2]);
        snprintf(cmd, sizeof cmd, "dot -Tsvg %s -o %s", dot, svg);
        if (system(cmd) == 0) printf("wrote %s\n", paths[2]);
        else fprintf(stderr, "tapedump: %s failed\n", cmd);
    } else {
        printf("no `dot` on the PATH: install graphviz to render %s\n", paths[1]);
    }

    if (tg_sgd_step(opt) < 0) die("training step", NULL);
    tg_tape_free(t);
    tg_sgd_free(opt);
    tg_model_free(m);
    tg_dataset_free(train);
    return 0;
}
