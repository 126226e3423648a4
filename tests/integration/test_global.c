/*
 * Global tables (issue 19): every member's copy equals the changelog after
 * 100,000 writes from agents of three members; a member started later
 * bootstraps to the same content before it reports ready; reads of the
 * local copy, options and errors; /tables/<global>/<key> on a member.
 *
 * The three members are three apps of one app_id in this process (each its
 * own group member, consumer, producer and copy), as separate processes
 * would be.
 */
// ctest-timeout: 240
#include <arpa/inet.h>
#include <dlfcn.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ck_pr.h>

#include "mephisto.h"
#include "mph_cli.h"
#include "mph_test.h"
#include "runtime/app.h"
#include "runtime/global_table.h"
#include "runtime/web.h"

static mph_test_cluster_t *cluster;
static void setup(void)
{
    cluster = mph_test_cluster_new();
}
static void teardown(void)
{
    mph_test_cluster_destroy(cluster);
}

TestSuite(global, .init = setup, .fini = teardown, .timeout = 240);

static mph_app_t *new_app(const char *app_id, const char *const *extra)
{
    char err[512];
    mph_conf_t *conf = mph_conf_new();
    cr_assert_eq(mph_conf_set(conf, "broker", cluster->broker, err, sizeof err),
                 MPH_OK, "%s", err);
    cr_assert_eq(mph_conf_set(conf, "app_id", app_id, err, sizeof err), MPH_OK,
                 "%s", err);
    cr_assert_eq(mph_conf_set(conf, "workers", "1", err, sizeof err), MPH_OK,
                 "%s", err);
    cr_assert_eq(mph_conf_set(conf, "web_enabled", "false", err, sizeof err),
                 MPH_OK);
    cr_assert_eq(mph_conf_set(conf, "log_level", "warn", err, sizeof err),
                 MPH_OK);
    cr_assert_eq(
        mph_conf_set(conf, "session_timeout_ms", "6000", err, sizeof err),
        MPH_OK);
    for (const char *const *e = extra; e && e[0]; e += 2)
        cr_assert_eq(mph_conf_set(conf, e[0], e[1], err, sizeof err), MPH_OK,
                     "%s", err);
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(app, "%s", err);
    return app;
}

/* The writer agent: value "k<i>:<seq>" → sets key k<i> to it, except that
 * it deletes the key when i + seq is divisible by 7 (so about a seventh of
 * the keys end deleted). */
static int processed;
static mph_global_table_t *writer_table[8];

static mph_err_t write_cb(mph_event_t *ev, void *opaque)
{
    mph_global_table_t *gt = opaque;
    size_t klen = 0, vlen = 0;
    const char *k = mph_event_key(ev, &klen);
    const char *v = mph_event_value(ev, &vlen);
    const char *colon = memchr(v, ':', vlen);
    long seq = colon ? strtol(colon + 1, NULL, 10) : 0;
    char kbuf[32];
    snprintf(kbuf, sizeof kbuf, "%.*s", (int)(klen < 31 ? klen : 31), k);
    long knum = strtol(kbuf + 1, NULL, 10);
    mph_err_t err = (seq + knum) % 7 == 0
                        ? mph_global_table_delete(ev, gt, k, klen)
                        : mph_global_table_set(ev, gt, k, klen, v, vlen);
    if (!err)
        __atomic_add_fetch(&processed, 1, __ATOMIC_SEQ_CST);
    return err;
}

static mph_app_t *member(const char *app_id, const char *in, int idx,
                         mph_global_table_t **out)
{
    char err[512];
    mph_app_t *app = new_app(app_id, NULL);
    mph_global_table_opts_t *o = mph_global_table_opts_new();
    cr_assert_eq(
        mph_global_table_opts_set(o, "partitions", "4", err, sizeof err),
        MPH_OK, "%s", err);
    mph_global_table_t *gt =
        mph_global_table_new(app, "products", o, err, sizeof err);
    mph_global_table_opts_destroy(o);
    cr_assert_not_null(gt, "%s", err);
    writer_table[idx] = gt;
    if (in) {
        mph_topic_t *t = mph_topic_new(app, in, NULL, err, sizeof err);
        cr_assert_not_null(t, "%s", err);
        cr_assert_not_null(
            mph_agent_new(app, "write", t, write_cb, gt, err, sizeof err), "%s",
            err);
    }
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    *out = gt;
    return app;
}

/* The changelog folded: key → last value (tombstones delete). */
typedef struct fold {
    char **keys, **vals;
    size_t *vlens;
    size_t n, cap;
    size_t records;
} fold_t;

static long fold_find(fold_t *f, const void *k, size_t klen)
{
    for (size_t i = 0; i < f->n; i++)
        if (strlen(f->keys[i]) == klen && !memcmp(f->keys[i], k, klen))
            return (long)i;
    return -1;
}

static void fold_cb(const rd_kafka_message_t *m, void *opaque)
{
    fold_t *f = opaque;
    f->records++;
    long i = fold_find(f, m->key, m->key_len);
    if (i < 0) {
        if (f->n == f->cap) {
            f->cap = f->cap ? f->cap * 2 : 1024;
            f->keys = realloc(f->keys, f->cap * sizeof *f->keys);
            f->vals = realloc(f->vals, f->cap * sizeof *f->vals);
            f->vlens = realloc(f->vlens, f->cap * sizeof *f->vlens);
        }
        i = (long)f->n++;
        f->keys[i] = strndup(m->key, m->key_len);
        f->vals[i] = NULL;
    }
    free(f->vals[i]);
    f->vals[i] = m->payload ? strndup(m->payload, m->len) : NULL;
    f->vlens[i] = m->payload ? m->len : 0;
}

static void fold_free(fold_t *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->keys[i]);
        free(f->vals[i]);
    }
    free(f->keys);
    free(f->vals);
    free(f->vlens);
}

static size_t fold_live(const fold_t *f)
{
    size_t n = 0;
    for (size_t i = 0; i < f->n; i++)
        n += f->vals[i] != NULL;
    return n;
}

/* How many keys of the fold the copy gets wrong (absent, present or
 * different), plus how many keys the copy has beyond the fold. */
static size_t mismatches(mph_global_table_t *gt, const fold_t *f)
{
    size_t bad = 0;
    for (size_t i = 0; i < f->n; i++) {
        void *v = NULL;
        size_t vlen = 0;
        mph_err_t err =
            mph_global_table_get(gt, f->keys[i], strlen(f->keys[i]), &v, &vlen);
        if (f->vals[i] == NULL)
            bad += err != MPH_ERR_NOENT;
        else
            bad += err != MPH_OK || vlen != f->vlens[i] ||
                   memcmp(v, f->vals[i], vlen) != 0;
        free(v);
    }
    size_t live = fold_live(f), have = mph_global_table_count(gt);
    return bad + (have > live ? have - live : 0);
}

static size_t converge(mph_global_table_t *gt, const fold_t *f, int timeout_s)
{
    size_t bad = 0;
    for (int i = 0; i < timeout_s * 10; i++) {
        bad = mismatches(gt, f);
        if (bad == 0)
            return 0;
        usleep(100000);
    }
    return bad;
}

Test(global, three_members_equal_changelog_and_late_member_bootstraps)
{
    if (mph_test_real_broker())
        cr_skip_test(
            "on a real broker the members are processes: "
            "three_processes_equal_changelog_and_late_process_bootstraps");
    char app_id[128], in[160], changelog[256];
    mph_test_unique("gt", app_id, sizeof app_id);
    snprintf(in, sizeof in, "%s-in", app_id);
    snprintf(changelog, sizeof changelog, "%s-products-changelog", app_id);
    mph_test_create_topic(cluster, in, 6);
    /* (Created here too: the mock cluster cannot create topics through
     * the admin API the app uses, and a metadata request auto-creates
     * them with its default partition count.) */
    mph_test_create_topic(cluster, changelog, 4);
    enum { N = 100000, K = 5000, M = 3 };
    __atomic_store_n(&processed, 0, __ATOMIC_SEQ_CST);

    mph_app_t *apps[M + 1];
    mph_global_table_t *gts[M + 1];
    for (int i = 0; i < M; i++)
        apps[i] = member(app_id, in, i, &gts[i]);
    for (int i = 0; i < M; i++)
        cr_assert_eq(mph_global_table_wait_ready(gts[i], 30000), MPH_OK,
                     "member %d not ready", i);
    cr_assert_eq(mph_global_table_count(gts[0]), 0);

    cr_assert_eq(mph_test_produce_seq(cluster, in, N, K, 1), N);
    for (int i = 0;
         i < 1200 && __atomic_load_n(&processed, __ATOMIC_SEQ_CST) < N; i++)
        usleep(100000);
    cr_assert_geq(__atomic_load_n(&processed, __ATOMIC_SEQ_CST), N,
                  "processed %d of %d", processed, N);

    fold_t f = {0};
    int got = mph_test_consume_all(cluster, changelog, 1 << 30, 3000, 60000,
                                   fold_cb, &f);
    cr_assert_geq(
        got, N, "the changelog holds %d records, at least %d expected", got, N);
    cr_assert_eq(f.n, (size_t)K);
    size_t live = fold_live(&f);
    cr_assert(live > 0 && live < (size_t)K, "%zu live keys", live);
    for (int i = 0; i < M; i++)
        cr_assert_eq(converge(gts[i], &f, 30), 0,
                     "member %d: copy differs from the changelog", i);

    /* A member started now (no agent) is ready only with the whole content. */
    apps[M] = member(app_id, NULL, M, &gts[M]);
    cr_assert_eq(mph_global_table_wait_ready(gts[M], 60000), MPH_OK);
    cr_assert(mph__globals_ready(apps[M]));
    cr_assert_eq(mismatches(gts[M], &f), 0,
                 "the late member reported ready before its copy "
                 "reached the changelog end");
    for (int i = 0; i <= M; i++)
        mph_app_destroy(apps[i]);
    fold_free(&f);
}

/* A write is visible in the writer's copy only once read back; a tombstone
 * removes the key; reads into a short buffer say the size. */
static mph_err_t one_cb(mph_event_t *ev, void *opaque)
{
    mph_global_table_t *gt = opaque;
    size_t klen = 0, vlen = 0;
    const char *k = mph_event_key(ev, &klen);
    const char *v = mph_event_value(ev, &vlen);
    if (vlen == 3 && !memcmp(v, "del", 3))
        return mph_global_table_delete(ev, gt, k, klen);
    return mph_global_table_set(ev, gt, k, klen, v, vlen);
}

static bool wait_value(mph_global_table_t *gt, const char *key,
                       const char *want)
{
    for (int i = 0; i < 300; i++) {
        char buf[64];
        size_t len = 0;
        mph_err_t err = mph_global_table_get_into(gt, key, strlen(key), buf,
                                                  sizeof buf, &len);
        if (want ? err == MPH_OK && len == strlen(want) &&
                       !memcmp(buf, want, len)
                 : err == MPH_ERR_NOENT)
            return true;
        usleep(100000);
    }
    return false;
}

static int http_get(int port, const char *path, char *out, size_t out_size)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    char req[512];
    int n =
        snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    size_t got = 0;
    ssize_t r;
    while (got + 1 < out_size &&
           (r = read(fd, out + got, out_size - 1 - got)) > 0)
        got += (size_t)r;
    out[got] = 0;
    close(fd);
    int status = -1;
    sscanf(out, "HTTP/1.%*d %d", &status);
    return status;
}

Test(global, writes_apply_when_read_back_and_web_serves_the_copy)
{
    char app_id[128], in[160], err[512];
    mph_test_unique("gt1", app_id, sizeof app_id);
    snprintf(in, sizeof in, "%s-in", app_id);
    mph_test_create_topic(cluster, in, 2);
    snprintf(err, sizeof err, "%s-names-changelog", app_id);
    mph_test_create_topic(cluster, err, 8);
    const char *extra[] = {"web_enabled", "true", "web_port", "0", NULL};
    mph_app_t *app = new_app(app_id, extra);
    mph_global_table_t *gt =
        mph_global_table_new(app, "names", NULL, err, sizeof err);
    cr_assert_not_null(gt, "%s", err);
    cr_assert_eq(mph_app_global_table(app, "names"), gt);
    cr_assert_str_eq(
        mph_topic_name(mph_global_table_topic(gt)),
        (snprintf(err, sizeof err, "%s-names-changelog", app_id), err));
    cr_assert_null(mph_global_table_new(app, "names", NULL, err, sizeof err));
    cr_assert(strstr(err, "declared already"), "%s", err);
    mph_topic_t *t = mph_topic_new(app, in, NULL, err, sizeof err);
    cr_assert_not_null(mph_agent_new(app, "w", t, one_cb, gt, err, sizeof err),
                       "%s", err);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    cr_assert_null(mph_global_table_new(app, "late", NULL, err, sizeof err));
    cr_assert_eq(mph_global_table_wait_ready(gt, 30000), MPH_OK);

    mph_test_produce(cluster, in, -1, "p1", 2, "widget", 6);
    mph_test_produce(cluster, in, -1, "p2", 2, "", 0);
    mph_test_flush(cluster);
    cr_assert(wait_value(gt, "p1", "widget"));
    cr_assert(wait_value(gt, "p2", ""),
              "an empty value is a value, not a tombstone");
    char small[2];
    size_t len = 0;
    cr_assert_eq(
        mph_global_table_get_into(gt, "p1", 2, small, sizeof small, &len),
        MPH_ERR_RANGE);
    cr_assert_eq(len, 6);
    cr_assert(mph_global_table_contains(gt, "p1", 2));
    cr_assert_not(mph_global_table_contains(gt, "nope", 4));

    int port = mph__web_port(app->web);
    char body[4096];
    cr_assert_eq(http_get(port, "/tables/names/p1", body, sizeof body), 200,
                 "%s", body);
    cr_assert(strstr(body, "\"widget\""), "%s", body);
    cr_assert_eq(http_get(port, "/tables/names/zzz", body, sizeof body), 404,
                 "%s", body);
    cr_assert_eq(http_get(port, "/ready", body, sizeof body), 200, "%s", body);

    mph_test_produce(cluster, in, -1, "p1", 2, "del", 3);
    mph_test_flush(cluster);
    cr_assert(wait_value(gt, "p1", NULL));
    cr_assert_eq(mph_global_table_count(gt), 1);
    /* /stats lists the global table with its size and bootstrap state. */
    char name[64];
    uint64_t keys = 0, ready = 0;
    cr_assert(mph_test_stat_str(app, "global_tables.0.name", name, sizeof name));
    cr_expect_str_eq(name, "names");
    cr_assert(mph_test_stat(app, "global_tables.0.keys", &keys));
    cr_expect_eq(keys, 1);
    cr_assert(mph_test_stat(app, "global_tables.0.ready", &ready));
    cr_expect_eq(ready, 1);
    mph_app_destroy(app);
}

Test(global, options_are_checked)
{
    char err[512];
    mph_global_table_opts_t *o = mph_global_table_opts_new();
    cr_assert_eq(
        mph_global_table_opts_set(o, "partitions", "0", err, sizeof err),
        MPH_ERR_INVALID);
    cr_assert(strstr(err, "partitions"), "%s", err);
    cr_assert_eq(mph_global_table_opts_set(o, "changelog.cleanup.policy",
                                           "delete", err, sizeof err),
                 MPH_ERR_INVALID);
    cr_assert(strstr(err, "compacted"), "%s", err);
    cr_assert_eq(mph_global_table_opts_set(o, "colour", "red", err, sizeof err),
                 MPH_ERR_INVALID);
    cr_assert(strstr(err, "unknown"), "%s", err);
    cr_assert_eq(mph_global_table_opts_set(o, "changelog.retention.ms", "1000",
                                           err, sizeof err),
                 MPH_OK);
    mph_global_table_opts_destroy(o);
}

/* examples/enrich: orders joined with product names from the global table. */
struct out_rec {
    char key[32];
    char value[256];
};
static void collect(const rd_kafka_message_t *m, void *opaque)
{
    struct out_rec *r = opaque;
    for (int i = 0; i < 8; i++)
        if (!r[i].key[0]) {
            snprintf(r[i].key, sizeof r[i].key, "%.*s", (int)m->key_len,
                     (const char *)m->key);
            snprintf(r[i].value, sizeof r[i].value, "%.*s", (int)m->len,
                     (const char *)m->payload);
            return;
        }
}

Test(global, enrich_example_joins_orders_with_product_names)
{
    char app_id[128], products[160], orders[160], output[160], err[512];
    mph_test_unique("enrich", app_id, sizeof app_id);
    snprintf(products, sizeof products, "%s-products", app_id);
    snprintf(orders, sizeof orders, "%s-orders", app_id);
    snprintf(output, sizeof output, "%s-out", app_id);
    const char *extra[] = {"enrich.products_topic",
                           products,
                           "enrich.orders_topic",
                           orders,
                           "enrich.output_topic",
                           output,
                           NULL};
    char changelog[256];
    snprintf(changelog, sizeof changelog, "%s-products-changelog", app_id);
    mph_test_create_topic(cluster, changelog, 8);
    mph_test_create_topic(cluster, products, 8);
    mph_test_create_topic(cluster, orders, 8);
    mph_test_create_topic(cluster, output, 8);
    mph_app_t *app = new_app(app_id, extra);
    void *h = dlopen(mph_cli_plugin("enrich"), RTLD_NOW | RTLD_LOCAL);
    cr_assert_not_null(h, "%s", dlerror());
    int (*init)(mph_app_t *) =
        (int (*)(mph_app_t *))dlsym(h, "mephisto_app_init");
    cr_assert_not_null(init);
    cr_assert_eq(init(app), 0);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    mph_global_table_t *gt = mph_app_global_table(app, "products");
    cr_assert_not_null(gt);
    cr_assert_eq(mph_global_table_wait_ready(gt, 30000), MPH_OK);

    mph_test_produce(cluster, products, -1, "p1", 2, "Widget", 6);
    mph_test_produce(cluster, products, -1, "p2", 2, "Gadget", 6);
    mph_test_produce(cluster, products, -1, "p3", 2, "Gone", 4);
    mph_test_produce(cluster, products, -1, "p3", 2, "", 0); /* removed */
    mph_test_flush(cluster);
    cr_assert(wait_value(gt, "p2", "Gadget"));
    cr_assert(wait_value(gt, "p3", NULL));
    cr_assert(wait_value(gt, "p1", "Widget"));
    const char *o1 = "{\"order\":\"o1\",\"product\":\"p1\",\"qty\":2}";
    const char *o2 = "{\"order\":\"o2\",\"product\":\"p9\"}";
    const char *o3 = "{\"order\":\"o3\",\"product\":\"p3\"}";
    mph_test_produce(cluster, orders, -1, "o1", 2, o1, strlen(o1));
    mph_test_produce(cluster, orders, -1, "o2", 2, o2, strlen(o2));
    mph_test_produce(cluster, orders, -1, "o3", 2, o3, strlen(o3));
    mph_test_produce(cluster, orders, -1, "o4", 2, "not json", 8);
    mph_test_flush(cluster);
    struct out_rec got[8];
    memset(got, 0, sizeof got);
    cr_assert_eq(
        mph_test_consume_all(cluster, output, 4, 2000, 30000, collect, got), 4);
    for (int i = 0; i < 4; i++) {
        char want[256];
        if (!strcmp(got[i].key, "o1"))
            snprintf(want, sizeof want,
                     "{\"order\":%s,\"product_name\":\"Widget\"}", o1);
        else if (!strcmp(got[i].key, "o2"))
            snprintf(want, sizeof want, "{\"order\":%s,\"product_name\":null}",
                     o2);
        else if (!strcmp(got[i].key, "o3"))
            snprintf(want, sizeof want, "{\"order\":%s,\"product_name\":null}",
                     o3);
        else
            snprintf(want, sizeof want,
                     "{\"order\":\"not json\",\"product_name\":null}");
        cr_assert_str_eq(got[i].value, want, "order %s", got[i].key);
    }
    mph_app_destroy(app);
    dlclose(h);
}

/* ---- the same with processes, on a real broker ---- */

static mph_err_t dump_cb(const void *key, size_t klen, const void *value,
                         size_t vlen, void *opaque)
{
    fprintf(opaque, "%.*s\t%.*s\n", (int)klen, (const char *)key, (int)vlen,
            (const char *)value);
    return MPH_OK;
}

/* A member process: this program again, run by the constructor below when
 * MPH_GT_CHILD_APP is set. It serves /tables and /ready on a free port,
 * written to MPH_GT_CHILD_PORTFILE, and runs until killed. */
__attribute__((constructor)) static void gt_child_main(void)
{
    const char *app_id = getenv("MPH_GT_CHILD_APP");
    if (!app_id)
        return;
    const char *in = getenv("MPH_GT_CHILD_IN");
    char err[512];
    mph_conf_t *conf = mph_conf_new();
    const char *set[][2] = {{"broker", getenv("MPH_GT_CHILD_BROKER")},
                            {"app_id", app_id},
                            {"workers", "1"},
                            {"web_enabled", "true"},
                            {"web_port", "0"},
                            {"log_level", "warn"},
                            {"session_timeout_ms", "6000"}};
    for (size_t i = 0; i < sizeof set / sizeof set[0]; i++)
        if (mph_conf_set(conf, set[i][0], set[i][1], err, sizeof err)) {
            fprintf(stderr, "child: %s\n", err);
            _exit(2);
        }
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    mph_global_table_opts_t *o = mph_global_table_opts_new();
    mph_global_table_opts_set(o, "partitions", "4", NULL, 0);
    mph_global_table_t *gt =
        app ? mph_global_table_new(app, "products", o, err, sizeof err) : NULL;
    mph_global_table_opts_destroy(o);
    mph_topic_t *t =
        gt && in ? mph_topic_new(app, in, NULL, err, sizeof err) : NULL;
    if (!gt ||
        (in && (!t || !mph_agent_new(app, "write", t, write_cb, gt, err,
                                     sizeof err))) ||
        mph_app_start(app, err, sizeof err) != MPH_OK) {
        fprintf(stderr, "child: %s\n", err);
        _exit(2);
    }
    char tmp[4200];
    const char *dump = getenv("MPH_GT_CHILD_DUMP");
    if (dump) {
        /* The copy as it is the moment it reports ready. */
        FILE *d = NULL;
        snprintf(tmp, sizeof tmp, "%s.tmp", dump);
        if (mph_global_table_wait_ready(gt, 120000) == MPH_OK &&
            (d = fopen(tmp, "w")) != NULL) {
            mph_global_table_foreach(gt, dump_cb, d);
            fclose(d);
            rename(tmp, dump);
        }
    }
    const char *portfile = getenv("MPH_GT_CHILD_PORTFILE");
    snprintf(tmp, sizeof tmp, "%s.tmp", portfile);
    FILE *f = fopen(tmp, "w");
    if (f) {
        fprintf(f, "%d\n", mph__web_port(app->web));
        fclose(f);
        rename(tmp, portfile);
    }
    mph_app_wait(app);
    _exit(0);
}

typedef struct child {
    pid_t pid;
    char portfile[4096];
    int port;
} child_t;

static void spawn_member(child_t *c, const char *app_id, const char *in,
                         const char *dir, int idx, const char *dump)
{
    snprintf(c->portfile, sizeof c->portfile, "%s/port-%d", dir, idx);
    c->port = 0;
    c->pid = fork();
    cr_assert_geq(c->pid, 0);
    if (c->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        setenv("MPH_GT_CHILD_APP", app_id, 1);
        setenv("MPH_GT_CHILD_BROKER", cluster->broker, 1);
        setenv("MPH_GT_CHILD_PORTFILE", c->portfile, 1);
        if (in)
            setenv("MPH_GT_CHILD_IN", in, 1);
        else
            unsetenv("MPH_GT_CHILD_IN");
        if (dump)
            setenv("MPH_GT_CHILD_DUMP", dump, 1);
        execl("/proc/self/exe", "test_global_member", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 600 && !c->port; i++) {
        FILE *f = fopen(c->portfile, "r");
        if (f) {
            if (fscanf(f, "%d", &c->port) != 1)
                c->port = 0;
            fclose(f);
        }
        if (!c->port)
            usleep(50000);
    }
    cr_assert_gt(c->port, 0, "member %d did not start", idx);
}

static void wait_http_ready(const child_t *c)
{
    char body[1024];
    int st = 0;
    for (int i = 0; i < 1200 && st != 200; i++) {
        st = http_get(c->port, "/ready", body, sizeof body);
        if (st != 200)
            usleep(50000);
    }
    cr_assert_eq(st, 200, "port %d never ready", c->port);
}

/* Keys whose value over HTTP differs from the fold. */
static size_t mismatches_http(int port, const fold_t *f)
{
    size_t bad = 0;
    char path[256], body[4096];
    for (size_t i = 0; i < f->n; i++) {
        snprintf(path, sizeof path, "/tables/products/%s", f->keys[i]);
        int st = http_get(port, path, body, sizeof body);
        if (!f->vals[i]) {
            bad += st != 404;
            continue;
        }
        const char *b = strstr(body, "\r\n\r\n");
        char want[300];
        snprintf(want, sizeof want, "\"%s\"", f->vals[i]);
        bad += st != 200 || !b || strcmp(b + 4, want) != 0;
    }
    return bad;
}

static int64_t changelog_records(const char *topic, int partitions)
{
    int64_t sum = 0;
    for (int p = 0; p < partitions; p++) {
        int64_t lo = 0, hi = 0;
        if (mph__kafka_watermarks(cluster->producer, topic, p, &lo, &hi,
                                  5000) == MPH_OK)
            sum += hi;
    }
    return sum;
}

Test(global, three_processes_equal_changelog_and_late_process_bootstraps)
{
    if (!mph_test_real_broker())
        cr_skip_test("needs MEPHISTO_TEST_BROKERS: the member processes "
                     "share the broker");
    char app_id[128], in[160], changelog[256], dir[256];
    mph_test_unique("gtp", app_id, sizeof app_id);
    snprintf(in, sizeof in, "%s-in", app_id);
    snprintf(changelog, sizeof changelog, "%s-products-changelog", app_id);
    mph_test_tmpdir("gtp", dir, sizeof dir);
    mph_test_create_topic(cluster, in, 6);
    mph_test_create_topic(cluster, changelog, 4);
    enum { N = 100000, K = 5000, M = 3 };
    child_t kids[M + 1];
    for (int i = 0; i < M; i++)
        spawn_member(&kids[i], app_id, in, dir, i, NULL);
    for (int i = 0; i < M; i++)
        wait_http_ready(&kids[i]);

    cr_assert_eq(mph_test_produce_seq(cluster, in, N, K, 1), N);
    int64_t have = 0;
    for (int i = 0; i < 1200 && (have = changelog_records(changelog, 4)) < N;
         i++)
        usleep(100000);
    cr_assert_geq(have, N, "the changelog holds %lld records", (long long)have);
    fold_t f = {0};
    mph_test_consume_all(cluster, changelog, 1 << 30, 3000, 60000, fold_cb, &f);
    cr_assert_eq(f.n, (size_t)K);
    size_t live = fold_live(&f);
    cr_assert(live > 0 && live < (size_t)K, "%zu live keys", live);
    for (int i = 0; i < M; i++) {
        size_t bad = 0;
        for (int w = 0; w < 30; w++) {
            if ((bad = mismatches_http(kids[i].port, &f)) == 0)
                break;
            sleep(1);
        }
        cr_assert_eq(bad, 0, "member %d: %zu keys differ from the changelog", i,
                     bad);
    }

    /* A process started now (reading the table only) holds the whole
     * content the moment it reports ready: it dumps its copy then. */
    char dump[4200];
    snprintf(dump, sizeof dump, "%s/dump", dir);
    spawn_member(&kids[M], app_id, NULL, dir, M, dump);
    FILE *d = NULL;
    for (int i = 0; i < 1200 && !(d = fopen(dump, "r")); i++)
        usleep(50000);
    cr_assert_not_null(d, "the late process never reported ready");
    size_t lines = 0, bad = 0;
    char line[512];
    while (fgets(line, sizeof line, d)) {
        char *tab = strchr(line, '\t'), *nl = strchr(line, '\n');
        if (!tab || !nl) {
            bad++;
            continue;
        }
        *nl = 0;
        long i = fold_find(&f, line, (size_t)(tab - line));
        bad += i < 0 || !f.vals[i] || strcmp(f.vals[i], tab + 1) != 0;
        lines++;
    }
    fclose(d);
    cr_assert_eq(lines, live, "the late process was ready with %zu of %zu keys",
                 lines, live);
    cr_assert_eq(bad, 0, "%zu keys of the late process differ", bad);
    /* Its web view serves the same from its copy. */
    cr_assert_eq(mismatches_http(kids[M].port, &f), 0);
    for (int i = 0; i <= M; i++) {
        kill(kids[i].pid, SIGKILL);
        waitpid(kids[i].pid, NULL, 0);
    }
    mph_test_rmrf(dir);
    fold_free(&f);
}
