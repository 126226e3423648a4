/*
 * Batching agents (mph_agent_batch, issue #18): sizes and the within
 * bound, the batch API, sends from a batch, offsets never committed
 * before the batch's callback returned, a failing batch under
 * on_agent_error=stop (nothing of it committed; delivered again, whole,
 * after a restart) and =log (counted, moved past), and the one batching
 * agent per topic rule.
 */
// ctest-timeout: 300
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ck_pr.h>

#include "mephisto.h"
#include "mph_test.h"

static mph_test_cluster_t *cluster;

static void setup(void)
{
    cluster = mph_test_cluster_new();
}

static void teardown(void)
{
    mph_test_cluster_destroy(cluster);
}

TestSuite(batch, .init = setup, .fini = teardown, .timeout = 240);

static mph_app_t *app_new(const char *app_id, const char *const *extra)
{
    char err[512];
    mph_conf_t *conf = mph_conf_new();
    const char *kv[][2] = {{"broker", cluster->broker}, {"app_id", app_id},
                           {"workers", "1"},            {"web_enabled", "false"},
                           {"log_level", "warn"},       {"shutdown_timeout_ms", "10000"}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        cr_assert_eq(mph_conf_set(conf, kv[i][0], kv[i][1], err, sizeof err), MPH_OK, "%s",
                     err);
    for (const char *const *p = extra; p && *p; p += 2)
        cr_assert_eq(mph_conf_set(conf, p[0], p[1], err, sizeof err), MPH_OK, "%s", err);
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(app, "%s", err);
    return app;
}

static void wait_ms(int ms)
{
    usleep((useconds_t)ms * 1000);
}

static uint64_t stat_u64(mph_app_t *app, const char *path)
{
    char *json = NULL;
    size_t len = 0;
    uint64_t v = 0;
    if (mph_app_stats_json(app, &json, &len) != MPH_OK)
        return 0;
    mph_json_parser_t *p = mph_json_parser_new(0, NULL, 0);
    if (p && mph_json_parse(p, json, len, len) == MPH_OK)
        mph_json_get_u64(p, MPH_JSON_ROOT, path, &v);
    mph_json_parser_destroy(p);
    free(json);
    return v;
}

static void produce_n(const char *topic, int first, int n)
{
    for (int i = first; i < first + n; i++) {
        char v[32];
        int vl = snprintf(v, sizeof v, "v%d", i);
        mph_test_produce(cluster, topic, 0, "k", 1, v, (size_t)vl);
    }
    mph_test_flush(cluster);
}

/* What the batch callbacks saw (one worker: written by one thread). */
typedef struct rec {
    mph_topic_t *out;
    int sizes[256];
    int64_t firsts[256];
    int nbatches;
    int events;
    int64_t next_offset; /* offsets arrive contiguous and in order */
    int bad;
    /* failing */
    int64_t fail_at; /* fail the batch starting at this offset (-1: never) */
    int failed;
    /* committed checks */
    const char *group, *topic;
    int64_t committed_at_call[256];
} rec_t;

static mph_err_t batch_cb(mph_event_t *ev, void *opaque)
{
    rec_t *r = opaque;
    size_t n = mph_event_batch_count(ev);
    if (n == 0 || r->nbatches >= 256) {
        r->bad++;
        return MPH_OK;
    }
    int64_t first = mph_event_offset(ev);
    if (r->group)
        r->committed_at_call[r->nbatches] = mph_test_committed_sum(cluster, r->group, r->topic, 1);
    for (size_t i = 0; i < n; i++) {
        if (mph_event_batch_select(ev, i) != MPH_OK) {
            r->bad++;
            continue;
        }
        size_t vl;
        const char *v = mph_event_value(ev, &vl);
        char want[32];
        int wl = snprintf(want, sizeof want, "v%lld", (long long)mph_event_offset(ev));
        if (r->next_offset >= 0 && mph_event_offset(ev) != r->next_offset)
            r->bad++;
        if (vl != (size_t)wl || memcmp(v, want, vl))
            r->bad++;
        r->next_offset = mph_event_offset(ev) + 1;
        if (r->out) {
            mph_err_t err = mph_event_send(ev, r->out, 0, NULL, 0, v, vl, NULL, 0);
            if (err)
                return err;
        }
    }
    if (mph_event_batch_select(ev, n) != MPH_ERR_RANGE)
        r->bad++;
    r->firsts[r->nbatches] = first;
    r->sizes[r->nbatches] = (int)n;
    ck_pr_store_int(&r->events, r->events + (int)n);
    ck_pr_store_int(&r->nbatches, r->nbatches + 1);
    if (first == r->fail_at && !r->failed) {
        r->failed = 1;
        return MPH_ERR_INVALID;
    }
    return MPH_OK;
}

static int wait_events(rec_t *r, int want, int timeout_ms)
{
    for (int t = 0; t < timeout_ms && ck_pr_load_int(&r->events) < want; t += 20)
        wait_ms(20);
    return ck_pr_load_int(&r->events);
}

typedef struct names {
    char id[128], in[160], out[160];
} names_t;

static void names_new(names_t *n, const char *tag)
{
    mph_test_unique(tag, n->id, sizeof n->id);
    snprintf(n->in, sizeof n->in, "%s-in", n->id);
    snprintf(n->out, sizeof n->out, "%s-out", n->id);
    mph_test_create_topic(cluster, n->in, 1);
}

static mph_app_t *batch_app(const names_t *n, rec_t *r, size_t max_n, int64_t within,
                            const char *const *extra)
{
    char err[512];
    mph_app_t *app = app_new(n->id, extra);
    mph_topic_t *t = mph_topic_new(app, n->in, NULL, err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    if (r->out) {
        mph_test_create_topic(cluster, n->out, 1);
        r->out = mph_topic_new(app, n->out, NULL, err, sizeof err);
        cr_assert_not_null(r->out, "%s", err);
    }
    mph_agent_t *a = mph_agent_new(app, "bulk", t, batch_cb, r, err, sizeof err);
    cr_assert_not_null(a, "%s", err);
    cr_assert_eq(mph_agent_batch(a, max_n, within), MPH_OK);
    return app;
}

/* ---- sizes and the within bound ---- */

Test(batch, sizes_within_and_sends)
{
    names_t n;
    names_new(&n, "batch-sizes");
    rec_t r = {.next_offset = -1, .fail_at = -1, .out = (mph_topic_t *)1};
    produce_n(n.in, 0, 95);
    /* Commits far apart: only the size and the within bound deliver. */
    mph_app_t *app = batch_app(&n, &r, 10, 300,
                               (const char *[]){"commit_interval_ms", "60000", NULL});
    char err[512];
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    cr_expect_eq(wait_events(&r, 95, 20000), 95, "the last 5 came within 300 ms, not at a "
                                                 "commit");
    cr_expect_eq(r.nbatches, 10);
    for (int i = 0; i < r.nbatches; i++)
        cr_expect_eq(r.sizes[i], i < 9 ? 10 : 5, "batch %d has %d events", i, r.sizes[i]);
    produce_n(n.in, 95, 3);
    cr_expect_eq(wait_events(&r, 98, 20000), 98);
    cr_expect_eq(r.sizes[r.nbatches - 1], 3);
    cr_expect_eq(r.bad, 0, "events out of order, wrong or the batch API misbehaved");
    cr_expect_eq(stat_u64(app, "agents.0.batch.batches"), 11);
    cr_expect_eq(stat_u64(app, "agents.0.batch.events"), 98);
    cr_expect_eq(stat_u64(app, "agents.0.batch.max_n"), 10);
    mph_app_request_stop(app);
    cr_expect_eq(mph_app_wait(app), MPH_OK);
    mph_app_destroy(app);
    cr_expect_eq(mph_test_consume_all(cluster, n.out, 98, 3000, 30000, NULL, NULL), 98,
                 "sends from the batches reached %s", n.out);
}

/* ---- offsets wait for the batch ---- */

static mph_err_t count_agent(mph_event_t *ev, void *opaque)
{
    (void)ev;
    ck_pr_inc_int((int *)opaque);
    return MPH_OK;
}

Test(batch, offsets_not_committed_before_the_callback_returns)
{
    names_t n;
    names_new(&n, "batch-commit");
    rec_t r = {.next_offset = -1, .fail_at = -1, .group = n.id, .topic = n.in};
    int plain = 0;
    /* Commits every 100 ms; batches of up to 1000 events, within 250 ms:
     * each batch waits over commits while a plain agent on the same topic
     * has processed its events long before. */
    mph_app_t *app = batch_app(&n, &r, 1000, 250,
                               (const char *[]){"commit_interval_ms", "100", NULL});
    char err[512];
    mph_agent_t *p = mph_agent_new(app, "plain", mph_app_topic(app, n.in), count_agent, &plain,
                                   err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    for (int round = 0; round < 3; round++) {
        produce_n(n.in, round * 20, 20);
        cr_expect_eq(wait_events(&r, (round + 1) * 20, 20000), (round + 1) * 20);
        wait_ms(300); /* a few commits after the batch */
    }
    cr_expect_eq(ck_pr_load_int(&plain), 60);
    cr_assert_geq(r.nbatches, 3);
    for (int i = 0; i < r.nbatches; i++)
        cr_expect_leq(r.committed_at_call[i], r.firsts[i],
                      "batch %d (from offset %lld): offset %lld committed during its callback",
                      i, (long long)r.firsts[i], (long long)r.committed_at_call[i]);
    int64_t c = -1;
    for (int t = 0; t < 100 && (c = mph_test_committed_sum(cluster, n.id, n.in, 1)) != 60; t++)
        wait_ms(100);
    cr_expect_eq(c, 60, "everything committed once the batches returned");
    cr_expect_eq(r.bad, 0);
    mph_app_request_stop(app);
    cr_expect_eq(mph_app_wait(app), MPH_OK);
    mph_app_destroy(app);
}

/* ---- failing batches ---- */

Test(batch, failing_batch_stop_delivers_it_again_whole_after_a_restart)
{
    names_t n;
    names_new(&n, "batch-stop");
    rec_t r = {.next_offset = -1, .fail_at = 10};
    produce_n(n.in, 0, 30);
    const char *extra[] = {"on_agent_error", "stop", "commit_interval_ms", "100", NULL};
    mph_app_t *app = batch_app(&n, &r, 10, 100, extra);
    char err[512];
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    mph_err_t rc = mph_app_wait(app);
    cr_expect_eq(rc, MPH_ERR_AGENT, "the app stops on the failed batch: %s", mph_err_str(rc));
    mph_app_destroy(app);
    cr_expect_eq(r.failed, 1);
    int64_t c = mph_test_committed_sum(cluster, n.id, n.in, 1);
    cr_expect_leq(c, 10, "offset %lld committed past the failed batch's first event",
                  (long long)c);

    /* Restarted, the failed batch comes again from its first event on. */
    rec_t again = {.next_offset = -1, .fail_at = -1};
    app = batch_app(&n, &again, 10, 100, extra);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    int want = 30 - (int)(c < 0 ? 0 : c);
    cr_expect_eq(wait_events(&again, want, 30000), want);
    cr_assert_gt(again.nbatches, 0);
    cr_expect_leq(again.firsts[0], 10);
    bool whole = false;
    for (int i = 0; i < again.nbatches; i++)
        whole |= again.firsts[i] <= 10 && again.firsts[i] + again.sizes[i] >= 20;
    cr_expect(whole, "events 10..19 delivered again");
    cr_expect_eq(again.bad, 0);
    mph_app_request_stop(app);
    cr_expect_eq(mph_app_wait(app), MPH_OK);
    mph_app_destroy(app);
}

Test(batch, failing_batch_log_is_counted_and_passed)
{
    names_t n;
    names_new(&n, "batch-log");
    rec_t r = {.next_offset = -1, .fail_at = 10};
    produce_n(n.in, 0, 30);
    mph_app_t *app = batch_app(&n, &r, 10, 100,
                               (const char *[]){"commit_interval_ms", "100", NULL});
    char err[512];
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    cr_expect_eq(wait_events(&r, 30, 20000), 30);
    int64_t c = -1;
    for (int t = 0; t < 100 && (c = mph_test_committed_sum(cluster, n.id, n.in, 1)) != 30; t++)
        wait_ms(100);
    cr_expect_eq(c, 30, "on_agent_error=log: the failed batch counts as processed");
    cr_expect_eq(r.nbatches, 3, "the failed batch is not delivered again");
    cr_expect_eq(stat_u64(app, "agents.0.batch.errors"), 1);
    cr_expect_eq(stat_u64(app, "agents.0.errors"), 1);
    mph_app_request_stop(app);
    cr_expect_eq(mph_app_wait(app), MPH_OK);
    mph_app_destroy(app);
}

/* ---- one batching agent per topic ---- */

Test(batch, two_batching_agents_on_one_topic_are_refused)
{
    names_t n;
    names_new(&n, "batch-two");
    rec_t r = {.next_offset = -1, .fail_at = -1};
    mph_app_t *app = batch_app(&n, &r, 10, 100, NULL);
    char err[512];
    mph_agent_t *b = mph_agent_new(app, "bulk2", mph_app_topic(app, n.in), batch_cb, &r, err,
                                   sizeof err);
    cr_assert_not_null(b, "%s", err);
    cr_assert_eq(mph_agent_batch(b, 5, 100), MPH_OK);
    cr_expect_neq(mph_app_start(app, err, sizeof err), MPH_OK);
    cr_expect(strstr(err, n.in) && strstr(err, "at most one batching agent"), "%s", err);
    mph_app_destroy(app);
}

/* ---- decoded values follow the selected event ---- */

typedef struct decoded {
    size_t f_n;
    int64_t sum_record, sum_json;
    int events, bad;
} decoded_t;

static mph_err_t decoded_cb(mph_event_t *ev, void *opaque)
{
    decoded_t *d = opaque;
    for (size_t i = 0; i < mph_event_batch_count(ev); i++) {
        mph_event_batch_select(ev, i);
        const mph_record_t *rec = mph_event_record(ev);
        int64_t a = -1, b = -1;
        if (!rec || mph_record_get_i64(rec, d->f_n, &a) != MPH_OK)
            d->bad++;
        mph_json_parser_t *p = mph_event_json(ev, NULL);
        if (!p || mph_json_get_i64(p, MPH_JSON_ROOT, "n", &b) != MPH_OK)
            d->bad++;
        d->sum_record += a;
        d->sum_json += b;
        if (a != mph_event_offset(ev) || b != a)
            d->bad++;
    }
    ck_pr_store_int(&d->events, d->events + (int)mph_event_batch_count(ev));
    return MPH_OK;
}

Test(batch, record_and_json_of_each_selected_event)
{
    names_t n;
    names_new(&n, "batch-rec");
    for (int i = 0; i < 25; i++) {
        char v[64];
        int vl = snprintf(v, sizeof v, "{\"n\":%d}", i);
        mph_test_produce(cluster, n.in, 0, "k", 1, v, (size_t)vl);
    }
    mph_test_flush(cluster);
    char err[512];
    decoded_t d = {0};
    mph_record_type_t *type = mph_record_type_new("n", err, sizeof err);
    cr_assert_not_null(type, "%s", err);
    cr_assert_eq(mph_record_type_add(type, "n", MPH_FIELD_I64, &d.f_n), MPH_OK);
    mph_app_t *app = app_new(n.id, NULL);
    mph_topic_opts_t *o = mph_topic_opts_new();
    cr_assert_eq(mph_topic_opts_set_record(o, type), MPH_OK);
    mph_topic_t *t = mph_topic_new(app, n.in, o, err, sizeof err);
    mph_topic_opts_destroy(o);
    cr_assert_not_null(t, "%s", err);
    mph_agent_t *a = mph_agent_new(app, "bulk", t, decoded_cb, &d, err, sizeof err);
    cr_assert_not_null(a, "%s", err);
    cr_assert_eq(mph_agent_batch(a, 8, 100), MPH_OK);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    for (int i = 0; i < 1000 && ck_pr_load_int(&d.events) < 25; i++)
        wait_ms(20);
    cr_expect_eq(ck_pr_load_int(&d.events), 25);
    cr_expect_eq(d.bad, 0, "a record or JSON value was not the selected event's");
    cr_expect_eq(d.sum_record, 300);
    cr_expect_eq(d.sum_json, 300);
    mph_app_request_stop(app);
    cr_expect_eq(mph_app_wait(app), MPH_OK);
    mph_app_destroy(app);
    mph_record_type_destroy(type);
}
