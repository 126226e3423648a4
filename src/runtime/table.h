/*
 * Tables in the runtime: the registry (declared on the app), the worker's
 * shard map and commit-time flush, the coordinator's hand-over of shards
 * (parking, recovery), and lookups from other threads.
 */
#ifndef MPH_RUNTIME_TABLE_H
#define MPH_RUNTIME_TABLE_H

#include "mephisto/table.h"
#include "runtime/app.h"
#include "state/recovery.h"
#include "state/faust.h"
#include "state/shard.h"

struct mph_table_opts {
    char *key_codec, *value_codec;
    void *dflt;
    size_t dflt_len;
    bool has_dflt;
    int store; /* -1 app default, 0 memory, 1 rocksdb */
    int partitions;
    int64_t cache_max_keys; /* -1 app default */
    char **configs;         /* name, value, ..., NULL */
    size_t nconfigs;
    /* Faust migration (format, changelog_topic, faust_namespace) */
    bool faust;
    char *changelog_topic; /* NULL: <app_id>-<table>-changelog */
    char *faust_ns;
};

struct mph_table {
    mph_app_t *app;
    char *name;
    int index;
    struct mph_table_opts opts;
    bool rocksdb;
    bool is_i64;
    int partitions;
    size_t cache_max_keys;
    char *changelog;
    bool joined; /* takes part in a table–table join (join.c) */
    /* format=faust: the changelog's encoding (kinds set at declaration,
     * window_ms at start); NULL otherwise */
    mph__faust_fmt_t *faust;
    /* value_codec registered with mph_codec_register: values are checked
     * with its decode on set (NULL otherwise) */
    const struct mph__codec_user *uvalue;
};

/* A request from another thread for one value (MSG_TABLE_GET). Shared by
 * the requester and the worker; the last to let go frees it. */
typedef struct mph__table_req {
    int refs; /* ck_pr */
    int done_fd;
    mph_table_t *table;
    int32_t partition;
    void *key;
    size_t klen;
    mph_err_t result;
    void *value;
    size_t vlen;
} mph__table_req_t;
void mph__table_req_release(mph__table_req_t *r);

/* Shards handed over in MSG_ASSIGN / returned in MSG_REVOKED (ptr). */
typedef struct mph__shard_set {
    size_t n;
    mph__shard_t *shards[];
} mph__shard_set_t;

void mph__table_free(mph_table_t *t);

/* At start, after topics: resolves partitions, creates changelogs, opens
 * the RocksDB env. */
mph_err_t mph__tables_prepare(mph_app_t *app, char *errstr, size_t errstr_size);
void mph__tables_teardown(mph_app_t *app);

/* Worker side (@locality the worker). */
typedef struct mph__worker mph__worker_t;
mph_err_t mph__tables_worker_open(mph__worker_t *w, char *errstr, size_t errstr_size);
void mph__tables_worker_close(mph__worker_t *w);
void mph__tables_worker_take(mph__worker_t *w, mph__shard_set_t *set);
mph__shard_set_t *mph__tables_worker_release(mph__worker_t *w);
/* Flushes dirty shards to the changelog and RocksDB and waits (at most
 * wait_ns); true when everything up to now is durable and commit points
 * may be reported. Completes an active asynchronous flush first. With
 * wait_ns <= 0 nothing is sent: true only when nothing needs writing. */
bool mph__tables_flush(mph__worker_t *w, int64_t wait_ns);
/* The table flush of a commit in two steps (see table.c): begin snapshots
 * the dirty state and sends it (DONE: nothing to send, the commit points
 * may be reported now; PENDING: poll until DONE, then report the points of
 * when it began; FAILED: report nothing this time). poll returns IDLE when
 * no flush is under way. One flush at a time. */
typedef enum mph__flush_state {
    MPH__FLUSH_IDLE,
    MPH__FLUSH_PENDING,
    MPH__FLUSH_DONE,
    MPH__FLUSH_FAILED
} mph__flush_state_t;
mph__flush_state_t mph__tables_flush_begin(mph__worker_t *w);
mph__flush_state_t mph__tables_flush_poll(mph__worker_t *w);
/* Drops a flush under way (its keys stay dirty). */
void mph__tables_flush_cancel(mph__worker_t *w);
void mph__tables_changelog_acked(mph__worker_t *w, uint64_t tag, int64_t offset);
/* A changelog record was not written (the flush in progress fails); why
 * is logged, NULL when the record was dropped on purpose. */
void mph__tables_changelog_failed(mph__worker_t *w, const char *why);
void mph__tables_serve_get(mph__worker_t *w, mph__table_req_t *r);

/* For layers built on tables (windows): the event's shard of t (NULL when
 * this worker holds none for the event's partition) and the partition check
 * of a user key against the event's partition. @locality the worker */
mph__shard_t *mph__table_event_shard(mph_event_t *ev, mph_table_t *t);
mph_err_t mph__table_check_key(mph_event_t *ev, mph_table_t *t, const void *key, size_t klen);
/* format=faust tables: whether value has the Faust form of t's value codec
 * (MPH_ERR_UTF8, MPH_ERR_TYPE, MPH_ERR_DECODE, logged, when not); MPH_OK for
 * other tables. @locality the worker */
mph_err_t mph__table_check_value(mph_table_t *t, const void *value, size_t vlen);
/* mph_table_lookup of a stored key in the shard of partition (a windowed
 * table's storage key lives in its user key's partition). @locality any */
mph_err_t mph__table_lookup_at(mph_app_t *app, mph_table_t *t, int32_t partition,
                               const void *key, size_t klen, void **value, size_t *vlen,
                               int timeout_ms);
/* Counts a table operation in the worker's sensors (0 get, 1 set, 2 del, 3 miss). */
void mph__table_count_op(mph_event_t *ev, mph_table_t *t, int op);

/* Coordinator side (@locality coordinator). handover requires that every
 * MSG_REVOKE sent to the worker was answered (see table.c); the set it
 * returns holds the shards the worker does not keep yet, not recovered
 * (restore.c recovers them), and is recorded as lent to the worker. park takes a set back (from
 * MSG_REVOKED, or a MSG_ASSIGN that could not be posted); with drop, its
 * shards are destroyed (their state was not durable). */
mph__shard_set_t *mph__tables_handover(mph_app_t *app, int worker, const int32_t *parts,
                                       size_t n, char *errstr, size_t errstr_size);
void mph__tables_park(mph_app_t *app, mph__shard_set_t *set, bool drop);

#endif
