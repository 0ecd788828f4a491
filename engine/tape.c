/* tape.c: recording ops (tg_apply), the reverse sweep (tg_backward), the
 * tape's random generator. The engine knows no op by name: it only calls the
 * descriptor's shape, forward and vjp. */
#include "internal.h"
#include <math.h>
#include <string.h>
#include <time.h>

double tg__now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Arena memory counted as kind (TG__MEM_*), or NULL with the message set. */
static void *alloc_as(tg_tape *t, size_t bytes, int kind) {
    void *p = tg__arena_alloc_as(&t->arena, bytes, kind);
    if (!p) tg_fail(TG_ERR_NOMEM, "tape: out of memory (arena at %zu bytes)", t->arena.used);
    return p;
}

tg_tape *tg_tape_new(void) {
    tg_tape *t = tg__calloc(1, sizeof *t);
    if (!t) {
        tg_fail(TG_ERR_NOMEM, "tape_new: out of memory");
        return NULL;
    }
    t->arena.owner = t;
    t->grad_enabled = true;
    tg_tape_seed(t, 0x7a9e);
    return t;
}

void tg_tape_free(tg_tape *t) {
    if (!t) return;
    tg__arena_release(&t->arena);
    tg__trace_free(t->trace);
    tg__free(t);
}

/* Each generation starts 0, 64, 128 or 192 bytes into the arena, so a tensor
 * of one of the last three steps is never in the place where this step makes
 * one: its stale generation stays there to be recognised. */
void tg_tape_reset(tg_tape *t) {
    if (!t) return;
    t->generation++;
    tg__arena_reset(&t->arena, 64 * (size_t)(t->generation % 4));
    t->first = t->last = NULL;
    t->n_nodes = 0;
    t->scope = NULL;
    t->n_spans = t->spans_dropped = t->depth = 0; /* the step's user spans, open ones too */
    if (t->trace) tg__trace_reset(t->trace);
}

int tg_tape_set_scope(tg_tape *t, const char *scope) {
    if (!t) return tg_fail(TG_ERR_ARG, "tape_set_scope: tape is NULL");
    if (!scope || !scope[0]) {
        t->scope = NULL;
        return 0;
    }
    if (scope == t->scope || tg__arena_owner(scope) == t) { /* a scope this tape copied (tg_tape_scope's) */
        t->scope = scope;
        return 0;
    }
    size_t len = strlen(scope) + 1;
    for (const char *c = scope; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f)
            return tg_fail(TG_ERR_ARG, "tape_set_scope: \"%s\" holds a space or a control character", scope);
    char *copy = alloc_as(t, len, TG__MEM_RECORDS);
    if (!copy) return TG_ERR_NOMEM;
    memcpy(copy, scope, len);
    t->scope = copy;
    return 0;
}

const char *tg_tape_scope(const tg_tape *t) { return t && t->scope ? t->scope : ""; }

/* Where x lives decides what may be read of it: the arena of a live tape
 * (then its header is memory, current or stale), or elsewhere: a heap or
 * caller-made tensor, whose header is the caller's (tape NULL). */
bool tg__tensor_current(const tg_tensor *x) {
    if (!x) return false;
    const tg_tape *owner = tg__arena_owner(x);
    if (owner) return x->tape == owner && x->generation == owner->generation;
    return !x->tape;
}

int tg__check_tensor(const char *who, const tg_tape *t, const tg_tensor *x, const char *what) {
    if (!x) return tg_fail(TG_ERR_ARG, "%s: %s is NULL", who, what);
    const tg_tape *owner = tg__arena_owner(x);
    if (owner == t) {
        if (x->tape == t && x->generation == t->generation) return 0;
        return tg_fail(TG_ERR_STATE, "%s: %s is stale: it was made on this tape before tg_tape_reset, which freed it",
                       who, what);
    }
    if (owner || x->tape)
        return tg_fail(TG_ERR_STATE, "%s: %s belongs to another tape (a tensor made or recorded on one tape cannot "
                       "be used on another)", who, what);
    return 0;
}

bool tg_tape_set_grad_enabled(tg_tape *t, bool on) {
    if (!t) return false;
    bool was = t->grad_enabled;
    t->grad_enabled = on;
    return was;
}

int tg_tape_node_count(const tg_tape *t) { return t ? t->n_nodes : 0; }
const tg_node *tg_tape_first(const tg_tape *t) { return t ? t->first : NULL; }
size_t tg_tape_arena_used(const tg_tape *t) { return t ? t->arena.used : 0; }
size_t tg_tape_arena_high_water(const tg_tape *t) { return t ? t->arena.high_water : 0; }

static tg_tape_mem_split split_of(const size_t *kind) {
    tg_tape_mem_split s = {kind[TG__MEM_ACT], kind[TG__MEM_SAVED], kind[TG__MEM_GRAD], kind[TG__MEM_SCRATCH],
                           kind[TG__MEM_RECORDS], 0};
    s.total = s.activations + s.saved + s.grads + s.scratch + s.records;
    return s;
}

int tg_tape_memory(const tg_tape *t, tg_tape_mem *out) {
    if (!t) return tg_fail(TG_ERR_ARG, "tape_memory: tape is NULL");
    if (!out) return tg_fail(TG_ERR_ARG, "tape_memory: out is NULL");
    out->now = split_of(t->arena.kind_used);
    out->peak = split_of(t->arena.kind_peak);
    out->capacity = t->arena.capacity;
    return 0;
}

void *tg_tape_alloc(tg_tape *t, size_t bytes) {
    if (!t) {
        tg_fail(TG_ERR_ARG, "tape_alloc: tape is NULL");
        return NULL;
    }
    return alloc_as(t, bytes, TG__MEM_SCRATCH);
}

void *tg_node_save(tg_tape *t, tg_node *n, size_t bytes, const char *what) {
    if (!n) {
        tg_fail(TG_ERR_ARG, "node_save: node is NULL");
        return NULL;
    }
    if (!t) {
        tg_fail(TG_ERR_ARG, "node_save: tape is NULL");
        return NULL;
    }
    void *p = alloc_as(t, bytes, TG__MEM_SAVED);
    if (p) {
        n->saved_bytes += bytes;
        n->saved_what = what;
    }
    return p;
}

// ----------------------------------------------------------------------------
// random numbers: splitmix64, small and good enough for masks and init

void tg_tape_seed(tg_tape *t, uint64_t seed) {
    if (t) t->rng = seed;
}
uint64_t tg_tape_rng_state(const tg_tape *t) { return t ? t->rng : 0; }
uint64_t *tg_tape_rng(tg_tape *t) { return t ? &t->rng : NULL; }

uint64_t tg_rand_u64(uint64_t *s) {
    if (!s) return 0;
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float tg_rand_uniform(uint64_t *s) { return (float)(tg_rand_u64(s) >> 40) * (1.0f / 16777216.0f); }

float tg_rand_normal(uint64_t *s) {
    float u1 = tg_rand_uniform(s), u2 = tg_rand_uniform(s);
    return sqrtf(-2.0f * logf(1.0f - u1)) * cosf(6.2831853f * u2);
}

float tg_tape_uniform(tg_tape *t) { return t ? tg_rand_uniform(&t->rng) : 0.0f; }

// ----------------------------------------------------------------------------
// the non-finite check: one branch per op when off

void tg_tape_check_finite(tg_tape *t, bool on) {
    if (t) t->check_finite = on;
}

/* Index of the first NaN or Inf in x[0..n), or -1. */
static int64_t first_nonfinite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return -1;
}

static const char *kind_of(float v) { return isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf"; }

/* After forward: the output must be finite; say whether an input already was not. */
static int check_forward(const tg_tape *t, const tg_node *n) {
    const tg_tensor *y = n->out;
    int64_t i = first_nonfinite(y->data, y->size);
    if (i < 0) return 0;
    char node[32], sy[64], cause[160] = "; its inputs are finite";
    if (n->record) snprintf(node, sizeof node, "node %%%d", t->n_nodes);
    else snprintf(node, sizeof node, "an unrecorded node");
    for (int k = 0; k < n->n_in; k++) {
        int64_t j = first_nonfinite(n->in[k]->data, n->in[k]->size);
        if (j >= 0) {
            char l[TG_NAME_LEN];
            snprintf(cause, sizeof cause, "; input %d (%s) already holds %s at element %lld", k,
                     tg__label(n->in[k], l, sizeof l), kind_of(n->in[k]->data[j]), (long long)j);
            break;
        }
    }
    return tg_fail(TG_ERR_NONFINITE, "%s: forward output %s of %s holds %s at element %lld%s", n->op->name,
                   tg_shape_str(y, sy, sizeof sy), node, kind_of(y->data[i]), (long long)i, cause);
}

/* After a VJP: every input gradient it wrote must be finite. */
static int check_backward(const tg_node *n) {
    for (int k = 0; k < n->n_in; k++) {
        const tg_tensor *x = n->in[k];
        if (!x->requires_grad || !x->grad) continue;
        int64_t i = first_nonfinite(x->grad, x->size);
        if (i < 0) continue;
        char l[TG_NAME_LEN], sx[64], sdy[160] = "";
        if (first_nonfinite(n->out->grad, n->out->size) >= 0)
            snprintf(sdy, sizeof sdy, "; the gradient dy at its output already was not finite");
        return tg_fail(TG_ERR_NONFINITE, "%s: backward of node %%%d gave input %d (%s, %s) a gradient holding %s at "
                       "element %lld%s", n->op->name, n->id, k, tg__label(x, l, sizeof l),
                       tg_shape_str(x, sx, sizeof sx), kind_of(x->grad[i]), (long long)i, sdy);
    }
    return 0;
}

// ----------------------------------------------------------------------------
// the changed-input check

void tg_tape_check_inputs(tg_tape *t, bool on) {
    if (t) t->check_inputs = on;
}

/* A 64-bit hash of a tensor's data (multiply-xor over 32-bit words). */
static uint64_t data_hash(const tg_tensor *x) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)x->size;
    for (int64_t i = 0; i < x->size; i++) {
        uint32_t u;
        memcpy(&u, &x->data[i], 4);
        h = (h ^ u) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 29;
    }
    return h;
}

static int hash_inputs(tg_tape *t, tg_node *n) {
    if (!(n->input_hash = alloc_as(t, (size_t)(n->n_in ? n->n_in : 1) * sizeof(uint64_t), TG__MEM_RECORDS)))
        return TG_ERR_NOMEM;
    for (int k = 0; k < n->n_in; k++) n->input_hash[k] = data_hash(n->in[k]);
    return 0;
}

static int check_inputs(const tg_node *n) {
    for (int k = 0; k < n->n_in; k++)
        if (data_hash(n->in[k]) != n->input_hash[k]) {
            char l[TG_NAME_LEN];
            return tg_fail(TG_ERR_STATE, "%s: input %d (%s) of node %%%d changed between forward and backward (an "
                           "optimizer step or a refilled batch before backward?): its VJP would read the new values",
                           n->op->name, k, tg__label(n->in[k], l, sizeof l), n->id);
        }
    return 0;
}

// ----------------------------------------------------------------------------
// recording

/* The descriptor has what tg_apply calls (vjp only when it records). */
static int check_op(const tg_op *op, int n_in, tg_tensor **in, const void *attr) {
    if (!op) return tg_fail(TG_ERR_ARG, "apply: op is NULL");
    const char *name = op->name ? op->name : "apply";
    if (!op->name) return tg_fail(TG_ERR_ARG, "apply: the op has no name");
    if (!op->shape || !op->forward)
        return tg_fail(TG_ERR_ARG, "%s: the op's descriptor has no %s function", name, !op->shape ? "shape" : "forward");
    if (op->attr_size && !attr)
        return tg_fail(TG_ERR_ARG, "%s: the op takes %zu bytes of attributes, and attr is NULL", name, op->attr_size);
    if (n_in < 0 || n_in > TG_MAX_INPUTS)
        return tg_fail(TG_ERR_ARG, "%s: %d inputs, an op takes 0 to %d", name, n_in, TG_MAX_INPUTS);
    if (n_in && !in) return tg_fail(TG_ERR_ARG, "%s: %d inputs, and the input array is NULL", name, n_in);
    return 0;
}

/* The finite check on the leaves among the inputs: 0, or TG_ERR_NONFINITE naming the first bad one. */
static int check_leaves(const tg_tape *t, const tg_op *op, tg_tensor **in, int n_in) {
    for (int k = 0; k < n_in; k++) {
        if (in[k]->node) continue; /* an op's output: checked when it was made */
        int64_t j = first_nonfinite(in[k]->data, in[k]->size);
        if (j < 0) continue;
        char l[TG_NAME_LEN], sx[64];
        return tg_fail(TG_ERR_NONFINITE, "%s: input %d (%s, %s) holds %s at element %lld: a non-finite value "
                       "entered the tape from a leaf (an input batch or a parameter), before node %%%d",
                       op->name, k, tg__label(in[k], l, sizeof l), tg_shape_str(in[k], sx, sizeof sx),
                       kind_of(in[k]->data[j]), (long long)j, t->n_nodes);
    }
    return 0;
}

tg_tensor *tg_apply(tg_tape *t, const tg_op *op, tg_tensor **in, int n_in, const void *attr) {
    if (check_op(op, n_in, in, attr) < 0) return NULL;
    if (!t) {
        tg_fail(TG_ERR_ARG, "%s: tape is NULL", op->name);
        return NULL;
    }
    bool needs_grad = false;
    for (int i = 0; i < n_in; i++) {
        if (!in[i]) { /* an earlier op failed: keep its message */
            if (!tg_last_error_code()) tg_fail(TG_ERR_ARG, "%s: input %d is NULL", op->name, i);
            return NULL;
        }
        char what[24];
        snprintf(what, sizeof what, "input %d", i);
        if (tg__check_tensor(op->name, t, in[i], what) < 0) return NULL;
        if (!in[i]->data) {
            tg_fail(TG_ERR_ARG, "%s: input %d has no data", op->name, i);
            return NULL;
        }
        needs_grad |= in[i]->requires_grad;
    }
    if (t->grad_enabled && needs_grad && !op->vjp) {
        tg_fail(TG_ERR_ARG, "%s: an input requires a gradient, and the op's descriptor has no vjp", op->name);
        return NULL;
    }
    if (t->has_split && !op->batch_split) {
        tg_fail(TG_ERR_ARG, "%s: not supported with the batch split across processes (it would not give the "
                "single-process result)", op->name);
        return NULL;
    }
    if (t->check_finite && check_leaves(t, op, in, n_in) < 0) return NULL;
    tg_node *n = alloc_as(t, sizeof *n, TG__MEM_RECORDS);
    if (!n) return NULL;
    memset(n, 0, sizeof *n);
    n->op = op;
    n->scope = t->scope;
    n->n_in = n_in;
    for (int i = 0; i < n_in; i++) n->in[i] = in[i];
    if (op->attr_size) {
        if (!(n->attr = alloc_as(t, op->attr_size, TG__MEM_RECORDS))) return NULL;
        memcpy(n->attr, attr, op->attr_size);
    }
    n->record = t->grad_enabled && needs_grad;

    int ndim = 0, shape[TG_MAX_DIMS] = {1, 1, 1, 1};
    if (op->shape(n, &ndim, shape) < 0 || tg__check_shape(op->name, ndim, shape) < 0) return NULL;
    tg_tensor *out;
    if (op->aliases_input) {
        if (!(out = alloc_as(t, sizeof *out, TG__MEM_ACT))) return NULL; /* the output's header */
        memset(out, 0, sizeof *out);
        out->ndim = ndim;
        for (int i = 0; i < TG_MAX_DIMS; i++) out->shape[i] = i < ndim ? shape[i] : 1;
        out->size = tg__numel(ndim, shape);
        if (n_in < 1 || out->size != in[0]->size) {
            tg_fail(TG_ERR_ARG, "%s: an output that shares its input's data needs as many elements", op->name);
            return NULL;
        }
        out->data = in[0]->data;
        out->tape = t;
        out->generation = t->generation;
    } else if (!(out = tg__tensor_arena(t, ndim, shape, false))) {
        return NULL;
    }
    n->out = out;

    /* the worker spans of a recorded node's forward carry the id it is about to get */
    if (t->trace && n->record) tg__trace_enter(t->trace, t->n_nodes, 0);
    double t0 = tg__now();
    int rc = op->forward(t, n);
    double t1 = tg__now();
    if (t->trace && n->record) tg__trace_leave(t->trace);
    if (rc < 0) return NULL;
    n->t_forward_start = t0;
    n->t_forward = t1 - t0; /* exact (two close clock readings): t0 + t_forward is t1 */
    n->arena_after_forward = t->arena.used;
    if (t->check_finite && check_forward(t, n) < 0) return NULL;

    if (n->record && t->check_inputs && hash_inputs(t, n) < 0) return NULL;
    if (n->record) {
        n->id = t->n_nodes++;
        n->prev = t->last;
        if (t->last) t->last->next = n;
        else t->first = n;
        t->last = n;
        out->requires_grad = true;
        out->node = n;
    }
    return out;
}

// ----------------------------------------------------------------------------
// the reverse sweep

/* Gradients of tape tensors start each sweep "unset": their memory is not
 * zeroed. For an op with overwrites_grads the sweep decides, just before the
 * vjp, which inputs it must store into (n->store[i]); for any other op it
 * zeroes them just before its vjp runs. Leaves
 * (heap tensors) always accumulate. With the finite check on, unset memory is
 * filled with NaN first, so an element an op forgets to store is reported. */
static void mark_unset(tg_tape *t, tg_tensor *x) {
    x->grad_unset = true;
    if (t->check_finite) memset(x->grad, 0xff, (size_t)x->size * sizeof(float)); /* all ones: NaN */
}

static int ensure_grad(tg_tape *t, tg_tensor *x) {
    if (x->grad) return 0;
    if (x->on_heap) x->grad = tg__calloc((size_t)x->size, sizeof(float));
    else if ((x->grad = tg__arena_alloc_as(&t->arena, (size_t)x->size * sizeof(float), TG__MEM_GRAD))) mark_unset(t, x);
    return x->grad ? 0 : tg_fail(TG_ERR_NOMEM, "backward: out of memory");
}

static void zero_if_unset(tg_tensor *x) {
    if (x->grad && x->grad_unset) memset(x->grad, 0, (size_t)x->size * sizeof(float));
    x->grad_unset = false;
}

/* The store-or-add decision, made once per vjp: store into input i when the op
 * overwrites, i takes a gradient that holds no values yet, and i is the first
 * position of that tensor among the node's inputs (a tensor given twice is
 * stored at its first position, then added). */
static void decide_store(tg_node *n) {
    for (int i = 0; i < n->n_in; i++) {
        tg_tensor *x = n->in[i];
        bool s = n->op->overwrites_grads && x->requires_grad && x->grad_unset;
        for (int j = 0; j < i && s; j++) s = n->in[j] != x;
        n->store[i] = s;
    }
}

int tg_backward_seed(tg_tape *t, tg_tensor *y, const float *dy) {
    if (!t) return tg_fail(TG_ERR_ARG, "backward: tape is NULL");
    if (tg__check_tensor("backward", t, y, "the tensor") < 0) return tg_last_error_code();
    if (!dy) return tg_fail(TG_ERR_ARG, "backward: seed gradient is NULL");
    if (!y->requires_grad)
        return tg_fail(TG_ERR_STATE, "backward: the tensor does not require a gradient "
                                     "(no input required one, or gradients were disabled)");
    /* intermediate gradients start from zero on every sweep; leaves accumulate */
    for (tg_node *n = t->first; n; n = n->next)
        if (n->out->grad) mark_unset(t, n->out);
    if (ensure_grad(t, y) < 0) return TG_ERR_NOMEM;
    if (y->grad_unset) memcpy(y->grad, dy, (size_t)y->size * sizeof(float)), y->grad_unset = false;
    else
        for (int64_t i = 0; i < y->size; i++) y->grad[i] += dy[i];
    int64_t bad = t->check_finite ? first_nonfinite(y->grad, y->size) : -1;
    if (bad >= 0)
        return tg_fail(TG_ERR_NONFINITE, "backward: the seed gradient holds %s at element %lld",
                       kind_of(y->grad[bad]), (long long)bad);

    for (tg_node *n = y->node; n; n = n->prev) {
        if (!n->out->grad || n->out->grad_unset) continue; /* not on a path to y */
        for (int i = 0; i < n->n_in; i++) {
            if (!n->in[i]->requires_grad) continue;
            if (ensure_grad(t, n->in[i]) < 0) return TG_ERR_NOMEM;
            if (!n->op->overwrites_grads) zero_if_unset(n->in[i]);
        }
        if (n->input_hash && check_inputs(n) < 0) return TG_ERR_STATE;
        decide_store(n);
        if (t->trace) tg__trace_enter(t->trace, n->id, 1);
        double t0 = tg__now();
        int rc = n->op->vjp(t, n);
        double t1 = tg__now();
        if (t->trace) tg__trace_leave(t->trace);
        if (rc < 0) return rc;
        n->t_backward_start = t0;
        n->t_backward = t1 - t0;
        n->arena_after_backward = t->arena.used;
        for (int i = 0; i < n->n_in; i++) { /* stored into: set; an input the vjp left alone got nothing: zero */
            if (n->store[i]) n->in[i]->grad_unset = false;
            if (n->in[i]->requires_grad) zero_if_unset(n->in[i]);
        }
        if (t->check_finite && check_backward(n) < 0) return TG_ERR_NONFINITE;
    }
    for (tg_node *n = t->first; n; n = n->next) zero_if_unset(n->out); /* off the path to y: zeros, as before */
    return 0;
}

int tg_backward(tg_tape *t, tg_tensor *loss) {
    if (!t) return tg_fail(TG_ERR_ARG, "backward: tape is NULL");
    if (tg__check_tensor("backward", t, loss, "the tensor") < 0) return tg_last_error_code();
    if (loss->size != 1) {
        char s[64];
        return tg_fail(TG_ERR_SHAPE, "backward: loss has shape %s; a non-scalar needs a seed gradient (tg_backward_seed)",
                       tg_shape_str(loss, s, sizeof s));
    }
    const float one = 1.0f;
    return tg_backward_seed(t, loss, &one);
}
