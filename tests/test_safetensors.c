/* test_safetensors.c: checkpoints as safetensors files: a model's state round
 * trip, the file's layout as the format specifies it, F16/BF16/F64 converted on
 * load, and every malformed file refused with nothing changed. */
#include "check.h"
#include "tapegrad_nn.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static const char *path_of(const char *name) {
    static char p[8][128];
    static int k;
    k = (k + 1) % 8;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

/* A file made by hand: the header's JSON (not padded), then the data bytes. */
static const char *spit(const char *name, const char *json, const void *data, size_t n) {
    const char *p = path_of(name);
    FILE *f = fopen(p, "wb");
    unsigned char len[8];
    uint64_t L = strlen(json);
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)(L >> (8 * i));
    CHECK(f && fwrite(len, 1, 8, f) == 8 && fwrite(json, 1, L, f) == L && (n == 0 || fwrite(data, 1, n, f) == n));
    if (f) fclose(f);
    return p;
}

static void round_trip(void) {
    tg_model *m = tg_model_new(3), *fresh = tg_model_new(4);
    for (tg_model *x = m; x; x = x == m ? fresh : NULL) {
        tg_model_conv2d(x, 1, 4, 3, 1, 1, false);
        tg_model_batch_norm(x, 4);
        tg_model_relu(x);
        tg_model_flatten(x);
        tg_model_linear(x, 4 * 28 * 28, 10, true);
    }
    tg_tensor **a, **b;
    int n = tg_model_state(m, &a);
    CHECK_INT(tg_model_state(fresh, &b), n);
    a[2]->data[1] = 0.25f; /* a running mean that is not the initial zero */
    int c = n - 1; /* the state: parameters, then buffers; batch norm's counter is the last */
    CHECK(!strcmp(a[c]->name, "1.num_batches_tracked"));
    a[c]->data[0] = 3; /* three batches counted */
    const char *p = path_of("net.safetensors");
    CHECK_INT(tg_safetensors_save(p, a, n, "conv, bn, relu, flatten, linear"), 0);
    CHECK_INT(tg_safetensors_load(p, b, n), 0);
    bool same = true;
    for (int i = 0; i < n; i++) same &= !memcmp(a[i]->data, b[i]->data, (size_t)a[i]->size * 4);
    CHECK(same);

    /* the layout: 8-byte length, a JSON header padded to 8 with spaces, then the data */
    FILE *f = fopen(p, "rb");
    unsigned char len[8];
    CHECK(f && fread(len, 1, 8, f) == 8);
    uint64_t L = 0;
    for (int i = 7; i >= 0; i--) L = L << 8 | len[i];
    CHECK(L % 8 == 0 && L < 4096);
    char h[4096] = {0};
    CHECK(fread(h, 1, (size_t)L, f) == L);
    fclose(f);
    CHECK(h[0] == '{');
    CHECK(strstr(h, "\"__metadata__\":{\"format\":\"pt\",\"tapegrad\":\"1\",\"description\":\"conv, bn, relu, flatten, "
                    "linear\",\"crc32.0.weight\":\"") != NULL);
    CHECK(strstr(h, "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[4,1,3,3],\"data_offsets\":[0,144]}") != NULL);
    CHECK(strstr(h, "\"1.running_mean\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":") != NULL);
    /* the counter as PyTorch's state_dict holds it: an I64 scalar */
    CHECK(strstr(h, "\"1.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[") != NULL);
    struct stat st;
    uint64_t bytes = 0;
    for (int i = 0; i < n; i++) bytes += (i == c ? 8 : 4) * (uint64_t)a[i]->size;
    CHECK(stat(p, &st) == 0 && (uint64_t)st.st_size == 8 + L + bytes);
    const char *at = strstr(h, "\"1.num_batches_tracked\"");
    unsigned long long begin = 0;
    CHECK(at && sscanf(strstr(at, "data_offsets\":[") + 15, "%llu", &begin) == 1);
    unsigned char i64[8] = {0};
    f = fopen(p, "rb");
    CHECK(f && fseek(f, (long)(8 + L + begin), SEEK_SET) == 0 && fread(i64, 1, 8, f) == 8);
    fclose(f);
    CHECK(i64[0] == 3 && !memcmp(i64 + 1, "\0\0\0\0\0\0\0", 7));

    /* a damaged byte of data is refused by its checksum, and nothing changes */
    f = fopen(p, "r+b");
    CHECK(f && fseek(f, (long)(8 + L + 5), SEEK_SET) == 0 && fputc(0x5a, f) != EOF);
    fclose(f);
    b[0]->data[0] = 42;
    CHECK_INT(tg_safetensors_load(p, b, n), TG_ERR_FORMAT);
    CHECK_MSG(tg_last_error(), "0.weight is damaged: its CRC-32 is ");
    CHECK(b[0]->data[0] == 42);
    /* the wrong net: names the first difference */
    CHECK_INT(tg_safetensors_save(p, a, n, NULL), 0);
    CHECK_INT(tg_safetensors_load(p, b, n - 1), TG_ERR_SHAPE);
    CHECK_MSG(tg_last_error(), "is in the file and not among the");
    tg_tensor *odd = tg_tensor_new(2, (int[]){3, 3});
    tg_tensor_set_name(odd, "0.weight");
    tg_tensor *one[1] = {odd};
    CHECK_INT(tg_safetensors_load(p, one, 1), TG_ERR_SHAPE);
    CHECK_MSG(tg_last_error(), "safetensors ");
    tg_tensor_set_name(odd, "nope");
    CHECK_INT(tg_safetensors_load(p, one, 1), TG_ERR_SHAPE);
    CHECK_MSG(tg_last_error(), "nope is missing from the file");
    /* saving: names unique, not __metadata__ */
    tg_tensor *two[2] = {a[0], a[0]};
    CHECK_INT(tg_safetensors_save(path_of("x.safetensors"), two, 2, NULL), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "tensors 0 and 1 are both named 0.weight");
    tg_tensor_set_name(odd, "__metadata__");
    CHECK_INT(tg_safetensors_save(path_of("x.safetensors"), one, 1, NULL), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "named __metadata__, which the format keeps");
    CHECK_INT(tg_safetensors_save("/dev/null", a, n, NULL), TG_ERR_IO);
    CHECK_MSG(tg_last_error(), "not a regular file (a character device)");
    CHECK_INT(tg_safetensors_load("/dev/null", b, n), TG_ERR_IO);
    tg_tensor_free(odd);

    /* tg_checkpoint_load reads safetensors too, by name; _prefix lets the file hold more */
    b[0]->data[0] = 42;
    CHECK_INT(tg_checkpoint_load(p, b, n), 0);
    CHECK(b[0]->data[0] == a[0]->data[0] && b[c]->data[0] == 3);
    CHECK_INT(tg_checkpoint_load(p, b + 1, n - 1), TG_ERR_SHAPE);
    CHECK_MSG(tg_last_error(), "0.weight is in the file and not among the");
    b[1]->data[0] = 42;
    CHECK_INT(tg_checkpoint_load_prefix(p, b + 1, n - 1), 0);
    CHECK(b[1]->data[0] == a[1]->data[0]);
    /* a file without the counter (PyTorch's from before it counted, or a user's writer):
     * loads with the counter at 0, as PyTorch's batch norm loads it */
    tg_tensor *nocount[8];
    int k = 0;
    for (int i = 0; i < n; i++)
        if (i != c) nocount[k++] = a[i];
    CHECK_INT(tg_safetensors_save(p, nocount, k, NULL), 0);
    CHECK_INT(tg_safetensors_load(p, b, n), 0);
    CHECK(b[c]->data[0] == 0 && b[2]->data[1] == 0.25f);
    b[c]->data[0] = 5;
    CHECK_INT(tg_checkpoint_load(p, b, n), 0);
    CHECK(b[c]->data[0] == 0);
    /* the same from tapegrad's own format */
    CHECK_INT(tg_checkpoint_save(p, nocount, k), 0);
    b[c]->data[0] = 5, b[2]->data[1] = 0;
    CHECK_INT(tg_checkpoint_load(p, b, n), 0);
    CHECK(b[c]->data[0] == 0 && b[2]->data[1] == 0.25f);
    /* a file that fits neither way keeps the first message */
    CHECK_INT(tg_checkpoint_load(p, b + 1, n - 1), TG_ERR_SHAPE);
    CHECK_MSG(tg_last_error(), "checkpoint ");
    unlink(p);
    tg_model_free(m), tg_model_free(fresh);
}

/* F16, BF16, F64 and I64 load as float32; the values are exact in float. */
static void dtypes(void) {
    const unsigned char data[] = {
        0x00, 0x3c, 0x00, 0xc0, 0x55, 0x35,             /* f16: 1, -2, 0.333251953125 */
        0x80, 0x3f, 0x49, 0x40,                         /* bf16: 1, 3.140625 */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xe0, 0x3f, /* f64: 0.5 */
        0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* i64: -3 */
    };
    const char *p = spit("dtypes.safetensors",
                         "{\"h\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,6]},"
                         "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[6,10]},"
                         "\"d\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[10,18]},"
                         "\"i\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[18,26]}}",
                         data, sizeof data);
    tg_tensor *h = tg_tensor_new(1, (int[]){3}), *b = tg_tensor_new(1, (int[]){2}), *d = tg_tensor_new(0, NULL),
              *i = tg_tensor_new(1, (int[]){1});
    tg_tensor_set_name(h, "h"), tg_tensor_set_name(b, "b"), tg_tensor_set_name(d, "d"), tg_tensor_set_name(i, "i");
    tg_tensor *ts[4] = {d, h, i, b}; /* by name, in any order */
    CHECK_INT(tg_safetensors_load(p, ts, 4), 0);
    CHECK(h->data[0] == 1 && h->data[1] == -2 && h->data[2] == 0.333251953125f);
    CHECK(b->data[0] == 1 && b->data[1] == 3.140625f);
    CHECK(d->data[0] == 0.5f && i->data[0] == -3);
    tg_tensor_free(h), tg_tensor_free(b), tg_tensor_free(d), tg_tensor_free(i);
}

/* Saving as F16 and BF16 rounds as PyTorch's .half() and .bfloat16(): the bits PyTorch 1.13 printed,
 *   v = torch.tensor([1/3, 65504., 65520., 1e-8, 6e-8, -2.5, float('inf'), 1.00048828125, 3e38, 1e-40, -0.0,
 *                     1.00390625])
 *   v.half().view(torch.int16), v.bfloat16().view(torch.int16)
 * (1.00048828125 and 1.00390625 are ties, which go to the even neighbour: down) and a NaN stays a NaN.
 * Loading gives those values back as float32. */
static void half_precision(void) {
    const float v[13] = {1.0f / 3, 65504, 65520,  1e-8f, 6e-8f, -2.5f, INFINITY, 1.00048828125f, 3e38f, 1e-40f,
                         -0.0f,    1.00390625f, NAN};
    const uint16_t f16[12] = {0x3555, 0x7bff, 0x7c00, 0x0000, 0x0001, 0xc100, 0x7c00, 0x3c00, 0x7c00, 0x0000, 0x8000, 0x3c04};
    const uint16_t bf16[12] = {0x3eab, 0x4780, 0x4780, 0x322c, 0x3381, 0xc020, 0x7f80, 0x3f80, 0x7f62, 0x0001, 0x8000, 0x3f80};
    tg_tensor *x = tg_tensor_new(1, (int[]){13}), *c = tg_tensor_new(0, NULL);
    tg_tensor_set_name(x, "x"), tg_tensor_set_name(c, "2.num_batches_tracked");
    memcpy(x->data, v, sizeof v);
    c->data[0] = 9;
    tg_tensor *ts[2] = {x, c};
    for (int k = 0; k < 2; k++) {
        const char *p = path_of(k ? "bf16.safetensors" : "f16.safetensors");
        CHECK_INT(tg_safetensors_save_as(p, ts, 2, NULL, k ? TG_SAVE_BF16 : TG_SAVE_F16), 0);
        FILE *f = fopen(p, "rb");
        unsigned char b[4096];
        size_t got = f ? fread(b, 1, sizeof b, f) : 0;
        if (f) fclose(f);
        uint64_t L = 0;
        for (int i = 7; i >= 0; i--) L = L << 8 | b[i];
        CHECK(got == 8 + L + 26 + 8); /* thirteen 2-byte values, then the counter, still I64 */
        char *h = (char *)b + 8;
        CHECK(strstr(h, k ? "\"x\":{\"dtype\":\"BF16\",\"shape\":[13],\"data_offsets\":[0,26]}"
                          : "\"x\":{\"dtype\":\"F16\",\"shape\":[13],\"data_offsets\":[0,26]}") != NULL);
        CHECK(strstr(h, "\"2.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[26,34]}") != NULL);
        const unsigned char *d = b + 8 + L;
        int wrong = 0;
        for (int i = 0; i < 12; i++) wrong += (d[2 * i] | d[2 * i + 1] << 8) != (k ? bf16 : f16)[i];
        uint16_t nan = (uint16_t)(d[24] | d[25] << 8);
        CHECK_INT(wrong, 0);
        CHECK(k ? (nan & 0x7f80) == 0x7f80 && (nan & 0x7f) : (nan & 0x7c00) == 0x7c00 && (nan & 0x3ff));
        CHECK(d[26] == 9);
        /* loaded back: the rounded values as float32 */
        CHECK_INT(tg_checkpoint_load(p, ts, 2), 0);
        CHECK(x->data[0] == (k ? 0.333984375f : 0.333251953125f) && x->data[2] == (k ? 65536.0f : INFINITY));
        CHECK(isnan(x->data[12]) && c->data[0] == 9);
        memcpy(x->data, v, sizeof v);
        unlink(p);
    }
    CHECK_INT(tg_safetensors_save_as(path_of("x.safetensors"), ts, 2, NULL, (tg_save_dtype)7), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "dtype 7 is not TG_SAVE_F32, _F16 or _BF16");
    tg_tensor_free(x), tg_tensor_free(c);
}

/* Malformed files: each refused with a message naming the file and what is wrong. */
static void malformed(void) {
    tg_tensor *w = tg_tensor_new(1, (int[]){2});
    tg_tensor_set_name(w, "w");
    w->data[0] = 7, w->data[1] = 8;
    tg_tensor *ts[1] = {w};
    const float two[3] = {1, 2, 3};
    static const struct {
        const char *json;
        size_t bytes;
        int code;
        const char *msg;
    } cases[] = {
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0, NULL},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, TG_ERR_FORMAT,
         "the tensors hold 8 bytes of data, and the file has 4 after the header (truncated?)"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, TG_ERR_FORMAT,
         "the tensors hold 8 bytes of data, and the file has 12"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, TG_ERR_FORMAT,
         "w starts at byte 4 of the data, where 0 was next (a hole)"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"v\":{\"dtype\":\"F32\",\"shape\":[1],"
         "\"data_offsets\":[4,8]}}", 8, TG_ERR_FORMAT, "starts at byte 4 of the data, where 8 was next (an overlap)"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"w\":{\"dtype\":\"F32\",\"shape\":[2],"
         "\"data_offsets\":[8,16]}}", 16, TG_ERR_FORMAT, "w appears twice"},
        {"{\"w\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, TG_ERR_FORMAT,
         "w: dtype F33 is not one of safetensors'"},
        {"{\"w\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, TG_ERR_FORMAT,
         "w is I32, and tapegrad reads F32, F16, BF16, F64 and I64"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, TG_ERR_FORMAT,
         "w: data_offsets [0, 8] hold 8 bytes, and its F32 shape needs 12"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, TG_ERR_FORMAT,
         "w: shape[0] is not a size"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, TG_ERR_FORMAT,
         "w: data_offsets is not [begin, end] with begin <= end"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8, TG_ERR_FORMAT,
         "w: needs exactly dtype, shape and data_offsets"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"__metadata__\":{\"a\":1}}", 8,
         TG_ERR_FORMAT, "__metadata__'s a is not a string"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", 8, TG_ERR_FORMAT,
         "the header is not one JSON object (padded with spaces): something follows it"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}   ", 8, TG_ERR_FORMAT,
         "the header is not one JSON object"},
        {"[1,2]", 8, TG_ERR_FORMAT, "the header is not one JSON object"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"__metadata__\":{\"crc32.w\":\"00000000\"}}",
         8, TG_ERR_FORMAT, "w is damaged: its CRC-32 is "},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const char *p = spit("bad.safetensors", cases[c].json, two, cases[c].bytes > 12 ? 12 : cases[c].bytes);
        if (cases[c].bytes > 12) { /* 16 bytes of data: append 4 more */
            FILE *f = fopen(p, "ab");
            CHECK(f && fwrite(two, 1, 4, f) == 4);
            fclose(f);
        }
        w->data[0] = 7;
        tg_clear_error();
        CHECK_INT(tg_safetensors_load(p, ts, 1), cases[c].code);
        if (cases[c].msg) {
            char want[256];
            snprintf(want, sizeof want, "safetensors %s: ", p);
            CHECK_MSG(tg_last_error(), want);
            CHECK_MSG(tg_last_error(), cases[c].msg);
            CHECK(w->data[0] == 7); /* nothing changed */
        } else
            CHECK(w->data[0] == 1 && w->data[1] == 2);
    }
    /* the header's length: beyond the file, zero, or a small file claiming 2^63 */
    const char *p = path_of("len.safetensors");
    unsigned char huge[16] = {0, 0, 0, 0, 0, 0, 0, 0x80, '{', '}'};
    FILE *f = fopen(p, "wb");
    CHECK(f && fwrite(huge, 1, 10, f) == 10);
    fclose(f);
    CHECK_INT(tg_safetensors_load(p, ts, 1), TG_ERR_FORMAT);
    CHECK_MSG(tg_last_error(), "the header's length 9223372036854775808 is not in [2, 104857600]");
    f = fopen(p, "wb");
    CHECK(f && fwrite(huge, 1, 5, f) == 5);
    fclose(f);
    CHECK_INT(tg_safetensors_load(p, ts, 1), TG_ERR_FORMAT);
    CHECK_MSG(tg_last_error(), "5 bytes is too short for the header's length");
    unlink(p);
    unlink(path_of("bad.safetensors"));
    tg_tensor_free(w);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", "/tmp/tapegrad-st-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    round_trip();
    dtypes();
    half_precision();
    malformed();
    unlink(path_of("dtypes.safetensors"));
    unlink(path_of("x.safetensors"));
    CHECK(rmdir(dir) == 0);
    CHECK_DONE();
}
