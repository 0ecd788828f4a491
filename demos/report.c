/* report.c: the run log as one self-contained HTML page. Reads top to bottom:
 * reading the log, small writers (escaped text, numbers, base64), the charts
 * (a line chart, histograms, the graph), then the page in the order a reader
 * wants it: what looks wrong, what the run was, how it went, what it looked like.
 *
 * Every curve is an SVG polyline of class "curve" with data-name naming it
 * ("loss/train", "update/0"), so a test finds each one; the page's one script
 * counts them and writes "report-ok N curves" at its foot, or the script
 * errors it caught. */
#include "report.h"
#include "tapegrad.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// the log: every record kept, by type

typedef struct {
    cJSON *run, *graph, *hist;  /* the run record, the last graph, the last step record with histograms */
    cJSON **steps, **tests, **findings;
    int n_steps, n_tests, n_findings, bad_lines;
    cJSON *all;                 /* owns every record */
} runlog;

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            char *b = realloc(buf, 2 * cap + 1);
            if (!b) free(buf);
            buf = b, cap *= 2;
        }
    }
    bool err = ferror(f);
    fclose(f);
    if (!buf || err) return free(buf), NULL;
    buf[n] = 0, *len = n;
    return buf;
}

static int push(cJSON ***arr, int *n, cJSON *x) {
    cJSON **a = realloc(*arr, (size_t)(*n + 1) * sizeof *a);
    if (!a) return -1;
    a[(*n)++] = x, *arr = a;
    return 0;
}

static void runlog_free(runlog *r) {
    free(r->steps), free(r->tests), free(r->findings);
    cJSON_Delete(r->all);
}

static int runlog_read(const char *path, runlog *r) {
    *r = (runlog){0};
    size_t len = 0;
    char *text = read_all(path, &len);
    if (!text) return tg_fail(TG_ERR_IO, "report: cannot read the run log %s", path);
    r->all = cJSON_CreateArray();
    int rc = r->all ? 0 : TG_ERR_NOMEM;
    for (char *line = text, *end; !rc && line < text + len; line = end + 1) {
        end = strchr(line, '\n');
        if (!end) end = text + len;
        *end = 0;
        if (strspn(line, " \t\r") == strlen(line)) continue;
        cJSON *o = cJSON_Parse(line);
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "type"));
        if (!o || !cJSON_IsObject(o) || !type) { /* a run killed mid-line leaves half a record: say so, go on */
            cJSON_Delete(o), r->bad_lines++;
            continue;
        }
        cJSON_AddItemToArray(r->all, o);
        if (!strcmp(type, "run")) r->run = o;
        else if (!strcmp(type, "graph")) r->graph = o;
        else if (!strcmp(type, "step")) {
            rc = push(&r->steps, &r->n_steps, o);
            if (cJSON_GetObjectItemCaseSensitive(o, "hist")) r->hist = o;
        } else if (!strcmp(type, "test")) rc = push(&r->tests, &r->n_tests, o);
        else if (!strcmp(type, "finding")) rc = push(&r->findings, &r->n_findings, o);
    }
    free(text);
    if (rc) {
        runlog_free(r);
        return tg_fail(TG_ERR_NOMEM, "report: no memory for %s", path);
    }
    if (!r->run && !r->n_steps) {
        runlog_free(r);
        return tg_fail(TG_ERR_FORMAT, "report: %s holds no run or step record: is it a tapegrad run log?", path);
    }
    return 0;
}

/* a number field, NAN when absent or null (the log writes NaN and Inf as null) */
static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const char *str(const cJSON *o, const char *k) {
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
    return s ? s : "";
}

/* the entry of an array of objects whose "name" is name */
static const cJSON *named(const cJSON *arr, const char *name) {
    const cJSON *x;
    cJSON_ArrayForEach(x, arr) if (!strcmp(str(x, "name"), name)) return x;
    return NULL;
}

// ----------------------------------------------------------------------------
// writing: escaped text, numbers a person reads, base64

static void esc(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
    }
}

static const char *fmt(char *buf, size_t len, double v) {
    if (!isfinite(v)) snprintf(buf, len, "–");
    else if (v == 0) snprintf(buf, len, "0");
    else if (v == floor(v) && fabs(v) < 1e15) snprintf(buf, len, "%.0f", v); /* counts, steps, sizes */
    else if (fabs(v) >= 1e-3 && fabs(v) < 1e5) snprintf(buf, len, "%.4g", v);
    else snprintf(buf, len, "%.2e", v);
    return buf;
}

static void base64(FILE *f, const unsigned char *d, size_t n) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
        char q[4] = {abc[v >> 18], abc[(v >> 12) & 63], i + 1 < n ? abc[(v >> 6) & 63] : '=',
                     i + 2 < n ? abc[v & 63] : '='};
        fwrite(q, 1, 4, f);
    }
}

static const uint32_t palette[10] = {0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd,
                                     0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf};

// ----------------------------------------------------------------------------
// a line chart: several series over the steps, linear or log y, an optional shaded band

typedef struct {
    char name[96];   /* data-name: "loss/train", "update/3.conv1" */
    char label[80];  /* in the legend */
    uint32_t colour;
    bool dashed;
    int n;
    double *x, *y;   /* n points; a NAN y is left out */
} series;

enum { CW = 580, CH = 300, ML = 66, MR = 14, MT = 34, MB = 44 };

/* ticks at 1, 2 or 5 times a power of ten, about five of them */
static double tick_step(double span) {
    double raw = span / 5, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static bool usable(double y, bool logy) { return isfinite(y) && (!logy || y > 0); }

static void chart(FILE *f, const char *id, const char *title, const char *ylabel, const series *s, int ns, bool logy,
                  double band_lo, double band_hi, double line_at) {
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    int points = 0;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].n; i++) {
            if (!usable(s[k].y[i], logy) || !isfinite(s[k].x[i])) continue;
            double y = logy ? log10(s[k].y[i]) : s[k].y[i];
            x0 = fmin(x0, s[k].x[i]), x1 = fmax(x1, s[k].x[i]), y0 = fmin(y0, y), y1 = fmax(y1, y), points++;
        }
    if (!points) return; /* nothing logged of this: no empty chart */
    if (band_hi > band_lo && logy) y0 = fmin(y0, log10(band_lo)), y1 = fmax(y1, log10(band_hi));
    if (!logy && y0 > 0 && y0 < 0.5 * y1) y0 = 0; /* a positive quantity from 0, unless that flattens it */
    if (x1 == x0) x0 -= 1, x1 += 1;
    if (y1 == y0) y0 -= logy ? 1 : fmax(fabs(y0) * 0.1, 1e-9), y1 += logy ? 1 : fmax(fabs(y1) * 0.1, 1e-9);
    if (logy) y0 = floor(y0), y1 = ceil(y1);
    else {
        double pad = (y1 - y0) * 0.05;
        y1 += pad, y0 = y0 == 0 ? 0 : y0 - pad;
    }
    double pw = CW - ML - MR, ph = CH - MT - MB;
#define PX(v) (ML + ((v) - x0) / (x1 - x0) * pw)
#define PY(v) (MT + ph - ((v) - y0) / (y1 - y0) * ph)
    char b[32];
    fprintf(f, "<svg class=\"chart\" id=\"%s\" viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" role=\"img\">\n",
            id, CW, CH, CW, CH);
    fprintf(f, "<text x=\"%d\" y=\"20\" class=\"title\">", ML);
    esc(f, title);
    fprintf(f, "</text>\n<rect x=\"%d\" y=\"%d\" width=\"%g\" height=\"%g\" class=\"plot\"/>\n", ML, MT, pw, ph);
    if (band_hi > band_lo) {
        double a = logy ? log10(band_lo) : band_lo, c = logy ? log10(band_hi) : band_hi;
        fprintf(f, "<rect class=\"band\" x=\"%d\" y=\"%.1f\" width=\"%g\" height=\"%.1f\"/>\n", ML, PY(c), pw,
                PY(a) - PY(c));
    }
    if (isfinite(line_at)) {
        double a = logy ? log10(line_at) : line_at;
        fprintf(f, "<line class=\"mark\" x1=\"%d\" x2=\"%g\" y1=\"%.1f\" y2=\"%.1f\"/>\n", ML, ML + pw, PY(a), PY(a));
    }
    /* y ticks: decades on a log axis */
    double st = logy ? (y1 - y0 > 8 ? 2 : 1) : tick_step(y1 - y0);
    /* by a tick's index, at most 60: a range below a float's step at its magnitude (a hand-edited
     * log) would never advance v */
    for (int tick = 0; tick < 60 && ceil(y0 / st) * st + tick * st <= y1 + st * 1e-9; tick++) {
        double v = ceil(y0 / st) * st + tick * st;
        if (logy) snprintf(b, sizeof b, "1e%d", (int)lround(v));
        else fmt(b, sizeof b, fabs(v) < st * 1e-6 ? 0 : v);
        fprintf(f, "<line class=\"grid\" x1=\"%d\" x2=\"%g\" y1=\"%.1f\" y2=\"%.1f\"/>", ML, ML + pw, PY(v), PY(v));
        fprintf(f, "<text class=\"tick\" x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", ML - 5, PY(v) + 4, b);
    }
    st = tick_step(x1 - x0);
    for (int tick = 0; tick < 60 && ceil(x0 / st) * st + tick * st <= x1 + st * 1e-9; tick++) {
        double v = ceil(x0 / st) * st + tick * st;
        fprintf(f, "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%g\"/><text class=\"tick\" x=\"%.1f\" "
                   "y=\"%g\" text-anchor=\"middle\">%s</text>\n",
                PX(v), PX(v), MT, MT + ph, PX(v), MT + ph + 16, fmt(b, sizeof b, v));
    }
    fprintf(f, "<text class=\"axis\" x=\"%g\" y=\"%d\" text-anchor=\"middle\">step</text>\n", ML + pw / 2, CH - 6);
    fprintf(f, "<text class=\"axis\" transform=\"translate(14 %g) rotate(-90)\" text-anchor=\"middle\">", MT + ph / 2);
    esc(f, ylabel);
    fputs("</text>\n", f);
    for (int k = 0; k < ns; k++) {
        int m = 0;
        fprintf(f, "<polyline class=\"curve\" data-name=\"");
        esc(f, s[k].name);
        fprintf(f, "\" fill=\"none\" stroke=\"#%06x\" stroke-width=\"1.8\"%s points=\"", (unsigned)s[k].colour,
                s[k].dashed ? " stroke-dasharray=\"5 3\"" : "");
        for (int i = 0; i < s[k].n; i++)
            if (usable(s[k].y[i], logy) && isfinite(s[k].x[i]))
                fprintf(f, "%s%.1f,%.1f", m++ ? " " : "", PX(s[k].x[i]), PY(logy ? log10(s[k].y[i]) : s[k].y[i]));
        fputs("\"><title>", f);
        esc(f, s[k].label);
        fputs("</title></polyline>\n", f);
        /* a marker on each point of a short series (a test every epoch), so one point still shows */
        for (int i = 0; s[k].n <= 30 && i < s[k].n; i++)
            if (usable(s[k].y[i], logy) && isfinite(s[k].x[i])) {
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#%06x\"><title>",
                        PX(s[k].x[i]), PY(logy ? log10(s[k].y[i]) : s[k].y[i]), (unsigned)s[k].colour);
                esc(f, s[k].label);
                fprintf(f, ": %s</title></circle>\n", fmt(b, sizeof b, s[k].y[i]));
            }
    }
    fputs("</svg>\n", f);
    /* the legend in HTML, which wraps */
    fputs("<div class=\"legend\">", f);
    for (int k = 0; k < ns; k++) {
        fprintf(f, "<span><i style=\"background:#%06x\"></i>", (unsigned)s[k].colour);
        esc(f, s[k].label);
        fputs("</span>", f);
    }
    fputs("</div>\n", f);
#undef PX
#undef PY
}

// ----------------------------------------------------------------------------
// series from the log

static int series_alloc(series *s, int n) {
    s->n = 0;
    s->x = malloc(((size_t)n + 1) * sizeof *s->x);
    s->y = malloc(((size_t)n + 1) * sizeof *s->y);
    return s->x && s->y ? 0 : -1;
}

static void series_free(series *s, int n) {
    for (int k = 0; k < n; k++) free(s[k].x), free(s[k].y);
}

/* a top-level field of every record of a kind: loss, acc, lr */
static void field_series(series *s, cJSON **recs, int n, const char *field) {
    for (int i = 0; i < n; i++) s->x[s->n] = num(recs[i], "step"), s->y[s->n++] = num(recs[i], field);
}

/* The layers in the run record's order (or the first step's), each once. */
static int layer_names(const runlog *r, const char **names, int max) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(r->run, "layers"), *x;
    if (!arr && r->n_steps) arr = cJSON_GetObjectItemCaseSensitive(r->steps[0], "layers");
    int n = 0;
    cJSON_ArrayForEach(x, arr) if (n < max && *str(x, "name")) names[n++] = str(x, "name");
    return n;
}

typedef enum { M_UPDATE, M_DY, M_DEAD, M_ACT_RMS, M_BN_SHIFT, M_SATURATED } metric;

/* a layer's value of one metric on a step record (NAN if it has none) */
static double layer_metric(const cJSON *step, const char *layer, metric m) {
    const cJSON *l = named(cJSON_GetObjectItemCaseSensitive(step, "layers"), layer);
    if (!l) return NAN;
    switch (m) {
    case M_UPDATE: { /* the layer's first parameter: its weight */
        const cJSON *p = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(l, "params"), 0);
        return p ? num(p, "update") : NAN;
    }
    case M_DY: return num(l, "dy");
    case M_DEAD: return num(l, "dead");
    case M_ACT_RMS: return num(cJSON_GetObjectItemCaseSensitive(l, "act"), "rms");
    case M_BN_SHIFT: return num(cJSON_GetObjectItemCaseSensitive(l, "bn"), "mean_shift");
    case M_SATURATED: return num(l, "saturated");
    }
    return NAN;
}

enum { MAX_LAYERS = 256 };

/* One chart of a per-layer metric: a curve per layer that has it. */
static int layer_chart(FILE *f, const runlog *r, metric m, const char *id, const char *prefix, const char *title,
                       const char *ylabel, bool logy, double band_lo, double band_hi, double line_at) {
    const char *names[MAX_LAYERS];
    int nl = layer_names(r, names, MAX_LAYERS), ns = 0, rc = 0;
    series *s = calloc((size_t)nl + 1, sizeof *s);
    if (!s) return -1;
    for (int k = 0; k < nl && !rc; k++) {
        series *c = &s[ns];
        if (series_alloc(c, r->n_steps) < 0) {
            rc = -1, ns++;
            break;
        }
        bool any = false;
        for (int i = 0; i < r->n_steps; i++) {
            c->x[c->n] = num(r->steps[i], "step"), c->y[c->n] = layer_metric(r->steps[i], names[k], m);
            any |= usable(c->y[c->n++], logy);
        }
        if (!any) {
            series_free(c, 1);
            continue;
        }
        snprintf(c->name, sizeof c->name, "%s/%s", prefix, names[k]);
        const cJSON *l = named(cJSON_GetObjectItemCaseSensitive(r->run, "layers"), names[k]);
        snprintf(c->label, sizeof c->label, "%s %s", names[k], l ? str(l, "kind") : "");
        c->colour = palette[ns % 10], c->dashed = ns >= 10;
        ns++;
    }
    if (!rc) chart(f, id, title, ylabel, s, ns, logy, band_lo, band_hi, line_at);
    series_free(s, ns);
    free(s);
    return rc;
}

// ----------------------------------------------------------------------------
// histograms of the last histogram step: one small panel each

/* the index in the run record's layers of the layer a histogram belongs to: the one holding the
 * parameter (weight, grad) or the one named (act); past the end if none */
static int hist_owner(const cJSON *layers, const cJSON *h) {
    const char *name = str(h, "name");
    bool act = !strcmp(str(h, "of"), "act");
    int i = 0;
    const cJSON *l, *p;
    cJSON_ArrayForEach(l, layers) {
        if (act && !strcmp(str(l, "name"), name)) return i;
        cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(l, "params")) if (!act && !strcmp(
            cJSON_GetStringValue(p) ? cJSON_GetStringValue(p) : "", name)) return i;
        i++;
    }
    return i;
}

typedef struct {
    const cJSON *h;
    int owner, at;
} hist_ref;

static int by_owner(const void *a, const void *b) {
    const hist_ref *x = a, *y = b;
    return x->owner != y->owner ? x->owner - y->owner : x->at - y->at;
}

static void hist_panel(FILE *f, const cJSON *h) {
    const cJSON *counts = cJSON_GetObjectItemCaseSensitive(h, "counts"), *v;
    int n = cJSON_GetArraySize(counts), i = 0;
    double top = 0;
    char b[32], c[32];
    cJSON_ArrayForEach(v, counts) top = fmax(top, cJSON_IsNumber(v) ? v->valuedouble : 0);
    const char *of = str(h, "of");
    uint32_t col = !strcmp(of, "weight") ? 0x1f77b4 : !strcmp(of, "grad") ? 0xd62728 : 0x2ca02c;
    fprintf(f, "<figure class=\"hist\" data-name=\"");
    esc(f, str(h, "name")), fputc('/', f), esc(f, of);
    fprintf(f, "\"><figcaption>");
    esc(f, str(h, "name")), fputs(" <b>", f), esc(f, of), fputs("</b></figcaption>\n", f);
    fprintf(f, "<svg viewBox=\"0 0 200 84\" width=\"200\" height=\"84\">");
    cJSON_ArrayForEach(v, counts) {
        double y = cJSON_IsNumber(v) && top > 0 ? v->valuedouble / top * 64 : 0;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#%06x\"/>", 4 + i * 192.0 / n,
                68 - y, 192.0 / n * 0.9, y, (unsigned)col);
        i++;
    }
    fprintf(f, "<line x1=\"4\" x2=\"196\" y1=\"68.5\" y2=\"68.5\" stroke=\"#888\"/>"
               "<text class=\"tick\" x=\"4\" y=\"82\">%s</text><text class=\"tick\" x=\"196\" y=\"82\" "
               "text-anchor=\"end\">%s</text></svg></figure>\n",
            fmt(b, sizeof b, num(h, "lo")), fmt(c, sizeof c, num(h, "hi")));
}

/* the histograms of one step, a row per layer: its weights, their gradients, its output */
static int histograms(FILE *f, const runlog *r) {
    const cJSON *hs = cJSON_GetObjectItemCaseSensitive(r->hist, "hist"), *h;
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(r->run, "layers");
    int n = cJSON_GetArraySize(hs), k = 0;
    hist_ref *refs = malloc(((size_t)n + 1) * sizeof *refs);
    if (!refs) return tg_fail(TG_ERR_NOMEM, "report: no memory for the histograms");
    cJSON_ArrayForEach(h, hs) refs[k] = (hist_ref){h, hist_owner(layers, h), k}, k++;
    qsort(refs, (size_t)n, sizeof *refs, by_owner);
    char b[32];
    fprintf(f, "<h2 id=\"histograms\">Histograms</h2>\n<p class=\"note\">At step %s, a box per layer: its weights "
               "(blue), their gradients (red), its output (green). Bars: how many values fell in each bin, between "
               "the two numbers under the panel.</p>\n", fmt(b, sizeof b, num(r->hist, "step")));
    for (int i = 0; i < n; i++) {
        if (i == 0 || refs[i].owner != refs[i - 1].owner) {
            const cJSON *l = cJSON_GetArrayItem(layers, refs[i].owner);
            fputs(i ? "</div></div>\n" : "<div class=\"hists\">\n", f);
            fputs("<div class=\"hgroup\"><div class=\"hrow\">", f);
            if (l) fputs("layer <b>", f), esc(f, str(l, "name")), fputs("</b> ", f), esc(f, str(l, "kind"));
            fputs("</div><div class=\"hpanels\">\n", f);
        }
        hist_panel(f, refs[i].h);
    }
    fputs(n ? "</div></div></div>\n" : "", f);
    free(refs);
    return 0;
}

// ----------------------------------------------------------------------------
// the graph: nodes top to bottom, coloured by one quantity on a log scale

typedef enum { G_TIME, G_DY } gmode;

static double node_value(const cJSON *n, gmode m) {
    if (m == G_DY) return num(n, "dy");
    double a = num(n, "fwd_ms"), b = num(n, "bwd_ms");
    return (isfinite(a) ? a : 0) + (isfinite(b) ? b : 0);
}

static uint32_t mix(uint32_t a, uint32_t b, double t) {
    uint32_t o = 0;
    for (int s = 16; s >= 0; s -= 8) {
        double x = (a >> s) & 255, y = (b >> s) & 255;
        o |= (uint32_t)lround(x + (y - x) * t) << s;
    }
    return o;
}

static void graph_panel(FILE *f, const cJSON *nodes, gmode m) {
    int n = cJSON_GetArraySize(nodes);
    enum { BW = 330, BH = 34, GAPY = 14, X0 = 10, LANE = 12 };
    double lo = INFINITY, hi = -INFINITY;
    const cJSON *x;
    cJSON_ArrayForEach(x, nodes) {
        double v = node_value(x, m);
        if (v > 0 && isfinite(v)) lo = fmin(lo, log10(v)), hi = fmax(hi, log10(v));
    }
    if (!(hi >= lo)) lo = hi = 0;
    if (hi - lo < 1e-9) lo -= 0.5, hi += 0.5;
    uint32_t c0 = m == G_TIME ? 0xfff5eb : 0xf2f0f7, c1 = m == G_TIME ? 0xa63603 : 0x3f007d;
    int W = X0 + BW + 160, H = 20 + n * (BH + GAPY) + 40;
    char b[32], c[32];
    fprintf(f, "<figure class=\"graph\"><figcaption>%s</figcaption>\n<svg class=\"graph-%s\" viewBox=\"0 0 %d %d\" "
               "width=\"%d\" height=\"%d\">\n<defs><marker id=\"arr-%d\" viewBox=\"0 0 8 8\" refX=\"7\" refY=\"4\" "
               "markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L8,4 L0,8 z\" fill=\"#666\"/>"
               "</marker></defs>\n",
            m == G_TIME ? "coloured by time (forward + backward, ms)" : "coloured by |dy| (RMS of the gradient at the "
            "node's output)", m == G_TIME ? "time" : "dy", W, H, W, H, (int)m);
    /* edges first, under the boxes: the previous node straight down, others (skips) in lanes on the right */
    int i = 0, lane = 0;
    cJSON_ArrayForEach(x, nodes) {
        const cJSON *in;
        cJSON_ArrayForEach(in, cJSON_GetObjectItemCaseSensitive(x, "inputs")) {
            const char *s = cJSON_GetStringValue(in);
            int k = -1;
            if (!s || s[0] != '%' || sscanf(s + 1, "%d", &k) != 1 || k < 0 || k >= i) continue;
            double ya = 20 + k * (BH + GAPY) + BH, yb = 20 + i * (BH + GAPY);
            if (k == i - 1)
                fprintf(f, "<line x1=\"%d\" y1=\"%.0f\" x2=\"%d\" y2=\"%.0f\" stroke=\"#666\" "
                           "marker-end=\"url(#arr-%d)\"/>\n", X0 + BW / 2, ya, X0 + BW / 2, yb, (int)m);
            else {
                int xr = X0 + BW + 10 + LANE * (lane++ % 8);
                fprintf(f, "<path d=\"M%d,%.0f C%d,%.0f %d,%.0f %d,%.0f\" fill=\"none\" stroke=\"#888\" "
                           "marker-end=\"url(#arr-%d)\"/>\n",
                        X0 + BW, ya - BH / 2, xr + 30, ya - BH / 2, xr + 30, yb + BH / 2, X0 + BW, yb + BH / 2, (int)m);
            }
        }
        i++;
    }
    i = 0;
    cJSON_ArrayForEach(x, nodes) {
        double v = node_value(x, m), t = v > 0 && isfinite(v) ? (log10(v) - lo) / (hi - lo) : 0;
        uint32_t col = mix(c0, c1, t);
        int y = 20 + i * (BH + GAPY);
        char shape[64] = "";
        const cJSON *d;
        size_t k = 0;
        cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(x, "shape"))
            if (k + 12 < sizeof shape)
                k += (size_t)snprintf(shape + k, sizeof shape - k, "%s%d", k ? "×" : "", d->valueint);
        fprintf(f, "<g class=\"node\"><title>%%%d ", i);
        esc(f, str(x, "op")), fputs(" (layer ", f), esc(f, str(x, "layer")), fputs(") → ", f), esc(f, shape);
        fprintf(f, "\nforward %s ms, backward %s ms, |dy| %s, flops %s</title>", fmt(b, sizeof b, num(x, "fwd_ms")),
                fmt(c, sizeof c, num(x, "bwd_ms")), fmt((char[32]){0}, 32, num(x, "dy")), fmt((char[32]){0}, 32,
                num(x, "flops")));
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" rx=\"5\" fill=\"#%06x\" stroke=\"#555\"/>",
                X0, y, BW, BH, (unsigned)col);
        const char *ink = t > 0.6 ? "#fff" : "#000";
        fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"%s\" class=\"nodetext\">%%%d ", X0 + 8, y + 14, ink, i);
        esc(f, str(x, "op"));
        if (*str(x, "layer")) fputs("  [", f), esc(f, str(x, "layer")), fputs("]", f);
        fprintf(f, "</text><text x=\"%d\" y=\"%d\" fill=\"%s\" class=\"nodesub\">", X0 + 8, y + 28, ink);
        esc(f, shape);
        fprintf(f, "</text><text x=\"%d\" y=\"%d\" fill=\"%s\" class=\"nodeval\" text-anchor=\"end\">%s%s</text></g>\n",
                X0 + BW - 8, y + 21, ink, fmt(b, sizeof b, v), m == G_TIME ? " ms" : "");
        i++;
    }
    /* the scale */
    int y = 20 + n * (BH + GAPY) + 4;
    for (int j = 0; j < 100; j++)
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"2.2\" height=\"10\" fill=\"#%06x\"/>", X0 + j * 2, y,
                (unsigned)mix(c0, c1, j / 99.0));
    fprintf(f, "\n<text class=\"tick\" x=\"%d\" y=\"%d\">%s</text><text class=\"tick\" x=\"%d\" y=\"%d\" "
               "text-anchor=\"end\">%s (log scale)</text></svg></figure>\n",
            X0, y + 24, fmt(b, sizeof b, pow(10, lo)), X0 + 200, y + 24, fmt(c, sizeof c, pow(10, hi)));
}

// ----------------------------------------------------------------------------
// the timeline of one step: the Chrome trace-event JSON tg_tape_trace writes, a row of
// rectangles per thread on one time axis, the arena's bytes in use as a step line under them

enum { TL_USER, TL_NODE, TL_WORKER, TL_GROUPS };   /* the groups of a row, top to bottom */
enum { TL_L = 100, TL_PW = 700, TL_W = TL_L + TL_PW + 12, TL_TOP = 30, TL_LANE = 18, TL_BAR = 16,
       TL_MEM = 70, TL_MAXDEPTH = 8 };

typedef struct {
    double ts, dur;     /* µs, as in the file */
    int tid, group, lane;
    bool backward;      /* a VJP, or a worker's span inside one */
    const cJSON *e;
} tl_event;

typedef struct {
    int tid, lanes[TL_GROUPS];
    const char *name;   /* from the "thread_name" metadata, or NULL */
    double y;           /* the row's top */
} tl_track;

typedef struct {
    const char *node, *name, *layer;
    double fwd, bwd;    /* µs */
    int at;             /* first seen: ties keep the tape's order */
} tl_node;

typedef struct {
    double ts, bytes;
} tl_sample;

static void tl_note(FILE *f, const char *path, const char *why) {
    fputs("<h2 id=\"timeline\">Timeline of one step</h2>\n<p class=\"note tl-note\">No timeline: ", f);
    esc(f, path), fputc(' ', f), esc(f, why), fputs(".</p>\n", f);
}

static bool ends_with(const char *s, const char *tail) {
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && !strcmp(s + a - b, tail);
}

static int tl_by_row(const void *pa, const void *pb) {
    const tl_event *a = pa, *b = pb;
    if (a->tid != b->tid) return a->tid < b->tid ? -1 : 1;
    if (a->group != b->group) return a->group - b->group;
    if (a->ts != b->ts) return a->ts < b->ts ? -1 : 1;
    return (a->dur < b->dur) - (a->dur > b->dur); /* the longer one encloses: first */
}

static int tl_by_tid(const void *pa, const void *pb) {
    const tl_track *a = pa, *b = pb;
    return (a->tid > b->tid) - (a->tid < b->tid);
}

static int tl_by_ts(const void *pa, const void *pb) {
    const tl_sample *a = pa, *b = pb;
    return (a->ts > b->ts) - (a->ts < b->ts);
}

static int tl_by_time(const void *pa, const void *pb) {
    const tl_node *a = pa, *b = pb;
    double x = a->fwd + a->bwd, y = b->fwd + b->bwd;
    return x != y ? (x < y) - (x > y) : a->at - b->at;
}

static tl_track *tl_track_of(tl_track *tr, int n, int tid) {
    for (int i = 0; i < n; i++)
        if (tr[i].tid == tid) return &tr[i];
    return NULL;
}

/* one rectangle: its colour says forward (blues) or VJP (oranges), a worker's span paler, a user's span grey;
 * ops keep their shade both ways, so a node's forward and its backward look alike */
static void tl_rect(FILE *f, const tl_event *e, const tl_track *tr, double x, double w) {
    static const uint32_t fwd[4] = {0x6baed6, 0x9ecae1, 0x4292c6, 0x8fb8de};
    static const uint32_t bwd[4] = {0xfd8d3c, 0xfdae6b, 0xf4a261, 0xf9b987};
    const char *name = str(e->e, "name"), *cat = e->group == TL_USER ? "user" : e->group == TL_WORKER ? "worker"
                                                 : e->backward ? "backward" : "forward";
    size_t len = strlen(name) - (e->backward && ends_with(name, " backward") ? 9 : 0);
    unsigned h = 0;
    for (size_t i = 0; i < len; i++) h = h * 31 + (unsigned char)name[i];
    uint32_t col = e->group == TL_USER ? 0xbdbdbd : e->group == TL_WORKER ? (e->backward ? 0xfdd0a2 : 0xc6dbef)
                   : e->backward ? bwd[h % 4] : fwd[h % 4];
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(e->e, "args");
    char b[32];
    double y = tr->y + 4 + e->lane * TL_LANE;
    fprintf(f, "<rect class=\"tl-event\" data-track=\"");
    esc(f, tr->name ? tr->name : "");
    fprintf(f, "\" data-kind=\"%s\" x=\"%.2f\" y=\"%.0f\" width=\"%.2f\" height=\"%d\" fill=\"#%06x\"><title>", cat, x,
            y, fmax(w, 0.5), TL_BAR, (unsigned)col); /* half a pixel at least, so that a short node still shows */
    esc(f, name);
    if (*str(args, "node")) fputs("\nnode ", f), esc(f, str(args, "node"));
    if (cJSON_GetObjectItemCaseSensitive(args, "layer")) {
        fputs(" · layer ", f);
        esc(f, *str(args, "layer") ? str(args, "layer") : "-");
    }
    if (e->group == TL_USER) fputs("\nyour span (tg_tape_span_begin)", f);
    if (*str(args, "region")) fputs("\nworker span at ", f), esc(f, str(args, "region"));
    fprintf(f, "\n%.3f ms", e->dur / 1000);
    if (isfinite(num(args, "GFLOP/s"))) fprintf(f, "\n%s GFLOP/s", fmt(b, sizeof b, num(args, "GFLOP/s")));
    if (isfinite(num(args, "flops"))) fprintf(f, "\nflops %s", fmt(b, sizeof b, num(args, "flops")));
    fputs("</title></rect>", f);
    /* a label where it fits (about 6 px a character at the label's size): the name, or else the node's id */
    const char *label = w >= 6.0 * (double)strlen(name) + 6 ? name : str(args, "node");
    if (*label && w >= 6.0 * (double)strlen(label) + 6) {
        fprintf(f, "<text class=\"tl-label\" x=\"%.2f\" y=\"%.0f\">", x + 3, y + 12);
        esc(f, label);
        fputs("</text>", f);
    }
    fputc('\n', f);
}

/* The section: the SVG, the top five nodes beside it, where to see the whole trace. A trace that
 * cannot be read or holds no events is named in a note; the rest of the page does not depend on it. */
static int timeline(FILE *f, const char *path) {
    size_t len = 0;
    char *text = read_all(path, &len);
    if (!text) return tl_note(f, path, "could not be read"), 0;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root) return tl_note(f, path, "is not JSON"), 0;
    /* the object form tg_tape_trace writes, or the bare array the format also allows */
    const cJSON *evs = cJSON_IsArray(root) ? root : cJSON_GetObjectItemCaseSensitive(root, "traceEvents"), *x;
    if (!cJSON_IsArray(evs)) {
        cJSON_Delete(root);
        return tl_note(f, path, "has no traceEvents array: is it a Chrome trace (tg_tape_trace, TG_TRACE)?"), 0;
    }
    int cap = cJSON_GetArraySize(evs) + 1, n = 0, nt = 0, ns = 0, nn = 0, skipped = 0, rc = 0;
    tl_event *ev = malloc((size_t)cap * sizeof *ev);
    tl_track *tr = calloc((size_t)cap, sizeof *tr);
    tl_sample *smp = malloc((size_t)cap * sizeof *smp);
    tl_node *nodes = calloc((size_t)cap, sizeof *nodes);
    if (!ev || !tr || !smp || !nodes) {
        rc = tg_fail(TG_ERR_NOMEM, "report: no memory for the timeline");
        goto out;
    }
    double t0 = INFINITY, t1 = -INFINITY;
    cJSON_ArrayForEach(x, evs) {
        const char *ph = str(x, "ph"), *cat = str(x, "cat"), *name = str(x, "name");
        double ts = num(x, "ts"), dur = num(x, "dur"), tid = num(x, "tid");
        if (!strcmp(ph, "C") && !strcmp(name, "arena")) {
            double bytes = num(cJSON_GetObjectItemCaseSensitive(x, "args"), "bytes");
            if (isfinite(ts) && isfinite(bytes)) {
                smp[ns++] = (tl_sample){ts, bytes};
                t0 = fmin(t0, ts), t1 = fmax(t1, ts);
            }
            continue;
        }
        if (strcmp(ph, "X")) continue;
        if (!isfinite(ts) || !isfinite(dur) || dur < 0) {
            skipped++;
            continue;
        }
        tl_event *e = &ev[n++];
        *e = (tl_event){ts, dur, fabs(tid) < 1e9 ? (int)tid : 0, TL_NODE, 0, false, x};
        if (!strcmp(cat, "user")) e->group = TL_USER;
        else if (!strcmp(cat, "worker")) e->group = TL_WORKER;
        e->backward = e->group != TL_USER && (!strcmp(cat, "backward") || ends_with(name, " backward"));
        if (!tl_track_of(tr, nt, e->tid)) tr[nt++].tid = e->tid;
        t0 = fmin(t0, ts), t1 = fmax(t1, ts + dur);
        /* a node's time, both ways, for the table */
        const char *node = str(cJSON_GetObjectItemCaseSensitive(x, "args"), "node");
        if (e->group != TL_NODE || !*node) continue;
        int k = 0;
        while (k < nn && strcmp(nodes[k].node, node)) k++;
        if (k == nn) nodes[nn++] = (tl_node){node, name, str(cJSON_GetObjectItemCaseSensitive(x, "args"), "layer"), 0,
                                             0, k};
        if (e->backward) nodes[k].bwd += dur;
        else nodes[k].fwd += dur, nodes[k].name = name;
    }
    if (!n) {
        tl_note(f, path, "holds no complete (\"X\") events with a time and a duration");
        goto out;
    }
    cJSON_ArrayForEach(x, evs) { /* the rows' names */
        double tid = num(x, "tid");
        tl_track *t = fabs(tid) < 1e9 ? tl_track_of(tr, nt, (int)tid) : NULL;
        if (t && !strcmp(str(x, "ph"), "M") && !strcmp(str(x, "name"), "thread_name"))
            t->name = str(cJSON_GetObjectItemCaseSensitive(x, "args"), "name");
    }
    qsort(tr, (size_t)nt, sizeof *tr, tl_by_tid);
    /* lanes: within a row, a group below the one before, and in each group an event one lane below the
     * events that enclose it */
    qsort(ev, (size_t)n, sizeof *ev, tl_by_row);
    double ends[TL_MAXDEPTH];
    for (int i = 0, depth = 0; i < n; i++) {
        if (i == 0 || ev[i].tid != ev[i - 1].tid || ev[i].group != ev[i - 1].group) depth = 0;
        while (depth && ends[depth - 1] <= ev[i].ts) depth--;
        ev[i].lane = depth < TL_MAXDEPTH ? depth : TL_MAXDEPTH - 1; /* deeper ones share the last lane */
        if (depth < TL_MAXDEPTH) ends[depth++] = ev[i].ts + ev[i].dur;
        int *lanes = tl_track_of(tr, nt, ev[i].tid)->lanes;
        lanes[ev[i].group] = lanes[ev[i].group] > ev[i].lane + 1 ? lanes[ev[i].group] : ev[i].lane + 1;
    }
    double y = TL_TOP;
    for (int k = 0; k < nt; k++) {
        int lanes = tr[k].lanes[0] + tr[k].lanes[1] + tr[k].lanes[2];
        tr[k].y = y, y += lanes * TL_LANE + 8;
    }
    for (int i = 0; i < n; i++) {
        const int *lanes = tl_track_of(tr, nt, ev[i].tid)->lanes;
        for (int g = 0; g < ev[i].group; g++) ev[i].lane += lanes[g];
    }
    double span = t1 > t0 ? t1 - t0 : 1, rows_end = y, mem_top = y + 26, H = mem_top + TL_MEM + 26;
    char b[32], c[32];
#define TX(t) (TL_L + ((t) - t0) / span * TL_PW)
    fprintf(f, "<h2 id=\"timeline\">Timeline of one step</h2>\n<p class=\"note\">Where the time of one training step "
               "went: a row per thread, a rectangle per node's forward (blue) and backward (orange), the parallel "
               "loops the OpenMP workers ran inside them (paler), your spans (grey). Hover a rectangle for its "
               "numbers. Under the rows: the arena's bytes in use after each node.</p>\n<div class=\"timeline\">\n"
               "<svg class=\"tl\" viewBox=\"0 0 %d %.0f\" width=\"%d\" height=\"%.0f\" role=\"img\">\n",
            TL_W, H, TL_W, H);
    /* the time axis: ms from the step's first event, gridlines through the rows and the memory */
    double ms = span / 1000, st = tick_step(ms);
    for (double v = 0; v <= ms + st * 1e-9; v += st)
        fprintf(f, "<line class=\"grid\" x1=\"%.2f\" x2=\"%.2f\" y1=\"%d\" y2=\"%.0f\"/><text class=\"tick tl-tick\" "
                   "x=\"%.2f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
                TX(t0 + v * 1000), TX(t0 + v * 1000), TL_TOP - 4, mem_top + TL_MEM, TX(t0 + v * 1000), TL_TOP - 10,
                fmt(b, sizeof b, v));
    fprintf(f, "<text class=\"axis\" x=\"%d\" y=\"%d\" text-anchor=\"end\">ms</text>\n", TL_L - 8, TL_TOP - 10);
    for (int k = 0; k < nt; k++) {
        fprintf(f, "<g class=\"tl-track\" data-track=\"");
        esc(f, tr[k].name ? tr[k].name : "");
        fprintf(f, "\"><line class=\"tl-sep\" x1=\"0\" x2=\"%d\" y1=\"%.0f\" y2=\"%.0f\"/>"
                   "<text class=\"tl-name\" x=\"%d\" y=\"%.0f\" text-anchor=\"end\">",
                TL_W, tr[k].y, tr[k].y, TL_L - 8, tr[k].y + 16);
        if (tr[k].name) esc(f, tr[k].name);
        else fprintf(f, "thread %d", tr[k].tid);
        fputs("</text>\n", f);
        for (int i = 0; i < n; i++)
            if (ev[i].tid == tr[k].tid) tl_rect(f, &ev[i], &tr[k], TX(ev[i].ts), ev[i].dur / span * TL_PW);
        fputs("</g>\n", f);
    }
    /* the arena: each sample holds until the next, MiB on its own axis */
    fprintf(f, "<line class=\"tl-sep\" x1=\"0\" x2=\"%d\" y1=\"%.0f\" y2=\"%.0f\"/>\n", TL_W, rows_end, rows_end);
    if (ns) {
        qsort(smp, (size_t)ns, sizeof *smp, tl_by_ts);
        int peak = 0;
        for (int i = 1; i < ns; i++)
            if (smp[i].bytes > smp[peak].bytes) peak = i;
        double mib = smp[peak].bytes / 1048576, mst = tick_step(mib > 0 ? 2 * mib : 1), top = ceil(mib / mst) * mst;
        if (top <= 0) top = mst;
#define MY(v) (mem_top + TL_MEM - (v) / 1048576 / top * TL_MEM)
        fprintf(f, "<g class=\"tl-arena\" data-samples=\"%d\"><text class=\"tl-name\" x=\"%d\" y=\"%.0f\" "
                   "text-anchor=\"end\">arena MiB</text>\n", ns, TL_L - 30, mem_top + TL_MEM / 2 + 4);
        for (double v = 0; v <= top + mst * 1e-9; v += mst)
            fprintf(f, "<text class=\"tick\" x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>", TL_L - 5,
                    MY(v * 1048576) + 4, fmt(b, sizeof b, v));
        fprintf(f, "\n<path class=\"tl-arena-line\" fill=\"none\" stroke=\"#2ca02c\" stroke-width=\"1.5\" "
                   "d=\"M%.2f,%.2f", TX(smp[0].ts), MY(smp[0].bytes));
        for (int i = 1; i < ns; i++) fprintf(f, " H%.2f V%.2f", TX(smp[i].ts), MY(smp[i].bytes));
        fprintf(f, " H%.2f\"/>\n", TX(t1));
        /* the peak, and the node after which the arena held that much */
        const char *after = NULL;
        for (int i = 0; i < n; i++)
            if (ev[i].group == TL_NODE && fabs(ev[i].ts + ev[i].dur - smp[peak].ts) < 0.5)
                after = str(ev[i].e, "name");
        fprintf(f, "<circle class=\"tl-arena-peak\" cx=\"%.2f\" cy=\"%.2f\" r=\"3.5\" fill=\"#2ca02c\"><title>"
                   "most in use at a node's end: %s MiB (%s bytes) at %.3f ms",
                TX(smp[peak].ts), MY(smp[peak].bytes), fmt(b, sizeof b, round(mib * 10) / 10),
                fmt(c, sizeof c, smp[peak].bytes), (smp[peak].ts - t0) / 1000);
        if (after) fputs(", after ", f), esc(f, after);
        fputs("</title></circle></g>\n", f);
#undef MY
    }
    fputs("</svg>\n", f);
#undef TX
    /* the five nodes that took longest, both ways */
    qsort(nodes, (size_t)nn, sizeof *nodes, tl_by_time);
    fputs("<div class=\"tl-side\"><table class=\"tl-top\"><caption>The slowest nodes (forward + backward)</caption>"
          "<tr><th>node</th><th>op</th><th>layer</th><th>fwd ms</th><th>bwd ms</th><th>of the step</th></tr>\n", f);
    for (int k = 0; k < nn && k < 5; k++) {
        fputs("<tr class=\"tl-top-row\" data-node=\"", f), esc(f, nodes[k].node), fputs("\"><td>", f);
        esc(f, nodes[k].node), fputs("</td><td>", f), esc(f, nodes[k].name), fputs("</td><td>", f);
        esc(f, *nodes[k].layer ? nodes[k].layer : "-");
        fprintf(f, "</td><td>%.3f</td><td>%.3f</td><td>%.1f%%</td></tr>\n", nodes[k].fwd / 1000, nodes[k].bwd / 1000,
                100 * (nodes[k].fwd + nodes[k].bwd) / span);
    }
    fputs("</table>\n<p class=\"note\">The whole trace, zoomable, with every node's arguments and arrows from each "
          "forward to its backward: open <b>", f);
    esc(f, strrchr(path, '/') ? strrchr(path, '/') + 1 : path);
    fputs("</b> (beside this page) in ui.perfetto.dev or chrome://tracing.</p>\n", f);
    if (skipped) fprintf(f, "<p class=\"note\">%d event(s) without a time or a duration were left out.</p>\n", skipped);
    fputs("<p class=\"note\" id=\"tl-status\">the timeline's check did not run</p></div></div>\n", f);
out:
    free(ev), free(tr), free(smp), free(nodes);
    cJSON_Delete(root);
    return rc;
}

// ----------------------------------------------------------------------------
// the page

static const char *const style =
    "body{font:14px/1.45 system-ui,-apple-system,'DejaVu Sans',sans-serif;margin:0 auto;max-width:1240px;"
    "padding:16px 24px;color:#222}"
    "h1{font-size:24px;margin:8px 0}h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid #ddd}"
    ".run{color:#444}.run b{color:#000}.findings{list-style:none;padding:0}"
    ".findings li{border-left:5px solid #e6a700;background:#fff8e6;margin:6px 0;padding:6px 10px}"
    ".findings li.error{border-color:#c0392b;background:#fdecea}.findings .kind{font-weight:bold}"
    ".findings .remedy{color:#245;display:block}"
    ".ok{border-left:5px solid #2ca02c;background:#eef8ee;padding:6px 10px}"
    ".charts{display:flex;flex-wrap:wrap;gap:8px 20px}.chart-box{width:580px}svg text{font-family:inherit}"
    ".title{font-size:15px;font-weight:bold}.tick{font-size:11px;fill:#555}.axis{font-size:12px;fill:#333}"
    ".plot{fill:#fff;stroke:#bbb}.grid{stroke:#eee}.band{fill:#2ca02c;opacity:.12}"
    ".mark{stroke:#2ca02c;stroke-dasharray:4 3}.legend{font-size:12px;margin:-4px 0 6px 66px}"
    ".legend span{margin-right:12px;white-space:nowrap}"
    ".legend i{display:inline-block;width:14px;height:3px;margin-right:4px;vertical-align:middle}"
    ".hists,.hpanels{display:flex;flex-wrap:wrap;gap:6px}.hgroup{border:1px solid #ddd;padding:4px}"
    ".hrow{font-size:13px;margin-bottom:2px}.hist{margin:0;border:1px solid #eee;padding:4px}"
    ".hist figcaption{font-size:12px}.graphs{display:flex;flex-wrap:wrap;gap:20px}.graph{margin:0}"
    ".nodetext{font-size:13px}.nodesub,.nodeval{font-size:11px}.pictures figure{margin:10px 0}"
    ".pictures img{max-width:100%;border:1px solid #ddd}.note{color:#555;font-size:13px}"
    "#status{color:#999;font-size:11px;margin-top:30px}"
    "table.tests td,table.tests th{padding:2px 10px;text-align:right}"
    ".timeline{display:flex;flex-wrap:wrap;gap:8px 16px;align-items:flex-start}.tl-side{width:350px}"
    ".tl-label{font-size:10px;pointer-events:none}.tl-name{font-size:12px;fill:#333}.tl-sep{stroke:#ddd}"
    "table.tl-top{font-size:12px;border-collapse:collapse}table.tl-top caption{font-weight:bold;text-align:left}"
    "table.tl-top td,table.tl-top th{padding:2px 6px;text-align:right}table.tl-top td:nth-child(2),table.tl-top th:nth-child(2){text-align:left}";

static void settings(FILE *f, const runlog *r) {
    const cJSON *x;
    char b[32];
    fputs("<p class=\"run\">", f);
    bool first = true;
    cJSON_ArrayForEach(x, r->run) {
        if (!strcmp(x->string, "type") || !strcmp(x->string, "layers") || !strcmp(x->string, "version")) continue;
        if (!cJSON_IsNumber(x) && !cJSON_IsString(x) && !cJSON_IsBool(x)) continue;
        fputs(first ? "" : " · ", f), first = false;
        esc(f, x->string), fputs(" <b>", f);
        if (cJSON_IsString(x)) esc(f, x->valuestring);
        else if (cJSON_IsBool(x)) fputs(cJSON_IsTrue(x) ? "true" : "false", f);
        else fputs(fmt(b, sizeof b, x->valuedouble), f);
        fputs("</b>", f);
    }
    fputs("</p>\n", f);
    if (r->n_tests) {
        fputs("<table class=\"tests\"><tr><th>epoch</th><th>step</th><th>test accuracy</th><th>test loss</th></tr>\n",
              f);
        for (int i = 0; i < r->n_tests; i++)
            fprintf(f, "<tr><td>%s</td><td>%s</td><td>%.2f%%</td><td>%s</td></tr>\n",
                    fmt((char[32]){0}, 32, num(r->tests[i], "epoch")), fmt((char[32]){0}, 32, num(r->tests[i], "step")),
                    100 * num(r->tests[i], "acc"), fmt(b, sizeof b, num(r->tests[i], "loss")));
        fputs("</table>\n", f);
    }
}

static void diagnosis(FILE *f, const runlog *r) {
    fputs("<h2 id=\"diagnosis\">Diagnosis</h2>\n", f);
    if (!r->n_findings) {
        fputs("<p class=\"ok\">Nothing looked wrong: no vanishing or exploding gradients, dead ReLUs, update ratios "
              "far from ~1e-3, batch-norm drift, saturated units or plateaued loss were found.</p>\n", f);
        return;
    }
    fputs("<ul class=\"findings\">\n", f);
    /* errors first, then warnings, each in the log's order */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < r->n_findings; i++) {
            const cJSON *x = r->findings[i];
            if ((strcmp(str(x, "severity"), "error") == 0) != (pass == 0)) continue;
            fprintf(f, "<li class=\"%s\"><span class=\"kind\">", pass == 0 ? "error" : "warning");
            esc(f, str(x, "kind"));
            if (*str(x, "layer")) fputs(" in layer ", f), esc(f, str(x, "layer"));
            fprintf(f, "</span> (step %s): ", fmt((char[32]){0}, 32, num(x, "step")));
            esc(f, str(x, "message"));
            if (*str(x, "remedy"))
                fputs("<span class=\"remedy\">Try: ", f), esc(f, str(x, "remedy")), fputs("</span>", f);
            fputs("</li>\n", f);
        }
    fputs("</ul>\n", f);
}

static int curves(FILE *f, const runlog *r) {
    series s[2] = {0};
    int rc = series_alloc(&s[0], r->n_steps) | series_alloc(&s[1], r->n_tests);
    if (rc) goto out;
    fputs("<h2 id=\"curves\">Training</h2>\n<div class=\"charts\">\n", f);
    const char *what[2][3] = {{"loss", "Loss", "cross-entropy"}, {"acc", "Accuracy", "accuracy"}};
    for (int w = 0; w < 2; w++) {
        s[0].n = s[1].n = 0;
        field_series(&s[0], r->steps, r->n_steps, what[w][0]);
        field_series(&s[1], r->tests, r->n_tests, what[w][0]);
        snprintf(s[0].name, sizeof s[0].name, "%s/train", what[w][0]);
        snprintf(s[1].name, sizeof s[1].name, "%s/test", what[w][0]);
        snprintf(s[0].label, sizeof s[0].label, "train (the logged step's batch)");
        snprintf(s[1].label, sizeof s[1].label, "test (after each epoch)");
        s[0].colour = 0x1f77b4, s[1].colour = 0xd62728;
        fputs("<div class=\"chart-box\">", f);
        chart(f, what[w][0], what[w][1], what[w][2], s, 2, false, 0, 0, NAN);
        fputs("</div>\n", f);
    }
    s[0].n = 0;
    field_series(&s[0], r->steps, r->n_steps, "lr");
    snprintf(s[0].name, sizeof s[0].name, "lr");
    snprintf(s[0].label, sizeof s[0].label, "learning rate (group 0)");
    s[0].colour = 0x9467bd;
    fputs("<div class=\"chart-box\">", f);
    chart(f, "lr", "Learning rate", "lr", s, 1, false, 0, 0, NAN);
    fputs("</div>\n<div class=\"chart-box\">", f);
    /* the usual rule of thumb: an update moves a weight by about a thousandth of its size */
    rc = layer_chart(f, r, M_UPDATE, "update", "update", "Update ratio lr·|dw|/|w| per layer (weights)", "update ratio",
                     true, 1e-4, 1e-2, 1e-3);
    fputs("<p class=\"note\">Shaded: 1e-4 to 1e-2; dashed: 1e-3, the usual size of a step relative to its weight. "
          "Far below, the layer hardly learns; far above, it thrashes.</p>", f);
    fputs("</div>\n<div class=\"chart-box\">", f);
    rc |= layer_chart(f, r, M_DY, "dy", "dy", "|dy| at each layer's output (RMS)", "|dy|", true, 0, 0, NAN);
    fputs("</div>\n<div class=\"chart-box\">", f);
    rc |= layer_chart(f, r, M_DEAD, "dead", "dead", "Dead units (0 for every image of the window)", "fraction", false,
                      0, 0, NAN);
    fputs("</div>\n<div class=\"chart-box\">", f);
    rc |= layer_chart(f, r, M_ACT_RMS, "act", "act", "Activation RMS per layer", "rms", true, 0, 0, NAN);
    fputs("</div>\n<div class=\"chart-box\">", f);
    rc |= layer_chart(f, r, M_BN_SHIFT, "bn", "bn", "Batch norm: batch mean vs running mean (in running std)",
                      "mean shift", false, 0, 0, NAN);
    fputs("</div>\n<div class=\"chart-box\">", f);
    rc |= layer_chart(f, r, M_SATURATED, "saturated", "saturated", "Saturated sigmoid/tanh outputs", "fraction", false,
                      0, 0, NAN);
    fputs("</div>\n</div>\n", f);
out:
    series_free(s, 2);
    return rc ? tg_fail(TG_ERR_NOMEM, "report: no memory for the curves") : 0;
}

static void pictures(FILE *f, const char *const *pics, int n) {
    if (n <= 0) return;
    fputs("<h2 id=\"pictures\">Pictures</h2>\n<div class=\"pictures\">\n", f);
    for (int i = 0; i < n; i++) {
        const char *name = strrchr(pics[i], '/') ? strrchr(pics[i], '/') + 1 : pics[i];
        size_t len = 0;
        unsigned char *d = (unsigned char *)read_all(pics[i], &len);
        if (!d) { /* a picture not written: the page says so rather than failing */
            fputs("<p class=\"note\">", f), esc(f, pics[i]), fputs(": missing</p>\n", f);
            continue;
        }
        fputs("<figure><img alt=\"", f), esc(f, name), fputs("\" src=\"data:image/png;base64,", f);
        base64(f, d, len);
        free(d);
        fputs("\"><figcaption>", f), esc(f, name), fputs("</figcaption></figure>\n", f);
    }
    fputs("</div>\n", f);
}

int report_write(const char *runlog_path, const char *html, const char *trace, const char *const *pics, int n) {
    if (!runlog_path || !html || n < 0 || (n > 0 && !pics)) return tg_fail(TG_ERR_ARG, "report_write: bad arguments");
    runlog r;
    int rc = runlog_read(runlog_path, &r);
    if (rc < 0) return rc;
    FILE *f = fopen(html, "w");
    if (!f) {
        runlog_free(&r);
        return tg_fail(TG_ERR_IO, "report: cannot write %s", html);
    }
    char b[32];
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>tapegrad run: ", f);
    esc(f, r.run ? str(r.run, "net") : "");
    fprintf(f, "</title>\n<meta name=\"viewport\" content=\"width=device-width\">\n<style>%s</style>\n", style);
    /* the one script: errors caught from here on, shown at the foot, where the browser test reads them */
    fputs("<script>window.reportErrors=[];window.onerror=function(m,s,l){window.reportErrors.push(m+' (line '+l+')');};"
          "</script>\n</head><body>\n<h1>tapegrad run: ", f);
    esc(f, r.run ? str(r.run, "net") : "");
    fputs("</h1>\n", f);
    if (r.run) settings(f, &r);
    if (r.bad_lines) fprintf(f, "<p class=\"note\">%d line(s) of the log could not be read (a run stopped while "
                                "writing?) and were left out.</p>\n", r.bad_lines);
    diagnosis(f, &r);
    rc = curves(f, &r);
    if (r.hist && histograms(f, &r) < 0) rc = -1;
    if (r.graph) {
        const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(r.graph, "nodes");
        fprintf(f, "<h2 id=\"graph\">The graph at step %s</h2>\n<p class=\"note\">One box per node of the tape, in the "
                   "order they ran; arrows on the right are skip connections. Hover a box for its numbers.</p>\n"
                   "<div class=\"graphs\">\n", fmt(b, sizeof b, num(r.graph, "step")));
        graph_panel(f, nodes, G_TIME);
        graph_panel(f, nodes, G_DY);
        fputs("</div>\n", f);
    }
    if (trace && timeline(f, trace) < 0) rc = -1;
    pictures(f, pics, n);
    fputs("<p id=\"status\">the page's check did not run</p>\n<script>(function(){"
          "var st=document.getElementById('status');"
          "try{var c=document.querySelectorAll('svg .curve'),names=[],bad=[];"
          "for(var i=0;i<c.length;i++){var e=c[i],nm=e.getAttribute('data-name');names.push(nm);"
          "if(!(e.getAttribute('points')||'').trim())bad.push(nm+' has no points');}"
          "var err=window.reportErrors.concat(bad);"
          "st.textContent=err.length?'report-errors: '+err.join('; '):"
          "'report-ok '+c.length+' curves: '+names.join(' ');"
          "}catch(x){st.textContent='report-errors: '+x;}"
          /* the timeline's rectangles as laid out: each has a width on the screen */
          "var tl=document.getElementById('tl-status');if(tl){try{var r=document.querySelectorAll('svg .tl-event'),"
          "k=0;for(var j=0;j<r.length;j++)if(r[j].getBoundingClientRect().width>0)k++;"
          "tl.textContent='timeline-ok '+k+' of '+r.length+' events drawn';"
          "}catch(x){tl.textContent='timeline-errors: '+x;}}"
          "})();"
          "</script>\n</body></html>\n", f);
    runlog_free(&r);
    if (ferror(f) | (fclose(f) != 0)) return tg_fail(TG_ERR_IO, "report: cannot write %s", html);
    return rc;
}
