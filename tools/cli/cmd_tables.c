/*
 * DESIGN — what an app plugin declares, and what its tables hold:
 * `mephisto tables`, `agents`, `topics`, `table get`, `table dump`.
 *
 * Every command loads the plugin and lets mephisto_app_init declare the
 * app; then:
 *
 *   tables      never starts the app. libmephisto's public API has no way
 *               to list an app's tables, so the tables described are those
 *               named on the command line plus those with local RocksDB
 *               state under <datadir>/<app_id>/; each is found with
 *               mph_app_table(), its shards read with
 *               mph_table_local_foreach().
 *   agents,     the public API cannot list these before start either, but
 *   topics      /stats can: the app is started on a private in-process mock
 *               cluster (broker mock://, one worker, no web view, memory
 *               tables), its statistics read once with mph_app_stats_json()
 *               and the app stopped. Nothing leaves the process; a source
 *               topic the app does not create itself makes that start fail.
 *   table get   asks a running worker's web view first
 *               (GET /tables/<table>/<key>); when nothing answers there (or
 *               it has no such route), it reads the local RocksDB shards
 *               with mph_table_local_get().
 *   table dump  reads the local shards (the web view has no route for a
 *               whole table).
 *   timers      never starts the app either: starting it would run the
 *               app's start hooks, tasks and timers (user code with side
 *               effects). mph_app_services_json() describes the declared
 *               timers, crontab entries and tasks of an app not started.
 *
 * Values are printed by type: i64 (8 bytes, big-endian) as numbers, text
 * as JSON strings, anything else as escaped bytes. The table's value codec
 * is not readable through the public API either, so --value-codec says it
 * and `auto` (the default) guesses from the bytes.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "mephisto/json.h"
#include "mephisto/jsonw.h"
#include "mephisto/sensor.h"
#include "plugin.h"
#include "webget.h"

/* How long a table lookup may wait for a worker's web view. */
#define WEB_TIMEOUT_MS 3000

enum {
    OPT_APP,
    OPT_CONFIG,
    OPT_SET,
    OPT_DATADIR,
    OPT_LOG_LEVEL,
    OPT_WEB,
    OPT_FORMAT,
    OPT_VALUE_CODEC,
    OPT_HELP
};

static const mph_cli_opt_t table_opts[] = {
    [OPT_APP] = {"app", 0, true},
    [OPT_CONFIG] = {"config", 'c', true},
    [OPT_SET] = {"set", 0, true},
    [OPT_DATADIR] = {"datadir", 0, true},
    [OPT_LOG_LEVEL] = {"log-level", 0, true},
    [OPT_WEB] = {"web", 0, true},
    [OPT_FORMAT] = {"format", 0, true},
    [OPT_VALUE_CODEC] = {"value-codec", 0, true},
    [OPT_HELP] = {"help", 'h', false},
};
#define NOPTS (sizeof table_opts / sizeof table_opts[0])

/* Options every command of this file takes. */
#define COMMON_OPTS                                                            \
    ((1u << OPT_APP) | (1u << OPT_CONFIG) | (1u << OPT_SET) |                  \
     (1u << OPT_DATADIR) | (1u << OPT_LOG_LEVEL) | (1u << OPT_HELP))

typedef enum value_codec {
    VC_AUTO,
    VC_I64,
    VC_STRING,
    VC_JSON,
    VC_RAW
} value_codec_t;

/* One command line, parsed. */
typedef struct tcmd {
    const char *name; /* for messages: "tables", "table get" */
    void (*help)(FILE *out);
    const char *app_path, *conf_file, *web, *format;
    value_codec_t codec;
    mph_cli_setting_t *flags;
    size_t nflags;
    const char **pos; /* positional arguments */
    size_t npos;
} tcmd_t;

static const char conf_help[] =
    "  --app PATH          the app plugin (required)\n"
    "  -c, --config FILE   read settings from FILE (\"name = value\" lines)\n"
    "  --set NAME=VALUE    any setting, repeatable (app_id, store, "
    "topic_partitions,\n"
    "                      the app's own settings, ...)\n"
    "  --datadir DIR       datadir: where the worker keeps table state\n"
    "  --log-level LEVEL   log_level (default here: warn)\n"
    "  -h, --help          this help\n"
    "\n"
    "Settings, lowest precedence first: defaults, -c FILE, MEPHISTO_<NAME>\n"
    "environment variables, flags; app_id defaults to the plugin's file name\n"
    "as for 'mephisto worker' (libwordcount.so: wordcount). Give the same "
    "settings\n"
    "as the worker, so that the plugin declares the same app.\n";

void mph__cli_tables_help(FILE *out)
{
    fprintf(out,
            "Usage: mephisto tables --app PLUGIN.so [options] [TABLE...]\n"
            "\n"
            "Declares the plugin's app without starting it and describes its "
            "tables: store,\n"
            "configured partitions, changelog topic, and the keys of each "
            "shard kept on\n"
            "this host (the RocksDB shards under <datadir>/<app_id>/, as the "
            "last worker\n"
            "left them at its last commit). The tables described are those "
            "named, plus\n"
            "every table with local state (libmephisto cannot yet list an "
            "app's tables).\n"
            "\n"
            "Options:\n%s"
            "\n"
            "Exit status: 0 done; 1 a named table is not declared, or local "
            "state cannot\n"
            "be read; 2 bad usage or settings; 3 plugin problem.\n",
            conf_help);
}

void mph__cli_agents_help(FILE *out)
{
    fprintf(out,
            "Usage: mephisto agents --app PLUGIN.so [options]\n"
            "\n"
            "Lists the agents the plugin's app declares, in declaration "
            "order. To read\n"
            "them, the app is started for a moment on a private in-process "
            "mock cluster\n"
            "(broker mock://, one worker, no web view, memory tables) and "
            "stopped; no\n"
            "broker is contacted and no local state is touched. An app whose "
            "source\n"
            "topics are not created by the app itself (topic option "
            "create=true) cannot\n"
            "be listed this way (status 4). The topics an agent subscribes "
            "to and its\n"
            "sinks are not visible through libmephisto's public API yet.\n"
            "An agent's punctuators and batch bounds follow its name.\n"
            "\n"
            "Options:\n%s"
            "\n"
            "Exit status: 0 done; 2 bad usage or settings; 3 plugin problem; "
            "4 the app\n"
            "could not be started on the mock cluster.\n",
            conf_help);
}

void mph__cli_topics_help(FILE *out)
{
    fprintf(out,
            "Usage: mephisto topics --app PLUGIN.so [options]\n"
            "\n"
            "Lists the topics the plugin's app declares: name, role (source: "
            "agents\n"
            "subscribe to it; sink: agents only send to it; internal: "
            "repartition and\n"
            "dead-letter topics) and partition count (for the topics the app "
            "creates: the\n"
            "count it creates them with). Read like 'mephisto agents': the app "
            "is started\n"
            "for a moment on a private in-process mock cluster. Topic options "
            "(codecs,\n"
            "on_decode_error, configs) are not visible through libmephisto's "
            "public API\n"
            "yet. Changelog topics are listed by 'mephisto tables'.\n"
            "\n"
            "Options:\n%s"
            "\n"
            "Exit status: 0 done; 2 bad usage or settings; 3 plugin problem; "
            "4 the app\n"
            "could not be started on the mock cluster.\n",
            conf_help);
}

void mph__cli_table_help(FILE *out)
{
    fprintf(
        out,
        "Usage: mephisto table get --app PLUGIN.so TABLE KEY [--web URL] "
        "[options]\n"
        "       mephisto table dump --app PLUGIN.so TABLE [--format "
        "text|json] [options]\n"
        "\n"
        "get prints the value of KEY in TABLE. It asks the web view of a "
        "running worker\n"
        "first (GET URL/tables/TABLE/KEY; URL defaults to http://<web_bind>:"
        "<web_port>\n"
        "of the settings); when nothing answers there, or the worker has no "
        "table\n"
        "route, it reads the RocksDB shards under <datadir>/<app_id>/ on this "
        "host.\n"
        "\n"
        "dump prints every key of TABLE from the local shards, partition by "
        "partition:\n"
        "  --format text   KEY<TAB>VALUE lines (default)\n"
        "  --format json   one JSON object per line: "
        "{\"partition\":P,\"key\":...,\"value\":...}\n"
        "The web view has no route for a whole table yet: stop the worker (it "
        "holds\n"
        "the shards) or dump on another host's copy. The number of keys goes "
        "to stderr.\n"
        "\n"
        "Values: i64 values (8 bytes, big-endian) print as numbers, text as "
        "JSON\n"
        "strings, other bytes escaped (\\xNN; base64 in JSON). Which applies "
        "is guessed\n"
        "from the bytes unless given:\n"
        "  --value-codec C    auto (default), i64, string, json (printed as "
        "is) or raw\n"
        "  --web URL          the worker's web view, e.g. "
        "http://127.0.0.1:6066\n"
        "\n"
        "Options:\n%s"
        "\n"
        "Exit status: 0 done; 1 key or table state not found, or unreadable; "
        "2 bad\n"
        "usage or settings; 3 plugin problem.\n",
        conf_help);
}

/* ------------------------------------------------------------------ */
/* parsing                                                            */

static void tcmd_free(tcmd_t *c)
{
    free(c->flags);
    free(c->pos);
}

/* Parses argv for a command taking the options in mask. Returns -1 to go
 * on, else an exit code. */
static int tcmd_parse(tcmd_t *c, const char *name, void (*help)(FILE *),
                      unsigned mask, int argc, char **argv)
{
    memset(c, 0, sizeof *c);
    c->name = name;
    c->help = help;
    c->flags = calloc((size_t)argc + 1, sizeof *c->flags);
    c->pos = calloc((size_t)argc + 1, sizeof *c->pos);
    if (!c->flags || !c->pos) {
        mph__cli_error("out of memory");
        return MPH_CLI_EXIT_USAGE;
    }
    mph_cli_args_t a;
    mph__cli_args_init(&a, name, argc, argv);
    const char *v;
    int id;
    while ((id = mph__cli_args_next(&a, table_opts, NOPTS, &v)) !=
           MPH_CLI_ARG_END) {
        if (id == MPH_CLI_ARG_ERROR)
            return MPH_CLI_EXIT_USAGE;
        if (id == MPH_CLI_ARG_POSITIONAL) {
            c->pos[c->npos++] = v;
            continue;
        }
        if (!(mask & (1u << id))) {
            mph__cli_error("%s: unknown option '--%s' (see 'mephisto %s "
                           "--help')",
                           name, table_opts[id].name, name);
            return MPH_CLI_EXIT_USAGE;
        }
        switch (id) {
        case OPT_HELP:
            help(stdout);
            return MPH_CLI_EXIT_OK;
        case OPT_APP:
            c->app_path = v;
            break;
        case OPT_CONFIG:
            c->conf_file = v;
            break;
        case OPT_SET:
            c->flags[c->nflags++] = (mph_cli_setting_t){"--set", NULL, v};
            break;
        case OPT_DATADIR:
            c->flags[c->nflags++] =
                (mph_cli_setting_t){"--datadir", "datadir", v};
            break;
        case OPT_LOG_LEVEL:
            c->flags[c->nflags++] =
                (mph_cli_setting_t){"--log-level", "log_level", v};
            break;
        case OPT_WEB:
            c->web = v;
            break;
        case OPT_FORMAT:
            if (strcmp(v, "text") && strcmp(v, "json")) {
                mph__cli_error("%s: --format: text or json, got '%s'", name, v);
                return MPH_CLI_EXIT_USAGE;
            }
            c->format = v;
            break;
        case OPT_VALUE_CODEC: {
            static const char *const names[] = {"auto", "i64", "string", "json",
                                                "raw"};
            size_t i = 0;
            while (i < 5 && strcmp(names[i], v))
                i++;
            if (i == 5) {
                mph__cli_error("%s: --value-codec: auto, i64, string, json "
                               "or raw, got '%s'",
                               name, v);
                return MPH_CLI_EXIT_USAGE;
            }
            c->codec = (value_codec_t)i;
            break;
        }
        }
    }
    if (!c->app_path || !*c->app_path) {
        mph__cli_error("%s: --app PLUGIN.so is required (see 'mephisto %s "
                       "--help')",
                       name, name);
        return MPH_CLI_EXIT_USAGE;
    }
    return -1;
}

/* Builds the settings (log_level defaulting to log_level) and declares the
 * app (not started). Returns an exit code. */
static int tcmd_open(tcmd_t *c, mph_cli_plugin_t *pl, const char *log_level)
{
    const char *const dflts[] = {"log_level", log_level, NULL};
    mph_conf_t *conf =
        mph__cli_conf_build(dflts, c->conf_file, c->flags, c->nflags);
    if (!conf)
        return MPH_CLI_EXIT_USAGE;
    mph__cli_apply_logging(conf);
    return mph__cli_plugin_open(pl, c->app_path, conf, c->name);
}

/* <datadir>/<app_id> of the app's settings. */
static void app_state_dir(const mph_conf_t *conf, char *buf, size_t size)
{
    const char *datadir = mph_conf_get(conf, "datadir");
    snprintf(buf, size, "%s/%s", datadir && *datadir ? datadir : ".",
             mph_conf_get(conf, "app_id"));
}

/* ------------------------------------------------------------------ */
/* printing values                                                    */

static bool is_text(const void *b, size_t len)
{
    const unsigned char *s = b;
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x20 && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
            return false;
    return mph_json_utf8_valid(b, len);
}

static value_codec_t guess_codec(const void *b, size_t len)
{
    if (len == 8 && !is_text(b, len))
        return VC_I64;
    return is_text(b, len) ? VC_STRING : VC_RAW;
}

static int64_t i64_of(const void *b)
{
    const unsigned char *s = b;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u = (u << 8) | s[i];
    return (int64_t)u;
}

/* Bytes with every non-printable byte, '"' and '\' escaped, in quotes. */
static void print_escaped(FILE *out, const void *b, size_t len)
{
    const unsigned char *s = b;
    fputc('"', out);
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"' || s[i] == '\\')
            fprintf(out, "\\%c", s[i]);
        else if (s[i] < 0x20 || s[i] >= 0x7f)
            fprintf(out, "\\x%02x", s[i]);
        else
            fputc(s[i], out);
    }
    fputc('"', out);
}

/* Writes bytes as a JSON string, or false when they are not UTF-8. */
static bool print_json_string(FILE *out, const void *b, size_t len)
{
    mph_jsonw_t *w = mph_jsonw_new(len + 16, NULL, 0);
    const char *text;
    size_t n;
    bool ok = w && mph_jsonw_str(w, b, len) == MPH_OK &&
              mph_jsonw_finish(w, &text, &n) == MPH_OK;
    if (ok)
        fwrite(text, 1, n, out);
    mph_jsonw_destroy(w);
    return ok;
}

/* Prints a value for people (text). */
static void print_value(FILE *out, value_codec_t codec, const void *b,
                        size_t len)
{
    if (codec == VC_AUTO)
        codec = guess_codec(b, len);
    if (codec == VC_I64 && len == 8)
        fprintf(out, "%lld", (long long)i64_of(b));
    else if (codec == VC_JSON)
        fwrite(b, 1, len, out);
    else if (codec == VC_RAW || codec == VC_I64 ||
             !print_json_string(out, b, len))
        print_escaped(out, b, len);
}

/* ------------------------------------------------------------------ */
/* tables                                                             */

typedef struct shard_count {
    int64_t *keys; /* by partition (malloc'd) */
    int32_t nparts;
    int32_t partition; /* set by mph_table_local_foreach */
} shard_count_t;

static mph_err_t count_key(const void *k, size_t kl, const void *v, size_t vl,
                           void *opaque)
{
    (void)k, (void)kl, (void)v, (void)vl;
    shard_count_t *s = opaque;
    int32_t p = s->partition;
    if (p < 0)
        return MPH_OK;
    if (p >= s->nparts) {
        int32_t n = p + 1;
        int64_t *keys = realloc(s->keys, (size_t)n * sizeof *keys);
        if (!keys)
            return MPH_ERR_NOMEM;
        memset(keys + s->nparts, 0, (size_t)(n - s->nparts) * sizeof *keys);
        s->keys = keys;
        s->nparts = n;
    }
    s->keys[p]++;
    return MPH_OK;
}

/* Counts the keys of every local shard of table into s->keys. */
static mph_err_t count_shard(shard_count_t *s, const mph_conf_t *conf,
                             const char *table, char *err, size_t err_size)
{
    s->partition = -1;
    return mph_table_local_foreach(conf, table, count_key, s, &s->partition,
                                   err, err_size);
}

/* Prints the block describing one table. Returns false when its local
 * state could not be read. */
static bool describe_table(const mph_app_t *app, const char *name)
{
    const mph_conf_t *conf = mph_app_conf(app);
    mph_table_t *t = mph_app_table(app, name);
    char dir[PATH_MAX];
    app_state_dir(conf, dir, sizeof dir);
    shard_count_t s = {NULL, 0, -1};
    char err[1024];
    mph_err_t e = count_shard(&s, conf, name, err, sizeof err);
    printf("table %s\n", name);
    if (t) {
        const char *store = mph_conf_get(conf, "store");
        printf("  store       %s (the app's store setting, unless the table "
               "sets its own%s)\n",
               store,
               e != MPH_ERR_NOENT && strcmp(store, "rocksdb") != 0
                   ? "; RocksDB shards exist on this host"
                   : "");
        printf("  partitions  %s (topic_partitions, unless the table sets its "
               "own)\n",
               mph_conf_get(conf, "topic_partitions"));
        printf("  changelog   %s\n", mph_table_changelog(t));
    } else {
        printf("  declared    no: the plugin declares no such table (local "
               "state only)\n");
    }
    bool ok = true;
    if (e == MPH_ERR_NOENT) {
        printf("  local       none on this host (%s)\n", err);
    } else if (e != MPH_OK) {
        /* MPH_ERR_STORE's message says when a worker holds the shards. */
        printf("  local       unreadable: %s\n", err);
        ok = false;
    } else {
        int64_t total = 0;
        int shards = 0;
        for (int32_t p = 0; p < s.nparts; p++) {
            total += s.keys[p];
            shards += s.keys[p] > 0;
        }
        printf("  local       %lld keys in %d non-empty shards under %s/%s\n",
               (long long)total, shards, dir, name);
        for (int32_t p = 0; p < s.nparts; p++)
            if (s.keys[p])
                printf("    partition %-4d %lld keys\n", (int)p,
                       (long long)s.keys[p]);
    }
    free(s.keys);
    return ok;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Adds to names (unique, sorted later) every table directory with worker
 * instances (w<N>/) under dir. */
static void scan_local_tables(const char *dir, char ***names, size_t *n,
                              size_t *cap)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char sub[PATH_MAX + 256];
        snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
        DIR *t = opendir(sub);
        if (!t)
            continue;
        bool has_worker = false;
        struct dirent *w;
        while (!has_worker && (w = readdir(t)))
            has_worker = w->d_name[0] == 'w' && w->d_name[1] >= '0' &&
                         w->d_name[1] <= '9';
        closedir(t);
        if (!has_worker)
            continue;
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 16;
            char **nn = realloc(*names, nc * sizeof *nn);
            if (!nn)
                break;
            *names = nn;
            *cap = nc;
        }
        (*names)[*n] = strdup(e->d_name);
        if ((*names)[*n])
            (*n)++;
    }
    closedir(d);
}

int mph__cli_tables(int argc, char **argv)
{
    tcmd_t c;
    int rc =
        tcmd_parse(&c, "tables", mph__cli_tables_help, COMMON_OPTS, argc, argv);
    if (rc >= 0)
        goto out_cmd;
    mph_cli_plugin_t pl;
    rc = tcmd_open(&c, &pl, "warn");
    if (rc != MPH_CLI_EXIT_OK)
        goto out_cmd;
    const mph_conf_t *conf = mph_app_conf(pl.app);
    for (size_t i = 0; i < c.npos; i++) {
        if (!mph_app_table(pl.app, c.pos[i])) {
            mph__cli_error("tables: app %s declares no table '%s'",
                           mph_app_id(pl.app), c.pos[i]);
            rc = MPH_CLI_EXIT_FAILED;
            goto out_plugin;
        }
    }
    char dir[PATH_MAX];
    app_state_dir(conf, dir, sizeof dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    scan_local_tables(dir, &names, &n, &cap);
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    printf("app %s (plugin %s), local state under %s\n", mph_app_id(pl.app),
           c.app_path, dir);
    bool ok = true;
    size_t shown = 0;
    for (size_t i = 0; i < c.npos; i++) {
        bool dup = false;
        for (size_t j = 0; j < i; j++)
            dup |= strcmp(c.pos[i], c.pos[j]) == 0;
        if (!dup) {
            ok &= describe_table(pl.app, c.pos[i]);
            shown++;
        }
    }
    for (size_t i = 0; i < n; i++) {
        bool named = false;
        for (size_t j = 0; j < c.npos; j++)
            named |= strcmp(names[i], c.pos[j]) == 0;
        if (!named) {
            ok &= describe_table(pl.app, names[i]);
            shown++;
        }
        free(names[i]);
    }
    free(names);
    if (!shown)
        printf("no tables with local state; name the app's tables to "
               "describe them: mephisto tables --app %s TABLE...\n",
               c.app_path);
    rc = ok ? MPH_CLI_EXIT_OK : MPH_CLI_EXIT_FAILED;
    if (!ok)
        mph__cli_error("tables: the local state of some tables could not be "
                       "read (see above)");
out_plugin:
    mph__cli_plugin_close(&pl);
out_cmd:
    tcmd_free(&c);
    return rc;
}

/* ------------------------------------------------------------------ */
/* agents and topics: from /stats of the app started on a mock cluster */

/* Starts the declared app on a private mock cluster and returns its /stats
 * document (malloc'd) in *json. Returns an exit code. */
static int mock_stats(tcmd_t *c, mph_cli_plugin_t *pl, char **json, size_t *len)
{
    /* The command's settings, then what makes the run private. */
    size_t n = c->nflags;
    static const mph_cli_setting_t fixed[] = {
        {"mock", "broker", "mock://"},           {"mock", "workers", "1"},
        {"mock", "web_enabled", "false"},        {"mock", "store", "memory"},
        {"mock", "shutdown_timeout_ms", "5000"},
    };
    size_t nfixed = sizeof fixed / sizeof fixed[0];
    mph_cli_setting_t *flags = realloc(c->flags, (n + nfixed) * sizeof *flags);
    if (!flags) {
        mph__cli_error("out of memory");
        return MPH_CLI_EXIT_USAGE;
    }
    c->flags = flags;
    memcpy(flags + n, fixed, sizeof fixed);
    c->nflags = n + nfixed;
    /* librdkafka warns about what the mock cluster does not emulate. */
    int rc = tcmd_open(c, pl, "error");
    c->nflags = n;
    if (rc != MPH_CLI_EXIT_OK)
        return rc;
    char err[1024];
    /* Its hooks, timers and tasks must not run for a listing. */
    mph_app_services_enable(pl->app, false);
    if (mph_app_start(pl->app, err, sizeof err) != MPH_OK) {
        mph__cli_error("%s: app %s could not be started on a private mock "
                       "cluster to read its declarations: %s",
                       c->name, mph_app_id(pl->app), err);
        return MPH_CLI_EXIT_START;
    }
    mph_err_t e = mph_app_stats_json(pl->app, json, len);
    mph_app_stop(pl->app);
    if (e != MPH_OK) {
        mph__cli_error("%s: cannot read the app's statistics: %s", c->name,
                       mph_err_str(e));
        return MPH_CLI_EXIT_FAILED;
    }
    return MPH_CLI_EXIT_OK;
}

/* Parses json and yields each element of the array at path. */
typedef void(each_elem_fn)(mph_json_parser_t *p, mph_json_val_t elem,
                           void *opaque);

static mph_err_t each_elem(const char *json, size_t len, const char *path,
                           each_elem_fn *fn, void *opaque)
{
    mph_json_parser_t *p = mph_json_parser_new(0, NULL, 0);
    if (!p)
        return MPH_ERR_NOMEM;
    mph_json_val_t arr, v;
    mph_err_t e = mph_json_parse(p, json, len, len);
    if (!e)
        e = mph_json_get_array(p, MPH_JSON_ROOT, path, &arr);
    while (!e && (e = mph_json_array_next(p, arr, &v)) == MPH_OK)
        fn(p, v, opaque);
    mph_json_parser_destroy(p);
    return e == MPH_ERR_NOENT ? MPH_OK : e;
}

struct listing {
    const char *app_id;
    size_t n;
};

static void print_agent(mph_json_parser_t *p, mph_json_val_t v, void *opaque)
{
    struct listing *l = opaque;
    const char *name = "?";
    size_t len = 1;
    mph_json_get_str(p, v, "name", &name, &len);
    printf("%.*s", (int)len, name);
    /* Punctuators and batching (mph_agent_punctuate, mph_agent_batch). */
    for (int i = 0; i < 64; i++) {
        char path[64];
        const char *clock;
        size_t cl;
        int64_t ms = 0;
        snprintf(path, sizeof path, "punctuators.%d.clock", i);
        if (mph_json_get_str(p, v, path, &clock, &cl) != MPH_OK)
            break;
        snprintf(path, sizeof path, "punctuators.%d.interval_ms", i);
        mph_json_get_i64(p, v, path, &ms);
        printf("%s%.*s every %lld ms", i ? ", " : "  punctuators: ", (int)cl, clock,
               (long long)ms);
    }
    uint64_t max_n = 0;
    int64_t within = 0;
    if (mph_json_get_u64(p, v, "batch.max_n", &max_n) == MPH_OK &&
        mph_json_get_i64(p, v, "batch.within_ms", &within) == MPH_OK)
        printf("  batches of up to %llu within %lld ms", (unsigned long long)max_n,
               (long long)within);
    printf("\n");
    l->n++;
}

/* The role of a topic of the app's /stats. */
static const char *topic_role(const char *app_id, const char *name, size_t len,
                              bool source)
{
    size_t idl = strlen(app_id);
    bool own =
        len > idl + 1 && strncmp(name, app_id, idl) == 0 && name[idl] == '-';
    static const char rep[] = "-repartition", dl[] = "-dead-letter";
    if (own && len == idl + sizeof dl - 1 &&
        strncmp(name + idl, dl, sizeof dl - 1) == 0)
        return "internal (dead letters)";
    if (own && len > sizeof rep - 1 &&
        strncmp(name + len - (sizeof rep - 1), rep, sizeof rep - 1) == 0)
        return source ? "source, internal (repartition)"
                      : "internal (repartition)";
    return source ? "source" : "sink";
}

static void print_topic(mph_json_parser_t *p, mph_json_val_t v, void *opaque)
{
    struct listing *l = opaque;
    const char *name = "?";
    size_t len = 1;
    bool source = false;
    int64_t parts = 0;
    mph_json_get_bool(p, v, "source", &source);
    mph_json_get_i64(p, v, "partition_count", &parts);
    mph_json_get_str(p, v, "name", &name, &len);
    printf("%-40.*s %-10lld %s\n", (int)len, name, (long long)parts,
           topic_role(l->app_id, name, len, source));
    l->n++;
}

static int list_from_stats(int argc, char **argv, bool agents)
{
    const char *name = agents ? "agents" : "topics";
    tcmd_t c;
    int rc = tcmd_parse(&c, name,
                        agents ? mph__cli_agents_help : mph__cli_topics_help,
                        COMMON_OPTS, argc, argv);
    if (rc >= 0)
        goto out_cmd;
    if (c.npos) {
        mph__cli_error("%s: unexpected argument '%s' (see 'mephisto %s "
                       "--help')",
                       name, c.pos[0], name);
        rc = MPH_CLI_EXIT_USAGE;
        goto out_cmd;
    }
    mph_cli_plugin_t pl = {0};
    char *json = NULL;
    size_t len = 0;
    rc = mock_stats(&c, &pl, &json, &len);
    if (rc != MPH_CLI_EXIT_OK)
        goto out_plugin;
    struct listing l = {mph_app_id(pl.app), 0};
    printf("app %s (plugin %s):\n", l.app_id, c.app_path);
    if (agents)
        printf("AGENT\n");
    else
        printf("%-40s %-10s %s\n", "TOPIC", "PARTITIONS", "ROLE");
    mph_err_t e = each_elem(json, len, agents ? "agents" : "topics",
                            agents ? print_agent : print_topic, &l);
    if (e != MPH_OK) {
        mph__cli_error("%s: cannot read the app's statistics: %s", name,
                       mph_err_str(e));
        rc = MPH_CLI_EXIT_FAILED;
    } else if (!l.n) {
        printf("(none)\n");
    }
out_plugin:
    free(json);
    mph__cli_plugin_close(&pl);
out_cmd:
    tcmd_free(&c);
    return rc;
}

int mph__cli_agents(int argc, char **argv)
{
    return list_from_stats(argc, argv, true);
}

/* ------------------------------------------------------------------ */
/* timers: the declared services, from mph_app_services_json()          */

void mph__cli_timers_help(FILE *out)
{
    fprintf(out,
            "Usage: mephisto timers --app PLUGIN.so [options]\n"
            "\n"
            "Lists the timers, crontab entries and background tasks the "
            "plugin's app\n"
            "declares, in declaration order: name, kind, schedule (interval "
            "or cron\n"
            "expression), time zone, whether it runs on the leader only, and "
            "for crontab\n"
            "entries the next run from now (UTC). The app is declared but not "
            "started: no\n"
            "hook, task or timer runs and no broker is contacted. A running "
            "worker shows\n"
            "the same entries with their runs, overruns, errors, last and "
            "next run in\n"
            "/stats under \"services\".\n"
            "\n"
            "Options:\n%s"
            "\n"
            "Exit status: 0 done; 1 the description cannot be read; 2 bad "
            "usage or\n"
            "settings; 3 plugin problem.\n",
            conf_help);
}

static void print_timer(mph_json_parser_t *p, mph_json_val_t v, void *opaque)
{
    struct listing *l = opaque;
    const char *name = "?", *kind = "?", *sched = "?", *tz = "-";
    size_t nl = 1, kl = 1, sl = 1, tl = 1;
    bool leader = false;
    int64_t next = -1;
    mph_json_get_str(p, v, "name", &name, &nl);
    mph_json_get_str(p, v, "kind", &kind, &kl);
    mph_json_get_str(p, v, "schedule", &sched, &sl);
    if (mph_json_get_str(p, v, "timezone", &tz, &tl) != MPH_OK) {
        tz = "-";
        tl = 1;
    }
    mph_json_get_bool(p, v, "on_leader", &leader);
    char when[32] = "-";
    if (mph_json_get_i64(p, v, "next_run_ms", &next) == MPH_OK && next > 0) {
        time_t t = (time_t)(next / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%MZ", &tm);
    }
    printf("%-24.*s %-8.*s %-20.*s %-20.*s %-7s %s\n", (int)nl, name, (int)kl,
           kind, (int)sl, sched, (int)tl, tz,
           kl == 4 && !memcmp(kind, "task", 4) ? "-" : leader ? "yes" : "no",
           when);
    l->n++;
}

int mph__cli_timers(int argc, char **argv)
{
    tcmd_t c;
    int rc = tcmd_parse(&c, "timers", mph__cli_timers_help, COMMON_OPTS, argc,
                        argv);
    if (rc >= 0)
        goto out_cmd;
    if (c.npos) {
        mph__cli_error("timers: unexpected argument '%s' (see 'mephisto "
                       "timers --help')",
                       c.pos[0]);
        rc = MPH_CLI_EXIT_USAGE;
        goto out_cmd;
    }
    mph_cli_plugin_t pl = {0};
    char *json = NULL;
    size_t len = 0;
    rc = tcmd_open(&c, &pl, "warn");
    if (rc != MPH_CLI_EXIT_OK)
        goto out_plugin;
    mph_err_t e = mph_app_services_json(pl.app, &json, &len);
    struct listing l = {mph_app_id(pl.app), 0};
    if (!e) {
        printf("app %s (plugin %s):\n", l.app_id, c.app_path);
        printf("%-24s %-8s %-20s %-20s %-7s %s\n", "NAME", "KIND", "SCHEDULE",
               "TIMEZONE", "LEADER", "NEXT RUN");
        e = each_elem(json, len, "timers", print_timer, &l);
    }
    if (e != MPH_OK) {
        mph__cli_error("timers: cannot read the app's services: %s",
                       mph_err_str(e));
        rc = MPH_CLI_EXIT_FAILED;
    } else {
        if (!l.n)
            printf("(none)\n");
        mph_json_parser_t *p = mph_json_parser_new(0, NULL, 0);
        bool election = false;
        const char *topic = NULL;
        size_t tl = 0;
        if (p && mph_json_parse(p, json, len, len) == MPH_OK &&
            mph_json_get_bool(p, MPH_JSON_ROOT, "leader_election", &election) ==
                MPH_OK &&
            election &&
            mph_json_get_str(p, MPH_JSON_ROOT, "leader_topic", &topic, &tl) ==
                MPH_OK)
            printf("leader election: on (the member assigned %.*s [0] "
                   "leads)\n",
                   (int)tl, topic);
        else
            printf("leader election: off\n");
        mph_json_parser_destroy(p);
    }
out_plugin:
    free(json);
    mph__cli_plugin_close(&pl);
out_cmd:
    tcmd_free(&c);
    return rc;
}

int mph__cli_topics(int argc, char **argv)
{
    return list_from_stats(argc, argv, false);
}

/* ------------------------------------------------------------------ */
/* table get / dump                                                   */

/* The worker's web view for get: --web, else web_bind:web_port of the
 * settings. False when there is none to ask (web disabled). */
static bool web_address(const tcmd_t *c, const mph_conf_t *conf, char *host,
                        size_t hsize, char *port, size_t psize, char *url,
                        size_t usize)
{
    if (c->web) {
        snprintf(url, usize, "%s", c->web);
        return mph__cli_http_parse_url(c->web, host, hsize, port, psize);
    }
    if (!mph_conf_get_bool(conf, "web_enabled", true))
        return false;
    const char *bind = mph_conf_get(conf, "web_bind");
    if (!bind || !*bind || strcmp(bind, "0.0.0.0") == 0)
        bind = "127.0.0.1";
    snprintf(host, hsize, "%s", bind);
    snprintf(port, psize, "%lld",
             (long long)mph_conf_get_int(conf, "web_port", 6066));
    snprintf(url, usize, "http://%s:%s", host, port);
    return true;
}

/* Asks the web view for table[key]. Returns MPH_OK with the reply body in
 * *body (malloc'd), or an error with what happened in why. */
static mph_err_t web_get(const char *host, const char *port, const char *table,
                         const char *key, char **body, size_t *blen, char *why,
                         size_t why_size)
{
    size_t tl = strlen(table), kl = strlen(key);
    size_t need = 16 + 3 * (tl + kl);
    char *path = malloc(need);
    if (!path)
        return MPH_ERR_NOMEM;
    size_t n = (size_t)snprintf(path, need, "/tables/");
    n += mph__cli_url_encode(table, tl, path + n, need - n);
    path[n++] = '/';
    mph__cli_url_encode(key, kl, path + n, need - n);
    mph_cli_http_reply_t r;
    char err[512];
    mph_err_t e = mph__cli_http_get(host, port, path, WEB_TIMEOUT_MS, &r, err,
                                    sizeof err);
    free(path);
    if (e != MPH_OK) {
        snprintf(why, why_size, "%s", err);
        return e;
    }
    if (r.status != 200) {
        size_t show = strcspn(r.body, "\r\n");
        snprintf(why, why_size, "HTTP %d%s%.*s", r.status, show ? ": " : "",
                 (int)(show > 200 ? 200 : show), r.body);
        mph__cli_http_reply_free(&r);
        return r.status == 404 ? MPH_ERR_NOENT : MPH_ERR_TRANSPORT;
    }
    *body = r.body;
    *blen = r.body_len;
    return MPH_OK;
}

static int table_get(tcmd_t *c, mph_cli_plugin_t *pl)
{
    if (c->npos != 2) {
        mph__cli_error("table get: TABLE and KEY are needed (see 'mephisto "
                       "table --help')");
        return MPH_CLI_EXIT_USAGE;
    }
    const char *table = c->pos[0], *key = c->pos[1];
    int rc = tcmd_open(c, pl, "warn");
    if (rc != MPH_CLI_EXIT_OK)
        return rc;
    const mph_conf_t *conf = mph_app_conf(pl->app);
    if (!mph_app_table(pl->app, table)) {
        mph__cli_error("table get: app %s declares no table '%s'",
                       mph_app_id(pl->app), table);
        return MPH_CLI_EXIT_FAILED;
    }
    char host[256], port[16], url[1024], why[1024] = "";
    bool have_web = web_address(c, conf, host, sizeof host, port, sizeof port,
                                url, sizeof url);
    if (c->web && !have_web) {
        mph__cli_error("table get: --web: not an http://HOST:PORT address: "
                       "'%s'",
                       c->web);
        return MPH_CLI_EXIT_USAGE;
    }
    if (have_web) {
        char *body = NULL;
        size_t blen = 0;
        if (web_get(host, port, table, key, &body, &blen, why, sizeof why) ==
            MPH_OK) {
            /* The web view answers JSON: printed as it came. */
            while (blen && (body[blen - 1] == '\n' || body[blen - 1] == '\r'))
                blen--;
            fwrite(body, 1, blen, stdout);
            putchar('\n');
            free(body);
            return fflush(stdout) == 0 ? MPH_CLI_EXIT_OK : MPH_CLI_EXIT_FAILED;
        }
    } else {
        snprintf(url, sizeof url, "(web_enabled=false)");
        snprintf(why, sizeof why, "not asked");
    }
    void *val = NULL;
    size_t vlen = 0;
    char err[1024];
    mph_err_t e = mph_table_local_get(conf, table, key, strlen(key), &val,
                                      &vlen, err, sizeof err);
    if (e == MPH_OK) {
        print_value(stdout, c->codec, val, vlen);
        putchar('\n');
        free(val);
        return fflush(stdout) == 0 ? MPH_CLI_EXIT_OK : MPH_CLI_EXIT_FAILED;
    }
    char dir[PATH_MAX];
    app_state_dir(conf, dir, sizeof dir);
    if (e == MPH_ERR_NOENT && strstr(err, "key not found"))
        mph__cli_error("table get: key '%s' not found in table %s (local "
                       "shards under %s/%s; the web view at %s: %s)",
                       key, table, dir, table, url, why);
    else
        mph__cli_error("table get: no worker answered at %s (%s), and the "
                       "local shards cannot be read: %s",
                       url, why, err);
    return MPH_CLI_EXIT_FAILED;
}

typedef struct dump_ctx {
    FILE *out;
    value_codec_t codec;
    bool json;
    int32_t partition;
    long keys;
    mph_jsonw_t *w;
    mph_err_t err;
} dump_ctx_t;

/* One key of a dump as a JSON line. */
static mph_err_t dump_json(dump_ctx_t *d, const void *k, size_t kl,
                           const void *v, size_t vl)
{
    mph_jsonw_t *w = d->w;
    mph_jsonw_reset(w);
    value_codec_t codec = d->codec == VC_AUTO ? guess_codec(v, vl) : d->codec;
    mph_err_t e = mph_jsonw_object_begin(w);
    if (!e)
        e = mph_jsonw_key(w, "partition", 9);
    if (!e)
        e = mph_jsonw_i64(w, d->partition);
    bool text_key = mph_json_utf8_valid(k, kl);
    if (!e)
        e = text_key ? mph_jsonw_key(w, "key", 3)
                     : mph_jsonw_key(w, "key_base64", 10);
    if (!e)
        e = text_key ? mph_jsonw_str(w, k, kl) : mph_jsonw_base64(w, k, kl);
    if (!e && codec == VC_I64 && vl == 8) {
        e = mph_jsonw_key(w, "value", 5);
        if (!e)
            e = mph_jsonw_i64(w, i64_of(v));
    } else if (!e && codec == VC_JSON) {
        e = mph_jsonw_key(w, "value", 5);
        if (!e)
            e = mph_jsonw_raw(w, v, vl);
    } else if (!e && codec != VC_RAW && mph_json_utf8_valid(v, vl)) {
        e = mph_jsonw_key(w, "value", 5);
        if (!e)
            e = mph_jsonw_str(w, v, vl);
    } else if (!e) {
        e = mph_jsonw_key(w, "value_base64", 12);
        if (!e)
            e = mph_jsonw_base64(w, v, vl);
    }
    if (!e)
        e = mph_jsonw_object_end(w);
    const char *text;
    size_t n;
    if (!e)
        e = mph_jsonw_finish(w, &text, &n);
    if (!e) {
        fwrite(text, 1, n, d->out);
        fputc('\n', d->out);
    }
    return e;
}

static mph_err_t dump_key(const void *k, size_t kl, const void *v, size_t vl,
                          void *opaque)
{
    dump_ctx_t *d = opaque;
    d->keys++;
    if (d->json)
        return dump_json(d, k, kl, v, vl);
    const unsigned char *ks = k;
    bool plain = is_text(k, kl);
    for (size_t i = 0; plain && i < kl; i++)
        plain = ks[i] != '\t' && ks[i] != '\n' && ks[i] != '\r' &&
                ks[i] != '"' && ks[i] != '\\';
    if (plain && kl)
        fwrite(k, 1, kl, d->out);
    else
        print_escaped(d->out, k, kl);
    fputc('\t', d->out);
    print_value(d->out, d->codec, v, vl);
    fputc('\n', d->out);
    return ferror(d->out) ? MPH_ERR_IO : MPH_OK;
}

static int table_dump(tcmd_t *c, mph_cli_plugin_t *pl)
{
    if (c->npos != 1) {
        mph__cli_error("table dump: one TABLE is needed (see 'mephisto table "
                       "--help')");
        return MPH_CLI_EXIT_USAGE;
    }
    if (c->web) {
        mph__cli_error("table dump: --web: the web view has no route for a "
                       "whole table yet; dump reads the local shards (drop "
                       "--web)");
        return MPH_CLI_EXIT_USAGE;
    }
    const char *table = c->pos[0];
    int rc = tcmd_open(c, pl, "warn");
    if (rc != MPH_CLI_EXIT_OK)
        return rc;
    const mph_conf_t *conf = mph_app_conf(pl->app);
    if (!mph_app_table(pl->app, table)) {
        mph__cli_error("table dump: app %s declares no table '%s'",
                       mph_app_id(pl->app), table);
        return MPH_CLI_EXIT_FAILED;
    }
    dump_ctx_t d = {stdout, c->codec, c->format && !strcmp(c->format, "json"),
                    -1,     0,        NULL,
                    MPH_OK};
    if (d.json && !(d.w = mph_jsonw_new(256, NULL, 0))) {
        mph__cli_error("out of memory");
        return MPH_CLI_EXIT_FAILED;
    }
    char err[1024];
    mph_err_t e = mph_table_local_foreach(conf, table, dump_key, &d,
                                          &d.partition, err, sizeof err);
    mph_jsonw_destroy(d.w);
    if (fflush(stdout) != 0 && e == MPH_OK) {
        e = MPH_ERR_IO;
        snprintf(err, sizeof err, "writing stdout: %s", strerror(errno));
    }
    if (e != MPH_OK) {
        mph__cli_error("table dump: %s%s", err,
                       e == MPH_ERR_STORE
                           ? " (a running worker holds the shards? dump reads "
                             "local shards only: stop the worker, or read "
                             "single keys with 'mephisto table get')"
                           : "");
        return MPH_CLI_EXIT_FAILED;
    }
    char dir[PATH_MAX];
    app_state_dir(conf, dir, sizeof dir);
    fprintf(stderr, "%ld keys from the local shards of table %s under %s/%s\n",
            d.keys, table, dir, table);
    return MPH_CLI_EXIT_OK;
}

int mph__cli_table(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-') {
        if (argc >= 2 &&
            (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
            mph__cli_table_help(stdout);
            return MPH_CLI_EXIT_OK;
        }
        mph__cli_error("table: get or dump is needed (see 'mephisto table "
                       "--help')");
        return MPH_CLI_EXIT_USAGE;
    }
    bool get = strcmp(argv[1], "get") == 0;
    if (!get && strcmp(argv[1], "dump") != 0) {
        mph__cli_error("table: unknown subcommand '%s' (get or dump)", argv[1]);
        return MPH_CLI_EXIT_USAGE;
    }
    unsigned mask = COMMON_OPTS | (1u << OPT_WEB) | (1u << OPT_VALUE_CODEC);
    if (!get)
        mask |= 1u << OPT_FORMAT;
    tcmd_t c;
    int rc = tcmd_parse(&c, get ? "table get" : "table dump",
                        mph__cli_table_help, mask, argc - 1, argv + 1);
    if (rc >= 0)
        goto out_cmd;
    mph_cli_plugin_t pl = {0};
    rc = get ? table_get(&c, &pl) : table_dump(&c, &pl);
    mph__cli_plugin_close(&pl);
out_cmd:
    tcmd_free(&c);
    return rc;
}
