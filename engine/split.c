/* split.c: a batch split across processes (tg_tape_set_batch_split). The engine
 * only keeps the split, tells ops their share and gathers their partial sums
 * through the caller's allgather; the transport (MPI) is nn/'s. */
#include "internal.h"
#include <string.h>

static int chunks_of(int global) { return global < TG_BATCH_CHUNKS ? global : TG_BATCH_CHUNKS; }

/* process r's first chunk (r = size: the chunk count) and first image */
static int chunk_at(int chunks, int r, int size) { return (int)((int64_t)chunks * r / size); }
static int image_at(int global, int chunks, int c) { return (int)((int64_t)global * c / chunks); }

int tg_batch_split_range(int global, int rank, int size, int *first, int *count) {
    if (!first || !count) return tg_fail(TG_ERR_ARG, "batch_split_range: first or count is NULL");
    if (global < 1 || size < 1 || rank < 0 || rank >= size)
        return tg_fail(TG_ERR_ARG, "batch_split_range: global batch %d, rank %d of %d: need a batch >= 1 and "
                       "0 <= rank < size", global, rank, size);
    int chunks = chunks_of(global);
    if (size > chunks)
        return tg_fail(TG_ERR_ARG, "batch_split_range: a batch of %d images is summed in %d chunks, which cannot "
                       "be shared by %d processes (each takes whole chunks: at most %d processes)", global, chunks,
                       size, chunks);
    *first = image_at(global, chunks, chunk_at(chunks, rank, size));
    *count = image_at(global, chunks, chunk_at(chunks, rank + 1, size)) - *first;
    return 0;
}

int tg_tape_set_batch_split(tg_tape *t, const tg_batch_split *s) {
    if (!t) return tg_fail(TG_ERR_ARG, "tape_set_batch_split: tape is NULL");
    if (!s) {
        t->has_split = false;
        return 0;
    }
    if (!s->allgather) return tg_fail(TG_ERR_ARG, "tape_set_batch_split: the split has no allgather");
    int first, count;
    if (tg_batch_split_range(s->global, s->rank, s->size, &first, &count) < 0) return tg_last_error_code();
    t->split = *s;
    t->has_split = true;
    return 0;
}

const tg_batch_split *tg_tape_batch_split(const tg_tape *t) { return t && t->has_split ? &t->split : NULL; }

int tg__split_of(tg_tape *t, const char *who, int n, tg__split *s, tg__split **out) {
    *out = NULL;
    if (!t || !t->has_split) return 0;
    const tg_batch_split *b = &t->split;
    memset(s, 0, sizeof *s);
    s->t = t;
    s->global = b->global;
    s->chunks = chunks_of(b->global);
    s->c0 = chunk_at(s->chunks, b->rank, b->size), s->c1 = chunk_at(s->chunks, b->rank + 1, b->size);
    s->first = image_at(b->global, s->chunks, s->c0);
    s->count = image_at(b->global, s->chunks, s->c1) - s->first;
    if (n != s->count)
        return tg_fail(TG_ERR_SHAPE, "%s: the batch split gives process %d of %d images [%d, %d) of %d, and this "
                       "batch has %d", who, b->rank, b->size, s->first, s->first + s->count, b->global, n);
    *out = s;
    return 0;
}

void tg__split_gather(tg__split *s, void *buf, size_t unit_bytes, bool chunks) {
    const tg_batch_split *b = &s->t->split;
    int P = b->size, most = 0;
    /* unit r (r = 0..P): where process r's units start */
    int at[TG_BATCH_CHUNKS + 1]; /* P is at most the chunk count */
    for (int r = 0; r <= P; r++) {
        int c = chunk_at(s->chunks, r, P);
        at[r] = chunks ? c : image_at(s->global, s->chunks, c);
        if (r && at[r] - at[r - 1] > most) most = at[r] - at[r - 1];
    }
    /* the blocks are equal-sized: each process's units, padded to the most any holds */
    size_t block = (size_t)most * unit_bytes;
    char *mine = tg_tape_alloc(s->t, block * (size_t)(P + 1));
    if (!mine) {
        if (!s->rc) s->rc = TG_ERR_NOMEM;
        return;
    }
    char *all = mine + block, *u = buf;
    memcpy(mine, u + (size_t)at[b->rank] * unit_bytes, (size_t)(at[b->rank + 1] - at[b->rank]) * unit_bytes);
    b->allgather(b->ctx, mine, all, block);
    for (int r = 0; r < P; r++)
        if (r != b->rank)
            memcpy(u + (size_t)at[r] * unit_bytes, all + (size_t)r * block, (size_t)(at[r + 1] - at[r]) * unit_bytes);
}
