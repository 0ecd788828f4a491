/* kernels.h: the numeric kernels beneath the ops, private to the library.
 *
 * Plain functions on arrays, in llm.c's order: outputs, inputs, sizes (then
 * flags). Each fast path has a plain reference version beside it, NAME_ref: its
 * fallback where there is one, and the oracle of tests/test_kernels.c. One
 * switch (isa.c) picks the instruction set of every kernel, GEMMs and
 * memory-bound loops alike, and a test can force each choice. Kernels split
 * their work over threads as the ops did (engine/threads.c); none of their
 * results depends on the thread count. */
#ifndef TG_KERNELS_H
#define TG_KERNELS_H

#include "internal.h"
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

// ----------------------------------------------------------------------------
// the instruction-set switch (isa.c)

/* In order: a CPU that has one has those before it. */
enum { TG_ISA_GENERIC, TG_ISA_AVX2, TG_ISA_AVX512 };
/* Use "avx512" (AVX-512 F, VL and DQ), "avx2" (AVX2 and FMA) or "generic"
 * (plain C) for every kernel from now on; NULL goes back to the best this CPU
 * has. TG_ERR_ARG, with a message, if the name is unknown or the CPU lacks it. */
int tg__isa_use(const char *name);
const char *tg__isa_name(void); /* the one in use */
/* The one in use, TG_ISA_*: one relaxed load on every kernel call (-1 until the
 * first call finds the best the CPU has) */
extern atomic_int tg__isa_now;
int tg__isa_first(void);
static inline int tg__isa(void) {
    int isa = atomic_load_explicit(&tg__isa_now, memory_order_relaxed);
    return isa >= 0 ? isa : tg__isa_first();
}

#if defined(__x86_64__)
#include <immintrin.h>
#define TG_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define TG_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma")))
/* The memory-bound loops' AVX2 build leaves FMA out: a compiler that contracts
 * a * b + c (clang does by default) would otherwise round unlike the plain build. */
#define TG_TARGET_LOOP __attribute__((target("avx2")))
#endif
#define TG_INLINE static inline __attribute__((always_inline))

/* Asks for each 64-byte line of p[0..n) once, to be written or only read: for
 * the rows of a tile that lie a row stride apart, which the hardware's
 * prefetchers do not follow (the GEMM's C and B, a conv's output planes) */
TG_INLINE void tg__prefetch_row(const float *p, ptrdiff_t n, bool write) {
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)63, end = (uintptr_t)(p + n - 1);
    for (; a <= end; a += 64)
        if (write) __builtin_prefetch((const void *)a, 1, 3);
        else __builtin_prefetch((const void *)a, 0, 3);
}

/* A memory-bound loop built twice from one body, NAME_body (TG_INLINE): for
 * AVX2 and for the baseline. tg__NAME runs the AVX2 build when the switch is at
 * AVX2 or above (the loops have no AVX-512 build), else the baseline one.
 * TG_LOOP_RET is the same for a body that returns a value. */
#if defined(__x86_64__)
#define TG_LOOP(name, params, args)                                                                                    \
    TG_TARGET_LOOP static void name##_avx2 params { name##_body args; }                                               \
    static void name##_generic params { name##_body args; }                                                           \
    void tg__##name params {                                                                                          \
        if (tg__isa() >= TG_ISA_AVX2) name##_avx2 args;                                                               \
        else name##_generic args;                                                                                     \
    }
#define TG_LOOP_RET(type, name, params, args)                                                                          \
    TG_TARGET_LOOP static type name##_avx2 params { return name##_body args; }                                        \
    static type name##_generic params { return name##_body args; }                                                    \
    type tg__##name params { return tg__isa() >= TG_ISA_AVX2 ? name##_avx2 args : name##_generic args; }
#else
#define TG_LOOP(name, params, args) \
    void tg__##name params { name##_body args; }
#define TG_LOOP_RET(type, name, params, args) \
    type tg__##name params { return name##_body args; }
#endif

/* Eight floats as one value (a GCC and Clang vector extension). The
 * memory-bound loops are written on these so they vectorise, and sum in the
 * same lanes, on every machine and in every build. Loads and stores may be unaligned. */
typedef float tg_f8 __attribute__((vector_size(32), aligned(4)));
typedef int32_t tg_i8 __attribute__((vector_size(32), aligned(4)));
#define TG_F8(p) (*(const tg_f8 *)(p))
#define TG_F8_KEEP(v, m) ((tg_f8)((tg_i8)(v) & (m))) /* v where the comparison m holds, else 0 */
/* v where PyTorch's ReLU keeps y, NOT y <= 0, else +0: relu(NaN) is NaN and
 * passes dy, as threshold_backward does; -0 and -Inf give +0 */
#define TG_F8_RELU_KEEP(v, y, zero) TG_F8_KEEP(v, ~((y) <= (zero)))

#if defined(__x86_64__)
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

// ----------------------------------------------------------------------------
// GEMM (gemm.c)

/* C (M,N) = alpha * op(A) op(B) + beta * C, row-major, op(X) = X or X^T:
 * A is (M,K), or (K,M) if trans_a; B is (K,N), or (N,K) if trans_b. C is not
 * read when beta is 0. Split over threads (not inside a parallel region). */
const char *tg__sgemm(float *C, int ldc, const float *A, int lda, const float *B, int ldb, int M, int N, int K,
                      bool trans_a, bool trans_b, float alpha, float beta);
/* The same, with the path the whole product of M_all rows would take (the rows of a batch split across
 * processes: the small-matrix tiles sum in another order, and each row must come out as it would
 * among all the batch's rows) */
const char *tg__sgemm_rows_of(float *C, int ldc, const float *A, int lda, const float *B, int ldb, int M, int N, int K,
                              bool trans_a, bool trans_b, float alpha, float beta, int M_all);
/* tg__sgemm returns the path it took for tape dumps ("gemm avx512", "gemm dot avx2": the small-matrix
 * dot-product tiles), a static string; two products' paths as one ("gemm + gemm dot avx512", dx's then dW's) */
const char *tg__gemm_path_join(const char *a, const char *b);
/* The same, one dot product at a time in k order: tg__sgemm's fallback when
 * its packing buffer cannot be had. */
void tg__sgemm_ref(float *C, int ldc, const float *A, int lda, const float *B, int ldb, int M, int N, int K,
                   bool trans_a, bool trans_b, float alpha, float beta);

// ----------------------------------------------------------------------------
// shifted matrix products, the core of a stride-1 convolution (shifted.c)

/* Where tg__shifted_gemm may write straight into an unpadded output instead of
 * C: the lanes set in mask[v] of the grid's 16-column group v are real outputs,
 * stored in order from y + m*plane + at[v] (or added to what is there, if add),
 * with bias[m] added (if bias) and the ReLU applied (if relu: v <= 0 gives +0,
 * NaN stays NaN). Only the AVX-512 build does it (and returns true); the others
 * fill C and return false. */
typedef struct {
    float *y;
    ptrdiff_t plane;
    const float *bias;
    bool relu, add;
    const uint16_t *mask;
    const int32_t *at;
    /* if set (and not accumulate), the taps group v's real lanes need: the others
     * read only zeros of B for those lanes, and every build skips them in the
     * tiles that hold no lane needing them (tap_lo[v] = T, tap_hi[v] = 0: none).
     * The real lanes keep their bits (a sum from +0 is unchanged by adding zeros,
     * for finite A); the others are then partial sums. */
    const uint8_t *tap_lo, *tap_hi;
    /* if not 0, the AVX-512 builds compute y's plane itself, 16 outputs at a
     * time, instead of the grid: group v's lanes set in mask[v] read B as grid
     * position at[v] + lane would, the others (the next row's) `compact` further
     * on (the grid's row width less the plane's), and if mask3, those set in
     * mask3[v] (the row after) twice that; tap spans are then by group of the
     * plane. Rows 16 wide or more keep a group to two rows, 8 or more to three. */
    ptrdiff_t compact;
    const uint16_t *mask3;
} tg__shift_out;

/* C (Mp,P) (+)= sum over taps t < T and k < K of A_t (Mp,K) times B shifted by off[t]:
 *   C[m*ldc + p] (+)= sum_t sum_k A[((m/8)*T*K + t*K + k)*8 + m%8] * B[k*ldb + off[t] + p]
 * for p < P, a multiple of 16. Mp is M rounded up to 8: A's extra rows are
 * zeros. B must be readable up to (K-1)*ldb + max(off) + P; scratch has room
 * for T*K offsets. With out (and not accumulate), may write y instead (see above). */
bool tg__shifted_gemm(float *C, ptrdiff_t ldc, const tg__shift_out *out, const float *A, const float *B, ptrdiff_t ldb,
                      const ptrdiff_t *off, int M, int P, int K, int T, bool accumulate, ptrdiff_t *scratch);
bool tg__shifted_gemm_ref(float *C, ptrdiff_t ldc, const tg__shift_out *out, const float *A, const float *B,
                          ptrdiff_t ldb, const ptrdiff_t *off, int M, int P, int K, int T, bool accumulate,
                          ptrdiff_t *scratch);
/* The same product in bfloat16 (tg_set_float32_matmul_precision("medium")):
 * every 32-bit word of A and B holds a pair of bf16 (tg__bf16_pairs), K2 pairs
 * where tg__shifted_gemm has K values, and each pair is one vdpbf16ps lane:
 *   acc = (acc + hi(a) * hi(b)) + lo(a) * lo(b)
 * in float, in order over the pairs, bf16 subnormals read as zero and subnormal
 * sums flushed to zero (the instruction's rules). The kernels run on CPUs with
 * AVX512_BF16 (the conv uses them when tg__bf16_active), the references
 * elsewhere; the references are the oracles of their tests. */
bool tg__shifted_gemm_bf16(float *C, ptrdiff_t ldc, const tg__shift_out *out, const uint32_t *A, const uint32_t *B,
                           ptrdiff_t ldb, const ptrdiff_t *off, int M, int P, int K2, int T, bool accumulate,
                           ptrdiff_t *scratch);
bool tg__shifted_gemm_bf16_ref(float *C, ptrdiff_t ldc, const tg__shift_out *out, const uint32_t *A,
                               const uint32_t *B, ptrdiff_t ldb, const ptrdiff_t *off, int M, int P, int K2, int T,
                               bool accumulate, ptrdiff_t *scratch);
/* tg__shifted_wgt_blocked's sum in bf16, over pairs of pixels: for even w < W (W
 * even), the word of A at pixel w holds pixels w and w+1 (low, high), and X's
 * word at pixel q of channel c holds q and q+1, blocked as tg__pad_blocked's */
void tg__shifted_wgt_blocked_bf16(float *C, const uint32_t *A, ptrdiff_t lda, ptrdiff_t a_img, const uint32_t *X,
                                  ptrdiff_t ldx, ptrdiff_t x_img, const ptrdiff_t *off, int M, int H, int W,
                                  ptrdiff_t ldr, int Cn, int T, int G, bool accumulate);
void tg__shifted_wgt_blocked_bf16_ref(float *C, const uint32_t *A, ptrdiff_t lda, ptrdiff_t a_img, const uint32_t *X,
                                      ptrdiff_t ldx, ptrdiff_t x_img, const ptrdiff_t *off, int M, int H, int W,
                                      ptrdiff_t ldr, int Cn, int T, int G, bool accumulate);
/* d[i] = bf16(a[i]) in the low half and bf16(b[i]) (0 if b is NULL) in the high
 * half, rounded to nearest even as PyTorch's .bfloat16(), a NaN kept quiet */
void tg__bf16_pairs(uint32_t *d, const float *a, const float *b, int64_t n);
void tg__bf16_pairs_ref(uint32_t *d, const float *a, const float *b, int64_t n);
/* n floats as pairs of pixels step floats apart: d[i] = bf16(x[i]) and bf16(x[i + step]), 0 in the
 * high half where i + step >= n. Each float is rounded once with AVX-512 for steps 1 and 16 (the
 * conv's bf16 weight gradient); the result is the same as tg__bf16_pairs' */
void tg__bf16_pixel_pairs(uint32_t *d, const float *x, int64_t n, int step);
void tg__bf16_pixel_pairs_ref(uint32_t *d, const float *x, int64_t n, int step);
/* Whether convolutions run tg__shifted_gemm_bf16 now: precision "medium", the
 * AVX-512 kernels in use and a CPU with AVX512_BF16 (isa.c) */
bool tg__bf16_active(void);
bool tg__bf16_supported(void);
/* C (M, K*T) (+)= sum over images g < G and p < P (a multiple of 16):
 *   C[m][k*T + t] (+)= A[g*a_img + m*lda + p] * B[g*b_img + k*ldb + off[t] + p] */
void tg__shifted_gemm_nt(float *C, const float *A, ptrdiff_t lda, ptrdiff_t a_img, const float *B, ptrdiff_t ldb,
                         ptrdiff_t b_img, const ptrdiff_t *off, int M, int P, int K, int T, int G, bool accumulate);
void tg__shifted_gemm_nt_ref(float *C, const float *A, ptrdiff_t lda, ptrdiff_t a_img, const float *B, ptrdiff_t ldb,
                             ptrdiff_t b_img, const ptrdiff_t *off, int M, int P, int K, int T, int G,
                             bool accumulate);
/* The weight gradient again, for X laid out by tg__pad_blocked: channels in
 * blocks of 16 (block stride ldx, a multiple of 16), a pixel's 16 side by side,
 * planes of rows ldr pixels wide. Only the H x W pixels of A's grid are summed:
 *   C[m][c*T + t] (+)= sum_g sum_{h<H, w<W} A[g*a_img + m*lda + h*ldr + w]
 *                                          * X[g*x_img + (c/16)*ldx + (h*ldr + w + off[t])*16 + c%16]
 * for m < M, c < Cn, t < T. X must hold every pixel read: (H-1)*ldr + W-1 + max off[t] < ldx/16. */
void tg__shifted_wgt_blocked(float *C, const float *A, ptrdiff_t lda, ptrdiff_t a_img, const float *X, ptrdiff_t ldx,
                             ptrdiff_t x_img, const ptrdiff_t *off, int M, int H, int W, ptrdiff_t ldr, int Cn, int T,
                             int G, bool accumulate);
void tg__shifted_wgt_blocked_ref(float *C, const float *A, ptrdiff_t lda, ptrdiff_t a_img, const float *X,
                                 ptrdiff_t ldx, ptrdiff_t x_img, const ptrdiff_t *off, int M, int H, int W,
                                 ptrdiff_t ldr, int Cn, int T, int G, bool accumulate);
/* xb: x (C,H,W) in blocks of 16 channels, pad pixels in from the top and left of rows Wp wide:
 *   xb[(c/16)*ldx + ((h + pad)*Wp + w + pad)*16 + c%16] = x[(c*H + h)*W + w]
 * and zeros for the last block's channels past C. The border is left alone
 * (the caller zeroes it once). xb must be 64-byte aligned and ldx a multiple of 16. */
void tg__pad_blocked(float *xb, ptrdiff_t ldx, const float *x, int C, int H, int W, int Wp, int pad);
void tg__pad_blocked_ref(float *xb, ptrdiff_t ldx, const float *x, int C, int H, int W, int Wp, int pad);

// ----------------------------------------------------------------------------
// convolution (conv.c): x (N,C,H,W), w (K,C/G,R,S), b (K) -> y (N,K,Ho,Wo)

typedef struct { /* a conv2d's sizes; Cg = C/G, Kg = K/G, rows = Cg*R*S */
    int N, C, H, W, K, R, S, Ho, Wo, G, Cg, Kg;
    int stride, pad, dil;
    int64_t rows;
    tg__split *split; /* the batch split across processes, or NULL: backward sums dw and db over its chunks */
} tg__conv_dims;

/* The one-input-channel 3x3 stride-1 forward's plain reference (AVX-512 takes that kernel when C is
 * 1, pad at most 1, one group): y (K,Ho,Wo) of one image, each output's 9 taps as fmaf from zero in
 * tap order, then the bias, then the ReLU */
void tg__conv_one_forward_ref(float *y, const float *x, const float *w, const float *b, const tg__conv_dims *d,
                              bool relu);

/* The kernels below take 64-byte aligned scratch of the size their _scratch
 * function gives (SIZE_MAX if that does not fit a size_t), with the thread
 * count it set. Each returns the path it took, for tape dumps: a static string
 * ("shifted bf16 avx512", "shifted dx, blocked wgrad avx2", "im2col+gemm avx2"). */

/* conv2d+relu followed by 2x2 stride-2 max pooling (tg_conv2d_relu_max_pool):
 * the pooled output p (N,K,Ho/2,Wo/2), its argmax into each Ho x Wo plane
 * (NULL: not recorded), and for backward the gradient dp of p. Each image's
 * conv output lives only in the kernels' scratch. */
typedef struct {
    float *p;
    int32_t *arg;
    const float *dp;
} tg__conv_pool;

/* y = conv2d(x, w) + b (b may be NULL), relu(y) if relu. Stride 1 multiplies by
 * the padded image shifted by tap (tg__shifted_gemm), or where Winograd fits and
 * products are float32 goes through it (tg__winograd_images), a 1x1 stride-1 unpadded
 * conv is one GEMM on x, anything else goes through im2col and GEMM. With pool
 * (and relu), y is not written: each image is pooled into pool->p instead. */
size_t tg__conv2d_forward_scratch(const tg__conv_dims *d, bool pool, int *threads);
const char *tg__conv2d_forward(float *y, const float *x, const float *w, const float *b, const tg__conv_dims *d,
                               bool relu, const tg__conv_pool *pool, void *scratch, int threads);
/* For dy: dx (= if dx_set, else +=), dw += and db += (each may be NULL); dx through Winograd
 * where its conv (dy to dx, the flipped weights) fits and products are float32. With
 * y (the output of conv2d with the ReLU epilogue), dy counts only where not y <= 0; with pool
 * instead of dy and y, the conv's gradient is pool->dp at the argmax where p is not <= 0
 * (tg__relu_unpool). dw and db are summed per fixed chunk of images, then over the chunks in
 * order; with d->split, the chunks of the global batch, this process's computed here and the
 * others' gathered (a failure in d->split->rc). */
size_t tg__conv2d_backward_scratch(const tg__conv_dims *d, bool dx, bool dw, bool db, bool relu, bool pool,
                                   int *threads);
const char *tg__conv2d_backward(float *dx, float *dw, float *db, const float *dy, const float *y,
                                const tg__conv_pool *pool, const float *x, const float *w, const tg__conv_dims *d,
                                bool dx_set, void *scratch, int threads);
/* conv_transpose2d: x (N,Cin,H,W) w (Cin,Cout/G,R,S) b (Cout) -> y (N,Cout,H',W'), with d
 * the conv2d that maps y back onto x (C = Cout, H,W = H',W', K = Cin, Ho,Wo = H,W):
 * y = col2im(w^T x) + b; backward dx += w im2col(dy), dw += x im2col(dy)^T, db += sum of dy */
size_t tg__conv_transpose2d_forward_scratch(const tg__conv_dims *d, int *threads);
const char *tg__conv_transpose2d_forward(float *y, const float *x, const float *w, const float *b,
                                         const tg__conv_dims *d, void *scratch, int threads);
size_t tg__conv_transpose2d_backward_scratch(const tg__conv_dims *d, bool dw, int *threads);
const char *tg__conv_transpose2d_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                                          const float *w, const tg__conv_dims *d, void *scratch, int threads);
/* Winograd (winograd.c), for a 3x3 stride-1 conv d on AVX-512, F(4x4, 3x3) for the forward, the
 * input gradient and the weight gradient: fits says whether it applies (one group, dilation 1, pad at most 2,
 * 16 to 256 channels in, at least 16 out,
 * output rows at most 32 wide, and input rows at most 16 wide when the output's are) and pays.
 * tg__winograd_weights turns w (K,C,3,3), or if flipped w (C,K,3,3) turned by 180 degrees (the
 * input gradient's conv), into U (weights_floats floats; on the threads from 32 x 32 channels).
 * tg__winograd_images computes nimg
 * images (x_img and y_img floats apart; tg__winograd_batch says how many a call pays), and asks
 * the cache for the first rows of the ahead images that follow them (the caller's next call):
 * y (K,Ho,Wo) = (or, if add, +=) relu?(conv2d(x, w) + b) (b may be NULL), x's planes ldp floats
 * apart and rows ldr, with buf (64-byte aligned, tg__winograd_floats floats); it reads only the
 * rows' W floats. The reference computes one image with the same formulas in plain loops and the
 * same order: they agree bit for bit. */
bool tg__winograd_fits(const tg__conv_dims *d);
int tg__winograd_batch(const tg__conv_dims *d);
size_t tg__winograd_weights_floats(const tg__conv_dims *d);
size_t tg__winograd_floats(const tg__conv_dims *d);
void tg__winograd_weights(float *U, const float *w, const tg__conv_dims *d, bool flipped);
void tg__winograd_images(float *y, ptrdiff_t y_img, const float *x, ptrdiff_t x_img, int nimg, int ahead, ptrdiff_t ldp,
                         ptrdiff_t ldr, const float *U, const float *b, bool relu, bool add,
                         const tg__conv_dims *d, float *buf);
void tg__winograd_image_ref(float *y, const float *x, ptrdiff_t ldp, ptrdiff_t ldr, const float *U, const float *b,
                            bool relu, bool add, const tg__conv_dims *d);
/* tg__winograd_wgrad_fits: tg__winograd_fits (the weight gradient pays there too: BENCHMARKS.md).
 * tg__winograd_wgrad stores the weight gradient dw (K,C,3,3) of nimg
 * images: dy of image i, plane k, row r at dq[i*q_img + k*ldq + r*ldqr], and x padded in blocks of 16 channels
 * (tg__pad_blocked) on the grid of tg__winograd_wgrad_grid (Hx rows Wx wide, which may be up to
 * 3 more than x's padding: zeros too) at xb[i*x_img + (c/16)*ldx], 64-byte aligned. dq is
 * read only inside its Ho x Wo planes. buf: 64-byte aligned, tg__winograd_wgrad_floats
 * floats. The reference and the AVX-512 kernel agree bit for bit. */
bool tg__winograd_wgrad_fits(const tg__conv_dims *d);
size_t tg__winograd_wgrad_floats(const tg__conv_dims *d);
void tg__winograd_wgrad_grid(const tg__conv_dims *d, int *Hx, int *Wx);
void tg__winograd_wgrad(float *dw, const float *dq, ptrdiff_t ldq, ptrdiff_t ldqr, ptrdiff_t q_img, const float *xb,
                        ptrdiff_t ldx, ptrdiff_t x_img, int nimg, const tg__conv_dims *d, float *buf);
void tg__winograd_wgrad_ref(float *dw, const float *dq, ptrdiff_t ldq, ptrdiff_t ldqr, ptrdiff_t q_img,
                            const float *xb, ptrdiff_t ldx, ptrdiff_t x_img, int nimg, const tg__conv_dims *d,
                            float *buf);
/* col (Cg*R*S, Ho*Wo) = the windows of one image's group x (Cg,H,W), zeros where they hang over */
void tg__im2col(float *col, const float *x, const tg__conv_dims *d);
void tg__im2col_ref(float *col, const float *x, const tg__conv_dims *d);
/* dx (Cg,H,W) += each column of col (Cg*R*S, Ho*Wo) added back where its window read */
void tg__col2im(float *dx, const float *col, const tg__conv_dims *d);
void tg__col2im_ref(float *dx, const float *col, const tg__conv_dims *d);
/* The short rows of the conv's padding and unpadding: for r < rows, j < w, with
 * d = dst[r*sd + j] and v = src[r*ss + j]:
 *   TG_ROWS_COPY d = v;  TG_ROWS_ADD d += v;  TG_ROWS_BIAS d = v + bias;  TG_ROWS_BIAS_RELU d = relu(v + bias);
 *   TG_ROWS_MASK d = keep[r*ss + j] <= 0 ? 0 : v (the gradient through a ReLU with output keep)
 * relu(u) is u <= 0 ? +0 : u, as PyTorch's: a NaN stays NaN, and passes dy */
enum { TG_ROWS_COPY, TG_ROWS_ADD, TG_ROWS_BIAS, TG_ROWS_BIAS_RELU, TG_ROWS_MASK };
void tg__copy_rows(float *dst, ptrdiff_t sd, const float *src, ptrdiff_t ss, const float *keep, int64_t rows, int w,
                   int mode, float bias);
void tg__copy_rows_ref(float *dst, ptrdiff_t sd, const float *src, ptrdiff_t ss, const float *keep, int64_t rows,
                       int w, int mode, float bias);

// ----------------------------------------------------------------------------
// pooling (pool.c): x (P,H,W) -> y (P,Ho,Wo) over P = N*C planes

/* y = the maximum of each window (kernel x kernel, stride, pad); arg (if not
 * NULL) its index ih*W + iw in the plane. Padding never wins; ties go to the
 * first maximum in row-major order; a NaN wins over numbers. */
void tg__max_pool2d(float *y, int32_t *arg, const float *x, int64_t P, int H, int W, int Ho, int Wo, int kernel,
                    int stride, int pad);
void tg__max_pool2d_ref(float *y, int32_t *arg, const float *x, int64_t P, int H, int W, int Ho, int Wo, int kernel,
                        int stride, int pad);
/* tg__max_pool2d on one thread, for callers already split over images */
void tg__max_pool2d_planes(float *y, int32_t *arg, const float *x, int64_t P, int H, int W, int Ho, int Wo,
                           int kernel, int stride, int pad);
/* One plane's gradient through a ReLU then 2x2 stride-2 max pooling (H x W -> Ho x Wo, with
 * arg and p that pooling's argmax and output): dx = dy at the argmax where p is not <= 0,
 * zeros elsewhere; dx's H rows lie ld floats apart, W floats of each written. */
void tg__relu_unpool(float *dx, ptrdiff_t ld, const float *dy, const int32_t *arg, const float *p, int H, int W,
                     int Ho, int Wo);
void tg__relu_unpool_ref(float *dx, ptrdiff_t ld, const float *dy, const int32_t *arg, const float *p, int H, int W,
                         int Ho, int Wo);
/* The same for a dense plane (ld = W, L = H*W floats) by zeroing it, then writing each window's
 * gradient at its argmax: n stores instead of four selects a window, whatever the width */
void tg__relu_unpool_dense(float *dx, int64_t L, const float *dy, const int32_t *arg, const float *p, int64_t n);
/* dx (= if set, else +=) dy at arg: dx[p][arg[p][o]] += dy[p][o] */
void tg__max_pool2d_backward(float *dx, const float *dy, const int32_t *arg, int64_t P, int H, int W, int Ho, int Wo,
                             int kernel, int stride, int pad, bool set);
void tg__max_pool2d_backward_ref(float *dx, const float *dy, const int32_t *arg, int64_t P, int H, int W, int Ho,
                                 int Wo, int kernel, int stride, int pad, bool set);
/* y = the window's sum / kernel^2 (padded zeros count); dx += dy / kernel^2 over each window */
void tg__avg_pool2d(float *y, const float *x, int64_t P, int H, int W, int Ho, int Wo, int kernel, int stride, int pad);
void tg__avg_pool2d_backward(float *dx, const float *dy, int64_t P, int H, int W, int Ho, int Wo, int kernel,
                             int stride, int pad);
/* y (P) = the mean of each plane of x (P,HW); dx += dy / HW */
void tg__global_avg_pool(float *y, const float *x, int64_t P, int64_t HW);
void tg__global_avg_pool_backward(float *dx, const float *dy, int64_t P, int64_t HW);

// ----------------------------------------------------------------------------
// batch normalisation (norm.c): x (N,C,L), statistics per channel c over N and L
//
// Work goes in fixed chunks of images (TG_BN_CHUNKS at most), per-channel sums
// per chunk, then over the chunks in order: the same result for any thread
// count. The loops over one run of a channel (L elements of one image) sum in
// the 8 lanes of tg_f8, then in double.

#define TG_BN_CHUNKS TG_BATCH_CHUNKS
/* mean[c] and the biased variance var[c] of x, in double, x read once: each run's mean and squared
 * deviations (tg__bn_run_stats), joined by Chan's update in image order within a chunk, then over
 * the chunks in order; part holds 2*TG_BN_CHUNKS*C doubles. With split (else NULL), over the global
 * batch: the chunks of the global batch, this process's here and the others' gathered (as
 * SyncBatchNorm, but exact; a failure in split->rc). */
void tg__bn_stats(double *mean, double *var, double *part, const float *x, int64_t N, int64_t C, int64_t L,
                  tg__split *split);
/* 2x2 stride-2 max pooling after the ReLU, fused: each plane (H x W = L) is normalised into buf
 * (one plane per thread, L1-sized), then pooled into y and arg (N,C,Ho,Wo) as tg__max_pool2d does;
 * backward, each plane's gradient is unpooled from dy into buf (tg__relu_unpool: the ReLU's mask is
 * the pooled value) and the sums and dx read it there. The same bits as batch norm, then
 * max_pool2d, without the full-size output and its gradient. */
typedef struct {
    int H, W, Ho, Wo;
    float *y;       /* forward: the pooled output; backward: the same, read for the ReLU's mask */
    int32_t *arg;   /* the argmax of each window, in the H x W plane */
    const float *dy; /* backward: the pooled output's gradient */
    float *buf;     /* TG_BN_POOL_PLANE(H*W) floats per thread (tg_get_threads of them) */
} tg__bn_pool;
/* a thread's plane in buf: whole cache lines, so that no line is written by two threads */
#define TG_BN_POOL_PLANE(L) (((int64_t)(L) + 15) / 16 * 16)
/* y = gamma[c] * ((x - mean[c]) * rstd[c]) + beta[c] (+ sc, a shortcut, if not NULL), relu(y) if relu;
 * with pool (relu), pooled into pool->y and pool->arg instead (y unused) */
void tg__bn_forward(float *y, const float *x, const float *sc, const float *mean, const float *rstd, const float *gamma,
                    const float *beta, int64_t N, int64_t C, int64_t L, bool relu, const tg__bn_pool *pool);
/* A fused ReLU's output recomputed from x where batch norm had no shortcut to add: not reading
 * y saves a pass; the same operations as the forward's give the same bits */
typedef struct {
    float rstd, gamma, beta; /* one channel's: y = relu(gamma * ((x - mean) * rstd) + beta) */
} tg__bn_relu;
/* sdy[c] = sum of dy', sdyx[c] = sum of dy' (x - mean[c]), dy' = dy where not yr <= 0, or (rg:
 * rstd, gamma and beta, C floats each) where not the ReLU's input recomputed from x <= 0, else all
 * of dy; ds (if not NULL) = (if ds_set) or += dy'. part holds 2*TG_BN_CHUNKS*C doubles. With pool,
 * dy' is each plane unpooled from pool->dy (dy, yr and rg unused) */
void tg__bn_backward_sums(double *sdy, double *sdyx, float *ds, double *part, const float *dy, const float *yr,
                          const float *x, const float *mean, const float *rg, int64_t N, int64_t C, int64_t L,
                          bool ds_set, tg__split *split, const tg__bn_pool *pool);
/* dx (= if set, else +=) kn[c] * (k1[c] * dy' - s1[c] - (x - mean[c]) * rstd[c] * s2[c]),
 * with coef = kn, k1, s1, s2, C floats each, dy' as above */
void tg__bn_backward_dx(float *dx, const float *dy, const float *yr, const float *x, const float *coef,
                        const float *mean, const float *rstd, const float *rg, int64_t N, int64_t C, int64_t L,
                        bool set, const tg__bn_pool *pool);
/* the loops over one run, each with its reference (same lanes, plain C) */
double tg__bn_sum(const float *p, int64_t n);
double tg__bn_sum_ref(const float *p, int64_t n);
/* returns the sum of (p - m)^2, and the sum of (p - m) in *s1 */
double tg__bn_devs(double *s1, const float *p, int64_t n, float m);
double tg__bn_devs_ref(double *s1, const float *p, int64_t n, float m);
/* a run's mean and its squared deviations about it: a = tg__bn_sum / n in float, then tg__bn_devs
 * about a: mean = a + s1/n, m2 = s2 - s1^2/n */
void tg__bn_run_stats(double *mean, double *m2, const float *p, int64_t n);
/* *sa += sum of a', *sab += sum of a' (b - m), a' = a where not y <= 0 (if y), or (if rx) where
 * not rx->gamma * ((b - m) * rx->rstd) + rx->beta <= 0; ds (=, or +=) a' */
void tg__bn_dot(double *sa, double *sab, float *ds, const float *a, const float *y, const float *b, float m, int64_t n,
                bool ds_set, const tg__bn_relu *rx);
void tg__bn_dot_ref(double *sa, double *sab, float *ds, const float *a, const float *y, const float *b, float m,
                    int64_t n, bool ds_set, const tg__bn_relu *rx);
void tg__bn_normalize(float *y, const float *x, const float *sc, int64_t n, float mu, float rstd, float g, float b,
                      bool relu);
void tg__bn_normalize_ref(float *y, const float *x, const float *sc, int64_t n, float mu, float rstd, float g, float b,
                          bool relu);
void tg__bn_dx(float *dx, const float *dy, const float *yr, const float *x, int64_t n, float kn, float k1, float s1,
               float s2, float mu, float rstd, bool set, const tg__bn_relu *rx);
void tg__bn_dx_ref(float *dx, const float *dy, const float *yr, const float *x, int64_t n, float kn, float k1,
                   float s1, float s2, float mu, float rstd, bool set, const tg__bn_relu *rx);

// ----------------------------------------------------------------------------
// memory-bound elementwise loops (elementwise.c), on one block of n elements;
// the callers split the work over threads (TG_FOR_BLOCKS)

/* y = a + b (b may be NULL: y = a), relu(y) if relu */
void tg__add_relu(float *y, const float *a, const float *b, int64_t n, bool relu);
void tg__add_relu_ref(float *y, const float *a, const float *b, int64_t n, bool relu);
/* dx (= if set, else +=) dy where not y <= 0 (all of dy if y is NULL) */
void tg__relu_backward(float *dx, const float *dy, const float *y, int64_t n, bool set);
void tg__relu_backward_ref(float *dx, const float *dy, const float *y, int64_t n, bool set);
/* Dropout of elements i0 .. i0+n-1: keep element i when a hash of (key, i) is
 * below `below`; y = x * s where kept, else +0; mask 1 where kept, else 0 */
void tg__dropout(float *y, uint8_t *mask, const float *x, int64_t n, int64_t i0, uint64_t key, uint32_t below,
                 float s);
void tg__dropout_ref(float *y, uint8_t *mask, const float *x, int64_t n, int64_t i0, uint64_t key, uint32_t below,
                     float s);
/* dx (= if set, else +=) dy * s where mask kept (everywhere if mask is NULL), else +0 */
void tg__dropout_backward(float *dx, const float *dy, const uint8_t *mask, int64_t n, float s, bool set);
void tg__dropout_backward_ref(float *dx, const float *dy, const uint8_t *mask, int64_t n, float s, bool set);
/* One SGD step as PyTorch's, on p (and its momentum buffer buf, NULL without momentum):
 *   g = grad + wd * p;  buf = first ? g : momentum * buf + (1 - dampening) * g;
 *   p -= lr * (nesterov ? g + momentum * buf : buf)            (p -= lr * g without buf)
 * Returns the largest exponent field of grad: 0x7f800000 if it holds a NaN or an Inf. */
uint32_t tg__sgd_update(float *p, float *buf, const float *grad, int64_t n, float lr, float wd, float momentum,
                        float dampening, bool nesterov, bool first);
uint32_t tg__sgd_update_ref(float *p, float *buf, const float *grad, int64_t n, float lr, float wd, float momentum,
                            float dampening, bool nesterov, bool first);
/* NaN if x holds a NaN or an Inf, else 0: a pass with no branch */
float tg__nonfinite_probe(const float *x, int64_t n);
float tg__nonfinite_probe_ref(const float *x, int64_t n);

#endif
