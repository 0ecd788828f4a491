/* runlog.c: the run log, values over a whole run as JSON lines, and its
 * diagnosis: what looks wrong, in which layer, with the numbers and the usual
 * remedy. A step is read from the tape (tg_tape_first): a node belongs to the
 * layer its scope names, the layer's output is its last node. Ops are known
 * here only by name and variant ("relu", "conv2d+relu", "sigmoid", "tanh",
 * "batch_norm"), as layers may know them. */
#include "internal.h"
#include "nn_internal.h"
#include "tapegrad_nn.h"
#include "tapegrad_op.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

/* The diagnosis's thresholds (the header says them in words).
 * Gradient flow, judged on the norm of dy per sample (RMS x sqrt(elements per sample)) rather than
 * its RMS: the norm is what a He-initialised ReLU layer keeps from its output back to its input
 * whatever the widths, while the RMS falls with width alone (LeNet's logits to its first conv:
 * 10 to 21,632 elements a sample, a 100x fall in RMS for a net that trains well). Two orders of
 * magnitude is the textbook picture of a deep sigmoid net; a healthy net stays well inside it. */
#define FLOW_RATIO 100.0
#define FLOW_ERROR 1e4
/* Dead units: half the layer doing nothing for a whole window is worth a look; all of it is broken. */
#define DEAD_WARN 0.5
/* Update ratios: ~1e-3 is the usual rule of thumb; 1e-1 means a step moves a weight by a tenth of
 * itself (and above 1 by more than itself), 1e-5 that it barely moves. Judged on RATIO_RUN log
 * steps in a row, never on the first RATIO_SKIP records, so warm-up and one noisy batch are not
 * flagged. */
#define RATIO_HIGH 1e-1
#define RATIO_LOW 1e-5
#define RATIO_RUN 3
#define RATIO_SKIP 3
/* Batch norm: running statistics start at 0 and 1 and follow the batches with momentum 0.1,
 * so early on they lag by construction; 0.9^200 leaves nothing of the start. */
#define BN_FROM_STEP 200
#define BN_SHIFT 1.0
#define BN_RATIO 4.0
/* Saturation: within 0.01 of a bound the sigmoid's slope is below 0.01. */
#define SAT_EDGE 0.01
#define SAT_WARN 0.5
#define SAT_ERROR 0.9
/* Plateau: the means of two runs of PLATEAU_HALF log steps (averaging out batch noise) within 1%,
 * while the loss is still above 5% of the first one (a converged loss is not a plateau) and lr is
 * not annealed below a tenth of its largest (the flat end of a cosine schedule is not one). */
#define PLATEAU_HALF 5
#define PLATEAU_MOVE 0.01
#define PLATEAU_FLOOR 0.05
#define MAX_BINS 4096

typedef struct {
    const tg_layer *l;
    int param0, n_params;     /* its parameters: r->params[param0 ...] */
    const tg_node *out, *bn;  /* this step: its output node, and a batch-norm layer's batch_norm node */
    /* the dead-unit window: per unit (channel or feature) the last step it was non-zero */
    int64_t *alive;
    int64_t units, tracked_from;
    /* measured on a log step (NAN: none) */
    double rms, zeros, dy, dy_norm, dead, mean_shift, var_ratio, saturated; /* dy_norm: per sample */
    int64_t dead_units, dead_steps;
} rl_layer;

typedef struct {
    const tg_tensor *p;
    int layer;
    double w, dw, update;
    int high_run, low_run;    /* log steps in a row above / below the range */
} rl_param;

struct tg_runlog {
    FILE *f;
    char *path;
    const tg_model *m;
    tg_runlog_opts o;
    rl_layer *layers;
    int n_layers;
    rl_param *params;
    int n_params;
    tg_finding *findings;
    int n_findings, cap_findings;
    double losses[2 * PLATEAU_HALF]; /* the last log steps' finite losses, oldest first */
    int64_t loss_steps[2 * PLATEAU_HALF];
    int n_losses;
    double first_loss, max_lr, last_lr; /* last_lr: the previous log step's, -1 before the first */
    int64_t records;          /* step records written */
    bool forced;              /* a step record was written for a non-finite loss off the schedule */
    double t0;
    int io_errno;             /* the first failed write's errno (-1 when errno said nothing) */
};

// ----------------------------------------------------------------------------
// JSON

/* Numbers to 7 significant digits (a float's), so "0.1" is not written 0.10000000149011612. */
static cJSON *num(double v) {
    if (!isfinite(v)) return cJSON_CreateNull();
    char b[32];
    snprintf(b, sizeof b, "%.7g", v);
    return cJSON_CreateNumber(strtod(b, NULL));
}

static bool add(cJSON *o, const char *key, cJSON *v) {
    if (!v) return false;
    if (!o) {
        cJSON_Delete(v);
        return false;
    }
    cJSON_AddItemToObject(o, key, v);
    return true;
}

static bool add_num(cJSON *o, const char *key, double v) { return add(o, key, num(v)); }

/* Bytes that are not UTF-8 become '?': the file stays UTF-8 whatever a name holds. */
static cJSON *str(const char *s) {
    if (!s) s = "";
    size_t n = strlen(s);
    char small[128], *buf = n < sizeof small ? small : tg__malloc(n + 1);
    if (!buf) return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        int len = p[i] < 0x80 ? 1 : (p[i] & 0xe0) == 0xc0 && p[i] >= 0xc2 ? 2 : (p[i] & 0xf0) == 0xe0 ? 3
                : (p[i] & 0xf8) == 0xf0 && p[i] <= 0xf4 ? 4 : 0;
        bool ok = len > 0 && i + (size_t)len <= n;
        for (int k = 1; ok && k < len; k++) ok = (p[i + k] & 0xc0) == 0x80;
        if (ok && len == 3) ok = !(p[i] == 0xe0 && p[i + 1] < 0xa0) && !(p[i] == 0xed && p[i + 1] >= 0xa0);
        if (ok && len == 4) ok = !(p[i] == 0xf0 && p[i + 1] < 0x90) && !(p[i] == 0xf4 && p[i + 1] >= 0x90);
        if (!ok) len = 1, buf[i] = '?';
        else memcpy(buf + i, p + i, (size_t)len);
        i += (size_t)len;
    }
    buf[n] = '\0';
    cJSON *v = cJSON_CreateString(buf);
    if (buf != small) tg__free(buf);
    return v;
}

static bool add_str(cJSON *o, const char *key, const char *s) { return add(o, key, str(s)); }

/* A JSON line: 0, TG_ERR_NOMEM (o incomplete) or TG_ERR_IO. Frees o. */
static int write_record(tg_runlog *r, cJSON *o, bool ok, const char *who) {
    char *s = ok && o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s) return tg_fail(TG_ERR_NOMEM, "%s: out of memory", who);
    errno = 0;
    if (!r->io_errno && (fputs(s, r->f) < 0 || fputc('\n', r->f) == EOF)) r->io_errno = errno ? errno : -1;
    cJSON_free(s);
    if (r->io_errno)
        return tg_fail(TG_ERR_IO, "%s: writing %s: %s", who, r->path,
                       r->io_errno > 0 ? strerror(r->io_errno) : "write error");
    return 0;
}

static int flush(tg_runlog *r, const char *who) {
    errno = 0;
    if (!r->io_errno && fflush(r->f) == EOF) r->io_errno = errno ? errno : -1;
    if (r->io_errno)
        return tg_fail(TG_ERR_IO, "%s: writing %s: %s", who, r->path,
                       r->io_errno > 0 ? strerror(r->io_errno) : "write error");
    return 0;
}

// ----------------------------------------------------------------------------
// the model's layers

/* Listed: layers without children (conv2d, relu, ...) and blocks with parameters of their own. */
static int count_layers(const tg_layer *l) {
    int n = l->n_children == 0 || l->n_params > 0;
    for (int i = 0; i < l->n_children; i++) n += count_layers(l->children[i]);
    return n;
}

static void list_layers(tg_runlog *r, const tg_layer *l, int *k, int *p) {
    if (l->n_children == 0 || l->n_params > 0) {
        rl_layer *L = &r->layers[(*k)++];
        L->l = l, L->param0 = *p, L->n_params = l->n_params, L->tracked_from = -1;
        for (int i = 0; i < l->n_params; i++) r->params[(*p)++] = (rl_param){.p = l->params[i], .layer = *k - 1};
    }
    for (int i = 0; i < l->n_children; i++) list_layers(r, l->children[i], k, p);
}

static int count_params(const tg_layer *l) {
    int n = l->n_children == 0 || l->n_params > 0 ? l->n_params : 0;
    for (int i = 0; i < l->n_children; i++) n += count_params(l->children[i]);
    return n;
}

/* The listed layer a scope belongs to: the deepest whose path is the scope or a prefix of it ending at a '.'. */
static int layer_of(const tg_runlog *r, const char *scope) {
    if (!scope || !scope[0]) return -1;
    size_t n = strlen(scope);
    for (;;) {
        for (int i = 0; i < r->n_layers; i++) {
            const char *p = r->layers[i].l->path;
            if (strlen(p) == n && strncmp(p, scope, n) == 0) return i;
        }
        while (n > 0 && scope[n - 1] != '.') n--;
        if (n-- <= 1) return -1;
    }
}

static bool op_is(const tg_node *n, const char *name) { return n->op && n->op->name && !strcmp(n->op->name, name); }

/* Whether a node's output has passed a ReLU: a relu, or an op with a ReLU fused ("conv2d+relu"). */
static bool relu_fed(const tg_node *n) {
    if (op_is(n, "relu")) return true;
    const char *v = n->op && n->op->variant ? n->op->variant(n) : NULL;
    return v && strstr(v, "relu");
}

/* Each listed layer's output node (its last) and a batch-norm layer's batch_norm node, this step. */
static void map_nodes(tg_runlog *r, const tg_tape *t) {
    for (int i = 0; i < r->n_layers; i++) r->layers[i].out = r->layers[i].bn = NULL;
    const char *last_scope = NULL;
    int k = -1;
    for (const tg_node *n = tg_tape_first(t); n; n = n->next) {
        if (n->scope != last_scope) k = layer_of(r, n->scope), last_scope = n->scope;
        if (k < 0) continue;
        rl_layer *L = &r->layers[k];
        L->out = n;
        if (L->l->type == TG_LAYER_BATCH_NORM && op_is(n, "batch_norm") && !L->bn) L->bn = n;
    }
}

// ----------------------------------------------------------------------------
// measuring

/* A layer's output as (N, units, inner): units are dim 1 (channels of NCHW, features of (N, F)). */
static bool unit_dims(const tg_tensor *y, int64_t *N, int64_t *C, int64_t *inner) {
    if (y->ndim < 1 || y->size < 1) return false;
    *N = y->ndim >= 2 ? y->shape[0] : 1;
    *C = y->ndim >= 2 ? y->shape[1] : y->shape[0];
    *inner = y->size / (*N * *C);
    return true;
}

/* The dead-unit window: marks the units that are non-zero somewhere in this step's output (a NaN
 * counts as non-zero: a broken unit is not a dead one). A channel is scanned only until its first
 * non-zero element. */
static int track_units(rl_layer *L, const tg_tensor *y, int64_t step) {
    int64_t N, C, inner;
    if (!unit_dims(y, &N, &C, &inner)) return 0;
    if (C != L->units) { /* first seen, or the layer's width changed: start again */
        int64_t *a = tg__realloc(L->alive, (size_t)C * sizeof *a);
        if (!a) return tg_fail(TG_ERR_NOMEM, "runlog_step: out of memory");
        for (int64_t c = 0; c < C; c++) a[c] = INT64_MIN; /* never */
        L->alive = a, L->units = C, L->tracked_from = step;
    }
    if (L->tracked_from < 0 || L->tracked_from > step) L->tracked_from = step;
    const float *x = y->data;
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            if (L->alive[c] == step) continue;
            const float *v = x + (n * C + c) * inner;
            for (int64_t i = 0; i < inner; i++)
                if (v[i] != 0.0f) {
                    L->alive[c] = step;
                    break;
                }
        }
    return 0;
}

static double l2(const float *v, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)v[i] * v[i];
    return sqrt(s);
}

static double rms(const float *v, int64_t n) { return n ? l2(v, n) / sqrt((double)n) : NAN; }

/* The gradient at a node's output, if the sweep reached it. */
static const float *grad_of(const tg_node *n) {
    return n && n->out->grad && !n->out->grad_unset ? n->out->grad : NULL;
}

/* mean over channels of |batch mean - running mean| / sqrt(running var + eps), and of batch var /
 * running var (the biased variance, the one the batch is normalised with; channels whose running
 * variance is not positive are left out of the ratio). */
static void bn_stats(rl_layer *L) {
    const tg_tensor *x = L->bn->in[0], *rm = L->l->buffers[0], *rv = L->l->buffers[1];
    int64_t N, C, inner;
    if (!unit_dims(x, &N, &C, &inner) || x->ndim < 2 || C != rm->size || C != rv->size) return;
    double eps = L->l->attr.batch_norm.eps, shift = 0, ratio = 0;
    int64_t counted = 0, m = N * inner;
    for (int64_t c = 0; c < C; c++) {
        double s = 0, q = 0;
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < inner; i++) s += x->data[(n * C + c) * inner + i];
        double mean = s / (double)m;
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < inner; i++) {
                double d = x->data[(n * C + c) * inner + i] - mean;
                q += d * d;
            }
        shift += fabs(mean - rm->data[c]) / sqrt((double)rv->data[c] + eps);
        if (rv->data[c] > 0) ratio += q / (double)m / rv->data[c], counted++;
    }
    L->mean_shift = shift / (double)C;
    L->var_ratio = counted ? ratio / (double)counted : NAN;
}

static void measure(tg_runlog *r, int64_t step, double lr) {
    for (int i = 0; i < r->n_params; i++) {
        rl_param *P = &r->params[i];
        P->w = l2(P->p->data, P->p->size);
        P->dw = P->p->grad ? l2(P->p->grad, P->p->size) : NAN;
        P->update = P->w > 0 ? lr * P->dw / P->w : NAN;
    }
    for (int i = 0; i < r->n_layers; i++) {
        rl_layer *L = &r->layers[i];
        L->rms = L->zeros = L->dy = L->dy_norm = L->dead = L->mean_shift = L->var_ratio = L->saturated = NAN;
        L->dead_units = L->dead_steps = 0;
        if (!L->out) continue;
        const tg_tensor *y = L->out->out;
        int64_t zeros = 0, sat = 0;
        bool sigmoid = op_is(L->out, "sigmoid"), tanh_ = op_is(L->out, "tanh");
        for (int64_t j = 0; j < y->size; j++) {
            float v = y->data[j];
            zeros += v == 0.0f;
            sat += sigmoid ? v < SAT_EDGE || v > 1 - SAT_EDGE : tanh_ ? fabsf(v) > 1 - SAT_EDGE : 0;
        }
        L->rms = rms(y->data, y->size);
        L->zeros = y->size ? (double)zeros / (double)y->size : NAN;
        if ((sigmoid || tanh_) && y->size) L->saturated = (double)sat / (double)y->size;
        const float *g = grad_of(L->out);
        if (g) L->dy = rms(g, y->size), L->dy_norm = L->dy * sqrt((double)y->size / (y->ndim >= 2 ? y->shape[0] : 1));
        if (relu_fed(L->out) && L->alive && L->tracked_from >= 0) {
            int64_t from = step - r->o.window + 1; /* the window: steps from..step */
            for (int64_t c = 0; c < L->units; c++) L->dead_units += L->alive[c] < from;
            L->dead = (double)L->dead_units / (double)L->units;
            L->dead_steps = step - (L->tracked_from > from ? L->tracked_from : from) + 1;
        }
        if (L->bn) bn_stats(L);
    }
}

// ----------------------------------------------------------------------------
// records

static cJSON *histogram(const char *name, const char *of, const float *v, int64_t n, int bins) {
    float lo = INFINITY, hi = -INFINITY;
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) bad++;
        else lo = v[i] < lo ? v[i] : lo, hi = v[i] > hi ? v[i] : hi;
    }
    int64_t counts[MAX_BINS] = {0};
    double scale = hi > lo ? bins / ((double)hi - lo) : 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) continue;
        int64_t b = (int64_t)(((double)v[i] - lo) * scale);
        counts[b < 0 ? 0 : b >= bins ? bins - 1 : b]++;
    }
    cJSON *h = cJSON_CreateObject(), *c = cJSON_CreateArray();
    bool ok = add_str(h, "name", name) && add_str(h, "of", of) && add_num(h, "lo", bad < n ? lo : NAN) &&
              add_num(h, "hi", bad < n ? hi : NAN) && add(h, "counts", c);
    for (int b = 0; ok && b < bins; b++) ok = cJSON_AddItemToArray(c, cJSON_CreateNumber((double)counts[b]));
    if (ok && bad) ok = add_num(h, "nonfinite", (double)bad); /* what counts leave out */
    if (!ok) cJSON_Delete(h);
    return ok ? h : NULL;
}

static bool arr_add(cJSON *a, cJSON *v) { return v && a && cJSON_AddItemToArray(a, v); }

static int write_step(tg_runlog *r, int64_t step, double loss, double acc, double lr) {
    cJSON *o = cJSON_CreateObject(), *layers = cJSON_CreateArray();
    bool ok = add_str(o, "type", "step") && add_num(o, "step", (double)step) && add_num(o, "loss", loss) &&
              add_num(o, "acc", acc) && add_num(o, "lr", lr) && add_num(o, "time", tg__now() - r->t0) &&
              add(o, "layers", layers);
    for (int i = 0; ok && i < r->n_layers; i++) {
        const rl_layer *L = &r->layers[i];
        cJSON *e = cJSON_CreateObject(), *ps = cJSON_CreateArray();
        ok = arr_add(layers, e) && add_str(e, "name", L->l->path) && add_str(e, "kind", L->l->kind) &&
             add(e, "params", ps);
        for (int k = 0; ok && k < L->n_params; k++) {
            const rl_param *P = &r->params[L->param0 + k];
            cJSON *p = cJSON_CreateObject();
            ok = arr_add(ps, p) && add_str(p, "name", P->p->name) && add_num(p, "w", P->w) && add_num(p, "dw", P->dw) &&
                 add_num(p, "update", P->update);
        }
        if (ok && L->out) {
            cJSON *a = cJSON_CreateObject();
            ok = add(e, "act", a) && add_num(a, "rms", L->rms) && add_num(a, "zeros", L->zeros);
        }
        if (ok && !isnan(L->dy)) ok = add_num(e, "dy", L->dy) && add_num(e, "dy_norm", L->dy_norm);
        if (ok && !isnan(L->dead)) ok = add_num(e, "dead", L->dead) && add_num(e, "dead_window", (double)L->dead_steps);
        if (ok && L->bn) {
            cJSON *b = cJSON_CreateObject();
            ok = add(e, "bn", b) && add_num(b, "mean_shift", L->mean_shift) && add_num(b, "var_ratio", L->var_ratio);
        }
        if (ok && !isnan(L->saturated)) ok = add_num(e, "saturated", L->saturated);
    }
    if (ok && r->o.hist_every > 0 && r->records % r->o.hist_every == 0) {
        cJSON *h = cJSON_CreateArray();
        ok = add(o, "hist", h);
        for (int i = 0; ok && i < r->n_params; i++) {
            const tg_tensor *p = r->params[i].p;
            ok = arr_add(h, histogram(p->name, "weight", p->data, p->size, r->o.bins)) &&
                 (!p->grad || arr_add(h, histogram(p->name, "grad", p->grad, p->size, r->o.bins)));
        }
        for (int i = 0; ok && i < r->n_layers; i++) {
            const rl_layer *L = &r->layers[i];
            if (L->out) ok = arr_add(h, histogram(L->l->path, "act", L->out->out->data, L->out->out->size, r->o.bins));
        }
    }
    r->records++;
    return write_record(r, o, ok, "runlog_step");
}

static int write_graph(tg_runlog *r, const tg_tape *t, int64_t step) {
    cJSON *o = cJSON_CreateObject(), *nodes = cJSON_CreateArray();
    bool ok = add_str(o, "type", "graph") && add_num(o, "step", (double)step) && add(o, "nodes", nodes);
    for (const tg_node *n = tg_tape_first(t); ok && n; n = n->next) {
        char op[96], label[TG_NAME_LEN];
        const char *v = n->op->variant ? n->op->variant(n) : NULL;
        snprintf(op, sizeof op, "%s%s%s", n->op->name, v ? "+" : "", v ? v : "");
        cJSON *e = cJSON_CreateObject(), *shape = cJSON_CreateArray(), *in = cJSON_CreateArray();
        ok = arr_add(nodes, e) && add_num(e, "id", n->id) && add_str(e, "op", op) && add_str(e, "layer", n->scope) &&
             add(e, "shape", shape) && add(e, "inputs", in);
        for (int k = 0; ok && k < n->out->ndim; k++) ok = arr_add(shape, cJSON_CreateNumber(n->out->shape[k]));
        for (int k = 0; ok && k < n->n_in; k++) ok = arr_add(in, str(tg__label(n->in[k], label, sizeof label)));
        const float *g = grad_of(n);
        ok = ok && add_num(e, "fwd_ms", 1e3 * n->t_forward) && add_num(e, "bwd_ms", 1e3 * n->t_backward) &&
             (!g || add_num(e, "dy", rms(g, n->out->size))) &&
             (!n->op->flops || add_num(e, "flops", (double)n->op->flops(n)));
    }
    return write_record(r, o, ok, "runlog_step");
}

// ----------------------------------------------------------------------------
// the diagnosis

/* Records a finding: a new kind and layer is written at once; a known one takes the latest numbers
 * (and keeps the worse severity). Returns 0 or a negative TG_ERR_*. */
#if defined(__GNUC__)
__attribute__((format(printf, 7, 8)))
#endif
static int find(tg_runlog *r, int64_t step, const char *kind, const char *layer, bool error, const char *remedy,
                const char *fmt, ...) {
    tg_finding *f = NULL;
    for (int i = 0; i < r->n_findings && !f; i++)
        if (!strcmp(r->findings[i].kind, kind) && !strcmp(r->findings[i].layer, layer)) f = &r->findings[i];
    bool is_new = !f;
    if (is_new) {
        if (r->n_findings == r->cap_findings) {
            int cap = r->cap_findings ? 2 * r->cap_findings : 8;
            tg_finding *p = tg__realloc(r->findings, (size_t)cap * sizeof *p);
            if (!p) return tg_fail(TG_ERR_NOMEM, "runlog_step: out of memory");
            r->findings = p, r->cap_findings = cap;
        }
        f = &r->findings[r->n_findings++];
        memset(f, 0, sizeof *f);
        snprintf(f->kind, sizeof f->kind, "%s", kind);
        snprintf(f->layer, sizeof f->layer, "%s", layer);
    }
    if (is_new || error) snprintf(f->severity, sizeof f->severity, "%s", error ? "error" : "warning");
    snprintf(f->remedy, sizeof f->remedy, "%s", remedy);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->message, sizeof f->message, fmt, ap);
    va_end(ap);
    f->step = step;
    if (!is_new) return 0;
    cJSON *o = cJSON_CreateObject();
    bool ok = add_str(o, "type", "finding") && add_num(o, "step", (double)step) && add_str(o, "kind", f->kind) &&
              add_str(o, "layer", f->layer) && add_str(o, "severity", f->severity) &&
              add_str(o, "message", f->message) && add_str(o, "remedy", f->remedy);
    return write_record(r, o, ok, "runlog_step");
}

static const char *const REMEDY_NONFINITE = "lower the learning rate, clip gradients (tg_clip_grad_norm), check the "
                                            "inputs; tg_tape_check_finite names the first op that made one";

static int diagnose_flow(tg_runlog *r, int64_t step) {
    int first = -1, last = -1;
    for (int i = 0; i < r->n_layers; i++)
        if (isfinite(r->layers[i].dy_norm) && r->layers[i].dy_norm > 0) last = i, first = first < 0 ? i : first;
    if (first < 0 || first == last) return 0;
    const rl_layer *F = &r->layers[first], *L = &r->layers[last];
    double ratio = L->dy_norm / F->dy_norm; /* > 1: falls from the last layer back to the first */
    if (ratio >= FLOW_RATIO) {
        /* where it crossed: the first layer, from the loss back, below 1/FLOW_RATIO of the last one's */
        int below = first;
        for (int i = last; i >= first; i--) {
            double d = r->layers[i].dy_norm;
            if (isfinite(d) && d > 0 && L->dy_norm / d >= FLOW_RATIO) {
                below = i;
                break;
            }
        }
        return find(r, step, "vanishing_gradient", F->l->path, ratio >= FLOW_ERROR,
                    "use ReLU rather than sigmoid or tanh, He initialisation (tg_model_init), batch norm, or residual "
                    "connections",
                    "the gradient's norm per sample falls %.3gx from layer %s (%s, %.2e) back to layer %s (%s, %.2e); "
                    "below 1/%g of the last layer's %s%s%s%s", ratio, L->l->path, L->l->kind, L->dy_norm, F->l->path,
                    F->l->kind, F->dy_norm,
                    FLOW_RATIO, below == first ? "at layer " : "from layer ", r->layers[below].l->path,
                    below == first ? "" : " back to ", below == first ? "" : F->l->path);
    }
    if (1 / ratio >= FLOW_RATIO)
        return find(r, step, "exploding_gradient", F->l->path, 1 / ratio >= FLOW_ERROR,
                    "lower the learning rate, clip gradients (tg_clip_grad_norm), use batch norm or smaller initial "
                    "weights", "the gradient's norm per sample grows %.3gx from layer %s (%s, %.2e) back to layer %s "
                    "(%s, %.2e)", 1 / ratio, L->l->path, L->l->kind, L->dy_norm, F->l->path, F->l->kind, F->dy_norm);
    return 0;
}

static int diagnose(tg_runlog *r, int64_t step, double loss, double lr) {
    int rc = 0;
    if (!isfinite(loss))
        rc = find(r, step, "nonfinite", "", true, REMEDY_NONFINITE, "the loss is %s at step %lld",
                  isnan(loss) ? "NaN" : loss > 0 ? "+Inf" : "-Inf", (long long)step);
    if (lr > r->max_lr) r->max_lr = lr;
    if (isnan(r->first_loss) && isfinite(loss)) r->first_loss = loss;
    /* small steps are no fault while lr warms up (it rose since the last log step), when the schedule
     * has annealed it (or it is 0), or once the loss has converged */
    bool settled = lr <= 0 || lr > r->last_lr || lr < 0.1 * r->max_lr ||
                   (isfinite(loss) && loss < PLATEAU_FLOOR * r->first_loss);
    r->last_lr = lr;
    for (int i = 0; i < r->n_params && !rc; i++) {
        rl_param *P = &r->params[i];
        const char *layer = r->layers[P->layer].l->path;
        if (!isfinite(P->w) || (P->p->grad && !isfinite(P->dw))) {
            rc = find(r, step, "nonfinite", layer, true, REMEDY_NONFINITE, "%s: the %s holds a NaN or an Inf at step "
                      "%lld (|w| %.3g, |dw| %.3g)", P->p->name, isfinite(P->w) ? "gradient" : "weight", (long long)step,
                      P->w, P->dw);
            continue;
        }
        /* weights only (2 or more dimensions, as tg_params_split_decay tells them): biases and gains
         * start at 0 or 1 and follow other rules */
        if (P->p->ndim < 2 || !P->p->requires_grad || !isfinite(P->update)) {
            P->high_run = P->low_run = 0;
            continue;
        }
        P->high_run = P->update > RATIO_HIGH ? P->high_run + 1 : 0;
        P->low_run = P->update < RATIO_LOW && !settled ? P->low_run + 1 : 0;
        if (r->records <= RATIO_SKIP) continue;
        if (P->high_run >= RATIO_RUN)
            rc = find(r, step, "update_ratio_high", layer, P->update > 1,
                      "lower the learning rate (or warm it up), or clip gradients (tg_clip_grad_norm)",
                      "%s: lr*|dw|/|w| = %.2e (lr %.3g, |dw| %.3g, |w| %.3g), above %g for %d log steps in a row; "
                      "about 1e-3 is usual", P->p->name, P->update, lr, P->dw, P->w, RATIO_HIGH, P->high_run);
        else if (P->low_run >= RATIO_RUN)
            rc = find(r, step, "update_ratio_low", layer, false,
                      "raise the learning rate; check that the gradient reaches this layer (vanishing gradients, dead "
                      "units) and that the weights are not too large",
                      "%s: lr*|dw|/|w| = %.2e (lr %.3g, |dw| %.3g, |w| %.3g), below %g for %d log steps in a row; "
                      "about 1e-3 is usual", P->p->name, P->update, lr, P->dw, P->w, RATIO_LOW, P->low_run);
    }
    if (!rc) rc = diagnose_flow(r, step);
    for (int i = 0; i < r->n_layers && !rc; i++) {
        const rl_layer *L = &r->layers[i];
        const char *path = L->l->path;
        if (!isnan(L->dead) && L->dead >= DEAD_WARN && L->dead_steps >= r->o.window)
            rc = find(r, step, "dead_relu", path, L->dead_units == L->units,
                      "lower the learning rate, use He initialisation (tg_model_init) or a leaky activation; look for "
                      "a large negative bias",
                      "%s: %lld of %lld %s (%.0f%%) were 0 for every image of the last %lld steps", path,
                      (long long)L->dead_units, (long long)L->units, L->out->out->ndim > 2 ? "channels" : "units",
                      100 * L->dead, (long long)L->dead_steps);
        bool shifted = L->mean_shift > BN_SHIFT, spread = L->var_ratio > BN_RATIO || L->var_ratio < 1 / BN_RATIO;
        if (!rc && step >= BN_FROM_STEP && (shifted || spread))
            rc = find(r, step, "bn_drift", path,
                      L->mean_shift > 3 * BN_SHIFT || L->var_ratio > BN_RATIO * BN_RATIO ||
                          L->var_ratio < 1 / (BN_RATIO * BN_RATIO),
                      "larger or shuffled batches, a lower learning rate (the statistics move faster than the running "
                      "average follows), or the same input normalisation in training and evaluation",
                      "%s: the batch statistics are far from the running ones: the mean is %.3g running standard "
                      "deviations off, the variance %.3g times the running one (over the channels)", path,
                      L->mean_shift, L->var_ratio);
        if (!rc && !isnan(L->saturated) && L->saturated >= SAT_WARN)
            rc = find(r, step, "saturated", path, L->saturated >= SAT_ERROR,
                      "smaller initial weights (Xavier), normalised inputs, batch norm before the activation, or ReLU",
                      "%s: %.0f%% of the %s outputs are within %g of a bound, where the gradient is nearly 0", path,
                      100 * L->saturated, L->out->op->name, SAT_EDGE);
    }
    if (!rc && isfinite(loss)) {
        if (r->n_losses == 2 * PLATEAU_HALF) {
            memmove(r->losses, r->losses + 1, (2 * PLATEAU_HALF - 1) * sizeof *r->losses);
            memmove(r->loss_steps, r->loss_steps + 1, (2 * PLATEAU_HALF - 1) * sizeof *r->loss_steps);
            r->n_losses--;
        }
        r->losses[r->n_losses] = loss, r->loss_steps[r->n_losses++] = step;
        double old = 0, now = 0;
        for (int i = 0; i < PLATEAU_HALF; i++) old += r->losses[i], now += r->losses[PLATEAU_HALF + i];
        old /= PLATEAU_HALF, now /= PLATEAU_HALF;
        double moved = fabs(now - old) / fabs(old);
        /* not once the schedule has annealed lr below a tenth of its largest: a flat end is its purpose */
        if (r->n_losses == 2 * PLATEAU_HALF && moved < PLATEAU_MOVE && now > PLATEAU_FLOOR * r->first_loss &&
            !(lr < 0.1 * r->max_lr))
            rc = find(r, step, "loss_plateau", "", false,
                      "raise the learning rate or warm it up, check the labels and inputs, look for dead or saturated "
                      "layers; a larger model if it underfits",
                      "the loss's mean moved %.2f%% (%.4g to %.4g) between the %d log steps to step %lld and the %d to "
                      "step %lld, still %.0f%% of the first (%.4g)", 100 * moved, old, now, PLATEAU_HALF,
                      (long long)r->loss_steps[PLATEAU_HALF - 1], PLATEAU_HALF, (long long)step,
                      100 * now / r->first_loss, r->first_loss);
    }
    return rc;
}

// ----------------------------------------------------------------------------
// the API

static void runlog_free(tg_runlog *r) {
    if (!r) return;
    for (int i = 0; i < r->n_layers; i++) tg__free(r->layers[i].alive);
    tg__free(r->layers), tg__free(r->params), tg__free(r->findings), tg__free(r->path);
    tg__free(r);
}

/* The caller's members, checked by parsing them as an object: NULL (and a message) if they are not. */
static cJSON *parse_extra(const char *extra) {
    size_t n = strlen(extra);
    char *text = tg__malloc(n + 3);
    if (!text) {
        tg_fail(TG_ERR_NOMEM, "runlog_new: out of memory");
        return NULL;
    }
    text[0] = '{', memcpy(text + 1, extra, n), text[n + 1] = '}', text[n + 2] = '\0';
    cJSON *o = cJSON_ParseWithOpts(text, NULL, true);
    tg__free(text);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        tg_fail(TG_ERR_ARG, "runlog_new: extra_json is not the members of a JSON object (\"\\\"batch\\\":64,...\"): "
                "%.80s", extra);
        return NULL;
    }
    for (const cJSON *e = o->child; e; e = e->next)
        if (!e->string || !strcmp(e->string, "type") || !strcmp(e->string, "version") ||
            !strcmp(e->string, "params") || !strcmp(e->string, "layers")) {
            tg_fail(TG_ERR_ARG, "runlog_new: extra_json names \"%s\", one of the log's own fields", e->string);
            cJSON_Delete(o);
            return NULL;
        }
    return o;
}

static int write_run(tg_runlog *r, cJSON *extra) {
    const cJSON *net = cJSON_GetObjectItemCaseSensitive(extra, "net");
    cJSON *o = cJSON_CreateObject(), *layers = cJSON_CreateArray();
    bool ok = add_str(o, "type", "run") && add_num(o, "version", 1) &&
              add_str(o, "net", cJSON_IsString(net) ? net->valuestring : "") &&
              add_num(o, "params", (double)tg_model_param_count(r->m)) && add(o, "layers", layers);
    for (int i = 0; ok && i < r->n_layers; i++) {
        const rl_layer *L = &r->layers[i];
        cJSON *e = cJSON_CreateObject(), *ps = cJSON_CreateArray();
        ok = arr_add(layers, e) && add_str(e, "name", L->l->path) && add_str(e, "kind", L->l->kind) &&
             add(e, "params", ps);
        for (int k = 0; ok && k < L->n_params; k++) ok = arr_add(ps, str(r->params[L->param0 + k].p->name));
    }
    while (ok && extra->child) { /* the caller's members, moved over in order ("net" is written above) */
        cJSON *e = cJSON_DetachItemViaPointer(extra, extra->child);
        if (!strcmp(e->string, "net") && cJSON_IsString(e)) cJSON_Delete(e);
        else cJSON_AddItemToObject(o, e->string, e);
    }
    return write_record(r, o, ok, "runlog_new");
}

tg_runlog *tg_runlog_new(const char *path, const tg_model *m, const char *extra_json, tg_runlog_opts o) {
    if (!path || !path[0] || !m) {
        tg_fail(TG_ERR_ARG, "runlog_new: %s", !m ? "model is NULL" : !path ? "path is NULL" : "path is empty");
        return NULL;
    }
    if (o.every < 0 || o.bins < 0 || o.bins > MAX_BINS || o.window < 0) {
        tg_fail(TG_ERR_ARG, "runlog_new: every %d, bins %d, window %d: need every >= 0, bins in [0, %d] and window "
                ">= 0 (0: the default)", o.every, o.bins, o.window, MAX_BINS);
        return NULL;
    }
    o.every = o.every ? o.every : 50;
    o.hist_every = o.hist_every ? o.hist_every : 4;
    o.bins = o.bins ? o.bins : 32;
    o.window = o.window ? o.window : o.every;
    cJSON *extra = parse_extra(extra_json ? extra_json : "");
    if (!extra) return NULL;
    tg_runlog *r = tg__calloc(1, sizeof *r);
    int nl = 0, np = 0;
    for (int i = 0; i < tg_model_layer_count(m); i++)
        nl += count_layers(tg_model_layer(m, i)), np += count_params(tg_model_layer(m, i));
    if (r) {
        r->layers = tg__calloc((size_t)(nl ? nl : 1), sizeof *r->layers);
        r->params = tg__calloc((size_t)(np ? np : 1), sizeof *r->params);
        r->path = tg__malloc(strlen(path) + 1);
    }
    if (!r || !r->layers || !r->params || !r->path) {
        cJSON_Delete(extra);
        runlog_free(r);
        tg_fail(TG_ERR_NOMEM, "runlog_new: out of memory");
        return NULL;
    }
    memcpy(r->path, path, strlen(path) + 1);
    r->m = m, r->o = o, r->first_loss = NAN, r->last_lr = -1, r->t0 = tg__now();
    int k = 0, p = 0;
    for (int i = 0; i < tg_model_layer_count(m); i++) list_layers(r, tg_model_layer(m, i), &k, &p);
    r->n_layers = k, r->n_params = p;
    errno = 0;
    if (!(r->f = fopen(path, "w"))) {
        int e = errno;
        cJSON_Delete(extra);
        runlog_free(r);
        tg_fail(TG_ERR_IO, "runlog_new: cannot open %s for writing: %s", path, e ? strerror(e) : "unknown error");
        return NULL;
    }
    int rc = write_run(r, extra);
    cJSON_Delete(extra);
    if (rc == 0) rc = flush(r, "runlog_new");
    if (rc < 0) {
        fclose(r->f);
        runlog_free(r);
        return NULL;
    }
    return r;
}

int tg_runlog_step(tg_runlog *r, const tg_tape *t, int64_t step, double loss, double acc, double lr) {
    if (!r || !t) return tg_fail(TG_ERR_ARG, "runlog_step: %s is NULL", !r ? "run log" : "tape");
    if (step < 0 || !isfinite(lr) || lr < 0)
        return tg_fail(TG_ERR_ARG, "runlog_step: step %lld, lr %g: need step >= 0 and lr finite and >= 0",
                       (long long)step, lr);
    bool log = step % r->o.every == 0;
    if (!isfinite(loss) && !log && !r->forced) log = r->forced = true; /* say when it happened, once */
    int64_t to_log = (r->o.every - step % r->o.every) % r->o.every; /* steps to the next log step */
    bool window = to_log < r->o.window;
    if (!log && !window) return 0;
    map_nodes(r, t);
    for (int i = 0; i < r->n_layers; i++) {
        rl_layer *L = &r->layers[i];
        if (L->out && relu_fed(L->out) && track_units(L, L->out->out, step) < 0) return TG_ERR_NOMEM;
    }
    if (!log) return 0;
    measure(r, step, lr);
    int rc = write_step(r, step, loss, acc, lr);
    if (rc == 0) rc = write_graph(r, t, step);
    if (rc == 0) rc = diagnose(r, step, loss, lr);
    return rc < 0 ? rc : flush(r, "runlog_step");
}

int tg_runlog_test(tg_runlog *r, int64_t step, int epoch, double acc, double loss) {
    if (!r) return tg_fail(TG_ERR_ARG, "runlog_test: run log is NULL");
    if (step < 0) return tg_fail(TG_ERR_ARG, "runlog_test: step %lld: need >= 0", (long long)step);
    cJSON *o = cJSON_CreateObject();
    bool ok = add_str(o, "type", "test") && add_num(o, "step", (double)step) && add_num(o, "epoch", epoch) &&
              add_num(o, "acc", acc) && add_num(o, "loss", loss);
    int rc = write_record(r, o, ok, "runlog_test");
    return rc < 0 ? rc : flush(r, "runlog_test");
}

int tg_runlog_findings(const tg_runlog *r, tg_finding *out, int max) {
    if (!r) return tg_fail(TG_ERR_ARG, "runlog_findings: run log is NULL");
    if (max < 0 || (max > 0 && !out))
        return tg_fail(TG_ERR_ARG, "runlog_findings: max %d%s: need max >= 0 and room for them", max,
                       out ? "" : ", out NULL");
    for (int i = 0; i < r->n_findings && i < max; i++) out[i] = r->findings[i];
    return r->n_findings;
}

int tg_runlog_close(tg_runlog *r) {
    if (!r) return 0;
    errno = 0;
    if (fflush(r->f) == EOF && !r->io_errno) r->io_errno = errno ? errno : -1;
    if (fclose(r->f) == EOF && !r->io_errno) r->io_errno = errno ? errno : -1;
    int rc = r->io_errno ? tg_fail(TG_ERR_IO, "runlog_close: writing %s: %s", r->path,
                                   r->io_errno > 0 ? strerror(r->io_errno) : "write error")
                         : 0;
    runlog_free(r);
    return rc;
}
