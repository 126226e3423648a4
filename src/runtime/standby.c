/*
 * DESIGN — standby replicas (num_standby_replicas).
 *
 * A standby is a warm copy of a table shard kept by a member that does not
 * own the partition, so that a take-over replays only the changelog's tail.
 *
 * Placement. librdkafka has no public assignor plug-in, so every member
 * computes the same placement from the same input: after each rebalance
 * the coordinator asks the broker for the group's description
 * (DescribeConsumerGroups on the app's producer handle, answered on a queue
 * this file polls from the coordinator's loop). Members are put in one
 * fixed order: the range assignor's (group.instance.id, else member id);
 * a partition's standbys go to the members after its owner in that order
 * that do not own it, at most N (mph__standby_place). Under the range
 * assignor (mephisto's default) the first of them are the members the
 * assignor would give the partition to if one member left (its owner
 * first): a plain "next member" misses whenever the ranges shift (with 3
 * members and 8 partitions, the partition at the edge of the dead member's
 * range goes to the member before it, whose copy would be elsewhere), and
 * then a take-over replays the whole changelog partition. A description taken while the group is not Stable,
 * or that does not list this member yet, is asked again 500 ms later. A
 * partition this member owns (per its own consumer) is never a standby
 * here, whatever the description says: a standby is never on an owner.
 *
 * Work. The standby shards of this member are jobs of a restorer in
 * follow mode (restore.c, recovery.c): one thread with one group-less
 * consumer per placement change, tailing the changelog partitions (read
 * committed under exactly_once, as every consumer of mephisto) into shards
 * of the table's own store kind, with a checkpoint written at each end of
 * partition and at least every second. Nothing runs on the event path.
 *
 * Ownership and take-over. A standby shard comes from the parking lot (or
 * is created there) and is marked lent while its run owns it, exactly like
 * a restoring shard. When the group gives this member the partition, the
 * assignment first stops the standby (mph__standby_taken: cancel flag,
 * one poll, the pending batch written), which parks the shard with its
 * checkpoint; the usual restore then takes it from the parking lot and
 * replays only what follows, and the shard reaches the worker in its
 * MSG_ASSIGN like any other. A placement that moves the standby away stops
 * it the same way; the parked shard stays warm for a later return.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ck_pr.h>

#include "mephisto/log.h"
#include "runtime/restore.h"
#include "runtime/standby.h"
#include "runtime/table.h"

/* Under the range assignor, the member that gets partition p of nparts
 * when the members in order are those of 0..nmembers-1 but `gone`. */
static size_t range_heir(size_t nmembers, int32_t nparts, size_t gone, int32_t p)
{
    size_t m = nmembers - 1, per = (size_t)nparts / m, extra = (size_t)nparts % m;
    size_t start = 0;
    for (size_t i = 0, idx = 0; idx < nmembers; idx++) {
        if (idx == gone)
            continue;
        size_t cnt = per + (i < extra ? 1 : 0);
        if ((size_t)p >= start && (size_t)p < start + cnt)
            return idx;
        start += cnt;
        i++;
    }
    return nmembers;
}

int mph__standby_place(size_t nmembers, int32_t nparts, const bool *owned, int n, bool range,
                       int *out)
{
    int placed = 0;
    for (int32_t p = 0; p < nparts; p++) {
        int *o = &out[(size_t)p * (size_t)n];
        for (int k = 0; k < n; k++)
            o[k] = -1;
        size_t owner = nmembers;
        for (size_t m = 0; m < nmembers && owner == nmembers; m++)
            if (owned[m * (size_t)nparts + (size_t)p])
                owner = m;
        if (owner == nmembers)
            continue;
        int k = 0;
        /* range: first the members the assignor gives p to when one member
         * leaves (its owner first), so that a take-over finds a standby. */
        for (size_t step = 0; range && nmembers > 1 && step < nmembers && k < n; step++) {
            size_t gone = (owner + step) % nmembers;
            size_t h = range_heir(nmembers, nparts, gone, p);
            bool dup = h >= nmembers || owned[h * (size_t)nparts + (size_t)p];
            for (int j = 0; j < k && !dup; j++)
                dup = o[j] == (int)h;
            if (!dup) {
                o[k++] = (int)h;
                placed++;
            }
        }
        for (size_t step = 1; step < nmembers && k < n; step++) {
            size_t m = (owner + step) % nmembers;
            bool dup = owned[m * (size_t)nparts + (size_t)p];
            for (int j = 0; j < k && !dup; j++)
                dup = o[j] == (int)m;
            if (dup)
                continue;
            o[k++] = (int)m;
            placed++;
        }
    }
    return placed;
}

struct mph__standby {
    mph_app_t *app;
    int n;                 /* num_standby_replicas */
    int32_t nparts;        /* the most partitions of any table */
    mph__restorer_t *r;    /* follow mode */
    rd_kafka_queue_t *adminq;
    bool asking;           /* a description is on the way */
    int64_t ask_at_ns;     /* ask (again) from then; 0: no */
    int tries;
    bool *mine;            /* [nparts]: a standby of p runs here */
    bool range;            /* assignor=range: place on the assignor's heirs first */
};

mph__standby_t *mph__standby_new(mph_app_t *app, int wake_fd)
{
    mph__standby_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->app = app;
    s->n = (int)mph_conf_get_int(app->conf, "num_standby_replicas", 0);
    const char *assignor = mph_conf_get(app->conf, "assignor");
    s->range = !assignor || !*assignor || !strcmp(assignor, "range");
    for (size_t i = 0; i < app->ntables; i++)
        if (app->tables[i]->partitions > s->nparts)
            s->nparts = app->tables[i]->partitions;
    if (s->n <= 0 || s->nparts <= 0) {
        s->n = 0;
        return s;
    }
    s->mine = calloc((size_t)s->nparts, sizeof *s->mine);
    s->r = mph__restorer_new(app, wake_fd, true);
    if (!s->mine || !s->r) {
        mph__restorer_destroy(s->r);
        free(s->mine);
        free(s);
        return NULL;
    }
    return s;
}

void mph__standby_stop(mph__standby_t *s)
{
    if (!s || !s->n)
        return;
    mph__restorer_cancel(s->r, NULL);
    memset(s->mine, 0, (size_t)s->nparts * sizeof *s->mine);
}

void mph__standby_destroy(mph__standby_t *s)
{
    if (!s)
        return;
    mph__restorer_destroy(s->r);
    if (s->adminq)
        rd_kafka_queue_destroy(s->adminq);
    free(s->mine);
    free(s);
}

void mph__standby_rebalanced(mph__standby_t *s)
{
    if (!s || !s->n)
        return;
    s->ask_at_ns = mph_clock_mono_ns();
    s->tries = 0;
}

void mph__standby_taken(mph__standby_t *s, const rd_kafka_topic_partition_list_t *parts)
{
    if (!s || !s->n)
        return;
    int32_t *nums = malloc(((size_t)parts->cnt + 1) * sizeof *nums);
    size_t nn = 0;
    for (int i = 0; nums && i < parts->cnt; i++) {
        int32_t p = parts->elems[i].partition;
        if (p >= 0 && p < s->nparts && s->mine[p]) {
            s->mine[p] = false;
            nums[nn++] = p;
        }
    }
    if (nn) {
        int stopped = mph__restorer_cancel_numbers(s->r, nums, nn);
        mph_log(MPH_LOG_INFO, "taking over %zu partitions from their standby replicas here "
                              "(%d standby jobs stopped)", nn, stopped);
    }
    free(nums);
}

static void ask(mph__standby_t *s)
{
    mph_app_t *app = s->app;
    if (!s->adminq)
        s->adminq = rd_kafka_queue_new(app->producer);
    if (!s->adminq)
        return;
    rd_kafka_AdminOptions_t *o =
        rd_kafka_AdminOptions_new(app->producer, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS);
    if (!o)
        return;
    char err[256];
    rd_kafka_AdminOptions_set_request_timeout(o, 10000, err, sizeof err);
    const char *group = app->app_id;
    rd_kafka_DescribeConsumerGroups(app->producer, &group, 1, o, s->adminq);
    rd_kafka_AdminOptions_destroy(o);
    s->asking = true;
    s->ask_at_ns = 0;
    s->tries++;
}

static void ask_later(mph__standby_t *s, const char *why)
{
    if (s->tries >= 40) {
        mph_log(MPH_LOG_WARN, "standby replicas: cannot read the group's assignments (%s); "
                              "keeping the standbys as they are until the next rebalance", why);
        return;
    }
    s->ask_at_ns = mph_clock_mono_ns() + 500LL * 1000000;
}

typedef struct member {
    const char *id;     /* the sort key */
    const char *member; /* the member id */
    const rd_kafka_MemberDescription_t *d;
} member_t;

static int by_id(const void *a, const void *b)
{
    return strcmp(((const member_t *)a)->id, ((const member_t *)b)->id);
}

/* Starts and stops standbys so that exactly the partitions of want run. */
static void apply(mph__standby_t *s, const bool *want)
{
    mph_app_t *app = s->app;
    int32_t *stop = malloc((size_t)s->nparts * sizeof *stop);
    size_t nstop = 0;
    int started = 0;
    char list[512] = "";
    size_t len = 0;
    for (int32_t p = 0; p < s->nparts; p++) {
        if (want[p] && len + 16 < sizeof list)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%d", len ? "," : "", p);
        if (s->mine[p] && !want[p] && stop) {
            stop[nstop++] = p;
            s->mine[p] = false;
        }
    }
    if (nstop)
        mph__restorer_cancel_numbers(s->r, stop, nstop);
    free(stop);
    for (int32_t p = 0; p < s->nparts; p++) {
        if (!want[p] || s->mine[p])
            continue;
        int w = (int)(p % app->nworkers);
        char err[256] = "";
        mph__shard_set_t *set = mph__tables_handover(app, w, &p, 1, err, sizeof err);
        if (!set) {
            mph_log(MPH_LOG_WARN, "standby of partition %d: %s", (int)p, err);
            continue;
        }
        s->mine[p] = true;
        if (set->n == 0) { /* its shards are lent already (a late hand-back) */
            free(set);
            continue;
        }
        if (mph__restorer_add(s->r, w, p, NULL, 0, NULL, set) != MPH_OK) {
            mph__tables_park(app, set, false);
            s->mine[p] = false;
            continue;
        }
        started++;
    }
    if (started) {
        char err[256] = "";
        if (mph__restorer_start(s->r, err, sizeof err) != MPH_OK) {
            mph_log(MPH_LOG_WARN, "standby replicas: %s", err);
            for (int32_t p = 0; p < s->nparts; p++)
                s->mine[p] = false;
            mph__restorer_cancel(s->r, NULL);
        }
    }
    mph_log(MPH_LOG_INFO, "standby replicas here (num_standby_replicas=%d): partitions [%s]%s",
            s->n, list, nstop ? " (some moved away)" : "");
}

static void answer(mph__standby_t *s, rd_kafka_event_t *ev)
{
    mph_app_t *app = s->app;
    if (rd_kafka_event_error(ev)) {
        ask_later(s, rd_kafka_event_error_string(ev));
        return;
    }
    const rd_kafka_DescribeConsumerGroups_result_t *res =
        rd_kafka_event_DescribeConsumerGroups_result(ev);
    size_t ng = 0;
    const rd_kafka_ConsumerGroupDescription_t **gs =
        res ? rd_kafka_DescribeConsumerGroups_result_groups(res, &ng) : NULL;
    if (ng != 1) {
        ask_later(s, "no group in the answer");
        return;
    }
    const rd_kafka_ConsumerGroupDescription_t *g = gs[0];
    const rd_kafka_error_t *ge = rd_kafka_ConsumerGroupDescription_error(g);
    if (ge) {
        ask_later(s, rd_kafka_error_string(ge));
        return;
    }
    if (rd_kafka_ConsumerGroupDescription_state(g) != RD_KAFKA_CONSUMER_GROUP_STATE_STABLE) {
        ask_later(s, "the group is rebalancing");
        return;
    }
    size_t nm = rd_kafka_ConsumerGroupDescription_member_count(g);
    member_t *ms = calloc(nm ? nm : 1, sizeof *ms);
    bool *owned = calloc((nm ? nm : 1) * (size_t)s->nparts, sizeof *owned);
    int *out = calloc((size_t)s->nparts * (size_t)s->n, sizeof *out);
    bool *want = calloc((size_t)s->nparts, sizeof *want);
    char *me = rd_kafka_memberid(app->consumer);
    rd_kafka_topic_partition_list_t *mine = NULL;
    if (!ms || !owned || !out || !want || !me) {
        ask_later(s, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < nm; i++) {
        ms[i].d = rd_kafka_ConsumerGroupDescription_member(g, i);
        /* The range assignor's member order: group.instance.id (static
         * members, as mephisto's are), else the member id. */
        ms[i].member = rd_kafka_MemberDescription_consumer_id(ms[i].d);
        ms[i].id = rd_kafka_MemberDescription_group_instance_id(ms[i].d);
        if (!ms[i].member)
            ms[i].member = "";
        if (!ms[i].id || !*ms[i].id)
            ms[i].id = ms[i].member;
    }
    qsort(ms, nm, sizeof *ms, by_id);
    size_t self = nm;
    for (size_t i = 0; i < nm; i++) {
        if (!strcmp(ms[i].member, me))
            self = i;
        const rd_kafka_MemberAssignment_t *a = rd_kafka_MemberDescription_assignment(ms[i].d);
        const rd_kafka_topic_partition_list_t *l = a ? rd_kafka_MemberAssignment_partitions(a)
                                                     : NULL;
        for (int k = 0; l && k < l->cnt; k++) {
            int32_t p = l->elems[k].partition;
            if (p >= 0 && p < s->nparts && mph__app_topic_index(app, l->elems[k].topic) >= 0)
                owned[i * (size_t)s->nparts + (size_t)p] = true;
        }
    }
    if (self == nm) {
        ask_later(s, "this member is not in the group's description yet");
        goto done;
    }
    mph__standby_place(nm, s->nparts, owned, s->n, s->range, out);
    for (int32_t p = 0; p < s->nparts; p++)
        for (int k = 0; k < s->n; k++)
            want[p] |= out[(size_t)p * (size_t)s->n + (size_t)k] == (int)self;
    /* Never a standby of a partition this member owns. */
    if (rd_kafka_assignment(app->consumer, &mine) == RD_KAFKA_RESP_ERR_NO_ERROR && mine)
        for (int k = 0; k < mine->cnt; k++)
            if (mine->elems[k].partition >= 0 && mine->elems[k].partition < s->nparts)
                want[mine->elems[k].partition] = false;
    if (nm == 1)
        mph_log(MPH_LOG_WARN, "num_standby_replicas=%d but the group has only this member: no "
                              "standby replicas until another member joins", s->n);
    apply(s, want);
done:
    if (mine)
        rd_kafka_topic_partition_list_destroy(mine);
    if (me)
        rd_kafka_mem_free(app->consumer, me);
    free(ms);
    free(owned);
    free(out);
    free(want);
}

void mph__standby_poll(mph__standby_t *s)
{
    if (!s || !s->n)
        return;
    if (!s->asking && s->ask_at_ns && mph_clock_mono_ns() >= s->ask_at_ns)
        ask(s);
    rd_kafka_event_t *ev;
    while (s->adminq && (ev = rd_kafka_queue_poll(s->adminq, 0))) {
        if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_DESCRIBECONSUMERGROUPS_RESULT) {
            s->asking = false;
            /* A newer rebalance asks again anyway: its answer decides. */
            if (!s->ask_at_ns)
                answer(s, ev);
        }
        rd_kafka_event_destroy(ev);
    }
    if (mph__restorer_drop_failed(s->r)) {
        /* Their partitions are free again: the next description restarts them. */
        for (int32_t p = 0; p < s->nparts; p++)
            s->mine[p] = false;
        mph__restorer_cancel(s->r, NULL);
        mph__standby_rebalanced(s);
    }
}

size_t mph__standby_stats(mph__standby_t *s, mph__restore_stat_t *out, size_t max)
{
    if (!s || !s->n)
        return 0;
    return mph__restorer_stats(s->r, out, max);
}
