/*
 * partitions: passthrough (pipeline.c) at each count of --partition-list
 * (default 8, 64, 512, 4096). The ratio is mephisto's records/s at this
 * count over its records/s at the first count, so > 1 would mean more
 * partitions made it faster; peak RSS shows what partitions cost in memory.
 * Unless --no-baseline, the plain librdkafka loop runs too (interleaved) and
 * is reported as loop_msgs_per_s, to tell mephisto's per-partition costs from
 * librdkafka's. Targets (reported, never asserted), at the largest count:
 * CPU per record ≤ 1.1 × the plain loop's at that count (with the loop) and
 * ≤ 1.5 × mephisto's own at the first count. rss_per_partition_kb is the
 * growth of peak RSS from the first count over the partitions added. For
 * figures the broker does not skew, run it on a freshly started broker
 * (topics are deleted after each count; each run writes to an output topic
 * of its own, see bench_passthrough_compare).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

static int run(const bench_opts_t *o)
{
    char err[500], id[64], in[128], out[128], common[400];
    double first = NAN, first_cpu = NAN;
    int failed = 0;
    double rate[BENCH_MAX_PARTITION_LIST], loop[BENCH_MAX_PARTITION_LIST];
    long rss[BENCH_MAX_PARTITION_LIST];
    bench_params_common(o, common, sizeof common);

    bench_kafka_t *k = bench_kafka_new(o->broker, err, sizeof err);
    if (!k) {
        bench_result_t r;
        bench_result_init(&r, "partitions");
        snprintf(r.error, sizeof r.error, "%s", err);
        bench_report(o, &r);
        return 1;
    }
    for (int i = 0; i < o->npartition_list; i++) {
        int p = o->partition_list[i];
        rate[i] = loop[i] = NAN;
        rss[i] = -1;
        bench_result_t r;
        bench_result_init(&r, "partitions");
        snprintf(r.label, sizeof r.label, "p=%d w=%d", p, o->workers);
        snprintf(r.params, sizeof r.params,
                 "{%s,\"messages\":%ld,\"scenario_partitions\":%d}", common,
                 o->messages, p);
        bench_run_id(id, sizeof id);
        snprintf(in, sizeof in, "bench-parts-%s-in", id);
        snprintf(out, sizeof out, "bench-parts-%s-out", id);
        bench_progress(
            o, "partitions: %d: creating topics and loading %ld records", p,
            o->messages);
        long n = 0;
        if (bench_topic_create(k, in, p, err, sizeof err) ||
            (n = bench_load(k, o, in, o->messages, err, sizeof err)) !=
                o->messages) {
            snprintf(r.error, sizeof r.error, "%s",
                     err[0] ? err : "load incomplete");
        } else if (bench_passthrough_compare(k, o, !o->no_baseline, "loop_", in,
                                             out, p, n, &r) == 0) {
            rate[i] = r.msgs_per_s;
            rss[i] = r.peak_rss_kb;
            double cpu = r.cpu_s * 1e6 / (double)n; /* µs per record */
            double loop_cpu = r.baseline_cpu_s * 1e6 / (double)n;
            if (!o->no_baseline) {
                loop[i] = r.baseline_msgs_per_s;
                bench_extra(&r,
                            ",\"loop_msgs_per_s\":%.1f,\"ratio_vs_loop\":%.4f"
                            ",\"cpu_vs_loop\":%.4f",
                            loop[i], r.ratio, cpu / loop_cpu);
            }
            if (isnan(first)) {
                first = r.msgs_per_s;
                first_cpu = cpu;
            } else if (rss[0] > 0) {
                bench_extra(&r, ",\"rss_per_partition_kb\":%.1f",
                            (double)(rss[i] - rss[0]) /
                                (double)(p - o->partition_list[0]));
            }
            bench_extra(&r, ",\"cpu_vs_first\":%.4f", cpu / first_cpu);
            r.baseline_msgs_per_s = first;
            r.ratio = r.msgs_per_s / first;
            if (i == o->npartition_list - 1 && i > 0) {
                bool vs_loop = !o->no_baseline;
                snprintf(r.target, sizeof r.target,
                         "cpu/rec %s<= 1.5x p=%d's", vs_loop ? "<= 1.1x loop's, " : "",
                         o->partition_list[0]);
                r.target_met = cpu <= 1.5 * first_cpu &&
                               (!vs_loop || cpu <= 1.1 * loop_cpu);
            }
        }
        if (r.error[0])
            failed++;
        bench_report(o, &r);
        bench_topic_delete(k, in);
    }

    char path[1100];
    FILE *f = bench_plot_data(o, "partitions.dat", path, sizeof path);
    if (f) {
        for (int i = 0; i < o->npartition_list; i++)
            fprintf(f, "%d %.1f %.1f %.1f\n", o->partition_list[i], rate[i],
                    loop[i], rss[i] / 1024.0);
        fclose(f);
        char script[1200];
        snprintf(
            script, sizeof script,
            "set title 'passthrough throughput and memory vs partitions (%d "
            "workers)'\n"
            "set xlabel 'partitions'\nset logscale x 2\nset ylabel "
            "'records/s'\n"
            "set y2label 'peak RSS (MiB)'\nset ytics nomirror\nset y2tics\nset "
            "grid\n"
            "set key top right\nset yrange [0:*]\nset y2range [0:*]\n"
            "plot '%s/partitions.dat' using 1:2 with linespoints lw 2 title "
            "'mephisto', "
            "'' using 1:3 with linespoints lw 2 title 'plain librdkafka loop', "
            "'' using 1:4 axes x1y2 with linespoints dt 2 title 'mephisto peak "
            "RSS'\n",
            o->workers, o->plot_dir);
        bench_plot(o, "partitions", script);
    }
    bench_kafka_destroy(k);
    return failed ? 1 : 0;
}

const bench_scenario_t bench_scn_partitions = {
    "partitions",
    "passthrough at 8, 64, 512, 4096 partitions: throughput vs the first "
    "count, CPU per record vs the plain loop and the first count, RSS",
    run};
