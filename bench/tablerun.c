/*
 * Table runs shared by the scenarios that count into a table (count,
 * window): one mephisto app with an agent over an input topic that reads a
 * JSON field of every record and writes a table with a changelog, timed
 * from the first record consumed until every record was processed and the
 * group's committed offsets reached the input's end. Under at_least_once an
 * offset is committed only after the changelog records of the changes it
 * caused were acknowledged, so the time includes the table's changelog
 * flushes (and up to one commit_interval_ms of waiting for the last
 * commit). The main thread watches an atomic counter while records flow and
 * asks the broker for committed offsets only once all were processed, with
 * one client kept for the run.
 *
 * With spec->check_counts (count under --guarantee exactly_once) the
 * changelog is read read_committed after the app stopped and every key's
 * latest value is checked against its true count (eos.c).
 *
 * Each run gets a fresh app_id (so a fresh consumer group and changelog),
 * its changelog precreated (the mock cluster cannot create topics through
 * the admin API, and a real broker then has the leaders before recovery
 * asks), and a fresh empty datadir under $TMPDIR unless --set datadir=...
 * names one; the datadir is removed afterwards.
 *
 * Also here: bench_series_t, the per-side accumulator of interleaved runs
 * (medians of rate, seconds and CPU, the list of rates, what the machine
 * did) and its conversion into a result line against a baseline series.
 */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "mephisto/json.h"

/* ---- interleaved series ---- */

double bench_series_add(bench_series_t *s, const bench_run_t *run)
{
    double rate = (double)run->messages / run->seconds;
    if (s->n < BENCH_MAX_ROUNDS) {
        s->rate[s->n] = rate;
        s->seconds[s->n] = run->seconds;
        s->cpu[s->n] = run->cpu_s;
        s->n++;
    }
    size_t used = strlen(s->runs);
    snprintf(s->runs + used, sizeof s->runs - used, "%s%.1f", used ? "," : "",
             rate);
    if (run->peak_rss_kb > s->peak_rss_kb)
        s->peak_rss_kb = run->peak_rss_kb;
    bench_sys_add(&s->sys, &run->sys_first, &run->sys_end);
    return rate;
}

void bench_series_result(bench_series_t *mine, bench_series_t *base,
                         const char *base_prefix, long n, int size,
                         bench_result_t *r)
{
    /* Copies: bench_median sorts in place, and one baseline series may
     * serve several result lines. */
    double v[BENCH_MAX_ROUNDS];
    memcpy(v, mine->rate, sizeof v);
    r->messages = (uint64_t)n;
    r->msgs_per_s = bench_median(v, mine->n);
    memcpy(v, mine->seconds, sizeof v);
    r->seconds = bench_median(v, mine->n);
    r->mb_per_s = r->msgs_per_s * size / 1e6;
    memcpy(v, mine->cpu, sizeof v);
    r->cpu_s = bench_median(v, mine->n);
    r->peak_rss_kb = mine->peak_rss_kb;
    bench_extra(r, ",\"cpu_us_per_msg\":%.3f,\"runs_msgs_per_s\":[%s]",
                r->cpu_s * 1e6 / (double)n, mine->runs);
    if (base) {
        memcpy(v, base->rate, sizeof v);
        r->baseline_msgs_per_s = bench_median(v, base->n);
        r->ratio = r->msgs_per_s / r->baseline_msgs_per_s;
        memcpy(v, base->cpu, sizeof v);
        double bc = bench_median(v, base->n);
        r->baseline_cpu_s = bc;
        const char *bp = base_prefix;
        bench_extra(
            r,
            ",\"%scpu_s\":%.3f,\"%scpu_us_per_msg\":%.3f,\"%speak_rss_kb\":%ld,"
            "\"%sruns_msgs_per_s\":[%s]",
            bp, bc, bp, bc * 1e6 / (double)n, bp, base->peak_rss_kb, bp,
            base->runs);
        bench_sys_describe(&base->sys, bp, r);
    }
    bench_sys_describe(&mine->sys, "", r);
}

int bench_round_side(int round, int j, int nsides)
{
    /* Rotated by the round, and reversed on odd rounds, so that no side
     * always follows the same other side (what a run leaves behind — disk
     * writeback, broker caches — then lands on different sides). */
    return round % 2 == 0 ? (round + j) % nsides
                          : (round + nsides - j) % nsides;
}

/* ---- the table run ---- */

void bench_tablerun_first(bench_tablerun_t *c)
{
    bench_first_mark(&c->first);
}

void bench_tablerun_done(bench_tablerun_t *c)
{
    __atomic_add_fetch(&c->processed, 1, __ATOMIC_RELAXED);
}

mph_err_t bench_tablerun_read(bench_tablerun_t *c, mph_event_t *ev)
{
    mph_json_parser_t *p = mph_event_json(ev, NULL);
    if (!p)
        return MPH_ERR_DECODE;
    if (c->spec->field_i64) {
        int64_t v;
        return mph_json_get_i64(p, MPH_JSON_ROOT, c->spec->field, &v);
    }
    const char *s;
    size_t n;
    return mph_json_get_str(p, MPH_JSON_ROOT, c->spec->field, &s, &n);
}

mph_err_t bench_tablerun_count_agent(mph_event_t *ev, void *opaque)
{
    bench_tablerun_t *c = opaque;
    bench_tablerun_first(c);
    size_t kl;
    const void *k = mph_event_key(ev, &kl);
    mph_err_t err = bench_tablerun_read(c, ev);
    if (!err)
        err = mph_table_incr(ev, c->table, k, kl, 1, NULL);
    bench_tablerun_done(c);
    return err;
}

int bench_tablerun_declare(bench_tablerun_t *c, mph_app_t *app,
                           const bench_opts_t *o, const char *in, char *err,
                           size_t errsz)
{
    const bench_tablerun_spec_t *spec = c->spec;
    mph_table_opts_t *to = mph_table_opts_new();
    char parts[16];
    snprintf(parts, sizeof parts, "%d", o->partitions);
    if (!to || mph_table_opts_set(to, "value_codec", "i64", err, errsz) ||
        mph_table_opts_set(to, "partitions", parts, err, errsz) ||
        (spec->store &&
         mph_table_opts_set(to, "store", spec->store, err, errsz))) {
        mph_table_opts_destroy(to);
        return -1;
    }
    mph_topic_t *tin = mph_topic_new(app, in, NULL, err, errsz);
    c->table = tin ? mph_table_new(app, "counts", to, err, errsz) : NULL;
    mph_table_opts_destroy(to);
    if (!c->table || (spec->setup && spec->setup(c, err, errsz)))
        return -1;
    if (!mph_agent_new(app, "count", tin,
                       spec->agent ? spec->agent : bench_tablerun_count_agent,
                       c, err, errsz))
        return -1;
    return 0;
}

/* A table run's end: the group's committed offsets reached in's end. */
typedef struct tr_watch {
    bench_tablerun_t *c;
    rd_kafka_t *reader;
    const char *in;
    int partitions;
    long n;
} tr_watch_t;

static uint64_t tr_processed(void *ctx)
{
    return __atomic_load_n(&((tr_watch_t *)ctx)->c->processed,
                           __ATOMIC_RELAXED);
}

static bool tr_finished(void *ctx)
{
    tr_watch_t *w = ctx;
    return bench_committed(w->reader, w->in, w->partitions) >= (int64_t)w->n;
}

int bench_tablerun(bench_kafka_t *k, const bench_opts_t *o,
                   const bench_tablerun_spec_t *spec, const char *label,
                   const char *in, long n, bench_run_t *res)
{
    char err[500], id[64], group[128], changelog[200], datadir[256] = "";
    memset(res, 0, sizeof *res);
    bench_tablerun_t c;
    memset(&c, 0, sizeof c);
    c.spec = spec;
    c.first.broker_pid = bench_kafka_broker_pid(k);
    snprintf(group, sizeof group, "bench-%s-%s", spec->kind,
             bench_run_id(id, sizeof id));
    snprintf(changelog, sizeof changelog, "%s-counts-changelog", group);
    if (bench_topic_create(k, changelog, o->partitions, err, sizeof err)) {
        snprintf(res->error, sizeof res->error, "%s", err);
        return -1;
    }
    for (int i = 0;
         i < 60 && bench_end_offsets(k, changelog, o->partitions) < 0; i++)
        bench_sleep_ms(500);
    int rc = -1;
    mph_app_t *app = bench_app_new_tmp(k, o, group, true, datadir,
                                       sizeof datadir, err, sizeof err);
    if (!app) {
        snprintf(res->error, sizeof res->error, "%s", err);
        goto out;
    }
    if (bench_tablerun_declare(&c, app, o, in, err, sizeof err)) {
        snprintf(res->error, sizeof res->error, "%s", err);
        goto out;
    }
    bench_rss_reset();
    if (mph_app_start(app, err, sizeof err) != MPH_OK) {
        snprintf(res->error, sizeof res->error, "%s", err);
        goto out;
    }
    int64_t t_end = 0;
    tr_watch_t tw = {&c, NULL, in, o->partitions, n};
    if (!(tw.reader = bench_offsets_reader(k, group, err, sizeof err))) {
        snprintf(res->error, sizeof res->error, "offsets reader: %s", err);
        goto out;
    }
    bench_watch_t watch = {tr_processed, tr_finished, &tw, 10};
    int wrc =
        bench_watch(o, &watch, label, n, &t_end, res->error, sizeof res->error);
    rd_kafka_destroy(tw.reader);
    if (wrc)
        goto out;
    bench_run_finish(res, &c.first, t_end, n);
    bench_callgrind_dump(label);
    if (spec->finish)
        spec->finish(&c);
    rc = 0;
out:
    if (app) {
        mph_err_t e = mph_app_stop(app);
        if (e && rc == 0)
            snprintf(res->error, sizeof res->error, "app stopped with %s",
                     mph_err_str(e));
        mph_app_destroy(app);
    }
    /* After the app stopped: every transaction is closed. */
    if (rc == 0 && spec->check_counts && !res->error[0] &&
        bench_check_counts(k, o, changelog, o->partitions, n,
                           o->run_exactly_once, res->check,
                           sizeof res->check))
        snprintf(res->error, sizeof res->error, "count check: %s",
                 res->check);
    bench_rmtree(datadir);
    bench_app_forget(k, group);
    bench_topic_delete(k, changelog);
    return res->error[0] ? -1 : rc;
}
