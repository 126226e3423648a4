/*
 * buffered — records wait in a table and a per-partition punctuator
 * forwards them (mph_agent_punctuate), e.g. to send downstream at a steady
 * pace or to merge updates of a key before they go out.
 *
 *   input    `buffered.input_topic` (default "buffered-in"), created with
 *            `buffered.partitions` partitions (default 8) if missing.
 *   table    `pending`: the latest value of each key not forwarded yet
 *            (a later record of a key replaces the earlier one).
 *   output   every `buffered.interval_ms` (default 100) of wall clock, the
 *            punctuator of each partition sends each pending key with its
 *            value to `buffered.output_topic` (default "buffered-out",
 *            created if missing) and deletes it from the table.
 *
 * The engine tracks the punctuator's sends and deletes like an event's:
 * under at_least_once a commit makes the deletes durable only after the
 * sends were acknowledged (a crash sends a key again, never loses it);
 * under exactly_once sends and deletes commit in one transaction.
 *
 *   mephisto worker --app build/examples/libbuffered.so --set app_id=buf \
 *       --set buffered.input_topic=buf-in --set buffered.output_topic=buf-out
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mephisto.h>

struct buffered {
    mph_table_t *pending;
    mph_topic_t *out;
};

static const char *setting(mph_app_t *app, const char *name, const char *dflt)
{
    const char *v = mph_app_get(app, name);
    return v && *v ? v : dflt;
}

/* Runs on the worker owning the event's partition. */
static mph_err_t on_record(mph_event_t *ev, void *opaque)
{
    struct buffered *b = opaque;
    size_t klen, vlen;
    const void *key = mph_event_key(ev, &klen);
    const void *val = mph_event_value(ev, &vlen);
    return mph_table_set(ev, b->pending, key ? key : "", klen, val ? val : "", vlen);
}

/* The keys of one partition's shard, copied (a table must not be written
 * while mph_table_foreach visits it). */
struct keys {
    char *buf;
    size_t len, cap, n;
};

static mph_err_t collect(const void *key, size_t klen, const void *val, size_t vlen,
                         void *opaque)
{
    (void)val, (void)vlen;
    struct keys *ks = opaque;
    size_t need = ks->len + sizeof(size_t) + klen;
    if (need > ks->cap) {
        size_t cap = ks->cap ? ks->cap * 2 : 4096;
        while (cap < need)
            cap *= 2;
        char *nb = realloc(ks->buf, cap);
        if (!nb)
            return MPH_ERR_NOMEM;
        ks->buf = nb;
        ks->cap = cap;
    }
    memcpy(ks->buf + ks->len, &klen, sizeof klen);
    memcpy(ks->buf + ks->len + sizeof klen, key, klen);
    ks->len = need;
    ks->n++;
    return MPH_OK;
}

/* Every interval, per owned partition: forward and delete what waits. */
static mph_err_t flush(mph_event_t *ev, int64_t now_ms, void *opaque)
{
    (void)now_ms;
    struct buffered *b = opaque;
    struct keys ks = {0};
    mph_err_t err = mph_table_foreach(ev, b->pending, collect, &ks);
    for (size_t off = 0; !err && off < ks.len;) {
        size_t klen;
        memcpy(&klen, ks.buf + off, sizeof klen);
        const char *key = ks.buf + off + sizeof klen;
        off += sizeof klen + klen;
        const void *val;
        size_t vlen;
        err = mph_table_get(ev, b->pending, key, klen, &val, &vlen);
        if (err == MPH_ERR_NOENT) {
            err = MPH_OK;
            continue;
        }
        if (!err)
            err = mph_event_send(ev, b->out, MPH_PARTITION_ANY, key, klen, val, vlen, NULL, 0);
        if (!err)
            err = mph_table_delete(ev, b->pending, key, klen);
    }
    free(ks.buf);
    return err;
}

static mph_topic_t *topic(mph_app_t *app, const char *name, const char *parts, char *err,
                          size_t errsz)
{
    mph_topic_opts_t *o = mph_topic_opts_new();
    mph_topic_t *t = NULL;
    if (o && mph_topic_opts_set(o, "create", "true", err, errsz) == MPH_OK &&
        mph_topic_opts_set(o, "partitions", parts, err, errsz) == MPH_OK)
        t = mph_topic_new(app, name, o, err, errsz);
    mph_topic_opts_destroy(o);
    return t;
}

int mephisto_app_init(mph_app_t *app)
{
    char err[512] = "out of memory";
    const char *parts = setting(app, "buffered.partitions", "8");
    int64_t interval = strtoll(setting(app, "buffered.interval_ms", "100"), NULL, 10);
    struct buffered *b = calloc(1, sizeof *b);
    if (!b || mph_app_keep(app, b, free) != MPH_OK) {
        free(b);
        goto fail;
    }
    mph_topic_t *in = topic(app, setting(app, "buffered.input_topic", "buffered-in"), parts,
                            err, sizeof err);
    if (!in)
        goto fail;
    b->out = topic(app, setting(app, "buffered.output_topic", "buffered-out"), parts, err,
                   sizeof err);
    if (!b->out)
        goto fail;
    b->pending = mph_table_new(app, "pending", NULL, err, sizeof err);
    if (!b->pending)
        goto fail;
    mph_agent_t *a = mph_agent_new(app, "buffer", in, on_record, b, err, sizeof err);
    if (!a)
        goto fail;
    mph_err_t e = mph_agent_punctuate(a, interval, MPH_PUNCTUATE_WALL, flush, b);
    if (e) {
        snprintf(err, sizeof err, "buffered.interval_ms=%lld: %s (1 .. 86400000)",
                 (long long)interval, mph_err_str(e));
        goto fail;
    }
    return 0;
fail:
    mph_log(MPH_LOG_ERROR, "buffered: %s", err);
    return -1;
}
