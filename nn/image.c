/* image.c: pictures as tensors, both ways. In: any file stb_image decodes
 * (PNG, JPEG, BMP, GIF, TGA, PSD, PNM...) to a float tensor (C,H,W) or a batch,
 * in grey or colour, optionally resized and normalised, as torchvision's
 * ToTensor, Resize and Normalize would. Out: PNGs of tensors and of grids of
 * them (stb_image_write), written as checkpoints are (a temporary file renamed
 * over the old).
 *
 * Reading goes: the file into memory through an fd checked to be a regular
 * file (a FIFO or a device would hang or never end); the PNG chunk walk; the
 * size from the header, refused before decoding if too large; stb_image's
 * decode to bytes; then rows resampled straight from the bytes, so a photo
 * shrunk to a small tensor never exists as floats at full size. */
#include "nn_internal.h"
#include "stb_image.h"
#include "stb_image_write.h"
#include "tapegrad_nn.h"
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
            if (r < 0) tg_fail(TG_ERR_IO, "image %s: cannot read: %s", path, strerror(errno));
            else tg_fail(TG_ERR_FORMAT, "image %s: truncated: it shrank to %zu bytes while being read", path, got);
            free(b);
            return NULL;
        }
        got += (size_t)r;
    }
    return b;
}

// ----------------------------------------------------------------------------
// decoding and resizing

/* The size a picture of w x h becomes under o: width and height if given (one
 * of them 0: the other keeps the aspect ratio), then shrunk to max_side. */
static void target_size(const tg_image_opts *o, int w, int h, int *ow, int *oh) {
    double tw = w, th = h;
    if (o->width > 0 && o->height > 0) tw = o->width, th = o->height;
    else if (o->width > 0) tw = o->width, th = (double)h * o->width / w;
    else if (o->height > 0) th = o->height, tw = (double)w * o->height / h;
    double longer = tw > th ? tw : th;
    if (o->max_side > 0 && longer > o->max_side) tw *= o->max_side / longer, th *= o->max_side / longer;
    *ow = tw < 1 ? 1 : (int)lround(tw), *oh = th < 1 ? 1 : (int)lround(th);
}

static int check_opts(const char *who, const char *path, const tg_image_opts *o) {
    if (o->channels < 0 || o->channels > 4)
        return tg_fail(TG_ERR_ARG,
                       "%s %s: channels is %d: 1 (grey), 2 (grey, alpha), 3 (RGB), "
                       "4 (RGBA) or 0 (the file's)",
                       who, path, o->channels);
    if (o->width < 0 || o->height < 0 || o->max_side < 0 || o->max_pixels < 0)
        return tg_fail(TG_ERR_ARG,
                       "%s %s: a negative size (width %d, height %d, max_side %d, "
                       "max_pixels %lld)",
                       who, path, o->width, o->height, o->max_side, (long long)o->max_pixels);
    for (int c = 0; o->std && c < (o->channels ? o->channels : 1); c++)
        if (!(o->std[c] > 0) || !isfinite(o->std[c]))
            return tg_fail(TG_ERR_ARG, "%s %s: std[%d] is %g: it must be a positive number", who, path, c,
                           (double)o->std[c]);
    return 0;
}

/* The decoded bytes (w x h, C interleaved) as the tensor (C,oh,ow), scaled to
 * [0,1] and normalised. Each channel: rows to ow wide, then columns to oh high.
 */
static tg_tensor *bytes_to_tensor(const char *path, const uint8_t *px, int w, int h, int C, int ow, int oh,
                                  const tg_image_opts *o) {
    tg_tensor *x = tg_tensor_new(3, (int[]){C, oh, ow});
    float *row = tg__malloc((size_t)w * sizeof *row);
    float *tmp = ow == w && oh == h ? NULL : tg__malloc((size_t)h * ow * sizeof *tmp);
    if (!x || !row || (!tmp && !(ow == w && oh == h))) {
        tg_tensor_free(x), tg__free(row), tg__free(tmp);
        tg_fail(TG_ERR_NOMEM, "image %s: out of memory for a %dx%dx%d tensor", path, C, oh, ow);
        return NULL;
    }
    for (int c = 0; c < C; c++) {
        float *plane = x->data + (size_t)c * oh * ow, *rows = tmp ? tmp : plane;
        for (int y = 0; y < h; y++) {
            const uint8_t *src = px + (size_t)y * w * C + c;
            for (int i = 0; i < w; i++) row[i] = src[(size_t)i * C] * (1.0f / 255);
            if (ow == w) memcpy(rows + (size_t)y * ow, row, (size_t)w * sizeof *row);
            else resample_line(row, 1, w, rows + (size_t)y * ow, 1, ow);
        }
        if (tmp) /* then columns, as tg_image_resize */
            for (int i = 0; i < ow; i++) resample_line(tmp + i, ow, h, plane + i, ow, oh);
        float mean = o->mean ? o->mean[c] : 0, inv = o->std ? 1 / o->std[c] : 1;
        if (o->mean || o->std)
            for (size_t i = 0; i < (size_t)oh * ow; i++) plane[i] = (plane[i] - mean) * inv;
    }
    tg__free(row), tg__free(tmp);
    return x;
}

tg_tensor *tg__image_decode(const char *path, const uint8_t *bytes, size_t n, const tg_image_opts *o) {
    if (check_png_chunks(path, bytes, n) < 0) return NULL;
    int64_t limit = o->max_pixels > 0 ? o->max_pixels : TG_IMAGE_MAX_PIXELS;
    int w = 0, h = 0, file_channels = 0;
    /* the header's size first: a small file may claim a picture of gigabytes */
    if (n > INT32_MAX || !stbi_info_from_memory(bytes, (int)n, &w, &h, &file_channels)) {
        tg_fail(TG_ERR_FORMAT, "image %s: cannot decode: %s", path,
                n > INT32_MAX ? "too large" : stbi_failure_reason());
        return NULL;
    }
    if ((int64_t)w * h > limit) {
        tg_fail(TG_ERR_FORMAT, "image %s: %dx%d pixels is more than the %lld this reads", path, w, h, (long long)limit);
        return NULL;
    }
    int C = o->channels ? o->channels : file_channels, ow, oh;
    target_size(o, w, h, &ow, &oh);
    if ((int64_t)ow * oh > limit) {
        tg_fail(TG_ERR_ARG, "image %s: resized to %dx%d, more than the %lld pixels this makes", path, ow, oh,
                (long long)limit);
        return NULL;
    }
    uint8_t *px = stbi_load_from_memory(bytes, (int)n, &w, &h, &file_channels, C);
    if (!px) {
        tg_fail(TG_ERR_FORMAT, "image %s: cannot decode: %s", path, stbi_failure_reason());
        return NULL;
    }
    tg_tensor *x = bytes_to_tensor(path, px, w, h, C, ow, oh, o);
    stbi_image_free(px);
    return x;
}

tg_tensor *tg_image_load(const char *path, const tg_image_opts *opts) {
    tg_image_opts o = opts ? *opts : (tg_image_opts){0};
    if (!path) {
        tg_fail(TG_ERR_ARG, "image_load: path is NULL");
        return NULL;
    }
    if (check_opts("image", path, &o) < 0) return NULL;
    struct stat st;
    int fd = tg__open_regular("image", path, &st);
    if (fd < 0) return NULL;
    size_t n = 0;
    uint8_t *bytes = read_image_file(path, fd, &st, &n);
    close(fd);
    if (!bytes) return NULL;
    tg_tensor *x = tg__image_decode(path, bytes, n, &o);
    free(bytes);
    return x;
}

tg_tensor *tg_image_load_batch(const char *const *paths, int n, const tg_image_opts *opts) {
    if (!paths || n <= 0) {
        tg_fail(TG_ERR_ARG, "image_load_batch: %s", !paths ? "paths is NULL" : "no images (n <= 0)");
        return NULL;
    }
    tg_image_opts o = opts ? *opts : (tg_image_opts){0};
    tg_tensor *batch = NULL;
    for (int i = 0; i < n; i++) {
        if (!paths[i]) {
            tg_fail(TG_ERR_ARG, "image_load_batch: paths[%d] is NULL", i);
            goto fail;
        }
        tg_tensor *x = tg_image_load(paths[i], &o);
        if (!x) goto fail;
        if (!batch) {
            /* the first image fixes the channels and the size of the rest */
            o.channels = x->shape[0];
            batch = tg_tensor_new(4, (int[]){n, x->shape[0], x->shape[1], x->shape[2]});
            if (!batch) {
                tg_tensor_free(x);
                tg_fail(TG_ERR_NOMEM, "image_load_batch: out of memory for %d images of %dx%dx%d", n, x->shape[0],
                        x->shape[1], x->shape[2]);
                goto fail;
            }
        } else if (x->shape[1] != batch->shape[2] || x->shape[2] != batch->shape[3]) {
            tg_fail(TG_ERR_SHAPE,
                    "image %s: %dx%d, and %s was %dx%d: give a width and a height to "
                    "resize them alike",
                    paths[i], x->shape[2], x->shape[1], paths[0], batch->shape[3], batch->shape[2]);
            tg_tensor_free(x);
            goto fail;
        }
        memcpy(batch->data + (size_t)i * x->size, x->data, (size_t)x->size * sizeof(float));
        tg_tensor_free(x);
    }
    return batch;
fail:
    tg_tensor_free(batch);
    return NULL;
}

tg_tensor *tg_image_resize(const tg_tensor *x, int width, int height) {
    if (!tg__tensor_current(x) || x->ndim != 3) {
        tg_fail(x ? TG_ERR_SHAPE : TG_ERR_ARG, "image_resize: %s", x ? "x must be a live (C,H,W) tensor" : "x is NULL");
        return NULL;
    }
    if (width <= 0 || height <= 0 || (int64_t)width * height * x->shape[0] > TG_MAX_ELEMENTS) {
        tg_fail(TG_ERR_ARG, "image_resize: to %dx%d", width, height);
        return NULL;
    }
    int C = x->shape[0], h = x->shape[1], w = x->shape[2];
    tg_tensor *y = tg_tensor_new(3, (int[]){C, height, width});
    float *tmp = tg__malloc((size_t)h * width * sizeof *tmp);
    if (!y || !tmp) {
        tg_tensor_free(y), tg__free(tmp);
        tg_fail(TG_ERR_NOMEM, "image_resize: out of memory");
        return NULL;
    }
    for (int c = 0; c < C; c++) {
        const float *src = x->data + (size_t)c * h * w;
        for (int r = 0; r < h; r++) resample_line(src + (size_t)r * w, 1, w, tmp + (size_t)r * width, 1, width);
        for (int i = 0; i < width; i++)
            resample_line(tmp + i, width, h, y->data + (size_t)c * height * width + i, width, height);
    }
    tg__free(tmp);
    return y;
}

// ----------------------------------------------------------------------------
// PNGs

typedef struct {
    int w, h, C;
    uint8_t *px;
} png_body;

static void to_file(void *f, void *data, int size) { fwrite(data, 1, (size_t)size, f); }

static int write_png_body(FILE *f, void *ctx) {
    png_body *b = ctx;
    errno = 0;
    if (!stbi_write_png_to_func(to_file, f, b->w, b->h, b->C, b->px, b->w * b->C) || ferror(f))
        return errno ? errno : EIO;
    return 0;
}

/* v in [lo, hi] to 0..255 (NaN: 0); lo == hi: the data's own range */
static void range_of(const tg_tensor *x, float *lo, float *hi) {
    if (*lo != *hi) return;
    float a = INFINITY, b = -INFINITY;
    for (int64_t i = 0; i < x->size; i++)
        if (isfinite(x->data[i])) a = fminf(a, x->data[i]), b = fmaxf(b, x->data[i]);
    if (a > b) a = 0, b = 1;
    *lo = a, *hi = a == b ? a + 1 : b;
}

static uint8_t to_byte(float v, float lo, float hi) {
    float u = (v - lo) / (hi - lo) * 255;
    return u >= 0 ? (u <= 255 ? (uint8_t)lrintf(u) : 255) : 0; /* NaN fails both tests: 0 */
}

/* Writes the (N,C,H,W) images of x as a grid of cols columns with pad pixels of
 * 0 between and around them (pad 0 and one image: just the image). */
static int write_grid(const char *who, const char *path, const tg_tensor *x, int N, int C, int H, int W, int cols,
                      int pad, float lo, float hi) {
    int rows = (N + cols - 1) / cols;
    int64_t gw = (int64_t)cols * (W + pad) + pad, gh = (int64_t)rows * (H + pad) + pad;
    if (gw * gh > TG_IMAGE_MAX_PIXELS || gw > 65535 || gh > 65535)
        return tg_fail(TG_ERR_ARG, "%s %s: a %lldx%lld picture is larger than PNGs this writes", who, path,
                       (long long)gw, (long long)gh);
    int pc = C == 2 ? 2 : C; /* grey, grey+alpha, RGB, RGBA as they are */
    uint8_t *px = tg__calloc((size_t)(gw * gh), (size_t)pc);
    if (!px)
        return tg_fail(TG_ERR_NOMEM, "%s %s: out of memory for a %lldx%lld picture", who, path, (long long)gw,
                       (long long)gh);
    range_of(x, &lo, &hi);
    for (int i = 0; i < N; i++) {
        int64_t x0 = pad + (int64_t)(i % cols) * (W + pad), y0 = pad + (int64_t)(i / cols) * (H + pad);
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int xx = 0; xx < W; xx++)
                    px[((y0 + y) * gw + x0 + xx) * pc + c] =
                        to_byte(x->data[(((size_t)i * C + c) * H + y) * W + xx], lo, hi);
    }
    png_body b = {(int)gw, (int)gh, pc, px};
    int rc = tg__save_atomic(who, path, write_png_body, &b);
    tg__free(px);
    return rc;
}

static int check_png_args(const char *who, const char *path, const tg_tensor *x, float lo, float hi) {
    if (!path || !*path) return tg_fail(TG_ERR_ARG, "%s: path is %s", who, path ? "empty" : "NULL");
    if (!x) return tg_fail(TG_ERR_ARG, "%s %s: x is NULL", who, path);
    if (!tg__tensor_current(x)) return tg_fail(TG_ERR_STATE, "%s %s: x is stale (its tape was reset)", who, path);
    if (!isfinite(lo) || !isfinite(hi) || lo > hi)
        return tg_fail(TG_ERR_ARG,
                       "%s %s: the range [%g, %g]: lo <= hi, both finite (lo == "
                       "hi: the data's own)",
                       who, path, (double)lo, (double)hi);
    return 0;
}

int tg_image_write_png(const char *path, const tg_tensor *x, float lo, float hi) {
    int rc = check_png_args("image_write_png", path, x, lo, hi);
    if (rc < 0) return rc;
    /* (H,W), (C,H,W) or (1,C,H,W) */
    int lead = x->ndim == 4 ? 2 : x->ndim == 3 ? 1 : 0;
    int C = x->ndim == 2 ? 1 : x->shape[lead - 1];
    if (x->ndim < 2 || x->ndim > 4 || (x->ndim == 4 && x->shape[0] != 1) || C < 1 || C > 4) {
        char s[64];
        return tg_fail(TG_ERR_SHAPE,
                       "image_write_png %s: x is %s: (H,W), (C,H,W) or (1,C,H,W) "
                       "with C of 1 to 4",
                       path, tg_shape_str(x, s, sizeof s));
    }
    return write_grid("image_write_png", path, x, 1, C, x->shape[lead], x->shape[lead + 1], 1, 0, lo, hi);
}

int tg_image_write_grid_png(const char *path, const tg_tensor *x, int cols, int pad, float lo, float hi) {
    int rc = check_png_args("image_write_grid_png", path, x, lo, hi);
    if (rc < 0) return rc;
    if (x->ndim != 4 || x->shape[1] < 1 || x->shape[1] > 4) {
        char s[64];
        return tg_fail(TG_ERR_SHAPE, "image_write_grid_png %s: x is %s: (N,C,H,W) with C of 1 to 4", path,
                       tg_shape_str(x, s, sizeof s));
    }
    if (cols < 0 || pad < 0 || pad > 1024)
        return tg_fail(TG_ERR_ARG, "image_write_grid_png %s: cols %d, pad %d", path, cols, pad);
    int N = x->shape[0];
    cols = cols == 0 ? 8 : cols; /* torchvision's make_grid: 8 a row */
    cols = cols > N ? N : cols;
    return write_grid("image_write_grid_png", path, x, N, x->shape[1], x->shape[2], x->shape[3], cols, pad, lo, hi);
}
