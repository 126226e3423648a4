/*
 * `mephisto-bench tool ...`: small commands bench/peers/run composes to run
 * mephisto, Faust and Kafka Streams over the same input on the same broker:
 *
 *   create  --topic T --partitions P         create a topic
 *   delete  --topic T [--group G]            delete a topic (and a group)
 *   load    --topic T --messages N           produce the seeded records
 *   forward --input T --output U             run a mephisto app that reads the
 *                                            JSON field "user" and forwards,
 *                                            until SIGTERM/SIGINT
 *   loop    --input T --output U             the same with the plain librdkafka
 *                                            loop of the passthrough baseline
 *   watch   --topic U --partitions P --messages N [--pid PID]
 *           [--timeout S]                    wait until U holds N more records;
 *                                            print one JSON line: records/s
 *                                            between the first and the last
 *                                            output, and PID's CPU seconds in
 *                                            that interval
 *
 * watch measures every framework the same way from the outside, so start-up
 * (a JVM, a Python interpreter, a consumer group join) is never counted.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "mephisto/json.h"
#include "tools.h"

typedef struct tool_opts {
    bench_opts_t b;
    const char *topic, *input, *output, *group;
    int pid;
} tool_opts_t;

static int parse(tool_opts_t *t, int argc, char **argv)
{
    static const struct option lo[] = {
        {"broker", required_argument, 0, 'b'},
        {"partitions", required_argument, 0, 'p'},
        {"messages", required_argument, 0, 'n'},
        {"size", required_argument, 0, 's'},
        {"keys", required_argument, 0, 'k'},
        {"seed", required_argument, 0, 'S'},
        {"workers", required_argument, 0, 'w'},
        {"linger-ms", required_argument, 0, 'l'},
        {"topic", required_argument, 0, 't'},
        {"input", required_argument, 0, 'i'},
        {"output", required_argument, 0, 'o'},
        {"group", required_argument, 0, 'g'},
        {"pid", required_argument, 0, 'P'},
        {"timeout", required_argument, 0, 'T'},
        {"quiet", no_argument, 0, 'q'},
        {"set", required_argument, 0, 'X'},
        {0, 0, 0, 0},
    };
    memset(t, 0, sizeof *t);
    bench_opts_t *o = &t->b;
    o->broker = "kafka://127.0.0.1:9092";
    o->partitions = 8;
    o->workers = 1;
    o->threads_per_core = 1;
    o->messages = 300000;
    o->size = 200;
    o->keys = 100000;
    o->seed = 1;
    o->timeout = 600;
    o->linger_ms = 5;
    optind = 2; /* argv[0] "tool", argv[1] the command */
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'b':
            o->broker = optarg;
            break;
        case 'p':
            o->partitions = atoi(optarg);
            break;
        case 'n':
            o->messages = atol(optarg);
            break;
        case 's':
            o->size = atoi(optarg) < BENCH_MIN_RECORD ? BENCH_MIN_RECORD
                                                      : atoi(optarg);
            break;
        case 'k':
            o->keys = atoi(optarg) > 0 ? atoi(optarg) : 1;
            break;
        case 'S':
            o->seed = strtoull(optarg, NULL, 10);
            break;
        case 'w':
            o->workers = atoi(optarg);
            break;
        case 'l':
            o->linger_ms = atoi(optarg);
            break;
        case 't':
            t->topic = optarg;
            break;
        case 'i':
            t->input = optarg;
            break;
        case 'o':
            t->output = optarg;
            break;
        case 'g':
            t->group = optarg;
            break;
        case 'P':
            t->pid = atoi(optarg);
            break;
        case 'T':
            o->timeout = atof(optarg);
            break;
        case 'q':
            o->quiet = true;
            break;
        case 'X':
            if (o->nsets < (int)(sizeof o->sets / sizeof o->sets[0]))
                o->sets[o->nsets++] = optarg;
            break;
        default:
            return -1;
        }
    }
    if (o->partitions < 1 || o->messages < 1) {
        fprintf(stderr,
                "mephisto-bench tool: bad --partitions or --messages\n");
        return -1;
    }
    return 0;
}

static mph_app_t *forward_app_running;
static volatile int loop_stop;
static void on_signal(int sig)
{
    (void)sig;
    loop_stop = 1;
    if (forward_app_running)
        mph_app_request_stop(forward_app_running);
}

static int cmd_loop(bench_kafka_t *k, tool_opts_t *t)
{
    char err[512];
    if (!t->input || !t->output || !t->group) {
        fprintf(stderr,
                "tool loop: --input, --output and --group are required\n");
        return 2;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    if (bench_baseline_serve(k, &t->b, t->group, t->input, t->output,
                             &loop_stop, err, sizeof err)) {
        fprintf(stderr, "tool loop: %s\n", err);
        return 1;
    }
    return 0;
}

typedef struct fwd_ctx {
    mph_json_parser_t **parsers;
    mph_topic_t *out;
} fwd_ctx_t;

static mph_err_t fwd_agent(mph_event_t *ev, void *opaque)
{
    fwd_ctx_t *c = opaque;
    mph_json_parser_t *p = c->parsers[mph_event_worker(ev)];
    size_t len;
    const void *v = mph_event_value(ev, &len);
    const char *s;
    size_t n;
    mph_err_t err = mph_json_parse(p, v, len, len);
    if (!err)
        err = mph_json_get_str(p, MPH_JSON_ROOT, "user", &s, &n);
    return err ? err : mph_event_forward(ev, c->out);
}

static int cmd_forward(bench_kafka_t *k, tool_opts_t *t)
{
    char err[512];
    if (!t->input || !t->output || !t->group) {
        fprintf(stderr,
                "tool forward: --input, --output and --group are required\n");
        return 2;
    }
    mph_conf_t *conf = bench_app_conf(k, &t->b, t->group, err, sizeof err);
    mph_app_t *app = conf ? mph_app_new(conf, err, sizeof err) : NULL;
    if (!app) {
        mph_conf_destroy(conf);
        fprintf(stderr, "tool forward: %s\n", err);
        return 1;
    }
    fwd_ctx_t c = {0};
    int nw = mph_app_workers(app);
    c.parsers = calloc((size_t)nw, sizeof *c.parsers);
    int rc = 1;
    bool ok = c.parsers != NULL;
    for (int i = 0; ok && i < nw; i++)
        ok = (c.parsers[i] = mph_json_parser_new(0, err, sizeof err)) != NULL;
    mph_topic_t *in =
        ok ? mph_topic_new(app, t->input, NULL, err, sizeof err) : NULL;
    c.out = in ? mph_topic_new(app, t->output, NULL, err, sizeof err) : NULL;
    if (!c.out ||
        !mph_agent_new(app, "forward", in, fwd_agent, &c, err, sizeof err)) {
        fprintf(stderr, "tool forward: %s\n", err);
        goto out;
    }
    forward_app_running = app;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    mph_err_t e = mph_app_run(app, err, sizeof err);
    if (e)
        fprintf(stderr, "tool forward: %s\n", err);
    rc = e ? 1 : 0;
out:
    mph_app_destroy(app);
    for (int i = 0; c.parsers && i < nw; i++)
        mph_json_parser_destroy(c.parsers[i]);
    free(c.parsers);
    return rc;
}

static double pid_cpu_s(int pid)
{
    bench_sys_t s;
    bench_sys_sample(&s, pid);
    return s.broker_cpu_s;
}

static int cmd_watch(bench_kafka_t *k, tool_opts_t *t)
{
    if (!t->topic) {
        fprintf(stderr, "tool watch: --topic is required\n");
        return 2;
    }
    const bench_opts_t *o = &t->b;
    int64_t base = bench_end_offsets(k, t->topic, o->partitions);
    for (int i = 0; base < 0 && i < 60; i++) {
        bench_sleep_ms(500);
        base = bench_end_offsets(k, t->topic, o->partitions);
    }
    if (base < 0) {
        fprintf(stderr, "tool watch: cannot read the end offsets of %s\n",
                t->topic);
        return 1;
    }
    int64_t t0 = bench_now_ns(), t_first = 0, first_count = 0, last = t0;
    double cpu_first = -1;
    for (;;) {
        int64_t now = bench_now_ns();
        int64_t end = bench_end_offsets(k, t->topic, o->partitions);
        int64_t got = end >= 0 ? end - base : 0;
        if (got > 0 && !t_first) {
            t_first = bench_now_ns();
            first_count = got;
            cpu_first = t->pid > 0 ? pid_cpu_s(t->pid) : -1;
        }
        if (got >= o->messages) {
            int64_t t_done = bench_now_ns();
            double cpu = t->pid > 0 && cpu_first >= 0
                             ? pid_cpu_s(t->pid) - cpu_first
                             : -1;
            double secs = (double)(t_done - t_first) / 1e9;
            double recs = (double)(got - first_count);
            printf(
                "{\"topic\":\"%s\",\"records\":%lld,\"measured_records\":%.0f,"
                "\"seconds\":%.4f,\"records_per_s\":%.1f,\"cpu_s\":%.3f,"
                "\"cpu_s_per_million\":%.3f}\n",
                t->topic, (long long)got, recs, secs,
                secs > 0 ? recs / secs : 0, cpu,
                cpu >= 0 && recs > 0 ? cpu * 1e6 / recs : -1);
            return 0;
        }
        if (t->pid > 0 && kill(t->pid, 0) != 0) {
            fprintf(stderr,
                    "tool watch: process %d is gone after %lld records\n",
                    t->pid, (long long)got);
            return 1;
        }
        if (now - last > 1000000000) {
            last = now;
            bench_progress(o, "watch %s: %lld/%ld records", t->topic,
                           (long long)got, o->messages);
        }
        if (now - t0 > (int64_t)(o->timeout * 1e9)) {
            fprintf(stderr, "tool watch: %lld of %ld records after %.0f s\n",
                    (long long)got, o->messages, o->timeout);
            return 1;
        }
        bench_sleep_ms(10);
    }
}

int bench_tool_main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(
            stderr,
            "usage: mephisto-bench tool create|delete|load|forward|loop|watch "
            "[OPTIONS] (see bench/tools.c)\n");
        return 2;
    }
    const char *cmd = argv[1];
    tool_opts_t t;
    if (parse(&t, argc, argv))
        return 2;
    char err[512];
    bench_kafka_t *k = bench_kafka_new(t.b.broker, err, sizeof err);
    if (!k) {
        fprintf(stderr, "mephisto-bench tool %s: %s\n", cmd, err);
        return 1;
    }
    int rc = 2;
    if (strcmp(cmd, "create") == 0 && t.topic) {
        rc = bench_topic_create(k, t.topic, t.b.partitions, err, sizeof err)
                 ? 1
                 : 0;
        if (rc)
            fprintf(stderr, "tool create: %s\n", err);
    } else if (strcmp(cmd, "delete") == 0 && t.topic) {
        bench_topic_delete(k, t.topic);
        if (t.group)
            bench_group_delete(k, t.group);
        rc = 0;
    } else if (strcmp(cmd, "load") == 0 && t.topic) {
        long n = bench_load(k, &t.b, t.topic, t.b.messages, err, sizeof err);
        rc = n == t.b.messages ? 0 : 1;
        if (rc)
            fprintf(stderr, "tool load: %s\n", err);
    } else if (strcmp(cmd, "forward") == 0) {
        rc = cmd_forward(k, &t);
    } else if (strcmp(cmd, "loop") == 0) {
        rc = cmd_loop(k, &t);
    } else if (strcmp(cmd, "watch") == 0) {
        rc = cmd_watch(k, &t);
    } else {
        fprintf(stderr,
                "mephisto-bench tool: unknown command or missing --topic: %s\n",
                cmd);
    }
    bench_kafka_destroy(k);
    return rc;
}
