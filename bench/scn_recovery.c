/*
 * recovery: rebuild a table of N keys from its changelog.
 *
 * Setup (not timed): N distinct keys with i64 values (bench_table_key and
 * bench_table_value) are produced once into the compacted changelog
 * `<app_id>-t-changelog` (--partitions partitions, partitioned by key with
 * murmur2 like the engine), beside an empty source topic with as many
 * partitions. N is --keys when given, else --messages when given, else
 * 1,000,000.
 *
 * Each round runs four sides, in an order rotated and reversed from round
 * to round (bench_round_side):
 *   rocksdb, memory  a mephisto app (same app_id every time, a fresh empty
 *                    datadir, its consumer group deleted after each run)
 *                    declaring table "t" with that store and an idle agent
 *                    on the source topic. Its public stats
 *                    (mph_app_stats_json) are polled every POLL_MS: the clock
 *                    runs from the last poll that saw no rebalance yet
 *                    ("commits.rebalances" counts as the coordinator's
 *                    rebalance callback begins; the hand-over and its
 *                    recovery run inside that callback) until "ready" is
 *                    true (set once every worker's shards were recovered
 *                    and handed over). So the recovery consumer's creation,
 *                    its watermark queries and the RocksDB bulk flush are
 *                    in; the group join before it is not, and is reported
 *                    as start_to_ready_s (mph_app_start() to ready) beside
 *                    it. Then SAMPLE keys spread over [0, N) are
 *                    read back with mph_table_lookup() and compared with
 *                    their expected values, and a key never written must be
 *                    absent: a mismatch fails the scenario.
 *   consume          baseline (a): one plain librdkafka consumer, with the
 *                    engine's consumer settings and its recovery consumer's
 *                    fetch settings, assigned every changelog partition from
 *                    its low watermark and polled until each reaches the
 *                    high watermark read first. Timed from creating the
 *                    client.
 *   rocksdb_write    baseline (b): the same N keys and values written into
 *                    a new RocksDB in a temp dir (lz4 like the engine's
 *                    default, WriteBatches of 100,000 with the WAL off, one
 *                    flush at the end), in key order. Timed from open to the
 *                    flush's end.
 *
 * One result line per store: keys/s (median), ratio = keys/s ÷ min(median
 * consume, median rocksdb_write), which baseline was the min. Targets
 * (reported, never asserted): ratio >= 0.7 and >= 500,000 keys/s.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rocksdb/c.h>

#include "bench.h"
#include "mephisto/json.h"
#include "mephisto/sensor.h"

#define DEFAULT_KEYS  1000000
#define SAMPLE        1000
#define ROCKS_BATCH   100000
#define TARGET_RATIO  0.7
#define TARGET_KEYS_S 500000.0
/* How often the stats are read while an app recovers: each read builds the
 * whole stats document on the bench's thread, which competes with the
 * recovery for the machine's two cores (at 2 ms it visibly slowed it). */
#define POLL_MS 10

enum { S_CONSUME, S_ROCKS_WRITE, S_ROCKSDB, S_MEMORY, NSIDES };
static const char *const side_names[NSIDES] = {"consume", "rocksdb_write",
                                               "rocksdb", "memory"};

static void run_begin(bench_run_t *res, int broker_pid)
{
    memset(res, 0, sizeof *res);
    bench_rss_reset();
    bench_sys_sample(&res->sys_first, broker_pid);
}

static void run_end(bench_run_t *res, int broker_pid, long n)
{
    bench_first_t f = {res->sys_first.t_ns, 2, res->sys_first, broker_pid};
    bench_run_finish(res, &f, bench_now_ns(), n);
}

/* ---- baseline (a): a plain consume of the whole changelog ---- */

static int consume_all(bench_kafka_t *k, const bench_opts_t *o,
                       const char *topic, long n, bench_run_t *res)
{
    char err[256], group[160], id[64];
    int P = o->partitions, broker_pid = bench_kafka_broker_pid(k);
    snprintf(group, sizeof group, "bench-rec-plain-%s",
             bench_run_id(id, sizeof id));
    int64_t *next = calloc((size_t)P, sizeof *next);
    int64_t *hi = calloc((size_t)P, sizeof *hi);
    if (!next || !hi) {
        free(next);
        free(hi);
        snprintf(res->error, sizeof res->error, "out of memory");
        return -1;
    }
    run_begin(res, broker_pid);
    rd_kafka_conf_t *kc = bench_kafka_conf(k);
    bench_kafka_engine_consumer(kc, group);
    /* What the engine's recovery consumer changes (src/state/recovery.c). */
    rd_kafka_conf_set(kc, "enable.partition.eof", "true", NULL, 0);
    rd_kafka_conf_set(kc, "fetch.wait.max.ms", "10", NULL, 0);
    rd_kafka_conf_set(kc, "queued.min.messages", "200000", NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, sizeof err);
    if (!rk) {
        rd_kafka_conf_destroy(kc);
        snprintf(res->error, sizeof res->error, "consumer: %s", err);
        free(next);
        free(hi);
        return -1;
    }
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(P);
    int open = 0;
    for (int p = 0; p < P; p++) {
        int64_t lo = 0;
        rd_kafka_resp_err_t e =
            rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi[p], 10000);
        if (e) {
            snprintf(res->error, sizeof res->error, "watermarks of %s [%d]: %s",
                     topic, p, rd_kafka_err2str(e));
            goto out;
        }
        next[p] = lo;
        if (lo < hi[p]) {
            rd_kafka_topic_partition_list_add(tp, topic, p)->offset = lo;
            open++;
        }
    }
    rd_kafka_assign(rk, tp);
    long got = 0;
    uint64_t key_bytes = 0;
    int64_t deadline = bench_now_ns() + (int64_t)(o->timeout * 1e9);
    while (open > 0) {
        if (bench_now_ns() > deadline) {
            snprintf(res->error, sizeof res->error,
                     "timed out after %.0f s: %ld of %ld records", o->timeout,
                     got, n);
            goto out;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        int p = m->partition;
        if (p >= 0 && p < P && next[p] < hi[p]) {
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                next[p] = hi[p];
                open--;
            } else if (!m->err) {
                got++;
                key_bytes += m->key_len;
                next[p] = m->offset + 1;
                if (next[p] >= hi[p])
                    open--;
            }
        }
        rd_kafka_message_destroy(m);
    }
    run_end(res, broker_pid, n);
    if (got != n)
        snprintf(res->error, sizeof res->error,
                 "consumed %ld records, expected %ld (%llu key bytes)", got, n,
                 (unsigned long long)key_bytes);
out:
    rd_kafka_topic_partition_list_destroy(tp);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    bench_group_delete(k, group);
    free(next);
    free(hi);
    return res->error[0] ? -1 : 0;
}

/* ---- baseline (b): RocksDB bulk write of the same keys ---- */

static int rocks_write(const bench_opts_t *o, long n, int broker_pid,
                       bench_run_t *res)
{
    char dir[256];
    memset(res, 0, sizeof *res);
    if (!bench_tempdir("rocks", dir, sizeof dir)) {
        snprintf(res->error, sizeof res->error,
                 "cannot make a directory under $TMPDIR");
        return -1;
    }
    char *rerr = NULL;
    rocksdb_options_t *opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(opts, 1);
    rocksdb_options_set_compression(opts, rocksdb_lz4_compression);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_disable_WAL(wo, 1);
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    run_begin(res, broker_pid);
    rocksdb_t *db = rocksdb_open(opts, dir, &rerr);
    int64_t deadline = bench_now_ns() + (int64_t)(o->timeout * 1e9);
    for (long i = 0; db && !rerr && i < n; i++) {
        char key[BENCH_TABLE_KEY_MAX];
        unsigned char val[8];
        size_t kl = bench_table_key(key, i);
        bench_table_value(val, i);
        rocksdb_writebatch_put(wb, key, kl, (const char *)val, sizeof val);
        if (rocksdb_writebatch_count(wb) >= ROCKS_BATCH || i == n - 1) {
            rocksdb_write(db, wo, wb, &rerr);
            rocksdb_writebatch_clear(wb);
            if (bench_now_ns() > deadline && i < n - 1) {
                snprintf(res->error, sizeof res->error,
                         "timed out after %.0f s: %ld of %ld keys", o->timeout,
                         i + 1, n);
                break;
            }
        }
    }
    if (db && !rerr && !res->error[0])
        rocksdb_flush(db, fo, &rerr);
    if (db && !rerr && !res->error[0])
        run_end(res, broker_pid, n);
    if (rerr) {
        snprintf(res->error, sizeof res->error, "rocksdb: %s", rerr);
        rocksdb_free(rerr);
    }
    if (db)
        rocksdb_close(db);
    rocksdb_writebatch_destroy(wb);
    rocksdb_flushoptions_destroy(fo);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_options_destroy(opts);
    bench_rmtree(dir);
    return res->error[0] ? -1 : 0;
}

/* ---- mephisto ---- */

static mph_err_t idle_agent(mph_event_t *ev, void *opaque)
{
    (void)ev;
    (void)opaque;
    return MPH_OK;
}

/* Reads the app's public stats: "ready" (set once every worker's shards
 * were recovered and handed over) and "commits.rebalances" (counted as the
 * coordinator's rebalance callback begins, before the hand-over and its
 * recovery). 0, or -1 when the app stopped or the stats cannot be read. */
static int app_state(mph_app_t *app, mph_json_parser_t *p, bool *ready,
                     uint64_t *rebalances)
{
    char *json = NULL;
    size_t len = 0;
    if (!mph_app_running(app) || mph_app_stats_json(app, &json, &len))
        return -1;
    *ready = false;
    *rebalances = 0;
    /* The reader goes forward only: "ready" comes before "commits". */
    mph_err_t e = mph_json_parse(p, json, len, len);
    if (!e)
        e = mph_json_get_bool(p, MPH_JSON_ROOT, "ready", ready);
    if (!e && mph_json_get_u64(p, MPH_JSON_ROOT, "commits.rebalances",
                               rebalances) != MPH_OK)
        *rebalances = 0; /* null: not available yet */
    free(json);
    return e ? -1 : 0;
}

/* Reads SAMPLE keys spread over [0, n) and one never written; returns
 * how many keys were checked, or -1 with err. */
static int verify(mph_app_t *app, mph_table_t *t, long n, char *err,
                  size_t errsz)
{
    long step = n > SAMPLE ? n / SAMPLE : 1;
    int checked = 0;
    for (long i = 0; i < n; i += step, checked++) {
        long key_i = i + (i / step) % step; /* not always a multiple */
        if (key_i >= n)
            key_i = n - 1;
        char key[BENCH_TABLE_KEY_MAX];
        size_t kl = bench_table_key(key, key_i);
        void *v = NULL;
        size_t vl = 0;
        mph_err_t e = mph_table_lookup(app, t, key, kl, &v, &vl, 10000);
        int64_t got = 0;
        for (size_t b = 0; !e && b < vl && vl == 8; b++)
            got = (int64_t)(((uint64_t)got << 8) | ((unsigned char *)v)[b]);
        free(v);
        if (e || vl != 8 || got != bench_table_value_of(key_i)) {
            snprintf(err, errsz,
                     "verify: key %s: %s (%zu bytes, %lld, expected %lld)", key,
                     e ? mph_err_str(e) : "wrong value", vl, (long long)got,
                     (long long)bench_table_value_of(key_i));
            return -1;
        }
    }
    char key[BENCH_TABLE_KEY_MAX];
    size_t kl = bench_table_key(key, n);
    void *v = NULL;
    size_t vl = 0;
    mph_err_t e = mph_table_lookup(app, t, key, kl, &v, &vl, 10000);
    free(v);
    if (e != MPH_ERR_NOENT) {
        snprintf(err, errsz, "verify: key %s was never written but reads %s",
                 key, mph_err_str(e));
        return -1;
    }
    return checked + 1;
}

static int recover(bench_kafka_t *k, const bench_opts_t *o, const char *app_id,
                   const char *in, const char *store, long n, int *verified,
                   double *start_to_ready_s, bench_run_t *res)
{
    char err[512], datadir[256] = "";
    int broker_pid = bench_kafka_broker_pid(k);
    memset(res, 0, sizeof *res);
    mph_json_parser_t *p = mph_json_parser_new(0, err, sizeof err);
    /* Always a new datadir: a RocksDB shard left by an earlier round
     * would make recovery start from its checkpoint. */
    mph_app_t *app = p ? bench_app_new_tmp(k, o, app_id, false, datadir,
                                           sizeof datadir, err, sizeof err)
                       : NULL;
    if (!app) {
        snprintf(res->error, sizeof res->error, "%s", err);
        goto out;
    }
    mph_table_opts_t *to = mph_table_opts_new();
    char parts[16];
    snprintf(parts, sizeof parts, "%d", o->partitions);
    mph_topic_t *tin = mph_topic_new(app, in, NULL, err, sizeof err);
    mph_table_t *t = NULL;
    if (to && tin &&
        !mph_table_opts_set(to, "value_codec", "i64", err, sizeof err) &&
        !mph_table_opts_set(to, "partitions", parts, err, sizeof err) &&
        !mph_table_opts_set(to, "store", store, err, sizeof err))
        t = mph_table_new(app, "t", to, err, sizeof err);
    mph_table_opts_destroy(to);
    if (!t ||
        !mph_agent_new(app, "idle", tin, idle_agent, NULL, err, sizeof err)) {
        snprintf(res->error, sizeof res->error, "%s", err);
        goto out;
    }
    run_begin(res, broker_pid);
    int64_t t_start = res->sys_first.t_ns;
    if (mph_app_start(app, err, sizeof err) != MPH_OK) {
        snprintf(res->error, sizeof res->error, "%s", err);
        goto out;
    }
    /* Polled every POLL_MS: the last poll that saw no rebalance yet starts
     * the clock, so the time is never understated and overstated by at most
     * one poll; the machine sample is taken there. */
    int64_t deadline = bench_now_ns() + (int64_t)(o->timeout * 1e9);
    bool ready = false;
    uint64_t rebalances = 0;
    int st;
    while ((st = app_state(app, p, &ready, &rebalances)) == 0 && !ready) {
        if (rebalances == 0)
            bench_sys_sample(&res->sys_first, broker_pid);
        if (bench_now_ns() > deadline)
            break;
        bench_sleep_ms(POLL_MS);
    }
    if (!ready) {
        snprintf(res->error, sizeof res->error,
                 st ? "the app stopped before it was ready (see its log)"
                    : "not ready after %.0f s",
                 o->timeout);
        goto out;
    }
    run_end(res, broker_pid, n);
    *start_to_ready_s = (double)(res->sys_end.t_ns - t_start) / 1e9;
    if ((*verified = verify(app, t, n, err, sizeof err)) < 0)
        snprintf(res->error, sizeof res->error, "%s", err);
out:
    if (app) {
        mph_err_t e = mph_app_stop(app);
        if (e && !res->error[0])
            snprintf(res->error, sizeof res->error, "app stopped with %s",
                     mph_err_str(e));
        mph_app_destroy(app);
    }
    mph_json_parser_destroy(p);
    bench_rmtree(datadir);
    bench_app_forget(k, app_id);
    return res->error[0] ? -1 : 0;
}

/* ---- the scenario ---- */

static double median_of(const bench_series_t *s)
{
    double v[BENCH_MAX_ROUNDS];
    memcpy(v, s->rate, sizeof v);
    return bench_median(v, s->n);
}

static int run(const bench_opts_t *o)
{
    char err[512], id[64], app_id[128], in[160], changelog[200], common[400];
    long n = o->keys_set       ? o->keys
             : o->messages_set ? o->messages
                               : DEFAULT_KEYS;
    bench_opts_t oo = *o;
    oo.keys = (int)n;
    bench_params_common(&oo, common, sizeof common);
    bench_result_t r[2];
    const int store_side[2] = {S_ROCKSDB, S_MEMORY};
    for (int s = 0; s < 2; s++) {
        const char *store = side_names[store_side[s]];
        bench_result_init(&r[s], "recovery");
        snprintf(r[s].label, sizeof r[s].label, "%s p=%d w=%d keys=%ld", store,
                 o->partitions, o->workers, n);
        snprintf(r[s].params, sizeof r[s].params,
                 "{%s,\"store\":\"%s\",\"baselines\":[\"consume\","
                 "\"rocksdb_write\"]}",
                 common, store);
    }
    char *error = r[0].error;
    size_t error_size = sizeof r[0].error;
    bench_kafka_t *k = bench_kafka_new(o->broker, err, sizeof err);
    if (!k) {
        snprintf(error, error_size, "%s", err);
        goto report;
    }
    snprintf(app_id, sizeof app_id, "bench-rec-%s",
             bench_run_id(id, sizeof id));
    snprintf(in, sizeof in, "%s-in", app_id);
    snprintf(changelog, sizeof changelog, "%s-t-changelog", app_id);
    bench_series_t ser[NSIDES];
    memset(ser, 0, sizeof ser);
    int verified = 0;
    double startup[NSIDES][BENCH_MAX_ROUNDS];
    static const char *const compact[] = {"cleanup.policy", "compact", NULL};
    if (bench_topic_create(k, in, o->partitions, err, sizeof err) ||
        bench_topic_create_conf(k, changelog, o->partitions, compact, err,
                                sizeof err)) {
        snprintf(error, error_size, "%s", err);
        goto out;
    }
    bench_progress(o, "recovery: producing %ld keys into %s", n, changelog);
    if (bench_load_table(k, o, changelog, n, err, sizeof err) != n) {
        snprintf(error, error_size, "%s", err[0] ? err : "load incomplete");
        goto out;
    }
    for (int i = 0; i < o->repeat && i < BENCH_MAX_ROUNDS; i++) {
        for (int j = 0; j < NSIDES; j++) {
            int side = bench_round_side(i, j, NSIDES);
            bench_run_t res;
            switch (side) {
            case S_CONSUME:
                consume_all(k, o, changelog, n, &res);
                break;
            case S_ROCKS_WRITE:
                rocks_write(o, n, bench_kafka_broker_pid(k), &res);
                break;
            default:
                recover(k, o, app_id, in, side_names[side], n, &verified,
                        &startup[side][ser[side].n], &res);
            }
            if (res.error[0]) {
                snprintf(error, error_size, "%s: %s", side_names[side],
                         res.error);
                goto out;
            }
            double rate = bench_series_add(&ser[side], &res);
            bench_progress(o,
                           "recovery %s round %d/%d: %.0f keys/s (%.2f s, "
                           "%.2f s CPU, peak RSS %ld KiB)",
                           side_names[side], i + 1, o->repeat, rate,
                           res.seconds, res.cpu_s, res.peak_rss_kb);
        }
    }
    double consume = median_of(&ser[S_CONSUME]);
    double write = median_of(&ser[S_ROCKS_WRITE]);
    bool consume_min = consume <= write;
    for (int s = 0; s < 2; s++) {
        bench_series_result(&ser[store_side[s]], NULL, "", n, 8, &r[s]);
        r[s].mb_per_s = NAN; /* keys, not records of --size */
        r[s].baseline_msgs_per_s = consume_min ? consume : write;
        r[s].ratio = r[s].msgs_per_s / r[s].baseline_msgs_per_s;
        bench_extra(&r[s],
                    ",\"keys_per_s\":%.1f,\"min_baseline\":\"%s\","
                    "\"consume_keys_per_s\":%.1f,\"consume_runs\":[%s],"
                    "\"rocksdb_write_keys_per_s\":%.1f,"
                    "\"rocksdb_write_runs\":[%s],\"verified_keys\":%d",
                    r[s].msgs_per_s, consume_min ? "consume" : "rocksdb_write",
                    consume, ser[S_CONSUME].runs, write,
                    ser[S_ROCKS_WRITE].runs, verified);
        bench_extra(&r[s], ",\"start_to_ready_s\":%.3f",
                    bench_median(startup[store_side[s]], ser[store_side[s]].n));
        bench_sys_describe(&ser[S_CONSUME].sys, "consume_", &r[s]);
        snprintf(r[s].target, sizeof r[s].target,
                 "ratio >= %.1f, >= %.0f keys/s (min: %s)", TARGET_RATIO,
                 TARGET_KEYS_S, consume_min ? "consume" : "rocksdb_write");
        r[s].target_met =
            r[s].ratio >= TARGET_RATIO && r[s].msgs_per_s >= TARGET_KEYS_S;
    }
out:
    bench_topic_delete(k, in);
    bench_topic_delete(k, changelog);
    bench_kafka_destroy(k);
report:
    return bench_report_lines(o, r, 2, error);
}

const bench_scenario_t bench_scn_recovery = {
    "recovery",
    "rebuild a table of N keys from its changelog (rocksdb and memory "
    "stores) vs a plain consume of it and a RocksDB bulk write",
    run};
