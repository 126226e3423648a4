/*
 * DESIGN — cron expressions and their next run in a time zone.
 *
 * Parsing turns each of the five fields into a bit set; matching a local
 * time is then five bit tests. The next run is searched on the local
 * (wall-clock) calendar first, with no zone involved: day by day from the
 * start, the first day whose month and day fields match, then its first
 * matching hour and minute. Each candidate local time is then mapped to
 * the instants (UTC) that show it on the zone's clocks: usually one; none
 * in a gap (clocks turned forward: that local time never happens, so the
 * run is skipped); two in an overlap (clocks turned back: the run happens
 * once, at the first of them, and a candidate whose first instant is not
 * after the previous run is skipped, so the repeated hour does not fire
 * again). The instants are found without trusting mktime's guesses in
 * gaps and overlaps: for the zone's UTC offsets 36 hours before and after
 * the candidate, local - offset is an instant; it counts only when the
 * zone's clock really shows the candidate then.
 *
 * Time zones: glibc converts through its process-global zone (the TZ
 * environment variable read by tzset()); it has no per-call zone API
 * (no localtime_rz). Parsing the tz database's files ourselves would
 * duplicate what glibc does. So conversions run under one process-wide
 * mutex that sets TZ to the zone, calls tzset() and localtime_r(), and
 * puts the previous zone back before it unlocks. This is acceptable
 * because it is never on the event path: only a crontab entry's thread
 * converts, once per run, for well under a millisecond (tzset() reads
 * the zone's file); and mephisto's own
 * logging and stats use UTC, so none of its code reads the local zone.
 * What remains: a user thread (or RocksDB stamping a line of its LOG
 * file) calling localtime()/mktime() at the very moment of a conversion
 * may see the crontab's zone; docs/services.md says so. When TZ was
 * unset, it is put back as ":/etc/localtime" (glibc's meaning of an unset
 * TZ) rather than removed, so the environment array is never shrunk and
 * regrown under other threads' getenv().
 *
 * Never: call this on a worker; hold the lock across user code.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "runtime/cron.h"

/* ------------------------------------------------------------------ */
/* calendar arithmetic (proleptic Gregorian, days since 1970-01-01)    */

int64_t mph__civil_days(int year, int month, int day)
{
    int64_t y = year - (month <= 2);
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t mp = (month + 9) % 12;
    int64_t doy = (153 * mp + 2) / 5 + day - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void mph__civil_from_days(int64_t z, int *year, int *month, int *day)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int d = (int)(doy - (153 * mp + 2) / 5 + 1);
    int m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *year = (int)(yoe + era * 400 + (m <= 2));
    *month = m;
    *day = d;
}

/* 0 = Sunday; 1970-01-01 was a Thursday. */
static int weekday(int64_t days)
{
    int64_t w = (days + 4) % 7;
    return (int)(w < 0 ? w + 7 : w);
}

/* Seconds of a local time counted as if it were UTC ("naive"). */
static int64_t naive_of(const mph__civil_t *c)
{
    return mph__civil_days(c->year, c->month, c->day) * 86400 + c->hour * 3600 +
           c->minute * 60;
}

static void civil_of_naive(int64_t s, mph__civil_t *c)
{
    int64_t days = s >= 0 ? s / 86400 : -((-s + 86399) / 86400);
    int64_t rest = s - days * 86400;
    mph__civil_from_days(days, &c->year, &c->month, &c->day);
    c->hour = (int)(rest / 3600);
    c->minute = (int)(rest % 3600 / 60);
}

/* ------------------------------------------------------------------ */
/* parsing                                                             */

typedef struct field_spec {
    const char *name;
    int min, max;
    const char *const
        *names; /* names[i] is value min + i; NULL: numbers only */
} field_spec_t;

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may",
                                          "jun", "jul", "aug", "sep", "oct",
                                          "nov", "dec", NULL};
static const char *const dow_names[] = {"sun", "mon", "tue", "wed",
                                        "thu", "fri", "sat", NULL};

static const field_spec_t fields[5] = {
    {"minute", 0, 59, NULL},          {"hour", 0, 23, NULL},
    {"day of month", 1, 31, NULL},    {"month", 1, 12, month_names},
    {"day of week", 0, 7, dow_names},
};

static void fail(char *errstr, size_t size, const char *fmt, ...)
    MPH_PRINTF(3, 4);
static void fail(char *errstr, size_t size, const char *fmt, ...)
{
    if (!errstr || !size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, size, fmt, ap);
    va_end(ap);
}

/* Reads a number or a name at *p (up to end); advances *p. */
static bool read_value(const field_spec_t *f, const char **p, const char *end,
                       int *out, char *errstr, size_t size)
{
    const char *s = *p;
    if (s < end && isdigit((unsigned char)*s)) {
        long v = 0;
        while (s < end && isdigit((unsigned char)*s)) {
            v = v * 10 + (*s - '0');
            if (v > 1000)
                v = 1000;
            s++;
        }
        if (v < f->min || v > f->max) {
            fail(errstr, size, "%s: %ld is out of range %d-%d", f->name, v,
                 f->min, f->max);
            return false;
        }
        *out = (int)v;
        *p = s;
        return true;
    }
    if (s < end && isalpha((unsigned char)*s)) {
        const char *w = s;
        while (s < end && isalpha((unsigned char)*s))
            s++;
        size_t n = (size_t)(s - w);
        for (int i = 0; f->names && f->names[i]; i++) {
            if (n == 3 && strncasecmp(w, f->names[i], 3) == 0) {
                *out = f->min + i;
                *p = s;
                return true;
            }
        }
        if (f->names)
            fail(errstr, size, "%s: unknown name '%.*s' (use %s)", f->name,
                 (int)n, w, f->names == month_names ? "jan-dec" : "sun-sat");
        else
            fail(errstr, size, "%s: '%.*s' is not a number", f->name, (int)n,
                 w);
        return false;
    }
    if (s < end)
        fail(errstr, size, "%s: unexpected '%c' (expected a number%s)", f->name,
             *s, f->names ? " or a name" : "");
    else
        fail(errstr, size, "%s: a value is missing", f->name);
    return false;
}

/* One field: items separated by ','. */
static bool parse_field(const field_spec_t *f, const char *text, size_t len,
                        uint64_t *bits, bool *star, char *errstr, size_t size)
{
    *bits = 0;
    *star = len > 0 && text[0] == '*';
    const char *p = text, *end = text + len;
    for (;;) {
        const char *item_end = memchr(p, ',', (size_t)(end - p));
        if (!item_end)
            item_end = end;
        if (item_end == p) {
            fail(errstr, size, "%s: empty list item in '%.*s'", f->name,
                 (int)len, text);
            return false;
        }
        int lo, hi, step = 1;
        const char *q = p;
        bool ranged = false;
        if (*q == '*') {
            lo = f->min;
            hi = f->max == 7 ? 6 : f->max; /* '*' in day of week: 0-6 */
            q++;
            ranged = true;
        } else {
            if (!read_value(f, &q, item_end, &lo, errstr, size))
                return false;
            hi = lo;
            if (q < item_end && *q == '-') {
                q++;
                if (!read_value(f, &q, item_end, &hi, errstr, size))
                    return false;
                if (hi < lo) {
                    fail(errstr, size, "%s: range %.*s runs backwards", f->name,
                         (int)(q - p), p);
                    return false;
                }
                ranged = true;
            }
        }
        if (q < item_end && *q == '/') {
            q++;
            if (q >= item_end || !isdigit((unsigned char)*q)) {
                fail(errstr, size, "%s: '/' must be followed by a step number",
                     f->name);
                return false;
            }
            long v = 0;
            while (q < item_end && isdigit((unsigned char)*q)) {
                v = v * 10 + (*q - '0');
                if (v > 1000)
                    v = 1000;
                q++;
            }
            if (v == 0) {
                fail(errstr, size, "%s: step 0 is not allowed", f->name);
                return false;
            }
            if (v > f->max - f->min + 1) {
                fail(errstr, size,
                     "%s: step %ld is larger than the field's range %d-%d",
                     f->name, v, f->min, f->max);
                return false;
            }
            step = (int)v;
            if (!ranged)
                hi = f->max == 7 ? 6 : f->max; /* "a/n": from a to the end */
        }
        if (q != item_end) {
            fail(errstr, size, "%s: unexpected '%.*s' in '%.*s'", f->name,
                 (int)(item_end - q), q, (int)(item_end - p), p);
            return false;
        }
        for (int v = lo; v <= hi; v += step)
            *bits |= (uint64_t)1 << (f->max == 7 && v == 7 ? 0 : v);
        if (item_end == end)
            break;
        p = item_end + 1;
        if (p == end) {
            fail(errstr, size, "%s: empty list item in '%.*s'", f->name,
                 (int)len, text);
            return false;
        }
    }
    return true;
}

static const struct {
    const char *name, *expr;
} shorthands[] = {
    {"@yearly", "0 0 1 1 *"},  {"@annually", "0 0 1 1 *"},
    {"@monthly", "0 0 1 * *"}, {"@weekly", "0 0 * * 0"},
    {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

mph_err_t mph__cron_parse(mph__cron_t *c, const char *expr, char *errstr,
                          size_t errstr_size)
{
    memset(c, 0, sizeof *c);
    if (!expr) {
        fail(errstr, errstr_size, "expression: NULL");
        return MPH_ERR_INVALID;
    }
    while (isspace((unsigned char)*expr))
        expr++;
    if (*expr == '@') {
        size_t n = strcspn(expr, " \t\r\n");
        const char *rest = expr + n;
        while (isspace((unsigned char)*rest))
            rest++;
        for (size_t i = 0; i < sizeof shorthands / sizeof shorthands[0]; i++)
            if (strlen(shorthands[i].name) == n &&
                !strncasecmp(expr, shorthands[i].name, n) && !*rest)
                return mph__cron_parse(c, shorthands[i].expr, errstr,
                                       errstr_size);
        fail(errstr, errstr_size,
             "unknown shorthand '%.*s' (known: @yearly @annually @monthly "
             "@weekly @daily "
             "@midnight @hourly)",
             (int)n, expr);
        return MPH_ERR_INVALID;
    }
    const char *start[6];
    size_t len[6];
    int n = 0;
    const char *p = expr;
    while (*p) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        const char *s = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        if (n < 6) {
            start[n] = s;
            len[n] = (size_t)(p - s);
        }
        n++;
    }
    if (n != 5) {
        fail(errstr, errstr_size,
             "expected 5 fields (minute hour day-of-month month day-of-week), "
             "got %d",
             n);
        return MPH_ERR_INVALID;
    }
    uint64_t bits[5];
    bool star[5];
    for (int i = 0; i < 5; i++)
        if (!parse_field(&fields[i], start[i], len[i], &bits[i], &star[i],
                         errstr, errstr_size))
            return MPH_ERR_INVALID;
    c->minute = bits[0];
    c->hour = (uint32_t)bits[1];
    c->dom = (uint32_t)bits[2];
    c->month = (uint32_t)bits[3];
    c->dow = (uint32_t)bits[4];
    c->dom_star = star[2];
    c->dow_star = star[4];
    /* Can any date match? The calendar repeats every 400 years. */
    mph__civil_t from = {2000, 1, 1, 0, 0}, out;
    if (!mph__cron_next_local(c, &from, 146097 + 1, &out)) {
        fail(errstr, errstr_size,
             "day of month: no day %.*s exists in month %.*s", (int)len[2],
             start[2], (int)len[3], start[3]);
        return MPH_ERR_INVALID;
    }
    return MPH_OK;
}

/* ------------------------------------------------------------------ */
/* the next local time                                                 */

static bool day_matches(const mph__cron_t *c, int dom, int dow)
{
    bool d = (c->dom >> dom) & 1, w = (c->dow >> dow) & 1;
    return c->dom_star || c->dow_star ? d && w : d || w;
}

bool mph__cron_next_local(const mph__cron_t *c, const mph__civil_t *from,
                          int max_days, mph__civil_t *out)
{
    int64_t day0 = mph__civil_days(from->year, from->month, from->day);
    int h0 = from->hour, m0 = from->minute;
    for (int64_t d = day0; d < day0 + max_days; d++, h0 = 0, m0 = 0) {
        int y, mo, dd;
        mph__civil_from_days(d, &y, &mo, &dd);
        if (!((c->month >> mo) & 1) || !day_matches(c, dd, weekday(d)))
            continue;
        for (int h = h0; h < 24; h++) {
            if (!((c->hour >> h) & 1))
                continue;
            for (int m = h == h0 ? m0 : 0; m < 60; m++) {
                if ((c->minute >> m) & 1) {
                    *out = (mph__civil_t){y, mo, dd, h, m};
                    return true;
                }
            }
        }
    }
    return false;
}

/* ------------------------------------------------------------------ */
/* zones                                                               */

static pthread_mutex_t tz_lock = PTHREAD_MUTEX_INITIALIZER;

static bool is_utc(const char *tz)
{
    return !tz || !*tz || !strcmp(tz, "UTC") || !strcmp(tz, "Etc/UTC");
}

mph_err_t mph__tz_check(const char *tz, char *errstr, size_t errstr_size)
{
    if (is_utc(tz))
        return MPH_OK;
    size_t n = strlen(tz);
    bool ok = n < 256 && tz[0] != '/' && tz[0] != ':' && !strstr(tz, "..");
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)tz[i]) || strchr("/_-+", tz[i]);
    if (!ok) {
        fail(errstr, errstr_size,
             "timezone '%s': not a time-zone name (like Europe/Berlin or UTC)",
             tz);
        return MPH_ERR_INVALID;
    }
    const char *dir = getenv("TZDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/%s",
             dir && *dir ? dir : "/usr/share/zoneinfo", tz);
    if (access(path, R_OK) != 0) {
        fail(errstr, errstr_size,
             "timezone '%s': not in the time-zone database (%s)", tz, path);
        return MPH_ERR_INVALID;
    }
    return MPH_OK;
}

/* Local fields and UTC offset of instant t in the zone set now. */
static void local_at(int64_t t, mph__civil_t *c, int64_t *gmtoff)
{
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    *c = (mph__civil_t){tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                        tm.tm_hour, tm.tm_min};
    *gmtoff = tm.tm_gmtoff;
}

static bool same_minute(const mph__civil_t *a, const mph__civil_t *b)
{
    return a->year == b->year && a->month == b->month && a->day == b->day &&
           a->hour == b->hour && a->minute == b->minute;
}

/* The earliest instant at which the zone's clock shows w (second 0), or
 * false when it never does (a gap). */
static bool first_instant(const mph__civil_t *w, int64_t *out)
{
    int64_t naive = naive_of(w);
    int64_t offs[3];
    mph__civil_t c;
    local_at(naive - 36 * 3600, &c, &offs[0]);
    local_at(naive, &c, &offs[1]);
    local_at(naive + 36 * 3600, &c, &offs[2]);
    bool found = false;
    for (int i = 0; i < 3; i++) {
        int64_t u = naive - offs[i], off;
        local_at(u, &c, &off);
        if (same_minute(&c, w) && naive - u == off && (!found || u < *out)) {
            *out = u;
            found = true;
        }
    }
    return found;
}

mph_err_t mph__cron_next(const mph__cron_t *c, const char *tz, int64_t after_s,
                         int64_t *next_s)
{
    pthread_mutex_lock(&tz_lock);
    char *old = NULL;
    const char *prev = getenv("TZ");
    if (prev)
        old = strdup(prev);
    char want[300];
    snprintf(want, sizeof want, "%s", is_utc(tz) ? "UTC0" : tz);
    setenv("TZ", want, 1);
    tzset();

    mph_err_t err = MPH_ERR_NOENT;
    mph__civil_t from;
    int64_t off;
    local_at(after_s, &from, &off);
    int64_t start = naive_of(&from) + 60; /* the next whole minute */
    /* Each round skips one candidate (a gap, or an overlap's repeat): a
     * bound that can only be reached by a zone gone mad. */
    for (int round = 0; round < 10000; round++) {
        mph__civil_t f, w;
        civil_of_naive(start, &f);
        if (!mph__cron_next_local(c, &f, 146097 + 1, &w))
            break;
        int64_t u = 0;
        if (first_instant(&w, &u) && u > after_s) {
            *next_s = u;
            err = MPH_OK;
            break;
        }
        start = naive_of(&w) + 60;
    }

    if (old)
        setenv("TZ", old, 1);
    else
        setenv("TZ", ":/etc/localtime", 1);
    tzset();
    free(old);
    pthread_mutex_unlock(&tz_lock);
    return err;
}
