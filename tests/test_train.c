/* test_train.c: a small MLP learns two interleaved spirals to a low loss. */
#include "check.h"
#include "tapegrad.h"
#include <math.h>
#include <stdlib.h>

#define N 200

static float uniform(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)(*s >> 40) / 16777216.0f;
}

int main(void) {
    /* two spirals, one turn and a half each */
    static float pts[N][2];
    static int32_t labels[N];
    uint64_t s = 7;
    for (int i = 0; i < N; i++) {
        int c = i % 2;
        float r = (float)(i / 2) / (N / 2), a = 3.0f * 3.14159265f * r + c * 3.14159265f;
        pts[i][0] = r * cosf(a) + 0.02f * (uniform(&s) - 0.5f);
        pts[i][1] = r * sinf(a) + 0.02f * (uniform(&s) - 0.5f);
        labels[i] = c;
    }
    const int H = 64;
    tg_tensor *w1 = tg_param_new(2, (int[]){H, 2}), *b1 = tg_param_new(1, (int[]){H});
    tg_tensor *w2 = tg_param_new(2, (int[]){H, H}), *b2 = tg_param_new(1, (int[]){H});
    tg_tensor *w3 = tg_param_new(2, (int[]){2, H}), *b3 = tg_param_new(1, (int[]){2});
    tg_tensor *ps[] = {w1, b1, w2, b2, w3, b3};
    float *vel[6];
    for (int k = 0; k < 6; k++) {
        float fan_in = ps[k]->ndim == 2 ? (float)ps[k]->shape[1] : 1.0f;
        for (int64_t i = 0; i < ps[k]->size; i++)
            ps[k]->data[i] = ps[k]->ndim == 2 ? (2 * uniform(&s) - 1) * sqrtf(6.0f / fan_in) : 0;
        vel[k] = calloc((size_t)ps[k]->size, sizeof(float));
    }
    tg_tape *t = tg_tape_new();
    float first = 0, last = 0;
    for (int step = 0; step < 1500; step++) {
        tg_tensor *x = tg_tensor_tape(t, 2, (int[]){N, 2});
        for (int i = 0; i < N; i++) x->data[2 * i] = pts[i][0], x->data[2 * i + 1] = pts[i][1];
        tg_tensor *h = tg_tanh(t, tg_linear(t, x, w1, b1));
        h = tg_relu(t, tg_linear(t, h, w2, b2));
        tg_tensor *loss = tg_cross_entropy(t, tg_linear(t, h, w3, b3), labels);
        CHECK(loss && tg_backward(t, loss) == 0);
        if (!loss) break;
        if (step == 0) first = loss->data[0];
        last = loss->data[0];
        for (int k = 0; k < 6; k++) {
            for (int64_t i = 0; i < ps[k]->size; i++) {
                vel[k][i] = 0.9f * vel[k][i] + ps[k]->grad[i];
                ps[k]->data[i] -= 0.05f * vel[k][i];
            }
            tg_tensor_zero_grad(ps[k]);
        }
        tg_tape_reset(t);
    }
    printf("spirals: loss %.4f -> %.4f\n", first, last);
    CHECK(first > 0.5f);
    CHECK(last < 0.05f);
    for (int k = 0; k < 6; k++) tg_tensor_free(ps[k]), free(vel[k]);
    tg_tape_free(t);
    CHECK_DONE();
}
