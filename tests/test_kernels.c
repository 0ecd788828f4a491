/* test_kernels.c: every kernel of ops/kernels/ against its plain reference,
 * under each instruction set this CPU has (tg__isa_use): the GEMM (all four
 * transposes, edge sizes, alpha and beta, padded strides) within rounding; the
 * shifted products (forward, dx with negative shifts, the epilogue that writes
 * an unpadded output, the weight gradient, the blocked weight gradient and its
 * layout) within rounding, their bf16 builds and the bf16 pairs bit for bit, the
 * layouts bit for bit; im2col, col2im and the
 * conv's row copies; max pooling forward and backward; the batch-norm loops,
 * relu, the residual adds, dropout and the SGD update bit for bit, on inputs
 * holding NaN, -0, infinities and denormals in vector lanes and tails; the
 * non-finite probe; Winograd's F(4x4, 3x3) kernels (the images' and the weight
 * gradient's) bit for bit against their references (which are checked against the
 * direct sum, in double, within rounding); and
 * the switch itself. */
#include "check.h"
#include "kernels/kernels.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 7;

static float frand(void) { /* uniform in [-1, 1) */
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng >> 40) / (double)(1 << 24)) * 2.0f - 1.0f;
}

static int irand(int lo, int hi) { /* in [lo, hi] */
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (int)((rng >> 33) % (uint64_t)(hi - lo + 1));
}

static const float specials[] = {NAN, -NAN, INFINITY, -INFINITY, -0.0f, 0.0f, 1e-40f, -1e-40f, 3e38f, -3e38f};
#define N_SPECIALS (int)(sizeof specials / sizeof *specials)

/* n random floats; with odds > 0, about one in odds is a special value */
static float *randv(int64_t n, int odds) {
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof *x);
    for (int64_t i = 0; i < n; i++) x[i] = odds && irand(1, odds) == 1 ? specials[irand(0, N_SPECIALS - 1)] : frand();
    return x;
}

static float *copyv(const float *x, int64_t n) {
    float *y = malloc((size_t)(n > 0 ? n : 1) * sizeof *y);
    memcpy(y, x, (size_t)n * sizeof *y);
    return y;
}

/* The same bits, or both NaN (a NaN's sign and payload depend on operand order, which compilers may swap) */
static bool same_float(float a, float b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0; }
static bool same_double(double a, double b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0; }

/* Elements that differ (same_float), reporting the first few under `what` */
static int64_t count_differ(const char *what, const float *got, const float *want, int64_t n) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++)
        if (!same_float(got[i], want[i]) && bad++ < 3)
            fprintf(stderr, "%s [%s]: element %lld is %.9g, want %.9g\n", what, tg__isa_name(), (long long)i, got[i],
                    want[i]);
    return bad;
}

/* Elements where got and want differ by more than tol[i] (NaN only with NaN) */
static int64_t count_far(const char *what, const float *got, const float *want, const float *tol, int64_t n) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        bool ok = isnan(want[i]) ? isnan(got[i]) : fabsf(got[i] - want[i]) <= tol[i];
        if (!ok && bad++ < 3)
            fprintf(stderr, "%s [%s]: element %lld is %.9g, want %.9g (tol %.3g)\n", what, tg__isa_name(),
                    (long long)i, got[i], want[i], tol[i]);
    }
    return bad;
}

static float *absv(const float *x, int64_t n) {
    float *y = copyv(x, n);
    for (int64_t i = 0; i < n; i++) y[i] = fabsf(y[i]);
    return y;
}

// ----------------------------------------------------------------------------
// GEMM

/* One product against the reference; rounding of a K-term sum allowed */
static void gemm_case(bool ta, bool tb, int M, int N, int K, int pad, float alpha, float beta) {
    int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    int lda = ac + pad, ldb = bc + pad, ldc = N + pad;
    int64_t na = (int64_t)ar * lda, nb = (int64_t)br * ldb, nc = (int64_t)M * ldc;
    float *A = randv(na, 0), *B = randv(nb, 0), *C = randv(nc, 0);
    if (beta == 0.0f)
        for (int64_t i = 0; i < nc; i++) C[i] = NAN; /* beta 0 must not read C */
    for (int i = 0; i < M; i++)
        for (int j = N; j < ldc; j++) C[(int64_t)i * ldc + j] = 12345.0f; /* the row padding stays */
    float *want = copyv(C, nc), *bound = copyv(C, nc), *Aa = absv(A, na), *Ba = absv(B, nb), *tol = copyv(C, nc);
    tg__sgemm(C, ldc, A, lda, B, ldb, M, N, K, ta, tb, alpha, beta);
    tg__sgemm_ref(want, ldc, A, lda, B, ldb, M, N, K, ta, tb, alpha, beta);
    tg__sgemm_ref(bound, ldc, Aa, lda, Ba, ldb, M, N, K, ta, tb, fabsf(alpha), 0.0f);
    for (int64_t i = 0; i < nc; i++)
        tol[i] = (float)((2.0 * K + 8) * 1.2e-7 * (fabsf(bound[i]) + (beta == 0.0f ? 0 : fabsf(beta * want[i])))) +
                 1e-30f;
    char what[96];
    snprintf(what, sizeof what, "gemm %c%c %dx%dx%d pad %d alpha %g beta %g", ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K,
             pad, alpha, beta);
    CHECK_INT(count_far(what, C, want, tol, nc), 0);
    free(A), free(B), free(C), free(want), free(bound), free(Aa), free(Ba), free(tol);
}

static void gemm(void) {
    static const float ab[][2] = {{1, 0}, {1, 1}, {1, 0.5f}, {-0.75f, 0}, {2, 1}};
    int n = 0;
    for (int s = 1; s <= 40; s += s < 12 ? 1 : 7)
        for (int t = 0; t < 4; t++, n++) {
            gemm_case(t & 1, t >> 1, s, s, s, (s + t) % 3 ? 3 : 0, ab[n % 5][0], ab[n % 5][1]);
            int M = irand(1, 50), N = irand(1, 50), K = irand(1, 50); /* in this order on every compiler */
            gemm_case(t & 1, t >> 1, M, N, K, irand(0, 4), ab[n % 5][0], ab[n % 5][1]);
        }
    /* long sums (several K slices, the dot-product kernel's too), blocks past MC and NC, conv and linear shapes */
    static const int big[][3] = {{16, 784, 144}, {9, 97, 600}, {6, 10, 2100}, {530, 40, 20}, {5, 1200, 9},
                                 {67, 131, 513}, {40, 9, 1100}, {1, 1, 3000}, {3, 70, 1}};
    for (size_t i = 0; i < sizeof big / sizeof *big; i++)
        for (int t = 0; t < 4; t++, n++) gemm_case(t & 1, t >> 1, big[i][0], big[i][1], big[i][2], t == 2 ? 5 : 0,
                                                    ab[n % 5][0], ab[n % 5][1]);
    /* K = 0 or alpha = 0: C = beta C, A and B never read */
    float A[4] = {NAN, NAN, NAN, NAN}, C[4] = {1, 2, 3, 4}, D[4] = {NAN, NAN, NAN, NAN};
    tg__sgemm(C, 2, A, 2, A, 2, 2, 2, 2, false, false, 0.0f, 0.5f);
    CHECK(C[0] == 0.5f && C[3] == 2.0f);
    tg__sgemm(D, 2, A, 2, A, 2, 2, 2, 0, true, true, 1.0f, 0.0f);
    CHECK(D[0] == 0.0f && D[3] == 0.0f);
    tg__sgemm(D, 2, A, 2, A, 2, 0, 2, 2, false, false, 1.0f, 0.0f); /* M = 0: nothing */
}

// ----------------------------------------------------------------------------
// shifted products

/* n words of bf16 pairs from random floats (the pairs of tg__bf16_pairs_ref) */
static uint32_t *rand_pairs(int64_t n) {
    float *lo = randv(n, 0), *hi = randv(n, 0);
    uint32_t *d = malloc((size_t)(n > 0 ? n : 1) * sizeof *d);
    tg__bf16_pairs_ref(d, lo, hi, n);
    free(lo), free(hi);
    return d;
}

/* tg__shifted_gemm (or, if bf, tg__shifted_gemm_bf16 with K pairs) on a grid of
 * `rows` rows Wp wide whose first `cols` columns are real, with shifts off[t] =
 * r*Wp + s - neg (negative ones if neg > 0, as dx reads): C against the
 * reference, and where the kernel wrote straight into the unpadded y, y against
 * the reference's C with the epilogue applied. */
static void shifted_case(bool bf, int M, int K, int R, int S, int rows, int Wp, int cols, bool accumulate, bool bias,
                         bool relu, bool add, int neg) {
    int T = R * S, Mp = (M + 7) & ~7;
    int64_t P = ((int64_t)rows * Wp + 15) & ~15, ldb = (rows + R) * (int64_t)Wp + 16, ldc = P + 16;
    ptrdiff_t off[64], scratch[64 * 32];
    for (int t = 0; t < T; t++) off[t] = (ptrdiff_t)(t / S) * Wp + t % S - neg;
    int64_t na = (int64_t)Mp * T * K, nbuf = K * ldb + 64, nc = Mp * ldc, plane = (int64_t)rows * cols;
    float *A = NULL, *Bbuf = NULL, *Aa = NULL, *Ba = NULL, *C = randv(nc, 0), *yold = randv(M * plane, 0);
    uint32_t *A2 = NULL, *B2 = NULL;
    if (bf) A2 = rand_pairs(na), B2 = rand_pairs(nbuf);
    else A = randv(na, 0), Bbuf = randv(nbuf, 0);
    float *bv = randv(M, 0);
    for (int m = M; m < Mp; m++) /* A's padding rows are zeros */
        for (int q = 0; q < T * K; q++) {
            int64_t at = ((m / 8) * T * K + q) * 8 + m % 8;
            if (bf) A2[at] = 0;
            else A[at] = 0.0f;
        }
    uint16_t mask[256];
    int32_t at[256];
    for (int64_t g = 0; g < P / 16; g++) { /* which lanes of each 16-column group are real, where the first goes */
        mask[g] = 0, at[g] = 0;
        for (int l = 15; l >= 0; l--) {
            int64_t p = g * 16 + l;
            if (p < (int64_t)rows * Wp && p % Wp < cols)
                mask[g] |= (uint16_t)(1u << l), at[g] = (int32_t)(p / Wp * cols + p % Wp);
        }
    }
    float *y = copyv(yold, M * plane), *want = copyv(C, nc), *bound = copyv(C, nc); /* bound: the sum of |terms| */
    float *tol = malloc((size_t)nc * sizeof *tol);
    tg__shift_out out = {y, plane, bias ? bv : NULL, relu, add, mask, at};
    bool wrote;
    if (bf) {
        wrote = tg__shifted_gemm_bf16(C, ldc, &out, A2, B2 + 32, ldb, off, M, (int)P, K, T, accumulate, scratch);
        tg__shifted_gemm_bf16_ref(want, ldc, NULL, A2, B2 + 32, ldb, off, M, (int)P, K, T, accumulate, scratch);
    } else {
        Aa = absv(A, na), Ba = absv(Bbuf, nbuf);
        wrote = tg__shifted_gemm(C, ldc, &out, A, Bbuf + 32, ldb, off, M, (int)P, K, T, accumulate, scratch);
        tg__shifted_gemm_ref(want, ldc, NULL, A, Bbuf + 32, ldb, off, M, (int)P, K, T, accumulate, scratch);
        tg__shifted_gemm_ref(bound, ldc, NULL, Aa, Ba + 32, ldb, off, M, (int)P, K, T, false, scratch);
    }
    /* float32: rounding of a T*K-term sum; bf16 sums in the reference's order (vdpbf16ps's), so bit for bit */
    for (int64_t i = 0; i < nc; i++)
        tol[i] = bf ? 0.0f
                    : (float)((2.0 * T * K + 8) * 1.2e-7 * (fabsf(bound[i]) + (accumulate ? fabsf(want[i]) : 0))) + 1e-30f;
    char what[128];
    snprintf(what, sizeof what, "shifted_gemm%s M %d K %d %dx%d grid %dx%d of %d%s%s%s%s shift -%d", bf ? "_bf16" : "",
             M, K, R, S, rows, Wp, cols, accumulate ? " accumulate" : "", bias ? " bias" : "", relu ? " relu" : "",
             add ? " add" : "", neg);
    CHECK(!wrote || ((bf ? tg__bf16_supported() : tg__isa() == TG_ISA_AVX512) && !accumulate));
    if (!wrote) {
        CHECK_INT(count_far(what, C, want, tol, nc), 0);
        CHECK_INT(count_differ(what, y, yold, M * plane), 0); /* y untouched */
    } else { /* y = relu(C + bias (+ y)) at the real lanes */
        float *wy = malloc((size_t)(M * plane) * sizeof *wy), *ty = malloc((size_t)(M * plane) * sizeof *ty);
        for (int m = 0; m < M; m++)
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++) {
                    int64_t p = (int64_t)r * Wp + c, o = m * plane + (int64_t)r * cols + c;
                    float v = want[m * ldc + p] + (bias ? bv[m] : 0.0f);
                    if (add) v += yold[o];
                    wy[o] = relu && v <= 0.0f ? 0.0f : v;
                    ty[o] = bf ? 0.0f : tol[m * ldc + p] + 1.2e-7f * (fabsf(v) + (add ? fabsf(yold[o]) : 0));
                }
        CHECK_INT(count_far(what, y, wy, ty, M * plane), 0);
        free(wy), free(ty);
    }
    free(A), free(Bbuf), free(A2), free(B2), free(C), free(yold), free(bv), free(y), free(want);
    free(bound), free(Aa), free(Ba), free(tol);
}

/* tg__shifted_gemm_nt: C (M, K*T) over G images */
static void shifted_nt_case(int M, int K, int T, int G, int P, bool accumulate) {
    ptrdiff_t off[32], lda = P + 5, ldb = P + 40, a_img = M * lda + 3, b_img = K * ldb + 7;
    for (int t = 0; t < T; t++) off[t] = irand(0, 40);
    int64_t na = G * a_img, nb = G * b_img, nc = (int64_t)M * K * T;
    float *A = randv(na, 0), *B = randv(nb, 0), *C = randv(nc, 0), *want = copyv(C, nc), *bound = copyv(C, nc);
    float *Aa = absv(A, na), *Ba = absv(B, nb), *tol = malloc((size_t)nc * sizeof *tol);
    tg__shifted_gemm_nt(C, A, lda, a_img, B, ldb, b_img, off, M, P, K, T, G, accumulate);
    tg__shifted_gemm_nt_ref(want, A, lda, a_img, B, ldb, b_img, off, M, P, K, T, G, accumulate);
    tg__shifted_gemm_nt_ref(bound, Aa, lda, a_img, Ba, ldb, b_img, off, M, P, K, T, G, false);
    for (int64_t i = 0; i < nc; i++)
        tol[i] = (float)((2.0 * G * P + 8) * 1.2e-7 * (fabsf(bound[i]) + (accumulate ? fabsf(want[i]) : 0))) + 1e-30f;
    char what[96];
    snprintf(what, sizeof what, "shifted_gemm_nt M %d K %d T %d G %d P %d%s", M, K, T, G, P,
             accumulate ? " accumulate" : "");
    CHECK_INT(count_far(what, C, want, tol, nc), 0);
    free(A), free(B), free(C), free(want), free(bound), free(Aa), free(Ba), free(tol);
}

/* x (G images of Cn channels, H0 x W0) laid out by tg__pad_blocked (bit for bit
 * as the reference), then the blocked weight gradient of an R x S kernel with A
 * on the Ho x Wo output grid (rows Wp wide), within rounding */
static void blocked_case(int M, int Cn, int H0, int W0, int pad, int R, int S, int G, bool accumulate) {
    int Hp = H0 + 2 * pad, Wp = W0 + 2 * pad, Ho = Hp - R + 1, Wo = Wp - S + 1, T = R * S, blocks = (Cn + 15) / 16;
    ptrdiff_t ldx = (ptrdiff_t)Hp * Wp * 16, x_img = blocks * ldx, lda = (ptrdiff_t)Ho * Wp + 3, a_img = M * lda + 5;
    ptrdiff_t off[64];
    for (int t = 0; t < T; t++) off[t] = (ptrdiff_t)(t / S) * Wp + t % S;
    size_t xbytes = (size_t)(G * x_img) * sizeof(float); /* a multiple of 64 */
    float *X = aligned_alloc(64, xbytes), *Xr = aligned_alloc(64, xbytes);
    memset(X, 0, xbytes), memset(Xr, 0, xbytes);
    float *x = randv((int64_t)G * Cn * H0 * W0, 20);
    for (int g = 0; g < G; g++) {
        tg__pad_blocked(X + g * x_img, ldx, x + (int64_t)g * Cn * H0 * W0, Cn, H0, W0, Wp, pad);
        tg__pad_blocked_ref(Xr + g * x_img, ldx, x + (int64_t)g * Cn * H0 * W0, Cn, H0, W0, Wp, pad);
    }
    char what[128];
    snprintf(what, sizeof what, "pad_blocked C %d %dx%d pad %d", Cn, H0, W0, pad);
    CHECK_INT(count_differ(what, X, Xr, G * x_img), 0);
    for (int64_t i = 0; i < G * x_img; i++) /* no specials in the product */
        if (!isfinite(X[i]) || fabsf(X[i]) > 1) X[i] = 0.5f;
    int64_t na = G * a_img, nc = (int64_t)M * Cn * T;
    float *A = randv(na, 0), *C = randv(nc, 0), *want = copyv(C, nc), *bound = copyv(C, nc), *Aa = absv(A, na);
    float *Xa = absv(X, G * x_img), *tol = malloc((size_t)nc * sizeof *tol), *C0 = copyv(C, nc);
    tg__shifted_wgt_blocked(C, A, lda, a_img, X, ldx, x_img, off, M, Ho, Wo, Wp, Cn, T, G, accumulate);
    tg__shifted_wgt_blocked_ref(want, A, lda, a_img, X, ldx, x_img, off, M, Ho, Wo, Wp, Cn, T, G, accumulate);
    tg__shifted_wgt_blocked_ref(bound, Aa, lda, a_img, Xa, ldx, x_img, off, M, Ho, Wo, Wp, Cn, T, G, false);
    for (int64_t i = 0; i < nc; i++)
        tol[i] = (float)((2.0 * G * Ho * Wo + 8) * 1.2e-7 * (fabsf(bound[i]) + (accumulate ? fabsf(want[i]) : 0))) +
                 1e-30f;
    snprintf(what, sizeof what, "shifted_wgt_blocked M %d C %d %dx%d kernel %dx%d G %d%s", M, Cn, Ho, Wo, R, S, G,
             accumulate ? " accumulate" : "");
    CHECK_INT(count_far(what, C, want, tol, nc), 0);
    if (Wo % 2 == 0) { /* bf16 on pairs of pixels made as conv.c makes them: bit for bit (the reference's order) */
        int64_t nx = G * x_img;
        uint32_t *X2 = malloc((size_t)nx * sizeof *X2), *A2 = malloc((size_t)na * sizeof *A2);
        tg__bf16_pairs(X2, X, X + 16, nx - 16);
        tg__bf16_pairs(X2 + nx - 16, X + nx - 16, NULL, 16);
        tg__bf16_pairs(A2, A, A + 1, na - 1);
        tg__bf16_pairs(A2 + na - 1, A + na - 1, NULL, 1);
        float *C2 = copyv(C0, nc), *want2 = copyv(C0, nc);
        tg__shifted_wgt_blocked_bf16(C2, A2, lda, a_img, X2, ldx, x_img, off, M, Ho, Wo, Wp, Cn, T, G, accumulate);
        tg__shifted_wgt_blocked_bf16_ref(want2, A2, lda, a_img, X2, ldx, x_img, off, M, Ho, Wo, Wp, Cn, T, G,
                                         accumulate);
        snprintf(what, sizeof what, "shifted_wgt_blocked_bf16 M %d C %d %dx%d kernel %dx%d G %d%s", M, Cn, Ho, Wo, R,
                 S, G, accumulate ? " accumulate" : "");
        CHECK_INT(count_differ(what, C2, want2, nc), 0);
        free(X2), free(A2), free(C2), free(want2);
    }
    free(X), free(Xr), free(x), free(A), free(C), free(C0), free(want), free(bound), free(Aa), free(Xa), free(tol);
}

static void shifted(void) {
    static const int ms[] = {1, 5, 8, 13, 19}, ks[] = {1, 3, 16, 21};
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++) {
            int R = irand(1, 3), S = irand(1, 3), Wp = irand(3, 20), rows = irand(1, 6);
            for (int bf = 0; bf < 2; bf++) { /* float32, then bf16 pairs */
                shifted_case(bf, ms[i], ks[j], R, S, rows, Wp, irand(1, Wp), (i + j) % 3 == 0, false, false, false,
                             0);
                /* forward: bias and ReLU into y; dx: negative shifts, added into y or stored */
                shifted_case(bf, ms[i], ks[j], R, S, rows, Wp, irand(1, Wp), false, (i + j) % 2, (i + j) % 3 != 1,
                             false, 0);
                int cols = irand(1, Wp);
                shifted_case(bf, ms[i], ks[j], R, S, rows, Wp, cols, false, false, false, j % 2, irand(1, 20));
            }
        }
    shifted_case(false, 16, 32, 3, 3, 28, 30, 28, false, true, true, false, 0); /* the resnet's 28x28 block */
    shifted_case(true, 64, 16, 3, 3, 24, 26, 24, false, true, true, false, 0);  /* lenet's second conv, in bf16 */
    for (int i = 0; i < 12; i++) {
        int M = irand(1, 9), K = irand(1, 7), T = irand(1, 9), G = irand(1, 3);
        shifted_nt_case(M, K, T, G, 16 * irand(1, 6), i % 3 == 0);
    }
    static const int bl[][8] = {/* M, C, H0, W0, pad, R, S, G */
                                {1, 1, 5, 6, 1, 3, 3, 1},  {2, 5, 4, 4, 0, 2, 3, 2}, {3, 16, 6, 5, 1, 3, 3, 1},
                                {5, 26, 5, 7, 1, 3, 3, 2}, {7, 40, 4, 4, 2, 5, 5, 1}, {4, 17, 3, 9, 0, 1, 7, 1},
                                {6, 32, 6, 6, 1, 3, 3, 3}, {9, 48, 5, 5, 1, 3, 3, 1}, {5, 26, 5, 8, 1, 3, 3, 2},
                                {8, 32, 10, 10, 0, 3, 3, 2}};
    for (size_t i = 0; i < sizeof bl / sizeof *bl; i++)
        blocked_case(bl[i][0], bl[i][1], bl[i][2], bl[i][3], bl[i][4], bl[i][5], bl[i][6], bl[i][7], i % 2 == 1);
}

// ----------------------------------------------------------------------------
// the conv's layouts: im2col, col2im, row copies

static void im2col(void) {
    for (int i = 0; i < 40; i++) {
        tg__conv_dims d = {0};
        d.Cg = irand(1, 3), d.H = irand(1, 9), d.W = irand(1, 9), d.R = irand(1, 3), d.S = irand(1, 3);
        d.stride = irand(1, 3), d.pad = irand(0, 3), d.dil = irand(1, 2);
        int Hp = d.H + 2 * d.pad - d.dil * (d.R - 1), Wp = d.W + 2 * d.pad - d.dil * (d.S - 1);
        if (Hp < 1 || Wp < 1) continue;
        d.Ho = (Hp - 1) / d.stride + 1, d.Wo = (Wp - 1) / d.stride + 1, d.rows = (int64_t)d.Cg * d.R * d.S;
        int64_t nx = (int64_t)d.Cg * d.H * d.W, ncol = d.rows * d.Ho * d.Wo;
        float *x = randv(nx, 5), *col = randv(ncol, 0), *want = randv(ncol, 0);
        int before = check_failures;
        tg__im2col(col, x, &d);
        tg__im2col_ref(want, x, &d);
        char what[96];
        snprintf(what, sizeof what, "C %d %dx%d kernel %dx%d stride %d pad %d dilation %d", d.Cg, d.H, d.W, d.R, d.S,
                 d.stride, d.pad, d.dil);
        CHECK_INT(count_differ("im2col", col, want, ncol), 0);
        float *dx = randv(nx, 0), *dxw = copyv(dx, nx);
        tg__col2im(dx, col, &d);
        tg__col2im_ref(dxw, col, &d);
        CHECK_INT(count_differ("col2im", dx, dxw, nx), 0);
        if (check_failures > before) fprintf(stderr, "  (im2col/col2im %s)\n", what);
        free(x), free(col), free(want), free(dx), free(dxw);
    }
}

static void copy_rows(void) {
    for (int mode = TG_ROWS_COPY; mode <= TG_ROWS_MASK; mode++)
        for (int i = 0; i < 12; i++) {
            int rows = irand(1, 5), w = i < 10 ? irand(1, 20) : 37;
            ptrdiff_t sd = w + irand(0, 4), ss = w + irand(0, 4);
            float *src = randv(rows * ss, 4), *keep = randv(rows * ss, 4), *dst = randv(rows * sd, 4);
            float *want = copyv(dst, rows * sd), bias = i % 3 ? frand() : specials[i % N_SPECIALS];
            tg__copy_rows(dst, sd, src, ss, mode == TG_ROWS_MASK ? keep : NULL, rows, w, mode, bias);
            tg__copy_rows_ref(want, sd, src, ss, mode == TG_ROWS_MASK ? keep : NULL, rows, w, mode, bias);
            char what[64];
            snprintf(what, sizeof what, "copy_rows mode %d %dx%d", mode, rows, w);
            CHECK_INT(count_differ(what, dst, want, rows * sd), 0);
            free(src), free(keep), free(dst), free(want);
        }
}

// ----------------------------------------------------------------------------
// pooling

/* tg__relu_unpool against its reference, for the argmax of P planes of 2x2 pooling:
 * pooled values below, at and above zero, -0, NaN (which passes, as through tg_relu),
 * a gradient of -0; into rows 3 floats wider than the plane, whose gap stays as it was */
static void relu_unpool(const int32_t *arg, int P, int H, int W, int Ho, int Wo) {
    int ld = W + 3;
    for (int p = 0; p < P; p++) {
        const int32_t *a = arg + (int64_t)p * Ho * Wo;
        float *dy = randv((int64_t)Ho * Wo, 0), *pv = randv((int64_t)Ho * Wo, 0);
        for (int o = 0; o < Ho * Wo; o++) {
            if (o % 5 == 1) pv[o] = 0.0f;
            if (o % 7 == 2) pv[o] = -0.0f;
            if (o % 11 == 3) pv[o] = NAN;
            if (o % 13 == 4) dy[o] = -0.0f;
        }
        float *dx = randv((int64_t)H * ld, 0), *want = copyv(dx, (int64_t)H * ld);
        tg__relu_unpool(dx, ld, dy, a, pv, H, W, Ho, Wo);
        tg__relu_unpool_ref(want, ld, dy, a, pv, H, W, Ho, Wo);
        char what[64];
        snprintf(what, sizeof what, "relu_unpool %dx%d", H, W);
        CHECK_INT(count_differ(what, dx, want, (int64_t)H * ld), 0);
        float *dense = randv((int64_t)H * W, 0), *wd = copyv(dense, (int64_t)H * W); /* ld = W, as one run */
        tg__relu_unpool_dense(dense, (int64_t)H * W, dy, a, pv, (int64_t)Ho * Wo);
        tg__relu_unpool_ref(wd, W, dy, a, pv, H, W, Ho, Wo);
        snprintf(what, sizeof what, "relu_unpool_dense %dx%d", H, W);
        CHECK_INT(count_differ(what, dense, wd, (int64_t)H * W), 0);
        free(dy), free(pv), free(dx), free(want), free(dense), free(wd);
    }
}

static void pooling(void) {
    static const int cfg[][3] = {{2, 2, 0}, {2, 2, 0}, {3, 2, 1}, {3, 1, 1}, {2, 1, 0}, {5, 3, 2}};
    for (size_t c = 0; c < sizeof cfg / sizeof *cfg; c++)
        for (int i = 0; i < 8; i++) {
            int k = cfg[c][0], s = cfg[c][1], pad = cfg[c][2], P = irand(1, 3);
            /* 33: two whole vectors of windows; 28, 23: a last vector overlapping the one before;
             * 14, 15, 5: fewer than eight windows a row, read within the plane, then copied */
            static const int widths[8] = {33, 28, 23, 14, 15, 5, 0, 0};
            int H = irand(k, 19), W = widths[i] ? widths[i] : irand(k, 19);
            int Ho = (H + 2 * pad - k) / s + 1, Wo = (W + 2 * pad - k) / s + 1;
            int64_t nx = (int64_t)P * H * W, ny = (int64_t)P * Ho * Wo;
            float *x = randv(nx, c == 1 ? 3 : 0);
            for (int64_t j = 0; c == 0 && j < nx; j++) x[j] = (float)irand(0, 2); /* ties */
            float *y = randv(ny, 0), *yw = randv(ny, 0);
            int32_t *arg = malloc((size_t)ny * sizeof *arg), *argw = malloc((size_t)ny * sizeof *argw);
            tg__max_pool2d(y, arg, x, P, H, W, Ho, Wo, k, s, pad);
            tg__max_pool2d_ref(yw, argw, x, P, H, W, Ho, Wo, k, s, pad);
            char what[96];
            snprintf(what, sizeof what, "max_pool2d %dx%d kernel %d stride %d pad %d", H, W, k, s, pad);
            CHECK_INT(count_differ(what, y, yw, ny), 0);
            CHECK(memcmp(arg, argw, (size_t)ny * sizeof *arg) == 0);
            float *yp = randv(ny, 0);
            int32_t *argp = malloc((size_t)ny * sizeof *argp);
            tg__max_pool2d_planes(yp, argp, x, P, H, W, Ho, Wo, k, s, pad); /* the same, on one thread */
            CHECK_INT(count_differ(what, yp, yw, ny), 0);
            CHECK(memcmp(argp, argw, (size_t)ny * sizeof *argp) == 0);
            free(yp), free(argp);
            if (k == 2 && s == 2) relu_unpool(arg, P, H, W, Ho, Wo);
            for (int set = 0; set < 2; set++) {
                float *dy = randv(ny, 0), *dx = randv(nx, 0), *dxw = copyv(dx, nx);
                tg__max_pool2d_backward(dx, dy, arg, P, H, W, Ho, Wo, k, s, pad, set);
                tg__max_pool2d_backward_ref(dxw, dy, arg, P, H, W, Ho, Wo, k, s, pad, set);
                snprintf(what, sizeof what, "max_pool2d backward %dx%d kernel %d stride %d pad %d%s", H, W, k, s, pad,
                         set ? " set" : "");
                CHECK_INT(count_differ(what, dx, dxw, nx), 0);
                free(dy), free(dx), free(dxw);
            }
            free(x), free(y), free(yw), free(arg), free(argw);
        }
    /* average pooling, by hand: a 4x4 plane, 2x2 windows; the global mean */
    float x[16], y[4], dx[16] = {0}, dy[4] = {1, 2, 3, 4}, m;
    for (int i = 0; i < 16; i++) x[i] = (float)i;
    tg__avg_pool2d(y, x, 1, 4, 4, 2, 2, 2, 2, 0);
    CHECK(y[0] == 2.5f && y[1] == 4.5f && y[2] == 10.5f && y[3] == 12.5f);
    tg__avg_pool2d_backward(dx, dy, 1, 4, 4, 2, 2, 2, 2, 0);
    CHECK(dx[0] == 0.25f && dx[5] == 0.25f && dx[2] == 0.5f && dx[15] == 1.0f);
    tg__global_avg_pool(&m, x, 1, 16);
    CHECK(m == 7.5f);
}

// ----------------------------------------------------------------------------
// batch normalisation

static const int lens[] = {0, 1, 7, 8, 9, 15, 16, 17, 33, 100, 1003};
#define N_LENS (int)(sizeof lens / sizeof *lens)

static void bn_loops(void) {
    for (int li = 0; li < N_LENS; li++)
        for (int sp = 0; sp < 2; sp++) { /* sp: specials among the inputs */
            int64_t n = lens[li];
            int odds = sp ? 5 : 0;
            float *x = randv(n, odds), *y = randv(n, odds), *b = randv(n, odds), m = frand();
            char what[64];
            snprintf(what, sizeof what, "bn n %lld%s", (long long)n, sp ? " specials" : "");
            CHECK(same_double(tg__bn_sum(x, n), tg__bn_sum_ref(x, n)));
            double s1, s1r, s2 = tg__bn_devs(&s1, x, n, m), s2r = tg__bn_devs_ref(&s1r, x, n, m);
            CHECK(same_double(s2, s2r) && same_double(s1, s1r));
            /* the ReLU's output as the forward computes it from b, and the same recomputed (rx) */
            tg__bn_relu rx = {1.7f, -0.8f, 0.1f};
            float *yb = randv(n, 0);
            tg__bn_normalize(yb, b, NULL, n, m, rx.rstd, rx.gamma, rx.beta, true);
            for (int v = 0; v < 8; v++) { /* with y, rx or neither, and ds or not; ds stored or added */
                double sa = 0.5, sab = -0.25, sa2 = 0.5, sab2 = -0.25;
                float *ds = v & 2 ? randv(n, odds) : NULL, *dsw = ds ? copyv(ds, n) : NULL;
                const float *yv = v & 1 ? y : NULL;
                const tg__bn_relu *r = v & 4 ? &rx : NULL;
                if (v & 4 && v & 1) yv = yb; /* against rx below */
                tg__bn_dot(&sa, &sab, ds, x, v & 4 ? NULL : yv, b, m, n, v == 3 || v == 7, r);
                tg__bn_dot_ref(&sa2, &sab2, dsw, x, yv, b, m, n, v == 3 || v == 7, v & 1 ? NULL : r);
                CHECK(same_double(sa, sa2) && same_double(sab, sab2));
                if (ds) CHECK_INT(count_differ(what, ds, dsw, n), 0);
                free(ds), free(dsw);
            }
            for (int v = 0; v < 4; v++) { /* with or without the shortcut, the ReLU */
                float *o = randv(n, 0), *ow = copyv(o, n);
                tg__bn_normalize(o, x, v & 1 ? b : NULL, n, m, 1.7f, -0.8f, 0.1f, v & 2);
                tg__bn_normalize_ref(ow, x, v & 1 ? b : NULL, n, m, 1.7f, -0.8f, 0.1f, v & 2);
                CHECK_INT(count_differ(what, o, ow, n), 0);
                free(o), free(ow);
            }
            float *yx = randv(n, 0); /* the ReLU's output from x, for dx */
            tg__bn_normalize(yx, x, NULL, n, m, rx.rstd, rx.gamma, rx.beta, true);
            for (int v = 0; v < 8; v++) { /* with the ReLU's output, rx or neither; stored or added */
                float *dx = randv(n, odds), *dxw = copyv(dx, n);
                const float *yv = v & 1 ? (v & 4 ? yx : y) : NULL;
                const tg__bn_relu *r = v & 4 ? &rx : NULL;
                tg__bn_dx(dx, b, v & 4 ? NULL : yv, x, n, 0.3f, 64.0f, 1.5f, -2.5f, m, 1.7f, v & 2, r);
                tg__bn_dx_ref(dxw, b, yv, x, n, 0.3f, 64.0f, 1.5f, -2.5f, m, 1.7f, v & 2, v & 1 ? NULL : r);
                CHECK_INT(count_differ(what, dx, dxw, n), 0);
                free(dx), free(dxw);
            }
            free(x), free(y), free(b), free(yb), free(yx);
        }
}

/* Chan's update, written out again: (mean, m2) of n values joined by nb more; the first join (n 0)
 * takes the second set's as they are */
static double chan_join(double *mean, double *m2, double n, double mb, double m2b, double nb) {
    if (n == 0) {
        *mean = mb, *m2 = m2b;
        return nb;
    }
    double t = n + nb, d = mb - *mean;
    *mean += d * (nb / t);
    *m2 += m2b + d * d * (n * nb / t);
    return t;
}

/* The statistics read x once, so they must stay exact where a one-pass sum of squares fails: a
 * mean far above the spread (1000 + a spread of 1e-3: E[x^2] - E[x]^2 in double would keep about
 * 3 digits of it), against the two-pass sums in long double */
static void bn_stats_accuracy(void) {
    enum { N = 9, C = 3, L = 101 };
    static float x[N * C * L];
    double stat[2 * C], part[4 * TG_BN_CHUNKS * C];
    for (int i = 0; i < N * C * L; i++) /* channel 1 about 1000, channel 2 about -3 */
        x[i] = (i / L % C == 1 ? 1000.0f : i / L % C == 2 ? -3.0f : 0.0f) + 1e-3f * frand();
    tg__bn_stats(stat, stat + C, part, x, N, C, L, NULL);
    for (int c = 0; c < C; c++) {
        long double s = 0, q = 0;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < L; j++) s += x[(i * C + c) * L + j];
        long double m = s / (N * L);
        for (int i = 0; i < N; i++)
            for (int j = 0; j < L; j++) q += (x[(i * C + c) * L + j] - m) * (x[(i * C + c) * L + j] - m);
        long double v = q / (N * L);
        CHECK_NEAR(stat[c], (double)m, 1e-9 * (fabs((double)m) + 1));
        CHECK_NEAR(stat[C + c], (double)v, 1e-6 * (double)v);
    }
}

/* The whole-tensor kernels against the run loops' references in the same chunks
 * (the sums bit for bit), with 1 and 2 threads */
static void bn_tensor(void) {
    static const int shapes[][3] = {{2, 3, 17}, {20, 5, 49}, {37, 4, 9}, {64, 16, 196}};
    for (int si = 0; si < 4; si++)
        for (int th = 1; th <= 2; th++) {
            tg_set_threads(th);
            int64_t N = shapes[si][0], C = shapes[si][1], L = shapes[si][2], n = N * C * L;
            int chunks = N < TG_BN_CHUNKS ? (int)N : TG_BN_CHUNKS;
            float *x = randv(n, 0), *dy = randv(n, 0), *y = randv(n, 0), *sc = randv(n, 0);
            double *stat = malloc((size_t)(2 * C) * sizeof *stat);
            double *part = malloc((size_t)(2 * TG_BN_CHUNKS * C) * sizeof *part);
            double *want = calloc((size_t)(2 * C), sizeof *want);
            float *mean = malloc((size_t)C * sizeof *mean), *rstd = malloc((size_t)C * sizeof *rstd);
            float *gamma = randv(C, 0), *beta = randv(C, 0), *coef = randv(4 * C, 0);
            tg__bn_stats(stat, stat + C, part, x, N, C, L, NULL);
            for (int64_t c = 0; c < C; c++) { /* each run's mean and deviations, joined run after run */
                double m = 0, q = 0, cnt = 0;
                for (int k = 0; k < chunks; k++) {
                    double mk = 0, qk = 0, nk = 0;
                    for (int64_t i = N * k / chunks; i < N * (k + 1) / chunks; i++) {
                        const float *r = x + (i * C + c) * L;
                        float a = (float)(tg__bn_sum_ref(r, L) / L);
                        double s1, s2 = tg__bn_devs_ref(&s1, r, L, a);
                        nk = chan_join(&mk, &qk, nk, a + s1 / L, s2 - s1 * s1 / L, (double)L);
                    }
                    cnt = chan_join(&m, &q, cnt, mk, qk, nk);
                }
                want[c] = m, want[C + c] = q / cnt;
            }
            CHECK(memcmp(stat, want, (size_t)(2 * C) * sizeof *stat) == 0);
            for (int64_t c = 0; c < C; c++) mean[c] = (float)stat[c], rstd[c] = (float)(1 / sqrt(stat[C + c] + 1e-5));
            float *o = randv(n, 0), *ow = randv(n, 0), *ds = randv(n, 0), *dsw = copyv(ds, n);
            tg__bn_forward(o, x, sc, mean, rstd, gamma, beta, N, C, L, true, NULL);
            for (int64_t i = 0; i < N; i++)
                for (int64_t c = 0; c < C; c++) {
                    int64_t q = (i * C + c) * L;
                    tg__bn_normalize_ref(ow + q, x + q, sc + q, L, mean[c], rstd[c], gamma[c], beta[c], true);
                }
            CHECK_INT(count_differ("bn_forward", o, ow, n), 0);
            tg__bn_backward_sums(stat, stat + C, ds, part, dy, y, x, mean, NULL, N, C, L, false, NULL, NULL);
            for (int64_t c = 0; c < C; c++) {
                double s1 = 0, s2 = 0;
                for (int k = 0; k < chunks; k++) {
                    double p1 = 0, p2 = 0;
                    for (int64_t i = N * k / chunks; i < N * (k + 1) / chunks; i++) {
                        int64_t q = (i * C + c) * L;
                        tg__bn_dot_ref(&p1, &p2, dsw + q, dy + q, y + q, x + q, mean[c], L, false, NULL);
                    }
                    s1 += p1, s2 += p2;
                }
                CHECK(same_double(stat[c], s1) && same_double(stat[C + c], s2));
            }
            CHECK_INT(count_differ("bn_backward_sums ds", ds, dsw, n), 0);
            tg__bn_backward_dx(o, dy, y, x, coef, mean, rstd, NULL, N, C, L, true, NULL);
            for (int64_t i = 0; i < N; i++)
                for (int64_t c = 0; c < C; c++) {
                    int64_t q = (i * C + c) * L;
                    tg__bn_dx_ref(ow + q, dy + q, y + q, x + q, L, coef[c], coef[C + c], coef[2 * C + c],
                                  coef[3 * C + c], mean[c], rstd[c], true, NULL);
                }
            CHECK_INT(count_differ("bn_backward_dx", o, ow, n), 0);
            /* the fused ReLU's mask recomputed from x (rg) against the forward's output read */
            float *rg = malloc(3 * (size_t)C * sizeof *rg), *dsx = randv(n, 0);
            for (int64_t c = 0; c < C; c++) rg[c] = rstd[c], rg[C + c] = gamma[c], rg[2 * C + c] = beta[c];
            tg__bn_forward(y, x, NULL, mean, rstd, gamma, beta, N, C, L, true, NULL);
            double *st2 = malloc((size_t)(2 * C) * sizeof *st2);
            tg__bn_backward_sums(stat, stat + C, ds, part, dy, y, x, mean, NULL, N, C, L, true, NULL, NULL);
            tg__bn_backward_sums(st2, st2 + C, dsx, part, dy, NULL, x, mean, rg, N, C, L, true, NULL, NULL);
            CHECK(memcmp(stat, st2, (size_t)(2 * C) * sizeof *stat) == 0);
            CHECK_INT(count_differ("bn_backward_sums, ReLU from x", dsx, ds, n), 0);
            tg__bn_backward_dx(o, dy, y, x, coef, mean, rstd, NULL, N, C, L, true, NULL);
            tg__bn_backward_dx(ow, dy, NULL, x, coef, mean, rstd, rg, N, C, L, true, NULL);
            CHECK_INT(count_differ("bn_backward_dx, ReLU from x", ow, o, n), 0);
            free(rg), free(dsx), free(st2);
            free(x), free(dy), free(y), free(sc), free(stat), free(part), free(want), free(mean), free(rstd);
            free(gamma), free(beta), free(coef), free(o), free(ow), free(ds), free(dsw);
        }
    tg_set_threads(0);
}

// ----------------------------------------------------------------------------
// memory-bound elementwise loops

static void elementwise(void) {
    for (int li = 0; li < N_LENS; li++)
        for (int sp = 0; sp < 2; sp++) {
            int64_t n = lens[li];
            int odds = sp ? 4 : 0;
            float *a = randv(n, odds), *b = randv(n, odds), *y = randv(n, odds);
            char what[64];
            snprintf(what, sizeof what, "n %lld%s", (long long)n, sp ? " specials" : "");
            for (int v = 0; v < 4; v++) { /* relu, add, add+relu, copy */
                float *o = randv(n, 0), *ow = copyv(o, n);
                tg__add_relu(o, a, v & 1 ? b : NULL, n, !(v & 2));
                tg__add_relu_ref(ow, a, v & 1 ? b : NULL, n, !(v & 2));
                CHECK_INT(count_differ(what, o, ow, n), 0);
                free(o), free(ow);
            }
            for (int v = 0; v < 4; v++) { /* relu backward with or without y, stored or added */
                float *dx = randv(n, odds), *dxw = copyv(dx, n);
                tg__relu_backward(dx, a, v & 1 ? y : NULL, n, v & 2);
                tg__relu_backward_ref(dxw, a, v & 1 ? y : NULL, n, v & 2);
                CHECK_INT(count_differ(what, dx, dxw, n), 0);
                free(dx), free(dxw);
            }
            static const uint32_t belows[] = {0, 1u << 31, 3435973836u, 4294967295u};
            for (int v = 0; v < 4; v++) { /* dropout at several offsets, keys and rates */
                int64_t i0 = v == 3 ? 4294967290LL : 8192 * v + 3;
                uint64_t key = 0x9e3779b97f4a7c15ull * (uint64_t)(v + 1);
                float s = v ? 1.0f / (1.0f - 0.25f * v) : 1.0f;
                float *o = randv(n, 0), *ow = randv(n, 0);
                uint8_t *mk = malloc((size_t)n + 1), *mkw = malloc((size_t)n + 1);
                tg__dropout(o, mk, a, n, i0, key, belows[v], s);
                tg__dropout_ref(ow, mkw, a, n, i0, key, belows[v], s);
                CHECK_INT(count_differ(what, o, ow, n), 0);
                CHECK(memcmp(mk, mkw, (size_t)n) == 0);
                for (int w = 0; w < 4; w++) {
                    float *dx = randv(n, odds), *dxw = copyv(dx, n);
                    tg__dropout_backward(dx, b, w & 1 ? mk : NULL, n, s, w & 2);
                    tg__dropout_backward_ref(dxw, b, w & 1 ? mk : NULL, n, s, w & 2);
                    CHECK_INT(count_differ(what, dx, dxw, n), 0);
                    free(dx), free(dxw);
                }
                free(o), free(ow), free(mk), free(mkw);
            }
            free(a), free(b), free(y);
        }
}

/* Every case of the update, bit for bit, and the exponent it reports */
static void sgd(void) {
    static const float opts[][4] = {/* lr, weight decay, momentum, dampening */
                                    {0.05f, 0, 0, 0}, {0.05f, 5e-4f, 0, 0}, {0.1f, 0, 0.9f, 0},
                                    {0.05f, 5e-4f, 0.9f, 0}, {0.01f, 1e-2f, 0.8f, 0.3f}};
    for (int li = 0; li < N_LENS; li++)
        for (size_t oi = 0; oi < sizeof opts / sizeof *opts; oi++)
            for (int v = 0; v < 8; v++) { /* v: first step, Nesterov, a non-finite gradient */
                int64_t n = lens[li];
                bool mom = opts[oi][2] != 0, nesterov = (v & 2) && mom && opts[oi][3] == 0, bad = v & 4;
                float *p = randv(n, 0), *g = randv(n, 0), *buf = mom ? randv(n, 0) : NULL;
                if (bad && n) {
                    int at = irand(0, (int)n - 1);
                    g[at] = specials[irand(0, 3)];
                }
                float *pw = copyv(p, n), *bufw = buf ? copyv(buf, n) : NULL;
                uint32_t e = tg__sgd_update(p, buf, g, n, opts[oi][0], opts[oi][1], opts[oi][2], opts[oi][3], nesterov,
                                            v & 1);
                uint32_t ew = tg__sgd_update_ref(pw, bufw, g, n, opts[oi][0], opts[oi][1], opts[oi][2], opts[oi][3],
                                                 nesterov, v & 1);
                char what[64];
                snprintf(what, sizeof what, "sgd n %lld case %zu/%d", (long long)n, oi, v);
                CHECK_INT(e, ew);
                CHECK_INT(e == 0x7f800000u, bad && n);
                CHECK(memcmp(p, pw, (size_t)n * sizeof *p) == 0 || count_differ(what, p, pw, n) == 0);
                if (buf) CHECK(memcmp(buf, bufw, (size_t)n * sizeof *p) == 0 || count_differ(what, buf, bufw, n) == 0);
                free(p), free(g), free(buf), free(pw), free(bufw);
            }
}

static void probe(void) {
    for (int li = 0; li < N_LENS; li++) {
        int64_t n = lens[li];
        float *x = randv(n, 0);
        CHECK(tg__nonfinite_probe(x, n) == 0.0f && tg__nonfinite_probe_ref(x, n) == 0.0f);
        for (int64_t j = 0; j < n; j += n > 40 ? 37 : 1) /* one bad value at each position (vector lanes, tail) */
            for (int s = 0; s < 4; s++) {
                float keep = x[j];
                x[j] = specials[s];
                CHECK(isnan(tg__nonfinite_probe(x, n)) && isnan(tg__nonfinite_probe_ref(x, n)));
                x[j] = keep;
            }
        x[n ? n - 1 : 0] = n ? 3e38f : 0; /* large but finite */
        CHECK(tg__nonfinite_probe(x, n) == 0.0f);
        free(x);
    }
}

/* tg__bf16_pairs: the reference bit for bit (specials and ties in lanes and tails, b NULL),
 * and the rounding on values PyTorch 1.13 printed:
 *   x = torch.tensor([1.00390625, 1.01171875, 1.0039063, -3.0e38, 1e-40, 1.0, -0.0, 2.0, float('inf')])
 *   [v & 0xffff for v in x.bfloat16().view(torch.int16).tolist()]
 *   -> [16256, 16258, 16256, 65378, 1, 16256, 32768, 16384, 32640]
 * (ties to even both ways, 1.0039063 is the float 1.00390625, a subnormal kept) */
static void bf16_pairs(void) {
    for (int li = 0; li < N_LENS; li++) {
        int64_t n = lens[li];
        float *a = randv(n, 5), *b = randv(n, 5);
        uint32_t *d = malloc((size_t)(n + 1) * 4), *w = malloc((size_t)(n + 1) * 4);
        for (int nb = 0; nb < 2; nb++) {
            tg__bf16_pairs(d, a, nb ? NULL : b, n);
            tg__bf16_pairs_ref(w, a, nb ? NULL : b, n);
            int64_t bad = 0;
            for (int64_t i = 0; i < n; i++) bad += d[i] != w[i];
            CHECK_INT(bad, 0);
        }
        free(a), free(b), free(d), free(w);
    }
    /* the specials in every lane of full vectors and of a tail: the kernel against the reference */
    uint32_t bits[] = {0x3f808000u, 0x3f818000u, 0x3f80ffffu, 0xff61c3f8u, 0x000116c2u, 0x7fc00000u, 0x7f800001u,
                       0xffa00000u, 0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7f7fffffu, 0x7f7f8000u,
                       0x007fffffu, 0x80008000u, 0x3f7f8000u, 0x3f7e8000u};
    enum { NS = sizeof bits / sizeof *bits, NSP = 3 * 16 + 5 };
    float sa[NSP], sb[NSP];
    uint32_t sd[NSP], sw[NSP];
    for (int i = 0; i < NSP; i++) {
        memcpy(&sa[i], &bits[i % NS], 4);
        memcpy(&sb[i], &bits[(i * 7 + 3) % NS], 4);
    }
    for (int nb = 0; nb < 2; nb++) {
        tg__bf16_pairs(sd, sa, nb ? NULL : sb, NSP);
        tg__bf16_pairs_ref(sw, sa, nb ? NULL : sb, NSP);
        CHECK(!memcmp(sd, sw, sizeof sd));
    }
    /* pixel pairs (each float rounded once for steps 1 and 16): specials, then random floats of every
     * length, steps past the end included */
    static const int steps[] = {1, 3, 16, 17, 60};
    for (size_t si = 0; si < sizeof steps / sizeof *steps; si++) {
        int step = steps[si];
        tg__bf16_pixel_pairs(sd, sa, NSP, step);
        tg__bf16_pixel_pairs_ref(sw, sa, NSP, step);
        CHECK(!memcmp(sd, sw, sizeof sd));
        for (int li = 0; li < N_LENS; li++) {
            int64_t n = lens[li];
            float *x = randv(n, 5);
            uint32_t *d = malloc((size_t)(n + 1) * 4), *w = malloc((size_t)(n + 1) * 4);
            tg__bf16_pixel_pairs(d, x, n, step);
            tg__bf16_pixel_pairs_ref(w, x, n, step);
            int64_t bad = 0;
            for (int64_t i = 0; i < n; i++) bad += d[i] != w[i];
            CHECK_INT(bad, 0);
            free(x), free(d), free(w);
        }
    }
    float lo[6] = {1.00390625f, 1.01171875f, 1.0039063f, -3.0e38f, 1e-40f, NAN}, hi[6] = {0, -0.0f, 1, 2, INFINITY, 0};
    uint32_t d[6];
    tg__bf16_pairs(d, lo, hi, 6);
    CHECK(d[0] == 16256u && d[1] == (16258u | 32768u << 16) && d[2] == (16256u | 16256u << 16));
    CHECK(d[3] == (65378u | 16384u << 16) && d[4] == (1u | 32640u << 16));
    CHECK((d[5] & 0x7f80u) == 0x7f80u && (d[5] & 0x7fu) != 0 && (d[5] & 0x40u)); /* a quiet NaN */
}

/* Winograd's image kernel: x ends where its allocation ends (a read past the tensor is
 * AddressSanitizer's), y sits between guards (a store past the planes changes them); spread:
 * x's rows and planes apart by more than their length, as the conv's padded dy; add: onto y */
static void winograd_case(int C, int K, int H, int W, int pad, bool bias, bool relu, bool nan, bool spread, bool add) {
    tg__conv_dims d = {.N = 1, .C = C, .H = H, .W = W, .K = K, .R = 3, .S = 3, .G = 1, .Cg = C, .Kg = K,
                       .stride = 1, .pad = pad, .dil = 1, .rows = (int64_t)C * 9};
    d.Ho = H + 2 * pad - 2, d.Wo = W + 2 * pad - 2;
    ptrdiff_t ldr = spread ? W + 5 : W, ldp = spread ? (H + 3) * ldr + 1 : (ptrdiff_t)H * W;
    int64_t nx = C * ldp, ny = (int64_t)K * d.Ho * d.Wo, guard = 64;
    float *x = randv(nx, 0), *w = randv((int64_t)K * C * 9, 0), *b = bias ? randv(K, 0) : NULL;
    if (nan) x[nx / 2] = NAN, x[1] = -0.0f;
    float *U = aligned_alloc(64, (tg__winograd_weights_floats(&d) * sizeof(float) + 63) / 64 * 64);
    float *buf = aligned_alloc(64, (tg__winograd_floats(&d) * sizeof(float) + 63) / 64 * 64);
    float *y = randv(ny + 2 * guard, 0), *want = copyv(y, ny + 2 * guard), *y0 = copyv(y, ny + 2 * guard);
    tg__winograd_weights(U, w, &d, false);
    tg__winograd_images(y + guard, 0, x, 0, 1, 0, ldp, ldr, U, b, relu, add, &d, buf);
    tg__winograd_image_ref(want + guard, x, ldp, ldr, U, b, relu, add, &d);
    char what[112];
    snprintf(what, sizeof what, "winograd C %d K %d %dx%d pad %d%s%s%s%s%s", C, K, H, W, pad, bias ? " bias" : "",
             relu ? " relu" : "", nan ? " NaN" : "", spread ? " spread" : "", add ? " add" : "");
    CHECK_INT(count_differ(what, y, want, ny + 2 * guard), 0);
    /* the reference against the direct sum */
    double e = 0, scale = 1e-6;
    for (int k = 0; k < K; k++)
        for (int oy = 0; oy < d.Ho; oy++)
            for (int ox = 0; ox < d.Wo; ox++) {
                double s = b ? b[k] : 0;
                for (int c = 0; c < C; c++)
                    for (int r = 0; r < 3; r++)
                        for (int q = 0; q < 3; q++) {
                            int iy = oy + r - pad, ix = ox + q - pad;
                            if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                                s += (double)x[c * ldp + iy * ldr + ix] * w[((int64_t)k * C + c) * 9 + r * 3 + q];
                        }
                if (relu && s <= 0) s = 0;
                int64_t at = guard + ((int64_t)k * d.Ho + oy) * d.Wo + ox;
                if (add) s += y0[at];
                if (nan) continue;
                e = fabs(want[at] - s) > e ? fabs(want[at] - s) : e;
                scale = fabs(s) > scale ? fabs(s) : scale;
            }
    /* F(4x4)'s transforms scale by up to 8 and add more terms than F(2x2)'s: up to 5e-6 here, where a
     * wrong transform is off by more than 1e-2 */
    if (!nan && e / scale > 1e-5) fprintf(stderr, "%s: reference %.3g from the direct sum\n", what, e / scale);
    CHECK(nan || e / scale <= 1e-5);
    /* flipped: U of the input gradient's conv, from the forward's w (K,C,3,3) read as (C,K) turned */
    tg__conv_dims t = d;
    t.C = t.Cg = K, t.K = t.Kg = C;
    float *wt = malloc((size_t)K * C * 9 * sizeof *wt);
    for (int k = 0; k < K; k++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < 9; i++) wt[((int64_t)c * K + k) * 9 + i] = w[((int64_t)k * C + c) * 9 + 8 - i];
    float *Ut = aligned_alloc(64, (tg__winograd_weights_floats(&t) * sizeof(float) + 63) / 64 * 64);
    float *Uf = aligned_alloc(64, (tg__winograd_weights_floats(&t) * sizeof(float) + 63) / 64 * 64);
    tg__winograd_weights(Ut, wt, &t, false);
    tg__winograd_weights(Uf, w, &t, true);
    CHECK_INT(count_differ("winograd flipped weights", Uf, Ut, (int64_t)tg__winograd_weights_floats(&t)), 0);
    /* the weights under this instruction set against the plain loop's */
    char isa[16];
    snprintf(isa, sizeof isa, "%s", tg__isa_name());
    CHECK_INT(tg__isa_use("generic"), 0);
    tg__winograd_weights(Ut, w, &t, true);
    CHECK_INT(tg__isa_use(isa), 0);
    CHECK_INT(count_differ("winograd weights, plain loop", Uf, Ut, (int64_t)tg__winograd_weights_floats(&t)), 0);
    free(x), free(w), free(b), free(U), free(buf), free(y), free(want), free(y0), free(wt), free(Ut), free(Uf);
}

/* Winograd's weight gradient over n images. dy's planes are rows Wo+2 wide with zeros in column
 * Wo and row Ho, and NaN past them (what the kernel must not use), or (tight) Ho x Wo planes one
 * after the other, as the conv keeps dy; the last image's last plane ends where its allocation
 * ends. x padded in blocks of 16 channels on the kernel's grid */
static void winograd_wgrad_case(int C, int K, int H, int W, int pad, int n, bool nan, bool tight) {
    tg__conv_dims d = {.N = n, .C = C, .H = H, .W = W, .K = K, .R = 3, .S = 3, .G = 1, .Cg = C, .Kg = K,
                       .stride = 1, .pad = pad, .dil = 1, .rows = (int64_t)C * 9};
    d.Ho = H + 2 * pad - 2, d.Wo = W + 2 * pad - 2;
    int Hx, Wx;
    tg__winograd_wgrad_grid(&d, &Hx, &Wx);
    CHECK(Hx == (d.Ho + 3) / 4 * 4 + 2 && Wx == (d.Wo + 3) / 4 * 4 + 2);
    ptrdiff_t ldqr = tight ? d.Wo : d.Wo + 2, ldq = tight ? d.Ho * ldqr : (d.Ho + 2) * ldqr + 32, q_img = K * ldq;
    ptrdiff_t ldx = (ptrdiff_t)Hx * Wx * 16, x_img = (C + 15) / 16 * ldx;
    float *x = randv((int64_t)n * C * H * W, 0), *dq = malloc((size_t)n * q_img * sizeof *dq);
    float *xb = aligned_alloc(64, (size_t)n * x_img * sizeof *xb);
    memset(xb, 0, (size_t)n * x_img * sizeof *xb);
    for (int i = 0; i < n; i++) tg__pad_blocked_ref(xb + i * x_img, ldx, x + (int64_t)i * C * H * W, C, H, W, Wx, pad);
    for (int64_t i = 0; i < n * q_img; i++) {
        int64_t r = i % ldq / ldqr, col = i % ldq % ldqr;
        dq[i] = r < d.Ho && col < d.Wo ? frand() : r <= d.Ho && col <= d.Wo ? 0.0f : NAN;
    }
    if (nan) xb[x_img + (2 * Wx + 3) * 16 + 1] = NAN, dq[ldqr + 1] = -0.0f, dq[q_img - ldq + 2] = INFINITY;
    size_t nb = (tg__winograd_wgrad_floats(&d) * sizeof(float) + 63) / 64 * 64;
    float *buf = aligned_alloc(64, nb), *dw = randv((int64_t)K * C * 9, 0), *want = randv((int64_t)K * C * 9, 0);
    tg__winograd_wgrad(dw, dq, ldq, ldqr, q_img, xb, ldx, x_img, n, &d, buf);
    tg__winograd_wgrad_ref(want, dq, ldq, ldqr, q_img, xb, ldx, x_img, n, &d, buf);
    char what[96];
    snprintf(what, sizeof what, "winograd wgrad C %d K %d %dx%d pad %d, %d images%s", C, K, H, W, pad, n,
             nan ? ", NaN -0 Inf" : "");
    CHECK_INT(count_differ(what, dw, want, (int64_t)K * C * 9), 0);
    /* the reference against the direct sum over the images */
    double e = 0, scale = 1e-6;
    for (int k = 0; k < K; k++)
        for (int c = 0; c < C; c++)
            for (int r = 0; r < 3; r++)
                for (int q = 0; q < 3; q++) {
                    double sum = 0;
                    for (int i = 0; i < n; i++)
                        for (int oy = 0; oy < d.Ho; oy++)
                            for (int ox = 0; ox < d.Wo; ox++) {
                                int iy = oy + r - pad, ix = ox + q - pad;
                                if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                                    sum += (double)dq[i * q_img + k * ldq + oy * ldqr + ox] *
                                           x[(((int64_t)i * C + c) * H + iy) * W + ix];
                            }
                    float got = want[((int64_t)k * C + c) * 9 + r * 3 + q];
                    e = fabs(got - sum) > e ? fabs(got - sum) : e;
                    scale = fabs(sum) > scale ? fabs(sum) : scale;
                }
    /* F(4x4)'s E reaches 225 times dY and V 100 times x before G^T's 1/6 and 1/24 cancel them:
     * 1e-6 to 1.01e-5 of the largest sum on these cases (F(2x2) stayed under 2e-6); a wrong
     * transform is off by more than 1e-2 */
    if (!nan && e / scale > 2e-5) fprintf(stderr, "%s: reference %.3g from the direct sum\n", what, e / scale);
    CHECK(nan || e / scale <= 2e-5);
    free(x), free(dq), free(xb), free(buf), free(dw), free(want);
}

/* Winograd over n images in one call (vectors of tiles that span two images), against the
 * reference image by image: x's images apart by more than their planes, y's between guards */
static void winograd_images_case(int C, int K, int H, int pad, int n, bool add) {
    tg__conv_dims d = {.N = n, .C = C, .H = H, .W = H, .K = K, .R = 3, .S = 3, .G = 1, .Cg = C, .Kg = K,
                       .stride = 1, .pad = pad, .dil = 1, .rows = (int64_t)C * 9};
    d.Ho = d.Wo = H + 2 * pad - 2;
    ptrdiff_t ldp = (ptrdiff_t)H * H, x_img = C * ldp + 37, y_img = (ptrdiff_t)K * d.Ho * d.Wo + 21;
    int64_t nx = n * x_img, ny = n * y_img, guard = 64;
    float *x = randv(nx, 0), *w = randv((int64_t)K * C * 9, 0), *b = randv(K, 0);
    float *U = aligned_alloc(64, (tg__winograd_weights_floats(&d) * sizeof(float) + 63) / 64 * 64);
    float *buf = aligned_alloc(64, (tg__winograd_floats(&d) * sizeof(float) + 63) / 64 * 64);
    float *y = randv(ny + 2 * guard, 0), *want = copyv(y, ny + 2 * guard);
    tg__winograd_weights(U, w, &d, false);
    tg__winograd_images(y + guard, y_img, x, x_img, n, 0, ldp, H, U, b, true, add, &d, buf);
    for (int i = 0; i < n; i++)
        tg__winograd_image_ref(want + guard + i * y_img, x + i * x_img, ldp, H, U, b, true, add, &d);
    char what[96];
    snprintf(what, sizeof what, "winograd C %d K %d %dx%d pad %d, %d images a call%s", C, K, H, H, pad, n,
             add ? " add" : "");
    CHECK_INT(count_differ(what, y, want, ny + 2 * guard), 0);
    free(x), free(w), free(b), free(U), free(buf), free(y), free(want);
}

/* whether conv d (3x3 unless r, one group unless g) goes through Winograd: only on AVX-512 */
static void winograd_fits(int C, int K, int H, int W, int pad, int r, int stride, int dil, int g, bool want) {
    tg__conv_dims d = {.N = 2, .C = C, .H = H, .W = W, .K = K, .R = r, .S = r, .G = g, .Cg = C / g, .Kg = K / g,
                       .stride = stride, .pad = pad, .dil = dil, .rows = (int64_t)C / g * r * r};
    d.Ho = (H + 2 * pad - dil * (r - 1) - 1) / stride + 1, d.Wo = (W + 2 * pad - dil * (r - 1) - 1) / stride + 1;
    bool got = tg__winograd_fits(&d), expect = want && !strcmp(tg__isa_name(), "avx512");
    if (got != expect)
        fprintf(stderr, "winograd_fits C %d K %d %dx%d pad %d kernel %d stride %d dilation %d groups %d: %d, want %d\n",
                C, K, H, W, pad, r, stride, dil, g, got, expect);
    CHECK(got == expect);
    /* the weight gradient: where the forward goes */
    CHECK(tg__winograd_wgrad_fits(&d) == expect);
}

/* the images a call for an HxH input: the fewest whose rows of tiles fill an even number of vectors */
static void winograd_batch(int H, int pad, int want) {
    tg__conv_dims d = {.N = 64, .C = 16, .H = H, .W = H, .K = 16, .R = 3, .S = 3, .G = 1, .Cg = 16, .Kg = 16,
                       .stride = 1, .pad = pad, .dil = 1, .rows = 16 * 9};
    d.Ho = d.Wo = H + 2 * pad - 2;
    int got = tg__winograd_batch(&d);
    if (got != want) fprintf(stderr, "winograd_batch %dx%d pad %d: %d, want %d\n", H, H, pad, got, want);
    CHECK_INT(got, want);
}

static void winograd(void) {
    winograd_batch(28, 1, 4); /* 7 rows of tiles, two a vector: 4 images in 14 vectors */
    winograd_batch(14, 1, 2); /* 4 rows, four a vector */
    winograd_batch(12, 0, 8); /* 3 rows, four a vector */
    winograd_batch(26, 0, 2); /* lenet's: 6 rows, two a vector */
    winograd_batch(9, 1, 8);  /* 3 rows (the last one real row), four a vector */
    winograd_fits(16, 16, 28, 28, 1, 3, 1, 1, 1, true);
    winograd_fits(32, 64, 26, 26, 0, 3, 1, 1, 1, true);   /* lenet's forward */
    winograd_fits(64, 32, 24, 24, 2, 3, 1, 1, 1, true);   /* its input gradient: 64 channels in */
    winograd_fits(256, 16, 7, 7, 1, 3, 1, 1, 1, true);    /* 256 channels in, the most */
    winograd_fits(257, 16, 14, 14, 1, 3, 1, 1, 1, false); /* 257 */
    winograd_fits(15, 16, 28, 28, 1, 3, 1, 1, 1, false);  /* too few channels in */
    winograd_fits(16, 15, 28, 28, 1, 3, 1, 1, 1, false);  /* too few out */
    winograd_fits(16, 16, 28, 28, 3, 3, 1, 1, 1, false);  /* pad 3 */
    winograd_fits(16, 16, 28, 28, 1, 5, 1, 1, 1, false);  /* 5x5 */
    winograd_fits(16, 16, 28, 28, 1, 3, 2, 1, 1, false);  /* stride 2 */
    winograd_fits(16, 16, 28, 28, 2, 3, 1, 2, 1, false);  /* dilation 2 */
    winograd_fits(32, 32, 28, 28, 1, 3, 1, 1, 2, false);  /* groups */
    winograd_fits(16, 16, 32, 32, 1, 3, 1, 1, 1, true);   /* 32 across, the widest */
    winograd_fits(16, 16, 33, 33, 1, 3, 1, 1, 1, false);  /* 33 across */
    winograd_fits(16, 16, 16, 16, 1, 3, 1, 1, 1, true);   /* 16 across: two rows of tiles a vector */
    winograd_fits(16, 16, 18, 18, 0, 3, 1, 1, 1, false);  /* 16 out but 18 in: too wide for two rows */
    winograd_fits(16, 16, 5, 5, 0, 3, 1, 1, 1, false);    /* a 3x3 output */
    winograd_fits(32, 64, 9, 9, 1, 3, 1, 1, 1, true);     /* 9x9 out: the forward only */
    winograd_fits(32, 64, 7, 7, 1, 3, 1, 1, 1, true);     /* the speedrun's third conv: the forward only */
    winograd_case(16, 16, 28, 28, 1, false, false, false, false, false); /* the resnet's: two rows of 7 tiles a vector */
    winograd_case(32, 32, 14, 14, 1, false, false, false, true, true);   /* four rows of 4 a vector, the last columns past */
    winograd_case(17, 20, 15, 21, 1, true, true, false, false, false);   /* odd sizes, K not a multiple of 8 */
    winograd_case(16, 24, 13, 13, 0, true, false, false, false, true);   /* unpadded: 11x11, the last tiles 3x3 real */
    winograd_case(16, 16, 9, 16, 1, true, true, true, false, false);     /* 16 across, NaN and -0 */
    winograd_case(16, 8, 34, 32, 0, false, true, false, true, false);    /* the widest rows, 30 outputs across */
    winograd_case(18, 16, 6, 6, 0, true, false, false, false, false);    /* a 4x4 output: one tile */
    winograd_case(16, 16, 30, 17, 1, true, false, true, false, true);    /* 17 across: 5 tiles, one column real */
    winograd_case(64, 32, 24, 24, 2, false, false, false, true, true);   /* lenet's input gradient */
    winograd_case(130, 16, 7, 7, 1, true, true, false, false, false);    /* 130 channels in, 7x7 */
    winograd_case(20, 16, 10, 10, 2, false, false, false, true, true);   /* pad 2, four rows a vector, one empty */
    winograd_case(16, 17, 12, 30, 1, false, false, false, true, true);   /* 30 across, added */
    winograd_images_case(32, 32, 14, 1, 2, false); /* the resnet's 14x14: an image a vector */
    winograd_images_case(16, 24, 12, 0, 4, true);  /* 10x10 out, 3 rows of tiles: 4 images in 3 vectors, added */
    winograd_images_case(16, 16, 9, 1, 3, false);  /* 9x9: the last row of tiles one row real, 3 images */
    winograd_images_case(16, 16, 28, 1, 2, true);  /* the resnet's 28x28: 7 rows of tiles, 2 images in 7 vectors */
    winograd_wgrad_case(16, 16, 28, 28, 1, 3, false, false); /* the resnet's: 49 tiles, an image a group */
    winograd_wgrad_case(32, 32, 14, 14, 1, 2, false, false); /* 16 tiles an image, both in one group */
    winograd_wgrad_case(16, 32, 14, 14, 1, 6, false, false); /* the resnet's widening conv: groups of 4 and 2 */
    winograd_wgrad_case(32, 64, 13, 13, 0, 2, false, false); /* lenet's conv2 shape, unpadded: 11x11, odd */
    winograd_wgrad_case(17, 20, 15, 21, 1, 2, false, false); /* odd sizes, C and K past a block */
    winograd_wgrad_case(48, 20, 10, 10, 1, 2, false, false); /* 3 blocks of C: a pair, then one alone */
    winograd_wgrad_case(24, 16, 32, 32, 1, 1, false, false); /* 32 across, the widest */
    winograd_wgrad_case(16, 16, 9, 16, 2, 2, true, false);   /* pad 2, 16 across, NaN, -0 and Inf */
    winograd_wgrad_case(16, 24, 6, 6, 0, 3, false, false);   /* a 4x4 output: one tile */
    winograd_wgrad_case(16, 16, 28, 28, 1, 2, false, true);  /* dy where the conv keeps it: planes Ho x Wo, tight */
    winograd_wgrad_case(32, 32, 14, 14, 1, 2, true, true);   /* the same at 14x14 */
    winograd_wgrad_case(16, 16, 13, 11, 0, 2, false, true);  /* odd sizes: the rows past Ho are the next plane's */
    winograd_wgrad_case(16, 16, 11, 20, 0, 2, false, true);  /* the same, 18 across: two loads a row */
}

// ----------------------------------------------------------------------------

int main(void) {
    CHECK_INT(tg__isa_use("no such set"), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "no such set");
    CHECK_INT(tg__isa_use(NULL), 0);
    const char *best = tg__isa_name();
    static const char *sets[] = {"avx512", "avx2", "generic"};
    static const struct {
        const char *name;
        void (*run)(void);
    } groups[] = {{"gemm", gemm},         {"shifted", shifted}, {"im2col", im2col},   {"copy_rows", copy_rows},
                  {"pooling", pooling},   {"bn_loops", bn_loops}, {"bn_tensor", bn_tensor},
                  {"bn_stats_accuracy", bn_stats_accuracy},
                  {"elementwise", elementwise}, {"sgd", sgd},  {"probe", probe}, {"bf16_pairs", bf16_pairs},
                  {"winograd", winograd}};
    for (int i = 0; i < 3; i++) {
        if (tg__isa_use(sets[i]) < 0) {
            CHECK_MSG(tg_last_error(), sets[i]);
            printf("%s: not on this CPU, skipped\n", sets[i]);
            continue;
        }
        CHECK(!strcmp(tg__isa_name(), sets[i]));
        printf("%s:", sets[i]);
        for (size_t g = 0; g < sizeof groups / sizeof *groups; g++) {
            int before = check_failures;
            groups[g].run();
            printf(" %s %s", groups[g].name, check_failures == before ? "ok" : "FAILED");
            fflush(stdout);
        }
        printf("\n");
    }
    CHECK_INT(tg__isa_use(NULL), 0);
    CHECK(!strcmp(tg__isa_name(), best));
    CHECK_DONE();
}
