/* fuzz_image.c: libFuzzer target for predict's image path (stb_image, then the MNIST preprocessing). */
#include "tapegrad_nn.h"
#include <math.h>
#include <stdio.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/tg_fuzz_img_%d", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    float out[784];
    uint8_t pixels[784];
    if (tg_image_to_mnist(path, out, pixels) == 0)
        for (int i = 0; i < 784; i++)
            if (!isfinite(out[i])) __builtin_trap();
    unlink(path);
    return 0;
}
