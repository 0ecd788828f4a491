/* threads.c: how many threads the library's loops run with (OpenMP underneath).
 * Every loop split over threads computes each item alone and sums in a fixed
 * order, so results never depend on the count. */
#include "internal.h"
#include <stdatomic.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static atomic_int n_threads_set; /* 0: all cores */

void tg_set_threads(int n) { atomic_store(&n_threads_set, n < 1 ? 0 : n); }

int tg_get_threads(void) {
#ifdef _OPENMP
    int n = atomic_load(&n_threads_set);
    return n > 0 ? n : omp_get_max_threads();
#else
    return 1;
#endif
}

int tg__threads_for(int64_t items, int64_t min_items) {
#ifdef _OPENMP
    if (omp_in_parallel()) return 1;
#endif
    int T = tg_get_threads();
    int64_t most = min_items > 0 ? items / min_items : items;
    return most < T ? (most < 1 ? 1 : (int)most) : T;
}

int tg__thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}
