/*
 * The web view: the routes served by the app's HTTP server.
 *
 * DESIGN. src/io/http.c runs libmicrohttpd on one "web" thread and calls
 * handle() for every GET/HEAD; handle() answers synchronously, so every
 * route is bounded. The stats routes read the workers' monitors with ck_pr
 * loads (the snapshot of monitor.c), librdkafka's cached watermarks and
 * the coordinator's atomic stats: they never wait for a worker, take a
 * lock a worker takes, or post to a worker's mailbox. A slow or stalled
 * client costs a connection on the web thread's epoll set, never a
 * worker's time.
 *
 * Routes:
 *   GET /         an HTML page (web_page.c): numbers rendered here, then
 *                 live numbers and SVG charts from /stats every second
 *                 (inline script and style; no external asset)
 *   GET /stats    the stats document (JSON; monitor.c renders it)
 *   GET /metrics  Prometheus text format 0.0.4 (rendered here)
 *   GET /health   200 "ok" while the app runs, else 503
 *   GET /ready    200 once partitions are assigned (app->ready) and every global
 *                 table bootstrapped, else 503
 *   GET /router   JSON: for every source topic, partition -> the worker
 *                 and the web address of the process that owns it
 *   GET /tables/<table>/<key>
 *                 the key's value as JSON (mph_table_lookup: the owning
 *                 worker copies it out through its mailbox); a key of
 *                 another process's partition is redirected (307) to that
 *                 process when the group says who owns it. For a windowed
 *                 table: the value in the window of now, or with
 *                 ?window=<start ms> in the window starting there; the
 *                 window goes to the X-Window-Start / X-Window-End headers.
 *                 For a global table: from this process's copy, never
 *                 redirected (global_table.c)
 *   <prefix>[/...] the app's own routes (mph_web_route; longest prefix)
 *   other         404 {"error": ...}
 * Routes match the whole decoded path (its length counts a decoded %00, so
 * "/stats%00x" is no route); an absolute-form target reaches us as its
 * path (http.c). /tables splits the raw path and decodes the table name
 * and the key apart: a name with a control character is 400, a key is
 * bytes and keeps every one.
 *
 * /tables and /router are the routes that may wait, holding the web thread
 * (never a worker): a table lookup waits for the owning worker's answer
 * (at most TABLE_TIMEOUT_MS), and /router asks the broker for the consumer
 * group's member list (rd_kafka_list_groups, at most ROUTER_TIMEOUT_MS).
 * Each member's assignment is parsed from the consumer protocol bytes, and
 * its web address from its client.id, which the engine sets to
 * "<app_id>@<web_bind>:<web_port>". When the broker cannot list groups
 * (e.g. librdkafka's mock cluster), the document says why in
 * "members_error" and lists this process's partitions only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ck_pr.h>

#include "io/http.h"
#include "mephisto/json.h"
#include "mephisto/jsonw.h"
#include "mephisto/table.h"
#include "mephisto/web.h"
#include "mephisto/window.h"
#include "mephisto/log.h"
#include "runtime/global_table.h"
#include "runtime/promtext.h"
#include "runtime/services.h"
#include "runtime/table.h"
#include "runtime/web.h"
#include "runtime/worker.h"

#define ROUTER_TIMEOUT_MS 1000
#define TABLE_TIMEOUT_MS  1000
#define JSON_TYPE         "application/json; charset=utf-8"
#define PROM_TYPE         "text/plain; version=0.0.4; charset=utf-8"

struct mph__web {
    mph_app_t *app;
    mph__http_server_t *srv;
    char bind[64];
    int port;
};

/* ------------------------------------------------------------------ */
/* small response helpers                                              */

static void answer(mph__http_response_t *resp, unsigned status,
                   const char *type, const char *body)
{
    mph__http_response_set_status(resp, status);
    mph__http_response_set_content_type(resp, type);
    mph__http_response_set_body(resp, body, strlen(body));
    mph__http_response_add_header(resp, "Cache-Control", "no-store");
}

/* {"error": msg} with status; msg is ASCII of ours or a path (escaped by
 * the writer; a path that is not UTF-8 is replaced by a fixed text). */
static void answer_error(mph__http_response_t *resp, unsigned status,
                         const char *msg)
{
    mph_jsonw_t *w = mph_jsonw_new(128, NULL, 0);
    const char *text = NULL;
    size_t len = 0;
    if (w && mph_jsonw_object_begin(w) == MPH_OK &&
        mph_jsonw_key(w, "error", 5) == MPH_OK &&
        (mph_jsonw_str(w, msg, strlen(msg)) == MPH_OK ||
         mph_jsonw_str(w, "invalid request", 15) == MPH_OK) &&
        mph_jsonw_object_end(w) == MPH_OK &&
        mph_jsonw_finish(w, &text, &len) == MPH_OK) {
        mph__http_response_set_status(resp, status);
        mph__http_response_set_content_type(resp, JSON_TYPE);
        mph__http_response_set_body(resp, text, len);
        mph__http_response_add_header(resp, "Cache-Control", "no-store");
    } else {
        answer(resp, 500, "text/plain; charset=utf-8", "out of memory\n");
    }
    mph_jsonw_destroy(w);
}

/* ------------------------------------------------------------------ */
/* GET /stats                                                          */

static void route_stats(struct mph__web *web, mph__http_response_t *resp)
{
    mph__stats_t st;
    mph_err_t err = mph__stats_take(&st, web->app);
    if (err == MPH_ERR_STATE) {
        answer_error(resp, 503, "the app is not running");
        return;
    }
    char *json = NULL;
    size_t len = 0;
    if (!err)
        err = mph__stats_json(&st, &json, &len);
    mph__stats_fini(&st);
    if (err) {
        answer_error(resp, 500, mph_err_str(err));
        return;
    }
    mph__http_response_set_status(resp, 200);
    mph__http_response_set_content_type(resp, JSON_TYPE);
    mph__http_response_add_header(resp, "Cache-Control", "no-store");
    mph__http_response_take_body(resp, json, len);
}

/* ------------------------------------------------------------------ */
/* GET /metrics                                                        */

typedef mph__promtext_label_t label_t;

static void u64_family(mph__promtext_t *pt, const mph__stats_t *st,
                       const char *name, const char *help, size_t offset)
{
    mph__promtext_header(pt, name, MPH__PROM_COUNTER, help);
    for (size_t i = 0; i < st->nworkers; i++) {
        char wid[16];
        snprintf(wid, sizeof wid, "%d", st->workers[i].worker);
        label_t l[] = {{"worker", wid}};
        const uint64_t *v =
            (const uint64_t *)((const char *)&st->workers[i] + offset);
        mph__promtext_sample_u64(pt, name, l, 1, *v);
    }
}

static void latency_family(mph__promtext_t *pt, const mph__stats_t *st,
                           const char *name, const char *help, int which)
{
    double le[MPH__STATS_LE_COUNT + 1];
    for (size_t i = 0; i < MPH__STATS_LE_COUNT; i++)
        le[i] = (double)mph__stats_le_ns[i] / 1e9;
    le[MPH__STATS_LE_COUNT] = INFINITY;
    mph__promtext_header(pt, name, MPH__PROM_HISTOGRAM, help);
    for (size_t i = 0; i < st->nworkers; i++) {
        char wid[16];
        snprintf(wid, sizeof wid, "%d", st->workers[i].worker);
        label_t l[] = {{"worker", wid}};
        /* which: 0 processing, 1 send, 2 transaction commit */
        const mph__stats_latency_t *h = which == 1   ? &st->workers[i].send_latency
                                        : which == 2 ? &st->workers[i].txn_commit
                                                     : &st->workers[i].processing;
        mph__promtext_histogram_buckets(pt, name, l, 1, le, h->le_counts,
                                        MPH__STATS_LE_COUNT + 1,
                                        (double)h->sum_ns / 1e9);
    }
}

#define WORKER_COUNTER(name, field, help)                                      \
    u64_family(&pt, st, "mephisto_" name "_total", help,                       \
               offsetof(mph__stats_worker_t, field))

static void partition_gauge(mph__promtext_t *pt, const mph__stats_t *st,
                            const char *name, const char *help, size_t offset)
{
    mph__promtext_header(pt, name, MPH__PROM_GAUGE, help);
    for (size_t t = 0; t < st->ntopics; t++)
        for (size_t p = 0; p < st->topics[t].nparts; p++) {
            const mph__stats_part_t *sp = &st->topics[t].parts[p];
            int64_t v = *(const int64_t *)((const char *)sp + offset);
            if (v < 0)
                continue; /* unknown: no sample rather than a fake value */
            char pid[16];
            snprintf(pid, sizeof pid, "%d", (int)sp->partition);
            label_t l[] = {{"topic", st->topics[t].name}, {"partition", pid}};
            mph__promtext_sample(pt, name, l, 2, (double)v);
        }
}

static const char *const window_help[MPH_WINDOW_STAT__COUNT] = {
    [MPH_WINDOW_STAT_LATE_EVENTS] = "Events dropped by a windowed table: every window of their time had "
                                    "closed (beyond grace).",
    [MPH_WINDOW_STAT_LATE_WRITES] = "Window writes dropped because their window had closed.",
    [MPH_WINDOW_STAT_INVALID_TIME] = "Events dropped by a windowed table: no time, or a negative one.",
    [MPH_WINDOW_STAT_FUTURE_TIME] = "Events dropped by a windowed table: time beyond max_future ahead "
                                    "of the wall clock.",
    [MPH_WINDOW_STAT_CLOSED] = "Windows closed.",
    [MPH_WINDOW_STAT_CLOSE_CALLS] = "on_window_close calls (one per window and key).",
    [MPH_WINDOW_STAT_CLOSE_ERRORS] = "on_window_close calls that returned an error.",
    [MPH_WINDOW_STAT_EXPIRED] = "Windows deleted by expiry.",
    [MPH_WINDOW_STAT_EXPIRED_KEYS] = "(window, key) pairs deleted by expiry.",
    [MPH_WINDOW_STAT_LIVE_WINDOWS] = "Windows this process holds now.",
    [MPH_WINDOW_STAT_LIVE_PAIRS] = "(window, key) pairs this process holds now.",
};

mph_err_t mph__web_metrics(const mph__stats_t *st, char **out, size_t *len)
{
    mph__promtext_t pt;
    mph__promtext_init(&pt);
    char wid[16], pid[16];

    mph__promtext_header(&pt, "mephisto_info", MPH__PROM_GAUGE,
                         "Constant 1, labelled with the app id and the "
                         "mephisto version.");
    label_t info[] = {{"app_id", st->app_id ? st->app_id : ""},
                      {"version", mph_version()}};
    mph__promtext_sample(&pt, "mephisto_info", info, 2, 1.0);
    mph__promtext_header(&pt, "mephisto_ready", MPH__PROM_GAUGE,
                         "1 once partitions are assigned and recovered.");
    mph__promtext_sample(&pt, "mephisto_ready", NULL, 0, st->ready ? 1 : 0);
    mph__promtext_header(&pt, "mephisto_uptime_seconds", MPH__PROM_GAUGE,
                         "Seconds since the workers started.");
    mph__promtext_sample(&pt, "mephisto_uptime_seconds", NULL, 0, st->uptime_s);

    WORKER_COUNTER("events", events_in,
                   "Events processed (every subscribed agent returned).");
    WORKER_COUNTER("events_failed", events_failed,
                   "Agent calls that returned an error.");
    WORKER_COUNTER("sends", sends,
                   "Records agents handed to the producer (dead letters "
                   "included; the tables' changelog records are not).");
    WORKER_COUNTER("sends_acked", sends_acked,
                   "Records the broker acknowledged: agents' records "
                   "(mephisto_sends_total) and the tables' changelog records.");
    WORKER_COUNTER("send_errors", send_errors,
                   "Records that failed permanently.");
    WORKER_COUNTER("send_retries", send_retries,
                   "Records sent again after a retriable failure.");
    WORKER_COUNTER("dead_lettered", dead_lettered,
                   "Undecodable records sent to the dead-letter topic.");
    WORKER_COUNTER("skipped", skipped,
                   "Undecodable records skipped (on_decode_error=skip).");
    WORKER_COUNTER("pauses", pauses,
                   "Times the worker paused its partitions (back-pressure).");
    WORKER_COUNTER("transactions_committed", txn_committed,
                   "Transactions committed (exactly_once).");
    WORKER_COUNTER("transactions_aborted", txn_aborted,
                   "Transactions aborted and rolled back (exactly_once).");
    WORKER_COUNTER("producer_fenced", producer_fenced,
                   "Times the worker's transactional producer was fenced by a newer "
                   "process with its transactional.id (exactly_once).");
    WORKER_COUNTER("producer_replaced", producer_replaced,
                   "Times the worker's transactional producer failed fatally (not fenced) "
                   "and was replaced, its transaction aborted (exactly_once).");

    mph__promtext_header(&pt, "mephisto_partitions_owned", MPH__PROM_GAUGE,
                         "Source partitions the worker owns now.");
    for (size_t i = 0; i < st->nworkers; i++) {
        snprintf(wid, sizeof wid, "%d", st->workers[i].worker);
        label_t l[] = {{"worker", wid}};
        mph__promtext_sample_u64(&pt, "mephisto_partitions_owned", l, 1,
                                 st->workers[i].partitions);
    }
    mph__promtext_header(&pt, "mephisto_events_per_second", MPH__PROM_GAUGE,
                         "Events per second over the last sampling "
                         "interval (at least 1 s).");
    for (size_t i = 0; i < st->nworkers; i++) {
        snprintf(wid, sizeof wid, "%d", st->workers[i].worker);
        label_t l[] = {{"worker", wid}};
        mph__promtext_sample(&pt, "mephisto_events_per_second", l, 1,
                             st->workers[i].events_per_s);
    }

    static const char *const topic_names[2] = {
        "mephisto_topic_events_in_total", "mephisto_topic_events_out_total"};
    static const char *const topic_help[2] = {"Events of the topic processed.",
                                              "Records sent to the topic."};
    for (int dir = 0; dir < 2; dir++) {
        mph__promtext_header(&pt, topic_names[dir], MPH__PROM_COUNTER,
                             topic_help[dir]);
        for (size_t i = 0; i < st->nworkers; i++) {
            snprintf(wid, sizeof wid, "%d", st->workers[i].worker);
            for (size_t t = 0; t < st->ntopics; t++) {
                label_t l[] = {{"topic", st->topics[t].name}, {"worker", wid}};
                mph__promtext_sample_u64(&pt, topic_names[dir], l, 2,
                                         dir ? st->workers[i].topic_out[t]
                                             : st->workers[i].topic_in[t]);
            }
        }
    }

    mph__promtext_header(&pt, "mephisto_partition_events_total",
                         MPH__PROM_COUNTER,
                         "Events of the partition processed by this process.");
    for (size_t t = 0; t < st->ntopics; t++)
        for (size_t p = 0; p < st->topics[t].nparts; p++) {
            snprintf(pid, sizeof pid, "%d",
                     (int)st->topics[t].parts[p].partition);
            label_t l[] = {{"topic", st->topics[t].name}, {"partition", pid}};
            mph__promtext_sample_u64(&pt, "mephisto_partition_events_total", l,
                                     2, st->topics[t].parts[p].events);
        }
    partition_gauge(&pt, st, "mephisto_partition_read_offset",
                    "Offset of the last event processed.",
                    offsetof(mph__stats_part_t, read_offset));
    partition_gauge(&pt, st, "mephisto_partition_commit_point",
                    "The offset the next commit stores: every event "
                    "before it was processed and its outputs acknowledged.",
                    offsetof(mph__stats_part_t, commit_point));
    partition_gauge(&pt, st, "mephisto_partition_end_offset",
                    "High watermark of the partition (librdkafka's cache).",
                    offsetof(mph__stats_part_t, end_offset));
    partition_gauge(&pt, st, "mephisto_partition_lag",
                    "Events of the partition not yet processed.",
                    offsetof(mph__stats_part_t, lag));
    mph__promtext_header(&pt, "mephisto_partition_owner", MPH__PROM_GAUGE,
                         "1 for the worker of this process that owns the "
                         "partition.");
    for (size_t t = 0; t < st->ntopics; t++)
        for (size_t p = 0; p < st->topics[t].nparts; p++) {
            const mph__stats_part_t *sp = &st->topics[t].parts[p];
            if (sp->worker < 0)
                continue;
            snprintf(pid, sizeof pid, "%d", (int)sp->partition);
            snprintf(wid, sizeof wid, "%d", sp->worker);
            label_t l[] = {{"topic", st->topics[t].name},
                           {"partition", pid},
                           {"worker", wid}};
            mph__promtext_sample(&pt, "mephisto_partition_owner", l, 3, 1.0);
        }

    static const char *const agent_names[2] = {"mephisto_agent_events_total",
                                               "mephisto_agent_errors_total"};
    static const char *const agent_help[2] = {
        "Events the agent was called with.",
        "Events for which the agent returned an error."};
    for (int kind = 0; kind < 2; kind++) {
        mph__promtext_header(&pt, agent_names[kind], MPH__PROM_COUNTER,
                             agent_help[kind]);
        for (size_t i = 0; i < st->nworkers; i++) {
            snprintf(wid, sizeof wid, "%d", st->workers[i].worker);
            for (size_t a = 0; a < st->nagents; a++) {
                label_t l[] = {{"agent", st->agents[a].name}, {"worker", wid}};
                mph__promtext_sample_u64(&pt, agent_names[kind], l, 2,
                                         kind ? st->workers[i].agent_errors[a]
                                              : st->workers[i].agent_events[a]);
            }
        }
    }

    latency_family(&pt, st, "mephisto_processing_latency_seconds",
                   "Time from taking an event to its last agent returning.",
                   0);
    latency_family(&pt, st, "mephisto_send_latency_seconds",
                   "Time from producing a record (an agent's or a "
                   "changelog record) to the broker's acknowledgement.",
                   1);
    latency_family(&pt, st, "mephisto_transaction_commit_latency_seconds",
                   "Time a worker's transaction commit took (exactly_once: "
                   "offsets sent, commit_transaction returned).",
                   2);

    mph__promtext_header(&pt, "mephisto_table_ops_total", MPH__PROM_COUNTER,
                         "Table operations by table, operation and worker.");
    static const char *const ops[MPH__TABLE_OPS] = {"get", "set", "delete",
                                                    "miss"};
    for (size_t i = 0; i < st->nworkers; i++) {
        snprintf(wid, sizeof wid, "%d", st->workers[i].worker);
        for (size_t k = 0; k < st->ntables; k++) {
            char tid[24];
            snprintf(tid, sizeof tid, "%zu", st->tables[k].index);
            const char *tname = st->tables[k].name ? st->tables[k].name : tid;
            for (int op = 0; op < MPH__TABLE_OPS; op++) {
                label_t l[] = {
                    {"table", tname}, {"op", ops[op]}, {"worker", wid}};
                mph__promtext_sample_u64(&pt, "mephisto_table_ops_total", l, 3,
                                         st->workers[i].table_ops[k][op]);
            }
        }
    }
    /* Window counters: totals of the process (late_events ->
     * mephisto_window_late_events_total; the two live_* gauges keep their
     * names). */
    for (int k = 0; k < MPH_WINDOW_STAT__COUNT; k++) {
        bool gauge = k == MPH_WINDOW_STAT_LIVE_WINDOWS || k == MPH_WINDOW_STAT_LIVE_PAIRS;
        char fam[80];
        snprintf(fam, sizeof fam, "mephisto_window_%s%s", mph__window_stat_names[k],
                 gauge ? "" : "_total");
        bool any = false;
        for (size_t t = 0; t < st->ntables; t++) {
            if (!st->tables[t].windowed)
                continue;
            if (!any)
                mph__promtext_header(&pt, fam, gauge ? MPH__PROM_GAUGE : MPH__PROM_COUNTER,
                                     window_help[k]);
            any = true;
            char tid[24];
            snprintf(tid, sizeof tid, "%zu", st->tables[t].index);
            label_t l[] = {{"table", st->tables[t].name ? st->tables[t].name : tid}};
            int64_t v = st->tables[t].window[k];
            mph__promtext_sample_u64(&pt, fam, l, 1, v > 0 ? (uint64_t)v : 0);
        }
    }
    /* Join counters (pairs -> mephisto_join_pairs_total{join}). */
    static const char *const join_help[MPH_JOIN_STAT__COUNT] = {
        [MPH_JOIN_STAT_LATE] = "Stream-stream join records dropped: their window had closed.",
        [MPH_JOIN_STAT_INVALID] = "Join records dropped: no timestamp or no key.",
        [MPH_JOIN_STAT_PAIRS] = "Pairs joined (joiner calls with both sides).",
        [MPH_JOIN_STAT_UNMATCHED] = "Unmatched records emitted (left and outer joins).",
    };
    for (int k = 0; k < MPH_JOIN_STAT__COUNT && st->njoins > 0; k++) {
        char fam[80];
        snprintf(fam, sizeof fam, "mephisto_join_%s_total", mph__join_stat_names[k]);
        mph__promtext_header(&pt, fam, MPH__PROM_COUNTER, join_help[k]);
        for (size_t i = 0; i < st->njoins; i++) {
            label_t l[] = {{"join", st->joins[i].name ? st->joins[i].name : "?"}};
            mph__promtext_sample_u64(&pt, fam, l, 1, st->joins[i].v[k]);
        }
    }
    mph__promtext_header(&pt, "mephisto_recoveries_total", MPH__PROM_COUNTER,
                         "Partition hand-overs that recovered table shards "
                         "from their changelogs.");
    mph__promtext_sample_u64(&pt, "mephisto_recoveries_total", NULL, 0,
                             st->recovery.recoveries);
    mph__promtext_header(&pt, "mephisto_recovery_records_restored",
                         MPH__PROM_GAUGE,
                         "Changelog records applied by the last (or current) "
                         "recovery.");
    mph__promtext_sample_u64(&pt, "mephisto_recovery_records_restored", NULL, 0,
                             st->recovery.records_restored);
    mph__promtext_header(&pt, "mephisto_recovery_records_total",
                         MPH__PROM_GAUGE,
                         "Changelog records the last (or current) recovery "
                         "had to apply.");
    mph__promtext_sample_u64(&pt, "mephisto_recovery_records_total", NULL, 0,
                             st->recovery.records_total);
    /* Shards restoring now and standby replicas (restore.c, standby.c). */
    mph__promtext_header(&pt, "mephisto_restoring_shards", MPH__PROM_GAUGE,
                         "Table shards restoring now (their partitions wait).");
    mph__promtext_sample_u64(&pt, "mephisto_restoring_shards", NULL, 0,
                             st->recovery.nrestoring);
    mph__promtext_header(&pt, "mephisto_standby_shards", MPH__PROM_GAUGE,
                         "Standby replicas of table shards held by this process.");
    mph__promtext_sample_u64(&pt, "mephisto_standby_shards", NULL, 0, st->recovery.nstandbys);
    if (st->recovery.nstandbys)
        mph__promtext_header(&pt, "mephisto_standby_lag_records", MPH__PROM_GAUGE,
                             "Changelog records a standby replica is behind the "
                             "changelog's end.");
    for (size_t i = 0; i < st->recovery.nstandbys && i < MPH__STATS_RESTORING; i++) {
        const mph__restore_stat_t *r = &st->recovery.standbys[i];
        char part[16];
        snprintf(part, sizeof part, "%d", (int)r->partition);
        label_t l[] = {{"table", r->table >= 0 && (size_t)r->table < st->ntables &&
                                         st->tables[r->table].name
                                     ? st->tables[r->table].name
                                     : "?"},
                       {"partition", part}};
        mph__promtext_sample_u64(&pt, "mephisto_standby_lag_records", l, 2,
                                 r->lag > 0 ? (uint64_t)r->lag : 0);
    }

    if (st->have_coord) {
        static const struct {
            const char *name, *help;
            size_t offset;
        } coord[] = {
            {"mephisto_commits_total", "Offset commits that succeeded.",
             offsetof(mph__coord_stats_t, commits)},
            {"mephisto_commit_errors_total", "Offset commits that failed.",
             offsetof(mph__coord_stats_t, commit_errors)},
            {"mephisto_commit_partitions_total",
             "Partitions carried by offset commit requests (only partitions whose "
             "commit point moved are committed).",
             offsetof(mph__coord_stats_t, commit_partitions)},
            {"mephisto_commit_repairs_total",
             "Partitions committed again because an older commit landed after a "
             "newer one.",
             offsetof(mph__coord_stats_t, commit_repairs)},
            {"mephisto_rebalances_total",
             "Rebalance events (assignments and revocations).",
             offsetof(mph__coord_stats_t, rebalances)},
            {"mephisto_partitions_assigned_total",
             "Partitions assigned to this process, summed over rebalances.",
             offsetof(mph__coord_stats_t, assigned)},
        };
        for (size_t i = 0; i < sizeof coord / sizeof coord[0]; i++) {
            mph__promtext_header(&pt, coord[i].name, MPH__PROM_COUNTER,
                                 coord[i].help);
            mph__promtext_sample_u64(
                &pt, coord[i].name, NULL, 0,
                *(const uint64_t *)((const char *)&st->coord +
                                    coord[i].offset));
        }
        mph__promtext_header(&pt, "mephisto_last_commit_latency_seconds",
                             MPH__PROM_GAUGE,
                             "Duration of the last offset commit.");
        mph__promtext_sample(&pt, "mephisto_last_commit_latency_seconds", NULL,
                             0, (double)st->coord.last_commit_us / 1e6);
    }
    /* Timers, crontab entries, tasks and the leader (services.c). */
    mph__services_metrics(st->services_json, st->services_len, &pt);

    mph_err_t err = mph__promtext_finish(&pt);
    if (err) {
        mph__promtext_fini(&pt);
        *out = NULL;
        *len = 0;
        return err;
    }
    *out = mph__promtext_take(&pt, len);
    mph__promtext_fini(&pt);
    return *out ? MPH_OK : MPH_ERR_NOMEM;
}

static void route_metrics(struct mph__web *web, mph__http_response_t *resp)
{
    mph__stats_t st;
    mph_err_t err = mph__stats_take(&st, web->app);
    if (err == MPH_ERR_STATE) {
        answer(resp, 503, "text/plain; charset=utf-8",
               "the app is not running\n");
        return;
    }
    char *text = NULL;
    size_t len = 0;
    if (!err)
        err = mph__web_metrics(&st, &text, &len);
    mph__stats_fini(&st);
    if (err) {
        answer(resp, 500, "text/plain; charset=utf-8", mph_err_str(err));
        return;
    }
    mph__http_response_set_status(resp, 200);
    mph__http_response_set_content_type(resp, PROM_TYPE);
    mph__http_response_add_header(resp, "Cache-Control", "no-store");
    mph__http_response_take_body(resp, text, len);
}

/* ------------------------------------------------------------------ */
/* GET /router                                                         */

static bool read_be16(const unsigned char **p, const unsigned char *end,
                      int16_t *out)
{
    if (end - *p < 2)
        return false;
    *out = (int16_t)(((unsigned)(*p)[0] << 8) | (*p)[1]);
    *p += 2;
    return true;
}

static bool read_be32(const unsigned char **p, const unsigned char *end,
                      int32_t *out)
{
    if (end - *p < 4)
        return false;
    *out = (int32_t)(((uint32_t)(*p)[0] << 24) | ((uint32_t)(*p)[1] << 16) |
                     ((uint32_t)(*p)[2] << 8) | (uint32_t)(*p)[3]);
    *p += 4;
    return true;
}

mph_err_t mph__web_parse_assignment(const void *buf, size_t len,
                                    mph__web_assignment_fn fn, void *opaque)
{
    if (len == 0)
        return MPH_OK;
    if (!buf)
        return MPH_ERR_INVALID;
    const unsigned char *p = buf, *end = p + len;
    int16_t version;
    int32_t ntopics;
    if (!read_be16(&p, end, &version) || version < 0 ||
        !read_be32(&p, end, &ntopics) || ntopics < -1)
        return MPH_ERR_DECODE;
    for (int32_t t = 0; t < ntopics; t++) {
        int16_t tlen;
        if (!read_be16(&p, end, &tlen) || tlen < 0 || end - p < tlen)
            return MPH_ERR_DECODE;
        const char *topic = (const char *)p;
        p += tlen;
        int32_t nparts;
        if (!read_be32(&p, end, &nparts) || nparts < -1 ||
            (nparts > 0 && (size_t)(end - p) / 4 < (size_t)nparts))
            return MPH_ERR_DECODE;
        for (int32_t i = 0; i < nparts; i++) {
            int32_t partition = 0;
            read_be32(&p, end, &partition); /* in bounds: checked above */
            if (fn)
                fn(opaque, topic, (size_t)tlen, partition);
        }
    }
    /* User data (int32 length, -1 for null, then bytes) and anything later
     * versions append are not needed here. */
    return MPH_OK;
}

bool mph__web_member_address(const char *client_id, const char *client_host,
                             char *out, size_t out_size)
{
    const char *at = client_id ? strrchr(client_id, '@') : NULL;
    if (!at)
        return false;
    const char *colon = strrchr(at + 1, ':');
    if (!colon || colon == at + 1 || !colon[1])
        return false;
    long port = 0;
    for (const char *c = colon + 1; *c; c++) {
        if (*c < '0' || *c > '9' || port > 65535)
            return false;
        port = port * 10 + (*c - '0');
    }
    if (port < 1 || port > 65535)
        return false;
    size_t hlen = (size_t)(colon - (at + 1));
    const char *host = at + 1;
    if (hlen == 7 && memcmp(host, "0.0.0.0", 7) == 0) {
        if (!client_host || !*client_host)
            return false;
        host = client_host[0] == '/' ? client_host + 1 : client_host;
        hlen = strlen(host);
        if (hlen == 0)
            return false;
    }
    int n = snprintf(out, out_size, "%.*s:%ld", (int)hlen, host, port);
    return n > 0 && (size_t)n < out_size;
}

/* Where one partition lives, as far as this process knows. */
typedef struct route {
    int worker;         /* this process's worker, -1 when not ours */
    const char *member; /* the owning member's client.id (borrowed) */
    char addr[280];     /* host:port of its web view, "" unknown */
} route_t;

typedef struct router_ctx {
    mph_app_t *app;
    route_t **routes; /* [topic][partition], source topics only */
    const char *member;
    const char *addr;
} router_ctx_t;

static void router_assign(void *opaque, const char *topic, size_t topic_len,
                          int32_t partition)
{
    router_ctx_t *ctx = opaque;
    mph_app_t *app = ctx->app;
    for (size_t t = 0; t < app->ntopics; t++) {
        const mph_topic_t *tp = app->topics[t];
        if (!ctx->routes[t] || strlen(tp->name) != topic_len ||
            memcmp(tp->name, topic, topic_len) != 0)
            continue;
        if (partition < 0 || partition >= tp->partitions)
            return;
        route_t *r = &ctx->routes[t][partition];
        if (r->worker >= 0)
            return; /* ours: what this process knows wins */
        r->member = ctx->member;
        snprintf(r->addr, sizeof r->addr, "%s", ctx->addr);
        return;
    }
}

/* Adds the other members' partitions from the group's member list. Returns
 * NULL, or why the list could not be read. *gl is destroyed by the caller
 * after rendering (the routes borrow its strings). */
static const char *router_members(struct mph__web *web, route_t **routes,
                                  const struct rd_kafka_group_list **gl,
                                  char *self_host, size_t self_host_size)
{
    mph_app_t *app = web->app;
    rd_kafka_resp_err_t e =
        rd_kafka_list_groups(app->consumer, app->app_id, gl, ROUTER_TIMEOUT_MS);
    if (e) {
        *gl = NULL;
        return rd_kafka_err2str(e);
    }
    char *me = rd_kafka_memberid(app->consumer);
    const char *why = "the consumer group was not found";
    for (int g = 0; g < (*gl)->group_cnt; g++) {
        const struct rd_kafka_group_info *gi = &(*gl)->groups[g];
        if (strcmp(gi->group, app->app_id) != 0)
            continue;
        if (gi->err) {
            why = rd_kafka_err2str(gi->err);
            break;
        }
        why = NULL;
        for (int m = 0; m < gi->member_cnt; m++) {
            const struct rd_kafka_group_member_info *mi = &gi->members[m];
            if (me && strcmp(mi->member_id, me) == 0) {
                if (mi->client_host && *mi->client_host)
                    snprintf(self_host, self_host_size, "%s",
                             mi->client_host[0] == '/' ? mi->client_host + 1
                                                       : mi->client_host);
                continue;
            }
            char addr[280] = "";
            if (!mph__web_member_address(mi->client_id, mi->client_host, addr,
                                         sizeof addr))
                addr[0] = '\0';
            router_ctx_t ctx = {app, routes, mi->client_id, addr};
            if (mph__web_parse_assignment(mi->member_assignment,
                                          (size_t)mi->member_assignment_size,
                                          router_assign, &ctx) != MPH_OK)
                mph_log(MPH_LOG_WARN,
                        "router: malformed assignment of member %s ignored",
                        mi->member_id);
        }
        break;
    }
    if (me)
        rd_kafka_mem_free(app->consumer, me);
    return why;
}

/* Who owns every source partition, as far as this process can tell. */
typedef struct routing {
    route_t **routes; /* [topic][partition]; NULL for non-source topics */
    size_t ntopics;
    const struct rd_kafka_group_list *gl; /* the routes borrow its strings */
    const char *members_error;            /* NULL, or why members are unknown */
    char self[300];                       /* this process's host:port */
} routing_t;

static void routing_free(routing_t *r)
{
    if (r->gl)
        rd_kafka_group_list_destroy(r->gl);
    for (size_t t = 0; r->routes && t < r->ntopics; t++)
        free(r->routes[t]);
    free(r->routes);
    memset(r, 0, sizeof *r);
}

/* Fills r: this process's partitions from its workers' monitors, the other
 * members' from the group (up to ROUTER_TIMEOUT_MS). The app must run.
 * Errors: MPH_ERR_NOMEM (r is then empty). */
static mph_err_t routing_build(struct mph__web *web, routing_t *r)
{
    mph_app_t *app = web->app;
    memset(r, 0, sizeof *r);
    r->ntopics = app->ntopics;
    r->routes = calloc(app->ntopics ? app->ntopics : 1, sizeof *r->routes);
    if (!r->routes)
        return MPH_ERR_NOMEM;
    for (size_t t = 0; t < app->ntopics; t++) {
        const mph_topic_t *tp = app->topics[t];
        if (tp->nagents == 0 || tp->partitions <= 0)
            continue;
        r->routes[t] = calloc((size_t)tp->partitions, sizeof **r->routes);
        if (!r->routes[t]) {
            routing_free(r);
            return MPH_ERR_NOMEM;
        }
        for (int32_t p = 0; p < tp->partitions; p++) {
            r->routes[t][p].worker = -1;
            for (int i = 0; i < app->nworkers; i++) {
                const mph__monitor_t *m = app->workers[i]->mon;
                if (ck_pr_load_64((uint64_t *)&m->parts[t][p].owned)) {
                    r->routes[t][p].worker = m->worker;
                    break;
                }
            }
        }
    }
    char host[256];
    snprintf(host, sizeof host, "%s", web->bind);
    r->members_error =
        router_members(web, r->routes, &r->gl, host, sizeof host);
    if (strcmp(host, "0.0.0.0") == 0) {
        /* Bound to every interface and not seen by the broker: the host
         * name is the best guess. */
        if (gethostname(host, sizeof host) != 0)
            snprintf(host, sizeof host, "%s", web->bind);
        host[sizeof host - 1] = '\0';
    }
    snprintf(r->self, sizeof r->self, "%s:%d", host, web->port);
    return MPH_OK;
}

static void route_router(struct mph__web *web, mph__http_response_t *resp)
{
    mph_app_t *app = web->app;
    if (!mph_app_running(app) || !app->workers) {
        answer_error(resp, 503, "the app is not running");
        return;
    }
    routing_t rt;
    mph_jsonw_t *w = mph_jsonw_new(1024, NULL, 0);
    mph_err_t err = w ? routing_build(web, &rt) : MPH_ERR_NOMEM;
    if (!err) {
        mph_err_t e = MPH_OK;
#define W(call)                                                                \
    do {                                                                       \
        if (e == MPH_OK)                                                       \
            e = (call);                                                        \
    } while (0)
#define WKEY(k) W(mph_jsonw_key(w, k, strlen(k)))
#define WSTR(s) W(mph_jsonw_str(w, s, strlen(s)))
        W(mph_jsonw_object_begin(w));
        WKEY("app_id");
        WSTR(app->app_id);
        WKEY("self");
        WSTR(rt.self);
        WKEY("members_error");
        W(rt.members_error
              ? mph_jsonw_str(w, rt.members_error, strlen(rt.members_error))
              : mph_jsonw_null(w));
        WKEY("topics");
        W(mph_jsonw_object_begin(w));
        for (size_t t = 0; t < app->ntopics; t++) {
            const mph_topic_t *tp = app->topics[t];
            if (!rt.routes[t])
                continue;
            WKEY(tp->name);
            W(mph_jsonw_object_begin(w));
            for (int32_t p = 0; p < tp->partitions; p++) {
                const route_t *r = &rt.routes[t][p];
                char pid[16];
                snprintf(pid, sizeof pid, "%d", (int)p);
                WKEY(pid);
                W(mph_jsonw_object_begin(w));
                WKEY("worker");
                W(r->worker >= 0 ? mph_jsonw_i64(w, r->worker)
                                 : mph_jsonw_null(w));
                WKEY("host");
                if (r->worker >= 0)
                    WSTR(rt.self);
                else if (r->addr[0])
                    WSTR(r->addr);
                else
                    W(mph_jsonw_null(w));
                WKEY("local");
                W(mph_jsonw_bool(w, r->worker >= 0));
                if (r->member) {
                    WKEY("member");
                    W(mph_jsonw_str(w, r->member, strlen(r->member)));
                }
                W(mph_jsonw_object_end(w));
            }
            W(mph_jsonw_object_end(w));
        }
        W(mph_jsonw_object_end(w));
        W(mph_jsonw_object_end(w));
#undef W
#undef WKEY
#undef WSTR
        const char *text = NULL;
        size_t len = 0;
        if (e == MPH_OK)
            e = mph_jsonw_finish(w, &text, &len);
        if (e == MPH_OK) {
            mph__http_response_set_status(resp, 200);
            mph__http_response_set_content_type(resp, JSON_TYPE);
            mph__http_response_add_header(resp, "Cache-Control", "no-store");
            mph__http_response_set_body(resp, text, len);
        }
        err = e;
        routing_free(&rt);
    }
    if (err)
        answer_error(resp, 500, mph_err_str(err));
    mph_jsonw_destroy(w);
}

/* ------------------------------------------------------------------ */
/* GET /tables/<name>/<key>                                            */

/* The value as JSON, by the table's value codec: i64 a number, json the
 * document itself, anything else a string when it is UTF-8 and
 * {"base64": "..."} when it is not. */
static mph_err_t render_value(mph_jsonw_t *w, const mph_table_t *t,
                              const unsigned char *v, size_t len)
{
    const char *codec = t->opts.value_codec ? t->opts.value_codec : "raw";
    if (strcmp(codec, "i64") == 0 && len == 8) {
        uint64_t u = 0;
        for (size_t i = 0; i < 8; i++)
            u = (u << 8) | v[i];
        return mph_jsonw_i64(w, (int64_t)u);
    }
    if (strcmp(codec, "json") == 0 && len > 0) {
        mph_json_parser_t *p = mph_json_parser_new(0, NULL, 0);
        bool ok = p && mph_json_parse(p, v, len, len) == MPH_OK &&
                  mph_json_validate(p) == MPH_OK;
        mph_json_parser_destroy(p);
        if (ok)
            return mph_jsonw_raw(w, (const char *)v, len);
    }
    if (mph_json_utf8_valid(v, len))
        return mph_jsonw_str(w, (const char *)v, len);
    mph_err_t err = mph_jsonw_object_begin(w);
    if (!err)
        err = mph_jsonw_key(w, "base64", 6);
    if (!err)
        err = mph_jsonw_base64(w, v, len);
    if (!err)
        err = mph_jsonw_object_end(w);
    return err;
}

/* The key's bytes from its URL text, by the table's key codec (i64: a
 * decimal number, sent as 8 big-endian bytes). False when it does not
 * parse. */
static bool key_bytes(const mph_table_t *t, char *text, size_t len,
                      unsigned char *i64_buf, const void **key, size_t *klen)
{
    const char *codec = t->opts.key_codec ? t->opts.key_codec : "raw";
    if (strcmp(codec, "i64") != 0) {
        *key = text;
        *klen = len;
        return true;
    }
    char *end = NULL;
    errno = 0;
    long long v = len ? strtoll(text, &end, 10) : 0;
    if (!len || errno || end != text + len)
        return false;
    uint64_t u = (uint64_t)v;
    for (int i = 7; i >= 0; i--, u >>= 8)
        i64_buf[i] = (unsigned char)(u & 0xff);
    *key = i64_buf;
    *klen = 8;
    return true;
}

/* The partition is another process's: redirect there when the group says
 * who owns it (307, same path), else 421. */
static void answer_elsewhere(struct mph__web *web, mph__http_response_t *resp,
                             const mph_table_t *t, int32_t partition,
                             const char *raw_path)
{
    mph_app_t *app = web->app;
    routing_t rt;
    const char *owner = NULL;
    if (routing_build(web, &rt) == MPH_OK) {
        /* Shard p lives with partition p of the sources it is
         * co-partitioned with. */
        for (size_t i = 0; !owner && i < app->ntopics; i++)
            if (rt.routes[i] && app->topics[i]->partitions == t->partitions &&
                partition < t->partitions && rt.routes[i][partition].addr[0])
                owner = rt.routes[i][partition].addr;
    }
    char msg[512];
    if (owner) {
        char location[600];
        snprintf(location, sizeof location, "http://%s%s", owner, raw_path);
        snprintf(msg, sizeof msg, "partition %d of table %s is served by %s",
                 (int)partition, t->name, owner);
        answer_error(resp, 307, msg);
        mph__http_response_add_header(resp, "Location", location);
    } else {
        snprintf(msg, sizeof msg,
                 "partition %d of table %s is not on this process (see "
                 "/router)",
                 (int)partition, t->name);
        answer_error(resp, 421, msg);
    }
    if (rt.routes)
        routing_free(&rt);
}

/* ?window=<start ms> of a windowed table's read: false when present and
 * not a whole number. */
static bool window_param(const mph__http_request_t *req, mph_window_which_t *which,
                         int64_t *start)
{
    const char *v = mph__http_request_query(req, "window", NULL);
    *which = MPH_WINDOW_NOW;
    *start = 0;
    if (!v)
        return true;
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (!*v || errno || *end)
        return false;
    *which = MPH_WINDOW_AT;
    *start = n;
    return true;
}

static void add_i64_header(mph__http_response_t *resp, const char *name, int64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    mph__http_response_add_header(resp, name, buf);
}

/* A global table's key from this process's copy (raw keys; the value as a
 * JSON string when UTF-8, else {"base64": ...}). */
static void route_global(mph__http_response_t *resp, mph_global_table_t *gt, const char *key,
                         size_t key_len)
{
    void *value = NULL;
    size_t vlen = 0;
    mph_err_t err = mph_global_table_get(gt, key, key_len, &value, &vlen);
    if (err == MPH_ERR_NOENT) {
        char msg[300];
        snprintf(msg, sizeof msg, "no such key in global table %.200s",
                 mph_global_table_name(gt));
        answer_error(resp, 404, msg);
        return;
    }
    if (err) {
        answer_error(resp, 500, mph_err_str(err));
        return;
    }
    mph_jsonw_t *w = mph_jsonw_new(vlen * 2 + 64, NULL, 0);
    const char *text = NULL;
    size_t len = 0;
    mph_err_t e = w ? MPH_OK : MPH_ERR_NOMEM;
    if (!e && mph_json_utf8_valid(value, vlen)) {
        e = mph_jsonw_str(w, value, vlen);
    } else if (!e) {
        e = mph_jsonw_object_begin(w);
        if (!e)
            e = mph_jsonw_key(w, "base64", 6);
        if (!e)
            e = mph_jsonw_base64(w, value, vlen);
        if (!e)
            e = mph_jsonw_object_end(w);
    }
    if (!e)
        e = mph_jsonw_finish(w, &text, &len);
    if (!e) {
        mph__http_response_set_status(resp, 200);
        mph__http_response_set_content_type(resp, JSON_TYPE);
        mph__http_response_add_header(resp, "Cache-Control", "no-store");
        mph__http_response_set_body(resp, text, len);
    } else {
        answer_error(resp, 500, mph_err_str(e));
    }
    mph_jsonw_destroy(w);
    free(value);
}

static void route_table(struct mph__web *web, const mph__http_request_t *req,
                        mph__http_response_t *resp)
{
    mph_app_t *app = web->app;
    const char *raw = mph__http_request_raw_path(req);
    const char *name_start = raw + strlen("/tables/");
    const char *slash = strchr(name_start, '/');
    if (!slash || slash == name_start || !slash[1]) {
        answer_error(resp, 404, "use /tables/<table>/<key>");
        return;
    }
    char *name = strndup(name_start, (size_t)(slash - name_start));
    char *key = strdup(slash + 1);
    if (!name || !key) {
        free(name);
        free(key);
        answer_error(resp, 500, mph_err_str(MPH_ERR_NOMEM));
        return;
    }
    size_t name_len = mph__http_unescape(name);
    size_t key_len = mph__http_unescape(key);
    /* A table name is text: a decoded control character (%00 would cut it
     * short) is refused, never looked up. A key is bytes, every one of
     * them used (a raw key may hold %00). */
    bool name_ctl = false;
    for (size_t i = 0; i < name_len; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            name_ctl = true;
    mph_table_t *t = name_ctl ? NULL : mph_app_table(app, name);
    unsigned char i64_buf[8];
    const void *k = NULL;
    size_t klen = 0;
    void *value = NULL;
    size_t vlen = 0;
    mph_err_t err = MPH_ERR_NOENT;
    char msg[300];
    mph_window_t *win = t ? mph_table_window(t) : NULL;
    mph_window_which_t which = MPH_WINDOW_NOW;
    int64_t wstart = 0, wend = 0;
    if (name_ctl) {
        answer_error(resp, 400,
                     "the table name contains a control character "
                     "(%00-%1F or %7F)");
    } else if (!t && mph_app_global_table(app, name)) {
        route_global(resp, mph_app_global_table(app, name), key, key_len);
    } else if (!t) {
        snprintf(msg, sizeof msg, "no such table: %.200s", name);
        answer_error(resp, 404, msg);
    } else if (!key_bytes(t, key, key_len, i64_buf, &k, &klen)) {
        answer_error(resp, 400, "the key is not an integer (i64 keys)");
    } else if (win && !window_param(req, &which, &wstart)) {
        answer_error(resp, 400, "window= must be a window start in ms since the epoch");
    } else if ((err = win ? mph_window_lookup(app, win, k, klen, which, wstart,
                                              &value, &vlen, &wstart, &wend,
                                              TABLE_TIMEOUT_MS)
                          : mph_table_lookup(app, t, k, klen, &value, &vlen,
                                             TABLE_TIMEOUT_MS)) == MPH_OK) {
        mph_jsonw_t *w = mph_jsonw_new(vlen + 64, NULL, 0);
        const char *text = NULL;
        size_t len = 0;
        mph_err_t e = w ? render_value(w, t, value, vlen) : MPH_ERR_NOMEM;
        if (!e)
            e = mph_jsonw_finish(w, &text, &len);
        if (!e) {
            mph__http_response_set_status(resp, 200);
            mph__http_response_set_content_type(resp, JSON_TYPE);
            mph__http_response_add_header(resp, "Cache-Control", "no-store");
            if (win) {
                add_i64_header(resp, "X-Window-Start", wstart);
                add_i64_header(resp, "X-Window-End", wend);
            }
            mph__http_response_set_body(resp, text, len);
        } else {
            answer_error(resp, 500, mph_err_str(e));
        }
        mph_jsonw_destroy(w);
    } else if (err == MPH_ERR_NOENT) {
        snprintf(msg, sizeof msg, "no such key in table %.200s", t->name);
        answer_error(resp, 404, msg);
    } else if (err == MPH_ERR_PARTITION) {
        answer_elsewhere(web, resp, t,
                         mph__kafka_partition_for(k, klen, t->partitions), raw);
    } else if (err == MPH_ERR_TIMEOUT) {
        answer_error(resp, 504, "the worker owning the key did not answer");
    } else if (err == MPH_ERR_RANGE) {
        answer_error(resp, 400, "the key or the window is out of range");
    } else if (err == MPH_ERR_STATE) {
        answer_error(resp, 503, "the app is not running");
    } else {
        answer_error(resp, 500, mph_err_str(err));
    }
    free(value);
    free(name);
    free(key);
}

/* ------------------------------------------------------------------ */
/* dispatch and lifecycle                                              */

/* ------------------------------------------------------------------ */
/* The app's own routes (mph_web_route, include/mephisto/web.h)         */
/*
 * Declared on the controlling thread before start into app->web_routes
 * (freed with the app through mph_app_keep); read-only once the app runs,
 * so the web thread reads it without synchronisation (the server thread is
 * created after the last declaration). A request under no built-in route
 * goes to the route with the longest matching prefix. The handler writes
 * through a wrapper that caps the body at MPH_WEB_MAX_BODY; an error or a
 * missing status replaces the body with a JSON error and answers 500.
 */

#define SLOW_HANDLER_MS 1000
#define MAX_PREFIX      256

typedef struct {
    char *prefix;
    size_t len;
    mph_web_handler_fn *fn;
    void *opaque;
} web_route_t;

struct mph__web_routes {
    web_route_t *v;
    size_t n;
    mph_log_limit_t slow_lim; /* web thread */
};

struct mph_web_request {
    const mph__http_request_t *req;
    size_t prefix_len;
};

struct mph_web_response {
    mph__http_response_t *resp;
    size_t body_len;
    bool status_set;
    mph_err_t sticky; /* first NOMEM/RANGE of a body write */
};

static const char *const reserved_prefixes[] = {
    "/index.html", "/stats", "/metrics", "/health", "/ready", "/router", "/tables",
};

static void routes_free(void *p)
{
    struct mph__web_routes *r = p;
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        free(r->v[i].prefix);
    free(r->v);
    free(r);
}

/* Whether path[0..len) is prefix or lies below it. */
static bool under(const char *path, size_t len, const char *prefix, size_t plen)
{
    return len >= plen && memcmp(path, prefix, plen) == 0 && (len == plen || path[plen] == '/');
}

static bool prefix_ok(const char *prefix, size_t len)
{
    if (len < 2 || len > MAX_PREFIX || prefix[0] != '/' || prefix[len - 1] == '/')
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)prefix[i];
        if (c < 0x20 || c == 0x7f || c == '?' || c == '#' ||
            (c == '/' && prefix[i + 1] == '/'))
            return false;
    }
    return true;
}

mph_err_t mph_web_route(mph_app_t *app, const char *method, const char *prefix,
                        mph_web_handler_fn *fn, void *opaque)
{
    if (!app || !fn || !method || !prefix)
        return MPH_ERR_INVALID;
    if (strcmp(method, "GET") != 0) {
        mph_log(MPH_LOG_ERROR, "mph_web_route %s: method '%s': only GET routes exist (HEAD "
                "is answered by the GET handler)", prefix, method);
        return MPH_ERR_INVALID;
    }
    size_t len = strlen(prefix);
    if (!prefix_ok(prefix, len)) {
        mph_log(MPH_LOG_ERROR, "mph_web_route: prefix '%.300s' must start with '/', have no "
                "trailing '/', no \"//\", '?', '#' or control character, and at most %d bytes",
                prefix, MAX_PREFIX);
        return MPH_ERR_INVALID;
    }
    for (size_t i = 0; i < sizeof reserved_prefixes / sizeof reserved_prefixes[0]; i++) {
        const char *r = reserved_prefixes[i];
        if (under(prefix, len, r, strlen(r))) {
            mph_log(MPH_LOG_ERROR, "mph_web_route: prefix '%s' is reserved by the built-in "
                    "route %s", prefix, r);
            return MPH_ERR_EXISTS;
        }
    }
    if (ck_pr_load_int(&app->state) != APP_NEW) {
        mph_log(MPH_LOG_ERROR, "mph_web_route %s: declare routes before mph_app_start", prefix);
        return MPH_ERR_STATE;
    }
    struct mph__web_routes *r = app->web_routes;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MPH_ERR_NOMEM;
        if (mph_app_keep(app, r, routes_free) != MPH_OK) {
            free(r);
            return MPH_ERR_NOMEM;
        }
        app->web_routes = r;
    }
    for (size_t i = 0; i < r->n; i++)
        if (r->v[i].len == len && memcmp(r->v[i].prefix, prefix, len) == 0) {
            mph_log(MPH_LOG_ERROR, "mph_web_route: prefix '%s' is declared already", prefix);
            return MPH_ERR_EXISTS;
        }
    web_route_t *v = realloc(r->v, (r->n + 1) * sizeof *v);
    if (!v)
        return MPH_ERR_NOMEM;
    r->v = v;
    char *copy = strdup(prefix);
    if (!copy)
        return MPH_ERR_NOMEM;
    v[r->n++] = (web_route_t){copy, len, fn, opaque};
    return MPH_OK;
}

/* The declared route with the longest prefix the decoded path lies under,
 * or NULL. @locality web */
static const web_route_t *find_route(const struct mph__web *web, const mph__http_request_t *req)
{
    const struct mph__web_routes *r = web->app->web_routes;
    if (!r)
        return NULL;
    const char *path = mph__http_request_path(req);
    size_t len = mph__http_request_path_len(req);
    const web_route_t *best = NULL;
    for (size_t i = 0; i < r->n; i++)
        if (under(path, len, r->v[i].prefix, r->v[i].len) && (!best || r->v[i].len > best->len))
            best = &r->v[i];
    return best;
}

static void route_user(struct mph__web *web, const web_route_t *route,
                       const mph__http_request_t *req, mph__http_response_t *resp)
{
    struct mph_web_request wreq = {req, route->len};
    struct mph_web_response wresp = {resp, 0, false, MPH_OK};
    int64_t t0 = mph_clock_mono_ns();
    mph_err_t err = route->fn(&wreq, &wresp, route->opaque);
    int64_t ms = (mph_clock_mono_ns() - t0) / 1000000;
    if (ms >= SLOW_HANDLER_MS)
        mph_log_limited(&web->app->web_routes->slow_lim, 10000, MPH_LOG_WARN,
                        "web route %s took %lld ms: every request waited for it (keep "
                        "handlers under %d ms)",
                        route->prefix, (long long)ms, SLOW_HANDLER_MS);
    if (!err && wresp.sticky)
        err = wresp.sticky;
    if (!err && !wresp.status_set)
        err = MPH_ERR_STATE;
    if (!err)
        return;
    char msg[400];
    if (err == MPH_ERR_STATE && !wresp.sticky)
        snprintf(msg, sizeof msg, "%s: the handler set no status", route->prefix);
    else if (err == MPH_ERR_RANGE && wresp.sticky == MPH_ERR_RANGE)
        snprintf(msg, sizeof msg, "%s: response body over %u bytes", route->prefix,
                 MPH_WEB_MAX_BODY);
    else
        snprintf(msg, sizeof msg, "%s: %s", route->prefix, mph_err_str(err));
    answer_error(resp, 500, msg);
}

const char *mph_web_request_method(const mph_web_request_t *req)
{
    return mph__http_request_method(req->req);
}

const char *mph_web_request_path(const mph_web_request_t *req, size_t *len)
{
    if (len)
        *len = mph__http_request_path_len(req->req);
    return mph__http_request_path(req->req);
}

const char *mph_web_request_subpath(const mph_web_request_t *req, size_t *len)
{
    if (len)
        *len = mph__http_request_path_len(req->req) - req->prefix_len;
    return mph__http_request_path(req->req) + req->prefix_len;
}

const char *mph_web_request_raw_path(const mph_web_request_t *req)
{
    return mph__http_request_raw_path(req->req);
}

const char *mph_web_request_query(const mph_web_request_t *req, const char *name, size_t *len)
{
    return name ? mph__http_request_query(req->req, name, len) : NULL;
}

const char *mph_web_request_header(const mph_web_request_t *req, const char *name, size_t *len)
{
    return name ? mph__http_request_header(req->req, name, len) : NULL;
}

mph_err_t mph_web_response_set_status(mph_web_response_t *resp, unsigned status)
{
    mph_err_t err = mph__http_response_set_status(resp->resp, status);
    if (!err)
        resp->status_set = true;
    return err;
}

mph_err_t mph_web_response_set_content_type(mph_web_response_t *resp, const char *type)
{
    return type ? mph__http_response_set_content_type(resp->resp, type) : MPH_ERR_INVALID;
}

/* Records the first body error: the client gets 500 whatever follows. */
static mph_err_t body_err(mph_web_response_t *resp, mph_err_t err)
{
    if (err && !resp->sticky)
        resp->sticky = err;
    return err;
}

mph_err_t mph_web_response_set_body(mph_web_response_t *resp, const void *data, size_t len)
{
    if (len > MPH_WEB_MAX_BODY)
        return body_err(resp, MPH_ERR_RANGE);
    if (len && !data)
        return MPH_ERR_INVALID;
    mph_err_t err = mph__http_response_set_body(resp->resp, data, len);
    if (!err)
        resp->body_len = len;
    return body_err(resp, err);
}

mph_err_t mph_web_response_append(mph_web_response_t *resp, const void *data, size_t len)
{
    if (len > MPH_WEB_MAX_BODY - resp->body_len)
        return body_err(resp, MPH_ERR_RANGE);
    if (len && !data)
        return MPH_ERR_INVALID;
    mph_err_t err = mph__http_response_append(resp->resp, data, len);
    if (!err)
        resp->body_len += len;
    return body_err(resp, err);
}

mph_err_t mph_web_response_appendf(mph_web_response_t *resp, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return MPH_ERR_INVALID;
    if ((size_t)n < sizeof small)
        return mph_web_response_append(resp, small, (size_t)n);
    if ((size_t)n > MPH_WEB_MAX_BODY - resp->body_len)
        return body_err(resp, MPH_ERR_RANGE);
    char *big = malloc((size_t)n + 1);
    if (!big)
        return body_err(resp, MPH_ERR_NOMEM);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    mph_err_t err = mph_web_response_append(resp, big, (size_t)n);
    free(big);
    return err;
}

mph_err_t mph_web_response_add_header(mph_web_response_t *resp, const char *name,
                                      const char *value)
{
    if (!name || !value)
        return MPH_ERR_INVALID;
    return mph__http_response_add_header(resp->resp, name, value);
}

/* The decoded path is exactly route (a %00 in the path makes it longer
 * than its C string: "/stats%00x" is no route). */
static bool path_is(const mph__http_request_t *req, const char *route)
{
    return mph__http_request_path_len(req) == strlen(route) &&
           strcmp(mph__http_request_path(req), route) == 0;
}

static void handle(void *opaque, const mph__http_request_t *req,
                   mph__http_response_t *resp)
{
    struct mph__web *web = opaque;
    const web_route_t *user;
    if (path_is(req, "/") || path_is(req, "/index.html")) {
        mph__web_page(web->app, resp);
    } else if (path_is(req, "/stats")) {
        route_stats(web, resp);
    } else if (path_is(req, "/metrics")) {
        route_metrics(web, resp);
    } else if (path_is(req, "/health")) {
        if (mph_app_running(web->app))
            answer(resp, 200, "text/plain; charset=utf-8", "ok\n");
        else
            answer(resp, 503, "text/plain; charset=utf-8", "stopped\n");
    } else if (path_is(req, "/ready")) {
        if (mph_app_running(web->app) && ck_pr_load_int(&web->app->ready) == 1 &&
            mph__globals_ready(web->app))
            answer(resp, 200, "text/plain; charset=utf-8", "ready\n");
        else
            answer(resp, 503, "text/plain; charset=utf-8", "not ready\n");
    } else if (path_is(req, "/router")) {
        route_router(web, resp);
    } else if (strncmp(mph__http_request_raw_path(req), "/tables/", 8) == 0) {
        route_table(web, req, resp);
    } else if ((user = find_route(web, req)) != NULL) {
        route_user(web, user, req, resp);
    } else {
        char msg[300];
        snprintf(msg, sizeof msg, "no such path: %.256s",
                 mph__http_request_raw_path(req));
        answer_error(resp, 404, msg);
    }
}

struct mph__web *mph__web_start(mph_app_t *app, char *errstr,
                                size_t errstr_size)
{
    const mph_conf_t *conf = mph_app_conf(app);
    if (!mph_conf_get_bool(conf, "web_enabled", true)) {
        if (errstr && errstr_size)
            errstr[0] = '\0';
        return NULL;
    }
    struct mph__web *web = calloc(1, sizeof *web);
    if (!web) {
        if (errstr && errstr_size)
            snprintf(errstr, errstr_size, "web: out of memory");
        return NULL;
    }
    web->app = app;
    const char *bind = mph_conf_get(conf, "web_bind");
    snprintf(web->bind, sizeof web->bind, "%s",
             bind && *bind ? bind : "127.0.0.1");
    int64_t port = mph_conf_get_int(conf, "web_port", 6066);
    int64_t max_conns = mph_conf_get_int(conf, "web_max_connections", 2048);
    int64_t per_address = mph_conf_get_int(conf, "web_max_per_address", 256);
    int64_t header_ms = mph_conf_get_int(conf, "web_header_timeout_ms", 10000);
    mph__http_config_t cfg = {
        .bind_address = web->bind,
        .port = (uint16_t)(port >= 0 && port <= 65535 ? port : 6066),
        .max_connections =
            (unsigned)(max_conns >= 1 && max_conns <= 65536 ? max_conns : 0),
        .max_connections_per_address =
            (unsigned)(per_address >= 1 && per_address <= 65536 ? per_address
                                                                : 0),
        .header_timeout_ms =
            (unsigned)(header_ms >= 100 && header_ms <= 3600000 ? header_ms
                                                                : 0),
        .handler = handle,
        .opaque = web,
    };
    char why[256] = "";
    web->srv = mph__http_server_new(&cfg, why, sizeof why);
    if (!web->srv) {
        if (errstr && errstr_size)
            snprintf(errstr, errstr_size, "web view on %s:%d: %s", web->bind,
                     (int)cfg.port, why);
        free(web);
        return NULL;
    }
    web->port = mph__http_server_port(web->srv);
    mph_log(MPH_LOG_INFO, "web view at http://%s:%d/", web->bind, web->port);
    return web;
}

void mph__web_stop(struct mph__web *web)
{
    if (!web)
        return;
    mph__http_server_destroy(web->srv);
    free(web);
}

int mph__web_port(const struct mph__web *web)
{
    return web ? web->port : -1;
}

unsigned mph__web_connections(const struct mph__web *web)
{
    return web ? mph__http_server_connections(web->srv) : 0;
}
