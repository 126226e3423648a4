/*
 * `mephisto bench ...`: runs the benchmark harness, the `mephisto-bench`
 * program installed next to `mephisto`, with the remaining arguments.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* Writes "<directory of this executable>/mephisto-bench" into buf. */
static bool bench_path(char *buf, size_t size)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return false;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash)
        return false;
    *slash = '\0';
    return snprintf(buf, size, "%s/mephisto-bench", self) < (int)size;
}

void mph__cli_bench_help(FILE *out)
{
    char path[PATH_MAX];
    bool found = bench_path(path, sizeof path) && access(path, X_OK) == 0;
    fprintf(out,
            "Usage: mephisto bench [ARGS...]\n"
            "\n"
            "Runs the benchmark harness, mephisto-bench from the directory of "
            "the mephisto\n"
            "binary, with ARGS unchanged; its exit status is bench's. Exit "
            "status 127\n"
            "when mephisto-bench is missing (build it: cmake --build <dir> "
            "--target\n"
            "mephisto-bench).\n"
            "\n"
            "mephisto-bench here: %s (%s)\n",
            path[0] ? path : "(unknown)", found ? "found" : "missing");
    if (found)
        fprintf(out, "\nIts own help follows.\n\n");
}

int mph__cli_bench(int argc, char **argv)
{
    char path[PATH_MAX] = "";
    if (argc >= 2 &&
        (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        mph__cli_bench_help(stdout);
        if (!bench_path(path, sizeof path) || access(path, X_OK) != 0)
            return MPH_CLI_EXIT_OK;
        fflush(stdout);
    } else if (!bench_path(path, sizeof path)) {
        mph__cli_error(
            "bench: cannot find the directory of the mephisto binary");
        return MPH_CLI_EXIT_EXEC;
    }
    /* argv[0] becomes the harness's path; the rest is forwarded as is. argv
     * is the process's own argv shifted by one, so it ends with NULL. */
    argv[0] = path;
    execv(path, argv);
    mph__cli_error(
        "bench: cannot run %s: %s (build it: cmake --build <dir> --target "
        "mephisto-bench)",
        path, strerror(errno));
    return MPH_CLI_EXIT_EXEC;
}
