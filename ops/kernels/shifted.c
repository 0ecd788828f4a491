/* shifted.c: the matrix products of a stride-1 convolution, read straight from the image.
 *
 * Lay a zero-padded image plane out row after row, Wp floats a row. Output
 * pixel (oh, ow) of a stride-1 convolution sits at p = oh*Wp + ow, and kernel
 * tap (r, s) reads the input at p + r*dil*Wp + s*dil: one shift shared by all
 * pixels. The convolution is then a sum of R*S matrix products whose right
 * side is the image itself, shifted:
 *
 *   forward   C[m][p]      = sum_t sum_k A[t][k][m] * B[k*ldb + off[t] + p]
 *   weights   C[m][k*T+t]  = sum_p       A[m][p]    * B[k*ldb + off[t] + p]   (summed over images too)
 *
 * computed for every p < P (a multiple of 16). Columns with ow >= Wo read
 * across a row's end; they are garbage that the caller drops (forward) or
 * multiplies by zeros it put there (weights). No im2col copy and no packing:
 * a tile of C stays in registers while the loads stream from L1. Writing into
 * y, the AVX-512 builds can compute the unpadded plane instead of the grid
 * (tg__shift_out's compact), and any build can skip the taps that read only
 * zeros of B (its tap spans).
 *
 * Kernels: AVX-512 and AVX2 with FMA, and portable C, picked by the
 * instruction-set switch (isa.c). Each C element is one fixed chain of FMAs
 * whatever the tiling, so results are the same for any thread count. The
 * references (at the end) compute each formula with plain loops, summing in
 * the portable build's order. */
#include "kernels.h"
#include <math.h>
#include <string.h>

/* one kernel body, instantiated per ISA through these macros */
#define SK_NBMAX 3

// ----------------------------------------------------------------------------
// portable C: "vectors" of one float

#define SK_NAME(x) x##_c
#define SK_TARGET
#define SK_V float
#define SK_W 1
#define SK_MB 4  /* forward tile: SK_MB rows of C by up to SK_NBMAX vectors */
#define SK_WM 2  /* weight tile: SK_WM rows of C by SK_WN columns */
#define SK_WN 4
#define SK_BMMAX 2 /* blocked weight tile: SK_BMMAX rows of C by SK_BT taps */
#define SK_BT 3
#define SK_ZERO() 0.0f
#define SK_LOAD(p) (*(p))
#define SK_STORE(p, v) (*(p) = (v))
#define SK_BCAST(x) (x)
#define SK_IN_REG(v) (void)(v)
#define SK_FMA(a, b, c) ((a) * (b) + (c))
#define SK_HSUM(v) (v)
#define SK_OUT 0
#include "shifted_kernel.h"

#if defined(__x86_64__)
// ----------------------------------------------------------------------------
// AVX2 + FMA: 8 lanes, 4 x 3 forward tiles (12 of the 16 registers)

#define SK_NAME(x) x##_avx2
#define SK_TARGET TG_TARGET_AVX2
#define SK_V __m256
#define SK_W 8
#define SK_MB 4
#define SK_WM 3
#define SK_WN 4
#define SK_BMMAX 2
#define SK_BT 3
#define SK_ZERO() _mm256_setzero_ps()
#define SK_LOAD(p) _mm256_loadu_ps(p)
#define SK_STORE(p, v) _mm256_storeu_ps(p, v)
#define SK_BCAST(x) _mm256_set1_ps(x)
#define SK_IN_REG(v) __asm__("" : "+x"(v))
#define SK_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define SK_HSUM(v) hsum_avx2(v)
#define SK_OUT 0
SK_TARGET static inline float hsum_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
#include "shifted_kernel.h"

// ----------------------------------------------------------------------------
// AVX-512: 16 lanes, 8 x 3 forward tiles (24 of the 32 registers)

#define SK_NAME(x) x##_avx512
#define SK_TARGET __attribute__((target("avx512f,avx2,fma")))
#define SK_V __m512
#define SK_W 16
#define SK_MB 8
#define SK_WM 4
#define SK_WN 6
#define SK_BMMAX 3
#define SK_BT 9
#define SK_ZERO() _mm512_setzero_ps()
#define SK_LOAD(p) _mm512_loadu_ps(p)
#define SK_STORE(p, v) _mm512_storeu_ps(p, v)
#define SK_BCAST(x) _mm512_set1_ps(x)
#define SK_IN_REG(v) __asm__("" : "+v"(v))
#define SK_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define SK_HSUM(v) _mm512_reduce_add_ps(v)
#define SK_OUT 1 /* can write straight into an unpadded output (compress stores) */
#include "shifted_kernel.h"

// ----------------------------------------------------------------------------
// AVX-512 BF16: the forward product and the blocked weight gradient on pairs of
// bf16 (tg__shifted_gemm_bf16, tg__shifted_wgt_blocked_bf16).
// The template's float pointers carry the pairs: loads and broadcasts move
// their bits, and the multiply-add is vdpbf16ps, two products a lane.

#define SK_NAME(x) x##_bf16
#define SK_TARGET __attribute__((target("avx512f,avx512bf16,avx2,fma")))
#define SK_BF16
#define SK_PIX 2 /* the blocked weight gradient: a word of A and of X holds two pixels */
#define SK_V __m512
#define SK_W 16
#define SK_MB 8
#define SK_FMA(a, b, c) _mm512_dpbf16_ps(c, (__m512bh)(a), (__m512bh)(b))
#define SK_BCAST_AT(p) _mm512_castsi512_ps(_mm512_set1_epi32((int)*(const uint32_t *)(p)))
#define SK_BCAST(x) _mm512_set1_ps(x)
#define SK_ZERO() _mm512_setzero_ps()
#define SK_LOAD(p) _mm512_loadu_ps(p)
#define SK_STORE(p, v) _mm512_storeu_ps(p, v)
#define SK_IN_REG(v) __asm__("" : "+v"(v))
#define SK_BMMAX 3
#define SK_BT 9
#define SK_OUT 1
#include "shifted_kernel.h"
#endif

/* tg__pad_blocked, element by element: the reference, and the build for AVX2 and plain C */
void tg__pad_blocked_ref(float *xb, ptrdiff_t ldx, const float *x, int C, int H, int W, int Wp, int pad) {
    for (int cb = 0; cb * 16 < C; cb++)
        for (int h = 0; h < H; h++) {
            float *d = xb + cb * ldx + ((ptrdiff_t)(h + pad) * Wp + pad) * 16;
            for (int w = 0; w < W; w++)
                for (int l = 0; l < 16; l++)
                    d[w * 16 + l] = cb * 16 + l < C ? x[((ptrdiff_t)(cb * 16 + l) * H + h) * W + w] : 0.0f;
        }
}

#if defined(__x86_64__)
/* x is cold by the backward, and its 16 planes are 16 streams: each row is asked for 4 rows ahead
 * (the resnet's conv backward 3-5% faster; 2 and 8 rows ahead did the same) */
#define PF_ROWS 4
/* tg__pad_blocked 16 x 16 at a time through registers; xb and ldx 64-byte aligned */
__attribute__((target("avx512f"))) static void pad_blocked_avx512(float *xb, ptrdiff_t ldx, const float *x, int C,
                                                                  int H, int W, int Wp, int pad) {
    for (int cb = 0; cb * 16 < C; cb++) {
        int nc = C - cb * 16 < 16 ? C - cb * 16 : 16;
        for (int h = 0; h < H; h++) {
            const float *src = x + ((ptrdiff_t)cb * 16 * H + h) * W;
            float *d = xb + cb * ldx + ((ptrdiff_t)(h + pad) * Wp + pad) * 16;
            for (int l = 0; h + PF_ROWS < H && l < nc; l++)
                for (int o = 0; o < W; o += 16)
                    _mm_prefetch((const char *)(src + ((ptrdiff_t)l * H + PF_ROWS) * W + o), _MM_HINT_T0);
            for (int w0 = 0; w0 < W; w0 += 16) {
                int nw = W - w0 < 16 ? W - w0 : 16;
                __mmask16 m = (__mmask16)((1u << nw) - 1);
                __m512 r[16], t[16];
                for (int l = 0; l < 16; l++)
                    r[l] = l < nc ? _mm512_maskz_loadu_ps(m, src + (ptrdiff_t)l * H * W + w0) : _mm512_setzero_ps();
                tg__transpose16(r, t);
                for (int col = 0; col < nw; col++) _mm512_store_ps(d + (ptrdiff_t)(w0 + col) * 16, t[col]);
            }
        }
    }
}
#endif

typedef bool (*fwd_fn)(float *C, ptrdiff_t ldc, const tg__shift_out *out, const float *A, const float *B,
                       ptrdiff_t ldb, const ptrdiff_t *off, int M, int P, int K, int T, bool accumulate,
                       ptrdiff_t *boff);
typedef void (*wgt_fn)(float *C, const float *A, ptrdiff_t lda, ptrdiff_t a_img, const float *B, ptrdiff_t ldb,
                       ptrdiff_t b_img, const ptrdiff_t *off, int M, int P, int K, int T, int G, bool accumulate);
typedef void (*blocked_fn)(float *C, const float *A, ptrdiff_t lda, ptrdiff_t a_img, const float *X, ptrdiff_t ldx,
                           ptrdiff_t x_img, const ptrdiff_t *off, int M, int H, int W, ptrdiff_t ldr, int Cn, int T,
                           int G, bool accumulate);
typedef void (*pad_fn)(float *xb, ptrdiff_t ldx, const float *x, int C, int H, int W, int Wp, int pad);
typedef struct {
    fwd_fn fwd;
    wgt_fn wgt;
    blocked_fn blocked;
    pad_fn pad;
} kernels;

static kernels pick(void) {
    kernels k = {shifted_fwd_c, shifted_wgt_c, blocked_wgt_c, tg__pad_blocked_ref};
#if defined(__x86_64__)
    switch (tg__isa()) {
    case TG_ISA_AVX512:
        k = (kernels){shifted_fwd_avx512, shifted_wgt_avx512, blocked_wgt_avx512, pad_blocked_avx512};
        break;
    case TG_ISA_AVX2: k = (kernels){shifted_fwd_avx2, shifted_wgt_avx2, blocked_wgt_avx2, tg__pad_blocked_ref}; break;
    }
#endif
    return k;
}

bool tg__shifted_gemm(float *C, ptrdiff_t ldc, const tg__shift_out *out, const float *A, const float *B, ptrdiff_t ldb,
                      const ptrdiff_t *off, int M, int P, int K, int T, bool accumulate, ptrdiff_t *scratch) {
    return pick().fwd(C, ldc, out, A, B, ldb, off, M, P, K, T, accumulate, scratch);
}

void tg__shifted_gemm_nt(float *C, const float *A, ptrdiff_t lda, ptrdiff_t a_img, const float *B, ptrdiff_t ldb,
                         ptrdiff_t b_img, const ptrdiff_t *off, int M, int P, int K, int T, int G, bool accumulate) {
    pick().wgt(C, A, lda, a_img, B, ldb, b_img, off, M, P, K, T, G, accumulate);
}

void tg__shifted_wgt_blocked(float *C, const float *A, ptrdiff_t lda, ptrdiff_t a_img, const float *X, ptrdiff_t ldx,
                             ptrdiff_t x_img, const ptrdiff_t *off, int M, int H, int W, ptrdiff_t ldr, int Cn, int T,
                             int G, bool accumulate) {
    pick().blocked(C, A, lda, a_img, X, ldx, x_img, off, M, H, W, ldr, Cn, T, G, accumulate);
}

void tg__pad_blocked(float *xb, ptrdiff_t ldx, const float *x, int C, int H, int W, int Wp, int pad) {
    pick().pad(xb, ldx, x, C, H, W, Wp, pad);
}

bool tg__shifted_gemm_bf16(float *C, ptrdiff_t ldc, const tg__shift_out *out, const uint32_t *A, const uint32_t *B,
                           ptrdiff_t ldb, const ptrdiff_t *off, int M, int P, int K2, int T, bool accumulate,
                           ptrdiff_t *scratch) {
#if defined(__x86_64__)
    if (tg__bf16_supported())
        return shifted_fwd_bf16(C, ldc, out, (const float *)A, (const float *)B, ldb, off, M, P, K2, T, accumulate,
                                scratch);
#endif
    return tg__shifted_gemm_bf16_ref(C, ldc, out, A, B, ldb, off, M, P, K2, T, accumulate, scratch);
}

void tg__shifted_wgt_blocked_bf16(float *C, const uint32_t *A, ptrdiff_t lda, ptrdiff_t a_img, const uint32_t *X,
                                  ptrdiff_t ldx, ptrdiff_t x_img, const ptrdiff_t *off, int M, int H, int W,
                                  ptrdiff_t ldr, int Cn, int T, int G, bool accumulate) {
#if defined(__x86_64__)
    if (tg__bf16_supported()) {
        blocked_wgt_bf16(C, (const float *)A, lda, a_img, (const float *)X, ldx, x_img, off, M, H, W, ldr, Cn, T, G,
                         accumulate);
        return;
    }
#endif
    tg__shifted_wgt_blocked_bf16_ref(C, A, lda, a_img, X, ldx, x_img, off, M, H, W, ldr, Cn, T, G, accumulate);
}

/* bf16 pairs: round to nearest even, as PyTorch's .bfloat16() (and to_bf16 of
 * safetensors.c); a NaN stays a quiet NaN */
TG_INLINE uint32_t bf16_of(uint32_t u) {
    return (u & 0x7fffffffu) > 0x7f800000u ? (u >> 16 | 0x40u) : (u + 0x7fffu + (u >> 16 & 1u)) >> 16;
}

TG_INLINE void bf16_pairs_body(uint32_t *d, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint32_t ua, ub = 0;
        memcpy(&ua, a + i, 4);
        if (b) memcpy(&ub, b + i, 4);
        d[i] = bf16_of(ua) | (b ? bf16_of(ub) << 16 : 0u);
    }
}
#if defined(__x86_64__)
TG_TARGET_LOOP static void bf16_pairs_avx2(uint32_t *d, const float *a, const float *b, int64_t n) {
    bf16_pairs_body(d, a, b, n);
}

/* bf16_of on 16 lanes: the bits in each lane's low half */
TG_TARGET_AVX512 static inline __m512i bf16_of16(__m512i u) {
    __m512i r = _mm512_srli_epi32(
        _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)),
                         _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1))),
        16);
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                            _mm512_set1_epi32(0x7f800000));
    return _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
}

/* 16 words a step, the tail under a mask (on 8 lanes, the rounding took a tenth of a medium resnet step) */
TG_TARGET_AVX512 static void bf16_pairs_avx512(uint32_t *d, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
        __m512i v = bf16_of16(_mm512_maskz_loadu_epi32(m, a + i));
        if (b) v = _mm512_or_si512(v, _mm512_slli_epi32(bf16_of16(_mm512_maskz_loadu_epi32(m, b + i)), 16));
        _mm512_mask_storeu_epi32(d + i, m, v);
    }
}
#endif

void tg__bf16_pairs(uint32_t *d, const float *a, const float *b, int64_t n) {
#if defined(__x86_64__)
    if (tg__isa() == TG_ISA_AVX512) bf16_pairs_avx512(d, a, b, n);
    else if (tg__isa() == TG_ISA_AVX2) bf16_pairs_avx2(d, a, b, n);
    else
#endif
        bf16_pairs_body(d, a, b, n);
}

#if defined(__x86_64__)
/* Each vector of x rounded once: word i's high half is the next vector's lane i (step 16) or this
 * vector's lane i + 1, the last lane the next vector's first (step 1); zeros past n */
TG_TARGET_AVX512 static void pixel_pairs_avx512(uint32_t *d, const float *x, int64_t n, int step) {
    __m512i cur = bf16_of16(_mm512_maskz_loadu_epi32(n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u), x));
    for (int64_t i = 0; i < n; i += 16) {
        int64_t left = n - i - 16; /* floats past this vector */
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
        __mmask16 mn = left >= 16 ? (__mmask16)0xffff : left > 0 ? (__mmask16)((1u << left) - 1u) : 0;
        __m512i next = bf16_of16(_mm512_maskz_loadu_epi32(mn, mn ? x + i + 16 : x));
        __m512i hi = step == 16 ? next : _mm512_alignr_epi32(next, cur, 1);
        _mm512_mask_storeu_epi32(d + i, m, _mm512_or_si512(cur, _mm512_slli_epi32(hi, 16)));
        cur = next;
    }
}
#endif

void tg__bf16_pixel_pairs(uint32_t *d, const float *x, int64_t n, int step) {
#if defined(__x86_64__)
    if (tg__isa() == TG_ISA_AVX512 && (step == 1 || step == 16)) {
        pixel_pairs_avx512(d, x, n, step);
        return;
    }
#endif
    int64_t s = step < n ? step : n;
    tg__bf16_pairs(d, x, x + s, n - s);
    tg__bf16_pairs(d + n - s, x + n - s, NULL, s);
}

void tg__bf16_pixel_pairs_ref(uint32_t *d, const float *x, int64_t n, int step) {
    for (int64_t i = 0; i < n; i++) tg__bf16_pairs_ref(d + i, x + i, i + step < n ? x + i + step : NULL, 1);
}

void tg__bf16_pairs_ref(uint32_t *d, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint32_t ua, ub;
        memcpy(&ua, &a[i], 4);
        d[i] = bf16_of(ua);
        if (b) {
            memcpy(&ub, &b[i], 4);
            d[i] |= bf16_of(ub) << 16;
        }
    }
}

// ----------------------------------------------------------------------------
// references: each formula as plain loops, summed in the order of the portable build

bool tg__shifted_gemm_ref(float *C, ptrdiff_t ldc, const tg__shift_out *out, const float *A, const float *B,
                          ptrdiff_t ldb, const ptrdiff_t *off, int M, int P, int K, int T, bool accumulate,
                          ptrdiff_t *scratch) {
    (void)out, (void)scratch;
    for (int m = 0; m < ((M + 7) & ~7); m++)
        for (int p = 0; p < P; p++) {
            float *c = C + m * ldc + p, acc = accumulate ? *c : 0.0f;
            for (int t = 0; t < T; t++)
                for (int k = 0; k < K; k++)
                    acc += A[((ptrdiff_t)(m / 8) * T * K + t * K + k) * 8 + m % 8] * B[k * ldb + off[t] + p];
            *c = acc;
        }
    return false;
}

void tg__shifted_gemm_nt_ref(float *C, const float *A, ptrdiff_t lda, ptrdiff_t a_img, const float *B, ptrdiff_t ldb,
                             ptrdiff_t b_img, const ptrdiff_t *off, int M, int P, int K, int T, int G,
                             bool accumulate) {
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++)
            for (int t = 0; t < T; t++) {
                float acc = 0, *c = C + (ptrdiff_t)m * K * T + k * T + t;
                for (int g = 0; g < G; g++)
                    for (int p = 0; p < P; p++) acc += A[g * a_img + m * lda + p] * B[g * b_img + k * ldb + off[t] + p];
                *c = (accumulate ? *c : 0.0f) + acc;
            }
}

void tg__shifted_wgt_blocked_ref(float *C, const float *A, ptrdiff_t lda, ptrdiff_t a_img, const float *X,
                                 ptrdiff_t ldx, ptrdiff_t x_img, const ptrdiff_t *off, int M, int H, int W,
                                 ptrdiff_t ldr, int Cn, int T, int G, bool accumulate) {
    for (int m = 0; m < M; m++)
        for (int c = 0; c < Cn; c++)
            for (int t = 0; t < T; t++) {
                float acc = 0, *out = C + ((ptrdiff_t)m * Cn + c) * T + t;
                for (int g = 0; g < G; g++)
                    for (int h = 0; h < H; h++)
                        for (int w = 0; w < W; w++)
                            acc += A[g * a_img + m * lda + h * ldr + w] *
                                   X[g * x_img + (c / 16) * ldx + (h * ldr + w + off[t]) * 16 + c % 16];
                *out = (accumulate ? *out : 0.0f) + acc;
            }
}

/* A bf16 as float, a subnormal read as zero (vdpbf16ps's DAZ) */
static float bf16_value(uint32_t h) {
    uint32_t u = (h & 0xffffu) << 16;
    if ((u & 0x7f800000u) == 0) u &= 0x80000000u;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static float flush(float f) { return fpclassify(f) == FP_SUBNORMAL ? copysignf(0.0f, f) : f; }

/* one lane of vdpbf16ps: the high halves' product, then the low halves', each sum flushed */
static float dot_pair(float acc, uint32_t a, uint32_t b) {
    acc = flush(acc + bf16_value(a >> 16) * bf16_value(b >> 16));
    return flush(acc + bf16_value(a) * bf16_value(b));
}

bool tg__shifted_gemm_bf16_ref(float *C, ptrdiff_t ldc, const tg__shift_out *out, const uint32_t *A,
                               const uint32_t *B, ptrdiff_t ldb, const ptrdiff_t *off, int M, int P, int K2, int T,
                               bool accumulate, ptrdiff_t *scratch) {
    (void)out, (void)scratch;
    for (int m = 0; m < ((M + 7) & ~7); m++)
        for (int p = 0; p < P; p++) {
            float *c = C + m * ldc + p, acc = accumulate ? *c : 0.0f;
            for (int t = 0; t < T; t++)
                for (int k = 0; k < K2; k++)
                    acc = dot_pair(acc, A[((ptrdiff_t)(m / 8) * T * K2 + t * K2 + k) * 8 + m % 8],
                                   B[k * ldb + off[t] + p]);
            *c = acc;
        }
    return false;
}

void tg__shifted_wgt_blocked_bf16_ref(float *C, const uint32_t *A, ptrdiff_t lda, ptrdiff_t a_img, const uint32_t *X,
                                      ptrdiff_t ldx, ptrdiff_t x_img, const ptrdiff_t *off, int M, int H, int W,
                                      ptrdiff_t ldr, int Cn, int T, int G, bool accumulate) {
    for (int m = 0; m < M; m++)
        for (int c = 0; c < Cn; c++)
            for (int t = 0; t < T; t++) {
                float acc = 0, *out = C + ((ptrdiff_t)m * Cn + c) * T + t;
                for (int g = 0; g < G; g++)
                    for (int h = 0; h < H; h++)
                        for (int w = 0; w < W; w += 2) /* pixels w and w + 1 */
                            acc = dot_pair(acc, A[g * a_img + m * lda + h * ldr + w],
                                           X[g * x_img + (c / 16) * ldx + (h * ldr + w + off[t]) * 16 + c % 16]);
                *out = (accumulate ? *out : 0.0f) + acc;
            }
}
