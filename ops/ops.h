/* ops.h: the op table. One line per op; the enum, the names and the table of
 * descriptors all come from this list (libuv's UV_ERRNO_MAP idea). Each op's
 * descriptor, tg__op_<name>, is defined in its family file. */
#ifndef TG_OPS_H
#define TG_OPS_H

#include "tapegrad_op.h"

#define TG_OP_LIST(X)                   \
    X(ADD, add)                         \
    X(SUB, sub)                         \
    X(MUL, mul)                         \
    X(RELU, relu)                       \
    X(RELU6, relu6)                     \
    X(HARDSWISH, hardswish)             \
    X(SIGMOID, sigmoid)                 \
    X(TANH, tanh)                       \
    X(SUM, sum)                         \
    X(MEAN, mean)                       \
    X(MATMUL, matmul)                   \
    X(LINEAR, linear)                   \
    X(RESHAPE, reshape)                 \
    X(CAT, cat)                         \
    X(CROSS_ENTROPY, cross_entropy)     \
    X(SOFTMAX, softmax)                 \
    X(RESIDUAL_ADD, residual_add)       \
    X(CONV2D, conv2d)                   \
    X(MAX_POOL2D, max_pool2d)           \
    X(AVG_POOL2D, avg_pool2d)           \
    X(GLOBAL_AVG_POOL, global_avg_pool) \
    X(DROPOUT, dropout)                 \
    X(DROPOUT_VANILLA, dropout_vanilla) \
    X(BATCH_NORM, batch_norm)           \
    X(CONV_TRANSPOSE2D, conv_transpose2d) \
    X(UPSAMPLE, upsample)               \
    X(LAYER_NORM, layer_norm)           \
    X(MSE_LOSS, mse_loss)

typedef enum {
#define X(ID, name) TG_OP_##ID,
    TG_OP_LIST(X)
#undef X
    TG_OP_COUNT
} tg_op_id;

#define X(ID, name) extern const tg_op tg__op_##name;
TG_OP_LIST(X)
#undef X

/* The diagnose callback of the ops with a ReLU (elementwise.c): "dead: 9 of 16 channels (56%) zero for
 * every image of the batch; ..." when some channels (dim 1) of y are zero for every image, else "". */
void tg__dead_units(const tg_tensor *y, char *buf, size_t len);

/* Every op's descriptor, in TG_OP_LIST order. */
extern const tg_op *const tg_op_table[TG_OP_COUNT];

#endif
