/* test_runlog.c: the run log (tg_runlog_*): its records parsed back with cJSON and
 * compared with values worked out by hand on tiny models of known weights (norms,
 * update ratios, zeros, dead units over a window, batch-norm statistics,
 * histograms), the diagnosis on nets built to show each problem (and a healthy net
 * that shows none), caller mistakes, and names that need escaping. */
#include "check.h"
#include "tapegrad_nn.h"
#include "tapegrad_op.h" /* an op of its own with an awkward name */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char dir[] = "/tmp/test_runlog_XXXXXX";
static char path[256];

// ----------------------------------------------------------------------------
// helpers: the log read back, one parsed object per line

#define MAX_RECORDS 512

typedef struct {
    cJSON *rec[MAX_RECORDS];
    int n;
} records;

/* Every line must be one JSON object. */
static records read_log(const char *p) {
    records rs = {.n = 0};
    FILE *f = fopen(p, "r");
    CHECK(f != NULL);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while (f && (len = getline(&line, &cap, f)) > 0) {
        CHECK(line[len - 1] == '\n');
        line[len - 1] = '\0';
        cJSON *o = cJSON_ParseWithOpts(line, NULL, true);
        CHECK(cJSON_IsObject(o));
        if (!cJSON_IsObject(o)) fprintf(stderr, "not a JSON object: %s\n", line);
        if (o && rs.n < MAX_RECORDS) rs.rec[rs.n++] = o;
        else cJSON_Delete(o);
    }
    free(line);
    if (f) fclose(f);
    return rs;
}

static void free_log(records *rs) {
    for (int i = 0; i < rs->n; i++) cJSON_Delete(rs->rec[i]);
    rs->n = 0;
}

static const cJSON *get(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }
static double num(const cJSON *o, const char *key) {
    const cJSON *v = get(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}
static const char *text(const cJSON *o, const char *key) {
    const cJSON *v = get(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* The k-th record of a type (k from 0), NULL if there is none. */
static const cJSON *nth(const records *rs, const char *type, int k) {
    for (int i = 0; i < rs->n; i++)
        if (!strcmp(text(rs->rec[i], "type"), type) && k-- == 0) return rs->rec[i];
    return NULL;
}
static int count(const records *rs, const char *type) {
    int n = 0;
    for (int i = 0; i < rs->n; i++) n += !strcmp(text(rs->rec[i], "type"), type);
    return n;
}

/* The element of an array whose "name" (and "of", if not NULL) is given. */
static const cJSON *named(const cJSON *array, const char *name, const char *of) {
    const cJSON *e;
    cJSON_ArrayForEach(e, array) if (!strcmp(text(e, "name"), name) && (!of || !strcmp(text(e, "of"), of))) return e;
    return NULL;
}

/* The step record of a step. */
static const cJSON *step_rec(const records *rs, int64_t step) {
    for (int k = 0;; k++) {
        const cJSON *s = nth(rs, "step", k);
        if (!s || num(s, "step") == (double)step) return s;
    }
}
static const cJSON *layer_in(const cJSON *step, const char *name) { return named(get(step, "layers"), name, NULL); }

/* The finding of a kind (and layer, if not NULL) among tg_runlog_findings'. */
static const tg_finding *finding(const tg_finding *f, int n, const char *kind, const char *layer) {
    for (int i = 0; i < n; i++)
        if (!strcmp(f[i].kind, kind) && (!layer || !strcmp(f[i].layer, layer))) return &f[i];
    return NULL;
}

static void print_findings(const tg_finding *f, int n) {
    for (int i = 0; i < n; i++)
        fprintf(stderr, "  %s %s [%s] %s\n", f[i].kind, f[i].layer, f[i].severity, f[i].message);
}

static void set(tg_tensor *x, const float *v) { memcpy(x->data, v, (size_t)x->size * sizeof(float)); }

// ----------------------------------------------------------------------------
// training a model on data in memory, logging every step

typedef struct {
    int n, dim, classes;
    float *x;
    int32_t *y;
} data;

/* Two (or more) classes as Gaussian blobs around distinct centres (spread 0 puts every sample on its centre). */
static data blobs(int n, int dim, int classes, float spread, uint64_t seed) {
    data d = {n, dim, classes, malloc((size_t)n * dim * sizeof(float)), malloc((size_t)n * sizeof(int32_t))};
    for (int i = 0; i < n; i++) {
        d.y[i] = i % classes;
        for (int j = 0; j < dim; j++)
            d.x[i * dim + j] = (j % classes == d.y[i] ? 2.0f : -2.0f) + spread * tg_rand_normal(&seed);
    }
    return d;
}
static void free_data(data *d) { free(d->x), free(d->y); }

/* steps of SGD at lr (plus rise a step) on batches of b in order; the log sees each step before the optimizer. */
static void train_rising(tg_model *m, tg_runlog *log, const data *d, int b, int steps, double lr, double rise) {
    tg_tensor **ps;
    int np = tg_model_params(m, &ps);
    tg_optim *o = tg_optim_sgd(ps, np, (tg_sgd_opts){.lr = lr});
    tg_tape *t = tg_tape_new();
    int32_t labels[256];
    CHECK(o && t && b <= 256);
    for (int s = 0; o && t && s < steps; s++) {
        int start = (s * b) % (d->n - b + 1);
        tg_tensor *x = tg_tensor_tape(t, 2, (int[]){b, d->dim});
        memcpy(x->data, d->x + (size_t)start * d->dim, (size_t)b * d->dim * sizeof(float));
        memcpy(labels, d->y + start, (size_t)b * sizeof *labels);
        tg_tensor *loss = tg_cross_entropy(t, tg_model_forward(m, t, x), labels);
        CHECK(loss != NULL);
        if (!loss) break;
        CHECK_INT(tg_backward(t, loss), 0);
        CHECK_INT(tg_optim_set_lr(o, -1, lr + s * rise), 0);
        CHECK_INT(tg_runlog_step(log, t, s, loss->data[0], NAN, lr + s * rise), 0);
        tg_optim_step(o); /* may report a non-finite gradient: the log is the one under test */
        tg_optim_zero_grad(o);
        tg_tape_reset(t);
    }
    tg_tape_free(t);
    tg_optim_free(o);
}
static void train(tg_model *m, tg_runlog *log, const data *d, int b, int steps, double lr) {
    train_rising(m, log, d, b, steps, lr, 0);
}

// ----------------------------------------------------------------------------
// (1) the records against hand-computed values

/* 0 linear 2->3, 1 relu, 2 linear 3->2; W0 = [[1,0],[0,1],[1,1]], b0 = [0,0,-100] (unit 2 is dead),
 * W2 = [[1,2,3],[0,1,0]], b2 = 0. x = [[1,-1],[-2,3]], loss = sum of the outputs, so dy = 1 at the
 * output and everything below follows by hand:
 *   z0 = x W0^T + b0 = [[1,-1,-100],[-2,3,-99]]      h = relu(z0) = [[1,0,0],[0,3,0]]
 *   dh = dy W2 = [1,3,3] per sample                   dz0 = dh where z0 > 0 = [[1,0,0],[0,3,0]]
 *   dW2 = dy^T h = [[1,3,0],[1,3,0]], |dW2| = sqrt(20); db2 = [2,2], |db2| = sqrt(8)
 *   dW0 = dz0^T x = [[1,-1],[-6,9],[0,0]], |dW0| = sqrt(119); db0 = [1,3,0], |db0| = sqrt(10)
 *   |W0| = 2, |b0| = 100, |W2| = sqrt(15) */
static tg_model *tiny(void) {
    tg_model *m = tg_model_new(1);
    tg_model_linear(m, 2, 3, true);
    tg_model_relu(m);
    tg_model_linear(m, 3, 2, true);
    tg_tensor **p;
    CHECK_INT(tg_model_params(m, &p), 4);
    set(p[0], (float[]){1, 0, 0, 1, 1, 1});
    set(p[1], (float[]){0, 0, -100});
    set(p[2], (float[]){1, 2, 3, 0, 1, 0});
    set(p[3], (float[]){0, 0});
    return m;
}

/* One step of the tiny model on x, logged as step s. */
static void tiny_step(tg_model *m, tg_runlog *log, tg_tape *t, const float *xv, int64_t s, double lr) {
    tg_tensor *x = tg_tensor_tape(t, 2, (int[]){2, 2});
    set(x, xv);
    tg_tensor *loss = tg_sum(t, tg_model_forward(m, t, x));
    CHECK(loss != NULL);
    if (!loss) return;
    CHECK_INT(tg_backward(t, loss), 0);
    CHECK_INT(tg_runlog_step(log, t, s, loss->data[0], 0.5, lr), 0);
    tg_model_zero_grad(m);
    tg_tape_reset(t);
}

static void values(void) {
    tg_model *m = tiny();
    tg_tape *t = tg_tape_new();
    tg_runlog *log = tg_runlog_new(path, m, "\"net\":\"tiny\",\"batch\":2,\"optim\":\"sgd\"",
                                   (tg_runlog_opts){.every = 1, .hist_every = 1, .bins = 4, .window = 1});
    CHECK(log != NULL);
    tiny_step(m, log, t, (float[]){1, -1, -2, 3}, 0, 0.1);
    CHECK_INT(tg_runlog_test(log, 0, 1, 0.75, 0.25), 0);
    CHECK_INT(tg_runlog_close(log), 0);

    records rs = read_log(path);
    CHECK_INT(rs.n, 4); /* run, step, graph, test: the step has nothing to diagnose on its own */
    const cJSON *run = nth(&rs, "run", 0), *st = nth(&rs, "step", 0), *gr = nth(&rs, "graph", 0);
    CHECK(run == rs.rec[0] && st && gr);
    CHECK_INT(num(run, "version"), 1);
    CHECK(!strcmp(text(run, "net"), "tiny"));
    CHECK_INT(num(run, "params"), 6 + 3 + 6 + 2);
    CHECK_INT(num(run, "batch"), 2);
    CHECK(!strcmp(text(run, "optim"), "sgd"));
    CHECK_INT(cJSON_GetArraySize(get(run, "layers")), 3);
    const cJSON *l0 = named(get(run, "layers"), "0", NULL);
    CHECK(!strcmp(text(l0, "kind"), "linear"));
    CHECK(!strcmp(cJSON_GetArrayItem(get(l0, "params"), 1)->valuestring, "0.bias"));

    CHECK_INT(num(st, "step"), 0);
    CHECK_NEAR(num(st, "loss"), 1 + 2 * 3 + 3 * 1 /* sum of h W2^T: [1,0]+[6,3] */, 1e-5);
    CHECK_NEAR(num(st, "acc"), 0.5, 0);
    CHECK_NEAR(num(st, "lr"), 0.1, 0);
    CHECK(num(st, "time") >= 0);
    const cJSON *L0 = layer_in(st, "0"), *L1 = layer_in(st, "1"), *L2 = layer_in(st, "2");
    const cJSON *w0 = named(get(L0, "params"), "0.weight", NULL), *b0 = named(get(L0, "params"), "0.bias", NULL);
    const cJSON *w2 = named(get(L2, "params"), "2.weight", NULL), *b2 = named(get(L2, "params"), "2.bias", NULL);
    CHECK_NEAR(num(w0, "w"), 2, 1e-6);
    CHECK_NEAR(num(w0, "dw"), sqrt(119), 1e-5);
    CHECK_NEAR(num(w0, "update"), 0.1 * sqrt(119) / 2, 1e-6);
    CHECK_NEAR(num(b0, "w"), 100, 1e-4);
    CHECK_NEAR(num(b0, "dw"), sqrt(10), 1e-5);
    CHECK_NEAR(num(w2, "w"), sqrt(15), 1e-5);
    CHECK_NEAR(num(w2, "dw"), sqrt(20), 1e-5);
    CHECK_NEAR(num(w2, "update"), 0.1 * sqrt(20) / sqrt(15), 1e-6);
    CHECK_NEAR(num(b2, "dw"), sqrt(8), 1e-5);
    CHECK(cJSON_IsNull(get(b2, "update"))); /* |w| = 0: no ratio */
    /* outputs: z0 has no zeros, h four of six; RMS of z0 = sqrt((1+1+10000+4+9+9801)/6) */
    CHECK_NEAR(num(get(L0, "act"), "zeros"), 0, 0);
    CHECK_NEAR(num(get(L0, "act"), "rms"), sqrt(19816.0 / 6), 1e-3);
    CHECK_NEAR(num(get(L1, "act"), "zeros"), 4.0 / 6, 1e-6);
    CHECK_NEAR(num(get(L1, "act"), "rms"), sqrt(10.0 / 6), 1e-6);
    /* dy at the outputs: 1 at the last, [1,3,3] per sample at h, dz0 at z0 */
    CHECK_NEAR(num(L2, "dy"), 1, 1e-6);
    CHECK_NEAR(num(L1, "dy"), sqrt(19.0 / 3), 1e-5);
    CHECK_NEAR(num(L0, "dy"), sqrt(10.0 / 6), 1e-5);
    /* and their norms per sample: RMS x sqrt(elements per sample) */
    CHECK_NEAR(num(L2, "dy_norm"), sqrt(2), 1e-5);
    CHECK_NEAR(num(L1, "dy_norm"), sqrt(19), 1e-5);
    CHECK_NEAR(num(L0, "dy_norm"), sqrt(5), 1e-5);
    /* only the relu's output passed a ReLU: unit 2 was 0 for both samples */
    CHECK_NEAR(num(L1, "dead"), 1.0 / 3, 1e-6);
    CHECK_INT(num(L1, "dead_window"), 1);
    CHECK(!get(L0, "dead") && !get(L2, "dead") && !get(L0, "bn") && !get(L0, "saturated"));
    /* histograms, 4 bins: W0 = [1,0,0,1,1,1] on [0,1]; dW0 = [1,-1,-6,9,0,0] on [-6,9] (width 3.75);
     * h = [1,0,0,0,3,0] on [0,3] */
    const cJSON *hw = named(get(st, "hist"), "0.weight", "weight"), *hg = named(get(st, "hist"), "0.weight", "grad");
    const cJSON *ha = named(get(st, "hist"), "1", "act");
    CHECK(hw && hg && ha);
    CHECK_NEAR(num(hw, "lo"), 0, 0);
    CHECK_NEAR(num(hw, "hi"), 1, 0);
    CHECK_NEAR(num(hg, "lo"), -6, 0);
    CHECK_NEAR(num(hg, "hi"), 9, 0);
    int want[3][4] = {{2, 0, 0, 4}, {1, 4, 0, 1}, {4, 1, 0, 1}};
    const cJSON *hs[3] = {hw, hg, ha};
    for (int k = 0; k < 3; k++) {
        const cJSON *c = get(hs[k], "counts");
        CHECK_INT(cJSON_GetArraySize(c), 4);
        int sum = 0;
        for (int b = 0; b < 4 && cJSON_GetArrayItem(c, b); b++) {
            CHECK_INT(cJSON_GetArrayItem(c, b)->valueint, want[k][b]);
            sum += cJSON_GetArrayItem(c, b)->valueint;
        }
        CHECK_INT(sum, 6);
    }
    CHECK_INT(cJSON_GetArraySize(get(st, "hist")), 4 * 2 + 3); /* weight and grad of 4 params, 3 outputs */
    /* z0 = [1,-1,-100,-2,3,-99] on [-100,3]: bins of 25.75, -2 in the last (98/25.75 = 3.8) */
    const cJSON *hz = get(named(get(st, "hist"), "0", "act"), "counts");
    const int want_z[4] = {2, 0, 0, 4};
    for (int b = 0; b < 4; b++)
        CHECK_INT(cJSON_GetArrayItem(hz, b) ? cJSON_GetArrayItem(hz, b)->valueint : -1, want_z[b]);
    /* the graph: linear, relu, linear, sum; inputs named as tape dumps name them */
    const cJSON *nodes = get(gr, "nodes");
    CHECK_INT(cJSON_GetArraySize(nodes), 4);
    const cJSON *n0 = cJSON_GetArrayItem(nodes, 0), *n1 = cJSON_GetArrayItem(nodes, 1);
    CHECK(!strcmp(text(n0, "op"), "linear") && !strcmp(text(n0, "layer"), "0"));
    CHECK(!strcmp(cJSON_GetArrayItem(get(n0, "inputs"), 0)->valuestring, "input"));
    CHECK(!strcmp(cJSON_GetArrayItem(get(n0, "inputs"), 1)->valuestring, "0.weight"));
    CHECK(!strcmp(text(n1, "op"), "relu") && !strcmp(cJSON_GetArrayItem(get(n1, "inputs"), 0)->valuestring, "%0"));
    CHECK_INT(cJSON_GetArrayItem(get(n1, "shape"), 1)->valueint, 3);
    CHECK_NEAR(num(n1, "dy"), sqrt(19.0 / 3), 1e-5);
    CHECK(!strcmp(text(cJSON_GetArrayItem(nodes, 3), "layer"), "")); /* the loss is no layer's */
    const cJSON *te = nth(&rs, "test", 0);
    CHECK_INT(num(te, "epoch"), 1);
    CHECK_NEAR(num(te, "acc"), 0.75, 0);
    CHECK_NEAR(num(te, "loss"), 0.25, 0);
    free_log(&rs);
    tg_tape_free(t);
    tg_model_free(m);
}

/* The dead-unit window: every 4 steps, window 2 (steps 3-4 for the log at 4, 7-8 for 8). Unit 0
 * (x's first feature) fires only at steps 1 and 7, unit 1 always, unit 2 never. Step 1 lies outside
 * every window (not even looked at), 7 inside the last. */
static void dead_window(void) {
    tg_model *m = tiny();
    tg_tape *t = tg_tape_new();
    tg_runlog *log = tg_runlog_new(path, m, "", (tg_runlog_opts){.every = 4, .window = 2, .hist_every = -1});
    for (int s = 0; s <= 8; s++) {
        float a = s == 1 || s == 7 ? 1.0f : -1.0f;
        tiny_step(m, log, t, (float[]){a, 1, a, 1}, s, 0.1);
    }
    tg_finding f[8];
    int nf = tg_runlog_findings(log, f, 8);
    CHECK_INT(tg_runlog_close(log), 0);
    records rs = read_log(path);
    CHECK_INT(count(&rs, "step"), 3);
    CHECK(!get(step_rec(&rs, 4), "hist"));
    const cJSON *d0 = layer_in(step_rec(&rs, 0), "1"), *d4 = layer_in(step_rec(&rs, 4), "1");
    const cJSON *d8 = layer_in(step_rec(&rs, 8), "1");
    CHECK_NEAR(num(d0, "dead"), 2.0 / 3, 1e-6); /* over step 0 alone */
    CHECK_INT(num(d0, "dead_window"), 1);
    CHECK_NEAR(num(d4, "dead"), 2.0 / 3, 1e-6);
    CHECK_INT(num(d4, "dead_window"), 2);
    CHECK_NEAR(num(d8, "dead"), 1.0 / 3, 1e-6);
    /* two thirds dead over a whole window: a warning from step 4 (not at 0, the window was not full) */
    const tg_finding *d = finding(f, nf, "dead_relu", "1");
    CHECK(d != NULL);
    CHECK_INT(nf, 1);
    if (d) {
        CHECK_INT(d->step, 4);
        CHECK(!strcmp(d->severity, "warning"));
        CHECK_MSG(d->message, "2 of 3 units (67%) were 0 for every image of the last 2 steps");
        CHECK_MSG(d->remedy, "He initialisation");
    }
    const cJSON *fr = nth(&rs, "finding", 0);
    CHECK(fr && !strcmp(text(fr, "kind"), "dead_relu") && !strcmp(text(fr, "layer"), "1") && num(fr, "step") == 4);
    CHECK_INT(count(&rs, "finding"), 1);
    free_log(&rs);
    tg_tape_free(t);
    tg_model_free(m);
}

/* Batch norm over (4, 2): channel 0 holds 1,2,3,4 (mean 2.5, biased variance 1.25), channel 1
 * 0,0,4,4 (mean 2, variance 4). Running mean [0.5, 2], variance [4, 1]. Evaluating, the buffers stay:
 *   mean_shift = (|2.5-0.5|/sqrt(4+eps) + 0) / 2 = 0.5, var_ratio = (1.25/4 + 4/1) / 2 = 2.15625.
 * Training, they move first (momentum 0.1, the unbiased variance 5/3 and 16/3): mean [0.7, 2],
 * variance [3.6 + 1/6, 0.9 + 8/15], and the log compares with those. */
static void batch_norm(void) {
    for (int training = 0; training < 2; training++) {
        tg_model *m = tg_model_new(1);
        tg_layer *bn = tg_model_batch_norm(m, 2);
        tg_layer_train(bn, training);
        set(bn->buffers[0], (float[]){0.5f, 2});
        set(bn->buffers[1], (float[]){4, 1});
        tg_tape *t = tg_tape_new();
        tg_runlog *log = tg_runlog_new(path, m, NULL, (tg_runlog_opts){.every = 10});
        tg_tensor *x = tg_tensor_tape(t, 2, (int[]){4, 2});
        set(x, (float[]){1, 0, 2, 0, 3, 4, 4, 4});
        tg_tensor *loss = tg_sum(t, tg_model_forward(m, t, x));
        CHECK(loss && tg_backward(t, loss) == 0);
        CHECK_INT(tg_runlog_step(log, t, 0, 1.0, NAN, 0.1), 0);
        CHECK_INT(tg_runlog_close(log), 0);
        records rs = read_log(path);
        const cJSON *b = get(layer_in(step_rec(&rs, 0), "0"), "bn");
        CHECK(b != NULL);
        CHECK(cJSON_IsNull(get(step_rec(&rs, 0), "acc")));
        double rm0 = training ? 0.7 : 0.5, rv0 = training ? 3.6 + 1.0 / 6 : 4, rv1 = training ? 0.9 + 8.0 / 15 : 1;
        CHECK_NEAR(num(b, "mean_shift"), (2.5 - rm0) / sqrt(rv0 + 1e-5) / 2, 1e-5);
        CHECK_NEAR(num(b, "var_ratio"), (1.25 / rv0 + 4 / rv1) / 2, 1e-5);
        if (!training) CHECK_NEAR(num(b, "var_ratio"), 2.15625, 1e-6);
        free_log(&rs);
        tg_tape_free(t);
        tg_model_free(m);
    }
}

/* dy is this sweep's: a second backward, from the relu's output (layer 1), leaves the last layer
 * off the path, and its gradient is then 0 (the engine zeroes it), not the first sweep's 1. And
 * before any backward there is no dy at all. */
static void this_sweep(void) {
    tg_model *m = tiny();
    tg_tape *t = tg_tape_new();
    tg_runlog *log = tg_runlog_new(path, m, "", (tg_runlog_opts){.every = 1});
    for (int s = 0; s < 2; s++) {
        tg_tensor *x = tg_tensor_tape(t, 2, (int[]){2, 2});
        set(x, (float[]){1, -1, -2, 3});
        tg_tensor *h = tg_layer_forward(tg_model_layer(m, 1), t, tg_layer_forward(tg_model_layer(m, 0), t, x));
        tg_tensor *loss = tg_sum(t, tg_layer_forward(tg_model_layer(m, 2), t, h));
        CHECK(loss != NULL);
        if (s == 0) {
            CHECK(tg_backward(t, loss) == 0);
            CHECK_INT(tg_backward_seed(t, h, (float[]){1, 1, 1, 1, 1, 1}), 0);
        }
        CHECK_INT(tg_runlog_step(log, t, s, loss->data[0], NAN, 0.1), 0);
        tg_tape_reset(t);
    }
    CHECK_INT(tg_runlog_close(log), 0);
    records rs = read_log(path);
    const cJSON *st = step_rec(&rs, 0);
    CHECK_NEAR(num(layer_in(st, "2"), "dy"), 0, 0);
    CHECK_NEAR(num(layer_in(st, "1"), "dy"), 1, 1e-6);
    CHECK_NEAR(num(cJSON_GetArrayItem(get(nth(&rs, "graph", 0), "nodes"), 2), "dy"), 0, 0);
    st = step_rec(&rs, 1);
    for (int i = 0; i < 3; i++) CHECK(!get(cJSON_GetArrayItem(get(st, "layers"), i), "dy"));
    CHECK(get(layer_in(st, "1"), "act") && !get(cJSON_GetArrayItem(get(nth(&rs, "graph", 1), "nodes"), 0), "dy"));
    free_log(&rs);
    tg_tape_free(t);
    tg_model_free(m);
}

// ----------------------------------------------------------------------------
// (2) the diagnosis

/* A net of its findings after steps of training on d, or of one step of a model built by the caller. */
static int diagnose(tg_model *m, const data *d, int steps, double lr, tg_runlog_opts o, tg_finding *f, int max) {
    tg_runlog *log = tg_runlog_new(path, m, "", o);
    CHECK(log != NULL);
    train(m, log, d, 16, steps, lr);
    int n = tg_runlog_findings(log, f, max);
    CHECK(n >= 0 && n <= max);
    CHECK_INT(tg_runlog_close(log), 0);
    return n < max ? n : max;
}

/* A chain of 6 linear layers 4->4 without bias, each weight gain * I: dy is multiplied by gain
 * at each layer from the last back to the first, gain^5 in all. */
static tg_model *chain(float gain) {
    tg_model *m = tg_model_new(1);
    for (int i = 0; i < 6; i++) {
        tg_layer *l = tg_model_linear(m, 4, 4, false);
        for (int k = 0; k < 16; k++) l->params[0]->data[k] = k % 5 == 0 ? gain : 0;
    }
    return m;
}

static void gradient_flow(void) {
    data d = blobs(64, 4, 4, 0.5f, 11);
    for (int i = 0; i < d.n; i++) d.y[i] = (d.y[i] + 1) % 4; /* wrong labels: the chain's logits are no answer */
    tg_finding f[32];
    tg_runlog_opts every = {.every = 1, .hist_every = -1};
    /* 3^5 = 243: exploding, a warning; 0.09^5: vanishing by 1.7e5, an error */
    tg_model *m = chain(3);
    int n = diagnose(m, &d, 1, 0.0, every, f, 32);
    const tg_finding *e = finding(f, n, "exploding_gradient", "0");
    CHECK(e && !strcmp(e->severity, "warning"));
    if (!e || strcmp(e->severity, "warning")) print_findings(f, n);
    if (e) CHECK_MSG(e->message, "grows 243x from layer 5 (linear");
    CHECK(!finding(f, n, "vanishing_gradient", NULL));
    tg_model_free(m);
    m = chain(0.09f);
    n = diagnose(m, &d, 1, 0.0, every, f, 32);
    const tg_finding *v = finding(f, n, "vanishing_gradient", "0");
    CHECK(v && !strcmp(v->severity, "error"));
    if (v) CHECK_MSG(v->message, "falls 1.69e+05x from layer 5"); /* 0.09^-5 */
    if (v) CHECK_MSG(v->message, "from layer 3 back to 0"); /* 0.09^-2 = 123 at layer 3, 0.09^-1 at 4 */
    tg_model_free(m);

    /* a deep plain sigmoid net, default initialisation: 10 x (linear 16->16, sigmoid), then linear 16->4 */
    data d16 = blobs(256, 16, 4, 1.0f, 12);
    m = tg_model_new(3);
    for (int i = 0; i < 10; i++) {
        tg_model_linear(m, 16, 16, true);
        tg_model_sigmoid(m);
    }
    tg_model_linear(m, 16, 4, true);
    n = diagnose(m, &d16, 5, 0.1, (tg_runlog_opts){.every = 1}, f, 32);
    v = finding(f, n, "vanishing_gradient", NULL);
    CHECK(v != NULL);
    if (v) {
        CHECK(!strcmp(v->layer, "0")); /* the first layer, where it is worst */
        CHECK_MSG(v->message, "from layer 20 (linear");
        CHECK_MSG(v->remedy, "ReLU");
    }
    if (!v) print_findings(f, n);
    tg_model_free(m);
    free_data(&d);
    free_data(&d16);
}

static void too_high_lr(void) {
    data d = blobs(128, 4, 3, 1.0f, 21);
    tg_model *m = tg_model_new(4);
    tg_model_linear(m, 4, 16, true);
    tg_model_relu(m);
    tg_model_linear(m, 16, 3, true);
    tg_finding f[32];
    int n = diagnose(m, &d, 12, 20.0, (tg_runlog_opts){.every = 1}, f, 32);
    const tg_finding *h = finding(f, n, "update_ratio_high", NULL), *nf = finding(f, n, "nonfinite", NULL);
    CHECK(h || nf);
    if (h) CHECK_MSG(h->message, "lr*|dw|/|w| = ");
    if (h) CHECK(h->step >= 3); /* never on the first records */
    if (!h && !nf) print_findings(f, n);
    tg_model_free(m);
    free_data(&d);
}

/* Steps of 1e-7 of a weight of norm ~1: update ratios far below 1e-5, flagged from the 4th log step
 * (3 in a row); the same while lr rises (a warm-up) is not. */
static void low_ratio(void) {
    data d = blobs(64, 4, 2, 0.5f, 71);
    tg_model *m = tg_model_new(10);
    tg_model_linear(m, 4, 2, true);
    tg_finding f[8];
    int n = diagnose(m, &d, 8, 1e-7, (tg_runlog_opts){.every = 1}, f, 8);
    const tg_finding *lo = finding(f, n, "update_ratio_low", "0");
    CHECK(lo != NULL);
    if (lo) CHECK_MSG(lo->message, "0.weight: lr*|dw|/|w| = ");
    CHECK(!finding(f, n, "update_ratio_low", NULL) || !strcmp(finding(f, n, "update_ratio_low", NULL)->layer, "0"));
    records rs = read_log(path);
    const cJSON *fr = nth(&rs, "finding", 0);
    CHECK(fr && !strcmp(text(fr, "kind"), "update_ratio_low") && num(fr, "step") == 3);
    free_log(&rs);
    tg_runlog *log = tg_runlog_new(path, m, "", (tg_runlog_opts){.every = 1});
    train_rising(m, log, &d, 16, 8, 1e-7, 1e-8);
    CHECK_INT(tg_runlog_findings(log, f, 8), 0);
    CHECK_INT(tg_runlog_close(log), 0);
    tg_model_free(m);
    free_data(&d);
}

/* A conv layer fused with its relu (conv2d+relu) whose bias keeps 3 of 4 channels below 0. */
static void dead_layer(void) {
    tg_model *m = tg_model_new(5);
    tg_layer *c = tg_model_conv2d(m, 1, 4, 3, 1, 1, true);
    tg_model_relu(m);
    tg_model_flatten(m);
    tg_model_linear(m, 4 * 2 * 2, 2, true);
    set(c->params[1], (float[]){-100, -100, 0.5f, -100});
    data d = blobs(64, 4, 2, 0.5f, 31); /* each sample a 1x2x2 image */
    tg_tape *t = tg_tape_new();
    tg_runlog *log = tg_runlog_new(path, m, "", (tg_runlog_opts){.every = 5});
    int32_t labels[16];
    for (int s = 0; s <= 10; s++) {
        tg_tensor *x = tg_tensor_tape(t, 4, (int[]){16, 1, 2, 2});
        memcpy(x->data, d.x + (s % 4) * 16 * 4, 16 * 4 * sizeof(float));
        memcpy(labels, d.y + (s % 4) * 16, sizeof labels);
        tg_tensor *loss = tg_cross_entropy(t, tg_model_forward(m, t, x), labels);
        CHECK(loss && tg_backward(t, loss) == 0);
        CHECK_INT(tg_runlog_step(log, t, s, loss->data[0], NAN, 0.01), 0);
        tg_model_zero_grad(m);
        tg_tape_reset(t);
    }
    tg_finding f[16];
    int n = tg_runlog_findings(log, f, 16);
    CHECK_INT(tg_runlog_close(log), 0);
    const tg_finding *dr = finding(f, n, "dead_relu", "0");
    CHECK(dr != NULL);
    if (dr) {
        CHECK_MSG(dr->message, "0: 3 of 4 channels (75%) were 0 for every image of the last 5 steps");
        CHECK(!strcmp(dr->severity, "warning"));
        CHECK_INT(dr->step, 10); /* the latest numbers */
    }
    records rs = read_log(path);
    CHECK(nth(&rs, "finding", 0) && num(nth(&rs, "finding", 0), "step") == 5); /* written when first seen */
    CHECK_NEAR(num(layer_in(step_rec(&rs, 10), "0"), "dead"), 0.75, 0);
    CHECK(!get(layer_in(step_rec(&rs, 10), "1"), "act")); /* the relu ran inside the conv's op */
    free_log(&rs);
    tg_tape_free(t);
    tg_model_free(m);
    free_data(&d);
}

static void healthy(void) {
    data d = blobs(512, 2, 2, 0.7f, 41);
    tg_model *m = tg_model_new(6);
    tg_model_linear(m, 2, 16, true);
    tg_model_relu(m);
    tg_model_linear(m, 16, 2, true);
    tg_finding f[32];
    int n = diagnose(m, &d, 300, 0.1, (tg_runlog_opts){.every = 10}, f, 32);
    CHECK_INT(n, 0);
    print_findings(f, n);
    records rs = read_log(path);
    CHECK_INT(count(&rs, "step"), 30);
    CHECK(num(nth(&rs, "step", 29), "loss") < 0.05 * num(nth(&rs, "step", 0), "loss"));
    free_log(&rs);
    tg_model_free(m);
    free_data(&d);
}

static void saturating(void) {
    data d = blobs(64, 4, 2, 0.5f, 51);
    tg_model *m = tg_model_new(7);
    tg_layer *l = tg_model_linear(m, 4, 8, true);
    tg_model_sigmoid(m);
    tg_model_linear(m, 8, 2, true);
    for (int64_t i = 0; i < l->params[0]->size; i++) l->params[0]->data[i] *= 100;
    tg_finding f[32];
    int n = diagnose(m, &d, 2, 0.01, (tg_runlog_opts){.every = 1}, f, 32);
    const tg_finding *s = finding(f, n, "saturated", "1");
    CHECK(s != NULL);
    if (s) CHECK_MSG(s->message, "of the sigmoid outputs are within 0.01 of a bound");
    if (!s) print_findings(f, n);
    records rs = read_log(path);
    CHECK(num(layer_in(step_rec(&rs, 0), "1"), "saturated") >= 0.5);
    CHECK(!get(layer_in(step_rec(&rs, 0), "0"), "saturated"));
    free_log(&rs);
    tg_model_free(m);
    free_data(&d);
}

/* lr 0 and the same batch: the loss stays where it started */
static void plateau(void) {
    data d = blobs(16, 4, 2, 0.5f, 61);
    tg_model *m = tg_model_new(8);
    tg_model_linear(m, 4, 2, true);
    tg_finding f[32];
    int n = diagnose(m, &d, 9, 0.0, (tg_runlog_opts){.every = 1}, f, 32);
    CHECK(!finding(f, n, "loss_plateau", NULL)); /* 10 log steps are the least it judges on */
    tg_runlog *log = tg_runlog_new(path, m, "", (tg_runlog_opts){.every = 1});
    train(m, log, &d, 16, 12, 0.0);
    n = tg_runlog_findings(log, f, 32);
    CHECK_INT(tg_runlog_close(log), 0);
    const tg_finding *p = finding(f, n, "loss_plateau", "");
    CHECK(p != NULL);
    if (p) {
        CHECK_INT(p->step, 11); /* kept up to date */
        CHECK_MSG(p->message, "moved 0.00%");
        CHECK_MSG(p->message, "still 100% of the first");
    }
    CHECK(!finding(f, n, "update_ratio_low", NULL)); /* lr 0 is the caller's choice */
    records rs = read_log(path);
    const cJSON *fr = nth(&rs, "finding", 0);
    CHECK(fr && !strcmp(text(fr, "kind"), "loss_plateau") && num(fr, "step") == 9); /* written when first seen */
    CHECK_INT(count(&rs, "finding"), 1);
    free_log(&rs);
    tg_model_free(m);

    /* the same flat loss at the end of an annealed schedule (lr 1e-4 down to 5.5e-6 over 10 steps,
     * below a tenth of its largest by the 10th, where the plateau is judged): no finding */
    m = tg_model_new(8);
    tg_model_linear(m, 4, 2, true);
    log = tg_runlog_new(path, m, "", (tg_runlog_opts){.every = 1});
    train_rising(m, log, &d, 16, 10, 1e-4, -1.05e-5);
    n = tg_runlog_findings(log, f, 32);
    CHECK_INT(tg_runlog_close(log), 0);
    CHECK(!finding(f, n, "loss_plateau", NULL));
    tg_model_free(m);
    free_data(&d);
}

/* Batch statistics far from the running ones, judged from step 200 on; and a NaN loss on a step
 * that is not a log step gets a record of its own. */
static void drift_and_nan(void) {
    tg_model *m = tg_model_new(9);
    tg_layer *bn = tg_model_batch_norm(m, 2);
    tg_layer_train(bn, false);
    set(bn->buffers[0], (float[]){5, 5});
    tg_tape *t = tg_tape_new();
    tg_runlog *log = tg_runlog_new(path, m, "", (tg_runlog_opts){.every = 100});
    int64_t steps[] = {100, 200, 201, 250};
    for (int k = 0; k < 4; k++) {
        tg_tensor *x = tg_tensor_tape(t, 2, (int[]){4, 2});
        set(x, (float[]){1, 0, 2, 0, 3, 4, 4, 4});
        tg_tensor *loss = tg_sum(t, tg_model_forward(m, t, x));
        CHECK(loss && tg_backward(t, loss) == 0);
        double l = steps[k] == 201 ? NAN : steps[k] == 250 ? INFINITY : 1.0;
        CHECK_INT(tg_runlog_step(log, t, steps[k], l, NAN, 0.1), 0);
        tg_model_zero_grad(m);
        tg_tape_reset(t);
    }
    tg_finding f[16];
    int n = tg_runlog_findings(log, f, 16);
    CHECK_INT(tg_runlog_close(log), 0);
    const tg_finding *b = finding(f, n, "bn_drift", "0");
    CHECK(b != NULL);
    if (b) CHECK_INT(b->step, 201); /* 200 and 201 (latest numbers); not 100 */
    if (b) CHECK_MSG(b->message, "the mean is 2.75 running standard deviations off"); /* (2.5 + 3) / 2 / 1 */
    const tg_finding *nan = finding(f, n, "nonfinite", "");
    CHECK(nan && !strcmp(nan->severity, "error"));
    if (nan) CHECK_MSG(nan->message, "the loss is NaN at step 201");
    records rs = read_log(path);
    CHECK_INT(count(&rs, "step"), 3); /* 100, 200, 201 (the first non-finite loss), not 250 */
    CHECK(step_rec(&rs, 201) && cJSON_IsNull(get(step_rec(&rs, 201), "loss")));
    CHECK(!step_rec(&rs, 250));
    const cJSON *fb = nth(&rs, "finding", 0);
    CHECK(fb && !strcmp(text(fb, "kind"), "bn_drift") && num(fb, "step") == 200); /* not at 100 */
    free_log(&rs);
    tg_tape_free(t);
    tg_model_free(m);
}

// ----------------------------------------------------------------------------
// (3) caller mistakes, (4) escaping

static void mistakes(void) {
    tg_model *m = tiny();
    tg_runlog_opts o = {0};
    CHECK(!tg_runlog_new(path, NULL, "", o));
    CHECK_MSG(tg_last_error(), "runlog_new: model is NULL");
    CHECK(!tg_runlog_new(NULL, m, "", o));
    CHECK_MSG(tg_last_error(), "runlog_new: path is NULL");
    CHECK(!tg_runlog_new(dir, m, "", o)); /* a directory */
    CHECK_INT(tg_last_error_code(), TG_ERR_IO);
    CHECK_MSG(tg_last_error(), "runlog_new: cannot open");
    CHECK(!tg_runlog_new(path, m, "", (tg_runlog_opts){.every = -1}));
    CHECK_MSG(tg_last_error(), "runlog_new: every -1");
    CHECK(!tg_runlog_new(path, m, "", (tg_runlog_opts){.bins = 5000}));
    CHECK_MSG(tg_last_error(), "bins 5000");
    CHECK(!tg_runlog_new(path, m, "", (tg_runlog_opts){.window = -2}));
    CHECK_MSG(tg_last_error(), "window -2");
    CHECK(!tg_runlog_new(path, m, "\"batch\":", o));
    CHECK_MSG(tg_last_error(), "runlog_new: extra_json is not the members of a JSON object");
    CHECK(!tg_runlog_new(path, m, "\"a\":1}, {\"b\":2", o));
    CHECK_INT(tg_last_error_code(), TG_ERR_ARG);
    CHECK(!tg_runlog_new(path, m, "\"layers\":[]", o));
    CHECK_MSG(tg_last_error(), "one of the log's own fields");
    if (access("/dev/full", W_OK) == 0) { /* a write that fails: the run record is flushed at once */
        CHECK(!tg_runlog_new("/dev/full", m, "", o));
        CHECK_INT(tg_last_error_code(), TG_ERR_IO);
        CHECK_MSG(tg_last_error(), "runlog_new: writing /dev/full");
    }
    tg_runlog *log = tg_runlog_new(path, m, "", o);
    CHECK(log != NULL);
    tg_tape *t = tg_tape_new();
    CHECK_INT(tg_runlog_step(NULL, t, 0, 1, 1, 0.1), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "runlog_step: run log is NULL");
    CHECK_INT(tg_runlog_step(log, NULL, 0, 1, 1, 0.1), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "runlog_step: tape is NULL");
    CHECK_INT(tg_runlog_step(log, t, -1, 1, 1, 0.1), TG_ERR_ARG);
    CHECK_INT(tg_runlog_step(log, t, 0, 1, 1, NAN), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "runlog_step: step 0, lr nan");
    CHECK_INT(tg_runlog_step(log, t, 0, 1, 1, 0.1), 0); /* an empty tape: the parameters only */
    CHECK_INT(tg_runlog_test(NULL, 0, 1, 1, 1), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "runlog_test: run log is NULL");
    CHECK_INT(tg_runlog_findings(NULL, NULL, 0), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "runlog_findings");
    CHECK_INT(tg_runlog_findings(log, NULL, 3), TG_ERR_ARG);
    CHECK_INT(tg_runlog_findings(log, NULL, 0), 0);
    CHECK_INT(tg_runlog_close(NULL), 0);
    CHECK_INT(tg_runlog_close(log), 0);
    records rs = read_log(path);
    CHECK_INT(count(&rs, "step"), 1);
    CHECK(!get(layer_in(step_rec(&rs, 0), "1"), "act"));
    free_log(&rs);
    tg_tape_free(t);
    tg_model_free(m);
}

static int odd_shape(tg_node *n, int *ndim, int *shape) {
    *ndim = n->in[0]->ndim;
    for (int i = 0; i < *ndim; i++) shape[i] = n->in[0]->shape[i];
    return 0;
}
static int odd_forward(tg_tape *t, tg_node *n) {
    (void)t;
    memcpy(n->out->data, n->in[0]->data, (size_t)n->out->size * sizeof(float));
    return 0;
}
static int odd_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    for (int64_t i = 0; i < n->out->size; i++) n->in[0]->grad[i] += n->out->grad[i];
    return 0;
}
static const tg_op odd_op = {.name = "id\"\\\n\t", .shape = odd_shape, .forward = odd_forward, .vjp = odd_vjp};
static tg_tensor *odd_layer(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    tg_tensor *y = tg_mul(t, x, l->params[0]);
    return tg_apply(t, &odd_op, &y, 1, NULL);
}

static void escaping(void) {
    tg_model *m = tg_model_new(1);
    tg_layer *l = tg_model_custom(m, "k\"\\\n\x01\xff", odd_layer, NULL); /* a kind is free text */
    tg_tensor *s = tg_layer_param(l, "s", 1, (int[]){3}, TG_PARAM_ONES);
    tg_tensor_set_name(s, "0.\"s\\\n");
    tg_tape *t = tg_tape_new();
    tg_runlog *log = tg_runlog_new(path, m, "\"note\":\"a \\\"b\\\" \\\\ c\\n\"", (tg_runlog_opts){.every = 1});
    CHECK(log != NULL);
    tg_tensor *x = tg_tensor_tape(t, 2, (int[]){2, 3});
    tg_tensor *loss = tg_sum(t, tg_model_forward(m, t, x));
    CHECK(loss && tg_backward(t, loss) == 0);
    CHECK_INT(tg_runlog_step(log, t, 0, NAN, NAN, 0.1), 0);
    CHECK_INT(tg_runlog_close(log), 0);
    records rs = read_log(path); /* every line parsed as one object */
    CHECK(rs.n >= 3);
    const cJSON *run = nth(&rs, "run", 0), *st = nth(&rs, "step", 0), *gr = nth(&rs, "graph", 0);
    CHECK(!strcmp(text(run, "note"), "a \"b\" \\ c\n"));
    CHECK(!strcmp(text(cJSON_GetArrayItem(get(run, "layers"), 0), "kind"), "k\"\\\n\x01?")); /* not UTF-8: '?' */
    CHECK(named(get(layer_in(st, "0"), "params"), "0.\"s\\\n", NULL) != NULL);
    CHECK(cJSON_IsNull(get(st, "loss")));
    CHECK(named(get(st, "hist"), "0.\"s\\\n", "grad") != NULL);
    CHECK(!strcmp(text(cJSON_GetArrayItem(get(gr, "nodes"), 1), "op"), "id\"\\\n\t"));
    CHECK(!strcmp(cJSON_GetArrayItem(get(cJSON_GetArrayItem(get(gr, "nodes"), 0), "inputs"), 1)->valuestring,
                  "0.\"s\\\n"));
    free_log(&rs);
    tg_tape_free(t);
    tg_model_free(m);
}

int main(void) {
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(path, sizeof path, "%s/run.jsonl", dir);
    values();
    dead_window();
    batch_norm();
    this_sweep();
    gradient_flow();
    too_high_lr();
    low_ratio();
    dead_layer();
    healthy();
    saturating();
    plateau();
    drift_and_nan();
    mistakes();
    escaping();
    unlink(path);
    rmdir(dir);
    CHECK_DONE();
}
