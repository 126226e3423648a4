/*
 * Unit tests of cron expressions (src/runtime/cron.c): every field form,
 * the errors that name the field, the next run in UTC, on Feb 29, and
 * across the DST gaps and overlaps of Europe/Berlin and America/New_York.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/cron.h"

TestSuite(cron, .timeout = 30);

static mph__cron_t parse(const char *expr)
{
    mph__cron_t c;
    char err[256] = "";
    cr_assert_eq(mph__cron_parse(&c, expr, err, sizeof err), MPH_OK, "%s: %s",
                 expr, err);
    return c;
}

static uint64_t bits(int lo, int hi, int step)
{
    uint64_t b = 0;
    for (int v = lo; v <= hi; v += step)
        b |= (uint64_t)1 << v;
    return b;
}

Test(cron, field_forms)
{
    mph__cron_t c = parse("* * * * *");
    cr_expect_eq(c.minute, bits(0, 59, 1));
    cr_expect_eq(c.hour, bits(0, 23, 1));
    cr_expect_eq(c.dom, bits(1, 31, 1));
    cr_expect_eq(c.month, bits(1, 12, 1));
    cr_expect_eq(c.dow, bits(0, 6, 1));
    cr_expect(c.dom_star && c.dow_star);

    c = parse("5 1,2,3 1-5 */3 1-5/2");
    cr_expect_eq(c.minute, bits(5, 5, 1));
    cr_expect_eq(c.hour, bits(1, 3, 1));
    cr_expect_eq(c.dom, bits(1, 5, 1));
    cr_expect_eq(c.month, bits(1, 12, 3)); /* 1,4,7,10 */
    cr_expect_eq(c.dow, bits(1, 5, 2));    /* 1,3,5 */
    cr_expect(!c.dom_star && !c.dow_star);

    c = parse("5/20 0-23/6 */10 jan,MAR-may mon-fri");
    cr_expect_eq(c.minute, bits(5, 59, 20)); /* 5,25,45 */
    cr_expect_eq(c.hour, bits(0, 23, 6));
    cr_expect_eq(c.dom, bits(1, 31, 10));
    cr_expect(c.dom_star, "*/10 counts as '*' for the day rule");
    cr_expect_eq(c.month, bits(1, 1, 1) | bits(3, 5, 1));
    cr_expect_eq(c.dow, bits(1, 5, 1));

    c = parse("0 0 * * 7");
    cr_expect_eq(c.dow, bits(0, 0, 1), "7 is Sunday");
    c = parse("0 0 * * 5-7");
    cr_expect_eq(c.dow, bits(5, 6, 1) | 1);
    c = parse("0 0 * * SUN,sat");
    cr_expect_eq(c.dow, bits(0, 0, 1) | bits(6, 6, 1));
    c = parse("  0   12  *  DEC  *  ");
    cr_expect_eq(c.month, bits(12, 12, 1));

    mph__cron_t d = parse("@daily"), e = parse("0 0 * * *");
    cr_expect(!memcmp(&d, &e, sizeof d));
    d = parse("@hourly");
    e = parse("0 * * * *");
    cr_expect(!memcmp(&d, &e, sizeof d));
    d = parse("@weekly");
    e = parse("0 0 * * 0");
    cr_expect(!memcmp(&d, &e, sizeof d));
}

Test(cron, errors_name_the_field_and_reason)
{
    static const struct {
        const char *expr, *want;
    } bad[] = {
        {"* * * *", "expected 5 fields"},
        {"* * * * * *", "expected 5 fields"},
        {"", "expected 5 fields"},
        {"60 * * * *", "minute: 60 is out of range 0-59"},
        {"* 24 * * *", "hour: 24 is out of range 0-23"},
        {"* * 0 * *", "day of month: 0 is out of range 1-31"},
        {"* * * 13 *", "month: 13 is out of range 1-12"},
        {"* * * * 8", "day of week: 8 is out of range 0-7"},
        {"*/0 * * * *", "minute: step 0 is not allowed"},
        {"*/61 * * * *", "minute: step 61 is larger"},
        {"5-3 * * * *", "minute: range 5-3 runs backwards"},
        {"1,,2 * * * *", "minute: empty list item"},
        {"1, * * * *", "minute: empty list item"},
        {"* * * foo *", "month: unknown name 'foo'"},
        {"* * * * funday", "day of week: unknown name 'funday'"},
        {"* mon * * *", "hour: 'mon' is not a number"},
        {"1-2-3 * * * *", "minute: unexpected '-3'"},
        {"*/ * * * *", "minute: '/' must be followed by a step number"},
        {"0 0 30 2 *", "day of month: no day 30 exists in month 2"},
        {"0 0 31 apr,jun *", "day of month: no day 31 exists"},
        {"@every5m", "unknown shorthand '@every5m'"},
        {"* * * * fri-mon", "day of week: range fri-mon runs backwards"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mph__cron_t c;
        char err[256] = "";
        cr_expect_eq(mph__cron_parse(&c, bad[i].expr, err, sizeof err),
                     MPH_ERR_INVALID, "%s", bad[i].expr);
        cr_expect(strstr(err, bad[i].want) != NULL, "'%s': got '%s', want '%s'",
                  bad[i].expr, err, bad[i].want);
    }
    /* Feb 29 exists: accepted. */
    mph__cron_t c;
    char err[256];
    cr_expect_eq(mph__cron_parse(&c, "0 0 29 2 *", err, sizeof err), MPH_OK,
                 "%s", err);
}

/* "2026-03-29T01:30" as Unix seconds (UTC). */
static int64_t at(const char *iso)
{
    int y, mo, d, h, mi;
    cr_assert_eq(sscanf(iso, "%d-%d-%dT%d:%d", &y, &mo, &d, &h, &mi), 5, "%s",
                 iso);
    return mph__civil_days(y, mo, d) * 86400 + h * 3600 + mi * 60;
}

static void fmt(int64_t t, char *buf, size_t size)
{
    int64_t days = t / 86400, rest = t % 86400;
    int y, mo, d;
    mph__civil_from_days(days, &y, &mo, &d);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d", y, mo, d,
             (int)(rest / 3600), (int)(rest % 3600 / 60), (int)(rest % 60));
}

/* Walks the runs of expr in tz after start and compares them with want
 * (UTC times). */
static void expect_runs(const char *expr, const char *tz, const char *start,
                        const char *const *want, size_t n)
{
    mph__cron_t c = parse(expr);
    char err[256];
    cr_assert_eq(mph__tz_check(tz, err, sizeof err), MPH_OK, "%s", err);
    int64_t t = at(start);
    for (size_t i = 0; i < n; i++) {
        int64_t next = 0;
        cr_assert_eq(mph__cron_next(&c, tz, t, &next), MPH_OK,
                     "%s in %s after %lld", expr, tz ? tz : "UTC",
                     (long long)t);
        char got[32], prev[32];
        fmt(next, got, sizeof got);
        fmt(t, prev, sizeof prev);
        cr_expect_eq(next, at(want[i]),
                     "'%s' in %s: run %zu after %sZ is %sZ, want %sZ", expr,
                     tz ? tz : "UTC", i, prev, got, want[i]);
        t = next;
    }
}

#define RUNS(expr, tz, start, ...)                                             \
    do {                                                                       \
        static const char *const w_[] = {__VA_ARGS__};                         \
        expect_runs(expr, tz, start, w_, sizeof w_ / sizeof w_[0]);            \
    } while (0)

Test(cron, next_in_utc)
{
    RUNS("*/15 * * * *", NULL, "2026-01-01T10:07", "2026-01-01T10:15",
         "2026-01-01T10:30", "2026-01-01T10:45", "2026-01-01T11:00");
    /* Strictly after: a start on a matching minute moves on. */
    RUNS("0 * * * *", "UTC", "2026-01-01T10:00", "2026-01-01T11:00");
    RUNS("30 23 31 dec *", NULL, "2026-06-01T00:00", "2026-12-31T23:30",
         "2027-12-31T23:30");
    /* Day of month OR day of week when both are restricted: the 13th and
     * every Friday (2026-02-06 and -13 are Fridays). */
    RUNS("0 0 13 * 5", NULL, "2026-02-01T00:00", "2026-02-06T00:00",
         "2026-02-13T00:00", "2026-02-20T00:00");
    /* AND when one of them starts with '*': odd days that are Mondays. */
    RUNS("0 0 */2 * mon", NULL, "2026-02-01T00:00", "2026-02-09T00:00",
         "2026-02-23T00:00", "2026-03-09T00:00");
    RUNS("0 9 * * mon-fri", NULL, "2026-02-06T10:00", "2026-02-09T09:00",
         "2026-02-10T09:00");
    RUNS("0 12 1 */4 *", NULL, "2026-01-01T12:00", "2026-05-01T12:00",
         "2026-09-01T12:00", "2027-01-01T12:00");
}

Test(cron, feb_29)
{
    RUNS("0 0 29 2 *", NULL, "2025-03-01T00:00", "2028-02-29T00:00",
         "2032-02-29T00:00");
    /* 2100 is not a leap year. */
    RUNS("0 0 29 2 *", NULL, "2096-03-01T00:00", "2104-02-29T00:00");
    /* Both day fields restricted: OR, so every Monday in February and the
     * 29th (2028-02-28 is a Monday, the 29th a Tuesday). */
    RUNS("0 0 29 feb mon", NULL, "2028-02-25T00:00", "2028-02-28T00:00",
         "2028-02-29T00:00", "2029-02-05T00:00");
    /* Every day in February: 2028-02-28 is followed by the 29th. */
    RUNS("0 6 * 2 *", NULL, "2028-02-28T07:00", "2028-02-29T06:00",
         "2029-02-01T06:00");
}

Test(cron, berlin_dst)
{
    /* Spring: 2026-03-29 02:00 CET becomes 03:00 CEST; 02:30 never
     * happens that day: skipped. CET = UTC+1, CEST = UTC+2. */
    RUNS("30 2 * * *", "Europe/Berlin", "2026-03-27T12:00", "2026-03-28T01:30",
         "2026-03-30T00:30", "2026-03-31T00:30");
    /* Every 30 minutes across the gap: 01:30 CET then 03:00 CEST. */
    RUNS("*/30 * * * *", "Europe/Berlin", "2026-03-29T00:00",
         "2026-03-29T00:30", "2026-03-29T01:00", "2026-03-29T01:30");
    /* Autumn: 2026-10-25 03:00 CEST becomes 02:00 CET; 02:30 happens
     * twice (00:30Z and 01:30Z): it runs once, at the first. */
    RUNS("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00", "2026-10-25T00:30",
         "2026-10-26T01:30");
    /* Every 30 minutes: 02:00 and 02:30 CEST, then the repeated hour is
     * skipped (those local times already ran), 03:00 CET is 02:00Z. */
    RUNS("*/30 * * * *", "Europe/Berlin", "2026-10-24T23:45",
         "2026-10-25T00:00", "2026-10-25T00:30", "2026-10-25T02:00",
         "2026-10-25T02:30");
    /* Started inside the repeated hour (02:10 CET = 01:10Z): 02:30 CET is
     * a repeat, 03:00 CET is next. */
    RUNS("30 2,3 * * *", "Europe/Berlin", "2026-10-25T01:10",
         "2026-10-25T02:30");
}

Test(cron, new_york_dst)
{
    /* Spring: 2026-03-08 02:00 EST becomes 03:00 EDT. EST = UTC-5,
     * EDT = UTC-4. */
    RUNS("30 2 * * *", "America/New_York", "2026-03-06T12:00",
         "2026-03-07T07:30", "2026-03-09T06:30");
    RUNS("0 * * * *", "America/New_York", "2026-03-08T05:30",
         "2026-03-08T06:00", "2026-03-08T07:00", "2026-03-08T08:00");
    /* Autumn: 2026-11-01 02:00 EDT becomes 01:00 EST; 01:30 happens twice
     * (05:30Z and 06:30Z): once. */
    RUNS("30 1 * * *", "America/New_York", "2026-10-31T12:00",
         "2026-11-01T05:30", "2026-11-02T06:30");
    /* Hourly: 00:00 and 01:00 EDT, then 02:00 EST (the repeated 01:00 is
     * skipped). */
    RUNS("0 * * * *", "America/New_York", "2026-11-01T03:30",
         "2026-11-01T04:00", "2026-11-01T05:00", "2026-11-01T07:00",
         "2026-11-01T08:00");
    /* A weekly Sunday 02:30 job: the gap Sunday is skipped, the week after
     * runs. */
    RUNS("30 2 * * sun", "America/New_York", "2026-03-02T00:00",
         "2026-03-15T06:30");
}

Test(cron, timezones_checked)
{
    char err[256];
    cr_expect_eq(mph__tz_check("Europe/Berlin", err, sizeof err), MPH_OK);
    cr_expect_eq(mph__tz_check("UTC", err, sizeof err), MPH_OK);
    cr_expect_eq(mph__tz_check(NULL, err, sizeof err), MPH_OK);
    cr_expect_eq(mph__tz_check("Mars/Olympus_Mons", err, sizeof err),
                 MPH_ERR_INVALID);
    cr_expect(
        strstr(err,
               "timezone 'Mars/Olympus_Mons': not in the time-zone database"),
        "%s", err);
    cr_expect_eq(mph__tz_check("../../etc/passwd", err, sizeof err),
                 MPH_ERR_INVALID);
    cr_expect(strstr(err, "not a time-zone name"), "%s", err);
    cr_expect_eq(mph__tz_check("/etc/localtime", err, sizeof err),
                 MPH_ERR_INVALID);
}

Test(cron, process_zone_is_restored)
{
    setenv("TZ", "Asia/Tokyo", 1);
    mph__cron_t c = parse("0 0 * * *");
    int64_t next;
    cr_assert_eq(
        mph__cron_next(&c, "America/New_York", at("2026-01-01T00:00"), &next),
        MPH_OK);
    cr_expect_str_eq(getenv("TZ"), "Asia/Tokyo");
    time_t t = 0;
    struct tm tm;
    tzset();
    localtime_r(&t, &tm);
    cr_expect_eq(tm.tm_gmtoff, 9 * 3600);
}
