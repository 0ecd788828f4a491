/* trainer.c: the training loop the demos share: SGD with momentum (or Adam,
 * AdamW) and weight decay on the weights only, a linear warm-up then cosine
 * decay, a test after every epoch, checkpoints a run resumes from exactly.
 * Reads top to bottom: options, data, progress, evaluation, what a checkpoint
 * holds, the loop (forward, loss, backward, step, reset). */
#include "trainer.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

_Noreturn void demo_usage(const demo_options *o, const char *msg) {
    fprintf(stderr, "%s: %s\nusage: %s %s\n", o->prog, msg, o->prog, o->usage);
    exit(2);
}

_Noreturn void demo_die(const demo_options *o, const char *what, const char *hint) {
    fprintf(stderr, "%s: %s: %s\n", o->prog, what, tg_last_error());
    if (hint) fprintf(stderr, "---> HINT: %s\n", hint);
    exit(1);
}

demo_options demo_parse(int argc, char **argv, demo_options o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
#define NEXT() (v ? (i++, v) : (demo_usage(&o, "missing value"), ""))
        if (!strcmp(a, "--data")) o.data = NEXT();
        else if (!strcmp(a, "--net")) o.net = NEXT();
        else if (!strcmp(a, "--save")) o.save = NEXT();
        else if (!strcmp(a, "--load")) o.load = NEXT();
        else if (!strcmp(a, "--resume")) o.resume = NEXT();
        else if (!strcmp(a, "--optim")) o.optim = NEXT();
        else if (!strcmp(a, "--augment")) o.augment = true;
        else if (!strcmp(a, "--stop-after")) o.stop_after = (int)strtol(NEXT(), &end, 10);
        else if (!strcmp(a, "--out")) o.out = NEXT();
        else if (!strcmp(a, "--report")) o.report = NEXT();
        else if (!strcmp(a, "--onnx")) o.onnx = NEXT();
        else if (!strcmp(a, "--epochs")) o.epochs = (int)strtol(NEXT(), &end, 10);
        else if (!strcmp(a, "--batch")) o.batch = (int)strtol(NEXT(), &end, 10);
        else if (!strcmp(a, "--threads")) o.threads = (int)strtol(NEXT(), &end, 10);
        else if (!strcmp(a, "--precision")) {
            if (tg_set_float32_matmul_precision(NEXT()) < 0) demo_usage(&o, "--precision must be highest or medium");
        }
        else if (!strcmp(a, "--limit")) o.limit = (int)strtol(NEXT(), &end, 10);
        else if (!strcmp(a, "--test-limit")) o.test_limit = (int)strtol(NEXT(), &end, 10);
        else if (!strcmp(a, "--warmup")) o.warmup = (int)strtol(NEXT(), &end, 10);
        else if (!strcmp(a, "--seed")) o.seed = strtoull(NEXT(), &end, 10);
        else if (!strcmp(a, "--allreduce")) o.allreduce = NEXT();
        else if (!strcmp(a, "--save-ranks")) o.save_ranks = true;
        else if (!strcmp(a, "--lr")) o.lr = strtof(NEXT(), &end);
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) demo_usage(&o, "train a CNN");
        else demo_usage(&o, "unknown option");
        if (end && *end) demo_usage(&o, "bad number");
#undef NEXT
    }
    if (o.epochs < 0 || o.batch < 2 || o.limit < 0 || o.test_limit < 0 || o.warmup < 1 || !(o.lr > 0) || isinf(o.lr) ||
        o.stop_after < 0)
        demo_usage(&o, "need --epochs >= 0, --batch >= 2, a finite --lr > 0, --warmup >= 1, --limit, --test-limit and "
                       "--stop-after >= 0");
    if (!o.optim) o.optim = "sgd";
    if (strcmp(o.optim, "sgd") && strcmp(o.optim, "adam") && strcmp(o.optim, "adamw"))
        demo_usage(&o, "--optim must be sgd, adam or adamw");
    if (o.stop_after && !o.save) demo_usage(&o, "--stop-after needs --save FILE to resume from");
    if (o.load && o.resume) demo_usage(&o, "--load (the weights) or --resume (the whole run), not both");
    if (o.threads < 0) demo_usage(&o, "--threads must be >= 1 (0: as many as the machine has)");
    if (o.threads > 0) tg_set_threads(o.threads);
    if (!o.allreduce) o.allreduce = "reproducible";
    if (strcmp(o.allreduce, "reproducible") && strcmp(o.allreduce, "fast"))
        demo_usage(&o, "--allreduce must be reproducible or fast");
    if (o.save_ranks && !o.save) demo_usage(&o, "--save-ranks needs --save FILE");
    return o;
}

void demo_export_onnx(const demo_options *o, tg_model *m) {
    if (!o->onnx) return;
    int rc = tg_onnx_export(m, 4, (const int[]){1, 1, 28, 28}, o->onnx);
    if (rc < 0) demo_die(o, "--onnx", rc == TG_ERR_IO ? "a directory that exists and can be written?" : NULL);
    printf("wrote %s: the model as ONNX (opset 17, batch of any size); open it in Netron or run it in ONNX Runtime\n",
           o->onnx);
}

void demo_mpi_start(demo_options *o, int *argc, char ***argv) {
    if (!tg_mpi_launched()) return;
    if (!tg_mpi_available()) {
        tg_fail(TG_ERR_ARG, "started by mpirun, and tapegrad was built without MPI");
        demo_die(o, "MPI", "build with meson setup -Dmpi=enabled (libopenmpi-dev installed)");
    }
    if (!(o->mpi = tg_mpi_init(argc, argv, strcmp(o->allreduce, "fast") ? TG_MPI_REPRODUCIBLE : TG_MPI_FAST)))
        demo_die(o, "MPI", NULL);
    /* one voice: rank 0's output; the others' errors still reach stderr */
    if (!tg_mpi_writer(o->mpi) && !freopen("/dev/null", "w", stdout)) demo_die(o, "MPI", NULL);
}

void demo_mpi_finish(demo_options *o) {
    tg_mpi_finalize(o->mpi);
    o->mpi = NULL;
}

void demo_data(const demo_options *o, float mean, float std, const char *hint, tg_dataset **train, tg_dataset **test) {
    if (!(*train = tg_dataset_new(o->data, "train", o->limit, mean, std))) demo_die(o, "training data", hint);
    if (!(*test = tg_dataset_new(o->data, "t10k", o->test_limit, mean, std))) demo_die(o, "test data", hint);
    const tg_dataset *a = *train, *b = *test;
    if (a->h != 28 || a->w != 28 || b->h != 28 || b->w != 28 || a->classes > 10) {
        tg_fail(TG_ERR_FORMAT, "%s holds %dx%d images in %d classes", o->data, a->h, a->w, a->classes);
        demo_die(o, "data", "the nets take 28x28 images and 10 classes");
    }
}

// ----------------------------------------------------------------------------
// progress: one live line on a terminal, a plain line every 10% otherwise

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void progress(int epoch, int epochs, int step, int steps, double loss, double acc, double ips, double left,
                     bool tty) {
    if (tty)
        printf("\repoch %d/%d  step %d/%d  loss %.4f  acc %.2f%%  %.0f img/s  %.0fs left   ", epoch, epochs, step,
               steps, loss, 100 * acc, ips, left);
    else
        printf("epoch %d/%d step %d/%d loss %.4f acc %.2f%% %.0f img/s %.0fs left\n", epoch, epochs, step, steps, loss,
               100 * acc, ips, left);
    fflush(stdout);
}

// ----------------------------------------------------------------------------
// evaluation: accuracy on a dataset, predictions kept for the pictures

static double evaluate(const demo_options *o, tg_model *m, const tg_dataset *ds, int32_t *pred, double *loss) {
    tg_eval e = {.pred = pred};
    if (tg_model_evaluate(m, ds, 100, &e) < 0) demo_die(o, "evaluation", NULL);
    if (loss) *loss = e.loss;
    return e.accuracy;
}

// ----------------------------------------------------------------------------
// a look inside two steps: TG_TRACE=FILE (the timeline, Chrome trace-event JSON) of one and
// TG_TAPE_DUMP=FILE (the tape dump) of the next, so that writing the dump is not on the timeline;
// with --report both in its directory

/* The step the timeline shows: the 11th of the run (or of a resumed run's rest), so that first
 * touches of memory are over and the times are a step's, or TG_LOOK_STEP=N (from 0); the last if
 * the run is shorter. The dump is of the step after it (or of the same, the last). */
static int look_step(const demo_options *o, int start, int total) {
    const char *e = getenv("TG_LOOK_STEP");
    char *end = NULL;
    long n = e ? strtol(e, &end, 10) : start + 10;
    if (e && (!*e || *end || n < 0)) demo_usage(o, "TG_LOOK_STEP must be a step number (from 0)");
    return n < total ? (int)n : total - 1;
}

static bool look_wanted(const demo_options *o) {
    return tg_mpi_writer(o->mpi) && (o->report || getenv("TG_TAPE_DUMP") || getenv("TG_TRACE"));
}

/* Writes the tape with write() to $env, and to DIR/name with --report. */
static void look_write(const demo_options *o, const tg_tape *t, int step, int total,
                       int (*write)(const tg_tape *, FILE *),
                       const char *env, const char *name, const char *what) {
    char path[4096];
    const char *paths[2] = {getenv(env), NULL};
    if (!tg_mpi_writer(o->mpi)) return; /* rank 0 writes */
    if (o->report) snprintf(path, sizeof path, "%s/%s", o->report, name), paths[1] = path;
    for (int i = 0; i < 2; i++) {
        if (!paths[i] || !paths[i][0]) continue;
        FILE *f = fopen(paths[i], "w");
        if (!f) tg_fail(TG_ERR_IO, "cannot write %s: %s", paths[i], strerror(errno));
        if (!f || write(t, f) < 0 || fclose(f) != 0) demo_die(o, env, "give a writable file");
        printf("wrote the %s of step %d of %d to %s\n", what, step + 1, total, paths[i]);
    }
}

// --report DIR: the run log, and at the end what looked wrong in it

static tg_runlog *report_open(const demo_options *o, const tg_model *m, int steps) {
    if (!o->report || !tg_mpi_writer(o->mpi)) return NULL;
    if (mkdir(o->report, 0777) < 0 && errno != EEXIST) {
        tg_fail(TG_ERR_IO, "cannot make the directory %s: %s", o->report, strerror(errno));
        demo_die(o, "--report", "give a directory that can be written");
    }
    char path[4096], extra[512];
    snprintf(path, sizeof path, "%s/run.jsonl", o->report);
    snprintf(extra, sizeof extra, "\"net\":\"%s\",\"batch\":%d,\"epochs\":%d,\"steps_per_epoch\":%d,\"optim\":\"%s\","
             "\"lr\":%g,\"threads\":%d,\"precision\":\"%s\",\"seed\":%llu", o->net ? o->net : o->prog, o->batch,
             o->epochs, steps, o->optim, (double)o->lr, tg_get_threads(), tg_get_float32_matmul_precision(),
             (unsigned long long)o->seed);
    /* about 25 step records however long the run (at most every 50 steps), so a short run has curves too */
    int every = steps * o->epochs / 25;
    tg_runlog *r = tg_runlog_new(path, m, extra, (tg_runlog_opts){.every = every < 1 ? 1 : every > 50 ? 50 : every});
    if (!r) demo_die(o, "--report", "give a directory that can be written");
    return r;
}

static void report_close(const demo_options *o, tg_runlog *r) {
    if (!r) return;
    tg_finding f[32];
    int n = tg_runlog_findings(r, f, 32);
    if (n == 0) printf("diagnosis: nothing looked wrong\n");
    for (int i = 0; i < n && i < 32; i++)
        printf("diagnosis: %s %s%s%s (step %lld): %s\n    try: %s\n", f[i].severity, f[i].kind,
               *f[i].layer ? " in " : "", f[i].layer, (long long)f[i].step, f[i].message, f[i].remedy);
    if (tg_runlog_close(r) < 0) demo_die(o, "--report", NULL);
    printf("wrote %s/run.jsonl\n", o->report);
}

// ----------------------------------------------------------------------------
// the loop

/* Everything a run is, as named tensors, so a checkpoint resumes it exactly: the model's
 * parameters and buffers, the optimizer's moments and step counts, the schedule's position,
 * then the loop's own: the steps taken, the tape's random state (dropout's masks) and what
 * the run was (batch, images, epochs, seed) so that a resume with other settings is refused.
 * The data order needs nothing more: each epoch's order comes from the seed and the epoch. */
enum { RUN_STEP, RUN_RNG, RUN_BATCH = RUN_RNG + 4, RUN_N, RUN_EPOCHS, RUN_SEED, RUN_LEN = RUN_SEED + 4 };

/* a 64-bit value in four floats of 16 bits each: each exact */
static void put64(float *f, uint64_t v) {
    for (int i = 0; i < 4; i++) f[i] = (float)((v >> (16 * i)) & 0xffff);
}
static uint64_t get64(const float *f) {
    uint64_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint64_t)f[i] << (16 * i);
    return v;
}

/* The loop's record as a checkpoint gave it: whole numbers in range (a float converted to
 * an int out of range is undefined), or an error naming the file. */
static int check_run(const char *path, const float *r) {
    bool ok = true;
    for (int i = RUN_BATCH; i <= RUN_EPOCHS; i++) ok &= r[i] >= 0 && r[i] <= 2147483520.0f && r[i] == floorf(r[i]);
    for (int i = 0; i < 4; i++)
        ok &= r[RUN_RNG + i] >= 0 && r[RUN_RNG + i] <= 65535 && r[RUN_RNG + i] == floorf(r[RUN_RNG + i]) &&
              r[RUN_SEED + i] >= 0 && r[RUN_SEED + i] <= 65535 && r[RUN_SEED + i] == floorf(r[RUN_SEED + i]);
    /* a step count a float holds exactly */
    ok &= r[RUN_STEP] >= 0 && r[RUN_STEP] <= 16777216.0f && r[RUN_STEP] == floorf(r[RUN_STEP]);
    return ok ? 0 : tg_fail(TG_ERR_FORMAT, "%s: train.run does not hold a run's record (step %g)", path,
                            (double)r[RUN_STEP]);
}

/* --save: rank 0 writes the file. With --save-ranks every rank also writes FILE.rankR: the model, the
 * optimizer and the schedule without the loop's record (in fast mode its random state is the rank's
 * own), so that the ranks' files must be the same byte for byte. */
static int save_run(const demo_options *o, tg_tensor **ck, int nck, const char *table) {
    int rank = tg_mpi_rank(o->mpi);
    if (rank == 0 && tg_safetensors_save(o->save, ck, nck, table) < 0) return -1;
    if (!o->save_ranks) return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s.rank%d", o->save, rank);
    return tg_safetensors_save(path, ck, nck - 1, table); /* the record is last */
}

static tg_optim *make_optimizer(const demo_options *o, tg_model *m) {
    tg_tensor **params;
    int n = tg_model_params(m, &params), nn;
    tg_tensor **decay = malloc((size_t)n * sizeof *decay), **no_decay = malloc((size_t)n * sizeof *no_decay);
    int nd = tg_params_split_decay(params, n, decay, no_decay, &nn);
    tg_optim *opt = NULL;
    if (!strcmp(o->optim, "sgd"))
        opt = tg_optim_sgd(decay, nd, (tg_sgd_opts){o->lr, o->momentum, 0, o->weight_decay, o->nesterov});
    else {
        tg_adam_opts a = !strcmp(o->optim, "adamw") ? TG_ADAMW(o->lr) : TG_ADAM(o->lr);
        a.weight_decay = o->weight_decay;
        opt = tg_optim_adam(decay, nd, a);
    }
    /* biases and batch norm's weights and biases: no weight decay, as PyTorch users configure */
    if (!opt || (nn && tg_optim_add_group(opt, no_decay, nn, o->lr, 0) < 0)) demo_die(o, "optimizer", NULL);
    free(decay), free(no_decay);
    return opt;
}

double demo_train(const demo_options *o, tg_model *m, const tg_dataset *train, const tg_dataset *test, int32_t *pred) {
    tg_optim *opt = make_optimizer(o, m);
    int steps = (train->n + o->batch - 1) / o->batch, total = steps * o->epochs;
    /* warm up, then cosine decay to 0 at the last step; a short run (a slice, one epoch) warms
     * up for at most a fifth of it, so that it still decays */
    int warmup = o->warmup < total / 5 ? o->warmup : total / 5 > 1 ? total / 5 : 1;
    tg_sched *sched = tg_sched_new(opt, (tg_sched_opts){.kind = TG_SCHED_COSINE, .warmup = warmup,
                                                        .steps = total - warmup > 1 ? total - warmup : 1});
    if (!sched) demo_die(o, "schedule", NULL);
    tg_tensor **mstate, **ostate, **sstate, *run = tg_tensor_new(1, (int[]){RUN_LEN});
    tg_tensor_set_name(run, "train.run");
    int nm = tg_model_state(m, &mstate), no = tg_optim_state(opt, &ostate), ns = tg_sched_state(sched, &sstate);
    int nck = nm + no + ns + 1;
    tg_tensor **ck = malloc((size_t)nck * sizeof *ck);
    memcpy(ck, mstate, (size_t)nm * sizeof *ck);
    memcpy(ck + nm, ostate, (size_t)no * sizeof *ck);
    memcpy(ck + nm + no, sstate, (size_t)ns * sizeof *ck);
    ck[nck - 1] = run;

    tg_tape *t = tg_tape_new();
    tg_tape_seed(t, o->seed);
    int start = 0; /* global steps already taken */
    if (o->load && tg_checkpoint_load_prefix(o->load, ck, nm) < 0) demo_die(o, "--load", "was it saved with the same net?");
    if (o->resume) {
        if (tg_checkpoint_load(o->resume, ck, nck) < 0)
            demo_die(o, "--resume", "was it saved by this demo with the same --net and --optim?");
        float *r = run->data;
        if (check_run(o->resume, r) < 0) demo_die(o, "--resume", NULL);
        if ((int)r[RUN_BATCH] != o->batch || (int)r[RUN_N] != train->n || (int)r[RUN_EPOCHS] != o->epochs ||
            get64(r + RUN_SEED) != o->seed) {
            tg_fail(TG_ERR_ARG, "%s was saved by a run of batch %d, %d images, %d epochs, seed %llu; this one is batch "
                    "%d, %d images, %d epochs, seed %llu", o->resume, (int)r[RUN_BATCH], (int)r[RUN_N],
                    (int)r[RUN_EPOCHS], (unsigned long long)get64(r + RUN_SEED), o->batch, train->n, o->epochs,
                    (unsigned long long)o->seed);
            demo_die(o, "--resume", "resume with the settings of the run that saved it");
        }
        start = (int)r[RUN_STEP];
        tg_tape_seed(t, get64(r + RUN_RNG));
        if (tg_sched_apply(sched) < 0) demo_die(o, "--resume", NULL);
    }
    tg_mpi *mpi = o->mpi;
    bool fast = mpi && tg_mpi_get_mode(mpi) == TG_MPI_FAST;
    /* fast mode: dropout's masks from a stream of each process's own (rank 0's is the saved one) */
    if (fast) tg_tape_seed(t, tg_tape_rng_state(t) ^ (uint64_t)tg_mpi_rank(mpi) * 0xd1b54a32d192ed03ull);
    tg_tensor **params;
    int nparams = tg_model_params(m, &params);
    /* the model's table: printed, and the checkpoints' description (safetensors' __metadata__) */
    char *table = NULL;
    size_t table_len = 0;
    FILE *mem = open_memstream(&table, &table_len);
    if (!mem || tg_model_print(m, mem, 4, (int[]){1, 1, 28, 28}) < 0 || fclose(mem) != 0) demo_die(o, "model", NULL);
    fputs(table, stdout);
    printf("%s: %lld parameters; %d training and %d test images from %s; %s, batch %d, lr %g, %d epochs%s, "
           "%d threads%s\n",
           o->net ? o->net : o->prog, (long long)tg_model_param_count(m), train->n, test->n, o->data, o->optim,
           o->batch, (double)o->lr, o->epochs, o->augment ? ", augmented" : "", tg_get_threads(),
           strcmp(tg_get_float32_matmul_precision(), "medium") ? "" : ", precision medium");
    if (mpi)
        printf("%d processes x %d threads, %s all-reduce (rank r takes whole chunks of each batch)\n",
               tg_mpi_size(mpi), tg_get_threads(), fast ? "fast" : "reproducible");
    if (start) printf("resuming %s after step %d of %d (epoch %d)\n", o->resume, start, total, start / steps + 1);

    /* what the run is, for --save (a resumed run's record said the same, checked above) */
    run->data[RUN_BATCH] = (float)o->batch, run->data[RUN_N] = (float)train->n;
    run->data[RUN_EPOCHS] = (float)o->epochs, put64(run->data + RUN_SEED, o->seed);
    tg_runlog *log = report_open(o, m, steps);
    int *perm = malloc((size_t)train->n * sizeof *perm);
    int32_t *labels = malloc((size_t)o->batch * sizeof *labels), *guess = malloc((size_t)o->batch * sizeof *guess);
    bool tty = isatty(fileno(stdout)) && !mpi; /* mpirun gives rank 0 a terminal of its own, whatever it writes to */
    double t0 = now(), acc = 0, loss_sum = 0, seen = 0, right = 0, te = now();
    int look = look_step(o, start, total), dump_at = look + 1 < total ? look + 1 : look;
    for (int step = start; step < total; step++) {
        int epoch = step / steps, s = step % steps;
        if (s == 0 || step == start) {
            tg_permutation(perm, train->n, o->seed + (uint64_t)epoch);
            loss_sum = seen = right = 0, te = now();
        }
        int b = train->n - s * o->batch < o->batch ? train->n - s * o->batch : o->batch;
        if (b >= 2) { /* batch norm needs two samples */
            if (step == look && look_wanted(o) && tg_tape_set_trace(t, true) < 0) demo_die(o, "TG_TRACE", NULL);
            /* with MPI this process's share: images [first, first + n) of the global batch */
            int first = 0, n = b;
            if (mpi && (tg_mpi_share(mpi, b, &first, &n) < 0 || tg_mpi_attach(mpi, t, b) < 0))
                demo_die(o, "MPI", "use at most as many processes as the batch has chunks (16 for 16 images or more)");
            tg_tape_span_begin(t, "batch");
            tg_tensor *x = tg_tensor_tape(t, 4, (int[]){n, 1, 28, 28});
            /* each epoch's distortions from the seed and the epoch: nothing to save for a resume */
            if (!x || tg_dataset_batch_augment(train, perm, s * o->batch + first, x, labels,
                                               o->augment ? &o->aug : NULL,
                                               o->seed * 0x9e3779b97f4a7c15ull + (uint64_t)epoch) < 0)
                demo_die(o, "batch", NULL);
            tg_tape_span_end(t);
            tg_tensor *logits = tg_model_forward(m, t, x);
            tg_tensor *loss = tg_cross_entropy(t, logits, labels);
            if (!loss || tg_backward(t, loss) < 0) demo_die(o, "training step", NULL);
            if (mpi && tg_mpi_allreduce_grads(mpi, params, nparams, b) < 0) demo_die(o, "MPI", NULL);
            if (!isfinite(loss->data[0])) { /* name the weight that went bad, if one did */
                if (tg_model_check_finite(m) == 0)
                    tg_fail(TG_ERR_NONFINITE, "the loss is %g at epoch %d, step %d", (double)loss->data[0], epoch + 1, s);
                demo_die(o, "training step", "lower --lr, or check the data");
            }
            tg_argmax(logits, guess);
            int hits = 0;
            for (int i = 0; i < n; i++) hits += guess[i] == labels[i];
            double step_loss = loss->data[0];
            if (mpi) { /* the global batch's: reproducible, every process's loss is it; fast, its share's */
                double v[2] = {fast ? step_loss * n : tg_mpi_writer(mpi) ? step_loss * b : 0, hits};
                if (tg_mpi_sum(mpi, v, 2) < 0) demo_die(o, "MPI", NULL);
                step_loss = v[0] / b, hits = (int)v[1];
            }
            /* the log reads the step from the tape: after backward, before the step changes the weights */
            tg_tape_span_begin(t, "run log");
            if (log && tg_runlog_step(log, t, step, step_loss, (double)hits / b, tg_optim_lr(opt, 0)) < 0)
                demo_die(o, "--report", NULL);
            tg_tape_span_end(t);
            if (step == dump_at) { /* before the optimizer's step, which zeroes the gradients the dump shows */
                tg_tape_span_begin(t, "tape dump");
                look_write(o, t, step, total, tg_tape_dump, "TG_TAPE_DUMP", "tape.txt", "tape");
                tg_tape_span_end(t);
            }
            tg_tape_span_begin(t, "optimizer step");
            if (tg_optim_step(opt) < 0) demo_die(o, "training step", "lower --lr, or check the data"); /* a NaN or Inf gradient */
            tg_optim_zero_grad(opt);
            tg_tape_span_end(t);
            if (step == look) { /* the timeline ends with the optimizer's step */
                look_write(o, t, step, total, tg_tape_trace, "TG_TRACE", "trace.json", "timeline");
                tg_tape_set_trace(t, false);
            }
            loss_sum += step_loss * b, seen += b, right += hits;
            tg_tape_reset(t);
        }
        if (tg_sched_step(sched) < 0) demo_die(o, "schedule", NULL);
        if (seen > 0 && ((tty && (s % 10 == 0 || s == steps - 1)) || (!tty && (s + 1) % (steps / 10 + 1) == 0))) {
            double ips = seen / (now() - te), done = step + 1 - start;
            progress(epoch + 1, o->epochs, s + 1, steps, loss_sum / seen, right / seen, ips,
                     (now() - t0) / done * (total - step - 1), tty);
        }
        /* where the run stands after this step, for --save */
        run->data[RUN_STEP] = (float)(step + 1);
        put64(run->data + RUN_RNG, tg_tape_rng_state(t));
        if (s == steps - 1) {
            if (tty) printf("\n");
            double test_loss = 0;
            acc = evaluate(o, m, test, pred, &test_loss);
            if (log && tg_runlog_test(log, step + 1, epoch + 1, acc, test_loss) < 0) demo_die(o, "--report", NULL);
            printf("epoch %d: train loss %.4f, test accuracy %.2f%% (%.1f s)\n", epoch + 1,
                   seen > 0 ? loss_sum / seen : 0, 100 * acc, now() - t0);
            if (o->save && save_run(o, ck, nck, table) < 0) demo_die(o, "--save", NULL);
        }
        if (o->stop_after && step + 1 == o->stop_after && step + 1 < total) {
            if (s != steps - 1 && save_run(o, ck, nck, table) < 0) demo_die(o, "--save", NULL);
            printf("stopped after step %d of %d; go on with --resume %s\n", step + 1, total, o->save);
            acc = -1;
            break;
        }
    }
    if (o->epochs == 0 || (start == total && total > 0)) acc = evaluate(o, m, test, pred, NULL);
    report_close(o, log);

    free(perm), free(labels), free(guess), free(ck), free(table);
    tg_tensor_free(run);
    tg_tape_free(t);
    tg_sched_free(sched);
    tg_optim_free(opt);
    return acc;
}
