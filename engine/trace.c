/* trace.c: a step as a timeline (tg_tape_trace): the nodes' forward and backward times the tape
 * keeps, the user's spans, and, while tracing is on, the spans the OpenMP workers record in the
 * parallel regions of each node (TG_TRACE_ITER, internal.h), written as Chrome trace-event JSON. */
#include "internal.h"
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

// ----------------------------------------------------------------------------
// worker spans: recorded by any thread, each into a buffer of its own

struct tg__wspan {
    double t0, t1;    /* tg__now; t1 0 while the body runs */
    const char *file; /* the region's place in the source */
    int line;
    int node, phase;  /* what ran: the node's id, 0 forward or 1 its VJP */
    int track;        /* the thread's track: 1 + its number in the outermost OpenMP team */
};

/* One OS thread's buffer. A thread claims a slot the first time it records (owner: its id),
 * so no two threads ever write one; aligned so that they share no cache line. */
typedef struct {
    atomic_int owner; /* 0: free */
    int n;
    int64_t last_idx; /* the loop index of the last span opened, for merging */
    tg__wspan *spans;
    char pad[40];     /* 64 bytes a slot, so that neighbours seldom share a cache line */
} slot;

struct tg__trace {
    long long id;         /* this trace's number, never reused: what a thread's cached slot belongs to */
    atomic_int cur;       /* node * 2 + phase of the node running, -1 between nodes */
    atomic_llong dropped; /* spans not recorded: a buffer full, or no slot left */
    int n_slots, cap;
    slot *slots;
    tg__wspan *store;     /* n_slots * cap spans */
};

#define SPANS_PER_THREAD 2048

_Thread_local tg__trace *tg__trace_mine;
static atomic_int next_thread_id;
static _Thread_local int self_id; /* 0 until the thread first records */
static atomic_llong next_trace_id;
/* The slot this thread found last, and in which trace: found once per trace, not per iteration
 * (a search reads other threads' slots, whose cache lines they are writing) */
static _Thread_local long long cached_id;
static _Thread_local slot *cached_slot;

/* The track of the calling thread: its number in the outermost team, so a nested region's
 * lone thread (numbered 0 in its own team) stays on the track of the thread that runs it. */
static int track_of_caller(void) {
#ifdef _OPENMP
    return omp_get_level() == 0 ? 1 : omp_get_ancestor_thread_num(1) + 1;
#else
    return 1;
#endif
}

static slot *find_slot(tg__trace *tr) {
    if (!self_id) self_id = atomic_fetch_add(&next_thread_id, 1) + 1;
    for (int i = 0; i < tr->n_slots; i++)
        if (atomic_load_explicit(&tr->slots[i].owner, memory_order_relaxed) == self_id) return &tr->slots[i];
    for (int i = 0; i < tr->n_slots; i++) {
        int free_ = 0;
        if (atomic_compare_exchange_strong(&tr->slots[i].owner, &free_, self_id)) return &tr->slots[i];
    }
    return NULL;
}

static slot *slot_of(tg__trace *tr) {
    if (cached_id != tr->id) cached_slot = find_slot(tr), cached_id = cached_slot ? tr->id : 0;
    return cached_slot;
}

tg__trace_mark tg__trace_open(tg__trace *tr, const char *file, int line, int64_t idx) {
    tg__trace_mark none = {NULL, 1};
    int cur = atomic_load_explicit(&tr->cur, memory_order_relaxed);
    if (cur < 0) return none;
    int node = cur >> 1, phase = cur & 1;
    slot *s = slot_of(tr);
    if (!s) {
        atomic_fetch_add(&tr->dropped, 1);
        return none;
    }
    if (idx >= 0 && s->n > 0) { /* the next iteration of the loop this thread ran last: extend its span */
        tg__wspan *w = &s->spans[s->n - 1];
        if (w->t1 != 0 && w->file == file && w->line == line && w->node == node && w->phase == phase &&
            s->last_idx == idx - 1) {
            s->last_idx = idx;
            return (tg__trace_mark){w, 1};
        }
    }
    if (s->n == tr->cap) {
        atomic_fetch_add(&tr->dropped, 1);
        return none;
    }
    tg__wspan *w = &s->spans[s->n++];
    *w = (tg__wspan){tg__now(), 0, file, line, node, phase, track_of_caller()};
    s->last_idx = idx;
    return (tg__trace_mark){w, 1};
}

void tg__trace_close(tg__wspan *w) { w->t1 = tg__now(); }

/* The thread that runs a node of a tracing tape points its own tg__trace_mine at the tape's
 * buffers; the parallel regions it starts meanwhile read it (TG_TRACE_CAPTURE) and record there. */
void tg__trace_enter(tg__trace *tr, int node, int phase) {
    atomic_store(&tr->cur, node * 2 + phase);
    tg__trace_mine = tr;
}

void tg__trace_leave(tg__trace *tr) {
    if (tg__trace_mine == tr) tg__trace_mine = NULL;
    atomic_store(&tr->cur, -1);
}

void tg__trace_reset(tg__trace *tr) {
    for (int i = 0; i < tr->n_slots; i++) tr->slots[i].n = 0;
    atomic_store(&tr->dropped, 0);
}

void tg__trace_free(tg__trace *tr) {
    if (!tr) return;
    tg__trace_leave(tr);
    tg__free(tr->slots);
    tg__free(tr->store);
    tg__free(tr);
}

int tg_tape_set_trace(tg_tape *t, bool on) {
    if (!t) return tg_fail(TG_ERR_ARG, "tape_set_trace: tape is NULL");
    if (!on) {
        tg__trace_free(t->trace);
        t->trace = NULL;
        return 0;
    }
    if (t->trace) return 0;
    /* the team's threads, and as many again for a runtime that replaces its threads */
    int T = tg_get_threads();
#ifdef _OPENMP
    if (omp_get_max_threads() > T) T = omp_get_max_threads();
#endif
    tg__trace *tr = tg__calloc(1, sizeof *tr);
    if (tr) {
        tr->n_slots = 2 * T + 2;
        tr->cap = SPANS_PER_THREAD;
        tr->slots = tg__calloc((size_t)tr->n_slots, sizeof *tr->slots);
        tr->store = tg__malloc((size_t)tr->n_slots * tr->cap * sizeof *tr->store);
    }
    if (!tr || !tr->slots || !tr->store) {
        tg__trace_free(tr);
        return tg_fail(TG_ERR_NOMEM, "tape_set_trace: out of memory");
    }
    tr->id = atomic_fetch_add(&next_trace_id, 1) + 1;
    atomic_init(&tr->cur, -1);
    for (int i = 0; i < tr->n_slots; i++) tr->slots[i].spans = tr->store + (size_t)i * tr->cap;
    t->trace = tr;
    return 0;
}

bool tg_tape_get_trace(const tg_tape *t) { return t && t->trace; }

// ----------------------------------------------------------------------------
// user spans

int tg_tape_span_begin(tg_tape *t, const char *name) {
    if (!t) return tg_fail(TG_ERR_ARG, "tape_span_begin: tape is NULL");
    if (!name) return tg_fail(TG_ERR_ARG, "tape_span_begin: name is NULL");
    if (t->depth == TG__SPAN_DEPTH)
        return tg_fail(TG_ERR_STATE, "tape_span_begin: \"%s\" would be the %dth open span; spans nest at most %d deep",
                       name, TG__SPAN_DEPTH + 1, TG__SPAN_DEPTH);
    int k = -1;
    if (t->n_spans < TG__SPANS) {
        k = t->n_spans++;
        tg__span *s = &t->spans[k];
        snprintf(s->name, sizeof s->name, "%s", name);
        s->depth = t->depth;
        s->t1 = 0;
        s->t0 = tg__now();
    } else {
        t->spans_dropped++;
    }
    t->open[t->depth++] = k;
    return 0;
}

int tg_tape_span_end(tg_tape *t) {
    if (!t) return tg_fail(TG_ERR_ARG, "tape_span_end: tape is NULL");
    if (!t->depth) return tg_fail(TG_ERR_STATE, "tape_span_end: no span is open (tg_tape_reset closes them all)");
    int k = t->open[--t->depth];
    if (k >= 0) t->spans[k].t1 = tg__now();
    return 0;
}

// ----------------------------------------------------------------------------
// writing JSON

/* s as a JSON string: quotes, backslashes and control characters escaped, anything that
 * is not well-formed UTF-8 (a stray byte, an overlong form, a surrogate, past U+10FFFF)
 * replaced by U+FFFD a byte at a time. */
static void put_str(FILE *f, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    while (*p) {
        unsigned c = *p;
        if (c < 0x80) {
            if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
            else if (c == '\n') fputs("\\n", f);
            else if (c == '\t') fputs("\\t", f);
            else if (c == '\r') fputs("\\r", f);
            else if (c < 0x20 || c == 0x7f) fprintf(f, "\\u%04x", c);
            else fputc((int)c, f);
            p++;
            continue;
        }
        int more = 0;
        unsigned lo = 0x80, hi = 0xbf; /* the allowed range of the second byte */
        if (c >= 0xc2 && c <= 0xdf) more = 1;
        else if (c >= 0xe0 && c <= 0xef) more = 2, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        else if (c >= 0xf0 && c <= 0xf4) more = 3, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        bool ok = more > 0 && p[1] >= lo && p[1] <= hi;
        for (int i = 2; ok && i <= more; i++) ok = p[i] >= 0x80 && p[i] <= 0xbf;
        if (ok) {
            fwrite(p, 1, (size_t)more + 1, f);
            p += more + 1;
        } else {
            fputs("\\ufffd", f);
            p++;
        }
    }
    fputc('"', f);
}

/* Microseconds with three decimals from nanoseconds: exact, so nesting survives printing. */
static void put_us(FILE *f, const char *key, int64_t ns) {
    fprintf(f, ",\"%s\":%lld.%03lld", key, (long long)(ns / 1000), (long long)(ns % 1000));
}

/* The VJP's FLOPs and their rate (the forward's are written above), and for both phases the bytes
 * moved, FLOPs per byte and the kernel path that ran (dump.c counts them the same way). */
static void node_metric_args(FILE *f, const tg_node *n, int phase) {
    int64_t fl = phase ? tg__node_flops_backward(n) : n->op->flops ? n->op->flops(n) : -1;
    if (phase && fl >= 0) {
        fprintf(f, ",\"flops\":%lld", (long long)fl);
        if (n->t_backward > 0) fprintf(f, ",\"GFLOP/s\":%.4g", (double)fl / n->t_backward * 1e-9);
    }
    int64_t bytes = tg__node_bytes(n, phase);
    if (bytes >= 0) fprintf(f, ",\"bytes\":%lld", (long long)bytes);
    if (bytes > 0 && fl >= 0) fprintf(f, ",\"FLOP/byte\":%.4g", (double)fl / (double)bytes);
    const char *k = phase ? n->kernel_backward : n->kernel_forward;
    if (k) fputs(",\"kernel\":", f), put_str(f, k);
}

/* "conv2d+relu", and " backward" for its VJP */
static void node_name(const tg_node *n, int phase, char *buf, size_t len) {
    const char *v = n->op->variant ? n->op->variant(n) : NULL;
    snprintf(buf, len, "%s%s%s%s", n->op->name, v ? "+" : "", v ? v : "", phase ? " backward" : "");
}

static void node_args(FILE *f, const tg_node *n, int phase) {
    char l[TG_NAME_LEN];
    fprintf(f, ",\"args\":{\"node\":\"%%%d\",\"layer\":", n->id);
    put_str(f, n->scope ? n->scope : "");
    fputs(",\"inputs\":[", f);
    for (int i = 0; i < n->n_in; i++) {
        if (i) fputc(',', f);
        put_str(f, tg__label(n->in[i], l, sizeof l));
    }
    fputs("],\"Input Dims\":[", f);
    for (int i = 0; i < n->n_in; i++) {
        fputs(i ? ",[" : "[", f);
        for (int d = 0; d < n->in[i]->ndim; d++) fprintf(f, d ? ",%d" : "%d", n->in[i]->shape[d]);
        fputc(']', f);
    }
    fprintf(f, "],\"saved bytes\":%zu", n->saved_bytes);
    if (!phase && n->op->flops) {
        int64_t fl = n->op->flops(n);
        fprintf(f, ",\"flops\":%lld", (long long)fl);
        if (n->t_forward > 0) fprintf(f, ",\"GFLOP/s\":%.4g", (double)fl / n->t_forward * 1e-9);
    }
    node_metric_args(f, n, phase);
    fputc('}', f);
}

// ----------------------------------------------------------------------------
// the timeline

/* A region's file as "kernels/conv.c": the last directory and the name of __FILE__, which
 * the build may give from anywhere ("../ops/kernels/conv.c"). */
static const char *short_path(const char *file) {
    const char *p = strrchr(file, '/');
    if (!p) return file;
    while (p > file && p[-1] != '/') p--;
    return p;
}

enum { EV_USER, EV_NODE, EV_WORKER };
typedef struct {
    int64_t t0, t1; /* ns from the step's first event */
    int track, kind, rank; /* rank orders a parent before its child when both start at once */
    int phase;
    const void *what;      /* tg__span, tg_node or tg__wspan */
} event;

static int by_track_time(const void *pa, const void *pb) {
    const event *a = pa, *b = pb;
    if (a->track != b->track) return a->track < b->track ? -1 : 1;
    if (a->t0 != b->t0) return a->t0 < b->t0 ? -1 : 1;
    if (a->t1 != b->t1) return a->t1 > b->t1 ? -1 : 1; /* the longer one encloses */
    return (a->rank > b->rank) - (a->rank < b->rank);
}

typedef struct {
    int64_t t;
    size_t bytes;
} sample;

static int by_time(const void *pa, const void *pb) {
    const sample *a = pa, *b = pb;
    return (a->t > b->t) - (a->t < b->t);
}

static int64_t ns_of(double t, double base) { return (int64_t)llround((t - base) * 1e9); }

int tg_tape_trace(const tg_tape *t, FILE *f) {
    if (!t) return tg_fail(TG_ERR_ARG, "tape_trace: tape is NULL");
    if (!f) return tg_fail(TG_ERR_ARG, "tape_trace: file is NULL");
    const tg__trace *tr = t->trace;
    size_t n_w = 0;
    for (int i = 0; tr && i < tr->n_slots; i++) n_w += (size_t)tr->slots[i].n;
    size_t most = 2 * (size_t)t->n_nodes + (size_t)t->n_spans + n_w;
    event *ev = tg__malloc((most ? most : 1) * sizeof *ev);
    sample *smp = tg__malloc((2 * (size_t)t->n_nodes + 1) * sizeof *smp);
    const tg_node **by_id = tg__calloc((size_t)t->n_nodes + 1, sizeof *by_id);
    if (!ev || !smp || !by_id) {
        tg__free(ev), tg__free(smp), tg__free(by_id);
        return tg_fail(TG_ERR_NOMEM, "tape_trace: out of memory");
    }
    double now = tg__now(), base = now; /* the step's first event */
    for (const tg_node *n = t->first; n; n = n->next) {
        if (n->id >= 0 && n->id < t->n_nodes) by_id[n->id] = n;
        if (n->t_forward_start < base) base = n->t_forward_start;
    }
    for (int k = 0; k < t->n_spans; k++)
        if (t->spans[k].t0 < base) base = t->spans[k].t0;
    for (int i = 0; tr && i < tr->n_slots; i++)
        for (int k = 0; k < tr->slots[i].n; k++)
            if (tr->slots[i].spans[k].t0 < base) base = tr->slots[i].spans[k].t0;

    size_t m = 0, ns = 0;
    for (const tg_node *n = t->first; n; n = n->next) {
        double s = n->t_forward_start;
        ev[m++] = (event){ns_of(s, base), ns_of(s + n->t_forward, base), 1, EV_NODE, TG__SPAN_DEPTH, 0, n};
        smp[ns++] = (sample){ev[m - 1].t1, n->arena_after_forward};
        if (n->t_backward_start > 0) {
            s = n->t_backward_start;
            ev[m++] = (event){ns_of(s, base), ns_of(s + n->t_backward, base), 1, EV_NODE, TG__SPAN_DEPTH, 1, n};
            smp[ns++] = (sample){ev[m - 1].t1, n->arena_after_backward};
        }
    }
    for (int k = 0; k < t->n_spans; k++) {
        const tg__span *s = &t->spans[k];
        ev[m++] = (event){ns_of(s->t0, base), ns_of(s->t1 > 0 ? s->t1 : now, base), 1, EV_USER, s->depth, 0, s};
    }
    int tracks = 1;
    for (int i = 0; tr && i < tr->n_slots; i++)
        for (int k = 0; k < tr->slots[i].n; k++) {
            const tg__wspan *w = &tr->slots[i].spans[k];
            if (w->t1 < w->t0 || w->node < 0 || w->node >= t->n_nodes || !by_id[w->node]) continue;
            ev[m++] = (event){ns_of(w->t0, base), ns_of(w->t1, base), w->track, EV_WORKER, TG__SPAN_DEPTH + 1,
                              w->phase, w};
            if (w->track > tracks) tracks = w->track;
        }
    /* Parents first, then each event clamped into the one that encloses it on its track: the
     * times nest already (a region runs inside its node's call, a node inside the user's
     * span), so this only guards viewers against a clock that went wrong. */
    qsort(ev, m, sizeof *ev, by_track_time);
    int64_t stack_end[TG__SPAN_DEPTH + 4];
    int depth = 0;
    for (size_t i = 0; i < m; i++) {
        if (i == 0 || ev[i].track != ev[i - 1].track) depth = 0;
        while (depth && stack_end[depth - 1] <= ev[i].t0) depth--;
        if (depth && ev[i].t1 > stack_end[depth - 1]) ev[i].t1 = stack_end[depth - 1];
        if (depth < (int)(sizeof stack_end / sizeof *stack_end)) stack_end[depth++] = ev[i].t1;
    }
    qsort(smp, ns, sizeof *smp, by_time);

    fputs("{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n", f);
    fputs("{\"ph\":\"M\",\"pid\":1,\"name\":\"process_name\",\"args\":{\"name\":\"tapegrad\"}}", f);
    for (int k = 1; k <= tracks; k++) {
        fprintf(f, ",\n{\"ph\":\"M\",\"pid\":1,\"tid\":%d,\"name\":\"thread_name\",\"args\":{\"name\":", k);
        if (k == 1) fputs("\"main\"}}", f);
        else fprintf(f, "\"omp worker %d\"}}", k - 1);
        fprintf(f, ",\n{\"ph\":\"M\",\"pid\":1,\"tid\":%d,\"name\":\"thread_sort_index\",\"args\":{\"sort_index\":%d}}",
                k, k);
    }
    char name[128];
    for (size_t i = 0; i < m; i++) {
        const event *e = &ev[i];
        fputs(",\n{\"ph\":\"X\",\"pid\":1", f);
        fprintf(f, ",\"tid\":%d", e->track);
        put_us(f, "ts", e->t0);
        put_us(f, "dur", e->t1 - e->t0);
        if (e->kind == EV_USER) {
            const tg__span *s = e->what;
            fputs(",\"cat\":\"user\",\"name\":", f);
            put_str(f, s->name);
            fprintf(f, ",\"args\":{\"depth\":%d%s}}", s->depth, s->t1 > 0 ? "" : ",\"open\":true");
        } else if (e->kind == EV_NODE) {
            const tg_node *n = e->what;
            node_name(n, e->phase, name, sizeof name);
            fprintf(f, ",\"cat\":\"%s\",\"name\":", e->phase ? "backward" : "forward");
            put_str(f, name);
            node_args(f, n, e->phase);
            fputc('}', f);
        } else {
            const tg__wspan *w = e->what;
            node_name(by_id[w->node], w->phase, name, sizeof name);
            fputs(",\"cat\":\"worker\",\"name\":", f);
            put_str(f, name);
            char region[160];
            snprintf(region, sizeof region, "%s:%d", short_path(w->file), w->line);
            fprintf(f, ",\"args\":{\"node\":\"%%%d\",\"region\":", w->node);
            put_str(f, region);
            fputs("}}", f);
        }
    }
    for (size_t i = 0; i < m; i++) { /* forward to backward: flow arrows, bound to the enclosing slices */
        const event *e = &ev[i];
        if (e->kind != EV_NODE) continue;
        const tg_node *n = e->what;
        if (n->t_backward_start <= 0) continue;
        fprintf(f, ",\n{\"ph\":\"%s\",\"pid\":1,\"tid\":1,\"id\":%d,\"cat\":\"flow\",\"name\":\"forward to backward\"",
                e->phase ? "f" : "s", n->id + 1);
        if (e->phase) fputs(",\"bp\":\"e\"", f);
        put_us(f, "ts", e->t0);
        fputc('}', f);
    }
    for (size_t i = 0; i < ns; i++) {
        fputs(",\n{\"ph\":\"C\",\"pid\":1,\"name\":\"arena\"", f);
        put_us(f, "ts", smp[i].t);
        fprintf(f, ",\"args\":{\"bytes\":%zu}}", smp[i].bytes);
    }
    long long dropped = tr ? atomic_load(&((tg__trace *)tr)->dropped) : 0;
    fprintf(f, "\n],\"otherData\":{\"producer\":\"tapegrad tg_tape_trace\",\"nodes\":%d,\"worker spans\":%s,"
               "\"worker spans dropped\":%lld,\"user spans dropped\":%d}}\n",
            t->n_nodes, tr ? "\"recorded\"" : "\"off (tg_tape_set_trace)\"", dropped, t->spans_dropped);
    tg__free(ev), tg__free(smp), tg__free(by_id);
    if (fflush(f) != 0 || ferror(f)) return tg_fail(TG_ERR_IO, "tape_trace: write error");
    return 0;
}
