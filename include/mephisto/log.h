/*
 * mephisto/log.h — leveled logging to stderr, text or JSON lines.
 *
 * Every line names the thread that wrote it ("main", "coordinator",
 * "worker 3", "web"), set once per thread with mph_log_set_thread_name().
 * A line is written with a single write(2), so lines of different threads
 * never interleave. Repeats can be rate-limited with an mph_log_limit_t
 * owned by the calling thread.
 *
 * Thread safety: all functions may be called from any thread. The level and
 * format are process-wide; the thread name is per thread.
 */
#ifndef MEPHISTO_LOG_H
#define MEPHISTO_LOG_H

#include <stdarg.h>
#include "mephisto/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mph_log_level {
    MPH_LOG_ERROR = 3,
    MPH_LOG_WARN = 4,
    MPH_LOG_INFO = 6,
    MPH_LOG_DEBUG = 7
} mph_log_level_t;

typedef enum mph_log_format {
    MPH_LOG_TEXT = 0, /* "2026-11-27T04:00:00.123Z INFO  [worker 1] msg" */
    MPH_LOG_JSON = 1  /* {"ts":"...","level":"info","thread":"worker 1","msg":"..."} */
} mph_log_format_t;

/* Parses "error", "warn", "info", "debug". MPH_ERR_INVALID otherwise. */
MPH_EXPORT mph_err_t mph_log_level_parse(const char *name, mph_log_level_t *out);
MPH_EXPORT void mph_log_set_level(mph_log_level_t level);
MPH_EXPORT mph_log_level_t mph_log_get_level(void);
MPH_EXPORT void mph_log_set_format(mph_log_format_t format);
/* Sets the calling thread's name (copied; at most 31 bytes kept). */
MPH_EXPORT void mph_log_set_thread_name(const char *name);
MPH_EXPORT const char *mph_log_thread_name(void);
/* True when a line at level would be written. */
MPH_EXPORT bool mph_log_enabled(mph_log_level_t level);

MPH_EXPORT void mph_log(mph_log_level_t level, const char *fmt, ...) MPH_PRINTF(2, 3);
MPH_EXPORT void mph_logv(mph_log_level_t level, const char *fmt, va_list ap);

/* Rate limiting of repeated lines. The caller owns the limiter (usually a
 * static per call site on a single thread, or a field of a thread-owned
 * object) and zero-initialises it. At most one line per interval_ms is
 * written; the next written line says how many were suppressed.
 * @locality the thread that owns lim */
typedef struct mph_log_limit {
    int64_t last_ms;
    uint64_t suppressed;
} mph_log_limit_t;
MPH_EXPORT void mph_log_limited(mph_log_limit_t *lim, int64_t interval_ms,
                                mph_log_level_t level, const char *fmt, ...)
    MPH_PRINTF(4, 5);

#ifdef __cplusplus
}
#endif
#endif /* MEPHISTO_LOG_H */
