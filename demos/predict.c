/* predict.c: classify pictures of digits with a net trained by the mnist demo.
 *
 *   build/demos/predict [--net mlp|lenet|resnet] [--show] CHECKPOINT IMAGE...
 *   build/demos/predict [--net mlp|lenet|resnet] --onnx FILE CHECKPOINT [IMAGE...]
 *
 * CHECKPOINT is what `mnist --save FILE` writes (safetensors, or tapegrad's
 * own format from earlier versions): the model's parameters and buffers, and
 * the optimizer's state, which predict does not need; or a PyTorch state_dict
 * of the same net saved as safetensors. Without --net, predict builds each net
 * in turn and keeps the one whose tensors the checkpoint holds. Each image (PNG,
 * JPEG, BMP...; photos too) is made into an MNIST digit (digit.c: the paper's
 * uneven light removed, the ink found by Otsu's threshold, specks and the
 * table's edge left out, the digit scaled to 20 pixels and centred by its mass
 * in 28x28) and gets one line: its three likeliest digits, or "not a digit"
 * and why, when its ink is a dot, a blob or specks, or the net is unsure (the
 * likeliest below 50%). --show also draws the 28x28 digit the net sees. An
 * image that cannot be read, or holds no ink, is reported and skipped; the
 * exit status is then 1.
 * --onnx FILE also exports the checkpoint's net as ONNX (tg_onnx_export: input
 * 1x1x28x28, any batch), for Netron or ONNX Runtime; the images are then optional. */
#include "digit.h"
#include "nets.h"
#include "tapegrad_nn.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Below this probability of the likeliest digit, the picture is said not to look like one. */
#define UNSURE 0.5

static void usage(const char *msg) {
    fprintf(stderr, "predict: %s\n"
                    "usage: predict [--net mlp|lenet|resnet] [--show] CHECKPOINT IMAGE...\n"
                    "       predict [--net mlp|lenet|resnet] --onnx FILE CHECKPOINT [IMAGE...]\n", msg);
    exit(2);
}

static void die(const char *hint) {
    fprintf(stderr, "predict: %s\n", tg_last_error());
    if (hint) fprintf(stderr, "---> HINT: %s\n", hint);
    exit(1);
}

/* The net named, or the first whose state the checkpoint holds; NULL if none. */
static tg_model *load(const char *path, const char *net, const char **found) {
    char why[3][600];
    for (int i = 0; i < 3; i++) {
        if (net && strcmp(net, net_names[i])) continue;
        tg_model *m = net_new(net_names[i], 0);
        if (!m) die(NULL);
        tg_tensor **state;
        int n = tg_model_state(m, &state);
        if (tg_checkpoint_load_prefix(path, state, n) == 0) {
            *found = net_names[i];
            return m;
        }
        tg_model_free(m);
        if (net || tg_last_error_code() != TG_ERR_SHAPE) return NULL; /* unreadable: no net will do */
        snprintf(why[i], sizeof why[i], "%s", tg_last_error());
    }
    fprintf(stderr, "predict: %s matches none of the nets:\n", path);
    for (int i = 0; i < 3; i++) fprintf(stderr, "  %s: %s\n", net_names[i], why[i]);
    fprintf(stderr, "---> HINT: give a checkpoint written by `mnist --save FILE`, or the state_dict of one of "
                    "these nets as safetensors\n");
    exit(1);
}

/* The digit as text, darker characters for more ink. */
static void show(const uint8_t *p) {
    static const char ramp[] = " .:-=+*#%@";
    for (int y = 0; y < 28; y++) {
        printf("  |");
        for (int x = 0; x < 28; x++) {
            char c = ramp[p[y * 28 + x] * 9 / 255];
            printf("%c%c", c, c);
        }
        printf("|\n");
    }
}

int main(int argc, char **argv) {
    const char *net = NULL, *ckpt = NULL, *onnx = NULL;
    bool draw = false;
    int first = 0;
    for (int i = 1; i < argc && !first; i++) {
        if (!strcmp(argv[i], "--net")) {
            if (++i == argc) usage("missing value");
            net = argv[i];
            if (strcmp(net, "mlp") && strcmp(net, "lenet") && strcmp(net, "resnet"))
                usage("--net must be mlp, lenet or resnet");
        } else if (!strcmp(argv[i], "--onnx")) {
            if (++i == argc) usage("missing value");
            onnx = argv[i];
        } else if (!strcmp(argv[i], "--show")) draw = true;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) usage("classify pictures of digits");
        else if (argv[i][0] == '-' && argv[i][1]) usage("unknown option");
        else ckpt = argv[i], first = i + 1;
    }
    if (!ckpt || (first >= argc && !onnx)) usage("need a checkpoint and at least one image (or --onnx FILE)");

    const char *found = NULL;
    tg_model *m = load(ckpt, net, &found);
    if (!m && tg_last_error_code() == TG_ERR_SHAPE)
        die("was it saved by `mnist` with this --net? leave --net out to try each");
    if (!m) die("train one with `build/demos/mnist --net lenet --save FILE`");
    printf("%s: %s, %lld parameters%s\n", ckpt, found, (long long)tg_model_param_count(m),
           net ? "" : " (the net whose tensors the checkpoint holds)");
    tg_model_train(m, false); /* dropout off, batch norm on its running statistics */
    if (onnx) {
        int rc = tg_onnx_export(m, 4, (const int[]){1, 1, 28, 28}, onnx);
        if (rc < 0) die(rc == TG_ERR_IO ? "a directory that exists and can be written?" : NULL);
        printf("wrote %s: %s as ONNX (opset 17, batch of any size)\n", onnx, found);
    }

    tg_tape *t = tg_tape_new();
    if (!t) die(NULL);
    tg_tape_set_grad_enabled(t, false);
    int failed = 0;
    for (int i = first; i < argc; i++) {
        uint8_t pixels[28 * 28];
        tg_tensor *x = tg_tensor_tape(t, 4, (int[]){1, 1, 28, 28});
        if (!x) die(NULL);
        digit_info info;
        if (digit_from_image(argv[i], x->data, pixels, &info) < 0) {
            fprintf(stderr, "predict: %s\n", tg_last_error());
            failed++;
            tg_tape_reset(t);
            continue;
        }
        tg_tensor *logits = tg_model_forward(m, t, x);
        if (!logits) die(NULL);
        // softmax, then the three likeliest
        double p[10], max = logits->data[0], sum = 0;
        for (int k = 1; k < 10; k++) max = fmax(max, logits->data[k]);
        for (int k = 0; k < 10; k++) sum += p[k] = exp(logits->data[k] - max);
        int top[3] = {-1, -1, -1};
        for (int r = 0; r < 3; r++)
            for (int k = 0; k < 10; k++)
                if (k != top[0] && k != top[1] && (top[r] < 0 || p[k] > p[top[r]])) top[r] = k;
        /* a digit named with confidence only when it looks like one */
        if (info.doubt)
            printf("%s: not a digit: %s (read as %d at %.1f%%)\n", argv[i], info.doubt, top[0], 100 * p[top[0]] / sum);
        else if (p[top[0]] / sum < UNSURE)
            printf("%s: not a digit: the net is unsure (%d at %.1f%%, %d at %.1f%%)\n", argv[i], top[0],
                   100 * p[top[0]] / sum, top[1], 100 * p[top[1]] / sum);
        else
            printf("%s: %d (%.1f%%)  %d (%.1f%%)  %d (%.1f%%)\n", argv[i], top[0], 100 * p[top[0]] / sum, top[1],
                   100 * p[top[1]] / sum, top[2], 100 * p[top[2]] / sum);
        if (draw) show(pixels);
        tg_tape_reset(t);
    }
    tg_tape_free(t);
    tg_model_free(m);
    if (failed) fprintf(stderr, "predict: %d of %d images could not be classified\n", failed, argc - first);
    return failed ? 1 : 0;
}
