/* Error names, version and clocks: what every layer needs. */
#include <time.h>

#include "mephisto/common.h"

const char *mph_err_str(mph_err_t err)
{
    switch (err) {
    case MPH_OK: return "success";
    case MPH_ERR_INVALID: return "invalid argument";
    case MPH_ERR_NOMEM: return "out of memory";
    case MPH_ERR_NOENT: return "not found";
    case MPH_ERR_EXISTS: return "already exists";
    case MPH_ERR_STATE: return "wrong state for this operation";
    case MPH_ERR_TIMEOUT: return "timed out";
    case MPH_ERR_KAFKA: return "Kafka request failed";
    case MPH_ERR_TRANSPORT: return "broker unreachable";
    case MPH_ERR_IO: return "I/O error";
    case MPH_ERR_STORE: return "state store error";
    case MPH_ERR_DECODE: return "malformed input";
    case MPH_ERR_SCHEMA: return "schema violation";
    case MPH_ERR_UTF8: return "invalid UTF-8";
    case MPH_ERR_TYPE: return "wrong type";
    case MPH_ERR_RANGE: return "out of range";
    case MPH_ERR_FULL: return "queue full";
    case MPH_ERR_PARTITION: return "key belongs to another partition (re-key the stream with group_by)";
    case MPH_ERR_FENCED: return "fenced by a newer instance";
    case MPH_ERR_AGENT: return "agent failed";
    case MPH_ERR_STOPPED: return "stopped";
    case MPH_ERR_UNSUPPORTED: return "unsupported";
    case MPH_ERR_INTERNAL: return "internal error";
    case MPH_ERR_DISK_FULL: return "no space left for state";
    case MPH_ERR__LAST: break;
    }
    return "unknown error";
}

const char *mph_version(void)
{
    return MPH_VERSION;
}

int64_t mph_clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t mph_clock_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
