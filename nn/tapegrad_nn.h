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

/* Random affine distortions for training, as torchvision's RandomAffine: each image is rotated by
 * an angle in [-degrees, degrees], scaled by a factor in [1 - scale, 1 + scale], and shifted by up
 * to shift pixels in x and y (each uniform), about the image's centre, then sampled bilinearly;
 * what falls outside the image is paper (byte 0). All zero: no change. Unlike torchvision, shifts
 * are not rounded to whole pixels. */
typedef struct {
    float degrees, scale, shift;
} tg_augment;
/* tg_dataset_batch, with each image distorted by aug (NULL: none). The distortion of the sample
 * at position start+i of the order depends only on (seed, start+i): the same on any thread
 * count and batch size, and nothing to save for resuming a run (pass the same seed, e.g. a
 * run's seed mixed with the epoch). aug's fields must be finite, degrees in [0, 180], scale in
 * [0, 1), shift in [0, W); else TG_ERR_ARG and x is left as it was. A zero aug gives the same
 * floats as tg_dataset_batch, bit for bit. */
TG_API int tg_dataset_batch_augment(const tg_dataset *ds, const int *perm, int start, tg_tensor *x, int32_t *labels,
                                    const tg_augment *aug, uint64_t seed);

// ----------------------------------------------------------------------------
// checkpoints: named tensors in a versioned, checksummed file, written atomically:
// tapegrad's own format (tg_checkpoint_save) or safetensors (tg_safetensors_save),
// both read by tg_checkpoint_load

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
/* Reads path into the tensors. A safetensors file (told from its first bytes) is
 * read as tg_safetensors_load reads it, by name. A file of tapegrad's own format
 * must match the tensors in count, order, names and shapes; batch norm's counters
 * may be missing from it (files from before tapegrad counted: they load as 0).
 * Only a regular file is read. The records' headers are
 * compared with the tensors first, without reading their data, so a file that
 * cannot fit is refused after a few small reads whatever its size (one no
 * bigger than the tensors' own checkpoint has its checksum checked first, so
 * that a damaged file is reported as damaged); then the whole file is checked
 * (checksum included) before any tensor is written: a failed load changes
 * nothing. */
TG_API int tg_checkpoint_load(const char *path, tg_tensor *const *tensors, int n);
/* The same for the first n tensors of a file that may hold more after them (a
 * model's state followed by its optimizer's; in a safetensors file, more tensors
 * of other names): the rest are checked as part of the file and ignored. */
TG_API int tg_checkpoint_load_prefix(const char *path, tg_tensor *const *tensors, int n);

/* Checkpoints as safetensors files, the format PyTorch (safetensors.torch.load_file),
 * Hugging Face, tinygrad, MLX, candle and Netron read: a JSON header naming each tensor's
 * dtype, shape and byte range, then the data. Saved in the order given as float32 ("F32"),
 * except batch norm's counters (TG_BATCH_COUNTER), which are "I64" as in PyTorch's
 * state_dict; written as tg_checkpoint_save writes (a temporary file, synced, renamed);
 * "__metadata__" holds "format": "pt", "tapegrad": the format's version, description (if
 * not NULL) and a CRC-32 per tensor ("crc32.<name>"). Names must be unique and not
 * "__metadata__". */
TG_API int tg_safetensors_save(const char *path, tg_tensor *const *tensors, int n, const char *description);
/* The same with the tensors (batch norm's counters aside) as float16 or bfloat16, rounded to
 * nearest, ties to even, as PyTorch's .half() and .bfloat16() round: half the file, for a
 * model that is only to be run. TG_SAVE_F32 is tg_safetensors_save. */
typedef enum { TG_SAVE_F32, TG_SAVE_F16, TG_SAVE_BF16 } tg_save_dtype;
TG_API int tg_safetensors_save_as(const char *path, tg_tensor *const *tensors, int n, const char *description,
                                  tg_save_dtype dtype);
/* Reads path into the tensors by name, as PyTorch's load_state_dict(strict=True): the file
 * must hold exactly their names (a batch counter it lacks is set to 0), each with the
 * tensor's shape, as F32, F16, BF16, F64 or I64 (converted to float32). The whole header is
 * checked first (a length bound of 100 MiB, strict JSON, each entry's dtype, shape and
 * offsets, names appearing twice, every byte of the data in exactly one tensor), then the
 * data with its checksums when the file has them; only then are the tensors written: a
 * failed load changes nothing. Errors name the file and the first mismatch.
 * tg_checkpoint_load and tg_checkpoint_load_prefix read these files too. */
TG_API int tg_safetensors_load(const char *path, tg_tensor *const *tensors, int n);

// ----------------------------------------------------------------------------
// images: pictures as tensors, and tensors as PNGs
//
//     tg_image_opts o = {.channels = 3, .width = 224, .height = 224,
//                        .mean = (float[]){0.485f, 0.456f, 0.406f}, .std = (float[]){0.229f, 0.224f, 0.225f}};
//     tg_tensor *x = tg_image_load("cat.jpg", &o);       // (3,224,224), as torchvision's
//                                                         // Resize, ToTensor, Normalize; tg_tensor_free it
//     tg_image_write_grid_png("batch.png", xs, 8, 2, 0, 0);  // (N,C,H,W) in a grid, 8 a row

/* How tg_image_load makes a picture a tensor. All zero (or a NULL pointer): the
 * file's own channels and size, values in [0,1]. */
typedef struct {
    int channels;            /* 1 grey, 2 grey and alpha, 3 RGB, 4 RGBA; 0: as many as the file has. Grey from
                              * colour is stb_image's (77 R + 150 G + 29 B) / 256; alpha left out is dropped,
                              * not blended (as PIL's convert("L") and convert("RGB")) */
    int width, height;       /* resize to this; one of them 0: the other keeps the aspect ratio */
    int max_side;            /* > 0: then shrink (never enlarge) so that the longer side is at most this */
    const float *mean, *std; /* per channel (NULL: 0 and 1): value = (byte/255 - mean[c]) / std[c] */
    int64_t max_pixels;      /* pictures larger than this are refused from their header; 0: TG_IMAGE_MAX_PIXELS */
} tg_image_opts;

/* 64 megapixels: every phone's full-resolution photo up to 50 MP (8160x6120) and
 * 64-MP sensors, not the 108- and 200-MP modes. Memory, measured for a 48-MP
 * photo (8000x6000) loaded as grey and alpha shrunk to 512 (as the predict demo
 * does): 178 MB at peak from a baseline JPEG, 320 MB from a progressive one,
 * 338 MB from a PNG (the file, stb_image's decoding, the bytes), so at most
 * about 450 MB at the bound; a tensor at full size costs 4 bytes a pixel a
 * channel more (718 MB for that photo in RGB). */
#define TG_IMAGE_MAX_PIXELS ((int64_t)1 << 26)

/* Reads an image file (PNG, JPEG, BMP, GIF, TGA, PSD, PNM... through stb_image;
 * 8 bits a channel) as a new heap tensor (C,H,W), row by row from the top. A
 * resize averages each output pixel's footprint when shrinking (area averaging,
 * so photos shrink without aliasing; torchvision's Resize uses an antialiased
 * bilinear filter, which blurs slightly more) and interpolates bilinearly
 * (half-pixel centres, as align_corners=False) when enlarging, each axis on its
 * own. NULL with a message naming the file for: a file that is missing, not a
 * regular file (a FIFO, a device, a directory: refused without reading), empty,
 * truncated (a PNG whose chunks promise more than the file has), undecodable
 * (stb_image's reason) or too large; and for bad options. */
TG_API tg_tensor *tg_image_load(const char *path, const tg_image_opts *o);
/* n files as one tensor (N,C,H,W): the first image fixes the channels (when
 * o->channels is 0) and the size, and every other must come out the same size
 * (give width and height to make them). NULL with a message naming the file. */
TG_API tg_tensor *tg_image_load_batch(const char *const *paths, int n, const tg_image_opts *o);
/* A new heap tensor (C,height,width): x (C,H,W) resized as tg_image_load resizes. */
TG_API tg_tensor *tg_image_resize(const tg_tensor *x, int width, int height);
/* Writes x, (H,W), (C,H,W) or (1,C,H,W) with C 1 (grey), 2 (grey, alpha), 3 (RGB) or
 * 4 (RGBA), as a PNG: lo becomes 0 and hi 255, clamped (NaN: 0); lo == hi: the
 * data's own minimum and maximum. Written atomically, as checkpoints are. */
TG_API int tg_image_write_png(const char *path, const tg_tensor *x, float lo, float hi);
/* The N images of x (N,C,H,W) in a grid of cols columns (0: 8, torchvision's
 * make_grid's default; at most N) with pad pixels of 0 between and around them. */
TG_API int tg_image_write_grid_png(const char *path, const tg_tensor *x, int cols, int pad, float lo, float hi);

// ----------------------------------------------------------------------------
// layers and models
//
// A model is a tree of layers, as a PyTorch model is a tree of modules. Layers
// are added in order; a block holds layers of its own (everything added between
// tg_model_begin and tg_model_end), runs them in order (forward NULL: PyTorch's
// nn.Sequential) or through a forward function of the user's.
//
//     tg_model *m = tg_model_new(seed);
//     tg_model_conv2d(m, 1, 16, 3, 1, 1, false);        // "0": conv 3x3, pad 1, no bias
//     tg_model_batch_norm(m, 16);                       // "1"
//     tg_model_relu(m);                                 // "2" (runs fused with "1")
//     tg_model_residual(m, 16, 32, 2, 1);               // "3": a block of conv1, bn1, conv2, bn2, shortcut
//     tg_model_global_avg_pool(m);
//     tg_model_linear(m, 32, 10, true);
//     tg_tensor *logits = tg_model_forward(m, t, x);    // NULL and a message naming the layer if anything failed
//
// A layer of your own: a forward over tapegrad's ops, and tensors it registers
// (named "<path>.<name>", so checkpoints, tg_model_state, SGD, initialisation
// and tape dumps see them like built-in ones):
//
//     static tg_tensor *scale_forward(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
//         return tg_mul(t, x, l->params[0]);                  // x * s, s per channel
//     }
//     tg_layer *l = tg_model_custom(m, "scale", scale_forward, NULL);
//     tg_layer_param(l, "s", 3, (int[]){16, 1, 1}, TG_PARAM_ONES);
//
// A block of your own: its children are run with tg_layer_forward (see
// tg_model_residual in nn/blocks.c, written this way).
//
// The model owns its layers, their parameters and buffers. Conv and linear
// weights and biases start as PyTorch's do, U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
// drawn from the model's seed in the order they are made; batch-norm gamma 1
// and beta 0. tg_model_init re-initialises with He or Xavier. Names follow
// PyTorch's state_dict: a layer is named by its index in its parent unless
// tg_layer_set_name names it ("3.conv1.weight", "1.running_var").

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
    TG_LAYER_SEQUENTIAL,        /* a block that runs its layers in order */
    TG_LAYER_CUSTOM,            /* a layer or block whose forward is the user's (the residual blocks are) */
} tg_layer_type;

/* What each kind of built-in layer was made with (the member its type names). */
typedef union {
    struct { int in, out; bool bias; } linear;
    struct { int in, out, kernel, stride, pad, groups; bool bias; } conv; /* conv2d, conv_transpose2d */
    struct { int channels; float momentum, eps; } batch_norm;             /* 0.1, 1e-5 */
    struct { float p; } dropout;
    struct { int kernel, stride; } pool;                                  /* max and average */
    struct { int factor; tg_upsample_mode mode; } upsample;
} tg_layer_attr;

/* How a parameter of one's own starts, and what tg_model_init makes it. */
typedef enum {
    TG_PARAM_WEIGHT,  /* U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = size / shape[0]; tg_model_init redraws it */
    TG_PARAM_ZEROS,   /* 0 (a bias); tg_model_init sets 0 */
    TG_PARAM_ONES,    /* 1 (a gain); tg_model_init sets 1 */
} tg_param_init;

#define TG_NAME_MAX 64  /* a tensor's full name ("12.se.fc1.weight") and its NUL: tg_tensor's name */

typedef struct tg_model tg_model;
typedef struct tg_layer tg_layer;
/* A layer's forward: x in, its output out (a tape tensor), or NULL with a
 * message. training is the layer's own flag (see tg_layer_train). */
typedef tg_tensor *(*tg_forward_fn)(tg_layer *l, tg_tape *t, tg_tensor *x, bool training);

struct tg_layer {
    tg_layer_type type;
    char kind[24];                  /* "conv2d", "batch_norm", "residual_v1", "sequential", or yours */
    char name[24];                  /* in its parent: "3", "conv1" */
    char path[TG_NAME_MAX];         /* from the model: "3.conv1" (PyTorch's module path) */
    tg_layer_attr attr;             /* built-in layers */
    char info[64];                  /* what tg_model_print shows of a block or a custom layer */
    tg_tensor **params;             /* its own trainable tensors, in the order they were made (weights first) */
    tg_param_init *param_init;      /* how each starts */
    int n_params;
    tg_tensor **buffers;            /* its own running statistics and other state */
    int n_buffers;
    tg_layer **children;            /* a block's layers, in order */
    int n_children;
    tg_layer *parent;               /* NULL for the model's own layers */
    bool training;                  /* see tg_layer_train */
    tg_forward_fn forward;          /* NULL for a sequential block */
    void *ctx;                      /* the user's, for a custom layer (borrowed) */
    tg_model *model;
    int out_ndim, out_shape[TG_MAX_DIMS]; /* recorded by tg_model_print */
    /* private: room in the arrays; tg_layer_params' list and the model's version it was made at; the
     * pooling offered to the block (tg_layer_pool_here) and whether it took it */
    int cap_params, cap_buffers, cap_children;
    bool pool_offered, pool_taken;
    tg_tensor **all_params;
    uint64_t all_params_version;
};

TG_API tg_model *tg_model_new(uint64_t seed);
TG_API void tg_model_free(tg_model *m);
/* Each adds a layer (into the open block, if one is) and returns it (borrowed),
 * or NULL with a message; a model with a failed layer fails tg_model_forward
 * with that message. */
TG_API tg_layer *tg_model_linear(tg_model *m, int in, int out, bool bias);                       /* (N,in) -> (N,out) */
TG_API tg_layer *tg_model_conv2d(tg_model *m, int in, int out, int kernel, int stride, int pad, bool bias);
TG_API tg_layer *tg_model_conv2d_groups(tg_model *m, int in, int out, int kernel, int stride, int pad, int groups,
                                        bool bias);                                         /* depthwise: groups = in */
/* Batch norm: momentum 0.1, eps 1e-5; its buffers are running_mean (starts at 0), running_var (at 1) and
 * num_batches_tracked, a scalar counting its training-mode forwards as PyTorch's does (exact to 2^24). */
TG_API tg_layer *tg_model_batch_norm(tg_model *m, int channels);
/* The last part of the counter's name: safetensors files hold it as I64, as PyTorch's state_dict does,
 * and a checkpoint without it loads with the counter at 0, as PyTorch loads one from before it counted. */
#define TG_BATCH_COUNTER "num_batches_tracked"
TG_API tg_layer *tg_model_relu(tg_model *m);
TG_API tg_layer *tg_model_dropout(tg_model *m, float p);            /* inverted dropout, p = drop probability */
TG_API tg_layer *tg_model_max_pool(tg_model *m, int kernel, int stride);
TG_API tg_layer *tg_model_avg_pool(tg_model *m, int kernel, int stride);
TG_API tg_layer *tg_model_global_avg_pool(tg_model *m);            /* PyTorch's adaptive_avg_pool2d(1) + flatten */
TG_API tg_layer *tg_model_flatten(tg_model *m);
TG_API tg_layer *tg_model_sigmoid(tg_model *m);
/* weight (in, out, k, k); output size (H-1)*stride - 2*pad + k */
TG_API tg_layer *tg_model_conv_transpose2d(tg_model *m, int in, int out, int kernel, int stride, int pad, bool bias);
TG_API tg_layer *tg_model_upsample(tg_model *m, int factor, tg_upsample_mode mode);
/* A residual block in -> out channels, a block whose layers are conv1, bn1, conv2, bn2 and, when
 * the channels or the stride change, shortcut (a sequential block: 0 a 1x1 conv with the stride,
 * then in v1 1 a batch norm). version 1: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x));
 * version 2 (pre-activation): conv2(relu(bn2(conv1(relu(bn1(x)))))) + (x or shortcut(relu(bn1(x)))).
 * All convs 3x3 pad 1 without bias; conv1 has the stride. Names as torchvision's BasicBlock. */
TG_API tg_layer *tg_model_residual(tg_model *m, int in, int out, int stride, int version);

/* A layer of your own, added like the built-in ones: forward is called with it
 * (l->ctx is ctx, borrowed: it must outlive the model). Register its tensors
 * with tg_layer_param and tg_layer_buffer before the first forward. kind names
 * it in summaries (at most 23 characters). */
TG_API tg_layer *tg_model_custom(tg_model *m, const char *kind, tg_forward_fn forward, void *ctx);
/* The same, and opens it: the layers added until tg_model_end go inside it.
 * forward NULL makes a sequential block (kind "sequential" if kind is NULL).
 * Blocks nest. */
TG_API tg_layer *tg_model_begin(tg_model *m, const char *kind, tg_forward_fn forward, void *ctx);
/* A builder of one's own refusing its arguments: sets the message (printf-style)
 * and code (TG_ERR_ARG if code is not negative) as tg_fail does, and the model
 * then refuses to run with it, as after a built-in layer's failure. Returns the code. */
TG_API int tg_model_fail(tg_model *m, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Closes the innermost open block and returns it; NULL (and the model fails) if none is open. */
TG_API tg_layer *tg_model_end(tg_model *m);
/* A parameter (gradient on) or a buffer (running statistics: no gradient) of a
 * layer, named "<its path>.<name>" and listed in the model's state in the order
 * made: parameters first, then buffers, each in layer order. A buffer starts
 * filled with value. NULL with a message for a bad shape or name (letters,
 * digits and '_', unique in the layer), or a full name of TG_NAME_MAX or more. */
TG_API tg_tensor *tg_layer_param(tg_layer *l, const char *name, int ndim, const int *shape, tg_param_init init);
TG_API tg_tensor *tg_layer_buffer(tg_layer *l, const char *name, int ndim, const int *shape, float value);
/* Names a layer in its parent (instead of its index) and renames its tensors
 * and its children's: "conv1" makes "3.conv1.weight". Letters, digits and '_',
 * unique among its siblings; returns l, or NULL with a message (the name unchanged). */
TG_API tg_layer *tg_layer_set_name(tg_layer *l, const char *name);
/* Runs a layer (a block's child, from the block's forward): the tape names
 * the nodes it makes with its path, and a failure says which layer failed. */
TG_API tg_tensor *tg_layer_forward(tg_layer *l, tg_tape *t, tg_tensor *x);
/* act(layer(x) + add) (add may be NULL): one op for a batch norm (tg_batch_norm_act) and for a
 * conv2d without add (tg_conv2d_act), else the layer, tg_residual_add_act or tg_relu after it;
 * the same values either way. */
TG_API tg_tensor *tg_layer_forward_act(tg_layer *l, tg_tape *t, tg_tensor *x, tg_tensor *add, tg_act act);
/* max_pool2d(relu(layer(x) + add), 2, 2) (add may be NULL): one op for a batch norm
 * (tg_batch_norm_relu_max_pool) and a conv2d without add (tg_conv2d_relu_max_pool), else the layer,
 * tg_residual_add_act or tg_relu, then tg_max_pool2d; the same values either way. */
TG_API tg_tensor *tg_layer_forward_pool(tg_layer *l, tg_tape *t, tg_tensor *x, tg_tensor *add);
/* For a block's forward: true when the block is followed, in a sequential block, by a max_pool layer
 * of kernel 2 and stride 2, and the model lets the block take that pooling on: the block must then
 * return its output pooled so, its last layer run with tg_layer_forward_pool (one op instead of
 * two), and the max_pool layer is skipped. A block that never asks is followed by the pooling as
 * before. tg_model_residual's blocks ask. */
TG_API bool tg_layer_pool_here(tg_layer *block);
/* Training (dropout drops, batch norm uses and updates batch statistics) or
 * evaluation, for l and every layer inside it: PyTorch's module.train(on),
 * so one layer may evaluate while the rest of the model trains. */
TG_API void tg_layer_train(tg_layer *l, bool training);
/* Every parameter of l and the layers inside it, in model order (a borrowed
 * array, valid until the model is freed); returns how many. */
TG_API int tg_layer_params(tg_layer *l, tg_tensor ***params);

TG_API tg_tensor *tg_model_forward(tg_model *m, tg_tape *t, tg_tensor *x);
/* The model-wide switch: tg_layer_train on every layer (a new model trains). */
TG_API void tg_model_train(tg_model *m, bool training);
TG_API bool tg_model_training(const tg_model *m);
/* The model's own layers (not the ones inside blocks). */
TG_API int tg_model_layer_count(const tg_model *m);
TG_API tg_layer *tg_model_layer(const tg_model *m, int i);
/* The layer at a path ("3", "3.conv1", "3.shortcut.0"), or NULL. */
TG_API tg_layer *tg_model_find(const tg_model *m, const char *path);
/* The trainable parameters, in order (a borrowed array, valid until the model is freed); returns how many. */
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
/* A summary like torchinfo's: one line per layer (blocks' layers indented
 * under them) with its path, kind, attributes (kernel, stride, pad,
 * dilation, groups, bias...), output shape and parameter count, then totals.
 * With an input shape (ndim 2 to 4) the model is run once in evaluation mode,
 * without gradients, on zeros of that shape to find the output shapes
 * (batch norm's running statistics untouched); ndim 0 prints no shapes.
 * Returns 0, or the forward's error (the lines are printed up to the layer
 * that failed). Not to be called while another thread runs the model. */
TG_API int tg_model_print(tg_model *m, FILE *f, int ndim, const int *input_shape);

// ----------------------------------------------------------------------------
// ONNX export: the model's inference graph as an ONNX file (Netron opens it, ONNX Runtime runs it)
//
//     tg_onnx_export(m, 4, (int[]){1, 1, 28, 28}, "model.onnx");
//
// The model is run in evaluation mode (every layer's own flag is as it was afterwards) on a
// recording tape, as torch.onnx.export traces, and each node that leads to the output is written
// by its op (tapegrad_op.h's onnx callback): dropout disappears, batch norm becomes
// BatchNormalization with the running statistics, a fused conv2d+relu a Conv and a Relu. A custom
// layer is exported through the ops it ran; an op without an ONNX form (a user's op without the
// callback, a loss, a layer forcing training mode) fails the export with a message naming the op
// and the layer ("onnx export: layer "3.gate" (custom "gate"): op "square" has no ONNX form").
// The file: ONNX IR version 8, opset 17; the graph's input "input" and output "output"; parameters
// and buffers as initializers under their state-dict names ("3.bn1.running_mean"); every other
// value's shape in value_info. Dimension 0 of the input is the batch, and is symbolic ("N") in the
// input, the output and every value computed from the input, so one file runs any batch size.
// To make sure of it the model is traced twice, at batch 2 and 3 (input_shape[0] is not used): a
// value computed from the input must have the batch as its dimension 0 in both, and the two
// graphs must be the same apart from it, so a shape, attribute or constant that follows the batch
// otherwise (a reshape that merges the batch into another dimension, a matmul or layer norm over
// it, a constant a custom layer makes from the batch size) is refused. Only the batch is free:
// the other dimensions are those traced. A tensor a custom layer makes outside the tape becomes
// an initializer holding its traced values. Written as checkpoints are (a temporary file,
// synced, renamed over path: a failure leaves an old file as it was; a path that is not a regular
// file is refused untouched). Returns 0 or a negative TG_ERR_* with a message naming the file, or
// the layer and op. Not to be called while another thread runs the model.
typedef struct {
    bool fold_batch_norm; /* a batch norm whose input is a conv's output read by nothing else becomes that
                           * conv's weights and bias: w' = w*g/sqrt(var+eps), b' = (b-mean)*g/sqrt(var+eps)+beta */
    bool softmax;         /* the graph ends with a Softmax over the last dimension: probabilities, not logits */
} tg_onnx_opts;
TG_API int tg_onnx_export(tg_model *m, int ndim, const int *input_shape, const char *path);
/* opts NULL: the defaults (no folding, no softmax), as tg_onnx_export. */
TG_API int tg_onnx_export_opts(tg_model *m, int ndim, const int *input_shape, const char *path,
                               const tg_onnx_opts *opts);

// ----------------------------------------------------------------------------
// evaluation

/* The index of the largest of each row of x:(N,C) (or (N,...): the rest of
 * each sample) into out[N]: the first maximum, a NaN counting as the largest
 * (torch.argmax). Returns N, or a negative TG_ERR_*. */
TG_API int tg_argmax(const tg_tensor *x, int32_t *out);

/* What tg_model_evaluate fills in, and what it may also give if asked:
 *
 *     int32_t pred[10000];
 *     int64_t confusion[10 * 10];
 *     tg_eval e = {.pred = pred, .confusion = confusion, .classes = 10};
 *     if (tg_model_evaluate(m, test, 100, &e) < 0) ...;
 *     printf("test accuracy: %.2f%%\n", 100 * e.accuracy); */
typedef struct {
    int64_t n, correct;   /* out: samples, and how many the model got right */
    double accuracy;      /* out: correct / n */
    double loss;          /* out: the mean cross-entropy */
    int32_t *pred;        /* in: NULL, or room for the dataset's n predictions (argmax), filled in order */
    int64_t *confusion;   /* in: NULL, or room for classes x classes counts: row the true label, column the
                           * predicted one (zeroed first); the model must then give classes outputs */
    int classes;
} tg_eval;

/* Runs the model over a whole dataset in batches of batch (the last may be
 * short), in evaluation mode (every layer's own flag as it was afterwards),
 * without gradients, on a tape of its own that is reset after every batch (so
 * memory stays that of one batch, whatever the dataset's size). Returns 0, or
 * a negative TG_ERR_* naming the batch (the out fields are then zero). */
TG_API int tg_model_evaluate(tg_model *m, const tg_dataset *ds, int batch, tg_eval *e);

// ----------------------------------------------------------------------------
// initialisation and SGD

/* fan_in = size / shape[0] (C/groups*R*S for a conv weight), fan_out = shape[0] * R * S. */
TG_API int tg_init_kaiming_normal(tg_tensor *w, uint64_t *rng);   /* N(0, 2/fan_in) */
TG_API int tg_init_kaiming_uniform(tg_tensor *w, uint64_t *rng);  /* U(-b, b), b = sqrt(6/fan_in) */
TG_API int tg_init_xavier_normal(tg_tensor *w, uint64_t *rng);    /* N(0, 2/(fan_in+fan_out)) */
TG_API int tg_init_xavier_uniform(tg_tensor *w, uint64_t *rng);   /* U(-b, b), b = sqrt(6/(fan_in+fan_out)) */
typedef enum { TG_INIT_KAIMING_NORMAL, TG_INIT_KAIMING_UNIFORM, TG_INIT_XAVIER_NORMAL, TG_INIT_XAVIER_UNIFORM } tg_init;
/* Re-initialise every weight of the model (TG_PARAM_WEIGHT: conv and linear weights, and
 * yours) with a scheme, in model order; TG_PARAM_ZEROS to 0 (biases), TG_PARAM_ONES to 1
 * (batch-norm gamma). TG_ERR_ARG for an unknown scheme or a NULL model. */
TG_API int tg_model_init(tg_model *m, tg_init scheme, uint64_t seed);

/* SGD exactly as PyTorch 1.13's torch.optim.SGD (without maximize):
 *   g = grad + weight_decay * p
 *   buf = g on the first step, else momentum * buf + (1 - dampening) * g
 *   g = g + momentum * buf (nesterov) or buf (momentum != 0)
 *   p -= lr * g */
typedef struct {
    double lr;   /* a double, as Python's floats are: a schedule computes from it; the steps use its float */
    float momentum, dampening, weight_decay;
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

/* Adam and AdamW exactly as PyTorch 1.13's torch.optim.Adam and AdamW (without maximize):
 *   g = grad (+ weight_decay * p for Adam; AdamW instead first does p *= 1 - lr * weight_decay)
 *   m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g^2
 *   vmax = max(vmax, v) and v = vmax with amsgrad
 *   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps), t the parameter's step count.
 * The hyperparameters are doubles, as Python's floats are (0.999 as a float would be 1.3e-5 off).
 * PyTorch's defaults: TG_ADAM(1e-3) and TG_ADAMW(1e-3), then change a field as needed. */
typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
    bool amsgrad;
    bool decoupled;      /* AdamW: weight decay applied to the weights, not added to the gradient */
} tg_adam_opts;
#define TG_ADAM(lr_) ((tg_adam_opts){.lr = (lr_), .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8})
#define TG_ADAMW(lr_) ((tg_adam_opts){.lr = (lr_), .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 1e-2, \
                                      .decoupled = true})

typedef struct tg_adam tg_adam;
/* params as for tg_sgd_new. NULL on bad options (lr, eps, weight_decay finite and >= 0,
 * betas in [0, 1)) or bad parameters. */
TG_API tg_adam *tg_adam_new(tg_tensor *const *params, int n, tg_adam_opts opts);
TG_API void tg_adam_free(tg_adam *o);
/* One update of every parameter that requires a gradient (a frozen one is skipped whole, its
 * step count too); TG_ERR_NONFINITE, naming the first parameter and element, if a gradient held
 * a NaN or an Inf (the step is taken all the same), as tg_sgd_step. */
TG_API int tg_adam_step(tg_adam *o);
TG_API void tg_adam_zero_grad(tg_adam *o);
TG_API int tg_adam_set_lr(tg_adam *o, double lr);   /* TG_ERR_ARG (lr unchanged) unless lr is finite and >= 0 */
TG_API double tg_adam_lr(const tg_adam *o);          /* 0 for NULL */
/* The moments (exp_avg, exp_avg_sq, and max_exp_avg_sq with amsgrad, per parameter) and
 * every parameter's step count, as named tensors, for checkpoints. */
TG_API int tg_adam_state(tg_adam *o, tg_tensor ***state);

/* One optimizer over SGD, Adam and AdamW, with parameter groups as PyTorch's param_groups:
 *
 *     tg_tensor *decay[n], *no_decay[n];                 // weights decay; biases and batch norm's don't
 *     int nn, nd = tg_params_split_decay(params, n, decay, no_decay, &nn);
 *     tg_optim *o = tg_optim_sgd(decay, nd, (tg_sgd_opts){.lr = 0.05f, .momentum = 0.9f, .weight_decay = 5e-4f});
 *     tg_optim_add_group(o, no_decay, nn, 0.05, 0);      // same lr, no weight decay
 *
 * Groups share the first one's other options (momentum, betas, ...); at most 8. */
typedef struct tg_optim tg_optim;
TG_API tg_optim *tg_optim_sgd(tg_tensor *const *params, int n, tg_sgd_opts opts);    /* NULL as tg_sgd_new */
TG_API tg_optim *tg_optim_adam(tg_tensor *const *params, int n, tg_adam_opts opts);  /* NULL as tg_adam_new */
/* A group of more parameters with their own lr and weight decay. TG_ERR_ARG for one already in a group. */
TG_API int tg_optim_add_group(tg_optim *o, tg_tensor *const *params, int n, double lr, double weight_decay);
TG_API void tg_optim_free(tg_optim *o);
/* Steps every group (each as tg_sgd_step or tg_adam_step; the first error is returned). */
TG_API int tg_optim_step(tg_optim *o);
TG_API void tg_optim_zero_grad(tg_optim *o);
TG_API int tg_optim_groups(const tg_optim *o);
/* group -1 sets every group's lr; TG_ERR_ARG (nothing changed) for a bad group or lr */
TG_API int tg_optim_set_lr(tg_optim *o, int group, double lr);
TG_API double tg_optim_lr(const tg_optim *o, int group);  /* as last set (SGD steps with its float) */
/* Every group's state, in order, as named tensors for checkpoints (group g > 0's step count is
 * "sgd.steps.g" or "adam.steps.g"). */
TG_API int tg_optim_state(tg_optim *o, tg_tensor ***state);
/* Splits params as PyTorch users do for weight decay: tensors of two or more dimensions (conv and
 * linear weights) into decay, the rest (biases, batch norm's weight and bias) into no_decay; each
 * with room for n. Returns how many went into decay, *n_no_decay the rest. */
TG_API int tg_params_split_decay(tg_tensor *const *params, int n, tg_tensor **decay, tg_tensor **no_decay,
                                 int *n_no_decay);

/* Learning-rate schedules, as PyTorch 1.13's lr_scheduler, at position t (steps taken; PyTorch's
 * last_epoch), for a group whose lr was base when the schedule was made:
 *   TG_SCHED_CONSTANT   base
 *   TG_SCHED_LINEAR     LinearLR: base * (start_factor + (end_factor - start_factor) * min(t, steps) / steps)
 *   TG_SCHED_STEP       StepLR: base * gamma^floor(t / step_size)
 *   TG_SCHED_COSINE     CosineAnnealingLR: eta_min + (base - eta_min) * (1 + cos(pi t / steps)) / 2
 *   TG_SCHED_ONE_CYCLE  OneCycleLR with max_lr base, total_steps steps, cosine annealing, two phases
 *                       (pct_start 0.3, div_factor 25, final_div_factor 1e4 when 0); the momentum is
 *                       not cycled (PyTorch's cycle_momentum=False); past the end it stays at the end
 * warmup > 0 puts a linear warm-up of that many steps first, from base / warmup to base at step
 * warmup - 1, and starts the schedule at step warmup (SequentialLR of LinearLR(1/warmup, 1,
 * warmup - 1) and the schedule, milestone warmup). Computed in closed form, in double. */
typedef enum { TG_SCHED_CONSTANT, TG_SCHED_LINEAR, TG_SCHED_STEP, TG_SCHED_COSINE, TG_SCHED_ONE_CYCLE } tg_sched_kind;
typedef struct {
    tg_sched_kind kind;
    int warmup;                       /* steps of linear warm-up before the schedule; 0: none */
    int steps;                        /* LINEAR: total_iters; COSINE: T_max; ONE_CYCLE: total_steps */
    double start_factor, end_factor;  /* LINEAR */
    int step_size;                    /* STEP */
    double gamma;                     /* STEP */
    double eta_min;                   /* COSINE */
    double pct_start, div_factor, final_div_factor;  /* ONE_CYCLE (0: PyTorch's defaults) */
} tg_sched_opts;

typedef struct tg_sched tg_sched;
/* Takes each group's lr as its base and sets the lr of step 0, as PyTorch's constructors do.
 * NULL for options out of range (the message says which). o is borrowed. */
TG_API tg_sched *tg_sched_new(tg_optim *o, tg_sched_opts opts);
TG_API void tg_sched_free(tg_sched *s);
/* After the optimizer's step: one step on, and every group's lr set for it. */
TG_API int tg_sched_step(tg_sched *s);
/* Sets every group's lr for the current position: after loading a checkpoint. */
TG_API int tg_sched_apply(tg_sched *s);
TG_API double tg_sched_lr(const tg_sched *s, int group);  /* in double, as PyTorch's scheduler computes it */
TG_API int64_t tg_sched_position(const tg_sched *s);
/* The position, "sched.step", as a tensor for checkpoints (the options come from the code). */
TG_API int tg_sched_state(tg_sched *s, tg_tensor ***state);

/* Gradient clipping, as PyTorch 1.13's torch.nn.utils.clip_grad_norm_ and clip_grad_value_,
 * between backward and the optimizer's step.
 * By norm: the norm of all the gradients together (norm_type 2 is the L2 norm of them as one
 * vector; INFINITY the largest |g|) into *total (may be NULL); if it is above max_norm every
 * gradient is scaled by max_norm / (total + 1e-6). A total that is NaN or Inf is
 * TG_ERR_NONFINITE naming the parameter, and no gradient changes (PyTorch's
 * error_if_nonfinite=True; by default PyTorch scales them all to NaN instead).
 * By value: each gradient element clamped to [-clip, clip]; a NaN stays NaN. */
TG_API int tg_clip_grad_norm(tg_tensor *const *params, int n, float max_norm, float norm_type, float *total);
TG_API int tg_clip_grad_value(tg_tensor *const *params, int n, float clip);

/* Learning-rate schedules, as functions of the epoch (or step) e:
 * step: lr * gamma^floor(e / step_size); cosine: eta_min + (lr - eta_min)(1 + cos(pi e / t_max)) / 2. */
TG_API float tg_lr_step(float lr, int e, int step_size, float gamma);
TG_API float tg_lr_cosine(float lr, int e, int t_max, float eta_min);

// ----------------------------------------------------------------------------
// run logs: values over a whole run, and what looks wrong in them
//
//     tg_runlog *log = tg_runlog_new("run.jsonl", m, "\"batch\":64,\"optim\":\"sgd\"", (tg_runlog_opts){0});
//     for (int64_t step = 0; ...; step++) {
//         ... forward, loss, tg_backward ...
//         tg_runlog_step(log, t, step, loss, acc, tg_optim_lr(o, 0));   // before the optimizer's step
//         tg_optim_step(o), tg_optim_zero_grad(o), tg_tape_reset(t);
//     }
//     tg_finding f[32];
//     int n = tg_runlog_findings(log, f, 32);                          // say what looked wrong
//     tg_runlog_close(log);
//
// The file holds JSON lines, one object per line (UTF-8, NaN and Inf written as null), each with a
// "type": "run" (first: the model's layers and their parameters, and the caller's fields), "step"
// (every `every` steps: loss, accuracy, lr, time since tg_runlog_new, and per layer the L2 norms |w|
// and |dw| of its parameters and the update ratio lr*|dw|/|w|; its output's RMS and share of zeros;
// the gradient at its output, its RMS "dy" and its norm per sample "dy_norm" (RMS x sqrt(elements
// per sample)); for a layer whose output passed a ReLU, "dead": the share of its units (channels of
// a 4-D output, features of a 2-D one) that were 0 for every image of the last `window` steps, and
// "dead_window": how many steps that covers (fewer at the start); for batch norm the batch
// statistics against the running ones (as they are after the step's update); for sigmoid and tanh
// the share of saturated outputs; and on some steps histograms of weights, gradients and outputs,
// whose counts add up to the finite elements, "nonfinite" counting the rest when there are any),
// "graph" (beside each "step": the tape's nodes with their layer, shape, inputs, times, |dy| and
// FLOPs), "test" (tg_runlog_test) and "finding": something that looks wrong, written when it first
// appears, once per kind and layer:
//   vanishing_gradient / exploding_gradient  dy's norm per sample falls / grows 100x or more from the
//                        last layer back to the first (the norm, not the RMS: a narrower layer has a
//                        larger RMS for the same gradient, and widths alone say nothing)
//   dead_relu            half or more of a layer's units were 0 for every image of the window
//   update_ratio_high / update_ratio_low     lr*|dw|/|w| of a weight (2 or more dimensions) above 0.1 or
//                        below 1e-5 on 3 log steps in a row, from the 4th on (low: not while lr is 0,
//                        rising (a warm-up) or below a tenth of the largest lr seen (annealed), nor
//                        once the loss is below 5% of the first: small steps are then no fault)
//   bn_drift             from step 200 on: mean_shift > 1, or var_ratio outside [0.25, 4]
//   saturated            half or more of a sigmoid or tanh layer's outputs within 0.01 of a bound
//   loss_plateau         the loss's mean over the last 5 log steps within 1% of the 5 before, while still
//                        above 5% of the first loss logged
//   nonfinite            a NaN or Inf loss (a step record is then written whatever the step), weight or
//                        gradient
// Each names the layer ("" for the whole net), the numbers, and the usual remedy. A log step costs
// a pass over the parameters, gradients and layer outputs; the dead-unit window a pass over the
// outputs that pass a ReLU on the `window` steps before a log step; other steps nothing.

typedef struct tg_runlog tg_runlog;
typedef struct {
    int every;        /* a "step" record every N steps, at steps 0, N, 2N, ... (0: 50) */
    int hist_every;   /* histograms on every N-th step record, the first included (0: every 4th); < 0 never */
    int bins;         /* histogram bins (0: 32; at most 4096) */
    int window;       /* steps a unit must be 0 for to count as dead (0: every) */
} tg_runlog_opts;
/* Opens path for writing (truncates) and writes the "run" record; extra_json is "" (or NULL) or a
 * JSON object's members ("\"batch\":64,\"optim\":\"sgd\"") added to it ("net" among them names
 * the net; "type", "version", "params" and "layers" are the log's own). The model is borrowed: it
 * must outlive the log, which lists its layers as they are now (those without children, and blocks
 * with parameters of their own). NULL with a message naming tg_runlog_new for a NULL model or path, bad
 * options, extra_json that is not members of an object, or a path that cannot be written. */
TG_API tg_runlog *tg_runlog_new(const char *path, const tg_model *m, const char *extra_json, tg_runlog_opts o);
/* Call after every training step's backward and before the optimizer's step (the tape still holds
 * the step, gradients included): accumulates the dead-unit window and, on a log step, writes a
 * "step" record (and "graph"), and any new "finding" records. step counts from 0; lr is group 0's
 * (finite, >= 0); acc may be NAN when not known. TG_ERR_IO if the file could not be written. */
TG_API int tg_runlog_step(tg_runlog *r, const tg_tape *t, int64_t step, double loss, double acc, double lr);
/* A "test" record: the accuracy and loss on held-out data after an epoch. */
TG_API int tg_runlog_test(tg_runlog *r, int64_t step, int epoch, double acc, double loss);
/* The findings so far (each kind and layer once, the latest numbers and step), for printing at the end:
 * the first max of them into out (may be NULL when max is 0); returns how many there are. */
typedef struct { char kind[32], layer[64], severity[8], message[256], remedy[160]; int64_t step; } tg_finding;
TG_API int tg_runlog_findings(const tg_runlog *r, tg_finding *out, int max);
/* Flushes, closes, frees; TG_ERR_IO if a write failed (here or before). NULL: nothing, 0. */
TG_API int tg_runlog_close(tg_runlog *r);

#ifdef __cplusplus
}
#endif
#endif
