/* tapegrad_op.h: writing an op. tapegrad.h is all a program that uses the ops
 * needs; this header adds what an op's author needs: the tape node an op works
 * on, the op descriptor, and the engine calls its functions make. The library's
 * own ops (ops/) are written against it too.
 *
 * AN OP OF YOUR OWN (y = x^2)
 *
 *     static int square_shape(tg_node *n, int *ndim, int *shape) {
 *         *ndim = n->in[0]->ndim;
 *         for (int i = 0; i < *ndim; i++) shape[i] = n->in[0]->shape[i];
 *         return 0;
 *     }
 *     static int square_forward(tg_tape *t, tg_node *n) {
 *         const float *x = n->in[0]->data;
 *         for (int64_t i = 0; i < n->out->size; i++) n->out->data[i] = x[i] * x[i];
 *         return 0;
 *     }
 *     static int square_vjp(tg_tape *t, tg_node *n) {   // dx += dy * 2x
 *         const float *x = n->in[0]->data, *dy = n->out->grad;
 *         for (int64_t i = 0; i < n->out->size; i++) n->in[0]->grad[i] += dy[i] * 2 * x[i];
 *         return 0;
 *     }
 *     static const tg_op square_op = {.name = "square", .shape = square_shape,
 *                                     .forward = square_forward, .vjp = square_vjp};
 *     tg_tensor *square(tg_tape *t, tg_tensor *x) { return tg_apply(t, &square_op, &x, 1, NULL); }
 *
 *   tg_apply checks the inputs (NULL, stale, another tape's) before shape runs
 *   and allocates the output; vjp runs only for a recorded node (an input
 *   required a gradient) and adds into the gradient of every input whose
 *   requires_grad is set. tg_gradcheck checks the VJP against finite differences.
 *   An op that sets overwrites_grads instead stores (=) into n->in[i]->grad when
 *   n->store[i] is true, which the engine decides before each vjp, and adds otherwise.
 */
#ifndef TAPEGRAD_OP_H
#define TAPEGRAD_OP_H

#include "tapegrad.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tg_onnx tg_onnx; /* an ONNX graph being built by tg_onnx_export (see the end) */

struct tg_node {
    const struct tg_op *op;
    int id;                      /* index on the tape, from 0 */
    int n_in;
    tg_tensor *in[TG_MAX_INPUTS];
    tg_tensor *out;
    void *attr;                  /* the op's attributes (op->attr_size bytes, a copy) */
    void *saved;                 /* what the VJP needs from forward (tg_node_save) */
    size_t saved_bytes;
    const char *saved_what;      /* "mask", "argmax", "xhat+rstd", ... */
    bool record;                 /* recorded on the tape: forward may save state */
    double t_forward, t_backward;/* seconds */
    uint64_t *input_hash;        /* tg_tape_check_inputs: each input's data hashed after forward */
    /* During backward, set by the sweep just before vjp (op with overwrites_grads):
     * store[i] true means input i's gradient holds no values yet, so the vjp must
     * store into every element of it instead of adding. Only at the first position
     * of a tensor given twice; false for every input of other ops. */
    bool store[TG_MAX_INPUTS];
    const char *scope;           /* the tape's scope when the node was made ("3.conv1"), or NULL */
    tg_node *prev, *next;
    /* Metrics for tape dumps (dump.c), all optional. The kernel path the op's forward and its vjp
     * ran ("shifted avx512", "im2col+gemm avx2"): the op sets them as it calls its kernels, each a
     * static string (never freed or copied), or leaves them NULL (dumps show "-"). */
    const char *kernel_forward;
    const char *kernel_backward;
    /* Timelines (tg_tape_trace): when forward and the VJP started, in seconds on the engine's
     * clock (they lasted t_forward and t_backward; 0: the VJP has not run), and the tape's
     * arena bytes in use right after each. */
    double t_forward_start, t_backward_start;
    size_t arena_after_forward, arena_after_backward;
    /* (fields are added at the end, so that an op built against an older header finds the others
     * where they were) */
};

typedef struct tg_op {
    const char *name;
    size_t attr_size;
    /* Check the inputs and attributes; set out_ndim/out_shape, or fail with tg_fail's message and return < 0. */
    int (*shape)(tg_node *n, int *out_ndim, int *out_shape);
    /* Compute n->out from n->in; save what vjp needs with tg_node_save when n->record.
     * Returns 0, or a negative TG_ERR_* (out of arena memory) with the message set. */
    int (*forward)(tg_tape *t, tg_node *n);
    /* Add into n->in[i]->grad for each input i with requires_grad; n->out->grad is dy.
     * Returns 0 or a negative TG_ERR_*. */
    int (*vjp)(tg_tape *t, tg_node *n);
    /* Attributes as text for tape dumps ("stride=2 pad=1"), may be NULL. */
    void (*describe)(const tg_node *n, char *buf, size_t len);
    /* Optional, for tape dumps: forward floating-point operations of the node. */
    int64_t (*flops)(const tg_node *n);
    /* Optional, for tape dumps: what the node's data says ("zeros=41.2%"), read after the step. */
    void (*stats)(const tg_node *n, char *buf, size_t len);
    /* Optional, for the receptive field in tape dumps: an op whose output rows read
     * a window of input rows gives the window's span (input rows one output row
     * reads: (kernel-1)*dilation + 1 for a conv), its stride (input rows per
     * output row) and up (output rows per input row: 1, or the factor of an
     * upsampling op). Each is preset to 1. */
    void (*window)(const tg_node *n, int *span, int *stride, int *up);
    /* Optional, for tape dumps: what this node fuses into the op ("relu", "add+relu"),
     * shown after the name (conv2d+relu), or NULL for the plain op. */
    const char *(*variant)(const tg_node *n);
    /* Optional: point out->data at an input's data instead of allocating (reshape). */
    bool aliases_input;
    /* Optional, for speed: vjp stores rather than adds into input i's gradient when
     * n->store[i] is set (it holds no values yet), so backward need not zero it first. */
    bool overwrites_grads;
    /* Optional, for tape dumps (every op with flops should have it): the vjp's floating-point
     * operations, by the op's own rule (not "twice the forward"), counting only the gradients the
     * vjp computes: those of inputs with requires_grad. */
    int64_t (*flops_backward)(const tg_node *n);
    /* Optional, for tape dumps: bytes of memory the forward (backward false) or the vjp (true)
     * reads and writes, or -1 for the engine's default: forward reads every input and writes the
     * output (nothing for an output that aliases its input) and the saved state; the vjp reads dy,
     * the saved state and every input, and writes each gradient it computes (read too when it adds
     * into it rather than storing). An op whose vjp reads less (or twice) says so here. */
    int64_t (*bytes)(const tg_node *n, bool backward);
    /* Optional, for the dump's diagnosis: what looks wrong in this node after the step, with the
     * numbers and the usual remedy ("dead: 9 of 16 channels zero for every image; ..."), or "". */
    void (*diagnose)(const tg_node *n, char *buf, size_t len);
    /* Optional, for ONNX export (tg_onnx_export): add the ONNX nodes that compute n->out from n's
     * inputs with the builder below, and return 0; or refuse with tg_fail's message (a loss, a
     * dropout still in training mode) and return its code. An op without it cannot be exported:
     * the export fails naming the op and its layer. */
    int (*onnx)(const tg_node *n, tg_onnx *g);
    /* The op gives the single-process result on a tape whose batch is split across processes
     * (tg_tape_set_batch_split): it works on each sample alone and draws no random numbers, or it
     * makes its sums over the batch and its draws as the whole batch would. tg_apply refuses an op
     * without it on such a tape. */
    bool batch_split;
    /* (callbacks are added at the end, so that an op built against an older header keeps working) */
} tg_op;

/* A batch split across processes (data parallelism): every process runs the same tape on its share
 * of a global batch, and the ops that sum over the batch (or draw random numbers) make exactly the
 * sums the whole batch would, in the same order, so every process gets the single-process results
 * bit for bit. The engine knows no transport: allgather concatenates each process's block of
 * `bytes` (mine) into all (size * bytes bytes) in process order, on every process, as MPI_Allgather.
 *
 * Sums over a batch of N images go over min(N, TG_BATCH_CHUNKS) chunks of consecutive images
 * (chunk c is images [N*c/chunks, N*(c+1)/chunks)), then over the chunks in order. A process takes
 * whole chunks: process r the chunks [chunks*r/size, chunks*(r+1)/size), so any size up to the
 * chunk count works (16 for a batch of 16 or more). */
#define TG_BATCH_CHUNKS 16
typedef struct tg_batch_split {
    int rank, size; /* this process (from 0) and how many share each batch */
    int global;     /* images in this step's global batch */
    void (*allgather)(void *ctx, const void *mine, void *all, size_t bytes);
    void *ctx;
} tg_batch_split;
/* The images process rank takes of a global batch: [*first, *first + *count). Fails (TG_ERR_ARG)
 * when size is above the batch's chunk count, naming the sizes that work. */
TG_API int tg_batch_split_range(int global, int rank, int size, int *first, int *count);
/* Splits the tape's batch as s says (a copy is kept, across tg_tape_reset, until the next call;
 * set it again when the global batch changes); NULL: no split (each tape alone). Fails for a
 * bad split (no allgather, rank outside [0, size), size above the chunk count). */
TG_API int tg_tape_set_batch_split(tg_tape *t, const tg_batch_split *s);
/* The tape's split, or NULL (no split, or a NULL tape). */
TG_API const tg_batch_split *tg_tape_batch_split(const tg_tape *t);

/* Apply an op: checks inputs (a NULL input returns NULL and keeps the first
 * message), calls shape, allocates the output, runs forward, and records a
 * node when gradients are enabled and an input requires one. */
TG_API tg_tensor *tg_apply(tg_tape *t, const tg_op *op, tg_tensor **in, int n_in, const void *attr);
/* Memory for saved state, from the tape's arena (counted in the node's saved bytes). */
TG_API void *tg_node_save(tg_tape *t, tg_node *n, size_t bytes, const char *what);
/* Memory from the tape's arena that is not saved state (scratch). 64-byte aligned. */
TG_API void *tg_tape_alloc(tg_tape *t, size_t bytes);
/* The tape's first recorded node (the rest follow n->next, in the order they ran),
 * for tools that read a step (run logs, reports, tape dumps of your own); NULL
 * for an empty or NULL tape. Valid until tg_tape_reset. */
TG_API const tg_node *tg_tape_first(const tg_tape *t);
/* Uniform random number in [0,1) from the tape's generator. */
TG_API float tg_tape_uniform(tg_tape *t);
/* The state of the tape's generator (tg_tape_seed sets it), for an op that draws
 * its own numbers with tg_rand_u64(tg_tape_rng(t)); NULL for a NULL tape. */
TG_API uint64_t *tg_tape_rng(tg_tape *t);

/* EXPORTING AN OP TO ONNX
 *
 * tg_onnx_export runs the model's forward once on a recording tape and hands each node that
 * leads to the output, in order, to its op's onnx callback, which adds ONNX nodes (opset 17,
 * the default domain) reading the values of n's inputs and writing the value of n->out:
 *
 *     static int square_onnx(const tg_node *n, tg_onnx *g) {     // y = x * x
 *         const char *x = tg_onnx_name(g, n->in[0]), *y = tg_onnx_name(g, n->out);
 *         if (!x || !y) return tg_last_error_code();
 *         return tg_onnx_node(g, "Mul", (const char *[]){x, x}, 2, &y, 1);
 *     }
 *
 * Values are named by the engine; the batch (dimension 0 of the traced input and of every value
 * computed from it) is the symbolic dimension "N". Each function returns NULL or a negative
 * TG_ERR_* (out of memory, a bad argument) with a message; the export then fails with it. */

/* The value name of x: "input" for the traced input; for a parameter or buffer of the model its
 * state-dict name ("3.bn1.running_mean"), an initializer holding it; for a node's output a name
 * from the node ("3.conv1/conv2d:7"; "output" for the model's output); any other tensor (a
 * constant of a custom layer, made outside the tape) becomes an initializer holding its data as
 * traced. */
TG_API const char *tg_onnx_name(tg_onnx *g, const tg_tensor *x);
/* A new value for an intermediate result of n's export (a conv's output before its fused ReLU):
 * named after n's output and suffix, of the given shape, whose dimension 0 is the symbolic batch
 * when batched (shape[0] must then be the traced batch). Its shape goes into the value_info. */
TG_API const char *tg_onnx_temp(tg_onnx *g, const tg_node *n, const char *suffix, int ndim, const int *shape,
                                bool batched);
/* y has x's value: an op that is the identity here (dropout in evaluation) adds no node. y must
 * be the current node's output. */
TG_API int tg_onnx_alias(tg_onnx *g, const tg_tensor *y, const tg_tensor *x);
/* An initializer holding a copy of values of the given shape (ndim 0 to TG_MAX_DIMS; 0 is a
 * scalar), float32 or int64, named hint (made unique): Reshape's shape, Clip's bounds, Resize's
 * scales, folded weights. */
TG_API const char *tg_onnx_const_floats(tg_onnx *g, const char *hint, int ndim, const int64_t *shape, const float *v);
TG_API const char *tg_onnx_const_int64s(tg_onnx *g, const char *hint, int ndim, const int64_t *shape,
                                        const int64_t *v);
/* Adds a node: op_type ("Conv"), its inputs' and outputs' value names in order ("" for an
 * optional input left out, as Resize's roi). The attribute setters then add to this node: they
 * set the last node the current callback added, and are refused before it has added one. Every
 * input must be the graph's input, an initializer or an earlier node's output, and n->out's value
 * must be computed by a node (or be an alias of a value that is) when the callback returns. */
TG_API int tg_onnx_node(tg_onnx *g, const char *op_type, const char *const *in, int n_in, const char *const *out,
                        int n_out);
TG_API int tg_onnx_attr_int(tg_onnx *g, const char *name, int64_t v);
TG_API int tg_onnx_attr_ints(tg_onnx *g, const char *name, const int64_t *v, int n);
TG_API int tg_onnx_attr_float(tg_onnx *g, const char *name, float v);
TG_API int tg_onnx_attr_string(tg_onnx *g, const char *name, const char *v);
/* For fusing across nodes: the only exported node that reads x, or NULL when none or several do,
 * or x is the model's output. */
TG_API const tg_node *tg_onnx_consumer(const tg_onnx *g, const tg_tensor *x);
/* Whether the export folds: an op may then take a later node's work into its own (nn's option
 * fold_batch_norm: a conv takes the batch norm after it into its weights). */
TG_API bool tg_onnx_folding(const tg_onnx *g);
/* Marks a later node (after the current one, of the same trace) as done by this one's export (a
 * batch norm folded into its conv); its own callback sees the mark with tg_onnx_marked and adds
 * only what is left. */
TG_API int tg_onnx_mark(tg_onnx *g, const tg_node *later);
TG_API bool tg_onnx_marked(const tg_onnx *g, const tg_node *n);
/* Whether x is computed from the traced input (its dimension 0 is then the batch, "N"). */
TG_API bool tg_onnx_batched(const tg_onnx *g, const tg_tensor *x);

#ifdef __cplusplus
}
#endif
#endif
