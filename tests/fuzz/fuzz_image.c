/* fuzz_image.c: libFuzzer target for predict's image path after the file is read
 * (the PNG chunk walk, stb_image, then the MNIST preprocessing). It takes bytes, not
 * a file of its own, so that nothing in a run depends on a path or a process id.
 * Pictures are bounded at 65,536 pixels, not the library's 16 megapixels: the
 * code is the same, and a 4096x3072 TGA of a few hundred bytes took a second
 * under the sanitizers, so that 6,000 inputs took from 4 to over 15 minutes. */
#include "nn_internal.h"
#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    float out[784];
    uint8_t pixels[784];
    if (size > 0 && tg__image_bytes_to_mnist("fuzz", data, size, out, pixels, 1 << 16) == 0)
        for (int i = 0; i < 784; i++)
            if (!isfinite(out[i])) __builtin_trap();
    return 0;
}
