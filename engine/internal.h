/* internal.h: what the engine's and the ops' files share but users don't see. */
#ifndef TG_INTERNAL_H
#define TG_INTERNAL_H

#include "tapegrad_op.h"
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
/* How many mallocs, callocs and reallocs the library made (for the no-malloc tests; not exported). */
uint64_t tg__alloc_count(void);

/* Arena: chunks of memory handed out by bumping a pointer, all freed at once. */
typedef struct tg__chunk tg__chunk;
typedef struct {
    const void *owner;  /* what owns the arena (its tape), for tg__arena_owner */
    tg__chunk *first, *last; /* every chunk, oldest first */
    tg__chunk *head;    /* the chunk being filled */
    size_t skip;        /* where this generation starts in each chunk */
    size_t used;        /* bytes in use over all chunks */
    size_t high_water;
    size_t capacity;    /* bytes over all chunks */
} tg__arena;

void *tg__arena_alloc(tg__arena *a, size_t bytes); /* 64-byte aligned, not zeroed; NULL if out of memory */
/* Frees nothing: every chunk is filled again, from byte skip (at most 192) on. */
void tg__arena_reset(tg__arena *a, size_t skip);
/* The owner of the live arena whose chunks hold address p, or NULL (p is not
 * in any: heap memory, or a freed arena's). Reads no memory at p. */
const void *tg__arena_owner(const void *p);
void tg__arena_release(tg__arena *a);

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
};

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

/* Threads (threads.c): how many for a loop over items, each worth at least
 * min_items of work per thread; 1 inside a parallel region. Loops split this way
 * must give the same result for any count (each item computed alone, sums in a
 * fixed order). */
int tg__threads_for(int64_t items, int64_t min_items);
int tg__thread_id(void);
#define TG_MIN_PER_THREAD 32768 /* elements of an elementwise loop worth a thread */

/* Elementwise work split over threads in blocks of TG_BLOCK elements: the
 * statement after it runs with i0 the block's first element and n its length.
 * Every element is computed on its own, so results do not depend on the threads. */
#define TG_BLOCK 8192
#define TG_FOR_BLOCKS(size, i0, n)                                                                           \
    for (int64_t tg__size = (size), tg__once = 1; tg__once; tg__once = 0)                                    \
        _Pragma("omp parallel for num_threads(tg__threads_for(tg__size, TG_MIN_PER_THREAD)) schedule(static)") \
        for (int64_t i0 = 0; i0 < tg__size; i0 += TG_BLOCK)                                                  \
            for (int64_t n = tg__size - i0 < TG_BLOCK ? tg__size - i0 : TG_BLOCK; n; n = 0)

#endif
