/*
 * Agent RPC inside the runtime (rpc.c): the app starts this process's reply
 * topic and reply thread after its topics exist (rpc_enabled=true) and stops
 * them at teardown; the counters live until the app is destroyed.
 */
#ifndef MPH_RUNTIME_RPC_H
#define MPH_RUNTIME_RPC_H

#include "mephisto/rpc.h"

/* Creates (or reuses) the reply topic and starts the reply thread; a no-op
 * when rpc_enabled=false. @locality controlling thread */
mph_err_t mph__rpc_start(mph_app_t *app, char *errstr, size_t errstr_size);
/* Stops taking asks, joins the reply thread, ends every pending ask with
 * MPH_ERR_STOPPED, deletes a per-start reply topic. Idempotent; needs the
 * app producer. @locality controlling thread */
void mph__rpc_stop(mph_app_t *app);
/* Frees the RPC state (after the app producer is gone). */
void mph__rpc_free(mph_app_t *app);

#endif
