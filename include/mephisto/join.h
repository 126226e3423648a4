/*
 * mephisto/join.h — joins (Kafka Streams' KStream/KTable joins; Faust has
 * none): stream–table, windowed stream–stream and table–table.
 *
 * Every join declares its output topic and calls a joiner, which builds the
 * output value from the two sides; the record goes to the output topic under
 * the join key (partitioned by that key, murmur2) through the worker's
 * producer, from the event that caused it, so the source's commit point waits
 * for it like for any mph_event_send. A join runs on the worker that owns
 * the event's partition and takes no lock on the event path.
 *
 * Co-partitioning. A join reads both sides on the worker of the event's
 * partition, so both sides must be partitioned alike: the same partition
 * count, and keys placed by the same partitioner (murmur2, as the Java client
 * and mephisto's tables: producers of the input topics must use it too).
 * mph_app_start checks the counts (and that kafka.partitioner is not set to
 * another partitioner) and fails with MPH_ERR_INVALID and an error naming
 * both topics (a table is named by its changelog topic).
 *
 *   stream–table   each event of the stream is joined with the value the
 *                  table holds for the event's key at that moment (inner:
 *                  events whose key is absent produce nothing; left: the
 *                  joiner gets right = NULL). The table is written by the
 *                  app's agents as usual; a table default is not a value.
 *   stream–stream  (windowed) a record l of the left topic and a record r
 *                  of the right topic with the same key join when
 *                  l.ts - before <= r.ts <= l.ts + after (record timestamps,
 *                  mph_event_timestamp). Each such pair is joined once, when
 *                  its second record is processed. Per partition, stream
 *                  time is the largest record time seen on either side. A
 *                  record is late, dropped and counted (MPH_JOIN_STAT_LATE),
 *                  when its own window has closed: left records when
 *                  ts + after + grace < stream time, right records when
 *                  ts + before + grace < stream time. A record's window is
 *                  final once stream time > ts + before + after + grace: no
 *                  record that can still be accepted can pair with it; it is
 *                  then deleted, and, if it never paired, emitted alone
 *                  (left join: left records, right = NULL; outer join: both
 *                  sides, the absent side NULL). Both sides are buffered in
 *                  the internal table `<name>-join` (changelog
 *                  `<app_id>-<name>-join-changelog`, the app's `store`), so
 *                  they are recovered, checkpointed and, under exactly_once,
 *                  rolled back with the source offsets like any table: a
 *                  graceful restart neither loses nor repeats a pair; after
 *                  a crash under at_least_once, the records processed since
 *                  the last commit are processed again and their pairs (and
 *                  unmatched emissions) may repeat, as window closes do; a
 *                  record is never buffered twice (records are identified
 *                  by their offset).
 *                  Records without a timestamp or without a key are dropped
 *                  and counted (MPH_JOIN_STAT_INVALID).
 *   table–table    two tables with the same key, joined on every change of
 *                  either side made through mph_table_set, _delete, _incr or
 *                  _update (inner: when both sides hold the key, the joiner's
 *                  value; when a delete ends a joined pair, a tombstone (null
 *                  value) for the key. left: every change of the left table,
 *                  with right = NULL when absent; a delete of the left key
 *                  sends a tombstone; a change of the right table when the
 *                  left holds the key).
 *
 * Output timestamps: outputs are produced like mph_event_send's records
 * (the timestamp the send API gives them).
 *
 * Ownership: a join belongs to the app (freed with it); names, topics and
 * tables passed in are borrowed and live with the app; opaque is the
 * caller's and must outlive the app.
 * Thread safety: declare before mph_app_start on the controlling thread.
 * Joiners run on the worker thread of the event's partition, during the
 * processing of the event (or the table change) that caused the output.
 * mph_join_stat may be called from any thread.
 */
#ifndef MEPHISTO_JOIN_H
#define MEPHISTO_JOIN_H

#include "mephisto/table.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mph_join mph_join_t;
typedef struct mph_join_out mph_join_out_t;

typedef enum mph_join_kind {
    MPH_JOIN_INNER = 0,
    MPH_JOIN_LEFT = 1,
    MPH_JOIN_OUTER = 2 /* stream–stream only */
} mph_join_kind_t;

/* Builds the output of one join result: left and right are the two sides'
 * values (borrowed until return; NULL for an absent side, non-NULL with
 * length 0 for an empty or null value), key the join key (borrowed). Set
 * the output value with mph_join_out_set (copied); returning MPH_OK without
 * setting it sends nothing. Another error fails the event (on_agent_error
 * decides). Runs on the worker during ev's processing; it may send with
 * mph_event_send, but must not write a table of this join. */
typedef mph_err_t(mph_joiner_fn)(mph_event_t *ev, const void *key,
                                 size_t key_len, const void *left,
                                 size_t left_len, const void *right,
                                 size_t right_len, mph_join_out_t *out,
                                 void *opaque);

/* Sets the output value (copied; out is borrowed for the joiner's call).
 * MPH_ERR_NOMEM. */
MPH_EXPORT mph_err_t mph_join_out_set(mph_join_out_t *out, const void *value,
                                      size_t len);

/* Stream–table join named name (also the name of its agent on stream):
 * kind MPH_JOIN_INNER or MPH_JOIN_LEFT. table must not be windowed. NULL
 * with errstr on failure (NULL argument, bad kind, duplicate name, app
 * started). */
MPH_EXPORT mph_join_t *
mph_join_stream_table(mph_app_t *app, const char *name, mph_topic_t *stream,
                      mph_table_t *table, mph_join_kind_t kind,
                      mph_topic_t *output, mph_joiner_fn *fn, void *opaque,
                      char *errstr, size_t errstr_size);

/* Windowed stream–stream join named name (its agent and its buffer table
 * `<name>-join`) of left and right (two different topics): kind INNER,
 * LEFT or OUTER; before_ms, after_ms and grace_ms >= 0 and at most 2^41
 * (Kafka Streams' JoinWindows.ofTimeDifferenceAndGrace(d, g) is before =
 * after = d). NULL with errstr on failure. */
MPH_EXPORT mph_join_t *mph_join_windowed(mph_app_t *app, const char *name,
                                         mph_topic_t *left, mph_topic_t *right,
                                         mph_join_kind_t kind,
                                         int64_t before_ms, int64_t after_ms,
                                         int64_t grace_ms, mph_topic_t *output,
                                         mph_joiner_fn *fn, void *opaque,
                                         char *errstr, size_t errstr_size);

/* Table–table join named name of left and right (two different tables, not
 * windowed): kind INNER or LEFT. NULL with errstr on failure. */
MPH_EXPORT mph_join_t *mph_join_tables(mph_app_t *app, const char *name,
                                       mph_table_t *left, mph_table_t *right,
                                       mph_join_kind_t kind,
                                       mph_topic_t *output, mph_joiner_fn *fn,
                                       void *opaque, char *errstr,
                                       size_t errstr_size);

MPH_EXPORT const char *mph_join_name(const mph_join_t *join);
/* The buffer table of a windowed join (borrowed), NULL for other joins. */
MPH_EXPORT mph_table_t *mph_join_store(const mph_join_t *join);

typedef enum mph_join_stat {
    MPH_JOIN_STAT_LATE = 0, /* stream–stream records dropped: window closed */
    MPH_JOIN_STAT_INVALID,  /* records dropped: no timestamp or no key */
    MPH_JOIN_STAT_PAIRS,    /* pairs joined (joiner calls with both sides) */
    MPH_JOIN_STAT_UNMATCHED, /* unmatched records emitted (left/outer) */
    MPH_JOIN_STAT__COUNT
} mph_join_stat_t;

/* Totals since start over all workers, -1 for a NULL join or an unknown
 * counter. @locality any */
MPH_EXPORT int64_t mph_join_stat(const mph_join_t *join, mph_join_stat_t which);

#ifdef __cplusplus
}
#endif
#endif
