/* photos.c: photo-like pictures of handwritten digits, for the predict test
 * (tests/photos.sh). Each digit is an MNIST test digit written on a sheet of
 * paper and photographed badly: the sheet rotated, the table showing at an
 * edge, the paper shaded and unevenly lit, camera noise, specks of dirt, and
 * JPEG's artefacts on half of them. Some pictures hold no digit at all (a dot,
 * specks on blank paper, a scribble's worth of dirt): predict should say so.
 *
 *   photos MNIST_DIR OUT_DIR COUNT [BLANKS [WIDTHxHEIGHT]]
 *
 * writes OUT_DIR/photo-NNN.{png,jpg} (COUNT of them, the first COUNT test
 * digits) and OUT_DIR/nodigit-NN.png (BLANKS, default 10), and lists each as
 * "FILE LABEL" in OUT_DIR/labels.txt (LABEL -1: no digit); with WIDTHxHEIGHT,
 * also OUT_DIR/big.jpg, the first digit photographed at that size (a phone's).
 * Every picture comes from a generator seeded by its number: the same files on
 * every run. */
#include "stb_image_write.h"
#include "tapegrad_nn.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double uniform(uint64_t *s) { return (double)(tg_rand_u64(s) >> 11) / 9007199254740992.0; }
static double between(uint64_t *s, double lo, double hi) { return lo + (hi - lo) * uniform(s); }
static double gauss(uint64_t *s) { /* Box-Muller */
    double u = uniform(s), v = uniform(s);
    return sqrt(-2 * log(u > 1e-300 ? u : 1e-300)) * cos(6.283185307179586 * v);
}

/* The 28x28 digit (bytes, 255 ink) at (u, v) in its own pixels, bilinear, 0
 * outside. */
static double digit_at(const uint8_t *d, double u, double v) {
    if (u < -1 || v < -1 || u > 28 || v > 28) return 0;
    int x = (int)floor(u), y = (int)floor(v);
    double fx = u - x, fy = v - y, s = 0;
    for (int j = 0; j < 2; j++)
        for (int i = 0; i < 2; i++) {
            int xx = x + i, yy = y + j;
            if (xx >= 0 && yy >= 0 && xx < 28 && yy < 28)
                s += d[yy * 28 + xx] / 255.0 * (i ? fx : 1 - fx) * (j ? fy : 1 - fy);
        }
    return s;
}

typedef struct {
    int w, h;
    float *g; /* brightness 0..1 */
} photo;

/* The scene: a sheet of paper, rotated by angle about the frame's centre and
 * shifted by (sx, sy), on a dark table; digit (or NULL) written on it. */
static void shoot(photo *p, uint64_t *rng, const uint8_t *digit, bool dark_edge) {
    int w = p->w, h = p->h;
    double angle = between(rng, -10, 10) * 3.141592653589793 / 180, ca = cos(angle), sa = sin(angle);
    /* the sheet is larger than the frame; with a dark edge, one side of it comes
     * into view */
    double half_w = w * 0.75, half_h = h * 0.75, sx = 0, sy = 0;
    if (dark_edge) {
        double show = between(rng, 0.03, 0.12); /* of the frame's width or height */
        switch (tg_rand_u64(rng) % 4) {
        case 0:
            sx = half_w - w / 2.0 + show * w;
            break; /* the table at the left */
        case 1:
            sx = -(half_w - w / 2.0 + show * w);
            break; /* at the right */
        case 2:
            sy = half_h - h / 2.0 + show * h;
            break; /* at the top */
        default:
            sy = -(half_h - h / 2.0 + show * h);
            break;
        }
    }
    double paper = between(rng, 0.62, 0.93), table = between(rng, 0.04, 0.3);
    /* light falls off along a direction and towards the corners */
    double la = between(rng, 0, 6.283185307179586), slope = between(rng, 0.05, 0.4), vignette = between(rng, 0, 0.35);
    double ink = between(rng, 0.08, 0.35), pencil = uniform(rng) < 0.25; /* pencil: fainter */
    if (pencil) ink = between(rng, 0.35, 0.55);
    double size = between(rng, 0.35, 0.7) * (w < h ? w : h); /* the digit's 28 pixels span this */
    double dx = between(rng, -0.08, 0.08) * w, dy = between(rng, -0.08, 0.08) * h;
    double noise = between(rng, 0.01, 0.05);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double cx = x + 0.5 - w / 2.0 - sx, cy = y + 0.5 - h / 2.0 - sy;
            double u = ca * cx + sa * cy, v = -sa * cx + ca * cy; /* on the sheet, from its centre */
            double light = 1 - slope * ((x - w / 2.0) * cos(la) + (y - h / 2.0) * sin(la)) / (w / 2.0);
            double r2 = ((x - w / 2.0) * (x - w / 2.0) + (y - h / 2.0) * (y - h / 2.0)) / (w * w / 4.0 + h * h / 4.0);
            light *= 1 - vignette * r2;
            double b;
            if (fabs(u) > half_w || fabs(v) > half_h) {
                b = table * light * (1 + 0.15 * sin(x * 0.05) * sin(y * 0.07)); /* the table's grain */
            } else {
                b = paper * light;
                if (digit) {
                    /* written near the frame's centre, upright on the sheet */
                    double fx = x + 0.5 - w / 2.0 - dx, fy = y + 0.5 - h / 2.0 - dy;
                    double du = ca * fx + sa * fy, dv = -sa * fx + ca * fy;
                    double d = digit_at(digit, du / size * 28 + 14, dv / size * 28 + 14);
                    b *= 1 - d * (1 - ink);
                }
            }
            p->g[(size_t)y * w + x] = (float)b;
        }
    /* specks of dirt: small dark dots anywhere */
    int specks = (int)(tg_rand_u64(rng) % 25);
    for (int k = 0; k < specks; k++) {
        double px = between(rng, 0, w), py = between(rng, 0, h), r = between(rng, 0.6, 2.5) * w / 640.0;
        double depth = between(rng, 0.3, 0.8);
        for (int y = (int)(py - r - 1); y <= (int)(py + r + 1); y++)
            for (int x = (int)(px - r - 1); x <= (int)(px + r + 1); x++)
                if (x >= 0 && y >= 0 && x < w && y < h && hypot(x + 0.5 - px, y + 0.5 - py) < r)
                    p->g[(size_t)y * w + x] *= (float)(1 - depth);
    }
    for (size_t i = 0; i < (size_t)w * h; i++) p->g[i] += (float)(noise * gauss(rng));
}

/* A dark round dot of radius r at the frame's centre (no digit). */
static void dot(photo *p, uint64_t *rng) {
    double r = between(rng, 0.02, 0.06) * p->w, cx = p->w * between(rng, 0.4, 0.6), cy = p->h * between(rng, 0.4, 0.6);
    for (int y = 0; y < p->h; y++)
        for (int x = 0; x < p->w; x++)
            if (hypot(x + 0.5 - cx, y + 0.5 - cy) < r) p->g[(size_t)y * p->w + x] *= 0.2f;
}

static int save(const photo *p, const char *path, bool jpeg, uint64_t *rng) {
    uint8_t *b = malloc((size_t)p->w * p->h * 3);
    if (!b) return -1;
    /* a little colour: warm paper under warm light */
    double tint[3] = {1.0, between(rng, 0.93, 1.0), between(rng, 0.8, 0.97)};
    for (size_t i = 0; i < (size_t)p->w * p->h; i++)
        for (int c = 0; c < 3; c++) {
            double v = 255 * p->g[i] * tint[c];
            b[3 * i + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : lround(v));
        }
    int ok = jpeg ? stbi_write_jpg(path, p->w, p->h, 3, b, (int)between(rng, 70, 92))
                  : stbi_write_png(path, p->w, p->h, 3, b, p->w * 3);
    free(b);
    return ok ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: photos MNIST_DIR OUT_DIR COUNT [BLANKS [WIDTHxHEIGHT]]\n");
        return 2;
    }
    int count = atoi(argv[3]), blanks = argc > 4 ? atoi(argv[4]) : 10;
    tg_dataset *test = tg_dataset_new(argv[1], "t10k", count, TG_MNIST_MEAN, TG_MNIST_STD);
    if (!test) {
        fprintf(stderr, "photos: %s\n", tg_last_error());
        return 1;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/labels.txt", argv[2]);
    FILE *list = fopen(path, "w");
    if (!list) {
        perror(path);
        return 1;
    }
    int failed = 0;
    for (int i = 0; i < count + blanks; i++) {
        uint64_t rng = 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1);
        photo p = {(int)between(&rng, 400, 640), 0, NULL};
        p.h = uniform(&rng) < 0.5 ? p.w * 3 / 4 : p.w * 4 / 3;
        p.g = malloc((size_t)p.w * p.h * sizeof *p.g);
        if (!p.g) return 1;
        bool digit = i < count, jpeg = digit && i % 2;
        shoot(&p, &rng, digit ? test->pixels + (size_t)i * 784 : NULL, uniform(&rng) < 0.5);
        if (!digit && (i - count) % 2 == 0) dot(&p, &rng);
        char name[64];
        if (digit) snprintf(name, sizeof name, "photo-%03d.%s", i, jpeg ? "jpg" : "png");
        else snprintf(name, sizeof name, "nodigit-%02d.png", i - count);
        snprintf(path, sizeof path, "%s/%s", argv[2], name);
        if (save(&p, path, jpeg, &rng) < 0) fprintf(stderr, "photos: cannot write %s\n", path), failed++;
        fprintf(list, "%s %d\n", name, digit ? test->labels[i] : -1);
        free(p.g);
    }
    fclose(list);
    int bw = 0, bh = 0;
    if (argc > 5 && sscanf(argv[5], "%dx%d", &bw, &bh) == 2 && bw > 0 && bh > 0 && count > 0) {
        uint64_t rng = 1;
        photo p = {bw, bh, malloc((size_t)bw * bh * sizeof(float))};
        snprintf(path, sizeof path, "%s/big.jpg", argv[2]);
        if (!p.g) return 1;
        shoot(&p, &rng, test->pixels, false);
        if (save(&p, path, true, &rng) < 0) fprintf(stderr, "photos: cannot write %s\n", path), failed++;
        free(p.g);
    }
    tg_dataset_free(test);
    return failed ? 1 : 0;
}
