/* data.c: IDX files (plain or gzip-compressed), image datasets built from
 * them (MNIST, Fashion-MNIST), a seeded permutation and mini-batches. */
#include "nn_internal.h"
#include "tapegrad_nn.h"
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

// ----------------------------------------------------------------------------
// opening a file to read: regular files only

/* What a file that is not a regular one is, for messages: "a FIFO", ... */
const char *tg__file_kind(mode_t mode) {
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISLNK(mode)) return "a symbolic link";
    return "not a file of a known kind";
}

/* Opens path to read if it is a regular file, and returns the fd (st: its
 * fstat), or a negative TG_ERR_* with "<who> <path>: ..." set. A path that is
 * something else is refused from stat, without opening it (opening a device
 * can do things); the open itself does not block (O_NONBLOCK: a FIFO put there
 * meanwhile cannot hang us), and the fd's own fstat decides. Callers read
 * through this fd, never by the name again. */
int tg__open_regular(const char *who, const char *path, struct stat *st) {
    struct stat pre;
    if (stat(path, &pre) == 0 && !S_ISREG(pre.st_mode))
        return tg_fail(TG_ERR_IO, "%s %s: not a regular file (%s)", who, path, tg__file_kind(pre.st_mode));
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return tg_fail(TG_ERR_IO, "%s %s: cannot open: %s", who, path, strerror(errno));
    if (fstat(fd, st) < 0) {
        int rc = tg_fail(TG_ERR_IO, "%s %s: cannot stat: %s", who, path, strerror(errno));
        close(fd);
        return rc;
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        return tg_fail(TG_ERR_IO, "%s %s: not a regular file (%s)", who, path, tg__file_kind(st->st_mode));
    }
    /* no effect on a regular file; cleared so that what reads the fd sees a plain one */
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    return fd;
}

// ----------------------------------------------------------------------------
// IDX: magic 00 00 <type> <ndim>, ndim big-endian uint32 dimensions, then the
// data, row-major. Only type 0x08 (unsigned byte) is read.

#define IDX_HEADER_MAX (4 + 4 * 4)
#define READ_CHUNK ((size_t)1 << 20)

/* How much an IDX file can hold (bytes of data): MNIST's train images are
 * 47 MB; a header asking for more than this is corrupt or not meant for us. */
#define IDX_MAX_BYTES ((int64_t)1 << 30)

/* Why gzread failed, as a message; the code it deserves. */
static int gz_fail(gzFile gz, const char *path) {
    int errnum;
    const char *msg = gzerror(gz, &errnum);
    if (strncmp(msg, "<fd:", 4) == 0 && strstr(msg, ": ")) msg = strstr(msg, ": ") + 2; /* zlib names the fd */
    if (errnum == Z_ERRNO) return tg_fail(TG_ERR_IO, "idx %s: cannot read: %s", path, strerror(errno));
    if (errnum == Z_BUF_ERROR) return tg_fail(TG_ERR_FORMAT, "idx %s: truncated gzip data: %s", path, msg);
    return tg_fail(TG_ERR_FORMAT, "idx %s: bad gzip data: %s", path, msg);
}

/* Reads up to len bytes; returns the count, or -1 with the message set. */
static int64_t gz_read(gzFile gz, const char *path, void *buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        size_t want = len - got < READ_CHUNK ? len - got : READ_CHUNK;
        int r = gzread(gz, (unsigned char *)buf + got, (unsigned)want);
        if (r < 0) {
            gz_fail(gz, path);
            return -1;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    int errnum;
    gzerror(gz, &errnum);
    /* a gzip stream cut short reads as a short file plus an error */
    if (got < len && errnum != Z_OK && errnum != Z_STREAM_END) {
        gz_fail(gz, path);
        return -1;
    }
    return (int64_t)got;
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The header: fills idx's shape and size, checks them. */
static int read_header(gzFile gz, const char *path, tg_idx *idx, int64_t *header_bytes) {
    unsigned char h[IDX_HEADER_MAX];
    int64_t got = gz_read(gz, path, h, 4);
    if (got < 0) return tg_last_error_code();
    if (got < 4)
        return tg_fail(TG_ERR_FORMAT, "idx %s: truncated: %lld bytes, too short for an idx header", path,
                       (long long)got);
    if (h[0] != 0 || h[1] != 0)
        return tg_fail(TG_ERR_FORMAT, "idx %s: bad magic %02x %02x %02x %02x, not an idx file", path, h[0], h[1],
                       h[2], h[3]);
    if (h[2] != 0x08)
        return tg_fail(TG_ERR_FORMAT, "idx %s: type byte 0x%02x, only 0x08 (unsigned byte) is supported", path,
                       h[2]);
    int ndim = h[3];
    if (ndim < 1 || ndim > TG_MAX_DIMS)
        return tg_fail(TG_ERR_FORMAT, "idx %s: %d dimensions, 1 to %d are supported", path, ndim, TG_MAX_DIMS);
    got = gz_read(gz, path, h + 4, 4 * (size_t)ndim);
    if (got < 0) return tg_last_error_code();
    *header_bytes = 4 + 4 * (int64_t)ndim;
    if (got < 4 * ndim)
        return tg_fail(TG_ERR_FORMAT, "idx %s: truncated: a %d-dimensional header needs %lld bytes, file has %lld",
                       path, ndim, (long long)*header_bytes, (long long)(4 + got));
    int64_t size = 1;
    bool fits = true;
    char shape[64];
    size_t o = 0;
    for (int i = 0; i < ndim; i++) {
        uint32_t d = be32(h + 4 + 4 * i);
        if (d == 0) return tg_fail(TG_ERR_FORMAT, "idx %s: dimension %d is 0", path, i);
        o += (size_t)snprintf(shape + o, sizeof shape - o, i ? "x%lu" : "%lu", (unsigned long)d);
        /* each factor is checked before the product can overflow */
        if (fits && (int64_t)d > IDX_MAX_BYTES / size) fits = false;
        if (fits) size *= d;
        idx->shape[i] = fits ? (int)d : 0;
    }
    if (!fits)
        return tg_fail(TG_ERR_FORMAT, "idx %s: shape %s is more than the %lld bytes an idx file may hold", path,
                       shape, (long long)IDX_MAX_BYTES);
    idx->ndim = ndim;
    idx->size = size;
    return 0;
}

/* The most a deflate stream expands: 1032 bytes out for each byte in (zlib's
 * FAQ). A gzip file of n bytes cannot hold more than 1032 n. */
#define DEFLATE_MAX_RATIO 1032

int tg_idx_load(tg_idx *idx, const char *path) {
    if (!idx) return tg_fail(TG_ERR_ARG, "idx_load: idx is NULL");
    memset(idx, 0, sizeof *idx);
    if (!path) return tg_fail(TG_ERR_ARG, "idx_load: path is NULL");
    struct stat st;
    int fd = tg__open_regular("idx", path, &st);
    if (fd < 0) return fd;
    gzFile gz = gzdopen(fd, "rb");
    if (!gz) {
        close(fd);
        return tg_fail(TG_ERR_NOMEM, "idx %s: out of memory", path);
    }
    int64_t header = 0;
    int rc = read_header(gz, path, idx, &header);
    if (rc < 0) goto fail;
    bool plain = gzdirect(gz);
    const char *how = plain ? "" : " uncompressed";
    int64_t file_size = (int64_t)st.st_size, want = header + idx->size;

    /* Sizes first, before any data is read: a plain file must be exactly the
     * header and the data; a gzip file must be big enough to hold them. */
    if (plain && file_size != want) {
        rc = tg_fail(TG_ERR_FORMAT, "idx %s: %s: header says %lld bytes, file has %lld", path,
                     file_size < want ? "truncated" : "trailing bytes", (long long)want, (long long)file_size);
        goto fail;
    }
    if (!plain && file_size < (want + DEFLATE_MAX_RATIO - 1) / DEFLATE_MAX_RATIO) {
        rc = tg_fail(TG_ERR_FORMAT,
                     "idx %s: truncated: header says %lld bytes, more than a gzip file of %lld bytes can hold "
                     "(%d:1 at most)",
                     path, (long long)want, (long long)file_size, DEFLATE_MAX_RATIO);
        goto fail;
    }

    /* The buffer grows with the data that actually arrives, so a small file
     * claiming a big size never makes us allocate the big size. */
    size_t cap = idx->size < (int64_t)READ_CHUNK ? (size_t)idx->size : READ_CHUNK, got = 0;
    idx->data = tg__malloc(cap);
    if (!idx->data) goto oom;
    for (;;) {
        int64_t r = gz_read(gz, path, idx->data + got, cap - got);
        if (r < 0) {
            rc = tg_last_error_code();
            goto fail;
        }
        got += (size_t)r;
        if (got < cap || cap == (size_t)idx->size) break;
        size_t grown = cap * 2 < (size_t)idx->size ? cap * 2 : (size_t)idx->size;
        uint8_t *p = tg__realloc(idx->data, grown);
        if (!p) goto oom;
        idx->data = p;
        cap = grown;
    }
    if ((int64_t)got < idx->size) {
        rc = tg_fail(TG_ERR_FORMAT, "idx %s: truncated: header says %lld bytes, file has %lld%s", path,
                     (long long)want, (long long)(header + (int64_t)got), how);
        goto fail;
    }
    /* One byte more, no further: anything there is trailing data. A gzip file
     * may expand to gigabytes past what its header promised; of those, zlib
     * inflates one buffer (kilobytes) at most. At the end of the stream this
     * read also checks gzip's own CRC and length. */
    unsigned char one;
    int64_t r = gz_read(gz, path, &one, 1);
    if (r < 0) {
        rc = tg_last_error_code();
        goto fail;
    }
    if (r > 0) {
        rc = tg_fail(TG_ERR_FORMAT, "idx %s: trailing bytes: header says %lld bytes, file has more%s", path,
                     (long long)want, how);
        goto fail;
    }
    gzclose(gz);
    return 0;
oom:
    rc = tg_fail(TG_ERR_NOMEM, "idx %s: out of memory for %lld bytes", path, (long long)idx->size);
fail:
    gzclose(gz);
    tg_idx_release(idx);
    return rc;
}

void tg_idx_release(tg_idx *idx) {
    if (!idx) return;
    tg__free(idx->data);
    memset(idx, 0, sizeof *idx);
}

// ----------------------------------------------------------------------------
// datasets

/* dir/<split>-<kind>, or dir/<split>-<kind>.gz when only that one exists. */
static char *find_file(const char *dir, const char *split, const char *kind) {
    size_t len = strlen(dir) + strlen(split) + strlen(kind) + 8;
    char *path = tg__malloc(len);
    if (!path) {
        tg_fail(TG_ERR_NOMEM, "dataset %s: out of memory", dir);
        return NULL;
    }
    snprintf(path, len, "%s/%s-%s", dir, split, kind);
    if (access(path, F_OK) == 0) return path;
    snprintf(path, len, "%s/%s-%s.gz", dir, split, kind);
    if (access(path, F_OK) == 0) return path;
    tg_fail(TG_ERR_IO, "dataset %s: neither %s-%s nor %s-%s.gz is there: %s", dir, split, kind, split, kind,
            strerror(errno));
    tg__free(path);
    return NULL;
}

tg_dataset *tg_dataset_new(const char *dir, const char *split, int limit, float mean, float std) {
    if (!dir || !split || !*split) {
        tg_fail(TG_ERR_ARG, "dataset_new: %s is NULL or empty", !dir ? "dir" : "split");
        return NULL;
    }
    if (limit < 0) {
        tg_fail(TG_ERR_ARG, "dataset %s: limit is %d, must be 0 (all) or more", dir, limit);
        return NULL;
    }
    if (!(std > 0) || !isfinite(std) || !isfinite(mean)) {
        tg_fail(TG_ERR_ARG, "dataset %s: std is %g, must be positive and finite (mean %g)", dir, (double)std,
                (double)mean);
        return NULL;
    }
    tg_dataset *ds = NULL;
    tg_idx images = {0}, labels = {0};
    char *ipath = find_file(dir, split, "images-idx3-ubyte");
    char *lpath = ipath ? find_file(dir, split, "labels-idx1-ubyte") : NULL;
    if (!lpath) goto done;
    if (tg_idx_load(&images, ipath) < 0 || tg_idx_load(&labels, lpath) < 0) goto done;
    if (images.ndim != 3) {
        tg_fail(TG_ERR_FORMAT, "dataset %s: has %d dimensions, images need 3 (N,H,W)", ipath, images.ndim);
        goto done;
    }
    if (labels.ndim != 1) {
        tg_fail(TG_ERR_FORMAT, "dataset %s: has %d dimensions, labels need 1", lpath, labels.ndim);
        goto done;
    }
    if (images.shape[0] != labels.shape[0]) {
        tg_fail(TG_ERR_FORMAT, "dataset %s: %s has %d images but %s has %d labels", dir, ipath, images.shape[0],
                lpath, labels.shape[0]);
        goto done;
    }
    ds = tg__calloc(1, sizeof *ds);
    if (!ds) goto oom;
    ds->n = limit && limit < images.shape[0] ? limit : images.shape[0];
    ds->h = images.shape[1];
    ds->w = images.shape[2];
    ds->mean = mean;
    ds->std = std;
    size_t pixels = (size_t)ds->n * ds->h * ds->w;
    ds->labels = tg__malloc((size_t)ds->n * sizeof(int32_t));
    if (!ds->labels) goto oom;
    /* the file's bytes are the pixels: kept, not copied (a copy of MNIST's 47 MB and the
     * page faults of a second buffer were 40% of the load); a limit gives back the rest */
    ds->pixels = images.data, images.data = NULL;
    if (pixels > 0 && pixels < (size_t)images.size) {
        uint8_t *fit = tg__realloc(ds->pixels, pixels);
        if (fit) ds->pixels = fit;
    }
    // x -> (x/255 - mean) / std, PyTorch's ToTensor then Normalize
    for (int v = 0; v < 256; v++) ds->value[v] = ((float)v / 255.0f - mean) / std;
    for (int i = 0; i < ds->n; i++) {
        ds->labels[i] = labels.data[i];
        if (labels.data[i] >= ds->classes) ds->classes = labels.data[i] + 1;
    }
    goto done;
oom:
    tg_fail(TG_ERR_NOMEM, "dataset %s: out of memory for %d images of %dx%d", dir, images.shape[0],
            images.shape[1], images.shape[2]);
    tg_dataset_free(ds);
    ds = NULL;
done:
    tg_idx_release(&images);
    tg_idx_release(&labels);
    tg__free(ipath);
    tg__free(lpath);
    return ds;
}

void tg_dataset_free(tg_dataset *ds) {
    if (!ds) return;
    tg__free(ds->pixels);
    tg__free(ds->labels);
    tg__free(ds);
}

// ----------------------------------------------------------------------------
// shuffling and mini-batches

/* splitmix64: tiny, and the same sequence on every machine */
static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int tg_permutation(int *perm, int n, uint64_t seed) {
    if (n < 0 || (n > 0 && !perm)) return tg_fail(TG_ERR_ARG, "permutation: n is %d, perm %p", n, (void *)perm);
    for (int i = 0; i < n; i++) perm[i] = i;
    uint64_t s = seed;
    /* Fisher-Yates; the modulo's bias is below n / 2^64 */
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(splitmix64(&s) % (uint64_t)(i + 1));
        int tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    return 0;
}

/* Four uniforms in [0, 1) for the sample at position pos of an epoch's order,
 * from (seed, pos) alone: any thread, any batch size, in any order. The key is
 * hashed once so that neighbouring positions' streams do not overlap (with a
 * plain seed + pos the streams of pos and pos+1 would be one step apart). */
static void augment_draws(uint64_t seed, int pos, double u[4]) {
    uint64_t s = seed ^ (uint64_t)pos * 0xd1b54a32d192ed03ull;
    s = splitmix64(&s);
    for (int k = 0; k < 4; k++) u[k] = (double)(splitmix64(&s) >> 11) * 0x1p-53;
}

/* The byte image at a point (x, y) in pixel units, bilinear, outside = 0, in
 * [0, 255]. */
static double sample_bilinear(const uint8_t *p, int h, int w, double x, double y) {
    /* far outside: nothing, and no int overflow from a point thousands of images away */
    if (!(x > -1 && x < w && y > -1 && y < h)) return 0;
    int x0 = (int)floor(x), y0 = (int)floor(y);
    double fx = x - x0, fy = y - y0, sum = 0;
    for (int dy = 0; dy < 2; dy++)
        for (int dx = 0; dx < 2; dx++) {
            int xx = x0 + dx, yy = y0 + dy;
            double wgt = (dx ? fx : 1 - fx) * (dy ? fy : 1 - fy);
            if (xx >= 0 && xx < w && yy >= 0 && yy < h && wgt != 0) sum += wgt * p[(size_t)yy * w + xx];
        }
    return sum;
}

/* out[h*w] = image p distorted by angle a (radians), scale s and shift (tx, ty), normalised.
 * Each output pixel o looks up the input at C + R(-a) (o - C - t) / s, the inverse of
 * "rotate by a and scale by s about the centre C, then shift by t", in doubles. A positive
 * angle turns the picture counter-clockwise as seen (y pointing down), as torchvision's. */
static void augment_image(float *out, const uint8_t *p, int h, int w, double a, double s, double tx, double ty,
                          float mean, float std) {
    double cx = (w - 1) / 2.0, cy = (h - 1) / 2.0, c = cos(a), sn = sin(a);
    for (int oy = 0; oy < h; oy++)
        for (int ox = 0; ox < w; ox++) {
            double u = (ox - cx - tx) / s, v = (oy - cy - ty) / s;
            double level = sample_bilinear(p, h, w, cx + c * u - sn * v, cy + sn * u + c * v);
            /* the same float arithmetic as tg_dataset_new's value[]: an identity map (level a
             * whole byte) gives value[byte] bit for bit */
            out[(size_t)oy * w + ox] = ((float)level / 255.0f - mean) / std;
        }
}

/* A bilinear sample costs some tens of flops: this many are worth a thread. */
#define AUGMENT_MIN_PER_THREAD 2048
/* Without augmentation, a table lookup a pixel that waits on cold memory: this many are worth a
 * thread (64 MNIST images took 0.11 ms on one thread, 0.075 on two). */
#define LOOKUP_MIN_PER_THREAD 8192

int tg_dataset_batch(const tg_dataset *ds, const int *perm, int start, tg_tensor *x, int32_t *labels) {
    return tg_dataset_batch_augment(ds, perm, start, x, labels, NULL, 0);
}

int tg_dataset_batch_augment(const tg_dataset *ds, const int *perm, int start, tg_tensor *x, int32_t *labels,
                             const tg_augment *aug, uint64_t seed) {
    if (!ds || !x) return tg_fail(TG_ERR_ARG, "dataset_batch: %s is NULL", !ds ? "dataset" : "x");
    char buf[64];
    if (x->ndim != 4 || x->shape[1] != 1 || x->shape[2] != ds->h || x->shape[3] != ds->w)
        return tg_fail(TG_ERR_SHAPE, "dataset_batch: x is %s, needs (B,1,%d,%d)", tg_shape_str(x, buf, sizeof buf),
                       ds->h, ds->w);
    if (start < 0 || start >= ds->n)
        return tg_fail(TG_ERR_ARG, "dataset_batch: start %d is outside [0, %d)", start, ds->n);
    /* every sample of x is filled, or none: a tensor filled in part would go
     * on to train or evaluate with whatever its tail held */
    int b = x->shape[0];
    if (b > ds->n - start)
        return tg_fail(TG_ERR_SHAPE,
                       "dataset_batch: x holds %d samples but only %d are left from start %d: make the last "
                       "batch's x %d long",
                       b, ds->n - start, start, ds->n - start);
    /* the permutation is checked before x changes: a failed batch leaves x as it was */
    for (int i = 0; perm && i < b; i++)
        if (perm[start + i] < 0 || perm[start + i] >= ds->n)
            return tg_fail(TG_ERR_ARG, "dataset_batch: perm[%d] is %d, outside [0, %d)", start + i, perm[start + i],
                           ds->n);
    if (aug && (!isfinite(aug->degrees) || !isfinite(aug->scale) || !isfinite(aug->shift) ||
                !(aug->degrees >= 0 && aug->degrees <= 180) || !(aug->scale >= 0 && aug->scale < 1) ||
                !(aug->shift >= 0 && aug->shift < ds->w)))
        return tg_fail(TG_ERR_ARG,
                       "dataset_batch: aug degrees %g, scale %g, shift %g: needs degrees in [0, 180], scale in "
                       "[0, 1), shift in [0, %d) (the width), all finite",
                       (double)aug->degrees, (double)aug->scale, (double)aug->shift, ds->w);
    size_t plane = (size_t)ds->h * ds->w;
    if (!aug) {
#pragma omp parallel for num_threads(tg__threads_for((int64_t)b * plane, LOOKUP_MIN_PER_THREAD)) schedule(static)
        for (int i = 0; i < b; i++) {
            int k = perm ? perm[start + i] : start + i;
            const uint8_t *p = ds->pixels + (size_t)k * plane;
            for (size_t j = 0; j < plane; j++) x->data[i * plane + j] = ds->value[p[j]];
            if (labels) labels[i] = ds->labels[k];
        }
        return b;
    }
    /* each image alone, its draws from (seed, its position): the same for any thread count */
#pragma omp parallel for num_threads(tg__threads_for((int64_t)b * plane, AUGMENT_MIN_PER_THREAD)) schedule(static)
    for (int i = 0; i < b; i++) {
        int k = perm ? perm[start + i] : start + i;
        double u[4];
        augment_draws(seed, start + i, u);
        double a = aug->degrees * (2 * u[0] - 1) * (3.14159265358979323846 / 180); /* M_PI is not C11's */
        double s = 1 + aug->scale * (2 * u[1] - 1);
        double tx = aug->shift * (2 * u[2] - 1), ty = aug->shift * (2 * u[3] - 1);
        augment_image(x->data + i * plane, ds->pixels + (size_t)k * plane, ds->h, ds->w, a, s, tx, ty, ds->mean,
                      ds->std);
        if (labels) labels[i] = ds->labels[k];
    }
    return b;
}
