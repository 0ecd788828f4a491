/* test_data.c: IDX files plain and gzip-compressed, their errors, datasets,
 * normalisation, the seeded permutation and mini-batches, on small files
 * written to a temporary directory; augmented batches on datasets made in memory.
 *
 * By hand, on real files (not part of the suite):
 *     test_data DIR [DIR...]    e.g. data/mnist /usr/share/datasets/fashion-mnist
 * loads DIR's train and t10k sets and prints what it found. */
#include "check.h"
#include "internal.h" /* tg__alloc_count */
#include "tapegrad_nn.h"
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char dir[64];

// ----------------------------------------------------------------------------
// writing IDX files

typedef struct {
    unsigned char b[4096];
    size_t len;
} bytes;

static void put_be32(bytes *f, uint32_t v) {
    for (int i = 3; i >= 0; i--) f->b[f->len++] = (unsigned char)(v >> (8 * i));
}

/* An IDX file of unsigned bytes; data[i] = (i * 7 + seed) % 256, as much as fits */
static bytes idx(int ndim, const uint32_t *dims, int seed) {
    bytes f = {.b = {0, 0, 0x08, (unsigned char)ndim}, .len = 4};
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        put_be32(&f, dims[i]);
        n *= dims[i];
    }
    if (n > sizeof f.b - f.len) n = 0;
    for (size_t i = 0; i < n; i++) f.b[f.len++] = (unsigned char)((i * 7 + (size_t)seed) % 256);
    return f;
}

static const char *path_of(const char *name) {
    static char p[2][400];
    static int k;
    k ^= 1;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static const char *write_file(const char *name, const bytes *f, bool gz) {
    const char *p = path_of(name);
    if (gz) {
        gzFile g = gzopen(p, "wb");
        CHECK(g && gzwrite(g, f->b, (unsigned)f->len) == (int)f->len);
        if (g) gzclose(g);
    } else {
        FILE *o = fopen(p, "wb");
        CHECK(o && fwrite(f->b, 1, f->len, o) == f->len);
        if (o) fclose(o);
    }
    return p;
}

static void clean_dir(void) {
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') {
            const char *p = path_of(e->d_name);
            if (unlink(p) < 0) rmdir(p);
        }
    if (d) closedir(d);
}

/* Loading path fails with code and a message containing sub (after "idx <path>: "). */
static void idx_fails(const char *path, int code, const char *sub) {
    char want[256];
    snprintf(want, sizeof want, "idx %s: %s", path, sub);
    tg_idx x;
    tg_clear_error();
    uint64_t allocs = tg__alloc_count();
    CHECK_INT(tg_idx_load(&x, path), code);
    CHECK_INT(tg_last_error_code(), code);
    CHECK_MSG(tg_last_error(), want);
    CHECK(x.data == NULL && x.size == 0);
    CHECK(tg__alloc_count() - allocs <= 2); /* nothing big, nothing per byte */
}

// ----------------------------------------------------------------------------
// IDX

static void idx_good(void) {
    for (int gz = 0; gz < 2; gz++) {
        bytes f = idx(3, (uint32_t[]){4, 3, 2}, 1);
        const char *p = write_file(gz ? "a.gz" : "a", &f, gz);
        tg_idx x;
        CHECK_INT(tg_idx_load(&x, p), 0);
        CHECK_INT(x.ndim, 3);
        CHECK_INT(x.shape[0], 4);
        CHECK_INT(x.shape[1], 3);
        CHECK_INT(x.shape[2], 2);
        CHECK_INT(x.size, 24);
        CHECK(x.data && memcmp(x.data, f.b + 16, 24) == 0);
        tg_idx_release(&x);
        CHECK(x.data == NULL);
        tg_idx_release(&x); /* twice is fine */
    }
    /* 1 and 4 dimensions */
    bytes f = idx(1, (uint32_t[]){7}, 0);
    tg_idx x;
    CHECK_INT(tg_idx_load(&x, write_file("b", &f, true)), 0);
    CHECK_INT(x.ndim, 1);
    CHECK_INT(x.size, 7);
    CHECK_INT(x.data[6], 42);
    tg_idx_release(&x);
    f = idx(4, (uint32_t[]){2, 1, 2, 3}, 0);
    CHECK_INT(tg_idx_load(&x, write_file("c", &f, false)), 0);
    CHECK_INT(x.ndim, 4);
    CHECK_INT(x.shape[3], 3);
    CHECK_INT(x.size, 12);
    tg_idx_release(&x);
    /* bigger than one read chunk, compressed: the buffer grows */
    uint32_t big[] = {3, 1000, 1000};
    const char *p = path_of("big.gz");
    gzFile g = gzopen(p, "wb");
    unsigned char h[16] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0x03, 0xe8, 0, 0, 0x03, 0xe8};
    gzwrite(g, h, 16);
    static unsigned char row[1000];
    for (uint32_t i = 0; i < big[0] * big[1]; i++) {
        memset(row, (int)(i % 251), sizeof row);
        gzwrite(g, row, sizeof row);
    }
    gzclose(g);
    CHECK_INT(tg_idx_load(&x, p), 0);
    CHECK_INT(x.size, 3000000);
    CHECK_INT(x.data[2999999], 2999 % 251);
    tg_idx_release(&x);
    CHECK_INT(tg_idx_load(NULL, p), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "idx_load: idx is NULL");
}

static void idx_bad(void) {
    bytes f = idx(3, (uint32_t[]){2, 3, 4}, 0); /* 16 + 24 bytes */
    bytes t = f;
    t.len -= 5;
    idx_fails(write_file("trunc", &t, false), TG_ERR_FORMAT, "truncated: header says 40 bytes, file has 35");
    idx_fails(write_file("trunc.gz", &t, true), TG_ERR_FORMAT,
              "truncated: header says 40 bytes, file has 35 uncompressed");
    t.len = 10;
    idx_fails(write_file("trunc-header", &t, false), TG_ERR_FORMAT,
              "truncated: a 3-dimensional header needs 16 bytes, file has 10");
    t.len = 2;
    idx_fails(write_file("trunc-magic", &t, false), TG_ERR_FORMAT, "truncated: 2 bytes, too short for an idx header");
    t.len = 0;
    idx_fails(write_file("empty", &t, false), TG_ERR_FORMAT, "truncated: 0 bytes");

    /* a gzip stream cut short */
    const char *gz = write_file("cut.gz", &f, true);
    FILE *o = fopen(gz, "rb");
    unsigned char raw[256];
    size_t n = fread(raw, 1, sizeof raw, o);
    fclose(o);
    o = fopen(gz, "wb");
    fwrite(raw, 1, n - 12, o);
    fclose(o);
    idx_fails(gz, TG_ERR_FORMAT, "truncated gzip data");

    t = f;
    t.b[0] = 1;
    idx_fails(write_file("magic", &t, false), TG_ERR_FORMAT, "bad magic 01 00 08 03, not an idx file");
    t = f;
    t.b[2] = 0x0d;
    idx_fails(write_file("type", &t, true), TG_ERR_FORMAT, "type byte 0x0d, only 0x08 (unsigned byte) is supported");
    t = f;
    t.b[3] = 0;
    idx_fails(write_file("ndim0", &t, false), TG_ERR_FORMAT, "0 dimensions, 1 to 4 are supported");
    t.b[3] = 5;
    idx_fails(write_file("ndim5", &t, false), TG_ERR_FORMAT, "5 dimensions, 1 to 4 are supported");

    /* absurd: refused from the header, before any allocation */
    bytes a = idx(3, (uint32_t[]){60000, 60000, 60000}, 0);
    idx_fails(write_file("absurd", &a, false), TG_ERR_FORMAT,
              "shape 60000x60000x60000 is more than the 1073741824 bytes an idx file may hold");
    a.b[4] = a.b[5] = a.b[6] = a.b[7] = 0xff;
    idx_fails(write_file("absurd2", &a, true), TG_ERR_FORMAT, "shape 4294967295x60000x60000 is more than");
    /* big but allowed (2^30 bytes): a tiny file claiming it is truncated, and only a small buffer was made */
    bytes c = idx(3, (uint32_t[]){16384, 16384, 4}, 0);
    const char *claims = write_file("claims-1g.gz", &c, true);
    struct stat st;
    CHECK(stat(claims, &st) == 0);
    char want[256];
    snprintf(want, sizeof want,
             "truncated: header says 1073741840 bytes, more than a gzip file of %lld bytes can hold (1032:1 at most)",
             (long long)st.st_size);
    idx_fails(claims, TG_ERR_FORMAT, want);

    t = idx(3, (uint32_t[]){2, 0, 4}, 0);
    idx_fails(write_file("zero", &t, false), TG_ERR_FORMAT, "dimension 1 is 0");

    t = f;
    t.b[t.len++] = 9, t.b[t.len++] = 9, t.b[t.len++] = 9;
    idx_fails(write_file("trailing", &t, false), TG_ERR_FORMAT, "trailing bytes: header says 40 bytes, file has 43");
    idx_fails(write_file("trailing.gz", &t, true), TG_ERR_FORMAT,
              "trailing bytes: header says 40 bytes, file has more uncompressed");

    idx_fails(path_of("no-such-file"), TG_ERR_IO, "cannot open: No such file or directory");
    clean_dir();
}

/* Not regular files: refused before anything is read, and a FIFO without a writer never hangs. */
static void idx_not_files(void) {
    const char *fifo = path_of("fifo-idx3-ubyte");
    CHECK(mkfifo(fifo, 0600) == 0);
    idx_fails(fifo, TG_ERR_IO, "not a regular file (a FIFO)");
    idx_fails("/dev/null", TG_ERR_IO, "not a regular file (a character device)");
    idx_fails(dir, TG_ERR_IO, "not a regular file (a directory)");
    /* through a symbolic link: what it leads to counts */
    const char *link = path_of("link-idx3-ubyte");
    CHECK(symlink("/dev/null", link) == 0);
    idx_fails(link, TG_ERR_IO, "not a regular file (a character device)");

    /* a dataset whose images or labels file is a FIFO */
    bytes lb = idx(1, (uint32_t[]){2}, 0), im = idx(3, (uint32_t[]){2, 3, 2}, 0);
    CHECK(mkfifo(path_of("pipe-images-idx3-ubyte"), 0600) == 0);
    write_file("pipe-labels-idx1-ubyte", &lb, false);
    CHECK(tg_dataset_new(dir, "pipe", 0, TG_MNIST_MEAN, TG_MNIST_STD) == NULL);
    CHECK_INT(tg_last_error_code(), TG_ERR_IO);
    char want[512];
    snprintf(want, sizeof want, "idx %s/pipe-images-idx3-ubyte: not a regular file (a FIFO)", dir);
    CHECK_MSG(tg_last_error(), want);
    write_file("pipe2-images-idx3-ubyte", &im, false);
    CHECK(mkfifo(path_of("pipe2-labels-idx1-ubyte.gz"), 0600) == 0);
    CHECK(tg_dataset_new(dir, "pipe2", 0, TG_MNIST_MEAN, TG_MNIST_STD) == NULL);
    snprintf(want, sizeof want, "idx %s/pipe2-labels-idx1-ubyte.gz: not a regular file (a FIFO)", dir);
    CHECK_MSG(tg_last_error(), want);
    CHECK(mkdir(path_of("dir-images-idx3-ubyte"), 0700) == 0);
    write_file("dir-labels-idx1-ubyte", &lb, false);
    CHECK(tg_dataset_new(dir, "dir", 0, TG_MNIST_MEAN, TG_MNIST_STD) == NULL);
    snprintf(want, sizeof want, "idx %s/dir-images-idx3-ubyte: not a regular file (a directory)", dir);
    CHECK_MSG(tg_last_error(), want);
    clean_dir();
}

/* Files whose size cannot be what the header says are refused from their size, unread. */
static void idx_sizes(void) {
    /* plain, sparse: 1 GiB promised, half of it there, or one byte more; nothing of the data is read */
    bytes c = idx(3, (uint32_t[]){16384, 16384, 4}, 0); /* 16 + 2^30 bytes */
    const char *p = write_file("sparse", &c, false);
    int fd = open(p, O_WRONLY);
    CHECK(fd >= 0);
    long long r0 = bytes_read();
    if (fd >= 0 && ftruncate(fd, ((off_t)1 << 29) + 16) == 0) {
        idx_fails(p, TG_ERR_FORMAT, "truncated: header says 1073741840 bytes, file has 536870928");
        CHECK(ftruncate(fd, ((off_t)1 << 30) + 17) == 0);
        idx_fails(p, TG_ERR_FORMAT, "trailing bytes: header says 1073741840 bytes, file has 1073741841");
        long long r1 = bytes_read();
        if (r0 >= 0 && r1 >= 0) {
            printf("sparse plain idx files: %lld bytes read to refuse them\n", r1 - r0);
            CHECK(r1 - r0 < 1 << 20);
        }
    } else {
        printf("cannot make a sparse file here: skipped\n");
    }
    if (fd >= 0) close(fd);

    /* a gzip bomb: a header promising 1000 bytes, then 50 MB of zeros; refused after 1001 */
    const char *bomb = path_of("bomb.gz");
    gzFile g = gzopen(bomb, "wb9");
    CHECK(g != NULL);
    unsigned char h[8] = {0, 0, 8, 1, 0, 0, 0x03, 0xe8};
    CHECK(gzwrite(g, h, 8) == 8);
    static unsigned char zeros[1 << 20];
    for (int i = 0; i < 50; i++) CHECK(gzwrite(g, zeros, sizeof zeros) == (int)sizeof zeros);
    gzclose(g);
    struct stat st;
    CHECK(stat(bomb, &st) == 0);
    r0 = bytes_read();
    double t0 = cpu_seconds();
    idx_fails(bomb, TG_ERR_FORMAT, "trailing bytes: header says 1008 bytes, file has more uncompressed");
    double t = cpu_seconds() - t0;
    long long r1 = bytes_read();
    printf("gzip bomb (%lld bytes compressed, 50 MB and 8 bytes inside): refused in %.3f s of CPU, %lld bytes read\n",
           (long long)st.st_size, t, r1 - r0);
    CHECK(t < 1.0); /* a millisecond or so; decompressing all would take tens */
    if (r0 >= 0 && r1 >= 0) CHECK(r1 - r0 < st.st_size / 2);
    /* the same with the header's promise kept and nothing after: loads */
    g = gzopen(bomb, "wb");
    CHECK(gzwrite(g, h, 8) == 8 && gzwrite(g, zeros, 1000) == 1000);
    gzclose(g);
    tg_idx x;
    CHECK_INT(tg_idx_load(&x, bomb), 0);
    CHECK_INT(x.size, 1000);
    tg_idx_release(&x);
    clean_dir();
}

// ----------------------------------------------------------------------------
// datasets

static void write_set(const char *split, int n, int n_labels, bool gz) {
    char name[64];
    bytes im = idx(3, (uint32_t[]){(uint32_t)n, 3, 2}, 0);
    snprintf(name, sizeof name, "%s-images-idx3-ubyte%s", split, gz ? ".gz" : "");
    write_file(name, &im, gz);
    bytes lb = idx(1, (uint32_t[]){(uint32_t)n_labels}, 3);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte%s", split, gz ? ".gz" : "");
    write_file(name, &lb, gz);
}

static double norm(int v) { return ((double)v / 255.0 - 0.1307) / 0.3081; }

static void datasets(void) {
    write_set("train", 5, 5, false);
    write_set("t10k", 4, 4, true);
    for (int k = 0; k < 2; k++) {
        tg_dataset *ds = tg_dataset_new(dir, k ? "t10k" : "train", 0, TG_MNIST_MEAN, TG_MNIST_STD);
        CHECK(ds != NULL);
        if (!ds) continue;
        CHECK_INT(ds->n, k ? 4 : 5);
        CHECK_INT(ds->h, 3);
        CHECK_INT(ds->w, 2);
        for (int i = 0; i < ds->n * 6; i++) CHECK_NEAR(ds->value[ds->pixels[i]], norm(i * 7 % 256), 1e-6);
        for (int i = 0; i < ds->n; i++) CHECK_INT(ds->labels[i], 3 + 7 * i);
        CHECK_INT(ds->classes, 3 + 7 * (ds->n - 1) + 1);
        CHECK_NEAR(ds->mean, 0.1307, 1e-7);
        tg_dataset_free(ds);
    }
    /* the extremes, by hand: 0 -> -0.1307/0.3081, 255 -> 0.8693/0.3081 */
    bytes im = idx(3, (uint32_t[]){1, 1, 2}, 0), lb = idx(1, (uint32_t[]){1}, 255);
    im.b[16] = 0, im.b[17] = 255;
    write_file("x-images-idx3-ubyte", &im, false);
    write_file("x-labels-idx1-ubyte", &lb, false);
    tg_dataset *ds = tg_dataset_new(dir, "x", 0, TG_MNIST_MEAN, TG_MNIST_STD);
    CHECK(ds && fabsf(ds->value[ds->pixels[0]] - -0.42421292f) < 1e-6f && fabsf(ds->value[ds->pixels[1]] - 2.8214867f) < 1e-6f);
    CHECK(ds && ds->labels[0] == 255 && ds->classes == 256);
    tg_dataset_free(ds);
    ds = tg_dataset_new(dir, "x", 0, 0.5f, 0.5f);
    CHECK(ds && ds->value[ds->pixels[0]] == -1.0f && ds->value[ds->pixels[1]] == 1.0f);
    tg_dataset_free(ds);

    /* limit */
    ds = tg_dataset_new(dir, "train", 3, TG_MNIST_MEAN, TG_MNIST_STD);
    CHECK(ds && ds->n == 3 && ds->labels[2] == 17);
    tg_dataset_free(ds);
    ds = tg_dataset_new(dir, "train", 100, TG_MNIST_MEAN, TG_MNIST_STD);
    CHECK(ds && ds->n == 5);
    tg_dataset_free(ds);

    /* errors */
    char want[512];
    write_set("odd", 5, 4, false);
    CHECK(tg_dataset_new(dir, "odd", 0, TG_MNIST_MEAN, TG_MNIST_STD) == NULL);
    CHECK_INT(tg_last_error_code(), TG_ERR_FORMAT);
    snprintf(want, sizeof want, "%s/odd-images-idx3-ubyte has 5 images but %s/odd-labels-idx1-ubyte has 4 labels",
             dir, dir);
    CHECK_MSG(tg_last_error(), want);
    CHECK(tg_dataset_new(dir, "test", 0, TG_MNIST_MEAN, TG_MNIST_STD) == NULL);
    CHECK_INT(tg_last_error_code(), TG_ERR_IO);
    snprintf(want, sizeof want,
             "dataset %s: neither test-images-idx3-ubyte nor test-images-idx3-ubyte.gz is there: No such file", dir);
    CHECK_MSG(tg_last_error(), want);
    bytes three = idx(1, (uint32_t[]){3}, 0);
    write_file("flat-images-idx3-ubyte", &three, false);
    write_file("flat-labels-idx1-ubyte", &three, false);
    CHECK(tg_dataset_new(dir, "flat", 0, TG_MNIST_MEAN, TG_MNIST_STD) == NULL);
    CHECK_MSG(tg_last_error(), "flat-images-idx3-ubyte: has 1 dimensions, images need 3 (N,H,W)");
    /* a broken labels file is named as such */
    write_file("broken-images-idx3-ubyte", &im, false);
    bytes bad = lb;
    bad.len--;
    write_file("broken-labels-idx1-ubyte.gz", &bad, true);
    CHECK(tg_dataset_new(dir, "broken", 0, TG_MNIST_MEAN, TG_MNIST_STD) == NULL);
    CHECK_MSG(tg_last_error(), "broken-labels-idx1-ubyte.gz: truncated: header says 9 bytes, file has 8");
    CHECK(tg_dataset_new(dir, "train", -1, TG_MNIST_MEAN, TG_MNIST_STD) == NULL);
    CHECK_MSG(tg_last_error(), "limit is -1");
    CHECK(tg_dataset_new(dir, "train", 0, TG_MNIST_MEAN, 0) == NULL);
    CHECK_MSG(tg_last_error(), "std is 0, must be positive and finite");
    CHECK(tg_dataset_new(NULL, "train", 0, TG_MNIST_MEAN, TG_MNIST_STD) == NULL);
    CHECK_MSG(tg_last_error(), "dataset_new: dir is NULL or empty");
    tg_dataset_free(NULL);
    clean_dir();
}

// ----------------------------------------------------------------------------
// permutations and batches

static void shuffling(void) {
    enum { N = 1000 };
    static int a[N], b[N], c[N];
    CHECK_INT(tg_permutation(a, N, 42), 0);
    CHECK_INT(tg_permutation(b, N, 42), 0);
    CHECK_INT(tg_permutation(c, N, 43), 0);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);
    static int seen[N];
    int moved = 0;
    for (int i = 0; i < N; i++) {
        CHECK(a[i] >= 0 && a[i] < N);
        if (a[i] >= 0 && a[i] < N) seen[a[i]]++;
        moved += a[i] != i;
    }
    for (int i = 0; i < N; i++) CHECK_INT(seen[i], 1);
    CHECK(moved > N * 9 / 10);
    /* the same on every machine: pinned */
    int p[10];
    tg_permutation(p, 10, 1);
    const int want[10] = {4, 2, 8, 1, 9, 3, 0, 6, 7, 5};
    for (int i = 0; i < 10; i++) CHECK_INT(p[i], want[i]);
    CHECK_INT(tg_permutation(p, 0, 1), 0);
    CHECK_INT(tg_permutation(p, 1, 1), 0);
    CHECK_INT(p[0], 0);
    CHECK_INT(tg_permutation(NULL, 3, 1), TG_ERR_ARG);
    CHECK_INT(tg_permutation(p, -1, 1), TG_ERR_ARG);
}

static void batches(void) {
    write_set("train", 5, 5, false);
    tg_dataset *ds = tg_dataset_new(dir, "train", 0, TG_MNIST_MEAN, TG_MNIST_STD);
    CHECK(ds != NULL);
    if (!ds) return;
    int perm[5];
    tg_permutation(perm, 5, 7);
    tg_tape *t = tg_tape_new();
    int32_t labels[2];
    int seen = 0;
    for (int start = 0; start < ds->n; start += 2) {
        int b = ds->n - start < 2 ? ds->n - start : 2;
        tg_tensor *x = tg_tensor_tape(t, 4, (int[]){b, 1, 3, 2});
        CHECK_INT(tg_dataset_batch(ds, perm, start, x, labels), b);
        for (int i = 0; i < b; i++) {
            int k = perm[start + i];
            for (int j = 0; j < 6; j++) CHECK(x->data[6 * i + j] == ds->value[ds->pixels[6 * k + j]]);
            CHECK_INT(labels[i], ds->labels[k]);
        }
        seen += b;
        tg_tape_reset(t);
    }
    CHECK_INT(seen, 5);
    /* the last batch is short: a full-size tensor is refused, untouched, with what to do */
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){2, 1, 3, 2});
    for (int j = 0; j < 12; j++) x->data[j] = 123;
    labels[0] = labels[1] = -1;
    CHECK_INT(tg_dataset_batch(ds, NULL, 4, x, labels), TG_ERR_SHAPE);
    CHECK_MSG(tg_last_error(),
              "dataset_batch: x holds 2 samples but only 1 are left from start 4: make the last batch's x 1 long");
    bool kept = labels[0] == -1 && labels[1] == -1;
    for (int j = 0; j < 12; j++) kept &= x->data[j] == 123;
    CHECK(kept);
    CHECK_INT(tg_dataset_batch(ds, perm, 3, x, labels), 2); /* two left from 3: fits */
    tg_tensor *big = tg_tensor_tape(t, 4, (int[]){6, 1, 3, 2});
    CHECK_INT(tg_dataset_batch(ds, NULL, 0, big, NULL), TG_ERR_SHAPE);
    CHECK_MSG(tg_last_error(), "x holds 6 samples but only 5 are left from start 0: make the last batch's x 5 long");
    /* errors */
    CHECK_INT(tg_dataset_batch(ds, NULL, 5, x, NULL), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "dataset_batch: start 5 is outside [0, 5)");
    tg_tensor *wrong = tg_tensor_tape(t, 4, (int[]){2, 1, 3, 3});
    CHECK_INT(tg_dataset_batch(ds, perm, 0, wrong, labels), TG_ERR_SHAPE);
    CHECK_MSG(tg_last_error(), "dataset_batch: x is 2x1x3x3, needs (B,1,3,2)");
    int bad[5] = {0, 9, 1, 2, 3};
    for (int j = 0; j < 12; j++) x->data[j] = 123;
    CHECK_INT(tg_dataset_batch(ds, bad, 0, x, labels), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "perm[1] is 9, outside [0, 5)");
    CHECK(x->data[0] == 123); /* checked before x changes */
    CHECK_INT(tg_dataset_batch(NULL, perm, 0, x, labels), TG_ERR_ARG);
    tg_tape_free(t);
    tg_dataset_free(ds);
    clean_dir();
}

// ----------------------------------------------------------------------------
// augmented batches

/* A dataset made in memory, n images h x w, bytes from fill (NULL: zeros), value[] as tg_dataset_new fills it. */
static tg_dataset *hand_set(int n, int h, int w, float mean, float std, uint8_t (*fill)(int i, int j)) {
    tg_dataset *ds = calloc(1, sizeof *ds);
    ds->n = n, ds->h = h, ds->w = w, ds->mean = mean, ds->std = std, ds->classes = 10;
    ds->pixels = calloc((size_t)n * h * w, 1);
    ds->labels = calloc((size_t)n, sizeof *ds->labels);
    for (int i = 0; i < n; i++) {
        ds->labels[i] = i % 10;
        for (int j = 0; fill && j < h * w; j++) ds->pixels[(size_t)i * h * w + j] = fill(i, j);
    }
    for (int v = 0; v < 256; v++) ds->value[v] = ((float)v / 255.0f - mean) / std;
    return ds;
}

/* bytes that change from pixel to pixel and image to image, 0 and 255 included */
static uint8_t mixed(int i, int j) { return (uint8_t)(j % 5 == 0 ? 0 : j % 7 == 0 ? 255 : (i * 31 + j * 13) % 256); }

static bool same_floats(const tg_tensor *a, const tg_tensor *b) {
    return a->size == b->size && memcmp(a->data, b->data, (size_t)a->size * sizeof(float)) == 0;
}

/* A zero distortion, or none, gives tg_dataset_batch's floats bit for bit. */
static void augment_identity(void) {
    write_set("train", 5, 5, false);
    tg_dataset *files = tg_dataset_new(dir, "train", 0, TG_MNIST_MEAN, TG_MNIST_STD);
    tg_dataset *hand = hand_set(6, 28, 28, 0.2860f, 0.3530f, mixed);
    CHECK(files != NULL);
    tg_dataset *sets[2] = {files, hand};
    tg_tape *t = tg_tape_new();
    for (int d = 0; d < 2 && files; d++) {
        tg_dataset *ds = sets[d];
        int perm[6];
        tg_permutation(perm, ds->n, 11);
        int b = ds->n - 1;
        tg_tensor *plain = tg_tensor_tape(t, 4, (int[]){b, 1, ds->h, ds->w});
        tg_tensor *zero = tg_tensor_tape(t, 4, (int[]){b, 1, ds->h, ds->w});
        tg_tensor *none = tg_tensor_tape(t, 4, (int[]){b, 1, ds->h, ds->w});
        int32_t lp[6], lz[6], ln[6];
        CHECK_INT(tg_dataset_batch(ds, perm, 1, plain, lp), b);
        CHECK_INT(tg_dataset_batch_augment(ds, perm, 1, zero, lz, &(tg_augment){0, 0, 0}, 99), b);
        CHECK_INT(tg_dataset_batch_augment(ds, perm, 1, none, ln, NULL, 99), b);
        CHECK(same_floats(plain, zero));
        CHECK(same_floats(plain, none));
        CHECK(memcmp(lp, lz, (size_t)b * sizeof *lp) == 0 && memcmp(lp, ln, (size_t)b * sizeof *lp) == 0);
        tg_tape_reset(t);
    }
    tg_tape_free(t);
    tg_dataset_free(files);
    tg_dataset_free(hand);
    clean_dir();
}

/* The geometry, on one bright pixel at the centre of a 7x7 field. A pure shift by t moves its
 * mass, whole (bilinear weights sum to 1), to a centre of mass at exactly centre + t, |t| <= shift
 * on each axis, and spreads it over at most a 2x2 block. A pure rotation about the centre leaves
 * the centre pixel where it is. */
static uint8_t dot(int i, int j) {
    (void)i;
    return j == 3 * 7 + 3 ? 255 : 0;
}

static void augment_geometry(void) {
    enum { N = 200 };
    const float mean = 0.1307f, std = 0.3081f;
    tg_dataset *ds = hand_set(N, 7, 7, mean, std, dot);
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){N, 1, 7, 7});
    CHECK_INT(tg_dataset_batch_augment(ds, NULL, 0, x, NULL, &(tg_augment){0, 0, 1.5f}, 5), N);
    double lo[2] = {9, 9}, hi[2] = {-9, -9};
    bool spread_ok = true;
    for (int i = 0; i < N; i++) {
        double mass = 0, mx = 0, my = 0;
        int lit = 0, x0 = 99, y0 = 99, x1 = -1, y1 = -1;
        for (int j = 0; j < 49; j++) {
            double level = ((double)x->data[49 * i + j] * std + mean) * 255; /* back to bytes */
            if (fabs(level) < 1e-3) continue;
            int px = j % 7, py = j / 7;
            mass += level, mx += level * px, my += level * py, lit++;
            x0 = px < x0 ? px : x0, x1 = px > x1 ? px : x1, y0 = py < y0 ? py : y0, y1 = py > y1 ? py : y1;
        }
        CHECK_NEAR(mass, 255, 1e-2);
        double tx = mx / mass - 3, ty = my / mass - 3;
        CHECK(fabs(tx) <= 1.5 + 1e-4 && fabs(ty) <= 1.5 + 1e-4);
        spread_ok &= lit >= 1 && x1 - x0 <= 1 && y1 - y0 <= 1;
        lo[0] = tx < lo[0] ? tx : lo[0], hi[0] = tx > hi[0] ? tx : hi[0];
        lo[1] = ty < lo[1] ? ty : lo[1], hi[1] = ty > hi[1] ? ty : hi[1];
    }
    CHECK(spread_ok);
    /* the shifts cover their range, both ways, on both axes (200 uniform draws each) */
    for (int a = 0; a < 2; a++) CHECK(lo[a] < -1.3 && hi[a] > 1.3);

    /* rotation alone, up to half a turn: the centre is fixed, and so is the dot's byte there */
    CHECK_INT(tg_dataset_batch_augment(ds, NULL, 0, x, NULL, &(tg_augment){180, 0, 0}, 6), N);
    bool centre = true, turned = false;
    for (int i = 0; i < N; i++) {
        centre &= x->data[49 * i + 24] == ds->value[255];
        turned |= x->data[49 * i + 25] != ds->value[0];
    }
    CHECK(centre);
    CHECK(turned); /* yet the pixels around it did change */
    tg_tape_free(t);
    tg_dataset_free(ds);
}

/* The same seed, the same batch; another seed, another; any batch size, any thread count. */
static void augment_determinism(void) {
    enum { N = 16 };
    tg_dataset *ds = hand_set(N, 28, 28, TG_MNIST_MEAN, TG_MNIST_STD, mixed);
    tg_augment aug = {15, 0.1f, 2};
    int perm[N];
    tg_permutation(perm, N, 3);
    tg_tape *t = tg_tape_new();
    tg_tensor *a = tg_tensor_tape(t, 4, (int[]){4, 1, 28, 28}), *b = tg_tensor_tape(t, 4, (int[]){4, 1, 28, 28});
    tg_tensor *c = tg_tensor_tape(t, 4, (int[]){4, 1, 28, 28});
    int32_t la[4], lc[4];
    CHECK_INT(tg_dataset_batch_augment(ds, perm, 0, a, la, &aug, 42), 4);
    CHECK_INT(tg_dataset_batch_augment(ds, perm, 0, b, NULL, &aug, 42), 4);
    CHECK_INT(tg_dataset_batch_augment(ds, perm, 0, c, lc, &aug, 43), 4);
    CHECK(same_floats(a, b));
    CHECK(!same_floats(a, c));
    for (int i = 0; i < 4; i++) CHECK_INT(la[i], ds->labels[perm[i]]);
    CHECK(memcmp(la, lc, sizeof la) == 0); /* labels do not move */
    tg_tensor *plain = tg_tensor_tape(t, 4, (int[]){4, 1, 28, 28});
    tg_dataset_batch(ds, perm, 0, plain, NULL);
    for (int i = 0; i < 4; i++) /* every image distorted */
        CHECK(memcmp(a->data + 784 * i, plain->data + 784 * i, 784 * sizeof(float)) != 0);

    /* a batch of 4 is two batches of 2 */
    tg_tensor *h0 = tg_tensor_tape(t, 4, (int[]){2, 1, 28, 28}), *h1 = tg_tensor_tape(t, 4, (int[]){2, 1, 28, 28});
    CHECK_INT(tg_dataset_batch_augment(ds, perm, 0, h0, NULL, &aug, 42), 2);
    CHECK_INT(tg_dataset_batch_augment(ds, perm, 2, h1, NULL, &aug, 42), 2);
    CHECK(memcmp(h0->data, a->data, 2 * 784 * sizeof(float)) == 0);
    CHECK(memcmp(h1->data, a->data + 2 * 784, 2 * 784 * sizeof(float)) == 0);

    /* one thread or two (16 images of 784 pixels are enough to split) */
    tg_tensor *one = tg_tensor_tape(t, 4, (int[]){N, 1, 28, 28}), *two = tg_tensor_tape(t, 4, (int[]){N, 1, 28, 28});
    tg_set_threads(1);
    CHECK_INT(tg_dataset_batch_augment(ds, perm, 0, one, NULL, &aug, 7), N);
    tg_set_threads(2);
    CHECK_INT(tg_dataset_batch_augment(ds, perm, 0, two, NULL, &aug, 7), N);
    tg_set_threads(0);
    CHECK(same_floats(one, two));
    CHECK(memcmp(one->data, a->data, 784 * sizeof(float)) != 0); /* seed 7 is not seed 42 */
    tg_tape_free(t);
    tg_dataset_free(ds);
}

/* The most a distortion can do keeps every value within [value[0], value[255]]. */
static void augment_range(void) {
    enum { N = 32 };
    tg_dataset *ds = hand_set(N, 28, 28, 0.5f, 0.25f, mixed);
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){N, 1, 28, 28});
    tg_augment most[] = {{180, 0, 0}, {180, 0.99f, 27.9f}, {90, 0.5f, 5}};
    for (int k = 0; k < 3; k++) {
        CHECK_INT(tg_dataset_batch_augment(ds, NULL, 0, x, NULL, &most[k], (uint64_t)k), N);
        bool inside = true;
        for (int64_t j = 0; j < x->size; j++) inside &= x->data[j] >= ds->value[0] && x->data[j] <= ds->value[255];
        CHECK(inside);
    }
    tg_tape_free(t);
    tg_dataset_free(ds);
}

/* Bad distortions are refused, x and labels untouched. */
static void augment_bad(void) {
    tg_dataset *ds = hand_set(3, 4, 5, TG_MNIST_MEAN, TG_MNIST_STD, mixed);
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){2, 1, 4, 5});
    struct {
        tg_augment aug;
        const char *msg;
    } bad[] = {
        {{-1, 0, 0}, "dataset_batch: aug degrees -1, scale 0, shift 0: needs degrees in [0, 180], scale in [0, 1), "
                     "shift in [0, 5) (the width), all finite"},
        {{180.5f, 0, 0}, "aug degrees 180.5,"},
        {{NAN, 0, 0}, "aug degrees nan,"},
        {{INFINITY, 0, 0}, "aug degrees inf,"},
        {{0, -0.1f, 0}, "scale -0.1,"},
        {{0, 1, 0}, "scale 1,"},
        {{0, NAN, 0}, "scale nan,"},
        {{0, 0, -1}, "shift -1:"},
        {{0, 0, 5}, "shift 5:"},
        {{0, 0, INFINITY}, "shift inf:"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        for (int j = 0; j < 40; j++) x->data[j] = 123;
        int32_t labels[2] = {-1, -1};
        CHECK_INT(tg_dataset_batch_augment(ds, NULL, 0, x, labels, &bad[k].aug, 1), TG_ERR_ARG);
        CHECK_MSG(tg_last_error(), bad[k].msg);
        bool kept = labels[0] == -1 && labels[1] == -1;
        for (int j = 0; j < 40; j++) kept &= x->data[j] == 123;
        CHECK(kept);
    }
    /* the edges of the ranges are fine */
    CHECK_INT(tg_dataset_batch_augment(ds, NULL, 0, x, NULL, &(tg_augment){180, 0.999f, 4.99f}, 1), 2);
    /* tg_dataset_batch's own checks come first, with its messages */
    CHECK_INT(tg_dataset_batch_augment(ds, NULL, 3, x, NULL, &(tg_augment){1, 0, 0}, 1), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "dataset_batch: start 3 is outside [0, 3)");
    CHECK_INT(tg_dataset_batch_augment(ds, NULL, 2, x, NULL, &(tg_augment){1, 0, 0}, 1), TG_ERR_SHAPE);
    CHECK_MSG(tg_last_error(), "dataset_batch: x holds 2 samples but only 1 are left from start 2");
    CHECK_INT(tg_dataset_batch_augment(NULL, NULL, 0, x, NULL, &(tg_augment){1, 0, 0}, 1), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "dataset_batch: dataset is NULL");
    CHECK_INT(tg_dataset_batch_augment(ds, NULL, 0, NULL, NULL, NULL, 1), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "dataset_batch: x is NULL");
    tg_tape_free(t);
    tg_dataset_free(ds);
}

// ----------------------------------------------------------------------------
// by hand: real data sets

static int real(int argc, char **argv) {
    int status = 0;
    for (int a = 1; a < argc; a++)
        for (int k = 0; k < 2; k++) {
            const char *split = k ? "t10k" : "train";
            tg_dataset *ds = tg_dataset_new(argv[a], split, 0, TG_MNIST_MEAN, TG_MNIST_STD);
            if (!ds) {
                fprintf(stderr, "%s\n", tg_last_error());
                status = 1;
                continue;
            }
            double sum = 0, sq = 0;
            int64_t m = (int64_t)ds->n * ds->h * ds->w;
            for (int64_t i = 0; i < m; i++) sum += ds->value[ds->pixels[i]], sq += (double)ds->value[ds->pixels[i]] * ds->value[ds->pixels[i]];
            int count[256] = {0};
            for (int i = 0; i < ds->n; i++) count[ds->labels[i]]++;
            printf("%s %s: %d images %dx%d, %d classes, normalised mean %.4f std %.4f, labels", argv[a], split,
                   ds->n, ds->h, ds->w, ds->classes, sum / m, sqrt(sq / m - (sum / m) * (sum / m)));
            for (int c = 0; c < ds->classes; c++) printf(" %d", count[c]);
            printf("\n");
            tg_dataset_free(ds);
        }
    return status;
}

int main(int argc, char **argv) {
    if (argc > 1) return real(argc, argv);
    alarm(60); /* a loader that blocks (on a FIFO) fails the test instead of hanging it */
    snprintf(dir, sizeof dir, "%s", "/tmp/tapegrad-data-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    idx_good();
    idx_bad();
    idx_not_files();
    idx_sizes();
    datasets();
    shuffling();
    batches();
    augment_identity();
    augment_geometry();
    augment_determinism();
    augment_range();
    augment_bad();
    clean_dir();
    CHECK(rmdir(dir) == 0);
    CHECK_DONE();
}
