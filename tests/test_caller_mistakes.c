/* test_caller_mistakes.c: the table of caller mistakes. Every public function given NULL
 * or an impossible argument, stale and foreign tape tensors, descriptors with
 * parts missing, files that are not regular, frozen and duplicate parameters,
 * non-finite values: each gets its exact error (or its documented no-op),
 * never a crash. Run under ASan and UBSan by tests/run.sh. */
#include "check.h"
#include "internal.h" /* tg__alloc_count */
#include "tapegrad_mpi.h"
#include "tapegrad_nn.h"
#include "tapegrad_op.h"
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* A row: the call fails with this code and a message holding this text. */
#define FAILS_PTR(call, code, msg)                                                                                   \
    do {                                                                                                             \
        tg_clear_error();                                                                                            \
        CHECK((call) == NULL);                                                                                       \
        CHECK_INT(tg_last_error_code(), code);                                                                       \
        CHECK_MSG(tg_last_error(), msg);                                                                             \
    } while (0)
#define FAILS_INT(call, code, msg)                                                                                   \
    do {                                                                                                             \
        tg_clear_error();                                                                                            \
        CHECK_INT((call), code);                                                                                     \
        CHECK_MSG(tg_last_error(), msg);                                                                             \
    } while (0)

static char dir[] = "/tmp/tg_edge_XXXXXX";

static const char *path(const char *name) {
    static char p[8][160];
    static int k;
    k = (k + 1) % 8;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static void write_file(const char *name, const void *data, size_t n) {
    FILE *f = fopen(path(name), "wb");
    CHECK(f != NULL);
    if (!f) return;
    fwrite(data, 1, n, f);
    fclose(f);
}

/* an IDX file of bytes: magic 0 0 8 ndim, big-endian dimensions, the data */
static void write_idx(const char *name, int ndim, const uint32_t *dims, uint8_t fill) {
    uint8_t buf[4096] = {0};
    buf[2] = 8, buf[3] = (uint8_t)ndim;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        for (int b = 0; b < 4; b++) buf[4 + 4 * i + b] = (uint8_t)(dims[i] >> (24 - 8 * b));
        n *= dims[i];
    }
    size_t h = 4 + 4 * (size_t)ndim;
    for (size_t i = 0; i < n; i++) buf[h + i] = (uint8_t)(fill + i % 3);
    write_file(name, buf, h + n);
}

// ----------------------------------------------------------------------------
// NULL and impossible numbers: the engine

static void null_engine(void) {
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_tensor_tape(t, 2, (int[]){2, 3}), *p = tg_param_new(2, (int[]){2, 3});
    char buf[32];

    FAILS_PTR(tg_tensor_new(2, NULL), TG_ERR_ARG, "tensor_new: shape is NULL");
    FAILS_PTR(tg_tensor_new(5, (int[]){1, 1, 1, 1, 1}), TG_ERR_ARG, "tensor_new: 5 dimensions, at most 4");
    FAILS_PTR(tg_tensor_new(1, (int[]){-3}), TG_ERR_ARG, "tensor_new: dimension 0 is -3, must be at least 1");
    FAILS_PTR(tg_tensor_new(2, (int[]){65536, 65536}), TG_ERR_ARG, "tensor_new: more than 2147483647 elements");
    FAILS_PTR(tg_param_new(1, NULL), TG_ERR_ARG, "tensor_new: shape is NULL");
    FAILS_PTR(tg_tensor_tape(NULL, 1, (int[]){2}), TG_ERR_ARG, "tensor_tape: tape is NULL");
    FAILS_PTR(tg_tensor_tape(t, 1, NULL), TG_ERR_ARG, "tensor_tape: shape is NULL");
    FAILS_INT(tg_tensor_set_requires_grad(NULL, true), TG_ERR_ARG, "set_requires_grad: tensor is NULL");
    FAILS_INT(tg_tensor_set_requires_grad(x, true), TG_ERR_ARG, "set_requires_grad: only heap tensors");
    /* documented no-ops and neutral answers */
    tg_tensor_free(NULL);
    tg_tensor_zero_grad(NULL);
    tg_tensor_set_name(NULL, "w");
    tg_tensor_set_name(p, NULL);
    CHECK_INT(p->name[0], 0);
    CHECK(strcmp(tg_shape_str(NULL, buf, sizeof buf), "null") == 0);
    CHECK(tg_shape_str(x, NULL, 8) == NULL);
    CHECK(!tg_same_shape(NULL, x) && !tg_same_shape(x, NULL) && tg_same_shape(x, p));
    tg_tape_free(NULL);
    tg_tape_reset(NULL);
    CHECK(!tg_tape_set_grad_enabled(NULL, false));
    tg_tape_seed(NULL, 1);
    CHECK_INT(tg_tape_rng_state(NULL), 0);
    CHECK_INT(tg_tape_node_count(NULL), 0);
    CHECK_INT(tg_tape_arena_used(NULL), 0);
    CHECK_INT(tg_tape_arena_high_water(NULL), 0);
    tg_tape_check_finite(NULL, true);
    tg_tape_check_inputs(NULL, true);
    CHECK_INT(tg_tape_flops(NULL), 0);
    CHECK(tg_tape_uniform(NULL) == 0.0f);
    CHECK(tg_tape_rng(NULL) == NULL);
    CHECK_INT(tg_rand_u64(NULL), 0);
    CHECK(tg_rand_uniform(NULL) == 0.0f && tg_rand_normal(NULL) == 0.0f);
    CHECK(strcmp(tg_strerror(12345), "unknown error") == 0);
    CHECK_INT(tg_fail(TG_ERR_ARG, NULL), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "(no message)");

    FAILS_INT(tg_backward(NULL, x), TG_ERR_ARG, "backward: tape is NULL");
    FAILS_INT(tg_backward(t, NULL), TG_ERR_ARG, "backward: the tensor is NULL");
    FAILS_INT(tg_backward_seed(NULL, x, (float[6]){0}), TG_ERR_ARG, "backward: tape is NULL");
    FAILS_INT(tg_backward_seed(t, NULL, (float[6]){0}), TG_ERR_ARG, "backward: the tensor is NULL");
    tg_tensor *y = tg_mul(t, x, p);
    FAILS_INT(tg_backward_seed(t, y, NULL), TG_ERR_ARG, "backward: seed gradient is NULL");
    FAILS_INT(tg_backward(t, y), TG_ERR_SHAPE, "backward: loss has shape 2x3; a non-scalar needs a seed gradient");
    FAILS_INT(tg_backward(t, tg_tensor_tape(t, 0, NULL)), TG_ERR_STATE, "backward: the tensor does not require a gradient");
    FAILS_INT(tg_tape_dump(NULL, stdout), TG_ERR_ARG, "tape_dump: tape is NULL");
    FAILS_INT(tg_tape_dump(t, NULL), TG_ERR_ARG, "tape_dump: file is NULL");
    FAILS_INT(tg_tape_dot(NULL, stdout), TG_ERR_ARG, "tape_dot: tape is NULL");
    FAILS_INT(tg_tape_dot(t, NULL), TG_ERR_ARG, "tape_dot: file is NULL");
    FAILS_PTR(tg_tape_alloc(NULL, 16), TG_ERR_ARG, "tape_alloc: tape is NULL");
    FAILS_PTR(tg_node_save(t, NULL, 16, "x"), TG_ERR_ARG, "node_save: node is NULL");
    FAILS_INT(tg_gradcheck(NULL, &p, 1, NULL, NULL, NULL), TG_ERR_ARG, "gradcheck: build is NULL");
    FAILS_INT(tg_set_float32_matmul_precision(NULL), TG_ERR_ARG, "set_float32_matmul_precision: precision is NULL");
    FAILS_INT(tg_set_float32_matmul_precision("bf16"), TG_ERR_ARG,
              "unknown precision \"bf16\" (highest, high or medium)");
    CHECK(!strcmp(tg_get_float32_matmul_precision(), "highest")); /* unchanged by the refusals */
    tg_tensor_free(p);
    tg_tape_free(t);
}

/* Every op: a NULL tape, and a NULL first input with no earlier error. */
static void null_ops(void) {
    tg_tape *t = tg_tape_new();
    tg_tensor *a = tg_tensor_tape(t, 4, (int[]){2, 2, 4, 4}), *w = tg_param_new(4, (int[]){2, 2, 3, 3});
    tg_tensor *g = tg_param_new(1, (int[]){2}), *m = tg_param_new(2, (int[]){2, 2});
    tg_tensor *v = tg_tensor_tape(t, 2, (int[]){2, 2});
    int32_t labels[2] = {0, 1};
    FAILS_PTR(tg_add(NULL, a, a), TG_ERR_ARG, "add: tape is NULL");
    FAILS_PTR(tg_add(t, NULL, a), TG_ERR_ARG, "add: input 0 is NULL");
    FAILS_PTR(tg_sub(t, a, NULL), TG_ERR_ARG, "sub: input 1 is NULL");
    FAILS_PTR(tg_mul(NULL, a, a), TG_ERR_ARG, "mul: tape is NULL");
    FAILS_PTR(tg_matmul(t, NULL, m), TG_ERR_ARG, "matmul: input 0 is NULL");
    FAILS_PTR(tg_linear(t, v, NULL, NULL), TG_ERR_ARG, "linear: input 1 is NULL");
    FAILS_PTR(tg_relu(NULL, a), TG_ERR_ARG, "relu: tape is NULL");
    FAILS_PTR(tg_relu(t, NULL), TG_ERR_ARG, "relu: input 0 is NULL");
    FAILS_PTR(tg_sigmoid(t, NULL), TG_ERR_ARG, "sigmoid: input 0 is NULL");
    FAILS_PTR(tg_tanh(t, NULL), TG_ERR_ARG, "tanh: input 0 is NULL");
    FAILS_PTR(tg_sum(t, NULL), TG_ERR_ARG, "sum: input 0 is NULL");
    FAILS_PTR(tg_mean(NULL, a), TG_ERR_ARG, "mean: tape is NULL");
    FAILS_PTR(tg_reshape(t, NULL, 1, (int[]){-1}), TG_ERR_ARG, "reshape: input 0 is NULL");
    FAILS_PTR(tg_reshape(t, a, 2, NULL), TG_ERR_ARG, "reshape: shape is NULL for 2 dimensions");
    FAILS_PTR(tg_flatten(t, NULL), TG_ERR_ARG, "flatten: input 0 is NULL");
    FAILS_PTR(tg_flatten(NULL, a), TG_ERR_ARG, "reshape: tape is NULL");
    FAILS_PTR(tg_cross_entropy(t, NULL, labels), TG_ERR_ARG, "cross_entropy: input 0 is NULL");
    FAILS_PTR(tg_cross_entropy(t, v, NULL), TG_ERR_ARG, "cross_entropy: labels are NULL");
    FAILS_PTR(tg_cross_entropy(NULL, v, labels), TG_ERR_ARG, "cross_entropy: tape is NULL");
    FAILS_PTR(tg_conv2d(t, NULL, w, NULL, 1, 1, 1, 1), TG_ERR_ARG, "conv2d: input 0 is NULL");
    FAILS_PTR(tg_conv2d(t, a, NULL, NULL, 1, 1, 1, 1), TG_ERR_ARG, "conv2d: input 1 is NULL");
    FAILS_PTR(tg_conv2d_act(NULL, a, w, NULL, 1, 1, 1, 1, TG_ACT_RELU), TG_ERR_ARG, "conv2d: tape is NULL");
    FAILS_PTR(tg_conv2d_act(t, a, w, NULL, 1, 1, 1, 1, (tg_act)7), TG_ERR_ARG, "conv2d: unknown activation 7");
    FAILS_PTR(tg_conv2d_relu_max_pool(t, NULL, w, NULL, 1, 1, 1, 1), TG_ERR_ARG, "conv2d: input 0 is NULL");
    FAILS_PTR(tg_conv2d_relu_max_pool(NULL, a, w, NULL, 1, 1, 1, 1), TG_ERR_ARG, "conv2d: tape is NULL");
    FAILS_PTR(tg_conv2d_relu_max_pool(t, a, w, NULL, 0, 1, 1, 1), TG_ERR_ARG, "conv2d: stride 0");
    FAILS_PTR(tg_max_pool2d(t, NULL, 2, 2, 0), TG_ERR_ARG, "max_pool2d: input 0 is NULL");
    FAILS_PTR(tg_avg_pool2d(NULL, a, 2, 2, 0), TG_ERR_ARG, "avg_pool2d: tape is NULL");
    FAILS_PTR(tg_global_avg_pool(t, NULL), TG_ERR_ARG, "global_avg_pool: input 0 is NULL");
    FAILS_PTR(tg_dropout(t, NULL, 0.5f, true), TG_ERR_ARG, "dropout: input 0 is NULL");
    FAILS_PTR(tg_dropout_vanilla(NULL, a, 0.5f, true), TG_ERR_ARG, "dropout_vanilla: tape is NULL");
    FAILS_PTR(tg_batch_norm(t, NULL, g, g, NULL, NULL, true, 0.1f, 1e-5f), TG_ERR_ARG, "batch_norm: input 0 is NULL");
    FAILS_PTR(tg_batch_norm(t, a, NULL, g, NULL, NULL, true, 0.1f, 1e-5f), TG_ERR_ARG,
              "batch_norm: gamma and beta are required");
    FAILS_PTR(tg_batch_norm_act(NULL, a, g, g, NULL, NULL, true, 0.1f, 1e-5f, NULL, TG_ACT_RELU), TG_ERR_ARG,
              "batch_norm: tape is NULL");
    FAILS_PTR(tg_batch_norm_act(t, a, g, NULL, NULL, NULL, true, 0.1f, 1e-5f, a, TG_ACT_RELU), TG_ERR_ARG,
              "batch_norm: gamma and beta are required");
    FAILS_PTR(tg_batch_norm_act(t, a, g, g, NULL, NULL, true, 0.1f, 1e-5f, NULL, (tg_act)7), TG_ERR_ARG,
              "batch_norm: unknown activation 7");
    FAILS_PTR(tg_batch_norm_relu_max_pool(t, NULL, g, g, NULL, NULL, true, 0.1f, 1e-5f, NULL), TG_ERR_ARG,
              "batch_norm: input 0 is NULL");
    FAILS_PTR(tg_batch_norm_relu_max_pool(NULL, a, g, g, NULL, NULL, true, 0.1f, 1e-5f, NULL), TG_ERR_ARG,
              "batch_norm: tape is NULL");
    FAILS_PTR(tg_batch_norm_relu_max_pool(t, a, NULL, g, NULL, NULL, true, 0.1f, 1e-5f, NULL), TG_ERR_ARG,
              "batch_norm: gamma and beta are required");
    FAILS_PTR(tg_batch_norm_relu_max_pool(t, a, g, g, NULL, NULL, true, 0.1f, NAN, NULL), TG_ERR_ARG,
              "batch_norm: eps nan must be > 0");
    FAILS_PTR(tg_residual_add(t, a, NULL), TG_ERR_ARG, "residual_add: input 1 is NULL");
    FAILS_PTR(tg_residual_add_act(NULL, a, a, TG_ACT_RELU), TG_ERR_ARG, "residual_add: tape is NULL");
    FAILS_PTR(tg_residual_add_act(t, a, a, (tg_act)7), TG_ERR_ARG, "residual_add: unknown activation 7");
    FAILS_PTR(tg_conv_transpose2d(t, NULL, w, NULL, 1, 0, 0, 1, 1), TG_ERR_ARG, "conv_transpose2d: input 0 is NULL");
    FAILS_PTR(tg_upsample(NULL, a, 2, TG_UPSAMPLE_NEAREST), TG_ERR_ARG, "upsample: tape is NULL");
    FAILS_PTR(tg_layer_norm(t, NULL, g, g, 1e-5f), TG_ERR_ARG, "layer_norm: input 0 is NULL");
    FAILS_PTR(tg_mse_loss(t, a, NULL), TG_ERR_ARG, "mse_loss: input 1 is NULL");
    FAILS_PTR(tg_relu6(NULL, a), TG_ERR_ARG, "relu6: tape is NULL");
    FAILS_PTR(tg_relu6(t, NULL), TG_ERR_ARG, "relu6: input 0 is NULL");
    FAILS_PTR(tg_hardswish(NULL, a), TG_ERR_ARG, "hardswish: tape is NULL");
    FAILS_PTR(tg_hardswish(t, NULL), TG_ERR_ARG, "hardswish: input 0 is NULL");
    FAILS_PTR(tg_softmax(NULL, v), TG_ERR_ARG, "softmax: tape is NULL");
    FAILS_PTR(tg_softmax(t, NULL), TG_ERR_ARG, "softmax: input 0 is NULL");
    FAILS_PTR(tg_softmax(t, tg_tensor_tape(t, 0, NULL)), TG_ERR_SHAPE, "softmax: input 0 is a scalar; it needs a "
                                                                       "last dimension");
    /* cat: the array, its length, dim, and shapes that do not line up */
    tg_tensor *b = tg_tensor_tape(t, 4, (int[]){2, 3, 4, 4});
    FAILS_PTR(tg_cat(NULL, (tg_tensor *[]){a, b}, 2, 1), TG_ERR_ARG, "cat: tape is NULL");
    FAILS_PTR(tg_cat(t, NULL, 2, 1), TG_ERR_ARG, "cat: xs is NULL for 2 tensors");
    FAILS_PTR(tg_cat(t, (tg_tensor *[]){NULL, b}, 2, 1), TG_ERR_ARG, "cat: input 0 is NULL");
    FAILS_PTR(tg_cat(t, (tg_tensor *[]){a, NULL}, 2, 1), TG_ERR_ARG, "cat: input 1 is NULL");
    FAILS_PTR(tg_cat(t, (tg_tensor *[]){a, b}, 0, 1), TG_ERR_ARG, "cat: n is 0, must be 1 to 5");
    FAILS_PTR(tg_cat(t, (tg_tensor *[]){a, b}, -1, 1), TG_ERR_ARG, "cat: n is -1, must be 1 to 5");
    FAILS_PTR(tg_cat(t, (tg_tensor *[]){a, b, a, b, a, b}, 6, 1), TG_ERR_ARG, "cat: n is 6, must be 1 to 5");
    FAILS_PTR(tg_cat(t, (tg_tensor *[]){a, b}, 2, 4), TG_ERR_ARG, "cat: dim 4 is out of range for 4-dimensional "
                                                                 "inputs (-4 to 3)");
    FAILS_PTR(tg_cat(t, (tg_tensor *[]){a, b}, 2, -5), TG_ERR_ARG, "cat: dim -5 is out of range");
    FAILS_PTR(tg_cat(t, (tg_tensor *[]){a, b}, 2, 2), TG_ERR_SHAPE, "cat: input 1 is 2x3x4x4 but input 0 is 2x2x4x4: "
                                                                   "dimension 1 differs (3 vs 2); only dimension 2 "
                                                                   "(dim) may");
    FAILS_PTR(tg_cat(t, (tg_tensor *[]){a, b, tg_tensor_tape(t, 4, (int[]){2, 1, 4, 5})}, 3, -3), TG_ERR_SHAPE,
              "cat: input 2 is 2x1x4x5 but input 0 is 2x2x4x4: dimension 3 differs (5 vs 4)");
    FAILS_PTR(tg_cat(t, (tg_tensor *[]){a, v}, 2, 0), TG_ERR_SHAPE, "cat: input 1 has 2 dimensions (2x2) but input 0 "
                                                                   "has 4 (2x2x4x4)");
    FAILS_PTR(tg_cat(t, (tg_tensor *[]){tg_tensor_tape(t, 0, NULL)}, 1, 0), TG_ERR_SHAPE, "cat: input 0 is a scalar");
    CHECK(tg_cat(t, (tg_tensor *[]){a, b}, 2, -3) != NULL); /* dim 1 counted from the end */
    /* a NULL input after a failed op keeps the first message */
    tg_clear_error();
    tg_tensor *bad = tg_matmul(t, a, m);
    CHECK(bad == NULL);
    char first[512];
    snprintf(first, sizeof first, "%s", tg_last_error());
    CHECK(tg_relu(t, tg_add(t, bad, a)) == NULL);
    CHECK(strcmp(tg_last_error(), first) == 0);
    CHECK(tg_cat(t, (tg_tensor *[]){a, bad}, 2, 1) == NULL);
    CHECK(strcmp(tg_last_error(), first) == 0);
    CHECK(tg_max_pool2d_argmax(NULL) == NULL && tg_dropout_mask(NULL) == NULL);
    tg_tensor_free(w), tg_tensor_free(g), tg_tensor_free(m);
    tg_tape_free(t);
}

// ----------------------------------------------------------------------------
// stale and foreign tape tensors

static void stale_and_foreign(void) {
    tg_tape *t = tg_tape_new(), *u = tg_tape_new();
    tg_tensor *w = tg_param_new(2, (int[]){3, 3});
    for (int i = 0; i < 9; i++) w->data[i] = (float)i;

    /* after 1 to 5 resets, with and without new tensors made in between (a
     * generation starts at one of 4 places, so a tensor made 4 resets ago may
     * have a new one in its place: then that one is what the pointer names) */
    for (int resets = 1; resets <= 5; resets++) {
        for (int make = 0; make < (resets % 4 ? 2 : 1); make++) {
            tg_tape_reset(t);
            tg_tensor *x = tg_tensor_tape(t, 2, (int[]){3, 3});
            tg_tensor *y = tg_matmul(t, x, w);
            for (int r = 0; r < resets; r++) tg_tape_reset(t);
            if (make) CHECK(tg_tensor_tape(t, 2, (int[]){3, 3}) != NULL); /* lands near where x was */
            FAILS_PTR(tg_matmul(t, x, w), TG_ERR_STATE, "matmul: input 0 is stale: it was made on this tape before "
                                                        "tg_tape_reset");
            FAILS_PTR(tg_relu(t, y), TG_ERR_STATE, "relu: input 0 is stale");
            FAILS_PTR(tg_cat(t, (tg_tensor *[]){w, y}, 2, 0), TG_ERR_STATE, "cat: input 1 is stale");
            FAILS_INT(tg_backward(t, y), TG_ERR_STATE, "backward: the tensor is stale");
            CHECK_INT(tg_tape_node_count(t), 0);
        }
    }
    /* stale across an arena that grew past its first chunk */
    tg_tape_reset(t);
    tg_tensor *x = tg_tensor_tape(t, 2, (int[]){3, 3});
    CHECK(tg_tensor_tape(t, 2, (int[]){1024, 1024}) != NULL);
    tg_tensor *late = tg_tensor_tape(t, 2, (int[]){3, 3});
    tg_tape_reset(t);
    CHECK(tg_tensor_tape(t, 2, (int[]){1024, 1024}) != NULL);
    FAILS_PTR(tg_add(t, x, w), TG_ERR_STATE, "add: input 0 is stale");
    FAILS_PTR(tg_add(t, w, late), TG_ERR_STATE, "add: input 1 is stale");

    /* the argmax and mask of a stale output are gone */
    tg_tape_reset(t);
    tg_tensor *s = tg_param_new(4, (int[]){1, 1, 4, 4});
    tg_tensor *py = tg_max_pool2d(t, s, 2, 2, 0), *dy = tg_dropout(t, s, 0.5f, true);
    CHECK(tg_max_pool2d_argmax(py) != NULL && tg_dropout_mask(dy) != NULL);
    tg_tape_reset(t);
    CHECK(tg_max_pool2d_argmax(py) == NULL && tg_dropout_mask(dy) == NULL);
    /* and after the next step's data has been written over their headers */
    for (int k = 0; k < 4; k++) {
        tg_tensor *fill = tg_tensor_tape(t, 1, (int[]){4096});
        for (int i = 0; i < 4096; i++) fill->data[i] = 0.5f;
    }
    CHECK(tg_max_pool2d_argmax(py) == NULL && tg_dropout_mask(dy) == NULL);

    /* stale in every chunk of a step larger than the arena's first (1 MiB) */
    tg_tensor *wbig = tg_param_new(2, (int[]){512, 512});
    tg_tensor *h = NULL, *hloss = NULL;
    for (int step = 0; step < 3; step++) { /* the same step again: each tensor where it was, skip aside */
        tg_tape_reset(t);
        tg_tensor *big = tg_tensor_tape(t, 2, (int[]){512, 512});
        tg_tensor *hs = tg_relu(t, tg_mul(t, big, wbig)), *ls = tg_sum(t, tg_mul(t, hs, hs));
        CHECK(ls != NULL);
        if (step == 0) h = hs, hloss = ls;
    }
    FAILS_PTR(tg_relu(t, h), TG_ERR_STATE, "relu: input 0 is stale");
    FAILS_INT(tg_backward(t, hloss), TG_ERR_STATE, "backward: the tensor is stale");
    tg_tensor_free(wbig);

    /* a tensor of another tape: refused by ops and by backward, so nothing of u
     * is recorded on t and freeing u later leaves t whole */
    tg_tape_reset(t);
    tg_tensor *xt0 = tg_tensor_tape(t, 2, (int[]){3, 3});
    tg_tensor *xu = tg_tensor_tape(u, 2, (int[]){3, 3});
    tg_tensor *yu = tg_matmul(u, xu, w);
    FAILS_PTR(tg_matmul(t, xu, w), TG_ERR_STATE, "matmul: input 0 belongs to another tape");
    FAILS_PTR(tg_add(t, w, yu), TG_ERR_STATE, "add: input 1 belongs to another tape");
    FAILS_INT(tg_backward(t, tg_sum(u, yu)), TG_ERR_STATE, "backward: the tensor belongs to another tape");
    FAILS_PTR(tg_cross_entropy(t, yu, (int32_t[]){0, 1, 2}), TG_ERR_STATE, "cross_entropy: input 0 belongs to "
                                                                           "another tape");
    FAILS_PTR(tg_flatten(t, yu), TG_ERR_STATE, "flatten: input 0 belongs to another tape");
    FAILS_PTR(tg_cat(t, (tg_tensor *[]){xt0, yu}, 2, 0), TG_ERR_STATE, "cat: input 1 belongs to another tape");
    tg_tensor *g3 = tg_param_new(1, (int[]){3}), *stat = tg_tensor_tape(u, 1, (int[]){3});
    FAILS_PTR(tg_batch_norm(t, xt0, g3, g3, stat, stat, true, 0.1f, 1e-5f), TG_ERR_STATE,
              "batch_norm: running_mean belongs to another tape");
    FAILS_PTR(tg_batch_norm_relu_max_pool(t, xt0, g3, g3, stat, stat, true, 0.1f, 1e-5f, NULL), TG_ERR_STATE,
              "batch_norm: running_mean belongs to another tape");
    tg_tensor_free(g3);
    tg_tape_free(u);
    tg_tensor *xt = tg_tensor_tape(t, 2, (int[]){3, 3});
    for (int i = 0; i < 9; i++) xt->data[i] = 1;
    tg_tensor *loss = tg_sum(t, tg_matmul(t, xt, w));
    tg_tensor_zero_grad(w);
    CHECK_INT(tg_backward(t, loss), 0);
    CHECK_NEAR(w->grad[0], 3.0, 0);

    /* a stale tensor of a tape reset and refilled since: still another tape's */
    tg_tape *u2 = tg_tape_new();
    tg_tensor *xu2 = tg_tensor_tape(u2, 2, (int[]){3, 3});
    tg_tape_reset(u2);
    CHECK(tg_add(u2, w, w) != NULL); /* a node now sits where xu2's header was */
    FAILS_PTR(tg_matmul(t, xu2, w), TG_ERR_STATE, "matmul: input 0 belongs to another tape");
    tg_tape_free(u2);

    /* heap tensors go with any tape, and across resets */
    tg_tape *v = tg_tape_new();
    CHECK(tg_add(v, w, w) != NULL && tg_add(t, w, w) != NULL);
    tg_tape_free(v);
    tg_tensor_free(w), tg_tensor_free(s);
    tg_tape_free(t);
}

/* The arena: a request too large for memory fails; a step that repeats makes no malloc from its second on. */
static void arena(void) {
    tg_tape *t = tg_tape_new();
    FAILS_PTR(tg_tape_alloc(t, SIZE_MAX - 100), TG_ERR_NOMEM, "tape: out of memory");
    FAILS_PTR(tg_tape_alloc(t, SIZE_MAX / 2 + 1), TG_ERR_NOMEM, "tape: out of memory");
    /* the first chunk filled to within 64 bytes, then 8 MiB: every generation's offset must fit alike */
    for (int step = 0; step < 8; step++) {
        uint64_t before = tg__alloc_count();
        tg_tape_reset(t);
        CHECK(tg_tape_alloc(t, ((size_t)1 << 20) - 64) != NULL);
        CHECK(tg_tape_alloc(t, (size_t)8 << 20) != NULL);
        CHECK(tg_tape_alloc(t, 100) != NULL);
        if (step > 0) CHECK_INT(tg__alloc_count() - before, 0);
    }
    tg_tape_free(t);
}

// ----------------------------------------------------------------------------
// descriptors (a user's own op)

static int ok_shape(tg_node *n, int *ndim, int *shape) {
    *ndim = n->in[0]->ndim;
    for (int i = 0; i < *ndim; i++) shape[i] = n->in[0]->shape[i];
    return 0;
}
static int ok_forward(tg_tape *t, tg_node *n) {
    (void)t;
    for (int64_t i = 0; i < n->out->size; i++) n->out->data[i] = 2 * n->in[0]->data[i];
    return 0;
}
static int ok_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    for (int64_t i = 0; i < n->out->size; i++) n->in[0]->grad[i] += 2 * n->out->grad[i];
    return 0;
}

static void descriptors(void) {
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_tensor_tape(t, 1, (int[]){4}), *p = tg_param_new(1, (int[]){4});
    int attr = 7;
    const tg_op no_shape = {.name = "twice", .forward = ok_forward, .vjp = ok_vjp};
    const tg_op no_forward = {.name = "twice", .shape = ok_shape, .vjp = ok_vjp};
    const tg_op no_vjp = {.name = "twice", .shape = ok_shape, .forward = ok_forward};
    const tg_op no_name = {.shape = ok_shape, .forward = ok_forward, .vjp = ok_vjp};
    const tg_op with_attr = {.name = "twice", .attr_size = sizeof attr, .shape = ok_shape, .forward = ok_forward,
                             .vjp = ok_vjp};
    FAILS_PTR(tg_apply(t, NULL, &x, 1, NULL), TG_ERR_ARG, "apply: op is NULL");
    FAILS_PTR(tg_apply(t, &no_name, &x, 1, NULL), TG_ERR_ARG, "apply: the op has no name");
    FAILS_PTR(tg_apply(t, &no_shape, &x, 1, NULL), TG_ERR_ARG, "twice: the op's descriptor has no shape function");
    FAILS_PTR(tg_apply(t, &no_forward, &x, 1, NULL), TG_ERR_ARG, "twice: the op's descriptor has no forward");
    FAILS_PTR(tg_apply(t, &no_vjp, &p, 1, NULL), TG_ERR_ARG, "twice: an input requires a gradient, and the op's "
                                                             "descriptor has no vjp");
    FAILS_PTR(tg_apply(t, &with_attr, &x, 1, NULL), TG_ERR_ARG, "twice: the op takes 4 bytes of attributes, and "
                                                                "attr is NULL");
    FAILS_PTR(tg_apply(t, &with_attr, NULL, 1, &attr), TG_ERR_ARG, "twice: 1 inputs, and the input array is NULL");
    FAILS_PTR(tg_apply(t, &with_attr, &x, 6, &attr), TG_ERR_ARG, "twice: 6 inputs, an op takes 0 to 5");
    FAILS_PTR(tg_apply(t, &with_attr, &x, -1, &attr), TG_ERR_ARG, "twice: -1 inputs");
    FAILS_PTR(tg_apply(NULL, &with_attr, &x, 1, &attr), TG_ERR_ARG, "twice: tape is NULL");
    /* a forward-only op runs where nothing needs a gradient; a whole one works */
    x->data[1] = 3;
    tg_tensor *y = tg_apply(t, &no_vjp, &x, 1, NULL);
    CHECK(y && y->data[1] == 6);
    bool was = tg_tape_set_grad_enabled(t, false);
    CHECK(tg_apply(t, &no_vjp, &p, 1, NULL) != NULL);
    tg_tape_set_grad_enabled(t, was);
    tg_tensor *z = tg_apply(t, &with_attr, &p, 1, &attr);
    CHECK(z && tg_backward(t, tg_sum(t, z)) == 0 && p->grad[2] == 2);
    tg_tensor_free(p);
    tg_tape_free(t);
}

// ----------------------------------------------------------------------------
// backward twice; an input changed between forward and backward

static tg_tensor *small_net(tg_tape *t, tg_tensor *x, tg_tensor *w, tg_tensor *g, tg_tensor *b) {
    tg_tensor *h = tg_conv2d_act(t, x, w, NULL, 1, 1, 1, 1, TG_ACT_RELU);
    h = tg_batch_norm(t, h, g, b, NULL, NULL, true, 0.1f, 1e-5f);
    h = tg_dropout(t, tg_max_pool2d(t, h, 2, 2, 0), 0.25f, true);
    return tg_mean(t, tg_mul(t, h, h));
}

static void twice_and_changed(void) {
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){2, 2, 6, 6}), *w = tg_param_new(4, (int[]){3, 2, 3, 3});
    tg_tensor *g = tg_param_new(1, (int[]){3}), *b = tg_param_new(1, (int[]){3});
    uint64_t rng = 5;
    for (int64_t i = 0; i < x->size; i++) x->data[i] = tg_rand_normal(&rng);
    for (int64_t i = 0; i < w->size; i++) w->data[i] = 0.3f * tg_rand_normal(&rng);
    for (int i = 0; i < 3; i++) g->data[i] = 1 + 0.1f * (float)i, b->data[i] = 0.1f;
    tg_tensor *loss = small_net(t, x, w, g, b);
    CHECK_INT(tg_backward(t, loss), 0);
    float once[54];
    memcpy(once, w->grad, sizeof once);
    float gb = g->grad[1];
    /* the second sweep adds the same gradients again (retain_graph=True) */
    CHECK_INT(tg_backward(t, loss), 0);
    double worst = 0;
    for (int i = 0; i < 54; i++) worst = fmax(worst, fabs(w->grad[i] - 2 * once[i]));
    printf("backward twice: worst |dw - 2 dw_once| = %g\n", worst);
    CHECK(worst < 1e-6);
    CHECK(g->grad[1] == 2 * gb);

    /* off: a weight changed before backward goes unnoticed; on: the VJP is refused */
    tg_tape_reset(t);
    tg_tape_check_inputs(t, true);
    x = tg_tensor_tape(t, 4, (int[]){2, 2, 6, 6});
    for (int64_t i = 0; i < x->size; i++) x->data[i] = tg_rand_normal(&rng);
    loss = small_net(t, x, w, g, b);
    CHECK_INT(tg_backward(t, loss), 0); /* unchanged: fine */
    w->data[4] += 0.5f;                 /* an optimizer step too early */
    FAILS_INT(tg_backward(t, loss), TG_ERR_STATE, "conv2d: input 1 (param) of node %0 changed between forward "
                                                  "and backward");
    w->data[4] -= 0.5f;
    x->data[0] += 1; /* the batch refilled too early */
    FAILS_INT(tg_backward(t, loss), TG_ERR_STATE, "conv2d: input 0 (input) of node %0 changed");
    tg_tensor_free(w), tg_tensor_free(g), tg_tensor_free(b);
    tg_tape_free(t);
}

// ----------------------------------------------------------------------------
// non-finite values: they propagate, the finite check names the leaf, the demos' check names the gradient

static void nonfinite(void) {
    tg_model *m = tg_model_new(1);
    tg_model_conv2d(m, 1, 4, 3, 1, 1, false);
    tg_model_batch_norm(m, 4);
    tg_model_relu(m);
    tg_model_max_pool(m, 2, 2);
    tg_model_flatten(m);
    tg_model_linear(m, 4 * 3 * 3, 3, true);
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){2, 1, 6, 6});
    for (int64_t i = 0; i < x->size; i++) x->data[i] = (float)(i % 7) / 7;
    x->data[40] = NAN; /* one pixel */
    tg_tensor *loss = tg_cross_entropy(t, tg_model_forward(m, t, x), (int32_t[]){0, 2});
    CHECK(loss && isnan(loss->data[0])); /* relu(NaN) is NaN, as in PyTorch: the loss says so */
    CHECK_INT(tg_backward(t, loss), 0);
    FAILS_INT(tg_model_check_finite(m), TG_ERR_NONFINITE, "model: the gradient of 0.weight holds NaN");
    tg_model_zero_grad(m);
    CHECK_INT(tg_model_check_finite(m), 0);
    tg_tape_reset(t);
    tg_tape_check_finite(t, true);
    x = tg_tensor_tape(t, 4, (int[]){2, 1, 6, 6});
    x->data[40] = INFINITY;
    FAILS_PTR(tg_model_forward(m, t, x), TG_ERR_NONFINITE, "conv2d: input 0 (input, 2x1x6x6) holds +Inf at "
                                                           "element 40: a non-finite value entered the tape from a leaf");
    tg_tape_reset(t);
    tg_tensor **ps;
    CHECK_INT(tg_model_params(m, &ps), 5);
    ps[4]->data[2] = NAN; /* a parameter */
    x = tg_tensor_tape(t, 4, (int[]){2, 1, 6, 6});
    FAILS_PTR(tg_model_forward(m, t, x), TG_ERR_NONFINITE, "linear: input 2 (5.bias, 3) holds NaN at element 2: a "
                                                           "non-finite value entered the tape from a leaf");
    FAILS_INT(tg_model_check_finite(m), TG_ERR_NONFINITE, "model: the value of 5.bias holds NaN at element 2");
    tg_tape_free(t);
    tg_model_free(m);
}

// ----------------------------------------------------------------------------
// nn: models, init, SGD

static void *read_lists(void *arg) {
    tg_model *m = arg;
    long sum = 0;
    for (int k = 0; k < 2000; k++) {
        tg_tensor **p, **s;
        sum += tg_model_params(m, &p) + tg_model_state(m, &s);
        sum += p[0] == s[0];
    }
    return (void *)sum;
}

static void null_nn(void) {
    FAILS_PTR(tg_model_linear(NULL, 2, 2, true), TG_ERR_ARG, "model: linear added to a NULL model");
    FAILS_PTR(tg_model_conv2d(NULL, 1, 1, 3, 1, 1, true), TG_ERR_ARG, "model: conv2d added to a NULL model");
    FAILS_PTR(tg_model_conv2d_groups(NULL, 2, 2, 3, 1, 1, 2, true), TG_ERR_ARG, "conv2d added to a NULL model");
    FAILS_PTR(tg_model_batch_norm(NULL, 2), TG_ERR_ARG, "model: batch_norm added to a NULL model");
    FAILS_PTR(tg_model_relu(NULL), TG_ERR_ARG, "model: relu added to a NULL model");
    FAILS_PTR(tg_model_dropout(NULL, 0.5f), TG_ERR_ARG, "model: dropout added to a NULL model");
    FAILS_PTR(tg_model_max_pool(NULL, 2, 2), TG_ERR_ARG, "model: max_pool2d added to a NULL model");
    FAILS_PTR(tg_model_avg_pool(NULL, 2, 2), TG_ERR_ARG, "model: avg_pool2d added to a NULL model");
    FAILS_PTR(tg_model_global_avg_pool(NULL), TG_ERR_ARG, "model: global_avg_pool added to a NULL model");
    FAILS_PTR(tg_model_flatten(NULL), TG_ERR_ARG, "model: flatten added to a NULL model");
    FAILS_PTR(tg_model_sigmoid(NULL), TG_ERR_ARG, "model: sigmoid added to a NULL model");
    FAILS_PTR(tg_model_conv_transpose2d(NULL, 1, 1, 2, 2, 0, true), TG_ERR_ARG, "conv_transpose2d added to a NULL");
    FAILS_PTR(tg_model_upsample(NULL, 2, TG_UPSAMPLE_NEAREST), TG_ERR_ARG, "model: upsample added to a NULL model");
    FAILS_PTR(tg_model_residual(NULL, 2, 2, 1, 1), TG_ERR_ARG, "added to a NULL model");
    tg_model_free(NULL);
    tg_model_train(NULL, false);
    tg_model_zero_grad(NULL);
    FAILS_INT(tg_model_print(NULL, stdout, 0, NULL), TG_ERR_ARG, "model_print: model is NULL");
    CHECK(!tg_model_training(NULL));
    CHECK_INT(tg_model_layer_count(NULL), 0);
    CHECK(tg_model_layer(NULL, 0) == NULL);
    CHECK_INT(tg_model_param_count(NULL), 0);
    tg_tensor **list;
    FAILS_INT(tg_model_params(NULL, &list), TG_ERR_ARG, "model_params: model is NULL");
    FAILS_INT(tg_model_state(NULL, &list), TG_ERR_ARG, "model_state: model is NULL");
    FAILS_INT(tg_model_check_finite(NULL), TG_ERR_ARG, "model_check_finite: model is NULL");
    FAILS_INT(tg_model_init(NULL, TG_INIT_KAIMING_NORMAL, 1), TG_ERR_ARG, "model_init: model is NULL");
    tg_tape *t = tg_tape_new();
    FAILS_PTR(tg_model_forward(NULL, t, NULL), TG_ERR_ARG, "model: NULL model");
    /* layers and blocks of one's own */
    FAILS_PTR(tg_model_custom(NULL, "mine", NULL, NULL), TG_ERR_ARG, "model: mine added to a NULL model");
    FAILS_PTR(tg_model_begin(NULL, NULL, NULL, NULL), TG_ERR_ARG, "model: sequential added to a NULL model");
    FAILS_PTR(tg_model_end(NULL), TG_ERR_ARG, "model_end: model is NULL");
    FAILS_PTR(tg_layer_param(NULL, "w", 1, (int[]){2}, TG_PARAM_WEIGHT), TG_ERR_ARG, "layer_param: layer is NULL");
    FAILS_PTR(tg_layer_buffer(NULL, "b", 1, (int[]){2}, 0), TG_ERR_ARG, "layer_buffer: layer is NULL");
    FAILS_PTR(tg_layer_forward(NULL, t, NULL), TG_ERR_ARG, "layer_forward: layer is NULL");
    FAILS_PTR(tg_layer_forward_act(NULL, t, NULL, NULL, TG_ACT_RELU), TG_ERR_ARG, "layer_forward: layer is NULL");
    FAILS_INT(tg_layer_params(NULL, &list), TG_ERR_ARG, "layer_params: layer is NULL");
    FAILS_INT(tg_model_fail(NULL, TG_ERR_ARG, "mine: %d", 3), TG_ERR_ARG, "mine: 3");
    /* ONNX export, and its builder outside an export (tests/test_onnx.c has the rest) */
    FAILS_INT(tg_onnx_export(NULL, 2, (int[]){1, 2}, "m.onnx"), TG_ERR_ARG, "onnx_export: model is NULL");
    FAILS_INT(tg_onnx_export_opts(NULL, 2, (int[]){1, 2}, "m.onnx", NULL), TG_ERR_ARG, "onnx_export: model is NULL");
    FAILS_PTR(tg_onnx_name(NULL, NULL), TG_ERR_ARG, "onnx_name: graph is NULL");
    FAILS_PTR(tg_onnx_temp(NULL, NULL, "x", 1, (int[]){1}, false), TG_ERR_ARG, "onnx_temp: a NULL argument");
    FAILS_INT(tg_onnx_alias(NULL, NULL, NULL), TG_ERR_ARG, "onnx_alias: an argument is NULL");
    FAILS_PTR(tg_onnx_const_floats(NULL, "c", 0, NULL, (float[]){1}), TG_ERR_ARG, "onnx_const: a NULL argument");
    FAILS_PTR(tg_onnx_const_int64s(NULL, "c", 0, NULL, (int64_t[]){1}), TG_ERR_ARG, "onnx_const: a NULL argument");
    FAILS_INT(tg_onnx_node(NULL, "Relu", NULL, 0, NULL, 0), TG_ERR_ARG, "onnx_node: graph is NULL");
    FAILS_INT(tg_onnx_attr_int(NULL, "axis", 1), TG_ERR_ARG, "onnx_attr: graph is NULL");
    FAILS_INT(tg_onnx_attr_ints(NULL, "pads", (int64_t[]){0}, 1), TG_ERR_ARG, "onnx_attr: graph is NULL");
    FAILS_INT(tg_onnx_attr_float(NULL, "epsilon", 1e-5f), TG_ERR_ARG, "onnx_attr: graph is NULL");
    FAILS_INT(tg_onnx_attr_string(NULL, "mode", "linear"), TG_ERR_ARG, "onnx_attr: graph is NULL");
    FAILS_INT(tg_onnx_mark(NULL, NULL), TG_ERR_ARG, "onnx_mark: not a node");
    CHECK(!tg_onnx_consumer(NULL, NULL) && !tg_onnx_folding(NULL) && !tg_onnx_marked(NULL, NULL));
    CHECK(!tg_onnx_batched(NULL, NULL));
    FAILS_INT(tg_model_evaluate(NULL, NULL, 1, NULL), TG_ERR_ARG, "model_evaluate: model is NULL");
    FAILS_INT(tg_argmax(NULL, NULL), TG_ERR_ARG, "argmax: tensor is NULL");
    FAILS_INT(tg_clip_grad_norm(NULL, 1, 1.0f, 2.0f, NULL), TG_ERR_ARG, "clip_grad_norm: no parameters");
    FAILS_PTR(tg_adam_new(NULL, 1, TG_ADAM(1e-3)), TG_ERR_ARG, "adam: no parameters");
    FAILS_INT(tg_adam_step(NULL), TG_ERR_ARG, "adam_step: optimizer is NULL");
    FAILS_INT(tg_adam_set_lr(NULL, 0.1), TG_ERR_ARG, "adam_set_lr: optimizer is NULL");
    FAILS_INT(tg_adam_state(NULL, &list), TG_ERR_ARG, "adam_state: optimizer is NULL");
    CHECK(tg_adam_lr(NULL) == 0);
    tg_adam_zero_grad(NULL);
    tg_adam_free(NULL);
    FAILS_PTR(tg_optim_sgd(NULL, 1, (tg_sgd_opts){.lr = 0.1}), TG_ERR_ARG, "optim (sgd): no parameters");
    FAILS_PTR(tg_optim_adam(NULL, 1, TG_ADAM(1e-3)), TG_ERR_ARG, "optim (adam): no parameters");
    FAILS_INT(tg_optim_add_group(NULL, NULL, 0, 0.1, 0), TG_ERR_ARG, "optim_add_group: optimizer is NULL");
    FAILS_INT(tg_optim_step(NULL), TG_ERR_ARG, "optim_step: optimizer is NULL");
    FAILS_INT(tg_optim_set_lr(NULL, -1, 0.1), TG_ERR_ARG, "optim_set_lr: optimizer is NULL");
    FAILS_INT(tg_optim_state(NULL, &list), TG_ERR_ARG, "optim_state: optimizer is NULL");
    FAILS_INT(tg_params_split_decay(NULL, 1, NULL, NULL, NULL), TG_ERR_ARG, "params_split_decay: an argument is NULL");
    CHECK(tg_optim_lr(NULL, 0) == 0 && tg_optim_groups(NULL) == 0);
    tg_optim_zero_grad(NULL);
    tg_optim_free(NULL);
    FAILS_PTR(tg_sched_new(NULL, (tg_sched_opts){0}), TG_ERR_ARG, "sched: optimizer is NULL");
    FAILS_INT(tg_sched_step(NULL), TG_ERR_ARG, "sched_step: schedule is NULL");
    FAILS_INT(tg_sched_apply(NULL), TG_ERR_ARG, "sched_apply: schedule is NULL");
    FAILS_INT(tg_sched_state(NULL, &list), TG_ERR_ARG, "sched_state: schedule is NULL");
    CHECK(tg_sched_lr(NULL, 0) == 0 && tg_sched_position(NULL) == 0);
    tg_sched_free(NULL);
    FAILS_INT(tg_clip_grad_value((tg_tensor *[]){NULL}, 1, 1.0f), TG_ERR_ARG, "clip_grad_value: parameter 0 (NULL)");
    CHECK(tg_layer_set_name(NULL, "x") == NULL);
    CHECK(tg_model_find(NULL, "0") == NULL);
    tg_layer_train(NULL, false);

    tg_model *m = tg_model_new(3);
    tg_model_linear(m, 4, 3, true);
    FAILS_INT(tg_model_params(m, NULL), TG_ERR_ARG, "model_params: params is NULL");
    FAILS_INT(tg_model_state(m, NULL), TG_ERR_ARG, "model_state: state is NULL");
    FAILS_INT(tg_model_init(m, (tg_init)99, 1), TG_ERR_ARG, "model_init: unknown scheme 99");
    FAILS_PTR(tg_model_forward(m, t, NULL), TG_ERR_ARG, "model_forward: input is NULL");
    FAILS_PTR(tg_model_forward(m, NULL, tg_tensor_tape(t, 2, (int[]){1, 4})), TG_ERR_ARG, "model_forward: tape is NULL");
    CHECK(tg_model_layer(m, -1) == NULL && tg_model_layer(m, 1) == NULL);
    FAILS_INT(tg_model_print(m, NULL, 0, NULL), TG_ERR_ARG, "model_print: file is NULL");
    FAILS_INT(tg_model_print(m, stdout, 5, (int[]){1, 1, 1, 1, 1}), TG_ERR_ARG, "input shape has 2 to 4");
    FAILS_INT(tg_model_print(m, stdout, 2, NULL), TG_ERR_ARG, "shape NULL");
    FAILS_PTR(tg_layer_forward(tg_model_layer(m, 0), NULL, NULL), TG_ERR_ARG, "layer_forward: tape is NULL");
    FAILS_PTR(tg_layer_forward(tg_model_layer(m, 0), t, NULL), TG_ERR_ARG, "layer_forward: 0: input is NULL");
    FAILS_PTR(tg_layer_forward_act(tg_model_layer(m, 0), t, tg_tensor_tape(t, 2, (int[]){1, 4}), NULL, (tg_act)9),
              TG_ERR_ARG, "layer_forward: 0: unknown activation 9");
    FAILS_INT(tg_layer_params(tg_model_layer(m, 0), NULL), TG_ERR_ARG, "layer_params: params is NULL");
    CHECK(tg_model_find(m, NULL) == NULL);
    /* an array handed out stays valid after more layers are added (ASan would see a use after free) */
    tg_tensor **before;
    CHECK_INT(tg_model_params(m, &before), 2);
    tg_model_batch_norm(m, 3);
    tg_model_linear(m, 3, 2, false);
    CHECK(strcmp(before[0]->name, "0.weight") == 0 && strcmp(before[1]->name, "0.bias") == 0);
    tg_tensor **after, **state;
    CHECK_INT(tg_model_params(m, &after), 5);
    CHECK_INT(tg_model_state(m, &state), 8);
    CHECK(after[4] == state[4] && strcmp(state[6]->name, "1.running_var") == 0);
    /* several threads read the lists of a shared model */
    pthread_t th[4];
    void *got[4];
    for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, read_lists, m);
    for (int i = 0; i < 4; i++) pthread_join(th[i], &got[i]);
    for (int i = 0; i < 4; i++) CHECK_INT((long)got[i], 2000 * 14);

    uint64_t rng = 1;
    FAILS_INT(tg_init_kaiming_normal(NULL, &rng), TG_ERR_ARG, "init_kaiming_normal: tensor is NULL");
    FAILS_INT(tg_init_kaiming_uniform(after[0], NULL), TG_ERR_ARG, "init_kaiming_uniform: rng is NULL");
    FAILS_INT(tg_init_xavier_normal(NULL, &rng), TG_ERR_ARG, "init_xavier_normal: tensor is NULL");
    FAILS_INT(tg_init_xavier_uniform(NULL, &rng), TG_ERR_ARG, "init_xavier_uniform: tensor is NULL");
    CHECK_INT(tg_init_xavier_uniform(after[0], &rng), 0);
    tg_model_free(m);
    tg_tape_free(t);
}

static void sgd_mistakes(void) {
    tg_tensor *a = tg_param_new(1, (int[]){3}), *b = tg_param_new(1, (int[]){3}), *c = tg_tensor_new(1, (int[]){3});
    tg_tensor_set_name(b, "b");
    tg_sgd_opts o = {0.5f, 0.9f, 0, 0.1f, false};
    FAILS_PTR(tg_sgd_new(NULL, 2, o), TG_ERR_ARG, "sgd: no parameters");
    FAILS_PTR(tg_sgd_new((tg_tensor *[]){a, NULL}, 2, o), TG_ERR_ARG, "sgd: parameter 1 is NULL");
    FAILS_PTR(tg_sgd_new((tg_tensor *[]){a, c}, 2, o), TG_ERR_ARG, "sgd: parameter 1 (unnamed) is not a heap tensor "
                                                                   "with a gradient");
    FAILS_PTR(tg_sgd_new((tg_tensor *[]){a, b, b}, 3, o), TG_ERR_ARG, "sgd: parameters 1 and 2 are the same tensor "
                                                                      "(b): each may be listed once");
    FAILS_PTR(tg_sgd_new(&a, 1, ((tg_sgd_opts){NAN, 0, 0, 0, false})), TG_ERR_ARG, "sgd: lr nan: must be finite");
    FAILS_PTR(tg_sgd_new(&a, 1, ((tg_sgd_opts){INFINITY, 0, 0, 0, false})), TG_ERR_ARG, "sgd: lr inf");
    FAILS_PTR(tg_sgd_new(&a, 1, ((tg_sgd_opts){0.1f, -1, 0, 0, false})), TG_ERR_ARG, "sgd: lr 0.1, momentum -1");
    FAILS_PTR(tg_sgd_new(&a, 1, ((tg_sgd_opts){0.1f, 0, 2, 0, false})), TG_ERR_ARG, "dampening in [0, 1]");
    FAILS_PTR(tg_sgd_new(&a, 1, ((tg_sgd_opts){0.1f, 0, 0, 0, true})), TG_ERR_ARG, "sgd: nesterov momentum requires");
    FAILS_INT(tg_sgd_step(NULL), TG_ERR_ARG, "sgd_step: optimizer is NULL");
    FAILS_INT(tg_sgd_set_lr(NULL, 0.1f), TG_ERR_ARG, "sgd_set_lr: optimizer is NULL");
    tg_tensor **st;
    FAILS_INT(tg_sgd_state(NULL, &st), TG_ERR_ARG, "sgd_state: optimizer is NULL");
    CHECK(tg_sgd_lr(NULL) == 0.0f);
    tg_sgd_free(NULL);
    tg_sgd_zero_grad(NULL);

    tg_sgd *s = tg_sgd_new((tg_tensor *[]){a, b}, 2, o);
    CHECK(s != NULL);
    FAILS_INT(tg_sgd_state(s, NULL), TG_ERR_ARG, "sgd_state: state is NULL");
    FAILS_INT(tg_sgd_set_lr(s, -0.1f), TG_ERR_ARG, "sgd: lr -0.1: must be finite and >= 0");
    FAILS_INT(tg_sgd_set_lr(s, NAN), TG_ERR_ARG, "sgd: lr nan");
    CHECK(tg_sgd_lr(s) == 0.5f); /* unchanged */
    CHECK_INT(tg_sgd_set_lr(s, 0.25f), 0);
    /* a frozen parameter is skipped whole: no weight decay, no momentum */
    for (int i = 0; i < 3; i++) a->data[i] = b->data[i] = 1, a->grad[i] = b->grad[i] = 1;
    CHECK_INT(tg_tensor_set_requires_grad(b, false), 0);
    CHECK_INT(tg_sgd_step(s), 0);
    CHECK_INT(tg_sgd_step(s), 0);
    CHECK(b->data[0] == 1 && b->data[2] == 1);
    /* a: g = 1 + 0.1 * 1 = 1.1, buf = 1.1, p = 1 - 0.25 * 1.1 = 0.725; then g = 1 + 0.0725 = 1.0725,
     * buf = 0.9 * 1.1 + 1.0725 = 2.0625, p = 0.725 - 0.25 * 2.0625 = 0.209375 */
    CHECK_NEAR(a->data[1], 0.209375, 1e-6);
    /* a NaN or Inf gradient is reported by the step that reads it */
    a->grad[2] = -INFINITY;
    FAILS_INT(tg_sgd_step(s), TG_ERR_NONFINITE, "sgd: the gradient of a parameter holds -Inf at element 2; the step "
                                                "was taken");
    tg_tensor *big = tg_param_new(1, (int[]){100000});
    tg_tensor_set_name(big, "big");
    big->grad[99999] = NAN;
    tg_sgd *s2 = tg_sgd_new(&big, 1, (tg_sgd_opts){0.1f, 0, 0, 0, false});
    FAILS_INT(tg_sgd_step(s2), TG_ERR_NONFINITE, "sgd: the gradient of big holds NaN at element 99999");
    big->grad[99999] = 0;
    CHECK_INT(tg_sgd_step(s2), 0);
    /* with two, the first in the list is named, though its blocks and the other's ran on different threads */
    tg_tensor *two[2] = {big, a};
    tg_sgd *s3 = tg_sgd_new(two, 2, (tg_sgd_opts){0.1f, 0, 0, 0, false});
    big->grad[5] = INFINITY, a->grad[2] = NAN;
    FAILS_INT(tg_sgd_step(s3), TG_ERR_NONFINITE, "sgd: the gradient of big holds +Inf at element 5");
    big->grad[5] = 0;
    FAILS_INT(tg_sgd_step(s3), TG_ERR_NONFINITE, "sgd: the gradient of a parameter holds NaN at element 2");
    tg_sgd_free(s3);
    tg_sgd_free(s2);
    tg_tensor_free(big);
    tg_sgd_free(s);
    tg_tensor_free(a), tg_tensor_free(b), tg_tensor_free(c);
}

// ----------------------------------------------------------------------------
// data and files: NULL, files that are not regular, a short last batch

static void files(void) {
    tg_idx idx;
    FAILS_INT(tg_idx_load(NULL, "x"), TG_ERR_ARG, "idx_load: idx is NULL");
    FAILS_INT(tg_idx_load(&idx, NULL), TG_ERR_ARG, "idx_load: path is NULL");
    tg_idx_release(NULL);
    FAILS_PTR(tg_dataset_new(NULL, "train", 0, 0, 1), TG_ERR_ARG, "dataset_new: dir is NULL or empty");
    FAILS_PTR(tg_dataset_new(dir, NULL, 0, 0, 1), TG_ERR_ARG, "dataset_new: split is NULL or empty");
    FAILS_PTR(tg_dataset_new(dir, "train", -1, 0, 1), TG_ERR_ARG, "limit is -1");
    FAILS_PTR(tg_dataset_new(dir, "train", 0, 0, 0), TG_ERR_ARG, "std is 0, must be positive");
    tg_dataset_free(NULL);
    FAILS_INT(tg_permutation(NULL, 5, 1), TG_ERR_ARG, "permutation: n is 5");
    FAILS_INT(tg_permutation((int[1]){0}, -1, 1), TG_ERR_ARG, "permutation: n is -1");
    FAILS_PTR(tg_image_load(NULL, NULL), TG_ERR_ARG, "image_load: path is NULL");
    FAILS_PTR(tg_image_load("x.png", &(tg_image_opts){.channels = 5}), TG_ERR_ARG, "image x.png: channels is 5");
    FAILS_PTR(tg_image_load("x.png", &(tg_image_opts){.width = -1}), TG_ERR_ARG, "image x.png: a negative size");
    FAILS_PTR(tg_image_load("x.png", &(tg_image_opts){.channels = 1, .std = (float[]){0}}), TG_ERR_ARG,
              "image x.png: std[0] is 0");
    FAILS_PTR(tg_image_load_batch(NULL, 1, NULL), TG_ERR_ARG, "image_load_batch: paths is NULL");
    FAILS_PTR(tg_image_load_batch((const char *[]){"x.png"}, 0, NULL), TG_ERR_ARG, "no images");
    FAILS_PTR(tg_image_load_batch((const char *[]){NULL}, 1, NULL), TG_ERR_ARG, "paths[0] is NULL");
    FAILS_PTR(tg_image_resize(NULL, 2, 2), TG_ERR_ARG, "image_resize: x is NULL");
    FAILS_INT(tg_image_write_png(NULL, NULL, 0, 1), TG_ERR_ARG, "image_write_png: path is NULL");
    FAILS_INT(tg_image_write_png("x.png", NULL, 0, 1), TG_ERR_ARG, "image_write_png x.png: x is NULL");
    FAILS_INT(tg_image_write_grid_png("", NULL, 0, 0, 0, 1), TG_ERR_ARG, "image_write_grid_png: path is empty");
    /* MPI's calls with no tg_mpi (with MPI built or without: a message either way, MPI untouched) */
    int first, count;
    FAILS_INT(tg_mpi_share(NULL, 64, &first, &count), TG_ERR_ARG, "mpi_share: ");
    FAILS_INT(tg_mpi_attach(NULL, NULL, 64), TG_ERR_ARG, "mpi_attach: ");
    FAILS_INT(tg_mpi_allreduce_grads(NULL, NULL, 0, 64), TG_ERR_ARG, "mpi_allreduce_grads: ");
    FAILS_INT(tg_mpi_sum(NULL, NULL, 1), TG_ERR_ARG, "mpi_sum: ");
    CHECK(tg_mpi_rank(NULL) == 0 && tg_mpi_size(NULL) == 1 && tg_mpi_writer(NULL));
    tg_mpi_finalize(NULL);
    tg_tensor *w = tg_param_new(1, (int[]){2});
    tg_tensor_set_name(w, "w");
    FAILS_INT(tg_checkpoint_save(NULL, &w, 1), TG_ERR_ARG, "checkpoint_save: path is NULL");
    FAILS_INT(tg_checkpoint_save(path("c"), NULL, 1), TG_ERR_ARG, "1 tensors at (nil)");
    FAILS_INT(tg_checkpoint_save(path("c"), (tg_tensor *[]){w, NULL}, 2), TG_ERR_ARG, "tensor 1 is NULL");
    FAILS_INT(tg_checkpoint_load(NULL, &w, 1), TG_ERR_ARG, "checkpoint_load: path is NULL");
    FAILS_INT(tg_checkpoint_load_prefix(NULL, &w, 1), TG_ERR_ARG, "checkpoint_load_prefix: path is NULL");
    FAILS_INT(tg_checkpoint_load(path("c"), &w, -2), TG_ERR_ARG, "-2 tensors");
    FAILS_INT(tg_safetensors_save(NULL, &w, 1, NULL), TG_ERR_ARG, "safetensors_save: path is NULL");
    FAILS_INT(tg_safetensors_save("", &w, 1, NULL), TG_ERR_ARG, "safetensors_save: path is empty");
    FAILS_INT(tg_safetensors_save(path("s"), NULL, 1, NULL), TG_ERR_ARG, "safetensors " );
    FAILS_INT(tg_safetensors_save(path("s"), &w, 0, NULL), TG_ERR_ARG, ": no tensors");
    FAILS_INT(tg_safetensors_save(path("s"), (tg_tensor *[]){w, NULL}, 2, NULL), TG_ERR_ARG, "tensor 1 is NULL");
    tg_tensor *anon = tg_tensor_new(0, NULL);
    FAILS_INT(tg_safetensors_save(path("s"), &anon, 1, NULL), TG_ERR_ARG, "tensor 0 has no name");
    tg_tensor_free(anon);
    FAILS_INT(tg_safetensors_load(NULL, &w, 1), TG_ERR_ARG, "safetensors_load: path is NULL");
    FAILS_INT(tg_safetensors_load(path("s"), NULL, 1), TG_ERR_ARG, ": no tensors");
    FAILS_INT(tg_safetensors_load(path("s"), &w, -2), TG_ERR_ARG, ": no tensors");
    FAILS_INT(tg_safetensors_load(path("s"), (tg_tensor *[]){w, NULL}, 2), TG_ERR_ARG, "tensor 1 is NULL");

    /* a name outside ASCII loads back (messages show it with '?' instead) */
    tg_tensor_set_name(w, "poids_\xc3\xa9");
    w->data[1] = 3;
    CHECK_INT(tg_checkpoint_save(path("utf8"), &w, 1), 0);
    w->data[1] = 0;
    CHECK_INT(tg_checkpoint_load(path("utf8"), &w, 1), 0);
    CHECK(w->data[1] == 3);
    tg_tensor_set_name(w, "w");
    FAILS_INT(tg_checkpoint_load(path("utf8"), &w, 1), TG_ERR_SHAPE, "tensor 0 is 'poids_?\?' in the file, 'w' in the model");

    /* a FIFO, a device, a directory: refused at once by every loader (a FIFO used to hang) */
    CHECK_INT(mkfifo(path("fifo"), 0600), 0);
    CHECK_INT(mkdir(path("adir"), 0700), 0);
    const char *odd[] = {path("fifo"), "/dev/null", path("adir")};
    const char *kind[] = {"(a FIFO)", "(a character device)", "(a directory)"};
    for (int i = 0; i < 3; i++) {
        char want[64];
        snprintf(want, sizeof want, "not a regular file %s", kind[i]);
        FAILS_INT(tg_idx_load(&idx, odd[i]), TG_ERR_IO, want);
        FAILS_INT(tg_checkpoint_load(odd[i], &w, 1), TG_ERR_IO, want);
        FAILS_INT(tg_checkpoint_load_prefix(odd[i], &w, 1), TG_ERR_IO, want);
        FAILS_INT(tg_safetensors_load(odd[i], &w, 1), TG_ERR_IO, want);
        FAILS_PTR(tg_image_load(odd[i], NULL), TG_ERR_IO, want);
        if (i != 1) FAILS_INT(tg_checkpoint_save(odd[i], &w, 1), TG_ERR_IO, want); /* a device: test_checkpoint
                                                                         tries it as an unprivileged user only */
        if (i != 1) FAILS_INT(tg_safetensors_save(odd[i], &w, 1, NULL), TG_ERR_IO, want);
    }
    struct stat st;
    CHECK(stat(path("fifo"), &st) == 0 && S_ISFIFO(st.st_mode)); /* left as it was */
    CHECK(stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode));
    /* a dataset whose image file is a FIFO */
    CHECK_INT(mkdir(path("ds"), 0700), 0);
    CHECK_INT(mkfifo(path("ds/train-images-idx3-ubyte"), 0600), 0);
    write_idx("ds/train-labels-idx1-ubyte", 1, (uint32_t[]){5}, 1);
    FAILS_PTR(tg_dataset_new(path("ds"), "train", 0, 0, 1), TG_ERR_IO, "not a regular file (a FIFO)");

    /* a short last batch: x must be as long as what is left */
    CHECK_INT(mkdir(path("ok"), 0700), 0);
    write_idx("ok/train-images-idx3-ubyte", 3, (uint32_t[]){5, 2, 2}, 0);
    write_idx("ok/train-labels-idx1-ubyte", 1, (uint32_t[]){5}, 0);
    tg_dataset *ds = tg_dataset_new(path("ok"), "train", 0, 0, 1);
    CHECK(ds != NULL);
    tg_tape *t = tg_tape_new();
    tg_tensor *x4 = tg_tensor_tape(t, 4, (int[]){4, 1, 2, 2}), *x1 = tg_tensor_tape(t, 4, (int[]){1, 1, 2, 2});
    int32_t labels[4];
    FAILS_INT(tg_dataset_batch(NULL, NULL, 0, x4, labels), TG_ERR_ARG, "dataset_batch: dataset is NULL");
    FAILS_INT(tg_dataset_batch(ds, NULL, 0, NULL, labels), TG_ERR_ARG, "dataset_batch: x is NULL");
    FAILS_INT(tg_dataset_batch(ds, NULL, 5, x4, labels), TG_ERR_ARG, "dataset_batch: start 5 is outside [0, 5)");
    CHECK_INT(tg_dataset_batch(ds, NULL, 0, x4, labels), 4);
    FAILS_INT(tg_dataset_batch(ds, NULL, 4, x4, labels), TG_ERR_SHAPE, "dataset_batch: x holds 4 samples but only 1");
    CHECK_INT(tg_dataset_batch(ds, NULL, 4, x1, labels), 1);
    FAILS_INT(tg_dataset_batch(ds, (int[]){0, 1, 2, 3, 9}, 4, x1, labels), TG_ERR_ARG, "perm[4] is 9");
    tg_augment aug = {10, 0.1f, 1}, bad = {10, 0.1f, 2}; /* the images are 2 wide */
    FAILS_INT(tg_dataset_batch_augment(NULL, NULL, 0, x4, labels, &aug, 1), TG_ERR_ARG,
              "dataset_batch: dataset is NULL");
    FAILS_INT(tg_dataset_batch_augment(ds, NULL, 0, NULL, labels, &aug, 1), TG_ERR_ARG, "dataset_batch: x is NULL");
    FAILS_INT(tg_dataset_batch_augment(ds, NULL, 0, x4, labels, &bad, 1), TG_ERR_ARG,
              "aug degrees 10, scale 0.1, shift 2");
    CHECK_INT(tg_dataset_batch_augment(ds, NULL, 0, x4, labels, NULL, 1), 4);
    tg_tape_free(t);
    tg_dataset_free(ds);
    tg_tensor_free(w);
}

// ----------------------------------------------------------------------------
// the store-or-add decision the engine hands an op with overwrites_grads

static bool seen_store[3][TG_MAX_INPUTS];
static int seen_calls;
static int sum3_shape(tg_node *n, int *ndim, int *shape) {
    *ndim = n->in[0]->ndim;
    for (int i = 0; i < *ndim; i++) shape[i] = n->in[0]->shape[i];
    return 0;
}
static int sum3_forward(tg_tape *t, tg_node *n) { /* y = a + b + c */
    (void)t;
    for (int64_t i = 0; i < n->out->size; i++)
        n->out->data[i] = n->in[0]->data[i] + n->in[1]->data[i] + n->in[2]->data[i];
    return 0;
}
static int sum3_vjp(tg_tape *t, tg_node *n) { /* each input: dy, stored or added as the engine says */
    (void)t;
    if (seen_calls < 3) memcpy(seen_store[seen_calls], n->store, sizeof n->store);
    seen_calls++;
    for (int k = 0; k < 3; k++) {
        if (!n->in[k]->requires_grad) continue;
        for (int64_t i = 0; i < n->out->size; i++)
            n->in[k]->grad[i] = (n->store[k] ? 0 : n->in[k]->grad[i]) + n->out->grad[i];
    }
    return 0;
}

static void store_decision(void) {
    const tg_op sum3 = {.name = "sum3", .shape = sum3_shape, .forward = sum3_forward, .vjp = sum3_vjp,
                        .overwrites_grads = true};
    tg_tape *t = tg_tape_new();
    tg_tape_check_finite(t, true); /* unset gradients hold NaN: one added into is caught */
    tg_tensor *p = tg_param_new(1, (int[]){4}), *q = tg_param_new(1, (int[]){4});
    for (int i = 0; i < 4; i++) p->data[i] = (float)i, q->data[i] = 1;
    tg_tensor *c = tg_tensor_tape(t, 1, (int[]){4}); /* takes no gradient */
    tg_tensor *h = tg_relu(t, p), *g = tg_relu(t, q);
    /* h given twice (store at its first position, then add), c without a gradient, then g and h
     * again once h's gradient holds values */
    tg_tensor *y1 = tg_apply(t, &sum3, (tg_tensor *[]){h, c, h}, 3, NULL);
    tg_tensor *y2 = tg_apply(t, &sum3, (tg_tensor *[]){y1, g, h}, 3, NULL);
    CHECK(y1 && y2);
    seen_calls = 0;
    CHECK_INT(tg_backward(t, tg_sum(t, y2)), 0);
    CHECK_INT(seen_calls, 2);
    /* y2 first: y1 and g unset (store), h unset (store); then y1: h already holds values */
    CHECK(seen_store[0][0] && seen_store[0][1] && seen_store[0][2]);
    CHECK(!seen_store[1][0] && !seen_store[1][1] && !seen_store[1][2]);
    for (int i = 0; i < 4; i++) { /* dh = 1 (y2) + 2 (y1); relu passes where p > 0 */
        CHECK(p->grad[i] == (i > 0 ? 3.0f : 0.0f));
        CHECK(q->grad[i] == 1.0f);
    }
    tg_tape_reset(t);
    h = tg_relu(t, p);
    y1 = tg_apply(t, &sum3, (tg_tensor *[]){h, h, h}, 3, NULL);
    seen_calls = 0;
    tg_tensor_zero_grad(p);
    CHECK_INT(tg_backward(t, tg_sum(t, y1)), 0);
    CHECK(seen_store[0][0] && !seen_store[0][1] && !seen_store[0][2]);
    for (int i = 0; i < 4; i++) CHECK(p->grad[i] == (i > 0 ? 3.0f : 0.0f));
    tg_tensor_free(p), tg_tensor_free(q);
    tg_tape_free(t);
}

int main(void) {
    alarm(300); /* a loader that blocks fails the test instead of hanging it */
    if (!mkdtemp(dir)) return 1;
    null_engine();
    null_ops();
    stale_and_foreign();
    arena();
    descriptors();
    twice_and_changed();
    store_decision();
    nonfinite();
    null_nn();
    sgd_mistakes();
    files();
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) return 1;
    CHECK_DONE();
}
