/*
 * json: decoding cost alone, in this process, no Kafka. The same records
 * (--size, default 200 bytes here) are read through mephisto's JSON shim
 * (mph_json_parse + two lookups: "user" as a string, "seq" as an integer)
 * and through bare simdjson on-demand in C++ (json_baseline.cc) doing the
 * same, in interleaved rounds; the median ns/record of each is reported and
 * ratio = simdjson ns / shim ns (> 1: the shim is faster). Both parse in
 * place (records are followed by MPH_JSON_PADDING readable bytes).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "json_baseline.h"
#include "mephisto/json.h"

static int shim_decode(mph_json_parser_t *p, char *const *recs,
                       const size_t *lens, size_t n, uint64_t *checksum)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s;
        size_t sl;
        uint64_t seq;
        if (mph_json_parse(p, recs[i], lens[i], lens[i] + MPH_JSON_PADDING) !=
                MPH_OK ||
            mph_json_get_str(p, MPH_JSON_ROOT, "user", &s, &sl) != MPH_OK ||
            mph_json_get_u64(p, MPH_JSON_ROOT, "seq", &seq) != MPH_OK)
            return -1;
        sum += sl + seq;
    }
    *checksum += sum;
    return 0;
}

static int run(const bench_opts_t *o)
{
    char err[256];
    bench_result_t r;
    bench_result_init(&r, "json");
    int size = o->size_set ? o->size : 200;
    /* Enough distinct records to defeat the branch predictor's memory, few
     * enough to stay in cache: the scenario measures parsing, not DRAM. */
    size_t n = (size_t)(o->messages < 20000 ? o->messages : 20000);
    long total = o->messages_set ? o->messages : 2000000;
    int rounds = o->repeat < 3 ? 3 : o->repeat;
    snprintf(r.label, sizeof r.label, "%d B x %ld", size, total);
    snprintf(r.params, sizeof r.params,
             "{\"size\":%d,\"records\":%ld,\"distinct\":%zu,"
             "\"seed\":%llu,\"rounds\":%d,\"fields\":[\"user\",\"seq\"]}",
             size, total, n, (unsigned long long)o->seed, rounds);

    size_t stride = (size_t)size + MPH_JSON_PADDING;
    char *arena = calloc(n, stride);
    char **recs = calloc(n, sizeof *recs);
    size_t *lens = calloc(n, sizeof *lens);
    mph_json_parser_t *p = mph_json_parser_new(0, err, sizeof err);
    if (!arena || !recs || !lens || !p) {
        snprintf(r.error, sizeof r.error, "%s", p ? "out of memory" : err);
        goto out;
    }
    char key[16];
    for (size_t i = 0; i < n; i++) {
        recs[i] = arena + i * stride;
        bench_record(recs[i], (size_t)size, key, o->seed, i, o->keys,
                     bench_now_ns());
        lens[i] = (size_t)size;
    }
    double shim_ns[100], simd_ns[100], shim_cpu[100];
    uint64_t c1 = 0, c2 = 0;
    for (int round = 0; round < rounds; round++) {
        for (int side = 0; side < 2; side++) {
            bool shim = (round % 2 == 0) ? side == 0 : side == 1;
            struct rusage ru0, ru1;
            bench_rusage(&ru0);
            int64_t t0 = bench_now_ns();
            long done = 0;
            while (done < total) {
                size_t batch =
                    (size_t)(total - done) < n ? (size_t)(total - done) : n;
                int rc = shim ? shim_decode(p, recs, lens, batch, &c1)
                              : bench_simdjson_decode((const char *const *)recs,
                                                      lens, batch,
                                                      MPH_JSON_PADDING, &c2);
                if (rc) {
                    snprintf(r.error, sizeof r.error,
                             "%s failed to decode a record",
                             shim ? "the shim" : "simdjson");
                    goto out;
                }
                done += (long)batch;
            }
            double ns = (double)(bench_now_ns() - t0) / (double)total;
            bench_rusage(&ru1);
            if (shim) {
                shim_ns[round] = ns;
                shim_cpu[round] = bench_cpu_s(&ru1) - bench_cpu_s(&ru0);
            } else {
                simd_ns[round] = ns;
            }
            bench_progress(o, "json round %d/%d: %s %.1f ns/record", round + 1,
                           rounds, shim ? "mephisto shim" : "simdjson", ns);
        }
    }
    if (c1 != c2) {
        snprintf(r.error, sizeof r.error,
                 "the shim and simdjson read different values");
        goto out;
    }
    double ms = bench_median(shim_ns, rounds),
           bs = bench_median(simd_ns, rounds);
    r.messages = (uint64_t)total;
    r.seconds = ms * (double)total / 1e9;
    r.msgs_per_s = 1e9 / ms;
    r.mb_per_s = r.msgs_per_s * size / 1e6;
    r.cpu_s = bench_median(shim_cpu, rounds);
    r.peak_rss_kb = bench_rss_peak_kb();
    r.baseline_msgs_per_s = 1e9 / bs;
    r.ratio = bs / ms;
    bench_extra(&r, ",\"ns_per_record\":%.2f,\"baseline_ns_per_record\":%.2f",
                ms, bs);
out:
    bench_report(o, &r);
    mph_json_parser_destroy(p);
    free(lens);
    free(recs);
    free(arena);
    return r.error[0] ? 1 : 0;
}

const bench_scenario_t bench_scn_json = {
    "json",
    "read two fields of a 200-byte JSON record: mephisto's shim vs bare "
    "simdjson",
    run};
