/* tapegrad_mpi.h: data-parallel training over MPI. Every process holds the
 * whole model and takes its share of each global batch; gradients are combined
 * so that every process ends each step with the same weights.
 *
 *   reproducible  the tape's batch is split (tg_tape_set_batch_split): every op
 *                 that sums over the batch makes the single-process sums, in the
 *                 same order, so the weights are the single-process run's bit for
 *                 bit at any process count up to the batch's chunk count
 *                 (TG_BATCH_CHUNKS: 16 for a batch of 16 or more); batch norm's
 *                 statistics are the global batch's (SyncBatchNorm, exact)
 *   fast          each process runs its share as a batch of its own, then one
 *                 MPI_Allreduce over every gradient in one flat buffer; batch norm
 *                 normalises with its share's statistics (as DDP without
 *                 SyncBatchNorm) and dropout draws from a stream of its own
 *
 *     tg_mpi *d = tg_mpi_init(&argc, &argv, TG_MPI_REPRODUCIBLE);
 *     per step: tg_mpi_share(d, B, &first, &n);      // this process's images [first, first+n)
 *               tg_mpi_attach(d, t, B);              // before forward
 *               forward, loss, tg_backward on the n images
 *               tg_mpi_allreduce_grads(d, params, np, B);   // fast mode (nothing to do in reproducible)
 *               optimizer step
 *     tg_mpi_finalize(d);
 *
 * The functions exist in every build; built without MPI (meson -Dmpi=disabled,
 * or no MPI found) tg_mpi_init fails saying so. */
#ifndef TAPEGRAD_MPI_H
#define TAPEGRAD_MPI_H

#include "tapegrad.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { TG_MPI_REPRODUCIBLE, TG_MPI_FAST } tg_mpi_mode;
typedef struct tg_mpi tg_mpi;

/* Whether this build has MPI. */
TG_API bool tg_mpi_available(void);
/* Whether the process was started by an MPI launcher (Open MPI's mpirun, or PMIx): decides, before
 * any MPI call, whether a program should call tg_mpi_init at all. */
TG_API bool tg_mpi_launched(void);
/* MPI_Init (argc, argv may be NULL) and the world's rank and size; MPI errors return to tapegrad,
 * which reports them as TG_ERR_IO. NULL (message set) without MPI in the build or on failure. */
TG_API tg_mpi *tg_mpi_init(int *argc, char ***argv, tg_mpi_mode mode);
/* MPI_Finalize and free; NULL does nothing. */
TG_API void tg_mpi_finalize(tg_mpi *d);
TG_API int tg_mpi_rank(const tg_mpi *d);
TG_API int tg_mpi_size(const tg_mpi *d);
TG_API tg_mpi_mode tg_mpi_get_mode(const tg_mpi *d);
/* This process's images of a global batch of global: [*first, *first + *count), whole chunks of
 * it (tg_batch_split_range); fails naming the process counts that work. */
TG_API int tg_mpi_share(const tg_mpi *d, int global, int *first, int *count);
/* Reproducible mode: splits t's batch (a global batch of global images) across the processes;
 * fast mode: no split (t's batch is the process's own). Call before each step's forward. */
TG_API int tg_mpi_attach(tg_mpi *d, tg_tape *t, int global);
/* Fast mode: each parameter's gradient (with requires_grad and a gradient) scaled by this process's
 * share of the global batch, summed over the processes by one MPI_Allreduce over one flat buffer:
 * the global batch's mean gradient, the same on every process. Reproducible mode: nothing (the
 * gradients are already the global batch's). */
TG_API int tg_mpi_allreduce_grads(tg_mpi *d, tg_tensor **params, int n, int global);
/* v[0..n) summed over the processes (MPI_SUM in double), on every process. */
TG_API int tg_mpi_sum(tg_mpi *d, double *v, int n);
/* Whether this process writes the run's files and logs: rank 0 (true without MPI, d NULL). */
TG_API bool tg_mpi_writer(const tg_mpi *d);

#ifdef __cplusplus
}
#endif
#endif
