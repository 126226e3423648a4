/*
 * tools/cli/cli.h — what the files of the `mephisto` command share: the
 * command table entry, the exit codes, a small option parser and the
 * assembly of a configuration from file, environment and flags.
 *
 * Every command is one function `int mph__cli_<name>(int argc, char **argv)`
 * (argv[0] is the command's name) plus a help printer, listed once in the
 * table in main.c. The CLI uses only the public headers of libmephisto.
 */
#ifndef MPH_CLI_H
#define MPH_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "mephisto.h"

/* Exit codes of every command; docs/cli.md and `mephisto --help` list them. */
enum mph_cli_exit {
    MPH_CLI_EXIT_OK = 0,     /* done, or stopped cleanly */
    MPH_CLI_EXIT_FAILED = 1, /* the app stopped on an error; records failed */
    MPH_CLI_EXIT_USAGE = 2,  /* bad usage or configuration */
    MPH_CLI_EXIT_PLUGIN = 3, /* the plugin cannot be loaded or initialised */
    MPH_CLI_EXIT_START = 4,  /* the app could not start (broker, topics) */
    MPH_CLI_EXIT_EXEC = 127, /* a helper program is missing (bench) */
    MPH_CLI_EXIT_INTERRUPTED = 130 /* a second SIGINT while stopping */
};

/* One subcommand. All strings static. */
typedef struct mph_cli_command {
    const char *name;
    const char *summary;               /* one line for `mephisto --help` */
    int (*run)(int argc, char **argv); /* returns the exit code */
    void (*help)(FILE *out);           /* `mephisto <name> --help` */
} mph_cli_command_t;

/* The commands (one file each). */
int mph__cli_worker(int argc, char **argv);
void mph__cli_worker_help(FILE *out);
int mph__cli_send(int argc, char **argv);
void mph__cli_send_help(FILE *out);
int mph__cli_bench(int argc, char **argv);
void mph__cli_bench_help(FILE *out);
int mph__cli_demo(int argc, char **argv);
void mph__cli_demo_help(FILE *out);
int mph__cli_tables(int argc, char **argv);
void mph__cli_tables_help(FILE *out);
int mph__cli_agents(int argc, char **argv);
void mph__cli_agents_help(FILE *out);
int mph__cli_topics(int argc, char **argv);
void mph__cli_topics_help(FILE *out);
int mph__cli_timers(int argc, char **argv);
void mph__cli_timers_help(FILE *out);
int mph__cli_table(int argc, char **argv);
void mph__cli_table_help(FILE *out);
int mph__cli_reset(int argc, char **argv);
void mph__cli_reset_help(FILE *out);

/* Prints "mephisto: <message>\n" on stderr as one line. */
void mph__cli_error(const char *fmt, ...) MPH_PRINTF(1, 2);

/* ---- option parsing ----
 * Options are "--name VALUE", "--name=VALUE", "-x VALUE" or flags without a
 * value; "--" ends the options; "-" alone and anything not starting with
 * '-' is a positional argument. Unlike getopt_long, names are never
 * abbreviated and every error is one line naming the command. */
typedef struct mph_cli_opt {
    const char *name; /* long name without "--" */
    char short_name;  /* 0: none */
    bool has_value;
} mph_cli_opt_t;

typedef struct mph_cli_args {
    const char *cmd; /* for messages: "worker" */
    int argc;
    char **argv;
    int next; /* index of the next argument to read */
    bool positional_only;
} mph_cli_args_t;

#define MPH_CLI_ARG_END        (-1)
#define MPH_CLI_ARG_POSITIONAL (-2)
#define MPH_CLI_ARG_ERROR      (-3)

/* Starts parsing argv[1..argc-1] (argv[0] is the command name). */
void mph__cli_args_init(mph_cli_args_t *a, const char *cmd, int argc,
                        char **argv);
/* The next argument: the index of the option in opts (its value, if it
 * takes one, in *value), MPH_CLI_ARG_POSITIONAL (the argument in *value),
 * MPH_CLI_ARG_END, or MPH_CLI_ARG_ERROR after printing why (unknown option,
 * missing value, value given to a flag). *value is borrowed from argv. */
int mph__cli_args_next(mph_cli_args_t *a, const mph_cli_opt_t *opts,
                       size_t nopts, const char **value);

/* ---- configuration ----
 * A setting given on the command line, applied after the file and the
 * environment in the order given. name NULL: value is "name=value" (--set). */
typedef struct mph_cli_setting {
    const char *flag; /* for messages: "--workers" */
    const char *name;
    const char *value;
} mph_cli_setting_t;

/* Builds a configuration: defaults, then `dflts` (name, value, ..., NULL;
 * may be NULL), then the file (if not NULL), then MEPHISTO_* variables, then
 * `flags` in order. Returns an owned conf, or NULL after printing the first
 * error (the setting's own message). */
mph_conf_t *mph__cli_conf_build(const char *const *dflts, const char *file,
                                const mph_cli_setting_t *flags, size_t nflags);

/* Applies log_level and log_format of conf to the process's logger, for the
 * lines written before an app exists. */
void mph__cli_apply_logging(const mph_conf_t *conf);

/* Parses a decimal integer in [min, max]; false if s is not one. */
bool mph__cli_parse_int(const char *s, long long min, long long max,
                        long long *out);

#endif
