/* digit.h: a picture of one handwritten digit made into an MNIST sample, the
 * way LeCun, Cortes and Burges made MNIST from NIST's scans (the ink's box
 * scaled to 20 pixels on its longer side, centred by its centre of mass in a
 * 28x28 field), after first finding the ink in a photo: the paper's uneven
 * light removed, the ink told from paper by Otsu's threshold, and specks,
 * shadows and the table at the sheet's edge left out. See digit.c. */
#ifndef DEMO_DIGIT_H
#define DEMO_DIGIT_H

#include "tapegrad_nn.h"
#include <stdbool.h>
#include <stdint.h>

/* What digit_from_image found, besides the digit. */
typedef struct {
    int width, height; /* the picture as worked on (the file shrunk to 512 pixels
                          on its longer side at most) */
    bool inverted;     /* the paper was light (and the ink dark) */
    float threshold;   /* ink above this, of the range 0..1 after the paper's light
                          is removed */
    int components;    /* pieces of ink found, and how many of them were kept as the
                          digit */
    int kept;
    float stroke_ratio; /* the digit's longer side over its thickest stroke's
                           width: about 1 for a dot, 3 and up for digits */
    const char *doubt;  /* NULL, or why the picture does not look like a digit ("no
                           ink", "a dot, not a stroke") */
} digit_info;

/* The 28x28 digit of the picture at path: out[784] normalised as
 * tg_dataset_new normalises MNIST, pixels[784] (if not NULL) the bytes (0
 * paper, 255 ink), info (if not NULL) what was found. Returns 0, or a negative
 * TG_ERR_* with tg_last_error() naming the file (unreadable, or no ink at all);
 * a picture with ink that does not look like a digit returns 0 with info->doubt
 * set. */
int digit_from_image(const char *path, float *out, uint8_t *pixels, digit_info *info);
/* The same from a picture already loaded: grey (1,H,W) or grey and alpha
 * (2,H,W), values in [0,1]. */
int digit_from_tensor(const char *name, const tg_tensor *img, float *out, uint8_t *pixels, digit_info *info);

#endif
