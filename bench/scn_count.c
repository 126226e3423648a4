/*
 * count: a count per key (the record's key, the "user") into an i64 table
 * with a changelog, once with the memory store and once with the rocksdb
 * store (an empty temp datadir each run), against mephisto's own
 * passthrough (consume → read the JSON field "user" → produce, pipeline.c)
 * on the same input, in interleaved rounds of the same invocation. The
 * count agent reads the same field before it increments, so the ratio is
 * what a table write with its changelog costs instead of a produce.
 *
 * Timing: the passthrough from the first record consumed until the output
 * topic's end offsets grew by n; the counts from the first record consumed
 * until every record was processed and the group's committed offsets
 * reached the input's end, so the changelog flushes are included (and up
 * to one commit_interval_ms of waiting for the last commit: run enough
 * records that this is small).
 *
 * One result line per store; both share the passthrough median. Targets
 * (reported, never asserted): memory >= 0.6, rocksdb >= 0.5.
 *
 * --guarantee exactly_once: per store, the count under exactly_once against
 * the same count under at_least_once (eos.c: both at commit_interval_ms=100,
 * every key's count checked in the changelog read_committed after each
 * run); target >= 0.7. The passthrough does not run.
 */
#include <stdio.h>
#include <string.h>

#include "bench.h"

#define NSIDES 3

typedef struct cnt_side {
    bench_kafka_t *k;
    const bench_tablerun_spec_t *spec;
    const char *in;
    long n;
} cnt_side_t;

static int cnt_side(void *ctx, const bench_opts_t *side, const char *label,
                    bench_run_t *res)
{
    cnt_side_t *c = ctx;
    return bench_tablerun(c->k, side, c->spec, label, c->in, c->n, res);
}

/* --guarantee exactly_once: per store, exactly_once against at_least_once. */
static void run_eos(const bench_opts_t *o, bench_kafka_t *k,
                    bench_tablerun_spec_t *spec, const char *in,
                    bench_result_t *r)
{
    for (int s = 0; s < NSIDES - 1; s++) {
        spec[s].check_counts = true;
        cnt_side_t side = {k, &spec[s], in, o->messages};
        if (bench_guarantee_compare(o, cnt_side, &side, o->messages, &r[s]))
            return;
    }
}

static const struct {
    const char *store;
    double target;
} stores[NSIDES - 1] = {{"memory", 0.6}, {"rocksdb", 0.5}};

static int run(const bench_opts_t *o)
{
    char err[512], id[64], in[128], out[128], common[400];
    bench_result_t r[NSIDES - 1];
    for (int s = 0; s < NSIDES - 1; s++) {
        bench_result_init(&r[s], "count");
        snprintf(r[s].label, sizeof r[s].label, "%s p=%d w=%d keys=%d",
                 stores[s].store, o->partitions, o->workers, o->keys);
    }
    bench_params_common(o, common, sizeof common);
    for (int s = 0; s < NSIDES - 1; s++)
        snprintf(r[s].params, sizeof r[s].params,
                 "{%s,\"messages\":%ld,\"store\":\"%s\","
                 "\"baseline\":\"passthrough\"}",
                 common, o->messages, stores[s].store);
    if (o->exactly_once)
        for (int s = 0; s < NSIDES - 1; s++) {
            snprintf(r[s].label, sizeof r[s].label,
                     "%s exactly_once p=%d w=%d keys=%d", stores[s].store,
                     o->partitions, o->workers, o->keys);
            snprintf(r[s].params, sizeof r[s].params,
                     "{%s,\"messages\":%ld,\"store\":\"%s\","
                     "\"guarantee\":\"exactly_once\","
                     "\"baseline\":\"at_least_once\","
                     "\"commit_interval_ms\":%s}",
                     common, o->messages, stores[s].store,
                     BENCH_EOS_COMMIT_INTERVAL_MS);
        }
    char *error = r[0].error;
    size_t error_size = sizeof r[0].error;

    bench_kafka_t *k = bench_kafka_new(o->broker, err, sizeof err);
    if (!k) {
        snprintf(error, error_size, "%s", err);
        goto report;
    }
    bench_run_id(id, sizeof id);
    snprintf(in, sizeof in, "bench-cnt-%s-in", id);
    snprintf(out, sizeof out, "bench-cnt-%s-out", id);
    bench_series_t ser[NSIDES]; /* [0] passthrough, then per store */
    memset(ser, 0, sizeof ser);
    bench_tablerun_spec_t spec[NSIDES - 1];
    for (int s = 0; s < NSIDES - 1; s++)
        spec[s] = (bench_tablerun_spec_t){
            .kind = s == 0 ? "cntm" : "cntr",
            .store = stores[s].store,
            .field = "user",
        };
    if (bench_topic_create(k, out, o->partitions, err, sizeof err) ||
        bench_input(k, o, "count", in, err, sizeof err)) {
        snprintf(error, error_size, "%s", err);
        goto out;
    }
    long n = o->messages;
    if (o->exactly_once) {
        run_eos(o, k, spec, in, r);
        goto out;
    }
    for (int i = 0; i < o->repeat && i < BENCH_MAX_ROUNDS; i++) {
        /* Vary the order so that drift favours no side. */
        for (int j = 0; j < NSIDES; j++) {
            int side = bench_round_side(i, j, NSIDES);
            const char *name =
                side == 0 ? "passthrough" : stores[side - 1].store;
            char label[96];
            snprintf(label, sizeof label, "count %s round %d/%d", name, i + 1,
                     o->repeat);
            bench_run_t res;
            int rc =
                side == 0
                    ? bench_passthrough_run(k, o, BENCH_ENGINE_MEPHISTO, label,
                                            in, out, o->partitions, n, &res)
                    : bench_tablerun(k, o, &spec[side - 1], label, in, n, &res);
            if (rc || res.error[0]) {
                snprintf(error, error_size, "%s: %s", name, res.error);
                goto out;
            }
            double rate = bench_series_add(&ser[side], &res);
            bench_progress(o,
                           "%s: %.0f records/s, %.2f s CPU, peak RSS %ld KiB",
                           label, rate, res.cpu_s, res.peak_rss_kb);
        }
    }
    for (int s = 0; s < NSIDES - 1; s++) {
        bench_series_result(&ser[s + 1], &ser[0], "passthrough_", n, o->size,
                            &r[s]);
        snprintf(r[s].target, sizeof r[s].target, "ratio >= %.1f",
                 stores[s].target);
        r[s].target_met = r[s].ratio >= stores[s].target;
    }
out:
    bench_topic_delete(k, in);
    bench_topic_delete(k, out);
    bench_kafka_destroy(k);
report:
    /* Under exactly_once a store's line may fail on its own. */
    return bench_report_lines(o, r, NSIDES - 1, error) ||
                   r[NSIDES - 2].error[0]
               ? 1
               : 0;
}

const bench_scenario_t bench_scn_count = {
    "count",
    "count per key in a table with changelog (memory and rocksdb stores) vs "
    "mephisto's passthrough",
    run};
