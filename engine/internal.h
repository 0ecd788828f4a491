/* internal.h: what the engine's and the ops' files share but users don't see. */
#ifndef TG_INTERNAL_H
#define TG_INTERNAL_H

#include "tapegrad_op.h"
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Bugs inside the library (never a caller's mistake) stop here with file:line. */
#define TG_ASSERT(c)                                                            \
    do {                                                                        \
        if (!(c)) {                                                             \
            fprintf(stderr, "tapegrad: internal error at %s:%d: %s\n", __FILE__, \
                    __LINE__, #c);                                              \
            abort();                                                            \
        }                                                                       \
    } while (0)

/* Every heap allocation of the library goes through these (and is counted). */
void *tg__malloc(size_t bytes);
void *tg__calloc(size_t n, size_t size);
void *tg__realloc(void *p, size_t bytes);
void tg__free(void *p);
/* Grows *array (of size-byte elements, *cap of them) to hold one more than n, doubling it (4 at
 * first); false if out of memory (the array is then as it was). */
bool tg__reserve(void **array, int n, int *cap, size_t size);
/* How many mallocs, callocs and reallocs the library made (for the no-malloc tests; not exported). */
uint64_t tg__alloc_count(void);

/* Arena: chunks of memory handed out by bumping a pointer, all freed at once. */
typedef struct tg__chunk tg__chunk;
/* What arena bytes hold, for tg_tape_memory: each allocation is counted as one kind. */
enum { TG__MEM_ACT, TG__MEM_SAVED, TG__MEM_GRAD, TG__MEM_SCRATCH, TG__MEM_RECORDS, TG__MEM_KINDS };
typedef struct {
    const void *owner;  /* what owns the arena (its tape), for tg__arena_owner */
    tg__chunk *first, *last; /* every chunk, oldest first */
    tg__chunk *head;    /* the chunk being filled */
    size_t skip;        /* where this generation starts in each chunk */
    size_t used;        /* bytes in use over all chunks */
    size_t high_water;
    size_t capacity;    /* bytes over all chunks */
    size_t kind_used[TG__MEM_KINDS]; /* used, split by kind (they sum to it) */
    size_t kind_peak[TG__MEM_KINDS]; /* the split when used last rose to a new high_water */
} tg__arena;

/* 64-byte aligned, not zeroed; NULL if out of memory. tg__arena_alloc counts the bytes as
 * activations (what tensor.c makes: tensors), tg__arena_alloc_as as the kind given. */
void *tg__arena_alloc(tg__arena *a, size_t bytes);
void *tg__arena_alloc_as(tg__arena *a, size_t bytes, int kind);
/* Frees nothing: every chunk is filled again, from byte skip (at most 192) on. */
void tg__arena_reset(tg__arena *a, size_t skip);
/* The owner of the live arena whose chunks hold address p, or NULL (p is not
 * in any: heap memory, or a freed arena's). Reads no memory at p. */
const void *tg__arena_owner(const void *p);
void tg__arena_release(tg__arena *a);

/* Timelines (trace.c). A user span (tg_tape_span_begin/end), kept on the tape until tg_tape_reset. */
#define TG__SPANS 64      /* recorded per step; more are counted as dropped */
#define TG__SPAN_DEPTH 8  /* open at once */
typedef struct {
    char name[56];
    double t0, t1; /* t1 0 while open */
    int depth;
} tg__span;
typedef struct tg__trace tg__trace; /* the worker spans' buffers, while tracing is on */

struct tg_tape {
    tg__arena arena;
    tg_node *first, *last;
    int n_nodes;
    bool grad_enabled;
    bool check_finite;  /* tg_tape_check_finite */
    bool check_inputs;  /* tg_tape_check_inputs */
    uint64_t rng;
    uint64_t generation; /* bumped by every reset: a tensor of an older one is stale */
    const char *scope;   /* tg_tape_set_scope: a copy in the arena, or NULL */
    tg__trace *trace;    /* tg_tape_set_trace: on when not NULL */
    tg__span spans[TG__SPANS];
    int n_spans, spans_dropped;
    int open[TG__SPAN_DEPTH]; /* the open spans' indices in spans (-1: dropped), innermost last */
    int depth;
    tg_batch_split split; /* tg_tape_set_batch_split, when has_split */
    bool has_split;
};

/* The tape's batch split as an op and its kernels use it (split.c). */
typedef struct {
    tg_tape *t;
    int global, first, count; /* images: the global batch's, this process's first, and how many */
    int chunks, c0, c1;       /* the global batch's chunks (TG_BATCH_CHUNKS at most); this process's [c0, c1) */
    int rc;                   /* 0, or the first failure of tg__split_gather (its message set) */
} tg__split;
/* For op who, whose batch here has n images: 0 with *s NULL when the tape has no split; else *s
 * points at s filled in, or a TG_ERR_SHAPE message when n is not this process's share. */
int tg__split_of(tg_tape *t, const char *who, int n, tg__split *s, tg__split **out);
/* Every unit of buf from the process that holds it: the units are the global batch's chunks (chunks)
 * or its images, unit_bytes each; this process's own are in place. A failure (out of memory) is
 * kept in s->rc for the op to return. */
void tg__split_gather(tg__split *s, void *buf, size_t unit_bytes, bool chunks);

/* 0 if x may be used on tape t now: a heap or caller-made tensor, or a tensor
 * of t's current generation. Otherwise a TG_ERR_STATE message from who that says
 * whether x is stale (made before a tg_tape_reset) or belongs to another tape.
 * Reads x only where it is sure to be memory: a heap tensor, or t's own arena. */
int tg__check_tensor(const char *who, const tg_tape *t, const tg_tensor *x, const char *what);
/* x is not NULL, and not a tape tensor of an earlier generation (its tape must be alive). */
bool tg__tensor_current(const tg_tensor *x);

/* At most this many elements in a tensor: kernels index planes and matrices with int. */
#define TG_MAX_ELEMENTS 2147483647
/* Strides, paddings, dilations and pooling windows above this are refused (their
 * products with sizes must fit an int). */
#define TG_MAX_WINDOW 65536
/* 0, or a TG_ERR_ARG message naming who, for a shape a tensor cannot have. */
int tg__check_shape(const char *who, int ndim, const int *shape);
/* A tensor from the tape's arena; zero-filled if asked. NULL (message set) if out of memory. */
tg_tensor *tg__tensor_arena(tg_tape *t, int ndim, const int *shape, bool zero);
/* Elements of a shape. */
int64_t tg__numel(int ndim, const int *shape);
/* Clock in seconds. */
double tg__now(void);
/* A buffer that holds any tensor's name and its NUL (tg_tensor's name). */
#define TG_NAME_LEN ((int)sizeof(((tg_tensor *)0)->name))
/* How dumps and messages call a tensor: "%3" for a node's output, else its
 * name, else "param" (a leaf that takes a gradient) or "input". */
const char *tg__label(const tg_tensor *x, char *buf, size_t len);

/* A node's numbers, for dumps and timelines (dump.c): whether its vjp ran in the last sweep
 * (its output has a gradient and the vjp started), its backward FLOPs (-1 without a count or a
 * vjp) and the bytes a phase moved (the op's own count or the default tapegrad_op.h describes;
 * -1 for a vjp that did not run). */
bool tg__backward_ran(const tg_node *n);
int64_t tg__node_flops_backward(const tg_node *n);
int64_t tg__node_bytes(const tg_node *n, bool backward);

/* Threads (threads.c): how many for a loop over items, each worth at least
 * min_items of work per thread; 1 inside a parallel region. Loops split this way
 * must give the same result for any count (each item computed alone, sums in a
 * fixed order). */
int tg__threads_for(int64_t items, int64_t min_items);
int tg__thread_id(void);
#define TG_MIN_PER_THREAD 32768 /* elements of an elementwise loop worth a thread */

/* Worker spans for timelines (trace.c). While a tape with tracing on (tg_tape_set_trace) runs a
 * node's forward or VJP, tg__trace_mine, the running thread's own, points at its buffers.
 * TG_TRACE_CAPTURE() before a parallel region (in the thread that starts it) reads it into a
 * variable the region's threads share; TG_TRACE_ITER(i) at the top of the body of a parallel
 * loop over i, or TG_TRACE_REGION() at the top of a parallel region's body, records when the
 * body started and ended on the calling thread; consecutive iterations of one loop on one
 * thread (i, i+1, ...) become one span. So a region records into the trace of the tape whose
 * node started it, and only while that node runs: other threads' tapes never see it. Off, it
 * costs a predictable branch per iteration; on, two clock reads (one while iterations merge),
 * no allocation (the buffers are made when tracing is switched on; a full one counts what it
 * drops). Results never change: it only reads the clock. GCC and clang (the cleanup
 * attribute); elsewhere it records nothing. */
#if defined(__GNUC__)
#define TG__UNLIKELY(c) __builtin_expect(!!(c), 0)
#else
#define TG__UNLIKELY(c) (c)
#endif
typedef struct tg__wspan tg__wspan;
typedef struct {
    tg__wspan *rec; /* the span the body extends, or NULL: not recording */
    int once;       /* for TG_FOR_BLOCKS's one-pass loop */
} tg__trace_mark;
typedef struct {
    tg__trace *tr; /* the trace the region records into, or NULL */
    int once;      /* for TG_FOR_BLOCKS's one-pass loop */
} tg__trace_cap;
extern _Thread_local tg__trace *tg__trace_mine;
tg__trace_mark tg__trace_open(tg__trace *tr, const char *file, int line, int64_t idx);
void tg__trace_close(tg__wspan *rec);
static inline tg__trace_mark tg__trace_begin(tg__trace *tr, const char *file, int line, int64_t idx) {
    if (TG__UNLIKELY(tr != NULL)) return tg__trace_open(tr, file, line, idx);
    return (tg__trace_mark){NULL, 1};
}
static inline void tg__trace_end(tg__trace_mark *m) {
    if (TG__UNLIKELY(m->rec != NULL)) tg__trace_close(m->rec);
}
#define TG_TRACE_CAPTURE() const tg__trace_cap tg__tcap = {tg__trace_mine, 1}
#if defined(__GNUC__)
#define TG__TRACE_MARK(idx)                                                                      \
    tg__trace_mark tg__tmark __attribute__((cleanup(tg__trace_end), unused)) =                   \
        tg__trace_begin(tg__tcap.tr, __FILE__, __LINE__, (int64_t)(idx))
#define TG_TRACE_ITER(i) TG__TRACE_MARK(i)
#else
#define TG__TRACE_MARK(idx) tg__trace_mark tg__tmark = {NULL, 1}
#define TG_TRACE_ITER(i) ((void)tg__tcap)
#endif
#define TG_TRACE_REGION() TG_TRACE_ITER(-1)
/* The engine's side: a node's forward (phase 0) or VJP (1) starts and ends on a tracing tape. */
void tg__trace_enter(tg__trace *tr, int node, int phase);
void tg__trace_leave(tg__trace *tr);
void tg__trace_reset(tg__trace *tr); /* tg_tape_reset: forget the step's spans */
void tg__trace_free(tg__trace *tr);

/* Elementwise work split over threads in blocks of TG_BLOCK elements: the
 * statement after it runs with i0 the block's first element and n its length.
 * Every element is computed on its own, so results do not depend on the threads. Each
 * thread's run of blocks is a worker span on timelines (TG_TRACE_ITER). */
#define TG_BLOCK 8192
#define TG_FOR_BLOCKS(size, i0, n)                                                                           \
    for (tg__trace_cap tg__tcap = {tg__trace_mine, 1}; tg__tcap.once; tg__tcap.once = 0)                     \
    for (int64_t tg__size = (size), tg__once = 1; tg__once; tg__once = 0)                                    \
        _Pragma("omp parallel for num_threads(tg__threads_for(tg__size, TG_MIN_PER_THREAD)) schedule(static)") \
        for (int64_t i0 = 0; i0 < tg__size; i0 += TG_BLOCK)                                                  \
            for (TG__TRACE_MARK(i0 / TG_BLOCK); tg__tmark.once; tg__tmark.once = 0)                          \
                for (int64_t n = tg__size - i0 < TG_BLOCK ? tg__size - i0 : TG_BLOCK; n; n = 0)

/* ONNX export (onnx.c): the model the recorded nodes of tape compute, from input to output,
 * encoded as an ONNX ModelProto into *bytes (tg__malloc'd, *len bytes). named: the model's
 * parameters and buffers, initializers under their names when used. The model is traced twice,
 * a and b at two batch sizes (neither 1), and the two graphs must be the same apart from the
 * batch, written as the symbolic "N"; a's is written. On failure *bad is the node whose export
 * failed or differs (NULL if none did) and the message is set. */
typedef struct {
    const tg_tape *tape;
    const tg_tensor *input, *output;
    tg_tensor *const *named;
    int n_named;
    bool fold;       /* tg_onnx_folding */
    const char *doc; /* the graph's doc_string, or NULL */
} tg__onnx_args;
int tg__onnx_encode(const tg__onnx_args *a, const tg__onnx_args *b, uint8_t **bytes, size_t *len, const tg_node **bad);

#endif
