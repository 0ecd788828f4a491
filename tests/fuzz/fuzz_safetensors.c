/* fuzz_safetensors.c: libFuzzer target for the safetensors loader (cJSON, then the checks), into a model-shaped list. */
#include "tapegrad_nn.h"
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static tg_tensor *ts[3];
    if (!ts[0]) {
        ts[0] = tg_tensor_new(2, (int[]){3, 4}), tg_tensor_set_name(ts[0], "0.weight");
        ts[1] = tg_tensor_new(1, (int[]){3}), tg_tensor_set_name(ts[1], "0.bias");
        ts[2] = tg_tensor_new(0, NULL), tg_tensor_set_name(ts[2], "sgd.steps");
    }
    char path[64];
    snprintf(path, sizeof path, "/tmp/tg_fuzz_st_%d", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    float before[12];
    memcpy(before, ts[0]->data, sizeof before);
    /* a failed load must leave the tensors as they were */
    if (tg_safetensors_load(path, ts, 3) < 0 && memcmp(before, ts[0]->data, sizeof before) != 0) __builtin_trap();
    unlink(path);
    return 0;
}
