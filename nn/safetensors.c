/* safetensors.c: checkpoints in the safetensors format, the one PyTorch (through
 * the safetensors package), Hugging Face, tinygrad, MLX, candle and Netron read.
 *
 * FORMAT (the safetensors specification):
 *   8 bytes    N, the header's length, unsigned little-endian
 *   N bytes    a JSON object: for each tensor its name mapped to
 *              {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, offsets
 *              into the data below; and "__metadata__", a map of strings to strings
 *              (may be padded with spaces)
 *   the rest   the tensors' bytes, little-endian, row-major, every byte of it in
 *              exactly one tensor
 *
 * tapegrad writes float32 tensors in the order given, its header padded to a
 * multiple of 8 bytes, and in "__metadata__": "format": "pt" (what PyTorch's
 * writers put), "tapegrad": the format's version, "description" if given, and
 * "crc32.<name>" per tensor (zlib's CRC-32 of its bytes, 8 hex digits) so that
 * a damaged file is refused as tapegrad's own format refuses it.
 *
 * Loading checks the whole header (a length bound, strict JSON, every entry's
 * dtype, shape and offsets, duplicate names, the data covered without holes or
 * overlaps, the names and shapes against the tensors given) before it reads any
 * data, then reads and checks the data (checksums, when present), and only then
 * writes the tensors: a failed load changes nothing. F32, F16, BF16 and F64 load
 * as float32. */
#include "nn_internal.h"
#include "tapegrad_nn.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define FORMAT_VERSION "1"
#define HEADER_MAX ((uint64_t)100 << 20) /* 100 MiB, the reference implementation's bound */

// ----------------------------------------------------------------------------
// dtypes: what a file may hold, and what tapegrad reads

typedef struct {
    const char *name;
    int bytes;
} dtype_info;

static const dtype_info dtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"I16", 2}, {"U16", 2},
    {"F16", 2},  {"BF16", 2}, {"I32", 4}, {"U32", 4},    {"F32", 4},    {"F64", 8}, {"I64", 8}, {"U64", 8},
};

static const dtype_info *find_dtype(const char *name) {
    for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++)
        if (!strcmp(dtypes[i].name, name)) return &dtypes[i];
    return NULL;
}

static float from_f16(uint16_t h) {
    int e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexpf((float)(m | 1024), e - 25);
    return h & 0x8000 ? -v : v;
}

static float from_bf16(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

// ----------------------------------------------------------------------------
// save

/* float32 to float16 and bfloat16, rounding to nearest, ties to even (as PyTorch's
 * .half() and .bfloat16()): overflow becomes an infinity, NaN stays NaN. */
static uint16_t to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)(u >> 16 & 0x8000);
    uint32_t a = u & 0x7fffffff;
    if (a > 0x7f800000) return sign | 0x7e00;  /* NaN */
    if (a >= 0x477ff000) return sign | 0x7c00; /* 65520 and up round to infinity */
    if (a < 0x38800000) {                      /* below 2^-14: a multiple of 2^-24, exact scaling */
        float v;
        memcpy(&v, &a, 4);
        return sign | (uint16_t)lrintf(v * 16777216.0f);
    }
    uint32_t r = a - 0x38000000; /* the exponent's bias 127 -> 15 */
    r += 0xfff + (r >> 13 & 1);
    return sign | (uint16_t)(r >> 13);
}

static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)(u >> 16 | 0x40); /* NaN, quiet */
    return (uint16_t)((u + 0x7fff + (u >> 16 & 1)) >> 16);
}

/* What each tensor is written as. Batch norm's counter is an I64 in PyTorch's state_dict,
 * and is written so when it holds a whole number (it always does, unless a tensor of the
 * user's took its name); the rest as asked. */
enum { I64 = -1 };

static int dtype_of(const tg_tensor *x, tg_save_dtype want) {
    if (!tg__is_batch_counter(x->name)) return (int)want;
    for (int64_t i = 0; i < x->size; i++)
        if (!(fabsf(x->data[i]) <= 16777216.0f) || x->data[i] != floorf(x->data[i])) return (int)want;
    return I64;
}

static const char *dtype_name(int d) {
    return d == I64 ? "I64" : d == TG_SAVE_F16 ? "F16" : d == TG_SAVE_BF16 ? "BF16" : "F32";
}
static int dtype_bytes(int d) { return d == I64 ? 8 : d == TG_SAVE_F32 ? 4 : 2; }

/* x's bytes as dtype d, little-endian, in pieces: each written to f (if not NULL) and
 * added to *crc (if not NULL). 0 or an errno. */
static int emit(const tg_tensor *x, int d, FILE *f, uint32_t *crc) {
    unsigned char buf[8 * 1024];
    int w = dtype_bytes(d);
    for (int64_t i = 0; i < x->size;) {
        int64_t k = x->size - i < 1024 ? x->size - i : 1024;
        for (int64_t j = 0; j < k; j++) {
            float v = x->data[i + j];
            unsigned char *p = buf + j * w;
            uint32_t f32;
            memcpy(&f32, &v, 4);
            uint64_t u = d == I64            ? (uint64_t)(int64_t)v
                         : d == TG_SAVE_F16  ? to_f16(v)
                         : d == TG_SAVE_BF16 ? to_bf16(v)
                                             : f32;
            for (int b = 0; b < w; b++) p[b] = (unsigned char)(u >> (8 * b));
        }
        size_t len = (size_t)(k * w);
        if (f && fwrite(buf, 1, len, f) != len) return errno ? errno : EIO;
        if (crc) *crc = (uint32_t)crc32(*crc, buf, (uInt)len);
        i += k;
    }
    return 0;
}

typedef struct {
    tg_tensor *const *tensors;
    int n;
    tg_save_dtype dtype;
    const char *header;
    size_t header_len; /* padded */
} body;

static int write_body(FILE *f, void *ctx) {
    const body *b = ctx;
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)(b->header_len >> (8 * i));
    if (fwrite(len, 1, 8, f) != 8 || fwrite(b->header, 1, b->header_len, f) != b->header_len)
        return errno ? errno : EIO;
    for (int i = 0, err; i < b->n; i++)
        if ((err = emit(b->tensors[i], dtype_of(b->tensors[i], b->dtype), f, NULL))) return err;
    return 0;
}

/* zlib's CRC-32 of n bytes, in pieces that fit its uInt */
static uint32_t crc_of(const void *bytes, uint64_t n) {
    uLong c = crc32(0, NULL, 0);
    const unsigned char *p = bytes;
    for (; n > 0;) {
        uInt k = n > (1u << 30) ? 1u << 30 : (uInt)n;
        c = crc32(c, p, k), p += k, n -= k;
    }
    return (uint32_t)c;
}

int tg_safetensors_save(const char *path, tg_tensor *const *tensors, int n, const char *description) {
    return tg_safetensors_save_as(path, tensors, n, description, TG_SAVE_F32);
}

int tg_safetensors_save_as(const char *path, tg_tensor *const *tensors, int n, const char *description,
                           tg_save_dtype dtype) {
    if (!path) return tg_fail(TG_ERR_ARG, "safetensors_save: path is NULL");
    if (!*path) return tg_fail(TG_ERR_ARG, "safetensors_save: path is empty");
    if (dtype != TG_SAVE_F32 && dtype != TG_SAVE_F16 && dtype != TG_SAVE_BF16)
        return tg_fail(TG_ERR_ARG, "safetensors %s: dtype %d is not TG_SAVE_F32, _F16 or _BF16", path, (int)dtype);
    if (!tensors || n < 1) return tg_fail(TG_ERR_ARG, "safetensors %s: no tensors", path);
    for (int i = 0; i < n; i++) {
        if (!tensors[i]) return tg_fail(TG_ERR_ARG, "safetensors %s: tensor %d is NULL", path, i);
        if (!tensors[i]->name[0]) return tg_fail(TG_ERR_ARG, "safetensors %s: tensor %d has no name", path, i);
        if (!strcmp(tensors[i]->name, "__metadata__"))
            return tg_fail(TG_ERR_ARG, "safetensors %s: tensor %d is named __metadata__, which the format keeps", path,
                           i);
        for (int j = 0; j < i; j++)
            if (!strcmp(tensors[i]->name, tensors[j]->name))
                return tg_fail(TG_ERR_ARG, "safetensors %s: tensors %d and %d are both named %s", path, j, i,
                               tensors[i]->name);
    }
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(root, "__metadata__");
    bool ok = meta && cJSON_AddStringToObject(meta, "format", "pt") &&
              cJSON_AddStringToObject(meta, "tapegrad", FORMAT_VERSION) &&
              (!description || cJSON_AddStringToObject(meta, "description", description));
    uint64_t offset = 0;
    for (int i = 0; ok && i < n; i++) {
        const tg_tensor *x = tensors[i];
        int d = dtype_of(x, dtype);
        char key[TG_NAME_LEN + 8], crc[9];
        snprintf(key, sizeof key, "crc32.%s", x->name);
        uint32_t c = (uint32_t)crc32(0, NULL, 0);
        emit(x, d, NULL, &c);
        snprintf(crc, sizeof crc, "%08x", (unsigned)c);
        cJSON *e = cJSON_AddObjectToObject(root, x->name);
        ok = e && cJSON_AddStringToObject(meta, key, crc) && cJSON_AddStringToObject(e, "dtype", dtype_name(d));
        cJSON *shape = ok ? cJSON_AddArrayToObject(e, "shape") : NULL,
              *offs = ok ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        ok = shape && offs;
        for (int k = 0; ok && k < x->ndim; k++) ok = cJSON_AddItemToArray(shape, cJSON_CreateNumber(x->shape[k]));
        uint64_t end = offset + (uint64_t)dtype_bytes(d) * (uint64_t)x->size;
        ok = ok && cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset)) &&
             cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)end));
        offset = end;
    }
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json) return tg_fail(TG_ERR_NOMEM, "safetensors %s: out of memory", path);
    /* padded with spaces to a multiple of 8, so that the data starts aligned */
    size_t len = strlen(json), padded = (len + 7) / 8 * 8;
    char *header = tg__malloc(padded);
    if (!header) {
        cJSON_free(json);
        return tg_fail(TG_ERR_NOMEM, "safetensors %s: out of memory", path);
    }
    memcpy(header, json, len);
    memset(header + len, ' ', padded - len);
    cJSON_free(json);
    body b = {tensors, n, dtype, header, padded};
    int rc = tg__save_atomic("safetensors", path, write_body, &b);
    tg__free(header);
    return rc;
}

// ----------------------------------------------------------------------------
// load

typedef struct {
    const char *name;
    const dtype_info *dtype;
    int ndim;
    int64_t shape[8];
    uint64_t begin, end;
    int tensor; /* which of the tensors given it fills */
} entry;

static int by_begin(const void *a, const void *b) {
    const entry *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : x->end < y->end ? -1 : x->end > y->end;
}

static int by_name(const void *a, const void *b) { return strcmp(((const entry *)a)->name, ((const entry *)b)->name); }

/* a JSON number that is a whole number in [0, 2^53] */
static bool whole(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != floor(d)) return false;
    *out = (uint64_t)d;
    return true;
}

/* One tensor's entry, checked on its own. */
static int parse_entry(const char *path, const cJSON *item, entry *e) {
    e->name = item->string;
    if (!cJSON_IsObject(item))
        return tg_fail(TG_ERR_FORMAT, "safetensors %s: %s: its entry is not an object", path, e->name);
    int fields = 0;
    for (const cJSON *f = item->child; f; f = f->next) fields++;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!dt || !sh || !of || fields != 3)
        return tg_fail(TG_ERR_FORMAT, "safetensors %s: %s: needs exactly dtype, shape and data_offsets", path, e->name);
    if (!cJSON_IsString(dt) || !(e->dtype = find_dtype(dt->valuestring)))
        return tg_fail(TG_ERR_FORMAT, "safetensors %s: %s: dtype %s is not one of safetensors'", path, e->name,
                       cJSON_IsString(dt) ? dt->valuestring : "(not a string)");
    int nd = cJSON_IsArray(sh) ? cJSON_GetArraySize(sh) : -1;
    if (nd < 0 || nd > 8)
        return tg_fail(TG_ERR_FORMAT, "safetensors %s: %s: shape is not an array of at most 8 sizes", path, e->name);
    e->ndim = nd;
    uint64_t count = 1;
    for (int d = 0; d < nd; d++) {
        uint64_t v;
        if (!whole(cJSON_GetArrayItem(sh, d), &v) || v > INT32_MAX)
            return tg_fail(TG_ERR_FORMAT, "safetensors %s: %s: shape[%d] is not a size", path, e->name, d);
        e->shape[d] = (int64_t)v;
        count = v == 0 || count == 0 ? 0 : count > UINT64_MAX / v ? UINT64_MAX : count * v;
    }
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 || !whole(cJSON_GetArrayItem(of, 0), &e->begin) ||
        !whole(cJSON_GetArrayItem(of, 1), &e->end) || e->end < e->begin)
        return tg_fail(TG_ERR_FORMAT, "safetensors %s: %s: data_offsets is not [begin, end] with begin <= end", path,
                       e->name);
    if (count > UINT64_MAX / 8 || e->end - e->begin != count * (uint64_t)e->dtype->bytes)
        return tg_fail(TG_ERR_FORMAT, "safetensors %s: %s: data_offsets [%llu, %llu] hold %llu bytes, and its %s "
                       "shape needs %llu", path, e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                       (unsigned long long)(e->end - e->begin), e->dtype->name,
                       (unsigned long long)(count > UINT64_MAX / 8 ? UINT64_MAX : count * (uint64_t)e->dtype->bytes));
    return 0;
}

static int read_exact(int fd, void *p, size_t len, uint64_t at) {
    unsigned char *b = p;
    while (len) {
        ssize_t r = pread(fd, b, len > (1u << 30) ? 1u << 30 : len, (off_t)at);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return r < 0 ? errno : EIO;
        b += r, len -= (size_t)r, at += (uint64_t)r;
    }
    return 0;
}

static bool readable(const dtype_info *d) {
    return !strcmp(d->name, "F32") || !strcmp(d->name, "F16") || !strcmp(d->name, "BF16") ||
           !strcmp(d->name, "F64") || !strcmp(d->name, "I64");
}

/* The header, parsed and checked against itself, the file's size and the tensors
 * (extra: the file may hold others besides them). */
static int check_header(const char *path, cJSON *root, uint64_t data_len, tg_tensor *const *tensors, int n,
                        bool extra, entry **out, int *count, const cJSON **meta) {
    if (!cJSON_IsObject(root)) return tg_fail(TG_ERR_FORMAT, "safetensors %s: the header is not a JSON object", path);
    int m = 0;
    *meta = NULL;
    for (const cJSON *it = root->child; it; it = it->next) m += strcmp(it->string, "__metadata__") != 0;
    entry *es = tg__calloc((size_t)(m ? m : 1), sizeof *es);
    if (!es) return tg_fail(TG_ERR_NOMEM, "safetensors %s: out of memory", path);
    int k = 0, rc = 0;
    for (const cJSON *it = root->child; it && !rc; it = it->next) {
        if (!strcmp(it->string, "__metadata__")) {
            if (*meta) rc = tg_fail(TG_ERR_FORMAT, "safetensors %s: __metadata__ appears twice", path);
            else if (!cJSON_IsObject(it)) rc = tg_fail(TG_ERR_FORMAT, "safetensors %s: __metadata__ is not an object", path);
            for (const cJSON *v = it->child; v && !rc; v = v->next)
                if (!cJSON_IsString(v))
                    rc = tg_fail(TG_ERR_FORMAT, "safetensors %s: __metadata__'s %s is not a string", path, v->string);
            *meta = it;
            continue;
        }
        rc = parse_entry(path, it, &es[k]);
        es[k++].tensor = -1;
    }
    /* names: each once (JSON allows a key twice; the format does not) */
    if (!rc && m > 1) {
        qsort(es, (size_t)m, sizeof *es, by_name);
        for (int i = 1; i < m && !rc; i++)
            if (!strcmp(es[i].name, es[i - 1].name))
                rc = tg_fail(TG_ERR_FORMAT, "safetensors %s: %s appears twice", path, es[i].name);
    }
    /* the data: every byte in exactly one tensor */
    if (!rc) {
        qsort(es, (size_t)m, sizeof *es, by_begin);
        uint64_t at = 0;
        for (int i = 0; i < m && !rc; i++) {
            if (es[i].begin != at)
                rc = tg_fail(TG_ERR_FORMAT, "safetensors %s: %s starts at byte %llu of the data, where %llu was next "
                             "(%s)", path, es[i].name, (unsigned long long)es[i].begin, (unsigned long long)at,
                             es[i].begin < at ? "an overlap" : "a hole");
            at = es[i].end;
        }
        if (!rc && at != data_len)
            rc = tg_fail(TG_ERR_FORMAT, "safetensors %s: the tensors hold %llu bytes of data, and the file has %llu "
                         "after the header%s", path, (unsigned long long)at, (unsigned long long)data_len,
                         at > data_len ? " (truncated?)" : "");
    }
    /* against the tensors: the same names (as load_state_dict(strict=True)), the same shapes */
    for (int j = 0; j < n && !rc; j++) {
        int found = -1;
        for (int i = 0; i < m && found < 0; i++)
            if (!strcmp(es[i].name, tensors[j]->name)) found = i;
        if (found < 0 && tg__is_batch_counter(tensors[j]->name)) continue; /* loads as 0 */
        if (found < 0) {
            rc = tg_fail(TG_ERR_SHAPE, "safetensors %s: %s is missing from the file", path, tensors[j]->name);
            break;
        }
        entry *e = &es[found];
        bool same = e->ndim == tensors[j]->ndim;
        for (int d = 0; same && d < e->ndim; d++) same = e->shape[d] == tensors[j]->shape[d];
        if (!same) {
            char a[96] = "", b[64];
            for (int d = 0, o = 0; d < e->ndim && o < (int)sizeof a - 24; d++)
                o += snprintf(a + o, sizeof a - (size_t)o, d ? "x%lld" : "%lld", (long long)e->shape[d]);
            rc = tg_fail(TG_ERR_SHAPE, "safetensors %s: %s is %s in the file and %s here", path, e->name,
                         e->ndim ? a : "a scalar", tg_shape_str(tensors[j], b, sizeof b));
        } else if (!readable(e->dtype))
            rc = tg_fail(TG_ERR_FORMAT, "safetensors %s: %s is %s, and tapegrad reads F32, F16, BF16, F64 and I64",
                         path, e->name, e->dtype->name);
        e->tensor = j;
    }
    for (int i = 0; i < m && !rc && !extra; i++)
        if (es[i].tensor < 0)
            rc = tg_fail(TG_ERR_SHAPE, "safetensors %s: %s is in the file and not among the %d tensors given", path,
                         es[i].name, n);
    if (rc) {
        tg__free(es);
        return rc;
    }
    *out = es, *count = m;
    return 0;
}

int tg_safetensors_load(const char *path, tg_tensor *const *tensors, int n) {
    return tg__safetensors_load("safetensors_load", path, tensors, n, false);
}

int tg__safetensors_load(const char *who, const char *path, tg_tensor *const *tensors, int n, bool extra) {
    if (!path) return tg_fail(TG_ERR_ARG, "%s: path is NULL", who);
    if (!tensors || n < 1) return tg_fail(TG_ERR_ARG, "safetensors %s: no tensors", path);
    for (int i = 0; i < n; i++)
        if (!tensors[i]) return tg_fail(TG_ERR_ARG, "safetensors %s: tensor %d is NULL", path, i);
    struct stat st;
    int fd = tg__open_regular("safetensors", path, &st);
    if (fd < 0) return fd;
    uint64_t size = (uint64_t)st.st_size;
    unsigned char lenb[8];
    int err = size < 8 ? EIO : read_exact(fd, lenb, 8, 0);
    if (err) {
        close(fd);
        return size < 8 ? tg_fail(TG_ERR_FORMAT, "safetensors %s: %llu bytes is too short for the header's length",
                                  path, (unsigned long long)size)
                        : tg_fail(TG_ERR_IO, "safetensors %s: cannot read: %s", path, strerror(err));
    }
    uint64_t hlen = le64(lenb);
    if (hlen < 2 || hlen > HEADER_MAX || hlen > size - 8) {
        close(fd);
        return tg_fail(TG_ERR_FORMAT, "safetensors %s: the header's length %llu is not in [2, %llu] and within the "
                       "file's %llu bytes", path, (unsigned long long)hlen, (unsigned long long)HEADER_MAX,
                       (unsigned long long)size);
    }
    char *h = tg__malloc((size_t)hlen + 1);
    if (!h) {
        close(fd);
        return tg_fail(TG_ERR_NOMEM, "safetensors %s: out of memory for a %llu-byte header", path,
                       (unsigned long long)hlen);
    }
    if ((err = read_exact(fd, h, (size_t)hlen, 8))) {
        tg__free(h), close(fd);
        return tg_fail(TG_ERR_IO, "safetensors %s: cannot read the header: %s", path, strerror(err));
    }
    h[hlen] = 0;
    /* strict: one JSON object starting the header, then only the spaces that pad it */
    const char *end = NULL;
    cJSON *root = h[0] == '{' ? cJSON_ParseWithLengthOpts(h, (size_t)hlen, &end, false) : NULL;
    bool tail_ok = root && end;
    for (const char *p = end; tail_ok && p < h + hlen; p++) tail_ok = *p == ' ';
    if (!tail_ok) {
        int rc = tg_fail(TG_ERR_FORMAT, "safetensors %s: the header is not one JSON object (padded with spaces)%s",
                         path, root ? ": something follows it" : "");
        cJSON_Delete(root), tg__free(h), close(fd);
        return rc;
    }
    entry *es = NULL;
    int m = 0;
    const cJSON *meta = NULL;
    int rc = check_header(path, root, size - 8 - hlen, tensors, n, extra, &es, &m, &meta);
    if (rc < 0) {
        cJSON_Delete(root), tg__free(h), close(fd);
        return rc;
    }
    /* the data into staging buffers, checked, before any tensor is written */
    uint64_t base = 8 + hlen;
    float **stage = tg__calloc((size_t)m, sizeof *stage);
    unsigned char *raw = NULL;
    for (int i = 0; i < m && !rc && stage; i++) {
        entry *e = &es[i];
        tg_tensor *x = e->tensor >= 0 ? tensors[e->tensor] : NULL; /* NULL: another's, checked and left */
        size_t bytes = (size_t)(e->end - e->begin);
        raw = tg__malloc(bytes ? bytes : 1);
        stage[i] = x ? tg__malloc((size_t)x->size * sizeof(float)) : NULL;
        if (!raw || (x && !stage[i])) {
            rc = tg_fail(TG_ERR_NOMEM, "safetensors %s: out of memory for %s", path, e->name);
            break;
        }
        if ((err = read_exact(fd, raw, bytes, base + e->begin))) {
            rc = tg_fail(TG_ERR_IO, "safetensors %s: cannot read %s: %s", path, e->name, strerror(err));
            break;
        }
        char key[TG_NAME_LEN + 8];
        snprintf(key, sizeof key, "crc32.%s", e->name);
        const cJSON *want = meta ? cJSON_GetObjectItemCaseSensitive(meta, key) : NULL;
        if (want) {
            char got[9];
            snprintf(got, sizeof got, "%08x", (unsigned)crc_of(raw, bytes));
            if (strcmp(got, want->valuestring))
                rc = tg_fail(TG_ERR_FORMAT, "safetensors %s: %s is damaged: its CRC-32 is %s, and the file says %s",
                             path, e->name, got, want->valuestring);
        }
        for (int64_t j = 0; x && j < x->size && !rc; j++) {
            const unsigned char *p = raw + (size_t)j * (size_t)e->dtype->bytes;
            if (e->dtype->bytes == 4) memcpy(&stage[i][j], p, 4);
            else if (e->dtype->name[0] == 'I') stage[i][j] = (float)(int64_t)le64(p);
            else if (e->dtype->bytes == 8) {
                uint64_t u = le64(p);
                double d;
                memcpy(&d, &u, 8);
                stage[i][j] = (float)d;
            } else {
                uint16_t u = (uint16_t)(p[0] | p[1] << 8);
                stage[i][j] = e->dtype->name[0] == 'B' ? from_bf16(u) : from_f16(u);
            }
        }
        tg__free(raw);
        raw = NULL;
    }
    if (!stage) rc = tg_fail(TG_ERR_NOMEM, "safetensors %s: out of memory", path);
    if (!rc) {
        for (int j = 0; j < n; j++) /* a batch counter the file lacks (see check_header) */
            if (tg__is_batch_counter(tensors[j]->name)) memset(tensors[j]->data, 0, (size_t)tensors[j]->size * 4);
        for (int i = 0; i < m; i++)
            if (es[i].tensor >= 0)
                memcpy(tensors[es[i].tensor]->data, stage[i], (size_t)tensors[es[i].tensor]->size * sizeof(float));
    }
    tg__free(raw);
    for (int i = 0; stage && i < m; i++) tg__free(stage[i]);
    tg__free(stage), tg__free(es);
    cJSON_Delete(root), tg__free(h), close(fd);
    return rc;
}
