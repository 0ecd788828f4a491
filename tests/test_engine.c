/* test_engine.c: the tape, the reverse sweep, no-grad mode, the arena. */
#include "check.h"
#include "internal.h" /* tg__alloc_count */
#include "tapegrad.h"

static tg_tensor *param(int ndim, const int *shape, float v0, float step) {
    tg_tensor *x = tg_param_new(ndim, shape);
    for (int64_t i = 0; i < x->size; i++) x->data[i] = v0 + step * (float)i;
    return x;
}

/* A tensor used by two ops gets the sum of both gradients. */
static void fan_out(void) {
    tg_tape *t = tg_tape_new();
    tg_tensor *x = param(1, (int[]){3}, 1, 1); /* 1 2 3 */
    /* y = sum(x*x + x) -> dy/dx = 2x + 1 */
    tg_tensor *y = tg_sum(t, tg_add(t, tg_mul(t, x, x), x));
    CHECK_NEAR(y->data[0], 1 + 4 + 9 + 6, 0);
    CHECK_INT(tg_tape_node_count(t), 3);
    CHECK_INT(tg_backward(t, y), 0);
    CHECK_NEAR(x->grad[0], 3, 0);
    CHECK_NEAR(x->grad[2], 7, 0);
    /* gradients accumulate until zeroed */
    CHECK_INT(tg_backward(t, y), 0);
    CHECK_NEAR(x->grad[2], 14, 0);
    tg_tensor_zero_grad(x);
    CHECK_NEAR(x->grad[2], 0, 0);
    tg_tensor_free(x);
    tg_tape_free(t);
}

static void backward_rules(void) {
    tg_tape *t = tg_tape_new();
    tg_tensor *x = param(2, (int[]){2, 2}, 1, 1);
    tg_tensor *c = tg_tensor_new(2, (int[]){2, 2}); /* a constant: no gradient */
    tg_tensor *y = tg_mul(t, x, c);
    tg_clear_error();
    CHECK_INT(tg_backward(t, y), TG_ERR_SHAPE);
    CHECK_MSG(tg_last_error(), "backward: loss has shape 2x2; a non-scalar needs a seed gradient");
    CHECK_INT(tg_backward_seed(t, y, (float[]){1, 1, 1, 1}), 0);
    CHECK(c->grad == NULL);
    /* an op on constants only is not recorded and cannot be differentiated */
    tg_tensor *z = tg_sum(t, c);
    CHECK(!z->requires_grad);
    CHECK_INT(tg_backward(t, z), TG_ERR_STATE);
    CHECK_MSG(tg_last_error(), "backward: the tensor does not require a gradient");
    CHECK_INT(tg_backward(t, NULL), TG_ERR_ARG);
    /* nodes recorded after y are not touched by a backward from y */
    tg_tensor_zero_grad(x);
    tg_tensor *s = tg_sum(t, x);
    tg_tensor *later = tg_sum(t, tg_mul(t, x, x));
    CHECK_INT(tg_backward(t, s), 0);
    CHECK_NEAR(x->grad[3], 1, 0);
    CHECK(later->grad == NULL);
    tg_tensor_free(x);
    tg_tensor_free(c);
    tg_tape_free(t);
}

static void no_grad(void) {
    tg_tape *t = tg_tape_new();
    tg_tensor *w = param(2, (int[]){3, 4}, -1, 0.2f);
    tg_tensor *x = tg_tensor_tape(t, 2, (int[]){2, 4});
    CHECK(tg_tape_set_grad_enabled(t, false) == true);
    tg_tensor *loss = tg_cross_entropy(t, tg_linear(t, x, w, NULL), (int32_t[]){0, 2});
    CHECK(loss != NULL);
    CHECK(!loss->requires_grad);
    CHECK_INT(tg_tape_node_count(t), 0);
    CHECK(tg_tape_set_grad_enabled(t, true) == false);
    loss = tg_cross_entropy(t, tg_linear(t, x, w, NULL), (int32_t[]){0, 2});
    CHECK_INT(tg_tape_node_count(t), 2);
    CHECK_INT(loss->node->saved_bytes, 2 * 3 * sizeof(float)); /* the softmax */
    tg_tape_reset(t);
    CHECK_INT(tg_tape_node_count(t), 0);
    CHECK_INT(tg_tape_arena_used(t), 0);
    tg_tensor_free(w);
    tg_tape_free(t);
}

/* A training loop's steady state does no malloc at all. */
static void steady_state_no_malloc(void) {
    tg_tensor *w1 = param(2, (int[]){64, 32}, -0.5f, 1.0f / 2048), *b1 = param(1, (int[]){64}, 0, 0);
    tg_tensor *w2 = param(2, (int[]){10, 64}, 0.3f, -1.0f / 1024), *b2 = param(1, (int[]){10}, 0, 0);
    tg_tensor *ps[] = {w1, b1, w2, b2};
    tg_tape *t = tg_tape_new();
    int32_t labels[16];
    uint64_t before = 0;
    for (int step = 0; step < 60; step++) {
        if (step == 10) before = tg__alloc_count();
        tg_tensor *x = tg_tensor_tape(t, 2, (int[]){16, 32});
        for (int i = 0; i < 16 * 32; i++) x->data[i] = (float)((i * 7 + step) % 13) / 13.0f;
        for (int i = 0; i < 16; i++) labels[i] = (i + step) % 10;
        tg_tensor *h = tg_relu(t, tg_linear(t, x, w1, b1));
        tg_tensor *loss = tg_cross_entropy(t, tg_linear(t, h, w2, b2), labels);
        CHECK_INT(tg_backward(t, loss), 0);
        for (int k = 0; k < 4; k++) {
            for (int64_t i = 0; i < ps[k]->size; i++) ps[k]->data[i] -= 0.01f * ps[k]->grad[i];
            tg_tensor_zero_grad(ps[k]);
        }
        tg_tape_reset(t);
    }
    uint64_t allocs = tg__alloc_count() - before;
    printf("steady state: %llu allocations in 50 steps, arena high water %zu bytes\n", (unsigned long long)allocs,
           tg_tape_arena_high_water(t));
    CHECK_INT(allocs, 0);
    for (int k = 0; k < 4; k++) tg_tensor_free(ps[k]);
    tg_tape_free(t);
}

static void arena_growth(void) {
    /* many small and one huge tensor: the arena grows, then fits in one chunk after a reset */
    tg_tape *t = tg_tape_new();
    for (int round = 0; round < 3; round++) {
        uint64_t before = tg__alloc_count();
        for (int i = 0; i < 100; i++) CHECK(tg_tensor_tape(t, 1, (int[]){1000}) != NULL);
        CHECK(tg_tensor_tape(t, 2, (int[]){1000, 1000}) != NULL);
        if (round == 2) CHECK_INT(tg__alloc_count() - before, 0);
        tg_tape_reset(t);
    }
    tg_tape_free(t);
    tg_tape_free(NULL);
    tg_tensor_free(NULL);
}

static void rng(void) {
    tg_tape *a = tg_tape_new(), *b = tg_tape_new();
    tg_tape_seed(a, 42);
    tg_tape_seed(b, 42);
    int same = 1;
    double mean = 0;
    for (int i = 0; i < 10000; i++) {
        float u = tg_tape_uniform(a);
        same &= u == tg_tape_uniform(b);
        CHECK(u >= 0 && u < 1);
        mean += u / 10000;
    }
    CHECK(same);
    CHECK_NEAR(mean, 0.5, 0.02);
    /* an op's own draws (tapegrad_op.h) advance the same state */
    uint64_t copy = tg_tape_rng_state(a);
    CHECK(tg_tape_rng(a) && *tg_tape_rng(a) == copy);
    CHECK(tg_rand_u64(tg_tape_rng(a)) == tg_rand_u64(&copy) && tg_tape_rng_state(a) == copy);
    tg_tape_free(a);
    tg_tape_free(b);
}

int main(void) {
    fan_out();
    backward_rules();
    no_grad();
    steady_state_no_malloc();
    arena_growth();
    rng();
    CHECK_DONE();
}
