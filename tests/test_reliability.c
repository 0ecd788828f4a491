/* test_reliability.c: hostile inputs each get a clear error (and no crash,
 * leak or huge allocation); a checkpoint save killed midway leaves the old
 * file loadable; a long training loop keeps a flat memory footprint. */
#include "check.h"
#include "internal.h" /* tg__alloc_count */
#include "tapegrad_nn.h"
#include <glob.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[] = "/tmp/tg_rel_XXXXXX";

static const char *path(const char *name) {
    static char p[8][128];
    static int k;
    k = (k + 1) % 8;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static void write_file(const char *name, const void *data, size_t n) {
    FILE *f = fopen(path(name), "wb");
    fwrite(data, 1, n, f);
    fclose(f);
}

/* an IDX header: magic 0 0 8 ndim, then big-endian dimensions */
static size_t idx_header(uint8_t *h, int ndim, const uint32_t *dims) {
    h[0] = h[1] = 0, h[2] = 8, h[3] = (uint8_t)ndim;
    for (int i = 0; i < ndim; i++)
        for (int b = 0; b < 4; b++) h[4 + 4 * i + b] = (uint8_t)(dims[i] >> (24 - 8 * b));
    return 4 + 4 * (size_t)ndim;
}

static void make_files(void) {
    uint8_t buf[4096];
    memset(buf, 7, sizeof buf);
    size_t h = idx_header(buf, 3, (uint32_t[]){3, 4, 4});
    write_file("truncated-idx3-ubyte", buf, h + 20); /* needs 48 bytes of data */
    write_file("ok-images-idx3-ubyte", buf, h + 48);
    buf[2] = 9;
    write_file("badtype-idx3-ubyte", buf, h + 48);
    buf[2] = 8;
    memcpy(buf, "\x1f\x8b\x00\x00", 4);
    write_file("corrupt-idx3-ubyte", buf, h + 48); /* a gzip magic with garbage behind it */
    memcpy(buf, "PK\x03\x04", 4);
    write_file("magic-idx3-ubyte", buf, h + 48);
    h = idx_header(buf, 3, (uint32_t[]){4000000000u, 60000, 60000});
    write_file("absurd-idx3-ubyte", buf, h + 16);
    /* a dataset directory whose labels count differs from the images count */
    mkdir(path("mismatch"), 0755);
    h = idx_header(buf, 3, (uint32_t[]){3, 2, 2});
    write_file("mismatch/train-images-idx3-ubyte", buf, h + 12);
    h = idx_header(buf, 1, (uint32_t[]){2});
    write_file("mismatch/train-labels-idx1-ubyte", buf, h + 2);
    write_file("empty.png", "", 0);
    write_file("text.png", "hello, this is not a picture\n", 29);
    write_file("truncated.png", "\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x1c", 20);
    /* a PNG header claiming 20000 x 20000 pixels, then nothing */
    write_file("huge.png", "\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x4e\x20\0\0\x4e\x20\x08\0\0\0\0\0\0\0\0", 33);
}

// ----------------------------------------------------------------------------
// the table: each entry provokes one bad input and returns 0 if it was refused

typedef struct {
    const char *input, *want; /* what was given, a substring of the message */
    int (*run)(void);
} bad_input;

static int idx_of(const char *name) {
    tg_idx idx;
    return tg_idx_load(&idx, path(name));
}
static int truncated_idx(void) { return idx_of("truncated-idx3-ubyte"); }
static int corrupt_idx(void) { return idx_of("corrupt-idx3-ubyte"); }
static int wrong_magic(void) { return idx_of("magic-idx3-ubyte"); }
static int wrong_type(void) { return idx_of("badtype-idx3-ubyte"); }
static int absurd_dims(void) { return idx_of("absurd-idx3-ubyte"); }
static int count_mismatch(void) { return tg_dataset_new(path("mismatch"), "train", 0, 0, 1) ? 0 : -1; }

static tg_tensor *small_state[3];
static int checkpoint_other_arch(void) {
    tg_tensor *other[1] = {tg_tensor_new(2, (int[]){5, 5})};
    tg_tensor_set_name(other[0], "0.weight");
    int rc = tg_checkpoint_load(path("good.ckpt"), other, 1);
    tg_tensor_free(other[0]);
    return rc;
}
static int checkpoint_version(void) {
    FILE *f = fopen(path("good.ckpt"), "rb");
    uint8_t b[4096];
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    b[8] = 2; /* the version (1) follows the 8-byte magic */
    write_file("version.ckpt", b, n);
    return tg_checkpoint_load(path("version.ckpt"), small_state, 3);
}
static int checkpoint_truncated(void) {
    FILE *f = fopen(path("good.ckpt"), "rb");
    uint8_t b[4096];
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    write_file("truncated.ckpt", b, n / 2);
    return tg_checkpoint_load(path("truncated.ckpt"), small_state, 3);
}

static int nan_input(void) {
    tg_tape *t = tg_tape_new();
    tg_tape_check_finite(t, true);
    tg_tensor *w = tg_param_new(2, (int[]){3, 4});
    tg_tensor *x = tg_tensor_tape(t, 2, (int[]){2, 4});
    x->data[5] = NAN;
    tg_tensor *y = tg_relu(t, tg_linear(t, x, w, NULL));
    tg_tensor_free(w);
    tg_tape_free(t);
    return y ? 0 : -1;
}

static tg_tape *tape;
static tg_tensor *img;
static int dropout_p(void) { return tg_dropout(tape, img, 1.5f, true) ? 0 : -1; }
static int zero_stride(void) {
    tg_tensor *w = tg_tensor_tape(tape, 4, (int[]){4, 3, 3, 3});
    return tg_conv2d(tape, img, w, NULL, 0, 1, 1, 1) ? 0 : -1;
}
static int negative_stride(void) { return tg_max_pool2d(tape, img, 2, -2, 0) ? 0 : -1; }
static int kernel_too_big(void) {
    tg_tensor *w = tg_tensor_tape(tape, 4, (int[]){4, 3, 9, 9});
    return tg_conv2d(tape, img, w, NULL, 1, 1, 1, 1) ? 0 : -1;
}
static int bn_one_value(void) {
    tg_tensor *x = tg_tensor_tape(tape, 4, (int[]){1, 3, 1, 1}), *g = tg_tensor_tape(tape, 1, (int[]){3});
    return tg_batch_norm(tape, x, g, g, NULL, NULL, true, 0.1f, 1e-5f) ? 0 : -1;
}
static int label_range(void) {
    tg_tensor *x = tg_tensor_tape(tape, 2, (int[]){2, 10});
    return tg_cross_entropy(tape, x, (int32_t[]){3, 12}) ? 0 : -1;
}
static int image_of(const char *name) {
    tg_tensor *x = tg_image_load(path(name), NULL);
    tg_tensor_free(x);
    return x ? 0 : -1;
}
static int empty_image(void) { return image_of("empty.png"); }
static int text_image(void) { return image_of("text.png"); }
static int truncated_image(void) { return image_of("truncated.png"); }
static int huge_image(void) { return image_of("huge.png"); }

static const bad_input table[] = {
    {"truncated IDX file", "truncated", truncated_idx},
    {"corrupt IDX file (gzip magic, garbage)", "corrupt-idx3-ubyte", corrupt_idx},
    {"IDX with a wrong magic", "magic", wrong_magic},
    {"IDX of float type", "type", wrong_type},
    {"IDX with absurd dimensions", "absurd-idx3-ubyte", absurd_dims},
    {"image and label counts differ", "labels", count_mismatch},
    {"checkpoint from another architecture", "0.weight", checkpoint_other_arch},
    {"checkpoint of another format version", "version", checkpoint_version},
    {"truncated checkpoint", "truncated", checkpoint_truncated},
    {"NaN in the input (finite check on)", "linear", nan_input},
    {"dropout p = 1.5", "dropout: p = 1.5 is outside [0, 1]", dropout_p},
    {"conv2d stride 0", "need stride >= 1", zero_stride},
    {"max_pool2d stride -2", "stride >= 1", negative_stride},
    {"kernel larger than the padded input", "larger than the padded input", kernel_too_big},
    {"batch norm, one value per channel, training", "more than one value per channel", bn_one_value},
    {"label out of range", "label 12 of sample 1 is outside [0, 10)", label_range},
    {"empty file given to predict", "empty.png", empty_image},
    {"text file given to predict", "text.png", text_image},
    {"truncated PNG given to predict", "truncated.png", truncated_image},
    {"PNG claiming 20000x20000 pixels", "20000x20000 pixels is more than", huge_image},
};

static void bad_inputs(void) {
    uint64_t before = tg__alloc_count();
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        tg_clear_error();
        int rc = table[i].run();
        printf("%-44s -> %s\n", table[i].input, rc < 0 ? tg_last_error() : "(accepted!)");
        CHECK(rc < 0);
        CHECK_MSG(tg_last_error(), table[i].want);
    }
    printf("%llu allocations over the whole table\n", (unsigned long long)(tg__alloc_count() - before));
}

// ----------------------------------------------------------------------------
// crash safety: SIGKILL a process while it saves, the previous checkpoint still loads

static void crash_safety(void) {
    enum { BIG = 1 << 20 }; /* 4 MiB of floats: a save takes a while */
    tg_tensor *w = tg_tensor_new(1, (int[]){BIG});
    tg_tensor_set_name(w, "w");
    for (int i = 0; i < BIG; i++) w->data[i] = 1;
    const char *ck = path("crash.ckpt");
    CHECK_INT(tg_checkpoint_save(ck, &w, 1), 0);
    int loads = 0, kills = 8;
    for (int k = 0; k < kills; k++) {
        pid_t pid = fork();
        if (pid == 0) { /* the child saves new versions without end */
            for (float v = 2;; v++) {
                for (int i = 0; i < BIG; i++) w->data[i] = v;
                tg_checkpoint_save(ck, &w, 1);
            }
        }
        struct timespec ts = {0, 20000000L + 13000000L * k}; /* kill at different moments */
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        int rc = tg_checkpoint_load(ck, &w, 1);
        bool whole = rc == 0;
        for (int i = 1; whole && i < BIG; i += 4099) whole = w->data[i] == w->data[0]; /* one version, not a mix */
        loads += whole;
    }
    printf("crash safety: %d of %d saves killed midway left a checkpoint that loads whole (last holds %g)\n", loads,
           kills, (double)w->data[0]);
    CHECK_INT(loads, kills);
    /* the next save removes the temporary files the killed processes left */
    CHECK_INT(tg_checkpoint_save(ck, &w, 1), 0);
    glob_t g;
    CHECK_INT(glob(path("crash.ckpt.tmp-*"), 0, NULL, &g), GLOB_NOMATCH);
    globfree(&g);
    tg_tensor_free(w);
}

// ----------------------------------------------------------------------------
// memory: 1000 training steps, flat resident set

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f && fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
    if (f) fclose(f);
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static void flat_memory(void) {
    tg_model *m = tg_model_new(3);
    tg_model_conv2d(m, 1, 8, 3, 1, 1, false);
    tg_model_batch_norm(m, 8);
    tg_model_relu(m);
    tg_model_residual(m, 8, 8, 1, 1);
    tg_model_max_pool(m, 2, 2);
    tg_model_flatten(m);
    tg_model_dropout(m, 0.3f);
    tg_model_linear(m, 8 * 6 * 6, 10, true);
    tg_tensor **ps;
    int np = tg_model_params(m, &ps);
    tg_sgd *o = tg_sgd_new(ps, np, (tg_sgd_opts){0.01f, 0.9f, 0, 1e-4f, false});
    tg_tape *t = tg_tape_new();
    int32_t labels[16];
    long at100 = 0;
    uint64_t allocs = 0;
    for (int step = 0; step < 1000; step++) {
        if (step == 100) at100 = rss_kib(), allocs = tg__alloc_count();
        tg_tensor *x = tg_tensor_tape(t, 4, (int[]){16, 1, 12, 12});
        for (int i = 0; i < x->size; i++) x->data[i] = (float)((i * 31 + step * 7) % 11) / 11.0f;
        for (int i = 0; i < 16; i++) labels[i] = (i + step) % 10;
        tg_tensor *loss = tg_cross_entropy(t, tg_model_forward(m, t, x), labels);
        if (!loss || tg_backward(t, loss) < 0) {
            CHECK(0);
            break;
        }
        tg_sgd_step(o);
        tg_sgd_zero_grad(o);
        tg_tape_reset(t);
    }
    long at1000 = rss_kib();
    printf("1000 steps: resident %ld KiB at step 100, %ld KiB at step 1000; %llu allocations in between\n", at100,
           at1000, (unsigned long long)(tg__alloc_count() - allocs));
    CHECK(at1000 - at100 < 512);
    CHECK_INT(tg__alloc_count() - allocs, 0);
    tg_tape_free(t);
    tg_sgd_free(o);
    tg_model_free(m);
}

int main(void) {
    CHECK(mkdtemp(dir) != NULL);
    make_files();
    for (int i = 0; i < 3; i++) {
        small_state[i] = tg_tensor_new(1, (int[]){4 + i});
        char name[16];
        snprintf(name, sizeof name, "t%d", i);
        tg_tensor_set_name(small_state[i], name);
    }
    tg_tensor_set_name(small_state[0], "0.weight");
    CHECK_INT(tg_checkpoint_save(path("good.ckpt"), small_state, 3), 0);
    tape = tg_tape_new();
    img = tg_tensor_tape(tape, 4, (int[]){2, 3, 5, 5});
    bad_inputs();
    tg_tape_free(tape);
    for (int i = 0; i < 3; i++) tg_tensor_free(small_state[i]);
    crash_safety();
    flat_memory();
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_INT(system(cmd), 0);
    CHECK_DONE();
}
