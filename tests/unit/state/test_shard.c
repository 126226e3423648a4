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

/* A delete of a key that is on disk but not in memory (never read since
 * the shard was made, e.g. after a restart) reaches the disk, whatever the
 * cache bound. */
static void delete_unread(size_t cache_max_keys)
{
    visit_t v = {0};
    mph__shard_t *sh = mph__shard_new(0, 4, rs, cache_max_keys);
    cr_assert_eq(mph__shard_set(sh, S("k"), S("1")), MPH_OK);
    cr_assert_str_eq(commit(sh, &v), "k=1");
    mph__shard_destroy(sh);

    sh = mph__shard_new(0, 4, rs, cache_max_keys);
    cr_assert_eq(mph__shard_delete(sh, S("k")), MPH_OK);
    cr_assert_eq(get(sh, "k"), MPH_ERR_NOENT, "deleted, not read from disk");
    cr_assert_str_eq(commit(sh, &v), "k-");
    mph__shard_destroy(sh);
    sh = mph__shard_new(0, 4, rs, cache_max_keys);
    cr_assert_eq(get(sh, "k"), MPH_ERR_NOENT, "gone from disk");
    mph__shard_destroy(sh);
}

Test(shard, rocksdb_shard_deletes_keys_it_never_read)
{
    delete_unread(0);
}

Test(shard, rocksdb_cache_deletes_keys_it_never_read)
{
    delete_unread(16);
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

/* ------------------------------------------------------------------------
 * Rollback (exactly_once: an aborted transaction)
 * ------------------------------------------------------------------------ */

/* The value of k as a string, or "-" when the shard has none. */
static const char *val_of(mph__shard_t *sh, const char *k)
{
    static char out[256];
    const void *v;
    size_t vl;
    mph_err_t err = mph__shard_get(sh, S(k), &v, &vl);
    if (err == MPH_ERR_NOENT)
        return "-";
    cr_assert_eq(err, MPH_OK, "get %s: %s", k, mph_err_str(err));
    cr_assert_lt(vl, sizeof out);
    memcpy(out, v, vl);
    out[vl] = 0;
    return out;
}

static mph_err_t cat_visit(const void *key, size_t klen, const void *val,
                           size_t vlen, void *opaque)
{
    char *out = opaque;
    size_t n = strlen(out);
    snprintf(out + n, 256 - n, "%s%.*s=%.*s", n ? " " : "", (int)klen,
             (const char *)key, (int)vlen, (const char *)val);
    return MPH_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every key the shard holds, as mph__shard_foreach visits them, sorted
 * (a memory shard visits in no particular order). */
static const char *all_of(mph__shard_t *sh)
{
    static char out[256];
    char raw[256] = "", *items[32], *save = NULL;
    size_t n = 0;
    cr_assert_eq(mph__shard_foreach(sh, cat_visit, raw), MPH_OK);
    for (char *t = strtok_r(raw, " ", &save); t;
         t = strtok_r(NULL, " ", &save)) {
        cr_assert_lt(n, 32);
        items[n++] = t;
    }
    qsort(items, n, sizeof items[0], cmp_str);
    out[0] = 0;
    for (size_t i = 0; i < n; i++) {
        strcat(out, i ? " " : "");
        strcat(out, items[i]);
    }
    return out;
}

static int ext_frees;
static void count_ext_free(void *p)
{
    ext_frees++;
    free(p);
}

/* The same interval on a memory shard and on rocksdb shards (with an
 * unbounded and a bounded cache): after the rollback every read, the
 * iteration and the next commit see the committed state. */
static void rollback_interval(mph__shard_t *sh)
{
    visit_t v = {0};
    cr_assert_eq(mph__shard_set_undo(sh, true), MPH_OK);

    cr_assert_eq(mph__shard_set(sh, S("a"), S("1")), MPH_OK);
    cr_assert_eq(mph__shard_set(sh, S("b"), S("1")), MPH_OK);
    cr_assert_eq(mph__shard_set(sh, S("c"), S("1")), MPH_OK);
    cr_assert_str_eq(commit(sh, &v), "a=1 b=1 c=1");
    cr_assert_eq(mph__shard_set(sh, S("a"), S("2")), MPH_OK);
    cr_assert_str_eq(commit(sh, &v), "a=2");

    /* The interval that aborts. */
    cr_assert_eq(mph__shard_set(sh, S("a"), S("3")), MPH_OK);
    cr_assert_eq(mph__shard_delete(sh, S("b")), MPH_OK);
    cr_assert_eq(mph__shard_set(sh, S("c"), S("3")), MPH_OK);
    cr_assert_eq(mph__shard_delete(sh, S("c")), MPH_OK);
    cr_assert_eq(get(sh, "d"), MPH_ERR_NOENT);
    cr_assert_eq(mph__shard_set(sh, S("d"), S("3")), MPH_OK);
    cr_assert_eq(mph__shard_set(sh, S("e"), S("3")), MPH_OK);
    cr_assert_str_eq(val_of(sh, "b"), "-");
    cr_assert_str_eq(all_of(sh), "a=3 d=3 e=3");

    cr_assert_eq(mph__shard_rollback(sh), MPH_OK);
    cr_assert_eq(mph__shard_dirty(sh), 0);
    cr_assert_str_eq(val_of(sh, "a"), "2");
    cr_assert_str_eq(val_of(sh, "b"), "1", "deleted keys come back");
    cr_assert_str_eq(val_of(sh, "c"), "1");
    cr_assert_str_eq(val_of(sh, "d"), "-");
    cr_assert_str_eq(val_of(sh, "e"), "-");
    cr_assert_str_eq(all_of(sh), "a=2 b=1 c=1");
    cr_assert_str_eq(commit(sh, &v), "", "nothing left to commit");

    /* A failed commit keeps the dirty set; rollback then undoes it. */
    visit_t failed = {0};
    cr_assert_eq(mph__shard_set(sh, S("a"), S("4")), MPH_OK);
    cr_assert_eq(mph__shard_delete(sh, S("c")), MPH_OK);
    cr_assert_eq(mph__mstore_dirty_foreach(sh->mem, record_visit, &failed),
                 MPH_OK);
    cr_assert_str_eq(failed.seen, "a=4 c-");
    mph__mstore_snapshot_begin(sh->mem);
    sh->in_flush = true;
    cr_assert_eq(mph__shard_rollback(sh), MPH_ERR_STATE, "in a flush");
    cr_assert_str_eq(val_of(sh, "a"), "4",
                     "a refused rollback changes nothing");
    mph__mstore_snapshot_abort(sh->mem); /* the store write failed */
    sh->in_flush = false;
    cr_assert_eq(mph__shard_rollback(sh), MPH_OK);
    cr_assert_str_eq(all_of(sh), "a=2 b=1 c=1");

    /* Work goes on: the next interval commits normally. */
    cr_assert_eq(mph__shard_set(sh, S("b"), S("5")), MPH_OK);
    cr_assert_str_eq(commit(sh, &v), "b=5");
    cr_assert_str_eq(all_of(sh), "a=2 b=5 c=1");
}

Test(shard, memory_shard_rolls_back_to_the_last_commit)
{
    mph__shard_t *sh = mph__shard_new(0, 1, NULL, 0);
    cr_assert_not_null(sh);
    rollback_interval(sh);
    mph__shard_destroy(sh);
}

Test(shard, rocksdb_shard_rolls_back_to_the_last_commit)
{
    mph__shard_t *sh = mph__shard_new(0, 1, rs, 0);
    cr_assert_not_null(sh);
    rollback_interval(sh);
    /* What is on disk is the committed state, read by a fresh shard. */
    mph__shard_t *again = mph__shard_new(0, 1, rs, 0);
    cr_assert_str_eq(all_of(again), "a=2 b=5 c=1");
    mph__shard_destroy(again);
    mph__shard_destroy(sh);
}

Test(shard, rocksdb_cache_rolls_back_to_the_last_commit)
{
    mph__shard_t *sh = mph__shard_new(0, 1, rs, 2);
    cr_assert_not_null(sh);
    rollback_interval(sh);
    mph__shard_destroy(sh);
}

Test(shard, memory_shard_without_undo_refuses_rollback)
{
    mph__shard_t *sh = mph__shard_new(0, 0, NULL, 0);
    cr_assert_eq(mph__shard_set(sh, S("a"), S("1")), MPH_OK);
    cr_assert_eq(mph__shard_rollback(sh), MPH_ERR_STATE);
    cr_assert_str_eq(val_of(sh, "a"), "1");
    cr_assert_eq(mph__shard_dirty(sh), 1);
    /* Undo mode needs a clean shard, memory or rocksdb. */
    cr_assert_eq(mph__shard_set_undo(sh, true), MPH_ERR_STATE);
    mph__shard_t *rsh = mph__shard_new(0, 0, rs, 0);
    cr_assert_eq(mph__shard_set(rsh, S("a"), S("1")), MPH_OK);
    cr_assert_eq(mph__shard_set_undo(rsh, true), MPH_ERR_STATE);
    cr_assert_eq(mph__shard_rollback(rsh), MPH_OK, "a cache needs no undo");
    cr_assert_str_eq(val_of(rsh, "a"), "-");
    mph__shard_destroy(rsh);
    mph__shard_destroy(sh);
}

/* Rollback drops what is derived from the contents: ext (its owner
 * rebuilds it on next use) and the remembered RocksDB miss. A refused
 * rollback keeps them. */
Test(shard, rollback_drops_derived_state)
{
    mph__shard_t *shards[2] = {mph__shard_new(0, 2, NULL, 0),
                               mph__shard_new(0, 2, rs, 0)};
    for (int i = 0; i < 2; i++) {
        mph__shard_t *sh = shards[i];
        cr_assert_eq(mph__shard_set_undo(sh, true), MPH_OK);
        ext_frees = 0;
        sh->ext = malloc(16);
        sh->ext_free = count_ext_free;
        cr_assert_eq(mph__shard_set(sh, S("a"), S("1")), MPH_OK);

        sh->in_flush = true;
        cr_assert_eq(mph__shard_rollback(sh), MPH_ERR_STATE);
        cr_assert_not_null(sh->ext);
        cr_assert_eq(ext_frees, 0);
        sh->in_flush = false;

        cr_assert_eq(get(sh, "m"), MPH_ERR_NOENT);
        cr_assert_eq(mph__shard_rollback(sh), MPH_OK);
        cr_assert_null(sh->ext);
        cr_assert_eq(ext_frees, 1);
        cr_assert_not(sh->miss_valid);
        cr_assert_eq(mph__shard_rollback(sh), MPH_OK, "ext NULL is fine");
        cr_assert_eq(ext_frees, 1);
        mph__shard_destroy(sh);
    }
}
