/*
 * A worker thread: everything about the partitions it owns. See worker.c.
 */
#ifndef MPH_RUNTIME_WORKER_H
#define MPH_RUNTIME_WORKER_H

#include "io/uring.h"
#include "runtime/acks.h"
#include "runtime/app.h"
#include "runtime/mailbox.h"
#include "runtime/monitor.h"
#include "mephisto/log.h"

/* Where an event stands while its callbacks run. */
struct mph_event {
    mph__worker_t *worker;
    rd_kafka_message_t *rkm;
    mph_topic_t *topic;
    mph_agent_t *agent;
    struct mph__slot *slot;
    uint32_t slot_id;
    bool seq_open;
    uint64_t seq;
    rd_kafka_headers_t *hdrs;
    bool hdrs_read;
    int json_state;        /* 0 not parsed, 1 parsed, -1 not JSON */
    mph_err_t json_err;
    mph_record_t *record;  /* decoded value of a record topic */
    /* Punctuators and batches (punctuate.c): punct marks a punctuator's
     * handle (rkm is then a stand-in without a record; punct_ts is what
     * mph_event_timestamp returns); batch/nbatch the events of a batch
     * being delivered. */
    bool punct;
    int64_t punct_ts;
    rd_kafka_message_t **batch;
    size_t nbatch;
};

/* The slot id in a send's msg_opaque (worker.c) names the partition slot
 * whose ack tracker waits for the report, except for two markers: changelog
 * records (table.c) and copies re-sent only to restore per-key order, which
 * nothing waits for. Real slot ids stay below MPH__SLOT_IDS. */
#define MPH__SLOT_CHANGELOG 0xFFFFu
#define MPH__SLOT_COPY      0xFFFEu
#define MPH__SLOT_PUNCT     0xFFFDu /* a punctuator's send (punctuate.c) */
#define MPH__SLOT_IDS       0xFFFDu

/* A record the worker holds back to send again in order (worker.c: repair).
 * key, value and hdrs are owned. */
typedef struct mph__held {
    mph_topic_t *topic;
    int32_t partition;
    void *key, *value;
    size_t key_len, value_len;
    rd_kafka_headers_t *hdrs;
    void *opaque;
    int64_t timestamp; /* the record's timestamp (0: the producer's now) */
} mph__held_t;

typedef struct mph__slot {
    bool used;
    uint8_t gen;
    int topic;
    int32_t partition;
    int64_t reported; /* last commit point sent to the coordinator */
    int64_t snap_commit; /* commit point when the active flush began; -1 none */
    int64_t last_offset;
    /* last_offset when librdkafka last forgot the partition's app position
     * (assignment, seek): until a record comes after that, a pause would
     * drop the records queued for it and its resume fetch after them, so
     * back-pressure (pause_resume) leaves it alone. */
    int64_t pause_floor;
    bool bp_paused; /* paused by back-pressure; the resume takes only these */
    /* exactly_once: the first offset processed in the open transaction,
     * where an abort re-reads from; -1 none. Under at_least_once it stays
     * 0 and is never read. */
    int64_t txn_start;
    mph__acks_t acks;
    /* Kept only while punctuators or idle window closing need them
     * (punctuate.c): when the last record was processed (monotonic ns),
     * the partition's stream time (highest record timestamp; -1 none) and
     * the stream time at which a stream punctuator is due next. */
    int64_t last_ns;
    int64_t stream_ms;
    int64_t stream_due;
} mph__slot_t;

/* exactly_once: a source record whose output the broker refused in an
 * aborted transaction; when it is processed again, its sends to that
 * topic follow the topic's on_send_error at once (worker.c, "poison"). */
typedef struct mph__poison {
    int topic;
    int32_t partition;
    int64_t offset;
    int out_topic;
    char why[200];
} mph__poison_t;

struct mph__worker {
    mph_app_t *app;
    int index;
    pthread_t thread;
    bool started;

    rd_kafka_queue_t *q; /* partition queues are forwarded here */
    int kfd;             /* eventfd: io events of q */
    int pfd;             /* eventfd: io events of the producer's main queue */
    bool pfd_armed;      /* a read of pfd is in the ring (worker.c: lazy reports) */
    size_t outq;         /* rd_kafka_outq_len of the producer at the last drain */
    rd_kafka_t *producer;
    rd_kafka_queue_t *prod_main;
    mph__mailbox_t inbox;
    mph__uring_t *ring;

    mph__slot_t *slots;
    uint32_t nslots;
    int32_t **slot_of; /* [topic][partition] → slot id or -1 */
    rd_kafka_topic_t **rkt_cache; /* [topic] → handle seen in messages */
    rd_kafka_topic_t **out_rkt;   /* [topic] → the producer's handle, made on first send */

    struct mph_event ev;
    rd_kafka_message_t **batch;
    int64_t next_commit_ns;
    uint64_t commit_errors_seen; /* the coordinator's, at the last timed report */
    bool resend_all;             /* a commit failed: the next report sends every point */
    int64_t events_since_commit;
    bool paused;
    bool exit;
    bool failed;
    mph_log_limit_t log_lim;

    struct mph__shard ***shards;   /* [table][partition] owned by this worker */
    struct mph__rstore **rstores;  /* [table] RocksDB instance, NULL for memory */
    int64_t cl_pending;            /* changelog records not yet acknowledged */
    bool cl_failed;                /* a changelog record of this flush failed */
    bool fl_active;                /* a table flush is under way (table.c) */
    bool fl_failed_begin;          /* it could not send all its records */
    bool fl_all;                   /* its report sends every commit point */
    struct mph__rstore_batch **fl_batch; /* [table] its RocksDB batch */
    /* The dirty list (table.c): (table << 32 | partition) of the shards
     * that got a write since they were last found clean; listed[t][p]
     * says whether (t, p) is in it. Sized for every partition of every
     * table, so listing never allocates. */
    uint64_t *dirty;
    size_t ndirty;
    bool **listed;
    uint64_t fl_visits; /* shards the flushes began visited, in total */
    uint64_t fl_begun;  /* flushes begun */
    mph_json_parser_t *json;       /* this worker's parser, reused per event */
    mph_record_t **records;        /* [topic] reusable decoded record */
    mph__monitor_t *mon; /* sensors; this worker is the only writer */
    uint64_t rr;         /* round-robin partition for key-less sends */
    uint64_t purged_handed_back; /* records dropped at a hand-over (purge_handed_back) */
    uint64_t resent_inflight;    /* records re-sent after a purge that were in flight */

    /* Order repair (worker.c): after a delivery failure that librdkafka
     * gave up on but another attempt can fix, records wait here until the
     * producer is empty, then go out again in order. */
    bool repairing;
    mph__held_t *held;
    size_t nheld, held_cap;
    struct mph__broken { mph_topic_t *topic; int32_t partition; } *broken;
    size_t nbroken, broken_cap;

    /* exactly_once (worker.c, "Exactly-once"). */
    char txn_id[320];    /* the producer's transactional.id */
    bool txn_doomed;     /* a record of the open transaction failed: abort it */
    bool abort_pending;  /* rolled back and sought; abort_transaction not done yet */
    bool persist_pending; /* a committed transaction's values are not in RocksDB yet */
    bool abort_again;    /* begin a transaction once the pending abort is done */
    int64_t abort_deadline_ns; /* the app stops if the abort is still pending then */
    int64_t abort_replace_ns;  /* a still-pending abort replaces the producer then */
    bool fenced;         /* a newer process took txn_id: never write again */
    bool replace_pending; /* failed fatally, not fenced: the abort replaces the producer */
    bool replace_open;   /* the replacement exists; its init_transactions not done */
    int replacements;    /* producers replaced since the last commit */
    /* Revocations the coordinator stopped waiting for: set (ck_pr, by the
     * coordinator, before its rebalance callback returns) to the sequence
     * number of the last MSG_REVOKE it gave up on; revoke_seen is the last
     * one this worker handled. While abandoned > seen the group may have
     * handed this worker's partitions to another member, so no
     * transaction commits (worker.c, eos_abandoned). */
    uint64_t revoke_abandoned;
    uint64_t revoke_seen;
    mph__poison_t *poison;
    size_t npoison, poison_cap;

    /* Punctuators and batching agents (punctuate.c); NULL when the app
     * has none, and then nothing of it runs. */
    struct mph__pw *pw;
    bool pw_track;          /* process() notes slot times for pw */
    uint64_t punct_inflight; /* punctuator sends not yet acknowledged */
};

mph__worker_t *mph__worker_new(mph_app_t *app, int index, char *errstr, size_t errstr_size);
mph_err_t mph__worker_start(mph__worker_t *w, char *errstr, size_t errstr_size);
void mph__worker_join(mph__worker_t *w);
void mph__worker_destroy(mph__worker_t *w);
/* Queues a message for the worker (transferred on success). @locality any */
mph_err_t mph__worker_post(mph__worker_t *w, void *msg);

/* Sends for the event being processed. @locality the worker */
/* Sends an RPC reply to topic (not declared on the app), tracked by ev's
 * commit point; see worker.c. MPH_ERR_NOENT when the topic is known not to
 * exist. @locality worker */
/* exactly_once, after a produce call on w's producer (this worker's
 * thread) was refused with e: true when that only dooms the open
 * transaction (txn_doomed set; the record goes with it, and its source is
 * processed again after the abort): librdkafka takes no record until an
 * abortable error is aborted (_STATE), and a producer that failed fatally
 * without being fenced (_FATAL) is replaced at the abort. False under
 * at_least_once, for other errors, and once fenced. */
bool mph__worker_txn_refused(mph__worker_t *w, rd_kafka_resp_err_t e);

mph_err_t mph__worker_send_reply(mph__worker_t *w, struct mph_event *ev, const char *topic,
                                 int32_t partition, const void *value, size_t value_len,
                                 const mph_header_t *headers, size_t header_count);
mph_err_t mph__worker_send(mph__worker_t *w, struct mph_event *ev, mph_topic_t *topic,
                           int32_t partition, const void *key, size_t key_len,
                           const void *value, size_t value_len, const mph_header_t *headers,
                           size_t header_count, rd_kafka_headers_t *raw_headers);
/* As mph__worker_send with the record's timestamp: timestamp_ms < 0 takes
 * the event's own (the wall clock when it has none). @locality the worker */
mph_err_t mph__worker_send_ts(mph__worker_t *w, struct mph_event *ev, mph_topic_t *topic,
                              int32_t partition, const void *key, size_t key_len,
                              const void *value, size_t value_len, const mph_header_t *headers,
                              size_t header_count, rd_kafka_headers_t *raw_headers,
                              int64_t timestamp_ms);

#endif
