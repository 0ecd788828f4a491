/* gemm.c: single-precision matrix multiply behind matmul, linear and conv.
 *
 * Row-major: C = alpha * op(A) op(B) + beta * C, blocked the classic way:
 *
 *   for jc over N by NC                      a block of columns of C
 *     for pc over K by KC                    a slice of the sum
 *       pack op(B)[pc:+KC, jc:+NC] in NR-wide panels        (stays in L2)
 *       for ic over M by MC
 *         pack op(A)[ic:+MC, pc:+KC] in MR-tall panels
 *         for jr, ir: C[MR x NR] (+)= Apanel * Bpanel         (registers)
 *
 * Packing turns both transposes into one layout, pads edges with zeros so
 * the micro-kernel always runs full width, and makes every load it does
 * contiguous. The micro-kernel comes in three builds, picked by the
 * instruction-set switch (isa.c): AVX-512 (8 x 32), AVX2+FMA (4 x 24) and
 * portable C (4 x 16). Two shortcuts
 * matter for the small M of conv and linear: with few rows of C the kernel
 * reads an untransposed B in place, and A B^T with M or N tiny goes to a
 * dot-product kernel (AVX-512) that reads both in place.
 *
 * Determinism: C[i][j] is always the same chain of FMAs over k, one K slice
 * after the other, whichever tile, thread or edge variant computes it; the
 * slices and the kernel depend only on the shape. Threads split C into blocks
 * of rows and columns, never the sum, so the result is bit-for-bit the same
 * for any thread count. */
#include "kernels.h"
#include <stdalign.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

// ----------------------------------------------------------------------------
// kernels: each fills or updates one MR x NR tile of C from packed panels

/* acc = sum_k a[k*MR + i] * b[k*ldb + j] over kc, then for i < mr, j < nr:
 * c[i*ldc + j] = alpha * acc + beta * c (c is not read when beta == 0).
 * b holds NR readable floats per k: a packed panel (ldb == NR) or B itself. */
typedef void (*tg__ukernel)(int kc, const float *a, const float *b, ptrdiff_t ldb, int mr, int nr, float *c,
                            ptrdiff_t ldc, float alpha, float beta);
/* dst[k*P + r] = element (r, k) of a block with nvalid rows, kc columns; rows
 * nvalid..P-1 get zeros. copy: element (r,k) at src[k*ld + r]; trans: at src[r*ld + k] */
typedef void (*tg__pack_fn)(float *dst, const float *src, ptrdiff_t ld, int nvalid, int P, int kc);

/* c[i*ldc + j] = alpha * dot(a[i*lda:], b[j*ldb:]) over kc + beta * c, for a tile of mr x nr */
typedef void (*tg__dotkernel)(int kc, const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb, int mr,
                              int nr, float *c, ptrdiff_t ldc, float alpha, float beta);

typedef struct {
    const char *name;
    int mr, nr, kc, mc, nc;
    int direct_rows; /* B is read in place (not packed) for up to this many rows of C */
    tg__ukernel kernel;
    tg__pack_fn pack_copy, pack_trans;
    tg__dotkernel dot; /* if not NULL, for A B^T when M or N is at most dot_below; tiles dot_m x dot_n */
    int dot_m, dot_n, dot_kc, dot_below;
} tg__gemm_isa;

static void pack_copy_c(float *dst, const float *src, ptrdiff_t ld, int nvalid, int P, int kc) {
    for (int k = 0; k < kc; k++, dst += P, src += ld) {
        for (int r = 0; r < nvalid; r++) dst[r] = src[r];
        for (int r = nvalid; r < P; r++) dst[r] = 0.0f;
    }
}

static void pack_trans_c(float *dst, const float *src, ptrdiff_t ld, int nvalid, int P, int kc) {
    for (int k = 0; k < kc; k++, dst += P) {
        for (int r = 0; r < nvalid; r++) dst[r] = src[r * ld + k];
        for (int r = nvalid; r < P; r++) dst[r] = 0.0f;
    }
}

enum { C_MR = 4, C_NR = 16 };

static void kernel_c(int kc, const float *a, const float *b, ptrdiff_t ldb, int mr, int nr, float *c,
                     ptrdiff_t ldc, float alpha, float beta) {
    float acc[C_MR][C_NR] = {{0}};
    for (int k = 0; k < kc; k++, a += C_MR, b += ldb)
        for (int i = 0; i < C_MR; i++)
            for (int j = 0; j < C_NR; j++) acc[i][j] += a[i] * b[j];
    for (int i = 0; i < mr; i++, c += ldc)
        for (int j = 0; j < nr; j++) c[j] = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * c[j];
}

static const tg__gemm_isa isa_c = {.name = "generic", .mr = C_MR, .nr = C_NR, .kc = 256, .mc = 256, .nc = 2048,
                                   .kernel = kernel_c, .pack_copy = pack_copy_c, .pack_trans = pack_trans_c};

#if defined(__x86_64__)
// ----------------------------------------------------------------------------
// x86: packing with AVX2 (the AVX-512 build transposes 16 x 16, further down)

/* lanes 0..n-1 on (n in 0..8) */
static const int32_t mask8_tab[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

TG_TARGET_AVX2 static void pack_copy_avx2(float *dst, const float *src, ptrdiff_t ld, int nvalid, int P, int kc) {
    /* P is a multiple of 4; lanes past nvalid are loaded as zeros (masked loads never fault) */
    for (int k = 0; k < kc; k++, dst += P, src += ld) {
        int r = 0;
        for (; r + 8 <= P; r += 8) {
            int n = nvalid - r;
            if (n >= 8) _mm256_storeu_ps(dst + r, _mm256_loadu_ps(src + r));
            else if (n <= 0) _mm256_storeu_ps(dst + r, _mm256_setzero_ps());
            else {
                __m256i m = _mm256_loadu_si256((const __m256i *)(mask8_tab + 8 - n));
                _mm256_storeu_ps(dst + r, _mm256_maskload_ps(src + r, m));
            }
        }
        if (r < P) {
            int n = nvalid - r < 0 ? 0 : nvalid - r > 4 ? 4 : nvalid - r;
            _mm_storeu_ps(dst + r, _mm_maskload_ps(src + r, _mm_loadu_si128((const __m128i *)(mask8_tab + 8 - n))));
        }
    }
}

TG_TARGET_AVX2 TG_INLINE void transpose8(__m256 *r) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xee);
    __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xee);
    __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xee);
    __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xee);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* dst[k*P + r] = src[r*ld + k] for rows [r0, r1), k in [k0, k1): 8 x 8 and 4 x 4
 * register transposes for the bulk, scalar for the ragged edges */
TG_TARGET_AVX2 static void trans_block_avx2(float *dst, const float *src, ptrdiff_t ld, int r0, int r1, int P, int k0,
                                     int k1) {
    int r = r0;
    for (; r + 8 <= r1; r += 8) {
        const float *s = src + r * ld;
        int k = k0;
        for (; k + 8 <= k1; k += 8) {
            __m256 v[8];
#pragma GCC unroll 8
            for (int q = 0; q < 8; q++) v[q] = _mm256_loadu_ps(s + q * ld + k);
            transpose8(v);
#pragma GCC unroll 8
            for (int q = 0; q < 8; q++) _mm256_storeu_ps(dst + (ptrdiff_t)(k + q) * P + r, v[q]);
        }
        for (; k < k1; k++)
            for (int q = 0; q < 8; q++) dst[(ptrdiff_t)k * P + r + q] = s[q * ld + k];
    }
    for (; r + 4 <= r1; r += 4) {
        const float *s = src + r * ld;
        int k = k0;
        for (; k + 4 <= k1; k += 4) {
            __m128 v0 = _mm_loadu_ps(s + k), v1 = _mm_loadu_ps(s + ld + k);
            __m128 v2 = _mm_loadu_ps(s + 2 * ld + k), v3 = _mm_loadu_ps(s + 3 * ld + k);
            _MM_TRANSPOSE4_PS(v0, v1, v2, v3);
            _mm_storeu_ps(dst + (ptrdiff_t)k * P + r, v0);
            _mm_storeu_ps(dst + (ptrdiff_t)(k + 1) * P + r, v1);
            _mm_storeu_ps(dst + (ptrdiff_t)(k + 2) * P + r, v2);
            _mm_storeu_ps(dst + (ptrdiff_t)(k + 3) * P + r, v3);
        }
        for (; k < k1; k++)
            for (int q = 0; q < 4; q++) dst[(ptrdiff_t)k * P + r + q] = s[q * ld + k];
    }
    for (int q = r; q < r1; q++)
        for (int k = k0; k < k1; k++) dst[(ptrdiff_t)k * P + q] = src[q * ld + k];
}

static void zero_rows(float *dst, int nvalid, int P, int kc) {
    if (nvalid < P)
        for (int k = 0; k < kc; k++) memset(dst + (ptrdiff_t)k * P + nvalid, 0, (size_t)(P - nvalid) * sizeof *dst);
}

TG_TARGET_AVX2 static void pack_trans_avx2(float *dst, const float *src, ptrdiff_t ld, int nvalid, int P, int kc) {
    trans_block_avx2(dst, src, ld, 0, nvalid, P, 0, kc);
    zero_rows(dst, nvalid, P, kc);
}

// ----------------------------------------------------------------------------
// x86: AVX2 + FMA micro-kernel, 4 rows x 3 vectors of 8 (12 accumulators)

enum { A2_MR = 4, A2_NR = 24 };

TG_TARGET_AVX2 TG_INLINE void tile_avx2(const int mr, const int nv, int kc, const float *a, const float *b, ptrdiff_t ldb,
                                 float *c, ptrdiff_t ldc, float alpha, float beta, __m256i mlast) {
    __m256 acc[A2_MR][3];
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) acc[i][v] = _mm256_setzero_ps();
    for (int k = 0; k < kc; k++, a += A2_MR, b += ldb) {
        __m256 bv[3];
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) bv[v] = _mm256_loadu_ps(b + 8 * v);
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++) {
            __m256 ai = _mm256_broadcast_ss(a + i);
#pragma GCC unroll 3
            for (int v = 0; v < nv; v++) acc[i][v] = _mm256_fmadd_ps(ai, bv[v], acc[i][v]);
        }
    }
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++, c += ldc) {
#pragma GCC unroll 3
        for (int v = 0; v < nv - 1; v++) {
            __m256 r = _mm256_mul_ps(va, acc[i][v]);
            if (beta != 0.0f) r = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c + 8 * v), r);
            _mm256_storeu_ps(c + 8 * v, r);
        }
        float *p = c + 8 * (nv - 1);
        __m256 r = _mm256_mul_ps(va, acc[i][nv - 1]);
        if (beta != 0.0f) r = _mm256_fmadd_ps(vb, _mm256_maskload_ps(p, mlast), r);
        _mm256_maskstore_ps(p, mlast, r);
    }
}

TG_TARGET_AVX2 static void kernel_avx2(int kc, const float *a, const float *b, ptrdiff_t ldb, int mr, int nr, float *c,
                                ptrdiff_t ldc, float alpha, float beta) {
    int nv = (nr + 7) / 8;
    __m256i m = _mm256_loadu_si256((const __m256i *)(mask8_tab + 8 - (nr - 8 * (nv - 1))));
#define TG_CASE(MR_, NV_) \
    case (MR_) * 4 + (NV_): tile_avx2(MR_, NV_, kc, a, b, ldb, c, ldc, alpha, beta, m); break;
    switch (mr * 4 + nv) {
        TG_CASE(1, 1) TG_CASE(1, 2) TG_CASE(1, 3)
        TG_CASE(2, 1) TG_CASE(2, 2) TG_CASE(2, 3)
        TG_CASE(3, 1) TG_CASE(3, 2) TG_CASE(3, 3)
        TG_CASE(4, 1) TG_CASE(4, 2) TG_CASE(4, 3)
        default: TG_ASSERT(0);
    }
#undef TG_CASE
}

static const tg__gemm_isa isa_avx2 = {.name = "avx2", .mr = A2_MR, .nr = A2_NR, .kc = 256, .mc = 384, .nc = 3072,
                                      .direct_rows = 16, .kernel = kernel_avx2, .pack_copy = pack_copy_avx2,
                                      .pack_trans = pack_trans_avx2};

// ----------------------------------------------------------------------------
// x86: AVX-512 micro-kernel, 8 rows x 2 vectors of 16 (16 accumulators)

enum { A5_MR = 8, A5_NR = 32 };

TG_TARGET_AVX512 TG_INLINE void tile_avx512(const int mr, const int nv, int kc, const float *a, const float *b,
                                     ptrdiff_t ldb, float *c, ptrdiff_t ldc, float alpha, float beta,
                                     __mmask16 mlast) {
    __m512 acc[A5_MR][2];
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) acc[i][v] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++, a += A5_MR, b += ldb) {
        __m512 bv[2];
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) bv[v] = _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) {
            __m512 ai = _mm512_set1_ps(a[i]);
#pragma GCC unroll 2
            for (int v = 0; v < nv; v++) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
        }
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++, c += ldc) {
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) {
            __mmask16 m = v == nv - 1 ? mlast : (__mmask16)0xffff;
            __m512 r = _mm512_mul_ps(va, acc[i][v]);
            if (beta != 0.0f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, c + 16 * v), r);
            _mm512_mask_storeu_ps(c + 16 * v, m, r);
        }
    }
}

TG_TARGET_AVX512 static void kernel_avx512(int kc, const float *a, const float *b, ptrdiff_t ldb, int mr, int nr,
                                    float *c, ptrdiff_t ldc, float alpha, float beta) {
    int nv = nr > 16 ? 2 : 1;
    __mmask16 m = (__mmask16)((1u << (nr - 16 * (nv - 1))) - 1u);
#define TG_CASE(MR_)                                                                  \
    case MR_:                                                                         \
        if (nv == 2) tile_avx512(MR_, 2, kc, a, b, ldb, c, ldc, alpha, beta, m);         \
        else tile_avx512(MR_, 1, kc, a, b, ldb, c, ldc, alpha, beta, m);                  \
        break;
    switch (mr) {
        TG_CASE(1) TG_CASE(2) TG_CASE(3) TG_CASE(4) TG_CASE(5) TG_CASE(6) TG_CASE(7) TG_CASE(8)
        default: TG_ASSERT(0);
    }
#undef TG_CASE
}

// ----------------------------------------------------------------------------
// x86: AVX-512 dot-product kernel for A (M x K) times B^T (B stored N x K)
//
// Both operands run along K in memory, so the outer-product kernel above would
// need both transposed while packing, which for a small M costs more than the
// multiply. Here each of a 4 x 4 tile's sums is a vector of 16 partial sums
// along K, read in place, and a shuffle tree adds the 16 vectors up at the end.

enum { DOT_M = 4, DOT_N = 4, DOT_KC = 1024 };

/* out lane t = the sum of the lanes of v[t] */
TG_TARGET_AVX512 TG_INLINE __m512 reduce16(const __m512 *v) {
    __m512 x[8], y[4], z[2];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) /* lanes alternate v[2i], v[2i+1]: two partial sums each per 128 bits */
        x[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) { /* per 128 bits: v[4i..4i+3], one partial sum each */
        __m512d lo = _mm512_unpacklo_pd(_mm512_castps_pd(x[2 * i]), _mm512_castps_pd(x[2 * i + 1]));
        __m512d hi = _mm512_unpackhi_pd(_mm512_castps_pd(x[2 * i]), _mm512_castps_pd(x[2 * i + 1]));
        y[i] = _mm512_add_ps(_mm512_castpd_ps(lo), _mm512_castpd_ps(hi));
    }
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) /* add 128-bit blocks pairwise */
        z[i] = _mm512_add_ps(_mm512_shuffle_f32x4(y[2 * i], y[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(y[2 * i], y[2 * i + 1], 0xdd));
    return _mm512_add_ps(_mm512_shuffle_f32x4(z[0], z[1], 0x88), _mm512_shuffle_f32x4(z[0], z[1], 0xdd));
}

/* c[i*ldc + j] = alpha * dot(a[i*lda:], b[j*ldb:]) over kc + beta * c, i < mr, j < nr */
TG_TARGET_AVX512 TG_INLINE void dot_tile(const int mr, const int nr, int kc, const float *a, ptrdiff_t lda,
                                  const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc, float alpha,
                                  float beta) {
    __m512 acc[DOT_M * DOT_N];
#pragma GCC unroll 16
    for (int t = 0; t < DOT_M * DOT_N; t++) acc[t] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 16 <= kc; k += 16) {
        __m512 av[DOT_M], bv[DOT_N];
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++) av[i] = _mm512_loadu_ps(a + i * lda + k);
#pragma GCC unroll 4
        for (int j = 0; j < nr; j++) bv[j] = _mm512_loadu_ps(b + j * ldb + k);
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
            for (int j = 0; j < nr; j++) acc[i * DOT_N + j] = _mm512_fmadd_ps(av[i], bv[j], acc[i * DOT_N + j]);
    }
    if (k < kc) { /* the ragged end of the sum: missing lanes load as zeros */
        __mmask16 m = (__mmask16)((1u << (kc - k)) - 1u);
        __m512 av[DOT_M], bv[DOT_N];
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++) av[i] = _mm512_maskz_loadu_ps(m, a + i * lda + k);
#pragma GCC unroll 4
        for (int j = 0; j < nr; j++) bv[j] = _mm512_maskz_loadu_ps(m, b + j * ldb + k);
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
            for (int j = 0; j < nr; j++) acc[i * DOT_N + j] = _mm512_fmadd_ps(av[i], bv[j], acc[i * DOT_N + j]);
    }
    alignas(64) float sum[DOT_M * DOT_N];
    _mm512_store_ps(sum, _mm512_mul_ps(_mm512_set1_ps(alpha), reduce16(acc)));
    __mmask8 m = (__mmask8)((1u << nr) - 1u);
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++) {
        __m128 r = _mm_load_ps(sum + DOT_N * i);
        if (beta != 0.0f) r = _mm_fmadd_ps(_mm_set1_ps(beta), _mm_maskz_loadu_ps(m, c + i * ldc), r);
        _mm_mask_storeu_ps(c + i * ldc, m, r);
    }
}

TG_TARGET_AVX512 static void dot_kernel(int kc, const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb, int mr,
                                 int nr, float *c, ptrdiff_t ldc, float alpha, float beta) {
#define TG_CASE(MR_)                                                                  \
    case MR_:                                                                         \
        switch (nr) {                                                                 \
        case 1: dot_tile(MR_, 1, kc, a, lda, b, ldb, c, ldc, alpha, beta); break;    \
        case 2: dot_tile(MR_, 2, kc, a, lda, b, ldb, c, ldc, alpha, beta); break;    \
        case 3: dot_tile(MR_, 3, kc, a, lda, b, ldb, c, ldc, alpha, beta); break;    \
        default: dot_tile(MR_, 4, kc, a, lda, b, ldb, c, ldc, alpha, beta); break;   \
        }                                                                             \
        break;
    switch (mr) {
        TG_CASE(1) TG_CASE(2) TG_CASE(3) TG_CASE(4)
        default: TG_ASSERT(0);
    }
#undef TG_CASE
}

// ----------------------------------------------------------------------------
// x86: AVX-512 packing

/* 16 x 16 register transposes: fewer shuffles per element than the 8 x 8 ones */
TG_TARGET_AVX512 static void pack_trans_avx512(float *dst, const float *src, ptrdiff_t ld, int nvalid, int P, int kc) {
    int r = 0, kc16 = kc & ~15;
    for (; r + 16 <= nvalid; r += 16) {
        const float *s = src + r * ld;
        for (int k = 0; k < kc16; k += 16) {
            __m512 v[16], t[16];
#pragma GCC unroll 16
            for (int q = 0; q < 16; q++) v[q] = _mm512_loadu_ps(s + q * ld + k);
            tg__transpose16(v, t);
#pragma GCC unroll 16
            for (int q = 0; q < 16; q++) _mm512_storeu_ps(dst + (ptrdiff_t)(k + q) * P + r, t[q]);
        }
        trans_block_avx2(dst, src, ld, r, r + 16, P, kc16, kc);
    }
    trans_block_avx2(dst, src, ld, r, nvalid, P, 0, kc);
    zero_rows(dst, nvalid, P, kc);
}

static const tg__gemm_isa isa_avx512 = {.name = "avx512", .mr = A5_MR, .nr = A5_NR, .kc = 256, .mc = 512,
                                        .nc = 4096, .direct_rows = 32, .kernel = kernel_avx512,
                                        .pack_copy = pack_copy_avx2, .pack_trans = pack_trans_avx512,
                                        .dot = dot_kernel, .dot_m = DOT_M, .dot_n = DOT_N, .dot_kc = DOT_KC,
                                        .dot_below = 16};
#endif

// ----------------------------------------------------------------------------
// the builds by instruction set (TG_ISA_*): AVX-512 machines run the AVX2 one under "avx2"

static const tg__gemm_isa *isa_table(void) {
#if defined(__x86_64__)
    switch (tg__isa()) {
    case TG_ISA_AVX512: return &isa_avx512;
    case TG_ISA_AVX2: return &isa_avx2;
    }
#endif
    return &isa_c;
}

// ----------------------------------------------------------------------------
// packing buffers: one per thread, grown to the largest problem seen, then reused

static _Thread_local float *pack_buf;
static _Thread_local size_t pack_cap; /* floats */

/* A thread's buffer is also its value under a key whose destructor frees it, so
 * threads that come and go (a caller's own, or a pool being rebuilt) leave nothing behind */
static pthread_key_t pack_key;
static bool pack_key_ok;
static pthread_once_t pack_once = PTHREAD_ONCE_INIT;
static void pack_free(void *p) { tg__free(p); }
static void pack_key_make(void) { pack_key_ok = pthread_key_create(&pack_key, pack_free) == 0; }

static float *pack_buffer(size_t floats) {
    if (floats > pack_cap) {
        pthread_once(&pack_once, pack_key_make);
        tg__free(pack_buf);
        pack_buf = tg__malloc(floats * sizeof(float) + 64);
        if (pack_key_ok) pthread_setspecific(pack_key, pack_buf);
        if (!pack_buf) {
            pack_cap = 0;
            return NULL;
        }
        pack_cap = floats;
    }
    return (float *)(((uintptr_t)pack_buf + 63) & ~(uintptr_t)63);
}

// ----------------------------------------------------------------------------
// the blocked product of one rectangle of C

typedef struct {
    bool trans_a, trans_b;
    int M, N, K;
    float alpha, beta;
    const float *A, *B;
    ptrdiff_t lda, ldb, ldc;
    float *C;
    int kc;              /* K slice length: the same for every thread, so sums are split the same way */
    bool dot;            /* the dot-product kernel */
    int tile_m, tile_n;  /* threads split C along these */
} tg__gemm_job;

static int round_up(int x, int m) { return (x + m - 1) / m * m; }

/* C[m0:m1, n0:n1] of the job, one dot product at a time, without packing */
static void gemm_plain(const tg__gemm_job *g, int m0, int m1, int n0, int n1) {
    for (int i = m0; i < m1; i++)
        for (int j = n0; j < n1; j++) {
            float s = 0, *c = g->C + (ptrdiff_t)i * g->ldc + j;
            for (int k = 0; k < g->K; k++)
                s += (g->trans_a ? g->A[(ptrdiff_t)k * g->lda + i] : g->A[(ptrdiff_t)i * g->lda + k]) *
                     (g->trans_b ? g->B[(ptrdiff_t)j * g->ldb + k] : g->B[(ptrdiff_t)k * g->ldb + j]);
            *c = g->beta == 0.0f ? g->alpha * s : g->alpha * s + g->beta * *c;
        }
}

/* The lines of a rows x cols tile whose rows lie ld apart (tg__prefetch_row): C's
 * next tile ahead of its kernel, to be written (a wide C, a linear layer's
 * 128 x 9216 weight gradient, is read from memory otherwise), and B's next panel
 * ahead of its packing, to be read */
static void prefetch_tile(const float *p, ptrdiff_t ld, int rows, int cols, bool write) {
    for (int i = 0; i < rows; i++, p += ld) tg__prefetch_row(p, cols, write);
}

/* C[m0:m1, n0:n1] of the job */
static void gemm_block(const tg__gemm_isa *isa, const tg__gemm_job *g, int m0, int m1, int n0, int n1) {
    const int MR = isa->mr, NR = isa->nr;
    int mc_max = round_up(m1 - m0 < isa->mc ? m1 - m0 : isa->mc, MR);
    int nc_max = round_up(n1 - n0 < isa->nc ? n1 - n0 : isa->nc, NR);
    int kc_max = g->kc;
    /* With few rows a panel of B is used only a few times, so packing it costs
     * more than it saves: the kernel reads B's rows in place (all but a ragged
     * last panel, which would read past the row). */
    bool direct_b = !g->trans_b && m1 - m0 <= isa->direct_rows;
    float *abuf = pack_buffer((size_t)mc_max * kc_max + (size_t)kc_max * (direct_b ? NR : nc_max));
    if (!abuf) { /* out of memory: slow, but no way to fail from here */
        gemm_plain(g, m0, m1, n0, n1);
        return;
    }
    float *bbuf = abuf + (size_t)mc_max * kc_max;
    for (int jc = n0; jc < n1; jc += isa->nc) {
        int nc = n1 - jc < isa->nc ? n1 - jc : isa->nc;
        for (int pc = 0; pc < g->K; pc += kc_max) {
            int kc = g->K - pc < kc_max ? g->K - pc : kc_max;
            float beta = pc == 0 ? g->beta : 1.0f;
            for (int jr = 0; jr < nc; jr += NR) {
                int nr = nc - jr < NR ? nc - jr : NR;
                float *d = direct_b ? bbuf : bbuf + (size_t)jr * kc;
                if (direct_b && nr == NR) continue;
                if (!g->trans_b && jr + NR < nc) /* the next panel: its rows' pieces lie ldb apart too */
                    prefetch_tile(g->B + (ptrdiff_t)pc * g->ldb + jc + jr + NR, g->ldb, kc,
                                  nc - jr - NR < NR ? nc - jr - NR : NR, false);
                if (!g->trans_b) isa->pack_copy(d, g->B + (ptrdiff_t)pc * g->ldb + jc + jr, g->ldb, nr, NR, kc);
                else isa->pack_trans(d, g->B + (ptrdiff_t)(jc + jr) * g->ldb + pc, g->ldb, nr, NR, kc);
            }
            for (int ic = m0; ic < m1; ic += isa->mc) {
                int mc = m1 - ic < isa->mc ? m1 - ic : isa->mc;
                for (int ir = 0; ir < mc; ir += MR) {
                    int mr = mc - ir < MR ? mc - ir : MR;
                    float *d = abuf + (size_t)ir * kc;
                    if (g->trans_a) isa->pack_copy(d, g->A + (ptrdiff_t)pc * g->lda + ic + ir, g->lda, mr, MR, kc);
                    else isa->pack_trans(d, g->A + (ptrdiff_t)(ic + ir) * g->lda + pc, g->lda, mr, MR, kc);
                }
                for (int jr = 0; jr < nc; jr += NR) {
                    int nr = nc - jr < NR ? nc - jr : NR;
                    const float *b = bbuf + (size_t)jr * kc;
                    ptrdiff_t ldb = NR;
                    if (direct_b && nr == NR) b = g->B + (ptrdiff_t)pc * g->ldb + jc + jr, ldb = g->ldb;
                    else if (direct_b) b = bbuf;
                    for (int ir = 0; ir < mc; ir += MR) {
                        int mr = mc - ir < MR ? mc - ir : MR;
                        int pi = ir + MR < mc ? ir + MR : 0, pj = ir + MR < mc ? jr : jr + NR; /* the next tile */
                        if (pj < nc)
                            prefetch_tile(g->C + (ptrdiff_t)(ic + pi) * g->ldc + jc + pj, g->ldc,
                                          mc - pi < MR ? mc - pi : MR, nc - pj < NR ? nc - pj : NR, true);
                        isa->kernel(kc, abuf + (size_t)ir * kc, b, ldb, mr, nr,
                                    g->C + (ptrdiff_t)(ic + ir) * g->ldc + jc + jr, g->ldc, g->alpha, beta);
                    }
                }
            }
        }
    }
}

/* the same with the dot-product kernel: A and B are read in place */
static void dot_block(const tg__gemm_isa *isa, const tg__gemm_job *g, int m0, int m1, int n0, int n1) {
    const int RM = isa->dot_m, RN = isa->dot_n;
    for (int pc = 0; pc < g->K; pc += g->kc) {
        int kc = g->K - pc < g->kc ? g->K - pc : g->kc;
        float beta = pc == 0 ? g->beta : 1.0f;
        /* the smaller operand's slice stays in L1 while the larger one streams through once */
        bool rows_inner = m1 - m0 <= n1 - n0;
        int ni = rows_inner ? (n1 - n0 + RN - 1) / RN : (m1 - m0 + RM - 1) / RM;
        int nj = rows_inner ? (m1 - m0 + RM - 1) / RM : (n1 - n0 + RN - 1) / RN;
        for (int x = 0; x < ni; x++)
            for (int y = 0; y < nj; y++) {
                int i = m0 + (rows_inner ? y : x) * RM, j = n0 + (rows_inner ? x : y) * RN;
                isa->dot(kc, g->A + (ptrdiff_t)i * g->lda + pc, g->lda, g->B + (ptrdiff_t)j * g->ldb + pc, g->ldb,
                         m1 - i < RM ? m1 - i : RM, n1 - j < RN ? n1 - j : RN, g->C + (ptrdiff_t)i * g->ldc + j,
                         g->ldc, g->alpha, beta);
            }
    }
}

// ----------------------------------------------------------------------------
// splitting C over threads

/* Panels [p*t/T, p*(t+1)/T) go to part t of T. */
static int part_lo(int panels, int t, int T) { return (int)((int64_t)panels * t / T); }

/* Rough cost of one thread's share: the multiply plus the packing of its A and B,
 * per unit of K (a packed element costs about ten multiply-adds). */
static double share_cost(int rows, int cols) { return (double)rows * cols + 10.0 * (rows + cols); }

/* Picks a grid tm x tn (tm * tn == T) of row and column parts. */
static void split_grid(const tg__gemm_job *g, int T, int *tm, int *tn) {
    int pm = (g->M + g->tile_m - 1) / g->tile_m, pn = (g->N + g->tile_n - 1) / g->tile_n;
    double best = 0;
    *tm = 1, *tn = T;
    for (int a = 1; a <= T; a++) {
        if (T % a) continue;
        int b = T / a;
        if (a > pm || b > pn) continue;
        int rows = (pm + a - 1) / a * g->tile_m, cols = (pn + b - 1) / b * g->tile_n;
        double c = share_cost(rows, cols);
        if (best == 0 || c < best) best = c, *tm = a, *tn = b;
    }
}

static void gemm_part(const tg__gemm_isa *isa, const tg__gemm_job *g, int t, int T) {
    int tm, tn;
    split_grid(g, T, &tm, &tn);
    int pm = (g->M + g->tile_m - 1) / g->tile_m, pn = (g->N + g->tile_n - 1) / g->tile_n;
    int ti = t / tn, tj = t % tn;
    int m0 = part_lo(pm, ti, tm) * g->tile_m, m1 = part_lo(pm, ti + 1, tm) * g->tile_m;
    int n0 = part_lo(pn, tj, tn) * g->tile_n, n1 = part_lo(pn, tj + 1, tn) * g->tile_n;
    if (m1 > g->M) m1 = g->M;
    if (n1 > g->N) n1 = g->N;
    if (m0 >= m1 || n0 >= n1) return;
    if (g->dot) dot_block(isa, g, m0, m1, n0, n1);
    else gemm_block(isa, g, m0, m1, n0, n1);
}

/* Below this many multiply-adds a second thread costs more than it saves. */
#define TG_GEMM_MIN_PER_THREAD 200000.0

// ----------------------------------------------------------------------------
// the entry point

static void scale_c(int M, int N, float beta, float *C, ptrdiff_t ldc) {
    for (int i = 0; i < M; i++) {
        float *c = C + i * ldc;
        if (beta == 0.0f) memset(c, 0, (size_t)N * sizeof *c);
        else if (beta != 1.0f)
            for (int j = 0; j < N; j++) c[j] *= beta;
    }
}

/* The paths tg__sgemm returns, for tape dumps: by instruction set (TG_ISA_*) and whether each of two
 * products took the dot-product tiles; the diagonal is one product's, the rest two different ones' */
#define GEMM_PATHS(isa) {{"gemm" isa, "gemm + gemm dot" isa}, {"gemm dot + gemm" isa, "gemm dot" isa}}
static const char *const gemm_paths[3][2][2] = {GEMM_PATHS(" generic"), GEMM_PATHS(" avx2"), GEMM_PATHS(" avx512")};

const char *tg__gemm_path_join(const char *a, const char *b) {
    if (!a || !b || a == b) return a ? a : b;
    for (int i = 0; i < 3; i++)
        for (int da = 0; da < 2; da++)
            for (int db = 0; db < 2; db++)
                if (a == gemm_paths[i][da][da] && b == gemm_paths[i][db][db]) return gemm_paths[i][da][db];
    return a; /* products under two instruction sets: the first's */
}

const char *tg__sgemm(float *C, int ldc, const float *A, int lda, const float *B, int ldb, int M, int N, int K,
                      bool trans_a, bool trans_b, float alpha, float beta) {
    return tg__sgemm_rows_of(C, ldc, A, lda, B, ldb, M, N, K, trans_a, trans_b, alpha, beta, M);
}

const char *tg__sgemm_rows_of(float *C, int ldc, const float *A, int lda, const float *B, int ldb, int M, int N, int K,
                              bool trans_a, bool trans_b, float alpha, float beta, int M_all) {
    int which = tg__isa();
    if (M <= 0 || N <= 0) return gemm_paths[which][0][0];
    if (K <= 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        return gemm_paths[which][0][0];
    }
    const tg__gemm_isa *isa = isa_table();
    tg__gemm_job g = {trans_a, trans_b, M, N, K, alpha, beta, A, B, lda, ldb, ldc, C, 0, false, isa->mr, isa->nr};
    int kc_max = isa->kc, align = 8;
    if (isa->dot && !trans_a && trans_b && (M_all <= isa->dot_below || N <= isa->dot_below)) {
        g.dot = true, g.tile_m = isa->dot_m, g.tile_n = isa->dot_n;
        kc_max = isa->dot_kc, align = 16;
    }
    /* equal slices of at most kc_max, a multiple of align but the last */
    int slices = (K + kc_max - 1) / kc_max;
    g.kc = slices == 1 ? K : round_up((K + slices - 1) / slices, align);

#ifdef _OPENMP
    /* Inside a parallel region (conv over images, say) stay in the calling thread. */
    int T = omp_get_level() == 0 ? tg_get_threads() : 1;
    double work = (double)M * N * K;
    if (work < TG_GEMM_MIN_PER_THREAD * T) T = (int)(work / TG_GEMM_MIN_PER_THREAD);
    if (T > 1) {
        TG_TRACE_CAPTURE();
#pragma omp parallel num_threads(T)
        {
            TG_TRACE_REGION();
            gemm_part(isa, &g, omp_get_thread_num(), omp_get_num_threads());
        }
        return gemm_paths[which][g.dot][g.dot];
    }
#endif
    gemm_part(isa, &g, 0, 1);
    return gemm_paths[which][g.dot][g.dot];
}

void tg__sgemm_ref(float *C, int ldc, const float *A, int lda, const float *B, int ldb, int M, int N, int K,
                   bool trans_a, bool trans_b, float alpha, float beta) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    tg__gemm_job g = {trans_a, trans_b, M, N, K, alpha, beta, A, B, lda, ldb, ldc, C, K, false, 1, 1};
    gemm_plain(&g, 0, M, 0, N);
}
