/*
 * Command-line options of mephisto-bench. The scenario may be given as the
 * first positional argument or with --scenario; the rest are flags shared
 * by every scenario (each scenario reads the ones it needs).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

void bench_usage(FILE *out, const bench_scenario_t *const *scenarios,
                 size_t nscenarios)
{
    fprintf(out, "Usage: mephisto-bench [SCENARIO|all] [OPTIONS]\n"
                 "       mephisto-bench tool load|forward|watch [OPTIONS]   "
                 "(used by bench/peers/run)\n"
                 "\n"
                 "Runs mephisto and a baseline in the same invocation and "
                 "reports the ratio\n"
                 "(> 1 is always better for mephisto): a table, and one JSON "
                 "object per result\n"
                 "on stdout and in --json FILE.\n"
                 "\n"
                 "Scenarios:\n");
    for (size_t i = 0; i < nscenarios; i++)
        fprintf(out, "  %-12s %s\n", scenarios[i]->name, scenarios[i]->summary);
    fprintf(
        out,
        "  %-12s every scenario above, in order (the default)\n"
        "\n"
        "Options:\n"
        "  --broker URL            kafka://host:port (default "
        "kafka://127.0.0.1:9092), or\n"
        "                          mock:// for a smoke run on librdkafka's "
        "mock cluster\n"
        "  --partitions N          partitions of the input and output topics "
        "(8)\n"
        "  --partition-list L      partitions scenario: counts to run "
        "(8,64,512,4096)\n"
        "  --processes L           scale scenario: worker process counts to run "
        "(1,2,4)\n"
        "  --workers N             mephisto workers = baseline loop threads "
        "(1; 0: per CPU)\n"
        "  --cpus LIST             pin workers (and baseline threads) to CPUs, "
        "e.g. 0-1\n"
        "  --threads-per-core N    workers per CPU of --cpus (1)\n"
        "  --messages N            records per throughput run (300000)\n"
        "  --size BYTES            record size, at least %d (200)\n"
        "  --keys N                distinct keys (users) in the input "
        "(100000);\n"
        "                          recovery: keys in the table (default "
        "--messages if\n"
        "                          given, else 1000000)\n"
        "  --rate R[,R...]         latency: records/s, one run per rate "
        "(default: 50%% of\n"
        "                          measured max), e.g. 1000,10000,100000\n"
        "  --profile P[,P]         latency: mephisto's profile per run, "
        "throughput and/or\n"
        "                          latency (default throughput,latency); "
        "latency also sets\n"
        "                          the load producer's linger to 0 unless "
        "--linger-ms is given\n"
        "  --seconds S             latency: length of the measured phase (10)\n"
        "  --timeout S             longest a single run may take (600)\n"
        "  --seed N                input data seed (1)\n"
        "  --repeat N              interleaved rounds of baseline and "
        "mephisto; the\n"
        "                          median is reported (3)\n"
        "  --linger-ms N           producer linger of mephisto, baselines and "
        "load (5)\n"
        "  --json FILE             also append the JSON result lines to FILE\n"
        "  --plot-dir DIR          PNG plots when gnuplot is installed "
        "(bench/out)\n"
        "  --no-baseline           partitions, passthrough: skip the plain-loop runs\n"
        "  --forward               passthrough, partitions: both sides forward "
        "each record's\n"
        "                          headers and timestamp (mephisto: "
        "mph_event_forward);\n"
        "                          default: key and value only, stamped by "
        "the producer\n"
        "  --set NAME=VALUE        a mephisto setting for the apps under test "
        "(repeatable),\n"
        "                          e.g. --set max_poll_batch=4096\n"
        "  --guarantee G           at_least_once (the default) or "
        "exactly_once: passthrough\n"
        "                          and count then run mephisto under both, "
        "interleaved,\n"
        "                          at commit_interval_ms=100, and report "
        "exactly_once\n"
        "                          against at_least_once (target ratio >= "
        "0.7), outputs\n"
        "                          checked read_committed; needs kafka://\n"
        "  --quiet                 no progress lines on stderr\n"
        "  --help                  this text\n",
        "all", BENCH_MIN_RECORD);
}

static int parse_long(const char *flag, const char *s, long lo, long hi,
                      long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) {
        fprintf(stderr,
                "mephisto-bench: %s: expected an integer %ld..%ld, got '%s'\n",
                flag, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_double(const char *flag, const char *s, double lo, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= lo)) {
        fprintf(stderr,
                "mephisto-bench: %s: expected a number >= %g, got '%s'\n", flag,
                lo, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_rates(const char *s, bench_opts_t *o)
{
    o->nrates = 0;
    char *dup = strdup(s), *save = NULL;
    int rc = 0;
    for (char *t = strtok_r(dup, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        if (o->nrates == BENCH_MAX_RATES) {
            fprintf(stderr, "mephisto-bench: --rate: at most %d rates\n",
                    BENCH_MAX_RATES);
            rc = -1;
            break;
        }
        if (parse_double("--rate", t, 0, &o->rates[o->nrates])) {
            rc = -1;
            break;
        }
        if (o->rates[o->nrates] > 0)
            o->nrates++;
    }
    free(dup);
    /* --rate 0 (or only zeros): calibrated, as without --rate */
    o->rate = o->nrates ? o->rates[0] : 0;
    return rc;
}

static int parse_profiles(const char *s, bench_opts_t *o)
{
    o->nprofiles = 0;
    char *dup = strdup(s), *save = NULL;
    int rc = 0;
    for (char *t = strtok_r(dup, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        const char *p = !strcmp(t, "throughput") ? "throughput"
                        : !strcmp(t, "latency")  ? "latency"
                                                 : NULL;
        if (!p || o->nprofiles == 2) {
            fprintf(stderr,
                    "mephisto-bench: --profile: expected throughput, latency "
                    "or both (comma-separated), got '%s'\n",
                    s);
            rc = -1;
            break;
        }
        o->profiles[o->nprofiles++] = p;
    }
    free(dup);
    if (rc == 0 && o->nprofiles == 0) {
        fprintf(stderr, "mephisto-bench: --profile: empty\n");
        rc = -1;
    }
    return rc;
}

/* Parses the comma-separated list s of flag (values 1..max) into list. */
static int parse_list(const char *flag, const char *s, long max, int *list, int *n)
{
    *n = 0;
    char *dup = strdup(s), *save = NULL;
    int rc = 0;
    for (char *t = strtok_r(dup, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        long v;
        if (*n == BENCH_MAX_PARTITION_LIST || parse_long(flag, t, 1, max, &v)) {
            rc = -1;
            break;
        }
        list[(*n)++] = (int)v;
    }
    free(dup);
    if (rc == 0 && *n == 0) {
        fprintf(stderr, "mephisto-bench: %s: empty\n", flag);
        rc = -1;
    }
    return rc;
}

int bench_opts_parse(bench_opts_t *o, int argc, char **argv,
                     const bench_scenario_t *const *scenarios,
                     size_t nscenarios)
{
    static const int defaults_list[] = {8, 64, 512, 4096};
    memset(o, 0, sizeof *o);
    o->broker = "kafka://127.0.0.1:9092";
    o->partitions = 8;
    o->workers = 1;
    o->threads_per_core = 1;
    o->messages = 300000;
    o->size = 200;
    o->keys = 100000;
    o->seconds = 10;
    o->timeout = 600;
    o->seed = 1;
    o->repeat = 3;
    o->linger_ms = 5;
    o->profiles[0] = "throughput";
    o->profiles[1] = "latency";
    o->nprofiles = 2;
    o->plot_dir = "bench/out";
    memcpy(o->partition_list, defaults_list, sizeof defaults_list);
    o->npartition_list = 4;
    static const int default_procs[] = {1, 2, 4};
    memcpy(o->process_list, default_procs, sizeof default_procs);
    o->nprocess_list = 3;

    enum {
        O_BROKER = 256,
        O_PARTITIONS,
        O_PLIST,
        O_PROCS,
        O_WORKERS,
        O_CPUS,
        O_TPC,
        O_MESSAGES,
        O_SIZE,
        O_KEYS,
        O_RATE,
        O_SECONDS,
        O_TIMEOUT,
        O_SEED,
        O_REPEAT,
        O_LINGER,
        O_JSON,
        O_PLOTDIR,
        O_NOBASE,
        O_BLHDRS,
        O_QUIET,
        O_SCENARIO,
        O_SET,
        O_GUARANTEE,
        O_PROFILE,
        O_HELP
    };
    static const struct option lo[] = {
        {"broker", required_argument, 0, O_BROKER},
        {"partitions", required_argument, 0, O_PARTITIONS},
        {"partition-list", required_argument, 0, O_PLIST},
        {"processes", required_argument, 0, O_PROCS},
        {"workers", required_argument, 0, O_WORKERS},
        {"cpus", required_argument, 0, O_CPUS},
        {"threads-per-core", required_argument, 0, O_TPC},
        {"messages", required_argument, 0, O_MESSAGES},
        {"size", required_argument, 0, O_SIZE},
        {"keys", required_argument, 0, O_KEYS},
        {"rate", required_argument, 0, O_RATE},
        {"seconds", required_argument, 0, O_SECONDS},
        {"timeout", required_argument, 0, O_TIMEOUT},
        {"seed", required_argument, 0, O_SEED},
        {"repeat", required_argument, 0, O_REPEAT},
        {"linger-ms", required_argument, 0, O_LINGER},
        {"json", required_argument, 0, O_JSON},
        {"plot-dir", required_argument, 0, O_PLOTDIR},
        {"no-baseline", no_argument, 0, O_NOBASE},
        {"forward", no_argument, 0, O_BLHDRS},
        {"baseline-headers", no_argument, 0, O_BLHDRS}, /* the old name */
        {"quiet", no_argument, 0, O_QUIET},
        {"scenario", required_argument, 0, O_SCENARIO},
        {"set", required_argument, 0, O_SET},
        {"guarantee", required_argument, 0, O_GUARANTEE},
        {"profile", required_argument, 0, O_PROFILE},
        {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0},
    };
    optind = 1;
    int c;
    long v;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case O_BROKER:
            o->broker = optarg;
            break;
        case O_PARTITIONS:
            if (parse_long("--partitions", optarg, 1, 100000, &v))
                return -1;
            o->partitions = (int)v;
            break;
        case O_PROCS:
            if (parse_list("--processes", optarg, 16, o->process_list,
                           &o->nprocess_list))
                return -1;
            break;
        case O_PLIST:
            if (parse_list("--partition-list", optarg, 100000, o->partition_list,
                           &o->npartition_list))
                return -1;
            break;
        case O_WORKERS:
            if (parse_long("--workers", optarg, 0, 1024, &v))
                return -1;
            o->workers = (int)v;
            break;
        case O_CPUS:
            o->cpus = optarg;
            break;
        case O_TPC:
            if (parse_long("--threads-per-core", optarg, 1, 64, &v))
                return -1;
            o->threads_per_core = (int)v;
            break;
        case O_MESSAGES:
            if (parse_long("--messages", optarg, 1, 1000000000L, &o->messages))
                return -1;
            o->messages_set = true;
            break;
        case O_SIZE:
            if (parse_long("--size", optarg, BENCH_MIN_RECORD, 1 << 20, &v))
                return -1;
            o->size = (int)v;
            o->size_set = true;
            break;
        case O_KEYS:
            if (parse_long("--keys", optarg, 1, 10000000, &v))
                return -1;
            o->keys = (int)v;
            o->keys_set = true;
            break;
        case O_RATE:
            if (parse_rates(optarg, o))
                return -1;
            break;
        case O_SECONDS:
            if (parse_double("--seconds", optarg, 0.1, &o->seconds))
                return -1;
            break;
        case O_TIMEOUT:
            if (parse_double("--timeout", optarg, 1, &o->timeout))
                return -1;
            break;
        case O_SEED:
            if (parse_long("--seed", optarg, 0, 0x7fffffffffffffffL, &v))
                return -1;
            o->seed = (uint64_t)v;
            break;
        case O_REPEAT:
            if (parse_long("--repeat", optarg, 1, 100, &v))
                return -1;
            o->repeat = (int)v;
            break;
        case O_LINGER:
            if (parse_long("--linger-ms", optarg, 0, 10000, &v))
                return -1;
            o->linger_ms = (int)v;
            o->linger_set = true;
            break;
        case O_JSON:
            o->json_path = optarg;
            break;
        case O_PLOTDIR:
            o->plot_dir = optarg;
            break;
        case O_NOBASE:
            o->no_baseline = true;
            break;
        case O_BLHDRS:
            o->forward = true;
            break;
        case O_QUIET:
            o->quiet = true;
            break;
        case O_SCENARIO:
            o->scenario = optarg;
            break;
        case O_SET:
            if (o->nsets == (int)(sizeof o->sets / sizeof o->sets[0]) ||
                !strchr(optarg, '=')) {
                fprintf(stderr, "mephisto-bench: --set: expected name=value "
                                "(at most 32)\n");
                return -1;
            }
            o->sets[o->nsets++] = optarg;
            break;
        case O_GUARANTEE:
            if (strcmp(optarg, "exactly_once") == 0) {
                o->exactly_once = true;
            } else if (strcmp(optarg, "at_least_once") == 0) {
                o->exactly_once = false;
            } else {
                fprintf(stderr,
                        "mephisto-bench: --guarantee: expected at_least_once "
                        "or exactly_once, got '%s'\n",
                        optarg);
                return -1;
            }
            break;
        case O_PROFILE:
            if (parse_profiles(optarg, o))
                return -1;
            break;
        case 'h':
        case O_HELP:
            bench_usage(stdout, scenarios, nscenarios);
            return 1;
        default:
            fprintf(stderr, "Try 'mephisto-bench --help'.\n");
            return -1;
        }
    }
    if (optind < argc) {
        if (o->scenario || optind + 1 < argc) {
            fprintf(stderr, "mephisto-bench: unexpected argument '%s'\n",
                    argv[o->scenario ? optind : optind + 1]);
            return -1;
        }
        o->scenario = argv[optind];
    }
    if (o->exactly_once && strncmp(o->broker, "kafka://", 8) != 0) {
        fprintf(stderr,
                "mephisto-bench: --guarantee exactly_once needs a real broker "
                "(--broker kafka://host:port): transactions do not run on "
                "%s\n",
                o->broker);
        return -1;
    }
    if (o->scenario && strcmp(o->scenario, "all") != 0) {
        size_t i = 0;
        while (i < nscenarios && strcmp(scenarios[i]->name, o->scenario) != 0)
            i++;
        if (i == nscenarios) {
            fprintf(stderr,
                    "mephisto-bench: unknown scenario '%s' (try --help)\n",
                    o->scenario);
            return -1;
        }
    }
    return 0;
}

void bench_params_common(const bench_opts_t *o, char *buf, size_t size)
{
    snprintf(
        buf, size,
        "\"broker\":\"%s\",\"partitions\":%d,\"workers\":%d,\"cpus\":\"%s\","
        "\"threads_per_core\":%d,\"size\":%d,\"keys\":%d,\"seed\":%llu,"
        "\"linger_ms\":%d,"
        "\"repeat\":%d%s",
        strncmp(o->broker, "mock://", 7) == 0 ? "mock" : o->broker + 8,
        o->partitions, o->workers, o->cpus ? o->cpus : "", o->threads_per_core,
        o->size, o->keys, (unsigned long long)o->seed, o->linger_ms, o->repeat,
        o->forward ? ",\"forward\":true" : "");
}
