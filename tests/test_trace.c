/* test_trace.c: timelines (tg_tape_trace, read back with cJSON) and the arena's bytes by what
 * they hold (tg_tape_memory). */
#include "check.h"
#include "internal.h" /* tg__alloc_count */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Names no JSON writer may pass through as they are: a quote, a backslash, a newline, a
 * control byte, bytes that are not UTF-8 (a stray 0xff or 0x80, a cut-off sequence), and
 * real UTF-8 (é) that must stay. The scope holds no space or control character
 * (tg_tape_set_scope refuses them). */
#define SCOPE "blk\"1\\x\xe2\x82"
#define SCOPE_READ "blk\"1\\x\xef\xbf\xbd\xef\xbf\xbd"
#define WNAME "we\"ird\\na\nme\xff\xc3\xa9\x01"
#define WNAME_READ "we\"ird\\na\nme\xef\xbf\xbd\xc3\xa9\x01"
#define SPAN "optimizer \"step\"\n\x80"
#define SPAN_READ "optimizer \"step\"\n\xef\xbf\xbd"

enum { N = 8, C = 3, H = 32, K = 8, CLASSES = 4, NODES = 7 };
static const char *const node_names[NODES] = {"conv2d",  "batch_norm", "relu",         "max_pool2d",
                                              "reshape", "linear",     "cross_entropy"};

typedef struct {
    tg_tensor *w, *b, *gamma, *beta, *rmean, *rvar, *fw, *fb;
} net;

static tg_tensor *filled(tg_tensor *x, uint64_t *rng, float scale, float add) {
    for (int64_t i = 0; i < x->size; i++) x->data[i] = add + scale * tg_rand_normal(rng);
    return x;
}

static net net_new(void) {
    uint64_t rng = 7;
    net m;
    m.w = filled(tg_param_new(4, (int[]){K, C, 3, 3}), &rng, 0.3f, 0);
    m.b = filled(tg_param_new(1, (int[]){K}), &rng, 0.1f, 0);
    m.gamma = filled(tg_param_new(1, (int[]){K}), &rng, 0.1f, 1);
    m.beta = filled(tg_param_new(1, (int[]){K}), &rng, 0.1f, 0);
    m.rmean = tg_tensor_new(1, (int[]){K});
    m.rvar = filled(tg_tensor_new(1, (int[]){K}), &rng, 0, 1);
    m.fw = filled(tg_param_new(2, (int[]){CLASSES, K * (H / 2) * (H / 2)}), &rng, 0.02f, 0);
    m.fb = filled(tg_param_new(1, (int[]){CLASSES}), &rng, 0.1f, 0);
    tg_tensor_set_name(m.w, WNAME);
    return m;
}

static void net_free(net *m) {
    tg_tensor *ps[] = {m->w, m->b, m->gamma, m->beta, m->rmean, m->rvar, m->fw, m->fb};
    for (int i = 0; i < 8; i++) tg_tensor_free(ps[i]);
}

/* One training step on a fixed batch: forward, backward, and an SGD step in a user span
 * inside the "batch" span. Returns the loss. */
static float train_step(tg_tape *t, net *m) {
    CHECK_INT(tg_tape_span_begin(t, "batch"), 0);
    uint64_t rng = 11;
    tg_tensor *x = filled(tg_tensor_tape(t, 4, (int[]){N, C, H, H}), &rng, 1, 0);
    int32_t labels[N];
    for (int i = 0; i < N; i++) labels[i] = i % CLASSES;
    CHECK_INT(tg_tape_set_scope(t, SCOPE), 0);
    tg_tensor *y = tg_conv2d(t, x, m->w, m->b, 1, 1, 1, 1);
    CHECK_INT(tg_tape_set_scope(t, "bn"), 0);
    y = tg_relu(t, tg_batch_norm(t, y, m->gamma, m->beta, m->rmean, m->rvar, true, 0.1f, 1e-5f));
    CHECK_INT(tg_tape_set_scope(t, NULL), 0);
    y = tg_flatten(t, tg_max_pool2d(t, y, 2, 2, 0));
    tg_tensor *loss = tg_cross_entropy(t, tg_linear(t, y, m->fw, m->fb), labels);
    CHECK(loss != NULL);
    if (!loss) return 0;
    CHECK_INT(tg_backward(t, loss), 0);
    CHECK_INT(tg_tape_span_begin(t, SPAN), 0);
    tg_tensor *ps[] = {m->w, m->b, m->gamma, m->beta, m->fw, m->fb};
    for (int k = 0; k < 6; k++) {
        for (int64_t i = 0; i < ps[k]->size; i++) ps[k]->data[i] -= 0.1f * ps[k]->grad[i];
        tg_tensor_zero_grad(ps[k]);
    }
    CHECK_INT(tg_tape_span_end(t), 0);
    CHECK_INT(tg_tape_span_end(t), 0);
    return loss->data[0];
}

// ----------------------------------------------------------------------------
// reading a trace back

/* The file's bytes, NUL-terminated (caller frees). */
static char *slurp(FILE *f) {
    long len = ftell(f);
    rewind(f);
    char *s = malloc((size_t)len + 1);
    size_t got = fread(s, 1, (size_t)len, f);
    s[got] = '\0';
    return s;
}

/* Well-formed UTF-8 with no control byte but newlines (cJSON checks neither). */
static bool strict_text(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        if (*p < 0x80) {
            if (*p < 0x20 && *p != '\n') return false;
            p++;
            continue;
        }
        int more = *p >= 0xf0 ? 3 : *p >= 0xe0 ? 2 : *p >= 0xc2 ? 1 : 0;
        if (!more || *p > 0xf4) return false;
        for (int i = 1; i <= more; i++)
            if ((p[i] & 0xc0) != 0x80) return false;
        p += more + 1;
    }
    return true;
}

typedef struct {
    const char *ph, *name, *cat;
    int tid;
    int64_t ts, end; /* ns */
    cJSON *args, *obj;
} jev;

static const char *str_of(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double num_of(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static int64_t ns(double us) { return llround(us * 1000); }

/* The events of a parsed trace into ev (at most max); returns how many. */
static int events_of(cJSON *root, jev *ev, int max) {
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "traceEvents"), *e;
    int n = 0;
    cJSON_ArrayForEach(e, arr) {
        if (n == max) break;
        jev *j = &ev[n++];
        j->obj = e;
        j->ph = str_of(e, "ph"), j->name = str_of(e, "name"), j->cat = str_of(e, "cat");
        j->tid = (int)num_of(e, "tid");
        j->ts = ns(num_of(e, "ts"));
        j->end = j->ts + (cJSON_HasObjectItem(e, "dur") ? ns(num_of(e, "dur")) : 0);
        j->args = cJSON_GetObjectItemCaseSensitive(e, "args");
    }
    return n;
}

static int by_tid_ts(const void *pa, const void *pb) {
    const jev *a = *(const jev *const *)pa, *b = *(const jev *const *)pb;
    if (a->tid != b->tid) return a->tid - b->tid;
    if (a->ts != b->ts) return a->ts < b->ts ? -1 : 1;
    return a->end > b->end ? -1 : a->end < b->end; /* the enclosing one first */
}

/* Complete events on each track nest: none partly overlaps another on its track. Returns the violations. */
static int nesting_violations(jev *ev, int n) {
    const jev **x = malloc((size_t)n * sizeof *x);
    int m = 0, bad = 0;
    for (int i = 0; i < n; i++)
        if (!strcmp(ev[i].ph, "X")) x[m++] = &ev[i];
    qsort(x, (size_t)m, sizeof *x, by_tid_ts);
    int64_t stack[64];
    int depth = 0;
    for (int i = 0; i < m; i++) {
        if (i && x[i]->tid != x[i - 1]->tid) depth = 0;
        while (depth && stack[depth - 1] <= x[i]->ts) depth--;
        if (depth && x[i]->end > stack[depth - 1]) bad++;
        if (depth < 64) stack[depth++] = x[i]->end;
    }
    free((void *)x);
    return bad;
}

/* The X event of node id ("%id") in phase cat ("forward", "backward"), or NULL. */
static const jev *node_event(const jev *ev, int n, int id, const char *cat) {
    char want[16];
    snprintf(want, sizeof want, "%%%d", id);
    for (int i = 0; i < n; i++)
        if (!strcmp(ev[i].ph, "X") && !strcmp(ev[i].cat, cat) && !strcmp(str_of(ev[i].args, "node"), want))
            return &ev[i];
    return NULL;
}

// ----------------------------------------------------------------------------

static void trace_of_a_step(void) {
    tg_set_threads(2);
    bool two = tg_get_threads() >= 2; /* built with OpenMP */
    net m = net_new();
    tg_tape *t = tg_tape_new();
    CHECK(!tg_tape_get_trace(t));
    CHECK_INT(tg_tape_set_trace(t, true), 0);
    CHECK(tg_tape_get_trace(t));
    train_step(t, &m); /* the first step: its spans are forgotten by the reset */
    tg_tape_reset(t);
    uint64_t allocs = tg__alloc_count();
    train_step(t, &m);
    CHECK_INT(tg_tape_node_count(t), NODES);
    size_t used = tg_tape_arena_used(t);
    CHECK_INT(tg__alloc_count() - allocs, 0); /* recording worker spans allocates nothing */

    FILE *f = tmpfile();
    CHECK_INT(tg_tape_trace(t, f), 0);
    char *text = slurp(f);
    fclose(f);
    CHECK(strict_text(text));
    cJSON *root = cJSON_Parse(text);
    CHECK(root != NULL);
    if (!root) {
        fprintf(stderr, "not JSON near: %.80s\n", cJSON_GetErrorPtr());
        free(text);
        return;
    }
    CHECK_MSG(str_of(root, "displayTimeUnit"), "ms");
    jev ev[4096];
    int n = events_of(root, ev, 4096);
    CHECK(n < 4096);
    CHECK_INT(nesting_violations(ev, n), 0);

    /* one forward and one VJP per node, named by the op, on the main track */
    int fwd = 0, bwd = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(ev[i].ph, "X")) continue;
        fwd += !strcmp(ev[i].cat, "forward"), bwd += !strcmp(ev[i].cat, "backward");
    }
    CHECK_INT(fwd, NODES);
    CHECK_INT(bwd, NODES);
    const jev *fe[NODES], *be[NODES];
    for (int k = 0; k < NODES; k++) {
        char back[64];
        snprintf(back, sizeof back, "%s backward", node_names[k]);
        fe[k] = node_event(ev, n, k, "forward");
        be[k] = node_event(ev, n, k, "backward");
        CHECK(fe[k] && be[k]);
        if (!fe[k] || !be[k]) return;
        CHECK_MSG(fe[k]->name, node_names[k]);
        CHECK(!strcmp(fe[k]->name, node_names[k]));
        CHECK(!strcmp(be[k]->name, back));
        CHECK_INT(fe[k]->tid, 1);
        CHECK_INT(be[k]->tid, 1);
        if (k) CHECK(fe[k]->ts >= fe[k - 1]->end); /* in the order they ran */
        if (k) CHECK(be[k]->end <= be[k - 1]->ts); /* backward in reverse */
    }
    CHECK(fe[NODES - 1]->end <= be[NODES - 1]->ts);
    /* args: the conv's, by hand: inputs, shapes, 2*27 multiply-adds and a bias add per output */
    const cJSON *a = fe[0]->args;
    CHECK(!strcmp(str_of(a, "layer"), SCOPE_READ));
    CHECK(!strcmp(cJSON_GetArrayItem(cJSON_GetObjectItem(a, "inputs"), 1)->valuestring, WNAME_READ));
    char *dims = cJSON_PrintUnformatted(cJSON_GetObjectItem(a, "Input Dims"));
    CHECK(!strcmp(dims, "[[8,3,32,32],[8,3,3,3],[8]]"));
    free(dims);
    CHECK_INT(num_of(a, "flops"), 2 * 27 * 65536 + 65536);
    CHECK(num_of(a, "GFLOP/s") > 0);
    CHECK(!strcmp(str_of(fe[1]->args, "layer"), "bn"));
    CHECK(!strcmp(str_of(fe[4]->args, "layer"), ""));
    CHECK_INT(num_of(fe[3]->args, "saved bytes"), 8 * 8 * 16 * 16 * 4); /* max_pool2d's argmax */
    { /* the conv's VJP: its own FLOP count, bytes and kernel, as the tape holds them */
        const jev *cb = node_event(ev, n, 0, "backward");
        const tg_node *conv = tg_tape_first(t);
        CHECK(cb && conv->op->flops_backward);
        if (cb && conv->op->flops_backward) {
            CHECK_INT(num_of(cb->args, "flops"), conv->op->flops_backward(conv));
            CHECK(num_of(cb->args, "bytes") > 0 && num_of(cb->args, "FLOP/byte") > 0);
            CHECK(conv->kernel_backward && !strcmp(str_of(cb->args, "kernel"), conv->kernel_backward));
            CHECK(conv->kernel_forward && !strcmp(str_of(a, "kernel"), conv->kernel_forward));
        }
    }

    /* a flow from each forward to its VJP */
    int starts = 0, finishes = 0;
    for (int i = 0; i < n; i++) {
        bool s = !strcmp(ev[i].ph, "s"), fin = !strcmp(ev[i].ph, "f");
        if (!s && !fin) continue;
        int id = (int)num_of(ev[i].obj, "id") - 1;
        CHECK(id >= 0 && id < NODES);
        if (id < 0 || id >= NODES) continue;
        starts += s, finishes += fin;
        if (s) CHECK_INT(ev[i].ts, fe[id]->ts);
        if (fin) {
            CHECK_INT(ev[i].ts, be[id]->ts);
            CHECK(!strcmp(str_of(ev[i].obj, "bp"), "e"));
        }
        for (int j = 0; j < n; j++) /* its partner, with the same id */
            if (j != i && !strcmp(ev[j].ph, s ? "f" : "s") && (int)num_of(ev[j].obj, "id") == id + 1) {
                CHECK(!strcmp(ev[j].name, ev[i].name));
                break;
            }
    }
    CHECK_INT(starts, NODES);
    CHECK_INT(finishes, NODES);

    /* user spans: "batch" around every node, the optimizer step after the last VJP */
    const jev *batch = NULL, *opt = NULL;
    for (int i = 0; i < n; i++) {
        if (strcmp(ev[i].cat, "user")) continue;
        if (!strcmp(ev[i].name, "batch")) batch = &ev[i];
        if (!strcmp(ev[i].name, SPAN_READ)) opt = &ev[i];
    }
    CHECK(batch && opt);
    if (batch && opt) {
        CHECK_INT(batch->ts, 0); /* the step's first event */
        CHECK(batch->ts <= fe[0]->ts && batch->end >= be[0]->end);
        CHECK(opt->ts >= be[0]->end && opt->end <= batch->end);
        CHECK_INT(batch->tid, 1);
    }

    /* worker spans: inside their node's event in time, on the worker's track or nested on main */
    int on_worker = 0, workers = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(ev[i].cat, "worker")) continue;
        workers++;
        on_worker += ev[i].tid == 2;
        int id = atoi(str_of(ev[i].args, "node") + 1);
        CHECK(id >= 0 && id < NODES);
        if (id < 0 || id >= NODES) continue;
        const jev *owner = strstr(ev[i].name, " backward") ? be[id] : fe[id];
        CHECK(!strcmp(ev[i].name, owner->name));
        CHECK(ev[i].ts >= owner->ts && ev[i].end <= owner->end);
        CHECK(strstr(str_of(ev[i].args, "region"), ".c:") != NULL);
    }
    if (two) {
        CHECK(on_worker >= 4); /* conv, batch norm, relu and pooling split over two threads */
        bool named = false;
        for (int i = 0; i < n; i++)
            if (!strcmp(ev[i].ph, "M") && ev[i].tid == 2 && !strcmp(ev[i].name, "thread_name"))
                named = !strcmp(str_of(ev[i].args, "name"), "omp worker 1");
        CHECK(named);
    }
    CHECK(workers > 0);
    CHECK_INT(num_of(cJSON_GetObjectItem(root, "otherData"), "worker spans dropped"), 0);

    /* the arena counter: after each forward and VJP, the bytes then in use */
    int samples = 0;
    int64_t last = -1;
    double last_bytes = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(ev[i].ph, "C")) continue;
        CHECK(!strcmp(ev[i].name, "arena"));
        samples++;
        CHECK(ev[i].ts >= last);
        last = ev[i].ts, last_bytes = num_of(ev[i].args, "bytes");
        bool at_node = false;
        for (int k = 0; k < NODES; k++) at_node |= ev[i].ts == fe[k]->end || ev[i].ts == be[k]->end;
        CHECK(at_node);
    }
    CHECK_INT(samples, 2 * NODES);
    CHECK_INT(last_bytes, used); /* the last VJP (the conv's): nothing was allocated after it */

    cJSON_Delete(root);
    free(text);

    /* tracing off: the same events without the workers' */
    CHECK_INT(tg_tape_set_trace(t, false), 0);
    f = tmpfile();
    CHECK_INT(tg_tape_trace(t, f), 0);
    text = slurp(f);
    fclose(f);
    root = cJSON_Parse(text);
    CHECK(root != NULL);
    n = events_of(root, ev, 4096);
    workers = fwd = 0;
    for (int i = 0; i < n; i++) workers += !strcmp(ev[i].cat, "worker"), fwd += !strcmp(ev[i].cat, "forward");
    CHECK_INT(workers, 0);
    CHECK_INT(fwd, NODES);
    cJSON_Delete(root);
    free(text);
    tg_tape_free(t);
    net_free(&m);
    tg_set_threads(0);
}

/* Tracing only reads the clock: a training step gives the same bits with it on. */
static void same_bits(void) {
    tg_set_threads(2);
    float loss[2], *w[2], *fw[2];
    for (int on = 0; on < 2; on++) {
        net m = net_new();
        tg_tape *t = tg_tape_new();
        CHECK_INT(tg_tape_set_trace(t, on), 0);
        for (int s = 0; s < 3; s++) {
            loss[on] = train_step(t, &m);
            tg_tape_reset(t);
        }
        w[on] = malloc((size_t)m.w->size * sizeof(float));
        memcpy(w[on], m.w->data, (size_t)m.w->size * sizeof(float));
        fw[on] = malloc((size_t)m.fw->size * sizeof(float));
        memcpy(fw[on], m.fw->data, (size_t)m.fw->size * sizeof(float));
        tg_tape_free(t);
        net_free(&m);
    }
    CHECK(memcmp(&loss[0], &loss[1], sizeof(float)) == 0);
    CHECK(memcmp(w[0], w[1], K * C * 9 * sizeof(float)) == 0);
    CHECK(memcmp(fw[0], fw[1], CLASSES * K * (H / 2) * (H / 2) * sizeof(float)) == 0);
    free(w[0]), free(w[1]), free(fw[0]), free(fw[1]);
    tg_set_threads(0);
}

// ----------------------------------------------------------------------------
// memory by kind: an op of the test's own, whose every allocation is known

typedef struct {
    float scale, unused;
} probe_attr; /* 8 bytes */

static int probe_shape(tg_node *n, int *ndim, int *shape) {
    *ndim = n->in[0]->ndim;
    for (int i = 0; i < *ndim; i++) shape[i] = n->in[0]->shape[i];
    return 0;
}

/* y = x * w * scale; saves 100 bytes and takes 200 of scratch */
static int probe_forward(tg_tape *t, tg_node *n) {
    if (n->record && !tg_node_save(t, n, 100, "copy")) return TG_ERR_NOMEM;
    if (!tg_tape_alloc(t, 200)) return TG_ERR_NOMEM;
    float s = ((const probe_attr *)n->attr)->scale;
    for (int64_t i = 0; i < n->out->size; i++) n->out->data[i] = n->in[0]->data[i] * n->in[1]->data[i] * s;
    return 0;
}

/* takes 50 bytes of scratch */
static int probe_vjp(tg_tape *t, tg_node *n) {
    if (!tg_tape_alloc(t, 50)) return TG_ERR_NOMEM;
    float s = ((const probe_attr *)n->attr)->scale;
    const float *dy = n->out->grad;
    for (int k = 0; k < 2; k++)
        if (n->in[k]->requires_grad)
            for (int64_t i = 0; i < n->out->size; i++) n->in[k]->grad[i] += dy[i] * n->in[1 - k]->data[i] * s;
    return 0;
}

static const tg_op probe_op = {.name = "probe", .attr_size = sizeof(probe_attr), .shape = probe_shape,
                               .forward = probe_forward, .vjp = probe_vjp};

static size_t r64(size_t b) { return (b + 63) / 64 * 64; }

static void memory_by_kind(void) {
    tg_tape *t = tg_tape_new();
    tg_tensor *w = tg_param_new(2, (int[]){4, 8}); /* heap: not the arena's */
    probe_attr at = {2, 0};
    tg_tensor *x = tg_tensor_tape(t, 2, (int[]){4, 8}); /* 32 floats: 128 bytes and a header */
    tg_tensor *y = tg_apply(t, &probe_op, (tg_tensor *[]){x, w}, 2, &at);
    size_t after_y = tg_tape_arena_used(t);
    tg_tensor *z = tg_apply(t, &probe_op, (tg_tensor *[]){y, w}, 2, &at);
    CHECK(z != NULL);
    float dz[32];
    for (int i = 0; i < 32; i++) dz[i] = 1;
    CHECK_INT(tg_backward_seed(t, z, dz), 0); /* grads of z and y (x takes none), 50 bytes of scratch per VJP */

    size_t hdr = r64(sizeof(tg_tensor)), rec = r64(sizeof(tg_node)) + r64(sizeof(probe_attr));
    tg_tape_mem mem;
    CHECK_INT(tg_tape_memory(t, &mem), 0);
    CHECK_INT(mem.now.activations, 3 * (hdr + 128));
    CHECK_INT(mem.now.saved, 2 * 128);
    CHECK_INT(mem.now.grads, 2 * 128);
    CHECK_INT(mem.now.scratch, 2 * 256 + 2 * 64);
    CHECK_INT(mem.now.records, 2 * rec);
    size_t total = 3 * (hdr + 128) + 256 + 256 + 640 + 2 * rec;
    CHECK_INT(mem.now.total, total);
    CHECK_INT(tg_tape_arena_used(t), total);
    CHECK_INT(mem.peak.total, total);
    CHECK_INT(mem.peak.grads, 2 * 128);
    CHECK_INT(after_y, 2 * (hdr + 128) + rec + 128 + 256); /* the counter's first sample */
    CHECK(mem.capacity >= total);

    /* the counter track holds the same numbers */
    FILE *f = tmpfile();
    CHECK_INT(tg_tape_trace(t, f), 0);
    char *text = slurp(f);
    fclose(f);
    cJSON *root = cJSON_Parse(text);
    CHECK(root != NULL);
    jev ev[64];
    int n = events_of(root, ev, 64);
    double first = -1, lastb = -1;
    for (int i = 0; i < n; i++)
        if (!strcmp(ev[i].ph, "C")) {
            if (first < 0) first = num_of(ev[i].args, "bytes");
            lastb = num_of(ev[i].args, "bytes");
        }
    CHECK_INT(first, after_y);
    CHECK_INT(lastb, total);
    cJSON_Delete(root);
    free(text);

    /* a reset empties the counts; the peak keeps the most bytes ever */
    tg_tape_reset(t);
    CHECK_INT(tg_tape_memory(t, &mem), 0);
    CHECK_INT(mem.now.total, 0);
    CHECK_INT(mem.now.activations, 0);
    CHECK_INT(mem.peak.total, total);
    CHECK_INT(mem.peak.scratch, 640);
    CHECK(tg_tensor_tape(t, 1, (int[]){10}) != NULL);
    CHECK_INT(tg_tape_memory(t, &mem), 0);
    CHECK_INT(mem.now.activations, hdr + 64);
    CHECK_INT(mem.peak.activations, 3 * (hdr + 128));
    CHECK_INT(mem.peak.total, tg_tape_arena_high_water(t));
    tg_tensor_free(w);
    tg_tape_free(t);
}

// ----------------------------------------------------------------------------

static void spans_and_mistakes(void) {
    tg_tape *t = tg_tape_new();
    FILE *f = tmpfile();
    tg_tape_mem mem;
    CHECK_INT(tg_tape_trace(NULL, f), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "tape_trace: tape is NULL");
    CHECK_INT(tg_tape_trace(t, NULL), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "tape_trace: file is NULL");
    CHECK_INT(tg_tape_memory(NULL, &mem), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "tape_memory: tape is NULL");
    CHECK_INT(tg_tape_memory(t, NULL), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "tape_memory: out is NULL");
    CHECK_INT(tg_tape_set_trace(NULL, true), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "tape_set_trace: tape is NULL");
    CHECK(!tg_tape_get_trace(NULL));
    CHECK_INT(tg_tape_span_begin(NULL, "x"), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "tape_span_begin: tape is NULL");
    CHECK_INT(tg_tape_span_begin(t, NULL), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "tape_span_begin: name is NULL");
    CHECK_INT(tg_tape_span_end(NULL), TG_ERR_ARG);
    CHECK_INT(tg_tape_span_end(t), TG_ERR_STATE);
    CHECK_MSG(tg_last_error(), "tape_span_end: no span is open");
    for (int i = 0; i < 8; i++) CHECK_INT(tg_tape_span_begin(t, "deep"), 0);
    CHECK_INT(tg_tape_span_begin(t, "ninth"), TG_ERR_STATE);
    CHECK_MSG(tg_last_error(), "spans nest at most 8 deep");
    for (int i = 0; i < 8; i++) CHECK_INT(tg_tape_span_end(t), 0);
    CHECK_INT(tg_tape_span_end(t), TG_ERR_STATE);
    for (int i = 0; i < 70; i++) { /* 64 kept, 6 dropped */
        CHECK_INT(tg_tape_span_begin(t, "many"), 0);
        CHECK_INT(tg_tape_span_end(t), 0);
    }
    CHECK_INT(tg_tape_span_begin(t, "left open"), 0);
    CHECK_INT(tg_tape_trace(t, f), 0);
    char *text = slurp(f);
    cJSON *root = cJSON_Parse(text);
    CHECK(root != NULL);
    jev ev[128];
    int n = events_of(root, ev, 128), users = 0;
    for (int i = 0; i < n; i++) users += !strcmp(ev[i].cat, "user");
    CHECK_INT(users, 64); /* the 8 deep ones and 56 of "many" */
    CHECK_INT(num_of(cJSON_GetObjectItem(root, "otherData"), "user spans dropped"), 14 + 1); /* "left open" too */
    CHECK_INT(nesting_violations(ev, n), 0);
    cJSON_Delete(root);
    free(text);
    fclose(f);
    tg_tape_reset(t); /* forgets the spans, the open one too */
    CHECK_INT(tg_tape_span_end(t), TG_ERR_STATE);
    CHECK_INT(tg_tape_span_begin(t, "left open"), 0);
    f = tmpfile();
    CHECK_INT(tg_tape_trace(t, f), 0);
    text = slurp(f);
    CHECK(strstr(text, "\"open\":true") != NULL);
    free(text);
    fclose(f);
    /* a stream that cannot be written */
    f = fopen("/dev/null", "r");
    CHECK_INT(tg_tape_trace(t, f), TG_ERR_IO);
    CHECK_MSG(tg_last_error(), "tape_trace: write error");
    fclose(f);
    tg_tape_free(t);
}

// ----------------------------------------------------------------------------
// another thread's tape is not mixed in: while this tape traces its steps, a second thread
// trains a conv_transpose2d (parallel regions this net never runs) on a tape of its own

static atomic_int busy_stop, busy_steps;

static void *busy(void *arg) {
    (void)arg;
    uint64_t rng = 99;
    tg_tape *t = tg_tape_new();
    tg_tensor *w = filled(tg_param_new(4, (int[]){8, 8, 3, 3}), &rng, 0.1f, 0);
    while (!atomic_load(&busy_stop)) {
        tg_tensor *x = filled(tg_tensor_tape(t, 4, (int[]){8, 8, 32, 32}), &rng, 1, 0);
        tg_tensor *y = tg_conv_transpose2d(t, x, w, NULL, 2, 1, 1, 1, 1);
        if (!y || tg_backward(t, tg_sum(t, y)) < 0) break;
        tg_tape_reset(t);
        atomic_fetch_add(&busy_steps, 1);
    }
    tg_tensor_free(w);
    tg_tape_free(t);
    return NULL;
}

/* The regions ("kernels/conv.c:444") of the worker spans of one traced step, joined by spaces. */
static void regions_of_a_step(tg_tape *t, net *m, char *out, size_t len) {
    train_step(t, m);
    FILE *f = tmpfile();
    CHECK_INT(tg_tape_trace(t, f), 0);
    char *text = slurp(f);
    fclose(f);
    tg_tape_reset(t);
    cJSON *root = cJSON_Parse(text);
    out[0] = '\0';
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(root, "traceEvents")) {
        const char *cat = str_of(e, "cat"), *r = str_of(cJSON_GetObjectItem(e, "args"), "region");
        char word[200];
        snprintf(word, sizeof word, " %s ", r);
        if (!strcmp(cat, "worker") && !strstr(out, word) && strlen(out) + strlen(word) < len)
            strcat(out, word + (out[0] ? 1 : 0));
    }
    cJSON_Delete(root);
    free(text);
}

static void other_tapes_not_mixed(void) {
    tg_set_threads(2);
    net m = net_new();
    tg_tape *t = tg_tape_new();
    CHECK_INT(tg_tape_set_trace(t, true), 0);
    char alone[2048], beside[2048];
    train_step(t, &m), tg_tape_reset(t);
    regions_of_a_step(t, &m, alone, sizeof alone);
    CHECK(strstr(alone, "kernels/conv.c:") != NULL);
    pthread_t th;
    atomic_store(&busy_stop, 0), atomic_store(&busy_steps, 0);
    CHECK_INT(pthread_create(&th, NULL, busy, NULL), 0);
    while (atomic_load(&busy_steps) < 1) continue; /* the other thread is at work */
    for (int s = 0; s < 20; s++) { /* every region of a step beside it is one the step runs alone */
        regions_of_a_step(t, &m, beside, sizeof beside);
        for (char *w = strtok(beside, " "); w; w = strtok(NULL, " ")) {
            char word[200];
            snprintf(word, sizeof word, " %s ", w);
            char padded[2100];
            snprintf(padded, sizeof padded, " %s ", alone);
            if (!strstr(padded, word)) fprintf(stderr, "a region not of this tape: %s (alone: %s)\n", w, alone);
            CHECK(strstr(padded, word) != NULL);
        }
    }
    atomic_store(&busy_stop, 1);
    pthread_join(th, NULL);
    tg_tape_free(t);
    net_free(&m);
    tg_set_threads(0);
}

int main(void) {
    trace_of_a_step();
    same_bits();
    memory_by_kind();
    spans_and_mistakes();
    other_tapes_not_mixed();
    CHECK_DONE();
}
