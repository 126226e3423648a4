/*
 * Taking over a Faust app's table (format=faust, changelog_topic), against
 * the real Faust: bench/peers/faust/peer.py (faust-streaming in
 * bench/peers/.venv, installed by bench/peers/setup) counts the words of the
 * first half of the input into its table and is stopped; a mephisto app
 * with the same app id (so the same consumer group, committed offsets and
 * repartition topic) and a table word_counts with format=faust and
 * changelog_topic=<app_id>-word_counts-changelog recovers Faust's counts,
 * counts the second half, and must hold the true counts; then Faust,
 * started afresh on the same changelog (PEER_DUMP), must read back exactly
 * those counts from what both wrote.
 *
 * Needs a real broker (MEPHISTO_TEST_BROKERS) and the Faust venv; skipped
 * with the reason otherwise (MEPHISTO_FAUST_PYTHON overrides the venv's
 * python). The adoption checks (missing changelog, other partition count)
 * run everywhere.
 */
// ctest-timeout: 300
// ctest-labels: faust
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ck_pr.h>

#include "mephisto.h"
#include "mph_test.h"

#define VOCAB 400
#define PARTS 4

static mph_test_cluster_t *cluster;

static void setup(void)
{
    cluster = mph_test_cluster_new();
}

static void teardown(void)
{
    mph_test_cluster_destroy(cluster);
}

TestSuite(faust_migration, .init = setup, .fini = teardown, .timeout = 280);

static void word(int i, char *buf, size_t size)
{
    static const char *special[] = {"é", "naïve", "Zürich", "k-9", "\"q\"", "back\\slash"};
    if (i < 6)
        snprintf(buf, size, "%s", special[i]);
    else
        snprintf(buf, size, "w%d", i);
}

/* Lines of 8 words from seed; adds into counts, returns words written. */
static int produce_lines(const char *topic, int lines, uint64_t seed, int64_t *counts)
{
    uint64_t st = seed;
    int words = 0;
    for (int l = 0; l < lines; l++) {
        char line[512];
        size_t len = 0;
        for (int k = 0; k < 8; k++) {
            int w = (int)(mph_test_rand(&st) % VOCAB);
            char wb[32];
            word(w, wb, sizeof wb);
            counts[w]++;
            words++;
            len += (size_t)snprintf(line + len, sizeof line - len, "%s%s", k ? " " : "", wb);
        }
        mph_test_produce(cluster, topic, RD_KAFKA_PARTITION_UA, NULL, 0, line, len);
    }
    mph_test_flush(cluster);
    return words;
}

/* --- the Faust peer ------------------------------------------------------ */

static bool faust_python(char *py, size_t n, char *peer, size_t pn)
{
    const char *src = getenv("MEPHISTO_SOURCE_DIR");
    const char *over = getenv("MEPHISTO_FAUST_PYTHON");
    if (over && *over)
        snprintf(py, n, "%s", over);
    else
        snprintf(py, n, "%s/bench/peers/.venv/bin/python", src ? src : ".");
    snprintf(peer, pn, "%s/bench/peers/faust/peer.py", src ? src : ".");
    return access(py, X_OK) == 0 && access(peer, R_OK) == 0;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* Starts peer.py worker with the given PEER_* settings; its output goes to
 * log. */
static pid_t faust_start(const char *py, const char *peer, const char *app_id, const char *input,
                         const char *state_dir, const char *dump, const char *log)
{
    char broker[600], parts[16];
    snprintf(broker, sizeof broker, "%s", cluster->broker);
    snprintf(parts, sizeof parts, "%d", PARTS);
    char port[16];
    snprintf(port, sizeof port, "%d", free_port());
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        setenv("PEER_BROKER", broker, 1);
        setenv("PEER_APP_ID", app_id, 1);
        setenv("PEER_INPUT", input, 1);
        setenv("PEER_PARTITIONS", parts, 1);
        setenv("PEER_STATE_DIR", state_dir, 1);
        setenv("PEER_COMMIT_INTERVAL_MS", "300", 1);
        if (dump)
            setenv("PEER_DUMP", dump, 1);
        /* Faust's worker binds its web port even with web_enabled=False:
         * a free one, not 6066, which other Faust processes may hold. */
        execl(py, py, peer, "worker", "-l", "warn", "--web-port", port, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void show_log(const char *log)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "tail -n 40 '%s' >&2", log);
    if (system(cmd) != 0)
        fprintf(stderr, "(no log %s)\n", log);
}

/* Waits for pid (at most secs); true when it exited (status in *st). */
static bool wait_exit(pid_t pid, int secs, int *st)
{
    for (int i = 0; i < secs * 10; i++) {
        pid_t r = waitpid(pid, st, WNOHANG);
        if (r == pid)
            return true;
        usleep(100000);
    }
    return false;
}

static void kill_hard(pid_t pid)
{
    int st;
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
}

/* Waits until the group committed `lines` input offsets and `words`
 * repartition offsets, at most secs. */
static bool wait_committed(const char *app_id, const char *input, int64_t lines, int64_t words,
                           int secs, pid_t peer)
{
    char rep[512];
    snprintf(rep, sizeof rep, "%s-words-repartition", app_id);
    for (int i = 0; i < secs * 5; i++) {
        if (peer > 0 && kill(peer, 0) != 0) {
            cr_log_error("the Faust peer exited early");
            return false;
        }
        if (mph_test_committed_sum(cluster, app_id, input, PARTS) >= lines &&
            mph_test_committed_sum(cluster, app_id, rep, PARTS) >= words)
            return true;
        usleep(200000);
    }
    cr_log_error("committed: input %lld/%lld, repartition %lld/%lld",
                 (long long)mph_test_committed_sum(cluster, app_id, input, PARTS), (long long)lines,
                 (long long)mph_test_committed_sum(cluster, app_id, rep, PARTS), (long long)words);
    return false;
}

/* --- the mephisto app taking over ------------------------------------------ */

struct wc {
    mph_topic_t *words;
    mph_table_t *counts;
};

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static mph_err_t split(mph_event_t *ev, void *opaque)
{
    struct wc *w = opaque;
    size_t len, i = 0;
    const unsigned char *line = mph_event_value(ev, &len);
    while (i < len) {
        while (i < len && is_space(line[i]))
            i++;
        size_t start = i;
        while (i < len && !is_space(line[i]))
            i++;
        if (i > start) {
            /* Faust's split sends value b"" (raw). */
            mph_err_t err = mph_event_send(ev, w->words, MPH_PARTITION_ANY, line + start,
                                           i - start, "", 0, NULL, 0);
            if (err)
                return err;
        }
    }
    return MPH_OK;
}

static mph_err_t count(mph_event_t *ev, void *opaque)
{
    struct wc *w = opaque;
    size_t len;
    const void *k = mph_event_key(ev, &len);
    return mph_table_incr(ev, w->counts, k, len, 1, NULL);
}

static mph_app_t *takeover_app(const char *app_id, const char *input, const char *changelog,
                               struct wc *wc, char *err, size_t errlen)
{
    mph_conf_t *conf = mph_conf_new();
    const char *kv[] = {"broker", cluster->broker, "app_id", app_id, "workers", "2",
                        "store", "memory", "commit_interval_ms", "300", "log_level", "warn",
                        "topic_partitions", "4", NULL};
    for (const char **p = kv; *p; p += 2)
        cr_assert_eq(mph_conf_set(conf, p[0], p[1], err, errlen), MPH_OK, "%s", err);
    mph_app_t *app = mph_app_new(conf, err, errlen);
    cr_assert_not_null(app, "%s", err);
    mph_topic_t *lines = mph_topic_new(app, input, NULL, err, errlen);
    cr_assert_not_null(lines, "%s", err);
    wc->words = mph_topic_repartition(app, "words", NULL, err, errlen);
    cr_assert_not_null(wc->words, "%s", err);
    mph_table_opts_t *o = mph_table_opts_new();
    const char *tkv[] = {"value_codec", "i64", "format", "faust", "changelog_topic", changelog,
                         NULL};
    for (const char **p = tkv; *p; p += 2)
        cr_assert_eq(mph_table_opts_set(o, p[0], p[1], err, errlen), MPH_OK, "%s", err);
    wc->counts = mph_table_new(app, "word_counts", o, err, errlen);
    mph_table_opts_destroy(o);
    cr_assert_not_null(wc->counts, "%s", err);
    cr_assert_str_eq(mph_table_changelog(wc->counts), changelog);
    cr_assert_not_null(mph_agent_new(app, "split", lines, split, wc, err, errlen), "%s", err);
    cr_assert_not_null(mph_agent_new(app, "count", wc->words, count, wc, err, errlen), "%s", err);
    return app;
}

static int check_table(mph_app_t *app, mph_table_t *t, const int64_t *counts)
{
    int wrong = 0;
    for (int w = 0; w < VOCAB; w++) {
        char wb[32];
        word(w, wb, sizeof wb);
        void *v = NULL;
        size_t vl = 0;
        mph_err_t e = mph_table_lookup(app, t, wb, strlen(wb), &v, &vl, 5000);
        int64_t got = 0;
        if (e == MPH_OK && vl == 8)
            for (int i = 0; i < 8; i++)
                got = got << 8 | ((unsigned char *)v)[i];
        free(v);
        if ((e != MPH_OK && !(e == MPH_ERR_NOENT && counts[w] == 0)) || got != counts[w]) {
            if (wrong++ < 5)
                cr_log_error("mephisto: word %s: %lld (%s), truth %lld", wb, (long long)got,
                             mph_err_str(e), (long long)counts[w]);
        }
    }
    return wrong;
}

/* Compares Faust's dump ("word<TAB>count" lines, then END) with counts. */
static int check_dump(const char *path, const int64_t *counts)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "no dump %s", path);
    int64_t *got = calloc(VOCAB, sizeof *got);
    char line[256];
    int wrong = 0;
    bool end = false;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (!strcmp(line, "END")) {
            end = true;
            break;
        }
        char *tab = strchr(line, '\t');
        cr_assert_not_null(tab, "dump line '%s'", line);
        *tab = '\0';
        int found = -1;
        for (int w = 0; w < VOCAB && found < 0; w++) {
            char wb[32];
            word(w, wb, sizeof wb);
            if (!strcmp(wb, line))
                found = w;
        }
        if (found < 0) {
            if (wrong++ < 5)
                cr_log_error("faust: unknown key '%s' (count %s)", line, tab + 1);
            continue;
        }
        got[found] = strtoll(tab + 1, NULL, 10);
    }
    fclose(f);
    cr_expect(end, "dump complete");
    for (int w = 0; w < VOCAB; w++)
        if (got[w] != counts[w] && wrong++ < 10) {
            char wb[32];
            word(w, wb, sizeof wb);
            cr_log_error("faust: word %s: %lld, truth %lld", wb, (long long)got[w],
                         (long long)counts[w]);
        }
    free(got);
    return wrong;
}

Test(faust_migration, faust_to_mephisto_and_back)
{
    char py[4096], peer[4096];
    if (!mph_test_real_broker())
        cr_skip_test("needs a real broker (MEPHISTO_TEST_BROKERS): Faust cannot use the mock "
                     "cluster");
    if (!faust_python(py, sizeof py, peer, sizeof peer))
        cr_skip_test("the Faust venv is missing (%s): run bench/peers/setup to install "
                     "faust-streaming into bench/peers/.venv",
                     py);
    char app_id[128], input[128], dir[256], state1[512], state2[512], log[512], dump[512];
    char changelog[300], err[512];
    mph_test_unique("faustmig", app_id, sizeof app_id);
    mph_test_unique("faustmig-lines", input, sizeof input);
    cr_assert_not_null(mph_test_tmpdir("faustmig", dir, sizeof dir));
    snprintf(state1, sizeof state1, "%s/faust1", dir);
    snprintf(state2, sizeof state2, "%s/faust2", dir);
    snprintf(log, sizeof log, "%s/faust.log", dir);
    snprintf(dump, sizeof dump, "%s/dump.tsv", dir);
    snprintf(changelog, sizeof changelog, "%s-word_counts-changelog", app_id);
    mph_test_create_topic(cluster, input, PARTS);

    int64_t *counts = calloc(VOCAB, sizeof *counts);
    const int half = 1000;
    int words1 = produce_lines(input, half, 7, counts);

    /* 1. Faust counts the first half, commits, and is stopped. */
    pid_t pid = faust_start(py, peer, app_id, input, state1, NULL, log);
    bool done = wait_committed(app_id, input, half, words1, 150, pid);
    kill(pid, SIGTERM);
    int st = 0;
    if (!wait_exit(pid, 40, &st)) {
        kill_hard(pid);
        show_log(log);
        cr_assert_fail("Faust did not stop within 40 s of SIGTERM");
    }
    if (!done) {
        show_log(log);
        cr_assert_fail("Faust did not count the first half");
    }

    /* 2. mephisto takes the table over and counts the second half. */
    int words2 = produce_lines(input, half, 8, counts);
    struct wc wc;
    mph_app_t *app = takeover_app(app_id, input, changelog, &wc, err, sizeof err);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    cr_assert(wait_committed(app_id, input, 2 * half, words1 + words2, 120, 0),
              "mephisto finished the second half");
    int wrong = check_table(app, wc.counts, counts);
    cr_expect_eq(wrong, 0, "%d words differ from the truth in mephisto's table", wrong);
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);

    /* 3. Faust, from an empty state directory, reads the changelog back. */
    pid = faust_start(py, peer, app_id, input, state2, dump, log);
    if (!wait_exit(pid, 120, &st)) {
        kill_hard(pid);
        show_log(log);
        cr_assert_fail("Faust did not recover and dump its table within 120 s");
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        show_log(log);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "Faust's dump run failed");
    wrong = check_dump(dump, counts);
    cr_expect_eq(wrong, 0, "%d words differ from the truth in what Faust read back", wrong);
    free(counts);
    mph_test_rmrf(dir);
}

/* --- adoption checks (mock cluster too) ------------------------------------ */

static mph_err_t adopt_start(const char *changelog, int table_parts, char *err, size_t errlen)
{
    char app_id[128], src[128], parts[16];
    mph_test_unique("adopt", app_id, sizeof app_id);
    mph_test_unique("adopt-src", src, sizeof src);
    mph_test_create_topic(cluster, src, table_parts);
    mph_conf_t *conf = mph_conf_new();
    snprintf(parts, sizeof parts, "%d", table_parts);
    const char *kv[] = {"broker", cluster->broker, "app_id", app_id, "log_level", "error",
                        "topic_partitions", parts, NULL};
    for (const char **p = kv; *p; p += 2)
        cr_assert_eq(mph_conf_set(conf, p[0], p[1], err, errlen), MPH_OK, "%s", err);
    mph_app_t *app = mph_app_new(conf, err, errlen);
    cr_assert_not_null(app, "%s", err);
    mph_table_opts_t *o = mph_table_opts_new();
    cr_assert_eq(mph_table_opts_set(o, "changelog_topic", changelog, err, errlen), MPH_OK);
    cr_assert_eq(mph_table_opts_set(o, "format", "faust", err, errlen), MPH_OK);
    cr_assert_eq(mph_table_opts_set(o, "value_codec", "i64", err, errlen), MPH_OK);
    mph_table_t *t = mph_table_new(app, "counts", o, err, errlen);
    mph_table_opts_destroy(o);
    cr_assert_not_null(t, "%s", err);
    mph_topic_t *in = mph_topic_new(app, src, NULL, err, errlen);
    cr_assert_not_null(in, "%s", err);
    cr_assert_not_null(mph_agent_new(app, "a", in, count, NULL, err, errlen));
    err[0] = '\0';
    mph_err_t e = mph_app_start(app, err, errlen);
    if (e == MPH_OK)
        mph_app_stop(app);
    mph_app_destroy(app);
    return e;
}

Test(faust_migration, adopting_a_changelog_checks_its_partition_count)
{
    char name[128], err[1024];
    mph_test_unique("adopt-cl", name, sizeof name);
    mph_test_create_topic(cluster, name, 3);
    mph_err_t e = adopt_start(name, 4, err, sizeof err);
    cr_expect_neq(e, MPH_OK);
    cr_expect(strstr(err, "has 3 partitions but the table has 4"), "%s", err);
    cr_expect(strstr(err, name), "%s", err);
}

Test(faust_migration, adopting_a_missing_changelog_is_refused)
{
    char name[128], err[1024];
    if (!mph_test_real_broker())
        cr_skip_test("the mock cluster creates a topic when its metadata is asked for");
    mph_test_unique("adopt-none", name, sizeof name);
    mph_err_t e = adopt_start(name, 2, err, sizeof err);
    cr_expect_eq(e, MPH_ERR_NOENT, "%s: %s", mph_err_str(e), err);
    cr_expect(strstr(err, "does not exist"), "%s", err);
}

Test(faust_migration, table_options_are_checked)
{
    char err[512];
    mph_table_opts_t *o = mph_table_opts_new();
    cr_expect_eq(mph_table_opts_set(o, "format", "avro", err, sizeof err), MPH_ERR_INVALID);
    cr_expect(strstr(err, "format: must be mephisto or faust"), "%s", err);
    cr_expect_eq(mph_table_opts_set(o, "changelog_topic", "bad name", err, sizeof err),
                 MPH_ERR_INVALID);
    cr_expect(strstr(err, "changelog_topic"), "%s", err);
    cr_expect_eq(mph_table_opts_set(o, "faust_namespace", "", err, sizeof err), MPH_ERR_INVALID);
    mph_conf_t *conf = mph_conf_new();
    cr_assert_eq(mph_conf_set(conf, "broker", "mock://1", err, sizeof err), MPH_OK);
    cr_assert_eq(mph_conf_set(conf, "app_id", "optcheck", err, sizeof err), MPH_OK);
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(app, "%s", err);
    /* a namespace without format=faust */
    cr_assert_eq(mph_table_opts_set(o, "faust_namespace", "app.Point", err, sizeof err), MPH_OK);
    cr_expect_null(mph_table_new(app, "t1", o, err, sizeof err));
    cr_expect(strstr(err, "needs format=faust"), "%s", err);
    /* a namespace on an i64 table */
    cr_assert_eq(mph_table_opts_set(o, "format", "faust", err, sizeof err), MPH_OK);
    cr_assert_eq(mph_table_opts_set(o, "value_codec", "i64", err, sizeof err), MPH_OK);
    cr_expect_null(mph_table_new(app, "t2", o, err, sizeof err));
    cr_expect(strstr(err, "faust_namespace: only for tables whose value_codec is json"), "%s",
              err);
    cr_assert_eq(mph_table_opts_set(o, "value_codec", "json", err, sizeof err), MPH_OK);
    cr_expect_not_null(mph_table_new(app, "t3", o, err, sizeof err), "%s", err);
    mph_table_opts_destroy(o);
    mph_app_destroy(app);
}

/* --- format=faust end to end without Faust: a windowed table and a record
 * table write Faust's layout to their changelogs, and a new instance
 * recovers them (mock cluster too) ------------------------------------------ */

struct rt {
    mph_window_t *views;
    mph_table_t *last;
    int refused;
};

static mph_err_t rt_agent(mph_event_t *ev, void *opaque)
{
    struct rt *r = opaque;
    size_t kl, vl;
    const void *k = mph_event_key(ev, &kl);
    const void *v = mph_event_value(ev, &vl);
    /* a key that is not UTF-8 has no Faust str form: refused by both */
    mph_err_t e = mph_window_incr(ev, r->views, k, kl, 1);
    if (e == MPH_ERR_UTF8)
        ck_pr_inc_int(&r->refused);
    mph_err_t e2 = mph_table_set(ev, r->last, k, kl, v, vl);
    if (e2 == MPH_ERR_UTF8)
        ck_pr_inc_int(&r->refused);
    return e ? e : e2;
}

static mph_app_t *rt_app(const char *app_id, const char *input, struct rt *r)
{
    char err[512];
    mph_conf_t *conf = mph_conf_new();
    const char *kv[] = {"broker", cluster->broker, "app_id", app_id, "log_level", "warn",
                        "topic_partitions", "1", "commit_interval_ms", "200", NULL};
    for (const char **p = kv; *p; p += 2)
        cr_assert_eq(mph_conf_set(conf, p[0], p[1], err, sizeof err), MPH_OK, "%s", err);
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(app, "%s", err);
    mph_topic_opts_t *to = mph_topic_opts_new();
    cr_assert_eq(mph_topic_opts_set(to, "value_codec", "json", err, sizeof err), MPH_OK);
    mph_topic_t *in = mph_topic_new(app, input, to, err, sizeof err);
    mph_topic_opts_destroy(to);
    cr_assert_not_null(in, "%s", err);
    mph_table_opts_t *o = mph_table_opts_new();
    const char *vkv[] = {"key_codec", "string", "value_codec", "i64", "format", "faust", NULL};
    for (const char **p = vkv; *p; p += 2)
        cr_assert_eq(mph_table_opts_set(o, p[0], p[1], err, sizeof err), MPH_OK, "%s", err);
    mph_table_t *views = mph_table_new(app, "views", o, err, sizeof err);
    cr_assert_not_null(views, "%s", err);
    r->views = mph_table_tumbling(views, 60000, 86400000, err, sizeof err);
    cr_assert_not_null(r->views, "%s", err);
    cr_assert_eq(mph_window_time_source(r->views, "field:ts"), MPH_OK);
    cr_assert_eq(mph_table_opts_set(o, "value_codec", "json", err, sizeof err), MPH_OK);
    cr_assert_eq(mph_table_opts_set(o, "faust_namespace", "pageviews.PageView", err, sizeof err),
                 MPH_OK);
    r->last = mph_table_new(app, "last", o, err, sizeof err);
    mph_table_opts_destroy(o);
    cr_assert_not_null(r->last, "%s", err);
    cr_assert_not_null(mph_agent_new(app, "a", in, rt_agent, r, err, sizeof err), "%s", err);
    return app;
}

struct latest {
    char keys[8][64], vals[8][128];
    int n;
};

static void keep_latest(const rd_kafka_message_t *m, void *opaque)
{
    struct latest *l = opaque;
    char k[64];
    snprintf(k, sizeof k, "%.*s", (int)m->key_len, (const char *)m->key);
    int i = 0;
    while (i < l->n && strcmp(l->keys[i], k))
        i++;
    if (i == l->n) {
        cr_assert_lt(l->n, 8, "more changelog keys than expected: %s", k);
        l->n++;
    }
    snprintf(l->keys[i], sizeof l->keys[i], "%s", k);
    snprintf(l->vals[i], sizeof l->vals[i], "%.*s", (int)m->len,
             m->payload ? (const char *)m->payload : "(null)");
}

static const char *latest_of(const struct latest *l, const char *key)
{
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->keys[i], key))
            return l->vals[i];
    return NULL;
}

static int64_t be64(const void *v)
{
    int64_t x = 0;
    for (int i = 0; i < 8; i++)
        x = x << 8 | ((const unsigned char *)v)[i];
    return x;
}

Test(faust_migration, format_faust_windows_and_records_round_trip)
{
    char app_id[128], input[128], name[300];
    mph_test_unique("faustrt", app_id, sizeof app_id);
    mph_test_unique("faustrt-in", input, sizeof input);
    mph_test_create_topic(cluster, input, 1);
    const char *cls[] = {"views", "last"};
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof name, "%s-%s-changelog", app_id, cls[i]);
        mph_test_create_topic(cluster, name, 1); /* the mock cannot create it */
    }
    struct rt r = {0};
    char err[512];
    mph_app_t *app = rt_app(app_id, input, &r);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    const char *recs[][2] = {
        {"/home", "{\"user\":\"a\",\"page\":\"/home\",\"ts\":1700000065500}"},
        {"/home", "{\"user\":\"b\",\"page\":\"/home\",\"ts\":1700000070000}"},
        {"/d\xc3\xb6" "cs", "{\"user\":\"c\",\"page\":\"/docs\",\"ts\":1700000130000}"},
        {"/x", "{\"user\":\"d\",\"__faust\":{\"ns\":\"other.NS\"},\"ts\":1700000131000}"},
        {"\xff", "{\"user\":\"e\",\"ts\":1700000132000}"},
    };
    for (int i = 0; i < 5; i++)
        mph_test_produce(cluster, input, 0, recs[i][0], strlen(recs[i][0]), recs[i][1],
                         strlen(recs[i][1]));
    mph_test_flush(cluster);
    int64_t c = mph_test_wait_committed(cluster, app_id, input, 1, 5, 30000);
    cr_assert_eq(c, 5, "all input committed: the refused write does not stop the app");
    cr_expect_eq(ck_pr_load_int(&r.refused), 2, "the key that is not UTF-8 is refused twice");
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);

    /* What the changelogs hold: Faust's layout, no window meta record. */
    struct latest v = {0}, l = {0};
    snprintf(name, sizeof name, "%s-views-changelog", app_id);
    mph_test_consume_all(cluster, name, 1000, 2000, 20000, keep_latest, &v);
    snprintf(name, sizeof name, "%s-last-changelog", app_id);
    mph_test_consume_all(cluster, name, 1000, 2000, 20000, keep_latest, &l);
    cr_expect_eq(v.n, 3, "three windowed keys and nothing else");
    const char *h = latest_of(&v, "[\"/home\",[1700000040.0,1700000099.9]]");
    cr_expect(h && !strcmp(h, "2"), "home: %s", h ? h : "missing");
    h = latest_of(&v, "[\"/d\\u00f6cs\",[1700000100.0,1700000159.9]]");
    cr_expect(h && !strcmp(h, "1"), "docs: %s", h ? h : "missing");
    h = latest_of(&l, "\"/home\"");
    cr_expect(h && !strcmp(h, "{\"user\":\"b\",\"page\":\"/home\",\"ts\":1700000070000,"
                              "\"__faust\":{\"ns\":\"pageviews.PageView\"}}"),
              "last /home: %s", h ? h : "missing");
    h = latest_of(&l, "\"/x\"");
    cr_expect(h && strstr(h, "\"__faust\":{\"ns\":\"other.NS\"}") &&
                  !strstr(h, "pageviews.PageView"),
              "a value's own namespace is kept: %s", h ? h : "missing");

    /* A new instance (memory store) recovers both from the changelogs. */
    struct rt r2 = {0};
    app = rt_app(app_id, input, &r2);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    void *val = NULL;
    size_t vl = 0;
    mph_err_t e = MPH_ERR_PARTITION;
    for (int i = 0; i < 300 && e == MPH_ERR_PARTITION; i++) {
        e = mph_window_lookup(app, r2.views, "/home", 5, MPH_WINDOW_AT, 1700000040000LL, &val,
                              &vl, NULL, NULL, 5000);
        if (e == MPH_ERR_PARTITION)
            usleep(100000);
    }
    cr_expect_eq(e, MPH_OK, "%s", mph_err_str(e));
    cr_expect(vl == 8 && be64(val) == 2);
    free(val);
    val = NULL;
    e = mph_window_lookup(app, r2.views, "/d\xc3\xb6" "cs", 6, MPH_WINDOW_AT, 1700000100000LL,
                          &val, &vl, NULL, NULL, 5000);
    cr_expect_eq(e, MPH_OK, "%s", mph_err_str(e));
    cr_expect(vl == 8 && be64(val) == 1);
    free(val);
    val = NULL;
    e = mph_table_lookup(app, r2.last, "/home", 5, &val, &vl, 5000);
    cr_expect_eq(e, MPH_OK, "%s", mph_err_str(e));
    cr_expect(e == MPH_OK && strstr((const char *)val, "pageviews.PageView") != NULL);
    free(val);
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);
}

/* --- format=faust: writes its changelog could not hold are refused at the
 * write, the app runs on and recovers (mock cluster too) ------------------ */

struct bad {
    mph_table_t *docs;
    mph_window_t *byid;
    int refused_json, refused_i64, refused_del, written;
};

static mph_err_t bad_agent(mph_event_t *ev, void *opaque)
{
    struct bad *b = opaque;
    size_t vl;
    const char *v = mph_event_value(ev, &vl);
    mph_err_t e = mph_table_set(ev, b->docs, "k", 1, v, vl);
    if (e == MPH_ERR_DECODE)
        ck_pr_inc_int(&b->refused_json);
    else if (e == MPH_OK)
        ck_pr_inc_int(&b->written);
    /* an i64 key must be 8 bytes; a JSON value gets one, anything else 3 */
    bool good = vl > 0 && v[0] == '{';
    e = mph_window_incr(ev, b->byid, good ? "\0\0\0\0\0\0\0\x07" : "abc", good ? 8 : 3, 1);
    if (e == MPH_ERR_TYPE)
        ck_pr_inc_int(&b->refused_i64);
    /* a rocksdb table's delete is blind: it leaves a tombstone even for an
     * absent key, which needs the key's Faust form too */
    if (mph_table_delete(ev, b->docs, "\xff", 1) == MPH_ERR_UTF8)
        ck_pr_inc_int(&b->refused_del);
    return MPH_OK;
}

static mph_app_t *bad_app(const char *app_id, const char *input, const char *dir, struct bad *b,
                          bool session, char *err, size_t errlen)
{
    mph_conf_t *conf = mph_conf_new();
    const char *kv[] = {"broker", cluster->broker, "app_id", app_id, "log_level", "error",
                        "topic_partitions", "1", "commit_interval_ms", "200", "datadir", dir,
                        NULL};
    for (const char **p = kv; *p; p += 2)
        cr_assert_eq(mph_conf_set(conf, p[0], p[1], err, errlen), MPH_OK, "%s", err);
    mph_app_t *app = mph_app_new(conf, err, errlen);
    cr_assert_not_null(app, "%s", err);
    mph_topic_t *in = mph_topic_new(app, input, NULL, err, errlen);
    cr_assert_not_null(in, "%s", err);
    mph_table_opts_t *o = mph_table_opts_new();
    const char *dkv[] = {"key_codec", "string", "value_codec", "json", "format", "faust",
                         "faust_namespace", "app.Doc", "store", "rocksdb", NULL};
    for (const char **p = dkv; *p; p += 2)
        cr_assert_eq(mph_table_opts_set(o, p[0], p[1], err, errlen), MPH_OK, "%s", err);
    b->docs = mph_table_new(app, "docs", o, err, errlen);
    mph_table_opts_destroy(o);
    cr_assert_not_null(b->docs, "%s", err);
    o = mph_table_opts_new();
    const char *wkv[] = {"key_codec", "i64", "value_codec", "i64", "format", "faust", NULL};
    for (const char **p = wkv; *p; p += 2)
        cr_assert_eq(mph_table_opts_set(o, p[0], p[1], err, errlen), MPH_OK, "%s", err);
    mph_table_t *wt = mph_table_new(app, "byid", o, err, errlen);
    mph_table_opts_destroy(o);
    cr_assert_not_null(wt, "%s", err);
    b->byid = session ? mph_table_session(wt, 60000, 86400000, err, errlen)
                      : mph_table_tumbling(wt, 60000, 86400000, err, errlen);
    cr_assert_not_null(b->byid, "%s", err);
    cr_assert_not_null(mph_agent_new(app, "a", in, bad_agent, b, err, errlen), "%s", err);
    return app;
}

Test(faust_migration, format_faust_refuses_unwritable_values_and_session_windows)
{
    char app_id[128], input[128], name[300], err[512], dir[256];
    mph_test_unique("faustbad", app_id, sizeof app_id);
    cr_assert_not_null(mph_test_tmpdir("faustbad", dir, sizeof dir));
    mph_test_unique("faustbad-in", input, sizeof input);
    mph_test_create_topic(cluster, input, 1);
    const char *cls[] = {"docs", "byid"};
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof name, "%s-%s-changelog", app_id, cls[i]);
        mph_test_create_topic(cluster, name, 1); /* the mock cannot create it */
    }
    /* Faust has no session windows: refused at start, naming them. */
    struct bad b = {0};
    mph_app_t *app = bad_app(app_id, input, dir, &b, true, err, sizeof err);
    cr_expect_neq(mph_app_start(app, err, sizeof err), MPH_OK);
    cr_expect(strstr(err, "session windows have no Faust changelog form"), "%s", err);
    mph_app_destroy(app);

    memset(&b, 0, sizeof b);
    app = bad_app(app_id, input, dir, &b, false, err, sizeof err);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    const char *vals[] = {"{\"n\":1}", "not json", "", "{\"n\":2}"};
    for (int i = 0; i < 4; i++)
        mph_test_produce(cluster, input, 0, "k", 1, vals[i], strlen(vals[i]));
    mph_test_flush(cluster);
    int64_t c = mph_test_wait_committed(cluster, app_id, input, 1, 4, 30000);
    /* Before: both wrote bytes that have no Faust form, the commit's
     * changelog flush failed and the app stopped, committing nothing. */
    cr_assert_eq(c, 4, "all input committed: refused writes do not stop the app");
    cr_expect_eq(ck_pr_load_int(&b.refused_json), 2, "'not json' and '' refused");
    cr_expect_eq(ck_pr_load_int(&b.written), 2);
    cr_expect_eq(ck_pr_load_int(&b.refused_i64), 2, "the 3-byte i64 keys refused");
    cr_expect_eq(ck_pr_load_int(&b.refused_del), 4, "deletes of a key that is not UTF-8 refused");
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);

    /* A new instance recovers both changelogs. */
    memset(&b, 0, sizeof b);
    app = bad_app(app_id, input, dir, &b, false, err, sizeof err);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    void *val = NULL;
    size_t vl = 0;
    mph_err_t e = MPH_ERR_PARTITION;
    for (int i = 0; i < 300 && e == MPH_ERR_PARTITION; i++) {
        e = mph_table_lookup(app, b.docs, "k", 1, &val, &vl, 5000);
        if (e == MPH_ERR_PARTITION)
            usleep(100000);
    }
    cr_expect_eq(e, MPH_OK, "%s", mph_err_str(e));
    cr_expect(e == MPH_OK && vl >= 7 && !memcmp(val, "{\"n\":2", 6), "docs k: %.*s", (int)vl,
              e == MPH_OK ? (const char *)val : "");
    free(val);
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);
    mph_test_rmrf(dir);
}
