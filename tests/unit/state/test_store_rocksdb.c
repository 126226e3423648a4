/* Tests of the RocksDB store (state/store_rocksdb.c). Each test works in its
 * own temporary directory under /tmp, removed when the test ends.
 *
 * Tests that fork (a crashing worker, a second worker process) fork before
 * this process creates its env: RocksDB's background threads would not
 * survive into the child, and a child whose flush waits on them hangs. */
// ctest-timeout: 120
#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "state/store_rocksdb.h"

#define S(x) (x), strlen(x)

static char tmpdir[64];
static char errstr[512];
static mph__rstore_env_t *env;

static int rm_one(const char *path, const struct stat *sb, int flag,
                  struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void setup(void)
{
    strcpy(tmpdir, "/tmp/mph_store_rocksdb_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

/* The env of this process, made on first use. */
static mph__rstore_env_t *the_env(void)
{
    if (env == NULL) {
        env = mph__rstore_env_new(NULL, errstr, sizeof(errstr));
        cr_assert_not_null(env, "%s", errstr);
    }
    return env;
}

static void teardown(void)
{
    mph__rstore_env_destroy(env);
    env = NULL;
    nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(store_rocksdb, .init = setup, .fini = teardown, .timeout = 30);

static char *path_of(const char *name)
{
    static char buf[256];

    snprintf(buf, sizeof(buf), "%s/%s", tmpdir, name);
    return buf;
}

static mph__rstore_t *open_at(const char *name)
{
    mph_err_t err = MPH_ERR_INTERNAL;
    mph__rstore_t *st = mph__rstore_open(the_env(), path_of(name), &err, errstr,
                                         sizeof(errstr));

    cr_assert_not_null(st, "open %s: %s", name, errstr);
    cr_assert_eq(err, MPH_OK);
    return st;
}

static void write_ok(mph__rstore_t *st, mph__rstore_batch_t *b)
{
    mph_err_t rc = mph__rstore_write(st, b, errstr, sizeof(errstr));

    cr_assert_eq(rc, MPH_OK, "write: %s", errstr);
}

static void put1(mph__rstore_t *st, uint32_t p, const void *k, size_t kl,
                 const void *v, size_t vl)
{
    mph__rstore_batch_t *b = mph__rstore_batch_new();

    cr_assert_eq(mph__rstore_batch_put(b, p, k, kl, v, vl), MPH_OK);
    write_ok(st, b);
    mph__rstore_batch_destroy(b);
}

static void assert_value(mph__rstore_t *st, uint32_t p, const void *k,
                         size_t kl, const char *want)
{
    void *v = NULL;
    size_t n = 0;
    mph_err_t rc =
        mph__rstore_get(st, p, k, kl, &v, &n, errstr, sizeof(errstr));

    cr_assert_eq(rc, MPH_OK, "get in partition %u: %d %s", p, rc, errstr);
    cr_assert_eq(n, strlen(want));
    cr_assert_eq(memcmp(v, want, n), 0);
    free(v);
}

static void assert_absent(mph__rstore_t *st, uint32_t p, const void *k,
                          size_t kl)
{
    void *v = NULL;
    size_t n;

    cr_assert_eq(mph__rstore_get(st, p, k, kl, &v, &n, errstr, sizeof(errstr)),
                 MPH_ERR_NOENT);
    cr_assert_null(v);
}

static uint64_t count_of(mph__rstore_t *st, uint32_t p)
{
    uint64_t n = 0;

    cr_assert_eq(mph__rstore_count(st, p, &n, errstr, sizeof(errstr)), MPH_OK,
                 "%s", errstr);
    return n;
}

Test(store_rocksdb, options_are_validated)
{
    mph__rstore_conf_t *c = mph__rstore_conf_new();
    mph__rstore_env_t *e;

    cr_assert_eq(mph__rstore_conf_set(c, "rocksdb.no_such_thing", "1", errstr,
                                      sizeof(errstr)),
                 MPH_ERR_INVALID);
    cr_assert_str_eq(errstr,
                     "rocksdb.no_such_thing: unknown or unsupported option");
    cr_assert_eq(mph__rstore_conf_set(c, "allow_mmap_reads", "true", errstr,
                                      sizeof(errstr)),
                 MPH_ERR_INVALID);
    cr_assert_str_eq(errstr,
                     "rocksdb.allow_mmap_reads: unknown or unsupported option");

    cr_assert_eq(mph__rstore_conf_set(c, "rocksdb.write_buffer_size", "8m",
                                      errstr, sizeof(errstr)),
                 MPH_OK, "%s", errstr);
    cr_assert_eq(mph__rstore_conf_set(c, "block_cache_size", "16777216", errstr,
                                      sizeof(errstr)),
                 MPH_OK, "%s", errstr);
    cr_assert_eq(mph__rstore_conf_set(c, "rocksdb.compression", "zstd", errstr,
                                      sizeof(errstr)),
                 MPH_OK, "%s", errstr);
    cr_assert_eq(mph__rstore_conf_set(c, "rocksdb.bloom_bits", "7.5", errstr,
                                      sizeof(errstr)),
                 MPH_OK, "%s", errstr);
    cr_assert_eq(mph__rstore_conf_set(c, "rocksdb.max_open_files", "-1", errstr,
                                      sizeof(errstr)),
                 MPH_OK, "%s", errstr);
    cr_assert_eq(
        mph__rstore_conf_set(c, "rocksdb.sync", "true", errstr, sizeof(errstr)),
        MPH_OK, "%s", errstr);
    cr_assert_eq(mph__rstore_conf_set(c, "rocksdb.max_background_jobs", "3",
                                      errstr, sizeof(errstr)),
                 MPH_OK, "%s", errstr);

    cr_assert_eq(mph__rstore_conf_set(c, "rocksdb.write_buffer_size", "big",
                                      errstr, sizeof(errstr)),
                 MPH_ERR_INVALID);
    cr_assert(strstr(errstr, "rocksdb.write_buffer_size") != NULL);
    cr_assert_eq(mph__rstore_conf_set(c, "rocksdb.write_buffer_size", "1k",
                                      errstr, sizeof(errstr)),
                 MPH_ERR_INVALID);
    cr_assert(strstr(errstr, "out of range") != NULL, "%s", errstr);
    cr_assert_eq(mph__rstore_conf_set(c, "rocksdb.compression", "brotli",
                                      errstr, sizeof(errstr)),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph__rstore_conf_set(c, "rocksdb.max_open_files", "5", errstr,
                                      sizeof(errstr)),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph__rstore_conf_set(c, "rocksdb.sync", "maybe", errstr,
                                      sizeof(errstr)),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph__rstore_conf_set(c, "rocksdb.max_background_jobs", "0",
                                      errstr, sizeof(errstr)),
                 MPH_ERR_INVALID);

    /* The validated set makes a working env. */
    e = mph__rstore_env_new(c, errstr, sizeof(errstr));
    cr_assert_not_null(e, "%s", errstr);
    {
        mph__rstore_t *st =
            mph__rstore_open(e, path_of("tuned"), NULL, errstr, sizeof(errstr));
        cr_assert_not_null(st, "%s", errstr);
        put1(st, 1, S("k"), S("v"));
        assert_value(st, 1, S("k"), "v");
        mph__rstore_close(st);
    }
    mph__rstore_env_destroy(e);
    mph__rstore_conf_destroy(c);
}

Test(store_rocksdb, path_layout)
{
    char buf[64];

    cr_assert_eq(mph__rstore_path(buf, sizeof(buf), "/data", "counts", 3),
                 MPH_OK);
    cr_assert_str_eq(buf, "/data/counts/w3");
    cr_assert_eq(mph__rstore_path(buf, sizeof(buf), "/data", "a/b", 0),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph__rstore_path(buf, sizeof(buf), "/data", "..", 0),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph__rstore_path(buf, sizeof(buf), "/data", "", 0),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph__rstore_path(buf, sizeof(buf), "/data", "t", -1),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph__rstore_path(buf, 8, "/data", "counts", 3), MPH_ERR_RANGE);
}

Test(store_rocksdb, round_trip_and_reopen)
{
    mph__rstore_t *st = open_at("table/w0");
    mph__rstore_batch_t *b = mph__rstore_batch_new();
    mph__rstore_pin_t *pin;
    const void *v;
    size_t n;
    static char bigkey[1000];

    memset(bigkey, 'K', sizeof(bigkey));
    cr_assert_str_eq(mph__rstore_dir(st), path_of("table/w0"));
    cr_assert_eq(mph__rstore_batch_put(b, 0, S("alpha"), S("one")), MPH_OK);
    cr_assert_eq(mph__rstore_batch_put(b, 0, S("beta"), S("two")), MPH_OK);
    cr_assert_eq(mph__rstore_batch_put(b, 0, S("empty-value"), "", 0), MPH_OK);
    cr_assert_eq(
        mph__rstore_batch_put(b, 0, bigkey, sizeof(bigkey), S("big key")),
        MPH_OK);
    cr_assert_eq(mph__rstore_batch_count(b), 4);
    cr_assert_gt(mph__rstore_batch_bytes(b), 1000);
    write_ok(st, b);

    assert_value(st, 0, S("alpha"), "one");
    assert_value(st, 0, S("empty-value"), "");
    assert_value(st, 0, bigkey, sizeof(bigkey), "big key");
    assert_absent(st, 0, S("gamma"));
    assert_absent(st, 1, S("alpha"));
    cr_assert_eq(mph__rstore_get_pinned(st, 0, S("beta"), &pin, &v, &n, errstr,
                                        sizeof(errstr)),
                 MPH_OK);
    cr_assert_eq(n, 3);
    cr_assert_eq(memcmp(v, "two", 3), 0);
    mph__rstore_pin_free(pin);
    cr_assert_eq(mph__rstore_get_pinned(st, 0, S("nope"), &pin, &v, &n, errstr,
                                        sizeof(errstr)),
                 MPH_ERR_NOENT);
    cr_assert_null(pin);

    /* Deletes and overwrites in the next batch. */
    mph__rstore_batch_clear(b);
    cr_assert_eq(mph__rstore_batch_count(b), 0);
    cr_assert_eq(mph__rstore_batch_delete(b, 0, S("alpha")), MPH_OK);
    cr_assert_eq(mph__rstore_batch_put(b, 0, S("beta"), S("TWO")), MPH_OK);
    write_ok(st, b);
    mph__rstore_close(st);

    st = open_at("table/w0");
    assert_absent(st, 0, S("alpha"));
    assert_value(st, 0, S("beta"), "TWO");
    assert_value(st, 0, bigkey, sizeof(bigkey), "big key");
    cr_assert_eq(count_of(st, 0), 3);
    mph__rstore_batch_destroy(b);
    mph__rstore_close(st);
    mph__rstore_close(NULL);
    mph__rstore_batch_destroy(NULL);
}

Test(store_rocksdb, bad_partition_is_rejected)
{
    mph__rstore_t *st = open_at("w0");
    mph__rstore_batch_t *b = mph__rstore_batch_new();
    mph__rstore_checkpoint_t cp = {1, 1};
    void *v;
    size_t n;

    cr_assert_eq(mph__rstore_batch_put(b, 0x80000000u, S("k"), S("v")),
                 MPH_ERR_RANGE);
    cr_assert_eq(mph__rstore_batch_delete(b, UINT32_MAX, S("k")),
                 MPH_ERR_RANGE);
    cr_assert_eq(mph__rstore_batch_checkpoint(b, UINT32_MAX, &cp),
                 MPH_ERR_RANGE);
    cr_assert_eq(mph__rstore_batch_drop(b, UINT32_MAX), MPH_ERR_RANGE);
    cr_assert_eq(mph__rstore_batch_count(b), 0);
    cr_assert_eq(
        mph__rstore_get(st, UINT32_MAX, S("k"), &v, &n, errstr, sizeof(errstr)),
        MPH_ERR_RANGE);
    cr_assert_null(
        mph__rstore_iter_new(st, UINT32_MAX, errstr, sizeof(errstr)));
    mph__rstore_batch_destroy(b);
    mph__rstore_close(st);
}

struct kv {
    const unsigned char *k;
    size_t kl;
    const char *v;
};

/* Collects a shard's keys in iteration order and checks them against want. */
static void assert_shard(mph__rstore_t *st, uint32_t p, const struct kv *want,
                         size_t nwant)
{
    mph__rstore_iter_t *it =
        mph__rstore_iter_new(st, p, errstr, sizeof(errstr));
    size_t i = 0;

    cr_assert_not_null(it, "%s", errstr);
    for (mph__rstore_iter_seek_first(it); mph__rstore_iter_valid(it);
         mph__rstore_iter_next(it), i++) {
        size_t kl, vl;
        const void *k = mph__rstore_iter_key(it, &kl);
        const void *v = mph__rstore_iter_value(it, &vl);
        cr_assert_lt(i, nwant, "partition %u yields an extra key", p);
        cr_assert_eq(kl, want[i].kl, "partition %u key %zu length", p, i);
        cr_assert_eq(memcmp(k, want[i].k, kl), 0, "partition %u key %zu", p, i);
        cr_assert_eq(vl, strlen(want[i].v));
        cr_assert_eq(memcmp(v, want[i].v, vl), 0);
    }
    cr_assert_eq(i, nwant, "partition %u yielded %zu of %zu keys", p, i, nwant);
    cr_assert_eq(mph__rstore_iter_status(it, errstr, sizeof(errstr)), MPH_OK);
    mph__rstore_iter_destroy(it);
}

Test(store_rocksdb, shards_are_isolated)
{
    static const unsigned char empty[] = "", z[] = {0x00}, zz[] = {0x00, 0x00},
                               z1[] = {0x00, 0x01}, one[] = {0x01},
                               two[] = {0x02}, a[] = "a", ff[] = {0xff},
                               ffff[] = {0xff, 0xff, 0xff};
    /* In bytewise order. */
    const struct kv p3[] = {
        {empty, 0, "p3 empty"}, {z, 1, "p3 00"},   {zz, 2, "p3 0000"},
        {z1, 2, "p3 0001"},     {one, 1, "p3 01"}, {two, 1, "p3 02"},
        {a, 1, "p3 a"},         {ff, 1, "p3 ff"},  {ffff, 3, "p3 ffffff"},
    };
    const struct kv p4[] = {
        {empty, 0, "p4 empty"},
        {ff, 1, "p4 ff"},
    };
    const struct kv p0[] = {{z, 1, "p0 00"}};
    const struct kv pmax[] = {{ffff, 3, "pmax ffffff"}};
    mph__rstore_t *st = open_at("iso");
    mph__rstore_batch_t *b = mph__rstore_batch_new();
    mph__rstore_checkpoint_t cp = {77, 4};
    mph__rstore_iter_t *it;
    size_t i, kl;

    /* Insert out of order, with checkpoints on every shard. */
    for (i = sizeof(p3) / sizeof(p3[0]); i-- > 0;)
        mph__rstore_batch_put(b, 3, p3[i].k, p3[i].kl, S(p3[i].v));
    for (i = 0; i < 2; i++)
        mph__rstore_batch_put(b, 4, p4[i].k, p4[i].kl, S(p4[i].v));
    mph__rstore_batch_put(b, 0, p0[0].k, p0[0].kl, S(p0[0].v));
    mph__rstore_batch_put(b, MPH__RSTORE_PARTITION_MAX, pmax[0].k, pmax[0].kl,
                          S(pmax[0].v));
    mph__rstore_batch_checkpoint(b, 0, &cp);
    mph__rstore_batch_checkpoint(b, 2, &cp);
    mph__rstore_batch_checkpoint(b, 3, &cp);
    mph__rstore_batch_checkpoint(b, 4, &cp);
    mph__rstore_batch_checkpoint(b, 5, &cp);
    mph__rstore_batch_checkpoint(b, MPH__RSTORE_PARTITION_MAX, &cp);
    write_ok(st, b);

    assert_shard(st, 3, p3, sizeof(p3) / sizeof(p3[0]));
    assert_shard(st, 4, p4, 2);
    assert_shard(st, 0, p0, 1);
    assert_shard(st, MPH__RSTORE_PARTITION_MAX, pmax, 1);
    assert_shard(st, 2, NULL, 0); /* only a checkpoint: no keys */
    assert_shard(st, 1, NULL, 0); /* nothing at all */
    assert_shard(st, 5, NULL, 0);
    assert_value(st, 4, "", 0, "p4 empty");
    assert_value(st, 3, "", 0, "p3 empty");
    assert_absent(st, 4, z, 1);
    assert_absent(st, 2, ff, 1);
    cr_assert_eq(count_of(st, 3), 9);
    cr_assert_eq(count_of(st, 4), 2);
    cr_assert_eq(count_of(st, 2), 0);

    /* Seeking inside a shard. */
    it = mph__rstore_iter_new(st, 3, errstr, sizeof(errstr));
    cr_assert_eq(mph__rstore_iter_seek(it, one, 1), MPH_OK);
    cr_assert(mph__rstore_iter_valid(it));
    cr_assert_eq(memcmp(mph__rstore_iter_key(it, &kl), one, 1), 0);
    cr_assert_eq(mph__rstore_iter_seek(it, "b", 1), MPH_OK);
    cr_assert(mph__rstore_iter_valid(it));
    cr_assert_eq(memcmp(mph__rstore_iter_key(it, &kl), ff, 1), 0);
    cr_assert_eq(kl, 1);
    cr_assert_eq(mph__rstore_iter_seek(it, ffff, 3), MPH_OK);
    mph__rstore_iter_next(it);
    cr_assert_not(mph__rstore_iter_valid(it), "ran into partition 4");
    mph__rstore_iter_destroy(it);

    mph__rstore_batch_destroy(b);
    mph__rstore_close(st);
}

Test(store_rocksdb, checkpoint_moves_with_data)
{
    mph__rstore_t *st = open_at("ckpt");
    mph__rstore_batch_t *b = mph__rstore_batch_new();
    mph__rstore_checkpoint_t cp = {0, 0}, got;

    cr_assert_eq(
        mph__rstore_checkpoint_get(st, 7, &got, errstr, sizeof(errstr)),
        MPH_ERR_NOENT);
    cp.offset = 123456789012345;
    cp.workers = 8;
    mph__rstore_batch_put(b, 7, S("k1"), S("v1"));
    mph__rstore_batch_put(b, 7, S("k2"), S("v2"));
    mph__rstore_batch_checkpoint(b, 7, &cp);
    cp.offset = -1; /* any i64 round-trips */
    cp.workers = UINT32_MAX;
    mph__rstore_batch_checkpoint(b, 8, &cp);
    write_ok(st, b);
    mph__rstore_close(st);

    st = open_at("ckpt");
    cr_assert_eq(
        mph__rstore_checkpoint_get(st, 7, &got, errstr, sizeof(errstr)), MPH_OK,
        "%s", errstr);
    cr_assert_eq(got.offset, 123456789012345);
    cr_assert_eq(got.workers, 8);
    assert_value(st, 7, S("k1"), "v1");
    assert_value(st, 7, S("k2"), "v2");
    cr_assert_eq(
        mph__rstore_checkpoint_get(st, 8, &got, errstr, sizeof(errstr)),
        MPH_OK);
    cr_assert_eq(got.offset, -1);
    cr_assert_eq(got.workers, UINT32_MAX);
    cr_assert_eq(count_of(st, 7), 2, "the checkpoint is not a user key");
    cr_assert_eq(
        mph__rstore_checkpoint_get(st, 6, &got, errstr, sizeof(errstr)),
        MPH_ERR_NOENT);
    mph__rstore_batch_destroy(b);
    mph__rstore_close(st);
}

/* Runs body in a child process that dies without closing anything, as a
 * crashed worker would. */
static void crash_after(void (*body)(void))
{
    pid_t pid = fork();
    int status;

    cr_assert_neq(pid, -1);
    if (pid == 0) {
        body();
        _exit(0);
    }
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "child failed: status %d", status);
}

static void bulk_batches(mph__rstore_t *st, uint32_t p, int batches)
{
    mph__rstore_batch_t *b = mph__rstore_batch_new();
    char key[32], val[32];
    int i, j, rec = 0;

    for (i = 0; i < batches; i++) {
        mph__rstore_checkpoint_t cp;
        mph__rstore_batch_clear(b);
        for (j = 0; j < 500; j++, rec++) {
            snprintf(key, sizeof(key), "key-%06d", rec);
            snprintf(val, sizeof(val), "val-%d", rec);
            if (mph__rstore_batch_put(b, p, S(key), S(val)) != MPH_OK)
                _exit(2);
        }
        cp.offset = rec;
        cp.workers = 2;
        mph__rstore_batch_checkpoint(b, p, &cp);
        if (mph__rstore_write_bulk(st, b, mph__rstore_gen(st), errstr,
                                   sizeof(errstr)) != MPH_OK)
            _exit(3);
    }
    mph__rstore_batch_destroy(b);
}

static void child_bulk_then_finish(void)
{
    mph__rstore_t *st = mph__rstore_open(the_env(), path_of("bulk"), NULL,
                                         errstr, sizeof(errstr));
    if (st == NULL)
        _exit(1);
    bulk_batches(st, 5, 4);
    if (mph__rstore_bulk_finish(st, mph__rstore_gen(st), errstr,
                                sizeof(errstr)) != MPH_OK)
        _exit(4);
}

static void child_bulk_without_finish(void)
{
    mph__rstore_t *st = mph__rstore_open(the_env(), path_of("bulk"), NULL,
                                         errstr, sizeof(errstr));
    mph__rstore_batch_t *b = mph__rstore_batch_new();

    if (st == NULL)
        _exit(1);
    /* A WAL commit to another shard, then WAL-less writes to shard 6. */
    mph__rstore_batch_put(b, 1, S("walled"), S("kept"));
    if (mph__rstore_write(st, b, errstr, sizeof(errstr)) != MPH_OK)
        _exit(5);
    bulk_batches(st, 6, 2);
}

Test(store_rocksdb, bulk_apply_is_durable_after_finish)
{
    mph__rstore_checkpoint_t got;
    mph__rstore_t *st;
    char key[32], val[32];
    int i;

    crash_after(child_bulk_then_finish);
    st = open_at("bulk");
    cr_assert_eq(
        mph__rstore_checkpoint_get(st, 5, &got, errstr, sizeof(errstr)), MPH_OK,
        "%s", errstr);
    cr_assert_eq(got.offset, 2000);
    cr_assert_eq(got.workers, 2);
    cr_assert_eq(count_of(st, 5), 2000);
    for (i = 0; i < 2000; i += 97) {
        snprintf(key, sizeof(key), "key-%06d", i);
        snprintf(val, sizeof(val), "val-%d", i);
        assert_value(st, 5, S(key), val);
    }
    mph__rstore_close(st);
}

/* Without the flush, a crash loses the WAL-less batches whole — data and
 * checkpoint together — while WAL commits survive: the shard is consistent
 * ("none": replay everything), never a checkpoint without its data. */
Test(store_rocksdb, bulk_apply_lost_whole_without_finish)
{
    mph__rstore_checkpoint_t got;
    mph__rstore_t *st;

    crash_after(child_bulk_without_finish);
    st = open_at("bulk");
    assert_value(st, 1, S("walled"), "kept");
    cr_assert_eq(
        mph__rstore_checkpoint_get(st, 6, &got, errstr, sizeof(errstr)),
        MPH_ERR_NOENT);
    cr_assert_eq(count_of(st, 6), 0);
    mph__rstore_close(st);
}

Test(store_rocksdb, drop_shard_and_list_shards)
{
    const uint32_t parts[] = {0, 1, 7, 1000, MPH__RSTORE_PARTITION_MAX};
    mph__rstore_t *st = open_at("drop");
    mph__rstore_batch_t *b = mph__rstore_batch_new();
    mph__rstore_checkpoint_t cp = {10, 3}, got;
    uint32_t *list;
    size_t n, i;

    cr_assert_eq(mph__rstore_list_shards(st, &list, &n, errstr, sizeof(errstr)),
                 MPH_OK);
    cr_assert_eq(n, 0);
    cr_assert_null(list);
    for (i = 0; i < 5; i++) {
        mph__rstore_batch_put(b, parts[i], S("a"), S("1"));
        mph__rstore_batch_put(b, parts[i], S("b"), S("2"));
        mph__rstore_batch_checkpoint(b, parts[i], &cp);
    }
    mph__rstore_batch_checkpoint(b, 42, &cp); /* checkpoint only */
    write_ok(st, b);

    cr_assert_eq(mph__rstore_list_shards(st, &list, &n, errstr, sizeof(errstr)),
                 MPH_OK);
    cr_assert_eq(n, 6);
    cr_assert_eq(list[0], 0);
    cr_assert_eq(list[1], 1);
    cr_assert_eq(list[2], 7);
    cr_assert_eq(list[3], 42);
    cr_assert_eq(list[4], 1000);
    cr_assert_eq(list[5], MPH__RSTORE_PARTITION_MAX);
    free(list);

    cr_assert_eq(mph__rstore_drop_shard(st, 7, errstr, sizeof(errstr)), MPH_OK);
    cr_assert_eq(mph__rstore_drop_shard(st, MPH__RSTORE_PARTITION_MAX, errstr,
                                        sizeof(errstr)),
                 MPH_OK);
    cr_assert_eq(count_of(st, 7), 0);
    assert_absent(st, 7, S("a"));
    cr_assert_eq(
        mph__rstore_checkpoint_get(st, 7, &got, errstr, sizeof(errstr)),
        MPH_ERR_NOENT);
    /* Neighbours untouched. */
    assert_value(st, 1, S("b"), "2");
    assert_value(st, 1000, S("a"), "1");
    cr_assert_eq(
        mph__rstore_checkpoint_get(st, 1000, &got, errstr, sizeof(errstr)),
        MPH_OK);

    /* A drop followed by a refill in one batch: the refill wins. */
    mph__rstore_batch_clear(b);
    mph__rstore_batch_drop(b, 0);
    mph__rstore_batch_put(b, 0, S("fresh"), S("yes"));
    write_ok(st, b);
    mph__rstore_close(st);

    st = open_at("drop");
    cr_assert_eq(count_of(st, 0), 1);
    assert_value(st, 0, S("fresh"), "yes");
    cr_assert_eq(mph__rstore_list_shards(st, &list, &n, errstr, sizeof(errstr)),
                 MPH_OK);
    cr_assert_eq(n, 4);
    cr_assert_eq(list[0], 0);
    cr_assert_eq(list[1], 1);
    cr_assert_eq(list[2], 42);
    cr_assert_eq(list[3], 1000);
    free(list);
    mph__rstore_batch_destroy(b);
    mph__rstore_close(st);
}

Test(store_rocksdb, many_shards_in_one_instance)
{
    const uint32_t shards = 4096;
    mph__rstore_t *st = open_at("many");
    mph__rstore_batch_t *b = mph__rstore_batch_new();
    uint32_t *list, p;
    char key[32], val[32];
    size_t n;
    int j;

    for (p = 0; p < shards; p++) {
        mph__rstore_checkpoint_t cp = {(int64_t)p * 10, 16};
        for (j = 0; j < 3; j++) {
            snprintf(key, sizeof(key), "key%d", j);
            snprintf(val, sizeof(val), "%u/%d", p, j);
            mph__rstore_batch_put(b, p, S(key), S(val));
        }
        mph__rstore_batch_checkpoint(b, p, &cp);
    }
    write_ok(st, b);
    mph__rstore_close(st);

    st = open_at("many");
    for (p = 0; p < shards; p++) {
        mph__rstore_checkpoint_t got;
        cr_assert_eq(count_of(st, p), 3);
        snprintf(val, sizeof(val), "%u/%d", p, 2);
        assert_value(st, p, S("key2"), val);
        cr_assert_eq(
            mph__rstore_checkpoint_get(st, p, &got, errstr, sizeof(errstr)),
            MPH_OK);
        cr_assert_eq(got.offset, (int64_t)p * 10);
    }
    cr_assert_eq(mph__rstore_list_shards(st, &list, &n, errstr, sizeof(errstr)),
                 MPH_OK);
    cr_assert_eq(n, shards);
    for (p = 0; p < shards; p++)
        cr_assert_eq(list[p], p);
    free(list);
    mph__rstore_batch_destroy(b);
    mph__rstore_close(st);
}

Test(store_rocksdb, locked_instance_names_dir_and_other_process)
{
    mph__rstore_t *st, *again;
    mph_err_t err = MPH_OK;
    int ready[2], done[2];
    pid_t pid;
    char c;
    int status;

    /* Held by another process (forked before this one has an env). */
    cr_assert_eq(pipe(ready), 0);
    cr_assert_eq(pipe(done), 0);
    pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        mph__rstore_t *held = mph__rstore_open(the_env(), path_of("locked"),
                                               NULL, errstr, sizeof(errstr));
        c = held != NULL ? 'y' : 'n';
        if (write(ready[1], &c, 1) != 1 || read(done[0], &c, 1) != 1)
            _exit(1);
        mph__rstore_close(held);
        _exit(0);
    }
    cr_assert_eq(read(ready[0], &c, 1), 1);
    cr_assert_eq(c, 'y');
    again = mph__rstore_open(the_env(), path_of("locked"), &err, errstr,
                             sizeof(errstr));
    cr_assert_null(again);
    cr_assert_eq(err, MPH_ERR_STORE);
    cr_assert(strstr(errstr, path_of("locked")) != NULL, "%s", errstr);
    cr_assert(strstr(errstr, "another worker process is using it") != NULL,
              "%s", errstr);
    cr_assert_eq(write(done[1], "x", 1), 1);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* Released: it opens; a second open in this process is refused. */
    st = open_at("locked");
    err = MPH_OK;
    again = mph__rstore_open(the_env(), path_of("locked"), &err, errstr,
                             sizeof(errstr));
    cr_assert_null(again);
    cr_assert_eq(err, MPH_ERR_STORE);
    cr_assert(strstr(errstr, path_of("locked")) != NULL, "%s", errstr);
    cr_assert(strstr(errstr, "another worker process is using it") != NULL,
              "%s", errstr);
    mph__rstore_close(st);
}

Test(store_rocksdb, uncreatable_directory_is_a_clear_error)
{
    FILE *f = fopen(path_of("plainfile"), "w");
    mph_err_t err = MPH_OK;
    mph__rstore_t *st;

    cr_assert_not_null(f);
    fclose(f);
    st = mph__rstore_open(the_env(), path_of("plainfile/table/w0"), &err,
                          errstr, sizeof(errstr));
    cr_assert_null(st);
    cr_assert_eq(err, MPH_ERR_IO);
    cr_assert(strstr(errstr, "cannot create state directory") != NULL, "%s",
              errstr);
    cr_assert(strstr(errstr, path_of("plainfile/table/w0")) != NULL, "%s",
              errstr);
    cr_assert(strstr(errstr, "Not a directory") != NULL, "%s", errstr);

    st = mph__rstore_open(the_env(), path_of("plainfile"), &err, errstr,
                          sizeof(errstr));
    cr_assert_null(st);
    cr_assert_eq(err, MPH_ERR_IO);
    cr_assert(strstr(errstr, "not a directory") != NULL, "%s", errstr);

    st = mph__rstore_open(the_env(), "", &err, errstr, sizeof(errstr));
    cr_assert_null(st);
    cr_assert_eq(err, MPH_ERR_INVALID);
}

/* A user key shaped like the reserved checkpoint key stays a user key: user
 * keys cannot reach the reserved namespace. */
Test(store_rocksdb, user_keys_cannot_forge_a_checkpoint)
{
    mph__rstore_t *st = open_at("forge");
    const unsigned char looks_like_ckpt[] = {0x00, 'c'};
    mph__rstore_checkpoint_t got;

    put1(st, 9, looks_like_ckpt, sizeof(looks_like_ckpt), S("not-a-ckpt"));
    cr_assert_eq(
        mph__rstore_checkpoint_get(st, 9, &got, errstr, sizeof(errstr)),
        MPH_ERR_NOENT);
    cr_assert_eq(count_of(st, 9), 1);
    mph__rstore_close(st);
}

/* A write that finds the disk full reports MPH_ERR_DISK_FULL with RocksDB's
 * reason. The full disk is a 1 MiB tmpfs mounted in a private mount
 * namespace of this test process (gone when it exits); without the
 * privilege for that the test is skipped. */
/* Mounts a tmpfs of size at path_of(name) in a private mount namespace of
 * this test process, or skips the test without the privilege for it. */
static void small_disk(const char *name, const char *size, char *mnt,
                       size_t mntlen)
{
    char opts[32];

    snprintf(mnt, mntlen, "%s", path_of(name));
    snprintf(opts, sizeof(opts), "size=%s", size);
    cr_assert_eq(mkdir(mnt, 0755), 0);
    if (unshare(CLONE_NEWNS) != 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", mnt, "tmpfs", 0, opts) != 0) {
        int e = errno;
        teardown(); /* a skipped test does not reach .fini */
        cr_skip_test("needs CAP_SYS_ADMIN to mount a small tmpfs: %s",
                     strerror(e));
    }
}

Test(store_rocksdb, full_disk_is_reported_as_disk_full)
{
    static char val[4096];
    char mnt[256];
    mph__rstore_t *st;
    mph__rstore_batch_t *b;
    mph_err_t rc = MPH_OK;
    int i;

    small_disk("small", "1m", mnt, sizeof(mnt));
    st = open_at("small/t/w0");
    b = mph__rstore_batch_new();
    memset(val, 'x', sizeof(val));
    for (i = 0; i < 1000 && rc == MPH_OK; i++) {
        char key[32];
        int kl = snprintf(key, sizeof(key), "k%d", i);
        mph__rstore_batch_clear(b);
        mph__rstore_batch_put(b, 0, key, (size_t)kl, val, sizeof(val));
        rc = mph__rstore_write(st, b, errstr, sizeof(errstr));
    }
    cr_assert_eq(rc, MPH_ERR_DISK_FULL, "after %d writes: %d %s", i, rc,
                 errstr);
    cr_assert(strstr(errstr, "No space left on device") != NULL, "%s", errstr);
    cr_assert(strstr(errstr, path_of("small/t/w0")) != NULL, "%s", errstr);
    mph__rstore_batch_destroy(b);
    mph__rstore_close(st);
    cr_assert_eq(umount2(mnt, MNT_DETACH), 0);
}

/* After a write found the disk full, RocksDB refuses every write even once
 * space is free again; a reopen in place brings the store back with every
 * commit that had succeeded, and the handle stays valid. */
Test(store_rocksdb, reopen_after_full_disk_resumes_writes)
{
    static char val[4096];
    char mnt[256], filler[300], key[32];
    mph__rstore_t *st;
    mph__rstore_batch_t *b;
    mph__rstore_checkpoint_t cp = {0, 1};
    mph_err_t rc = MPH_OK;
    int i, ok = 0;
    FILE *f;

    small_disk("small", "3m", mnt, sizeof(mnt));
    /* Most of the disk goes to a file this test can delete later. */
    snprintf(filler, sizeof(filler), "%s/filler", mnt);
    f = fopen(filler, "wb");
    cr_assert_not_null(f);
    memset(val, 'f', sizeof(val));
    for (i = 0; i < 256; i++)
        cr_assert_eq(fwrite(val, 1, sizeof(val), f), sizeof(val));
    cr_assert_eq(fclose(f), 0);

    st = open_at("small/t/w0");
    b = mph__rstore_batch_new();
    memset(val, 'x', sizeof(val));
    for (i = 0; i < 2000 && rc == MPH_OK; i++) {
        int kl = snprintf(key, sizeof(key), "k%d", i);
        mph__rstore_batch_clear(b);
        mph__rstore_batch_put(b, 3, key, (size_t)kl, val, sizeof(val));
        cp.offset = i;
        mph__rstore_batch_checkpoint(b, 3, &cp);
        rc = mph__rstore_write(st, b, errstr, sizeof(errstr));
        if (rc == MPH_OK)
            ok = i + 1;
    }
    cr_assert_eq(rc, MPH_ERR_DISK_FULL, "after %d writes: %s", i, errstr);
    cr_assert(mph__rstore_failed(st));
    cr_assert_gt(ok, 0);

    /* Space is back, but the instance keeps its error. */
    cr_assert_eq(unlink(filler), 0);
    mph__rstore_batch_clear(b);
    mph__rstore_batch_put(b, 3, S("after"), S("free"));
    cr_assert_neq(mph__rstore_write(st, b, errstr, sizeof(errstr)), MPH_OK,
                  "RocksDB accepted a write after its background error: "
                  "the reopen would not be needed");

    uint64_t gen = mph__rstore_gen(st);
    rc = mph__rstore_reopen(st, errstr, sizeof(errstr));
    cr_assert_eq(rc, MPH_OK, "%s", errstr);
    cr_assert_not(mph__rstore_failed(st));
    cr_assert_gt(mph__rstore_gen(st), gen);
    cr_assert_eq(mph__rstore_write(st, b, errstr, sizeof(errstr)), MPH_OK,
                 "%s", errstr);

    /* Every write that succeeded before the disk filled is there. */
    cr_assert_eq(count_of(st, 3), (uint64_t)ok + 1);
    cr_assert_eq(mph__rstore_checkpoint_get(st, 3, &cp, errstr,
                                            sizeof(errstr)),
                 MPH_OK, "%s", errstr);
    cr_assert_eq(cp.offset, ok - 1);
    mph__rstore_batch_destroy(b);
    mph__rstore_close(st);
    cr_assert_eq(umount2(mnt, MNT_DETACH), 0);
}

/* A reopen may lose WAL-less recovery writes that were not flushed yet, so
 * a recovery that began before it cannot finish (nor write on) as if
 * nothing happened. */
Test(store_rocksdb, bulk_writes_refused_across_a_reopen)
{
    mph__rstore_t *st = open_at("t/w0");
    mph__rstore_batch_t *b = mph__rstore_batch_new();
    uint64_t gen = mph__rstore_gen(st);

    mph__rstore_batch_put(b, 2, S("a"), S("1"));
    cr_assert_eq(mph__rstore_write_bulk(st, b, gen, errstr, sizeof(errstr)),
                 MPH_OK, "%s", errstr);
    cr_assert_eq(mph__rstore_reopen(st, errstr, sizeof(errstr)), MPH_OK,
                 "%s", errstr);
    cr_assert_eq(mph__rstore_write_bulk(st, b, gen, errstr, sizeof(errstr)),
                 MPH_ERR_STORE);
    cr_assert_eq(mph__rstore_bulk_finish(st, gen, errstr, sizeof(errstr)),
                 MPH_ERR_STORE);
    cr_assert(strstr(errstr, "reopened") != NULL, "%s", errstr);
    /* A recovery that starts now works. */
    gen = mph__rstore_gen(st);
    cr_assert_eq(mph__rstore_write_bulk(st, b, gen, errstr, sizeof(errstr)),
                 MPH_OK, "%s", errstr);
    cr_assert_eq(mph__rstore_bulk_finish(st, gen, errstr, sizeof(errstr)),
                 MPH_OK, "%s", errstr);
    mph__rstore_batch_destroy(b);
    mph__rstore_close(st);
}
