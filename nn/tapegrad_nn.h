/* tapegrad_nn.h: what holds parameters and state on top of tapegrad's ops:
 * layers and models, initialisation, SGD, data loading, checkpoints.
 * Same rules as tapegrad.h: NULL or a negative TG_ERR_* on failure with a
 * message in tg_last_error(); nothing here exits or aborts. */
#ifndef TAPEGRAD_NN_H
#define TAPEGRAD_NN_H

#include "tapegrad.h"

#ifdef __cplusplus
extern "C" {
#endif

// ----------------------------------------------------------------------------
// data: IDX files (plain or gzip-compressed) and mini-batches

// ----------------------------------------------------------------------------
// checkpoints: named tensors in a versioned, checksummed file, written atomically

// ----------------------------------------------------------------------------
// layers and models

// ----------------------------------------------------------------------------
// initialisation and SGD

#ifdef __cplusplus
}
#endif
#endif
