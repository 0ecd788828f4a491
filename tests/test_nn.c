
/* test_nn.c: layers and models (a whole-model gradcheck), initialisation, SGD
 * as PyTorch 1.13 computes it, learning-rate schedules. */
#include "check.h"
#include "tapegrad_nn.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A residual block computes what its definition says, forward and backward:
 * the model's output and every gradient match the ops composed by hand. */
static tg_tensor *bn(tg_tape *t, tg_tensor *x, tg_tensor **P, int p) {
    return tg_batch_norm(t, x, P[p], P[p + 1], NULL, NULL, true, 0.1f, 1e-5f);
}

/* P: the block's parameters in order: conv1, bn1 (2), conv2, bn2 (2), then the shortcut's conv (and bn) */
static tg_tensor *by_hand(tg_tape *t, tg_tensor **P, int np, tg_tensor *x, int version, int stride) {
    if (version == 1) {
        tg_tensor *h = tg_relu(t, bn(t, tg_conv2d(t, x, P[0], NULL, stride, 1, 1, 1), P, 1));
        h = bn(t, tg_conv2d(t, h, P[3], NULL, 1, 1, 1, 1), P, 4);
        tg_tensor *s = np > 6 ? bn(t, tg_conv2d(t, x, P[6], NULL, stride, 0, 1, 1), P, 7) : x;
        return tg_relu(t, tg_add(t, s, h));
    }
    tg_tensor *a = tg_relu(t, bn(t, x, P, 1));
    tg_tensor *h = tg_relu(t, bn(t, tg_conv2d(t, a, P[0], NULL, stride, 1, 1, 1), P, 4));
    h = tg_conv2d(t, h, P[3], NULL, 1, 1, 1, 1);
    return tg_add(t, np > 6 ? tg_conv2d(t, a, P[6], NULL, stride, 0, 1, 1) : x, h);
}

static void residual_block(int version, int in, int out, int stride) {
    tg_model *m = tg_model_new(11);
    tg_layer *l = tg_model_residual(m, in, out, stride, version);
    CHECK(l != NULL);
    tg_tensor **P;
    int np = tg_layer_params(l, &P);
    CHECK_INT(np, in != out || stride != 1 ? 7 + (version == 1 ? 2 : 0) : 6);
    tg_tensor *x = tg_param_new(4, (int[]){3, in, 6, 6});
    uint64_t s = 5;
    for (int i = 0; i < x->size; i++) x->data[i] = tg_rand_normal(&s);
    for (int j = 0; j < np; j++) /* gamma and beta away from 1 and 0 */
        if (P[j]->ndim == 1)
            for (int i = 0; i < P[j]->size; i++) P[j]->data[i] += 0.3f * tg_rand_normal(&s);
    tg_tape *t = tg_tape_new();
    static float r[3 * 16 * 6 * 6], gm[16][4096];
    tg_tensor *y = tg_model_forward(m, t, x);
    CHECK(y && y->shape[1] == out && y->shape[2] == (6 - 1) / stride + 1);
    for (int i = 0; i < y->size; i++) r[i] = tg_rand_uniform(&s) - 0.5f;
    CHECK_INT(tg_backward_seed(t, y, r), 0);
    for (int j = 0; j < np; j++) memcpy(gm[j], P[j]->grad, P[j]->size * sizeof(float));
    static float gx[3 * 16 * 36], ym[3 * 16 * 36];
    memcpy(gx, x->grad, x->size * sizeof(float));
    memcpy(ym, y->data, y->size * sizeof(float));
    tg_model_zero_grad(m);
    tg_tensor_zero_grad(x);
    tg_tape_reset(t);
    tg_tensor *yh = by_hand(t, P, np, x, version, stride);
    CHECK_INT(tg_backward_seed(t, yh, r), 0);
    double worst = 0;
    for (int i = 0; i < yh->size; i++) worst = fmax(worst, fabs(yh->data[i] - ym[i]));
    for (int i = 0; i < x->size; i++) worst = fmax(worst, fabs(x->grad[i] - gx[i]));
    for (int j = 0; j < np; j++)
        for (int i = 0; i < P[j]->size; i++) worst = fmax(worst, fabs(P[j]->grad[i] - gm[j][i]));
    printf("residual v%d %d->%d stride %d: model vs ops by hand, worst difference %.1e\n", version, in, out, stride,
           worst);
    CHECK(worst < 1e-6);
    tg_tensor_free(x);
    tg_tape_free(t);
    tg_model_free(m);
}

/* SGD against torch.optim.SGD of PyTorch 1.13 (values printed by it, for
 * p = [1, -2] and the gradients [.5, -1], [.25, 2], [-1.5, .125] in turn). */
static void sgd_like_pytorch(void) {
    static const struct {
        tg_sgd_opts o;
        float want[6];
    } cases[] = {
        {{0.1f, 0, 0, 0, false}, {0.949999988f, -1.89999998f, 0.925000012f, -2.0999999f, 1.07500005f, -2.11249995f}},
        {{0.1f, 0.9f, 0, 0, false}, {0.949999988f, -1.89999998f, 0.879999995f, -2.00999999f, 0.967000008f, -2.12150002f}},
        {{0.1f, 0.9f, 0.3f, 0, false},
         {0.949999988f, -1.89999998f, 0.887499988f, -1.94999993f, 0.936249971f, -2.00374985f}},
        {{0.1f, 0.9f, 0, 0, true}, {0.904999971f, -1.80999994f, 0.816999972f, -2.10899997f, 1.04530001f, -2.22184992f}},
        {{0.1f, 0.8f, 0, 0.05f, false},
         {0.944999993f, -1.88999999f, 0.871275008f, -1.99255002f, 0.957938612f, -2.07712722f}},
    };
    const float grads[3][2] = {{0.5f, -1.0f}, {0.25f, 2.0f}, {-1.5f, 0.125f}};
    for (int c = 0; c < 5; c++) {
        tg_tensor *p = tg_param_new(1, (int[]){2});
        p->data[0] = 1, p->data[1] = -2;
        tg_sgd *o = tg_sgd_new(&p, 1, cases[c].o);
        for (int k = 0; k < 3; k++) {
            p->grad[0] = grads[k][0], p->grad[1] = grads[k][1];
            tg_sgd_step(o);
            CHECK_NEAR(p->data[0], cases[c].want[2 * k], 1e-6);
            CHECK_NEAR(p->data[1], cases[c].want[2 * k + 1], 1e-6);
        }
        tg_tensor **st;
        int ns = tg_sgd_state(o, &st);
        CHECK_INT(ns, cases[c].o.momentum != 0 ? 2 : 1);
        CHECK_NEAR(st[ns - 1]->data[0], 3, 0); /* steps */
        tg_sgd_zero_grad(o);
        CHECK_NEAR(p->grad[0], 0, 0);
        tg_sgd_free(o);
        tg_tensor_free(p);
    }
    tg_tensor *p = tg_param_new(1, (int[]){2});
    CHECK(tg_sgd_new(&p, 1, (tg_sgd_opts){0.1f, 0.9f, 0.1f, 0, true}) == NULL);
    CHECK_MSG(tg_last_error(), "sgd: nesterov momentum requires a momentum and zero dampening");
    CHECK(tg_sgd_new(&p, 1, (tg_sgd_opts){-0.1f, 0, 0, 0, false}) == NULL);
    CHECK_MSG(tg_last_error(), "sgd: lr -0.1");
    tg_tensor *c = tg_tensor_new(1, (int[]){2});
    CHECK(tg_sgd_new(&c, 1, (tg_sgd_opts){0.1f, 0, 0, 0, false}) == NULL);
    CHECK_MSG(tg_last_error(), "sgd: parameter 0 (unnamed) is not a heap tensor with a gradient (tg_param_new)");
    tg_tensor_free(p);
    tg_tensor_free(c);

    CHECK_NEAR(tg_lr_step(0.1f, 5, 2, 0.5f), 0.025, 1e-8);
    CHECK_NEAR(tg_lr_step(0.1f, 1, 2, 0.5f), 0.1, 1e-8);
    CHECK_NEAR(tg_lr_cosine(0.1f, 0, 10, 0.01f), 0.1, 1e-7);
    CHECK_NEAR(tg_lr_cosine(0.1f, 5, 10, 0.01f), 0.055, 1e-7);
    CHECK_NEAR(tg_lr_cosine(0.1f, 10, 10, 0.01f), 0.01, 1e-7);
}

static void init(void) {
    tg_tensor *w = tg_tensor_new(4, (int[]){64, 32, 3, 3}); /* fan_in 288, fan_out 576 */
    struct {
        int (*fn)(tg_tensor *, uint64_t *);
        double var;
    } schemes[] = {{tg_init_kaiming_normal, 2.0 / 288}, {tg_init_kaiming_uniform, 2.0 / 288},
                   {tg_init_xavier_normal, 2.0 / (288 + 576)}, {tg_init_xavier_uniform, 2.0 / (288 + 576)}};
    for (int k = 0; k < 4; k++) {
        uint64_t s = 1;
        schemes[k].fn(w, &s);
        double mean = 0, var = 0, mx = 0;
        for (int i = 0; i < w->size; i++) mean += w->data[i] / w->size;
        for (int i = 0; i < w->size; i++) var += pow(w->data[i] - mean, 2) / w->size, mx = fmax(mx, fabs(w->data[i]));
        CHECK_NEAR(mean, 0, 0.05 * sqrt(schemes[k].var));
        CHECK_NEAR(var / schemes[k].var, 1, 0.03);
        if (k % 2) CHECK(mx <= sqrt(3 * schemes[k].var) + 1e-7); /* uniform: the bound sqrt(3 var) */
        float first = w->data[0];
        s = 1;
        schemes[k].fn(w, &s);
        CHECK(w->data[0] == first); /* seeded */
    }
    tg_tensor_free(w);
}

/* The demo nets have PyTorch's parameter counts; train/eval switches dropout and batch norm. */
static void models(void) {
    tg_model *m = tg_model_new(1);
    tg_model_flatten(m);
    tg_model_linear(m, 784, 512, true);
    tg_model_relu(m);
    tg_model_dropout(m, 0.2f);
    tg_model_linear(m, 512, 10, true);
    CHECK_INT(tg_model_param_count(m), 407050); /* PyTorch's count for the same mlp */
    tg_tensor **ps;
    CHECK_INT(tg_model_params(m, &ps), 4);
    CHECK(strcmp(ps[2]->name, "4.weight") == 0);
    CHECK_INT(tg_model_init(m, TG_INIT_KAIMING_NORMAL, 5), 0);
    CHECK_NEAR(ps[1]->data[3], 0, 0); /* biases back to 0 */
    CHECK_INT(tg_model_init(m, (tg_init)9, 5), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "model_init: unknown scheme 9");
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){2, 1, 28, 28});
    for (int i = 0; i < x->size; i++) x->data[i] = (float)(i % 17) / 17;
    CHECK(tg_model_training(m));
    tg_tensor *a = tg_model_forward(m, t, x), *b = tg_model_forward(m, t, x);
    CHECK(a && b && memcmp(a->data, b->data, 20 * sizeof(float)) != 0); /* dropout draws new masks */
    tg_model_train(m, false);
    a = tg_model_forward(m, t, x), b = tg_model_forward(m, t, x);
    CHECK(a && b && memcmp(a->data, b->data, 20 * sizeof(float)) == 0);
    tg_model_free(m);

    /* batch norm follows the switch: evaluation uses (and keeps) the running statistics */
    m = tg_model_new(1);
    tg_layer *bn = tg_model_batch_norm(m, 1);
    tg_tensor *v = tg_tensor_tape(t, 2, (int[]){4, 1});
    for (int i = 0; i < 4; i++) v->data[i] = (float)i;
    tg_model_forward(m, t, v);
    CHECK_NEAR(bn->buffers[0]->data[0], 0.15, 1e-7); /* 0.1 * mean 1.5 */
    CHECK_NEAR(bn->buffers[2]->data[0], 1, 0);       /* num_batches_tracked */
    tg_model_train(m, false);
    tg_tensor *y = tg_model_forward(m, t, v);
    CHECK_NEAR(bn->buffers[0]->data[0], 0.15, 1e-7);
    CHECK_NEAR(bn->buffers[2]->data[0], 1, 0); /* counts training-mode forwards only */
    CHECK_NEAR(y->data[3], (3 - 0.15) / sqrt(bn->buffers[1]->data[0] + 1e-5), 1e-5);
    tg_tensor **st;
    CHECK_INT(tg_model_state(m, &st), 5);
    CHECK(strcmp(st[3]->name, "0.running_var") == 0 && strcmp(st[4]->name, "0.num_batches_tracked") == 0);
    CHECK(st[4]->ndim == 0);
    tg_model_free(m);

    /* a layer that cannot be built fails the model with its message */
    m = tg_model_new(1);
    tg_model_linear(m, 4, 4, true);
    CHECK(tg_model_conv2d(m, 3, 8, 3, 0, 1, false) == NULL);
    CHECK(tg_model_forward(m, t, v) == NULL);
    CHECK_MSG(tg_last_error(), "model: layer 1 (conv2d): conv2d: in 3, out 8, kernel 3, stride 0");
    tg_model_free(m);
    /* shapes that do not fit fail at forward, naming the op */
    m = tg_model_new(1);
    tg_model_linear(m, 3, 4, true);
    CHECK(tg_model_forward(m, t, v) == NULL);
    CHECK_MSG(tg_last_error(), "model_forward: layer 0 (linear): linear: input has 1 features but weight expects 3");
    tg_model_free(m);
    tg_model_free(NULL);
    tg_tape_free(t);
}

/* The model's state goes through a checkpoint and comes back bit for bit. */
static void model_checkpoint(void) {
    char dir[] = "/tmp/tg_nn_XXXXXX", path[64];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/m.ckpt", dir);
    tg_model *a = tg_model_new(1), *b = tg_model_new(2);
    tg_model_conv2d(a, 1, 4, 3, 1, 1, false), tg_model_batch_norm(a, 4), tg_model_residual(a, 4, 8, 2, 1);
    tg_model_conv2d(b, 1, 4, 3, 1, 1, false), tg_model_batch_norm(b, 4), tg_model_residual(b, 4, 8, 2, 1);
    tg_tensor **sa, **sb;
    int n = tg_model_state(a, &sa);
    CHECK_INT(tg_model_state(b, &sb), n);
    sa[n - 2]->data[3] = 42; /* a buffer (the running variance: the last is the batch counter) */
    CHECK_INT(tg_checkpoint_save(path, sa, n), 0);
    CHECK_INT(tg_checkpoint_load(path, sb, n), 0);
    int same = 1;
    for (int i = 0; i < n; i++) same &= memcmp(sa[i]->data, sb[i]->data, sa[i]->size * sizeof(float)) == 0;
    CHECK(same);
    /* another architecture: the first mismatch is named */
    tg_model *c = tg_model_new(1);
    tg_model_conv2d(c, 1, 8, 3, 1, 1, false), tg_model_batch_norm(c, 8), tg_model_residual(c, 8, 8, 2, 1);
    tg_tensor **sc;
    int nc = tg_model_state(c, &sc);
    CHECK(tg_checkpoint_load(path, sc, nc) < 0);
    CHECK_MSG(tg_last_error(), "0.weight");
    remove(path);
    remove(dir);
    tg_model_free(a), tg_model_free(b), tg_model_free(c);
}

/* Adam and AdamW as PyTorch 1.13 printed them, four steps from p = [1, -2]:
 *   for name, kw in cases:
 *       p = torch.tensor([1.0, -2.0], requires_grad=True); o = getattr(torch.optim, name)([p], **kw)
 *       for g in [[0.5, -1.0], [0.25, 2.0], [-1.5, 0.125], [0.01, -0.01]]:
 *           p.grad = torch.tensor(g); o.step(); print(p.tolist())
 * (the last step's small gradient makes v shrink, where amsgrad keeps the largest) */
static void adam_like_pytorch(void) {
    tg_adam_opts amsgrad = TG_ADAM(0.1), wd = TG_ADAM(0.1), w = TG_ADAMW(0.1), w2 = TG_ADAMW(0.01);
    amsgrad.amsgrad = true, wd.weight_decay = 0.1, w.weight_decay = 0.1;
    w2.beta1 = 0.8, w2.beta2 = 0.99, w2.eps = 1e-3, w2.weight_decay = 0.5, w2.amsgrad = true;
    const struct {
        tg_adam_opts o;
        float want[8];
    } cases[] = {
        {TG_ADAM(0.1), /* Adam(lr=0.1) */
         {0.900000036f, -1.89999998f, 0.806782067f, -1.93661034f, 0.841504395f, -1.96843374f, 0.869583011f, -1.99424148f}},
        {wd, /* Adam(lr=0.1, weight_decay=0.1) */
         {0.900000036f, -1.89999998f, 0.805009782f, -1.92501783f, 0.830414236f, -1.94236135f, 0.847765505f, -1.95106077f}},
        {amsgrad, /* Adam(lr=0.1, amsgrad=True) */
         {0.900000036f, -1.89999998f, 0.806782067f, -1.93661034f, 0.841504395f, -1.96843374f, 0.86956954f, -1.99422884f}},
        {w, /* AdamW(lr=0.1, weight_decay=0.1) */
         {0.890000045f, -1.88f, 0.78788209f, -1.89781034f, 0.814725578f, -1.91065562f, 0.834656954f, -1.91735685f}},
        {w2, /* AdamW(lr=0.01, betas=(0.8, 0.99), eps=1e-3, weight_decay=0.5, amsgrad=True) */
         {0.985019982f, -1.98001003f, 0.970968783f, -1.97431731f, 0.970438063f, -1.96787369f, 0.968836725f, -1.9606148f}},
    };
    const float grads[4][2] = {{0.5f, -1.0f}, {0.25f, 2.0f}, {-1.5f, 0.125f}, {0.01f, -0.01f}};
    double worst = 0;
    for (int c = 0; c < 5; c++) {
        tg_tensor *p = tg_param_new(1, (int[]){2});
        p->data[0] = 1, p->data[1] = -2;
        tg_adam *o = tg_adam_new(&p, 1, cases[c].o);
        CHECK(o != NULL);
        for (int k = 0; k < 4 && o; k++) {
            p->grad[0] = grads[k][0], p->grad[1] = grads[k][1];
            CHECK_INT(tg_adam_step(o), 0);
            for (int e = 0; e < 2; e++) {
                float want = cases[c].want[2 * k + e];
                worst = fmax(worst, fabs(p->data[e] - want) / fabs(want));
                CHECK_NEAR(p->data[e], want, 3e-7 * fabsf(want)); /* within 2 ulps */
            }
        }
        tg_tensor **st;
        CHECK_INT(tg_adam_state(o, &st), cases[c].o.amsgrad ? 4 : 3);
        CHECK_NEAR(st[cases[c].o.amsgrad ? 3 : 2]->data[0], 4, 0); /* steps */
        tg_adam_zero_grad(o);
        CHECK_NEAR(p->grad[1], 0, 0);
        tg_adam_free(o);
        tg_tensor_free(p);
    }
    printf("adam and adamw vs PyTorch 1.13: worst relative difference %.1e\n", worst);
    /* a frozen parameter is skipped whole, its step count too; bad options and NaN gradients are named */
    tg_tensor *a = tg_param_new(1, (int[]){2}), *b = tg_param_new(1, (int[]){2}), *ab[2] = {a, b};
    tg_tensor_set_name(b, "b");
    tg_adam *o = tg_adam_new(ab, 2, TG_ADAMW(0.1));
    tg_tensor_set_requires_grad(a, false);
    a->data[0] = 1, a->grad[0] = 1;
    b->grad[0] = NAN;
    CHECK_INT(tg_adam_step(o), TG_ERR_NONFINITE);
    CHECK_MSG(tg_last_error(), "adam: the gradient of b holds NaN at element 0; the step was taken");
    tg_tensor **st;
    CHECK_INT(tg_adam_state(o, &st), 5);
    CHECK(st[4]->data[0] == 0 && st[4]->data[1] == 1 && a->data[0] == 1 && st[0]->data[0] == 0);
    CHECK(!strcmp(st[2]->name, "adam.b.exp_avg") && !strcmp(st[4]->name, "adam.steps"));
    CHECK_INT(tg_adam_set_lr(o, -1), TG_ERR_ARG);
    CHECK(tg_adam_lr(o) == 0.1);
    tg_adam_opts bad = TG_ADAM(0.1);
    bad.beta2 = 1.0;
    CHECK(tg_adam_new(&b, 1, bad) == NULL);
    CHECK_MSG(tg_last_error(), "adam: lr 0.1, betas (0.9, 1), eps 1e-08, weight_decay 0: need");
    CHECK(tg_adam_new(ab, 0, TG_ADAM(0.1)) == NULL);
    CHECK_MSG(tg_last_error(), "adam: no parameters");
    /* two bad gradients, one in a tensor of 100,000 whose blocks the threads share: the first named */
    tg_tensor *big = tg_param_new(1, (int[]){100000}), *two[2] = {big, b};
    tg_tensor_set_name(big, "big");
    tg_adam *o2 = tg_adam_new(two, 2, TG_ADAM(0.1));
    big->grad[99999] = INFINITY, b->grad[1] = NAN;
    CHECK_INT(tg_adam_step(o2), TG_ERR_NONFINITE);
    CHECK_MSG(tg_last_error(), "adam: the gradient of big holds +Inf at element 99999");
    tg_adam_free(o2);
    tg_tensor_free(big);
    tg_adam_free(o);
    tg_tensor_free(a), tg_tensor_free(b);
}

/* Clipping as PyTorch 1.13 printed it:
 *   a = torch.zeros(2,3, requires_grad=True); b = torch.zeros(4, requires_grad=True)
 *   a.grad = torch.tensor([[0.5,-1.25,2.0],[3.0,-0.75,0.125]]); b.grad = torch.tensor([1.5,-2.5,0.25,4.0])
 *   torch.nn.utils.clip_grad_norm_([a,b], 2.0)                        # 6.3208489418029785
 *   torch.nn.utils.clip_grad_norm_([a,b], 3.0, norm_type=float('inf')) # 4.0 (from fresh gradients)
 *   torch.nn.utils.clip_grad_norm_([a,b], 100.0, norm_type=1.0)        # 15.875, unchanged
 *   torch.nn.utils.clip_grad_norm_([a,b], 5.0, norm_type=3.0)          # 4.9395060539245605, unchanged
 *   torch.nn.utils.clip_grad_value_([a], 1.0)                          # [0.5,-1,1,1,-0.75,0.125] */
static void clipping(void) {
    const float ga[6] = {0.5f, -1.25f, 2.0f, 3.0f, -0.75f, 0.125f}, gb[4] = {1.5f, -2.5f, 0.25f, 4.0f};
    tg_tensor *a = tg_param_new(2, (int[]){2, 3}), *b = tg_param_new(1, (int[]){4}), *ps[2] = {a, b};
    float total = 0;
#define FRESH() memcpy(a->grad, ga, sizeof ga), memcpy(b->grad, gb, sizeof gb)
    FRESH();
    CHECK_INT(tg_clip_grad_norm(ps, 2, 2.0f, 2.0f, &total), 0);
    CHECK_NEAR(total, 6.3208489418029785, 1e-6);
    const float want_a[6] = {0.15820656716823578f, -0.39551642537117004f, 0.6328262686729431f,
                             0.9492393732070923f, -0.23730984330177307f, 0.039551641792058945f};
    const float want_b[4] = {0.47461968660354614f, -0.7910328507423401f, 0.07910328358411789f, 1.2656525373458862f};
    /* within 2 ulps: the norms are summed in double here, in float there */
    for (int i = 0; i < 6; i++) CHECK_NEAR(a->grad[i], want_a[i], 2.4e-7 * fabsf(want_a[i]));
    for (int i = 0; i < 4; i++) CHECK_NEAR(b->grad[i], want_b[i], 2.4e-7 * fabsf(want_b[i]));
    FRESH();
    CHECK_INT(tg_clip_grad_norm(ps, 2, 3.0f, INFINITY, &total), 0);
    CHECK_NEAR(total, 4.0, 0);
    CHECK_NEAR(a->grad[3], 2.249999523162842, 1e-7);
    CHECK_NEAR(b->grad[3], 2.9999992847442627, 1e-7);
    FRESH();
    CHECK_INT(tg_clip_grad_norm(ps, 2, 100.0f, 1.0f, &total), 0);
    CHECK_NEAR(total, 15.875, 0);
    CHECK(!memcmp(a->grad, ga, sizeof ga) && !memcmp(b->grad, gb, sizeof gb)); /* below max_norm: untouched */
    CHECK_INT(tg_clip_grad_norm(ps, 2, 5.0f, 3.0f, &total), 0);
    CHECK_NEAR(total, 4.9395060539245605, 1e-6);
    CHECK(!memcmp(b->grad, gb, sizeof gb));
    CHECK_INT(tg_clip_grad_value(ps, 1, 1.0f), 0);
    const float want_v[6] = {0.5f, -1.0f, 1.0f, 1.0f, -0.75f, 0.125f};
    CHECK(!memcmp(a->grad, want_v, sizeof want_v));
    /* a non-finite gradient is named, and nothing changes */
    FRESH();
    tg_tensor_set_name(b, "b");
    b->grad[2] = NAN;
    CHECK_INT(tg_clip_grad_norm(ps, 2, 1.0f, 2.0f, &total), TG_ERR_NONFINITE);
    CHECK_MSG(tg_last_error(), "clip_grad_norm: the total norm is nan: the gradient of parameter 1 (b) holds a NaN");
    CHECK(!memcmp(a->grad, ga, sizeof ga));
    CHECK_INT(tg_clip_grad_value(ps, 2, 1.0f), 0);
    CHECK(isnan(b->grad[2]) && b->grad[3] == 1.0f);
    CHECK_INT(tg_clip_grad_norm(ps, 2, -1.0f, 2.0f, NULL), TG_ERR_ARG);
    CHECK_INT(tg_clip_grad_norm(ps, 2, 1.0f, 0.0f, NULL), TG_ERR_ARG);
    CHECK_INT(tg_clip_grad_norm(NULL, 2, 1.0f, 2.0f, NULL), TG_ERR_ARG);
    CHECK_INT(tg_clip_grad_value(ps, 2, -1.0f), TG_ERR_ARG);
    tg_tensor *c = tg_tensor_new(1, (int[]){2}), *pc[1] = {c};
    CHECK_INT(tg_clip_grad_value(pc, 1, 1.0f), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "clip_grad_value: parameter 0 (unnamed) has no gradient");
#undef FRESH
    tg_tensor_free(a), tg_tensor_free(b), tg_tensor_free(c);
}

/* Gradient accumulation: gradients add up, so k micro-batches, each loss
 * scaled by 1/k, give one large batch's gradient (a net without batch norm:
 * its statistics are per batch). Equal up to the order of the float sums. */
static void accumulation(void) {
    tg_model *m = tg_model_new(3);
    tg_model_conv2d(m, 1, 4, 3, 1, 1, true);
    tg_model_relu(m);
    tg_model_flatten(m);
    tg_model_linear(m, 4 * 6 * 6, 3, true);
    tg_tensor **ps;
    int np = tg_model_params(m, &ps);
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_tensor_new(4, (int[]){8, 1, 6, 6});
    uint64_t s = 2;
    for (int i = 0; i < x->size; i++) x->data[i] = tg_rand_normal(&s);
    int32_t labels[8] = {0, 1, 2, 0, 1, 2, 2, 1};
    tg_tensor *loss = tg_cross_entropy(t, tg_model_forward(m, t, x), labels);
    CHECK(loss && tg_backward(t, loss) == 0);
    static float whole[4][512]; /* the largest: the linear weight, 3 x 144 */
    for (int j = 0; j < np; j++) memcpy(whole[j], ps[j]->grad, (size_t)ps[j]->size * sizeof(float));
    tg_model_zero_grad(m);
    for (int k = 0; k < 2; k++) { /* two micro-batches of 4, each loss times 1/2 */
        tg_tape_reset(t);
        tg_tensor *xk = tg_tensor_tape(t, 4, (int[]){4, 1, 6, 6});
        memcpy(xk->data, x->data + k * 4 * 36, 4 * 36 * sizeof(float));
        tg_tensor *half = tg_tensor_tape(t, 0, NULL);
        half->data[0] = 0.5f;
        tg_tensor *lk = tg_mul(t, tg_cross_entropy(t, tg_model_forward(m, t, xk), labels + 4 * k), half);
        CHECK(lk && tg_backward(t, lk) == 0);
    }
    double worst = 0;
    for (int j = 0; j < np; j++)
        for (int i = 0; i < ps[j]->size; i++) worst = fmax(worst, fabs(ps[j]->grad[i] - whole[j][i]));
    printf("accumulation: 2 micro-batches of 4 vs one batch of 8, worst gradient difference %.1e\n", worst);
    CHECK(worst < 1e-6);
    tg_tensor_free(x);
    tg_tape_free(t);
    tg_model_free(m);
}

/* The schedules against the learning rates PyTorch 1.13 printed, step by step:
 *
 *   p = torch.nn.Parameter(torch.zeros(1)); opt = torch.optim.SGD([p], lr=0.1); s = make(opt)
 *   for i in range(n): print(repr(opt.param_groups[0]['lr'])); opt.step(); s.step()
 *
 * with make(o), L = torch.optim.lr_scheduler:
 *   linear:   L.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=4)
 *   cosine:   L.CosineAnnealingLR(o, T_max=6, eta_min=0.001)
 *   step:     L.StepLR(o, step_size=3, gamma=0.5)
 *   onecycle: L.OneCycleLR(o, max_lr=0.1, total_steps=10, pct_start=0.3, cycle_momentum=False)
 *   warm-up:  L.SequentialLR(o, [L.LinearLR(o, start_factor=1/3, end_factor=1.0, total_iters=2),
 *                                L.CosineAnnealingLR(o, T_max=5, eta_min=0.0)], milestones=[3])
 * PyTorch's recursive forms drift in the last places (0.10000000000000002); ours are closed forms,
 * so the match is to 1e-12 relative, and the SGD's float lr is the float of each. */
static void schedules_like_pytorch(void) {
    static const struct {
        tg_sched_opts o;
        int n;
        double want[10];
    } cases[] = {
        {{.kind = TG_SCHED_LINEAR, .steps = 4, .start_factor = 0.25, .end_factor = 1.0}, 7,
         {0.025, 0.043750000000000004, 0.06250000000000001, 0.08125000000000002, 0.10000000000000002,
          0.10000000000000002, 0.10000000000000002}},
        {{.kind = TG_SCHED_COSINE, .steps = 6, .eta_min = 0.001}, 8,
         {0.1, 0.09336825748732973, 0.07525000000000001, 0.0505, 0.025750000000000012, 0.007631742512670284, 0.001,
          0.007631742512670284}},
        {{.kind = TG_SCHED_STEP, .step_size = 3, .gamma = 0.5}, 8, {0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025}},
        {{.kind = TG_SCHED_ONE_CYCLE, .steps = 10}, 10,
         {0.0040000000000000036, 0.052000000000000005, 0.1, 0.09504846320134738, 0.0811745653949763,
          0.06112620219362893, 0.03887419780637107, 0.0188258346050237, 0.004951936798652629, 4e-07}},
        {{.kind = TG_SCHED_COSINE, .warmup = 3, .steps = 5}, 9,
         {0.03333333333333333, 0.06666666666666667, 0.1, 0.1, 0.09045084971874738, 0.06545084971874737,
          0.03454915028125263, 0.009549150281252633, 0.0}},
    };
    tg_tensor *p = tg_param_new(1, (int[]){1});
    for (int c = 0; c < 5; c++) {
        tg_optim *o = tg_optim_sgd(&p, 1, (tg_sgd_opts){.lr = 0.1});
        tg_sched *s = tg_sched_new(o, cases[c].o);
        CHECK(s != NULL);
        double worst = 0;
        for (int i = 0; i < cases[c].n; i++) {
            double lr = tg_sched_lr(s, 0), want = cases[c].want[i];
            double rel = fabs(lr - want) / (want > 1e-300 ? want : 1);
            worst = rel > worst ? rel : worst;
            CHECK_NEAR(tg_optim_lr(o, 0), lr, 0);
            CHECK_INT(tg_sched_position(s), i);
            CHECK_INT(tg_sched_step(s), 0);
        }
        printf("schedule %d: worst relative difference from PyTorch %.1e\n", c, worst);
        CHECK(worst < 1e-12);
        tg_sched_free(s);
        tg_optim_free(o);
    }
    /* the state is the position: a schedule made anew and given it continues on the same curve */
    tg_optim *o = tg_optim_sgd(&p, 1, (tg_sgd_opts){.lr = 0.1});
    tg_sched_opts oc = {.kind = TG_SCHED_ONE_CYCLE, .steps = 10};
    tg_sched *a = tg_sched_new(o, oc);
    for (int i = 0; i < 4; i++) tg_sched_step(a);
    tg_tensor **st;
    CHECK_INT(tg_sched_state(a, &st), 1);
    CHECK(!strcmp(st[0]->name, "sched.step"));
    float pos = st[0]->data[0];
    tg_sched_free(a);
    tg_optim_set_lr(o, -1, 0.1);
    tg_sched *b = tg_sched_new(o, oc);
    tg_sched_state(b, &st);
    st[0]->data[0] = pos;
    CHECK_INT(tg_sched_apply(b), 0);
    CHECK_NEAR(tg_optim_lr(o, 0), 0.0811745653949763, 1e-17);
    st[0]->data[0] = 2.5f;
    CHECK_INT(tg_sched_apply(b), TG_ERR_STATE);
    CHECK_MSG(tg_last_error(), "sched (one_cycle): position 2.5 is not a step count");
    tg_sched_free(b);
    /* options out of range name the schedule and what it needs */
    CHECK(tg_sched_new(o, (tg_sched_opts){.kind = TG_SCHED_COSINE}) == NULL);
    CHECK_MSG(tg_last_error(), "sched (cosine): steps 0, eta_min 0: need steps (T_max) >= 1");
    CHECK(tg_sched_new(o, (tg_sched_opts){.kind = TG_SCHED_ONE_CYCLE, .steps = 10, .warmup = 5}) == NULL);
    CHECK_MSG(tg_last_error(), "one-cycle warms up itself");
    CHECK(tg_sched_new(o, (tg_sched_opts){.kind = TG_SCHED_STEP, .step_size = 0}) == NULL);
    CHECK_MSG(tg_last_error(), "sched (step): step_size 0");
    CHECK(tg_sched_new(o, (tg_sched_opts){.kind = 7}) == NULL);
    CHECK_MSG(tg_last_error(), "sched: kind 7 is not a schedule");
    CHECK(tg_sched_new(NULL, oc) == NULL);
    tg_optim_free(o);
    tg_tensor_free(p);
}

/* Groups: an optimizer of two groups with the same options steps exactly as one group does; a
 * group without weight decay steps as an optimizer of its own without it; Adam likewise. */
static void optimizer_groups(void) {
    tg_tensor *w = tg_param_new(2, (int[]){2, 2}), *b = tg_param_new(1, (int[]){2});
    tg_tensor *w2 = tg_param_new(2, (int[]){2, 2}), *b2 = tg_param_new(1, (int[]){2});
    tg_tensor_set_name(w, "0.weight"), tg_tensor_set_name(b, "0.bias");
    tg_tensor_set_name(w2, "0.weight"), tg_tensor_set_name(b2, "0.bias");
    for (int adam = 0; adam < 2; adam++) {
        const float init[6] = {1, -2, 0.5f, 3, 0.25f, -1};
        memcpy(w->data, init, 16), memcpy(b->data, init + 4, 8), memcpy(w2->data, init, 16), memcpy(b2->data, init + 4, 8);
        tg_tensor *all[2] = {w, b}, *dec[2], *nodec[2];
        int nn, nd = tg_params_split_decay(all, 2, dec, nodec, &nn);
        CHECK_INT(nd, 1);
        CHECK_INT(nn, 1);
        CHECK(dec[0] == w && nodec[0] == b);
        tg_sgd_opts so = {.lr = 0.1, .momentum = 0.9f, .weight_decay = 0.01f};
        tg_adam_opts ao = TG_ADAMW(0.1);
        tg_optim *g = adam ? tg_optim_adam(dec, nd, ao) : tg_optim_sgd(dec, nd, so);
        CHECK_INT(tg_optim_add_group(g, nodec, nn, 0.1, 0), 0);
        CHECK_INT(tg_optim_groups(g), 2);
        /* the same by hand: one optimizer per group */
        tg_optim *hw = adam ? tg_optim_adam(&w2, 1, ao) : tg_optim_sgd(&w2, 1, so);
        ao.weight_decay = 0, so.weight_decay = 0;
        tg_optim *hb = adam ? tg_optim_adam(&b2, 1, ao) : tg_optim_sgd(&b2, 1, so);
        for (int k = 0; k < 3; k++) {
            for (int i = 0; i < 4; i++) w->grad[i] = w2->grad[i] = 0.3f * (float)(i - k);
            for (int i = 0; i < 2; i++) b->grad[i] = b2->grad[i] = 0.7f * (float)(k - i);
            CHECK_INT(tg_optim_step(g), 0);
            tg_optim_step(hw), tg_optim_step(hb);
            tg_optim_zero_grad(g);
        }
        CHECK(!memcmp(w->data, w2->data, 16) && !memcmp(b->data, b2->data, 8));
        CHECK_NEAR(b->grad[0], 0, 0);
        tg_tensor **st;
        int ns = tg_optim_state(g, &st);
        CHECK_INT(ns, adam ? 6 : 4);
        CHECK(!strcmp(st[ns - 1]->name, adam ? "adam.steps.1" : "sgd.steps.1"));
        CHECK(!strcmp(st[ns / 2 - 1]->name, adam ? "adam.steps" : "sgd.steps"));
        /* lr per group and for all */
        CHECK_INT(tg_optim_set_lr(g, 1, 0.5), 0);
        CHECK_NEAR(tg_optim_lr(g, 1), 0.5, 0);
        CHECK_NEAR(tg_optim_lr(g, 0), 0.1, 0);
        CHECK_INT(tg_optim_set_lr(g, -1, 0.25), 0);
        CHECK_NEAR(tg_optim_lr(g, 0), 0.25, 0);
        CHECK_INT(tg_optim_set_lr(g, 2, 0.1), TG_ERR_ARG);
        CHECK_MSG(tg_last_error(), "optim_set_lr: group 2: the optimizer has groups 0..1 (-1: all)");
        CHECK_INT(tg_optim_set_lr(g, 0, NAN), TG_ERR_ARG);
        CHECK_NEAR(tg_optim_lr(g, 0), 0.25, 0);
        /* a parameter in two groups is refused, and the optimizer stays as it was */
        CHECK_INT(tg_optim_add_group(g, &w, 1, 0.1, 0), TG_ERR_ARG);
        CHECK_MSG(tg_last_error(), "parameters 0 and 2 are the same tensor (0.weight)");
        CHECK_INT(tg_optim_groups(g), 2);
        tg_optim_free(g), tg_optim_free(hw), tg_optim_free(hb);
    }
    CHECK(tg_optim_sgd(&w, 1, (tg_sgd_opts){.lr = -1}) == NULL);
    CHECK_MSG(tg_last_error(), "sgd: lr -1");
    CHECK_INT(tg_optim_add_group(NULL, &w, 1, 0.1, 0), TG_ERR_ARG);
    CHECK_INT(tg_optim_step(NULL), TG_ERR_ARG);
    tg_tensor_free(w), tg_tensor_free(b), tg_tensor_free(w2), tg_tensor_free(b2);
}

int main(void) {
    residual_block(1, 4, 4, 1);
    residual_block(1, 4, 8, 2);
    residual_block(2, 4, 4, 1);
    residual_block(2, 4, 8, 2);
    sgd_like_pytorch();
    init();
    models();
    model_checkpoint();
    clipping();
    accumulation();
    adam_like_pytorch();
    schedules_like_pytorch();
    optimizer_groups();
    CHECK_DONE();
}
