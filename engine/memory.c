/* memory.c: counted heap allocation and the tape's arena. */
#include "internal.h"
#include <stdatomic.h>
#include <pthread.h>
#include <string.h>

static atomic_uint_fast64_t n_allocs;

uint64_t tg__alloc_count(void) { return atomic_load(&n_allocs); }

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

bool tg__reserve(void **array, int n, int *cap, size_t size) {
    if (n < *cap) return true;
    int c = *cap ? 2 * *cap : 4;
    void *p = tg__realloc(*array, (size_t)c * size);
    if (!p) return false;
    *array = p, *cap = c;
    return true;
}

// ----------------------------------------------------------------------------
// arena

#define ALIGN 64
#define MIN_CHUNK ((size_t)1 << 20)
#define SKIP_MAX (3 * ALIGN) /* the largest offset a generation starts at */

struct tg__chunk {
    tg__chunk *next;     /* the chunk made after this one */
    size_t size, used;   /* used counts from base: a generation's bytes are [skip, skip + size) */
    unsigned char *base; /* aligned start of the chunk's bytes (size + SKIP_MAX of them) */
};

/* Every chunk of every arena, with its owner, so that an address can be told
 * to belong to one (a tape tensor, stale or not) without reading it. Chunks
 * are made rarely (the arena's growth), so a list under a mutex will do. */
typedef struct {
    const unsigned char *lo, *hi;
    const void *owner;
} chunk_range;
static pthread_mutex_t ranges_lock = PTHREAD_MUTEX_INITIALIZER;
static chunk_range *ranges;
static size_t n_ranges, cap_ranges;

static bool ranges_add(const tg__chunk *c, const void *owner) {
    bool ok = true;
    pthread_mutex_lock(&ranges_lock);
    if (n_ranges == cap_ranges) {
        size_t cap = cap_ranges ? 2 * cap_ranges : 64;
        chunk_range *r = tg__realloc(ranges, cap * sizeof *r);
        if (r) ranges = r, cap_ranges = cap;
        else ok = false;
    }
    if (ok) ranges[n_ranges++] = (chunk_range){c->base, c->base + c->size + SKIP_MAX, owner};
    pthread_mutex_unlock(&ranges_lock);
    return ok;
}

static void ranges_remove(const tg__chunk *c) {
    pthread_mutex_lock(&ranges_lock);
    for (size_t i = 0; i < n_ranges; i++)
        if (ranges[i].lo == c->base) {
            ranges[i] = ranges[--n_ranges];
            break;
        }
    pthread_mutex_unlock(&ranges_lock);
}

const void *tg__arena_owner(const void *p) {
    const void *owner = NULL;
    pthread_mutex_lock(&ranges_lock);
    for (size_t i = 0; i < n_ranges && !owner; i++)
        if ((const unsigned char *)p >= ranges[i].lo && (const unsigned char *)p < ranges[i].hi) owner = ranges[i].owner;
    pthread_mutex_unlock(&ranges_lock);
    return owner;
}

static tg__chunk *chunk_new(size_t size, const void *owner) {
    if (size > SIZE_MAX / 2) return NULL; /* no sum below can wrap */
    unsigned char *raw = tg__malloc(sizeof(tg__chunk) + size + SKIP_MAX + ALIGN);
    if (!raw) return NULL;
    tg__chunk *c = (tg__chunk *)raw;
    uintptr_t p = (uintptr_t)(raw + sizeof(tg__chunk));
    c->base = (unsigned char *)((p + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1));
    c->size = size;
    c->used = 0;
    c->next = NULL;
    if (!ranges_add(c, owner)) {
        tg__free(raw);
        return NULL;
    }
    return c;
}

/* Chunks are kept until the arena is released and filled again in the order
 * they were made. Each generation fills a chunk from its own offset (skip) on,
 * and what fits is decided relative to it, so a step that repeats the last
 * one's allocations lands in the same chunks without a malloc, and a pointer
 * into an earlier generation still points at memory the arena owns (a stale
 * tensor can be recognised instead of read after free). */
void *tg__arena_alloc(tg__arena *a, size_t bytes) { return tg__arena_alloc_as(a, bytes, TG__MEM_ACT); }

void *tg__arena_alloc_as(tg__arena *a, size_t bytes, int kind) {
    size_t need = (bytes + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (need < bytes || need > SIZE_MAX / 2) return NULL; /* overflow */
    tg__chunk *c = a->head;
    while (c && c->size + a->skip - c->used < need) c = c->next; /* a skipped chunk's rest waits for the reset */
    if (!c) {
        size_t size = a->capacity > MIN_CHUNK ? a->capacity : MIN_CHUNK; /* doubles capacity */
        if (size < need) size = need;
        if (!(c = chunk_new(size, a->owner))) return NULL;
        c->used = a->skip;
        if (a->last) a->last->next = c;
        else a->first = c;
        a->last = c;
        a->capacity += size;
    }
    a->head = c;
    void *p = c->base + c->used;
    c->used += need;
    a->used += need;
    a->kind_used[kind] += need;
    if (a->used > a->high_water) { /* a new peak: only while the arena grows (the first steps) */
        a->high_water = a->used;
        memcpy(a->kind_peak, a->kind_used, sizeof a->kind_peak);
    }
    return p;
}

void tg__arena_reset(tg__arena *a, size_t skip) {
    skip = (skip + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    a->skip = skip < SKIP_MAX ? skip : SKIP_MAX;
    for (tg__chunk *c = a->first; c; c = c->next) c->used = a->skip; /* the skipped bytes are not in use */
    a->head = a->first;
    a->used = 0;
    memset(a->kind_used, 0, sizeof a->kind_used); /* kind_peak keeps the most bytes ever, as high_water */
}

void tg__arena_release(tg__arena *a) {
    for (tg__chunk *c = a->first, *n; c; c = n) {
        n = c->next;
        ranges_remove(c);
        tg__free(c);
    }
    a->first = a->last = a->head = NULL;
    a->used = a->capacity = 0;
}
