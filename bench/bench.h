/*
 * bench.h — the benchmark harness's shared declarations.
 *
 * mephisto-bench is one program with a table of scenarios (main.c). A
 * scenario is one file exporting a bench_scenario_t; it runs mephisto and its
 * baseline in the same invocation and reports bench_result_t lines, which
 * report.c prints as a table and as JSON objects. Everything here uses only
 * mephisto's public headers; the baselines call librdkafka (and simdjson)
 * directly.
 *
 * Threads: the main thread runs scenarios one after another. Helpers that
 * start threads (load generators, baseline loops, latency consumers) join
 * them before they return.
 */
#ifndef MPH_BENCH_H
#define MPH_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>

#include <librdkafka/rdkafka.h>

#include "mephisto.h"

#define BENCH_MAX_PARTITION_LIST 16
#define BENCH_MAX_RATES          16

/* Command-line options, after defaults are applied (opts.c). */
typedef struct bench_opts {
    const char *broker; /* as given: kafka://host:port or mock:// */
    int partitions;     /* input/output topic partitions */
    int workers;        /* mephisto workers = baseline loop threads */
    const char *cpus;   /* mephisto `cpus` (also pins baseline threads) */
    int threads_per_core;
    long messages; /* records per throughput run */
    bool messages_set;
    int size; /* record size in bytes */
    bool size_set;
    int keys; /* distinct keys (users) */
    bool keys_set;
    double rate;    /* latency: records/s; 0 = 50% of measured max */
    double rates[BENCH_MAX_RATES]; /* latency: --rate list (rate = rates[0]) */
    int nrates;                    /* 0: calibrated, one rate */
    const char *profiles[2]; /* latency: mephisto profiles to run (--profile) */
    int nprofiles;
    bool linger_set; /* --linger-ms given */
    double seconds; /* latency: measured phase length */
    double timeout; /* one run may take at most this many seconds */
    uint64_t seed;
    int repeat;            /* interleaved rounds of baseline and mephisto */
    int linger_ms;         /* producer linger of mephisto, baseline, load */
    const char *json_path; /* --json FILE or NULL */
    const char *plot_dir;  /* PNG output directory */
    bool quiet;
    bool no_baseline; /* partitions: skip the plain-loop runs */
    bool forward; /* passthrough: both sides forward headers and event time */
    int partition_list[BENCH_MAX_PARTITION_LIST];
    int npartition_list;
    int process_list[BENCH_MAX_PARTITION_LIST]; /* scale: process counts */
    int nprocess_list;
    const char *scenario; /* NULL or "all" = every scenario */
    const char *sets[32]; /* --set name=value for mephisto's conf */
    int nsets;
    /* --guarantee exactly_once: passthrough and count run mephisto under
     * at_least_once and exactly_once in interleaved rounds (the former the
     * baseline), both with commit_interval_ms=100 (bench_opts_guarantee),
     * each run timed until its input offsets are committed and its output
     * checked read_committed (eos.c). false: at_least_once, the default. */
    bool exactly_once;
    /* One side of such an invocation: this run's processing_guarantee is
     * exactly_once (set by bench_opts_guarantee only). */
    bool run_exactly_once;
} bench_opts_t;

/* One result line: mephisto against its baseline. Unset doubles are NAN.
 * extra holds further JSON members, each starting with ',' (e.g.
 * ",\"baseline_cpu_s\":1.2"). */
typedef struct bench_result {
    char scenario[32];
    char params[512]; /* a JSON object */
    char label[64];   /* short human label for the table */
    uint64_t messages;
    double seconds;
    double msgs_per_s;
    double mb_per_s;
    double p50_us, p99_us, p999_us;
    double cpu_s;
    long peak_rss_kb;
    double baseline_msgs_per_s;
    double baseline_cpu_s; /* median CPU of the baseline's runs (0: none) */
    double ratio;
    char target[96]; /* the reported (never asserted) target */
    int target_met;  /* 1 met, 0 missed, -1 not applicable */
    char error[640]; /* non-empty when the run failed */
    char extra[2048];
} bench_result_t;

/* A scenario: run() reports its results with bench_report() and returns 0,
 * or non-zero when it could not run at all. */
typedef struct bench_scenario {
    const char *name;
    const char *summary;
    int (*run)(const bench_opts_t *o);
} bench_scenario_t;

/* ---- opts.c ---- */
/* Parses argv into o. Returns 0, 1 after --help (printed), or -1 on a
 * usage error (printed to stderr). */
int bench_opts_parse(bench_opts_t *o, int argc, char **argv,
                     const bench_scenario_t *const *scenarios,
                     size_t nscenarios);
void bench_usage(FILE *out, const bench_scenario_t *const *scenarios,
                 size_t nscenarios);
/* Writes the common params as JSON members (no braces) into buf. */
void bench_params_common(const bench_opts_t *o, char *buf, size_t size);

/* ---- report.c ---- */
void bench_result_init(bench_result_t *r, const char *scenario);
/* Prints r as a table row (stdout) and a JSON line (stdout and --json). */
void bench_report(const bench_opts_t *o, const bench_result_t *r);
/* Reports r[0..n), a scenario's lines; a non-empty error (the whole
 * scenario's failure) is copied into every line first. Returns 1 when
 * error is non-empty, else 0: a scenario's run() result. */
int bench_report_lines(const bench_opts_t *o, bench_result_t *r, int n,
                       const char *error);
mph_err_t bench_report_open(const bench_opts_t *o);
void bench_report_close(void);
/* Appends printf-formatted text to r->extra (JSON members). */
void bench_extra(bench_result_t *r, const char *fmt, ...) MPH_PRINTF(2, 3);
/* Progress line on stderr unless --quiet. */
void bench_progress(const bench_opts_t *o, const char *fmt, ...)
    MPH_PRINTF(2, 3);
/* Runs gnuplot on script (written to <plot_dir>/<name>.gp) when gnuplot is
 * installed; silently does nothing otherwise. */
void bench_plot(const bench_opts_t *o, const char *name, const char *script);
/* Opens <plot_dir>/<name> for writing plot data; NULL without gnuplot. */
FILE *bench_plot_data(const bench_opts_t *o, const char *name, char *path,
                      size_t path_size);

/* ---- sys.c: clocks, CPU and memory ---- */
int64_t bench_now_ns(void);
double bench_cpu_s(const struct rusage *ru);
void bench_rusage(struct rusage *ru);
/* Resets the process's peak RSS (VmHWM) where the kernel allows it. */
void bench_rss_reset(void);
/* Peak RSS (VmHWM) in KiB since the last reset. */
long bench_rss_peak_kb(void);
void bench_sleep_ms(int ms);
/* Makes a new empty directory $TMPDIR/mephisto-bench-<tag>-XXXXXX (name in
 * buf); returns buf, or NULL (errno) on failure. */
const char *bench_tempdir(const char *tag, char *buf, size_t size);
/* Removes dir and everything below it (best effort). */
void bench_rmtree(const char *dir);
/* A unique-enough run id: "<pid>-<n>". */
const char *bench_run_id(char *buf, size_t size);

/* What the machine did during a run, to say which resource saturated:
 * /proc/stat (all CPUs), pressure stall information, this process's CPU
 * time and the local broker's (when its pid is known). */
typedef struct bench_sys {
    int64_t t_ns;
    unsigned long long busy, idle, iowait; /* jiffies, all CPUs */
    uint64_t io_some_us, cpu_some_us;      /* /proc/pressure/{io,cpu} */
    double self_cpu_s;   /* the process, less bench_watch's own CPU */
    double broker_cpu_s; /* -1 unknown */
} bench_sys_t;
typedef struct bench_sys_delta {
    double seconds, busy, idle, iowait, io_some_s, cpu_some_s, self_cpu_s,
        broker_cpu_s;
} bench_sys_delta_t;
void bench_sys_sample(bench_sys_t *s, int broker_pid);
/* Adds CPU seconds spent watching a run (bench_watch: polling counters and
 * the broker) to a process-wide tally that self_cpu_s leaves out, so the
 * watching is not charged to the engine measured. @locality any */
void bench_sys_add_watch_cpu(double seconds);
/* Adds the interval a → b to d (runs of one side accumulate). */
void bench_sys_add(bench_sys_delta_t *d, const bench_sys_t *a,
                   const bench_sys_t *b);
/* Appends "<prefix>machine":{...,"saturated":"..."} to r->extra. */
void bench_sys_describe(const bench_sys_delta_t *d, const char *prefix,
                        bench_result_t *r);
/* The pid listening on TCP port of this machine, or -1. */
int bench_find_listener(int port);

/* ---- hist.c: log-linear latency histogram (1/64 relative precision) ---- */
typedef struct bench_hist bench_hist_t;
bench_hist_t *bench_hist_new(void);
void bench_hist_destroy(bench_hist_t *h);
void bench_hist_add(bench_hist_t *h, int64_t ns);
uint64_t bench_hist_count(const bench_hist_t *h);
/* The q-quantile (0..1) in microseconds; NAN when empty. */
double bench_hist_quantile_us(const bench_hist_t *h, double q);
/* Writes "latency_us cumulative_fraction" lines for a CDF plot. */
void bench_hist_write_cdf(const bench_hist_t *h, FILE *out);

/* ---- data.c: deterministic records ---- */
/* Writes record seq of the stream seeded by seed into buf (size bytes, at
 * least BENCH_MIN_RECORD): a JSON object
 *   {"ts":<19 digits>,"seq":N,"user":"u000042","page":"/p/17",
 *    "text":"w3 w18 w7 w1","pad":"xxx..."}
 * padded to exactly size bytes, ts = ts_ns (0 is written as 19 zeros'
 * stand-in 1000000000000000000). The key is the user, written into key
 * (at least 16 bytes); returns the key length. */
#define BENCH_MIN_RECORD 160
#define BENCH_TS_OFFSET  6
size_t bench_record(char *buf, size_t size, char *key, uint64_t seed,
                    uint64_t seq, int keys, int64_t ts_ns);
/* Reads ts and seq back from a record written by bench_record(). */
bool bench_record_parse(const void *buf, size_t len, int64_t *ts_ns,
                        uint64_t *seq);

/* The records of a table changelog (recovery): key i is "key%09ld" (at
 * most BENCH_TABLE_KEY_MAX bytes with the NUL; returns its length), its
 * value the i64 codec's 8 big-endian bytes of bench_table_value_of(i). */
#define BENCH_TABLE_KEY_MAX 24
size_t bench_table_key(char *key, long i);
int64_t bench_table_value_of(long i);
void bench_table_value(unsigned char out[8], long i);

/* ---- kafka.c: cluster, topics, load ---- */
typedef struct bench_kafka bench_kafka_t;
/* For mock:// creates the mock cluster (kept until destroy); for
 * kafka://h:p uses h:p. NULL with errstr on failure. */
bench_kafka_t *bench_kafka_new(const char *broker, char *errstr,
                               size_t errstr_size);
void bench_kafka_destroy(bench_kafka_t *k);
/* "kafka://<bootstrap>", what apps are given. Borrowed. */
const char *bench_kafka_app_broker(const bench_kafka_t *k);
const char *bench_kafka_bootstrap(const bench_kafka_t *k);
bool bench_kafka_is_mock(const bench_kafka_t *k);
/* The pid of a broker on this machine (found by its listening port), or -1. */
int bench_kafka_broker_pid(const bench_kafka_t *k);
/* A new librdkafka conf with bootstrap.servers set. */
rd_kafka_conf_t *bench_kafka_conf(const bench_kafka_t *k);
/* Sets mephisto's engine producer settings on kc (src/io/kafka.c). */
void bench_kafka_engine_producer(rd_kafka_conf_t *kc, int linger_ms);
/* Sets mephisto's engine consumer settings on kc, with group.id. */
void bench_kafka_engine_consumer(rd_kafka_conf_t *kc, const char *group);
/* Creates a topic the bench deletes later (file.delete.delay.ms 0: its
 * files go when it is deleted) and waits until every partition has a
 * leader. */
mph_err_t bench_topic_create(bench_kafka_t *k, const char *name, int partitions,
                             char *errstr, size_t errstr_size);
/* The same with topic configs: NULL-terminated name, value pairs (ignored
 * by the mock cluster). */
mph_err_t bench_topic_create_conf(bench_kafka_t *k, const char *name,
                                  int partitions, const char *const *configs,
                                  char *errstr, size_t errstr_size);
void bench_topic_delete(bench_kafka_t *k, const char *name);
void bench_group_delete(bench_kafka_t *k, const char *group);
/* Deletes what an app of app_id leaves on the broker besides the topics
 * the scenario made: its consumer group and its dead-letter topic (every
 * app with a dead_letter policy creates one; runs must not leave a topic
 * each on the broker the next runs measure). */
void bench_app_forget(bench_kafka_t *k, const char *app_id);
/* Sum of the end offsets of all partitions of topic; -1 on error. */
int64_t bench_end_offsets(bench_kafka_t *k, const char *topic, int partitions);
/* The end offset of each partition [0, partitions) into end; 0, or -1 on
 * error. */
int bench_end_offsets_each(bench_kafka_t *k, const char *topic, int partitions,
                           int64_t *end);
/* A client that reads group's committed offsets (it joins nothing). NULL
 * with errstr on failure; rd_kafka_destroy() it. */
rd_kafka_t *bench_offsets_reader(bench_kafka_t *k, const char *group,
                                 char *errstr, size_t errstr_size);
/* Sum of the reader's group's committed offsets over topic's partitions
 * (none committed counts 0); -1 on error. */
int64_t bench_committed(rd_kafka_t *reader, const char *topic, int partitions);
/* Produces records [0, n) of the seeded stream to topic, keyed by user, and
 * waits until all are acknowledged. Returns records acknowledged. */
long bench_load(bench_kafka_t *k, const bench_opts_t *o, const char *topic,
                long n, char *errstr, size_t errstr_size);
/* Creates topic in with --partitions partitions and loads the --messages
 * seeded records into it (progress lines name the scenario). 0, or -1 with
 * errstr. */
int bench_input(bench_kafka_t *k, const bench_opts_t *o, const char *name,
                const char *in, char *errstr, size_t errstr_size);
/* Produces the table records [0, n) (bench_table_key/value) to topic,
 * partitioned by key like the engine (murmur2), and waits for them. */
long bench_load_table(bench_kafka_t *k, const bench_opts_t *o,
                      const char *topic, long n, char *errstr,
                      size_t errstr_size);

/* The start of a measured run: the first record consumed by any thread
 * (bench_first_mark, cheap after the first call) with a machine sample
 * taken there. Zero-initialise, then set broker_pid. */
typedef struct bench_first {
    int64_t t_first; /* __atomic */
    int sys_state;   /* __atomic: 2 once sys_first is set */
    bench_sys_t sys_first;
    int broker_pid;
} bench_first_t;
void bench_first_mark(bench_first_t *f);
/* Under callgrind: dumps the instructions since the first record was marked
 * (all threads) as a part named label. A no-op otherwise. */
void bench_callgrind_dump(const char *label);

/* ---- pipeline.c: one passthrough run, mephisto or the plain loop ---- */
typedef struct bench_run {
    bench_sys_t sys_first, sys_end; /* machine samples at both ends */
    uint64_t messages;
    double seconds;
    double cpu_s;
    long peak_rss_kb;
    char error[520];
    /* --guarantee exactly_once: what the read_committed check of the
     * run's output found ("ok: ..."); empty when not checked. */
    char check[200];
} bench_run_t;
/* Fills res for n records measured from f's first record to t_end (a
 * machine sample is taken now). */
void bench_run_finish(bench_run_t *res, const bench_first_t *f, int64_t t_end,
                      long n);
typedef enum { BENCH_ENGINE_MEPHISTO, BENCH_ENGINE_BASELINE } bench_engine_t;
/* Consumes n records of `in` (partitions p), reads the JSON field "user" of
 * each, and forwards it to `out` (same partitions). Times from the first
 * record consumed until out's end offsets grew by n. */
int bench_passthrough_run(bench_kafka_t *k, const bench_opts_t *o,
                          bench_engine_t engine, const char *label,
                          const char *in, const char *out, int partitions,
                          long n, bench_run_t *res);
/* How a run's end is watched (bench_watch). */
typedef struct bench_watch {
    uint64_t (*processed)(void *ctx); /* records processed so far (cheap) */
    bool (*finished)(void *ctx);      /* the end on the broker's side */
    void *ctx;
    int finish_poll_ms; /* poll interval once all were processed */
} bench_watch_t;
/* Polls w->processed every 5 ms and, once it reaches n, w->finished every
 * finish_poll_ms; prints progress once a second under label. 0 with *t_end
 * when finished, or -1 with errstr after --timeout. */
int bench_watch(const bench_opts_t *o, const bench_watch_t *w,
                const char *label, long n, int64_t *t_end, char *errstr,
                size_t errstr_size);
/* Worker count mephisto resolves for o (workers, cpus, threads_per_core). */
int bench_workers(const bench_opts_t *o);
/* A mephisto conf for the bench (broker, app_id, workers, web off...). */
mph_conf_t *bench_app_conf(bench_kafka_t *k, const bench_opts_t *o,
                           const char *app_id, char *errstr,
                           size_t errstr_size);

/* A new app for o (bench_app_conf) whose datadir is a new empty directory
 * under $TMPDIR, its name put into datadir (bench_rmtree it after
 * mph_app_destroy), unless keep_user_datadir and --set datadir=... names
 * one (datadir is then ""). NULL with errstr. */
mph_app_t *bench_app_new_tmp(bench_kafka_t *k, const bench_opts_t *o,
                             const char *app_id, bool keep_user_datadir,
                             char *datadir, size_t datadir_size, char *errstr,
                             size_t errstr_size);

/* Runs --repeat interleaved rounds of the baseline (when with_baseline)
 * and mephisto over the same input and fills r with mephisto's medians,
 * the baseline's median rate and the ratio; the baseline's other figures
 * go into r->extra under keys starting with base_prefix. r->scenario names
 * the runs. Each run writes to a topic of its own named after out
 * (out-m1, out-b1, ...; created before its run and deleted after it),
 * which the caller need not create. Returns 0, or -1 with r->error set. */
int bench_passthrough_compare(bench_kafka_t *k, const bench_opts_t *o,
                              bool with_baseline, const char *base_prefix,
                              const char *in, const char *out, int partitions,
                              long n, bench_result_t *r);

/* Runs the baseline loop (as many threads as mephisto would have workers)
 * from in to out in consumer group `group` until *stop becomes non-zero
 * (e.g. from a signal handler). Returns 0, or -1 with errstr. */
int bench_baseline_serve(bench_kafka_t *k, const bench_opts_t *o,
                         const char *group, const char *in, const char *out,
                         const volatile int *stop, char *errstr,
                         size_t errstr_size);

/* ---- tablerun.c: interleaved series, and table-count runs ---- */

#define BENCH_MAX_ROUNDS 100
/* One side of interleaved rounds. Zero-initialise. */
typedef struct bench_series {
    double rate[BENCH_MAX_ROUNDS], seconds[BENCH_MAX_ROUNDS],
        cpu[BENCH_MAX_ROUNDS];
    int n;
    long peak_rss_kb;
    char runs[512]; /* the rates, comma-separated */
    bench_sys_delta_t sys;
} bench_series_t;
/* Adds a successful run; returns its rate (messages / seconds). */
double bench_series_add(bench_series_t *s, const bench_run_t *run);
/* Fills r with mine's medians (messages n of size bytes), and with base
 * (NULL: none) its baseline rate, the ratio and base's figures in r->extra
 * under keys starting with base_prefix; then what the machine did. */
void bench_series_result(bench_series_t *mine, bench_series_t *base,
                         const char *base_prefix, long n, int size,
                         bench_result_t *r);

/* Which of nsides sides runs j-th in round `round` (0-based): every side
 * runs once per round, in an order that changes from round to round. */
int bench_round_side(int round, int j, int nsides);

typedef struct bench_tablerun bench_tablerun_t;
/* What a table run declares and measures. */
typedef struct bench_tablerun_spec {
    const char *kind;    /* in app ids and temp dir names, e.g. "cnt" */
    const char *store;   /* the table's store option; NULL: the app's */
    const char *field;   /* the JSON field each record's agent call reads */
    /* Check the table's changelog read_committed after the run against the
     * true count of every key of the input (bench_check_counts; the plain
     * count agent only): a mismatch fails the run. */
    bool check_counts;
    bool field_i64;      /* read it as an integer (else a string) */
    mph_agent_fn *agent; /* NULL: bench_tablerun_count_agent */
    /* After the table is declared, before the agent and the start (e.g.
     * windows); non-zero with errstr fails the run. May be NULL. */
    int (*setup)(bench_tablerun_t *c, char *errstr, size_t errstr_size);
    /* Once the run is measured, while the app still runs. May be NULL. */
    void (*finish)(bench_tablerun_t *c);
    void *user;
} bench_tablerun_spec_t;
/* A run's state, the opaque of its agent. */
struct bench_tablerun {
    const bench_tablerun_spec_t *spec;
    mph_table_t *table; /* "counts": i64 values, --partitions shards */
    uint64_t processed; /* __atomic */
    bench_first_t first;
};
/* For agents: call bench_tablerun_first() on entry (starts the clock),
 * bench_tablerun_read() for the record's spec->field (the per-record work
 * every table agent does), bench_tablerun_done() on exit. */
void bench_tablerun_first(bench_tablerun_t *c);
mph_err_t bench_tablerun_read(bench_tablerun_t *c, mph_event_t *ev);
void bench_tablerun_done(bench_tablerun_t *c);
/* The plain count: reads the field, then increments the record's key. */
mph_err_t bench_tablerun_count_agent(mph_event_t *ev, void *opaque);
/* Declares c->spec's input topic in, its table "counts" (o->partitions
 * partitions) and its agent on app. 0, or -1 with err. */
int bench_tablerun_declare(bench_tablerun_t *c, mph_app_t *app,
                           const bench_opts_t *o, const char *in, char *err,
                           size_t errsz);
/* One run over the n records of in (--partitions partitions): a fresh app
 * (app_id bench-<kind>-<run id>) with table "counts", timed from the first
 * record consumed until all were processed and committed. 0, or -1 with
 * res->error. */
int bench_tablerun(bench_kafka_t *k, const bench_opts_t *o,
                   const bench_tablerun_spec_t *spec, const char *label,
                   const char *in, long n, bench_run_t *res);

/* ---- eos.c: --guarantee exactly_once ---- */
/* The exactly_once runs' commit interval (unless --set commit_interval_ms
 * names another): what issue #14's target is measured at. */
#define BENCH_EOS_COMMIT_INTERVAL_MS "100"
/* Copies o into out with the settings of one side of an exactly_once
 * invocation put before --set's (which win): processing_guarantee
 * exactly_once (eos) or at_least_once, and commit_interval_ms=100 for both,
 * so that the guarantee is the only difference. -1 (errstr) when --set
 * leaves no room. */
int bench_opts_guarantee(const bench_opts_t *o, bool eos, bench_opts_t *out,
                         char *errstr, size_t errstr_size);
/* The guarantee's name in params and labels. */
const char *bench_guarantee_name(bool eos);
/* The target of an exactly_once line: exactly_once ÷ at_least_once. */
#define BENCH_EOS_TARGET 0.7
/* One run of a side (opts from bench_opts_guarantee) into res; non-zero or
 * res->error on failure. */
typedef int bench_side_fn(void *ctx, const bench_opts_t *side,
                          const char *label, bench_run_t *res);
/* Runs --repeat interleaved rounds of run() under at_least_once and
 * exactly_once and fills r (r->scenario and r->label name the runs): the
 * exactly_once medians, the at_least_once median rate as the baseline, the
 * ratio exactly_once ÷ at_least_once with target ratio >= 0.7, CPU per
 * record of both (cpu_us_per_msg, at_least_once_cpu_us_per_msg), and the
 * last check of each side (check, at_least_once_check). 0, or -1 with
 * r->error. */
int bench_guarantee_compare(const bench_opts_t *o, bench_side_fn *run,
                            void *ctx, long n, bench_result_t *r);

/* Reads topic's partitions [0, partitions) read_committed from from[p] to
 * their ends and checks that they hold the n seeded records of the input
 * (bench_record: seq 0..n-1): each exactly once when exact, else each at
 * least once (duplicates are counted in check, at_least_once allows them).
 * 0 with "ok: ..." in check, or -1 with what was wrong (missing,
 * duplicated, foreign records, or not readable within --timeout). */
int bench_check_output(bench_kafka_t *k, const bench_opts_t *o,
                       const char *topic, int partitions, const int64_t *from,
                       long n, bool exact, char *check, size_t check_size);
/* Reads the changelog of a count table (keys the record keys, values the
 * i64 codec's 8 big-endian bytes) read_committed from its beginning and
 * checks the latest value of every key against the true count of the n
 * seeded records (the keys of --keys, --seed): equal when exact, else at
 * least as large. 0 with "ok: ..." in check, or -1 with the first
 * mismatch. */
int bench_check_counts(bench_kafka_t *k, const bench_opts_t *o,
                       const char *changelog, int partitions, long n,
                       bool exact, char *check, size_t check_size);

/* Helpers for interleaved repeats: the median of v[0..n). */
double bench_median(double *v, int n);

#endif
