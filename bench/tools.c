/*
 * `mephisto-bench tool ...`: small commands bench/peers/run composes to run
 * mephisto, Faust and Kafka Streams over the same input on the same broker:
 *
 *   create  --topic T --partitions P         create a topic
 *   delete  --topic T [--group G]            delete a topic (and a group)
 *   load    --topic T --messages N           produce the seeded records
 *   load    --text --topic T --messages N    produce N seeded UTF-8 lines of
 *           [--vocab V] [--counts FILE]      8-12 words (Zipf over V words),
 *                                            keyless, round-robin over the
 *                                            --partitions; FILE gets
 *                                            "word<TAB>count" of every word
 *                                            sent, the truth
 *   forward --input T --output U             run a mephisto app that reads the
 *                                            JSON field "user" and forwards,
 *                                            until SIGTERM/SIGINT
 *   count   --input T --group G              run the count scenario's app (a
 *                                            memory table "counts" of the
 *                                            records per key) in group G until
 *                                            SIGTERM/SIGINT; prints "first" on
 *                                            stdout when it takes its first
 *                                            record (the scale scenario)
 *   loop    --input T --output U             the same with the plain librdkafka
 *                                            loop of the passthrough baseline
 *   wcloop  --input T --group G [--workers W] [--words FILE]
 *                                            word count in plain librdkafka:
 *                                            lines of T -> words keyed by
 *                                            themselves to G-words-repartition
 *                                            (created) -> counts in a hash
 *                                            map (no store, no changelog),
 *                                            W threads, until SIGTERM/SIGINT;
 *                                            then prints "word<TAB>count"
 *                                            for the words of FILE
 *   watch   --topic U --partitions P --messages N [--pid PID]
 *           [--timeout S]                    wait until U holds N more records;
 *                                            print one JSON line: records/s
 *                                            between the first and the last
 *                                            output, and PID's CPU seconds in
 *                                            that interval
 *   watch   --group G --topic T [--output U] [--internal R] [--pid PID]
 *                                            group mode, for apps with no
 *                                            output record per input record:
 *                                            the clock starts when U (else
 *                                            G's commits on T) first grows and
 *                                            stops when G's committed offsets
 *                                            reach T's end and, with R (a
 *                                            repartition topic G consumes),
 *                                            R's end on every partition,
 *                                            confirmed unchanged 1.5 s later
 *           [--read-committed]               the group's apps write R in
 *                                            transactions (exactly_once): a
 *                                            partition of R also counts as
 *                                            read when only transaction
 *                                            markers lie between G's
 *                                            committed offset and its end
 *           [--stall-timeout S]              give up (exit 1) when nothing
 *                                            came out or got committed for
 *                                            S seconds (0: never)
 *   check   --topic U --messages N [--exact] read U read_committed from its
 *                                            beginning: does it hold the N
 *                                            seeded records (--seed) at
 *                                            least once (exactly once with
 *                                            --exact)? Prints the verdict;
 *                                            exit 0 ok, 1 not (eos.c)
 *   counts  --topic C --words FILE [--value-format be64|text]
 *                                            the latest value of each key of
 *                                            FILE (one a line) in changelog C,
 *                                            printed "word<TAB>value" ("-":
 *                                            none)
 *
 * watch measures every framework the same way from the outside, so start-up
 * (a JVM, a Python interpreter, a consumer group join) is never counted.
 *
 * The text of `load --text` is a pure function of --seed, --vocab and
 * --messages (splitmix64), so a rerun sends the same lines. Word r of the
 * vocabulary is r written in base 70 with two-letter syllables (unique by
 * construction), some with a non-ASCII suffix ("é", "ßen") so that UTF-8
 * words are counted too; words are picked with probability ~ 1/(r+1).
 */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "mephisto/json.h"
#include "tools.h"

/* Largest --vocab: word r has at most 4 syllables (70^4 > 10^7). */
#define TEXT_VOCAB_MAX 10000000

typedef struct tool_opts {
    bench_opts_t b;
    const char *topic, *input, *output, *group;
    const char *internal;     /* watch: repartition topic the group reads */
    const char *counts_path;  /* load --text: the truth, word<TAB>count */
    const char *words_path;   /* counts: the keys to look up */
    const char *value_format; /* counts: be64 or text */
    bool text;
    int vocab;
    int pid;
    bool read_committed; /* watch: R is written in transactions */
    bool exact;          /* check: every record exactly once */
    double stall_timeout; /* watch: seconds without progress; 0 none */
    rd_kafka_t *marker_reader; /* watch --read-committed: see only_markers */
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
        {"text", no_argument, 0, 'x'},
        {"vocab", required_argument, 0, 'V'},
        {"counts", required_argument, 0, 'C'},
        {"words", required_argument, 0, 'W'},
        {"value-format", required_argument, 0, 'F'},
        {"internal", required_argument, 0, 'I'},
        {"read-committed", no_argument, 0, 'R'},
        {"stall-timeout", required_argument, 0, 'Z'},
        {"exact", no_argument, 0, 'E'},
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
    t->vocab = 4000;
    t->value_format = "be64";
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
        case 'x':
            t->text = true;
            break;
        case 'V':
            t->vocab = atoi(optarg);
            break;
        case 'C':
            t->counts_path = optarg;
            break;
        case 'W':
            t->words_path = optarg;
            break;
        case 'F':
            t->value_format = optarg;
            break;
        case 'I':
            t->internal = optarg;
            break;
        case 'R':
            t->read_committed = true;
            break;
        case 'Z':
            t->stall_timeout = atof(optarg);
            break;
        case 'E':
            t->exact = true;
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
    if (t->vocab < 1 || t->vocab > TEXT_VOCAB_MAX) {
        fprintf(stderr, "mephisto-bench tool: --vocab must be 1..%d\n",
                TEXT_VOCAB_MAX);
        return -1;
    }
    if (strcmp(t->value_format, "be64") != 0 &&
        strcmp(t->value_format, "text") != 0) {
        fprintf(stderr,
                "mephisto-bench tool: --value-format must be be64 or text\n");
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

/* tool count: the count scenario's agent, saying when it starts. */
static int count_started; /* __atomic */

static mph_err_t count_agent(mph_event_t *ev, void *opaque)
{
    if (!__atomic_exchange_n(&count_started, 1, __ATOMIC_RELAXED)) {
        printf("first\n");
        fflush(stdout);
    }
    return bench_tablerun_count_agent(ev, opaque);
}

static int cmd_count(bench_kafka_t *k, tool_opts_t *t)
{
    char err[512];
    if (!t->input || !t->group) {
        fprintf(stderr, "tool count: --input and --group are required\n");
        return 2;
    }
    static const bench_tablerun_spec_t spec = {
        .kind = "scale", .store = "memory", .field = "user", .agent = count_agent};
    bench_tablerun_t c;
    memset(&c, 0, sizeof c);
    c.spec = &spec;
    mph_conf_t *conf = bench_app_conf(k, &t->b, t->group, err, sizeof err);
    mph_app_t *app = conf ? mph_app_new(conf, err, sizeof err) : NULL;
    if (!app) {
        mph_conf_destroy(conf);
        fprintf(stderr, "tool count: %s\n", err);
        return 1;
    }
    int rc = 1;
    if (bench_tablerun_declare(&c, app, &t->b, t->input, err, sizeof err)) {
        fprintf(stderr, "tool count: %s\n", err);
        goto out;
    }
    forward_app_running = app;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    mph_err_t e = mph_app_run(app, err, sizeof err);
    if (e)
        fprintf(stderr, "tool count: %s\n", err);
    rc = e ? 1 : 0;
out:
    mph_app_destroy(app);
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

/* ---- load --text: seeded lines of Zipf-distributed words ---- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A uniform double in [0, 1). */
static double unit(uint64_t *s)
{
    return (double)(splitmix64(s) >> 11) * (1.0 / 9007199254740992.0);
}

typedef struct text_gen {
    int vocab;
    char (*words)[16]; /* NUL-terminated UTF-8 */
    double *cdf;       /* cdf[r]: P(rank <= r) */
    int64_t *counts;   /* words sent, per rank */
    int64_t total;     /* words sent */
    uint64_t rng;
} text_gen_t;

/* Word of rank r: r in base 70, least significant syllable first. */
static void text_word(int r, char out[16])
{
    static const char cons[] = "bdfgklmnprstvz", vow[] = "aeiou";
    size_t n = 0;
    unsigned v = (unsigned)r;
    do {
        unsigned syl = v % 70;
        out[n++] = cons[syl / 5];
        out[n++] = vow[syl % 5];
        v /= 70;
    } while (v);
    const char *suffix = "";
    if (r % 9 == 4)
        suffix = "\xc3\xa9"; /* é */
    else if (r % 11 == 5)
        suffix = "\xc3\x9f" /* ß */ "en";
    memcpy(out + n, suffix, strlen(suffix) + 1);
}

static void text_gen_free(text_gen_t *g)
{
    free(g->words);
    free(g->cdf);
    free(g->counts);
}

static bool text_gen_init(text_gen_t *g, int vocab, uint64_t seed)
{
    memset(g, 0, sizeof *g);
    g->vocab = vocab;
    g->rng = seed;
    g->words = calloc((size_t)vocab, sizeof *g->words);
    g->cdf = calloc((size_t)vocab, sizeof *g->cdf);
    g->counts = calloc((size_t)vocab, sizeof *g->counts);
    if (!g->words || !g->cdf || !g->counts) {
        text_gen_free(g);
        return false;
    }
    double sum = 0;
    for (int r = 0; r < vocab; r++) {
        text_word(r, g->words[r]);
        sum += 1.0 / (r + 1);
        g->cdf[r] = sum;
    }
    for (int r = 0; r < vocab; r++)
        g->cdf[r] /= sum;
    return true;
}

static int text_pick(text_gen_t *g)
{
    double u = unit(&g->rng);
    int lo = 0, hi = g->vocab - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (g->cdf[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* Writes the next line (8-12 words, mostly single spaces, now and then two
 * spaces or a tab) into buf (at least 256 bytes); returns its length. */
static size_t text_line(text_gen_t *g, char *buf)
{
    int nwords = 8 + (int)(splitmix64(&g->rng) % 5);
    size_t n = 0;
    for (int i = 0; i < nwords; i++) {
        if (i) {
            uint64_t sep = splitmix64(&g->rng) % 32;
            if (sep == 1)
                buf[n++] = ' '; /* two spaces */
            buf[n++] = sep == 0 ? '\t' : ' ';
        }
        int r = text_pick(g);
        size_t len = strlen(g->words[r]);
        memcpy(buf + n, g->words[r], len);
        n += len;
        g->counts[r]++;
        g->total++;
    }
    return n;
}

static int write_counts(const text_gen_t *g, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return -1;
    }
    for (int r = 0; r < g->vocab; r++)
        if (g->counts[r])
            fprintf(f, "%s\t%lld\n", g->words[r], (long long)g->counts[r]);
    if (fclose(f) != 0) {
        perror(path);
        return -1;
    }
    return 0;
}

static void text_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    long *st = opaque; /* [0] acked, [1] failed */
    st[m->err ? 1 : 0]++;
}

static int cmd_load_text(bench_kafka_t *k, tool_opts_t *t)
{
    const bench_opts_t *o = &t->b;
    char kerr[512];
    text_gen_t g;
    if (!text_gen_init(&g, t->vocab, o->seed)) {
        fprintf(stderr, "tool load: out of memory\n");
        return 1;
    }
    long st[2] = {0, 0};
    rd_kafka_conf_t *kc = bench_kafka_conf(k);
    bench_kafka_engine_producer(kc, 20);
    rd_kafka_conf_set(kc, "client.id", "mephisto-bench-load-text", NULL, 0);
    rd_kafka_conf_set_dr_msg_cb(kc, text_dr);
    rd_kafka_conf_set_opaque(kc, st);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, kerr, sizeof kerr);
    if (!rk) {
        rd_kafka_conf_destroy(kc);
        fprintf(stderr, "tool load: %s\n", kerr);
        text_gen_free(&g);
        return 1;
    }
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, t->topic, NULL);
    char buf[256];
    int rc = 0;
    int64_t t0 = bench_now_ns(), last = t0;
    for (long i = 0; i < o->messages && !rc; i++) {
        size_t len = text_line(&g, buf);
        /* Round-robin: keyless records would stick to one partition. */
        while (rd_kafka_produce(rkt, (int32_t)(i % o->partitions),
                                RD_KAFKA_MSG_F_COPY, buf, len, NULL, 0,
                                NULL) == -1) {
            if (rd_kafka_last_error() != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                fprintf(stderr, "tool load: %s\n",
                        rd_kafka_err2str(rd_kafka_last_error()));
                rc = 1;
                break;
            }
            rd_kafka_poll(rk, 10);
        }
        rd_kafka_poll(rk, 0);
        int64_t now = bench_now_ns();
        if (now - last > 1000000000) {
            last = now;
            bench_progress(o, "load %s: %ld/%ld lines", t->topic, i + 1,
                           o->messages);
        }
        if (now - t0 > (int64_t)(o->timeout * 1e9)) {
            fprintf(stderr, "tool load: timed out after %.0f s\n", o->timeout);
            rc = 1;
        }
    }
    rd_kafka_flush(rk, (int)(o->timeout * 1000));
    if (!rc && (st[0] != o->messages || st[1])) {
        fprintf(stderr,
                "tool load: %ld of %ld lines acknowledged, %ld failed\n", st[0],
                o->messages, st[1]);
        rc = 1;
    }
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    if (!rc && t->counts_path && write_counts(&g, t->counts_path))
        rc = 1;
    if (!rc)
        bench_progress(o, "load %s: %ld lines, %lld words", t->topic,
                       o->messages, (long long)g.total);
    text_gen_free(&g);
    return rc;
}

/* ---- watch --group: committed offsets against end offsets ---- */

/* End offset of each partition of topic into end[0..n); -1 if unknown
 * (e.g. the topic does not exist yet). */
static int end_offsets(rd_kafka_t *rk, const char *topic, int n, int64_t *end)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int p = 0; p < n; p++)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset =
            RD_KAFKA_OFFSET_END;
    int rc = -1;
    if (rd_kafka_offsets_for_times(rk, l, 10000) ==
        RD_KAFKA_RESP_ERR_NO_ERROR) {
        rc = 0;
        for (int i = 0; i < l->cnt && i < n; i++) {
            if (l->elems[i].err || l->elems[i].offset < 0)
                rc = -1;
            end[l->elems[i].partition] = l->elems[i].offset;
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

static int64_t sum(const int64_t *v, int n)
{
    int64_t s = 0;
    for (int i = 0; i < n; i++)
        s += v[i] > 0 ? v[i] : 0;
    return s;
}

/* Group's committed offsets on partitions [0, n) of topics[0..ntopics)
 * (each n partitions) into out[topic * n + partition]; 0 where nothing is
 * committed. Returns 0, or -1 when the broker did not answer. */
static int committed(rd_kafka_t *rk, const char *group,
                     const char *const *topics, int ntopics, int n,
                     int64_t *out)
{
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(ntopics * n);
    for (int i = 0; i < ntopics; i++)
        for (int p = 0; p < n; p++)
            rd_kafka_topic_partition_list_add(l, topics[i], p);
    rd_kafka_ListConsumerGroupOffsets_t *req =
        rd_kafka_ListConsumerGroupOffsets_new(group, l);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    char kerr[256];
    rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(
        rk, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS);
    rd_kafka_AdminOptions_set_request_timeout(ao, 10000, kerr, sizeof kerr);
    rd_kafka_ListConsumerGroupOffsets(rk, &req, 1, ao, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
    int rc = -1;
    const rd_kafka_ListConsumerGroupOffsets_result_t *res =
        ev ? rd_kafka_event_ListConsumerGroupOffsets_result(ev) : NULL;
    size_t ng = 0;
    const rd_kafka_group_result_t **gr =
        res && !rd_kafka_event_error(ev)
            ? rd_kafka_ListConsumerGroupOffsets_result_groups(res, &ng)
            : NULL;
    if (gr && ng == 1 && !rd_kafka_group_result_error(gr[0])) {
        const rd_kafka_topic_partition_list_t *pl =
            rd_kafka_group_result_partitions(gr[0]);
        memset(out, 0, sizeof *out * (size_t)(ntopics * n));
        for (int i = 0; pl && i < pl->cnt; i++)
            for (int j = 0; j < ntopics; j++)
                if (strcmp(pl->elems[i].topic, topics[j]) == 0 &&
                    pl->elems[i].partition < n && pl->elems[i].offset > 0)
                    out[j * n + pl->elems[i].partition] = pl->elems[i].offset;
        rc = 0;
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_queue_destroy(q);
    rd_kafka_ListConsumerGroupOffsets_destroy(req);
    return rc;
}

/* Whether partition p of topic holds no record a read_committed reader
 * sees in [from, end): what is left after a transactional app's last
 * committed offset is its transactions' markers (a consumer commits the
 * offset after the last record it processed, and the marker comes after
 * it). rk is a consumer with isolation.level=read_committed and partition
 * EOF events; it reads from `from` until the partition's end (its last
 * stable offset: an open transaction ends it early, so that counts as not
 * done) or a record, for at most 5 s. */
static bool only_markers(rd_kafka_t *rk, const char *topic, int p,
                         int64_t from, int64_t end)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, p)->offset = from;
    bool markers = false;
    if (rd_kafka_assign(rk, l) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        int64_t t0 = bench_now_ns();
        while (bench_now_ns() - t0 < 5000000000LL) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
            if (!m)
                continue;
            bool last = false;
            if (m->partition == p) {
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                    markers = m->offset >= end;
                    last = true;
                } else if (!m->err) {
                    last = true; /* a record: not done */
                }
            }
            rd_kafka_message_destroy(m);
            if (last)
                break;
        }
        rd_kafka_assign(rk, NULL);
    }
    rd_kafka_topic_partition_list_destroy(l);
    return markers;
}

/* The group is done: every input line and (with an internal topic) every
 * repartitioned record committed. *in_end and *int_end get the end sums,
 * prog[0..1] the committed sums (input, internal). */
static bool group_done(rd_kafka_t *rk, const tool_opts_t *t, int64_t *in_end,
                       int64_t *int_end, int64_t prog[2])
{
    int n = t->b.partitions;
    const char *topics[2] = {t->topic, t->internal};
    int nt = t->internal ? 2 : 1;
    int64_t *c = calloc((size_t)(2 * n), sizeof *c);
    int64_t *e = calloc((size_t)(2 * n), sizeof *e);
    bool done = c && e && committed(rk, t->group, topics, nt, n, c) == 0 &&
                end_offsets(rk, t->topic, n, e) == 0 &&
                (!t->internal || end_offsets(rk, t->internal, n, e + n) == 0);
    for (int i = 0; done && i < n; i++)
        done = c[i] == e[i];
    for (int i = n; done && i < nt * n; i++)
        done = c[i] == e[i] ||
               (t->marker_reader && c[i] < e[i] &&
                only_markers(t->marker_reader, t->internal, i - n, c[i], e[i]));
    prog[0] = c ? sum(c, n) : -1;
    prog[1] = c ? sum(c + n, n) : -1;
    *in_end = e ? sum(e, n) : -1;
    *int_end = e && t->internal ? sum(e + n, n) : 0;
    free(c);
    free(e);
    return done;
}

static int cmd_watch_group(bench_kafka_t *k, tool_opts_t *t)
{
    const bench_opts_t *o = &t->b;
    int n = o->partitions;
    char kerr[512];
    rd_kafka_conf_t *kc = bench_kafka_conf(k);
    rd_kafka_conf_set(kc, "client.id", "mephisto-bench-watch", NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, kerr, sizeof kerr);
    int64_t *v = calloc((size_t)n, sizeof *v);
    if (!rk || !v) {
        if (!rk)
            rd_kafka_conf_destroy(kc);
        fprintf(stderr, "tool watch: %s\n", rk ? "out of memory" : kerr);
        free(v);
        if (rk)
            rd_kafka_destroy(rk);
        return 1;
    }
    if (t->read_committed && t->internal) {
        rd_kafka_conf_t *mc = bench_kafka_conf(k);
        char group[96];
        snprintf(group, sizeof group, "mephisto-bench-watch-%d", (int)getpid());
        rd_kafka_conf_set(mc, "group.id", group, NULL, 0);
        rd_kafka_conf_set(mc, "client.id", "mephisto-bench-watch-rc", NULL, 0);
        rd_kafka_conf_set(mc, "enable.auto.commit", "false", NULL, 0);
        rd_kafka_conf_set(mc, "enable.partition.eof", "true", NULL, 0);
        rd_kafka_conf_set(mc, "isolation.level", "read_committed", NULL, 0);
        rd_kafka_conf_set(mc, "fetch.wait.max.ms", "10", NULL, 0);
        t->marker_reader =
            rd_kafka_new(RD_KAFKA_CONSUMER, mc, kerr, sizeof kerr);
        if (!t->marker_reader) {
            rd_kafka_conf_destroy(mc);
            fprintf(stderr, "tool watch: %s\n", kerr);
            free(v);
            rd_kafka_destroy(rk);
            return 1;
        }
    }
    int rc = 1;
    int64_t t0 = bench_now_ns(), last = t0, t_first = 0, t_done = 0;
    /* --stall-timeout: the last time something came out or got committed. */
    int64_t t_progress = t0, seen[2] = {-1, -1};
    int64_t base = -1, in_end = 0, int_end = 0, cand_in = 0, cand_int = 0;
    int64_t prog[2] = {0, 0};
    double cpu_first = -1, cpu_done = -1;
    const char *topics[1] = {t->topic};
    for (;;) {
        int64_t now = bench_now_ns();
        if (!t_first) {
            /* The clock starts at the first output (or the first commit). */
            int64_t s = -1;
            if (t->output) {
                if (end_offsets(rk, t->output, n, v) == 0)
                    s = sum(v, n);
            } else if (committed(rk, t->group, topics, 1, n, v) == 0) {
                s = sum(v, n);
            }
            if (s >= 0 && base < 0)
                base = t->output ? s : 0;
            if (s >= 0 && s > base) {
                t_first = bench_now_ns();
                cpu_first = t->pid > 0 ? pid_cpu_s(t->pid) : -1;
            }
        } else if (!t_done) {
            if (group_done(rk, t, &in_end, &int_end, prog)) {
                t_done = bench_now_ns();
                cpu_done = t->pid > 0 ? pid_cpu_s(t->pid) : -1;
                cand_in = in_end;
                cand_int = int_end;
            }
        } else if (now - t_done > 1500000000) {
            /* Confirm: nothing more arrived and everything is committed. */
            if (group_done(rk, t, &in_end, &int_end, prog) &&
                in_end == cand_in && int_end == cand_int) {
                double secs = (double)(t_done - t_first) / 1e9;
                double cpu =
                    cpu_first >= 0 && cpu_done >= 0 ? cpu_done - cpu_first : -1;
                double recs = (double)in_end;
                printf("{\"group\":\"%s\",\"records\":%lld,"
                       "\"internal_records\":%lld,\"seconds\":%.4f,"
                       "\"records_per_s\":%.1f,\"cpu_s\":%.3f,"
                       "\"cpu_s_per_million\":%.3f}\n",
                       t->group, (long long)in_end, (long long)int_end, secs,
                       secs > 0 ? recs / secs : 0, cpu,
                       cpu >= 0 && recs > 0 ? cpu * 1e6 / recs : -1);
                rc = 0;
                break;
            }
            t_done = 0; /* more came: not done after all */
        }
        if (t->pid > 0 && kill(t->pid, 0) != 0) {
            fprintf(stderr, "tool watch: process %d is gone\n", t->pid);
            break;
        }
        if (prog[0] != seen[0] || prog[1] != seen[1]) {
            seen[0] = prog[0];
            seen[1] = prog[1];
            t_progress = now;
        }
        if (t->stall_timeout > 0 &&
            now - t_progress > (int64_t)(t->stall_timeout * 1e9)) {
            fprintf(stderr,
                    "tool watch: group %s stalled: %s for %.0f s (committed "
                    "%lld/%lld input, %lld/%lld internal)\n",
                    t->group,
                    !t_first ? "no output" : "no new commits",
                    t->stall_timeout, (long long)prog[0], (long long)in_end,
                    (long long)prog[1], (long long)int_end);
            break;
        }
        if (now - last > 1000000000) {
            last = now;
            bench_progress(o,
                           "watch group %s: %s; committed %lld/%lld input, "
                           "%lld/%lld internal",
                           t->group,
                           !t_first ? "waiting for the first output"
                           : t_done ? "confirming"
                                    : "waiting for the commits",
                           (long long)prog[0], (long long)in_end,
                           (long long)prog[1], (long long)int_end);
        }
        if (now - t0 > (int64_t)(o->timeout * 1e9)) {
            fprintf(stderr,
                    "tool watch: group %s not done after %.0f s: %s; "
                    "committed %lld/%lld input, %lld/%lld internal\n",
                    t->group, o->timeout,
                    !t_first ? "no output" : "still processing",
                    (long long)prog[0], (long long)in_end, (long long)prog[1],
                    (long long)int_end);
            break;
        }
        bench_sleep_ms(t_first ? 100 : 10);
    }
    free(v);
    rd_kafka_destroy(rk);
    if (t->marker_reader) {
        rd_kafka_consumer_close(t->marker_reader);
        rd_kafka_destroy(t->marker_reader);
        t->marker_reader = NULL;
    }
    return rc;
}

/* ---- counts: latest changelog value of a few keys ---- */

typedef struct word_val {
    char *word;
    size_t len;
    char val[32]; /* "-" until seen */
} word_val_t;

static word_val_t *read_words(const char *path, int *count)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return NULL;
    }
    word_val_t *w = NULL;
    int n = 0, cap = 0;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        size_t len = strcspn(line, "\r\n");
        line[len] = 0;
        if (!len)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            word_val_t *nw = realloc(w, (size_t)cap * sizeof *w);
            if (!nw)
                break;
            w = nw;
        }
        w[n].word = strdup(line);
        w[n].len = len;
        strcpy(w[n].val, "-");
        if (!w[n].word)
            break;
        n++;
    }
    fclose(f);
    *count = n;
    return w;
}

static void set_value(word_val_t *w, const tool_opts_t *t, const void *v,
                      size_t len)
{
    if (!v) {
        strcpy(w->val, "-"); /* a tombstone */
    } else if (strcmp(t->value_format, "be64") == 0) {
        if (len != 8) {
            snprintf(w->val, sizeof w->val, "bad(%zu bytes)", len);
            return;
        }
        const unsigned char *b = v;
        uint64_t x = 0;
        for (int i = 0; i < 8; i++)
            x = x << 8 | b[i];
        snprintf(w->val, sizeof w->val, "%lld", (long long)(int64_t)x);
    } else {
        size_t n = len < sizeof w->val - 1 ? len : sizeof w->val - 1;
        memcpy(w->val, v, n);
        w->val[n] = 0;
    }
}

static int cmd_counts(bench_kafka_t *k, tool_opts_t *t)
{
    if (!t->words_path) {
        fprintf(stderr, "tool counts: --topic and --words are required\n");
        return 2;
    }
    int nw = 0;
    word_val_t *w = read_words(t->words_path, &nw);
    if (!w)
        return 1;
    char kerr[512];
    rd_kafka_conf_t *kc = bench_kafka_conf(k);
    rd_kafka_conf_set(kc, "group.id", "mephisto-bench-counts", NULL, 0);
    rd_kafka_conf_set(kc, "enable.auto.commit", "false", NULL, 0);
    /* The end of a transactional changelog is a marker the reader never
     * sees: a partition is read at its EOF event (or its last record). */
    rd_kafka_conf_set(kc, "enable.partition.eof", "true", NULL, 0);
    rd_kafka_conf_set(kc, "isolation.level", "read_committed", NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, kerr, sizeof kerr);
    int rc = 1;
    if (!rk) {
        rd_kafka_conf_destroy(kc);
        fprintf(stderr, "tool counts: %s\n", kerr);
        goto out;
    }
    /* The partitions and, for each, the end offset to read up to. */
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, t->topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) || md->topic_cnt != 1 ||
        md->topics[0].err) {
        fprintf(stderr, "tool counts: no topic %s\n", t->topic);
        if (md)
            rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        rd_kafka_destroy(rk);
        goto out;
    }
    int np = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(np);
    int64_t *hi = calloc((size_t)np, sizeof *hi);
    int open = 0;
    for (int p = 0; hi && p < np; p++) {
        int64_t lo;
        if (rd_kafka_query_watermark_offsets(rk, t->topic, p, &lo, &hi[p],
                                             10000)) {
            fprintf(stderr, "tool counts: no end offset of %s [%d]\n", t->topic,
                    p);
            goto done;
        }
        if (hi[p] > lo) {
            rd_kafka_topic_partition_list_add(l, t->topic, p)->offset =
                RD_KAFKA_OFFSET_BEGINNING;
            open++;
        }
    }
    if (!hi || rd_kafka_assign(rk, l)) {
        fprintf(stderr, "tool counts: cannot assign %s\n", t->topic);
        goto done;
    }
    int64_t t0 = bench_now_ns();
    while (open > 0) {
        if (bench_now_ns() - t0 > (int64_t)(t->b.timeout * 1e9)) {
            fprintf(stderr, "tool counts: %s not read to its end in %.0f s\n",
                    t->topic, t->b.timeout);
            goto done;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && m->partition >= 0 &&
            m->partition < np && hi[m->partition] != INT64_MAX) {
            hi[m->partition] = INT64_MAX;
            open--;
        } else if (!m->err) {
            for (int i = 0; i < nw; i++)
                if (m->key_len == w[i].len &&
                    memcmp(m->key, w[i].word, w[i].len) == 0)
                    set_value(&w[i], t, m->payload, m->len);
            /* The last record may be a transaction marker, never seen:
             * a partition is read when the next offset reaches the end. */
            if (m->offset + 1 >= hi[m->partition]) {
                hi[m->partition] = INT64_MAX;
                open--;
            }
        }
        rd_kafka_message_destroy(m);
        if (open > 0 && rd_kafka_position(rk, l) == 0)
            for (int i = 0; i < l->cnt; i++) {
                int p = l->elems[i].partition;
                if (hi[p] != INT64_MAX && l->elems[i].offset >= hi[p]) {
                    hi[p] = INT64_MAX;
                    open--;
                }
            }
    }
    for (int i = 0; i < nw; i++)
        printf("%s\t%s\n", w[i].word, w[i].val);
    rc = 0;
done:
    free(hi);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
out:
    for (int i = 0; i < nw; i++)
        free(w[i].word);
    free(w);
    return rc;
}

/* ---- wcloop: word count in plain librdkafka, counts in memory ---- */

/* Open-addressing map word -> count, one per thread. */
typedef struct wc_slot {
    char *word; /* NULL: empty */
    size_t len;
    int64_t count;
} wc_slot_t;

typedef struct wc_map {
    wc_slot_t *slots;
    size_t cap, used; /* cap a power of two */
} wc_map_t;

static uint64_t wc_hash(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

static wc_slot_t *wc_find(wc_map_t *m, const void *w, size_t n)
{
    size_t i = (size_t)wc_hash(w, n) & (m->cap - 1);
    while (m->slots[i].word &&
           (m->slots[i].len != n || memcmp(m->slots[i].word, w, n) != 0))
        i = (i + 1) & (m->cap - 1);
    return &m->slots[i];
}

static bool wc_grow(wc_map_t *m)
{
    wc_map_t bigger = {calloc(m->cap ? m->cap * 2 : 1024, sizeof(wc_slot_t)),
                       m->cap ? m->cap * 2 : 1024, m->used};
    if (!bigger.slots)
        return false;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].word)
            *wc_find(&bigger, m->slots[i].word, m->slots[i].len) = m->slots[i];
    free(m->slots);
    *m = bigger;
    return true;
}

static bool wc_add(wc_map_t *m, const void *w, size_t n)
{
    if ((m->used + 1) * 2 > m->cap && !wc_grow(m))
        return false;
    wc_slot_t *s = wc_find(m, w, n);
    if (!s->word) {
        if (!(s->word = malloc(n ? n : 1)))
            return false;
        memcpy(s->word, w, n);
        s->len = n;
        m->used++;
    }
    s->count++;
    return true;
}

static void wc_free(wc_map_t *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].word);
    free(m->slots);
}

typedef struct wc_thread {
    rd_kafka_t *consumer, *producer;
    rd_kafka_topic_t *rkt; /* the repartition topic */
    const char *input;
    wc_map_t map;
    int failed; /* a word could not be sent or counted */
    pthread_t th;
} wc_thread_t;

static int is_ascii_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' ||
           c == '\r';
}

static void *wc_main(void *arg)
{
    wc_thread_t *t = arg;
    while (!loop_stop && !t->failed) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(t->consumer, 100);
        if (!m) {
            rd_kafka_poll(t->producer, 0);
            continue;
        }
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        if (strcmp(rd_kafka_topic_name(m->rkt), t->input) == 0) {
            /* lines -> words, keyed by the word (murmur2 as the others) */
            const unsigned char *b = m->payload;
            size_t i = 0, n = m->len;
            while (i < n) {
                while (i < n && is_ascii_space(b[i]))
                    i++;
                size_t start = i;
                while (i < n && !is_ascii_space(b[i]))
                    i++;
                if (i == start)
                    continue;
                while (rd_kafka_produce(t->rkt, RD_KAFKA_PARTITION_UA,
                                        RD_KAFKA_MSG_F_COPY, NULL, 0, b + start,
                                        i - start, NULL) == -1) {
                    if (rd_kafka_last_error() !=
                        RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                        t->failed = 1;
                        break;
                    }
                    rd_kafka_poll(t->producer, 10);
                }
            }
        } else if (!wc_add(&t->map, m->key, m->key_len)) {
            t->failed = 1;
        }
        rd_kafka_message_destroy(m);
        rd_kafka_poll(t->producer, 0);
    }
    rd_kafka_flush(t->producer, 30000);
    return NULL;
}

static int wc_new(wc_thread_t *t, bench_kafka_t *k, const tool_opts_t *o,
                  const char *repart, char *err, size_t errsz)
{
    rd_kafka_conf_t *kc = bench_kafka_conf(k);
    bench_kafka_engine_consumer(kc, o->group);
    /* Commits what it consumed each second, as the plain loop does. */
    rd_kafka_conf_set(kc, "enable.auto.commit", "true", NULL, 0);
    rd_kafka_conf_set(kc, "auto.commit.interval.ms", "1000", NULL, 0);
    t->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, errsz);
    if (!t->consumer) {
        rd_kafka_conf_destroy(kc);
        return -1;
    }
    rd_kafka_poll_set_consumer(t->consumer);
    kc = bench_kafka_conf(k);
    bench_kafka_engine_producer(kc, o->b.linger_ms);
    rd_kafka_conf_set(kc, "partitioner", "murmur2", NULL, 0);
    t->producer = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, errsz);
    if (!t->producer) {
        rd_kafka_conf_destroy(kc);
        return -1;
    }
    t->rkt = rd_kafka_topic_new(t->producer, repart, NULL);
    t->input = o->input;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(l, o->input, RD_KAFKA_PARTITION_UA);
    rd_kafka_topic_partition_list_add(l, repart, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(t->consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        snprintf(err, errsz, "subscribe: %s", rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

/* Prints "word<TAB>count" for every word of --words, summed over the
 * threads' maps (each word is counted by the thread owning its partition). */
static void wc_print(wc_thread_t *th, int n, const char *path)
{
    int nw = 0;
    word_val_t *w = read_words(path, &nw);
    for (int i = 0; w && i < nw; i++) {
        int64_t c = 0;
        for (int j = 0; j < n; j++) {
            wc_slot_t *s =
                th[j].map.cap ? wc_find(&th[j].map, w[i].word, w[i].len) : NULL;
            c += s && s->word ? s->count : 0;
        }
        printf("%s\t%lld\n", w[i].word, (long long)c);
        free(w[i].word);
    }
    free(w);
    fflush(stdout);
}

static int cmd_wcloop(bench_kafka_t *k, tool_opts_t *t)
{
    char err[512] = "out of memory";
    if (!t->input || !t->group) {
        fprintf(stderr, "tool wcloop: --input and --group are required\n");
        return 2;
    }
    char repart[512];
    snprintf(repart, sizeof repart, "%s-words-repartition", t->group);
    if (bench_topic_create(k, repart, t->b.partitions, err, sizeof err)) {
        fprintf(stderr, "tool wcloop: %s\n", err);
        return 1;
    }
    int n = t->b.workers > 0 ? t->b.workers : 1;
    wc_thread_t *th = calloc((size_t)n, sizeof *th);
    int started = 0, rc = 1;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    for (int i = 0; th && i < n; i++) {
        if (wc_new(&th[i], k, t, repart, err, sizeof err) ||
            pthread_create(&th[i].th, NULL, wc_main, &th[i]))
            break;
        started++;
    }
    if (started == n) {
        rc = 0;
        while (!loop_stop)
            bench_sleep_ms(100);
    } else {
        fprintf(stderr, "tool wcloop: %s\n", err);
        loop_stop = 1;
    }
    for (int i = 0; i < started; i++) {
        pthread_join(th[i].th, NULL);
        if (th[i].failed) {
            fprintf(stderr, "tool wcloop: a word could not be sent or "
                            "counted\n");
            rc = 1;
        }
    }
    if (!rc && t->words_path)
        wc_print(th, n, t->words_path);
    for (int i = 0; th && i < n; i++) {
        if (th[i].consumer) {
            rd_kafka_consumer_close(th[i].consumer);
            rd_kafka_destroy(th[i].consumer);
        }
        if (th[i].rkt)
            rd_kafka_topic_destroy(th[i].rkt);
        if (th[i].producer)
            rd_kafka_destroy(th[i].producer);
        wc_free(&th[i].map);
    }
    free(th);
    return rc;
}

int bench_tool_main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: mephisto-bench tool "
                        "create|delete|load|forward|count|loop|wcloop|watch|counts|"
                        "check "
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
    } else if (strcmp(cmd, "load") == 0 && t.topic && t.text) {
        rc = cmd_load_text(k, &t);
    } else if (strcmp(cmd, "load") == 0 && t.topic) {
        long n = bench_load(k, &t.b, t.topic, t.b.messages, err, sizeof err);
        rc = n == t.b.messages ? 0 : 1;
        if (rc)
            fprintf(stderr, "tool load: %s\n", err);
    } else if (strcmp(cmd, "forward") == 0) {
        rc = cmd_forward(k, &t);
    } else if (strcmp(cmd, "count") == 0) {
        rc = cmd_count(k, &t);
    } else if (strcmp(cmd, "wcloop") == 0) {
        rc = cmd_wcloop(k, &t);
    } else if (strcmp(cmd, "loop") == 0) {
        rc = cmd_loop(k, &t);
    } else if (strcmp(cmd, "watch") == 0 && t.group && t.topic) {
        rc = cmd_watch_group(k, &t);
    } else if (strcmp(cmd, "watch") == 0) {
        rc = cmd_watch(k, &t);
    } else if (strcmp(cmd, "check") == 0 && t.topic) {
        char check[200];
        rc = bench_check_output(k, &t.b, t.topic, t.b.partitions, NULL,
                                t.b.messages, t.exact, check, sizeof check)
                 ? 1
                 : 0;
        printf("%s\n", check);
    } else if (strcmp(cmd, "counts") == 0 && t.topic) {
        rc = cmd_counts(k, &t);
    } else {
        fprintf(stderr,
                "mephisto-bench tool: unknown command or missing --topic: %s\n",
                cmd);
    }
    bench_kafka_destroy(k);
    return rc;
}
