/*
 * state/store_rocksdb.h — RocksDB storage under the tables (internal).
 *
 * One process-wide *store env* (shared block cache, shared background
 * threads, option defaults tuned for many small shards) and one RocksDB
 * instance per (table, worker) at <datadir>/<table>/w<worker>/. A *shard* is
 * the key range of one partition inside an instance; each shard carries its
 * own checkpoint (the applied changelog offset) under a reserved key, written
 * in the same WriteBatch as the data it describes. The key layout and the
 * recovery ordering are explained in the DESIGN comment of store_rocksdb.c.
 *
 * Errors: RocksDB's error strings are converted here: MPH_ERR_DISK_FULL when
 * RocksDB reports that no space is left, MPH_ERR_STORE for every other
 * RocksDB failure, MPH_ERR_IO when a directory cannot be created, and the
 * message (naming the directory) goes into the caller's errstr.
 *
 * Threads: an env and an open store may be used from any thread at once
 * (RocksDB's handles are thread-safe); the objects built on them — batches,
 * iterators, pins — belong to the thread that made them. The table layer
 * keeps the shared-nothing rule: only the owning worker touches a shard,
 * except the coordinator while it recovers one before hand-over.
 */
#ifndef MPH_STATE_STORE_ROCKSDB_H
#define MPH_STATE_STORE_ROCKSDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mephisto/common.h"

/* Highest partition number a shard may have (Kafka partitions are int32). */
#define MPH__RSTORE_PARTITION_MAX INT32_MAX

/* ------------------------------------------------------------------------
 * Options: the rocksdb.<prop> settings, validated before any env exists.
 * ------------------------------------------------------------------------ */

typedef struct mph__rstore_conf mph__rstore_conf_t;

/* Defaults tuned for many small shards (see store_rocksdb.c). NULL on out
 * of memory. Owned: destroy with mph__rstore_conf_destroy(). @locality any */
mph__rstore_conf_t *mph__rstore_conf_new(void);
void mph__rstore_conf_destroy(mph__rstore_conf_t *conf);

/* Sets one option. name is "rocksdb.<prop>" (the "rocksdb." prefix may be
 * left out); value is text: sizes take an optional k/m/g suffix (KiB, MiB,
 * GiB), booleans are true/false/1/0, compression is one of none, snappy,
 * zlib, bz2, lz4, lz4hc, zstd. Supported props and their defaults (tuned
 * for one instance per table and worker holding many small shards):
 *   write_buffer_size 4m            max_write_buffer_number 2
 *   block_size 4k                   block_cache_size 64m (one for all)
 *   compression lz4                 bottommost_compression (= compression)
 *   max_open_files 128 (per inst.)  bloom_bits 10 (0: no filter)
 *   max_background_jobs 2           level0_file_num_compaction_trigger 4
 *   target_file_size_base 16m       max_bytes_for_level_base 64m
 *   max_total_wal_size 0 (auto)     cache_index_and_filter_blocks true
 *   bytes_per_sync 1m               use_fsync false
 *   sync false (true: fsync the WAL on every commit)
 *   paranoid_checks true
 * Errors: MPH_ERR_INVALID "rocksdb.<name>: unknown or unsupported option" or
 * "rocksdb.<name>: <why the value is bad>". name and value are borrowed for
 * the call. @locality the thread that owns conf */
mph_err_t mph__rstore_conf_set(mph__rstore_conf_t *conf, const char *name,
                               const char *value, char *errstr,
                               size_t errstr_size);

/* ------------------------------------------------------------------------
 * The store env: one per app, shared by all its stores.
 * ------------------------------------------------------------------------ */

typedef struct mph__rstore_env mph__rstore_env_t;

/* Creates the shared cache, background threads and option set. conf is
 * borrowed for the call (NULL = defaults). The background thread pools are
 * those of RocksDB's process-wide default Env: they are sized here to
 * max_background_jobs (low priority) and 1 (high priority, flushes).
 * Returns NULL with errstr set on failure. @locality any */
mph__rstore_env_t *mph__rstore_env_new(const mph__rstore_conf_t *conf,
                                       char *errstr, size_t errstr_size);
/* Every store opened with env must be closed first. NULL is a no-op. */
void mph__rstore_env_destroy(mph__rstore_env_t *env);
/* Bytes currently held by the shared block cache. @locality any */
size_t mph__rstore_env_cache_usage(const mph__rstore_env_t *env);

/* ------------------------------------------------------------------------
 * Instances: one per (table, worker).
 * ------------------------------------------------------------------------ */

typedef struct mph__rstore mph__rstore_t;

/* Writes "<datadir>/<table>/w<worker>" into buf. MPH_ERR_INVALID if table
 * is empty, ".", ".." or contains '/', or worker < 0; MPH_ERR_RANGE if buf
 * is too small. @locality any */
mph_err_t mph__rstore_path(char *buf, size_t size, const char *datadir,
                           const char *table, int worker);

/* Claims dir (<datadir>/<app_id>) as an app's state directory: creates it
 * and its missing parents, and in it the marker file MPH_CONF_STATE_MARKER
 * (mephisto/conf.h) holding a line about app_id, unless it exists. Only a
 * directory carrying the marker is deleted by `mephisto reset`. Safe to call
 * from several threads at once (the marker is created exclusively). Errors:
 * MPH_ERR_IO (MPH_ERR_DISK_FULL when no space is left) with "cannot create
 * state directory ..." or "cannot write <marker>: <reason>" in errstr.
 * @locality any */
mph_err_t mph__rstore_claim_dir(const char *dir, const char *app_id,
                                char *errstr, size_t errstr_size);

/* Opens (creating it and its missing parents) the instance in dir. env is
 * borrowed and must outlive the store; dir is copied. Returns NULL with
 * errstr set: MPH_ERR_IO-class failure to create the directory, a locked
 * instance ("... another worker process is using it"), or RocksDB's reason.
 * The error code of the failure is stored in *err when err is not NULL.
 * @locality any */
mph__rstore_t *mph__rstore_open(mph__rstore_env_t *env, const char *dir,
                                mph_err_t *err, char *errstr,
                                size_t errstr_size);
/* Closes the store: pending memtable data stays in the WAL (or is lost if
 * it was written with the WAL off and not yet flushed — see
 * mph__rstore_bulk_finish). No batch, iterator or pin of it may be in use.
 * NULL is a no-op. */
void mph__rstore_close(mph__rstore_t *st);
/* The directory it was opened with. Borrowed until close. */
const char *mph__rstore_dir(const mph__rstore_t *st);

/* True once a write failed (disk full, I/O error) since the store was last
 * opened: RocksDB then refuses every write until the store is reopened.
 * @locality any */
bool mph__rstore_failed(const mph__rstore_t *st);
/* Reopens the store in place (same handle): closes RocksDB and opens it
 * again, replaying its WAL, so every write that succeeded is still there.
 * Waits until no other thread uses the store, then blocks them for the
 * duration. The calling thread must hold no iterator or pin of st. On
 * failure the store stays closed (every use fails with MPH_ERR_STORE until
 * a reopen succeeds) and the error is RocksDB's (MPH_ERR_DISK_FULL when no
 * space is left). Bumps the generation (mph__rstore_gen) either way.
 * @locality any (the table layer: the owning worker, in its flush) */
mph_err_t mph__rstore_reopen(mph__rstore_t *st, char *errstr,
                             size_t errstr_size);
/* The number of times this handle was opened; a recovery reads it before
 * its first bulk write and passes it to every bulk call. @locality any */
uint64_t mph__rstore_gen(const mph__rstore_t *st);

/* ------------------------------------------------------------------------
 * Reads
 * ------------------------------------------------------------------------ */

/* Reads key of the shard of partition. On MPH_OK *val is an owned malloc()ed
 * copy of *vlen bytes (free() it; never NULL, even for an empty value).
 * MPH_ERR_NOENT when absent (nothing in errstr); MPH_ERR_RANGE for a bad
 * partition; MPH_ERR_STORE / MPH_ERR_DISK_FULL from RocksDB. @locality any */
mph_err_t mph__rstore_get(mph__rstore_t *st, uint32_t partition,
                          const void *key, size_t klen, void **val,
                          size_t *vlen, char *errstr, size_t errstr_size);

/* Like mph__rstore_get but without a copy: *val is borrowed until
 * mph__rstore_pin_free(*pin). */
typedef struct mph__rstore_pin mph__rstore_pin_t;
mph_err_t mph__rstore_get_pinned(mph__rstore_t *st, uint32_t partition,
                                 const void *key, size_t klen,
                                 mph__rstore_pin_t **pin, const void **val,
                                 size_t *vlen, char *errstr,
                                 size_t errstr_size);
void mph__rstore_pin_free(mph__rstore_pin_t *pin);

/* A shard's checkpoint: the changelog offset its data reflects and the
 * worker count W of the writer (so a reader can tell whether the partition
 * was written under another worker layout). The store treats offset as
 * opaque; the table layer's convention is the offset of the next changelog
 * record to apply. */
typedef struct mph__rstore_checkpoint {
    int64_t offset;
    uint32_t workers;
} mph__rstore_checkpoint_t;

/* MPH_OK with *out filled; MPH_ERR_NOENT when the shard has no checkpoint
 * ("none": nothing applied yet); MPH_ERR_STORE for an unreadable checkpoint
 * (unknown version or length). @locality any */
mph_err_t mph__rstore_checkpoint_get(mph__rstore_t *st, uint32_t partition,
                                     mph__rstore_checkpoint_t *out,
                                     char *errstr, size_t errstr_size);

/* ------------------------------------------------------------------------
 * Batches: puts, deletes, checkpoints and drops applied atomically.
 * ------------------------------------------------------------------------ */

typedef struct mph__rstore_batch mph__rstore_batch_t;

/* NULL on out of memory. A batch may span several shards of one instance
 * (a worker commits all its dirty shards of a table in one write); it is
 * atomic as a whole. Owned by the calling thread. */
mph__rstore_batch_t *mph__rstore_batch_new(void);
void mph__rstore_batch_destroy(mph__rstore_batch_t *b);
/* Empties the batch for reuse (keeps its buffer). */
void mph__rstore_batch_clear(mph__rstore_batch_t *b);
/* Each of these copies its arguments into the batch. MPH_ERR_RANGE for a
 * partition above MPH__RSTORE_PARTITION_MAX. */
mph_err_t mph__rstore_batch_put(mph__rstore_batch_t *b, uint32_t partition,
                                const void *key, size_t klen, const void *val,
                                size_t vlen);
mph_err_t mph__rstore_batch_delete(mph__rstore_batch_t *b, uint32_t partition,
                                   const void *key, size_t klen);
mph_err_t mph__rstore_batch_checkpoint(mph__rstore_batch_t *b,
                                       uint32_t partition,
                                       const mph__rstore_checkpoint_t *cp);
/* Removes the whole shard (every user key and its checkpoint) with one
 * DeleteRange. Later operations in the same batch apply after it. */
mph_err_t mph__rstore_batch_drop(mph__rstore_batch_t *b, uint32_t partition);
/* Number of operations and size in bytes of the batch's representation. */
size_t mph__rstore_batch_count(mph__rstore_batch_t *b);
size_t mph__rstore_batch_bytes(mph__rstore_batch_t *b);

/* A normal commit: writes b atomically through the WAL (fsync'd when the
 * env's "sync" option is on). b is borrowed and left as it was.
 * @locality the owner of the shards in b */
mph_err_t mph__rstore_write(mph__rstore_t *st, mph__rstore_batch_t *b,
                            char *errstr, size_t errstr_size);

/* A recovery write: writes b atomically with the WAL off. Each bulk batch
 * must carry the checkpoint of its shard as of its last record, and
 * mph__rstore_bulk_finish() must return MPH_OK before the shard receives
 * any mph__rstore_write() — see "Recovery ordering" in store_rocksdb.c.
 * gen is mph__rstore_gen() read before the recovery's first bulk write:
 * MPH_ERR_STORE when the store was reopened since (earlier WAL-less writes
 * may be lost, so the recovery must start again from the checkpoint).
 * @locality the thread recovering the shards in b (the coordinator) */
mph_err_t mph__rstore_write_bulk(mph__rstore_t *st, mph__rstore_batch_t *b,
                                 uint64_t gen, char *errstr,
                                 size_t errstr_size);
/* Flushes the memtables to SST files and waits: after MPH_OK everything
 * written so far, with or without the WAL, is durable — provided the store
 * was not reopened since generation gen (else MPH_ERR_STORE, see
 * mph__rstore_write_bulk). Blocks the caller for the duration of the
 * flush. @locality any */
mph_err_t mph__rstore_bulk_finish(mph__rstore_t *st, uint64_t gen,
                                  char *errstr, size_t errstr_size);

/* Drops a shard (all user keys and the checkpoint) in one WAL write. */
mph_err_t mph__rstore_drop_shard(mph__rstore_t *st, uint32_t partition,
                                 char *errstr, size_t errstr_size);

/* ------------------------------------------------------------------------
 * Iteration over one shard's user keys, in bytewise key order. The
 * checkpoint is never yielded. The iterator reads a consistent snapshot
 * taken at creation.
 * ------------------------------------------------------------------------ */

typedef struct mph__rstore_iter mph__rstore_iter_t;

/* Positioned before the first key: call seek_first() or seek(). NULL with
 * errstr set on a bad partition or out of memory. Owned by the calling
 * thread; destroy before closing the store. */
mph__rstore_iter_t *mph__rstore_iter_new(mph__rstore_t *st, uint32_t partition,
                                         char *errstr, size_t errstr_size);
void mph__rstore_iter_destroy(mph__rstore_iter_t *it);
void mph__rstore_iter_seek_first(mph__rstore_iter_t *it);
/* Positions at the first user key >= key. MPH_ERR_NOMEM if a long key
 * could not be copied (the position is then unchanged). */
mph_err_t mph__rstore_iter_seek(mph__rstore_iter_t *it, const void *key,
                                size_t klen);
bool mph__rstore_iter_valid(const mph__rstore_iter_t *it);
void mph__rstore_iter_next(mph__rstore_iter_t *it);
/* The current user key (without the shard prefix) and value; borrowed until
 * the next move or destroy. Only while valid. */
const void *mph__rstore_iter_key(const mph__rstore_iter_t *it, size_t *klen);
const void *mph__rstore_iter_value(const mph__rstore_iter_t *it, size_t *vlen);
/* After the iterator stops being valid: MPH_OK at the end of the shard, or
 * the RocksDB error that stopped it. */
mph_err_t mph__rstore_iter_status(const mph__rstore_iter_t *it, char *errstr,
                                  size_t errstr_size);

/* ------------------------------------------------------------------------
 * Administration
 * ------------------------------------------------------------------------ */

/* Exact number of user keys in the shard, by iterating it: O(keys), meant
 * for tests, tools and stats on demand, never the event path. */
mph_err_t mph__rstore_count(mph__rstore_t *st, uint32_t partition,
                            uint64_t *out, char *errstr, size_t errstr_size);
/* The partitions that have user keys or a checkpoint in this instance, in
 * ascending order, as an owned malloc()ed array (free() it; NULL when
 * *n == 0). One seek per shard. Used to drop moved partitions when the
 * worker count changed. */
mph_err_t mph__rstore_list_shards(mph__rstore_t *st, uint32_t **parts,
                                  size_t *n, char *errstr, size_t errstr_size);

#endif /* MPH_STATE_STORE_ROCKSDB_H */
