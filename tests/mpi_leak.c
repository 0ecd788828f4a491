/* mpi_leak.c: for tests/mpi.sh, a leak of tapegrad's own under mpirun: a second tg_mpi is made and
 * never finalized. LeakSanitizer, with Open MPI's own allocations suppressed (tests/lsan-mpi.supp),
 * must still report it; otherwise the suppressions hide too much. */
#include "tapegrad_mpi.h"
#include <stdio.h>

int main(int argc, char **argv) {
    tg_mpi *d = tg_mpi_init(&argc, &argv, TG_MPI_REPRODUCIBLE);
    tg_mpi *lost = d ? tg_mpi_init(NULL, NULL, TG_MPI_FAST) : NULL;
    if (!d || !lost) {
        fprintf(stderr, "mpi_leak: %s\n", tg_last_error());
        return 1;
    }
    printf("mpi_leak: rank %d of %d leaves one tg_mpi behind\n", tg_mpi_rank(lost), tg_mpi_size(lost));
    lost = NULL;
    tg_mpi_finalize(d);
    return 0;
}
