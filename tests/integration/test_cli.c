/*
 * The `mephisto` command, run as a subprocess: help and version, every
 * documented error path with its exit code and its one line on stderr,
 * configuration precedence, signals, and (with a real broker) a plugin
 * worker forwarding what `mephisto send` produced.
 *
 * The binary is $MEPHISTO_BUILD_DIR/mephisto (ctest sets the variable; run
 * by hand, the build directory is found from this program's path), the
 * example plugin $MEPHISTO_BUILD_DIR/examples/libforward.so. A mock://
 * broker lives inside one process, so tests that need two processes to
 * share a broker (send + worker) run only with MEPHISTO_TEST_BROKERS.
 */
// ctest-labels: cli
// ctest-timeout: 300
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mephisto.h"
#include "mph_cli.h"
#include "mph_test.h"

/* ---- running the CLI (tests/support/mph_cli.h) ---- */

static const char *forward_plugin(void)
{
    return mph_cli_plugin("forward");
}

static void spawn(mph_cli_proc_t *p, const char *const *args, const char *const *env,
                  const char *stdin_path)
{
    mph_cli_spawn(p, "cli", args, env, stdin_path, -1);
}

static mph_cli_result_t run_env(const char *const *args, const char *const *env,
                        const char *stdin_path, int timeout_ms)
{
    return mph_cli_run("cli", args, env, stdin_path, timeout_ms);
}

static mph_cli_result_t run(const char *const *args)
{
    return run_env(args, NULL, NULL, 30000);
}

/* Waits until the process's stderr contains needle. */
static void wait_for_log(mph_cli_proc_t *p, const char *needle, int timeout_ms)
{
    free(mph_cli_wait_for(p, p->err_path, needle, timeout_ms));
}

/* The last non-empty line of s (a copy). */
static char *last_line(const char *s)
{
    size_t len = strlen(s);
    while (len && s[len - 1] == '\n')
        len--;
    size_t start = len;
    while (start && s[start - 1] != '\n')
        start--;
    return strndup(s + start, len - start);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* The one-line error contract: status, stdout empty, stderr exactly one
 * line "mephisto: ..." containing want. */
static void expect_usage_error(const char *const *args, const char *const *env,
                               int status, const char *want)
{
    mph_cli_result_t r = run_env(args, env, NULL, 30000);
    cr_expect_eq(r.status, status, "%s %s: status %d, want %d; stderr: %s",
                 args[0], args[1] ? args[1] : "", r.status, status, r.err);
    cr_expect_str_empty(r.out, "%s: stdout not empty: %s", args[0], r.out);
    cr_expect_eq(count_lines(r.err), 1, "%s: want one line, got: %s", args[0],
                 r.err);
    cr_expect_eq(strncmp(r.err, "mephisto: ", 10), 0, "stderr: %s", r.err);
    cr_expect_not_null(strstr(r.err, want), "stderr lacks '%s': %s", want,
                       r.err);
    mph_cli_result_free(&r);
}

TestSuite(cli, .timeout = 120);

/* ---- help and version ---- */

Test(cli, version_prints_the_library_version)
{
    char want[64];
    snprintf(want, sizeof want, "mephisto %s\n", mph_version());
    for (int i = 0; i < 2; i++) {
        mph_cli_result_t r = run((const char *[]){i ? "-V" : "--version", NULL});
        cr_expect_eq(r.status, 0);
        cr_expect_str_eq(r.out, want);
        cr_expect_str_empty(r.err);
        mph_cli_result_free(&r);
    }
}

Test(cli, help_lists_commands_and_exit_codes)
{
    mph_cli_result_t r = run((const char *[]){"--help", NULL});
    cr_expect_eq(r.status, 0);
    const char *want[] = {"worker",    "send", "bench", "--help-config",
                          "--version", "  2 ", "  3 ",  "  4 ",
                          "130",       NULL};
    for (const char **w = want; *w; w++)
        cr_expect_not_null(strstr(r.out, *w), "--help lacks '%s':\n%s", *w,
                           r.out);
    mph_cli_result_free(&r);

    r = run((const char *[]){NULL});
    cr_expect_eq(r.status, 2, "no command: want 2");
    cr_expect_not_null(strstr(r.err, "Usage: mephisto"));
    mph_cli_result_free(&r);
}

Test(cli, every_command_has_help)
{
    static const struct {
        const char *cmd;
        const char *want[16];
    } cmds[] = {
        {"worker",
         {"Usage: mephisto worker", "--app", "--broker", "--workers", "--cpus",
          "--threads-per-core", "--datadir", "--web-port", "--without-web",
          "--web-bind", "--log-level", "--log-format", "--set", "--config",
          "SIGUSR1", "130"}},
        {"send",
         {"Usage: mephisto send", "--broker", "--key", "--partition",
          "--header", "--file", "--repeat", "--set", NULL}},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        mph_cli_result_t r = run((const char *[]){cmds[i].cmd, "--help", NULL});
        mph_cli_result_t h = run((const char *[]){"help", cmds[i].cmd, NULL});
        cr_expect_eq(r.status, 0, "%s --help: %d", cmds[i].cmd, r.status);
        cr_expect_eq(h.status, 0, "help %s: %d", cmds[i].cmd, h.status);
        cr_expect_str_eq(r.out, h.out, "%s: --help and help differ",
                         cmds[i].cmd);
        for (size_t w = 0; w < 16 && cmds[i].want[w]; w++)
            cr_expect_not_null(strstr(r.out, cmds[i].want[w]),
                               "%s --help lacks '%s'", cmds[i].cmd,
                               cmds[i].want[w]);
        mph_cli_result_free(&r);
        mph_cli_result_free(&h);
    }
    /* bench's help is ours, followed by mephisto-bench's when it exists. */
    mph_cli_result_t r = run((const char *[]){"help", "bench", NULL});
    cr_expect_eq(r.status, 0);
    cr_expect_not_null(strstr(r.out, "Usage: mephisto bench"));
    cr_expect_not_null(strstr(r.out, "mephisto-bench"));
    mph_cli_result_free(&r);

    expect_usage_error((const char *[]){"help", "nosuchcommand", NULL}, NULL, 2,
                       "no command 'nosuchcommand'");
}

Test(cli, help_config_lists_every_setting)
{
    mph_cli_result_t text = run((const char *[]){"--help-config", NULL});
    mph_cli_result_t md = run((const char *[]){"--help-config", "--markdown", NULL});
    cr_assert_eq(text.status, 0);
    cr_assert_eq(md.status, 0);
    const char *name, *type, *dflt, *choices, *doc;
    size_t n = 0;
    for (size_t i = 0;
         mph_conf_property(i, &name, &type, &dflt, &choices, &doc); i++) {
        char cell[128];
        snprintf(cell, sizeof cell, "| `%s` |", name);
        cr_expect_not_null(strstr(text.out, name), "--help-config lacks %s",
                           name);
        cr_expect_not_null(strstr(md.out, cell), "--markdown lacks %s", cell);
        n++;
    }
    cr_expect_gt(n, 20, "the property table looks empty");
    cr_expect_null(strstr(text.out, "| `app_id` |"), "text help is Markdown");
    mph_cli_result_free(&text);
    mph_cli_result_free(&md);
    expect_usage_error((const char *[]){"--help-config", "--html", NULL}, NULL,
                       2, "--html");
}

Test(cli, bench_runs_mephisto_bench_or_says_it_is_missing)
{
    char bench[PATH_MAX + 32];
    snprintf(bench, sizeof bench, "%s/mephisto-bench", mph_cli_build_dir());
    if (access(bench, X_OK) == 0) {
        mph_cli_result_t r = run((const char *[]){"bench", "--help", NULL});
        cr_expect_eq(r.status, 0, "bench --help: %d: %s", r.status, r.err);
        cr_expect_not_null(strstr(r.out, "(found)"), "%s", r.out);
        mph_cli_result_free(&r);
    } else {
        expect_usage_error((const char *[]){"bench", "--quick", NULL}, NULL,
                           127, "bench: cannot run");
        mph_cli_result_t r = run((const char *[]){"bench", "--help", NULL});
        cr_expect_eq(r.status, 0);
        cr_expect_not_null(strstr(r.out, "(missing)"), "%s", r.out);
        mph_cli_result_free(&r);
    }
}

/* ---- usage and configuration errors: exit 2 ---- */

Test(cli, usage_errors_exit_2_with_one_line)
{
    static const struct {
        const char *args[10];
        const char *want;
    } cases[] = {
        {{"frobnicate", NULL}, "unknown command 'frobnicate'"},
        {{"--frobnicate", NULL}, "unknown option '--frobnicate'"},
        {{"worker", "--bogus", NULL}, "unknown option '--bogus'"},
        {{"worker", "--app", NULL}, "--app needs a value"},
        {{"worker", NULL}, "--app PLUGIN.so is required"},
        {{"worker", "--app", "", NULL}, "path is empty"},
        {{"worker", "--app", "x.so", "extra", NULL},
         "unexpected argument 'extra'"},
        {{"worker", "--app", "x.so", "--without-web=1", NULL},
         "takes no value"},
        {{"worker", "--app", "x.so", "--web-port", "7000", "--without-web",
          NULL},
         "exclude each other"},
        {{"worker", "--app", "x.so", "--workers", "abc", NULL},
         "--workers: workers: must be an integer"},
        {{"worker", "--app", "x.so", "--workers=-3", NULL}, "workers: must be"},
        {{"worker", "--app", "x.so", "--log-level", "loud", NULL}, "log_level"},
        {{"worker", "--app", "x.so", "--broker", "http://x", NULL}, "broker"},
        {{"worker", "--app", "x.so", "--set", "workers=abc", NULL},
         "--set: workers: must be an integer"},
        {{"worker", "--app", "x.so", "--set", "wokers=1", NULL},
         "unknown setting"},
        {{"worker", "--app", "x.so", "--set", "novalue", NULL}, "--set"},
        {{"worker", "--app", "x.so", "-c", "/nonexistent/x.conf", NULL},
         "/nonexistent/x.conf"},
        {{"send", NULL}, "TOPIC is required"},
        {{"send", "t", NULL}, "nothing to send"},
        {{"send", "t", "v", "--file", "f", NULL}, "not both"},
        {{"send", "t", "v", "--repeat", "0", NULL}, "--repeat"},
        {{"send", "t", "v", "--partition", "one", NULL}, "--partition"},
        {{"send", "t", "v", "--header", "novalue", NULL}, "NAME=VALUE"},
        {{"send", "t", "--file", "/nonexistent/lines", NULL},
         "/nonexistent/lines"},
        {{"send", "t", "v", "--set", "kafka.acks=maybe", NULL}, "kafka.acks"},
        /* records sent to a mock cluster die with the command */
        {{"send", "t", "v", "--broker", "mock://", NULL},
         "send: broker mock://: a mock cluster lives only inside this command"},
        {{"send", "t", "v", "--set", "broker=mock://3", NULL},
         "broker mock://3: a mock cluster"},
        /* Kafka's rule for topic names, and escaped control characters */
        {{"send", "bad topic/name", "v", NULL},
         "topic 'bad topic/name': ' ' at position 4 is not allowed"},
        {{"send", "..", "v", NULL}, "topic '..': must not be '.' or '..'"},
        {{"send", "t\x1b[2J", "v", NULL}, "topic 't\\x1b[2J': '\\x1b'"},
        {{"worker", "--app", "x.so", "--set", "app_id=\x1b[2J", NULL},
         "got '\\x1b[2J'"},
        {{"worker", "--app", "x.so", "--bogus\x1b[2J", NULL},
         "unknown option '--bogus\\x1b[2J'"},
        /* rocksdb.<prop> is checked whatever the store */
        {{"worker", "--app", "x.so", "--set", "rocksdb.no_such_option=1", NULL},
         "rocksdb.no_such_option: unknown or unsupported option"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_usage_error(cases[i].args, NULL, 2, cases[i].want);
    expect_usage_error((const char *[]){"send", "t", "v", NULL},
                       (const char *[]){"MEPHISTO_BROKER=mock://", NULL}, 2,
                       "a mock cluster lives only inside this command");
}

/* No raw control character of a user's value reaches stderr. */
Test(cli, errors_never_echo_control_characters)
{
    mph_cli_result_t r =
        run((const char *[]){"send", "t\x1b[2J\r\x7f", "v", "--set",
                             "kafka.acks=\x1b]0;x\x07", NULL});
    cr_expect_eq(r.status, 2, "%s", r.err);
    for (const char *c = r.err; *c; c++)
        cr_expect(*c == '\n' || ((unsigned char)*c >= 0x20 && *c != 0x7f),
                  "raw byte 0x%02x in: %s", (unsigned char)*c, r.err);
    mph_cli_result_free(&r);
}

Test(cli, bad_config_file_and_environment_exit_2)
{
    char dir[PATH_MAX], conf[PATH_MAX + 16];
    cr_assert_not_null(mph_test_tmpdir("clicf", dir, sizeof dir));
    snprintf(conf, sizeof conf, "%s/bad.conf", dir);
    FILE *f = fopen(conf, "w");
    cr_assert_not_null(f);
    fputs("# a comment\nworkers = many\n", f);
    fclose(f);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s:2: workers: must be an integer", conf);
    /* a file without newlines cannot grow memory: its line is capped */
    expect_usage_error(
        (const char *[]){"worker", "--app", "x.so", "-c", "/dev/zero", NULL},
        NULL, 2, "/dev/zero:1: line longer than 1048576 bytes");
    expect_usage_error(
        (const char *[]){"worker", "--app", "x.so", "-c", conf, NULL}, NULL, 2,
        want);
    expect_usage_error(
        (const char *[]){"send", "t", "v", "--config", conf, NULL}, NULL, 2,
        want);
    expect_usage_error((const char *[]){"worker", "--app", "x.so", NULL},
                       (const char *[]){"MEPHISTO_WORKERS=lots", NULL}, 2,
                       "MEPHISTO_WORKERS: workers: must be an integer");
    expect_usage_error((const char *[]){"worker", "--app", "x.so", NULL},
                       (const char *[]){"MEPHISTO_NO_SUCH_THING=1", NULL}, 2,
                       "MEPHISTO_NO_SUCH_THING");
    mph_test_rmrf(dir);
}

/* ---- plugin errors: exit 3 ---- */

Test(cli, plugin_errors_exit_3)
{
    char dir[PATH_MAX], text[PATH_MAX + 16], lib[PATH_MAX + 32];
    cr_assert_not_null(mph_test_tmpdir("clipl", dir, sizeof dir));
    snprintf(text, sizeof text, "%s/libtext.so", dir);
    FILE *f = fopen(text, "w");
    cr_assert_not_null(f);
    fputs("not an ELF file\n", f);
    fclose(f);
    snprintf(lib, sizeof lib, "%s/libmephisto.so", mph_cli_build_dir());

    expect_usage_error(
        (const char *[]){"worker", "--app", "/nonexistent/libx.so", NULL}, NULL,
        3, "No such file");
    expect_usage_error((const char *[]){"worker", "--app", dir, NULL}, NULL, 3,
                       "not a regular file");
    expect_usage_error((const char *[]){"worker", "--app", text, NULL}, NULL, 3,
                       "cannot load");
    /* A real shared object, but no app: the library itself. */
    expect_usage_error((const char *[]){"worker", "--app", lib, NULL}, NULL, 3,
                       "no mephisto_app_init");

    /* mephisto_app_init fails: forward refuses to forward a topic to itself
     * (its own error is logged first, the last line is the CLI's). */
    mph_cli_result_t r = run((const char *[]){
        "worker", "--app", forward_plugin(), "--broker", "kafka://127.0.0.1:1",
        "--without-web", "--set", "forward.input_topic=loop", "--set",
        "forward.output_topic=loop", NULL});
    cr_expect_eq(r.status, 3, "status %d: %s", r.status, r.err);
    char *line = last_line(r.err);
    cr_expect_not_null(strstr(line, "mephisto: plugin"), "%s", line);
    cr_expect_not_null(strstr(line, "mephisto_app_init returned -1"), "%s",
                       line);
    cr_expect_not_null(strstr(r.err, "would loop forever"), "%s", r.err);
    free(line);
    mph_cli_result_free(&r);
    mph_test_rmrf(dir);
}

/* ---- start errors: exit 4 ---- */

Test(cli, unreachable_broker_exits_4_quickly)
{
    mph_cli_result_t r = run((const char *[]){
        "worker", "--app", forward_plugin(), "--broker", "kafka://127.0.0.1:1",
        "--without-web", "--set", "shutdown_timeout_ms=2000", NULL});
    cr_expect_eq(r.status, 4, "worker: status %d: %s", r.status, r.err);
    cr_expect_lt(r.secs, 10.0, "worker took %.1f s", r.secs);
    char *line = last_line(r.err);
    cr_expect_eq(strncmp(line, "mephisto: ", 10), 0, "%s", line);
    cr_expect_not_null(strstr(line, "could not start"), "%s", line);
    cr_expect_not_null(strstr(line, "127.0.0.1:1"), "%s", line);
    free(line);
    /* app_id defaults to the plugin's name, and says so. */
    cr_expect_not_null(strstr(r.err, "using 'forward'"), "%s", r.err);
    cr_expect_not_null(strstr(r.err, "app forward could not start"), "%s",
                       r.err);
    mph_cli_result_free(&r);

    r = run((const char *[]){"send", "some-topic", "--broker",
                             "kafka://127.0.0.1:1", "--set",
                             "shutdown_timeout_ms=2000", "v", NULL});
    cr_expect_eq(r.status, 4, "send: status %d: %s", r.status, r.err);
    cr_expect_lt(r.secs, 10.0, "send took %.1f s", r.secs);
    line = last_line(r.err);
    cr_expect_not_null(strstr(line, "mephisto: send: could not start"), "%s",
                       line);
    free(line);
    cr_expect_str_empty(r.out);
    mph_cli_result_free(&r);
}

Test(cli, settings_precedence_file_env_flags)
{
    /* Observed through the start error, which names the app and broker. */
    char dir[PATH_MAX], conf[PATH_MAX + 16];
    cr_assert_not_null(mph_test_tmpdir("clipr", dir, sizeof dir));
    snprintf(conf, sizeof conf, "%s/app.conf", dir);
    FILE *f = fopen(conf, "w");
    cr_assert_not_null(f);
    fputs("app_id = fromfile\nbroker = kafka://127.0.0.1:2\n"
          "shutdown_timeout_ms = 1000\nweb_enabled = false\n",
          f);
    fclose(f);
    const char *plugin = forward_plugin();

    /* the file alone */
    mph_cli_result_t r =
        run((const char *[]){"worker", "--app", plugin, "-c", conf, NULL});
    cr_expect_eq(r.status, 4, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "app fromfile could not start: broker "
                                     "kafka://127.0.0.1:2"),
                       "%s", r.err);
    mph_cli_result_free(&r);
    /* the environment over the file */
    r = run_env((const char *[]){"worker", "--app", plugin, "-c", conf, NULL},
                (const char *[]){"MEPHISTO_APP_ID=fromenv", NULL}, NULL, 30000);
    cr_expect_eq(r.status, 4, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "app fromenv could not start: broker "
                                     "kafka://127.0.0.1:2"),
                       "%s", r.err);
    mph_cli_result_free(&r);
    /* flags over both, the later flag over the earlier */
    r = run_env((const char *[]){"worker", "--app", plugin, "-c", conf, "--set",
                                 "app_id=fromset", "--broker",
                                 "kafka://127.0.0.1:3", "--set",
                                 "broker=kafka://127.0.0.1:1", NULL},
                (const char *[]){"MEPHISTO_APP_ID=fromenv",
                                 "MEPHISTO_BROKER=kafka://127.0.0.1:4", NULL},
                NULL, 30000);
    cr_expect_eq(r.status, 4, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "app fromset could not start: broker "
                                     "kafka://127.0.0.1:1"),
                       "%s", r.err);
    mph_cli_result_free(&r);
    mph_test_rmrf(dir);
}

/* ---- settings that break the processing guarantee ---- */

Test(cli, settings_that_break_the_guarantee_are_refused)
{
    char dir[PATH_MAX], conf[PATH_MAX + 16];
    cr_assert_not_null(mph_test_tmpdir("cliguar", dir, sizeof dir));
    snprintf(conf, sizeof conf, "%s/g.conf", dir);
    FILE *f = fopen(conf, "w");
    cr_assert_not_null(f);
    fputs("kafka.request.required.acks = 1\n", f);
    fclose(f);
    const char *plugin = forward_plugin();
    static const char *const want_acks =
        "kafka.acks=0: breaks processing_guarantee=at_least_once (records "
        "could be lost unacknowledged); use all";
    /* --set, the environment and a config file all reach the check */
    mph_cli_result_t r =
        run((const char *[]){"worker", "--app", plugin, "--broker", "mock://",
                             "--without-web", "--set", "kafka.acks=0", NULL});
    cr_expect_eq(r.status, 4, "%s", r.err);
    cr_expect_not_null(strstr(r.err, want_acks), "%s", r.err);
    mph_cli_result_free(&r);
    r = run_env(
        (const char *[]){"worker", "--app", plugin, "--broker", "mock://",
                         "--without-web", NULL},
        (const char *[]){"MEPHISTO_KAFKA__ENABLE__IDEMPOTENCE=false", NULL},
        NULL, 30000);
    cr_expect_eq(r.status, 4, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "kafka.enable.idempotence=false: breaks "
                                     "processing_guarantee=at_least_once"),
                       "%s", r.err);
    mph_cli_result_free(&r);
    r = run((const char *[]){"worker", "--app", plugin, "--broker", "mock://",
                             "--without-web", "-c", conf, NULL});
    cr_expect_eq(r.status, 4, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "kafka.request.required.acks=1: breaks "
                                     "processing_guarantee=at_least_once"),
                       "%s", r.err);
    mph_cli_result_free(&r);
    /* send goes through the same producer settings */
    r = run((const char *[]){"send", "t", "v", "--broker",
                             "kafka://127.0.0.1:1", "--set", "kafka.acks=0",
                             NULL});
    cr_expect_neq(r.status, 0, "%s", r.err);
    cr_expect_not_null(strstr(r.err, want_acks), "%s", r.err);
    mph_cli_result_free(&r);
    mph_test_rmrf(dir);
}

/* ---- reset deletes only mephisto's state ---- */

static void put_file(const char *dir, const char *rel, const char *text)
{
    char p[PATH_MAX + 256];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f, "%s: %s", p, strerror(errno));
    fputs(text, f);
    fclose(f);
}

static void put_dir(const char *dir, const char *rel)
{
    char p[PATH_MAX + 256];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    cr_assert_eq(mkdir(p, 0700), 0, "%s: %s", p, strerror(errno));
}

static bool exists(const char *dir, const char *rel)
{
    char p[PATH_MAX + 256];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    struct stat st;
    return lstat(p, &st) == 0;
}

static mph_cli_result_t reset_app(const char *dir, const char *app_id)
{
    char set[300];
    snprintf(set, sizeof set, "app_id=%s", app_id);
    return run((const char *[]){"reset", "--set", set, "--datadir", dir,
                                "--yes", NULL});
}

Test(cli, reset_deletes_only_what_carries_mephistos_marker)
{
    char dir[PATH_MAX];
    cr_assert_not_null(mph_test_tmpdir("clirsm", dir, sizeof dir));

    /* A folder of photos where <datadir>/<app_id> points: untouched. */
    put_dir(dir, "Photos");
    put_dir(dir, "Photos/2019");
    put_file(dir, "Photos/beach.jpg", "jpeg");
    put_file(dir, "Photos/2019/w0.jpg", "jpeg");
    mph_cli_result_t r = reset_app(dir, "Photos");
    cr_expect_eq(r.status, 1, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "holds what is not mephisto state"), "%s",
                       r.err);
    cr_expect_not_null(strstr(r.err, "beach.jpg"), "%s", r.err);
    cr_expect_not_null(strstr(r.err, "nothing deleted"), "%s", r.err);
    cr_expect_str_empty(r.out);
    mph_cli_result_free(&r);
    cr_expect(exists(dir, "Photos/beach.jpg") &&
              exists(dir, "Photos/2019/w0.jpg"));

    /* An empty folder without the marker is not mephisto's either. */
    put_dir(dir, "empty");
    r = reset_app(dir, "empty");
    cr_expect_eq(r.status, 1, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "holds no mephisto state (no "
                                     ".mephisto-state marker"),
                       "%s", r.err);
    mph_cli_result_free(&r);
    cr_expect(exists(dir, "empty"));

    /* The marker and shards, plus one file of someone else's: refused, and
     * the stray is named. */
    put_dir(dir, "app");
    put_file(dir, "app/.mephisto-state", "mephisto state of app app\n");
    put_dir(dir, "app/counts");
    put_dir(dir, "app/counts/w0");
    put_file(dir, "app/counts/w0/CURRENT", "MANIFEST-000005\n");
    put_file(dir, "app/counts/w0/000004.log", "x");
    put_file(dir, "app/counts/w0/notes.txt", "mine");
    r = reset_app(dir, "app");
    cr_expect_eq(r.status, 1, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "counts/w0/notes.txt"), "%s", r.err);
    mph_cli_result_free(&r);
    cr_expect(exists(dir, "app/counts/w0/notes.txt"));

    /* A symbolic link inside is not followed, and refused. */
    char p[PATH_MAX + 64], target[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/app/counts/w0/notes.txt", dir);
    cr_assert_eq(unlink(p), 0);
    snprintf(target, sizeof target, "%s/Photos", dir);
    snprintf(p, sizeof p, "%s/app/counts/w0/OPTIONS-000007", dir);
    cr_assert_eq(symlink(target, p), 0);
    r = reset_app(dir, "app");
    cr_expect_eq(r.status, 1, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "counts/w0/OPTIONS-000007"), "%s", r.err);
    mph_cli_result_free(&r);
    cr_assert_eq(unlink(p), 0);

    /* Only the marker and RocksDB's files: deleted. */
    put_file(dir, "app/counts/w0/OPTIONS-000007", "x");
    r = reset_app(dir, "app");
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect_not_null(strstr(r.out, "deleted "), "%s", r.out);
    mph_cli_result_free(&r);
    cr_expect_not(exists(dir, "app"));

    /* State written before the marker existed: recognised by its layout. */
    put_dir(dir, "old");
    put_dir(dir, "old/word_counts");
    put_dir(dir, "old/word_counts/w0");
    put_dir(dir, "old/word_counts/w1");
    put_file(dir, "old/word_counts/w0/CURRENT", "MANIFEST-000005\n");
    put_file(dir, "old/word_counts/w0/IDENTITY", "id\n");
    put_file(dir, "old/word_counts/w0/LOCK", "");
    put_file(dir, "old/word_counts/w0/LOG", "");
    put_file(dir, "old/word_counts/w0/LOG.old.1700000000000000", "");
    put_file(dir, "old/word_counts/w0/MANIFEST-000005", "");
    put_file(dir, "old/word_counts/w0/000009.sst", "");
    put_file(dir, "old/word_counts/w1/CURRENT", "MANIFEST-000005\n");
    r = reset_app(dir, "old");
    cr_expect_eq(r.status, 0, "%s", r.err);
    mph_cli_result_free(&r);
    cr_expect_not(exists(dir, "old"));
    cr_expect(exists(dir, "Photos/beach.jpg"));
    mph_test_rmrf(dir);
}

/* A worker that keeps rocksdb tables marks its state directory, so reset
 * recognises it. */
Test(cli, worker_marks_its_state_directory_for_reset)
{
    char dir[PATH_MAX];
    cr_assert_not_null(mph_test_tmpdir("climark", dir, sizeof dir));
    mph_cli_proc_t p;
    spawn(&p,
          (const char *[]){"worker", "--app", mph_cli_plugin("wordcount"),
                           "--broker", "mock://", "--without-web", "--workers",
                           "1", "--set", "store=rocksdb", "--datadir", dir,
                           NULL},
          NULL, NULL);
    wait_for_log(&p, "worker running", 30000);
    kill(p.pid, SIGTERM);
    mph_cli_result_t r = mph_cli_finish(&p, 30000);
    cr_expect_eq(r.status, 0, "%s", r.err);
    mph_cli_result_free(&r);
    cr_expect(exists(dir, "wordcount/.mephisto-state"));
    char marker[PATH_MAX + 64];
    snprintf(marker, sizeof marker, "%s/wordcount/.mephisto-state", dir);
    char *text = mph_cli_slurp(marker);
    cr_expect_not_null(strstr(text, "mephisto state of app wordcount"), "%s",
                       text);
    free(text);
    r = reset_app(dir, "wordcount");
    cr_expect_eq(r.status, 0, "%s", r.err);
    mph_cli_result_free(&r);
    cr_expect_not(exists(dir, "wordcount"));
    mph_test_rmrf(dir);
}

/* ---- signals ---- */

static const char *const *mock_worker_args(void)
{
    static const char *args[16];
    size_t n = 0;
    args[n++] = "worker";
    args[n++] = "--app";
    args[n++] = forward_plugin();
    args[n++] = "--broker";
    args[n++] = "mock://";
    args[n++] = "--without-web";
    args[n++] = "--workers";
    args[n++] = "2";
    args[n] = NULL;
    return args;
}

Test(cli, sigterm_stops_a_worker_cleanly_and_sigusr1_logs_stats)
{
    mph_cli_proc_t p;
    spawn(&p, mock_worker_args(), NULL, NULL);
    wait_for_log(&p, "worker running", 20000);
    kill(p.pid, SIGUSR1);
    wait_for_log(&p, "stats: app=forward running=true workers=2", 10000);
    kill(p.pid, SIGTERM);
    mph_cli_result_t r = mph_cli_finish(&p, 20000);
    cr_expect_eq(r.status, 0, "status %d: %s", r.status, r.err);
    cr_expect_lt(r.secs, 5.0, "stopping took %.1f s", r.secs);
    cr_expect_not_null(strstr(r.err, "SIGTERM"), "%s", r.err);
    cr_expect_not_null(strstr(r.err, "worker stopped cleanly"), "%s", r.err);
    mph_cli_result_free(&r);
}

Test(cli, one_sigint_stops_gracefully)
{
    mph_cli_proc_t p;
    spawn(&p, mock_worker_args(), NULL, NULL);
    wait_for_log(&p, "worker running", 20000);
    kill(p.pid, SIGINT);
    mph_cli_result_t r = mph_cli_finish(&p, 20000);
    cr_expect_eq(r.status, 0, "status %d: %s", r.status, r.err);
    cr_expect_not_null(strstr(r.err, "Ctrl-C again exits at once"), "%s",
                       r.err);
    cr_expect_not_null(strstr(r.err, "worker stopped cleanly"), "%s", r.err);
    mph_cli_result_free(&r);
}

Test(cli, second_sigint_exits_130_at_once)
{
    /* Against an unreachable broker, start takes shutdown_timeout_ms: a
     * window in which the first SIGINT is surely being handled when the
     * second arrives. */
    mph_cli_proc_t p;
    spawn(&p,
          (const char *[]){"worker", "--app", forward_plugin(), "--broker",
                           "kafka://127.0.0.1:1", "--without-web", "--set",
                           "shutdown_timeout_ms=30000", NULL},
          NULL, NULL);
    wait_for_log(&p, "starting app forward", 20000);
    kill(p.pid, SIGINT);
    wait_for_log(&p, "stopping gracefully", 10000);
    int64_t t0 = mph_clock_mono_ns();
    kill(p.pid, SIGINT);
    mph_cli_result_t r = mph_cli_finish(&p, 20000);
    double secs = (double)(mph_clock_mono_ns() - t0) / 1e9;
    cr_expect_eq(r.status, 130, "status %d: %s", r.status, r.err);
    cr_expect_lt(secs, 3.0, "the second SIGINT took %.1f s to exit", secs);
    mph_cli_result_free(&r);
}

/* ---- with a real broker: send and a worker sharing it ---- */

static mph_test_cluster_t *cluster;

static void real_setup(void)
{
    if (mph_test_real_broker())
        cluster = mph_test_cluster_new();
}

static void real_teardown(void)
{
    mph_test_cluster_destroy(cluster);
    cluster = NULL;
}

TestSuite(cli_broker, .init = real_setup, .fini = real_teardown,
          .timeout = 180);

/* Skips the test (criterion_skip_test does not return) without a broker
 * that other processes can reach. */
static void need_real_broker(void)
{
    if (!mph_test_real_broker())
        cr_skip_test(
            "needs MEPHISTO_TEST_BROKERS: a mock:// broker lives inside "
            "one process");
}

typedef struct values_seen {
    int n;
    unsigned char *count; /* by value 1..n */
    int bad, total;
} values_seen_t;

static void count_value(const rd_kafka_message_t *m, void *opaque)
{
    values_seen_t *s = opaque;
    char v[32] = {0};
    memcpy(v, m->payload, m->len < 31 ? m->len : 31);
    int i = atoi(v);
    s->total++;
    if (i < 1 || i > s->n)
        s->bad++;
    else
        s->count[i - 1]++;
}

Test(cli_broker, worker_forwards_what_send_sends_and_stops_on_sigterm)
{
    need_real_broker();
    char app_id[128], in[160], out[160], set_id[200], set_in[200], set_out[200];
    mph_test_unique("cli-fwd", app_id, sizeof app_id);
    snprintf(in, sizeof in, "%s-in", app_id);
    snprintf(out, sizeof out, "%s-out", app_id);
    snprintf(set_id, sizeof set_id, "app_id=%s", app_id);
    snprintf(set_in, sizeof set_in, "forward.input_topic=%s", in);
    snprintf(set_out, sizeof set_out, "forward.output_topic=%s", out);

    mph_cli_proc_t w;
    spawn(&w,
          (const char *[]){"worker", "--app", forward_plugin(), "--broker",
                           cluster->broker, "--without-web", "--workers", "2",
                           "--set", set_id, "--set", set_in, "--set", set_out,
                           "--set", "commit_interval_ms=200", NULL},
          NULL, NULL);
    /* The worker created both topics before it logs that it runs. */
    wait_for_log(&w, "worker running", 60000);

    const int N = 1000;
    char dir[PATH_MAX], lines[PATH_MAX + 16];
    cr_assert_not_null(mph_test_tmpdir("clisend", dir, sizeof dir));
    snprintf(lines, sizeof lines, "%s/lines", dir);
    FILE *f = fopen(lines, "w");
    cr_assert_not_null(f);
    for (int i = 1; i <= N; i++)
        fprintf(f, "%d\n", i);
    fclose(f);
    mph_cli_result_t s =
        run_env((const char *[]){"send", in, "--broker", cluster->broker,
                                 "--file", lines, NULL},
                NULL, NULL, 60000);
    cr_assert_eq(s.status, 0, "send: status %d: %s", s.status, s.err);
    char want[256];
    snprintf(want, sizeof want, "sent %d records to %s\n", N, in);
    cr_expect_str_eq(s.out, want);
    mph_cli_result_free(&s);

    values_seen_t seen = {N, calloc((size_t)N, 1), 0, 0};
    int got =
        mph_test_consume_all(cluster, out, N, 30000, 90000, count_value, &seen);
    cr_expect_eq(got, N, "read %d of %d forwarded records", got, N);
    int missing = 0, dup = 0;
    for (int i = 0; i < N; i++) {
        missing += seen.count[i] == 0;
        dup += seen.count[i] > 1;
    }
    cr_expect_eq(missing, 0, "%d values missing from %s", missing, out);
    cr_expect_eq(dup, 0, "%d values forwarded twice", dup);
    cr_expect_eq(seen.bad, 0);
    free(seen.count);

    kill(w.pid, SIGTERM);
    mph_cli_result_t r = mph_cli_finish(&w, 60000);
    cr_expect_eq(r.status, 0, "worker: status %d: %s", r.status, r.err);
    cr_expect_lt(r.secs, 5.0, "the worker took %.1f s to stop", r.secs);
    cr_expect_not_null(strstr(r.err, "worker stopped cleanly"), "%s", r.err);
    mph_cli_result_free(&r);
    mph_test_rmrf(dir);
}

typedef struct record {
    int32_t partition;
    char key[16], value[16], a[8], b[8];
} record_t;

typedef struct records {
    record_t r[16];
    int n;
} records_t;

static void copy_field(char *dst, size_t size, const void *src, size_t len)
{
    size_t n = src ? (len < size - 1 ? len : size - 1) : 0;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

static void keep_record(const rd_kafka_message_t *m, void *opaque)
{
    records_t *rs = opaque;
    if (rs->n >= 16)
        return;
    record_t *r = &rs->r[rs->n++];
    r->partition = m->partition;
    copy_field(r->key, sizeof r->key, m->key, m->key_len);
    copy_field(r->value, sizeof r->value, m->payload, m->len);
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const void *v;
        size_t len;
        if (rd_kafka_header_get_last(h, "a", &v, &len) ==
            RD_KAFKA_RESP_ERR_NO_ERROR)
            copy_field(r->a, sizeof r->a, v, len);
        if (rd_kafka_header_get_last(h, "b", &v, &len) ==
            RD_KAFKA_RESP_ERR_NO_ERROR)
            copy_field(r->b, sizeof r->b, v, len);
    }
}

Test(cli_broker, send_sets_key_partition_headers_and_repeats)
{
    need_real_broker();
    char topic[128];
    mph_test_unique("cli-send", topic, sizeof topic);
    mph_test_create_topic(cluster, topic, 3);

    mph_cli_result_t s = run(
        (const char *[]){"send", topic, "--broker", cluster->broker, "--key",
                         "K", "--partition", "2", "-H", "a=1", "--header",
                         "b=x=y", "x", "y", "--repeat", "2", NULL});
    cr_assert_eq(s.status, 0, "send: status %d: %s", s.status, s.err);
    char want[256];
    snprintf(want, sizeof want, "sent 4 records to %s\n", topic);
    cr_expect_str_eq(s.out, want);
    mph_cli_result_free(&s);

    /* stdin, one record per line, empty lines included */
    char dir[PATH_MAX], in[PATH_MAX + 16];
    cr_assert_not_null(mph_test_tmpdir("clistdin", dir, sizeof dir));
    snprintf(in, sizeof in, "%s/in", dir);
    FILE *f = fopen(in, "w");
    cr_assert_not_null(f);
    fputs("l1\n\nl3", f);
    fclose(f);
    s = run_env((const char *[]){"send", topic, "--broker", cluster->broker,
                                 "-p", "2", "-f", "-", "-n", "2", NULL},
                NULL, in, 60000);
    cr_assert_eq(s.status, 0, "send -f -: status %d: %s", s.status, s.err);
    snprintf(want, sizeof want, "sent 6 records to %s\n", topic);
    cr_expect_str_eq(s.out, want);
    mph_cli_result_free(&s);

    records_t rs = {.n = 0};
    int got = mph_test_consume_all(cluster, topic, 10, 20000, 60000,
                                   keep_record, &rs);
    cr_assert_eq(got, 10, "read %d of 10 records", got);
    static const char *const values[] = {"x", "y",  "x",  "y", "l1",
                                         "",  "l3", "l1", "",  "l3"};
    for (int i = 0; i < 10; i++) {
        record_t *r = &rs.r[i];
        cr_expect_eq(r->partition, 2, "record %d on partition %d", i,
                     r->partition);
        cr_expect_str_eq(r->value, values[i], "record %d", i);
        if (i < 4) {
            cr_expect_str_eq(r->key, "K");
            cr_expect_str_eq(r->a, "1");
            cr_expect_str_eq(r->b, "x=y");
        } else {
            cr_expect_str_empty(r->key);
            cr_expect_str_empty(r->a);
        }
    }
    expect_usage_error((const char *[]){"send", topic, "--broker",
                                        cluster->broker, "--partition", "3",
                                        "v", NULL},
                       NULL, 2, "has 3 partitions");
    mph_test_rmrf(dir);
}

Test(cli_broker, send_reports_a_refused_record_with_exit_1)
{
    need_real_broker();
    char topic[128];
    mph_test_unique("cli-big", topic, sizeof topic);
    mph_test_create_topic(cluster, topic, 1);
    /* librdkafka refuses a record larger than message.max.bytes at once. */
    char big[3001];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    mph_cli_result_t r = run(
        (const char *[]){"send", topic, "--broker", cluster->broker, "--set",
                         "kafka.message.max.bytes=1000", "small", big, NULL});
    cr_expect_eq(r.status, 1, "status %d: %s", r.status, r.err);
    cr_expect_str_empty(r.out);
    char *line = last_line(r.err);
    cr_expect_not_null(
        strstr(line, "mephisto: send: record 2 (value of 3000 bytes) to"), "%s",
        line);
    cr_expect_not_null(strstr(line, "refused"), "%s", line);
    cr_expect_not_null(strstr(line, "1 sent before it, 1 acknowledged"), "%s",
                       line);
    free(line);
    mph_cli_result_free(&r);
}

Test(cli_broker, send_to_a_missing_topic_exits_4)
{
    need_real_broker();
    char topic[128];
    mph_test_unique("cli-none", topic, sizeof topic);
    mph_cli_result_t r = run((const char *[]){"send", topic, "--broker",
                                      cluster->broker, "v", NULL});
    cr_expect_eq(r.status, 4, "status %d: %s", r.status, r.err);
    char *line = last_line(r.err);
    cr_expect_not_null(strstr(line, "does not exist"), "%s", line);
    free(line);
    mph_cli_result_free(&r);
}

/* A --file line is one record, so it may be no longer than
 * kafka.message.max.bytes: a longer one (a file without newlines,
 * /dev/zero) is refused with its file and line number instead of being read
 * into memory without bound. */
Test(cli_broker, send_file_caps_line_length)
{
    need_real_broker();
    char topic[128], dir[PATH_MAX], path[PATH_MAX + 16];
    mph_test_unique("cli-long", topic, sizeof topic);
    mph_test_create_topic(cluster, topic, 1);
    cr_assert_not_null(mph_test_tmpdir("clilong", dir, sizeof dir));
    snprintf(path, sizeof path, "%s/lines", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("one\ntwo\n", f);
    for (int i = 0; i < 1500; i++)
        fputc('x', f);
    fclose(f);

    mph_cli_result_t r = run(
        (const char *[]){"send", topic, "--broker", cluster->broker, "--set",
                         "kafka.message.max.bytes=1000", "--file", path, NULL});
    cr_expect_eq(r.status, 1, "status %d: %s", r.status, r.err);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "send: %s:3: line longer than 1000 bytes",
             path);
    cr_expect_not_null(strstr(r.err, want), "%s", r.err);
    cr_expect_not_null(strstr(r.err, "(2 records sent before it)"), "%s",
                       r.err);
    mph_cli_result_free(&r);

    /* repeated: the file is read whole first, and refused before sending */
    r = run((const char *[]){"send", topic, "--broker", cluster->broker,
                             "--set", "kafka.message.max.bytes=1000", "--file",
                             path, "--repeat", "2", NULL});
    cr_expect_eq(r.status, 1, "status %d: %s", r.status, r.err);
    cr_expect_not_null(strstr(r.err, want), "%s", r.err);
    cr_expect_not_null(strstr(r.err, "(0 records sent before it)"), "%s",
                       r.err);
    mph_cli_result_free(&r);

    r = run_env((const char *[]){"send", topic, "--broker", cluster->broker,
                                 "--file", "/dev/zero", NULL},
                NULL, NULL, 60000);
    cr_expect_eq(r.status, 1, "status %d: %s", r.status, r.err);
    cr_expect_not_null(
        strstr(r.err, "send: /dev/zero:1: line longer than 1000000 bytes"),
        "%s", r.err);
    mph_cli_result_free(&r);
    mph_test_rmrf(dir);
}
