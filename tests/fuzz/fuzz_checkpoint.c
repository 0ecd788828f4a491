/* fuzz_checkpoint.c: libFuzzer target for the checkpoint loaders, both formats (tapegrad's
 * own and safetensors, told apart by tg_checkpoint_load from the first bytes), into a
 * model-shaped list with a batch norm counter (which a file may lack). Inputs of odd
 * length go through tg_checkpoint_load_prefix (the file may hold more). */
#include "tapegrad_nn.h"
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static tg_tensor *ts[4];
    if (!ts[0]) {
        ts[0] = tg_tensor_new(2, (int[]){3, 4}), tg_tensor_set_name(ts[0], "0.weight");
        ts[1] = tg_tensor_new(1, (int[]){3}), tg_tensor_set_name(ts[1], "0.bias");
        ts[2] = tg_tensor_new(0, NULL), tg_tensor_set_name(ts[2], "1.num_batches_tracked");
        ts[3] = tg_tensor_new(0, NULL), tg_tensor_set_name(ts[3], "sgd.steps");
    }
    char path[64];
    snprintf(path, sizeof path, "/tmp/tg_fuzz_ckpt_%d", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    float before[12];
    memcpy(before, ts[0]->data, sizeof before);
    int rc = size & 1 ? tg_checkpoint_load_prefix(path, ts, 3) : tg_checkpoint_load(path, ts, 4);
    /* a failed load must leave the tensors as they were */
    if (rc < 0 && memcmp(before, ts[0]->data, sizeof before) != 0) __builtin_trap();
    unlink(path);
    return 0;
}
