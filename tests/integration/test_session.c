/*
 * Session windows end to end, against a reference computed here from the
 * raw input: per partition, stream time is the largest time seen; an event
 * is late when t + gap + grace < stream time; the sessions of a key are its
 * accepted times sorted and cut where neighbours are more than gap apart;
 * a session closes (on_close once) when stream time reaches its last event
 * + gap + grace + 1, and is deleted at last event + 1 + gap +
 * max(expires, grace). The input has events in order, out of order within
 * grace (some bridging two sessions of their key) and late ones; the test
 * checks that it does. Checked: every on_close call (key, start, end,
 * count) exactly once, the late counter, and lookups of every session that
 * should still be there (and not of expired ones). Also across a graceful
 * restart in the middle (RocksDB: local state; memory: the changelog).
 * The web view names a session by its start (?window=).
 */
// ctest-labels: engine;tables
// ctest-timeout: 300
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ck_pr.h>

#include "mephisto.h"
#include "mph_test.h"
#include "runtime/app.h"
#include "runtime/web.h"

#define NPART   4
#define NKEYS   6
#define NEV     400
#define GAP     5000
#define GRACE   3000
#define EXPIRES 20000

static mph_test_cluster_t *cluster;

static void setup(void)
{
    cluster = mph_test_cluster_new();
}

static void teardown(void)
{
    mph_test_cluster_destroy(cluster);
}

TestSuite(session, .init = setup, .fini = teardown, .timeout = 240);

typedef struct ev {
    char key[16];
    int64_t t;
    int part;
} ev_t;

typedef struct sess {
    char key[16];
    int64_t start, end; /* end: last event time */
    int64_t count;
    bool closed, expired, seen;
} sess_t;

/* ------------------------------------------------------------------ */
/* input                                                              */

static int part_of(const char *k)
{
    return mph__kafka_partition_for(k, strlen(k), NPART);
}

static ev_t *gen(int64_t base, int *n_out)
{
    ev_t *e = calloc(NEV + 16, sizeof *e);
    uint64_t rs = 99;
    int n = 0;
    /* A deterministic bridge first: two sessions of "bridge", then an
     * event between them, late but within grace, that merges them. */
    int64_t bt[] = {base, base + GAP + 1000, base + (GAP + 1000) / 2};
    for (int i = 0; i < 3; i++, n++) {
        snprintf(e[n].key, sizeof e[n].key, "bridge");
        e[n].t = bt[i];
    }
    int64_t now = base + GAP + 1000;
    for (int i = 0; i < NEV; i++, n++) {
        if (i == NEV / 2) {
            /* another bridge, around the middle (the restart) */
            int64_t mt[] = {now, now + GAP + 1000, now + (GAP + 1000) / 2};
            for (int j = 0; j < 3; j++, n++) {
                snprintf(e[n].key, sizeof e[n].key, "mid");
                e[n].t = mt[j];
            }
            now += GAP + 1000;
        }
        uint64_t r = mph_test_rand(&rs);
        snprintf(e[n].key, sizeof e[n].key, "u%d", (int)(r % NKEYS));
        now += 300 + (int64_t)((r >> 8) % 1200);
        if ((r >> 20) % 20 == 0)
            now += 3 * GAP; /* a pause: sessions end */
        int64_t t = now;
        int late = (int)((r >> 28) % 10);
        if (late == 0)
            t -= (int64_t)((r >> 32) % (GRACE + 1500)); /* mostly within grace */
        else if (late == 1)
            t -= GRACE + 1 + (int64_t)((r >> 32) % 5000); /* too late */
        e[n].t = t;
    }
    /* Ticks: move each partition's stream time on, closing and expiring
     * most sessions. */
    for (int p = 0; p < NPART; p++) {
        for (int k = 0; k < 1000; k++) {
            char kb[16];
            snprintf(kb, sizeof kb, "tick%d", k);
            if (part_of(kb) == p) {
                snprintf(e[n].key, sizeof e[n].key, "%s", kb);
                e[n].t = now + GAP + GRACE + EXPIRES / 2;
                n++;
                break;
            }
        }
    }
    for (int i = 0; i < n; i++)
        e[i].part = part_of(e[i].key);
    *n_out = n;
    return e;
}

/* ------------------------------------------------------------------ */
/* reference                                                          */

typedef struct ref {
    sess_t *s;
    size_t n;
    int64_t late, bridges, joined_late;
} ref_t;

static int64_t cmp64(int64_t a, int64_t b)
{
    return (a > b) - (a < b);
}

static int tcmp(const void *a, const void *b)
{
    const ev_t *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (int)cmp64(x->t, y->t);
}

static void ref_build(ref_t *r, const ev_t *e, int n)
{
    memset(r, 0, sizeof *r);
    int64_t st[NPART];
    bool have[NPART] = {0};
    ev_t *acc = calloc((size_t)n, sizeof *acc);
    size_t na = 0;
    for (int i = 0; i < n; i++) {
        int p = e[i].part;
        if (!have[p] || e[i].t > st[p]) {
            st[p] = e[i].t;
            have[p] = true;
        }
        if (e[i].t + GRACE < st[p]) {
            r->late++;
            continue;
        }
        if (e[i].t < st[p])
            r->joined_late++;
        /* bridging: accepted events of the key on both sides, each within
         * the gap but more than gap apart from each other */
        int64_t below = INT64_MIN, above = INT64_MAX;
        for (size_t j = 0; j < na; j++) {
            if (strcmp(acc[j].key, e[i].key))
                continue;
            if (acc[j].t <= e[i].t && acc[j].t > below)
                below = acc[j].t;
            if (acc[j].t >= e[i].t && acc[j].t < above)
                above = acc[j].t;
        }
        if (below != INT64_MIN && above != INT64_MAX && e[i].t - below <= GAP &&
            above - e[i].t <= GAP && above - below > GAP)
            r->bridges++;
        acc[na++] = e[i];
    }
    qsort(acc, na, sizeof *acc, tcmp);
    r->s = calloc(na + 1, sizeof *r->s);
    for (size_t i = 0; i < na; i++) {
        if (i == 0 || strcmp(acc[i].key, acc[i - 1].key) || acc[i].t - acc[i - 1].t > GAP) {
            sess_t *s = &r->s[r->n++];
            snprintf(s->key, sizeof s->key, "%s", acc[i].key);
            s->start = acc[i].t;
        }
        sess_t *s = &r->s[r->n - 1];
        s->end = acc[i].t;
        s->count++;
    }
    for (size_t i = 0; i < r->n; i++) {
        sess_t *s = &r->s[i];
        int p = part_of(s->key);
        s->closed = s->end + GAP + GRACE + 1 <= st[p];
        s->expired = s->end + 1 + GAP + (EXPIRES > GRACE ? EXPIRES : GRACE) <= st[p];
    }
    free(acc);
}

/* ------------------------------------------------------------------ */
/* the app                                                            */

typedef struct closed_rec {
    char key[16];
    int64_t start, end, count;
} closed_rec_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static closed_rec_t closes[4096];
static size_t ncloses;

static int64_t be64(const void *v)
{
    int64_t n = 0;
    for (int i = 0; i < 8; i++)
        n = (n << 8) | ((const unsigned char *)v)[i];
    return n;
}

static mph_err_t on_close(mph_event_t *ev, const void *key, size_t kl, int64_t start,
                          int64_t end, const void *value, size_t vl, void *opaque)
{
    (void)ev;
    (void)opaque;
    pthread_mutex_lock(&lock);
    if (ncloses < sizeof closes / sizeof *closes && vl == 8 && kl < 16) {
        closed_rec_t *c = &closes[ncloses++];
        memcpy(c->key, key, kl);
        c->key[kl] = '\0';
        c->start = start;
        c->end = end;
        c->count = be64(value);
    }
    pthread_mutex_unlock(&lock);
    return MPH_OK;
}

static mph_err_t on_event(mph_event_t *ev, void *opaque)
{
    size_t kl;
    const void *k = mph_event_key(ev, &kl);
    return mph_window_incr(ev, opaque, k, kl, 1);
}

typedef struct run {
    char app_id[128], input[160], dir[256];
    const char *store;
} run_t;

/* A fresh app id, input topic (NPART partitions) and data directory. */
static void run_prepare(run_t *r, const char *prefix)
{
    mph_test_unique(prefix, r->app_id, sizeof r->app_id);
    snprintf(r->input, sizeof r->input, "%s-in", r->app_id);
    cr_assert_not_null(mph_test_tmpdir(prefix, r->dir, sizeof r->dir));
    mph_test_create_topic(cluster, r->input, NPART);
}

/* A one-worker app of run r on a memory store, logging at log_level, with
 * its input topic declared (*in); tables and agents are the caller's. */
static mph_app_t *one_worker_app(const run_t *r, const char *log_level, mph_topic_t **in)
{
    const char *kv[] = {"broker", cluster->broker, "app_id", r->app_id, "workers", "1",
                        "store", "memory", "datadir", r->dir, "commit_interval_ms", "200",
                        "log_level", log_level, "topic_partitions", "4", NULL};
    char err[512];
    mph_app_t *app = mph_test_app_kv(kv);
    *in = mph_topic_new(app, r->input, NULL, err, sizeof err);
    cr_assert_not_null(*in, "%s", err);
    return app;
}

static mph_app_t *app_new(run_t *r, mph_window_t **wout)
{
    const char *kv[] = {"broker", cluster->broker, "app_id", r->app_id, "workers", "2",
                        "store", r->store, "datadir", r->dir, "commit_interval_ms", "200",
                        "log_level", "warn", "topic_partitions", "4", "web_enabled", "true",
                        "web_port", "0", "web_bind", "127.0.0.1", NULL};
    char err[512];
    mph_app_t *app = mph_test_app_kv(kv);
    mph_topic_t *in = mph_topic_new(app, r->input, NULL, err, sizeof err);
    cr_assert_not_null(in, "%s", err);
    mph_table_opts_t *o = mph_table_opts_new();
    mph_table_opts_set(o, "value_codec", "i64", NULL, 0);
    mph_table_opts_set(o, "default", "0", NULL, 0);
    mph_table_t *t = mph_table_new(app, "sessions", o, err, sizeof err);
    mph_table_opts_destroy(o);
    cr_assert_not_null(t, "%s", err);
    cr_assert_null(mph_table_session(t, 0, EXPIRES, err, sizeof err), "gap 0 refused");
    cr_expect(strstr(err, "gap"), "%s", err);
    mph_window_t *w = mph_table_session(t, GAP, EXPIRES, err, sizeof err);
    cr_assert_not_null(w, "%s", err);
    size_t nr;
    int64_t st;
    cr_expect_eq(mph_window_ranges(w, 1000, &st, 1, &nr), MPH_ERR_INVALID);
    cr_assert_eq(mph_window_grace(w, GRACE), MPH_OK);
    cr_assert_eq(mph_window_on_close(w, on_close, NULL), MPH_OK);
    cr_assert_not_null(mph_agent_new(app, "sess", in, on_event, w, err, sizeof err), "%s", err);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    *wout = w;
    return app;
}

static void produce(const run_t *r, const ev_t *e, int from, int to)
{
    for (int i = from; i < to; i++) {
        rd_kafka_resp_err_t err;
        while ((err = rd_kafka_producev(cluster->producer, RD_KAFKA_V_TOPIC(r->input),
                                        RD_KAFKA_V_PARTITION(e[i].part),
                                        RD_KAFKA_V_KEY(e[i].key, strlen(e[i].key)),
                                        RD_KAFKA_V_VALUE("x", 1), RD_KAFKA_V_TIMESTAMP(e[i].t),
                                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                        RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(cluster->producer, 10);
        cr_assert_eq(err, 0, "produce: %s", rd_kafka_err2str(err));
    }
    mph_test_flush(cluster);
}

static void produce_ts_one(const char *topic, int part, const char *k, const char *v,
                           int64_t ts)
{
    rd_kafka_resp_err_t err = rd_kafka_producev(
        cluster->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(part),
        RD_KAFKA_V_KEY(k, strlen(k)), RD_KAFKA_V_VALUE((void *)v, strlen(v)),
        RD_KAFKA_V_TIMESTAMP(ts), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    cr_assert_eq(err, 0, "produce: %s", rd_kafka_err2str(err));
}

static void wait_committed(const run_t *r, int64_t want)
{
    int64_t got = -1;
    for (int i = 0; i < 600 && got < want; i++) {
        got = mph_test_committed_sum(cluster, r->app_id, r->input, NPART);
        if (got < want)
            usleep(100000);
    }
    cr_assert_eq(got, want, "input committed");
}

/* GET path from the app's web view: the status, the whole answer in buf. */
static int http_get(mph_app_t *app, const char *path, char *buf, size_t size)
{
    cr_assert_not_null(app->web, "web view on");
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)mph__web_port(app->web));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
    cr_assert_eq(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
    size_t got = 0;
    ssize_t k;
    while (got + 1 < size && (k = recv(fd, buf + got, size - 1 - got, 0)) > 0)
        got += (size_t)k;
    buf[got] = '\0';
    close(fd);
    int status = 0;
    cr_assert_eq(sscanf(buf, "HTTP/1.%*d %d", &status), 1, "%.100s", buf);
    return status;
}

static void check_web(mph_app_t *app, const sess_t *s)
{
    char path[256], buf[4096], want[64];
    snprintf(path, sizeof path, "/tables/sessions/%s?window=%lld", s->key, (long long)s->start);
    cr_expect_eq(http_get(app, path, buf, sizeof buf), 200, "%s", buf);
    snprintf(want, sizeof want, "X-Window-End: %lld", (long long)(s->end + 1));
    cr_expect(strcasestr(buf, want), "%s in %s", want, buf);
    char *body = strstr(buf, "\r\n\r\n");
    cr_expect(body && strtoll(body + 4, NULL, 10) == s->count, "count %lld: %s",
              (long long)s->count, buf);
    snprintf(path, sizeof path, "/tables/sessions/%s?window=%lld", s->key,
             (long long)s->start + 1);
    cr_expect_eq(http_get(app, path, buf, sizeof buf), 404, "no session starts there: %s", buf);
    snprintf(path, sizeof path, "/tables/sessions/%s", s->key);
    cr_expect_eq(http_get(app, path, buf, sizeof buf), 400, "a session needs ?window=: %s", buf);
}

static void check(mph_app_t *app, mph_window_t *w, const ref_t *ref)
{
    /* on_close: each closed session once, with its count */
    pthread_mutex_lock(&lock);
    size_t want = 0;
    for (size_t i = 0; i < ref->n; i++) {
        sess_t *s = &ref->s[i];
        if (!s->closed)
            continue;
        want++;
        int found = 0;
        for (size_t j = 0; j < ncloses; j++)
            if (!strcmp(closes[j].key, s->key) && closes[j].start == s->start) {
                found++;
                cr_expect_eq(closes[j].end, s->end + 1, "%s@%lld end", s->key,
                             (long long)s->start);
                cr_expect_eq(closes[j].count, s->count, "%s@%lld: %lld counted, %lld in it",
                             s->key, (long long)s->start, (long long)closes[j].count,
                             (long long)s->count);
            }
        cr_expect_eq(found, 1, "session %s@%lld..%lld closed %d times", s->key,
                     (long long)s->start, (long long)s->end, found);
    }
    cr_expect_eq(ncloses, want, "%zu on_close calls, %zu sessions closed", ncloses, want);
    pthread_mutex_unlock(&lock);
    /* lookups: live sessions are there with their count, expired ones not */
    size_t live = 0;
    for (size_t i = 0; i < ref->n; i++) {
        sess_t *s = &ref->s[i];
        void *v = NULL;
        size_t vl = 0;
        int64_t start = 0, end = 0;
        mph_err_t e = mph_window_lookup(app, w, s->key, strlen(s->key), MPH_WINDOW_AT,
                                        s->start, &v, &vl, &start, &end, 5000);
        if (s->expired) {
            cr_expect_eq(e, MPH_ERR_NOENT, "%s@%lld expired, lookup: %s", s->key,
                         (long long)s->start, mph_err_str(e));
        } else {
            live++;
            cr_expect_eq(e, MPH_OK, "%s@%lld lookup: %s", s->key, (long long)s->start,
                         mph_err_str(e));
            if (e == MPH_OK) {
                cr_expect_eq(vl, 8);
                cr_expect_eq(be64(v), s->count, "%s@%lld", s->key, (long long)s->start);
                cr_expect_eq(start, s->start);
                cr_expect_eq(end, s->end + 1);
            }
        }
        free(v);
    }
    cr_expect_gt(live, 0, "the test keeps some sessions alive");
    /* NOW is not how sessions are named */
    void *v = NULL;
    cr_expect_eq(mph_window_lookup(app, w, "u1", 2, MPH_WINDOW_NOW, 0, &v, NULL, NULL, NULL, 1000),
                 MPH_ERR_RANGE);
    /* no session starts one ms after a live one; the web view */
    for (size_t i = 0; i < ref->n; i++)
        if (!ref->s[i].expired) {
            check_web(app, &ref->s[i]);
            cr_expect_eq(mph_window_lookup(app, w, ref->s[i].key, strlen(ref->s[i].key),
                                           MPH_WINDOW_AT, ref->s[i].start + 1, &v, NULL, NULL,
                                           NULL, 5000),
                         MPH_ERR_NOENT);
            break;
        }
}

static void scenario(const char *store, bool restart)
{
    run_t r = {0};
    r.store = store;
    run_prepare(&r, "sess");
    ncloses = 0;
    int64_t base = (mph_clock_wall_ms() / 3600000 - 2) * 3600000;
    int n;
    ev_t *e = gen(base, &n);
    ref_t ref;
    ref_build(&ref, e, n);
    cr_assert_gt(ref.late, 0, "the input has late events");
    cr_assert_gt(ref.joined_late, 0, "the input has out-of-order events within grace");
    cr_assert_gt(ref.bridges, 1, "the input has bridging events");

    mph_window_t *w;
    mph_app_t *app = app_new(&r, &w);
    int half = restart ? n / 2 : n;
    produce(&r, e, 0, half);
    wait_committed(&r, half);
    if (restart) {
        cr_assert_eq(mph_app_stop(app), MPH_OK);
        mph_app_destroy(app);
        app = app_new(&r, &w);
        produce(&r, e, half, n);
        wait_committed(&r, n);
    }
    check(app, w, &ref);
    if (!restart)
        cr_expect_eq(mph_window_stat(w, MPH_WINDOW_STAT_LATE_EVENTS), ref.late);
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);
    free(ref.s);
    free(e);
    mph_test_rmrf(r.dir);
}

Test(session, merging_late_bridging_grace_expiry)
{
    scenario("memory", false);
}

Test(session, graceful_restart_rocksdb)
{
    scenario("rocksdb", true);
}

Test(session, graceful_restart_memory_from_changelog)
{
    scenario("memory", true);
}

/* ------------------------------------------------------------------ */
/* a merge function and mph_window_update on string values            */

static char merged_close[64];
static int64_t merged_start, merged_end;
static int merged_calls;

static mph_err_t concat_merge(const void *a, size_t al, const void *b, size_t bl,
                              mph_window_update_t *out, void *opaque)
{
    (void)opaque;
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%.*s|%.*s", (int)al, (const char *)a, (int)bl,
                     (const char *)b);
    return mph_window_update_set(out, buf, (size_t)n);
}

static mph_err_t append_value(int64_t start, int64_t end, const void *old, size_t ol,
                              mph_window_update_t *upd, void *opaque)
{
    (void)start;
    (void)end;
    mph_event_t *ev = opaque;
    size_t vl;
    const void *v = mph_event_value(ev, &vl);
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%.*s%.*s", (int)ol, old ? (const char *)old : "",
                     (int)vl, (const char *)v);
    return mph_window_update_set(upd, buf, (size_t)n);
}

static mph_err_t str_close(mph_event_t *ev, const void *key, size_t kl, int64_t start,
                           int64_t end, const void *value, size_t vl, void *opaque)
{
    (void)ev;
    (void)opaque;
    if (kl == 1 && !memcmp(key, "k", 1)) {
        pthread_mutex_lock(&lock);
        snprintf(merged_close, sizeof merged_close, "%.*s", (int)vl, (const char *)value);
        merged_start = start;
        merged_end = end;
        merged_calls++;
        pthread_mutex_unlock(&lock);
    }
    return MPH_OK;
}

static char got_current[64];
static int64_t got_start, got_end, got_st;
static mph_err_t got_before = MPH_OK;

static mph_err_t str_event(mph_event_t *ev, void *opaque)
{
    size_t kl, vl;
    const void *k = mph_event_key(ev, &kl);
    const char *v = mph_event_value(ev, &vl);
    const void *cur;
    size_t cl = 0;
    if (vl == 1 && v[0] == 'c') /* before its write: c joins no session yet */
        got_before = mph_window_get(ev, opaque, k, kl, MPH_WINDOW_CURRENT, 0, &cur, &cl, NULL,
                                    NULL);
    mph_err_t err = mph_window_update(ev, opaque, k, kl, append_value, ev);
    if (!err && vl == 1 && v[0] == 'c') {
        /* after it: the merged session that holds c's time */
        err = mph_window_get(ev, opaque, k, kl, MPH_WINDOW_CURRENT, 0, &cur, &cl, &got_start,
                             &got_end);
        if (!err)
            snprintf(got_current, sizeof got_current, "%.*s", (int)cl, (const char *)cur);
        if (!err)
            err = mph_window_stream_time(ev, opaque, &got_st);
    }
    return err;
}

Test(session, merge_function_and_update)
{
    run_t r = {0};
    r.store = "memory";
    run_prepare(&r, "sessm");
    char err[512];
    mph_topic_t *in;
    mph_app_t *app = one_worker_app(&r, "warn", &in);
    mph_table_t *t = mph_table_new(app, "strs", NULL, err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    mph_window_t *w = mph_table_session(t, GAP, EXPIRES, err, sizeof err);
    cr_assert_not_null(w, "%s", err);
    mph_window_t *tw = NULL;
    mph_table_t *t2 = mph_table_new(app, "tumb", NULL, err, sizeof err);
    tw = mph_table_tumbling(t2, 1000, 0, err, sizeof err);
    cr_expect_eq(mph_window_on_merge(tw, concat_merge, NULL), MPH_ERR_INVALID,
                 "merge functions are for session windows");
    cr_assert_eq(mph_window_on_merge(w, concat_merge, NULL), MPH_OK);
    cr_assert_eq(mph_window_grace(w, GRACE), MPH_OK);
    cr_assert_eq(mph_window_on_close(w, str_close, NULL), MPH_OK);
    cr_assert_not_null(mph_agent_new(app, "s", in, str_event, w, err, sizeof err), "%s", err);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    int64_t T = (mph_clock_wall_ms() / 3600000 - 1) * 3600000;
    struct {
        const char *v;
        int64_t t;
    } in_ev[] = {{"a", T}, {"b", T + GAP + 1000}, {"c", T + (GAP + 1000) / 2},
                 {"z", T + 10 * GAP}};
    int p = part_of("k");
    for (size_t i = 0; i < 4; i++)
        produce_ts_one(r.input, p, "k", in_ev[i].v, in_ev[i].t);
    mph_test_flush(cluster);
    wait_committed(&r, 4);
    cr_expect_eq(got_before, MPH_ERR_NOENT, "no session holds c's time before c");
    cr_expect_str_eq(got_current, "a|bc");
    cr_expect_eq(got_start, T);
    cr_expect_eq(got_end, T + GAP + 1001);
    cr_expect_eq(got_st, T + GAP + 1000, "a late event does not move stream time");
    pthread_mutex_lock(&lock);
    cr_expect_eq(merged_calls, 1, "one session closed");
    cr_expect_str_eq(merged_close, "a|bc", "merged by the merge function, then updated");
    cr_expect_eq(merged_start, T);
    cr_expect_eq(merged_end, T + GAP + 1001);
    pthread_mutex_unlock(&lock);
    void *v = NULL;
    size_t vl = 0;
    cr_expect_eq(mph_window_lookup(app, w, "k", 1, MPH_WINDOW_AT, T + 10 * GAP, &v, &vl, NULL,
                                   NULL, 5000),
                 MPH_OK);
    cr_expect(vl == 1 && v && !memcmp(v, "z", 1));
    free(v);
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);
    mph_test_rmrf(r.dir);
}

/* ------------------------------------------------------------------ */
/* a failing on_close is retried at the next event, then not again    */

static int fail_calls, fail_ok;

static mph_err_t failing_close(mph_event_t *ev, const void *key, size_t kl, int64_t start,
                               int64_t end, const void *value, size_t vl, void *opaque)
{
    (void)ev;
    (void)start;
    (void)end;
    (void)value;
    (void)vl;
    (void)opaque;
    if (kl != 1 || memcmp(key, "k", 1))
        return MPH_OK;
    if (ck_pr_faa_int(&fail_calls, 1) == 0)
        return MPH_ERR_INTERNAL; /* the first attempt fails */
    ck_pr_inc_int(&fail_ok);
    return MPH_OK;
}

Test(session, failed_close_is_retried_once)
{
    run_t r = {0};
    run_prepare(&r, "sessf");
    char err[512];
    mph_topic_t *in;
    mph_app_t *app = one_worker_app(&r, "error", &in);
    mph_table_opts_t *o = mph_table_opts_new();
    mph_table_opts_set(o, "value_codec", "i64", NULL, 0);
    mph_table_t *t = mph_table_new(app, "cnt", o, err, sizeof err);
    mph_table_opts_destroy(o);
    mph_window_t *w = mph_table_session(t, GAP, EXPIRES, err, sizeof err);
    cr_assert_not_null(w, "%s", err);
    cr_assert_eq(mph_window_on_close(w, failing_close, NULL), MPH_OK);
    cr_assert_not_null(mph_agent_new(app, "s", in, on_event, w, err, sizeof err), "%s", err);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    int64_t T = (mph_clock_wall_ms() / 3600000 - 1) * 3600000;
    /* "k" at T; "x" (same partition) far later closes k's session: the
     * close fails; "y" moves stream time again: retried, succeeds; "y2"
     * moves it once more: nothing is closed twice. */
    int p = part_of("k");
    char others[3][16];
    int found = 0;
    for (int i = 0; found < 3 && i < 1000; i++) {
        char kb[16];
        snprintf(kb, sizeof kb, "o%d", i);
        if (part_of(kb) == p)
            snprintf(others[found++], 16, "%s", kb);
    }
    cr_assert_eq(found, 3);
    produce_ts_one(r.input, p, "k", "x", T);
    produce_ts_one(r.input, p, others[0], "x", T + 3 * GAP);
    produce_ts_one(r.input, p, others[1], "x", T + 3 * GAP + 1);
    produce_ts_one(r.input, p, others[2], "x", T + 3 * GAP + 2);
    mph_test_flush(cluster);
    wait_committed(&r, 4);
    cr_expect_eq(ck_pr_load_int(&fail_calls), 2, "one failure, one retry");
    cr_expect_eq(ck_pr_load_int(&fail_ok), 1);
    cr_expect_eq(mph_window_stat(w, MPH_WINDOW_STAT_CLOSE_ERRORS), 1);
    cr_expect_eq(mph_window_stat(w, MPH_WINDOW_STAT_CLOSED), 1,
                 "k's session closed (the others are open)");
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);
    mph_test_rmrf(r.dir);
}

/* ------------------------------------------------------------------ */
/* increments past INT64_MAX wrap (two's complement), never overflow   */

struct big {
    mph_window_t *ws[2];
    mph_table_t *plain;
};

static mph_err_t big_incr(mph_event_t *ev, void *opaque)
{
    struct big *b = opaque;
    mph_window_t **ws = b->ws;
    size_t kl;
    const void *k = mph_event_key(ev, &kl);
    mph_err_t err = mph_window_incr(ev, ws[0], k, kl, INT64_MAX);
    if (!err)
        err = mph_window_incr(ev, ws[1], k, kl, INT64_MAX);
    return err ? err : mph_table_incr(ev, b->plain, k, kl, INT64_MAX, NULL);
}

Test(session, incr_past_int64_max_wraps)
{
    run_t r = {0};
    r.store = "memory";
    run_prepare(&r, "sessi");
    char err[512];
    mph_topic_t *in;
    mph_app_t *app = one_worker_app(&r, "warn", &in);
    mph_table_opts_t *o = mph_table_opts_new();
    mph_table_opts_set(o, "value_codec", "i64", NULL, 0);
    struct big b = {0};
    mph_window_t **ws = b.ws;
    mph_table_t *t = mph_table_new(app, "sess", o, err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    ws[0] = mph_table_session(t, GAP, EXPIRES, err, sizeof err);
    t = mph_table_new(app, "tumb", o, err, sizeof err);
    b.plain = mph_table_new(app, "plain", o, err, sizeof err);
    mph_table_opts_destroy(o);
    cr_assert_not_null(b.plain, "%s", err);
    cr_assert_not_null(t, "%s", err);
    ws[1] = mph_table_tumbling(t, 3600000, EXPIRES, err, sizeof err);
    cr_assert(ws[0] && ws[1], "%s", err);
    cr_assert_not_null(mph_agent_new(app, "i", in, big_incr, &b, err, sizeof err), "%s", err);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    int64_t T = (mph_clock_wall_ms() / 3600000 - 1) * 3600000;
    int p = part_of("k");
    produce_ts_one(r.input, p, "k", "1", T);
    produce_ts_one(r.input, p, "k", "2", T + 1);
    mph_test_flush(cluster);
    wait_committed(&r, 2);
    for (int i = 0; i < 2; i++) {
        void *v = NULL;
        size_t vl = 0;
        cr_expect_eq(mph_window_lookup(app, ws[i], "k", 1, MPH_WINDOW_AT, T, &v, &vl, NULL, NULL,
                                       5000),
                     MPH_OK, "window %d", i);
        uint64_t u = 0;
        for (size_t b = 0; v && b < vl && b < 8; b++)
            u = u << 8 | ((const unsigned char *)v)[b];
        cr_expect(vl == 8 && u == UINT64_MAX - 1, "window %d: 2 * INT64_MAX wraps to -2", i);
        free(v);
    }
    void *v = NULL;
    size_t vl = 0;
    cr_expect_eq(mph_table_lookup(app, b.plain, "k", 1, &v, &vl, 5000), MPH_OK);
    uint64_t u = 0;
    for (size_t i = 0; v && i < vl && i < 8; i++)
        u = u << 8 | ((const unsigned char *)v)[i];
    cr_expect(vl == 8 && u == UINT64_MAX - 1, "mph_table_incr: 2 * INT64_MAX wraps to -2");
    free(v);
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);
    mph_test_rmrf(r.dir);
}
