/* pictures.h: the demos' PNGs, made to be looked at: an RGB canvas, text in
 * DejaVu Sans (stb_truetype; a small built-in font when the font file is
 * missing), colour maps, and the pictures the demos write: misclassified
 * digits with their confidence, the first conv's filters on one shared scale,
 * a digit's feature maps through the net, an autoencoder's reconstructions.
 * Each picture function returns 0, or -1 with tg_last_error() set. */
#ifndef DEMO_PICTURES_H
#define DEMO_PICTURES_H

#include "tapegrad_nn.h"
#include <stdint.h>

/* The font file; TG_FONT=FILE gives another (a missing one: the built-in font). */
#define PIC_FONT "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"

typedef struct {
    int w, h;
    uint8_t *rgb; /* w*h*3 */
} pic;

/* A canvas filled with bg (0xRRGGBB), or NULL with a message. */
pic *pic_new(int w, int h, uint32_t bg);
void pic_free(pic *p);
void pic_rect(pic *p, int x, int y, int w, int h, uint32_t rgb);
/* UTF-8 text, px pixels tall, its top-left corner at (x, y); returns its width.
 * The built-in font has ASCII only ("→" becomes "->"). */
int pic_text(pic *p, int x, int y, int px, const char *utf8, uint32_t rgb);
int pic_text_width(int px, const char *utf8);
/* True if text comes from the font file, false for the built-in font. */
bool pic_font_loaded(void);
/* A w*h grey image (0 black .. 255 white), each pixel a scale*scale block. */
void pic_gray(pic *p, int x, int y, const uint8_t *g, int w, int h, int scale);
/* Colour maps: v in [-1,1] blue-white-red (0 white); v in [0,1] dark to light (a viridis-like ramp). */
uint32_t pic_diverging(float v);
uint32_t pic_sequential(float v);
int pic_save(const pic *p, const char *path);

/* The misclassified digits (n of them, each 28*28 bytes, 0 = background) scaled
 * 4x, most confident first, labelled "true → predicted (confidence)"; at most max shown. */
int pic_errors(const char *path, const uint8_t *digits, const int32_t *truth, const int32_t *pred, const float *conf,
               int n, int max);
/* The filters of a conv weight (K,C,R,S), input channel 0, on one symmetric scale with a colour bar. */
int pic_filters(const char *path, const tg_tensor *w, const char *name);
/* The feature maps of one image through m, read from the tape t that just ran
 * it forward (gradients on, so the nodes are recorded): per top-level layer
 * with a 4-D output, up to 8 channels (the most active), labelled with the
 * layer and its shape; digit (28*28 bytes) is the input, shown first. */
int pic_features(const char *path, const tg_tape *t, const tg_model *m, const uint8_t *digit, int label);
/* n originals (28*28 bytes each) over their reconstructions (28*28 floats in [0,1]), labelled
 * with the class and each image's mean squared error. */
int pic_autoencoder(const char *path, const uint8_t *orig, const float *recon, const int32_t *labels, int n);

#endif
