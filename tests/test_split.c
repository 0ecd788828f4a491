/* test_split.c: the batch split across processes (tg_tape_set_batch_split) without MPI: P threads
 * stand for the processes, each with its own tape and copy of a small net (conv2d on both kernel
 * paths with bias, batch norm + ReLU with running statistics, dropout, linear, cross entropy), and an
 * allgather over a shared buffer. Every thread must get the single-process loss, parameter
 * gradients and running statistics bit for bit, and its rows of the input's gradient. Also the
 * shares, and the refusals: a bad split, an op that does not support it, a batch of the wrong size. */
#include "check.h"
#include "tapegrad_op.h"
#include <pthread.h>
#include <stdlib.h>

#define N 40 /* 16 chunks of 2 or 3 images */
#define NP 8 /* the net's tensors compared: 8 parameters */

typedef struct {
    pthread_barrier_t bar;
    char *slots;
    size_t cap; /* bytes per process */
    int P;
    bool overflow;
} world;

typedef struct {
    world *w;
    int rank;
    float loss;
    float *grads[NP], *running[2], *dx; /* copies after the step */
    int64_t sizes[NP];
    int first, count;
    bool ok;
} proc;

static void allgather(void *ctx, const void *mine, void *all, size_t bytes) {
    proc *p = ctx;
    world *w = p->w;
    if (bytes > w->cap) w->overflow = true; /* every process sees the same size */
    else memcpy(w->slots + (size_t)p->rank * bytes, mine, bytes);
    pthread_barrier_wait(&w->bar);
    if (bytes <= w->cap) memcpy(all, w->slots, (size_t)w->P * bytes);
    pthread_barrier_wait(&w->bar);
}

static tg_tensor *param(int ndim, const int *shape, uint64_t seed, float scale) {
    tg_tensor *x = tg_tensor_new(ndim, shape);
    for (int64_t i = 0; i < x->size; i++) x->data[i] = scale * tg_rand_normal(&seed);
    tg_tensor_set_requires_grad(x, true);
    return x;
}

/* One step of the net on this process's share (w NULL: the whole batch, no split). */
static void *step(void *arg) {
    proc *p = arg;
    world *w = p->w;
    tg_tape *t = tg_tape_new();
    tg_tape_seed(t, 99);
    p->first = 0, p->count = N;
    if (w) {
        tg_batch_split s = {.rank = p->rank, .size = w->P, .global = N, .allgather = allgather, .ctx = p};
        if (tg_batch_split_range(N, p->rank, w->P, &p->first, &p->count) < 0 || tg_tape_set_batch_split(t, &s) < 0)
            return NULL;
    }
    tg_tensor *ps[NP] = {param(4, (int[]){4, 3, 3, 3}, 1, 0.3f), param(1, (int[]){4}, 2, 0.1f),
                         param(4, (int[]){6, 4, 3, 3}, 3, 0.2f), param(1, (int[]){6}, 4, 0.1f),
                         param(1, (int[]){6}, 5, 0.1f),         param(1, (int[]){6}, 6, 0.1f),
                         param(2, (int[]){5, 6 * 4 * 4}, 7, 0.1f), param(1, (int[]){5}, 8, 0.1f)};
    for (int i = 0; i < 6; i++) ps[4]->data[i] += 1.0f; /* gamma near 1 */
    tg_tensor *rm = tg_tensor_new(1, (int[]){6}), *rv = tg_tensor_new(1, (int[]){6});
    for (int i = 0; i < 6; i++) rm->data[i] = 0, rv->data[i] = 1;
    /* the global batch, and this process's rows of it */
    tg_tensor *x = tg_tensor_new(4, (int[]){p->count, 3, 8, 8});
    uint64_t seed = 11;
    for (int64_t i = 0; i < (int64_t)p->first * 192; i++) tg_rand_normal(&seed);
    for (int64_t i = 0; i < x->size; i++) x->data[i] = tg_rand_normal(&seed);
    tg_tensor_set_requires_grad(x, true);
    int32_t labels[N];
    for (int i = 0; i < p->count; i++) labels[i] = (p->first + i) % 5;
    tg_tensor *h = tg_conv2d(t, x, ps[0], ps[1], 1, 1, 1, 1);           /* shifted path: 4x8x8 */
    h = tg_conv2d(t, h, ps[2], ps[3], 2, 1, 1, 1);                      /* stride 2, im2col path: 6x4x4 */
    h = tg_batch_norm_act(t, h, ps[4], ps[5], rm, rv, true, 0.1f, 1e-5f, NULL, TG_ACT_RELU);
    h = tg_reshape(t, h, 2, (int[]){p->count, 6 * 4 * 4});
    h = tg_dropout(t, h, 0.3f, true);
    tg_tensor *loss = tg_cross_entropy(t, tg_linear(t, h, ps[6], ps[7]), labels);
    if (loss && tg_backward(t, loss) == 0) {
        p->ok = true;
        p->loss = loss->data[0];
        for (int i = 0; i < NP; i++) {
            p->sizes[i] = ps[i]->size;
            p->grads[i] = malloc((size_t)ps[i]->size * sizeof(float));
            memcpy(p->grads[i], ps[i]->grad, (size_t)ps[i]->size * sizeof(float));
        }
        p->running[0] = malloc(6 * sizeof(float)), p->running[1] = malloc(6 * sizeof(float));
        memcpy(p->running[0], rm->data, 6 * sizeof(float)), memcpy(p->running[1], rv->data, 6 * sizeof(float));
        p->dx = malloc((size_t)x->size * sizeof(float));
        memcpy(p->dx, x->grad, (size_t)x->size * sizeof(float));
    } else {
        fprintf(stderr, "test_split: rank %d: %s\n", p->rank, tg_last_error());
    }
    for (int i = 0; i < NP; i++) tg_tensor_free(ps[i]);
    tg_tensor_free(rm), tg_tensor_free(rv), tg_tensor_free(x);
    tg_tape_free(t);
    return NULL;
}

static void proc_free(proc *p) {
    for (int i = 0; i < NP; i++) free(p->grads[i]);
    free(p->running[0]), free(p->running[1]), free(p->dx);
}

/* P threads against the single-process step: everything identical bit for bit */
static void check_world(const proc *one, int P) {
    world w = {.cap = 1 << 20, .P = P};
    w.slots = malloc(w.cap * (size_t)P);
    pthread_barrier_init(&w.bar, NULL, (unsigned)P);
    proc ps[3] = {{0}};
    pthread_t th[3];
    for (int r = 0; r < P; r++) {
        ps[r] = (proc){.w = &w, .rank = r};
        pthread_create(&th[r], NULL, step, &ps[r]);
    }
    for (int r = 0; r < P; r++) pthread_join(th[r], NULL);
    CHECK(!w.overflow);
    for (int r = 0; r < P; r++) {
        CHECK(ps[r].ok);
        if (!ps[r].ok) continue;
        CHECK(memcmp(&ps[r].loss, &one->loss, sizeof(float)) == 0);
        for (int i = 0; i < NP; i++) {
            bool same = memcmp(ps[r].grads[i], one->grads[i], (size_t)one->sizes[i] * sizeof(float)) == 0;
            if (!same) fprintf(stderr, "test_split: P %d rank %d: parameter %d's gradient differs\n", P, r, i);
            CHECK(same);
        }
        CHECK(memcmp(ps[r].running[0], one->running[0], 6 * sizeof(float)) == 0);
        CHECK(memcmp(ps[r].running[1], one->running[1], 6 * sizeof(float)) == 0);
        CHECK(memcmp(ps[r].dx, one->dx + (size_t)ps[r].first * 192, (size_t)ps[r].count * 192 * sizeof(float)) == 0);
        proc_free(&ps[r]);
    }
    pthread_barrier_destroy(&w.bar);
    free(w.slots);
}

static void noop_gather(void *ctx, const void *mine, void *all, size_t bytes) { (void)ctx, memcpy(all, mine, bytes); }

static void check_refusals(void) {
    int first = -1, count = -1;
    CHECK_INT(tg_batch_split_range(64, 2, 3, &first, &count), 0); /* 16 chunks: 5, 5, 6 of 4 images */
    CHECK_INT(first, 40);
    CHECK_INT(count, 24);
    CHECK_INT(tg_batch_split_range(64, 0, 3, &first, &count), 0);
    CHECK_INT(first, 0);
    CHECK_INT(count, 20);
    CHECK(tg_batch_split_range(2, 0, 3, &first, &count) < 0);
    CHECK_MSG(tg_last_error(), "a batch of 2 images is summed in 2 chunks, which cannot be shared by 3 processes");
    CHECK(tg_batch_split_range(64, 3, 3, &first, &count) < 0);
    CHECK(tg_batch_split_range(64, 0, 2, NULL, &count) < 0);
    CHECK_MSG(tg_last_error(), "batch_split_range: first or count is NULL");
    CHECK(tg_batch_split_range(0, 0, 1, &first, &count) < 0);
    CHECK(tg_tape_set_batch_split(NULL, NULL) < 0);
    CHECK_MSG(tg_last_error(), "tape_set_batch_split: tape is NULL");
    CHECK(tg_tape_batch_split(NULL) == NULL);
    tg_tape *t = tg_tape_new();
    tg_batch_split bad = {.rank = 2, .size = 2, .global = 8, .allgather = noop_gather};
    CHECK(tg_tape_set_batch_split(t, &bad) < 0);
    CHECK(tg_tape_set_batch_split(t, &(tg_batch_split){.rank = 0, .size = 2, .global = 8}) < 0);
    CHECK_MSG(tg_last_error(), "no allgather");
    CHECK(tg_tape_batch_split(t) == NULL);
    tg_batch_split s = {.rank = 0, .size = 1, .global = 4, .allgather = noop_gather};
    CHECK_INT(tg_tape_set_batch_split(t, &s), 0);
    CHECK(tg_tape_batch_split(t) && tg_tape_batch_split(t)->global == 4);
    tg_tensor *x = tg_tensor_tape(t, 2, (int[]){4, 6});
    tg_tensor *g = tg_tensor_new(1, (int[]){6}), *b = tg_tensor_new(1, (int[]){6});
    for (int i = 0; i < 24; i++) x->data[i] = (float)i;
    for (int i = 0; i < 6; i++) g->data[i] = 1, b->data[i] = 0;
    CHECK(tg_layer_norm(t, x, g, b, 1e-5f) == NULL); /* sums over each sample, but its dgamma over the batch */
    CHECK_MSG(tg_last_error(), "layer_norm: not supported with the batch split across processes");
    CHECK(tg_reshape(t, x, 1, (int[]){24}) == NULL);
    CHECK_MSG(tg_last_error(), "mixes the samples of a batch split");
    tg_tensor *x3 = tg_tensor_tape(t, 2, (int[]){3, 6});
    for (int i = 0; i < 18; i++) x3->data[i] = 0;
    CHECK(tg_cross_entropy(t, x3, (int32_t[]){0, 1, 2}) == NULL); /* the split says 4 images here */
    CHECK_MSG(tg_last_error(),
              "cross_entropy: the batch split gives process 0 of 1 images [0, 4) of 4, and this batch has 3");
    CHECK_INT(tg_tape_set_batch_split(t, NULL), 0);
    CHECK(tg_tape_batch_split(t) == NULL);
    CHECK(tg_layer_norm(t, x, g, b, 1e-5f) != NULL); /* no split: as ever */
    tg_tensor_free(g), tg_tensor_free(b);
    tg_tape_free(t);
}

int main(void) {
    tg_set_threads(1); /* the threads are the processes */
    check_refusals();
    proc one = {0};
    step(&one);
    CHECK(one.ok);
    if (one.ok)
        for (int P = 1; P <= 3; P++) check_world(&one, P);
    proc_free(&one);
    CHECK_DONE();
}
