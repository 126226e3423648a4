/* A dirty-set visitor shared by the state tests (test_store_memory.c,
 * test_shard.c): it records what a commit's visit saw, "k=v" for a value
 * and "k-" for a tombstone, space-separated in visit order, and hands each
 * key on to next (when set), e.g. into a RocksDB WriteBatch. */
#ifndef MPH_TEST_DIRTY_VISIT_H
#define MPH_TEST_DIRTY_VISIT_H

#include <stdio.h>
#include <string.h>

#include "state/store_memory.h"

typedef struct visit {
    char seen[256];
    mph__mstore_dirty_cb next; /* NULL: record only */
    void *next_opaque;
} visit_t;

static inline mph_err_t record_visit(void *opaque, const void *key,
                                     size_t klen, const void *val,
                                     size_t vlen, bool deleted)
{
    visit_t *v = opaque;
    size_t n = strlen(v->seen);
    snprintf(v->seen + n, sizeof v->seen - n, "%s%.*s%s%.*s", n ? " " : "",
             (int)klen, (const char *)key, deleted ? "-" : "=", (int)vlen,
             val ? (const char *)val : "");
    return v->next ? v->next(v->next_opaque, key, klen, val, vlen, deleted)
                   : MPH_OK;
}

#endif
