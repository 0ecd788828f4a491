/* digit.c: a photo of a handwritten digit made into an MNIST sample.
 *
 * MNIST's digits are light ink on black, their box scaled to 20 pixels on its
 * longer side (anti-aliased) and their centre of mass at pixel (14,14) of a
 * 28x28 field. A photo of a digit on paper needs more before that: its paper
 * is shaded, unevenly lit and noisy, dirt makes specks, and the table shows at
 * the sheet's edge. The steps, on the picture shrunk to 512 pixels at most:
 *   1. grey; a transparent background becomes paper opposite the strokes' shade
 *   2. the paper's light taken away: a morphological opening (the minimum, then
 *      the maximum, over squares wider than any stroke: a quarter of the
 *      picture) keeps shading and wide shadows and drops bright strokes; a
 *      closing (the maximum, then the minimum) drops dark ones. What is left
 *      (the picture less its opening, or its closing less the picture) is the
 *      ink, bright on black as MNIST's
 *   3. which of the two: a smooth surface fitted to the picture is the paper,
 *      and the ink is the side of it that strays further (paper in shadow may
 *      be darker than mid-grey, so its shade alone cannot tell)
 *   4. the table: pixels far darker than that paper, running along the border,
 *      and half a window around them (where the closing bridged them) hold no ink
 *   5. a 3x3 mean against the camera's noise, then ink is what is brighter than
 *      Otsu's threshold (the one that best splits the histogram in two), and
 *      well above the noise
 *   6. the pieces of ink (8-connected): those that run along the border are
 *      edges, taken out before the threshold is found again; the digit is the
 *      largest piece near the centre, with any piece at least a tenth its size
 *      close to it (a 5's bar, a 4's stem); specks are left out
 *   7. the ink's brightness over its typical (median) stroke, clamped: strokes
 *      at full strength whatever the light, their soft edges kept
 *   8. the box scaled to 20 pixels on its longer side (area averaging), then
 *      shifted by a fraction of a pixel so that its centre of mass is (14,14)
 * A picture whose ink is a dot or a blob (no longer than about twice its
 * thickest part), or too little ink for a stroke, is flagged as not looking like
 * a digit; one with no ink at all is an error. */
#include "digit.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FIELD 28
#define BOX 20 /* the longer side of the digit in the field */
/* where MNIST's centres of mass are, in pixel indices (their mean is 14.0) */
#define CENTRE 14.0
#define WORK 512          /* photos are shrunk to this on their longer side first */
#define MIN_CONTRAST 0.1f /* ink fainter than this against the paper (of 1) is no ink */
#define BLOB_RATIO 2.2f   /* a digit is longer than this many times its thickest stroke */

// ----------------------------------------------------------------------------
// grey, inverted

/* Grey and alpha planes into grey over paper: a transparent background is paper
 * of the shade opposite the visible pixels' mean, so that dark strokes on
 * nothing are dark on white and light strokes light on black. */
static void flatten_alpha(float *g, const float *a, size_t n) {
    double ink = 0, cover = 0;
    for (size_t i = 0; i < n; i++) ink += (double)g[i] * a[i], cover += a[i];
    float paper = cover > 0 && ink / cover < 0.5 ? 1.0f : 0.0f;
    for (size_t i = 0; i < n; i++) g[i] = g[i] * a[i] + paper * (1 - a[i]);
}

/* The k-th smallest of v[0..n) (quickselect; v is reordered). */
static float kth(float *v, size_t n, size_t k) {
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = v[lo + (hi - lo) / 2];
        size_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot) i++;
            while (v[j] > pivot) j--;
            if (i <= j) {
                float t = v[i];
                v[i] = v[j], v[j] = t;
                i++;
                if (j == 0) break;
                j--;
            }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else break;
    }
    return v[k];
}

/* The median of v[0..n) and the median of |v - that| (MAD), through tmp. */
static void median_mad(const float *v, size_t n, float *tmp, float *med, float *mad) {
    memcpy(tmp, v, n * sizeof *v);
    *med = kth(tmp, n, n / 2);
    for (size_t i = 0; i < n; i++) tmp[i] = fabsf(v[i] - *med);
    *mad = kth(tmp, n, n / 2);
}

/* The paper's light: the paper is most of the picture and its light changes
 * smoothly, so a quadratic surface in x and y fitted to the picture (least
 * squares, from its median, refitted without the pixels that stray from it:
 * the ink, the table) is the paper. g becomes what is left (g - the fit), with
 * ink and table on one side and noise on both; returns the noise's standard
 * deviation (from the median distance). This tells dark ink from light, where
 * the border's shade or the median cannot (a shaded photo's paper can be
 * darker than mid-grey, and the hole of a 0 is paper too). */
static float paper_fit(float *g, int w, int h, float *tmp) {
    int step = (w > h ? w : h) / 128 + 1;
    /* from a level at the median, trimming at 2.5 times the spread about it */
    double coef[6] = {0}, sigma;
    float med, mad;
    median_mad(g, (size_t)w * h, tmp, &med, &mad);
    coef[0] = med, sigma = 1.4826 * mad + 1e-6;
    for (int pass = 0; pass < 4; pass++) {
        double A[6][7] = {{0}};
        for (int y = 0; y < h; y += step)
            for (int x = 0; x < w; x += step) {
                double u = (x + 0.5) / w - 0.5, v = (y + 0.5) / h - 0.5, f[6] = {1, u, v, u * u, u * v, v * v};
                double fit = 0, val = g[(size_t)y * w + x];
                for (int i = 0; i < 6; i++) fit += coef[i] * f[i];
                if (fabs(val - fit) > 2.5 * sigma) continue;
                for (int i = 0; i < 6; i++) {
                    for (int j = 0; j < 6; j++) A[i][j] += f[i] * f[j];
                    A[i][6] += f[i] * val;
                }
            }
        /* Gaussian elimination with partial pivoting; a singular system keeps the last fit */
        bool ok = true;
        for (int c = 0; c < 6 && ok; c++) {
            int piv = c;
            for (int r = c + 1; r < 6; r++) piv = fabs(A[r][c]) > fabs(A[piv][c]) ? r : piv;
            if (fabs(A[piv][c]) < 1e-12) ok = false;
            for (int j = 0; ok && j < 7; j++) {
                double t = A[c][j];
                A[c][j] = A[piv][j], A[piv][j] = t;
            }
            for (int r = 0; ok && r < 6; r++) {
                double m = r == c ? 0 : A[r][c] / A[c][c];
                for (int j = c; j < 7; j++) A[r][j] -= m * A[c][j];
            }
        }
        if (ok)
            for (int i = 0; i < 6; i++) coef[i] = A[i][6] / A[i][i];
        else if (pass == 0) { /* too few pixels for a surface: a level */ double m = 0;
            for (size_t i = 0; i < (size_t)w * h; i++) m += g[i];
            coef[0] = m / ((double)w * h);
        }
        /* the noise: the median distance from the fit, as a standard deviation */
        float d[4096];
        int nd = 0;
        for (int y = 0; y < h && nd < 4096; y += step)
            for (int x = 0; x < w && nd < 4096; x += step) {
                double u = (x + 0.5) / w - 0.5, v = (y + 0.5) / h - 0.5, f[6] = {1, u, v, u * u, u * v, v * v};
                double fit = 0;
                for (int i = 0; i < 6; i++) fit += coef[i] * f[i];
                d[nd++] = (float)fabs(g[(size_t)y * w + x] - fit);
            }
        sigma = 1.4826 * kth(d, (size_t)nd, (size_t)nd / 2) + 1e-6;
    }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double u = (x + 0.5) / w - 0.5, v = (y + 0.5) / h - 0.5, f[6] = {1, u, v, u * u, u * v, v * v};
            double fit = 0;
            for (int i = 0; i < 6; i++) fit += coef[i] * f[i];
            g[(size_t)y * w + x] -= (float)fit;
        }
    return (float)sigma;
}

/* Whether the ink is darker than the paper: its side of the fit (res, the
 * residuals) strays further beyond the noise (sigma). */
static bool ink_is_dark(const float *res, size_t n, float sigma) {
    double dark = 0, light = 0;
    for (size_t i = 0; i < n; i++) {
        if (res[i] < -3 * sigma) dark += -res[i] - 3 * sigma;
        if (res[i] > 3 * sigma) light += res[i] - 3 * sigma;
    }
    return dark > light;
}

// ----------------------------------------------------------------------------
// the paper's light: an opening by a (2r+1)x(2r+1) square

/* dst[i] = the minimum (or maximum) of src over i-r..i+r (within 0..n-1), n
 * samples stride s apart, in three passes whatever r is (van Herk and Gil and
 * Werman's): over blocks of 2r+1, the running extreme from each block's start
 * (pre) and from its end (suf); a window spans at most two blocks and is the
 * extreme of suf at its start and pre at its end. pre and suf hold n floats. */
static void min_max_line(float *dst, const float *src, int n, ptrdiff_t s, int r, bool max, float *pre, float *suf) {
    int k = 2 * r + 1;
#define EXT(a, b) (max ? fmaxf(a, b) : fminf(a, b))
    for (int i = 0; i < n; i++) pre[i] = i % k == 0 ? src[i * s] : EXT(pre[i - 1], src[i * s]);
    for (int i = n - 1; i >= 0; i--) suf[i] = i % k == k - 1 || i == n - 1 ? src[i * s] : EXT(suf[i + 1], src[i * s]);
    for (int i = 0; i < n; i++) {
        int lo = i - r < 0 ? 0 : i - r, hi = i + r >= n ? n - 1 : i + r;
        if (lo / k != hi / k) dst[i * s] = EXT(suf[lo], pre[hi]);
        else dst[i * s] = lo % k == 0 ? pre[hi] : suf[lo]; /* one block: clamped at an end */
    }
#undef EXT
}

/* dst = the minimum (max false) or maximum of src over each square, through
 * tmp: rows, then columns (dst may be src). line holds 2 * max(w, h) floats. */
static void square_filter(float *dst, const float *src, float *tmp, float *line, int w, int h, int r, bool max) {
    int most = w > h ? w : h;
    for (int y = 0; y < h; y++) min_max_line(tmp + (size_t)y * w, src + (size_t)y * w, w, 1, r, max, line, line + most);
    for (int x = 0; x < w; x++) min_max_line(dst + x, tmp + x, h, w, r, max, line, line + most);
}

// ----------------------------------------------------------------------------
// the threshold

/* Otsu's threshold of the values v[0..n) in [0, top]: the one that maximises
 * the variance between the two classes it makes. */
static float otsu(const float *v, size_t n, float top) {
    enum { BINS = 256 };
    double hist[BINS] = {0}, total = 0, sum = 0;
    for (size_t i = 0; i < n; i++) {
        int b = (int)(v[i] / top * (BINS - 1));
        hist[b < 0 ? 0 : b >= BINS ? BINS - 1 : b] += 1;
    }
    for (int b = 0; b < BINS; b++) total += hist[b], sum += b * hist[b];
    double w0 = 0, s0 = 0, best = -1;
    int at = 0;
    for (int b = 0; b < BINS - 1; b++) {
        w0 += hist[b], s0 += b * hist[b];
        double w1 = total - w0;
        if (w0 == 0 || w1 == 0) continue;
        double m0 = s0 / w0, m1 = (sum - s0) / w1, between = w0 * w1 * (m0 - m1) * (m0 - m1);
        if (between > best) best = between, at = b;
    }
    return (at + 1.0f) / (BINS - 1) * top;
}

/* Ink is brighter than Otsu's threshold, and well above the paper's noise:
 * the median (paper) plus six times its spread. */
static float threshold(const float *g, size_t n, float *tmp) {
    float top = 0, med, mad;
    for (size_t i = 0; i < n; i++) top = g[i] > top ? g[i] : top;
    median_mad(g, n, tmp, &med, &mad);
    float t = otsu(g, n, top > 0 ? top : 1), noise = med + 6 * 1.4826f * mad;
    t = t > noise ? t : noise;
    return t > MIN_CONTRAST / 2 ? t : MIN_CONTRAST / 2;
}

// ----------------------------------------------------------------------------
// the pieces of ink

typedef struct {
    int area, x0, y0, x1, y1;
    double cx, cy;
    int side[4]; /* its pixels on the picture's left, right, top and bottom rows */
    bool edge;   /* the table's edge or a shadow (is_edge), or next to one */
    bool keep;   /* part of the digit */
} piece;

/* Labels the 8-connected pieces of mask (label[i] = piece index, or -1) and
 * fills their statistics; returns how many, or -1 if out of memory. */
static int label_pieces(const uint8_t *mask, int w, int h, int *label, piece **out) {
    size_t n = (size_t)w * h;
    int *stack = malloc(n * sizeof *stack), count = 0, cap = 16;
    piece *ps = malloc((size_t)cap * sizeof *ps);
    if (!stack || !ps) goto oom;
    for (size_t i = 0; i < n; i++) label[i] = -1;
    for (size_t i = 0; i < n; i++) {
        if (!mask[i] || label[i] >= 0) continue;
        if (count == cap) {
            piece *more = realloc(ps, (size_t)(cap *= 2) * sizeof *ps);
            if (!more) goto oom;
            ps = more;
        }
        piece p = {0, w, h, -1, -1, 0, 0, {0}, false, false};
        size_t top = 0;
        stack[top++] = (int)i, label[i] = count;
        while (top) {
            int at = stack[--top], x = at % w, y = at / w;
            p.area++, p.cx += x, p.cy += y;
            p.x0 = x < p.x0 ? x : p.x0, p.x1 = x > p.x1 ? x : p.x1;
            p.y0 = y < p.y0 ? y : p.y0, p.y1 = y > p.y1 ? y : p.y1;
            p.side[0] += x == 0, p.side[1] += x == w - 1, p.side[2] += y == 0, p.side[3] += y == h - 1;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    int xx = x + dx, yy = y + dy;
                    if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
                    size_t j = (size_t)yy * w + xx;
                    if (mask[j] && label[j] < 0) label[j] = count, stack[top++] = (int)j;
                }
        }
        p.cx /= p.area, p.cy /= p.area;
        ps[count++] = p;
    }
    free(stack);
    *out = ps;
    return count;
oom:
    free(stack), free(ps);
    return -1;
}

/* A piece that runs along the picture's border for a quarter of its length or
 * more: the table at the sheet's edge, or a shadow (a digit cropped close
 * touches the border only where its strokes end); or a long thin line close to
 * the border: the sheet's edge against the table. */
static bool is_edge(const piece *p, int w, int h) {
    if (4 * p->side[0] >= h || 4 * p->side[1] >= h || 4 * p->side[2] >= w || 4 * p->side[3] >= w) return true;
    /* or a line along it, half its length, within its outer fifth: where paper meets table */
    int bw = p->x1 - p->x0 + 1, bh = p->y1 - p->y0 + 1;
    return (2 * bw >= w && bw >= 6 * bh && (5 * (p->y1 + 1) <= h || 5 * p->y0 >= 4 * h)) ||
           (2 * bh >= h && bh >= 6 * bw && (5 * (p->x1 + 1) <= w || 5 * p->x0 >= 4 * w));
}

/* The digit's piece: the largest, weighed by its nearness to the centre; never
 * an edge. -1 if every piece is an edge. */
static int main_piece(const piece *ps, int n, int w, int h) {
    int best = -1;
    double best_score = 0, half_diag = 0.5 * hypot(w, h);
    for (int i = 0; i < n; i++) {
        double d = hypot(ps[i].cx - (w - 1) / 2.0, ps[i].cy - (h - 1) / 2.0) / half_diag;
        double score = ps[i].area * (1 - 0.5 * d);
        if (!ps[i].edge && score > best_score) best_score = score, best = i;
    }
    return best;
}

/* Whether piece q belongs with the digit's piece m: a tenth its size or more,
 * not an edge, and within m's box grown by 60% of its longer side. */
static bool belongs(const piece *q, const piece *m) {
    if (q->area * 10 < m->area || q->edge) return false;
    int bw = m->x1 - m->x0 + 1, bh = m->y1 - m->y0 + 1, grow = (int)(0.6 * (bw > bh ? bw : bh));
    return q->x1 >= m->x0 - grow && q->x0 <= m->x1 + grow && q->y1 >= m->y0 - grow && q->y0 <= m->y1 + grow;
}

/* The largest chessboard distance from a pixel of mask to one outside it (two passes). */
static int thickest(const uint8_t *mask, int w, int h, int *d) {
    int best = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            if (!mask[i]) {
                d[i] = 0;
                continue;
            }
            int v = INT32_MAX / 2;
            if (x == 0 || y == 0) v = 1;
            else {
                v = d[i - 1] + 1 < v ? d[i - 1] + 1 : v;
                v = d[i - w] + 1 < v ? d[i - w] + 1 : v;
                v = d[i - w - 1] + 1 < v ? d[i - w - 1] + 1 : v;
                if (x < w - 1) v = d[i - w + 1] + 1 < v ? d[i - w + 1] + 1 : v;
            }
            d[i] = v;
        }
    for (int y = h - 1; y >= 0; y--)
        for (int x = w - 1; x >= 0; x--) {
            size_t i = (size_t)y * w + x;
            if (!mask[i]) continue;
            int v = d[i];
            if (x == w - 1 || y == h - 1) v = 1;
            else {
                v = d[i + 1] + 1 < v ? d[i + 1] + 1 : v;
                v = d[i + w] + 1 < v ? d[i + w] + 1 : v;
                v = d[i + w + 1] + 1 < v ? d[i + w + 1] + 1 : v;
                if (x > 0) v = d[i + w - 1] + 1 < v ? d[i + w - 1] + 1 : v;
            }
            d[i] = v;
            best = v > best ? v : best;
        }
    return best;
}

// ----------------------------------------------------------------------------
// into the field

/* The ink v (w x h, 0..1), its box x0..x1, y0..y1, into the 28x28 field. */
static int place(const char *name, const float *v, int w, int x0, int y0, int x1, int y1, uint8_t *field) {
    int bw = x1 - x0 + 1, bh = y1 - y0 + 1;
    int ow = bw >= bh ? BOX : (int)lround((double)bw * BOX / bh);
    int oh = bh >= bw ? BOX : (int)lround((double)bh * BOX / bw);
    ow = ow < 1 ? 1 : ow, oh = oh < 1 ? 1 : oh;
    tg_tensor *crop = tg_tensor_new(3, (int[]){1, bh, bw});
    if (!crop) return tg_last_error_code();
    for (int y = 0; y < bh; y++)
        memcpy(crop->data + (size_t)y * bw, v + (size_t)(y0 + y) * w + x0, (size_t)bw * sizeof(float));
    tg_tensor *box = tg_image_resize(crop, ow, oh);
    tg_tensor_free(crop);
    if (!box) return tg_last_error_code();
    double mass = 0, cx = 0, cy = 0;
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++) {
            double p = box->data[y * ow + x];
            mass += p, cx += p * x, cy += p * y;
        }
    if (!(mass > 1e-3)) {
        tg_tensor_free(box);
        return tg_fail(TG_ERR_ARG,
                       "image %s: blank: the ink is too sparse to survive scaling "
                       "%dx%d to %dx%d",
                       name, bw, bh, ow, oh);
    }
    /* the shift that puts the centre of mass on (14,14), as far as the field
     * allows without cutting the digit; the fraction by bilinear weights */
    double ox = CENTRE - cx / mass, oy = CENTRE - cy / mass;
    ox = ox < 0 ? 0 : ox > FIELD - ow ? FIELD - ow : ox;
    oy = oy < 0 ? 0 : oy > FIELD - oh ? FIELD - oh : oy;
    int ix = (int)floor(ox), iy = (int)floor(oy);
    double fx = ox - ix, fy = oy - iy;
    float acc[FIELD * FIELD] = {0};
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++) {
            double p = box->data[y * ow + x];
            for (int j = 0; j < 2; j++)
                for (int i = 0; i < 2; i++) {
                    int X = ix + x + i, Y = iy + y + j;
                    double wgt = (i ? fx : 1 - fx) * (j ? fy : 1 - fy);
                    if (wgt > 0 && X < FIELD && Y < FIELD) acc[Y * FIELD + X] += (float)(p * wgt);
                }
        }
    tg_tensor_free(box);
    for (int i = 0; i < FIELD * FIELD; i++) {
        float p = acc[i] < 0 ? 0 : acc[i] > 1 ? 1 : acc[i];
        field[i] = (uint8_t)lrintf(255 * p);
    }
    return 0;
}

// ----------------------------------------------------------------------------

typedef struct {
    float *g, *bg, *tmp, *c, *line;
    uint8_t *mask, *edge;
    int *label;
    piece *pieces;
} work;

static void work_free(work *k) {
    free(k->g), free(k->bg), free(k->tmp), free(k->c), free(k->line), free(k->mask), free(k->edge), free(k->label),
        free(k->pieces);
}

/* k->edge set around each edge piece of k->pieces (labelled in k->label), grown by `by` pixels. */
static void grow_edges(work *k, int w, int h, int by) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int l = k->label[(size_t)y * w + x];
            if (l < 0 || !(k->pieces[l].edge || is_edge(&k->pieces[l], w, h))) continue;
            for (int yy = y - by > 0 ? y - by : 0; yy <= y + by && yy < h; yy++)
                memset(k->edge + (size_t)yy * w + (x - by > 0 ? x - by : 0), 1,
                       (size_t)((x + by < w - 1 ? x + by : w - 1) - (x - by > 0 ? x - by : 0) + 1));
        }
}

/* Steps 2 to 8 on the grey picture k->g (w x h); field gets the digit. */
static int find_digit(const char *name, work *k, int w, int h, uint8_t *field, digit_info *info) {
    size_t n = (size_t)w * h;
    float *g = k->g, *bg = k->bg, *tmp = k->tmp;
    // 2. what is left of bright ink (the white top-hat: g less its opening) and of dark ink (the black
    // top-hat: g's closing less g), over squares wider than any stroke
    int r = (w > h ? w : h) / 8;
    r = r < 1 ? 1 : r;
    square_filter(bg, g, tmp, k->line, w, h, r, false), square_filter(bg, bg, tmp, k->line, w, h, r, true);
    square_filter(k->c, g, tmp, k->line, w, h, r, true), square_filter(k->c, k->c, tmp, k->line, w, h, r, false);
    for (size_t i = 0; i < n; i++)
        bg[i] = g[i] - bg[i], k->c[i] -= g[i]; /* the opening is below g, the closing above */
    // 3. which: the side of the paper's surface the ink strays to
    float sigma = paper_fit(g, w, h, tmp); /* g is now the picture less the paper */
    info->inverted = ink_is_dark(g, n, sigma);
    // 4. the table beside the sheet: much darker than the paper, running along the border (is_edge)
    memset(k->edge, 0, n);
    if (info->inverted) {
        float dark = 6 * sigma > MIN_CONTRAST ? 6 * sigma : MIN_CONTRAST;
        for (size_t i = 0; i < n; i++) k->mask[i] = g[i] < -dark;
        int count = label_pieces(k->mask, w, h, k->label, &k->pieces);
        if (count < 0) return tg_fail(TG_ERR_NOMEM, "image %s: out of memory", name);
        grow_edges(k, w, h, r / 2);
    }
    memcpy(g, info->inverted ? k->c : bg, n * sizeof *g);
    for (size_t i = 0; i < n; i++)
        if (k->edge[i]) g[i] = 0;
    // 5. a 3x3 mean against noise (not on tiny pictures, whose strokes are a pixel or two)
    if (w >= 64 && h >= 64) {
        memcpy(tmp, g, n * sizeof *g);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                float s = 0;
                int c = 0;
                for (int dy = -1; dy <= 1; dy++)
                    for (int dx = -1; dx <= 1; dx++) {
                        int xx = x + dx, yy = y + dy;
                        if (xx >= 0 && yy >= 0 && xx < w && yy < h) s += tmp[(size_t)yy * w + xx], c++;
                    }
                g[(size_t)y * w + x] = s / c;
            }
    }
    float top = 0;
    for (size_t i = 0; i < n; i++) top = g[i] > top ? g[i] : top;
    if (top < MIN_CONTRAST)
        return tg_fail(TG_ERR_ARG, "image %s: blank: no ink (the strongest differs from the paper by %.0f of 255)",
                       name, 255 * top);
    // 6. the threshold and the pieces; the edges found are taken out and the threshold found again without
    // them (they are often the strongest "ink" of all), then the digit's piece among the rest
    int count = 0;
    for (int pass = 0; pass < 2; pass++) {
        float t = threshold(g, n, tmp);
        info->threshold = t;
        for (size_t i = 0; i < n; i++) k->mask[i] = g[i] > t;
        free(k->pieces), k->pieces = NULL;
        count = label_pieces(k->mask, w, h, k->label, &k->pieces);
        if (count < 0) return tg_fail(TG_ERR_NOMEM, "image %s: out of memory", name);
        /* an edge, or (the second time) a piece of one: the rest of it, now above the lower threshold */
        bool edges = false;
        for (int i = 0; i < count; i++) edges |= k->pieces[i].edge = is_edge(&k->pieces[i], w, h);
        for (size_t i = 0; i < n; i++)
            if (k->label[i] >= 0 && k->edge[i]) k->pieces[k->label[i]].edge = true;
        if (!edges || pass == 1) break;
        grow_edges(k, w, h, 2); /* taken out */
        for (size_t i = 0; i < n; i++)
            if (k->edge[i]) g[i] = 0;
    }
    info->components = count;
    if (count == 0) return tg_fail(TG_ERR_ARG, "image %s: blank: no ink above the paper's noise", name);
    int m = main_piece(k->pieces, count, w, h);
    if (m < 0) { /* only edges: the digit is made of the largest, and doubted */
        for (int i = 0; i < count; i++) m = m < 0 || k->pieces[i].area > k->pieces[m].area ? i : m;
        info->doubt = "only the sheet's edge or a shadow, at the border";
    }
    int kept = 0, x0 = w, y0 = h, x1 = -1, y1 = -1;
    for (int i = 0; i < count; i++) {
        piece *p = &k->pieces[i];
        p->keep = i == m || belongs(p, &k->pieces[m]);
        if (!p->keep) continue;
        kept++, x0 = p->x0 < x0 ? p->x0 : x0, y0 = p->y0 < y0 ? p->y0 : y0;
        x1 = p->x1 > x1 ? p->x1 : x1, y1 = p->y1 > y1 ? p->y1 : y1;
    }
    info->kept = kept;
    // 7. the ink over its median stroke, on the kept pieces grown by a pixel (their soft edges)
    size_t ink_n = 0;
    for (size_t i = 0; i < n; i++) {
        int l = k->label[i];
        k->mask[i] = l >= 0 && k->pieces[l].keep;
        if (k->mask[i]) tmp[ink_n++] = g[i];
    }
    float ink = kth(tmp, ink_n, ink_n / 2), floor_ = info->threshold / 2;
    if (ink <= floor_) ink = top;
    int *dist = k->label; /* the labels are done with */
    int thick = thickest(k->mask, w, h, dist);
    int longer = x1 - x0 + 1 > y1 - y0 + 1 ? x1 - x0 + 1 : y1 - y0 + 1;
    info->stroke_ratio = (float)longer / (2 * thick - 1);
    x0 = x0 > 0 ? x0 - 1 : 0, y0 = y0 > 0 ? y0 - 1 : 0;
    x1 = x1 < w - 1 ? x1 + 1 : w - 1, y1 = y1 < h - 1 ? y1 + 1 : h - 1;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            bool near = false;
            for (int dy = -1; dy <= 1 && !near; dy++)
                for (int dx = -1; dx <= 1 && !near; dx++) {
                    int xx = x + dx, yy = y + dy;
                    near = xx >= 0 && yy >= 0 && xx < w && yy < h && k->mask[(size_t)yy * w + xx];
                }
            float v = (g[i] - floor_) / (ink - floor_);
            bg[i] = near ? (v < 0 ? 0 : v > 1 ? 1 : v) : 0;
        }
    if (!info->doubt && ink_n * 2000 < n) info->doubt = "too little ink: specks, not a stroke";
    if (!info->doubt && info->stroke_ratio < BLOB_RATIO) info->doubt = "a dot or a blob, not a stroke";
    // 8. into the field
    return place(name, bg, w, x0, y0, x1, y1, field);
}

int digit_from_tensor(const char *name, const tg_tensor *img, float *out, uint8_t *pixels, digit_info *info) {
    digit_info own;
    info = info ? info : &own;
    *info = (digit_info){0};
    if (!name || !img || !out) return tg_fail(TG_ERR_ARG, "digit: %s is NULL", !name ? "name" : !img ? "img" : "out");
    if (img->ndim != 3 || img->shape[0] < 1 || img->shape[0] > 2)
        return tg_fail(TG_ERR_SHAPE, "image %s: a digit is made from grey (1,H,W) or grey and alpha (2,H,W)", name);
    int w = img->shape[2], h = img->shape[1];
    size_t n = (size_t)w * h;
    info->width = w, info->height = h;
    work k = {malloc(n * sizeof(float)),
              malloc(n * sizeof(float)),
              malloc(n * sizeof(float)),
              malloc(n * sizeof(float)),
              malloc(2 * (size_t)(w > h ? w : h) * sizeof(float)),
              malloc(n),
              malloc(n),
              malloc(n * sizeof(int)),
              NULL};
    if (!k.g || !k.bg || !k.tmp || !k.c || !k.line || !k.mask || !k.edge || !k.label) {
        work_free(&k);
        return tg_fail(TG_ERR_NOMEM, "image %s: out of memory for a %dx%d picture", name, w, h);
    }
    memcpy(k.g, img->data, n * sizeof(float));
    if (img->shape[0] == 2) flatten_alpha(k.g, img->data + n, n);
    uint8_t field[FIELD * FIELD];
    int rc = find_digit(name, &k, w, h, field, info);
    work_free(&k);
    if (rc < 0) return rc;
    // exactly as tg_dataset_new: (x/255 - mean) / std
    for (int i = 0; i < FIELD * FIELD; i++) out[i] = ((float)field[i] / 255.0f - TG_MNIST_MEAN) / TG_MNIST_STD;
    if (pixels) memcpy(pixels, field, sizeof field);
    return 0;
}

int digit_from_image(const char *path, float *out, uint8_t *pixels, digit_info *info) {
    if (!path) return tg_fail(TG_ERR_ARG, "digit: path is NULL");
    if (!out) return tg_fail(TG_ERR_ARG, "image %s: the output is NULL", path);
    tg_tensor *img = tg_image_load(path, &(tg_image_opts){.channels = 2, .max_side = WORK});
    if (!img) return tg_last_error_code();
    int rc = digit_from_tensor(path, img, out, pixels, info);
    tg_tensor_free(img);
    return rc;
}
