/*
 * tools/cli/plugin.h — what the commands that read an app plugin share
 * (tables, agents, topics, table, reset, demo): loading the shared object,
 * the app_id its file name suggests, and building a declared-but-not-started
 * app from it.
 *
 * `mephisto worker` has its own copy of the loading steps (cmd_worker.c);
 * the messages and exit codes here are the same.
 */
#ifndef MPH_CLI_PLUGIN_H
#define MPH_CLI_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>

#include "cli.h"

/* The entry point every app plugin exports. */
typedef int(mph_cli_app_init_fn)(mph_app_t *app);

/* A loaded plugin with its declared app. Owned by the caller: release with
 * mph__cli_plugin_close(). */
typedef struct mph_cli_plugin {
    const char *path; /* as given (borrowed from argv) */
    void *handle;     /* dlopen() handle */
    mph_cli_app_init_fn *init;
    mph_app_t *app; /* declared by init, not started; NULL before */
} mph_cli_plugin_t;

/* dlopen()s path (a bare file name is taken from the current directory if it
 * is there, else where dlopen() looks) and finds mephisto_app_init. Returns
 * MPH_CLI_EXIT_OK, or MPH_CLI_EXIT_PLUGIN after printing why. */
int mph__cli_plugin_load(mph_cli_plugin_t *pl, const char *path);

/* The app_id a plugin's file name suggests: the base name without a leading
 * "lib" and without ".so" and what follows it (/x/libwordcount.so.1 ->
 * wordcount). */
void mph__cli_plugin_app_id(const char *path, char *buf, size_t size);

/* Sets app_id from the plugin's file name when conf has none. Returns false
 * after printing "<cmd>: ..." when the name makes no valid app_id. */
bool mph__cli_plugin_default_app_id(mph_conf_t *conf, const char *path,
                                    const char *cmd);

/* Loads the plugin, sets the default app_id, creates the app from conf
 * (taken over on success and on failure) and lets the plugin declare it.
 * The app is not started. Returns MPH_CLI_EXIT_OK, or an exit code after
 * printing why (2: bad settings, 3: plugin problem). On failure pl holds
 * nothing to release. */
int mph__cli_plugin_open(mph_cli_plugin_t *pl, const char *path,
                         mph_conf_t *conf, const char *cmd);

/* Destroys the app (stopping it if it runs) and unloads the plugin. A
 * zeroed pl is a no-op. */
void mph__cli_plugin_close(mph_cli_plugin_t *pl);

#endif
