/* tapegrad_nn.h: what holds parameters and state on top of tapegrad's ops:
 * layers and models, initialisation, SGD, data loading, checkpoints, images.
 * Same rules as tapegrad.h: NULL or a negative TG_ERR_* on failure with a
 * message in tg_last_error(); nothing here exits or aborts. */
#ifndef TAPEGRAD_NN_H
#define TAPEGRAD_NN_H

#include "tapegrad.h"
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

// ----------------------------------------------------------------------------
// data: IDX files (plain or gzip-compressed) and mini-batches
//
//     tg_dataset *train = tg_dataset_new("data/mnist", "train", 0, TG_MNIST_MEAN, TG_MNIST_STD);
//     int *perm = malloc(train->n * sizeof *perm);
//     tg_permutation(perm, train->n, seed + epoch);
//     for (int start = 0; start < train->n; start += B) {
//         int b = train->n - start < B ? train->n - start : B;        // the last batch may be short
//         tg_tensor *x = tg_tensor_tape(t, 4, (int[]){b, 1, train->h, train->w});
//         tg_dataset_batch(train, perm, start, x, labels);
//         ...
//     }

/* An IDX file of unsigned bytes (type 0x08): the shape from its header and the data. */
typedef struct {
    int ndim;                    /* 1 to 4 */
    int shape[TG_MAX_DIMS];
    int64_t size;                /* bytes of data, the product of the shape (at most 2^30) */
    uint8_t *data;
} tg_idx;

/* Reads an IDX file, plain or gzip-compressed, into a caller's struct; the
 * header and the size of the data are checked before anything big is
 * allocated. Only a regular file is read (a FIFO, a device or a directory is
 * TG_ERR_IO, without blocking). A plain file whose size is not what its header
 * promises is refused from its size, unread; a gzip file is refused if it is
 * too small to hold the promised bytes at deflate's 1032:1, and is never
 * inflated past them plus one byte (anything more is trailing data).
 * On failure idx is empty. Release with tg_idx_release. */
TG_API int tg_idx_load(tg_idx *idx, const char *path);
TG_API void tg_idx_release(tg_idx *idx);

/* Images (N,1,H,W) as bytes, normalised to (x/255 - mean)/std as batches are
 * filled (a quarter of the memory of floats), and their labels. */
typedef struct {
    int n, h, w;
    uint8_t *pixels;             /* n*h*w bytes, as in the file */
    float value[256];            /* what each byte becomes: (x/255 - mean)/std */
    int32_t *labels;             /* n labels, each in [0, 255] */
    int classes;                 /* the largest label + 1 */
    float mean, std;             /* the normalisation used */
} tg_dataset;

/* The normalisation PyTorch's MNIST examples use (Fashion-MNIST's own is 0.2860, 0.3530). */
#define TG_MNIST_MEAN 0.1307f
#define TG_MNIST_STD 0.3081f

/* Loads dir/<split>-images-idx3-ubyte and dir/<split>-labels-idx1-ubyte, each
 * plain or with .gz (split is "train" or "t10k" for MNIST and Fashion-MNIST).
 * limit > 0 keeps the first limit samples; 0 keeps all. */
TG_API tg_dataset *tg_dataset_new(const char *dir, const char *split, int limit, float mean, float std);
TG_API void tg_dataset_free(tg_dataset *ds);

/* Fills perm[0..n) with 0..n-1 in an order fixed by seed (Fisher-Yates with
 * splitmix64): the same on every machine. */
TG_API int tg_permutation(int *perm, int n, uint64_t seed);

/* Copies samples perm[start], perm[start+1], ... (start, start+1, ... when perm
 * is NULL) into x:(B,1,H,W) and labels[B] (labels may be NULL). Every one of
 * x's B samples is filled: B may be at most n - start (make the last, short
 * batch's x n - start long); a larger x is TG_ERR_SHAPE with a message saying
 * so, and x is left as it was (so is it when perm holds an index out of
 * range). Returns B, or a negative TG_ERR_*. */
TG_API int tg_dataset_batch(const tg_dataset *ds, const int *perm, int start, tg_tensor *x, int32_t *labels);

// ----------------------------------------------------------------------------
// checkpoints: named tensors in a versioned, checksummed file, written atomically

/* Writes the tensors' names, shapes and data to path: to a temporary file in
 * the same directory first, synced, then renamed over path, so a crash or a
 * failure leaves the old file as it was. When path is a symbolic link (or a
 * chain), the file it leads to is written (made, if the link dangles) and the
 * link stays a link. A path that exists and is not a regular file (a FIFO, a
 * device such as /dev/null, a directory, a socket) is refused with TG_ERR_IO,
 * untouched. A new file gets 0666 less the umask; a replaced one keeps its
 * permission bits. Temporaries left by earlier saves of the same file whose
 * process is gone are removed. */
TG_API int tg_checkpoint_save(const char *path, tg_tensor *const *tensors, int n);
/* Reads path into the tensors, which must match the file in count, order,
 * names and shapes. Only a regular file is read. The records' headers are
 * compared with the tensors first, without reading their data, so a file that
 * cannot fit is refused after a few small reads whatever its size (one no
 * bigger than the tensors' own checkpoint has its checksum checked first, so
 * that a damaged file is reported as damaged); then the whole file is checked
 * (checksum included) before any tensor is written: a failed load changes
 * nothing. */
TG_API int tg_checkpoint_load(const char *path, tg_tensor *const *tensors, int n);
/* The same for the first n tensors of a file that may hold more after them (a
 * model's state followed by its optimizer's): the rest are checked as part of
 * the file and ignored. Fails if the file holds fewer than n. */
TG_API int tg_checkpoint_load_prefix(const char *path, tg_tensor *const *tensors, int n);

// ----------------------------------------------------------------------------
// images: any picture of a digit made into an MNIST sample

/* Reads an image file (PNG, JPEG, BMP, GIF, TGA, PSD, PNM...; through
 * stb_image) and makes it a 28x28 digit the way MNIST's were made: grey (a
 * transparent background becomes paper of the shade opposite the strokes);
 * inverted if the paper is light (the median of the border pixels); stretched
 * so the paper is 0 and the strongest ink 1; the ink's bounding box (pixels
 * above 10% of the strongest) scaled, keeping its aspect ratio, so that its
 * longer side is 20 pixels (area averaging when shrinking, bilinear when
 * enlarging); then placed in the 28x28 field with its centre of mass at pixel
 * (14,14), as near as the field's borders allow without cutting ink.
 * out[784] receives (p/255 - TG_MNIST_MEAN) / TG_MNIST_STD for each byte p,
 * exactly as tg_dataset_new normalises; pixels[784], if not NULL, the bytes
 * (0 paper, 255 ink), row by row. A file that cannot be opened or decoded
 * (stb_image's reason is given; one that is not a regular file: TG_ERR_IO), one of more than 16 megapixels (refused from
 * its header, before decoding), or an image without ink, is an error naming
 * the file; out and pixels are then left as they were. */
TG_API int tg_image_to_mnist(const char *path, float *out, uint8_t *pixels);

// ----------------------------------------------------------------------------
// layers and models
//
//     tg_model *m = tg_model_new(seed);                 // layers are added in order
//     tg_model_conv2d(m, 1, 16, 3, 1, 1, false);        // conv 3x3, pad 1, no bias
//     tg_model_batch_norm(m, 16);
//     tg_model_relu(m);
//     tg_model_residual(m, 16, 16, 1, 1);               // a v1 residual block
//     tg_model_max_pool(m, 2, 2);
//     tg_model_flatten(m);
//     tg_model_linear(m, 16 * 14 * 14, 10, true);
//     tg_tensor *logits = tg_model_forward(m, t, x);    // NULL and a message if anything failed
//
// The model owns its layers, their parameters and buffers. Conv and linear
// weights and biases start as PyTorch's do, U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
// drawn from the model's seed; batch-norm gamma 1 and beta 0. tg_model_init
// re-initialises with He or Xavier. Parameter names follow
// PyTorch's state_dict ("3.conv1.weight", "1.running_var").

#define TG_LAYER_MAX_TENSORS 12

typedef enum {
    TG_LAYER_LINEAR,
    TG_LAYER_CONV2D,
    TG_LAYER_BATCH_NORM,
    TG_LAYER_RELU,
    TG_LAYER_DROPOUT,
    TG_LAYER_MAX_POOL,
    TG_LAYER_AVG_POOL,
    TG_LAYER_GLOBAL_AVG_POOL,
    TG_LAYER_FLATTEN,
    TG_LAYER_SIGMOID,
    TG_LAYER_CONV_TRANSPOSE2D,
    TG_LAYER_UPSAMPLE,
    TG_LAYER_RESIDUAL,
} tg_layer_type;

/* What each kind of layer was made with (the member its type names). */
typedef union {
    struct { int in, out; bool bias; } linear;
    struct { int in, out, kernel, stride, pad, groups; bool bias; } conv; /* conv2d, conv_transpose2d */
    struct { int channels; float momentum, eps; } batch_norm;             /* 0.1, 1e-5 */
    struct { float p; } dropout;
    struct { int kernel, stride; } pool;                                  /* max and average */
    struct { int factor; tg_upsample_mode mode; } upsample;
    struct { int in, out, stride, version; float momentum, eps; } residual;
} tg_layer_attr;

typedef struct tg_layer {
    tg_layer_type type;
    const char *kind;                           /* its name: "conv2d", "batch_norm", "residual_v1", ... */
    tg_layer_attr attr;
    tg_tensor *params[TG_LAYER_MAX_TENSORS];    /* trainable, in the order of their names (weights first) */
    int n_params;
    tg_tensor *buffers[TG_LAYER_MAX_TENSORS];   /* running statistics */
    int n_buffers;
    tg_tensor *(*forward)(struct tg_layer *l, tg_tape *t, tg_tensor *x, bool training);
} tg_layer;

typedef struct tg_model tg_model;

TG_API tg_model *tg_model_new(uint64_t seed);
TG_API void tg_model_free(tg_model *m);
/* Each adds a layer and returns it (borrowed), or NULL with a message; a model
 * with a failed layer fails tg_model_forward with that message. */
TG_API tg_layer *tg_model_linear(tg_model *m, int in, int out, bool bias);                       /* (N,in) -> (N,out) */
TG_API tg_layer *tg_model_conv2d(tg_model *m, int in, int out, int kernel, int stride, int pad, bool bias);
TG_API tg_layer *tg_model_conv2d_groups(tg_model *m, int in, int out, int kernel, int stride, int pad, int groups,
                                        bool bias);                                         /* depthwise: groups = in */
TG_API tg_layer *tg_model_batch_norm(tg_model *m, int channels);   /* momentum 0.1, eps 1e-5, running var starts at 1 */
TG_API tg_layer *tg_model_relu(tg_model *m);
TG_API tg_layer *tg_model_dropout(tg_model *m, float p);            /* inverted dropout, p = drop probability */
TG_API tg_layer *tg_model_max_pool(tg_model *m, int kernel, int stride);
TG_API tg_layer *tg_model_avg_pool(tg_model *m, int kernel, int stride);
TG_API tg_layer *tg_model_global_avg_pool(tg_model *m);
TG_API tg_layer *tg_model_flatten(tg_model *m);
TG_API tg_layer *tg_model_sigmoid(tg_model *m);
/* weight (in, out, k, k); output size (H-1)*stride - 2*pad + k */
TG_API tg_layer *tg_model_conv_transpose2d(tg_model *m, int in, int out, int kernel, int stride, int pad, bool bias);
TG_API tg_layer *tg_model_upsample(tg_model *m, int factor, tg_upsample_mode mode);
/* A residual block in -> out channels. version 1: relu(bn(conv(relu(bn(conv(x))))) + shortcut(x));
 * version 2 (pre-activation): conv(relu(bn(conv(relu(bn(x)))))) + shortcut. All convs 3x3 without
 * bias; the first has the stride. The shortcut is x itself, or a 1x1 conv (+ BN in v1) with the
 * stride when the channels or the stride change. */
TG_API tg_layer *tg_model_residual(tg_model *m, int in, int out, int stride, int version);

TG_API tg_tensor *tg_model_forward(tg_model *m, tg_tape *t, tg_tensor *x);
/* The model-wide switch dropout and batch norm follow (a new model trains). */
TG_API void tg_model_train(tg_model *m, bool training);
TG_API bool tg_model_training(const tg_model *m);
TG_API int tg_model_layer_count(const tg_model *m);
TG_API tg_layer *tg_model_layer(const tg_model *m, int i);
/* The trainable parameters, in order (a borrowed array); returns how many. */
TG_API int tg_model_params(const tg_model *m, tg_tensor ***params);
TG_API int64_t tg_model_param_count(const tg_model *m);            /* elements over all parameters */
/* Parameters then buffers: everything a checkpoint holds of the model. */
TG_API int tg_model_state(const tg_model *m, tg_tensor ***state);
TG_API void tg_model_zero_grad(tg_model *m);
/* TG_ERR_NONFINITE, naming the tensor and element, if a parameter, a buffer or
 * a parameter's gradient holds a NaN or an Inf; 0 if all are finite. One pass
 * over them all: a training loop checks its loss every step (and
 * tg_sgd_step's result) and calls this to name what went bad. */
TG_API int tg_model_check_finite(const tg_model *m);
/* One line per layer: kind, sizes, parameter count. */
TG_API void tg_model_print(const tg_model *m, FILE *f);

// ----------------------------------------------------------------------------
// initialisation and SGD

/* fan_in = size / shape[0] (C/groups*R*S for a conv weight), fan_out = shape[0] * R * S. */
TG_API int tg_init_kaiming_normal(tg_tensor *w, uint64_t *rng);   /* N(0, 2/fan_in) */
TG_API int tg_init_kaiming_uniform(tg_tensor *w, uint64_t *rng);  /* U(-b, b), b = sqrt(6/fan_in) */
TG_API int tg_init_xavier_normal(tg_tensor *w, uint64_t *rng);    /* N(0, 2/(fan_in+fan_out)) */
TG_API int tg_init_xavier_uniform(tg_tensor *w, uint64_t *rng);   /* U(-b, b), b = sqrt(6/(fan_in+fan_out)) */
typedef enum { TG_INIT_KAIMING_NORMAL, TG_INIT_KAIMING_UNIFORM, TG_INIT_XAVIER_NORMAL, TG_INIT_XAVIER_UNIFORM } tg_init;
/* Re-initialise every conv and linear weight of the model with a scheme; biases to 0,
 * batch-norm gamma to 1. TG_ERR_ARG for an unknown scheme or a NULL model. */
TG_API int tg_model_init(tg_model *m, tg_init scheme, uint64_t seed);

/* SGD exactly as PyTorch 1.13's torch.optim.SGD (without maximize):
 *   g = grad + weight_decay * p
 *   buf = g on the first step, else momentum * buf + (1 - dampening) * g
 *   g = g + momentum * buf (nesterov) or buf (momentum != 0)
 *   p -= lr * g */
typedef struct {
    float lr, momentum, dampening, weight_decay;
    bool nesterov;
} tg_sgd_opts;

typedef struct tg_sgd tg_sgd;
/* params: borrowed, must outlive the optimizer; heap tensors with a gradient
 * buffer (tg_param_new), each listed once. NULL on bad options (nesterov
 * needs momentum > 0 and dampening 0, as in PyTorch; lr and weight_decay
 * finite and >= 0) or a parameter that is NULL, not a parameter, or listed twice. */
TG_API tg_sgd *tg_sgd_new(tg_tensor *const *params, int n, tg_sgd_opts opts);
TG_API void tg_sgd_free(tg_sgd *o);
/* One update of every parameter that requires a gradient; a parameter whose
 * requires_grad is off is skipped whole (no momentum, no weight decay), as
 * PyTorch skips one without a gradient. TG_ERR_NONFINITE, naming the first
 * parameter and element, if a gradient held a NaN or an Inf: the step is
 * taken all the same (the check rides along the update's loop at no cost),
 * so a training loop should stop. */
TG_API int tg_sgd_step(tg_sgd *o);
TG_API void tg_sgd_zero_grad(tg_sgd *o);
TG_API int tg_sgd_set_lr(tg_sgd *o, float lr);   /* TG_ERR_ARG (lr unchanged) unless lr is finite and >= 0 */
TG_API float tg_sgd_lr(const tg_sgd *o);          /* 0 for NULL */
/* Momentum buffers and the step count as named tensors, for checkpoints. */
TG_API int tg_sgd_state(tg_sgd *o, tg_tensor ***state);

/* Learning-rate schedules, as functions of the epoch (or step) e:
 * step: lr * gamma^floor(e / step_size); cosine: eta_min + (lr - eta_min)(1 + cos(pi e / t_max)) / 2. */
TG_API float tg_lr_step(float lr, int e, int step_size, float gamma);
TG_API float tg_lr_cosine(float lr, int e, int t_max, float eta_min);

#ifdef __cplusplus
}
#endif
#endif
