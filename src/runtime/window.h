/*
 * Windowed tables in the runtime: the window declaration and the pure
 * arithmetic behind it (tested on its own), see window.c.
 */
#ifndef MPH_RUNTIME_WINDOW_H
#define MPH_RUNTIME_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mephisto/window.h"

enum mph__window_kind {
    MPH__WINDOW_TUMBLING = 0,
    MPH__WINDOW_HOPPING,
    MPH__WINDOW_SLIDING,
    MPH__WINDOW_SESSION /* size is the gap; see window_session.c */
};
enum mph__window_time {
    MPH__WINDOW_TIME_EVENT = 0,
    MPH__WINDOW_TIME_WALL,
    MPH__WINDOW_TIME_FIELD
};

/* Largest size, step, grace, expiry (about 69 years) and event time (about
 * 285,000 years) accepted: sums of them never overflow int64_t. */
#define MPH__WINDOW_SPAN_MAX (INT64_C(1) << 41)
#define MPH__WINDOW_TIME_MAX (INT64_C(1) << 53)
/* Most windows one time may belong to (hopping size/step). */
#define MPH__WINDOW_PER_TIME_MAX 1024
/* Bytes of the window-start prefix of a storage key, and the longest user
 * key (the store's 65535-byte limit minus the prefix). */
#define MPH__WINDOW_PREFIX  8
#define MPH__WINDOW_KEY_MAX (65535u - MPH__WINDOW_PREFIX)
/* The reserved per-shard key holding stream time and closing progress:
 * shorter than any storage key, so it can never collide with one. */
#define MPH__WINDOW_META_KEY  "\0wmeta1"
#define MPH__WINDOW_META_KLEN 7
#define MPH__WINDOW_META_VLEN 16

struct mph_window {
    mph_table_t *table;
    struct mph_window *next; /* registry (window.c) */
    int kind;                /* enum mph__window_kind */
    int64_t size;            /* every window's length: end = start + size */
    int64_t step;            /* hopping step; = size for tumbling */
    int64_t before, after;   /* sliding */
    int64_t expires;
    int64_t grace;
    int64_t max_future; /* -1: no limit */
    int time_src;       /* enum mph__window_time */
    char *field;        /* "field:" path (owned) */
    mph_window_close_fn *on_close;
    void *close_opaque;
    mph_window_merge_fn *merge; /* sessions: NULL is the default merge */
    void *merge_opaque;
    uint64_t stats[MPH_WINDOW_STAT__COUNT]; /* ck_pr atomics */
};

/* Validates and fills the shape of w (kind, size, step, sliding bounds,
 * expiry); a, b are size/step (hopping), size/- (tumbling) or
 * before/after (sliding). Everything else is set to its default. NULL-safe
 * for errstr. @locality any */
mph_err_t mph__window_init(struct mph_window *w, int kind, int64_t a, int64_t b,
                           int64_t expires, char *errstr, size_t errstr_size);

/* floor(a / b) for b > 0, also for negative a. */
int64_t mph__window_floor_div(int64_t a, int64_t b);
/* Windows containing t, ascending, as mph_window_ranges. Returns the count
 * (may exceed cap). */
size_t mph__window_starts(const struct mph_window *w, int64_t t, int64_t *out,
                          size_t cap);
/* The start of the window of t (the latest containing t). */
int64_t mph__window_current(const struct mph_window *w, int64_t t);
/* True when the window starting at start is closed or due to close at
 * stream time st (end + grace <= st). */
bool mph__window_due(const struct mph_window *w, int64_t start, int64_t st);
/* The stream time at which the window starting at start is deleted. */
int64_t mph__window_expiry(const struct mph_window *w, int64_t start);

/* Storage keys: writes start (8 bytes, big-endian with the sign bit
 * flipped, so bytewise order is numeric order) then key into out, which
 * has room for MPH__WINDOW_PREFIX + klen bytes. Returns the length. */
size_t mph__window_key(int64_t start, const void *key, size_t klen,
                       unsigned char *out);
/* Splits a storage key: false for keys shorter than the prefix (the meta
 * key or foreign keys). *key points into ck. */
bool mph__window_key_parse(const void *ck, size_t cklen, int64_t *start,
                           const void **key, size_t *klen);
/* The meta value: stream time and closed-through watermark (every window
 * with end + grace <= closed is closed), 8 bytes big-endian each. */
void mph__window_meta_encode(int64_t st, int64_t closed, unsigned char out[16]);
bool mph__window_meta_decode(const void *v, size_t vlen, int64_t *st,
                             int64_t *closed);

/* The state of one mph_window_update / merge call (window.c). With cap
 * set, mph_window_update_set copies the value into *cap (a session's new
 * value, window_session.c) instead of writing the shard. */
struct mph__window_capture {
    unsigned char *buf;
    size_t len, size;
    bool set;
};
struct mph_window_update {
    void *x;
    struct mph__shard *sh;
    size_t cklen;
    int64_t start;
    const void *key;
    size_t klen;
    bool existed;
    bool set;
    struct mph__window_capture *cap;
};
/* Copies value into c (growing it). */
mph_err_t mph__window_capture_set(struct mph__window_capture *c,
                                  const void *value, size_t len);

/* The event's raw time per w's time source; MPH_ERR_RANGE with *future for
 * a time beyond max_future (window.c). @locality worker */
mph_err_t mph__window_compute_time(mph_event_t *ev, const struct mph_window *w,
                                   int64_t *t, bool *future);
void mph__window_stat_add(struct mph_window *w, mph_window_stat_t s, int64_t n);

/* --- session windows (window_session.c); @locality worker unless said */

/* The points of a session whose last event is at end: it closes when
 * stream time reaches end + gap + grace + 1 (no event can join it any
 * more), and is deleted at end + 1 + gap + max(expires, grace). */
int64_t mph__session_close_point(const struct mph_window *w, int64_t end);
int64_t mph__session_expire_point(const struct mph_window *w, int64_t end);
/* Merge logic (pure, @locality any): of a key's n sessions, given as
 * (start, end) at se[i * stride], se[i * stride + 1] (sorted by start,
 * more than gap apart), those an event at t joins: [*first, *first +
 * *count), with the merged session's bounds in *start and *end (t alone
 * when *count is 0). end is the last event time (inclusive). */
void mph__session_find(const int64_t *se, size_t stride, size_t n, int64_t gap,
                       int64_t t, size_t *first, size_t *count, int64_t *start,
                       int64_t *end);
/* The default merge of two session values: the sum of two 8-byte
 * big-endian i64 values, else the later session's value (b). Writes into
 * c. @locality any */
mph_err_t mph__session_default_merge(const void *a, size_t alen, const void *b,
                                     size_t blen,
                                     struct mph__window_capture *c);
/* Stored session values: the user's value, then the session's last event
 * time (8 bytes big-endian) and a 4-byte tag. */
#define MPH__SESSION_SUFFIX 12
size_t mph__session_value_encode(const void *v, size_t vl, int64_t end,
                                 unsigned char *out);
bool mph__session_value_decode(const void *v, size_t vl, size_t *user_len,
                               int64_t *end);

enum {
    MPH__SESSION_INCR,
    MPH__SESSION_SET,
    MPH__SESSION_DELETE,
    MPH__SESSION_UPDATE
};
mph_err_t mph__session_write(mph_event_t *ev, struct mph_window *w,
                             const void *key, size_t klen, int kind, int64_t by,
                             const void *val, size_t vlen,
                             mph_window_update_fn *fn, void *opaque);
mph_err_t mph__session_advance(mph_event_t *ev, struct mph_window *w);
mph_err_t mph__session_stream_time(mph_event_t *ev, struct mph_window *w,
                                   int64_t *t);
mph_err_t mph__session_get(mph_event_t *ev, struct mph_window *w,
                           const void *key, size_t klen,
                           mph_window_which_t which, int64_t arg,
                           const void **value, size_t *value_len,
                           int64_t *start, int64_t *end);
mph_err_t mph__session_foreach_window(mph_event_t *ev, struct mph_window *w,
                                      const void *key, size_t klen,
                                      mph_window_visit_fn *fn, void *opaque);
mph_err_t mph__session_foreach_key(mph_event_t *ev, struct mph_window *w,
                                   mph_window_key_fn *fn, void *opaque);
/* @locality any */
mph_err_t mph__session_lookup(mph_app_t *app, struct mph_window *w,
                              const void *key, size_t klen,
                              mph_window_which_t which, int64_t arg,
                              void **value, size_t *value_len, int64_t *start,
                              int64_t *end, int timeout_ms);

/* Parses a time-source spec ("event", "wall", "field:<path>"): the kind in
 * *src and, for a field, the path (malloc'd) in *field. */
mph_err_t mph__window_parse_time_source(const char *spec, int *src,
                                        char **field);

/* window_idle_close_ms: closes (and expires) what is due at wall time
 * now_ms on ev's shard of w, an idle partition (punctuate.c).
 * @locality the worker owning the shard */
mph_err_t mph__window_idle_close(mph_event_t *ev, mph_window_t *w, int64_t now_ms);

#endif
