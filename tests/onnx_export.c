/* onnx_export.c: tapegrad's side of the ONNX test (tests/onnx.sh).
 *
 *   onnx_export fold NET CHECKPOINT OUT
 *       loads CHECKPOINT into the demo's net NET and exports it with its batch norms folded
 *       into the convs before them
 *   onnx_export custom TEST_X N DIR
 *       builds a net of custom blocks that runs the ops the demo nets do not (conv with groups,
 *       dilation and bias; conv_transpose2d with groups, dilation and output_padding; average
 *       and max pooling with padding; nearest and bilinear upsampling; cat, mul, sub, add,
 *       sigmoid, tanh, relu6, hardswish, layer_norm both ways, matmul, reshape, global average
 *       pooling, both dropouts, residual_add+relu, batch norm with non-trivial statistics, a
 *       constant tensor of a layer's own),
 *       writes DIR/custom.onnx, DIR/custom_fold.onnx (fold_batch_norm), DIR/custom_softmax.onnx
 *       (softmax), and its evaluation-mode logits and probabilities for the N images of TEST_X
 *       (raw float32, N x 10) as DIR/custom.logits and DIR/custom_softmax.logits */
#include "nets.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int die(const char *what) {
    fprintf(stderr, "onnx_export: %s: %s\n", what, tg_last_error());
    return 1;
}

static int fold(const char *net, const char *ckpt, const char *out) {
    tg_model *m = net_new(net, 1);
    if (!m) return die(net);
    tg_tensor **state;
    int ns = tg_model_state(m, &state);
    if (tg_checkpoint_load_prefix(ckpt, state, ns) < 0) return die(ckpt);
    tg_onnx_opts o = {.fold_batch_norm = true};
    if (tg_onnx_export_opts(m, 4, (const int[]){1, 1, 28, 28}, out, &o) < 0) return die(out);
    tg_model_free(m);
    return 0;
}

// ----------------------------------------------------------------------------
// the custom net

/* (N,8,28,28) -> (N,16,28,28): a grouped, dilated conv with bias, gates and clamps, joined by cat */
static tg_tensor *mix(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    tg_tensor *a = tg_conv2d(t, x, l->params[0], l->params[1], 1, 2, 2, 4);
    tg_tensor *gated = tg_mul(t, tg_sigmoid(t, a), tg_tanh(t, x));
    tg_tensor *e = tg_sub(t, gated, tg_mul(t, x, l->params[2])); /* a per-channel scale (8,1,1) broadcast */
    tg_tensor *parts[2] = {tg_hardswish(t, e), tg_relu6(t, a)};
    return tg_cat(t, parts, 2, 1);
}

/* (N,16,28,28) -> (N,16,7,7): both poolings with padding, then a constant of the layer's own (l->ctx,
 * neither parameter nor buffer: it becomes an initializer of its own) */
static tg_tensor *pools(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    return tg_mul(t, tg_max_pool2d(t, tg_avg_pool2d(t, x, 3, 2, 1), 3, 2, 1), l->ctx);
}

/* (N,8,14,14) -> (N,8,17,17): conv_transpose2d with groups 2, dilation 2 and output_padding 1 (not below
 * the stride: ONNX's end pad), plus one with stride 2, a large pad and output_padding 1 (ONNX's own) */
static tg_tensor *up(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    tg_tensor *a = tg_conv_transpose2d(t, x, l->params[0], l->params[1], 1, 1, 1, 2, 2);
    return tg_add(t, a, tg_conv_transpose2d(t, x, l->params[2], NULL, 2, 6, 1, 1, 1));
}

/* (N,8,8,8) -> (N,40): layer norms (gamma 1-D over the last two dims; gamma (8,64)), reshape,
 * matmul, add, batch norm of (N,C), vanilla dropout, residual_add+relu, global average pooling, cat */
static tg_tensor *head(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    tg_tensor **p = l->params;
    tg_tensor *n4 = tg_layer_norm(t, x, p[0], p[1], 1e-5f);
    tg_tensor *r = tg_reshape(t, n4, 3, (const int[]){x->shape[0], 8, 64});
    tg_tensor *f = tg_flatten(t, tg_layer_norm(t, r, p[2], p[3], 1e-3f));
    tg_tensor *h = tg_add(t, tg_matmul(t, f, p[4]), p[5]);
    h = tg_batch_norm(t, h, p[6], p[7], l->buffers[0], l->buffers[1], training, 0.1f, 1e-5f); /* on (N,32) */
    tg_tensor *h2 = tg_dropout_vanilla(t, h, 0.1f, training);
    tg_tensor *parts[2] = {tg_residual_add_act(t, h, h2, TG_ACT_RELU), tg_global_avg_pool(t, n4)};
    return tg_cat(t, parts, 2, -1);
}

static tg_model *custom_net(tg_tensor *gain) {
    tg_model *m = tg_model_new(7);
    tg_model_conv2d(m, 1, 8, 3, 1, 1, true); /* (8,28,28); the batch norm folds into it */
    tg_model_batch_norm(m, 8);
    tg_model_relu(m);
    tg_layer *l = tg_model_custom(m, "mix", mix, NULL);
    tg_layer_param(l, "weight", 4, (const int[]){8, 2, 3, 3}, TG_PARAM_WEIGHT);
    tg_layer_param(l, "bias", 1, (const int[]){8}, TG_PARAM_WEIGHT);
    tg_layer_param(l, "scale", 3, (const int[]){8, 1, 1}, TG_PARAM_WEIGHT);
    tg_model_custom(m, "pools", pools, gain);           /* (16,7,7) */
    tg_model_conv_transpose2d(m, 16, 8, 2, 2, 0, true); /* (8,14,14) */
    tg_model_upsample(m, 2, TG_UPSAMPLE_NEAREST);       /* (8,28,28) */
    tg_model_max_pool(m, 2, 2);                         /* (8,14,14) */
    l = tg_model_custom(m, "up", up, NULL);             /* (8,17,17) */
    tg_layer_param(l, "weight", 4, (const int[]){8, 4, 3, 3}, TG_PARAM_WEIGHT);
    tg_layer_param(l, "bias", 1, (const int[]){8}, TG_PARAM_WEIGHT);
    tg_layer_param(l, "weight2", 4, (const int[]){8, 8, 2, 2}, TG_PARAM_WEIGHT);
    tg_model_avg_pool(m, 2, 2);                         /* (8,8,8) */
    tg_model_upsample(m, 2, TG_UPSAMPLE_BILINEAR);      /* (8,16,16) */
    tg_model_conv2d_groups(m, 8, 8, 3, 2, 1, 8, false); /* depthwise, no bias: (8,8,8); folds too */
    tg_model_batch_norm(m, 8);
    tg_model_sigmoid(m);
    l = tg_model_custom(m, "head", head, NULL); /* (40) */
    tg_layer_param(l, "ln1_weight", 1, (const int[]){64}, TG_PARAM_WEIGHT);
    tg_layer_param(l, "ln1_bias", 1, (const int[]){64}, TG_PARAM_WEIGHT);
    tg_layer_param(l, "ln2_weight", 2, (const int[]){8, 64}, TG_PARAM_WEIGHT);
    tg_layer_param(l, "ln2_bias", 2, (const int[]){8, 64}, TG_PARAM_WEIGHT);
    tg_layer_param(l, "proj", 2, (const int[]){512, 32}, TG_PARAM_WEIGHT);
    tg_layer_param(l, "proj_bias", 1, (const int[]){32}, TG_PARAM_WEIGHT);
    tg_layer_param(l, "bn_weight", 1, (const int[]){32}, TG_PARAM_ONES);
    tg_layer_param(l, "bn_bias", 1, (const int[]){32}, TG_PARAM_ZEROS);
    tg_layer_buffer(l, "bn_running_mean", 1, (const int[]){32}, 0.0f);
    tg_layer_buffer(l, "bn_running_var", 1, (const int[]){32}, 1.0f);
    tg_model_dropout(m, 0.3f);
    tg_model_linear(m, 40, 10, true);
    /* He's initialisation keeps the images' differences alive through the layers (PyTorch's default
     * shrinks them, and a difference ONNX Runtime made early would then not show at the output);
     * batch norms with statistics and affine parameters far from the defaults */
    tg_model_init(m, TG_INIT_KAIMING_NORMAL, 5);
    uint64_t rng = 99;
    tg_tensor **state;
    int ns = tg_model_state(m, &state);
    for (int i = 0; i < ns; i++) {
        const char *name = state[i]->name;
        bool var = strstr(name, "running_var") != NULL, mean = strstr(name, "running_mean") != NULL;
        bool bn = !strncmp(name, "1.", 2) || !strncmp(name, "12.", 3) || strstr(name, ".bn_"); /* batch norms' */
        for (int64_t k = 0; bn && !strstr(name, "num_batches") && k < state[i]->size; k++) {
            float u = tg_rand_uniform(&rng);
            state[i]->data[k] = var ? 0.3f + 2 * u : mean ? u - 0.5f : strstr(name, "weight") ? 0.5f + u : u - 0.5f;
        }
    }
    return m;
}

static int write_floats(const char *path, const tg_tensor *y) {
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(y->data, 4, (size_t)y->size, f) == (size_t)y->size;
    if (f && fclose(f) != 0) ok = 0;
    if (!ok) fprintf(stderr, "onnx_export: cannot write %s\n", path);
    return ok ? 0 : 1;
}

static int custom(const char *images, int n, const char *dir) {
    tg_tensor *gain = tg_tensor_new(3, (const int[]){16, 1, 1});
    for (int c = 0; gain && c < 16; c++) gain->data[c] = 0.5f + 0.1f * (float)c;
    tg_model *m = custom_net(gain);
    tg_tensor *x = tg_tensor_new(4, (const int[]){n, 1, 28, 28});
    FILE *f = fopen(images, "rb");
    if (!m || !x || !f || fread(x->data, 4, (size_t)x->size, f) != (size_t)x->size) {
        fprintf(stderr, "onnx_export: cannot read %d images from %s (%s)\n", n, images, tg_last_error());
        return 1;
    }
    fclose(f);
    char path[3][1024];
    const char *file[3] = {"custom.onnx", "custom_fold.onnx", "custom_softmax.onnx"};
    const tg_onnx_opts opts[3] = {{0}, {.fold_batch_norm = true}, {.softmax = true}};
    for (int k = 0; k < 3; k++) {
        snprintf(path[k], sizeof path[k], "%s/%s", dir, file[k]);
        if (tg_onnx_export_opts(m, 4, (const int[]){1, 1, 28, 28}, path[k], &opts[k]) < 0) return die(path[k]);
    }
    tg_tape *t = tg_tape_new();
    tg_tape_set_grad_enabled(t, false);
    tg_model_train(m, false);
    tg_tensor *y = tg_model_forward(m, t, x), *p = tg_softmax(t, y);
    if (!p) return die("forward");
    snprintf(path[0], sizeof path[0], "%s/custom.logits", dir);
    snprintf(path[1], sizeof path[1], "%s/custom_softmax.logits", dir);
    int rc = write_floats(path[0], y) || write_floats(path[1], p);
    tg_tape_free(t), tg_tensor_free(x), tg_model_free(m), tg_tensor_free(gain);
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 5 && !strcmp(argv[1], "fold")) return fold(argv[2], argv[3], argv[4]);
    if (argc == 5 && !strcmp(argv[1], "custom")) return custom(argv[2], atoi(argv[3]), argv[4]);
    fprintf(stderr, "usage: onnx_export fold NET CHECKPOINT OUT | custom TEST_X N DIR\n");
    return 2;
}
