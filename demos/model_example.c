/* model_example.c: the README's model examples, compiled and run by the tests:
 * a small CNN with a layer and a block of its own, trained for one short
 * epoch, evaluated, saved, and loaded into a fresh model that scores the same.
 * Usage: model_example [MNIST_DIR [CHECKPOINT]] */
#include <stdio.h>
#include <tapegrad_nn.h>

/* PReLU, a layer of one's own: y = relu(x) + a * (x - relu(x)), one slope a per channel */
static tg_tensor *prelu_forward(tg_layer *l, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    tg_tensor *pos = tg_relu(t, x);
    return tg_add(t, pos, tg_mul(t, l->params[0], tg_sub(t, x, pos))); /* a (C,1,1) broadcasts over N, H, W */
}

static tg_layer *prelu(tg_model *m, int channels) {
    tg_layer *l = tg_model_custom(m, "prelu", prelu_forward, NULL);
    tg_tensor *a = tg_layer_param(l, "weight", 3, (int[]){channels, 1, 1}, TG_PARAM_ZEROS);
    for (int c = 0; a && c < channels; c++) a->data[c] = 0.25f; /* PyTorch's nn.PReLU starts at 0.25 */
    return l;
}

/* Squeeze-and-excitation, a block: x * sigmoid(fc2(relu(fc1(mean of x over H, W)))), a gate per channel */
static tg_tensor *se_forward(tg_layer *b, tg_tape *t, tg_tensor *x, bool training) {
    (void)training;
    tg_tensor *s = tg_layer_forward_act(b->children[0], t, tg_global_avg_pool(t, x), NULL, TG_ACT_RELU);
    s = tg_sigmoid(t, tg_layer_forward(b->children[1], t, s));
    return tg_mul(t, x, tg_reshape(t, s, 4, (int[]){x->shape[0], x->shape[1], 1, 1}));
}

static tg_model *net(void) {
    tg_model *m = tg_model_new(1);
    tg_model_conv2d(m, 1, 16, 3, 1, 1, false);
    tg_model_batch_norm(m, 16);
    prelu(m, 16);
    tg_model_begin(m, "squeeze_excite", se_forward, NULL); /* the layers until tg_model_end are the block's */
    tg_layer_set_name(tg_model_linear(m, 16, 4, true), "fc1");
    tg_layer_set_name(tg_model_linear(m, 4, 16, true), "fc2");
    tg_model_end(m);
    tg_model_max_pool(m, 2, 2);
    tg_model_flatten(m);
    tg_model_linear(m, 16 * 14 * 14, 10, true);
    return m;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "data/mnist", *path = argc > 2 ? argv[2] : "example.ckpt";
    tg_dataset *train = tg_dataset_new(dir, "train", 4096, TG_MNIST_MEAN, TG_MNIST_STD);
    tg_dataset *test = tg_dataset_new(dir, "t10k", 1000, TG_MNIST_MEAN, TG_MNIST_STD);
    tg_model *m = net(), *fresh = net();
    if (!train || !test || tg_model_print(m, stdout, 4, (int[]){1, 1, 28, 28}) < 0) goto fail;
    tg_tensor **params, **state, **fresh_state;
    int np = tg_model_params(m, &params), n = tg_model_state(m, &state);
    tg_model_state(fresh, &fresh_state);
    tg_sgd *opt = tg_sgd_new(params, np, (tg_sgd_opts){.lr = 0.05f, .momentum = 0.9f});
    tg_tape *t = tg_tape_new();
    int32_t labels[64];
    for (int start = 0; start + 64 <= train->n; start += 64) { /* one epoch of 64 steps */
        tg_tensor *x = tg_tensor_tape(t, 4, (int[]){64, 1, 28, 28});
        tg_dataset_batch(train, NULL, start, x, labels);
        tg_tensor *loss = tg_cross_entropy(t, tg_model_forward(m, t, x), labels);
        if (!loss || tg_backward(t, loss) < 0 || tg_sgd_step(opt) < 0) goto fail;
        tg_sgd_zero_grad(opt);
        tg_tape_reset(t);
    }
    tg_eval trained = {0}, loaded = {0};
    if (tg_model_evaluate(m, test, 100, &trained) < 0 || tg_checkpoint_save(path, state, n) < 0 ||
        tg_checkpoint_load(path, fresh_state, n) < 0 || tg_model_evaluate(fresh, test, 100, &loaded) < 0)
        goto fail;
    printf("test accuracy %.2f%%, loaded into a fresh model %.2f%%\n", 100 * trained.accuracy, 100 * loaded.accuracy);
    tg_tape_free(t), tg_sgd_free(opt), tg_model_free(m), tg_model_free(fresh);
    tg_dataset_free(train), tg_dataset_free(test);
    return trained.correct == loaded.correct && trained.loss == loaded.loss ? 0 : 1;
fail:
    fprintf(stderr, "model_example: %s\n", tg_last_error());
    return 1;
}
