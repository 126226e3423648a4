/*
 * Log-linear latency histograms for sensors (internal).
 *
 * DESIGN. Values are unsigned 64-bit nanoseconds. Below 128 every value has
 * its own bucket; above, each power of two [2^k, 2^(k+1)) is split into 64
 * equal buckets, up to 2^37 - 1 ns (about 137 s). So a bucket is never
 * wider than 1/64 of its lower bound: any value reported for a bucket is
 * within 1.5625 % of every value recorded into it. Values above
 * MPH__HISTOGRAM_MAX_VALUE are counted in the top bucket (their exact
 * maximum is still kept). The histogram is one fixed-size struct (2048
 * counters, 16 KiB + 32 bytes), so it lives inside the object that owns it
 * and recording never allocates.
 *
 * Thread rule. A histogram has one owner thread, the only one that may call
 * init, reset, record and merge-into it. Any other thread may read it at any
 * time through mph__histogram_snapshot() or mph__histogram_merge() (as the
 * source): the owner writes every field with ck_pr stores and those read
 * every field with ck_pr loads, so there is no data race, but the copy is
 * not an atomic picture. Each counter in the copy is exact as of some moment
 * of the copy; records made while the copy runs may be in some fields and
 * not in others. The copy's count is recomputed from its buckets, so count,
 * buckets and percentiles of the copy always agree; sum, min and max may be
 * off by the records made during the copy. This is the same tolerance
 * Prometheus scrapes already have. All other readers (count, min, max,
 * mean, percentiles, iteration) run on the owner thread or on a copy that
 * nobody records into.
 */
#ifndef MPH_RUNTIME_HISTOGRAM_H
#define MPH_RUNTIME_HISTOGRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MPH__HISTOGRAM_SUB_BITS  6
#define MPH__HISTOGRAM_SUB_COUNT (1u << MPH__HISTOGRAM_SUB_BITS)
/* The largest value with a bucket of its own precision: 2^37 - 1 ns. */
#define MPH__HISTOGRAM_MAX_VALUE ((UINT64_C(1) << 37) - 1)
#define MPH__HISTOGRAM_BUCKETS   2048u

typedef struct mph__histogram {
    uint64_t count; /* values recorded */
    uint64_t sum;   /* their sum, saturating at UINT64_MAX */
    uint64_t min;   /* UINT64_MAX while empty */
    uint64_t max;   /* 0 while empty */
    uint64_t buckets[MPH__HISTOGRAM_BUCKETS];
} mph__histogram_t;

/* One non-empty bucket: it holds count values v with lower <= v <= upper
 * (both inclusive; the top bucket also holds every value above upper). */
typedef struct mph__histogram_bucket {
    uint64_t lower;
    uint64_t upper;
    uint64_t count;
} mph__histogram_bucket_t;

/* Empties h. init and reset are the same operation; init names the first.
 * @locality owner */
void mph__histogram_init(mph__histogram_t *h);
void mph__histogram_reset(mph__histogram_t *h);

/* Records one value in O(1): no lock, no allocation, no loop.
 * @locality owner */
void mph__histogram_record(mph__histogram_t *h, uint64_t value_ns);

/* Adds src into dst (bucket counts, count, sum, min, max). src may be
 * recorded into by its owner meanwhile (see the thread rule above).
 * dst and src must differ. @locality owner of dst; any for src */
void mph__histogram_merge(mph__histogram_t *dst, const mph__histogram_t *src);

/* dst = a copy of src, under the thread rule above.
 * @locality owner of dst; any for src */
void mph__histogram_snapshot(mph__histogram_t *dst,
                             const mph__histogram_t *src);

/* Readers. @locality owner, or any thread on a histogram nobody records
 * into (a snapshot). All return 0 for an empty histogram. */
uint64_t mph__histogram_count(const mph__histogram_t *h);
uint64_t mph__histogram_sum(const mph__histogram_t *h);
uint64_t mph__histogram_min(const mph__histogram_t *h);
uint64_t mph__histogram_max(const mph__histogram_t *h);
double mph__histogram_mean(const mph__histogram_t *h);

/* The value at percentile p (0..100; outside is clamped, NaN is 0), by the
 * nearest-rank definition: with n values sorted ascending, the value of
 * rank r = ceil(p / 100 * n) (at least 1). The result is the upper bound of
 * the bucket holding that value, capped at max: it is never below the exact
 * value and at most exact / 64 above it (exact for values below 128 and for
 * p = 100). Values above MPH__HISTOGRAM_MAX_VALUE report max. */
uint64_t mph__histogram_value_at_percentile(const mph__histogram_t *h,
                                            double p);

/* Iterates the non-empty buckets in ascending order. Start with *pos = 0;
 * each call that returns true fills *out and advances *pos. */
bool mph__histogram_next(const mph__histogram_t *h, size_t *pos,
                         mph__histogram_bucket_t *out);

/* The bucket index a value falls into, and a bucket's inclusive bounds
 * (exposed for tests and exporters). @locality any */
size_t mph__histogram_bucket_of(uint64_t value_ns);
uint64_t mph__histogram_bucket_lower(size_t index);
uint64_t mph__histogram_bucket_upper(size_t index);

#endif /* MPH_RUNTIME_HISTOGRAM_H */
