/* pool.c: the loops of max pooling (recording the argmax), average pooling and
 * global average pooling, over P planes. Planes are independent: max pooling
 * splits them over threads. */
#include "kernels.h"
#include <string.h>

// ----------------------------------------------------------------------------
// max pooling

/* Does v win over the best so far? Strictly greater keeps the first maximum; a NaN
 * wins over numbers (it propagates, as in PyTorch). */
static inline bool wins(float v, float best) { return v > best || (v != v && best == best); }

/* One plane, any window: only real positions compete, so padding never wins */
static void max_plane(float *y, int32_t *arg, const float *xp, int H, int W, int Ho, int Wo, int kernel, int stride,
                      int pad) {
    for (int oh = 0; oh < Ho; oh++)
        for (int ow = 0; ow < Wo; ow++) {
            int h0 = oh * stride - pad, w0 = ow * stride - pad;
            int h1 = h0 + kernel < H ? h0 + kernel : H, w1 = w0 + kernel < W ? w0 + kernel : W;
            if (h0 < 0) h0 = 0;
            if (w0 < 0) w0 = 0;
            int best = h0 * W + w0;
            for (int ih = h0; ih < h1; ih++)
                for (int iw = w0; iw < w1; iw++)
                    if (wins(xp[ih * W + iw], xp[best])) best = ih * W + iw;
            y[oh * Wo + ow] = xp[best];
            if (arg) arg[oh * Wo + ow] = best;
        }
}

/* wins() on 8 lanes: all ones where v wins over best; and a where m, else b */
#define WINS8(v, best) (((v) > (best)) | (((v) != (v)) & ((best) == (best))))
#define PICK8(m, a, b) ((tg_f8)(((tg_i8)(a) & (m)) | ((tg_i8)(b) & ~(m))))

/* Eight 2x2 windows side by side, from rows r0 and r1 (16 floats each from column
 * 2 * ow): the better of each row's two columns (the left one on a tie), then the
 * lower row's if it wins over the upper: the same first maximum in row-major order
 * that the scalar scan finds. at is the plane index of r0[0]. */
TG_INLINE void max8(float *y, int32_t *arg, const float *r0, const float *r1, int at, int W, int ow) {
    const tg_i8 lane = {0, 1, 2, 3, 4, 5, 6, 7};
    tg_f8 a0 = TG_F8(r0 + 2 * ow), a1 = TG_F8(r0 + 2 * ow + 8);
    tg_f8 b0 = TG_F8(r1 + 2 * ow), b1 = TG_F8(r1 + 2 * ow + 8);
    tg_f8 ae = __builtin_shufflevector(a0, a1, 0, 2, 4, 6, 8, 10, 12, 14);
    tg_f8 ao = __builtin_shufflevector(a0, a1, 1, 3, 5, 7, 9, 11, 13, 15);
    tg_f8 be = __builtin_shufflevector(b0, b1, 0, 2, 4, 6, 8, 10, 12, 14);
    tg_f8 bo = __builtin_shufflevector(b0, b1, 1, 3, 5, 7, 9, 11, 13, 15);
    tg_i8 wa = WINS8(ao, ae), wb = WINS8(bo, be);
    tg_f8 ma = PICK8(wa, ao, ae), mb = PICK8(wb, bo, be);
    tg_i8 down = WINS8(mb, ma);
    *(tg_f8 *)y = PICK8(down, mb, ma);
    if (arg) /* window start, then + W for the lower row, + 1 for the right column */
        *(tg_i8 *)arg = at + 2 * (lane + ow) + ((W + (wb & 1)) & down) + ((wa & 1) & ~down);
}

/* The 2x2, stride 2, unpadded pool of most CNNs, one plane, eight windows at a
 * time (max8). A row of 8 or more windows ends with the last eight (overlapping
 * windows already done, which get the same values again): 14 windows are two
 * vectors. A shorter row (a 14x14 plane's 7 windows) is read as eight windows
 * while they stay within the plane, else copied into zero-padded rows of 16
 * first: a scalar scan's data-dependent branches cost ten times as much per
 * window. */
TG_INLINE void max2x2_body(float *y, int32_t *arg, const float *xp, int W, int Ho, int Wo) {
    for (int oh = 0; oh < Ho; oh++) {
        const float *r0 = xp + 2 * oh * W, *r1 = r0 + W;
        float *yo = y + oh * Wo;
        int32_t *ao = arg ? arg + oh * Wo : NULL;
        if (Wo < 8 && (2 * oh + 1) * W + 16 <= 2 * Ho * W && oh * Wo + 8 <= Ho * Wo) {
            /* eight windows read from this row on (within the plane); those past the row
             * land on the plane's next rows, which are written after */
            max8(yo, ao, r0, r1, 2 * oh * W, W, 0);
            continue;
        }
        if (Wo < 8) {
            float a[16] = {0}, b[16] = {0}, ys[8];
            int32_t as[8];
            memcpy(a, r0, 2 * (size_t)Wo * sizeof *a);
            memcpy(b, r1, 2 * (size_t)Wo * sizeof *b);
            max8(ys, arg ? as : NULL, a, b, 2 * oh * W, W, 0);
            memcpy(yo, ys, (size_t)Wo * sizeof *ys);
            if (arg) memcpy(ao, as, (size_t)Wo * sizeof *as);
            continue;
        }
        for (int ow = 0, next = 0; ow < Wo; ow = next) {
            if (ow + 8 > Wo) ow = Wo - 8; /* the last eight */
            next = ow + 8;
            max8(yo + ow, arg ? ao + ow : NULL, r0, r1, 2 * oh * W, W, ow);
        }
    }
}
TG_LOOP(max2x2, (float *y, int32_t *arg, const float *xp, int W, int Ho, int Wo), (y, arg, xp, W, Ho, Wo))

static void pool_plane(float *y, int32_t *arg, const float *xp, int H, int W, int Ho, int Wo, int kernel, int stride,
                       int pad) {
    if (kernel == 2 && stride == 2 && pad == 0) tg__max2x2(y, arg, xp, W, Ho, Wo);
    else max_plane(y, arg, xp, H, W, Ho, Wo, kernel, stride, pad);
}

void tg__max_pool2d(float *y, int32_t *arg, const float *x, int64_t P, int H, int W, int Ho, int Wo, int kernel,
                    int stride, int pad) {
    TG_TRACE_CAPTURE();
#pragma omp parallel for num_threads(tg__threads_for(P * H * W, TG_MIN_PER_THREAD)) schedule(static)
    for (int64_t p = 0; p < P; p++) {
        TG_TRACE_ITER(p);
        pool_plane(y + p * Ho * Wo, arg ? arg + p * Ho * Wo : NULL, x + p * H * W, H, W, Ho, Wo, kernel, stride, pad);
    }
}

void tg__max_pool2d_planes(float *y, int32_t *arg, const float *x, int64_t P, int H, int W, int Ho, int Wo,
                           int kernel, int stride, int pad) {
    for (int64_t p = 0; p < P; p++)
        pool_plane(y + p * Ho * Wo, arg ? arg + p * Ho * Wo : NULL, x + p * H * W, H, W, Ho, Wo, kernel, stride, pad);
}

void tg__max_pool2d_ref(float *y, int32_t *arg, const float *x, int64_t P, int H, int W, int Ho, int Wo, int kernel,
                        int stride, int pad) {
    for (int64_t p = 0; p < P; p++)
        max_plane(y + p * Ho * Wo, arg ? arg + p * Ho * Wo : NULL, x + p * H * W, H, W, Ho, Wo, kernel, stride, pad);
}

void tg__max_pool2d_backward(float *dx, const float *dy, const int32_t *arg, int64_t P, int H, int W, int Ho, int Wo,
                             int kernel, int stride, int pad, bool set) {
    int64_t HW = (int64_t)H * W, HWo = (int64_t)Ho * Wo;
    /* 2x2 windows that tile the plane: every input lies in at most one window, so one pass
     * writes each element once, the gradient at the argmax and zeros around it */
    bool tiles = set && kernel == 2 && stride == 2 && pad == 0;
    /* planes are independent (windows may overlap, but only within a plane) */
    TG_TRACE_CAPTURE();
#pragma omp parallel for num_threads(tg__threads_for(P * HW, TG_MIN_PER_THREAD)) schedule(static)
    for (int64_t p = 0; p < P; p++) {
        TG_TRACE_ITER(p);
        float *dxp = dx + p * HW;
        const float *dyp = dy + p * HWo;
        const int32_t *ap = arg + p * HWo;
        if (!tiles) {
            if (set) memset(dxp, 0, (size_t)HW * sizeof(float));
            for (int64_t o = 0; o < HWo; o++) dxp[ap[o]] += dyp[o];
            continue;
        }
        if (H > 2 * Ho || W > 2 * Wo) memset(dxp, 0, (size_t)HW * sizeof(float)); /* an odd edge */
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++) {
                int o = oh * Wo + ow, i = 2 * oh * W + 2 * ow;
                float g = dyp[o];
                dxp[i] = ap[o] == i ? g : 0.0f;
                dxp[i + 1] = ap[o] == i + 1 ? g : 0.0f;
                dxp[i + W] = ap[o] == i + W ? g : 0.0f;
                dxp[i + W + 1] = ap[o] == i + W + 1 ? g : 0.0f;
            }
    }
}

void tg__max_pool2d_backward_ref(float *dx, const float *dy, const int32_t *arg, int64_t P, int H, int W, int Ho,
                                 int Wo, int kernel, int stride, int pad, bool set) {
    (void)kernel, (void)stride, (void)pad;
    int64_t HW = (int64_t)H * W, HWo = (int64_t)Ho * Wo;
    if (set) memset(dx, 0, (size_t)(P * HW) * sizeof(float));
    for (int64_t p = 0; p < P; p++)
        for (int64_t o = 0; o < HWo; o++) dx[p * HW + arg[p * HWo + o]] += dy[p * HWo + o];
}

/* The gradient of 2x2 stride-2 max pooling after a ReLU, at its input, for one
 * plane: dy where the window's argmax is and its pooled value p is not <= 0
 * (the ReLU's own mask: p is the ReLU's output there), zeros elsewhere; the H
 * rows of dx lie ld floats apart. Eight windows at a time: their four
 * candidates each, then each row's two interleaved. */
TG_INLINE void relu_unpool8(float *d0, float *d1, const float *dy, const int32_t *arg, const float *p, int at, int W,
                            int ow) {
    const tg_i8 lane = {0, 1, 2, 3, 4, 5, 6, 7};
    const tg_f8 zero = {0};
    tg_f8 g = TG_F8(dy + ow), pv = TG_F8(p + ow);
    tg_i8 a = *(const tg_i8 *)(arg + ow), start = at + 2 * (lane + ow);
    tg_i8 gi = (tg_i8)g & ~(pv <= zero);
    tg_i8 e0 = gi & (a == start), o0 = gi & (a == start + 1), e1 = gi & (a == start + W), o1 = gi & (a == start + W + 1);
    *(tg_f8 *)(d0 + 2 * ow) = (tg_f8)__builtin_shufflevector(e0, o0, 0, 8, 1, 9, 2, 10, 3, 11);
    *(tg_f8 *)(d0 + 2 * ow + 8) = (tg_f8)__builtin_shufflevector(e0, o0, 4, 12, 5, 13, 6, 14, 7, 15);
    *(tg_f8 *)(d1 + 2 * ow) = (tg_f8)__builtin_shufflevector(e1, o1, 0, 8, 1, 9, 2, 10, 3, 11);
    *(tg_f8 *)(d1 + 2 * ow + 8) = (tg_f8)__builtin_shufflevector(e1, o1, 4, 12, 5, 13, 6, 14, 7, 15);
}

TG_INLINE void relu_unpool_body(float *dx, ptrdiff_t ld, const float *dy, const int32_t *arg, const float *p, int H,
                                int W, int Ho, int Wo) {
    for (int oh = 0; oh < Ho; oh++) {
        float *d0 = dx + 2 * oh * ld, *d1 = d0 + ld;
        const float *g = dy + oh * Wo, *pp = p + oh * Wo;
        const int32_t *a = arg + oh * Wo;
        int at = 2 * oh * W, ow = 0;
        for (int next = 0; Wo >= 8 && ow < Wo; ow = next) {
            if (ow + 8 > Wo) ow = Wo - 8; /* the last eight, again in part */
            next = ow + 8;
            relu_unpool8(d0, d1, g, a, pp, at, W, ow);
        }
        for (; ow < Wo; ow++) { /* rows of fewer than 8 windows */
            int i = at + 2 * ow;
            float v = pp[ow] <= 0.0f ? 0.0f : g[ow];
            d0[2 * ow] = a[ow] == i ? v : 0.0f, d0[2 * ow + 1] = a[ow] == i + 1 ? v : 0.0f;
            d1[2 * ow] = a[ow] == i + W ? v : 0.0f, d1[2 * ow + 1] = a[ow] == i + W + 1 ? v : 0.0f;
        }
        if (W > 2 * Wo) d0[W - 1] = d1[W - 1] = 0.0f; /* an odd last column, in no window */
    }
    if (H > 2 * Ho) memset(dx + (ptrdiff_t)(H - 1) * ld, 0, (size_t)W * sizeof *dx); /* an odd last row */
}
TG_LOOP(relu_unpool,
        (float *dx, ptrdiff_t ld, const float *dy, const int32_t *arg, const float *p, int H, int W, int Ho, int Wo),
        (dx, ld, dy, arg, p, H, W, Ho, Wo))

TG_INLINE void relu_unpool_dense_body(float *dx, int64_t L, const float *dy, const int32_t *arg, const float *p,
                                      int64_t n) {
    memset(dx, 0, (size_t)L * sizeof *dx);
    for (int64_t o = 0; o < n; o++) { /* a mask, not a branch: p's sign is data */
        uint32_t v;
        memcpy(&v, &dy[o], sizeof v);
        v &= -(uint32_t)!(p[o] <= 0.0f);
        memcpy(&dx[arg[o]], &v, sizeof v);
    }
}
TG_LOOP(relu_unpool_dense, (float *dx, int64_t L, const float *dy, const int32_t *arg, const float *p, int64_t n),
        (dx, L, dy, arg, p, n))

void tg__relu_unpool_ref(float *dx, ptrdiff_t ld, const float *dy, const int32_t *arg, const float *p, int H, int W,
                         int Ho, int Wo) {
    for (int h = 0; h < H; h++)
        for (int w = 0; w < W; w++) dx[h * ld + w] = 0.0f;
    for (int o = 0; o < Ho * Wo; o++)
        if (!(p[o] <= 0.0f)) dx[arg[o] / W * ld + arg[o] % W] = dy[o];
}

// ----------------------------------------------------------------------------
// average pooling: the divisor is always kernel*kernel (padded zeros count)

void tg__avg_pool2d(float *y, const float *x, int64_t P, int H, int W, int Ho, int Wo, int kernel, int stride,
                    int pad) {
    float inv = 1.0f / (float)((int64_t)kernel * kernel); /* kernel*kernel may pass INT_MAX */
    for (int64_t p = 0; p < P; p++) {
        const float *xp = x + p * H * W;
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++) {
                int h0 = oh * stride - pad, w0 = ow * stride - pad;
                float s = 0;
                for (int ih = h0 < 0 ? 0 : h0; ih < h0 + kernel && ih < H; ih++)
                    for (int iw = w0 < 0 ? 0 : w0; iw < w0 + kernel && iw < W; iw++) s += xp[ih * W + iw];
                y[(p * Ho + oh) * Wo + ow] = s * inv;
            }
    }
}

void tg__avg_pool2d_backward(float *dx, const float *dy, int64_t P, int H, int W, int Ho, int Wo, int kernel,
                             int stride, int pad) {
    float inv = 1.0f / (float)((int64_t)kernel * kernel);
    for (int64_t p = 0; p < P; p++) {
        float *dxp = dx + p * H * W;
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++) {
                int h0 = oh * stride - pad, w0 = ow * stride - pad;
                float g = dy[(p * Ho + oh) * Wo + ow] * inv;
                for (int ih = h0 < 0 ? 0 : h0; ih < h0 + kernel && ih < H; ih++)
                    for (int iw = w0 < 0 ? 0 : w0; iw < w0 + kernel && iw < W; iw++) dxp[ih * W + iw] += g;
            }
    }
}

// ----------------------------------------------------------------------------
// global average pooling

void tg__global_avg_pool(float *y, const float *x, int64_t P, int64_t HW) {
    for (int64_t p = 0; p < P; p++) {
        float s = 0;
        for (int64_t j = 0; j < HW; j++) s += x[p * HW + j];
        y[p] = s / (float)HW;
    }
}

void tg__global_avg_pool_backward(float *dx, const float *dy, int64_t P, int64_t HW) {
    for (int64_t p = 0; p < P; p++) {
        float g = dy[p] / (float)HW;
        for (int64_t j = 0; j < HW; j++) dx[p * HW + j] += g;
    }
}
