/* optim.c: one optimizer over SGD, Adam and AdamW, with parameter groups as
 * PyTorch's param_groups: each group its own learning rate and weight decay,
 * the other options shared. A group is an SGD or Adam of its own underneath. */
#include "nn_internal.h"
#include <math.h>
#include <string.h>


struct tg_optim {
    bool adam;                    /* else SGD */
    tg_sgd_opts sgd;              /* the first group's options */
    tg_adam_opts adam_opts;
    int n_groups;
    tg_sgd *sgd_group[TG__MAX_GROUPS];
    tg_adam *adam_group[TG__MAX_GROUPS];
    double lr[TG__MAX_GROUPS];        /* each group's lr as last set, in double as PyTorch's param_groups hold it */
    tg_tensor **params;           /* every group's parameters, in order, to refuse one listed twice */
    int n_params;
    tg_tensor **state;            /* every group's state, in order */
    int n_state;
};

static int add_group(tg_optim *o, tg_tensor *const *params, int n, double lr, double weight_decay) {
    const char *who = o->adam ? "optim (adam)" : "optim (sgd)";
    if (o->n_groups == TG__MAX_GROUPS)
        return tg_fail(TG_ERR_ARG, "%s: at most %d parameter groups", who, TG__MAX_GROUPS);
    if (tg__check_params(who, params, n) < 0) return TG_ERR_ARG;
    /* a parameter in two groups would be stepped twice (PyTorch refuses it too) */
    tg_tensor **all = tg__malloc((size_t)(o->n_params + n) * sizeof *all);
    if (!all) return tg_fail(TG_ERR_NOMEM, "%s: out of memory", who);
    if (o->n_params) memcpy(all, o->params, (size_t)o->n_params * sizeof *all);
    memcpy(all + o->n_params, params, (size_t)n * sizeof *all);
    if (tg__check_params(who, all, o->n_params + n) < 0) {
        tg__free(all);
        return TG_ERR_ARG;
    }
    int g = o->n_groups;
    tg_tensor **st = NULL;
    int ns;
    if (o->adam) {
        tg_adam_opts a = o->adam_opts;
        a.lr = lr, a.weight_decay = weight_decay;
        if (!(o->adam_group[g] = tg_adam_new(params, n, a))) goto fail;
        ns = tg_adam_state(o->adam_group[g], &st);
    } else {
        tg_sgd_opts s = o->sgd;
        s.lr = lr, s.weight_decay = (float)weight_decay;
        if (!(o->sgd_group[g] = tg_sgd_new(params, n, s))) goto fail;
        ns = tg_sgd_state(o->sgd_group[g], &st);
    }
    tg_tensor **state = tg__malloc((size_t)(o->n_state + ns) * sizeof *state);
    if (!state) {
        tg_fail(TG_ERR_NOMEM, "%s: out of memory", who);
        goto fail;
    }
    if (o->n_state) memcpy(state, o->state, (size_t)o->n_state * sizeof *state);
    memcpy(state + o->n_state, st, (size_t)ns * sizeof *state);
    /* the step counts ("sgd.steps", "adam.steps") are the group's last state tensor: one name each */
    if (g > 0) {
        char name[TG_NAME_LEN + 16];
        snprintf(name, sizeof name, "%s.%d", st[ns - 1]->name, g);
        tg_tensor_set_name(st[ns - 1], name);
    }
    tg__free(o->state), tg__free(o->params);
    o->state = state, o->n_state += ns;
    o->params = all, o->n_params += n;
    o->lr[g] = lr;
    o->n_groups++;
    return 0;
fail:
    tg__free(all);
    tg_adam_free(o->adam_group[g]), tg_sgd_free(o->sgd_group[g]);
    o->adam_group[g] = NULL, o->sgd_group[g] = NULL;
    return tg_last_error_code();
}

static tg_optim *make(bool adam, tg_sgd_opts s, tg_adam_opts a, tg_tensor *const *params, int n) {
    tg_optim *o = tg__calloc(1, sizeof *o);
    if (!o) {
        tg_fail(TG_ERR_NOMEM, "optim: out of memory");
        return NULL;
    }
    o->adam = adam, o->sgd = s, o->adam_opts = a;
    if (add_group(o, params, n, adam ? a.lr : s.lr, adam ? a.weight_decay : s.weight_decay) < 0) {
        tg_optim_free(o);
        return NULL;
    }
    return o;
}

tg_optim *tg_optim_sgd(tg_tensor *const *params, int n, tg_sgd_opts opts) {
    return make(false, opts, (tg_adam_opts){0}, params, n);
}

tg_optim *tg_optim_adam(tg_tensor *const *params, int n, tg_adam_opts opts) {
    return make(true, (tg_sgd_opts){0}, opts, params, n);
}

int tg_optim_add_group(tg_optim *o, tg_tensor *const *params, int n, double lr, double weight_decay) {
    if (!o) return tg_fail(TG_ERR_ARG, "optim_add_group: optimizer is NULL");
    return add_group(o, params, n, lr, weight_decay);
}

void tg_optim_free(tg_optim *o) {
    if (!o) return;
    for (int g = 0; g < o->n_groups; g++) tg_sgd_free(o->sgd_group[g]), tg_adam_free(o->adam_group[g]);
    tg__free(o->state);
    tg__free(o->params);
    tg__free(o);
}

int tg_optim_step(tg_optim *o) {
    if (!o) return tg_fail(TG_ERR_ARG, "optim_step: optimizer is NULL");
    /* every group steps even after one met a NaN, as each optimizer takes its step all the same;
     * the first group's error is the one reported */
    int rc = 0;
    for (int g = 0; g < o->n_groups; g++) {
        int r = o->adam ? tg_adam_step(o->adam_group[g]) : tg_sgd_step(o->sgd_group[g]);
        if (r < 0 && rc == 0) rc = r;
    }
    return rc;
}

void tg_optim_zero_grad(tg_optim *o) {
    for (int g = 0; o && g < o->n_groups; g++) {
        if (o->adam) tg_adam_zero_grad(o->adam_group[g]);
        else tg_sgd_zero_grad(o->sgd_group[g]);
    }
}

int tg_optim_groups(const tg_optim *o) { return o ? o->n_groups : 0; }

int tg_optim_set_lr(tg_optim *o, int group, double lr) {
    if (!o) return tg_fail(TG_ERR_ARG, "optim_set_lr: optimizer is NULL");
    if (group < -1 || group >= o->n_groups)
        return tg_fail(TG_ERR_ARG, "optim_set_lr: group %d: the optimizer has groups 0..%d (-1: all)", group,
                       o->n_groups - 1);
    if (!(lr >= 0) || !isfinite(lr)) return tg_fail(TG_ERR_ARG, "optim_set_lr: lr %g: must be finite and >= 0", lr);
    for (int g = group < 0 ? 0 : group; g < (group < 0 ? o->n_groups : group + 1); g++) {
        if (o->adam) tg_adam_set_lr(o->adam_group[g], lr);
        else tg_sgd_set_lr(o->sgd_group[g], (float)lr); /* it steps with the float */
        o->lr[g] = lr;
    }
    return 0;
}

double tg_optim_lr(const tg_optim *o, int group) {
    if (!o || group < 0 || group >= o->n_groups) return 0;
    return o->lr[group];
}

int tg_optim_state(tg_optim *o, tg_tensor ***state) {
    if (!o || !state) return tg_fail(TG_ERR_ARG, "optim_state: %s is NULL", !o ? "optimizer" : "state");
    *state = o->state;
    return o->n_state;
}

int tg_params_split_decay(tg_tensor *const *params, int n, tg_tensor **decay, tg_tensor **no_decay,
                          int *n_no_decay) {
    if (!params || !decay || !no_decay || !n_no_decay || n < 0)
        return tg_fail(TG_ERR_ARG, "params_split_decay: %s", n < 0 ? "n < 0" : "an argument is NULL");
    int nd = 0, nn = 0;
    for (int i = 0; i < n; i++) {
        if (!params[i]) return tg_fail(TG_ERR_ARG, "params_split_decay: parameter %d is NULL", i);
        if (params[i]->ndim >= 2) decay[nd++] = params[i];
        else no_decay[nn++] = params[i];
    }
    *n_no_decay = nn;
    return nd;
}
