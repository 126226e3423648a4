/*
 * The pageviews example (examples/pageviews/pageviews.c) against its
 * contract, run the way a user runs it: `mephisto worker --app
 * build/examples/libpageviews.so`, fed good, bad and late records, then
 * checked from outside against a reference computed here:
 *   - /tables/page_views/<url-encoded page>: every valid view, late or not;
 *   - /tables/page_views_per_minute/<page>?window=<start ms>: views per 60 s
 *     window by `ts`, or the Kafka timestamp when `ts` is absent, without
 *     the late ones, which /metrics counts as late events;
 *   - `<app_id>-dead-letter`: exactly the bad records, each with mph.error
 *     and mph.topic headers.
 * Once under processing_guarantee=at_least_once and once under
 * exactly_once, set by that one setting (the topics then read
 * read_committed). The worker reaches the broker over TCP: a real broker
 * (MEPHISTO_TEST_BROKERS) or this process's mock cluster, whose listener
 * the worker can use too; exactly_once is skipped on the mock cluster,
 * which does not emulate transactions for a read_committed reader.
 */
// ctest-labels: cli
// ctest-timeout: 300
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mephisto.h"
#include "mph_cli.h"
#include "mph_test.h"

#define MIN 60000

static mph_test_cluster_t *cluster;

static void setup(void)
{
    cluster = mph_test_cluster_new();
}

static void teardown(void)
{
    mph_test_cluster_destroy(cluster);
}

TestSuite(pageviews, .init = setup, .fini = teardown, .timeout = 280);

/* ---- HTTP ---- */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

typedef struct reply {
    int status;      /* 0: nothing answered */
    char *text;      /* the whole response, NUL-terminated (reply_free) */
    const char *body;
} reply_t;

static void http_get(int port, const char *path, reply_t *r)
{
    enum { CAP = 1 << 20 };
    memset(r, 0, sizeof *r);
    r->text = calloc(1, CAP);
    cr_assert_not_null(r->text);
    r->body = "";
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        char req[1024];
        int n = snprintf(req, sizeof req,
                         "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
        if (send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
            size_t got = 0;
            ssize_t k;
            while (got < CAP - 1 &&
                   (k = recv(fd, r->text + got, CAP - 1 - got, 0)) > 0)
                got += (size_t)k;
            r->text[got] = 0;
            sscanf(r->text, "HTTP/1.%*d %d", &r->status);
            const char *b = strstr(r->text, "\r\n\r\n");
            r->body = b ? b + 4 : "";
        }
    }
    close(fd);
}

static void reply_free(reply_t *r)
{
    free(r->text);
    r->text = NULL;
}

/* The value of response header name (case-insensitive), or -1. */
static long long header_i64(const reply_t *r, const char *name)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\r\n%s:", name);
    const char *end = strstr(r->text, "\r\n\r\n");
    for (const char *p = r->text; end && p < end; p++)
        if (!strncasecmp(p, pat, strlen(pat)))
            return atoll(p + strlen(pat));
    return -1;
}

/* %-encodes every byte but unreserved ones (RFC 3986). */
static void url_encode(const char *s, char *out, size_t size)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && o + 4 < size; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
            (*p >= '0' && *p <= '9') || strchr("-._~", *p))
            out[o++] = (char)*p;
        else
            o += (size_t)snprintf(out + o, size - o, "%%%02X", *p);
    }
    out[o] = 0;
}

/* ---- the reference ---- */

enum { HOME, DOCS, SEARCH, NPAGES };
static const char *const pages[NPAGES] = {"/home", "/docs/getting started",
                                          "/search?q=a b&x=%/ü"};

typedef struct input {
    const char *value; /* printf format; %s the page, then %lld ts */
    int page;          /* -1: a bad record */
    int64_t ts;        /* the `ts` field, or -1 */
    int64_t kafka_ts;  /* the record's timestamp */
    bool late;
} input_t;

#define NWIN 6
typedef struct truth {
    int64_t base; /* start of window 0 */
    long total[NPAGES];
    long win[NPAGES][NWIN];
    long late;
    int nbad;
    char *bad[16]; /* owned */
} truth_t;

static void produce(const char *topic, const char *value, int64_t kafka_ts)
{
    rd_kafka_resp_err_t e;
    while ((e = rd_kafka_producev(cluster->producer, RD_KAFKA_V_TOPIC(topic),
                                  RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_KEY("k", 1),
                                  RD_KAFKA_V_VALUE((void *)value, strlen(value)),
                                  RD_KAFKA_V_TIMESTAMP(kafka_ts),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(cluster->producer, 10);
    cr_assert_eq(e, 0, "produce: %s", rd_kafka_err2str(e));
    rd_kafka_poll(cluster->producer, 0);
}

/* A good view: ts >= 0 is written into the JSON, else left out (the
 * Kafka timestamp then counts). */
static void good(truth_t *t, const char *topic, int page, int64_t ts, int64_t kafka_ts,
                 bool late, const char *extra)
{
    char v[512];
    char ts_part[64] = "";
    if (ts >= 0)
        snprintf(ts_part, sizeof ts_part, ",\"ts\":%" PRId64, ts);
    /* page names hold no character JSON needs escaped but the string ones */
    snprintf(v, sizeof v, "{\"user\":\"u%d\",\"page\":\"%s\"%s%s}", page, pages[page],
             ts_part, extra ? extra : "");
    produce(topic, v, kafka_ts);
    int64_t et = ts >= 0 ? ts : kafka_ts;
    t->total[page]++;
    if (late) {
        t->late++;
    } else {
        int64_t w = (et - t->base) / MIN;
        cr_assert(w >= 0 && w < NWIN);
        t->win[page][w]++;
    }
}

static void bad(truth_t *t, const char *topic, const char *value, int64_t kafka_ts)
{
    produce(topic, value, kafka_ts);
    t->bad[t->nbad] = strdup(value);
    cr_assert_not_null(t->bad[t->nbad++]);
}

/* Good records in event-time order (one out of order within the grace),
 * bad ones between them, late ones at the end. */
static void feed(truth_t *t, const char *topic)
{
    int64_t now = mph_clock_wall_ms();
    int64_t b = t->base = (now / MIN - 10) * MIN;
    good(t, topic, HOME, b + 1000, now, false, NULL);
    bad(t, topic, "{\"user\":\"u\",\"page\":\"/home\"", now);       /* invalid JSON */
    good(t, topic, DOCS, -1, b + 2000, false, NULL);                 /* Kafka ts */
    bad(t, topic, "{\"user\":\"u\",\"ts\":1}", now);                 /* no page */
    good(t, topic, HOME, b + 30000, now, false, ",\"ref\":\"x\"");   /* extra field */
    bad(t, topic, "{\"user\":42,\"page\":\"/home\"}", now);          /* user a number */
    good(t, topic, SEARCH, b + MIN + 5000, now, false, NULL);
    good(t, topic, HOME, -1, b + MIN + 10000, false, NULL);          /* Kafka ts */
    bad(t, topic, "{\"user\":\"u\",\"page\":null}", now);            /* page null */
    good(t, topic, DOCS, b + 2 * MIN, now, false, NULL);             /* on the boundary */
    good(t, topic, HOME, b + 2 * MIN - 1000, now, false, NULL);      /* within grace */
    bad(t, topic, "{\"user\":\"u\",\"page\":\"/home\",\"ts\":\"soon\"}", now); /* bad ts */
    good(t, topic, HOME, b + 3 * MIN + 30000, now, false, NULL);
    bad(t, topic, "{\"user\":\"u\",\"page\":\"/home\",\"ts\":-5}", now); /* negative ts */
    good(t, topic, DOCS, b + 4 * MIN + 1000, now, false, NULL);
    bad(t, topic, "[1,2]", now);                                      /* not an object */
    char *huge = malloc(70100); /* a page longer than a window key can be */
    cr_assert_not_null(huge);
    int n = snprintf(huge, 70100, "{\"user\":\"u\",\"page\":\"/");
    memset(huge + n, 'p', 70000);
    strcpy(huge + n + 70000, "\"}");
    bad(t, topic, huge, now);
    free(huge);
    /* late: their windows closed (end + 10 s grace) before stream time */
    good(t, topic, HOME, b + 5000, now, true, NULL);
    good(t, topic, DOCS, b + MIN + 1000, now, true, NULL);
    good(t, topic, HOME, -1, b + 100, true, NULL);                    /* Kafka ts */
    mph_test_flush(cluster);
    cr_assert_eq(cluster->failed, 0);
}

/* ---- reading topics, read_committed under exactly_once ---- */

typedef struct dl {
    const truth_t *t;
    const char *input;
    int found[16];
    int unknown, no_error, wrong_topic;
} dl_t;

static bool header_is(const rd_kafka_message_t *m, const char *name, const char *want,
                      bool any)
{
    rd_kafka_headers_t *h = NULL;
    const void *v;
    size_t len;
    if (rd_kafka_message_headers(m, &h) || rd_kafka_header_get_last(h, name, &v, &len))
        return false;
    return any ? len > 0 : len == strlen(want) && !memcmp(v, want, len);
}

static void on_dead(const rd_kafka_message_t *m, void *opaque)
{
    dl_t *d = opaque;
    int i = 0;
    while (i < d->t->nbad && (strlen(d->t->bad[i]) != m->len ||
                              memcmp(d->t->bad[i], m->payload, m->len)))
        i++;
    if (i == d->t->nbad) {
        d->unknown++;
        return;
    }
    d->found[i]++;
    if (!header_is(m, "mph.error", NULL, true))
        d->no_error++;
    if (!header_is(m, "mph.topic", d->input, false))
        d->wrong_topic++;
}

static int read_topic(const char *topic, bool committed, int idle_ms,
                      mph_test_record_fn *fn, void *opaque)
{
    char err[512];
    mph_conf_t *conf = mph_conf_new();
    mph_conf_set(conf, "broker", cluster->broker, err, sizeof err);
    mph_conf_set(conf, "app_id", "mph-test-pageviews-reader", err, sizeof err);
    if (committed)
        mph_conf_set(conf, "processing_guarantee", "exactly_once", err, sizeof err);
    rd_kafka_conf_t *kc =
        mph__kafka_conf_new(cluster->env, conf, MPH__KAFKA_CONSUMER, err, sizeof err);
    cr_assert_not_null(kc, "%s", err);
    char iso[64] = "";
    size_t isz = sizeof iso;
    rd_kafka_conf_get(kc, "isolation.level", iso, &isz);
    if (committed)
        cr_assert_str_eq(iso, "read_committed");
    rd_kafka_t *rk = mph__kafka_new(kc, MPH__KAFKA_CONSUMER, err, sizeof err);
    cr_assert_not_null(rk, "%s", err);
    int parts = 0;
    cr_assert_eq(mph__kafka_partition_count(rk, topic, 10000, &parts), MPH_OK);
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(parts);
    for (int p = 0; p < parts; p++)
        rd_kafka_topic_partition_list_add(tp, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, tp);
    rd_kafka_topic_partition_list_destroy(tp);
    int got = 0;
    int64_t start = mph_clock_mono_ns(), last = start;
    while ((mph_clock_mono_ns() - start) / 1000000 < 60000 &&
           (mph_clock_mono_ns() - last) / 1000000 < idle_ms) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (!m->err) {
            got++;
            last = mph_clock_mono_ns();
            fn(m, opaque);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    mph_conf_destroy(conf);
    return got;
}

/* ---- the run ---- */

static long body_i64(const reply_t *r)
{
    char *end;
    long v = strtol(r->body, &end, 10);
    return end == r->body ? -1 : v;
}

/* The late-events counter of page_views_per_minute in /metrics, or -1. */
static long late_events(int port)
{
    reply_t r;
    http_get(port, "/metrics", &r);
    const char *pat = "mephisto_window_late_events_total{table=\"page_views_per_minute\"} ";
    const char *at = r.status == 200 ? strstr(r.body, pat) : NULL;
    long v = at ? atol(at + strlen(pat)) : -1;
    reply_free(&r);
    return v;
}

static bool totals_reached(int port, const truth_t *t, long got[NPAGES])
{
    bool all = true;
    for (int p = 0; p < NPAGES; p++) {
        char enc[256], path[400];
        url_encode(pages[p], enc, sizeof enc);
        snprintf(path, sizeof path, "/tables/page_views/%s", enc);
        reply_t r;
        http_get(port, path, &r);
        got[p] = r.status == 200 ? body_i64(&r) : -r.status;
        reply_free(&r);
        all = all && got[p] == t->total[p];
    }
    return all && late_events(port) == t->late;
}

static void run(const char *guarantee)
{
    bool eos = !strcmp(guarantee, "exactly_once");
    char app_id[128], input[160], dir[PATH_MAX], set_id[200], set_in[240],
        set_g[80], port_s[16];
    mph_test_unique(eos ? "pv-eos" : "pv-alo", app_id, sizeof app_id);
    snprintf(input, sizeof input, "%s-pageviews", app_id);
    snprintf(set_id, sizeof set_id, "app_id=%s", app_id);
    snprintf(set_in, sizeof set_in, "pageviews.input_topic=%s", input);
    snprintf(set_g, sizeof set_g, "processing_guarantee=%s", guarantee);
    cr_assert_not_null(mph_test_tmpdir("pv", dir, sizeof dir));
    int port = free_port();
    snprintf(port_s, sizeof port_s, "%d", port);
    /* every record goes to partition 0 of the input (produce()): their
     * order is the event-time order the reference assumes */
    mph_test_create_topic(cluster, input, 4);

    mph_cli_proc_t w;
    mph_cli_spawn(&w, "pv",
                  (const char *[]){"worker", "--app", mph_cli_plugin("pageviews"),
                                   "--broker", cluster->broker, "--datadir", dir,
                                   "--workers", "2", "--web-port", port_s, "--set",
                                   set_id, "--set", set_in, "--set", set_g, "--set",
                                   "topic_partitions=4", "--set",
                                   "commit_interval_ms=200", NULL},
                  NULL, NULL, -1);
    free(mph_cli_wait_for(&w, w.err_path, "worker running", 90000));

    truth_t t = {0};
    feed(&t, input);

    long got[NPAGES] = {0};
    int64_t deadline = mph_clock_mono_ns() + 90 * (int64_t)1000000000;
    bool ok;
    while (!(ok = totals_reached(port, &t, got)) && mph_clock_mono_ns() < deadline)
        usleep(300000);
    cr_expect(ok, "page_views %ld %ld %ld (want %ld %ld %ld), late events %ld (want %ld)",
              got[0], got[1], got[2], t.total[0], t.total[1], t.total[2], late_events(port),
              t.late);

    /* every window of every page, empty ones included (the default 0) */
    for (int p = 0; p < NPAGES; p++)
        for (int k = 0; k < NWIN; k++) {
            char enc[256], path[400];
            int64_t start = t.base + (int64_t)k * MIN;
            url_encode(pages[p], enc, sizeof enc);
            snprintf(path, sizeof path, "/tables/page_views_per_minute/%s?window=%" PRId64,
                     enc, start);
            reply_t r;
            http_get(port, path, &r);
            cr_expect_eq(r.status, 200, "%s: %s", path, r.text);
            cr_expect_eq(body_i64(&r), t.win[p][k], "%s (%s, window %d): %ld, want %ld",
                         path, pages[p], k, body_i64(&r), t.win[p][k]);
            cr_expect_eq(header_i64(&r, "X-Window-Start"), start, "%s", r.text);
            cr_expect_eq(header_i64(&r, "X-Window-End"), start + MIN, "%s", r.text);
            reply_free(&r);
        }
    /* a start that is not a whole number is refused */
    reply_t r;
    http_get(port, "/tables/page_views_per_minute/x?window=soon", &r);
    cr_expect_eq(r.status, 400, "%s", r.text);
    reply_free(&r);

    /* the dead-letter topic holds exactly the bad records */
    char dlt[200];
    snprintf(dlt, sizeof dlt, "%s-dead-letter", app_id);
    dl_t d = {.t = &t, .input = input};
    int n = read_topic(dlt, eos, 3000, on_dead, &d);
    cr_expect_eq(n, t.nbad, "%s holds %d records, want %d", dlt, n, t.nbad);
    for (int i = 0; i < t.nbad; i++)
        cr_expect_eq(d.found[i], 1, "bad record %.80s dead-lettered %d times", t.bad[i],
                     d.found[i]);
    cr_expect_eq(d.unknown, 0, "records in %s that are not bad ones", dlt);
    cr_expect_eq(d.no_error, 0, "dead letters without an mph.error header");
    cr_expect_eq(d.wrong_topic, 0, "dead letters whose mph.topic is not %s", input);

    for (int i = 0; i < t.nbad; i++)
        free(t.bad[i]);
    kill(w.pid, SIGTERM);
    mph_cli_result_t res = mph_cli_finish(&w, 60000);
    cr_expect_eq(res.status, 0, "worker (%s): %s", guarantee, res.err);
    mph_cli_result_free(&res);
    mph_test_rmrf(dir);
}

Test(pageviews, at_least_once_counts_windows_and_dead_letters)
{
    run("at_least_once");
}

Test(pageviews, exactly_once_counts_windows_and_dead_letters)
{
    if (!mph_test_real_broker())
        cr_skip_test("exactly_once needs a real broker (MEPHISTO_TEST_BROKERS): the mock "
                     "cluster does not emulate transactions for a read_committed reader");
    run("exactly_once");
}

/* A bad setting of the example stops it before it starts, naming the
 * setting and the reason; no broker is contacted. */
Test(pageviews, bad_settings_are_refused_by_name)
{
    static const char *const bad[] = {"pageviews.grace_ms=soon",
                                      "pageviews.window_expires_ms=-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mph_cli_result_t r = mph_cli_run(
            "pvbad",
            (const char *[]){"worker", "--app", mph_cli_plugin("pageviews"), "--broker",
                             "kafka://127.0.0.1:1", "--without-web", "--set", bad[i], NULL},
            NULL, NULL, 30000);
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(strchr(bad[i], '=') - bad[i]), bad[i]);
        cr_expect_eq(r.status, 3, "%s: status %d: %s", bad[i], r.status, r.err);
        cr_expect_not_null(strstr(r.err, name), "%s: %s", bad[i], r.err);
        cr_expect_not_null(strstr(r.err, "expected a whole number of ms >= 0"), "%s: %s",
                           bad[i], r.err);
        mph_cli_result_free(&r);
    }
}
