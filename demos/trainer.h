/* trainer.h: what the training demos (mnist, fashion) share: options, the
 * training loop (SGD with a linear warm-up and cosine decay, checkpoints,
 * progress), evaluation. Each demo brings its data, its net and its pictures. */
#ifndef DEMO_TRAINER_H
#define DEMO_TRAINER_H

#include "tapegrad_nn.h"

typedef struct {
    const char *prog;                         /* the demo's name, for messages */
    const char *usage;                        /* its options, for --help */
    const char *data, *net, *save, *load, *out;
    int epochs, batch, threads, limit, test_limit, warmup;
    float lr, momentum, weight_decay;
    bool nesterov;
    uint64_t seed;
} demo_options;

/* Parses the options every training demo takes over the defaults in o (a
 * usage error exits 2). */
demo_options demo_parse(int argc, char **argv, demo_options o);
/* "<prog>: <what>: <tg_last_error()>" and a hint, then exit(1). */
_Noreturn void demo_die(const demo_options *o, const char *what, const char *hint);
_Noreturn void demo_usage(const demo_options *o, const char *msg);
/* Loads <data>/{train,t10k} as 28x28 images in at most 10 classes, or dies with hint. */
void demo_data(const demo_options *o, float mean, float std, const char *hint, tg_dataset **train, tg_dataset **test);
/* Prints the model's summary and the run's settings, trains m on train for
 * o->epochs epochs (testing after each, saving to o->save if set, starting
 * from o->load if set) and returns the last test accuracy; pred[test->n]
 * receives the last predictions. TG_TAPE_DUMP=FILE writes the first step's tape. */
double demo_train(const demo_options *o, tg_model *m, const tg_dataset *train, const tg_dataset *test, int32_t *pred);

#endif
