/*
 * A log-linear histogram of latencies in nanoseconds: values below 64 have
 * their own bucket; above, each power of two is split into 64 buckets, so a
 * quantile is off by at most 1/64 (1.6%). Fixed memory (about 30 KiB), no
 * allocation while recording. One histogram belongs to one thread.
 */
#include <math.h>
#include <stdlib.h>

#include "bench.h"

#define SUB_BITS 6
#define SUB      (1 << SUB_BITS)
#define NBUCKETS ((64 - SUB_BITS + 1) * SUB)

struct bench_hist {
    uint64_t count;
    uint64_t b[NBUCKETS];
};

static int bucket_of(uint64_t v)
{
    if (v < SUB)
        return (int)v;
    int e = 63 - __builtin_clzll(v); /* e >= SUB_BITS */
    int sub = (int)((v >> (e - SUB_BITS)) & (SUB - 1));
    return (e - SUB_BITS + 1) * SUB + sub;
}

/* The middle of bucket i, in ns. */
static double bucket_mid(int i)
{
    if (i < SUB)
        return i;
    int e = i / SUB + SUB_BITS - 1;
    int sub = i % SUB;
    double lo = ldexp(1.0, e) + sub * ldexp(1.0, e - SUB_BITS);
    return lo + ldexp(1.0, e - SUB_BITS) / 2;
}

bench_hist_t *bench_hist_new(void)
{
    return calloc(1, sizeof(bench_hist_t));
}

void bench_hist_destroy(bench_hist_t *h)
{
    free(h);
}

void bench_hist_add(bench_hist_t *h, int64_t ns)
{
    h->b[bucket_of(ns < 0 ? 0 : (uint64_t)ns)]++;
    h->count++;
}

uint64_t bench_hist_count(const bench_hist_t *h)
{
    return h->count;
}

double bench_hist_quantile_us(const bench_hist_t *h, double q)
{
    if (!h->count)
        return NAN;
    uint64_t rank = (uint64_t)ceil(q * (double)h->count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (int i = 0; i < NBUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank)
            return bucket_mid(i) / 1000.0;
    }
    return bucket_mid(NBUCKETS - 1) / 1000.0;
}

void bench_hist_write_cdf(const bench_hist_t *h, FILE *out)
{
    uint64_t seen = 0;
    for (int i = 0; i < NBUCKETS; i++) {
        if (!h->b[i])
            continue;
        seen += h->b[i];
        fprintf(out, "%.3f %.6f\n", bucket_mid(i) / 1000.0,
                (double)seen / (double)h->count);
    }
}
