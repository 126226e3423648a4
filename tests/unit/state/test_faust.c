/* Tests of format=faust changelog records (state/faust.c), without Faust.
 *
 * The expected bytes are what faust-streaming 0.15.3 wrote (bench/peers
 * setup's version), taken from real runs:
 *   - word counts: bench/peers/faust/peer.py (table word_counts, key_type
 *     bytes, value_type int) fed the lines "hello café hello" and "hello",
 *     its changelog then dumped with
 *     `kcat -C -t <app>-word_counts-changelog -e -f 'key=%k value=%s\n'`:
 *       key=hello value=1 / key=café value=1 / key=hello value=2 /
 *       key=hello value=3
 *     (keys raw bytes, values JSON integers, one record per change);
 *   - str keys, windowed keys, records, non-ASCII: printed by
 *     bench/peers/faust/bytes.py, which calls Faust's own serializers the way
 *     its Table._send_changelog does (registry.dumps_key/dumps_value with
 *     the table's "json" serializers) — see docs/migrating-from-faust.md,
 *     "What Faust writes".
 */
#include <criterion/criterion.h>
#include <string.h>

#include "io/codec.h"
#include "runtime/window.h"
#include "state/faust.h"

TestSuite(faust, .timeout = 20);

static char why[256];
static mph__faust_scratch_t *fs;

static void setup(void)
{
    fs = mph__faust_scratch_new();
    cr_assert_not_null(fs);
    why[0] = '\0';
}

static void teardown(void)
{
    mph__faust_scratch_destroy(fs);
}

static void expect_bytes(const void *got, size_t glen, const char *want, size_t wlen)
{
    cr_expect_eq(glen, wlen, "length %zu, want %zu ('%.*s' vs '%.*s')", glen, wlen, (int)glen,
                 (const char *)got, (int)wlen, want);
    if (glen == wlen)
        cr_expect_eq(memcmp(got, want, wlen), 0, "'%.*s' vs '%.*s'", (int)glen,
                     (const char *)got, (int)wlen, want);
}
#define EXPECT_S(got, glen, lit) expect_bytes(got, glen, lit, sizeof(lit) - 1)

static const mph__faust_fmt_t wordcount = {MPH__FAUST_RAW, MPH__FAUST_I64, 0, NULL};

Test(faust, wordcount_record_as_faust_writes_it, .init = setup, .fini = teardown)
{
    const void *out;
    size_t n;
    unsigned char three[8];
    mph__codec_i64_encode(3, three);
    cr_assert_eq(mph__faust_key_encode(&wordcount, fs, "hello", 5, &out, &n, why, sizeof why),
                 MPH_OK, "%s", why);
    EXPECT_S(out, n, "hello");
    cr_assert_eq(mph__faust_value_encode(&wordcount, fs, three, 8, &out, &n, why, sizeof why),
                 MPH_OK, "%s", why);
    EXPECT_S(out, n, "3");
    cr_assert_eq(mph__faust_value_decode(&wordcount, fs, "3", 1, &out, &n, why, sizeof why),
                 MPH_OK, "%s", why);
    expect_bytes(out, n, (const char *)three, 8);
    unsigned char big[8];
    mph__codec_i64_encode(-9007199254740993LL, big);
    cr_assert_eq(mph__faust_value_decode(&wordcount, fs, "-9007199254740993", 17, &out, &n, why,
                                         sizeof why),
                 MPH_OK, "%s", why);
    expect_bytes(out, n, (const char *)big, 8);
}

Test(faust, i64_values_refuse_what_is_not_an_integer, .init = setup, .fini = teardown)
{
    const void *out;
    size_t n;
    cr_expect_eq(mph__faust_value_decode(&wordcount, fs, "3.5", 3, &out, &n, why, sizeof why),
                 MPH_ERR_DECODE);
    cr_expect(strstr(why, "not a JSON integer"), "%s", why);
    cr_expect_eq(mph__faust_value_decode(&wordcount, fs, "\"3\"", 3, &out, &n, why, sizeof why),
                 MPH_ERR_DECODE);
    cr_expect_eq(mph__faust_value_decode(&wordcount, fs, "3 4", 3, &out, &n, why, sizeof why),
                 MPH_ERR_DECODE);
    cr_expect(strstr(why, "not JSON"), "%s", why);
    cr_expect_eq(mph__faust_value_encode(&wordcount, fs, "abc", 3, &out, &n, why, sizeof why),
                 MPH_ERR_TYPE);
    cr_expect(strstr(why, "not an i64"), "%s", why);
}

static const mph__faust_fmt_t strings = {MPH__FAUST_STRING, MPH__FAUST_STRING, 0, NULL};

Test(faust, str_keys_and_values_are_json_strings, .init = setup, .fini = teardown)
{
    const void *out;
    size_t n;
    /* Faust (json.dumps, compact, ensure_ascii): "caf\u00e9"; mephisto
     * writes the same bytes (the same Kafka key, so compaction replaces
     * Faust's records) and reads escaped and unescaped (orjson) forms. */
    cr_assert_eq(mph__faust_key_encode(&strings, fs, "caf\xc3\xa9", 5, &out, &n, why, sizeof why),
                 MPH_OK, "%s", why);
    EXPECT_S(out, n, "\"caf\\u00e9\"");
    cr_assert_eq(mph__faust_key_encode(&strings, fs, "\x7f\xf0\x9f\x98\x80\x01", 6, &out, &n, why,
                                       sizeof why),
                 MPH_OK, "%s", why);
    EXPECT_S(out, n, "\"\\u007f\\ud83d\\ude00\\u0001\"");
    cr_assert_eq(mph__faust_key_decode(&strings, fs, "\"caf\xc3\xa9\"", 7, &out, &n, why,
                                       sizeof why),
                 MPH_OK, "%s", why);
    EXPECT_S(out, n, "caf\xc3\xa9");
    cr_assert_eq(mph__faust_key_decode(&strings, fs, "\"caf\\u00e9\"", 11, &out, &n, why,
                                       sizeof why),
                 MPH_OK, "%s", why);
    EXPECT_S(out, n, "caf\xc3\xa9");
    cr_assert_eq(mph__faust_value_encode(&strings, fs, "a\"b\n", 4, &out, &n, why, sizeof why),
                 MPH_OK, "%s", why);
    EXPECT_S(out, n, "\"a\\\"b\\n\"");
    cr_assert_eq(mph__faust_value_decode(&strings, fs, "\"a\\\"b\\n\"", 8, &out, &n, why,
                                         sizeof why),
                 MPH_OK, "%s", why);
    EXPECT_S(out, n, "a\"b\n");
    cr_assert_eq(mph__faust_key_decode(&strings, fs, "\"\"", 2, &out, &n, why, sizeof why),
                 MPH_OK, "%s", why);
    cr_expect_eq(n, 0);
    cr_expect_not_null(out);
    /* A raw key that is not UTF-8 has no str form. */
    cr_expect_eq(mph__faust_key_encode(&strings, fs, "\xff", 1, &out, &n, why, sizeof why),
                 MPH_ERR_UTF8);
    cr_expect(strstr(why, "UTF-8"), "%s", why);
    cr_expect_eq(mph__faust_key_decode(&strings, fs, "hello", 5, &out, &n, why, sizeof why),
                 MPH_ERR_DECODE);
}

static const mph__faust_fmt_t windowed = {MPH__FAUST_STRING, MPH__FAUST_I64, 60000, NULL};

Test(faust, windowed_keys_have_faust_layout, .init = setup, .fini = teardown)
{
    /* Faust: table.tumbling(60)[("/home")] at t=1700000065.5 s writes
     * the key ["/home",[1700000040.0,1700000099.9]]. */
    unsigned char sk[64];
    size_t skl = mph__window_key(1700000040000LL, "/home", 5, sk);
    const void *out;
    size_t n;
    cr_assert_eq(mph__faust_key_encode(&windowed, fs, sk, skl, &out, &n, why, sizeof why), MPH_OK,
                 "%s", why);
    EXPECT_S(out, n, "[\"/home\",[1700000040.0,1700000099.9]]");
    cr_assert_eq(mph__faust_key_decode(&windowed, fs, out, n, &out, &n, why, sizeof why), MPH_OK,
                 "%s", why);
    expect_bytes(out, n, (const char *)sk, skl);
    /* Read what Faust writes with spaces (stdlib json without separators). */
    const char *spaced = "[\"/home\", [1700000040.0, 1700000099.9]]";
    cr_assert_eq(mph__faust_key_decode(&windowed, fs, spaced, strlen(spaced), &out, &n, why,
                                       sizeof why),
                 MPH_OK, "%s", why);
    expect_bytes(out, n, (const char *)sk, skl);
    /* The window meta key has no Faust form and is not written. */
    cr_expect_eq(mph__faust_key_encode(&windowed, fs, MPH__WINDOW_META_KEY, MPH__WINDOW_META_KLEN,
                                       &out, &n, why, sizeof why),
                 MPH_ERR_NOENT);
    /* Negative window starts (before 1970) keep their order prefix. */
    skl = mph__window_key(-60000, "k", 1, sk);
    cr_assert_eq(mph__faust_key_encode(&windowed, fs, sk, skl, &out, &n, why, sizeof why), MPH_OK);
    EXPECT_S(out, n, "[\"k\",[-60.0,-0.1]]");
    cr_assert_eq(mph__faust_key_decode(&windowed, fs, out, n, &out, &n, why, sizeof why), MPH_OK);
    expect_bytes(out, n, (const char *)sk, skl);
    const char *bad[] = {"\"k\"", "[\"k\"]", "[\"k\",[]]", "[\"k\",[\"x\",1]]", "[1,[0.0,59.9]]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(mph__faust_key_decode(&windowed, fs, bad[i], strlen(bad[i]), &out, &n, why,
                                           sizeof why),
                     MPH_ERR_DECODE, "%s", bad[i]);
}

Test(faust, windowed_raw_keys_and_stray_namespaces_are_refused)
{
    mph__faust_fmt_t f = {MPH__FAUST_RAW, MPH__FAUST_I64, 60000, NULL};
    cr_expect_eq(mph__faust_fmt_check(&f, why, sizeof why), MPH_ERR_INVALID);
    cr_expect(strstr(why, "key_codec string, i64 or json"), "%s", why);
    mph__faust_fmt_t g = {MPH__FAUST_STRING, MPH__FAUST_I64, 0, "app.PageView"};
    cr_expect_eq(mph__faust_fmt_check(&g, why, sizeof why), MPH_ERR_INVALID);
    cr_expect(strstr(why, "faust_namespace"), "%s", why);
    mph__faust_kind_t k;
    cr_expect(mph__faust_kind_of(NULL, &k) && k == MPH__FAUST_RAW);
    cr_expect(mph__faust_kind_of("record", &k) && k == MPH__FAUST_JSON);
    cr_expect(!mph__faust_kind_of("avro", &k));
}

static const mph__faust_fmt_t records = {MPH__FAUST_STRING, MPH__FAUST_JSON, 0,
                                         "pageviews.PageView"};

Test(faust, records_keep_and_get_their_namespace, .init = setup, .fini = teardown)
{
    const void *out;
    size_t n;
    /* Faust: PageView(user="u1", page="/a") with include_metadata writes
     * {"user":"u1","page":"/a","__faust":{"ns":"pageviews.PageView"}}. */
    const char *mine = "{\"user\":\"u1\",\"page\":\"/a\"}";
    cr_assert_eq(mph__faust_value_encode(&records, fs, mine, strlen(mine), &out, &n, why,
                                         sizeof why),
                 MPH_OK, "%s", why);
    EXPECT_S(out, n, "{\"user\":\"u1\",\"page\":\"/a\",\"__faust\":{\"ns\":\"pageviews.PageView\"}}");
    /* Read: kept as written (record types ignore the member). */
    const char *theirs = "{\"user\":\"u1\",\"__faust\":{\"ns\":\"other.NS\"}}";
    cr_assert_eq(mph__faust_value_decode(&records, fs, theirs, strlen(theirs), &out, &n, why,
                                         sizeof why),
                 MPH_OK, "%s", why);
    expect_bytes(out, n, theirs, strlen(theirs));
    /* Write: a value that carries one keeps it. */
    cr_assert_eq(mph__faust_value_encode(&records, fs, theirs, strlen(theirs), &out, &n, why,
                                         sizeof why),
                 MPH_OK, "%s", why);
    expect_bytes(out, n, theirs, strlen(theirs));
    cr_assert_eq(mph__faust_value_encode(&records, fs, "{ }", 3, &out, &n, why, sizeof why),
                 MPH_OK, "%s", why);
    EXPECT_S(out, n, "{ \"__faust\":{\"ns\":\"pageviews.PageView\"}}");
    /* Not an object: as is. */
    cr_assert_eq(mph__faust_value_encode(&records, fs, "[1]", 3, &out, &n, why, sizeof why),
                 MPH_OK, "%s", why);
    EXPECT_S(out, n, "[1]");
    cr_expect_eq(mph__faust_value_decode(&records, fs, "{\"a\":", 5, &out, &n, why, sizeof why),
                 MPH_ERR_DECODE);
}
