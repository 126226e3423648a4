/* Tests of the codecs (src/io/codec.h). */
// ctest-timeout: 30
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "io/codec.h"
#include "mephisto/json.h"
#include "mephisto/record.h"

static mph_json_parser_t *P;
static char err[256];

static void setup(void)
{
    P = mph_json_parser_new(0, err, sizeof err);
    cr_assert_not_null(P, "%s", err);
}

static void teardown(void)
{
    mph_json_parser_destroy(P);
}

TestSuite(codec, .init = setup, .fini = teardown, .timeout = 10);

Test(codec, lookup_by_name)
{
    static const struct {
        const char *name;
        mph_codec_t c;
    } known[] = {{"raw", MPH_CODEC_RAW},
                 {"string", MPH_CODEC_STRING},
                 {"json", MPH_CODEC_JSON},
                 {"i64", MPH_CODEC_I64}};
    for (size_t i = 0; i < 4; i++) {
        mph_codec_t c;
        cr_assert_eq(mph__codec_lookup(known[i].name, &c, err, sizeof err),
                     MPH_OK);
        cr_assert_eq(c, known[i].c);
        cr_assert_str_eq(mph__codec_name(c), known[i].name);
    }
    cr_assert_str_eq(mph__codec_name(MPH_CODEC_RECORD), "record");
    cr_assert_str_eq(mph__codec_name((mph_codec_t)42), "?");
    mph_codec_t c = MPH_CODEC_RAW;
    cr_assert_eq(mph__codec_lookup("xml", &c, err, sizeof err), MPH_ERR_NOENT);
    cr_assert_str_eq(err,
                     "unknown codec 'xml' (known: raw, string, json, i64, or one registered "
                     "with mph_codec_register)");
    cr_assert_eq(mph__codec_lookup("JSON", &c, NULL, 0), MPH_ERR_NOENT);
    cr_assert_eq(mph__codec_lookup("record", &c, NULL, 0), MPH_ERR_NOENT);
    cr_assert_eq(mph__codec_lookup(NULL, &c, NULL, 0), MPH_ERR_INVALID);
}

/* Kafka's LongSerializer writes a long as 8 big-endian bytes. */
Test(codec, i64_matches_kafka_long_serializer)
{
    static const struct {
        int64_t v;
        unsigned char b[8];
    } vectors[] = {
        {0, {0, 0, 0, 0, 0, 0, 0, 0}},
        {1, {0, 0, 0, 0, 0, 0, 0, 1}},
        {-1, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
        {255, {0, 0, 0, 0, 0, 0, 0, 0xff}},
        {256, {0, 0, 0, 0, 0, 0, 1, 0}},
        {-256, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00}},
        {1234567890123456789LL,
         {0x11, 0x22, 0x10, 0xf4, 0x7d, 0xe9, 0x81, 0x15}},
        {INT64_MAX, {0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
        {INT64_MIN, {0x80, 0, 0, 0, 0, 0, 0, 0}},
    };
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        unsigned char out[8];
        mph__codec_i64_encode(vectors[i].v, out);
        cr_assert(memcmp(out, vectors[i].b, 8) == 0, "encode %lld",
                  (long long)vectors[i].v);
        int64_t back = 0;
        cr_assert_eq(mph__codec_i64_decode(vectors[i].b, 8, &back), MPH_OK);
        cr_assert_eq(back, vectors[i].v);
        cr_assert_eq(mph__codec_validate(MPH_CODEC_I64, NULL, NULL, out, 8, err,
                                         sizeof err),
                     MPH_OK);
        cr_assert_str_eq(err, "");
    }
    int64_t v;
    unsigned char b[9] = {0};
    cr_assert_eq(mph__codec_i64_decode(b, 7, &v), MPH_ERR_DECODE);
    cr_assert_eq(mph__codec_i64_decode(b, 9, &v), MPH_ERR_DECODE);
    cr_assert_eq(mph__codec_i64_decode(NULL, 8, &v), MPH_ERR_INVALID);
    cr_assert_eq(
        mph__codec_validate(MPH_CODEC_I64, NULL, NULL, b, 4, err, sizeof err),
        MPH_ERR_DECODE);
    cr_assert_str_eq(err, "i64 codec: expected 8 bytes, got 4");
    cr_assert_eq(mph__codec_validate(MPH_CODEC_I64, NULL, NULL, NULL, 0, err,
                                     sizeof err),
                 MPH_ERR_DECODE);
}

Test(codec, raw_accepts_anything)
{
    unsigned char junk[] = {0xff, 0x00, 0xc0, 0x80};
    cr_assert_eq(mph__codec_validate(MPH_CODEC_RAW, NULL, NULL, junk, 4, err,
                                     sizeof err),
                 MPH_OK);
    cr_assert_eq(mph__codec_validate(MPH_CODEC_RAW, NULL, NULL, NULL, 0, err,
                                     sizeof err),
                 MPH_OK);
    cr_assert_eq(mph__codec_validate(MPH_CODEC_RAW, NULL, NULL, NULL, 3, err,
                                     sizeof err),
                 MPH_ERR_INVALID);
}

Test(codec, string_validates_utf8)
{
    cr_assert_eq(mph__codec_validate(MPH_CODEC_STRING, NULL, NULL,
                                     "caf\xc3\xa9", 5, err, sizeof err),
                 MPH_OK);
    cr_assert_eq(mph__codec_validate(MPH_CODEC_STRING, NULL, NULL, "", 0, err,
                                     sizeof err),
                 MPH_OK);
    static const char *bad[] = {"\xff", "\xc0\x80", "\xed\xa0\x80",
                                "abc\xe2\x82"};
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(mph__codec_validate(MPH_CODEC_STRING, NULL, NULL, bad[i],
                                         strlen(bad[i]), err, sizeof err),
                     MPH_ERR_UTF8);
        cr_assert_str_eq(err, "string codec: invalid UTF-8");
    }
}

Test(codec, json_must_be_one_document)
{
    const char *ok = "{\"user\":\"a\",\"page\":3}";
    cr_assert_eq(mph__codec_validate(MPH_CODEC_JSON, NULL, P, ok, strlen(ok),
                                     err, sizeof err),
                 MPH_OK);
    /* The parser holds the document, ready for lookups. */
    int64_t page;
    cr_assert_eq(mph_json_get_i64(P, MPH_JSON_ROOT, "page", &page), MPH_OK);
    cr_assert_eq(page, 3);
    static const char *bad[] = {"", "{\"a\":1} {\"b\":2}", "{\"a\":[1,tru]}",
                                "{\"a\":", "nope"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(mph__codec_validate(MPH_CODEC_JSON, NULL, P, bad[i],
                                         strlen(bad[i]), err, sizeof err),
                     MPH_ERR_DECODE, "%s", bad[i]);
        cr_assert(strncmp(err, "invalid JSON", 12) == 0, "%s", err);
    }
    cr_assert_eq(mph__codec_validate(MPH_CODEC_JSON, NULL, P, "\"\xff\"", 3,
                                     err, sizeof err),
                 MPH_ERR_UTF8);
    cr_assert(strstr(err, "UTF-8") != NULL, "%s", err);
    cr_assert_eq(mph__codec_validate(MPH_CODEC_JSON, NULL, NULL, ok, strlen(ok),
                                     err, sizeof err),
                 MPH_ERR_INVALID);
}

Test(codec, json_error_names_the_byte)
{
    const char *bad = "{\"a\":1,\"b\":[1,2 3]}";
    cr_assert_eq(mph__codec_validate(MPH_CODEC_JSON, NULL, P, bad, strlen(bad),
                                     err, sizeof err),
                 MPH_ERR_DECODE);
    cr_assert(strstr(err, "at byte ") != NULL, "%s", err);
}

Test(codec, json_size_limit)
{
    char e2[64];
    mph_json_parser_t *small = mph_json_parser_new(8, e2, sizeof e2);
    const char *doc = "{\"a\":\"0123456789\"}";
    cr_assert_eq(mph__codec_validate(MPH_CODEC_JSON, NULL, small, doc,
                                     strlen(doc), err, sizeof err),
                 MPH_ERR_DECODE);
    cr_assert(strstr(err, "larger than") != NULL, "%s", err);
    mph_json_parser_destroy(small);
}

Test(codec, record_validation)
{
    mph_record_type_t *t = mph_record_type_new("PageView", err, sizeof err);
    size_t page;
    cr_assert_eq(mph_record_type_add(t, "page", MPH_FIELD_I64, &page), MPH_OK);
    cr_assert_eq(mph_record_type_set_range_i64(t, page, 0, 150), MPH_OK);
    const char *ok = "{\"page\":3,\"other\":[1]}";
    cr_assert_eq(mph__codec_validate(MPH_CODEC_RECORD, t, P, ok, strlen(ok),
                                     err, sizeof err),
                 MPH_OK);
    const char *high = "{\"page\":300}";
    cr_assert_eq(mph__codec_validate(MPH_CODEC_RECORD, t, P, high, strlen(high),
                                     err, sizeof err),
                 MPH_ERR_SCHEMA);
    cr_assert_str_eq(err, "page: 300 above max 150");
    const char *missing = "{}";
    cr_assert_eq(mph__codec_validate(MPH_CODEC_RECORD, t, P, missing, 2, err,
                                     sizeof err),
                 MPH_ERR_SCHEMA);
    cr_assert_str_eq(err, "page: required field missing");
    cr_assert_eq(
        mph__codec_validate(MPH_CODEC_RECORD, t, P, "{", 1, err, sizeof err),
        MPH_ERR_DECODE);
    cr_assert_eq(mph__codec_validate(MPH_CODEC_RECORD, NULL, P, ok, strlen(ok),
                                     err, sizeof err),
                 MPH_ERR_INVALID);
    mph_record_type_destroy(t);
}

static mph_err_t accept_all(const void *b, size_t n, void *o, char *e, size_t es)
{
    (void)b, (void)n, (void)o, (void)e, (void)es;
    return MPH_OK;
}

/* Registered codecs (mph_codec_register's list): found by owner and name,
 * named by lookup once registered, gone once removed. */
Test(codec, user_codecs_are_kept_per_owner)
{
    int a, b;
    mph__codec_user_t *ea = NULL, *eb = NULL, *dup = NULL;
    mph_codec_t c = MPH_CODEC_RAW;
    cr_assert_eq(mph__codec_lookup("csv1", &c, NULL, 0), MPH_ERR_NOENT);
    cr_assert_eq(mph__codec_user_add(&a, "csv1", accept_all, NULL, &a, &ea), MPH_OK);
    cr_assert_eq(mph__codec_user_add(&b, "csv1", accept_all, NULL, &b, &eb), MPH_OK);
    cr_expect_eq(mph__codec_user_add(&a, "csv1", accept_all, NULL, NULL, &dup), MPH_ERR_EXISTS);
    cr_expect_eq(mph__codec_user_add(&a, "i64", accept_all, NULL, NULL, &dup), MPH_ERR_EXISTS);
    cr_expect_eq(mph__codec_user_add(&a, "record", accept_all, NULL, NULL, &dup),
                 MPH_ERR_EXISTS);
    cr_expect_eq(mph__codec_user_add(&a, "a b", accept_all, NULL, NULL, &dup), MPH_ERR_INVALID);
    cr_expect_eq(mph__codec_user_add(&a, "x", NULL, NULL, NULL, &dup), MPH_ERR_INVALID);
    cr_expect_eq(mph__codec_lookup("csv1", &c, NULL, 0), MPH_OK);
    cr_expect_eq(c, MPH_CODEC_USER);
    cr_expect_eq(mph__codec_user_find(&a, "csv1"), ea);
    cr_expect_eq(mph__codec_user_find(&b, "csv1"), eb);
    cr_expect_eq(mph__codec_user_find(&a, "csv2"), NULL);
    mph__codec_user_remove(ea);
    cr_expect_eq(mph__codec_user_find(&a, "csv1"), NULL);
    cr_expect_eq(mph__codec_lookup("csv1", &c, NULL, 0), MPH_OK, "b's is still there");
    mph__codec_user_remove(eb);
    cr_expect_eq(mph__codec_lookup("csv1", &c, NULL, 0), MPH_ERR_NOENT);
    mph__codec_user_remove(NULL);
}

Test(codec, codec_out_grows)
{
    mph_codec_out_t o = {0};
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(mph_codec_out_append(&o, "abc", 3), MPH_OK);
    cr_expect_eq(o.len, 3000);
    cr_expect_eq(memcmp(o.p + 2997, "abc", 3), 0);
    cr_expect_eq(mph_codec_out_append(&o, NULL, 1), MPH_ERR_INVALID);
    cr_expect_eq(mph_codec_out_append(NULL, "a", 1), MPH_ERR_INVALID);
    free(o.p);
}
