/* test_model.c: models of one's own: custom layers and nested blocks, their
 * names, checkpoints, tape dumps, per-layer training, error messages, the
 * summary, evaluation. */
#include "check.h"
#include "internal.h" /* tg__alloc_count */
#include "tapegrad_nn.h"
#include <stdlib.h>
#include <unistd.h>

// ----------------------------------------------------------------------------
// the blocks a user writes

/* A layer of one's own with a parameter and a buffer: y = x * s (per channel),
 * and in training it counts the batches it saw in its buffer. */
static tg_tensor *scale_forward(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    if (training) l->buffers[0]->data[0] += 1;
    return tg_mul(t, x, l->params[0]);
}

static tg_layer *scale(tg_model *m, int c) {
    tg_layer *l = tg_model_custom(m, "scale", scale_forward, NULL);
    tg_layer_param(l, "s", 3, (int[]){c, 1, 1}, TG_PARAM_ONES);
    tg_layer_buffer(l, "batches", 1, (int[]){1}, 0.0f);
    return l;
}

/* Squeeze-and-excitation: x * sigmoid(fc2(relu(fc1(mean over H, W of x)))), the gate per (n, c) */
static tg_tensor *se_forward(tg_layer *b, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    tg_tensor *s = tg_global_avg_pool(t, x);                           /* (N,C) */
    s = tg_layer_forward_act(b->children[0], t, s, NULL, TG_ACT_RELU); /* fc1 */
    s = tg_sigmoid(t, tg_layer_forward(b->children[1], t, s));         /* fc2 */
    if (!s) return NULL;
    s = tg_reshape(t, s, 4, (int[]){x->shape[0], x->shape[1], 1, 1});
    return tg_mul(t, x, s); /* broadcast over H and W */
}

static tg_layer *squeeze_excite(tg_model *m, int c, int r) {
    tg_layer *b = tg_model_begin(m, "squeeze_excite", se_forward, NULL);
    tg_layer_set_name(tg_model_linear(m, c, c / r, true), "fc1");
    tg_layer_set_name(tg_model_linear(m, c / r, c, true), "fc2");
    tg_model_end(m);
    return b;
}

/* Inverted residual: x + project(se(dw(expand(x)))), each conv then batch norm */
static tg_tensor *inverted_forward(tg_layer *b, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    tg_tensor *h = tg_layer_forward(b->children[0], t, x);                        /* expand: a sequential block */
    h = tg_layer_forward(b->children[1], t, h);                                   /* dw */
    h = tg_layer_forward(b->children[2], t, h);                                   /* se */
    h = tg_layer_forward(b->children[3], t, h);                                   /* project */
    return h ? tg_layer_forward_act(b->children[4], t, h, x, TG_ACT_NONE) : NULL; /* bn(h) + x, one op */
}

static tg_layer *inverted_residual(tg_model *m, int c, int expand) {
    tg_layer *b = tg_model_begin(m, "inverted_residual", inverted_forward, NULL);
    tg_layer_set_name(tg_model_begin(m, NULL, NULL, NULL), "expand");
    tg_model_conv2d(m, c, c * expand, 1, 1, 0, false);
    tg_model_batch_norm(m, c * expand);
    tg_model_relu(m);
    tg_model_end(m);
    tg_layer_set_name(tg_model_begin(m, NULL, NULL, NULL), "dw");
    tg_model_conv2d_groups(m, c * expand, c * expand, 3, 1, 1, c * expand, false);
    tg_model_batch_norm(m, c * expand);
    tg_model_relu(m);
    tg_model_end(m);
    tg_layer_set_name(squeeze_excite(m, c * expand, 4), "se");
    tg_layer_set_name(tg_model_conv2d(m, c * expand, c, 1, 1, 0, false), "project");
    tg_layer_set_name(tg_model_batch_norm(m, c), "bn");
    tg_model_end(m);
    return b;
}

/* Two branches concatenated along channels (torch.cat(dim=1)): a 1x1 conv and a 3x3 conv */
static tg_tensor *branches_forward(tg_layer *b, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    tg_tensor *two[2] = {tg_layer_forward(b->children[0], t, x), tg_layer_forward(b->children[1], t, x)};
    return tg_cat(t, two, 2, 1);
}

/* 0 conv, 1 bn, 2 relu, 3 inverted residual, 4 scale, 5 dropout, 6 gap, 7 linear */
static tg_model *net(uint64_t seed) {
    tg_model *m = tg_model_new(seed);
    tg_model_conv2d(m, 1, 8, 3, 2, 1, false);
    tg_model_batch_norm(m, 8);
    tg_model_relu(m);
    inverted_residual(m, 8, 2);
    scale(m, 8);
    tg_model_dropout(m, 0.5f);
    tg_model_global_avg_pool(m);
    tg_model_linear(m, 8, 3, true);
    return m;
}

static void fill(tg_tensor *x, uint64_t seed) {
    for (int64_t i = 0; i < x->size; i++) x->data[i] = tg_rand_normal(&seed);
}

// ----------------------------------------------------------------------------

static void names(void) {
    tg_model *m = net(1);
    tg_tensor **st;
    int n = tg_model_state(m, &st);
    const char *want[] = {
        "0.weight", "1.weight", "1.bias", "3.expand.0.weight", "3.expand.1.weight", "3.expand.1.bias",
        "3.dw.0.weight", "3.dw.1.weight", "3.dw.1.bias", "3.se.fc1.weight", "3.se.fc1.bias", "3.se.fc2.weight",
        "3.se.fc2.bias", "3.project.weight", "3.bn.weight", "3.bn.bias", "4.s", "7.weight", "7.bias",
        /* buffers */
        "1.running_mean", "1.running_var", "1.num_batches_tracked", "3.expand.1.running_mean", "3.expand.1.running_var",
        "3.expand.1.num_batches_tracked", "3.dw.1.running_mean", "3.dw.1.running_var", "3.dw.1.num_batches_tracked",
        "3.bn.running_mean", "3.bn.running_var", "3.bn.num_batches_tracked", "4.batches"};
    CHECK_INT(n, (int)(sizeof want / sizeof *want));
    for (int i = 0; i < n && i < (int)(sizeof want / sizeof *want); i++)
        if (strcmp(st[i]->name, want[i]) != 0) { fprintf(stderr, "state %d: %s, want %s\n", i, st[i]->name, want[i]); CHECK(0); }
    tg_tensor **ps;
    CHECK_INT(tg_model_params(m, &ps), 19);
    CHECK(ps[16] == tg_model_find(m, "4")->params[0] && ps[16]->requires_grad);
    CHECK(!st[31]->requires_grad); /* a buffer takes no gradient */
    CHECK_NEAR(ps[16]->data[5], 1, 0);    /* TG_PARAM_ONES */
    CHECK(tg_model_find(m, "3.se.fc2") && !strcmp(tg_model_find(m, "3.se.fc2")->kind, "linear"));
    CHECK(tg_model_find(m, "3.expand.1")->type == TG_LAYER_BATCH_NORM);
    CHECK(tg_model_find(m, "3.se.fc3") == NULL && tg_model_find(m, "9") == NULL && tg_model_find(m, "") == NULL);
    CHECK_INT(tg_model_layer_count(m), 8);
    CHECK_INT(tg_model_layer(m, 3)->n_children, 5);
    CHECK(tg_model_layer(m, 3)->children[2]->parent == tg_model_layer(m, 3));
    tg_tensor **bp, **bp2;
    CHECK_INT(tg_layer_params(tg_model_layer(m, 3), &bp), 13);
    CHECK(bp[0] == ps[3] && bp[12] == ps[15]);
    CHECK_INT(tg_layer_params(tg_model_layer(m, 3), &bp2), 13);
    CHECK(bp2 == bp); /* the same list while nothing changes */

    /* a rename reaches the tensors of the layers inside */
    CHECK(tg_layer_set_name(tg_model_layer(m, 3), "block") != NULL);
    CHECK(!strcmp(st[9]->name, "block.se.fc1.weight") && !strcmp(st[29]->name, "block.bn.running_var"));
    CHECK(tg_model_find(m, "block.se.fc1") != NULL && tg_model_find(m, "3") == NULL);
    /* names that cannot be: taken, not a name, too long; nothing changes */
    CHECK(tg_layer_set_name(tg_model_layer(m, 4), "block") == NULL);
    CHECK_MSG(tg_last_error(), "layer_set_name: 4: a layer beside it is already named block");
    CHECK(tg_layer_set_name(tg_model_layer(m, 4), "a.b") == NULL);
    CHECK_MSG(tg_last_error(), "must be 1 to 23 letters, digits and '_'");
    tg_layer *mine = tg_model_custom(m, "mine", scale_forward, NULL);
    CHECK(tg_layer_param(mine, "a_parameter_whose_name_has_forty_eight_characters", 1, (int[]){1}, TG_PARAM_ZEROS));
    CHECK(tg_layer_set_name(mine, "fourteen_chars") == NULL);
    CHECK_MSG(tg_last_error(), "layer_set_name: 8: renamed fourteen_chars, a tensor's name would reach 64 characters");
    CHECK(tg_layer_set_name(mine, "fourteen_char") != NULL);
    CHECK(!strcmp(st[9]->name, "block.se.fc1.weight") && !strcmp(tg_model_layer(m, 4)->name, "4"));
    /* and the model refuses to run after a builder's failure */
    tg_tape *t = tg_tape_new();
    CHECK(tg_model_forward(m, t, tg_tensor_tape(t, 4, (int[]){2, 1, 8, 8})) == NULL);
    CHECK_MSG(tg_last_error(), "model: layer_set_name: 4: a layer beside it is already named block");
    tg_model_free(m);

    /* tensors of one's own: bad names and shapes */
    m = tg_model_new(1);
    tg_layer *l = tg_model_custom(m, "mine", scale_forward, NULL);
    CHECK(tg_layer_param(l, "w", 2, (int[]){3, 4}, TG_PARAM_WEIGHT) != NULL);
    CHECK(tg_layer_param(l, "w", 1, (int[]){3}, TG_PARAM_ZEROS) == NULL);
    CHECK_MSG(tg_last_error(), "layer_param: layer 0 already has a tensor named w");
    CHECK(tg_layer_buffer(l, "w x", 1, (int[]){3}, 0) == NULL);
    CHECK_MSG(tg_last_error(), "layer_buffer: 0: the name \"w x\" must be letters, digits and '_'");
    CHECK(tg_layer_param(l, "v", 1, (int[]){-3}, TG_PARAM_ZEROS) == NULL);
    CHECK(tg_layer_param(l, "u", 1, (int[]){3}, (tg_param_init)7) == NULL);
    CHECK_MSG(tg_last_error(), "unknown init 7");
    CHECK(tg_model_custom(m, "none", NULL, NULL) == NULL);
    CHECK_MSG(tg_last_error(), "model_custom: none has no forward");
    tg_model_free(m);

    /* a block left open, and an end without a begin */
    m = tg_model_new(1);
    tg_model_begin(m, NULL, NULL, NULL);
    tg_model_relu(m);
    CHECK(tg_model_forward(m, t, tg_tensor_tape(t, 2, (int[]){2, 3})) == NULL);
    CHECK_MSG(tg_last_error(), "model_forward: block 0 (sequential) was begun and not ended");
    CHECK(tg_model_end(m) != NULL);
    CHECK(tg_model_forward(m, t, tg_tensor_tape(t, 2, (int[]){2, 3})) != NULL);
    CHECK(tg_model_end(m) == NULL);
    CHECK_MSG(tg_last_error(), "model_end: no block is open");
    tg_model_free(m);
    tg_tape_free(t);
}

/* The net composed from ops by hand, with the model's parameters P in state
 * order, batch norm on batch statistics and dropout off. */
static tg_tensor *by_hand(tg_tape *t, tg_tensor **P, tg_tensor *x) {
#define BN(h, i) tg_batch_norm(t, h, P[i], P[i + 1], NULL, NULL, true, 0.1f, 1e-5f)
    tg_tensor *h = tg_relu(t, BN(tg_conv2d(t, x, P[0], NULL, 2, 1, 1, 1), 1));
    tg_tensor *e = tg_relu(t, BN(tg_conv2d(t, h, P[3], NULL, 1, 0, 1, 1), 4));  /* expand */
    e = tg_relu(t, BN(tg_conv2d(t, e, P[6], NULL, 1, 1, 1, 16), 7));            /* dw */
    tg_tensor *s = tg_global_avg_pool(t, e);                                     /* se */
    s = tg_sigmoid(t, tg_linear(t, tg_relu(t, tg_linear(t, s, P[9], P[10])), P[11], P[12]));
    e = tg_mul(t, e, tg_reshape(t, s, 4, (int[]){x->shape[0], 16, 1, 1}));
    h = tg_add(t, BN(tg_conv2d(t, e, P[13], NULL, 1, 0, 1, 1), 14), h);        /* project, bn, + x */
    h = tg_global_avg_pool(t, tg_mul(t, h, P[16]));                              /* scale */
    return tg_linear(t, h, P[17], P[18]);
#undef BN
}

/* Forward and backward through the blocks: the model's output and every
 * gradient are the ops' by hand, bit for bit (fused or not, the same values). */
static void gradients(void) {
    tg_model *m = net(3);
    tg_layer_train(tg_model_layer(m, 5), false); /* dropout off, batch norm training */
    tg_tensor **P;
    int np = tg_model_params(m, &P);
    tg_tensor *x = tg_param_new(4, (int[]){4, 1, 8, 8});
    fill(x, 9);
    tg_tape *t = tg_tape_new();
    tg_tensor *y = tg_model_forward(m, t, x);
    CHECK(y != NULL);
    float r[12], ym[12], *g[32];
    uint64_t s = 5;
    for (int i = 0; i < 12; i++) r[i] = tg_rand_uniform(&s) - 0.5f;
    CHECK_INT(tg_backward_seed(t, y, r), 0);
    memcpy(ym, y->data, sizeof ym);
    for (int j = 0; j < np; j++) g[j] = malloc((size_t)P[j]->size * sizeof(float)), memcpy(g[j], P[j]->grad, (size_t)P[j]->size * sizeof(float));
    float *gx = malloc((size_t)x->size * sizeof(float));
    memcpy(gx, x->grad, (size_t)x->size * sizeof(float));
    tg_model_zero_grad(m);
    tg_tensor_zero_grad(x);
    tg_tape_reset(t);
    tg_tensor *yh = by_hand(t, P, x);
    CHECK(yh && tg_backward_seed(t, yh, r) == 0);
    int differ = memcmp(yh->data, ym, sizeof ym) != 0, zero = 0;
    differ += memcmp(x->grad, gx, (size_t)x->size * sizeof(float)) != 0;
    for (int j = 0; j < np; j++) {
        differ += memcmp(P[j]->grad, g[j], (size_t)P[j]->size * sizeof(float)) != 0;
        float mx = 0;
        for (int i = 0; i < P[j]->size; i++) mx = fmaxf(mx, fabsf(g[j][i]));
        zero += mx == 0;
        free(g[j]);
    }
    printf("model with custom blocks vs ops by hand: %d of %d gradients and the output differ, %d gradients zero\n",
           differ, np + 2, zero);
    CHECK_INT(differ, 0);
    CHECK_INT(zero, 0);
    free(gx);
    tg_tensor_free(x);
    tg_tape_free(t);
    tg_model_free(m);
}

/* The summary of m for input shape in: layer i's line ("\ni ...") holds shapes[i], i < n */
static void summary_shapes(tg_model *m, const int *in, const char *const *shapes, int n) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CHECK_INT(tg_model_print(m, f, 4, in), 0);
    fclose(f);
    const char *line = text;
    for (int i = 0; i < n; i++) {
        char head[8];
        snprintf(head, sizeof head, "\n%d ", i);
        line = line ? strstr(line, head) : NULL;
        const char *end = line ? strchr(line + 1, '\n') : NULL, *at = line ? strstr(line, shapes[i]) : NULL;
        CHECK(at && at < end);
        if (!(at && at < end)) fprintf(stderr, "layer %d's line lacks %s:\n%s", i, shapes[i], text);
    }
    free(text);
}

/* The gradients of the n tensors v, copied into keep[j] (freed by differing_grads) */
static void keep_grads(float **keep, tg_tensor **v, int n) {
    for (int j = 0; j < n; j++) {
        keep[j] = malloc((size_t)v[j]->size * sizeof(float));
        memcpy(keep[j], v[j]->grad, (size_t)v[j]->size * sizeof(float));
    }
}
/* How many of the n tensors' gradients differ between two runs' copies (both freed) */
static int differing_grads(float **keep, float **now, tg_tensor **v, int n) {
    int differ = 0;
    for (int j = 0; j < n; j++) {
        differ += memcmp(keep[j], now[j], (size_t)v[j]->size * sizeof(float)) != 0;
        free(keep[j]), free(now[j]);
    }
    return differ;
}

/* A conv2d, relu and 2x2 stride-2 max pooling run as one op (conv2d+relu+maxpool), bit for bit the
 * three ops by hand, with each layer's own output shape in the summary; other pools stay apart. */
static void fused_pool(void) {
    for (int stride = 2; stride >= 1; stride--) {
        tg_model *m = tg_model_new(4);
        tg_model_conv2d(m, 1, 4, 3, 1, 0, true); /* (4,6,6) */
        tg_model_relu(m);
        tg_model_max_pool(m, 2, stride); /* (4,3,3) fused; stride 1: (4,5,5), apart */
        tg_model_flatten(m);
        int side = stride == 2 ? 3 : 5;
        tg_model_linear(m, 4 * side * side, 3, true);
        tg_tensor **P;
        CHECK_INT(tg_model_params(m, &P), 4);
        tg_tensor *x = tg_param_new(4, (int[]){2, 1, 8, 8}), *v[5] = {P[0], P[1], P[2], P[3], x};
        fill(x, 3);
        const float r[6] = {0.5f, -1, 0.25f, 2, -0.75f, 1};
        float out[2][6], *grads[2][5];
        tg_tape *t = tg_tape_new();
        for (int hand = 0; hand < 2; hand++) {
            tg_model_zero_grad(m), tg_tensor_zero_grad(x), tg_tape_reset(t);
            tg_tensor *y;
            if (hand) {
                y = tg_max_pool2d(t, tg_relu(t, tg_conv2d(t, x, P[0], P[1], 1, 0, 1, 1)), 2, stride, 0);
                y = tg_linear(t, tg_reshape(t, y, 2, (int[]){2, -1}), P[2], P[3]);
            } else {
                y = tg_model_forward(m, t, x);
                tg_op_total ops[8];
                int n = tg_tape_op_totals(t, ops, 8);
                CHECK(n > 1 && !strcmp(ops[0].name, stride == 2 ? "conv2d+relu+maxpool" : "conv2d+relu"));
                CHECK(stride == 2 || !strcmp(ops[1].name, "max_pool2d"));
            }
            CHECK(y && tg_backward_seed(t, y, r) == 0);
            memcpy(out[hand], y->data, sizeof out[hand]);
            keep_grads(grads[hand], v, 5);
        }
        int differ = (memcmp(out[0], out[1], sizeof out[0]) != 0) + differing_grads(grads[0], grads[1], v, 5);
        printf("conv2d, relu, max_pool(2, %d) in a model vs the ops by hand: %d of 6 differ\n", stride, differ);
        CHECK_INT(differ, 0);
        /* the layers' lines, "0 conv2d ...", "1 relu ...", "2 max_pool2d ..." */
        const char *shapes[3] = {"1x4x6x6", "1x4x6x6", stride == 2 ? "1x4x3x3" : "1x4x5x5"};
        summary_shapes(m, (int[]){1, 1, 8, 8}, shapes, 3);
        /* a conv output too small to pool is not fused: max pooling refuses it, under its own layer */
        tg_tensor *small = tg_tensor_new(4, (int[]){1, 1, 3, 3});
        tg_tape_reset(t);
        CHECK(tg_model_forward(m, t, small) == NULL);
        CHECK_MSG(tg_last_error(), "(max_pool2d): max_pool2d: kernel 2 is larger than the padded input 1x1");
        tg_tensor_free(small);
        tg_tensor_free(x);
        tg_tape_free(t);
        tg_model_free(m);
    }
}

/* A batch norm, relu and 2x2 stride-2 max pooling run as one op (batch_norm+relu+maxpool), and a
 * v1 residual block followed by that pooling takes it into its last op (batch_norm+add+relu+maxpool,
 * tg_layer_pool_here): bit for bit the ops by hand, no max_pool2d node left, and the summary shows
 * each layer's own output shape. */
static void fused_pool_bn(void) {
    tg_model *m = tg_model_new(9);
    tg_model_conv2d(m, 1, 4, 3, 1, 1, false); /* 0: (4,8,8) */
    tg_model_batch_norm(m, 4);                /* 1 */
    tg_model_relu(m);                         /* 2 */
    tg_model_max_pool(m, 2, 2);               /* 3: (4,4,4), into 1's op */
    tg_model_residual(m, 4, 4, 1, 1);         /* 4: (4,4,4) */
    tg_model_max_pool(m, 2, 2);               /* 5: (4,2,2), into 4.bn2's op */
    tg_model_flatten(m);
    tg_model_linear(m, 16, 3, true);
    tg_tensor **P;
    CHECK_INT(tg_model_params(m, &P), 11);
    tg_tensor *x = tg_param_new(4, (int[]){2, 1, 8, 8}), *v[12];
    for (int j = 0; j < 12; j++) v[j] = j < 11 ? P[j] : x;
    fill(x, 5);
    const float r[6] = {0.5f, -1, 0.25f, 2, -0.75f, 1};
    float out[2][6], *grads[2][12];
    tg_tape *t = tg_tape_new();
    for (int hand = 0; hand < 2; hand++) {
        tg_model_zero_grad(m), tg_tensor_zero_grad(x), tg_tape_reset(t);
        tg_tensor *y;
        if (hand) {
            tg_tensor *h = tg_conv2d(t, x, P[0], NULL, 1, 1, 1, 1);
            h = tg_max_pool2d(t, tg_relu(t, tg_batch_norm(t, h, P[1], P[2], NULL, NULL, true, 0.1f, 1e-5f)), 2, 2, 0);
            tg_tensor *b = tg_conv2d(t, h, P[3], NULL, 1, 1, 1, 1);
            b = tg_relu(t, tg_batch_norm(t, b, P[4], P[5], NULL, NULL, true, 0.1f, 1e-5f));
            b = tg_batch_norm(t, tg_conv2d(t, b, P[6], NULL, 1, 1, 1, 1), P[7], P[8], NULL, NULL, true, 0.1f, 1e-5f);
            y = tg_max_pool2d(t, tg_residual_add_act(t, h, b, TG_ACT_RELU), 2, 2, 0);
            y = tg_linear(t, tg_reshape(t, y, 2, (int[]){2, -1}), P[9], P[10]);
        } else {
            y = tg_model_forward(m, t, x);
            tg_op_total ops[12];
            int n = tg_tape_op_totals(t, ops, 12), pooled = 0;
            for (int k = 0; k < n; k++) {
                CHECK(strcmp(ops[k].name, "max_pool2d") != 0);
                pooled += !strcmp(ops[k].name, "batch_norm+relu+maxpool") ||
                          !strcmp(ops[k].name, "batch_norm+add+relu+maxpool");
            }
            CHECK_INT(pooled, 2);
        }
        CHECK(y && tg_backward_seed(t, y, r) == 0);
        if (!y) return;
        memcpy(out[hand], y->data, sizeof out[hand]);
        keep_grads(grads[hand], v, 12);
    }
    int differ = (memcmp(out[0], out[1], sizeof out[0]) != 0) + differing_grads(grads[0], grads[1], v, 12);
    printf("batch norm and a residual block, each then max_pool(2, 2), in a model vs the ops by hand: %d of 13 "
           "differ\n", differ);
    CHECK_INT(differ, 0);
    const char *shapes[6] = {"1x4x8x8", "1x4x8x8", "1x4x8x8", "1x4x4x4", "1x4x4x4", "1x4x2x2"};
    summary_shapes(m, (int[]){1, 1, 8, 8}, shapes, 6);
    /* asked outside a model's run, a block is offered nothing */
    CHECK(!tg_layer_pool_here(tg_model_find(m, "4")) && !tg_layer_pool_here(NULL));
    CHECK(tg_layer_forward_pool(NULL, t, x, NULL) == NULL);
    CHECK_MSG(tg_last_error(), "layer_forward_pool: layer is NULL");
    tg_layer *bn = tg_model_find(m, "1");
    CHECK(tg_layer_forward_pool(bn, NULL, x, NULL) == NULL);
    CHECK_MSG(tg_last_error(), "layer_forward_pool: tape is NULL");
    tg_clear_error();
    CHECK(tg_layer_forward_pool(bn, t, NULL, NULL) == NULL);
    CHECK_MSG(tg_last_error(), "layer_forward_pool: 1: input is NULL");
    tg_tape_reset(t); /* x from before a reset: stale, named by the op */
    tg_tensor *old = tg_tensor_tape(t, 4, (int[]){2, 4, 8, 8});
    tg_tape_reset(t);
    CHECK(tg_layer_forward_pool(bn, t, old, NULL) == NULL);
    CHECK_MSG(tg_last_error(), "stale");
    tg_tensor_free(x);
    tg_tape_free(t);
    tg_model_free(m);
}

/* Checkpoints: train a few steps, save, load into a fresh model: the same
 * state bit for bit, and the same outputs. */
static void checkpoints(const char *dir) {
    tg_model *a = net(5), *b = net(6);
    tg_tape *t = tg_tape_new();
    tg_tensor **ps, **sa, **sb;
    int np = tg_model_params(a, &ps);
    tg_sgd *opt = tg_sgd_new(ps, np, (tg_sgd_opts){.lr = 0.1f, .momentum = 0.9f});
    for (int step = 0; step < 3; step++) {
        tg_tensor *x = tg_tensor_tape(t, 4, (int[]){4, 1, 8, 8});
        fill(x, 20 + step);
        tg_tensor *loss = tg_cross_entropy(t, tg_model_forward(a, t, x), (int32_t[]){0, 1, 2, 1});
        CHECK(loss && tg_backward(t, loss) == 0);
        CHECK_INT(tg_sgd_step(opt), 0);
        tg_sgd_zero_grad(opt);
        tg_tape_reset(t);
    }
    int n = tg_model_state(a, &sa);
    CHECK_INT(tg_model_state(b, &sb), n);
    CHECK_NEAR(sa[n - 1]->data[0], 3, 0); /* the custom layer's buffer counted the batches */
    char path[256];
    snprintf(path, sizeof path, "%s/custom.ckpt", dir);
    CHECK_INT(tg_checkpoint_save(path, sa, n), 0);
    CHECK_INT(tg_checkpoint_load(path, sb, n), 0);
    int same = 0;
    for (int i = 0; i < n; i++)
        same += sa[i]->size == sb[i]->size && !memcmp(sa[i]->data, sb[i]->data, (size_t)sa[i]->size * sizeof(float));
    CHECK_INT(same, n);
    tg_model_train(a, false), tg_model_train(b, false);
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){4, 1, 8, 8});
    fill(x, 99);
    tg_tensor *ya = tg_model_forward(a, t, x), *yb = tg_model_forward(b, t, x);
    CHECK(ya && yb && !memcmp(ya->data, yb->data, (size_t)ya->size * sizeof(float)));
    /* a model of another shape is refused, naming the first tensor that differs */
    tg_model *c = tg_model_new(1);
    tg_model_conv2d(c, 1, 8, 3, 2, 1, false);
    tg_model_batch_norm(c, 8);
    tg_model_relu(c);
    scale(c, 8);
    tg_tensor **sc;
    int nc = tg_model_state(c, &sc);
    CHECK(tg_checkpoint_load(path, sc, nc) < 0);
    unlink(path);
    tg_sgd_free(opt);
    tg_model_free(a), tg_model_free(b), tg_model_free(c);
    tg_tape_free(t);
}

/* Tape dumps name every node's layer by its module path. */
static void dumps(void) {
    tg_model *m = net(7);
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){2, 1, 8, 8});
    fill(x, 3);
    tg_tensor *loss = tg_cross_entropy(t, tg_model_forward(m, t, x), (int32_t[]){0, 2});
    CHECK(loss && tg_backward(t, loss) == 0);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CHECK_INT(tg_tape_dump(t, f), 0);
    fclose(f);
    /* "op layer" as the dump's first two columns after the id, in the order the nodes ran */
    const char *want[][2] = {{"conv2d", "0"}, {"batch_norm+relu", "1"}, {"conv2d", "3.expand.0"},
                             {"batch_norm+relu", "3.expand.1"}, {"conv2d", "3.dw.0"}, {"batch_norm+relu", "3.dw.1"},
                             {"global_avg_pool", "3.se"}, {"linear", "3.se.fc1"}, {"relu", "3.se.fc1"},
                             {"linear", "3.se.fc2"}, {"sigmoid", "3.se"}, {"reshape", "3.se"}, {"mul", "3.se"},
                             {"conv2d", "3.project"}, {"batch_norm+add", "3.bn"}, {"mul", "4"}, {"dropout", "5"},
                             {"global_avg_pool", "6"}, {"linear", "7"}, {"cross_entropy", "-"}};
    int k = 0, rows = (int)(sizeof want / sizeof *want);
    for (char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        char op[32], layer[32];
        int id;
        if (!strncmp(line, "# speed:", 8)) break; /* the first table only: the speed table names the nodes again */
        if (sscanf(line, " %%%d %31s %31s", &id, op, layer) != 3) continue;
        if (k < rows && (strcmp(op, want[k][0]) || strcmp(layer, want[k][1])))
            { fprintf(stderr, "node %d: %s in %s, want %s in %s\n", id, op, layer, want[k][0], want[k][1]); CHECK(0); }
        k++;
    }
    CHECK_INT(k, rows);
    free(text);
    /* the DOT graph too */
    text = NULL;
    f = open_memstream(&text, &len);
    CHECK_INT(tg_tape_dot(t, f), 0);
    fclose(f);
    CHECK_MSG(text, "linear [3.se.fc1]");
    free(text);
    /* after a reset the scope is gone; a scope of one's own is named as given */
    tg_tape_reset(t);
    CHECK(!strcmp(tg_tape_scope(t), ""));
    CHECK_INT(tg_tape_set_scope(t, "encoder.2"), 0);
    CHECK(!strcmp(tg_tape_scope(t), "encoder.2"));
    CHECK_INT(tg_tape_set_scope(t, "two words"), TG_ERR_ARG);
    CHECK(!strcmp(tg_tape_scope(t), "encoder.2"));
    tg_model_free(m);
    tg_tape_free(t);
}

/* Each layer's own training flag under the model's switch (PyTorch's module.train). */
static void training_flags(void) {
    tg_model *m = net(8);
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){4, 1, 8, 8});
    fill(x, 4);
    tg_layer *drop = tg_model_layer(m, 5), *bn = tg_model_layer(m, 1), *blk = tg_model_layer(m, 3);
    /* dropout off, batch norm training: the same output twice, the running statistics still move */
    tg_layer_train(drop, false);
    CHECK(tg_model_training(m) && !drop->training && bn->training);
    float before = bn->buffers[0]->data[0];
    tg_tensor *a = tg_model_forward(m, t, x), *b = tg_model_forward(m, t, x);
    CHECK(a && b && !memcmp(a->data, b->data, (size_t)a->size * sizeof(float)));
    CHECK(bn->buffers[0]->data[0] != before);
    /* with dropout on, two passes differ */
    tg_layer_train(drop, true);
    a = tg_model_forward(m, t, x), b = tg_model_forward(m, t, x);
    CHECK(a && b && memcmp(a->data, b->data, (size_t)a->size * sizeof(float)) != 0);
    /* a block's switch reaches the layers inside it; the model's reaches all */
    tg_layer_train(blk, false);
    CHECK(!tg_model_find(m, "3.dw.1")->training && !tg_model_find(m, "3.se.fc1")->training && bn->training);
    float dw_mean = tg_model_find(m, "3.dw.1")->buffers[0]->data[0];
    tg_model_forward(m, t, x);
    CHECK(tg_model_find(m, "3.dw.1")->buffers[0]->data[0] == dw_mean);
    tg_model_train(m, true);
    CHECK(tg_model_find(m, "3.dw.1")->training && drop->training);
    tg_model_train(m, false);
    CHECK(!tg_model_training(m) && !tg_model_find(m, "3.se.fc2")->training);
    /* a layer added to an evaluating block starts evaluating too */
    CHECK(!tg_model_relu(m)->training);
    tg_model_free(m);
    tg_tape_free(t);
}

/* Errors from a forward name the layer (index path, and its name) and the op that was called. */
static void messages(void) {
    tg_model *m = net(9);
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){2, 3, 8, 8}); /* 3 channels: the first conv wants 1 */
    CHECK(tg_model_forward(m, t, x) == NULL);
    CHECK_MSG(tg_last_error(), "model_forward: layer 0 (conv2d): conv2d: input has 3 channels but weight expects 1");
    tg_model_free(m);
    /* inside a block, in a layer renamed: both paths; the fused op's failure names conv2d */
    m = tg_model_new(1);
    tg_model_conv2d(m, 1, 4, 3, 1, 1, false);
    inverted_residual(m, 4, 2);
    tg_model_conv2d(m, 1, 1, 1, 1, 0, false); /* after the block, index 2: given 4 channels */
    tg_layer_set_name(tg_model_layer(m, 1), "ir");
    tg_tensor *y = tg_model_forward(m, t, tg_tensor_tape(t, 4, (int[]){2, 1, 6, 6}));
    CHECK(y == NULL);
    CHECK_MSG(tg_last_error(), "model_forward: layer 2 (conv2d): conv2d: input has 4 channels but weight expects 1");
    tg_model_free(m);

    m = tg_model_new(1);
    tg_model_conv2d(m, 1, 4, 3, 1, 1, false);
    tg_layer_set_name(inverted_residual(m, 3, 2), "ir"); /* built for 3 channels, given 4 */
    y = tg_model_forward(m, t, tg_tensor_tape(t, 4, (int[]){2, 1, 6, 6}));
    CHECK(y == NULL);
    CHECK_MSG(tg_last_error(), "model_forward: layer 1.0.0 \"ir.expand.0\" (conv2d): conv2d: input has 4 channels "
                               "but weight expects 3");
    tg_model_free(m);
    tg_tape_free(t);
}

/* The summary: every layer with its attributes, output shape and parameters. */
static void summary(void) {
    tg_model *m = net(10);
    tg_model_residual(m, 3, 3, 1, 2); /* after the linear: given (N,3), not an image */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    int rc = tg_model_print(m, f, 4, (int[]){1, 1, 8, 8});
    fclose(f);
    CHECK(rc < 0);
    CHECK_MSG(tg_last_error(), "model_print: model_forward: layer 8.0 \"8.conv1\" (conv2d): conv2d: input and weight "
                               "must have 4 dimensions");
    CHECK_MSG(text, "7                  linear            8->3 bias=yes                                                  1x3                      27");
    free(text);
    tg_model_free(m);

    m = net(10);
    float before = tg_model_layer(m, 1)->buffers[0]->data[0];
    text = NULL;
    f = open_memstream(&text, &len);
    CHECK_INT(tg_model_print(m, f, 4, (int[]){1, 1, 8, 8}), 0);
    fclose(f);
    printf("%s", text);
    CHECK(tg_model_layer(m, 1)->buffers[0]->data[0] == before); /* evaluation mode: nothing learnt */
    CHECK(tg_model_training(m));                                 /* and the switch as it was */
    const char *lines[] = {
        "0                  conv2d            1->8 kernel=3 stride=2 pad=1 dilation=1 groups=1 bias=no       1x8x4x4                  72",
        "2                  relu                                                                             1x8x4x4                   0",
        "3                  inverted_residual                                                                1x8x4x4                 628",
        "  3.expand         sequential                                                                       1x16x4x4                160",
        "    3.expand.0     conv2d            8->16 kernel=1 stride=1 pad=0 dilation=1 groups=1 bias=no      1x16x4x4                128",
        "    3.dw.0         conv2d            16->16 kernel=3 stride=1 pad=1 dilation=1 groups=16 bias=no    1x16x4x4                144",
        "    3.se.fc1       linear            16->4 bias=yes                                                 1x4                      68",
        "5                  dropout           p=0.5                                                          1x8x4x4                   0",
        "6                  global_avg_pool                                                                  1x8                       0",
        "7                  linear            8->3 bias=yes                                                  1x3                      27",
        "total: 751 parameters (751 trainable), 101 buffer elements",
        "input 1x1x8x8 -> output 1x3"};
    for (size_t i = 0; i < sizeof lines / sizeof *lines; i++) CHECK_MSG(text, lines[i]);
    free(text);
    /* without a shape: no forward, no shapes */
    text = NULL;
    f = open_memstream(&text, &len);
    CHECK_INT(tg_model_print(m, f, 0, NULL), 0);
    fclose(f);
    CHECK(!strstr(text, "1x8x4x4") && strstr(text, "total: 751 parameters"));
    free(text);
    tg_model_free(m);
}

/* argmax as torch.argmax: the first maximum; a NaN counts as the largest */
static void argmax(void) {
    tg_tensor *x = tg_tensor_new(2, (int[]){4, 3});
    float v[] = {1, 3, 3, -2, -1, -5, 0, NAN, 9, NAN, NAN, 1};
    memcpy(x->data, v, sizeof v);
    int32_t out[4];
    CHECK_INT(tg_argmax(x, out), 4);
    CHECK(out[0] == 1 && out[1] == 1 && out[2] == 1 && out[3] == 0);
    CHECK_INT(tg_argmax(NULL, out), TG_ERR_ARG);
    CHECK_INT(tg_argmax(x, NULL), TG_ERR_ARG);
    tg_tensor_free(x);
}

/* Evaluation over a dataset matches the same computation by hand, for any batch size. */
static void evaluation(void) {
    enum { N = 37, H = 8, W = 8 };
    tg_dataset ds = {.n = N, .h = H, .w = W, .classes = 3, .mean = 0.5f, .std = 0.25f};
    uint8_t pixels[N * H * W];
    int32_t labels[N];
    uint64_t s = 11;
    for (int i = 0; i < N * H * W; i++) pixels[i] = (uint8_t)(tg_rand_u64(&s) >> 56);
    for (int i = 0; i < N; i++) labels[i] = (int32_t)(tg_rand_u64(&s) % 3);
    for (int v = 0; v < 256; v++) ds.value[v] = ((float)v / 255 - ds.mean) / ds.std;
    ds.pixels = pixels, ds.labels = labels;

    tg_model *m = net(12);
    tg_layer_train(tg_model_layer(m, 1), false); /* restored afterwards, each layer's own */
    int64_t conf[9];
    int32_t p7[N];
    tg_eval e7 = {.pred = p7, .confusion = conf, .classes = 3}, e5 = {0};
    CHECK_INT(tg_model_evaluate(m, &ds, 7, &e7), 0);
    CHECK_INT(tg_model_evaluate(m, &ds, 5, &e5), 0);
    CHECK(tg_model_training(m) && !tg_model_layer(m, 1)->training && tg_model_layer(m, 5)->training);
    /* by hand: one batch of all N in evaluation mode */
    tg_model_train(m, false);
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){N, 1, H, W});
    CHECK_INT(tg_dataset_batch(&ds, NULL, 0, x, NULL), N);
    tg_tensor *logits = tg_model_forward(m, t, x);
    int32_t pred[N];
    CHECK_INT(tg_argmax(logits, pred), N);
    int correct = 0;
    int64_t want[9] = {0};
    double loss = 0;
    for (int i = 0; i < N; i++) {
        correct += pred[i] == labels[i];
        want[labels[i] * 3 + pred[i]]++;
        const float *r = logits->data + 3 * i;
        double mx = fmax(r[0], fmax(r[1], r[2]));
        loss += mx + log(exp(r[0] - mx) + exp(r[1] - mx) + exp(r[2] - mx)) - r[labels[i]];
    }
    CHECK_INT(e7.n, N);
    CHECK_INT(e7.correct, correct);
    CHECK_INT(e5.correct, correct);
    CHECK_NEAR(e7.accuracy, (double)correct / N, 1e-12);
    CHECK_NEAR(e7.loss, loss / N, 1e-5);
    CHECK_NEAR(e5.loss, loss / N, 1e-5);
    CHECK(!memcmp(conf, want, sizeof want));
    CHECK(!memcmp(p7, pred, sizeof pred));
    /* memory stays that of one batch: 7 samples or 37 cost the same allocations */
    tg_dataset few = ds;
    few.n = 7;
    uint64_t a0 = tg__alloc_count();
    CHECK_INT(tg_model_evaluate(m, &few, 7, &e5), 0);
    uint64_t a1 = tg__alloc_count();
    CHECK_INT(tg_model_evaluate(m, &ds, 7, &e5), 0);
    CHECK_INT(tg__alloc_count() - a1, a1 - a0);
    printf("evaluate: %d of %d right, loss %.4f\n", correct, N, e7.loss);
    /* a confusion matrix of the wrong size, and bad arguments */
    int64_t conf4[16];
    e7.confusion = conf4, e7.classes = 4;
    CHECK_INT(tg_model_evaluate(m, &ds, 7, &e7), TG_ERR_SHAPE);
    CHECK_MSG(tg_last_error(), "model_evaluate: the batch of samples 0 to 6: the model gives 3 outputs per sample, the "
                               "confusion matrix has 4 classes");
    CHECK(e7.n == 0);
    CHECK_INT(tg_model_evaluate(m, &ds, 0, &e5), TG_ERR_ARG);
    CHECK_INT(tg_model_evaluate(NULL, &ds, 1, &e5), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "model_evaluate: model is NULL");
    /* a model that does not fit the data names the batch and the layer */
    tg_model *bad = tg_model_new(1);
    tg_model_linear(bad, 3, 3, true);
    CHECK(tg_model_evaluate(bad, &ds, 8, &e5) < 0);
    CHECK_MSG(tg_last_error(), "model_evaluate: the batch of samples 0 to 7: model_forward: layer 0 (linear)");
    tg_model_free(bad);
    tg_model_free(m);
    tg_tape_free(t);
}

/* tg_model_init reaches parameters of one's own by how they start. */
static void init(void) {
    tg_model *m = net(13);
    tg_tensor *s = tg_model_find(m, "4")->params[0], *w = tg_model_find(m, "3.se.fc1")->params[0];
    tg_tensor *b = tg_model_find(m, "3.se.fc1")->params[1], *g = tg_model_find(m, "3.bn")->params[0];
    s->data[0] = 5, b->data[0] = 5, g->data[0] = 5;
    float w0 = w->data[0];
    CHECK_INT(tg_model_init(m, TG_INIT_XAVIER_NORMAL, 2), 0);
    CHECK(s->data[0] == 1 && b->data[0] == 0 && g->data[0] == 1 && w->data[0] != w0);
    /* a weight of one's own starts as PyTorch's conv and linear weights: within 1/sqrt(fan_in) */
    tg_layer *l = tg_model_custom(m, "mine", scale_forward, NULL);
    tg_tensor *p = tg_layer_param(l, "w", 2, (int[]){50, 16}, TG_PARAM_WEIGHT);
    float mx = 0;
    for (int i = 0; i < p->size; i++) mx = fmaxf(mx, fabsf(p->data[i]));
    CHECK(mx <= 0.25f && mx > 0.2f);
    tg_model_free(m);
}

/* A block of two branches joined by tg_cat: names, shapes, gradients through both. */
static void branches(void) {
    tg_model *m = tg_model_new(14);
    tg_model_begin(m, "branches", branches_forward, NULL);
    tg_layer_set_name(tg_model_begin(m, NULL, NULL, NULL), "a");
    tg_model_conv2d(m, 2, 3, 1, 1, 0, true);
    tg_model_relu(m);
    tg_model_end(m);
    tg_layer_set_name(tg_model_conv2d(m, 2, 5, 3, 1, 1, false), "b");
    tg_model_end(m);
    tg_tensor **st;
    CHECK_INT(tg_model_state(m, &st), 3);
    CHECK(!strcmp(st[0]->name, "0.a.0.weight") && !strcmp(st[1]->name, "0.a.0.bias") && !strcmp(st[2]->name, "0.b.weight"));
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){2, 2, 5, 5});
    fill(x, 15);
    tg_tensor *y = tg_model_forward(m, t, x);
    CHECK(y && y->shape[1] == 8 && y->shape[2] == 5);
    /* by hand: channel 3 + c of sample 1 is the 3x3 branch's channel c */
    tg_tensor *a = tg_relu(t, tg_conv2d(t, x, st[0], st[1], 1, 0, 1, 1)), *b = tg_conv2d(t, x, st[2], NULL, 1, 1, 1, 1);
    CHECK(!memcmp(y->data + 25 * 8 + 25 * 3, b->data + 25 * 5, 25 * 5 * sizeof(float)));
    CHECK(!memcmp(y->data, a->data, 25 * 3 * sizeof(float)));
    tg_tensor *loss = tg_sum(t, y);
    CHECK(loss && tg_backward(t, loss) == 0);
    float mx = 0;
    for (int i = 0; i < st[2]->size; i++) mx = fmaxf(mx, fabsf(st[2]->grad[i]));
    CHECK(mx > 0 && st[1]->grad[0] > 0); /* both branches learn */
    tg_model_free(m);
    tg_tape_free(t);
}

int main(void) {
    char dir[] = "/tmp/tapegrad-model-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    names();
    gradients();
    fused_pool();
    fused_pool_bn();
    checkpoints(dir);
    dumps();
    training_flags();
    messages();
    summary();
    argmax();
    evaluation();
    init();
    branches();
    rmdir(dir);
    CHECK_DONE();
}
