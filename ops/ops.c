/* ops.c: the table of every op descriptor, built from TG_OP_LIST. */
#include "ops.h"

const tg_op *const tg_op_table[TG_OP_COUNT] = {
#define X(ID, name) &tg__op_##name,
    TG_OP_LIST(X)
#undef X
};

int tg__onnx_simple(const tg_node *n, tg_onnx *g, const char *op_type) {
    const char *in[TG_MAX_INPUTS], *y = tg_onnx_name(g, n->out);
    for (int i = 0; i < n->n_in; i++)
        if (!(in[i] = tg_onnx_name(g, n->in[i]))) return tg_last_error_code();
    return y ? tg_onnx_node(g, op_type, in, n->n_in, &y, 1) : tg_last_error_code();
}

const char *tg__onnx_pre_relu(const tg_node *n, tg_onnx *g, bool relu) {
    return relu ? tg_onnx_temp(g, n, "pre_relu", n->out->ndim, n->out->shape, tg_onnx_batched(g, n->out))
                : tg_onnx_name(g, n->out);
}

int tg__onnx_relu(const tg_node *n, tg_onnx *g, const char *from) {
    const char *y = tg_onnx_name(g, n->out);
    return y ? tg_onnx_node(g, "Relu", &from, 1, &y, 1) : tg_last_error_code();
}

int tg__onnx_window(tg_onnx *g, int kernel_h, int kernel_w, int stride, int pad, int dilation) {
    int rc = tg_onnx_attr_ints(g, "kernel_shape", (const int64_t[]){kernel_h, kernel_w}, 2);
    if (!rc) rc = tg_onnx_attr_ints(g, "strides", (const int64_t[]){stride, stride}, 2);
    if (!rc) rc = tg_onnx_attr_ints(g, "pads", (const int64_t[]){pad, pad, pad, pad}, 4);
    if (!rc && dilation) rc = tg_onnx_attr_ints(g, "dilations", (const int64_t[]){dilation, dilation}, 2);
    return rc;
}
