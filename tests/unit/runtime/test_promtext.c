/* Unit tests of src/runtime/promtext.c. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/histogram.h"
#include "runtime/promtext.h"

static void expect_text(mph__promtext_t *pt, const char *want)
{
    size_t len;
    const char *got = mph__promtext_data(pt, &len);
    cr_expect_eq(mph__promtext_finish(pt), MPH_OK);
    cr_expect_eq(len, strlen(got));
    cr_expect_str_eq(got, want);
}

Test(promtext, header_and_escaping, .timeout = 10)
{
    mph__promtext_t pt;
    mph__promtext_init(&pt);
    cr_expect_str_eq(mph__promtext_data(&pt, NULL), "");
    cr_expect_eq(mph__promtext_header(&pt, "mph_events_total",
                                      MPH__PROM_COUNTER,
                                      "Events \"in\", C:\\path\nnext line"),
                 MPH_OK);
    mph__promtext_label_t l[] = {
        {"topic", "a\\b\"c\nd"},
        {"partition", "3"},
    };
    cr_expect_eq(
        mph__promtext_sample_u64(&pt, "mph_events_total", l, 2, UINT64_MAX),
        MPH_OK);
    cr_expect_eq(mph__promtext_header(&pt, "mph_lag", MPH__PROM_GAUGE, NULL),
                 MPH_OK);
    cr_expect_eq(mph__promtext_sample(&pt, "mph_lag", NULL, 0, 0.1), MPH_OK);
    cr_expect_eq(mph__promtext_sample(&pt, "mph_lag", l + 1, 1, -2.5e-9),
                 MPH_OK);
    cr_expect_eq(mph__promtext_sample(&pt, "mph_lag", NULL, 0, INFINITY),
                 MPH_OK);
    cr_expect_eq(mph__promtext_sample(&pt, "mph_lag", NULL, 0, -INFINITY),
                 MPH_OK);
    cr_expect_eq(mph__promtext_sample(&pt, "mph_lag", NULL, 0, NAN), MPH_OK);
    cr_expect_eq(mph__promtext_sample(&pt, "mph_lag", NULL, 0, 1e300), MPH_OK);
    expect_text(&pt,
                "# HELP mph_events_total Events \"in\", C:\\\\path\\nnext "
                "line\n"
                "# TYPE mph_events_total counter\n"
                "mph_events_total{topic=\"a\\\\b\\\"c\\nd\",partition=\"3\"} "
                "18446744073709551615\n"
                "# TYPE mph_lag gauge\n"
                "mph_lag 0.1\n"
                "mph_lag{partition=\"3\"} -2.5e-09\n"
                "mph_lag +Inf\n"
                "mph_lag -Inf\n"
                "mph_lag NaN\n"
                "mph_lag 1e+300\n");
    mph__promtext_fini(&pt);
}

Test(promtext, bad_names_are_sticky_errors, .timeout = 10)
{
    mph__promtext_t pt;
    mph__promtext_init(&pt);
    cr_expect_eq(mph__promtext_sample_u64(&pt, "ok:name_1", NULL, 0, 1),
                 MPH_OK);
    cr_expect_eq(mph__promtext_sample_u64(&pt, "1bad", NULL, 0, 1),
                 MPH_ERR_INVALID);
    /* Every later call reports the first error and writes nothing. */
    cr_expect_eq(mph__promtext_sample_u64(&pt, "fine", NULL, 0, 1),
                 MPH_ERR_INVALID);
    cr_expect_eq(mph__promtext_finish(&pt), MPH_ERR_INVALID);
    cr_expect_str_eq(mph__promtext_data(&pt, NULL), "ok:name_1 1\n");
    size_t len = 99;
    cr_expect_null(mph__promtext_take(&pt, &len));
    cr_expect_eq(len, 0);
    cr_expect_eq(mph__promtext_finish(&pt), MPH_OK); /* take empties it */

    static const char *const bad_metrics[] = {"", "a-b", "a b", "é", "a{"};
    for (size_t i = 0; i < sizeof bad_metrics / sizeof bad_metrics[0]; i++) {
        mph__promtext_init(&pt);
        cr_expect_eq(
            mph__promtext_header(&pt, bad_metrics[i], MPH__PROM_GAUGE, "h"),
            MPH_ERR_INVALID, "%s", bad_metrics[i]);
        mph__promtext_fini(&pt);
    }
    static const char *const bad_labels[] = {"", "a:b", "9a", "a-b"};
    for (size_t i = 0; i < sizeof bad_labels / sizeof bad_labels[0]; i++) {
        mph__promtext_label_t l = {bad_labels[i], "v"};
        mph__promtext_init(&pt);
        cr_expect_eq(mph__promtext_sample(&pt, "m", &l, 1, 1.0),
                     MPH_ERR_INVALID, "%s", bad_labels[i]);
        mph__promtext_fini(&pt);
    }
    /* "le" belongs to the histogram writer. */
    mph__promtext_label_t le = {"le", "1"};
    double b[] = {1.0};
    uint64_t c[] = {1};
    mph__promtext_init(&pt);
    cr_expect_eq(mph__promtext_histogram_buckets(&pt, "h", &le, 1, b, c, 1, 1),
                 MPH_ERR_INVALID);
    mph__promtext_fini(&pt);
    /* Bucket bounds must ascend. */
    double down[] = {2.0, 1.0};
    uint64_t cc[] = {1, 1};
    mph__promtext_init(&pt);
    cr_expect_eq(
        mph__promtext_histogram_buckets(&pt, "h", NULL, 0, down, cc, 2, 2),
        MPH_ERR_INVALID);
    mph__promtext_fini(&pt);
}

Test(promtext, explicit_buckets_are_cumulative, .timeout = 10)
{
    mph__promtext_t pt;
    mph__promtext_init(&pt);
    mph__promtext_label_t l[] = {{"agent", "count\"words"}};
    double le[] = {0.001, 0.01, 0.1};
    uint64_t counts[] = {5, 0, 3};
    cr_expect_eq(mph__promtext_header(&pt, "lat_seconds", MPH__PROM_HISTOGRAM,
                                      "Latency."),
                 MPH_OK);
    cr_expect_eq(mph__promtext_histogram_buckets(&pt, "lat_seconds", l, 1, le,
                                                 counts, 3, 0.25),
                 MPH_OK);
    expect_text(&pt,
                "# HELP lat_seconds Latency.\n"
                "# TYPE lat_seconds histogram\n"
                "lat_seconds_bucket{agent=\"count\\\"words\",le=\"0.001\"} 5\n"
                "lat_seconds_bucket{agent=\"count\\\"words\",le=\"0.01\"} 5\n"
                "lat_seconds_bucket{agent=\"count\\\"words\",le=\"0.1\"} 8\n"
                "lat_seconds_bucket{agent=\"count\\\"words\",le=\"+Inf\"} 8\n"
                "lat_seconds_sum{agent=\"count\\\"words\"} 0.25\n"
                "lat_seconds_count{agent=\"count\\\"words\"} 8\n");
    mph__promtext_fini(&pt);

    /* A last bound of +Inf is not repeated; overflow counts go there. */
    mph__promtext_init(&pt);
    double le2[] = {1, INFINITY};
    uint64_t c2[] = {2, 7};
    cr_expect_eq(
        mph__promtext_histogram_buckets(&pt, "x", NULL, 0, le2, c2, 2, 30),
        MPH_OK);
    expect_text(&pt, "x_bucket{le=\"1\"} 2\n"
                     "x_bucket{le=\"+Inf\"} 9\n"
                     "x_sum 30\n"
                     "x_count 9\n");
    mph__promtext_fini(&pt);
}

Test(promtext, histogram_from_mph_histogram, .timeout = 10)
{
    mph__histogram_t *h = malloc(sizeof *h);
    cr_assert_not_null(h);
    mph__histogram_init(h);
    mph__histogram_record(h, 5);
    mph__histogram_record(h, 5);
    mph__histogram_record(h, 129);               /* bucket [128, 129] */
    mph__histogram_record(h, 1000);              /* bucket [1000, 1007] */
    mph__histogram_record(h, UINT64_C(1) << 40); /* top bucket: +Inf */

    mph__promtext_t pt;
    mph__promtext_init(&pt);
    mph__promtext_label_t l[] = {{"w", "0"}};
    cr_expect_eq(mph__promtext_histogram(&pt, "t_seconds", l, 1, h, 1e9),
                 MPH_OK);
    expect_text(&pt, "t_seconds_bucket{w=\"0\",le=\"5e-09\"} 2\n"
                     "t_seconds_bucket{w=\"0\",le=\"1.29e-07\"} 3\n"
                     "t_seconds_bucket{w=\"0\",le=\"1.007e-06\"} 4\n"
                     "t_seconds_bucket{w=\"0\",le=\"+Inf\"} 5\n"
                     "t_seconds_sum{w=\"0\"} 1099.511628915\n"
                     "t_seconds_count{w=\"0\"} 5\n");

    /* Empty histogram: only +Inf, _sum and _count. */
    mph__promtext_fini(&pt);
    mph__histogram_reset(h);
    cr_expect_eq(mph__promtext_histogram(&pt, "e", NULL, 0, h, 1), MPH_OK);
    expect_text(&pt, "e_bucket{le=\"+Inf\"} 0\ne_sum 0\ne_count 0\n");
    cr_expect_eq(mph__promtext_histogram(&pt, "e", NULL, 0, h, 0),
                 MPH_ERR_INVALID);

    mph__promtext_fini(&pt);
    free(h);
}

Test(promtext, take_transfers_the_buffer, .timeout = 10)
{
    mph__promtext_t pt;
    mph__promtext_init(&pt);
    size_t len = 99;
    cr_expect_null(mph__promtext_take(&pt, &len));
    cr_expect_eq(len, 0);
    /* Enough lines to grow the buffer several times. */
    for (int i = 0; i < 2000; i++)
        mph__promtext_sample_u64(&pt, "m", NULL, 0, (uint64_t)i);
    char *text = mph__promtext_take(&pt, &len);
    cr_assert_not_null(text);
    cr_expect_eq(len, strlen(text));
    cr_expect(strncmp(text, "m 0\nm 1\n", 8) == 0);
    cr_expect(strcmp(text + len - 7, "m 1999\n") == 0);
    free(text);
    cr_expect_str_eq(mph__promtext_data(&pt, NULL), "");
    mph__promtext_fini(&pt);
}
