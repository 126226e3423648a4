/*
 * Global tables inside the runtime (global_table.c): the app starts one
 * reader thread per global table after its topics exist and stops them at
 * teardown; the web view asks whether all of them bootstrapped.
 */
#ifndef MPH_RUNTIME_GLOBAL_TABLE_H
#define MPH_RUNTIME_GLOBAL_TABLE_H

#include "mephisto/global.h"

/* Starts the reader of every global table of app (their changelogs exist:
 * called after the app's topics were prepared). On failure none runs.
 * @locality controlling thread */
mph_err_t mph__globals_start(mph_app_t *app, char *errstr, size_t errstr_size);
/* Stops and joins the readers; the copies stay readable. Idempotent.
 * @locality controlling thread */
void mph__globals_stop(mph_app_t *app);
/* True when every global table of app is ready (or there is none).
 * @locality any */
bool mph__globals_ready(const mph_app_t *app);
/* Frees every global table of app (readers stopped). @locality controlling */
void mph__globals_free(mph_app_t *app);

#endif
