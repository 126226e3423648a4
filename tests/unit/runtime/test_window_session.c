/* Unit tests of the pure parts of session windows (src/runtime/
 * window_session.c): which sessions an event joins (merging, bridging),
 * the close and expiry points, the default merge and the stored value. The
 * joining rule is also checked against a brute-force reference: sessions
 * built event by event from random times, compared with the sessions
 * computed by sorting the times and cutting where two neighbours are more
 * than gap apart. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/window.h"

TestSuite(window_session, .timeout = 20);

static struct mph_window make(int64_t gap, int64_t expires, int64_t grace)
{
    struct mph_window w;
    char err[256];
    cr_assert_eq(mph__window_init(&w, MPH__WINDOW_SESSION, gap, 0, expires, err,
                                  sizeof err),
                 MPH_OK, "%s", err);
    w.grace = grace;
    return w;
}

Test(window_session, gap_is_validated)
{
    struct mph_window w;
    char err[256] = "";
    cr_expect_eq(
        mph__window_init(&w, MPH__WINDOW_SESSION, 0, 0, 0, err, sizeof err),
        MPH_ERR_RANGE);
    cr_expect(strstr(err, "session gap"), "%s", err);
    cr_expect_eq(
        mph__window_init(&w, MPH__WINDOW_SESSION, -5, 0, 0, err, sizeof err),
        MPH_ERR_RANGE);
    cr_expect_eq(
        mph__window_init(&w, MPH__WINDOW_SESSION, 1, 0, -1, err, sizeof err),
        MPH_ERR_RANGE);
    cr_expect_eq(
        mph__window_init(&w, MPH__WINDOW_SESSION, 30000, 0, 0, err, sizeof err),
        MPH_OK);
    cr_expect_eq(w.size, 30000);
}

/* sessions as (start, end) pairs */
static void find(const int64_t *se, size_t n, int64_t gap, int64_t t,
                 size_t *first, size_t *count, int64_t *s, int64_t *e)
{
    mph__session_find(se, 2, n, gap, t, first, count, s, e);
}

Test(window_session, an_event_alone_starts_a_session)
{
    size_t f, c;
    int64_t s, e;
    find(NULL, 0, 10, 500, &f, &c, &s, &e);
    cr_expect_eq(c, 0);
    cr_expect_eq(s, 500);
    cr_expect_eq(e, 500);
    int64_t se[] = {100, 120};
    find(se, 1, 10, 131, &f, &c, &s, &e); /* 11 after the end: apart */
    cr_expect_eq(c, 0);
    find(se, 1, 10, 89, &f, &c, &s, &e); /* 11 before the start */
    cr_expect_eq(c, 0);
}

Test(window_session, events_within_the_gap_join_inclusive)
{
    int64_t se[] = {100, 120};
    size_t f, c;
    int64_t s, e;
    find(se, 1, 10, 130, &f, &c, &s, &e);
    cr_expect_eq(c, 1);
    cr_expect_eq(f, 0);
    cr_expect_eq(s, 100);
    cr_expect_eq(e, 130);
    find(se, 1, 10, 90, &f, &c, &s, &e); /* extends backwards */
    cr_expect_eq(c, 1);
    cr_expect_eq(s, 90);
    cr_expect_eq(e, 120);
    find(se, 1, 10, 110, &f, &c, &s, &e); /* inside */
    cr_expect_eq(c, 1);
    cr_expect_eq(s, 100);
    cr_expect_eq(e, 120);
}

Test(window_session, a_late_event_bridges_two_sessions)
{
    int64_t se[] = {0, 10, 25, 30, 100, 100};
    size_t f, c;
    int64_t s, e;
    for (int64_t t = 15; t <= 20; t++) {
        find(se, 3, 10, t, &f, &c, &s, &e);
        cr_expect_eq(c, 2, "t=%lld", (long long)t);
        cr_expect_eq(f, 0);
        cr_expect_eq(s, 0);
        cr_expect_eq(e, 30);
    }
    find(se, 3, 10, 14, &f, &c, &s, &e); /* reaches only the first */
    cr_expect_eq(c, 1);
    cr_expect_eq(f, 0);
    cr_expect_eq(e, 14 > 10 ? 14 : 10);
    find(se, 3, 10, 21, &f, &c, &s, &e); /* only the second */
    cr_expect_eq(c, 1);
    cr_expect_eq(f, 1);
    cr_expect_eq(s, 21);
    cr_expect_eq(e, 30);
    find(se, 3, 10, 95, &f, &c, &s, &e);
    cr_expect_eq(c, 1);
    cr_expect_eq(f, 2);
}

Test(window_session, close_and_expiry_points)
{
    struct mph_window w = make(10, 0, 0);
    /* last event 100: an event at 110 still joins; at stream time 111 none can
     */
    cr_expect_eq(mph__session_close_point(&w, 100), 111);
    cr_expect_eq(mph__session_expire_point(&w, 100),
                 111); /* expires 0: at close */
    w = make(10, 1000, 5);
    cr_expect_eq(mph__session_close_point(&w, 100), 116);
    cr_expect_eq(mph__session_expire_point(&w, 100), 1111);
    w = make(10, 2, 50); /* grace longer than expiry: kept until closed */
    cr_expect_eq(mph__session_expire_point(&w, 100), 161);
    cr_expect_geq(mph__session_expire_point(&w, 100),
                  mph__session_close_point(&w, 100));
}

static int64_t be(const unsigned char *b)
{
    int64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | b[i];
    return v;
}

Test(window_session, default_merge_adds_counts_else_keeps_the_later)
{
    struct mph__window_capture c = {0};
    unsigned char a[8] = {0, 0, 0, 0, 0, 0, 0, 3},
                  b[8] = {0, 0, 0, 0, 0, 0, 1, 4};
    cr_assert_eq(mph__session_default_merge(a, 8, b, 8, &c), MPH_OK);
    cr_expect_eq(c.len, 8);
    cr_expect_eq(be(c.buf), 3 + 260);
    cr_assert_eq(mph__session_default_merge("abc", 3, "later", 5, &c), MPH_OK);
    cr_expect_eq(c.len, 5);
    cr_expect(!memcmp(c.buf, "later", 5));
    cr_assert_eq(mph__session_default_merge(a, 8, "", 0, &c), MPH_OK);
    cr_expect_eq(c.len, 0);
    free(c.buf);
}

Test(window_session, stored_value_round_trips_and_tells_defaults_apart)
{
    unsigned char buf[64];
    size_t n = mph__session_value_encode("hello", 5, 123456789, buf);
    cr_assert_eq(n, 5 + MPH__SESSION_SUFFIX);
    size_t ul;
    int64_t end;
    cr_assert(mph__session_value_decode(buf, n, &ul, &end));
    cr_expect_eq(ul, 5);
    cr_expect_eq(end, 123456789);
    n = mph__session_value_encode(NULL, 0, 7, buf);
    cr_assert(mph__session_value_decode(buf, n, &ul, &end));
    cr_expect_eq(ul, 0);
    cr_expect_eq(end, 7);
    /* a table default (an i64 0, a string) is not a stored session */
    unsigned char zero[8] = {0};
    cr_expect_not(mph__session_value_decode(zero, 8, &ul, &end));
    cr_expect_not(
        mph__session_value_decode("some default value", 18, &ul, &end));
    cr_expect_not(mph__session_value_decode(NULL, 0, &ul, &end));
}

/* Event by event with the helper versus sorting and cutting. */
Test(window_session, sessions_match_a_brute_force_reference)
{
    uint64_t seed = 7;
    for (int round = 0; round < 200; round++) {
        int64_t gap = 1 + (int64_t)(seed % 20);
        int n = 1 + (int)(seed % 40);
        int64_t times[64];
        int64_t se[2 * 64];
        size_t ns = 0;
        for (int i = 0; i < n; i++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            times[i] = (int64_t)((seed >> 33) % 400);
            size_t f, c;
            int64_t s, e;
            mph__session_find(se, 2, ns, gap, times[i], &f, &c, &s, &e);
            cr_assert_leq(c, 2);
            /* replace [f, f+c) by (s, e), keeping the order */
            size_t at = c ? f : 0;
            if (!c)
                while (at < ns && se[2 * at] < s)
                    at++;
            memmove(se + 2 * (at + 1), se + 2 * (at + c),
                    (ns - at - c) * 2 * sizeof *se);
            se[2 * at] = s;
            se[2 * at + 1] = e;
            ns = ns - c + 1;
        }
        /* reference: sort, cut where neighbours are more than gap apart */
        for (int i = 1; i < n; i++)
            for (int j = i; j > 0 && times[j - 1] > times[j]; j--) {
                int64_t tmp = times[j];
                times[j] = times[j - 1];
                times[j - 1] = tmp;
            }
        size_t k = 0;
        int64_t rs = times[0];
        for (int i = 1; i <= n; i++) {
            if (i == n || times[i] - times[i - 1] > gap) {
                cr_assert_lt(k, ns,
                             "round %d: fewer sessions than the reference",
                             round);
                cr_expect_eq(se[2 * k], rs, "round %d session %zu start", round,
                             k);
                cr_expect_eq(se[2 * k + 1], times[i - 1],
                             "round %d session %zu end", round, k);
                k++;
                if (i < n)
                    rs = times[i];
            }
        }
        cr_expect_eq(k, ns, "round %d: %zu sessions, reference %zu", round, ns,
                     k);
    }
}
