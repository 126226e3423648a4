/*
 * Per-partition punctuators, idle window closing and batching agents: the
 * declarations (agents, before start) and the worker side. See
 * punctuate.c.
 */
#ifndef MPH_RUNTIME_PUNCTUATE_H
#define MPH_RUNTIME_PUNCTUATE_H

#include "runtime/worker.h"

/* Counters of one punctuator or batching agent on one worker: written by
 * that worker only (ck_pr stores), summed by readers. One cache line. */
typedef struct mph__punct_ctr {
    uint64_t runs, overruns, errors;
    int64_t last_ms; /* wall clock of the last run, 0 none */
    uint64_t batches, batch_events, batch_errors;
    int64_t next_ms; /* wall punctuators: wall clock of the next run, 0 none */
} __attribute__((aligned(64))) mph__punct_ctr_t;

typedef struct mph__punct {
    mph_agent_t *agent;
    int64_t interval_ms;
    int flags; /* MPH_PUNCTUATE_WALL or MPH_PUNCTUATE_STREAM */
    mph_punctuate_fn *fn;
    void *opaque;
    mph__punct_ctr_t *ctr; /* [app->nworkers] */
} mph__punct_t;

/* Frees what an agent's punctuators and batch settings own. */
void mph__punct_agent_free(mph_agent_t *a);
/* Sums the counters of ctr[0..n) into out. @locality any */
void mph__punct_sum(const mph__punct_ctr_t *ctr, int n, mph__punct_ctr_t *out);

/* ---- the worker side; @locality the worker ---- */

/* Sets up w->pw when the app has punctuators, batching agents or
 * window_idle_close_ms (else leaves it NULL). */
mph_err_t mph__pw_open(mph__worker_t *w, char *errstr, size_t errstr_size);
void mph__pw_close(mph__worker_t *w);
/* A slot was added (its times start now) or is being removed (its pending
 * batches are dropped undelivered: their entries never close). */
void mph__pw_slot_added(mph__worker_t *w, uint32_t sid);
void mph__pw_slot_removed(mph__worker_t *w, uint32_t sid);
/* Notes record m processed on slot s at now_ns (stream time, idleness). */
void mph__pw_note(mph__worker_t *w, mph__slot_t *s, const rd_kafka_message_t *m,
                  int64_t now_ns);
/* Buffers the event being processed for batching agent a (its ack entry
 * is opened if needed and stays open). True when the batch took the
 * message (the caller must not destroy it). */
bool mph__pw_batch_add(mph__worker_t *w, mph_agent_t *a, struct mph_event *ev);
/* Delivers batches that are full. */
void mph__pw_batch_full(mph__worker_t *w);
/* Runs what is due at now_ns; returns the monotonic time at which
 * something is due next (INT64_MAX: nothing). */
int64_t mph__pw_run(mph__worker_t *w, int64_t now_ns);
/* Delivers every pending batch (before a commit, a hand-back or a stop). */
void mph__pw_flush_batches(mph__worker_t *w);
/* Drops every pending batch undelivered (exactly_once abort: its records
 * are read again). */
void mph__pw_drop_batches(mph__worker_t *w);
/* Makes rkm the current event of a batch being delivered (agent.c). */
void mph__event_batch_current(mph_event_t *ev, rd_kafka_message_t *rkm);
/* at_least_once with tables: while a commit waits for punctuator sends,
 * punctuators do not run (hold). */
void mph__pw_hold(mph__worker_t *w, bool hold);

#endif
