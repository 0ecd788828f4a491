/* dist.c: data-parallel training over MPI (tapegrad_mpi.h). The engine knows no
 * MPI: reproducible mode hands the tape a batch split whose allgather is
 * MPI_Allgather; fast mode all-reduces the gradients after backward. Without MPI
 * in the build every call but tg_mpi_launched fails saying so. */
#include "tapegrad_mpi.h"
#include "tapegrad_op.h"
#include "nn_internal.h"
#include <stdlib.h>
#include <string.h>

bool tg_mpi_launched(void) {
    /* what Open MPI's mpirun (and PMIx-based launchers) put in each process's environment */
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"};
    for (int i = 0; i < 3; i++)
        if (getenv(vars[i])) return true;
    return false;
}

bool tg_mpi_writer(const tg_mpi *d) { return !d || tg_mpi_rank(d) == 0; }

#ifdef TG_HAVE_MPI
#include <mpi.h>

struct tg_mpi {
    int rank, size;
    tg_mpi_mode mode;
    int err;                   /* an MPI error inside the split's allgather, reported by the next call */
    char err_text[MPI_MAX_ERROR_STRING];
    float *flat;               /* fast mode: every gradient in one buffer */
    size_t flat_len;
};

bool tg_mpi_available(void) { return true; }

/* TG_ERR_IO naming the MPI call and MPI's own words */
static int mpi_fail(const char *who, int rc) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "error %d", rc);
    return tg_fail(TG_ERR_IO, "%s failed: %s", who, text);
}

tg_mpi *tg_mpi_init(int *argc, char ***argv, tg_mpi_mode mode) {
    if (mode != TG_MPI_REPRODUCIBLE && mode != TG_MPI_FAST) {
        tg_fail(TG_ERR_ARG, "mpi_init: unknown mode %d", (int)mode);
        return NULL;
    }
    int on = 0, rc;
    if (MPI_Initialized(&on) == MPI_SUCCESS && !on && (rc = MPI_Init(argc, argv)) != MPI_SUCCESS) {
        mpi_fail("MPI_Init", rc);
        return NULL;
    }
    /* errors come back to us (a message), not MPI's default abort */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    tg_mpi *d = tg__calloc(1, sizeof *d);
    if (!d) {
        tg_fail(TG_ERR_NOMEM, "mpi_init: out of memory");
        return NULL;
    }
    d->mode = mode;
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    return d;
}

void tg_mpi_finalize(tg_mpi *d) {
    if (!d) return;
    tg__free(d->flat);
    tg__free(d);
    int done = 0;
    if (MPI_Finalized(&done) == MPI_SUCCESS && !done) MPI_Finalize();
}

int tg_mpi_rank(const tg_mpi *d) { return d ? d->rank : 0; }
int tg_mpi_size(const tg_mpi *d) { return d ? d->size : 1; }
tg_mpi_mode tg_mpi_get_mode(const tg_mpi *d) { return d ? d->mode : TG_MPI_REPRODUCIBLE; }

/* an error the split's allgather kept, as the caller's failure */
static int pending(tg_mpi *d) {
    if (!d->err) return 0;
    d->err = 0;
    return tg_fail(TG_ERR_IO, "MPI_Allgather of the batch split failed: %s", d->err_text);
}

int tg_mpi_share(const tg_mpi *d, int global, int *first, int *count) {
    if (!d) return tg_fail(TG_ERR_ARG, "mpi_share: d is NULL");
    return tg_batch_split_range(global, d->rank, d->size, first, count);
}

static void allgather(void *ctx, const void *mine, void *all, size_t bytes) {
    tg_mpi *d = ctx;
    int rc = bytes > (size_t)INT32_MAX ? MPI_ERR_COUNT
                                       : MPI_Allgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE,
                                                       MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS && !d->err) {
        int len = 0;
        d->err = rc;
        if (MPI_Error_string(rc, d->err_text, &len) != MPI_SUCCESS) snprintf(d->err_text, sizeof d->err_text, "%d", rc);
    }
}

int tg_mpi_attach(tg_mpi *d, tg_tape *t, int global) {
    if (!d || !t) return tg_fail(TG_ERR_ARG, "mpi_attach: %s is NULL", d ? "the tape" : "d");
    if (pending(d) < 0) return TG_ERR_IO;
    if (d->mode == TG_MPI_FAST) return tg_tape_set_batch_split(t, NULL);
    tg_batch_split s = {.rank = d->rank, .size = d->size, .global = global, .allgather = allgather, .ctx = d};
    return tg_tape_set_batch_split(t, &s);
}

int tg_mpi_allreduce_grads(tg_mpi *d, tg_tensor **params, int n, int global) {
    if (!d || (n && !params) || n < 0) return tg_fail(TG_ERR_ARG, "mpi_allreduce_grads: d or params is NULL");
    if (pending(d) < 0) return TG_ERR_IO;
    if (d->mode == TG_MPI_REPRODUCIBLE || d->size == 1) return 0;
    int first, count;
    if (tg_mpi_share(d, global, &first, &count) < 0) return tg_last_error_code();
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        if (!params[i]) return tg_fail(TG_ERR_ARG, "mpi_allreduce_grads: params[%d] is NULL", i);
        if (params[i]->requires_grad && params[i]->grad) len += (size_t)params[i]->size;
    }
    if (len > (size_t)INT32_MAX) return tg_fail(TG_ERR_ARG, "mpi_allreduce_grads: %zu gradient elements", len);
    if (len > d->flat_len) {
        float *f = tg__realloc(d->flat, len * sizeof *f);
        if (!f) return tg_fail(TG_ERR_NOMEM, "mpi_allreduce_grads: out of memory for %zu floats", len);
        d->flat = f, d->flat_len = len;
    }
    /* this process's mean gradient weighted by its share: the sum is the global batch's mean */
    float share = (float)count / (float)global;
    size_t at = 0;
    for (int i = 0; i < n; i++)
        if (params[i]->requires_grad && params[i]->grad)
            for (int64_t j = 0; j < params[i]->size; j++) d->flat[at++] = params[i]->grad[j] * share;
    int rc = MPI_Allreduce(MPI_IN_PLACE, d->flat, (int)len, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_fail("MPI_Allreduce of the gradients", rc);
    at = 0;
    for (int i = 0; i < n; i++)
        if (params[i]->requires_grad && params[i]->grad)
            for (int64_t j = 0; j < params[i]->size; j++) params[i]->grad[j] = d->flat[at++];
    return 0;
}

int tg_mpi_sum(tg_mpi *d, double *v, int n) {
    if (!d || !v || n < 0) return tg_fail(TG_ERR_ARG, "mpi_sum: d or v is NULL, or n < 0");
    if (pending(d) < 0) return TG_ERR_IO;
    int rc = MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? 0 : mpi_fail("MPI_Allreduce", rc);
}

#else /* built without MPI */

static int no_mpi(const char *who) {
    return tg_fail(TG_ERR_ARG, "%s: tapegrad was built without MPI (meson setup -Dmpi=enabled, with an MPI "
                   "installed)", who);
}
bool tg_mpi_available(void) { return false; }
tg_mpi *tg_mpi_init(int *argc, char ***argv, tg_mpi_mode mode) {
    (void)argc, (void)argv, (void)mode;
    no_mpi("mpi_init");
    return NULL;
}
void tg_mpi_finalize(tg_mpi *d) { (void)d; }
int tg_mpi_rank(const tg_mpi *d) { return (void)d, 0; }
int tg_mpi_size(const tg_mpi *d) { return (void)d, 1; }
tg_mpi_mode tg_mpi_get_mode(const tg_mpi *d) { return (void)d, TG_MPI_REPRODUCIBLE; }
int tg_mpi_share(const tg_mpi *d, int global, int *first, int *count) {
    (void)d, (void)global, (void)first, (void)count;
    return no_mpi("mpi_share");
}
int tg_mpi_attach(tg_mpi *d, tg_tape *t, int global) {
    (void)d, (void)t, (void)global;
    return no_mpi("mpi_attach");
}
int tg_mpi_allreduce_grads(tg_mpi *d, tg_tensor **params, int n, int global) {
    (void)d, (void)params, (void)n, (void)global;
    return no_mpi("mpi_allreduce_grads");
}
int tg_mpi_sum(tg_mpi *d, double *v, int n) {
    (void)d, (void)v, (void)n;
    return no_mpi("mpi_sum");
}
#endif
