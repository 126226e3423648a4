/*
 * DESIGN — changelog recovery.
 *
 * One plain (group-less) consumer reads all the changelog partitions of a
 * hand-over at once, each from its shard's checkpoint + 1, and stops each
 * partition at the high watermark read before starting. A partition is done
 * when its next offset reaches that mark or librdkafka reports
 * end-of-partition (which also covers transaction markers and compaction
 * gaps at the end, where no record carries the last offset). Empty
 * partitions and shards already current are done before the first fetch.
 *
 * exactly_once: the recovery consumer reads read_committed, where a
 * partition's end (its last stable offset, and end-of-partition there)
 * stops before any transaction still open, and also before one that is
 * committed but whose commit markers the broker has not written yet: the
 * transaction coordinator answers EndTxn before it writes them. A shard
 * handed back at a revocation and assigned again at once, or the next
 * owner of one, then stopped before the last committed transaction of
 * the partition — or, its checkpoint being beyond that end, dropped the
 * shard and rebuilt it without that transaction — while the committed
 * offsets count it: its updates were lost (test_eos kill_9 and zombie,
 * one run in a few). So the end is the high watermark, read with a
 * read_uncommitted handle, and a partition is done only when its records
 * up to there are read: the recovery waits until every transaction in
 * the changelog when it started is committed (its records read) or
 * aborted (skipped); an open one ends within its transaction timeout.
 *
 * A checkpoint beyond the high watermark (the topic was recreated) or
 * before the low watermark (records were deleted) cannot be trusted: the
 * shard is dropped and rebuilt from the low watermark, with a warning.
 *
 * RocksDB shards receive records in WriteBatches of batch_records with the
 * WAL off, each carrying the shard's checkpoint, and are flushed
 * (mph__rstore_bulk_finish) as soon as their own partition is complete,
 * before the shard is marked finished. Memory shards apply records
 * directly.
 *
 * Items finish independently (item->finished, a release store after every
 * write to the shard): the restore thread that runs this (restore.c) lets
 * the coordinator hand over each finished shard while the others go on.
 * An item whose cancel flag is set (its partition was revoked) stops
 * within one poll (100 ms): its partition is paused on this consumer, its
 * pending batch is written and flushed, and it finishes as cancelled with
 * everything up to shard->applied in place, so a later recovery resumes
 * from there. This function never blocks on one item for the others.
 *
 * Follow mode (standby replicas, mph__recover_follow) is the same loop
 * that never stops at the end: items finish only when cancelled; at each
 * end of partition and at least every second the pending batch is written
 * with its checkpoint, and item->lag tracks the distance to the (cached)
 * high watermark. No progress timeout: a quiet changelog is normal. Its
 * RocksDB batches are ordinary writes (WAL on), so a cancel, which comes
 * with a take-over, has no memtable flush to wait for; it polls every
 * 20 ms, so a cancel is seen within that.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ck_pr.h>

#include "mephisto/log.h"
#include "state/recovery.h"

typedef struct part {
    mph__recovery_item_t *item;
    int64_t lo, hi, next;
    bool done;
    mph__rstore_batch_t *batch;
    uint64_t gen; /* the store's generation before the first bulk write */
    bool wal;     /* follow mode: ordinary writes (WAL on), no bulk flush */
} part_t;

/* Applies one changelog record to its shard, decoded from Faust's encoding
 * first for a format=faust table (*fs, the scratch, is made on first use). */
static mph_err_t apply_one(part_t *p, mph__faust_scratch_t **fs,
                           const rd_kafka_message_t *m, char *errstr,
                           size_t errstr_size)
{
    const void *key = m->key, *val = m->payload;
    size_t klen = m->key_len, vlen = m->payload ? m->len : 0;
    const mph__faust_fmt_t *f = p->item->shard->faust;
    if (f) {
        char why[256] = "";
        mph_err_t err = MPH_OK;
        if (!*fs && !(*fs = mph__faust_scratch_new()))
            return MPH_ERR_NOMEM;
        if (!key) {
            err = MPH_ERR_DECODE;
            snprintf(why, sizeof why, "format=faust: a record without a key");
        }
        if (!err)
            err = mph__faust_key_decode(f, *fs, m->key, m->key_len, &key, &klen,
                                        why, sizeof why);
        if (!err && val)
            err = mph__faust_value_decode(f, *fs, m->payload, m->len, &val,
                                          &vlen, why, sizeof why);
        if (err) {
            snprintf(errstr, errstr_size,
                     "recovery of %s [%d] at offset %lld: %s",
                     p->item->changelog, (int)m->partition,
                     (long long)m->offset, why[0] ? why : mph_err_str(err));
            return err;
        }
    }
    return mph__shard_apply(p->item->shard, p->batch, key, klen, val, vlen,
                            m->offset);
}

static mph_err_t flush_batch(part_t *p, int workers, char *errstr, size_t errstr_size)
{
    if (!p->batch || mph__rstore_batch_count(p->batch) == 0)
        return MPH_OK;
    mph__shard_t *sh = p->item->shard;
    mph__rstore_checkpoint_t cp = {sh->applied, (uint32_t)workers};
    mph_err_t err = mph__rstore_batch_checkpoint(p->batch, sh->partition, &cp);
    if (!err && p->wal)
        err = mph__rstore_write(sh->rs, p->batch, errstr, errstr_size);
    else if (!err)
        err = mph__rstore_write_bulk(sh->rs, p->batch, p->gen, errstr, errstr_size);
    mph__rstore_batch_clear(p->batch);
    return err;
}

/* Makes item p durable and marks it finished (see DESIGN). */
static mph_err_t finish_part(part_t *p, int workers, char *errstr, size_t errstr_size)
{
    mph__shard_t *sh = p->item->shard;
    mph_err_t err = MPH_OK;
    if (p->batch) {
        err = flush_batch(p, workers, errstr, errstr_size);
        if (!err && !p->wal)
            err = mph__rstore_bulk_finish(sh->rs, p->gen, errstr, errstr_size);
    }
    if (err)
        return err;
    p->done = true;
    ck_pr_fence_store();
    ck_pr_store_int(&p->item->finished, 1);
    return MPH_OK;
}

/* Both modes (see DESIGN); follow: a standby's tail, until cancelled. */
static mph_err_t recover(const mph__kafka_env_t *env, const mph_conf_t *conf,
                         mph__recovery_item_t *items, size_t n, int64_t batch_records,
                         int workers, int timeout_ms, mph__recovery_progress_fn *progress,
                         void *opaque, bool follow, char *errstr, size_t errstr_size)
{
    if (n == 0)
        return MPH_OK;
    mph_err_t err = MPH_OK;
    mph__faust_scratch_t *fs = NULL;
    part_t *parts = calloc(n, sizeof *parts);
    if (!parts)
        return MPH_ERR_NOMEM;
    rd_kafka_conf_t *kc = mph__kafka_conf_new(env, conf, MPH__KAFKA_CONSUMER, errstr, errstr_size);
    if (!kc) {
        free(parts);
        return MPH_ERR_INVALID;
    }
    char gid[300];
    snprintf(gid, sizeof gid, "%s-recovery", mph_conf_get(conf, "app_id"));
    mph__kafka_conf_set(kc, "group.id", gid, NULL, 0);
    mph__kafka_conf_set(kc, "group.instance.id", "", NULL, 0);
    mph__kafka_conf_set(kc, "enable.partition.eof", "true", NULL, 0);
    mph__kafka_conf_set(kc, "fetch.wait.max.ms", "10", NULL, 0);
    mph__kafka_conf_set(kc, "queued.min.messages", "200000", NULL, 0);
    rd_kafka_t *rk = mph__kafka_new(kc, MPH__KAFKA_CONSUMER, errstr, errstr_size);
    if (!rk) {
        free(parts);
        return MPH_ERR_INVALID;
    }
    /* exactly_once (see DESIGN): the ends are the high watermarks, which a
     * read_committed handle does not give (it answers the last stable
     * offsets). A standby follows its changelog without an end. */
    const char *pg = mph_conf_get(conf, "processing_guarantee");
    bool eos = !follow && pg && strcmp(pg, "exactly_once") == 0;
    rd_kafka_t *ends = rk;
    if (eos) {
        rd_kafka_conf_t *ec = mph__kafka_conf_new(env, conf, MPH__KAFKA_CONSUMER, errstr,
                                                  errstr_size);
        if (ec) {
            mph__kafka_conf_set(ec, "group.id", gid, NULL, 0); /* never joined */
            mph__kafka_conf_set(ec, "isolation.level", "read_uncommitted", NULL, 0);
        }
        ends = ec ? mph__kafka_new(ec, MPH__KAFKA_CONSUMER, errstr, errstr_size) : NULL;
        if (!ends) {
            rd_kafka_destroy(rk);
            free(parts);
            return MPH_ERR_INVALID;
        }
        /* An open transaction ends within its timeout (60 s by default),
         * and the broker aborts it within its cleanup interval after. */
        if (timeout_ms < 180000)
            timeout_ms = 180000;
    }

    int64_t total = 0;
    rd_kafka_topic_partition_list_t *assign = rd_kafka_topic_partition_list_new((int)n);
    size_t open = 0;
    for (size_t i = 0; i < n; i++) {
        part_t *p = &parts[i];
        mph__recovery_item_t *it = &items[i];
        mph__shard_t *sh = it->shard;
        p->item = it;
        ck_pr_store_64((uint64_t *)&it->records, 0);
        ck_pr_store_64((uint64_t *)&it->total, (uint64_t)-1);
        ck_pr_store_64((uint64_t *)&it->started_ns, (uint64_t)mph_clock_mono_ns());
        it->rebuilt = false;
        it->cancelled = false;
        /* Right after a changelog is created its leader may not be known
         * yet: retry for a while before giving up. */
        int64_t wm_deadline = mph_clock_mono_ns() + (int64_t)timeout_ms * 1000000;
        do {
            err = mph__kafka_watermarks(ends, it->changelog, (int32_t)sh->partition, &p->lo,
                                        &p->hi, 5000);
            /* Through the reading consumer too, under exactly_once: its
             * end (the last stable offset) says whether this waits, and
             * the query makes it learn the partition's leader, without
             * which its first fetch waited about a second for a metadata
             * refresh (every restore took 1 s longer). */
            int64_t lo2, stable = p->hi;
            if (!err && ends != rk)
                err = mph__kafka_watermarks(rk, it->changelog, (int32_t)sh->partition, &lo2,
                                            &stable, 5000);
            if (!err && stable < p->hi)
                mph_log(MPH_LOG_INFO, "%s [%u]: stable up to offset %lld of %lld: waiting for "
                        "the transactions still open there to end", it->changelog,
                        sh->partition, (long long)stable, (long long)p->hi);
            if (err && mph_clock_mono_ns() < wm_deadline) {
                struct timespec ts = {0, 200000000};
                nanosleep(&ts, NULL);
            }
        } while (err && mph_clock_mono_ns() < wm_deadline && !ck_pr_load_int(&it->cancel));
        if (ck_pr_load_int(&it->cancel)) {
            /* Revoked before it started: the shard is as it came. */
            it->cancelled = true;
            ck_pr_store_64((uint64_t *)&it->total, 0);
            err = finish_part(p, workers, errstr, errstr_size);
            if (err)
                goto out;
            continue;
        }
        if (err) {
            snprintf(errstr, errstr_size, "recovery of %s [%u]: cannot read watermarks: %s",
                     it->changelog, sh->partition, mph_err_str(err));
            goto out;
        }
        int64_t start = it->start < 0 ? 0 : it->start;
        if (start > p->hi || (start < p->lo && start > 0)) {
            mph_log(MPH_LOG_WARN,
                    "%s [%u]: checkpoint %lld is outside the changelog [%lld, %lld): "
                    "rebuilding the shard from the beginning",
                    it->changelog, sh->partition, (long long)start - 1, (long long)p->lo,
                    (long long)p->hi);
            err = mph__shard_reset(sh, errstr, errstr_size);
            if (err)
                goto out;
            it->rebuilt = true;
            start = p->lo;
        }
        if (start < p->lo)
            start = p->lo;
        p->next = start;
        ck_pr_store_64((uint64_t *)&it->total,
                       (uint64_t)(start < p->hi ? p->hi - start : 0));
        ck_pr_store_64((uint64_t *)&it->lag, (uint64_t)(start < p->hi ? p->hi - start : 0));
        if (start >= p->hi && !follow) {
            err = finish_part(p, workers, errstr, errstr_size);
            if (err)
                goto out;
            continue;
        }
        if (sh->rs) {
            p->batch = mph__rstore_batch_new();
            if (!p->batch) {
                err = MPH_ERR_NOMEM;
                goto out;
            }
            p->gen = mph__rstore_gen(sh->rs);
            p->wal = follow;
        }
        total += p->hi - start;
        rd_kafka_topic_partition_list_add(assign, it->changelog, (int32_t)sh->partition)->offset =
            start;
        open++;
    }

    mph__recovery_progress_t prog = {total, 0, 0, 0};
    int64_t t0 = mph_clock_mono_ns(), last_report = t0, last_progress = t0;
    if (open > 0) {
        if (follow)
            mph_log(MPH_LOG_INFO, "standby: tailing %zu changelog partitions (%lld records "
                                  "behind)", open, (long long)total);
        else
            mph_log(MPH_LOG_INFO, "recovering %zu shards: %lld changelog records", open,
                    (long long)total);
        rd_kafka_assign(rk, assign);
    }
    int64_t last_follow_flush = t0;
    while (open > 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, follow ? 20 : 100);
        int64_t now = mph_clock_mono_ns();
        if (m) {
            part_t *p = NULL;
            for (size_t i = 0; i < n; i++)
                if (!parts[i].done && (uint32_t)m->partition == parts[i].item->shard->partition &&
                    strcmp(rd_kafka_topic_name(m->rkt), parts[i].item->changelog) == 0) {
                    p = &parts[i];
                    break;
                }
            if (p && m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && follow) {
                /* Caught up: make the checkpoint current. */
                if (m->offset > p->hi)
                    p->hi = m->offset;
                ck_pr_store_64((uint64_t *)&p->item->lag,
                               (uint64_t)(p->hi > p->next ? p->hi - p->next : 0));
                err = flush_batch(p, workers, errstr, errstr_size);
                if (err) {
                    rd_kafka_message_destroy(m);
                    goto out;
                }
            } else if (p && m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                /* Under exactly_once an end below hi is the last stable
                 * offset (see DESIGN): read on. */
                if (m->offset >= p->hi || (!eos && m->offset >= p->next)) {
                    open--;
                    err = finish_part(p, workers, errstr, errstr_size);
                    if (err) {
                        rd_kafka_message_destroy(m);
                        goto out;
                    }
                }
            } else if (p && !m->err) {
                err = apply_one(p, &fs, m, errstr, errstr_size);
                if (!err && p->batch && (int64_t)mph__rstore_batch_count(p->batch) >= batch_records)
                    err = flush_batch(p, workers, errstr, errstr_size);
                if (err) {
                    if (!errstr[0])
                        snprintf(errstr, errstr_size, "recovery of %s [%d]: %s",
                                 p->item->changelog, (int)m->partition, mph_err_str(err));
                    rd_kafka_message_destroy(m);
                    goto out;
                }
                ck_pr_store_64((uint64_t *)&p->item->records, (uint64_t)p->item->records + 1);
                prog.done++;
                p->next = m->offset + 1;
                last_progress = now;
                if (p->next >= p->hi && !follow) {
                    open--;
                    err = finish_part(p, workers, errstr, errstr_size);
                    if (err) {
                        rd_kafka_message_destroy(m);
                        goto out;
                    }
                }
            } else if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                mph_log(MPH_LOG_WARN, "recovery: %s", rd_kafka_message_errstr(m));
            }
            rd_kafka_message_destroy(m);
        }
        /* Cancelled items (their partitions were revoked) stop now. */
        for (size_t i = 0; i < n && open > 0; i++) {
            part_t *p = &parts[i];
            if (p->done || !ck_pr_load_int(&p->item->cancel))
                continue;
            rd_kafka_topic_partition_list_t *one = rd_kafka_topic_partition_list_new(1);
            rd_kafka_topic_partition_list_add(one, p->item->changelog,
                                              (int32_t)p->item->shard->partition);
            rd_kafka_pause_partitions(rk, one);
            rd_kafka_topic_partition_list_destroy(one);
            p->item->cancelled = true;
            prog.total -= p->hi - p->next;
            open--;
            mph_log(MPH_LOG_INFO, "%s [%u]: %s at offset %lld", p->item->changelog,
                    p->item->shard->partition,
                    follow ? "standby stopped" : "recovery cancelled (partition revoked)",
                    (long long)p->next);
            err = finish_part(p, workers, errstr, errstr_size);
            if (err)
                goto out;
            last_progress = now;
        }
        if (follow && now - last_follow_flush > 1000000000) {
            /* Standbys: the lag behind the (cached) high watermarks, and a
             * checkpoint at least every second. */
            for (size_t i = 0; i < n; i++) {
                part_t *p = &parts[i];
                if (p->done)
                    continue;
                int64_t lo = 0, hi = 0;
                if (rd_kafka_get_watermark_offsets(rk, p->item->changelog,
                                                   (int32_t)p->item->shard->partition, &lo,
                                                   &hi) == RD_KAFKA_RESP_ERR_NO_ERROR &&
                    hi > p->hi)
                    p->hi = hi;
                ck_pr_store_64((uint64_t *)&p->item->lag,
                               (uint64_t)(p->hi > p->next ? p->hi - p->next : 0));
                err = flush_batch(p, workers, errstr, errstr_size);
                if (err)
                    goto out;
            }
            last_follow_flush = now;
        }
        if (follow) {
            /* no progress report and no timeout: a standby waits for records */
        } else if (now - last_report > 1000000000 || open == 0) {
            double secs = (double)(now - t0) / 1e9;
            prog.rate = secs > 0 ? (double)prog.done / secs : 0;
            prog.eta_s = prog.rate > 0 ? (double)(prog.total - prog.done) / prog.rate : -1;
            if (progress)
                progress(&prog, opaque);
            if (open > 0)
                mph_log(MPH_LOG_INFO, "recovery: %lld/%lld records (%.0f/s, ETA %.1f s)",
                        (long long)prog.done, (long long)prog.total, prog.rate, prog.eta_s);
            last_report = now;
        }
        if (!follow && (now - last_progress) / 1000000 > timeout_ms) {
            err = MPH_ERR_TIMEOUT;
            snprintf(errstr, errstr_size, "recovery made no progress for %d ms", timeout_ms);
            goto out;
        }
    }
    if (!err && total > 0 && !follow) {
        double secs = (double)(mph_clock_mono_ns() - t0) / 1e9;
        mph_log(MPH_LOG_INFO, "recovered %lld records in %.2f s (%.0f/s)", (long long)prog.done,
                secs, secs > 0 ? (double)prog.done / secs : 0);
    }
out:
    mph__faust_scratch_destroy(fs);
    for (size_t i = 0; i < n; i++)
        mph__rstore_batch_destroy(parts[i].batch);
    free(parts);
    rd_kafka_topic_partition_list_destroy(assign);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (ends != rk)
        rd_kafka_destroy(ends);
    return err;
}

mph_err_t mph__recover(const mph__kafka_env_t *env, const mph_conf_t *conf,
                       mph__recovery_item_t *items, size_t n, int64_t batch_records,
                       int workers, int timeout_ms, mph__recovery_progress_fn *progress,
                       void *opaque, char *errstr, size_t errstr_size)
{
    return recover(env, conf, items, n, batch_records, workers, timeout_ms, progress, opaque,
                   false, errstr, errstr_size);
}

mph_err_t mph__recover_follow(const mph__kafka_env_t *env, const mph_conf_t *conf,
                              mph__recovery_item_t *items, size_t n, int64_t batch_records,
                              int workers, char *errstr, size_t errstr_size)
{
    return recover(env, conf, items, n, batch_records, workers, 60000, NULL, NULL, true, errstr,
                   errstr_size);
}
