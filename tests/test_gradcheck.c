/* test_gradcheck.c: one table-driven finite-difference check over every op in
 * the op table, and proof that the check catches a wrong VJP.
 * Adding an op means adding a row here; an op without a row fails the test. */
#include "check.h"
#include "ops.h"
#include "tapegrad.h"
#include <stdint.h>
#include <stdlib.h>

enum { UNIFORM, AWAY0, DISTINCT, POSITIVE, SMALL, SPLIT, KINKS6, PEAKED, SPLIT5 };

typedef struct {
    int ndim;
    int shape[4];
    int init;      /* UNIFORM in [-1,1]; AWAY0 |x| in [0.2,1] (kinks); DISTINCT no ties; POSITIVE in [0.5,1.5];
                    * SMALL in [-0.1,0.1] (added to AWAY0, the sum stays off the kink);
                    * SPLIT -30, +30, ... (a bias that puts a fused ReLU's channels far off or far on);
                    * KINKS6 in [-4,8], 0.2 clear of -3, 0, 3 and 6 (the kinks of relu6 and hardswish);
                    * PEAKED a conv weight (K,C,R,S) whose filter k is 1 at channel k % C's centre tap and
                    * within 0.001 of 0 elsewhere: it passes a DISTINCT input on nearly unchanged, so that
                    * pooling after it finds each window's maximum clear of the step; SPLIT5 -5, +5, ...
                    * (SPLIT for outputs within 4 of 0 before it, as PEAKED's: nearer 0, a float
                    * output keeps more of the small weights' share) */
    bool no_grad;  /* an input that takes no gradient (running statistics, say) */
} in_spec;

typedef struct {
    const char *op; /* its name in the op table */
    tg_build_fn build;
    int n_in;
    in_spec in[TG_MAX_INPUTS];
    tg_act act;     /* attributes a row may carry: the fused activation (conv2d, batch_norm, residual_add) */
} row;

static const int32_t labels[8] = {2, 0, 1, 3, 3, 1, 0, 2};

#define BUILD(fn, expr) \
    static tg_tensor *fn(tg_tape *t, tg_tensor **x, void *ctx) { (void)ctx; return expr; }
#define ACT (((const row *)ctx)->act) /* the row's activation, in a BUILD expression */

BUILD(b_add, tg_add(t, x[0], x[1]))
BUILD(b_sub, tg_sub(t, x[0], x[1]))
BUILD(b_mul, tg_mul(t, x[0], x[1]))
BUILD(b_relu, tg_relu(t, x[0]))
BUILD(b_relu6, tg_relu6(t, x[0]))
BUILD(b_hardswish, tg_hardswish(t, x[0]))
BUILD(b_sigmoid, tg_sigmoid(t, x[0]))
BUILD(b_tanh, tg_tanh(t, x[0]))
BUILD(b_sum, tg_sum(t, x[0]))
BUILD(b_mean, tg_mean(t, x[0]))
BUILD(b_matmul, tg_matmul(t, x[0], x[1]))
BUILD(b_linear, tg_linear(t, x[0], x[1], x[2]))
BUILD(b_linear_nobias, tg_linear(t, x[0], x[1], NULL))
BUILD(b_reshape, tg_reshape(t, x[0], 2, (int[]){4, -1}))
BUILD(b_cat_ch2, tg_cat(t, x, 2, 1))
BUILD(b_cat_ch3, tg_cat(t, x, 3, 1))
BUILD(b_cat_first, tg_cat(t, x, 2, 0))
BUILD(b_cat_last, tg_cat(t, x, 2, -1))
BUILD(b_cat_twice, tg_cat(t, (tg_tensor *[]){x[0], x[1], x[0]}, 3, -3)) /* x[0] stored, then added */
BUILD(b_ce, tg_cross_entropy(t, x[0], labels))
BUILD(b_softmax, tg_softmax(t, x[0]))
BUILD(b_residual, tg_residual_add(t, x[0], x[1]))
BUILD(b_residual_act, tg_residual_add_act(t, x[0], x[1], ACT))
BUILD(b_conv, tg_conv2d(t, x[0], x[1], x[2], 1, 1, 1, 1))
BUILD(b_conv_s2d2, tg_conv2d(t, x[0], x[1], x[2], 2, 1, 2, 1))
BUILD(b_conv_groups, tg_conv2d(t, x[0], x[1], NULL, 1, 0, 1, 2))
BUILD(b_conv_depthwise, tg_conv2d(t, x[0], x[1], x[2], 1, 1, 1, 4))
BUILD(b_conv_1x1, tg_conv2d(t, x[0], x[1], NULL, 1, 0, 1, 1))
BUILD(b_conv_act, tg_conv2d_act(t, x[0], x[1], x[2], 1, 1, 1, 1, ACT))
BUILD(b_conv_act_s2, tg_conv2d_act(t, x[0], x[1], x[2], 2, 1, 1, 1, ACT))
BUILD(b_conv_pool, tg_conv2d_relu_max_pool(t, x[0], x[1], x[2], 1, 0, 1, 1))
BUILD(b_conv_pool_odd, tg_conv2d_relu_max_pool(t, x[0], x[1], x[2], 1, 0, 1, 1))
BUILD(b_conv_pool_s2, tg_conv2d_relu_max_pool(t, x[0], x[1], x[2], 2, 1, 1, 1))
BUILD(b_maxpool, tg_max_pool2d(t, x[0], 2, 2, 0))
BUILD(b_maxpool_pad, tg_max_pool2d(t, x[0], 3, 2, 1))
BUILD(b_avgpool, tg_avg_pool2d(t, x[0], 3, 2, 1))
BUILD(b_gap, tg_global_avg_pool(t, x[0]))
BUILD(b_dropout, tg_dropout(t, x[0], 0.3f, true))
BUILD(b_dropout_eval, tg_dropout(t, x[0], 0.3f, false))
BUILD(b_vanilla, tg_dropout_vanilla(t, x[0], 0.4f, true))
BUILD(b_vanilla_eval, tg_dropout_vanilla(t, x[0], 0.4f, false))

BUILD(b_convt, tg_conv_transpose2d(t, x[0], x[1], x[2], 2, 1, 1, 1, 1))
BUILD(b_convt_groups, tg_conv_transpose2d(t, x[0], x[1], NULL, 1, 0, 0, 2, 2))
BUILD(b_up_nearest, tg_upsample(t, x[0], 2, TG_UPSAMPLE_NEAREST))
BUILD(b_up_bilinear, tg_upsample(t, x[0], 3, TG_UPSAMPLE_BILINEAR))
BUILD(b_layer_norm, tg_layer_norm(t, x[0], x[1], x[2], 1e-5f))
BUILD(b_mse, tg_mse_loss(t, x[0], x[1]))

static tg_tensor *running[2]; /* batch norm's running mean and variance, made in main */
BUILD(b_bn, tg_batch_norm(t, x[0], x[1], x[2], running[0], running[1], true, 0.1f, 1e-5f))
BUILD(b_bn_eval, tg_batch_norm(t, x[0], x[1], x[2], running[0], running[1], false, 0.1f, 1e-5f))
BUILD(b_bn_act, tg_batch_norm_act(t, x[0], x[1], x[2], running[0], running[1], true, 0.1f, 1e-5f, NULL, ACT))
BUILD(b_bn_add_act, tg_batch_norm_act(t, x[0], x[1], x[2], running[0], running[1], true, 0.1f, 1e-5f, x[3], ACT))
BUILD(b_bn_pool, tg_batch_norm_relu_max_pool(t, x[0], x[1], x[2], running[0], running[1], true, 0.1f, 1e-5f, NULL))
BUILD(b_bn_add_pool, tg_batch_norm_relu_max_pool(t, x[0], x[1], x[2], running[0], running[1], true, 0.1f, 1e-5f, x[3]))

static const row rows[] = {
    {"add", b_add, 2, {{2, {3, 4}}, {2, {3, 4}}}},
    {"add", b_add, 2, {{4, {2, 3, 2, 2}}, {3, {3, 1, 1}}}}, /* per-channel bias */
    {"sub", b_sub, 2, {{2, {3, 4}}, {1, {4}}}},             /* per-row bias */
    {"mul", b_mul, 2, {{3, {2, 3, 4}}, {3, {2, 1, 4}}}},
    {"mul", b_mul, 2, {{4, {2, 3, 4, 5}}, {4, {2, 3, 1, 1}}}}, /* a squeeze-and-excitation gate */
    {"relu", b_relu, 1, {{2, {4, 5}, AWAY0}}},
    {"relu6", b_relu6, 1, {{2, {5, 6}, KINKS6}}},
    {"hardswish", b_hardswish, 1, {{3, {2, 3, 5}, KINKS6}}},
    {"sigmoid", b_sigmoid, 1, {{2, {4, 5}}}},
    {"tanh", b_tanh, 1, {{2, {4, 5}}}},
    {"sum", b_sum, 1, {{3, {2, 3, 4}}}},
    {"mean", b_mean, 1, {{3, {2, 3, 4}}}},
    {"matmul", b_matmul, 2, {{2, {3, 5}}, {2, {5, 4}}}},
    {"linear", b_linear, 3, {{2, {4, 6}}, {2, {3, 6}}, {1, {3}}}},
    {"linear", b_linear_nobias, 2, {{2, {4, 6}}, {2, {3, 6}}}},
    {"reshape", b_reshape, 1, {{3, {2, 3, 4}}}},
    {"cat", b_cat_ch2, 2, {{4, {2, 3, 2, 3}}, {4, {2, 2, 2, 3}}}}, /* two branches' channels */
    {"cat", b_cat_ch3, 3, {{4, {2, 1, 3, 2}}, {4, {2, 3, 3, 2}}, {4, {2, 2, 3, 2}, UNIFORM, true}}},
    {"cat", b_cat_first, 2, {{2, {2, 3}}, {2, {4, 3}}}},
    {"cat", b_cat_last, 2, {{3, {2, 3, 2}}, {3, {2, 3, 4}}}},
    {"cat", b_cat_twice, 2, {{3, {2, 3, 2}}, {3, {1, 3, 2}}}},
    {"cross_entropy", b_ce, 1, {{2, {8, 4}}}},
    {"softmax", b_softmax, 1, {{2, {3, 5}}}},
    {"softmax", b_softmax, 1, {{3, {2, 3, 4}}}},
    {"residual_add", b_residual, 2, {{4, {2, 3, 2, 2}}, {4, {2, 3, 2, 2}}}},
    {"residual_add", b_residual_act, 2, {{4, {2, 3, 2, 2}, AWAY0}, {4, {2, 3, 2, 2}, SMALL}}, TG_ACT_RELU},
    {"conv2d", b_conv, 3, {{4, {2, 3, 5, 5}}, {4, {4, 3, 3, 3}}, {1, {4}}}},
    {"conv2d", b_conv_s2d2, 3, {{4, {1, 2, 7, 6}}, {4, {3, 2, 3, 2}}, {1, {3}}}},
    {"conv2d", b_conv_groups, 2, {{4, {2, 4, 4, 4}}, {4, {6, 2, 2, 2}}}},
    {"conv2d", b_conv_depthwise, 3, {{4, {2, 4, 4, 4}}, {4, {4, 1, 3, 3}}, {1, {4}}}},
    {"conv2d", b_conv_1x1, 2, {{4, {2, 3, 3, 3}}, {4, {5, 3, 1, 1}}}},
    /* the bias puts whole channels far below or above the ReLU's kink (test_conv checks the mask element-wise) */
    {"conv2d", b_conv_act, 3, {{4, {2, 3, 5, 5}}, {4, {4, 3, 3, 3}}, {1, {4}, SPLIT}}, TG_ACT_RELU},
    {"conv2d", b_conv_act_s2, 3, {{4, {1, 2, 7, 6}}, {4, {4, 2, 3, 3}}, {1, {4}, SPLIT}}, TG_ACT_RELU},
    /* conv2d+relu+max_pool2d: the same biases; each window's maximum clear (PEAKED) */
    {"conv2d", b_conv_pool, 3, {{4, {2, 2, 5, 5}, DISTINCT}, {4, {4, 2, 2, 2}, PEAKED}, {1, {4}, SPLIT5}},
     TG_ACT_RELU},
    /* 5x5: the last row and column in no window */
    {"conv2d", b_conv_pool_odd, 3, {{4, {1, 2, 6, 6}, DISTINCT}, {4, {4, 2, 2, 2}, PEAKED}, {1, {4}, SPLIT5}},
     TG_ACT_RELU},
    {"conv2d", b_conv_pool_s2, 3, {{4, {1, 2, 7, 7}, DISTINCT}, {4, {4, 2, 3, 3}, PEAKED}, {1, {4}, SPLIT5}},
     TG_ACT_RELU},
    {"max_pool2d", b_maxpool, 1, {{4, {2, 2, 4, 6}, DISTINCT}}},
    {"max_pool2d", b_maxpool, 1, {{4, {2, 2, 5, 7}, DISTINCT}}}, /* odd sizes: the last row and column in no window */
    {"max_pool2d", b_maxpool_pad, 1, {{4, {1, 2, 5, 5}, DISTINCT}}},
    {"avg_pool2d", b_avgpool, 1, {{4, {2, 2, 5, 5}}}},
    {"global_avg_pool", b_gap, 1, {{4, {2, 3, 3, 4}}}},
    {"dropout", b_dropout, 1, {{3, {4, 5, 6}}}},
    {"dropout", b_dropout_eval, 1, {{2, {4, 5}}}},
    {"dropout_vanilla", b_vanilla, 1, {{2, {6, 7}}}},
    {"dropout_vanilla", b_vanilla_eval, 1, {{2, {4, 5}}}},
    {"batch_norm", b_bn, 3, {{2, {6, 3}}, {1, {3}, POSITIVE}, {1, {3}}}},
    {"batch_norm", b_bn, 3, {{4, {3, 3, 2, 3}}, {1, {3}, POSITIVE}, {1, {3}}}},
    {"conv_transpose2d", b_convt, 3, {{4, {2, 3, 3, 3}}, {4, {3, 2, 3, 3}}, {1, {2}}}},
    {"conv_transpose2d", b_convt_groups, 2, {{4, {1, 4, 3, 2}}, {4, {4, 3, 2, 2}}}},
    {"upsample", b_up_nearest, 1, {{4, {2, 2, 3, 2}}}},
    {"upsample", b_up_bilinear, 1, {{4, {1, 2, 3, 4}}}},
    {"layer_norm", b_layer_norm, 3, {{3, {2, 3, 5}}, {2, {3, 5}, POSITIVE}, {2, {3, 5}}}},
    {"mse_loss", b_mse, 2, {{3, {2, 3, 4}}, {3, {2, 3, 4}}}},
    {"batch_norm", b_bn_eval, 3, {{4, {2, 3, 3, 2}}, {1, {3}, POSITIVE}, {1, {3}}}},
    {"batch_norm", b_bn_act, 3, {{4, {3, 3, 2, 3}}, {1, {3}, POSITIVE}, {1, {3}, SPLIT}}, TG_ACT_RELU},
    {"batch_norm", b_bn_add_act, 4, {{4, {3, 3, 2, 3}}, {1, {3}, POSITIVE}, {1, {3}, SPLIT}, {4, {3, 3, 2, 3}}},
     TG_ACT_RELU},
    {"batch_norm", b_bn_add_act, 4, {{4, {3, 3, 2, 3}}, {1, {3}, POSITIVE}, {1, {3}}, {4, {3, 3, 2, 3}}}},
    /* batch_norm+relu+maxpool: windows of distinct inputs (batch norm keeps their order), channels
     * far off and far on the ReLU; 5x5: the last row and column in no window */
    {"batch_norm", b_bn_pool, 3, {{4, {2, 3, 4, 6}, DISTINCT}, {1, {3}, POSITIVE}, {1, {3}, SPLIT5}}, TG_ACT_RELU},
    {"batch_norm", b_bn_add_pool, 4,
     {{4, {2, 3, 5, 5}, DISTINCT}, {1, {3}, POSITIVE}, {1, {3}, SPLIT5}, {4, {2, 3, 5, 5}, SMALL}}, TG_ACT_RELU},
};

// ----------------------------------------------------------------------------

static uint64_t rng = 12345;
static float uniform(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)(rng >> 40) / 16777216.0f;
}

static void fill(tg_tensor *x, int init) {
    for (int64_t j = 0; j < x->size; j++) {
        float u = uniform();
        switch (init) {
        case UNIFORM: x->data[j] = 2 * u - 1; break;
        case AWAY0: x->data[j] = (uniform() < 0.5f ? -1 : 1) * (0.2f + 0.8f * u); break;
        case POSITIVE: x->data[j] = 0.5f + u; break;
        case SMALL: x->data[j] = 0.2f * u - 0.1f; break;
        case SPLIT: x->data[j] = j % 2 ? 30.0f : -30.0f; break;
        case SPLIT5: x->data[j] = j % 2 ? 5.0f : -5.0f; break;
        case KINKS6: { /* one of five bands, then a place in it */
            static const float lo[5] = {-4.0f, -2.8f, 0.2f, 3.2f, 6.2f}, hi[5] = {-3.2f, -0.2f, 2.8f, 5.8f, 8.0f};
            int b = (int)(uniform() * 5) % 5;
            x->data[j] = lo[b] + (hi[b] - lo[b]) * u;
            break;
        }
        case DISTINCT: x->data[j] = 0; break; /* below */
        case PEAKED: {
            int64_t C = x->shape[1], R = x->shape[2], S = x->shape[3], n = C * R * S, k = j / n;
            x->data[j] = j % n == k % C * R * S + R / 2 * S + S / 2 ? 1.0f : 0.002f * u - 0.001f;
            break;
        }
        }
    }
    if (init == DISTINCT) { /* a shuffled ramp: neighbours differ by 0.07, far beyond the step */
        for (int64_t j = 0; j < x->size; j++) x->data[j] = 0.07f * (float)j - 0.035f * (float)x->size;
        for (int64_t j = x->size - 1; j > 0; j--) {
            int64_t k = (int64_t)(uniform() * (float)(j + 1)) % (j + 1);
            float tmp = x->data[j];
            x->data[j] = x->data[k];
            x->data[k] = tmp;
        }
    }
}

static int run_row(const row *r, double *worst) {
    tg_tensor *in[TG_MAX_INPUTS] = {0};
    for (int i = 0; i < r->n_in; i++) {
        in[i] = tg_tensor_new(r->in[i].ndim, r->in[i].shape);
        fill(in[i], r->in[i].init);
        tg_tensor_set_requires_grad(in[i], !r->in[i].no_grad);
    }
    /* the row must really exercise its op: the output's node is that op */
    tg_tape *t = tg_tape_new();
    tg_tensor *y = r->build(t, in, (void *)r);
    int rc = 0;
    if (!y || !y->node || strcmp(y->node->op->name, r->op) != 0) {
        fprintf(stderr, "%s: row builds %s\n", r->op, y && y->node ? y->node->op->name : tg_last_error());
        rc = -1;
    } else { /* and its activation: the node's variant names a relu exactly when the row asks for one */
        const char *v = y->node->op->variant ? y->node->op->variant(y->node) : NULL;
        bool relu = v && strstr(v, "relu") != NULL;
        if (relu != (r->act == TG_ACT_RELU)) {
            fprintf(stderr, "%s: row builds the variant %s\n", r->op, v ? v : "(none)");
            rc = -1;
        }
    }
    tg_tape_free(t);
    double rel[TG_MAX_INPUTS] = {0};
    if (rc == 0) rc = tg_gradcheck(r->build, in, r->n_in, (void *)r, NULL, rel);
    *worst = 0;
    for (int i = 0; i < r->n_in; i++) {
        if (rel[i] > *worst) *worst = rel[i];
        tg_tensor_free(in[i]);
    }
    return rc;
}

// ----------------------------------------------------------------------------
// planted wrong VJPs: the check must catch them

static int scale3_shape(tg_node *n, int *ndim, int *shape) {
    *ndim = n->in[0]->ndim;
    for (int i = 0; i < *ndim; i++) shape[i] = n->in[0]->shape[i];
    return 0;
}
static int scale3_forward(tg_tape *t, tg_node *n) {
    (void)t;
    for (int64_t i = 0; i < n->out->size; i++) n->out->data[i] = 3 * n->in[0]->data[i];
    return 0;
}
static int scale3_vjp_wrong(tg_tape *t, tg_node *n) { /* forgets the factor 3 */
    (void)t;
    for (int64_t i = 0; i < n->out->size; i++) n->in[0]->grad[i] += n->out->grad[i];
    return 0;
}
static int scale3_vjp_right(tg_tape *t, tg_node *n) {
    (void)t;
    for (int64_t i = 0; i < n->out->size; i++) n->in[0]->grad[i] += 3 * n->out->grad[i];
    return 0;
}
static int mul_vjp_one_off(tg_tape *t, tg_node *n) { /* right but for one element */
    int rc = tg__op_mul.vjp(t, n);
    n->in[0]->grad[1] += 0.05f * n->out->grad[1];
    return rc;
}

/* scale3 that stores into a gradient that holds nothing yet (overwrites_grads):
 * right, or forgetting the last element, or adding where it must store */
static int store_mode; /* 0 right, 1 skips the last element, 2 always adds */
static int scale3_vjp_store(tg_tape *t, tg_node *n) {
    (void)t;
    bool set = n->store[0] && store_mode != 2;
    int64_t end = n->out->size - (store_mode == 1);
    for (int64_t i = 0; i < end; i++)
        n->in[0]->grad[i] = (set ? 0 : n->in[0]->grad[i]) + 3 * n->out->grad[i];
    return 0;
}

static const tg_op scale3_store = {.name = "scale3", .shape = scale3_shape, .forward = scale3_forward,
                                   .vjp = scale3_vjp_store, .overwrites_grads = true};
static const tg_op scale3_right = {.name = "scale3", .shape = scale3_shape, .forward = scale3_forward,
                                   .vjp = scale3_vjp_right};
static const tg_op scale3_wrong = {.name = "scale3", .shape = scale3_shape, .forward = scale3_forward,
                                   .vjp = scale3_vjp_wrong};
static tg_op mul_wrong; /* tg__op_mul with mul_vjp_one_off */

static tg_tensor *b_scale3_right(tg_tape *t, tg_tensor **x, void *c) { (void)c; return tg_apply(t, &scale3_right, x, 1, NULL); }
static tg_tensor *b_scale3_wrong(tg_tape *t, tg_tensor **x, void *c) { (void)c; return tg_apply(t, &scale3_wrong, x, 1, NULL); }
static tg_tensor *b_mul_wrong(tg_tape *t, tg_tensor **x, void *c) { (void)c; return tg_apply(t, &mul_wrong, x, 2, NULL); }
static tg_tensor *b_scale3_store(tg_tape *t, tg_tensor **x, void *c) { (void)c; return tg_apply(t, &scale3_store, x, 1, NULL); }

static void planted(void) {
    int shape[2] = {3, 4};
    tg_tensor *x = tg_tensor_new(2, shape), *y = tg_tensor_new(2, shape);
    fill(x, UNIFORM);
    fill(y, UNIFORM);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(y, true);
    double rel[2];

    CHECK_INT(tg_gradcheck(b_scale3_right, &x, 1, NULL, NULL, rel), 0);
    printf("planted scale3, right VJP: maxrel=%.2e\n", rel[0]);
    CHECK_INT(tg_gradcheck(b_scale3_wrong, &x, 1, NULL, NULL, rel), TG_ERR_STATE);
    printf("planted scale3, VJP missing its factor: maxrel=%.2e (%s)\n", rel[0], tg_last_error());
    CHECK(rel[0] > 0.5);

    mul_wrong = tg__op_mul;
    mul_wrong.vjp = mul_vjp_one_off;
    tg_tensor *xy[2] = {x, y};
    CHECK_INT(tg_gradcheck(b_mul_wrong, xy, 2, NULL, NULL, rel), TG_ERR_STATE);
    printf("planted mul, one element off by 5%%: maxrel=%.2e (%s)\n", rel[0], tg_last_error());

    /* an op that stores into unset gradients: gradcheck hands it NaN-filled ones */
    const char *what[3] = {"right", "skips the last element", "adds where it must store"};
    for (store_mode = 0; store_mode < 3; store_mode++) {
        int rc = tg_gradcheck(b_scale3_store, &x, 1, NULL, NULL, rel);
        CHECK_INT(rc, store_mode == 0 ? 0 : TG_ERR_NONFINITE);
        printf("planted scale3 that stores, %s: %s\n", what[store_mode], rc ? tg_last_error() : "ok");
    }
    tg_tensor_free(x);
    tg_tensor_free(y);
}

int main(void) {
    for (int i = 0; i < 2; i++) {
        running[i] = tg_tensor_new(1, (int[]){3});
        for (int c = 0; c < 3; c++) running[i]->data[c] = i ? 0.5f + 0.5f * (float)c : 0.1f * (float)c;
    }
    int nrows = (int)(sizeof rows / sizeof rows[0]);
    /* every op in the table has a row, every row names an op in the table */
    for (int k = 0; k < TG_OP_COUNT; k++) {
        int found = 0;
        for (int r = 0; r < nrows; r++) found += strcmp(rows[r].op, tg_op_table[k]->name) == 0;
        if (!found) fprintf(stderr, "op %s has no gradcheck row\n", tg_op_table[k]->name);
        CHECK(found > 0);
    }
    int ops_covered = 0;
    for (int k = 0; k < TG_OP_COUNT; k++)
        for (int r = 0; r < nrows; r++)
            if (strcmp(rows[r].op, tg_op_table[k]->name) == 0) {
                ops_covered++;
                break;
            }
    printf("gradcheck: %d ops in the table, %d with rows, %d rows\n", TG_OP_COUNT, ops_covered, nrows);
    CHECK_INT(ops_covered, TG_OP_COUNT);

    for (int r = 0; r < nrows; r++) {
        double worst;
        int rc = run_row(&rows[r], &worst);
        printf("%s%s: %s maxrel=%.2e\n", rows[r].op, rows[r].act == TG_ACT_RELU ? "+relu" : "", rc == 0 ? "ok" : "FAIL",
               worst);
        if (rc) fprintf(stderr, "  %s\n", tg_last_error());
        CHECK_INT(rc, 0);
    }
    planted();
    tg_tensor_free(running[0]);
    tg_tensor_free(running[1]);
    CHECK_DONE();
}
