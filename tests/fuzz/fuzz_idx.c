/* fuzz_idx.c: libFuzzer target for the IDX loader (plain and gzip). */
#include "tapegrad_nn.h"
#include <stdio.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/tg_fuzz_idx_%d", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    tg_idx idx;
    if (tg_idx_load(&idx, path) == 0) {
        /* a load that succeeds holds exactly what its header says */
        int64_t n = 1;
        for (int i = 0; i < idx.ndim; i++) n *= idx.shape[i];
        if (n != idx.size) __builtin_trap();
        tg_idx_release(&idx);
    }
    unlink(path);
    return 0;
}
