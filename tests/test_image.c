/* test_image.c: pictures as tensors (tg_image_load and its batch, resize and
 * normalisation on hand-computed pixels; PNGs of tensors and grids read back;
 * unreadable files are errors naming the file). And the predict demo's digits
 * (demos/digit.c): dark on light and light on dark, grey, colour or transparent
 * give the same 28x28 digit; its longer side is 20 pixels and its centre of
 * mass (14,14); blank pictures are errors, a dot is doubted; a model's state
 * read back from a checkpoint that also holds the optimizer's. */
#include "check.h"
#include "digit.h"
#include "stb_image.h"
#include "stb_image_write.h"
#include "tapegrad_nn.h"
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static const char *path_of(const char *name) {
    static char p[4][400];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

// ----------------------------------------------------------------------------
// pictures: a "7" (a bar and a slanted stroke) drawn 4x4 supersampled

static bool in_seven(double u, double v) { /* u, v in [0,1): across, down */
    if (u >= 0.30 && u < 0.70 && v >= 0.20 && v < 0.30) return true;
    double t = (v - 0.25) / 0.55, cu = 0.68 - 0.25 * t; /* the stroke's centre line, top right to bottom left */
    return t >= 0 && t <= 1 && fabs(u - cu) < 0.045;
}

/* A blob in the top left corner and a hair running to the bottom right: the
 * centre of mass is far from the box's centre. */
static bool in_lopsided(double u, double v) {
    if (u >= 0.2 && u < 0.45 && v >= 0.2 && v < 0.45) return true;
    return fabs(u - v) < 0.01 && u >= 0.2 && u < 0.8;
}

/* How much of pixel (x,y) of a w x h picture the shape covers, 0 to 1. */
static double cover(bool (*shape)(double, double), int x, int y, int w, int h) {
    int n = 0;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) n += shape((x + (j + 0.5) / 4) / w, (y + (i + 0.5) / 4) / h);
    return n / 16.0;
}

/* Writes name.png: the shape in ink over paper, comp channels (1 grey, 3 RGB,
 * 4 RGBA); with 4 channels the paper is transparent and alpha is the coverage.
 */
static const char *draw(const char *name, bool (*shape)(double, double), int w, int h, int comp,
                        const unsigned char *paper, const unsigned char *ink) {
    unsigned char *img = malloc((size_t)w * h * comp);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double c = cover(shape, x, y, w, h);
            unsigned char *p = img + ((size_t)y * w + x) * comp;
            for (int k = 0; k < comp && k < 3; k++) p[k] = (unsigned char)lround(paper[k] + (ink[k] - paper[k]) * c);
            if (comp == 4) p[3] = (unsigned char)lround(255 * c), p[0] = ink[0], p[1] = ink[1], p[2] = ink[2];
        }
    const char *path = path_of(name);
    CHECK(stbi_write_png(path, w, h, comp, img, w * comp) != 0);
    free(img);
    return path;
}

static const unsigned char white[3] = {255, 255, 255}, black[3] = {0, 0, 0};

/* The digit's bounding box and centre of mass; checks the longer side is 20. */
static void check_geometry(const char *what, const uint8_t *p, bool clipped) {
    int x0 = 28, x1 = -1, y0 = 28, y1 = -1;
    double mass = 0, cx = 0, cy = 0;
    for (int y = 0; y < 28; y++)
        for (int x = 0; x < 28; x++)
            if (p[y * 28 + x]) {
                x0 = x < x0 ? x : x0, x1 = x > x1 ? x : x1, y0 = y < y0 ? y : y0, y1 = y > y1 ? y : y1;
                mass += p[y * 28 + x], cx += (double)p[y * 28 + x] * x, cy += (double)p[y * 28 + x] * y;
            }
    int bw = x1 - x0 + 1, bh = y1 - y0 + 1;
    printf("%s: box %dx%d at (%d,%d), centre of mass (%.2f,%.2f)\n", what, bw, bh, x0, y0, cx / mass, cy / mass);
    /* 20, give or take a pixel: the sub-pixel shift spreads the last column or row over two, and a
     * tiny picture's soft edge may fall short of ink */
    CHECK(abs((bw > bh ? bw : bh) - 20) <= 1);
    if (!clipped) {
        CHECK_NEAR(cx / mass, 14, 0.1);
        CHECK_NEAR(cy / mass, 14, 0.1);
    }
}

static int max_diff(const uint8_t *a, const uint8_t *b) {
    int d = 0;
    for (int i = 0; i < 784; i++) d = abs(a[i] - b[i]) > d ? abs(a[i] - b[i]) : d;
    return d;
}

static digit_info info;
static int digit_of(const char *path, float *out, uint8_t *pixels) { return digit_from_image(path, out, pixels, &info); }

// ----------------------------------------------------------------------------
// digits

static void same_digit(void) {
    uint8_t dark[784], light[784], colour[784], clear[784];
    float out[784];
    const char *p = draw("dark.png", in_seven, 100, 100, 1, white, black);
    CHECK_INT(digit_of(p, out, dark), 0);
    check_geometry("dark on white", dark, false);
    /* the normalisation tg_dataset_new uses, bit for bit */
    bool same = true;
    for (int i = 0; i < 784; i++) same &= out[i] == ((float)dark[i] / 255.0f - TG_MNIST_MEAN) / TG_MNIST_STD;
    CHECK(same);
    CHECK_NEAR(out[0], -TG_MNIST_MEAN / TG_MNIST_STD, 1e-6);

    p = draw("light.png", in_seven, 100, 100, 1, black, white);
    CHECK_INT(digit_of(p, out, light), 0);
    CHECK(max_diff(dark, light) <= 1); /* the drawing itself rounds 127.5 up both ways */

    /* blue ballpoint on cream paper, in colour: the ink at full strength all the same */
    p = draw("colour.png", in_seven, 100, 100, 3, (const unsigned char[]){245, 235, 205},
             (const unsigned char[]){30, 40, 110});
    CHECK_INT(digit_of(p, out, colour), 0);
    CHECK(max_diff(dark, colour) <= 3);

    /* black strokes on a transparent background */
    p = draw("clear.png", in_seven, 100, 100, 4, black, black);
    CHECK_INT(digit_of(p, out, clear), 0);
    CHECK(max_diff(dark, clear) <= 1);
    /* and white strokes on a transparent background */
    p = draw("clear_white.png", in_seven, 100, 100, 4, white, white);
    CHECK_INT(digit_of(p, out, clear), 0);
    CHECK(max_diff(dark, clear) <= 1);
}

static void sizes(void) {
    uint8_t px[784];
    float out[784];
    /* large and not square: shrunk by area averaging */
    const char *p = draw("large.png", in_seven, 400, 300, 1, white, black);
    CHECK_INT(digit_of(p, out, px), 0);
    check_geometry("400x300", px, false);
    /* small: enlarged */
    p = draw("small.png", in_seven, 12, 16, 1, white, black);
    CHECK_INT(digit_of(p, out, px), 0);
    check_geometry("12x16", px, false);
    /* one pixel of ink: made a digit, centred, but doubted: a dot is no digit */
    unsigned char dot[9] = {255, 255, 255, 255, 0, 255, 255, 255, 255};
    p = path_of("dot.png");
    CHECK(stbi_write_png(p, 3, 3, 1, dot, 3) != 0);
    CHECK_INT(digit_of(p, out, px), 0);
    CHECK(info.doubt && strstr(info.doubt, "a dot"));
    CHECK(px[14 * 28 + 14] > 128 && px[0] == 0);
    /* MNIST's own size, a cross touching all four borders: ink, not the table's edge */
    unsigned char edge[28 * 28];
    for (int i = 0; i < 28 * 28; i++) edge[i] = (i % 28 / 4 == 3 || i / 28 / 4 == 3) ? 0 : 255;
    p = path_of("edge.png");
    CHECK(stbi_write_png(p, 28, 28, 1, edge, 28) != 0);
    CHECK_INT(digit_of(p, out, px), 0);
    check_geometry("touching the border", px, false);
    CHECK(!info.doubt);
}

/* The centre of mass cannot reach (14,14) without pushing ink out: the digit
 * stops at the border, whole. */
static void clipped(void) {
    uint8_t px[784];
    float out[784];
    const char *p = draw("lopsided.png", in_lopsided, 200, 200, 1, white, black);
    CHECK_INT(digit_of(p, out, px), 0);
    check_geometry("lopsided", px, true);
    int x1 = 0, y1 = 0;
    for (int i = 0; i < 784; i++)
        if (px[i]) x1 = i % 28 > x1 ? i % 28 : x1, y1 = i / 28 > y1 ? i / 28 : y1;
    CHECK_INT(x1, 27);
    CHECK_INT(y1, 27);
}

/* Fails with code, the message names the file (and holds sub); out and pixels
 * unchanged. */
static void fails(const char *path, int code, const char *sub) {
    float out[784];
    uint8_t px[784];
    for (int i = 0; i < 784; i++) out[i] = 42, px[i] = 42;
    tg_clear_error();
    CHECK_INT(digit_of(path, out, px), code);
    char want[600];
    snprintf(want, sizeof want, "image %s: ", path);
    CHECK_MSG(tg_last_error(), want);
    CHECK_MSG(tg_last_error(), sub);
    printf("%s\n", tg_last_error());
    if (code != TG_ERR_ARG) { /* a file the library cannot read (not a blank picture): the library's message */
        tg_clear_error();
        CHECK(tg_image_load(path, NULL) == NULL);
        CHECK_INT(tg_last_error_code(), code);
        CHECK_MSG(tg_last_error(), want);
        CHECK_MSG(tg_last_error(), sub);
    }
    bool kept = true;
    for (int i = 0; i < 784; i++) kept &= out[i] == 42 && px[i] == 42;
    CHECK(kept);
}

static const char *spit(const char *name, const void *b, size_t len) {
    const char *p = path_of(name);
    FILE *o = fopen(p, "wb");
    CHECK(o && fwrite(b, 1, len, o) == len);
    if (o) fclose(o);
    return p;
}

static void errors(void) {
    fails(path_of("missing.png"), TG_ERR_IO, "cannot open: No such file or directory");
    fails(spit("empty.png", "", 0), TG_ERR_FORMAT, "the file is empty");
    fails(spit("notes.png", "a digit, honest\n", 16), TG_ERR_FORMAT, "cannot decode: ");
    CHECK_MSG(tg_last_error(), stbi_failure_reason());
    /* not regular files: refused before stb_image sees them; a FIFO without a
     * writer does not hang */
    fails(dir, TG_ERR_IO, "not a regular file (a directory)");
    fails("/dev/null", TG_ERR_IO, "not a regular file (a character device)");
    const char *fifo = path_of("fifo.png");
    CHECK(mkfifo(fifo, 0600) == 0);
    fails(fifo, TG_ERR_IO, "not a regular file (a FIFO)");
    unlink(fifo);

    /* a PNG cut in half */
    const char *whole = draw("whole.png", in_seven, 64, 64, 1, white, black);
    FILE *f = fopen(whole, "rb");
    unsigned char buf[8192];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    CHECK(n > 100 && n < sizeof buf);
    fails(spit("cut.png", buf, n / 2), TG_ERR_FORMAT, "truncated: the PNG chunk IDAT at byte ");
    /* the whole picture but its last byte: stb_image itself notices nothing, the
     * chunk walk does */
    fails(spit("cut1.png", buf, n - 1), TG_ERR_FORMAT, "truncated: the PNG chunk IEND at byte ");
    /* the fuzzer's 94-byte PNG whose IDAT promises 0x14000025 bytes (stb_image
     * allocated them first) */
    static const unsigned char liar[] = {
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
        0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x0c, 0x08, 0x02, 0x00, 0x00, 0x00, 0xe4, 0x85, 0xaa,
        0xd6, 0x14, 0x00, 0x00, 0x25, 0x49, 0x44, 0x41, 0x54, 0x78, 0x5e, 0x63, 0x7c, 0xfd, 0xfa, 0x35,
        0x03, 0x2a, 0xd0, 0xd4, 0xd4, 0x84, 0x08, 0x5c, 0xbf, 0x7e, 0x9d, 0x01, 0x03, 0x30, 0x31, 0x90,
        0x08, 0x46, 0x35, 0x10, 0x13, 0x60, 0xc3, 0x21, 0x94, 0x00, 0xfd, 0xad, 0x05, 0xd9, 0x3c, 0xe3,
        0x97, 0xf5, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};
    fails(spit("liar.png", liar, sizeof liar), TG_ERR_FORMAT,
          "truncated: the PNG chunk IDAT at byte 33 promises 335544357 bytes, "
          "and the file has 53 after it");

    /* blank: white, grey, transparent, white with faint noise */
    unsigned char page[64 * 48 * 4];
    memset(page, 255, sizeof page);
    CHECK(stbi_write_png(path_of("white.png"), 64, 48, 1, page, 64) != 0);
    fails(path_of("white.png"), TG_ERR_ARG, "blank");
    memset(page, 128, sizeof page);
    CHECK(stbi_write_png(path_of("grey.png"), 64, 48, 3, page, 64 * 3) != 0);
    fails(path_of("grey.png"), TG_ERR_ARG, "blank");
    memset(page, 0, sizeof page);
    CHECK(stbi_write_png(path_of("clear.png"), 64, 48, 4, page, 64 * 4) != 0);
    fails(path_of("clear.png"), TG_ERR_ARG, "blank");
    uint64_t rng = 7;
    for (int i = 0; i < 64 * 48; i++) page[i] = (unsigned char)(235 + tg_rand_u64(&rng) % 21);
    CHECK(stbi_write_png(path_of("noise.png"), 64, 48, 1, page, 64) != 0);
    fails(path_of("noise.png"), TG_ERR_ARG, "blank");

    float out[784];
    CHECK_INT(digit_of(NULL, out, NULL), TG_ERR_ARG);
    CHECK_INT(digit_of(whole, NULL, NULL), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), whole);
}

// ----------------------------------------------------------------------------
// predict's loading: the model's state from a checkpoint that also holds SGD's

static tg_model *small_net(uint64_t seed, int hidden) {
    tg_model *m = tg_model_new(seed);
    tg_model_conv2d(m, 1, 4, 3, 2, 1, false); /* 4x14x14 */
    tg_model_batch_norm(m, 4);
    tg_model_relu(m);
    tg_model_flatten(m);
    tg_model_linear(m, 4 * 14 * 14, hidden, true);
    tg_model_relu(m);
    tg_model_linear(m, hidden, 10, true);
    return m;
}

static void predict_loading(void) {
    tg_model *a = small_net(1, 16), *b = small_net(2, 16), *other = small_net(1, 8);
    tg_tensor **params, **ms, **os, **bs, **xs;
    int np = tg_model_params(a, &params);
    tg_sgd *opt = tg_sgd_new(params, np, (tg_sgd_opts){0.1f, 0.9f, 0, 0, false});
    int nm = tg_model_state(a, &ms), no = tg_sgd_state(opt, &os);
    ms[nm - 2]->data[2] = 1.5f; /* a running variance (the last is the batch counter) not at its initial value */
    tg_tensor *ck[32];
    CHECK(nm + no <= 32);
    memcpy(ck, ms, (size_t)nm * sizeof *ck);
    memcpy(ck + nm, os, (size_t)no * sizeof *ck);
    const char *p = path_of("net.ckpt");
    CHECK_INT(tg_checkpoint_save(p, ck, nm + no), 0);

    CHECK_INT(tg_model_state(b, &bs), nm);
    CHECK_INT(tg_checkpoint_load(p, bs, nm), TG_ERR_SHAPE); /* the whole file must match */
    CHECK_INT(tg_checkpoint_load_prefix(p, bs, nm), 0);
    int nx = tg_model_state(other, &xs);
    CHECK_INT(tg_checkpoint_load_prefix(p, xs, nx), TG_ERR_SHAPE);
    CHECK_MSG(tg_last_error(), p);
    CHECK_MSG(tg_last_error(), "'4.weight' is 16x784 in the file, 8x784 in the model");

    /* the same digit gives the same logits */
    tg_tape *t = tg_tape_new();
    tg_tape_set_grad_enabled(t, false);
    tg_model_train(a, false), tg_model_train(b, false);
    tg_tensor *x = tg_tensor_tape(t, 4, (int[]){1, 1, 28, 28});
    CHECK_INT(digit_of(draw("seven.png", in_seven, 50, 50, 1, white, black), x->data, NULL), 0);
    tg_tensor *ya = tg_model_forward(a, t, x), *yb = tg_model_forward(b, t, x);
    CHECK(ya && yb && memcmp(ya->data, yb->data, 10 * sizeof(float)) == 0);
    tg_tape_free(t);
    tg_sgd_free(opt);
    tg_model_free(a), tg_model_free(b), tg_model_free(other);
}

static void clean_dir(void) {
    const char *names[] = {"dark.png",  "light.png", "colour.png", "clear.png",    "clear_white.png", "large.png",
                           "small.png", "dot.png",   "edge.png",   "lopsided.png", "empty.png",       "notes.png",
                           "whole.png", "cut.png",   "cut1.png",   "liar.png",     "white.png",       "grey.png",
                           "noise.png", "net.ckpt",  "seven.png"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) unlink(path_of(names[i]));
}

int main(void) {
    alarm(60); /* a loader that blocks (on a FIFO) fails the test instead of
                  hanging it */
    snprintf(dir, sizeof dir, "%s", "/tmp/tapegrad-image-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    same_digit();
    sizes();
    clipped();
    errors();
    predict_loading();
    clean_dir();
    CHECK(rmdir(dir) == 0);
    CHECK_DONE();
}
