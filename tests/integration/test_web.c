/*
 * The web view end to end: an app forwarding records (mock cluster, or the
 * broker in MEPHISTO_TEST_BROKERS) with its web view on 127.0.0.1, port 0,
 * read by a raw-socket HTTP client written here. Checks /stats against what
 * was produced, /ready, /health, /router, /metrics (parsed by Python's
 * prometheus_client when it is installed), the index page in a headless
 * Chromium (when installed), and that a thousand open connections neither
 * stop the web view from answering nor the workers from processing.
 */
// ctest-timeout: 400
// ctest-labels: web
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ck_pr.h>

#include "mephisto.h"
#include "mephisto/json.h"
#include "mephisto/sensor.h"
#include "mph_test.h"
#include "runtime/app.h"
#include "runtime/web.h"
#include "runtime/worker.h"

/* ---- a small blocking HTTP client ---- */

typedef struct reply {
    int status;
    char *head; /* status line and headers, NUL-terminated */
    char *body; /* NUL-terminated */
    size_t body_len;
} reply_t;

static void reply_free(reply_t *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

static int connect_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        /* A signal (a browser's child exiting) may interrupt the call; the
         * connection then completes in the background. */
        cr_assert_eq(errno, EINTR, "connect: %s", strerror(errno));
        struct pollfd pfd = {fd, POLLOUT, 0};
        int rc;
        while ((rc = poll(&pfd, 1, 10000)) < 0 && errno == EINTR)
            ;
        int e = 0;
        socklen_t elen = sizeof e;
        cr_assert_eq(rc, 1, "connect: no answer");
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen);
        cr_assert_eq(e, 0, "connect: %s", strerror(e));
    }
    return fd;
}

/* Sends raw bytes, reads the whole answer (the request asks the server to
 * close) and splits it. */
static void exchange(int port, const char *request, reply_t *r)
{
    memset(r, 0, sizeof *r);
    int fd = connect_port(port);
    size_t len = strlen(request), off = 0;
    while (off < len) {
        ssize_t n = send(fd, request + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        cr_assert_gt(n, 0, "send: %s", strerror(errno));
        off += (size_t)n;
    }
    size_t cap = 65536, got = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (got == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
        ssize_t n = recv(fd, buf + got, cap - got, 0);
        if (n == 0)
            break;
        if (n < 0 && errno == EINTR)
            continue;
        cr_assert_gt(n, 0, "recv: %s", strerror(errno));
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    char *sep = strstr(buf, "\r\n\r\n");
    cr_assert_not_null(sep, "no header end in: %.200s", buf);
    size_t hlen = (size_t)(sep - buf);
    r->head = strndup(buf, hlen);
    r->body_len = got - hlen - 4;
    r->body = malloc(r->body_len + 1);
    memcpy(r->body, sep + 4, r->body_len);
    r->body[r->body_len] = '\0';
    cr_assert_eq(sscanf(buf, "HTTP/1.%*d %d", &r->status), 1, "%.100s", buf);
    free(buf);
}

static void get(int port, const char *path, reply_t *r)
{
    char req[512];
    snprintf(req, sizeof req,
             "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
             path);
    exchange(port, req, r);
}

static bool header_has(const reply_t *r, const char *text)
{
    return strcasestr(r->head, text) != NULL;
}

/* ---- JSON helpers ---- */

static mph_json_parser_t *parser;

static void parse(const reply_t *r)
{
    cr_assert_eq(mph_json_parse(parser, r->body, r->body_len, r->body_len),
                 MPH_OK, "%.200s", r->body);
    cr_assert_eq(mph_json_validate(parser), MPH_OK, "%s",
                 mph_json_last_error(parser));
}

static int64_t jint(const char *path)
{
    int64_t v = 0;
    cr_assert_eq(mph_json_get_i64(parser, MPH_JSON_ROOT, path, &v), MPH_OK,
                 "%s", path);
    return v;
}

static bool jnull(const char *path)
{
    bool n = false;
    cr_assert_eq(mph_json_get_is_null(parser, MPH_JSON_ROOT, path, &n), MPH_OK,
                 "%s", path);
    return n;
}

static bool jbool(const char *path)
{
    bool b = false;
    cr_assert_eq(mph_json_get_bool(parser, MPH_JSON_ROOT, path, &b), MPH_OK,
                 "%s", path);
    return b;
}

static bool jstr_eq(const char *path, const char *want)
{
    const char *s = NULL;
    size_t n = 0;
    cr_assert_eq(mph_json_get_str(parser, MPH_JSON_ROOT, path, &s, &n), MPH_OK,
                 "%s", path);
    return n == strlen(want) && memcmp(s, want, n) == 0;
}

/* ---- apps ---- */

static mph_err_t forward_cb(mph_event_t *ev, void *opaque)
{
    return mph_event_forward(ev, opaque);
}

static mph_test_cluster_t *cluster;

static mph_app_t *forward_app_with(const char *app_id, const char *in,
                                   const char *out, mph_agent_fn *fn,
                                   const char *const *extra)
{
    char err[512];
    mph_conf_t *conf = mph_conf_new();
    const char *set[][2] = {
        {"broker", cluster->broker},
        {"app_id", app_id},
        {"workers", "2"},
        {"commit_interval_ms", "200"},
        {"web_enabled", "true"},
        {"web_port", "0"},
        {"web_bind", "127.0.0.1"},
        {"log_level", "warn"},
    };
    for (size_t i = 0; i < sizeof set / sizeof set[0]; i++)
        cr_assert_eq(mph_conf_set(conf, set[i][0], set[i][1], err, sizeof err),
                     MPH_OK, "%s", err);
    for (const char *const *e = extra; e && e[0]; e += 2)
        cr_assert_eq(mph_conf_set(conf, e[0], e[1], err, sizeof err), MPH_OK,
                     "%s", err);
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(app, "%s", err);
    mph_topic_t *tin = mph_topic_new(app, in, NULL, err, sizeof err);
    cr_assert_not_null(tin, "%s", err);
    if (out) {
        mph_topic_t *tout = mph_topic_new(app, out, NULL, err, sizeof err);
        cr_assert_not_null(tout, "%s", err);
        cr_assert_not_null(
            mph_agent_new(app, "forward", tin, fn, tout, err, sizeof err), "%s",
            err);
    }
    return app;
}

static mph_app_t *forward_app(const char *app_id, const char *in,
                              const char *out, mph_agent_fn *fn)
{
    return forward_app_with(app_id, in, out, fn, NULL);
}

/* An app counting the events of each key of in in table "counts" (i64,
 * string keys, no default). The changelog topic is created here: the mock
 * cluster cannot create it through the admin API. */
static mph_err_t count_cb(mph_event_t *ev, void *opaque)
{
    size_t len;
    const void *key = mph_event_key(ev, &len);
    return mph_table_incr(ev, opaque, key, len, 1, NULL);
}

static mph_app_t *count_app(const char *app_id, const char *in,
                            const char *const *extra)
{
    char err[512], changelog[300];
    snprintf(changelog, sizeof changelog, "%s-counts-changelog", app_id);
    mph_test_create_topic(cluster, changelog, 4);
    mph_app_t *app = forward_app_with(app_id, in, NULL, NULL, extra);
    mph_table_opts_t *o = mph_table_opts_new();
    cr_assert_eq(mph_table_opts_set(o, "value_codec", "i64", err, sizeof err),
                 MPH_OK, "%s", err);
    cr_assert_eq(mph_table_opts_set(o, "key_codec", "string", err, sizeof err),
                 MPH_OK, "%s", err);
    cr_assert_eq(mph_table_opts_set(o, "partitions", "4", err, sizeof err),
                 MPH_OK, "%s", err);
    mph_table_t *t = mph_table_new(app, "counts", o, err, sizeof err);
    mph_table_opts_destroy(o);
    cr_assert_not_null(t, "%s", err);
    cr_assert_not_null(mph_agent_new(app, "count", app->topics[0], count_cb, t,
                                     err, sizeof err),
                       "%s", err);
    return app;
}

/* Produces key n times, to the partition murmur2 gives it (as the Java
 * client and mephisto's tables do). */
static void produce_key(const char *topic, const char *key, int n)
{
    int32_t p = mph__kafka_partition_for(key, strlen(key), 4);
    for (int i = 0; i < n; i++)
        mph_test_produce(cluster, topic, p, key, strlen(key), "1", 1);
    mph_test_flush(cluster);
}

/* The apps' web views: the one the engine started with the app when it
 * does, else one started here (kept in webs[] until stop_app). */
static struct {
    mph_app_t *app;
    struct mph__web *web;
} webs[4];

static struct mph__web *web_of(mph_app_t *app)
{
    if (app->web)
        return app->web;
    for (size_t i = 0; i < 4; i++)
        if (webs[i].app == app)
            return webs[i].web;
    return NULL;
}

static int web_port(mph_app_t *app)
{
    if (!web_of(app)) {
        size_t i = 0;
        while (i < 4 && webs[i].app)
            i++;
        cr_assert_lt(i, 4);
        char err[256] = "";
        webs[i].web = mph__web_start(app, err, sizeof err);
        cr_assert_not_null(webs[i].web, "web: %s", err);
        webs[i].app = app;
    }
    return mph__web_port(web_of(app));
}

static unsigned web_connections(mph_app_t *app)
{
    return mph__web_connections(web_of(app));
}

static void stop_app(mph_app_t *app)
{
    for (size_t i = 0; i < 4; i++)
        if (webs[i].app == app) {
            mph__web_stop(webs[i].web);
            webs[i].app = NULL;
            webs[i].web = NULL;
        }
    cr_expect_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);
}

/* Polls path until its status is want (or timeout_s). */
static bool wait_status(int port, const char *path, int want, int timeout_s)
{
    for (int i = 0; i < timeout_s * 10; i++) {
        reply_t r;
        get(port, path, &r);
        int st = r.status;
        reply_free(&r);
        if (st == want)
            return true;
        usleep(100000);
    }
    return false;
}

/* Polls /stats until every produced record is processed and acknowledged
 * downstream, every partition's lag is 0 and a commit happened. Leaves the
 * last document parsed. */
static bool wait_done(int port, reply_t *r, int64_t n, int parts,
                      const char *topic_path, int timeout_s)
{
    char path[128];
    for (int i = 0; i < timeout_s * 5; i++) {
        get(port, "/stats", r);
        cr_assert_eq(r->status, 200, "%s", r->body);
        parse(r);
        bool done = jint("totals.events_in") == n &&
                    jint("totals.sends_acked") == n &&
                    jint("commits.commits") > 0;
        for (int p = 0; done && p < parts; p++) {
            snprintf(path, sizeof path, "%s.partitions.%d.lag", topic_path, p);
            done = !jnull(path) && jint(path) == 0;
        }
        if (done)
            return true;
        reply_free(r);
        usleep(200000);
    }
    return false;
}

static void setup(void)
{
    cluster = mph_test_cluster_new();
    char err[128];
    parser = mph_json_parser_new(0, err, sizeof err);
    cr_assert_not_null(parser, "%s", err);
}

static void teardown(void)
{
    mph_json_parser_destroy(parser);
    mph_test_cluster_destroy(cluster);
}

TestSuite(web, .init = setup, .fini = teardown, .timeout = 300);

/* ---- Prometheus parsing through Python's prometheus_client ---- */

/* A python3 that can import prometheus_client, or NULL. */
static const char *prometheus_python(void)
{
    static char path[1100];
    const char *src = getenv("MEPHISTO_SOURCE_DIR");
    char candidates[3][1024];
    snprintf(candidates[0], sizeof candidates[0], "%s/.venv/bin/python3",
             src ? src : ".");
    snprintf(candidates[1], sizeof candidates[1], "python3");
    /* Debian's python3-prometheus-client, installed by tools/setup */
    snprintf(candidates[2], sizeof candidates[2], "/usr/bin/python3");
    for (int i = 0; i < 3; i++) {
        const char *c = candidates[i];
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "'%.1023s' -c 'import prometheus_client' >/dev/null 2>&1", c);
        if (system(cmd) == 0) {
            snprintf(path, sizeof path, "%.1023s", c);
            return path;
        }
    }
    return NULL;
}

static const char prom_script[] =
    "import sys\n"
    "from prometheus_client.parser import text_string_to_metric_families\n"
    "text = open(sys.argv[1]).read()\n"
    "for f in text_string_to_metric_families(text):\n"
    "    total = sum(s.value for s in f.samples if s.name == f.name + "
    "'_total')\n"
    "    print(f.name, f.type, len(f.samples), int(total))\n";

static void check_with_prometheus_client(const reply_t *metrics, int64_t n)
{
    const char *py = prometheus_python();
    if (!py) {
        cr_log_info("prometheus_client not installed: /metrics not parsed "
                    "by it (pip install prometheus_client, or tools/setup)");
        return;
    }
    char dir[256];
    cr_assert_not_null(mph_test_tmpdir("web-prom", dir, sizeof dir));
    char file[300], script[300], cmd[2048];
    snprintf(file, sizeof file, "%s/metrics.txt", dir);
    snprintf(script, sizeof script, "%s/parse.py", dir);
    FILE *f = fopen(file, "w");
    fwrite(metrics->body, 1, metrics->body_len, f);
    fclose(f);
    f = fopen(script, "w");
    fputs(prom_script, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' 2>&1", py, script, file);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char out[65536];
    size_t got = fread(out, 1, sizeof out - 1, p);
    out[got] = '\0';
    int rc = pclose(p);
    mph_test_rmrf(dir);
    cr_assert_eq(rc, 0, "prometheus_client rejected /metrics:\n%s", out);
    char want[128];
    snprintf(want, sizeof want, "\nmephisto_events counter 2 %lld\n",
             (long long)n);
    cr_expect_not_null(strstr(out, want), "want '%s' in:\n%s", want + 1, out);
    const char *families[] = {
        "\nmephisto_sends_acked counter ",
        "\nmephisto_topic_events_in counter ",
        "\nmephisto_partition_lag gauge ",
        "\nmephisto_partition_end_offset gauge ",
        "\nmephisto_agent_events counter ",
        "\nmephisto_processing_latency_seconds histogram ",
        "\nmephisto_send_latency_seconds histogram ",
        "\nmephisto_commits counter ",
        "\nmephisto_ready gauge 1 ",
    };
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        cr_expect_not_null(strstr(out, families[i]), "no%s in:\n%s",
                           families[i], out);
}

/* ---- the tests ---- */

Test(web, endpoints_report_what_the_app_did)
{
    char in[128], out[128], group[128], err[512], path[256];
    const int N = 20000, P = 4;
    mph_test_unique("web-in", in, sizeof in);
    mph_test_unique("web-out", out, sizeof out);
    mph_test_unique("web-app", group, sizeof group);
    mph_test_create_topic(cluster, in, P);
    mph_test_create_topic(cluster, out, P);
    cr_assert_eq(mph_test_produce_seq(cluster, in, N, 100, 0), N);

    mph_app_t *app = forward_app(group, in, out, forward_cb);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    int port = web_port(app);
    cr_assert_gt(port, 0);

    reply_t r;
    get(port, "/health", &r);
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(r.body, "ok\n");
    reply_free(&r);
    cr_assert(wait_status(port, "/ready", 200, 60), "/ready never 200");

    cr_assert(wait_done(port, &r, N, P, "topics.0", 120),
              "stats never showed all %d records done: %s", N, r.body);
    cr_expect(header_has(&r, "Content-Type: application/json"));
    cr_expect(jstr_eq("app_id", group));
    cr_expect(jbool("ready"));
    cr_expect(jbool("running"));
    cr_expect(jstr_eq("topics.0.name", in));
    cr_expect(jstr_eq("topics.1.name", out));
    cr_expect_eq(jint("topics.0.events_in"), N);
    cr_expect_eq(jint("topics.1.events_out"), N);
    cr_expect_eq(jint("totals.sends"), N);
    cr_expect_eq(jint("totals.events_failed"), 0);
    cr_expect_eq(jint("totals.send_errors"), 0);
    cr_expect_eq(jint("totals.partitions"), P);
    cr_expect_eq(jint("agents.0.events"), N);
    cr_expect_eq(jint("agents.0.errors"), 0);
    cr_expect_eq(jint("workers.0.events_in") + jint("workers.1.events_in"), N);
    cr_expect_geq(jint("totals.processing_latency_ns.p50"), 1);
    cr_expect_geq(jint("totals.processing_latency_ns.p999"),
                  jint("totals.processing_latency_ns.p50"));
    cr_expect_eq(jint("totals.send_latency_ns.count"), N);
    cr_expect_geq(jint("commits.rebalances"), 1);
    int64_t events = 0, ends = 0;
    for (int p = 0; p < P; p++) {
        snprintf(path, sizeof path, "topics.0.partitions.%d.", p);
        char key[300];
        snprintf(key, sizeof key, "%spartition", path);
        cr_expect_eq(jint(key), p);
        snprintf(key, sizeof key, "%sworker", path);
        cr_expect_eq(jint(key), p % 2, "partition p lives on worker p mod 2");
        snprintf(key, sizeof key, "%sevents", path);
        events += jint(key);
        snprintf(key, sizeof key, "%send_offset", path);
        int64_t end = jint(key);
        ends += end;
        snprintf(key, sizeof key, "%sread_offset", path);
        cr_expect_eq(jint(key), end - 1, "read up to the end");
    }
    cr_expect_eq(events, N);
    cr_expect_eq(ends, N, "end offsets add up to what was produced");
    reply_free(&r);

    /* the public call returns the same document */
    char *json = NULL;
    size_t len = 0;
    cr_assert_eq(mph_app_stats_json(app, &json, &len), MPH_OK);
    cr_assert_eq(mph_json_parse(parser, json, len, len), MPH_OK);
    cr_expect_eq(jint("totals.events_in"), N);
    cr_expect_eq(jint("topics.0.partitions.3.worker"), 1);
    free(json);

    /* /metrics */
    reply_t m;
    get(port, "/metrics", &m);
    cr_expect_eq(m.status, 200);
    cr_expect(header_has(&m, "Content-Type: text/plain; version=0.0.4"));
    cr_expect_not_null(
        strstr(m.body, "# TYPE mephisto_events_total counter\n"));
    int64_t total = 0;
    for (const char *l = m.body; (l = strstr(l, "\nmephisto_events_total{"));
         l++) {
        const char *v = strchr(l, '}');
        cr_assert_not_null(v);
        total += strtoll(v + 1, NULL, 10);
    }
    cr_expect_eq(total, N, "per-worker event counters add up");
    check_with_prometheus_client(&m, N);
    reply_free(&m);

    /* /router: every partition is ours, on worker p mod 2 */
    get(port, "/router", &r);
    cr_expect_eq(r.status, 200, "%s", r.body);
    parse(&r);
    char self[64];
    snprintf(self, sizeof self, "127.0.0.1:%d", port);
    cr_expect(jstr_eq("self", self));
    cr_expect(jstr_eq("app_id", group));
    for (int p = 0; p < P; p++) {
        mph_json_val_t topics, t, e;
        cr_assert_eq(
            mph_json_get_object(parser, MPH_JSON_ROOT, "topics", &topics),
            MPH_OK);
        cr_assert_eq(mph_json_field(parser, topics, in, strlen(in), &t),
                     MPH_OK);
        char pid[8];
        snprintf(pid, sizeof pid, "%d", p);
        cr_assert_eq(mph_json_field(parser, t, pid, strlen(pid), &e), MPH_OK);
        int64_t w = -1;
        cr_expect_eq(mph_json_get_i64(parser, e, "worker", &w), MPH_OK);
        cr_expect_eq(w, p % 2);
        const char *host = NULL;
        size_t hl = 0;
        cr_expect_eq(mph_json_get_str(parser, e, "host", &host, &hl), MPH_OK);
        cr_expect(hl == strlen(self) && memcmp(host, self, hl) == 0);
        bool local = false;
        cr_expect_eq(mph_json_get_bool(parser, e, "local", &local), MPH_OK);
        cr_expect(local);
    }
    if (!mph_test_real_broker())
        cr_expect_not(jnull("members_error"),
                      "the mock cluster cannot list group members");
    else
        cr_expect(jnull("members_error"), "%s", r.body);
    reply_free(&r);

    /* the index page, errors */
    get(port, "/", &r);
    cr_expect_eq(r.status, 200);
    cr_expect(header_has(&r, "Content-Type: text/html"));
    cr_expect_not_null(strstr(r.body, "fetch('/stats'"));
    cr_expect_not_null(strstr(r.body, "href=\"/metrics\""));
    reply_free(&r);
    get(port, "/no/such/thing", &r);
    cr_expect_eq(r.status, 404);
    parse(&r);
    cr_expect(jstr_eq("error", "no such path: /no/such/thing"));
    reply_free(&r);
    exchange(port,
             "POST /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
             "Content-Length: 0\r\n\r\n",
             &r);
    cr_expect_eq(r.status, 405);
    reply_free(&r);
    exchange(port, "GET /stats HTTP/1.1 extra\r\n\r\n", &r);
    cr_expect_geq(r.status, 400);
    cr_expect_lt(r.status, 500);
    reply_free(&r);

    stop_app(app);
}

Test(web, ready_is_503_without_an_assignment)
{
    char in[128], group[128], err[512];
    mph_test_unique("web-idle", in, sizeof in);
    mph_test_unique("web-idle-app", group, sizeof group);
    mph_test_create_topic(cluster, in, 2);
    /* A topic nobody subscribes to: the app never gets partitions. */
    mph_app_t *app = forward_app(group, in, NULL, forward_cb);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    int port = web_port(app);
    reply_t r;
    get(port, "/ready", &r);
    cr_expect_eq(r.status, 503);
    cr_expect_str_eq(r.body, "not ready\n");
    reply_free(&r);
    get(port, "/health", &r);
    cr_expect_eq(r.status, 200);
    reply_free(&r);
    get(port, "/stats", &r);
    cr_expect_eq(r.status, 200);
    parse(&r);
    cr_expect_not(jbool("ready"));
    cr_expect_eq(jint("totals.events_in"), 0);
    cr_expect_not(jbool("topics.0.source"));
    reply_free(&r);
    stop_app(app);
}

/* The body of GET path when its status is want (polled: a table may still
 * be recovering), else NULL. */
static char *get_body(int port, const char *path, int want, int timeout_s)
{
    for (int i = 0; i < timeout_s * 10; i++) {
        reply_t r;
        get(port, path, &r);
        if (r.status == want) {
            char *body = r.body;
            r.body = NULL;
            reply_free(&r);
            return body;
        }
        reply_free(&r);
        usleep(100000);
    }
    return NULL;
}

Test(web, table_values_by_url_encoded_key)
{
    char in[128], group[128], err[512];
    mph_test_unique("web-tab", in, sizeof in);
    mph_test_unique("web-tab-app", group, sizeof group);
    mph_test_create_topic(cluster, in, 4);
    /* key, times produced, the path that asks for it */
    static const struct {
        const char *key;
        int n;
        const char *path;
    } keys[] = {
        {"plain", 1, "/tables/counts/plain"},
        {"x/y", 2, "/tables/counts/x%2Fy"},
        {"a%20b", 3, "/tables/counts/a%2520b"},
        {"\xc3\xa9", 4, "/tables/counts/%C3%A9"},
        {"na\xc3\xafve", 5, "/tables/counts/na%C3%AFve"},
        {"sp ace", 6, "/tables/counts/sp%20ace"},
        {"q?x", 7, "/tables/counts/q%3Fx"},
    };
    int total = 0;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        produce_key(in, keys[i].key, keys[i].n);
        total += keys[i].n;
    }
    mph_app_t *app = count_app(group, in, NULL);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    int port = web_port(app);
    reply_t r;
    bool done = false;
    for (int i = 0; i < 600 && !done; i++) {
        get(port, "/stats", &r);
        parse(&r);
        done = jint("totals.events_in") == total;
        reply_free(&r);
        if (!done)
            usleep(100000);
    }
    cr_assert(done, "all %d events counted", total);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        get(port, keys[i].path, &r);
        cr_expect_eq(r.status, 200, "%s: %s", keys[i].path, r.body);
        cr_expect(header_has(&r, "Content-Type: application/json"));
        char want[16];
        snprintf(want, sizeof want, "%d", keys[i].n);
        cr_expect_str_eq(r.body, want, "%s", keys[i].path);
        reply_free(&r);
    }
    get(port, "/tables/counts/x/y", &r); /* an unescaped '/' in the key */
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(r.body, "2");
    reply_free(&r);
    get(port, "/tables/counts/absent", &r);
    cr_expect_eq(r.status, 404);
    parse(&r);
    cr_expect(jstr_eq("error", "no such key in table counts"));
    reply_free(&r);
    get(port, "/tables/nope/plain", &r);
    cr_expect_eq(r.status, 404);
    parse(&r);
    cr_expect(jstr_eq("error", "no such table: nope"));
    reply_free(&r);
    get(port, "/tables/counts", &r);
    cr_expect_eq(r.status, 404);
    reply_free(&r);
    stop_app(app);
}

/* A windowed table's value by key in the window of now, or in the window
 * starting at ?window=<ms>, with the window in two headers. */
static mph_err_t views_cb(mph_event_t *ev, void *opaque)
{
    size_t len;
    const void *key = mph_event_key(ev, &len);
    return mph_window_incr(ev, opaque, key, len, 1);
}

static void produce_at(const char *topic, const char *key, int64_t ts, int n)
{
    int32_t p = mph__kafka_partition_for(key, strlen(key), 4);
    for (int i = 0; i < n; i++)
        cr_assert_eq(rd_kafka_producev(cluster->producer, RD_KAFKA_V_TOPIC(topic),
                                       RD_KAFKA_V_PARTITION(p),
                                       RD_KAFKA_V_KEY(key, strlen(key)),
                                       RD_KAFKA_V_VALUE("1", 1), RD_KAFKA_V_TIMESTAMP(ts),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_END),
                     0);
    mph_test_flush(cluster);
}

Test(web, windowed_table_values_by_window)
{
    char in[128], group[128], err[512], changelog[300];
    mph_test_unique("web-win", in, sizeof in);
    mph_test_unique("web-win-app", group, sizeof group);
    mph_test_create_topic(cluster, in, 4);
    snprintf(changelog, sizeof changelog, "%s-views-changelog", group);
    mph_test_create_topic(cluster, changelog, 4);
    /* Minute windows an hour ago: 3 events in one, 2 in the next. */
    int64_t w1 = (mph_clock_wall_ms() / 60000 - 60) * 60000, w2 = w1 + 60000;
    produce_at(in, "u1", w1 + 5000, 3);
    produce_at(in, "u1", w2 + 1000, 2);
    produce_at(in, "u1", w1 - 3600000, 1); /* an hour late: dropped, counted */
    mph_app_t *app = forward_app(group, in, NULL, NULL);
    mph_table_opts_t *o = mph_table_opts_new();
    cr_assert_eq(mph_table_opts_set(o, "value_codec", "i64", err, sizeof err), MPH_OK);
    cr_assert_eq(mph_table_opts_set(o, "partitions", "4", err, sizeof err), MPH_OK);
    mph_table_t *t = mph_table_new(app, "views", o, err, sizeof err);
    mph_table_opts_destroy(o);
    cr_assert_not_null(t, "%s", err);
    mph_window_t *w = mph_table_tumbling(t, 60000, 3600000 * 4, err, sizeof err);
    cr_assert_not_null(w, "%s", err);
    cr_assert_not_null(mph_agent_new(app, "views", app->topics[0], views_cb, w, err, sizeof err),
                       "%s", err);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    int port = web_port(app);
    reply_t r;
    bool done = false;
    for (int i = 0; i < 600 && !done; i++) {
        get(port, "/stats", &r);
        parse(&r);
        done = jint("totals.events_in") == 6;
        reply_free(&r);
        if (!done)
            usleep(100000);
    }
    cr_assert(done, "all 6 events taken");
    /* The window counters, in /stats and /metrics. */
    get(port, "/stats", &r);
    parse(&r);
    cr_expect(jstr_eq("tables.0.name", "views"));
    cr_expect_eq(jint("tables.0.window.late_events"), 1);
    cr_expect_eq(jint("tables.0.window.closed"), 1, "w1 closed when w2's events came");
    cr_expect_eq(jint("tables.0.window.live_pairs"), 2);
    cr_expect_eq(jint("tables.0.window.invalid_time"), 0);
    reply_free(&r);
    get(port, "/metrics", &r);
    cr_expect(strstr(r.body, "# TYPE mephisto_window_late_events_total counter\n"
                             "mephisto_window_late_events_total{table=\"views\"} 1\n") != NULL,
              "%s", r.body);
    cr_expect(strstr(r.body, "mephisto_window_live_pairs{table=\"views\"} 2\n") != NULL);
    reply_free(&r);
    char path[200], hdr[80];
    snprintf(path, sizeof path, "/tables/views/u1?window=%lld", (long long)w1);
    get(port, path, &r);
    cr_expect_eq(r.status, 200, "%s: %s", path, r.body);
    cr_expect_str_eq(r.body, "3");
    snprintf(hdr, sizeof hdr, "X-Window-Start: %lld", (long long)w1);
    cr_expect(header_has(&r, hdr), "%s", hdr);
    snprintf(hdr, sizeof hdr, "X-Window-End: %lld", (long long)w2);
    cr_expect(header_has(&r, hdr), "%s", hdr);
    reply_free(&r);
    snprintf(path, sizeof path, "/tables/views/u1?window=%lld", (long long)w2);
    get(port, path, &r);
    cr_expect_eq(r.status, 200, "%s: %s", path, r.body);
    cr_expect_str_eq(r.body, "2");
    reply_free(&r);
    /* The window of now holds nothing, and the table has no default. */
    get(port, "/tables/views/u1", &r);
    cr_expect_eq(r.status, 404, "%s", r.body);
    cr_expect(header_has(&r, "Content-Type: application/json"));
    reply_free(&r);
    get(port, "/tables/views/u1?window=soon", &r);
    cr_expect_eq(r.status, 400, "%s", r.body);
    reply_free(&r);
    /* The same read through the API, from this (non-worker) thread. */
    void *v = NULL;
    size_t vl = 0;
    int64_t st = 0, en = 0;
    cr_assert_eq(mph_window_lookup(app, w, "u1", 2, MPH_WINDOW_AT, w2, &v, &vl, &st, &en, 5000),
                 MPH_OK);
    cr_expect_eq(vl, 8);
    cr_expect_eq(((unsigned char *)v)[7], 2);
    cr_expect_eq(st, w2);
    cr_expect_eq(en, w2 + 60000);
    free(v);
    stop_app(app);
}

/* ---- the index page in a browser ---- */

typedef struct feeder {
    const char *topic;
    int stop;
    int sent;
} feeder_t;

static void *feed(void *arg)
{
    feeder_t *f = arg;
    char v[32];
    while (!ck_pr_load_int(&f->stop)) {
        for (int i = 0; i < 50; i++) {
            int n = snprintf(v, sizeof v, "v%d", f->sent);
            mph_test_produce(cluster, f->topic, f->sent % 4, "k", 1, v,
                             (size_t)n);
            f->sent++;
        }
        mph_test_flush(cluster);
        usleep(20000);
    }
    return NULL;
}

/* Runs chromium on url; returns the dumped DOM (malloc'd) or NULL. */
static char *dump_dom(const char *url)
{
    char dir[256];
    if (!mph_test_tmpdir("web-chromium", dir, sizeof dir))
        return NULL;
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "timeout 60 chromium --headless --no-sandbox --disable-gpu "
             "--disable-background-networking --disable-component-update "
             "--disable-sync --no-first-run --user-data-dir='%s' "
             "--virtual-time-budget=3000 --dump-dom '%s' 2>/dev/null",
             dir, url);
    FILE *p = popen(cmd, "r");
    char *out = NULL;
    if (p) {
        size_t cap = 1 << 20;
        out = malloc(cap);
        size_t got = fread(out, 1, cap - 1, p);
        out[got] = '\0';
        if (pclose(p) != 0 || got == 0) {
            free(out);
            out = NULL;
        }
    }
    mph_test_rmrf(dir);
    return out;
}

/* The number in the element with that id, -1 if absent. */
static long long dom_number(const char *dom, const char *id)
{
    char pat[64];
    snprintf(pat, sizeof pat, "id=\"%s\">", id);
    const char *s = strstr(dom, pat);
    if (!s)
        return -1;
    char *end;
    long long v = strtoll(s + strlen(pat), &end, 10);
    return end == s + strlen(pat) ? -1 : v;
}

static long long dom_updates(const char *dom)
{
    const char *s = strstr(dom, "data-updates=\"");
    return s ? strtoll(s + 14, NULL, 10) : -1;
}

Test(web, index_page_shows_live_numbers_in_a_browser)
{
    if (access("/usr/bin/chromium", X_OK) != 0) {
        cr_skip_test("chromium not installed (Debian package chromium): the "
                     "browser test is skipped");
    }
    char in[128], out[128], group[128], err[512], url[128];
    mph_test_unique("web-live", in, sizeof in);
    mph_test_unique("web-live-out", out, sizeof out);
    mph_test_unique("web-live-app", group, sizeof group);
    mph_test_create_topic(cluster, in, 4);
    mph_test_create_topic(cluster, out, 4);
    mph_app_t *app = forward_app(group, in, out, forward_cb);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    int port = web_port(app);
    cr_assert(wait_status(port, "/ready", 200, 60));
    feeder_t f = {in, 0, 0};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, feed, &f), 0);
    usleep(500000);

    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    /* On a loaded machine (or the mock cluster's slow fetches) the first
     * records can take a while: look again until the page shows some. */
    char *first = dump_dom(url);
    for (int i = 0; i < 10 && first && dom_number(first, "events_in") <= 0; i++) {
        free(first);
        sleep(1);
        first = dump_dom(url);
    }
    char *second = dump_dom(url);
    ck_pr_store_int(&f.stop, 1);
    pthread_join(t, NULL);
    cr_assert_not_null(first, "chromium failed");
    cr_assert_not_null(second, "chromium failed");
    long long a = dom_number(first, "events_in");
    long long b = dom_number(second, "events_in");
    cr_log_info("browser: events_in %lld then %lld (updates %lld, %lld); "
                "%d records fed",
                a, b, dom_updates(first), dom_updates(second), f.sent);
    cr_expect_geq(dom_updates(first), 1, "the page fetched /stats");
    cr_expect_geq(dom_updates(second), 1);
    cr_expect_gt(a, 0, "numbers shown: %.300s", first);
    cr_expect_gt(b, a, "numbers move while data flows");
    cr_expect_not_null(strstr(second, ">ready<"), "state shown");
    cr_expect_not_null(strstr(second, in), "partition table shows the topic");
    free(first);
    free(second);
    stop_app(app);
}

/* ---- many connections ---- */

/* Processes the n records of topic with a fresh group and returns events/s
 * from the first processed event to the last (read from the monitors
 * directly, so measuring does not use the web view). With conns > 0,
 * opens that many connections to the web view first (half of them send an
 * incomplete request), checks that a request is still answered, and
 * closes them at the end. */
static double run_throughput(const char *topic, const char *out, int n,
                             int conns, double *stats_ms)
{
    char group[128], err[512];
    mph_test_unique("web-tp-app", group, sizeof group);
    /* Every connection comes from 127.0.0.1 and stays for the whole run. */
    const char *extra[] = {"web_max_per_address", "2048",
                           "web_header_timeout_ms", "3600000", NULL};
    mph_app_t *app = forward_app_with(group, topic, out, forward_cb, extra);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    int port = web_port(app);
    int *fds = conns ? malloc((size_t)conns * sizeof *fds) : NULL;
    for (int i = 0; i < conns; i++) {
        fds[i] = connect_port(port);
        if (i % 2)
            cr_assert_eq(
                send(fds[i], "GET /stats HTTP/1.1\r\n", 21, MSG_NOSIGNAL), 21);
    }
    if (conns) {
        for (int i = 0; i < 100 && web_connections(app) < (unsigned)conns; i++)
            usleep(20000);
        cr_expect_geq(web_connections(app), (unsigned)conns,
                      "the server holds every connection");
    }
    int64_t t0 = 0, t1 = 0;
    int64_t deadline = mph_clock_mono_ns() + 120 * (int64_t)1000000000;
    for (;;) {
        uint64_t done = 0;
        for (int i = 0; i < app->nworkers; i++)
            done += ck_pr_load_64(&app->workers[i]->mon->events_in);
        int64_t now = mph_clock_mono_ns();
        if (!t0 && done > 0)
            t0 = now;
        if (done >= (uint64_t)n) {
            t1 = now;
            break;
        }
        cr_assert_lt(now, deadline, "only %llu of %d processed",
                     (unsigned long long)done, n);
        usleep(500);
    }
    /* A request is still served while the connections are open. */
    int64_t q0 = mph_clock_mono_ns();
    reply_t r;
    get(port, "/stats", &r);
    *stats_ms = (double)(mph_clock_mono_ns() - q0) / 1e6;
    cr_expect_eq(r.status, 200);
    parse(&r);
    cr_expect_eq(jint("totals.events_in"), n);
    reply_free(&r);
    for (int i = 0; i < conns; i++)
        close(fds[i]);
    free(fds);
    stop_app(app);
    return (double)n / ((double)(t1 - t0) / 1e9);
}

Test(web, thousand_open_connections_do_not_stall_workers)
{
    char in[128], out[128];
    const int N = 300000;
    mph_test_unique("web-tp", in, sizeof in);
    mph_test_unique("web-tp-out", out, sizeof out);
    mph_test_create_topic(cluster, in, 4);
    mph_test_create_topic(cluster, out, 4);
    cr_assert_eq(mph_test_produce_seq(cluster, in, N, 1000, 0), N);
    /* Alternating runs (plain, with, with, plain) so that a drift in the
     * machine's load hits both alike; the numbers are reported, not
     * asserted: this machine is shared and the mock cluster sets the
     * pace. */
    double rate[4], q[4];
    const int conns[4] = {0, 1000, 1000, 0};
    for (int i = 0; i < 4; i++)
        rate[i] = run_throughput(in, out, N, conns[i], &q[i]);
    double without = (rate[0] + rate[3]) / 2, with = (rate[1] + rate[2]) / 2;
    cr_log_info("forwarding %d records, 2 workers: %.0f and %.0f events/s "
                "without extra connections, %.0f and %.0f with 1000 open "
                "ones; /stats answered in %.1f/%.1f ms and %.1f/%.1f ms",
                N, rate[0], rate[3], rate[1], rate[2], q[0], q[3], q[1], q[2]);
    printf("web: throughput %.0f events/s plain, %.0f events/s with 1000 "
           "connections (means of 2 runs each); /stats %.1f ms with them\n",
           without, with, (q[1] + q[2]) / 2);
    cr_expect_gt(with, 0);
    cr_expect_gt(without, 0);
}

/* ---- two members of one group ---- */

/* A TCP port that was free a moment ago. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* In a's /router: how many partitions of topic are a's own, and how many
 * are named as b's (by b_addr and b's client.id). */
static void count_routes(int port, const char *topic, const char *b_addr,
                         const char *b_client, int *local, int *remote)
{
    reply_t r;
    get(port, "/router", &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    parse(&r);
    cr_expect(jnull("members_error"), "%s", r.body);
    *local = *remote = 0;
    mph_json_val_t t, e;
    cr_assert_eq(mph_json_get_object(parser, MPH_JSON_ROOT, "topics", &t),
                 MPH_OK);
    cr_assert_eq(mph_json_field(parser, t, topic, strlen(topic), &t), MPH_OK);
    const char *k, *s;
    size_t kl, sl;
    while (mph_json_object_next(parser, t, &k, &kl, &e) == MPH_OK) {
        bool is_local = false;
        cr_assert_eq(mph_json_get_bool(parser, e, "local", &is_local), MPH_OK);
        if (is_local) {
            (*local)++;
            continue;
        }
        if (mph_json_get_str(parser, e, "host", &s, &sl) != MPH_OK ||
            sl != strlen(b_addr) || memcmp(s, b_addr, sl) != 0)
            continue;
        if (mph_json_get_str(parser, e, "member", &s, &sl) == MPH_OK &&
            sl == strlen(b_client) && memcmp(s, b_client, sl) == 0)
            (*remote)++;
    }
    reply_free(&r);
}

Test(web, router_names_the_other_members)
{
    if (!mph_test_real_broker()) {
        cr_skip_test("the mock cluster cannot list group members: the router "
                     "test needs MEPHISTO_TEST_BROKERS");
    }
    char in[128], group[128], err[512], key[16], path[64];
    mph_test_unique("web-rt", in, sizeof in);
    mph_test_unique("web-rt-app", group, sizeof group);
    mph_test_create_topic(cluster, in, 4);
    for (int k = 0; k < 20; k++) {
        snprintf(key, sizeof key, "key%d", k);
        produce_key(in, key, 1);
    }

    /* b publishes its web address in its client.id, as the engine does. */
    char b_port[16], b_client[200], b_addr[64];
    int bp = free_port();
    snprintf(b_port, sizeof b_port, "%d", bp);
    snprintf(b_addr, sizeof b_addr, "127.0.0.1:%d", bp);
    snprintf(b_client, sizeof b_client, "%s@%s", group, b_addr);
    const char *b_extra[] = {"web_port", b_port, "kafka.client.id", b_client,
                             NULL};
    mph_app_t *a = count_app(group, in, NULL);
    mph_app_t *b = count_app(group, in, b_extra);
    cr_assert_eq(mph_app_start(a, err, sizeof err), MPH_OK, "%s", err);
    cr_assert_eq(mph_app_start(b, err, sizeof err), MPH_OK, "%s", err);
    int ap = web_port(a);
    cr_assert_eq(web_port(b), bp);

    int local = 0, remote = 0;
    for (int i = 0; i < 300 && !(local == 2 && remote == 2); i++) {
        usleep(200000);
        count_routes(ap, in, b_addr, b_client, &local, &remote);
    }
    cr_expect_eq(local, 2, "a owns two partitions");
    cr_expect_eq(remote, 2, "a names b as the owner of the other two");

    /* A key of a's partitions is answered by a; one of b's is redirected
     * there, and b answers it (after recovering the shard if needed). */
    int redirected = 0, answered = 0;
    for (int k = 0; k < 20; k++) {
        snprintf(key, sizeof key, "key%d", k);
        snprintf(path, sizeof path, "/tables/counts/%s", key);
        reply_t r;
        get(ap, path, &r);
        if (r.status == 200) {
            cr_expect_str_eq(r.body, "1", "%s", key);
            answered++;
        } else {
            cr_expect_eq(r.status, 307, "%s: %s", key, r.body);
            char loc[192];
            snprintf(loc, sizeof loc, "Location: http://%s%s", b_addr, path);
            cr_expect(header_has(&r, loc), "%s", r.head);
            char *body = get_body(bp, path, 200, 30);
            cr_expect_not_null(body, "b answers %s", key);
            if (body)
                cr_expect_str_eq(body, "1", "%s", key);
            free(body);
            redirected++;
        }
        reply_free(&r);
    }
    cr_expect_gt(answered, 0);
    cr_expect_gt(redirected, 0);
    stop_app(b);
    stop_app(a);
}

/* ---- hardening: slow clients, framing, odd targets ---- */

/* GET path on a fresh connection; the status, or 0 when no complete
 * status line came within timeout_s (or the connection was refused). */
static int probe(int port, const char *path, double timeout_s)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
    struct timeval tv = {
        (time_t)timeout_s,
        (suseconds_t)((timeout_s - (double)(time_t)timeout_s) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int status = 0;
    char req[256], buf[512];
    snprintf(req, sizeof req,
             "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
             path);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        send(fd, req, strlen(req), MSG_NOSIGNAL) == (ssize_t)strlen(req)) {
        size_t got = 0;
        ssize_t n;
        while (got < sizeof buf - 1 &&
               (n = recv(fd, buf + got, sizeof buf - 1 - got, 0)) > 0) {
            got += (size_t)n;
            buf[got] = '\0';
            if (strstr(buf, "\r\n"))
                break;
        }
        buf[got] = '\0';
        if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
            status = 0;
    }
    close(fd);
    return status;
}

/* A client on one address trying to hold n connections that each send a
 * request's first line and then one header byte every 2 s; whatever the
 * server closes is opened again at once. */
struct attacker {
    int port;
    int n;
    int stop;         /* ck_pr */
    uint64_t opened;  /* ck_pr */
    uint64_t dropped; /* ck_pr: closed by the server */
};

static void *attack(void *arg)
{
    struct attacker *at = arg;
    struct pollfd *pfd = calloc((size_t)at->n, sizeof *pfd);
    bool *sent = calloc((size_t)at->n, sizeof *sent);
    if (!pfd || !sent) { /* the main thread sees nothing opened */
        free(pfd);
        free(sent);
        return NULL;
    }
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)at->port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < at->n; i++)
        pfd[i].fd = -1;
    int64_t next_byte = mph_clock_mono_ns();
    static const char first[] = "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    while (!ck_pr_load_int(&at->stop)) {
        for (int i = 0; i < at->n; i++) {
            if (pfd[i].fd >= 0)
                continue;
            int fd =
                socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0)
                break; /* out of descriptors: try again next round */
            if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 &&
                errno != EINPROGRESS) {
                close(fd);
                continue;
            }
            pfd[i].fd = fd;
            pfd[i].events = POLLOUT | POLLIN;
            sent[i] = false;
            ck_pr_inc_64(&at->opened);
        }
        bool tick = mph_clock_mono_ns() >= next_byte;
        if (tick)
            next_byte = mph_clock_mono_ns() + 2 * (int64_t)1000000000;
        if (poll(pfd, (nfds_t)at->n, 50) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < at->n; i++) {
            if (pfd[i].fd < 0)
                continue;
            bool gone = (pfd[i].revents & (POLLERR | POLLHUP)) != 0;
            if (!gone && (pfd[i].revents & POLLIN)) {
                char buf[256];
                gone = recv(pfd[i].fd, buf, sizeof buf, MSG_DONTWAIT) <= 0;
            }
            if (!gone && !sent[i] && (pfd[i].revents & POLLOUT)) {
                gone =
                    send(pfd[i].fd, first, sizeof first - 1, MSG_NOSIGNAL) <= 0;
                sent[i] = true;
                pfd[i].events = POLLIN;
            } else if (!gone && sent[i] && tick) {
                gone = send(pfd[i].fd, "a", 1, MSG_NOSIGNAL) <= 0;
            }
            if (gone) {
                close(pfd[i].fd);
                pfd[i].fd = -1;
                ck_pr_inc_64(&at->dropped);
            }
        }
    }
    for (int i = 0; i < at->n; i++)
        if (pfd[i].fd >= 0)
            close(pfd[i].fd);
    free(pfd);
    free(sent);
    return NULL;
}

#define ATTACK_CONNS 2048

/* One client holding 2,048 connections that each send a header byte every
 * 2 s used to keep /health unanswered for ever: the idle timeout restarts
 * on every byte and every slot was taken. Now a connection has
 * web_header_timeout_ms to send its request, one address holds at most
 * web_max_per_address connections, and a new connection beyond that closes
 * the address's oldest one still waiting: /health and /ready are answered
 * from the same address throughout. */
Test(web, health_and_ready_answer_while_one_address_floods)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rlim_t need = 2 * ATTACK_CONNS + 512;
    if (rl.rlim_cur < need) {
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
            cr_skip_test("RLIMIT_NOFILE hard limit %llu < %llu",
                         (unsigned long long)rl.rlim_max,
                         (unsigned long long)need);
        rl.rlim_cur = need;
        cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0, "%s", strerror(errno));
    }
    char in[128], group[128], err[512];
    mph_test_unique("web-flood", in, sizeof in);
    mph_test_unique("web-flood-app", group, sizeof group);
    mph_test_create_topic(cluster, in, 2);
    const char *extra[] = {"web_header_timeout_ms", "1000", NULL};
    mph_app_t *app = count_app(group, in, extra);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    int port = web_port(app);
    cr_assert(wait_status(port, "/ready", 200, 60), "the app became ready");

    /* The deadline alone: a connection trickling its headers is closed
     * after about 1 s although the idle timeout (10 s) never expires. */
    int slow = connect_port(port);
    const char *half = "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    cr_assert_eq(send(slow, half, strlen(half), MSG_NOSIGNAL),
                 (ssize_t)strlen(half));
    int64_t t0 = mph_clock_mono_ns();
    bool closed = false;
    while (!closed && mph_clock_mono_ns() - t0 < 6 * (int64_t)1000000000) {
        send(slow, "a", 1, MSG_NOSIGNAL);
        struct pollfd p = {slow, POLLIN, 0};
        char c;
        closed = poll(&p, 1, 200) == 1 && recv(slow, &c, 1, MSG_DONTWAIT) <= 0;
    }
    double took = (double)(mph_clock_mono_ns() - t0) / 1e9;
    close(slow);
    cr_expect(closed, "a trickling connection still open after %.1f s", took);
    cr_expect_geq(took, 0.9, "closed after %.3f s", took);
    cr_expect_lt(took, 4.0, "closed after %.3f s", took);

    /* The flood. */
    struct attacker at = {.port = port, .n = ATTACK_CONNS};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, attack, &at), 0);
    for (int i = 0; i < 100 && ck_pr_load_64(&at.opened) < 1000; i++)
        usleep(20000);
    cr_expect_geq(ck_pr_load_64(&at.opened), 1000, "the attacker runs");
    usleep(1500000); /* past the 1 s deadline: some rounds of it */

    const char *paths[] = {"/health", "/ready"};
    const int want[] = {200, 200};
    double worst = 0;
    unsigned most = 0;
    int answered = 0, probes = 0;
    int64_t end = mph_clock_mono_ns() + 6 * (int64_t)1000000000;
    while (mph_clock_mono_ns() < end) {
        for (int i = 0; i < 2; i++) {
            int64_t q0 = mph_clock_mono_ns();
            int st = probe(port, paths[i], 5.0);
            double q = (double)(mph_clock_mono_ns() - q0) / 1e9;
            probes++;
            cr_expect_eq(st, want[i],
                         "%s answered %d after %.3f s beside "
                         "the flood",
                         paths[i], st, q);
            if (st == want[i])
                answered++;
            worst = q > worst ? q : worst;
        }
        unsigned c = web_connections(app);
        most = c > most ? c : most;
        usleep(200000);
    }
    ck_pr_store_int(&at.stop, 1);
    pthread_join(th, NULL);
    cr_log_info("flood of %d connections from one address: %llu opened, "
                "%llu closed by the server; %d/%d probes answered, the "
                "slowest in %.3f s; at most %u connections open",
                ATTACK_CONNS, (unsigned long long)at.opened,
                (unsigned long long)at.dropped, answered, probes, worst, most);
    cr_expect_eq(answered, probes);
    cr_expect_gt(ck_pr_load_64(&at.dropped), 0);
    /* One address never holds more than the cap (256) plus the connections
     * already closed that the server has not cleaned up (at most 64). */
    cr_expect_leq(most, 256 + 64);
    /* After the flood everything it held is closed within the deadline. */
    bool drained = false;
    for (int i = 0; i < 100 && !drained; i++) {
        drained = web_connections(app) == 0;
        usleep(50000);
    }
    cr_expect(drained, "%u connections left", web_connections(app));
    stop_app(app);
}

/* Content-Length headers that disagree are refused (RFC 9112 6.3) rather
 * than the body parsed as a second request; an absolute-form target is
 * routed by its path (RFC 9112 3.2.2); a control character in a table
 * name is refused, never looked up cut short; a raw key keeps every byte,
 * %00 included; "/stats%00x" is no route. */
Test(web, framing_targets_and_control_characters)
{
    char in[128], group[128], err[512];
    mph_test_unique("web-odd", in, sizeof in);
    mph_test_unique("web-odd-app", group, sizeof group);
    mph_test_create_topic(cluster, in, 4);
    static const char nul_key[] = {'a', '\0', 'b'};
    int32_t p = mph__kafka_partition_for(nul_key, 3, 4);
    for (int i = 0; i < 3; i++)
        mph_test_produce(cluster, in, p, nul_key, 3, "1", 1);
    mph_test_flush(cluster);
    produce_key(in, "a", 1);
    mph_app_t *app = count_app(group, in, NULL);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    int port = web_port(app);
    char *body = get_body(port, "/tables/counts/a", 200, 60);
    cr_assert_not_null(body, "the table has key a");
    free(body);
    body = get_body(port, "/tables/counts/a%00b", 200, 30);
    cr_expect_not_null(body, "the key a\\0b is found whole");
    cr_expect_str_eq(body ? body : "", "3");
    free(body);

    reply_t r;
    get(port, "/tables/counts%00junk/a", &r);
    cr_expect_eq(r.status, 400, "%s", r.body);
    parse(&r);
    cr_expect(jstr_eq("error", "the table name contains a control character "
                               "(%00-%1F or %7F)"),
              "%s", r.body);
    reply_free(&r);
    get(port, "/tables/co%0Aunts/a", &r);
    cr_expect_eq(r.status, 400, "%s", r.body);
    reply_free(&r);
    get(port, "/stats%00x", &r);
    cr_expect_eq(r.status, 404, "%s", r.body);
    parse(&r);
    cr_expect(jstr_eq("error", "no such path: /stats%00x"), "%s", r.body);
    reply_free(&r);

    get(port, "http://127.0.0.1:1/stats", &r);
    cr_expect_eq(r.status, 200, "%s", r.body);
    parse(&r);
    cr_expect(jstr_eq("app_id", group), "%s", r.body);
    reply_free(&r);
    get(port, "http://somewhere.example/tables/counts/a%00b", &r);
    cr_expect_eq(r.status, 200, "%s", r.body);
    cr_expect_str_eq(r.body, "3");
    reply_free(&r);

    exchange(port,
             "GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
             "Content-Length: 42\r\n\r\n"
             "GET /stats HTTP/1.1\r\nConnection: close\r\n\r\n",
             &r);
    cr_expect_eq(r.status, 400, "%s", r.head);
    cr_expect(strstr(r.body, "HTTP/1.1") == NULL, "one answer only: %s",
              r.body);
    reply_free(&r);
    stop_app(app);
}

/* ---- the app's own routes (mph_web_route) ---- */

static mph_app_t *route_app; /* the app of the routes below */

/* GET /hello[/...]?name=x: "hello x at <subpath>" (method in a header). */
static mph_err_t hello_route(const mph_web_request_t *req, mph_web_response_t *resp,
                             void *opaque)
{
    (void)opaque;
    const char *name = mph_web_request_query(req, "name", NULL);
    mph_web_response_set_status(resp, 200);
    mph_web_response_add_header(resp, "X-Method", mph_web_request_method(req));
    return mph_web_response_appendf(resp, "hello %s at '%s'", name ? name : "nobody",
                                    mph_web_request_subpath(req, NULL));
}

/* GET /count/<key>: the key's count in table opaque, read with
 * mph_table_lookup from the web thread; 404 when absent. */
static mph_err_t count_route(const mph_web_request_t *req, mph_web_response_t *resp,
                             void *opaque)
{
    mph_app_t *app = ck_pr_load_ptr(&route_app);
    size_t len;
    const char *sub = mph_web_request_subpath(req, &len);
    if (len < 2 || sub[0] != '/')
        return MPH_ERR_INVALID;
    void *v = NULL;
    size_t vlen = 0;
    mph_err_t err = mph_table_lookup(app, opaque, sub + 1, len - 1, &v, &vlen, 1000);
    if (err == MPH_ERR_NOENT) {
        mph_web_response_set_status(resp, 404);
        mph_web_response_set_content_type(resp, "application/json");
        return mph_web_response_appendf(resp, "{\"absent\": \"%.*s\"}", (int)len - 1, sub + 1);
    }
    if (err)
        return err;
    uint64_t n = 0; /* i64 values are 8 big-endian bytes */
    for (size_t i = 0; vlen == 8 && i < 8; i++)
        n = (n << 8) | ((const unsigned char *)v)[i];
    free(v);
    mph_web_response_set_status(resp, 200);
    return mph_web_response_appendf(resp, "%lld", (long long)n);
}

/* GET /fail: the handler reports an error after writing a little. */
static mph_err_t fail_route(const mph_web_request_t *req, mph_web_response_t *resp,
                            void *opaque)
{
    (void)req;
    (void)opaque;
    mph_web_response_set_status(resp, 200);
    mph_web_response_appendf(resp, "half an answer");
    return MPH_ERR_IO;
}

/* GET /nostatus: returns MPH_OK without a status. */
static mph_err_t nostatus_route(const mph_web_request_t *req, mph_web_response_t *resp,
                                void *opaque)
{
    (void)req;
    (void)opaque;
    return mph_web_response_appendf(resp, "no status");
}

/* GET /big: writes one byte more than MPH_WEB_MAX_BODY, ignoring the
 * error, and returns MPH_OK. */
static mph_err_t big_route(const mph_web_request_t *req, mph_web_response_t *resp,
                           void *opaque)
{
    (void)req;
    (void)opaque;
    static char chunk[1 << 20];
    memset(chunk, 'x', sizeof chunk);
    mph_web_response_set_status(resp, 200);
    for (unsigned i = 0; i < MPH_WEB_MAX_BODY / sizeof chunk; i++)
        mph_web_response_append(resp, chunk, sizeof chunk);
    cr_expect_eq(mph_web_response_append(resp, "y", 1), MPH_ERR_RANGE);
    return MPH_OK;
}

typedef struct {
    int port;
    int ok;
    char why[256];
} route_client_t;

static void *route_client(void *arg)
{
    route_client_t *c = arg;
    for (int i = 0; i < 25; i++) {
        reply_t r;
        const char *path = i % 2 ? "/count/apple" : "/hello/x?name=c";
        const char *want = i % 2 ? "3" : "hello c at '/x'";
        get(c->port, path, &r);
        if (r.status == 200 && r.body && strcmp(r.body, want) == 0)
            c->ok++;
        else if (!c->why[0])
            snprintf(c->why, sizeof c->why, "%s: %d %.100s", path, r.status,
                     r.body ? r.body : "");
        reply_free(&r);
    }
    return NULL;
}

Test(web, declared_routes_answer_fail_and_serve_concurrently)
{
    char in[128], group[128], err[512];
    mph_test_unique("web-route", in, sizeof in);
    mph_test_unique("web-route-app", group, sizeof group);
    mph_test_create_topic(cluster, in, 4);
    produce_key(in, "apple", 3);
    produce_key(in, "pear", 2);
    mph_app_t *app = count_app(group, in, NULL);
    mph_table_t *counts = app->tables[0];
    ck_pr_store_ptr(&route_app, app);

    /* declarations: what is refused, and why */
    cr_expect_eq(mph_web_route(app, "POST", "/p", hello_route, NULL), MPH_ERR_INVALID);
    cr_expect_eq(mph_web_route(app, "GET", "p", hello_route, NULL), MPH_ERR_INVALID);
    cr_expect_eq(mph_web_route(app, "GET", "/", hello_route, NULL), MPH_ERR_INVALID);
    cr_expect_eq(mph_web_route(app, "GET", "/p/", hello_route, NULL), MPH_ERR_INVALID);
    cr_expect_eq(mph_web_route(app, "GET", "/p?x", hello_route, NULL), MPH_ERR_INVALID);
    cr_expect_eq(mph_web_route(app, "GET", "/a//b", hello_route, NULL), MPH_ERR_INVALID);
    cr_expect_eq(mph_web_route(app, "GET", "/p", NULL, NULL), MPH_ERR_INVALID);
    cr_expect_eq(mph_web_route(app, "GET", "/stats", hello_route, NULL), MPH_ERR_EXISTS);
    cr_expect_eq(mph_web_route(app, "GET", "/tables/x", hello_route, NULL), MPH_ERR_EXISTS);
    cr_expect_eq(mph_web_route(app, "GET", "/metrics", hello_route, NULL), MPH_ERR_EXISTS);
    cr_assert_eq(mph_web_route(app, "GET", "/hello", hello_route, NULL), MPH_OK);
    cr_expect_eq(mph_web_route(app, "GET", "/hello", hello_route, NULL), MPH_ERR_EXISTS);
    cr_assert_eq(mph_web_route(app, "GET", "/count", count_route, counts), MPH_OK);
    cr_assert_eq(mph_web_route(app, "GET", "/fail", fail_route, NULL), MPH_OK);
    cr_assert_eq(mph_web_route(app, "GET", "/nostatus", nostatus_route, NULL), MPH_OK);
    cr_assert_eq(mph_web_route(app, "GET", "/big", big_route, NULL), MPH_OK);
    /* a longer prefix under a declared one wins over it */
    cr_assert_eq(mph_web_route(app, "GET", "/hello/deep", fail_route, NULL), MPH_OK);
    cr_assert_eq(mph_web_route(app, "GET", "/statsx", hello_route, NULL), MPH_OK);

    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    cr_expect_eq(mph_web_route(app, "GET", "/late", hello_route, NULL), MPH_ERR_STATE);
    int port = web_port(app);
    reply_t r;
    bool done = false;
    for (int i = 0; i < 600 && !done; i++) {
        get(port, "/stats", &r);
        parse(&r);
        done = r.status == 200 && jint("totals.events_in") == 5;
        reply_free(&r);
        if (!done)
            usleep(100000);
    }
    cr_assert(done, "all 5 events counted");

    /* a handler: path, subpath, query, headers, HEAD */
    get(port, "/hello?name=a+b", &r);
    cr_expect_eq(r.status, 200, "%s", r.body);
    cr_expect_str_eq(r.body, "hello a b at ''");
    cr_expect(header_has(&r, "X-Method: GET"), "%s", r.head);
    cr_expect(header_has(&r, "Content-Type: text/plain"), "%s", r.head);
    reply_free(&r);
    get(port, "/hello/w%C3%B6rld", &r);
    cr_expect_str_eq(r.body, "hello nobody at '/w\xc3\xb6rld'");
    reply_free(&r);
    exchange(port, "HEAD /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &r);
    cr_expect_eq(r.status, 200);
    cr_expect(header_has(&r, "X-Method: HEAD"), "%s", r.head);
    cr_expect_eq(r.body_len, 0);
    reply_free(&r);
    get(port, "/statsx", &r);
    cr_expect_str_eq(r.body, "hello nobody at ''");
    reply_free(&r);
    get(port, "/stats", &r); /* built-in routes stay theirs */
    cr_expect(header_has(&r, "Content-Type: application/json"));
    reply_free(&r);

    /* table lookups from the web thread */
    get(port, "/count/apple", &r);
    cr_expect_eq(r.status, 200, "%s", r.body);
    cr_expect_str_eq(r.body, "3");
    reply_free(&r);
    get(port, "/count/pear", &r);
    cr_expect_str_eq(r.body, "2");
    reply_free(&r);
    get(port, "/count/plum", &r);
    cr_expect_eq(r.status, 404);
    cr_expect_str_eq(r.body, "{\"absent\": \"plum\"}");
    reply_free(&r);

    /* 404: no route; a prefix matches whole segments only */
    static const char *const missing[] = {"/nothere", "/hellox", "/counts/apple", "/Hello"};
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
        get(port, missing[i], &r);
        cr_expect_eq(r.status, 404, "%s: %d %s", missing[i], r.status, r.body);
        cr_expect_not_null(strstr(r.body, "no such path"), "%s", r.body);
        reply_free(&r);
    }

    /* handler errors: an error code, no status, a body over the limit */
    static const struct {
        const char *path, *error;
    } failing[] = {
        {"/fail", "/fail: I/O error"},
        {"/hello/deep/x", "/hello/deep: I/O error"},
        {"/count", "/count: invalid argument"},
        {"/nostatus", "/nostatus: the handler set no status"},
        {"/big", "/big: response body over 16777216 bytes"},
    };
    for (size_t i = 0; i < sizeof failing / sizeof failing[0]; i++) {
        get(port, failing[i].path, &r);
        cr_expect_eq(r.status, 500, "%s: %d", failing[i].path, r.status);
        cr_expect(header_has(&r, "Content-Type: application/json"), "%s", r.head);
        parse(&r);
        cr_expect(jstr_eq("error", failing[i].error), "%s: %s", failing[i].path, r.body);
        reply_free(&r);
    }
    get(port, "/health", &r); /* the web view is still fine */
    cr_expect_eq(r.status, 200);
    reply_free(&r);

    /* concurrent requests: 8 clients, 25 requests each, half of them
     * table lookups */
    route_client_t c[8];
    pthread_t t[8];
    for (int i = 0; i < 8; i++) {
        c[i] = (route_client_t){.port = port};
        cr_assert_eq(pthread_create(&t[i], NULL, route_client, &c[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        cr_expect_eq(c[i].ok, 25, "client %d: %d of 25 right; first wrong: %s", i, c[i].ok,
                     c[i].why);
    }
    stop_app(app);
}

/* ---- the page's charts, in a browser and without one ---- */

/* The value of attribute attr in the tag starting at tag (up to its '>'),
 * copied to out; false when absent. */
static bool tag_attr(const char *tag, const char *attr, char *out, size_t size)
{
    const char *end = strchr(tag, '>');
    char pat[64];
    snprintf(pat, sizeof pat, " %s=\"", attr);
    const char *a = strstr(tag, pat);
    if (!end || !a || a > end)
        return false;
    a += strlen(pat);
    const char *q = strchr(a, '"');
    if (!q || (size_t)(q - a) >= size)
        return false;
    memcpy(out, a, (size_t)(q - a));
    out[q - a] = '\0';
    return true;
}

typedef struct {
    int paths;        /* <path class="series"> in the chart */
    double max;       /* the svg's data-max */
    double best_last; /* the largest data-last */
    int best_points;  /* data-points of that path */
    double best_y;    /* the y of that path's last point */
    char series[16][128];
} chart_t;

/* Reads the chart <svg id=id> of a dumped DOM; false when absent. */
static bool read_chart(const char *dom, const char *id, chart_t *c)
{
    memset(c, 0, sizeof *c);
    c->best_last = -1;
    char pat[96], v[8192];
    snprintf(pat, sizeof pat, "id=\"%s\"", id);
    const char *svg = strstr(dom, pat);
    if (!svg)
        return false;
    while (svg > dom && *svg != '<')
        svg--;
    const char *end = strstr(svg, "</svg>");
    if (!end || !tag_attr(svg, "data-max", v, sizeof v))
        return false;
    c->max = strtod(v, NULL);
    for (const char *p = strstr(svg, "<path"); p && p < end; p = strstr(p + 5, "<path")) {
        if (!tag_attr(p, "class", v, sizeof v) || strcmp(v, "series") != 0)
            continue;
        char last[64], points[32], d[8192];
        if (!tag_attr(p, "data-last", last, sizeof last) ||
            !tag_attr(p, "data-points", points, sizeof points) || !tag_attr(p, "d", d, sizeof d))
            continue;
        if (c->paths < 16)
            tag_attr(p, "data-series", c->series[c->paths], sizeof c->series[0]);
        c->paths++;
        double l = strtod(last, NULL);
        if (l > c->best_last) {
            c->best_last = l;
            c->best_points = atoi(points);
            const char *lp = strrchr(d, 'L');
            lp = lp ? lp + 1 : d + 1;
            char *sp;
            strtod(lp, &sp);
            c->best_y = strtod(sp, NULL);
        }
    }
    return true;
}

/* Screenshots url into png (a 1300x1500 window); the PNG's size, or -1. */
static long screenshot(const char *url, const char *png)
{
    char dir[256];
    if (!mph_test_tmpdir("web-shot", dir, sizeof dir))
        return -1;
    char cmd[1400];
    snprintf(cmd, sizeof cmd,
             "timeout 60 chromium --headless --no-sandbox --disable-gpu "
             "--disable-background-networking --disable-component-update "
             "--disable-sync --no-first-run --hide-scrollbars --user-data-dir='%s' "
             "--window-size=1300,1500 --virtual-time-budget=5000 "
             "--screenshot='%s' '%s' >/dev/null 2>&1",
             dir, png, url);
    int rc = system(cmd);
    mph_test_rmrf(dir);
    struct stat sb;
    if (rc != 0 || stat(png, &sb) != 0)
        return -1;
    FILE *f = fopen(png, "rb");
    unsigned char sig[8] = {0};
    bool ok = f && fread(sig, 1, 8, f) == 8 && memcmp(sig, "\x89PNG\r\n\x1a\n", 8) == 0;
    if (f)
        fclose(f);
    return ok ? (long)sb.st_size : -1;
}

Test(web, page_charts_draw_stats_numbers)
{
    char in[128], out[128], group[128], err[512], url[128];
    mph_test_unique("web-chart", in, sizeof in);
    mph_test_unique("web-chart-out", out, sizeof out);
    mph_test_unique("web-chart-app", group, sizeof group);
    mph_test_create_topic(cluster, in, 4);
    mph_test_create_topic(cluster, out, 4);
    mph_app_t *app = forward_app(group, in, out, forward_cb);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    int port = web_port(app);
    cr_assert(wait_status(port, "/ready", 200, 60));
    feeder_t f = {in, 0, 0};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, feed, &f), 0);
    reply_t r;
    bool moving = false;
    for (int i = 0; i < 300 && !moving; i++) {
        usleep(100000);
        get(port, "/stats", &r);
        parse(&r);
        moving = r.status == 200 && jint("totals.events_in") > 0;
        reply_free(&r);
    }
    cr_assert(moving, "events flow");

    /* Without JavaScript: the numbers are in the HTML itself. */
    get(port, "/", &r);
    cr_expect_eq(r.status, 200);
    cr_expect(header_has(&r, "Content-Type: text/html"), "%s", r.head);
    long long served = dom_number(r.body, "events_in");
    cr_expect_gt(served, 0, "events_in rendered by the server: %.400s",
                 strstr(r.body, "events_in") ? strstr(r.body, "events_in") : r.body);
    cr_expect_not_null(strstr(r.body, in), "the partitions rendered by the server");
    cr_expect_not_null(strstr(r.body, "<tbody id=\"workers\"><tr><td>0</td>"),
                       "the workers rendered by the server");
    cr_expect_not_null(strstr(r.body, "id=\"chart_worker_eps\""));
    cr_expect_null(strstr(r.body, "src=\"http"), "no external resource");
    cr_expect_null(strstr(r.body, "href=\"http"), "no external resource");
    reply_free(&r);

    if (access("/usr/bin/chromium", X_OK) != 0) {
        ck_pr_store_int(&f.stop, 1);
        pthread_join(t, NULL);
        stop_app(app);
        cr_skip_test("chromium not installed (Debian package chromium): the browser "
                     "part is skipped");
    }
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    /* The browser samples /stats every second: look again until the
     * events/s chart has a line of at least two samples above 0. */
    char *dom = NULL;
    chart_t eps;
    for (int i = 0; i < 8; i++) {
        free(dom);
        dom = dump_dom(url);
        if (dom && read_chart(dom, "chart_worker_eps", &eps) && eps.best_last > 0 &&
            eps.best_points >= 2)
            break;
    }
    char shot[300], blank[300], dir[256];
    cr_assert(mph_test_tmpdir("web-png", dir, sizeof dir));
    snprintf(shot, sizeof shot, "%s/page.png", dir);
    snprintf(blank, sizeof blank, "%s/blank.png", dir);
    long page_png = screenshot(url, shot);
    long blank_png = screenshot("data:text/html,<html><body></body></html>", blank);
    ck_pr_store_int(&f.stop, 1);
    pthread_join(t, NULL);
    get(port, "/stats", &r);
    parse(&r);
    int64_t workers = 0;
    while (workers < 16) {
        char path[64];
        snprintf(path, sizeof path, "workers.%lld.worker", (long long)workers);
        int64_t w;
        if (mph_json_get_i64(parser, MPH_JSON_ROOT, path, &w) != MPH_OK)
            break;
        workers++;
    }
    reply_free(&r);
    cr_assert_not_null(dom, "chromium failed");

    /* events/s per worker: one line per worker of /stats, drawn from its
     * events_per_s samples; the highest line's last point sits where its
     * value scales to (y = 146 - v * 136 / (1.1 * max)). */
    cr_assert(read_chart(dom, "chart_worker_eps", &eps), "events/s chart in the DOM");
    cr_log_info("chart: %d lines, max %.1f, best last %.1f (%d points, y %.1f); %d fed",
                eps.paths, eps.max, eps.best_last, eps.best_points, eps.best_y, f.sent);
    cr_expect_eq(eps.paths, workers, "a line per worker (%lld workers)", (long long)workers);
    cr_expect_str_eq(eps.series[0], "w0");
    cr_expect_gt(eps.best_last, 0, "events/s drawn above 0");
    cr_expect_geq(eps.best_points, 2, "a line of several samples");
    cr_expect_leq(eps.best_last, eps.max);
    cr_expect_leq(eps.best_last, 2.0 * f.sent + 100, "a rate no larger than what was fed");
    double want_y = 146 - eps.best_last * 136 / (1.1 * eps.max);
    cr_expect(fabs(eps.best_y - want_y) < 0.2, "last point at y %.1f, want %.1f", eps.best_y,
              want_y);

    /* lag per partition: a line per partition of the source topic */
    chart_t lag;
    cr_assert(read_chart(dom, "chart_part_lag", &lag), "lag chart in the DOM");
    cr_expect_eq(lag.paths, 4, "a line per partition: %d", lag.paths);
    char want[160];
    snprintf(want, sizeof want, "%s/0", in);
    cr_expect_str_eq(lag.series[0], want);
    cr_expect_geq(lag.best_last, 0);
    chart_t worker_lag, part_eps, latency;
    cr_expect(read_chart(dom, "chart_worker_lag", &worker_lag));
    cr_expect_eq(worker_lag.paths, workers);
    cr_expect(read_chart(dom, "chart_part_eps", &part_eps));
    cr_expect_eq(part_eps.paths, 4, "events/s per partition: %d lines", part_eps.paths);
    cr_expect(read_chart(dom, "chart_latency", &latency));
    cr_expect_geq(latency.paths, 3, "send p50/p99 and processing p99 at least");
    cr_expect_gt(latency.best_last, 0, "send latency drawn above 0");
    /* /stats has no standbys or services here: their sections hidden */
    cr_expect_not_null(strstr(dom, "id=\"sec_standbys\" hidden"), "standbys hidden");

    /* the screenshot is a rendered page, not a blank one */
    cr_log_info("screenshots: page %ld bytes, blank %ld bytes", page_png, blank_png);
    cr_expect_gt(page_png, 0, "page screenshot taken");
    cr_expect_gt(blank_png, 0, "blank screenshot taken");
    cr_expect_gt(page_png, 4 * blank_png, "the page draws much more than a blank page");
    free(dom);
    mph_test_rmrf(dir);
    stop_app(app);
}

/* A /stats server for the page (python3): the app's page at /, and at
 * /stats the app's document with a restore that advances 100 records per
 * request (1 s apart in time_ms) and standbys and timers blocks added, as
 * other modules may add them. */
static const char fake_stats_py[] =
    "import json, sys, http.server\n"
    "page = open(sys.argv[1], 'rb').read()\n"
    "base = json.load(open(sys.argv[2]))\n"
    "n = [0]\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def log_message(self, *a): pass\n"
    "    def do_GET(self):\n"
    "        if self.path.startswith('/stats'):\n"
    "            n[0] += 1\n"
    "            d = dict(base)\n"
    "            d['time_ms'] = base['time_ms'] + 1000 * n[0]\n"
    "            d['recovery'] = {'recoveries': 1, 'records_restored': 100 * n[0],\n"
    "                             'records_total': 1000, 'partitions_restoring': 2}\n"
    "            d['recovery']['standbys'] = [{'table': 'counts', 'partition': 3,\n"
    "                                          'records_applied': 500, 'lag': 12}]\n"
    "            d['services'] = {'leader': True, 'entries': [{'name': 'report', 'runs': 40}]}\n"
    "            body, ct = json.dumps(d).encode(), 'application/json'\n"
    "        else:\n"
    "            body, ct = page, 'text/html; charset=utf-8'\n"
    "        self.send_response(200)\n"
    "        self.send_header('Content-Type', ct)\n"
    "        self.send_header('Content-Length', str(len(body)))\n"
    "        self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "s = http.server.HTTPServer(('127.0.0.1', 0), H)\n"
    "print(s.server_address[1], flush=True)\n"
    "s.serve_forever()\n";

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

Test(web, page_shows_restore_eta_standbys_and_timers_when_stats_has_them)
{
    if (access("/usr/bin/chromium", X_OK) != 0 || system("python3 -c '' 2>/dev/null") != 0)
        cr_skip_test("needs chromium and python3");
    char in[128], group[128], err[512], dir[256], page[300], stats[300], py[300];
    mph_test_unique("web-extra", in, sizeof in);
    mph_test_unique("web-extra-app", group, sizeof group);
    mph_test_create_topic(cluster, in, 4);
    mph_app_t *app = forward_app(group, in, NULL, NULL); /* no agent: the page is enough */
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    int port = web_port(app);
    cr_assert(mph_test_tmpdir("web-extra", dir, sizeof dir));
    snprintf(page, sizeof page, "%s/index.html", dir);
    snprintf(stats, sizeof stats, "%s/stats.json", dir);
    snprintf(py, sizeof py, "%s/serve.py", dir);
    reply_t r;
    get(port, "/", &r);
    cr_assert_eq(r.status, 200);
    /* without those keys the server renders the sections hidden */
    cr_expect_not_null(strstr(r.body, "<section id=\"sec_standbys\" hidden>"));
    cr_expect_not_null(strstr(r.body, "<section id=\"sec_services\" hidden>"));
    write_file(page, r.body, r.body_len);
    reply_free(&r);
    get(port, "/stats", &r);
    cr_assert_eq(r.status, 200);
    write_file(stats, r.body, r.body_len);
    reply_free(&r);
    stop_app(app);
    write_file(py, fake_stats_py, strlen(fake_stats_py));

    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execlp("python3", "python3", py, page, stats, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *srv = fdopen(fds[0], "r");
    cr_assert_not_null(srv);
    int sport = 0;
    cr_assert_eq(fscanf(srv, "%d", &sport), 1, "the python server's port");
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", sport);
    char *dom = dump_dom(url);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    fclose(srv);
    cr_assert_not_null(dom, "chromium failed");
    long long updates = dom_updates(dom);
    cr_log_info("page read the fake /stats %lld times", updates);
    cr_expect_geq(updates, 2);
    /* restore: progress from records_restored / records_total, the ETA
     * from the rate between samples (100 records/s: (1000 - done) / 100) */
    char want[160];
    long long done = 100 * updates;
    snprintf(want, sizeof want, "restore_text\">%lld of 1000 changelog records (%lld %%)",
             done, done / 10);
    cr_expect_not_null(strstr(dom, want), "%s in %.300s", want, strstr(dom, "restore_text"));
    snprintf(want, sizeof want, "restore_eta\">%lld s<", (1000 - done) / 100);
    cr_expect_not_null(strstr(dom, want), "%s in %.100s", want, strstr(dom, "restore_eta"));
    cr_expect_not_null(strstr(dom, "<td class=\"l\">partitions_restoring</td><td>2</td>"),
                       "other restore keys shown");
    /* standbys and timers: shown, with their numbers */
    cr_expect_not_null(strstr(dom, "<section id=\"sec_standbys\"><h2>"), "standbys shown");
    cr_expect_not_null(strstr(dom, "<td class=\"l\">standbys[0].lag</td><td>12</td>"));
    cr_expect_not_null(strstr(dom, "<section id=\"sec_services\"><h2>"), "services shown");
    cr_expect_not_null(strstr(dom, "<td class=\"l\">entries[0].runs</td><td>40</td>"));
    free(dom);
    mph_test_rmrf(dir);
}
