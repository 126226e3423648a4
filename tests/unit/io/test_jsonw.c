/* Tests of the JSON writer (include/mephisto/jsonw.h). */
// ctest-timeout: 60
#include <criterion/criterion.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mephisto/json.h"
#include "mephisto/jsonw.h"

static mph_jsonw_t *W;
static mph_json_parser_t *P;

static void setup(void)
{
    char err[128];
    W = mph_jsonw_new(0, err, sizeof err);
    cr_assert_not_null(W, "%s", err);
    P = mph_json_parser_new(0, err, sizeof err);
    cr_assert_not_null(P, "%s", err);
}

static void teardown(void)
{
    mph_jsonw_destroy(W);
    mph_json_parser_destroy(P);
}

TestSuite(jsonw, .init = setup, .fini = teardown, .timeout = 10);

static void expect_out(const char *want)
{
    const char *s;
    size_t n;
    cr_assert_eq(mph_jsonw_finish(W, &s, &n), MPH_OK);
    cr_assert_eq(n, strlen(want), "got %.*s, want %s", (int)n, s, want);
    cr_assert(memcmp(s, want, n) == 0, "got %.*s, want %s", (int)n, s, want);
}

Test(jsonw, builds_nested_values)
{
    cr_assert_eq(mph_jsonw_object_begin(W), MPH_OK);
    cr_assert_eq(mph_jsonw_key(W, "user", 4), MPH_OK);
    cr_assert_eq(mph_jsonw_str(W, "alice", 5), MPH_OK);
    cr_assert_eq(mph_jsonw_key(W, "page", 4), MPH_OK);
    cr_assert_eq(mph_jsonw_i64(W, 42), MPH_OK);
    cr_assert_eq(mph_jsonw_key(W, "tags", 4), MPH_OK);
    cr_assert_eq(mph_jsonw_array_begin(W), MPH_OK);
    cr_assert_eq(mph_jsonw_str(W, "a", 1), MPH_OK);
    cr_assert_eq(mph_jsonw_array_begin(W), MPH_OK);
    cr_assert_eq(mph_jsonw_array_end(W), MPH_OK);
    cr_assert_eq(mph_jsonw_object_begin(W), MPH_OK);
    cr_assert_eq(mph_jsonw_object_end(W), MPH_OK);
    cr_assert_eq(mph_jsonw_null(W), MPH_OK);
    cr_assert_eq(mph_jsonw_bool(W, true), MPH_OK);
    cr_assert_eq(mph_jsonw_bool(W, false), MPH_OK);
    cr_assert_eq(mph_jsonw_array_end(W), MPH_OK);
    cr_assert_eq(mph_jsonw_key(W, "geo", 3), MPH_OK);
    cr_assert_eq(mph_jsonw_object_begin(W), MPH_OK);
    cr_assert_eq(mph_jsonw_key(W, "lat", 3), MPH_OK);
    cr_assert_eq(mph_jsonw_f64(W, 1.5), MPH_OK);
    cr_assert_eq(mph_jsonw_key(W, "n", 1), MPH_OK);
    cr_assert_eq(mph_jsonw_u64(W, UINT64_MAX), MPH_OK);
    cr_assert(!mph_jsonw_complete(W));
    cr_assert_eq(mph_jsonw_object_end(W), MPH_OK);
    cr_assert_eq(mph_jsonw_object_end(W), MPH_OK);
    cr_assert(mph_jsonw_complete(W));
    expect_out("{\"user\":\"alice\",\"page\":42,\"tags\":[\"a\",[],{},null,"
               "true,false],"
               "\"geo\":{\"lat\":1.5,\"n\":18446744073709551615}}");
    /* And it parses. */
    const char *s;
    size_t n;
    cr_assert_eq(mph_jsonw_finish(W, &s, &n), MPH_OK);
    cr_assert_eq(mph_json_parse(P, s, n, n), MPH_OK);
    cr_assert_eq(mph_json_validate(P), MPH_OK);
}

Test(jsonw, top_level_scalars_and_reset)
{
    cr_assert_eq(mph_jsonw_i64(W, -7), MPH_OK);
    expect_out("-7");
    cr_assert_eq(mph_jsonw_i64(W, 1), MPH_ERR_STATE); /* one top-level value */
    mph_jsonw_reset(W);
    cr_assert(!mph_jsonw_complete(W));
    cr_assert_eq(mph_jsonw_str(W, "", 0), MPH_OK);
    expect_out("\"\"");
    mph_jsonw_reset(W);
    cr_assert_eq(mph_jsonw_str(W, NULL, 0), MPH_OK);
    expect_out("\"\"");
}

Test(jsonw, misuse_is_a_state_error_and_changes_nothing)
{
    const char *before, *after;
    size_t nb, na;
    cr_assert_eq(mph_jsonw_key(W, "k", 1),
                 MPH_ERR_STATE); /* key at top level */
    cr_assert_eq(mph_jsonw_object_end(W), MPH_ERR_STATE);
    cr_assert_eq(mph_jsonw_array_end(W), MPH_ERR_STATE);
    const char *s;
    size_t n;
    cr_assert_eq(mph_jsonw_finish(W, &s, &n), MPH_ERR_STATE);

    cr_assert_eq(mph_jsonw_object_begin(W), MPH_OK);
    before = mph_jsonw_data(W, &nb);
    (void)before;
    cr_assert_eq(mph_jsonw_i64(W, 1), MPH_ERR_STATE); /* value without key */
    cr_assert_eq(mph_jsonw_array_begin(W), MPH_ERR_STATE);
    cr_assert_eq(mph_jsonw_array_end(W), MPH_ERR_STATE); /* wrong container */
    after = mph_jsonw_data(W, &na);
    cr_assert_eq(na, nb);
    cr_assert_eq(mph_jsonw_key(W, "a", 1), MPH_OK);
    cr_assert_eq(mph_jsonw_key(W, "b", 1), MPH_ERR_STATE); /* two keys */
    cr_assert_eq(mph_jsonw_object_end(W),
                 MPH_ERR_STATE); /* key without value */
    cr_assert_eq(mph_jsonw_finish(W, &s, &n), MPH_ERR_STATE);
    cr_assert_eq(mph_jsonw_array_begin(W), MPH_OK);
    cr_assert_eq(mph_jsonw_key(W, "c", 1), MPH_ERR_STATE); /* key in an array */
    cr_assert_eq(mph_jsonw_object_end(W), MPH_ERR_STATE);
    cr_assert_eq(mph_jsonw_array_end(W), MPH_OK);
    cr_assert_eq(mph_jsonw_object_end(W), MPH_OK);
    cr_assert_eq(mph_jsonw_object_end(W), MPH_ERR_STATE); /* unbalanced */
    cr_assert_eq(mph_jsonw_object_begin(W), MPH_ERR_STATE);
    after = mph_jsonw_data(W, &na);
    (void)after;
    expect_out("{\"a\":[]}");
    cr_assert_eq(mph_jsonw_i64(NULL, 1), MPH_ERR_INVALID);
    cr_assert_eq(mph_jsonw_str(W, NULL, 3), MPH_ERR_INVALID);
}

Test(jsonw, escapes_strings)
{
    cr_assert_eq(mph_jsonw_array_begin(W), MPH_OK);
    const char in[] =
        "q\"b\\s/\b\f\n\r\t\x01\x1f\x7f\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80";
    cr_assert_eq(mph_jsonw_str(W, in, sizeof in - 1), MPH_OK);
    const char nul[] = {'a', '\0', 'b'};
    cr_assert_eq(mph_jsonw_str(W, nul, 3), MPH_OK);
    cr_assert_eq(mph_jsonw_array_end(W), MPH_OK);
    expect_out("[\"q\\\"b\\\\s/"
               "\\b\\f\\n\\r\\t\\u0001\\u001f\x7f\xc3\xa9\xe2\x80\xa8\xf0\x9f"
               "\x98\x80\","
               "\"a\\u0000b\"]");
    /* Every control character, round trip through the parser. */
    mph_jsonw_reset(W);
    char all[32];
    for (int i = 0; i < 32; i++)
        all[i] = (char)i;
    cr_assert_eq(mph_jsonw_str(W, all, 32), MPH_OK);
    const char *s, *back;
    size_t n, bn;
    cr_assert_eq(mph_jsonw_finish(W, &s, &n), MPH_OK);
    cr_assert_eq(mph_json_parse(P, s, n, n), MPH_OK);
    cr_assert_eq(mph_json_str(P, MPH_JSON_ROOT, &back, &bn), MPH_OK);
    cr_assert_eq(bn, 32);
    cr_assert(memcmp(back, all, 32) == 0);
}

Test(jsonw, keys_are_escaped_too)
{
    cr_assert_eq(mph_jsonw_object_begin(W), MPH_OK);
    cr_assert_eq(mph_jsonw_key(W, "a\"b\n", 4), MPH_OK);
    cr_assert_eq(mph_jsonw_i64(W, 1), MPH_OK);
    cr_assert_eq(mph_jsonw_key(W, "\xff", 1), MPH_ERR_UTF8);
    cr_assert_eq(mph_jsonw_object_end(W), MPH_OK);
    expect_out("{\"a\\\"b\\n\":1}");
}

Test(jsonw, rejects_invalid_utf8)
{
    static const char *bad[] = {"\xff", "\xc0\x80", "\xed\xa0\x80",
                                "ab\xe2\x82", "\xf4\x90\x80\x80"};
    cr_assert_eq(mph_jsonw_array_begin(W), MPH_OK);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(mph_jsonw_str(W, bad[i], strlen(bad[i])), MPH_ERR_UTF8,
                     "case %zu", i);
    cr_assert_eq(mph_jsonw_array_end(W), MPH_OK);
    expect_out("[]");
}

Test(jsonw, integers)
{
    static const int64_t cases[] = {0,
                                    1,
                                    -1,
                                    9,
                                    10,
                                    -10,
                                    99,
                                    100,
                                    123456789,
                                    INT64_MAX,
                                    INT64_MIN,
                                    INT64_MIN + 1,
                                    -1000000000000LL};
    char want[32];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mph_jsonw_reset(W);
        cr_assert_eq(mph_jsonw_i64(W, cases[i]), MPH_OK);
        snprintf(want, sizeof want, "%" PRId64, cases[i]);
        expect_out(want);
    }
    static const uint64_t ucases[] = {0,  1,          9,
                                      10, UINT64_MAX, (uint64_t)INT64_MAX + 1};
    for (size_t i = 0; i < sizeof ucases / sizeof ucases[0]; i++) {
        mph_jsonw_reset(W);
        cr_assert_eq(mph_jsonw_u64(W, ucases[i]), MPH_OK);
        snprintf(want, sizeof want, "%" PRIu64, ucases[i]);
        expect_out(want);
    }
    /* Random values against printf. */
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 5000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int64_t v = (int64_t)(x >> (x % 64));
        if (i & 1)
            v = -v;
        mph_jsonw_reset(W);
        cr_assert_eq(mph_jsonw_i64(W, v), MPH_OK);
        snprintf(want, sizeof want, "%" PRId64, v);
        expect_out(want);
    }
}

/* Significant digits of a %g-style number ("1.0" and "100" have one). */
static int sig_digits(const char *s, size_t n)
{
    char m[64];
    size_t k = 0;
    for (size_t i = 0; i < n && s[i] != 'e' && k < sizeof m - 1; i++)
        if ((s[i] >= '0' && s[i] <= '9') || s[i] == '.')
            m[k++] = s[i];
    m[k] = '\0';
    char *dot = strchr(m, '.');
    size_t end = k;
    if (dot != NULL)
        while (end > 0 && (m[end - 1] == '0' || m[end - 1] == '.'))
            end--;
    else
        while (end > 1 && m[end - 1] == '0')
            end--;
    int d = 0;
    bool leading = true;
    for (size_t i = 0; i < end; i++) {
        if (m[i] == '.')
            continue;
        if (m[i] == '0' && leading)
            continue;
        leading = false;
        d++;
    }
    return d;
}

static void check_double(double v)
{
    mph_jsonw_reset(W);
    cr_assert_eq(mph_jsonw_f64(W, v), MPH_OK, "%a", v);
    const char *s;
    size_t n;
    cr_assert_eq(mph_jsonw_finish(W, &s, &n), MPH_OK);
    char buf[64];
    cr_assert_lt(n, sizeof buf);
    memcpy(buf, s, n);
    buf[n] = '\0';
    /* It reads back bit for bit, with strtod and with the JSON parser. */
    double back = strtod(buf, NULL);
    cr_assert(memcmp(&back, &v, sizeof v) == 0, "%a -> %s -> %a", v, buf, back);
    cr_assert_eq(mph_json_parse(P, buf, n, n), MPH_OK, "%s", buf);
    cr_assert_eq(mph_json_f64(P, MPH_JSON_ROOT, &back), MPH_OK, "%s", buf);
    cr_assert(memcmp(&back, &v, sizeof v) == 0, "parser: %a -> %s -> %a", v,
              buf, back);
    /* It reads as a float, not an integer. */
    cr_assert(strpbrk(buf, ".e") != NULL, "%s", buf);
    /* No shorter decimal reads back. */
    int digits = sig_digits(buf, n);
    if (digits > 1) {
        char shorter[400];
        snprintf(shorter, sizeof shorter, "%.*g", digits - 1, v);
        cr_assert(strtod(shorter, NULL) != v || v == 0, "%s is shorter than %s",
                  shorter, buf);
    }
}

Test(jsonw, doubles_round_trip_shortest)
{
    static const double cases[] = {0.0,
                                   1.0,
                                   -1.0,
                                   0.1,
                                   0.2,
                                   0.3,
                                   1.5,
                                   3.0,
                                   100.0,
                                   1e15,
                                   1e16,
                                   1e17,
                                   1e20,
                                   1e21,
                                   1e22,
                                   1e300,
                                   -1e-7,
                                   123.456,
                                   1.0 / 3,
                                   2.0 / 3,
                                   M_PI,
                                   M_E,
                                   DBL_MAX,
                                   DBL_MIN,
                                   5e-324,
                                   -5e-324,
                                   2.2250738585072009e-308,
                                   4.35e-320,
                                   9007199254740993.0,
                                   0.1 + 0.2,
                                   1e-5,
                                   123456789012345678.0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_double(cases[i]);
    check_double(-0.0);
    mph_jsonw_reset(W);
    cr_assert_eq(mph_jsonw_f64(W, 0.1), MPH_OK);
    expect_out("0.1");
    mph_jsonw_reset(W);
    cr_assert_eq(mph_jsonw_f64(W, 3.0), MPH_OK);
    expect_out("3.0");
    mph_jsonw_reset(W);
    cr_assert_eq(mph_jsonw_f64(W, -0.0), MPH_OK);
    expect_out("-0.0");
    mph_jsonw_reset(W);
    cr_assert_eq(mph_jsonw_f64(W, 5e-324), MPH_OK);
    expect_out("5e-324");
}

Test(jsonw, random_doubles_round_trip, .timeout = 30)
{
    uint64_t x = 0x2545F4914F6CDD1DULL;
    int tested = 0;
    while (tested < 20000) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t bits = x;
        if (tested % 4 == 1)
            bits &= 0x800fffffffffffffULL; /* subnormals */
        else if (tested % 4 == 2)
            bits = (bits & 0x800fffffffffffffULL) |
                   (0x3ffULL + (bits % 40) - 20) << 52; /* near 1 */
        double v;
        memcpy(&v, &bits, sizeof v);
        if (!isfinite(v))
            continue;
        check_double(v);
        tested++;
    }
}

Test(jsonw, nan_and_infinity_are_rejected)
{
    cr_assert_eq(mph_jsonw_array_begin(W), MPH_OK);
    cr_assert_eq(mph_jsonw_f64(W, NAN), MPH_ERR_RANGE);
    cr_assert_eq(mph_jsonw_f64(W, -NAN), MPH_ERR_RANGE);
    cr_assert_eq(mph_jsonw_f64(W, INFINITY), MPH_ERR_RANGE);
    cr_assert_eq(mph_jsonw_f64(W, -INFINITY), MPH_ERR_RANGE);
    cr_assert_eq(mph_jsonw_array_end(W), MPH_OK);
    expect_out("[]");
}

Test(jsonw, base64_rfc4648_vectors)
{
    static const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *out[] = {"\"\"",        "\"Zg==\"",     "\"Zm8=\"",
                                "\"Zm9v\"",    "\"Zm9vYg==\"", "\"Zm9vYmE=\"",
                                "\"Zm9vYmFy\""};
    for (size_t i = 0; i < 7; i++) {
        mph_jsonw_reset(W);
        cr_assert_eq(mph_jsonw_base64(W, in[i], strlen(in[i])), MPH_OK);
        expect_out(out[i]);
    }
    mph_jsonw_reset(W);
    unsigned char bin[] = {0x00, 0xff, 0xfe, 0x80};
    cr_assert_eq(mph_jsonw_base64(W, bin, sizeof bin), MPH_OK);
    expect_out("\"AP/+gA==\"");
}

Test(jsonw, raw_fragments)
{
    cr_assert_eq(mph_jsonw_array_begin(W), MPH_OK);
    cr_assert_eq(mph_jsonw_raw(W, "{\"a\":[1,2]}", 11), MPH_OK);
    cr_assert_eq(mph_jsonw_raw(W, "3", 1), MPH_OK);
    cr_assert_eq(mph_jsonw_raw(W, "", 0), MPH_ERR_INVALID);
    cr_assert_eq(mph_jsonw_array_end(W), MPH_OK);
    expect_out("[{\"a\":[1,2]},3]");
}

Test(jsonw, reuse_keeps_the_buffer)
{
    char big[5000];
    memset(big, 'x', sizeof big);
    cr_assert_eq(mph_jsonw_str(W, big, sizeof big), MPH_OK);
    const char *first = mph_jsonw_data(W, NULL);
    for (int i = 0; i < 100; i++) {
        mph_jsonw_reset(W);
        cr_assert_eq(mph_jsonw_object_begin(W), MPH_OK);
        cr_assert_eq(mph_jsonw_key(W, "i", 1), MPH_OK);
        cr_assert_eq(mph_jsonw_i64(W, i), MPH_OK);
        cr_assert_eq(mph_jsonw_object_end(W), MPH_OK);
        cr_assert_eq(mph_jsonw_data(W, NULL), first,
                     "no reallocation after reset");
    }
}

Test(jsonw, grows_for_large_output)
{
    mph_jsonw_t *w = mph_jsonw_new(1, NULL, 0);
    cr_assert_not_null(w);
    cr_assert_eq(mph_jsonw_array_begin(w), MPH_OK);
    for (int i = 0; i < 10000; i++)
        cr_assert_eq(mph_jsonw_str(w, "\n\"", 2), MPH_OK);
    cr_assert_eq(mph_jsonw_array_end(w), MPH_OK);
    const char *s;
    size_t n;
    cr_assert_eq(mph_jsonw_finish(w, &s, &n), MPH_OK);
    cr_assert_eq(n, 2 + 10000 * 6 + 9999);
    cr_assert_eq(mph_json_parse(P, s, n, n), MPH_OK);
    size_t count;
    cr_assert_eq(mph_json_count(P, MPH_JSON_ROOT, &count), MPH_OK);
    cr_assert_eq(count, 10000);
    mph_jsonw_destroy(w);
    mph_jsonw_destroy(NULL);
}

Test(jsonw, nesting_limit)
{
    for (int i = 0; i < MPH_JSONW_MAX_DEPTH; i++)
        cr_assert_eq(mph_jsonw_array_begin(W), MPH_OK);
    cr_assert_eq(mph_jsonw_array_begin(W), MPH_ERR_RANGE);
    cr_assert_eq(mph_jsonw_object_begin(W), MPH_ERR_RANGE);
    for (int i = 0; i < MPH_JSONW_MAX_DEPTH; i++)
        cr_assert_eq(mph_jsonw_array_end(W), MPH_OK);
    cr_assert(mph_jsonw_complete(W));
}

/* Random documents written and read back. */
static uint64_t rs;
static uint64_t rnd(void)
{
    uint64_t z = (rs += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void random_string(char *buf, size_t *len)
{
    static const char *pieces[] = {"a",  "Z",    "\"",       "\\",
                                   "\n", "\x01", "\xc3\xa9", "\xf0\x9f\x98\x80",
                                   " ",  "/",    "\x7f"};
    size_t n = 0, parts = rnd() % 8;
    for (size_t i = 0; i < parts; i++) {
        const char *p = pieces[rnd() % 11];
        memcpy(buf + n, p, strlen(p));
        n += strlen(p);
    }
    *len = n;
}

/* Writes a random value and checks it against the parser at the same time:
 * returns a checksum of what was written. */
static void write_random(int depth)
{
    char s[64];
    size_t n;
    int kind = (int)(rnd() % (depth > 4 ? 5 : 7));
    switch (kind) {
    case 0:
        cr_assert_eq(mph_jsonw_i64(W, (int64_t)rnd()), MPH_OK);
        break;
    case 1: {
        double d;
        uint64_t b = rnd();
        memcpy(&d, &b, sizeof d);
        if (!isfinite(d))
            d = 0.5;
        cr_assert_eq(mph_jsonw_f64(W, d), MPH_OK);
        break;
    }
    case 2:
        random_string(s, &n);
        cr_assert_eq(mph_jsonw_str(W, s, n), MPH_OK);
        break;
    case 3:
        cr_assert_eq(mph_jsonw_bool(W, rnd() & 1), MPH_OK);
        break;
    case 4:
        cr_assert_eq(mph_jsonw_null(W), MPH_OK);
        break;
    case 5: {
        cr_assert_eq(mph_jsonw_array_begin(W), MPH_OK);
        int k = (int)(rnd() % 5);
        for (int i = 0; i < k; i++)
            write_random(depth + 1);
        cr_assert_eq(mph_jsonw_array_end(W), MPH_OK);
        break;
    }
    default: {
        cr_assert_eq(mph_jsonw_object_begin(W), MPH_OK);
        int k = (int)(rnd() % 5);
        for (int i = 0; i < k; i++) {
            random_string(s, &n);
            cr_assert_eq(mph_jsonw_key(W, s, n), MPH_OK);
            write_random(depth + 1);
        }
        cr_assert_eq(mph_jsonw_object_end(W), MPH_OK);
    }
    }
}

Test(jsonw, random_documents_are_valid_json, .timeout = 30)
{
    rs = 7;
    for (int i = 0; i < 3000; i++) {
        mph_jsonw_reset(W);
        write_random(0);
        const char *s;
        size_t n;
        cr_assert_eq(mph_jsonw_finish(W, &s, &n), MPH_OK);
        cr_assert_eq(mph_json_parse(P, s, n, n), MPH_OK, "%.*s", (int)n, s);
        cr_assert_eq(mph_json_validate(P), MPH_OK, "%.*s: %s", (int)n, s,
                     mph_json_last_error(P));
    }
}
