/*
 * DESIGN — `mephisto worker`: load an app plugin and run it as a process.
 *
 * The steps, each with its own exit code on failure: parse the flags and
 * build the configuration (defaults < -c file < MEPHISTO_* < flags; 2),
 * dlopen() the plugin and find mephisto_app_init (3), create the app (2),
 * let the plugin declare its topics and agents (3), start (4), then wait
 * until a stop is requested or the app fails (1 on failure, 0 otherwise).
 *
 * Signals are never handled asynchronously here. SIGINT, SIGTERM and
 * SIGUSR1 are blocked before any thread exists (the engine's and
 * librdkafka's threads inherit the mask), and one thread, "signals", reads
 * them from a signalfd. It may therefore log and look at the app freely:
 * the first SIGINT or SIGTERM asks the app to stop (mph_app_request_stop),
 * a SIGINT after that exits at once with 130, SIGUSR1 logs a stats line.
 * The app pointer is published to that thread after mph_app_new() and the
 * thread is joined before mph_app_destroy(), so it never sees a freed app.
 * A stop asked for before the app exists is remembered: the app is then
 * never started.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "mephisto/json.h"
#include "mephisto/sensor.h"

typedef int(mephisto_app_init_fn)(mph_app_t *app);

/* What the main thread and the signal thread share. */
typedef struct worker_run {
    const char *plugin;
    int64_t started_ns;       /* mono clock when the command began */
    _Atomic(mph_app_t *) app; /* published after mph_app_new, for signals */
    atomic_bool stopping;     /* a stop was requested (INT or TERM) */
    sigset_t sigs;            /* INT, TERM, USR1 */
    int sig_fd;               /* signalfd of sigs */
    int quit_fd;              /* eventfd: the signal thread should end */
    pthread_t sig_thread;
    bool sig_thread_started;
} worker_run_t;

enum {
    OPT_APP,
    OPT_BROKER,
    OPT_WORKERS,
    OPT_CPUS,
    OPT_TPC,
    OPT_DATADIR,
    OPT_WEB_PORT,
    OPT_WITHOUT_WEB,
    OPT_WEB_BIND,
    OPT_LOG_LEVEL,
    OPT_LOG_FORMAT,
    OPT_CONFIG,
    OPT_SET,
    OPT_HELP
};

static const mph_cli_opt_t worker_opts[] = {
    [OPT_APP] = {"app", 0, true},
    [OPT_BROKER] = {"broker", 0, true},
    [OPT_WORKERS] = {"workers", 0, true},
    [OPT_CPUS] = {"cpus", 0, true},
    [OPT_TPC] = {"threads-per-core", 0, true},
    [OPT_DATADIR] = {"datadir", 0, true},
    [OPT_WEB_PORT] = {"web-port", 0, true},
    [OPT_WITHOUT_WEB] = {"without-web", 0, false},
    [OPT_WEB_BIND] = {"web-bind", 0, true},
    [OPT_LOG_LEVEL] = {"log-level", 0, true},
    [OPT_LOG_FORMAT] = {"log-format", 0, true},
    [OPT_CONFIG] = {"config", 'c', true},
    [OPT_SET] = {"set", 0, true},
    [OPT_HELP] = {"help", 'h', false},
};
#define NOPTS (sizeof worker_opts / sizeof worker_opts[0])

/* The setting each plain flag sets, and the flag as written. */
static const struct {
    const char *flag, *setting;
} plain_flags[] = {
    [OPT_BROKER] = {"--broker", "broker"},
    [OPT_WORKERS] = {"--workers", "workers"},
    [OPT_CPUS] = {"--cpus", "cpus"},
    [OPT_TPC] = {"--threads-per-core", "threads_per_core"},
    [OPT_DATADIR] = {"--datadir", "datadir"},
    [OPT_WEB_BIND] = {"--web-bind", "web_bind"},
    [OPT_LOG_LEVEL] = {"--log-level", "log_level"},
    [OPT_LOG_FORMAT] = {"--log-format", "log_format"},
    [OPT_HELP] = {NULL, NULL},
};

void mph__cli_worker_help(FILE *out)
{
    fprintf(
        out,
        "Usage: mephisto worker --app PLUGIN.so [options]\n"
        "\n"
        "Loads an app plugin, a shared object exporting\n"
        "    int mephisto_app_init(mph_app_t *app)\n"
        "that declares the app's topics and agents, and runs the app until "
        "SIGTERM or\n"
        "Ctrl-C.\n"
        "\n"
        "Options (each sets the setting named on the right):\n"
        "  --app PATH             the plugin (required); a bare file name is "
        "looked up\n"
        "                         in the current directory, then where "
        "dlopen() looks\n"
        "  --broker URL           broker: kafka://host:port[,host:port...] or "
        "mock://[N]\n"
        "  --workers N            workers: worker threads; 0 means one per "
        "CPU\n"
        "  --cpus LIST            cpus: pin workers to these CPUs, e.g. 0-3,6\n"
        "  --threads-per-core N   threads_per_core\n"
        "  --datadir DIR          datadir: where table state is kept\n"
        "  --web-port PORT        web_port (and web_enabled=true); 0 picks a "
        "free port\n"
        "  --without-web          web_enabled=false\n"
        "  --web-bind ADDR        web_bind: the IPv4 address to serve HTTP on\n"
        "  --log-level LEVEL      log_level: error, warn, info or debug\n"
        "  --log-format FORMAT    log_format: text or json\n"
        "  -c, --config FILE      read settings from FILE (\"name = value\" "
        "lines)\n"
        "  --set NAME=VALUE       any setting, repeatable: --set "
        "kafka.linger.ms=20,\n"
        "                         --set app_id=orders, --set "
        "wordcount.topic=words\n"
        "  -h, --help             this help\n"
        "\n"
        "Settings, lowest precedence first: defaults, -c FILE, "
        "MEPHISTO_<NAME>\n"
        "environment variables, then the flags above in the order given.\n"
        "'mephisto --help-config' lists every setting. app_id defaults to the "
        "plugin's\n"
        "file name without 'lib' and '.so' (libwordcount.so: wordcount).\n"
        "\n"
        "Signals:\n"
        "  SIGTERM, SIGINT   stop gracefully: finish the events in flight, "
        "flush, commit,\n"
        "                    leave the group (within shutdown_timeout_ms)\n"
        "  SIGINT again      while stopping: exit at once with status 130\n"
        "  SIGUSR1           log a stats snapshot line\n"
        "\n"
        "Exit status:\n"
        "  0    stopped cleanly (by a signal)\n"
        "  1    the app stopped on an error (e.g. an agent failed under\n"
        "       on_agent_error=stop)\n"
        "  2    bad usage or configuration (unknown flag, bad setting value)\n"
        "  3    plugin problem: missing file, not a shared object, no\n"
        "       mephisto_app_init, or mephisto_app_init returned non-zero\n"
        "  4    could not start: broker unreachable, missing source topic\n"
        "  130  a second SIGINT while stopping\n");
}

/* ------------------------------------------------------------------ */
/* stats                                                              */

static long current_rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    long size = 0, resident = -1;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static int thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* The engine's totals from mph_app_stats_json() as " key=value" fields:
 * events in and out, lag (summed over the source partitions whose lag is
 * known), the last commit's latency, send errors, rebalances. Empty when
 * the statistics cannot be read. */
static void engine_totals(mph_app_t *app, char *buf, size_t size)
{
    buf[0] = '\0';
    char *json = NULL;
    size_t len = 0;
    if (mph_app_stats_json(app, &json, &len) != MPH_OK)
        return;
    mph_json_parser_t *p = mph_json_parser_new(0, NULL, 0);
    uint64_t in = 0, out = 0, send_errors = 0, commit_us = 0, rebalances = 0;
    int64_t lag = 0;
    bool lag_known = false;
    mph_json_val_t topics, t, parts, part;
    mph_err_t e = p ? mph_json_parse(p, json, len, len) : MPH_ERR_NOMEM;
    if (!e)
        e = mph_json_get_u64(p, MPH_JSON_ROOT, "totals.events_in", &in);
    if (!e)
        e = mph_json_get_u64(p, MPH_JSON_ROOT, "totals.send_errors",
                             &send_errors);
    /* "commits" is null until the coordinator reports. */
    if (!e) {
        mph_json_get_u64(p, MPH_JSON_ROOT, "commits.last_commit_latency_us",
                         &commit_us);
        mph_json_get_u64(p, MPH_JSON_ROOT, "commits.rebalances", &rebalances);
        e = mph_json_get_array(p, MPH_JSON_ROOT, "topics", &topics);
    }
    while (!e && (e = mph_json_array_next(p, topics, &t)) == MPH_OK) {
        uint64_t topic_out = 0;
        bool source = false;
        e = mph_json_get_u64(p, t, "events_out", &topic_out);
        if (!e)
            e = mph_json_get_bool(p, t, "source", &source);
        if (!e)
            e = mph_json_get_array(p, t, "partitions", &parts);
        out += topic_out;
        while (!e && source &&
               (e = mph_json_array_next(p, parts, &part)) == MPH_OK) {
            bool unknown = true;
            int64_t v = 0;
            e = mph_json_get_is_null(p, part, "lag", &unknown);
            if (!e && !unknown &&
                (e = mph_json_get_i64(p, part, "lag", &v)) == MPH_OK) {
                lag += v;
                lag_known = true;
            }
        }
        if (e == MPH_ERR_NOENT)
            e = MPH_OK;
    }
    if (e == MPH_ERR_NOENT) {
        char lag_s[32] = "unknown";
        if (lag_known)
            snprintf(lag_s, sizeof lag_s, "%lld", (long long)lag);
        snprintf(
            buf, size,
            " events_in=%llu events_out=%llu lag=%s commit_latency_us=%llu "
            "send_errors=%llu rebalances=%llu",
            (unsigned long long)in, (unsigned long long)out, lag_s,
            (unsigned long long)commit_us, (unsigned long long)send_errors,
            (unsigned long long)rebalances);
    }
    mph_json_parser_destroy(p);
    free(json);
}

/*
 * Logs one line describing the running worker: what the app says about
 * itself (id, running, worker threads), what the process knows (uptime,
 * CPU time, memory, threads, context switches) and the engine's totals
 * (events in/out, lag, commit latency, send errors, rebalances). This is
 * the home of SIGUSR1's output.
 * @locality the signal thread; app is running or being stopped, never freed.
 * mph_app_stats_json() must not overlap the app's stop, so the totals are
 * read only before a stop was asked for here and while the app runs; an
 * app stopping by itself (a fatal error) at that very moment is not
 * excluded: mph_app_wait() gives this thread no way to hold it off.
 */
static void log_stats_snapshot(const worker_run_t *run, mph_app_t *app)
{
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    getrusage(RUSAGE_SELF, &ru);
    double uptime_s = (double)(mph_clock_mono_ns() - run->started_ns) / 1e9;
    double user_s =
        (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    double sys_s =
        (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    if (!app) {
        mph_log(MPH_LOG_INFO, "stats: no app yet (loading %s), uptime_s=%.1f",
                run->plugin, uptime_s);
        return;
    }
    bool running = mph_app_running(app);
    char totals[512] = "";
    if (running && !atomic_load(&run->stopping))
        engine_totals(app, totals, sizeof totals);
    mph_log(MPH_LOG_INFO,
            "stats: app=%s running=%s workers=%d uptime_s=%.1f cpu_user_s=%.2f "
            "cpu_sys_s=%.2f rss_kib=%ld threads=%d ctx_voluntary=%ld "
            "ctx_involuntary=%ld%s",
            mph_app_id(app), running ? "true" : "false", mph_app_workers(app),
            uptime_s, user_s, sys_s, current_rss_kib(), thread_count(),
            (long)ru.ru_nvcsw, (long)ru.ru_nivcsw, totals);
}

/* ------------------------------------------------------------------ */
/* signals                                                            */

static void handle_signal(worker_run_t *run, const struct signalfd_siginfo *si)
{
    int sig = (int)si->ssi_signo;
    mph_app_t *app = atomic_load(&run->app);
    if (sig == SIGUSR1) {
        log_stats_snapshot(run, app);
        return;
    }
    const char *name = sig == SIGINT ? "SIGINT" : "SIGTERM";
    if (atomic_exchange(&run->stopping, true)) {
        if (sig == SIGINT) {
            mph_log(MPH_LOG_WARN,
                    "SIGINT while stopping: exiting at once (status 130)");
            _exit(MPH_CLI_EXIT_INTERRUPTED);
        }
        mph_log(MPH_LOG_INFO, "%s: already stopping (SIGINT exits at once)",
                name);
        return;
    }
    /* ssi_pid is 0 for a terminal's Ctrl-C (sent by the kernel). */
    char from[32] = "";
    if (si->ssi_pid)
        snprintf(from, sizeof from, " from pid %u", si->ssi_pid);
    mph_log(MPH_LOG_INFO, "%s%s: stopping gracefully%s", name, from,
            sig == SIGINT ? " (Ctrl-C again exits at once)" : "");
    if (app)
        mph_app_request_stop(app);
}

static void *signal_main(void *arg)
{
    worker_run_t *run = arg;
    mph_log_set_thread_name("signals");
    struct pollfd pfd[2] = {{run->sig_fd, POLLIN, 0},
                            {run->quit_fd, POLLIN, 0}};
    for (;;) {
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            mph_log(MPH_LOG_ERROR, "signals: poll: %s", strerror(errno));
            return NULL;
        }
        if (pfd[1].revents)
            return NULL;
        struct signalfd_siginfo si;
        if (read(run->sig_fd, &si, sizeof si) == (ssize_t)sizeof si)
            handle_signal(run, &si);
    }
}

/* Blocks the signals in this (the only) thread, so every thread created
 * later inherits the mask, and starts the thread that reads them. */
static bool signals_start(worker_run_t *run)
{
    sigemptyset(&run->sigs);
    sigaddset(&run->sigs, SIGINT);
    sigaddset(&run->sigs, SIGTERM);
    sigaddset(&run->sigs, SIGUSR1);
    int rc = pthread_sigmask(SIG_BLOCK, &run->sigs, NULL);
    if (rc) {
        mph__cli_error("worker: cannot block signals: %s", strerror(rc));
        return false;
    }
    run->sig_fd = signalfd(-1, &run->sigs, SFD_CLOEXEC);
    if (run->sig_fd < 0) {
        mph__cli_error("worker: signalfd: %s", strerror(errno));
        goto fail_mask;
    }
    run->quit_fd = eventfd(0, EFD_CLOEXEC);
    if (run->quit_fd < 0) {
        mph__cli_error("worker: eventfd: %s", strerror(errno));
        goto fail_sig_fd;
    }
    rc = pthread_create(&run->sig_thread, NULL, signal_main, run);
    if (rc) {
        mph__cli_error("worker: cannot start the signal thread: %s",
                       strerror(rc));
        goto fail_quit_fd;
    }
    run->sig_thread_started = true;
    return true;
fail_quit_fd:
    close(run->quit_fd);
    run->quit_fd = -1;
fail_sig_fd:
    close(run->sig_fd);
    run->sig_fd = -1;
fail_mask:
    pthread_sigmask(SIG_UNBLOCK, &run->sigs, NULL);
    return false;
}

/* Ends the signal thread. Signals arriving from now on stay pending until
 * the process exits. */
static void signals_stop(worker_run_t *run)
{
    if (run->sig_thread_started) {
        uint64_t one = 1;
        ssize_t w = write(run->quit_fd, &one, sizeof one);
        (void)w;
        pthread_join(run->sig_thread, NULL);
        run->sig_thread_started = false;
    }
    if (run->quit_fd >= 0)
        close(run->quit_fd);
    if (run->sig_fd >= 0)
        close(run->sig_fd);
    run->quit_fd = run->sig_fd = -1;
}

/* ------------------------------------------------------------------ */
/* the plugin                                                         */

/* The app_id a plugin's file name suggests: the base name without a
 * leading "lib" and without ".so" and what follows it
 * (/x/libwordcount.so.1 -> wordcount). */
static void plugin_app_id(const char *path, char *buf, size_t size)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strncmp(base, "lib", 3) == 0 && base[3])
        base += 3;
    snprintf(buf, size, "%s", base);
    for (char *p = buf; (p = strstr(p, ".so")); p++) {
        if (p[3] == '\0' || p[3] == '.') {
            *p = '\0';
            break;
        }
    }
}

/* dlopen()s the plugin and finds its entry point. Returns an exit code. */
static int plugin_load(const char *arg, void **handle,
                       mephisto_app_init_fn **init)
{
    char local[PATH_MAX];
    const char *path = arg;
    struct stat st;
    if (strchr(arg, '/')) {
        if (stat(arg, &st) != 0) {
            mph__cli_error("plugin %s: %s", arg, strerror(errno));
            return MPH_CLI_EXIT_PLUGIN;
        }
    } else if (stat(arg, &st) == 0) {
        /* dlopen() reads a name without '/' as a library to search for. */
        snprintf(local, sizeof local, "./%s", arg);
        path = local;
    }
    if (strchr(path, '/') && !S_ISREG(st.st_mode)) {
        mph__cli_error("plugin %s: not a regular file", arg);
        return MPH_CLI_EXIT_PLUGIN;
    }
    dlerror();
    *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!*handle) {
        const char *why = dlerror();
        mph__cli_error("plugin %s: cannot load: %s", arg,
                       why ? why : "unknown error");
        return MPH_CLI_EXIT_PLUGIN;
    }
    dlerror();
    void *sym = dlsym(*handle, "mephisto_app_init");
    if (!sym) {
        mph__cli_error("plugin %s: no mephisto_app_init (an app plugin exports "
                       "int mephisto_app_init(mph_app_t *app))",
                       arg);
        dlclose(*handle);
        *handle = NULL;
        return MPH_CLI_EXIT_PLUGIN;
    }
    memcpy(init, &sym, sizeof *init);
    return MPH_CLI_EXIT_OK;
}

/* ------------------------------------------------------------------ */

/* Reads the flags into settings. Returns -1 to go on, else an exit code. */
static int parse_flags(int argc, char **argv, const char **app_path,
                       const char **conf_file, mph_cli_setting_t *flags,
                       size_t *nflags)
{
    mph_cli_args_t a;
    mph__cli_args_init(&a, "worker", argc, argv);
    bool web_port = false, without_web = false;
    const char *v;
    int id;
    *nflags = 0;
    while ((id = mph__cli_args_next(&a, worker_opts, NOPTS, &v)) !=
           MPH_CLI_ARG_END) {
        switch (id) {
        case MPH_CLI_ARG_ERROR:
            return MPH_CLI_EXIT_USAGE;
        case MPH_CLI_ARG_POSITIONAL:
            mph__cli_error(
                "worker: unexpected argument '%s' (the plugin is given with "
                "--app)",
                v);
            return MPH_CLI_EXIT_USAGE;
        case OPT_HELP:
            mph__cli_worker_help(stdout);
            return MPH_CLI_EXIT_OK;
        case OPT_APP:
            *app_path = v;
            break;
        case OPT_CONFIG:
            *conf_file = v;
            break;
        case OPT_SET:
            flags[(*nflags)++] = (mph_cli_setting_t){"--set", NULL, v};
            break;
        case OPT_WITHOUT_WEB:
            without_web = true;
            flags[(*nflags)++] =
                (mph_cli_setting_t){"--without-web", "web_enabled", "false"};
            break;
        case OPT_WEB_PORT:
            web_port = true;
            flags[(*nflags)++] =
                (mph_cli_setting_t){"--web-port", "web_port", v};
            flags[(*nflags)++] =
                (mph_cli_setting_t){"--web-port", "web_enabled", "true"};
            break;
        default:
            flags[(*nflags)++] = (mph_cli_setting_t){
                plain_flags[id].flag, plain_flags[id].setting, v};
            break;
        }
    }
    if (web_port && without_web) {
        mph__cli_error(
            "worker: --web-port and --without-web exclude each other");
        return MPH_CLI_EXIT_USAGE;
    }
    if (*app_path && !**app_path) {
        mph__cli_error("worker: --app: the plugin's path is empty");
        return MPH_CLI_EXIT_USAGE;
    }
    if (!*app_path) {
        mph__cli_error("worker: --app PLUGIN.so is required (see 'mephisto "
                       "worker --help')");
        return MPH_CLI_EXIT_USAGE;
    }
    return -1;
}

/* Sets app_id from the plugin's name when nothing else set it. Returns false
 * after printing why when the name makes no valid app_id. */
static bool default_app_id(mph_conf_t *conf, const char *plugin)
{
    const char *cur = mph_conf_get(conf, "app_id");
    if (cur && *cur)
        return true;
    char id[PATH_MAX], err[512];
    plugin_app_id(plugin, id, sizeof id);
    if (mph_conf_set(conf, "app_id", id, err, sizeof err) != MPH_OK) {
        mph__cli_error(
            "worker: no app_id set and the plugin's name gives none (%s); "
            "set one with --set app_id=NAME",
            err);
        return false;
    }
    mph_log(MPH_LOG_INFO,
            "app_id not set: using '%s', from the plugin's file name", id);
    return true;
}

int mph__cli_worker(int argc, char **argv)
{
    const char *app_path = NULL, *conf_file = NULL;
    /* Each argument adds at most two settings. */
    mph_cli_setting_t *flags = calloc((size_t)argc * 2 + 1, sizeof *flags);
    if (!flags) {
        mph__cli_error("out of memory");
        return MPH_CLI_EXIT_USAGE;
    }
    size_t nflags = 0;
    int rc = parse_flags(argc, argv, &app_path, &conf_file, flags, &nflags);
    if (rc >= 0) {
        free(flags);
        return rc;
    }
    mph_conf_t *conf = mph__cli_conf_build(NULL, conf_file, flags, nflags);
    free(flags);
    if (!conf)
        return MPH_CLI_EXIT_USAGE;
    mph__cli_apply_logging(conf);

    worker_run_t run = {.plugin = app_path, .sig_fd = -1, .quit_fd = -1};
    run.started_ns = mph_clock_mono_ns();
    atomic_init(&run.app, NULL);
    atomic_init(&run.stopping, false);
    void *handle = NULL;
    mephisto_app_init_fn *init = NULL;
    mph_app_t *app = NULL;
    char err[1024];

    if (!signals_start(&run)) {
        rc = MPH_CLI_EXIT_START;
        goto out_conf;
    }
    rc = plugin_load(app_path, &handle, &init);
    if (rc != MPH_CLI_EXIT_OK)
        goto out_signals;
    if (!default_app_id(conf, app_path)) {
        rc = MPH_CLI_EXIT_USAGE;
        goto out_plugin;
    }
    app = mph_app_new(conf, err, sizeof err);
    if (!app) {
        mph__cli_error("worker: %s", err);
        rc = MPH_CLI_EXIT_USAGE;
        goto out_plugin;
    }
    conf = NULL; /* the app owns it now */
    atomic_store(&run.app, app);

    int init_rc = init(app);
    if (init_rc != 0) {
        mph__cli_error("plugin %s: mephisto_app_init returned %d", app_path,
                       init_rc);
        rc = MPH_CLI_EXIT_PLUGIN;
        goto out_app;
    }
    if (atomic_load(&run.stopping)) {
        mph_log(MPH_LOG_INFO, "stop requested before start: not starting");
        rc = MPH_CLI_EXIT_OK;
        goto out_app;
    }
    mph_log(MPH_LOG_INFO, "starting app %s from %s (broker %s)",
            mph_app_id(app), app_path, mph_app_get(app, "broker"));
    mph_err_t e = mph_app_start(app, err, sizeof err);
    if (e != MPH_OK) {
        mph__cli_error("worker: app %s could not start: %s", mph_app_id(app),
                       err);
        rc = MPH_CLI_EXIT_START;
        goto out_app;
    }
    mph_log(MPH_LOG_INFO,
            "worker running: app %s, %d workers, pid %d (SIGTERM or Ctrl-C "
            "stops, SIGUSR1 "
            "logs stats)",
            mph_app_id(app), mph_app_workers(app), (int)getpid());
    e = mph_app_wait(app);
    if (e != MPH_OK) {
        mph__cli_error(
            "worker: app %s stopped on an error: %s (see the log above)",
            mph_app_id(app), mph_err_str(e));
        rc = MPH_CLI_EXIT_FAILED;
    } else {
        mph_log(MPH_LOG_INFO, "worker stopped cleanly");
        rc = MPH_CLI_EXIT_OK;
    }
out_app:
    /* The signal thread may use the app until it is joined. */
    signals_stop(&run);
    mph_app_destroy(app);
out_plugin:
    if (handle)
        dlclose(handle);
out_signals:
    signals_stop(&run);
out_conf:
    mph_conf_destroy(conf);
    return rc;
}
