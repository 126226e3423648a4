/*
 * Global tables: one in-process copy of a whole changelog, read from any
 * thread.
 *
 * DESIGN
 * Each global table has one reader thread (the copy's only writer). It
 * owns a consumer with no group: every changelog partition is assigned
 * from the beginning, records are applied in the order read, and before
 * the first record it notes each partition's high watermark; a partition
 * is bootstrapped once a record at or past that end was applied or the
 * consumer reported the partition's end (under read_committed the end a
 * transaction marker hides is the last stable offset). The table is ready
 * when all partitions are.
 *
 * The copy is a ck_ht in bytestring mode with one writer and many readers
 * (the SPMC functions). An entry's value is an item holding key and value
 * bytes in one allocation; the entry's key points into it. Setting a key
 * publishes a new item and retires the old one; deleting retires it too.
 * Retired items (and the maps ck_ht drops when it grows) are freed through
 * ck_epoch: readers enter an epoch section around their probe and copy, and
 * the reader thread frees only what no section can still see. A reader
 * thread gets its epoch record on first use (a pthread key per table, whose
 * destructor unregisters the record for reuse when the thread exits).
 * Readers never take a lock and never wait for the writer.
 *
 * Must never: apply a write anywhere but here (agents only produce to the
 * changelog: mph_global_table_set), or free an item a reader may still
 * hold outside an epoch grace period.
 *
 * ThreadSanitizer cannot see ConcurrencyKit's inline-assembly publication:
 * the writer releases an item before publishing it and a reader acquires
 * it after finding it; readers release the table's epoch sync point when
 * they leave a section and the reclaimer acquires it before a free.
 */
#include <ck_epoch.h>
#include <ck_ht.h>
#include <ck_malloc.h>
#include <ck_pr.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/kafka.h"
#include "mephisto/log.h"
#include "mephisto/table.h"
#include "runtime/app.h"
#include "runtime/global_table.h"

#if defined(__SANITIZE_THREAD__)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define GT_RELEASE(p) __tsan_release(p)
#define GT_ACQUIRE(p) __tsan_acquire(p)
#else
#define GT_RELEASE(p) ((void)(p))
#define GT_ACQUIRE(p) ((void)(p))
#endif

#define GT_BATCH 1024
/* The longest key ck_ht stores (a 16-bit length). */
#define GT_KEY_MAX 65535u

struct mph_global_table_opts {
    int partitions; /* 0: topic_partitions */
    char **configs; /* name, value, ... */
    size_t nconfigs;
};

/* One key and its value in one allocation; the ck_ht entry's key points
 * at bytes, its value at the item. */
typedef struct gt_item {
    ck_epoch_entry_t epoch_entry;
    struct mph_global_table *gt;
    size_t klen, vlen;
    unsigned char bytes[]; /* key, then value */
} gt_item_t;

/* A map ck_ht dropped, freed after a grace period. */
typedef struct gt_deferred {
    ck_epoch_entry_t epoch_entry;
    struct mph_global_table *gt;
    void *p;
} gt_deferred_t;

/* Every epoch record this table handed out, freed with the table. */
typedef struct gt_rec {
    ck_epoch_record_t rec; /* first: cache-line aligned allocation */
    struct gt_rec *next_alloc;
} gt_rec_t;

struct mph_global_table {
    mph_app_t *app;
    char *name;
    mph_topic_t *topic;
    struct ck_malloc alloc;
    ck_ht_t ht;
    uint64_t seed;
    ck_epoch_t epoch;
    pthread_key_t key; /* the calling thread's gt_rec_t */
    bool key_made;
    pthread_mutex_t
        recs_lock; /* only the list of records (first use per thread) */
    gt_rec_t *recs;
    ck_epoch_record_t *wrec; /* the reader thread's record */
    int tsan_sync;           /* an address for TSan's happens-before */

    /* reader thread */
    pthread_t thread;
    bool thread_running;
    int stop; /* ck_pr */
    rd_kafka_t *consumer;
    int32_t nparts;
    int64_t *target; /* end offset per partition at start */
    bool *done;
    int32_t ndone;
    int ready;      /* ck_pr */
    uint64_t count; /* keys in the copy (ck_pr) */
    uint64_t deletes_since_gc;
    uint64_t skipped;
    mph_log_limit_t log_lim;
};

/* ------------------------------------------------------------------ */
/* options                                                             */

mph_global_table_opts_t *mph_global_table_opts_new(void)
{
    return calloc(1, sizeof(mph_global_table_opts_t));
}

void mph_global_table_opts_destroy(mph_global_table_opts_t *opts)
{
    if (!opts)
        return;
    for (size_t i = 0; i < opts->nconfigs * 2; i++)
        free(opts->configs[i]);
    free(opts->configs);
    free(opts);
}

mph_err_t mph_global_table_opts_set(mph_global_table_opts_t *opts,
                                    const char *name, const char *value,
                                    char *errstr, size_t errstr_size)
{
    char tmp[8];
    if (!errstr || !errstr_size) {
        errstr = tmp;
        errstr_size = sizeof tmp;
    }
    if (!opts || !name || !value) {
        snprintf(errstr, errstr_size, "global table option: NULL argument");
        return MPH_ERR_INVALID;
    }
    if (!strcmp(name, "partitions")) {
        char *end = NULL;
        long v = strtol(value, &end, 10);
        if (!*value || *end || v < 1 || v > 100000) {
            snprintf(errstr, errstr_size,
                     "global table option partitions: \"%s\" is not a whole "
                     "number from 1 to "
                     "100000",
                     value);
            return MPH_ERR_INVALID;
        }
        opts->partitions = (int)v;
        return MPH_OK;
    }
    if (!strncmp(name, "changelog.", 10) && name[10]) {
        if (!strcmp(name + 10, "cleanup.policy")) {
            snprintf(errstr, errstr_size,
                     "global table option %s: a global table's changelog is "
                     "always compacted",
                     name);
            return MPH_ERR_INVALID;
        }
        char **arr =
            realloc(opts->configs, (opts->nconfigs + 1) * 2 * sizeof *arr);
        if (!arr)
            return MPH_ERR_NOMEM;
        opts->configs = arr;
        arr[opts->nconfigs * 2] = strdup(name + 10);
        arr[opts->nconfigs * 2 + 1] = strdup(value);
        if (!arr[opts->nconfigs * 2] || !arr[opts->nconfigs * 2 + 1]) {
            free(arr[opts->nconfigs * 2]);
            free(arr[opts->nconfigs * 2 + 1]);
            return MPH_ERR_NOMEM;
        }
        opts->nconfigs++;
        return MPH_OK;
    }
    snprintf(errstr, errstr_size,
             "global table option %s: unknown (partitions, changelog.<topic "
             "config>)",
             name);
    return MPH_ERR_INVALID;
}

/* ------------------------------------------------------------------ */
/* memory and epochs                                                   */

static void *ht_malloc(size_t n)
{
    return malloc(n);
}

static void *ht_realloc(void *p, size_t old, size_t n, bool defer)
{
    (void)old;
    (void)defer; /* ck_ht never reallocates a published map */
    return realloc(p, n);
}

static void deferred_free_cb(ck_epoch_entry_t *e)
{
    gt_deferred_t *d = (gt_deferred_t *)e;
    GT_ACQUIRE(&d->gt->tsan_sync);
    free(d->p);
    free(d);
}

/* The table whose ck_malloc is being called: ck_ht hands no context, so the
 * reader thread (the only one that calls ck_ht's writing functions) notes
 * its table here. */
static __thread struct mph_global_table *gt_writing;

static void ht_free(void *p, size_t n, bool defer)
{
    (void)n;
    struct mph_global_table *gt = gt_writing;
    if (!p)
        return;
    if (!defer || !gt || !gt->wrec) {
        free(p);
        return;
    }
    gt_deferred_t *d = malloc(sizeof *d);
    if (!d) {
        /* Cannot defer: wait for every reader to leave, then free. */
        ck_epoch_synchronize(gt->wrec);
        GT_ACQUIRE(&gt->tsan_sync);
        free(p);
        return;
    }
    d->gt = gt;
    d->p = p;
    ck_epoch_call(gt->wrec, &d->epoch_entry, deferred_free_cb);
}

static void item_free_cb(ck_epoch_entry_t *e)
{
    gt_item_t *it = (gt_item_t *)e;
    GT_ACQUIRE(&it->gt->tsan_sync);
    free(it);
}

static void rec_release(void *p)
{
    ck_epoch_unregister(&((gt_rec_t *)p)->rec);
}

static gt_rec_t *rec_new(struct mph_global_table *gt)
{
    ck_epoch_record_t *r = ck_epoch_recycle(&gt->epoch, NULL);
    if (r)
        return (gt_rec_t *)r;
    gt_rec_t *g =
        aligned_alloc(CK_MD_CACHELINE, (sizeof *g + CK_MD_CACHELINE - 1) /
                                           CK_MD_CACHELINE * CK_MD_CACHELINE);
    if (!g)
        return NULL;
    memset(g, 0, sizeof *g);
    ck_epoch_register(&gt->epoch, &g->rec, NULL);
    pthread_mutex_lock(&gt->recs_lock);
    g->next_alloc = gt->recs;
    gt->recs = g;
    pthread_mutex_unlock(&gt->recs_lock);
    return g;
}

/* The calling thread's epoch record for gt (NULL: out of memory). */
static ck_epoch_record_t *my_rec(struct mph_global_table *gt)
{
    gt_rec_t *g = pthread_getspecific(gt->key);
    if (__builtin_expect(g != NULL, 1))
        return &g->rec;
    g = rec_new(gt);
    if (!g)
        return NULL;
    if (pthread_setspecific(gt->key, g) != 0) {
        ck_epoch_unregister(&g->rec);
        return NULL;
    }
    return &g->rec;
}

static void hash_of(struct mph_global_table *gt, ck_ht_hash_t *h,
                    const void *key, size_t klen)
{
    ck_ht_hash(h, &gt->ht, key, (uint16_t)klen);
}

/* ------------------------------------------------------------------ */
/* declaration                                                         */

mph_global_table_t *mph_app_global_table(const mph_app_t *app, const char *name)
{
    if (!app || !name)
        return NULL;
    for (size_t i = 0; i < app->nglobals; i++)
        if (!strcmp(app->globals[i]->name, name))
            return app->globals[i];
    return NULL;
}

const char *mph_global_table_name(const mph_global_table_t *gt)
{
    return gt ? gt->name : NULL;
}

mph_topic_t *mph_global_table_topic(const mph_global_table_t *gt)
{
    return gt ? gt->topic : NULL;
}

static void gt_free(struct mph_global_table *gt)
{
    if (!gt)
        return;
    if (gt->wrec) {
        /* No reader remains (the app is destroyed): run what is pending. */
        ck_epoch_barrier(gt->wrec);
    }
    if (gt->ht.map) {
        ck_ht_iterator_t it = CK_HT_ITERATOR_INITIALIZER;
        ck_ht_entry_t *e;
        while (ck_ht_next(&gt->ht, &it, &e))
            free(ck_ht_entry_value(e));
        gt_writing = NULL;
        ck_ht_destroy(&gt->ht);
    }
    if (gt->key_made)
        pthread_key_delete(gt->key);
    while (gt->recs) {
        gt_rec_t *n = gt->recs->next_alloc;
        free(gt->recs);
        gt->recs = n;
    }
    pthread_mutex_destroy(&gt->recs_lock);
    free(gt->target);
    free(gt->done);
    free(gt->name);
    free(gt);
}

mph_global_table_t *mph_global_table_new(mph_app_t *app, const char *name,
                                         const mph_global_table_opts_t *opts,
                                         char *errstr, size_t errstr_size)
{
    char tmp[256];
    if (!errstr || !errstr_size) {
        errstr = tmp;
        errstr_size = sizeof tmp;
    }
    if (!app || !name || !*name || strlen(name) > 200 || strchr(name, '/')) {
        snprintf(errstr, errstr_size,
                 "global table: a name of 1 to 200 characters without '/' is "
                 "needed");
        return NULL;
    }
    if (ck_pr_load_int(&app->state) != APP_NEW) {
        snprintf(errstr, errstr_size,
                 "global table %s: declare it before the app starts", name);
        return NULL;
    }
    if (mph_app_global_table(app, name) || mph_app_table(app, name)) {
        snprintf(errstr, errstr_size,
                 "global table %s: a table of that name is declared already",
                 name);
        return NULL;
    }
    struct mph_global_table **arr =
        realloc(app->globals, (app->nglobals + 1) * sizeof *arr);
    if (!arr) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    app->globals = arr;
    struct mph_global_table *gt = calloc(1, sizeof *gt);
    if (!gt) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&gt->recs_lock, NULL);
    gt->app = app;
    gt->name = strdup(name);
    gt->alloc.malloc = ht_malloc;
    gt->alloc.realloc = ht_realloc;
    gt->alloc.free = ht_free;
    gt->seed = 0x6d657068u ^ (uint64_t)strlen(name);
    ck_epoch_init(&gt->epoch);
    if (!gt->name || pthread_key_create(&gt->key, rec_release) != 0 ||
        !ck_ht_init(&gt->ht, CK_HT_MODE_BYTESTRING | CK_HT_WORKLOAD_DELETE,
                    NULL, &gt->alloc, 1024, gt->seed)) {
        snprintf(errstr, errstr_size, "global table %s: out of memory", name);
        gt_free(gt);
        return NULL;
    }
    gt->key_made = true;

    char topic[512];
    snprintf(topic, sizeof topic, "%s-%s-changelog", app->app_id, name);
    mph_topic_opts_t *to = mph_topic_opts_new();
    char num[16];
    mph_err_t err = to ? MPH_OK : MPH_ERR_NOMEM;
    if (!err)
        err = mph_topic_opts_set(to, "create", "true", errstr, errstr_size);
    if (!err && opts && opts->partitions > 0) {
        snprintf(num, sizeof num, "%d", opts->partitions);
        err = mph_topic_opts_set(to, "partitions", num, errstr, errstr_size);
    }
    if (!err)
        err = mph_topic_opts_set(to, "config.cleanup.policy", "compact", errstr,
                                 errstr_size);
    for (size_t i = 0; !err && opts && i < opts->nconfigs; i++) {
        char cname[300];
        snprintf(cname, sizeof cname, "config.%s", opts->configs[2 * i]);
        err = mph_topic_opts_set(to, cname, opts->configs[2 * i + 1], errstr,
                                 errstr_size);
    }
    if (!err)
        gt->topic = mph_topic_new(app, topic, to, errstr, errstr_size);
    mph_topic_opts_destroy(to);
    if (!gt->topic) {
        gt_free(gt);
        return NULL;
    }
    gt->topic->internal = true;
    app->globals[app->nglobals++] = gt;
    return gt;
}

/* ------------------------------------------------------------------ */
/* reads                                                               */

/* Looks key up inside the caller's epoch section: the item or NULL. */
static gt_item_t *find(struct mph_global_table *gt, const void *key,
                       size_t klen)
{
    ck_ht_hash_t h;
    ck_ht_entry_t e;
    hash_of(gt, &h, key, klen);
    ck_ht_entry_key_set(&e, key, (uint16_t)klen);
    if (!ck_ht_get_spmc(&gt->ht, h, &e))
        return NULL;
    gt_item_t *it = ck_ht_entry_value(&e);
    GT_ACQUIRE(it);
    return it;
}

/* Runs a read of key in an epoch section; fn copies what it needs. */
typedef mph_err_t(read_fn)(const gt_item_t *it, void *arg);

static mph_err_t with_item(mph_global_table_t *gt, const void *key,
                           size_t key_len, read_fn *fn, void *arg)
{
    if (!gt || (!key && key_len))
        return MPH_ERR_INVALID;
    if (key_len > GT_KEY_MAX)
        return MPH_ERR_NOENT; /* never stored */
    ck_epoch_record_t *r = my_rec(gt);
    if (!r)
        return MPH_ERR_NOMEM;
    ck_epoch_begin(r, NULL);
    gt_item_t *it = find(gt, key ? key : "", key_len);
    mph_err_t err = it ? fn(it, arg) : MPH_ERR_NOENT;
    ck_epoch_end(r, NULL);
    GT_RELEASE(&gt->tsan_sync);
    return err;
}

struct copy_arg {
    void *buf;
    size_t buf_size;
    void **out;
    size_t *len;
};

static mph_err_t copy_owned(const gt_item_t *it, void *arg)
{
    struct copy_arg *a = arg;
    void *v = malloc(it->vlen ? it->vlen : 1);
    if (!v)
        return MPH_ERR_NOMEM;
    memcpy(v, it->bytes + it->klen, it->vlen);
    *a->out = v;
    *a->len = it->vlen;
    return MPH_OK;
}

static mph_err_t copy_into(const gt_item_t *it, void *arg)
{
    struct copy_arg *a = arg;
    *a->len = it->vlen;
    if (it->vlen > a->buf_size)
        return MPH_ERR_RANGE;
    memcpy(a->buf, it->bytes + it->klen, it->vlen);
    return MPH_OK;
}

static mph_err_t found(const gt_item_t *it, void *arg)
{
    (void)it;
    (void)arg;
    return MPH_OK;
}

mph_err_t mph_global_table_get(mph_global_table_t *gt, const void *key,
                               size_t key_len, void **value, size_t *value_len)
{
    if (!value || !value_len)
        return MPH_ERR_INVALID;
    struct copy_arg a = {NULL, 0, value, value_len};
    return with_item(gt, key, key_len, copy_owned, &a);
}

mph_err_t mph_global_table_get_into(mph_global_table_t *gt, const void *key,
                                    size_t key_len, void *buf, size_t buf_size,
                                    size_t *value_len)
{
    if (!value_len || (!buf && buf_size))
        return MPH_ERR_INVALID;
    struct copy_arg a = {buf, buf_size, NULL, value_len};
    return with_item(gt, key, key_len, copy_into, &a);
}

bool mph_global_table_contains(mph_global_table_t *gt, const void *key,
                               size_t key_len)
{
    return with_item(gt, key, key_len, found, NULL) == MPH_OK;
}

size_t mph_global_table_count(const mph_global_table_t *gt)
{
    return gt ? (size_t)ck_pr_load_64((uint64_t *)&gt->count) : 0;
}

bool mph_global_table_ready(const mph_global_table_t *gt)
{
    return gt && ck_pr_load_int((int *)&gt->ready) == 1;
}

mph_err_t mph_global_table_wait_ready(const mph_global_table_t *gt,
                                      int timeout_ms)
{
    if (!gt)
        return MPH_ERR_INVALID;
    int64_t until = mph_clock_mono_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        if (mph_global_table_ready(gt))
            return MPH_OK;
        if (!mph_app_running(gt->app))
            return MPH_ERR_STATE;
        if (mph_clock_mono_ns() >= until)
            return MPH_ERR_TIMEOUT;
        usleep(5000);
    }
}

mph_err_t mph_global_table_foreach(mph_global_table_t *gt,
                                   mph_global_visit_fn *fn, void *opaque)
{
    if (!gt || !fn)
        return MPH_ERR_INVALID;
    ck_epoch_record_t *r = my_rec(gt);
    if (!r)
        return MPH_ERR_NOMEM;
    mph_err_t err = MPH_OK;
    ck_epoch_begin(r, NULL);
    /* ck_ht_next reads the map the iterator started on; the epoch section
     * keeps it (and every item it points to) alive until the end. */
    ck_ht_iterator_t it = CK_HT_ITERATOR_INITIALIZER;
    ck_ht_entry_t *e;
    while (err == MPH_OK && ck_ht_next(&gt->ht, &it, &e)) {
        gt_item_t *item = ck_ht_entry_value(e);
        if (!item)
            continue;
        GT_ACQUIRE(item);
        err = fn(item->bytes, item->klen, item->bytes + item->klen, item->vlen,
                 opaque);
    }
    ck_epoch_end(r, NULL);
    GT_RELEASE(&gt->tsan_sync);
    return err;
}

/* ------------------------------------------------------------------ */
/* writes from agents: to the changelog only                           */

mph_err_t mph_global_table_set(mph_event_t *ev, mph_global_table_t *gt,
                               const void *key, size_t key_len,
                               const void *value, size_t value_len)
{
    if (!ev || !gt || !key || (!value && value_len) ||
        gt->app != mph_event_app(ev))
        return MPH_ERR_INVALID;
    if (key_len > GT_KEY_MAX)
        return MPH_ERR_RANGE;
    /* A non-NULL pointer: an empty value is not a tombstone. */
    return mph_event_send(ev, gt->topic, MPH_PARTITION_ANY, key, key_len,
                          value ? value : "", value_len, NULL, 0);
}

mph_err_t mph_global_table_delete(mph_event_t *ev, mph_global_table_t *gt,
                                  const void *key, size_t key_len)
{
    if (!ev || !gt || !key || gt->app != mph_event_app(ev))
        return MPH_ERR_INVALID;
    if (key_len > GT_KEY_MAX)
        return MPH_ERR_RANGE;
    return mph_event_send(ev, gt->topic, MPH_PARTITION_ANY, key, key_len, NULL,
                          0, NULL, 0);
}

mph_err_t mph_table_join_global(mph_event_t *ev, mph_global_table_t *gt,
                                mph_key_fn *key_fn, mph_global_join_fn *fn,
                                void *opaque)
{
    if (!ev || !gt || !key_fn || !fn)
        return MPH_ERR_INVALID;
    const void *key = NULL;
    size_t klen = 0;
    mph_err_t err = key_fn(ev, &key, &klen, opaque);
    if (err == MPH_ERR_NOENT)
        return MPH_OK;
    if (err)
        return err;
    if (!key)
        return fn(ev, NULL, 0, opaque); /* nothing to look up */
    /* Copy out (small values on the stack) so that fn runs outside the
     * epoch section: it may send and block on back-pressure. */
    unsigned char small[512];
    size_t vlen = 0;
    err = mph_global_table_get_into(gt, key, klen, small, sizeof small, &vlen);
    if (err == MPH_ERR_NOENT)
        return fn(ev, NULL, 0, opaque);
    if (err == MPH_OK)
        return fn(ev, small, vlen, opaque);
    if (err != MPH_ERR_RANGE)
        return err;
    void *big = NULL;
    err = mph_global_table_get(gt, key, klen, &big, &vlen);
    if (err == MPH_ERR_NOENT)
        return fn(ev, NULL, 0, opaque);
    if (err)
        return err;
    err = fn(ev, big, vlen, opaque);
    free(big);
    return err;
}

/* ------------------------------------------------------------------ */
/* the reader thread: the copy's only writer                           */

static void apply(struct mph_global_table *gt, const rd_kafka_message_t *m)
{
    if (!m->key || m->key_len > GT_KEY_MAX) {
        gt->skipped++;
        mph_log_limited(
            &gt->log_lim, 5000, MPH_LOG_WARN,
            "global table %s: skipped the record at %s [%d] offset %lld: %s",
            gt->name, gt->topic->name, (int)m->partition, (long long)m->offset,
            m->key ? "key longer than 65535 bytes" : "null key");
        return;
    }
    ck_ht_hash_t h;
    ck_ht_entry_t e;
    hash_of(gt, &h, m->key, m->key_len);
    if (!m->payload) { /* tombstone */
        ck_ht_entry_key_set(&e, m->key, (uint16_t)m->key_len);
        if (ck_ht_remove_spmc(&gt->ht, h, &e)) {
            gt_item_t *old = ck_ht_entry_value(&e);
            ck_epoch_call(gt->wrec, &old->epoch_entry, item_free_cb);
            ck_pr_store_64(&gt->count, ck_pr_load_64(&gt->count) - 1);
            gt->deletes_since_gc++;
        }
        return;
    }
    gt_item_t *it = malloc(sizeof *it + m->key_len + m->len);
    if (!it) {
        gt->skipped++;
        mph_log_limited(&gt->log_lim, 5000, MPH_LOG_ERROR,
                        "global table %s: out of memory applying offset %lld",
                        gt->name, (long long)m->offset);
        return;
    }
    it->gt = gt;
    it->klen = m->key_len;
    it->vlen = m->len;
    memcpy(it->bytes, m->key, m->key_len);
    memcpy(it->bytes + m->key_len, m->payload, m->len);
    GT_RELEASE(it);
    ck_ht_entry_set(&e, h, it->bytes, (uint16_t)it->klen, it);
    if (!ck_ht_set_spmc(&gt->ht, h, &e)) {
        free(it);
        gt->skipped++;
        mph_log_limited(
            &gt->log_lim, 5000, MPH_LOG_ERROR,
            "global table %s: out of memory growing the copy at offset %lld",
            gt->name, (long long)m->offset);
        return;
    }
    gt_item_t *old = ck_ht_entry_empty(&e) ? NULL : ck_ht_entry_value(&e);
    if (old && old != it)
        ck_epoch_call(gt->wrec, &old->epoch_entry, item_free_cb);
    else
        ck_pr_store_64(&gt->count, ck_pr_load_64(&gt->count) + 1);
}

static void mark_done(struct mph_global_table *gt, int32_t p)
{
    if (p < 0 || p >= gt->nparts || gt->done[p])
        return;
    gt->done[p] = true;
    if (++gt->ndone == gt->nparts) {
        ck_pr_store_int(&gt->ready, 1);
        mph_log(MPH_LOG_INFO, "global table %s: bootstrapped (%llu keys)",
                gt->name, (unsigned long long)ck_pr_load_64(&gt->count));
    }
}

static void *reader_main(void *arg)
{
    struct mph_global_table *gt = arg;
    gt_writing = gt;
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(gt->consumer);
    rd_kafka_message_t *msgs[GT_BATCH];
    while (!ck_pr_load_int(&gt->stop)) {
        ssize_t n = rd_kafka_consume_batch_queue(q, 100, msgs, GT_BATCH);
        for (ssize_t i = 0; i < n; i++) {
            rd_kafka_message_t *m = msgs[i];
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                mark_done(gt, m->partition);
            } else if (m->err) {
                mph_log_limited(&gt->log_lim, 5000, MPH_LOG_WARN,
                                "global table %s: consumer: %s", gt->name,
                                rd_kafka_message_errstr(m));
            } else {
                apply(gt, m);
                if (m->partition >= 0 && m->partition < gt->nparts &&
                    m->offset + 1 >= gt->target[m->partition])
                    mark_done(gt, m->partition);
            }
            rd_kafka_message_destroy(m);
        }
        if (gt->deletes_since_gc > 4096 &&
            gt->deletes_since_gc > ck_pr_load_64(&gt->count)) {
            ck_ht_gc(&gt->ht, 0, gt->seed);
            gt->deletes_since_gc = 0;
        }
        ck_epoch_poll(gt->wrec);
    }
    rd_kafka_queue_destroy(q);
    return NULL;
}

static mph_err_t reader_start(struct mph_global_table *gt, char *errstr,
                              size_t errstr_size)
{
    mph_app_t *app = gt->app;
    int timeout =
        (int)(app->shutdown_timeout_ms < 5000 ? 5000
                                              : app->shutdown_timeout_ms);
    gt->nparts = gt->topic->partitions;
    free(gt->target);
    free(gt->done);
    gt->target = calloc((size_t)gt->nparts, sizeof *gt->target);
    gt->done = calloc((size_t)gt->nparts, sizeof *gt->done);
    gt->ndone = 0;
    ck_pr_store_int(&gt->ready, 0);
    if (!gt->target || !gt->done)
        return MPH_ERR_NOMEM;
    if (!gt->wrec) {
        gt_rec_t *g = rec_new(gt);
        if (!g)
            return MPH_ERR_NOMEM;
        gt->wrec = &g->rec;
    }
    rd_kafka_conf_t *kc = mph__kafka_conf_new(
        app->kenv, app->conf, MPH__KAFKA_CONSUMER, errstr, errstr_size);
    if (!kc)
        return MPH_ERR_INVALID;
    if (mph__kafka_conf_set(kc, "enable.partition.eof", "true", errstr,
                            errstr_size) ||
        mph__kafka_conf_set(kc, "auto.offset.reset", "earliest", errstr,
                            errstr_size)) {
        rd_kafka_conf_destroy(kc);
        return MPH_ERR_INVALID;
    }
    gt->consumer = mph__kafka_new(kc, MPH__KAFKA_CONSUMER, errstr, errstr_size);
    if (!gt->consumer)
        return MPH_ERR_INVALID;
    rd_kafka_topic_partition_list_t *parts =
        rd_kafka_topic_partition_list_new(gt->nparts);
    for (int32_t p = 0; p < gt->nparts; p++) {
        int64_t lo = 0, hi = 0;
        mph_err_t err = mph__kafka_watermarks(gt->consumer, gt->topic->name, p,
                                              &lo, &hi, timeout);
        if (err) {
            snprintf(errstr, errstr_size,
                     "global table %s: cannot read the end of %s [%d]: %s",
                     gt->name, gt->topic->name, (int)p, mph_err_str(err));
            rd_kafka_topic_partition_list_destroy(parts);
            return err;
        }
        gt->target[p] = hi;
        rd_kafka_topic_partition_list_add(parts, gt->topic->name, p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
        if (hi <= lo)
            mark_done(gt, p);
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(gt->consumer, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (e) {
        snprintf(errstr, errstr_size, "global table %s: assign: %s", gt->name,
                 rd_kafka_err2str(e));
        return mph__kafka_err(e);
    }
    ck_pr_store_int(&gt->stop, 0);
    if (pthread_create(&gt->thread, NULL, reader_main, gt) != 0) {
        snprintf(errstr, errstr_size,
                 "global table %s: cannot start its thread", gt->name);
        return MPH_ERR_NOMEM;
    }
    gt->thread_running = true;
    return MPH_OK;
}

static void reader_stop(struct mph_global_table *gt)
{
    if (gt->thread_running) {
        ck_pr_store_int(&gt->stop, 1);
        pthread_join(gt->thread, NULL);
        gt->thread_running = false;
    }
    if (gt->consumer) {
        rd_kafka_destroy_flags(gt->consumer,
                               RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        gt->consumer = NULL;
    }
}

mph_err_t mph__globals_start(mph_app_t *app, char *errstr, size_t errstr_size)
{
    for (size_t i = 0; i < app->nglobals; i++) {
        mph_err_t err = reader_start(app->globals[i], errstr, errstr_size);
        if (err) {
            mph__globals_stop(app);
            return err;
        }
    }
    return MPH_OK;
}

void mph__globals_stop(mph_app_t *app)
{
    for (size_t i = 0; i < app->nglobals; i++)
        reader_stop(app->globals[i]);
}

bool mph__globals_ready(const mph_app_t *app)
{
    for (size_t i = 0; i < app->nglobals; i++)
        if (!mph_global_table_ready(app->globals[i]))
            return false;
    return true;
}

void mph__globals_free(mph_app_t *app)
{
    mph__globals_stop(app);
    for (size_t i = 0; i < app->nglobals; i++)
        gt_free(app->globals[i]);
    free(app->globals);
    app->globals = NULL;
    app->nglobals = 0;
}
