/* dump.c: tape dumps. tg_tape_dump writes what a step did, one line per node
 * (shapes, saved state, FLOPs, times, gradient norms, the op's own statistics),
 * then the parameters and totals; tg_tape_dot writes the same tape as a
 * Graphviz graph. The engine knows no op by name: everything op-specific comes
 * from the descriptor's optional describe, flops, stats, window and variant
 * callbacks (conv2d+relu: the op's name, then what the node fuses). */
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
        if (k == s->n_ops) s->ops[s->n_ops++] = (op_total){n->op, n, 0, 0, 0, 0, 0};
        op_total *o = &s->ops[k];
        int64_t f = node_flops(n);
        o->nodes++;
        o->flops = (o->flops < 0 || f < 0) ? -1 : o->flops + f;
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
    fprintf(f, "%6s %-19s %-14s %-13s %4s %9zu %-10s %11s %8lld %8.3f %8s %10s  ", id, node_name(n, name, sizeof name),
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

static void print_totals(const tg_tape *t, const survey *s, FILE *f) {
    int64_t flops = 0, params = 0;
    bool all_flops = true;
    size_t saved = 0;
    double fwd = 0, bwd = 0;
    char h1[32], h2[32], h3[32];
    for (int k = 0; k < s->n_ops; k++) {
        const op_total *o = &s->ops[k];
        if (o->flops < 0) all_flops = false;
        else flops += o->flops;
        saved += o->saved, fwd += o->t_forward, bwd += o->t_backward;
    }
    for (int i = 0; i < s->n_leaves; i++)
        if (is_param(s->leaves[i].x)) params += s->leaves[i].x->size;

    fprintf(f, "\n# by op %14s %5s %13s %9s %9s %11s\n", "", "nodes", "flops", "fwd ms", "bwd ms", "saved");
    for (int k = 0; k < s->n_ops; k++) {
        const op_total *o = &s->ops[k];
        char fl[24] = "-", name[64];
        if (o->flops >= 0) snprintf(fl, sizeof fl, "%lld", (long long)o->flops);
        fprintf(f, "#  %-19s %5d %13s %9.3f %9.3f %11zu\n", node_name(o->first, name, sizeof name), o->nodes, fl, 1e3 * o->t_forward,
                1e3 * o->t_backward, o->saved);
    }
    fprintf(f, "\n# total: %d nodes, %lld parameter elements, %zu bytes saved for backward (%sB), arena high-water "
               "%zu bytes (%sB)\n",
            s->n, (long long)params, saved, human((double)saved, true, h1, sizeof h1),
            tg_tape_arena_high_water(t), human((double)tg_tape_arena_high_water(t), true, h2, sizeof h2));
    fprintf(f, "# total: %lld forward FLOPs%s (%sFLOP), forward %.3f ms (%.2f GFLOP/s), backward %.3f ms\n",
            (long long)flops, all_flops ? "" : " (ops without a count left out)",
            human((double)flops, false, h3, sizeof h3), 1e3 * fwd, fwd > 0 ? 1e-9 * (double)flops / fwd : 0.0,
            1e3 * bwd);
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
        out[k].nodes = o->nodes, out[k].flops = o->flops;
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
    fprintf(f, "#%5s %-19s %-14s %-13s %4s %9s %-10s %11s %8s %8s %8s %10s  %s\n", "id", "op", "layer", "output", "rf", "saved",
            "(what)", "flops", "params", "fwd ms", "bwd ms", "|dy|", "inputs | attributes | stats");
    for (const tg_node *n = t->first; n; n = n->next) print_node(n, &s, f);
    print_params(&s, f);
    print_totals(t, &s, f);
    survey_release(&s);
    fflush(f);
    return ferror(f) ? tg_fail(TG_ERR_IO, "tape_dump: write failed") : 0;
}

// ----------------------------------------------------------------------------
// Graphviz

/* Text inside a DOT string: quotes and backslashes escaped. */
static void dot_text(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
}

int tg_tape_dot(const tg_tape *t, FILE *f) {
    if (!t || !f) return tg_fail(TG_ERR_ARG, "tape_dot: %s is NULL", t ? "file" : "tape");
    survey s;
    if (survey_init(&s, t) < 0) return TG_ERR_NOMEM;
    char buf[512], shape[64], name[64];
    fprintf(f, "digraph tape {\n"
               "  graph [rankdir=TB, fontname=\"Helvetica\"];\n"
               "  node [fontname=\"Helvetica\", fontsize=10];\n"
               "  edge [fontname=\"Helvetica\", fontsize=9, color=\"#555555\"];\n");
    for (int i = 0; i < s.n_leaves; i++) {
        const tg_tensor *x = s.leaves[i].x;
        if (is_param(x)) fprintf(f, "  l%d [shape=ellipse, style=filled, fillcolor=\"#fbe0c3\", label=\"", i);
        else fprintf(f, "  l%d [shape=parallelogram, style=filled, fillcolor=\"#e3e3e3\", label=\"", i);
        dot_text(f, tg__label(x, buf, sizeof buf));
        fprintf(f, "\\n%s\"];\n", tg_shape_str(x, shape, sizeof shape));
    }
    for (const tg_node *n = t->first; n; n = n->next) {
        fprintf(f, "  n%d [shape=box, style=\"rounded,filled\", fillcolor=\"#d6e4f5\", label=\"%%%d ", n->id, n->id);
        dot_text(f, node_name(n, name, sizeof name));
        if (n->scope) fprintf(f, " ["), dot_text(f, n->scope), fprintf(f, "]");
        buf[0] = '\0';
        if (n->op->describe) n->op->describe(n, buf, sizeof buf);
        if (buf[0]) fprintf(f, "\\n"), dot_text(f, buf);
        if (n->saved_bytes) {
            char h[32];
            fprintf(f, "\\nsaved %sB ", human((double)n->saved_bytes, true, h, sizeof h));
            dot_text(f, n->saved_what ? n->saved_what : "?");
        }
        fprintf(f, "\"];\n");
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
    }
    fprintf(f, "}\n");
    survey_release(&s);
    fflush(f);
    return ferror(f) ? tg_fail(TG_ERR_IO, "tape_dot: write failed") : 0;
}
