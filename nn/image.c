/* image.c: any picture of a digit made into a 28x28 MNIST sample, the way
 * LeCun, Cortes and Burges made MNIST from NIST's scans: the digit's bounding
 * box scaled to 20 pixels on its longer side, anti-aliased, then centred by
 * its centre of mass in a 28x28 field.
 *
 * The steps, on one byte per pixel (0 paper, 255 ink once inverted):
 *   1. decode with stb_image to grey and alpha; transparent pixels become paper
 *   2. invert when the paper is light (the median of the border pixels)
 *   3. stretch: paper (that median) to 0, the strongest ink to 1
 *   4. crop to the ink's bounding box, resample it to 20 pixels on its longer
 * side
 *   5. place it so that its centre of mass lands on pixel (14,14)
 *   6. normalise as tg_dataset_new does */
#include "nn_internal.h"
#include "stb_image.h"
#include "tapegrad_nn.h"
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIELD 28
#define BOX 20 /* the longer side of the digit in the field */
#define CENTRE                                                                                                         \
    14                  /* where MNIST's centres of mass are, in pixel indices (their mean                             \
                           is 14.0) */
#define MIN_CONTRAST 32 /* ink fainter than this against the paper (of 255) is no ink */
#define INK 0.1         /* of the stretched range: what counts as ink for the bounding box */

// ----------------------------------------------------------------------------
// grey, inverted, stretched

/* Grey and alpha pairs g[2i], g[2i+1] into grey g[i] over paper. A transparent
 * background is paper of the shade opposite the visible pixels' mean, so that
 * dark strokes on nothing are dark on white and light strokes light on black.
 */
static void flatten_alpha(uint8_t *g, size_t n) {
    double ink = 0, cover = 0;
    bool opaque = true;
    for (size_t i = 0; i < n; i++) {
        ink += (double)g[2 * i] * g[2 * i + 1];
        cover += g[2 * i + 1];
        opaque &= g[2 * i + 1] == 255;
    }
    unsigned paper = cover > 0 && ink / cover < 128 ? 255 : 0;
    for (size_t i = 0; i < n; i++) {
        unsigned v = g[2 * i], a = g[2 * i + 1];
        g[i] = opaque ? (uint8_t)v : (uint8_t)((v * a + paper * (255 - a) + 127) / 255);
    }
}

/* The median of the border pixels: the paper's shade, even when the digit
 * touches an edge. */
static int border_median(const uint8_t *g, int w, int h) {
    size_t hist[256] = {0}, n = 0;
    for (int x = 0; x < w; x++) {
        hist[g[x]]++, n++;
        if (h > 1) hist[g[(size_t)(h - 1) * w + x]]++, n++;
    }
    for (int y = 1; y < h - 1; y++) {
        hist[g[(size_t)y * w]]++, n++;
        if (w > 1) hist[g[(size_t)y * w + w - 1]]++, n++;
    }
    size_t seen = 0;
    for (int v = 0; v < 256; v++)
        if ((seen += hist[v]) * 2 >= n) return v;
    return 255;
}

typedef struct {
    const uint8_t *g;
    int w;
    float paper, range; /* stretched value = (g - paper) / range, clamped to [0, 1] */
} ink_map;

static float ink_at(const ink_map *m, int x, int y) {
    float v = ((float)m->g[(size_t)y * m->w + x] - m->paper) / m->range;
    return v < 0 ? 0 : v > 1 ? 1 : v;
}

// ----------------------------------------------------------------------------
// resampling

/* n samples src[0], src[ss], ... to m samples dst[0], dst[ds], ... over the
 * same extent: the mean over each output pixel's footprint when shrinking (area
 * averaging, which anti-aliases), bilinear at its centre when enlarging; the
 * first and last samples land on the first and last pixels either way. */
static void resample_line(const float *src, ptrdiff_t ss, int n, float *dst, ptrdiff_t ds, int m) {
    double scale = (double)n / m;
    for (int j = 0; j < m; j++) {
        double v = 0;
        if (scale > 1) {
            double lo = j * scale, hi = (j + 1) * scale;
            int k1 = (int)ceil(hi) < n ? (int)ceil(hi) : n;
            for (int k = (int)lo; k < k1; k++) {
                double a = lo > k ? lo : k, b = hi < k + 1 ? hi : k + 1;
                if (b > a) v += (b - a) * src[k * ss];
            }
            v /= scale;
        } else {
            double u = (j + 0.5) * scale - 0.5;
            u = u < 0 ? 0 : u > n - 1 ? n - 1 : u;
            int k = (int)u;
            double f = u - k;
            v = src[k * ss] * (1 - f) + (f > 0 ? src[(k + 1) * ss] * f : 0);
        }
        dst[j * ds] = (float)v;
    }
}

// ----------------------------------------------------------------------------

/* The grey image g (w x h) as 28x28 bytes; 0 or a negative TG_ERR_* naming
 * path. */
static int to_mnist(const char *path, uint8_t *g, int w, int h, uint8_t *field) {
    int paper = border_median(g, w, h);
    size_t n = (size_t)w * h;
    if (paper >= 128) {
        for (size_t i = 0; i < n; i++) g[i] = (uint8_t)(255 - g[i]);
        paper = 255 - paper;
    }
    int peak = 0;
    for (size_t i = 0; i < n; i++) peak = g[i] > peak ? g[i] : peak;
    if (peak - paper < MIN_CONTRAST)
        return tg_fail(TG_ERR_ARG,
                       "image %s: blank: no ink (the strongest differs from the "
                       "paper by %d of 255)",
                       path, peak - paper);
    ink_map m = {g, w, (float)paper, (float)(peak - paper)};

    int x0 = w, x1 = -1, y0 = h, y1 = -1;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            if (ink_at(&m, x, y) > INK) {
                x0 = x < x0 ? x : x0, x1 = x > x1 ? x : x1;
                y0 = y < y0 ? y : y0, y1 = y > y1 ? y : y1;
            }
    int bw = x1 - x0 + 1, bh = y1 - y0 + 1; /* at least 1: the peak is ink */
    int ow = bw >= bh ? BOX : (int)lround((double)bw * BOX / bh);
    int oh = bh >= bw ? BOX : (int)lround((double)bh * BOX / bw);
    ow = ow < 1 ? 1 : ow, oh = oh < 1 ? 1 : oh;

    // the box, row by row to ow wide, then column by column to oh high
    float *row = tg__malloc((size_t)bw * sizeof *row), *tmp = tg__malloc((size_t)bh * ow * sizeof *tmp);
    if (!row || !tmp) {
        tg__free(row), tg__free(tmp);
        return tg_fail(TG_ERR_NOMEM, "image %s: out of memory for a %dx%d digit", path, bw, bh);
    }
    for (int y = 0; y < bh; y++) {
        for (int x = 0; x < bw; x++) row[x] = ink_at(&m, x0 + x, y0 + y);
        resample_line(row, 1, bw, tmp + (size_t)y * ow, 1, ow);
    }
    float box[BOX * BOX];
    for (int x = 0; x < ow; x++) resample_line(tmp + x, ow, bh, box + x, ow, oh);
    tg__free(row), tg__free(tmp);

    uint8_t digit[BOX * BOX];
    double mass = 0, cx = 0, cy = 0;
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++) {
            float v = box[y * ow + x];
            uint8_t p = (uint8_t)lrintf(255 * (v < 0 ? 0 : v > 1 ? 1 : v));
            digit[y * ow + x] = p;
            mass += p, cx += (double)p * x, cy += (double)p * y;
        }
    if (mass == 0)
        return tg_fail(TG_ERR_ARG,
                       "image %s: blank: the ink is too sparse to survive scaling "
                       "%dx%d to %dx%d",
                       path, bw, bh, ow, oh);
    // shift the centre of mass onto (14,14), as far as the field allows without
    // cutting the digit
    int ox = (int)lround(CENTRE - cx / mass), oy = (int)lround(CENTRE - cy / mass);
    ox = ox < 0 ? 0 : ox > FIELD - ow ? FIELD - ow : ox;
    oy = oy < 0 ? 0 : oy > FIELD - oh ? FIELD - oh : oy;
    memset(field, 0, FIELD * FIELD);
    for (int y = 0; y < oh; y++) memcpy(field + (oy + y) * FIELD + ox, digit + y * ow, (size_t)ow);
    return 0;
}

/* 16 megapixels (4096x4096): any photograph of a digit, not a decompression
 * bomb (the fuzzer found a 60-byte TGA asking for 6168x6168) */
#define IMAGE_MAX_PIXELS (1 << 24)
/* 256 MiB: a 48-megapixel photo as PNG is at most about 200 MB */
#define IMAGE_MAX_BYTES ((size_t)1 << 28)

/* A PNG's chunks each promise a length, and stb_image allocates what the chunk
 * promises before reading it (the fuzzer found a 94-byte PNG whose IDAT asked
 * for 335 MB). Every chunk must fit in the bytes the file has. */
static int check_png_chunks(const char *path, const uint8_t *b, size_t n) {
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n < 8 || memcmp(b, sig, 8) != 0) return 0; // not a PNG: stb_image's own checks apply
    for (size_t at = 8; at + 8 <= n;) {
        size_t len = (size_t)b[at] << 24 | (size_t)b[at + 1] << 16 | (size_t)b[at + 2] << 8 | b[at + 3];
        if (len > n - at - 8 || n - at - 8 - len < 4)
            return tg_fail(TG_ERR_FORMAT,
                           "image %s: truncated: the PNG chunk %.4s at byte %zu "
                           "promises %zu bytes, "
                           "and the file has %zu after it",
                           path, (const char *)b + at + 4, at, len, n - at - 8);
        if (memcmp(b + at + 4, "IEND", 4) == 0) break;
        at += 12 + len;
    }
    return 0;
}

/* The whole file into memory, through the fd already checked to be a regular
 * file. */
static uint8_t *read_image_file(const char *path, int fd, const struct stat *st, size_t *n) {
    if (st->st_size == 0) {
        tg_fail(TG_ERR_FORMAT, "image %s: the file is empty", path);
        return NULL;
    }
    if ((uint64_t)st->st_size > IMAGE_MAX_BYTES) {
        tg_fail(TG_ERR_FORMAT, "image %s: %lld bytes is more than the %zu this reads", path, (long long)st->st_size,
                IMAGE_MAX_BYTES);
        return NULL;
    }
    *n = (size_t)st->st_size;
    uint8_t *b = malloc(*n);
    if (!b) {
        tg_fail(TG_ERR_NOMEM, "image %s: out of memory for %zu bytes", path, *n);
        return NULL;
    }
    size_t got = 0;
    while (got < *n) {
        ssize_t r = read(fd, b + got, *n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            if (r < 0)
                tg_fail(TG_ERR_IO, "image %s: cannot read: %s", path, strerror(errno));
            else
                tg_fail(TG_ERR_FORMAT, "image %s: truncated: it shrank to %zu bytes while being read", path, got);
            free(b);
            return NULL;
        }
        got += (size_t)r;
    }
    return b;
}

int tg_image_to_mnist(const char *path, float *out, uint8_t *pixels) {
    if (!path) return tg_fail(TG_ERR_ARG, "image_to_mnist: path is NULL");
    if (!out) return tg_fail(TG_ERR_ARG, "image %s: the output is NULL", path);
    /* a regular file only (a FIFO or a device would hang or never end), read
     * through the fd checked */
    struct stat st;
    int fd = tg__open_regular("image", path, &st);
    if (fd < 0) return fd;
    size_t n = 0;
    uint8_t *bytes = read_image_file(path, fd, &st, &n);
    close(fd);
    if (!bytes) return tg_last_error_code();
    int rc = tg__image_bytes_to_mnist(path, bytes, n, out, pixels, IMAGE_MAX_PIXELS);
    free(bytes);
    return rc;
}

int tg__image_bytes_to_mnist(const char *path, const uint8_t *bytes, size_t n, float *out, uint8_t *pixels,
                             int64_t max_pixels) {
    if (check_png_chunks(path, bytes, n) < 0) return tg_last_error_code();
    int w = 0, h = 0, channels = 0;
    /* the header's size first: a small file may claim a picture of gigabytes */
    if (stbi_info_from_memory(bytes, (int)n, &w, &h, &channels) && ((int64_t)w * h > max_pixels))
        return tg_fail(TG_ERR_FORMAT, "image %s: %dx%d pixels is more than the %lld this reads", path, w, h,
                       (long long)max_pixels);
    uint8_t *g = stbi_load_from_memory(bytes, (int)n, &w, &h, &channels, 2);
    if (!g) return tg_fail(TG_ERR_FORMAT, "image %s: cannot decode: %s", path, stbi_failure_reason());
    flatten_alpha(g, (size_t)w * h);
    uint8_t field[FIELD * FIELD];
    int rc = to_mnist(path, g, w, h, field);
    stbi_image_free(g);
    if (rc < 0) return rc;
    // exactly as tg_dataset_new: (x/255 - mean) / std
    for (int i = 0; i < FIELD * FIELD; i++) out[i] = ((float)field[i] / 255.0f - TG_MNIST_MEAN) / TG_MNIST_STD;
    if (pixels) memcpy(pixels, field, sizeof field);
    return 0;
}
