/* sched.c: learning-rate schedules as objects with a position, as PyTorch's
 * lr_scheduler: LinearLR, StepLR, CosineAnnealingLR and OneCycleLR, each
 * optionally after a linear warm-up (SequentialLR of a LinearLR and it).
 *
 * Each is computed in closed form from the position (PyTorch's step() uses
 * recursive forms for some, equal to these within a few units of the last
 * place of a double), so the position is the whole state: a checkpoint holds
 * it and a resumed run continues on the same curve. */
#include "nn_internal.h"
#include <math.h>
#include <string.h>

#define PI 3.14159265358979323846

struct tg_sched {
    tg_sched_opts o;
    tg_optim *optim;              /* borrowed */
    int n_groups;
    double base[TG__MAX_GROUPS];      /* each group's lr when the schedule was made (max_lr for one-cycle) */
    tg_tensor *pos;               /* "sched.step": steps taken; a float holds every count up to 2^24 exactly */
    tg_tensor *state[1];
};

static const char *kind_name(tg_sched_kind k) {
    static const char *const names[] = {"constant", "linear", "step", "cosine", "one_cycle"};
    return k >= 0 && k <= TG_SCHED_ONE_CYCLE ? names[k] : "unknown";
}

static int check_opts(tg_sched_opts *o) {
    const char *k = kind_name(o->kind);
    if (o->kind < TG_SCHED_CONSTANT || o->kind > TG_SCHED_ONE_CYCLE)
        return tg_fail(TG_ERR_ARG, "sched: kind %d is not a schedule", (int)o->kind);
    if (o->warmup < 0) return tg_fail(TG_ERR_ARG, "sched (%s): warmup %d: must be >= 0", k, o->warmup);
    if (o->kind == TG_SCHED_ONE_CYCLE && o->warmup)
        return tg_fail(TG_ERR_ARG, "sched (one_cycle): warmup %d: one-cycle warms up itself (pct_start)", o->warmup);
    switch (o->kind) {
    case TG_SCHED_LINEAR:
        if (o->steps < 1 || !isfinite(o->start_factor) || !isfinite(o->end_factor) || !(o->start_factor > 0) ||
            !(o->start_factor <= 1) || !(o->end_factor >= 0) || !(o->end_factor <= 1))
            return tg_fail(TG_ERR_ARG, "sched (linear): steps %d, start_factor %g, end_factor %g: need steps >= 1, "
                           "start_factor in (0, 1], end_factor in [0, 1] (PyTorch's LinearLR)", o->steps,
                           o->start_factor, o->end_factor);
        break;
    case TG_SCHED_STEP:
        if (o->step_size < 1 || !isfinite(o->gamma) || !(o->gamma >= 0))
            return tg_fail(TG_ERR_ARG, "sched (step): step_size %d, gamma %g: need step_size >= 1 and gamma "
                           "finite and >= 0", o->step_size, o->gamma);
        break;
    case TG_SCHED_COSINE:
        if (o->steps < 1 || !isfinite(o->eta_min) || !(o->eta_min >= 0))
            return tg_fail(TG_ERR_ARG, "sched (cosine): steps %d, eta_min %g: need steps (T_max) >= 1 and eta_min "
                           "finite and >= 0", o->steps, o->eta_min);
        break;
    case TG_SCHED_ONE_CYCLE:
        if (o->pct_start == 0) o->pct_start = 0.3;
        if (o->div_factor == 0) o->div_factor = 25;
        if (o->final_div_factor == 0) o->final_div_factor = 1e4;
        if (o->steps < 2 || !(o->pct_start > 0 && o->pct_start < 1) || !isfinite(o->div_factor) ||
            !(o->div_factor > 0) || !isfinite(o->final_div_factor) || !(o->final_div_factor > 0))
            return tg_fail(TG_ERR_ARG, "sched (one_cycle): steps %d, pct_start %g, div_factor %g, final_div_factor "
                           "%g: need steps >= 2, pct_start in (0, 1), the factors finite and > 0", o->steps,
                           o->pct_start, o->div_factor, o->final_div_factor);
        break;
    default:
        break;
    }
    return 0;
}

static double anneal_cos(double start, double end, double pct) { return end + (start - end) / 2 * (cos(PI * pct) + 1); }

/* The lr at position t for a group whose base lr is base. */
static double lr_at(const tg_sched_opts *o, double base, int64_t t) {
    if (o->warmup > 0) {
        /* LinearLR(start_factor 1/warmup, end_factor 1, total_iters warmup - 1), then the schedule from 0 */
        if (t < o->warmup) return o->warmup == 1 ? base : base * (1.0 / o->warmup + (1 - 1.0 / o->warmup) *
                                                                  (double)t / (o->warmup - 1));
        t -= o->warmup;
    }
    switch (o->kind) {
    case TG_SCHED_LINEAR: {
        double f = t >= o->steps ? o->end_factor
                                 : o->start_factor + (o->end_factor - o->start_factor) * (double)t / o->steps;
        return base * f;
    }
    case TG_SCHED_STEP: return base * pow(o->gamma, (double)(t / o->step_size));
    case TG_SCHED_COSINE: return o->eta_min + (base - o->eta_min) * (1 + cos(PI * (double)t / o->steps)) / 2;
    case TG_SCHED_ONE_CYCLE: {
        double initial = base / o->div_factor, min_lr = initial / o->final_div_factor;
        double end_up = o->pct_start * o->steps - 1, end = o->steps - 1;
        if (t > o->steps - 1) t = o->steps - 1; /* PyTorch refuses to step past the end; this stays there */
        if ((double)t <= end_up) return anneal_cos(initial, base, (double)t / end_up);
        return anneal_cos(base, min_lr, ((double)t - end_up) / (end - end_up));
    }
    default: return base;
    }
}

int tg_sched_apply(tg_sched *s) {
    if (!s) return tg_fail(TG_ERR_ARG, "sched_apply: schedule is NULL");
    int64_t t = (int64_t)s->pos->data[0];
    if (!(s->pos->data[0] >= 0) || (float)t != s->pos->data[0])
        return tg_fail(TG_ERR_STATE, "sched (%s): position %g is not a step count (a damaged checkpoint?)",
                       kind_name(s->o.kind), (double)s->pos->data[0]);
    if (tg_optim_groups(s->optim) != s->n_groups)
        return tg_fail(TG_ERR_STATE, "sched (%s): the optimizer has %d parameter groups, the schedule was made for %d",
                       kind_name(s->o.kind), tg_optim_groups(s->optim), s->n_groups);
    for (int g = 0; g < s->n_groups; g++)
        if (tg_optim_set_lr(s->optim, g, lr_at(&s->o, s->base[g], t)) < 0) return tg_last_error_code();
    return 0;
}

tg_sched *tg_sched_new(tg_optim *optim, tg_sched_opts opts) {
    if (!optim) {
        tg_fail(TG_ERR_ARG, "sched: optimizer is NULL");
        return NULL;
    }
    if (check_opts(&opts) < 0) return NULL;
    tg_sched *s = tg__calloc(1, sizeof *s);
    if (!s || !(s->pos = tg_tensor_new(1, (int[]){1}))) {
        tg__free(s);
        tg_fail(TG_ERR_NOMEM, "sched: out of memory");
        return NULL;
    }
    tg_tensor_set_name(s->pos, "sched.step");
    s->state[0] = s->pos;
    s->o = opts, s->optim = optim, s->n_groups = tg_optim_groups(optim);
    for (int g = 0; g < s->n_groups; g++) s->base[g] = tg_optim_lr(optim, g);
    if (tg_sched_apply(s) < 0) { /* as PyTorch's constructor: the optimizer gets step 0's lr */
        tg_sched_free(s);
        return NULL;
    }
    return s;
}

void tg_sched_free(tg_sched *s) {
    if (!s) return;
    tg_tensor_free(s->pos);
    tg__free(s);
}

int tg_sched_step(tg_sched *s) {
    if (!s) return tg_fail(TG_ERR_ARG, "sched_step: schedule is NULL");
    if (s->pos->data[0] >= 16777216.0f)
        return tg_fail(TG_ERR_STATE, "sched (%s): 2^24 steps is as far as it counts", kind_name(s->o.kind));
    s->pos->data[0] += 1;
    return tg_sched_apply(s);
}

double tg_sched_lr(const tg_sched *s, int group) {
    if (!s || group < 0 || group >= s->n_groups) return 0;
    return lr_at(&s->o, s->base[group], (int64_t)s->pos->data[0]);
}

int64_t tg_sched_position(const tg_sched *s) { return s ? (int64_t)s->pos->data[0] : 0; }

int tg_sched_state(tg_sched *s, tg_tensor ***state) {
    if (!s || !state) return tg_fail(TG_ERR_ARG, "sched_state: %s is NULL", !s ? "schedule" : "state");
    *state = s->state;
    return 1;
}
