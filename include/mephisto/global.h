/*
 * mephisto/global.h — global tables (Faust's GlobalTable, Kafka Streams'
 * GlobalKTable): reference data every process of the app holds whole.
 *
 * A global table is a compacted changelog topic `<app_id>-<name>-changelog`
 * (created at start) and, in every process, one in-memory copy of all of
 * it. One thread per process (the table's reader) consumes every partition
 * of the changelog with its own consumer (no consumer group; read_committed
 * under processing_guarantee=exactly_once) and applies each record to the
 * copy in changelog order: a value sets the key, a null value (tombstone)
 * deletes it. Writes made with mph_global_table_set/delete from agents go
 * to the changelog only; the copy of every process (the writer's included)
 * applies them when it reads them back, so all processes apply the same
 * records in the same per-partition order and end up equal (unlike Faust's
 * GlobalTable, whose writer applied its own writes first).
 *
 * Start-up: the reader notes each changelog partition's end offset when the
 * app starts, and the table is "ready" once the copy has read up to those
 * ends (Kafka Streams' bootstrap rule). Until every global table is ready
 * the web view's /ready answers 503. Reads before that see a partial copy.
 *
 * Reads (mph_global_table_get, _get_into, _contains) run on any thread,
 * including agent callbacks, and never block on the reader thread: the
 * copy is a ConcurrencyKit hash table with one writer and many readers
 * (ck_ht SPMC), and replaced values are freed only after every reader that
 * could still see them has left (ck_epoch). A read returns either the
 * value before or after a concurrent update, never a torn one.
 *
 * Options (mph_global_table_opts_set):
 *   partitions          changelog partitions (default: topic_partitions)
 *   changelog.<config>  a topic config for the changelog (cleanup.policy
 *                       is always compact)
 *
 * Ownership: a global table is owned by its app and lives until
 * mph_app_destroy(); its copy stays readable after mph_app_stop() (with
 * the content it had). Declare before start, on the controlling thread.
 */
#ifndef MEPHISTO_GLOBAL_H
#define MEPHISTO_GLOBAL_H

#include "mephisto/agent.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mph_global_table mph_global_table_t;
typedef struct mph_global_table_opts mph_global_table_opts_t;

MPH_EXPORT mph_global_table_opts_t *mph_global_table_opts_new(void);
/* MPH_ERR_INVALID with errstr naming the option and why. */
MPH_EXPORT mph_err_t mph_global_table_opts_set(mph_global_table_opts_t *opts,
                                               const char *name,
                                               const char *value, char *errstr,
                                               size_t errstr_size);
MPH_EXPORT void mph_global_table_opts_destroy(mph_global_table_opts_t *opts);

/* Declares global table name on app (opts may be NULL; copied). Before
 * start only. NULL with errstr on a bad or duplicate name (a table or a
 * global table of that name exists), a bad option or a started app. */
MPH_EXPORT mph_global_table_t *
mph_global_table_new(mph_app_t *app, const char *name,
                     const mph_global_table_opts_t *opts, char *errstr,
                     size_t errstr_size);
MPH_EXPORT mph_global_table_t *mph_app_global_table(const mph_app_t *app,
                                                    const char *name);
MPH_EXPORT const char *mph_global_table_name(const mph_global_table_t *gt);
/* The changelog topic (borrowed; lives with the app): agents may also
 * subscribe to it to react to changes. */
MPH_EXPORT mph_topic_t *mph_global_table_topic(const mph_global_table_t *gt);

/* --- writes: from an agent callback, tracked like mph_event_send --- */

/* Produces key=value to the changelog (partition by key, murmur2). The
 * source event is not committed before the broker acknowledged it. The
 * local copy changes when the record is read back, not now. Copies key and
 * value. Errors as mph_event_send; MPH_ERR_INVALID for a NULL key or a
 * table of another app; MPH_ERR_RANGE for keys over 65535 bytes.
 * @locality worker (during ev's callback) */
MPH_EXPORT mph_err_t mph_global_table_set(mph_event_t *ev,
                                          mph_global_table_t *gt,
                                          const void *key, size_t key_len,
                                          const void *value, size_t value_len);
/* Produces a tombstone for key. As mph_global_table_set. */
MPH_EXPORT mph_err_t mph_global_table_delete(mph_event_t *ev,
                                             mph_global_table_t *gt,
                                             const void *key, size_t key_len);

/* --- reads: the local copy, from any thread --- */

/* The value of key as an owned copy: *value is malloc'd (free with free();
 * an empty value is a 1-byte allocation with *value_len 0). MPH_ERR_NOENT
 * when absent, MPH_ERR_NOMEM. Never blocks. @locality any */
MPH_EXPORT mph_err_t mph_global_table_get(mph_global_table_t *gt,
                                          const void *key, size_t key_len,
                                          void **value, size_t *value_len);
/* The value of key copied into buf (no allocation): MPH_OK with *value_len
 * the value's length; MPH_ERR_RANGE when buf_size is too small (then
 * *value_len says how large it must be and buf is untouched);
 * MPH_ERR_NOENT when absent. Never blocks. @locality any */
MPH_EXPORT mph_err_t mph_global_table_get_into(mph_global_table_t *gt,
                                               const void *key, size_t key_len,
                                               void *buf, size_t buf_size,
                                               size_t *value_len);
MPH_EXPORT bool mph_global_table_contains(mph_global_table_t *gt,
                                          const void *key, size_t key_len);
/* Keys in the local copy now. @locality any */
MPH_EXPORT size_t mph_global_table_count(const mph_global_table_t *gt);

/* True once the copy has read every changelog partition up to its end
 * offset noted at start. @locality any */
MPH_EXPORT bool mph_global_table_ready(const mph_global_table_t *gt);
/* Waits until ready: MPH_OK, MPH_ERR_TIMEOUT, or MPH_ERR_STATE when the app
 * is not running (or stopped while waiting). @locality any (not from an
 * agent callback of this app) */
MPH_EXPORT mph_err_t mph_global_table_wait_ready(const mph_global_table_t *gt,
                                                 int timeout_ms);

/* Visits every key of the local copy (order unspecified) on the calling
 * thread; key and value are borrowed until fn returns. fn returns MPH_OK
 * to go on, any other code to stop (returned). Keys applied while the
 * visit runs may or may not be seen. @locality any */
typedef mph_err_t(mph_global_visit_fn)(const void *key, size_t key_len,
                                       const void *value, size_t value_len,
                                       void *opaque);
MPH_EXPORT mph_err_t mph_global_table_foreach(mph_global_table_t *gt,
                                              mph_global_visit_fn *fn,
                                              void *opaque);

/* --- enriching a stream (the join idiom) --- */

/* Stream-global-table join: looks up the global table by a key taken from
 * the event (a key function as for mph_group_by: *key borrowed from the
 * event) and calls fn with the event and the table's value (borrowed until
 * fn returns; NULL with length 0 when the key is absent: a left join). fn
 * typically builds the enriched record and mph_event_emit()s it. Returns
 * fn's result; key_fn's MPH_ERR_NOENT skips the event (MPH_OK); a NULL
 * *key from key_fn looks nothing up (fn gets NULL).
 * @locality worker (during ev's callback) */
typedef mph_err_t(mph_global_join_fn)(mph_event_t *ev, const void *value,
                                      size_t value_len, void *opaque);
MPH_EXPORT mph_err_t mph_table_join_global(mph_event_t *ev,
                                           mph_global_table_t *gt,
                                           mph_key_fn *key_fn,
                                           mph_global_join_fn *fn,
                                           void *opaque);

#ifdef __cplusplus
}
#endif
#endif
