/* test_gemm.c: tg__sgemm against a double-precision reference, for every
 * kernel this CPU has, all four transpose combinations, odd sizes, alpha and
 * beta, padded strides; bit-identical results for any thread count; and no
 * buffer left behind by a thread that exits. */
#include "check.h"
#include "kernels/kernels.h"
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static uint64_t rng = 42;

static float frand(void) { /* uniform in [-1, 1) */
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng >> 40) / (double)(1 << 24)) * 2.0f - 1.0f;
}

static int irand(int lo, int hi) { /* in [lo, hi] */
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (int)((rng >> 33) % (uint64_t)(hi - lo + 1));
}

static const float sentinel = 12345.0f;

/* A matrix of rows x cols with row stride ld (>= cols); the padding holds the sentinel. */
static float *matrix(int rows, int cols, int ld) {
    float *x = malloc((size_t)rows * ld * sizeof *x + 1);
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < ld; j++) x[(size_t)i * ld + j] = j < cols ? frand() : sentinel;
    return x;
}

typedef struct {
    bool ta, tb;
    int M, N, K, pad; /* pad: extra floats at the end of each row of A, B and C */
    float alpha, beta;
} gemm_case;

/* Runs one case and compares with the reference; returns the number of bad elements. */
static int run_case(const gemm_case *g) {
    int ar = g->ta ? g->K : g->M, ac = g->ta ? g->M : g->K;
    int br = g->tb ? g->N : g->K, bc = g->tb ? g->K : g->N;
    int lda = ac + g->pad, ldb = bc + g->pad, ldc = g->N + g->pad;
    float *A = matrix(ar, ac, lda), *B = matrix(br, bc, ldb), *C = matrix(g->M, g->N, ldc);
    float *C0 = malloc((size_t)g->M * ldc * sizeof *C0 + 1);
    if (g->beta == 0.0f) /* beta 0 must overwrite C, NaN included */
        for (int i = 0; i < g->M; i++)
            for (int j = 0; j < g->N; j++) C[(size_t)i * ldc + j] = NAN;
    memcpy(C0, C, (size_t)g->M * ldc * sizeof *C);
    tg__sgemm(C, ldc, A, lda, B, ldb, g->M, g->N, g->K, g->ta, g->tb, g->alpha, g->beta);
    int bad = 0;
    for (int i = 0; i < g->M; i++) {
        for (int j = 0; j < g->N; j++) {
            double s = 0, sabs = 0;
            for (int k = 0; k < g->K; k++) {
                double a = g->ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                double b = g->tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                s += a * b;
                sabs += fabs(a * b);
            }
            double c0 = C0[(size_t)i * ldc + j];
            double want = g->alpha * s + (g->beta == 0.0f ? 0.0 : g->beta * c0);
            double tol = (g->K + 4) * 1.2e-7 * (fabs(g->alpha) * sabs + (g->beta == 0.0f ? 0 : fabs(g->beta * c0)));
            double got = C[(size_t)i * ldc + j];
            if (!(fabs(got - want) <= tol + 1e-30)) {
                if (bad++ < 3)
                    fprintf(stderr, "gemm %s %s %dx%dx%d pad %d alpha %g beta %g: C[%d][%d] = %.9g, want %.9g\n",
                            g->ta ? "T" : "N", g->tb ? "T" : "N", g->M, g->N, g->K, g->pad, g->alpha, g->beta, i,
                            j, got, want);
            }
        }
        for (int j = g->N; j < ldc; j++)
            if (C[(size_t)i * ldc + j] != sentinel && bad++ < 3)
                fprintf(stderr, "gemm %dx%dx%d: wrote into the row padding of C\n", g->M, g->N, g->K);
    }
    free(A);
    free(B);
    free(C);
    free(C0);
    return bad;
}

static const float alphas[] = {1.0f, 1.0f, 1.0f, -0.75f, 2.0f};
static const float betas[] = {0.0f, 1.0f, 0.5f, 0.0f, 1.0f};

/* Odd sizes in all four transpose combinations, with every alpha/beta pair in turn. */
static void sizes(void) {
    int n = 0;
    for (int s = 1; s <= 70; s++) {
        for (int t = 0; t < 4; t++) {
            gemm_case g = {t & 1, t >> 1, s, s, s, (s + t) % 3 == 0 ? 0 : 3, alphas[n % 5], betas[n % 5]};
            n++;
            CHECK_INT(run_case(&g), 0);
            /* and one of random shape */
            gemm_case r = {t & 1, t >> 1, irand(1, 70), irand(1, 70), irand(1, 70), irand(0, 5), alphas[n % 5],
                           betas[n % 5]};
            n++;
            CHECK_INT(run_case(&r), 0);
        }
    }
    /* long sums (several K slices, also for the dot-product kernel), tall and wide blocks past MC and
     * NC, conv and linear-like shapes */
    static const int big[][3] = {{16, 784, 144}, {32, 196, 288}, {64, 128, 600}, {9, 97, 600},   {6, 10, 2100},
                                 {530, 40, 20},  {5, 4200, 9},   {67, 131, 513}, {144, 196, 32}, {40, 9, 1100}};
    for (size_t i = 0; i < sizeof big / sizeof *big; i++)
        for (int t = 0; t < 4; t++) {
            gemm_case g = {t & 1, t >> 1, big[i][0], big[i][1], big[i][2], t == 2 ? 7 : 0, alphas[n % 5],
                           betas[n % 5]};
            n++;
            CHECK_INT(run_case(&g), 0);
        }
}

/* alpha 0 or K 0: C = beta C and A, B are not read */
static void degenerate(void) {
    float A[4] = {NAN, NAN, NAN, NAN}, B[4] = {NAN, NAN, NAN, NAN};
    float C[4] = {1, 2, 3, 4};
    tg__sgemm(C, 2, A, 2, B, 2, 2, 2, 2, false, false, 0.0f, 0.5f);
    CHECK_NEAR(C[0], 0.5, 0);
    CHECK_NEAR(C[3], 2, 0);
    tg__sgemm(C, 2, A, 2, B, 2, 2, 2, 0, true, true, 1.0f, 2.0f);
    CHECK_NEAR(C[3], 4, 0);
    float D[4] = {NAN, NAN, NAN, NAN};
    tg__sgemm(D, 2, A, 2, B, 2, 2, 2, 0, false, true, 1.0f, 0.0f);
    CHECK_NEAR(D[1], 0, 0);
    tg__sgemm(D, 2, A, 2, B, 2, 0, 2, 2, false, false, 1.0f, 0.0f); /* M = 0: nothing */
}

// ----------------------------------------------------------------------------
// determinism

static const gemm_case det_cases[] = {
    {0, 0, 64, 576, 288, 0, 1.0f, 0.0f}, {0, 1, 64, 128, 2304, 0, 1.0f, 1.0f},
    {1, 0, 288, 576, 64, 0, 1.0f, 0.0f}, {0, 1, 32, 288, 196, 0, 1.0f, 1.0f},
    {1, 1, 77, 301, 530, 2, 0.5f, 0.5f}, {0, 0, 16, 784, 144, 0, 1.0f, 0.0f},
};

/* C of a case into out (M x ldc), from fixed inputs and a fixed C */
static void compute(const gemm_case *g, const float *A, const float *B, const float *C0, float *out) {
    int lda = (g->ta ? g->M : g->K) + g->pad, ldb = (g->tb ? g->K : g->N) + g->pad, ldc = g->N + g->pad;
    memcpy(out, C0, (size_t)g->M * ldc * sizeof *out);
    tg__sgemm(out, ldc, A, lda, B, ldb, g->M, g->N, g->K, g->ta, g->tb, g->alpha, g->beta);
}

static void threads(void) {
    int was = tg_get_threads();
    tg_set_threads(3);
#ifdef _OPENMP
    CHECK_INT(tg_get_threads(), 3);
#else
    CHECK_INT(tg_get_threads(), 1);
#endif
    tg_set_threads(0);
    CHECK(tg_get_threads() >= 1);
    for (size_t i = 0; i < sizeof det_cases / sizeof *det_cases; i++) {
        const gemm_case *g = &det_cases[i];
        int ar = g->ta ? g->K : g->M, ac = (g->ta ? g->M : g->K) + g->pad;
        int br = g->tb ? g->N : g->K, bc = (g->tb ? g->K : g->N) + g->pad;
        size_t nc = (size_t)g->M * (g->N + g->pad);
        float *A = matrix(ar, ac, ac), *B = matrix(br, bc, bc), *C0 = matrix(g->M, g->N + g->pad, g->N + g->pad);
        float *one = malloc(nc * sizeof *one), *two = malloc(nc * sizeof *two), *again = malloc(nc * sizeof *again);
        tg_set_threads(1);
        compute(g, A, B, C0, one);
        tg_set_threads(2);
        compute(g, A, B, C0, two);
        compute(g, A, B, C0, again);
        CHECK(memcmp(one, two, nc * sizeof *one) == 0);
        CHECK(memcmp(one, again, nc * sizeof *one) == 0);
#ifdef _OPENMP
        /* called from a parallel region, as conv does over images: each thread its own C */
        float *per[2] = {malloc(nc * sizeof(float)), malloc(nc * sizeof(float))};
#pragma omp parallel num_threads(2)
        {
            int t = omp_get_thread_num();
            if (t < 2) compute(g, A, B, C0, per[t]);
        }
        CHECK(memcmp(one, per[0], nc * sizeof *one) == 0);
        if (omp_get_max_threads() > 1) CHECK(memcmp(one, per[1], nc * sizeof *one) == 0);
        free(per[0]);
        free(per[1]);
#endif
        free(A);
        free(B);
        free(C0);
        free(one);
        free(two);
        free(again);
    }
    tg_set_threads(was);
}

/* After a first call of each size, the packing buffers are reused. */
static void no_malloc(void) {
    const gemm_case *g = &det_cases[0];
    float *A = matrix(g->M, g->K, g->K), *B = matrix(g->K, g->N, g->N), *C = matrix(g->M, g->N, g->N);
    for (int t = 1; t <= 2; t++) {
        tg_set_threads(t);
        tg__sgemm(C, g->N, A, g->K, B, g->N, g->M, g->N, g->K, false, false, 1, 0);
    }
    uint64_t before = tg__alloc_count();
    for (int r = 0; r < 3; r++)
        for (int t = 1; t <= 2; t++) {
            tg_set_threads(t);
            tg__sgemm(C, g->N, A, g->K, B, g->N, g->M, g->N, g->K, false, false, 1, 0);
            tg__sgemm(C, 30, A, 20, B, 40, 20, 30, 40, true, true, 1, 0); /* smaller: fits */
        }
    CHECK_INT(tg__alloc_count() - before, 0);
    tg_set_threads(0);
    free(A);
    free(B);
    free(C);
}

/* A product in a thread of the caller's that then exits: the same result as
 * on the main thread, and the thread's packing buffer freed with it (under
 * AddressSanitizer a buffer left behind is reported as a leak) */
enum { SL_M = 48, SL_N = 300, SL_K = 200 };
static void *short_lived(void *c) {
    const float *A = c, *B = A + SL_M * SL_K;
    float *C = (float *)B + SL_K * SL_N;
    tg__sgemm(C, SL_N, A, SL_K, B, SL_N, SL_M, SL_N, SL_K, false, false, 1, 0);
    return NULL;
}

static void short_lived_threads(void) {
    float *buf = malloc((SL_M * SL_K + SL_K * SL_N + SL_M * SL_N) * sizeof(float)), *want = malloc(SL_M * SL_N * sizeof(float));
    for (int i = 0; i < SL_M * SL_K + SL_K * SL_N; i++) buf[i] = frand();
    short_lived(buf);
    memcpy(want, buf + SL_M * SL_K + SL_K * SL_N, SL_M * SL_N * sizeof(float));
    int same = 1;
    for (int r = 0; r < 8; r++) {
        pthread_t th;
        memset(buf + SL_M * SL_K + SL_K * SL_N, 0, SL_M * SL_N * sizeof(float));
        CHECK_INT(pthread_create(&th, NULL, short_lived, buf), 0);
        CHECK_INT(pthread_join(th, NULL), 0);
        same &= memcmp(want, buf + SL_M * SL_K + SL_K * SL_N, SL_M * SL_N * sizeof(float)) == 0;
    }
    CHECK(same);
    free(buf);
    free(want);
}

int main(void) {
    CHECK_INT(tg__isa_use("no such kernel"), TG_ERR_ARG);
    static const char *kernels[] = {"avx512", "avx2", "generic"};
    for (int i = 0; i < 3; i++) {
        if (tg__isa_use(kernels[i]) < 0) {
            printf("%s: not on this CPU, skipped\n", kernels[i]);
            continue;
        }
        int before = check_failures;
        sizes();
        degenerate();
        threads();
        printf("%s: %s\n", kernels[i], check_failures == before ? "ok" : "FAILED");
    }
    tg__isa_use(NULL);
    no_malloc();
    short_lived_threads();
    CHECK_DONE();
}
