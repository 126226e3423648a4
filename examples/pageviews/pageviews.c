/*
 * Page views, the Faust way: a declared record type, group_by(page), a
 * table of totals and a tumbling-window table of views per minute.
 *
 * Contract (checked from outside this repository; keep every line):
 *   input    JSON records {"user": string, "page": string, "ts": epoch ms}
 *            on topic `pageviews` (setting pageviews.input_topic), created
 *            if missing. Declared as the record type PageView: `user` and
 *            `page` required strings (`page` at most 65527 bytes, the
 *            longest key of a windowed table), `ts` an optional timestamp (epoch ms
 *            integer, or an RFC 3339 string), not negative; other fields
 *            are ignored. A record that is not one JSON document, or breaks
 *            the type (a required field missing or null, `user` not a
 *            string, ...), never reaches an agent: the app's
 *            on_decode_error policy handles it, by default dead_letter:
 *            it goes to `<app_id>-dead-letter` with an mph.error header.
 *   group_by page: each view is sent, keyed by its page, to the internal
 *            topic `<app_id>-pages-repartition` as
 *            {"user": ..., "page": ..., "ts": <event time>}, where the
 *            event time is the record's `ts`, or its Kafka timestamp when
 *            `ts` is absent (a record with neither is counted in
 *            page_views only).
 *   tables   `page_views` (i64 per page): every view of the page, at
 *            /tables/page_views/<url-encoded page> as a JSON number.
 *            `page_views_per_minute` (i64 per page and window): tumbling
 *            60 s windows [k*60000, (k+1)*60000) by event time, at
 *            /tables/page_views_per_minute/<url-encoded page>?window=<start
 *            ms> (without window=: the window of now). A window accepts
 *            views until stream time (the largest event time its shard has
 *            seen) reaches its end + pageviews.grace_ms (default 10000);
 *            a later view is late: dropped from the windowed table, counted
 *            as mephisto_window_late_events_total{table=
 *            "page_views_per_minute"} in /metrics, but still counted in
 *            page_views. Windows are kept pageviews.window_expires_ms
 *            (default 86400000, a day) after they end, then deleted.
 *
 * Both tables follow the app's `store` setting; the app runs under either
 * processing_guarantee by that setting alone.
 *
 *   mephisto worker --app build/examples/libpageviews.so --set app_id=pv
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mephisto.h>

#define WINDOW_MS 60000
#define PAGE_MAX 65527 /* bytes: the longest key of a windowed table */

struct pageviews {
    mph_record_type_t *view; /* PageView, the input's codec */
    size_t f_user, f_page, f_ts;
    mph_topic_t *pages;      /* <app_id>-pages-repartition */
    mph_table_t *counts;     /* page_views */
    mph_window_t *minutes;   /* page_views_per_minute */
};

static void pageviews_free(void *p)
{
    struct pageviews *pv = p;
    if (pv)
        mph_record_type_destroy(pv->view);
    free(pv);
}

/* input → group_by(page): the view keyed by its page, with its event time
 * written into "ts". */
static mph_err_t by_page(mph_event_t *ev, void *opaque)
{
    struct pageviews *pv = opaque;
    const mph_record_t *rec = mph_event_record(ev);
    if (!rec)
        return MPH_ERR_DECODE;
    const char *user, *page;
    size_t user_len, page_len;
    mph_err_t err = mph_record_get_str(rec, pv->f_user, &user, &user_len);
    if (!err)
        err = mph_record_get_str(rec, pv->f_page, &page, &page_len);
    if (err)
        return err;
    int64_t ts;
    if (mph_record_get_timestamp(rec, pv->f_ts, &ts) != MPH_OK)
        ts = mph_event_timestamp(ev); /* -1 when the record has none */
    mph_jsonw_t *w = mph_jsonw_new(user_len + page_len + 64, NULL, 0);
    if (!w)
        return MPH_ERR_NOMEM;
    const char *json = NULL;
    size_t len = 0;
    err = mph_jsonw_object_begin(w);
    if (!err)
        err = mph_jsonw_key(w, "user", 4);
    if (!err)
        err = mph_jsonw_str(w, user, user_len);
    if (!err)
        err = mph_jsonw_key(w, "page", 4);
    if (!err)
        err = mph_jsonw_str(w, page, page_len);
    if (!err && ts >= 0) {
        err = mph_jsonw_key(w, "ts", 2);
        if (!err)
            err = mph_jsonw_i64(w, ts);
    }
    if (!err)
        err = mph_jsonw_object_end(w);
    if (!err)
        err = mph_jsonw_finish(w, &json, &len);
    if (!err)
        err = mph_event_send(ev, pv->pages, MPH_PARTITION_ANY, page, page_len, json,
                             len, NULL, 0);
    mph_jsonw_destroy(w);
    return err;
}

/* pages → page_views[page] += 1 and page_views_per_minute[page, window of
 * ts] += 1, on the shard that owns the page. */
static mph_err_t count(mph_event_t *ev, void *opaque)
{
    struct pageviews *pv = opaque;
    size_t len;
    const void *page = mph_event_key(ev, &len);
    mph_err_t err = mph_table_incr(ev, pv->counts, page, len, 1, NULL);
    if (err)
        return err;
    /* late or timeless views are dropped and counted by the window */
    return mph_window_incr(ev, pv->minutes, page, len, 1);
}

/* A non-negative integer setting (dflt when unset). */
static int setting_ms(mph_app_t *app, const char *name, int64_t dflt, int64_t *out,
                      char *err, size_t errsz)
{
    const char *v = mph_app_get(app, name);
    *out = dflt;
    if (!v || !*v)
        return 0;
    char *end;
    long long n = strtoll(v, &end, 10);
    if (*end || n < 0) {
        snprintf(err, errsz, "%s=%.64s: expected a whole number of ms >= 0", name, v);
        return -1;
    }
    *out = n;
    return 0;
}

static mph_table_t *i64_table(mph_app_t *app, const char *name, char *err,
                              size_t errsz)
{
    mph_table_opts_t *o = mph_table_opts_new();
    mph_table_t *t = NULL;
    if (o && mph_table_opts_set(o, "key_codec", "string", err, errsz) == MPH_OK &&
        mph_table_opts_set(o, "value_codec", "i64", err, errsz) == MPH_OK &&
        mph_table_opts_set(o, "default", "0", err, errsz) == MPH_OK)
        t = mph_table_new(app, name, o, err, errsz);
    mph_table_opts_destroy(o);
    return t;
}

/* The record type PageView: user, page (required strings, page at most
 * PAGE_MAX bytes), ts (optional timestamp, not negative). */
static int declare_type(struct pageviews *pv, char *err, size_t errsz)
{
    pv->view = mph_record_type_new("PageView", err, errsz);
    if (!pv->view)
        return -1;
    mph_err_t e = mph_record_type_add(pv->view, "user", MPH_FIELD_STRING, &pv->f_user);
    if (!e)
        e = mph_record_type_add(pv->view, "page", MPH_FIELD_STRING, &pv->f_page);
    if (!e) /* the longest key a windowed table takes */
        e = mph_record_type_set_max_len(pv->view, pv->f_page, PAGE_MAX);
    if (!e)
        e = mph_record_type_add(pv->view, "ts", MPH_FIELD_TIMESTAMP, &pv->f_ts);
    if (!e)
        e = mph_record_type_set_optional(pv->view, pv->f_ts);
    if (!e) /* 0 to the end of year 9999 */
        e = mph_record_type_set_range_i64(pv->view, pv->f_ts, 0, INT64_C(253402300799999));
    if (e) {
        snprintf(err, errsz, "record type PageView: %s", mph_err_str(e));
        return -1;
    }
    return 0;
}

int mephisto_app_init(mph_app_t *app)
{
    char err[512] = "out of memory";
    struct pageviews *pv = calloc(1, sizeof *pv);
    if (!pv || mph_app_keep(app, pv, pageviews_free) != MPH_OK) {
        free(pv);
        goto fail;
    }
    int64_t grace, expires;
    if (setting_ms(app, "pageviews.grace_ms", 10000, &grace, err, sizeof err) ||
        setting_ms(app, "pageviews.window_expires_ms", 86400000, &expires, err,
                   sizeof err) ||
        declare_type(pv, err, sizeof err))
        goto fail;
    const char *input = mph_app_get(app, "pageviews.input_topic");
    if (!input || !*input)
        input = "pageviews";
    mph_topic_opts_t *o = mph_topic_opts_new();
    mph_topic_t *in = NULL;
    if (o && mph_topic_opts_set(o, "create", "true", err, sizeof err) == MPH_OK &&
        mph_topic_opts_set_record(o, pv->view) == MPH_OK)
        in = mph_topic_new(app, input, o, err, sizeof err);
    mph_topic_opts_destroy(o);
    if (!in)
        goto fail;
    o = mph_topic_opts_new();
    if (o && mph_topic_opts_set(o, "key_codec", "string", err, sizeof err) == MPH_OK &&
        mph_topic_opts_set(o, "value_codec", "json", err, sizeof err) == MPH_OK)
        pv->pages = mph_topic_repartition(app, "pages", o, err, sizeof err);
    mph_topic_opts_destroy(o);
    if (!pv->pages)
        goto fail;
    pv->counts = i64_table(app, "page_views", err, sizeof err);
    if (!pv->counts)
        goto fail;
    mph_table_t *per_minute = i64_table(app, "page_views_per_minute", err, sizeof err);
    if (!per_minute)
        goto fail;
    pv->minutes = mph_table_tumbling(per_minute, WINDOW_MS, expires, err, sizeof err);
    if (!pv->minutes)
        goto fail;
    mph_err_t e = mph_window_grace(pv->minutes, grace);
    if (!e)
        e = mph_window_time_source(pv->minutes, "field:ts");
    if (e) {
        snprintf(err, sizeof err, "page_views_per_minute (grace %" PRId64 " ms): %s",
                 grace, mph_err_str(e));
        goto fail;
    }
    if (!mph_agent_new(app, "by_page", in, by_page, pv, err, sizeof err) ||
        !mph_agent_new(app, "count", pv->pages, count, pv, err, sizeof err))
        goto fail;
    return 0;
fail:
    mph_log(MPH_LOG_ERROR, "pageviews: %s", err);
    return -1;
}
