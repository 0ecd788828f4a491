/* pictures.c: the demos' pictures. Reads top to bottom: the canvas, text (a
 * TrueType font, or the built-in one), colour maps, then one function per
 * picture. Every picture is drawn at a size a person can read without zooming:
 * digits 3-4x, weights 32 px each, labels 13-18 px. */
#include "pictures.h"
#include "tapegrad_op.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function" /* the header's helpers we do not call */
#pragma GCC diagnostic ignored "-Wmissing-braces"
#endif
#include "stb_easy_font.h"
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#include "stb_truetype.h"

// ----------------------------------------------------------------------------
// the canvas

pic *pic_new(int w, int h, uint32_t bg) {
    if (w <= 0 || h <= 0 || w > 16384 || h > 16384) {
        tg_fail(TG_ERR_ARG, "pic_new: a %dx%d picture", w, h);
        return NULL;
    }
    pic *p = malloc(sizeof *p);
    uint8_t *rgb = malloc((size_t)w * h * 3);
    if (!p || !rgb) {
        free(p), free(rgb);
        tg_fail(TG_ERR_NOMEM, "pic_new: no memory for a %dx%d picture", w, h);
        return NULL;
    }
    *p = (pic){w, h, rgb};
    pic_rect(p, 0, 0, w, h, bg);
    return p;
}

void pic_free(pic *p) {
    if (p) free(p->rgb);
    free(p);
}

/* a pixel blended with colour c by a/255 (clipped to the canvas) */
static void blend(pic *p, int x, int y, uint32_t c, int a) {
    if (x < 0 || y < 0 || x >= p->w || y >= p->h || a <= 0) return;
    uint8_t *px = p->rgb + ((size_t)y * p->w + x) * 3;
    for (int i = 0; i < 3; i++) {
        int v = (int)((c >> (16 - 8 * i)) & 255);
        px[i] = (uint8_t)((v * a + px[i] * (255 - a) + 127) / 255);
    }
}

void pic_rect(pic *p, int x, int y, int w, int h, uint32_t rgb) {
    for (int j = y < 0 ? 0 : y; j < y + h && j < p->h; j++)
        for (int i = x < 0 ? 0 : x; i < x + w && i < p->w; i++) blend(p, i, j, rgb, 255);
}

static void frame(pic *p, int x, int y, int w, int h, uint32_t rgb) {
    pic_rect(p, x, y, w, 1, rgb), pic_rect(p, x, y + h - 1, w, 1, rgb);
    pic_rect(p, x, y, 1, h, rgb), pic_rect(p, x + w - 1, y, 1, h, rgb);
}

void pic_gray(pic *p, int x, int y, const uint8_t *g, int w, int h, int scale) {
    for (int j = 0; j < h * scale; j++)
        for (int i = 0; i < w * scale; i++) {
            uint32_t v = g[(j / scale) * w + i / scale];
            blend(p, x + i, y + j, v << 16 | v << 8 | v, 255);
        }
}

/* through the library's PNG writer (atomic, its errors naming the file): the canvas as a (3,H,W) tensor of bytes */
int pic_save(const pic *p, const char *path) {
    tg_tensor *x = tg_tensor_new(3, (int[]){3, p->h, p->w});
    if (!x) return tg_last_error_code();
    size_t n = (size_t)p->w * p->h;
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) x->data[c * n + i] = p->rgb[3 * i + c];
    int rc = tg_image_write_png(path, x, 0, 255);
    tg_tensor_free(x);
    return rc;
}

// ----------------------------------------------------------------------------
// text: DejaVu Sans through stb_truetype; without the file, stb_easy_font's
// segment font (ASCII, scaled by whole pixels), so the labels are never lost

static struct {
    bool tried, ok;
    unsigned char *ttf;
    stbtt_fontinfo info;
} font;

static void font_free(void) { free(font.ttf); }

static bool font_load(void) {
    if (font.tried) return font.ok;
    font.tried = true;
    const char *path = getenv("TG_FONT") ? getenv("TG_FONT") : PIC_FONT;
    FILE *f = fopen(path, "rb");
    long n = -1;
    if (f && fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n > 0 && fseek(f, 0, SEEK_SET) == 0 && (font.ttf = malloc((size_t)n)) &&
        fread(font.ttf, 1, (size_t)n, f) == (size_t)n)
        font.ok = stbtt_InitFont(&font.info, font.ttf, stbtt_GetFontOffsetForIndex(font.ttf, 0)) != 0;
    if (f) fclose(f);
    if (!font.ok) free(font.ttf), font.ttf = NULL;
    else atexit(font_free);
    return font.ok;
}

bool pic_font_loaded(void) { return font_load(); }

/* the next code point of UTF-8 text (a bad byte reads as '?') */
static int utf8_next(const char **s) {
    const unsigned char *u = (const unsigned char *)*s;
    int c = u[0], n = c < 0x80 ? 0 : c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : -1;
    if (n < 0) return (*s)++, '?';
    c = n ? c & (0x3f >> n) : c;
    for (int i = 1; i <= n; i++) {
        if ((u[i] & 0xc0) != 0x80) return *s += i, '?';
        c = c << 6 | (u[i] & 0x3f);
    }
    *s += n + 1;
    return c;
}

/* ASCII for the built-in font: the arrow as "->", the times sign as "x", anything else as '?' */
static void ascii(const char *s, char *out, size_t len) {
    size_t k = 0;
    while (*s && k + 3 < len) {
        int c = utf8_next(&s);
        if (c == 0x2192) out[k++] = '-', out[k++] = '>';
        else if (c == 0xd7) out[k++] = 'x';
        else if (c == 0xb1) out[k++] = '+', out[k++] = '-';
        else out[k++] = c >= 32 && c < 127 ? (char)c : '?';
    }
    out[k] = 0;
}

static int easy_scale(int px) { return px >= 16 ? px / 8 : 1; }

static int text_draw(pic *p, int x, int y, int px, const char *s, uint32_t rgb) {
    if (font_load()) {
        float scale = stbtt_ScaleForPixelHeight(&font.info, (float)px), pen = (float)x;
        int ascent, descent, gap;
        stbtt_GetFontVMetrics(&font.info, &ascent, &descent, &gap);
        int base = y + (int)lroundf((float)ascent * scale), prev = 0;
        while (*s) {
            int c = utf8_next(&s), adv, lsb, x0, y0, x1, y1;
            if (prev) pen += scale * (float)stbtt_GetCodepointKernAdvance(&font.info, prev, c);
            stbtt_GetCodepointHMetrics(&font.info, c, &adv, &lsb);
            stbtt_GetCodepointBitmapBox(&font.info, c, scale, scale, &x0, &y0, &x1, &y1);
            int gw = x1 - x0, gh = y1 - y0;
            if (p && gw > 0 && gh > 0) {
                unsigned char *g = malloc((size_t)gw * gh);
                if (g) {
                    stbtt_MakeCodepointBitmap(&font.info, g, gw, gh, gw, scale, scale, c);
                    int gx = (int)lroundf(pen) + x0;
                    for (int j = 0; j < gh; j++)
                        for (int i = 0; i < gw; i++) blend(p, gx + i, base + y0 + j, rgb, g[j * gw + i]);
                    free(g);
                }
            }
            pen += scale * (float)adv, prev = c;
        }
        return (int)lroundf(pen) - x;
    }
    char buf[512];
    ascii(s, buf, sizeof buf);
    int k = easy_scale(px), w = stb_easy_font_width(buf) * k;
    if (!p) return w;
    static _Alignas(float) char quads[64 * 600]; /* x, y, z, colour: 16 bytes a vertex, 4 vertices a quad */
    int n = stb_easy_font_print(0, 0, buf, NULL, quads, sizeof quads);
    for (int q = 0; q < n; q++) {
        float v[10]; /* corners 0 and 2 are opposite: floats 0, 1 and 8, 9 */
        memcpy(v, quads + q * 64, sizeof v);
        int qx = (int)v[0], qy = (int)v[1], qw = (int)v[8] - qx, qh = (int)v[9] - qy;
        pic_rect(p, x + qx * k, y + qy * k + (px - 8 * k) / 2, qw * k, qh * k, rgb);
    }
    return w;
}

int pic_text(pic *p, int x, int y, int px, const char *utf8, uint32_t rgb) {
    return p && utf8 ? text_draw(p, x, y, px, utf8, rgb) : 0;
}

int pic_text_width(int px, const char *utf8) { return utf8 ? text_draw(NULL, 0, 0, px, utf8, 0) : 0; }

static void text_centered(pic *p, int cx, int y, int px, const char *s, uint32_t rgb) {
    pic_text(p, cx - pic_text_width(px, s) / 2, y, px, s, rgb);
}

// ----------------------------------------------------------------------------
// colour maps, piecewise linear through a few stops

static uint32_t ramp(const uint32_t *stops, int n, float v) {
    if (!(v > 0)) v = 0; /* NaN too */
    if (v > 1) v = 1;
    float f = v * (float)(n - 1);
    int i = (int)f < n - 1 ? (int)f : n - 2;
    float t = f - (float)i;
    uint32_t out = 0;
    for (int s = 16; s >= 0; s -= 8) {
        float a = (float)((stops[i] >> s) & 255), b = (float)((stops[i + 1] >> s) & 255);
        out |= (uint32_t)lroundf(a + (b - a) * t) << s;
    }
    return out;
}

uint32_t pic_diverging(float v) { /* ColorBrewer's RdBu ends, white in the middle */
    static const uint32_t stops[] = {0x2166ac, 0x92c5de, 0xffffff, 0xf4a582, 0xb2182b};
    return ramp(stops, 5, (v + 1) / 2);
}

uint32_t pic_sequential(float v) {
    static const uint32_t stops[] = {0x440154, 0x3b528b, 0x21918c, 0x5ec962, 0xfde725};
    return ramp(stops, 5, v);
}

/* a number for a label: 3 significant digits, no exponent for ordinary sizes */
static void num(char *buf, size_t len, double v) {
    if (v == 0) snprintf(buf, len, "0");
    else if (fabs(v) >= 0.01 && fabs(v) < 1e4) snprintf(buf, len, "%.3g", v);
    else snprintf(buf, len, "%.2e", v);
}

/* a horizontal colour bar from -a to a (diverging) or 0 to a, with five numbers under it */
static void colour_bar(pic *p, int x, int y, int w, int h, float a, bool diverging) {
    for (int i = 0; i < w; i++) {
        float t = (float)i / (float)(w - 1);
        pic_rect(p, x + i, y, 1, h, diverging ? pic_diverging(2 * t - 1) : pic_sequential(t));
    }
    frame(p, x - 1, y - 1, w + 2, h + 2, 0x808080);
    for (int k = 0; k <= 4; k++) {
        char b[32];
        double v = diverging ? (double)a * (k - 2) / 2 : (double)a * k / 4;
        num(b, sizeof b, v);
        int cx = x + (w - 1) * k / 4;
        pic_rect(p, cx, y + h, 1, 5, 0x404040);
        text_centered(p, cx, y + h + 7, 13, b, 0x202020);
    }
}

// ----------------------------------------------------------------------------
// misclassified digits

typedef struct {
    int i;
    float conf;
} ranked;

static int by_conf(const void *a, const void *b) { /* descending; ties by index, so the order is fixed */
    const ranked *x = a, *y = b;
    return x->conf != y->conf ? (x->conf < y->conf ? 1 : -1) : x->i - y->i;
}

int pic_errors(const char *path, const uint8_t *digits, const int32_t *truth, const int32_t *pred, const float *conf,
               int n, int max) {
    if (!path || n < 0 || (n > 0 && (!digits || !truth || !pred || !conf)) || max < 1)
        return tg_fail(TG_ERR_ARG, "pic_errors: bad arguments");
    enum { COLS = 8, SCALE = 4, IMG = 28 * SCALE, CW = IMG + 24, CH = IMG + 34, TOP = 64, PAD = 16 };
    int shown = n < max ? n : max, rows = shown ? (shown + COLS - 1) / COLS : 1;
    ranked *r = malloc(((size_t)n + 1) * sizeof *r);
    pic *p = pic_new(2 * PAD + COLS * CW, TOP + rows * CH + PAD, 0xffffff);
    if (!r || !p) {
        free(r), pic_free(p);
        return tg_fail(TG_ERR_NOMEM, "pic_errors: no memory");
    }
    for (int i = 0; i < n; i++) r[i] = (ranked){i, conf[i]};
    qsort(r, (size_t)n, sizeof *r, by_conf);
    char t[160];
    snprintf(t, sizeof t, "Misclassified test digits: %d, most confident mistakes first", n);
    pic_text(p, PAD, 12, 20, t, 0x000000);
    int x = PAD + pic_text(p, PAD, 40, 14, "label: true → ", 0x505050);
    x += pic_text(p, x, 40, 14, "predicted", 0xc0392b);
    pic_text(p, x, 40, 14, shown < n ? "  (the model's probability of it); the first ones shown" :
                                       "  (the model's probability of it)", 0x505050);
    uint8_t inv[784];
    for (int k = 0; k < shown; k++) {
        int i = r[k].i, x0 = PAD + (k % COLS) * CW + (CW - IMG) / 2, y0 = TOP + (k / COLS) * CH;
        for (int j = 0; j < 784; j++) inv[j] = (uint8_t)(255 - digits[(size_t)i * 784 + j]); /* dark on white */
        pic_gray(p, x0, y0, inv, 28, 28, SCALE);
        frame(p, x0 - 1, y0 - 1, IMG + 2, IMG + 2, 0xc8c8c8);
        char a[16], b[16], c[24];
        snprintf(a, sizeof a, "%d → ", truth[i]);
        snprintf(b, sizeof b, "%d", pred[i]);
        snprintf(c, sizeof c, "  (%.0f%%)", 100.0 * (double)conf[i]);
        int w = pic_text_width(17, a) + pic_text_width(17, b) + pic_text_width(17, c);
        int lx = x0 + IMG / 2 - w / 2, ly = y0 + IMG + 6;
        lx += pic_text(p, lx, ly, 17, a, 0x000000);
        lx += pic_text(p, lx, ly, 17, b, 0xc0392b);
        pic_text(p, lx, ly, 17, c, 0x606060);
    }
    if (!n) pic_text(p, PAD, TOP, 16, "(none: every test digit was classified right)", 0x000000);
    int rc = pic_save(p, path);
    pic_free(p), free(r);
    return rc;
}

// ----------------------------------------------------------------------------
// the first conv's filters: one scale for all, so filters compare with each other

int pic_filters(const char *path, const tg_tensor *w, const char *name) {
    if (!path || !w || w->ndim != 4 || !w->data) return tg_fail(TG_ERR_ARG, "pic_filters: need a 4-D conv weight");
    int K = w->shape[0], C = w->shape[1], R = w->shape[2], S = w->shape[3];
    int z = 160 / (R > S ? R : S), cols = K < 8 ? K : 8;
    z = z > 32 ? 32 : z < 4 ? 4 : z;
    enum { PAD = 20, TOP = 70, LABEL = 22, GAP = 14, BAR = 320 };
    int cw = S * z + GAP, ch = R * z + LABEL + GAP, rows = (K + cols - 1) / cols;
    int W = 2 * PAD + cols * cw, H = TOP + rows * ch + 70;
    if (W < 2 * PAD + BAR + 40) W = 2 * PAD + BAR + 40;
    float a = 0;
    for (int k = 0; k < K; k++)
        for (int j = 0; j < R * S; j++) a = fmaxf(a, fabsf(w->data[(int64_t)k * C * R * S + j]));
    if (!(a > 0)) a = 1; /* all zero (or not finite): any scale shows white */
    pic *p = pic_new(W, H, 0xffffff);
    if (!p) return -1;
    char t[200], s[32];
    num(s, sizeof s, (double)a);
    snprintf(t, sizeof t, "First conv (%s): %d filters, %d×%d%s", name ? name : "", K, R, S,
             C > 1 ? ", input channel 0" : "");
    pic_text(p, PAD, 12, 20, t, 0x000000);
    snprintf(t, sizeof t, "one shared scale for every filter: blue negative, white 0, red positive, ±%s", s);
    pic_text(p, PAD, 40, 14, t, 0x505050);
    for (int k = 0; k < K; k++) {
        const float *f = w->data + (int64_t)k * C * R * S;
        int x0 = PAD + (k % cols) * cw, y0 = TOP + (k / cols) * ch;
        for (int r = 0; r < R; r++)
            for (int c = 0; c < S; c++) pic_rect(p, x0 + c * z, y0 + r * z, z, z, pic_diverging(f[r * S + c] / a));
        frame(p, x0 - 1, y0 - 1, S * z + 2, R * z + 2, 0x909090);
        snprintf(t, sizeof t, "#%d", k);
        text_centered(p, x0 + S * z / 2, y0 + R * z + 4, 13, t, 0x303030);
    }
    colour_bar(p, PAD + 20, H - 58, BAR, 16, a, true);
    int rc = pic_save(p, path);
    pic_free(p);
    return rc;
}

// ----------------------------------------------------------------------------
// feature maps: each top-level layer's last 4-D output on the tape

enum { FEAT_ROWS = 32, FEAT_CH = 8 };

typedef struct {
    char path[TG_NAME_MAX];
    const tg_node *n;
} feat_row;

static float chan_mean_abs(const tg_tensor *y, int c) {
    int64_t hw = (int64_t)y->shape[2] * y->shape[3];
    double s = 0;
    for (int64_t i = 0; i < hw; i++) s += fabs((double)y->data[c * hw + i]);
    return (float)(s / (double)hw);
}

int pic_features(const char *path, const tg_tape *t, const tg_model *m, const uint8_t *digit, int label) {
    if (!path || !t || !m || !digit) return tg_fail(TG_ERR_ARG, "pic_features: bad arguments");
    feat_row rows[FEAT_ROWS];
    int nr = 0;
    for (const tg_node *n = tg_tape_first(t); n; n = n->next) {
        if (!n->scope || !*n->scope || n->out->ndim != 4) continue;
        size_t len = strcspn(n->scope, ".");
        if (len >= TG_NAME_MAX) continue;
        int r = 0;
        while (r < nr && (strlen(rows[r].path) != len || strncmp(rows[r].path, n->scope, len))) r++;
        if (r == nr) {
            if (nr == FEAT_ROWS) continue;
            memcpy(rows[nr].path, n->scope, len), rows[nr].path[len] = 0, nr++;
        }
        rows[r].n = n; /* the last node wins: the layer's output */
    }
    /* a layer that passes its input on unchanged (dropout in evaluation) would repeat the row above */
    int kept = 0;
    for (int r = 0; r < nr; r++) {
        const tg_tensor *y = rows[r].n->out, *z = kept ? rows[kept - 1].n->out : NULL;
        if (z && tg_same_shape(y, z) && !memcmp(y->data, z->data, (size_t)y->size * sizeof *y->data)) continue;
        rows[kept++] = rows[r];
    }
    nr = kept;
    enum { PAD = 16, TOP = 62, LABW = 230, CELL = 64, GAP = 10, RH = CELL + 30 };
    pic *p = pic_new(2 * PAD + LABW + FEAT_CH * (CELL + GAP), TOP + (nr + 1) * RH + PAD, 0xffffff);
    if (!p) return -1;
    char s[200], a[32], b[32];
    snprintf(s, sizeof s, "Feature maps of one test digit (a %d) through the net", label);
    pic_text(p, PAD, 12, 20, s, 0x000000);
    pic_text(p, PAD, 38, 13, "per layer: its output's 8 most active channels, on the layer's own scale "
                             "(dark to yellow; blue-white-red where it has negative values)", 0x505050);
    uint8_t inv[784];
    for (int j = 0; j < 784; j++) inv[j] = (uint8_t)(255 - digit[j]);
    pic_text(p, PAD, TOP + 6, 15, "input", 0x000000);
    pic_text(p, PAD, TOP + 26, 13, "1×28×28", 0x505050);
    pic_gray(p, PAD + LABW, TOP, inv, 28, 28, 2);
    frame(p, PAD + LABW - 1, TOP - 1, 58, 58, 0xc8c8c8);
    for (int r = 0; r < nr; r++) {
        const tg_tensor *y = rows[r].n->out;
        int C = y->shape[1], H = y->shape[2], W = y->shape[3], y0 = TOP + (r + 1) * RH;
        int64_t plane = (int64_t)H * W;
        float lo = 0, hi = 0;
        for (int64_t i = 0; i < (int64_t)C * plane; i++) lo = fminf(lo, y->data[i]), hi = fmaxf(hi, y->data[i]);
        bool div = lo < 0;
        float scale = div ? fmaxf(-lo, hi) : hi;
        if (!(scale > 0)) scale = 1;
        const tg_layer *l = tg_model_find(m, rows[r].path);
        const char *v = rows[r].n->op->variant ? rows[r].n->op->variant(rows[r].n) : NULL;
        snprintf(s, sizeof s, "%.63s  %.23s", rows[r].path, l ? l->kind : "");
        pic_text(p, PAD, y0 + 2, 15, s, 0x000000);
        snprintf(s, sizeof s, "%.40s%s%.40s → %d×%d×%d", rows[r].n->op->name, v ? "+" : "", v ? v : "", C, H, W);
        pic_text(p, PAD, y0 + 22, 13, s, 0x505050);
        num(a, sizeof a, div ? -(double)scale : 0), num(b, sizeof b, (double)scale);
        snprintf(s, sizeof s, "scale %s … %s", a, b);
        pic_text(p, PAD, y0 + 40, 13, s, 0x505050);
        /* the most active channels, ties by index */
        ranked ch[FEAT_CH];
        int nc = 0;
        for (int c = 0; c < C; c++) {
            ranked x = {c, chan_mean_abs(y, c)};
            if (nc < FEAT_CH) ch[nc++] = x;
            else if (x.conf > ch[nc - 1].conf) ch[nc - 1] = x;
            else continue;
            qsort(ch, (size_t)nc, sizeof *ch, by_conf);
        }
        int k = CELL / (H > W ? H : W);
        if (k < 1) k = 1;
        for (int j = 0; j < nc; j++) {
            const float *d = y->data + ch[j].i * plane;
            int x0 = PAD + LABW + j * (CELL + GAP);
            for (int yy = 0; yy < H * k && yy < CELL; yy++)
                for (int xx = 0; xx < W * k && xx < CELL; xx++) {
                    float u = d[(yy / k) * W + xx / k] / scale;
                    blend(p, x0 + xx, y0 + yy, div ? pic_diverging(u) : pic_sequential(u), 255);
                }
            snprintf(s, sizeof s, "ch %d", ch[j].i);
            pic_text(p, x0, y0 + (H * k < CELL ? H * k : CELL) + 3, 12, s, 0x404040);
        }
    }
    int rc = pic_save(p, path);
    pic_free(p);
    return rc;
}

// ----------------------------------------------------------------------------
// autoencoder: originals over reconstructions

int pic_autoencoder(const char *path, const uint8_t *orig, const float *recon, const int32_t *labels, int n) {
    if (!path || !orig || !recon || !labels || n < 1) return tg_fail(TG_ERR_ARG, "pic_autoencoder: bad arguments");
    enum { PAD = 16, COLS = 8, SCALE = 3, IMG = 28 * SCALE, GAP = 14, LABW = 130, TOP = 62 };
    enum { BH = 22 + IMG + 6 + IMG + 22 + 18 }; /* one block: classes, originals, reconstructions, errors */
    int blocks = (n + COLS - 1) / COLS;
    pic *p = pic_new(2 * PAD + LABW + COLS * (IMG + GAP), TOP + blocks * BH + PAD, 0xffffff);
    if (!p) return -1;
    double total = 0;
    uint8_t a[784], b[784];
    for (int k = 0; k < n; k++) {
        int x0 = PAD + LABW + (k % COLS) * (IMG + GAP), y0 = TOP + (k / COLS) * BH;
        double se = 0;
        for (int j = 0; j < 784; j++) {
            float o = orig[(size_t)k * 784 + j] / 255.0f, r = recon[(size_t)k * 784 + j];
            r = r < 0 ? 0 : r > 1 ? 1 : r;
            se += (double)(o - r) * (o - r);
            a[j] = (uint8_t)(255 - orig[(size_t)k * 784 + j]), b[j] = (uint8_t)lroundf(255 * (1 - r));
        }
        total += se / 784;
        char s[48];
        snprintf(s, sizeof s, "class %d", labels[k]);
        text_centered(p, x0 + IMG / 2, y0, 15, s, 0x000000);
        pic_gray(p, x0, y0 + 22, a, 28, 28, SCALE);
        frame(p, x0 - 1, y0 + 21, IMG + 2, IMG + 2, 0xc8c8c8);
        pic_gray(p, x0, y0 + 28 + IMG, b, 28, 28, SCALE);
        frame(p, x0 - 1, y0 + 27 + IMG, IMG + 2, IMG + 2, 0xc8c8c8);
        snprintf(s, sizeof s, "mse %.4f", se / 784);
        text_centered(p, x0 + IMG / 2, y0 + 32 + 2 * IMG, 13, s, 0x505050);
        if (k % COLS == 0) {
            pic_text(p, PAD, y0 + 22 + IMG / 2 - 8, 15, "original", 0x000000);
            pic_text(p, PAD, y0 + 28 + IMG + IMG / 2 - 8, 15, "reconstruction", 0x000000);
        }
    }
    char s[160];
    snprintf(s, sizeof s, "Autoencoder: %d test digits over their reconstructions (their mean mse %.4f)", n, total / n);
    pic_text(p, PAD, 12, 20, s, 0x000000);
    pic_text(p, PAD, 38, 13, "mse: the mean squared error of the pixels in [0,1], per image", 0x505050);
    int rc = pic_save(p, path);
    pic_free(p);
    return rc;
}
