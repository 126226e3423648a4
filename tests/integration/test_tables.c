/*
 * Tables end to end with the word-count example (examples/wordcount, loaded
 * as a plugin): exact counts for memory and rocksdb stores, restart with
 * a checkpoint (only the tail is replayed), full rebuild after the datadir
 * is deleted, take-over between two members, and recovery edge cases.
 */
// ctest-timeout: 900
// ctest-labels: engine;tables
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ck_pr.h>

#include "mephisto.h"
#include "mph_test.h"
#include "runtime/app.h"
#include "runtime/worker.h"
#include "state/recovery.h"

#define VOCAB 3000

static mph_test_cluster_t *cluster;
static int (*wordcount_init)(mph_app_t *);
static void *plugin;

static void setup(void)
{
    cluster = mph_test_cluster_new();
    char path[4096];
    const char *b = getenv("MEPHISTO_BUILD_DIR");
    snprintf(path, sizeof path, "%s/examples/libwordcount.so", b ? b : ".");
    plugin = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    cr_assert_not_null(plugin, "%s", dlerror());
    *(void **)&wordcount_init = dlsym(plugin, "mephisto_app_init");
    cr_assert_not_null(wordcount_init);
}

static void teardown(void)
{
    mph_test_cluster_destroy(cluster);
    /* plugin stays loaded: apps destroyed above may still name its code */
}

TestSuite(tables, .init = setup, .fini = teardown, .timeout = 400);

static void word(int i, char *buf, size_t size)
{
    /* A few multi-byte UTF-8 words and punctuation, counted as written. */
    static const char *special[] = {"é", "naïve", "Zürich", "k-9", "x/y", "a%20b", "Word", "word"};
    if (i < 8)
        snprintf(buf, size, "%s", special[i]);
    else
        snprintf(buf, size, "w%d", i);
}

/* Produces lines of 10 words; adds the true counts into counts[]. */
static int produce_corpus(const char *topic, int words, uint64_t seed, int64_t *counts)
{
    uint64_t st = seed;
    char line[512];
    int lines = 0;
    for (int done = 0; done < words;) {
        size_t len = 0;
        int n = words - done < 10 ? words - done : 10;
        for (int k = 0; k < n; k++) {
            int w = (int)(mph_test_rand(&st) % VOCAB);
            char wb[32];
            word(w, wb, sizeof wb);
            counts[w]++;
            len += (size_t)snprintf(line + len, sizeof line - len, "%s%s", k ? (k % 3 ? " " : "\t ") : "", wb);
        }
        mph_test_produce(cluster, topic, RD_KAFKA_PARTITION_UA, NULL, 0, line, len);
        done += n;
        lines++;
    }
    mph_test_flush(cluster);
    return lines;
}

static mph_app_t *wordcount_app(const char *app_id, const char *input, const char *store,
                                const char *datadir, int workers)
{
    char err[512], n[16];
    mph_conf_t *conf = mph_conf_new();
    snprintf(n, sizeof n, "%d", workers);
    const char *kv[] = {"broker", cluster->broker, "app_id", app_id, "workers", n,
                        "store", store, "datadir", datadir, "wordcount.input_topic", input,
                        "commit_interval_ms", "300", "log_level", "warn",
                        "topic_partitions", "4", NULL};
    for (const char **p = kv; *p; p += 2)
        cr_assert_eq(mph_conf_set(conf, p[0], p[1], err, sizeof err), MPH_OK, "%s", err);
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(app, "%s", err);
    cr_assert_eq(wordcount_init(app), 0);
    return app;
}

/* On the mock cluster the app cannot create topics through the admin API,
 * so the test creates the app's internal topics itself. */
static void precreate(const char *app_id, const char *input)
{
    char name[512];
    mph_test_create_topic(cluster, input, 4);
    snprintf(name, sizeof name, "%s-words-repartition", app_id);
    mph_test_create_topic(cluster, name, 4);
    snprintf(name, sizeof name, "%s-word_counts-changelog", app_id);
    mph_test_create_topic(cluster, name, 4);
}

static void wait_done(const char *app_id, const char *input, int lines, int64_t words)
{
    char rep[512];
    snprintf(rep, sizeof rep, "%s-words-repartition", app_id);
    int64_t a = -1, b = -1;
    for (int i = 0; i < 600; i++) {
        a = mph_test_committed_sum(cluster, app_id, input, 4);
        b = mph_test_committed_sum(cluster, app_id, rep, 4);
        if (a >= lines && b >= words)
            break;
        usleep(200000);
    }
    cr_assert_eq(a, lines, "all lines committed");
    cr_assert_eq(b, words, "all words committed");
}

/* Compares the table with the truth through mph_table_lookup. */
/* Waits (at most 60 s) until app serves every word's shard: a member's
 * commits can reach the input's end before the group gave it the shards of
 * a member that left. */
static void wait_owns_all(mph_app_t *app)
{
    mph_table_t *t = mph_app_table(app, "word_counts");
    cr_assert_not_null(t);
    for (int tries = 0; tries < 600; tries++) {
        bool all = true;
        for (int w = 0; w < VOCAB && all; w++) {
            char wb[32];
            word(w, wb, sizeof wb);
            void *v = NULL;
            size_t vl = 0;
            all = mph_table_lookup(app, t, wb, strlen(wb), &v, &vl, 5000) != MPH_ERR_PARTITION;
            free(v);
        }
        if (all)
            return;
        usleep(100000);
    }
    cr_assert_fail("the remaining member never got every shard");
}

static int check_counts(mph_app_t *app, const int64_t *counts)
{
    mph_table_t *t = mph_app_table(app, "word_counts");
    cr_assert_not_null(t);
    int wrong = 0;
    for (int w = 0; w < VOCAB; w++) {
        char wb[32];
        word(w, wb, sizeof wb);
        void *v = NULL;
        size_t vl = 0;
        mph_err_t err = mph_table_lookup(app, t, wb, strlen(wb), &v, &vl, 5000);
        int64_t got = 0;
        if (err == MPH_OK && vl == 8)
            for (int i = 0; i < 8; i++)
                got = (got << 8) | ((unsigned char *)v)[i];
        if (err != MPH_OK || got != counts[w]) {
            if (wrong < 5)
                cr_log_error("word %s: table %lld (%s), truth %lld", wb, (long long)got,
                             mph_err_str(err), (long long)counts[w]);
            wrong++;
        }
        free(v);
    }
    return wrong;
}

static int corpus_words(void)
{
    return mph_test_real_broker() ? 1000000 : 200000;
}

static void exact_count(const char *store)
{
    char app_id[128], input[128], dir[256], err[512];
    mph_test_unique("wc", app_id, sizeof app_id);
    mph_test_unique("wc-lines", input, sizeof input);
    cr_assert_not_null(mph_test_tmpdir("wc", dir, sizeof dir));
    precreate(app_id, input);
    int64_t *counts = calloc(VOCAB, sizeof *counts);
    int words = corpus_words();
    int lines = produce_corpus(input, words, 42, counts);

    mph_app_t *app = wordcount_app(app_id, input, store, dir, 2);
    int64_t t0 = mph_clock_mono_ns();
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    wait_done(app_id, input, lines, words);
    cr_log_info("%s: %d words in %.2f s", store, words, (mph_clock_mono_ns() - t0) / 1e9);
    cr_expect_eq(check_counts(app, counts), 0, "table = true counts (%s)", store);
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);
    mph_test_rmrf(dir);
    free(counts);
}

Test(tables, wordcount_exact_memory)
{
    exact_count("memory");
}

Test(tables, wordcount_exact_rocksdb)
{
    exact_count("rocksdb");
}

static uint64_t recovered(mph_app_t *app)
{
    (void)app;
    return ck_pr_load_64((uint64_t *)&app->recovery_done);
}

Test(tables, restart_replays_tail_then_rebuilds_from_changelog)
{
    char app_id[128], input[128], dir[256], err[512];
    mph_test_unique("wcr", app_id, sizeof app_id);
    mph_test_unique("wcr-lines", input, sizeof input);
    cr_assert_not_null(mph_test_tmpdir("wcr", dir, sizeof dir));
    precreate(app_id, input);
    int64_t *counts = calloc(VOCAB, sizeof *counts);
    int half = 50000;
    int lines = produce_corpus(input, half, 7, counts);

    mph_app_t *app = wordcount_app(app_id, input, "rocksdb", dir, 2);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    wait_done(app_id, input, lines, half);
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);

    /* Second run: the checkpoint covers everything; only new input counts. */
    lines += produce_corpus(input, half, 8, counts);
    app = wordcount_app(app_id, input, "rocksdb", dir, 2);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    wait_done(app_id, input, lines, 2 * half);
    uint64_t replayed = recovered(app);
    cr_expect_eq(replayed, 0, "restart with checkpoints replays nothing (read %llu)",
                 (unsigned long long)replayed);
    cr_expect_eq(check_counts(app, counts), 0, "exact after a graceful restart");
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);

    /* Third run without the datadir: everything comes from the changelog. */
    mph_test_rmrf(dir);
    cr_assert_not_null(mph_test_tmpdir("wcr2", dir, sizeof dir));
    app = wordcount_app(app_id, input, "rocksdb", dir, 2);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    for (int i = 0; i < 100 && !ck_pr_load_int(&app->ready); i++)
        usleep(100000);
    usleep(500000);
    cr_expect_gt(recovered(app), 0, "rebuilt from the changelog");
    cr_expect_eq(check_counts(app, counts), 0, "rebuild equals the previous table");
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);
    mph_test_rmrf(dir);
    free(counts);
}

Test(tables, two_members_take_over_exact)
{
    char app_id[128], input[128], dir1[256], dir2[256], err[512];
    mph_test_unique("wct", app_id, sizeof app_id);
    mph_test_unique("wct-lines", input, sizeof input);
    cr_assert_not_null(mph_test_tmpdir("wct1", dir1, sizeof dir1));
    cr_assert_not_null(mph_test_tmpdir("wct2", dir2, sizeof dir2));
    precreate(app_id, input);
    int64_t *counts = calloc(VOCAB, sizeof *counts);
    int words = 60000;
    int lines = produce_corpus(input, words, 99, counts);

    mph_app_t *a = wordcount_app(app_id, input, "memory", dir1, 1);
    mph_app_t *b = wordcount_app(app_id, input, "memory", dir2, 1);
    cr_assert_eq(mph_app_start(a, err, sizeof err), MPH_OK, "%s", err);
    cr_assert_eq(mph_app_start(b, err, sizeof err), MPH_OK, "%s", err);
    usleep(1500000);
    cr_assert_eq(mph_app_stop(a), MPH_OK);
    mph_app_destroy(a);
    wait_done(app_id, input, lines, words);
    /* b now owns every shard: rebuilt from the changelog a left behind. */
    wait_owns_all(b);
    cr_expect_eq(check_counts(b, counts), 0, "exact after take-over");
    cr_assert_eq(mph_app_stop(b), MPH_OK);
    mph_app_destroy(b);
    mph_test_rmrf(dir1);
    mph_test_rmrf(dir2);
    free(counts);
}

/* ---- recovery edge cases, directly on mph__recover ---- */

static mph_err_t recover_one(mph__shard_t *sh, const char *topic, int64_t start, int64_t *recs,
                             bool *rebuilt)
{
    char err[512] = "";
    mph_conf_t *conf = mph_conf_new();
    mph_conf_set(conf, "broker", cluster->broker, err, sizeof err);
    mph_conf_set(conf, "app_id", "rec-test", err, sizeof err);
    mph__recovery_item_t it = {.shard = sh, .changelog = topic, .start = start};
    int64_t t0 = mph_clock_mono_ns();
    mph_err_t rc = mph__recover(cluster->env, conf, &it, 1, 1000, 1, 20000, NULL, NULL, err,
                                sizeof err);
    cr_expect_lt((mph_clock_mono_ns() - t0) / 1000000, 15000, "recovery ends promptly");
    cr_expect_eq(rc, MPH_OK, "%s", err);
    *recs = it.records;
    *rebuilt = it.rebuilt;
    mph_conf_destroy(conf);
    return rc;
}

Test(tables, recovery_edge_cases_terminate)
{
    char topic[128];
    mph_test_unique("rec", topic, sizeof topic);
    mph_test_create_topic(cluster, topic, 2);
    for (int i = 0; i < 10; i++) {
        char k[8];
        int kl = snprintf(k, sizeof k, "k%d", i % 4);
        mph_test_produce(cluster, topic, 0, k, (size_t)kl, "v", 1);
    }
    mph_test_produce(cluster, topic, 0, "k1", 2, NULL, 0); /* tombstone */
    mph_test_flush(cluster);
    int64_t recs;
    bool rebuilt;

    /* empty partition */
    mph__shard_t *sh = mph__shard_new(0, 1, NULL, 0);
    recover_one(sh, topic, 0, &recs, &rebuilt);
    cr_expect_eq(recs, 0);
    cr_expect_eq(mph__mstore_count(sh->mem), 0);
    mph__shard_destroy(sh);

    /* full replay, with a tombstone */
    sh = mph__shard_new(0, 0, NULL, 0);
    recover_one(sh, topic, 0, &recs, &rebuilt);
    cr_expect_eq(recs, 11);
    cr_expect_eq(mph__mstore_count(sh->mem), 3, "k0 k2 k3; k1 deleted");
    cr_expect_eq(sh->applied, 10);
    /* already current: nothing to read */
    recover_one(sh, topic, sh->applied + 1, &recs, &rebuilt);
    cr_expect_eq(recs, 0);
    cr_expect_not(rebuilt);

    /* checkpoint beyond the high watermark: rebuilt from the start */
    recover_one(sh, topic, 500, &recs, &rebuilt);
    cr_expect(rebuilt);
    cr_expect_eq(recs, 11);
    cr_expect_eq(mph__mstore_count(sh->mem), 3);
    mph__shard_destroy(sh);
}
