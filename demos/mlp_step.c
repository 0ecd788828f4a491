/* mlp_step.c: the README's example, whole: an MLP built from ops, one SGD step.
 * Build it against an installed tapegrad:
 *   cc mlp_step.c $(pkg-config --cflags --libs tapegrad) -o mlp_step */
#include <math.h>
#include <stdio.h>
#include <tapegrad.h>

int main(void) {
    tg_tensor *w1 = tg_param_new(2, (int[]){64, 2}), *b1 = tg_param_new(1, (int[]){64});
    tg_tensor *w2 = tg_param_new(2, (int[]){2, 64}), *b2 = tg_param_new(1, (int[]){2});
    uint64_t rng = 1;
    for (int i = 0; i < 128; i++) w1->data[i] = tg_rand_normal(&rng) * 0.7f, w2->data[i] = tg_rand_normal(&rng) * 0.1f;

    tg_tape *t = tg_tape_new();
    int32_t labels[32];
    float before = 0;
    for (int step = 0; step < 2; step++) {
        tg_tensor *x = tg_tensor_tape(t, 2, (int[]){32, 2}); /* a batch, owned by the tape */
        for (int i = 0; i < 32; i++) {
            x->data[2 * i] = (float)(i % 8) - 3.5f, x->data[2 * i + 1] = (float)(i / 8) - 1.5f;
            labels[i] = x->data[2 * i] * x->data[2 * i + 1] > 0; /* a quadrant task */
        }
        tg_tensor *h = tg_relu(t, tg_linear(t, x, w1, b1));
        tg_tensor *loss = tg_cross_entropy(t, tg_linear(t, h, w2, b2), labels);
        if (!loss || tg_backward(t, loss) < 0) {
            fprintf(stderr, "%s\n", tg_last_error()); /* names the op and the shapes */
            return 1;
        }
        if (!isfinite(loss->data[0])) { /* stop at the first step that went wrong */
            fprintf(stderr, "the loss is %g\n", (double)loss->data[0]);
            return 1;
        }
        if (step == 0) before = loss->data[0];
        else printf("loss %.4f -> %.4f after one SGD step\n", before, loss->data[0]);
        tg_tensor *ps[] = {w1, b1, w2, b2};
        for (int k = 0; k < 4; k++) {
            for (int64_t i = 0; i < ps[k]->size; i++) ps[k]->data[i] -= 0.1f * ps[k]->grad[i];
            tg_tensor_zero_grad(ps[k]);
        }
        tg_tape_reset(t); /* frees the step's tensors at once */
    }
    tg_tape_free(t);
    tg_tensor_free(w1), tg_tensor_free(b1), tg_tensor_free(w2), tg_tensor_free(b2);
    return 0;
}
