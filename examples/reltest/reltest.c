/*
 * reltest — the app under test of the reliability suite
 * (tests/reliability/, docs/reliability.md). It is a test plugin, not an
 * example to copy from; it lives under examples/ only so that the build
 * makes it a plugin (build/examples/libreltest.so) like the examples.
 *
 * Contract (the suite's checker relies on every line of it):
 *   input    topic `reltest.input_topic` (default "reltest-in"), created
 *            with `reltest.partitions` partitions (default 8) if missing.
 *            Keys are strings ("k<N>"); values are JSON objects
 *            {"id": unique int, "key": "k<N>", "seq": per-key sequence
 *            number, "ts": epoch ms}. Key codec string, value codec json:
 *            a record whose key is null or not UTF-8, or whose value is null
 *            or not one well-formed JSON document, never reaches the agent;
 *            the app's on_decode_error policy handles it (default
 *            dead_letter: `<app_id>-dead-letter`).
 *   output   every valid input record is forwarded unchanged (key, value,
 *            headers) to `reltest.output_topic` (default "reltest-out"),
 *            created if missing.
 *   tables   `counts`  (i64 per key): records seen with that key;
 *            `maxseq`  (i64 per key): the largest "seq" seen (-1 before
 *            any). Both follow the app's `store` setting; their changelogs
 *            are `<app_id>-counts-changelog` and `<app_id>-maxseq-changelog`
 *            (values 8-byte big-endian i64).
 *
 *   windows  only when `reltest.window_ms` is set (> 0): `wcounts`, a
 *            tumbling-window table of that size (i64 per key and window:
 *            records seen), event time from `reltest.window_time` (default
 *            "field:ts"), grace `reltest.window_grace_ms` (default 0),
 *            expiry `reltest.window_expires_ms` (default the size),
 *            `reltest.window_max_future_ms` (default the engine's). Changelog
 *            `<app_id>-wcounts-changelog`. Each closed window sends, per key,
 *            {"key": "k<N>", "start": ms, "end": ms, "count": n} keyed by the
 *            key to `reltest.close_topic` (default "reltest-closes", created
 *            with the input's partition count). Whenever the window counters
 *            (mph_window_stat) changed during an event, the worker logs
 *            "reltest: window counters pid=P late_events=.. late_writes=..
 *            invalid_time=.. future_time=.. closed=.. close_calls=..
 *            close_errors=.." (totals of process P; the largest logged value
 *            of each is its final total, whatever thread logged it).
 *
 * A valid record without an integer "seq" fails the agent (counted in
 * /stats as an agent error) after it was forwarded, counted and windowed.
 *
 *   mephisto worker --app build/examples/libreltest.so --set app_id=rel \
 *       --set store=rocksdb --set reltest.input_topic=rel-in
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mephisto.h>

struct reltest {
    mph_topic_t *out;
    mph_table_t *counts;
    mph_table_t *maxseq;
    mph_window_t *win;        /* NULL: no windowed table */
    mph_topic_t *closes;
    _Atomic int64_t logged;   /* sum of the counters last logged */
};

static const mph_window_stat_t logged_stats[] = {
    MPH_WINDOW_STAT_LATE_EVENTS, MPH_WINDOW_STAT_LATE_WRITES,
    MPH_WINDOW_STAT_INVALID_TIME, MPH_WINDOW_STAT_FUTURE_TIME,
    MPH_WINDOW_STAT_CLOSED, MPH_WINDOW_STAT_CLOSE_CALLS,
    MPH_WINDOW_STAT_CLOSE_ERRORS};
#define NLOGGED (sizeof logged_stats / sizeof logged_stats[0])

static void be64(int64_t v, unsigned char out[8])
{
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++)
        out[i] = (unsigned char)(u >> (56 - 8 * i));
}

/* Logs the window counters when they changed since the last line. The
 * counters only grow, so a changed sum means a changed counter; a thread
 * that raced another logs values at least as new as its own event's. */
static void log_window_counters(struct reltest *rt)
{
    int64_t v[NLOGGED], sum = 0;
    for (size_t i = 0; i < NLOGGED; i++) {
        v[i] = mph_window_stat(rt->win, logged_stats[i]);
        sum += v[i];
    }
    int64_t prev = atomic_load(&rt->logged);
    if (sum <= prev || !atomic_compare_exchange_strong(&rt->logged, &prev, sum))
        return;
    mph_log(MPH_LOG_INFO,
            "reltest: window counters pid=%ld late_events=%" PRId64
            " late_writes=%" PRId64 " invalid_time=%" PRId64
            " future_time=%" PRId64 " closed=%" PRId64 " close_calls=%" PRId64
            " close_errors=%" PRId64,
            (long)getpid(), v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
}

/* on_close: one record per key of the closed window. */
static mph_err_t window_closed(mph_event_t *ev, const void *key, size_t klen,
                               int64_t start, int64_t end, const void *value,
                               size_t vlen, void *opaque)
{
    struct reltest *rt = opaque;
    int64_t n = 0;
    if (vlen == 8)
        for (int i = 0; i < 8; i++)
            n = (int64_t)(((uint64_t)n << 8) | ((const unsigned char *)value)[i]);
    char buf[256];
    int len = snprintf(buf, sizeof buf,
                       "{\"key\":\"%.*s\",\"start\":%" PRId64
                       ",\"end\":%" PRId64 ",\"count\":%" PRId64 "}",
                       (int)(klen < 64 ? klen : 64), (const char *)key, start,
                       end, vlen == 8 ? n : -1);
    return mph_event_send(ev, rt->closes, MPH_PARTITION_ANY, key, klen, buf,
                          (size_t)len, NULL, 0);
}

/* The agent: forward, count, count per window, keep the largest sequence
 * number. */
static mph_err_t handle(mph_event_t *ev, void *opaque)
{
    struct reltest *rt = opaque;
    mph_err_t err = mph_event_forward(ev, rt->out);
    if (err)
        return err;
    size_t klen;
    const void *key = mph_event_key(ev, &klen);
    err = mph_table_incr(ev, rt->counts, key, klen, 1, NULL);
    if (err)
        return err;
    if (rt->win) {
        /* before mph_event_json: the window reads the time from the root */
        err = mph_window_incr(ev, rt->win, key, klen, 1);
        log_window_counters(rt);
        if (err)
            return err;
    }
    mph_json_parser_t *p = mph_event_json(ev, &err);
    if (!p)
        return err ? err : MPH_ERR_DECODE;
    int64_t seq;
    err = mph_json_get_i64(p, MPH_JSON_ROOT, "seq", &seq);
    if (err)
        return err;
    int64_t cur;
    err = mph_table_get_i64(ev, rt->maxseq, key, klen, &cur);
    if (err || seq <= cur)
        return err;
    unsigned char v[8];
    be64(seq, v);
    return mph_table_set(ev, rt->maxseq, key, klen, v, sizeof v);
}

static const char *setting(mph_app_t *app, const char *name, const char *dflt)
{
    const char *v = mph_app_get(app, name);
    return v && *v ? v : dflt;
}

static mph_table_t *declare_table(mph_app_t *app, const char *name,
                                  const char *dflt, char *err, size_t errsz)
{
    mph_table_opts_t *o = mph_table_opts_new();
    mph_table_t *t = NULL;
    if (o &&
        mph_table_opts_set(o, "key_codec", "string", err, errsz) == MPH_OK &&
        mph_table_opts_set(o, "value_codec", "i64", err, errsz) == MPH_OK &&
        mph_table_opts_set(o, "default", dflt, err, errsz) == MPH_OK)
        t = mph_table_new(app, name, o, err, errsz);
    mph_table_opts_destroy(o);
    return t;
}

static int64_t setting_i64(mph_app_t *app, const char *name, int64_t dflt,
                           bool *ok)
{
    const char *v = mph_app_get(app, name);
    if (!v || !*v)
        return dflt;
    char *end;
    long long n = strtoll(v, &end, 10);
    if (*end) {
        mph_log(MPH_LOG_ERROR, "reltest: %s=%s is not an integer", name, v);
        *ok = false;
    }
    return n;
}

/* The windowed table and its close topic, when reltest.window_ms > 0. */
static int declare_window(mph_app_t *app, struct reltest *rt, const char *parts,
                          char *err, size_t errsz)
{
    bool ok = true;
    int64_t size = setting_i64(app, "reltest.window_ms", 0, &ok);
    int64_t grace = setting_i64(app, "reltest.window_grace_ms", 0, &ok);
    int64_t expires = setting_i64(app, "reltest.window_expires_ms", size, &ok);
    int64_t future = setting_i64(app, "reltest.window_max_future_ms", -2, &ok);
    if (!ok) {
        snprintf(err, errsz, "bad reltest.window_* setting");
        return -1;
    }
    if (size <= 0)
        return 0;
    mph_table_t *t = declare_table(app, "wcounts", "0", err, errsz);
    if (!t)
        return -1;
    rt->win = mph_table_tumbling(t, size, expires, err, errsz);
    if (!rt->win)
        return -1;
    const char *spec = setting(app, "reltest.window_time", "field:ts");
    mph_err_t e = mph_window_grace(rt->win, grace);
    if (!e)
        e = mph_window_time_source(rt->win, spec);
    if (!e && future != -2)
        e = mph_window_max_future(rt->win, future);
    if (!e)
        e = mph_window_on_close(rt->win, window_closed, rt);
    if (e) {
        snprintf(err, errsz, "window settings (grace %" PRId64 ", time %s, "
                 "max_future %" PRId64 "): %s", grace, spec, future,
                 mph_err_str(e));
        return -1;
    }
    mph_topic_opts_t *o = mph_topic_opts_new();
    if (o &&
        mph_topic_opts_set(o, "create", "true", err, errsz) == MPH_OK &&
        mph_topic_opts_set(o, "partitions", parts, err, errsz) == MPH_OK)
        rt->closes = mph_topic_new(app, setting(app, "reltest.close_topic",
                                                "reltest-closes"), o, err, errsz);
    mph_topic_opts_destroy(o);
    return rt->closes ? 0 : -1;
}

int mephisto_app_init(mph_app_t *app)
{
    char err[512] = "out of memory";
    const char *in_name = setting(app, "reltest.input_topic", "reltest-in");
    const char *out_name = setting(app, "reltest.output_topic", "reltest-out");
    const char *parts = setting(app, "reltest.partitions", "8");
    struct reltest *rt = calloc(1, sizeof *rt);
    if (!rt || mph_app_keep(app, rt, free) != MPH_OK) {
        free(rt);
        goto fail;
    }
    if (strcmp(in_name, out_name) == 0) {
        strcpy(err, "input and output topic are the same");
        goto fail;
    }
    mph_topic_opts_t *o = mph_topic_opts_new();
    mph_topic_t *in = NULL;
    if (o &&
        mph_topic_opts_set(o, "create", "true", err, sizeof err) == MPH_OK &&
        mph_topic_opts_set(o, "partitions", parts, err, sizeof err) == MPH_OK &&
        mph_topic_opts_set(o, "key_codec", "string", err, sizeof err) ==
            MPH_OK &&
        mph_topic_opts_set(o, "value_codec", "json", err, sizeof err) == MPH_OK)
        in = mph_topic_new(app, in_name, o, err, sizeof err);
    mph_topic_opts_destroy(o);
    if (!in)
        goto fail;
    o = mph_topic_opts_new();
    if (o &&
        mph_topic_opts_set(o, "create", "true", err, sizeof err) == MPH_OK &&
        mph_topic_opts_set(o, "partitions", parts, err, sizeof err) == MPH_OK)
        rt->out = mph_topic_new(app, out_name, o, err, sizeof err);
    mph_topic_opts_destroy(o);
    if (!rt->out)
        goto fail;
    rt->counts = declare_table(app, "counts", "0", err, sizeof err);
    if (!rt->counts)
        goto fail;
    rt->maxseq = declare_table(app, "maxseq", "-1", err, sizeof err);
    if (!rt->maxseq)
        goto fail;
    if (declare_window(app, rt, parts, err, sizeof err) != 0)
        goto fail;
    if (!mph_agent_new(app, "reltest", in, handle, rt, err, sizeof err))
        goto fail;
    mph_log(MPH_LOG_INFO, "reltest: %s -> %s, tables counts and maxseq%s",
            in_name, out_name, rt->win ? " and the windowed wcounts" : "");
    return 0;
fail:
    mph_log(MPH_LOG_ERROR, "reltest: %s", err);
    return -1;
}
