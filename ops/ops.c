/* ops.c: the table of every op descriptor, built from TG_OP_LIST. */
#include "ops.h"

const tg_op *const tg_op_table[TG_OP_COUNT] = {
#define X(ID, name) &tg__op_##name,
    TG_OP_LIST(X)
#undef X
};
