/*
 * Joins end to end, against references computed here from the generated
 * input: a windowed stream–stream join (inner, left and outer on the same
 * two topics) with out-of-order records within grace, late records and a
 * graceful restart in the middle, under at_least_once (memory store) and
 * exactly_once (RocksDB), checked record for record; a stream–table join
 * (inner, left) across table updates; a table–table join (inner, left)
 * checked per key in order; and co-partitioning mismatches refused at start.
 */
// ctest-labels: engine;tables
// ctest-timeout: 300
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mephisto.h"
#include "mph_test.h"

#define NPART 4

static mph_test_cluster_t *cluster;

static void setup(void)
{
    cluster = mph_test_cluster_new();
}

static void teardown(void)
{
    mph_test_cluster_destroy(cluster);
}

TestSuite(joins, .init = setup, .fini = teardown, .timeout = 240);

/* ------------------------------------------------------------------ */
/* helpers                                                            */

static void produce_ts(const char *topic, const char *k, const char *v,
                       int64_t ts)
{
    rd_kafka_resp_err_t e;
    int32_t part = mph__kafka_partition_for(k, strlen(k), NPART);
    while (
        (e = rd_kafka_producev(
             cluster->producer, RD_KAFKA_V_TOPIC(topic),
             RD_KAFKA_V_PARTITION(part), RD_KAFKA_V_KEY(k, strlen(k)),
             RD_KAFKA_V_VALUE((void *)v, strlen(v)), RD_KAFKA_V_TIMESTAMP(ts),
             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
        RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(cluster->producer, 10);
    cr_assert_eq(e, 0, "produce: %s", rd_kafka_err2str(e));
    rd_kafka_poll(cluster->producer, 0);
}

static void wait_committed(const char *group, const char *topic, int64_t want)
{
    int64_t got = -1;
    for (int i = 0; i < 600; i++) {
        got = mph_test_committed_sum(cluster, group, topic, NPART);
        if (got >= want)
            break;
        usleep(100000);
    }
    cr_assert_eq(got, want, "%s: all input committed (%lld of %lld)", topic,
                 (long long)got, (long long)want);
}

/* A growable list of strings. */
typedef struct strs {
    char **v;
    size_t n, cap;
} strs_t;

static void strs_add(strs_t *s, const char *str)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 256;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n++] = strdup(str);
}

static void strs_free(strs_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "key|value" per record; a null value reads as "key|<null>". */
static void collect(const rd_kafka_message_t *m, void *opaque)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%.*s|%.*s", (int)m->key_len,
             (const char *)m->key, m->payload ? (int)m->len : 6,
             m->payload ? (const char *)m->payload : "<null>");
    strs_add(opaque, buf);
}

static void read_output(const char *topic, strs_t *out)
{
    mph_test_consume_all(cluster, topic, 1 << 30, 2000, 60000, collect, out);
}

/* Sorted comparison, naming the first difference. */
static void check_same(const char *what, strs_t *got, strs_t *want)
{
    qsort(got->v, got->n, sizeof *got->v, str_cmp);
    qsort(want->v, want->n, sizeof *want->v, str_cmp);
    size_t i = 0;
    while (i < got->n && i < want->n && !strcmp(got->v[i], want->v[i]))
        i++;
    cr_expect(i == got->n && i == want->n,
              "%s: %zu records, expected %zu; first difference at %zu: got %s, "
              "expected %s",
              what, got->n, want->n, i, i < got->n ? got->v[i] : "(end)",
              i < want->n ? want->v[i] : "(end)");
}

/* at_least_once after a crash: every wanted record at least once, nothing
 * else, and at most max_dups repeats in all. */
static void check_superset(const char *what, strs_t *got, strs_t *want,
                           size_t max_dups)
{
    qsort(got->v, got->n, sizeof *got->v, str_cmp);
    qsort(want->v, want->n, sizeof *want->v, str_cmp);
    size_t g = 0, missing = 0, strays = 0, dups = 0;
    for (size_t w = 0; w < want->n; w++) {
        while (g < got->n && strcmp(got->v[g], want->v[w]) < 0) {
            strays++;
            cr_log_error("%s: unexpected %s", what, got->v[g]);
            g++;
        }
        if (g < got->n && !strcmp(got->v[g], want->v[w])) {
            g++;
            while (g < got->n && !strcmp(got->v[g], want->v[w]))
                g++, dups++;
        } else {
            missing++;
            cr_log_error("%s: missing %s", what, want->v[w]);
        }
    }
    strays += got->n - g;
    cr_expect(missing == 0 && strays == 0 && dups <= max_dups,
              "%s: %zu missing, %zu unexpected, %zu repeated (at most %zu)",
              what, missing, strays, dups, max_dups);
}

/* "<left>|<right>" with "-" for an absent side. */
static mph_err_t joiner(mph_event_t *ev, const void *key, size_t klen,
                        const void *l, size_t ll, const void *r, size_t rl,
                        mph_join_out_t *out, void *opaque)
{
    (void)ev;
    (void)key;
    (void)klen;
    (void)opaque;
    char buf[512];
    int n = snprintf(buf, sizeof buf, "%.*s|%.*s", l ? (int)ll : 1,
                     l ? (const char *)l : "-", r ? (int)rl : 1,
                     r ? (const char *)r : "-");
    return mph_join_out_set(out, buf, (size_t)n);
}

/* No Criterion calls: also used in the crash test's child. NULL on error. */
static mph_conf_t *conf_try(const char *app_id, const char *dir,
                            const char *store, const char *guarantee, char *err,
                            size_t errlen)
{
    /* A static member id: a restart after a crash takes the partitions
     * back at once instead of after the session timeout. */
    const char *kv[] = {"broker",
                        cluster ? cluster->broker : mph_test_broker(),
                        "app_id",
                        app_id,
                        "workers",
                        "2",
                        "store",
                        store,
                        "datadir",
                        dir,
                        "commit_interval_ms",
                        "200",
                        "log_level",
                        "warn",
                        "topic_partitions",
                        "4",
                        "processing_guarantee",
                        guarantee,
                        "group_instance_id",
                        app_id,
                        NULL};
    mph_conf_t *conf = mph_conf_new();
    for (const char **p = kv; *p; p += 2)
        if (mph_conf_set(conf, p[0], p[1], err, errlen) != MPH_OK) {
            mph_conf_destroy(conf);
            return NULL;
        }
    return conf;
}

static mph_conf_t *conf_new(const char *app_id, const char *dir,
                            const char *store, const char *guarantee)
{
    char err[512];
    mph_conf_t *conf = conf_try(app_id, dir, store, guarantee, err, sizeof err);
    cr_assert_not_null(conf, "%s", err);
    return conf;
}

/* A key of partition p, not otherwise used ("<prefix>-<p>-<n>"). */
static void key_of_part(const char *prefix, int p, char *buf, size_t size)
{
    for (int n = 0;; n++) {
        snprintf(buf, size, "%s-%d-%d", prefix, p, n);
        if (mph__kafka_partition_for(buf, strlen(buf), NPART) == p)
            return;
    }
}

/* ------------------------------------------------------------------ */
/* windowed stream–stream joins                                       */

#define NKEYS    24
#define ROUNDS   8
#define ROUND_MS 400
#define BEFORE   300
#define AFTER    200
#define GRACE                                                                  \
    500 /* >= ROUND_MS: no record of a round is late, whatever the             \
           interleaving */

typedef struct jrec {
    int key;
    bool left;
    int64_t ts;
    int id;
    bool late;
} jrec_t;

typedef struct wrun {
    char app_id[128], dir[512], left[160], right[160], out[3][160];
    const char *store, *guarantee;
    jrec_t *recs;
    size_t nrecs;
    int64_t base;
    int64_t produced_l, produced_r;
    mph_join_t *joins[3];
    int crash_after; /* the crash test's child: _exit after this many joiner
                        calls */
    int calls;
} wrun_t;

static void kname(int k, char *buf, size_t size)
{
    snprintf(buf, size, "user-%d", k);
}

/* The crash child's joiner: the usual value, and a crash (no flush, no
 * commit: the open transaction is left to be aborted) after crash_after
 * calls. */
static mph_err_t crash_joiner(mph_event_t *ev, const void *key, size_t klen,
                              const void *l, size_t ll, const void *r,
                              size_t rl, mph_join_out_t *out, void *opaque)
{
    wrun_t *w = opaque;
    if (w->crash_after && ++w->calls >= w->crash_after)
        _exit(77);
    return joiner(ev, key, klen, l, ll, r, rl, out, NULL);
}

/* Declares the three joins; NULL with err (no Criterion calls). */
static mph_app_t *wapp_build(wrun_t *r, char *err, size_t errlen)
{
    mph_conf_t *conf =
        conf_try(r->app_id, r->dir, r->store, r->guarantee, err, errlen);
    mph_app_t *app = conf ? mph_app_new(conf, err, errlen) : NULL;
    if (!app)
        return NULL;
    mph_topic_t *l = mph_topic_new(app, r->left, NULL, err, errlen);
    mph_topic_t *rt =
        l ? mph_topic_new(app, r->right, NULL, err, errlen) : NULL;
    const char *names[3] = {"inner", "left", "outer"};
    mph_join_kind_t kinds[3] = {MPH_JOIN_INNER, MPH_JOIN_LEFT, MPH_JOIN_OUTER};
    for (int i = 0; i < 3; i++) {
        mph_topic_t *o =
            rt ? mph_topic_new(app, r->out[i], NULL, err, errlen) : NULL;
        r->joins[i] =
            o ? mph_join_windowed(
                    app, names[i], l, rt, kinds[i], BEFORE, AFTER, GRACE, o,
                    r->crash_after ? crash_joiner : joiner, r, err, errlen)
              : NULL;
        if (!r->joins[i]) {
            mph_app_destroy(app);
            return NULL;
        }
    }
    return app;
}

static mph_app_t *wapp_new(wrun_t *r)
{
    char err[512];
    mph_app_t *app = wapp_build(r, err, sizeof err);
    cr_assert_not_null(app, "%s", err);
    mph_topic_t *l = mph_app_topic(app, r->left),
                *rt = mph_app_topic(app, r->right);
    cr_assert_null(mph_join_windowed(app, "inner", l, rt, MPH_JOIN_INNER, 1, 1,
                                     1, mph_app_topic(app, r->out[0]), joiner,
                                     NULL, err, sizeof err),
                   "duplicate join name refused");
    cr_assert_null(mph_join_windowed(app, "x", l, l, MPH_JOIN_INNER, 1, 1, 1,
                                     mph_app_topic(app, r->out[0]), joiner,
                                     NULL, err, sizeof err),
                   "self join refused");
    cr_assert_null(mph_join_windowed(app, "y", l, rt, MPH_JOIN_INNER, -1, 1, 1,
                                     mph_app_topic(app, r->out[0]), joiner,
                                     NULL, err, sizeof err),
                   "negative window refused");
    cr_expect(strstr(err, "before_ms"), "%s", err);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    return app;
}

/* The crash test: the child running the app, and the app that replaced it. */
static pid_t child = -1;
static mph_app_t *replacement;
static bool crashed_in_joiner;

/* Once the child is gone (crashed, or killed here with force), the app
 * restarts in this process and takes over from the committed offsets. */
static void take_over(wrun_t *r, bool force)
{
    int status = 0;
    if (child < 0 || replacement)
        return;
    if (force)
        kill(child, SIGKILL);
    if (waitpid(child, &status, force ? 0 : WNOHANG) != child)
        return;
    cr_assert(force || (WIFEXITED(status) && WEXITSTATUS(status) == 77),
              "the child crashed in the joiner (status %d)", status);
    crashed_in_joiner = WIFEXITED(status) && WEXITSTATUS(status) == 77;
    r->crash_after = 0;
    replacement = wapp_new(r);
}

static void wait_round(wrun_t *r)
{
    mph_test_flush(cluster);
    for (int i = 0; i < 600; i++) {
        take_over(r, false);
        if (mph_test_committed_sum(cluster, r->app_id, r->left, NPART) >=
                r->produced_l &&
            mph_test_committed_sum(cluster, r->app_id, r->right, NPART) >=
                r->produced_r)
            break;
        usleep(100000);
    }
    wait_committed(r->app_id, r->left, r->produced_l);
    wait_committed(r->app_id, r->right, r->produced_r);
}

static void produce_rec(wrun_t *r, jrec_t *rec)
{
    char k[64], v[32];
    kname(rec->key, k, sizeof k);
    snprintf(v, sizeof v, "%c%d", rec->left ? 'L' : 'R', rec->id);
    produce_ts(rec->left ? r->left : r->right, k, v, rec->ts);
    if (rec->left)
        r->produced_l++;
    else
        r->produced_r++;
}

static void add_rec(wrun_t *r, jrec_t rec)
{
    r->recs = realloc(r->recs, (r->nrecs + 1) * sizeof *r->recs);
    rec.id = (int)r->nrecs;
    r->recs[r->nrecs++] = rec;
}

static void windowed_run(const char *tag, const char *store,
                         const char *guarantee, bool crash)
{
    wrun_t r;
    memset(&r, 0, sizeof r);
    mph_test_unique(tag, r.app_id, sizeof r.app_id);
    cr_assert_not_null(mph_test_tmpdir(tag, r.dir, sizeof r.dir));
    snprintf(r.left, sizeof r.left, "%s-left", r.app_id);
    snprintf(r.right, sizeof r.right, "%s-right", r.app_id);
    const char *onames[3] = {"inner", "left", "outer"};
    for (int i = 0; i < 3; i++)
        snprintf(r.out[i], sizeof r.out[i], "%s-out-%s", r.app_id, onames[i]);
    r.store = store;
    r.guarantee = guarantee;
    r.base = (mph_clock_wall_ms() / 3600000 - 1) * 3600000;
    uint64_t seed = 42;

    /* Rounds: each key gets 0-2 records per side at random times in the
     * round, produced in shuffled order (out of order within grace). */
    size_t round_start[ROUNDS + 1];
    for (int round = 0; round < ROUNDS; round++) {
        round_start[round] = r.nrecs;
        for (int k = 0; k < NKEYS; k++)
            for (int side = 0; side < 2; side++) {
                int n = (int)(mph_test_rand(&seed) % 3);
                for (int i = 0; i < n; i++) {
                    jrec_t rec = {
                        k, side == 0,
                        r.base + round * ROUND_MS +
                            (int64_t)(mph_test_rand(&seed) % ROUND_MS),
                        0, false};
                    add_rec(&r, rec);
                }
            }
        size_t a = round_start[round], n = r.nrecs - a;
        for (size_t i = n; i > 1; i--) {
            size_t j = mph_test_rand(&seed) % i;
            jrec_t t = r.recs[a + i - 1];
            r.recs[a + i - 1] = r.recs[a + j];
            r.recs[a + j] = t;
        }
        for (size_t i = a; i < r.nrecs; i++)
            r.recs[i].id = (int)i;
    }
    round_start[ROUNDS] = r.nrecs;

    /* Stream time per partition after all rounds, to make late records. */
    int64_t st[NPART] = {0};
    for (size_t i = 0; i < r.nrecs; i++) {
        char k[64];
        kname(r.recs[i].key, k, sizeof k);
        int p = mph__kafka_partition_for(k, strlen(k), NPART);
        if (r.recs[i].ts > st[p])
            st[p] = r.recs[i].ts;
    }
    /* Edge: a left record whose window has passed after + grace, then a
     * right record out of order within grace that still pairs with it (it
     * must not have been emitted unmatched before). Keys of partition 0. */
    int ek = -1, fk = -1;
    for (int k = 1000; ek < 0 || fk < 0; k++) {
        char kb[64];
        kname(k, kb, sizeof kb);
        if (mph__kafka_partition_for(kb, strlen(kb), NPART) != 0)
            continue;
        if (ek < 0)
            ek = k;
        else
            fk = k;
    }
    int64_t et = st[0] + 1000;
    size_t edge0 = r.nrecs;
    add_rec(&r, (jrec_t){ek, true, et, 0, false});
    add_rec(&r, (jrec_t){fk, true, et + AFTER + GRACE + 10, 0, false});
    add_rec(&r, (jrec_t){ek, false, et + AFTER, 0, false});
    size_t nlate0 = r.nrecs;
    for (int k = 0; k < NKEYS; k += 3)
        for (int side = 0; side < 2; side++) {
            char kb[64];
            kname(k, kb, sizeof kb);
            int p = mph__kafka_partition_for(kb, strlen(kb), NPART);
            /* Late on either side: ts + max(before, after) + grace < st. */
            jrec_t rec = {k, side == 0, st[p] - BEFORE - AFTER - GRACE - 50, 0,
                          true};
            add_rec(&r, rec);
        }
    size_t nlate = r.nrecs - nlate0;

    int go[2] = {-1, -1};
    if (crash) {
        /* Fork before this process starts any librdkafka thread: the child
         * runs the app until its joiner crashes in round 2 or 3. */
        cr_assert_eq(pipe(go), 0);
        child = fork();
        cr_assert_geq(child, 0);
        if (child == 0) {
            char c, err[512];
            close(go[1]);
            if (read(go[0], &c, 1) != 1)
                _exit(2);
            r.crash_after = 150;
            mph_app_t *capp = wapp_build(&r, err, sizeof err);
            if (!capp || mph_app_start(capp, err, sizeof err) != MPH_OK) {
                fprintf(stderr, "crash child: %s\n", err);
                _exit(3);
            }
            sleep(120);
            _exit(4);
        }
        close(go[0]);
        cluster = mph_test_cluster_new();
    }
    mph_test_create_topic(cluster, r.left, NPART);
    mph_test_create_topic(cluster, r.right, NPART);
    for (int i = 0; i < 3; i++)
        mph_test_create_topic(cluster, r.out[i], NPART);
    mph_app_t *app = NULL;
    if (crash) {
        cr_assert_eq(write(go[1], "g", 1), 1);
        close(go[1]);
    } else {
        app = wapp_new(&r);
    }
    for (int round = 0; round < ROUNDS; round++) {
        if (crash && round == ROUNDS - 1)
            take_over(&r, true); /* had it not crashed yet: now */
        if (crash && replacement) {
            app = replacement;
            replacement = NULL;
            child = -1;
        }
        if (!crash &&
            round == ROUNDS / 2) { /* graceful restart in the middle */
            cr_assert_eq(mph_app_stop(app), MPH_OK);
            mph_app_destroy(app);
            app = wapp_new(&r);
        }
        for (size_t i = round_start[round]; i < round_start[round + 1]; i++)
            produce_rec(&r, &r.recs[i]);
        wait_round(&r);
    }
    for (size_t i = edge0; i < nlate0; i++) { /* one at a time, in order */
        produce_rec(&r, &r.recs[i]);
        wait_round(&r);
    }
    for (size_t i = nlate0; i < r.nrecs; i++)
        produce_rec(&r, &r.recs[i]);
    wait_round(&r);
    /* One far-future left record per partition makes every window final. */
    for (int p = 0; p < NPART; p++) {
        char kb[64];
        key_of_part("flush", p, kb, sizeof kb);
        produce_ts(r.left, kb, "flush", r.base + 100 * ROUND_MS * ROUNDS);
        r.produced_l++;
    }
    wait_round(&r);
    for (int i = 0; i < 3; i++)
        cr_expect_eq(mph_join_stat(r.joins[i], MPH_JOIN_STAT_LATE),
                     (int64_t)nlate, "join %d: late records counted", i);
    /* /stats carries the same counters, per join, in declaration order
     * (the app is idle: every round was processed). */
    char *json = NULL;
    size_t jlen = 0;
    cr_assert_eq(mph_app_stats_json(app, &json, &jlen), MPH_OK);
    char *at = json;
    for (int i = 0; i < 3 && at; i++) {
        char want[256];
        snprintf(want, sizeof want,
                 "{\"name\":\"%s\",\"late\":%lld,\"invalid\":%lld,\"pairs\":%lld,"
                 "\"unmatched\":%lld}",
                 mph_join_name(r.joins[i]),
                 (long long)mph_join_stat(r.joins[i], MPH_JOIN_STAT_LATE),
                 (long long)mph_join_stat(r.joins[i], MPH_JOIN_STAT_INVALID),
                 (long long)mph_join_stat(r.joins[i], MPH_JOIN_STAT_PAIRS),
                 (long long)mph_join_stat(r.joins[i], MPH_JOIN_STAT_UNMATCHED));
        char *hit = strstr(at, want);
        cr_expect_not_null(hit, "/stats joins: %s not after the previous join", want);
        at = hit;
    }
    cr_expect_not_null(strstr(json, "\"joins\":[{\"name\":\"inner\""));
    free(json);
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);

    /* The reference: pairs by the definition, unmatched by kind. */
    strs_t want[3] = {{0}}, got[3] = {{0}};
    bool *lm = calloc(r.nrecs, 1), *rm = calloc(r.nrecs, 1);
    for (size_t i = 0; i < r.nrecs; i++) {
        const jrec_t *a = &r.recs[i];
        if (!a->left || a->late)
            continue;
        for (size_t j = 0; j < r.nrecs; j++) {
            const jrec_t *b = &r.recs[j];
            if (b->left || b->late || b->key != a->key)
                continue;
            if (b->ts < a->ts - BEFORE || b->ts > a->ts + AFTER)
                continue;
            char s[256];
            snprintf(s, sizeof s, "user-%d|L%d|R%d", a->key, a->id, b->id);
            for (int k = 0; k < 3; k++)
                strs_add(&want[k], s);
            lm[i] = rm[j] = true;
        }
    }
    for (size_t i = 0; i < r.nrecs; i++) {
        const jrec_t *a = &r.recs[i];
        if (a->late || (a->left ? lm[i] : rm[i]))
            continue;
        char clean[256];
        if (a->left)
            snprintf(clean, sizeof clean, "user-%d|L%d|-", a->key, a->id);
        else
            snprintf(clean, sizeof clean, "user-%d|-|R%d", a->key, a->id);
        if (a->left)
            strs_add(&want[1], clean);
        strs_add(&want[2], clean);
    }
    free(lm);
    free(rm);
    cr_assert_gt(want[0].n, 50, "the input makes pairs");
    cr_assert_gt(want[2].n, want[1].n, "and unmatched records on both sides");
    cr_assert_gt(want[1].n, want[0].n);
    for (int i = 0; i < 3; i++) {
        read_output(r.out[i], &got[i]);
        if (crash && strcmp(guarantee, "exactly_once"))
            check_superset(r.out[i], &got[i], &want[i], want[i].n / 2);
        else
            check_same(r.out[i], &got[i], &want[i]);
        strs_free(&got[i]);
        strs_free(&want[i]);
    }
    free(r.recs);
    mph_test_rmrf(r.dir);
}

Test(joins, windowed_memory_at_least_once)
{
    windowed_run("jwm", "memory", "at_least_once", false);
}

Test(joins, windowed_rocksdb_exactly_once)
{
    if (!mph_test_real_broker())
        cr_skip_test(
            "exactly_once needs a real broker (MEPHISTO_TEST_BROKERS)");
    windowed_run("jwe", "rocksdb", "exactly_once", false);
}

/* A crash (the child's joiner _exits mid-transaction) under exactly_once:
 * the read_committed output is still exactly the reference, no pair lost
 * or repeated. A suite of its own: the cluster is made after the fork. */
TestSuite(joins_crash, .timeout = 240);

Test(joins_crash, windowed_rocksdb_at_least_once_crash)
{
    if (!mph_test_real_broker())
        cr_skip_test("needs a real broker (the crash is a separate process)");
    windowed_run("jwa", "rocksdb", "at_least_once", true);
    cr_assert_null(replacement);
    cr_expect(crashed_in_joiner, "the child crashed in its joiner");
    mph_test_cluster_destroy(cluster);
    cluster = NULL;
}

Test(joins_crash, windowed_memory_exactly_once_crash)
{
    if (!mph_test_real_broker())
        cr_skip_test("needs a real broker (exactly_once; the crash is a "
                     "separate process)");
    windowed_run("jwc", "memory", "exactly_once", true);
    cr_assert_null(replacement);
    cr_expect(crashed_in_joiner,
              "the child crashed in its joiner, mid-transaction");
    mph_test_cluster_destroy(cluster);
    cluster = NULL;
}

/* ------------------------------------------------------------------ */
/* stream–table                                                       */

static mph_table_t *profiles;

static mph_err_t put_profile(mph_event_t *ev, void *opaque)
{
    (void)opaque;
    size_t kl, vl;
    const void *k = mph_event_key(ev, &kl), *v = mph_event_value(ev, &vl);
    if (vl == 1 && !memcmp(v, "-", 1))
        return mph_table_delete(ev, profiles, k, kl);
    return mph_table_set(ev, profiles, k, kl, v, vl);
}

Test(joins, stream_table)
{
    char app_id[128], dir[512], stream[160], tin[160], oi[160], ol[160],
        err[512];
    mph_test_unique("jst", app_id, sizeof app_id);
    cr_assert_not_null(mph_test_tmpdir("jst", dir, sizeof dir));
    snprintf(stream, sizeof stream, "%s-clicks", app_id);
    snprintf(tin, sizeof tin, "%s-profiles-in", app_id);
    snprintf(oi, sizeof oi, "%s-inner", app_id);
    snprintf(ol, sizeof ol, "%s-left", app_id);
    const char *topics[] = {stream, tin, oi, ol};
    for (int i = 0; i < 4; i++)
        mph_test_create_topic(cluster, topics[i], NPART);

    mph_app_t *app = mph_app_new(
        conf_new(app_id, dir, "memory", "at_least_once"), err, sizeof err);
    cr_assert_not_null(app, "%s", err);
    mph_topic_t *s = mph_topic_new(app, stream, NULL, err, sizeof err);
    mph_topic_t *t = mph_topic_new(app, tin, NULL, err, sizeof err);
    mph_table_opts_t *o = mph_table_opts_new();
    mph_table_opts_set(o, "default", "DEFAULT", NULL,
                       0); /* not a value for joins */
    profiles = mph_table_new(app, "profiles", o, err, sizeof err);
    mph_table_opts_destroy(o);
    cr_assert(s && t && profiles, "%s", err);
    cr_assert_not_null(
        mph_agent_new(app, "put", t, put_profile, NULL, err, sizeof err), "%s",
        err);
    mph_join_t *ji =
        mph_join_stream_table(app, "enrich-inner", s, profiles, MPH_JOIN_INNER,
                              mph_topic_new(app, oi, NULL, err, sizeof err),
                              joiner, NULL, err, sizeof err);
    mph_join_t *jl =
        mph_join_stream_table(app, "enrich-left", s, profiles, MPH_JOIN_LEFT,
                              mph_topic_new(app, ol, NULL, err, sizeof err),
                              joiner, NULL, err, sizeof err);
    cr_assert(ji && jl, "%s", err);
    cr_assert_null(mph_join_stream_table(app, "outer", s, profiles,
                                         MPH_JOIN_OUTER, mph_app_topic(app, oi),
                                         joiner, NULL, err, sizeof err),
                   "outer is for stream–stream joins only");
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);

    /* Phases: table v1 for even keys; clicks; table v2 for keys % 3 == 0
     * and deletes for keys % 4 == 2; clicks again. */
    enum { NK = 30, CLICKS = 3 };
    char *table[NK] = {0};
    strs_t want_i = {0}, want_l = {0}, got_i = {0}, got_l = {0};
    int64_t nt = 0, ns = 0, id = 0;
    for (int phase = 0; phase < 2; phase++) {
        for (int k = 0; k < NK; k++) {
            char kb[32], vb[32];
            kname(k, kb, sizeof kb);
            const char *v = NULL;
            if (phase == 0 && k % 2 == 0)
                snprintf(vb, sizeof vb, "P%d.1", k), v = vb;
            else if (phase == 1 && k % 3 == 0)
                snprintf(vb, sizeof vb, "P%d.2", k), v = vb;
            else if (phase == 1 && k % 4 == 2)
                v = "-";
            if (!v)
                continue;
            produce_ts(tin, kb, v, mph_clock_wall_ms());
            nt++;
            free(table[k]);
            table[k] = strcmp(v, "-") ? strdup(v) : NULL;
        }
        mph_test_flush(cluster);
        wait_committed(app_id, tin, nt);
        for (int c = 0; c < CLICKS; c++)
            for (int k = 0; k < NK; k++) {
                char kb[32], vb[32], s1[128];
                kname(k, kb, sizeof kb);
                snprintf(vb, sizeof vb, "C%lld", (long long)id++);
                produce_ts(stream, kb, vb, mph_clock_wall_ms());
                ns++;
                snprintf(s1, sizeof s1, "%s|%s|%s", kb, vb,
                         table[k] ? table[k] : "-");
                strs_add(&want_l, s1);
                if (table[k])
                    strs_add(&want_i, s1);
            }
        mph_test_flush(cluster);
        wait_committed(app_id, stream, ns);
    }
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    cr_expect_eq(mph_join_stat(jl, MPH_JOIN_STAT_UNMATCHED) +
                     mph_join_stat(jl, MPH_JOIN_STAT_PAIRS),
                 (int64_t)want_l.n);
    mph_app_destroy(app);
    read_output(oi, &got_i);
    read_output(ol, &got_l);
    check_same("stream-table inner", &got_i, &want_i);
    check_same("stream-table left", &got_l, &want_l);
    strs_free(&got_i);
    strs_free(&got_l);
    strs_free(&want_i);
    strs_free(&want_l);
    for (int k = 0; k < NK; k++)
        free(table[k]);
    mph_test_rmrf(dir);
}

/* ------------------------------------------------------------------ */
/* table–table                                                        */

static mph_table_t *ta, *tb;

/* Values "A=<v>", "B=<v>", "A-", "B-" write or delete table A or B. */
static mph_err_t ab_ops(mph_event_t *ev, void *opaque)
{
    (void)opaque;
    size_t kl, vl;
    const void *k = mph_event_key(ev, &kl);
    const char *v = mph_event_value(ev, &vl);
    mph_table_t *t = v[0] == 'A' ? ta : tb;
    if (v[1] == '-')
        return mph_table_delete(ev, t, k, kl);
    return mph_table_set(ev, t, k, kl, v + 2, vl - 2);
}

/* Per key, the outputs in order: "key|value;value;...". */
static void per_key(strs_t *recs, strs_t *out)
{
    /* recs arrive in partition order, which is per-key order */
    strs_t keys = {0};
    for (size_t i = 0; i < recs->n; i++) {
        char *bar = strchr(recs->v[i], '|');
        *bar = 0;
        size_t j = 0;
        while (j < keys.n && strcmp(keys.v[j], recs->v[i]))
            j++;
        char buf[4096];
        if (j == keys.n) {
            snprintf(buf, sizeof buf, "%s|%s", recs->v[i], bar + 1);
            strs_add(&keys, recs->v[i]);
            strs_add(out, buf);
        } else {
            snprintf(buf, sizeof buf, "%s;%s", out->v[j], bar + 1);
            free(out->v[j]);
            out->v[j] = strdup(buf);
        }
    }
    strs_free(&keys);
}

static void ref_emit(strs_t *out, const char *k, const char *v)
{
    for (size_t j = 0; j < out->n; j++) {
        size_t kl = strlen(k);
        if (!strncmp(out->v[j], k, kl) && out->v[j][kl] == '|') {
            char buf[4096];
            snprintf(buf, sizeof buf, "%s;%s", out->v[j], v);
            free(out->v[j]);
            out->v[j] = strdup(buf);
            return;
        }
    }
    char buf[4096];
    snprintf(buf, sizeof buf, "%s|%s", k, v);
    strs_add(out, buf);
}

Test(joins, table_table)
{
    char app_id[128], dir[512], ops[160], oi[160], ol[160], err[512];
    mph_test_unique("jtt", app_id, sizeof app_id);
    cr_assert_not_null(mph_test_tmpdir("jtt", dir, sizeof dir));
    snprintf(ops, sizeof ops, "%s-ops", app_id);
    snprintf(oi, sizeof oi, "%s-inner", app_id);
    snprintf(ol, sizeof ol, "%s-left", app_id);
    mph_test_create_topic(cluster, ops, NPART);
    mph_test_create_topic(cluster, oi, NPART);
    mph_test_create_topic(cluster, ol, NPART);

    mph_app_t *app = mph_app_new(
        conf_new(app_id, dir, "rocksdb", "at_least_once"), err, sizeof err);
    cr_assert_not_null(app, "%s", err);
    mph_topic_t *t = mph_topic_new(app, ops, NULL, err, sizeof err);
    ta = mph_table_new(app, "a", NULL, err, sizeof err);
    tb = mph_table_new(app, "b", NULL, err, sizeof err);
    cr_assert(t && ta && tb, "%s", err);
    cr_assert_not_null(
        mph_agent_new(app, "ops", t, ab_ops, NULL, err, sizeof err), "%s", err);
    cr_assert_not_null(
        mph_join_tables(app, "ab-inner", ta, tb, MPH_JOIN_INNER,
                        mph_topic_new(app, oi, NULL, err, sizeof err), joiner,
                        NULL, err, sizeof err),
        "%s", err);
    cr_assert_not_null(
        mph_join_tables(app, "ab-left", ta, tb, MPH_JOIN_LEFT,
                        mph_topic_new(app, ol, NULL, err, sizeof err), joiner,
                        NULL, err, sizeof err),
        "%s", err);
    cr_assert_null(mph_join_tables(app, "aa", ta, ta, MPH_JOIN_INNER,
                                   mph_app_topic(app, oi), joiner, NULL, err,
                                   sizeof err));
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);

    enum { NK = 16, NOPS = 600 };
    char *a[NK] = {0}, *b[NK] = {0};
    strs_t want_i = {0}, want_l = {0};
    uint64_t seed = 7;
    for (int i = 0; i < NOPS; i++) {
        int k = (int)(mph_test_rand(&seed) % NK);
        bool is_a = mph_test_rand(&seed) % 2;
        bool del = mph_test_rand(&seed) % 4 == 0;
        char kb[32], vb[48], val[32];
        kname(k, kb, sizeof kb);
        snprintf(val, sizeof val, "%c%d", is_a ? 'a' : 'b', i);
        snprintf(vb, sizeof vb, "%c%s%s", is_a ? 'A' : 'B', del ? "-" : "=",
                 del ? "" : val);
        produce_ts(ops, kb, vb, mph_clock_wall_ms());
        char **side = is_a ? &a[k] : &b[k];
        bool existed = *side != NULL;
        if (del && !existed)
            continue; /* deleting an absent key changes nothing */
        free(*side);
        *side = del ? NULL : strdup(val);
        char out[128];
        snprintf(out, sizeof out, "%s|%s", a[k] ? a[k] : "-",
                 b[k] ? b[k] : "-");
        /* inner */
        if (a[k] && b[k])
            ref_emit(&want_i, kb, out);
        else if (del && (is_a ? b[k] : a[k]))
            ref_emit(&want_i, kb, "<null>");
        /* left */
        if (is_a)
            ref_emit(&want_l, kb, del ? "<null>" : out);
        else if (a[k])
            ref_emit(&want_l, kb, out);
    }
    mph_test_flush(cluster);
    wait_committed(app_id, ops, NOPS);
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);

    strs_t ri = {0}, rl = {0}, gi = {0}, gl = {0};
    read_output(oi, &ri);
    read_output(ol, &rl);
    /* Output is keyed by the join key, so per key it is in order: compare
     * each key's sequence. */
    per_key(&ri, &gi);
    per_key(&rl, &gl);
    check_same("table-table inner", &gi, &want_i);
    check_same("table-table left", &gl, &want_l);
    strs_free(&ri);
    strs_free(&rl);
    strs_free(&gi);
    strs_free(&gl);
    strs_free(&want_i);
    strs_free(&want_l);
    for (int k = 0; k < NK; k++) {
        free(a[k]);
        free(b[k]);
    }
    mph_test_rmrf(dir);
}

/* ------------------------------------------------------------------ */
/* co-partitioning                                                    */

Test(joins, copartition_mismatch_refused)
{
    char app_id[128], dir[512], l[160], r[160], o[160], err[512];
    mph_test_unique("jcp", app_id, sizeof app_id);
    cr_assert_not_null(mph_test_tmpdir("jcp", dir, sizeof dir));
    snprintf(l, sizeof l, "%s-left", app_id);
    snprintf(r, sizeof r, "%s-right", app_id);
    snprintf(o, sizeof o, "%s-out", app_id);
    mph_test_create_topic(cluster, l, NPART);
    mph_test_create_topic(cluster, r, 2);
    mph_test_create_topic(cluster, o, NPART);

    /* stream–stream: 4 vs 2 partitions */
    mph_app_t *app = mph_app_new(
        conf_new(app_id, dir, "memory", "at_least_once"), err, sizeof err);
    cr_assert_not_null(app, "%s", err);
    mph_topic_t *lt = mph_topic_new(app, l, NULL, err, sizeof err);
    mph_topic_t *rt = mph_topic_new(app, r, NULL, err, sizeof err);
    mph_topic_t *ot = mph_topic_new(app, o, NULL, err, sizeof err);
    cr_assert_not_null(mph_join_windowed(app, "ss", lt, rt, MPH_JOIN_INNER, 10,
                                         10, 0, ot, joiner, NULL, err,
                                         sizeof err),
                       "%s", err);
    err[0] = 0;
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_ERR_INVALID, "%s",
                 err);
    cr_expect(strstr(err, l) && strstr(err, r) && strstr(err, "co-partitioned"),
              "%s", err);
    mph_app_destroy(app);

    /* stream–table: the table has 8 shards, the stream 4 partitions */
    app = mph_app_new(conf_new(app_id, dir, "memory", "at_least_once"), err,
                      sizeof err);
    cr_assert_not_null(app, "%s", err);
    lt = mph_topic_new(app, l, NULL, err, sizeof err);
    ot = mph_topic_new(app, o, NULL, err, sizeof err);
    mph_table_opts_t *to = mph_table_opts_new();
    mph_table_opts_set(to, "partitions", "8", NULL, 0);
    mph_table_t *t = mph_table_new(app, "t8", to, err, sizeof err);
    mph_table_opts_destroy(to);
    cr_assert_not_null(mph_join_stream_table(app, "st", lt, t, MPH_JOIN_LEFT,
                                             ot, joiner, NULL, err, sizeof err),
                       "%s", err);
    err[0] = 0;
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_ERR_INVALID, "%s",
                 err);
    cr_expect(strstr(err, l) && strstr(err, mph_table_changelog(t)), "%s", err);
    mph_app_destroy(app);

    /* a partitioner that is not murmur2 */
    mph_conf_t *conf = conf_new(app_id, dir, "memory", "at_least_once");
    cr_assert_eq(mph_conf_set(conf, "kafka.partitioner", "consistent_random",
                              err, sizeof err),
                 MPH_OK, "%s", err);
    app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(app, "%s", err);
    lt = mph_topic_new(app, l, NULL, err, sizeof err);
    ot = mph_topic_new(app, o, NULL, err, sizeof err);
    t = mph_table_new(app, "t4", NULL, err, sizeof err);
    cr_assert_not_null(mph_join_stream_table(app, "st", lt, t, MPH_JOIN_LEFT,
                                             ot, joiner, NULL, err, sizeof err),
                       "%s", err);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_ERR_INVALID, "%s",
                 err);
    cr_expect(strstr(err, "kafka.partitioner"), "%s", err);
    mph_app_destroy(app);
    mph_test_rmrf(dir);
}
