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
    errno = 0; /* an errno from before is not this write's */
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

typedef struct {
    tg_tape *t;
    tg_tensor *x, *y;
} trace;

/* The model's forward in evaluation on a recording tape: an input that requires a gradient makes every
 * node computed from it recorded. Each layer's flag is as it was afterwards. */
static int run_trace(tg_model *m, int ndim, const int *shape, bool softmax, trace *tr) {
    tr->t = tg_tape_new();
    tr->x = tg_tensor_new(ndim, shape);
    if (!tr->t || !tr->x || tg_tensor_set_requires_grad(tr->x, true) < 0) return tg_fail(TG_ERR_NOMEM, "out of memory");
    bool was = tg__model_evaluating(m, true);
    tr->y = tg_model_forward(m, tr->t, tr->x);
    if (tr->y && softmax) tr->y = tg_tape_set_scope(tr->t, NULL) < 0 ? NULL : tg_softmax(tr->t, tr->y);
    tg__model_evaluating(m, was);
    return tr->y ? 0 : tg_last_error_code() ? tg_last_error_code() : TG_ERR_ARG;
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

    /* two traces, at batches 2 and 3 (1 would hide a dimension that broadcasts): a value whose dimension 0
     * merely equals the batch in one shows in their comparison */
    tg_tensor **state;
    int ns = tg_model_state(m, &state);
    trace tr[2] = {{0}, {0}};
    tg__onnx_args a[2];
    int rc = 0;
    for (int k = 0; k < 2 && !rc; k++) {
        int shape[TG_MAX_DIMS];
        memcpy(shape, input_shape, (size_t)ndim * sizeof *shape);
        shape[0] = 2 + k;
        rc = run_trace(m, ndim, shape, o.softmax, &tr[k]);
        if (rc) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", tg_last_error());
            rc = tg_fail(rc,
                         "onnx export %s: the trace at batch %d failed (the model is traced at batch 2 and 3, "
                         "as the exported graph takes any batch): %s",
                         path, shape[0], msg);
        }
        a[k] = (tg__onnx_args){
            tr[k].t, tr[k].x, tr[k].y, state, ns, o.fold_batch_norm, "exported by tapegrad's tg_onnx_export"};
    }
    uint8_t *bytes = NULL;
    size_t len = 0;
    if (!rc) {
        const tg_node *bad = NULL;
        rc = tg__onnx_encode(&a[0], &a[1], &bytes, &len, &bad);
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
    for (int k = 0; k < 2; k++) tg_tape_free(tr[k].t), tg_tensor_free(tr[k].x);
    return rc;
}

int tg_onnx_export(tg_model *m, int ndim, const int *input_shape, const char *path) {
    return tg_onnx_export_opts(m, ndim, input_shape, path, NULL);
}
