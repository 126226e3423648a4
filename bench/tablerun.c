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

/* ---- the table run ---- */

void bench_tablerun_first(bench_tablerun_t *c)
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

static bool user_datadir(const bench_opts_t *o)
{
    for (int i = 0; i < o->nsets; i++)
        if (strncmp(o->sets[i], "datadir=", 8) == 0)
            return true;
    return false;
}

/* Declares the input topic, the table and the agent on app. */
static int declare(bench_tablerun_t *c, mph_app_t *app, const bench_opts_t *o,
                   const char *in, char *err, size_t errsz)
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

/* Waits until n records were processed and committed; 0 with *t_end, or
 * -1 with the error in res. */
static int wait_committed(bench_kafka_t *k, const bench_opts_t *o,
                          bench_tablerun_t *c, const char *group,
                          const char *label, const char *in, long n,
                          int64_t *t_end, bench_run_t *res)
{
    char err[256];
    rd_kafka_t *reader = bench_offsets_reader(k, group, err, sizeof err);
    if (!reader) {
        snprintf(res->error, sizeof res->error, "offsets reader: %s", err);
        return -1;
    }
    int rc = -1;
    int64_t start = bench_now_ns(), last = start;
    int64_t deadline = start + (int64_t)(o->timeout * 1e9);
    uint64_t prev = 0;
    for (;;) {
        int64_t now = bench_now_ns();
        uint64_t done = __atomic_load_n(&c->processed, __ATOMIC_RELAXED);
        if (done >= (uint64_t)n &&
            bench_committed(reader, in, o->partitions) >= (int64_t)n) {
            *t_end = bench_now_ns();
            rc = 0;
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
            snprintf(res->error, sizeof res->error,
                     "timed out after %.0f s: %llu of %ld records processed",
                     o->timeout, (unsigned long long)done, n);
            break;
        }
        bench_sleep_ms(done >= (uint64_t)n ? 10 : 5);
    }
    rd_kafka_destroy(reader);
    return rc;
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
    c.broker_pid = bench_kafka_broker_pid(k);
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
    mph_app_t *app = NULL;
    mph_conf_t *conf = bench_app_conf(k, o, group, err, sizeof err);
    if (conf && !user_datadir(o)) {
        if (!bench_tempdir(spec->kind, datadir, sizeof datadir)) {
            snprintf(err, sizeof err, "cannot make a datadir under $TMPDIR");
            datadir[0] = 0;
            mph_conf_destroy(conf);
            conf = NULL;
        } else if (mph_conf_set(conf, "datadir", datadir, err, sizeof err)) {
            mph_conf_destroy(conf);
            conf = NULL;
        }
    }
    if (!conf || !(app = mph_app_new(conf, err, sizeof err))) {
        mph_conf_destroy(conf);
        snprintf(res->error, sizeof res->error, "%s", err);
        goto out;
    }
    if (declare(&c, app, o, in, err, sizeof err)) {
        snprintf(res->error, sizeof res->error, "%s", err);
        goto out;
    }
    bench_rss_reset();
    if (mph_app_start(app, err, sizeof err) != MPH_OK) {
        snprintf(res->error, sizeof res->error, "%s", err);
        goto out;
    }
    int64_t t_end = 0;
    if (wait_committed(k, o, &c, group, label, in, n, &t_end, res))
        goto out;
    bench_sys_sample(&res->sys_end, c.broker_pid);
    res->messages = (uint64_t)n;
    res->seconds =
        (double)(t_end - __atomic_load_n(&c.t_first, __ATOMIC_ACQUIRE)) / 1e9;
    if (__atomic_load_n(&c.sys_state, __ATOMIC_ACQUIRE) == 2) {
        res->sys_first = c.sys_first;
        res->cpu_s = res->sys_end.self_cpu_s - c.sys_first.self_cpu_s;
    }
    res->peak_rss_kb = bench_rss_peak_kb();
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
    bench_rmtree(datadir);
    bench_group_delete(k, group);
    bench_topic_delete(k, changelog);
    return res->error[0] ? -1 : rc;
}
