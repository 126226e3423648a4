/*
 * Bad input: a record topic with 1% malformed JSON, invalid UTF-8,
 * truncated documents, null values and schema violations among 100,000
 * good records. The agent must see exactly the good ones, the dead-letter
 * topic exactly the bad ones with their headers, and the counters agree.
 * Also: on_decode_error=skip and =fail.
 */
// ctest-timeout: 400
// ctest-labels: engine
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ck_pr.h>

#include "mephisto.h"
#include "mph_test.h"
#include "runtime/app.h"
#include "runtime/worker.h"

#define GOOD 100000

static mph_test_cluster_t *cluster;
static void setup(void)
{
    cluster = mph_test_cluster_new();
}
static void teardown(void)
{
    mph_test_cluster_destroy(cluster);
}
TestSuite(decode, .init = setup, .fini = teardown, .timeout = 300);

typedef struct seen {
    unsigned char *good; /* [GOOD] */
    int dup, wrong;
    size_t f_user, f_page;
} seen_t;

static mph_err_t on_view(mph_event_t *ev, void *opaque)
{
    seen_t *s = opaque;
    const mph_record_t *r = mph_event_record(ev);
    const char *user, *page;
    size_t ul, pl;
    if (!r || mph_record_get_str(r, s->f_user, &user, &ul) ||
        mph_record_get_str(r, s->f_page, &page, &pl)) {
        ck_pr_inc_int(&s->wrong);
        return MPH_OK;
    }
    char ub[32];
    size_t n = ul < sizeof ub - 1 ? ul : sizeof ub - 1;
    memcpy(ub, user, n);
    ub[n] = 0;
    int id = atoi(ub + 1);
    if (id < 0 || id >= GOOD || user[0] != 'u') {
        ck_pr_inc_int(&s->wrong);
        return MPH_OK;
    }
    if (ck_pr_faa_8((uint8_t *)&s->good[id], 1))
        ck_pr_inc_int(&s->dup);
    return MPH_OK;
}

/* Bad record i of each kind. */
static const char *bad_kinds[] = {"malformed", "utf8", "truncated", "null", "schema", "type"};
#define NKINDS 6

static size_t make_bad(int kind, int i, char *buf, size_t size, bool *is_null)
{
    *is_null = false;
    switch (kind) {
    case 0:
        return (size_t)snprintf(buf, size, "{\"user\":\"b%d\",\"page\":tru}", i);
    case 1:
        return (size_t)snprintf(buf, size, "{\"user\":\"b%d\xff\xfe\",\"page\":\"/p\"}", i);
    case 2:
        return (size_t)snprintf(buf, size, "{\"user\":\"b%d\",\"pa", i);
    case 3:
        *is_null = true;
        return 0;
    case 4:
        return (size_t)snprintf(buf, size, "{\"user\":\"b%d\"}", i);
    default:
        return (size_t)snprintf(buf, size, "{\"user\":\"b%d\",\"page\":42}", i);
    }
}

static int dl_count, dl_headers_ok, dl_kinds[NKINDS];
static void on_dead(const rd_kafka_message_t *m, void *opaque)
{
    const char *topic = opaque;
    dl_count++;
    rd_kafka_headers_t *h = NULL;
    const void *v;
    size_t l;
    if (rd_kafka_message_headers(m, &h) == 0 &&
        rd_kafka_header_get_last(h, "mph.error", &v, &l) == 0 && l > 0 &&
        rd_kafka_header_get_last(h, "mph.topic", &v, &l) == 0 && l == strlen(topic) &&
        !memcmp(v, topic, l) && rd_kafka_header_get_last(h, "mph.partition", &v, &l) == 0 &&
        rd_kafka_header_get_last(h, "mph.offset", &v, &l) == 0)
        dl_headers_ok++;
    const void *k;
    if (m->key && m->key_len > 5 && !memcmp(m->key, "kind", 4)) {
        int kind = ((const char *)m->key)[4] - '0';
        if (kind >= 0 && kind < NKINDS)
            dl_kinds[kind]++;
    }
    (void)k;
}

static mph_app_t *view_app(const char *app_id, const char *input, const char *policy,
                           mph_record_type_t *rt, seen_t *s)
{
    char err[512];
    mph_conf_t *conf = mph_conf_new();
    const char *kv[] = {"broker", cluster->broker, "app_id", app_id, "workers", "2",
                        "log_level", "error", "commit_interval_ms", "200", NULL};
    for (const char **p = kv; *p; p += 2)
        cr_assert_eq(mph_conf_set(conf, p[0], p[1], err, sizeof err), MPH_OK, "%s", err);
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(app, "%s", err);
    mph_topic_opts_t *o = mph_topic_opts_new();
    cr_assert_eq(mph_topic_opts_set_record(o, rt), MPH_OK);
    cr_assert_eq(mph_topic_opts_set(o, "on_decode_error", policy, err, sizeof err), MPH_OK);
    mph_topic_t *t = mph_topic_new(app, input, o, err, sizeof err);
    mph_topic_opts_destroy(o);
    cr_assert_not_null(t, "%s", err);
    cr_assert_not_null(mph_agent_new(app, "view", t, on_view, s, err, sizeof err));
    return app;
}

static mph_record_type_t *pageview_type(seen_t *s)
{
    char err[256];
    mph_record_type_t *rt = mph_record_type_new("pageview", err, sizeof err);
    cr_assert_not_null(rt, "%s", err);
    cr_assert_eq(mph_record_type_add(rt, "user", MPH_FIELD_STRING, &s->f_user), MPH_OK);
    cr_assert_eq(mph_record_type_add(rt, "page", MPH_FIELD_STRING, &s->f_page), MPH_OK);
    mph_record_type_freeze(rt);
    return rt;
}

static int produce_mix(const char *topic, int *nbad)
{
    char buf[256], key[32];
    int bad = 0;
    for (int i = 0; i < GOOD; i++) {
        int n = snprintf(buf, sizeof buf, "{\"user\":\"u%d\",\"page\":\"/p/%d\",\"ts\":%d,\"x\":[1,2]}", i, i % 97, i);
        int kl = snprintf(key, sizeof key, "good%d", i);
        mph_test_produce(cluster, topic, RD_KAFKA_PARTITION_UA, key, (size_t)kl, buf, (size_t)n);
        if (i % 100 == 0) {
            int kind = bad % NKINDS;
            bool is_null;
            size_t bl = make_bad(kind, bad, buf, sizeof buf, &is_null);
            kl = snprintf(key, sizeof key, "kind%d-%d", kind, bad);
            mph_test_produce(cluster, topic, RD_KAFKA_PARTITION_UA, key, (size_t)kl,
                             is_null ? NULL : buf, bl);
            bad++;
        }
    }
    mph_test_flush(cluster);
    *nbad = bad;
    return GOOD + bad;
}

static int64_t wait_committed(const char *group, const char *topic, int64_t want)
{
    int64_t sum = -1;
    for (int i = 0; i < 600 && sum < want; i++) {
        sum = mph_test_committed_sum(cluster, group, topic, 4);
        if (sum < want)
            usleep(200000);
    }
    return sum;
}

Test(decode, dead_letter_gets_exactly_the_bad_records)
{
    char app_id[128], input[128], dlq[256], err[512];
    mph_test_unique("dec", app_id, sizeof app_id);
    mph_test_unique("dec-in", input, sizeof input);
    snprintf(dlq, sizeof dlq, "%s-dead-letter", app_id);
    mph_test_create_topic(cluster, input, 4);
    if (!mph_test_real_broker())
        mph_test_create_topic(cluster, dlq, 8);
    int nbad;
    int total = produce_mix(input, &nbad);

    seen_t s = {calloc(GOOD, 1), 0, 0, 0, 0};
    mph_record_type_t *rt = pageview_type(&s);
    mph_app_t *app = view_app(app_id, input, "dead_letter", rt, &s);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    cr_expect_eq(wait_committed(app_id, input, total), total, "offsets advanced past all");
    uint64_t dead = 0;
    for (int w = 0; w < mph_app_workers(app); w++)
        dead += ck_pr_load_64(&app->workers[w]->mon->dead_lettered);
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);

    int missing = 0;
    for (int i = 0; i < GOOD; i++)
        missing += !s.good[i];
    cr_expect_eq(missing, 0, "the agent saw every good record (missing %d, dup %d)", missing, s.dup);
    cr_expect_eq(s.dup, 0);
    cr_expect_eq(s.wrong, 0, "and nothing else");
    cr_expect_eq(dead, (uint64_t)nbad, "stats count every dead-lettered record");

    int got = mph_test_consume_all(cluster, dlq, -1, 3000, 60000, on_dead, input);
    cr_expect_eq(got, nbad, "the dead-letter topic holds exactly the bad records");
    cr_expect_eq(dl_headers_ok, nbad, "each with mph.error/topic/partition/offset headers");
    for (int k = 0; k < NKINDS; k++)
        cr_expect_gt(dl_kinds[k], 0, "kind %s dead-lettered", bad_kinds[k]);
    free(s.good);
    mph_record_type_destroy(rt);
}

Test(decode, skip_counts_and_fail_stops_without_committing)
{
    char app_id[128], input[128], err[512];
    mph_test_unique("decs", app_id, sizeof app_id);
    mph_test_unique("decs-in", input, sizeof input);
    mph_test_create_topic(cluster, input, 4);
    char buf[128];
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(buf, sizeof buf, "{\"user\":\"u%d\",\"page\":\"/\"}", i);
        mph_test_produce(cluster, input, i % 4, NULL, 0, buf, (size_t)n);
    }
    mph_test_produce(cluster, input, 0, NULL, 0, "{not json", 9);
    mph_test_flush(cluster);

    seen_t s = {calloc(GOOD, 1), 0, 0, 0, 0};
    mph_record_type_t *rt = pageview_type(&s);
    mph_app_t *app = view_app(app_id, input, "skip", rt, &s);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    cr_expect_eq(wait_committed(app_id, input, 1001), 1001);
    uint64_t skipped = 0;
    for (int w = 0; w < mph_app_workers(app); w++)
        skipped += ck_pr_load_64(&app->workers[w]->mon->skipped);
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);
    cr_expect_eq(skipped, 1);

    /* fail: a new group stops at the bad record and commits nothing past it */
    char app2[128];
    mph_test_unique("decf", app2, sizeof app2);
    memset(s.good, 0, GOOD);
    app = view_app(app2, input, "fail", rt, &s);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    mph_err_t rc = mph_app_wait(app);
    cr_expect_eq(rc, MPH_ERR_DECODE, "the app stopped on the bad record (%s)", mph_err_str(rc));
    mph_app_destroy(app);
    int64_t committed = mph_test_committed_sum(cluster, app2, input, 4);
    cr_expect_lt(committed, 1001, "nothing committed past the bad record (%lld)",
                 (long long)committed);
    free(s.good);
    mph_record_type_destroy(rt);
}
