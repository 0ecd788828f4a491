/* test_checkpoint.c: checkpoints round-trip bit for bit; every damaged file
 * and every mismatched model is refused with its message and changes nothing;
 * a failed save leaves the old file as it was and no temporary behind. */
#include "check.h"
#include "internal.h" /* tg__alloc_count */
#include "tapegrad_nn.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

static char dir[64];

static const char *path_of(const char *name) {
    static char p[4][400];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static int count_files(void) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    if (d) closedir(d);
    return n;
}

static void clean_dir(void) {
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            const char *p = path_of(e->d_name);
            if (unlink(p) < 0) rmdir(p);
        }
    if (d) closedir(d);
}

static bool exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

static tg_tensor *tensor(const char *name, int ndim, const int *shape, float seed) {
    tg_tensor *x = tg_tensor_new(ndim, shape);
    tg_tensor_set_name(x, name);
    for (int64_t i = 0; i < x->size; i++) x->data[i] = seed + 0.25f * (float)i - 1e-3f * (float)(i * i);
    return x;
}

/* the model: tensor 3 is conv1.weight 16x1x3x3 */
enum { N_MODEL = 4 };
static void model(tg_tensor **m, float seed) {
    m[0] = tensor("step", 0, NULL, seed);
    m[1] = tensor("fc.weight", 2, (int[]){3, 5}, seed);
    m[2] = tensor("fc.bias", 1, (int[]){3}, seed);
    m[3] = tensor("conv1.weight", 4, (int[]){16, 1, 3, 3}, seed);
}

static void model_free(tg_tensor **m, int n) {
    for (int i = 0; i < n; i++) tg_tensor_free(m[i]);
}

static bool same_data(tg_tensor *const *a, tg_tensor *const *b, int n) {
    for (int i = 0; i < n; i++)
        if (a[i]->size != b[i]->size || memcmp(a[i]->data, b[i]->data, (size_t)a[i]->size * sizeof(float)))
            return false;
    return true;
}

// ----------------------------------------------------------------------------
// files as bytes

typedef struct {
    unsigned char *b;
    size_t len;
} bytes;

static bytes slurp(const char *path) {
    bytes f = {0};
    FILE *in = fopen(path, "rb");
    CHECK(in != NULL);
    if (!in) return f;
    fseek(in, 0, SEEK_END);
    f.len = (size_t)ftell(in);
    rewind(in);
    f.b = malloc(f.len + 16);
    CHECK(fread(f.b, 1, f.len, in) == f.len);
    fclose(in);
    return f;
}

static const char *spit(const char *name, const unsigned char *b, size_t len) {
    const char *p = path_of(name);
    FILE *o = fopen(p, "wb");
    CHECK(o && fwrite(b, 1, len, o) == len);
    if (o) fclose(o);
    return p;
}

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* where record i starts */
static size_t record(const bytes *f, int i) {
    size_t o = 24;
    while (i-- > 0) {
        uint32_t L = le32(f->b + o);
        uint32_t nd = le32(f->b + o + 4 + L);
        size_t c = 1;
        for (uint32_t d = 0; d < nd; d++) c *= le32(f->b + o + 8 + L + 4 * d);
        o += 8 + L + 4 * nd + 4 * c;
    }
    return o;
}

/* a damaged file that is otherwise consistent: size field and checksum made right */
static const char *spit_fixed(const char *name, bytes *f) {
    for (int i = 0; i < 8; i++) f->b[16 + i] = (unsigned char)((uint64_t)f->len >> (8 * i));
    put_le32(f->b + f->len - 4, (uint32_t)crc32(0, f->b, (uInt)(f->len - 4)));
    return spit(name, f->b, f->len);
}

/* Loading fails with code and "checkpoint <path>: <sub>", and the tensors keep their values. */
static void load_fails(const char *path, tg_tensor **m, int n, int code, const char *sub) {
    tg_tensor *before[8];
    for (int i = 0; i < n; i++) {
        before[i] = tg_tensor_new(m[i]->ndim, m[i]->shape);
        memcpy(before[i]->data, m[i]->data, (size_t)m[i]->size * sizeof(float));
    }
    char want[1024];
    snprintf(want, sizeof want, "checkpoint %s: %s", path, sub);
    uint64_t allocs = tg__alloc_count();
    tg_clear_error();
    CHECK_INT(tg_checkpoint_load(path, m, n), code);
    CHECK_INT(tg_last_error_code(), code);
    CHECK_MSG(tg_last_error(), want);
    CHECK(same_data(m, before, n));
    CHECK(tg__alloc_count() - allocs <= 1); /* a staging buffer the model's size, at most */
    model_free(before, n);
}

// ----------------------------------------------------------------------------

static void round_trip(void) {
    tg_tensor *a[N_MODEL], *b[N_MODEL];
    model(a, 1.5f);
    model(b, -7.0f);
    /* bit patterns that must survive: -0, inf, nan, a denormal */
    a[3]->data[0] = -0.0f;
    a[3]->data[1] = INFINITY;
    a[3]->data[2] = NAN;
    a[3]->data[3] = 1e-41f;
    char p[400];
    snprintf(p, sizeof p, "%s", path_of("model.ckpt"));
    CHECK_INT(tg_checkpoint_save(p, a, N_MODEL), 0);
    CHECK_INT(count_files(), 1); /* no temporary left */
    CHECK(!same_data(a, b, N_MODEL));
    CHECK_INT(tg_checkpoint_load(p, b, N_MODEL), 0);
    CHECK(same_data(a, b, N_MODEL));

    bytes f = slurp(p);
    CHECK(f.len == 24 + (4 + 4 + 4 + 4) + (4 + 9 + 4 + 8 + 60) + (4 + 7 + 4 + 4 + 12) + (4 + 12 + 4 + 16 + 576) + 4);
    CHECK(memcmp(f.b, "TGCKPT\r\n\1\0\0\0\4\0\0\0", 16) == 0);
    CHECK_INT(le32(f.b + 16), f.len);
    CHECK_INT(le32(f.b + f.len - 4), (uint32_t)crc32(0, f.b, (uInt)(f.len - 4)));
    /* the scalar "step" first, then fc.weight: float 1.5 little-endian */
    CHECK(memcmp(f.b + 24, "\4\0\0\0step\0\0\0\0\0\0\xc0\x3f", 16) == 0);
    free(f.b);

    /* saving over it replaces it */
    model_free(b, N_MODEL);
    model(b, 3.0f);
    CHECK_INT(tg_checkpoint_save(p, b, N_MODEL), 0);
    CHECK_INT(tg_checkpoint_load(p, a, N_MODEL), 0);
    CHECK(same_data(a, b, N_MODEL));
    CHECK_INT(count_files(), 1);

    /* no tensors at all */
    char empty[400];
    snprintf(empty, sizeof empty, "%s", path_of("empty.ckpt"));
    CHECK_INT(tg_checkpoint_save(empty, NULL, 0), 0);
    CHECK_INT(tg_checkpoint_load(empty, NULL, 0), 0);
    model_free(a, N_MODEL);
    model_free(b, N_MODEL);
    clean_dir();
}

static void damaged(void) {
    tg_tensor *m[N_MODEL];
    model(m, 2.0f);
    char p[400];
    snprintf(p, sizeof p, "%s", path_of("model.ckpt"));
    CHECK_INT(tg_checkpoint_save(p, m, N_MODEL), 0);
    model_free(m, N_MODEL);
    model(m, 9.0f);
    bytes f = slurp(p), g;
    char want[256];

    load_fails(path_of("missing.ckpt"), m, N_MODEL, TG_ERR_IO, "cannot open: No such file or directory");
    load_fails(dir, m, N_MODEL, TG_ERR_IO, "not a regular file (a directory)");

    snprintf(want, sizeof want, "truncated: header says %zu bytes, file has 100", f.len);
    load_fails(spit("cut.ckpt", f.b, 100), m, N_MODEL, TG_ERR_FORMAT, want);
    snprintf(want, sizeof want, "truncated: header says %zu bytes, file has %zu", f.len, f.len - 1);
    load_fails(spit("cut1.ckpt", f.b, f.len - 1), m, N_MODEL, TG_ERR_FORMAT, want);
    load_fails(spit("cut5.ckpt", f.b, 5), m, N_MODEL, TG_ERR_FORMAT,
               "truncated: 5 bytes, a checkpoint has at least 28");
    load_fails(spit("zero.ckpt", f.b, 0), m, N_MODEL, TG_ERR_FORMAT, "truncated: 0 bytes");

    g = slurp(p);
    g.b[g.len++] = 0;
    snprintf(want, sizeof want, "trailing bytes: header says %zu bytes, file has %zu", f.len, f.len + 1);
    load_fails(spit("long.ckpt", g.b, g.len), m, N_MODEL, TG_ERR_FORMAT, want);
    free(g.b);

    g = slurp(p);
    g.b[1] = 'X';
    load_fails(spit("magic.ckpt", g.b, g.len), m, N_MODEL, TG_ERR_FORMAT, "neither a tapegrad checkpoint nor a safetensors file (bad magic)");
    load_fails(spit("magic5.ckpt", g.b, 5), m, N_MODEL, TG_ERR_FORMAT, "neither a tapegrad checkpoint nor a safetensors file (bad magic)");
    free(g.b);

    g = slurp(p);
    g.b[8] = 2;
    load_fails(spit("v2.ckpt", g.b, g.len), m, N_MODEL, TG_ERR_FORMAT, "version 2, this build reads version 1");
    free(g.b);

    /* one bit anywhere after the header: in the data, in a name, in the checksum */
    size_t where[] = {record(&f, 3) + 40, record(&f, 1) + 5, f.len - 2};
    for (int k = 0; k < 3; k++) {
        g = slurp(p);
        g.b[where[k]] ^= 0x10;
        load_fails(spit("crc.ckpt", g.b, g.len), m, N_MODEL, TG_ERR_FORMAT, "checksum mismatch: file says ");
        free(g.b);
    }

    /* absurd sizes in a file whose checksum is right: a buggy or hostile writer */
    g = slurp(p);
    put_le32(g.b + 12, 0xffffffffu);
    snprintf(want, sizeof want, "header says 4294967295 tensors, more than %zu bytes can hold", f.len);
    load_fails(spit_fixed("count.ckpt", &g), m, N_MODEL, TG_ERR_FORMAT, want);
    put_le32(g.b + 12, 3);
    load_fails(spit_fixed("count3.ckpt", &g), m, N_MODEL, TG_ERR_FORMAT,
               "612 bytes after the last of its 3 tensors");
    free(g.b);
    size_t r1 = record(&f, 1); /* fc.weight: L, "fc.weight", ndim, 3, 5, data */
    g = slurp(p);
    put_le32(g.b + r1, 1000);
    load_fails(spit_fixed("name.ckpt", &g), m, N_MODEL, TG_ERR_FORMAT, "tensor 1 has a name of 1000 bytes, at most 63");
    free(g.b);
    g = slurp(p);
    put_le32(g.b + r1 + 13, 9);
    load_fails(spit_fixed("ndim.ckpt", &g), m, N_MODEL, TG_ERR_FORMAT,
               "tensor 1 'fc.weight' has 9 dimensions, at most 4");
    free(g.b);
    g = slurp(p);
    put_le32(g.b + r1 + 17, 0xffffffffu);
    load_fails(spit_fixed("dim.ckpt", &g), m, N_MODEL, TG_ERR_FORMAT,
               "tensor 1 'fc.weight' is 4294967295x5, more than the 175 floats left in the file");
    put_le32(g.b + r1 + 17, 3);
    put_le32(g.b + r1 + 21, 0);
    load_fails(spit_fixed("dim0.ckpt", &g), m, N_MODEL, TG_ERR_FORMAT, "tensor 1 'fc.weight' dimension 1 is 0");
    free(g.b);

    /* the last tensor's shape grows past the end of the file */
    g = slurp(p);
    put_le32(g.b + record(&f, 3) + 4 + 12 + 4, 17);
    load_fails(spit_fixed("grow.ckpt", &g), m, N_MODEL, TG_ERR_FORMAT,
               "tensor 3 'conv1.weight' is 17x1x3x3, more than the 144 floats left in the file");
    free(g.b);

    /* after all that, the good file still loads */
    CHECK_INT(tg_checkpoint_load(p, m, N_MODEL), 0);
    CHECK_NEAR(m[0]->data[0], 2.0, 0);
    free(f.b);
    model_free(m, N_MODEL);
    clean_dir();
}

static void mismatched(void) {
    tg_tensor *m[N_MODEL + 1];
    model(m, 2.0f);
    char p[400];
    snprintf(p, sizeof p, "%s", path_of("model.ckpt"));
    CHECK_INT(tg_checkpoint_save(p, m, N_MODEL), 0);

    tg_tensor *keep = m[3];
    m[3] = tensor("conv1.weight", 4, (int[]){32, 1, 3, 3}, 0);
    load_fails(p, m, N_MODEL, TG_ERR_SHAPE, "tensor 3 'conv1.weight' is 16x1x3x3 in the file, 32x1x3x3 in the model");
    tg_tensor_free(m[3]);
    m[3] = keep;

    tg_tensor_set_name(m[2], "fc.b");
    load_fails(p, m, N_MODEL, TG_ERR_SHAPE, "tensor 2 is 'fc.bias' in the file, 'fc.b' in the model");
    tg_tensor_set_name(m[2], "fc.bias");

    keep = m[2];
    m[2] = tensor("fc.bias", 2, (int[]){3, 1}, 0);
    load_fails(p, m, N_MODEL, TG_ERR_SHAPE, "tensor 2 'fc.bias' is 3 in the file, 3x1 in the model");
    tg_tensor_free(m[2]);
    m[2] = keep;

    keep = m[0];
    m[0] = tensor("step", 1, (int[]){1}, 0);
    load_fails(p, m, N_MODEL, TG_ERR_SHAPE, "tensor 0 'step' is scalar in the file, 1 in the model");
    tg_tensor_free(m[0]);
    m[0] = keep;

    load_fails(p, m, N_MODEL - 1, TG_ERR_SHAPE, "holds 4 tensors, the model has 3");
    m[4] = tensor("momentum", 1, (int[]){2}, 0);
    load_fails(p, m, N_MODEL + 1, TG_ERR_SHAPE, "holds 4 tensors, the model has 5");
    tg_tensor_free(m[4]);

    /* the caller's mistakes */
    CHECK_INT(tg_checkpoint_load(NULL, m, N_MODEL), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "checkpoint_load: path is NULL");
    CHECK_INT(tg_checkpoint_save(NULL, m, N_MODEL), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "checkpoint_save: path is NULL");
    tg_tensor *holes[] = {m[0], NULL};
    CHECK_INT(tg_checkpoint_save(p, holes, 2), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "tensor 1 is NULL");
    CHECK_INT(tg_checkpoint_load(p, m, -1), TG_ERR_ARG);
    CHECK_INT(count_files(), 1);
    model_free(m, N_MODEL);
    clean_dir();
}

static void failed_saves(void) {
    tg_tensor *old[N_MODEL], *m[N_MODEL], *probe[N_MODEL];
    model(old, 1.0f);
    model(m, 5.0f);
    model(probe, 0.0f);
    char p[400];
    snprintf(p, sizeof p, "%s", path_of("model.ckpt"));
    CHECK_INT(tg_checkpoint_save(p, old, N_MODEL), 0);
    char want[1024];

    /* a directory that is not there */
    char q[400];
    snprintf(q, sizeof q, "%s", path_of("nope/model.ckpt"));
    CHECK_INT(tg_checkpoint_save(q, m, N_MODEL), TG_ERR_IO);
    snprintf(want, sizeof want, "checkpoint %s: cannot create %s.tmp-", q, q);
    CHECK_MSG(tg_last_error(), want);
    CHECK_MSG(tg_last_error(), ": No such file or directory");

    /* a directory we may not write to (root may write anywhere: skipped then) */
    if (geteuid() != 0) {
        CHECK(chmod(dir, 0555) == 0);
        CHECK_INT(tg_checkpoint_save(p, m, N_MODEL), TG_ERR_IO);
        CHECK_MSG(tg_last_error(), "Permission denied");
        CHECK(chmod(dir, 0700) == 0);
        CHECK_INT(tg_checkpoint_load(p, probe, N_MODEL), 0);
        CHECK(same_data(probe, old, N_MODEL));
    } else {
        printf("running as root: the read-only directory case is skipped, the full disk below still runs\n");
    }

    /* a full disk, even for root: the file may not grow past 512 bytes */
    struct rlimit was;
    CHECK(getrlimit(RLIMIT_FSIZE, &was) == 0);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = {.rlim_cur = 512, .rlim_max = was.rlim_max};
    CHECK(setrlimit(RLIMIT_FSIZE, &small) == 0);
    int rc = tg_checkpoint_save(p, m, N_MODEL);
    CHECK(setrlimit(RLIMIT_FSIZE, &was) == 0);
    signal(SIGXFSZ, SIG_DFL);
    CHECK_INT(rc, TG_ERR_IO);
    snprintf(want, sizeof want, "checkpoint %s: cannot write %s.tmp-", p, p);
    CHECK_MSG(tg_last_error(), want);
    CHECK_MSG(tg_last_error(), "File too large");
    CHECK_INT(count_files(), 1); /* the temporary is gone */
    CHECK_INT(tg_checkpoint_load(p, probe, N_MODEL), 0);
    CHECK(same_data(probe, old, N_MODEL));

    /* path is a directory: refused before anything is written */
    char d[400];
    snprintf(d, sizeof d, "%s", path_of("a-dir"));
    CHECK(mkdir(d, 0700) == 0);
    CHECK(mkdir(path_of("a-dir/x"), 0700) == 0);
    CHECK_INT(tg_checkpoint_save(d, m, N_MODEL), TG_ERR_IO);
    snprintf(want, sizeof want, "checkpoint %s: not a regular file (a directory)", d);
    CHECK_MSG(tg_last_error(), want);
    CHECK_INT(count_files(), 2);
    rmdir(path_of("a-dir/x"));
    rmdir(d);

    /* and a save that works, after all */
    CHECK_INT(tg_checkpoint_save(p, m, N_MODEL), 0);
    CHECK_INT(tg_checkpoint_load(p, probe, N_MODEL), 0);
    CHECK(same_data(probe, m, N_MODEL));
    CHECK_INT(count_files(), 1);
    model_free(old, N_MODEL);
    model_free(m, N_MODEL);
    model_free(probe, N_MODEL);
    clean_dir();
}

// ----------------------------------------------------------------------------
// what is not a regular file, and files far bigger than their model

static void not_files(void) {
    tg_tensor *m[N_MODEL];
    model(m, 4.0f);
    const char *fifo = path_of("fifo.ckpt");
    CHECK(mkfifo(fifo, 0600) == 0);
    /* neither blocks: a FIFO without a writer is refused, not waited on */
    load_fails(fifo, m, N_MODEL, TG_ERR_IO, "not a regular file (a FIFO)");
    load_fails("/dev/null", m, N_MODEL, TG_ERR_IO, "not a regular file (a character device)");
    load_fails(dir, m, N_MODEL, TG_ERR_IO, "not a regular file (a directory)");
    const char *link = path_of("null-link.ckpt");
    CHECK(symlink("/dev/null", link) == 0);
    load_fails(link, m, N_MODEL, TG_ERR_IO, "not a regular file (a character device)");
    tg_clear_error();
    CHECK_INT(tg_checkpoint_load_prefix(fifo, m, 1), TG_ERR_IO);
    CHECK_MSG(tg_last_error(), "not a regular file (a FIFO)");
    model_free(m, N_MODEL);
    clean_dir();
}

/* A sparse file of 4 GiB whose header claims that size: refused from the
 * records' headers, with a few kilobytes read, not 4 GiB. */
static void sparse(void) {
    tg_tensor *m[N_MODEL];
    model(m, 6.0f);
    char p[400], want[256];
    snprintf(p, sizeof p, "%s", path_of("model.ckpt"));
    CHECK_INT(tg_checkpoint_save(p, m, N_MODEL), 0);
    bytes f = slurp(p);
    const uint64_t big = (uint64_t)4 << 30;
    const char *q = path_of("sparse.ckpt");
    for (int k = 0; k < 3; k++) {
        /* k 0: the model's own records, then a hole; 1: the header alone, zeros after it; 2: zeros
         * claiming as many tensors as fit */
        unsigned char h[24];
        memcpy(h, f.b, 24);
        for (int i = 0; i < 8; i++) h[16 + i] = (unsigned char)(big >> (8 * i));
        if (k == 2) put_le32(h + 12, (uint32_t)((big - 28) / 12));
        int fd = open(q, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        CHECK(fd >= 0);
        CHECK(write(fd, h, 24) == 24);
        if (k == 0) CHECK(write(fd, f.b + 24, f.len - 28) == (ssize_t)(f.len - 28));
        if (ftruncate(fd, (off_t)big) < 0) {
            printf("cannot make a sparse file of 4 GiB here (%s): skipped\n", strerror(errno));
            close(fd);
            break;
        }
        close(fd);
        long long r0 = bytes_read();
        double t0 = cpu_seconds();
        if (k == 0) {
            snprintf(want, sizeof want, "%llu bytes after the last of its 4 tensors",
                     (unsigned long long)(big - 4 - (f.len - 4)));
            load_fails(q, m, N_MODEL, TG_ERR_FORMAT, want);
            /* the first two tensors match, the rest of the file is walked over, unread */
            tg_clear_error();
            CHECK_INT(tg_checkpoint_load_prefix(q, m, 2), TG_ERR_FORMAT);
            CHECK_MSG(tg_last_error(), want);
        } else if (k == 1) {
            /* four empty scalars (12 zero bytes each), then nothing but zeros */
            snprintf(want, sizeof want, "%llu bytes after the last of its 4 tensors",
                     (unsigned long long)(big - 4 - 24 - 48));
            load_fails(q, m, N_MODEL, TG_ERR_FORMAT, want);
            tg_clear_error();
            CHECK_INT(tg_checkpoint_load_prefix(q, m, 2), TG_ERR_SHAPE);
            CHECK_MSG(tg_last_error(), "tensor 0 is '' in the file, 'step' in the model");
        } else {
            /* only the model's 4 records are walked, however many the header says */
            load_fails(q, m, N_MODEL, TG_ERR_SHAPE, "tensor 0 is '' in the file, 'step' in the model");
            tg_clear_error();
            CHECK_INT(tg_checkpoint_load_prefix(q, m, 2), TG_ERR_SHAPE);
            CHECK_MSG(tg_last_error(), "tensor 0 is '' in the file, 'step' in the model");
        }
        double t = cpu_seconds() - t0;
        long long r1 = bytes_read();
        printf("sparse 4 GiB checkpoint %d: refused in %.3f s of CPU, %lld bytes read\n", k, t, r1 - r0);
        CHECK(t < 1.0); /* milliseconds; reading 4 GiB takes seconds */
        if (r0 >= 0 && r1 >= 0) CHECK(r1 - r0 < 1 << 20);
        unlink(q);
    }
    /* the model's own checkpoint still loads, and a damaged copy is still reported as damaged */
    CHECK_INT(tg_checkpoint_load(p, m, N_MODEL), 0);
    f.b[record(&f, 2) + 6] ^= 0x01; /* "fc.bias" becomes "fc.bhas": the checksum tells */
    load_fails(spit("flip.ckpt", f.b, f.len), m, N_MODEL, TG_ERR_FORMAT, "checksum mismatch: file says ");
    free(f.b);
    model_free(m, N_MODEL);
    clean_dir();
}

// ----------------------------------------------------------------------------
// saving through links, refusing what is not a file, leftovers of killed saves

static bool is_link_to(const char *link, const char *to) {
    char buf[512];
    ssize_t n = readlink(link, buf, sizeof buf - 1);
    if (n < 0) return false;
    buf[n] = '\0';
    return strcmp(buf, to) == 0;
}

static void save_links(void) {
    tg_tensor *a[N_MODEL], *b[N_MODEL], *probe[N_MODEL];
    model(a, 1.0f);
    model(b, 2.0f);
    model(probe, 0.0f);
    CHECK(mkdir(path_of("sub"), 0700) == 0);
    char real[400], link1[400], link2[400];
    snprintf(real, sizeof real, "%s", path_of("sub/real.ckpt"));
    snprintf(link1, sizeof link1, "%s", path_of("link1.ckpt"));
    snprintf(link2, sizeof link2, "%s", path_of("link2.ckpt"));
    CHECK_INT(tg_checkpoint_save(real, a, N_MODEL), 0);
    /* link1 -> link2 -> sub/real.ckpt, both relative */
    CHECK(symlink("link2.ckpt", link1) == 0);
    CHECK(symlink("sub/real.ckpt", link2) == 0);
    CHECK_INT(tg_checkpoint_save(link1, b, N_MODEL), 0);
    CHECK(is_link_to(link1, "link2.ckpt"));
    CHECK(is_link_to(link2, "sub/real.ckpt"));
    CHECK_INT(tg_checkpoint_load(real, probe, N_MODEL), 0);
    CHECK(same_data(probe, b, N_MODEL));
    CHECK_INT(tg_checkpoint_load(link1, probe, N_MODEL), 0);
    CHECK(same_data(probe, b, N_MODEL));
    CHECK_INT(count_files(), 3); /* link1, link2, sub: no temporary here */
    DIR *d = opendir(path_of("sub"));
    int in_sub = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) in_sub += e->d_name[0] != '.';
    if (d) closedir(d);
    CHECK_INT(in_sub, 1); /* real.ckpt alone: no temporary there either */

    /* an absolute link */
    const char *abs = path_of("abs.ckpt");
    CHECK(symlink(real, abs) == 0);
    CHECK_INT(tg_checkpoint_save(abs, a, N_MODEL), 0);
    CHECK(is_link_to(abs, real));
    CHECK_INT(tg_checkpoint_load(real, probe, N_MODEL), 0);
    CHECK(same_data(probe, a, N_MODEL));

    /* a dangling link: its target is made, the link stays */
    char dangling[400];
    snprintf(dangling, sizeof dangling, "%s", path_of("dangling.ckpt"));
    CHECK(symlink("sub/new.ckpt", dangling) == 0);
    CHECK_INT(tg_checkpoint_save(dangling, b, N_MODEL), 0);
    CHECK(is_link_to(dangling, "sub/new.ckpt"));
    CHECK_INT(tg_checkpoint_load(path_of("sub/new.ckpt"), probe, N_MODEL), 0);
    CHECK(same_data(probe, b, N_MODEL));
    /* a link into a directory that is not there */
    const char *nowhere = path_of("nowhere.ckpt");
    CHECK(symlink("no-dir/x.ckpt", nowhere) == 0);
    CHECK_INT(tg_checkpoint_save(nowhere, b, N_MODEL), TG_ERR_IO);
    CHECK_MSG(tg_last_error(), "no-dir/x.ckpt.tmp-");
    CHECK_MSG(tg_last_error(), ": No such file or directory");
    /* a loop of links */
    const char *loop1 = path_of("loop1.ckpt"), *loop2 = path_of("loop2.ckpt");
    CHECK(symlink("loop2.ckpt", loop1) == 0);
    CHECK(symlink("loop1.ckpt", loop2) == 0);
    CHECK_INT(tg_checkpoint_save(loop1, b, N_MODEL), TG_ERR_IO);
    CHECK_MSG(tg_last_error(), "more than 40 symbolic links in a row");
    CHECK(is_link_to(loop1, "loop2.ckpt") && is_link_to(loop2, "loop1.ckpt"));

    /* the mode: a new file gets 0666 less the umask, a file replaced keeps its own */
    mode_t was = umask(022);
    struct stat st;
    const char *fresh = path_of("sub/fresh.ckpt");
    CHECK_INT(tg_checkpoint_save(fresh, a, N_MODEL), 0);
    CHECK(stat(fresh, &st) == 0 && (st.st_mode & 0777) == 0644);
    CHECK(chmod(real, 0600) == 0);
    CHECK_INT(tg_checkpoint_save(link1, a, N_MODEL), 0);
    CHECK(stat(real, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK(chmod(real, 0440) == 0); /* read-only: replaced all the same, still read-only */
    CHECK_INT(tg_checkpoint_save(real, b, N_MODEL), 0);
    CHECK(stat(real, &st) == 0 && (st.st_mode & 0777) == 0440);
    CHECK_INT(tg_checkpoint_load(real, probe, N_MODEL), 0);
    CHECK(same_data(probe, b, N_MODEL));
    umask(was);

    model_free(a, N_MODEL);
    model_free(b, N_MODEL);
    model_free(probe, N_MODEL);
    unlink(path_of("sub/real.ckpt")), unlink(path_of("sub/new.ckpt")), unlink(fresh);
    rmdir(path_of("sub"));
    clean_dir();
}

/* Saving over /dev/null, and through a link to it, must be refused. A build
 * that did not refuse would, run as root, rename its file over /dev/null (for
 * the whole machine): so these saves run in a child without root's rights,
 * where such a rename fails (and the test with it) without harm. */
static void save_dev_null(tg_tensor **m) {
    struct stat before, after;
    CHECK(stat("/dev/null", &before) == 0 && S_ISCHR(before.st_mode));
    const char *link = path_of("null.ckpt");
    CHECK(symlink("/dev/null", link) == 0);
    CHECK(chmod(dir, 0711) == 0); /* the child may look the link up, not write there */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) < 0 || setuid(65534) < 0)) _exit(77);
        if (geteuid() == 0) _exit(77);
        check_failures = 0;
        tg_clear_error();
        CHECK_INT(tg_checkpoint_save("/dev/null", m, N_MODEL), TG_ERR_IO);
        CHECK_MSG(tg_last_error(), "checkpoint /dev/null: not a regular file (a character device)");
        char want[1024];
        tg_clear_error();
        CHECK_INT(tg_checkpoint_save(link, m, N_MODEL), TG_ERR_IO);
        snprintf(want, sizeof want,
                 "checkpoint %s: not a regular file (a character device /dev/null, where the link leads)", link);
        CHECK_MSG(tg_last_error(), want);
        _exit(check_failures ? 1 : 0);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(chmod(dir, 0700) == 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
        printf("cannot drop root's rights here: saving over /dev/null is not tried\n");
    else
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(stat("/dev/null", &after) == 0 && S_ISCHR(after.st_mode) && after.st_rdev == before.st_rdev &&
          after.st_ino == before.st_ino);
    CHECK(is_link_to(link, "/dev/null"));
}

static void save_refused(void) {
    tg_tensor *m[N_MODEL];
    model(m, 3.0f);
    char want[1024];
    struct stat after;

    /* /dev/null: a character device, refused and untouched */
    save_dev_null(m);

    /* a FIFO: not opened (no writer would block, no reader would hang), not replaced */
    const char *fifo = path_of("fifo.ckpt");
    CHECK(mkfifo(fifo, 0600) == 0);
    CHECK_INT(tg_checkpoint_save(fifo, m, N_MODEL), TG_ERR_IO);
    snprintf(want, sizeof want, "checkpoint %s: not a regular file (a FIFO)", fifo);
    CHECK_MSG(tg_last_error(), want);
    CHECK(lstat(fifo, &after) == 0 && S_ISFIFO(after.st_mode));
    CHECK_INT(count_files(), 2); /* no temporary made */

    CHECK_INT(tg_checkpoint_save("", m, N_MODEL), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "checkpoint_save: path is empty");
    model_free(m, N_MODEL);
    clean_dir();
}

/* A pid that no process has: above Linux's largest pid_max (2^22), checked. */
static long dead_pid(void) {
    for (long pid = (1L << 22) + 12345; pid < (1L << 22) + 1000000; pid += 7919)
        if (kill((pid_t)pid, 0) < 0 && errno == ESRCH) return pid;
    return -1;
}

static void stale_temps(void) {
    tg_tensor *m[N_MODEL], *probe[N_MODEL];
    model(m, 8.0f);
    model(probe, 0.0f);
    long dead = dead_pid(), live = (long)getppid();
    CHECK(dead > 0);
    CHECK(kill((pid_t)live, 0) == 0);
    char p[400], name[200];
    snprintf(p, sizeof p, "%s", path_of("model.ckpt"));
    CHECK_INT(tg_checkpoint_save(p, m, N_MODEL), 0);

    /* what killed saves left: of a dead pid (k 0 and 7), of a live one */
    const char *gone[] = {"model.ckpt.tmp-%ld-0", "model.ckpt.tmp-%ld-7"};
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof name, gone[i], dead);
        spit(name, (const unsigned char *)"half a checkpoint", 17);
    }
    snprintf(name, sizeof name, "model.ckpt.tmp-%ld-0", live);
    spit(name, (const unsigned char *)"a save going on", 15);
    /* and what only looks alike, or is not a file: all kept */
    const char *alike[] = {"model.ckpt.tmp-0%ld-0", "model.ckpt.tmp-%ld-0.bak", "model.ckpt.tmp-%ld-",
                           "model.ckpt.tmp-%ld", "model.ckpt.tmp-+%ld-0", "other.ckpt.tmp-%ld-0",
                           "model.ckpt.tmp-%ld-01", "model.ckpt.bak.tmp-%ld-0", "xmodel.ckpt.tmp-%ld-0"};
    int n_alike = (int)(sizeof alike / sizeof *alike);
    for (int i = 0; i < n_alike; i++) {
        snprintf(name, sizeof name, alike[i], dead);
        spit(name, (const unsigned char *)"x", 1);
    }
    spit("model.ckpt.tmp--5-0", (const unsigned char *)"x", 1); /* kill(-5) would signal a group */
    spit("model.ckpt.tmp-0-0", (const unsigned char *)"x", 1);  /* kill(0) would signal ours */
    snprintf(name, sizeof name, "model.ckpt.tmp-%ld-8", dead);
    CHECK(mkdir(path_of(name), 0700) == 0); /* a directory */
    snprintf(name, sizeof name, "model.ckpt.tmp-%ld-9", dead);
    CHECK(symlink("model.ckpt", path_of(name)) == 0); /* a link */
    int files = count_files();
    CHECK_INT(files, 1 + 2 + 1 + n_alike + 2 + 2);

    CHECK_INT(tg_checkpoint_save(p, m, N_MODEL), 0);
    CHECK_INT(count_files(), files - 2); /* the dead pid's two, no more */
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof name, gone[i], dead);
        CHECK(!exists(path_of(name)));
    }
    snprintf(name, sizeof name, "model.ckpt.tmp-%ld-0", live);
    CHECK(exists(path_of(name)));
    for (int i = 0; i < n_alike; i++) {
        snprintf(name, sizeof name, alike[i], dead);
        CHECK(exists(path_of(name)));
    }
    snprintf(name, sizeof name, "model.ckpt.tmp-%ld-9", dead);
    CHECK(is_link_to(path_of(name), "model.ckpt"));
    CHECK_INT(tg_checkpoint_load(p, probe, N_MODEL), 0);
    CHECK(same_data(probe, m, N_MODEL));

    /* through a link: the leftovers next to the file it leads to go */
    CHECK(mkdir(path_of("sub"), 0700) == 0);
    CHECK(symlink("sub/real.ckpt", path_of("link.ckpt")) == 0);
    snprintf(name, sizeof name, "sub/real.ckpt.tmp-%ld-3", dead);
    spit(name, (const unsigned char *)"x", 1);
    CHECK_INT(tg_checkpoint_save(path_of("link.ckpt"), m, N_MODEL), 0);
    CHECK(!exists(path_of(name)));
    CHECK(exists(path_of("sub/real.ckpt")));
    unlink(path_of("sub/real.ckpt"));
    rmdir(path_of("sub"));

    /* a refused save removes nothing */
    snprintf(name, sizeof name, "fifo.ckpt.tmp-%ld-0", dead);
    spit(name, (const unsigned char *)"x", 1);
    CHECK(mkfifo(path_of("fifo.ckpt"), 0600) == 0);
    CHECK_INT(tg_checkpoint_save(path_of("fifo.ckpt"), m, N_MODEL), TG_ERR_IO);
    CHECK(exists(path_of(name)));

    model_free(m, N_MODEL);
    model_free(probe, N_MODEL);
    clean_dir();
}

/* tg_checkpoint_load_prefix: the first n tensors of a longer file (a model's
 * state before its optimizer's); the rest must still be sound */
static void prefix(void) {
    tg_tensor *a[N_MODEL], *b[N_MODEL];
    model(a, 1.5f);
    model(b, -7.0f);
    char p[400];
    snprintf(p, sizeof p, "%s", path_of("model.ckpt"));
    CHECK_INT(tg_checkpoint_save(p, a, N_MODEL), 0);
    CHECK_INT(tg_checkpoint_load_prefix(p, b, 2), 0);
    CHECK(same_data(a, b, 2));
    CHECK(!same_data(a + 2, b + 2, 2)); /* the rest untouched */
    CHECK_INT(tg_checkpoint_load_prefix(p, b, N_MODEL), 0);
    CHECK(same_data(a, b, N_MODEL));
    CHECK_INT(tg_checkpoint_load_prefix(p, NULL, 0), 0);

    /* more than the file holds; a first tensor that differs: refused, nothing changes */
    tg_tensor *c[N_MODEL + 1];
    model(c, -7.0f);
    c[N_MODEL] = tensor("extra", 1, (int[]){2}, 0);
    tg_clear_error();
    CHECK_INT(tg_checkpoint_load_prefix(p, c, N_MODEL + 1), TG_ERR_SHAPE);
    CHECK_MSG(tg_last_error(), "holds 4 tensors, the model has 5");
    tg_tensor *d = tensor("fc.weight", 2, (int[]){5, 3}, 0);
    tg_tensor *mixed[2] = {c[0], d};
    CHECK_INT(tg_checkpoint_load_prefix(p, mixed, 2), TG_ERR_SHAPE);
    CHECK_MSG(tg_last_error(), "tensor 1 'fc.weight' is 3x5 in the file, 5x3 in the model");
    CHECK(c[0]->data[0] == -7.0f);
    /* a damaged tensor after the prefix still spoils the file */
    bytes f = slurp(p);
    f.b[record(&f, 3) + 40] ^= 1; /* in conv1.weight's data */
    const char *bad = spit("bad.ckpt", f.b, f.len);
    CHECK_INT(tg_checkpoint_load_prefix(bad, c, 1), TG_ERR_FORMAT);
    CHECK_MSG(tg_last_error(), "checksum mismatch");
    CHECK(c[0]->data[0] == -7.0f);
    free(f.b);
    tg_tensor_free(d);
    model_free(a, N_MODEL);
    model_free(b, N_MODEL);
    model_free(c, N_MODEL + 1);
    clean_dir();
}

int main(void) {
    alarm(60); /* a loader that blocks (on a FIFO) fails the test instead of hanging it */
    snprintf(dir, sizeof dir, "%s", "/tmp/tapegrad-ckpt-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    round_trip();
    damaged();
    mismatched();
    failed_saves();
    prefix();
    not_files();
    sparse();
    save_links();
    save_refused();
    stale_temps();
    clean_dir();
    CHECK(rmdir(dir) == 0);
    CHECK_DONE();
}
