/* onnx.c: ONNX export's engine side. The graph builder the ops' onnx callbacks call
 * (tapegrad_op.h), the walk over a recorded tape that calls them, the comparison of the
 * graphs of two traces at different batch sizes (only the batch may differ: it is the
 * symbolic "N"), and a small protobuf writer for the ModelProto. It knows no op by name: each op exports itself.
 *
 * The protobuf encoding is written here (varints, length-delimited fields, packed
 * repeated ints, little-endian raw_data) rather than with a generated library: the
 * messages used are few and flat, and the library's build then needs neither protobuf
 * nor a copy of onnx.proto. Field numbers are onnx.proto's. */
#include "internal.h"
#include <stdarg.h>
#include <string.h>

#define ONNX_IR_VERSION 8
#define ONNX_OPSET 17
#ifndef TG__VERSION
#define TG__VERSION "unknown"
#endif

// ----------------------------------------------------------------------------
// the builder

enum { ATTR_FLOAT = 1, ATTR_INT = 2, ATTR_STRING = 3, ATTR_INTS = 7 }; /* AttributeProto.AttributeType */
enum { DT_FLOAT = 1, DT_INT64 = 7 };                                   /* TensorProto.DataType */

typedef struct {
    const char *name;
    int type;
    int64_t i;
    float f;
    const char *s;
    const int64_t *ints;
    int n_ints;
} onnx_attr;

/* src in the three below: the id of the tape node whose export added it (-1 for none), to name
 * the op when the traces at two batch sizes differ */

typedef struct {
    const char *op_type, *name;
    const char **in, **out;
    int n_in, n_out;
    onnx_attr *attrs;
    int n_attrs, cap_attrs;
    int src;
} onnx_node;

typedef struct { /* a tensor and its value's name */
    const tg_tensor *x;
    const char *name;
} onnx_value;

typedef struct {
    const char *name;
    int dtype, ndim;
    int64_t dims[TG_MAX_DIMS];
    const void *data; /* a parameter's own, or a copy in the pool */
    size_t bytes;
    int src;
} onnx_init;

typedef struct { /* a value_info: a node's output or a temporary */
    const char *name;
    int ndim, shape[TG_MAX_DIMS];
    bool batched;
    int src;
} onnx_info;

struct tg_onnx {
    const tg__onnx_args *args;
    const tg_node *cur;              /* the node being exported */
    int cur_first;                   /* the number of nodes before cur's callback */
    bool *needed, *batched, *marked; /* by node id */
    int n_ids;
    onnx_node *nodes;
    int n_nodes, cap_nodes;
    onnx_value *values;
    int n_values, cap_values;
    onnx_init *inits;
    int n_inits, cap_inits;
    onnx_info *infos;
    int n_infos, cap_infos;
    void **pool; /* every string and copy, freed at the end */
    int n_pool, cap_pool;
};

static int oom(void) { return tg_fail(TG_ERR_NOMEM, "onnx export: out of memory"); }

/* Memory that lives until the export ends. */
static void *pool_alloc(tg_onnx *g, size_t bytes) {
    if (!tg__reserve((void **)&g->pool, g->n_pool, &g->cap_pool, sizeof *g->pool)) return NULL;
    void *p = tg__malloc(bytes ? bytes : 1);
    if (p) g->pool[g->n_pool++] = p;
    return p;
}

static const char *pool_printf(tg_onnx *g, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static const char *pool_printf(tg_onnx *g, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? pool_alloc(g, (size_t)n + 1) : NULL;
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static const char *lookup(const tg_onnx *g, const tg_tensor *x) {
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i].x == x) return g->values[i].name;
    return NULL;
}

static bool name_taken(const tg_onnx *g, const char *name) {
    if (!strcmp(name, "input") || !strcmp(name, "output")) return true;
    for (int i = 0; i < g->n_values; i++)
        if (!strcmp(g->values[i].name, name)) return true;
    for (int i = 0; i < g->n_inits; i++)
        if (!strcmp(g->inits[i].name, name)) return true;
    for (int i = 0; i < g->n_infos; i++)
        if (!strcmp(g->infos[i].name, name)) return true;
    return false;
}

/* name, or name~2, name~3, ... : the first one no value has */
static const char *unique(tg_onnx *g, const char *name) {
    if (!name) return NULL;
    if (!name_taken(g, name)) return pool_printf(g, "%s", name);
    for (int k = 2;; k++) {
        const char *s = pool_printf(g, "%s~%d", name, k);
        if (!s || !name_taken(g, s)) return s;
    }
}

static int add_value(tg_onnx *g, const tg_tensor *x, const char *name) {
    if (!name || !tg__reserve((void **)&g->values, g->n_values, &g->cap_values, sizeof *g->values)) return oom();
    g->values[g->n_values++] = (onnx_value){x, name};
    return 0;
}

static int cur_id(const tg_onnx *g) { return g->cur ? g->cur->id : -1; }

static int add_init(tg_onnx *g, const char *name, int dtype, int ndim, const int64_t *dims, const void *data,
                    size_t bytes) {
    if (!name || !tg__reserve((void **)&g->inits, g->n_inits, &g->cap_inits, sizeof *g->inits)) return oom();
    onnx_init *in = &g->inits[g->n_inits++];
    *in = (onnx_init){name, dtype, ndim, {0}, data, bytes, cur_id(g)};
    for (int i = 0; i < ndim; i++) in->dims[i] = dims[i];
    return 0;
}

static int add_info(tg_onnx *g, const char *name, int ndim, const int *shape, bool batched, int src) {
    if (!name || !tg__reserve((void **)&g->infos, g->n_infos, &g->cap_infos, sizeof *g->infos)) return oom();
    onnx_info *v = &g->infos[g->n_infos++];
    *v = (onnx_info){name, ndim, {0}, batched, src};
    for (int i = 0; i < ndim; i++) v->shape[i] = shape[i];
    return 0;
}

/* A node output that depends on the input keeps the batch as its dimension 0 (at both traced
 * batch sizes: the two graphs' comparison then finds any other dimension that follows it). */
static int check_batch(const tg_onnx *g, const tg_tensor *x) {
    const tg_tensor *in = g->args->input;
    if (x->ndim >= 1 && x->shape[0] == in->shape[0]) return 0;
    char sx[64], si[64];
    return tg_fail(TG_ERR_SHAPE,
                   "%s: its output %s, computed from the input %s, does not keep the batch as its dimension 0 "
                   "(the exported graph's batch is symbolic)",
                   x->node->op->name, tg_shape_str(x, sx, sizeof sx), tg_shape_str(in, si, sizeof si));
}

static bool is_node_output(const tg_onnx *g, const tg_tensor *x) {
    return x->node && x->tape == g->args->tape && x->node->id < g->n_ids && x->node->out == x;
}

static const tg_node *node_by_id(const tg_tape *t, int id) {
    for (const tg_node *n = tg_tape_first(t); n; n = n->next)
        if (n->id == id) return n;
    return NULL;
}

bool tg_onnx_batched(const tg_onnx *g, const tg_tensor *x) {
    if (!g || !x) return false;
    if (x == g->args->input) return true;
    return is_node_output(g, x) && g->batched[x->node->id];
}

const char *tg_onnx_name(tg_onnx *g, const tg_tensor *x) {
    if (!g || !x) {
        tg_fail(TG_ERR_ARG, "onnx_name: %s is NULL", !g ? "graph" : "tensor");
        return NULL;
    }
    const char *name = lookup(g, x);
    if (name) return name;
    if (x == g->args->input) return add_value(g, x, "input") < 0 ? NULL : "input";
    const char *scope = g->cur && g->cur->scope ? g->cur->scope : "";
    if (is_node_output(g, x)) {
        const tg_node *n = x->node;
        bool batched = g->batched[n->id];
        if (batched && check_batch(g, x) < 0) return NULL;
        if (x == g->args->output) name = "output";
        else if (n->scope) name = unique(g, pool_printf(g, "%s/%s:%d", n->scope, n->op->name, n->id));
        else name = unique(g, pool_printf(g, "%s:%d", n->op->name, n->id));
        if (add_value(g, x, name) < 0) return NULL;
        if (x != g->args->output && add_info(g, name, x->ndim, x->shape, batched, n->id) < 0) return NULL;
        return name;
    }
    /* a parameter or buffer under its state-dict name, else a constant */
    bool state = false;
    for (int i = 0; i < g->args->n_named && !state; i++) state = g->args->named[i] == x;
    if (state && x->name[0] && !name_taken(g, x->name)) name = pool_printf(g, "%s", x->name);
    else if (x->name[0]) name = unique(g, x->name);
    else name = unique(g, pool_printf(g, "%s%sconst", scope, scope[0] ? "/" : ""));
    int64_t dims[TG_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) dims[i] = x->shape[i];
    if (add_init(g, name, DT_FLOAT, x->ndim, dims, x->data, (size_t)x->size * sizeof(float)) < 0 ||
        add_value(g, x, name) < 0)
        return NULL;
    return name;
}

const char *tg_onnx_temp(tg_onnx *g, const tg_node *n, const char *suffix, int ndim, const int *shape, bool batched) {
    if (!g || !n || !suffix || ndim < 0 || ndim > TG_MAX_DIMS || (ndim && !shape)) {
        tg_fail(TG_ERR_ARG, "onnx_temp: a NULL argument or %d dimensions", ndim);
        return NULL;
    }
    if (batched && (ndim < 1 || shape[0] != g->args->input->shape[0])) {
        tg_fail(TG_ERR_SHAPE, "onnx_temp: %s/%s: dimension 0 is not the batch (%d)", n->op->name, suffix,
                g->args->input->shape[0]);
        return NULL;
    }
    const char *base = tg_onnx_name(g, n->out);
    const char *name = base ? unique(g, pool_printf(g, "%s/%s", base, suffix)) : NULL;
    return name && add_info(g, name, ndim, shape, batched, n->id) == 0 ? name : NULL;
}

int tg_onnx_alias(tg_onnx *g, const tg_tensor *y, const tg_tensor *x) {
    if (!g || !y || !x) return tg_fail(TG_ERR_ARG, "onnx_alias: an argument is NULL");
    if (!g->cur || y != g->cur->out)
        return tg_fail(TG_ERR_ARG, "onnx_alias: %s%sonly the current node's output can be an alias",
                       g->cur ? g->cur->op->name : "", g->cur ? ": " : "");
    if (lookup(g, y)) return tg_fail(TG_ERR_STATE, "onnx_alias: the tensor already has a value");
    const char *name = tg_onnx_name(g, x);
    return name ? add_value(g, y, name) : tg_last_error_code();
}

static const char *add_const(tg_onnx *g, const char *hint, int dtype, int ndim, const int64_t *shape, const void *v,
                             size_t elem) {
    if (!g || !hint || ndim < 0 || ndim > TG_MAX_DIMS || (ndim && !shape) || !v) {
        tg_fail(TG_ERR_ARG, "onnx_const: a NULL argument or %d dimensions", ndim);
        return NULL;
    }
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] && n > INT64_MAX / 8 / shape[i])) {
            tg_fail(TG_ERR_ARG, "onnx_const: dimension %d is %lld", i, (long long)shape[i]);
            return NULL;
        }
        n *= shape[i];
    }
    void *copy = pool_alloc(g, (size_t)n * elem);
    const char *scope = g->cur && g->cur->scope ? g->cur->scope : "";
    const char *name = copy ? unique(g, pool_printf(g, "%s%s%s", scope, scope[0] ? "/" : "", hint)) : NULL;
    if (!name) {
        oom();
        return NULL;
    }
    memcpy(copy, v, (size_t)n * elem);
    return add_init(g, name, dtype, ndim, shape, copy, (size_t)n * elem) < 0 ? NULL : name;
}

const char *tg_onnx_const_floats(tg_onnx *g, const char *hint, int ndim, const int64_t *shape, const float *v) {
    return add_const(g, hint, DT_FLOAT, ndim, shape, v, sizeof(float));
}
const char *tg_onnx_const_int64s(tg_onnx *g, const char *hint, int ndim, const int64_t *shape, const int64_t *v) {
    return add_const(g, hint, DT_INT64, ndim, shape, v, sizeof(int64_t));
}

static const char **copy_names(tg_onnx *g, const char *const *names, int n) {
    const char **out = pool_alloc(g, (size_t)(n ? n : 1) * sizeof *out);
    for (int i = 0; out && i < n; i++)
        if (!(out[i] = pool_printf(g, "%s", names[i]))) return NULL;
    return out;
}

int tg_onnx_node(tg_onnx *g, const char *op_type, const char *const *in, int n_in, const char *const *out, int n_out) {
    if (!g || !op_type || !op_type[0] || n_in < 0 || n_out < 1 || (n_in && !in) || !out)
        return tg_fail(TG_ERR_ARG, "onnx_node: %s", !g ? "graph is NULL" : "needs an op type, inputs and outputs");
    for (int i = 0; i < n_in + n_out; i++)
        if (!(i < n_in ? in[i] : out[i - n_in]))
            return tg_fail(TG_ERR_ARG, "onnx_node: %s: %s %d is NULL", op_type, i < n_in ? "input" : "output",
                           i < n_in ? i : i - n_in);
    if (!tg__reserve((void **)&g->nodes, g->n_nodes, &g->cap_nodes, sizeof *g->nodes)) return oom();
    const char *scope = g->cur && g->cur->scope ? g->cur->scope : "";
    onnx_node nd = {.op_type = pool_printf(g, "%s", op_type),
                    .in = copy_names(g, in, n_in),
                    .out = copy_names(g, out, n_out),
                    .n_in = n_in,
                    .n_out = n_out,
                    .src = cur_id(g)};
    nd.name = pool_printf(g, "%s%s%s_%d", scope, scope[0] ? "/" : "", op_type, g->n_nodes);
    if (!nd.op_type || !nd.name || !nd.in || !nd.out) return oom();
    g->nodes[g->n_nodes++] = nd;
    return 0;
}

/* The attribute of the node the current callback added last: never of an earlier op's node */
static onnx_attr *new_attr(tg_onnx *g, const char *name, int type) {
    if (!g || !name || !name[0] || g->n_nodes <= g->cur_first) {
        if (g && g->n_nodes <= g->cur_first)
            tg_fail(TG_ERR_ARG, "onnx_attr: %s%s%s: no node yet (the attribute's node is added first)",
                    g->cur ? g->cur->op->name : "", g->cur ? ": " : "", name ? name : "(NULL)");
        else tg_fail(TG_ERR_ARG, "onnx_attr: %s", !g ? "graph is NULL" : "needs a name");
        return NULL;
    }
    onnx_node *nd = &g->nodes[g->n_nodes - 1];
    if (!tg__reserve((void **)&nd->attrs, nd->n_attrs, &nd->cap_attrs, sizeof *nd->attrs)) {
        oom();
        return NULL;
    }
    onnx_attr *a = &nd->attrs[nd->n_attrs];
    *a = (onnx_attr){.name = pool_printf(g, "%s", name), .type = type};
    if (!a->name) {
        oom();
        return NULL;
    }
    nd->n_attrs++;
    return a;
}

int tg_onnx_attr_int(tg_onnx *g, const char *name, int64_t v) {
    onnx_attr *a = new_attr(g, name, ATTR_INT);
    return a ? (a->i = v, 0) : tg_last_error_code();
}
int tg_onnx_attr_float(tg_onnx *g, const char *name, float v) {
    onnx_attr *a = new_attr(g, name, ATTR_FLOAT);
    return a ? (a->f = v, 0) : tg_last_error_code();
}
int tg_onnx_attr_string(tg_onnx *g, const char *name, const char *v) {
    if (!v) return tg_fail(TG_ERR_ARG, "onnx_attr_string: value is NULL");
    onnx_attr *a = new_attr(g, name, ATTR_STRING);
    if (!a) return tg_last_error_code();
    return (a->s = pool_printf(g, "%s", v)) ? 0 : oom();
}
int tg_onnx_attr_ints(tg_onnx *g, const char *name, const int64_t *v, int n) {
    if (n < 0 || (n && !v)) return tg_fail(TG_ERR_ARG, "onnx_attr_ints: %d values", n);
    onnx_attr *a = new_attr(g, name, ATTR_INTS);
    if (!a) return tg_last_error_code();
    int64_t *copy = pool_alloc(g, (size_t)n * sizeof *copy);
    if (!copy) return oom();
    if (n) memcpy(copy, v, (size_t)n * sizeof *copy);
    a->ints = copy, a->n_ints = n;
    return 0;
}

const tg_node *tg_onnx_consumer(const tg_onnx *g, const tg_tensor *x) {
    if (!g || !x || x == g->args->output) return NULL;
    const tg_node *only = NULL;
    for (const tg_node *n = tg_tape_first(g->args->tape); n; n = n->next) {
        if (!g->needed[n->id]) continue;
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] == x) {
                if (only && only != n) return NULL;
                only = n;
            }
    }
    return only;
}

bool tg_onnx_folding(const tg_onnx *g) { return g && g->args->fold; }

int tg_onnx_mark(tg_onnx *g, const tg_node *later) {
    if (!g || !later || later->id < 0 || later->id >= g->n_ids || node_by_id(g->args->tape, later->id) != later)
        return tg_fail(TG_ERR_ARG, "onnx_mark: not a node of the trace");
    if (!g->cur || later->id <= g->cur->id)
        return tg_fail(TG_ERR_ARG, "onnx_mark: %s%snode %d (%s) is not after the current one",
                       g->cur ? g->cur->op->name : "", g->cur ? ": " : "", later->id, later->op->name);
    g->marked[later->id] = true;
    return 0;
}
bool tg_onnx_marked(const tg_onnx *g, const tg_node *n) {
    return g && n && n->id >= 0 && n->id < g->n_ids && g->marked[n->id];
}

// ----------------------------------------------------------------------------
// protobuf

typedef struct {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} pbuf;

static void pb_raw(pbuf *b, const void *s, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n) c *= 2;
        uint8_t *p = tg__realloc(b->p, c);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p, b->cap = c;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void pb_varint(pbuf *b, uint64_t v) {
    uint8_t tmp[10];
    int k = 0;
    do {
        tmp[k++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    pb_raw(b, tmp, (size_t)k);
}

enum { WIRE_VARINT = 0, WIRE_LEN = 2, WIRE_FIXED32 = 5 };
static void pb_key(pbuf *b, int field, int wire) { pb_varint(b, (uint64_t)field << 3 | (uint64_t)wire); }
/* int64 and int32 fields: a negative value is its 64-bit two's complement (10 bytes) */
static void pb_int(pbuf *b, int field, int64_t v) {
    pb_key(b, field, WIRE_VARINT);
    pb_varint(b, (uint64_t)v);
}
static void pb_bytes(pbuf *b, int field, const void *s, size_t n) {
    pb_key(b, field, WIRE_LEN);
    pb_varint(b, n);
    pb_raw(b, s, n);
}
static void pb_str(pbuf *b, int field, const char *s) { pb_bytes(b, field, s, strlen(s)); }
static void pb_float(pbuf *b, int field, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint8_t le[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    pb_key(b, field, WIRE_FIXED32);
    pb_raw(b, le, 4);
}
/* a message field: sub's bytes, then sub is emptied for reuse */
static void pb_msg(pbuf *b, int field, pbuf *sub) {
    b->oom |= sub->oom;
    pb_bytes(b, field, sub->p, sub->n);
    sub->n = 0;
}
static void pb_packed(pbuf *b, int field, const int64_t *v, int n, pbuf *tmp) {
    if (!n) return;
    for (int i = 0; i < n; i++) pb_varint(tmp, (uint64_t)v[i]);
    pb_msg(b, field, tmp);
}

static bool little_endian(void) {
    const uint16_t one = 1;
    uint8_t first;
    memcpy(&first, &one, 1);
    return first == 1;
}

/* TensorProto: dims 1, data_type 2, name 8, raw_data 9 (little-endian) */
static void pb_tensor(pbuf *b, const onnx_init *in, pbuf *tmp) {
    pb_packed(b, 1, in->dims, in->ndim, tmp);
    pb_int(b, 2, in->dtype);
    pb_str(b, 8, in->name);
    pb_key(b, 9, WIRE_LEN);
    pb_varint(b, in->bytes);
    if (little_endian()) {
        pb_raw(b, in->data, in->bytes);
        return;
    }
    size_t w = in->dtype == DT_INT64 ? 8 : 4;
    for (size_t i = 0; i < in->bytes; i += w)
        for (size_t k = 0; k < w; k++) pb_raw(b, (const uint8_t *)in->data + i + w - 1 - k, 1);
}

/* ValueInfoProto: name 1, type 2 (TypeProto: tensor_type 1 (elem_type 1, shape 2 (TensorShapeProto:
 * dim 1 (dim_value 1 | dim_param 2)))) */
static void pb_value_info(pbuf *b, const char *name, int ndim, const int *shape, bool batched) {
    pbuf shp = {0}, dim = {0}, tt = {0}, type = {0};
    for (int i = 0; i < ndim; i++) {
        if (i == 0 && batched) pb_str(&dim, 2, "N");
        else pb_int(&dim, 1, shape[i]);
        pb_msg(&shp, 1, &dim);
    }
    pb_int(&tt, 1, DT_FLOAT);
    pb_key(&tt, 2, WIRE_LEN); /* the shape, present even when empty (a scalar) */
    pb_varint(&tt, shp.n);
    pb_raw(&tt, shp.p, shp.n);
    tt.oom |= shp.oom;
    pb_msg(&type, 1, &tt);
    pb_str(b, 1, name);
    pb_msg(b, 2, &type);
    b->oom |= dim.oom || type.oom;
    tg__free(shp.p), tg__free(dim.p), tg__free(tt.p), tg__free(type.p);
}

/* AttributeProto: name 1, f 2, i 3, s 4, ints 8, type 20 */
static void pb_attr(pbuf *b, const onnx_attr *a) {
    pb_str(b, 1, a->name);
    if (a->type == ATTR_FLOAT) pb_float(b, 2, a->f);
    if (a->type == ATTR_INT) pb_int(b, 3, a->i);
    if (a->type == ATTR_STRING) pb_str(b, 4, a->s);
    if (a->type == ATTR_INTS)
        for (int i = 0; i < a->n_ints; i++) pb_int(b, 8, a->ints[i]); /* unpacked, as onnx's own writer does */
    pb_int(b, 20, a->type);
}

/* NodeProto: input 1, output 2, name 3, op_type 4, attribute 5 */
static void pb_node(pbuf *b, const onnx_node *nd) {
    for (int i = 0; i < nd->n_in; i++) pb_str(b, 1, nd->in[i]);
    for (int i = 0; i < nd->n_out; i++) pb_str(b, 2, nd->out[i]);
    pb_str(b, 3, nd->name);
    pb_str(b, 4, nd->op_type);
    pbuf at = {0};
    for (int i = 0; i < nd->n_attrs; i++) {
        pb_attr(&at, &nd->attrs[i]);
        pb_msg(b, 5, &at);
    }
    tg__free(at.p);
}

/* GraphProto: node 1, name 2, initializer 5, doc_string 10, input 11, output 12, value_info 13;
 * ModelProto: ir_version 1, producer_name 2, producer_version 3, graph 7, opset_import 8
 * (OperatorSetIdProto: domain 1, version 2) */
static int encode(const tg_onnx *g, pbuf *model) {
    pbuf graph = {0}, sub = {0}, tmp = {0};
    const tg__onnx_args *a = g->args;
    for (int i = 0; i < g->n_nodes; i++) {
        pb_node(&sub, &g->nodes[i]);
        pb_msg(&graph, 1, &sub);
    }
    pb_str(&graph, 2, "tapegrad");
    for (int i = 0; i < g->n_inits; i++) {
        pb_tensor(&sub, &g->inits[i], &tmp);
        pb_msg(&graph, 5, &sub);
    }
    if (a->doc) pb_str(&graph, 10, a->doc);
    pb_value_info(&sub, "input", a->input->ndim, a->input->shape, true);
    pb_msg(&graph, 11, &sub);
    pb_value_info(&sub, "output", a->output->ndim, a->output->shape, tg_onnx_batched(g, a->output));
    pb_msg(&graph, 12, &sub);
    for (int i = 0; i < g->n_infos; i++) {
        const onnx_info *v = &g->infos[i];
        pb_value_info(&sub, v->name, v->ndim, v->shape, v->batched);
        pb_msg(&graph, 13, &sub);
    }
    pb_int(model, 1, ONNX_IR_VERSION);
    pb_str(model, 2, "tapegrad");
    pb_str(model, 3, TG__VERSION);
    pb_msg(model, 7, &graph);
    pb_str(&sub, 1, "");
    pb_int(&sub, 2, ONNX_OPSET);
    pb_msg(model, 8, &sub);
    bool failed = graph.oom || sub.oom || tmp.oom || model->oom;
    tg__free(graph.p), tg__free(sub.p), tg__free(tmp.p);
    return failed ? oom() : 0;
}

// ----------------------------------------------------------------------------
// the walk

static void release(tg_onnx *g) {
    for (int i = 0; i < g->n_nodes; i++) tg__free(g->nodes[i].attrs);
    for (int i = 0; i < g->n_pool; i++) tg__free(g->pool[i]);
    tg__free(g->pool), tg__free(g->nodes), tg__free(g->values), tg__free(g->inits), tg__free(g->infos);
    tg__free(g->needed);
}

static bool from_tape(const tg_onnx *g, const tg_tensor *x) { return x && is_node_output(g, x); }

/* Whether a value is computed or held before node `before`: the input, an initializer, or an
 * output of an earlier node (an alias shares its value's name) */
static bool defined(const tg_onnx *g, const char *name, int before) {
    if (!strcmp(name, "input")) return true;
    for (int i = 0; i < g->n_inits; i++)
        if (!strcmp(g->inits[i].name, name)) return true;
    for (int i = 0; i < before; i++)
        for (int k = 0; k < g->nodes[i].n_out; k++)
            if (!strcmp(g->nodes[i].out[k], name)) return true;
    return false;
}

/* Every node reads values defined before it ("" is an optional input left out) */
static int check_inputs(const tg_onnx *g, const tg_node **bad) {
    for (int i = 0; i < g->n_nodes; i++) {
        const onnx_node *nd = &g->nodes[i];
        for (int k = 0; k < nd->n_in; k++) {
            if (!nd->in[k][0] || defined(g, nd->in[k], i)) continue;
            *bad = nd->src >= 0 ? node_by_id(g->args->tape, nd->src) : NULL;
            return tg_fail(TG_ERR_STATE, "%s%s%s node \"%s\" reads \"%s\", which nothing before it computes",
                           *bad ? (*bad)->op->name : "", *bad ? ": its " : "", nd->op_type, nd->name, nd->in[k]);
        }
    }
    return 0;
}

/* The graph of a's trace into g (released by the caller); on failure *bad is the node whose export failed. */
static int build(tg_onnx *g, const tg__onnx_args *a, const tg_node **bad) {
    *g = (tg_onnx){.args = a};
    int ids = tg_tape_node_count(a->tape);
    g->n_ids = ids;
    g->needed = tg__calloc(3 * (size_t)(ids ? ids : 1), sizeof(bool));
    if (!g->needed) return oom();
    g->batched = g->needed + ids, g->marked = g->needed + 2 * (size_t)ids;
    /* the nodes the output needs, from the last back; and which are computed from the input */
    const tg_node *last = NULL;
    for (const tg_node *n = tg_tape_first(a->tape); n; n = n->next) last = n;
    if (from_tape(g, a->output)) g->needed[a->output->node->id] = true;
    for (const tg_node *n = last; n; n = n->prev)
        for (int i = 0; g->needed[n->id] && i < n->n_in; i++)
            if (from_tape(g, n->in[i])) g->needed[n->in[i]->node->id] = true;
    for (const tg_node *n = tg_tape_first(a->tape); n; n = n->next)
        for (int i = 0; i < n->n_in; i++) g->batched[n->id] |= tg_onnx_batched(g, n->in[i]);

    int rc = 0;
    for (const tg_node *n = tg_tape_first(a->tape); n && !rc; n = n->next) {
        if (!g->needed[n->id]) continue;
        g->cur = n, g->cur_first = g->n_nodes;
        const char *y = NULL;
        if (!n->op->onnx) rc = tg_fail(TG_ERR_ARG, "op \"%s\" has no ONNX form", n->op->name);
        else if ((rc = n->op->onnx(n, g)) >= 0 && !((y = lookup(g, n->out)) && defined(g, y, g->n_nodes)))
            rc = tg_fail(TG_ERR_STATE, "op \"%s\": its onnx callback gave its output no value%s%s%s", n->op->name,
                         y ? " (\"" : "", y ? y : "", y ? "\" is named, but no node computes it)" : "");
        if (rc < 0) *bad = n;
        else rc = 0;
    }
    g->cur = NULL, g->cur_first = 0;
    /* an output that is not a node's own (the input, a parameter, an alias) is copied to it */
    const char *out = rc ? NULL : tg_onnx_name(g, a->output);
    if (!rc && !out) rc = tg_last_error_code() ? tg_last_error_code() : oom();
    if (!rc && strcmp(out, "output") != 0) rc = tg_onnx_node(g, "Identity", &out, 1, (const char *[]){"output"}, 1);
    return rc ? rc : check_inputs(g, bad);
}

/* Whether two items encode to the same bytes (the batch being "N" in both); *failed on no memory. */
static bool same_bytes(pbuf *x, pbuf *y, bool *failed) {
    bool same = x->n == y->n && (!x->n || !memcmp(x->p, y->p, x->n));
    *failed |= x->oom || y->oom;
    x->n = y->n = 0;
    return same;
}

typedef struct {
    pbuf x, y, tmp;
    bool failed;
} cmp_bufs;

static void enc_node(pbuf *b, const void *item, pbuf *tmp) { pb_node(b, item), (void)tmp; }
static void enc_init(pbuf *b, const void *item, pbuf *tmp) { pb_tensor(b, item, tmp); }
static void enc_info(pbuf *b, const void *item, pbuf *tmp) {
    const onnx_info *v = item;
    pb_value_info(b, v->name, v->ndim, v->shape, v->batched), (void)tmp;
}

/* The index of the first item of two lists whose bytes differ (or where one list ends first), or -1. */
static int first_diff(cmp_bufs *c, const void *a, int na, const void *b, int nb, size_t size,
                      void (*enc)(pbuf *, const void *, pbuf *)) {
    for (int i = 0; i < na || i < nb; i++) {
        if (i >= na || i >= nb) return i;
        enc(&c->x, (const char *)a + (size_t)i * size, &c->tmp);
        enc(&c->y, (const char *)b + (size_t)i * size, &c->tmp);
        if (!same_bytes(&c->x, &c->y, &c->failed)) return i;
    }
    return -1;
}

/* The two traces' graphs, at batch sizes A and B, must be the same apart from the batch: else the
 * file would hold a shape, attribute or constant that follows the batch, wrong at any other. The
 * failure names the first node (of a's tape) whose export differs. */
static int compare(const tg_onnx *ga, const tg_onnx *gb, const tg_node **bad) {
    const tg_tape *ta = ga->args->tape, *tb = gb->args->tape;
    int A = ga->args->input->shape[0], B = gb->args->input->shape[0];
    const tg_node *na = tg_tape_first(ta), *nb = tg_tape_first(tb);
    while (na && nb && na->op == nb->op) na = na->next, nb = nb->next;
    if (na || nb) {
        *bad = na ? na : NULL;
        return tg_fail(TG_ERR_SHAPE,
                       "the model runs other ops at batch %d (%s) than at batch %d (%s): the exported "
                       "graph must be the same for any batch",
                       A, na ? na->op->name : "none", B, nb ? nb->op->name : "none");
    }
    cmp_bufs c = {0};
    int first = INT32_MAX;
    const char *what = NULL, *name = NULL;
    int i = first_diff(&c, ga->nodes, ga->n_nodes, gb->nodes, gb->n_nodes, sizeof *ga->nodes, enc_node);
    const onnx_node *dn = i < 0 ? NULL : i < ga->n_nodes ? &ga->nodes[i] : &gb->nodes[i];
    if (dn && dn->src < first) first = dn->src, what = "its ONNX node", name = dn->op_type;
    i = first_diff(&c, ga->inits, ga->n_inits, gb->inits, gb->n_inits, sizeof *ga->inits, enc_init);
    const onnx_init *dc = i < 0 ? NULL : i < ga->n_inits ? &ga->inits[i] : &gb->inits[i];
    if (dc && dc->src < first) first = dc->src, what = "its constant", name = dc->name;
    i = first_diff(&c, ga->infos, ga->n_infos, gb->infos, gb->n_infos, sizeof *ga->infos, enc_info);
    const onnx_info *dv = i < 0 ? NULL : i < ga->n_infos ? &ga->infos[i] : &gb->infos[i];
    if (dv && dv->src < first) first = dv->src, what = "the shape of its value", name = dv->name;
    const tg_tensor *oa = ga->args->output, *ob = gb->args->output;
    pb_value_info(&c.x, "output", oa->ndim, oa->shape, tg_onnx_batched(ga, oa));
    pb_value_info(&c.y, "output", ob->ndim, ob->shape, tg_onnx_batched(gb, ob));
    if (!same_bytes(&c.x, &c.y, &c.failed) && from_tape(ga, oa) && oa->node->id < first)
        first = oa->node->id, what = "the shape of its value", name = "output";
    tg__free(c.x.p), tg__free(c.y.p), tg__free(c.tmp.p);
    if (c.failed) return oom();
    if (!what) return 0;
    *bad = node_by_id(ta, first);
    return tg_fail(TG_ERR_SHAPE,
                   "%s%s%s \"%s\" differs between the traces at batch %d and %d: only dimension 0 may follow the "
                   "batch (the exported graph's batch is symbolic)",
                   *bad ? (*bad)->op->name : "", *bad ? ": " : "", what, name, A, B);
}

int tg__onnx_encode(const tg__onnx_args *a, const tg__onnx_args *b, uint8_t **bytes, size_t *len, const tg_node **bad) {
    *bytes = NULL, *len = 0, *bad = NULL;
    tg_onnx ga, gb;
    int rc = build(&ga, a, bad);
    if (!rc) {
        rc = build(&gb, b, bad);
        if (!rc) rc = compare(&ga, &gb, bad);
        release(&gb);
    }
    pbuf model = {0};
    if (!rc) rc = encode(&ga, &model);
    release(&ga);
    if (rc) {
        tg__free(model.p);
        return rc;
    }
    *bytes = model.p, *len = model.n;
    return 0;
}
