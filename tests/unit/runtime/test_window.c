/* Unit tests of the pure parts of src/runtime/window.c: window arithmetic,
 * storage keys, the meta value and declaration checks. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/window.h"

TestSuite(window, .timeout = 20);

static uint64_t rng(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

static struct mph_window make(int kind, int64_t a, int64_t b, int64_t expires)
{
    struct mph_window w;
    char err[256];
    cr_assert_eq(mph__window_init(&w, kind, a, b, expires, err, sizeof err),
                 MPH_OK, "%s", err);
    return w;
}

Test(window, floor_div_rounds_down_for_negatives)
{
    cr_expect_eq(mph__window_floor_div(7, 3), 2);
    cr_expect_eq(mph__window_floor_div(6, 3), 2);
    cr_expect_eq(mph__window_floor_div(0, 5), 0);
    cr_expect_eq(mph__window_floor_div(-1, 5), -1);
    cr_expect_eq(mph__window_floor_div(-5, 5), -1);
    cr_expect_eq(mph__window_floor_div(-6, 5), -2);
    cr_expect_eq(mph__window_floor_div(-7, 3), -3);
}

Test(window, tumbling_one_window_per_time)
{
    struct mph_window w = make(MPH__WINDOW_TUMBLING, 1000, 0, 0);
    int64_t s[4];
    cr_expect_eq(mph__window_starts(&w, 0, s, 4), 1);
    cr_expect_eq(s[0], 0);
    cr_expect_eq(mph__window_starts(&w, 999, s, 4), 1);
    cr_expect_eq(s[0], 0);
    cr_expect_eq(mph__window_starts(&w, 1000, s, 4), 1);
    cr_expect_eq(s[0], 1000);
    cr_expect_eq(mph__window_current(&w, 2500), 2000);
    cr_expect_eq(w.size, 1000);
    cr_expect_eq(w.step, 1000);
}

Test(window, hopping_overlaps_including_negative_starts)
{
    struct mph_window w = make(MPH__WINDOW_HOPPING, 10, 5, 0);
    int64_t s[8];
    cr_assert_eq(mph__window_starts(&w, 7, s, 8), 2);
    cr_expect(s[0] == 0 && s[1] == 5);
    cr_assert_eq(mph__window_starts(&w, 5, s, 8), 2);
    cr_expect(s[0] == 0 && s[1] == 5);
    cr_assert_eq(mph__window_starts(&w, 4, s, 8), 2);
    cr_expect(s[0] == -5 && s[1] == 0, "time 4 is in [-5,5) and [0,10)");
    cr_expect_eq(mph__window_current(&w, 7), 5,
                 "the latest window containing 7");

    struct mph_window u = make(MPH__WINDOW_HOPPING, 10, 3, 0);
    cr_assert_eq(mph__window_starts(&u, 5, s, 8), 3);
    cr_expect(s[0] == -3 && s[1] == 0 && s[2] == 3);
}

/* Every start k*step with start <= t < start + size, by enumeration. */
Test(window, hopping_matches_brute_force)
{
    uint64_t st = 42;
    for (int round = 0; round < 2000; round++) {
        int64_t size = 1 + (int64_t)(rng(&st) % 50);
        int64_t step = 1 + (int64_t)(rng(&st) % (uint64_t)size);
        struct mph_window w = make(MPH__WINDOW_HOPPING, size, step, 0);
        int64_t t = (int64_t)(rng(&st) % 400) - 200;
        int64_t got[64], want[64];
        size_t n = mph__window_starts(&w, t, got, 64);
        size_t m = 0;
        for (int64_t k = -400; k <= 400; k++)
            if (k * step <= t && t < k * step + size)
                want[m++] = k * step;
        cr_assert_eq(n, m, "size %lld step %lld t %lld", (long long)size,
                     (long long)step, (long long)t);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq(got[i], want[i]);
        cr_assert_eq(mph__window_current(&w, t), want[m - 1]);
    }
}

Test(window, ranges_reports_the_full_count_beyond_cap)
{
    struct mph_window w = make(MPH__WINDOW_HOPPING, 100, 10, 0);
    int64_t s[3];
    size_t n = 0;
    cr_assert_eq(mph_window_ranges(&w, 95, s, 3, &n), MPH_OK);
    cr_expect_eq(n, 10);
    cr_expect(s[0] == 0 && s[1] == 10 && s[2] == 20);
    cr_expect_eq(mph_window_ranges(&w, INT64_MAX, s, 3, &n), MPH_ERR_RANGE);
    cr_expect_eq(mph_window_ranges(NULL, 0, s, 3, &n), MPH_ERR_INVALID);
    int64_t a, e;
    cr_assert_eq(mph_window_current(&w, 95, &a, &e), MPH_OK);
    cr_expect(a == 90 && e == 190);
}

Test(window, sliding_window_around_each_time)
{
    struct mph_window w = make(MPH__WINDOW_SLIDING, 5, 3, 0);
    int64_t s[2];
    cr_assert_eq(mph__window_starts(&w, 10, s, 2), 1);
    cr_expect_eq(s[0], 5);
    cr_expect_eq(w.size, 9, "t-5 .. t+3 inclusive");
    int64_t a, e;
    mph_window_current(&w, 10, &a, &e);
    cr_expect(a == 5 && e == 14);
    struct mph_window z = make(MPH__WINDOW_SLIDING, 0, 0, 0);
    cr_expect_eq(z.size, 1);
}

Test(window, due_and_expiry_points)
{
    struct mph_window w = make(MPH__WINDOW_TUMBLING, 10, 0, 5);
    w.grace = 2;
    cr_expect_not(mph__window_due(&w, 0, 11));
    cr_expect(mph__window_due(&w, 0, 12), "closes at end + grace");
    cr_expect_eq(mph__window_expiry(&w, 0), 15, "end + expires");
    w.expires = 1;
    cr_expect_eq(mph__window_expiry(&w, 0), 12, "never before closing");
    w.expires = 0;
    w.grace = 0;
    cr_expect_eq(mph__window_expiry(&w, 20), 30);
    cr_expect(mph__window_due(&w, 20, 30));
}

Test(window, declaration_limits)
{
    struct mph_window w;
    cr_expect_eq(mph__window_init(&w, MPH__WINDOW_TUMBLING, 0, 0, 0, NULL, 0),
                 MPH_ERR_RANGE);
    cr_expect_eq(mph__window_init(&w, MPH__WINDOW_TUMBLING,
                                  MPH__WINDOW_SPAN_MAX + 1, 0, 0, NULL, 0),
                 MPH_ERR_RANGE);
    cr_expect_eq(mph__window_init(&w, MPH__WINDOW_TUMBLING, 10, 0, -1, NULL, 0),
                 MPH_ERR_RANGE);
    cr_expect_eq(mph__window_init(&w, MPH__WINDOW_HOPPING, 10, 0, 0, NULL, 0),
                 MPH_ERR_RANGE);
    cr_expect_eq(mph__window_init(&w, MPH__WINDOW_HOPPING, 10, 11, 0, NULL, 0),
                 MPH_ERR_RANGE);
    char err[256] = "";
    cr_expect_eq(mph__window_init(&w, MPH__WINDOW_HOPPING, 100000, 10, 0, err,
                                  sizeof err),
                 MPH_ERR_RANGE);
    cr_expect(strstr(err, "windows per time"), "%s", err);
    cr_expect_eq(
        mph__window_init(&w, MPH__WINDOW_HOPPING, 10240, 10, 0, NULL, 0),
        MPH_OK, "exactly 1024 windows per time is allowed");
    cr_expect_eq(mph__window_init(&w, MPH__WINDOW_SLIDING, -1, 0, 0, NULL, 0),
                 MPH_ERR_RANGE);
    cr_expect_eq(mph__window_init(&w, MPH__WINDOW_SLIDING, MPH__WINDOW_SPAN_MAX,
                                  1, 0, NULL, 0),
                 MPH_ERR_RANGE);
    cr_expect_eq(mph__window_init(&w, 9, 1, 1, 0, NULL, 0), MPH_ERR_INVALID);
    cr_assert_eq(mph__window_init(&w, MPH__WINDOW_SLIDING, 1, 2, 3, NULL, 0),
                 MPH_OK);
    cr_expect(w.max_future == 86400000 && w.grace == 0 &&
                  w.time_src == MPH__WINDOW_TIME_EVENT,
              "defaults");
}

static int cmp_bytes(const unsigned char *a, size_t al, const unsigned char *b,
                     size_t bl)
{
    size_t n = al < bl ? al : bl;
    int c = memcmp(a, b, n);
    return c ? c : (al > bl) - (al < bl);
}

Test(window, storage_keys_sort_by_start_then_key)
{
    uint64_t st = 7;
    unsigned char a[64], b[64];
    for (int i = 0; i < 20000; i++) {
        int64_t sa = (int64_t)(rng(&st) % 2000000) - 1000000;
        int64_t sb = (int64_t)(rng(&st) % 2000000) - 1000000;
        if (i % 7 == 0)
            sb = sa;
        char ka[8], kb[8];
        size_t kal =
            (size_t)snprintf(ka, sizeof ka, "k%d", (int)(rng(&st) % 100));
        size_t kbl =
            (size_t)snprintf(kb, sizeof kb, "k%d", (int)(rng(&st) % 100));
        size_t al = mph__window_key(sa, ka, kal, a);
        size_t bl = mph__window_key(sb, kb, kbl, b);
        int c = cmp_bytes(a, al, b, bl);
        if (sa != sb)
            cr_assert_eq(c < 0, sa < sb, "%lld vs %lld", (long long)sa,
                         (long long)sb);
        else
            cr_assert_eq(c < 0,
                         cmp_bytes((void *)ka, kal, (void *)kb, kbl) < 0);
        int64_t ps;
        const void *pk;
        size_t pkl;
        cr_assert(mph__window_key_parse(a, al, &ps, &pk, &pkl));
        cr_assert(ps == sa && pkl == kal && !memcmp(pk, ka, kal));
    }
    /* extremes round-trip */
    int64_t ext[] = {INT64_MIN, -1, 0, 1, INT64_MAX};
    for (size_t i = 0; i < 5; i++) {
        size_t l = mph__window_key(ext[i], NULL, 0, a);
        int64_t ps;
        const void *pk;
        size_t pkl;
        cr_assert(mph__window_key_parse(a, l, &ps, &pk, &pkl));
        cr_expect(ps == ext[i] && pkl == 0);
    }
}

Test(window, meta_key_is_not_a_storage_key)
{
    int64_t s;
    const void *k;
    size_t kl;
    cr_expect_not(mph__window_key_parse(MPH__WINDOW_META_KEY,
                                        MPH__WINDOW_META_KLEN, &s, &k, &kl));
    cr_expect_eq(MPH__WINDOW_META_KLEN, sizeof MPH__WINDOW_META_KEY - 1);
    unsigned char v[16];
    int64_t a, b;
    mph__window_meta_encode(123456789012LL, 123456789000LL, v);
    cr_assert(mph__window_meta_decode(v, 16, &a, &b));
    cr_expect(a == 123456789012LL && b == 123456789000LL);
    cr_expect_not(mph__window_meta_decode(v, 15, &a, &b), "wrong length");
    mph__window_meta_encode(5, 6, v);
    cr_expect_not(mph__window_meta_decode(v, 16, &a, &b),
                  "closed beyond stream time");
}

Test(window, time_source_specs)
{
    int src;
    char *f;
    cr_expect_eq(mph__window_parse_time_source("event", &src, &f), MPH_OK);
    cr_expect(src == MPH__WINDOW_TIME_EVENT && !f);
    cr_expect_eq(mph__window_parse_time_source("wall", &src, &f), MPH_OK);
    cr_expect_eq(src, MPH__WINDOW_TIME_WALL);
    cr_assert_eq(mph__window_parse_time_source("field:meta.ts", &src, &f),
                 MPH_OK);
    cr_expect(src == MPH__WINDOW_TIME_FIELD && !strcmp(f, "meta.ts"));
    free(f);
    const char *bad[] = {"",         "Event",      "field:", "field:.a",
                         "field:a.", "field:a..b", "clock",  NULL};
    for (int i = 0; bad[i]; i++)
        cr_expect_eq(mph__window_parse_time_source(bad[i], &src, &f),
                     MPH_ERR_INVALID, "%s", bad[i]);
    cr_expect_eq(mph__window_parse_time_source(NULL, &src, &f),
                 MPH_ERR_INVALID);
}
