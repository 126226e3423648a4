/*
 * DESIGN — the worker loop.
 *
 * A worker owns a set of partitions and everything about them. The
 * coordinator forwards each owned partition's librdkafka queue into the
 * worker's queue `q`; q writes an eventfd (`kfd`) when it becomes
 * non-empty, the worker's producer's main queue (delivery reports) another
 * (`pfd`); the worker's mailbox has its own eventfd. One io_uring waits
 * for these reads and for the commit timer, so one io_uring_wait_cqe
 * covers every wake-up (io_wait=poll, or a kernel refusing io_uring: one
 * ppoll over the same eventfds instead, io/uring.h).
 *
 * Lazy delivery reports: every turn of the loop serves the producer, so a
 * worker that gets records serves their reports on its next wake-up
 * anyway; waking for a report as well cost one more wake-up per record at
 * low rates (each record its own batch). The read of pfd is in the ring
 * only while something waits for reports (dr_prompt: a table flush, a
 * repair, punctuator sends a commit waits for, back-pressure,
 * exactly_once); otherwise a worker with reports due sleeps at most
 * DR_LAZY_NS, so acknowledgements (the commit point, /stats) lag by at
 * most that. A commit serves the producer before it reports its points.
 *
 * librdkafka writes the io-event fd only when a queue turns non-empty and
 * re-arms after the queue is served, so after each wake-up the worker
 * drains q completely (rd_kafka_consume_batch_queue, timeout 0) and serves
 * the producer (rd_kafka_poll, timeout 0) before it waits again; otherwise
 * a wake-up would be lost and the partition would stall.
 *
 * Slots change only between batches. The mailbox is served at the top of
 * the loop, never while a batch is processed, so every record of a batch
 * runs under the slots that existed when the batch was taken from q. A
 * record whose partition has no slot is dropped, and that loses nothing:
 *  - its partition was revoked (MSG_REVOKE served): the record was fetched
 *    for the ownership that ended, and whoever owns the partition next,
 *    this worker included, starts from the commit point, which never
 *    passes it; librdkafka itself discards what is still queued from an
 *    ownership once the partition is unassigned (op version barrier);
 *  - its partition is being assigned: impossible, because the coordinator
 *    forwards and assigns a partition only after the worker answered its
 *    MSG_ASSIGN with MSG_ASSIGNED (coordinator.c), so no record of an
 *    ownership can reach q before its slot exists.
 * Serving the mailbox in the middle of a batch (as an earlier version did
 * for a record without a slot) let a revoke and a re-assign of a partition
 * run the batch's older records under the new slot and report a commit
 * point past records the new ownership never processed.
 *
 * Per event: look up the partition's slot (two array loads), call each
 * subscribed agent in declaration order, then record the offset in the
 * partition's ack tracker (acks.c). Sends made by callbacks carry
 * (slot, generation, sequence) in their msg_opaque; delivery reports,
 * served on this thread, release them. The commit point therefore only
 * passes messages whose outputs the broker has acknowledged.
 *
 * Records never time out in the producer (message.timeout.ms=0): librdkafka
 * retries transient errors itself, in order. What reaches dr_cb failed for
 * good (the topic's on_send_error decides when the broker refused the
 * record itself; anything else stops the app), or failed with an error
 * librdkafka does not retry although another attempt may succeed: that
 * record is never produced again behind later records of its key; the
 * worker holds it, the later records of its partition and every new send
 * until the producer is empty, then sends them again in order (repair).
 * The producer's queue is bounded (producer_buffer_max_bytes): a full one
 * makes the worker serve delivery reports until there is room.
 *
 * Commits (report, flush_progress) make table state durable first, without
 * stopping the loop (table.c). Partitions handed back without durable
 * state take everything the producer still holds with them: the producer
 * is purged and replaced (purge_handed_back), so that nothing of theirs
 * lands after the next owner took over; records of partitions kept are
 * sent again in order (those in flight possibly twice, counted).
 *
 * exactly_once replaces commits, delivery errors and hand-overs with
 * transactions ("exactly_once: transactions" below): none of the repair,
 * re-send or purge machinery runs, an abort discards the transaction's
 * records instead. Under at_least_once the only cost is a few predictable
 * branches (app->eos, slot txn_start, npoison).
 *
 * Punctuators, idle window closing and batching agents (punctuate.c) run
 * from this loop between batches: the io_uring wait is bounded by their
 * next due time. Their sends carry MPH__SLOT_PUNCT and are counted in
 * punct_inflight (no ack entry); under at_least_once a commit of a worker
 * with tables waits until that count is zero before its table flush, with
 * punctuators held. A batching agent's events are kept (process() returns
 * true: the drain must not destroy them) with their ack entries open until
 * the batch is delivered; batches are delivered before every commit.
 *
 * Nothing here takes a lock. What others may read (stats) is written with
 * ck_pr stores.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ck_pr.h>

#include "io/codec.h"
#include "runtime/coordinator.h"
#include "runtime/msg.h"
#include "runtime/punctuate.h"
#include "runtime/table.h"
#include "runtime/worker.h"

#define TAG_KAFKA 1
#define TAG_INBOX 2
#define TAG_PROD 3
#define DR_LAZY_NS 5000000
#define SLOT_BITS 16
_Static_assert(MPH__SLOT_IDS <= MPH__SLOT_COPY && MPH__SLOT_IDS <= MPH__SLOT_CHANGELOG &&
                   MPH__SLOT_CHANGELOG < (1u << SLOT_BITS),
               "slot ids must stay below the markers in a send's opaque");
#define GEN_BITS 8
#define SEQ_BITS 40
#define SEQ_MASK ((UINT64_C(1) << SEQ_BITS) - 1)

static inline void *encode_opaque(uint32_t slot, uint8_t gen, uint64_t seq)
{
    return (void *)(uintptr_t)(((uint64_t)slot << (GEN_BITS + SEQ_BITS)) |
                               ((uint64_t)gen << SEQ_BITS) | (seq & SEQ_MASK));
}

static void worker_inbox(mph__worker_t *w);
static bool eos_fatal(mph__worker_t *w);


/* ------------------------------------------------------------------ */
/* delivery reports (run on this worker inside rd_kafka_poll)          */

/* Whether a failed delivery is worth sending again. Errors that another
 * attempt cannot fix (the record, the topic or the permissions are wrong,
 * or the producer is fenced or fatally failed) are not; everything else
 * (broker and network trouble, leadership moves, NETWORK_EXCEPTION, ...)
 * is. librdkafka retries most of those itself, in order and for ever
 * (message.timeout.ms=0, producer_open): only those it does not know as
 * retriable (e.g. NETWORK_EXCEPTION in 2.0.2) reach a report. */
static bool retriable(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR__FATAL:
    case RD_KAFKA_RESP_ERR__FENCED:
    case RD_KAFKA_RESP_ERR_PRODUCER_FENCED:
    case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH:
    case RD_KAFKA_RESP_ERR__DESTROY:
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
        return false;
    default:
        return true;
    }
}

/* exactly_once: whether err says a newer producer with this
 * transactional.id exists (the worker stops writing). */
static bool fencing(rd_kafka_resp_err_t code)
{
    return code == RD_KAFKA_RESP_ERR__FENCED || code == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
           code == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
}

/* Whether the broker refused the record itself: it can never be written
 * to that topic, so the topic's on_send_error decides. */
static bool unsendable(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
        return true;
    default:
        return false;
    }
}

/* The app topic a producer handle writes to (out_rkt, else by name). */
static mph_topic_t *out_topic_of(mph__worker_t *w, rd_kafka_topic_t *rkt)
{
    for (size_t i = 0; i < w->app->ntopics; i++)
        if (w->out_rkt[i] == rkt)
            return w->app->topics[i];
    int idx = mph__app_topic_index(w->app, rd_kafka_topic_name(rkt));
    return idx >= 0 ? w->app->topics[idx] : NULL;
}

static mph__slot_t *slot_of_opaque(mph__worker_t *w, uint32_t slot_id, uint8_t gen)
{
    if (slot_id >= w->nslots)
        return NULL;
    mph__slot_t *s = &w->slots[slot_id];
    return s->used && s->gen == gen ? s : NULL;
}

/* ---- order repair ------------------------------------------------------
 *
 * A record librdkafka gave up on with an error another attempt can fix
 * cannot simply be produced again: librdkafka sends the later records of
 * its partition on (idempotent producer: new epoch), so the copy would land
 * after them and, on a compacted topic, an older value would win. Instead
 * the worker stops producing: the failed record, and every record of that
 * partition whose report comes after it (those may have landed before the
 * copy), are held with every new send, until the producer holds nothing
 * more; then all held records go out again, in the order they were first
 * produced. Each key's last copy is thus its newest value. Copies of
 * records already acknowledged (MPH__SLOT_COPY) are duplicates that
 * nothing waits for; the failed records keep their pending acknowledgement
 * and are acknowledged by their copy's report. Rare (librdkafka retries
 * almost every transient error itself), so simple rather than fast. */

static bool hold(mph__worker_t *w, mph_topic_t *t, int32_t partition, const void *key,
                 size_t key_len, const void *value, size_t value_len, rd_kafka_headers_t *hdrs,
                 void *opaque, int64_t timestamp)
{
    if (w->nheld == w->held_cap) {
        size_t n = w->held_cap ? w->held_cap * 2 : 256;
        mph__held_t *h = realloc(w->held, n * sizeof *h);
        if (!h)
            return false;
        w->held = h;
        w->held_cap = n;
    }
    mph__held_t *h = &w->held[w->nheld];
    h->key = key_len ? malloc(key_len) : NULL;
    h->value = value_len ? malloc(value_len) : NULL;
    if ((key_len && !h->key) || (value_len && !h->value)) {
        free(h->key);
        free(h->value);
        return false;
    }
    if (key_len)
        memcpy(h->key, key, key_len);
    if (value_len)
        memcpy(h->value, value, value_len);
    h->key_len = key ? key_len : (size_t)-1; /* -1: a null key */
    h->value_len = value ? value_len : (size_t)-1;
    h->topic = t;
    h->partition = partition;
    h->hdrs = hdrs;
    h->opaque = opaque;
    h->timestamp = timestamp;
    w->nheld++;
    return true;
}

static void held_free(mph__held_t *h)
{
    free(h->key);
    free(h->value);
    if (h->hdrs)
        rd_kafka_headers_destroy(h->hdrs);
}

static bool is_broken(const mph__worker_t *w, const mph_topic_t *t, int32_t partition)
{
    for (size_t i = 0; i < w->nbroken; i++)
        if (w->broken[i].topic == t && w->broken[i].partition == partition)
            return true;
    return false;
}

static bool mark_broken(mph__worker_t *w, mph_topic_t *t, int32_t partition)
{
    if (is_broken(w, t, partition))
        return true;
    if (w->nbroken == w->broken_cap) {
        size_t n = w->broken_cap ? w->broken_cap * 2 : 8;
        struct mph__broken *b = realloc(w->broken, n * sizeof *b);
        if (!b)
            return false;
        w->broken = b;
        w->broken_cap = n;
    }
    w->broken[w->nbroken].topic = t;
    w->broken[w->nbroken].partition = partition;
    w->nbroken++;
    return true;
}

/* Holds a copy of report m's record (headers copied) with opaque. */
static bool hold_report(mph__worker_t *w, mph_topic_t *t, const rd_kafka_message_t *m,
                        void *opaque)
{
    rd_kafka_headers_t *h = NULL, *hc = NULL;
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR)
        hc = rd_kafka_headers_copy(h);
    int64_t ts = rd_kafka_message_timestamp(m, NULL);
    if (hold(w, t, m->partition, m->key, m->key_len, m->payload, m->len, hc, opaque,
             ts > 0 ? ts : 0))
        return true;
    if (hc)
        rd_kafka_headers_destroy(hc);
    return false;
}

static mph_err_t produce_rkt(mph__worker_t *w, mph_topic_t *t, rd_kafka_topic_t **rktp);

/* Frees a held record that will not be sent: its entry stays pending (the
 * commit point never passes it), but a stop need not wait for it. */
static void drop_held(mph__worker_t *w, mph__held_t *h)
{
    uint64_t v = (uint64_t)(uintptr_t)h->opaque;
    mph__slot_t *s = slot_of_opaque(w, (uint32_t)(v >> (GEN_BITS + SEQ_BITS)),
                                    (uint8_t)(v >> SEQ_BITS));
    if (s && s->acks.inflight > 0)
        s->acks.inflight--;
    else if ((uint32_t)(v >> (GEN_BITS + SEQ_BITS)) == MPH__SLOT_PUNCT && w->punct_inflight > 0)
        w->punct_inflight--;
    held_free(h);
}

/* Sends the held records again once the producer holds nothing more.
 * Those of partitions handed back meanwhile are dropped (their sources are
 * processed again by the next owner). */
static void repair_progress(mph__worker_t *w)
{
    if (!w->repairing || rd_kafka_outq_len(w->producer) > 0)
        return;
    mph__held_t *list = w->held;
    size_t n = w->nheld, i = 0;
    w->held = NULL;
    w->nheld = w->held_cap = 0;
    w->nbroken = 0;
    w->repairing = false;
    for (; i < n; i++) {
        mph__held_t *h = &list[i];
        uint64_t v = (uint64_t)(uintptr_t)h->opaque;
        uint32_t slot_id = (uint32_t)(v >> (GEN_BITS + SEQ_BITS));
        if (slot_id != MPH__SLOT_COPY && slot_id != MPH__SLOT_PUNCT &&
            !slot_of_opaque(w, slot_id, (uint8_t)(v >> SEQ_BITS))) {
            w->purged_handed_back++;
            held_free(h);
            continue;
        }
        if (w->repairing)
            break; /* a copy failed again: the rest waits behind it, in order */
        rd_kafka_topic_t *rkt = NULL;
        mph_err_t err = produce_rkt(w, h->topic, &rkt);
        rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
        bool nokey = h->key_len == (size_t)-1, noval = h->value_len == (size_t)-1;
        const void *key = nokey ? NULL : h->key;
        void *value = noval ? NULL : h->value;
        size_t key_len = nokey ? 0 : h->key_len, value_len = noval ? 0 : h->value_len;
        while (!err) {
            e = rd_kafka_producev(
                w->producer, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(h->partition),
                RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE(value, value_len),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h->hdrs),
                RD_KAFKA_V_TIMESTAMP(h->timestamp), RD_KAFKA_V_OPAQUE(h->opaque),
                RD_KAFKA_V_END);
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL ||
                ck_pr_load_int(&w->app->state) != APP_RUNNING)
                break;
            rd_kafka_poll(w->producer, 10);
            if (w->repairing)
                break;
        }
        if (!err && e == RD_KAFKA_RESP_ERR__QUEUE_FULL && w->repairing)
            break; /* held again below, behind the record that failed */
        if (!err && e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            h->hdrs = NULL; /* the producer owns them now */
            held_free(h);
            continue;
        }
        drop_held(w, h);
        if (!err && e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            i++;
            break; /* the app stops: the rest is dropped, never committed */
        }
        mph__app_fail(w->app, err ? err : mph__kafka_err(e),
                      "send to %s [%d] could not be repeated in order: %s; stopping without "
                      "committing past its source record",
                      h->topic->name, (int)h->partition,
                      err ? mph_err_str(err) : rd_kafka_err2str(e));
        w->failed = true;
        i++;
        break;
    }
    /* What is left keeps its order behind what was held meanwhile. */
    for (; i < n; i++) {
        if (!w->repairing) {
            drop_held(w, &list[i]);
            continue;
        }
        if (w->nheld == w->held_cap) {
            size_t c = w->held_cap ? w->held_cap * 2 : 256;
            mph__held_t *nh = realloc(w->held, c * sizeof *nh);
            if (!nh) {
                drop_held(w, &list[i]);
                continue;
            }
            w->held = nh;
            w->held_cap = c;
        }
        w->held[w->nheld++] = list[i];
    }
    free(list);
}

/* Serves the producer for up to timeout_ms and moves a repair on. */
static void serve_producer(mph__worker_t *w, int timeout_ms)
{
    rd_kafka_poll(w->producer, timeout_ms);
    repair_progress(w);
}

/* ---- records that can never be written ---------------------------------- */

static void send_headers_of(char *part, size_t part_size, char *off, size_t off_size,
                            int32_t partition, int64_t offset)
{
    snprintf(part, part_size, "%d", (int)partition);
    snprintf(off, off_size, "%lld", (long long)offset);
}

/* A delivery report says the broker refused the record of slot s, entry
 * seq, for good (too large for the topic, invalid): the topic's
 * on_send_error decides. The source record is no longer held here, so a
 * dead-letter record carries the refused output record itself, with the
 * source's coordinates in its headers; the entry stays pending until the
 * dead-letter record is acknowledged. */
static void refused_later(mph__worker_t *w, mph_topic_t *t, mph__slot_t *s, void *opaque,
                          uint64_t seq, const rd_kafka_message_t *m)
{
    mph_app_t *app = w->app;
    const char *src = app->topics[s->topic]->name;
    int64_t offset = s->acks.ring[seq & s->acks.mask].offset;
    char why[256];
    snprintf(why, sizeof why, "send to %s [%d] refused by the broker: %s (%zu bytes)", t->name,
             (int)m->partition, rd_kafka_err2str(m->err), m->len + m->key_len);
    if (t->send_policy == DECODE_SKIP) {
        mph__mon_add(&w->mon->send_skipped, 1);
        mph_log_limited(&w->log_lim, 5000, MPH_LOG_WARN,
                        "skipped an output of %s [%d] offset %lld: %s (on_send_error=skip)", src,
                        (int)s->partition, (long long)offset, why);
        mph__acks_ack(&s->acks, seq);
        return;
    }
    if (t->send_policy == DECODE_DEAD_LETTER && app->dead_letter) {
        char part[16], off[32];
        send_headers_of(part, sizeof part, off, sizeof off, s->partition, offset);
        rd_kafka_headers_t *h = NULL, *hc;
        if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR)
            hc = rd_kafka_headers_copy(h);
        else
            hc = rd_kafka_headers_new(5);
        rd_kafka_header_add(hc, "mph.error", -1, why, -1);
        rd_kafka_header_add(hc, "mph.topic", -1, src, -1);
        rd_kafka_header_add(hc, "mph.partition", -1, part, -1);
        rd_kafka_header_add(hc, "mph.offset", -1, off, -1);
        rd_kafka_header_add(hc, "mph.output_topic", -1, t->name, -1);
        /* Too large for the dead-letter topic as well: its start only. */
        size_t room = (size_t)app->dead_letter->max_message_bytes > 70000 ? 65536 : 4096;
        bool cut = m->len + m->key_len > room;
        if (cut) {
            char size[32];
            snprintf(size, sizeof size, "%zu", m->len);
            rd_kafka_header_add(hc, "mph.truncated", -1, size, -1);
        }
        rd_kafka_topic_t *rkt = NULL;
        mph_err_t err = produce_rkt(w, app->dead_letter, &rkt);
        rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR__INVALID_ARG;
        int32_t dlp = s->partition % (app->dead_letter->partitions > 0
                                          ? app->dead_letter->partitions : 1);
        if (!err)
            e = rd_kafka_producev(
                w->producer, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(dlp),
                RD_KAFKA_V_KEY(m->key, cut && m->key_len > 4096 ? 4096 : m->key_len),
                RD_KAFKA_V_VALUE(m->payload, cut && m->len > room ? room : m->len),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hc),
                RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
        if (!err && e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            mph__acks_add_send(&s->acks, seq);
            mph__acks_ack(&s->acks, seq); /* the refused one */
            mph__mon_add(&w->mon->send_dead_lettered, 1);
            mph__monitor_send(w->mon, app->dead_letter->index);
            mph_log_limited(&w->log_lim, 5000, MPH_LOG_WARN,
                            "dead-lettered an output of %s [%d] offset %lld: %s", src,
                            (int)s->partition, (long long)offset, why);
            return;
        }
        rd_kafka_headers_destroy(hc);
        snprintf(why + strlen(why), sizeof why - strlen(why), "; dead-lettering failed: %s",
                 err ? mph_err_str(err) : rd_kafka_err2str(e));
    }
    mph__monitor_send_error(w->mon, t->name, m->partition, mph__kafka_err(m->err));
    s->acks.inflight--; /* never acknowledged: a stop need not wait for it */
    mph__app_fail(app, mph__kafka_err(m->err),
                  "%s (from %s [%d] offset %lld); stopping without committing past the source "
                  "record",
                  why, src, (int)s->partition, (long long)offset);
}

/* ---- exactly_once: delivery reports ------------------------------------
 *
 * Under exactly_once a failed record never goes out again by itself: the
 * transaction it belongs to is doomed (librdkafka refuses to commit it
 * anyway), the worker aborts it at the next commit point and processes
 * its sources again. No order repair, no re-send, no purge: an abort
 * discards every record of the transaction. A record the broker refused
 * for good (unsendable) would fail again after every abort, so its source
 * is remembered (poison): processed again, its sends to that topic follow
 * on_send_error at once. */

static void poison_add(mph__worker_t *w, const mph__slot_t *s, int64_t offset, mph_topic_t *t,
                       const rd_kafka_message_t *m)
{
    for (size_t i = 0; i < w->npoison; i++)
        if (w->poison[i].topic == s->topic && w->poison[i].partition == s->partition &&
            w->poison[i].offset == offset && w->poison[i].out_topic == t->index)
            return;
    if (w->npoison == w->poison_cap) {
        size_t n = w->poison_cap ? w->poison_cap * 2 : 8;
        mph__poison_t *p = realloc(w->poison, n * sizeof *p);
        if (!p)
            return; /* the abort repeats; the app is out of memory anyway */
        w->poison = p;
        w->poison_cap = n;
    }
    mph__poison_t *p = &w->poison[w->npoison++];
    p->topic = s->topic;
    p->partition = s->partition;
    p->offset = offset;
    p->out_topic = t->index;
    snprintf(p->why, sizeof p->why, "send to %s [%d] refused by the broker: %s (%zu bytes)",
             t->name, (int)m->partition, rd_kafka_err2str(m->err), m->len + m->key_len);
}

/* Whether a send of event ev to topic is to a poisoned output; why gets
 * the broker's reason. */
static bool poisoned(mph__worker_t *w, const struct mph_event *ev, const mph_topic_t *topic,
                     char *why, size_t why_size)
{
    for (size_t i = 0; i < w->npoison; i++) {
        const mph__poison_t *p = &w->poison[i];
        if (p->offset == ev->rkm->offset && p->partition == ev->rkm->partition &&
            p->topic == ev->topic->index && p->out_topic == topic->index) {
            snprintf(why, why_size, "%s", p->why);
            return true;
        }
    }
    return false;
}

static void eos_dr(mph__worker_t *w, const rd_kafka_message_t *m, uint32_t slot_id, uint8_t gen,
                   uint64_t seq)
{
    uint64_t v = (uint64_t)(uintptr_t)m->_private;
    bool purged = m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
                  m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT;
    if (slot_id == MPH__SLOT_PUNCT && w->punct_inflight > 0)
        w->punct_inflight--; /* every report is final here (no re-send) */
    if (slot_id == MPH__SLOT_CHANGELOG) {
        if (!m->err) {
            mph__monitor_ack(w->mon, (uint64_t)rd_kafka_message_latency(m) * 1000);
            mph__tables_changelog_acked(w, v & ((UINT64_C(1) << (GEN_BITS + SEQ_BITS)) - 1),
                                        m->offset);
            return;
        }
        mph__tables_changelog_failed(w, NULL);
        if (!purged) {
            w->txn_doomed = true;
            mph__monitor_send_error(w->mon, rd_kafka_topic_name(m->rkt), m->partition,
                                    mph__kafka_err(m->err));
            mph_log_limited(&w->log_lim, 5000, MPH_LOG_WARN,
                            "changelog write to %s [%d] failed: %s; the transaction is aborted "
                            "and its records processed again",
                            rd_kafka_topic_name(m->rkt), (int)m->partition,
                            rd_kafka_err2str(m->err));
        }
        return;
    }
    mph__slot_t *s = slot_id == MPH__SLOT_COPY ? NULL : slot_of_opaque(w, slot_id, gen);
    if (!m->err) {
        mph__monitor_ack(w->mon, (uint64_t)rd_kafka_message_latency(m) * 1000);
        if (s)
            mph__acks_ack(&s->acks, seq);
        return;
    }
    if (s && s->acks.inflight > 0)
        s->acks.inflight--; /* never acknowledged: the abort resets the tracker */
    if (purged)
        return; /* dropped with an aborted transaction */
    w->txn_doomed = true;
    mph__monitor_send_error(w->mon, rd_kafka_topic_name(m->rkt), m->partition,
                            mph__kafka_err(m->err));
    mph_topic_t *t = out_topic_of(w, m->rkt);
    if (s && t && unsendable(m->err)) {
        int64_t offset = s->acks.ring ? s->acks.ring[seq & s->acks.mask].offset : -1;
        poison_add(w, s, offset, t, m);
        mph_log_limited(&w->log_lim, 5000, MPH_LOG_WARN,
                        "send to %s [%d] from %s [%d] offset %lld refused by the broker: %s; "
                        "the transaction is aborted, and when the source is processed again "
                        "this output follows on_send_error",
                        t->name, (int)m->partition, w->app->topics[s->topic]->name,
                        (int)s->partition, (long long)offset, rd_kafka_err2str(m->err));
        return;
    }
    if (eos_fatal(w) && !w->fenced)
        return; /* the abort replaces the producer (eos_replace_step) */
    if (!retriable(m->err) && !fencing(m->err) && m->err != RD_KAFKA_RESP_ERR__FATAL) {
        /* No attempt can succeed (permissions, unknown topic ...): processing
         * the source again would fail the same way for ever. */
        w->failed = true;
        mph__app_fail(w->app, mph__kafka_err(m->err),
                      "send to %s [%d] failed permanently: %s; stopping without committing "
                      "past the source record",
                      rd_kafka_topic_name(m->rkt), (int)m->partition, rd_kafka_err2str(m->err));
        return;
    }
    mph_log_limited(&w->log_lim, 5000, MPH_LOG_WARN,
                    "send to %s [%d] failed: %s; the transaction is aborted and its records "
                    "processed again",
                    rd_kafka_topic_name(m->rkt), (int)m->partition, rd_kafka_err2str(m->err));
}

/* ---- delivery reports ---------------------------------------------------- */

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk; /* re-sends go to w->producer (purge_handed_back) */
    mph__worker_t *w = opaque;
    uint64_t v = (uint64_t)(uintptr_t)m->_private;
    uint32_t slot_id = (uint32_t)(v >> (GEN_BITS + SEQ_BITS));
    uint8_t gen = (uint8_t)(v >> SEQ_BITS);
    uint64_t seq = v & SEQ_MASK;
    if (MPH__MON_UNLIKELY(w->app->eos)) {
        eos_dr(w, m, slot_id, gen, seq);
        return;
    }

    bool purged = m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
                  m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT;
    if (slot_id == MPH__SLOT_CHANGELOG) {
        if (!m->err) {
            mph__monitor_ack(w->mon, (uint64_t)rd_kafka_message_latency(m) * 1000);
            mph__tables_changelog_acked(w, v & ((UINT64_C(1) << (GEN_BITS + SEQ_BITS)) - 1),
                                        m->offset);
            return;
        }
        /* A changelog record is never sent again as it was: a later value
         * of its key may be on its way already, and the older one would
         * overwrite it. The flush fails instead and produces the keys'
         * current values again at the next commit. (Purged ones were
         * dropped on purpose: purge_handed_back.) An error no retry can fix
         * stops the app, as for output records: writing the values again
         * would fail the same way, and no commit would ever pass again. */
        bool permanent = !purged && !retriable(m->err);
        /* (why NULL: no "written again" warning; purged on purpose, or
         * the app stops below.) */
        mph__tables_changelog_failed(w, purged || permanent ? NULL : rd_kafka_err2str(m->err));
        if (permanent) {
            mph__monitor_send_error(w->mon, rd_kafka_topic_name(m->rkt), m->partition,
                                    mph__kafka_err(m->err));
            mph__app_fail(w->app, mph__kafka_err(m->err),
                          "changelog write to %s [%d] failed permanently: %s; stopping "
                          "without committing past the table's unwritten changes",
                          rd_kafka_topic_name(m->rkt), (int)m->partition,
                          rd_kafka_err2str(m->err));
        }
        return;
    }
    bool copy = slot_id == MPH__SLOT_COPY;
    bool punct = slot_id == MPH__SLOT_PUNCT; /* a punctuator's send (punctuate.c) */
    mph__slot_t *s = copy ? NULL : slot_of_opaque(w, slot_id, gen);
    if (m->err && purged && !s && !copy) {
        w->purged_handed_back++; /* its source is processed again by the next owner */
        if (punct && w->punct_inflight > 0)
            w->punct_inflight--;
        return;
    }
    mph_topic_t *t = out_topic_of(w, m->rkt);
    if (m->err && purged) {
        /* A record of a partition still owned, dropped with the producer
         * it was in (purge_handed_back): re-sent through the new one. The
         * old one's reports come in the order of its records (in flight
         * first, then queued), so the copies keep their order; those that
         * were in flight may have landed already (duplicates, counted). */
        if (!w->exit && ck_pr_load_int(&w->app->state) == APP_RUNNING) {
            rd_kafka_headers_t *h = NULL, *hc = NULL;
            if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR)
                hc = rd_kafka_headers_copy(h);
            rd_kafka_resp_err_t e = rd_kafka_producev(
                w->producer, RD_KAFKA_V_TOPIC(rd_kafka_topic_name(m->rkt)),
                RD_KAFKA_V_PARTITION(m->partition),
                RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_VALUE(m->payload, m->len),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hc),
                RD_KAFKA_V_TIMESTAMP(rd_kafka_message_timestamp(m, NULL) > 0
                                         ? rd_kafka_message_timestamp(m, NULL)
                                         : 0),
                RD_KAFKA_V_OPAQUE(m->_private), RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
                if (m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
                    w->resent_inflight++;
                mph__monitor_send_retry(w->mon, rd_kafka_topic_name(m->rkt), m->partition,
                                        mph__kafka_err(m->err));
                return;
            }
            if (hc)
                rd_kafka_headers_destroy(hc);
        }
    } else if (m->err && !copy && s && !t && !purged) {
        /* A reply to an asker's reply topic (mph__worker_send_reply): the
         * asker may be gone with its topic; its ask ends in a timeout. */
        mph__monitor_send_error(w->mon, rd_kafka_topic_name(m->rkt), m->partition,
                                mph__kafka_err(m->err));
        mph_log_limited(&w->log_lim, 5000, MPH_LOG_WARN, "reply to %s dropped: %s",
                        rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
        mph__acks_ack(&s->acks, seq);
        return;
    } else if (m->err && !copy && s && t && unsendable(m->err)) {
        refused_later(w, t, s, m->_private, seq, m);
        return;
    } else if (m->err && t && retriable(m->err) && !w->exit &&
               ck_pr_load_int(&w->app->state) == APP_RUNNING) {
        /* Sent again in order once the producer is empty (repair). */
        if (mark_broken(w, t, m->partition) && hold_report(w, t, m, m->_private)) {
            w->repairing = true;
            mph__monitor_send_retry(w->mon, t->name, m->partition, mph__kafka_err(m->err));
            mph_log_limited(&w->log_lim, 5000, MPH_LOG_WARN,
                            "send to %s [%d] failed (%s); sending it and the partition's later "
                            "records again, in order",
                            t->name, (int)m->partition, rd_kafka_err2str(m->err));
            return;
        }
    }
    if (m->err) {
        mph__monitor_send_error(w->mon, rd_kafka_topic_name(m->rkt), m->partition,
                                mph__kafka_err(m->err));
        if (s)
            s->acks.inflight--; /* never acknowledged: a stop need not wait for it */
        else if (punct && w->punct_inflight > 0)
            w->punct_inflight--;
        mph__app_fail(w->app, mph__kafka_err(m->err),
                      "send to %s [%d] failed permanently: %s; stopping without committing "
                      "past the source record",
                      rd_kafka_topic_name(m->rkt), (int)m->partition, rd_kafka_err2str(m->err));
        return;
    }
    mph__monitor_ack(w->mon, (uint64_t)rd_kafka_message_latency(m) * 1000);
    if (w->repairing && t && is_broken(w, t, m->partition) &&
        !hold_report(w, t, m, encode_opaque(MPH__SLOT_COPY, 0, 0))) {
        w->failed = true;
        mph__app_fail(w->app, MPH_ERR_NOMEM, "send to %s [%d]: out of memory while restoring "
                      "its order", t->name, (int)m->partition);
    }
    if (s)
        mph__acks_ack(&s->acks, seq); /* else: a copy, or a partition handed back */
    else if (punct && w->punct_inflight > 0)
        w->punct_inflight--;
}

/* ------------------------------------------------------------------ */
/* slots                                                              */

static mph_err_t slot_add(mph__worker_t *w, int topic, int32_t partition)
{
    mph_topic_t *t = w->app->topics[topic];
    if (partition < 0 || partition >= t->partitions)
        return MPH_ERR_RANGE;
    if (w->slot_of[topic][partition] >= 0)
        return MPH_OK;
    uint32_t id = 0;
    while (id < w->nslots && w->slots[id].used)
        id++;
    if (id == w->nslots) {
        /* Ids from MPH__SLOT_IDS up are markers in a send's opaque. */
        if (w->nslots >= MPH__SLOT_IDS)
            return MPH_ERR_FULL;
        uint32_t n = w->nslots ? w->nslots * 2 : 16;
        if (n > MPH__SLOT_IDS)
            n = MPH__SLOT_IDS;
        mph__slot_t *s = realloc(w->slots, n * sizeof *s);
        if (!s)
            return MPH_ERR_NOMEM;
        memset(s + w->nslots, 0, (n - w->nslots) * sizeof *s);
        w->slots = s;
        w->nslots = n;
    }
    mph__slot_t *s = &w->slots[id];
    uint8_t gen = (uint8_t)(s->gen + 1);
    memset(s, 0, sizeof *s);
    s->gen = gen;
    s->used = true;
    s->topic = topic;
    s->partition = partition;
    s->reported = -1;
    s->snap_commit = -1; /* not covered by a flush already under way */
    s->last_offset = -1;
    s->pause_floor = -1;
    s->txn_start = w->app->eos ? -1 : 0;
    mph__acks_init(&s->acks);
    w->slot_of[topic][partition] = (int32_t)id;
    mph__pw_slot_added(w, id);
    mph__mon_add(&w->mon->partitions, 1);
    mph__monitor_partition(w->mon, topic, partition, true);
    return MPH_OK;
}

static void slot_remove(mph__worker_t *w, uint32_t id)
{
    mph__slot_t *s = &w->slots[id];
    mph__pw_slot_removed(w, id);
    w->slot_of[s->topic][s->partition] = -1;
    mph__acks_fini(&s->acks);
    s->used = false;
    mph__monitor_partition(w->mon, s->topic, s->partition, false);
    ck_pr_store_64(&w->mon->partitions, ck_pr_load_64(&w->mon->partitions) - 1);
}

static int topic_of(mph__worker_t *w, rd_kafka_topic_t *rkt)
{
    mph_app_t *app = w->app;
    for (size_t i = 0; i < app->ntopics; i++)
        if (w->rkt_cache[i] == rkt)
            return (int)i;
    int idx = mph__app_topic_index(app, rd_kafka_topic_name(rkt));
    if (idx >= 0)
        w->rkt_cache[idx] = rkt;
    return idx;
}

/* ------------------------------------------------------------------ */
/* sending                                                            */

/* The worker producer's handle for topic t: one per topic and worker, made
 * on first use, so no name lookup per record. */
static mph_err_t produce_rkt(mph__worker_t *w, mph_topic_t *t, rd_kafka_topic_t **rktp)
{
    rd_kafka_topic_t *rkt = w->out_rkt[t->index];
    if (!rkt) {
        rkt = rd_kafka_topic_new(w->producer, t->name, NULL);
        if (!rkt)
            return MPH_ERR_NOMEM;
        w->out_rkt[t->index] = rkt;
    }
    *rktp = rkt;
    return MPH_OK;
}

/* Hands one record to the producer for event ev. An error leaves nothing
 * behind (no pending send) and no other side effect. While a repair runs,
 * the record is held and sent after the records before it. */
static mph_err_t send_record(mph__worker_t *w, struct mph_event *ev, mph_topic_t *topic,
                             int32_t partition, const void *key, size_t key_len,
                             const void *value, size_t value_len, const mph_header_t *headers,
                             size_t header_count, rd_kafka_headers_t *raw_headers,
                             int64_t timestamp)
{
    if (w->exit)
        return MPH_ERR_STOPPED;
    /* Event time travels with derived records (Kafka Streams' rule): a
     * record without an explicit time gets its source record's, so a
     * window after a repartition counts by when things happened. 0 tells
     * the producer "now" (a source record without a timestamp). */
    if (timestamp < 0)
        timestamp = rd_kafka_message_timestamp(ev->rkm, NULL);
    if (timestamp < 0)
        timestamp = 0;
    mph__slot_t *s = ev->slot;
    if (!ev->seq_open) {
        if (MPH__MON_UNLIKELY(ev->punct)) {
            ev->seq = 0; /* a punctuator's sends open no ack entry (punctuate.c) */
        } else {
            mph_err_t err = mph__acks_open(&s->acks, ev->rkm->offset, &ev->seq);
            if (err)
                return err;
        }
        ev->seq_open = true;
    }
    rd_kafka_headers_t *hdrs = raw_headers ? rd_kafka_headers_copy(raw_headers) : NULL;
    if (header_count) {
        if (!hdrs)
            hdrs = rd_kafka_headers_new(header_count);
        for (size_t i = 0; i < header_count; i++)
            rd_kafka_header_add(hdrs, headers[i].name, -1, headers[i].value,
                                (ssize_t)headers[i].len);
    }
    if (partition == MPH_PARTITION_ANY && !key && topic->partitions > 0)
        partition = (int32_t)(w->rr++ % (uint64_t)topic->partitions);
    void *opaque = MPH__MON_UNLIKELY(ev->punct) ? encode_opaque(MPH__SLOT_PUNCT, 0, 0)
                                                : encode_opaque(ev->slot_id, s->gen, ev->seq);
    rd_kafka_topic_t *rkt = NULL;
    if (produce_rkt(w, topic, &rkt) != MPH_OK) {
        if (hdrs)
            rd_kafka_headers_destroy(hdrs);
        return MPH_ERR_NOMEM;
    }
    for (;;) {
        if (MPH__MON_UNLIKELY(w->repairing)) {
            if (partition == MPH_PARTITION_ANY && key && topic->partitions > 0)
                partition = mph__kafka_partition_for(key, key_len, topic->partitions);
            if (!hold(w, topic, partition == MPH_PARTITION_ANY ? RD_KAFKA_PARTITION_UA : partition,
                      key, key_len, value, value_len, hdrs, opaque, timestamp)) {
                if (hdrs)
                    rd_kafka_headers_destroy(hdrs);
                return MPH_ERR_NOMEM;
            }
            break;
        }
        int32_t p = partition == MPH_PARTITION_ANY ? RD_KAFKA_PARTITION_UA : partition;
        /* Without headers or a timestamp, rd_kafka_produce does the same as
         * producev for ~400 fewer instructions per record (no vararg walk;
         * callgrind, issue #22). */
        rd_kafka_resp_err_t e =
            hdrs || timestamp
                ? rd_kafka_producev(w->producer, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(p),
                                    RD_KAFKA_V_KEY(key, key_len),
                                    RD_KAFKA_V_VALUE((void *)value, value_len),
                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                    RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_TIMESTAMP(timestamp),
                                    RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END)
            : rd_kafka_produce(rkt, p, RD_KAFKA_MSG_F_COPY, (void *)value, value_len, key,
                               key_len, opaque) == 0
                ? RD_KAFKA_RESP_ERR_NO_ERROR
                : rd_kafka_last_error();
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL && !w->exit &&
            ck_pr_load_int(&w->app->state) == APP_RUNNING) {
            /* producer_buffer_max_bytes reached: back-pressure. Serve
             * delivery reports (blocking up to 10 ms: no busy loop) until
             * the broker acknowledged enough. Records never time out, so
             * with the broker gone this waits until it is back or the app
             * stops. */
            serve_producer(w, 10);
            continue;
        }
        if (hdrs)
            rd_kafka_headers_destroy(hdrs);
        if (MPH__MON_UNLIKELY(mph__worker_txn_refused(w, e))) {
            /* exactly_once: librdkafka learnt that the transaction must be
             * aborted (a record of it failed) before its report reached
             * dr_cb, or the producer failed fatally. The record goes with
             * the transaction: doomed, aborted at the commit point, its
             * source processed again. */
            return MPH_OK;
        }
        return e == RD_KAFKA_RESP_ERR__QUEUE_FULL ? MPH_ERR_STOPPED : mph__kafka_err(e);
    }
    if (MPH__MON_UNLIKELY(ev->punct))
        w->punct_inflight++;
    else
        mph__acks_add_send(&s->acks, ev->seq);
    mph__monitor_send(w->mon, topic->index);
    return MPH_OK;
}

/* Sends source record m of event ev to the dead-letter topic with headers
 * naming why (and output, the topic an unsendable output was meant for, or
 * NULL): the whole record, or, when that is too large for the producer,
 * the first 64 KiB of its value and 4 KiB of its key with mph.truncated
 * (the value's size). */
static mph_err_t dead_letter_source(mph__worker_t *w, struct mph_event *ev,
                                    const rd_kafka_message_t *m, const char *why,
                                    const char *output)
{
    mph_app_t *app = w->app;
    mph_topic_t *t = ev->topic;
    char part[16], off[32], vsize[32];
    send_headers_of(part, sizeof part, off, sizeof off, m->partition, m->offset);
    snprintf(vsize, sizeof vsize, "%zu", m->len);
    mph_header_t h[] = {{"mph.error", why, strlen(why)},
                        {"mph.topic", t->name, strlen(t->name)},
                        {"mph.partition", part, strlen(part)},
                        {"mph.offset", off, strlen(off)},
                        {"mph.output_topic", output, output ? strlen(output) : 0},
                        {"mph.truncated", vsize, strlen(vsize)}};
    /* h[5] (mph.truncated) only on the cut copy; h[4] only with output. */
    mph_header_t ht[6];
    size_t nh = 0;
    for (size_t i = 0; i < 5; i++)
        if (i != 4 || output)
            ht[nh++] = h[i];
    rd_kafka_headers_t *orig = NULL;
    if (rd_kafka_message_headers(m, &orig) != RD_KAFKA_RESP_ERR_NO_ERROR)
        orig = NULL;
    int32_t dlp = m->partition % (app->dead_letter->partitions > 0 ? app->dead_letter->partitions : 1);
    mph_err_t serr = send_record(w, ev, app->dead_letter, dlp, m->key, m->key_len, m->payload,
                                 m->len, ht, nh, orig, -1);
    if (serr == MPH_ERR_RANGE) {
        /* Too large for the producer: keep the first 64 KiB of the value
         * (4 KiB of the key) and say how large it was, rather than
         * stopping on a record that can never be written. */
        ht[nh++] = h[5];
        serr = send_record(w, ev, app->dead_letter, dlp, m->key,
                           m->key_len > 4096 ? 4096 : m->key_len, m->payload,
                           m->len > 65536 ? 65536 : m->len, ht, nh, NULL, -1);
    }
    return serr;
}

mph_err_t mph__worker_send(mph__worker_t *w, struct mph_event *ev, mph_topic_t *topic,
                           int32_t partition, const void *key, size_t key_len,
                           const void *value, size_t value_len, const mph_header_t *headers,
                           size_t header_count, rd_kafka_headers_t *raw_headers)
{
    return mph__worker_send_ts(w, ev, topic, partition, key, key_len, value, value_len, headers,
                               header_count, raw_headers, -1);
}

mph_err_t mph__worker_send_ts(mph__worker_t *w, struct mph_event *ev, mph_topic_t *topic,
                              int32_t partition, const void *key, size_t key_len,
                              const void *value, size_t value_len, const mph_header_t *headers,
                              size_t header_count, rd_kafka_headers_t *raw_headers,
                              int64_t timestamp_ms)
{
    mph_err_t err;
    char why[256];
    bool poison = MPH__MON_UNLIKELY(w->npoison > 0) && poisoned(w, ev, topic, why, sizeof why);
    if (MPH__MON_UNLIKELY(poison)) {
        /* exactly_once: the broker refused this output in an aborted
         * transaction (eos_dr); sending it again would doom every
         * transaction. on_send_error decides now. */
        err = MPH_ERR_RANGE;
    } else {
        err = send_record(w, ev, topic, partition, key, key_len, value, value_len, headers,
                          header_count, raw_headers, timestamp_ms);
        if (MPH__MON_UNLIKELY(err == MPH_ERR_RANGE))
            snprintf(why, sizeof why,
                     "send to %s refused: a record of %zu bytes is larger than the producer's "
                     "message.max.bytes (%lld)",
                     topic->name, key_len + value_len, (long long)w->app->produce_max_bytes);
    }
    if (MPH__MON_UNLIKELY(err == MPH_ERR_RANGE) && topic->send_policy != DECODE_FAIL) {
        /* Larger than any topic of the app accepts (the producer's
         * message.max.bytes follows their max.message.bytes), or refused
         * by the broker before (poison): the topic's on_send_error decides,
         * so that one record never stops the app for good. */
        const rd_kafka_message_t *m = ev->rkm;
        if (topic->send_policy == DECODE_SKIP) {
            mph__mon_add(&w->mon->send_skipped, 1);
            mph_log_limited(&w->log_lim, 5000, MPH_LOG_WARN,
                            "skipped an output of %s [%d] offset %lld: %s (on_send_error=skip)",
                            ev->topic->name, (int)m->partition, (long long)m->offset, why);
            return MPH_OK;
        }
        if (w->app->dead_letter) {
            mph_agent_t *agent = ev->agent;
            err = dead_letter_source(w, ev, m, why, topic->name);
            ev->agent = agent;
            if (!err) {
                mph__mon_add(&w->mon->send_dead_lettered, 1);
                mph_log_limited(&w->log_lim, 5000, MPH_LOG_WARN,
                                "dead-lettered %s [%d] offset %lld: %s", ev->topic->name,
                                (int)m->partition, (long long)m->offset, why);
                return MPH_OK;
            }
        }
    }
    if (MPH__MON_UNLIKELY(err) && eos_fatal(w)) {
        /* exactly_once: fenced or failed fatally, said by eos_fatal. */
    } else if (err && err != MPH_ERR_STOPPED && err != MPH_ERR_INVALID) {
        /* The producer refused the record outright (unknown topic, a policy
         * of fail, ...): going on would commit past an output that will
         * never exist, so stop without committing past the source record,
         * as for a delivery that failed permanently. */
        w->failed = true;
        char size[320] = "";
        if (poison)
            snprintf(size, sizeof size, " (%s)", why);
        else if (err == MPH_ERR_RANGE)
            snprintf(size, sizeof size,
                     " (a record of %zu bytes; the producer's message.max.bytes is %lld)",
                     key_len + value_len, (long long)w->app->produce_max_bytes);
        mph__app_fail(w->app, err,
                      "send to %s from %s [%d] offset %lld refused: %s%s; stopping without "
                      "committing past the source record",
                      topic->name, ev->topic->name, (int)ev->rkm->partition,
                      (long long)ev->rkm->offset, mph_err_str(err), size);
    } else if (err == MPH_ERR_STOPPED) {
        w->failed = true; /* the app stops: never commit past this event */
    }
    return err;
}

/* A reply (rpc.c: mph_event_reply) to a topic the app did not declare:
 * the asker's reply topic, named by the request. Tracked like any send (the
 * source is not committed before the report), but it needs no order, so it
 * is never held for a repair, and a reply the broker refuses (the asker is
 * gone with its topic) is counted and dropped in dr_cb, never fatal. */
mph_err_t mph__worker_send_reply(mph__worker_t *w, struct mph_event *ev, const char *topic,
                                 int32_t partition, const void *value, size_t value_len,
                                 const mph_header_t *headers, size_t header_count)
{
    if (w->exit)
        return MPH_ERR_STOPPED;
    mph__slot_t *s = ev->slot;
    if (!ev->seq_open) {
        mph_err_t err = mph__acks_open(&s->acks, ev->rkm->offset, &ev->seq);
        if (err)
            return err;
        ev->seq_open = true;
    }
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(header_count);
    for (size_t i = 0; i < header_count; i++)
        rd_kafka_header_add(hdrs, headers[i].name, -1, headers[i].value,
                            (ssize_t)headers[i].len);
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            w->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_VALUE((void *)(value ? value : ""), value_len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
            RD_KAFKA_V_OPAQUE(encode_opaque(ev->slot_id, s->gen, ev->seq)), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL && !w->exit &&
            ck_pr_load_int(&w->app->state) == APP_RUNNING) {
            serve_producer(w, 10);
            continue;
        }
        rd_kafka_headers_destroy(hdrs);
        if (e == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC || e == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
            e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || e == RD_KAFKA_RESP_ERR__INVALID_ARG)
            return MPH_ERR_NOENT; /* the asker's topic is gone (or the reply cannot exist) */
        if (mph__worker_txn_refused(w, e))
            return MPH_OK; /* as in send_record */
        return e == RD_KAFKA_RESP_ERR__QUEUE_FULL ? MPH_ERR_STOPPED : mph__kafka_err(e);
    }
    mph__acks_add_send(&s->acks, ev->seq);
    return MPH_OK;
}

/* ------------------------------------------------------------------ */
/* decoding and bad input                                             */

/* Checks bytes against a codec (io/codec.c decides; a record value is also
 * decoded here, once, for mph_event_record). NULL bytes (a null key or
 * value) only pass the raw codec. */
static mph_err_t check_codec(mph__worker_t *w, mph_topic_t *t, int codec, const void *buf,
                             size_t len, bool is_value, char *why, size_t why_size)
{
    const char *what = is_value ? "value" : "key";
    if (codec == MPH_CODEC_RAW)
        return MPH_OK;
    if (!buf) {
        snprintf(why, why_size, "%s is null", what);
        return MPH_ERR_DECODE;
    }
    if (codec == MPH_CODEC_USER) { /* mph_codec_register (mephisto/codec.h) */
        const mph__codec_user_t *u = is_value ? t->uvalue : t->ukey;
        char reason[200] = "";
        mph_err_t err = u && u->decode ? u->decode(buf, len, u->opaque, reason, sizeof reason)
                                       : MPH_OK;
        if (err)
            snprintf(why, why_size, "%s: codec %s: %s", what, u->name,
                     reason[0] ? reason : mph_err_str(err));
        return err;
    }
    if (codec == MPH_CODEC_RECORD) {
        mph_err_t err = mph_record_decode(t->opts.record, w->json, buf, len,
                                          &w->records[t->index], why, why_size);
        if (err)
            return err;
        w->ev.record = w->records[t->index];
        w->ev.json_state = 0; /* the parser's document is not the value's */
        return MPH_OK;
    }
    char reason[200];
    mph_err_t err = mph__codec_validate((mph_codec_t)codec, NULL, w->json, buf, len, reason,
                                        sizeof reason);
    if (err) {
        snprintf(why, why_size, "%s: %s", what, reason);
        return err;
    }
    /* A validated json value leaves its document in the parser: agents get
     * it from mph_event_json() without a second parse. */
    if (codec == MPH_CODEC_JSON)
        w->ev.json_state = is_value ? 1 : 0;
    return MPH_OK;
}

/* What on_decode_error says to do with a record that failed its codec.
 * Returns true when the record counts as processed. */
static bool bad_input(mph__worker_t *w, mph_topic_t *t, rd_kafka_message_t *m, mph_err_t err,
                      const char *why)
{
    mph_app_t *app = w->app;
    struct mph_event *ev = &w->ev;
    switch (t->decode_policy) {
    case DECODE_SKIP:
        mph__mon_add(&w->mon->skipped, 1);
        mph_log_limited(&w->log_lim, 5000, MPH_LOG_WARN, "skipped %s [%d] offset %lld: %s",
                        t->name, (int)m->partition, (long long)m->offset, why);
        return true;
    case DECODE_DEAD_LETTER: {
        ev->agent = NULL;
        mph_err_t serr = dead_letter_source(w, ev, m, why, NULL);
        if (serr) {
            mph__app_fail(app, serr, "cannot dead-letter %s [%d] offset %lld: %s", t->name,
                          (int)m->partition, (long long)m->offset, mph_err_str(serr));
            w->failed = true;
            return false;
        }
        mph__mon_add(&w->mon->dead_lettered, 1);
        mph_log_limited(&w->log_lim, 5000, MPH_LOG_WARN,
                        "dead-lettered %s [%d] offset %lld: %s", t->name, (int)m->partition,
                        (long long)m->offset, why);
        return true;
    }
    default:
        w->failed = true;
        mph__app_fail(app, err,
                      "bad record in %s [%d] offset %lld: %s (on_decode_error=fail: stopping "
                      "without committing past it)",
                      t->name, (int)m->partition, (long long)m->offset, why);
        return false;
    }
}

/* ------------------------------------------------------------------ */
/* dispatch                                                           */

/* Dispatches record m. Returns true when a batching agent kept m (the
 * caller must not destroy it; punctuate.c does). */
static bool process(mph__worker_t *w, rd_kafka_message_t *m)
{
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            mph_log_limited(&w->log_lim, 5000, MPH_LOG_WARN, "consumer error: %s",
                            rd_kafka_message_errstr(m));
        return false;
    }
    int ti = topic_of(w, m->rkt);
    if (ti < 0 || m->partition < 0 || m->partition >= w->app->topics[ti]->partitions)
        return false;
    int32_t sid = w->slot_of[ti][m->partition];
    if (sid < 0)
        return false; /* not ours: see "Slots change only between batches" above */
    mph__slot_t *s = &w->slots[sid];
    mph_topic_t *t = w->app->topics[ti];
    struct mph_event *ev = &w->ev;
    ev->rkm = m;
    ev->topic = t;
    ev->slot = s;
    ev->slot_id = (uint32_t)sid;
    ev->seq_open = false;
    ev->hdrs_read = false;
    ev->hdrs = NULL;
    ev->json_state = 0;
    ev->record = NULL;
    int64_t t0 = mph_clock_mono_ns();

    if (t->key_codec != MPH_CODEC_RAW || t->value_codec != MPH_CODEC_RAW) {
        char why[256];
        mph_err_t derr = check_codec(w, t, t->key_codec, m->key, m->key_len, false, why,
                                     sizeof why);
        if (!derr)
            derr = check_codec(w, t, t->value_codec, m->payload, m->len, true, why, sizeof why);
        if (derr) {
            if (!bad_input(w, t, m, derr, why))
                return false; /* not processed: the commit point stays before it */
            if (ev->seq_open)
                mph__acks_close(&s->acks, ev->seq);
            else
                mph__acks_processed(&s->acks, m->offset);
            if (MPH__MON_UNLIKELY(s->txn_start < 0))
                s->txn_start = m->offset; /* exactly_once only */
            s->last_offset = m->offset;
            w->events_since_commit++;
            return false;
        }
    }

    bool kept = false; /* a batching agent holds m (punctuate.c) */
    for (size_t i = 0; i < t->nagents; i++) {
        mph_agent_t *a = t->agents[i];
        ev->agent = a;
        if (MPH__MON_UNLIKELY(a->batch_n)) {
            if (!mph__pw_batch_add(w, a, ev)) {
                w->failed = true;
                mph__app_fail(w->app, MPH_ERR_NOMEM, "agent %s: out of memory for a batch of "
                              "%s [%d]", a->name, t->name, (int)m->partition);
                return kept;
            }
            kept = true;
            continue;
        }
        mph_err_t rc = a->fn(ev, a->opaque);
        mph__monitor_agent(w->mon, a->index, rc != MPH_OK);
        if (w->failed)
            return kept; /* a refused send: never processed, never committed past */
        if (rc != MPH_OK) {
            mph_log_limited(&w->log_lim, 1000, MPH_LOG_ERROR,
                            "agent %s failed on %s [%d] offset %lld: %s", a->name, t->name,
                            (int)m->partition, (long long)m->offset, mph_err_str(rc));
            if (rc == MPH_ERR_STORE || rc == MPH_ERR_DISK_FULL) {
                /* The state store failed under the agent (a window or
                 * table call): never counted as processed, whatever
                 * on_agent_error says (table.c, store_result). */
                w->failed = true;
                mph__app_fail(w->app, rc,
                              "agent %s failed on %s [%d] offset %lld: %s; stopping without "
                              "committing past the event",
                              a->name, t->name, (int)m->partition, (long long)m->offset,
                              mph_err_str(rc));
                return kept;
            }
            if (w->app->stop_on_agent_error) {
                w->failed = true;
                mph__app_fail(w->app, MPH_ERR_AGENT,
                              "agent %s failed on %s [%d] offset %lld: %s (on_agent_error=stop)",
                              a->name, t->name, (int)m->partition, (long long)m->offset,
                              mph_err_str(rc));
                /* Not marked processed (an opened entry stays held), so the
                 * commit point never passes this event. */
                return kept;
            }
        }
    }
    /* (A kept event's entry stays open until its batch is delivered.) */
    if (ev->seq_open) {
        if (!MPH__MON_UNLIKELY(kept))
            mph__acks_close(&s->acks, ev->seq);
    } else {
        mph__acks_processed(&s->acks, m->offset);
    }
    if (MPH__MON_UNLIKELY(s->txn_start < 0))
        s->txn_start = m->offset; /* exactly_once only: where an abort re-reads from */
    s->last_offset = m->offset;
    w->events_since_commit++;
    if (MPH__MON_UNLIKELY(w->pw_track))
        mph__pw_note(w, s, m, t0);
    mph__monitor_event(w->mon, ti, m->partition, m->offset,
                       (uint64_t)(mph_clock_mono_ns() - t0));
    if (MPH__MON_UNLIKELY(kept))
        mph__pw_batch_full(w);
    return kept;
}

/* ------------------------------------------------------------------ */
/* commits and control                                                */

/* The commit point of s that a report sends: the one saved when the table
 * flush began (snap), or the current one. */
static int64_t point_of(const mph__slot_t *s, bool snap)
{
    return snap ? s->snap_commit : s->acks.commit;
}

static bool to_report(const mph__slot_t *s, bool all, bool snap)
{
    return s->used && (!snap || s->snap_commit >= 0) && (all || point_of(s, snap) > s->reported);
}

/* Sends commit points to the coordinator: all of them, or those that moved
 * since the last report; with snap, those saved when the table flush that
 * made them durable began. */
static void send_points(mph__worker_t *w, int kind, bool all, bool snap)
{
    if (all && kind == MSG_COMMIT)
        w->resend_all = false; /* every point goes now */
    size_t n = 0;
    for (uint32_t i = 0; i < w->nslots; i++)
        n += to_report(&w->slots[i], all, snap);
    if (n == 0 && kind == MSG_COMMIT)
        return;
    mph__msg_t *msg = mph__msg_new(kind, w->index, n);
    if (!msg)
        return;
    size_t k = 0;
    for (uint32_t i = 0; i < w->nslots && k < n; i++) {
        mph__slot_t *s = &w->slots[i];
        if (!to_report(s, all, snap))
            continue;
        int64_t point = point_of(s, snap);
        msg->tp[k].topic = s->topic;
        msg->tp[k].partition = s->partition;
        msg->tp[k].offset = point;
        s->reported = point;
        mph__monitor_commit_point(w->mon, s->topic, s->partition, point);
        k++;
    }
    msg->n = k;
    if (mph__coord_post(w->app->coord, msg) != MPH_OK)
        mph__msg_free(msg);
}

/* Whether a commit failed since every point last went: only then does the
 * timer send every commit point again (so a refused commit is retried even
 * when nothing new arrives); otherwise only points that moved go, and an
 * idle partition costs no commit at all. The need stays until a report
 * with every point was really sent (send_points): a timer that finds a
 * table flush under way, or punctuator sends holding the commit, sends
 * nothing, and the retry must not be lost with it (faults::
 * commit_errors_are_retried stalled at 17,512 of 20,000 that way). */
static bool commit_failed_since(mph__worker_t *w)
{
    mph__coord_stats_t st;
    mph__coord_stats(w->app->coord, &st);
    if (st.commit_errors != w->commit_errors_seen) {
        w->commit_errors_seen = st.commit_errors;
        w->resend_all = true;
    }
    return w->resend_all;
}

/* A commit (MSG_COMMIT) of a worker with tables first makes their state
 * durable, asynchronously (table.c): the commit points as of now are saved
 * and sent once that flush is done (flush_progress, from the worker loop).
 * Other reports (MSG_STOPPED) follow the caller's own flush and send the
 * current points. */
static void report(mph__worker_t *w, int kind, bool all)
{
    if (kind != MSG_COMMIT || !w->app->ntables) {
        send_points(w, kind, all, false);
        return;
    }
    if (w->fl_active)
        return; /* the flush under way reports when it is done */
    for (uint32_t i = 0; i < w->nslots; i++)
        if (w->slots[i].used)
            w->slots[i].snap_commit = w->slots[i].acks.commit;
    w->fl_all = all;
    if (mph__tables_flush_begin(w) == MPH__FLUSH_DONE)
        send_points(w, kind, all, true);
    /* PENDING: flush_progress reports; FAILED: nothing durable this time. */
}

/* Completes an asynchronous table flush once its records are acknowledged
 * and reports the commit points it made durable. */
static void flush_progress(mph__worker_t *w)
{
    if (w->fl_active && mph__tables_flush_poll(w) == MPH__FLUSH_DONE)
        send_points(w, MSG_COMMIT, w->fl_all, true);
}

/* Serves the producer until nothing waits for tracker a, or the deadline. */
static void flush_until_idle(mph__worker_t *w, mph__acks_t *a, int64_t deadline_ns)
{
    while (a->inflight > 0 && mph_clock_mono_ns() < deadline_ns)
        serve_producer(w, 10);
}

/* Creates the worker's producer: its delivery reports run dr_cb on this
 * worker, and its main queue wakes the worker's loop through pfd. Under
 * exactly_once with init, also its transactions (init_transactions and
 * the first begin_transaction); without, the caller does that. */
static mph_err_t producer_open(mph__worker_t *w, bool init, char *errstr, size_t errstr_size)
{
    mph_app_t *app = w->app;
    rd_kafka_conf_t *kc =
        mph__kafka_conf_new(app->kenv, app->conf, MPH__KAFKA_PRODUCER, errstr, errstr_size);
    if (!kc)
        return MPH_ERR_INVALID;
    rd_kafka_conf_set_dr_msg_cb(kc, dr_cb);
    rd_kafka_conf_set_opaque(kc, w);
    /* Sized to the app's topics (app.c size_producers) unless set by hand.
     * message.timeout.ms=0: a record is never given up for a transient
     * error; librdkafka retries it, in order (idempotent producer), until
     * the broker takes it, so the engine never has to produce it again
     * behind later records of its key. */
    char num[32];
    struct { const char *k; int64_t v; } sized[] = {
        {"message.max.bytes", app->produce_max_bytes},
        {"batch.size", app->produce_batch_bytes},
        {"queue.buffering.max.kbytes", app->producer_buffer_bytes / 1024},
        {"message.timeout.ms", 0},
    };
    /* exactly_once: a transaction cannot outlive transaction.timeout.ms, so
     * records keep librdkafka's timeout (it follows that one); a record
     * that times out aborts its transaction, which is processed again. */
    size_t nsized = sizeof sized / sizeof sized[0] - (app->eos ? 1 : 0);
    for (size_t i = 0; i < nsized; i++) {
        char name[64];
        snprintf(name, sizeof name, "kafka.%s", sized[i].k);
        if ((sized[i].v <= 0 && strcmp(sized[i].k, "message.timeout.ms") != 0) ||
            mph_conf_is_set(app->conf, name))
            continue;
        snprintf(num, sizeof num, "%lld", (long long)sized[i].v);
        if (mph__kafka_conf_set(kc, sized[i].k, num, errstr, errstr_size) != MPH_OK) {
            rd_kafka_conf_destroy(kc);
            return MPH_ERR_INVALID;
        }
    }
    char cid[256];
    snprintf(cid, sizeof cid, "%s-w%d", app->app_id, w->index);
    rd_kafka_conf_set(kc, "client.id", cid, NULL, 0);
    if (app->eos) {
        mph__app_transactional_id(app, w->index, w->txn_id, sizeof w->txn_id);
        if (mph__kafka_conf_set(kc, "transactional.id", w->txn_id, errstr, errstr_size) !=
            MPH_OK) {
            rd_kafka_conf_destroy(kc);
            return MPH_ERR_INVALID;
        }
    }
    w->producer = mph__kafka_new(kc, MPH__KAFKA_PRODUCER, errstr, errstr_size);
    if (!w->producer)
        return MPH_ERR_INVALID;
    w->prod_main = rd_kafka_queue_get_main(w->producer);
    static const uint64_t one = 1;
    rd_kafka_queue_io_event_enable(w->prod_main, w->pfd, &one, sizeof one);
    if (app->eos && init) {
        /* Fences every earlier producer with this transactional.id (a
         * zombie of this process) and aborts its open transaction; fails
         * here, at start, when the broker cannot run transactions. */
        int64_t t = app->shutdown_timeout_ms < 10000 ? 10000 : app->shutdown_timeout_ms;
        rd_kafka_error_t *e = rd_kafka_init_transactions(w->producer, (int)t);
        if (!e)
            e = rd_kafka_begin_transaction(w->producer);
        if (e) {
            snprintf(errstr, errstr_size,
                     "processing_guarantee=exactly_once: worker %d cannot start transactions "
                     "with transactional.id %s: %s (the broker must support transactions, "
                     "Kafka 2.5 or later, with the transaction state topic available)",
                     w->index, w->txn_id, rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            return MPH_ERR_INVALID;
        }
    }
    return MPH_OK;
}

/* Unwires and destroys producer rk with its main queue. Whatever it still
 * holds is dropped (purged first, so its reports reach dr_cb). */
static void producer_close(rd_kafka_t *rk, rd_kafka_queue_t *main_q)
{
    if (main_q) {
        rd_kafka_queue_io_event_enable(main_q, -1, NULL, 0);
        rd_kafka_queue_destroy(main_q);
    }
    if (rk) {
        rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(rk, 0);
        rd_kafka_destroy(rk);
    }
}

static void out_topics_close(mph__worker_t *w)
{
    for (size_t i = 0; w->out_rkt && i < w->app->ntopics; i++)
        if (w->out_rkt[i]) {
            rd_kafka_topic_destroy(w->out_rkt[i]);
            w->out_rkt[i] = NULL;
        }
}

/* Replaces w's producer with a new one (with init: its transactions
 * begun, as at start), then purges the old one, serves its reports
 * (queued before rd_kafka_purge returns: dr_cb sees the new producer) and
 * destroys it. When no new one can be made, the old one stays, the worker
 * fails the app (when names the occasion) and false is returned. */
static bool producer_replace(mph__worker_t *w, bool init, const char *when)
{
    rd_kafka_t *old = w->producer;
    rd_kafka_queue_t *old_main = w->prod_main;
    char err[512];
    out_topics_close(w); /* handles of the old producer */
    if (producer_open(w, init, err, sizeof err) != MPH_OK) {
        w->producer = old;
        w->prod_main = old_main;
        w->failed = true;
        mph__app_fail(w->app, MPH_ERR_INVALID, "worker %d: cannot replace its producer %s: %s",
                      w->index, when, err);
        return false;
    }
    producer_close(old, old_main);
    return true;
}

/* Drops everything this worker's producer still holds, queued or in
 * flight, once partitions were handed back without durable state (lost to
 * the group, or their flush failed). Their changelog records must never
 * land: the next owner rebuilds those shards from the changelog, and a
 * record that arrived after that rebuild (e.g. when a broker comes back
 * from an outage) would put an older value on top of the new owner's.
 * Their output records are not needed either: their sources were not
 * committed, so the next owner processes them again.
 *
 * The producer is replaced, not just purged: it is idempotent, and
 * records dropped from it (some possibly written already, e.g. sent just
 * before the broker died) leave its sequence numbers out of step with the
 * broker's, which librdkafka 2.0.2 turns into a fatal error at the next
 * send (OUT_OF_ORDER_SEQUENCE_NUMBER; seen in reliability scenario 5). A
 * new producer starts a new idempotent session. The old one's reports come
 * back as PURGE errors: dr_cb drops those of partitions no longer owned
 * and sends the others again through the new producer; purged changelog
 * records fail their flush, so keys of shards still owned stay dirty and
 * are written again at the next commit. */
static void purge_handed_back(mph__worker_t *w)
{
    uint64_t before = w->purged_handed_back, resent = w->resent_inflight;
    int64_t changelog = w->cl_pending;
    if (!producer_replace(w, true, "at a hand-over"))
        return;
    if (w->cl_pending > 0) {
        mph_log(MPH_LOG_ERROR, "%lld changelog records without a report after the purge",
                (long long)w->cl_pending);
        w->cl_pending = 0; /* the producer that held them is gone */
    }
    if (w->purged_handed_back > before || changelog > 0 || w->resent_inflight > resent)
        mph_log(MPH_LOG_WARN,
                "hand-over without durable state: dropped %llu unacknowledged output records "
                "(their sources are processed again by the next owner) and %lld changelog "
                "records; re-sent %llu records of partitions kept that were in flight (each "
                "may be a duplicate)",
                (unsigned long long)(w->purged_handed_back - before), (long long)changelog,
                (unsigned long long)(w->resent_inflight - resent));
    mph__mon_add(&w->mon->send_resent_inflight, w->resent_inflight - resent);
}

/* ---- exactly_once: transactions ------------------------------------------
 *
 * Under exactly_once the commit interval is one transaction of the
 * worker's transactional producer (transactional.id
 * `<app_id>-<process id>-w<worker>`, app.c). A commit (eos_commit, on this
 * thread, synchronous) produces every dirty table key to its changelog,
 * adds the next offset of every partition that processed records since
 * the last commit with the group consumer's metadata (KIP-447: a member of
 * a stale generation is refused), and commits; commit_transaction flushes
 * the producer, so every delivery report (changelog offsets included) has
 * run when it returns. Only then is each RocksDB batch written with its
 * checkpoint: a checkpoint never names an aborted changelog record.
 *
 * An abort (eos_abort) rolls every shard back to its last commit (memory
 * shards run in undo mode under exactly_once, table.c), seeks each
 * partition that processed records in the transaction back to the first of
 * them (slot txn_start) and resets its tracker. librdkafka tags fetched
 * records with the partition's op version, which a seek bumps, and drops
 * outdated ones when they are consumed: records fetched before the seek
 * and still queued in q are never processed (test_eos proves it: outputs
 * exactly once after aborts). A fenced producer (a newer process took the
 * transactional.id, or the broker fenced a zombie) stops the app: nothing
 * is written any more.
 *
 * A producer that failed fatally for any other reason cannot abort its own
 * transaction (every call answers _FATAL): librdkafka 2.0.2 does that, for
 * one, when a broker restart leaves a batch it retried behind the broker's
 * sequence numbers (OUT_OF_ORDER_SEQUENCE_NUMBER, reliability scenario 5).
 * The error dooms the transaction (eos_fatal, only notes: it may run inside
 * the producer's callbacks), and its abort replaces the producer
 * (eos_replace_step): the local part as for any abort, then a new producer
 * with the same transactional.id, whose init_transactions bumps the epoch,
 * fencing the old one, and makes the broker abort the open transaction.
 * Nothing of the aborted transaction is ever read committed; its sources
 * are processed again, as after any abort.
 */

#define TXN_TIMEOUT_MS 30000
#define TXN_RETRIES 5
#define TXN_STEP_MS 1000
#define EOS_REPLACE_MAX 5 /* producers replaced without a commit between */

/* The producer failed fatally with code: fenced, the worker stops; any
 * other error dooms the transaction, whose abort replaces the producer. */
static void eos_failed(mph__worker_t *w, rd_kafka_resp_err_t code, const char *why)
{
    if (w->fenced)
        return;
    if (!fencing(code)) {
        w->txn_doomed = true;
        if (!w->replace_pending)
            mph_log_limited(&w->log_lim, 2000, MPH_LOG_WARN,
                            "worker %d: transactional producer %s failed fatally (%s); its "
                            "transaction is aborted and the producer replaced", w->index,
                            w->txn_id, why);
        w->replace_pending = true;
        return;
    }
    w->fenced = true;
    w->failed = true;
    ck_pr_store_64(&w->mon->producer_fenced, 1);
    mph__app_fail(w->app, MPH_ERR_STATE,
                  "producer fenced: transactional.id %s is used by a newer process (%s); "
                  "worker %d stops and writes nothing more",
                  w->txn_id, why, w->index);
}

/* True when the producer is fenced or failed fatally (librdkafka then
 * refuses every produce call with _FATAL, and the reason is the fatal
 * error, not the refused record); eos_failed says what follows. */
static bool eos_fatal(mph__worker_t *w)
{
    if (!w->app->eos)
        return false;
    if (w->fenced || w->replace_pending)
        return true;
    char why[512];
    rd_kafka_resp_err_t code = rd_kafka_fatal_error(w->producer, why, sizeof why);
    if (!code)
        return false;
    eos_failed(w, code, why);
    return true;
}

bool mph__worker_txn_refused(mph__worker_t *w, rd_kafka_resp_err_t e)
{
    if (!w->app->eos || (e != RD_KAFKA_RESP_ERR__STATE && e != RD_KAFKA_RESP_ERR__FATAL))
        return false;
    eos_fatal(w);
    if (w->fenced)
        return false;
    w->txn_doomed = true;
    return true;
}

/* The outcome of a transactional call: 0 done, 1 the transaction must be
 * aborted (a producer that failed fatally, not fenced, too: the abort
 * replaces it), -1 fenced (the app stops). Retriable errors are retried
 * by the caller; here they count as "abort" once the retries are used up.
 * e is destroyed. */
static int txn_outcome(mph__worker_t *w, rd_kafka_error_t *e, const char *what)
{
    if (!e)
        return 0;
    int rc = 1;
    if (rd_kafka_error_is_fatal(e) || fencing(rd_kafka_error_code(e))) {
        eos_failed(w, rd_kafka_error_code(e), rd_kafka_error_string(e));
        rc = w->fenced ? -1 : 1;
    } else {
        mph_log_limited(&w->log_lim, 2000, MPH_LOG_WARN, "worker %d: %s failed: %s%s", w->index,
                        what, rd_kafka_error_string(e),
                        rd_kafka_error_txn_requires_abort(e) ? " (the transaction is aborted)"
                                                             : "");
    }
    rd_kafka_error_destroy(e);
    return rc;
}

static bool eos_begin(mph__worker_t *w)
{
    if (w->fenced || w->replace_pending)
        return false;
    return txn_outcome(w, rd_kafka_begin_transaction(w->producer), "begin_transaction") == 0;
}

/* Rolls back every shard this worker holds (tables rollback). */
static void rollback_shards(mph__worker_t *w)
{
    mph_app_t *app = w->app;
    for (size_t i = 0; i < app->ntables; i++)
        for (int p = 0; p < app->tables[i]->partitions; p++) {
            mph__shard_t *sh = w->shards[i][p];
            if (!sh)
                continue;
            mph_err_t err = mph__shard_rollback(sh);
            if (err) {
                w->failed = true;
                mph__app_fail(app, err, "table %s [%d]: cannot roll back an aborted "
                              "transaction: %s", app->tables[i]->name, p, mph_err_str(err));
            }
        }
}

/* Aborts the open transaction and puts the worker back to its last commit;
 * begins the next transaction when again. */
/* After a failed seek back: the partitions of l that the consumer no
 * longer holds (the group took them while the transaction was open, e.g.
 * a session that timed out in a broker outage) cannot be sought, and need
 * not be: their revocation is on its way and the next owner starts from
 * the committed offsets. Their slots go now, so that records fetched
 * before the seek are never processed (a later transaction would commit
 * offsets past the aborted ones); their shards, rolled back already, leave
 * with the revocation. The partitions still held are sought back again.
 * False when that failed too, or the assignment could not be read. */
static bool seek_held(mph__worker_t *w, const rd_kafka_topic_partition_list_t *l)
{
    rd_kafka_t *c = w->app->consumer;
    rd_kafka_topic_partition_list_t *held = NULL;
    if (!rd_kafka_assignment_lost(c) &&
        rd_kafka_assignment(c, &held) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return false;
    rd_kafka_topic_partition_list_t *again = rd_kafka_topic_partition_list_new(l->cnt);
    int dropped = 0;
    for (int i = 0; i < l->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &l->elems[i];
        if (held && rd_kafka_topic_partition_list_find(held, e->topic, e->partition)) {
            rd_kafka_topic_partition_list_add(again, e->topic, e->partition)->offset = e->offset;
            continue;
        }
        int t = mph__app_topic_index(w->app, e->topic);
        int32_t sid = t >= 0 ? w->slot_of[t][e->partition] : -1;
        if (sid >= 0)
            slot_remove(w, (uint32_t)sid);
        dropped++;
    }
    bool ok = true;
    if (again->cnt > 0) {
        rd_kafka_error_t *se = rd_kafka_seek_partitions(c, again, -1);
        ok = se == NULL;
        for (int i = 0; ok && i < again->cnt; i++)
            ok = again->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR;
        if (se)
            rd_kafka_error_destroy(se);
    }
    if (dropped)
        mph_log(MPH_LOG_WARN, "worker %d: %d partitions of the aborted transaction are no "
                "longer assigned (the group moved them); their records are left to the next "
                "owner", w->index, dropped);
    rd_kafka_topic_partition_list_destroy(again);
    if (held)
        rd_kafka_topic_partition_list_destroy(held);
    return ok;
}

static void eos_replace_step(mph__worker_t *w);

/* A step that timed out (e is retriable): the app stops once the abort's
 * deadline passed. e is destroyed. */
static void abort_step_late(mph__worker_t *w, rd_kafka_error_t *e)
{
    rd_kafka_error_destroy(e);
    if (mph_clock_mono_ns() > w->abort_deadline_ns) {
        mph__app_fail(w->app, MPH_ERR_TIMEOUT, "worker %d: cannot abort its transaction "
                      "(transactional.id %s) within %d s; stopping", w->index, w->txn_id,
                      TXN_TIMEOUT_MS * TXN_RETRIES / 1000);
        w->failed = true;
        w->abort_pending = false;
    }
}

/* The abort is done: reports of the purged records (PURGE errors) release
 * what waits; the next transaction begins when asked for. */
static void abort_done(mph__worker_t *w)
{
    w->abort_pending = false;
    int64_t deadline = mph_clock_mono_ns() + 5000000000LL;
    while (rd_kafka_outq_len(w->producer) > 0 && mph_clock_mono_ns() < deadline)
        rd_kafka_poll(w->producer, 10);
    /* Only now: changelog records of the aborted flush report (purged, or
     * written and aborted) until here, and each report counts down. Reset
     * when the abort began, the count went below zero, and the next
     * commit stopped waiting for its own reports too early. */
    w->cl_pending = 0;
    w->cl_failed = false;
    if (w->abort_again && !w->failed)
        eos_begin(w);
}

/* One step of a pending abort: abort_transaction for up to TXN_STEP_MS
 * (resumable: librdkafka goes on where a timed-out call stopped). Done:
 * a new transaction begins when asked for. A broker that does not answer
 * leaves the abort pending, and the worker loop (which processes nothing
 * meanwhile) calls this again, so that the worker keeps serving its
 * mailbox (rebalances) during an outage.
 *
 * An abort still pending TXN_TIMEOUT_MS after it began replaces the
 * producer instead (eos_replace_step: a new epoch makes the broker abort
 * the transaction). librdkafka 2.0.2's abort_transaction can stay
 * retriable for good after the transaction coordinator went down during
 * the transaction (an AddOffsetsToTxn that failed with a transport error;
 * librdkafka issue #3779): reliability scenario 5 under exactly_once saw
 * it go on for 150 s with the broker back for all of them, and the worker
 * stopped. */
static void eos_abort_step(mph__worker_t *w)
{
    if (MPH__MON_UNLIKELY(w->replace_pending)) {
        eos_replace_step(w);
        return;
    }
    rd_kafka_error_t *e = rd_kafka_abort_transaction(w->producer, TXN_STEP_MS);
    if (e && rd_kafka_error_is_retriable(e) && !rd_kafka_error_is_fatal(e)) {
        int64_t now = mph_clock_mono_ns();
        if (now > w->abort_replace_ns) {
            mph_log(MPH_LOG_WARN, "worker %d: abort_transaction not done after %d s (%s): "
                    "replacing the producer, whose new epoch aborts the transaction",
                    w->index, TXN_TIMEOUT_MS / 1000, rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            w->replace_pending = true;
            w->abort_replace_ns = INT64_MAX;
            w->abort_deadline_ns = now + (int64_t)TXN_TIMEOUT_MS * TXN_RETRIES * 1000000;
            eos_replace_step(w);
            return;
        }
        abort_step_late(w, e);
        return;
    }
    if (e && txn_outcome(w, e, "abort_transaction") < 0) {
        w->abort_pending = false;
        return;
    }
    if (w->replace_pending) {
        eos_replace_step(w); /* it failed fatally: the replacement aborts */
        return;
    }
    abort_done(w);
}

/* One step of the abort of a producer that failed fatally, not fenced
 * ("exactly_once: transactions" above): the first replaces the producer
 * (the old one purged, its reports served, and destroyed), every step
 * runs the new one's init_transactions for up to TXN_STEP_MS (resumable,
 * as abort_transaction); pending while the broker does not answer. A new
 * producer that fails fatally too is replaced again, EOS_REPLACE_MAX
 * times before a commit succeeds; then the worker stops. */
static void eos_replace_step(mph__worker_t *w)
{
    if (!w->replace_open) {
        if (w->replacements >= EOS_REPLACE_MAX) {
            w->failed = true;
            w->abort_pending = false;
            mph__app_fail(w->app, MPH_ERR_STATE, "worker %d: transactional producer %s failed "
                          "fatally %d times without a commit between; stopping", w->index,
                          w->txn_id, w->replacements + 1);
            return;
        }
        if (!producer_replace(w, false, "after a fatal error")) {
            w->abort_pending = false;
            return;
        }
        /* Its reports were of the aborted transaction (errors among them
         * doomed it again): the next one starts clean. */
        w->txn_doomed = false;
        w->replace_open = true;
        w->replacements++;
    }
    rd_kafka_error_t *e = rd_kafka_init_transactions(w->producer, TXN_STEP_MS);
    if (e && rd_kafka_error_is_retriable(e) && !rd_kafka_error_is_fatal(e)) {
        abort_step_late(w, e);
        return;
    }
    w->replace_open = false;
    if (e) {
        /* Fenced: the worker stops. Otherwise the next step replaces the
         * new producer too. */
        if (txn_outcome(w, e, "init_transactions") < 0)
            w->abort_pending = false;
        else
            w->replace_pending = true;
        return;
    }
    w->replace_pending = false;
    mph__mon_add(&w->mon->producer_replaced, 1);
    mph_log(MPH_LOG_WARN, "worker %d: transactional producer %s replaced (a new epoch); the "
            "broker aborted its open transaction, whose records are processed again",
            w->index, w->txn_id);
    abort_done(w);
}

/* Aborts the open transaction: every shard rolls back to its last commit
 * and every partition that processed records in it is sought back to the
 * first of them (both local, done at once), then abort_transaction
 * (eos_abort_step; pending while the broker does not answer). */
static void eos_abort(mph__worker_t *w, bool again)
{
    mph_app_t *app = w->app;
    if (w->fenced)
        return;
    if (w->persist_pending) {
        /* Rolling back now would drop committed values that only the
         * changelog holds: a restart recovers them from there. */
        w->failed = true;
        mph__app_fail(app, MPH_ERR_STATE,
                      "worker %d: its transaction must be aborted while values it committed "
                      "are not in the state store yet (the store could not be written); "
                      "stopping: a restart recovers them from the changelog", w->index);
        return;
    }
    mph__tables_flush_cancel(w);
    mph__pw_drop_batches(w); /* their records are read again after the seek */
    rollback_shards(w);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (uint32_t i = 0; i < w->nslots; i++) {
        mph__slot_t *s = &w->slots[i];
        if (!s->used || s->txn_start < 0)
            continue;
        rd_kafka_topic_partition_list_add(l, app->topics[s->topic]->name, s->partition)->offset =
            s->txn_start;
        mph__acks_fini(&s->acks);
        mph__acks_init(&s->acks);
        s->last_offset = s->txn_start - 1;
        s->pause_floor = s->last_offset; /* the seek forgets the app position */
        s->txn_start = -1;
    }
    if (l->cnt > 0) {
        /* Infinite wait: librdkafka 2.0.2 reads the timeout of
         * rd_kafka_seek_partitions as microseconds (fixed upstream in 2.1.0,
         * librdkafka PR #4230), so 30000 meant 30 ms and a busy consumer
         * "timed out" with its seeks unconfirmed. A seek is local to the
         * client (the partition's fetcher resets), so it cannot hang on the
         * network. */
        rd_kafka_error_t *se = rd_kafka_seek_partitions(app->consumer, l, -1);
        bool bad = se != NULL;
        for (int i = 0; !bad && i < l->cnt; i++)
            bad = l->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR;
        if (bad && !seek_held(w, l)) {
            /* Going on would skip the aborted records: never. */
            w->failed = true;
            mph__app_fail(app, MPH_ERR_STATE, "worker %d: cannot seek back after an aborted "
                          "transaction: %s", w->index,
                          se ? rd_kafka_error_string(se) : rd_kafka_err2str(l->elems[0].err));
        }
        if (se)
            rd_kafka_error_destroy(se);
    }
    rd_kafka_topic_partition_list_destroy(l);
    w->txn_doomed = false;
    w->events_since_commit = 0;
    if (!w->abort_pending)
        mph__mon_add(&w->mon->txn_aborted, 1);
    if (w->failed)
        return;
    if (!w->abort_pending) {
        w->abort_deadline_ns = mph_clock_mono_ns() +
                               (int64_t)TXN_TIMEOUT_MS * TXN_RETRIES * 1000000;
        w->abort_replace_ns = mph_clock_mono_ns() + (int64_t)TXN_TIMEOUT_MS * 1000000;
    }
    w->abort_pending = true;
    w->abort_again = again;
    eos_abort_step(w);
}

/* True while a revocation the coordinator gave up waiting for has not
 * been handled here: the coordinator unassigned and rejoined meanwhile,
 * the group may have given these partitions to another member (which
 * restores their tables from the changelog and starts from the committed
 * offsets), and this consumer's group metadata names the new generation,
 * so the broker would take offsets sent with it. A commit now could land
 * after the new owner's restore: its changelog records would be missing
 * there while its offsets count (updates lost). Such a transaction is
 * aborted instead; the revocation, once handled, drops the shards. */
static bool eos_abandoned(const mph__worker_t *w)
{
    return ck_pr_load_64((uint64_t *)&w->revoke_abandoned) > w->revoke_seen;
}

/* send_offsets_to_transaction (l set, with cgmd) or commit_transaction,
 * retried while retriable: 0, 1 or -1 as txn_outcome. */
static int txn_call(mph__worker_t *w, const rd_kafka_topic_partition_list_t *l,
                    const rd_kafka_consumer_group_metadata_t *cgmd)
{
    rd_kafka_error_t *e = NULL;
    /* Short resumable steps: a session that timed out meanwhile (a broker
     * outage) makes the commit pointless; it is aborted at once instead
     * of blocking the worker, and with it the hand-back, for the whole
     * outage. */
    int64_t deadline = mph_clock_mono_ns() + (int64_t)TXN_TIMEOUT_MS * TXN_RETRIES * 1000000;
    for (;;) {
        if (l)
            e = rd_kafka_send_offsets_to_transaction(w->producer, l, cgmd, TXN_STEP_MS);
        else
            e = rd_kafka_commit_transaction(w->producer, TXN_STEP_MS);
        if (!e || !rd_kafka_error_is_retriable(e) || mph_clock_mono_ns() > deadline)
            break;
        if (rd_kafka_assignment_lost(w->app->consumer) || (l && eos_abandoned(w))) {
            rd_kafka_error_destroy(e);
            mph_log_limited(&w->log_lim, 2000, MPH_LOG_WARN,
                            "worker %d: the group lost this member's partitions during a "
                            "commit: the transaction is aborted", w->index);
            return 1;
        }
        rd_kafka_error_destroy(e);
    }
    return txn_outcome(w, e, l ? "send_offsets_to_transaction" : "commit_transaction");
}

/* Commits the open transaction (see above) and, with again, begins the
 * next one. False when it was aborted or the producer is fenced. */
static bool eos_commit(mph__worker_t *w, bool again)
{
    mph_app_t *app = w->app;
    eos_fatal(w); /* fenced: stops; failed otherwise: doomed, the abort replaces it */
    if (w->fenced)
        return false;
    if (w->abort_pending)
        return false; /* the worker loop finishes the abort first */
    if (w->txn_doomed || w->failed) {
        eos_abort(w, again && !w->failed);
        return false;
    }
    mph__pw_flush_batches(w); /* a batch never spans two transactions */
    if (w->failed) {
        eos_abort(w, false);
        return false;
    }
    int64_t t0 = mph_clock_mono_ns();
    mph__flush_state_t fs = mph__tables_flush_begin(w);
    eos_fatal(w);
    if (w->fenced)
        return false;
    if (fs == MPH__FLUSH_FAILED && w->persist_pending) {
        /* Still unwritable, and the dirty sets hold committed values that
         * a rollback would lose: keep the transaction open; nothing is
         * processed until the store takes them (worker loop). */
        mph_log_limited(&w->log_lim, 5000, MPH_LOG_WARN,
                        "worker %d: the state store still cannot be written; processing waits "
                        "until it takes the values already committed", w->index);
        return false;
    }
    if (fs == MPH__FLUSH_FAILED || w->fl_failed_begin || w->txn_doomed) {
        /* The state store cannot be written, or a changelog record could
         * not be produced: nothing of this interval may commit. */
        eos_abort(w, again);
        return false;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (uint32_t i = 0; i < w->nslots; i++) {
        mph__slot_t *s = &w->slots[i];
        if (s->used && s->txn_start >= 0)
            rd_kafka_topic_partition_list_add(l, app->topics[s->topic]->name, s->partition)
                ->offset = s->last_offset + 1;
    }
    if (l->cnt == 0 && fs == MPH__FLUSH_DONE && w->events_since_commit == 0) {
        rd_kafka_topic_partition_list_destroy(l);
        w->replacements = 0; /* the producer did not fail for an interval */
        return true; /* nothing processed, sent or dirty since the last commit */
    }
    /* The group metadata once, before looking for an abandoned revocation
     * (eos_abandoned): metadata taken after the coordinator rejoined would
     * name the new generation, and the abandonment is marked before that
     * rejoin. Retries send the same: a generation that moved on meanwhile
     * makes the broker refuse the offsets, and the transaction aborts. */
    rd_kafka_consumer_group_metadata_t *cgmd =
        l->cnt > 0 ? rd_kafka_consumer_group_metadata(app->consumer) : NULL;
    ck_pr_fence_load();
    int rc = 0;
    if (eos_abandoned(w)) {
        /* Punctuator outputs and changelog records without offsets too:
         * they would land after the next owner's restore. */
        mph_log_limited(&w->log_lim, 2000, MPH_LOG_WARN,
                        "worker %d: a revocation the coordinator gave up waiting for is not "
                        "handled yet; the transaction is aborted, not committed", w->index);
        rc = 1;
    } else if (l->cnt > 0) {
        rc = txn_call(w, l, cgmd);
    }
    if (cgmd)
        rd_kafka_consumer_group_metadata_destroy(cgmd);
    rd_kafka_topic_partition_list_destroy(l);
    if (rc == 0 && w->txn_doomed)
        rc = 1;
    if (rc == 0)
        rc = txn_call(w, NULL, NULL);
    if (rc == 0 && w->txn_doomed)
        rc = 1; /* (cannot happen: librdkafka refuses such a commit) */
    if (rc < 0)
        return false;
    if (rc > 0) {
        eos_abort(w, again);
        return false;
    }
    /* Committed: every record of it was acknowledged (commit flushes). */
    int64_t deadline = mph_clock_mono_ns() + 5000000000LL;
    while (w->cl_pending > 0 && mph_clock_mono_ns() < deadline)
        rd_kafka_poll(w->producer, 5);
    /* The changelog holds the committed values now; RocksDB must take
     * them before anything may roll the shards back (a rollback of a
     * RocksDB shard drops its dirty keys and reads the store again). */
    w->persist_pending = fs == MPH__FLUSH_PENDING && mph__tables_flush_poll(w) != MPH__FLUSH_DONE;
    if (w->persist_pending)
        mph_log_limited(&w->log_lim, 5000, MPH_LOG_WARN,
                        "worker %d: state store not written after a commit; processing waits "
                        "until it takes those values (written again with the next "
                        "transaction)", w->index);
    for (uint32_t i = 0; i < w->nslots; i++)
        if (w->slots[i].used)
            w->slots[i].txn_start = -1;
    w->npoison = 0;
    w->events_since_commit = 0;
    w->replacements = 0;
    mph__mon_add(&w->mon->txn_committed, 1);
    mph__histogram_record(&w->mon->txn_commit, (uint64_t)(mph_clock_mono_ns() - t0));
    /* For stats and the revoke/stop protocol only: the coordinator commits
     * nothing under exactly_once. */
    send_points(w, MSG_COMMIT, false, false);
    if (again)
        eos_begin(w);
    return true;
}

/* Answers revocation msg with reply (k partitions; NULL when it could
 * not be allocated), carrying every shard no slot uses any more; !durable
 * tells the coordinator to drop them. */
static void post_revoked(mph__worker_t *w, const mph__msg_t *msg, mph__msg_t *reply, size_t k,
                         bool durable)
{
    mph__shard_set_t *released = mph__tables_worker_release(w);
    if (reply) {
        reply->ptr = released;
        released = NULL;
        reply->n = k;
        reply->seq = msg->seq;
        reply->lost = !durable;
        if (mph__coord_post(w->app->coord, reply) != MPH_OK) {
            released = reply->ptr;
            mph__msg_free(reply);
            reply = NULL;
        }
    }
    if (!reply) {
        /* The coordinator waits for this answer before it hands any of
         * these partitions over again: stop rather than leave it waiting. */
        mph__tables_worker_take(w, released);
        w->failed = true;
        mph__app_fail(w->app, MPH_ERR_NOMEM,
                      "worker %d cannot hand back %zu partitions (out of memory or the "
                      "coordinator's mailbox is full); stopping",
                      w->index, msg->n);
    }
}

/* MSG_REVOKE under exactly_once: commit, then hand the shards back durable;
 * partitions lost to the group are aborted instead, and their shards go
 * back to be dropped (the next owner rebuilds them from the changelog);
 * the partitions kept carry on from their re-seek. */
static void eos_revoke(mph__worker_t *w, mph__msg_t *msg)
{
    /* A revocation the coordinator gave up waiting for counts as lost:
     * the group may have moved the partitions on (eos_abandoned). */
    ck_pr_fence_load();
    bool abandoned = msg->seq <= ck_pr_load_64(&w->revoke_abandoned);
    if (abandoned && !msg->lost)
        mph_log(MPH_LOG_WARN, "worker %d: handled a revocation after the coordinator stopped "
                "waiting for it: its open transaction is aborted and its shards dropped (the "
                "next owner restores them from the changelog)", w->index);
    bool lost = msg->lost || abandoned;
    bool durable = !lost && !w->fenced;
    mph__msg_t *reply = mph__msg_new(MSG_REVOKED, w->index, msg->n);
    size_t k = 0;
    if (durable) {
        /* Aborted instead (e.g. a doomed transaction): the shards are back
         * at their last commit, which is durable too. */
        eos_commit(w, true);
        durable = !w->fenced;
    }
    for (size_t i = 0; i < msg->n; i++) {
        int32_t sid = w->slot_of[msg->tp[i].topic][msg->tp[i].partition];
        if (sid < 0)
            continue;
        mph__slot_t *s = &w->slots[sid];
        if (reply) {
            reply->tp[k].topic = s->topic;
            reply->tp[k].partition = s->partition;
            reply->tp[k].offset = durable ? s->acks.commit : -1;
            k++;
        }
        slot_remove(w, (uint32_t)sid);
    }
    if (lost && !w->fenced) {
        if (msg->lost)
            mph_log(MPH_LOG_WARN, "partitions lost to the group (session timeout?): aborting "
                                  "the open transaction of worker %d", w->index);
        /* Every shard leaves and is rebuilt from the changelog. */
        w->persist_pending = false;
        eos_abort(w, true);
    }
    if (msg->seq > w->revoke_seen)
        w->revoke_seen = msg->seq;
    post_revoked(w, msg, reply, k, durable);
}

/* at_least_once, before a hand-back or stop makes table state durable:
 * pending batches are delivered, and every punctuator send is
 * acknowledged first (punctuate.c). */
static void punct_settle(mph__worker_t *w, int64_t deadline_ns)
{
    if (!w->pw)
        return;
    mph__pw_flush_batches(w);
    while (w->punct_inflight > 0 && mph_clock_mono_ns() < deadline_ns)
        serve_producer(w, 10);
}

/* The coordinator's deadline (msg->deadline_ns, on the same monotonic
 * clock) bounds the whole hand-back: a worker that got to the message late
 * has less time, not a fresh budget the coordinator does not wait for. */
static void handle_revoke(mph__worker_t *w, mph__msg_t *msg)
{
    if (w->app->eos) {
        eos_revoke(w, msg);
        return;
    }
    int64_t deadline = msg->deadline_ns ? msg->deadline_ns
                                        : mph_clock_mono_ns() +
                                              w->app->shutdown_timeout_ms * 1000000;
    /* A lost assignment belongs to someone else already: flushing our table
     * state now would overwrite the new owner's changelog records (a flush
     * under way is cancelled with the shards' release below). */
    if (msg->lost)
        mph_log(MPH_LOG_WARN, "partitions lost to the group (session timeout?): dropping "
                              "unflushed table state and commit points of %zu partitions",
                msg->n);
    else
        punct_settle(w, deadline);
    bool durable = !msg->lost && mph__tables_flush(w, deadline - mph_clock_mono_ns());
    mph__msg_t *reply = mph__msg_new(MSG_REVOKED, w->index, msg->n);
    size_t k = 0;
    for (size_t i = 0; i < msg->n; i++) {
        int32_t sid = w->slot_of[msg->tp[i].topic][msg->tp[i].partition];
        if (sid < 0)
            continue;
        mph__slot_t *s = &w->slots[sid];
        if (durable) {
            flush_until_idle(w, &s->acks, deadline);
            if (s->acks.inflight > 0)
                mph_log(MPH_LOG_WARN,
                        "%s [%d]: %llu sent records still unacknowledged at hand-over; their "
                        "sources will be processed again by the next owner",
                        w->app->topics[s->topic]->name, (int)s->partition,
                        (unsigned long long)s->acks.inflight);
        }
        if (reply) {
            reply->tp[k].topic = s->topic;
            reply->tp[k].partition = s->partition;
            /* Without durable state the source must not move on. */
            reply->tp[k].offset = durable ? s->acks.commit : -1;
            k++;
        }
        slot_remove(w, (uint32_t)sid);
    }
    if (!durable)
        purge_handed_back(w);
    /* Every released shard goes back to the coordinator, which owns the
     * record of where each shard is (table.c). Unflushed writes must not
     * survive into a later ownership: with lost set the coordinator drops
     * the shards, and the next owner rebuilds them from the changelog. */
    post_revoked(w, msg, reply, k, durable);
}

static void handle_stop(mph__worker_t *w)
{
    if (w->app->eos) {
        /* Commit what was processed (or abort it when it cannot commit)
         * and begin nothing more: no transaction stays open (I5). */
        if (!w->fenced)
            eos_commit(w, false);
        /* An abort the broker has not confirmed yet: finish it while the
         * stop allows, so that no transaction stays open. */
        int64_t deadline = mph_clock_mono_ns() + w->app->shutdown_timeout_ms * 1000000;
        w->abort_again = false;
        while (w->abort_pending && !w->failed && mph_clock_mono_ns() < deadline)
            eos_abort_step(w);
        report(w, MSG_STOPPED, true);
        w->exit = true;
        return;
    }
    int64_t deadline = mph_clock_mono_ns() + w->app->shutdown_timeout_ms * 1000000;
    punct_settle(w, deadline);
    bool durable = mph__tables_flush(w, w->app->shutdown_timeout_ms * 1000000);
    while ((rd_kafka_outq_len(w->producer) > 0 || w->repairing) &&
           mph_clock_mono_ns() < deadline)
        serve_producer(w, 10);
    if (durable) {
        report(w, MSG_STOPPED, true);
    } else {
        /* Table state could not be made durable: commit nothing more. */
        mph_log(MPH_LOG_WARN, "table state not durable at stop: nothing committed");
        mph__msg_t *m = mph__msg_new(MSG_STOPPED, w->index, 0);
        if (m && mph__coord_post(w->app->coord, m) != MPH_OK)
            mph__msg_free(m);
    }
    w->exit = true;
}

static void worker_inbox(mph__worker_t *w)
{
    mph__msg_t *msg;
    while ((msg = mph__mailbox_pop_sc(&w->inbox))) {
        switch (msg->kind) {
        case MSG_ASSIGN: {
            mph__tables_worker_take(w, msg->ptr);
            msg->ptr = NULL;
            for (size_t i = 0; i < msg->n; i++) {
                mph_err_t err = slot_add(w, msg->tp[i].topic, msg->tp[i].partition);
                if (err)
                    mph__app_fail(w->app, err, "worker %d cannot take %s [%d]: %s", w->index,
                                  w->app->topics[msg->tp[i].topic]->name,
                                  (int)msg->tp[i].partition, mph_err_str(err));
            }
            /* The coordinator forwards the partitions' records only after
             * this answer: none can reach q before its slot exists. */
            mph__msg_t *reply = mph__msg_new(MSG_ASSIGNED, w->index, 0);
            if (reply)
                reply->seq = msg->seq;
            if (!reply || mph__coord_post(w->app->coord, reply) != MPH_OK) {
                mph__msg_free(reply);
                mph__app_fail(w->app, MPH_ERR_NOMEM,
                              "worker %d cannot confirm its partitions (out of memory or the "
                              "coordinator's mailbox is full); stopping", w->index);
            }
            break;
        }
        case MSG_REVOKE:
            handle_revoke(w, msg);
            break;
        case MSG_STOP:
            handle_stop(w);
            break;
        case MSG_RECORD:
            if (!process(w, msg->ptr))
                rd_kafka_message_destroy(msg->ptr);
            break;
        case MSG_TABLE_GET:
            mph__tables_serve_get(w, msg->ptr);
            break;
        }
        mph__msg_free(msg);
        if (w->exit)
            return;
    }
}

/* Back-pressure: pauses the worker's partitions (librdkafka drops what it
 * queued for them and fetches again from the app position on resume), or
 * resumes those it paused. A partition none of whose records the worker
 * has taken since its assignment or last seek is not paused: librdkafka
 * has no app position for it then, and would resume after the records it
 * dropped (lost, with later records committed past them). */
static void pause_resume(mph__worker_t *w, bool pause)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (uint32_t i = 0; i < w->nslots; i++) {
        mph__slot_t *s = &w->slots[i];
        if (!s->used || (pause ? s->last_offset == s->pause_floor : !s->bp_paused))
            continue;
        s->bp_paused = pause;
        rd_kafka_topic_partition_list_add(l, w->app->topics[s->topic]->name, s->partition);
    }
    if (l->cnt > 0 && pause)
        rd_kafka_pause_partitions(w->app->consumer, l);
    else if (l->cnt > 0)
        rd_kafka_resume_partitions(w->app->consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
    w->paused = pause;
    if (pause)
        mph__mon_add(&w->mon->pauses, 1);
}

/* Drains q and the producer once. Returns the number of records handled. */
static int drain(mph__worker_t *w)
{
    serve_producer(w, 0);
    w->outq = (size_t)rd_kafka_outq_len(w->producer);
    ck_pr_store_64(&w->mon->producer_queued, (uint64_t)w->outq);
    if (MPH__MON_UNLIKELY(w->repairing))
        return 0; /* nothing new is produced until the held records went out */
    ssize_t n = rd_kafka_consume_batch_queue(w->q, 0, w->batch, (size_t)w->app->max_poll_batch);
    if (n < 0)
        return 0;
    for (ssize_t i = 0; i < n; i++) {
        if (!w->failed && !w->exit && process(w, w->batch[i]))
            continue; /* a batch holds it */
        rd_kafka_message_destroy(w->batch[i]);
    }
    /* librdkafka keeps the queue near stream_buffer_max (app.c sets its
     * prefetch bound); a pause, which drops the prefetched records, is the
     * safety net for a queue far above it (a kafka.queued.min.messages set
     * higher by hand, or huge fetch responses). */
    /* A drain that took fewer than max_poll_batch emptied q: nothing to
     * pause for, so the length (a lock) is read only when q may hold more
     * or a resume is due. */
    if (n < w->app->max_poll_batch && !w->paused)
        return (int)n;
    size_t qlen = rd_kafka_queue_length(w->q);
    size_t max = (size_t)w->app->stream_buffer_max;
    if (!w->paused && qlen > 4 * max)
        pause_resume(w, true);
    else if (w->paused && qlen < max)
        pause_resume(w, false);
    return (int)n;
}

static void on_wake(void *opaque, uint64_t tag)
{
    mph__worker_t *w = opaque;
    if (tag == TAG_PROD)
        w->pfd_armed = false; /* armed again when reports are waited for */
    else
        mph__uring_watch(w->ring, tag == TAG_KAFKA ? w->kfd : w->inbox.fd, tag);
}

/* Whether something waits for delivery reports now (see "Lazy delivery
 * reports" above). */
static bool dr_prompt(const mph__worker_t *w, bool held)
{
    return held || w->fl_active || w->cl_pending > 0 || w->repairing || w->paused ||
           w->abort_pending || w->persist_pending || w->app->eos;
}

static void *worker_main(void *arg)
{
    mph__worker_t *w = arg;
    char name[32];
    snprintf(name, sizeof name, "worker %d", w->index);
    mph_log_set_thread_name(name);
    /* The kernel's name too (top -H, /proc/<pid>/task/<tid>/comm). */
    snprintf(name, sizeof name, "mph-w%d", w->index);
    pthread_setname_np(pthread_self(), name);
    if (w->app->cpus) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(w->app->cpus[w->index], &set);
        if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0)
            mph_log(MPH_LOG_WARN, "cannot pin to cpu %d", w->app->cpus[w->index]);
    }
    w->ev.worker = w;
    mph__uring_watch(w->ring, w->kfd, TAG_KAFKA);
    mph__uring_watch(w->ring, w->inbox.fd, TAG_INBOX);
    mph__uring_watch(w->ring, w->pfd, TAG_PROD);
    w->pfd_armed = true;
    int64_t interval_ns = w->app->commit_interval_ms * 1000000;
    w->next_commit_ns = mph_clock_mono_ns() + interval_ns;

    /* A worker that did not run for half a session timeout (the process was
     * stopped, the machine froze) may have lost its partitions without
     * knowing yet: it commits and flushes nothing until the group had time
     * to tell it, so a zombie never writes table state over a new owner's. */
    int64_t session_ns = mph_conf_get_int(w->app->conf, "session_timeout_ms", 10000) * 1000000;
    int64_t last_ns = mph_clock_mono_ns(), suspect_until = 0;
    /* busy_poll_us: after the last record (and after the start), keep
     * polling (timeout 0) this long before sleeping in the kernel again;
     * 0 never spins. */
    int64_t busy_ns = mph_conf_get_int(w->app->conf, "busy_poll_us", 0) * 1000;
    int64_t last_work_ns = last_ns;

    while (!w->exit) {
        worker_inbox(w);
        if (w->exit)
            break;
        int64_t before = mph_clock_mono_ns();
        if (before - last_ns > session_ns / 2) {
            suspect_until = before + 2 * session_ns;
            mph_log(MPH_LOG_WARN,
                    "worker did not run for %lld ms: no commit until the group confirms its "
                    "partitions",
                    (long long)((before - last_ns) / 1000000));
        }
        last_ns = before;
        int n = 0;
        if (MPH__MON_UNLIKELY(w->abort_pending))
            eos_abort_step(w); /* nothing is processed until it is done */
        else if (MPH__MON_UNLIKELY(w->persist_pending))
            rd_kafka_poll(w->producer, 0); /* the commit timer retries the store */
        else
            n = drain(w);
        int64_t now = mph_clock_mono_ns();
        /* Punctuators, idle window closing and batches due by now (their
         * next due time bounds the wait below). */
        int64_t pdue = INT64_MAX;
        if (MPH__MON_UNLIKELY(w->pw != NULL) && !w->abort_pending && !w->persist_pending)
            pdue = mph__pw_run(w, now);
        bool suspect = now < suspect_until || rd_kafka_assignment_lost(w->app->consumer);
        if (!suspect && !w->app->eos)
            flush_progress(w);
        bool held = false;
        if (!suspect &&
            (now >= w->next_commit_ns || w->events_since_commit >= w->app->commit_every)) {
            if (MPH__MON_UNLIKELY(w->pw != NULL) && !w->app->eos) {
                /* Batches never span a commit; a table flush waits for
                 * punctuator sends (punctuate.c), punctuators paused. */
                mph__pw_flush_batches(w);
                held = w->punct_inflight > 0 && w->app->ntables > 0;
                mph__pw_hold(w, held);
            }
            if (MPH__MON_UNLIKELY(w->app->eos))
                eos_commit(w, true);
            else if (!held)
                report(w, MSG_COMMIT, now >= w->next_commit_ns && commit_failed_since(w));
            if (!held) {
                w->events_since_commit = 0;
                /* A transaction's commit takes round trips: the next
                 * interval counts from its end, so processing gets the
                 * whole interval. */
                w->next_commit_ns = (w->app->eos ? mph_clock_mono_ns() : now) + interval_ns;
            }
        }
        last_ns = mph_clock_mono_ns(); /* long drains and flushes are not stalls */
        if (n >= w->app->max_poll_batch)
            continue; /* more is waiting: do not sleep */
        if (n > 0)
            last_work_ns = now;
        bool spin = busy_ns > 0 && now - last_work_ns < busy_ns;
        int64_t wait = w->next_commit_ns - now;
        if (MPH__MON_UNLIKELY(held))
            wait = 1000000; /* the commit waits for punctuator sends' reports */
        else if (pdue != INT64_MAX && pdue - now < wait)
            wait = pdue - now;
        if (dr_prompt(w, held)) {
            if (!w->pfd_armed && mph__uring_watch(w->ring, w->pfd, TAG_PROD) == MPH_OK)
                w->pfd_armed = true;
        } else if (w->outq > 0 && wait > DR_LAZY_NS) {
            wait = DR_LAZY_NS;
        }
        if (wait > 100000000)
            wait = 100000000;
        if (wait < 1000)
            wait = 1000;
        /* n < max_poll_batch: q was empty when drained. What came since
         * wrote kfd (librdkafka writes again once a queue was served), so
         * the armed read completes at once and the wait does not sleep; no
         * second pass over empty queues first. */
        int rc = mph__uring_wait(w->ring, spin ? 0 : wait, on_wake, w);
        if (rc < 0) {
            mph__app_fail(w->app, rc, "worker %d: %s wait failed", w->index,
                          mph__uring_polls(w->ring) ? "ppoll" : "io_uring");
            break;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* lifecycle                                                          */

mph__worker_t *mph__worker_new(mph_app_t *app, int index, char *errstr, size_t errstr_size)
{
    mph__worker_t *w = calloc(1, sizeof *w);
    if (!w)
        goto fail_alloc;
    w->app = app;
    w->index = index;
    w->kfd = -1;
    w->pfd = -1;
    w->inbox.fd = -1;
    w->batch = calloc((size_t)app->max_poll_batch, sizeof *w->batch);
    w->mon = mph__monitor_new(app, index, app->ntables);
    w->json = mph_json_parser_new(0, errstr, errstr_size);
    w->records = calloc(app->ntopics ? app->ntopics : 1, sizeof *w->records);
    if (!w->json || !w->records)
        goto fail_quiet;
    w->slot_of = calloc(app->ntopics ? app->ntopics : 1, sizeof *w->slot_of);
    w->rkt_cache = calloc(app->ntopics ? app->ntopics : 1, sizeof *w->rkt_cache);
    w->out_rkt = calloc(app->ntopics ? app->ntopics : 1, sizeof *w->out_rkt);
    if (!w->batch || !w->slot_of || !w->rkt_cache || !w->out_rkt || !w->mon)
        goto fail_w;
    for (size_t i = 0; i < app->ntopics; i++) {
        int n = app->topics[i]->partitions > 0 ? app->topics[i]->partitions : 1;
        w->slot_of[i] = malloc((size_t)n * sizeof **w->slot_of);
        if (!w->slot_of[i])
            goto fail_w;
        for (int p = 0; p < n; p++)
            w->slot_of[i][p] = -1;
    }
    if (mph__mailbox_init(&w->inbox, 1024) != MPH_OK)
        goto fail_w;
    w->kfd = mph__eventfd_new();
    w->pfd = mph__eventfd_new();
    if (w->kfd < 0 || w->pfd < 0)
        goto fail_w;
    char fallback[160];
    w->ring = mph__uring_new(64, mph__wait_mode_parse(mph_conf_get(app->conf, "io_wait")), fallback,
                             sizeof fallback, errstr, errstr_size);
    if (!w->ring)
        goto fail_quiet;
    if (fallback[0] && index == 0)
        mph_log(MPH_LOG_WARN, "io_wait=auto: %s; workers wait in ppoll instead of io_uring",
                fallback);
    if (mph__tables_worker_open(w, errstr, errstr_size) != MPH_OK)
        goto fail_quiet;
    if (mph__pw_open(w, errstr, errstr_size) != MPH_OK)
        goto fail_quiet;

    if (producer_open(w, true, errstr, errstr_size) != MPH_OK)
        goto fail_quiet;
    w->q = rd_kafka_queue_new(app->consumer);
    static const uint64_t one = 1;
    rd_kafka_queue_io_event_enable(w->q, w->kfd, &one, sizeof one);
    return w;

fail_w:
    snprintf(errstr, errstr_size, "worker %d: out of memory or file descriptors", index);
fail_quiet:
    mph__worker_destroy(w);
    return NULL;
fail_alloc:
    snprintf(errstr, errstr_size, "out of memory");
    return NULL;
}

mph_err_t mph__worker_start(mph__worker_t *w, char *errstr, size_t errstr_size)
{
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc) {
        snprintf(errstr, errstr_size, "cannot start worker %d: %s", w->index, strerror(rc));
        return MPH_ERR_NOMEM;
    }
    w->started = true;
    return MPH_OK;
}

void mph__worker_join(mph__worker_t *w)
{
    if (w && w->started) {
        pthread_join(w->thread, NULL);
        w->started = false;
    }
}

mph_err_t mph__worker_post(mph__worker_t *w, void *msg)
{
    return mph__mailbox_push_mpsc(&w->inbox, msg);
}

void mph__worker_destroy(mph__worker_t *w)
{
    if (!w)
        return;
    mph__worker_join(w);
    mph__msg_t *msg;
    if (w->inbox.buf) {
        while ((msg = mph__mailbox_pop_sc(&w->inbox))) {
            if (msg->kind == MSG_RECORD)
                rd_kafka_message_destroy(msg->ptr);
            else if (msg->kind == MSG_TABLE_GET)
                mph__tables_serve_get(w, msg->ptr);
            else if (msg->kind == MSG_ASSIGN)
                mph__tables_worker_take(w, msg->ptr);
            mph__msg_free(msg);
        }
    }
    if (w->q) {
        rd_kafka_queue_io_event_enable(w->q, -1, NULL, 0);
        rd_kafka_queue_destroy(w->q);
    }
    out_topics_close(w);
    free(w->out_rkt);
    producer_close(w->producer, w->prod_main);
    mph__pw_close(w); /* after the producer: its last reports are served */
    for (size_t i = 0; i < w->nheld; i++)
        held_free(&w->held[i]);
    free(w->held);
    free(w->broken);
    free(w->poison);
    for (uint32_t i = 0; i < w->nslots; i++)
        if (w->slots[i].used)
            mph__acks_fini(&w->slots[i].acks);
    free(w->slots);
    mph__tables_worker_close(w);
    if (w->slot_of)
        for (size_t i = 0; i < w->app->ntopics; i++)
            free(w->slot_of[i]);
    free(w->slot_of);
    free(w->rkt_cache);
    free(w->batch);
    if (w->records)
        for (size_t i = 0; i < w->app->ntopics; i++)
            mph_record_destroy(w->records[i]);
    free(w->records);
    mph_json_parser_destroy(w->json);
    mph__monitor_destroy(w->mon);
    mph__uring_destroy(w->ring);
    if (w->kfd >= 0)
        close(w->kfd);
    if (w->pfd >= 0)
        close(w->pfd);
    if (w->inbox.buf)
        mph__mailbox_fini(&w->inbox);
    free(w);
}
