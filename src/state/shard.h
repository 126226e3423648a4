/*
 * A table shard: the state of one (table, partition).
 *
 * `memory` tables keep the whole shard in an in-memory map; `rocksdb`
 * tables keep a bounded cache plus the dirty set in memory in front of the
 * worker's RocksDB instance for that table, where the shard is the key range
 * prefixed by its partition. Reads fall through to RocksDB on a cache miss;
 * writes only touch memory and mark keys dirty. At commit the dirty keys
 * become changelog records and (rocksdb) one WriteBatch with the checkpoint.
 *
 * @locality one thread at a time: the coordinator while it recovers the
 * shard, then the owning worker; ownership moves with mailbox messages.
 */
#ifndef MPH_STATE_SHARD_H
#define MPH_STATE_SHARD_H

#include "mephisto/common.h"
#include "state/faust.h"
#include "state/store_memory.h"
#include "state/store_rocksdb.h"

typedef struct mph__shard {
    int table;
    uint32_t partition;
    mph__mstore_t *mem;
    mph__rstore_t *rs;       /* borrowed; NULL for memory tables */
    int64_t applied;         /* last changelog offset reflected here, -1 none */
    int64_t flushed;         /* changelog offset acknowledged at the last flush */
    bool in_flush;           /* its dirty set is in an active flush */
    void *scratch;           /* last value read from RocksDB (owned) */
    size_t scratch_len;
    /* The key of the last get that RocksDB answered "not found", until the
     * next write (mph__shard_set); keys longer than the buffer are not
     * remembered. */
    bool miss_valid;
    uint16_t miss_len;
    unsigned char miss[128];
    /* State a layer above keeps per shard (window index); built lazily by
     * its owner, freed with ext_free when the shard is destroyed or reset.
     * Travels with the shard between threads like the rest of it. */
    void *ext;
    void (*ext_free)(void *ext);
    /* ext has state of its own to write into the shard before the next
     * flush takes the shard's dirty set (window.c: the stream time, which
     * moves on nearly every event but only needs to be durable at a
     * commit). The owner sets ext_due with mph__shard_touch(); the flush
     * calls ext_flush (mph__shard_ext_flush). Cleared whenever ext is
     * freed: what was due belonged to the contents that went. */
    bool ext_due;
    mph_err_t (*ext_flush)(struct mph__shard *sh);
    /* NULL, or the encoding of a format=faust table's changelog (borrowed
     * from the table; recovery decodes with it, state/faust.h) */
    const mph__faust_fmt_t *faust;
    /* Set by the owning worker (runtime/table.c, its dirty list), NULL
     * while no worker owns the shard: a set or delete while *listed is
     * false calls on_dirty, which lists the shard for the next flush. */
    bool *listed;
    void (*on_dirty)(void *ctx, struct mph__shard *sh);
    void *on_dirty_ctx;
} mph__shard_t;

/* Marks ext's state due for the next flush (ext_due) and lists the shard
 * with its owner as a write would. */
void mph__shard_touch(mph__shard_t *sh);
/* Writes what ext has due (ext_flush) into the shard; MPH_OK when nothing
 * was due. On failure ext_due stays set. */
mph_err_t mph__shard_ext_flush(mph__shard_t *sh);

/* rs NULL: a memory shard. cache_max_keys 0: unbounded cache. */
mph__shard_t *mph__shard_new(int table, uint32_t partition, mph__rstore_t *rs,
                             size_t cache_max_keys);
void mph__shard_destroy(mph__shard_t *sh);

/* MPH_OK with *val borrowed until the next call on this shard, or
 * MPH_ERR_NOENT; MPH_ERR_STORE/DISK_FULL when RocksDB fails. */
mph_err_t mph__shard_get(mph__shard_t *sh, const void *key, size_t klen, const void **val,
                         size_t *vlen);
mph_err_t mph__shard_set(mph__shard_t *sh, const void *key, size_t klen, const void *val,
                         size_t vlen);
mph_err_t mph__shard_delete(mph__shard_t *sh, const void *key, size_t klen);
size_t mph__shard_dirty(const mph__shard_t *sh);

/* Visits every key (memory shard: the map; rocksdb shard: the store merged
 * with the dirty set). */
typedef mph_err_t (*mph__shard_visit_fn)(const void *key, size_t klen, const void *val,
                                         size_t vlen, void *opaque);
mph_err_t mph__shard_foreach(mph__shard_t *sh, mph__shard_visit_fn fn, void *opaque);

/* Applies a changelog record during recovery (val NULL: tombstone). For
 * rocksdb shards the record also goes into batch (written by the caller). */
mph_err_t mph__shard_apply(mph__shard_t *sh, mph__rstore_batch_t *batch, const void *key,
                           size_t klen, const void *val, size_t vlen, int64_t offset);

/* Forgets everything (rebuild from zero); for rocksdb shards also drops
 * the on-disk range. */
mph_err_t mph__shard_reset(mph__shard_t *sh, char *errstr, size_t errstr_size);

/* Makes the shard able to roll back (exactly_once; off by default, free
 * when off). A memory shard keeps the pre-image of each key it dirties
 * (mph__mstore_set_undo); a rocksdb shard needs nothing, RocksDB holds the
 * committed state. Call it while the shard has no dirty key:
 * MPH_ERR_STATE otherwise, nothing changed. @locality owner */
mph_err_t mph__shard_set_undo(mph__shard_t *sh, bool on);

/* Puts the shard back to its last commit (an aborted or fenced
 * transaction): memory shards restore each dirty key's pre-image, rocksdb
 * shards drop the dirty entries and tombstones of their cache, so reads
 * fall through to the store again (mph__mstore_rollback). Anything derived
 * from the contents goes too: the remembered RocksDB miss, and ext, freed
 * with ext_free and set to NULL so that its owner rebuilds it from the
 * rolled-back shard on next use (window.c does so lazily). applied and
 * flushed are left alone: they track changelog offsets, which the
 * transaction path owns. *val pointers from mph__shard_get are invalid
 * afterwards. Must not be called from inside a callback of the layer that
 * owns ext (a window on_close). MPH_ERR_STATE, changing nothing, while the
 * shard is in a flush (end it first) or when a memory shard is not in undo
 * mode (mph__shard_set_undo) or cannot roll back (see
 * mph__mstore_rollback). @locality owner */
mph_err_t mph__shard_rollback(mph__shard_t *sh);

#endif
