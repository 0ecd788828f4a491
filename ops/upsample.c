/* upsample.c: nearest and bilinear upsampling of (N,C,H,W) by an integer factor. */
#include "internal.h"
#include "ops.h"

typedef struct {
    int factor;
    tg_upsample_mode mode;
} upsample_attr;

#define UPSAMPLE_MAX_SIDE (1 << 20) /* the output's height and width are at most this */

static int upsample_shape(tg_node *n, int *ndim, int *shape) {
    const upsample_attr *a = n->attr;
    const tg_tensor *x = n->in[0];
    char sx[64];
    if (x->ndim != 4)
        return tg_fail(TG_ERR_SHAPE, "upsample: input must be (N,C,H,W), got %s", tg_shape_str(x, sx, sizeof sx));
    if (a->factor < 1)
        return tg_fail(TG_ERR_ARG, "upsample: factor %d must be >= 1", a->factor);
    int64_t Ho = (int64_t)x->shape[2] * a->factor, Wo = (int64_t)x->shape[3] * a->factor; /* in 64 bits */
    if (Ho > UPSAMPLE_MAX_SIDE || Wo > UPSAMPLE_MAX_SIDE)
        return tg_fail(TG_ERR_ARG, "upsample: factor %d would make the output %lldx%lld, more than %d a side (x %s)",
                       a->factor, (long long)Ho, (long long)Wo, UPSAMPLE_MAX_SIDE, tg_shape_str(x, sx, sizeof sx));
    if (a->mode != TG_UPSAMPLE_NEAREST && a->mode != TG_UPSAMPLE_BILINEAR)
        return tg_fail(TG_ERR_ARG, "upsample: unknown mode %d", (int)a->mode);
    *ndim = 4;
    shape[0] = x->shape[0];
    shape[1] = x->shape[1];
    shape[2] = (int)Ho;
    shape[3] = (int)Wo;
    return 0;
}

/* Bilinear source of output index o (align_corners false): the two inputs and the weight of the second. */
static void source(int o, int f, int in, int *i0, int *i1, float *l1) {
    float s = ((float)o + 0.5f) / (float)f - 0.5f;
    if (s < 0) s = 0;
    *i0 = (int)s;
    *i1 = *i0 < in - 1 ? *i0 + 1 : *i0;
    *l1 = s - (float)*i0;
}

// nearest: y[oh,ow] = x[oh/f, ow/f]; bilinear: a weighted sum of the 4 nearest inputs
static int upsample_forward(tg_tape *t, tg_node *n) {
    (void)t;
    const upsample_attr *a = n->attr;
    const tg_tensor *x = n->in[0];
    tg_tensor *y = n->out;
    int H = x->shape[2], W = x->shape[3], Ho = y->shape[2], Wo = y->shape[3], f = a->factor;
    for (int64_t p = 0; p < (int64_t)x->shape[0] * x->shape[1]; p++) {
        const float *xp = x->data + p * H * W;
        float *yp = y->data + p * Ho * Wo;
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++) {
                if (a->mode == TG_UPSAMPLE_NEAREST) {
                    yp[oh * Wo + ow] = xp[(oh / f) * W + ow / f];
                    continue;
                }
                int h0, h1, w0, w1;
                float lh, lw;
                source(oh, f, H, &h0, &h1, &lh);
                source(ow, f, W, &w0, &w1, &lw);
                yp[oh * Wo + ow] = (1 - lh) * ((1 - lw) * xp[h0 * W + w0] + lw * xp[h0 * W + w1]) +
                                   lh * ((1 - lw) * xp[h1 * W + w0] + lw * xp[h1 * W + w1]);
            }
    }
    return 0;
}

// dx[source] += dy * (the weight that source had)
static int upsample_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    const upsample_attr *a = n->attr;
    tg_tensor *x = n->in[0];
    const tg_tensor *y = n->out;
    int H = x->shape[2], W = x->shape[3], Ho = y->shape[2], Wo = y->shape[3], f = a->factor;
    for (int64_t p = 0; p < (int64_t)x->shape[0] * x->shape[1]; p++) {
        float *dx = x->grad + p * H * W;
        const float *dy = y->grad + p * Ho * Wo;
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++) {
                float g = dy[oh * Wo + ow];
                if (a->mode == TG_UPSAMPLE_NEAREST) {
                    dx[(oh / f) * W + ow / f] += g;
                    continue;
                }
                int h0, h1, w0, w1;
                float lh, lw;
                source(oh, f, H, &h0, &h1, &lh);
                source(ow, f, W, &w0, &w1, &lw);
                dx[h0 * W + w0] += (1 - lh) * (1 - lw) * g;
                dx[h0 * W + w1] += (1 - lh) * lw * g;
                dx[h1 * W + w0] += lh * (1 - lw) * g;
                dx[h1 * W + w1] += lh * lw * g;
            }
    }
    return 0;
}

static void upsample_describe(const tg_node *n, char *buf, size_t len) {
    const upsample_attr *a = n->attr;
    snprintf(buf, len, "factor=%d mode=%s", a->factor, a->mode == TG_UPSAMPLE_NEAREST ? "nearest" : "bilinear");
}

/* FLOPs per output element: nearest 0 (a copy), bilinear 8 (four multiply-adds) */
static int64_t upsample_flops(const tg_node *n) {
    const upsample_attr *a = n->attr;
    return a->mode == TG_UPSAMPLE_NEAREST ? 0 : 8 * n->out->size;
}

/* Backward FLOPs per output element: nearest adds dy into one input (1); bilinear into four, each
 * dy times two weights (1 - l or l) and the add, with the two 1 - l (14) */
static int64_t upsample_flops_backward(const tg_node *n) {
    const upsample_attr *a = n->attr;
    return (a->mode == TG_UPSAMPLE_NEAREST ? 1 : 14) * n->out->size;
}

/* For the receptive field: an output row reads one input row (nearest) or two (bilinear) */
static void upsample_window(const tg_node *n, int *span, int *stride, int *up) {
    const upsample_attr *a = n->attr;
    *span = a->mode == TG_UPSAMPLE_NEAREST ? 1 : 2;
    *up = a->factor;
    (void)stride;
}

/* Resize by scales (no roi): nearest as PyTorch's (the source pixel floor(dst / f), ONNX's
 * "asymmetric" and "floor"), bilinear as align_corners=False ("half_pixel"; PyTorch's exporter
 * writes "pytorch_half_pixel", which differs only for an output of one pixel, never for f >= 1
 * and a side >= 1 but 1x1 at f = 1, where both read the one pixel) */
static int upsample_onnx(const tg_node *n, tg_onnx *g) {
    const upsample_attr *a = n->attr;
    const float f = (float)a->factor, scales[4] = {1.0f, 1.0f, f, f};
    const int64_t four = 4;
    const char *in[3] = {tg_onnx_name(g, n->in[0]), "", tg_onnx_const_floats(g, "scales", 1, &four, scales)};
    const char *y = tg_onnx_name(g, n->out);
    if (!in[0] || !in[2] || !y) return tg_last_error_code();
    bool nearest = a->mode == TG_UPSAMPLE_NEAREST;
    int rc = tg_onnx_node(g, "Resize", in, 3, &y, 1);
    if (!rc) rc = tg_onnx_attr_string(g, "mode", nearest ? "nearest" : "linear");
    if (!rc) rc = tg_onnx_attr_string(g, "coordinate_transformation_mode", nearest ? "asymmetric" : "half_pixel");
    if (!rc && nearest) rc = tg_onnx_attr_string(g, "nearest_mode", "floor");
    return rc;
}

const tg_op tg__op_upsample = {.name = "upsample", .attr_size = sizeof(upsample_attr), .shape = upsample_shape,
                               .forward = upsample_forward, .vjp = upsample_vjp, .describe = upsample_describe,
                               .flops = upsample_flops, .flops_backward = upsample_flops_backward,
                               .window = upsample_window, .onnx = upsample_onnx};

tg_tensor *tg_upsample(tg_tape *t, tg_tensor *x, int factor, tg_upsample_mode mode) {
    upsample_attr a = {factor, mode};
    return tg_apply(t, &tg__op_upsample, &x, 1, &a);
}
