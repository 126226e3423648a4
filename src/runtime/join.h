/*
 * Joins in the runtime (join.c): the start-time co-partitioning check and
 * the table-change hook that table–table joins ride on.
 */
#ifndef MPH_RUNTIME_JOIN_H
#define MPH_RUNTIME_JOIN_H

#include "mephisto/join.h"

/* At start, after the topics' partition counts are known and before the
 * tables are prepared: checks every join's co-partitioning (MPH_ERR_INVALID
 * with errstr naming both sides) and sizes the windowed joins' buffer
 * tables like their topics. @locality the controlling thread */
mph_err_t mph__joins_prepare(mph_app_t *app, char *errstr, size_t errstr_size);

/* After a successful write of table t (a table with `joined` set) for key
 * by ev: value is the new value, NULL after a delete of a present key.
 * Sends the table–table joins' results. @locality the worker */
mph_err_t mph__join_table_changed(mph_event_t *ev, mph_table_t *t,
                                  const void *key, size_t klen,
                                  const void *value, size_t vlen);

/* Up to max of app's joins, in declaration order, into out; returns how
 * many the app has (the stats snapshot, monitor.c). @locality any */
size_t mph__joins_list(const mph_app_t *app, const mph_join_t **out, size_t max);

#endif
