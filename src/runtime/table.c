/*
 * DESIGN — tables in the runtime.
 *
 * Registry: tables are declared on the app before start; at start their
 * shard count is resolved (option, else topic_partitions), their changelog
 * `<app_id>-<table>-changelog` is created compacted, and the RocksDB env is
 * opened when any table uses RocksDB. Each worker opens one RocksDB instance
 * per rocksdb table at `<datadir>/<table>/w<worker>/`.
 *
 * Hand-over: shards move between threads only inside mailbox messages. On
 * assignment the coordinator takes each needed shard from its parking lot
 * (or creates it: for RocksDB from the checkpoint on disk, dropped if it was
 * written by a different worker count), recovers it from the changelog, and
 * posts it with MSG_ASSIGN. On revocation the worker flushes, then returns
 * the shard in MSG_REVOKED; the coordinator parks it, so a partition that
 * comes back replays only what others wrote meanwhile.
 *
 * Who holds a shard is known from the messages alone: the parking lot
 * (app->parked, coordinator-owned) marks a shard handed to its worker as
 * SHARD_LENT until MSG_REVOKED brings it back. The coordinator never reads
 * a worker's shard array: a worker writes it without synchronisation, and
 * a shard still there while its MSG_REVOKED is on the way (a revocation
 * whose reply came after the coordinator's deadline) looked "already
 * there", so the partition came back without a shard and its table updates
 * were lost. Instead, an assignment first waits for the replies to every
 * revocation the worker was sent (coordinator.c); after that, SHARD_LENT
 * means the worker really keeps the shard. Shards of a hand-back that was
 * not durable come back too, flagged, and the coordinator drops them.
 * Every partition a worker processes therefore has its shards; a table call
 * that finds none is a broken invariant, never an event processed without
 * its table update (shard_of).
 *
 * Commit-time flush (worker): every dirty key of every owned shard is
 * produced once to its changelog partition (latest value wins; a delete is
 * a tombstone); the worker serves its producer until all are acknowledged,
 * writes each RocksDB instance's dirty keys with the shards' checkpoints in
 * one WriteBatch, clears the dirty sets, and only then reports the source
 * commit points. If the broker or the disk fails, nothing is reported and
 * the dirty sets stay for the next attempt.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <poll.h>
#include <pthread.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <ck_pr.h>

#include "io/codec.h"
#include "io/uring.h"
#include "mephisto/log.h"
#include "runtime/join.h"
#include "runtime/msg.h"
#include "runtime/opts.h"
#include "runtime/table.h"
#include "runtime/topic.h"
#include "runtime/window.h"
#include "runtime/worker.h"

/* A parking-lot entry: the shard is on its worker (see DESIGN). */
static char shard_lent_mark;
#define SHARD_LENT ((mph__shard_t *)(void *)&shard_lent_mark)

/* ------------------------------------------------------------------ */
/* options and registry                                               */

mph_table_opts_t *mph_table_opts_new(void)
{
    mph_table_opts_t *o = calloc(1, sizeof *o);
    if (o) {
        o->store = -1;
        o->cache_max_keys = -1;
    }
    return o;
}

static void opts_fini(mph_table_opts_t *o)
{
    free(o->key_codec);
    free(o->value_codec);
    free(o->dflt);
    free(o->changelog_topic);
    free(o->faust_ns);
    mph__opts_pairs_free(o->configs, o->nconfigs);
}

void mph_table_opts_destroy(mph_table_opts_t *o)
{
    if (!o)
        return;
    opts_fini(o);
    free(o);
}



mph_err_t mph_table_opts_set(mph_table_opts_t *o, const char *name, const char *value,
                             char *errstr, size_t errstr_size)
{
    char tmp[256];
    if (!errstr || !errstr_size) {
        errstr = tmp;
        errstr_size = sizeof tmp;
    }
    if (!o || !name || !value) {
        snprintf(errstr, errstr_size, "table option: NULL argument");
        return MPH_ERR_INVALID;
    }
    if (!strcmp(name, "key_codec") || !strcmp(name, "value_codec")) {
        return mph__opts_codec(name, value, name[0] == 'k' ? &o->key_codec : &o->value_codec,
                               errstr, errstr_size);
    }
    if (!strcmp(name, "default")) {
        free(o->dflt);
        o->dflt = strdup(value);
        o->dflt_len = strlen(value);
        o->has_dflt = true;
        return o->dflt ? MPH_OK : MPH_ERR_NOMEM;
    }
    if (!strcmp(name, "store")) {
        if (strcmp(value, "memory") && strcmp(value, "rocksdb")) {
            snprintf(errstr, errstr_size, "store: must be memory or rocksdb, got '%s'", value);
            return MPH_ERR_INVALID;
        }
        o->store = value[0] == 'r';
        return MPH_OK;
    }
    if (!strcmp(name, "partitions") || !strcmp(name, "cache_max_keys")) {
        char *end;
        long long n = strtoll(value, &end, 10);
        bool parts = name[0] == 'p';
        if (!*value || *end || n < (parts ? 1 : 0) || n > (parts ? 100000 : 1000000000LL)) {
            snprintf(errstr, errstr_size, "%s: must be an integer between %d and %lld, got '%s'",
                     name, parts ? 1 : 0, parts ? 100000LL : 1000000000LL, value);
            return MPH_ERR_INVALID;
        }
        if (parts)
            o->partitions = (int)n;
        else
            o->cache_max_keys = n;
        return MPH_OK;
    }
    if (!strncmp(name, "changelog.", 10) && name[10]) {
        return mph__opts_pair(&o->configs, &o->nconfigs, name + 10, value);
    }
    if (!strcmp(name, "format")) {
        if (strcmp(value, "mephisto") && strcmp(value, "faust")) {
            snprintf(errstr, errstr_size, "format: must be mephisto or faust, got '%s'", value);
            return MPH_ERR_INVALID;
        }
        o->faust = value[0] == 'f';
        return MPH_OK;
    }
    if (!strcmp(name, "changelog_topic")) {
        char why[512];
        if (mph__topic_name_check(value, why, sizeof why) != MPH_OK) {
            snprintf(errstr, errstr_size, "changelog_topic: %s", why);
            return MPH_ERR_INVALID;
        }
        return mph__opts_str(&o->changelog_topic, value);
    }
    if (!strcmp(name, "faust_namespace")) {
        if (!*value || strchr(value, '"') || strchr(value, '\\') ||
            !mph_json_utf8_valid(value, strlen(value))) {
            snprintf(errstr, errstr_size,
                     "faust_namespace: a non-empty UTF-8 name without '\"' or '\\' is "
                     "needed (Faust's module.Class), got '%s'",
                     value);
            return MPH_ERR_INVALID;
        }
        return mph__opts_str(&o->faust_ns, value);
    }
    snprintf(errstr, errstr_size,
             "%s: unknown table option (key_codec, value_codec, default, store, partitions, "
             "cache_max_keys, changelog.<config>, format, changelog_topic, faust_namespace)",
             name);
    return MPH_ERR_NOENT;
}

/* format=faust: the changelog encoding of t's codecs (the window size is
 * known at start, see faust_prepare). */
static mph_err_t table_faust_init(mph_table_t *t, char *errstr, size_t errstr_size)
{
    if (!t->opts.faust) {
        if (t->opts.faust_ns) {
            snprintf(errstr, errstr_size, "table %s: faust_namespace: needs format=faust",
                     t->name);
            return MPH_ERR_INVALID;
        }
        return MPH_OK;
    }
    t->faust = calloc(1, sizeof *t->faust);
    if (!t->faust) {
        snprintf(errstr, errstr_size, "out of memory");
        return MPH_ERR_NOMEM;
    }
    if (!mph__faust_kind_of(t->opts.key_codec, &t->faust->key) ||
        !mph__faust_kind_of(t->opts.value_codec, &t->faust->value)) {
        snprintf(errstr, errstr_size,
                 "table %s: format=faust: registered codecs have no Faust form (raw, string, "
                 "i64, json)",
                 t->name);
        return MPH_ERR_INVALID;
    }
    t->faust->ns = t->opts.faust_ns;
    char why[400];
    if (mph__faust_fmt_check(t->faust, why, sizeof why) != MPH_OK) {
        snprintf(errstr, errstr_size, "table %s: %s", t->name, why);
        return MPH_ERR_INVALID;
    }
    return MPH_OK;
}

mph_table_t *mph_table_new(mph_app_t *app, const char *name, const mph_table_opts_t *opts,
                           char *errstr, size_t errstr_size)
{
    char tmp[256];
    if (!errstr || !errstr_size) {
        errstr = tmp;
        errstr_size = sizeof tmp;
    }
    if (!app || !name || !*name || strlen(name) > 200 || strchr(name, '/')) {
        snprintf(errstr, errstr_size, "table: a name of 1 to 200 characters without '/' is needed");
        return NULL;
    }
    if (ck_pr_load_int(&app->state) != APP_NEW) {
        snprintf(errstr, errstr_size, "table %s: declare tables before the app starts", name);
        return NULL;
    }
    if (mph_app_table(app, name)) {
        snprintf(errstr, errstr_size, "table %s: declared twice", name);
        return NULL;
    }
    mph_table_t *t = calloc(1, sizeof *t);
    mph_table_t **arr = realloc(app->tables, (app->ntables + 1) * sizeof *arr);
    if (!t || !arr) {
        free(t);
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    app->tables = arr;
    t->app = app;
    t->name = strdup(name);
    t->opts.store = -1;
    t->opts.cache_max_keys = -1;
    if (opts) {
        t->opts = *opts;
        t->opts.key_codec = opts->key_codec ? strdup(opts->key_codec) : NULL;
        t->opts.value_codec = opts->value_codec ? strdup(opts->value_codec) : NULL;
        t->opts.dflt = NULL;
        if (opts->has_dflt) {
            t->opts.dflt = malloc(opts->dflt_len + 1);
            memcpy(t->opts.dflt, opts->dflt, opts->dflt_len + 1);
        }
        t->opts.configs = NULL;
        t->opts.nconfigs = 0;
        t->opts.changelog_topic = opts->changelog_topic ? strdup(opts->changelog_topic) : NULL;
        t->opts.faust_ns = opts->faust_ns ? strdup(opts->faust_ns) : NULL;
        for (size_t i = 0; i < opts->nconfigs; i++) {
            char n[512];
            snprintf(n, sizeof n, "changelog.%s", opts->configs[2 * i]);
            mph_table_opts_set(&t->opts, n, opts->configs[2 * i + 1], NULL, 0);
        }
    }
    t->is_i64 = t->opts.value_codec && !strcmp(t->opts.value_codec, "i64");
    if (t->is_i64 && t->opts.has_dflt) {
        /* An i64 default is written as a decimal number. */
        char *end;
        long long v = strtoll(t->opts.dflt, &end, 10);
        if (!*(char *)t->opts.dflt || *end) {
            snprintf(errstr, errstr_size, "table %s: default: not an integer: '%s'", name,
                     (char *)t->opts.dflt);
            mph__table_free(t);
            return NULL;
        }
        free(t->opts.dflt);
        t->opts.dflt = malloc(8);
        mph__codec_i64_encode(v, t->opts.dflt);
        t->opts.dflt_len = 8;
    }
    if (t->opts.value_codec) {
        mph_codec_t vc = MPH_CODEC_RAW;
        mph__codec_lookup(t->opts.value_codec, &vc, NULL, 0);
        if (vc == MPH_CODEC_USER &&
            !(t->uvalue = mph__codec_user_find(app, t->opts.value_codec))) {
            snprintf(errstr, errstr_size, "table %s: codec '%s' is not registered on this app",
                     name, t->opts.value_codec);
            mph__table_free(t);
            return NULL;
        }
    }
    if (table_faust_init(t, errstr, errstr_size) != MPH_OK) {
        mph__table_free(t);
        return NULL;
    }
    size_t cl = strlen(app->app_id) + strlen(name) + 16;
    if (t->opts.changelog_topic && strlen(t->opts.changelog_topic) + 1 > cl)
        cl = strlen(t->opts.changelog_topic) + 1;
    t->changelog = malloc(cl);
    if (!t->name || !t->changelog) {
        mph__table_free(t);
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    if (t->opts.changelog_topic)
        snprintf(t->changelog, cl, "%s", t->opts.changelog_topic);
    else
        snprintf(t->changelog, cl, "%s-%s-changelog", app->app_id, name);
    char why[512];
    if (mph__topic_name_check(t->changelog, why, sizeof why) != MPH_OK) {
        snprintf(errstr, errstr_size, "table: its changelog %s", why);
        mph__table_free(t);
        return NULL;
    }
    t->index = (int)app->ntables;
    app->tables[app->ntables++] = t;
    return t;
}

void mph__table_free(mph_table_t *t)
{
    if (!t)
        return;
    opts_fini(&t->opts);
    free(t->faust);
    free(t->name);
    free(t->changelog);
    free(t);
}

const char *mph_table_name(const mph_table_t *t)
{
    return t->name;
}

int mph_table_partitions(const mph_table_t *t)
{
    return t->partitions;
}

const char *mph_table_changelog(const mph_table_t *t)
{
    return t->changelog;
}

mph_table_t *mph_app_table(const mph_app_t *app, const char *name)
{
    for (size_t i = 0; i < app->ntables; i++)
        if (!strcmp(app->tables[i]->name, name))
            return app->tables[i];
    return NULL;
}

int32_t mph_table_partition_of(const mph_table_t *t, const void *key, size_t klen)
{
    int n = t->partitions > 0 ? t->partitions
                              : (int)mph_conf_get_int(t->app->conf, "topic_partitions", 8);
    return mph__kafka_partition_for(key ? key : "", key ? klen : 0, n);
}

/* ------------------------------------------------------------------ */
/* start-up                                                           */

struct rocks_opt_ctx {
    mph__rstore_conf_t *rc;
    mph_err_t err;
    char *errstr;
    size_t errstr_size;
};

static void apply_rocksdb_opt(const char *name, const char *value, void *opaque)
{
    struct rocks_opt_ctx *c = opaque;
    if (!c->err)
        c->err = mph__rstore_conf_set(c->rc, name + 8, value, c->errstr, c->errstr_size);
}

/* At start: the window layout of a format=faust table, and the check of an
 * adopted changelog (changelog_topic): it must exist with as many partitions
 * as the table, or Faust's keys would be on other shards than ours. */
static mph_err_t faust_prepare(mph_app_t *app, mph_table_t *t, int timeout, char *errstr,
                               size_t errstr_size)
{
    const struct mph_window *win = mph_table_window(t);
    if (t->faust && win) {
        if (win->kind == MPH__WINDOW_SLIDING || win->kind == MPH__WINDOW_SESSION) {
            /* A session's stored value also carries its end and a tag
             * (window_session.c), which no Faust form holds. */
            snprintf(errstr, errstr_size,
                     "table %s: format=faust: %s windows have no Faust changelog form "
                     "(tumbling or hopping)",
                     t->name, win->kind == MPH__WINDOW_SLIDING ? "sliding" : "session");
            return MPH_ERR_INVALID;
        }
        t->faust->window_ms = win->size;
        char why[400];
        if (mph__faust_fmt_check(t->faust, why, sizeof why) != MPH_OK) {
            snprintf(errstr, errstr_size, "table %s: %s", t->name, why);
            return MPH_ERR_INVALID;
        }
    }
    if (!t->opts.changelog_topic)
        return MPH_OK;
    int have = 0;
    mph_err_t err = mph__kafka_partition_count(app->producer, t->changelog, timeout, &have);
    if (err == MPH_ERR_NOENT) {
        snprintf(errstr, errstr_size,
                 "table %s: changelog_topic '%s' does not exist (it names an existing "
                 "changelog to adopt; leave it unset for a new table)",
                 t->name, t->changelog);
        return MPH_ERR_NOENT;
    }
    if (err) {
        snprintf(errstr, errstr_size, "table %s: changelog_topic '%s': cannot read its "
                 "partition count: %s", t->name, t->changelog, mph_err_str(err));
        return err;
    }
    if (have != t->partitions) {
        snprintf(errstr, errstr_size,
                 "table %s: changelog_topic '%s' has %d partitions but the table has %d "
                 "(table option partitions, else topic_partitions): set them equal to the "
                 "changelog's, as its keys are placed by partition",
                 t->name, t->changelog, have, t->partitions);
        return MPH_ERR_EXISTS;
    }
    mph_log(MPH_LOG_INFO, "table %s: adopting changelog %s (%d partitions, format %s)",
            t->name, t->changelog, have, t->faust ? "faust" : "mephisto");
    return MPH_OK;
}

mph_err_t mph__tables_prepare(mph_app_t *app, char *errstr, size_t errstr_size)
{
    if (!app->ntables)
        return MPH_OK;
    const char *dstore = mph_conf_get(app->conf, "store");
    int64_t dparts = mph_conf_get_int(app->conf, "topic_partitions", 8);
    int64_t drepl = mph_conf_get_int(app->conf, "topic_replication_factor", 1);
    int64_t dcache = mph_conf_get_int(app->conf, "table_cache_max_keys", 100000);
    bool any_rocks = false;
    for (size_t i = 0; i < app->ntables; i++) {
        mph_table_t *t = app->tables[i];
        t->partitions = t->opts.partitions > 0 ? t->opts.partitions : (int)dparts;
        t->rocksdb = t->opts.store >= 0 ? t->opts.store == 1 : (dstore && !strcmp(dstore, "rocksdb"));
        t->cache_max_keys = (size_t)(t->opts.cache_max_keys >= 0 ? t->opts.cache_max_keys : dcache);
        any_rocks |= t->rocksdb;
        /* compacted, plus the user's configs */
        size_t nc = t->opts.nconfigs;
        const char **cfg = calloc(nc * 2 + 3, sizeof *cfg);
        if (!cfg)
            return MPH_ERR_NOMEM;
        size_t k = 0;
        bool has_policy = false;
        for (size_t j = 0; j < nc; j++) {
            has_policy |= !strcmp(t->opts.configs[2 * j], "cleanup.policy");
            cfg[k++] = t->opts.configs[2 * j];
            cfg[k++] = t->opts.configs[2 * j + 1];
        }
        if (!has_policy) {
            cfg[k++] = "cleanup.policy";
            cfg[k++] = "compact";
        }
        cfg[k] = NULL;
        mph__topic_spec_t spec = {t->changelog, t->partitions, (int)drepl, cfg};
        int timeout = (int)(app->shutdown_timeout_ms < 1000 ? 1000 : app->shutdown_timeout_ms > 30000 ? 30000 : app->shutdown_timeout_ms);
        mph_err_t err = faust_prepare(app, t, timeout, errstr, errstr_size);
        if (!err)
            err = mph__kafka_create_topics(app->kenv, app->producer, &spec, 1, timeout, errstr,
                                           errstr_size);
        free(cfg);
        if (err)
            return err;
    }
    app->parked = calloc(app->ntables, sizeof *app->parked);
    if (!app->parked)
        return MPH_ERR_NOMEM;
    for (size_t i = 0; i < app->ntables; i++) {
        app->parked[i] = calloc((size_t)app->tables[i]->partitions, sizeof **app->parked);
        if (!app->parked[i])
            return MPH_ERR_NOMEM;
    }
    if (any_rocks) {
        mph__rstore_conf_t *rc = mph__rstore_conf_new();
        if (!rc)
            return MPH_ERR_NOMEM;
        char mb[32];
        snprintf(mb, sizeof mb, "%lld",
                 (long long)mph_conf_get_int(app->conf, "rocksdb_block_cache_mb", 64) << 20);
        mph_err_t err = mph__rstore_conf_set(rc, "block_cache_size", mb, errstr, errstr_size);
        struct rocks_opt_ctx c = {rc, err, errstr, errstr_size};
        if (!c.err)
            mph_conf_foreach(app->conf, "rocksdb.", apply_rocksdb_opt, &c);
        if (c.err) {
            mph__rstore_conf_destroy(rc);
            return c.err;
        }
        app->rsenv = mph__rstore_env_new(rc, errstr, errstr_size);
        mph__rstore_conf_destroy(rc);
        if (!app->rsenv)
            return MPH_ERR_STORE;
    }
    return MPH_OK;
}

void mph__tables_teardown(mph_app_t *app)
{
    if (app->parked) {
        for (size_t i = 0; i < app->ntables; i++) {
            if (!app->parked[i])
                continue;
            for (int p = 0; p < app->tables[i]->partitions; p++)
                if (app->parked[i][p] != SHARD_LENT) /* the worker destroyed it */
                    mph__shard_destroy(app->parked[i][p]);
            free(app->parked[i]);
        }
        free(app->parked);
        app->parked = NULL;
    }
    mph__rstore_env_destroy(app->rsenv);
    app->rsenv = NULL;
}

/* ------------------------------------------------------------------ */
/* worker side                                                        */

mph_err_t mph__tables_worker_open(mph__worker_t *w, char *errstr, size_t errstr_size)
{
    mph_app_t *app = w->app;
    if (!app->ntables)
        return MPH_OK;
    w->shards = calloc(app->ntables, sizeof *w->shards);
    w->rstores = calloc(app->ntables, sizeof *w->rstores);
    w->fl_batch = calloc(app->ntables, sizeof *w->fl_batch);
    w->listed = calloc(app->ntables, sizeof *w->listed);
    if (!w->shards || !w->rstores || !w->fl_batch || !w->listed)
        return MPH_ERR_NOMEM;
    size_t all = 0;
    for (size_t i = 0; i < app->ntables; i++)
        all += (size_t)app->tables[i]->partitions;
    w->dirty = calloc(all ? all : 1, sizeof *w->dirty);
    if (!w->dirty)
        return MPH_ERR_NOMEM;
    const char *datadir = mph_conf_get(app->conf, "datadir");
    for (size_t i = 0; i < app->ntables; i++) {
        mph_table_t *t = app->tables[i];
        w->shards[i] = calloc((size_t)t->partitions, sizeof **w->shards);
        w->listed[i] = calloc((size_t)t->partitions, sizeof **w->listed);
        if (!w->shards[i] || !w->listed[i])
            return MPH_ERR_NOMEM;
        if (!t->rocksdb)
            continue;
        char dir[4096], appdir[4096];
        snprintf(appdir, sizeof appdir, "%s/%s", datadir && *datadir ? datadir : ".", app->app_id);
        mph_err_t err = mph__rstore_claim_dir(appdir, app->app_id, errstr, errstr_size);
        if (err)
            return err; /* the marker `mephisto reset` looks for */
        err = mph__rstore_path(dir, sizeof dir, appdir, t->name, w->index);
        if (err) {
            snprintf(errstr, errstr_size, "table %s: datadir path too long", t->name);
            return err;
        }
        w->rstores[i] = mph__rstore_open(app->rsenv, dir, &err, errstr, errstr_size);
        if (!w->rstores[i])
            return err ? err : MPH_ERR_STORE;
    }
    return MPH_OK;
}

void mph__tables_worker_close(mph__worker_t *w)
{
    mph_app_t *app = w->app;
    if (!w->shards)
        return;
    if (w->fl_batch)
        mph__tables_flush_cancel(w);
    for (size_t i = 0; i < app->ntables; i++) {
        if (w->shards[i])
            for (int p = 0; p < app->tables[i]->partitions; p++)
                mph__shard_destroy(w->shards[i][p]);
        free(w->shards[i]);
        if (w->rstores && w->rstores[i])
            mph__rstore_close(w->rstores[i]);
    }
    for (size_t i = 0; w->listed && i < app->ntables; i++)
        free(w->listed[i]);
    free(w->listed);
    free(w->dirty);
    free(w->shards);
    free(w->rstores);
    free(w->fl_batch);
    w->listed = NULL;
    w->dirty = NULL;
    w->ndirty = 0;
    w->shards = NULL;
    w->rstores = NULL;
    w->fl_batch = NULL;
}

/* The dirty list. A flush (and a check for dirty state) visits only the
 * shards listed, not every partition of every table: at 4,096 partitions
 * that walk cost about 4 µs per table per commit whatever the load. A
 * shard's first set or delete after it was last found clean lists it
 * (shard.c, on_dirty; one flag test per write otherwise). The end of every
 * flush (snapshots_end) drops what is clean or no longer owned; entries
 * are (table, partition) pairs, so a shard handed back leaves no dangling
 * pointer, and listed[t][p] keeps one entry per pair whichever shard
 * object holds it. */
static void shard_dirtied(void *ctx, mph__shard_t *sh)
{
    mph__worker_t *w = ctx;
    w->listed[sh->table][sh->partition] = true;
    w->dirty[w->ndirty++] = (uint64_t)(uint32_t)sh->table << 32 | sh->partition;
}

static mph__shard_t *listed_shard(const mph__worker_t *w, size_t k)
{
    return w->shards[w->dirty[k] >> 32][(uint32_t)w->dirty[k]];
}

/* Something to flush: dirty keys, or layer state due (shard.h, ext_due:
 * the shard is listed for it like for a write). */
static bool shard_pending(const mph__shard_t *sh)
{
    return sh->ext_due || mph__shard_dirty(sh) > 0;
}

/* Keeps the entries whose shard is owned and has something to flush. */
static void dirty_prune(mph__worker_t *w)
{
    size_t keep = 0;
    for (size_t k = 0; k < w->ndirty; k++) {
        mph__shard_t *sh = listed_shard(w, k);
        if (sh && shard_pending(sh))
            w->dirty[keep++] = w->dirty[k];
        else
            w->listed[w->dirty[k] >> 32][(uint32_t)w->dirty[k]] = false;
    }
    w->ndirty = keep;
}

void mph__tables_worker_take(mph__worker_t *w, mph__shard_set_t *set)
{
    for (size_t i = 0; set && i < set->n; i++) {
        mph__shard_t *sh = set->shards[i];
        mph__shard_t **slot = &w->shards[sh->table][sh->partition];
        if (*slot && *slot != sh)
            mph__shard_destroy(*slot);
        *slot = sh;
        sh->listed = &w->listed[sh->table][sh->partition];
        sh->on_dirty = shard_dirtied;
        sh->on_dirty_ctx = w;
        if (shard_pending(sh) && !*sh->listed)
            shard_dirtied(w, sh);
        /* exactly_once: an aborted transaction rolls the shard back
         * (worker.c), so memory shards keep their pre-images. A shard
         * arrives clean (recovered or flushed), so this cannot fail but
         * for a broken invariant, which stops the app rather than let an
         * abort leave uncommitted values behind. */
        mph_err_t err = w->app->eos ? mph__shard_set_undo(sh, true) : MPH_OK;
        if (err)
            mph__app_fail(w->app, err, "table %s [%u]: cannot keep pre-images for "
                          "exactly_once: %s", w->app->tables[sh->table]->name, sh->partition,
                          mph_err_str(err));
    }
    free(set);
}

/* Shards of partitions that no slot of this worker uses any more. */
mph__shard_set_t *mph__tables_worker_release(mph__worker_t *w)
{
    /* Shards leave with the dirty state they have: a flush still under way
     * must not write their old values later. */
    mph__tables_flush_cancel(w);
    mph_app_t *app = w->app;
    if (!app->ntables)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < app->ntables; i++)
        for (int p = 0; p < app->tables[i]->partitions; p++)
            n += w->shards[i][p] != NULL;
    mph__shard_set_t *set = calloc(1, sizeof *set + n * sizeof set->shards[0]);
    if (!set)
        return NULL;
    for (size_t i = 0; i < app->ntables; i++) {
        for (int p = 0; p < app->tables[i]->partitions; p++) {
            mph__shard_t *sh = w->shards[i][p];
            if (!sh)
                continue;
            bool used = false;
            for (uint32_t s = 0; s < w->nslots && !used; s++)
                used = w->slots[s].used && w->slots[s].partition == p;
            if (used)
                continue;
            sh->listed = NULL; /* its entry goes at the next prune */
            sh->on_dirty = NULL;
            sh->on_dirty_ctx = NULL;
            set->shards[set->n++] = sh;
            w->shards[i][p] = NULL;
        }
    }
    return set;
}

#define CL_SLOT MPH__SLOT_CHANGELOG /* worker.h */

void mph__tables_changelog_failed(mph__worker_t *w, const char *why)
{
    w->cl_pending--;
    w->cl_failed = true;
    if (why)
        mph_log_limited(&w->log_lim, 5000, MPH_LOG_WARN,
                        "changelog write failed (%s); the commit waits and the table's "
                        "current values are written again",
                        why);
}

void mph__tables_changelog_acked(mph__worker_t *w, uint64_t tag, int64_t offset)
{
    uint32_t t = (uint32_t)(tag >> 24), p = (uint32_t)(tag & 0xFFFFFF);
    w->cl_pending--;
    if (t >= w->app->ntables || (int)p >= w->app->tables[t]->partitions)
        return;
    mph__shard_t *sh = w->shards[t][p];
    if (sh && offset > sh->flushed) {
        sh->flushed = offset;
        if (offset > sh->applied)
            sh->applied = offset;
    }
}

struct produce_ctx {
    mph__worker_t *w;
    mph_table_t *t;
    mph__shard_t *sh;
    mph_err_t err;
    mph__faust_scratch_t *fs; /* format=faust tables */
};

static mph_err_t produce_one(void *opaque, const void *key, size_t klen, const void *val,
                             size_t vlen, bool deleted)
{
    struct produce_ctx *c = opaque;
    if (c->t->faust) {
        /* The shard's forms as Faust writes them (state/faust.h). */
        char why[256] = "";
        mph_err_t err = c->fs ? MPH_OK : MPH_ERR_NOMEM;
        if (!err)
            err = mph__faust_key_encode(c->t->faust, c->fs, key, klen, &key, &klen, why,
                                        sizeof why);
        if (err == MPH_ERR_NOENT)
            return MPH_OK; /* no Faust form: the window meta record */
        if (!err && !deleted)
            err = mph__faust_value_encode(c->t->faust, c->fs, val, vlen, &val, &vlen, why,
                                          sizeof why);
        if (err) {
            mph_log(MPH_LOG_ERROR, "table %s [%u]: %s", c->t->name, c->sh->partition,
                    why[0] ? why : mph_err_str(err));
            return err;
        }
    }
    uint64_t tag = ((uint64_t)c->t->index << 24) | c->sh->partition;
    void *op = (void *)(uintptr_t)(((uint64_t)CL_SLOT << 48) | tag);
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            c->w->producer, RD_KAFKA_V_TOPIC(c->t->changelog),
            RD_KAFKA_V_PARTITION((int32_t)c->sh->partition), RD_KAFKA_V_KEY(key, klen),
            RD_KAFKA_V_VALUE(deleted ? NULL : (void *)val, deleted ? 0 : vlen),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(op), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        if (mph__worker_txn_refused(c->w, e))
            return MPH_OK; /* exactly_once: the commit aborts (worker.c, send_record) */
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            return mph__kafka_err(e);
        /* Records never time out (worker.c): a full producer during a stop
         * (broker gone) fails this flush rather than waiting for ever. */
        if (ck_pr_load_int(&c->w->app->state) != APP_RUNNING)
            return MPH_ERR_STOPPED;
        rd_kafka_poll(c->w->producer, 10);
    }
    c->w->cl_pending++;
    return MPH_OK;
}

static mph_err_t batch_one(void *opaque, const void *key, size_t klen, const void *val,
                           size_t vlen, bool deleted)
{
    struct { mph__rstore_batch_t *b; uint32_t p; } *c = opaque;
    return deleted ? mph__rstore_batch_delete(c->b, c->p, key, klen)
                   : mph__rstore_batch_put(c->b, c->p, key, klen, val, vlen);
}

static bool wait_changelog(mph__worker_t *w, int64_t deadline_ns)
{
    while (w->cl_pending > 0 && mph_clock_mono_ns() < deadline_ns)
        rd_kafka_poll(w->producer, 5);
    return w->cl_pending == 0;
}

/* Free space below which a state store that failed on a full disk is not
 * reopened yet: the reopen replays its WAL into a new SST file and writes a
 * new WAL and MANIFEST. */
#define REOPEN_MIN_FREE (2u << 20)

/* A RocksDB instance refuses every write after one failed (see
 * mph__rstore_reopen). Reopens w's failed instance of table i once its disk
 * has room again. False while it cannot be written: the flush then sends
 * nothing to the changelog and commits nothing. A reopen that fails stops
 * the app: with the store closed, reads could not be served. */
static bool store_writable(mph__worker_t *w, size_t i)
{
    mph__rstore_t *rs = w->rstores[i];
    const char *name = w->app->tables[i]->name;
    if (!rs || !mph__rstore_failed(rs))
        return true;
    struct statvfs sv;
    if (statvfs(mph__rstore_dir(rs), &sv) == 0 &&
        (unsigned long long)sv.f_bavail * sv.f_frsize < REOPEN_MIN_FREE) {
        mph_log_limited(&w->log_lim, 5000, MPH_LOG_ERROR,
                        "table %s: state store %s cannot be written (disk full: %llu bytes "
                        "free); commits wait until space frees",
                        name, mph__rstore_dir(rs),
                        (unsigned long long)sv.f_bavail * sv.f_frsize);
        return false;
    }
    char err[512] = "";
    mph_err_t rc = mph__rstore_reopen(rs, err, sizeof err);
    if (rc) {
        mph__app_fail(w->app, rc, "table %s: cannot reopen the state store after a failed write: %s",
                      name, err);
        return false;
    }
    mph_log(MPH_LOG_INFO, "table %s: state store %s reopened after a failed write; commits resume",
            name, mph__rstore_dir(rs));
    return true;
}

/* ------------------------------------------------------------------ */
/* commits: the table flush                                          */
/*
 * A commit of a worker with tables makes its table state durable before
 * any source offset moves past the events that changed it: every dirty key
 * goes to the changelog, and once the broker acknowledged all of them, one
 * RocksDB WriteBatch per instance (the keys plus each shard's checkpoint)
 * is written; only then are the commit points reported.
 * mph__tables_flush_begin snapshots each dirty shard
 * (mph__mstore_snapshot_begin), produces its keys and builds the batches
 * from the same values; mph__tables_flush_poll completes the flush once
 * nothing is pending. Keys written in between stay dirty for the next
 * flush (snapshot_commit), and a failed changelog record or store write
 * leaves every key dirty (snapshot_abort), so the next flush sends the
 * latest values. One flush at a time: a flush does not begin while
 * records of an earlier one are unacknowledged, so a key's values reach
 * its changelog partition in order.
 *
 * Commits are asynchronous (worker.c, report and flush_progress): the
 * worker saves its commit points, begins the flush and goes on processing;
 * once the flush is done it reports the points it saved. Waiting inside
 * the worker for the acknowledgements cost count/passthrough 0.46 against
 * 0.81. Revocations and stops use the synchronous mph__tables_flush, which
 * completes an active flush first. A hand-over without durable state (a
 * lost assignment, or a failed flush) cancels the flush and purges the
 * worker's producer (worker.c, purge_handed_back), so none of its records
 * can land after the next owner rebuilt the shard from the changelog;
 * before that purge existed, asynchronous commits made reliability
 * scenario 5 fail about one run in two.
 */

static void snapshots_end(mph__worker_t *w, bool ok)
{
    mph_app_t *app = w->app;
    for (size_t k = 0; k < w->ndirty; k++) {
        mph__shard_t *sh = listed_shard(w, k);
        if (!sh || !sh->in_flush)
            continue;
        if (ok)
            mph__mstore_snapshot_commit(sh->mem);
        else
            mph__mstore_snapshot_abort(sh->mem);
        sh->in_flush = false;
    }
    for (size_t i = 0; i < app->ntables; i++) {
        mph__rstore_batch_destroy(w->fl_batch[i]);
        w->fl_batch[i] = NULL;
    }
    w->fl_active = false;
    dirty_prune(w);
}

mph__flush_state_t mph__tables_flush_begin(mph__worker_t *w)
{
    mph_app_t *app = w->app;
    if (!app->ntables)
        return MPH__FLUSH_DONE;
    if (w->fl_active || w->cl_pending > 0)
        return MPH__FLUSH_PENDING;
    for (size_t i = 0; i < app->ntables; i++)
        if (!store_writable(w, i))
            return MPH__FLUSH_FAILED;
    w->cl_failed = false;
    size_t produced = 0;
    w->fl_begun++;
    /* ndirty is read on every turn: a listing meanwhile appends (the array
     * never moves), and produce_one and batch_one only read shards. */
    for (size_t k = 0; k < w->ndirty; k++) {
        size_t i = (size_t)(w->dirty[k] >> 32);
        int p = (int)(uint32_t)w->dirty[k];
        mph__shard_t *sh = w->shards[i][p];
        w->fl_visits++;
        /* Layer state due (a window's stream time) goes into the shard
         * first, so this flush carries it with the records that moved it. */
        if (sh && mph__shard_ext_flush(sh) != MPH_OK) {
            snapshots_end(w, false);
            return MPH__FLUSH_FAILED;
        }
        if (!sh || !mph__shard_dirty(sh))
            continue;
        if (w->rstores[i] && !w->fl_batch[i] && !(w->fl_batch[i] = mph__rstore_batch_new())) {
            snapshots_end(w, false);
            return MPH__FLUSH_FAILED;
        }
        struct produce_ctx c = {w, app->tables[i], sh, MPH_OK, NULL};
        if (c.t->faust)
            c.fs = mph__faust_scratch_new();
        mph_err_t err = mph__mstore_dirty_foreach(sh->mem, produce_one, &c);
        mph__faust_scratch_destroy(c.fs);
        if (!err && w->rstores[i]) {
            struct { mph__rstore_batch_t *b; uint32_t p; } bc = {w->fl_batch[i], (uint32_t)p};
            err = mph__mstore_dirty_foreach(sh->mem, batch_one, &bc);
        }
        mph__mstore_snapshot_begin(sh->mem);
        sh->in_flush = true;
        w->fl_active = true;
        char fatal[8];
        if (err && app->eos && rd_kafka_fatal_error(w->producer, fatal, sizeof fatal)) {
            /* exactly_once: a fenced producer refuses every record; the
             * worker's commit says so (worker.c, eos_fatal). */
            w->fl_failed_begin = true;
            return MPH__FLUSH_PENDING;
        }
        if (err) {
            mph__app_fail(app, err, "table %s [%d]: cannot produce to the changelog: %s",
                          app->tables[i]->name, p, mph_err_str(err));
            w->fl_failed_begin = true;
            return MPH__FLUSH_PENDING; /* completes as failed once the sent ones land */
        }
        produced++;
    }
    if (!produced) {
        snapshots_end(w, true);
        return MPH__FLUSH_DONE;
    }
    return MPH__FLUSH_PENDING;
}

mph__flush_state_t mph__tables_flush_poll(mph__worker_t *w)
{
    mph_app_t *app = w->app;
    if (!w->fl_active)
        return MPH__FLUSH_IDLE;
    if (w->cl_pending > 0)
        return MPH__FLUSH_PENDING;
    if (w->cl_failed || w->fl_failed_begin) {
        /* Some record of this flush was not written: every key stays
         * dirty, so the next flush writes its latest value again. */
        w->cl_failed = w->fl_failed_begin = false;
        snapshots_end(w, false);
        return MPH__FLUSH_FAILED;
    }
    /* Data and checkpoints in one WriteBatch per RocksDB instance. */
    for (size_t k = 0; k < w->ndirty; k++) {
        mph__shard_t *sh = listed_shard(w, k);
        if (!sh || !sh->in_flush || !w->fl_batch[sh->table])
            continue;
        mph__rstore_checkpoint_t cp = {sh->flushed, (uint32_t)app->nworkers};
        mph__rstore_batch_checkpoint(w->fl_batch[sh->table], sh->partition, &cp);
    }
    for (size_t i = 0; i < app->ntables; i++) {
        if (!w->fl_batch[i])
            continue;
        char err[256] = "";
        mph_err_t rc = mph__rstore_write(w->rstores[i], w->fl_batch[i], err, sizeof err);
        if (rc) {
            mph_log_limited(&w->log_lim, 5000, MPH_LOG_ERROR,
                            "table %s: cannot write the state store (%s): %s; commit deferred",
                            app->tables[i]->name, mph_err_str(rc), err);
            snapshots_end(w, false);
            return MPH__FLUSH_FAILED;
        }
    }
    snapshots_end(w, true);
    return MPH__FLUSH_DONE;
}

void mph__tables_flush_cancel(mph__worker_t *w)
{
    if (w->fl_active) {
        w->cl_failed = w->fl_failed_begin = false;
        snapshots_end(w, false);
    }
}

static bool flush_sync(mph__worker_t *w, int64_t wait_ns);

static bool tables_dirty(mph__worker_t *w)
{
    for (size_t k = 0; k < w->ndirty; k++) {
        mph__shard_t *sh = listed_shard(w, k);
        if (sh && shard_pending(sh))
            return true;
    }
    return false;
}

bool mph__tables_flush(mph__worker_t *w, int64_t wait_ns)
{
    if (!w->app->ntables)
        return true;
    /* No time left (a revocation's deadline passed while the worker was
     * busy): send nothing that could not be waited for; changelog records
     * landing after the coordinator gave up could overwrite what the next
     * owner writes. Clean shards are durable as they are. */
    if (wait_ns <= 0 && !w->fl_active && w->cl_pending == 0 && !tables_dirty(w))
        return true;
    if (wait_ns > 0 && flush_sync(w, wait_ns))
        return true;
    /* Not durable: the caller drops or keeps the shards as they are, so no
     * batch built from them may reach RocksDB later (its values would be
     * older than what a recovery puts there meanwhile). */
    mph__tables_flush_cancel(w);
    return false;
}

static bool flush_sync(mph__worker_t *w, int64_t wait_ns)
{
    int64_t deadline = mph_clock_mono_ns() + wait_ns;
    for (int round = 0; round < 2; round++) {
        /* An active flush completes first (its keys stay dirty if it
         * fails), then one more carries what was written since. */
        if (!w->fl_active && mph__tables_flush_begin(w) == MPH__FLUSH_DONE)
            return true;
        if (!w->fl_active)
            return false;
        if (!wait_changelog(w, deadline)) {
            mph_log_limited(&w->log_lim, 5000, MPH_LOG_WARN,
                            "changelog not acknowledged in time (%lld pending); commit deferred",
                            (long long)w->cl_pending);
            return false;
        }
        if (mph__tables_flush_poll(w) != MPH__FLUSH_DONE)
            return false;
    }
    return !tables_dirty(w);
}

void mph__tables_serve_get(mph__worker_t *w, mph__table_req_t *r)
{
    mph__shard_t *sh = r->partition < r->table->partitions && w->shards
                           ? w->shards[r->table->index][r->partition]
                           : NULL;
    const void *v = NULL;
    size_t vl = 0;
    if (!sh) {
        r->result = MPH_ERR_PARTITION;
    } else {
        r->result = mph__shard_get(sh, r->key, r->klen, &v, &vl);
        if (r->result == MPH_ERR_NOENT && r->table->opts.has_dflt) {
            v = r->table->opts.dflt;
            vl = r->table->opts.dflt_len;
            r->result = MPH_OK;
        }
        if (r->result == MPH_OK) {
            r->value = malloc(vl ? vl : 1);
            if (r->value)
                memcpy(r->value, v, vl);
            else
                r->result = MPH_ERR_NOMEM;
            r->vlen = vl;
        }
    }
    mph__eventfd_signal(r->done_fd);
    mph__table_req_release(r);
}

void mph__table_req_release(mph__table_req_t *r)
{
    /* acq_rel so that the last owner sees everything the other one did
     * (a compiler builtin rather than ck_pr: ThreadSanitizer can see it). */
    if (__atomic_fetch_sub(&r->refs, 1, __ATOMIC_ACQ_REL) != 1)
        return;
    if (r->done_fd >= 0)
        close(r->done_fd);
    free(r->key);
    free(r->value);
    free(r);
}

/* ------------------------------------------------------------------ */
/* coordinator side: hand-over with recovery                          */

/* Builds and returns the shard set for worker w given the partition
 * numbers it now owns (parts[0..n)), not yet recovered: the restore thread
 * (restore.c) recovers it before it reaches the worker. Precondition: every
 * revocation sent to w was answered (SHARD_LENT then means w keeps it). */
mph__shard_set_t *mph__tables_handover(mph_app_t *app, int w, const int32_t *parts, size_t n,
                                       char *errstr, size_t errstr_size)
{
    size_t max = 0;
    for (size_t i = 0; i < app->ntables; i++)
        max += n;
    mph__shard_set_t *set = calloc(1, sizeof *set + max * sizeof set->shards[0]);
    if (!set)
        goto fail;
    mph__worker_t *wk = app->workers[w];
    for (size_t i = 0; i < app->ntables; i++) {
        mph_table_t *t = app->tables[i];
        for (size_t k = 0; k < n; k++) {
            int32_t p = parts[k];
            if (p >= t->partitions)
                continue;
            bool dup = false;
            for (size_t j = 0; j < set->n; j++)
                dup |= set->shards[j]->table == (int)i && (int32_t)set->shards[j]->partition == p;
            if (dup || app->parked[i][p] == SHARD_LENT)
                continue; /* the worker has it */
            mph__shard_t *sh = app->parked[i][p];
            app->parked[i][p] = NULL;
            if (!sh) {
                sh = mph__shard_new((int)i, (uint32_t)p, t->rocksdb ? wk->rstores[i] : NULL,
                                    t->cache_max_keys);
                if (!sh)
                    goto fail;
                if (t->rocksdb) {
                    mph__rstore_checkpoint_t cp;
                    mph_err_t e = mph__rstore_checkpoint_get(sh->rs, (uint32_t)p, &cp, NULL, 0);
                    if (e == MPH_OK && cp.workers == (uint32_t)app->nworkers) {
                        sh->applied = sh->flushed = cp.offset;
                    } else if (e == MPH_OK) {
                        mph_log(MPH_LOG_INFO,
                                "table %s [%d]: written with %u workers, now %d: rebuilding",
                                t->name, p, cp.workers, app->nworkers);
                        mph__shard_reset(sh, NULL, 0);
                    }
                }
            }
            sh->faust = t->faust; /* format=faust: how recovery decodes its changelog */
            set->shards[set->n++] = sh;
        }
    }
    /* From here the set belongs to the restore job, then to its MSG_ASSIGN
     * (restore.c); mph__tables_park takes it back if either cannot go on. */
    for (size_t k = 0; k < set->n; k++)
        app->parked[set->shards[k]->table][set->shards[k]->partition] = SHARD_LENT;
    return set;
fail:
    snprintf(errstr, errstr_size, "out of memory");
    for (size_t k = 0; set && k < set->n; k++)
        app->parked[set->shards[k]->table][set->shards[k]->partition] = set->shards[k];
    free(set);
    return NULL;
}

void mph__tables_park(mph_app_t *app, mph__shard_set_t *set, bool drop)
{
    for (size_t i = 0; set && i < set->n; i++) {
        mph__shard_t *sh = set->shards[i];
        mph__shard_t **slot = &app->parked[sh->table][sh->partition];
        if (*slot && *slot != SHARD_LENT)
            mph__shard_destroy(*slot);
        if (drop) {
            mph__shard_destroy(sh);
            sh = NULL;
        }
        *slot = sh;
    }
    free(set);
}

/* ------------------------------------------------------------------ */
/* the public operations                                              */

/* The event's shard of t, or NULL when t has no partition of the event's
 * number (not co-partitioned: the caller's MPH_ERR_PARTITION). A partition
 * this worker processes always has its shards (see DESIGN); if one is
 * missing all the same, the event must not count as processed without its
 * table update: the worker stops processing (w->failed: process() leaves
 * the event unmarked, so the commit point stays before it) and the app
 * stops. */
static mph__shard_t *shard_of(mph_event_t *ev, mph_table_t *t)
{
    int32_t p = ev->rkm->partition;
    mph__worker_t *w = ev->worker;
    if (!w->shards || t->app != w->app || p >= t->partitions)
        return NULL;
    mph__shard_t *sh = w->shards[t->index][p];
    if (!sh && !w->failed) {
        w->failed = true;
        mph__app_fail(w->app, MPH_ERR_INTERNAL,
                      "table %s: worker %d processes %s [%d] offset %lld without the "
                      "partition's shard (a bug in mephisto's hand-over; please report it); "
                      "stopping without committing past the event",
                      t->name, w->index, ev->topic ? ev->topic->name : "?", (int)p,
                      (long long)ev->rkm->offset);
    }
    return sh;
}

/* A table operation whose state store failed (RocksDB could not be read
 * or written, a full disk, memory): the event cannot be processed
 * correctly, whatever the agent does with the error (on_agent_error=log
 * would count it as processed and a commit would pass it: a lost table
 * update). The worker stops processing (w->failed: process() leaves the
 * event unprocessed) and the app stops without committing past it.
 * Returns err. */
static mph_err_t store_result(mph_event_t *ev, mph_table_t *t, mph_err_t err)
{
    if (err != MPH_ERR_STORE && err != MPH_ERR_DISK_FULL && err != MPH_ERR_NOMEM)
        return err;
    mph__worker_t *w = ev->worker;
    if (!w->failed) {
        w->failed = true;
        mph__app_fail(w->app, err,
                      "table %s: the state store failed on %s [%d] offset %lld: %s; stopping "
                      "without committing past the event",
                      t->name, ev->topic ? ev->topic->name : "?", (int)ev->rkm->partition,
                      (long long)ev->rkm->offset, mph_err_str(err));
    }
    return err;
}

mph__shard_t *mph__table_event_shard(mph_event_t *ev, mph_table_t *t)
{
    return shard_of(ev, t);
}

static mph_err_t check_key(mph_event_t *ev, mph_table_t *t, const void *key, size_t klen)
{
    if (klen > MPH__MSTORE_KEY_MAX)
        return MPH_ERR_RANGE;
    if (mph__kafka_partition_for(key ? key : "", klen, t->partitions) != ev->rkm->partition)
        return MPH_ERR_PARTITION;
    return MPH_OK;
}

static void count_op(mph_event_t *ev, mph_table_t *t, int op)
{
    mph__mon_add(&ev->worker->mon->table_ops[t->index][op], 1);
}

static mph_err_t faust_form_ok(const mph_table_t *t, mph__faust_kind_t kind, const void *p,
                               size_t n, const char *what);

mph_err_t mph__table_check_key(mph_event_t *ev, mph_table_t *t, const void *key, size_t klen)
{
    /* windowed format=faust tables: the key must have its Faust form */
    mph_err_t err;
    if (t->faust && (err = faust_form_ok(t, t->faust->key, key, klen, "key")))
        return err;
    return check_key(ev, t, key, klen);
}

void mph__table_count_op(mph_event_t *ev, mph_table_t *t, int op)
{
    count_op(ev, t, op);
}

mph_err_t mph_table_get(mph_event_t *ev, mph_table_t *t, const void *key, size_t klen,
                        const void **value, size_t *vlen)
{
    if (!ev || !t || !value)
        return MPH_ERR_INVALID;
    mph__shard_t *sh = shard_of(ev, t);
    if (!sh)
        return MPH_ERR_PARTITION;
    size_t l = 0;
    mph_err_t err = store_result(ev, t, mph__shard_get(sh, key ? key : "", klen, value, &l));
    count_op(ev, t, 0);
    if (err == MPH_ERR_NOENT) {
        count_op(ev, t, 3);
        if (t->opts.has_dflt) {
            *value = t->opts.dflt;
            l = t->opts.dflt_len;
            err = MPH_OK;
        }
    }
    if (vlen)
        *vlen = l;
    return err;
}

bool mph_table_contains(mph_event_t *ev, mph_table_t *t, const void *key, size_t klen)
{
    mph__shard_t *sh = ev && t ? shard_of(ev, t) : NULL;
    const void *v;
    size_t l;
    return sh && store_result(ev, t, mph__shard_get(sh, key ? key : "", klen, &v, &l)) == MPH_OK;
}

/* The calling worker thread's JSON parser for faust_form_ok (not the
 * worker's own: that one may hold the event's document, which the agent is
 * still reading); freed when the thread ends. NULL when out of memory. */
static pthread_key_t faust_parser_key;
static pthread_once_t faust_parser_once = PTHREAD_ONCE_INIT;

static void faust_parser_free(void *p)
{
    mph_json_parser_destroy(p);
}

static void faust_parser_key_make(void)
{
    (void)pthread_key_create(&faust_parser_key, faust_parser_free);
}

static mph_json_parser_t *faust_parser(void)
{
    pthread_once(&faust_parser_once, faust_parser_key_make);
    mph_json_parser_t *p = pthread_getspecific(faust_parser_key);
    if (!p) {
        p = mph_json_parser_new(0, NULL, 0);
        if (p && pthread_setspecific(faust_parser_key, p) != 0) {
            mph_json_parser_destroy(p);
            p = NULL;
        }
    }
    return p;
}

/* format=faust: refuses at the write what its changelog could not hold
 * (rather than failing the commit's flush later, or the next recovery): a
 * string key or value that is not UTF-8, an i64 that is not 8 bytes, a
 * json (or record) key or value that is not one JSON document. what is
 * "key" or "value". */
static mph_err_t faust_form_ok(const mph_table_t *t, mph__faust_kind_t kind, const void *p,
                               size_t n, const char *what)
{
    if (!p)
        p = "";
    if (kind == MPH__FAUST_STRING && !mph_json_utf8_valid(p, n)) {
        mph_log(MPH_LOG_WARN, "table %s (format=faust): a %s that is not UTF-8 has no Faust "
                "str form; not written", t->name, what);
        return MPH_ERR_UTF8;
    }
    if (kind == MPH__FAUST_I64 && n != MPH_CODEC_I64_SIZE) {
        mph_log(MPH_LOG_WARN, "table %s (format=faust): an i64 %s of %zu bytes; not written",
                t->name, what, n);
        return MPH_ERR_TYPE;
    }
    if (kind == MPH__FAUST_JSON) {
        mph_json_parser_t *jp = faust_parser();
        if (!jp)
            return MPH_ERR_NOMEM;
        char why[200];
        mph_err_t err = mph__codec_validate(MPH_CODEC_JSON, NULL, jp, p, n, why, sizeof why);
        if (err == MPH_ERR_NOMEM)
            return err;
        if (err) {
            mph_log(MPH_LOG_WARN, "table %s (format=faust): a json %s that is not one JSON "
                    "document (%s); not written", t->name, what, n ? why : "empty");
            return MPH_ERR_DECODE;
        }
    }
    return MPH_OK;
}

mph_err_t mph__table_check_value(mph_table_t *t, const void *value, size_t vlen)
{
    return t->faust ? faust_form_ok(t, t->faust->value, value, vlen, "value") : MPH_OK;
}

mph_err_t mph_table_set(mph_event_t *ev, mph_table_t *t, const void *key, size_t klen,
                        const void *value, size_t vlen)
{
    if (!ev || !t || (!value && vlen))
        return MPH_ERR_INVALID;
    mph__shard_t *sh = shard_of(ev, t);
    if (!sh)
        return MPH_ERR_PARTITION;
    mph_err_t err = check_key(ev, t, key, klen);
    if (err)
        return err;
    if (t->faust && ((err = faust_form_ok(t, t->faust->key, key, klen, "key")) ||
                     (err = faust_form_ok(t, t->faust->value, value, vlen, "value"))))
        return err;
    if (t->uvalue && t->uvalue->decode) { /* a registered value codec */
        char why[200] = "";
        err = t->uvalue->decode(value ? value : "", vlen, t->uvalue->opaque, why, sizeof why);
        if (err) {
            mph_log(MPH_LOG_WARN, "table %s: value refused by codec %s: %s", t->name,
                    t->uvalue->name, why[0] ? why : mph_err_str(err));
            return err;
        }
    }
    count_op(ev, t, 1);
    err = store_result(ev, t, mph__shard_set(sh, key ? key : "", klen, value ? value : "", vlen));
    if (!err && t->joined)
        err = mph__join_table_changed(ev, t, key ? key : "", klen, value ? value : "", vlen);
    return err;
}

mph_err_t mph_table_delete(mph_event_t *ev, mph_table_t *t, const void *key, size_t klen)
{
    if (!ev || !t)
        return MPH_ERR_INVALID;
    mph__shard_t *sh = shard_of(ev, t);
    if (!sh)
        return MPH_ERR_PARTITION;
    mph_err_t err = check_key(ev, t, key, klen);
    if (err)
        return err;
    /* format=faust: a key without a Faust form was never written, but a
     * rocksdb shard's blind delete would still leave a tombstone that the
     * changelog cannot hold */
    if (t->faust && (err = faust_form_ok(t, t->faust->key, key, klen, "key")))
        return err;
    count_op(ev, t, 2);
    /* A join reacts to the delete of a present key only (a rocksdb shard's
     * delete is blind: it cannot say). */
    const void *had = NULL;
    size_t hl = 0;
    if (t->joined && mph__shard_get(sh, key ? key : "", klen, &had, &hl) != MPH_OK)
        had = NULL;
    err = store_result(ev, t, mph__shard_delete(sh, key ? key : "", klen));
    if (!err && had)
        err = mph__join_table_changed(ev, t, key ? key : "", klen, NULL, 0);
    return err == MPH_ERR_NOENT ? MPH_OK : err;
}

mph_err_t mph_table_get_i64(mph_event_t *ev, mph_table_t *t, const void *key, size_t klen,
                            int64_t *out)
{
    const void *v;
    size_t l;
    mph_err_t err = mph_table_get(ev, t, key, klen, &v, &l);
    if (err == MPH_ERR_NOENT) {
        *out = 0;
        return MPH_OK;
    }
    if (err)
        return err;
    return mph__codec_i64_decode(v, l, out) == MPH_OK ? MPH_OK : MPH_ERR_TYPE;
}

mph_err_t mph_table_incr(mph_event_t *ev, mph_table_t *t, const void *key, size_t klen,
                         int64_t by, int64_t *out)
{
    int64_t cur = 0;
    mph_err_t err = mph_table_get_i64(ev, t, key, klen, &cur);
    if (err)
        return err;
    /* Wraps past INT64_MAX (two's complement) rather than overflowing. */
    int64_t sum = (int64_t)((uint64_t)cur + (uint64_t)by);
    unsigned char buf[8];
    mph__codec_i64_encode(sum, buf);
    err = mph_table_set(ev, t, key, klen, buf, 8);
    if (!err && out)
        *out = sum;
    return err;
}

struct mph_table_update {
    void *value;
    size_t len;
    bool set;
};

mph_err_t mph_table_update_set(mph_table_update_t *upd, const void *value, size_t len)
{
    void *c = malloc(len ? len : 1);
    if (!c)
        return MPH_ERR_NOMEM;
    memcpy(c, value, len);
    free(upd->value);
    upd->value = c;
    upd->len = len;
    upd->set = true;
    return MPH_OK;
}

mph_err_t mph_table_update(mph_event_t *ev, mph_table_t *t, const void *key, size_t klen,
                           mph_table_update_fn *fn, void *opaque)
{
    if (!fn)
        return MPH_ERR_INVALID;
    const void *old = NULL;
    size_t ol = 0;
    mph_err_t err = mph_table_get(ev, t, key, klen, &old, &ol);
    if (err && err != MPH_ERR_NOENT)
        return err;
    mph_table_update_t upd = {NULL, 0, false};
    mph_err_t rc = fn(err ? NULL : old, err ? 0 : ol, &upd, opaque);
    if (rc == MPH_ERR_NOENT)
        err = mph_table_delete(ev, t, key, klen);
    else if (rc != MPH_OK)
        err = rc;
    else
        err = upd.set ? mph_table_set(ev, t, key, klen, upd.value, upd.len) : MPH_OK;
    free(upd.value);
    return err;
}

mph_err_t mph_table_foreach(mph_event_t *ev, mph_table_t *t, mph_table_visit_fn *fn,
                            void *opaque)
{
    if (!ev || !t || !fn)
        return MPH_ERR_INVALID;
    mph__shard_t *sh = shard_of(ev, t);
    if (!sh)
        return MPH_ERR_PARTITION;
    return store_result(ev, t, mph__shard_foreach(sh, fn, opaque));
}

mph_err_t mph_table_lookup(mph_app_t *app, mph_table_t *t, const void *key, size_t klen,
                           void **value, size_t *vlen, int timeout_ms)
{
    if (!app || !t || !value || t->app != app || (!key && klen))
        return MPH_ERR_INVALID;
    return mph__table_lookup_at(app, t, mph_table_partition_of(t, key, klen), key, klen, value,
                                vlen, timeout_ms);
}

mph_err_t mph__table_lookup_at(mph_app_t *app, mph_table_t *t, int32_t partition,
                               const void *key, size_t klen, void **value, size_t *vlen,
                               int timeout_ms)
{
    if (!app || !t || !value || t->app != app)
        return MPH_ERR_INVALID;
    if (ck_pr_load_int(&app->state) != APP_RUNNING || !app->workers)
        return MPH_ERR_STATE;
    if (partition < 0 || partition >= t->partitions)
        return MPH_ERR_INVALID;
    mph__table_req_t *r = calloc(1, sizeof *r);
    if (!r)
        return MPH_ERR_NOMEM;
    r->refs = 2;
    r->table = t;
    r->partition = partition;
    r->key = malloc(klen ? klen : 1);
    r->klen = klen;
    r->done_fd = mph__eventfd_new();
    if (!r->key || r->done_fd < 0) {
        r->refs = 1;
        mph__table_req_release(r);
        return MPH_ERR_NOMEM;
    }
    if (klen)
        memcpy(r->key, key, klen);
    mph__msg_t *m = mph__msg_new(MSG_TABLE_GET, -1, 0);
    if (!m) {
        r->refs = 1;
        mph__table_req_release(r);
        return MPH_ERR_NOMEM;
    }
    m->ptr = r;
    if (mph__worker_post(app->workers[r->partition % app->nworkers], m) != MPH_OK) {
        mph__msg_free(m);
        r->refs = 1;
        mph__table_req_release(r);
        return MPH_ERR_FULL;
    }
    struct pollfd pfd = {r->done_fd, POLLIN, 0};
    int rc = poll(&pfd, 1, timeout_ms);
    mph_err_t err;
    if (rc <= 0) {
        err = MPH_ERR_TIMEOUT;
    } else {
        /* Reading the eventfd is the acquire matching the worker's signal. */
        mph__eventfd_drain(r->done_fd);
        err = r->result;
        if (err == MPH_OK) {
            *value = r->value;
            r->value = NULL;
            if (vlen)
                *vlen = r->vlen;
        }
    }
    mph__table_req_release(r);
    return err;
}

/* ------------------------------------------------------------------ */
/* offline reads of the local RocksDB shards                          */

#include <dirent.h>

typedef mph_err_t (*instance_fn)(mph__rstore_t *st, void *opaque);

/* Opens every <datadir>/<app_id>/<table>/w<N>/ in turn. */
static mph_err_t each_instance(const mph_conf_t *conf, const char *table, instance_fn fn,
                               void *opaque, char *errstr, size_t errstr_size)
{
    const char *datadir = mph_conf_get(conf, "datadir");
    const char *app_id = mph_conf_get(conf, "app_id");
    if (!app_id || !*app_id) {
        snprintf(errstr, errstr_size, "app_id: not set");
        return MPH_ERR_INVALID;
    }
    char base[4096];
    snprintf(base, sizeof base, "%s/%s/%s", datadir && *datadir ? datadir : ".", app_id, table);
    DIR *d = opendir(base);
    if (!d) {
        snprintf(errstr, errstr_size, "no local state for table %s under %s", table, base);
        return MPH_ERR_NOENT;
    }
    mph__rstore_conf_t *rc = mph__rstore_conf_new();
    mph__rstore_env_t *env = rc ? mph__rstore_env_new(rc, errstr, errstr_size) : NULL;
    mph__rstore_conf_destroy(rc);
    if (!env) {
        closedir(d);
        return MPH_ERR_STORE;
    }
    mph_err_t err = MPH_OK;
    int found = 0;
    struct dirent *e;
    while (!err && (e = readdir(d))) {
        if (e->d_name[0] != 'w')
            continue;
        char dir[4400];
        snprintf(dir, sizeof dir, "%s/%s", base, e->d_name);
        mph__rstore_t *st = mph__rstore_open(env, dir, &err, errstr, errstr_size);
        if (!st)
            break;
        found++;
        err = fn(st, opaque);
        mph__rstore_close(st);
    }
    closedir(d);
    mph__rstore_env_destroy(env);
    if (!err && !found) {
        snprintf(errstr, errstr_size, "no local shards for table %s under %s", table, base);
        err = MPH_ERR_NOENT;
    }
    return err;
}

struct local_visit {
    mph_table_visit_fn *fn;
    void *opaque;
    int32_t *part_out;
};

static mph_err_t visit_instance(mph__rstore_t *st, void *opaque)
{
    struct local_visit *v = opaque;
    uint32_t *parts = NULL;
    size_t n = 0;
    mph_err_t err = mph__rstore_list_shards(st, &parts, &n, NULL, 0);
    for (size_t i = 0; !err && i < n; i++) {
        if (v->part_out)
            *v->part_out = (int32_t)parts[i];
        mph__rstore_iter_t *it = mph__rstore_iter_new(st, parts[i], NULL, 0);
        if (!it) {
            err = MPH_ERR_STORE;
            break;
        }
        for (mph__rstore_iter_seek_first(it); !err && mph__rstore_iter_valid(it);
             mph__rstore_iter_next(it)) {
            size_t kl, vl;
            const void *k = mph__rstore_iter_key(it, &kl);
            const void *val = mph__rstore_iter_value(it, &vl);
            err = v->fn(k, kl, val, vl, v->opaque);
        }
        mph__rstore_iter_destroy(it);
    }
    free(parts);
    return err;
}

mph_err_t mph_table_local_foreach(const mph_conf_t *conf, const char *table,
                                  mph_table_visit_fn *fn, void *opaque, int32_t *partition_out,
                                  char *errstr, size_t errstr_size)
{
    char tmp[256];
    if (!errstr || !errstr_size) {
        errstr = tmp;
        errstr_size = sizeof tmp;
    }
    if (!conf || !table || !fn)
        return MPH_ERR_INVALID;
    struct local_visit v = {fn, opaque, partition_out};
    return each_instance(conf, table, visit_instance, &v, errstr, errstr_size);
}

struct local_get {
    const void *key;
    size_t klen;
    int32_t partition;
    void *value;
    size_t vlen;
    bool found;
};

static mph_err_t get_instance(mph__rstore_t *st, void *opaque)
{
    struct local_get *g = opaque;
    if (g->found)
        return MPH_OK;
    mph_err_t err = mph__rstore_get(st, (uint32_t)g->partition, g->key, g->klen, &g->value,
                                    &g->vlen, NULL, 0);
    if (err == MPH_OK)
        g->found = true;
    return err == MPH_ERR_NOENT ? MPH_OK : err;
}

mph_err_t mph_table_local_get(const mph_conf_t *conf, const char *table, const void *key,
                              size_t key_len, void **value, size_t *value_len, char *errstr,
                              size_t errstr_size)
{
    char tmp[256];
    if (!errstr || !errstr_size) {
        errstr = tmp;
        errstr_size = sizeof tmp;
    }
    if (!conf || !table || !value)
        return MPH_ERR_INVALID;
    /* The shard count is not known offline: try the key's partition for
     * every plausible count by asking each instance for its shards. */
    struct local_get g = {key ? key : "", key_len, 0, NULL, 0, false};
    int64_t parts = mph_conf_get_int(conf, "topic_partitions", 8);
    g.partition = mph__kafka_partition_for(g.key, key_len, (int32_t)parts);
    mph_err_t err = each_instance(conf, table, get_instance, &g, errstr, errstr_size);
    if (err)
        return err;
    if (!g.found) {
        snprintf(errstr, errstr_size, "key not found in table %s", table);
        return MPH_ERR_NOENT;
    }
    *value = g.value;
    if (value_len)
        *value_len = g.vlen;
    return MPH_OK;
}
