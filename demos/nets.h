/* nets.h: the MNIST demo's three nets, shared by mnist, predict and tapedump. */
#ifndef DEMO_NETS_H
#define DEMO_NETS_H

#include "tapegrad_nn.h"

/* "mlp", "lenet" or "resnet" for 1x28x28 inputs and 10 classes; NULL for an unknown name. */
tg_model *net_new(const char *name, uint64_t seed);
extern const char *const net_names[3];

#endif
