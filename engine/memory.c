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
    tg__chunk *older;
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
    c->older = NULL;
    return c;
}

void *tg__arena_alloc(tg__arena *a, size_t bytes) {
    size_t need = (bytes + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (need < bytes) return NULL; /* overflow */
    tg__chunk *c = a->head;
    if (!c || c->size - c->used < need) {
        size_t size = a->capacity > MIN_CHUNK ? a->capacity : MIN_CHUNK; /* doubles capacity */
        if (size < need) size = need;
        tg__chunk *n = chunk_new(size);
        if (!n) return NULL;
        n->older = c;
        a->head = c = n;
        a->capacity += size;
    }
    void *p = c->base + c->used;
    c->used += need;
    a->used += need;
    if (a->used > a->high_water) a->high_water = a->used;
    return p;
}

void tg__arena_reset(tg__arena *a) {
    if (a->head && a->head->older) {
        /* More than one chunk: trade them for one as large as the high-water
         * mark, so the next step fits without allocating. */
        tg__arena_release(a);
        size_t hw = a->high_water;
        a->head = chunk_new(hw);
        a->capacity = a->head ? hw : 0;
        a->high_water = hw;
    }
    if (a->head) a->head->used = 0;
    a->used = 0;
}

void tg__arena_release(tg__arena *a) {
    for (tg__chunk *c = a->head, *o; c; c = o) {
        o = c->older;
        tg__free(c);
    }
    a->head = NULL;
    a->used = a->capacity = 0;
}
