/*
 * Windowed tables end to end, against a reference computed here from the
 * raw input: tumbling, hopping (overlaps) and sliding windows with
 * out-of-order events within grace, late events, deletes and sets; on_close
 * exactly once per window and key across graceful restarts (RocksDB and
 * memory); expiry that keeps shards bounded, also after recovery, checked
 * in the shard index, in RocksDB and in the changelog; records a worker
 * still has queued when another partition's restored shard is handed to
 * it; time from JSON and record fields, the wall clock, and bad times; and
 * (real broker only) a crash under at_least_once, where closes repeat a
 * bounded number of times.
 */
// ctest-labels: engine;tables
// ctest-timeout: 600
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ck_pr.h>

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

TestSuite(windows, .init = setup, .fini = teardown, .timeout = 240);

/* ------------------------------------------------------------------ */
/* input and the reference                                            */

enum { OP_INCR = 0, OP_DEL, OP_SET };

typedef struct evrec {
    int key;
    int64_t t;
    int op;
    int64_t setv;
} evrec_t;

typedef struct scn {
    int kind; /* 0 tumbling, 1 hopping, 2 sliding */
    int64_t a, b, expires, grace;
    int nkeys, nevents;
    int64_t gap, jitter, late_by;
    int late_pct, del_permille, set_permille;
    int jump_at; /* from this event on, times jump forward by jump_by */
    int64_t jump_by;
} scn_t;

static int64_t win_size(const scn_t *s)
{
    return s->kind == 2 ? s->a + s->b + 1 : s->a;
}

/* Windows containing t, by their definition (independent of the library). */
static size_t ref_starts(const scn_t *s, int64_t t, int64_t *out)
{
    if (s->kind == 2) {
        out[0] = t - s->a;
        return 1;
    }
    int64_t step = s->kind == 0 ? s->a : s->b, size = s->a;
    int64_t k = t / step + 1; /* t >= 0 here */
    size_t n = 0;
    for (int64_t st = k * step; st > t - size; st -= step)
        if (st <= t)
            out[n++] = st;
    for (size_t i = 0; i < n / 2; i++) { /* ascending */
        int64_t x = out[i];
        out[i] = out[n - 1 - i];
        out[n - 1 - i] = x;
    }
    return n;
}

static void key_name(int k, char *buf, size_t size)
{
    snprintf(buf, size, "user-%d", k);
}

static int part_of_key(int k)
{
    char kb[32];
    key_name(k, kb, sizeof kb);
    return mph__kafka_partition_for(kb, strlen(kb), NPART);
}

typedef struct pair {
    int key;
    int64_t start;
    int64_t val;
    bool present;
} pair_t;

typedef struct ref {
    pair_t *pairs;
    size_t n;
    int64_t st[NPART];
    bool have_st[NPART];
    int64_t late_events, late_writes;
} ref_t;

static int pair_cmp(const void *a, const void *b)
{
    const pair_t *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->start > y->start) - (x->start < y->start);
}

static pair_t *ref_pair(ref_t *r, int key, int64_t start)
{
    pair_t k = {key, start, 0, false};
    return bsearch(&k, r->pairs, r->n, sizeof k, pair_cmp);
}

static evrec_t *gen_events(const scn_t *s, int64_t base, uint64_t seed)
{
    evrec_t *ev = calloc((size_t)s->nevents, sizeof *ev);
    uint64_t st = seed;
    for (int i = 0; i < s->nevents; i++) {
        int64_t nominal =
            base + i * s->gap + (i >= s->jump_at ? s->jump_by : 0);
        ev[i].key = (int)(mph_test_rand(&st) % (uint64_t)s->nkeys);
        ev[i].t =
            nominal - (int64_t)(mph_test_rand(&st) % (uint64_t)(s->jitter + 1));
        if ((int)(mph_test_rand(&st) % 100) < s->late_pct)
            ev[i].t = nominal - s->late_by;
        int r = (int)(mph_test_rand(&st) % 1000);
        ev[i].op = r < s->del_permille                     ? OP_DEL
                   : r < s->del_permille + s->set_permille ? OP_SET
                                                           : OP_INCR;
        ev[i].setv = (int64_t)(mph_test_rand(&st) % 100) + 1000;
    }
    return ev;
}

/* Folds events[0..n) as the windows must: per partition in order. */
static void ref_build(ref_t *r, const scn_t *s, const evrec_t *ev, int n)
{
    memset(r, 0, sizeof *r);
    size_t cap = 0;
    int64_t starts[64];
    for (int i = 0; i < n; i++)
        cap += ref_starts(s, ev[i].t, starts);
    r->pairs = calloc(cap ? cap : 1, sizeof *r->pairs);
    for (int i = 0; i < n; i++) {
        size_t m = ref_starts(s, ev[i].t, starts);
        for (size_t j = 0; j < m; j++)
            r->pairs[r->n++] = (pair_t){ev[i].key, starts[j], 0, false};
    }
    qsort(r->pairs, r->n, sizeof *r->pairs, pair_cmp);
    size_t u = 0;
    for (size_t i = 0; i < r->n; i++)
        if (!u || pair_cmp(&r->pairs[u - 1], &r->pairs[i]))
            r->pairs[u++] = r->pairs[i];
    r->n = u;
    int64_t size = win_size(s);
    for (int i = 0; i < n; i++) {
        int p = part_of_key(ev[i].key);
        if (!r->have_st[p] || ev[i].t > r->st[p]) {
            r->st[p] = ev[i].t;
            r->have_st[p] = true;
        }
        size_t m = ref_starts(s, ev[i].t, starts);
        size_t late = 0;
        for (size_t j = 0; j < m; j++) {
            if (starts[j] + size + s->grace <= r->st[p]) {
                late++;
                continue;
            }
            pair_t *pp = ref_pair(r, ev[i].key, starts[j]);
            switch (ev[i].op) {
            case OP_INCR:
                pp->val = (pp->present ? pp->val : 0) + 1;
                pp->present = true;
                break;
            case OP_DEL:
                pp->present = false;
                pp->val = 0;
                break;
            default:
                pp->val = ev[i].setv;
                pp->present = true;
            }
        }
        r->late_writes += (int64_t)late;
        r->late_events += late == m;
    }
}

static bool ref_closed(const ref_t *r, const scn_t *s, const pair_t *pp)
{
    int p = part_of_key(pp->key);
    return pp->present && pp->start + win_size(s) + s->grace <= r->st[p];
}

static bool ref_live(const ref_t *r, const scn_t *s, const pair_t *pp)
{
    int p = part_of_key(pp->key);
    int64_t keep = s->expires > s->grace ? s->expires : s->grace;
    return pp->present && pp->start + win_size(s) + keep > r->st[p];
}

/* ------------------------------------------------------------------ */
/* what the app saw: closes and probe dumps (written by workers)      */

typedef struct seen {
    int key;
    int64_t start, end, val;
    bool closed;
} seen_t;

static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static seen_t *closes;
static size_t ncloses, closes_cap;
static seen_t *dump;
static size_t ndump, dump_cap;
static int64_t dump_st[NPART];
static int dump_keys[NPART];
static int probes_done;
static int events_seen; /* ck_pr: input records (not probes) on_event got */
/* Keys whose window count in the key index differs from the windows
 * mph_window_foreach_window visits for them (probes since seen_reset). */
static int index_count_wrong;
/* per key: CURRENT and DELTA(size) values read by the probe */
static int64_t cur_val[256], prev_val[256];

static void seen_push(seen_t **arr, size_t *n, size_t *cap, seen_t s)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 1024;
        *arr = realloc(*arr, *cap * sizeof **arr);
    }
    (*arr)[(*n)++] = s;
}

static void seen_reset(void)
{
    pthread_mutex_lock(&seen_lock);
    ncloses = ndump = 0;
    probes_done = 0;
    index_count_wrong = 0;
    memset(dump_keys, 0, sizeof dump_keys);
    pthread_mutex_unlock(&seen_lock);
}

static int64_t be64(const void *v)
{
    const unsigned char *b = v;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u = (u << 8) | b[i];
    return (int64_t)u;
}

static int key_index(const void *k, size_t kl)
{
    char buf[64];
    if (kl >= sizeof buf)
        return -1;
    memcpy(buf, k, kl);
    buf[kl] = '\0';
    int idx = -1;
    return sscanf(buf, "user-%d", &idx) == 1 ? idx : -1;
}

typedef struct appctx {
    mph_window_t *w;
    mph_topic_t *out;
    int crash_after; /* 0: never */
    int slow_us;     /* sleep per event (the crash test's child) */
    int closes;
} appctx_t;

static mph_err_t on_close(mph_event_t *ev, const void *key, size_t kl,
                          int64_t start, int64_t end, const void *v, size_t vl,
                          void *opaque)
{
    appctx_t *c = opaque;
    seen_t s = {key_index(key, kl), start, end, vl == 8 ? be64(v) : -1, true};
    pthread_mutex_lock(&seen_lock);
    seen_push(&closes, &ncloses, &closes_cap, s);
    pthread_mutex_unlock(&seen_lock);
    if (c->out) {
        char buf[96];
        int n = snprintf(buf, sizeof buf, "%lld:%lld", (long long)start,
                         (long long)s.val);
        mph_err_t err = mph_event_send(ev, c->out, MPH_PARTITION_ANY, key, kl,
                                       buf, (size_t)n, NULL, 0);
        if (err)
            return err;
    }
    if (c->crash_after && ++c->closes >= c->crash_after)
        _exit(77); /* a crash: no flush, no commit */
    return MPH_OK;
}

struct keylist {
    char keys[256][32];
    size_t lens[256];
    size_t windows[256]; /* what the key index says holds each key */
    int n;
};

static mph_err_t collect_key(const void *k, size_t kl, size_t windows,
                             void *opaque)
{
    struct keylist *l = opaque;
    if (l->n < 256 && kl < 32) {
        memcpy(l->keys[l->n], k, kl);
        l->windows[l->n] = windows;
        l->lens[l->n++] = kl;
    }
    return MPH_OK;
}

struct visit_ctx {
    int key;
    size_t n; /* windows visited */
};


static mph_err_t collect_window(int64_t start, int64_t end, bool closed,
                                const void *v, size_t vl, void *opaque)
{
    struct visit_ctx *c = opaque;
    seen_t s = {c->key, start, end, vl == 8 ? be64(v) : -1, closed};
    c->n++;
    seen_push(&dump, &ndump, &dump_cap, s);
    return MPH_OK;
}

/* Dumps the shard through the key index and per-key window iteration. */
static mph_err_t probe(mph_event_t *ev, appctx_t *c)
{
    int p = mph_event_partition(ev);
    struct keylist *l = calloc(1, sizeof *l);
    mph_err_t err = mph_window_foreach_key(ev, c->w, collect_key, l);
    pthread_mutex_lock(&seen_lock);
    dump_keys[p] = l->n;
    if (mph_window_stream_time(ev, c->w, &dump_st[p]) != MPH_OK)
        dump_st[p] = -1;
    for (int i = 0; !err && i < l->n; i++) {
        struct visit_ctx vc = {key_index(l->keys[i], l->lens[i]), 0};
        err = mph_window_foreach_window(ev, c->w, l->keys[i], l->lens[i],
                                        collect_window, &vc);
        if (vc.n != l->windows[i])
            index_count_wrong++;
        if (vc.key >= 0 && vc.key < 256) {
            mph_window_get_i64(ev, c->w, l->keys[i], l->lens[i],
                               MPH_WINDOW_CURRENT, 0, &cur_val[vc.key]);
            int64_t size = 0, s0, e0;
            mph_window_current(c->w, 0, &s0, &e0);
            size = e0 - s0;
            mph_window_get_i64(ev, c->w, l->keys[i], l->lens[i],
                               MPH_WINDOW_DELTA, size, &prev_val[vc.key]);
        }
    }
    probes_done++;
    pthread_mutex_unlock(&seen_lock);
    free(l);
    return err;
}

static mph_err_t on_event(mph_event_t *ev, void *opaque)
{
    appctx_t *c = opaque;
    size_t kl, vl;
    const char *k = mph_event_key(ev, &kl);
    const char *v = mph_event_value(ev, &vl);
    if (vl == 5 && !memcmp(v, "probe", 5))
        return probe(ev, c);
    ck_pr_inc_int(&events_seen);
    if (c->slow_us)
        usleep((useconds_t)c->slow_us);
    if (vl == 3 && !memcmp(v, "del", 3))
        return mph_window_delete(ev, c->w, k, kl);
    if (vl > 4 && !memcmp(v, "set:", 4)) {
        unsigned char b[8];
        uint64_t u = (uint64_t)strtoll(v + 4, NULL, 10);
        for (int i = 7; i >= 0; i--, u >>= 8)
            b[i] = (unsigned char)u;
        return mph_window_set(ev, c->w, k, kl, b, 8);
    }
    return mph_window_incr(ev, c->w, k, kl, 1);
}

/* ------------------------------------------------------------------ */
/* running the app                                                    */

typedef struct run {
    char app_id[96], input[128], output[128], changelog[256], dir[256];
    const scn_t *s;
    evrec_t *ev;
    int64_t base;
    const char *store;
    const char *guarantee;
    int64_t produced; /* input records so far (events and probes) */
} run_t;

static void produce_ts(const char *topic, int32_t part, const void *k,
                       size_t kl, const void *v, size_t vl, int64_t ts)
{
    rd_kafka_resp_err_t e;
    while ((e = rd_kafka_producev(
                cluster->producer, RD_KAFKA_V_TOPIC(topic),
                RD_KAFKA_V_PARTITION(part), RD_KAFKA_V_KEY(k, kl),
                RD_KAFKA_V_VALUE((void *)v, vl), RD_KAFKA_V_TIMESTAMP(ts),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(cluster->producer, 10);
    cr_assert_eq(e, 0, "produce: %s", rd_kafka_err2str(e));
    rd_kafka_poll(cluster->producer, 0);
}

static void produce_events(run_t *r, int from, int to)
{
    for (int i = from; i < to; i++) {
        char kb[32], vb[32];
        key_name(r->ev[i].key, kb, sizeof kb);
        const char *v = "+1";
        if (r->ev[i].op == OP_DEL)
            v = "del";
        else if (r->ev[i].op == OP_SET) {
            snprintf(vb, sizeof vb, "set:%lld", (long long)r->ev[i].setv);
            v = vb;
        }
        produce_ts(r->input, part_of_key(r->ev[i].key), kb, strlen(kb), v,
                   strlen(v), r->ev[i].t);
    }
    mph_test_flush(cluster);
    r->produced += to - from;
}

/* Names, directory and input; no broker calls (safe before a fork). */
static void run_names(run_t *r, const char *tag, const scn_t *s,
                      const char *store)
{
    memset(r, 0, sizeof *r);
    mph_test_unique(tag, r->app_id, sizeof r->app_id);
    snprintf(r->input, sizeof r->input, "%s-in", r->app_id);
    snprintf(r->output, sizeof r->output, "%s-closed", r->app_id);
    snprintf(r->changelog, sizeof r->changelog, "%s-counts-changelog",
             r->app_id);
    cr_assert_not_null(mph_test_tmpdir(tag, r->dir, sizeof r->dir));
    r->s = s;
    r->store = store;
    r->guarantee = "at_least_once";
    /* An hour or two ago, on an hour: far from max_future, every time
     * positive, and the same window alignment in every run. */
    r->base = (mph_clock_wall_ms() / 3600000 - 1) * 3600000; /* aligned */
    r->ev = gen_events(s, r->base, 1234);
}

static void run_init(run_t *r, const char *tag, const scn_t *s,
                     const char *store)
{
    run_names(r, tag, s, store);
    mph_test_create_topic(cluster, r->input, NPART);
    mph_test_create_topic(cluster, r->output, NPART);
    mph_test_create_topic(cluster, r->changelog, NPART);
}

static void run_fini(run_t *r)
{
    mph_test_rmrf(r->dir);
    free(r->ev);
}

/* Builds the counting app; NULL with err on failure (no Criterion calls:
 * it also runs in the crash test's child process). */
static mph_app_t *app_build(run_t *r, appctx_t *ctx, bool send_closes,
                            char *err, size_t errlen)
{
    const char *kv[] = {"broker",
                        cluster ? cluster->broker : mph_test_broker(),
                        "app_id",
                        r->app_id,
                        "workers",
                        "2",
                        "store",
                        r->store,
                        "datadir",
                        r->dir,
                        "commit_interval_ms",
                        "200",
                        "log_level",
                        "warn",
                        "topic_partitions",
                        "4",
                        "processing_guarantee",
                        r->guarantee,
                        NULL};
    mph_conf_t *conf = mph_conf_new();
    for (const char **p = kv; *p; p += 2)
        if (mph_conf_set(conf, p[0], p[1], err, errlen) != MPH_OK) {
            mph_conf_destroy(conf);
            return NULL;
        }
    mph_app_t *app = mph_app_new(conf, err, errlen);
    if (!app)
        return NULL;
    mph_topic_t *in = mph_topic_new(app, r->input, NULL, err, errlen);
    ctx->out = NULL;
    if (in && send_closes)
        ctx->out = mph_topic_new(app, r->output, NULL, err, errlen);
    mph_table_opts_t *o = mph_table_opts_new();
    mph_table_opts_set(o, "value_codec", "i64", NULL, 0);
    mph_table_opts_set(o, "default", "0", NULL, 0);
    mph_table_t *t = in && (ctx->out || !send_closes)
                         ? mph_table_new(app, "counts", o, err, errlen)
                         : NULL;
    mph_table_opts_destroy(o);
    const scn_t *s = r->s;
    ctx->w = NULL;
    if (t && s->kind == 0)
        ctx->w = mph_table_tumbling(t, s->a, s->expires, err, errlen);
    else if (t && s->kind == 1)
        ctx->w = mph_table_hopping(t, s->a, s->b, s->expires, err, errlen);
    else if (t)
        ctx->w = mph_table_sliding(t, s->a, s->b, s->expires, err, errlen);
    if (!ctx->w || mph_window_grace(ctx->w, s->grace) != MPH_OK ||
        mph_window_on_close(ctx->w, on_close, ctx) != MPH_OK ||
        !mph_agent_new(app, "count", in, on_event, ctx, err, errlen)) {
        mph_app_destroy(app);
        return NULL;
    }
    return app;
}

static mph_app_t *app_new(run_t *r, appctx_t *ctx, bool send_closes)
{
    char err[512] = "";
    mph_app_t *app = app_build(r, ctx, send_closes, err, sizeof err);
    cr_assert_not_null(app, "%s", err);
    mph_table_t *t = mph_window_table(ctx->w);
    cr_assert_eq(mph_table_window(t), ctx->w);
    cr_assert_null(mph_table_tumbling(t, 10, 0, err, sizeof err),
                   "one window per table");
    cr_expect(strstr(err, "already windowed"), "%s", err);
    return app;
}

static void start(mph_app_t *app)
{
    char err[512];
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
}

static void wait_committed(run_t *r)
{
    int64_t got = -1;
    for (int i = 0; i < 900; i++) {
        got = mph_test_committed_sum(cluster, r->app_id, r->input, NPART);
        if (got >= r->produced)
            break;
        usleep(200000);
    }
    cr_assert_eq(got, r->produced, "all input committed");
}

/* One probe per partition, at that partition's stream time (no advance). */
static void probe_all(run_t *r, const ref_t *ref)
{
    pthread_mutex_lock(&seen_lock);
    ndump = 0;
    probes_done = 0;
    pthread_mutex_unlock(&seen_lock);
    for (int p = 0; p < NPART; p++)
        produce_ts(r->input, p, "probe", 5, "probe", 5,
                   ref->have_st[p] ? ref->st[p] : r->base);
    mph_test_flush(cluster);
    r->produced += NPART;
    for (int i = 0; i < 600; i++) {
        pthread_mutex_lock(&seen_lock);
        int done = probes_done;
        pthread_mutex_unlock(&seen_lock);
        if (done >= NPART)
            return;
        usleep(50000);
    }
    cr_assert_fail("probes not processed");
}

/* Each expected close exactly once with the reference value; nothing else. */
static void check_closes(const ref_t *ref, const scn_t *s,
                         int64_t *expected_out)
{
    int64_t expected = 0, missing = 0, wrong = 0;
    pthread_mutex_lock(&seen_lock);
    seen_t *c = malloc((ncloses ? ncloses : 1) * sizeof *c);
    memcpy(c, closes, ncloses * sizeof *c);
    size_t n = ncloses;
    pthread_mutex_unlock(&seen_lock);
    int *hits = calloc(ref->n ? ref->n : 1, sizeof *hits);
    size_t strays = 0;
    for (size_t i = 0; i < n; i++) {
        pair_t *pp = ref_pair((ref_t *)ref, c[i].key, c[i].start);
        if (!pp || !ref_closed(ref, s, pp)) {
            if (strays++ < 5)
                cr_log_error("unexpected close: key %d window %lld value %lld",
                             c[i].key, (long long)c[i].start,
                             (long long)c[i].val);
            continue;
        }
        hits[pp - ref->pairs]++;
        cr_expect_eq(c[i].end - c[i].start, win_size(s));
        if (c[i].val != pp->val && wrong++ < 5)
            cr_log_error("key %d window %lld: closed with %lld, reference %lld",
                         c[i].key, (long long)c[i].start, (long long)c[i].val,
                         (long long)pp->val);
    }
    int64_t dups = 0;
    for (size_t i = 0; i < ref->n; i++) {
        if (!ref_closed(ref, s, &ref->pairs[i]))
            continue;
        expected++;
        if (!hits[i] && missing++ < 5)
            cr_log_error("key %d window %lld never closed (value %lld)",
                         ref->pairs[i].key, (long long)ref->pairs[i].start,
                         (long long)ref->pairs[i].val);
        if (hits[i] > 1)
            dups += hits[i] - 1;
    }
    cr_expect_gt(expected, 0, "the scenario closes windows");
    cr_expect_eq(missing, 0, "every window closed (%lld expected)",
                 (long long)expected);
    cr_expect_eq(dups, 0, "no window closed twice");
    cr_expect_eq(wrong, 0, "close values equal the reference");
    cr_expect_eq(strays, 0, "no unexpected closes");
    if (expected_out)
        *expected_out = expected;
    free(hits);
    free(c);
}

/* The probe dump equals the live reference pairs; reads of CURRENT and
 * DELTA(size) agree with the reference. */
static void check_dump(const ref_t *ref, const scn_t *s, int64_t *live_out)
{
    pthread_mutex_lock(&seen_lock);
    int64_t live = 0, wrong = 0, extra = 0;
    int *hits = calloc(ref->n ? ref->n : 1, sizeof *hits);
    for (size_t i = 0; i < ndump; i++) {
        pair_t *pp = ref_pair((ref_t *)ref, dump[i].key, dump[i].start);
        if (!pp || !ref_live(ref, s, pp)) {
            if (extra++ < 5)
                cr_log_error("dump has key %d window %lld (%lld), not live in "
                             "the reference",
                             dump[i].key, (long long)dump[i].start,
                             (long long)dump[i].val);
            continue;
        }
        hits[pp - ref->pairs]++;
        if (dump[i].val != pp->val || dump[i].closed != ref_closed(ref, s, pp))
            wrong++;
    }
    bool keyseen[256] = {false};
    for (size_t i = 0; i < ref->n; i++) {
        if (!ref_live(ref, s, &ref->pairs[i]))
            continue;
        live++;
        keyseen[ref->pairs[i].key] = true;
        cr_expect_eq(hits[i], 1, "key %d window %lld dumped once",
                     ref->pairs[i].key, (long long)ref->pairs[i].start);
    }
    int nkeys = 0, dkeys = 0;
    for (int k = 0; k < 256; k++)
        nkeys += keyseen[k];
    for (int p = 0; p < NPART; p++) {
        dkeys += dump_keys[p];
        if (ref->have_st[p])
            cr_expect_eq(dump_st[p], ref->st[p], "stream time of partition %d",
                         p);
    }
    cr_expect_eq(dkeys, nkeys,
                 "key index holds each key with a live window once");
    cr_expect_eq(index_count_wrong, 0,
                 "the key index counts the windows that hold each key");
    cr_expect_eq(extra, 0, "nothing expired is left");
    cr_expect_eq(wrong, 0, "live values and closed flags equal the reference");
    /* CURRENT / DELTA reads at each partition's stream time */
    int64_t size = win_size(s);
    int bad_reads = 0;
    for (int k = 0; k < s->nkeys && k < 256; k++) {
        if (!keyseen[k])
            continue;
        int p = part_of_key(k);
        int64_t t = ref->st[p];
        int64_t cs = s->kind == 2 ? t - s->a
                                  : (t / (s->kind == 0 ? s->a : s->b)) *
                                        (s->kind == 0 ? s->a : s->b);
        int64_t ps = s->kind == 2
                         ? t - size - s->a
                         : ((t - size) / (s->kind == 0 ? s->a : s->b)) *
                               (s->kind == 0 ? s->a : s->b);
        pair_t *c = ref_pair((ref_t *)ref, k, cs),
               *pv = ref_pair((ref_t *)ref, k, ps);
        int64_t want_c = c && ref_live(ref, s, c) ? c->val : 0;
        int64_t want_p = pv && ref_live(ref, s, pv) ? pv->val : 0;
        if (cur_val[k] != want_c || prev_val[k] != want_p) {
            if (bad_reads++ < 3)
                cr_log_error(
                    "key %d: current %lld (want %lld), delta %lld (want %lld)",
                    k, (long long)cur_val[k], (long long)want_c,
                    (long long)prev_val[k], (long long)want_p);
        }
    }
    cr_expect_eq(bad_reads, 0, "CURRENT and DELTA reads equal the reference");
    pthread_mutex_unlock(&seen_lock);
    free(hits);
    if (live_out)
        *live_out = live;
}

static mph_err_t count_local(const void *k, size_t kl, const void *v, size_t vl,
                             void *opaque)
{
    (void)k;
    (void)kl;
    (void)v;
    (void)vl;
    (*(int64_t *)opaque)++;
    return MPH_OK;
}

/* Keys in the RocksDB shards on disk (the app is stopped). */
static int64_t rocksdb_keys(run_t *r)
{
    char err[512];
    mph_conf_t *conf = mph_conf_new();
    mph_conf_set(conf, "datadir", r->dir, err, sizeof err);
    mph_conf_set(conf, "app_id", r->app_id, err, sizeof err);
    int64_t n = 0;
    mph_err_t rc = mph_table_local_foreach(conf, "counts", count_local, &n,
                                           NULL, err, sizeof err);
    cr_assert_eq(rc, MPH_OK, "%s", err);
    mph_conf_destroy(conf);
    return n;
}

/* ---- the changelog, folded: latest record per key wins ---- */

typedef struct clrec {
    int32_t part;
    char key[48];
    size_t klen;
    uint64_t seq;
    bool tomb;
} clrec_t;

struct clfold {
    clrec_t *r;
    size_t n, cap;
};

static void cl_visit(const rd_kafka_message_t *m, void *opaque)
{
    struct clfold *f = opaque;
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 4096;
        f->r = realloc(f->r, f->cap * sizeof *f->r);
    }
    clrec_t *c = &f->r[f->n];
    c->part = m->partition;
    c->klen = m->key_len < sizeof c->key ? m->key_len : sizeof c->key;
    memcpy(c->key, m->key, c->klen);
    c->seq = f->n;
    c->tomb = m->payload == NULL;
    f->n++;
}

static int cl_cmp(const void *a, const void *b)
{
    const clrec_t *x = a, *y = b;
    if (x->part != y->part)
        return x->part < y->part ? -1 : 1;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->key, y->key, n);
    if (c)
        return c;
    if (x->klen != y->klen)
        return x->klen < y->klen ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

/* Live keys of the changelog (each key lives in one partition, read in order).
 * *orphans (if not NULL): tombstones of keys with no earlier value in the
 * changelog, which a commit has no reason to write. */
static int64_t changelog_live(run_t *r, int64_t *orphans)
{
    struct clfold f = {0};
    mph_test_consume_all(cluster, r->changelog, -1, 3000, 60000, cl_visit, &f);
    qsort(f.r, f.n, sizeof *f.r, cl_cmp);
    int64_t live = 0;
    if (orphans)
        *orphans = 0;
    for (size_t i = 0; i < f.n; i++) {
        bool first = i == 0 || f.r[i].part != f.r[i - 1].part ||
                     f.r[i].klen != f.r[i - 1].klen ||
                     memcmp(f.r[i].key, f.r[i - 1].key, f.r[i].klen);
        if (first && f.r[i].tomb && orphans)
            (*orphans)++;
        bool last = i + 1 == f.n || f.r[i].part != f.r[i + 1].part ||
                    f.r[i].klen != f.r[i + 1].klen ||
                    memcmp(f.r[i].key, f.r[i + 1].key, f.r[i].klen);
        if (last && !f.r[i].tomb)
            live++;
    }
    free(f.r);
    return live;
}

static int parts_with_time(const ref_t *ref)
{
    int n = 0;
    for (int p = 0; p < NPART; p++)
        n += ref->have_st[p];
    return n;
}

/* ------------------------------------------------------------------ */
/* the tests                                                          */

/* One run over all events, then checks closes, the dump and counters. */
/* Reads from outside the workers (mph_window_lookup, as the web view does)
 * agree with the reference: live pairs have their value, expired ones the
 * table's default. */
static void check_lookups(mph_app_t *app, mph_window_t *w, const ref_t *ref,
                          const scn_t *s)
{
    int checked = 0, live = 0;
    for (size_t i = 0; i < ref->n && checked < 300; i++) {
        const pair_t *pp = &ref->pairs[i];
        if (i % 7 != 0 && !ref_live(ref, s, pp))
            continue;
        char kb[32];
        key_name(pp->key, kb, sizeof kb);
        void *v = NULL;
        size_t vl = 0;
        int64_t st = 0, en = 0;
        mph_err_t e = mph_window_lookup(app, w, kb, strlen(kb), MPH_WINDOW_AT,
                                        pp->start, &v, &vl, &st, &en, 5000);
        cr_assert_eq(e, MPH_OK, "key %d window %lld: %s", pp->key,
                     (long long)pp->start, mph_err_str(e));
        cr_assert_eq(vl, 8);
        int64_t want = ref_live(ref, s, pp) ? pp->val : 0;
        cr_expect_eq(be64(v), want, "key %d window %lld: %lld, reference %lld",
                     pp->key, (long long)pp->start, (long long)be64(v),
                     (long long)want);
        cr_expect_eq(st, pp->start);
        cr_expect_eq(en - st, win_size(s));
        free(v);
        checked++;
        live += ref_live(ref, s, pp);
    }
    cr_assert_gt(live, 0, "some live pairs were read");
    /* now: a window of the wall clock, which holds nothing (the input is an
     * hour old), so the default. */
    void *v = NULL;
    size_t vl = 0;
    int64_t st = 0, en = 0;
    cr_assert_eq(mph_window_lookup(app, w, "k1", 2, MPH_WINDOW_NOW, 0, &v, &vl,
                                   &st, &en, 5000),
                 MPH_OK);
    cr_expect_eq(be64(v), 0);
    cr_expect_eq(en - st, win_size(s));
    cr_expect_leq(st, mph_clock_wall_ms() + s->a);
    free(v);
    cr_expect_eq(mph_window_lookup(app, w, "k1", 2, MPH_WINDOW_CURRENT, 0, &v,
                                   &vl, NULL, NULL, 5000),
                 MPH_ERR_INVALID, "CURRENT needs an event");
}

static void single_run(const char *tag, const scn_t *s, const char *store)
{
    run_t r;
    ref_t ref;
    appctx_t ctx = {0};
    run_init(&r, tag, s, store);
    ref_build(&ref, s, r.ev, s->nevents);
    cr_assert_gt(ref.late_events, 0, "the input has late events");
    seen_reset();
    mph_app_t *app = app_new(&r, &ctx, false);
    start(app);
    /* A probe half-way: the key index is built on its first use and must
     * then follow every write, delete and expiry of the second half (the
     * probe at the end checks it). */
    ref_t half;
    ref_build(&half, s, r.ev, s->nevents / 2);
    produce_events(&r, 0, s->nevents / 2);
    wait_committed(&r);
    probe_all(&r, &half);
    check_dump(&half, s, NULL);
    free(half.pairs);
    produce_events(&r, s->nevents / 2, s->nevents);
    wait_committed(&r);
    probe_all(&r, &ref);
    int64_t expected = 0, live = 0;
    check_closes(&ref, s, &expected);
    check_dump(&ref, s, &live);
    check_lookups(app, ctx.w, &ref, s);
    cr_expect_eq(mph_window_stat(ctx.w, MPH_WINDOW_STAT_LATE_EVENTS),
                 ref.late_events);
    cr_expect_eq(mph_window_stat(ctx.w, MPH_WINDOW_STAT_LATE_WRITES),
                 ref.late_writes);
    cr_expect_eq(mph_window_stat(ctx.w, MPH_WINDOW_STAT_CLOSE_CALLS), expected);
    cr_expect_eq(mph_window_stat(ctx.w, MPH_WINDOW_STAT_LIVE_PAIRS), live);
    cr_expect_eq(mph_window_stat(ctx.w, MPH_WINDOW_STAT_INVALID_TIME), 0);
    cr_log_info(
        "%s: %d events, %lld late, %zu pairs, %lld closed, %lld live, %lld "
        "expired",
        tag, s->nevents, (long long)ref.late_events, ref.n, (long long)expected,
        (long long)live,
        (long long)mph_window_stat(ctx.w, MPH_WINDOW_STAT_EXPIRED_KEYS));
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);
    free(ref.pairs);
    run_fini(&r);
}

Test(windows, tumbling_reference_memory)
{
    scn_t s = {.kind = 0,
               .a = 1000,
               .expires = 2000,
               .grace = 300,
               .nkeys = 40,
               .nevents = 20000,
               .gap = 2,
               .jitter = 250,
               .late_by = 3000,
               .late_pct = 2,
               .del_permille = 10,
               .set_permille = 10,
               .jump_at = 1 << 30};
    single_run("wtum", &s, "memory");
}

Test(windows, hopping_reference_rocksdb)
{
    scn_t s = {.kind = 1,
               .a = 1000,
               .b = 250,
               .expires = 1000,
               .grace = 200,
               .nkeys = 30,
               .nevents = 12000,
               .gap = 3,
               .jitter = 180,
               .late_by = 2500,
               .late_pct = 2,
               .del_permille = 5,
               .set_permille = 5,
               .jump_at = 1 << 30};
    single_run("whop", &s, "rocksdb");
}

Test(windows, sliding_reference_memory)
{
    scn_t s = {.kind = 2,
               .a = 200,
               .b = 50,
               .expires = 300,
               .grace = 100,
               .nkeys = 20,
               .nevents = 4000,
               .gap = 3,
               .jitter = 90,
               .late_by = 1000,
               .late_pct = 3,
               .del_permille = 0,
               .set_permille = 0,
               .jump_at = 1 << 30};
    single_run("wsli", &s, "memory");
}

/* Closes exactly once across graceful restarts; windows of the first run
 * expire in the second (after recovery from RocksDB); a third run rebuilt
 * from the changelog alone holds the same state and closes nothing again;
 * RocksDB and the changelog hold exactly the live pairs plus one meta key
 * per shard. */
static void restarts(const char *store)
{
    scn_t s = {.kind = 0,
               .a = 500,
               .expires = 1000,
               .grace = 100,
               .nkeys = 50,
               .nevents = 16000,
               .gap = 2,
               .jitter = 80,
               .late_by = 2000,
               .late_pct = 2,
               .del_permille = 5,
               .set_permille = 5,
               .jump_at = 8000,
               .jump_by = 5000};
    run_t r;
    ref_t ref;
    appctx_t ctx = {0};
    run_init(&r, "wrst", &s, store);
    ref_build(&ref, &s, r.ev, s.nevents);
    seen_reset();

    mph_app_t *app = app_new(&r, &ctx, false);
    start(app);
    produce_events(&r, 0, s.jump_at);
    wait_committed(&r);
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);

    app = app_new(&r, &ctx, false);
    start(app);
    produce_events(&r, s.jump_at, s.nevents);
    wait_committed(&r);
    probe_all(&r, &ref);
    int64_t expected = 0, live = 0;
    check_closes(&ref, &s, &expected);
    check_dump(&ref, &s, &live);
    cr_expect_gt(mph_window_stat(ctx.w, MPH_WINDOW_STAT_EXPIRED_KEYS), 0,
                 "windows of the first run expired in the second");
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);
    int64_t metas = parts_with_time(&ref);
    if (!strcmp(store, "rocksdb"))
        cr_expect_eq(rocksdb_keys(&r), live + metas,
                     "RocksDB holds the live pairs and metas");
    cr_expect_eq(changelog_live(&r, NULL), live + metas,
                 "the changelog folds to the live pairs");

    /* A third run from the changelog alone. */
    mph_test_rmrf(r.dir);
    cr_assert_not_null(mph_test_tmpdir("wrst3", r.dir, sizeof r.dir));
    app = app_new(&r, &ctx, false);
    start(app);
    probe_all(&r, &ref);
    check_dump(&ref, &s, NULL);
    check_closes(&ref, &s, NULL);
    cr_expect_eq(mph_window_stat(ctx.w, MPH_WINDOW_STAT_CLOSE_CALLS), 0,
                 "nothing closes again after recovery");
    wait_committed(&r);
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);
    if (!strcmp(store, "rocksdb"))
        cr_expect_eq(rocksdb_keys(&r), live + metas,
                     "rebuilt RocksDB holds the same");
    cr_log_info("restarts (%s): %lld closes, %lld live pairs", store,
                (long long)expected, (long long)live);
    free(ref.pairs);
    run_fini(&r);
}

Test(windows, restarts_rocksdb)
{
    restarts("rocksdb");
}

Test(windows, restarts_memory)
{
    restarts("memory");
}

struct sampler {
    mph_window_t *w;
    int stop;
    int64_t max_pairs, max_windows;
};

static void *sample(void *arg)
{
    struct sampler *sm = arg;
    while (!ck_pr_load_int(&sm->stop)) {
        int64_t p = mph_window_stat(sm->w, MPH_WINDOW_STAT_LIVE_PAIRS);
        int64_t w = mph_window_stat(sm->w, MPH_WINDOW_STAT_LIVE_WINDOWS);
        if (p > sm->max_pairs)
            sm->max_pairs = p;
        if (w > sm->max_windows)
            sm->max_windows = w;
        usleep(2000);
    }
    return NULL;
}

/* Hundreds of windows pass through; what is held stays bounded, and the
 * changelog folds to what is live. */
Test(windows, expiry_keeps_shards_bounded)
{
    scn_t s = {.kind = 0,
               .a = 100,
               .expires = 100,
               .grace = 0,
               .nkeys = 20,
               .nevents = 30000,
               .gap = 1,
               .jitter = 0,
               .late_by = 500,
               .late_pct = 1,
               .jump_at = 1 << 30};
    run_t r;
    ref_t ref;
    appctx_t ctx = {0};
    run_init(&r, "wexp", &s, "rocksdb");
    ref_build(&ref, &s, r.ev, s.nevents);
    seen_reset();
    mph_app_t *app = app_new(&r, &ctx, false);
    start(app);
    struct sampler sm = {ctx.w, 0, 0, 0};
    pthread_t th;
    pthread_create(&th, NULL, sample, &sm);
    produce_events(&r, 0, s.nevents);
    wait_committed(&r);
    ck_pr_store_int(&sm.stop, 1);
    pthread_join(th, NULL);
    /* At any time a shard holds the windows not yet expired: those ending
     * within expires of its stream time, plus the open one. */
    int64_t per_key = (s.a + s.expires) / s.a + 1;
    cr_expect_leq(sm.max_pairs, per_key * s.nkeys,
                  "live pairs stay bounded (max %lld)",
                  (long long)sm.max_pairs);
    cr_expect_leq(sm.max_windows, per_key * NPART,
                  "live windows stay bounded (max %lld)",
                  (long long)sm.max_windows);
    probe_all(&r, &ref);
    int64_t live = 0;
    check_closes(&ref, &s, NULL);
    check_dump(&ref, &s, &live);
    int64_t expired = mph_window_stat(ctx.w, MPH_WINDOW_STAT_EXPIRED);
    cr_expect_gt(expired, 250, "hundreds of windows expired (%lld)",
                 (long long)expired);
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);
    int64_t metas = parts_with_time(&ref);
    int64_t orphans;
    int64_t on_disk = rocksdb_keys(&r), in_log = changelog_live(&r, &orphans);
    cr_expect_eq(on_disk, live + metas, "RocksDB: %lld keys, want %lld",
                 (long long)on_disk, (long long)(live + metas));
    cr_expect_eq(in_log, live + metas, "changelog: %lld live keys, want %lld",
                 (long long)in_log, (long long)(live + metas));
    /* Pairs created and expired between two commits were never written:
     * their deletes write no tombstone either. */
    cr_expect_eq(orphans, 0, "%lld tombstones of pairs never written",
                 (long long)orphans);
    cr_log_info("bounded: %zu pairs over the run, at most %lld live, %lld "
                "windows expired",
                ref.n, (long long)sm.max_pairs, (long long)expired);
    free(ref.pairs);
    run_fini(&r);
}

/* ---- time from fields, the wall clock, and bad times ---- */

struct fieldctx {
    mph_window_t *byfield, *bywall;
};

static mph_err_t add_v(int64_t start, int64_t end, const void *old, size_t ol,
                       mph_window_update_t *upd, void *opaque)
{
    (void)start;
    (void)end;
    int64_t add = *(int64_t *)opaque, cur = old && ol == 8 ? be64(old) : 0;
    unsigned char b[8];
    uint64_t u = (uint64_t)(cur + add);
    for (int i = 7; i >= 0; i--, u >>= 8)
        b[i] = (unsigned char)u;
    return mph_window_update_set(upd, b, 8);
}

static mph_err_t field_event(mph_event_t *ev, void *opaque)
{
    struct fieldctx *c = opaque;
    size_t kl, vl;
    const char *k = mph_event_key(ev, &kl);
    const char *v = mph_event_value(ev, &vl);
    if (vl == 5 && !memcmp(v, "probe", 5))
        return MPH_OK;
    int64_t add = 1;
    const mph_record_t *rec = mph_event_record(ev);
    if (rec)
        mph_record_get_i64_by_name(rec, "v", &add);
    mph_err_t err = mph_window_update(ev, c->byfield, k, kl, add_v, &add);
    if (err)
        return err;
    return mph_window_incr(ev, c->bywall, k, kl, 1);
}

static int64_t wall_sum;
static int64_t field_st = -2;
static int64_t field_base;
static int64_t field_vals[4];
static mph_err_t probe_time_err;

static mph_err_t sum_windows(int64_t start, int64_t end, bool closed,
                             const void *v, size_t vl, void *opaque)
{
    (void)start;
    (void)end;
    (void)closed;
    *(int64_t *)opaque += vl == 8 ? be64(v) : 0;
    return MPH_OK;
}

static mph_err_t field_probe(mph_event_t *ev, void *opaque)
{
    struct fieldctx *c = opaque;
    size_t kl;
    const char *k = mph_event_key(ev, &kl);
    int64_t sum = 0, t;
    mph_window_foreach_window(ev, c->bywall, k, kl, sum_windows, &sum);
    pthread_mutex_lock(&seen_lock);
    wall_sum = sum;
    probe_time_err = mph_window_event_time(ev, c->byfield, &t);
    if (mph_window_stream_time(ev, c->byfield, &field_st) != MPH_OK)
        field_st = -1;
    for (int i = 0; i < 4; i++)
        if (mph_window_get_i64(ev, c->byfield, k, kl, MPH_WINDOW_AT,
                               field_base + i * 1000, &field_vals[i]) != MPH_OK)
            field_vals[i] = -1;
    probes_done++;
    pthread_mutex_unlock(&seen_lock);
    return MPH_OK;
}

static void wait_topic(const char *app_id, const char *topic, int64_t n)
{
    for (int i = 0; i < 300; i++) {
        if (mph_test_committed_sum(cluster, app_id, topic, NPART) >= n)
            return;
        usleep(100000);
    }
    cr_assert_fail("%s not committed", topic);
}

/* A partition handed over after its restore while another partition of the
 * same worker waits in that worker's queue: partition 0's changelog holds
 * records to restore (tombstones of keys that never existed, which change
 * nothing), so its shard reaches worker 0 well after partition 2 began
 * there; the slow agent keeps records of partition 2 queued at that
 * moment. Freeing the hold queue once purged the worker's queue it was
 * forwarded to (librdkafka destroys an owned queue by purging the queue it
 * forwards to), and those fetched records were never processed. */
Test(windows, handover_keeps_queued_records)
{
    scn_t s = {.kind = 0,
               .a = 100,
               .expires = 100,
               .grace = 0,
               .nkeys = 20,
               .nevents = 6000,
               .gap = 1,
               .jitter = 0,
               .late_by = 500,
               .late_pct = 1,
               .jump_at = 1 << 30};
    run_t r;
    ref_t ref;
    appctx_t ctx = {.slow_us = 1500};
    run_init(&r, "whnd", &s, "rocksdb");
    ref_build(&ref, &s, r.ev, s.nevents);
    seen_reset();
    for (int i = 0; i < 50000; i++) {
        char k[32];
        int n = snprintf(k, sizeof k, "junk-%d", i);
        mph_test_produce(cluster, r.changelog, 0, k, (size_t)n, NULL, 0);
    }
    mph_test_flush(cluster);
    produce_events(&r, 0, s.nevents);
    ck_pr_store_int(&events_seen, 0);
    mph_app_t *app = app_new(&r, &ctx, false);
    start(app);
    /* Every record reaches the agent; lost ones never do, and then the
     * count stops short (its commit point too, so this fails sooner and
     * says more than wait_committed). */
    int seen = 0, idle_ms = 0;
    while ((seen = ck_pr_load_int(&events_seen)) < s.nevents && idle_ms < 30000) {
        usleep(200000);
        idle_ms = ck_pr_load_int(&events_seen) == seen ? idle_ms + 200 : 0;
    }
    cr_assert_geq(seen, s.nevents, "every record processed (%d of %d)", seen, s.nevents);
    wait_committed(&r);
    probe_all(&r, &ref);
    check_closes(&ref, &s, NULL);
    check_dump(&ref, &s, NULL);
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);
    free(ref.pairs);
    run_fini(&r);
}

/* One key, one shard, windows of 1 s from an aligned base two hours ago:
 *   json   ts base+100          -> w0 = 1
 *          ts "base+1500" (RFC 3339 string) -> w1 = 1, w0 closes
 *          ts -5, no ts, ts "yesterday"     -> invalid (3)
 *          ts now + 3 days      -> beyond max_future (1)
 *          ts base+3999         -> w3 = 1, w1 closes
 *   record ts "base+2200", v 10 -> w2 is due (3000 <= 3999): late
 *          ts base+3500, v 5    -> w3 = 6
 * and a wall-clock table counting all 9 events. */
Test(windows, time_from_fields_wall_clock_and_bad_times)
{
    char app_id[96], json_in[160], rec_in[160], probe_in[160], cl1[200],
        cl2[200], cl3[200], err[512];
    mph_test_unique("wfld", app_id, sizeof app_id);
    snprintf(json_in, sizeof json_in, "%s-json", app_id);
    snprintf(rec_in, sizeof rec_in, "%s-rec", app_id);
    snprintf(probe_in, sizeof probe_in, "%s-probe", app_id);
    snprintf(cl1, sizeof cl1, "%s-byfield-changelog", app_id);
    snprintf(cl2, sizeof cl2, "%s-bywall-changelog", app_id);
    snprintf(cl3, sizeof cl3, "%s-plain-changelog", app_id);
    const char *topics[] = {json_in, rec_in, probe_in, cl1, cl2, cl3};
    for (int i = 0; i < 6; i++)
        mph_test_create_topic(cluster, topics[i], NPART);

    mph_conf_t *conf = mph_conf_new();
    const char *kv[] = {"broker",
                        cluster->broker,
                        "app_id",
                        app_id,
                        "workers",
                        "1",
                        "commit_interval_ms",
                        "200",
                        "log_level",
                        "error",
                        "topic_partitions",
                        "4",
                        NULL};
    for (const char **p = kv; *p; p += 2)
        cr_assert_eq(mph_conf_set(conf, p[0], p[1], err, sizeof err), MPH_OK,
                     "%s", err);
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(app, "%s", err);
    mph_topic_opts_t *jo = mph_topic_opts_new();
    mph_topic_opts_set(jo, "value_codec", "json", NULL, 0);
    mph_topic_t *jt = mph_topic_new(app, json_in, jo, err, sizeof err);
    mph_topic_opts_destroy(jo);
    cr_assert_not_null(jt, "%s", err);
    mph_record_type_t *rt = mph_record_type_new("Ev", err, sizeof err);
    cr_assert_not_null(rt, "%s", err);
    size_t f;
    mph_record_type_add(rt, "ts", MPH_FIELD_TIMESTAMP, &f);
    mph_record_type_add(rt, "v", MPH_FIELD_I64, &f);
    mph_record_type_freeze(rt);
    mph_topic_opts_t *ro = mph_topic_opts_new();
    mph_topic_opts_set_record(ro, rt);
    mph_topic_t *rtp = mph_topic_new(app, rec_in, ro, err, sizeof err);
    mph_topic_opts_destroy(ro);
    cr_assert_not_null(rtp, "%s", err);
    mph_topic_t *pt = mph_topic_new(app, probe_in, NULL, err, sizeof err);
    cr_assert_not_null(pt, "%s", err);

    struct fieldctx c;
    appctx_t cctx = {0};
    mph_table_opts_t *o = mph_table_opts_new();
    mph_table_opts_set(o, "value_codec", "i64", NULL, 0);
    mph_table_t *t1 = mph_table_new(app, "byfield", o, err, sizeof err);
    mph_table_t *t2 = mph_table_new(app, "bywall", o, err, sizeof err);
    mph_table_t *t3 = mph_table_new(app, "plain", o, err, sizeof err);
    mph_table_opts_destroy(o);
    cr_assert(t1 && t2 && t3);
    c.byfield = mph_table_tumbling(t1, 1000, 3600000, err, sizeof err);
    c.bywall = mph_table_tumbling(t2, 3600000, 3600000, err, sizeof err);
    cr_assert(c.byfield && c.bywall, "%s", err);
    cctx.w = c.byfield;
    cr_expect_eq(mph_window_time_source(c.byfield, "clock"), MPH_ERR_INVALID);
    cr_assert_eq(mph_window_time_source(c.byfield, "field:ts"), MPH_OK);
    cr_assert_eq(mph_window_time_source(c.bywall, "wall"), MPH_OK);
    cr_expect_eq(mph_window_max_future(c.byfield, -2), MPH_ERR_RANGE);
    cr_assert_eq(mph_window_max_future(c.byfield, 3600000), MPH_OK);
    cr_assert_eq(mph_window_on_close(c.byfield, on_close, &cctx), MPH_OK);
    cr_assert_not_null(
        mph_agent_new(app, "fj", jt, field_event, &c, err, sizeof err));
    cr_assert_not_null(
        mph_agent_new(app, "fr", rtp, field_event, &c, err, sizeof err));
    cr_assert_not_null(
        mph_agent_new(app, "fp", pt, field_probe, &c, err, sizeof err));
    seen_reset();
    start(app);
    cr_expect_eq(mph_window_grace(c.byfield, 5), MPH_ERR_STATE,
                 "settings freeze at start");
    cr_expect_eq(mph_window_time_source(c.byfield, "wall"), MPH_ERR_STATE);
    cr_expect_eq(mph_window_on_close(c.byfield, NULL, NULL), MPH_ERR_STATE);
    cr_expect_null(mph_table_hopping(t3, 100, 10, 0, err, sizeof err));
    cr_expect(strstr(err, "before the app starts"), "%s", err);
    cr_expect_null(mph_table_window(t3));

    const char *key = "user-1";
    int part = mph__kafka_partition_for(key, strlen(key), NPART);
    int64_t base = (mph_clock_wall_ms() / 1000 - 7200) * 1000;
    field_base = base;
    char iso[25] = {0};
    mph_record_timestamp_format(base + 1500, iso);
    char docs[8][160];
    int nd = 0;
    snprintf(docs[nd++], 160, "{\"ts\":%lld}", (long long)(base + 100));
    snprintf(docs[nd++], 160, "{\"x\":1,\"ts\":\"%.24s\"}", iso);
    snprintf(docs[nd++], 160, "{\"ts\":-5}");
    snprintf(docs[nd++], 160, "{\"nots\":1}");
    snprintf(docs[nd++], 160, "{\"ts\":\"yesterday\"}");
    snprintf(docs[nd++], 160, "{\"ts\":%lld}",
             (long long)(mph_clock_wall_ms() + 259200000LL));
    snprintf(docs[nd++], 160, "{\"ts\":%lld}", (long long)(base + 3999));
    for (int i = 0; i < nd; i++)
        produce_ts(json_in, part, key, strlen(key), docs[i], strlen(docs[i]),
                   0);
    mph_test_flush(cluster);
    wait_topic(app_id, json_in, nd);
    char rv[160];
    mph_record_timestamp_format(base + 2200, iso);
    snprintf(rv, sizeof rv, "{\"ts\":\"%.24s\",\"v\":10}", iso);
    produce_ts(rec_in, part, key, strlen(key), rv, strlen(rv), 0);
    snprintf(rv, sizeof rv, "{\"ts\":%lld,\"v\":5}", (long long)(base + 3500));
    produce_ts(rec_in, part, key, strlen(key), rv, strlen(rv), 0);
    mph_test_flush(cluster);
    wait_topic(app_id, rec_in, 2);
    produce_ts(probe_in, part, key, strlen(key), "probe", 5, 0);
    mph_test_flush(cluster);
    for (int i = 0; i < 200; i++) {
        pthread_mutex_lock(&seen_lock);
        int done = probes_done;
        pthread_mutex_unlock(&seen_lock);
        if (done)
            break;
        usleep(50000);
    }
    pthread_mutex_lock(&seen_lock);
    cr_expect_eq(probes_done, 1);
    cr_expect_eq(field_st, base + 3999,
                 "stream time: the largest valid field time");
    cr_expect_eq(wall_sum, 9, "the wall-clock table counts every event");
    cr_expect_eq(probe_time_err, MPH_ERR_DECODE,
                 "a value that is not JSON has no field time");
    cr_expect(field_vals[0] == 1 && field_vals[1] == 1 && field_vals[2] == 0 &&
                  field_vals[3] == 6,
              "windows %lld %lld %lld %lld", (long long)field_vals[0],
              (long long)field_vals[1], (long long)field_vals[2],
              (long long)field_vals[3]);
    cr_expect_eq(ncloses, 2, "w0 and w1 closed, w3 open");
    for (size_t i = 0; i < ncloses && i < 2; i++)
        cr_expect(
            closes[i].key == 1 && closes[i].start == base + 1000 * (int64_t)i &&
                closes[i].val == 1,
            "close %zu: key %d start %lld value %lld", i, closes[i].key,
            (long long)(closes[i].start - base), (long long)closes[i].val);
    pthread_mutex_unlock(&seen_lock);
    cr_expect_eq(mph_window_stat(c.byfield, MPH_WINDOW_STAT_INVALID_TIME), 3);
    cr_expect_eq(mph_window_stat(c.byfield, MPH_WINDOW_STAT_FUTURE_TIME), 1);
    cr_expect_eq(mph_window_stat(c.byfield, MPH_WINDOW_STAT_LATE_EVENTS), 1);
    cr_expect_eq(mph_window_stat(c.bywall, MPH_WINDOW_STAT_INVALID_TIME), 0);
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);
    mph_record_type_destroy(rt);
}

/* ---- a crash under at_least_once (real broker: the crash is a child
 * process that _exit()s from a close callback, with no flush and no
 * commit) ---- */

struct outrec {
    int key;
    int64_t start, val;
};

struct outlog {
    struct outrec *r;
    size_t n, cap;
};

static void out_visit(const rd_kafka_message_t *m, void *opaque)
{
    struct outlog *l = opaque;
    char buf[96];
    size_t n = m->len < sizeof buf - 1 ? m->len : sizeof buf - 1;
    memcpy(buf, m->payload, n);
    buf[n] = '\0';
    long long start, val;
    if (sscanf(buf, "%lld:%lld", &start, &val) != 2)
        return;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 4096;
        l->r = realloc(l->r, l->cap * sizeof *l->r);
    }
    l->r[l->n++] = (struct outrec){key_index(m->key, m->key_len), start, val};
}

TestSuite(windows_crash, .timeout = 300);

Test(windows_crash, closes_at_least_once_after_a_crash)
{
    if (!mph_test_real_broker())
        cr_skip_test("needs a real broker (the crash is a separate process)");
    scn_t s = {.kind = 0,
               .a = 500,
               .expires = 1000,
               .grace = 100,
               .nkeys = 50,
               .nevents = 16000,
               .gap = 2,
               .jitter = 80,
               .late_by = 2000,
               .late_pct = 2,
               .jump_at = 1 << 30};
    run_t r;
    ref_t ref;
    run_names(&r, "wcrash", &s, "rocksdb");
    ref_build(&ref, &s, r.ev, s.nevents);
    int64_t expected = 0;
    for (size_t i = 0; i < ref.n; i++)
        expected += ref_closed(&ref, &s, &ref.pairs[i]);
    int go[2];
    cr_assert_eq(pipe(go), 0);
    /* Fork before this process starts any librdkafka thread. */
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        char c, err[512];
        close(go[1]);
        if (read(go[0], &c, 1) != 1)
            _exit(2);
        /* Slow enough (about 8 s of work per worker, the crash half-way)
         * that several commits happen before the crash, however fast the
         * records arrive: commits are asynchronous, and the first one's
         * changelog acknowledgements can take a second on a fresh topic. */
        appctx_t ctx = {.crash_after = (int)(expected / 2), .slow_us = 1000};
        mph_app_t *app = app_build(&r, &ctx, true, err, sizeof err);
        if (!app || mph_app_start(app, err, sizeof err) != MPH_OK) {
            fprintf(stderr, "crash child: %s\n", err);
            _exit(3);
        }
        sleep(120); /* the crash comes from on_close long before */
        _exit(4);
    }
    close(go[0]);
    cluster = mph_test_cluster_new();
    mph_test_create_topic(cluster, r.input, NPART);
    mph_test_create_topic(cluster, r.output, NPART);
    mph_test_create_topic(cluster, r.changelog, NPART);
    produce_events(&r, 0, s.nevents);
    cr_assert_eq(write(go[1], "g", 1), 1);
    close(go[1]);
    int status = 0;
    for (int i = 0; i < 1800 && waitpid(pid, &status, WNOHANG) == 0; i++)
        usleep(100000);
    if (waitpid(pid, &status, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 77,
              "the child crashed in on_close (status %d)", status);
    int64_t committed =
        mph_test_committed_sum(cluster, r.app_id, r.input, NPART);

    /* The restart finishes the input. */
    appctx_t ctx = {0};
    seen_reset();
    mph_app_t *app = app_new(&r, &ctx, true);
    start(app);
    wait_committed(&r);
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);

    struct outlog out = {0};
    mph_test_consume_all(cluster, r.output, -1, 5000, 120000, out_visit, &out);
    int *hits = calloc(ref.n, sizeof *hits);
    int64_t strays = 0, missing = 0, under = 0, over = 0, dups = 0;
    for (size_t i = 0; i < out.n; i++) {
        pair_t *pp = ref_pair(&ref, out.r[i].key, out.r[i].start);
        if (!pp || !ref_closed(&ref, &s, pp)) {
            strays++;
            continue;
        }
        hits[pp - ref.pairs]++;
        under += out.r[i].val < pp->val;
        over += out.r[i].val > pp->val;
    }
    for (size_t i = 0; i < ref.n; i++) {
        if (!ref_closed(&ref, &s, &ref.pairs[i]))
            continue;
        missing += hits[i] == 0;
        dups += hits[i] > 1 ? hits[i] - 1 : 0;
    }
    cr_log_info("crash: %lld windows x keys to close, crashed after %lld "
                "closes with %lld input records committed; %zu outputs, "
                "%lld repeated, %lld over-counted (replayed input)",
                (long long)expected, (long long)(expected / 2),
                (long long)committed, out.n, (long long)dups, (long long)over);
    cr_expect_eq(missing, 0, "every window closed at least once");
    cr_expect_eq(strays, 0, "no close of a window that should stay open");
    cr_expect_eq(under, 0, "no close value below the truth");
    cr_expect_leq(
        dups, expected / 2,
        "only closes of the crashed run since its last commit repeat");
    cr_expect_gt(committed, 0, "the crashed run had committed before");
    free(hits);
    free(out.r);
    free(ref.pairs);
    run_fini(&r);
    mph_test_cluster_destroy(cluster);
    cluster = NULL;
}
