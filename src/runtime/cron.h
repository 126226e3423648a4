/*
 * Cron expressions: the 5-field parser and the next-run computation in an
 * IANA time zone. See cron.c for how zones are converted.
 *
 * Nothing here keeps state between calls except the process-wide lock
 * around glibc's time-zone state (cron.c): every function may be called
 * from any thread.
 */
#ifndef MPH_RUNTIME_CRON_H
#define MPH_RUNTIME_CRON_H

#include <stdbool.h>
#include <stdint.h>

#include "mephisto/common.h"

/* A parsed expression: one bit per allowed value of each field. */
typedef struct mph__cron {
    uint64_t minute; /* bits 0-59 */
    uint32_t hour;   /* bits 0-23 */
    uint32_t dom;    /* bits 1-31 */
    uint32_t month;  /* bits 1-12 */
    uint32_t dow;    /* bits 0-6, Sunday = 0 (7 is read as 0) */
    /* The day-of-month or day-of-week field starts with '*': then a day
     * must match both fields, else either (the classic cron rule). */
    bool dom_star, dow_star;
} mph__cron_t;

/* A local (wall-clock) time, no zone: year, 1-12, 1-31, 0-23, 0-59. */
typedef struct mph__civil {
    int year, month, day, hour, minute;
} mph__civil_t;

/* Parses "m h dom mon dow" (lists a,b; ranges a-b; steps "*" "/n",
 * a-b/n, a/n;
 * month names jan-dec and day names sun-sat, any case; day of week 0-7)
 * and the shorthands @yearly @annually @monthly @weekly @daily @midnight
 * @hourly. An expression no date can ever match (e.g. "0 0 30 2 *") is
 * refused too. On error, errstr names the field and the reason.
 * Errors: MPH_ERR_INVALID. @locality any */
mph_err_t mph__cron_parse(mph__cron_t *c, const char *expr, char *errstr,
                          size_t errstr_size);

/* The first local time at or after `from` (minute resolution) that matches
 * c, searching at most max_days days. False when none. Pure calendar
 * arithmetic (proleptic Gregorian), no zone. @locality any */
bool mph__cron_next_local(const mph__cron_t *c, const mph__civil_t *from,
                          int max_days, mph__civil_t *out);

/* Checks a time-zone name: "UTC", or a zone of the system tz database
 * (e.g. "Europe/Berlin"). NULL and "" mean UTC. Errors: MPH_ERR_INVALID
 * (errstr says why). @locality any */
mph_err_t mph__tz_check(const char *tz, char *errstr, size_t errstr_size);

/* The first instant strictly after `after_s` (Unix seconds) at which c
 * fires in zone tz (checked with mph__tz_check). A local time that
 * happens twice (clocks turned back) fires once, at its first occurrence;
 * a local time that never happens (clocks turned forward) is skipped.
 * Errors: MPH_ERR_NOENT (no match within 400 years). @locality any
 * (serialised on a process-wide lock, see cron.c) */
mph_err_t mph__cron_next(const mph__cron_t *c, const char *tz, int64_t after_s,
                         int64_t *next_s);

/* Days since 1970-01-01 of a proleptic Gregorian date, and back. */
int64_t mph__civil_days(int year, int month, int day);
void mph__civil_from_days(int64_t days, int *year, int *month, int *day);

#endif
