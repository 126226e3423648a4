#include <stdlib.h>

#include "runtime/msg.h"

mph__msg_t *mph__msg_new(int kind, int worker, size_t n)
{
    mph__msg_t *m = calloc(1, sizeof *m + n * sizeof m->tp[0]);
    if (m) {
        m->kind = kind;
        m->worker = worker;
        m->n = n;
    }
    return m;
}

void mph__msg_free(mph__msg_t *msg)
{
    free(msg);
}
