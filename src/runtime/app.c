/*
 * The app: lifecycle and registry. See app.h for who owns what.
 *
 * Start order (each step undone in reverse if a later one fails): Kafka
 * environment → app producer (admin calls, mph_send) → topics created and
 * their partition counts read (and the leader topic, services.c) →
 * coordinator (owns the group consumer's callbacks) → group consumer →
 * workers → services thread (hooks, timers, tasks) → coordinator thread
 * (subscribes). Stop runs through the coordinator's graceful stop (which
 * stops the services first), then frees in reverse.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <ck_pr.h>

#include "io/codec.h"
#include "io/uring.h"
#include "mephisto/log.h"
#include "runtime/app.h"
#include "runtime/config.h"
#include "runtime/coordinator.h"
#include "runtime/global_table.h"
#include "runtime/msg.h"
#include "runtime/join.h"
#include "runtime/services.h"
#include "runtime/rpc.h"
#include "runtime/table.h"
#include "runtime/web.h"
#include "runtime/worker.h"
#include "state/store_rocksdb.h"

static void set_errstr(char *errstr, size_t size, const char *fmt, ...) MPH_PRINTF(3, 4);
static void set_errstr(char *errstr, size_t size, const char *fmt, ...)
{
    if (!errstr || !size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, size, fmt, ap);
    va_end(ap);
}

/* The worker count and each worker's CPU. workers=0 counts the CPUs of
 * `cpus`, or else the CPUs this process may run on (its affinity mask, as
 * taskset or a cgroup's cpuset leaves it; not every online CPU), times
 * threads_per_core: one rule, mph__conf_worker_count, for the app, the CLI
 * and the tools. */
static mph_err_t resolve_workers(mph_app_t *app, char *errstr, size_t errstr_size)
{
    int64_t tpc = mph_conf_get_int(app->conf, "threads_per_core", 1);
    const char *cpulist = mph_conf_get(app->conf, "cpus");
    uint16_t cpus[MPH__CONF_CPU_MAX + 1];
    size_t ncpus = 0;
    char buf[256];
    if (cpulist && *cpulist &&
        mph__conf_cpulist_parse(cpulist, cpus, MPH__CONF_CPU_MAX + 1, &ncpus, buf,
                                sizeof buf) != MPH_OK) {
        set_errstr(errstr, errstr_size, "cpus: %s", buf);
        return MPH_ERR_INVALID;
    }
    if (tpc < 1)
        tpc = 1;
    int workers = mph__conf_worker_count(app->conf);
    app->nworkers = workers;
    if (ncpus > 0) {
        app->cpus = calloc((size_t)workers, sizeof *app->cpus);
        if (!app->cpus)
            return MPH_ERR_NOMEM;
        for (int i = 0; i < workers; i++)
            app->cpus[i] = cpus[(size_t)(i / tpc) % ncpus];
    }
    return MPH_OK;
}

/* ------------------------------------------------------------------ */
/* exactly_once: the process id in transactional ids                 */

mph_err_t mph__app_process_id(const char *appdir, const char *app_id,
                              const char *group_instance_id, char *out, size_t out_size,
                              char *errstr, size_t errstr_size)
{
    if (group_instance_id && *group_instance_id) {
        if (strlen(group_instance_id) >= out_size) {
            set_errstr(errstr, errstr_size, "group_instance_id: too long for a transactional "
                       "id (at most %zu bytes)", out_size - 1);
            return MPH_ERR_INVALID;
        }
        snprintf(out, out_size, "%s", group_instance_id);
        return MPH_OK;
    }
    /* The marker `mephisto reset` looks for; creates the directory. */
    mph_err_t err = mph__rstore_claim_dir(appdir, app_id, errstr, errstr_size);
    if (err)
        return err;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/process-id", appdir) >= (int)sizeof path) {
        set_errstr(errstr, errstr_size, "datadir: path too long for %s/process-id", appdir);
        return MPH_ERR_INVALID;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            char buf[128];
            ssize_t n = read(fd, buf, sizeof buf - 1);
            close(fd);
            size_t len = n > 0 ? (size_t)n : 0;
            while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
                len--;
            buf[len] = 0;
            bool ok = len >= 8 && len < out_size;
            for (size_t i = 0; ok && i < len; i++)
                ok = (buf[i] >= '0' && buf[i] <= '9') || (buf[i] >= 'a' && buf[i] <= 'f');
            if (!ok) {
                set_errstr(errstr, errstr_size,
                           "processing_guarantee=exactly_once: %s does not hold a process id "
                           "(hex); delete it to make a new one, or set group_instance_id",
                           path);
                return MPH_ERR_INVALID;
            }
            memcpy(out, buf, len + 1);
            return MPH_OK;
        }
        if (errno != ENOENT) {
            set_errstr(errstr, errstr_size, "processing_guarantee=exactly_once: cannot read "
                       "%s: %s", path, strerror(errno));
            return MPH_ERR_IO;
        }
        unsigned char rnd[8];
        if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
            set_errstr(errstr, errstr_size, "processing_guarantee=exactly_once: no random "
                       "bytes for a process id: %s", strerror(errno));
            return MPH_ERR_IO;
        }
        char hex[2 * sizeof rnd + 2];
        for (size_t i = 0; i < sizeof rnd; i++)
            snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && errno == EEXIST)
            continue; /* another process made it first: read theirs */
        if (fd < 0) {
            set_errstr(errstr, errstr_size, "processing_guarantee=exactly_once: cannot create "
                       "%s: %s", path, strerror(errno));
            return MPH_ERR_IO;
        }
        size_t len = strlen(hex);
        hex[len] = '\n';
        bool ok = write(fd, hex, len + 1) == (ssize_t)(len + 1) && fsync(fd) == 0;
        int e = errno;
        close(fd);
        if (!ok) {
            unlink(path);
            set_errstr(errstr, errstr_size, "processing_guarantee=exactly_once: cannot write "
                       "%s: %s", path, strerror(e));
            return MPH_ERR_IO;
        }
        hex[len] = 0;
        if (len >= out_size) {
            set_errstr(errstr, errstr_size, "process id buffer too small");
            return MPH_ERR_INVALID;
        }
        memcpy(out, hex, len + 1);
        return MPH_OK;
    }
    set_errstr(errstr, errstr_size, "processing_guarantee=exactly_once: %s: cannot read or "
               "create it", path);
    return MPH_ERR_IO;
}

void mph__app_transactional_id(const mph_app_t *app, int index, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s-%s-w%d", app->app_id, app->process_id, index);
}

static mph_err_t resolve_process_id(mph_app_t *app, char *errstr, size_t errstr_size)
{
    const char *datadir = mph_conf_get(app->conf, "datadir");
    char appdir[4096];
    if (snprintf(appdir, sizeof appdir, "%s/%s", datadir && *datadir ? datadir : ".",
                 app->app_id) >= (int)sizeof appdir) {
        set_errstr(errstr, errstr_size, "datadir: path too long");
        return MPH_ERR_INVALID;
    }
    return mph__app_process_id(appdir, app->app_id, mph_conf_get(app->conf, "group_instance_id"),
                               app->process_id, sizeof app->process_id, errstr, errstr_size);
}

mph_app_t *mph_app_new(mph_conf_t *conf, char *errstr, size_t errstr_size)
{
    if (!conf) {
        set_errstr(errstr, errstr_size, "conf: NULL");
        return NULL;
    }
    const char *app_id = mph_conf_get(conf, "app_id");
    if (!app_id || !*app_id) {
        set_errstr(errstr, errstr_size,
                   "app_id: not set (every app needs an id: it names the consumer group, "
                   "changelogs and internal topics)");
        return NULL;
    }
    mph_app_t *app = calloc(1, sizeof *app);
    if (!app) {
        set_errstr(errstr, errstr_size, "out of memory");
        return NULL;
    }
    app->conf = conf;
    app->app_id = app_id;
    app->stop_fd = -1;
    if (resolve_workers(app, errstr, errstr_size) != MPH_OK)
        goto fail;
    const char *pg = mph_conf_get(conf, "processing_guarantee");
    app->eos = pg && !strcmp(pg, "exactly_once");
    /* librdkafka's mock cluster emulates neither read_committed nor
     * transactional offset commits: exactly_once on it would look like it
     * works and guarantee nothing. */
    const char *broker = mph_conf_get(conf, "broker");
    if (app->eos && broker && strncmp(broker, "mock://", 7) == 0) {
        set_errstr(errstr, errstr_size,
                   "processing_guarantee=exactly_once: needs a real Kafka cluster, but "
                   "broker=%s is librdkafka's mock cluster, which emulates neither "
                   "read_committed nor transactional offset commits; use broker=kafka://... "
                   "or processing_guarantee=at_least_once",
                   broker);
        goto fail;
    }
    /* Under exactly_once the commit interval is the transaction, and it
     * bounds end-to-end latency for read_committed readers: 100 ms, as in
     * Kafka Streams, unless set. */
    app->commit_interval_ms = mph_conf_get_int(conf, "commit_interval_ms", 1000);
    if (app->eos && !mph_conf_is_set(conf, "commit_interval_ms"))
        app->commit_interval_ms = 100;
    app->commit_every = mph_conf_get_int(conf, "commit_every", 10000);
    /* Under exactly_once a commit is a transaction (three round trips and
     * a marker per partition written): the interval alone decides, as in
     * Kafka Streams, unless commit_every is set. At 200,000 records/s the
     * default 10,000 meant a transaction every 50 ms. */
    if (app->eos && !mph_conf_is_set(conf, "commit_every"))
        app->commit_every = INT64_MAX;
    app->stream_buffer_max = mph_conf_get_int(conf, "stream_buffer_max", 500000);
    app->max_poll_batch = mph_conf_get_int(conf, "max_poll_batch", 1024);
    app->shutdown_timeout_ms = mph_conf_get_int(conf, "shutdown_timeout_ms", 30000);
    const char *policy = mph_conf_get(conf, "on_agent_error");
    app->stop_on_agent_error = policy && strcmp(policy, "stop") == 0;
    mph_log_level_t level;
    if (mph_log_level_parse(mph_conf_get(conf, "log_level"), &level) == MPH_OK)
        mph_log_set_level(level);
    const char *fmt = mph_conf_get(conf, "log_format");
    if (fmt && strcmp(fmt, "json") == 0)
        mph_log_set_format(MPH_LOG_JSON);
    app->stop_fd = mph__eventfd_new();
    if (app->stop_fd < 0) {
        set_errstr(errstr, errstr_size, "cannot create an eventfd");
        goto fail;
    }
    pthread_mutex_init(&app->ctl_lock, NULL);
    return app;
fail:
    free(app->cpus);
    free(app);
    return NULL;
}

mph_err_t mph_app_keep(mph_app_t *app, void *ptr, void (*free_fn)(void *))
{
    if (!app || !free_fn)
        return MPH_ERR_INVALID;
    void *k = realloc(app->kept, (app->nkept + 1) * sizeof *app->kept);
    if (!k)
        return MPH_ERR_NOMEM;
    app->kept = k;
    app->kept[app->nkept].ptr = ptr;
    app->kept[app->nkept].free_fn = free_fn;
    app->nkept++;
    return MPH_OK;
}

const mph_conf_t *mph_app_conf(const mph_app_t *app)
{
    return app->conf;
}

const char *mph_app_get(const mph_app_t *app, const char *name)
{
    return mph_conf_get(app->conf, name);
}

const char *mph_app_id(const mph_app_t *app)
{
    return app->app_id;
}

int mph_app_workers(const mph_app_t *app)
{
    return app->nworkers;
}

bool mph_app_running(const mph_app_t *app)
{
    int st = ck_pr_load_int((int *)&app->state);
    return st == APP_RUNNING || st == APP_STOPPING;
}

int mph__app_topic_index(const mph_app_t *app, const char *name)
{
    for (size_t i = 0; i < app->ntopics; i++)
        if (strcmp(app->topics[i]->name, name) == 0)
            return (int)i;
    return -1;
}

void mph__app_fail(mph_app_t *app, mph_err_t err, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (ck_pr_cas_int(&app->fatal, 0, (int)err)) {
        snprintf(app->fatal_msg, sizeof app->fatal_msg, "%s", msg);
        mph_log(MPH_LOG_ERROR, "%s", msg);
    }
    mph_app_request_stop(app);
}

void mph_app_request_stop(mph_app_t *app)
{
    if (app && app->stop_fd >= 0)
        mph__eventfd_signal(app->stop_fd);
}

/* ------------------------------------------------------------------ */

static int start_timeout_ms(const mph_app_t *app)
{
    int64_t t = app->shutdown_timeout_ms;
    if (t < 1000)
        t = 1000;
    if (t > 30000)
        t = 30000;
    return (int)t;
}

static mph_err_t prepare_topics(mph_app_t *app, char *errstr, size_t errstr_size)
{
    int timeout = start_timeout_ms(app);
    int64_t dparts = mph_conf_get_int(app->conf, "topic_partitions", 8);
    int64_t drepl = mph_conf_get_int(app->conf, "topic_replication_factor", 1);
    /* Is the broker there at all? One clear error rather than one per topic. */
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(app->producer, 0, NULL, &md, timeout);
    if (e) {
        set_errstr(errstr, errstr_size, "broker %s: no answer within %d ms (%s)",
                   mph_conf_get(app->conf, "broker"), timeout, rd_kafka_err2str(e));
        return e == RD_KAFKA_RESP_ERR__TIMED_OUT ? MPH_ERR_TIMEOUT : MPH_ERR_TRANSPORT;
    }
    rd_kafka_metadata_destroy(md);

    for (size_t i = 0; i < app->ntopics; i++) {
        mph_topic_t *t = app->topics[i];
        if (!t->create)
            continue;
        /* The dead-letter topic is only written to: any partition count
         * will do, so one that exists (an operator's, or one made by a
         * mock cluster on first sight) is taken as it is. */
        int have = 0;
        if (t == app->dead_letter &&
            mph__kafka_partition_count(app->producer, t->name, timeout, &have) == MPH_OK)
            continue;
        mph__topic_spec_t spec = {t->name, t->opts.partitions > 0 ? t->opts.partitions : (int)dparts,
                                  t->opts.replication > 0 ? t->opts.replication : (int)drepl,
                                  (const char *const *)t->opts.configs};
        mph_err_t err = mph__kafka_create_topics(app->kenv, app->producer, &spec, 1, timeout, errstr,
                                                 errstr_size);
        if (err)
            return err;
    }
    for (size_t i = 0; i < app->ntopics; i++) {
        mph_topic_t *t = app->topics[i];
        int n = 0;
        mph_err_t err = MPH_ERR_NOENT;
        /* A just-created topic may take a moment to show in metadata (a
         * loaded broker: seconds): wait as long as a start may take, and at
         * least 5 s. */
        int64_t until = mph_clock_mono_ns() + (int64_t)(timeout > 5000 ? timeout : 5000) * 1000000;
        for (;;) {
            err = mph__kafka_partition_count(app->producer, t->name, timeout, &n);
            if (err != MPH_ERR_NOENT || !t->create || mph_clock_mono_ns() >= until)
                break;
            usleep(100000);
        }
        if (err == MPH_ERR_NOENT) {
            set_errstr(errstr, errstr_size,
                       "topic %s does not exist (create it, or declare it with create=true)",
                       t->name);
            return err;
        }
        if (err) {
            set_errstr(errstr, errstr_size, "topic %s: cannot read metadata: %s", t->name,
                       mph_err_str(err));
            return err;
        }
        t->partitions = n;
    }
    return MPH_OK;
}

static int policy_of(const mph_app_t *app, const char *setting)
{
    const char *dflt = mph_conf_get(app->conf, setting);
    return !dflt || !strcmp(dflt, "dead_letter") ? DECODE_DEAD_LETTER
           : !strcmp(dflt, "skip")                ? DECODE_SKIP
                                                  : DECODE_FAIL;
}

/* Each source topic's on_decode_error and each topic's on_send_error;
 * declares the dead-letter topic when a topic that can fail decoding sends
 * its bad records there, or when agents may send to a topic whose
 * unsendable records go there. */
static mph_err_t resolve_decode_policies(mph_app_t *app, char *errstr, size_t errstr_size)
{
    int policy = policy_of(app, "on_decode_error");
    int send_policy = policy_of(app, "on_send_error");
    bool need_dlq = false;
    size_t n = app->ntopics;
    for (size_t i = 0; i < n; i++) {
        mph_topic_t *t = app->topics[i];
        t->decode_policy = t->opts.on_decode_error >= 0 ? t->opts.on_decode_error : policy;
        if (t->nagents && (t->key_codec != MPH_CODEC_RAW || t->value_codec != MPH_CODEC_RAW) &&
            t->decode_policy == DECODE_DEAD_LETTER)
            need_dlq = true;
        t->send_policy = t->opts.on_send_error >= 0 ? t->opts.on_send_error : send_policy;
        if (app->nagents && t != app->dead_letter && t->send_policy == DECODE_DEAD_LETTER)
            need_dlq = true;
    }
    if (need_dlq && !app->dead_letter) {
        char name[512];
        snprintf(name, sizeof name, "%s-dead-letter", app->app_id);
        mph_topic_opts_t *o = mph_topic_opts_new();
        if (!o)
            return MPH_ERR_NOMEM;
        mph_topic_opts_set(o, "create", "true", NULL, 0);
        app->dead_letter = mph_topic_new(app, name, o, errstr, errstr_size);
        mph_topic_opts_destroy(o);
        if (!app->dead_letter)
            return MPH_ERR_INVALID;
        app->dead_letter->internal = true;
    }
    /* A dead-letter record that cannot be written stops the app: sending
     * it to the dead-letter topic again would fail the same way. */
    if (app->dead_letter)
        app->dead_letter->send_policy = DECODE_FAIL;
    return MPH_OK;
}

/* Reads every topic's max.message.bytes and sizes the worker producers to
 * them (librdkafka's message.max.bytes defaults to 1,000,000, below the
 * broker's own default of 1,048,588, so records the topic accepts were
 * refused): message.max.bytes lets through the largest record the most
 * generous topic accepts alone in a batch, batch.size keeps batches within
 * the strictest topic's bound, and a record only a stricter topic refuses
 * comes back in its delivery report and follows that topic's on_send_error.
 * Without topic configs (the mock cluster), the broker default is assumed. */
static void size_producers(mph_app_t *app)
{
    size_t n = app->ntopics;
    const char **names = calloc(n ? n : 1, sizeof *names);
    int64_t *max = calloc(n ? n : 1, sizeof *max);
    char err[512] = "";
    if (names && max) {
        for (size_t i = 0; i < n; i++)
            names[i] = app->topics[i]->name;
        mph_err_t rc = mph__kafka_topic_max_bytes(app->kenv, app->producer, names, n,
                                                  start_timeout_ms(app), max, err, sizeof err);
        if (rc)
            mph_log(rc == MPH_ERR_UNSUPPORTED ? MPH_LOG_INFO : MPH_LOG_WARN,
                    "topic max.message.bytes not read (%s): assuming the broker default %d",
                    err, MPH__KAFKA_DEFAULT_MAX_MESSAGE_BYTES);
    } else {
        for (size_t i = 0; max && i < n; i++)
            max[i] = MPH__KAFKA_DEFAULT_MAX_MESSAGE_BYTES;
    }
    int64_t hi = 0, lo = INT64_MAX;
    for (size_t i = 0; i < n; i++) {
        int64_t m = max ? max[i] : MPH__KAFKA_DEFAULT_MAX_MESSAGE_BYTES;
        app->topics[i]->max_message_bytes = m;
        if (m > hi)
            hi = m;
        if (m < lo)
            lo = m;
    }
    if (n == 0)
        hi = lo = MPH__KAFKA_DEFAULT_MAX_MESSAGE_BYTES;
    /* librdkafka's own bounds: message.max.bytes 1000..1e9. */
    hi -= MPH__KAFKA_BATCH_OVERHEAD;
    app->produce_max_bytes = hi < 1000 ? 1000 : hi > 1000000000 ? 1000000000 : hi;
    lo -= MPH__KAFKA_BATCH_OVERHEAD;
    app->produce_batch_bytes = lo < 1 ? 1 : lo > 1000000 ? 1000000 : lo;
    /* A record larger than the buffer could never be queued. */
    int64_t buf = mph_conf_get_int(app->conf, "producer_buffer_max_bytes", 64 << 20);
    if (buf < 2 * app->produce_max_bytes) {
        mph_log(MPH_LOG_WARN,
                "producer_buffer_max_bytes %lld is less than twice the largest record a "
                "topic accepts (%lld): using %lld",
                (long long)buf, (long long)app->produce_max_bytes,
                (long long)(2 * app->produce_max_bytes));
        buf = 2 * app->produce_max_bytes;
    }
    app->producer_buffer_bytes = buf;
    free(names);
    free(max);
}

static void app_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    struct send_cb { mph_delivery_fn *cb; void *opaque; } *sc = m->_private;
    if (!sc)
        return;
    sc->cb(m->err ? mph__kafka_err(m->err) : MPH_OK, sc->opaque);
    free(sc);
}

/* The web view starts before the engine's threads, so nothing else reads
 * the configuration while a busy default port is retried on a free one. */
static mph_err_t start_web(mph_app_t *app, char *errstr, size_t errstr_size)
{
    char werr[512] = "";
    app->web = mph__web_start(app, werr, sizeof werr);
    if (app->web || !werr[0])
        return MPH_OK; /* running, or web_enabled=false */
    if (mph_conf_is_set(app->conf, "web_port")) {
        set_errstr(errstr, errstr_size, "web_port: %s", werr);
        return MPH_ERR_IO;
    }
    mph_conf_t *mine = app->conf, *tmp = mph_conf_dup(mine);
    if (!tmp || mph_conf_set(tmp, "web_port", "0", NULL, 0) != MPH_OK) {
        mph_conf_destroy(tmp);
        set_errstr(errstr, errstr_size, "%s", werr);
        return MPH_ERR_IO;
    }
    app->conf = tmp;
    app->web = mph__web_start(app, werr, sizeof werr);
    app->conf = mine;
    mph_conf_destroy(tmp);
    if (!app->web) {
        set_errstr(errstr, errstr_size, "%s", werr);
        return MPH_ERR_IO;
    }
    mph_log(MPH_LOG_WARN,
            "the default web port is busy: web view on port %d instead (set web_port to choose)",
            mph__web_port(app->web));
    return MPH_OK;
}

static void teardown(mph_app_t *app)
{
    mph__services_stop(app);
    mph__web_stop(app->web);
    app->web = NULL;
    mph__rpc_stop(app);
    /* No stats reader (mph_app_stats_json from any thread) may still be
     * looking at the workers when they are freed. */
    __atomic_store_n(&app->closing, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&app->stats_readers, __ATOMIC_SEQ_CST) > 0)
        usleep(1000);
    if (app->workers) {
        for (int i = 0; i < app->nworkers; i++)
            mph__worker_destroy(app->workers[i]);
        free(app->workers);
        app->workers = NULL;
    }
    mph__coord_destroy(app->coord);
    app->coord = NULL;
    mph__tables_teardown(app);
    mph__globals_stop(app);
    if (app->consumer) {
        rd_kafka_destroy_flags(app->consumer, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        app->consumer = NULL;
    }
    if (app->producer) {
        rd_kafka_purge(app->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(app->producer, 0);
        rd_kafka_destroy(app->producer);
        app->producer = NULL;
    }
    mph__kafka_env_destroy(app->kenv);
    app->kenv = NULL;
}

mph_err_t mph_app_start(mph_app_t *app, char *errstr, size_t errstr_size)
{
    if (!app)
        return MPH_ERR_INVALID;
    if (ck_pr_load_int(&app->state) != APP_NEW) {
        set_errstr(errstr, errstr_size, "app %s: already started", app->app_id);
        return MPH_ERR_STATE;
    }
    if (resolve_decode_policies(app, errstr, errstr_size) != MPH_OK)
        return MPH_ERR_INVALID;
    if (!ck_pr_cas_int(&app->state, APP_NEW, APP_STARTING)) {
        set_errstr(errstr, errstr_size, "app %s: already started", app->app_id);
        return MPH_ERR_STATE;
    }
    mph_err_t err = MPH_ERR_INVALID;
    __atomic_store_n(&app->closing, 0, __ATOMIC_SEQ_CST);
    char tmp[512];
    if (!errstr || !errstr_size) {
        errstr = tmp;
        errstr_size = sizeof tmp;
    }
    errstr[0] = 0;

    app->kenv = mph__kafka_env_new(app->conf, errstr, errstr_size);
    if (!app->kenv)
        goto fail;
    rd_kafka_conf_t *kc = mph__kafka_conf_new(app->kenv, app->conf, MPH__KAFKA_PRODUCER, errstr,
                                              errstr_size);
    if (!kc)
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(kc, app_dr_cb);
    app->producer = mph__kafka_new(kc, MPH__KAFKA_PRODUCER, errstr, errstr_size);
    if (!app->producer)
        goto fail;
    err = prepare_topics(app, errstr, errstr_size);
    if (err)
        goto fail;
    err = mph__joins_prepare(app, errstr, errstr_size);
    if (err)
        goto fail;
    err = mph__tables_prepare(app, errstr, errstr_size);
    if (err)
        goto fail;
    err = mph__services_prepare(app, errstr, errstr_size);
    if (err)
        goto fail;
    size_producers(app);
    err = mph__globals_start(app, errstr, errstr_size);
    if (!err)
        err = mph__rpc_start(app, errstr, errstr_size);
    if (err)
        goto fail;
    err = MPH_ERR_INVALID;

    app->coord = mph__coord_new(app, errstr, errstr_size);
    if (!app->coord)
        goto fail;
    /* The web view answers 503 until the app runs; it starts before the
     * group consumer so that the consumer's client.id can carry its port. */
    err = start_web(app, errstr, errstr_size);
    if (err)
        goto fail;
    err = MPH_ERR_INVALID;
    kc = mph__kafka_conf_new(app->kenv, app->conf, MPH__KAFKA_CONSUMER, errstr, errstr_size);
    if (!kc)
        goto fail;
    mph__coord_configure(app->coord, kc);
    if (!mph_conf_is_set(app->conf, "kafka.queued.min.messages")) {
        /* Back-pressure is librdkafka's own prefetch bound. Every partition
         * queue is forwarded to its worker's queue, and librdkafka compares
         * queued.min.messages with the length of the queue a partition's
         * messages land in -- the worker's -- so it stops fetching a
         * worker's partitions once stream_buffer_max records wait there,
         * and fetches again as the worker drains them. Measured here
         * (librdkafka 2.0.2): a small bound starves the worker, because a
         * partition over it is looked at again only when the broker thread
         * wakes (up to 1 s later): 6,250 gave 33k records/s, 62,500 147k/s
         * on the same passthrough; in the count benchmark 100,000 gave 160k
         * records/s with the worker idle 70 % of the time, 500,000 335k.
         * Neither a pause nor a resume wakes that thread (their operations
         * go to the main thread), so the bound must hold a second or more
         * of the worker's throughput. Pausing partitions instead drops what was
         * prefetched, so the worker pauses only far above this bound. */
        char num[32];
        snprintf(num, sizeof num, "%lld", (long long)app->stream_buffer_max);
        mph__kafka_conf_set(kc, "queued.min.messages", num, NULL, 0);
    }
    if (app->web) {
        /* Members publish their web address in client.id so that /router and
         * /tables can send a client to the process that owns a partition. */
        char cid[512];
        const char *bind = mph_conf_get(app->conf, "web_bind");
        snprintf(cid, sizeof cid, "%s@%s:%d", app->app_id, bind && *bind ? bind : "127.0.0.1",
                 mph__web_port(app->web));
        mph__kafka_conf_set(kc, "client.id", cid, NULL, 0);
    }
    app->consumer = mph__kafka_new(kc, MPH__KAFKA_CONSUMER, errstr, errstr_size);
    if (!app->consumer)
        goto fail;

    if (app->eos) {
        err = resolve_process_id(app, errstr, errstr_size);
        if (err)
            goto fail;
        err = MPH_ERR_INVALID;
    }
    app->workers = calloc((size_t)app->nworkers, sizeof *app->workers);
    if (!app->workers)
        goto fail;
    for (int i = 0; i < app->nworkers; i++) {
        app->workers[i] = mph__worker_new(app, i, errstr, errstr_size);
        if (!app->workers[i])
            goto fail;
    }
    /* From here on the threads run: failures stop them in order. */
    ck_pr_store_int(&app->state, APP_RUNNING);
    for (int i = 0; i < app->nworkers; i++) {
        err = mph__worker_start(app->workers[i], errstr, errstr_size);
        if (err)
            goto fail_threads;
    }
    /* Services (timers, tasks, hooks) run once the workers do; the
     * coordinator stops them before it leaves the group (services.c). */
    err = mph__services_start(app, errstr, errstr_size);
    if (err)
        goto fail_threads;
    err = mph__coord_start(app->coord, errstr, errstr_size);
    if (err)
        goto fail_threads;
    mph_log(MPH_LOG_INFO, "app %s started: %d workers, broker %s", app->app_id, app->nworkers,
            mph_conf_get(app->conf, "broker"));
    return MPH_OK;

fail_threads:
    mph__services_stop(app);
    for (int i = 0; i < app->nworkers; i++) {
        mph__msg_t *m = mph__msg_new(MSG_STOP, i, 0);
        if (m && mph__worker_post(app->workers[i], m) != MPH_OK)
            mph__msg_free(m);
        mph__worker_join(app->workers[i]);
    }
fail:
    teardown(app);
    ck_pr_store_int(&app->state, APP_NEW);
    if (!errstr[0])
        set_errstr(errstr, errstr_size, "%s", mph_err_str(err));
    mph_log(MPH_LOG_ERROR, "app %s: start failed: %s", app->app_id, errstr);
    return err ? err : MPH_ERR_INVALID;
}

static mph_err_t finish(mph_app_t *app)
{
    pthread_mutex_lock(&app->ctl_lock);
    int st = ck_pr_load_int(&app->state);
    if (st == APP_RUNNING || st == APP_STOPPING) {
        mph__coord_join(app->coord);
        teardown(app);
        ck_pr_store_int(&app->state, APP_STOPPED);
    }
    pthread_mutex_unlock(&app->ctl_lock);
    return (mph_err_t)ck_pr_load_int(&app->fatal);
}

mph_err_t mph_app_stop(mph_app_t *app)
{
    if (!app)
        return MPH_ERR_INVALID;
    mph_app_request_stop(app);
    return finish(app);
}

mph_err_t mph_app_wait(mph_app_t *app)
{
    if (!app)
        return MPH_ERR_INVALID;
    return finish(app);
}

mph_err_t mph_app_run(mph_app_t *app, char *errstr, size_t errstr_size)
{
    mph_err_t err = mph_app_start(app, errstr, errstr_size);
    if (err)
        return err;
    err = mph_app_wait(app);
    if (err && errstr && errstr_size)
        snprintf(errstr, errstr_size, "%s", app->fatal_msg);
    return err;
}




void mph_app_destroy(mph_app_t *app)
{
    if (!app)
        return;
    mph_app_stop(app);
    for (size_t i = 0; i < app->ntopics; i++)
        mph__topic_free(app->topics[i]);
    free(app->topics);
    for (size_t i = 0; i < app->nagents; i++)
        mph__agent_free(app->agents[i]);
    free(app->agents);
    for (size_t i = 0; i < app->ntables; i++)
        mph__table_free(app->tables[i]);
    free(app->tables);
    mph__services_free(app);
    mph__globals_free(app);
    mph__rpc_free(app);
    free(app->cpus);
    for (size_t i = app->nkept; i > 0; i--)
        app->kept[i - 1].free_fn(app->kept[i - 1].ptr);
    free(app->kept);
    if (app->stop_fd >= 0)
        close(app->stop_fd);
    pthread_mutex_destroy(&app->ctl_lock);
    mph_conf_destroy(app->conf);
    free(app);
    /* The app's threads are gone, but glibc keeps what they freed in their
     * arenas (librdkafka's fetch and produce buffers, RocksDB's blocks), so
     * a host that runs app after app saw its RSS grow from one lifetime to
     * the next (bench: 80 -> 111 MB after four passthrough runs; 62 -> 90 MB
     * with this). Hand the free memory back to the system on purpose. */
    malloc_trim(0);
}

/* ------------------------------------------------------------------ */
/* sending from outside callbacks                                     */

mph_err_t mph_send(mph_app_t *app, mph_topic_t *topic, int32_t partition, const void *key,
                   size_t key_len, const void *value, size_t value_len,
                   const mph_header_t *headers, size_t header_count, mph_delivery_fn *cb,
                   void *opaque)
{
    return mph_send_ts(app, topic, partition, key, key_len, value, value_len, headers,
                       header_count, cb, opaque, -1);
}

mph_err_t mph_send_ts(mph_app_t *app, mph_topic_t *topic, int32_t partition, const void *key,
                      size_t key_len, const void *value, size_t value_len,
                      const mph_header_t *headers, size_t header_count, mph_delivery_fn *cb,
                      void *opaque, int64_t timestamp_ms)
{
    if (!app || !topic || topic->app != app)
        return MPH_ERR_INVALID;
    if (ck_pr_load_int(&app->state) != APP_RUNNING)
        return MPH_ERR_STATE;
    struct send_cb { mph_delivery_fn *cb; void *opaque; } *sc = NULL;
    if (cb) {
        sc = malloc(sizeof *sc);
        if (!sc)
            return MPH_ERR_NOMEM;
        sc->cb = cb;
        sc->opaque = opaque;
    }
    rd_kafka_headers_t *hdrs = NULL;
    if (header_count) {
        hdrs = rd_kafka_headers_new(header_count);
        for (size_t i = 0; i < header_count; i++)
            rd_kafka_header_add(hdrs, headers[i].name, -1, headers[i].value,
                                (ssize_t)headers[i].len);
    }
    int64_t deadline = mph_clock_mono_ns() + 1000000000;
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            app->producer, RD_KAFKA_V_TOPIC(topic->name),
            RD_KAFKA_V_PARTITION(partition < 0 ? RD_KAFKA_PARTITION_UA : partition),
            RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)value, value_len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
            RD_KAFKA_V_TIMESTAMP(timestamp_ms > 0 ? timestamp_ms : 0), /* 0: now */
            RD_KAFKA_V_OPAQUE(sc), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return MPH_OK;
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL && mph_clock_mono_ns() < deadline) {
            usleep(1000);
            continue;
        }
        if (hdrs)
            rd_kafka_headers_destroy(hdrs);
        free(sc);
        return mph__kafka_err(e);
    }
}
