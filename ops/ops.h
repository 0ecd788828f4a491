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

/* Is n a conv2d with pooling after its ReLU (tg_conv2d_relu_max_pool)? Its saved is then the argmax, as
 * max_pool2d's (conv.c). */
bool tg__conv_pools(const tg_node *n);
/* Is n a batch norm with pooling after its ReLU (tg_batch_norm_relu_max_pool)? Its argmax (norm.c). */
bool tg__bn_pools(const tg_node *n);
const int32_t *tg__bn_argmax(const tg_node *n);

/* ONNX export helpers (ops.c) for the ops' onnx callbacks. */
/* op_type on n's inputs in order into n's output (Add, Relu, MatMul, ...). */
int tg__onnx_simple(const tg_node *n, tg_onnx *g, const char *op_type);
/* Where an op with a fused ReLU writes before it (a temporary), or n's output without one; then
 * tg__onnx_relu adds the Relu from that value into n's output. NULL if out of memory. */
const char *tg__onnx_pre_relu(const tg_node *n, tg_onnx *g, bool relu);
int tg__onnx_relu(const tg_node *n, tg_onnx *g, const char *from);
/* Sets a window's attributes on the node just added: kernel_shape, strides, pads (all four
 * sides), and dilations unless dilation is 0. */
int tg__onnx_window(tg_onnx *g, int kernel_h, int kernel_w, int stride, int pad, int dilation);
/* A batch norm in evaluation as y = x * scale + shift per channel, for folding it into the
 * conv before it (conv.c): scale and shift receive C values (both NULL: only whether it can);
 * false in training mode. */
bool tg__batch_norm_affine(const tg_node *bn, float *scale, float *shift);

/* Every op's descriptor, in TG_OP_LIST order. */
extern const tg_op *const tg_op_table[TG_OP_COUNT];

#endif
