/* checkpoint.c: named tensors (parameters, batch-norm running statistics,
 * optimizer buffers) saved to a file and loaded back.
 *
 * FORMAT, version 1. Every integer is unsigned and little-endian.
 *
 *   bytes      field
 *   8          magic "TGCKPT\r\n"
 *   4          version: 1
 *   4          count: how many tensors follow
 *   8          size of the whole file in bytes, this header and the checksum included
 *   count times:
 *     4        name length L, 0 to 63
 *     L        the name, no NUL
 *     4        ndim, 0 to 4
 *     4*ndim   the dimensions, each at least 1
 *     4*prod   the data, float32 (IEEE 754) little-endian, row-major
 *   4          CRC-32 (zlib's crc32) of every byte before it
 *
 * Saving writes <file>.tmp-<pid>-<k> next to the file, flushes and fsyncs it,
 * renames it over the file and fsyncs the directory, so the file always holds
 * either the old checkpoint or the new one, whole. The file is path itself or,
 * when path is a symbolic link (or a chain of them), the file the links lead
 * to, existing or not: the links stay links. A file that exists and is not a
 * regular one (a FIFO, a device, a directory, a socket) is refused, untouched.
 * A new file gets 0666 less the umask; a file replaced keeps its permission
 * bits. A save first removes the temporaries that earlier saves of the same
 * file left when they were killed: the ones whose process is gone.
 *
 * Loading reads only from a regular file, through the one descriptor it
 * opened. It checks the header (the size it states against the file's), then
 * walks the records' headers alone, seeking over their data, and compares them
 * with the model's tensors: a file that cannot fit is refused without its data
 * being read (unless it is no bigger than the model's own checkpoint: then its
 * checksum is checked first, so that a damaged file is reported as such).
 * Only then one pass reads every byte for the checksum and stages the data,
 * and only when that passes are the tensors written. */
#include "nn_internal.h"
#include "tapegrad_nn.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define MAGIC "TGCKPT\r\n"
#define VERSION 1u
#define HEADER_BYTES 24
#define NAME_MAX_LEN ((int)sizeof(((tg_tensor *)0)->name) - 1)
#define CHUNK 4096 /* floats converted at a time */

static void put_le32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put_le64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

static size_t name_len(const tg_tensor *x) {
    const char *end = memchr(x->name, '\0', sizeof x->name);
    return end ? (size_t)(end - x->name) : sizeof x->name;
}

/* "16x1x3x3" for a shape read from the file (tg_shape_str's format, any uint32) */
static char *shape_str(int ndim, const uint32_t *dims, char *buf, size_t len) {
    size_t o = 0;
    buf[0] = '\0';
    if (ndim == 0) snprintf(buf, len, "scalar");
    for (int i = 0; i < ndim && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, i ? "x%lu" : "%lu", (unsigned long)dims[i]);
    return buf;
}

/* A copy of a name from the file for messages (out holds NAME_MAX_LEN + 1):
 * bytes outside printable ASCII become '?'. Names are compared as they are. */
static const char *printable(char *out, const char *name) {
    size_t i = 0;
    for (; name[i] && i < (size_t)NAME_MAX_LEN; i++) out[i] = name[i] < 0x20 || name[i] > 0x7e ? '?' : name[i];
    out[i] = '\0';
    return out;
}

// ----------------------------------------------------------------------------
// save

typedef struct {
    FILE *f;
    uLong crc;
    int err; /* errno of the first failed write */
} writer;

static void put(writer *w, const void *p, size_t len) {
    if (w->err || !len) return;
    errno = 0;
    if (fwrite(p, 1, len, w->f) != len) w->err = errno ? errno : EIO;
    w->crc = crc32(w->crc, p, (uInt)len);
}

static void put_tensor(writer *w, const tg_tensor *x) {
    unsigned char b[4 + NAME_MAX_LEN + 4 + 4 * TG_MAX_DIMS];
    size_t L = name_len(x), o = 4 + L;
    put_le32(b, (uint32_t)L);
    memcpy(b + 4, x->name, L);
    put_le32(b + o, (uint32_t)x->ndim);
    o += 4;
    for (int i = 0; i < x->ndim; i++, o += 4) put_le32(b + o, (uint32_t)x->shape[i]);
    put(w, b, o);
    unsigned char buf[4 * CHUNK];
    for (int64_t i = 0; i < x->size; i += CHUNK) {
        int64_t m = x->size - i < CHUNK ? x->size - i : CHUNK;
        for (int64_t k = 0; k < m; k++) {
            uint32_t u;
            memcpy(&u, &x->data[i + k], 4);
            put_le32(buf + 4 * k, u);
        }
        put(w, buf, 4 * (size_t)m);
    }
}

static int check_tensors(const char *who, const char *path, tg_tensor *const *tensors, int n) {
    if (!path) return tg_fail(TG_ERR_ARG, "%s: path is NULL", who);
    if (n < 0 || (n > 0 && !tensors))
        return tg_fail(TG_ERR_ARG, "checkpoint %s: %d tensors at %p", path, n, (void *)tensors);
    for (int i = 0; i < n; i++) {
        const tg_tensor *x = tensors[i];
        if (!x || (!x->data && x->size))
            return tg_fail(TG_ERR_ARG, "checkpoint %s: tensor %d is NULL or has no data", path, i);
        if ((int)name_len(x) > NAME_MAX_LEN)
            return tg_fail(TG_ERR_ARG, "checkpoint %s: tensor %d's name is not terminated", path, i);
    }
    return 0;
}

/* The bytes a checkpoint of these tensors takes, header and checksum included. */
static uint64_t file_bytes(tg_tensor *const *tensors, int n) {
    uint64_t size = HEADER_BYTES + 4;
    for (int i = 0; i < n; i++)
        size += 4 + name_len(tensors[i]) + 4 + 4 * (uint64_t)tensors[i]->ndim + 4 * (uint64_t)tensors[i]->size;
    return size;
}

/* A copy of s, or NULL. */
static char *dup_str(const char *s) {
    size_t len = strlen(s) + 1;
    char *d = tg__malloc(len);
    if (d) memcpy(d, s, len);
    return d;
}

/* The directory holding path: ".", "/" or what comes before its last slash. */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = tg__malloc(slash ? (size_t)(slash - path) + 2 : 2);
    if (!dir) return NULL;
    if (!slash) strcpy(dir, ".");
    else if (slash == path) strcpy(dir, "/");
    else {
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
    }
    return dir;
}

/* fsync the directory holding path, so the rename itself is durable */
static int sync_dir(const char *path) {
    char *dir = dir_of(path);
    if (!dir) return ENOMEM;
    int err = 0, fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd < 0) err = errno;
    /* some file systems cannot sync a directory; the rename is done all the same */
    else if (fsync(fd) < 0 && errno != EINVAL && errno != ENOTSUP) err = errno;
    if (fd >= 0) close(fd);
    tg__free(dir);
    return err;
}

/* What the symbolic link at path holds, or NULL with errno set. */
static char *read_link(const char *path) {
    for (size_t cap = 256;; cap *= 2) {
        char *buf = tg__malloc(cap);
        if (!buf) {
            errno = ENOMEM;
            return NULL;
        }
        ssize_t len = readlink(path, buf, cap);
        if (len >= 0 && (size_t)len < cap) {
            buf[len] = '\0';
            return buf;
        }
        tg__free(buf);
        if (len < 0) return NULL;
        if (cap > ((size_t)1 << 20)) {
            errno = ENAMETOOLONG;
            return NULL;
        }
    }
}

/* Links followed at most, as the kernel does (Linux's MAXSYMLINKS) */
#define MAX_LINKS 40

/* The file a save replaces: path, or where its chain of symbolic links ends,
 * whether that file exists or not (a dangling link makes its target). st gets
 * its lstat and *exists whether it is there. A tg__malloc'd path, or NULL with
 * the message set. */
static char *save_target(const char *path, struct stat *st, bool *exists) {
    char *cur = dup_str(path);
    for (int hops = 0; cur; hops++) {
        if (lstat(cur, st) < 0) {
            /* not there (or a directory on the way is not): the create below says which */
            if (errno == ENOENT || errno == ENOTDIR) {
                *exists = false;
                return cur;
            }
            tg_fail(TG_ERR_IO, "checkpoint %s: cannot stat %s: %s", path, cur, strerror(errno));
            tg__free(cur);
            return NULL;
        }
        if (!S_ISLNK(st->st_mode)) {
            *exists = true;
            return cur;
        }
        if (hops == MAX_LINKS) {
            tg_fail(TG_ERR_IO, "checkpoint %s: more than %d symbolic links in a row: %s", path, MAX_LINKS,
                    strerror(ELOOP));
            tg__free(cur);
            return NULL;
        }
        char *link = read_link(cur);
        if (!link) {
            tg_fail(TG_ERR_IO, "checkpoint %s: cannot read the link %s: %s", path, cur, strerror(errno));
            tg__free(cur);
            return NULL;
        }
        /* a relative link is relative to the directory that holds it */
        const char *slash = strrchr(cur, '/');
        char *next = link;
        if (link[0] != '/' && slash) {
            size_t d = (size_t)(slash - cur) + 1, len = strlen(link) + 1;
            next = tg__malloc(d + len);
            if (next) {
                memcpy(next, cur, d);
                memcpy(next + d, link, len);
            }
            tg__free(link);
        }
        tg__free(cur);
        cur = next;
    }
    tg_fail(TG_ERR_NOMEM, "checkpoint %s: out of memory", path);
    return NULL;
}

/* Removes what saves of target that were killed left: files named exactly as
 * a save names its temporary, "<target>.tmp-<pid>-<k>", in target's directory,
 * regular files, whose pid no process has (kill(pid, 0) fails with ESRCH).
 * Nothing else: not a live process's, not a name that merely looks alike (a
 * sign, leading zeros, anything after k), not a link or a directory. Best
 * effort: what cannot be read or removed stays. */
static void remove_stale(const char *target) {
    const char *slash = strrchr(target, '/');
    const char *base = slash ? slash + 1 : target;
    size_t base_len = strlen(base);
    char *dir = dir_of(target);
    DIR *d = dir ? opendir(dir) : NULL;
    tg__free(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *name = e->d_name;
        if (strncmp(name, base, base_len) != 0 || strncmp(name + base_len, ".tmp-", 5) != 0) continue;
        char *end;
        errno = 0;
        long pid = strtol(name + base_len + 5, &end, 10);
        if (errno || *end != '-' || pid <= 0 || pid > INT_MAX) continue; /* pid <= 0 would signal groups */
        long k = strtol(end + 1, &end, 10);
        if (errno || *end != '\0' || k < 0 || k > INT_MAX) continue;
        char canonical[512];
        int len = snprintf(canonical, sizeof canonical, "%s.tmp-%ld-%ld", base, pid, k);
        if (len < 0 || (size_t)len >= sizeof canonical || strcmp(canonical, name) != 0) continue;
        if ((pid_t)pid == getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours to know (EPERM) */
        struct stat st;
        if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
            unlinkat(dirfd(d), name, 0);
    }
    closedir(d);
}

/* The body of a checkpoint: the header, the records, the checksum. */
typedef struct {
    tg_tensor *const *tensors;
    int n;
    uint64_t size;
} checkpoint_body;

static int write_checkpoint(FILE *f, void *ctx) {
    const checkpoint_body *c = ctx;
    writer w = {.f = f, .crc = crc32(0, NULL, 0)};
    unsigned char h[HEADER_BYTES];
    memcpy(h, MAGIC, 8);
    put_le32(h + 8, VERSION);
    put_le32(h + 12, (uint32_t)c->n);
    put_le64(h + 16, c->size);
    put(&w, h, sizeof h);
    for (int i = 0; i < c->n; i++) put_tensor(&w, c->tensors[i]);
    unsigned char crc[4];
    put_le32(crc, (uint32_t)w.crc);
    put(&w, crc, 4);
    return w.err;
}

int tg_checkpoint_save(const char *path, tg_tensor *const *tensors, int n) {
    int rc = check_tensors("checkpoint_save", path, tensors, n);
    if (rc < 0) return rc;
    if (!*path) return tg_fail(TG_ERR_ARG, "checkpoint_save: path is empty");
    checkpoint_body c = {tensors, n, file_bytes(tensors, n)};
    return tg__save_atomic("checkpoint", path, write_checkpoint, &c);
}

int tg__save_atomic(const char *what, const char *path, int (*body)(FILE *f, void *ctx), void *ctx) {
    int rc;
    /* through symbolic links to the file itself: the temporary goes next to it
     * and is renamed over it, so the link stays a link and the rename is atomic */
    struct stat st;
    bool exists = false;
    char *target = save_target(path, &st, &exists);
    if (!target) return tg_last_error_code();
    if (exists && !S_ISREG(st.st_mode)) {
        /* a FIFO, a device, a directory, a socket: refused, untouched */
        if (strcmp(target, path) == 0)
            rc = tg_fail(TG_ERR_IO, "%s %s: not a regular file (%s)", what, path, tg__file_kind(st.st_mode));
        else
            rc = tg_fail(TG_ERR_IO, "%s %s: not a regular file (%s %s, where the link leads)", what, path,
                         tg__file_kind(st.st_mode), target);
        tg__free(target);
        return rc;
    }
    remove_stale(target);

    size_t tmp_len = strlen(target) + 48;
    char *tmp = tg__malloc(tmp_len);
    if (!tmp) {
        tg__free(target);
        return tg_fail(TG_ERR_NOMEM, "%s %s: out of memory", what, path);
    }
    int fd = -1;
    for (int k = 0; k < 100 && fd < 0; k++) {
        snprintf(tmp, tmp_len, "%s.tmp-%ld-%d", target, (long)getpid(), k);
        /* made with the old file's permissions at once: no moment when others may read it */
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, exists ? st.st_mode & 0777 : 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        rc = tg_fail(TG_ERR_IO, "%s %s: cannot create %s: %s", what, path, tmp, strerror(errno));
        tg__free(tmp);
        tg__free(target);
        return rc;
    }
    /* a new file gets 0666 less the umask; a file replaced keeps its permissions */
    if (exists && fchmod(fd, st.st_mode & 0777) < 0) {
        rc = tg_fail(TG_ERR_IO, "%s %s: cannot give %s the mode %03o of %s: %s", what, path, tmp,
                     (unsigned)(st.st_mode & 0777), target, strerror(errno));
        close(fd);
        goto fail;
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        rc = tg_fail(TG_ERR_IO, "%s %s: cannot write %s: %s", what, path, tmp, strerror(errno));
        close(fd);
        goto fail;
    }
    int err = body(f, ctx);
    if (!err && fflush(f) != 0) err = errno;
    if (!err && fsync(fileno(f)) < 0) err = errno;
    if (fclose(f) != 0 && !err) err = errno;
    if (err) {
        rc = tg_fail(TG_ERR_IO, "%s %s: cannot write %s: %s", what, path, tmp, strerror(err));
        goto fail;
    }
    /* the target may have been replaced while we wrote: look again just before
     * the rename (what is left is the moment between the two calls) */
    struct stat now;
    if (lstat(target, &now) == 0 && !S_ISREG(now.st_mode)) {
        rc = tg_fail(TG_ERR_IO, "%s %s: not a regular file (%s %s, which it became while we wrote)", what, path,
                     tg__file_kind(now.st_mode), target);
        goto fail;
    }
    if (rename(tmp, target) < 0) {
        rc = tg_fail(TG_ERR_IO, "%s %s: cannot rename %s into place: %s", what, path, tmp, strerror(errno));
        goto fail;
    }
    tg__free(tmp);
    err = sync_dir(target);
    tg__free(target);
    if (err)
        return tg_fail(TG_ERR_IO, "%s %s: written, but syncing its directory failed: %s", what, path, strerror(err));
    return 0;
fail:
    unlink(tmp);
    tg__free(tmp);
    tg__free(target);
    return rc;
}

// ----------------------------------------------------------------------------
// load

typedef struct {
    FILE *f;
    const char *path;
    int64_t pos, end; /* end: where the records stop and the checksum begins */
    bool sum;         /* what get reads is added to crc */
    uLong crc;
} reader;

/* Exactly len bytes, or an error: the size was checked, so a short read is an
 * i/o error or a file that changed under us. */
static int get(reader *r, void *p, size_t len) {
    if (!len) return 0;
    errno = 0;
    if (fread(p, 1, len, r->f) != len)
        return tg_fail(TG_ERR_IO, "checkpoint %s: cannot read at byte %lld: %s", r->path, (long long)r->pos,
                       errno ? strerror(errno) : "the file ended early");
    if (r->sum) r->crc = crc32(r->crc, p, (uInt)len);
    r->pos += (int64_t)len;
    return 0;
}

static int seek_to(reader *r, int64_t pos) {
    if (fseeko(r->f, (off_t)pos, SEEK_SET) != 0)
        return tg_fail(TG_ERR_IO, "checkpoint %s: cannot seek: %s", r->path, strerror(errno));
    r->pos = pos;
    return 0;
}

/* Over len bytes: seeking, or reading them into the checksum when it is kept. */
static int skip(reader *r, int64_t len) {
    if (!r->sum) return seek_to(r, r->pos + len);
    unsigned char buf[4 * CHUNK];
    while (len > 0) {
        size_t m = len < (int64_t)sizeof buf ? (size_t)len : sizeof buf;
        if (get(r, buf, m) < 0) return TG_ERR_IO;
        len -= (int64_t)m;
    }
    return 0;
}

/* One record's header: name, ndim, dims. Checked against what is left of the file. */
static int get_record(reader *r, int i, char *name, uint32_t *L, int *ndim, uint32_t *dims, int64_t *count) {
    unsigned char b[4 * TG_MAX_DIMS];
    if (r->end - r->pos < 8)
        return tg_fail(TG_ERR_FORMAT, "checkpoint %s: tensor %d starts at byte %lld, past the end of the data",
                       r->path, i, (long long)r->pos);
    if (get(r, b, 4) < 0) return TG_ERR_IO;
    *L = le32(b);
    if (*L > (uint32_t)NAME_MAX_LEN)
        return tg_fail(TG_ERR_FORMAT, "checkpoint %s: tensor %d has a name of %lu bytes, at most %d", r->path, i,
                       (unsigned long)*L, NAME_MAX_LEN);
    if (r->end - r->pos < (int64_t)*L + 4)
        return tg_fail(TG_ERR_FORMAT, "checkpoint %s: tensor %d's name runs past the end of the data", r->path, i);
    if (get(r, name, *L) < 0 || get(r, b, 4) < 0) return TG_ERR_IO;
    name[*L] = '\0';
    char shown[NAME_MAX_LEN + 1];
    printable(shown, name);
    uint32_t nd = le32(b);
    if (nd > TG_MAX_DIMS)
        return tg_fail(TG_ERR_FORMAT, "checkpoint %s: tensor %d '%s' has %lu dimensions, at most %d", r->path, i,
                       shown, (unsigned long)nd, TG_MAX_DIMS);
    *ndim = (int)nd;
    if (r->end - r->pos < 4 * (int64_t)nd)
        return tg_fail(TG_ERR_FORMAT, "checkpoint %s: tensor %d '%s''s shape runs past the end of the data",
                       r->path, i, shown);
    if (get(r, b, 4 * (size_t)nd) < 0) return TG_ERR_IO;
    int64_t left = (r->end - r->pos) / 4, c = 1;
    bool fits = true;
    for (int d = 0; d < *ndim; d++) {
        dims[d] = le32(b + 4 * d);
        if (dims[d] == 0)
            return tg_fail(TG_ERR_FORMAT, "checkpoint %s: tensor %d '%s' dimension %d is 0", r->path, i, shown, d);
        /* stop multiplying before the product can overflow */
        if (fits && (int64_t)dims[d] > left / c) fits = false;
        if (fits) c *= dims[d];
    }
    if (!fits) {
        char s[96];
        return tg_fail(TG_ERR_FORMAT, "checkpoint %s: tensor %d '%s' is %s, more than the %lld floats left in the file",
                       r->path, i, shown, shape_str(*ndim, dims, s, sizeof s), (long long)left);
    }
    *count = c;
    return 0;
}

/* Compares record i of the file with the model's tensor; the message of the first mismatch. */
static int compare(reader *r, int i, const char *name, int ndim, const uint32_t *dims, const tg_tensor *x) {
    char a[64], b[64], shown[NAME_MAX_LEN + 1];
    printable(shown, name);
    if (strncmp(name, x->name, sizeof x->name) != 0)
        return tg_fail(TG_ERR_SHAPE, "checkpoint %s: tensor %d is '%s' in the file, '%.*s' in the model", r->path,
                       i, shown, (int)name_len(x), x->name);
    bool same = ndim == x->ndim;
    for (int d = 0; same && d < ndim; d++) same = dims[d] == (uint32_t)x->shape[d];
    if (!same)
        return tg_fail(TG_ERR_SHAPE, "checkpoint %s: tensor %d '%s' is %s in the file, %s in the model", r->path, i,
                       shown, shape_str(ndim, dims, a, sizeof a), tg_shape_str(x, b, sizeof b));
    return 0;
}

static int check_header(reader *r, const unsigned char *h, int64_t file_size, uint32_t *count) {
    /* a file cut inside the magic is truncated, not foreign */
    if (memcmp(h, MAGIC, file_size < 8 ? (size_t)file_size : 8) != 0)
        return tg_fail(TG_ERR_FORMAT, "checkpoint %s: neither a tapegrad checkpoint nor a safetensors file (bad magic)",
                       r->path);
    if (file_size < HEADER_BYTES + 4)
        return tg_fail(TG_ERR_FORMAT, "checkpoint %s: truncated: %lld bytes, a checkpoint has at least %d", r->path,
                       (long long)file_size, HEADER_BYTES + 4);
    uint32_t version = le32(h + 8);
    if (version != VERSION)
        return tg_fail(TG_ERR_FORMAT, "checkpoint %s: version %lu, this build reads version %u", r->path,
                       (unsigned long)version, VERSION);
    uint64_t says = le64(h + 16);
    if (says > (uint64_t)file_size)
        return tg_fail(TG_ERR_FORMAT, "checkpoint %s: truncated: header says %llu bytes, file has %lld", r->path,
                       (unsigned long long)says, (long long)file_size);
    if (says < (uint64_t)file_size)
        return tg_fail(TG_ERR_FORMAT, "checkpoint %s: trailing bytes: header says %llu bytes, file has %lld",
                       r->path, (unsigned long long)says, (long long)file_size);
    *count = le32(h + 12);
    /* the smallest record is 12 bytes: empty name, a scalar */
    if (*count > (uint64_t)(file_size - HEADER_BYTES - 4) / 12)
        return tg_fail(TG_ERR_FORMAT, "checkpoint %s: header says %lu tensors, more than %lld bytes can hold",
                       r->path, (unsigned long)*count, (long long)file_size);
    return 0;
}

/* The checksum over the whole file, by itself. */
static int check_crc(reader *r) {
    unsigned char buf[4 * CHUNK];
    uLong crc = crc32(0, NULL, 0);
    if (seek_to(r, 0) < 0) return TG_ERR_IO;
    r->sum = false;
    while (r->pos < r->end) {
        size_t m = r->end - r->pos < (int64_t)sizeof buf ? (size_t)(r->end - r->pos) : sizeof buf;
        if (get(r, buf, m) < 0) return TG_ERR_IO;
        crc = crc32(crc, buf, (uInt)m);
    }
    if (get(r, buf, 4) < 0) return TG_ERR_IO;
    uint32_t says = le32(buf);
    if (says != (uint32_t)crc)
        return tg_fail(TG_ERR_FORMAT, "checkpoint %s: checksum mismatch: file says %08lx, contents give %08lx",
                       r->path, (unsigned long)says, (unsigned long)crc);
    return 0;
}

/* Pass 1: the records' headers only, seeking over their data, each compared
 * with the model's tensor: whether this file can load into these tensors at
 * all, at the cost of a few reads per tensor whatever the file's size. */
static int walk(reader *r, tg_tensor *const *tensors, int n, bool prefix, uint32_t count) {
    if (seek_to(r, HEADER_BYTES) < 0) return TG_ERR_IO;
    r->sum = false;
    int mismatch = 0;
    char mismatch_msg[512] = "";
    uint32_t i = 0;
    for (; i < count; i++) {
        /* Past the model's n tensors, with a mismatch found or a load that
         * wants exactly n: the file cannot fit, whatever the rest holds. So
         * at most n records are walked in a file that cannot fit. */
        if (i >= (uint32_t)n && (mismatch || !prefix)) break;
        char name[NAME_MAX_LEN + 1];
        uint32_t L, dims[TG_MAX_DIMS];
        int ndim = 0, rc;
        int64_t c = 0;
        if ((rc = get_record(r, (int)i, name, &L, &ndim, dims, &c)) < 0) return rc;
        if (!mismatch && i < (uint32_t)n && (mismatch = compare(r, (int)i, name, ndim, dims, tensors[i])) < 0)
            /* keep walking: a malformed record later on is reported first */
            snprintf(mismatch_msg, sizeof mismatch_msg, "%s", tg_last_error());
        if ((rc = skip(r, 4 * c)) < 0) return rc;
    }
    if (i == count && r->pos != r->end)
        return tg_fail(TG_ERR_FORMAT, "checkpoint %s: %lld bytes after the last of its %lu tensors", r->path,
                       (long long)(r->end - r->pos), (unsigned long)count);
    if (mismatch) return tg_fail(mismatch, "%s", mismatch_msg);
    if (prefix ? count < (uint32_t)n : count != (uint32_t)n)
        return tg_fail(TG_ERR_SHAPE, "checkpoint %s: holds %lu tensors, the model has %d", r->path,
                       (unsigned long)count, n);
    return 0;
}

/* Pass 2, for a file pass 1 found fit: every byte in order, into the checksum,
 * the first n records' data into stage. */
static int read_all(reader *r, const unsigned char *h, tg_tensor *const *tensors, int n, uint32_t count,
                    float *stage) {
    if (seek_to(r, 0) < 0) return TG_ERR_IO;
    r->sum = true;
    r->crc = crc32(0, NULL, 0);
    unsigned char again[HEADER_BYTES], buf[4 * CHUNK];
    int rc;
    if ((rc = get(r, again, HEADER_BYTES)) < 0) return rc;
    if (memcmp(again, h, HEADER_BYTES) != 0)
        return tg_fail(TG_ERR_IO, "checkpoint %s: the file changed while it was read", r->path);
    float *dst = stage;
    for (uint32_t i = 0; i < count; i++) {
        char name[NAME_MAX_LEN + 1];
        uint32_t L, dims[TG_MAX_DIMS];
        int ndim = 0;
        int64_t c = 0;
        /* checked in pass 1 already: a failure now is a file that changed meanwhile */
        if ((rc = get_record(r, (int)i, name, &L, &ndim, dims, &c)) < 0) return rc;
        if (i >= (uint32_t)n) {
            if ((rc = skip(r, 4 * c)) < 0) return rc;
            continue;
        }
        if ((rc = compare(r, (int)i, name, ndim, dims, tensors[i])) < 0) return rc;
        for (int64_t k = 0; k < c; k += CHUNK) {
            int64_t m = c - k < CHUNK ? c - k : CHUNK;
            if ((rc = get(r, buf, 4 * (size_t)m)) < 0) return rc;
            for (int64_t j = 0; j < m; j++) {
                uint32_t u = le32(buf + 4 * j);
                memcpy(dst++, &u, 4);
            }
        }
    }
    if (r->pos != r->end)
        return tg_fail(TG_ERR_IO, "checkpoint %s: the file changed while it was read", r->path);
    r->sum = false;
    if ((rc = get(r, buf, 4)) < 0) return rc;
    uint32_t says = le32(buf);
    if (says != (uint32_t)r->crc)
        return tg_fail(TG_ERR_FORMAT, "checkpoint %s: checksum mismatch: file says %08lx, contents give %08lx",
                       r->path, (unsigned long)says, (unsigned long)r->crc);
    return 0;
}

/* prefix: the file may hold more tensors after the n asked for; they are checked like the rest and ignored.
 * *by_name tells that the file was safetensors (read by name, batch counters already taken care of). */
static int load(const char *who, const char *path, tg_tensor *const *tensors, int n, bool prefix, bool *by_name) {
    int rc = check_tensors(who, path, tensors, n);
    if (rc < 0) return rc;
    struct stat st;
    int fd = tg__open_regular("checkpoint", path, &st);
    if (fd < 0) return fd;
    reader r = {.f = fdopen(fd, "rb"), .path = path};
    if (!r.f) {
        rc = tg_fail(TG_ERR_IO, "checkpoint %s: cannot open: %s", path, strerror(errno));
        close(fd);
        return rc;
    }
    float *stage = NULL;
    int64_t file_size = (int64_t)st.st_size;
    unsigned char h[HEADER_BYTES] = {0};
    size_t head = file_size < HEADER_BYTES ? (size_t)file_size : HEADER_BYTES;
    uint32_t count = 0;
    if ((rc = get(&r, h, head)) < 0) goto done;
    /* safetensors: a header's length (below 2^56: its last byte is 0) and the JSON's '{' */
    if (head >= 10 && memcmp(h, MAGIC, 8) != 0 && h[7] == 0 && h[8] == '{') {
        fclose(r.f);
        *by_name = true;
        return tg__safetensors_load(who, path, tensors, n, prefix);
    }
    if ((rc = check_header(&r, h, file_size, &count)) < 0) goto done;
    r.end = file_size - 4;

    // pass 1: the records' headers against the model, their data skipped
    if ((rc = walk(&r, tensors, n, prefix, count)) < 0) {
        /* A file that does not fit may be a damaged one (a flipped bit in a
         * name): when it is no bigger than these tensors' own checkpoint,
         * reading it costs no more than a load that works, and its checksum
         * says which it is. A bigger file is refused from its headers alone. */
        if (rc == TG_ERR_IO || (uint64_t)file_size > file_bytes(tensors, n)) goto done;
        char msg[512];
        snprintf(msg, sizeof msg, "%s", tg_last_error());
        int why = rc;
        if ((rc = check_crc(&r)) == 0) rc = tg_fail(why, "%s", msg);
        goto done;
    }

    // pass 2: the checksum over the whole file, the data into a staging buffer
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += tensors[i]->size;
    stage = tg__malloc((size_t)total * sizeof(float));
    if (!stage) {
        rc = tg_fail(TG_ERR_NOMEM, "checkpoint %s: out of memory for %lld floats", path, (long long)total);
        goto done;
    }
    if ((rc = read_all(&r, h, tensors, n, count, stage)) < 0) goto done;

    // every check passed: now, and only now, the tensors change
    const float *src = stage;
    for (int i = 0; i < n; i++) {
        memcpy(tensors[i]->data, src, (size_t)tensors[i]->size * sizeof(float));
        src += tensors[i]->size;
    }
    rc = 0;
done:
    tg__free(stage);
    fclose(r.f);
    return rc;
}

/* load, and for a file of tapegrad's format from before batch norm counted
 * (PyTorch's rule for such state dicts): when the tensors do not fit it and some
 * are batch counters, the load is tried again without them, which are then set
 * to 0. A file that fits neither way is reported as it failed with all the
 * tensors. (A safetensors file is read by name: a counter it lacks is 0 already.) */
static int load_counting(const char *who, const char *path, tg_tensor *const *tensors, int n, bool prefix) {
    bool by_name = false;
    int rc = load(who, path, tensors, n, prefix, &by_name);
    if (rc != TG_ERR_SHAPE || by_name) return rc;
    tg_tensor **rest = tg__malloc((size_t)n * sizeof *rest);
    if (!rest) return rc;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!tg__is_batch_counter(tensors[i]->name)) rest[k++] = tensors[i];
    char msg[512];
    snprintf(msg, sizeof msg, "%s", tg_last_error());
    if (k == n || k == 0 || load(who, path, rest, k, prefix, &by_name) < 0) {
        tg__free(rest);
        return tg_fail(rc, "%s", msg);
    }
    for (int i = 0; i < n; i++)
        if (tg__is_batch_counter(tensors[i]->name)) memset(tensors[i]->data, 0, (size_t)tensors[i]->size * 4);
    tg__free(rest);
    return 0;
}

int tg_checkpoint_load(const char *path, tg_tensor *const *tensors, int n) {
    return load_counting("checkpoint_load", path, tensors, n, false);
}

int tg_checkpoint_load_prefix(const char *path, tg_tensor *const *tensors, int n) {
    return load_counting("checkpoint_load_prefix", path, tensors, n, true);
}
