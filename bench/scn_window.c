/*
 * window: a count per key in a tumbling-window table against the same
 * count in a plain table — the baseline — on the same input, in
 * interleaved rounds of the same invocation. Event time is the record's
 * "seq" field (field:seq, one millisecond per record of the load), so the
 * work is the same on every machine and load rate: 1 s windows hold 1000
 * records, 100 ms grace, kept 2 s after they end; a window closes (one
 * on_close per key) and expires (one delete and changelog tombstone per
 * key) every 1000 records. With the default --keys 100000 nearly every
 * record starts a new (window, key) pair: the costly end of windowing.
 * Both agents read "seq" from the JSON value (the baseline reads and
 * ignores it), so the ratio is what windowing adds on top of a table.
 * Timing: from the first record consumed until every record was processed
 * and the input's committed offsets reached the end (the table flushes to
 * the changelog are included). Target (reported, never asserted): window
 * >= 0.8 x count records/s.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "mephisto/json.h"

#define WINDOW_MS  1000
#define GRACE_MS   100
#define EXPIRES_MS 2000

typedef struct wctx {
    mph_table_t *table;
    mph_window_t *win;
    uint64_t processed; /* __atomic */
    uint64_t closes;    /* __atomic */
    int64_t t_first;    /* __atomic */
    int sys_state;      /* __atomic: 2 once sys_first is set */
    bench_sys_t sys_first;
    int broker_pid;
} wctx_t;

static void mark_first(wctx_t *c)
{
    if (__atomic_load_n(&c->t_first, __ATOMIC_RELAXED))
        return;
    int64_t zero = 0, now = bench_now_ns();
    if (__atomic_compare_exchange_n(&c->t_first, &zero, now, false,
                                    __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
        bench_sys_sample(&c->sys_first, c->broker_pid);
        __atomic_store_n(&c->sys_state, 2, __ATOMIC_RELEASE);
    }
}

static mph_err_t count_agent(mph_event_t *ev, void *opaque)
{
    wctx_t *c = opaque;
    mark_first(c);
    size_t kl;
    const void *k = mph_event_key(ev, &kl);
    /* The same read the window's time source does. */
    int64_t seq;
    mph_json_parser_t *p = mph_event_json(ev, NULL);
    mph_err_t err =
        p ? mph_json_get_i64(p, MPH_JSON_ROOT, "seq", &seq) : MPH_ERR_DECODE;
    if (!err)
        err = mph_table_incr(ev, c->table, k, kl, 1, NULL);
    __atomic_add_fetch(&c->processed, 1, __ATOMIC_RELAXED);
    return err;
}

static mph_err_t window_agent(mph_event_t *ev, void *opaque)
{
    wctx_t *c = opaque;
    mark_first(c);
    size_t kl;
    const void *k = mph_event_key(ev, &kl);
    mph_err_t err = mph_window_incr(ev, c->win, k, kl, 1);
    __atomic_add_fetch(&c->processed, 1, __ATOMIC_RELAXED);
    return err;
}

static mph_err_t on_close(mph_event_t *ev, const void *key, size_t klen,
                          int64_t start, int64_t end, const void *value,
                          size_t vlen, void *opaque)
{
    (void)ev;
    (void)key;
    (void)klen;
    (void)start;
    (void)end;
    (void)value;
    (void)vlen;
    __atomic_add_fetch(&((wctx_t *)opaque)->closes, 1, __ATOMIC_RELAXED);
    return MPH_OK;
}

/* Committed offsets of group over topic, summed; -1 when unknown. */
static int64_t committed(bench_kafka_t *k, const char *group, const char *topic,
                         int partitions)
{
    char err[256];
    rd_kafka_conf_t *kc = bench_kafka_conf(k);
    if (rd_kafka_conf_set(kc, "group.id", group, err, sizeof err) !=
        RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(kc);
        return -1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, sizeof err);
    if (!rk) {
        rd_kafka_conf_destroy(kc);
        return -1;
    }
    rd_kafka_topic_partition_list_t *tp =
        rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(tp, topic, p);
    int64_t sum = -1;
    if (rd_kafka_committed(rk, tp, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        sum = 0;
        for (int p = 0; p < partitions; p++)
            sum += tp->elems[p].offset > 0 ? tp->elems[p].offset : 0;
    }
    rd_kafka_topic_partition_list_destroy(tp);
    rd_kafka_destroy(rk);
    return sum;
}

typedef struct wrun {
    bench_run_t run;
    int64_t closes, closed, late, expired, live_pairs;
} wrun_t;

static int one_run(bench_kafka_t *k, const bench_opts_t *o, bool windowed,
                   const char *label, const char *in, long n, wrun_t *res)
{
    char err[500], id[64], group[128], changelog[200];
    memset(res, 0, sizeof *res);
    wctx_t c;
    memset(&c, 0, sizeof c);
    c.broker_pid = bench_kafka_broker_pid(k);
    snprintf(group, sizeof group, "bench-%s-%s", windowed ? "win" : "cnt",
             bench_run_id(id, sizeof id));
    snprintf(changelog, sizeof changelog, "%s-counts-changelog", group);
    /* Created here so that its leaders exist before recovery asks. */
    if (bench_topic_create(k, changelog, o->partitions, err, sizeof err)) {
        snprintf(res->run.error, sizeof res->run.error, "%s", err);
        return -1;
    }
    for (int i = 0;
         i < 60 && bench_end_offsets(k, changelog, o->partitions) < 0; i++)
        bench_sleep_ms(500);
    int rc = -1;
    mph_app_t *app = NULL;
    mph_conf_t *conf = bench_app_conf(k, o, group, err, sizeof err);
    if (!conf || !(app = mph_app_new(conf, err, sizeof err))) {
        mph_conf_destroy(conf);
        snprintf(res->run.error, sizeof res->run.error, "%s", err);
        goto out;
    }
    mph_table_opts_t *to = mph_table_opts_new();
    char parts[16];
    snprintf(parts, sizeof parts, "%d", o->partitions);
    mph_table_opts_set(to, "value_codec", "i64", NULL, 0);
    mph_table_opts_set(to, "partitions", parts, NULL, 0);
    mph_topic_t *tin = mph_topic_new(app, in, NULL, err, sizeof err);
    c.table = tin ? mph_table_new(app, "counts", to, err, sizeof err) : NULL;
    mph_table_opts_destroy(to);
    if (c.table && windowed) {
        c.win =
            mph_table_tumbling(c.table, WINDOW_MS, EXPIRES_MS, err, sizeof err);
        if (c.win && (mph_window_grace(c.win, GRACE_MS) != MPH_OK ||
                      mph_window_time_source(c.win, "field:seq") != MPH_OK ||
                      mph_window_on_close(c.win, on_close, &c) != MPH_OK))
            c.win = NULL;
    }
    if (!c.table || (windowed && !c.win) ||
        !mph_agent_new(app, "count", tin, windowed ? window_agent : count_agent,
                       &c, err, sizeof err)) {
        snprintf(res->run.error, sizeof res->run.error, "%s", err);
        goto out;
    }
    bench_rss_reset();
    if (mph_app_start(app, err, sizeof err) != MPH_OK) {
        snprintf(res->run.error, sizeof res->run.error, "%s", err);
        goto out;
    }
    /* Processed first (watching costs nothing), then committed. */
    int64_t start = bench_now_ns(), last = start, t_end = 0;
    int64_t deadline = start + (int64_t)(o->timeout * 1e9);
    uint64_t prev = 0;
    for (;;) {
        int64_t now = bench_now_ns();
        uint64_t done = __atomic_load_n(&c.processed, __ATOMIC_RELAXED);
        if (done >= (uint64_t)n &&
            committed(k, group, in, o->partitions) >= (int64_t)n) {
            t_end = bench_now_ns();
            break;
        }
        if (now - last >= 1000000000) {
            bench_progress(o, "%s: %llu/%ld records (%.0f/s)", label,
                           (unsigned long long)done, n,
                           (double)(done - prev) * 1e9 / (double)(now - last));
            prev = done;
            last = now;
        }
        if (now > deadline) {
            snprintf(res->run.error, sizeof res->run.error,
                     "timed out after %.0f s: %llu of %ld records processed",
                     o->timeout, (unsigned long long)done, n);
            goto out;
        }
        bench_sleep_ms(done >= (uint64_t)n ? 20 : 5);
    }
    bench_sys_sample(&res->run.sys_end, c.broker_pid);
    res->run.messages = (uint64_t)n;
    res->run.seconds =
        (double)(t_end - __atomic_load_n(&c.t_first, __ATOMIC_ACQUIRE)) / 1e9;
    if (__atomic_load_n(&c.sys_state, __ATOMIC_ACQUIRE) == 2) {
        res->run.sys_first = c.sys_first;
        res->run.cpu_s = res->run.sys_end.self_cpu_s - c.sys_first.self_cpu_s;
    }
    res->run.peak_rss_kb = bench_rss_peak_kb();
    if (windowed) {
        res->closes = (int64_t)__atomic_load_n(&c.closes, __ATOMIC_RELAXED);
        res->closed = mph_window_stat(c.win, MPH_WINDOW_STAT_CLOSED);
        res->late = mph_window_stat(c.win, MPH_WINDOW_STAT_LATE_EVENTS);
        res->expired = mph_window_stat(c.win, MPH_WINDOW_STAT_EXPIRED_KEYS);
        res->live_pairs = mph_window_stat(c.win, MPH_WINDOW_STAT_LIVE_PAIRS);
    }
    rc = 0;
out:
    if (app) {
        mph_err_t e = mph_app_stop(app);
        if (e && rc == 0)
            snprintf(res->run.error, sizeof res->run.error,
                     "app stopped with %s", mph_err_str(e));
        mph_app_destroy(app);
    }
    bench_group_delete(k, group);
    bench_topic_delete(k, changelog);
    return res->run.error[0] ? -1 : rc;
}

static int run(const bench_opts_t *o)
{
    char err[512], id[64], in[128], common[400];
    bench_result_t r;
    bench_result_init(&r, "window");
    snprintf(r.label, sizeof r.label, "p=%d w=%d keys=%d", o->partitions,
             o->workers, o->keys);
    bench_params_common(o, common, sizeof common);
    snprintf(r.params, sizeof r.params,
             "{%s,\"messages\":%ld,\"window\":\"tumbling\",\"window_ms\":%d,"
             "\"grace_ms\":%d,\"expires_ms\":%d,\"time\":\"field:seq\"}",
             common, o->messages, WINDOW_MS, GRACE_MS, EXPIRES_MS);

    bench_kafka_t *k = bench_kafka_new(o->broker, err, sizeof err);
    if (!k) {
        snprintf(r.error, sizeof r.error, "%s", err);
        bench_report(o, &r);
        return 1;
    }
    bench_run_id(id, sizeof id);
    snprintf(in, sizeof in, "bench-win-%s-in", id);
    double wrate[100], crate[100], wcpu[100], ccpu[100], wsec[100];
    int nw = 0, nc = 0;
    long wrss = 0;
    char runs_w[512] = "", runs_c[512] = "";
    bench_sys_delta_t wsys = {0}, csys = {0};
    wrun_t last = {0};
    if (bench_topic_create(k, in, o->partitions, err, sizeof err)) {
        snprintf(r.error, sizeof r.error, "%s", err);
        goto out;
    }
    bench_progress(o, "window: loading %ld records of %d bytes into %s",
                   o->messages, o->size, in);
    long n = bench_load(k, o, in, o->messages, err, sizeof err);
    if (n != o->messages) {
        snprintf(r.error, sizeof r.error, "%s",
                 err[0] ? err : "load incomplete");
        goto out;
    }
    for (int i = 0; i < o->repeat && i < 100; i++) {
        /* Alternate the order so that drift favours neither side. */
        for (int side = 0; side < 2; side++) {
            bool win = (i % 2 == 0) ? side == 1 : side == 0;
            char label[96];
            snprintf(label, sizeof label, "window %s round %d/%d",
                     win ? "window" : "count", i + 1, o->repeat);
            wrun_t res;
            if (one_run(k, o, win, label, in, n, &res)) {
                snprintf(r.error, sizeof r.error, "%s: %s",
                         win ? "window" : "count", res.run.error);
                goto out;
            }
            double rate = (double)res.run.messages / res.run.seconds;
            bench_progress(o, "%s: %.0f records/s, %.2f s CPU", label, rate,
                           res.run.cpu_s);
            char *runs = win ? runs_w : runs_c;
            size_t used = strlen(runs);
            snprintf(runs + used, 512 - used, "%s%.1f", used ? "," : "", rate);
            bench_sys_add(win ? &wsys : &csys, &res.run.sys_first,
                          &res.run.sys_end);
            if (win) {
                wrate[nw] = rate;
                wsec[nw] = res.run.seconds;
                wcpu[nw++] = res.run.cpu_s;
                if (res.run.peak_rss_kb > wrss)
                    wrss = res.run.peak_rss_kb;
                last = res;
            } else {
                crate[nc] = rate;
                ccpu[nc++] = res.run.cpu_s;
            }
        }
    }
    r.messages = (uint64_t)n;
    r.msgs_per_s = bench_median(wrate, nw);
    r.seconds = bench_median(wsec, nw);
    r.mb_per_s = r.msgs_per_s * o->size / 1e6;
    r.cpu_s = bench_median(wcpu, nw);
    r.peak_rss_kb = wrss;
    r.baseline_msgs_per_s = bench_median(crate, nc);
    r.ratio = r.msgs_per_s / r.baseline_msgs_per_s;
    double cc = bench_median(ccpu, nc);
    bench_extra(&r,
                ",\"cpu_us_per_msg\":%.3f,\"runs_msgs_per_s\":[%s],"
                "\"count_cpu_us_per_msg\":%.3f,\"count_runs_msgs_per_s\":[%s],"
                "\"windows_closed\":%lld,\"close_calls\":%lld,"
                "\"late_events\":%lld,\"expired_pairs\":%lld,"
                "\"live_pairs_at_end\":%lld",
                r.cpu_s * 1e6 / (double)n, runs_w, cc * 1e6 / (double)n, runs_c,
                (long long)last.closed, (long long)last.closes,
                (long long)last.late, (long long)last.expired,
                (long long)last.live_pairs);
    bench_sys_describe(&csys, "count_", &r);
    bench_sys_describe(&wsys, "", &r);
    snprintf(r.target, sizeof r.target, "ratio >= 0.8");
    r.target_met = r.ratio >= 0.8;
out:
    bench_report(o, &r);
    bench_topic_delete(k, in);
    bench_kafka_destroy(k);
    return r.error[0] ? 1 : 0;
}

const bench_scenario_t bench_scn_window = {
    "window",
    "count per key in tumbling windows of 1000 records (closing, expiry) vs "
    "the same count in a plain table",
    run};
