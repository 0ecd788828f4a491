/* isa.c: the one switch that picks the instruction set of every kernel.
 *
 * The best set the CPU has is found on the first kernel call; tg__isa_use
 * forces another (tests and benchmarks run each kernel under each set this
 * way) or goes back to the best. Kernels read the choice (tg__isa_now) on every
 * call, so a change applies to the next call of any kernel. It also measures
 * the machine's FMA peak (tg_fma_peak) under the set in use. */
#include "kernels.h"
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

static const char *const names[] = {"generic", "avx2", "avx512"}; /* by TG_ISA_* */

static bool supported(int isa) {
#if defined(__x86_64__)
    if (isa == TG_ISA_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512dq") && supported(TG_ISA_AVX2);
    if (isa == TG_ISA_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return isa == TG_ISA_GENERIC;
}

atomic_int tg__isa_now = -1;

static int best(void) {
    int b = TG_ISA_AVX512;
    while (!supported(b)) b--;
    return b;
}

int tg__isa_first(void) {
    int b = best(), none = -1;
    atomic_compare_exchange_strong(&tg__isa_now, &none, b); /* unless tg__isa_use came first */
    return atomic_load(&tg__isa_now);
}

const char *tg__isa_name(void) { return names[tg__isa()]; }

int tg__isa_use(const char *name) {
    if (!name) {
        atomic_store(&tg__isa_now, best());
        return 0;
    }
    for (int i = 0; i < (int)(sizeof names / sizeof *names); i++)
        if (!strcmp(names[i], name)) {
            if (!supported(i)) return tg_fail(TG_ERR_ARG, "isa_use: this CPU lacks %s", name);
            atomic_store(&tg__isa_now, i);
            return 0;
        }
    return tg_fail(TG_ERR_ARG, "isa_use: unknown instruction set \"%s\" (avx512, avx2 or generic)", name);
}

// ----------------------------------------------------------------------------
// float32 matmul precision, as PyTorch's torch.set_float32_matmul_precision

static const char *const precisions[] = {"highest", "high", "medium"};
static atomic_int precision_now; /* index into precisions; "medium" runs bf16 products where the CPU has them */

bool tg__bf16_supported(void) {
#if defined(__x86_64__)
    static atomic_int known = -1;
    int k = atomic_load_explicit(&known, memory_order_relaxed);
    if (k < 0) {
        k = __builtin_cpu_supports("avx512bf16") && supported(TG_ISA_AVX512);
        atomic_store(&known, k);
    }
    return k;
#else
    return false;
#endif
}

bool tg__bf16_active(void) {
    return atomic_load_explicit(&precision_now, memory_order_relaxed) == 2 && tg__isa() == TG_ISA_AVX512 &&
           tg__bf16_supported();
}

int tg_set_float32_matmul_precision(const char *precision) {
    if (!precision) return tg_fail(TG_ERR_ARG, "set_float32_matmul_precision: precision is NULL");
    for (int i = 0; i < 3; i++)
        if (!strcmp(precision, precisions[i])) {
            atomic_store(&precision_now, i);
            return 0;
        }
    return tg_fail(TG_ERR_ARG, "set_float32_matmul_precision: unknown precision \"%s\" (highest, high or medium)",
                   precision);
}

const char *tg_get_float32_matmul_precision(void) { return precisions[atomic_load(&precision_now)]; }

// ----------------------------------------------------------------------------
// the FMA peak: independent chains of fused multiply-adds of the widest vectors in use, on every thread


#define FMA_CHAINS 12 /* more than the FMA units times their latency: no chain waits on itself */

/* acc = acc * m + a on each chain: it settles near a / (1 - m), far from overflow and denormals.
 * Not instrumented by AddressSanitizer, which would keep the chains in memory instead of registers. */
#define FMA_PLAIN __attribute__((no_sanitize_address))
#if defined(__x86_64__)
TG_TARGET_AVX512 FMA_PLAIN static float fma_chains_avx512(int64_t iters) {
    __m512 acc[FMA_CHAINS], m = _mm512_set1_ps(0.999f), a = _mm512_set1_ps(1e-3f);
    for (int c = 0; c < FMA_CHAINS; c++) acc[c] = _mm512_set1_ps((float)c);
    for (int64_t i = 0; i < iters; i++)
        for (int c = 0; c < FMA_CHAINS; c++) acc[c] = _mm512_fmadd_ps(acc[c], m, a);
    for (int c = 1; c < FMA_CHAINS; c++) acc[0] = _mm512_add_ps(acc[0], acc[c]);
    return _mm512_reduce_add_ps(acc[0]);
}

TG_TARGET_AVX2 FMA_PLAIN static float fma_chains_avx2(int64_t iters) {
    __m256 acc[FMA_CHAINS], m = _mm256_set1_ps(0.999f), a = _mm256_set1_ps(1e-3f);
    for (int c = 0; c < FMA_CHAINS; c++) acc[c] = _mm256_set1_ps((float)c);
    for (int64_t i = 0; i < iters; i++)
        for (int c = 0; c < FMA_CHAINS; c++) acc[c] = _mm256_fmadd_ps(acc[c], m, a);
    float out[8], s = 0;
    for (int c = 1; c < FMA_CHAINS; c++) acc[0] = _mm256_add_ps(acc[0], acc[c]);
    _mm256_storeu_ps(out, acc[0]);
    for (int j = 0; j < 8; j++) s += out[j];
    return s;
}
#endif

/* plain C: a multiply and an add per lane (the baseline has no FMA), 16 independent lanes */
FMA_PLAIN static float fma_chains_generic(int64_t iters) {
    float acc[16], s = 0;
    for (int c = 0; c < 16; c++) acc[c] = (float)c;
    for (int64_t i = 0; i < iters; i++)
        for (int c = 0; c < 16; c++) acc[c] = acc[c] * 0.999f + 1e-3f;
    for (int c = 0; c < 16; c++) s += acc[c];
    return s;
}

/* FLOPs of one thread's run of iters under isa: 2 per lane of each FMA */
static double fma_flops(int isa, int64_t iters) {
    return 2.0 * (double)iters * (isa == TG_ISA_AVX512 ? FMA_CHAINS * 16 : isa == TG_ISA_AVX2 ? FMA_CHAINS * 8 : 16);
}

static volatile float fma_sink; /* keeps the chains' results alive */

/* Seconds for every thread to run iters at once */
static double fma_time(int isa, int64_t iters, int T) {
    double t0 = tg__now();
#pragma omp parallel num_threads(T)
    {
        float s;
#if defined(__x86_64__)
        if (isa == TG_ISA_AVX512) s = fma_chains_avx512(iters);
        else if (isa == TG_ISA_AVX2) s = fma_chains_avx2(iters);
        else
#endif
            s = fma_chains_generic(iters);
        if (s == 12345.0f) fma_sink = s; /* (never true) */
    }
    return tg__now() - t0;
}

static double fma_measure(void) {
    int isa = tg__isa(), T = tg_get_threads();
    int64_t iters = 1 << 12;
    double t;
    while ((t = fma_time(isa, iters, T)) < 0.01 && iters < ((int64_t)1 << 40)) iters *= 2; /* about 10 ms a run */
    double best = t;
    for (int r = 0; r < 2; r++) { /* the best of three: a run another process interrupted counts less */
        t = fma_time(isa, iters, T);
        best = t < best ? t : best;
    }
    return 1e-9 * fma_flops(isa, iters) * T / (best > 0 ? best : 1e-9);
}

static pthread_mutex_t peak_lock = PTHREAD_MUTEX_INITIALIZER;
static double peak_gflops; /* 0 until measured or given; under peak_lock */

double tg_fma_peak(void) {
    pthread_mutex_lock(&peak_lock);
    if (peak_gflops <= 0) peak_gflops = fma_measure();
    double p = peak_gflops;
    pthread_mutex_unlock(&peak_lock);
    return p;
}

void tg_set_fma_peak(double gflops) {
    if (!(gflops >= 0) || isinf(gflops)) return; /* negative, NaN or infinite: a caller's mistake, ignored */
    pthread_mutex_lock(&peak_lock);
    peak_gflops = gflops;
    pthread_mutex_unlock(&peak_lock);
}
