/*
 * mephisto — the command-line tool: global options and the command table.
 *
 * A new command is one file tools/cli/cmd_<name>.c with a run function and
 * a help printer (declared in cli.h) and one line in `commands` below; the
 * global --help lists it and `mephisto <name> --help` / `mephisto help
 * <name>` print its help.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const mph_cli_command_t commands[] = {
    {"demo", "count the words of a bundled text in-process (no broker needed)",
     mph__cli_demo, mph__cli_demo_help},
    {"worker", "run an app plugin (a shared object) until SIGTERM or Ctrl-C",
     mph__cli_worker, mph__cli_worker_help},
    {"send", "produce records to a topic from arguments, a file or stdin",
     mph__cli_send, mph__cli_send_help},
    {"bench", "run the benchmark harness (mephisto-bench, next to this binary)",
     mph__cli_bench, mph__cli_bench_help},
    {"tables", "describe an app's tables and their local shards",
     mph__cli_tables, mph__cli_tables_help},
    {"agents", "list the agents an app plugin declares", mph__cli_agents,
     mph__cli_agents_help},
    {"topics", "list the topics an app plugin declares", mph__cli_topics,
     mph__cli_topics_help},
    {"timers", "list the timers, crontab entries and tasks an app plugin "
     "declares", mph__cli_timers, mph__cli_timers_help},
    {"table", "read a table: 'table get' one key, 'table dump' all keys",
     mph__cli_table, mph__cli_table_help},
    {"reset", "delete an app's local state (its RocksDB table shards)",
     mph__cli_reset, mph__cli_reset_help},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const mph_cli_command_t *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void print_usage(FILE *out)
{
    fprintf(out,
            "Usage: mephisto <command> [options]\n"
            "       mephisto --help | --version | --help-config [--markdown]\n"
            "       mephisto help <command>\n"
            "\n"
            "Commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(
        out,
        "\n"
        "Options:\n"
        "  -h, --help             this help; 'mephisto <command> --help' for a "
        "command\n"
        "  -V, --version          print \"mephisto <version>\"\n"
        "  --help-config          every setting with its type, default and "
        "meaning\n"
        "  --help-config --markdown   the same as a Markdown page\n"
        "\n"
        "Settings come from, lowest precedence first: defaults, a file (-c "
        "FILE),\n"
        "MEPHISTO_<NAME> environment variables, command-line flags.\n"
        "\n"
        "Exit status:\n"
        "  0    done, or stopped cleanly\n"
        "  1    the app stopped on an error (worker); records were not "
        "delivered (send)\n"
        "  2    bad usage or configuration\n"
        "  3    the app plugin cannot be loaded or its mephisto_app_init "
        "failed\n"
        "  4    the app could not start (broker unreachable, missing topic)\n"
        "  127  bench: mephisto-bench is missing\n"
        "  130  a second SIGINT while stopping (immediate exit)\n"
        "\n"
        "Documentation: docs/cli.md, docs/quickstart.md, "
        "docs/configuration.md\n");
}

static int help_command(int argc, char **argv)
{
    if (argc < 3) {
        print_usage(stdout);
        return MPH_CLI_EXIT_OK;
    }
    const mph_cli_command_t *c = find_command(argv[2]);
    if (!c) {
        mph__cli_error("help: no command '%s' (see 'mephisto --help')",
                       argv[2]);
        return MPH_CLI_EXIT_USAGE;
    }
    c->help(stdout);
    return MPH_CLI_EXIT_OK;
}

static int help_config(int argc, char **argv)
{
    bool markdown = false;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--markdown") == 0) {
            markdown = true;
        } else {
            mph__cli_error(
                "--help-config: unknown option '%s' (only --markdown)",
                argv[i]);
            return MPH_CLI_EXIT_USAGE;
        }
    }
    mph_conf_print_help(stdout, markdown);
    return MPH_CLI_EXIT_OK;
}

int main(int argc, char **argv)
{
    mph_log_set_thread_name("main");
    if (argc < 2) {
        print_usage(stderr);
        return MPH_CLI_EXIT_USAGE;
    }
    const char *first = argv[1];
    if (strcmp(first, "-h") == 0 || strcmp(first, "--help") == 0) {
        print_usage(stdout);
        return MPH_CLI_EXIT_OK;
    }
    if (strcmp(first, "-V") == 0 || strcmp(first, "--version") == 0) {
        printf("mephisto %s\n", mph_version());
        return MPH_CLI_EXIT_OK;
    }
    if (strcmp(first, "--help-config") == 0)
        return help_config(argc, argv);
    if (strcmp(first, "help") == 0)
        return help_command(argc, argv);
    const mph_cli_command_t *c = find_command(first);
    if (!c) {
        if (first[0] == '-')
            mph__cli_error("unknown option '%s' (see 'mephisto --help')",
                           first);
        else
            mph__cli_error("unknown command '%s' (see 'mephisto --help')",
                           first);
        return MPH_CLI_EXIT_USAGE;
    }
    return c->run(argc - 1, argv + 1);
}
