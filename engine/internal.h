/* internal.h: what the engine's and the ops' files share but users don't see. */
#ifndef TG_INTERNAL_H
#define TG_INTERNAL_H

#include "tapegrad.h"
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Bugs inside the library (never a caller's mistake) stop here with file:line. */
#define TG_ASSERT(c)                                                            \
    do {                                                                        \
        if (!(c)) {                                                             \
            fprintf(stderr, "tapegrad: internal error at %s:%d: %s\n", __FILE__, \
                    __LINE__, #c);                                              \
            abort();                                                            \
        }                                                                       \
    } while (0)

/* Every heap allocation of the library goes through these (and is counted). */
void *tg__malloc(size_t bytes);
void *tg__calloc(size_t n, size_t size);
void *tg__realloc(void *p, size_t bytes);
void tg__free(void *p);

/* Arena: chunks of memory handed out by bumping a pointer, all freed at once. */
typedef struct tg__chunk tg__chunk;
typedef struct {
    const void *owner;  /* what owns the arena (its tape), for tg__arena_owner */
    tg__chunk *first, *last; /* every chunk, oldest first */
    tg__chunk *head;    /* the chunk being filled */
    size_t skip;        /* where this generation starts in each chunk */
    size_t used;        /* bytes in use over all chunks */
    size_t high_water;
    size_t capacity;    /* bytes over all chunks */
} tg__arena;

void *tg__arena_alloc(tg__arena *a, size_t bytes); /* 64-byte aligned, not zeroed; NULL if out of memory */
/* Frees nothing: every chunk is filled again, from byte skip (at most 192) on. */
void tg__arena_reset(tg__arena *a, size_t skip);
/* The owner of the live arena whose chunks hold address p, or NULL (p is not
 * in any: heap memory, or a freed arena's). Reads no memory at p. */
const void *tg__arena_owner(const void *p);
void tg__arena_release(tg__arena *a);

struct tg_tape {
    tg__arena arena;
    tg_node *first, *last;
    int n_nodes;
    bool grad_enabled;
    bool check_finite;  /* tg_tape_check_finite */
    bool check_inputs;  /* tg_tape_check_inputs */
    uint64_t rng;
    uint64_t generation; /* bumped by every reset: a tensor of an older one is stale */
};

/* 0 if x may be used on tape t now: a heap or caller-made tensor, or a tensor
 * of t's current generation. Otherwise a TG_ERR_STATE message from who that says
 * whether x is stale (made before a tg_tape_reset) or belongs to another tape.
 * Reads x only where it is sure to be memory: a heap tensor, or t's own arena. */
int tg__check_tensor(const char *who, const tg_tape *t, const tg_tensor *x, const char *what);
/* x is not NULL, and not a tape tensor of an earlier generation (its tape must be alive). */
bool tg__tensor_current(const tg_tensor *x);

/* At most this many elements in a tensor: kernels index planes and matrices with int. */
#define TG_MAX_ELEMENTS 2147483647
/* Strides, paddings, dilations and pooling windows above this are refused (their
 * products with sizes must fit an int). */
#define TG_MAX_WINDOW 65536
/* 0, or a TG_ERR_ARG message naming who, for a shape a tensor cannot have. */
int tg__check_shape(const char *who, int ndim, const int *shape);
/* A tensor from the tape's arena; zero-filled if asked. NULL (message set) if out of memory. */
tg_tensor *tg__tensor_arena(tg_tape *t, int ndim, const int *shape, bool zero);
/* Elements of a shape. */
int64_t tg__numel(int ndim, const int *shape);
/* Clock in seconds. */
double tg__now(void);
/* How dumps and messages call a tensor: "%3" for a node's output, else its
 * name, else "param" (a leaf that takes a gradient) or "input". */
const char *tg__label(const tg_tensor *x, char *buf, size_t len);

/* Threads for a loop over items, each worth at least min_items of work per
 * thread; 1 inside a parallel region. Loops split this way must give the same
 * result for any count (each item computed alone, sums in a fixed order). */
int tg__threads_for(int64_t items, int64_t min_items);
int tg__thread_id(void);
#define TG_MIN_PER_THREAD 32768 /* elements of an elementwise loop worth a thread */

/* Elementwise work split over threads in blocks of TG_BLOCK elements: the
 * statement after it runs with i0 the block's first element and n its length.
 * Every element is computed on its own, so results do not depend on the threads. */
#define TG_BLOCK 8192
#define TG_FOR_BLOCKS(size, i0, n)                                                                           \
    for (int64_t tg__size = (size), tg__once = 1; tg__once; tg__once = 0)                                    \
        _Pragma("omp parallel for num_threads(tg__threads_for(tg__size, TG_MIN_PER_THREAD)) schedule(static)") \
        for (int64_t i0 = 0; i0 < tg__size; i0 += TG_BLOCK)                                                  \
            for (int64_t n = tg__size - i0 < TG_BLOCK ? tg__size - i0 : TG_BLOCK; n; n = 0)

/* Eight floats as one value (a GCC and Clang vector extension). The
 * memory-bound loops are written on these so they vectorise, and sum in the
 * same lanes, on every machine; TG_CLONES also builds a function for AVX2,
 * picked when the library loads. Loads and stores may be unaligned. */
typedef float tg_f8 __attribute__((vector_size(32), aligned(4)));
typedef int32_t tg_i8 __attribute__((vector_size(32), aligned(4)));
#define TG_F8(p) (*(const tg_f8 *)(p))
#define TG_F8_KEEP(v, m) ((tg_f8)((tg_i8)(v) & (m))) /* v where the comparison m holds, else 0 */
#if defined(__x86_64__) && defined(__linux__)
#define TG_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define TG_CLONES
#endif

#if defined(__x86_64__)
#include <immintrin.h>
/* A 16 x 16 transpose in AVX-512 registers: t[q] gets column q of the rows v[0..15]
 * (v is used as scratch). For the GEMM's packing and the conv's channel blocks. */
__attribute__((target("avx512f"), always_inline)) static inline void tg__transpose16(__m512 v[16], __m512 t[16]) {
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) { /* per 128 bits: rows 2i, 2i+1 interleaved */
        t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) { /* v[4i+j], block L: rows 4i..4i+3 of column 4L+j */
        __m512d a0 = _mm512_castps_pd(t[4 * i]), a1 = _mm512_castps_pd(t[4 * i + 1]);
        __m512d a2 = _mm512_castps_pd(t[4 * i + 2]), a3 = _mm512_castps_pd(t[4 * i + 3]);
        v[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
        v[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
        v[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
        v[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) { /* gather the four blocks of each column */
        __m512 w0 = _mm512_shuffle_f32x4(v[j], v[4 + j], 0x44), w1 = _mm512_shuffle_f32x4(v[j], v[4 + j], 0xee);
        __m512 w2 = _mm512_shuffle_f32x4(v[8 + j], v[12 + j], 0x44);
        __m512 w3 = _mm512_shuffle_f32x4(v[8 + j], v[12 + j], 0xee);
        t[j] = _mm512_shuffle_f32x4(w0, w2, 0x88);
        t[4 + j] = _mm512_shuffle_f32x4(w0, w2, 0xdd);
        t[8 + j] = _mm512_shuffle_f32x4(w1, w3, 0x88);
        t[12 + j] = _mm512_shuffle_f32x4(w1, w3, 0xdd);
    }
}
#endif

/* GEMM, row-major: C = alpha * op(A) op(B) + beta * C, op(X) = X or X^T.
 * A is M x K (K x M when transposed), B is K x N (N x K when transposed). */
void tg__sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
               const float *A, int lda, const float *B, int ldb, float beta,
               float *C, int ldc);
/* Shifted matrix products, the core of a stride-1 convolution (shifted.c):
 *   tg__shifted_gemm:    C[m][p] (+)= sum_t sum_k A[((m/8)*T*K + t*K + k)*8 + m%8] * B[k*ldb + off[t] + p]
 *   tg__shifted_gemm_nt: C[m][k*T + t] (+)= sum_g sum_p A[g*a_img + m*lda + p] * B[g*b_img + k*ldb + off[t] + p]
 * for p < P, a multiple of 16 (and, for _nt, over G images at strides a_img, b_img). Mp is M rounded up to 8: A's extra rows are
 * zeros and C (row stride ldc) has Mp rows. B must be readable up to
 * (K-1)*ldb + max(off) + P; scratch has room for T*K offsets. They use the GEMM's kernel choice. */
/* Where tg__shifted_gemm may write straight into an unpadded output instead of
 * C: the lanes set in mask[v] of the grid's 16-column group v are real outputs,
 * stored in order from y + m*plane + at[v] (or added to what is there, if add),
 * with bias[m] added (if bias) and the ReLU applied (if relu: v <= 0 gives +0, NaN stays NaN). Only the AVX-512
 * kernel does it (it returns true); the others fill C and return false. */
typedef struct {
    float *y;
    ptrdiff_t plane;
    const float *bias;
    bool relu, add;
    const uint16_t *mask;
    const int32_t *at;
} tg__shift_out;
bool tg__shifted_gemm(int M, int P, int K, int T, const float *A, const float *B, ptrdiff_t ldb,
                      const ptrdiff_t *off, float *C, ptrdiff_t ldc, bool accumulate, ptrdiff_t *scratch,
                      const tg__shift_out *out);
void tg__shifted_gemm_nt(int M, int P, int K, int T, int G, const float *A, ptrdiff_t lda, ptrdiff_t a_img,
                         const float *B, ptrdiff_t ldb, ptrdiff_t b_img, const ptrdiff_t *off, float *C,
                         bool accumulate);
/* The weight gradient again, for x laid out by tg__pad_blocked: channels in
 * blocks of 16 (block stride ldx, a multiple of 16), a pixel's 16 side by side,
 * planes of rows ldr pixels wide. Only the H x W pixels of A's grid are summed:
 *   C[m][c*T + t] (+)= sum_g sum_{h<H, w<W} A[g*a_img + m*lda + h*ldr + w]
 *                                          * X[g*x_img + (c/16)*ldx + (h*ldr + w + off[t])*16 + c%16]
 * X must hold every pixel read: (H-1)*ldr + W-1 + max off[t] < ldx/16.
 * tg__pad_blocked fills the inside of such a layout from NCHW planes (C x H x W),
 * pad pixels in from the top and left of rows Wp wide; the caller zeroes the
 * border once. xb must be 64-byte aligned and ldx a multiple of 16 floats. */
void tg__shifted_wgt_blocked(int M, int H, int W, ptrdiff_t ldr, int Cn, int T, int G, const float *A, ptrdiff_t lda,
                             ptrdiff_t a_img, const float *X, ptrdiff_t ldx, ptrdiff_t x_img, const ptrdiff_t *off,
                             float *C, bool accumulate);
void tg__pad_blocked(float *xb, ptrdiff_t ldx, const float *x, int C, int H, int W, int Wp, int pad);
/* Which micro-kernel tg__sgemm uses, for tests and benchmarks: "avx512", "avx2"
 * or "generic"; NULL goes back to the best one the CPU has. TG_ERR_ARG if the
 * name is unknown or the CPU lacks it. */
int tg__gemm_use(const char *name);
const char *tg__gemm_name(void); /* the one in use */

#endif
