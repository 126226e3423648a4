/*
 * state/store_rocksdb.c — RocksDB instances holding many shards each.
 *
 * DESIGN
 *
 * Why one instance per (table, worker). Measured with RocksDB 7.8.3, an
 * instance per partition costs ~155 KiB RSS, 6 file descriptors and ~4.4 ms
 * to open; a column family per partition ~74 KiB and ~94 ms; a key prefix
 * nothing. So a worker keeps one instance per table in
 * <datadir>/<table>/w<worker>/ and a shard is a key range of it.
 *
 * Key layout. Every stored key starts with the partition as a 4-byte
 * big-endian number, followed by a namespace byte:
 *
 *     [p:u32be] 0x00 <name>      reserved keys of shard p (metadata)
 *     [p:u32be] 0x00 'c'         the checkpoint of shard p
 *     [p:u32be] 0x01 <user key>  user data of shard p (any bytes, may be
 *                                empty, may start with 0x00 or 0xff)
 *
 * Big-endian partitions keep each shard contiguous and in partition order,
 * so a shard is [p] .. [p+1) (partitions are at most INT32_MAX, so p+1 never
 * wraps), its user keys are exactly [p]0x01 .. [p]0x02, and bytewise order
 * of user keys inside a shard is RocksDB's order. User keys can never reach
 * the 0x00 namespace, so the checkpoint cannot collide with them, and
 * iterators bounded to the user range never see it. The checkpoint value is
 *
 *     [version:u8 = 1] [offset:i64be] [workers:u32be]      (13 bytes)
 *
 * Commits. A commit of a worker is one WriteBatch (puts, deletes, and the
 * new checkpoint of every shard it touches) written through the WAL, so data
 * and checkpoint move together: after a crash either both are there or
 * neither. RocksDB's default point-in-time WAL recovery replays a prefix of
 * the commits, never a torn one.
 *
 * Recovery ordering. Recovery writes large batches with the WAL off. Such
 * writes survive a crash only once their memtable has been flushed, and
 * RocksDB installs flushes of one column family in memtable order, so the
 * durable part of the WAL-less writes is always a prefix of them, whole
 * batches only. Hence the rules:
 *   1. every bulk batch carries its shard's data and the checkpoint as of
 *      its last record, so whatever prefix survives is self-consistent (a
 *      crash mid-recovery loses only progress, never consistency);
 *   2. before the shard receives its first WAL commit, the recoverer calls
 *      mph__rstore_bulk_finish(), which flushes and waits. Without it a WAL
 *      commit carrying checkpoint C could be replayed after a crash while the
 *      WAL-less records below C, still in a memtable, were lost — a
 *      checkpoint that claims data the shard does not have.
 * Other shards of the same instance may keep committing through the WAL
 * during a recovery: their keys are disjoint and each batch is atomic.
 *
 * Dropping a shard is one DeleteRange over [p] .. [p+1), which removes the
 * user keys and the checkpoint at once.
 *
 * Reopening after a failed write. Once a write fails (the disk is full, an
 * I/O error), RocksDB keeps the error as its background error and refuses
 * every later write until DB::Resume(), which its C API does not offer. So
 * the instance is marked failed, and its owner reopens it in place
 * (mph__rstore_reopen): close, open, replay of the WAL, which brings back
 * every commit that was written. The handle (mph__rstore_t) stays the same,
 * so shards that point at it need not know. Every use of the RocksDB handle
 * holds the read side of a rwlock (iterators and pins for their whole life);
 * the reopen holds the write side. A reopen loses what was written with the
 * WAL off and not flushed yet, so it bumps a generation number, and
 * mph__rstore_bulk_finish() refuses to call a recovery durable when the
 * generation changed since that recovery began: the recovery fails loudly
 * instead of handing over a shard whose checkpoint claims lost records.
 *
 * Tuning for many small shards: small memtables (4 MiB, two of them), one
 * LRU block cache for the whole process with index and filter blocks charged
 * to it, whole-key bloom filters, a bounded number of open files per
 * instance, a quiet info log, and the background threads of RocksDB's
 * process-wide default Env, sized once here.
 *
 * This file never includes a runtime header and never lets a RocksDB error
 * string escape: each is copied into errstr and freed.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <pthread.h>
#include <sys/stat.h>

#include <fcntl.h>
#include <unistd.h>

#include <rocksdb/c.h>

#include "mephisto/conf.h"
#include "state/store_rocksdb.h"

#define NS_META         0x00
#define NS_USER         0x01
#define PREFIX_LEN      5 /* partition + namespace byte */
#define CKPT_KEY_LEN    6
#define CKPT_VERSION    1
#define CKPT_VALUE_LEN  13
#define KEYBUF_ON_STACK 256

/* ------------------------------------------------------------------------
 * Error conversion
 * ------------------------------------------------------------------------ */

static void set_err(char *errstr, size_t size, const char *fmt, ...)
    MPH_PRINTF(3, 4);

static void set_err(char *errstr, size_t size, const char *fmt, ...)
{
    va_list ap;

    if (errstr == NULL || size == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(errstr, size, fmt, ap);
    va_end(ap);
}

static mph_err_t code_of_rocksdb_msg(const char *msg)
{
    if (strcasestr(msg, "no space left") != NULL)
        return MPH_ERR_DISK_FULL;
    return MPH_ERR_STORE;
}

/* Converts RocksDB's *rerr (non-NULL) into an error code and a message
 * "<what> <dir>: <rocksdb's text>", then frees RocksDB's string. */
static mph_err_t rocksdb_fail(char *rerr, const char *what, const char *dir,
                              char *errstr, size_t size)
{
    mph_err_t code = code_of_rocksdb_msg(rerr);

    set_err(errstr, size, "%s %s: %s", what, dir, rerr);
    rocksdb_free(rerr);
    return code;
}

/* ------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------ */

struct mph__rstore_conf {
    uint64_t write_buffer_size;
    int64_t max_write_buffer_number;
    uint64_t block_size;
    uint64_t block_cache_size;
    int64_t compression;
    int64_t bottommost_compression; /* -1: same as compression */
    int64_t max_open_files;
    double bloom_bits;
    int64_t max_background_jobs;
    int64_t level0_file_num_compaction_trigger;
    uint64_t target_file_size_base;
    uint64_t max_bytes_for_level_base;
    uint64_t max_total_wal_size;
    bool cache_index_and_filter_blocks;
    uint64_t bytes_per_sync;
    bool use_fsync;
    bool sync;
    bool paranoid_checks;
};

enum opt_kind { OPT_SIZE, OPT_INT, OPT_BOOL, OPT_COMPRESSION, OPT_DOUBLE };

struct opt_def {
    const char *name;
    enum opt_kind kind;
    size_t offset;
    int64_t min; /* OPT_SIZE, OPT_INT, OPT_DOUBLE */
    int64_t max;
};

/* One row of the option table: the field's type follows its kind (SIZE:
 * uint64_t, INT and COMPRESSION: int64_t, DOUBLE: double, BOOL: bool). */
// clang-format off
#define OPT(n, k, lo, hi) \
    {#n, k, offsetof(struct mph__rstore_conf, n), lo, hi}
// clang-format on
#define GIB ((int64_t)1 << 30)

static const struct opt_def opt_defs[] = {
    OPT(write_buffer_size, OPT_SIZE, 64 * 1024, 64 * GIB),
    OPT(max_write_buffer_number, OPT_INT, 1, 64),
    OPT(block_size, OPT_SIZE, 256, 64 * 1024 * 1024),
    OPT(block_cache_size, OPT_SIZE, 0, 1024 * GIB),
    OPT(compression, OPT_COMPRESSION, 0, 0),
    OPT(bottommost_compression, OPT_COMPRESSION, 0, 0),
    OPT(max_open_files, OPT_INT, -1, INT_MAX),
    OPT(bloom_bits, OPT_DOUBLE, 0, 64),
    OPT(max_background_jobs, OPT_INT, 1, 256),
    OPT(level0_file_num_compaction_trigger, OPT_INT, 1, 1024),
    OPT(target_file_size_base, OPT_SIZE, 64 * 1024, 1024 * GIB),
    OPT(max_bytes_for_level_base, OPT_SIZE, 64 * 1024, 1024 * GIB),
    OPT(max_total_wal_size, OPT_SIZE, 0, 1024 * GIB),
    OPT(cache_index_and_filter_blocks, OPT_BOOL, 0, 0),
    OPT(bytes_per_sync, OPT_SIZE, 0, 1024 * GIB),
    OPT(use_fsync, OPT_BOOL, 0, 0),
    OPT(sync, OPT_BOOL, 0, 0),
    OPT(paranoid_checks, OPT_BOOL, 0, 0),
};

static const struct {
    const char *name;
    int type;
} compressions[] = {
    {"none", rocksdb_no_compression},   {"snappy", rocksdb_snappy_compression},
    {"zlib", rocksdb_zlib_compression}, {"bz2", rocksdb_bz2_compression},
    {"lz4", rocksdb_lz4_compression},   {"lz4hc", rocksdb_lz4hc_compression},
    {"zstd", rocksdb_zstd_compression},
};

mph__rstore_conf_t *mph__rstore_conf_new(void)
{
    mph__rstore_conf_t *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->write_buffer_size = 4u << 20;
    c->max_write_buffer_number = 2;
    c->block_size = 4096;
    c->block_cache_size = 64u << 20;
    c->compression = rocksdb_lz4_compression;
    c->bottommost_compression = -1;
    c->max_open_files = 128;
    c->bloom_bits = 10;
    c->max_background_jobs = 2;
    c->level0_file_num_compaction_trigger = 4;
    c->target_file_size_base = 16u << 20;
    c->max_bytes_for_level_base = 64u << 20;
    c->max_total_wal_size = 0;
    c->cache_index_and_filter_blocks = true;
    c->bytes_per_sync = 1u << 20;
    c->use_fsync = false;
    c->sync = false;
    c->paranoid_checks = true;
    return c;
}

void mph__rstore_conf_destroy(mph__rstore_conf_t *conf)
{
    free(conf);
}

static bool parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    unsigned shift = 0;

    while (isspace((unsigned char)*s))
        s++;
    if (!isdigit((unsigned char)*s))
        return false;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0)
        return false;
    switch (*end) {
    case 'k':
    case 'K':
        shift = 10;
        end++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        end++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        end++;
        break;
    default:
        break;
    }
    if (*end != '\0')
        return false;
    if (shift != 0 && v > (UINT64_MAX >> shift))
        return false;
    *out = (uint64_t)v << shift;
    return true;
}

static bool parse_int(const char *s, int64_t *out)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return false;
    *out = v;
    return true;
}

static bool parse_bool(const char *s, bool *out)
{
    if (strcmp(s, "true") == 0 || strcmp(s, "1") == 0) {
        *out = true;
        return true;
    }
    if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0) {
        *out = false;
        return true;
    }
    return false;
}

mph_err_t mph__rstore_conf_set(mph__rstore_conf_t *conf, const char *name,
                               const char *value, char *errstr,
                               size_t errstr_size)
{
    const struct opt_def *d = NULL;
    const char *prop;
    char *field;
    size_t i;

    if (conf == NULL || name == NULL || value == NULL) {
        set_err(errstr, errstr_size, "rocksdb option: missing name or value");
        return MPH_ERR_INVALID;
    }
    prop = strncmp(name, "rocksdb.", 8) == 0 ? name + 8 : name;
    for (i = 0; i < sizeof(opt_defs) / sizeof(opt_defs[0]); i++) {
        if (strcmp(opt_defs[i].name, prop) == 0) {
            d = &opt_defs[i];
            break;
        }
    }
    if (d == NULL) {
        set_err(errstr, errstr_size,
                "rocksdb.%s: unknown or unsupported option", prop);
        return MPH_ERR_INVALID;
    }
    field = (char *)conf + d->offset;

    switch (d->kind) {
    case OPT_SIZE: {
        uint64_t v;
        if (!parse_size(value, &v)) {
            set_err(errstr, errstr_size,
                    "rocksdb.%s: \"%s\" is not a size (bytes, with an "
                    "optional k, m or g suffix)",
                    prop, value);
            return MPH_ERR_INVALID;
        }
        if (v < (uint64_t)d->min || v > (uint64_t)d->max) {
            set_err(errstr, errstr_size,
                    "rocksdb.%s: %s is out of range [%lld, %lld]", prop, value,
                    (long long)d->min, (long long)d->max);
            return MPH_ERR_INVALID;
        }
        memcpy(field, &v, sizeof(v));
        return MPH_OK;
    }
    case OPT_INT: {
        int64_t v;
        if (!parse_int(value, &v)) {
            set_err(errstr, errstr_size, "rocksdb.%s: \"%s\" is not an integer",
                    prop, value);
            return MPH_ERR_INVALID;
        }
        if (v < d->min || v > d->max ||
            (strcmp(prop, "max_open_files") == 0 && v >= 0 && v < 20)) {
            set_err(errstr, errstr_size,
                    "rocksdb.%s: %s is out of range [%lld, %lld]%s", prop,
                    value, (long long)d->min, (long long)d->max,
                    strcmp(prop, "max_open_files") == 0
                        ? " (-1 for unlimited, else at least 20)"
                        : "");
            return MPH_ERR_INVALID;
        }
        memcpy(field, &v, sizeof(v));
        return MPH_OK;
    }
    case OPT_DOUBLE: {
        char *end;
        double v;
        errno = 0;
        v = strtod(value, &end);
        if (errno != 0 || end == value || *end != '\0' || !(v >= d->min) ||
            !(v <= d->max)) {
            set_err(errstr, errstr_size,
                    "rocksdb.%s: \"%s\" is not a number in [%lld, %lld]", prop,
                    value, (long long)d->min, (long long)d->max);
            return MPH_ERR_INVALID;
        }
        memcpy(field, &v, sizeof(v));
        return MPH_OK;
    }
    case OPT_BOOL: {
        bool v;
        if (!parse_bool(value, &v)) {
            set_err(errstr, errstr_size,
                    "rocksdb.%s: \"%s\" is not a boolean (true, false, 1, 0)",
                    prop, value);
            return MPH_ERR_INVALID;
        }
        memcpy(field, &v, sizeof(v));
        return MPH_OK;
    }
    case OPT_COMPRESSION:
        for (i = 0; i < sizeof(compressions) / sizeof(compressions[0]); i++) {
            if (strcmp(compressions[i].name, value) == 0) {
                int64_t v = compressions[i].type;
                memcpy(field, &v, sizeof(v));
                return MPH_OK;
            }
        }
        set_err(errstr, errstr_size,
                "rocksdb.%s: \"%s\" is not one of none, snappy, zlib, bz2, "
                "lz4, lz4hc, zstd",
                prop, value);
        return MPH_ERR_INVALID;
    }
    abort(); /* every kind is handled above */
}

/* ------------------------------------------------------------------------
 * Env
 * ------------------------------------------------------------------------ */

struct mph__rstore_env {
    rocksdb_env_t *env;
    rocksdb_cache_t *cache;
    rocksdb_options_t *opts;
    rocksdb_writeoptions_t *wo;      /* commits: WAL on */
    rocksdb_writeoptions_t *wo_bulk; /* recovery: WAL off */
    rocksdb_readoptions_t *ro;
    rocksdb_flushoptions_t *fo;
};

mph__rstore_env_t *mph__rstore_env_new(const mph__rstore_conf_t *conf,
                                       char *errstr, size_t errstr_size)
{
    mph__rstore_conf_t *defaults = NULL;
    rocksdb_block_based_table_options_t *bbto;
    mph__rstore_env_t *e;
    rocksdb_options_t *o;

    if (conf == NULL) {
        defaults = mph__rstore_conf_new();
        if (defaults == NULL)
            goto fail_nomem;
        conf = defaults;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL)
        goto fail_free_defaults;

    e->env = rocksdb_create_default_env();
    rocksdb_env_set_low_priority_background_threads(
        e->env, (int)conf->max_background_jobs);
    rocksdb_env_set_high_priority_background_threads(e->env, 1);
    e->cache = rocksdb_cache_create_lru(conf->block_cache_size);

    bbto = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(bbto, e->cache);
    rocksdb_block_based_options_set_block_size(bbto, conf->block_size);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(
        bbto, conf->cache_index_and_filter_blocks);
    rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(
        bbto, conf->cache_index_and_filter_blocks);
    rocksdb_block_based_options_set_format_version(bbto, 5);
    if (conf->bloom_bits > 0) /* ownership moves to bbto */
        rocksdb_block_based_options_set_filter_policy(
            bbto, rocksdb_filterpolicy_create_bloom_full(conf->bloom_bits));

    o = e->opts = rocksdb_options_create();
    rocksdb_options_set_env(o, e->env);
    rocksdb_options_set_block_based_table_factory(o, bbto); /* copies */
    rocksdb_block_based_options_destroy(bbto);
    rocksdb_options_set_create_if_missing(o, 1);
    rocksdb_options_set_paranoid_checks(o, conf->paranoid_checks);
    rocksdb_options_set_write_buffer_size(o, conf->write_buffer_size);
    rocksdb_options_set_max_write_buffer_number(
        o, (int)conf->max_write_buffer_number);
    rocksdb_options_set_compression(o, (int)conf->compression);
    rocksdb_options_set_bottommost_compression(
        o,
        (int)(conf->bottommost_compression >= 0 ? conf->bottommost_compression
                                                : conf->compression));
    rocksdb_options_set_max_open_files(o, (int)conf->max_open_files);
    rocksdb_options_set_max_file_opening_threads(o, 1);
    rocksdb_options_set_max_background_jobs(o, (int)conf->max_background_jobs);
    rocksdb_options_set_level0_file_num_compaction_trigger(
        o, (int)conf->level0_file_num_compaction_trigger);
    rocksdb_options_set_target_file_size_base(o, conf->target_file_size_base);
    rocksdb_options_set_max_bytes_for_level_base(
        o, conf->max_bytes_for_level_base);
    rocksdb_options_set_max_total_wal_size(o, conf->max_total_wal_size);
    rocksdb_options_set_bytes_per_sync(o, conf->bytes_per_sync);
    rocksdb_options_set_use_fsync(o, conf->use_fsync);
    rocksdb_options_set_skip_stats_update_on_db_open(o, 1);
    /* A quiet info log: warnings and worse, two small files at most. */
    rocksdb_options_set_info_log_level(o, 2 /* WARN */);
    rocksdb_options_set_keep_log_file_num(o, 2);
    rocksdb_options_set_max_log_file_size(o, 1u << 20);
    rocksdb_options_set_stats_dump_period_sec(o, 0);
    rocksdb_options_set_stats_persist_period_sec(o, 0);

    e->wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(e->wo, conf->sync);
    e->wo_bulk = rocksdb_writeoptions_create();
    rocksdb_writeoptions_disable_WAL(e->wo_bulk, 1);
    e->ro = rocksdb_readoptions_create();
    e->fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(e->fo, 1);

    mph__rstore_conf_destroy(defaults);
    return e;

fail_free_defaults:
    mph__rstore_conf_destroy(defaults);
fail_nomem:
    set_err(errstr, errstr_size, "rocksdb store env: out of memory");
    return NULL;
}

void mph__rstore_env_destroy(mph__rstore_env_t *e)
{
    if (e == NULL)
        return;
    rocksdb_flushoptions_destroy(e->fo);
    rocksdb_readoptions_destroy(e->ro);
    rocksdb_writeoptions_destroy(e->wo_bulk);
    rocksdb_writeoptions_destroy(e->wo);
    rocksdb_options_destroy(e->opts);
    rocksdb_cache_destroy(e->cache);
    rocksdb_env_destroy(e->env);
    free(e);
}

size_t mph__rstore_env_cache_usage(const mph__rstore_env_t *e)
{
    return rocksdb_cache_get_usage(e->cache);
}

/* ------------------------------------------------------------------------
 * Keys
 * ------------------------------------------------------------------------ */

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           (uint32_t)p[3];
}

static void prefix_of(unsigned char out[PREFIX_LEN], uint32_t partition,
                      unsigned char ns)
{
    put_be32(out, partition);
    out[4] = ns;
}

static void ckpt_key_of(unsigned char out[CKPT_KEY_LEN], uint32_t partition)
{
    prefix_of(out, partition, NS_META);
    out[5] = 'c';
}

static bool partition_ok(uint32_t partition)
{
    return partition <= (uint32_t)MPH__RSTORE_PARTITION_MAX;
}

/* A contiguous [p]0x01<key>: on the stack when small, else on the heap. */
struct keybuf {
    unsigned char stack[KEYBUF_ON_STACK];
    unsigned char *p;
    size_t len;
};

static bool keybuf_init(struct keybuf *kb, uint32_t partition, const void *key,
                        size_t klen)
{
    kb->len = PREFIX_LEN + klen;
    kb->p = kb->len <= sizeof(kb->stack) ? kb->stack : malloc(kb->len);
    if (kb->p == NULL)
        return false;
    prefix_of(kb->p, partition, NS_USER);
    if (klen > 0)
        memcpy(kb->p + PREFIX_LEN, key, klen);
    return true;
}

static void keybuf_release(struct keybuf *kb)
{
    if (kb->p != kb->stack)
        free(kb->p);
}

/* ------------------------------------------------------------------------
 * Instances
 * ------------------------------------------------------------------------ */

struct mph__rstore {
    mph__rstore_env_t *env;
    rocksdb_t *db; /* NULL after a reopen that failed; guarded by lock */
    char *dir;
    pthread_rwlock_t lock; /* read: any use of db; write: reopen */
    int failed;            /* __atomic: a write failed since the last open */
    uint64_t gen;          /* __atomic: opens of this handle so far */
};

/* Takes the read side of st->lock for one use of the RocksDB handle; fails
 * (lock not held) when the instance is closed after a failed reopen. */
static mph_err_t use_begin(mph__rstore_t *st, char *errstr, size_t size)
{
    pthread_rwlock_rdlock(&st->lock);
    if (st->db != NULL)
        return MPH_OK;
    pthread_rwlock_unlock(&st->lock);
    set_err(errstr, size,
            "state store %s is closed: it could not be reopened after a "
            "failed write",
            st->dir);
    return MPH_ERR_STORE;
}

static void use_end(mph__rstore_t *st)
{
    pthread_rwlock_unlock(&st->lock);
}

/* A failed write leaves RocksDB refusing writes until it is reopened. */
static mph_err_t write_failed(mph__rstore_t *st, char *rerr, const char *what,
                              char *errstr, size_t errstr_size)
{
    __atomic_store_n(&st->failed, 1, __ATOMIC_RELEASE);
    return rocksdb_fail(rerr, what, st->dir, errstr, errstr_size);
}

mph_err_t mph__rstore_path(char *buf, size_t size, const char *datadir,
                           const char *table, int worker)
{
    int n;

    if (datadir == NULL || *datadir == '\0' || table == NULL ||
        *table == '\0' || strcmp(table, ".") == 0 || strcmp(table, "..") == 0 ||
        strchr(table, '/') != NULL || worker < 0)
        return MPH_ERR_INVALID;
    n = snprintf(buf, size, "%s/%s/w%d", datadir, table, worker);
    if (n < 0 || (size_t)n >= size)
        return MPH_ERR_RANGE;
    return MPH_OK;
}

/* mkdir -p: creates dir and its missing parents. */
static mph_err_t make_dirs(const char *dir, char *errstr, size_t errstr_size)
{
    char *path = strdup(dir);
    mph_err_t rc = MPH_OK;
    char *p;
    struct stat sb;

    if (path == NULL) {
        set_err(errstr, errstr_size, "state directory %s: out of memory", dir);
        return MPH_ERR_NOMEM;
    }
    for (p = path + 1;; p++) {
        bool last = *p == '\0';
        if (*p != '/' && !last)
            continue;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            int e = errno;
            set_err(errstr, errstr_size,
                    "cannot create state directory %s: %s: %s", dir, path,
                    strerror(e));
            rc = e == ENOSPC ? MPH_ERR_DISK_FULL : MPH_ERR_IO;
            break;
        }
        if (last) {
            if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
                set_err(errstr, errstr_size,
                        "cannot create state directory %s: it exists and is "
                        "not a directory",
                        dir);
                rc = MPH_ERR_IO;
            }
            break;
        }
        *p = '/';
    }
    free(path);
    return rc;
}

mph_err_t mph__rstore_claim_dir(const char *dir, const char *app_id,
                                char *errstr, size_t errstr_size)
{
    char path[PATH_MAX], text[512];
    mph_err_t rc = make_dirs(dir, errstr, errstr_size);
    if (rc != MPH_OK)
        return rc;
    int n = snprintf(path, sizeof path, "%s/%s", dir, MPH_CONF_STATE_MARKER);
    if (n < 0 || (size_t)n >= sizeof path) {
        set_err(errstr, errstr_size, "state directory %s: path too long", dir);
        return MPH_ERR_IO;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno == EEXIST)
        return MPH_OK;
    int len = snprintf(text, sizeof text,
                       "mephisto state of app %s: RocksDB table shards in "
                       "<table>/w<worker>/.\n"
                       "`mephisto reset` deletes only a directory holding "
                       "this file.\n",
                       app_id ? app_id : "");
    if (len < 0 || (size_t)len >= sizeof text)
        len = (int)strlen(text);
    int e = fd < 0 ? errno : 0;
    if (fd >= 0) {
        errno = 0;
        if (write(fd, text, (size_t)len) != (ssize_t)len)
            e = errno ? errno : EIO;
        if (close(fd) != 0 && !e)
            e = errno;
    }
    if (e) {
        set_err(errstr, errstr_size, "cannot write %s: %s", path, strerror(e));
        return e == ENOSPC ? MPH_ERR_DISK_FULL : MPH_ERR_IO;
    }
    return MPH_OK;
}

mph__rstore_t *mph__rstore_open(mph__rstore_env_t *env, const char *dir,
                                mph_err_t *err, char *errstr,
                                size_t errstr_size)
{
    mph__rstore_t *st;
    char *rerr = NULL;
    mph_err_t rc;

    if (env == NULL || dir == NULL || *dir == '\0') {
        set_err(errstr, errstr_size, "state store: no directory given");
        rc = MPH_ERR_INVALID;
        goto fail;
    }
    rc = make_dirs(dir, errstr, errstr_size);
    if (rc != MPH_OK)
        goto fail;
    st = calloc(1, sizeof(*st));
    if (st == NULL || (st->dir = strdup(dir)) == NULL) {
        set_err(errstr, errstr_size, "state store %s: out of memory", dir);
        rc = MPH_ERR_NOMEM;
        goto fail_free_st;
    }
    st->env = env;
    st->gen = 1;
    pthread_rwlock_init(&st->lock, NULL);
    st->db = rocksdb_open(env->opts, dir, &rerr);
    if (rerr != NULL) {
        /* RocksDB reports a held lock as "IO error: While lock file:
         * <dir>/LOCK: ..." (another process) or "lock hold by current
         * process ... <dir>/LOCK: ..." (this one). */
        if (strstr(rerr, "/LOCK: ") != NULL) {
            set_err(errstr, errstr_size,
                    "state store %s is locked: another worker process is "
                    "using it (%s)",
                    dir, rerr);
            rocksdb_free(rerr);
            rc = MPH_ERR_STORE;
        } else {
            rc = rocksdb_fail(rerr, "cannot open state store", dir, errstr,
                              errstr_size);
        }
        goto fail_free_st;
    }
    if (err != NULL)
        *err = MPH_OK;
    return st;

fail_free_st:
    if (st != NULL && st->env != NULL)
        pthread_rwlock_destroy(&st->lock);
    if (st != NULL)
        free(st->dir);
    free(st);
fail:
    if (err != NULL)
        *err = rc;
    return NULL;
}

void mph__rstore_close(mph__rstore_t *st)
{
    if (st == NULL)
        return;
    if (st->db != NULL)
        rocksdb_close(st->db);
    pthread_rwlock_destroy(&st->lock);
    free(st->dir);
    free(st);
}

bool mph__rstore_failed(const mph__rstore_t *st)
{
    return __atomic_load_n(&st->failed, __ATOMIC_ACQUIRE) != 0;
}

uint64_t mph__rstore_gen(const mph__rstore_t *st)
{
    return __atomic_load_n(&st->gen, __ATOMIC_ACQUIRE);
}

mph_err_t mph__rstore_reopen(mph__rstore_t *st, char *errstr,
                             size_t errstr_size)
{
    char *rerr = NULL;
    mph_err_t rc = MPH_OK;

    pthread_rwlock_wrlock(&st->lock);
    if (st->db != NULL)
        rocksdb_close(st->db);
    st->db = rocksdb_open(st->env->opts, st->dir, &rerr);
    __atomic_add_fetch(&st->gen, 1, __ATOMIC_ACQ_REL);
    if (rerr != NULL) {
        st->db = NULL;
        rc = rocksdb_fail(rerr, "cannot reopen state store", st->dir, errstr,
                          errstr_size);
    } else {
        __atomic_store_n(&st->failed, 0, __ATOMIC_RELEASE);
    }
    pthread_rwlock_unlock(&st->lock);
    return rc;
}

const char *mph__rstore_dir(const mph__rstore_t *st)
{
    return st->dir;
}

/* ------------------------------------------------------------------------
 * Reads
 * ------------------------------------------------------------------------ */

/* The caller holds the read side of st->lock (use_begin). */
static mph_err_t get_raw(mph__rstore_t *st, const unsigned char *k, size_t klen,
                         rocksdb_pinnableslice_t **out, char *errstr,
                         size_t errstr_size)
{
    char *rerr = NULL;

    *out =
        rocksdb_get_pinned(st->db, st->env->ro, (const char *)k, klen, &rerr);
    if (rerr != NULL)
        return rocksdb_fail(rerr, "read from state store", st->dir, errstr,
                            errstr_size);
    return *out == NULL ? MPH_ERR_NOENT : MPH_OK;
}

/* A pinned value: RocksDB's slice plus the read lock it keeps. */
struct mph__rstore_pin {
    mph__rstore_t *st;
    rocksdb_pinnableslice_t *ps;
};

/* Reads key of partition's shard under the read lock, which it returns
 * held on MPH_OK (and released otherwise). */
static mph_err_t get_locked(mph__rstore_t *st, uint32_t partition,
                            const void *key, size_t klen,
                            rocksdb_pinnableslice_t **ps, char *errstr,
                            size_t errstr_size)
{
    struct keybuf kb;
    mph_err_t rc;

    if (!partition_ok(partition)) {
        set_err(errstr, errstr_size, "partition %u is out of range", partition);
        return MPH_ERR_RANGE;
    }
    if (!keybuf_init(&kb, partition, key, klen)) {
        set_err(errstr, errstr_size, "state store read: out of memory");
        return MPH_ERR_NOMEM;
    }
    rc = use_begin(st, errstr, errstr_size);
    if (rc == MPH_OK) {
        rc = get_raw(st, kb.p, kb.len, ps, errstr, errstr_size);
        if (rc != MPH_OK)
            use_end(st);
    }
    keybuf_release(&kb);
    return rc;
}

mph_err_t mph__rstore_get_pinned(mph__rstore_t *st, uint32_t partition,
                                 const void *key, size_t klen,
                                 mph__rstore_pin_t **pin, const void **val,
                                 size_t *vlen, char *errstr, size_t errstr_size)
{
    rocksdb_pinnableslice_t *ps = NULL;
    mph__rstore_pin_t *p;
    mph_err_t rc;

    *pin = NULL;
    p = malloc(sizeof(*p));
    if (p == NULL) {
        set_err(errstr, errstr_size, "state store read: out of memory");
        return MPH_ERR_NOMEM;
    }
    rc = get_locked(st, partition, key, klen, &ps, errstr, errstr_size);
    if (rc != MPH_OK) {
        free(p);
        return rc;
    }
    p->st = st;
    p->ps = ps;
    *val = rocksdb_pinnableslice_value(ps, vlen);
    *pin = p;
    return MPH_OK;
}

void mph__rstore_pin_free(mph__rstore_pin_t *pin)
{
    if (pin == NULL)
        return;
    rocksdb_pinnableslice_destroy(pin->ps);
    use_end(pin->st);
    free(pin);
}

mph_err_t mph__rstore_get(mph__rstore_t *st, uint32_t partition,
                          const void *key, size_t klen, void **val,
                          size_t *vlen, char *errstr, size_t errstr_size)
{
    rocksdb_pinnableslice_t *ps = NULL;
    const void *v;
    size_t n;
    mph_err_t rc;

    rc = get_locked(st, partition, key, klen, &ps, errstr, errstr_size);
    if (rc != MPH_OK)
        return rc;
    v = rocksdb_pinnableslice_value(ps, &n);
    *val = malloc(n > 0 ? n : 1);
    if (*val == NULL) {
        rc = MPH_ERR_NOMEM;
        set_err(errstr, errstr_size, "state store read: out of memory");
    } else {
        if (n > 0)
            memcpy(*val, v, n);
        *vlen = n;
    }
    rocksdb_pinnableslice_destroy(ps);
    use_end(st);
    return rc;
}

static void ckpt_encode(unsigned char out[CKPT_VALUE_LEN],
                        const mph__rstore_checkpoint_t *cp)
{
    uint64_t off = (uint64_t)cp->offset;

    out[0] = CKPT_VERSION;
    put_be32(out + 1, (uint32_t)(off >> 32));
    put_be32(out + 5, (uint32_t)off);
    put_be32(out + 9, cp->workers);
}

mph_err_t mph__rstore_checkpoint_get(mph__rstore_t *st, uint32_t partition,
                                     mph__rstore_checkpoint_t *out,
                                     char *errstr, size_t errstr_size)
{
    unsigned char k[CKPT_KEY_LEN];
    rocksdb_pinnableslice_t *ps;
    const unsigned char *v;
    size_t n;
    mph_err_t rc;

    if (!partition_ok(partition)) {
        set_err(errstr, errstr_size, "partition %u is out of range", partition);
        return MPH_ERR_RANGE;
    }
    ckpt_key_of(k, partition);
    rc = use_begin(st, errstr, errstr_size);
    if (rc != MPH_OK)
        return rc;
    rc = get_raw(st, k, sizeof(k), &ps, errstr, errstr_size);
    if (rc != MPH_OK)
        goto out;
    v = (const unsigned char *)rocksdb_pinnableslice_value(ps, &n);
    if (n != CKPT_VALUE_LEN || v[0] != CKPT_VERSION) {
        set_err(errstr, errstr_size,
                "state store %s: checkpoint of partition %u is unreadable "
                "(version %u, %zu bytes)",
                st->dir, partition, n > 0 ? v[0] : 0u, n);
        rc = MPH_ERR_STORE;
    } else {
        out->offset = (int64_t)((uint64_t)get_be32(v + 1) << 32 |
                                (uint64_t)get_be32(v + 5));
        out->workers = get_be32(v + 9);
    }
    rocksdb_pinnableslice_destroy(ps);
out:
    use_end(st);
    return rc;
}

/* ------------------------------------------------------------------------
 * Batches
 * ------------------------------------------------------------------------ */

struct mph__rstore_batch {
    rocksdb_writebatch_t *wb;
};

mph__rstore_batch_t *mph__rstore_batch_new(void)
{
    mph__rstore_batch_t *b = malloc(sizeof(*b));

    if (b == NULL)
        return NULL;
    b->wb = rocksdb_writebatch_create();
    return b;
}

void mph__rstore_batch_destroy(mph__rstore_batch_t *b)
{
    if (b == NULL)
        return;
    rocksdb_writebatch_destroy(b->wb);
    free(b);
}

void mph__rstore_batch_clear(mph__rstore_batch_t *b)
{
    rocksdb_writebatch_clear(b->wb);
}

mph_err_t mph__rstore_batch_put(mph__rstore_batch_t *b, uint32_t partition,
                                const void *key, size_t klen, const void *val,
                                size_t vlen)
{
    unsigned char prefix[PREFIX_LEN];
    const char *kparts[2];
    size_t ksizes[2];
    const char *vparts[1] = {val != NULL ? (const char *)val : ""};
    size_t vsizes[1] = {vlen};

    if (!partition_ok(partition))
        return MPH_ERR_RANGE;
    prefix_of(prefix, partition, NS_USER);
    kparts[0] = (const char *)prefix;
    ksizes[0] = PREFIX_LEN;
    kparts[1] = key != NULL ? (const char *)key : "";
    ksizes[1] = klen;
    rocksdb_writebatch_putv(b->wb, 2, kparts, ksizes, 1, vparts, vsizes);
    return MPH_OK;
}

mph_err_t mph__rstore_batch_delete(mph__rstore_batch_t *b, uint32_t partition,
                                   const void *key, size_t klen)
{
    unsigned char prefix[PREFIX_LEN];
    const char *kparts[2];
    size_t ksizes[2];

    if (!partition_ok(partition))
        return MPH_ERR_RANGE;
    prefix_of(prefix, partition, NS_USER);
    kparts[0] = (const char *)prefix;
    ksizes[0] = PREFIX_LEN;
    kparts[1] = key != NULL ? (const char *)key : "";
    ksizes[1] = klen;
    rocksdb_writebatch_deletev(b->wb, 2, kparts, ksizes);
    return MPH_OK;
}

mph_err_t mph__rstore_batch_checkpoint(mph__rstore_batch_t *b,
                                       uint32_t partition,
                                       const mph__rstore_checkpoint_t *cp)
{
    unsigned char k[CKPT_KEY_LEN];
    unsigned char v[CKPT_VALUE_LEN];

    if (!partition_ok(partition))
        return MPH_ERR_RANGE;
    ckpt_key_of(k, partition);
    ckpt_encode(v, cp);
    rocksdb_writebatch_put(b->wb, (const char *)k, sizeof(k), (const char *)v,
                           sizeof(v));
    return MPH_OK;
}

mph_err_t mph__rstore_batch_drop(mph__rstore_batch_t *b, uint32_t partition)
{
    unsigned char lo[4], hi[4];

    if (!partition_ok(partition))
        return MPH_ERR_RANGE;
    put_be32(lo, partition);
    put_be32(hi, partition + 1);
    rocksdb_writebatch_delete_range(b->wb, (const char *)lo, sizeof(lo),
                                    (const char *)hi, sizeof(hi));
    return MPH_OK;
}

size_t mph__rstore_batch_count(mph__rstore_batch_t *b)
{
    return (size_t)rocksdb_writebatch_count(b->wb);
}

size_t mph__rstore_batch_bytes(mph__rstore_batch_t *b)
{
    size_t n;

    rocksdb_writebatch_data(b->wb, &n);
    return n;
}

mph_err_t mph__rstore_write(mph__rstore_t *st, mph__rstore_batch_t *b,
                            char *errstr, size_t errstr_size)
{
    char *rerr = NULL;
    mph_err_t rc = use_begin(st, errstr, errstr_size);

    if (rc != MPH_OK)
        return rc;
    rocksdb_write(st->db, st->env->wo, b->wb, &rerr);
    if (rerr != NULL)
        rc = write_failed(st, rerr, "write to state store", errstr,
                          errstr_size);
    use_end(st);
    return rc;
}

/* Fails when the handle was reopened since generation gen: WAL-less writes
 * made before the reopen may be gone. Called under the read lock. */
static mph_err_t same_gen(mph__rstore_t *st, uint64_t gen, char *errstr,
                          size_t errstr_size)
{
    if (gen == mph__rstore_gen(st))
        return MPH_OK;
    set_err(errstr, errstr_size,
            "state store %s was reopened after a failed write during a "
            "recovery into it; the recovery must start again",
            st->dir);
    return MPH_ERR_STORE;
}

mph_err_t mph__rstore_write_bulk(mph__rstore_t *st, mph__rstore_batch_t *b,
                                 uint64_t gen, char *errstr,
                                 size_t errstr_size)
{
    char *rerr = NULL;
    mph_err_t rc = use_begin(st, errstr, errstr_size);

    if (rc != MPH_OK)
        return rc;
    rc = same_gen(st, gen, errstr, errstr_size);
    if (rc == MPH_OK) {
        rocksdb_write(st->db, st->env->wo_bulk, b->wb, &rerr);
        if (rerr != NULL)
            rc = write_failed(st, rerr, "bulk write to state store", errstr,
                              errstr_size);
    }
    use_end(st);
    return rc;
}

mph_err_t mph__rstore_bulk_finish(mph__rstore_t *st, uint64_t gen,
                                  char *errstr, size_t errstr_size)
{
    char *rerr = NULL;
    mph_err_t rc = use_begin(st, errstr, errstr_size);

    if (rc != MPH_OK)
        return rc;
    rc = same_gen(st, gen, errstr, errstr_size);
    if (rc == MPH_OK) {
        rocksdb_flush(st->db, st->env->fo, &rerr);
        if (rerr != NULL)
            rc = write_failed(st, rerr, "flush of state store", errstr,
                              errstr_size);
    }
    use_end(st);
    return rc;
}

mph_err_t mph__rstore_drop_shard(mph__rstore_t *st, uint32_t partition,
                                 char *errstr, size_t errstr_size)
{
    mph__rstore_batch_t *b;
    mph_err_t rc;

    if (!partition_ok(partition)) {
        set_err(errstr, errstr_size, "partition %u is out of range", partition);
        return MPH_ERR_RANGE;
    }
    b = mph__rstore_batch_new();
    if (b == NULL) {
        set_err(errstr, errstr_size, "state store drop: out of memory");
        return MPH_ERR_NOMEM;
    }
    mph__rstore_batch_drop(b, partition);
    rc = mph__rstore_write(st, b, errstr, errstr_size);
    mph__rstore_batch_destroy(b);
    return rc;
}

/* ------------------------------------------------------------------------
 * Iterators
 * ------------------------------------------------------------------------ */

/* An iterator keeps the read side of st->lock for its whole life. */
struct mph__rstore_iter {
    mph__rstore_t *st;
    rocksdb_readoptions_t *ro; /* holds slices of lo and hi below */
    rocksdb_iterator_t *it;
    uint32_t partition;
    unsigned char lo[PREFIX_LEN];
    unsigned char hi[PREFIX_LEN];
};

mph__rstore_iter_t *mph__rstore_iter_new(mph__rstore_t *st, uint32_t partition,
                                         char *errstr, size_t errstr_size)
{
    mph__rstore_iter_t *it;

    if (!partition_ok(partition)) {
        set_err(errstr, errstr_size, "partition %u is out of range", partition);
        return NULL;
    }
    it = calloc(1, sizeof(*it));
    if (it == NULL) {
        set_err(errstr, errstr_size, "state store iterator: out of memory");
        return NULL;
    }
    if (use_begin(st, errstr, errstr_size) != MPH_OK) {
        free(it);
        return NULL;
    }
    it->st = st;
    it->partition = partition;
    prefix_of(it->lo, partition, NS_USER);
    prefix_of(it->hi, partition, NS_USER + 1);
    it->ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_lower_bound(it->ro, (const char *)it->lo,
                                                sizeof(it->lo));
    rocksdb_readoptions_set_iterate_upper_bound(it->ro, (const char *)it->hi,
                                                sizeof(it->hi));
    it->it = rocksdb_create_iterator(st->db, it->ro);
    return it;
}

void mph__rstore_iter_destroy(mph__rstore_iter_t *it)
{
    if (it == NULL)
        return;
    rocksdb_iter_destroy(it->it);
    rocksdb_readoptions_destroy(it->ro);
    use_end(it->st);
    free(it);
}

void mph__rstore_iter_seek_first(mph__rstore_iter_t *it)
{
    rocksdb_iter_seek(it->it, (const char *)it->lo, sizeof(it->lo));
}

mph_err_t mph__rstore_iter_seek(mph__rstore_iter_t *it, const void *key,
                                size_t klen)
{
    struct keybuf kb;

    if (!keybuf_init(&kb, it->partition, key, klen))
        return MPH_ERR_NOMEM;
    rocksdb_iter_seek(it->it, (const char *)kb.p, kb.len);
    keybuf_release(&kb);
    return MPH_OK;
}

bool mph__rstore_iter_valid(const mph__rstore_iter_t *it)
{
    return rocksdb_iter_valid(it->it) != 0;
}

void mph__rstore_iter_next(mph__rstore_iter_t *it)
{
    rocksdb_iter_next(it->it);
}

const void *mph__rstore_iter_key(const mph__rstore_iter_t *it, size_t *klen)
{
    size_t n;
    const char *k = rocksdb_iter_key(it->it, &n);

    *klen = n - PREFIX_LEN;
    return k + PREFIX_LEN;
}

const void *mph__rstore_iter_value(const mph__rstore_iter_t *it, size_t *vlen)
{
    return rocksdb_iter_value(it->it, vlen);
}

mph_err_t mph__rstore_iter_status(const mph__rstore_iter_t *it, char *errstr,
                                  size_t errstr_size)
{
    char *rerr = NULL;

    rocksdb_iter_get_error(it->it, &rerr);
    if (rerr != NULL)
        return rocksdb_fail(rerr, "iteration of state store", it->st->dir,
                            errstr, errstr_size);
    return MPH_OK;
}

/* ------------------------------------------------------------------------
 * Administration
 * ------------------------------------------------------------------------ */

mph_err_t mph__rstore_count(mph__rstore_t *st, uint32_t partition,
                            uint64_t *out, char *errstr, size_t errstr_size)
{
    mph__rstore_iter_t *it;
    uint64_t n = 0;
    mph_err_t rc;

    it = mph__rstore_iter_new(st, partition, errstr, errstr_size);
    if (it == NULL)
        return partition_ok(partition) ? MPH_ERR_NOMEM : MPH_ERR_RANGE;
    for (mph__rstore_iter_seek_first(it); mph__rstore_iter_valid(it);
         mph__rstore_iter_next(it))
        n++;
    rc = mph__rstore_iter_status(it, errstr, errstr_size);
    mph__rstore_iter_destroy(it);
    if (rc == MPH_OK)
        *out = n;
    return rc;
}

mph_err_t mph__rstore_list_shards(mph__rstore_t *st, uint32_t **parts,
                                  size_t *n, char *errstr, size_t errstr_size)
{
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it;
    uint32_t *arr = NULL;
    size_t len = 0, cap = 0;
    unsigned char seek[4];
    char *rerr = NULL;
    mph_err_t rc = MPH_OK;

    rc = use_begin(st, errstr, errstr_size);
    if (rc != MPH_OK)
        return rc;
    ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_fill_cache(ro, 0);
    it = rocksdb_create_iterator(st->db, ro);
    put_be32(seek, 0);
    rocksdb_iter_seek(it, (const char *)seek, sizeof(seek));
    while (rocksdb_iter_valid(it)) {
        size_t klen;
        const unsigned char *k =
            (const unsigned char *)rocksdb_iter_key(it, &klen);
        uint32_t p;

        if (klen < PREFIX_LEN) {
            /* Not a key this module wrote: skip it. */
            rocksdb_iter_next(it);
            continue;
        }
        p = get_be32(k);
        if (len == cap) {
            size_t ncap = cap == 0 ? 64 : cap * 2;
            uint32_t *na = realloc(arr, ncap * sizeof(*arr));
            if (na == NULL) {
                set_err(errstr, errstr_size,
                        "state store %s: out of memory listing shards",
                        st->dir);
                rc = MPH_ERR_NOMEM;
                goto done;
            }
            arr = na;
            cap = ncap;
        }
        arr[len++] = p;
        if (p == UINT32_MAX)
            break;
        put_be32(seek, p + 1);
        rocksdb_iter_seek(it, (const char *)seek, sizeof(seek));
    }
    rocksdb_iter_get_error(it, &rerr);
    if (rerr != NULL)
        rc = rocksdb_fail(rerr, "listing shards of state store", st->dir,
                          errstr, errstr_size);
done:
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    use_end(st);
    if (rc != MPH_OK) {
        free(arr);
        return rc;
    }
    if (len == 0) {
        free(arr);
        arr = NULL;
    }
    *parts = arr;
    *n = len;
    return MPH_OK;
}
