/* blocks.c: the built-in residual blocks, written with nothing but the public
 * model API (tg_model_begin, a forward over tg_layer_forward): what a user's
 * own block looks like. */
#include "tapegrad_nn.h"
#include <stdio.h>

enum { CONV1, BN1, CONV2, BN2, SHORTCUT }; /* the blocks' layers, in the order they are made */

/* v1: y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)) */
static tg_tensor *residual_v1(tg_layer *b, tg_tape *t, tg_tensor *x, bool training) {
    (void)training; /* each layer inside follows its own flag */
    bool pool = tg_layer_pool_here(b); /* a 2x2 max pooling after the block: bn2's op takes it on */
    tg_layer **l = b->children;
    tg_tensor *h = tg_layer_forward(l[CONV1], t, x);
    h = tg_layer_forward_act(l[BN1], t, h, NULL, TG_ACT_RELU);
    h = tg_layer_forward(l[CONV2], t, h);
    tg_tensor *s = b->n_children > SHORTCUT ? tg_layer_forward(l[SHORTCUT], t, x) : x;
    if (!s) return NULL; /* the shortcut failed: keep its message (a NULL add would mean no add) */
    if (pool) return tg_layer_forward_pool(l[BN2], t, h, s); /* one op: max_pool2d(relu(bn2(h) + s), 2, 2) */
    return tg_layer_forward_act(l[BN2], t, h, s, TG_ACT_RELU); /* one op: relu(bn2(h) + s) */
}

/* v2: a = relu(bn1(x)); y = conv2(relu(bn2(conv1(a)))) + (x or shortcut(a)) */
static tg_tensor *residual_v2(tg_layer *b, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    tg_layer **l = b->children;
    tg_tensor *a = tg_layer_forward_act(l[BN1], t, x, NULL, TG_ACT_RELU);
    tg_tensor *h = tg_layer_forward(l[CONV1], t, a);
    h = tg_layer_forward_act(l[BN2], t, h, NULL, TG_ACT_RELU);
    h = tg_layer_forward(l[CONV2], t, h);
    tg_tensor *s = b->n_children > SHORTCUT ? tg_layer_forward(l[SHORTCUT], t, a) : x;
    return tg_residual_add(t, s, h);
}

tg_layer *tg_model_residual(tg_model *m, int in, int out, int stride, int version) {
    if (m && (in < 1 || out < 1 || stride < 1 || (version != 1 && version != 2))) {
        tg_model_fail(m, TG_ERR_ARG, "residual: in %d, out %d, stride %d, version %d: need positive sizes and "
                      "version 1 or 2", in, out, stride, version);
        return NULL;
    }
    tg_layer *b = tg_model_begin(m, version == 2 ? "residual_v2" : "residual_v1",
                                 version == 2 ? residual_v2 : residual_v1, NULL);
    if (!b) return NULL;
    snprintf(b->info, sizeof b->info, "%d->%d stride=%d", in, out, stride);
    tg_layer_set_name(tg_model_conv2d(m, in, out, 3, stride, 1, false), "conv1");
    tg_layer_set_name(tg_model_batch_norm(m, version == 2 ? in : out), "bn1");
    tg_layer_set_name(tg_model_conv2d(m, out, out, 3, 1, 1, false), "conv2");
    tg_layer_set_name(tg_model_batch_norm(m, out), "bn2");
    if (in != out || stride != 1) {
        tg_layer *s = tg_layer_set_name(tg_model_begin(m, NULL, NULL, NULL), "shortcut");
        if (s) snprintf(s->info, sizeof s->info, "1x1 conv%s", version == 1 ? " + batch norm" : "");
        tg_model_conv2d(m, in, out, 1, stride, 0, false);
        if (version == 1) tg_model_batch_norm(m, out);
        tg_model_end(m);
    }
    return tg_model_end(m) == b && b->n_children >= SHORTCUT ? b : NULL;
}
