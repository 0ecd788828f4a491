/* nn_internal.h: what nn/'s files share but users don't see. */
#ifndef TG_NN_INTERNAL_H
#define TG_NN_INTERNAL_H

#include "internal.h"
#include "tapegrad_nn.h"
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* Opens path to read only if it is a regular file, without ever blocking (a
 * FIFO) or opening a device: the fd, with st filled, or a negative TG_ERR_*
 * ("<who> <path>: not a regular file (a FIFO)"). Read through that fd. */
int tg__open_regular(const char *who, const char *path, struct stat *st);
/* "a FIFO", "a character device", "a directory", ... for a file's mode */
const char *tg__file_kind(mode_t mode);

/* Writes a file as checkpoints are written: body(f, ctx) fills a temporary file
 * next to path's target (through symbolic links), which is synced and renamed
 * over it; a target that is not a regular file is refused untouched. body
 * returns 0 or an errno. Messages begin "<what> <path>: ". */
int tg__save_atomic(const char *what, const char *path, int (*body)(FILE *f, void *ctx), void *ctx);

/* A checkpoint's loader for safetensors files, by name: tg_safetensors_load when
 * extra is false; with extra true, the file may hold tensors besides these (checked
 * as the rest and ignored), as tg_checkpoint_load_prefix allows. who names the
 * function in errors about the arguments. */
int tg__safetensors_load(const char *who, const char *path, tg_tensor *const *tensors, int n, bool extra);

/* Whether name is batch norm's counter (its last part is TG_BATCH_COUNTER): a
 * checkpoint without it loads with it at 0, as PyTorch loads one. */
static inline bool tg__is_batch_counter(const char *name) {
    size_t n = strlen(name), k = strlen(TG_BATCH_COUNTER);
    return n >= k && !strcmp(name + n - k, TG_BATCH_COUNTER) && (n == k || name[n - k - 1] == '.');
}

/* tg_image_load on a file's bytes already read (n >= 1), path naming them in
 * errors; o is checked. Split out so that the fuzzer feeds it bytes without
 * files (with a small o->max_pixels, which keeps every input quick). */
tg_tensor *tg__image_decode(const char *path, const uint8_t *bytes, size_t n, const tg_image_opts *o);

/* The most parameter groups a tg_optim holds (a tg_sched keeps a base lr for each). */
#define TG__MAX_GROUPS 8

/* An optimizer's parameters: n >= 1 heap tensors with a gradient buffer (tg_param_new),
 * none listed twice; 0, or TG_ERR_ARG with a message from who. */
int tg__check_params(const char *who, tg_tensor *const *params, int n);

/* TG_ERR_NONFINITE from an optimizer (who) whose step met a NaN or an Inf in p's
 * gradient, naming p and the first such element. */
int tg__nonfinite_grad(const char *who, const tg_tensor *p);

/* Every parameter's elements by blocks of TG_BLOCK, in order: an optimizer's step and zero_grad
 * are one parallel loop over them all (a loop a tensor cost about 1.5 us to enter, forty a
 * resnet step). Block i is parameter param[i]'s elements from at[i] on, tg__block_len of them. */
typedef struct {
    int64_t n, elements;
    int *param;
    int64_t *at;
} tg__blocks;
int tg__blocks_init(tg__blocks *b, tg_tensor *const *params, int n); /* 0, or TG_ERR_NOMEM */
void tg__blocks_free(tg__blocks *b);
static inline int64_t tg__block_len(const tg__blocks *b, tg_tensor *const *params, int64_t i) {
    int64_t left = params[b->param[i]]->size - b->at[i];
    return left < TG_BLOCK ? left : TG_BLOCK;
}
/* *first = i if i is lower: the first parameter met with a non-finite gradient, across threads */
void tg__lower(_Atomic int *first, int i);
/* every gradient zeroed, on the threads */
void tg__zero_grads(tg_tensor *const *params, const tg__blocks *b);

/* Every layer of m evaluates while on (tg_model_evaluate, tg_model_print), whatever
 * its own flag says; returns what it was. */
bool tg__model_evaluating(tg_model *m, bool on);

#endif
