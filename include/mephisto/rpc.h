/*
 * mephisto/rpc.h — asking an agent (Faust's agent.ask() and agent.cast()).
 *
 * mph_agent_ask() sends a request record to the agent's topic (of several,
 * the one declared first on the app), on the partition its key maps to (murmur2, as the
 * Java client), so the process that owns that partition — the one holding
 * its table shards — handles it. The request carries two headers:
 *   mph.reply_to        the asking process's reply topic
 *   mph.correlation_id  16 lowercase hex digits naming the ask
 * The agent answers with mph_event_reply(); the reply goes to partition 0
 * of the reply topic with the same correlation id header.
 *
 * Reply topics: with rpc_enabled=true every process creates, at start, its
 * own single-partition topic `<app_id>-reply-<instance>` and reads it on one
 * thread (the app's reply thread), from the end it had at start. instance
 * is group_instance_id when set — the topic is then kept on stop and reused
 * by the next start, which ignores the replies already in it — else a
 * random id per start, and the topic is deleted on a graceful stop (a
 * process killed leaves it behind; it holds one hour of replies,
 * retention.ms=3600000).
 *
 * Guarantees: the request is delivered at least once (an agent may see it
 * twice after a failure); the caller's callback runs exactly once per
 * successful mph_agent_ask() call: with the first reply, or with
 * MPH_ERR_TIMEOUT when none came within timeout_ms, or with the error that
 * failed the request's delivery, or with MPH_ERR_STOPPED when the app
 * stops first. Replies arriving after that are counted (late), replies to
 * asks this process never made are counted (unknown); neither reaches a
 * callback. Exactly-once is not promised for RPC.
 */
#ifndef MEPHISTO_RPC_H
#define MEPHISTO_RPC_H

#include "mephisto/agent.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The outcome of an ask: err MPH_OK with the reply's value (borrowed until
 * the callback returns; NULL with length 0 for an empty reply), or
 * MPH_ERR_TIMEOUT, MPH_ERR_STOPPED, or a delivery error of the request
 * (value NULL). Runs on the app's reply thread (MPH_ERR_STOPPED: on the
 * thread stopping the app; a delivery error: on the coordinator thread).
 * Must not block long: other replies wait. */
typedef void(mph_reply_fn)(mph_err_t err, const void *value, size_t value_len,
                           void *opaque);

/* Asks agent (declared on app) with key and value (copied). Returns once
 * the request is queued; reply_cb fires once later (see above). It never
 * fires when the call returns an error: MPH_ERR_STATE (app not running, or
 * rpc_enabled=false), MPH_ERR_INVALID (agent of another app, timeout_ms <
 * 1, NULL reply_cb), MPH_ERR_FULL (producer queue full for 1 s),
 * MPH_ERR_NOMEM. A NULL key picks a partition round-robin.
 * @locality any, including agent callbacks and reply callbacks */
MPH_EXPORT mph_err_t mph_agent_ask(mph_app_t *app, mph_agent_t *agent,
                                   const void *key, size_t key_len,
                                   const void *value, size_t value_len,
                                   int timeout_ms, mph_reply_fn *reply_cb,
                                   void *opaque);

/* mph_agent_ask() and wait for its outcome: MPH_OK with *reply an owned
 * copy of the reply (free with free(); a 1-byte allocation for an empty
 * reply), or the callback's error, or the call's. @locality any thread
 * that is not the reply thread nor a worker of app (a worker waiting
 * cannot answer its own partitions) */
MPH_EXPORT mph_err_t mph_agent_ask_wait(mph_app_t *app, mph_agent_t *agent,
                                        const void *key, size_t key_len,
                                        const void *value, size_t value_len,
                                        int timeout_ms, void **reply,
                                        size_t *reply_len);

/* Sends a request that wants no reply (no reply headers; rpc_enabled not
 * needed). Returns once queued; at-least-once delivery. Errors as mph_send.
 * @locality any */
MPH_EXPORT mph_err_t mph_agent_cast(mph_app_t *app, mph_agent_t *agent,
                                    const void *key, size_t key_len,
                                    const void *value, size_t value_len);

/* Inside the agent's callback: answers the event's request with value
 * (copied). A tracked send: the request is not committed before the reply
 * was acknowledged. A reply the broker refuses because the asker's topic
 * is gone is counted and dropped (the ask times out). MPH_ERR_NOENT when
 * the event asked for no reply (a cast or a plain record) or its reply
 * topic is known not to exist; otherwise errors as mph_event_send.
 * @locality worker (during ev's callback) */
MPH_EXPORT mph_err_t mph_event_reply(mph_event_t *ev, const void *value,
                                     size_t value_len);
/* True when the event is a request that wants a reply. */
MPH_EXPORT bool mph_event_wants_reply(const mph_event_t *ev);

/* This process's reply topic (borrowed; NULL when rpc_enabled=false or not
 * started). */
MPH_EXPORT const char *mph_rpc_reply_topic(const mph_app_t *app);

/* RPC counters of this process since start: "asks", "replies" (completed
 * with a reply), "timeouts", "late" (replies to asks already completed:
 * timed out, or a request answered twice), "unknown" (replies naming no ask
 * of this process), "errors" (asks failed by delivery or stop), "pending".
 * 0 for an unknown name. @locality any */
MPH_EXPORT uint64_t mph_rpc_stat(const mph_app_t *app, const char *name);

#ifdef __cplusplus
}
#endif
#endif
