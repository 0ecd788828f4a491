/* isa.c: the one switch that picks the instruction set of every kernel.
 *
 * The best set the CPU has is found on the first kernel call; tg__isa_use
 * forces another (tests and benchmarks run each kernel under each set this
 * way) or goes back to the best. Kernels read the choice (tg__isa_now) on every
 * call, so a change applies to the next call of any kernel. */
#include "kernels.h"
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
