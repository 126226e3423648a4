/*
 * mephisto/window.h — windowed tables (Faust's Table.tumbling(), .hopping()
 * and sliding windows).
 *
 * A window handle turns a table into a windowed table: every value belongs
 * to a (key, window) pair, where a window is a range of time
 * [start, end) — `end` is exclusive everywhere in this API:
 *
 *   tumbling(size)        windows [k*size, (k+1)*size): each time is in one
 *   hopping(size, step)   windows [k*step, k*step + size): each time is in
 *                         about size/step windows (overlapping)
 *   sliding(before, after) one window per event time t:
 *                         [t - before, t + after + 1), i.e. t-before..t+after
 *                         inclusive (Faust's SlidingWindow)
 *   session(gap)          per key, runs of events at most gap apart
 *                         (Kafka Streams' SessionWindows): see
 *                         mph_table_session
 *
 * Times are milliseconds since the Unix epoch, taken per table from the
 * record timestamp (default), a field of the event's JSON or record value,
 * or the wall clock (mph_window_time_source).
 *
 * Writes (incr, set, update, delete) apply to every window that contains the
 * event's time: one for tumbling and sliding, all overlapping ones for
 * hopping (so each hopping window holds its full value). Reads name one
 * window: the current event's (CURRENT), wall-clock now's (NOW), the one of
 * the event's time minus d (DELTA), or a window start (AT). For hopping
 * windows "the window of time t" is the latest one containing t (start =
 * floor(t/step)*step), as in Faust.
 *
 * Stream time and closing. Each shard (table partition) keeps its stream
 * time: the largest event time it has seen. A window closes when stream time
 * reaches end + grace; on_close is then called once for every key the window
 * holds, with the window's final value. Writes to a window that is closed
 * (or due to close) are dropped and counted as late; an event all of whose
 * windows are closed is a late event. Windows close on the event path, when
 * a write or mph_window_advance() moves stream time: a partition that gets
 * no events closes nothing. The stream time and the closing progress live in
 * the shard itself, so they are checkpointed and restored with the data:
 * after a graceful restart no window closes twice; after a crash under
 * at_least_once, windows that closed after the shard's last commit close
 * again (only those: the repeats are bounded by what one commit covers).
 *
 * Expiry. A closed window is deleted once stream time reaches
 * end + max(expires, grace): its keys are deleted from memory, RocksDB and
 * (as tombstones) from the changelog at the next commit. expires 0 deletes
 * windows as soon as they close (unlike Faust, where 0 keeps them forever).
 *
 * Bad times. An event whose time is negative or missing (no timestamp, the
 * field absent or not a time) is dropped by every write and counted as
 * MPH_WINDOW_STAT_INVALID_TIME; an event more than max_future ms ahead of
 * the wall clock (default one day; see mph_window_max_future) is dropped
 * and counted as MPH_WINDOW_STAT_FUTURE_TIME, so one bad timestamp cannot
 * close every window. Dropped writes return MPH_OK.
 *
 * Storage. The table's keys are an 8-byte window start (big-endian, sign
 * flipped so negative starts sort first) followed by the user key, plus one
 * reserved 7-byte key per shard holding the stream time; user keys are at
 * most 65527 bytes (session windows: the key is the session start, and the
 * stored value is followed by 12 bytes, the last event time and a tag).
 * A windowed table must be written only through this API
 * (mph_table_set etc. on it would bypass the window index), and its
 * composite keys are not reachable with mph_table_lookup or the web's
 * /tables route.
 *
 * Ownership: a window handle belongs to the app (freed with it). Values
 * returned by reads are borrowed until the next call on this table from the
 * same callback or the callback's return.
 * Thread safety: declare and configure before mph_app_start on the
 * controlling thread. Calls taking an event run on that event's worker
 * thread during its callback; callbacks run there too. mph_window_stat and
 * the pure functions (mph_window_ranges, mph_window_current) may be called
 * from any thread.
 */
#ifndef MEPHISTO_WINDOW_H
#define MEPHISTO_WINDOW_H

#include "mephisto/table.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mph_window mph_window_t;

/* --- declaring (before start, controlling thread) --- */

/* Makes table a tumbling-window table with windows of size_ms, kept
 * expires_ms after they end (see "Expiry"). Returns the window handle
 * (owned by the app), or NULL with errstr: MPH_ERR_INVALID-class problems
 * (size_ms < 1 or above 2^41, expires_ms < 0), a table that already has a
 * window, or an app already started. */
MPH_EXPORT mph_window_t *mph_table_tumbling(mph_table_t *table, int64_t size_ms,
                                            int64_t expires_ms, char *errstr,
                                            size_t errstr_size);
/* Hopping windows of size_ms starting every step_ms (1 <= step_ms <=
 * size_ms, at most 1024 windows per time). */
MPH_EXPORT mph_window_t *mph_table_hopping(mph_table_t *table, int64_t size_ms,
                                           int64_t step_ms, int64_t expires_ms,
                                           char *errstr, size_t errstr_size);
/* Sliding windows: one window [t - before_ms, t + after_ms] per event
 * time t (before_ms, after_ms >= 0). */
MPH_EXPORT mph_window_t *mph_table_sliding(mph_table_t *table,
                                           int64_t before_ms, int64_t after_ms,
                                           int64_t expires_ms, char *errstr,
                                           size_t errstr_size);

/* Session windows (Kafka Streams' SessionWindows; Faust has none): per key,
 * a session is a run of events no more than gap_ms apart. An event at t
 * joins every session of its key with start - gap_ms <= t <= end + gap_ms
 * (where end is the session's last event time); an event that falls
 * between two sessions within the gap of both (a late event, within
 * grace) merges them into one, their values combined by the merge
 * function (mph_window_on_merge). A session closes once stream time
 * passes its last event + gap_ms + grace: on_close is then called once,
 * with start and end = last event + 1. An event is late (dropped, counted)
 * when it is more than grace behind stream time, as for the other windows:
 * such an event could only join a closed session. Expiry:
 * deleted at last event + 1 + gap_ms + max(expires_ms, grace).
 * 1 <= gap_ms <= 2^41. See "Session windows" in docs/windows.md for how
 * reads name a session. */
MPH_EXPORT mph_window_t *mph_table_session(mph_table_t *table, int64_t gap_ms,
                                           int64_t expires_ms, char *errstr,
                                           size_t errstr_size);

/* The window handle of table, or NULL when it is not windowed. @locality any */
MPH_EXPORT mph_window_t *mph_table_window(const mph_table_t *table);
/* The windowed table (borrowed; lives with the app). @locality any */
MPH_EXPORT mph_table_t *mph_window_table(const mph_window_t *w);

/* How long after its end a window still accepts writes (default 0).
 * MPH_ERR_RANGE for < 0 or above 2^41; MPH_ERR_STATE after start. */
MPH_EXPORT mph_err_t mph_window_grace(mph_window_t *w, int64_t grace_ms);
/* Where event times come from:
 *   "event"         the record's timestamp (default)
 *   "wall"          the wall clock when the write happens
 *   "field:<path>"  a field of the value: for a record topic, a TIMESTAMP
 *                   or I64 field (nested records joined with '.'); else the
 *                   value parsed as JSON (mph_event_json), a path as in
 *                   mph_json_find holding an integer of epoch ms or an
 *                   RFC 3339 string. Reading it is a lookup from the JSON
 *                   root: handles the callback obtained from the parser
 *                   before the first window call of an event end.
 * spec is copied. MPH_ERR_INVALID for another spec; MPH_ERR_STATE after
 * start. */
MPH_EXPORT mph_err_t mph_window_time_source(mph_window_t *w, const char *spec);
/* Events more than max_future_ms ahead of the wall clock are dropped
 * (default 86400000, one day; -1: no limit). MPH_ERR_RANGE below -1;
 * MPH_ERR_STATE after start. */
MPH_EXPORT mph_err_t mph_window_max_future(mph_window_t *w,
                                           int64_t max_future_ms);

/* Called once per key of each window that closes, in window order, on the
 * worker thread that owns the partition, during the call (a write or
 * mph_window_advance) whose event moved stream time past the window's
 * end + grace. ev is that event: use it to send results (mph_event_send),
 * which then hold back its commit point like any send. key and value are
 * borrowed for the call; value is the window's final value. The callback
 * must not use this table (reads or writes: MPH_ERR_STATE). Returning an
 * error stops closing at this window: the error is returned by the call
 * that closed it, and the window (all its keys) is closed again at the
 * next event that moves stream time. */
typedef mph_err_t(mph_window_close_fn)(mph_event_t *ev, const void *key,
                                       size_t key_len, int64_t start,
                                       int64_t end, const void *value,
                                       size_t value_len, void *opaque);
/* Sets the close callback (NULL: none). opaque is passed untouched (owned
 * by the caller; must outlive the app). MPH_ERR_STATE after start. */
MPH_EXPORT mph_err_t mph_window_on_close(mph_window_t *w,
                                         mph_window_close_fn *fn, void *opaque);

/* Session windows: combines the values of two sessions that an event
 * merges (a, the earlier session's; b, the later one's; borrowed for the
 * call) into the merged session's value, which fn sets with
 * mph_window_update_set(out, ...) (copied). Returning MPH_OK without
 * setting keeps b; another error fails the write (nothing changes) and is
 * returned by it. The event's write (incr, set, update) then applies to
 * the merged value. Runs on the worker thread; must not use this table.
 * Without one, two 8-byte values are added as big-endian i64 (counts, as
 * mph_window_incr keeps them), other values keep the later session's. */
typedef struct mph_window_update mph_window_update_t;
typedef mph_err_t(mph_window_merge_fn)(const void *a, size_t a_len,
                                       const void *b, size_t b_len,
                                       mph_window_update_t *out, void *opaque);
/* Sets the merge function of a session window (opaque untouched, must
 * outlive the app). MPH_ERR_INVALID for a window that is not a session
 * window; MPH_ERR_STATE after start. */
MPH_EXPORT mph_err_t mph_window_on_merge(mph_window_t *w,
                                         mph_window_merge_fn *fn, void *opaque);

/* --- window arithmetic (pure; @locality any) --- */

/* Starts of the windows that contain time_ms, ascending, into starts[0..cap)
 * (*n is the number of windows, which may exceed cap: then only the first
 * cap are written). MPH_ERR_INVALID for a NULL argument, and for session
 * windows (both calls: a session depends on its key's events). */
MPH_EXPORT mph_err_t mph_window_ranges(const mph_window_t *w, int64_t time_ms,
                                       int64_t *starts, size_t cap, size_t *n);
/* The start of "the window of time_ms" (see above) and its end. */
MPH_EXPORT mph_err_t mph_window_current(const mph_window_t *w, int64_t time_ms,
                                        int64_t *start, int64_t *end);

/* --- inside an agent callback, on the event's shard (@locality worker) ---
 *
 * Errors common to these calls: MPH_ERR_INVALID (NULL argument),
 * MPH_ERR_PARTITION (the key belongs to another partition, or this worker
 * holds no shard of the table for the event's partition), MPH_ERR_RANGE (a
 * key over 65527 bytes), MPH_ERR_STATE (called from this table's own close,
 * update or foreach callback), MPH_ERR_NOMEM, MPH_ERR_STORE (RocksDB). */

/* The event's time per the table's time source: MPH_OK, MPH_ERR_NOENT (no
 * timestamp / field absent), MPH_ERR_TYPE (field is not a time),
 * MPH_ERR_DECODE (value is not JSON), MPH_ERR_RANGE (negative, or beyond
 * max_future). Does not touch stream time. */
MPH_EXPORT mph_err_t mph_window_event_time(mph_event_t *ev, mph_window_t *w,
                                           int64_t *time_ms);
/* Moves stream time to the event's time if that is later, closing and
 * expiring windows as needed, without writing. Returns the close
 * callback's error, if any. */
MPH_EXPORT mph_err_t mph_window_advance(mph_event_t *ev, mph_window_t *w);
/* The shard's stream time: MPH_OK, or MPH_ERR_NOENT before its first
 * valid event. */
MPH_EXPORT mph_err_t mph_window_stream_time(mph_event_t *ev, mph_window_t *w,
                                            int64_t *time_ms);

/* Adds by to the value of key in every open window of the event (absent:
 * the table's default if it is 8 bytes, else 0; values are 8-byte
 * big-endian i64 like mph_table_incr). MPH_ERR_TYPE when a stored value is
 * not 8 bytes. Late or bad-time events are dropped (MPH_OK, counted); the
 * close callback's error is returned after the write is applied. */
MPH_EXPORT mph_err_t mph_window_incr(mph_event_t *ev, mph_window_t *w,
                                     const void *key, size_t key_len,
                                     int64_t by);
/* Sets key to a copy of value in every open window of the event. */
MPH_EXPORT mph_err_t mph_window_set(mph_event_t *ev, mph_window_t *w,
                                    const void *key, size_t key_len,
                                    const void *value, size_t value_len);
/* Deletes key from every open window of the event (absent: MPH_OK). */
MPH_EXPORT mph_err_t mph_window_delete(mph_event_t *ev, mph_window_t *w,
                                       const void *key, size_t key_len);

/* Read-modify-write per open window of the event: fn gets the window and
 * the current value (NULL when absent; valid until fn returns or calls
 * mph_window_update_set) and either sets the new value with
 * mph_window_update_set (copied), returns MPH_ERR_NOENT to delete the key
 * from that window, returns MPH_OK without setting to leave it, or returns
 * another error to stop (returned by mph_window_update). upd is borrowed
 * for the call. */
typedef mph_err_t(mph_window_update_fn)(int64_t start, int64_t end,
                                        const void *old, size_t old_len,
                                        mph_window_update_t *upd, void *opaque);
MPH_EXPORT mph_err_t mph_window_update_set(mph_window_update_t *upd,
                                           const void *value, size_t value_len);
MPH_EXPORT mph_err_t mph_window_update(mph_event_t *ev, mph_window_t *w,
                                       const void *key, size_t key_len,
                                       mph_window_update_fn *fn, void *opaque);

/* Which window a read names. */
typedef enum mph_window_which {
    MPH_WINDOW_CURRENT = 0, /* the window of the event's time (arg unused) */
    MPH_WINDOW_NOW = 1,     /* the window of the wall clock now (arg unused) */
    MPH_WINDOW_DELTA = 2,   /* the window of the event's time minus arg ms */
    MPH_WINDOW_AT = 3       /* the window starting at arg */
} mph_window_which_t;

/* The value of key in the window named by which/arg: MPH_OK with *value
 * borrowed, or MPH_ERR_NOENT when absent and the table has no default.
 * Session windows: CURRENT, DELTA and NOW name the key's session that
 * contains the time (start <= t < end), AT the one starting at arg; an
 * absent session is MPH_ERR_NOENT (the default only seeds incr).
 * CURRENT and DELTA with a bad event time: that time's error (see
 * mph_window_event_time). Reads never move stream time; a closed window
 * is readable until it expires. start/end of the window go to *start and
 * *end when not NULL. */
MPH_EXPORT mph_err_t mph_window_get(mph_event_t *ev, mph_window_t *w,
                                    const void *key, size_t key_len,
                                    mph_window_which_t which, int64_t arg,
                                    const void **value, size_t *value_len,
                                    int64_t *start, int64_t *end);
/* As mph_window_get for i64 values (absent: the default, else 0).
 * MPH_ERR_TYPE when the value is not 8 bytes. */
MPH_EXPORT mph_err_t mph_window_get_i64(mph_event_t *ev, mph_window_t *w,
                                        const void *key, size_t key_len,
                                        mph_window_which_t which, int64_t arg,
                                        int64_t *out);

/* From any thread while the app runs (@locality any): an owned copy of
 * key's value (free() it) in the window named by which/arg, read on the
 * worker that owns the key's partition like mph_table_lookup. which is
 * MPH_WINDOW_NOW (the window of the wall clock now) or MPH_WINDOW_AT (the
 * window starting at arg); CURRENT and DELTA need an event
 * (MPH_ERR_INVALID). Session windows: only AT (the session of key that
 * starts at arg, as on_close and mph_window_foreach_window report it;
 * *end is its last event + 1); NOW is MPH_ERR_RANGE, an absent session
 * MPH_ERR_NOENT. The window goes to *start / *end when not NULL.
 * Errors: MPH_ERR_NOENT (absent and the table has no default),
 * MPH_ERR_PARTITION (this process does not hold the key's partition),
 * MPH_ERR_TIMEOUT (the worker did not answer within timeout_ms),
 * MPH_ERR_STATE (the app is not running), MPH_ERR_RANGE (key over 65527
 * bytes, or arg out of range), MPH_ERR_INVALID, MPH_ERR_NOMEM. */
MPH_EXPORT mph_err_t mph_window_lookup(mph_app_t *app, mph_window_t *w,
                                       const void *key, size_t key_len,
                                       mph_window_which_t which, int64_t arg,
                                       void **value, size_t *value_len,
                                       int64_t *start, int64_t *end,
                                       int timeout_ms);

/* Visits every window of the shard that holds key and is not yet deleted,
 * in start order: closed is true for windows already closed. Values are
 * borrowed for the call. fn returns MPH_OK to go on, anything else to stop
 * (returned). fn must not use this table. */
typedef mph_err_t(mph_window_visit_fn)(int64_t start, int64_t end, bool closed,
                                       const void *value, size_t value_len,
                                       void *opaque);
MPH_EXPORT mph_err_t mph_window_foreach_window(mph_event_t *ev, mph_window_t *w,
                                               const void *key, size_t key_len,
                                               mph_window_visit_fn *fn,
                                               void *opaque);
/* Visits every key that some window of the event's shard holds (the key
 * index), once, in no particular order, with the number of windows that
 * hold it. fn returns MPH_OK to go on; fn must not use this table. */
typedef mph_err_t(mph_window_key_fn)(const void *key, size_t key_len,
                                     size_t windows, void *opaque);
MPH_EXPORT mph_err_t mph_window_foreach_key(mph_event_t *ev, mph_window_t *w,
                                            mph_window_key_fn *fn,
                                            void *opaque);

/* --- counters (@locality any; totals over all workers since start) --- */

typedef enum mph_window_stat {
    MPH_WINDOW_STAT_LATE_EVENTS = 0, /* events dropped: every window closed */
    MPH_WINDOW_STAT_LATE_WRITES,     /* window writes dropped: window closed */
    MPH_WINDOW_STAT_INVALID_TIME,    /* events dropped: no or negative time */
    MPH_WINDOW_STAT_FUTURE_TIME,     /* events dropped: beyond max_future */
    MPH_WINDOW_STAT_CLOSED,          /* windows closed */
    MPH_WINDOW_STAT_CLOSE_CALLS,     /* on_close calls (one per key) */
    MPH_WINDOW_STAT_CLOSE_ERRORS,    /* on_close calls that returned an error */
    MPH_WINDOW_STAT_EXPIRED,         /* windows deleted by expiry */
    MPH_WINDOW_STAT_EXPIRED_KEYS,    /* (window, key) pairs deleted by expiry */
    MPH_WINDOW_STAT_LIVE_WINDOWS,    /* windows held now by this process */
    MPH_WINDOW_STAT_LIVE_PAIRS,      /* (window, key) pairs held now */
    MPH_WINDOW_STAT__COUNT
} mph_window_stat_t;

/* The counter's value, or -1 for an unknown counter or a NULL handle. */
MPH_EXPORT int64_t mph_window_stat(const mph_window_t *w,
                                   mph_window_stat_t which);

#ifdef __cplusplus
}
#endif
#endif
