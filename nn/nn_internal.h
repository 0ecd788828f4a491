/* nn_internal.h: what nn/'s files share but users don't see. */
#ifndef TG_NN_INTERNAL_H
#define TG_NN_INTERNAL_H

#include "internal.h"
#include "tapegrad_nn.h"
#include <sys/stat.h>

/* Opens path to read only if it is a regular file, without ever blocking (a
 * FIFO) or opening a device: the fd, with st filled, or a negative TG_ERR_*
 * ("<who> <path>: not a regular file (a FIFO)"). Read through that fd. */
int tg__open_regular(const char *who, const char *path, struct stat *st);
/* "a FIFO", "a character device", "a directory", ... for a file's mode */
const char *tg__file_kind(mode_t mode);

/* Every layer of m evaluates while on (tg_model_evaluate, tg_model_print), whatever
 * its own flag says; returns what it was. */
bool tg__model_evaluating(tg_model *m, bool on);

#endif
