/* tapedump.c: training steps of the MNIST demo's resnet, and a look inside the last.
 *
 *   build/demos/tapedump [--data DIR] [--seed N] [--steps N] [TEXT [DOT [SVG [TRACE]]]]
 *
 * Builds the resnet and trains it for a few steps (3 by default) on batches of 64
 * training images; the first step touches its memory for the first time, so the
 * later ones show what a step costs. After the last step's backward it writes
 * the tape as text (tape.txt: one line per node, with the gradient norms of the
 * backward pass) and as a Graphviz graph (tape.dot), and renders tape.svg when
 * `dot` is on the PATH. Then it takes the SGD step (a span on the timeline) and
 * writes the step's timeline (tape.trace.json: open it in ui.perfetto.dev,
 * chrome://tracing or speedscope), with the OpenMP workers' tracks, and prints
 * what the arena's bytes held at their peak. */
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
    fprintf(stderr, "tapedump: %s\nusage: tapedump [--data DIR] [--seed N] [--steps N] [TEXT [DOT [SVG [TRACE]]]]\n"
                    "       (defaults: data/mnist, 42, 3, tape.txt tape.dot tape.svg tape.trace.json)\n", msg);
    exit(2);
}

/* Writes the tape with dump (tg_tape_dump, tg_tape_dot or tg_tape_trace) to path. */
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

/* The text dump, the Graphviz graph and its SVG (when `dot` is there) of the step on t. */
static void write_dumps(tg_tape *t, const char *const *paths) {
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
}

int main(int argc, char **argv) {
    const char *data = "data/mnist", *paths[4] = {"tape.txt", "tape.dot", "tape.svg", "tape.trace.json"};
    uint64_t seed = 42;
    int np = 0, steps = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc) data = argv[++i];
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 900) usage("--steps takes 1 to 900");
            steps = (int)v;
        } else if (argv[i][0] == '-') usage(strcmp(argv[i], "--help") ? "unknown option" : "dump a training step");
        else if (np < 4) paths[np++] = argv[i];
        else usage("at most four paths");
    }

    enum { B = 64 };
    tg_dataset *train = tg_dataset_new(data, "train", steps * B, TG_MNIST_MEAN, TG_MNIST_STD);
    if (!train) die("training data", "run scripts/fetch-mnist.sh, or give --data DIR with the IDX files");
    if (train->n < steps * B || train->h != 28 || train->w != 28)
        die("training data", "need 64 images of 28x28 for each step");
    tg_model *m = net_new("resnet", seed);
    if (!m) die("model", NULL);
    tg_tensor **params;
    int n = tg_model_params(m, &params);
    tg_sgd *opt = tg_sgd_new(params, n, (tg_sgd_opts){.lr = 0.05f, .momentum = 0.9f, .weight_decay = 5e-4f});
    if (!opt) die("optimizer", NULL);

    // training steps; the last one is stopped after backward to look at the tape
    tg_tape *t = tg_tape_new();
    tg_tape_seed(t, seed);
    if (tg_tape_set_trace(t, true) < 0) die("tracing", NULL); /* the workers' spans, for the timeline */
    for (int s = 0; s < steps; s++) {
        bool last = s == steps - 1;
        tg_tape_reset(t);
        if (tg_tape_span_begin(t, "batch") < 0) die("span", NULL);
        int32_t labels[B];
        tg_tensor *x = tg_tensor_tape(t, 4, (int[]){B, 1, 28, 28});
        if (!x || tg_dataset_batch(train, NULL, s * B, x, labels) < 0) die("batch", NULL);
        tg_tensor *loss = tg_cross_entropy(t, tg_model_forward(m, t, x), labels);
        if (!loss || tg_backward(t, loss) < 0) die("training step", NULL);
        if (tg_model_check_finite(m) < 0) die("training step", NULL);
        if (last) {
            printf("resnet, %lld parameters, batch of %d, step %d of %d%s: loss %.4f, %d nodes on the tape\n",
                   (long long)tg_model_param_count(m), B, s + 1, steps,
                   s ? " (the first step touched the memory, so this one's times are a step's)" : "",
                   (double)loss->data[0], tg_tape_node_count(t));
            write_dumps(t, paths);
        }
        if (tg_tape_span_begin(t, "optimizer step") < 0) die("span", NULL);
        /* the first steps of the mnist demo's warmup (200 steps up to 0.05): a full step at once would diverge */
        if (tg_sgd_set_lr(opt, 0.05f * (float)(s + 1) / 200) < 0 || tg_sgd_step(opt) < 0) die("training step", NULL);
        tg_sgd_zero_grad(opt);
        if (tg_tape_span_end(t) < 0 || tg_tape_span_end(t) < 0) die("span", NULL);
    }
    write_tape(paths[3], t, tg_tape_trace);
    printf("wrote %s (open it in ui.perfetto.dev, chrome://tracing or speedscope)\n", paths[3]);
    tg_tape_mem mem;
    if (tg_tape_memory(t, &mem) < 0) die("memory", NULL);
    const tg_tape_mem_split *p = &mem.peak;
    printf("arena at its peak: %.2f MB: activations %.2f, saved for backward %.2f, gradients %.2f, scratch %.2f, "
           "the tape's records %.2f\n", p->total / 1e6, p->activations / 1e6, p->saved / 1e6, p->grads / 1e6,
           p->scratch / 1e6, p->records / 1e6);
    /* beside the arena, on the heap for the whole run: the weights, their gradients, SGD's momentum */
    tg_tensor **state;
    int64_t momentum = 0;
    for (int i = 0, k = tg_sgd_state(opt, &state); i < k; i++) momentum += state[i]->size;
    printf("beside it: parameters %.3f MB, their gradients %.3f MB, the optimizer's state (momentum) %.3f MB\n",
           4e-6 * (double)tg_model_param_count(m), 4e-6 * (double)tg_model_param_count(m), 4e-6 * (double)momentum);

    tg_tape_free(t);
    tg_sgd_free(opt);
    tg_model_free(m);
    tg_dataset_free(train);
    return 0;
}
