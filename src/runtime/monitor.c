/*
 * Sensors: allocation of the per-worker monitors (see monitor.h for the
 * recording side and its thread rule).
 */
#include <stdlib.h>

#include "runtime/monitor.h"

mph__monitor_t *mph__monitor_new(const mph_app_t *app, int worker, size_t ntables)
{
    mph__monitor_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->worker = worker;
    m->ntopics = app->ntopics;
    m->nagents = app->nagents;
    m->ntables = ntables;
    size_t nt = app->ntopics ? app->ntopics : 1, na = app->nagents ? app->nagents : 1;
    m->topic_in = calloc(nt, sizeof *m->topic_in);
    m->topic_out = calloc(nt, sizeof *m->topic_out);
    m->agent_events = calloc(na, sizeof *m->agent_events);
    m->agent_errors = calloc(na, sizeof *m->agent_errors);
    m->table_ops = calloc(ntables ? ntables : 1, sizeof *m->table_ops);
    m->parts = calloc(nt, sizeof *m->parts);
    if (!m->topic_in || !m->topic_out || !m->agent_events || !m->agent_errors || !m->table_ops ||
        !m->parts)
        goto fail;
    for (size_t t = 0; t < app->ntopics; t++) {
        int n = app->topics[t]->partitions > 0 ? app->topics[t]->partitions : 1;
        m->parts[t] = calloc((size_t)n, sizeof **m->parts);
        if (!m->parts[t])
            goto fail;
        for (int p = 0; p < n; p++) {
            m->parts[t][p].read_offset = -1;
            m->parts[t][p].commit_point = -1;
        }
    }
    mph__histogram_init(&m->processing);
    mph__histogram_init(&m->send_latency);
    return m;
fail:
    mph__monitor_destroy(m);
    return NULL;
}

void mph__monitor_destroy(mph__monitor_t *m)
{
    if (!m)
        return;
    if (m->parts)
        for (size_t t = 0; t < m->ntopics; t++)
            free(m->parts[t]);
    free(m->parts);
    free(m->topic_in);
    free(m->topic_out);
    free(m->agent_events);
    free(m->agent_errors);
    free(m->table_ops);
    free(m);
}
