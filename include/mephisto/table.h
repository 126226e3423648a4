/*
 * mephisto/table.h — tables (Faust's app.Table): partitioned key/value state
 * with a changelog.
 *
 * A table is sharded by partition: shard p holds the keys that the Java
 * client's murmur2 partitioner puts on partition p, and lives on the worker
 * that owns partition p of the app's source topics (p mod workers). Agent
 * callbacks read and write the shard of the event's partition; writing a
 * key that belongs to another partition is MPH_ERR_PARTITION — re-key the
 * stream first (mph_topic_repartition / mph_group_by).
 *
 * Every change is recorded in the compacted changelog topic
 * `<app_id>-<table>-changelog` (created at start, one partition per shard;
 * or an existing topic adopted with the option changelog_topic),
 * coalesced per key within a commit interval. Under at_least_once a source
 * offset is committed only after the changelog records of the changes it
 * caused are acknowledged; under exactly_once both are in one transaction,
 * and an aborted transaction rolls the table back to its last commit (see
 * docs/tables.md, "Exactly-once"). On assignment a shard is rebuilt from the
 * changelog before its partition is handed to the worker: `memory` tables
 * replay from the start (or from where this process last left it),
 * `rocksdb` tables from the checkpoint kept atomically with their data under
 * `<datadir>/<app_id>/<table>/w<worker>/` (one RocksDB instance per table
 * and worker; the setting `datadir`).
 *
 * Options (mph_table_opts_set):
 *   key_codec, value_codec   raw (default) | string | json | i64 | a codec
 *                            registered with mph_codec_register: every value
 *                            written (set, update) passes its decode first,
 *                            a refusal is returned and the table unchanged
 *   default                  value returned by get for absent keys
 *                            (for i64 tables a decimal number; default 0
 *                            for increments)
 *   store                    memory | rocksdb (default: the app's `store`)
 *   partitions               shard count (default: the topic_partitions
 *                            setting, as in Faust); the topics whose agents
 *                            write the table must have as many partitions
 *   cache_max_keys           rocksdb tables: keys kept in memory per shard
 *                            (default: table_cache_max_keys)
 *   changelog.<config>       a topic config for the changelog
 *   changelog_topic          adopt this existing topic as the changelog
 *                            (e.g. a Faust app's `<app_id>-<table>-changelog`)
 *                            instead of `<app_id>-<table>-changelog`. It must
 *                            exist with exactly the table's partition count:
 *                            start fails otherwise, naming both counts
 *                            (MPH_ERR_EXISTS) or the missing topic
 *                            (MPH_ERR_NOENT)
 *   format                   mephisto (default) | faust: the changelog's keys
 *                            and values as faust-streaming's json serializer
 *                            writes them (raw: bytes as is; string: a JSON
 *                            string; i64: a JSON integer; json: the document;
 *                            windowed tables: [key, [start_s, end_s]]), so a
 *                            table can take over a Faust table's changelog
 *                            and Faust can read back what it writes. Only
 *                            the changelog changes: agents and lookups see
 *                            the table as before. Writes a Faust changelog
 *                            could not hold are refused (string key or value
 *                            not UTF-8: MPH_ERR_UTF8; i64 not 8 bytes:
 *                            MPH_ERR_TYPE; json or record key or value not
 *                            one JSON document: MPH_ERR_DECODE); the same
 *                            for mph_table_delete and mph_window_* writes.
 *                            Sliding and session windows have no Faust
 *                            form (start fails). A changelog record that
 *                            does not decode stops recovery (start fails)
 *                            with its topic, partition and offset. See
 *                            docs/migrating-from-faust.md
 *   faust_namespace          format=faust json tables: the Faust Record
 *                            namespace (`module.Class`) added as
 *                            "__faust": {"ns": ...} to values written
 *                            without one (values read keep theirs)
 *
 * Ownership: tables are owned by the app. Values returned by mph_table_get
 * are borrowed until the next write to the table from the same callback or
 * the callback's return; mph_table_lookup returns an owned copy.
 * Thread safety: declare before start on the controlling thread. The
 * mph_table_* calls taking an event run on that event's worker thread
 * during its callback. mph_table_lookup may be called from any thread.
 */
#ifndef MEPHISTO_TABLE_H
#define MEPHISTO_TABLE_H

#include "mephisto/agent.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mph_table mph_table_t;
typedef struct mph_table_opts mph_table_opts_t;

MPH_EXPORT mph_table_opts_t *mph_table_opts_new(void);
MPH_EXPORT mph_err_t mph_table_opts_set(mph_table_opts_t *opts, const char *name,
                                        const char *value, char *errstr, size_t errstr_size);
MPH_EXPORT void mph_table_opts_destroy(mph_table_opts_t *opts);

/* Declares table name (opts may be NULL). Before start only. NULL with
 * errstr on a duplicate name or bad option. */
MPH_EXPORT mph_table_t *mph_table_new(mph_app_t *app, const char *name,
                                      const mph_table_opts_t *opts, char *errstr,
                                      size_t errstr_size);
MPH_EXPORT const char *mph_table_name(const mph_table_t *table);
/* Shard count once started (0 before). */
MPH_EXPORT int mph_table_partitions(const mph_table_t *table);
MPH_EXPORT mph_table_t *mph_app_table(const mph_app_t *app, const char *name);
/* The changelog topic's name (borrowed; lives with the app). */
MPH_EXPORT const char *mph_table_changelog(const mph_table_t *table);

/* --- inside an agent callback, on the event's shard --- */

/* The worker processing an event always holds the event's shard of every
 * table with that partition. Should one be missing all the same (a bug in
 * mephisto), the call returns MPH_ERR_PARTITION and the app stops with
 * MPH_ERR_INTERNAL without committing past the event, whatever
 * on_agent_error says: the event never counts as processed without its
 * table update. */

/* The value of key: MPH_OK with *value borrowed (see above), or
 * MPH_ERR_NOENT when absent and the table has no default. */
MPH_EXPORT mph_err_t mph_table_get(mph_event_t *ev, mph_table_t *table, const void *key,
                                   size_t key_len, const void **value, size_t *value_len);
MPH_EXPORT bool mph_table_contains(mph_event_t *ev, mph_table_t *table, const void *key,
                                   size_t key_len);
/* Sets key to a copy of value. MPH_ERR_PARTITION for a key of another
 * partition; MPH_ERR_RANGE for keys over 65535 bytes. */
MPH_EXPORT mph_err_t mph_table_set(mph_event_t *ev, mph_table_t *table, const void *key,
                                   size_t key_len, const void *value, size_t value_len);
MPH_EXPORT mph_err_t mph_table_delete(mph_event_t *ev, mph_table_t *table, const void *key,
                                      size_t key_len);
/* i64 tables: adds by to the value (absent: the default, else 0), wrapping
 * past INT64_MAX/INT64_MIN (two's complement; mph_window_incr too); the new
 * value goes to *out when out is not NULL. MPH_ERR_TYPE when the stored
 * value is not 8 bytes. */
MPH_EXPORT mph_err_t mph_table_incr(mph_event_t *ev, mph_table_t *table, const void *key,
                                    size_t key_len, int64_t by, int64_t *out);
/* Reads i64 key (absent: the default, else 0). */
MPH_EXPORT mph_err_t mph_table_get_i64(mph_event_t *ev, mph_table_t *table, const void *key,
                                       size_t key_len, int64_t *out);

/* Read-modify-write: fn gets the current value (NULL when absent) and
 * writes the new one with mph_table_update_set() on upd, or returns
 * MPH_ERR_NOENT to delete the key, or MPH_OK without setting to leave it. */
typedef struct mph_table_update mph_table_update_t;
typedef mph_err_t(mph_table_update_fn)(const void *old, size_t old_len, mph_table_update_t *upd,
                                       void *opaque);
MPH_EXPORT mph_err_t mph_table_update_set(mph_table_update_t *upd, const void *value,
                                          size_t value_len);
MPH_EXPORT mph_err_t mph_table_update(mph_event_t *ev, mph_table_t *table, const void *key,
                                      size_t key_len, mph_table_update_fn *fn, void *opaque);

/* Visits every key of the event's shard (order unspecified for memory
 * tables, key order for rocksdb tables). fn returns MPH_OK to go on, any
 * other code to stop (returned). Do not write the table from fn. */
typedef mph_err_t(mph_table_visit_fn)(const void *key, size_t key_len, const void *value,
                                      size_t value_len, void *opaque);
MPH_EXPORT mph_err_t mph_table_foreach(mph_event_t *ev, mph_table_t *table,
                                       mph_table_visit_fn *fn, void *opaque);

/* --- from any thread --- */

/* Copies key's value out of the worker that owns its shard in this process.
 * *value is malloc'd (free with free()). MPH_ERR_NOENT when absent (and no
 * default), MPH_ERR_PARTITION when no worker of this process owns the
 * key's partition (ask the owner: see /router), MPH_ERR_TIMEOUT, or
 * MPH_ERR_STATE when the app is not running. @locality any (not from an
 * agent callback): the controlling thread, a thread of the app's own, or a
 * web route's handler (mephisto/web.h; keep timeout_ms at most 1000 there,
 * as every other web request waits for the handler) */
MPH_EXPORT mph_err_t mph_table_lookup(mph_app_t *app, mph_table_t *table, const void *key,
                                      size_t key_len, void **value, size_t *value_len,
                                      int timeout_ms);
/* --- offline: the RocksDB shards on this host, no app running --- */

/* Reads table's rocksdb shards under conf's datadir for conf's app_id (as a
 * worker left them at its last commit) without starting anything. Visits
 * every key of every shard found, partition by partition (partition is
 * passed in *partition_out before each call when not NULL).
 * MPH_ERR_NOENT: no shards on this host. MPH_ERR_STORE: a worker process
 * holds the store (read through its web port instead). @locality any */
MPH_EXPORT mph_err_t mph_table_local_foreach(const mph_conf_t *conf, const char *table,
                                             mph_table_visit_fn *fn, void *opaque,
                                             int32_t *partition_out, char *errstr,
                                             size_t errstr_size);
/* One key from the local shards (owned copy, free with free()). */
MPH_EXPORT mph_err_t mph_table_local_get(const mph_conf_t *conf, const char *table,
                                         const void *key, size_t key_len, void **value,
                                         size_t *value_len, char *errstr, size_t errstr_size);

/* The partition a key belongs to (Java-compatible murmur2). */
MPH_EXPORT int32_t mph_table_partition_of(const mph_table_t *table, const void *key,
                                          size_t key_len);

#ifdef __cplusplus
}
#endif
#endif
