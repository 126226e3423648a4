/*
 * Prometheus text exposition format (version 0.0.4) writer (internal).
 *
 * Appends `# HELP` / `# TYPE` lines and samples to a growable buffer owned
 * by the writer. Metric and label names are checked against the format's
 * grammar; label values and help texts are escaped as the format says
 * (label values: backslash, double quote, line feed; help: backslash, line
 * feed). Errors are sticky: after the first failure every call returns the
 * same error and appends nothing, so a caller may check only the result of
 * mph__promtext_finish(). The output is plain text; no JSON here.
 *
 * @locality one thread per writer (the web thread, typically)
 */
#ifndef MPH_RUNTIME_PROMTEXT_H
#define MPH_RUNTIME_PROMTEXT_H

#include <stddef.h>
#include <stdint.h>

#include "mephisto/common.h"
#include "runtime/histogram.h"

typedef struct mph__promtext {
    char *data; /* owned; NUL-terminated when not NULL */
    size_t len;
    size_t cap;
    mph_err_t err; /* sticky */
} mph__promtext_t;

typedef struct mph__promtext_label {
    const char *name;  /* [a-zA-Z_][a-zA-Z0-9_]* */
    const char *value; /* any UTF-8; escaped on output */
} mph__promtext_label_t;

typedef enum mph__promtext_type {
    MPH__PROM_COUNTER,
    MPH__PROM_GAUGE,
    MPH__PROM_HISTOGRAM,
    MPH__PROM_UNTYPED
} mph__promtext_type_t;

/* An empty writer; allocates nothing yet. */
void mph__promtext_init(mph__promtext_t *pt);
/* Frees the buffer (if not taken). pt may be reused after init. */
void mph__promtext_fini(mph__promtext_t *pt);

/* "# HELP name help\n# TYPE name type\n". help may be NULL (no HELP line).
 * Errors: MPH_ERR_INVALID (bad metric name), MPH_ERR_NOMEM. */
mph_err_t mph__promtext_header(mph__promtext_t *pt, const char *name,
                               mph__promtext_type_t type, const char *help);

/* One sample line `name{l1="v1",...} value` (no braces without labels).
 * labels may be NULL when nlabels is 0. The u64 form prints the integer
 * exactly (doubles lose precision above 2^53); the double form prints the
 * shortest text that reads back as the same double, and NaN, +Inf, -Inf.
 * Errors: MPH_ERR_INVALID (bad metric or label name), MPH_ERR_NOMEM. */
mph_err_t mph__promtext_sample_u64(mph__promtext_t *pt, const char *name,
                                   const mph__promtext_label_t *labels,
                                   size_t nlabels, uint64_t value);
mph_err_t mph__promtext_sample(mph__promtext_t *pt, const char *name,
                               const mph__promtext_label_t *labels,
                               size_t nlabels, double value);

/* A histogram's samples from explicit buckets: counts[i] values fell in
 * (le[i-1], le[i]] (not cumulative; le ascending, the last may be
 * INFINITY). Writes cumulative name_bucket{...,le="x"} lines, a final
 * le="+Inf" line if le does not end with INFINITY, then name_sum and
 * name_count (the total of counts). Errors: MPH_ERR_INVALID (bad names, a
 * label named "le", le not ascending), MPH_ERR_NOMEM. */
mph_err_t mph__promtext_histogram_buckets(mph__promtext_t *pt, const char *name,
                                          const mph__promtext_label_t *labels,
                                          size_t nlabels, const double *le,
                                          const uint64_t *counts, size_t n,
                                          double sum);

/* A histogram's samples from an mph__histogram_t, one bucket line per
 * non-empty bucket with le = its inclusive upper bound / divisor (1e9 turns
 * nanoseconds into the seconds Prometheus expects; dividing by an exact
 * power of ten prints 129 ns as 1.29e-07, where multiplying by 1e-9 would
 * not), then +Inf, _sum (sum / divisor) and _count. h must not be recorded
 * into meanwhile: pass a snapshot. Errors as above, and MPH_ERR_INVALID for
 * a divisor that is not positive. */
mph_err_t mph__promtext_histogram(mph__promtext_t *pt, const char *name,
                                  const mph__promtext_label_t *labels,
                                  size_t nlabels, const mph__histogram_t *h,
                                  double divisor);

/* The sticky error (MPH_OK if every call succeeded). */
mph_err_t mph__promtext_finish(const mph__promtext_t *pt);

/* The text so far, borrowed until the next call on pt; "" when empty. */
const char *mph__promtext_data(const mph__promtext_t *pt, size_t *len);

/* Hands the buffer (malloc'd, NUL-terminated, free() it) to the caller and
 * empties pt. NULL with *len = 0 when nothing was written or after an
 * error. */
char *mph__promtext_take(mph__promtext_t *pt, size_t *len);

#endif /* MPH_RUNTIME_PROMTEXT_H */
