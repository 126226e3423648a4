/* Tests of the per-shard in-memory map (state/store_memory.c). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dirty_visit.h"
#include "state/store_memory.h"

#define S(x) (x), strlen(x)

static int64_t get_i64(mph__mstore_t *ms, const char *k)
{
    const void *v;
    size_t n;
    int64_t out;

    cr_assert_eq(mph__mstore_get(ms, S(k), &v, &n), MPH_OK, "missing %s", k);
    cr_assert_eq(n, sizeof(out));
    memcpy(&out, v, sizeof(out));
    return out;
}

static void put_i64(mph__mstore_t *ms, const char *k, int64_t v)
{
    cr_assert_eq(mph__mstore_put(ms, S(k), &v, sizeof(v)), MPH_OK);
}

static void assert_str(mph__mstore_t *ms, const void *k, size_t klen,
                       const char *want)
{
    const void *v;
    size_t n;

    cr_assert_eq(mph__mstore_get(ms, k, klen, &v, &n), MPH_OK);
    cr_assert_eq(n, strlen(want));
    cr_assert_eq(memcmp(v, want, n), 0);
}

Test(store_memory, empty_map_is_small_and_empty, .timeout = 10)
{
    mph__mstore_t *ms = mph__mstore_new();
    mph__mstore_iter_t it;
    const void *k, *v;
    size_t kl, vl;

    cr_assert_not_null(ms);
    cr_assert_eq(mph__mstore_count(ms), 0);
    cr_assert_eq(mph__mstore_dirty_count(ms), 0);
    cr_assert_lt(mph__mstore_memory(ms), 1024, "empty map uses %zu bytes",
                 mph__mstore_memory(ms));
    cr_assert_eq(mph__mstore_lookup(ms, S("a"), NULL, NULL),
                 MPH__MSTORE_ABSENT);
    cr_assert_not(mph__mstore_contains(ms, S("a")));
    mph__mstore_iter_init(&it, ms);
    cr_assert_not(mph__mstore_iter_next(&it, &k, &kl, &v, &vl));
    /* Deleting from an empty whole map records nothing. */
    cr_assert_eq(mph__mstore_delete(ms, S("a")), MPH_OK);
    cr_assert_eq(mph__mstore_dirty_count(ms), 0);
    mph__mstore_destroy(ms);
    mph__mstore_destroy(NULL);
}

Test(store_memory, put_get_overwrite_delete, .timeout = 10)
{
    mph__mstore_t *ms = mph__mstore_new();

    cr_assert_eq(mph__mstore_put(ms, S("apple"), S("red")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("banana"), S("yellow")), MPH_OK);
    cr_assert_eq(mph__mstore_count(ms), 2);
    assert_str(ms, S("apple"), "red");
    assert_str(ms, S("banana"), "yellow");
    cr_assert(mph__mstore_contains(ms, S("apple")));
    cr_assert_not(mph__mstore_contains(ms, S("cherry")));
    cr_assert_eq(mph__mstore_get(ms, S("cherry"), NULL, NULL), MPH_ERR_NOENT);

    /* Overwrite: short to long (heap) and back to short (inline). */
    cr_assert_eq(
        mph__mstore_put(ms, S("apple"), S("a considerably longer red value")),
        MPH_OK);
    assert_str(ms, S("apple"), "a considerably longer red value");
    cr_assert_eq(mph__mstore_put(ms, S("apple"), S("green")), MPH_OK);
    assert_str(ms, S("apple"), "green");
    cr_assert_eq(mph__mstore_count(ms), 2);

    cr_assert_eq(mph__mstore_delete(ms, S("apple")), MPH_OK);
    cr_assert_eq(mph__mstore_count(ms), 1);
    cr_assert_not(mph__mstore_contains(ms, S("apple")));
    cr_assert_eq(mph__mstore_lookup(ms, S("apple"), NULL, NULL),
                 MPH__MSTORE_DELETED);
    /* A put after a delete revives the key. */
    cr_assert_eq(mph__mstore_put(ms, S("apple"), S("again")), MPH_OK);
    assert_str(ms, S("apple"), "again");
    cr_assert_eq(mph__mstore_count(ms), 2);

    mph__mstore_clear(ms);
    cr_assert_eq(mph__mstore_count(ms), 0);
    cr_assert_eq(mph__mstore_dirty_count(ms), 0);
    cr_assert_not(mph__mstore_contains(ms, S("banana")));
    cr_assert_eq(mph__mstore_put(ms, S("after"), S("clear")), MPH_OK);
    assert_str(ms, S("after"), "clear");
    mph__mstore_destroy(ms);
}

Test(store_memory, binary_empty_and_long_keys, .timeout = 10)
{
    mph__mstore_t *ms = mph__mstore_new();
    static unsigned char big[MPH__MSTORE_KEY_MAX + 1];
    const unsigned char k0[] = {0x00}, k00[] = {0x00, 0x00},
                        kff[] = {0xff, 0x00, 0xff};
    const void *v;
    size_t n;

    memset(big, 'k', sizeof(big));
    cr_assert_eq(mph__mstore_put(ms, "", 0, S("empty")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, NULL, 0, S("still empty")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, k0, sizeof(k0), S("zero")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, k00, sizeof(k00), S("zerozero")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, kff, sizeof(kff), "", 0), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, big, MPH__MSTORE_KEY_MAX, S("max")),
                 MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, big, sizeof(big), S("x")), MPH_ERR_RANGE);
    cr_assert_eq(mph__mstore_count(ms), 5);
    assert_str(ms, "", 0, "still empty");
    assert_str(ms, k0, sizeof(k0), "zero");
    assert_str(ms, k00, sizeof(k00), "zerozero");
    assert_str(ms, big, MPH__MSTORE_KEY_MAX, "max");
    cr_assert_eq(mph__mstore_get(ms, kff, sizeof(kff), &v, &n), MPH_OK);
    cr_assert_eq(n, 0);
    cr_assert_not(mph__mstore_contains(ms, big, MPH__MSTORE_KEY_MAX - 1));
    mph__mstore_destroy(ms);
}

/* A key pointer taken from the map itself, looked up with another length,
 * must find the other key, not the stored one. */
Test(store_memory, lookup_with_own_key_pointer, .timeout = 10)
{
    mph__mstore_t *ms = mph__mstore_new();
    mph__mstore_iter_t it;
    const void *k, *v;
    size_t kl, vl;

    cr_assert_eq(mph__mstore_put(ms, S("abcdef"), S("long")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("abc"), S("short")), MPH_OK);
    mph__mstore_iter_init(&it, ms);
    while (mph__mstore_iter_next(&it, &k, &kl, &v, &vl)) {
        if (kl == 6)
            break;
    }
    cr_assert_eq(kl, 6);
    assert_str(ms, k, 3, "short");
    assert_str(ms, k, 6, "long");
    cr_assert_not(mph__mstore_contains(ms, k, 4));
    /* Writing a value taken from the map into the same key. */
    cr_assert_eq(mph__mstore_put(ms, S("big"),
                                 S("0123456789abcdefghijklmnopqrstuvwxyz")),
                 MPH_OK);
    cr_assert_eq(mph__mstore_get(ms, S("big"), &v, &vl), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("big"), v, 10), MPH_OK);
    assert_str(ms, S("big"), "0123456789");
    cr_assert_eq(mph__mstore_get(ms, S("big"), &v, &vl), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("big"), (const char *)v + 2, 5), MPH_OK);
    assert_str(ms, S("big"), "23456");
    mph__mstore_destroy(ms);
}

struct seen {
    int n;
    char keys[16][32];
    char vals[16][64];
    bool deleted[16];
};

static mph_err_t collect(void *opaque, const void *key, size_t klen,
                         const void *val, size_t vlen, bool deleted)
{
    struct seen *s = opaque;

    cr_assert_lt(s->n, 16);
    cr_assert_lt(klen, sizeof(s->keys[0]));
    cr_assert_lt(vlen, sizeof(s->vals[0]));
    memcpy(s->keys[s->n], key, klen);
    s->keys[s->n][klen] = '\0';
    if (deleted) {
        cr_assert_null(val);
        cr_assert_eq(vlen, 0);
    } else {
        memcpy(s->vals[s->n], val, vlen);
        s->vals[s->n][vlen] = '\0';
    }
    s->deleted[s->n] = deleted;
    s->n++;
    return MPH_OK;
}

static int find_seen(const struct seen *s, const char *k)
{
    int i, at = -1;

    for (i = 0; i < s->n; i++) {
        if (strcmp(s->keys[i], k) == 0) {
            cr_assert_eq(at, -1, "key %s visited twice", k);
            at = i;
        }
    }
    return at;
}

Test(store_memory, drain_coalesces_latest_value_wins, .timeout = 10)
{
    mph__mstore_t *ms = mph__mstore_new();
    struct seen s = {0};
    int a, b, c;

    cr_assert_eq(mph__mstore_put(ms, S("b"), S("old b")), MPH_OK);
    cr_assert_eq(mph__mstore_drain_dirty(ms, collect, &s), MPH_OK);
    cr_assert_eq(s.n, 1);
    memset(&s, 0, sizeof(s));

    /* set a, set a, delete b, set b; set c, delete c */
    cr_assert_eq(mph__mstore_put(ms, S("a"), S("a1")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("a"), S("a2")), MPH_OK);
    cr_assert_eq(mph__mstore_delete(ms, S("b")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("b"), S("b2")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("c"), S("c1")), MPH_OK);
    cr_assert_eq(mph__mstore_delete(ms, S("c")), MPH_OK);
    cr_assert_eq(mph__mstore_dirty_count(ms), 3);
    cr_assert_eq(mph__mstore_count(ms), 2);

    cr_assert_eq(mph__mstore_drain_dirty(ms, collect, &s), MPH_OK);
    cr_assert_eq(s.n, 3);
    a = find_seen(&s, "a");
    b = find_seen(&s, "b");
    c = find_seen(&s, "c");
    cr_assert(a >= 0 && b >= 0 && c >= 0);
    cr_assert_str_eq(s.vals[a], "a2");
    cr_assert_not(s.deleted[a]);
    cr_assert_str_eq(s.vals[b], "b2");
    cr_assert_not(s.deleted[b]);
    cr_assert(s.deleted[c]);

    /* After the drain: nothing dirty, tombstone gone, values kept. */
    cr_assert_eq(mph__mstore_dirty_count(ms), 0);
    cr_assert_eq(mph__mstore_lookup(ms, S("c"), NULL, NULL),
                 MPH__MSTORE_ABSENT);
    assert_str(ms, S("a"), "a2");
    assert_str(ms, S("b"), "b2");
    memset(&s, 0, sizeof(s));
    cr_assert_eq(mph__mstore_drain_dirty(ms, collect, &s), MPH_OK);
    cr_assert_eq(s.n, 0);
    mph__mstore_destroy(ms);
}

static mph_err_t fail_second(void *opaque, const void *key, size_t klen,
                             const void *val, size_t vlen, bool deleted)
{
    int *calls = opaque;

    (void)key, (void)klen, (void)val, (void)vlen, (void)deleted;
    return ++*calls == 2 ? MPH_ERR_STORE : MPH_OK;
}

Test(store_memory, failed_drain_keeps_dirty_set, .timeout = 10)
{
    mph__mstore_t *ms = mph__mstore_new();
    struct seen s = {0};
    int calls = 0;

    cr_assert_eq(mph__mstore_put(ms, S("x"), S("1")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("y"), S("2")), MPH_OK);
    cr_assert_eq(mph__mstore_delete(ms, S("x")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("z"), S("3")), MPH_OK);
    cr_assert_eq(mph__mstore_drain_dirty(ms, fail_second, &calls),
                 MPH_ERR_STORE);
    cr_assert_eq(calls, 2);
    cr_assert_eq(mph__mstore_dirty_count(ms), 3);
    cr_assert_eq(mph__mstore_lookup(ms, S("x"), NULL, NULL),
                 MPH__MSTORE_DELETED);
    /* foreach alone changes nothing; clear then empties the set. */
    cr_assert_eq(mph__mstore_dirty_foreach(ms, collect, &s), MPH_OK);
    cr_assert_eq(s.n, 3);
    cr_assert_eq(mph__mstore_dirty_count(ms), 3);
    mph__mstore_dirty_clear(ms);
    cr_assert_eq(mph__mstore_dirty_count(ms), 0);
    cr_assert_eq(mph__mstore_lookup(ms, S("x"), NULL, NULL),
                 MPH__MSTORE_ABSENT);
    mph__mstore_destroy(ms);
}

Test(store_memory, cache_delete_of_unknown_key_is_tombstone, .timeout = 10)
{
    mph__mstore_t *ms = mph__mstore_new_cache(0, 0);
    struct seen s = {0};

    cr_assert_eq(mph__mstore_delete(ms, S("maybe-in-rocksdb")), MPH_OK);
    cr_assert_eq(mph__mstore_lookup(ms, S("maybe-in-rocksdb"), NULL, NULL),
                 MPH__MSTORE_DELETED);
    cr_assert_eq(mph__mstore_count(ms), 0);
    cr_assert_eq(mph__mstore_dirty_count(ms), 1);
    cr_assert_eq(mph__mstore_drain_dirty(ms, collect, &s), MPH_OK);
    cr_assert_eq(s.n, 1);
    cr_assert(s.deleted[0]);
    cr_assert_str_eq(s.keys[0], "maybe-in-rocksdb");
    cr_assert_eq(mph__mstore_lookup(ms, S("maybe-in-rocksdb"), NULL, NULL),
                 MPH__MSTORE_ABSENT);
    mph__mstore_destroy(ms);
}

Test(store_memory, fill_and_forget_are_clean, .timeout = 10)
{
    mph__mstore_t *ms = mph__mstore_new_cache(0, 0);

    cr_assert_eq(mph__mstore_fill(ms, S("k"), S("from-disk")), MPH_OK);
    cr_assert_eq(mph__mstore_dirty_count(ms), 0);
    assert_str(ms, S("k"), "from-disk");
    cr_assert_eq(mph__mstore_fill(ms, S("k"), S("newer-from-disk")), MPH_OK);
    assert_str(ms, S("k"), "newer-from-disk");

    /* A dirty value is newer than anything filled from behind. */
    cr_assert_eq(mph__mstore_put(ms, S("k"), S("mine")), MPH_OK);
    cr_assert_eq(mph__mstore_fill(ms, S("k"), S("stale")), MPH_OK);
    assert_str(ms, S("k"), "mine");
    cr_assert_eq(mph__mstore_forget(ms, S("k")), MPH_ERR_STATE);
    cr_assert_eq(mph__mstore_delete(ms, S("k")), MPH_OK);
    cr_assert_eq(mph__mstore_fill(ms, S("k"), S("stale")), MPH_OK);
    cr_assert_eq(mph__mstore_lookup(ms, S("k"), NULL, NULL),
                 MPH__MSTORE_DELETED);

    mph__mstore_dirty_clear(ms);
    cr_assert_eq(mph__mstore_fill(ms, S("j"), S("clean")), MPH_OK);
    cr_assert_eq(mph__mstore_forget(ms, S("j")), MPH_OK);
    cr_assert_eq(mph__mstore_forget(ms, S("never")), MPH_OK);
    cr_assert_eq(mph__mstore_count(ms), 0);
    cr_assert_eq(mph__mstore_dirty_count(ms), 0);
    mph__mstore_destroy(ms);
}

Test(store_memory, fixed_size_update_does_not_allocate, .timeout = 10)
{
    mph__mstore_t *ms = mph__mstore_new();
    const void *p1, *p2;
    uint64_t allocs;
    size_t mem, n;
    char big[200];
    int i;

    put_i64(ms, "counter", 0);
    memset(big, 'v', sizeof(big));
    cr_assert_eq(mph__mstore_put(ms, S("blob"), big, sizeof(big)), MPH_OK);
    for (i = 0; i < 64; i++) /* let the hash table settle */
        put_i64(ms, "counter", i);
    allocs = mph__mstore_alloc_count(ms);
    mem = mph__mstore_memory(ms);
    cr_assert_eq(mph__mstore_get(ms, S("counter"), &p1, &n), MPH_OK);
    for (i = 0; i < 100000; i++) {
        int64_t v = get_i64(ms, "counter");
        put_i64(ms, "counter", v + 1);
        big[0] = (char)i;
        cr_assert_eq(mph__mstore_put(ms, S("blob"), big, sizeof(big)), MPH_OK);
    }
    cr_assert_eq(get_i64(ms, "counter"), 63 + 100000);
    cr_assert_eq(mph__mstore_alloc_count(ms), allocs,
                 "in-place updates allocated %llu times",
                 (unsigned long long)(mph__mstore_alloc_count(ms) - allocs));
    cr_assert_eq(mph__mstore_memory(ms), mem);
    cr_assert_eq(mph__mstore_get(ms, S("counter"), &p2, &n), MPH_OK);
    cr_assert_eq(p1, p2);
    /* Draining and dirtying again does not allocate either. */
    mph__mstore_dirty_clear(ms);
    put_i64(ms, "counter", 1);
    cr_assert_eq(mph__mstore_alloc_count(ms), allocs);
    mph__mstore_destroy(ms);
}

Test(store_memory, iterate_present_keys, .timeout = 10)
{
    mph__mstore_t *ms = mph__mstore_new();
    static bool seen[1000];
    mph__mstore_iter_t it;
    const void *k, *v;
    size_t kl, vl;
    char key[32];
    int i, n = 0;

    for (i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "k%04d", i);
        put_i64(ms, key, i * 3);
    }
    for (i = 0; i < 1000; i += 100) {
        snprintf(key, sizeof(key), "k%04d", i);
        cr_assert_eq(mph__mstore_delete(ms, S(key)), MPH_OK);
    }
    mph__mstore_iter_init(&it, ms);
    while (mph__mstore_iter_next(&it, &k, &kl, &v, &vl)) {
        char digits[5];
        int idx;
        int64_t val;
        cr_assert_eq(kl, 5);
        memcpy(digits, (const char *)k + 1, 4);
        digits[4] = '\0';
        idx = atoi(digits);
        cr_assert(idx % 100 != 0, "deleted key %d iterated", idx);
        cr_assert_not(seen[idx]);
        seen[idx] = true;
        cr_assert_eq(vl, sizeof(val));
        memcpy(&val, v, sizeof(val));
        cr_assert_eq(val, idx * 3);
        n++;
    }
    cr_assert_eq(n, 990);
    cr_assert_eq(mph__mstore_count(ms), 990);
    mph__mstore_destroy(ms);
}

Test(store_memory, eviction_respects_entry_bound, .timeout = 10)
{
    mph__mstore_t *ms = mph__mstore_new_cache(100, 0);
    char key[32];
    int i, present = 0;

    for (i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "f%d", i);
        cr_assert_eq(mph__mstore_fill(ms, S(key), S("clean")), MPH_OK);
        cr_assert_leq(mph__mstore_count(ms), 100);
        /* Keep f0 hot: it must survive as least recently evicted. */
        cr_assert(mph__mstore_contains(ms, S("f0")));
    }
    cr_assert_eq(mph__mstore_count(ms), 100);
    for (i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "f%d", i);
        present += mph__mstore_contains(ms, S(key));
    }
    cr_assert_eq(present, 100);
    /* The most recent fills are what is left (and the hot key). */
    cr_assert(mph__mstore_contains(ms, S("f999")));
    cr_assert_not(mph__mstore_contains(ms, S("f500")));
    mph__mstore_destroy(ms);
}

Test(store_memory, eviction_never_drops_dirty_keys, .timeout = 10)
{
    mph__mstore_t *ms = mph__mstore_new_cache(100, 0);
    char key[32];
    int i;

    for (i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "clean%d", i);
        cr_assert_eq(mph__mstore_fill(ms, S(key), S("c")), MPH_OK);
    }
    for (i = 0; i < 300; i++) {
        snprintf(key, sizeof(key), "dirty%d", i);
        put_i64(ms, key, i);
    }
    for (i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "gone%d", i);
        cr_assert_eq(mph__mstore_delete(ms, S(key)), MPH_OK);
    }
    /* Over the bound with only dirty entries: all dirty ones stay. */
    cr_assert_eq(mph__mstore_dirty_count(ms), 340);
    cr_assert_eq(mph__mstore_count(ms), 300);
    for (i = 0; i < 300; i++) {
        snprintf(key, sizeof(key), "dirty%d", i);
        cr_assert_eq(get_i64(ms, key), i);
    }
    for (i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "gone%d", i);
        cr_assert_eq(mph__mstore_lookup(ms, S(key), NULL, NULL),
                     MPH__MSTORE_DELETED);
    }
    /* Once clean they become evictable and the bound holds again. */
    mph__mstore_dirty_clear(ms);
    cr_assert_eq(mph__mstore_count(ms), 100);
    mph__mstore_destroy(ms);
}

/* Entries that were clean (filled from the store) and then written are
 * dirty: the oldest in LRU order, yet never evicted. */
Test(store_memory, written_clean_entries_are_not_evicted, .timeout = 10)
{
    mph__mstore_t *ms = mph__mstore_new_cache(100, 0);
    char key[32];
    int i;

    for (i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        cr_assert_eq(mph__mstore_fill(ms, S(key), S("disk")), MPH_OK);
    }
    for (i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        put_i64(ms, key, i);
    }
    cr_assert_eq(mph__mstore_delete(ms, S("k50")), MPH_OK);
    for (i = 0; i < 500; i++) {
        snprintf(key, sizeof(key), "new%d", i);
        cr_assert_eq(mph__mstore_fill(ms, S(key), S("disk")), MPH_OK);
    }
    for (i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        cr_assert_eq(get_i64(ms, key), i);
    }
    cr_assert_eq(mph__mstore_lookup(ms, S("k50"), NULL, NULL),
                 MPH__MSTORE_DELETED);
    cr_assert_not(mph__mstore_contains(ms, S("k51")));
    cr_assert_eq(mph__mstore_dirty_count(ms), 51);
    cr_assert_eq(mph__mstore_count(ms), 99); /* 50 dirty + 49 clean */
    /* The tombstone goes, the rest fits the bound: nothing is evicted. */
    mph__mstore_dirty_clear(ms);
    cr_assert_eq(mph__mstore_count(ms), 99);
    for (i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        cr_assert_eq(get_i64(ms, key), i);
    }
    mph__mstore_destroy(ms);
}

Test(store_memory, eviction_respects_byte_bound, .timeout = 10)
{
    const size_t bound = 256 * 1024;
    mph__mstore_t *ms = mph__mstore_new_cache(0, bound);
    char key[32], val[1000];
    int i;

    memset(val, 'x', sizeof(val));
    for (i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "b%d", i);
        cr_assert_eq(mph__mstore_fill(ms, S(key), val, sizeof(val)), MPH_OK);
        cr_assert_leq(mph__mstore_memory(ms), bound, "%zu > %zu at %d",
                      mph__mstore_memory(ms), bound, i);
    }
    cr_assert_gt(mph__mstore_count(ms), 100);
    cr_assert_lt(mph__mstore_count(ms), 256);
    /* A value that grows in place pushes clean entries out too. */
    {
        static char big[64 * 1024];
        size_t before = mph__mstore_count(ms);
        memset(big, 'y', sizeof(big));
        cr_assert_eq(mph__mstore_put(ms, S("b4999"), big, sizeof(big)), MPH_OK);
        cr_assert_leq(mph__mstore_memory(ms), bound);
        cr_assert_lt(mph__mstore_count(ms), before - 40);
        cr_assert(mph__mstore_contains(ms, S("b4999")));
    }
    mph__mstore_destroy(ms);
}

Test(store_memory, memory_accounting_is_sane, .timeout = 10)
{
    mph__mstore_t *ms = mph__mstore_new();
    size_t empty = mph__mstore_memory(ms), full, payload = 0;
    char key[32], val[100];
    int i;

    memset(val, 'v', sizeof(val));
    for (i = 0; i < 10000; i++) {
        int kl = snprintf(key, sizeof(key), "memory-key-%d", i);
        cr_assert_eq(mph__mstore_put(ms, key, (size_t)kl, val, sizeof(val)),
                     MPH_OK);
        payload += (size_t)kl + sizeof(val);
    }
    full = mph__mstore_memory(ms);
    /* At least the payload; at most payload plus ~150 bytes per key of
     * header, hash slots (load factor <= 1/2) and malloc overhead. */
    cr_assert_geq(full, payload);
    cr_assert_leq(full, payload + 10000 * 200, "%zu for %zu of payload", full,
                  payload);
    for (i = 0; i < 10000; i++) {
        int kl = snprintf(key, sizeof(key), "memory-key-%d", i);
        cr_assert_eq(mph__mstore_delete(ms, key, (size_t)kl), MPH_OK);
    }
    cr_assert_lt(mph__mstore_memory(ms), full - payload / 2,
                 "deleted values are freed at once");
    mph__mstore_dirty_clear(ms);
    cr_assert_eq(mph__mstore_memory(ms), empty, "an emptied map %zu vs %zu",
                 mph__mstore_memory(ms), empty);
    for (i = 0; i < 100; i++) {
        int kl = snprintf(key, sizeof(key), "again-%d", i);
        cr_assert_eq(mph__mstore_put(ms, key, (size_t)kl, val, sizeof(val)),
                     MPH_OK);
    }
    mph__mstore_clear(ms);
    cr_assert_eq(mph__mstore_memory(ms), empty);
    mph__mstore_destroy(ms);
}

static mph_err_t count_and_check(void *opaque, const void *key, size_t klen,
                                 const void *val, size_t vlen, bool deleted)
{
    uint64_t *n = opaque, k, v;

    cr_assert_not(deleted);
    cr_assert_eq(klen, sizeof(k));
    cr_assert_eq(vlen, sizeof(v));
    memcpy(&k, key, sizeof(k));
    memcpy(&v, val, sizeof(v));
    if (v != k * 7 + 1)
        return MPH_ERR_INTERNAL;
    (*n)++;
    return MPH_OK;
}

Test(store_memory, million_keys_round_trip, .timeout = 30)
{
    const uint64_t n = 1000000;
    mph__mstore_t *ms = mph__mstore_new();
    uint64_t i, visited = 0;

    for (i = 0; i < n; i++) {
        uint64_t v = i * 7 + 1;
        cr_assert_eq(mph__mstore_put(ms, &i, sizeof(i), &v, sizeof(v)), MPH_OK);
    }
    cr_assert_eq(mph__mstore_count(ms), n);
    cr_assert_eq(mph__mstore_dirty_count(ms), n);
    for (i = 0; i < n; i++) {
        const void *v;
        size_t vl;
        uint64_t got;
        cr_assert_eq(mph__mstore_get(ms, &i, sizeof(i), &v, &vl), MPH_OK);
        memcpy(&got, v, sizeof(got));
        if (got != i * 7 + 1)
            cr_assert_fail("key %llu has %llu", (unsigned long long)i,
                           (unsigned long long)got);
    }
    cr_assert_eq(mph__mstore_drain_dirty(ms, count_and_check, &visited),
                 MPH_OK);
    cr_assert_eq(visited, n);
    cr_assert_eq(mph__mstore_dirty_count(ms), 0);
    cr_assert_eq(mph__mstore_count(ms), n);
    cr_assert_lt(mph__mstore_memory(ms), (size_t)n * 200);
    for (i = 0; i < n; i += 2)
        cr_assert_eq(mph__mstore_delete(ms, &i, sizeof(i)), MPH_OK);
    mph__mstore_dirty_clear(ms);
    cr_assert_eq(mph__mstore_count(ms), n / 2);
    for (i = 0; i < 1000; i++) {
        cr_assert_eq(mph__mstore_contains(ms, &i, sizeof(i)), i % 2 == 1);
    }
    mph__mstore_destroy(ms);
}

/* An asynchronous commit carries the dirty set as of snapshot_begin; what
 * is written after it stays dirty once that commit succeeds. */
Test(store_memory, snapshot_commit_keeps_later_writes_dirty, .timeout = 10)
{
    mph__mstore_t *ms = mph__mstore_new();
    struct seen s = {0};

    cr_assert_eq(mph__mstore_put(ms, S("a"), S("1")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("b"), S("1")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("gone"), S("1")), MPH_OK);
    cr_assert_eq(mph__mstore_delete(ms, S("gone")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("back"), S("1")), MPH_OK);
    cr_assert_eq(mph__mstore_delete(ms, S("back")), MPH_OK);
    mph__mstore_snapshot_begin(ms);
    /* During the commit: a written again, c new, back re-created. */
    cr_assert_eq(mph__mstore_put(ms, S("a"), S("2")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("c"), S("1")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("back"), S("2")), MPH_OK);
    mph__mstore_snapshot_commit(ms);

    cr_assert_eq(mph__mstore_dirty_count(ms), 3);
    cr_assert_eq(mph__mstore_dirty_foreach(ms, collect, &s), MPH_OK);
    cr_assert_eq(s.n, 3);
    cr_assert_str_eq(s.vals[find_seen(&s, "a")], "2");
    cr_assert_str_eq(s.vals[find_seen(&s, "c")], "1");
    cr_assert_str_eq(s.vals[find_seen(&s, "back")], "2");
    cr_assert_eq(find_seen(&s, "b"), -1, "b was carried: clean now");
    cr_assert_eq(find_seen(&s, "gone"), -1, "the carried tombstone is gone");
    cr_assert_eq(mph__mstore_lookup(ms, S("gone"), NULL, NULL), MPH__MSTORE_ABSENT);
    assert_str(ms, S("b"), "1");

    /* The next snapshot carries the rest; nothing is left after it. */
    mph__mstore_snapshot_begin(ms);
    mph__mstore_snapshot_commit(ms);
    cr_assert_eq(mph__mstore_dirty_count(ms), 0);
    assert_str(ms, S("a"), "2");
    mph__mstore_destroy(ms);
}

/* A failed asynchronous commit leaves every key dirty with its latest
 * value, so the next commit sends them all again. */
Test(store_memory, snapshot_abort_keeps_everything_dirty, .timeout = 10)
{
    mph__mstore_t *ms = mph__mstore_new();
    struct seen s = {0};

    cr_assert_eq(mph__mstore_put(ms, S("a"), S("1")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("b"), S("1")), MPH_OK);
    mph__mstore_snapshot_begin(ms);
    cr_assert_eq(mph__mstore_put(ms, S("a"), S("2")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("c"), S("1")), MPH_OK);
    mph__mstore_snapshot_abort(ms);
    cr_assert_eq(mph__mstore_dirty_foreach(ms, collect, &s), MPH_OK);
    cr_assert_eq(s.n, 3);
    cr_assert_str_eq(s.vals[find_seen(&s, "a")], "2");
    cr_assert_neq(find_seen(&s, "b"), -1);
    cr_assert_neq(find_seen(&s, "c"), -1);
    /* And a later snapshot that succeeds treats them as its own. */
    mph__mstore_snapshot_begin(ms);
    mph__mstore_snapshot_commit(ms);
    cr_assert_eq(mph__mstore_dirty_count(ms), 0);
    mph__mstore_destroy(ms);
}

/* In a cache, keys written during a commit are never evicted before the
 * commit that carries their latest value; carried keys become evictable. */
Test(store_memory, snapshot_in_cache_evicts_only_carried_keys, .timeout = 10)
{
    mph__mstore_t *ms = mph__mstore_new_cache(10, 0);
    char key[32];
    int i;

    for (i = 0; i < 30; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        put_i64(ms, key, i);
    }
    mph__mstore_snapshot_begin(ms);
    for (i = 0; i < 5; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        put_i64(ms, key, 100 + i);
    }
    mph__mstore_snapshot_commit(ms);
    cr_assert_eq(mph__mstore_dirty_count(ms), 5);
    cr_assert_eq(mph__mstore_count(ms), 10, "the bound holds with the carried keys clean");
    for (i = 0; i < 5; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        cr_assert_eq(get_i64(ms, key), 100 + i);
    }
    mph__mstore_destroy(ms);
}

/* ---- fresh keys: tombstones of keys nothing was written of ---- */

/* A commit: visits the dirty set (snapshot_begin after the visit, as the
 * table flush does) and returns what it saw; ok: the commit succeeded. */
static const char *commit(mph__mstore_t *ms, visit_t *v, bool ok)
{
    v->seen[0] = 0;
    cr_assert_eq(mph__mstore_dirty_foreach(ms, record_visit, v), MPH_OK);
    mph__mstore_snapshot_begin(ms);
    if (ok)
        mph__mstore_snapshot_commit(ms);
    else
        mph__mstore_snapshot_abort(ms);
    return v->seen;
}

Test(store_memory, complete_map_skips_tombstones_of_unwritten_keys,
     .timeout = 10)
{
    mph__mstore_t *ms = mph__mstore_new();
    visit_t v = {0};
    mph__mstore_set_complete(ms);

    /* Created and deleted between two commits: nothing to write. */
    cr_assert_eq(mph__mstore_put(ms, S("a"), S("1")), MPH_OK);
    cr_assert_eq(mph__mstore_delete(ms, S("a")), MPH_OK);
    cr_assert_eq(mph__mstore_dirty_count(ms), 1);
    cr_assert_str_eq(commit(ms, &v, true), "");
    cr_assert_eq(mph__mstore_dirty_count(ms), 0);
    cr_assert_eq(mph__mstore_lookup(ms, S("a"), NULL, NULL),
                 MPH__MSTORE_ABSENT);

    /* Written by a commit, then deleted: the tombstone goes out. */
    cr_assert_eq(mph__mstore_put(ms, S("b"), S("1")), MPH_OK);
    cr_assert_str_eq(commit(ms, &v, true), "b=1");
    cr_assert_eq(mph__mstore_delete(ms, S("b")), MPH_OK);
    cr_assert_str_eq(commit(ms, &v, true), "b-");

    /* Deleted, then set again before a commit: the value goes out. */
    cr_assert_eq(mph__mstore_put(ms, S("c"), S("1")), MPH_OK);
    cr_assert_eq(mph__mstore_delete(ms, S("c")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("c"), S("2")), MPH_OK);
    cr_assert_str_eq(commit(ms, &v, true), "c=2");
    cr_assert_eq(mph__mstore_delete(ms, S("c")), MPH_OK);
    cr_assert_str_eq(commit(ms, &v, true), "c-");

    /* A commit that failed may have written the value: the tombstone of a
     * key it visited goes out. */
    cr_assert_eq(mph__mstore_put(ms, S("d"), S("1")), MPH_OK);
    cr_assert_str_eq(commit(ms, &v, false), "d=1");
    cr_assert_eq(mph__mstore_delete(ms, S("d")), MPH_OK);
    cr_assert_str_eq(commit(ms, &v, true), "d-");
    mph__mstore_destroy(ms);
}

Test(store_memory, fresh_marks_follow_snapshots, .timeout = 10)
{
    mph__mstore_t *ms = mph__mstore_new();
    visit_t v = {0};
    mph__mstore_set_complete(ms);

    /* Carried by a commit under way, deleted before it ends: the next
     * commit writes the tombstone over the value the first one wrote. */
    cr_assert_eq(mph__mstore_put(ms, S("a"), S("1")), MPH_OK);
    v.seen[0] = 0;
    cr_assert_eq(mph__mstore_dirty_foreach(ms, record_visit, &v), MPH_OK);
    cr_assert_str_eq(v.seen, "a=1");
    mph__mstore_snapshot_begin(ms);
    cr_assert_eq(mph__mstore_delete(ms, S("a")), MPH_OK);
    /* Created and deleted while that commit runs: nothing to write. */
    cr_assert_eq(mph__mstore_put(ms, S("b"), S("1")), MPH_OK);
    cr_assert_eq(mph__mstore_delete(ms, S("b")), MPH_OK);
    mph__mstore_snapshot_commit(ms);
    cr_assert_eq(mph__mstore_dirty_count(ms), 2);
    cr_assert_str_eq(commit(ms, &v, true), "a-");
    cr_assert_eq(mph__mstore_dirty_count(ms), 0);
    cr_assert_eq(mph__mstore_count(ms), 0);
    mph__mstore_destroy(ms);
}

Test(store_memory, only_complete_maps_and_put_fresh_skip_tombstones,
     .timeout = 10)
{
    visit_t v = {0};

    /* A whole map not declared complete (a write buffer in front of a
     * store) and a cache write every tombstone of a plain put... */
    mph__mstore_t *maps[2] = {mph__mstore_new(), mph__mstore_new_cache(0, 0)};
    for (int i = 0; i < 2; i++) {
        mph__mstore_t *ms = maps[i];
        cr_assert_eq(mph__mstore_put(ms, S("a"), S("1")), MPH_OK);
        cr_assert_eq(mph__mstore_delete(ms, S("a")), MPH_OK);
        cr_assert_str_eq(commit(ms, &v, true), "a-");
        /* ...and skip those of put_fresh. */
        cr_assert_eq(mph__mstore_put_fresh(ms, S("b"), S("1")), MPH_OK);
        cr_assert_eq(mph__mstore_delete(ms, S("b")), MPH_OK);
        cr_assert_str_eq(commit(ms, &v, true), "");
        /* put_fresh of a key the map holds is a plain put. */
        cr_assert_eq(mph__mstore_put(ms, S("c"), S("1")), MPH_OK);
        cr_assert_str_eq(commit(ms, &v, true), "c=1");
        cr_assert_eq(mph__mstore_put_fresh(ms, S("c"), S("2")), MPH_OK);
        cr_assert_eq(mph__mstore_delete(ms, S("c")), MPH_OK);
        cr_assert_str_eq(commit(ms, &v, true), "c-");
        mph__mstore_destroy(ms);
    }
}

/* Churn: keys created and removed round after round while the map keeps
 * about the same size (window pairs, a cache evicting). The hash table is
 * rebuilt as removals pile up tombstones; every live key stays reachable,
 * iteration sees each once, and memory stays that of the live keys. */
Test(store_memory, churn_keeps_every_live_key_and_bounded_memory,
     .timeout = 60)
{
    enum { LIVE = 1000, ROUNDS = 300 };
    mph__mstore_t *maps[2] = {mph__mstore_new(),
                              mph__mstore_new_cache(LIVE, 0)};
    visit_t v = {0};
    char k[32];

    mph__mstore_set_complete(maps[0]);
    for (int m = 0; m < 2; m++) {
        mph__mstore_t *ms = maps[m];
        size_t first_mem = 0;
        for (int r = 0; r < ROUNDS; r++) {
            for (int i = 0; i < LIVE; i++) {
                int n = snprintf(k, sizeof k, "r%d-k%d", r, i);
                cr_assert_eq(mph__mstore_put(ms, k, (size_t)n, &i, sizeof i),
                             MPH_OK);
            }
            if (r > 0 && m == 0)
                for (int i = 0; i < LIVE; i++) {
                    int n = snprintf(k, sizeof k, "r%d-k%d", r - 1, i);
                    cr_assert_eq(mph__mstore_delete(ms, k, (size_t)n), MPH_OK);
                }
            /* The cache evicts the previous round as this one turns clean. */
            commit(ms, &v, true);
            cr_assert_eq(mph__mstore_count(ms), LIVE, "round %d: %zu keys", r,
                         mph__mstore_count(ms));
            if (r == 1)
                first_mem = mph__mstore_memory(ms);
            if (r > 1)
                cr_assert_leq(mph__mstore_memory(ms), first_mem * 2,
                              "round %d: %zu bytes against %zu", r,
                              mph__mstore_memory(ms), first_mem);
        }
        for (int i = 0; i < LIVE; i++) {
            int n = snprintf(k, sizeof k, "r%d-k%d", ROUNDS - 1, i);
            const void *val;
            size_t vl;
            cr_assert_eq(mph__mstore_get(ms, k, (size_t)n, &val, &vl), MPH_OK,
                         "%s", k);
            cr_assert_eq(memcmp(val, &i, sizeof i), 0);
        }
        mph__mstore_iter_t it;
        const void *ik, *iv;
        size_t ikl, ivl, seen = 0;
        mph__mstore_iter_init(&it, ms);
        while (mph__mstore_iter_next(&it, &ik, &ikl, &iv, &ivl))
            seen++;
        cr_assert_eq(seen, LIVE);
        mph__mstore_destroy(ms);
    }
}

/* ------------------------------------------------------------------------
 * Undo mode and rollback (exactly_once: an aborted transaction)
 * ------------------------------------------------------------------------ */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The map's present keys as "k=v" (tombstones and absent keys not shown),
 * sorted, space-separated, into out. */
static const char *dump(mph__mstore_t *ms, char *out, size_t cap)
{
    char *items[64];
    size_t n = 0, used = 0;
    mph__mstore_iter_t it;
    const void *k, *v;
    size_t kl, vl;

    mph__mstore_iter_init(&it, ms);
    while (mph__mstore_iter_next(&it, &k, &kl, &v, &vl)) {
        cr_assert_lt(n, 64);
        cr_assert_geq(asprintf(&items[n], "%.*s=%.*s", (int)kl, (const char *)k,
                               (int)vl, (const char *)v),
                      0);
        n++;
    }
    qsort(items, n, sizeof items[0], cmp_str);
    out[0] = 0;
    for (size_t i = 0; i < n; i++) {
        int w =
            snprintf(out + used, cap - used, "%s%s", i ? " " : "", items[i]);
        cr_assert(w >= 0 && (size_t)w < cap - used, "dump too long");
        used += (size_t)w;
        free(items[i]);
    }
    return out;
}

/* A value of n copies of c (n < 256), e.g. one too long to be inline. */
static const char *rep_char(char c, int n)
{
    static char buf[4][256];
    static int next;
    char *b = buf[next++ % 4];

    memset(b, c, (size_t)n);
    b[n] = 0;
    return b;
}

/* A whole map as a memory shard has it: complete, in undo mode. */
static mph__mstore_t *undo_map(void)
{
    mph__mstore_t *ms = mph__mstore_new();

    cr_assert_not_null(ms);
    mph__mstore_set_complete(ms);
    cr_assert_eq(mph__mstore_set_undo(ms, true), MPH_OK);
    cr_assert(mph__mstore_undo(ms));
    return ms;
}

Test(store_memory, rollback_restores_puts_overwrites_and_deletes, .timeout = 10)
{
    mph__mstore_t *ms = undo_map();
    visit_t v = {0};
    char before[2048], after[2048], big[101];

    strcpy(big, rep_char('B', 100));

    cr_assert_eq(mph__mstore_put(ms, S("a"), S("1")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("big"), S(big)), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("big2"), S(rep_char('C', 60))), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("c"), S("3")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("d"), S("4")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("e"), S("")), MPH_OK);
    cr_assert_eq(mph__mstore_drain_dirty(ms, record_visit, &v), MPH_OK);
    dump(ms, before, sizeof before);

    /* Overwrites (inline and heap values, growing and shrinking, several
     * times), deletes (inline and heap), a delete then a put again, new
     * keys by put and put_fresh. */
    cr_assert_eq(mph__mstore_put(ms, S("a"), S("2")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("a"), S(rep_char('A', 40))), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("big"), S("small now")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("big"), S(rep_char('X', 200))), MPH_OK);
    cr_assert_eq(mph__mstore_delete(ms, S("big2")), MPH_OK);
    cr_assert_eq(mph__mstore_delete(ms, S("c")), MPH_OK);
    cr_assert_eq(mph__mstore_delete(ms, S("d")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("d"), S("44")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("e"), S("5")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("new"), S("n")), MPH_OK);
    cr_assert_eq(mph__mstore_put_fresh(ms, S("fresh"), S(rep_char('F', 30))),
                 MPH_OK);
    cr_assert_eq(mph__mstore_dirty_count(ms), 8);
    cr_assert_str_neq(dump(ms, after, sizeof after), before);

    cr_assert_eq(mph__mstore_rollback(ms), MPH_OK);
    cr_assert_str_eq(dump(ms, after, sizeof after), before);
    cr_assert_eq(mph__mstore_count(ms), 6);
    cr_assert_eq(mph__mstore_dirty_count(ms), 0);
    assert_str(ms, S("big"), big);
    cr_assert_eq(mph__mstore_lookup(ms, S("new"), NULL, NULL),
                 MPH__MSTORE_ABSENT, "created keys are gone, not tombstones");
    cr_assert_eq(mph__mstore_lookup(ms, S("fresh"), NULL, NULL),
                 MPH__MSTORE_ABSENT);
    /* Clean again: the next commit carries nothing. */
    v.seen[0] = 0;
    cr_assert_eq(mph__mstore_drain_dirty(ms, record_visit, &v), MPH_OK);
    cr_assert_str_eq(v.seen, "");
    /* And a rollback with nothing dirty changes nothing. */
    cr_assert_eq(mph__mstore_rollback(ms), MPH_OK);
    cr_assert_str_eq(dump(ms, after, sizeof after), before);
    mph__mstore_destroy(ms);
}

Test(store_memory, rollback_of_keys_created_and_deleted_in_one_interval,
     .timeout = 10)
{
    mph__mstore_t *ms = undo_map();
    visit_t v = {0};
    char out[256];

    cr_assert_eq(mph__mstore_put(ms, S("keep"), S("k")), MPH_OK);
    mph__mstore_dirty_clear(ms);

    cr_assert_eq(mph__mstore_put(ms, S("x"), S("1")), MPH_OK);
    cr_assert_eq(mph__mstore_delete(ms, S("x")), MPH_OK);
    cr_assert_eq(mph__mstore_put_fresh(ms, S("y"), S(rep_char('y', 50))),
                 MPH_OK);
    cr_assert_eq(mph__mstore_delete(ms, S("y")), MPH_OK);
    /* Deleted, re-created, deleted again. */
    cr_assert_eq(mph__mstore_delete(ms, S("keep")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("keep"), S("k2")), MPH_OK);
    cr_assert_eq(mph__mstore_delete(ms, S("keep")), MPH_OK);
    cr_assert_eq(mph__mstore_lookup(ms, S("x"), NULL, NULL),
                 MPH__MSTORE_DELETED);
    cr_assert_eq(mph__mstore_count(ms), 0);

    cr_assert_eq(mph__mstore_rollback(ms), MPH_OK);
    cr_assert_eq(mph__mstore_lookup(ms, S("x"), NULL, NULL),
                 MPH__MSTORE_ABSENT);
    cr_assert_eq(mph__mstore_lookup(ms, S("y"), NULL, NULL),
                 MPH__MSTORE_ABSENT);
    cr_assert_str_eq(dump(ms, out, sizeof out), "keep=k");
    cr_assert_eq(mph__mstore_count(ms), 1);
    cr_assert_eq(mph__mstore_dirty_count(ms), 0);
    cr_assert_str_eq(commit(ms, &v, true), "");
    mph__mstore_destroy(ms);
}

/* A rolled-back map behaves like one that never saw the writes: restored
 * keys are clean and durable (their tombstone is written), keys that were
 * created and rolled back are absent durably (created again and deleted,
 * they leave no tombstone). */
Test(store_memory, rollback_keeps_fresh_marks_consistent, .timeout = 10)
{
    mph__mstore_t *ms = undo_map();
    visit_t v = {0};

    cr_assert_eq(mph__mstore_put(ms, S("old"), S("1")), MPH_OK);
    cr_assert_str_eq(commit(ms, &v, true), "old=1");
    cr_assert_eq(mph__mstore_put(ms, S("old"), S("2")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("new"), S("1")), MPH_OK);
    /* A failed commit visited new's value (clearing its fresh mark). */
    cr_assert_str_eq(commit(ms, &v, false), "old=2 new=1");
    cr_assert_eq(mph__mstore_rollback(ms), MPH_OK);

    cr_assert_eq(mph__mstore_delete(ms, S("old")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("new"), S("2")), MPH_OK);
    cr_assert_eq(mph__mstore_delete(ms, S("new")), MPH_OK);
    cr_assert_str_eq(commit(ms, &v, true), "old-");
    cr_assert_eq(mph__mstore_count(ms), 0);
    mph__mstore_destroy(ms);
}

Test(store_memory, rollback_undoes_only_the_last_interval, .timeout = 10)
{
    mph__mstore_t *ms = undo_map();
    visit_t v = {0};
    char out[512];

    /* Interval 1, committed by drain_dirty. */
    cr_assert_eq(mph__mstore_put(ms, S("a"), S("1")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("b"), S("1")), MPH_OK);
    cr_assert_eq(mph__mstore_drain_dirty(ms, record_visit, &v), MPH_OK);
    /* Interval 2, committed by a snapshot. */
    cr_assert_eq(mph__mstore_put(ms, S("a"), S(rep_char('2', 20))), MPH_OK);
    cr_assert_eq(mph__mstore_delete(ms, S("b")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("c"), S("2")), MPH_OK);
    cr_assert_str_eq(commit(ms, &v, true), "a=22222222222222222222 b- c=2");
    /* Interval 3, rolled back. */
    cr_assert_eq(mph__mstore_put(ms, S("a"), S("3")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("b"), S("3")), MPH_OK);
    cr_assert_eq(mph__mstore_delete(ms, S("c")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("d"), S("3")), MPH_OK);
    cr_assert_eq(mph__mstore_rollback(ms), MPH_OK);
    cr_assert_str_eq(dump(ms, out, sizeof out), "a=22222222222222222222 c=2");
    /* Interval 4 after the rollback, rolled back too. */
    cr_assert_eq(mph__mstore_put(ms, S("c"), S("4")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("b"), S("4")), MPH_OK);
    cr_assert_eq(mph__mstore_rollback(ms), MPH_OK);
    cr_assert_str_eq(dump(ms, out, sizeof out), "a=22222222222222222222 c=2");
    mph__mstore_destroy(ms);
}

Test(store_memory, rollback_after_a_failed_commit, .timeout = 10)
{
    mph__mstore_t *ms = undo_map();
    visit_t v = {0};
    char out[256];
    int calls = 0;

    cr_assert_eq(mph__mstore_put(ms, S("a"), S("1")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("b"), S("1")), MPH_OK);
    mph__mstore_dirty_clear(ms);

    /* drain_dirty fails: the dirty set (and its pre-images) stay. */
    cr_assert_eq(mph__mstore_put(ms, S("a"), S("2")), MPH_OK);
    cr_assert_eq(mph__mstore_delete(ms, S("b")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("c"), S("2")), MPH_OK);
    cr_assert_eq(mph__mstore_drain_dirty(ms, fail_second, &calls),
                 MPH_ERR_STORE);
    cr_assert_eq(mph__mstore_dirty_count(ms), 3);
    cr_assert_eq(mph__mstore_rollback(ms), MPH_OK);
    cr_assert_str_eq(dump(ms, out, sizeof out), "a=1 b=1");

    /* A snapshot aborts, with writes during it: all of them go. */
    cr_assert_eq(mph__mstore_put(ms, S("a"), S("3")), MPH_OK);
    mph__mstore_snapshot_begin(ms);
    cr_assert_eq(mph__mstore_put(ms, S("a"), S("4")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("b"), S("4")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("d"), S("4")), MPH_OK);
    mph__mstore_snapshot_abort(ms);
    cr_assert_eq(mph__mstore_rollback(ms), MPH_OK);
    cr_assert_str_eq(dump(ms, out, sizeof out), "a=1 b=1");
    cr_assert_str_eq(commit(ms, &v, true), "");
    mph__mstore_destroy(ms);
}

Test(store_memory, rollback_is_refused_during_a_snapshot, .timeout = 10)
{
    mph__mstore_t *maps[2] = {undo_map(), mph__mstore_new_cache(0, 0)};
    char out[256];

    for (int i = 0; i < 2; i++) {
        mph__mstore_t *ms = maps[i];
        cr_assert_eq(mph__mstore_put(ms, S("a"), S("1")), MPH_OK);
        mph__mstore_snapshot_begin(ms);
        cr_assert_eq(mph__mstore_rollback(ms), MPH_ERR_STATE);
        cr_assert_eq(mph__mstore_dirty_count(ms), 1, "nothing changed");
        cr_assert_str_eq(dump(ms, out, sizeof out), "a=1");
        mph__mstore_snapshot_abort(ms);
        cr_assert_eq(mph__mstore_rollback(ms), MPH_OK);
        cr_assert_eq(mph__mstore_count(ms), 0);
        mph__mstore_destroy(ms);
    }
}

/* After a snapshot commit, the keys it kept dirty roll back to what it
 * committed; a carried key written again during it has no such pre-image,
 * and rollback says so until the dirty set empties. */
Test(store_memory, rollback_after_a_snapshot_commit, .timeout = 10)
{
    mph__mstore_t *ms = undo_map();
    visit_t v = {0};
    char out[256];

    cr_assert_eq(mph__mstore_put(ms, S("a"), S("0")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("b"), S("0")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("c"), S("0")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("d"), S("0")), MPH_OK);
    mph__mstore_dirty_clear(ms);

    /* Carried: a, b. Written after the snapshot began: c (clean then), e
     * (new). The commit succeeds; c and e stay dirty. */
    cr_assert_eq(mph__mstore_put(ms, S("a"), S("1")), MPH_OK);
    cr_assert_eq(mph__mstore_delete(ms, S("b")), MPH_OK);
    v.seen[0] = 0;
    cr_assert_eq(mph__mstore_dirty_foreach(ms, record_visit, &v), MPH_OK);
    mph__mstore_snapshot_begin(ms);
    cr_assert_eq(mph__mstore_put(ms, S("c"), S("1")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("e"), S("1")), MPH_OK);
    mph__mstore_snapshot_commit(ms);
    cr_assert_eq(mph__mstore_dirty_count(ms), 2);
    cr_assert_eq(mph__mstore_rollback(ms), MPH_OK);
    cr_assert_str_eq(dump(ms, out, sizeof out), "a=1 c=0 d=0");

    /* d carried, then written again during the snapshot. */
    cr_assert_eq(mph__mstore_put(ms, S("d"), S("1")), MPH_OK);
    mph__mstore_snapshot_begin(ms);
    cr_assert_eq(mph__mstore_put(ms, S("d"), S("2")), MPH_OK);
    mph__mstore_snapshot_commit(ms);
    cr_assert_eq(mph__mstore_rollback(ms), MPH_ERR_STATE);
    cr_assert_str_eq(dump(ms, out, sizeof out), "a=1 c=0 d=2");
    cr_assert_eq(mph__mstore_dirty_count(ms), 1);
    /* Once committed, rollback works again. */
    cr_assert_str_eq(commit(ms, &v, true), "d=2");
    cr_assert_eq(mph__mstore_put(ms, S("d"), S("3")), MPH_OK);
    cr_assert_eq(mph__mstore_rollback(ms), MPH_OK);
    cr_assert_str_eq(dump(ms, out, sizeof out), "a=1 c=0 d=2");
    mph__mstore_destroy(ms);
}

Test(store_memory, rollback_needs_undo_mode_in_a_whole_map, .timeout = 10)
{
    mph__mstore_t *ms = mph__mstore_new();
    mph__mstore_t *cache = mph__mstore_new_cache(0, 0);
    char out[256];

    cr_assert_not(mph__mstore_undo(ms), "off by default");
    cr_assert_eq(mph__mstore_rollback(ms), MPH_ERR_STATE);
    cr_assert_eq(mph__mstore_put(ms, S("a"), S("1")), MPH_OK);
    cr_assert_eq(mph__mstore_rollback(ms), MPH_ERR_STATE);
    cr_assert_eq(mph__mstore_dirty_count(ms), 1, "nothing changed");
    cr_assert_str_eq(dump(ms, out, sizeof out), "a=1");
    /* Keys dirty before undo mode have no pre-image. */
    cr_assert_eq(mph__mstore_set_undo(ms, true), MPH_ERR_STATE);
    cr_assert_not(mph__mstore_undo(ms));
    mph__mstore_dirty_clear(ms);
    cr_assert_eq(mph__mstore_set_undo(ms, true), MPH_OK);
    cr_assert_eq(mph__mstore_set_undo(ms, true), MPH_OK, "idempotent");

    /* Turning it off drops the pre-images: rollback is refused again. */
    cr_assert_eq(mph__mstore_put(ms, S("a"), S(rep_char('2', 80))), MPH_OK);
    cr_assert_eq(mph__mstore_set_undo(ms, false), MPH_OK);
    cr_assert_eq(mph__mstore_rollback(ms), MPH_ERR_STATE);
    assert_str(ms, S("a"), rep_char('2', 80));

    /* A cache needs no undo mode, and refuses it. */
    cr_assert_eq(mph__mstore_set_undo(cache, true), MPH_ERR_STATE);
    cr_assert_not(mph__mstore_undo(cache));
    mph__mstore_destroy(ms);
    mph__mstore_destroy(cache);
}

/* A cache rolls back by dropping its dirty entries and tombstones: the
 * store behind holds the committed values, clean entries stay. */
Test(store_memory, cache_rollback_drops_dirty_entries, .timeout = 10)
{
    mph__mstore_t *ms = mph__mstore_new_cache(100, 0);
    char out[256];

    cr_assert_eq(mph__mstore_fill(ms, S("clean"), S("c")), MPH_OK);
    cr_assert_eq(mph__mstore_fill(ms, S("over"), S("o")), MPH_OK);
    cr_assert_eq(mph__mstore_fill(ms, S("del"), S("d")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("over"), S("o2")), MPH_OK);
    cr_assert_eq(mph__mstore_delete(ms, S("del")), MPH_OK);
    cr_assert_eq(mph__mstore_delete(ms, S("unknown")), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("new"), S("n")), MPH_OK);
    cr_assert_eq(mph__mstore_dirty_count(ms), 4);

    cr_assert_eq(mph__mstore_rollback(ms), MPH_OK);
    cr_assert_eq(mph__mstore_dirty_count(ms), 0);
    cr_assert_str_eq(dump(ms, out, sizeof out), "clean=c");
    cr_assert_eq(mph__mstore_count(ms), 1);
    const char *gone[] = {"over", "del", "unknown", "new"};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(mph__mstore_lookup(ms, S(gone[i]), NULL, NULL),
                     MPH__MSTORE_ABSENT, "%s: ask the store", gone[i]);
    /* The clean entry is still evictable: fill past the bound. */
    char k[16];
    for (int i = 0; i < 150; i++) {
        snprintf(k, sizeof k, "f%d", i);
        cr_assert_eq(mph__mstore_fill(ms, S(k), S("x")), MPH_OK);
    }
    cr_assert_eq(mph__mstore_lookup(ms, S("clean"), NULL, NULL),
                 MPH__MSTORE_ABSENT);
    mph__mstore_destroy(ms);
}

Test(store_memory, rollback_returns_memory_to_the_committed_state,
     .timeout = 10)
{
    mph__mstore_t *ms = undo_map();
    char k[32], before[4096], after[4096];
    size_t mem;
    int i;

    for (i = 0; i < 40; i++) {
        snprintf(k, sizeof k, "k%02d", i);
        cr_assert_eq(
            mph__mstore_put(ms, S(k), S(i % 2 ? rep_char('v', 30) : "small")),
            MPH_OK);
    }
    mph__mstore_dirty_clear(ms);
    /* One interval first, so that the dirty and undo arrays exist (their
     * capacity stays across commits and rollbacks). */
    for (i = 0; i < 40; i++) {
        snprintf(k, sizeof k, "k%02d", i);
        cr_assert_eq(mph__mstore_put(ms, S(k), S("warm")), MPH_OK);
    }
    mph__mstore_dirty_clear(ms);
    for (i = 0; i < 40; i++) {
        snprintf(k, sizeof k, "k%02d", i);
        cr_assert_eq(
            mph__mstore_put(ms, S(k), S(i % 2 ? rep_char('v', 30) : "small")),
            MPH_OK);
    }
    mph__mstore_dirty_clear(ms);
    mem = mph__mstore_memory(ms);
    dump(ms, before, sizeof before);

    for (i = 0; i < 40; i += 4) {
        snprintf(k, sizeof k, "k%02d", i);
        cr_assert_eq(mph__mstore_put(ms, S(k), S(rep_char('g', 200))), MPH_OK);
        snprintf(k, sizeof k, "k%02d", i + 1);
        cr_assert_eq(mph__mstore_put(ms, S(k), S("s")), MPH_OK);
        snprintf(k, sizeof k, "k%02d", i + 2);
        cr_assert_eq(mph__mstore_delete(ms, S(k)), MPH_OK);
        snprintf(k, sizeof k, "k%02d", i + 3);
        cr_assert_eq(mph__mstore_delete(ms, S(k)), MPH_OK);
    }
    cr_assert_eq(mph__mstore_put(ms, S("n1"), S(rep_char('n', 100))), MPH_OK);
    cr_assert_eq(mph__mstore_put(ms, S("n2"), S("n")), MPH_OK);
    cr_assert_neq(mph__mstore_memory(ms), mem);

    cr_assert_eq(mph__mstore_rollback(ms), MPH_OK);
    cr_assert_str_eq(dump(ms, after, sizeof after), before);
    cr_assert_eq(mph__mstore_count(ms), 40);
    cr_assert_eq(mph__mstore_memory(ms), mem, "%zu bytes, %zu before",
                 mph__mstore_memory(ms), mem);
    /* Commits free the pre-images they no longer need: values of the same
     * sizes written and committed leave memory where it was. */
    for (i = 1; i < 40; i += 2) {
        snprintf(k, sizeof k, "k%02d", i);
        cr_assert_eq(mph__mstore_put(ms, S(k), S(rep_char('w', 30))), MPH_OK);
    }
    mph__mstore_dirty_clear(ms);
    cr_assert_eq(mph__mstore_memory(ms), mem, "after dirty_clear");
    for (i = 1; i < 40; i += 2) {
        snprintf(k, sizeof k, "k%02d", i);
        cr_assert_eq(mph__mstore_put(ms, S(k), S(rep_char('v', 30))), MPH_OK);
    }
    mph__mstore_snapshot_begin(ms);
    mph__mstore_snapshot_commit(ms);
    cr_assert_eq(mph__mstore_memory(ms), mem, "after snapshot_commit");
    /* Turning undo off frees the undo array, and only that. */
    cr_assert_eq(mph__mstore_set_undo(ms, false), MPH_OK);
    cr_assert_lt(mph__mstore_memory(ms), mem);
    mph__mstore_destroy(ms);
}

/* Undo mode costs one copy of the old value at the first write of a key in
 * a commit interval, and nothing at later writes of it. */
Test(store_memory, undo_copies_each_value_once_per_interval, .timeout = 10)
{
    mph__mstore_t *ms = undo_map();
    uint64_t allocs;
    char big[101];

    strcpy(big, rep_char('b', 100));
    put_i64(ms, "counter", 0);
    cr_assert_eq(mph__mstore_put(ms, S("blob"), S(big)), MPH_OK);
    mph__mstore_dirty_clear(ms);
    put_i64(ms, "counter", 1); /* makes the undo array */
    mph__mstore_dirty_clear(ms);

    allocs = mph__mstore_alloc_count(ms);
    for (int i = 0; i < 1000; i++)
        put_i64(ms, "counter", i);
    cr_assert_eq(mph__mstore_alloc_count(ms), allocs,
                 "an inline value is copied into the record");
    cr_assert_eq(mph__mstore_put(ms, S("blob"), S(rep_char('c', 100))), MPH_OK);
    cr_assert_eq(mph__mstore_alloc_count(ms), allocs + 1,
                 "one copy of a heap value");
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(mph__mstore_put(ms, S("blob"), S(rep_char('d', 100))),
                     MPH_OK);
    cr_assert_eq(mph__mstore_alloc_count(ms), allocs + 1,
                 "later writes record nothing");
    cr_assert_eq(mph__mstore_rollback(ms), MPH_OK);
    cr_assert_eq(mph__mstore_alloc_count(ms), allocs + 1,
                 "rollback hands the copy back");
    cr_assert_eq(get_i64(ms, "counter"), 1);
    assert_str(ms, S("blob"), big);

    /* A delete moves the heap value into the record: no copy. */
    cr_assert_eq(mph__mstore_delete(ms, S("blob")), MPH_OK);
    cr_assert_eq(mph__mstore_alloc_count(ms), allocs + 1);
    cr_assert_eq(mph__mstore_rollback(ms), MPH_OK);
    assert_str(ms, S("blob"), big);
    mph__mstore_destroy(ms);
}

/* clear, destroy and set_undo(false) free pre-images still held (the ASan
 * build checks for leaks). */
Test(store_memory, pending_undo_records_are_freed, .timeout = 10)
{
    mph__mstore_t *ms = undo_map();
    size_t empty = mph__mstore_memory(ms);

    cr_assert_eq(mph__mstore_put(ms, S("a"), S(rep_char('a', 100))), MPH_OK);
    mph__mstore_dirty_clear(ms);
    cr_assert_eq(mph__mstore_put(ms, S("a"), S("1")), MPH_OK);
    mph__mstore_clear(ms);
    cr_assert_eq(mph__mstore_memory(ms), empty);
    cr_assert(mph__mstore_undo(ms), "clear keeps the mode");
    cr_assert_eq(mph__mstore_rollback(ms), MPH_OK);
    cr_assert_eq(mph__mstore_count(ms), 0);

    cr_assert_eq(mph__mstore_put(ms, S("a"), S(rep_char('a', 100))), MPH_OK);
    mph__mstore_dirty_clear(ms);
    cr_assert_eq(mph__mstore_put(ms, S("a"), S("1")), MPH_OK);
    mph__mstore_destroy(ms);
}
