/* bench_gemm.c: GFLOP/s of the GEMM behind conv and linear, on the shapes a
 * small CNN on MNIST uses, with 1 and 2 threads (median of several runs).
 *
 *   ./bench_gemm            the best kernel this CPU has
 *   ./bench_gemm avx2       force a kernel: avx512, avx2 or generic */
#include "kernels/kernels.h"
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *what;
    bool ta, tb;
    int M, N, K;
} shape;

static const shape shapes[] = {
    /* conv forward, per image: Y(Cout, HW) = W(Cout, C*R*S) col(C*R*S, HW) */
    {"conv fwd", 0, 0, 16, 784, 9},
    {"conv fwd", 0, 0, 16, 784, 144},
    {"conv fwd", 0, 0, 32, 196, 144},
    {"conv fwd", 0, 0, 32, 196, 288},
    {"conv fwd", 0, 0, 32, 676, 9},
    {"conv fwd", 0, 0, 64, 576, 288},
    /* conv backward: dW += dY col^T */
    {"conv dW", 0, 1, 16, 9, 784},
    {"conv dW", 0, 1, 16, 144, 784},
    {"conv dW", 0, 1, 32, 144, 196},
    {"conv dW", 0, 1, 32, 288, 196},
    {"conv dW", 0, 1, 32, 9, 676},
    {"conv dW", 0, 1, 64, 288, 576},
    /* conv backward: dcol = W^T dY */
    {"conv dcol", 1, 0, 9, 784, 16},
    {"conv dcol", 1, 0, 144, 784, 16},
    {"conv dcol", 1, 0, 144, 196, 32},
    {"conv dcol", 1, 0, 288, 196, 32},
    {"conv dcol", 1, 0, 9, 676, 32},
    {"conv dcol", 1, 0, 288, 576, 64},
    /* linear forward, x(64, I) w(O, I)^T */
    {"linear fwd", 0, 1, 64, 128, 9216},
    {"linear fwd", 0, 1, 64, 512, 784},
    {"linear fwd", 0, 1, 64, 10, 128},
    {"linear fwd", 0, 1, 64, 10, 1568},
    /* linear backward: dx = dy w */
    {"linear dx", 0, 0, 64, 9216, 128},
    {"linear dx", 0, 0, 64, 784, 512},
    {"linear dx", 0, 0, 64, 128, 10},
    {"linear dx", 0, 0, 64, 1568, 10},
    /* linear backward: dw = dy^T x */
    {"linear dw", 1, 0, 128, 9216, 64},
    {"linear dw", 1, 0, 512, 784, 64},
    {"linear dw", 1, 0, 10, 128, 64},
    {"linear dw", 1, 0, 10, 1568, 64},
    /* a big square one, for reference */
    {"square", 0, 0, 1024, 1024, 1024},
};

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median GFLOP/s over 7 runs, each long enough (about 20 ms) to time well. */
static double bench(const shape *s, const float *A, const float *B, float *C) {
    int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    double flops = 2.0 * s->M * s->N * s->K, rate[7];
    int reps = 1;
    for (;;) { /* calibrate, warming up the caches and packing buffers too */
        double t0 = tg__now();
        for (int r = 0; r < reps; r++) tg__sgemm(C, s->N, A, lda, B, ldb, s->M, s->N, s->K, s->ta, s->tb, 1, 0);
        if (tg__now() - t0 > 0.02) break;
        reps *= 2;
    }
    for (int i = 0; i < 7; i++) {
        double t0 = tg__now();
        for (int r = 0; r < reps; r++) tg__sgemm(C, s->N, A, lda, B, ldb, s->M, s->N, s->K, s->ta, s->tb, 1, 0);
        rate[i] = flops * reps / (tg__now() - t0) * 1e-9;
    }
    qsort(rate, 7, sizeof *rate, cmp_double);
    return rate[3];
}

int main(int argc, char **argv) {
    if (argc > 1 && tg__isa_use(argv[1]) < 0) {
        fprintf(stderr, "bench_gemm: %s\n---> HINT: try avx512, avx2 or generic\n", tg_last_error());
        return 1;
    }
    size_t most = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const shape *s = &shapes[i];
        size_t m = (size_t)s->M * s->K > (size_t)s->K * s->N ? (size_t)s->M * s->K : (size_t)s->K * s->N;
        if ((size_t)s->M * s->N > m) m = (size_t)s->M * s->N;
        if (m > most) most = m;
    }
    float *A = malloc(most * sizeof *A), *B = malloc(most * sizeof *B), *C = malloc(most * sizeof *C);
    if (!A || !B || !C) {
        fprintf(stderr, "bench_gemm: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < most; i++) A[i] = (float)(i % 17) * 0.1f - 0.8f, B[i] = (float)(i % 13) * 0.1f - 0.6f;

    printf("kernel %s, GFLOP/s (median of 7)\n", tg__isa_name());
    printf("%-11s %5s %5s %5s %2s %2s  %8s %8s\n", "what", "M", "N", "K", "tA", "tB", "1 thread", "2 threads");
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const shape *s = &shapes[i];
        tg_set_threads(1);
        double g1 = bench(s, A, B, C);
        tg_set_threads(2);
        double g2 = bench(s, A, B, C);
        printf("%-11s %5d %5d %5d %2d %2d  %8.1f %8.1f\n", s->what, s->M, s->N, s->K, s->ta, s->tb, g1, g2);
        fflush(stdout);
    }
    free(A);
    free(B);
    free(C);
    return 0;
}
