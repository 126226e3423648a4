/*
 * Log-linear latency histograms. The layout, precision and thread rule are
 * described in histogram.h.
 *
 * Bucket index of v (v clamped to MAX_VALUE): with k = floor(log2(v)) and
 * shift = max(k - SUB_BITS, 0), the index is shift * SUB_COUNT + (v >> shift).
 * For v < 128 that is v itself; for larger v, v >> shift keeps the top seven
 * bits (64..127), so each power of two adds SUB_COUNT buckets and the
 * indexes stay contiguous. The owner writes with ck_pr stores after plain
 * reads of its own fields (no other thread writes them, so no read-modify-
 * write instruction is needed); other threads read with ck_pr loads.
 */
#include <math.h>
#include <string.h>

#include <ck_pr.h>

#include "runtime/histogram.h"

static inline size_t bucket_of(uint64_t v)
{
    v = v > MPH__HISTOGRAM_MAX_VALUE ? MPH__HISTOGRAM_MAX_VALUE : v;
    unsigned k = 63u - (unsigned)__builtin_clzll(v | 1);
    unsigned shift =
        k > MPH__HISTOGRAM_SUB_BITS ? k - MPH__HISTOGRAM_SUB_BITS : 0;
    return (size_t)shift * MPH__HISTOGRAM_SUB_COUNT + (size_t)(v >> shift);
}

static inline unsigned bucket_shift(size_t index)
{
    return index < 2 * MPH__HISTOGRAM_SUB_COUNT
               ? 0
               : (unsigned)(index >> MPH__HISTOGRAM_SUB_BITS) - 1;
}

size_t mph__histogram_bucket_of(uint64_t value_ns)
{
    return bucket_of(value_ns);
}

uint64_t mph__histogram_bucket_lower(size_t index)
{
    unsigned shift = bucket_shift(index);
    uint64_t sub = index - (size_t)shift * MPH__HISTOGRAM_SUB_COUNT;
    return sub << shift;
}

uint64_t mph__histogram_bucket_upper(size_t index)
{
    unsigned shift = bucket_shift(index);
    uint64_t sub = index - (size_t)shift * MPH__HISTOGRAM_SUB_COUNT;
    return ((sub + 1) << shift) - 1;
}

void mph__histogram_init(mph__histogram_t *h)
{
    ck_pr_store_64(&h->count, 0);
    ck_pr_store_64(&h->sum, 0);
    ck_pr_store_64(&h->min, UINT64_MAX);
    ck_pr_store_64(&h->max, 0);
    for (size_t i = 0; i < MPH__HISTOGRAM_BUCKETS; i++)
        ck_pr_store_64(&h->buckets[i], 0);
}

void mph__histogram_reset(mph__histogram_t *h)
{
    mph__histogram_init(h);
}

void mph__histogram_record(mph__histogram_t *h, uint64_t v)
{
    size_t i = bucket_of(v);
    uint64_t sum = h->sum + v;
    sum = sum < v ? UINT64_MAX : sum;
    ck_pr_store_64(&h->buckets[i], h->buckets[i] + 1);
    ck_pr_store_64(&h->sum, sum);
    ck_pr_store_64(&h->min, v < h->min ? v : h->min);
    ck_pr_store_64(&h->max, v > h->max ? v : h->max);
    ck_pr_store_64(&h->count, h->count + 1);
}

void mph__histogram_merge(mph__histogram_t *dst, const mph__histogram_t *src)
{
    /* ck_pr loads take non-const pointers; src is only read. */
    mph__histogram_t *s = (mph__histogram_t *)src;
    uint64_t added = 0;
    for (size_t i = 0; i < MPH__HISTOGRAM_BUCKETS; i++) {
        uint64_t c = ck_pr_load_64(&s->buckets[i]);
        if (c == 0)
            continue;
        added += c;
        ck_pr_store_64(&dst->buckets[i], dst->buckets[i] + c);
    }
    uint64_t ssum = ck_pr_load_64(&s->sum);
    uint64_t smin = ck_pr_load_64(&s->min);
    uint64_t smax = ck_pr_load_64(&s->max);
    uint64_t sum = dst->sum + ssum;
    ck_pr_store_64(&dst->sum, sum < ssum ? UINT64_MAX : sum);
    ck_pr_store_64(&dst->min, smin < dst->min ? smin : dst->min);
    ck_pr_store_64(&dst->max, smax > dst->max ? smax : dst->max);
    ck_pr_store_64(&dst->count, dst->count + added);
}

void mph__histogram_snapshot(mph__histogram_t *dst, const mph__histogram_t *src)
{
    mph__histogram_init(dst);
    mph__histogram_merge(dst, src);
}

uint64_t mph__histogram_count(const mph__histogram_t *h)
{
    return h->count;
}

uint64_t mph__histogram_sum(const mph__histogram_t *h)
{
    return h->sum;
}

uint64_t mph__histogram_min(const mph__histogram_t *h)
{
    return h->count ? h->min : 0;
}

uint64_t mph__histogram_max(const mph__histogram_t *h)
{
    return h->count ? h->max : 0;
}

double mph__histogram_mean(const mph__histogram_t *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}

uint64_t mph__histogram_value_at_percentile(const mph__histogram_t *h, double p)
{
    uint64_t n = h->count;
    if (n == 0)
        return 0;
    if (!(p > 0.0))
        p = 0.0;
    if (p > 100.0)
        p = 100.0;
    /* Nearest rank. The relative nudge keeps p * n that is an integer in
     * exact arithmetic (99.9 % of 1000) from rounding up to the next rank. */
    double r = p / 100.0 * (double)n;
    r = ceil(r - r * 1e-12);
    uint64_t rank = r < 1.0 ? 1 : (r >= (double)n ? n : (uint64_t)r);

    uint64_t seen = 0;
    for (size_t i = 0; i < MPH__HISTOGRAM_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            if (i == MPH__HISTOGRAM_BUCKETS - 1)
                return h->max;
            uint64_t upper = mph__histogram_bucket_upper(i);
            return upper < h->max ? upper : h->max;
        }
    }
    /* Unreachable while count equals the buckets' total, as it does for
     * the owner and for copies; kept for a histogram read against the rule. */
    return h->max;
}

bool mph__histogram_next(const mph__histogram_t *h, size_t *pos,
                         mph__histogram_bucket_t *out)
{
    for (size_t i = *pos; i < MPH__HISTOGRAM_BUCKETS; i++) {
        if (h->buckets[i] == 0)
            continue;
        out->lower = mph__histogram_bucket_lower(i);
        out->upper = mph__histogram_bucket_upper(i);
        out->count = h->buckets[i];
        *pos = i + 1;
        return true;
    }
    *pos = MPH__HISTOGRAM_BUCKETS;
    return false;
}
