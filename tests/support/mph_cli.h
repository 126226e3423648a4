/*
 * Running the `mephisto` command as a subprocess in tests: where the build
 * is, spawning with stdout/stderr in files, waiting with a time limit, and
 * waiting for a line in its output. Shared by the CLI integration tests.
 *
 * The binary is $MEPHISTO_BUILD_DIR/mephisto (ctest sets the variable; run
 * by hand, the build directory is found from the test program's path,
 * <build>/tests/<program>). Every function fails the running Criterion test
 * on a setup error; none may be called from a forked child.
 */
#ifndef MPH_TEST_CLI_H
#define MPH_TEST_CLI_H

#include <limits.h>
#include <sys/types.h>

typedef struct mph_cli_proc {
    pid_t pid;
    char dir[PATH_MAX]; /* temp dir holding out and err */
    char out_path[PATH_MAX + 8], err_path[PATH_MAX + 8];
} mph_cli_proc_t;

typedef struct mph_cli_result {
    int status; /* exit code; 128 + n when killed by signal n */
    char *out, *err; /* owned: mph_cli_result_free */
    double secs;
} mph_cli_result_t;

/* The build directory, and files in it (borrowed, static storage). */
const char *mph_cli_build_dir(void);
const char *mph_cli_path(void);
/* <build>/examples/lib<name>.so; fails the test when it is not there. */
const char *mph_cli_plugin(const char *name);

/* The whole file as a NUL-terminated string (free it). */
char *mph_cli_slurp(const char *path);

/* Starts `mephisto args...` (args NULL-terminated) with stdout and stderr in
 * files under a temp dir named after tag, extra environment "NAME=value"
 * entries env (NULL-terminated, may be NULL), and stdin from stdin_fd when
 * >= 0 (the child then starts its own session, so a terminal there becomes
 * its controlling one), else from stdin_path (NULL: /dev/null). Everything
 * the child needs is prepared before fork(): the test process may run
 * librdkafka threads. */
void mph_cli_spawn(mph_cli_proc_t *p, const char *tag, const char *const *args,
                   const char *const *env, const char *stdin_path, int stdin_fd);
/* Waits for the process to end, at most timeout_ms (then kills it and fails
 * the test); collects its output and removes its temp dir. */
mph_cli_result_t mph_cli_finish(mph_cli_proc_t *p, int timeout_ms);
/* spawn + finish. */
mph_cli_result_t mph_cli_run(const char *tag, const char *const *args,
                             const char *const *env, const char *stdin_path,
                             int timeout_ms);
void mph_cli_result_free(mph_cli_result_t *r);

/* Waits until the file at path (the process's stdout or stderr) contains
 * needle and returns its text (free it); fails the test when the process
 * ends first or timeout_ms passes (killing it). */
char *mph_cli_wait_for(mph_cli_proc_t *p, const char *path, const char *needle,
                       int timeout_ms);

#endif
