/*
 * DESIGN — joins (include/mephisto/join.h has the semantics).
 *
 * All three joins are layers over the table machinery, so that changelogs,
 * recovery, checkpoints and exactly_once rollback come for free and no new
 * durable state exists outside a table shard.
 *
 * Stream–table: an agent on the stream reads the table's shard of the
 * event's partition (mph__table_event_shard: a raw shard read, so a table
 * default does not count as a value). Co-partitioning makes that shard
 * the one that holds the key.
 *
 * Table–table: table.c calls mph__join_table_changed after every successful
 * write of a table that takes part in a join (the `joined` flag), with the
 * event that made it; the other side is read from its shard of the same
 * partition and the result is sent from that event.
 *
 * Stream–stream: one agent subscribed to both topics, and one internal
 * table `<name>-join` whose shard p buffers both sides of partition p:
 *   'L' + key  ->  the left records of key still in their window
 *   'R' + key  ->  the right records of key
 * A list is a sequence of entries [ts i64][offset i64][flags u8][len u32]
 * [value], in processing order. The offset identifies the record on its
 * side of the partition: a record processed again after a crash (at least
 * once: the shard may be ahead of the committed offsets) finds its own
 * entry, joins again (duplicates are what at_least_once allows) but is
 * not buffered twice. flags bit 0 says "has paired": only
 * needed on sides whose unmatched records are emitted (left: LEFT and
 * OUTER; right: OUTER), so an inner join never rewrites the other side.
 * Per event: one read of each side's list (the other side's read in place
 * unless pairing marks it) and one write of the own list.
 *
 * Stream time is not stored: it is the time of the latest buffered record.
 * The record that moves stream time is never late, so it is buffered, and
 * it stays until stream time passes its time + before + after + grace,
 * which takes a later record, buffered in turn. So the buffer always holds
 * the record that set stream time, and the rebuild below (after recovery,
 * restart or rollback) finds stream time exactly where the shard's
 * contents put it.
 *
 * Expiry needs "which keys hold records whose window became final", in time
 * order. That index is derived state in shard->ext (the slot window.c also
 * uses; the table layer frees it on recovery, reset and rollback, and we
 * rebuild it lazily from the shard by one pass): a binary min-heap of
 * (due time, storage key) such that every non-empty list has a node no
 * later than its earliest entry's due time: a node is pushed when a list
 * gets its first entry or one due earlier than the rest. When stream
 * time passes a node's due time, its key's list is read, final entries are
 * removed (and emitted when unmatched), the rest written back, and a node
 * for the earliest remaining due time pushed again. Stale nodes (the entry
 * already gone) cost one read. A record's due time is
 * ts + before + after + grace: no record still accepted (not late) can pair
 * with it after that, so "emitted unmatched" is final and pairs are never
 * lost to expiry.
 *
 * Never: take a lock or touch another worker's shard on the event path;
 * keep a pointer from mph__shard_get across another call on that shard
 * (the other side's list is read in place only while the joiner runs, which
 * must not touch this join's tables; a list about to be rewritten is
 * copied into the ext's buffers first).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ck_pr.h>

#include "mephisto/join.h"
#include "mephisto/window.h"
#include "runtime/app.h"
#include "runtime/join.h"
#include "runtime/table.h"
#include "runtime/worker.h"
#include "state/shard.h"
#include "state/store_memory.h"

enum { J_STREAM_TABLE = 0, J_WINDOWED = 1, J_TABLES = 2 };

#define TIME_MAX_MS ((int64_t)1 << 41)
#define ENTRY_HDR   21
#define F_MATCHED   1u

/* One cache line of counters per worker: each worker adds to its own. */
typedef struct jctr {
    int64_t v[8];
} jctr_t;

struct mph_join {
    mph_app_t *app;
    char *name;
    int type;
    mph_join_kind_t kind;
    mph_topic_t *left, *right, *out; /* stream topics (right: windowed only) */
    mph_table_t *ltab, *rtab; /* stream–table: rtab; table–table: both */
    mph_table_t *store;       /* windowed: the buffer */
    int64_t before, after, grace;
    mph_joiner_fn *fn;
    void *opaque;
    int nctr;
    jctr_t *ctr;
    struct mph_join *next;
};

struct mph_join_out {
    unsigned char *buf;
    size_t len, cap;
    bool set;
    unsigned char inl[256];
};

static void set_errstr(char *errstr, size_t size, const char *fmt, ...)
    MPH_PRINTF(3, 4);
static void set_errstr(char *errstr, size_t size, const char *fmt, ...)
{
    if (!errstr || !size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, size, fmt, ap);
    va_end(ap);
}

static void count(mph_join_t *j, mph_event_t *ev, mph_join_stat_t which,
                  int64_t by)
{
    int w = mph_event_worker(ev);
    if (w < 0 || w >= j->nctr)
        w = 0;
    /* Only worker w writes its slot; readers load it (mph_join_stat). */
    int64_t *p = &j->ctr[w].v[which];
    ck_pr_store_64((uint64_t *)p,
                   (uint64_t)(ck_pr_load_64((uint64_t *)p) + (uint64_t)by));
}

int64_t mph_join_stat(const mph_join_t *j, mph_join_stat_t which)
{
    if (!j || (int)which < 0 || which >= MPH_JOIN_STAT__COUNT)
        return -1;
    int64_t sum = 0;
    for (int i = 0; i < j->nctr; i++)
        sum += (int64_t)ck_pr_load_64((uint64_t *)&j->ctr[i].v[which]);
    return sum;
}

const char *mph_join_name(const mph_join_t *j)
{
    return j ? j->name : NULL;
}

mph_table_t *mph_join_store(const mph_join_t *j)
{
    return j ? j->store : NULL;
}

/* A state store that failed (RocksDB, a full disk, memory) under a join:
 * the event cannot be processed correctly whatever the agent error policy
 * says, so, as table.c does for table calls, the worker stops processing
 * (the event stays uncommitted) and the app stops. Returns err. */
static mph_err_t store_result(mph_join_t *j, mph_event_t *ev, mph_err_t err)
{
    if (err != MPH_ERR_STORE && err != MPH_ERR_DISK_FULL &&
        err != MPH_ERR_NOMEM)
        return err;
    mph__worker_t *w = ev->worker;
    if (!w->failed) {
        w->failed = true;
        mph__app_fail(j->app, err,
                      "join %s: the state store failed on %s [%d] offset %lld: "
                      "%s; stopping "
                      "without committing past the event",
                      j->name, mph_topic_name(mph_event_topic(ev)),
                      (int)mph_event_partition(ev),
                      (long long)mph_event_offset(ev), mph_err_str(err));
    }
    return err;
}

/* ------------------------------------------------------------------ */
/* output                                                             */

mph_err_t mph_join_out_set(mph_join_out_t *out, const void *value, size_t len)
{
    if (!out || (!value && len))
        return MPH_ERR_INVALID;
    if (len > out->cap) {
        unsigned char *b = out->buf == out->inl ? NULL : out->buf;
        b = realloc(b, len);
        if (!b)
            return MPH_ERR_NOMEM;
        out->buf = b;
        out->cap = len;
    }
    if (len)
        memcpy(out->buf, value, len);
    out->len = len;
    out->set = true;
    return MPH_OK;
}

/* Calls the joiner and sends what it sets. left/right NULL: absent. */
/* Sends the join function's output for one pair (or one unmatched side),
 * timestamped ts (Kafka Streams' rule: a pair carries the later of its two
 * records' timestamps, an unmatched record its own); ts < 0: the event's. */
static mph_err_t emit(mph_join_t *j, mph_event_t *ev, int64_t ts, const void *key,
                      size_t klen, const void *l, size_t ll, const void *r,
                      size_t rl)
{
    mph_join_out_t out;
    out.buf = out.inl;
    out.cap = sizeof out.inl;
    out.len = 0;
    out.set = false;
    mph_err_t err = j->fn(ev, key, klen, l, ll, r, rl, &out, j->opaque);
    if (!err && out.set)
        err = mph_event_send_ts(ev, j->out, MPH_PARTITION_ANY, key, klen, out.buf,
                                out.len, NULL, 0, ts);
    if (out.buf != out.inl)
        free(out.buf);
    if (!err)
        count(j, ev, l && r ? MPH_JOIN_STAT_PAIRS : MPH_JOIN_STAT_UNMATCHED, 1);
    return err;
}

static mph_err_t send_tombstone(mph_join_t *j, mph_event_t *ev, const void *key,
                                size_t klen)
{
    return mph_event_send(ev, j->out, MPH_PARTITION_ANY, key, klen, NULL, 0,
                          NULL, 0);
}

/* ------------------------------------------------------------------ */
/* declaring                                                          */

static void join_free(void *p)
{
    mph_join_t *j = p;
    if (!j)
        return;
    free(j->name);
    free(j->ctr);
    free(j);
}

static mph_err_t agent_fn(mph_event_t *ev, void *opaque);

static mph_join_t *join_new(mph_app_t *app, const char *name, int type,
                            mph_join_kind_t kind, mph_topic_t *out,
                            mph_joiner_fn *fn, void *opaque, char *errstr,
                            size_t errstr_size)
{
    if (!app || !name || !*name || !out || !fn) {
        set_errstr(errstr, errstr_size,
                   "join %s: app, name, output topic and joiner are required",
                   name ? name : "(null)");
        return NULL;
    }
    if (ck_pr_load_int(&app->state) != APP_NEW) {
        set_errstr(errstr, errstr_size,
                   "join %s: the app has started; declare joins before", name);
        return NULL;
    }
    if (kind != MPH_JOIN_INNER && kind != MPH_JOIN_LEFT &&
        !(kind == MPH_JOIN_OUTER && type == J_WINDOWED)) {
        set_errstr(errstr, errstr_size,
                   "join %s: kind %d is not supported by this join", name,
                   (int)kind);
        return NULL;
    }
    for (mph_join_t *o = app->joins; o; o = o->next)
        if (!strcmp(o->name, name)) {
            set_errstr(errstr, errstr_size, "join %s: already declared", name);
            return NULL;
        }
    mph_join_t *j = calloc(1, sizeof *j);
    if (j) {
        j->name = strdup(name);
        j->nctr = app->nworkers > 0 ? app->nworkers : 1;
        j->ctr = calloc((size_t)j->nctr, sizeof *j->ctr);
    }
    if (!j || !j->name || !j->ctr) {
        join_free(j);
        set_errstr(errstr, errstr_size, "join %s: out of memory", name);
        return NULL;
    }
    j->app = app;
    j->type = type;
    j->kind = kind;
    j->out = out;
    j->fn = fn;
    j->opaque = opaque;
    return j;
}

size_t mph__joins_list(const mph_app_t *app, const mph_join_t **out, size_t max)
{
    size_t n = 0;
    for (const mph_join_t *j = app->joins; j; j = j->next)
        n++;
    /* The list is newest first. */
    size_t i = n;
    for (const mph_join_t *j = app->joins; j; j = j->next) {
        i--;
        if (i < max)
            out[i] = j;
    }
    return n;
}

/* Registers j with the app (freed with it), before anything (an agent)
 * may point at it. */
static mph_join_t *join_register(mph_join_t *j, char *errstr,
                                 size_t errstr_size)
{
    if (mph_app_keep(j->app, j, join_free) != MPH_OK) {
        set_errstr(errstr, errstr_size, "join %s: out of memory", j->name);
        join_free(j);
        return NULL;
    }
    j->next = j->app->joins;
    j->app->joins = j;
    return j;
}

/* A declaration that failed after join_register: j leaves the app's list
 * (so nothing checks or calls it) but stays kept, since an agent declared
 * on the way may hold it; it is freed with the app. Returns NULL. */
static mph_join_t *join_abandon(mph_join_t *j)
{
    j->app->joins = j->next; /* registered last, so at the head */
    j->next = NULL;
    return NULL;
}

mph_join_t *mph_join_stream_table(mph_app_t *app, const char *name,
                                  mph_topic_t *stream, mph_table_t *table,
                                  mph_join_kind_t kind, mph_topic_t *output,
                                  mph_joiner_fn *fn, void *opaque, char *errstr,
                                  size_t errstr_size)
{
    if (!stream || !table) {
        set_errstr(errstr, errstr_size,
                   "join %s: stream and table are required",
                   name ? name : "(null)");
        return NULL;
    }
    mph_join_t *j = join_new(app, name, J_STREAM_TABLE, kind, output, fn,
                             opaque, errstr, errstr_size);
    if (!j)
        return NULL;
    j->left = stream;
    j->rtab = table;
    if (!join_register(j, errstr, errstr_size))
        return NULL;
    if (!mph_agent_new(app, name, stream, agent_fn, j, errstr, errstr_size))
        return join_abandon(j);
    return j;
}

mph_join_t *mph_join_windowed(mph_app_t *app, const char *name,
                              mph_topic_t *left, mph_topic_t *right,
                              mph_join_kind_t kind, int64_t before_ms,
                              int64_t after_ms, int64_t grace_ms,
                              mph_topic_t *output, mph_joiner_fn *fn,
                              void *opaque, char *errstr, size_t errstr_size)
{
    if (!left || !right || left == right) {
        set_errstr(errstr, errstr_size,
                   "join %s: two different topics are required",
                   name ? name : "(null)");
        return NULL;
    }
    if (before_ms < 0 || after_ms < 0 || grace_ms < 0 ||
        before_ms > TIME_MAX_MS || after_ms > TIME_MAX_MS ||
        grace_ms > TIME_MAX_MS) {
        set_errstr(errstr, errstr_size,
                   "join %s: before_ms, after_ms and grace_ms must be in "
                   "0..2^41 (got %lld, "
                   "%lld, %lld)",
                   name ? name : "(null)", (long long)before_ms,
                   (long long)after_ms, (long long)grace_ms);
        return NULL;
    }
    mph_join_t *j = join_new(app, name, J_WINDOWED, kind, output, fn, opaque,
                             errstr, errstr_size);
    if (!j)
        return NULL;
    j->left = left;
    j->right = right;
    j->before = before_ms;
    j->after = after_ms;
    j->grace = grace_ms;
    if (!join_register(j, errstr, errstr_size))
        return NULL;
    char tname[512];
    snprintf(tname, sizeof tname, "%s-join", name);
    j->store = mph_table_new(app, tname, NULL, errstr, errstr_size);
    mph_agent_t *a = j->store ? mph_agent_new(app, name, left, agent_fn, j,
                                              errstr, errstr_size)
                              : NULL;
    if (!a)
        return join_abandon(j);
    if (mph_agent_subscribe(a, right) != MPH_OK) {
        set_errstr(errstr, errstr_size, "join %s: cannot subscribe to %s", name,
                   mph_topic_name(right));
        return join_abandon(j);
    }
    return j;
}

mph_join_t *mph_join_tables(mph_app_t *app, const char *name, mph_table_t *left,
                            mph_table_t *right, mph_join_kind_t kind,
                            mph_topic_t *output, mph_joiner_fn *fn,
                            void *opaque, char *errstr, size_t errstr_size)
{
    if (!left || !right || left == right) {
        set_errstr(errstr, errstr_size,
                   "join %s: two different tables are required",
                   name ? name : "(null)");
        return NULL;
    }
    mph_join_t *j = join_new(app, name, J_TABLES, kind, output, fn, opaque,
                             errstr, errstr_size);
    if (!j)
        return NULL;
    j->ltab = left;
    j->rtab = right;
    if (!join_register(j, errstr, errstr_size))
        return NULL;
    left->joined = true;
    right->joined = true;
    return j;
}

/* ------------------------------------------------------------------ */
/* start: co-partitioning                                             */

static int table_parts(mph_app_t *app, mph_table_t *t)
{
    return t->opts.partitions > 0
               ? t->opts.partitions
               : (int)mph_conf_get_int(app->conf, "topic_partitions", 8);
}

static bool windowed(mph_join_t *j, mph_table_t *t, char *errstr,
                     size_t errstr_size)
{
    if (!mph_table_window(t))
        return false;
    set_errstr(errstr, errstr_size,
               "join %s: table %s is windowed; joins take plain tables (a "
               "windowed table's keys "
               "are (window, key) pairs)",
               j->name, mph_table_name(t));
    return true;
}

static mph_err_t mismatch(mph_join_t *j, const char *a, int na, const char *b,
                          int nb, char *errstr, size_t errstr_size)
{
    set_errstr(errstr, errstr_size,
               "join %s: %s (%d partitions) and %s (%d partitions) are not "
               "co-partitioned: a join "
               "needs the same partition count (and the murmur2 partitioner) "
               "on both sides",
               j->name, a, na, b, nb);
    return MPH_ERR_INVALID;
}

mph_err_t mph__joins_prepare(mph_app_t *app, char *errstr, size_t errstr_size)
{
    if (!app->joins)
        return MPH_OK;
    const char *part = mph_conf_get(app->conf, "kafka.partitioner");
    for (mph_join_t *j = app->joins; j; j = j->next) {
        if (part && *part && strcmp(part, "murmur2_random") &&
            strcmp(part, "murmur2")) {
            set_errstr(errstr, errstr_size,
                       "join %s: kafka.partitioner=%s: joins need keys placed "
                       "by murmur2 (as "
                       "tables and the Java client place them) on both sides",
                       j->name, part);
            return MPH_ERR_INVALID;
        }
        if (j->type == J_STREAM_TABLE) {
            if (windowed(j, j->rtab, errstr, errstr_size))
                return MPH_ERR_INVALID;
            int a = mph_topic_partitions(j->left),
                b = table_parts(app, j->rtab);
            if (a != b)
                return mismatch(j, mph_topic_name(j->left), a,
                                mph_table_changelog(j->rtab), b, errstr,
                                errstr_size);
        } else if (j->type == J_WINDOWED) {
            int a = mph_topic_partitions(j->left),
                b = mph_topic_partitions(j->right);
            if (a != b)
                return mismatch(j, mph_topic_name(j->left), a,
                                mph_topic_name(j->right), b, errstr,
                                errstr_size);
            /* The buffer follows the topics. */
            j->store->opts.partitions = a;
        } else {
            if (windowed(j, j->ltab, errstr, errstr_size) ||
                windowed(j, j->rtab, errstr, errstr_size))
                return MPH_ERR_INVALID;
            int a = table_parts(app, j->ltab), b = table_parts(app, j->rtab);
            if (a != b)
                return mismatch(j, mph_table_changelog(j->ltab), a,
                                mph_table_changelog(j->rtab), b, errstr,
                                errstr_size);
        }
    }
    return MPH_OK;
}

/* ------------------------------------------------------------------ */
/* stream–table                                                       */

static mph_err_t stream_table(mph_join_t *j, mph_event_t *ev)
{
    size_t klen = 0, vlen = 0;
    const void *key = mph_event_key(ev, &klen);
    const void *val = mph_event_value(ev, &vlen);
    mph__shard_t *sh = mph__table_event_shard(ev, j->rtab);
    if (!sh)
        return MPH_ERR_PARTITION;
    const void *tv = NULL;
    size_t tl = 0;
    mph_err_t err = MPH_ERR_NOENT;
    if (key && klen <= MPH__MSTORE_KEY_MAX) {
        mph__table_count_op(ev, j->rtab, 0);
        err = mph__shard_get(sh, key, klen, &tv, &tl);
    }
    if (err == MPH_ERR_NOENT) {
        mph__table_count_op(ev, j->rtab, 3);
        if (j->kind == MPH_JOIN_INNER)
            return MPH_OK;
        tv = NULL;
        tl = 0;
    } else if (err) {
        return err;
    }
    return emit(j, ev, -1, key ? key : "", klen, val ? val : "", vlen,
                tv ? tv : NULL, tl);
}

/* ------------------------------------------------------------------ */
/* table–table                                                        */

static mph_err_t other_value(mph_event_t *ev, mph_table_t *t, const void *key,
                             size_t klen, const void **v, size_t *vl)
{
    mph__shard_t *sh = mph__table_event_shard(ev, t);
    if (!sh)
        return MPH_ERR_PARTITION;
    mph__table_count_op(ev, t, 0);
    mph_err_t err = mph__shard_get(sh, key, klen, v, vl);
    if (err == MPH_ERR_NOENT) {
        *v = NULL;
        *vl = 0;
        return MPH_OK;
    }
    return err;
}

mph_err_t mph__join_table_changed(mph_event_t *ev, mph_table_t *t,
                                  const void *key, size_t klen,
                                  const void *value, size_t vlen)
{
    mph_app_t *app = mph_event_app(ev);
    for (mph_join_t *j = app->joins; j; j = j->next) {
        if (j->type != J_TABLES || (j->ltab != t && j->rtab != t))
            continue;
        bool is_left = j->ltab == t;
        const void *o = NULL;
        size_t ol = 0;
        mph_err_t err =
            other_value(ev, is_left ? j->rtab : j->ltab, key, klen, &o, &ol);
        if (err)
            return err;
        const void *l = is_left ? value : o, *r = is_left ? o : value;
        size_t ll = is_left ? vlen : ol, rl = is_left ? ol : vlen;
        if (l && !ll)
            l = "";
        if (r && !rl)
            r = "";
        if (j->kind == MPH_JOIN_INNER) {
            if (l && r)
                err = emit(j, ev, -1, key, klen, l, ll, r, rl);
            else if (!value && o) /* a delete ended a joined pair */
                err = send_tombstone(j, ev, key, klen);
        } else if (is_left) {
            err = value ? emit(j, ev, -1, key, klen, l, ll, r, rl)
                        : send_tombstone(j, ev, key, klen);
        } else if (l) {
            err = emit(j, ev, -1, key, klen, l, ll, r, rl);
        }
        if (err)
            return store_result(j, ev, err);
    }
    return MPH_OK;
}

/* ------------------------------------------------------------------ */
/* stream–stream: the per-shard index (shard->ext)                    */

typedef struct hnode {
    int64_t due;
    uint32_t klen;
    unsigned char *key; /* storage key: side byte + user key (owned) */
} hnode_t;

typedef struct jext {
    bool have_st;
    int64_t st;
    hnode_t *heap;
    size_t n, cap;
    /* copies of the two lists of the key being processed */
    unsigned char *own, *oth;
    size_t own_len, own_cap, oth_len, oth_cap;
    unsigned char *kbuf;
    size_t kcap;
} jext_t;

static void put64(unsigned char *p, int64_t v)
{
    uint64_t u = (uint64_t)v;
    for (int i = 7; i >= 0; i--, u >>= 8)
        p[i] = (unsigned char)u;
}

static int64_t get64(const unsigned char *p)
{
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u = u << 8 | p[i];
    return (int64_t)u;
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

static void ext_free(void *p)
{
    jext_t *x = p;
    if (!x)
        return;
    for (size_t i = 0; i < x->n; i++)
        free(x->heap[i].key);
    free(x->heap);
    free(x->own);
    free(x->oth);
    free(x->kbuf);
    free(x);
}

static bool hless(const hnode_t *a, const hnode_t *b)
{
    return a->due < b->due;
}

static mph_err_t heap_push(jext_t *x, int64_t due, const unsigned char *key,
                           size_t klen)
{
    if (x->n == x->cap) {
        size_t nc = x->cap ? x->cap * 2 : 64;
        hnode_t *h = realloc(x->heap, nc * sizeof *h);
        if (!h)
            return MPH_ERR_NOMEM;
        x->heap = h;
        x->cap = nc;
    }
    unsigned char *k = malloc(klen ? klen : 1);
    if (!k)
        return MPH_ERR_NOMEM;
    memcpy(k, key, klen);
    size_t i = x->n++;
    x->heap[i] = (hnode_t){due, (uint32_t)klen, k};
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hless(&x->heap[i], &x->heap[p]))
            break;
        hnode_t t = x->heap[i];
        x->heap[i] = x->heap[p];
        x->heap[p] = t;
        i = p;
    }
    return MPH_OK;
}

/* Removes the top node; its key becomes the caller's. */
static hnode_t heap_pop(jext_t *x)
{
    hnode_t top = x->heap[0];
    x->heap[0] = x->heap[--x->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < x->n && hless(&x->heap[l], &x->heap[m]))
            m = l;
        if (r < x->n && hless(&x->heap[r], &x->heap[m]))
            m = r;
        if (m == i)
            break;
        hnode_t t = x->heap[i];
        x->heap[i] = x->heap[m];
        x->heap[m] = t;
        i = m;
    }
    return top;
}

static mph_err_t copy_into(unsigned char **buf, size_t *cap, size_t *len,
                           const void *src, size_t n, size_t extra)
{
    if (n + extra > *cap) {
        size_t nc = *cap ? *cap : 256;
        while (nc < n + extra)
            nc *= 2;
        unsigned char *b = realloc(*buf, nc);
        if (!b)
            return MPH_ERR_NOMEM;
        *buf = b;
        *cap = nc;
    }
    if (n)
        memcpy(*buf, src, n);
    *len = n;
    return MPH_OK;
}

static int64_t due_of(const mph_join_t *j, int64_t ts)
{
    return ts + j->before + j->after + j->grace;
}

/* Checks a stored list's framing; false for a corrupt one. */
static bool list_ok(const unsigned char *p, size_t len)
{
    size_t o = 0;
    while (o < len) {
        if (len - o < ENTRY_HDR)
            return false;
        uint32_t vl = get32(p + o + 17);
        if (len - o - ENTRY_HDR < vl)
            return false;
        o += ENTRY_HDR + vl;
    }
    return true;
}

struct build_ctx {
    const mph_join_t *j;
    jext_t *x;
    mph_err_t err;
};

static mph_err_t build_one(const void *key, size_t klen, const void *val,
                           size_t vlen, void *opaque)
{
    struct build_ctx *c = opaque;
    const unsigned char *k = key, *v = val;
    if (klen < 1 || (k[0] != 'L' && k[0] != 'R') || !list_ok(v, vlen) || !vlen)
        return MPH_OK;
    int64_t due = INT64_MAX;
    for (size_t o = 0; o < vlen; o += ENTRY_HDR + get32(v + o + 17)) {
        int64_t ts = get64(v + o), d = due_of(c->j, ts);
        if (d < due)
            due = d;
        /* Stream time is the latest buffered record's time (see DESIGN). */
        if (!c->x->have_st || ts > c->x->st) {
            c->x->have_st = true;
            c->x->st = ts;
        }
    }
    c->err = heap_push(c->x, due, k, klen);
    return c->err;
}

static jext_t *ext_of(mph_join_t *j, mph__shard_t *sh, mph_err_t *err)
{
    if (sh->ext)
        return sh->ext;
    jext_t *x = calloc(1, sizeof *x);
    if (!x) {
        *err = MPH_ERR_NOMEM;
        return NULL;
    }
    struct build_ctx c = {j, x, MPH_OK};
    mph_err_t e = mph__shard_foreach(sh, build_one, &c);
    if (e || c.err) {
        ext_free(x);
        *err = c.err ? c.err : e;
        return NULL;
    }
    sh->ext = x;
    sh->ext_free = ext_free;
    return x;
}

/* ------------------------------------------------------------------ */
/* stream–stream: processing                                          */

static bool emits_unmatched(const mph_join_t *j, bool left_side)
{
    return left_side ? j->kind != MPH_JOIN_INNER : j->kind == MPH_JOIN_OUTER;
}

static mph_err_t store_key(jext_t *x, char side, const void *key, size_t klen)
{
    if (klen + 1 > x->kcap) {
        unsigned char *b = realloc(x->kbuf, klen + 1);
        if (!b)
            return MPH_ERR_NOMEM;
        x->kbuf = b;
        x->kcap = klen + 1;
    }
    x->kbuf[0] = (unsigned char)side;
    if (klen)
        memcpy(x->kbuf + 1, key, klen);
    return MPH_OK;
}

/* Reads the list under storage key k into (*buf, *len); an absent or
 * corrupt list reads as empty. */
static mph_err_t read_list(mph__shard_t *sh, const unsigned char *k,
                           size_t klen, unsigned char **buf, size_t *cap,
                           size_t *len, size_t extra)
{
    const void *v = NULL;
    size_t vl = 0;
    mph_err_t err = mph__shard_get(sh, k, klen, &v, &vl);
    if (err == MPH_ERR_NOENT || (!err && !list_ok(v, vl))) {
        v = NULL;
        vl = 0;
        err = MPH_OK;
    }
    if (err)
        return err;
    return copy_into(buf, cap, len, v, vl, extra);
}

/* Removes the final entries of the list under k (stream time st), emits
 * the unmatched ones, writes the rest back and schedules it again. */
static mph_err_t expire_key(mph_join_t *j, mph_event_t *ev, mph__shard_t *sh,
                            jext_t *x, const unsigned char *k, size_t klen)
{
    mph_err_t err =
        read_list(sh, k, klen, &x->oth, &x->oth_cap, &x->oth_len, 0);
    if (err || !x->oth_len)
        return err;
    bool left_side = k[0] == 'L';
    bool emit_un = emits_unmatched(j, left_side);
    unsigned char *p = x->oth;
    size_t w = 0, n = x->oth_len;
    int64_t next_due = INT64_MAX;
    bool removed = false;
    for (size_t o = 0; o < n;) {
        size_t el = ENTRY_HDR + get32(p + o + 17);
        int64_t ts = get64(p + o);
        int64_t due = due_of(j, ts);
        if (due < x->st) {
            removed = true;
            if (emit_un && !(p[o + 16] & F_MATCHED)) {
                const unsigned char *v = p + o + ENTRY_HDR;
                size_t vl = el - ENTRY_HDR;
                err = left_side ? emit(j, ev, ts, k + 1, klen - 1, v, vl, NULL, 0)
                                : emit(j, ev, ts, k + 1, klen - 1, NULL, 0, v, vl);
                if (err)
                    return err;
            }
        } else {
            if (due < next_due)
                next_due = due;
            if (w != o)
                memmove(p + w, p + o, el);
            w += el;
        }
        o += el;
    }
    if (!removed)
        return next_due != INT64_MAX ? heap_push(x, next_due, k, klen) : MPH_OK;
    if (!w) {
        err = mph__shard_delete(sh, k, klen);
        return err == MPH_ERR_NOENT ? MPH_OK : err;
    }
    err = mph__shard_set(sh, k, klen, p, w);
    if (!err)
        err = heap_push(x, next_due, k, klen);
    return err;
}

static mph_err_t sweep(mph_join_t *j, mph_event_t *ev, mph__shard_t *sh,
                       jext_t *x)
{
    while (x->n && x->heap[0].due < x->st) {
        hnode_t h = heap_pop(x);
        mph_err_t err = expire_key(j, ev, sh, x, h.key, h.klen);
        if (err) {
            /* Put it back: the next advance retries it. */
            mph_err_t e2 = heap_push(x, h.due, h.key, h.klen);
            free(h.key);
            return e2 ? e2 : err;
        }
        free(h.key);
    }
    return MPH_OK;
}

static mph_err_t windowed_event(mph_join_t *j, mph_event_t *ev)
{
    bool left_side = mph_event_topic(ev) == j->left;
    size_t klen = 0, vlen = 0;
    const void *key = mph_event_key(ev, &klen);
    const void *val = mph_event_value(ev, &vlen);
    int64_t ts = mph_event_timestamp(ev);
    int64_t off = mph_event_offset(ev);
    if (!key || ts < 0 || ts > INT64_MAX / 4) {
        count(j, ev, MPH_JOIN_STAT_INVALID, 1);
        return MPH_OK;
    }
    if (klen + 1 > MPH__MSTORE_KEY_MAX || vlen > UINT32_MAX - ENTRY_HDR)
        return MPH_ERR_RANGE;
    mph__shard_t *sh = mph__table_event_shard(ev, j->store);
    if (!sh)
        return MPH_ERR_PARTITION;
    mph_err_t err = MPH_OK;
    jext_t *x = ext_of(j, sh, &err);
    if (!x)
        return err;
    int64_t span = left_side ? j->after : j->before;
    if (x->have_st && ts + span + j->grace < x->st) {
        count(j, ev, MPH_JOIN_STAT_LATE, 1);
        return MPH_OK;
    }

    /* The other side: pair with every record in the window. Its list is
     * read in place (nothing touches the shard while the joiner runs) and
     * copied only when pairing marks its records. */
    if ((err = store_key(x, left_side ? 'R' : 'L', key, klen)))
        return err;
    const void *ov = NULL;
    size_t ovl = 0;
    err = mph__shard_get(sh, x->kbuf, klen + 1, &ov, &ovl);
    if (err == MPH_ERR_NOENT || (!err && !list_ok(ov, ovl))) {
        ovl = 0;
        err = MPH_OK;
    }
    if (err)
        return err;
    int64_t lo = left_side ? ts - j->before : ts - j->after;
    int64_t hi = left_side ? ts + j->after : ts + j->before;
    bool mark = emits_unmatched(j, !left_side), marked = false, matched = false;
    const void *v = val ? val : "";
    const unsigned char *op = ov;
    for (size_t o = 0; o < ovl;) {
        const unsigned char *e = op + o;
        size_t el = ENTRY_HDR + get32(e + 17);
        int64_t ots = get64(e);
        if (ots >= lo && ots <= hi) {
            if (mark && !marked) {
                /* from here on, work on a copy that gets written back */
                if ((err = copy_into(&x->oth, &x->oth_cap, &x->oth_len, op, ovl,
                                     0)))
                    return err;
                op = x->oth;
                e = op + o;
                marked = true;
            }
            matched = true;
            const unsigned char *pv = e + ENTRY_HDR;
            int64_t pts = ots > ts ? ots : ts;
            err = left_side
                      ? emit(j, ev, pts, key, klen, v, vlen, pv, el - ENTRY_HDR)
                      : emit(j, ev, pts, key, klen, pv, el - ENTRY_HDR, v, vlen);
            if (err)
                return err;
            if (mark)
                x->oth[o + 16] |= F_MATCHED;
        }
        o += el;
    }
    if (marked &&
        (err = mph__shard_set(sh, x->kbuf, klen + 1, x->oth, x->oth_len)))
        return err;

    /* The own list: already holding this record (processed again)? */
    x->kbuf[0] = left_side ? 'L' : 'R';
    if ((err = read_list(sh, x->kbuf, klen + 1, &x->own, &x->own_cap,
                         &x->own_len, ENTRY_HDR + vlen)))
        return err;
    bool dup = false, flag = matched && emits_unmatched(j, left_side);
    size_t dup_at = 0;
    int64_t min_due = INT64_MAX;
    for (size_t o = 0; o < x->own_len;
         o += ENTRY_HDR + get32(x->own + o + 17)) {
        int64_t d = due_of(j, get64(x->own + o));
        if (d < min_due)
            min_due = d;
        if (get64(x->own + o + 8) == off) {
            dup = true;
            dup_at = o;
        }
    }
    if (!dup) {
        unsigned char *e = x->own + x->own_len;
        put64(e, ts);
        put64(e + 8, off);
        e[16] = flag ? F_MATCHED : 0;
        e[17] = (unsigned char)(vlen >> 24);
        e[18] = (unsigned char)(vlen >> 16);
        e[19] = (unsigned char)(vlen >> 8);
        e[20] = (unsigned char)vlen;
        if (vlen)
            memcpy(e + ENTRY_HDR, val, vlen);
        if ((err = mph__shard_set(sh, x->kbuf, klen + 1, x->own,
                                  x->own_len + ENTRY_HDR + vlen)))
            return err;
        /* A non-empty list already has a heap node no later than its
         * earliest due time; a record due earlier still needs its own. */
        if (due_of(j, ts) < min_due &&
            (err = heap_push(x, due_of(j, ts), x->kbuf, klen + 1)))
            return err;
    } else if (flag && !(x->own[dup_at + 16] & F_MATCHED)) {
        x->own[dup_at + 16] |= F_MATCHED;
        if ((err = mph__shard_set(sh, x->kbuf, klen + 1, x->own, x->own_len)))
            return err;
    }

    /* Stream time (the latest buffered record's time), then what it made
     * final. */
    if (!x->have_st || ts > x->st) {
        x->have_st = true;
        x->st = ts;
    }
    return sweep(j, ev, sh, x);
}

static mph_err_t agent_fn(mph_event_t *ev, void *opaque)
{
    mph_join_t *j = opaque;
    mph_err_t err =
        j->type == J_STREAM_TABLE ? stream_table(j, ev) : windowed_event(j, ev);
    return store_result(j, ev, err);
}
