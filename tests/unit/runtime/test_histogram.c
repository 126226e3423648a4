/* Unit tests of src/runtime/histogram.c. */
#include <criterion/criterion.h>
#include <ck_pr.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/histogram.h"

/* xorshift64*: a seeded, reproducible generator. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

/* Log-uniform values from 1 ns to about 100 s, so every decade is tested. */
static uint64_t rng_latency(uint64_t *s)
{
    unsigned bits = (unsigned)(rng_next(s) % 37); /* 2^0 .. 2^36 */
    uint64_t base = UINT64_C(1) << bits;
    return base + rng_next(s) % base;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Fresh histograms come from the heap: 16 KiB each. */
static mph__histogram_t *hist_new(void)
{
    mph__histogram_t *h = malloc(sizeof *h);
    cr_assert_not_null(h);
    mph__histogram_init(h);
    return h;
}

Test(histogram, empty_reports_zeroes, .timeout = 10)
{
    mph__histogram_t *h = hist_new();
    cr_expect_eq(mph__histogram_count(h), 0);
    cr_expect_eq(mph__histogram_sum(h), 0);
    cr_expect_eq(mph__histogram_min(h), 0);
    cr_expect_eq(mph__histogram_max(h), 0);
    cr_expect_eq(mph__histogram_mean(h), 0.0);
    cr_expect_eq(mph__histogram_value_at_percentile(h, 50), 0);
    cr_expect_eq(mph__histogram_value_at_percentile(h, 100), 0);
    size_t pos = 0;
    mph__histogram_bucket_t b;
    cr_expect_not(mph__histogram_next(h, &pos, &b));

    /* Merging an empty histogram changes nothing, min included. */
    mph__histogram_t *e = hist_new();
    mph__histogram_record(h, 42);
    mph__histogram_merge(h, e);
    cr_expect_eq(mph__histogram_count(h), 1);
    cr_expect_eq(mph__histogram_min(h), 42);
    cr_expect_eq(mph__histogram_max(h), 42);
    free(e);
    free(h);
}

Test(histogram, bucket_layout_is_contiguous_and_precise, .timeout = 10)
{
    cr_expect_eq(mph__histogram_bucket_of(0), 0);
    cr_expect_eq(mph__histogram_bucket_of(127), 127);
    cr_expect_eq(mph__histogram_bucket_of(MPH__HISTOGRAM_MAX_VALUE),
                 MPH__HISTOGRAM_BUCKETS - 1);
    cr_expect_eq(mph__histogram_bucket_of(UINT64_MAX),
                 MPH__HISTOGRAM_BUCKETS - 1);
    cr_expect_eq(mph__histogram_bucket_lower(0), 0);
    cr_expect_eq(mph__histogram_bucket_upper(MPH__HISTOGRAM_BUCKETS - 1),
                 MPH__HISTOGRAM_MAX_VALUE);
    for (size_t i = 0; i < MPH__HISTOGRAM_BUCKETS; i++) {
        uint64_t lo = mph__histogram_bucket_lower(i);
        uint64_t hi = mph__histogram_bucket_upper(i);
        cr_assert_leq(lo, hi, "bucket %zu", i);
        if (i > 0)
            cr_assert_eq(lo, mph__histogram_bucket_upper(i - 1) + 1,
                         "bucket %zu", i);
        cr_assert_eq(mph__histogram_bucket_of(lo), i, "bucket %zu", i);
        cr_assert_eq(mph__histogram_bucket_of(hi), i, "bucket %zu", i);
        /* width <= lower / 64: the stated 1.5625 % precision */
        if (lo >= 128)
            cr_assert_leq((hi - lo + 1) * 64, lo, "bucket %zu", i);
        else
            cr_assert_eq(lo, hi, "bucket %zu", i);
    }
}

Test(histogram, edge_values, .timeout = 10)
{
    mph__histogram_t *h = hist_new();
    mph__histogram_record(h, 0);
    cr_expect_eq(mph__histogram_value_at_percentile(h, 50), 0);
    cr_expect_eq(mph__histogram_min(h), 0);
    mph__histogram_record(h, 1);
    cr_expect_eq(mph__histogram_value_at_percentile(h, 50), 0);
    cr_expect_eq(mph__histogram_value_at_percentile(h, 100), 1);
    cr_expect_eq(mph__histogram_max(h), 1);
    cr_expect_eq(mph__histogram_sum(h), 1);

    /* A huge value lands in the top bucket, is reported exactly as max,
     * and saturates the sum instead of wrapping it. */
    mph__histogram_record(h, UINT64_MAX);
    mph__histogram_record(h, UINT64_MAX - 1);
    cr_expect_eq(mph__histogram_count(h), 4);
    cr_expect_eq(mph__histogram_max(h), UINT64_MAX);
    cr_expect_eq(mph__histogram_sum(h), UINT64_MAX);
    cr_expect_eq(mph__histogram_value_at_percentile(h, 100), UINT64_MAX);
    cr_expect_eq(mph__histogram_value_at_percentile(h, 75), UINT64_MAX);
    cr_expect_eq(mph__histogram_value_at_percentile(h, 25), 0);
    cr_expect_eq(h->buckets[MPH__HISTOGRAM_BUCKETS - 1], 2);

    /* Percentiles out of range are clamped; NaN reads as 0. */
    cr_expect_eq(mph__histogram_value_at_percentile(h, -5), 0);
    cr_expect_eq(mph__histogram_value_at_percentile(h, 1000), UINT64_MAX);
    cr_expect_eq(mph__histogram_value_at_percentile(h, NAN), 0);

    mph__histogram_reset(h);
    cr_expect_eq(mph__histogram_count(h), 0);
    cr_expect_eq(mph__histogram_max(h), 0);
    cr_expect_eq(mph__histogram_sum(h), 0);
    free(h);
}

#define N_SAMPLES 100000

Test(histogram, percentiles_within_precision, .timeout = 20)
{
    uint64_t seed = 0x6d657068u;
    uint64_t *v = malloc(N_SAMPLES * sizeof *v);
    cr_assert_not_null(v);
    mph__histogram_t *h = hist_new();
    long double sum = 0;
    for (size_t i = 0; i < N_SAMPLES; i++) {
        v[i] = rng_latency(&seed);
        sum += (long double)v[i];
        mph__histogram_record(h, v[i]);
    }
    qsort(v, N_SAMPLES, sizeof *v, cmp_u64);
    cr_expect_eq(mph__histogram_count(h), N_SAMPLES);
    cr_expect_eq(mph__histogram_min(h), v[0]);
    cr_expect_eq(mph__histogram_max(h), v[N_SAMPLES - 1]);
    cr_expect_eq((long double)mph__histogram_sum(h), sum);
    cr_expect_float_eq(mph__histogram_mean(h), (double)(sum / N_SAMPLES),
                       1e-9 * (double)(sum / N_SAMPLES));

    /* p in units of 1/1000 %, so the nearest rank is exact integer math. */
    static const uint64_t pm[] = {0,     1000,  10000, 25000, 50000, 75000,
                                  90000, 99000, 99900, 99990, 99999, 100000};
    for (size_t k = 0; k < sizeof pm / sizeof pm[0]; k++) {
        uint64_t rank = (pm[k] * N_SAMPLES + 99999) / 100000;
        if (rank == 0)
            rank = 1;
        uint64_t exact = v[rank - 1];
        uint64_t got =
            mph__histogram_value_at_percentile(h, (double)pm[k] / 1000.0);
        cr_expect_geq(got, exact, "p%g", (double)pm[k] / 1000.0);
        cr_expect_leq(got - exact, exact / 64, "p%g: got %llu exact %llu",
                      (double)pm[k] / 1000.0, (unsigned long long)got,
                      (unsigned long long)exact);
    }
    cr_expect_eq(mph__histogram_value_at_percentile(h, 100), v[N_SAMPLES - 1]);

    /* Iteration covers every value once, in ascending buckets. */
    size_t pos = 0, idx = 0;
    uint64_t total = 0, last_upper = 0;
    bool first = true;
    mph__histogram_bucket_t b;
    while (mph__histogram_next(h, &pos, &b)) {
        cr_assert(first || b.lower > last_upper);
        cr_assert_gt(b.count, 0);
        for (uint64_t j = 0; j < b.count; j++, idx++) {
            cr_assert_geq(v[idx], b.lower);
            cr_assert_leq(v[idx], b.upper);
        }
        total += b.count;
        last_upper = b.upper;
        first = false;
    }
    cr_expect_eq(total, N_SAMPLES);
    free(h);
    free(v);
}

Test(histogram, merge_equals_recording_all, .timeout = 10)
{
    uint64_t seed = 12345;
    mph__histogram_t *all = hist_new();
    mph__histogram_t *part[4];
    for (int w = 0; w < 4; w++)
        part[w] = hist_new();
    for (size_t i = 0; i < 50000; i++) {
        uint64_t x = rng_latency(&seed);
        if (i % 997 == 0)
            x = 0;
        mph__histogram_record(all, x);
        mph__histogram_record(part[rng_next(&seed) % 4], x);
    }
    mph__histogram_t *merged = hist_new();
    for (int w = 0; w < 4; w++)
        mph__histogram_merge(merged, part[w]);
    cr_expect_eq(memcmp(merged, all, sizeof *all), 0);

    mph__histogram_t *snap = hist_new();
    mph__histogram_record(snap, 7); /* snapshot replaces, not adds */
    mph__histogram_snapshot(snap, all);
    cr_expect_eq(memcmp(snap, all, sizeof *all), 0);

    for (int w = 0; w < 4; w++)
        free(part[w]);
    free(snap);
    free(merged);
    free(all);
}

/* A reader copies a histogram while its owner records into it. The copies
 * stay self-consistent (count == buckets' total) and never go backwards.
 * Run under TSan this also checks the ck_pr read/write rule. */
struct owner_arg {
    mph__histogram_t *h;
    int done;
};

static void *owner_main(void *p)
{
    struct owner_arg *a = p;
    uint64_t seed = 99;
    for (int i = 0; i < 300000; i++)
        mph__histogram_record(a->h, rng_latency(&seed));
    ck_pr_store_int(&a->done, 1);
    return NULL;
}

Test(histogram, snapshot_while_owner_records, .timeout = 20)
{
    struct owner_arg a = {hist_new(), 0};
    mph__histogram_t *snap = hist_new();
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, owner_main, &a), 0);
    uint64_t last = 0;
    int copies = 0;
    for (;;) {
        int done = ck_pr_load_int(&a.done);
        mph__histogram_snapshot(snap, a.h);
        uint64_t total = 0;
        for (size_t i = 0; i < MPH__HISTOGRAM_BUCKETS; i++)
            total += snap->buckets[i];
        cr_assert_eq(mph__histogram_count(snap), total);
        cr_assert_geq(total, last);
        last = total;
        copies++;
        if (done)
            break;
    }
    pthread_join(t, NULL);
    cr_expect_eq(last, 300000);
    cr_expect_gt(copies, 0);
    free(snap);
    free(a.h);
}
