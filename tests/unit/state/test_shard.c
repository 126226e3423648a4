/* Tests of table shards (state/shard.c) in front of RocksDB: which
 * tombstones a commit has to write. Each test works in its own temporary
 * directory under /tmp, removed when it ends. */
#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dirty_visit.h"
#include "state/shard.h"

#define S(x) (x), strlen(x)

static char tmpdir[64];
static char errstr[512];
static mph__rstore_env_t *env;
static mph__rstore_t *rs;

static int rm_one(const char *path, const struct stat *sb, int flag,
                  struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void setup(void)
{
    mph_err_t err;
    strcpy(tmpdir, "/tmp/mph_shard_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    env = mph__rstore_env_new(NULL, errstr, sizeof errstr);
    cr_assert_not_null(env, "%s", errstr);
    rs = mph__rstore_open(env, tmpdir, &err, errstr, sizeof errstr);
    cr_assert_not_null(rs, "%s", errstr);
}

static void teardown(void)
{
    mph__rstore_close(rs);
    mph__rstore_env_destroy(env);
    nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(shard, .init = setup, .fini = teardown, .timeout = 30);

/* The WriteBatch of one shard's commit. */
typedef struct batch_ctx {
    mph__rstore_batch_t *b;
    uint32_t p;
} batch_ctx_t;

static mph_err_t batch_one(void *opaque, const void *key, size_t klen,
                           const void *val, size_t vlen, bool deleted)
{
    batch_ctx_t *c = opaque;
    return deleted ? mph__rstore_batch_delete(c->b, c->p, key, klen)
                   : mph__rstore_batch_put(c->b, c->p, key, klen, val, vlen);
}

/* A commit as the table flush makes it: visit the dirty set into one
 * WriteBatch, write it, and turn the keys clean. Returns what it saw. */
static const char *commit(mph__shard_t *sh, visit_t *v)
{
    batch_ctx_t c = {mph__rstore_batch_new(), sh->partition};
    v->seen[0] = 0;
    v->next = batch_one;
    v->next_opaque = &c;
    cr_assert_eq(mph__mstore_dirty_foreach(sh->mem, record_visit, v), MPH_OK);
    mph__mstore_snapshot_begin(sh->mem);
    cr_assert_eq(mph__rstore_write(rs, c.b, errstr, sizeof errstr), MPH_OK,
                 "%s", errstr);
    mph__rstore_batch_destroy(c.b);
    mph__mstore_snapshot_commit(sh->mem);
    return v->seen;
}

static mph_err_t get(mph__shard_t *sh, const char *k)
{
    const void *v;
    size_t vl;
    return mph__shard_get(sh, S(k), &v, &vl);
}

static void shard_tombstones(size_t cache_max_keys)
{
    visit_t v = {0};
    mph__shard_t *sh = mph__shard_new(0, 3, rs, cache_max_keys);
    cr_assert_not_null(sh);

    /* Read as absent from memory and disk, then created and deleted within
     * one commit interval: no tombstone for the changelog or RocksDB. */
    cr_assert_eq(get(sh, "a"), MPH_ERR_NOENT);
    cr_assert_eq(mph__shard_set(sh, S("a"), S("1")), MPH_OK);
    cr_assert_eq(mph__shard_delete(sh, S("a")), MPH_OK);
    cr_assert_str_eq(commit(sh, &v), "");

    /* On disk: its delete is written. */
    cr_assert_eq(get(sh, "b"), MPH_ERR_NOENT);
    cr_assert_eq(mph__shard_set(sh, S("b"), S("1")), MPH_OK);
    cr_assert_str_eq(commit(sh, &v), "b=1");
    mph__shard_t *again = mph__shard_new(0, 3, rs, cache_max_keys);
    cr_assert_eq(get(again, "b"), MPH_OK, "b is on disk");
    cr_assert_eq(mph__shard_delete(again, S("b")), MPH_OK);
    cr_assert_str_eq(commit(again, &v), "b-");
    mph__shard_destroy(again);

    /* Set without a read first: the shard cannot know, the tombstone is
     * written. */
    cr_assert_eq(mph__shard_set(sh, S("c"), S("1")), MPH_OK);
    cr_assert_eq(mph__shard_delete(sh, S("c")), MPH_OK);
    cr_assert_str_eq(commit(sh, &v), "c-");

    /* The miss is remembered for its key only, until the next write. */
    cr_assert_eq(get(sh, "d"), MPH_ERR_NOENT);
    cr_assert_eq(mph__shard_set(sh, S("e"), S("1")), MPH_OK);
    cr_assert_eq(mph__shard_set(sh, S("d"), S("1")), MPH_OK);
    cr_assert_eq(mph__shard_delete(sh, S("d")), MPH_OK);
    cr_assert_eq(mph__shard_delete(sh, S("e")), MPH_OK);
    cr_assert_str_eq(commit(sh, &v), "e- d-");
    mph__shard_destroy(sh);
}

Test(shard, rocksdb_shard_skips_tombstones_of_keys_never_written)
{
    shard_tombstones(0);
}

Test(shard, rocksdb_cache_skips_tombstones_of_keys_never_written)
{
    shard_tombstones(16);
}

Test(shard, memory_shard_skips_tombstones_of_keys_never_written)
{
    visit_t v = {0};
    mph__shard_t *sh = mph__shard_new(0, 0, NULL, 0);
    cr_assert_eq(mph__shard_set(sh, S("a"), S("1")), MPH_OK);
    cr_assert_eq(mph__shard_delete(sh, S("a")), MPH_OK);
    v.seen[0] = 0;
    cr_assert_eq(mph__mstore_dirty_foreach(sh->mem, record_visit, &v), MPH_OK);
    cr_assert_str_eq(v.seen, "");
    mph__shard_destroy(sh);
}
