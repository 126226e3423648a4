/*
 * mephisto/common.h — version, export macro, error codes, clocks.
 *
 * Every public call of mephisto returns an mph_err_t (MPH_OK is 0, errors are
 * negative) or, for constructors, NULL with a message in the caller's errstr
 * buffer. mph_err_str() names every code. Errors of the libraries underneath
 * (librdkafka, RocksDB, liburing, simdjson) are converted at the boundary and
 * never reach the caller in their own types.
 *
 * Thread safety: everything in this header may be called from any thread.
 */
#ifndef MEPHISTO_COMMON_H
#define MEPHISTO_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MPH_VERSION_MAJOR 0
#define MPH_VERSION_MINOR 1
#define MPH_VERSION_PATCH 0
#define MPH_VERSION "0.1.0"

#if defined(__GNUC__)
#define MPH_EXPORT __attribute__((visibility("default")))
#define MPH_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define MPH_EXPORT
#define MPH_PRINTF(fmt, args)
#endif

/* Error codes. Keep mph_err_str() in src/io/error.c in step. */
typedef enum mph_err {
    MPH_OK = 0,
    MPH_ERR_INVALID = -1,     /* bad argument, setting or value */
    MPH_ERR_NOMEM = -2,       /* allocation failed */
    MPH_ERR_NOENT = -3,       /* no such item (key, topic, table, field) */
    MPH_ERR_EXISTS = -4,      /* already declared or created */
    MPH_ERR_STATE = -5,       /* the object is in the wrong state for this */
    MPH_ERR_TIMEOUT = -6,     /* a deadline passed */
    MPH_ERR_KAFKA = -7,       /* the broker refused or failed a request */
    MPH_ERR_TRANSPORT = -8,   /* the broker could not be reached */
    MPH_ERR_IO = -9,          /* local I/O failed (files, io_uring, sockets) */
    MPH_ERR_STORE = -10,      /* the state store (RocksDB) failed */
    MPH_ERR_DECODE = -11,     /* malformed input bytes (e.g. invalid JSON) */
    MPH_ERR_SCHEMA = -12,     /* well-formed input that breaks a schema */
    MPH_ERR_UTF8 = -13,       /* text that is not valid UTF-8 */
    MPH_ERR_TYPE = -14,       /* a value of another type than asked for */
    MPH_ERR_RANGE = -15,      /* a number or index out of range */
    MPH_ERR_FULL = -16,       /* a queue or buffer is full; retry later */
    MPH_ERR_PARTITION = -17,  /* key belongs to another partition: group_by */
    MPH_ERR_FENCED = -18,     /* this instance was fenced by a newer one */
    MPH_ERR_AGENT = -19,      /* an agent callback reported failure */
    MPH_ERR_STOPPED = -20,    /* the app is stopping or stopped */
    MPH_ERR_UNSUPPORTED = -21,/* not supported in this configuration */
    MPH_ERR_INTERNAL = -22,   /* a bug in mephisto; please report it */
    MPH_ERR_DISK_FULL = -23,  /* no space left for state */
    MPH_ERR__LAST = -24
} mph_err_t;

/* A static, human-readable name for err. Never NULL. @locality any */
MPH_EXPORT const char *mph_err_str(mph_err_t err);

/* The library's version string, e.g. "0.1.0". @locality any */
MPH_EXPORT const char *mph_version(void);

/* Wall clock in milliseconds since the Unix epoch. @locality any */
MPH_EXPORT int64_t mph_clock_wall_ms(void);

/* Monotonic clock in nanoseconds (CLOCK_MONOTONIC). @locality any */
MPH_EXPORT int64_t mph_clock_mono_ns(void);

#ifdef __cplusplus
}
#endif
#endif /* MEPHISTO_COMMON_H */
