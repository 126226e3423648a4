/*
 * Logging: one formatted line per call, written to stderr with one write(2)
 * so lines from different threads never interleave. The level and format are
 * process-wide atomics; the thread name is thread-local.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <ck_pr.h>

#include "mephisto/log.h"

static int g_level = MPH_LOG_INFO;
static int g_format = MPH_LOG_TEXT;
static _Thread_local char t_name[32] = "main";

mph_err_t mph_log_level_parse(const char *name, mph_log_level_t *out)
{
    static const struct { const char *name; mph_log_level_t level; } names[] = {
        {"error", MPH_LOG_ERROR}, {"warn", MPH_LOG_WARN}, {"warning", MPH_LOG_WARN},
        {"info", MPH_LOG_INFO},   {"debug", MPH_LOG_DEBUG},
    };
    for (size_t i = 0; name && i < sizeof names / sizeof names[0]; i++) {
        if (strcasecmp(name, names[i].name) == 0) {
            *out = names[i].level;
            return MPH_OK;
        }
    }
    return MPH_ERR_INVALID;
}

void mph_log_set_level(mph_log_level_t level)
{
    ck_pr_store_int(&g_level, (int)level);
}

mph_log_level_t mph_log_get_level(void)
{
    return (mph_log_level_t)ck_pr_load_int(&g_level);
}

void mph_log_set_format(mph_log_format_t format)
{
    ck_pr_store_int(&g_format, (int)format);
}

void mph_log_set_thread_name(const char *name)
{
    snprintf(t_name, sizeof t_name, "%s", name ? name : "?");
}

const char *mph_log_thread_name(void)
{
    return t_name;
}

bool mph_log_enabled(mph_log_level_t level)
{
    return (int)level <= ck_pr_load_int(&g_level);
}

static const char *level_name(mph_log_level_t level)
{
    switch (level) {
    case MPH_LOG_ERROR: return "error";
    case MPH_LOG_WARN: return "warn";
    case MPH_LOG_INFO: return "info";
    case MPH_LOG_DEBUG: return "debug";
    }
    return "info";
}

/* Appends s to buf as the inside of a JSON string. Returns the new length. */
static size_t json_escape(char *buf, size_t len, size_t cap, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (; *s && len + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[len++] = '\\';
            buf[len++] = (char)c;
        } else if (c == '\n') {
            buf[len++] = '\\';
            buf[len++] = 'n';
        } else if (c < 0x20) {
            memcpy(buf + len, "\\u00", 4);
            buf[len + 4] = hex[c >> 4];
            buf[len + 5] = hex[c & 15];
            len += 6;
        } else {
            buf[len++] = (char)c;
        }
    }
    return len;
}

void mph_logv(mph_log_level_t level, const char *fmt, va_list ap)
{
    if (!mph_log_enabled(level))
        return;
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[96];
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(ts.tv_nsec / 1000000));

    char line[4608];
    size_t len;
    if (ck_pr_load_int(&g_format) == MPH_LOG_JSON) {
        len = (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"thread\":\"",
                               when, level_name(level));
        len = json_escape(line, len, sizeof line - 16, t_name);
        memcpy(line + len, "\",\"msg\":\"", 9);
        len += 9;
        len = json_escape(line, len, sizeof line - 4, msg);
        memcpy(line + len, "\"}\n", 3);
        len += 3;
    } else {
        int n = snprintf(line, sizeof line, "%s %-5s [%s] %s\n", when, level_name(level),
                         t_name, msg);
        len = n < 0 ? 0 : (size_t)n;
        if (len >= sizeof line) {
            len = sizeof line - 1;
            line[len - 1] = '\n';
        }
    }
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void mph_log(mph_log_level_t level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mph_logv(level, fmt, ap);
    va_end(ap);
}

void mph_log_limited(mph_log_limit_t *lim, int64_t interval_ms, mph_log_level_t level,
                     const char *fmt, ...)
{
    if (!mph_log_enabled(level))
        return;
    int64_t now = mph_clock_mono_ns() / 1000000;
    if (lim->last_ms != 0 && now - lim->last_ms < interval_ms) {
        lim->suppressed++;
        return;
    }
    if (lim->suppressed)
        mph_log(level, "(%llu similar lines suppressed)", (unsigned long long)lim->suppressed);
    lim->last_ms = now;
    lim->suppressed = 0;
    va_list ap;
    va_start(ap, fmt);
    mph_logv(level, fmt, ap);
    va_end(ap);
}
