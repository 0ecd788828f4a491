/* gradcheck.c: checks every VJP on a tape against central finite differences.
 *
 * The output y is projected on a fixed random vector r, L = sum(r * y) in
 * double, so that every output element counts with its own weight; dL/dx from
 * the tape (the VJP with dy = r) is compared with (L(x+h) - L(x-h)) / 2h for
 * each element of each input that requires a gradient. The tape is reseeded
 * before every evaluation, so ops that draw random numbers (dropout) draw the
 * same ones each time: the VJP is checked under its stored mask. */
#include "internal.h"
#include <math.h>
#include <string.h>

// ----------------------------------------------------------------------------
// the way in: an identity op of the engine's own

/* y = x, dx += dy. Each input that takes a gradient reaches the op under test
 * through one: the op then sees a tape tensor, whose gradient is tape memory
 * that starts unset (see the analytic pass below), as inside a network. */
static int through_shape(tg_node *n, int *ndim, int *shape) {
    *ndim = n->in[0]->ndim;
    for (int i = 0; i < *ndim; i++) shape[i] = n->in[0]->shape[i];
    return 0;
}
static int through_forward(tg_tape *t, tg_node *n) {
    (void)t;
    memcpy(n->out->data, n->in[0]->data, (size_t)n->out->size * sizeof(float));
    return 0;
}
static int through_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    float *dx = n->in[0]->grad;
    const float *dy = n->out->grad;
    for (int64_t i = 0; i < n->out->size; i++) dx[i] += dy[i];
    return 0;
}
/* named so that a message about it (a NaN in an input, say) says where it came from */
static const tg_op through_op = {.name = "gradcheck", .shape = through_shape, .forward = through_forward,
                                 .vjp = through_vjp};

// ----------------------------------------------------------------------------
// the check

static double project(tg_tape *t, tg_build_fn build, tg_tensor **inputs, void *ctx, uint64_t seed,
                      const float *r, int64_t n, int *err) {
    tg_tape_reset(t);
    tg_tape_seed(t, seed);
    tg_tensor *y = build(t, inputs, ctx);
    if (!y) {
        *err = tg_last_error_code() ? tg_last_error_code() : TG_ERR_STATE;
        return 0;
    }
    if (y->size != n) {
        *err = tg_fail(TG_ERR_STATE, "gradcheck: the build gave %lld elements, then %lld", (long long)n,
                       (long long)y->size);
        return 0;
    }
    double L = 0;
    for (int64_t i = 0; i < n; i++) L += (double)r[i] * (double)y->data[i];
    return L;
}

int tg_gradcheck(tg_build_fn build, tg_tensor **inputs, int n_inputs, void *ctx, const tg_gradcheck_opts *opts,
                 double *max_rel) {
    tg_gradcheck_opts o = {1e-2, 1e-2, 1};
    if (opts) {
        if (opts->eps > 0) o.eps = opts->eps;
        if (opts->tol > 0) o.tol = opts->tol;
        o.seed = opts->seed;
    }
    if (!build) return tg_fail(TG_ERR_ARG, "gradcheck: build is NULL");
    if (n_inputs < 1 || n_inputs > TG_MAX_INPUTS || !inputs)
        return tg_fail(TG_ERR_ARG, "gradcheck: %d inputs at %p: need 1 to %d", n_inputs, (void *)inputs, TG_MAX_INPUTS);
    for (int i = 0; i < n_inputs; i++) {
        if (!inputs[i] || !inputs[i]->on_heap)
            return tg_fail(TG_ERR_ARG, "gradcheck: input %d must be a heap tensor (tg_tensor_new)", i);
        if (max_rel) max_rel[i] = 0;
        tg_tensor_zero_grad(inputs[i]);
    }
    int rc = 0;
    float *r = NULL, *analytic = NULL;
    tg_tape *t = tg_tape_new();
    if (!t) return TG_ERR_NOMEM;

    /* analytic: one backward with dy = r. The op sees each input through the
     * identity op above, so its input gradients are tape memory that starts
     * unset (an op that stores into them is checked too), and the finite check
     * fills that memory with NaN: an element the VJP never writes is an error. */
    tg_tape_seed(t, o.seed);
    tg_tape_check_finite(t, true);
    tg_tape_check_inputs(t, true); /* and no VJP writes into an input */
    tg_tensor *through[TG_MAX_INPUTS] = {0};
    for (int i = 0; i < n_inputs; i++)
        if (!(through[i] = inputs[i]->requires_grad ? tg_apply(t, &through_op, &inputs[i], 1, NULL) : inputs[i])) {
            rc = tg_last_error_code();
            goto done;
        }
    tg_tensor *y = build(t, through, ctx);
    if (!y) {
        rc = tg_last_error_code() ? tg_last_error_code() : TG_ERR_STATE;
        goto done;
    }
    int64_t n = y->size;
    if (!(r = tg__malloc((size_t)n * sizeof *r))) {
        rc = tg_fail(TG_ERR_NOMEM, "gradcheck: out of memory");
        goto done;
    }
    uint64_t s = 0x5eed ^ (uint64_t)n;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        r[i] = (float)((double)(s >> 11) * 0x1.0p-53) * 2.0f - 1.0f;
    }
    if (y->requires_grad && (rc = tg_backward_seed(t, y, r)) < 0) goto done;
    tg_tape_check_finite(t, false);

    bool was = tg_tape_set_grad_enabled(t, false); /* numeric evaluations record nothing */
    int first_bad = 0; /* every input is checked; the message names the first beyond tol */
    for (int i = 0; i < n_inputs && rc == 0; i++) {
        tg_tensor *x = inputs[i];
        if (!x->requires_grad) continue;
        tg__free(analytic);
        if (!(analytic = tg__malloc((size_t)x->size * sizeof *analytic))) {
            rc = tg_fail(TG_ERR_NOMEM, "gradcheck: out of memory");
            break;
        }
        memcpy(analytic, x->grad, (size_t)x->size * sizeof *analytic);
        double *numeric = (double *)tg__malloc((size_t)x->size * sizeof(double));
        if (!numeric) {
            rc = tg_fail(TG_ERR_NOMEM, "gradcheck: out of memory");
            break;
        }
        double scale = 0;
        for (int64_t j = 0; j < x->size && rc == 0; j++) {
            float orig = x->data[j];
            double h = o.eps * fmax(1.0, fabs(orig));
            float xp = (float)(orig + h), xm = (float)(orig - h);
            int err = 0;
            x->data[j] = xp;
            double Lp = project(t, build, inputs, ctx, o.seed, r, n, &err);
            x->data[j] = xm;
            double Lm = project(t, build, inputs, ctx, o.seed, r, n, &err);
            x->data[j] = orig;
            if (err) rc = err;
            numeric[j] = (Lp - Lm) / ((double)xp - (double)xm);
            scale = fmax(scale, fabs(numeric[j]));
        }
        double worst = 0;
        int64_t worst_j = 0;
        for (int64_t j = 0; j < x->size && rc == 0; j++) {
            double a = analytic[j], num = numeric[j];
            double den = fmax(fmax(fabs(a), fabs(num)), 1e-2 * scale);
            double e = den > 0 ? fabs(a - num) / den : 0;
            if (e > worst) worst = e, worst_j = j;
        }
        if (max_rel) max_rel[i] = worst;
        if (rc == 0 && worst > o.tol && !first_bad)
            first_bad = tg_fail(TG_ERR_STATE, "gradcheck: input %d: relative error %.3g at element %lld "
                                              "(analytic %.6g, numeric %.6g)",
                                i, worst, (long long)worst_j, analytic[worst_j], numeric[worst_j]);
        tg__free(numeric);
    }
    if (rc == 0) rc = first_bad;
    tg_tape_set_grad_enabled(t, was);
    /* the analytic gradients stay in the inputs, as a backward would leave them */
    tg_tape_reset(t);
    tg_tape_seed(t, o.seed);
done:
    tg__free(r);
    tg__free(analytic);
    tg_tape_free(t);
    return rc;
}
