/* trainer.h: what the training demos (mnist, fashion) share: options, the
 * training loop (SGD, Adam or AdamW; a linear warm-up then cosine decay;
 * checkpoints a run resumes from exactly; augmentation; progress), evaluation.
 * Each demo brings its data, its net and its pictures. */
#ifndef DEMO_TRAINER_H
#define DEMO_TRAINER_H

#include "tapegrad_nn.h"

typedef struct {
    const char *prog;                         /* the demo's name, for messages */
    const char *usage;                        /* its options, for --help */
    const char *data, *net, *save, *load, *resume, *out, *optim;
    const char *report;                       /* --report DIR: the run log DIR/run.jsonl (the demo adds the page) */
    const char *onnx;                         /* --onnx FILE: the trained model exported (demo_export_onnx) */
    int epochs, batch, threads, limit, test_limit, warmup, stop_after;
    float lr, momentum, weight_decay;
    bool nesterov, augment;
    tg_augment aug;                           /* what --augment does */
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
 * o->epochs epochs (testing after each; saving to o->save after each and at
 * --stop-after; the weights from o->load, or everything from o->resume) and
 * returns the last test accuracy; pred[test->n] receives the last
 * predictions. TG_TRACE=FILE writes the timeline of the 11th step (TG_LOOK_STEP=N to choose)
 * and TG_TAPE_DUMP=FILE the tape dump of the next; --report writes both into DIR too. A run stopped
 * with --stop-after N and resumed ends with the same weights, bit for bit, as
 * the run that never stopped. Returns a negative number after --stop-after. */
double demo_train(const demo_options *o, tg_model *m, const tg_dataset *train, const tg_dataset *test, int32_t *pred);
/* --onnx FILE: m exported to ONNX for 28x28 images of one channel, any batch (tg_onnx_export), or die. */
void demo_export_onnx(const demo_options *o, tg_model *m);

#endif
