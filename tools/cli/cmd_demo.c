/*
 * DESIGN — `mephisto demo`: the word count, end to end, in one process.
 *
 * Everything runs in this process: the broker is `mock://` (librdkafka's
 * in-process mock cluster, private to the app), the app is the word-count
 * example (examples/wordcount, loaded as a plugin; a built-in copy of it
 * when the plugin is not installed next to the binary), and the input is
 * the text of demo_text.h repeated and cut to exactly --words words.
 *
 * Because the demo writes the input itself, it knows the answer: while
 * sending it counts every word the way the example does (runs of bytes
 * between ASCII whitespace), so at the end every word of the vocabulary is
 * read back from the table with mph_table_lookup() and must equal what was
 * sent. Progress uses the same lookups: the words counted so far are the
 * sum of the table's counts over the vocabulary (a few hundred keys), so
 * the demo depends only on the example's contract (input topic, table
 * word_counts), not on how its agents are arranged.
 *
 * Sending starts only when the app is ready (its partitions assigned, from
 * /stats' "ready"), so the throughput measures counting, not the consumer
 * group forming. SIGINT and SIGTERM are blocked before any thread exists
 * and polled with sigtimedwait() between steps: Ctrl-C stops the app
 * cleanly at any point.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "demo_text.h"
#include "mephisto/json.h"
#include "mephisto/sensor.h"
#include "plugin.h"
#include "webget.h"

#define DEMO_APP_ID   "mephisto-demo"
#define DEMO_TOPIC    "wordcount-lines"
#define DEMO_TABLE    "word_counts"
#define DEMO_PLUGIN   "libwordcount.so"
#define READY_TIMEOUT 30000 /* ms for the consumer group to form */
#define STALL_TIMEOUT 30000 /* ms without progress before giving up */

enum {
    OPT_WORDS,
    OPT_WEB_PORT,
    OPT_KEEP_RUNNING,
    OPT_WORKERS,
    OPT_LOG_LEVEL,
    OPT_SET,
    OPT_HELP
};

static const mph_cli_opt_t demo_opts[] = {
    [OPT_WORDS] = {"words", 0, true},
    [OPT_WEB_PORT] = {"web-port", 0, true},
    [OPT_KEEP_RUNNING] = {"keep-running", 0, false},
    [OPT_WORKERS] = {"workers", 0, true},
    [OPT_LOG_LEVEL] = {"log-level", 0, true},
    [OPT_SET] = {"set", 0, true},
    [OPT_HELP] = {"help", 'h', false},
};
#define NOPTS (sizeof demo_opts / sizeof demo_opts[0])

void mph__cli_demo_help(FILE *out)
{
    fprintf(
        out,
        "Usage: mephisto demo [--words N] [--web-port P] [--keep-running]\n"
        "\n"
        "Runs the word-count example in this process on an in-process mock "
        "Kafka\n"
        "cluster (no broker needed): sends a bundled text, repeated to N "
        "words, to\n"
        "topic " DEMO_TOPIC ", shows the words counted so far, then prints "
        "the top 10\n"
        "words, checks every count against what was sent (\"counts "
        "verified\"), prints\n"
        "the throughput and where the web view is, and stops.\n"
        "\n"
        "Options:\n"
        "  --words N          words to send (default 200000; 1 to "
        "50000000)\n"
        "  --web-port P       the web view's port (default 0: a free port)\n"
        "  --keep-running     keep the app and its web view up until Ctrl-C\n"
        "  --workers N        worker threads (default 0: one per CPU)\n"
        "  --log-level LEVEL  log_level (default here: error)\n"
        "  --set NAME=VALUE   any other setting, repeatable (e.g. --set "
        "commit_interval_ms=100)\n"
        "  -h, --help         this help\n"
        "\n"
        "The app is examples/wordcount (" DEMO_PLUGIN
        ", looked up in $MEPHISTO_EXAMPLES_DIR\n"
        "when set, else in examples/ and ../examples/ beside the mephisto "
        "binary); when\n"
        "it is not there, a built-in copy of it runs. app_id is " DEMO_APP_ID
        ", tables\n"
        "are kept in memory, and MEPHISTO_* variables are not read: the demo "
        "is the\n"
        "same everywhere.\n"
        "\n"
        "Exit status:\n"
        "  0    done (or stopped with Ctrl-C under --keep-running)\n"
        "  1    a count differs from what was sent, a record was not "
        "delivered, or\n"
        "       counting stalled\n"
        "  2    bad usage\n"
        "  3    the word-count plugin was found but cannot be loaded\n"
        "  4    the app could not start\n"
        "  130  interrupted (Ctrl-C) before the counts were verified\n");
}

/* ------------------------------------------------------------------ */
/* the text and what was sent                                         */

typedef struct demo_word {
    const char *s;
    size_t len;
    int64_t sent; /* occurrences sent so far */
    int64_t got;  /* the table's count, last read */
} demo_word_t;

typedef struct demo_line {
    const char *s;
    size_t len;
    size_t nwords;
    size_t *words; /* vocabulary index of each word, in order */
} demo_line_t;

typedef struct demo_text {
    demo_word_t *vocab; /* sorted by bytes, unique */
    size_t nvocab;
    demo_line_t *lines;
    size_t nlines;
    size_t words_per_pass;
} demo_text_t;

/* Word boundaries exactly as examples/wordcount splits a line. */
static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' ||
           c == '\r';
}

static int word_cmp(const void *a, const void *b)
{
    const demo_word_t *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Calls fn for every word of s[0..len). */
static void each_word(const char *s, size_t len,
                      void (*fn)(const char *w, size_t n, void *opaque),
                      void *opaque)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && is_space((unsigned char)s[i]))
            i++;
        size_t start = i;
        while (i < len && !is_space((unsigned char)s[i]))
            i++;
        if (i > start)
            fn(s + start, i - start, opaque);
    }
}

static void collect_word(const char *w, size_t n, void *opaque)
{
    demo_text_t *t = opaque;
    t->vocab[t->nvocab++] = (demo_word_t){w, n, 0, 0};
}

struct index_ctx {
    demo_text_t *t;
    demo_line_t *line;
};

static void index_word(const char *w, size_t n, void *opaque)
{
    struct index_ctx *c = opaque;
    demo_word_t key = {w, n, 0, 0};
    demo_word_t *found =
        bsearch(&key, c->t->vocab, c->t->nvocab, sizeof *c->t->vocab, word_cmp);
    if (!found)
        abort(); /* every word was collected from this same text */
    c->line->words[c->line->nwords++] = (size_t)(found - c->t->vocab);
}

static void text_free(demo_text_t *t)
{
    for (size_t i = 0; i < t->nlines; i++)
        free(t->lines[i].words);
    free(t->lines);
    free(t->vocab);
    memset(t, 0, sizeof *t);
}

/* Splits the bundled text into lines and its vocabulary. */
static bool text_init(demo_text_t *t)
{
    const char *text = mph__cli_demo_text;
    size_t len = sizeof mph__cli_demo_text - 1;
    memset(t, 0, sizeof *t);
    /* At most one word per two bytes, at most one line per byte. */
    t->vocab = calloc(len / 2 + 1, sizeof *t->vocab);
    t->lines = calloc(len + 1, sizeof *t->lines);
    if (!t->vocab || !t->lines)
        goto fail;
    each_word(text, len, collect_word, t);
    t->words_per_pass = t->nvocab;
    qsort(t->vocab, t->nvocab, sizeof *t->vocab, word_cmp);
    size_t u = 0;
    for (size_t i = 0; i < t->nvocab; i++)
        if (u == 0 || word_cmp(&t->vocab[u - 1], &t->vocab[i]) != 0)
            t->vocab[u++] = t->vocab[i];
    t->nvocab = u;
    for (const char *p = text; p < text + len;) {
        const char *nl = memchr(p, '\n', (size_t)(text + len - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(text + len - p);
        demo_line_t *line = &t->lines[t->nlines++];
        line->s = p;
        line->len = n;
        line->words = calloc(n / 2 + 1, sizeof *line->words);
        if (!line->words)
            goto fail;
        struct index_ctx c = {t, line};
        each_word(p, n, index_word, &c);
        p += n + 1;
    }
    return true;
fail:
    text_free(t);
    return false;
}

/* ------------------------------------------------------------------ */
/* the built-in word count (the same app as examples/wordcount)       */

typedef struct builtin_wc {
    mph_topic_t *words;
    mph_table_t *counts;
} builtin_wc_t;

static mph_err_t builtin_split(mph_event_t *ev, void *opaque)
{
    builtin_wc_t *w = opaque;
    size_t len;
    const unsigned char *line = mph_event_value(ev, &len);
    size_t i = 0;
    while (i < len) {
        while (i < len && is_space(line[i]))
            i++;
        size_t start = i;
        while (i < len && !is_space(line[i]))
            i++;
        if (i > start) {
            mph_err_t err =
                mph_event_send(ev, w->words, MPH_PARTITION_ANY, line + start,
                               i - start, NULL, 0, NULL, 0);
            if (err)
                return err;
        }
    }
    return MPH_OK;
}

static mph_err_t builtin_count(mph_event_t *ev, void *opaque)
{
    builtin_wc_t *w = opaque;
    size_t len;
    const void *word = mph_event_key(ev, &len);
    return mph_table_incr(ev, w->counts, word, len, 1, NULL);
}

/* Declares the word count on app; returns 0 or -1 after logging why. */
static int builtin_init(mph_app_t *app)
{
    char err[512] = "out of memory";
    builtin_wc_t *wc = calloc(1, sizeof *wc);
    if (!wc || mph_app_keep(app, wc, free) != MPH_OK) {
        free(wc);
        goto fail;
    }
    mph_topic_opts_t *opts = mph_topic_opts_new();
    if (!opts)
        goto fail;
    mph_topic_opts_set(opts, "create", "true", NULL, 0);
    mph_topic_opts_set(opts, "value_codec", "string", NULL, 0);
    mph_topic_t *lines = mph_topic_new(app, DEMO_TOPIC, opts, err, sizeof err);
    mph_topic_opts_destroy(opts);
    if (!lines)
        goto fail;
    wc->words = mph_topic_repartition(app, "words", NULL, err, sizeof err);
    if (!wc->words)
        goto fail;
    mph_table_opts_t *topts = mph_table_opts_new();
    if (!topts)
        goto fail;
    mph_table_opts_set(topts, "value_codec", "i64", NULL, 0);
    mph_table_opts_set(topts, "key_codec", "string", NULL, 0);
    mph_table_opts_set(topts, "default", "0", NULL, 0);
    wc->counts = mph_table_new(app, DEMO_TABLE, topts, err, sizeof err);
    mph_table_opts_destroy(topts);
    if (!wc->counts)
        goto fail;
    if (!mph_agent_new(app, "split", lines, builtin_split, wc, err,
                       sizeof err) ||
        !mph_agent_new(app, "count", wc->words, builtin_count, wc, err,
                       sizeof err))
        goto fail;
    return 0;
fail:
    mph_log(MPH_LOG_ERROR, "demo: built-in word count: %s", err);
    return -1;
}

/* ------------------------------------------------------------------ */
/* the run                                                            */

typedef struct demo_args {
    long long words;
    long long web_port;
    bool keep_running;
    const char *workers;
    const char *log_level;
    const char **sets; /* --set NAME=VALUE, in order */
    size_t nsets;
} demo_args_t;

typedef struct demo {
    demo_args_t args;
    demo_text_t text;
    sigset_t sigs;
    bool interrupted;
    bool tty; /* stderr is a terminal: progress on one line */
    char plugin_path[PATH_MAX];
    mph_cli_plugin_t plugin;
    mph_app_t *app;
    mph_topic_t *topic;
    mph_table_t *table;
    int web_port;
    bool web_up;
    atomic_long acked, failed;
    atomic_int first_err;
    long lines_sent;
    int64_t words_sent;
} demo_t;

static void on_delivery(mph_err_t err, void *opaque)
{
    demo_t *d = opaque;
    if (err == MPH_OK) {
        atomic_fetch_add(&d->acked, 1);
        return;
    }
    atomic_fetch_add(&d->failed, 1);
    int none = 0;
    atomic_compare_exchange_strong(&d->first_err, &none, (int)err);
}

/* Waits up to ms for SIGINT or SIGTERM; true (and remembered) if one came. */
static bool wait_signal(demo_t *d, int ms)
{
    if (d->interrupted)
        return true;
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    siginfo_t si;
    int sig;
    do {
        sig = sigtimedwait(&d->sigs, &si, &ts);
    } while (sig < 0 && errno == EINTR);
    if (sig > 0)
        d->interrupted = true;
    return d->interrupted;
}

static int parse_args(int argc, char **argv, demo_args_t *a)
{
    *a = (demo_args_t){.words = 200000, .web_port = 0};
    a->sets = calloc((size_t)argc + 1, sizeof *a->sets);
    if (!a->sets) {
        mph__cli_error("out of memory");
        return MPH_CLI_EXIT_USAGE;
    }
    mph_cli_args_t p;
    mph__cli_args_init(&p, "demo", argc, argv);
    const char *v;
    int id;
    while ((id = mph__cli_args_next(&p, demo_opts, NOPTS, &v)) !=
           MPH_CLI_ARG_END) {
        switch (id) {
        case MPH_CLI_ARG_ERROR:
            return MPH_CLI_EXIT_USAGE;
        case MPH_CLI_ARG_POSITIONAL:
            mph__cli_error("demo: unexpected argument '%s' (see 'mephisto "
                           "demo --help')",
                           v);
            return MPH_CLI_EXIT_USAGE;
        case OPT_HELP:
            mph__cli_demo_help(stdout);
            return MPH_CLI_EXIT_OK;
        case OPT_WORDS:
            if (!mph__cli_parse_int(v, 1, 50000000, &a->words)) {
                mph__cli_error("demo: --words: must be an integer between 1 "
                               "and 50000000, got '%s'",
                               v);
                return MPH_CLI_EXIT_USAGE;
            }
            break;
        case OPT_WEB_PORT:
            if (!mph__cli_parse_int(v, 0, 65535, &a->web_port)) {
                mph__cli_error("demo: --web-port: must be a port number "
                               "between 0 and 65535, got '%s'",
                               v);
                return MPH_CLI_EXIT_USAGE;
            }
            break;
        case OPT_KEEP_RUNNING:
            a->keep_running = true;
            break;
        case OPT_WORKERS:
            a->workers = v;
            break;
        case OPT_LOG_LEVEL:
            a->log_level = v;
            break;
        case OPT_SET:
            a->sets[a->nsets++] = v;
            break;
        }
    }
    return -1;
}

/* A TCP port that is free on 127.0.0.1 now (the kernel's pick), or -1. The
 * engine binds it moments later; libmephisto does not say which port it
 * bound when given 0, so the demo chooses one itself. */
static int pick_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* Finds libwordcount.so: in $MEPHISTO_EXAMPLES_DIR only, when set; else in
 * examples/ or ../examples/ beside this binary. */
static bool find_plugin(char *out, size_t size)
{
    const char *env = getenv("MEPHISTO_EXAMPLES_DIR");
    if (env && *env) {
        snprintf(out, size, "%s/" DEMO_PLUGIN, env);
        return access(out, R_OK) == 0;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return false;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return false;
    *slash = '\0';
    static const char *const rel[] = {"examples", "../examples"};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        int m = snprintf(out, size, "%s/%s/" DEMO_PLUGIN, exe, rel[i]);
        if (m > 0 && (size_t)m < size && access(out, R_OK) == 0)
            return true;
    }
    return false;
}

static bool conf_apply(mph_conf_t *conf, const char *const *settings)
{
    char err[512];
    for (const char *const *s = settings; s[0]; s += 2) {
        if (mph_conf_set(conf, s[0], s[1], err, sizeof err) != MPH_OK) {
            mph__cli_error("demo: %s", err);
            return false;
        }
    }
    return true;
}

/* The settings of the demo app: its defaults, then --log-level, --workers
 * and --set in order, then what makes it the demo. NULL after printing
 * why. */
static mph_conf_t *demo_conf(const demo_t *d)
{
    char port[16], err[512];
    snprintf(port, sizeof port, "%d", d->web_port);
    static const char *const dflts[] = {"store", "memory", "log_level", "error",
                                        NULL};
    const char *const flags[] = {
        "log_level", d->args.log_level ? d->args.log_level : "error",
        "workers",   d->args.workers ? d->args.workers : "0",
        NULL,
    };
    const char *const fixed[] = {
        "app_id",
        DEMO_APP_ID,
        "broker",
        "mock://",
        "web_enabled",
        "true",
        "web_bind",
        "127.0.0.1",
        "web_port",
        port,
        "wordcount.input_topic",
        DEMO_TOPIC,
        NULL,
    };
    mph_conf_t *conf = mph_conf_new();
    if (!conf) {
        mph__cli_error("out of memory");
        return NULL;
    }
    if (!conf_apply(conf, dflts) || !conf_apply(conf, flags))
        goto fail_conf;
    for (size_t i = 0; i < d->args.nsets; i++) {
        if (mph_conf_set_pair(conf, d->args.sets[i], err, sizeof err) !=
            MPH_OK) {
            mph__cli_error("demo: --set: %s", err);
            goto fail_conf;
        }
    }
    if (!conf_apply(conf, fixed))
        goto fail_conf;
    return conf;
fail_conf:
    mph_conf_destroy(conf);
    return NULL;
}

/* Creates and declares the app (plugin or built-in). Returns an exit code. */
static int demo_declare(demo_t *d)
{
    mph_conf_t *conf = demo_conf(d);
    if (!conf)
        return MPH_CLI_EXIT_USAGE;
    mph__cli_apply_logging(conf);
    char err[1024];
    if (find_plugin(d->plugin_path, sizeof d->plugin_path)) {
        int rc = mph__cli_plugin_open(&d->plugin, d->plugin_path, conf, "demo");
        if (rc != MPH_CLI_EXIT_OK)
            return rc;
        d->app = d->plugin.app;
    } else {
        d->plugin_path[0] = '\0';
        d->app = mph_app_new(conf, err, sizeof err);
        if (!d->app) {
            mph__cli_error("demo: %s", err);
            mph_conf_destroy(conf);
            return MPH_CLI_EXIT_USAGE;
        }
        if (builtin_init(d->app) != 0) {
            mph__cli_error("demo: the built-in word count could not be "
                           "declared (see the log above)");
            return MPH_CLI_EXIT_FAILED;
        }
    }
    d->topic = mph_app_topic(d->app, DEMO_TOPIC);
    d->table = mph_app_table(d->app, DEMO_TABLE);
    if (!d->topic || !d->table) {
        mph__cli_error("demo: plugin %s declares no %s '%s' (is it the "
                       "word-count example?)",
                       d->plugin_path, d->topic ? "table" : "topic",
                       d->topic ? DEMO_TABLE : DEMO_TOPIC);
        return MPH_CLI_EXIT_PLUGIN;
    }
    return MPH_CLI_EXIT_OK;
}

/* Waits until the app's partitions are assigned (/stats "ready"). Returns
 * an exit code, or -1 when ready. */
static int wait_ready(demo_t *d)
{
    char err[256];
    mph_json_parser_t *p = mph_json_parser_new(0, err, sizeof err);
    if (!p) {
        mph__cli_error("demo: %s", err);
        return MPH_CLI_EXIT_FAILED;
    }
    int64_t deadline = mph_clock_mono_ns() + (int64_t)READY_TIMEOUT * 1000000;
    int rc = MPH_CLI_EXIT_FAILED;
    while (!wait_signal(d, 50)) {
        char *json = NULL;
        size_t len = 0;
        bool ready = false;
        mph_err_t e = mph_app_stats_json(d->app, &json, &len);
        if (e == MPH_OK && mph_json_parse(p, json, len, len) == MPH_OK)
            e = mph_json_get_bool(p, MPH_JSON_ROOT, "ready", &ready);
        free(json);
        if (e != MPH_OK) {
            mph__cli_error("demo: cannot read the app's state: %s",
                           mph_err_str(e));
            goto out;
        }
        if (ready) {
            rc = -1;
            goto out;
        }
        if (mph_clock_mono_ns() > deadline) {
            mph__cli_error("demo: the app was not ready (partitions "
                           "assigned) within %d s",
                           READY_TIMEOUT / 1000);
            goto out;
        }
    }
    rc = MPH_CLI_EXIT_INTERRUPTED;
out:
    mph_json_parser_destroy(p);
    return rc;
}

/* Sends one line (or its first max_words words) and counts what it sent.
 * Returns false after printing why when the record is refused. */
static bool send_line(demo_t *d, const demo_line_t *line, size_t max_words)
{
    size_t n = line->nwords < max_words ? line->nwords : max_words;
    size_t len = line->len;
    if (n < line->nwords) {
        /* Cut the line after its n-th word. */
        size_t i = 0, seen = 0;
        while (i < line->len && seen < n) {
            while (i < line->len && is_space((unsigned char)line->s[i]))
                i++;
            while (i < line->len && !is_space((unsigned char)line->s[i]))
                i++;
            seen++;
        }
        len = i;
    }
    mph_err_t e = mph_send(d->app, d->topic, MPH_PARTITION_ANY, NULL, 0,
                           line->s, len, NULL, 0, on_delivery, d);
    if (e != MPH_OK) {
        mph__cli_error("demo: sending line %ld refused: %s", d->lines_sent + 1,
                       mph_err_str(e));
        return false;
    }
    for (size_t i = 0; i < n; i++)
        d->text.vocab[line->words[i]].sent++;
    d->lines_sent++;
    d->words_sent += (int64_t)n;
    return true;
}

/* Reads every vocabulary word's count from the table into got and returns
 * their sum in *sum. Words whose partition is not owned yet count 0. */
static mph_err_t read_counts(demo_t *d, int64_t *sum, const char **failed_word)
{
    *sum = 0;
    for (size_t i = 0; i < d->text.nvocab; i++) {
        demo_word_t *w = &d->text.vocab[i];
        void *val = NULL;
        size_t vlen = 0;
        mph_err_t e =
            mph_table_lookup(d->app, d->table, w->s, w->len, &val, &vlen, 5000);
        if (e == MPH_ERR_NOENT || e == MPH_ERR_PARTITION) {
            w->got = 0;
            continue;
        }
        if (e == MPH_OK && vlen != 8) {
            free(val);
            e = MPH_ERR_TYPE;
        }
        if (e != MPH_OK) {
            *failed_word = w->s;
            return e;
        }
        const unsigned char *b = val;
        uint64_t u = 0;
        for (int k = 0; k < 8; k++)
            u = (u << 8) | b[k];
        free(val);
        w->got = (int64_t)u;
        *sum += w->got;
    }
    return MPH_OK;
}

static void show_progress(demo_t *d, int64_t counted, bool last)
{
    int64_t total = d->args.words;
    int pct = total ? (int)(counted * 100 / total) : 100;
    if (d->tty) {
        fprintf(stderr, "\rcounted %lld / %lld words (%d%%)   %s",
                (long long)counted, (long long)total, pct, last ? "\n" : "");
    } else {
        fprintf(stderr, "counted %lld / %lld words (%d%%)\n",
                (long long)counted, (long long)total, pct);
    }
    fflush(stderr);
}

/* Sends the words and waits until the table has counted them all. Returns
 * an exit code, or -1 when everything was counted; *secs is the time from
 * the first record sent to the last word counted. */
static int send_and_count(demo_t *d, double *secs)
{
    int64_t t0 = mph_clock_mono_ns();
    int64_t last_show = t0, show_every = d->tty ? 100000000 : 1000000000;
    int64_t total = d->args.words;
    size_t li = 0;
    /* Send everything first: the producer queues it; the workers count
     * meanwhile. Signals are checked every 256 lines. */
    while (d->words_sent < total) {
        const demo_line_t *line = &d->text.lines[li];
        li = (li + 1) % d->text.nlines;
        if (!send_line(d, line, (size_t)(total - d->words_sent)))
            return MPH_CLI_EXIT_FAILED;
        if (d->lines_sent % 256 == 0 && wait_signal(d, 0))
            return MPH_CLI_EXIT_INTERRUPTED;
    }
    int64_t counted = 0, last_counted = -1, last_change = t0;
    for (;;) {
        const char *word = NULL;
        mph_err_t e = read_counts(d, &counted, &word);
        int64_t now = mph_clock_mono_ns();
        if (e != MPH_OK) {
            if (d->tty)
                fputc('\n', stderr);
            mph__cli_error("demo: reading the count of '%s' failed: %s", word,
                           mph_err_str(e));
            return MPH_CLI_EXIT_FAILED;
        }
        if (counted >= total) {
            *secs = (double)(now - t0) / 1e9;
            show_progress(d, counted, true);
            return -1;
        }
        if (counted != last_counted) {
            last_counted = counted;
            last_change = now;
        }
        if (now - last_show >= show_every) {
            show_progress(d, counted, false);
            last_show = now;
        }
        if (atomic_load(&d->failed) > 0 || !mph_app_running(d->app) ||
            (now - last_change) / 1000000 > STALL_TIMEOUT) {
            if (d->tty)
                fputc('\n', stderr);
            if (atomic_load(&d->failed) > 0)
                mph__cli_error(
                    "demo: %ld of %ld lines were not delivered: %s",
                    atomic_load(&d->failed), d->lines_sent,
                    mph_err_str((mph_err_t)atomic_load(&d->first_err)));
            else if (!mph_app_running(d->app))
                mph__cli_error("demo: the app stopped after counting %lld "
                               "of %lld words (see the log above)",
                               (long long)counted, (long long)total);
            else
                mph__cli_error("demo: counting stalled at %lld of %lld "
                               "words for %d s",
                               (long long)counted, (long long)total,
                               STALL_TIMEOUT / 1000);
            return MPH_CLI_EXIT_FAILED;
        }
        if (wait_signal(d, 200)) {
            if (d->tty)
                fputc('\n', stderr);
            return MPH_CLI_EXIT_INTERRUPTED;
        }
    }
}

static int by_count_desc(const void *a, const void *b)
{
    const demo_word_t *x = a, *y = b;
    if (x->got != y->got)
        return x->got < y->got ? 1 : -1;
    return word_cmp(a, b);
}

/* Compares every count with what was sent, then prints the top words.
 * Returns an exit code. */
static int verify_and_report(demo_t *d, double secs, double ready_secs)
{
    int64_t sum = 0;
    const char *word = NULL;
    mph_err_t e = read_counts(d, &sum, &word);
    if (e != MPH_OK) {
        mph__cli_error("demo: reading the count of '%s' failed: %s", word,
                       mph_err_str(e));
        return MPH_CLI_EXIT_FAILED;
    }
    size_t wrong = 0;
    const demo_word_t *first_wrong = NULL;
    for (size_t i = 0; i < d->text.nvocab; i++) {
        const demo_word_t *w = &d->text.vocab[i];
        if (w->got != w->sent) {
            wrong++;
            if (!first_wrong)
                first_wrong = w;
        }
    }
    long acked = atomic_load(&d->acked), failed = atomic_load(&d->failed);
    /* The top words, from a sorted copy (the vocabulary stays sorted by
     * bytes for lookups). */
    demo_word_t *top = malloc(d->text.nvocab * sizeof *top);
    if (!top) {
        mph__cli_error("out of memory");
        return MPH_CLI_EXIT_FAILED;
    }
    memcpy(top, d->text.vocab, d->text.nvocab * sizeof *top);
    qsort(top, d->text.nvocab, sizeof *top, by_count_desc);
    size_t ntop = d->text.nvocab < 10 ? d->text.nvocab : 10;
    printf("top %zu words:\n", ntop);
    for (size_t i = 0; i < ntop; i++)
        printf("  %2zu. %-12.*s %lld\n", i + 1, (int)top[i].len, top[i].s,
               (long long)top[i].got);
    free(top);
    if (wrong) {
        fflush(stdout);
        mph__cli_error(
            "demo: counts differ from what was sent: %zu of %zu words, e.g. "
            "'%.*s' counted %lld times, sent %lld times",
            wrong, d->text.nvocab, (int)first_wrong->len, first_wrong->s,
            (long long)first_wrong->got, (long long)first_wrong->sent);
        return MPH_CLI_EXIT_FAILED;
    }
    if (failed || acked != d->lines_sent) {
        fflush(stdout);
        mph__cli_error("demo: %ld of %ld lines were not acknowledged",
                       d->lines_sent - acked, d->lines_sent);
        return MPH_CLI_EXIT_FAILED;
    }
    printf("counts verified: %lld words, %zu distinct, each count equals what "
           "was sent\n",
           (long long)sum, d->text.nvocab);
    printf("throughput: %.0f words/s (%lld words in %.2f s; %ld lines on %d "
           "partitions, %d workers; the group formed in %.1f s)\n",
           secs > 0 ? (double)d->args.words / secs : 0.0,
           (long long)d->args.words, secs, d->lines_sent,
           mph_topic_partitions(d->topic), mph_app_workers(d->app), ready_secs);
    return MPH_CLI_EXIT_OK;
}

/* Asks the web view for /health: is something serving on the port? */
static bool probe_web(int port)
{
    char p[16], err[256];
    snprintf(p, sizeof p, "%d", port);
    mph_cli_http_reply_t r;
    if (mph__cli_http_get("127.0.0.1", p, "/health", 2000, &r, err,
                          sizeof err) != MPH_OK)
        return false;
    mph__cli_http_reply_free(&r);
    return true;
}

static void print_web(const demo_t *d)
{
    if (d->web_up)
        printf("web view: http://127.0.0.1:%d/\n", d->web_port);
    else
        printf("web view: none (web_enabled=true, but nothing answers on "
               "127.0.0.1:%d: this libmephisto does not start it)\n",
               d->web_port);
    fflush(stdout);
}

static int demo_run(demo_t *d)
{
    int rc = demo_declare(d);
    if (rc != MPH_CLI_EXIT_OK)
        return rc;
    if (wait_signal(d, 0))
        return MPH_CLI_EXIT_INTERRUPTED;
    char err[1024];
    int64_t t_start = mph_clock_mono_ns();
    if (mph_app_start(d->app, err, sizeof err) != MPH_OK) {
        mph__cli_error("demo: the app could not start: %s", err);
        return MPH_CLI_EXIT_START;
    }
    d->web_up = probe_web(d->web_port);
    printf("mephisto demo: word count on an in-process mock cluster\n"
           "app %s (%s%s), %d workers, topic %s with %d partitions\n",
           mph_app_id(d->app), d->plugin_path[0] ? "plugin " : "",
           d->plugin_path[0] ? d->plugin_path : "built-in word count",
           mph_app_workers(d->app), DEMO_TOPIC, mph_topic_partitions(d->topic));
    print_web(d);
    rc = wait_ready(d);
    if (rc >= 0)
        return rc;
    double ready_secs = (double)(mph_clock_mono_ns() - t_start) / 1e9;
    printf("sending %lld words: the bundled text (%zu words, %zu distinct) "
           "repeated\n",
           (long long)d->args.words, d->text.words_per_pass, d->text.nvocab);
    fflush(stdout);
    double secs = 0;
    rc = send_and_count(d, &secs);
    if (rc >= 0)
        return rc;
    rc = verify_and_report(d, secs, ready_secs);
    if (rc != MPH_CLI_EXIT_OK)
        return rc;
    if (!d->args.keep_running) {
        if (d->web_up)
            printf("web view: http://127.0.0.1:%d/ stops with the demo "
                   "(--keep-running keeps it up)\n",
                   d->web_port);
        return MPH_CLI_EXIT_OK;
    }
    if (d->web_up)
        printf("web view: http://127.0.0.1:%d/ is up until Ctrl-C\n",
               d->web_port);
    else
        printf("the app keeps running until Ctrl-C\n");
    fflush(stdout);
    while (!wait_signal(d, 1000))
        if (!mph_app_running(d->app)) {
            mph__cli_error("demo: the app stopped (see the log above)");
            return MPH_CLI_EXIT_FAILED;
        }
    d->interrupted = false; /* the expected way to end --keep-running */
    return MPH_CLI_EXIT_OK;
}

int mph__cli_demo(int argc, char **argv)
{
    demo_t d;
    memset(&d, 0, sizeof d);
    atomic_init(&d.acked, 0);
    atomic_init(&d.failed, 0);
    atomic_init(&d.first_err, 0);
    int rc = parse_args(argc, argv, &d.args);
    if (rc >= 0) {
        free(d.args.sets);
        return rc;
    }
    d.tty = isatty(STDERR_FILENO);
    if (!text_init(&d.text)) {
        mph__cli_error("out of memory");
        free(d.args.sets);
        return MPH_CLI_EXIT_FAILED;
    }
    d.web_port = (int)d.args.web_port;
    if (d.web_port == 0)
        d.web_port = pick_free_port();
    if (d.web_port <= 0) {
        mph__cli_error("demo: no free TCP port on 127.0.0.1 for the web view "
                       "(give one with --web-port)");
        text_free(&d.text);
        free(d.args.sets);
        return MPH_CLI_EXIT_START;
    }
    /* Blocked before any thread exists, so every thread inherits it and the
     * signals wait for sigtimedwait(). */
    sigemptyset(&d.sigs);
    sigaddset(&d.sigs, SIGINT);
    sigaddset(&d.sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &d.sigs, NULL);

    rc = demo_run(&d);
    if (rc == MPH_CLI_EXIT_INTERRUPTED)
        mph__cli_error("demo: interrupted; stopping");
    if (d.app) {
        mph_err_t e = mph_app_stop(d.app);
        if (e != MPH_OK && rc == MPH_CLI_EXIT_OK) {
            mph__cli_error("demo: the app stopped on an error: %s",
                           mph_err_str(e));
            rc = MPH_CLI_EXIT_FAILED;
        }
    }
    if (d.plugin.handle) {
        mph__cli_plugin_close(&d.plugin);
    } else {
        mph_app_destroy(d.app);
    }
    text_free(&d.text);
    free(d.args.sets);
    return rc;
}
