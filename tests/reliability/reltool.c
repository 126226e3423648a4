/*
 * reltool — the Kafka side of mephisto's reliability suite: the driver that
 * writes self-describing input, the reader that dumps topics for the
 * checker, committed offsets, admin operations (create/delete topics,
 * delete records) and offline reads of a worker's RocksDB table shards.
 *
 * DESIGN. The suite's logic (scenarios, fault injection, invariants) lives
 * in tests/reliability/run (Python, standard library only). Everything that
 * needs a Kafka client or mephisto's store is here, written against
 * librdkafka directly (not through mephisto), so the checker never relies
 * on the engine it checks: records are produced with the Java client's
 * murmur2 partitioner, topics are read back partition by partition up to
 * the high watermark taken at the start of the dump, and committed offsets
 * are read with a consumer that never joins the group. The one use of
 * mephisto is `table`, which reads a stopped worker's shards with the
 * public offline API (mph_table_local_foreach).
 *
 * Output is line-oriented text meant for a program: tab-separated fields,
 * bytes in hex, "-" for null. The run script compiles this file itself:
 *   cc -O2 reltool.c -I include -L build -lmephisto $(pkg-config --cflags
 * --libs rdkafka)
 *
 * Commands (all take --brokers HOST:PORT):
 *   produce  --topic T --rate R --seconds S --keys K --seed N --state FILE
 *            [--bad-pct P] [--oversized N]
 *            [--skew-pct P --window-ms W --grace-ms G --future-ms F
 *             --event-step-ms E]
 *            writes R records/s for S seconds; the state file keeps the next
 *            id and every key's next sequence number between runs. Prints
 *            "produced N bad B failed F" at the end.
 *            With --skew-pct (event-time skew, reliability scenario 10; one
 *            run per topic): "ts" is an event clock starting an hour before
 *            now and advancing E ms per record, and P% of the records of a
 *            partition that has a stream time (the largest valid "ts"
 *            written to it: the driver knows each key's partition with
 *            murmur2) get, in turn: late (older than stream time - G - W:
 *            alternately up to 4 W more, and 1-2 hours, which is before
 *            the partition's first window),
 *            late by 1 ms (the last ms of the newest window whose end + G <=
 *            stream time), on time by 0 ms (the first ms after it),
 *            out of order within the grace (stream time - 1 .. - G + 1),
 *            far future (now + F .. now + 2F) and negative. At the end,
 *            one record per partition at the largest stream time + W + G
 *            closes every window that holds data. Also prints
 *            "skew late L late1 A ontime0 B ingrace C future D negative X
 *            final Y".
 *   dump     --topic T  every record: partition offset timestamp key value
 *            headers (name=hex,... or -), up to the high watermarks taken at
 *            start; "# partitions N" first, "# wm p low high" per partition.
 *   committed --group G --topic T   "p committed low high" per partition
 *   create   --topic T --partitions N [--config k=v]...
 *   delete   --topic T
 *   delete-records --topic T [--partition P] [--offset O]  (default: every
 *            partition, up to its high watermark)
 *   truncate --topic T  delete-records for compacted topics too: switches
 *            cleanup.policy to compact,delete, deletes every record below
 *            the high watermarks, restores the topic's configs; prints
 *            "p low high" per partition
 *   group    --group G   "state S members N"
 *   table    --datadir D --app-id A --table T   "p key value" per row
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <mephisto.h>

#define MAX_CONFIGS 16
#define TIMEOUT_MS  15000

typedef struct opts {
    const char *brokers, *topic, *group, *state, *datadir, *app_id, *table;
    double rate, seconds, bad_pct, skew_pct;
    int keys, partitions, partition, oversized;
    int64_t window_ms, grace_ms, future_ms, event_step_ms;
    uint64_t seed;
    int64_t offset;
    const char *configs[MAX_CONFIGS];
    int nconfigs;
} opts_t;

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("reltool: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void set(rd_kafka_conf_t *c, const char *k, const char *v)
{
    char err[512];
    if (rd_kafka_conf_set(c, k, v, err, sizeof err) != RD_KAFKA_CONF_OK)
        die("%s=%s: %s", k, v, err);
}

/* The settings every client of this tool has. */
static rd_kafka_conf_t *client_conf(const opts_t *o)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    set(c, "bootstrap.servers", o->brokers);
    set(c, "log_level", "3");
    return c;
}

static rd_kafka_t *client_new(rd_kafka_type_t type, rd_kafka_conf_t *c)
{
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(type, c, err, sizeof err);
    if (!rk)
        die("client: %s", err);
    return rk;
}

static rd_kafka_t *client(const opts_t *o, rd_kafka_type_t type,
                          const char *group)
{
    rd_kafka_conf_t *c = client_conf(o);
    if (type == RD_KAFKA_PRODUCER) {
        set(c, "enable.idempotence", "true");
        set(c, "partitioner", "murmur2_random");
        set(c, "linger.ms", "5");
        set(c, "message.max.bytes", "10000000");
        set(c, "message.timeout.ms", "180000");
    } else {
        set(c, "group.id", group ? group : "reltool-reader");
        set(c, "enable.auto.commit", "false");
        set(c, "enable.partition.eof", "true");
        set(c, "auto.offset.reset", "earliest");
        set(c, "fetch.message.max.bytes", "10485760");
        set(c, "receive.message.max.bytes", "104857600");
    }
    return client_new(type, c);
}

/* A consumer that only asks for watermarks: read_uncommitted, so that
 * its high watermarks are the logs' ends, not the last stable offsets. */
static rd_kafka_t *ends_client(const opts_t *o)
{
    rd_kafka_conf_t *c = client_conf(o);
    set(c, "group.id", "reltool-ends");
    set(c, "isolation.level", "read_uncommitted");
    return client_new(RD_KAFKA_CONSUMER, c);
}

static void hex(FILE *out, const void *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *b = p;
    if (!p) {
        fputc('-', out);
        return;
    }
    if (n == 0) {
        fputs("=", out); /* empty, not null */
        return;
    }
    for (size_t i = 0; i < n; i++) {
        fputc(digits[b[i] >> 4], out);
        fputc(digits[b[i] & 15], out);
    }
}

static int partitions_of(rd_kafka_t *rk, const char *topic)
{
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR__TIMED_OUT;
    int n = -1;
    for (int attempt = 0; attempt < 10 && n < 0; attempt++) {
        e = rd_kafka_metadata(rk, 0, t, &md, TIMEOUT_MS);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (md->topic_cnt == 1 &&
                md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
                n = md->topics[0].partition_cnt;
            else if (md->topic_cnt == 1)
                e = md->topics[0].err;
            rd_kafka_metadata_destroy(md);
        }
        if (n < 0 && e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
            break;
        if (n < 0)
            usleep(500 * 1000);
    }
    rd_kafka_topic_destroy(t);
    if (n < 0)
        die("topic %s: %s", topic, rd_kafka_err2str(e));
    return n;
}

static void watermarks(rd_kafka_t *rk, const char *topic, int p, int64_t *lo,
                       int64_t *hi)
{
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int attempt = 0; attempt < 10; attempt++) {
        e = rd_kafka_query_watermark_offsets(rk, topic, p, lo, hi, TIMEOUT_MS);
        if (!e)
            return;
        usleep(500 * 1000);
    }
    die("watermarks %s [%d]: %s", topic, p, rd_kafka_err2str(e));
}

/* ------------------------------------------------------------------ */
/* produce                                                             */

typedef struct driver_state {
    int64_t next_id;
    int nkeys;
    int64_t *next_seq;
} driver_state_t;

static void state_load(driver_state_t *s, const char *path, int nkeys)
{
    s->next_id = 1;
    s->nkeys = nkeys;
    s->next_seq = calloc((size_t)nkeys, sizeof *s->next_seq);
    for (int k = 0; k < nkeys; k++)
        s->next_seq[k] = 1;
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f)
        return;
    long long id;
    if (fscanf(f, "next_id %lld", &id) == 1)
        s->next_id = id;
    int k;
    long long seq;
    while (fscanf(f, " k%d %lld", &k, &seq) == 2)
        if (k >= 0 && k < nkeys)
            s->next_seq[k] = seq;
    fclose(f);
}

static void state_save(const driver_state_t *s, const char *path)
{
    if (!path)
        return;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        die("%s: %s", tmp, strerror(errno));
    fprintf(f, "next_id %lld\n", (long long)s->next_id);
    for (int k = 0; k < s->nkeys; k++)
        fprintf(f, "k%d %lld\n", k, (long long)s->next_seq[k]);
    fclose(f);
    if (rename(tmp, path) != 0)
        die("%s: %s", path, strerror(errno));
}

static int delivered, failed;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err) {
        failed++;
        if (failed <= 5)
            fprintf(stderr, "reltool: delivery failed: %s\n",
                    rd_kafka_err2str(m->err));
    } else {
        delivered++;
    }
}

static volatile sig_atomic_t stop_asked;

static void on_term(int sig)
{
    (void)sig;
    stop_asked = 1;
}

/* Kafka's murmur2 (the Java client's Utils.murmur2), for the partition of
 * a key; the checker verifies every input record is in this partition. */
static uint32_t murmur2(const void *key, size_t len)
{
    const uint32_t m = 0x5bd1e995;
    const unsigned char *d = key;
    uint32_t h = 0x9747b28cU ^ (uint32_t)len;
    size_t n4 = len / 4;
    for (size_t i = 0; i < n4; i++) {
        uint32_t k = (uint32_t)d[4 * i] | (uint32_t)d[4 * i + 1] << 8 |
                     (uint32_t)d[4 * i + 2] << 16 | (uint32_t)d[4 * i + 3] << 24;
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    const unsigned char *t = d + n4 * 4;
    switch (len & 3) {
    case 3:
        h ^= (uint32_t)t[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)t[1] << 8;
        /* fall through */
    case 1:
        h ^= t[0];
        h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

static int partition_of_key(const char *key, int n)
{
    return (int)((murmur2(key, strlen(key)) & 0x7fffffffU) % (uint32_t)n);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Event-time skew (--skew-pct): the driver's view of each partition's
 * stream time, as the engine computes it. */
enum { SKEW_LATE, SKEW_LATE1, SKEW_ONTIME0, SKEW_INGRACE, SKEW_FUTURE,
       SKEW_NEGATIVE, SKEW_KINDS };
static const char *const skew_names[SKEW_KINDS] = {
    "late", "late1", "ontime0", "ingrace", "future", "negative"};

typedef struct skew {
    int nparts;
    int64_t clock;       /* the event clock of on-time records */
    int64_t *st;         /* per partition; INT64_MIN before its first */
    int64_t n;           /* skewed records so far (picks the next kind) */
    int64_t count[SKEW_KINDS];
} skew_t;

/* The "ts" of the next record to partition p (and updates stream time). */
static int64_t skew_ts(const opts_t *o, skew_t *sk, int p, double roll,
                       uint64_t *rng)
{
    int64_t st = sk->st[p], w = o->window_ms, g = o->grace_ms, ts;
    sk->clock += o->event_step_ms;
    if (roll >= o->skew_pct || st == INT64_MIN) {
        ts = sk->clock;
    } else {
        int kind = (int)(sk->n++ % SKEW_KINDS);
        /* the end of the newest window that is closed at stream time st */
        int64_t edge = floor_div(st - g, w) * w;
        sk->count[kind]++;
        switch (kind) {
        case SKEW_LATE:
            /* alternately a few windows back, and 1-2 hours back: before
             * the partition's first window, one that never held data */
            if (sk->count[kind] % 2)
                ts = st - g - w - (int64_t)(splitmix(rng) % (uint64_t)(4 * w));
            else
                ts = st - 3600 * 1000 -
                     (int64_t)(splitmix(rng) % (3600 * 1000));
            break;
        case SKEW_LATE1:
            ts = edge - 1;
            break;
        case SKEW_ONTIME0:
            ts = edge;
            break;
        case SKEW_INGRACE:
            ts = g > 1 ? st - 1 - (int64_t)(splitmix(rng) % (uint64_t)(g - 1))
                       : st;
            break;
        case SKEW_FUTURE:
            return now_ms() + o->future_ms +
                   (int64_t)(splitmix(rng) % (uint64_t)o->future_ms);
        default:
            return -1 - (int64_t)(splitmix(rng) % 1000000000);
        }
    }
    if (ts > sk->st[p])
        sk->st[p] = ts;
    return ts;
}

/* One bad record of kind `kind` into key/val (each may come back NULL). */
static void make_bad(int kind, int64_t id, int key, char *kbuf, size_t ksz,
                     char *vbuf, size_t vsz, const char **k, size_t *klen,
                     const char **v, size_t *vlen)
{
    snprintf(kbuf, ksz, "k%d", key);
    *k = kbuf;
    *klen = strlen(kbuf);
    int64_t ts = now_ms();
    switch (kind) {
    case 0: /* malformed JSON */
        snprintf(vbuf, vsz, "{\"id\":%lld,\"key\":\"k%d\",\"seq\":oops}",
                 (long long)id, key);
        break;
    case 1: /* invalid UTF-8 inside a string */
        snprintf(vbuf, vsz,
                 "{\"id\":%lld,\"key\":\"k%d\xff\xfe\",\"seq\":-1,\"ts\":%lld}",
                 (long long)id, key, (long long)ts);
        break;
    case 2: { /* truncated: a valid document cut in the middle */
        int n = snprintf(vbuf, vsz,
                         "{\"id\":%lld,\"key\":\"k%d\",\"seq\":-1,\"ts\":%lld}",
                         (long long)id, key, (long long)ts);
        vbuf[n / 2] = '\0';
        break;
    }
    case 3: /* null value */
        *v = NULL;
        *vlen = 0;
        return;
    case 4: /* null key, valid value */
        *k = NULL;
        *klen = 0;
        snprintf(vbuf, vsz, "{\"id\":%lld,\"key\":null,\"seq\":-1,\"ts\":%lld}",
                 (long long)id, (long long)ts);
        break;
    default: /* key that is not UTF-8, valid value */
        snprintf(kbuf, ksz, "k%d\xc3\x28", key);
        *klen = strlen(kbuf);
        snprintf(vbuf, vsz,
                 "{\"id\":%lld,\"key\":\"bad\",\"seq\":-1,\"ts\":%lld}",
                 (long long)id, (long long)ts);
        break;
    }
    *v = vbuf;
    *vlen = strlen(vbuf);
}

static void produce(const opts_t *o)
{
    if (!o->topic || o->rate <= 0 || o->seconds < 0 || o->keys <= 0)
        die("produce: needs --topic, --rate > 0, --seconds >= 0, --keys > 0");
    driver_state_t st;
    state_load(&st, o->state, o->keys);
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    set(c, "bootstrap.servers", o->brokers);
    set(c, "log_level", "3");
    set(c, "enable.idempotence", "true");
    set(c, "partitioner", "murmur2_random");
    set(c, "linger.ms", "5");
    set(c, "message.max.bytes", "10000000");
    set(c, "message.timeout.ms", "180000");
    rd_kafka_conf_set_dr_msg_cb(c, dr_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
    if (!rk)
        die("producer: %s", err);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);

    skew_t sk = {0};
    if (o->skew_pct > 0) {
        if (o->window_ms <= 0 || o->grace_ms < 0 || o->future_ms <= 0 ||
            o->event_step_ms <= 0)
            die("produce: --skew-pct needs --window-ms > 0, --grace-ms >= 0, "
                "--future-ms > 0 and --event-step-ms > 0");
        sk.nparts = partitions_of(rk, o->topic);
        sk.st = malloc((size_t)sk.nparts * sizeof *sk.st);
        for (int p = 0; p < sk.nparts; p++)
            sk.st[p] = INT64_MIN;
        sk.clock = now_ms() - 3600 * 1000;
    }
    uint64_t rng = o->seed * 0x2545f4914f6cdd1dULL + 1;
    int64_t total = (int64_t)(o->rate * o->seconds + 0.5);
    int64_t bad = 0, big = 0;
    /* Oversized records are spread over the run: one every total/(n+1). */
    int64_t big_every = o->oversized > 0 ? total / (o->oversized + 1) : 0;
    size_t bigsz = 1200 * 1000;
    char *bigbuf = o->oversized > 0 ? malloc(bigsz + 1) : NULL;
    double t0 = mono_s();
    int64_t i;
    for (i = 0; i < total && !stop_asked; i++) {
        double due = t0 + (double)i / o->rate;
        for (;;) {
            double wait = due - mono_s();
            if (wait <= 0)
                break;
            rd_kafka_poll(rk, wait > 0.01 ? 10 : (int)(wait * 1000));
        }
        int key = (int)(splitmix(&rng) % (uint64_t)o->keys);
        char kbuf[64], vbuf[256];
        const char *k = kbuf, *v = vbuf;
        size_t klen, vlen;
        int64_t id = st.next_id++;
        double roll = (double)(splitmix(&rng) % 1000000) / 10000.0; /* 0..100 */
        if (big_every > 0 && big < o->oversized && i > 0 &&
            i % big_every == 0) {
            /* Oversized and malformed: a JSON prefix padded past the
             * producer's default message.max.bytes, never closed. */
            snprintf(kbuf, sizeof kbuf, "k%d", key);
            klen = strlen(kbuf);
            int n = snprintf(bigbuf, bigsz,
                             "{\"id\":%lld,\"key\":\"k%d\",\"pad\":\"",
                             (long long)id, key);
            memset(bigbuf + n, 'x', bigsz - (size_t)n);
            v = bigbuf;
            vlen = bigsz;
            big++;
            bad++;
        } else if (roll < o->bad_pct) {
            make_bad((int)(bad % 6), id, key, kbuf, sizeof kbuf, vbuf,
                     sizeof vbuf, &k, &klen, &v, &vlen);
            bad++;
        } else {
            snprintf(kbuf, sizeof kbuf, "k%d", key);
            klen = strlen(kbuf);
            int64_t ts =
                o->skew_pct > 0
                    ? skew_ts(o, &sk, partition_of_key(kbuf, sk.nparts), roll,
                              &rng)
                    : now_ms();
            vlen = (size_t)snprintf(
                vbuf, sizeof vbuf,
                "{\"id\":%lld,\"key\":\"k%d\",\"seq\":%lld,\"ts\":%lld}",
                (long long)id, key, (long long)st.next_seq[key]++,
                (long long)ts);
        }
        for (;;) {
            rd_kafka_resp_err_t e = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(o->topic), RD_KAFKA_V_KEY(k, klen),
                RD_KAFKA_V_VALUE((void *)v, vlen),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
                break;
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                die("produce: %s", rd_kafka_err2str(e));
            rd_kafka_poll(rk, 100);
        }
        rd_kafka_poll(rk, 0);
    }
    int64_t finals = 0;
    if (o->skew_pct > 0) {
        /* Closing records: stream time moves only with a partition's own
         * records, so each partition gets one far enough ahead to close
         * every window that holds data. */
        int64_t top = INT64_MIN;
        for (int p = 0; p < sk.nparts; p++)
            if (sk.st[p] > top)
                top = sk.st[p];
        if (top == INT64_MIN)
            top = sk.clock;
        for (int p = 0; p < sk.nparts; p++) {
            int key = -1;
            char kbuf[64], vbuf[256];
            for (int k = 0; k < o->keys && key < 0; k++) {
                snprintf(kbuf, sizeof kbuf, "k%d", k);
                if (partition_of_key(kbuf, sk.nparts) == p)
                    key = k;
            }
            if (key < 0)
                die("produce: no key of k0..k%d is in partition %d: use more "
                    "--keys", o->keys - 1, p);
            int vl = snprintf(
                vbuf, sizeof vbuf,
                "{\"id\":%lld,\"key\":\"k%d\",\"seq\":%lld,\"ts\":%lld}",
                (long long)st.next_id++, key, (long long)st.next_seq[key]++,
                (long long)(top + o->window_ms + o->grace_ms));
            for (;;) {
                rd_kafka_resp_err_t e = rd_kafka_producev(
                    rk, RD_KAFKA_V_TOPIC(o->topic),
                    RD_KAFKA_V_KEY(kbuf, strlen(kbuf)),
                    RD_KAFKA_V_VALUE(vbuf, (size_t)vl),
                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
                if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
                    break;
                if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                    die("produce: %s", rd_kafka_err2str(e));
                rd_kafka_poll(rk, 100);
            }
            finals++;
        }
    }
    state_save(&st, o->state); /* before the flush: ids are never reused */
    rd_kafka_resp_err_t fe = rd_kafka_flush(rk, 200 * 1000);
    printf("produced %lld bad %lld failed %d delivered %d%s\n",
           (long long)(i + finals), (long long)bad, failed, delivered,
           fe ? " (flush timed out)" : "");
    if (o->skew_pct > 0) {
        printf("skew");
        for (int k = 0; k < SKEW_KINDS; k++)
            printf(" %s %lld", skew_names[k], (long long)sk.count[k]);
        printf(" final %lld\n", (long long)finals);
        free(sk.st);
    }
    rd_kafka_destroy(rk);
    free(bigbuf);
    free(st.next_seq);
    exit(failed || fe ? 1 : 0);
}

/* ------------------------------------------------------------------ */
/* dump                                                                */

static void dump(const opts_t *o)
{
    if (!o->topic)
        die("dump: needs --topic");
    rd_kafka_t *rk = client(o, RD_KAFKA_CONSUMER, NULL);
    /* The ends are the high watermarks, read through a read_uncommitted
     * client: the reader itself (read_committed, librdkafka's default)
     * would answer the last stable offsets, which stop before a
     * transaction still open — e.g. one a worker killed with -9 left and
     * that the broker aborts only after transaction.timeout.ms — and the
     * committed records after it would be missing from the dump. So the
     * dump waits until every transaction open when it started ended. */
    rd_kafka_t *ends = ends_client(o);
    int n = partitions_of(rk, o->topic);
    int64_t *lo = calloc((size_t)n, sizeof *lo),
            *hi = calloc((size_t)n, sizeof *hi);
    bool *done = calloc((size_t)n, sizeof *done);
    int remaining = n;
    printf("# partitions %d\n", n);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int p = 0; p < n; p++) {
        int64_t slo, stable;
        watermarks(ends, o->topic, p, &lo[p], &hi[p]);
        watermarks(rk, o->topic, p, &slo, &stable); /* the reader learns the leader */
        printf("# wm %d %lld %lld\n", p, (long long)lo[p], (long long)hi[p]);
        if (hi[p] <= lo[p]) {
            done[p] = true;
            remaining--;
        }
        rd_kafka_topic_partition_list_add(l, o->topic, p)->offset = lo[p];
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, l);
    if (e)
        die("assign: %s", rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
    /* An open transaction ends within its timeout (60 s by default) and
     * the broker's abort check (10 s) after it. */
    double deadline = mono_s() + 150;
    while (remaining > 0) {
        if (mono_s() > deadline)
            die("dump %s: timed out with %d partitions unread", o->topic,
                remaining);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 1000);
        if (!m)
            continue;
        int p = m->partition;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "reltool: dump %s: %s\n", o->topic,
                        rd_kafka_message_errstr(m));
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && p >= 0 && p < n &&
                !done[p] && m->offset >= hi[p]) {
                done[p] = true;
                remaining--;
            }
            rd_kafka_message_destroy(m);
            continue;
        }
        if (p < 0 || p >= n || done[p] || m->offset >= hi[p]) {
            rd_kafka_message_destroy(m);
            continue;
        }
        rd_kafka_timestamp_type_t tst;
        int64_t ts = rd_kafka_message_timestamp(m, &tst);
        printf("%d\t%lld\t%lld\t", p, (long long)m->offset, (long long)ts);
        hex(stdout, m->key, m->key_len);
        putchar('\t');
        hex(stdout, m->payload, m->len);
        putchar('\t');
        rd_kafka_headers_t *hdrs = NULL;
        if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            hdrs) {
            const char *name;
            const void *val;
            size_t vlen;
            for (size_t i = 0;
                 rd_kafka_header_get_all(hdrs, i, &name, &val, &vlen) ==
                 RD_KAFKA_RESP_ERR_NO_ERROR;
                 i++) {
                if (i)
                    putchar(',');
                fputs(name, stdout);
                putchar('=');
                hex(stdout, val, vlen);
            }
        } else {
            putchar('-');
        }
        putchar('\n');
        if (m->offset + 1 >= hi[p]) {
            done[p] = true;
            remaining--;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    rd_kafka_destroy(ends);
    free(lo);
    free(hi);
    free(done);
}

/* ------------------------------------------------------------------ */
/* committed offsets, groups                                           */

static void committed(const opts_t *o)
{
    if (!o->topic || !o->group)
        die("committed: needs --topic and --group");
    rd_kafka_t *rk = client(o, RD_KAFKA_CONSUMER, o->group);
    int n = partitions_of(rk, o->topic);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int p = 0; p < n; p++)
        rd_kafka_topic_partition_list_add(l, o->topic, p);
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR__TIMED_OUT;
    for (int attempt = 0; attempt < 10; attempt++) {
        e = rd_kafka_committed(rk, l, TIMEOUT_MS);
        if (!e)
            break;
        usleep(500 * 1000);
    }
    if (e)
        die("committed %s: %s", o->group, rd_kafka_err2str(e));
    for (int i = 0; i < l->cnt; i++) {
        int64_t lo, hi;
        watermarks(rk, o->topic, l->elems[i].partition, &lo, &hi);
        printf("%d\t%lld\t%lld\t%lld\n", l->elems[i].partition,
               (long long)l->elems[i].offset, (long long)lo, (long long)hi);
    }
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
}

static void group(const opts_t *o)
{
    if (!o->group)
        die("group: needs --group");
    rd_kafka_t *rk = client(o, RD_KAFKA_CONSUMER, NULL);
    const struct rd_kafka_group_list *gl = NULL;
    rd_kafka_resp_err_t e = rd_kafka_list_groups(rk, o->group, &gl, TIMEOUT_MS);
    if (e)
        die("group %s: %s", o->group, rd_kafka_err2str(e));
    if (gl->group_cnt < 1)
        printf("state none members 0\n");
    else
        printf("state %s members %d\n", gl->groups[0].state,
               gl->groups[0].member_cnt);
    rd_kafka_group_list_destroy(gl);
    rd_kafka_destroy(rk);
}

/* ------------------------------------------------------------------ */
/* admin                                                               */

static rd_kafka_event_t *admin_wait(rd_kafka_queue_t *q,
                                    rd_kafka_event_type_t type)
{
    for (;;) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 60 * 1000);
        if (!ev)
            die("admin: no answer within 60 s");
        if (rd_kafka_event_type(ev) == type)
            return ev;
        rd_kafka_event_destroy(ev);
    }
}

/* The topic's dynamic configs (name=value pairs, malloc'd) with
 * DescribeConfigs. */
static int topic_configs(rd_kafka_t *rk, rd_kafka_queue_t *q, const char *topic,
                         char ***names, char ***values)
{
    rd_kafka_ConfigResource_t *res =
        rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    rd_kafka_DescribeConfigs(rk, &res, 1, NULL, q);
    rd_kafka_event_t *ev = admin_wait(q, RD_KAFKA_EVENT_DESCRIBECONFIGS_RESULT);
    if (rd_kafka_event_error(ev))
        die("describe configs %s: %s", topic, rd_kafka_event_error_string(ev));
    size_t nres, ncfg;
    const rd_kafka_ConfigResource_t **rs =
        rd_kafka_DescribeConfigs_result_resources(
            rd_kafka_event_DescribeConfigs_result(ev), &nres);
    if (nres != 1 || rd_kafka_ConfigResource_error(rs[0]))
        die("describe configs %s: %s", topic,
            nres ? rd_kafka_ConfigResource_error_string(rs[0]) : "no result");
    const rd_kafka_ConfigEntry_t **cs =
        rd_kafka_ConfigResource_configs(rs[0], &ncfg);
    *names = calloc(ncfg + 1, sizeof **names);
    *values = calloc(ncfg + 1, sizeof **values);
    int n = 0;
    for (size_t i = 0; i < ncfg; i++) {
        if (rd_kafka_ConfigEntry_source(cs[i]) !=
            RD_KAFKA_CONFIG_SOURCE_DYNAMIC_TOPIC_CONFIG)
            continue;
        const char *v = rd_kafka_ConfigEntry_value(cs[i]);
        (*names)[n] = strdup(rd_kafka_ConfigEntry_name(cs[i]));
        (*values)[n] = strdup(v ? v : "");
        n++;
    }
    rd_kafka_event_destroy(ev);
    rd_kafka_ConfigResource_destroy(res);
    return n;
}

/* Replaces the topic's dynamic configs (AlterConfigs is not incremental:
 * every config not given goes back to its default). */
static void alter_configs(rd_kafka_t *rk, rd_kafka_queue_t *q,
                          const char *topic, char **names, char **values, int n)
{
    rd_kafka_ConfigResource_t *res =
        rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    for (int i = 0; i < n; i++)
        rd_kafka_ConfigResource_set_config(res, names[i], values[i]);
    rd_kafka_AlterConfigs(rk, &res, 1, NULL, q);
    rd_kafka_event_t *ev = admin_wait(q, RD_KAFKA_EVENT_ALTERCONFIGS_RESULT);
    size_t nres;
    const rd_kafka_ConfigResource_t **rs =
        rd_kafka_AlterConfigs_result_resources(
            rd_kafka_event_AlterConfigs_result(ev), &nres);
    if (rd_kafka_event_error(ev))
        die("alter configs %s: %s", topic, rd_kafka_event_error_string(ev));
    if (nres == 1 && rd_kafka_ConfigResource_error(rs[0]))
        die("alter configs %s: %s", topic,
            rd_kafka_ConfigResource_error_string(rs[0]));
    rd_kafka_event_destroy(ev);
    rd_kafka_ConfigResource_destroy(res);
}

/* Deletes the records of every partition below offset (default: the high
 * watermark). Returns how many partitions failed with err_out set to the
 * last error. */
static int delete_records(rd_kafka_t *rk, rd_kafka_queue_t *q, const opts_t *o,
                          bool print, rd_kafka_resp_err_t *err_out)
{
    int n = partitions_of(rk, o->topic);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int p = 0; p < n; p++) {
        if (o->partition >= 0 && p != o->partition)
            continue;
        int64_t lo, hi;
        watermarks(rk, o->topic, p, &lo, &hi);
        int64_t to = o->offset >= 0 && o->offset < hi ? o->offset : hi;
        if (to > lo)
            rd_kafka_topic_partition_list_add(l, o->topic, p)->offset = to;
    }
    int failures = 0;
    *err_out = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (l->cnt > 0) {
        rd_kafka_DeleteRecords_t *dr = rd_kafka_DeleteRecords_new(l);
        rd_kafka_DeleteRecords(rk, &dr, 1, NULL, q);
        rd_kafka_event_t *ev =
            admin_wait(q, RD_KAFKA_EVENT_DELETERECORDS_RESULT);
        rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
        if (e) {
            *err_out = e;
            failures = l->cnt;
        } else {
            const rd_kafka_topic_partition_list_t *r =
                rd_kafka_DeleteRecords_result_offsets(
                    rd_kafka_event_DeleteRecords_result(ev));
            for (int i = 0; i < r->cnt; i++) {
                if (print)
                    printf("%d\t%lld\t%s\n", r->elems[i].partition,
                           (long long)r->elems[i].offset,
                           rd_kafka_err2str(r->elems[i].err));
                if (r->elems[i].err) {
                    *err_out = r->elems[i].err;
                    failures++;
                }
            }
        }
        rd_kafka_event_destroy(ev);
        rd_kafka_DeleteRecords_destroy(dr);
    }
    rd_kafka_topic_partition_list_destroy(l);
    return failures;
}

static void admin(const opts_t *o, const char *cmd)
{
    if (!o->topic)
        die("%s: needs --topic", cmd);
    rd_kafka_t *rk = client(o, RD_KAFKA_PRODUCER, NULL);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    char err[512];
    int rc = 0;
    if (strcmp(cmd, "create") == 0) {
        rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(
            o->topic, o->partitions > 0 ? o->partitions : 8, 1, err,
            sizeof err);
        if (!nt)
            die("create: %s", err);
        for (int i = 0; i < o->nconfigs; i++) {
            char kv[512];
            snprintf(kv, sizeof kv, "%s", o->configs[i]);
            char *eq = strchr(kv, '=');
            if (!eq)
                die("--config %s: expected name=value", kv);
            *eq = '\0';
            rd_kafka_NewTopic_set_config(nt, kv, eq + 1);
        }
        rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
        rd_kafka_event_t *ev =
            admin_wait(q, RD_KAFKA_EVENT_CREATETOPICS_RESULT);
        size_t cnt;
        const rd_kafka_topic_result_t **res =
            rd_kafka_CreateTopics_result_topics(
                rd_kafka_event_CreateTopics_result(ev), &cnt);
        rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
        if (!e && cnt == 1)
            e = rd_kafka_topic_result_error(res[0]);
        if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            fprintf(stderr, "reltool: create %s: %s\n", o->topic,
                    rd_kafka_err2str(e));
            rc = 1;
        }
        rd_kafka_event_destroy(ev);
        rd_kafka_NewTopic_destroy(nt);
    } else if (strcmp(cmd, "delete") == 0) {
        rd_kafka_DeleteTopic_t *dt = rd_kafka_DeleteTopic_new(o->topic);
        rd_kafka_DeleteTopics(rk, &dt, 1, NULL, q);
        rd_kafka_event_t *ev =
            admin_wait(q, RD_KAFKA_EVENT_DELETETOPICS_RESULT);
        size_t cnt;
        const rd_kafka_topic_result_t **res =
            rd_kafka_DeleteTopics_result_topics(
                rd_kafka_event_DeleteTopics_result(ev), &cnt);
        rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
        if (!e && cnt == 1)
            e = rd_kafka_topic_result_error(res[0]);
        if (e && e != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
            fprintf(stderr, "reltool: delete %s: %s\n", o->topic,
                    rd_kafka_err2str(e));
            rc = 1;
        }
        rd_kafka_event_destroy(ev);
        rd_kafka_DeleteTopic_destroy(dt);
    } else if (strcmp(cmd, "delete-records") == 0) {
        rd_kafka_resp_err_t e;
        if (delete_records(rk, q, o, true, &e)) {
            fprintf(stderr, "reltool: delete-records %s: %s\n", o->topic,
                    rd_kafka_err2str(e));
            rc = 1;
        }
    } else { /* truncate: also for compacted topics */
        char **names, **values;
        int n = topic_configs(rk, q, o->topic, &names, &values);
        char **tn = calloc((size_t)n + 1, sizeof *tn),
             **tv = calloc((size_t)n + 1, sizeof *tv);
        int m = 0;
        for (int i = 0; i < n; i++)
            if (strcmp(names[i], "cleanup.policy") != 0) {
                tn[m] = names[i];
                tv[m++] = values[i];
            }
        tn[m] = "cleanup.policy";
        tv[m++] = "compact,delete";
        alter_configs(rk, q, o->topic, tn, tv, m);
        /* The new policy reaches the partition leaders asynchronously. */
        rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
        for (int attempt = 0; attempt < 60; attempt++) {
            if (!delete_records(rk, q, o, false, &e))
                break;
            if (e != RD_KAFKA_RESP_ERR_POLICY_VIOLATION)
                break;
            usleep(250 * 1000);
        }
        if (e) {
            fprintf(stderr, "reltool: truncate %s: %s\n", o->topic,
                    rd_kafka_err2str(e));
            rc = 1;
        }
        alter_configs(rk, q, o->topic, names, values, n);
        for (int i = 0; i < n; i++) {
            free(names[i]);
            free(values[i]);
        }
        free(names);
        free(values);
        free(tn);
        free(tv);
        if (!rc) {
            int parts = partitions_of(rk, o->topic);
            for (int p = 0; p < parts; p++) {
                int64_t lo, hi;
                watermarks(rk, o->topic, p, &lo, &hi);
                printf("%d\t%lld\t%lld\n", p, (long long)lo, (long long)hi);
            }
        }
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    exit(rc);
}

/* ------------------------------------------------------------------ */
/* offline table shards                                                */

static int32_t table_part;

static mph_err_t table_row(const void *key, size_t klen, const void *val,
                           size_t vlen, void *opaque)
{
    (void)opaque;
    printf("%d\t", (int)table_part);
    hex(stdout, key, klen);
    putchar('\t');
    hex(stdout, val, vlen);
    putchar('\n');
    return MPH_OK;
}

static void table(const opts_t *o)
{
    if (!o->datadir || !o->app_id || !o->table)
        die("table: needs --datadir, --app-id and --table");
    char err[512];
    mph_conf_t *c = mph_conf_new();
    if (!c || mph_conf_set(c, "app_id", o->app_id, err, sizeof err) != MPH_OK ||
        mph_conf_set(c, "datadir", o->datadir, err, sizeof err) != MPH_OK)
        die("table: conf: %s", err);
    mph_err_t e = mph_table_local_foreach(c, o->table, table_row, NULL,
                                          &table_part, err, sizeof err);
    mph_conf_destroy(c);
    if (e == MPH_ERR_NOENT) {
        printf("# none: %s\n", err);
        return;
    }
    if (e)
        die("table %s: %s (%s)", o->table, err, mph_err_str(e));
}

/* ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    if (argc < 2)
        die("usage: reltool "
            "produce|dump|committed|create|delete|delete-records|group|table "
            "[options] (see the comment at the top of reltool.c)");
    opts_t o = {.brokers = "127.0.0.1:9092",
                .keys = 100,
                .partition = -1,
                .offset = -1};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            die("%s: missing value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--brokers"))
            o.brokers = v;
        else if (!strcmp(a, "--topic"))
            o.topic = v;
        else if (!strcmp(a, "--group"))
            o.group = v;
        else if (!strcmp(a, "--state"))
            o.state = v;
        else if (!strcmp(a, "--datadir"))
            o.datadir = v;
        else if (!strcmp(a, "--app-id"))
            o.app_id = v;
        else if (!strcmp(a, "--table"))
            o.table = v;
        else if (!strcmp(a, "--rate"))
            o.rate = atof(v);
        else if (!strcmp(a, "--seconds"))
            o.seconds = atof(v);
        else if (!strcmp(a, "--bad-pct"))
            o.bad_pct = atof(v);
        else if (!strcmp(a, "--skew-pct"))
            o.skew_pct = atof(v);
        else if (!strcmp(a, "--window-ms"))
            o.window_ms = strtoll(v, NULL, 10);
        else if (!strcmp(a, "--grace-ms"))
            o.grace_ms = strtoll(v, NULL, 10);
        else if (!strcmp(a, "--future-ms"))
            o.future_ms = strtoll(v, NULL, 10);
        else if (!strcmp(a, "--event-step-ms"))
            o.event_step_ms = strtoll(v, NULL, 10);
        else if (!strcmp(a, "--keys"))
            o.keys = atoi(v);
        else if (!strcmp(a, "--partitions"))
            o.partitions = atoi(v);
        else if (!strcmp(a, "--partition"))
            o.partition = atoi(v);
        else if (!strcmp(a, "--oversized"))
            o.oversized = atoi(v);
        else if (!strcmp(a, "--seed"))
            o.seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--offset"))
            o.offset = strtoll(v, NULL, 10);
        else if (!strcmp(a, "--config") && o.nconfigs < MAX_CONFIGS)
            o.configs[o.nconfigs++] = v;
        else
            die("unknown option %s", a);
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "produce"))
        produce(&o);
    else if (!strcmp(cmd, "dump"))
        dump(&o);
    else if (!strcmp(cmd, "committed"))
        committed(&o);
    else if (!strcmp(cmd, "group"))
        group(&o);
    else if (!strcmp(cmd, "create") || !strcmp(cmd, "delete") ||
             !strcmp(cmd, "delete-records") || !strcmp(cmd, "truncate"))
        admin(&o, cmd);
    else if (!strcmp(cmd, "table"))
        table(&o);
    else
        die("unknown command %s", cmd);
    return 0;
}
