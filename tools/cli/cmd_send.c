/*
 * `mephisto send TOPIC`: produce records from the command line.
 *
 * Records go through the engine's own producer (mph_send), so the broker
 * setting, kafka.* properties and partitioning (murmur2, as the Java
 * client) are exactly a worker's. That needs a started app: a tiny one,
 * app_id "mephisto-send", with the topic declared and no agents, so it
 * joins no consumer group. Delivery reports are counted from the app's
 * coordinator thread (and, for the last ones, from mph_app_stop(), which
 * flushes); the totals are read once the app has stopped.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "cli.h"

enum {
    OPT_BROKER,
    OPT_KEY,
    OPT_PARTITION,
    OPT_HEADER,
    OPT_FILE,
    OPT_REPEAT,
    OPT_CONFIG,
    OPT_SET,
    OPT_LOG_LEVEL,
    OPT_HELP
};

static const mph_cli_opt_t send_opts[] = {
    [OPT_BROKER] = {"broker", 0, true},
    [OPT_KEY] = {"key", 'k', true},
    [OPT_PARTITION] = {"partition", 'p', true},
    [OPT_HEADER] = {"header", 'H', true},
    [OPT_FILE] = {"file", 'f', true},
    [OPT_REPEAT] = {"repeat", 'n', true},
    [OPT_CONFIG] = {"config", 'c', true},
    [OPT_SET] = {"set", 0, true},
    [OPT_LOG_LEVEL] = {"log-level", 0, true},
    [OPT_HELP] = {"help", 'h', false},
};
#define NOPTS (sizeof send_opts / sizeof send_opts[0])

void mph__cli_send_help(FILE *out)
{
    fprintf(
        out,
        "Usage: mephisto send TOPIC [options] VALUE...\n"
        "       mephisto send TOPIC [options] --file FILE\n"
        "\n"
        "Produces one record per VALUE, or one per line of FILE (\"-\" reads "
        "stdin;\n"
        "the line's newline is not part of the record), through mephisto's "
        "own\n"
        "producer, then waits until the broker acknowledged every record and "
        "prints\n"
        "\"sent N records to TOPIC\". The topic must exist.\n"
        "\n"
        "Options:\n"
        "  --broker URL           broker: kafka://host:port[,host:port...]\n"
        "  -k, --key K            the key of every record (default: none)\n"
        "  -p, --partition P      the partition of every record (default: by "
        "key,\n"
        "                         murmur2 as the Java client; spread when no "
        "key)\n"
        "  -H, --header NAME=VALUE  a header on every record, repeatable\n"
        "  -f, --file FILE        send each line of FILE; '-' is stdin. A "
        "line may\n"
        "                         hold at most kafka.message.max.bytes "
        "(1000000) bytes\n"
        "  -n, --repeat N         send the values (or the file's lines) N "
        "times\n"
        "  -c, --config FILE      read settings from FILE (\"name = value\" "
        "lines)\n"
        "  --set NAME=VALUE       any setting, repeatable (e.g. kafka.* "
        "properties)\n"
        "  --log-level LEVEL      log_level (default here: warn)\n"
        "  -h, --help             this help\n"
        "\n"
        "Settings, lowest precedence first: defaults, -c FILE, "
        "MEPHISTO_<NAME>\n"
        "environment variables, flags. send always runs as app_id "
        "mephisto-send with\n"
        "one worker thread and no web server; it joins no consumer group. "
        "It needs a\n"
        "real broker: a mock:// cluster would end with the command, and its "
        "records\n"
        "with it.\n"
        "\n"
        "Exit status:\n"
        "  0    every record was acknowledged by the broker\n"
        "  1    a record could not be sent or was not acknowledged (the first\n"
        "       error is printed)\n"
        "  2    bad usage or configuration\n"
        "  4    could not start: broker unreachable, topic missing\n");
}

/* Delivery outcomes, written by the thread serving delivery reports. */
typedef struct send_tally {
    atomic_long ok;
    atomic_long failed;
    atomic_int first_err;
} send_tally_t;

static void on_delivery(mph_err_t err, void *opaque)
{
    send_tally_t *t = opaque;
    if (err == MPH_OK) {
        atomic_fetch_add(&t->ok, 1);
        return;
    }
    atomic_fetch_add(&t->failed, 1);
    int none = 0;
    atomic_compare_exchange_strong(&t->first_err, &none, (int)err);
}

/* What to send and how: everything parsed from the command line. */
typedef struct send_job {
    const char *topic_name;
    const char **values;
    size_t nvalues;
    const char *file;
    FILE *in; /* the opened file (stdin for "-"), before the app exists */
    long long repeat;
    const char *key;
    long long partition;
    mph_header_t *headers;
    char **header_bufs;
    size_t nheaders;
    const char *conf_file;
    mph_cli_setting_t *flags;
    size_t nflags;
    size_t line_max; /* longest line of --file: kafka.message.max.bytes */
} send_job_t;

static void job_free(send_job_t *job)
{
    if (job->in && job->in != stdin)
        fclose(job->in);
    for (size_t i = 0; i < job->nheaders; i++)
        free(job->header_bufs[i]);
    free(job->header_bufs);
    free(job->headers);
    free(job->values);
    free(job->flags);
}

static bool add_header(send_job_t *job, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg) {
        mph__cli_error("send: --header needs NAME=VALUE, got '%s'", arg);
        return false;
    }
    char *copy = strdup(arg);
    if (!copy) {
        mph__cli_error("out of memory");
        return false;
    }
    copy[eq - arg] = '\0';
    job->header_bufs[job->nheaders] = copy;
    job->headers[job->nheaders] =
        (mph_header_t){copy, copy + (eq - arg) + 1, strlen(eq + 1)};
    job->nheaders++;
    return true;
}

/* Returns -1 to go on, else an exit code. */
static int parse_args(int argc, char **argv, send_job_t *job)
{
    size_t n = (size_t)argc + 1;
    job->values = calloc(n, sizeof *job->values);
    job->headers = calloc(n, sizeof *job->headers);
    job->header_bufs = calloc(n, sizeof *job->header_bufs);
    job->flags = calloc(n, sizeof *job->flags);
    if (!job->values || !job->headers || !job->header_bufs || !job->flags) {
        mph__cli_error("out of memory");
        return MPH_CLI_EXIT_USAGE;
    }
    job->repeat = 1;
    job->partition = MPH_PARTITION_ANY;
    mph_cli_args_t a;
    mph__cli_args_init(&a, "send", argc, argv);
    const char *v;
    int id;
    while ((id = mph__cli_args_next(&a, send_opts, NOPTS, &v)) !=
           MPH_CLI_ARG_END) {
        switch (id) {
        case MPH_CLI_ARG_ERROR:
            return MPH_CLI_EXIT_USAGE;
        case MPH_CLI_ARG_POSITIONAL:
            if (!job->topic_name)
                job->topic_name = v;
            else
                job->values[job->nvalues++] = v;
            break;
        case OPT_HELP:
            mph__cli_send_help(stdout);
            return MPH_CLI_EXIT_OK;
        case OPT_BROKER:
            job->flags[job->nflags++] =
                (mph_cli_setting_t){"--broker", "broker", v};
            break;
        case OPT_LOG_LEVEL:
            job->flags[job->nflags++] =
                (mph_cli_setting_t){"--log-level", "log_level", v};
            break;
        case OPT_SET:
            job->flags[job->nflags++] = (mph_cli_setting_t){"--set", NULL, v};
            break;
        case OPT_CONFIG:
            job->conf_file = v;
            break;
        case OPT_KEY:
            job->key = v;
            break;
        case OPT_FILE:
            job->file = v;
            break;
        case OPT_PARTITION:
            if (!mph__cli_parse_int(v, -1, INT32_MAX, &job->partition)) {
                mph__cli_error(
                    "send: --partition: must be a partition number (or -1: by "
                    "key), got '%s'",
                    v);
                return MPH_CLI_EXIT_USAGE;
            }
            break;
        case OPT_REPEAT:
            if (!mph__cli_parse_int(v, 1, 1000000000, &job->repeat)) {
                mph__cli_error(
                    "send: --repeat: must be an integer between 1 and "
                    "1000000000, got '%s'",
                    v);
                return MPH_CLI_EXIT_USAGE;
            }
            break;
        case OPT_HEADER:
            if (!add_header(job, v))
                return MPH_CLI_EXIT_USAGE;
            break;
        }
    }
    if (!job->topic_name) {
        mph__cli_error("send: TOPIC is required (see 'mephisto send --help')");
        return MPH_CLI_EXIT_USAGE;
    }
    if (job->file && job->nvalues) {
        mph__cli_error("send: give VALUEs or --file, not both");
        return MPH_CLI_EXIT_USAGE;
    }
    if (!job->file && !job->nvalues) {
        mph__cli_error("send: nothing to send: give VALUEs or --file FILE ('-' "
                       "for stdin)");
        return MPH_CLI_EXIT_USAGE;
    }
    if (job->file) {
        job->in = strcmp(job->file, "-") == 0 ? stdin : fopen(job->file, "r");
        if (!job->in) {
            mph__cli_error("send: %s: %s", job->file, strerror(errno));
            return MPH_CLI_EXIT_USAGE;
        }
    }
    return -1;
}

/* The sending loop's state. */
typedef struct sender {
    mph_app_t *app;
    mph_topic_t *topic;
    const send_job_t *job;
    send_tally_t *tally;
    long sent;
    mph_err_t send_err; /* mph_send() refused a record */
    size_t refused_len; /* the refused record's value size */
} sender_t;

static bool send_one(sender_t *s, const char *value, size_t len)
{
    const send_job_t *job = s->job;
    mph_err_t e = mph_send(s->app, s->topic, (int32_t)job->partition, job->key,
                           job->key ? strlen(job->key) : 0, value, len,
                           job->headers, job->nheaders, on_delivery, s->tally);
    if (e != MPH_OK) {
        s->send_err = e;
        s->refused_len = len;
        return false;
    }
    s->sent++;
    return true;
}

/* getline() with a limit: one line (with its newline, if any) into *buf.
 * Returns its length, -1 at the end of the file, on a read error or out of
 * memory (errno says which; nothing read), or -2 when more than max bytes
 * come before the newline: the rest of the line is not read, so a file
 * without newlines (/dev/zero) cannot grow memory past max. */
static ssize_t getline_max(char **buf, size_t *cap, FILE *f, size_t max)
{
    size_t len = 0;
    int c;
    errno = 0;
    flockfile(f);
    while ((c = getc_unlocked(f)) != EOF) {
        if (len + 2 > *cap) {
            size_t ncap = *cap ? *cap * 2 : 4096;
            if (ncap > max + 2)
                ncap = max + 2;
            char *nb = realloc(*buf, ncap);
            if (!nb) {
                funlockfile(f);
                errno = ENOMEM;
                return -1;
            }
            *buf = nb;
            *cap = ncap;
        }
        (*buf)[len++] = (char)c;
        if (c == '\n')
            break;
        if (len > max) {
            funlockfile(f);
            return -2;
        }
    }
    funlockfile(f);
    if (len == 0)
        return -1;
    (*buf)[len] = '\0';
    return (ssize_t)len;
}

/* The file's name for messages. */
static const char *file_label(const send_job_t *job)
{
    return strcmp(job->file, "-") == 0 ? "stdin" : job->file;
}

static void line_too_long(const send_job_t *job, long lineno, long sent)
{
    mph__cli_error("send: %s:%ld: line longer than %zu bytes, the largest "
                   "record kafka.message.max.bytes allows; nothing sent from "
                   "this line on (%ld record%s sent before it)",
                   file_label(job), lineno, job->line_max, sent,
                   sent == 1 ? "" : "s");
}

/* Reads every line of f (without its newline) into *lines; -2 with the
 * line's number in *n when one is longer than max, -1 out of memory or
 * on a read error. */
static int read_lines(FILE *f, size_t max, char ***lines, size_t **lens,
                      size_t *n)
{
    size_t cap = 0;
    char *line = NULL;
    size_t linecap = 0;
    ssize_t len;
    *n = 0;
    while ((len = getline_max(&line, &linecap, f, max)) >= 0) {
        if (len > 0 && line[len - 1] == '\n')
            len--;
        if (*n == cap) {
            cap = cap ? cap * 2 : 1024;
            char **nl = realloc(*lines, cap * sizeof *nl);
            size_t *nn = realloc(*lens, cap * sizeof *nn);
            if (nl)
                *lines = nl;
            if (nn)
                *lens = nn;
            if (!nl || !nn)
                goto fail_line;
        }
        (*lines)[*n] = malloc((size_t)len + 1);
        if (!(*lines)[*n])
            goto fail_line;
        memcpy((*lines)[*n], line, (size_t)len);
        (*lines)[*n][len] = '\0';
        (*lens)[(*n)++] = (size_t)len;
    }
    free(line);
    if (len == -2) {
        (*n)++; /* the number of the long line; lines before are freed */
        return -2;
    }
    return errno == ENOMEM ? -1 : 0;
fail_line:
    free(line);
    return -1;
}

/* Sends the file's lines job->repeat times: streamed once, or kept in
 * memory when repeated (stdin cannot be read twice). */
static int send_file(sender_t *s)
{
    const send_job_t *job = s->job;
    FILE *f = job->in;
    int rc = MPH_CLI_EXIT_OK;
    if (job->repeat == 1) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        long lineno = 0;
        while ((len = getline_max(&line, &cap, f, job->line_max)) >= 0) {
            lineno++;
            if (len > 0 && line[len - 1] == '\n')
                len--;
            if (!send_one(s, line, (size_t)len))
                break;
        }
        free(line);
        if (len == -2) {
            line_too_long(job, lineno + 1, s->sent);
            rc = MPH_CLI_EXIT_FAILED;
        } else if (len == -1 && errno == ENOMEM) {
            mph__cli_error("send: %s: out of memory", file_label(job));
            rc = MPH_CLI_EXIT_FAILED;
        }
    } else {
        char **lines = NULL;
        size_t *lens = NULL, n = 0;
        int r = read_lines(f, job->line_max, &lines, &lens, &n);
        if (r == -2) {
            line_too_long(job, (long)n, 0);
            rc = MPH_CLI_EXIT_FAILED;
            n--;
        } else if (r < 0 && !ferror(f)) {
            mph__cli_error("send: %s: out of memory", file_label(job));
            rc = MPH_CLI_EXIT_FAILED;
        }
        for (long long r = 0; rc == MPH_CLI_EXIT_OK && r < job->repeat; r++)
            for (size_t i = 0; i < n; i++)
                if (!send_one(s, lines[i], lens[i]))
                    goto done_lines;
    done_lines:
        for (size_t i = 0; i < n; i++)
            free(lines[i]);
        free(lines);
        free(lens);
    }
    if (ferror(f)) {
        mph__cli_error("send: %s: read error: %s", job->file, strerror(errno));
        rc = MPH_CLI_EXIT_FAILED;
    }
    return rc;
}

static int send_values(sender_t *s)
{
    for (long long r = 0; r < s->job->repeat; r++)
        for (size_t i = 0; i < s->job->nvalues; i++)
            if (!send_one(s, s->job->values[i], strlen(s->job->values[i])))
                return MPH_CLI_EXIT_OK;
    return MPH_CLI_EXIT_OK;
}

/* Sends everything on a started app, stops it (which waits for every
 * acknowledgement) and reports. Returns the exit code. */
static int send_and_report(mph_app_t *app, mph_topic_t *topic,
                           const send_job_t *job)
{
    send_tally_t tally;
    atomic_init(&tally.ok, 0);
    atomic_init(&tally.failed, 0);
    atomic_init(&tally.first_err, 0);
    sender_t s = {.app = app, .topic = topic, .job = job, .tally = &tally};
    int rc = job->file ? send_file(&s) : send_values(&s);
    mph_app_stop(app);

    long ok = atomic_load(&tally.ok), failed = atomic_load(&tally.failed);
    long unreported = s.sent - ok - failed;
    if (s.send_err != MPH_OK) {
        mph__cli_error(
            "send: record %ld (value of %zu bytes) to %s refused: %s (%ld "
            "sent before it, %ld acknowledged)",
            s.sent + 1, s.refused_len, job->topic_name, mph_err_str(s.send_err),
            s.sent, ok);
        return MPH_CLI_EXIT_FAILED;
    }
    if (failed || unreported) {
        mph_err_t first = (mph_err_t)atomic_load(&tally.first_err);
        mph__cli_error("send: %ld of %ld records to %s not delivered: %s",
                       failed + unreported, s.sent, job->topic_name,
                       failed ? mph_err_str(first)
                              : "not acknowledged within shutdown_timeout_ms");
        return MPH_CLI_EXIT_FAILED;
    }
    if (rc != MPH_CLI_EXIT_OK)
        return rc;
    printf("sent %ld record%s to %s\n", s.sent, s.sent == 1 ? "" : "s",
           job->topic_name);
    return fflush(stdout) == 0 ? MPH_CLI_EXIT_OK : MPH_CLI_EXIT_FAILED;
}

int mph__cli_send(int argc, char **argv)
{
    send_job_t job = {0};
    int rc = parse_args(argc, argv, &job);
    if (rc >= 0)
        goto out_job;
    rc = MPH_CLI_EXIT_USAGE;
    static const char *const dflts[] = {"log_level", "warn", NULL};
    mph_conf_t *conf =
        mph__cli_conf_build(dflts, job.conf_file, job.flags, job.nflags);
    if (!conf)
        goto out_job;
    const char *broker = mph_conf_get(conf, "broker");
    if (broker && strncmp(broker, "mock://", 7) == 0) {
        mph__cli_error("send: broker %s: a mock cluster lives only inside "
                       "this command and ends with it, so the records would "
                       "go nowhere; give a real broker (kafka://host:port)",
                       broker);
        mph_conf_destroy(conf);
        goto out_job;
    }
    /* A line of --file is one record: none may be larger than librdkafka
     * lets a message be. */
    job.line_max =
        (size_t)mph_conf_get_int(conf, "kafka.message.max.bytes", 1000000);
    /* What send is, whatever the sources said. */
    static const char *const fixed[] = {"app_id", "mephisto-send", "workers",
                                        "1",      "web_enabled",   "false",
                                        NULL};
    char err[1024];
    for (const char *const *f = fixed; f[0]; f += 2) {
        if (mph_conf_set(conf, f[0], f[1], err, sizeof err) != MPH_OK) {
            mph__cli_error("send: %s", err);
            mph_conf_destroy(conf);
            goto out_job;
        }
    }
    mph__cli_apply_logging(conf);
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    if (!app) {
        mph__cli_error("send: %s", err);
        mph_conf_destroy(conf);
        goto out_job;
    }
    mph_topic_t *topic =
        mph_topic_new(app, job.topic_name, NULL, err, sizeof err);
    if (!topic) {
        mph__cli_error("send: %s", err);
        goto out_app;
    }
    if (mph_app_start(app, err, sizeof err) != MPH_OK) {
        mph__cli_error("send: could not start: %s", err);
        rc = MPH_CLI_EXIT_START;
        goto out_app;
    }
    int parts = mph_topic_partitions(topic);
    if (job.partition >= parts) {
        mph__cli_error("send: --partition %lld: topic %s has %d partition%s",
                       job.partition, job.topic_name, parts,
                       parts == 1 ? "" : "s");
        goto out_app;
    }
    rc = send_and_report(app, topic, &job);
out_app:
    mph_app_destroy(app);
out_job:
    job_free(&job);
    return rc;
}
