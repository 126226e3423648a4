/* Table shards: see shard.h. */
#include <stdlib.h>
#include <string.h>

#include "state/shard.h"

/* Frees the layer state above the shard (ext), with what it had due. */
static void drop_ext(mph__shard_t *sh)
{
    if (sh->ext && sh->ext_free)
        sh->ext_free(sh->ext);
    sh->ext = NULL;
    sh->ext_free = NULL;
    sh->ext_flush = NULL;
    sh->ext_due = false;
}

mph__shard_t *mph__shard_new(int table, uint32_t partition, mph__rstore_t *rs,
                             size_t cache_max_keys)
{
    mph__shard_t *sh = calloc(1, sizeof *sh);
    if (!sh)
        return NULL;
    sh->table = table;
    sh->partition = partition;
    sh->rs = rs;
    sh->applied = -1;
    sh->flushed = -1;
    /* In front of RocksDB the map is a cache even when unbounded
     * (cache_max_keys 0: no bound): only a cache records the delete of a
     * key it does not hold, which may be on disk, and rolls back by
     * dropping its dirty entries. */
    sh->mem = rs ? mph__mstore_new_cache(cache_max_keys, 0) : mph__mstore_new();
    if (!sh->mem) {
        free(sh);
        return NULL;
    }
    if (!rs)
        mph__mstore_set_complete(sh->mem); /* the map is the whole shard */
    return sh;
}

void mph__shard_destroy(mph__shard_t *sh)
{
    if (!sh)
        return;
    mph__mstore_destroy(sh->mem);
    free(sh->scratch);
    drop_ext(sh);
    free(sh);
}

mph_err_t mph__shard_get(mph__shard_t *sh, const void *key, size_t klen, const void **val,
                         size_t *vlen)
{
    switch (mph__mstore_lookup(sh->mem, key, klen, val, vlen)) {
    case MPH__MSTORE_PRESENT:
        return MPH_OK;
    case MPH__MSTORE_DELETED:
        return MPH_ERR_NOENT;
    case MPH__MSTORE_ABSENT:
        break;
    }
    if (!sh->rs)
        return MPH_ERR_NOENT;
    void *v = NULL;
    size_t vl = 0;
    mph_err_t err = mph__rstore_get(sh->rs, sh->partition, key, klen, &v, &vl, NULL, 0);
    if (err == MPH_ERR_NOENT && klen <= sizeof sh->miss) {
        /* Absent in memory and on disk: a set of this key that follows
         * creates a fresh entry (see mph__shard_set). */
        memcpy(sh->miss, key, klen);
        sh->miss_len = (uint16_t)klen;
        sh->miss_valid = true;
    }
    if (err)
        return err;
    /* Cache it clean; the returned pointer is our own copy, which stays
     * valid even if the cache evicts the entry. */
    mph__mstore_fill(sh->mem, key, klen, v, vl);
    free(sh->scratch);
    sh->scratch = v;
    sh->scratch_len = vl;
    *val = v;
    *vlen = vl;
    return MPH_OK;
}

/* Lists the shard with its owner the first time it gets dirty. */
static inline void note_dirty(mph__shard_t *sh)
{
    if (sh->listed && !*sh->listed)
        sh->on_dirty(sh->on_dirty_ctx, sh);
}

void mph__shard_touch(mph__shard_t *sh)
{
    sh->ext_due = true;
    note_dirty(sh);
}

mph_err_t mph__shard_ext_flush(mph__shard_t *sh)
{
    if (!sh->ext_due)
        return MPH_OK;
    mph_err_t err = sh->ext && sh->ext_flush ? sh->ext_flush(sh) : MPH_OK;
    if (!err)
        sh->ext_due = false;
    return err;
}

mph_err_t mph__shard_set(mph__shard_t *sh, const void *key, size_t klen, const void *val,
                         size_t vlen)
{
    note_dirty(sh);
    /* Right after a get that found the key neither in memory nor on disk,
     * nothing can have put it on disk since (only a flush of a dirty entry
     * or a recovery does, and neither runs in between): the entry this set
     * creates is fresh, so a delete before the next commit writes no
     * tombstone (mph__mstore_put_fresh). Memory shards know that without
     * help (mph__mstore_set_complete). */
    bool fresh = sh->miss_valid && sh->miss_len == klen && memcmp(sh->miss, key, klen) == 0;
    sh->miss_valid = false;
    return fresh ? mph__mstore_put_fresh(sh->mem, key, klen, val, vlen)
                 : mph__mstore_put(sh->mem, key, klen, val, vlen);
}

mph_err_t mph__shard_delete(mph__shard_t *sh, const void *key, size_t klen)
{
    note_dirty(sh);
    sh->miss_valid = false;
    return mph__mstore_delete(sh->mem, key, klen);
}

size_t mph__shard_dirty(const mph__shard_t *sh)
{
    return mph__mstore_dirty_count(sh->mem);
}

mph_err_t mph__shard_foreach(mph__shard_t *sh, mph__shard_visit_fn fn, void *opaque)
{
    const void *k, *v;
    size_t kl, vl;
    if (!sh->rs) {
        mph__mstore_iter_t it;
        mph__mstore_iter_init(&it, sh->mem);
        while (mph__mstore_iter_next(&it, &k, &kl, &v, &vl)) {
            mph_err_t err = fn(k, kl, v, vl, opaque);
            if (err)
                return err;
        }
        return MPH_OK;
    }
    /* RocksDB in key order; a dirty entry in memory overrides the disk. */
    mph__rstore_iter_t *it = mph__rstore_iter_new(sh->rs, sh->partition, NULL, 0);
    if (!it)
        return MPH_ERR_STORE;
    mph_err_t err = MPH_OK;
    for (mph__rstore_iter_seek_first(it); mph__rstore_iter_valid(it) && !err;
         mph__rstore_iter_next(it)) {
        k = mph__rstore_iter_key(it, &kl);
        const void *mv;
        size_t mvl;
        mph__mstore_found_t f = mph__mstore_lookup(sh->mem, k, kl, &mv, &mvl);
        if (f == MPH__MSTORE_DELETED)
            continue;
        if (f == MPH__MSTORE_PRESENT) {
            err = fn(k, kl, mv, mvl, opaque);
        } else {
            v = mph__rstore_iter_value(it, &vl);
            err = fn(k, kl, v, vl, opaque);
        }
    }
    mph__rstore_iter_destroy(it);
    if (err)
        return err;
    /* Keys written since the last commit that are not on disk yet. */
    mph__mstore_iter_t mit;
    mph__mstore_iter_init(&mit, sh->mem);
    while (mph__mstore_iter_next(&mit, &k, &kl, &v, &vl)) {
        void *dv = NULL;
        size_t dvl;
        if (mph__rstore_get(sh->rs, sh->partition, k, kl, &dv, &dvl, NULL, 0) == MPH_OK) {
            free(dv);
            continue; /* visited above */
        }
        err = fn(k, kl, v, vl, opaque);
        if (err)
            return err;
    }
    return MPH_OK;
}

mph_err_t mph__shard_apply(mph__shard_t *sh, mph__rstore_batch_t *batch, const void *key,
                           size_t klen, const void *val, size_t vlen, int64_t offset)
{
    mph_err_t err;
    sh->miss_valid = false;
    if (sh->rs) {
        /* The cache must not keep a value older than the disk's. */
        mph__mstore_forget(sh->mem, key, klen);
        err = val ? mph__rstore_batch_put(batch, sh->partition, key, klen, val, vlen)
                  : mph__rstore_batch_delete(batch, sh->partition, key, klen);
    } else {
        err = val ? mph__mstore_fill(sh->mem, key, klen, val, vlen)
                  : mph__mstore_forget(sh->mem, key, klen);
        if (err == MPH_ERR_NOENT)
            err = MPH_OK;
    }
    if (err == MPH_OK)
        sh->applied = offset;
    /* Derived per-shard state must be rebuilt from the new contents. */
    drop_ext(sh);
    return err;
}

mph_err_t mph__shard_reset(mph__shard_t *sh, char *errstr, size_t errstr_size)
{
    mph__mstore_clear(sh->mem);
    sh->miss_valid = false;
    sh->applied = -1;
    sh->flushed = -1;
    drop_ext(sh);
    if (sh->rs)
        return mph__rstore_drop_shard(sh->rs, sh->partition, errstr, errstr_size);
    return MPH_OK;
}

mph_err_t mph__shard_set_undo(mph__shard_t *sh, bool on)
{
    if (sh->rs)
        return mph__shard_dirty(sh) && on ? MPH_ERR_STATE : MPH_OK;
    return mph__mstore_set_undo(sh->mem, on);
}

mph_err_t mph__shard_rollback(mph__shard_t *sh)
{
    if (sh->in_flush)
        return MPH_ERR_STATE;
    mph_err_t err = mph__mstore_rollback(sh->mem);
    if (err)
        return err;
    /* The miss is remembered "until the next write" (mph__shard_set); a
     * rollback rewrites the shard, so it goes too. */
    sh->miss_valid = false;
    drop_ext(sh);
    return MPH_OK;
}
