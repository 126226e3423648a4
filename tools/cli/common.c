/*
 * What the CLI's commands share: error lines, option parsing, building a
 * configuration in the documented order of precedence.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

void mph__cli_error(const char *fmt, ...)
{
    char msg[2048], line[2048];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (m < 0)
        msg[0] = '\0';
    /* One line, whatever the message holds; and nothing a user's value
     * brings (ESC [2J, a carriage return) reaches the terminal raw. */
    for (char *c = msg; *c; c++)
        if (*c == '\n')
            *c = ' ';
    int n = snprintf(line, sizeof line, "mephisto: ");
    mph_conf_escape(line + n, sizeof line - (size_t)n - 1, msg);
    size_t len = strlen(line);
    line[len++] = '\n';
    fflush(stdout);
    /* One write, so that it never interleaves with log lines. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

/* ------------------------------------------------------------------ */

void mph__cli_args_init(mph_cli_args_t *a, const char *cmd, int argc,
                        char **argv)
{
    a->cmd = cmd;
    a->argc = argc;
    a->argv = argv;
    a->next = 1;
    a->positional_only = false;
}

static int find_long(const mph_cli_opt_t *opts, size_t nopts, const char *name,
                     size_t len)
{
    for (size_t i = 0; i < nopts; i++)
        if (strlen(opts[i].name) == len &&
            strncmp(opts[i].name, name, len) == 0)
            return (int)i;
    return -1;
}

static int find_short(const mph_cli_opt_t *opts, size_t nopts, char c)
{
    for (size_t i = 0; i < nopts; i++)
        if (opts[i].short_name && opts[i].short_name == c)
            return (int)i;
    return -1;
}

int mph__cli_args_next(mph_cli_args_t *a, const mph_cli_opt_t *opts,
                       size_t nopts, const char **value)
{
    *value = NULL;
    if (a->next >= a->argc)
        return MPH_CLI_ARG_END;
    const char *arg = a->argv[a->next++];
    if (a->positional_only || arg[0] != '-' || arg[1] == '\0') {
        *value = arg;
        return MPH_CLI_ARG_POSITIONAL;
    }
    if (strcmp(arg, "--") == 0) {
        a->positional_only = true;
        return mph__cli_args_next(a, opts, nopts, value);
    }
    int idx;
    const char *inline_value = NULL;
    if (arg[1] == '-') {
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        idx = find_long(opts, nopts, name, len);
        if (eq)
            inline_value = eq + 1;
    } else {
        idx = arg[2] == '\0' ? find_short(opts, nopts, arg[1]) : -1;
    }
    if (idx < 0) {
        mph__cli_error("%s: unknown option '%s' (see 'mephisto %s --help')",
                       a->cmd, arg, a->cmd);
        return MPH_CLI_ARG_ERROR;
    }
    if (!opts[idx].has_value) {
        if (inline_value) {
            mph__cli_error("%s: option --%s takes no value", a->cmd,
                           opts[idx].name);
            return MPH_CLI_ARG_ERROR;
        }
        return idx;
    }
    if (inline_value) {
        *value = inline_value;
        return idx;
    }
    if (a->next >= a->argc) {
        mph__cli_error(
            "%s: option --%s needs a value (see 'mephisto %s --help')", a->cmd,
            opts[idx].name, a->cmd);
        return MPH_CLI_ARG_ERROR;
    }
    *value = a->argv[a->next++];
    return idx;
}

/* ------------------------------------------------------------------ */

mph_conf_t *mph__cli_conf_build(const char *const *dflts, const char *file,
                                const mph_cli_setting_t *flags, size_t nflags)
{
    char err[1024];
    mph_conf_t *conf = mph_conf_new();
    if (!conf) {
        mph__cli_error("out of memory");
        return NULL;
    }
    for (const char *const *d = dflts; d && d[0]; d += 2) {
        if (mph_conf_set(conf, d[0], d[1], err, sizeof err) != MPH_OK) {
            mph__cli_error("%s", err);
            goto fail_conf;
        }
    }
    if (file && mph_conf_load_file(conf, file, err, sizeof err) != MPH_OK) {
        mph__cli_error("%s", err);
        goto fail_conf;
    }
    if (mph_conf_load_env(conf, err, sizeof err) != MPH_OK) {
        mph__cli_error("environment: %s", err);
        goto fail_conf;
    }
    for (size_t i = 0; i < nflags; i++) {
        const mph_cli_setting_t *f = &flags[i];
        mph_err_t e =
            f->name ? mph_conf_set(conf, f->name, f->value, err, sizeof err)
                    : mph_conf_set_pair(conf, f->value, err, sizeof err);
        if (e != MPH_OK) {
            mph__cli_error("%s: %s", f->flag, err);
            goto fail_conf;
        }
    }
    return conf;
fail_conf:
    mph_conf_destroy(conf);
    return NULL;
}

void mph__cli_apply_logging(const mph_conf_t *conf)
{
    mph_log_level_t level;
    if (mph_log_level_parse(mph_conf_get(conf, "log_level"), &level) == MPH_OK)
        mph_log_set_level(level);
    const char *fmt = mph_conf_get(conf, "log_format");
    mph_log_set_format(fmt && strcmp(fmt, "json") == 0 ? MPH_LOG_JSON
                                                       : MPH_LOG_TEXT);
}

bool mph__cli_parse_int(const char *s, long long min, long long max,
                        long long *out)
{
    if (!s || !*s)
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}
