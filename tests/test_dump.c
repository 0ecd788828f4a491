/* test_dump.c: tape dumps (the text columns against hand-computed figures, the
 * receptive field, per-op statistics), the Graphviz export (rendered by `dot`
 * when it is installed; required when CI is set), and the non-finite check. */
#include "check.h"
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
    for (const char *line = text; line && *line && n < max; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
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
    CHECK_MSG(text, "#  batch_norm              1          2304");
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
    CHECK_MSG(text, "#  conv2d+relu             1");
    CHECK_MSG(text, "#  conv2d                  1");
    CHECK_MSG(text, "#  batch_norm+relu         1");
    CHECK_MSG(text, "#  batch_norm+add+relu     1");
    CHECK_MSG(text, "#  batch_norm+add          1");
    CHECK_MSG(text, "#  residual_add+relu       1");
    CHECK_MSG(text, "#  residual_add            1");
    CHECK(strstr(text, "_relu") == NULL);
    free(dt.text);
    dump_text dot = dump_of(t, tg_tape_dot);
    CHECK_MSG(dot.text ? dot.text : "", "label=\"%0 conv2d+relu\\n");
    CHECK_MSG(dot.text ? dot.text : "", "label=\"%3 batch_norm+add+relu\\n");
    CHECK_MSG(dot.text ? dot.text : "", "label=\"%5 residual_add+relu\"");
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

int main(void) {
    small_net();
    fused_names();
    decoder_flops();
    receptive_field();
    nonfinite();
    graphviz();
    CHECK_DONE();
}
