/* memory.c: counted heap allocation and the tape's arena. */
#include "internal.h"
#include <stdatomic.h>
#include <string.h>

static atomic_uint_fast64_t n_allocs;

uint64_t tg_alloc_count(void) { return atomic_load(&n_allocs); }

void *tg__malloc(size_t bytes) {
    atomic_fetch_add(&n_allocs, 1);
    return malloc(bytes ? bytes : 1);
}

void *tg__calloc(size_t n, size_t size) {
    atomic_fetch_add(&n_allocs, 1);
    return calloc(n ? n : 1, size ? size : 1);
}

void *tg__realloc(void *p, size_t bytes) {
    atomic_fetch_add(&n_allocs, 1);
    return realloc(p, bytes ? bytes : 1);
}

void tg__free(void *p) { free(p); }

// ----------------------------------------------------------------------------
// arena

#define ALIGN 64
#define MIN_CHUNK ((size_t)1 << 20)

struct tg__chunk {
    tg__chunk *next;     /* the chunk made after this one */
    size_t size, used;
    unsigned char *base; /* aligned start of the usable bytes */
};

static tg__chunk *chunk_new(size_t size) {
    unsigned char *raw = tg__malloc(sizeof(tg__chunk) + size + ALIGN);
    if (!raw) return NULL;
    tg__chunk *c = (tg__chunk *)raw;
    uintptr_t p = (uintptr_t)(raw + sizeof(tg__chunk));
    c->base = (unsigned char *)((p + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1));
    c->size = size;
    c->used = 0;
    c->next = NULL;
    return c;
}

/* Chunks are kept until the arena is released and filled again in the order
 * they were made, so a step that repeats the last one's allocations lands in
 * the same places without a malloc, and a pointer into an earlier generation
 * still points at memory the arena owns (a stale tensor can be recognised
 * instead of read after free). */
void *tg__arena_alloc(tg__arena *a, size_t bytes) {
    size_t need = (bytes + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (need < bytes) return NULL; /* overflow */
    tg__chunk *c = a->head;
    while (c && c->size - c->used < need) c = c->next; /* what is left of a skipped chunk waits for the reset */
    if (!c) {
        size_t size = a->capacity > MIN_CHUNK ? a->capacity : MIN_CHUNK; /* doubles capacity */
        if (size < need) size = need;
        c = chunk_new(size);
        if (!c) return NULL;
        if (a->last) a->last->next = c;
        else a->first = c;
        a->last = c;
        a->capacity += size;
    }
    a->head = c;
    void *p = c->base + c->used;
    c->used += need;
    a->used += need;
    if (a->used > a->high_water) a->high_water = a->used;
    return p;
}

void tg__arena_reset(tg__arena *a, size_t skip) {
    for (tg__chunk *c = a->first; c; c = c->next) c->used = 0;
    skip = (skip + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (a->first && skip < a->first->size) a->first->used = skip; /* not counted as in use */
    a->head = a->first;
    a->used = 0;
}

/* Is p inside memory the arena has handed out (in any generation)? */
bool tg__arena_owns(const tg__arena *a, const void *p) {
    for (const tg__chunk *c = a->first; c; c = c->next)
        if ((const unsigned char *)p >= c->base && (const unsigned char *)p < c->base + c->size) return true;
    return false;
}

void tg__arena_release(tg__arena *a) {
    for (tg__chunk *c = a->first, *n; c; c = n) {
        n = c->next;
        tg__free(c);
    }
    a->first = a->last = a->head = NULL;
    a->used = a->capacity = 0;
}
