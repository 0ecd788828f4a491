/* test_conv.c: conv2d's forward, input gradient and weight gradient against a
 * double-precision loop written from the definition, for the shapes that go
 * through each path (stride 1 reads the padded image shifted by tap, or on AVX-512 goes
 * through Winograd's F(4x4, 3x3) where it pays, other strides go through im2col, 1x1
 * straight to GEMM), with every kernel this CPU
 * has, and bit-for-bit the same with 1 and 2 threads; conv2d+relu the same way; the fused
 * conv2d+relu and conv2d+relu+max_pool2d bit for bit against the ops they fuse; and which path
 * the nets' shapes take (Winograd where it pays, and not with bf16 products). */
#include "check.h"
#include "kernels/kernels.h"
#include <stdint.h>
#include <stdlib.h>

typedef struct {
    int N, C, H, W, K, R, S, stride, pad, dil, groups;
} conv_case;

static const conv_case cases[] = {
    {3, 16, 28, 28, 16, 3, 3, 1, 1, 1, 1}, /* the resnet's 28x28 block */
    {2, 32, 14, 14, 32, 3, 3, 1, 1, 1, 1}, /* its 14x14 block */
    {2, 1, 28, 28, 32, 3, 3, 1, 0, 1, 1},  /* lenet's first conv: one channel, no padding */
    {2, 5, 9, 7, 11, 3, 3, 1, 1, 1, 1},    /* channels and widths off every tile size */
    {2, 3, 10, 8, 9, 2, 3, 1, 0, 1, 1},    /* a non-square kernel */
    {1, 4, 11, 12, 6, 3, 3, 1, 2, 2, 1},   /* dilation */
    {2, 3, 6, 6, 5, 3, 3, 1, 3, 1, 1},     /* more padding than the kernel needs */
    {2, 6, 7, 7, 9, 3, 3, 1, 1, 1, 3},     /* groups */
    {2, 8, 9, 9, 8, 5, 5, 1, 2, 1, 8},     /* depthwise 5x5 */
    {1, 2, 5, 40, 3, 1, 7, 1, 3, 1, 1},    /* a long row, 1x7 */
    {2, 4, 9, 9, 6, 3, 3, 2, 1, 1, 1},     /* stride 2: im2col */
    {2, 5, 6, 6, 7, 1, 1, 1, 0, 1, 1},     /* 1x1: GEMM on x itself */
    {37, 3, 6, 5, 5, 3, 3, 1, 1, 1, 1},    /* more images than weight-gradient chunks: several per chunk */
    {2, 32, 12, 12, 64, 3, 3, 1, 0, 1, 1}, /* lenet's second conv, smaller: dW reads x in blocks of 16 channels */
    {2, 52, 6, 7, 10, 3, 3, 1, 1, 1, 2},   /* blocks of 16 of 26 channels, a group of 5 filters: tiles of 3 + 2 */
    {1, 16, 9, 9, 7, 3, 3, 1, 2, 2, 1},    /* blocks with dilation, 7 filters: tiles of 3 + 2 + 2 */
    {2, 16, 8, 8, 4, 5, 5, 1, 2, 1, 1},    /* blocks with 25 taps: tap tiles of 9, 9 and 7 */
    {2, 17, 15, 21, 24, 3, 3, 1, 1, 1, 1}, /* Winograd (AVX-512) forward and input gradient, odd sizes */
    {2, 20, 9, 13, 16, 3, 3, 1, 0, 1, 1},  /* Winograd unpadded: its input gradient pads by 2 */
    {2, 24, 8, 12, 20, 3, 3, 1, 1, 1, 1},  /* Winograd's weight gradient (even sizes): channels part of a block */
    {20, 16, 10, 10, 16, 3, 3, 1, 1, 1, 1}, /* ... over several images in a chunk */
};

static double frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 40) / 16777216.0 * 2 - 1;
}

/* y, dx, dw and db for dy, by the definition, in double; with relu_y (conv2d+relu's
 * computed output), y = relu(y) and dy passes only where not relu_y <= 0 (PyTorch's rule) */
static void reference(const conv_case *c, int Ho, int Wo, const float *x, const float *w, const float *b,
                      const float *dy, const float *relu_y, double *y, double *dx, double *dw, double *db) {
    int Cg = c->C / c->groups, Kg = c->K / c->groups;
    for (int n = 0; n < c->N; n++)
        for (int k = 0; k < c->K; k++)
            for (int oh = 0; oh < Ho; oh++)
                for (int ow = 0; ow < Wo; ow++) {
                    int64_t yi = (((int64_t)n * c->K + k) * Ho + oh) * Wo + ow;
                    double acc = 0, g = relu_y && relu_y[yi] <= 0 ? 0.0 : dy[yi];
                    for (int ci = 0; ci < Cg; ci++)
                        for (int r = 0; r < c->R; r++)
                            for (int s = 0; s < c->S; s++) {
                                int ih = oh * c->stride - c->pad + r * c->dil, iw = ow * c->stride - c->pad + s * c->dil;
                                if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                                int cin = k / Kg * Cg + ci;
                                int64_t xi = (((int64_t)n * c->C + cin) * c->H + ih) * c->W + iw;
                                int64_t wi = (((int64_t)k * Cg + ci) * c->R + r) * c->S + s;
                                acc += (double)x[xi] * w[wi];
                                dx[xi] += (double)w[wi] * g;
                                dw[wi] += (double)x[xi] * g;
                            }
                    y[yi] = relu_y && acc + b[k] <= 0 ? 0 : acc + b[k];
                    db[k] += g;
                }
}

/* the worst |a - b| over n elements, relative to the largest |b| */
static double worst(const float *a, const double *b, int64_t n) {
    double e = 0, scale = 1e-6;
    for (int64_t i = 0; i < n; i++) scale = fabs(b[i]) > scale ? fabs(b[i]) : scale;
    for (int64_t i = 0; i < n; i++) e = fabs(a[i] - b[i]) > e ? fabs(a[i] - b[i]) : e;
    return e / scale;
}

static int same_bits(const float *a, const float *b, int64_t n) { return memcmp(a, b, (size_t)n * sizeof *a) == 0; }

/* a copy of x rounded to bf16 as precision "medium" rounds what enters a product */
static float *bf16_rounded(const float *x, int64_t n) {
    uint32_t *h = malloc((size_t)n * sizeof *h);
    float *r = malloc((size_t)n * sizeof *r);
    tg__bf16_pairs_ref(h, x, NULL, n);
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = h[i] << 16;
        memcpy(&r[i], &u, 4);
    }
    free(h);
    return r;
}

/* relu: conv2d+relu; via: x reaches the conv through a multiply by 1, so the conv's
 * input gradient is tape memory that starts unset and dx is stored, not added; bf:
 * precision "medium", where a stride-1 conv's y, dx and (mostly) dw must equal the
 * reference on bf16-rounded x, w and dy (db, and every other path, stay float32's); bias:
 * with a bias (else none, as a conv before batch norm, whose medium backward pairs dy directly) */
static void one_case(const conv_case *c, const char *kernel, bool relu, bool via, bool bf, bool bias) {
    uint64_t seed = 7;
    int xs[4] = {c->N, c->C, c->H, c->W}, ws[4] = {c->K, c->C / c->groups, c->R, c->S};
    tg_tensor *w = tg_param_new(4, ws), *b = tg_param_new(1, (int[]){c->K});
    float *keep[2][4] = {{0}};
    tg_tensor *x = NULL, *y = NULL;
    int64_t ny = 0, nx = (int64_t)c->N * c->C * c->H * c->W;
    CHECK_INT(tg_set_float32_matmul_precision(bf ? "medium" : "highest"), 0);
    for (int threads = 1; threads <= 2; threads++) {
        tg_set_threads(threads);
        tg_tape *t = tg_tape_new();
        x = tg_tensor_new(4, xs);
        CHECK_INT(tg_tensor_set_requires_grad(x, true), 0);
        seed = 7;
        for (int64_t i = 0; i < x->size; i++) x->data[i] = (float)frand(&seed);
        for (int64_t i = 0; i < w->size; i++) w->data[i] = (float)frand(&seed);
        for (int64_t i = 0; i < b->size; i++) b->data[i] = bias ? (float)frand(&seed) : 0.0f;
        tg_tensor_zero_grad(w);
        tg_tensor_zero_grad(b);
        for (int64_t i = 0; i < x->size; i++) x->grad[i] = 0.25f * (float)(i % 7); /* dx must add to this */
        tg_tensor *one = tg_tensor_tape(t, 0, NULL);
        one->data[0] = 1.0f;
        y = tg_conv2d_act(t, via ? tg_mul(t, x, one) : x, w, bias ? b : NULL, c->stride, c->pad, c->dil, c->groups,
                          relu ? TG_ACT_RELU : TG_ACT_NONE);
        CHECK(y != NULL);
        if (!y) {
            fprintf(stderr, "%s\n", tg_last_error());
            tg_tape_free(t);
            tg_tensor_free(x);
            x = NULL;
            break;
        }
        float *dy = malloc((size_t)y->size * sizeof *dy);
        for (int64_t i = 0; i < y->size; i++) dy[i] = (float)frand(&seed);
        CHECK_INT(tg_backward_seed(t, y, dy), 0);
        ny = y->size;
        keep[threads - 1][0] = malloc((size_t)y->size * sizeof(float));
        keep[threads - 1][1] = malloc((size_t)x->size * sizeof(float));
        keep[threads - 1][2] = malloc((size_t)w->size * sizeof(float));
        memcpy(keep[threads - 1][0], y->data, (size_t)y->size * sizeof(float));
        memcpy(keep[threads - 1][1], x->grad, (size_t)x->size * sizeof(float));
        memcpy(keep[threads - 1][2], w->grad, (size_t)w->size * sizeof(float));
        keep[threads - 1][3] = malloc((size_t)b->size * sizeof(float));
        memcpy(keep[threads - 1][3], b->grad, (size_t)b->size * sizeof(float));
        if (threads == 1) {
            double *ry = calloc((size_t)y->size, sizeof *ry), *rdx = malloc((size_t)x->size * sizeof *rdx),
                   *rdw = calloc((size_t)w->size, sizeof *rdw), *rdb = calloc((size_t)b->size, sizeof *rdb);
            for (int64_t i = 0; i < x->size; i++) rdx[i] = 0.25 * (double)(i % 7);
            reference(c, y->shape[2], y->shape[3], x->data, w->data, b->data, dy, relu ? y->data : NULL, ry, rdx,
                      rdw, rdb);
            bool shifted = c->stride == 1 && !(c->R == 1 && c->S == 1 && c->pad == 0);
            /* the weight gradient runs in bf16 where conv.c reads x in blocks of 16 channels (at most a fifth
             * of their lanes padding) and takes a row's output pixels two at a time (Wo even) */
            int Cg = c->C / c->groups;
            bool bf_dw = bf && shifted && (Cg + 15) / 16 * 16 * 4 <= Cg * 5 && y->shape[3] % 2 == 0;
            if (bf && shifted) { /* y and dx (and dw, if bf_dw) from the rounded operands; db as it was */
                float *xr = bf16_rounded(x->data, x->size), *wr = bf16_rounded(w->data, w->size);
                float *dym = malloc((size_t)y->size * sizeof *dym);
                for (int64_t i = 0; i < y->size; i++) dym[i] = relu && y->data[i] <= 0.0f ? 0.0f : dy[i];
                float *dyr = bf16_rounded(dym, y->size);
                double *dw2 = calloc((size_t)w->size, sizeof *dw2), *db2 = calloc((size_t)b->size, sizeof *db2);
                double *ry2 = calloc((size_t)y->size, sizeof *ry2), *rdx2 = malloc((size_t)x->size * sizeof *rdx2);
                for (int64_t i = 0; i < x->size; i++) rdx2[i] = 0.25 * (double)(i % 7);
                reference(c, y->shape[2], y->shape[3], xr, wr, b->data, dyr, relu ? y->data : NULL, ry2, rdx2, dw2,
                          db2);
                /* y pairs input channels, dx output channels: a conv with one of them stays float32 there */
                if (Cg > 1) memcpy(ry, ry2, (size_t)y->size * sizeof *ry);
                if (c->K / c->groups > 1) memcpy(rdx, rdx2, (size_t)x->size * sizeof *rdx);
                if (bf_dw) memcpy(rdw, dw2, (size_t)w->size * sizeof *rdw);
                free(ry2), free(rdx2);
                free(xr), free(wr), free(dym), free(dyr), free(dw2), free(db2);
            }
            int zeros = 0;
            for (int64_t i = 0; relu && i < y->size; i++) zeros += y->data[i] == 0.0f;
            CHECK(!relu || (zeros > y->size / 5 && zeros < y->size * 4 / 5)); /* the ReLU really cuts */
            double ey = worst(y->data, ry, y->size), ex = worst(x->grad, rdx, x->size), ew = worst(w->grad, rdw, w->size);
            double eb = bias ? worst(b->grad, rdb, b->size) : 0;
            for (int64_t i = 0; !bias && i < b->size; i++) CHECK(b->grad[i] == 0.0f); /* a bias not passed: untouched */
            if (ey > 1e-5 || ex > 1e-5 || ew > 1e-5 || eb > 1e-5)
                fprintf(stderr, "%s%s: %s N%d C%d %dx%d K%d %dx%d stride %d pad %d dil %d groups %d: y %.2g dx %.2g "
                        "dw %.2g db %.2g\n", kernel, bf ? " medium" : "", relu ? "conv2d+relu" : "conv2d", c->N, c->C,
                        c->H, c->W, c->K, c->R, c->S, c->stride, c->pad, c->dil, c->groups, ey, ex, ew, eb);
            CHECK(ey <= 1e-5);
            CHECK(ex <= 1e-5);
            CHECK(ew <= 1e-5);
            CHECK(eb <= 1e-5);
            free(rdb);
            free(ry);
            free(rdx);
            free(rdw);
        }
        free(dy);
        tg_tape_free(t);
        if (threads == 1) tg_tensor_free(x);
    }
    if (keep[1][0]) {
        CHECK(same_bits(keep[0][0], keep[1][0], ny));
        CHECK(same_bits(keep[0][1], keep[1][1], nx));
        CHECK(same_bits(keep[0][2], keep[1][2], w->size));
        CHECK(same_bits(keep[0][3], keep[1][3], b->size));
    }
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++) free(keep[i][j]);
    tg_tensor_free(x);
    tg_tensor_free(w);
    tg_tensor_free(b);
    tg_set_threads(0);
    tg_set_float32_matmul_precision("highest");
}

/* conv2d+relu against tg_relu(tg_conv2d(...)) on the same data, and with pool
 * conv2d+relu+max_pool2d against tg_max_pool2d(tg_relu(tg_conv2d(...)), 2, 2, 0):
 * output, dx, dW, db and the argmax bit for bit (0 if the output is too small to pool,
 * else 1) */
static int fused_same_bits(const conv_case *c, bool pool) {
    int Ho = (c->H + 2 * c->pad - c->dil * (c->R - 1) - 1) / c->stride + 1;
    int Wo = (c->W + 2 * c->pad - c->dil * (c->S - 1) - 1) / c->stride + 1;
    if (pool && (Ho < 2 || Wo < 2)) return 0;
    uint64_t seed = 11;
    int xs[4] = {c->N, c->C, c->H, c->W}, ws[4] = {c->K, c->C / c->groups, c->R, c->S};
    tg_tensor *x = tg_tensor_new(4, xs), *w = tg_param_new(4, ws), *b = tg_param_new(1, (int[]){c->K});
    tg_tensor_set_requires_grad(x, true);
    for (int64_t i = 0; i < x->size; i++) x->data[i] = (float)frand(&seed);
    for (int64_t i = 0; i < w->size; i++) w->data[i] = (float)frand(&seed);
    for (int64_t i = 0; i < b->size; i++) b->data[i] = (float)frand(&seed);
    float *keep[5] = {0};
    int same = 1;
    for (int fused = 0; fused < 2; fused++) {
        tg_tape *t = tg_tape_new();
        tg_tensor_zero_grad(x), tg_tensor_zero_grad(w), tg_tensor_zero_grad(b);
        tg_tensor *y;
        if (pool)
            y = fused ? tg_conv2d_relu_max_pool(t, x, w, b, c->stride, c->pad, c->dil, c->groups)
                      : tg_max_pool2d(t, tg_relu(t, tg_conv2d(t, x, w, b, c->stride, c->pad, c->dil, c->groups)), 2,
                                      2, 0);
        else
            y = fused ? tg_conv2d_act(t, x, w, b, c->stride, c->pad, c->dil, c->groups, TG_ACT_RELU)
                      : tg_relu(t, tg_conv2d(t, x, w, b, c->stride, c->pad, c->dil, c->groups));
        CHECK(y && y->shape[2] == (pool ? Ho / 2 : Ho) && y->shape[3] == (pool ? Wo / 2 : Wo));
        float *dy = malloc((size_t)y->size * sizeof *dy);
        uint64_t s2 = 5;
        for (int64_t i = 0; i < y->size; i++) dy[i] = (float)frand(&s2);
        CHECK_INT(tg_backward_seed(t, y, dy), 0);
        const int32_t *arg = tg_max_pool2d_argmax(y);
        CHECK(pool == (arg != NULL));
        const float *got[5] = {y->data, x->grad, w->grad, b->grad, (const float *)arg};
        int64_t n[5] = {y->size, x->size, w->size, b->size, arg ? y->size : 0};
        for (int k = 0; k < (pool ? 5 : 4); k++) {
            if (!fused) keep[k] = malloc((size_t)n[k] * sizeof(float)), memcpy(keep[k], got[k], (size_t)n[k] * 4);
            else same &= same_bits(keep[k], got[k], n[k]);
        }
        free(dy);
        tg_tape_free(t);
    }
    CHECK(same);
    for (int k = 0; k < 5; k++) free(keep[k]);
    tg_tensor_free(x), tg_tensor_free(w), tg_tensor_free(b);
    return 1;
}

/* fused_same_bits over every shape, both fusions */
static void fused_all(const char *what) {
    int before = check_failures, pooled = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        fused_same_bits(&cases[i], false);
        pooled += fused_same_bits(&cases[i], true);
    }
    printf("%s: conv2d+relu against relu(conv2d), %zu shapes, and conv2d+relu+max_pool2d against "
           "max_pool2d(relu(conv2d)), %d shapes, bit for bit: %s\n", what, sizeof cases / sizeof *cases, pooled,
           check_failures == before ? "same" : "DIFFERENT");
}

/* The paths a conv2d takes (its node's kernel strings): the resnet's 16-channel conv goes through
 * Winograd all three ways on AVX-512 in float32, lenet's second conv forward and weight gradient
 * (its input gradient has 64 channels in), the shifted products elsewhere and with bf16 products */
static void paths(const char *isa, const char *precision, int C, int K, int H, int pad, const char *fwd,
                  const char *bwd) {
    if (tg__isa_use(isa) < 0) return;
    CHECK_INT(tg_set_float32_matmul_precision(precision), 0);
    tg_tensor *x = tg_param_new(4, (int[]){2, C, H, H}), *w = tg_param_new(4, (int[]){K, C, 3, 3});
    tg_tape *t = tg_tape_new();
    CHECK_INT(tg_backward(t, tg_sum(t, tg_conv2d(t, x, w, NULL, 1, pad, 1, 1))), 0);
    const tg_node *n = tg_tape_first(t);
    CHECK(n && !strcmp(n->op->name, "conv2d"));
    if (n && (strcmp(n->kernel_forward, fwd) || strncmp(n->kernel_backward, bwd, strlen(bwd)))) {
        fprintf(stderr, "conv %d -> %d, %dx%d pad %d, %s, %s: took \"%s | %s\", want \"%s | %s...\"\n", C, K, H, H, pad,
                isa, precision, n->kernel_forward, n->kernel_backward, fwd, bwd);
        CHECK(0);
    }
    tg_tape_free(t);
    tg_tensor_free(x), tg_tensor_free(w);
    CHECK_INT(tg_set_float32_matmul_precision("highest"), 0);
    tg__isa_use(NULL);
}

/* The one-channel forward (AVX-512) against its plain reference, bit for bit, image by image: the
 * resnet's first conv, lenet's (no padding, bias, ReLU), rows of 33 (a third, masked vector), a 2 x 2
 * image, 5 channels; NaN and Inf among the inputs */
static void one_channel(void) {
    if (tg__isa_use("avx512") < 0) {
        printf("one-channel forward: no AVX-512 on this CPU, skipped (the shifted kernels compute it)\n");
        return;
    }
    static const int dims[][5] = {{3, 16, 28, 28, 1}, {2, 32, 28, 28, 0}, {2, 5, 3, 33, 1}, {3, 4, 2, 2, 1},
                                  {2, 7, 9, 17, 0}};
    int before = check_failures;
    for (int di = 0; di < 5; di++)
        for (int mode = 0; mode < 4; mode++) { /* bias, relu */
            int N = dims[di][0], K = dims[di][1], H = dims[di][2], W = dims[di][3], pad = dims[di][4];
            tg__conv_dims d = {N, 1, H, W, K, 3, 3, H + 2 * pad - 2, W + 2 * pad - 2, 1, 1, K, 1, pad, 1, 9, NULL};
            int64_t HWo = (int64_t)d.Ho * d.Wo;
            uint64_t s = 77 + (uint64_t)di;
            float *x = malloc((size_t)N * H * W * sizeof *x), *w = malloc((size_t)K * 9 * sizeof *w);
            float *b = malloc((size_t)K * sizeof *b), *y = malloc((size_t)N * K * HWo * sizeof *y);
            float *want = malloc((size_t)K * HWo * sizeof *want);
            for (int i = 0; i < N * H * W; i++) x[i] = frand(&s);
            for (int i = 0; i < K * 9; i++) w[i] = frand(&s);
            for (int i = 0; i < K; i++) b[i] = 0.3f * frand(&s);
            if (di == 2) x[5] = NAN, x[40] = INFINITY;
            int T;
            size_t bytes = tg__conv2d_forward_scratch(&d, false, &T);
            void *scratch = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
            const char *path = tg__conv2d_forward(y, x, w, mode & 1 ? b : NULL, &d, mode & 2, NULL, scratch, T);
            CHECK(!strcmp(path, "one-channel avx512"));
            for (int i = 0; i < N; i++) {
                tg__conv_one_forward_ref(want, x + (int64_t)i * H * W, w, mode & 1 ? b : NULL, &d, mode & 2);
                CHECK(memcmp(y + (int64_t)i * K * HWo, want, (size_t)K * HWo * sizeof *want) == 0);
            }
            free(x), free(w), free(b), free(y), free(want), free(scratch);
        }
    printf("one-channel forward: 5 shapes with and without bias and ReLU, against its reference: %s\n",
           check_failures == before ? "same bits" : "DIFFERENT");
    tg__isa_use(NULL);
}

int main(void) {
    one_channel();
    paths("avx512", "highest", 1, 16, 28, 1, "one-channel avx512", "shifted dx, shifted wgrad avx512");
    paths("avx512", "highest", 16, 16, 28, 1, "winograd avx512", "winograd dx, winograd wgrad avx512");
    paths("avx512", "highest", 32, 64, 26, 0, "winograd avx512", "winograd dx, winograd wgrad avx512");
    paths("avx512", "highest", 16, 272, 8, 1, "winograd avx512", "shifted dx, winograd wgrad avx512"); /* dx: 272 in */
    paths("avx512", "highest", 8, 16, 28, 1, "shifted avx512", "shifted dx, shifted wgrad avx512"); /* too few channels */
    paths("avx2", "highest", 16, 16, 28, 1, "shifted avx2", "shifted dx, blocked wgrad avx2");
    if (tg__bf16_supported())
        paths("avx512", "medium", 16, 16, 28, 1, "shifted bf16 avx512", "shifted dx bf16, blocked wgrad bf16 avx512");
    static const char *kernels[] = {"avx512", "avx2", "generic"};
    for (int k = 0; k < 3; k++) {
        if (tg__isa_use(kernels[k]) < 0) {
            printf("%s: not on this CPU, skipped\n", kernels[k]);
            continue;
        }
        int before = check_failures;
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            for (int mode = 0; mode < 5; mode++) /* the fifth: no bias, no relu */
                one_case(&cases[i], kernels[k], mode & 1, mode & 2, false, mode < 4);
        }
        printf("%s: %zu shapes, conv2d and conv2d+relu, dx added or stored, %s\n", kernels[k],
               sizeof cases / sizeof *cases,
               check_failures == before ? "match the reference" : "FAILED");
        fused_all(kernels[k]);
    }
    tg__isa_use(NULL);
    if (tg__bf16_supported()) { /* precision "medium": the bf16 products */
        int before = check_failures;
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
            for (int mode = 0; mode < 5; mode++) one_case(&cases[i], "avx512", mode & 1, mode & 2, true, mode < 4);
        printf("avx512, precision medium: %zu shapes, stride 1 in bf16, the rest in float32, %s\n",
               sizeof cases / sizeof *cases, check_failures == before ? "match the reference" : "FAILED");
        tg_set_float32_matmul_precision("medium");
        fused_all("avx512, precision medium");
        tg_set_float32_matmul_precision("highest");
    } else {
        printf("precision medium: this CPU has no bf16 products; float32 throughout\n");
    }
    CHECK_INT(tg_set_float32_matmul_precision("low"), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "unknown precision \"low\"");
    CHECK(!strcmp(tg_get_float32_matmul_precision(), "highest"));
    CHECK_INT(tg_set_float32_matmul_precision("high"), 0); /* accepted, as PyTorch's; float32 on a CPU */
    CHECK(!strcmp(tg_get_float32_matmul_precision(), "high") && !tg__bf16_active());
    CHECK_INT(tg_set_float32_matmul_precision("medium"), 0);
    CHECK(tg__bf16_active() == tg__bf16_supported());
    tg__isa_use("avx2"); /* the bf16 products need the AVX-512 kernels */
    CHECK(!tg__bf16_active());
    tg__isa_use(NULL);
    CHECK_INT(tg_set_float32_matmul_precision("highest"), 0);
    CHECK_DONE();
}
