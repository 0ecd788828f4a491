/* test_onnx.c: ONNX export (tg_onnx_export) without ONNX itself: every op of the table has its
 * callback (sum and mean aside); a tiny model's file decoded
 * field by field by a minimal protobuf reader; the same bytes for any traced batch; refusals
 * naming the op and the layer; caller mistakes; paths that cannot be written; the old file kept
 * when an export fails; the model's flags and buffers as they were; folding and the softmax
 * option. tests/onnx.sh checks the files with ONNX and runs them in ONNX Runtime. On failure
 * the temporary directory is left in place and printed. */
#include "check.h"
#include "ops.h" /* the op table */
#include "tapegrad_nn.h"
#include "tapegrad_op.h"
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static const char *path_of(const char *name) {
    static char p[2][256];
    static int k;
    k ^= 1;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

/* The whole file into a malloc'd buffer, *n bytes; NULL if it cannot be read. */
static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(len > 0 ? (size_t)len : 1);
    *n = b && len >= 0 && fread(b, 1, (size_t)len, f) == (size_t)len ? (size_t)len : 0;
    fclose(f);
    return b;
}

// ----------------------------------------------------------------------------
// a minimal protobuf reader

typedef struct {
    const uint8_t *p, *end;
} reader;

typedef struct {
    int field, wire;
    uint64_t v;          /* varint and fixed32 */
    const uint8_t *data; /* length-delimited */
    size_t len;
} pfield;

static bool varint(reader *r, uint64_t *v) {
    *v = 0;
    for (int shift = 0; r->p < r->end && shift < 64; shift += 7) {
        uint8_t b = *r->p++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return true;
    }
    return false;
}

/* The next field, or false at the end (or on bad bytes, which fail the check of *ok). */
static bool next(reader *r, pfield *f, bool *ok) {
    if (r->p >= r->end) return false;
    uint64_t key;
    if (!varint(r, &key)) return *ok = false;
    f->field = (int)(key >> 3), f->wire = (int)(key & 7);
    if (f->wire == 0) return varint(r, &f->v) || (*ok = false);
    if (f->wire == 5) {
        if (r->end - r->p < 4) return *ok = false;
        f->v = r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
        r->p += 4;
        return true;
    }
    if (f->wire == 2 && varint(r, &f->v) && f->v <= (uint64_t)(r->end - r->p)) {
        f->data = r->p, f->len = (size_t)f->v;
        r->p += f->len;
        return true;
    }
    return *ok = false;
}

static reader sub(const pfield *f) { return (reader){f->data, f->data + f->len}; }
static bool is_str(const pfield *f, const char *s) {
    return f->wire == 2 && f->len == strlen(s) && !memcmp(f->data, s, f->len);
}

/* A ValueInfoProto's name and shape: dims[i] a value, or -1 for the dim_param "N" (the first cap of
 * them); returns the number of dimensions. */
static int value_info(const pfield *vi, char *name, size_t name_len, int64_t *dims, int cap, bool *ok) {
    reader r = sub(vi);
    pfield f;
    int nd = 0;
    while (next(&r, &f, ok)) {
        if (f.field == 1) snprintf(name, name_len, "%.*s", (int)f.len, (const char *)f.data);
        if (f.field != 2) continue;
        reader tp = sub(&f);
        pfield tt, s, d, dv;
        while (next(&tp, &tt, ok)) {
            reader tr = sub(&tt);
            while (tt.field == 1 && next(&tr, &s, ok)) {
                if (s.field == 1) CHECK_INT(s.v, 1); /* float */
                reader sr = sub(&s);
                while (s.field == 2 && next(&sr, &d, ok)) {
                    reader dr = sub(&d);
                    while (next(&dr, &dv, ok) && nd < cap)
                        dims[nd] = dv.field == 1 ? (int64_t)dv.v : is_str(&dv, "N") ? -1 : -2;
                    nd++;
                }
            }
        }
    }
    return nd;
}

// ----------------------------------------------------------------------------
// models

static tg_model *tiny(void) {
    tg_model *m = tg_model_new(3);
    tg_model_linear(m, 2, 3, true);
    return m;
}

/* y = x^2: a user's op without an onnx callback */
static int square_shape(tg_node *n, int *ndim, int *shape) {
    *ndim = n->in[0]->ndim;
    for (int i = 0; i < *ndim; i++) shape[i] = n->in[0]->shape[i];
    return 0;
}
static int square_forward(tg_tape *t, tg_node *n) {
    (void)t;
    for (int64_t i = 0; i < n->out->size; i++) n->out->data[i] = n->in[0]->data[i] * n->in[0]->data[i];
    return 0;
}
static int square_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    for (int64_t i = 0; i < n->out->size; i++) n->in[0]->grad[i] += n->out->grad[i] * 2 * n->in[0]->data[i];
    return 0;
}
static const tg_op square_op = {.name = "square", .shape = square_shape, .forward = square_forward, .vjp = square_vjp};

/* The same op exporting itself, as tapegrad_op.h's example (Mul(x, x)); first it makes the builder's
 * mistakes, each refused with its message, inside a real export. */
static int square_export(const tg_node *n, tg_onnx *g) {
    const char *x = tg_onnx_name(g, n->in[0]), *y = tg_onnx_name(g, n->out);
    CHECK(x && y && !strcmp(x, "input"));
    CHECK_INT(tg_onnx_attr_int(g, "axis", 1), TG_ERR_ARG); /* the model's first node: none to set it on */
    CHECK_MSG(tg_last_error(), "onnx_attr: square: axis: no node yet");
    CHECK_INT(tg_onnx_node(g, "Mul", (const char *[]){x, NULL}, 2, &y, 1), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "onnx_node: Mul: input 1 is NULL");
    CHECK_INT(tg_onnx_node(g, "", &x, 1, &y, 1), TG_ERR_ARG);
    CHECK(tg_onnx_temp(g, n, "t", 2, (const int[]){7, 2}, true) == NULL); /* the traced batch is 2 or 3 */
    CHECK_MSG(tg_last_error(), "dimension 0 is not the batch (");         /* traced at batch 2, then 3 */
    CHECK(tg_onnx_const_floats(g, "c", 5, (const int64_t[]){1, 1, 1, 1, 1}, (const float[]){1}) == NULL);
    CHECK(tg_onnx_const_int64s(g, "c", 1, (const int64_t[]){-1}, (const int64_t[]){1}) == NULL);
    CHECK_MSG(tg_last_error(), "onnx_const: dimension 0 is -1");
    CHECK(tg_onnx_name(g, NULL) == NULL);
    CHECK_INT(tg_onnx_alias(g, n->in[0], n->out), TG_ERR_ARG); /* not this node's output */
    CHECK_MSG(tg_last_error(), "onnx_alias: square: only the current node's output can be an alias");
    CHECK_INT(tg_onnx_alias(g, n->out, n->in[0]), TG_ERR_STATE); /* named y above */
    CHECK_INT(tg_onnx_mark(g, n), TG_ERR_ARG);                   /* only a later node */
    CHECK_MSG(tg_last_error(), "onnx_mark: square: node 0 (square) is not after the current one");
    CHECK(tg_onnx_batched(g, n->out) && !tg_onnx_marked(g, n) && !tg_onnx_folding(g));
    return tg_onnx_node(g, "Mul", (const char *[]){x, x}, 2, &y, 1);
}
static const tg_op square_onnx_op = {
    .name = "square", .shape = square_shape, .forward = square_forward, .vjp = square_vjp, .onnx = square_export};
static tg_tensor *square_onnx_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)l, (void)training;
    return tg_apply(t, &square_onnx_op, &x, 1, NULL);
}

/* Callbacks that get the builder wrong, each to be refused: 0 sets an attribute before adding its node
 * (an earlier op's node is there); 1 names its output and adds no node; 2 reads a value nothing computes. */
static int probe_mode;
static int probe_export(const tg_node *n, tg_onnx *g) {
    const char *x = tg_onnx_name(g, n->in[0]), *y = tg_onnx_name(g, n->out);
    if (!x || !y) return tg_last_error_code();
    if (probe_mode == 0) {
        int rc = tg_onnx_attr_float(g, "alpha", 2.0f);
        return rc ? rc : tg_onnx_node(g, "Relu", &x, 1, &y, 1);
    }
    if (probe_mode == 1) return 0;
    const char *never = tg_onnx_temp(g, n, "never", n->out->ndim, n->out->shape, true);
    return never ? tg_onnx_node(g, "Add", (const char *[]){x, never}, 2, &y, 1) : tg_last_error_code();
}
static const tg_op probe_op = {
    .name = "probe", .shape = square_shape, .forward = square_forward, .vjp = square_vjp, .onnx = probe_export};
static tg_tensor *probe_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)l, (void)training;
    return tg_apply(t, &probe_op, &x, 1, NULL);
}

/* x's first row, (1,C): an op whose output drops the batch */
static int row0_shape(tg_node *n, int *ndim, int *shape) {
    *ndim = 2, shape[0] = 1, shape[1] = n->in[0]->shape[1];
    return 0;
}
static int row0_forward(tg_tape *t, tg_node *n) {
    (void)t;
    memcpy(n->out->data, n->in[0]->data, (size_t)n->out->size * sizeof(float));
    return 0;
}
static int row0_vjp(tg_tape *t, tg_node *n) {
    (void)t;
    for (int64_t i = 0; i < n->out->size; i++) n->in[0]->grad[i] += n->out->grad[i];
    return 0;
}
static int row0_export(const tg_node *n, tg_onnx *g) {
    const char *x = tg_onnx_name(g, n->in[0]), *y = tg_onnx_name(g, n->out);
    return x && y ? tg_onnx_node(g, "Identity", &x, 1, &y, 1) : tg_last_error_code();
}
static const tg_op row0_op = {
    .name = "row0", .shape = row0_shape, .forward = row0_forward, .vjp = row0_vjp, .onnx = row0_export};
static tg_tensor *row0_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)l, (void)training;
    return tg_apply(t, &row0_op, &x, 1, NULL);
}

static tg_tensor *square_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)l, (void)training;
    return tg_apply(t, &square_op, &x, 1, NULL);
}
static tg_tensor *loss_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)l, (void)training;
    return tg_mse_loss(t, x, x);
}
static tg_tensor *always_drop(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)l, (void)training; /* ignores its flag */
    return tg_dropout(t, x, 0.5f, true);
}
static tg_tensor *merge_batch(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)l, (void)training;
    return tg_reshape(t, x, 1, (const int[]){-1});
}

/* Values that follow the batch other than as their dimension 0, each traced fine at batch 3 alone:
 * p(3,3) @ x, where the batch (3) meets p's columns; c(4,B) @ x, a product over the batch; a layer
 * norm whose gamma covers the batch; cat with a (B,B) constant, whose dimension 1 follows the batch.
 * c and gamma are made outside the tape, from x's shape. */
static tg_tensor *ones(tg_tape *t, int d0, int d1) {
    tg_tensor *c = tg_tensor_tape(t, 2, (const int[]){d0, d1});
    for (int64_t i = 0; c && i < c->size; i++) c->data[i] = 1.0f;
    return c;
}
static tg_tensor *p_matmul(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    return tg_matmul(t, l->params[0], x);
}
static tg_tensor *batch_matmul(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)l, (void)training;
    return tg_matmul(t, ones(t, 4, x->shape[0]), x);
}
static tg_tensor *batch_norm_axis0(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)l, (void)training;
    int n = x->shape[0] * x->shape[1];
    return tg_layer_norm(t, x, ones(t, 1, n), ones(t, 1, n), 1e-5f);
}
static tg_tensor *batch_cat(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)l, (void)training;
    return tg_cat(t, (tg_tensor *[]){x, ones(t, x->shape[0], x->shape[0])}, 2, 1);
}

/* a batch norm that a custom layer runs in training mode, after a conv */
static tg_tensor *bn_training(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    return tg_batch_norm(t, x, l->params[0], l->params[1], l->buffers[0], l->buffers[1], true, 0.1f, 1e-5f);
}

/* output_padding 1 with stride 1 (below the dilation 2) and pad 0: ONNX Runtime has no form for it */
static tg_tensor *convt_fwd(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    return tg_conv_transpose2d(t, tg_reshape(t, x, 4, (const int[]){x->shape[0], 1, 1, 3}), l->params[0], NULL, 1, 0, 1,
                               2, 1);
}

/* linear "0", then block "1" holding the custom layer "gate" */
static tg_model *with_custom(tg_forward_fn fwd) {
    tg_model *m = tiny();
    tg_model_begin(m, NULL, NULL, NULL);
    tg_layer_set_name(tg_model_custom(m, "gate", fwd, NULL), "gate");
    tg_model_end(m);
    return m;
}

// ----------------------------------------------------------------------------
// tests

static void decode_tiny(void) {
    tg_model *m = tiny();
    tg_tensor **st;
    CHECK_INT(tg_model_state(m, &st), 2);
    CHECK_INT(tg_onnx_export(m, 2, (const int[]){4, 2}, path_of("tiny.onnx")), 0);
    size_t n = 0;
    uint8_t *b = slurp(path_of("tiny.onnx"), &n);
    CHECK(b && n > 100);
    reader r = {b, b + n};
    pfield f, g, h;
    bool ok = true;
    int64_t ir = 0, opset = 0;
    bool producer = false;
    int nodes = 0, inits = 0, inputs = 0, outputs = 0;
    while (b && next(&r, &f, &ok)) {
        if (f.field == 1) ir = (int64_t)f.v;
        if (f.field == 2) producer = is_str(&f, "tapegrad");
        if (f.field == 8) {
            reader o = sub(&f);
            while (next(&o, &g, &ok)) {
                if (g.field == 1) CHECK(is_str(&g, ""));
                if (g.field == 2) opset = (int64_t)g.v;
            }
        }
        if (f.field != 7) continue;
        reader gr = sub(&f);
        while (next(&gr, &g, &ok)) {
            if (g.field == 1) { /* the node: Gemm(input, 0.weight, 0.bias) -> output, transB 1 */
                nodes++;
                const char *want_in[3] = {"input", "0.weight", "0.bias"};
                int k = 0, attrs = 0;
                reader nr = sub(&g);
                while (next(&nr, &h, &ok)) {
                    if (h.field == 1) CHECK(k < 3 && is_str(&h, want_in[k++]));
                    if (h.field == 2) CHECK(is_str(&h, "output"));
                    if (h.field == 4) CHECK(is_str(&h, "Gemm"));
                    if (h.field != 5) continue;
                    attrs++;
                    reader ar = sub(&h);
                    pfield a;
                    int fields[3] = {0}; /* name, i, type: each once */
                    while (next(&ar, &a, &ok)) {
                        if (a.field == 1) {
                            CHECK(is_str(&a, "transB"));
                            fields[0]++;
                        }
                        if (a.field == 3) {
                            CHECK_INT(a.v, 1);
                            fields[1]++;
                        }
                        if (a.field == 20) { /* INT */
                            CHECK_INT(a.v, 2);
                            fields[2]++;
                        }
                    }
                    CHECK(fields[0] == 1 && fields[1] == 1 && fields[2] == 1);
                }
                CHECK_INT(k, 3);
                CHECK_INT(attrs, 1);
            }
            if (g.field == 5) { /* the initializers: the state's tensors, their bytes as they are */
                const tg_tensor *x = st[inits++ % 2];
                int dims = 0, fields[3] = {0}; /* data_type, name, raw_data: each once */
                reader ir2 = sub(&g);
                while (next(&ir2, &h, &ok)) {
                    if (h.field == 1) { /* packed dims */
                        reader dr = {h.data, h.data + h.len};
                        uint64_t d;
                        for (; dr.p < dr.end && varint(&dr, &d); dims++)
                            CHECK(dims < x->ndim && d == (uint64_t)x->shape[dims]);
                    }
                    if (h.field == 2) {
                        CHECK_INT(h.v, 1);
                        fields[0]++;
                    }
                    if (h.field == 8) {
                        CHECK(is_str(&h, x->name));
                        fields[1]++;
                    }
                    if (h.field == 9) {
                        CHECK(h.len == (size_t)x->size * 4 && !memcmp(h.data, x->data, h.len));
                        fields[2]++;
                    }
                }
                CHECK_INT(dims, x->ndim);
                CHECK(fields[0] == 1 && fields[1] == 1 && fields[2] == 1);
            }
            if (g.field == 11 || g.field == 12) { /* input (N,2), output (N,3) */
                char name[32] = "";
                int64_t dims[4] = {0};
                CHECK_INT(value_info(&g, name, sizeof name, dims, 4, &ok), 2);
                CHECK(!strcmp(name, g.field == 11 ? "input" : "output"));
                CHECK_INT(dims[0], -1);
                CHECK_INT(dims[1], g.field == 11 ? 2 : 3);
                *(g.field == 11 ? &inputs : &outputs) += 1;
            }
        }
    }
    CHECK(ok);
    CHECK_INT(ir, 8);
    CHECK_INT(opset, 17);
    CHECK(producer);
    CHECK_INT(nodes, 1);
    CHECK_INT(inits, 2);
    CHECK_INT(inputs, 1);
    CHECK_INT(outputs, 1);

    /* the batch is symbolic: a trace of another batch size writes the same bytes */
    CHECK_INT(tg_onnx_export(m, 2, (const int[]){1, 2}, path_of("tiny1.onnx")), 0);
    size_t n1 = 0;
    uint8_t *b1 = slurp(path_of("tiny1.onnx"), &n1);
    CHECK(b && b1 && n1 == n && !memcmp(b, b1, n));
    free(b), free(b1);
    unlink(path_of("tiny.onnx")), unlink(path_of("tiny1.onnx"));
    tg_model_free(m);
}

static void refusals(void) {
    const int shape[2] = {4, 2};
    tg_model *m = with_custom(square_fwd);
    CHECK_INT(tg_onnx_export(m, 2, shape, path_of("r.onnx")), TG_ERR_ARG);
    CHECK(!strcmp(tg_last_error(), "onnx export: layer \"1.gate\" (custom \"gate\"): op \"square\" has no ONNX form"));
    tg_model_free(m);

    m = with_custom(loss_fwd);
    CHECK_INT(tg_onnx_export(m, 2, shape, path_of("r.onnx")), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(),
              "layer \"1.gate\" (custom \"gate\"): mse_loss: a loss is not part of an inference graph");
    tg_model_free(m);

    m = with_custom(always_drop);
    CHECK_INT(tg_onnx_export(m, 2, shape, path_of("r.onnx")), TG_ERR_STATE);
    CHECK_MSG(tg_last_error(), "layer \"1.gate\" (custom \"gate\"): dropout: runs in training mode");
    tg_model_free(m);

    m = with_custom(convt_fwd);
    tg_layer_param(tg_model_find(m, "1.gate"), "w", 4, (const int[]){1, 1, 2, 2}, TG_PARAM_WEIGHT);
    CHECK_INT(tg_onnx_export(m, 2, shape, path_of("r.onnx")), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "layer \"1.gate\" (custom \"gate\"): conv_transpose2d: output_padding 1 is not below");
    tg_model_free(m);

    m = with_custom(merge_batch);
    CHECK_INT(tg_onnx_export(m, 2, shape, path_of("r.onnx")), TG_ERR_SHAPE);
    CHECK_MSG(tg_last_error(), "reshape: 2x3 to 6: the batch (dimension 0, 2) is not kept as dimension 0");
    tg_model_free(m);

    /* a model that cannot run: the trace's message */
    m = tiny();
    CHECK_INT(tg_onnx_export(m, 2, (const int[]){4, 5}, path_of("r.onnx")), TG_ERR_SHAPE);
    CHECK_MSG(tg_last_error(), "onnx export ");
    CHECK_MSG(tg_last_error(), "the trace at batch 2 failed (the model is traced at batch 2 and 3, as the exported "
                               "graph takes any batch): model_forward: layer 0 (linear)");
    struct stat st;
    CHECK(stat(path_of("r.onnx"), &st) < 0); /* no file was made */
    tg_model_free(m);
}

static void builder_mistakes(void) {
    const int shape[2] = {4, 2};
    tg_model *m = with_custom(probe_fwd);
    probe_mode = 0;
    CHECK_INT(tg_onnx_export(m, 2, shape, path_of("p.onnx")), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "onnx export: layer \"1.gate\" (custom \"gate\"): onnx_attr: probe: alpha: no node yet");
    probe_mode = 1;
    CHECK_INT(tg_onnx_export(m, 2, shape, path_of("p.onnx")), TG_ERR_STATE);
    CHECK_MSG(tg_last_error(), "onnx export: layer \"1.gate\" (custom \"gate\"): op \"probe\": its onnx callback gave "
                               "its output no value (\"output\" is named, but no node computes it)");
    probe_mode = 2;
    CHECK_INT(tg_onnx_export(m, 2, shape, path_of("p.onnx")), TG_ERR_STATE);
    CHECK_MSG(tg_last_error(), "onnx export: layer \"1.gate\" (custom \"gate\"): probe: its Add node \"1.gate/Add_1\" "
                               "reads \"output/never\", which nothing before it computes");
    struct stat st;
    CHECK(stat(path_of("p.onnx"), &st) < 0); /* no file was made */
    tg_model_free(m);
}

/* Each runs at the traced batch 3 (the given shape's) but not as a graph of any batch: refused. */
static void batch_followers(void) {
    const int shape[2] = {3, 2};
    tg_model *m = with_custom(p_matmul);
    tg_layer_param(tg_model_find(m, "1.gate"), "p", 2, (const int[]){3, 3}, TG_PARAM_WEIGHT);
    CHECK_INT(tg_onnx_export(m, 2, shape, path_of("f.onnx")), TG_ERR_SHAPE);
    CHECK_MSG(tg_last_error(), "the trace at batch 2 failed");
    CHECK_MSG(tg_last_error(), "matmul");
    tg_model_free(m);

    m = with_custom(batch_matmul);
    CHECK_INT(tg_onnx_export(m, 2, (const int[]){4, 2}, path_of("f.onnx")), TG_ERR_SHAPE);
    CHECK_MSG(tg_last_error(), "onnx export: layer \"1.gate\" (custom \"gate\"): matmul: its second input is "
                               "computed from the input");
    tg_model_free(m);

    m = with_custom(batch_norm_axis0);
    CHECK_INT(tg_onnx_export(m, 2, shape, path_of("f.onnx")), TG_ERR_SHAPE);
    CHECK_MSG(tg_last_error(), "onnx export: layer \"1.gate\" (custom \"gate\"): layer_norm: normalises over");
    tg_model_free(m);

    m = with_custom(row0_fwd);
    CHECK_INT(tg_onnx_export(m, 2, shape, path_of("f.onnx")), TG_ERR_SHAPE);
    CHECK(!strcmp(tg_last_error(), "onnx export: layer \"1.gate\" (custom \"gate\"): row0: its output 1x3, computed "
                                   "from the input 2x2, does not keep the batch as its dimension 0 (the exported "
                                   "graph's batch is symbolic)"));
    tg_model_free(m);

    m = with_custom(batch_cat);
    CHECK_INT(tg_onnx_export(m, 2, shape, path_of("f.onnx")), TG_ERR_SHAPE);
    CHECK_MSG(tg_last_error(), "onnx export: layer \"1.gate\" (custom \"gate\"): cat: ");
    CHECK_MSG(tg_last_error(), "differs between the traces at batch 2 and 3: only dimension 0 may follow the batch");
    struct stat st;
    CHECK(stat(path_of("f.onnx"), &st) < 0); /* no file was made */
    tg_model_free(m);
}

/* Whether the file holds the bytes of s (an op type, a name). */
static bool holds(const char *path, const char *s) {
    size_t n = 0, k = strlen(s);
    uint8_t *b = slurp(path, &n);
    bool found = false;
    for (size_t i = 0; b && !found && i + k <= n; i++) found = !memcmp(b + i, s, k);
    free(b);
    return found;
}

/* a user's op with an onnx callback is exported through it */
static void own_op(void) {
    tg_model *m = tg_model_new(1);
    tg_model_custom(m, "square", square_onnx_fwd, NULL);
    tg_model_linear(m, 2, 3, true);
    CHECK_INT(tg_onnx_export(m, 2, (const int[]){4, 2}, path_of("own.onnx")), 0);
    CHECK(holds(path_of("own.onnx"), "Mul") && holds(path_of("own.onnx"), "0/square:0"));
    tg_model_free(m);
    /* an output that is no node's own (the input itself, through dropout alone) is copied by an Identity */
    m = tg_model_new(1);
    tg_model_dropout(m, 0.5f);
    CHECK_INT(tg_onnx_export(m, 2, (const int[]){4, 2}, path_of("own.onnx")), 0);
    CHECK(holds(path_of("own.onnx"), "Identity") && !holds(path_of("own.onnx"), "Dropout"));
    unlink(path_of("own.onnx"));
    tg_model_free(m);
}

static void mistakes(void) {
    tg_model *m = tiny();
    const int shape[2] = {4, 2};
    CHECK_INT(tg_onnx_export(NULL, 2, shape, path_of("x.onnx")), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "onnx_export: model is NULL");
    CHECK_INT(tg_onnx_export(m, 2, NULL, path_of("x.onnx")), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "onnx_export: input_shape is NULL");
    CHECK_INT(tg_onnx_export(m, 2, shape, NULL), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "onnx_export: path is NULL");
    CHECK_INT(tg_onnx_export(m, 2, shape, ""), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "path is empty");
    CHECK_INT(tg_onnx_export(m, 0, shape, path_of("x.onnx")), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "1 to 4 dimensions");
    CHECK_INT(tg_onnx_export(m, 5, (const int[]){1, 1, 1, 1, 1}, path_of("x.onnx")), TG_ERR_ARG);
    CHECK_INT(tg_onnx_export(m, 2, (const int[]){0, 2}, path_of("x.onnx")), TG_ERR_ARG);
    CHECK_MSG(tg_last_error(), "input dimension 0 is 0");
    CHECK_INT(tg_onnx_export(m, 2, (const int[]){4, -2}, path_of("x.onnx")), TG_ERR_ARG);
    CHECK_INT(tg_onnx_export_opts(m, 2, shape, path_of("x.onnx"), NULL), 0); /* NULL options: the defaults */
    unlink(path_of("x.onnx"));

    /* paths that cannot be written: a missing directory, a directory, a FIFO (no hang) */
    CHECK_INT(tg_onnx_export(m, 2, shape, "/nonexistent-tapegrad-dir/m.onnx"), TG_ERR_IO);
    CHECK_MSG(tg_last_error(), "onnx export /nonexistent-tapegrad-dir/m.onnx: ");
    CHECK_INT(tg_onnx_export(m, 2, shape, dir), TG_ERR_IO);
    CHECK_MSG(tg_last_error(), "not a regular file (a directory)");
    CHECK(mkfifo(path_of("fifo"), 0600) == 0);
    CHECK_INT(tg_onnx_export(m, 2, shape, path_of("fifo")), TG_ERR_IO);
    CHECK_MSG(tg_last_error(), "not a regular file (a FIFO)");
    unlink(path_of("fifo"));
    tg_model_free(m);
}

static void atomic(void) {
    const int shape[2] = {4, 2};
    tg_model *big = tg_model_new(1), *small = tiny(), *bad = with_custom(square_fwd);
    tg_model_linear(big, 2, 64, true);
    tg_model_relu(big);
    tg_model_linear(big, 64, 3, true);
    const char *p = path_of("a.onnx"), *q = path_of("b.onnx");
    CHECK_INT(tg_onnx_export(big, 2, shape, p), 0);
    size_t n0 = 0, n1 = 0, n2 = 0;
    uint8_t *before = slurp(p, &n0);
    CHECK_INT(tg_onnx_export(bad, 2, shape, p), TG_ERR_ARG); /* a failed export leaves the old file */
    uint8_t *after = slurp(p, &n1);
    CHECK(before && after && n0 == n1 && !memcmp(before, after, n0));
    /* a smaller model replaces it whole: no tail of the old one is left */
    CHECK_INT(tg_onnx_export(small, 2, shape, p), 0);
    CHECK_INT(tg_onnx_export(small, 2, shape, q), 0);
    free(after);
    after = slurp(p, &n1);
    uint8_t *fresh = slurp(q, &n2);
    CHECK(after && fresh && n1 == n2 && n1 < n0 && !memcmp(after, fresh, n1));
    /* and no temporary is left beside it */
    DIR *d = opendir(dir);
    struct dirent *e;
    int files = 0;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') files++;
    if (d) closedir(d);
    CHECK_INT(files, 2);
    unlink(p), unlink(q);
    free(before), free(after), free(fresh);
    tg_model_free(big), tg_model_free(small), tg_model_free(bad);
}

static void options_and_flags(void) {
    tg_model *m = tg_model_new(2);
    tg_model_conv2d(m, 1, 4, 3, 1, 1, true);  /* 0: folds into the conv */
    tg_model_batch_norm(m, 4);                /* 1 */
    tg_model_conv2d(m, 4, 4, 3, 1, 1, false); /* 2: fused with the relu after it: no fold */
    tg_model_relu(m);
    tg_model_batch_norm(m, 4); /* 4 */
    tg_model_dropout(m, 0.5f);
    tg_model_global_avg_pool(m);
    tg_tensor **st;
    int ns = tg_model_state(m, &st);
    for (int i = 0; i < ns; i++)
        for (int64_t k = 0; k < st[i]->size; k++) st[i]->data[k] += 0.25f; /* statistics that are not the defaults */
    int64_t nc = 0;
    for (int i = 0; i < ns; i++) nc += st[i]->size;
    float *copy = malloc((size_t)nc * sizeof *copy), *c = copy; /* every state tensor whole */
    for (int i = 0; c && i < ns; c += st[i]->size, i++) memcpy(c, st[i]->data, (size_t)st[i]->size * sizeof *c);
    const int shape[4] = {2, 1, 6, 6};
    const char *p = path_of("o.onnx");

    CHECK(tg_model_training(m));
    CHECK_INT(tg_onnx_export(m, 4, shape, p), 0);
    CHECK(holds(p, "BatchNormalization") && holds(p, "1.running_var") && !holds(p, "Softmax"));
    CHECK(!holds(p, "Dropout") && !holds(p, "num_batches_tracked"));
    /* the flags and every buffer as they were: the trace evaluates without changing the model */
    CHECK(tg_model_training(m) && tg_model_layer(m, 1)->training && tg_model_layer(m, 5)->training);
    c = copy;
    for (int i = 0; c && i < ns; c += st[i]->size, i++) CHECK(!memcmp(c, st[i]->data, (size_t)st[i]->size * sizeof *c));
    CHECK(copy != NULL);

    tg_onnx_opts o = {.fold_batch_norm = true};
    CHECK_INT(tg_onnx_export_opts(m, 4, shape, p, &o), 0);
    CHECK(holds(p, "BatchNormalization") && holds(p, "4.running_var")); /* layer 4's stays: a relu is between */
    CHECK(!holds(p, "1.running_var") && holds(p, "0/weight_folded") && holds(p, "0/bias_folded"));
    o = (tg_onnx_opts){.softmax = true};
    tg_model_train(m, false);
    CHECK_INT(tg_onnx_export_opts(m, 4, shape, p, &o), 0);
    CHECK(holds(p, "Softmax") && !tg_model_training(m));
    unlink(p);
    free(copy);
    tg_model_free(m);
}

/* Folding a batch norm that runs in training mode: refused by the batch norm, under its own layer (not the conv's) */
static void fold_training(void) {
    tg_model *m = tg_model_new(1);
    tg_model_conv2d(m, 1, 4, 3, 1, 1, true);
    tg_layer *l = tg_model_custom(m, "bn_train", bn_training, NULL);
    tg_layer_param(l, "g", 1, (const int[]){4}, TG_PARAM_ONES);
    tg_layer_param(l, "b", 1, (const int[]){4}, TG_PARAM_ZEROS);
    tg_layer_buffer(l, "mean", 1, (const int[]){4}, 0.0f);
    tg_layer_buffer(l, "var", 1, (const int[]){4}, 1.0f);
    tg_onnx_opts o = {.fold_batch_norm = true};
    CHECK_INT(tg_onnx_export_opts(m, 4, (const int[]){2, 1, 6, 6}, path_of("t.onnx"), &o), TG_ERR_STATE);
    CHECK_MSG(tg_last_error(), "onnx export: layer \"1\" (custom \"bn_train\"): batch_norm: runs in training mode");
    tg_model_free(m);
}

/* Every op of the table exports itself (losses refuse through theirs), but sum and mean, which
 * fold the batch away; a new op without a callback fails here until it has one or is listed. */
static void every_op(void) {
    for (int i = 0; i < TG_OP_COUNT; i++) {
        const tg_op *op = tg_op_table[i];
        bool exempt = !strcmp(op->name, "sum") || !strcmp(op->name, "mean");
        if (exempt == (op->onnx != NULL))
            fprintf(stderr, "op %s: onnx callback %s\n", op->name, op->onnx ? "set" : "missing");
        CHECK(exempt != (op->onnx != NULL));
    }
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", "/tmp/tapegrad-onnx-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    every_op();
    decode_tiny();
    refusals();
    batch_followers();
    builder_mistakes();
    own_op();
    mistakes();
    atomic();
    options_and_flags();
    fold_training();
    if (check_failures) fprintf(stderr, "test_onnx: FAILED; the files stay in %s\n", dir);
    else CHECK(rmdir(dir) == 0);
    CHECK_DONE();
}
