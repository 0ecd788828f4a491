/* test_dump.c: tape dumps (the text columns against hand-computed figures, the
 * receptive field, per-op statistics; the speed table: every op's forward and
 * backward FLOPs, bytes and intensity, rates against the FMA peak, kernel paths;
 * the diagnosis of vanishing and exploding gradients and dead ReLU channels), the
 * Graphviz export (clusters, colours; rendered by `dot` when it is installed;
 * required when CI is set), and the non-finite check. */
#include "check.h"
#include "ops.h"         /* the op table: every op with forward FLOPs counts its backward */
#include "tapegrad_op.h" /* two ops of its own */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

// ----------------------------------------------------------------------------
// helpers: a dump into memory, and its node lines split into columns

typedef struct {
    char *text;
    size_t len;
} dump_text;

static dump_text dump_of(const tg_tape *t, int (*fn)(const tg_tape *, FILE *)) {
    dump_text d = {NULL, 0};
    FILE *f = open_memstream(&d.text, &d.len);
    CHECK(f != NULL);
    if (!f) return d;
    CHECK_INT(fn(t, f), 0);
    fclose(f);
    return d;
}

/* One node line: "%3 op layer output rf saved what flops params fwd bwd |dy|  inputs | attributes | stats" */
typedef struct {
    int id;
    char op[32], layer[32], shape[32], rf[16], saved[24], what[24], flops[24], params[24], fwd[24], bwd[24], dy[24];
    char rest[512];
} row;

static int parse_rows(const char *text, row *rows, int max) {
    int n = 0;
    const char *end_of_table = text ? strstr(text, "\n# speed:") : NULL; /* the first table only */
    for (const char *line = text; line && *line && n < max && (!end_of_table || line < end_of_table);
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        const char *p = line;
        while (*p == ' ') p++;
        if (*p != '%') continue;
        row *r = &rows[n];
        int used = 0;
        if (sscanf(p, "%%%d %31s %31s %31s %15s %23s %23s %23s %23s %23s %23s %23s %n", &r->id, r->op, r->layer, r->shape,
                   r->rf, r->saved, r->what, r->flops, r->params, r->fwd, r->bwd, r->dy, &used) != 12)
            continue;
        const char *end = strchr(p, '\n');
        size_t k = end ? (size_t)(end - p) - (size_t)used : strlen(p + used);
        if (k >= sizeof r->rest) k = sizeof r->rest - 1;
        memcpy(r->rest, p + used, k);
        r->rest[k] = '\0';
        n++;
    }
    return n;
}

/* The number after key in s ("zeros=" in "... | zeros=41.2%"), NAN if missing. */
static double number_after(const char *s, const char *key) {
    const char *p = strstr(s, key);
    return p ? strtod(p + strlen(key), NULL) : NAN;
}

static double l2(const float *v, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)v[i] * v[i];
    return sqrt(s);
}

static tg_tensor *param(int ndim, const int *shape, const char *name, uint64_t *rng) {
    tg_tensor *x = tg_param_new(ndim, shape);
    tg_tensor_set_name(x, name);
    for (int64_t i = 0; i < x->size; i++) x->data[i] = 2 * tg_rand_uniform(rng) - 1;
    return x;
}

// ----------------------------------------------------------------------------
// conv2d (bias) -> batch_norm -> relu -> max_pool2d -> flatten -> dropout -> linear -> cross_entropy

static void small_net(void) {
    uint64_t rng = 7;
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){2, 1, 6, 6});
    for (int64_t i = 0; i < x->size; i++) x->data[i] = 2 * tg_rand_uniform(&rng) - 1;
    tg_tensor *w = param(4, (int[]){4, 1, 3, 3}, "conv.weight", &rng), *b = param(1, (int[]){4}, "conv.bias", &rng);
    tg_tensor *g = param(1, (int[]){4}, "bn.weight", &rng), *be = param(1, (int[]){4}, "bn.bias", &rng);
    tg_tensor *rm = tg_tensor_new(1, (int[]){4}), *rv = tg_tensor_new(1, (int[]){4});
    for (int c = 0; c < 4; c++) rv->data[c] = 1;
    tg_tensor *fw = param(2, (int[]){3, 36}, "fc.weight", &rng), *fb = param(1, (int[]){3}, "fc.bias", &rng);
    const int32_t labels[2] = {0, 2};

    tg_tensor *c = tg_conv2d(t, x, w, b, 1, 1, 1, 1);
    tg_tensor *r = tg_relu(t, tg_batch_norm(t, c, g, be, rm, rv, true, 0.1f, 1e-5f));
    tg_tensor *p = tg_max_pool2d(t, r, 2, 2, 0);
    tg_tensor *d = tg_dropout(t, tg_flatten(t, p), 0.5f, true);
    tg_tensor *logits = tg_linear(t, d, fw, fb);
    tg_tensor *loss = tg_cross_entropy(t, logits, labels);
    CHECK(loss != NULL);

    dump_text before = dump_of(t, tg_tape_dump);
    CHECK_MSG(before.text, "# tape: 8 nodes (before backward: no gradients yet)");
    row rows[16];
    CHECK_INT(parse_rows(before.text, rows, 16), 8);
    CHECK(!strcmp(rows[0].dy, "-") && !strcmp(rows[7].dy, "-") && !strcmp(rows[0].bwd, "-"));
    free(before.text);

    CHECK_INT(tg_backward(t, loss), 0);
    dump_text dt = dump_of(t, tg_tape_dump);
    const char *text = dt.text;
    CHECK_MSG(text, "# tape: 8 nodes, after backward");
    CHECK_INT(parse_rows(text, rows, 16), 8);
    const char *ops[8] = {"conv2d", "batch_norm", "relu", "max_pool2d", "reshape", "dropout", "linear",
                          "cross_entropy"};
    const char *shapes[8] = {"2x4x6x6", "2x4x6x6", "2x4x6x6", "2x4x3x3", "2x36", "2x36", "2x3", "scalar"};
    /* saved for backward, in bytes:
     *   batch_norm: the mean and 1/std per channel, 2*4 floats           -> 32 "mean+rstd"
     *               (x-hat is recomputed from x, which the tape keeps)
     *   max_pool2d: one int32 argmax per output, 2*4*3*3*4              -> 288 "argmax"
     *   dropout:    one byte of mask per element, 2*36                  -> 72 "mask"
     *   cross_entropy: the softmax, 2*3 floats                          -> 24 "softmax"
     *   conv2d, relu, reshape, linear keep nothing (they read their inputs and outputs) */
    const long long saved[8] = {0, 32, 0, 288, 0, 72, 0, 24};
    const char *what[8] = {"-", "mean+rstd", "-", "argmax", "-", "mask", "-", "softmax"};
    /* forward FLOPs:
     *   conv2d: 2*(C/groups)*R*S*H'*W'*K per image = 2*1*3*3*6*6*4 = 2592, times N=2 -> 5184,
     *           plus the bias adds N*K*H'*W' = 2*4*36 = 288                          -> 5472
     *   batch_norm (training): 8 per element, 8*288                                  -> 2304
     *   relu: 1 per element                                                          -> 288
     *   max_pool2d: k*k per output, 4*72                                             -> 288
     *   reshape: 0; dropout: 1 per element                                           -> 0, 72
     *   linear: 2*N*I*O = 2*2*36*3 = 432, plus N*O = 6 bias adds                     -> 438
     *   cross_entropy: 4 per logit, 4*6                                              -> 24 */
    const long long flops[8] = {5472, 2304, 288, 288, 0, 72, 438, 24};
    /* parameter elements each node reads: conv 36 + 4, batch norm 4 + 4, linear 108 + 3 */
    const long long params[8] = {40, 8, 0, 0, 0, 0, 111, 0};
    long long saved_total = 0, flops_total = 0;
    for (int i = 0; i < 8; i++) {
        CHECK_INT(rows[i].id, i);
        CHECK_MSG(rows[i].op, ops[i]);
        CHECK(!strcmp(rows[i].op, ops[i]) && !strcmp(rows[i].shape, shapes[i]) && !strcmp(rows[i].what, what[i]));
        CHECK_INT(atoll(rows[i].saved), saved[i]);
        CHECK_INT(atoll(rows[i].flops), flops[i]);
        CHECK_INT(atoll(rows[i].params), params[i]);
        CHECK(strtod(rows[i].fwd, NULL) >= 0 && strtod(rows[i].bwd, NULL) >= 0);
        saved_total += saved[i], flops_total += flops[i];
    }
    CHECK_INT(saved_total, 416);
    CHECK_INT(flops_total, 8886);
    /* inputs by node id, parameter name or "input"; the describe callbacks' attributes */
    CHECK_MSG(rows[0].rest, "input conv.weight conv.bias | kernel=3x3 stride=1 pad=1 dilation=1 groups=1 bias");
    CHECK_MSG(rows[1].rest, "%0 bn.weight bn.bias | train momentum=0.1 eps=1e-05 | batch mean=");
    CHECK_MSG(rows[3].rest, "%2 | kernel=2 stride=2 pad=0 | argmax pos 0..3:");
    CHECK_MSG(rows[5].rest, "%4 | p=0.5 train | kept=");
    CHECK_MSG(rows[6].rest, "%5 fc.weight fc.bias");
    /* the receptive field: conv 3x3 -> 3, then batch norm and relu keep it, pool 2 -> 3 + 1 = 4; not for 2-D */
    CHECK(!strcmp(rows[0].rf, "3") && !strcmp(rows[2].rf, "3") && !strcmp(rows[3].rf, "4") && !strcmp(rows[4].rf, "-"));

    /* gradient norms: d(loss)/d(loss) = 1, and the logits' gradient */
    CHECK_NEAR(strtod(rows[7].dy, NULL), 1.0, 1e-6);
    CHECK_NEAR(strtod(rows[6].dy, NULL), l2(logits->grad, logits->size), 1e-3 * l2(logits->grad, logits->size));
    CHECK_NEAR(strtod(rows[0].dy, NULL), l2(c->grad, c->size), 1e-3 * l2(c->grad, c->size));

    /* statistics, recomputed here from the tensors */
    int64_t zeros = 0, kept = 0;
    for (int64_t i = 0; i < r->size; i++) zeros += r->data[i] == 0.0f;
    CHECK_NEAR(number_after(rows[2].rest, "zeros="), 100.0 * zeros / r->size, 0.051);
    const uint8_t *mask = tg_dropout_mask(d);
    for (int64_t i = 0; i < d->size; i++) kept += mask[i];
    CHECK_NEAR(number_after(rows[5].rest, "kept="), 100.0 * kept / d->size, 0.051);
    const int32_t *arg = tg_max_pool2d_argmax(p);
    long long win[4] = {0};
    for (int64_t o = 0; o < p->size; o++) { /* 2x2 windows, stride 2 on 6x6: window (oh,ow) starts at (2oh, 2ow) */
        int oh = (int)(o / 3 % 3), ow = (int)(o % 3);
        win[(arg[o] / 6 - 2 * oh) * 2 + (arg[o] % 6 - 2 * ow)]++;
    }
    char want[96];
    snprintf(want, sizeof want, "argmax pos 0..3: %lld %lld %lld %lld", win[0], win[1], win[2], win[3]);
    CHECK_MSG(rows[3].rest, want);
    CHECK_INT(win[0] + win[1] + win[2] + win[3], 72);
    double dmean = 0, mean_avg = 0;
    for (int ch = 0; ch < 4; ch++) {
        double s = 0;
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 36; j++) s += c->data[(i * 4 + ch) * 36 + j];
        mean_avg += s / 72 / 4;
        dmean += fabs(s / 72 - rm->data[ch]) / 4; /* the running mean after this batch's update */
    }
    CHECK_NEAR(number_after(rows[1].rest, "batch mean="), mean_avg, 1e-3 * fabs(mean_avg) + 1e-6);
    CHECK_NEAR(number_after(rows[1].rest, "|mean-running|="), dmean, 1e-3 * dmean + 1e-6);
    CHECK_MSG(rows[7].rest, "| classes=3 reduction=mean | loss=");

    /* the parameters, with the norms of their values and gradients */
    const char *pl = strstr(text, "\n   fc.weight ");
    CHECK(pl != NULL);
    if (pl) {
        char name[32], shape[32], use[16];
        long long elements;
        double nw, ndw;
        CHECK_INT(sscanf(pl, " %31s %31s %lld %15s %lf %lf", name, shape, &elements, use, &nw, &ndw), 6);
        CHECK(!strcmp(shape, "3x36") && !strcmp(use, "%6"));
        CHECK_INT(elements, 108);
        CHECK_NEAR(nw, l2(fw->data, fw->size), 1e-3 * nw);
        CHECK_NEAR(ndw, l2(fw->grad, fw->size), 1e-3 * ndw);
    }
    CHECK_MSG(text, "# parameters: 6 tensors, 159 elements"); /* 36 + 4 + 4 + 4 + 108 + 3 */
    /* the totals */
    CHECK_MSG(text, "# total: 8 nodes, 159 parameter elements, 416 bytes saved for backward");
    char hw[96];
    snprintf(hw, sizeof hw, "arena high-water %zu bytes", tg_tape_arena_high_water(t));
    CHECK_MSG(text, hw);
    CHECK_MSG(text, "# total: 8886 forward FLOPs (8.9 KFLOP)");
    /* backward FLOPs, for the gradients computed (the batch x takes none):
     *   conv2d: dW as the forward's multiply-adds, 5184, and db one add per output, 288 (no dx)   -> 5472
     *   batch_norm: the two sums 4 and dx 7 per element, 11*288                                   -> 3168
     *   relu 288; max_pool2d one add per output, 72; reshape 0; dropout 72
     *   linear: dx and dW 432 each, db 6                                                           -> 870
     *   cross_entropy: 3 per logit                                                                 -> 18 */
    CHECK_MSG(text, "# total: 9960 backward FLOPs (10.0 KFLOP, ");
    CHECK_MSG(text, "#  batch_norm                      1          2304");
    free(dt.text);

    /* the same tape as a graph */
    dump_text dot = dump_of(t, tg_tape_dot);
    CHECK(dot.text && !strncmp(dot.text, "digraph", 7));
    CHECK_MSG(dot.text, "[shape=ellipse, style=filled, fillcolor=\"#fbe0c3\", label=\"conv.weight\\n4x1x3x3\"]");
    CHECK_MSG(dot.text, "[shape=parallelogram, style=filled, fillcolor=\"#e3e3e3\", label=\"input\\n2x1x6x6\"]");
    CHECK_MSG(dot.text, "n0 [shape=box");
    CHECK_MSG(dot.text, "n2 -> n3 [label=\"2x4x6x6\"]");
    int edges = 0;
    for (const char *q = dot.text; (q = strstr(q, " -> ")); q++) edges++;
    CHECK_INT(edges, 3 + 3 + 1 + 1 + 1 + 1 + 3 + 1); /* one per input of each node */
    free(dot.text);

    CHECK_INT(tg_tape_dump(NULL, stdout), TG_ERR_ARG);
    CHECK_INT(tg_tape_dot(t, NULL), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "tape_dot: file is NULL");
    tg_tensor *heap[] = {w, b, g, be, rm, rv, fw, fb};
    for (int i = 0; i < 8; i++) tg_tensor_free(heap[i]);
    tg_tape_free(t);
}

/* the FLOPs of the decoder's ops: conv_transpose2d -> upsample -> layer_norm -> mse_loss */
static void decoder_flops(void) {
    uint64_t rng = 11;
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){1, 2, 3, 3});
    tg_tensor *w = param(4, (int[]){2, 3, 2, 2}, "w", &rng), *b = param(1, (int[]){3}, "b", &rng);
    tg_tensor *g = param(1, (int[]){12}, "g", &rng), *be = param(1, (int[]){12}, "be", &rng);
    tg_tensor *y = tg_conv_transpose2d(t, x, w, b, 2, 0, 0, 1, 1);             /* 1x3x6x6 */
    y = tg_upsample(t, y, 2, TG_UPSAMPLE_BILINEAR);                              /* 1x3x12x12 */
    y = tg_layer_norm(t, y, g, be, 1e-5f);
    tg_tensor *loss = tg_mse_loss(t, y, tg_tensor_tape(t, 4, (int[]){1, 3, 12, 12}));
    CHECK(loss != NULL);
    dump_text d = dump_of(t, tg_tape_dump);
    row rows[8];
    CHECK_INT(parse_rows(d.text, rows, 8), 4);
    /* conv_transpose2d: 2*(Cout/groups)*R*S*H*W*Cin = 2*3*2*2*3*3*2 = 432 per image, N = 1, plus the bias
     * adds 3*6*6 = 108; upsample bilinear: 8 per output, 8*3*12*12 = 3456; layer_norm: 8 per element = 3456;
     * mse_loss: 3 per element = 1296 */
    const long long want[4] = {432 + 108, 3456, 3456, 1296};
    for (int i = 0; i < 4; i++) CHECK_INT(atoll(rows[i].flops), want[i]);
    free(d.text);
    tg_tensor_free(w), tg_tensor_free(b), tg_tensor_free(g), tg_tensor_free(be);
    tg_tape_free(t);
}

// ----------------------------------------------------------------------------
// the receptive field along conv and pool chains, and max pooling's argmax histogram

static void receptive_field(void) {
    uint64_t rng = 3;
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){1, 1, 12, 12});
    tg_tensor *w1 = param(4, (int[]){2, 1, 3, 3}, "w1", &rng), *w2 = param(4, (int[]){2, 2, 3, 3}, "w2", &rng);
    /* conv 3x3: 1 + 2*1 = 3 (jump 1); pool 2, stride 2: 3 + 1*1 = 4 (jump 2); conv 3x3: 4 + 2*2 = 8 */
    tg_tensor *y = tg_conv2d(t, tg_max_pool2d(t, tg_conv2d(t, x, w1, NULL, 1, 1, 1, 1), 2, 2, 0), w2, NULL, 1, 1, 1, 1);
    /* conv 3x3 stride 2: 8 + 2*2 = 12 (jump 4); conv 3x3 dilation 2: 12 + 2*2*4 = 28 */
    y = tg_conv2d(t, tg_conv2d(t, y, w2, NULL, 2, 1, 1, 1), w2, NULL, 1, 2, 2, 1);
    CHECK(y != NULL);
    dump_text d = dump_of(t, tg_tape_dump);
    row rows[8];
    CHECK_INT(parse_rows(d.text, rows, 8), 5);
    const char *rf[5] = {"3", "4", "8", "12", "28"};
    for (int i = 0; i < 5; i++) CHECK_MSG(rows[i].rf, rf[i]);
    free(d.text);
    tg_tape_reset(t);

    /* going back up: conv 3x3 -> 3; pool 2 -> 4 (jump 2); a 2x2 stride-2 transposed conv reads one
     * input row per output row: 4 (jump 1); conv 3x3 -> 6; nearest x2: 6 (jump 1/2); conv 3x3:
     * 6 + 2/2 = 7; bilinear x2 reads two rows: 7 + 1/2 (jump 1/4), shown whole as 8; a 3x3 stride-2
     * transposed conv reads up to two: 7.5 + 1/4 -> 8 (jump 1/8) */
    tg_tensor *wt = param(4, (int[]){2, 2, 2, 2}, "wt", &rng), *wt3 = param(4, (int[]){2, 2, 3, 3}, "wt3", &rng);
    x = tg_tensor_tape(t, 4, (int[]){1, 1, 12, 12});
    y = tg_max_pool2d(t, tg_conv2d(t, x, w1, NULL, 1, 1, 1, 1), 2, 2, 0);
    y = tg_conv2d(t, tg_conv_transpose2d(t, y, wt, NULL, 2, 0, 0, 1, 1), w2, NULL, 1, 1, 1, 1);
    y = tg_conv2d(t, tg_upsample(t, y, 2, TG_UPSAMPLE_NEAREST), w2, NULL, 1, 1, 1, 1);
    y = tg_conv_transpose2d(t, tg_upsample(t, y, 2, TG_UPSAMPLE_BILINEAR), wt3, NULL, 2, 1, 1, 1, 1);
    CHECK(y != NULL);
    d = dump_of(t, tg_tape_dump);
    CHECK_INT(parse_rows(d.text, rows, 8), 8);
    const char *up[8] = {"3", "4", "4", "6", "6", "7", "8", "8"};
    for (int i = 0; i < 8; i++) CHECK_MSG(rows[i].rf, up[i]);
    free(d.text);
    tg_tape_reset(t);
    tg_tensor_free(wt), tg_tensor_free(wt3);

    /* argmax histogram by hand: x = 15, 14, ..., 0 on 4x4, kernel 3, stride 2, pad 1 -> 2x2 windows, each
     * won by its top-left real element: window (0,0) spans rows/cols -1..1, wins at (0,0) = position 4;
     * (0,1) rows -1..1 cols 1..3, wins at (0,1) = position 3; (1,0) at (1,0) = 1; (1,1) at (1,1) = 0 */
    tg_tensor *xp = tg_param_new(4, (int[]){1, 1, 4, 4});
    for (int i = 0; i < 16; i++) xp->data[i] = (float)(15 - i);
    CHECK(tg_max_pool2d(t, xp, 3, 2, 1) != NULL);
    d = dump_of(t, tg_tape_dump);
    CHECK_MSG(d.text, "| kernel=3 stride=2 pad=1 | argmax pos 0..8: 1 1 0 1 1 0 0 0 0\n");
    CHECK_MSG(d.text, "# total: 1 nodes, 16 parameter elements, 16 bytes saved for backward");
    free(d.text);
    tg_tensor_free(w1), tg_tensor_free(w2), tg_tensor_free(xp);
    tg_tape_free(t);
}

// ----------------------------------------------------------------------------
// the non-finite check, with a planted NaN and two ops of the test's own

// log without a guard: y = log(x), dx += dy / x
static int same_shape(tg_node *n, int *ndim, int *shape) {
    *ndim = n->in[0]->ndim;
    for (int i = 0; i < *ndim; i++) shape[i] = n->in[0]->shape[i];
    return 0;
}
static int log_forward(tg_tape *t, tg_node *n) {
    (void)t;
    for (int64_t i = 0; i < n->out->size; i++) n->out->data[i] = logf(n->in[0]->data[i]);
    return 0;
}
static int log_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    for (int64_t i = 0; i < n->out->size; i++) n->in[0]->grad[i] += n->out->grad[i] / n->in[0]->data[i];
    return 0;
}
static const tg_op op_log = {.name = "log", .shape = same_shape, .forward = log_forward, .vjp = log_vjp};

// sqrt: finite at 0 going forward, dx += dy / (2 sqrt(x)) is +Inf there
static int sqrt_forward(tg_tape *t, tg_node *n) {
    (void)t;
    for (int64_t i = 0; i < n->out->size; i++) n->out->data[i] = sqrtf(n->in[0]->data[i]);
    return 0;
}
static int sqrt_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    for (int64_t i = 0; i < n->out->size; i++) n->in[0]->grad[i] += n->out->grad[i] * 0.5f / n->out->data[i];
    return 0;
}
static const tg_op op_sqrt = {.name = "sqrt", .shape = same_shape, .forward = sqrt_forward, .vjp = sqrt_vjp};

static void nonfinite(void) {
    tg_tape *t = tg_tape_new();
    tg_tensor *w = tg_param_new(4, (int[]){2, 1, 3, 3});
    tg_tensor_set_name(w, "w");
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){1, 1, 4, 4});
    x->data[5] = NAN;
    /* off (the default): the NaN flows through */
    tg_tensor *y = tg_conv2d(t, x, w, NULL, 1, 0, 1, 1);
    CHECK(y != NULL && isnan(y->data[0]));
    tg_tape_reset(t);
    /* on: the leaf that brought it is named, before the conv runs */
    tg_tape_check_finite(t, true);
    x = tg_tensor_tape(t, 4, (int[]){1, 1, 4, 4});
    x->data[5] = NAN;
    tg_clear_error();
    CHECK(tg_conv2d(t, x, w, NULL, 1, 0, 1, 1) == NULL);
    CHECK_INT(tg_last_error_code(), TG_ERR_NONFINITE);
    CHECK_MSG(tg_last_error(), "conv2d: input 0 (input, 1x1x4x4) holds NaN at element 5: a non-finite value "
                               "entered the tape from a leaf (an input batch or a parameter), before node %0");
    CHECK_INT(tg_tape_node_count(t), 0);
    tg_tape_reset(t);

    /* log of a negative number, at node %1 (node %0 is sub): found in forward */
    tg_tensor *a = tg_param_new(1, (int[]){4});
    tg_tensor_set_name(a, "a");
    for (int i = 0; i < 4; i++) a->data[i] = (float)(i + 1);
    tg_tensor *two = tg_tensor_tape(t, 1, (int[]){1});
    two->data[0] = 2; /* a - 2 = -1, 0, 1, 2 */
    tg_tensor *in[1] = {tg_sub(t, a, two)};
    CHECK(tg_apply(t, &op_log, in, 1, NULL) == NULL);
    CHECK_INT(tg_last_error_code(), TG_ERR_NONFINITE);
    CHECK_MSG(tg_last_error(), "log: forward output 4 of node %1 holds NaN at element 0; its inputs are finite");
    tg_tape_check_finite(t, false);
    tg_tensor *l = tg_apply(t, &op_log, in, 1, NULL);
    CHECK(l != NULL && isnan(l->data[0]) && isinf(l->data[1]));
    /* an op without flops and stats callbacks shows "-" */
    dump_text d = dump_of(t, tg_tape_dump);
    row rows[4];
    CHECK_INT(parse_rows(d.text, rows, 4), 2);
    CHECK(!strcmp(rows[1].op, "log") && !strcmp(rows[1].flops, "-") && !strcmp(rows[1].rest, "%0"));
    CHECK_MSG(d.text, "forward FLOPs (ops without a count left out)");
    free(d.text);
    tg_tape_reset(t);

    /* sqrt at 0: finite forward, +Inf gradient in backward; named with the input it went to */
    tg_tensor_zero_grad(a);
    for (int i = 0; i < 4; i++) a->data[i] = (float)(i * i); /* 0, 1, 4, 9 */
    tg_tape_check_finite(t, true);
    in[0] = a;
    tg_tensor *s = tg_sum(t, tg_apply(t, &op_sqrt, in, 1, NULL));
    CHECK(s != NULL);
    CHECK_INT(tg_backward(t, s), TG_ERR_NONFINITE);
    CHECK_MSG(tg_last_error(), "sqrt: backward of node %0 gave input 0 (a, 4) a gradient holding +Inf at element 0");
    tg_tensor_zero_grad(a);
    tg_tape_check_finite(t, false);
    CHECK_INT(tg_backward(t, s), 0);
    CHECK(isinf(a->grad[0]) && a->grad[1] == 0.5f);
    /* a non-finite seed */
    tg_tape_check_finite(t, true);
    CHECK_INT(tg_backward_seed(t, s, (float[]){NAN}), TG_ERR_NONFINITE);
    CHECK_MSG(tg_last_error(), "backward: the seed gradient holds NaN at element 0");
    tg_tape_check_finite(NULL, true); /* does nothing */
    tg_tensor_free(a), tg_tensor_free(w);
    tg_tape_free(t);
}

// ----------------------------------------------------------------------------
// Graphviz renders the DOT export (the CI installs it: there a missing `dot` fails)

static void graphviz(void) {
    bool have_dot = system("command -v dot >/dev/null 2>&1") == 0;
    if (!have_dot) {
        if (getenv("CI")) {
            CHECK(!"graphviz's `dot` is on the PATH (CI is set; scripts/install-deps.sh graphviz installs it)");
        } else {
            printf("graphviz: skipped, no `dot` on the PATH\n");
        }
        return;
    }
    uint64_t rng = 5;
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){2, 1, 5, 5});
    tg_tensor *w = param(4, (int[]){3, 1, 3, 3}, "conv \"quoted\\name\"", &rng); /* escaped in labels */
    tg_tensor *y = tg_relu(t, tg_conv2d(t, x, w, NULL, 1, 1, 1, 1));
    tg_tensor *loss = tg_mean(t, tg_residual_add(t, y, tg_max_pool2d(t, y, 3, 1, 1)));
    CHECK_INT(tg_backward(t, loss), 0);
    char path[] = "/tmp/tapegrad-dot-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    CHECK(f != NULL);
    if (f) {
        CHECK_INT(tg_tape_dot(t, f), 0);
        fclose(f);
        char cmd[128], out[256] = "";
        snprintf(cmd, sizeof cmd, "dot -Tsvg %s 2>&1", path);
        FILE *p = popen(cmd, "r");
        CHECK(p != NULL);
        if (p) {
            size_t k = 0, got;
            char chunk[4096];
            while ((got = fread(chunk, 1, sizeof chunk, p)) > 0) /* keep the start: the SVG header, or an error */
                if (k < sizeof out - 1) {
                    size_t c = got < sizeof out - 1 - k ? got : sizeof out - 1 - k;
                    memcpy(out + k, chunk, c);
                    k += c;
                    out[k] = '\0';
                }
            CHECK_INT(pclose(p), 0);
            CHECK_MSG(out, "<svg");
        }
    }
    if (fd >= 0) unlink(path);
    tg_tensor_free(w);
    tg_tape_free(t);
}

/* conv2d+relu+max_pool2d: one node, conv2d+relu+maxpool in dumps, with pooling's argmax saved, its attributes, the
 * receptive field and FLOPs of the conv and the pool together */
static void fused_pool_names(void) {
    uint64_t rng = 4;
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){2, 2, 6, 6});
    tg_tensor *w = param(4, (int[]){3, 2, 3, 3}, "w", &rng), *b = param(1, (int[]){3}, "b", &rng);
    tg_tensor *p = tg_conv2d_relu_max_pool(t, x, w, b, 1, 1, 1, 1); /* 6x6, pooled to 3x3 */
    CHECK(p && p->shape[0] == 2 && p->shape[1] == 3 && p->shape[2] == 3 && p->shape[3] == 3);
    CHECK_INT(tg_backward(t, tg_mean(t, p)), 0);
    const int32_t *arg = tg_max_pool2d_argmax(p);
    bool in_window = arg != NULL; /* each argmax inside its own 2x2 window of the 6x6 plane */
    for (int o = 0; in_window && o < 54; o++)
        in_window = arg[o] / 6 / 2 == o % 9 / 3 && arg[o] % 6 / 2 == o % 3;
    CHECK(in_window);
    dump_text d = dump_of(t, tg_tape_dump);
    row rows[4];
    CHECK_INT(parse_rows(d.text, rows, 4), 2);
    CHECK_MSG(rows[0].op, "conv2d+relu+maxpool");
    CHECK_MSG(rows[0].rf, "4"); /* conv 3x3: 3, then the pool: 3 + 1 */
    CHECK_MSG(rows[0].what, "argmax");
    CHECK_MSG(rows[0].rest, "kernel=3x3 stride=1 pad=1 dilation=1 groups=1 bias pool=2x2");
    CHECK_MSG(rows[0].rest, "zeros=");
    CHECK_MSG(d.text, "#  conv2d+relu+maxpool             1");
    free(d.text);
    /* forward: 2*18 per conv output, a bias add and a ReLU each (216 outputs), 4 compares per pooled
     * one (54); backward: dW's multiply-adds, db, the ReLU's mask, one add per pooled output */
    tg_op_total ops[2];
    CHECK_INT(tg_tape_op_totals(t, ops, 2), 2);
    CHECK(!strcmp(ops[0].name, "conv2d+relu+maxpool"));
    CHECK_INT(ops[0].flops, 36 * 216 + 216 + 216 + 4 * 54);
    CHECK_INT(ops[0].flops_backward, 36 * 216 + 216 + 216 + 54);
    /* too small to pool: refused, by the conv */
    tg_tensor *x2 = tg_tensor_tape(t, 4, (int[]){1, 2, 3, 3});
    CHECK(tg_conv2d_relu_max_pool(t, x2, w, b, 1, 0, 1, 1) == NULL);
    CHECK_MSG(tg_last_error(), "conv2d: its output 1x1 is smaller than the 2x2 pooling window");
    tg_tape_free(t);
    tg_tensor_free(w), tg_tensor_free(b);
}

/* Fused epilogues: one node each, named in dumps by op and variant (conv2d+relu), and
 * totalled by op apart from the plain op's nodes */
static void fused_names(void) {
    uint64_t rng = 9;
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){2, 2, 4, 4});
    tg_tensor *w = param(4, (int[]){2, 2, 3, 3}, "w", &rng), *g = param(1, (int[]){2}, "g", &rng);
    tg_tensor *b = param(1, (int[]){2}, "b", &rng);
    tg_tensor *h = tg_conv2d_act(t, x, w, NULL, 1, 1, 1, 1, TG_ACT_RELU);
    tg_tensor *c = tg_conv2d(t, h, w, NULL, 1, 1, 1, 1);
    tg_tensor *r = tg_batch_norm_act(t, c, g, b, NULL, NULL, true, 0.1f, 1e-5f, NULL, TG_ACT_RELU);
    tg_tensor *s = tg_batch_norm_act(t, r, g, b, NULL, NULL, true, 0.1f, 1e-5f, h, TG_ACT_RELU);
    tg_tensor *a = tg_batch_norm_act(t, s, g, b, NULL, NULL, true, 0.1f, 1e-5f, r, TG_ACT_NONE);
    tg_tensor *y = tg_residual_add_act(t, a, h, TG_ACT_RELU);
    tg_tensor *loss = tg_mean(t, tg_residual_add(t, y, c));
    CHECK(loss != NULL);
    CHECK_INT(tg_backward(t, loss), 0);
    dump_text dt = dump_of(t, tg_tape_dump);
    const char *text = dt.text ? dt.text : "";
    CHECK_MSG(text, "%0 conv2d+relu ");
    CHECK_MSG(text, "%1 conv2d ");
    CHECK_MSG(text, "%2 batch_norm+relu ");
    CHECK_MSG(text, "%3 batch_norm+add+relu ");
    CHECK_MSG(text, "%4 batch_norm+add ");
    CHECK_MSG(text, "%5 residual_add+relu ");
    CHECK_MSG(text, "%6 residual_add ");
    CHECK_MSG(text, "zeros="); /* the ReLU's statistics */
    CHECK_MSG(text, "#  conv2d+relu                     1");
    CHECK_MSG(text, "#  conv2d                          1");
    CHECK_MSG(text, "#  batch_norm+relu                 1");
    CHECK_MSG(text, "#  batch_norm+add+relu             1");
    CHECK_MSG(text, "#  batch_norm+add                  1");
    CHECK_MSG(text, "#  residual_add+relu               1");
    CHECK_MSG(text, "#  residual_add                    1");
    CHECK(strstr(text, "_relu") == NULL);
    free(dt.text);
    dump_text dot = dump_of(t, tg_tape_dot);
    CHECK_MSG(dot.text ? dot.text : "", "label=\"%0 conv2d+relu\\n");
    CHECK_MSG(dot.text ? dot.text : "", "label=\"%3 batch_norm+add+relu\\n");
    CHECK_MSG(dot.text ? dot.text : "", "label=\"%5 residual_add+relu\\n");
    free(dot.text);
    /* the same table as numbers: ops in order of first use, variants apart */
    tg_op_total ops[8];
    CHECK_INT(tg_tape_op_totals(t, ops, 8), 8); /* the 7 above, and mean */
    CHECK(!strcmp(ops[0].name, "conv2d+relu") && !strcmp(ops[1].name, "conv2d") &&
          !strcmp(ops[3].name, "batch_norm+add+relu") && !strcmp(ops[5].name, "residual_add+relu"));
    int64_t flops = 0;
    bool timed = true;
    for (int k = 0; k < 8; k++) {
        CHECK_INT(ops[k].nodes, 1);
        flops += ops[k].flops > 0 ? ops[k].flops : 0;
        timed &= ops[k].t_forward >= 0 && ops[k].t_backward >= 0;
    }
    CHECK(timed && ops[0].flops > 0 && flops == tg_tape_flops(t));
    CHECK_INT(tg_tape_op_totals(t, ops, 2), 8); /* room for 2: the count all the same */
    CHECK_INT(tg_tape_op_totals(t, NULL, 0), 8);
    CHECK_INT(tg_tape_op_totals(NULL, ops, 8), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "tape_op_totals: tape is NULL");
    CHECK_INT(tg_tape_op_totals(t, NULL, 3), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "tape_op_totals: room for 3");
    tg_tensor_free(w), tg_tensor_free(g), tg_tensor_free(b);
    tg_tape_free(t);
}

// ----------------------------------------------------------------------------
// the speed table: one row per node, "%id op fwd-flops bwd-flops fwd-GF/s bwd-GF/s fwd-% bwd-% fwd-bytes
// bwd-bytes fwd-F/B bwd-F/B  kernel-fwd | kernel-bwd"

typedef struct {
    int id;
    char op[32], c[10][24]; /* the ten number columns, "-" where there is none */
    char kernel[128];       /* "shifted avx512 | shifted dx, blocked wgrad avx512" */
} speed_row;

enum { S_FWD_FLOPS, S_BWD_FLOPS, S_FWD_RATE, S_BWD_RATE, S_FWD_PEAK, S_BWD_PEAK, S_FWD_BYTES, S_BWD_BYTES, S_FWD_FB,
       S_BWD_FB };

static int parse_speed(const char *text, speed_row *rows, int max) {
    const char *p = text ? strstr(text, "\n# speed:") : NULL;
    const char *end = p ? strstr(p + 1, "\n# parameters") : NULL;
    int n = 0;
    for (const char *line = p; line && *line && n < max && line < end; line = strchr(line + 1, '\n')) {
        const char *q = line + 1;
        while (*q == ' ') q++;
        if (*q != '%') continue;
        speed_row *r = &rows[n];
        int used = 0;
        if (sscanf(q, "%%%d %31s %23s %23s %23s %23s %23s %23s %23s %23s %23s %23s %n", &r->id, r->op, r->c[0], r->c[1],
                   r->c[2], r->c[3], r->c[4], r->c[5], r->c[6], r->c[7], r->c[8], r->c[9], &used) != 12)
            continue;
        const char *e = strchr(q, '\n');
        size_t k = e ? (size_t)(e - q) - (size_t)used : strlen(q + used);
        if (k >= sizeof r->kernel) k = sizeof r->kernel - 1;
        memcpy(r->kernel, q + used, k);
        r->kernel[k] = '\0';
        n++;
    }
    return n;
}

/* Every op that counts its forward FLOPs counts its backward ones too */
static void every_op_counts_backward(void) {
    for (int k = 0; k < TG_OP_COUNT; k++) {
        const tg_op *op = tg_op_table[k];
        if (op->flops && !op->flops_backward) fprintf(stderr, "%s: flops without flops_backward\n", op->name);
        CHECK(!op->flops || op->flops_backward);
    }
}

/* One op on small leaves (params take gradients, "in" does not), then sum (unless the op gives a
 * scalar) and backward: node %0's forward and backward FLOPs, counted by hand below */
typedef struct {
    const char *name;
    long long fwd, bwd;
} flops_case;

static tg_tensor *pm(tg_tensor **keep, int *nk, int ndim, const int *shape, bool grad, uint64_t *rng) {
    tg_tensor *x = grad ? tg_param_new(ndim, shape) : tg_tensor_new(ndim, shape);
    for (int64_t i = 0; i < x->size; i++) x->data[i] = 2 * tg_rand_uniform(rng) - 1;
    keep[(*nk)++] = x;
    return x;
}

static tg_tensor *flops_build(int k, tg_tape *t, tg_tensor **keep, int *nk, uint64_t *rng) {
    static const int32_t labels[2] = {0, 2};
    const int v23[2] = {2, 3}, v3[1] = {3};
#define P(nd, ...) pm(keep, nk, nd, (int[]){__VA_ARGS__}, true, rng)
#define IN(nd, ...) pm(keep, nk, nd, (int[]){__VA_ARGS__}, false, rng)
    switch (k) {
    case 0: return tg_add(t, P(2, 2, 3), P(1, 3));
    case 1: return tg_add(t, P(2, 2, 3), IN(1, 3));
    case 2: return tg_sub(t, P(2, 2, 3), P(1, 3));
    case 3: return tg_mul(t, P(2, 2, 3), P(2, 2, 3));
    case 4: return tg_mul(t, P(2, 2, 3), IN(2, 2, 3));
    case 5: return tg_relu(t, P(2, 2, 3));
    case 6: return tg_relu6(t, P(2, 2, 3));
    case 7: return tg_hardswish(t, P(2, 2, 3));
    case 8: return tg_sigmoid(t, P(2, 2, 3));
    case 9: return tg_tanh(t, P(2, 2, 3));
    case 10: return tg_sum(t, P(2, 2, 3));
    case 11: return tg_mean(t, P(2, 2, 3));
    case 12: return tg_matmul(t, P(2, 2, 3), P(2, 3, 4));
    case 13: return tg_matmul(t, P(2, 2, 3), IN(2, 3, 4));
    case 14: return tg_linear(t, IN(2, 2, 3), P(2, 4, 3), P(1, 4));
    case 15: return tg_linear(t, P(2, 2, 3), P(2, 4, 3), P(1, 4));
    case 16: return tg_reshape(t, P(2, 2, 3), 1, (int[]){6});
    case 17: return tg_cat(t, (tg_tensor *[]){P(2, 2, 3), P(2, 2, 3)}, 2, 1);
    case 18: return tg_cross_entropy(t, P(2, 2, 3), labels);
    case 19: return tg_softmax(t, P(2, 2, 3));
    case 20: return tg_mse_loss(t, P(2, 2, 3), IN(2, 2, 3));
    case 21: return tg_mse_loss(t, P(2, 2, 3), P(2, 2, 3));
    case 22: return tg_residual_add(t, P(2, 2, 3), P(2, 2, 3));
    case 23: return tg_conv2d(t, IN(4, 1, 2, 5, 5), P(4, 3, 2, 3, 3), P(1, 3), 1, 1, 1, 1);
    case 24: return tg_conv2d(t, P(4, 1, 2, 5, 5), P(4, 3, 2, 3, 3), P(1, 3), 1, 1, 1, 1);
    case 25: return tg_conv2d_act(t, P(4, 1, 2, 5, 5), P(4, 3, 2, 3, 3), NULL, 2, 1, 1, 1, TG_ACT_RELU);
    case 26: return tg_max_pool2d(t, P(4, 1, 1, 4, 4), 2, 2, 0);
    case 27: return tg_avg_pool2d(t, P(4, 1, 1, 4, 4), 2, 2, 0);
    case 28: return tg_global_avg_pool(t, P(4, 1, 2, 2, 2));
    case 29: return tg_dropout(t, P(2, 2, 3), 0.5f, true);
    case 30: return tg_dropout_vanilla(t, P(2, 2, 3), 0.5f, true);
    case 31: return tg_batch_norm(t, P(2, 4, 2), P(1, 2), P(1, 2), NULL, NULL, true, 0.1f, 1e-5f);
    case 32: return tg_batch_norm_act(t, P(2, 4, 2), P(1, 2), P(1, 2), NULL, NULL, true, 0.1f, 1e-5f, NULL,
                                      TG_ACT_RELU);
    case 33: return tg_batch_norm(t, IN(2, 4, 2), P(1, 2), P(1, 2), NULL, NULL, true, 0.1f, 1e-5f);
    case 34: return tg_conv_transpose2d(t, P(4, 1, 2, 3, 3), P(4, 2, 3, 2, 2), P(1, 3), 2, 0, 0, 1, 1);
    case 35: return tg_upsample(t, P(4, 1, 1, 2, 2), 2, TG_UPSAMPLE_NEAREST);
    case 36: return tg_upsample(t, P(4, 1, 1, 2, 2), 2, TG_UPSAMPLE_BILINEAR);
    case 37: return tg_layer_norm(t, P(2, 2, 3), P(1, 3), P(1, 3), 1e-5f);
    }
#undef P
#undef IN
    (void)v23, (void)v3;
    return NULL;
}

static void flops_table(void) {
    /* by hand; "grad" below means the gradients the vjp computes (inputs with requires_grad) */
    const flops_case cases[] = {
        {"add", 6, 12},          /* 1 per output; back: 1 per output into each of the 2 gradients */
        {"add", 6, 6},           /* b takes no gradient: only da */
        {"sub", 6, 12},
        {"mul", 6, 24},          /* back: a multiply and an add per output, for each of 2 */
        {"mul", 6, 12},
        {"relu", 6, 6},          /* back: one compare-select per element */
        {"relu6", 6, 12},        /* two compares and a select */
        {"hardswish", 6, 30},    /* two compares, x/3 + 1/2, times dy */
        {"sigmoid", 6, 24},      /* dy*y*(1-y), then the add into dx */
        {"tanh", 6, 24},
        {"sum", 6, 6},           /* back: an add per input element */
        {"mean", 6, 6},
        {"matmul", 48, 96},      /* 2*M*N*K = 2*2*4*3; back: da and db, each as much */
        {"matmul", 48, 48},      /* b takes no gradient */
        {"linear", 56, 56},      /* 2*N*I*O = 48, + N*O = 8 bias adds; back: dw 48, db 8, no dx */
        {"linear", 56, 104},     /* and dx 48 */
        {"reshape", 0, 0},
        {"cat", 0, 0},
        {"cross_entropy", 24, 18}, /* 4 per logit; back: 3 per logit */
        {"softmax", 24, 24},       /* 4 per element both ways */
        {"mse_loss", 18, 18},      /* 3 per element; back: 2 per element, and 1 into each gradient */
        {"mse_loss", 18, 24},
        {"residual_add", 6, 12},
        /* conv 1x2x5x5 * 3x2x3x3, pad 1 -> 1x3x5x5: 75 outputs of 2*18 = 36 FLOPs, 2700, + 75 bias adds;
         * back: dW 2700 and db 75 (x takes no gradient), then dx 2700 more */
        {"conv2d", 2775, 2775},
        {"conv2d", 2775, 5475},
        /* stride 2, pad 1, ReLU: 1x3x3x3 = 27 outputs * 36 = 972, + 27 maxima; back dx 972 + dW 972 + the
         * mask 27 */
        {"conv2d+relu", 999, 1971},
        {"max_pool2d", 16, 4},       /* k*k per output (4 of them); back: one add per output */
        {"avg_pool2d", 16, 20},      /* back: dy/(k*k), then k*k adds, per output */
        {"global_avg_pool", 8, 10},  /* an add per input; back: 2 divisions and 8 adds */
        {"dropout", 6, 6},
        {"dropout_vanilla", 6, 6},
        {"batch_norm", 64, 88},      /* training 8 per element of 8; back: sums 4 and dx 7 per element */
        /* + 1 forward; back + on each of the two passes the ReLU's input recomputed (4) and a compare-select */
        {"batch_norm+relu", 72, 168},
        {"batch_norm", 64, 32},      /* x takes no gradient: the sums only (for dgamma, dbeta) */
        /* x 1x2x3x3 w 2x3x2x2 stride 2 -> 1x3x6x6: 2*(Cout*R*S = 12)*18 inputs = 432, + 108 bias adds;
         * back: dx 432, dW 432, db 108 */
        {"conv_transpose2d", 540, 972},
        {"upsample", 0, 16},         /* nearest: back an add per output */
        {"upsample", 128, 224},      /* bilinear: 8 per output; back 14 per output */
        {"layer_norm", 48, 84},      /* 8 per element; back 4 + dgamma 2 + dbeta 1 + dx 7 per element */
    };
    int n_cases = (int)(sizeof cases / sizeof *cases);
    uint64_t rng = 21;
    for (int k = 0; k < n_cases; k++) {
        tg_tape *t = tg_tape_new();
        tg_tensor *keep[8];
        int nk = 0;
        tg_tensor *y = flops_build(k, t, keep, &nk, &rng);
        CHECK(y != NULL);
        if (!y) continue;
        tg_tensor *loss = y->size == 1 && y->ndim == 0 ? y : tg_sum(t, y);
        CHECK_INT(tg_backward(t, loss), 0);
        dump_text d = dump_of(t, tg_tape_dump);
        speed_row rows[4];
        int n = parse_speed(d.text, rows, 4);
        CHECK(n >= 1 && rows[0].id == 0);
        if (n >= 1) {
            if (strcmp(rows[0].op, cases[k].name) || atoll(rows[0].c[S_FWD_FLOPS]) != cases[k].fwd ||
                atoll(rows[0].c[S_BWD_FLOPS]) != cases[k].bwd)
                fprintf(stderr, "flops case %d: %s %s %s, want %s %lld %lld\n", k, rows[0].op, rows[0].c[S_FWD_FLOPS],
                        rows[0].c[S_BWD_FLOPS], cases[k].name, cases[k].fwd, cases[k].bwd);
            CHECK_MSG(rows[0].op, cases[k].name);
            CHECK_INT(atoll(rows[0].c[S_FWD_FLOPS]), cases[k].fwd);
            CHECK_INT(atoll(rows[0].c[S_BWD_FLOPS]), cases[k].bwd);
        }
        free(d.text);
        for (int i = 0; i < nk; i++) tg_tensor_free(keep[i]);
        tg_tape_free(t);
    }
}

/* The speed columns on a hand-counted case, consistent with the node's own times and a given peak */
static void speed_columns(void) {
    tg_set_fma_peak(0.5); /* GFLOP/s: a made-up machine, so the shares are large enough to read */
    CHECK_NEAR(tg_fma_peak(), 0.5, 0);
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_param_new(2, (int[]){2, 3});
    for (int i = 0; i < 6; i++) x->data[i] = (float)(i - 2);
    tg_tensor *r = tg_relu(t, x), *s = tg_sum(t, r);
    dump_text before = dump_of(t, tg_tape_dump);
    speed_row rows[8];
    CHECK_INT(parse_speed(before.text, rows, 8), 2);
    CHECK(!strcmp(rows[0].c[S_BWD_FLOPS], "-") && !strcmp(rows[0].c[S_BWD_BYTES], "-")); /* no backward yet */
    CHECK_MSG(before.text, "gradient flow: no node with a 2-D or 4-D output has a gradient yet");
    free(before.text);
    CHECK_INT(tg_backward(t, s), 0);
    dump_text d = dump_of(t, tg_tape_dump);
    CHECK_INT(parse_speed(d.text, rows, 8), 2);
    /* relu: reads x (6 floats, 24 bytes), writes y (24) -> 48 bytes, 6 FLOPs: 0.125 FLOP/byte.
     * Its vjp reads dy (24) and x (24, the default; relu reads y, as many) and adds into x's gradient,
     * a parameter's, which holds values: read and written (48) -> 96 bytes, 6 FLOPs: 0.0625.
     * sum: reads 24, writes the scalar (4) -> 28, 6 FLOPs: 0.214; its vjp reads dy (4) and the input (24),
     * and adds into relu's output gradient (zeroed first by the sweep): 48 -> 76, 6 FLOPs: 0.0789 */
    CHECK_INT(atoll(rows[0].c[S_FWD_BYTES]), 48);
    CHECK_INT(atoll(rows[0].c[S_BWD_BYTES]), 96);
    CHECK_MSG(rows[0].c[S_FWD_FB], "0.125");
    CHECK_MSG(rows[0].c[S_BWD_FB], "0.062"); /* 0.0625 at 3 decimals, rounded either way */
    CHECK_INT(atoll(rows[1].c[S_FWD_BYTES]), 28);
    CHECK_INT(atoll(rows[1].c[S_BWD_BYTES]), 76);
    CHECK_MSG(rows[1].c[S_FWD_FB], "0.214");
    CHECK_MSG(rows[1].c[S_BWD_FB], "0.079");
    /* rates from the nodes' own times, and their share of the given peak */
    const tg_node *n = tg_tape_first(t);
    double f_rate = 6e-9 / n->t_forward, b_rate = 6e-9 / n->t_backward;
    CHECK_NEAR(strtod(rows[0].c[S_FWD_RATE], NULL), f_rate, 0.005 + 1e-3 * f_rate);
    CHECK_NEAR(strtod(rows[0].c[S_BWD_RATE], NULL), b_rate, 0.005 + 1e-3 * b_rate);
    CHECK_NEAR(strtod(rows[0].c[S_FWD_PEAK], NULL), 100 * f_rate / 0.5, 0.05 + 1e-3 * 100 * f_rate / 0.5);
    CHECK_NEAR(strtod(rows[0].c[S_BWD_PEAK], NULL), 100 * b_rate / 0.5, 0.05 + 1e-3 * 100 * b_rate / 0.5);
    CHECK_MSG(rows[0].kernel, "- | -"); /* relu notes no kernel path */
    CHECK_MSG(d.text, "# speed: GFLOP/s from each node's times, % of the FMA peak (0.5 GFLOP/s, tg_fma_peak)");
    CHECK_MSG(d.text, "# total: 12 backward FLOPs (12 FLOP, ");
    CHECK_MSG(d.text, "of the FMA peak (0.5 GFLOP/s)");
    CHECK_MSG(d.text, "#  relu                            1             6             6");
    free(d.text);
    tg_tape_reset(t);

    /* kernel paths, from the kernels: a stride-1 conv shifts, a stride-2 one goes through im2col; linear is a
     * GEMM; each names the instruction set in use */
    uint64_t rng = 4;
    tg_tensor *w = param(4, (int[]){2, 2, 3, 3}, "w", &rng), *fw = param(2, (int[]){3, 8}, "fw", &rng);
    tg_tensor *xi = tg_tensor_tape(t, 4, (int[]){2, 2, 4, 4});
    tg_tensor *c1 = tg_conv2d(t, xi, w, NULL, 1, 1, 1, 1); /* 2x2x4x4, stride 1: shifted; x takes no gradient */
    tg_tensor *c2 = tg_conv2d(t, c1, w, NULL, 2, 1, 1, 1); /* 2x2x2x2, stride 2: im2col */
    tg_tensor *loss = tg_sum(t, tg_linear(t, tg_flatten(t, c2), fw, NULL));
    CHECK_INT(tg_backward(t, loss), 0);
    d = dump_of(t, tg_tape_dump);
    CHECK_INT(parse_speed(d.text, rows, 8), 5);
    CHECK(!strncmp(rows[0].kernel, "shifted ", 8) && strstr(rows[0].kernel, "| shifted wgrad ") != NULL);
    CHECK(strstr(rows[0].kernel, "dx") == NULL); /* the batch takes no gradient: no dx computed */
    CHECK(!strncmp(rows[1].kernel, "im2col+gemm ", 12) && strstr(rows[1].kernel, "| im2col+gemm ") != NULL);
    CHECK(!strncmp(rows[3].kernel, "gemm", 4) && strstr(rows[3].kernel, "| gemm") != NULL);
    for (int i = 0; i < 4; i++) { /* each path ends with the instruction set, "generic", "avx2" or "avx512" */
        if (i == 2) continue;      /* reshape: none */
        const char *k = rows[i].kernel;
        size_t len = strlen(k);
        CHECK(len > 8 && (!strcmp(k + len - 6, "avx512") || !strcmp(k + len - 4, "avx2") ||
                          !strcmp(k + len - 7, "generic")));
    }
    free(d.text);
    tg_tensor_free(w), tg_tensor_free(fw), tg_tensor_free(x);
    tg_tape_free(t);
    tg_set_fma_peak(100);
}

// ----------------------------------------------------------------------------
// the diagnosis

/* L2 norm of a tensor's gradient (the dump's |dy|) */
static double grad_norm(const tg_tensor *x) { return l2(x->grad, x->size); }

/* depth layers of linear(width) and an activation (sigmoid, relu, or none), a linear head to 4 classes,
 * cross entropy; weights uniform in [-scale, scale]. Returns the dump after backward, and in *spread the
 * largest |dy| of the nodes with 2-D outputs over the first node's */
static char *chain(int depth, int width, int batch, float scale, tg_tensor *(*act)(tg_tape *, tg_tensor *),
                   double *spread, uint64_t seed) {
    uint64_t rng = seed;
    tg_tape *t = tg_tape_new();
    tg_tensor *ws[32], *x = tg_tensor_tape(t, 2, (int[]){batch, width});
    int32_t labels[64];
    for (int64_t i = 0; i < x->size; i++) x->data[i] = 2 * tg_rand_uniform(&rng) - 1;
    for (int i = 0; i < batch; i++) labels[i] = i % 4;
    tg_tensor *h = x;
    for (int l = 0; l <= depth; l++) {
        ws[l] = tg_param_new(2, (int[]){l == depth ? 4 : width, width});
        for (int64_t i = 0; i < ws[l]->size; i++) ws[l]->data[i] = scale * (2 * tg_rand_uniform(&rng) - 1);
        h = tg_linear(t, h, ws[l], NULL);
        if (l < depth && act) h = act(t, h);
    }
    tg_tensor *loss = tg_cross_entropy(t, h, labels);
    CHECK_INT(tg_backward(t, loss), 0);
    dump_text d = dump_of(t, tg_tape_dump);
    double hi = 0, first = grad_norm(tg_tape_first(t)->out);
    for (const tg_node *n = tg_tape_first(t); n; n = n->next)
        if (n->out->ndim == 2) hi = fmax(hi, grad_norm(n->out));
    if (spread) *spread = hi / first;
    for (int l = 0; l <= depth; l++) tg_tensor_free(ws[l]);
    tg_tape_free(t);
    return d.text;
}

/* the number after key in text, 0 if missing */
static double factor_after(const char *text, const char *key) {
    const char *p = text ? strstr(text, key) : NULL;
    return p ? strtod(p + strlen(key), NULL) : 0;
}

static void diagnosis(void) {
    /* 12 layers of linear and sigmoid, small weights: each sigmoid passes at most a quarter of dy and each
     * weight matrix shrinks it again. The first linear's output has the smallest |dy| */
    double spread;
    char *text = chain(12, 16, 8, 0.1f, tg_sigmoid, &spread, 3);
    CHECK_MSG(text, "# diagnosis\n#  vanishing gradient: |dy| falls ");
    CHECK_MSG(text, "to %0 linear (");
    CHECK_MSG(text, "Usual remedies: residual connections, batch norm, ReLU instead of sigmoid or tanh");
    CHECK(!strstr(text, "exploding") && !strstr(text, "nothing looks wrong"));
    double got = factor_after(text, "vanishing gradient: |dy| falls ");
    CHECK(spread >= 1e4);                            /* four orders of magnitude at least */
    CHECK_NEAR(got, spread, 5e-3 * spread);          /* printed with 3 significant digits */
    char want[64];
    snprintf(want, sizeof want, "(%.1f orders of magnitude)", log10(spread));
    CHECK_MSG(text, want);
    free(text);

    /* a short, healthy ReLU net: the gradients stay within 100x, no dead units (32 images) */
    text = chain(2, 16, 32, 0.25f, tg_relu, NULL, 5);
    CHECK_MSG(text, "# diagnosis\n#  gradient flow: |dy| stays within 100x along the tape");
    CHECK_MSG(text, "#  nothing looks wrong\n");
    CHECK(!strstr(text, "vanishing") && !strstr(text, "exploding") && !strstr(text, "dead:"));
    free(text);

    /* six linear layers, no activation, large weights: each multiplies dy by about 3 going back */
    text = chain(6, 16, 8, 1.5f, NULL, &spread, 7);
    CHECK_MSG(text, "#  exploding gradient: |dy| grows ");
    got = factor_after(text, "exploding gradient: |dy| grows ");
    CHECK(got >= 100);
    CHECK_MSG(text, "to %0 linear (");
    CHECK_MSG(text, "Usual remedies: a lower learning rate, gradient clipping");
    CHECK(!strstr(text, "vanishing"));
    free(text);

    /* a wide layer before a narrow head, healthy: relu over (8, 131072) then linear to 4 classes with
     * He-scaled weights. Going back, |dy| grows about sqrt(2) while its rms per element falls about 128x
     * (the same gradient spread over 32768 times the elements): the flow reads |dy|, so no finding */
    {
        enum { B = 8, N = 131072 };
        uint64_t r = 21;
        tg_tape *t = tg_tape_new();
        tg_tensor *x = tg_param_new(2, (int[]){B, N}), *w = tg_param_new(2, (int[]){4, N});
        for (int64_t i = 0; i < x->size; i++) x->data[i] = 0.5f + tg_rand_uniform(&r);
        float a = sqrtf(6.0f / N);
        for (int64_t i = 0; i < w->size; i++) w->data[i] = a * (2 * tg_rand_uniform(&r) - 1);
        int32_t labels[B] = {0, 1, 2, 3, 0, 1, 2, 3};
        tg_tensor *h = tg_relu(t, x), *loss = tg_cross_entropy(t, tg_linear(t, h, w, NULL), labels);
        CHECK_INT(tg_backward(t, loss), 0);
        const tg_node *wide = tg_tape_first(t), *head = wide->next;
        double rms_fall = (grad_norm(head->out) / sqrt(4.0 * B)) / (grad_norm(wide->out) / sqrt((double)B * N));
        CHECK(rms_fall > 100);                                                /* the rms would call it vanishing */
        CHECK(grad_norm(wide->out) > grad_norm(head->out));                   /* |dy| does not fall */
        text = dump_of(t, tg_tape_dump).text;
        CHECK_MSG(text, "# diagnosis\n#  gradient flow: |dy| stays within 100x along the tape");
        CHECK(!strstr(text, "vanishing"));
        free(text);
        tg_tensor_free(x), tg_tensor_free(w);
        tg_tape_free(t);
    }

    /* conv2d+relu with 9 of its 16 channels' bias at -100: those are zero for every image */
    uint64_t rng = 13;
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){4, 2, 5, 5});
    for (int64_t i = 0; i < x->size; i++) x->data[i] = 2 * tg_rand_uniform(&rng) - 1;
    tg_tensor *w = param(4, (int[]){16, 2, 3, 3}, "w", &rng), *b = tg_param_new(1, (int[]){16});
    for (int k = 0; k < 16; k++) b->data[k] = k % 16 < 9 ? -100.0f : 1.0f;
    tg_tape_set_scope(t, "3.conv1");
    tg_tensor *y = tg_conv2d_act(t, x, w, b, 1, 1, 1, 1, TG_ACT_RELU);
    tg_tape_set_scope(t, "4");
    tg_tensor *z = tg_relu(t, tg_flatten(t, y)); /* 2-D: features; 9*25 of its 400 are the dead channels' */
    tg_tape_set_scope(t, NULL);
    CHECK_INT(tg_backward(t, tg_mean(t, z)), 0);
    dump_text d = dump_of(t, tg_tape_dump);
    CHECK_MSG(d.text, "#  %0 conv2d+relu [3.conv1]: dead: 9 of 16 channels (56%) zero for every image of the batch; "
                      "usual remedies: a lower learning rate");
    CHECK_MSG(d.text, "#  %2 relu [4]: dead: 225 of 400 features (56%) zero for every sample of the batch");
    CHECK(!strstr(d.text, "nothing looks wrong"));
    free(d.text);

    /* a finding from half the channels on: 7 of 16 dead is not one, 8 of 16 is */
    for (int n_dead = 7; n_dead <= 8; n_dead++) {
        tg_tape_reset(t);
        x = tg_tensor_tape(t, 4, (int[]){4, 2, 5, 5});
        for (int64_t i = 0; i < x->size; i++) x->data[i] = 2 * tg_rand_uniform(&rng) - 1;
        for (int k = 0; k < 16; k++) b->data[k] = k < n_dead ? -100.0f : 1.0f;
        y = tg_conv2d_act(t, x, w, b, 1, 1, 1, 1, TG_ACT_RELU);
        CHECK_INT(tg_backward(t, tg_mean(t, y)), 0);
        d = dump_of(t, tg_tape_dump);
        if (n_dead == 7) CHECK(d.text && !strstr(d.text, "dead:"));
        else CHECK_MSG(d.text, "#  %0 conv2d+relu: dead: 8 of 16 channels (50%) zero for every image of the batch");
        free(d.text);
    }
    tg_tensor_free(w), tg_tensor_free(b);
    tg_tape_free(t);
}

// ----------------------------------------------------------------------------
// DOT: clusters from the scopes, colours by time and by |dy|, escaped names

static int count_of(const char *s, const char *sub) {
    int n = 0;
    for (const char *p = s; p && (p = strstr(p, sub)); p++) n++;
    return n;
}

static void dot_clusters(void) {
    uint64_t rng = 17;
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){2, 2, 6, 6});
    for (int64_t i = 0; i < x->size; i++) x->data[i] = 2 * tg_rand_uniform(&rng) - 1;
    tg_tensor *w0 = param(4, (int[]){4, 2, 3, 3}, "0.weight", &rng);
    tg_tensor *w1 = param(4, (int[]){4, 4, 3, 3}, "3.conv1.weight", &rng);
    tg_tensor *w2 = param(4, (int[]){4, 4, 3, 3}, "3.conv2.weight", &rng);
    tg_tape_set_scope(t, "0");
    tg_tensor *h = tg_conv2d_act(t, x, w0, NULL, 1, 1, 1, 1, TG_ACT_RELU);
    tg_tape_set_scope(t, "3.conv1");
    tg_tensor *a = tg_conv2d_act(t, h, w1, NULL, 1, 1, 1, 1, TG_ACT_RELU);
    tg_tape_set_scope(t, "3.conv2");
    tg_tensor *c = tg_conv2d(t, a, w2, NULL, 1, 1, 1, 1);
    tg_tape_set_scope(t, "3");
    h = tg_residual_add_act(t, h, c, TG_ACT_RELU);
    CHECK_INT(tg_tape_set_scope(t, "head\"q\\x"), 0); /* a scope DOT must escape */
    tg_tensor *loss = tg_mean(t, h);
    tg_tape_set_scope(t, NULL);
    CHECK_INT(tg_backward(t, loss), 0);

    dump_text d = dump_of(t, tg_tape_dot);
    const char *text = d.text ? d.text : "";
    /* clusters 0, 3, 3.conv1, 3.conv2 and the head: 3.conv1 and 3.conv2 inside 3 */
    CHECK_INT(count_of(text, "subgraph cluster_"), 5);
    const char *c3 = strstr(text, "label=\"3\"; style=\"rounded\"");
    const char *c31 = strstr(text, "label=\"3.conv1\"; style=\"rounded\"");
    const char *c32 = strstr(text, "label=\"3.conv2\"; style=\"rounded\"");
    CHECK(c3 && c31 && c32 && c3 < c31 && c3 < c32);
    if (c3 && c31 && c32) { /* cluster 3 closes after both: count braces from its start */
        int depth = 1;
        const char *p = strchr(c3, '\n');
        for (; p && *p && depth > 0; p++) depth += (*p == '{') - (*p == '}');
        CHECK(p && p > c31 && p > c32);
        /* each layer's parameter sits in its cluster, before the next cluster starts */
        const char *wl = strstr(c31, "label=\"3.conv1.weight\\n4x4x3x3\"");
        CHECK(wl && wl < c32);
    }
    CHECK_MSG(text, "label=\"head\\\"q\\\\x\"; style=\"rounded\""); /* escaped: the quote and the backslash */
    /* labels: time, |dy| rms, FLOPs, the layer */
    CHECK_MSG(text, "label=\"%1 conv2d+relu [3.conv1]\\nkernel=3x3");
    CHECK_MSG(text, " ms (fwd ");
    CHECK_MSG(text, "|dy| rms ");
    CHECK_MSG(text, " KFLOP fwd, ");
    /* colours by time: the slowest node is the dark end of the scale, named in the legend */
    CHECK_MSG(text, "label=\"fill: forward + backward time, white 0 ms to dark red ");
    { /* the node with the most time has the dark end (others as close as a rounding may share it: times vary) */
        const tg_node *slow = tg_tape_first(t);
        for (const tg_node *n = slow; n; n = n->next)
            if (n->t_forward + n->t_backward > slow->t_forward + slow->t_backward) slow = n;
        char want[96];
        snprintf(want, sizeof want, "  n%d [shape=box, style=\"rounded,filled\", fillcolor=\"#961e0a\"", slow->id);
        CHECK_MSG(text, want);
    }
    free(d.text);

    /* by |dy|: the loss has the largest (1 at the mean's output... its rms over 1 element) */
    FILE *f;
    char *buf = NULL;
    size_t len = 0;
    f = open_memstream(&buf, &len);
    CHECK_INT(tg_tape_dot_opts(t, f, TG_DOT_GRAD), 0);
    fclose(f);
    CHECK_MSG(buf, "label=\"fill: |dy| rms (log scale), light ");
    CHECK_INT(count_of(buf, "fillcolor=\"#0c3778\""), 1);  /* the largest: the dark end */
    CHECK(count_of(buf, "fillcolor=\"#f7fbff\"") >= 1);    /* the smallest: the light end */
    CHECK(!strstr(buf, "penwidth"));
    free(buf);
    buf = NULL;
    f = open_memstream(&buf, &len);
    CHECK_INT(tg_tape_dot_opts(t, f, TG_DOT_TIME | TG_DOT_GRAD), 0);
    fclose(f);
    CHECK_MSG(buf, "\\nborder: |dy| rms (log scale)");
    CHECK_INT(count_of(buf, "penwidth=4"), 5);
    CHECK_INT(count_of(buf, "color=\"#0c3778\""), 1);
    free(buf);
    CHECK_INT(tg_tape_dot_opts(t, stdout, 4), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "tape_dot: flags 0x4");
    CHECK_INT(tg_tape_dot_opts(NULL, stdout, 0), TG_ERR_ARG);
    tg_tensor_free(w0), tg_tensor_free(w1), tg_tensor_free(w2);
    tg_tape_free(t);
}

/* The FMA peak: given, ignored when impossible, measured when 0 */
static void fma_peak(void) {
    tg_set_fma_peak(123.5);
    CHECK_NEAR(tg_fma_peak(), 123.5, 0);
    tg_set_fma_peak(-1);
    tg_set_fma_peak(NAN);
    tg_set_fma_peak(INFINITY);
    CHECK_NEAR(tg_fma_peak(), 123.5, 0);
    tg_set_fma_peak(0);
    double p = tg_fma_peak(); /* measured: some tens of milliseconds */
    CHECK(p > 0 && isfinite(p) && p != 123.5);
    CHECK_NEAR(tg_fma_peak(), p, 0); /* once */
    tg_set_fma_peak(100);
}

/* The totals' memory line: the arena's peak split by kind, as tg_tape_memory gives it (KiB with one
 * decimal: each within 0.05 KiB of the bytes) */
static void memory_line(void) {
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_param_new(2, (int[]){16, 256});
    for (int64_t i = 0; i < x->size; i++) x->data[i] = (float)(i % 7) - 3;
    tg_tensor *h = tg_max_pool2d(t, tg_reshape(t, tg_relu(t, x), 4, (int[]){1, 16, 16, 16}), 2, 2, 0);
    CHECK_INT(tg_backward(t, tg_sum(t, h)), 0);
    dump_text d = dump_of(t, tg_tape_dump);
    tg_tape_mem m;
    CHECK_INT(tg_tape_memory(t, &m), 0);
    const char *line = d.text ? strstr(d.text, "# memory at the arena's peak (") : NULL;
    CHECK(line != NULL);
    struct { const char *key; size_t bytes; } want[] = {
        {"# memory at the arena's peak (", m.peak.total}, {"activations ", m.peak.activations},
        {"saved for backward ", m.peak.saved}, {"gradients ", m.peak.grads}, {"scratch ", m.peak.scratch}};
    for (int i = 0; line && i < 5; i++) {
        const char *p = strstr(line, want[i].key);
        CHECK(p != NULL);
        if (p) CHECK_NEAR(strtod(p + strlen(want[i].key), NULL), want[i].bytes / 1024.0, 0.05);
    }
    /* the pool's argmax (an int32 for each of its 1024 outputs); the gradients of relu's and the pool's outputs */
    CHECK(m.peak.saved >= 4096 && (int64_t)m.peak.grads >= 4 * (x->size + 1024));
    free(d.text);
    tg_tensor_free(x);
    tg_tape_free(t);
}

int main(void) {
    tg_set_fma_peak(100); /* the dumps' shares against a given peak: no measurement in most of the tests */
    every_op_counts_backward();
    flops_table();
    speed_columns();
    diagnosis();
    dot_clusters();
    fma_peak();
    small_net();
    fused_names();
    fused_pool_names();
    decoder_flops();
    receptive_field();
    nonfinite();
    graphviz();
    memory_line();
    CHECK_DONE();
}
