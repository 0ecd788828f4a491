/* tapegrad.h: a small reverse-mode autograd engine for float32 tensors.
 *
 * OVERVIEW
 *   Tensors are float32, contiguous, with up to 4 dimensions; images are NCHW.
 *   While your C code builds the forward pass, a tape records one node per op.
 *   Every op carries its own vector-Jacobian product (VJP); tg_backward sweeps
 *   the tape in reverse and accumulates gradients into every input that
 *   requires one. An op of your own is a descriptor handed to the same engine:
 *   see tapegrad_op.h.
 *
 * WORKED EXAMPLE (one SGD step of y = relu(x W1^T + b1) W2^T + b2)
 *
 *     tg_tensor *w1 = tg_param_new(2, (int[]){64, 2});     // parameters live on the heap
 *     ...
 *     tg_tape *t = tg_tape_new();
 *     tg_tensor *x = tg_tensor_tape(t, 2, (int[]){32, 2}); // a batch, owned by the tape
 *     // fill x->data ...
 *     tg_tensor *h = tg_relu(t, tg_linear(t, x, w1, b1));
 *     tg_tensor *loss = tg_cross_entropy(t, tg_linear(t, h, w2, b2), labels);
 *     if (!loss || tg_backward(t, loss) < 0) fprintf(stderr, "%s\n", tg_last_error());
 *     // w1->grad now holds dloss/dw1; update, zero the grads, then:
 *     tg_tape_reset(t);                                    // frees the step's memory at once
 *
 * OWNERSHIP
 *   - The tape owns every tensor an op returns, everything saved for backward
 *     and their gradients, in an arena. tg_tape_reset releases them all at
 *     once and keeps the memory, so a training loop's steady state does no
 *     malloc at all.
 *   - Parameters (tg_param_new, tg_tensor_new) live on the heap and belong to
 *     the caller; the tape only borrows them.
 *   - A returned pointer is borrowed unless the function's name ends in _new.
 *     tg_*_free(NULL) does nothing.
 *   - Gradients accumulate; zeroing is explicit (tg_tensor_zero_grad).
 *
 * ERRORS
 *   - Nothing in the library exits or aborts because of a caller's mistake or
 *     a bad file. An op that cannot be built returns NULL and leaves a message
 *     for tg_last_error(), naming the op and the shapes. An op given a NULL
 *     input returns NULL and keeps the first message, so a chain of calls fails
 *     once, at the end, with the first cause.
 *   - Functions returning int give 0 on success or a negative TG_ERR_* code.
 *
 * CALLER MISTAKES (one rule for every function here, in tapegrad_op.h and in tapegrad_nn.h)
 *   - NULL, or an impossible number (a negative size, an out-of-range option),
 *     where a function needs a real one: a function returning a pointer
 *     returns NULL, one returning int returns TG_ERR_ARG, each with a message
 *     naming the function; a void function (tg_*_free, tg_tape_reset, the
 *     setters, tg_tensor_zero_grad) does nothing; an accessor of a NULL
 *     object returns 0, false or NULL.
 *   - Tape tensors belong to their tape and its generation: tg_tape_reset
 *     ends a generation. An op, tg_backward or any function that takes a tape
 *     refuses (TG_ERR_STATE) a tensor made before the reset ("is stale") or
 *     on another tape ("belongs to another tape"). Heap tensors (parameters,
 *     inputs from tg_tensor_new) go with any tape. The check reads the
 *     tensor's header, so a tensor of a tape that was freed must not be used.
 *   - tg_backward twice on one tape sweeps again: the leaves' gradients get
 *     the same contributions added a second time (PyTorch's
 *     retain_graph=True); tape tensors' gradients start afresh each sweep.
 *   - Writing into an op's input between its forward and backward is not
 *     caught unless tg_tape_check_inputs is on (the VJP then reads the new
 *     values); see there.
 */
#ifndef TAPEGRAD_H
#define TAPEGRAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* TG_API marks what the shared library exports: the library is built with
 * -fvisibility=hidden, so everything else (the tg__ helpers) stays inside it. */
#if defined(__GNUC__)
#define TG_API __attribute__((visibility("default")))
#else
#define TG_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define TG_MAX_DIMS 4
#define TG_MAX_INPUTS 5

// ----------------------------------------------------------------------------
// errors

#define TG_ERRNO_MAP(XX)                                 \
    XX(SHAPE, -1, "shape mismatch")                      \
    XX(ARG, -2, "bad argument")                          \
    XX(NOMEM, -3, "out of memory")                       \
    XX(IO, -4, "i/o error")                              \
    XX(FORMAT, -5, "bad file format")                    \
    XX(STATE, -6, "invalid state")                       \
    XX(NONFINITE, -7, "non-finite value")

typedef enum {
    TG_OK = 0,
#define XX(name, code, str) TG_ERR_##name = code,
    TG_ERRNO_MAP(XX)
#undef XX
} tg_err;

TG_API const char *tg_last_error(void);      /* message of the last failure in this thread ("" if none) */
TG_API int tg_last_error_code(void);          /* its TG_ERR_* code, 0 if none */
TG_API void tg_clear_error(void);
TG_API const char *tg_strerror(int code);     /* "shape mismatch" for TG_ERR_SHAPE, ... */
/* Set this thread's message (printf-style) and code, and return the code: how
 * ops' shape functions fail, and how a program reports its own errors the same way. */
TG_API int tg_fail(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

// ----------------------------------------------------------------------------
// tensors

typedef struct tg_node tg_node;
typedef struct tg_tape tg_tape;

typedef struct tg_tensor {
    float *data;
    float *grad;                 /* NULL until a gradient is needed */
    int ndim;                    /* 0 (a scalar) to 4 */
    int shape[TG_MAX_DIMS];
    int64_t size;                /* number of elements */
    bool requires_grad;
    bool on_heap;                /* created by tg_tensor_new / tg_param_new */
    bool grad_unset;             /* during backward: grad's memory holds no values yet (see overwrites_grads) */
    tg_node *node;               /* the tape node that produced it, NULL for leaves */
    char name[64];               /* a parameter's name ("3.conv1.weight"), shown in tape dumps */
    tg_tape *tape;               /* the tape whose arena holds it; NULL for heap (and caller-made) tensors */
    uint64_t generation;         /* the tape's generation when it was made (see tg_tape_reset) */
} tg_tensor;

/* A heap tensor, zero-filled, owned by the caller. NULL on bad shape. */
TG_API tg_tensor *tg_tensor_new(int ndim, const int *shape);
/* A heap tensor that requires a gradient (its grad buffer is allocated, zeroed). */
TG_API tg_tensor *tg_param_new(int ndim, const int *shape);
TG_API void tg_tensor_free(tg_tensor *x);
/* A tensor allocated from the tape's arena (an input batch, say); zero-filled. */
TG_API tg_tensor *tg_tensor_tape(tg_tape *t, int ndim, const int *shape);
/* Turn on gradient tracking for a heap tensor (allocates its grad buffer). */
TG_API int tg_tensor_set_requires_grad(tg_tensor *x, bool on);
TG_API void tg_tensor_zero_grad(tg_tensor *x);
TG_API void tg_tensor_set_name(tg_tensor *x, const char *name);
/* "8x3x28x28" into buf; returns buf. */
TG_API char *tg_shape_str(const tg_tensor *x, char *buf, size_t len);
TG_API bool tg_same_shape(const tg_tensor *a, const tg_tensor *b);

// ----------------------------------------------------------------------------
// the tape

TG_API tg_tape *tg_tape_new(void);
TG_API void tg_tape_free(tg_tape *t);
/* Forget every node and free every tape tensor at once; keeps the memory. */
TG_API void tg_tape_reset(tg_tape *t);
/* No-grad mode: ops still compute, but nothing is recorded or saved. Returns the previous mode. */
TG_API bool tg_tape_set_grad_enabled(tg_tape *t, bool on);
/* Seed of the tape's random generator (dropout masks). Same seed, same masks. */
TG_API void tg_tape_seed(tg_tape *t, uint64_t seed);
TG_API uint64_t tg_tape_rng_state(const tg_tape *t);
/* Names the nodes made from now on: scope is what made them, shown in tape dumps
 * (a model's layer path, "3.conv1", as PyTorch names modules). The tape keeps a
 * copy until tg_tape_reset, which clears it; NULL or "" for none. */
TG_API int tg_tape_set_scope(tg_tape *t, const char *scope);
TG_API const char *tg_tape_scope(const tg_tape *t);        /* "" for none */
TG_API int tg_tape_node_count(const tg_tape *t);
TG_API size_t tg_tape_arena_used(const tg_tape *t);       /* bytes in use now */
TG_API size_t tg_tape_arena_high_water(const tg_tape *t); /* most bytes ever in use */

/* Backward from a scalar: seeds d(loss) = 1 and sweeps the tape in reverse. */
TG_API int tg_backward(tg_tape *t, tg_tensor *loss);
/* Backward from any tensor with an explicit seed gradient dy (same size as y). */
TG_API int tg_backward_seed(tg_tape *t, tg_tensor *y, const float *dy);
/* Non-finite check (off by default; off, it costs one branch per op). On, every
 * op's output is scanned after its forward and every input gradient after its
 * VJP: the first NaN or Inf fails the op (it returns NULL) or the sweep
 * (TG_ERR_NONFINITE), and tg_last_error() names the op, its node and shape,
 * forward or backward, and for backward which input. */
TG_API void tg_tape_check_finite(tg_tape *t, bool on);
/* Changed-input check (off by default). A VJP reads its inputs where they are
 * (x, w), not copies, so writing into an input between forward and backward
 * (an optimizer step before backward, a batch buffer refilled too early) makes
 * backward use the new values. Off, that goes unnoticed. On, every recorded
 * node hashes its inputs' data after forward, and the sweep fails with
 * TG_ERR_STATE before a VJP whose inputs changed, naming the op, node and
 * input. It costs a pass over every input per op and per VJP. */
TG_API void tg_tape_check_inputs(tg_tape *t, bool on);

// ----------------------------------------------------------------------------
// timelines and memory: where a step's time and bytes went

/* The tape's step as a timeline: Chrome trace-event JSON ({"traceEvents":[...]}), which
 * Perfetto (ui.perfetto.dev), chrome://tracing and speedscope open. Call it after backward
 * (and the optimizer step) and before tg_tape_reset. Times are microseconds from the step's
 * first event. On pid 1, track "main" (tid 1) holds a complete event ("ph":"X") per node's
 * forward ("conv2d+relu", cat "forward") and per VJP ("conv2d+relu backward", cat
 * "backward"), and the user spans (cat "user") around them; with tg_tape_set_trace on, the
 * parts of each node that ran in OpenMP parallel regions are events (cat "worker") on the
 * tracks of the threads that ran them ("omp worker 1" is tid 2, ...; the main thread's own
 * share nests inside the node on "main"). Events on one track nest properly. A flow arrow
 * joins each forward to its VJP, and the counter "arena" samples the bytes in use after each.
 * A node event's args: "node" ("%3"), "layer" (its scope), "inputs" (as tape dumps name
 * them), "Input Dims" (their shapes) and, as PyTorch's profiler names it, "flops" (a VJP's by
 * the op's own backward count), with "saved bytes", "GFLOP/s", "bytes" (moved), "FLOP/byte"
 * and "kernel" (the path that ran, with its ISA), as tape dumps count them. Names are escaped (bytes that are not UTF-8 become
 * U+FFFD). "otherData" says how many spans were dropped (full buffers). Returns 0,
 * TG_ERR_ARG, TG_ERR_NOMEM or TG_ERR_IO. */
TG_API int tg_tape_trace(const tg_tape *t, FILE *f);
/* Records the worker spans for tg_tape_trace (off by default; off, an iteration of a parallel
 * loop pays one predictable branch). Switching it on makes bounded buffers (2T+2 of 80 KB for
 * T threads), so a step records without allocating; a span that finds its buffer full is
 * counted as dropped. Results are the same bit for bit either way: it only reads the clock.
 * A tape records the parallel regions its own nodes start, in the thread that runs them; tapes
 * in other threads, traced or not, are not mixed in. Returns 0, TG_ERR_ARG or TG_ERR_NOMEM. */
TG_API int tg_tape_set_trace(tg_tape *t, bool on);
TG_API bool tg_tape_get_trace(const tg_tape *t);
/* A span of your own on the timeline ("optimizer step", "batch"), from begin to end on the
 * main track, nested up to 8 deep; kept until tg_tape_reset, which forgets open ones too.
 * At most 64 are kept per step (more are counted as dropped). A span still open when the
 * trace is written ends there. TG_ERR_ARG for NULL; TG_ERR_STATE for a span 9 deep or an
 * end with none open. */
TG_API int tg_tape_span_begin(tg_tape *t, const char *name);
TG_API int tg_tape_span_end(tg_tape *t);

/* The tape's arena bytes by what they hold (each allocation rounded up to 64 bytes, so they
 * sum to tg_tape_arena_used). */
typedef struct {
    size_t activations; /* node outputs and tape tensors (tg_tensor_tape): data and headers */
    size_t saved;       /* state saved for backward (tg_node_save) */
    size_t grads;       /* gradients of tape tensors (made by backward) */
    size_t scratch;     /* other tg_tape_alloc: the ops' work space */
    size_t records;     /* the tape's own: nodes, attributes, scope names, input hashes */
    size_t total;
} tg_tape_mem_split;
typedef struct {
    tg_tape_mem_split now;  /* in use now; tg_tape_reset empties it */
    tg_tape_mem_split peak; /* when the arena held the most bytes ever (tg_tape_arena_high_water) */
    size_t capacity;        /* bytes the arena holds from the system */
} tg_tape_mem;
/* Fills out; 0 or TG_ERR_ARG. */
TG_API int tg_tape_memory(const tg_tape *t, tg_tape_mem *out);

// ----------------------------------------------------------------------------
// tape dumps: see what the network did

/* One line per recorded node: id, op, output shape, receptive field (4-D outputs),
 * bytes saved for backward and what they are, forward FLOPs, parameter elements
 * read, forward and backward milliseconds, the L2 norm of the output's gradient
 * (after backward), inputs (%id, a parameter's name, or "input"), the op's
 * attributes and statistics. Then a second table, speed, one line per node:
 * forward and backward FLOPs (each op's own count; backward counts only the
 * gradients computed), GFLOP/s from the node's measured times and their share of
 * tg_fma_peak, bytes moved and FLOPs per byte (arithmetic intensity) each way,
 * and the kernel path each ran ("shifted avx512", "im2col+gemm avx2"). Then every
 * parameter with |w| and |dw|, totals (saved bytes, the arena's high-water mark,
 * forward and backward FLOPs, times, the step's GFLOP/s and share of the peak, the
 * arena's peak by kind as tg_tape_memory splits it),
 * and a diagnosis: what looks wrong, with the numbers and the usual remedy
 * (gradients that fall or grow 100-fold or more along the tape, an op's own
 * finding such as dead ReLU channels), or "nothing looks wrong". An op without a
 * flops or stats callback shows "-". The first dump measures the FMA peak (about
 * 50 ms) unless it was given. Returns 0, TG_ERR_ARG, TG_ERR_NOMEM or TG_ERR_IO. */
TG_API int tg_tape_dump(const tg_tape *t, FILE *f);
/* The machine's peak in GFLOP/s, for the dumps' share of it: measured once, on the
 * first call, with independent chains of fused multiply-adds of the widest vectors
 * the kernels use (AVX-512: 16 floats, AVX2: 8; plain C: a multiply and an add),
 * run at once on the tg_get_threads() threads, about 30 to 60 ms; each FMA counts
 * 2 FLOPs per lane, as FLOPs are counted everywhere here (a multiply-add is 2).
 * Neither frequency changes nor other processes are accounted for. */
TG_API double tg_fma_peak(void);
/* Give the peak instead (GFLOP/s), or 0 to measure it again on the next call;
 * a negative, NaN or infinite value is ignored. */
TG_API void tg_set_fma_peak(double gflops);
/* Forward FLOPs of the recorded nodes (ops without a flops callback count 0). */
TG_API int64_t tg_tape_flops(const tg_tape *t);
/* The dump's "by op" table as numbers: per op (and variant, "conv2d+relu"), in order of first
 * use, its nodes, forward FLOPs (-1 for an op without a count), forward and backward
 * seconds (backward's are 0 until tg_backward has run) and backward FLOPs (of the nodes whose
 * vjp ran; 0 before tg_backward, -1 for an op without a count). Fills out[0..max) and returns how
 * many ops the tape holds (more than max: the rest left out), or TG_ERR_ARG / TG_ERR_NOMEM. */
typedef struct {
    char name[64];
    int nodes;
    int64_t flops;
    double t_forward, t_backward;
    int64_t flops_backward;
} tg_op_total;
TG_API int tg_tape_op_totals(const tg_tape *t, tg_op_total *out, int max);
/* The tape as a Graphviz digraph (dot -Tsvg tape.dot -o tape.svg): ops are
 * boxes, parameters ellipses, other leaves (inputs) parallelograms; edges carry shapes.
 * Layers and blocks are nested clusters, from the nodes' scopes ("3.conv1" inside
 * "3"), named as the parameters are in state dicts and safetensors files (as
 * Netron shows them); each parameter sits in its layer's cluster. A node's label
 * shows its time (forward + backward), the RMS of its output's gradient (|dy| rms),
 * its FLOPs and its layer. tg_tape_dot fills the ops by time: tg_tape_dot_opts
 * with TG_DOT_TIME. */
TG_API int tg_tape_dot(const tg_tape *t, FILE *f);
/* What fills the op boxes: TG_DOT_TIME, the node's forward + backward time on a
 * sequential scale (light to dark: white, yellow, orange, red) relative to the
 * slowest node; TG_DOT_GRAD, |dy| rms on a logarithmic scale (light to dark blue)
 * from the smallest to the largest on the tape; both: time fills, |dy| colours a
 * thick border; 0 is TG_DOT_TIME. The graph's label holds the legend. Other bits: TG_ERR_ARG. */
enum { TG_DOT_TIME = 1, TG_DOT_GRAD = 2 };
TG_API int tg_tape_dot_opts(const tg_tape *t, FILE *f, int flags);

// ----------------------------------------------------------------------------
// threads

/* Threads for the matrix products behind matmul, linear and conv (OpenMP);
 * n < 1 means all cores (or OMP_NUM_THREADS). Results are bit-for-bit the same
 * for any count. A product called from inside an OpenMP parallel region runs
 * in the calling thread. Without OpenMP there is one thread. */
TG_API void tg_set_threads(int n);
TG_API int tg_get_threads(void);

/* PyTorch's torch.set_float32_matmul_precision: "highest" (the default) keeps
 * every product in float32. "medium" lets the stride-1 convolutions multiply in
 * bfloat16 with float32 sums on CPUs with AVX512_BF16 (twice the multiply-adds a
 * cycle): the forward and the input gradient, and the weight gradient where a
 * group's input channels fill four fifths of blocks of 16 (13 to 16, 26 to 32,
 * 39 to 48, ...) and the output rows have an even width; a conv with one input
 * channel keeps its forward, and one with one output channel its input
 * gradient, in float32 (a pair with a zero would gain nothing). Their
 * operands (x, w, dy) are rounded to bf16 (8 significant bits, nearest even) as
 * they enter the product; batch norm, linear, matmul and the optimizer stay
 * float32, as do CPUs without AVX512_BF16. "high" computes as "highest" (PyTorch's
 * TF32 is a GPU format). Results stay the same for any thread count. TG_ERR_ARG
 * for another name. */
TG_API int tg_set_float32_matmul_precision(const char *precision);
TG_API const char *tg_get_float32_matmul_precision(void);

// ----------------------------------------------------------------------------
// ops: each returns a tape tensor, or NULL with tg_last_error() set.
// Broadcasting (add, sub, mul) follows NumPy: shapes align on the right; a
// dimension of 1 stretches. A per-channel bias for (N,C,H,W) has shape (C,1,1).

TG_API tg_tensor *tg_add(tg_tape *t, tg_tensor *a, tg_tensor *b);     /* a + b, broadcast */
TG_API tg_tensor *tg_sub(tg_tape *t, tg_tensor *a, tg_tensor *b);     /* a - b, broadcast */
TG_API tg_tensor *tg_mul(tg_tape *t, tg_tensor *a, tg_tensor *b);     /* a * b, broadcast */
TG_API tg_tensor *tg_matmul(tg_tape *t, tg_tensor *a, tg_tensor *b);  /* a:(M,K) b:(K,N) -> (M,N) */
/* x:(N,I) w:(O,I) b:(O) or NULL -> (N,O) = x w^T + b */
TG_API tg_tensor *tg_linear(tg_tape *t, tg_tensor *x, tg_tensor *w, tg_tensor *b);
TG_API tg_tensor *tg_relu(tg_tape *t, tg_tensor *x);                  /* x <= 0 ? +0 : x; NaN stays NaN and passes dy, as PyTorch */
/* min(max(x,0),6), F.relu6 (hardtanh(x,0,6)): dy passes where 0 < x < 6 only, so not at exactly
 * 0 or 6. NaN stays NaN and passes dy (hardtanh_backward's rule as PyTorch's scalar and CUDA code
 * apply it; its vectorised CPU loop gives 0 there instead). -0 stays -0, as in PyTorch. */
TG_API tg_tensor *tg_relu6(tg_tape *t, tg_tensor *x);
/* x * relu6(x+3) / 6, F.hardswish: x <= -3 gives +0, x >= 3 gives x, between x*(x+3)/6 rounded
 * as PyTorch rounds it. dx = 0 where x < -3, dy*(x/3 + 1/2) where -3 <= x <= 3 (-dy/2 at -3,
 * 1.5 dy at 3), dy above 3: PyTorch's rule up to 2.6 (its scalar and CUDA code); its main branch
 * since pull request 148049 (2025) gives 0 at -3 and dy at 3, and 1.13's vectorised CPU loop dy
 * at 3. NaN stays NaN and passes dy (that loop gives NaN). Also unlike PyTorch, which multiplies
 * by x: +0 below -3 where it gives -0, +0 at -Inf where it gives NaN, and x above 3 where its
 * x*6/6 can be 1 ulp off. */
TG_API tg_tensor *tg_hardswish(tg_tape *t, tg_tensor *x);
TG_API tg_tensor *tg_sigmoid(tg_tape *t, tg_tensor *x);               /* 1 / (1 + e^-x) */
TG_API tg_tensor *tg_tanh(tg_tape *t, tg_tensor *x);
TG_API tg_tensor *tg_sum(tg_tape *t, tg_tensor *x);                   /* all elements -> scalar */
TG_API tg_tensor *tg_mean(tg_tape *t, tg_tensor *x);                  /* all elements -> scalar */
/* Same data, new shape; one dimension may be -1 (inferred). */
TG_API tg_tensor *tg_reshape(tg_tape *t, tg_tensor *x, int ndim, const int *shape);
TG_API tg_tensor *tg_flatten(tg_tape *t, tg_tensor *x);               /* (N,...) -> (N, prod) */
/* torch.cat(xs[0..n-1], dim): 1 <= n <= TG_MAX_INPUTS tensors of one ndim (at least 1), equal in
 * every dimension but dim -> that shape with dim the sum; the channels of (N,C,H,W) are dim 1.
 * dim < 0 counts from the end (-1 the last). A copy, not a view. Differences from PyTorch: at most
 * 5 tensors; no empty tensors (PyTorch skips a legacy 1-D empty one). A NULL element (an earlier
 * op failed) returns NULL and keeps that op's message. */
TG_API tg_tensor *tg_cat(tg_tape *t, tg_tensor *const *xs, int n, int dim);
/* logits:(N,C), labels[N] in [0,C) -> scalar mean over the batch of -log softmax(logits)[label] */
TG_API tg_tensor *tg_cross_entropy(tg_tape *t, tg_tensor *logits, const int32_t *labels);
/* torch.softmax(x, dim=-1): each run along the last dimension of x (any shape, at least 1-D;
 * PyTorch also takes a scalar and other dims) becomes e^x / sum e^x, computed with the run's
 * max subtracted, so large values do not overflow. As in PyTorch a run holding NaN or +Inf, or
 * only -Inf, gives NaN throughout; -Inf among finite values gives 0. */
TG_API tg_tensor *tg_softmax(tg_tape *t, tg_tensor *x);

// ----------------------------------------------------------------------------
// CNN ops. Images are (N,C,H,W). H' = (H + 2*pad - dilation*(R-1) - 1) / stride + 1.

/* An activation fused into an op as an epilogue (the _act constructors): applied as
 * the output is written, its gradient as dy is read; bit for bit the separate op's. */
typedef enum { TG_ACT_NONE, TG_ACT_RELU } tg_act;

/* x:(N,C,H,W) w:(K,C/groups,R,S) b:(K) or NULL -> (N,K,H',W'); groups = C is depthwise */
TG_API tg_tensor *tg_conv2d(tg_tape *t, tg_tensor *x, tg_tensor *w, tg_tensor *b, int stride, int pad, int dilation,
                            int groups);
/* act(conv2d(...)) as one op: with TG_ACT_RELU the ReLU is applied as y is written, and dy is
 * masked as it is read; the ReLU as tg_relu's (NaN kept). Tape dumps show it as conv2d+relu. */
TG_API tg_tensor *tg_conv2d_act(tg_tape *t, tg_tensor *x, tg_tensor *w, tg_tensor *b, int stride, int pad,
                                int dilation, int groups, tg_act act);
/* tg_max_pool2d(relu(conv2d(...)), 2, 2, 0) as one op: each image's conv output is pooled while it is
 * in cache and never stored, and backward builds the conv's gradient straight from the pooled one.
 * -> (N,K,H'/2,W'/2), H',W' >= 2; the argmax (tg_max_pool2d_argmax) indexes the H' x W' plane; bit
 * for bit the three ops'. Tape dumps show conv2d+relu+maxpool. */
TG_API tg_tensor *tg_conv2d_relu_max_pool(tg_tape *t, tg_tensor *x, tg_tensor *w, tg_tensor *b, int stride, int pad,
                                          int dilation, int groups);
/* x:(N,C,H,W) -> (N,C,H',W'), max over each k x k window; pad <= k/2 (padding never wins).
 * Records the argmax of each window; ties go to the first maximum in row-major order. */
TG_API tg_tensor *tg_max_pool2d(tg_tape *t, tg_tensor *x, int kernel, int stride, int pad);
/* The argmax recorded by a max_pool2d (or tg_conv2d_relu_max_pool, tg_batch_norm_relu_max_pool)
 * output y: one index ih*W + iw into its input plane per output element; NULL if y is not such an
 * output or nothing was recorded. */
TG_API const int32_t *tg_max_pool2d_argmax(const tg_tensor *y);
/* x:(N,C,H,W) -> (N,C,H',W'), mean over each k x k window; padded zeros count
 * (the divisor is always k*k, PyTorch's count_include_pad=True). */
TG_API tg_tensor *tg_avg_pool2d(tg_tape *t, tg_tensor *x, int kernel, int stride, int pad);
/* x:(N,C,H,W) -> (N,C), the mean over H and W */
TG_API tg_tensor *tg_global_avg_pool(tg_tape *t, tg_tensor *x);
/* Inverted dropout, p = probability of dropping. Training: y = x * mask / (1-p),
 * mask ~ Bernoulli(1-p) from the tape's generator, stored on the tape.
 * Evaluation: y = x. p = 1 gives zeros; p outside [0,1] is an error. */
TG_API tg_tensor *tg_dropout(tg_tape *t, tg_tensor *x, float p, bool training);
/* Vanilla dropout: training y = x * mask (no scaling); evaluation y = x * (1-p). */
TG_API tg_tensor *tg_dropout_vanilla(tg_tape *t, tg_tensor *x, float p, bool training);
/* The mask (1 kept, 0 dropped) recorded by a dropout output y, or NULL. */
TG_API const uint8_t *tg_dropout_mask(const tg_tensor *y);
/* x:(N,C) or (N,C,...) gamma, beta:(C) -> same shape as x, per channel C.
 * Training: normalise with the batch mean and biased variance, and when the
 * running tensors (C) are given, running = (1-momentum)*running + momentum*batch,
 * with the unbiased variance in running_var. Evaluation: use the running statistics.
 * y = gamma * (x - mean) / sqrt(var + eps) + beta. PyTorch: momentum 0.1, eps 1e-5. */
TG_API tg_tensor *tg_batch_norm(tg_tape *t, tg_tensor *x, tg_tensor *gamma, tg_tensor *beta, tg_tensor *running_mean,
                                tg_tensor *running_var, bool training, float momentum, float eps);
/* act(batch_norm(...) + add) as one op, one pass over memory each way instead of two or three;
 * add (x's shape) may be NULL. With add and TG_ACT_RELU: the end of a v1 residual block.
 * Tape dumps show it as batch_norm+relu, batch_norm+add+relu, batch_norm+add. */
TG_API tg_tensor *tg_batch_norm_act(tg_tape *t, tg_tensor *x, tg_tensor *gamma, tg_tensor *beta,
                                    tg_tensor *running_mean, tg_tensor *running_var, bool training, float momentum,
                                    float eps, tg_tensor *add, tg_act act);
/* tg_max_pool2d(relu(batch_norm(...) + add), 2, 2, 0) as one op, add may be NULL: each plane is
 * normalised and pooled while it is in cache and never stored, and backward unpools the pooled
 * gradient a plane at a time as it reads it. x (N,C,H,W), H,W >= 2 -> (N,C,H/2,W/2); the argmax
 * (tg_max_pool2d_argmax) indexes the H x W plane; bit for bit the ops'. Tape dumps show
 * batch_norm+relu+maxpool and batch_norm+add+relu+maxpool. */
TG_API tg_tensor *tg_batch_norm_relu_max_pool(tg_tape *t, tg_tensor *x, tg_tensor *gamma, tg_tensor *beta,
                                              tg_tensor *running_mean, tg_tensor *running_var, bool training,
                                              float momentum, float eps, tg_tensor *add);
/* y = x + fx for exactly equal shapes: the join of a residual block */
TG_API tg_tensor *tg_residual_add(tg_tape *t, tg_tensor *x, tg_tensor *fx);
/* act(x + fx) as one op (TG_ACT_RELU: the end of a v1 residual block); dumps show residual_add+relu */
TG_API tg_tensor *tg_residual_add_act(tg_tape *t, tg_tensor *x, tg_tensor *fx, tg_act act);

// ----------------------------------------------------------------------------
// going back up: transposed convolution, upsampling; layer norm; mean squared error

/* x:(N,Cin,H,W) w:(Cin,Cout/groups,R,S) b:(Cout) or NULL -> (N,Cout,H',W'),
 * H' = (H-1)*stride - 2*pad + dilation*(R-1) + output_padding + 1; the adjoint of conv2d
 * (PyTorch's F.conv_transpose2d). output_padding must be below stride or dilation. */
TG_API tg_tensor *tg_conv_transpose2d(tg_tape *t, tg_tensor *x, tg_tensor *w, tg_tensor *b, int stride, int pad,
                                      int output_padding, int dilation, int groups);
typedef enum { TG_UPSAMPLE_NEAREST, TG_UPSAMPLE_BILINEAR } tg_upsample_mode;
/* x:(N,C,H,W) -> (N,C,H*f,W*f); bilinear with align_corners=False, PyTorch's default */
TG_API tg_tensor *tg_upsample(tg_tape *t, tg_tensor *x, int factor, tg_upsample_mode mode);
/* Normalise each run of the last D = gamma->size elements of x (D must be the product of
 * x's last dimensions): y = gamma * (x - mean) / sqrt(var + eps) + beta, biased variance. */
TG_API tg_tensor *tg_layer_norm(tg_tape *t, tg_tensor *x, tg_tensor *gamma, tg_tensor *beta, float eps);
/* mean((pred - target)^2) over every element -> scalar */
TG_API tg_tensor *tg_mse_loss(tg_tape *t, tg_tensor *pred, tg_tensor *target);

// ----------------------------------------------------------------------------
// random numbers

/* The generator itself (splitmix64) on a caller's state: the same numbers on every machine. */
TG_API uint64_t tg_rand_u64(uint64_t *state);
TG_API float tg_rand_uniform(uint64_t *state); /* [0,1) */
TG_API float tg_rand_normal(uint64_t *state);  /* N(0,1) */

// ----------------------------------------------------------------------------
// gradcheck: compares every VJP on the tape against central differences.

typedef tg_tensor *(*tg_build_fn)(tg_tape *t, tg_tensor **inputs, void *ctx);

typedef struct {
    double eps;       /* finite-difference step (default 1e-2, scaled by max(1,|x|)) */
    double tol;       /* worst relative error allowed (default 1e-2) */
    uint64_t seed;    /* the tape is reseeded before each evaluation (default 1) */
} tg_gradcheck_opts;

/* Builds out = build(t, inputs, ctx) and checks d(sum(r * out))/d(input) for
 * a fixed random r, for every input with requires_grad. max_rel[i] receives
 * the worst relative error of input i (elements are compared against
 * max(|analytic|, |numeric|, 1e-2 * the largest |numeric| of that input)).
 * Returns 0 if every error is within tol, TG_ERR_STATE if not (message says
 * which input), another negative code if the build failed. opts may be NULL. */
TG_API int tg_gradcheck(tg_build_fn build, tg_tensor **inputs, int n_inputs, void *ctx,
                        const tg_gradcheck_opts *opts, double *max_rel);

#ifdef __cplusplus
}
#endif
#endif
