/* fuzz_image.c: libFuzzer target for predict's image path after the file is read
 * (the PNG chunk walk, stb_image, the resize, then demos/digit.c's finding of the
 * digit). It takes bytes, not a file of its own, so that nothing in a run
 * depends on a path or a process id. Pictures are bounded at 16,384 pixels, not
 * the library's 64 megapixels: the code is the same, and a 4096x3072 TGA of a
 * few hundred bytes took a second under the sanitizers, so that 6,000 inputs
 * took from 4 to over 15 minutes. */
#include "digit.h"
#include "nn_internal.h"
#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    /* as digit_from_image loads a picture: grey and alpha, at most 512 on its longer side */
    tg_tensor *img =
        tg__image_decode("fuzz", data, size, &(tg_image_opts){.channels = 2, .max_side = 512, .max_pixels = 1 << 14});
    if (!img) return 0;
    for (int64_t i = 0; i < img->size; i++)
        if (!(img->data[i] >= 0 && img->data[i] <= 1)) __builtin_trap();
    float out[784];
    uint8_t pixels[784];
    if (digit_from_tensor("fuzz", img, out, pixels, NULL) == 0)
        for (int i = 0; i < 784; i++)
            if (!isfinite(out[i])) __builtin_trap();
    tg_tensor_free(img);
    return 0;
}
