/*
 * --guarantee exactly_once (issue #14): the settings of the two sides of an
 * exactly_once invocation, and the read_committed checks of what a run
 * wrote.
 *
 * An exactly_once invocation runs mephisto under at_least_once and under
 * exactly_once over the same input in interleaved rounds; the at_least_once
 * runs are the baseline. Both sides get commit_interval_ms=100 (the
 * interval issue #14's target is set at), so the guarantee is the only
 * difference, and both are timed until their input offsets are committed:
 * under exactly_once that is when the transaction holding the last outputs
 * committed, i.e. when a read_committed reader can see them.
 *
 * After each run its output is read read_committed (a consumer with
 * isolation.level=read_committed that stops at each partition's end, the
 * last stable offset, and waits a little longer when what it saw is not
 * yet complete: a transaction's markers may land just after its offsets
 * became visible): the passthrough's output must hold every input record
 * exactly once (at least once for at_least_once), a count table's
 * changelog must end with every key's true count. Reading happens after
 * the clock stopped, so it is never timed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

const char *bench_guarantee_name(bool eos)
{
    return eos ? "exactly_once" : "at_least_once";
}

int bench_opts_guarantee(const bench_opts_t *o, bool eos, bench_opts_t *out,
                         char *errstr, size_t errstr_size)
{
    static const char *const guarantee[2] = {
        "processing_guarantee=at_least_once",
        "processing_guarantee=exactly_once"};
    static const char interval[] =
        "commit_interval_ms=" BENCH_EOS_COMMIT_INTERVAL_MS;
    const int cap = (int)(sizeof out->sets / sizeof out->sets[0]);
    if (o->nsets + 2 > cap) {
        snprintf(errstr, errstr_size,
                 "--guarantee exactly_once: at most %d --set options", cap - 2);
        return -1;
    }
    for (int i = 0; i < o->nsets; i++)
        if (strncmp(o->sets[i], "processing_guarantee=", 21) == 0) {
            snprintf(errstr, errstr_size,
                     "--guarantee exactly_once runs both guarantees: drop "
                     "--set %s",
                     o->sets[i]);
            return -1;
        }
    *out = *o;
    /* Ours first: a later --set of the same name wins (mph_conf_set). */
    out->sets[0] = guarantee[eos];
    out->sets[1] = interval;
    for (int i = 0; i < o->nsets; i++)
        out->sets[i + 2] = o->sets[i];
    out->nsets = o->nsets + 2;
    out->run_exactly_once = eos;
    return 0;
}

/* Appends "key":"text" to r->extra with text's quotes and backslashes
 * dropped (check texts are plain, but errors quote topics). */
static void extra_str(bench_result_t *r, const char *key, const char *text)
{
    char clean[256];
    size_t j = 0;
    for (size_t i = 0; text[i] && j + 1 < sizeof clean; i++)
        if (text[i] != '"' && text[i] != '\\' &&
            (unsigned char)text[i] >= 0x20)
            clean[j++] = text[i];
    clean[j] = 0;
    bench_extra(r, ",\"%s\":\"%s\"", key, clean);
}

int bench_guarantee_compare(const bench_opts_t *o, bench_side_fn *run,
                            void *ctx, long n, bench_result_t *r)
{
    bench_opts_t side[2]; /* [0] at_least_once, [1] exactly_once */
    char err[300];
    for (int g = 0; g < 2; g++)
        if (bench_opts_guarantee(o, g == 1, &side[g], err, sizeof err)) {
            snprintf(r->error, sizeof r->error, "%s", err);
            return -1;
        }
    int reps = o->repeat < BENCH_MAX_ROUNDS ? o->repeat : BENCH_MAX_ROUNDS;
    bench_series_t ser[2];
    memset(ser, 0, sizeof ser);
    char check[2][200] = {"", ""};
    for (int i = 0; i < reps; i++) {
        for (int j = 0; j < 2; j++) {
            int g = bench_round_side(i, j, 2);
            char label[128];
            snprintf(label, sizeof label, "%s %s %s round %d/%d", r->scenario,
                     r->label, bench_guarantee_name(g == 1), i + 1, reps);
            bench_run_t res;
            memset(&res, 0, sizeof res);
            if (run(ctx, &side[g], label, &res) || res.error[0]) {
                snprintf(r->error, sizeof r->error, "%s: %s",
                         bench_guarantee_name(g == 1),
                         res.error[0] ? res.error : "failed");
                return -1;
            }
            snprintf(check[g], sizeof check[g], "%s", res.check);
            double rate = bench_series_add(&ser[g], &res);
            bench_progress(o,
                           "%s: %.0f records/s, %.2f s CPU, peak RSS %ld KiB; "
                           "%s",
                           label, rate, res.cpu_s, res.peak_rss_kb,
                           res.check[0] ? res.check : "not checked");
        }
    }
    bench_series_result(&ser[1], &ser[0], "at_least_once_", n, o->size, r);
    extra_str(r, "check", check[1]);
    extra_str(r, "at_least_once_check", check[0]);
    snprintf(r->target, sizeof r->target, "ratio >= %.1f", BENCH_EOS_TARGET);
    r->target_met = r->ratio >= BENCH_EOS_TARGET;
    return 0;
}

/* ---- reading a topic read_committed ---- */

typedef struct scan {
    void (*record)(struct scan *s, const rd_kafka_message_t *m);
    bool (*complete)(struct scan *s); /* what was read is what is expected */
    uint64_t records;
} scan_t;

/* How long to keep reading, after every partition reached its end, for
 * records a late transaction marker makes visible. */
#define SCAN_GRACE_NS 10000000000LL

/* Reads partitions [0, partitions) of topic read_committed from from[p]
 * (NULL: the beginning) until each reached its end and s->complete() holds
 * (or SCAN_GRACE_NS after they first all reached it, or --timeout). 0, or
 * -1 with errstr when the topic could not be read. */
static int scan(bench_kafka_t *k, const bench_opts_t *o, const char *topic,
                int partitions, const int64_t *from, scan_t *s, char *errstr,
                size_t errstr_size)
{
    char kerr[512], id[64];
    rd_kafka_conf_t *kc = bench_kafka_conf(k);
    char group[96];
    snprintf(group, sizeof group, "mephisto-bench-check-%s",
             bench_run_id(id, sizeof id));
    rd_kafka_conf_set(kc, "group.id", group, NULL, 0);
    rd_kafka_conf_set(kc, "client.id", "mephisto-bench-check", NULL, 0);
    rd_kafka_conf_set(kc, "enable.auto.commit", "false", NULL, 0);
    rd_kafka_conf_set(kc, "enable.partition.eof", "true", NULL, 0);
    rd_kafka_conf_set(kc, "isolation.level", "read_committed", NULL, 0);
    rd_kafka_conf_set(kc, "fetch.wait.max.ms", "50", NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, kerr, sizeof kerr);
    if (!rk) {
        rd_kafka_conf_destroy(kc);
        snprintf(errstr, errstr_size, "read_committed reader: %.200s", kerr);
        return -1;
    }
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset =
            from ? from[p] : RD_KAFKA_OFFSET_BEGINNING;
    bool *at_end = calloc((size_t)partitions, sizeof *at_end);
    int rc = -1;
    if (!at_end || rd_kafka_assign(rk, l)) {
        snprintf(errstr, errstr_size, "cannot read %s", topic);
        goto out;
    }
    int64_t t0 = bench_now_ns(), all_at_end = 0;
    for (;;) {
        int64_t now = bench_now_ns();
        int ended = 0;
        for (int p = 0; p < partitions; p++)
            ended += at_end[p];
        if (ended == partitions) {
            if (!all_at_end)
                all_at_end = now;
            if (s->complete(s) || now - all_at_end > SCAN_GRACE_NS) {
                rc = 0;
                break;
            }
        }
        if (now - t0 > (int64_t)(o->timeout * 1e9)) {
            snprintf(errstr, errstr_size,
                     "%s not read to its end (read_committed) in %.0f s",
                     topic, o->timeout);
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        int p = m->partition;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (p >= 0 && p < partitions)
                at_end[p] = true;
        } else if (m->err) {
            if (rd_kafka_message_errstr(m) && m->err != RD_KAFKA_RESP_ERR__TRANSPORT)
                bench_progress(o, "check %s: %s", topic,
                               rd_kafka_message_errstr(m));
        } else {
            if (p >= 0 && p < partitions)
                at_end[p] = false;
            s->records++;
            s->record(s, m);
        }
        rd_kafka_message_destroy(m);
    }
out:
    free(at_end);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

/* ---- the passthrough's output: every input record once ---- */

typedef struct out_scan {
    scan_t s;
    uint8_t *seen; /* a bit per seq */
    long n;
    uint64_t distinct, dups, foreign;
} out_scan_t;

static void out_record(scan_t *s, const rd_kafka_message_t *m)
{
    out_scan_t *c = (out_scan_t *)s;
    int64_t ts;
    uint64_t seq;
    if (!bench_record_parse(m->payload, m->len, &ts, &seq) ||
        seq >= (uint64_t)c->n) {
        c->foreign++;
        return;
    }
    uint8_t bit = (uint8_t)(1u << (seq & 7));
    if (c->seen[seq >> 3] & bit) {
        c->dups++;
    } else {
        c->seen[seq >> 3] |= bit;
        c->distinct++;
    }
}

static bool out_complete(scan_t *s)
{
    out_scan_t *c = (out_scan_t *)s;
    return c->distinct == (uint64_t)c->n;
}

int bench_check_output(bench_kafka_t *k, const bench_opts_t *o,
                       const char *topic, int partitions, const int64_t *from,
                       long n, bool exact, char *check, size_t check_size)
{
    out_scan_t c = {.s = {out_record, out_complete, 0}, .n = n};
    c.seen = calloc((size_t)n / 8 + 1, 1);
    if (!c.seen) {
        snprintf(check, check_size, "FAILED: out of memory");
        return -1;
    }
    char err[300];
    int rc = scan(k, o, topic, partitions, from, &c.s, err, sizeof err);
    free(c.seen);
    if (rc) {
        snprintf(check, check_size, "FAILED: %s", err);
        return -1;
    }
    bool ok = c.distinct == (uint64_t)n && c.foreign == 0 &&
              (!exact || c.dups == 0);
    snprintf(check, check_size,
             "%s: %llu records read_committed, %llu of %ld input records "
             "present, %llu duplicated, %llu foreign",
             ok ? "ok" : "FAILED", (unsigned long long)c.s.records,
             (unsigned long long)c.distinct, n, (unsigned long long)c.dups,
             (unsigned long long)c.foreign);
    return ok ? 0 : -1;
}

/* ---- a count table's changelog: every key's true count ---- */

typedef struct cnt_scan {
    scan_t s;
    int keys;
    int64_t *truth, *last; /* per key index ("u%06d") */
    uint64_t foreign;
} cnt_scan_t;

/* The index of a record key "u%06d" below keys, or -1. */
static long key_index(const void *key, size_t len, int keys)
{
    const char *p = key;
    if (!key || len < 2 || len > 12 || p[0] != 'u')
        return -1;
    long v = 0;
    for (size_t i = 1; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v < keys ? v : -1;
}

static void cnt_record(scan_t *s, const rd_kafka_message_t *m)
{
    cnt_scan_t *c = (cnt_scan_t *)s;
    long i = key_index(m->key, m->key_len, c->keys);
    if (i < 0 || (m->payload && m->len != 8)) {
        c->foreign++;
        return;
    }
    if (!m->payload) { /* a tombstone */
        c->last[i] = 0;
        return;
    }
    const unsigned char *b = m->payload;
    uint64_t x = 0;
    for (int j = 0; j < 8; j++)
        x = x << 8 | b[j];
    c->last[i] = (int64_t)x;
}

static bool cnt_complete(scan_t *s)
{
    cnt_scan_t *c = (cnt_scan_t *)s;
    for (int i = 0; i < c->keys; i++)
        if (c->last[i] != c->truth[i])
            return false;
    return true;
}

int bench_check_counts(bench_kafka_t *k, const bench_opts_t *o,
                       const char *changelog, int partitions, long n,
                       bool exact, char *check, size_t check_size)
{
    cnt_scan_t c = {.s = {cnt_record, cnt_complete, 0}, .keys = o->keys};
    c.truth = calloc((size_t)o->keys, sizeof *c.truth);
    c.last = calloc((size_t)o->keys, sizeof *c.last);
    char *buf = malloc((size_t)o->size);
    int rc = -1;
    if (!c.truth || !c.last || !buf) {
        snprintf(check, check_size, "FAILED: out of memory");
        goto out;
    }
    /* The truth: the key of every input record (data.c, as loaded). */
    for (long seq = 0; seq < n; seq++) {
        char key[16];
        size_t kl = bench_record(buf, (size_t)o->size, key, o->seed,
                                 (uint64_t)seq, o->keys, 0);
        long i = key_index(key, kl, o->keys);
        if (i >= 0)
            c.truth[i]++;
    }
    char err[300];
    if (scan(k, o, changelog, partitions, NULL, &c.s, err, sizeof err)) {
        snprintf(check, check_size, "FAILED: %s", err);
        goto out;
    }
    long wrong = 0, over = 0, first = -1;
    for (int i = 0; i < o->keys; i++) {
        if (c.last[i] == c.truth[i])
            continue;
        if (c.last[i] > c.truth[i])
            over++;
        if (c.last[i] < c.truth[i] || exact) {
            wrong++;
            if (first < 0)
                first = i;
        }
    }
    rc = wrong == 0 && c.foreign == 0 ? 0 : -1;
    int len = snprintf(check, check_size,
                       "%s: %llu changelog records read_committed, %d keys, "
                       "%ld wrong, %ld over, %llu foreign",
                       rc ? "FAILED" : "ok", (unsigned long long)c.s.records,
                       o->keys, wrong, over, (unsigned long long)c.foreign);
    if (first >= 0 && len > 0 && (size_t)len < check_size)
        snprintf(check + len, check_size - (size_t)len,
                 " (u%06ld: %lld, true %lld)", first, (long long)c.last[first],
                 (long long)c.truth[first]);
out:
    free(c.truth);
    free(c.last);
    free(buf);
    return rc;
}
