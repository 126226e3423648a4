/*
 * The `mephisto` commands around the word-count example, run as
 * subprocesses: `demo` end to end (plugin and built-in app), `tables`,
 * `agents` and `topics` on libwordcount.so, `table get` through a worker's
 * web view (a fake one here, which records the request) and from the local
 * RocksDB shards, `table dump`, `reset` (with --yes, refused without a
 * terminal, confirmed on a pseudo-terminal, refused while a lock is held),
 * and with a real broker a worker whose counts are read back after it
 * stopped (SIGUSR1's stats line tells when it has counted everything).
 *
 * The binary is $MEPHISTO_BUILD_DIR/mephisto, the plugin
 * $MEPHISTO_BUILD_DIR/examples/libwordcount.so (ctest sets the variable;
 * run by hand, the build directory is found from this program's path).
 */
// ctest-labels: cli
// ctest-timeout: 300
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mephisto.h"
#include "mph_cli.h"
#include "mph_test.h"

/* ---- running the CLI (tests/support/mph_cli.h) ---- */

static const char *wordcount(void)
{
    return mph_cli_plugin("wordcount");
}

static void spawn_fd(mph_cli_proc_t *p, const char *const *args, const char *const *env,
                     const char *stdin_path, int stdin_fd)
{
    mph_cli_spawn(p, "clid", args, env, stdin_path, stdin_fd);
}

static void spawn(mph_cli_proc_t *p, const char *const *args, const char *const *env)
{
    spawn_fd(p, args, env, NULL, -1);
}

static mph_cli_result_t run_env(const char *const *args, const char *const *env,
                        int timeout_ms)
{
    return mph_cli_run("clid", args, env, NULL, timeout_ms);
}

static mph_cli_result_t run(const char *const *args)
{
    return run_env(args, NULL, 60000);
}

static char *wait_for(mph_cli_proc_t *p, const char *path, const char *needle,
                      int timeout_ms)
{
    return mph_cli_wait_for(p, path, needle, timeout_ms);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* The one-line error contract: status, stdout empty, stderr one line
 * "mephisto: ..." containing want. */
static void expect_error(const char *const *args, const char *const *env,
                         int status, const char *want)
{
    mph_cli_result_t r = run_env(args, env, 60000);
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

/* A TCP port nothing listens on right now. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* GET path from 127.0.0.1:port with a raw socket: the status code, 0 when
 * nothing answers. */
static int http_status(int port, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int status = 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        char req[256], buf[64] = {0};
        int n = snprintf(req, sizeof req,
                         "GET %s HTTP/1.1\r\nHost: x\r\nConnection: "
                         "close\r\n\r\n",
                         path);
        if (send(fd, req, (size_t)n, MSG_NOSIGNAL) == n &&
            recv(fd, buf, sizeof buf - 1, 0) > 12)
            sscanf(buf, "HTTP/1.%*d %d", &status);
    }
    close(fd);
    return status;
}

TestSuite(cli_demo, .timeout = 150);

/* ---- demo ---- */

/* The count printed after "  <rank>. <word>" in the top-words list. */
static long top_count(const char *out, int rank, char *word, size_t wsize)
{
    char pat[16];
    snprintf(pat, sizeof pat, "\n  %2d. ", rank);
    const char *at = strstr(out, pat);
    cr_assert_not_null(at, "no rank %d in:\n%s", rank, out);
    long count = -1;
    char fmt[32];
    snprintf(fmt, sizeof fmt, "%%%zus %%ld", wsize - 1);
    cr_assert_eq(sscanf(at + strlen(pat), fmt, word, &count), 2);
    return count;
}

Test(cli_demo, counts_the_default_200000_words_and_verifies_them)
{
    int port = free_port();
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    mph_cli_result_t r = run_env((const char *[]){"demo", "--web-port", port_s, NULL},
                         NULL, 120000);
    cr_assert_eq(r.status, 0, "status %d\nstdout:\n%s\nstderr:\n%s", r.status,
                 r.out, r.err);
    cr_expect_lt(r.secs, 120.0, "the demo took %.1f s", r.secs);
    cr_expect_not_null(strstr(r.out, "counts verified: 200000 words"), "%s",
                       r.out);
    cr_expect_not_null(strstr(r.out, "top 10 words:"), "%s", r.out);
    cr_expect_not_null(strstr(r.out, "plugin "), "the plugin was not used:\n%s",
                       r.out);
    /* The bundled text's most frequent words, in order, and counts that
     * sum to at most what was sent. */
    char w1[64], w2[64], w10[64];
    long c1 = top_count(r.out, 1, w1, sizeof w1);
    long c2 = top_count(r.out, 2, w2, sizeof w2);
    long c10 = top_count(r.out, 10, w10, sizeof w10);
    cr_expect_str_eq(w1, "the");
    cr_expect_str_eq(w2, "and");
    cr_expect(c1 >= c2 && c2 >= c10 && c10 > 0, "%ld %ld %ld", c1, c2, c10);
    double wps = 0;
    const char *t = strstr(r.out, "throughput: ");
    cr_assert_not_null(t, "%s", r.out);
    cr_expect_eq(sscanf(t, "throughput: %lf words/s", &wps), 1);
    cr_expect_gt(wps, 0.0);
    /* Where the web view is, on the port asked for. */
    char url[64], none[64];
    snprintf(url, sizeof url, "web view: http://127.0.0.1:%d/", port);
    snprintf(none, sizeof none, "127.0.0.1:%d", port);
    cr_expect(strstr(r.out, url) ||
                  (strstr(r.out, "web view: none") && strstr(r.out, none)),
              "no web view line for port %d:\n%s", port, r.out);
    /* Without a terminal, progress is a line at a time. */
    cr_expect_not_null(strstr(r.err, "counted 200000 / 200000 words (100%)"),
                       "%s", r.err);
    mph_cli_result_free(&r);
}

Test(cli_demo, runs_a_built_in_word_count_without_the_plugin)
{
    char dir[PATH_MAX], env[PATH_MAX + 32];
    cr_assert_not_null(mph_test_tmpdir("clidemo", dir, sizeof dir));
    snprintf(env, sizeof env, "MEPHISTO_EXAMPLES_DIR=%s", dir);
    mph_cli_result_t r = run_env((const char *[]){"demo", "--words", "5000", NULL},
                         (const char *[]){env, NULL}, 120000);
    cr_assert_eq(r.status, 0, "status %d\nstdout:\n%s\nstderr:\n%s", r.status,
                 r.out, r.err);
    cr_expect_not_null(strstr(r.out, "built-in word count"), "%s", r.out);
    cr_expect_not_null(strstr(r.out, "counts verified: 5000 words"), "%s",
                       r.out);
    mph_cli_result_free(&r);
    mph_test_rmrf(dir);
}

Test(cli_demo, keep_running_keeps_the_web_view_until_sigint)
{
    int port = free_port();
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    mph_cli_proc_t p;
    spawn(&p,
          (const char *[]){"demo", "--words", "2000", "--web-port", port_s,
                           "--keep-running", NULL},
          NULL);
    char *out = wait_for(&p, p.out_path, "until Ctrl-C", 120000);
    cr_expect_not_null(strstr(out, "counts verified: 2000 words"), "%s", out);
    /* What the demo says about its web view is true while it runs. */
    if (strstr(out, "web view: none"))
        cr_expect_eq(http_status(port, "/health"), 0,
                     "the demo says no web view, but port %d answers", port);
    else
        cr_expect_eq(http_status(port, "/health"), 200,
                     "the demo's web view on %d does not answer", port);
    free(out);
    usleep(300000);
    cr_expect_eq(waitpid(p.pid, NULL, WNOHANG), 0,
                 "--keep-running ended on its own");
    kill(p.pid, SIGINT);
    mph_cli_result_t r = mph_cli_finish(&p, 30000);
    cr_expect_eq(r.status, 0, "status %d: %s", r.status, r.err);
    mph_cli_result_free(&r);
}

Test(cli_demo, usage_errors)
{
    expect_error((const char *[]){"demo", "--words", "0", NULL}, NULL, 2,
                 "--words: must be an integer between 1");
    expect_error((const char *[]){"demo", "--web-port", "70000", NULL}, NULL, 2,
                 "--web-port");
    expect_error((const char *[]){"demo", "extra", NULL}, NULL, 2,
                 "unexpected argument 'extra'");
    expect_error((const char *[]){"demo", "--set", "workers=x", NULL}, NULL, 2,
                 "workers");
}

/* ---- tables, agents, topics ---- */

Test(cli_demo, tables_agents_topics_describe_the_wordcount_plugin)
{
    char dir[PATH_MAX];
    cr_assert_not_null(mph_test_tmpdir("clitab", dir, sizeof dir));
    mph_cli_result_t r =
        run((const char *[]){"tables", "--app", wordcount(), "--datadir", dir,
                             "--set", "store=rocksdb", "word_counts", NULL});
    cr_expect_eq(r.status, 0, "%s", r.err);
    const char *want[] = {"app wordcount",
                          "table word_counts",
                          "store       rocksdb",
                          "partitions  8",
                          "changelog   wordcount-word_counts-changelog",
                          "local       none on this host",
                          NULL};
    for (const char **w = want; *w; w++)
        cr_expect_not_null(strstr(r.out, *w), "tables lacks '%s':\n%s", *w,
                           r.out);
    mph_cli_result_free(&r);
    expect_error((const char *[]){"tables", "--app", wordcount(), "nope", NULL},
                 NULL, 1, "app wordcount declares no table 'nope'");
    expect_error((const char *[]){"tables", NULL}, NULL, 2,
                 "--app PLUGIN.so is required");
    expect_error(
        (const char *[]){"tables", "--app", "/nonexistent/libx.so", NULL}, NULL,
        3, "plugin /nonexistent/libx.so");

    r = run((const char *[]){"topics", "--app", wordcount(), "--set",
                             "app_id=wc2", "--set",
                             "wordcount.input_topic=my-lines", NULL});
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect_not_null(strstr(r.out, "my-lines "), "%s", r.out);
    cr_expect_not_null(strstr(r.out, "wc2-words-repartition"), "%s", r.out);
    cr_expect_not_null(strstr(r.out, "internal (repartition)"), "%s", r.out);
    cr_expect_not_null(strstr(r.out, "wc2-dead-letter"), "%s", r.out);
    cr_expect_str_empty(r.err, "%s", r.err);
    mph_cli_result_free(&r);
    mph_test_rmrf(dir);
}

Test(cli_demo, agents_lists_them_in_declaration_order)
{
    mph_cli_result_t r = run((const char *[]){"agents", "--app", wordcount(), NULL});
    cr_expect_eq(r.status, 0, "%s", r.err);
    const char *h = strstr(r.out, "AGENT\n");
    cr_assert_not_null(h, "%s", r.out);
    cr_expect_str_eq(h, "AGENT\nsplit\ncount\n");
    mph_cli_result_free(&r);
}

/* ---- table get through a web view ---- */

/* A one-shot HTTP server: accepts one connection, keeps the request line,
 * answers with the canned reply. */
typedef struct fake_web {
    int fd, port;
    const char *reply;
    char request[1024];
    pthread_t thread;
} fake_web_t;

static void *fake_web_main(void *arg)
{
    fake_web_t *w = arg;
    int c = accept(w->fd, NULL, NULL);
    if (c < 0)
        return NULL;
    size_t len = 0;
    while (len < sizeof w->request - 1 && !strstr(w->request, "\r\n\r\n")) {
        ssize_t n = recv(c, w->request + len, sizeof w->request - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        w->request[len] = '\0';
    }
    send(c, w->reply, strlen(w->reply), MSG_NOSIGNAL);
    close(c);
    return NULL;
}

static void fake_web_start(fake_web_t *w, const char *reply)
{
    memset(w, 0, sizeof *w);
    w->reply = reply;
    w->fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(w->fd, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    cr_assert_eq(bind(w->fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(w->fd, 4), 0);
    cr_assert_eq(getsockname(w->fd, (struct sockaddr *)&a, &len), 0);
    w->port = ntohs(a.sin_port);
    cr_assert_eq(pthread_create(&w->thread, NULL, fake_web_main, w), 0);
}

static void fake_web_stop(fake_web_t *w)
{
    shutdown(w->fd, SHUT_RDWR);
    pthread_join(w->thread, NULL);
    close(w->fd);
}

Test(cli_demo, table_get_asks_the_web_view_with_an_encoded_key)
{
    fake_web_t w;
    fake_web_start(&w, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                       "Content-Length: 2\r\n\r\n42");
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", w.port);
    mph_cli_result_t r = run((const char *[]){"table", "get", "--app", wordcount(),
                                      "word_counts", "h\xc3\xa9llo w/x",
                                      "--web", url, NULL});
    fake_web_stop(&w);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect_str_eq(r.out, "42\n");
    cr_expect_eq(strncmp(w.request,
                         "GET /tables/word_counts/h%C3%A9llo%20w%2Fx HTTP/1.1"
                         "\r\n",
                         52),
                 0, "request: %s", w.request);
    mph_cli_result_free(&r);
}

Test(cli_demo, table_get_falls_back_to_local_shards_after_a_404)
{
    fake_web_t w;
    fake_web_start(&w, "HTTP/1.1 404 Not Found\r\nContent-Length: "
                       "9\r\n\r\nnot found");
    char url[64], dir[PATH_MAX];
    snprintf(url, sizeof url, "127.0.0.1:%d", w.port);
    cr_assert_not_null(mph_test_tmpdir("cliget", dir, sizeof dir));
    mph_cli_result_t r = run((const char *[]){"table", "get", "--app", wordcount(),
                                      "word_counts", "the", "--web", url,
                                      "--datadir", dir, NULL});
    fake_web_stop(&w);
    cr_expect_eq(r.status, 1, "%s", r.err);
    cr_expect_str_empty(r.out);
    cr_expect_not_null(strstr(r.err, "HTTP 404"), "%s", r.err);
    cr_expect_not_null(strstr(r.err, "no local state for table word_counts"),
                       "%s", r.err);
    cr_expect_eq(count_lines(r.err), 1, "%s", r.err);
    mph_cli_result_free(&r);

    expect_error((const char *[]){"table", "get", "--app", wordcount(),
                                  "word_counts", NULL},
                 NULL, 2, "TABLE and KEY are needed");
    expect_error((const char *[]){"table", "dump", "--app", wordcount(),
                                  "word_counts", "--web", url, NULL},
                 NULL, 2, "no route for a whole table");
    expect_error((const char *[]){"table", "get", "--app", wordcount(), "nope",
                                  "k", NULL},
                 NULL, 1, "declares no table 'nope'");
    expect_error((const char *[]){"table", "frob", NULL}, NULL, 2,
                 "unknown subcommand 'frob'");
    mph_test_rmrf(dir);
}

/* ---- reset ---- */

/* Creates <dir>/<app>/word_counts/w0/{LOCK,data}; returns the LOCK path. */
static void make_state(const char *dir, const char *app, char *lock,
                       size_t size)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, app);
    cr_assert_eq(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/%s/word_counts", dir, app);
    cr_assert_eq(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/%s/word_counts/w0", dir, app);
    cr_assert_eq(mkdir(p, 0700), 0);
    cr_assert_lt((size_t)snprintf(lock, size, "%.*s/LOCK", PATH_MAX - 8, p),
                 size);
    FILE *f = fopen(lock, "w");
    cr_assert_not_null(f);
    fclose(f);
    snprintf(p, sizeof p, "%s/%s/word_counts/w0/000001.sst", dir, app);
    f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs("data", f);
    fclose(f);
}

Test(cli_demo, reset_deletes_with_yes_and_refuses_without_a_terminal)
{
    char dir[PATH_MAX], lock[PATH_MAX + 16], app_dir[PATH_MAX + 16];
    cr_assert_not_null(mph_test_tmpdir("clireset", dir, sizeof dir));
    make_state(dir, "wordcount", lock, sizeof lock);
    snprintf(app_dir, sizeof app_dir, "%s/wordcount", dir);

    /* no terminal, no --yes: exit 2, nothing deleted */
    expect_error(
        (const char *[]){"reset", "--app", wordcount(), "--datadir", dir, NULL},
        NULL, 2, "refusing to delete");
    cr_expect_eq(access(lock, F_OK), 0, "deleted without --yes");

    /* a process holds the LOCK (as RocksDB does): exit 1 */
    int fd = open(lock, O_RDWR);
    cr_assert_geq(fd, 0);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    cr_assert_eq(fcntl(fd, F_SETLK, &fl), 0);
    char pid[32];
    snprintf(pid, sizeof pid, "pid %d", (int)getpid());
    expect_error((const char *[]){"reset", "--app", wordcount(), "--datadir",
                                  dir, "--yes", NULL},
                 NULL, 1, pid);
    close(fd);
    cr_expect_eq(access(lock, F_OK), 0, "deleted while locked");

    /* --yes: deleted, the datadir itself kept */
    mph_cli_result_t r = run((const char *[]){"reset", "--app", wordcount(),
                                      "--datadir", dir, "--yes", NULL});
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect_not_null(strstr(r.out, "deleted "), "%s", r.out);
    cr_expect_not_null(strstr(r.out, "(2 files, 4 bytes)"), "%s", r.out);
    mph_cli_result_free(&r);
    cr_expect_neq(access(app_dir, F_OK), 0, "%s still exists", app_dir);
    cr_expect_eq(access(dir, F_OK), 0, "the datadir was deleted");

    /* again: nothing to do */
    r = run((const char *[]){"reset", "--app", wordcount(), "--datadir", dir,
                             NULL});
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect_not_null(strstr(r.out, "nothing to reset"), "%s", r.out);
    mph_cli_result_free(&r);

    expect_error((const char *[]){"reset", "--datadir", dir, NULL}, NULL, 2,
                 "which app?");
    expect_error((const char *[]){"reset", "--set", "app_id=..", "--datadir",
                                  dir, "--yes", NULL},
                 NULL, 2, "must not be '.' or '..'");
    mph_test_rmrf(dir);
}

/* Runs reset with a pseudo-terminal as stdin and answer typed into it. */
static mph_cli_result_t reset_on_terminal(const char *dir, const char *answer)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    cr_assert_geq(master, 0, "posix_openpt: %s", strerror(errno));
    cr_assert_eq(grantpt(master), 0);
    cr_assert_eq(unlockpt(master), 0);
    int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
    cr_assert_geq(slave, 0);
    cr_assert_eq(write(master, answer, strlen(answer)),
                 (ssize_t)strlen(answer));
    mph_cli_proc_t p;
    spawn_fd(&p,
             (const char *[]){"reset", "--set", "app_id=wordcount", "--datadir",
                              dir, NULL},
             NULL, NULL, slave);
    close(slave);
    mph_cli_result_t r = mph_cli_finish(&p, 30000);
    close(master);
    return r;
}

Test(cli_demo, reset_asks_on_a_terminal)
{
    char dir[PATH_MAX], lock[PATH_MAX + 16];
    cr_assert_not_null(mph_test_tmpdir("cliask", dir, sizeof dir));
    make_state(dir, "wordcount", lock, sizeof lock);
    mph_cli_result_t r = reset_on_terminal(dir, "n\n");
    cr_expect_eq(r.status, 1, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "[y/N]"), "%s", r.err);
    cr_expect_not_null(strstr(r.err, "not confirmed"), "%s", r.err);
    cr_expect_eq(access(lock, F_OK), 0, "deleted after 'n'");
    mph_cli_result_free(&r);

    r = reset_on_terminal(dir, "yes\n");
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect_neq(access(lock, F_OK), 0, "not deleted after 'yes'");
    mph_cli_result_free(&r);
    mph_test_rmrf(dir);
}

/* ---- with a real broker: a worker's counts, read after it stopped ---- */

/* The events_in of the last stats line in text, or -1. */
static long last_events_in(const char *text)
{
    long v = -1;
    for (const char *at = text; (at = strstr(at, "events_in=")); at++)
        v = atol(at + 10);
    return v;
}

Test(cli_demo, worker_counts_are_read_from_local_shards_after_it_stops,
     .timeout = 240)
{
    if (!mph_test_real_broker())
        cr_skip_test("needs MEPHISTO_TEST_BROKERS: a mock:// broker lives "
                     "inside one process");
    char app_id[128], set_id[160], set_in[200], dir[PATH_MAX];
    mph_test_unique("cli-wc", app_id, sizeof app_id);
    snprintf(set_id, sizeof set_id, "app_id=%s", app_id);
    snprintf(set_in, sizeof set_in, "wordcount.input_topic=%s-lines", app_id);
    cr_assert_not_null(mph_test_tmpdir("cliwc", dir, sizeof dir));
    const char *broker = mph_test_broker();

    mph_cli_proc_t w;
    spawn(&w,
          (const char *[]){"worker", "--app", wordcount(), "--broker", broker,
                           "--set", "store=rocksdb", "--datadir", dir,
                           "--without-web", "--workers", "2", "--set", set_id,
                           "--set", set_in, "--set", "commit_interval_ms=200",
                           NULL},
          NULL);
    free(wait_for(&w, w.err_path, "worker running", 60000));

    /* 120 lines, 3 words each: "the" 120 times, "fox" 40, ... */
    char lines[PATH_MAX + 16], topic[160];
    snprintf(lines, sizeof lines, "%s/lines", dir);
    snprintf(topic, sizeof topic, "%s-lines", app_id);
    FILE *f = fopen(lines, "w");
    cr_assert_not_null(f);
    static const char *const animals[] = {"fox", "dog", "cat"};
    for (int i = 0; i < 120; i++)
        fprintf(f, "the %s w%d\n", animals[i % 3], i);
    fclose(f);
    mph_cli_result_t s = run((const char *[]){"send", topic, "--broker", broker,
                                      "--file", lines, NULL});
    cr_assert_eq(s.status, 0, "send: %s", s.err);
    mph_cli_result_free(&s);

    /* 120 lines + 360 words pass the agents; SIGUSR1's stats line says how
     * many were processed. */
    int64_t deadline = mph_clock_mono_ns() + 90 * (int64_t)1000000000;
    long seen = -1;
    while (seen < 480 && mph_clock_mono_ns() < deadline) {
        kill(w.pid, SIGUSR1);
        usleep(300000);
        char *err = mph_cli_slurp(w.err_path);
        seen = last_events_in(err);
        free(err);
    }
    cr_assert_geq(seen, 480, "the worker processed %ld of 480 events", seen);
    usleep(600000); /* a commit interval or two: the counts reach RocksDB */
    kill(w.pid, SIGTERM);
    mph_cli_result_t r = mph_cli_finish(&w, 60000);
    cr_expect_eq(r.status, 0, "worker: %s", r.err);
    cr_expect_not_null(strstr(r.err, "send_errors=0"), "%s", r.err);
    mph_cli_result_free(&r);

    const char *common[] = {
        "--app", wordcount(), "--datadir", dir,     "--set",
        set_id,  "--set",     set_in,      "--set", "web_enabled=false"};
    struct {
        const char *key, *want;
    } gets[] = {{"the", "120\n"}, {"fox", "40\n"}, {"w7", "1\n"}};
    for (size_t i = 0; i < 3; i++) {
        const char *args[16] = {"table", "get", "word_counts", gets[i].key};
        memcpy(args + 4, common, sizeof common);
        r = run(args);
        cr_expect_eq(r.status, 0, "get %s: %s", gets[i].key, r.err);
        cr_expect_str_eq(r.out, gets[i].want, "get %s", gets[i].key);
        mph_cli_result_free(&r);
    }

    const char *dump[16] = {"table", "dump", "word_counts", "--format", "json"};
    memcpy(dump + 5, common, sizeof common);
    r = run(dump);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect_eq(count_lines(r.out), 124, "%s", r.out);
    cr_expect_not_null(strstr(r.out, "\"key\":\"the\",\"value\":120}"), "%s",
                       r.out);
    cr_expect_not_null(strstr(r.err, "124 keys"), "%s", r.err);
    mph_cli_result_free(&r);

    const char *tables[16] = {"tables"};
    memcpy(tables + 1, common, sizeof common);
    r = run(tables);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect_not_null(strstr(r.out, "local       124 keys"), "%s", r.out);
    mph_cli_result_free(&r);

    char app_dir[PATH_MAX + 160];
    snprintf(app_dir, sizeof app_dir, "%s/%s", dir, app_id);
    cr_expect_eq(access(app_dir, F_OK), 0);
    const char *reset[16] = {"reset", "--yes"};
    memcpy(reset + 2, common, sizeof common);
    r = run(reset);
    cr_expect_eq(r.status, 0, "%s", r.err);
    mph_cli_result_free(&r);
    cr_expect_neq(access(app_dir, F_OK), 0, "%s survived reset", app_dir);
    mph_test_rmrf(dir);
}
