/* elementwise.c: the memory-bound loops of relu, the residual adds, dropout,
 * the SGD update and the non-finite probe, each on one block of n elements
 * (the callers split the work over threads). Each is a tg_f8 loop or a plain
 * loop that vectorises, built for AVX2 and for the baseline (TG_LOOP), beside
 * a plain reference that gives the same bits. */
#include "kernels.h"
#include <string.h>

// ----------------------------------------------------------------------------
// relu, residual_add, residual_add with the ReLU epilogue

TG_INLINE void add_relu_body(float *y, const float *a, const float *b, int64_t n, bool relu) {
    tg_f8 zero = {0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        tg_f8 v = b ? TG_F8(a + j) + TG_F8(b + j) : TG_F8(a + j);
        *(tg_f8 *)(y + j) = relu ? TG_F8_RELU_KEEP(v, v, zero) : v;
    }
    for (; j < n; j++) {
        float v = b ? a[j] + b[j] : a[j];
        y[j] = relu && v <= 0.0f ? 0.0f : v;
    }
}
TG_LOOP(add_relu, (float *y, const float *a, const float *b, int64_t n, bool relu), (y, a, b, n, relu))

void tg__add_relu_ref(float *y, const float *a, const float *b, int64_t n, bool relu) {
    for (int64_t j = 0; j < n; j++) {
        float v = b ? a[j] + b[j] : a[j];
        y[j] = relu && v <= 0.0f ? 0.0f : v;
    }
}

// dx (=, +=) dy * (not y <= 0)
TG_INLINE void relu_backward_body(float *dx, const float *dy, const float *y, int64_t n, bool set) {
    tg_f8 zero = {0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        tg_f8 d = y ? TG_F8_RELU_KEEP(TG_F8(dy + j), TG_F8(y + j), zero) : TG_F8(dy + j);
        *(tg_f8 *)(dx + j) = set ? d : TG_F8(dx + j) + d;
    }
    for (; j < n; j++) {
        float d = y && y[j] <= 0.0f ? 0.0f : dy[j];
        dx[j] = set ? d : dx[j] + d;
    }
}
TG_LOOP(relu_backward, (float *dx, const float *dy, const float *y, int64_t n, bool set), (dx, dy, y, n, set))

void tg__relu_backward_ref(float *dx, const float *dy, const float *y, int64_t n, bool set) {
    for (int64_t j = 0; j < n; j++) {
        float d = y && y[j] <= 0.0f ? 0.0f : dy[j];
        dx[j] = set ? d : dx[j] + d;
    }
}

// ----------------------------------------------------------------------------
// dropout

/* 32 well-mixed bits from a 32-bit counter (a two-multiply xorshift hash) */
static inline uint32_t mix32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    return x ^ (x >> 16);
}

TG_INLINE void dropout_body(float *restrict y, uint8_t *restrict mask, const float *restrict x, int64_t n, int64_t i0,
                            uint64_t key, uint32_t below, float s) {
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32), c0 = (uint32_t)i0;
    for (int64_t j = 0; j < n; j++) { /* written branch-free (an and with all ones or zeros) so it vectorises */
        uint32_t h = mix32(((c0 + (uint32_t)j) ^ k0) * 0x9E3779B9u + k1);
        int32_t keep = -(int32_t)(h < below);
        union { float f; int32_t i; } v = {x[j] * s};
        v.i &= keep;
        y[j] = v.f;
        mask[j] = (uint8_t)(keep & 1);
    }
}
TG_LOOP(dropout,
        (float *restrict y, uint8_t *restrict mask, const float *restrict x, int64_t n, int64_t i0, uint64_t key,
         uint32_t below, float s),
        (y, mask, x, n, i0, key, below, s))

void tg__dropout_ref(float *y, uint8_t *mask, const float *x, int64_t n, int64_t i0, uint64_t key, uint32_t below,
                     float s) {
    for (int64_t j = 0; j < n; j++) {
        uint32_t i = (uint32_t)(i0 + j); /* the element's index, mod 2^32 */
        bool keep = mix32((i ^ (uint32_t)key) * 0x9E3779B9u + (uint32_t)(key >> 32)) < below;
        y[j] = keep ? x[j] * s : 0.0f;
        mask[j] = keep;
    }
}

TG_INLINE void dropout_backward_body(float *restrict dx, const float *restrict dy, const uint8_t *restrict mask,
                                     int64_t n, float s, bool set) {
    for (int64_t j = 0; j < n; j++) { /* branch-free, as in dropout_body */
        union { float f; int32_t i; } g = {dy[j] * s};
        if (mask) g.i &= -(int32_t)mask[j];
        dx[j] = set ? g.f : dx[j] + g.f;
    }
}
TG_LOOP(dropout_backward,
        (float *restrict dx, const float *restrict dy, const uint8_t *restrict mask, int64_t n, float s, bool set),
        (dx, dy, mask, n, s, set))

void tg__dropout_backward_ref(float *dx, const float *dy, const uint8_t *mask, int64_t n, float s, bool set) {
    for (int64_t j = 0; j < n; j++) {
        float g = !mask || mask[j] ? dy[j] * s : 0.0f;
        dx[j] = set ? g : dx[j] + g;
    }
}

// ----------------------------------------------------------------------------
// the SGD update

/* The largest exponent field among the gradients read: 0x7f800000 means a NaN
 * or an Inf (an integer max, so the loops still vectorise; reading it costs nothing). */
#define EXPONENT(g, e)                                                                                               \
    do {                                                                                                             \
        uint32_t u_;                                                                                                 \
        memcpy(&u_, &(g), 4);                                                                                        \
        u_ &= 0x7f800000u;                                                                                           \
        e = e > u_ ? e : u_;                                                                                         \
    } while (0)

/* The update written out per case so that each loop vectorises; the arithmetic is the same. */
TG_INLINE uint32_t sgd_update_body(float *restrict p, float *restrict buf, const float *restrict grad, int64_t n,
                                   float lr, float wd, float mom, float dampening, bool nesterov, bool first) {
    float keep = 1 - dampening;
    uint32_t e = 0;
    if (!buf) {
        if (wd != 0)
            for (int64_t j = 0; j < n; j++) {
                EXPONENT(grad[j], e);
                p[j] -= lr * (grad[j] + wd * p[j]);
            }
        else
            for (int64_t j = 0; j < n; j++) {
                EXPONENT(grad[j], e);
                p[j] -= lr * grad[j];
            }
        return e;
    }
    for (int64_t j = 0; j < n; j++) {
        EXPONENT(grad[j], e);
        float g = wd != 0 ? grad[j] + wd * p[j] : grad[j];
        float b = first ? g : mom * buf[j] + keep * g;
        buf[j] = b;
        p[j] -= lr * (nesterov ? g + mom * b : b);
    }
    return e;
}
TG_LOOP_RET(uint32_t, sgd_update,
            (float *restrict p, float *restrict buf, const float *restrict grad, int64_t n, float lr, float wd,
             float momentum, float dampening, bool nesterov, bool first),
            (p, buf, grad, n, lr, wd, momentum, dampening, nesterov, first))

uint32_t tg__sgd_update_ref(float *p, float *buf, const float *grad, int64_t n, float lr, float wd, float momentum,
                            float dampening, bool nesterov, bool first) {
    uint32_t e = 0;
    for (int64_t j = 0; j < n; j++) {
        EXPONENT(grad[j], e);
        float g = wd != 0 ? grad[j] + wd * p[j] : grad[j];
        if (!buf) {
            p[j] -= lr * g;
            continue;
        }
        buf[j] = first ? g : momentum * buf[j] + (1 - dampening) * g;
        p[j] -= lr * (nesterov ? g + momentum * buf[j] : buf[j]);
    }
    return e;
}

// ----------------------------------------------------------------------------
// the non-finite probe: v * 0 is NaN only for a NaN or an Inf

TG_INLINE float nonfinite_probe_body(const float *x, int64_t n) {
    tg_f8 acc = {0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) acc += TG_F8(x + j) * 0.0f;
    float r = 0;
    for (int k = 0; k < 8; k++) r += acc[k];
    for (; j < n; j++) r += x[j] * 0.0f;
    return r;
}
TG_LOOP_RET(float, nonfinite_probe, (const float *x, int64_t n), (x, n))

float tg__nonfinite_probe_ref(const float *x, int64_t n) {
    float r = 0;
    for (int64_t j = 0; j < n; j++) r += x[j] * 0.0f;
    return r;
}
