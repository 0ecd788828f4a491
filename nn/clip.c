/* clip.c: gradient clipping as PyTorch 1.13's torch.nn.utils.clip_grad_norm_
 * and clip_grad_value_. */
#include "internal.h"
#include "tapegrad_nn.h"
#include <math.h>

/* Each parameter has a gradient to clip. */
static int check(const char *who, tg_tensor *const *params, int n) {
    if (!params || n < 1) return tg_fail(TG_ERR_ARG, "%s: no parameters", who);
    for (int i = 0; i < n; i++)
        if (!params[i] || !params[i]->grad)
            return tg_fail(TG_ERR_ARG, "%s: parameter %d (%s) has no gradient", who, i,
                           !params[i] ? "NULL" : params[i]->name[0] ? params[i]->name : "unnamed");
    return 0;
}

/* The p-norm of v (p = INFINITY: the largest |v|), summed in double, as float like torch.norm's result. */
static float norm(const float *v, int64_t n, float p) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = fabs((double)v[i]);
        s = isinf(p) ? (a > s || isnan(a) ? a : s) : p == 2 ? s + a * a : s + pow(a, p);
    }
    return (float)(isinf(p) ? s : p == 2 ? sqrt(s) : pow(s, 1.0 / p));
}

int tg_clip_grad_norm(tg_tensor *const *params, int n, float max_norm, float norm_type, float *total) {
    if (check("clip_grad_norm", params, n) < 0) return TG_ERR_ARG;
    if (!(max_norm >= 0) || !isfinite(max_norm) || !(norm_type > 0))
        return tg_fail(TG_ERR_ARG, "clip_grad_norm: max_norm %g, norm_type %g: need max_norm finite and >= 0 and "
                       "norm_type > 0 (INFINITY for the largest element)", (double)max_norm, (double)norm_type);
    /* as PyTorch: the norm of each gradient, then the norm of those norms */
    float *each = tg__malloc((size_t)n * sizeof *each);
    if (!each) return tg_fail(TG_ERR_NOMEM, "clip_grad_norm: out of memory");
    for (int i = 0; i < n; i++) each[i] = norm(params[i]->grad, params[i]->size, norm_type);
    float t = norm(each, n, norm_type);
    if (total) *total = t;
    if (!isfinite(t)) {
        int i = 0;
        while (i < n - 1 && isfinite(each[i])) i++;
        tg__free(each);
        return tg_fail(TG_ERR_NONFINITE, "clip_grad_norm: the total norm is %g: the gradient of parameter %d (%s) "
                       "holds a NaN or an Inf; no gradient was changed", (double)t, i,
                       params[i]->name[0] ? params[i]->name : "unnamed");
    }
    tg__free(each);
    float coef = max_norm / (t + 1e-6f);
    if (coef < 1.0f)
        for (int i = 0; i < n; i++)
            for (int64_t j = 0; j < params[i]->size; j++) params[i]->grad[j] *= coef;
    return 0;
}

int tg_clip_grad_value(tg_tensor *const *params, int n, float clip) {
    if (check("clip_grad_value", params, n) < 0) return TG_ERR_ARG;
    if (!(clip >= 0)) return tg_fail(TG_ERR_ARG, "clip_grad_value: clip %g must be >= 0", (double)clip);
    for (int i = 0; i < n; i++)
        for (int64_t j = 0; j < params[i]->size; j++) { /* clamp: a NaN stays NaN, as torch.clamp */
            float *g = &params[i]->grad[j];
            *g = *g > clip ? clip : *g < -clip ? -clip : *g;
        }
    return 0;
}
