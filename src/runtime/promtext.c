/*
 * Prometheus text exposition format writer. See promtext.h.
 */
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/promtext.h"

void mph__promtext_init(mph__promtext_t *pt)
{
    pt->data = NULL;
    pt->len = 0;
    pt->cap = 0;
    pt->err = MPH_OK;
}

void mph__promtext_fini(mph__promtext_t *pt)
{
    free(pt->data);
    mph__promtext_init(pt);
}

/* Makes room for n more bytes plus the terminating NUL. */
static bool reserve(mph__promtext_t *pt, size_t n)
{
    if (pt->err != MPH_OK)
        return false;
    if (pt->len + n + 1 <= pt->cap)
        return true;
    size_t cap = pt->cap ? pt->cap : 4096;
    while (cap < pt->len + n + 1) {
        if (cap > SIZE_MAX / 2) {
            pt->err = MPH_ERR_NOMEM;
            return false;
        }
        cap *= 2;
    }
    char *data = realloc(pt->data, cap);
    if (!data) {
        pt->err = MPH_ERR_NOMEM;
        return false;
    }
    pt->data = data;
    pt->cap = cap;
    return true;
}

static void put(mph__promtext_t *pt, const char *s, size_t n)
{
    if (!reserve(pt, n))
        return;
    memcpy(pt->data + pt->len, s, n);
    pt->len += n;
    pt->data[pt->len] = '\0';
}

static void puts_(mph__promtext_t *pt, const char *s)
{
    put(pt, s, strlen(s));
}

/* Appends s escaping backslash and line feed, and double quote if quote. */
static void put_escaped(mph__promtext_t *pt, const char *s, bool quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *esc = NULL;
        if (*s == '\\')
            esc = "\\\\";
        else if (*s == '\n')
            esc = "\\n";
        else if (*s == '"' && quote)
            esc = "\\\"";
        if (!esc)
            continue;
        put(pt, run, (size_t)(s - run));
        put(pt, esc, 2);
        run = s + 1;
    }
    put(pt, run, (size_t)(s - run));
}

static bool is_alpha_(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* */
static bool valid_metric_name(const char *s)
{
    if (!s || !(is_alpha_(*s) || *s == ':'))
        return false;
    for (s++; *s; s++)
        if (!(is_alpha_(*s) || is_digit(*s) || *s == ':'))
            return false;
    return true;
}

/* [a-zA-Z_][a-zA-Z0-9_]* */
static bool valid_label_name(const char *s)
{
    if (!s || !is_alpha_(*s))
        return false;
    for (s++; *s; s++)
        if (!(is_alpha_(*s) || is_digit(*s)))
            return false;
    return true;
}

static mph_err_t fail(mph__promtext_t *pt, mph_err_t err)
{
    if (pt->err == MPH_OK)
        pt->err = err;
    return pt->err;
}

static bool valid_labels(const mph__promtext_label_t *labels, size_t n,
                         bool forbid_le)
{
    if (n && !labels)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!valid_label_name(labels[i].name) || !labels[i].value)
            return false;
        if (forbid_le && strcmp(labels[i].name, "le") == 0)
            return false;
    }
    return true;
}

/* Formats v as the shortest text strtod() reads back as v. */
static void format_double(char *buf, size_t size, double v)
{
    if (isnan(v)) {
        snprintf(buf, size, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, size, "%s", v > 0 ? "+Inf" : "-Inf");
        return;
    }
    /* Integers print as such ("30", not "3e+01"), up to 2^53. */
    if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        snprintf(buf, size, "%.0f", v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

/* `name suffix{labels[,le="x"]} ` — everything up to the value. */
static void put_series(mph__promtext_t *pt, const char *name,
                       const char *suffix, const mph__promtext_label_t *labels,
                       size_t nlabels, const char *le)
{
    puts_(pt, name);
    puts_(pt, suffix);
    if (nlabels || le) {
        put(pt, "{", 1);
        for (size_t i = 0; i < nlabels; i++) {
            if (i)
                put(pt, ",", 1);
            puts_(pt, labels[i].name);
            put(pt, "=\"", 2);
            put_escaped(pt, labels[i].value, true);
            put(pt, "\"", 1);
        }
        if (le) {
            if (nlabels)
                put(pt, ",", 1);
            put(pt, "le=\"", 4);
            puts_(pt, le);
            put(pt, "\"", 1);
        }
        put(pt, "}", 1);
    }
    put(pt, " ", 1);
}

static void put_u64_line(mph__promtext_t *pt, uint64_t v)
{
    char num[32];
    int n = snprintf(num, sizeof num, "%" PRIu64 "\n", v);
    put(pt, num, (size_t)n);
}

static void put_double_line(mph__promtext_t *pt, double v)
{
    char num[40];
    format_double(num, sizeof num - 1, v);
    size_t n = strlen(num);
    num[n++] = '\n';
    put(pt, num, n);
}

mph_err_t mph__promtext_header(mph__promtext_t *pt, const char *name,
                               mph__promtext_type_t type, const char *help)
{
    static const char *const types[] = {"counter", "gauge", "histogram",
                                        "untyped"};
    if (pt->err != MPH_OK)
        return pt->err;
    if (!valid_metric_name(name) || (unsigned)type > MPH__PROM_UNTYPED)
        return fail(pt, MPH_ERR_INVALID);
    if (help) {
        puts_(pt, "# HELP ");
        puts_(pt, name);
        put(pt, " ", 1);
        put_escaped(pt, help, false);
        put(pt, "\n", 1);
    }
    puts_(pt, "# TYPE ");
    puts_(pt, name);
    put(pt, " ", 1);
    puts_(pt, types[type]);
    put(pt, "\n", 1);
    return pt->err;
}

mph_err_t mph__promtext_sample_u64(mph__promtext_t *pt, const char *name,
                                   const mph__promtext_label_t *labels,
                                   size_t nlabels, uint64_t value)
{
    if (pt->err != MPH_OK)
        return pt->err;
    if (!valid_metric_name(name) || !valid_labels(labels, nlabels, false))
        return fail(pt, MPH_ERR_INVALID);
    put_series(pt, name, "", labels, nlabels, NULL);
    put_u64_line(pt, value);
    return pt->err;
}

mph_err_t mph__promtext_sample(mph__promtext_t *pt, const char *name,
                               const mph__promtext_label_t *labels,
                               size_t nlabels, double value)
{
    if (pt->err != MPH_OK)
        return pt->err;
    if (!valid_metric_name(name) || !valid_labels(labels, nlabels, false))
        return fail(pt, MPH_ERR_INVALID);
    put_series(pt, name, "", labels, nlabels, NULL);
    put_double_line(pt, value);
    return pt->err;
}

static void put_bucket(mph__promtext_t *pt, const char *name,
                       const mph__promtext_label_t *labels, size_t nlabels,
                       double le, uint64_t cumulative)
{
    char les[40];
    format_double(les, sizeof les, le);
    put_series(pt, name, "_bucket", labels, nlabels, les);
    put_u64_line(pt, cumulative);
}

static void put_sum_count(mph__promtext_t *pt, const char *name,
                          const mph__promtext_label_t *labels, size_t nlabels,
                          double sum, uint64_t count)
{
    put_series(pt, name, "_sum", labels, nlabels, NULL);
    put_double_line(pt, sum);
    put_series(pt, name, "_count", labels, nlabels, NULL);
    put_u64_line(pt, count);
}

mph_err_t mph__promtext_histogram_buckets(mph__promtext_t *pt, const char *name,
                                          const mph__promtext_label_t *labels,
                                          size_t nlabels, const double *le,
                                          const uint64_t *counts, size_t n,
                                          double sum)
{
    if (pt->err != MPH_OK)
        return pt->err;
    if (!valid_metric_name(name) || !valid_labels(labels, nlabels, true) ||
        (n && (!le || !counts)))
        return fail(pt, MPH_ERR_INVALID);
    for (size_t i = 0; i < n; i++)
        if (isnan(le[i]) || (i && !(le[i] > le[i - 1])))
            return fail(pt, MPH_ERR_INVALID);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < n; i++) {
        cumulative += counts[i];
        put_bucket(pt, name, labels, nlabels, le[i], cumulative);
    }
    if (n == 0 || !isinf(le[n - 1]))
        put_bucket(pt, name, labels, nlabels, INFINITY, cumulative);
    put_sum_count(pt, name, labels, nlabels, sum, cumulative);
    return pt->err;
}

mph_err_t mph__promtext_histogram(mph__promtext_t *pt, const char *name,
                                  const mph__promtext_label_t *labels,
                                  size_t nlabels, const mph__histogram_t *h,
                                  double divisor)
{
    if (pt->err != MPH_OK)
        return pt->err;
    if (!valid_metric_name(name) || !valid_labels(labels, nlabels, true) ||
        !h || !(divisor > 0) || isinf(divisor))
        return fail(pt, MPH_ERR_INVALID);
    uint64_t cumulative = 0;
    size_t pos = 0;
    mph__histogram_bucket_t b;
    while (mph__histogram_next(h, &pos, &b)) {
        cumulative += b.count;
        /* The top bucket also holds every larger value: it is +Inf. */
        if (pos == MPH__HISTOGRAM_BUCKETS)
            break;
        put_bucket(pt, name, labels, nlabels, (double)b.upper / divisor,
                   cumulative);
    }
    put_bucket(pt, name, labels, nlabels, INFINITY, cumulative);
    put_sum_count(pt, name, labels, nlabels,
                  (double)mph__histogram_sum(h) / divisor, cumulative);
    return pt->err;
}

mph_err_t mph__promtext_finish(const mph__promtext_t *pt)
{
    return pt->err;
}

const char *mph__promtext_data(const mph__promtext_t *pt, size_t *len)
{
    if (len)
        *len = pt->data ? pt->len : 0;
    return pt->data ? pt->data : "";
}

char *mph__promtext_take(mph__promtext_t *pt, size_t *len)
{
    char *data = pt->err == MPH_OK ? pt->data : NULL;
    if (len)
        *len = data ? pt->len : 0;
    if (!data)
        free(pt->data);
    mph__promtext_init(pt);
    return data;
}
