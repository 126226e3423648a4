/*
 * The app's internal shape, shared by the runtime modules.
 *
 * Who owns what (threads):
 *   controlling thread  the app object, its topic/agent registry (frozen at
 *                       start), start/stop
 *   coordinator         the group consumer handle's main queue, rebalances,
 *                       partition → worker map, commits, the app producer's
 *                       delivery reports (mph_send callbacks)
 *   worker i            its io_uring, its librdkafka queue, its producer,
 *                       its partitions' ack trackers, its event, counters
 *   any                 app->state, app->fatal (atomics), mailboxes (mpsc)
 */
#ifndef MPH_RUNTIME_APP_H
#define MPH_RUNTIME_APP_H

#include <pthread.h>

#include "io/kafka.h"
#include "mephisto/agent.h"
#include "mephisto/app.h"
#include "mephisto/topic.h"

typedef struct mph__worker mph__worker_t;
typedef struct mph__coord mph__coord_t;

enum mph__app_state { APP_NEW = 0, APP_STARTING, APP_RUNNING, APP_STOPPING, APP_STOPPED };

enum mph__decode_policy { DECODE_DEAD_LETTER = 0, DECODE_SKIP, DECODE_FAIL };

struct mph_topic_opts {
    char *key_codec;
    char *value_codec;
    int partitions;  /* 0 = topic_partitions setting */
    int replication; /* 0 = topic_replication_factor */
    int create;      /* -1 unset, 0, 1 */
    int on_decode_error; /* -1 = app default */
    int on_send_error;   /* enum mph__decode_policy values; -1 = app default */
    char **configs;  /* name, value, ..., NULL */
    size_t nconfigs;
    const mph_record_type_t *record; /* value codec record (borrowed) */
};

struct mph_topic {
    mph_app_t *app;
    char *name;
    int index;
    struct mph_topic_opts opts;
    bool create;
    bool internal; /* created and owned by mephisto itself */
    int partitions; /* resolved at start */
    int key_codec, value_codec; /* mph_codec_t (io/codec.h) */
    /* MPH_CODEC_USER: this app's registration (mph_codec_register) */
    const struct mph__codec_user *ukey, *uvalue;
    int decode_policy;          /* enum mph__decode_policy, resolved at start */
    int send_policy;            /* the same values, for records sent here that can
                                 * never be written (on_send_error) */
    int64_t max_message_bytes;  /* the topic's max.message.bytes, read at start */
    mph_agent_t **agents; /* subscribers, declaration order */
    size_t nagents;
};

struct mph_agent {
    mph_app_t *app;
    char *name;
    int index;
    mph_agent_fn *fn;
    void *opaque;
    mph_topic_t **sinks;
    size_t nsinks;
    void *owned; /* freed with the agent (group_by's state) */
    /* Punctuators and batching (punctuate.c), set before start. */
    struct mph__punct **puncts;
    size_t npuncts;
    size_t batch_n;           /* max events per batch; 0: not a batching agent */
    int64_t batch_within_ms;
    int batch_index;          /* among the app's batching agents */
    struct mph__punct_ctr *batch_ctr; /* [nworkers] batch counters */
};

struct mph_app {
    mph_conf_t *conf;
    const char *app_id;
    mph_topic_t **topics;
    size_t ntopics;
    mph_agent_t **agents;
    size_t nagents;
    struct mph_table **tables;
    size_t ntables;
    struct mph_join *joins; /* join.c: declared joins, newest first (owned through kept) */
    struct mph__rstore_env *rsenv; /* RocksDB env shared by all tables */
    struct mph__shard ***parked;   /* [table][partition]: shards not on a worker (coordinator) */
    int64_t recovery_total;        /* changelog records of the current recovery (ck_pr) */
    int64_t recovery_done;
    uint64_t recoveries;

    /* resolved settings */
    int nworkers;
    int *cpus; /* cpu per worker, or NULL when not pinned */
    int64_t commit_interval_ms;
    int64_t commit_every;
    int64_t stream_buffer_max;
    int64_t max_poll_batch;
    int64_t shutdown_timeout_ms;
    bool stop_on_agent_error;
    /* Worker producers (app.c, set at start from the topics' configs):
     * librdkafka's message.max.bytes and batch.size, and the value bytes a
     * worker's producer may hold (producer_buffer_max_bytes). */
    int64_t produce_max_bytes;
    int64_t produce_batch_bytes;
    int64_t producer_buffer_bytes;
    /* processing_guarantee=exactly_once: each worker's producer is
     * transactional (worker.c, "Exactly-once"); process_id names this
     * process in the transactional ids (mph__app_process_id). */
    bool eos;
    char process_id[128];

    mph__kafka_env_t *kenv;
    rd_kafka_t *consumer; /* the group member; main queue served by coordinator */
    rd_kafka_t *producer; /* the app producer: admin calls and mph_send */
    mph__coord_t *coord;
    mph_topic_t *dead_letter; /* <app_id>-dead-letter, when some topic may need it */
    mph__worker_t **workers;

    struct mph__web *web; /* the HTTP view, or NULL (web.c) */
    struct mph__web_routes *web_routes; /* mph_web_route's, or NULL (web.c; freed via kept) */
    struct mph__services *services; /* timers, crontab, tasks, hooks, leader (services.c) */
    struct { void *ptr; void (*free_fn)(void *); } *kept; /* mph_app_keep */
    size_t nkept;
    int ready;    /* 1 once partitions are assigned and recovered (ck_pr) */
    int stats_readers; /* threads reading worker monitors now (__atomic) */
    int closing;       /* 1 once teardown began (__atomic) */
    int stop_fd;  /* eventfd: stop requested */
    int state;    /* enum mph__app_state, ck_pr atomics */
    int fatal;    /* mph_err_t that stopped the app, ck_pr atomics */
    char fatal_msg[512];
    pthread_mutex_t ctl_lock; /* serialises start/stop/wait (control path only) */
    /* Global tables (global_table.c) and agent RPC (rpc.c). */
    struct mph_global_table **globals;
    size_t nglobals;
    struct mph__rpc *rpc;
};

/* Records the first fatal error and requests a stop. @locality any */
void mph__app_fail(mph_app_t *app, mph_err_t err, const char *fmt, ...) MPH_PRINTF(3, 4);

/* This process's id in transactional ids (exactly_once): group_instance_id
 * when set, else a random hex id kept in `<appdir>/process-id`, created
 * (0600) with appdir on first use and read back by every later start, so a
 * restarted process fences its own zombie and two processes sharing a
 * host never share an id. Writes at most out_size bytes to out.
 * @locality controlling thread */
mph_err_t mph__app_process_id(const char *appdir, const char *app_id,
                              const char *group_instance_id, char *out, size_t out_size,
                              char *errstr, size_t errstr_size);
/* The transactional.id of worker index: `<app_id>-<process_id>-w<index>`. */
void mph__app_transactional_id(const mph_app_t *app, int index, char *out, size_t out_size);

/* Registry entries are freed with the app. */
void mph__topic_free(mph_topic_t *t);
void mph__agent_free(mph_agent_t *a);

/* The topic index for a topic name, or -1. @locality any after start */
int mph__app_topic_index(const mph_app_t *app, const char *name);

#endif
