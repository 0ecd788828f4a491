/* onnx.c: tg_onnx_export, a model's inference graph as an ONNX file. The model runs once in
 * evaluation mode on a recording tape; the engine (engine/onnx.c) turns the tape into the
 * ModelProto through each op's onnx callback; the file is written as checkpoints are. */
#include "nn_internal.h"
#include <errno.h>

typedef struct {
    const uint8_t *bytes;
    size_t len;
} onnx_body;

static int write_bytes(FILE *f, void *ctx) {
    const onnx_body *b = ctx;
    return fwrite(b->bytes, 1, b->len, f) == b->len ? 0 : (errno ? errno : EIO);
}

/* "layer "3.gate" (custom "gate")" for the node's scope, or "the model's output" (the softmax option) */
static void where(const tg_model *m, const tg_node *n, char *buf, size_t len) {
    const tg_layer *l = n->scope ? tg_model_find(m, n->scope) : NULL;
    if (!n->scope) snprintf(buf, len, "after the model's output");
    else if (!l) snprintf(buf, len, "layer \"%s\"", n->scope);
    else if (l->type == TG_LAYER_CUSTOM) snprintf(buf, len, "layer \"%s\" (custom \"%s\")", l->path, l->kind);
    else snprintf(buf, len, "layer \"%s\" (%s)", l->path, l->kind);
}

int tg_onnx_export_opts(tg_model *m, int ndim, const int *input_shape, const char *path, const tg_onnx_opts *opts) {
    if (!m || !input_shape || !path)
        return tg_fail(TG_ERR_ARG, "onnx_export: %s is NULL", !m ? "model" : !input_shape ? "input_shape" : "path");
    if (!path[0]) return tg_fail(TG_ERR_ARG, "onnx_export: path is empty");
    if (ndim < 1 || ndim > TG_MAX_DIMS)
        return tg_fail(TG_ERR_ARG,
                       "onnx_export: %s: the input has 1 to %d dimensions "
                       "(the first the batch), not %d",
                       path, TG_MAX_DIMS, ndim);
    for (int i = 0; i < ndim; i++)
        if (input_shape[i] < 1)
            return tg_fail(TG_ERR_ARG, "onnx_export: %s: input dimension %d is %d", path, i, input_shape[i]);
    const tg_onnx_opts o = opts ? *opts : (tg_onnx_opts){0};

    /* the trace: an input that requires a gradient makes every node computed from it recorded */
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_tensor_new(ndim, input_shape);
    if (!t || !x || tg_tensor_set_requires_grad(x, true) < 0) {
        tg_tape_free(t), tg_tensor_free(x);
        return tg_fail(TG_ERR_NOMEM, "onnx_export: %s: out of memory", path);
    }
    bool was = tg__model_evaluating(m, true);
    tg_tensor *y = tg_model_forward(m, t, x);
    if (y && o.softmax && tg_tape_set_scope(t, NULL) == 0) y = tg_softmax(t, y);
    tg__model_evaluating(m, was);

    int rc;
    uint8_t *bytes = NULL;
    size_t len = 0;
    if (!y) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", tg_last_error());
        rc = tg_fail(tg_last_error_code() ? tg_last_error_code() : TG_ERR_ARG, "onnx export %s: the trace failed: %s",
                     path, msg);
    } else {
        tg_tensor **state;
        int ns = tg_model_state(m, &state);
        const tg__onnx_args a = {t, x, y, state, ns, o.fold_batch_norm, "exported by tapegrad's tg_onnx_export"};
        const tg_node *bad = NULL;
        rc = tg__onnx_encode(&a, &bytes, &len, &bad);
        if (rc < 0) {
            char msg[512], at[160] = "";
            snprintf(msg, sizeof msg, "%s", tg_last_error());
            if (bad) where(m, bad, at, sizeof at);
            tg_fail(rc, "onnx export: %s%s%s", at, at[0] ? ": " : "", msg);
        } else {
            onnx_body b = {bytes, len};
            rc = tg__save_atomic("onnx export", path, write_bytes, &b);
        }
    }
    tg__free(bytes);
    tg_tape_free(t);
    tg_tensor_free(x);
    return rc;
}

int tg_onnx_export(tg_model *m, int ndim, const int *input_shape, const char *path) {
    return tg_onnx_export_opts(m, ndim, input_shape, path, NULL);
}
