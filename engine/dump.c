/* dump.c: tape dumps. tg_tape_dump writes what a step did, one line per node
 * (shapes, saved state, FLOPs, times, gradient norms, the op's own statistics),
 * then the same nodes' speed (FLOPs both ways, GFLOP/s, share of the FMA peak,
 * bytes moved, FLOPs per byte, kernel paths), the parameters, totals, and a
 * diagnosis; tg_tape_dot writes the same tape as a Graphviz graph, layers as
 * clusters, coloured by time or by gradient. The engine knows no op by name:
 * everything op-specific comes from the descriptor's optional describe, flops,
 * flops_backward, bytes, stats, diagnose, window and variant callbacks
 * (conv2d+relu: the op's name, then what the node fuses) and the kernel paths
 * the op notes in the node; the gradient-flow finding reads only the |dy|. */
#include "internal.h"
#include <math.h>
#include <string.h>

/* A leaf that takes a gradient is a parameter; other leaves are inputs (as tg__label says). */
static bool is_param(const tg_tensor *x) { return !x->node && x->requires_grad; }

static double l2_norm(const float *v, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)v[i] * v[i];
    return sqrt(s);
}

/* 14450688 -> "14.5 M" (base 1000), or "13.8 Mi" for bytes (base 1024) */
static const char *human(double v, bool bytes, char *buf, size_t len) {
    const char *unit[] = {" ", " K", " M", " G", " T"};
    double base = bytes ? 1024 : 1000;
    int u = 0;
    while (v >= base && u < 4) v /= base, u++;
    snprintf(buf, len, u ? "%.1f%s%s" : "%.0f%s%s", v, unit[u], bytes && u ? "i" : "");
    return buf;
}

static int64_t node_flops(const tg_node *n) { return n->op->flops ? n->op->flops(n) : -1; }

/* The node's vjp ran in the last sweep: its output has a gradient and the vjp was timed
 * (a node off the path to the loss gets a zeroed gradient and no vjp) */
bool tg__backward_ran(const tg_node *n) { return n->out->grad && n->t_backward_start > 0; }

/* Backward FLOPs of a node whose vjp ran; -1 without a count (or before backward) */
int64_t tg__node_flops_backward(const tg_node *n) {
    return n->op->flops_backward && tg__backward_ran(n) ? n->op->flops_backward(n) : -1;
}

/* Bytes the forward (or the vjp) read and wrote: the op's own count, else the default
 * tapegrad_op.h describes (4 bytes a float); -1 for a vjp that did not run */
int64_t tg__node_bytes(const tg_node *n, bool backward) {
    if (backward && !tg__backward_ran(n)) return -1;
    int64_t b = n->op->bytes ? n->op->bytes(n, backward) : -1;
    if (b >= 0) return b;
    bool view = n->op->aliases_input; /* the output is the input's memory: forward moves nothing */
    if (!backward) {
        if (view) return 0;
        b = 4 * n->out->size + (int64_t)n->saved_bytes;
        for (int i = 0; i < n->n_in; i++) b += 4 * n->in[i]->size;
        return b;
    }
    b = 4 * n->out->size + (int64_t)n->saved_bytes;
    for (int i = 0; i < n->n_in; i++) {
        if (!view) b += 4 * n->in[i]->size;
        if (n->in[i]->requires_grad) b += (n->store[i] ? 4 : 8) * n->in[i]->size;
    }
    return b;
}

/* RMS of the output's gradient per element, or -1 where the vjp did not run */
static double dy_rms(const tg_node *n) {
    if (!tg__backward_ran(n) || n->out->size < 1) return -1;
    double s = l2_norm(n->out->grad, n->out->size);
    return s / sqrt((double)n->out->size);
}

/* L2 norm of the output's gradient (the dump's |dy|), or -1 where the vjp did not run */
static double dy_norm(const tg_node *n) { return tg__backward_ran(n) ? l2_norm(n->out->grad, n->out->size) : -1; }

/* What the node fuses into its op ("relu"), or NULL */
static const char *node_variant(const tg_node *n) { return n->op->variant ? n->op->variant(n) : NULL; }

/* The op's name as dumps show it: "conv2d", or "conv2d+relu" for a fused variant */
static const char *node_name(const tg_node *n, char *buf, size_t len) {
    const char *v = node_variant(n);
    if (!v || !v[0]) return n->op->name;
    snprintf(buf, len, "%s+%s", n->op->name, v);
    return buf;
}

static bool same_variant(const char *a, const char *b) {
    return (!a || !a[0]) ? (!b || !b[0]) : (b && strcmp(a, b) == 0);
}

static int64_t node_params(const tg_node *n) {
    int64_t p = 0;
    for (int i = 0; i < n->n_in; i++)
        if (is_param(n->in[i])) p += n->in[i]->size;
    return p;
}

// ----------------------------------------------------------------------------
// what the dump gathers over the whole tape before printing

typedef struct {
    const tg_tensor *x;
    int first_use;            /* the id of the first node that reads it */
} leaf;

typedef struct {
    const tg_op *op;
    const tg_node *first;     /* the first node of this op and variant, for its name */
    int nodes;
    int64_t flops;            /* -1 when the op has no flops callback */
    int64_t flops_backward;   /* of the nodes whose vjp ran; -1 when the op has no flops_backward */
    double t_forward, t_backward;
    size_t saved;
} op_total;

typedef struct {
    int n;                    /* nodes */
    double *rf, *jump;        /* receptive field and jump (input pixels per output step), by node id */
    leaf *leaves;             /* every distinct leaf input, in order of first use */
    int n_leaves;
    op_total *ops;
    int n_ops;
} survey;

static void survey_release(survey *s) {
    tg__free(s->rf);
    tg__free(s->leaves);
    tg__free(s->ops);
}

/* The receptive field along windowed ops: rf_out = rf_in + (span-1)*jump_in and
 * jump_out = jump_in*stride/up (a fraction of a pixel after upsampling); other
 * ops keep their inputs' (the largest, for joins). */
static void receptive_fields(const tg_tape *t, survey *s) {
    for (const tg_node *n = t->first; n; n = n->next) {
        double rf = 0, jump = 0; /* the inputs' largest; 1 and 1 at the network's input */
        for (int i = 0; i < n->n_in; i++) {
            const tg_node *p = n->in[i]->node;
            if (p && p->id < n->id) {
                rf = s->rf[p->id] > rf ? s->rf[p->id] : rf;
                jump = s->jump[p->id] > jump ? s->jump[p->id] : jump;
            }
        }
        if (rf == 0) rf = 1, jump = 1;
        if (n->op->window) {
            int span = 1, stride = 1, up = 1;
            n->op->window(n, &span, &stride, &up);
            rf += (span - 1) * jump;
            jump = jump * stride / up;
        }
        s->rf[n->id] = rf;
        s->jump[n->id] = jump;
    }
}

static int survey_init(survey *s, const tg_tape *t) {
    memset(s, 0, sizeof *s);
    s->n = t->n_nodes;
    size_t n = (size_t)(s->n ? s->n : 1);
    s->rf = tg__malloc(2 * n * sizeof *s->rf);
    s->leaves = tg__malloc(n * TG_MAX_INPUTS * sizeof *s->leaves);
    s->ops = tg__malloc(n * sizeof *s->ops);
    if (!s->rf || !s->leaves || !s->ops) {
        survey_release(s);
        return tg_fail(TG_ERR_NOMEM, "tape_dump: out of memory");
    }
    s->jump = s->rf + n;
    receptive_fields(t, s);
    for (const tg_node *n = t->first; n; n = n->next) {
        for (int i = 0; i < n->n_in; i++) {
            const tg_tensor *x = n->in[i];
            if (x->node) continue;
            int j = 0;
            while (j < s->n_leaves && s->leaves[j].x != x) j++;
            if (j == s->n_leaves) s->leaves[s->n_leaves++] = (leaf){x, n->id};
        }
        int k = 0;
        while (k < s->n_ops && (s->ops[k].op != n->op || !same_variant(node_variant(s->ops[k].first), node_variant(n))))
            k++;
        if (k == s->n_ops) s->ops[s->n_ops++] = (op_total){n->op, n, 0, 0, 0, 0, 0, 0};
        op_total *o = &s->ops[k];
        int64_t f = node_flops(n), fb = tg__node_flops_backward(n);
        o->nodes++;
        o->flops = (o->flops < 0 || f < 0) ? -1 : o->flops + f;
        if (!n->op->flops_backward) o->flops_backward = -1;
        else if (o->flops_backward >= 0 && fb > 0) o->flops_backward += fb;
        o->t_forward += n->t_forward;
        o->t_backward += n->t_backward;
        o->saved += n->saved_bytes;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// the text dump

static void print_node(const tg_node *n, const survey *s, FILE *f) {
    char id[16], shape[64], rf[24] = "-", flops[24] = "-", dy[24] = "-", bwd[24] = "-", buf[512], name[64];
    snprintf(id, sizeof id, "%%%d", n->id);
    tg_shape_str(n->out, shape, sizeof shape);
    if (n->out->ndim == 4) snprintf(rf, sizeof rf, "%.0f", ceil(s->rf[n->id] - 1e-9)); /* whole input pixels */
    int64_t fl = node_flops(n);
    if (fl >= 0) snprintf(flops, sizeof flops, "%lld", (long long)fl);
    if (n->out->grad) {
        snprintf(dy, sizeof dy, "%.3e", l2_norm(n->out->grad, n->out->size));
        snprintf(bwd, sizeof bwd, "%.3f", 1e3 * n->t_backward);
    }
    fprintf(f, "%6s %-27s %-14s %-13s %4s %9zu %-16s %11s %8lld %8.3f %8s %10s  ", id, node_name(n, name, sizeof name),
            n->scope ? n->scope : "-", shape, rf,
            n->saved_bytes, n->saved_bytes ? (n->saved_what ? n->saved_what : "?") : "-", flops,
            (long long)node_params(n), 1e3 * n->t_forward, bwd, dy);
    for (int i = 0; i < n->n_in; i++) fprintf(f, "%s%s", i ? " " : "", tg__label(n->in[i], buf, sizeof buf));
    buf[0] = '\0';
    if (n->op->describe) n->op->describe(n, buf, sizeof buf);
    if (buf[0]) fprintf(f, " | %s", buf);
    buf[0] = '\0';
    if (n->op->stats) n->op->stats(n, buf, sizeof buf);
    if (buf[0]) fprintf(f, " | %s", buf);
    fputc('\n', f);
}

/* "12.34" GFLOP/s of flops in seconds, or "-" */
static const char *rate(int64_t flops, double seconds, char *buf, size_t len) {
    if (flops < 0 || seconds <= 0) return "-";
    snprintf(buf, len, "%.2f", 1e-9 * (double)flops / seconds);
    return buf;
}

/* "12.3" percent of the FMA peak, or "-" */
static const char *share(int64_t flops, double seconds, double peak, char *buf, size_t len) {
    if (flops < 0 || seconds <= 0 || peak <= 0) return "-";
    snprintf(buf, len, "%.1f", 100 * 1e-9 * (double)flops / seconds / peak);
    return buf;
}

/* FLOPs per byte, or "-" */
static const char *intensity(int64_t flops, int64_t bytes, char *buf, size_t len) {
    if (flops < 0 || bytes <= 0) return "-";
    snprintf(buf, len, "%.3f", (double)flops / (double)bytes);
    return buf;
}

static const char *count_or_dash(int64_t v, char *buf, size_t len) {
    if (v < 0) return "-";
    snprintf(buf, len, "%lld", (long long)v);
    return buf;
}

/* The second table: each node's speed, forward and backward */
static void print_speed(const tg_tape *t, double peak, FILE *f) {
    fprintf(f, "\n# speed: GFLOP/s from each node's times, %% of the FMA peak (%.1f GFLOP/s, tg_fma_peak), bytes "
               "moved, FLOPs per byte\n", peak);
    fprintf(f, "#%5s %-27s %12s %12s %8s %8s %6s %6s %11s %11s %7s %7s  %s\n", "id", "op", "fwd flops", "bwd flops",
            "fwd GF/s", "bwd GF/s", "fwd %", "bwd %", "fwd bytes", "bwd bytes", "fwd F/B", "bwd F/B",
            "kernel fwd | bwd");
    for (const tg_node *n = t->first; n; n = n->next) {
        char id[16], name[64], c[4][24], r[2][24], p[2][24], b[2][24], in[2][24];
        int64_t fl = node_flops(n), fb = tg__node_flops_backward(n);
        int64_t bf = tg__node_bytes(n, false), bb = tg__node_bytes(n, true);
        snprintf(id, sizeof id, "%%%d", n->id);
        fprintf(f, "%6s %-27s %12s %12s %8s %8s %6s %6s %11s %11s %7s %7s  %s | %s\n", id,
                node_name(n, name, sizeof name), count_or_dash(fl, c[0], 24), count_or_dash(fb, c[1], 24),
                rate(fl, n->t_forward, r[0], 24), rate(fb, n->t_backward, r[1], 24),
                share(fl, n->t_forward, peak, p[0], 24), share(fb, n->t_backward, peak, p[1], 24),
                count_or_dash(bf, b[0], 24), count_or_dash(bb, b[1], 24), intensity(fl, bf, in[0], 24),
                intensity(fb, bb, in[1], 24), n->kernel_forward ? n->kernel_forward : "-",
                n->kernel_backward ? n->kernel_backward : "-");
    }
}

static void print_params(const survey *s, FILE *f) {
    int n = 0;
    int64_t elements = 0;
    for (int i = 0; i < s->n_leaves; i++)
        if (is_param(s->leaves[i].x)) n++, elements += s->leaves[i].x->size;
    fprintf(f, "\n# parameters: %d tensors, %lld elements\n", n, (long long)elements);
    if (!n) return;
    fprintf(f, "#  %-24s %-13s %9s %6s %10s %10s %10s\n", "name", "shape", "elements", "used", "|w|", "|dw|",
            "|dw|/|w|");
    for (int i = 0; i < s->n_leaves; i++) {
        const tg_tensor *x = s->leaves[i].x;
        if (!is_param(x)) continue;
        char name[TG_NAME_LEN], shape[64], use[16], dw[24] = "-", ratio[24] = "-";
        double w = l2_norm(x->data, x->size);
        if (x->grad) {
            double g = l2_norm(x->grad, x->size);
            snprintf(dw, sizeof dw, "%.3e", g);
            if (w > 0) snprintf(ratio, sizeof ratio, "%.3e", g / w);
        }
        snprintf(use, sizeof use, "%%%d", s->leaves[i].first_use);
        fprintf(f, "   %-24s %-13s %9lld %6s %10.3e %10s %10s\n", tg__label(x, name, sizeof name),
                tg_shape_str(x, shape, sizeof shape), (long long)x->size, use, w, dw, ratio);
    }
}

static void print_totals(const tg_tape *t, const survey *s, double peak, FILE *f) {
    int64_t flops = 0, flops_b = 0, params = 0;
    bool all_flops = true, all_b = true;
    size_t saved = 0;
    double fwd = 0, bwd = 0;
    char h1[32], h2[32], h3[32], h4[32];
    for (int k = 0; k < s->n_ops; k++) {
        const op_total *o = &s->ops[k];
        if (o->flops < 0) all_flops = false;
        else flops += o->flops;
        if (o->flops_backward < 0) all_b = false;
        else flops_b += o->flops_backward;
        saved += o->saved, fwd += o->t_forward, bwd += o->t_backward;
    }
    for (int i = 0; i < s->n_leaves; i++)
        if (is_param(s->leaves[i].x)) params += s->leaves[i].x->size;

    fprintf(f, "\n# by op %22s %5s %13s %13s %9s %9s %11s\n", "", "nodes", "flops", "bwd flops", "fwd ms", "bwd ms",
            "saved");
    for (int k = 0; k < s->n_ops; k++) {
        const op_total *o = &s->ops[k];
        char fl[24], fb[24], name[64];
        fprintf(f, "#  %-27s %5d %13s %13s %9.3f %9.3f %11zu\n", node_name(o->first, name, sizeof name), o->nodes,
                count_or_dash(o->flops, fl, sizeof fl), count_or_dash(o->flops_backward, fb, sizeof fb),
                1e3 * o->t_forward, 1e3 * o->t_backward, o->saved);
    }
    fprintf(f, "\n# total: %d nodes, %lld parameter elements, %zu bytes saved for backward (%sB), arena high-water "
               "%zu bytes (%sB)\n",
            s->n, (long long)params, saved, human((double)saved, true, h1, sizeof h1),
            tg_tape_arena_high_water(t), human((double)tg_tape_arena_high_water(t), true, h2, sizeof h2));
    double step = fwd + bwd, rate_step = step > 0 ? 1e-9 * (double)(flops + flops_b) / step : 0.0;
    fprintf(f, "# total: %lld forward FLOPs%s (%sFLOP), forward %.3f ms (%.2f GFLOP/s), backward %.3f ms\n",
            (long long)flops, all_flops ? "" : " (ops without a count left out)",
            human((double)flops, false, h3, sizeof h3), 1e3 * fwd, fwd > 0 ? 1e-9 * (double)flops / fwd : 0.0,
            1e3 * bwd);
    fprintf(f, "# total: %lld backward FLOPs%s (%sFLOP, %.2f GFLOP/s); the step: %.3f ms, %.2f GFLOP/s, %.1f%% of "
               "the FMA peak (%.1f GFLOP/s)\n",
            (long long)flops_b, all_b ? "" : " (ops without a count left out)",
            human((double)flops_b, false, h4, sizeof h4), bwd > 0 ? 1e-9 * (double)flops_b / bwd : 0.0, 1e3 * step,
            rate_step, peak > 0 ? 100 * rate_step / peak : 0.0, peak);
    tg_tape_mem m;
    tg_tape_memory(t, &m);
    const tg_tape_mem_split *p = &m.peak;
    char ha[32], hs[32], hg[32], hc[32], hr[32];
    fprintf(f, "# memory at the arena's peak (%sB): activations %sB, saved for backward %sB, gradients %sB, "
               "scratch %sB, the tape's records %sB\n", human((double)p->total, true, h1, sizeof h1),
            human((double)p->activations, true, ha, sizeof ha), human((double)p->saved, true, hs, sizeof hs),
            human((double)p->grads, true, hg, sizeof hg), human((double)p->scratch, true, hc, sizeof hc),
            human((double)p->records, true, hr, sizeof hr));
}

// ----------------------------------------------------------------------------
// the diagnosis: what looks wrong in the step, with the numbers behind it

/* |dy| falling or growing this much along the tape is reported. The flow reads the L2 norm over the
 * whole output, not the rms per element: a layer with more elements spreads the same gradient
 * thinner, so the rms falls by the square root of the widening alone (267x from lenet's logits
 * back to its first conv, whose |dy| is 5.7x smaller, on a healthy first step). */
#define FLOW_FACTOR 100.0

/* "%3 conv2d+relu [3.conv1]" */
static const char *where(const tg_node *n, char *buf, size_t len) {
    char name[64];
    if (n->scope) snprintf(buf, len, "%%%d %s [%s]", n->id, node_name(n, name, sizeof name), n->scope);
    else snprintf(buf, len, "%%%d %s", n->id, node_name(n, name, sizeof name));
    return buf;
}

/* The nodes the gradient flow reads: a 2-D or 4-D output with a finite, nonzero |dy| */
static double flow_value(const tg_node *n) {
    if (n->out->ndim != 2 && n->out->ndim != 4) return -1;
    double v = dy_norm(n);
    return v > 0 && isfinite(v) ? v : -1;
}

/* The largest step between neighbouring flow nodes going back from a to b: a fall (or a growth),
 * into the node returned, by *ratio */
static const tg_node *steepest(const tg_node *a, const tg_node *b, bool falling, double *ratio) {
    const tg_node *best = NULL;
    double v_prev = flow_value(a);
    *ratio = 1;
    for (const tg_node *n = a->prev; n && n->id >= b->id; n = n->prev) {
        double v = flow_value(n);
        if (v < 0) continue;
        double r = falling ? v_prev / v : v / v_prev;
        if (r > *ratio) *ratio = r, best = n;
        v_prev = v;
    }
    return best;
}

/* One finding of the gradient flow: what, by how much going back from node a to node b, the
 * steepest single step on the way, and the remedies. Returns 1. */
static int print_flow(FILE *f, const char *what, double factor, const tg_node *from, const tg_node *to, bool falling,
                      const char *remedies) {
    char a[128], b[128], c[128];
    double r;
    const tg_node *st = steepest(from, to, falling, &r);
    fprintf(f, "#  %s %.3gx (%.1f orders of magnitude) going back from %s (%.3g) to %s (%.3g)", what, factor,
            log10(factor), where(from, a, sizeof a), dy_norm(from), where(to, b, sizeof b), dy_norm(to));
    if (st) fprintf(f, ", by %.3gx at most in one step, into %s", r, where(st, c, sizeof c));
    fprintf(f, ". %s\n", remedies);
    return 1;
}

/* Gradient flow: |dy| at each node with a 2-D or 4-D output, from the loss back to the first
 * node. The largest fall (a node's value against the largest one nearer the loss) and the largest
 * growth; either 100-fold or more is a finding. Returns how many findings it printed. */
static int diagnose_flow(const tg_tape *t, FILE *f) {
    const tg_node *hi = NULL, *lo = NULL;          /* the largest and smallest so far, from the loss */
    const tg_node *fall_a = NULL, *fall_b = NULL;  /* the largest fall: from a (nearer the loss) to b */
    const tg_node *grow_a = NULL, *grow_b = NULL;
    const tg_node *first = NULL, *last = NULL;
    double fall = 1, grow = 1, v_hi = 0, v_lo = 0;
    int n_seen = 0;
    for (const tg_node *n = t->last; n; n = n->prev) {
        double v = flow_value(n);
        if (v < 0) continue;
        if (!last) last = n;
        first = n, n_seen++;
        if (!hi || v > v_hi) hi = n, v_hi = v;
        if (!lo || v < v_lo) lo = n, v_lo = v;
        if (v_hi / v > fall) fall = v_hi / v, fall_a = hi, fall_b = n;
        if (v / v_lo > grow) grow = v / v_lo, grow_a = lo, grow_b = n;
    }
    if (!n_seen) {
        fprintf(f, "#  gradient flow: no node with a 2-D or 4-D output has a gradient yet (run tg_backward)\n");
        return 0;
    }
    int found = 0;
    if (fall >= FLOW_FACTOR)
        found += print_flow(f, "vanishing gradient: |dy| falls", fall, fall_a, fall_b, true,
                            "The layers before it barely learn. Usual remedies: residual connections, batch norm, "
                            "ReLU instead of sigmoid or tanh, an initialisation scaled to the fan-in (He, Xavier)");
    if (grow >= FLOW_FACTOR)
        found += print_flow(f, "exploding gradient: |dy| grows", grow, grow_a, grow_b, false,
                            "Usual remedies: a lower learning rate, gradient clipping (tg_clip_grad_norm), "
                            "normalisation (batch norm), a smaller initialisation");
    char a[128], b[128];
    if (!found)
        fprintf(f, "#  gradient flow: |dy| stays within %gx along the tape (%.3g at %s, the last; %.3g at %s, "
                   "the first; %d nodes)\n", FLOW_FACTOR, dy_norm(last), where(last, a, sizeof a), dy_norm(first),
                where(first, b, sizeof b), n_seen);
    return found;
}

static void print_diagnosis(const tg_tape *t, FILE *f) {
    fprintf(f, "\n# diagnosis\n");
    int found = diagnose_flow(t, f);
    char buf[512], w[128];
    for (const tg_node *n = t->first; n; n = n->next) {
        if (!n->op->diagnose) continue;
        buf[0] = '\0';
        n->op->diagnose(n, buf, sizeof buf);
        if (!buf[0]) continue;
        fprintf(f, "#  %s: %s\n", where(n, w, sizeof w), buf);
        found++;
    }
    if (!found) fprintf(f, "#  nothing looks wrong\n");
}

int tg_tape_op_totals(const tg_tape *t, tg_op_total *out, int max) {
    if (!t) return tg_fail(TG_ERR_ARG, "tape_op_totals: tape is NULL");
    if (max < 0 || (max > 0 && !out)) return tg_fail(TG_ERR_ARG, "tape_op_totals: room for %d at %p", max, (void *)out);
    survey s;
    int rc = survey_init(&s, t);
    if (rc < 0) return rc;
    for (int k = 0; k < s.n_ops && k < max; k++) {
        const op_total *o = &s.ops[k];
        char name[64];
        snprintf(out[k].name, sizeof out[k].name, "%s", node_name(o->first, name, sizeof name));
        out[k].nodes = o->nodes, out[k].flops = o->flops, out[k].flops_backward = o->flops_backward;
        out[k].t_forward = o->t_forward, out[k].t_backward = o->t_backward;
    }
    int n = s.n_ops;
    survey_release(&s);
    return n;
}

int64_t tg_tape_flops(const tg_tape *t) {
    int64_t total = 0;
    for (const tg_node *n = t ? t->first : NULL; n; n = n->next) total += n->op->flops ? n->op->flops(n) : 0;
    return total;
}

int tg_tape_dump(const tg_tape *t, FILE *f) {
    if (!t || !f) return tg_fail(TG_ERR_ARG, "tape_dump: %s is NULL", t ? "file" : "tape");
    survey s;
    if (survey_init(&s, t) < 0) return TG_ERR_NOMEM;
    bool after_backward = t->last && t->last->out->grad;
    fprintf(f, "# tape: %d nodes%s\n", s.n,
            after_backward ? ", after backward" : " (before backward: no gradients yet)");
    fprintf(f, "#%5s %-27s %-14s %-13s %4s %9s %-16s %11s %8s %8s %8s %10s  %s\n", "id", "op", "layer", "output", "rf",
            "saved", "(what)", "flops", "params", "fwd ms", "bwd ms", "|dy|", "inputs | attributes | stats");
    for (const tg_node *n = t->first; n; n = n->next) print_node(n, &s, f);
    double peak = tg_fma_peak();
    print_speed(t, peak, f);
    print_params(&s, f);
    print_totals(t, &s, peak, f);
    print_diagnosis(t, f);
    survey_release(&s);
    fflush(f);
    return ferror(f) ? tg_fail(TG_ERR_IO, "tape_dump: write failed") : 0;
}

// ----------------------------------------------------------------------------
// Graphviz

/* Text inside a DOT string: quotes and backslashes escaped, a newline as \n, other control characters dropped. */
static void dot_text(FILE *f, const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\n') fputs("\\n", f);
        else if (c < 0x20 || c == 0x7f) continue;
        else {
            if (c == '"' || c == '\\') fputc('\\', f);
            fputc(c, f);
        }
    }
}

/* A sequential colour scale: v in [0,1] from light to dark through the five anchors, as "#rrggbb" */
static const char *ramp(const unsigned char anchors[5][3], double v, char buf[8]) {
    v = v < 0 ? 0 : v > 1 ? 1 : v;
    double x = v * 4;
    int i = x >= 4 ? 3 : (int)x;
    double u = x - i;
    unsigned char rgb[3];
    for (int k = 0; k < 3; k++) rgb[k] = (unsigned char)lround(anchors[i][k] + u * (anchors[i + 1][k] - anchors[i][k]));
    snprintf(buf, 8, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
    return buf;
}
/* time: white, yellow, orange, red, dark red; |dy|: white to dark blue */
static const unsigned char time_ramp[5][3] = {{255, 255, 255}, {255, 236, 150}, {253, 174, 72}, {229, 91, 31},
                                               {150, 30, 10}};
static const unsigned char grad_ramp[5][3] = {{247, 251, 255}, {196, 219, 240}, {122, 176, 218}, {50, 120, 189},
                                               {12, 55, 120}};

/* The layers (node scopes, and every prefix of them at a '.') as a tree of clusters */
typedef struct {
    char **path;  /* distinct, each a tg__malloc'd copy */
    int n;
} scopes;

static void scopes_release(scopes *c) {
    for (int i = 0; i < c->n; i++) tg__free(c->path[i]);
    tg__free(c->path);
}

static int scope_find(const scopes *c, const char *p, size_t len) {
    for (int i = 0; i < c->n; i++)
        if (strlen(c->path[i]) == len && !strncmp(c->path[i], p, len)) return i;
    return -1;
}

static int scopes_init(scopes *c, const tg_tape *t) {
    int room = 0;
    c->n = 0;
    for (const tg_node *n = t->first; n; n = n->next)
        for (const char *p = n->scope; p && *p; p++) room += p == n->scope || *p == '.';
    c->path = tg__malloc((size_t)(room ? room : 1) * sizeof *c->path);
    if (!c->path) return tg_fail(TG_ERR_NOMEM, "tape_dot: out of memory");
    for (const tg_node *n = t->first; n; n = n->next) {
        if (!n->scope || !n->scope[0]) continue;
        size_t len = strlen(n->scope);
        for (size_t k = 1; k <= len; k++) { /* each prefix that ends at a '.' or the end */
            if (k < len && n->scope[k] != '.') continue;
            if (scope_find(c, n->scope, k) >= 0) continue;
            char *copy = tg__malloc(k + 1);
            if (!copy) {
                scopes_release(c);
                return tg_fail(TG_ERR_NOMEM, "tape_dot: out of memory");
            }
            memcpy(copy, n->scope, k);
            copy[k] = '\0';
            c->path[c->n++] = copy;
        }
    }
    return 0;
}

/* The cluster a parameter belongs to: its name without the last ".part" ("3.conv1.weight" in
 * "3.conv1"), if that is a layer on the tape; else -1 */
static int leaf_scope(const scopes *c, const tg_tensor *x) {
    const char *dot = x->name[0] ? strrchr(x->name, '.') : NULL;
    return dot && is_param(x) ? scope_find(c, x->name, (size_t)(dot - x->name)) : -1;
}

/* The parent of a path: itself without the last ".part", or -1 at the top */
static int scope_parent(const scopes *c, int i) {
    const char *dot = strrchr(c->path[i], '.');
    return dot ? scope_find(c, c->path[i], (size_t)(dot - c->path[i])) : -1;
}

typedef struct {
    int flags;
    double t_max;          /* the slowest node's forward + backward */
    double g_lo, g_hi;     /* the smallest and largest |dy| rms */
} dot_scale;

static void dot_leaf(FILE *f, const survey *s, int i) {
    char buf[512], shape[64];
    const tg_tensor *x = s->leaves[i].x;
    if (is_param(x)) fprintf(f, "  l%d [shape=ellipse, style=filled, fillcolor=\"#fbe0c3\", label=\"", i);
    else fprintf(f, "  l%d [shape=parallelogram, style=filled, fillcolor=\"#e3e3e3\", label=\"", i);
    dot_text(f, tg__label(x, buf, sizeof buf));
    fprintf(f, "\\n%s\"];\n", tg_shape_str(x, shape, sizeof shape));
}

static void dot_node(FILE *f, const tg_node *n, const dot_scale *sc) {
    char buf[512], name[64], h[32], h2[32], fill[8], pen[8];
    double time = n->t_forward + n->t_backward, g = dy_rms(n);
    double tv = sc->t_max > 0 ? time / sc->t_max : 0;
    double gv = g > 0 && sc->g_hi > sc->g_lo ? log(g / sc->g_lo) / log(sc->g_hi / sc->g_lo) : g > 0 ? 1 : 0;
    bool by_time = sc->flags & TG_DOT_TIME, by_grad = sc->flags & TG_DOT_GRAD;
    double v = by_time ? tv : gv;
    ramp(by_time ? time_ramp : grad_ramp, v, fill);
    fprintf(f, "  n%d [shape=box, style=\"rounded,filled\", fillcolor=\"%s\"%s", n->id, fill,
            v > 0.6 ? ", fontcolor=\"white\"" : "");
    if (by_time && by_grad) fprintf(f, ", penwidth=4, color=\"%s\"", g > 0 ? ramp(grad_ramp, gv, pen) : "#999999");
    fprintf(f, ", label=\"%%%d ", n->id);
    dot_text(f, node_name(n, name, sizeof name));
    if (n->scope) fprintf(f, " ["), dot_text(f, n->scope), fprintf(f, "]");
    buf[0] = '\0';
    if (n->op->describe) n->op->describe(n, buf, sizeof buf);
    if (buf[0]) fprintf(f, "\\n"), dot_text(f, buf);
    fprintf(f, "\\n%.3f ms (fwd %.3f + bwd %.3f)", 1e3 * time, 1e3 * n->t_forward, 1e3 * n->t_backward);
    if (g >= 0) fprintf(f, "\\n|dy| rms %.3g", g);
    int64_t fl = node_flops(n), fb = tg__node_flops_backward(n);
    if (fl >= 0) fprintf(f, "\\n%sFLOP fwd", human((double)fl, false, h, sizeof h));
    if (fb >= 0) fprintf(f, ", %sFLOP bwd", human((double)fb, false, h2, sizeof h2));
    if (n->saved_bytes) {
        fprintf(f, "\\nsaved %sB ", human((double)n->saved_bytes, true, h, sizeof h));
        dot_text(f, n->saved_what ? n->saved_what : "?");
    }
    fprintf(f, "\"];\n");
}

/* Cluster i: its nodes and parameters, then its children, nested */
static void dot_cluster(FILE *f, const tg_tape *t, const survey *s, const scopes *c, int i, const dot_scale *sc,
                        int depth) {
    if (i >= 0) {
        fprintf(f, "%*ssubgraph cluster_%d {\n%*s  label=\"", 2 * depth, "", i, 2 * depth, "");
        dot_text(f, c->path[i]);
        fprintf(f, "\"; style=\"rounded\"; color=\"#8c8c8c\"; fontsize=11;\n");
    }
    for (int j = 0; j < s->n_leaves; j++)
        if (leaf_scope(c, s->leaves[j].x) == i) fprintf(f, "%*s", 2 * depth, ""), dot_leaf(f, s, j);
    for (const tg_node *n = t->first; n; n = n->next) {
        int k = n->scope && n->scope[0] ? scope_find(c, n->scope, strlen(n->scope)) : -1;
        if (k == i) fprintf(f, "%*s", 2 * depth, ""), dot_node(f, n, sc);
    }
    for (int k = 0; k < c->n; k++)
        if (scope_parent(c, k) == i) dot_cluster(f, t, s, c, k, sc, depth + 1);
    if (i >= 0) fprintf(f, "%*s}\n", 2 * depth, "");
}

int tg_tape_dot_opts(const tg_tape *t, FILE *f, int flags) {
    if (!t || !f) return tg_fail(TG_ERR_ARG, "tape_dot: %s is NULL", t ? "file" : "tape");
    if (flags & ~(TG_DOT_TIME | TG_DOT_GRAD))
        return tg_fail(TG_ERR_ARG, "tape_dot: flags %#x: only TG_DOT_TIME and TG_DOT_GRAD", (unsigned)flags);
    if (!flags) flags = TG_DOT_TIME;
    survey s;
    if (survey_init(&s, t) < 0) return TG_ERR_NOMEM;
    scopes c;
    if (scopes_init(&c, t) < 0) {
        survey_release(&s);
        return TG_ERR_NOMEM;
    }
    dot_scale sc = {flags, 0, 0, 0};
    const tg_node *slowest = NULL;
    for (const tg_node *n = t->first; n; n = n->next) {
        double time = n->t_forward + n->t_backward, g = dy_rms(n);
        if (time > sc.t_max) sc.t_max = time, slowest = n;
        if (g > 0 && (sc.g_lo == 0 || g < sc.g_lo)) sc.g_lo = g;
        if (g > sc.g_hi) sc.g_hi = g;
    }
    char shape[64], w[128];
    fprintf(f, "digraph tape {\n"
               "  graph [rankdir=TB, fontname=\"Helvetica\", labelloc=t, label=\"");
    if (flags & TG_DOT_TIME) {
        fprintf(f, "fill: forward + backward time, white 0 ms to dark red %.3f ms", 1e3 * sc.t_max);
        if (slowest) fprintf(f, " ("), dot_text(f, where(slowest, w, sizeof w)), fprintf(f, ")");
    }
    if (flags & TG_DOT_GRAD) {
        fprintf(f, "%s|dy| rms (log scale), ", flags & TG_DOT_TIME ? "\\nborder: " : "fill: ");
        if (sc.g_hi > 0) fprintf(f, "light %.3g to dark blue %.3g", sc.g_lo, sc.g_hi);
        else fprintf(f, "none yet (before backward)");
    }
    fprintf(f, "\"];\n"
               "  node [fontname=\"Helvetica\", fontsize=10];\n"
               "  edge [fontname=\"Helvetica\", fontsize=9, color=\"#555555\"];\n");
    dot_cluster(f, t, &s, &c, -1, &sc, 0);
    for (const tg_node *n = t->first; n; n = n->next)
        for (int i = 0; i < n->n_in; i++) {
            const tg_tensor *x = n->in[i];
            if (x->node) {
                fprintf(f, "  n%d -> n%d", x->node->id, n->id);
            } else {
                int j = 0;
                while (s.leaves[j].x != x) j++;
                fprintf(f, "  l%d -> n%d", j, n->id);
            }
            fprintf(f, " [label=\"%s\"];\n", tg_shape_str(x, shape, sizeof shape));
        }
    fprintf(f, "}\n");
    scopes_release(&c);
    survey_release(&s);
    fflush(f);
    return ferror(f) ? tg_fail(TG_ERR_IO, "tape_dot: write failed") : 0;
}

int tg_tape_dot(const tg_tape *t, FILE *f) { return tg_tape_dot_opts(t, f, TG_DOT_TIME); }
