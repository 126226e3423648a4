/* Tests of record types and records (include/mephisto/record.h). */
// ctest-timeout: 60
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/record.h"
#include "mephisto/json.h"
#include "mephisto/jsonw.h"
#include "mephisto/record.h"

static mph_json_parser_t *P;
static mph_jsonw_t *W;
static char err[512];

static void setup(void)
{
    P = mph_json_parser_new(0, err, sizeof err);
    W = mph_jsonw_new(0, err, sizeof err);
    cr_assert(P && W);
}

static void teardown(void)
{
    mph_json_parser_destroy(P);
    mph_jsonw_destroy(W);
}

TestSuite(record, .init = setup, .fini = teardown, .timeout = 10);

/* ---- A page-view type used by many tests ---- */

typedef struct {
    mph_record_type_t *addr, *user, *item, *view;
    size_t a_city, a_zip;
    size_t u_name, u_age, u_address;
    size_t i_name, i_qty;
    size_t v_user, v_page, v_ratio, v_ok, v_blob, v_ts, v_tags, v_items,
        v_scores, v_note, v_lang, v_times;
} types_t;

static void make_types(types_t *t)
{
    cr_assert_not_null(t->addr =
                           mph_record_type_new("Address", err, sizeof err));
    cr_assert_eq(
        mph_record_type_add(t->addr, "city", MPH_FIELD_STRING, &t->a_city),
        MPH_OK);
    cr_assert_eq(
        mph_record_type_add(t->addr, "zip", MPH_FIELD_STRING, &t->a_zip),
        MPH_OK);
    cr_assert_eq(mph_record_type_set_optional(t->addr, t->a_zip), MPH_OK);

    cr_assert_not_null(t->user = mph_record_type_new("User", err, sizeof err));
    cr_assert_eq(
        mph_record_type_add(t->user, "name", MPH_FIELD_STRING, &t->u_name),
        MPH_OK);
    cr_assert_eq(mph_record_type_set_max_len(t->user, t->u_name, 16), MPH_OK);
    cr_assert_eq(mph_record_type_add(t->user, "age", MPH_FIELD_I64, &t->u_age),
                 MPH_OK);
    cr_assert_eq(mph_record_type_set_range_i64(t->user, t->u_age, 0, 150),
                 MPH_OK);
    cr_assert_eq(
        mph_record_type_add_record(t->user, "address", t->addr, &t->u_address),
        MPH_OK);
    cr_assert_eq(mph_record_type_set_optional(t->user, t->u_address), MPH_OK);

    cr_assert_not_null(t->item = mph_record_type_new("Item", err, sizeof err));
    cr_assert_eq(
        mph_record_type_add(t->item, "name", MPH_FIELD_STRING, &t->i_name),
        MPH_OK);
    cr_assert_eq(mph_record_type_add(t->item, "qty", MPH_FIELD_I64, &t->i_qty),
                 MPH_OK);
    cr_assert_eq(mph_record_type_set_default_i64(t->item, t->i_qty, 1), MPH_OK);

    cr_assert_not_null(t->view =
                           mph_record_type_new("PageView", err, sizeof err));
    mph_record_type_t *v = t->view;
    cr_assert_eq(mph_record_type_add_record(v, "user", t->user, &t->v_user),
                 MPH_OK);
    cr_assert_eq(mph_record_type_add(v, "page", MPH_FIELD_I64, &t->v_page),
                 MPH_OK);
    cr_assert_eq(mph_record_type_add(v, "ratio", MPH_FIELD_F64, &t->v_ratio),
                 MPH_OK);
    cr_assert_eq(mph_record_type_set_default_f64(v, t->v_ratio, 0.5), MPH_OK);
    cr_assert_eq(mph_record_type_set_range_f64(v, t->v_ratio, 0.0, 1.0),
                 MPH_OK);
    cr_assert_eq(mph_record_type_add(v, "ok", MPH_FIELD_BOOL, &t->v_ok),
                 MPH_OK);
    cr_assert_eq(mph_record_type_set_default_bool(v, t->v_ok, true), MPH_OK);
    cr_assert_eq(mph_record_type_add(v, "blob", MPH_FIELD_BYTES, &t->v_blob),
                 MPH_OK);
    cr_assert_eq(mph_record_type_set_optional(v, t->v_blob), MPH_OK);
    cr_assert_eq(mph_record_type_set_max_len(v, t->v_blob, 64), MPH_OK);
    cr_assert_eq(mph_record_type_add(v, "ts", MPH_FIELD_TIMESTAMP, &t->v_ts),
                 MPH_OK);
    cr_assert_eq(mph_record_type_add_array(v, "tags", MPH_FIELD_STRING, NULL,
                                           &t->v_tags),
                 MPH_OK);
    cr_assert_eq(mph_record_type_set_optional(v, t->v_tags), MPH_OK);
    cr_assert_eq(mph_record_type_set_max_len(v, t->v_tags, 10), MPH_OK);
    cr_assert_eq(mph_record_type_set_elem_max_len(v, t->v_tags, 8), MPH_OK);
    cr_assert_eq(mph_record_type_add_array(v, "items", MPH_FIELD_RECORD,
                                           t->item, &t->v_items),
                 MPH_OK);
    cr_assert_eq(mph_record_type_set_optional(v, t->v_items), MPH_OK);
    cr_assert_eq(mph_record_type_add_array(v, "scores", MPH_FIELD_F64, NULL,
                                           &t->v_scores),
                 MPH_OK);
    cr_assert_eq(mph_record_type_set_optional(v, t->v_scores), MPH_OK);
    cr_assert_eq(mph_record_type_add(v, "note", MPH_FIELD_STRING, &t->v_note),
                 MPH_OK);
    cr_assert_eq(mph_record_type_set_optional(v, t->v_note), MPH_OK);
    cr_assert_eq(mph_record_type_add(v, "lang", MPH_FIELD_STRING, &t->v_lang),
                 MPH_OK);
    cr_assert_eq(mph_record_type_set_default_str(v, t->v_lang, "en", 2),
                 MPH_OK);
    cr_assert_eq(mph_record_type_add_array(v, "times", MPH_FIELD_TIMESTAMP,
                                           NULL, &t->v_times),
                 MPH_OK);
    cr_assert_eq(mph_record_type_set_optional(v, t->v_times), MPH_OK);
}

static void free_types(types_t *t)
{
    mph_record_type_destroy(t->view);
    mph_record_type_destroy(t->item);
    mph_record_type_destroy(t->user);
    mph_record_type_destroy(t->addr);
}

static const char *VIEW =
    "{\"user\":{\"name\":\"alice\",\"age\":30,\"address\":{\"city\":\"Paris\"}}"
    ","
    "\"page\":42,\"ts\":\"2026-11-27T04:00:00.123Z\",\"tags\":[\"a\",\"b\\n\"],"
    "\"items\":[{\"name\":\"x\",\"qty\":2},{\"name\":\"y\"}],\"blob\":\"AP/"
    "+gA==\","
    "\"scores\":[1,2.5,-0.0],\"extra\":{\"ignored\":[1,{\"deep\":null}]},"
    "\"times\":[0,\"1970-01-01T00:00:01Z\"]}";

static mph_err_t decode(const mph_record_type_t *t, const char *json,
                        mph_record_t **r)
{
    return mph_record_decode(t, P, json, strlen(json), r, err, sizeof err);
}

Test(record, decodes_every_type)
{
    types_t t;
    make_types(&t);
    mph_record_t *r = NULL;
    cr_assert_eq(decode(t.view, VIEW, &r), MPH_OK, "%s", err);
    cr_assert_str_eq(err, "");
    const mph_record_t *u, *a, *it;
    const char *s;
    size_t n;
    int64_t i;
    double d;
    bool b;
    cr_assert_eq(mph_record_get_record(r, t.v_user, &u), MPH_OK);
    cr_assert_eq(mph_record_get_str(u, t.u_name, &s, &n), MPH_OK);
    cr_assert_eq(n, 5);
    cr_assert(memcmp(s, "alice", 5) == 0);
    cr_assert_eq(mph_record_get_i64(u, t.u_age, &i), MPH_OK);
    cr_assert_eq(i, 30);
    cr_assert_eq(mph_record_get_record(u, t.u_address, &a), MPH_OK);
    cr_assert_eq(mph_record_get_str(a, t.a_city, &s, &n), MPH_OK);
    cr_assert(n == 5 && memcmp(s, "Paris", 5) == 0);
    cr_assert(!mph_record_has(a, t.a_zip));
    cr_assert_eq(mph_record_get_str(a, t.a_zip, &s, &n), MPH_ERR_NOENT);
    cr_assert_eq(mph_record_get_i64(r, t.v_page, &i), MPH_OK);
    cr_assert_eq(i, 42);
    /* Defaults. */
    cr_assert(mph_record_has(r, t.v_ratio));
    cr_assert_eq(mph_record_get_f64(r, t.v_ratio, &d), MPH_OK);
    cr_assert_eq(d, 0.5);
    cr_assert_eq(mph_record_get_bool(r, t.v_ok, &b), MPH_OK);
    cr_assert(b);
    cr_assert_eq(mph_record_get_str(r, t.v_lang, &s, &n), MPH_OK);
    cr_assert(n == 2 && memcmp(s, "en", 2) == 0);
    /* Bytes from base64. */
    const void *blob;
    cr_assert_eq(mph_record_get_bytes(r, t.v_blob, &blob, &n), MPH_OK);
    cr_assert_eq(n, 4);
    cr_assert(memcmp(blob, "\x00\xff\xfe\x80", 4) == 0);
    /* Timestamp. */
    cr_assert_eq(mph_record_get_timestamp(r, t.v_ts, &i), MPH_OK);
    cr_assert_eq(i, 1795752000123LL);
    cr_assert_eq(mph_record_get_i64(r, t.v_ts, &i), MPH_OK);
    /* Arrays. */
    cr_assert_eq(mph_record_array_len(r, t.v_tags, &n), MPH_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(mph_record_array_get_str(r, t.v_tags, 1, &s, &n), MPH_OK);
    cr_assert(n == 2 && memcmp(s, "b\n", 2) == 0);
    cr_assert_eq(mph_record_array_get_str(r, t.v_tags, 2, &s, &n),
                 MPH_ERR_RANGE);
    cr_assert_eq(mph_record_array_len(r, t.v_items, &n), MPH_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(mph_record_array_get_record(r, t.v_items, 1, &it), MPH_OK);
    cr_assert_eq(mph_record_get_i64(it, t.i_qty, &i), MPH_OK);
    cr_assert_eq(i, 1, "element default");
    cr_assert_eq(mph_record_array_get_f64(r, t.v_scores, 0, &d), MPH_OK);
    cr_assert_eq(d, 1.0, "integer JSON into f64");
    cr_assert_eq(mph_record_array_get_f64(r, t.v_scores, 2, &d), MPH_OK);
    cr_assert(d == 0 && signbit(d));
    cr_assert_eq(mph_record_array_get_i64(r, t.v_times, 1, &i), MPH_OK);
    cr_assert_eq(i, 1000);
    /* Absent optional. */
    cr_assert(!mph_record_has(r, t.v_note));
    cr_assert_eq(mph_record_get_str(r, t.v_note, &s, &n), MPH_ERR_NOENT);
    /* Wrong type and bad index. */
    cr_assert_eq(mph_record_get_i64(r, t.v_user, &i), MPH_ERR_TYPE);
    cr_assert_eq(mph_record_get_str(r, 999, &s, &n), MPH_ERR_RANGE);
    cr_assert_eq(mph_record_get_timestamp(r, t.v_page, &i), MPH_ERR_TYPE);
    cr_assert_eq(mph_record_array_get_i64(r, t.v_tags, 0, &i), MPH_ERR_TYPE);
    cr_assert(!mph_record_has(r, 999));
    /* By name. */
    cr_assert_eq(mph_record_get_i64_by_name(r, "page", &i), MPH_OK);
    cr_assert_eq(i, 42);
    cr_assert_eq(mph_record_get_i64_by_name(r, "nope", &i), MPH_ERR_NOENT);
    cr_assert_eq(mph_record_get_record_by_name(r, "user", &u), MPH_OK);
    cr_assert_eq(mph_record_get_str_by_name(u, "name", &s, &n), MPH_OK);
    cr_assert_eq(mph_record_get_f64_by_name(r, "ratio", &d), MPH_OK);
    cr_assert_eq(mph_record_get_bool_by_name(r, "ok", &b), MPH_OK);
    cr_assert_eq(mph_record_type_of(r), t.view);
    mph_record_destroy(r);
    free_types(&t);
}

Test(record, strings_are_copied_not_borrowed)
{
    types_t t;
    make_types(&t);
    mph_record_t *r = NULL;
    char buf[] = "{\"user\":{\"name\":\"bob\",\"age\":1},\"page\":1,\"ts\":0}";
    cr_assert_eq(decode(t.view, buf, &r), MPH_OK, "%s", err);
    /* Another document through the same parser, and the input overwritten. */
    cr_assert_eq(mph_json_parse(P, "[1,2,3]", 7, 7), MPH_OK);
    memset(buf, 'x', sizeof buf - 1);
    const mph_record_t *u;
    const char *s;
    size_t n;
    cr_assert_eq(mph_record_get_record(r, t.v_user, &u), MPH_OK);
    cr_assert_eq(mph_record_get_str(u, t.u_name, &s, &n), MPH_OK);
    cr_assert(n == 3 && memcmp(s, "bob", 3) == 0);
    mph_record_destroy(r);
    free_types(&t);
}

static void expect_schema(const mph_record_type_t *t, const char *json,
                          const char *msg)
{
    mph_record_t *r = NULL;
    mph_err_t e = decode(t, json, &r);
    cr_assert_eq(e, MPH_ERR_SCHEMA, "%s: %s (%s)", json, mph_err_str(e), err);
    cr_assert_str_eq(err, msg, "%s", json);
    cr_assert_null(r, "no record is left after a failed first decode");
    /* Validation alone says the same. */
    char verr[512];
    cr_assert_eq(
        mph__record_validate(t, P, json, strlen(json), verr, sizeof verr),
        MPH_ERR_SCHEMA);
    cr_assert_str_eq(verr, msg);
}

Test(record, schema_violations_name_the_field)
{
    types_t t;
    make_types(&t);
    const char *base_user = "{\"name\":\"al\",\"age\":3}";
    char doc[512];
#define DOC(...) (snprintf(doc, sizeof doc, __VA_ARGS__), doc)
    expect_schema(t.view, DOC("{\"user\":%s,\"ts\":0}", base_user),
                  "page: required field missing");
    expect_schema(
        t.view,
        DOC("{\"user\":{\"name\":\"al\",\"age\":300},\"page\":1,\"ts\":0}"),
        "user.age: 300 above max 150");
    expect_schema(
        t.view,
        DOC("{\"user\":{\"name\":\"al\",\"age\":-1},\"page\":1,\"ts\":0}"),
        "user.age: -1 below min 0");
    expect_schema(t.view,
                  DOC("{\"user\":{\"name\":\"al\"},\"page\":1,\"ts\":0}"),
                  "user.age: required field missing");
    expect_schema(t.view,
                  DOC("{\"user\":{\"name\":\"al\",\"age\":3,\"address\":{}},"
                      "\"page\":1,\"ts\":0}"),
                  "user.address.city: required field missing");
    expect_schema(t.view,
                  DOC("{\"user\":%s,\"page\":1,\"ts\":0,\"items\":[{\"name\":"
                      "\"a\"},{\"name\":\"b\"},"
                      "{\"name\":\"c\"},{\"name\":4}]}",
                      base_user),
                  "items.3.name: expected string, got number");
    expect_schema(t.view,
                  DOC("{\"user\":%s,\"page\":\"1\",\"ts\":0}", base_user),
                  "page: expected integer, got string");
    expect_schema(t.view, DOC("{\"user\":%s,\"page\":1.5,\"ts\":0}", base_user),
                  "page: expected integer, got a fractional number");
    expect_schema(t.view, DOC("{\"user\":%s,\"page\":1e3,\"ts\":0}", base_user),
                  "page: expected integer, got a fractional number");
    expect_schema(
        t.view,
        DOC("{\"user\":%s,\"page\":9223372036854775808,\"ts\":0}", base_user),
        "page: integer out of range");
    expect_schema(t.view,
                  DOC("{\"user\":%s,\"page\":null,\"ts\":0}", base_user),
                  "page: required field is null");
    expect_schema(
        t.view, DOC("{\"user\":%s,\"page\":1,\"page\":2,\"ts\":0}", base_user),
        "page: field appears twice");
    expect_schema(t.view,
                  DOC("{\"user\":{\"name\":\"abcdefghijklmnopq\",\"age\":1},"
                      "\"page\":1,\"ts\":0}"),
                  "user.name: length 17 above max 16");
    expect_schema(
        t.view,
        DOC("{\"user\":%s,\"page\":1,\"ts\":0,\"ratio\":1.5}", base_user),
        "ratio: 1.5 above max 1");
    expect_schema(
        t.view,
        DOC("{\"user\":%s,\"page\":1,\"ts\":0,\"ratio\":true}", base_user),
        "ratio: expected number, got boolean");
    expect_schema(t.view,
                  DOC("{\"user\":%s,\"page\":1,\"ts\":0,\"tags\":[\"a\",\"b\","
                      "\"c\",\"d\","
                      "\"e\",\"f\",\"g\",\"h\",\"i\",\"j\",\"k\",\"l\"]}",
                      base_user),
                  "tags: 12 elements above max 10");
    expect_schema(
        t.view,
        DOC("{\"user\":%s,\"page\":1,\"ts\":0,\"tags\":[\"a\",\"123456789\"]}",
            base_user),
        "tags.1: length 9 above max 8");
    expect_schema(t.view,
                  DOC("{\"user\":%s,\"page\":1,\"ts\":0,\"tags\":[\"a\",null]}",
                      base_user),
                  "tags.1: expected string, got null");
    expect_schema(
        t.view,
        DOC("{\"user\":%s,\"page\":1,\"ts\":0,\"tags\":\"a\"}", base_user),
        "tags: expected array, got string");
    expect_schema(
        t.view,
        DOC("{\"user\":%s,\"page\":1,\"ts\":0,\"blob\":\"A===\"}", base_user),
        "blob: invalid base64");
    expect_schema(
        t.view,
        DOC("{\"user\":%s,\"page\":1,\"ts\":0,\"blob\":\"!!!!\"}", base_user),
        "blob: invalid base64");
    expect_schema(t.view, DOC("{\"user\":[],\"page\":1,\"ts\":0}"),
                  "user: expected object, got array");
    expect_schema(t.view, "[1]", "PageView: expected object, got array");
    expect_schema(t.view, "42", "PageView: expected object, got number");
    expect_schema(
        t.view,
        DOC("{\"user\":%s,\"page\":1,\"ts\":\"2026-11-27 04:00\"}", base_user),
        "ts: not an ISO-8601 timestamp with offset: \"2026-11-27 04:00\"");
    expect_schema(t.view, DOC("{\"user\":%s,\"page\":1,\"ts\":1.5}", base_user),
                  "ts: expected integer epoch milliseconds");
    expect_schema(t.view,
                  DOC("{\"user\":%s,\"page\":1,\"ts\":true}", base_user),
                  "ts: expected timestamp (ISO-8601 string or epoch "
                  "milliseconds), got boolean");
    expect_schema(
        t.view,
        DOC("{\"user\":%s,\"page\":1,\"ts\":253402300800000}", base_user),
        "ts: timestamp out of range (years 0000-9999)");
    expect_schema(
        t.view,
        DOC("{\"user\":%s,\"page\":1,\"ts\":0,\"times\":[0,\"x\"]}", base_user),
        "times.1: not an ISO-8601 timestamp with offset: \"x\"");
#undef DOC
    free_types(&t);
}

Test(record, malformed_json_is_a_decode_error)
{
    types_t t;
    make_types(&t);
    static const char *bad[] = {
        "{\"user\":{\"name\":\"al\",\"age\":3},\"page\":1,\"ts\":0} x",
        "{\"user\":{\"name\":\"al\",\"age\":3},\"page\":1,\"ts\":0,\"junk\":["
        "tru]}",
        "{\"user\":{\"name\":\"al\",\"age\":3},\"page\":1,\"ts\":0,\"junk\":{"
        "\"a\" 1}}",
        "{\"user\":{\"name\":\"al\",\"age\":3},\"page\":1,\"ts\":0",
        "",
        "{\"user\":{\"name\":\"a\\x\",\"age\":3},\"page\":1,\"ts\":0}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mph_record_t *r = NULL;
        mph_err_t e = decode(t.view, bad[i], &r);
        cr_assert_eq(e, MPH_ERR_DECODE, "%s: %s (%s)", bad[i], mph_err_str(e),
                     err);
        cr_assert(strncmp(err, "invalid JSON", 12) == 0 ||
                      strstr(err, ": invalid JSON") != NULL,
                  "%s", err);
        cr_assert_eq(
            mph__record_validate(t.view, P, bad[i], strlen(bad[i]), NULL, 0),
            MPH_ERR_DECODE);
    }
    mph_record_t *r = NULL;
    cr_assert_eq(decode(t.view, "{\"a\":\"\xff\"}", &r), MPH_ERR_UTF8);
    free_types(&t);
}

Test(record, null_optional_fields_take_defaults)
{
    types_t t;
    make_types(&t);
    mph_record_t *r = NULL;
    cr_assert_eq(
        decode(
            t.view,
            "{\"user\":{\"name\":\"al\",\"age\":3,\"address\":null},\"page\":1,"
            "\"ts\":0,\"ratio\":null,\"note\":null,\"lang\":null}",
            &r),
        MPH_OK, "%s", err);
    double d;
    cr_assert_eq(mph_record_get_f64(r, t.v_ratio, &d), MPH_OK);
    cr_assert_eq(d, 0.5);
    cr_assert(!mph_record_has(r, t.v_note));
    const mph_record_t *u;
    cr_assert_eq(mph_record_get_record(r, t.v_user, &u), MPH_OK);
    cr_assert(!mph_record_has(u, t.u_address));
    mph_record_destroy(r);
    free_types(&t);
}

Test(record, fields_in_any_order_and_escaped_keys)
{
    types_t t;
    make_types(&t);
    mph_record_t *r = NULL;
    cr_assert_eq(
        decode(t.view,
               "{\"ts\":\"1970-01-01T00:00:00Z\",\"zz\":1,\"p\\u0061ge\":7,"
               "\"user\":{\"age\":3,\"name\":\"al\"}}",
               &r),
        MPH_OK, "%s", err);
    int64_t page;
    cr_assert_eq(mph_record_get_i64(r, t.v_page, &page), MPH_OK);
    cr_assert_eq(page, 7);
    mph_record_destroy(r);
    free_types(&t);
}

Test(record, decode_value_from_a_padded_parse_and_nested_objects)
{
    types_t t;
    make_types(&t);
    const char *env = "{\"meta\":1,\"payload\":{\"name\":\"al\",\"age\":3}}";
    size_t len = strlen(env);
    char *padded = calloc(1, len + MPH_JSON_PADDING);
    memcpy(padded, env, len);
    cr_assert_eq(mph_json_parse(P, padded, len, len + MPH_JSON_PADDING),
                 MPH_OK);
    mph_json_val_t payload;
    cr_assert_eq(mph_json_find(P, MPH_JSON_ROOT, "payload", &payload), MPH_OK);
    mph_record_t *r = NULL;
    cr_assert_eq(
        mph_record_decode_value(t.user, P, payload, &r, err, sizeof err),
        MPH_OK, "%s", err);
    int64_t age;
    cr_assert_eq(mph_record_get_i64(r, t.u_age, &age), MPH_OK);
    cr_assert_eq(age, 3);
    /* A record of another type is refused. */
    mph_record_t *other = mph_record_new(t.addr, err, sizeof err);
    cr_assert_eq(mph_json_parse(P, padded, len, len + MPH_JSON_PADDING),
                 MPH_OK);
    cr_assert_eq(mph_json_find(P, MPH_JSON_ROOT, "payload", &payload), MPH_OK);
    cr_assert_eq(
        mph_record_decode_value(t.user, P, payload, &other, err, sizeof err),
        MPH_ERR_INVALID);
    mph_record_destroy(other);
    mph_record_destroy(r);
    free(padded);
    free_types(&t);
}

/* ---- Types ---- */

Test(record, type_building_errors)
{
    mph_record_type_t *t = mph_record_type_new("T", err, sizeof err);
    cr_assert_null(mph_record_type_new("", err, sizeof err));
    cr_assert_null(mph_record_type_new(NULL, err, sizeof err));
    size_t a, b, arr;
    cr_assert_eq(mph_record_type_add(t, "a", MPH_FIELD_I64, &a), MPH_OK);
    cr_assert_eq(mph_record_type_add(t, "a", MPH_FIELD_STRING, &b),
                 MPH_ERR_EXISTS);
    cr_assert_eq(mph_record_type_add(t, "", MPH_FIELD_STRING, &b),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph_record_type_add(t, "q\"", MPH_FIELD_STRING, &b),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph_record_type_add(t, "\xff", MPH_FIELD_STRING, &b),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph_record_type_add(t, "r", MPH_FIELD_RECORD, &b),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph_record_type_add(t, "r", (mph_field_type_t)99, &b),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph_record_type_add_record(t, "r", NULL, &b), MPH_ERR_INVALID);
    cr_assert_eq(mph_record_type_add_array(t, "x", MPH_FIELD_ARRAY, NULL, &b),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph_record_type_add_array(t, "x", MPH_FIELD_RECORD, NULL, &b),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph_record_type_add_array(t, "x", MPH_FIELD_I64, t, &b),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph_record_type_add(t, "b", MPH_FIELD_STRING, &b), MPH_OK);
    cr_assert_eq(mph_record_type_add_array(t, "arr", MPH_FIELD_I64, NULL, &arr),
                 MPH_OK);
    /* Modifiers that do not fit the type. */
    cr_assert_eq(mph_record_type_set_default_str(t, a, "x", 1), MPH_ERR_TYPE);
    cr_assert_eq(mph_record_type_set_default_i64(t, b, 1), MPH_ERR_TYPE);
    cr_assert_eq(mph_record_type_set_default_f64(t, a, 1), MPH_ERR_TYPE);
    cr_assert_eq(mph_record_type_set_default_bool(t, a, true), MPH_ERR_TYPE);
    cr_assert_eq(mph_record_type_set_max_len(t, a, 3), MPH_ERR_TYPE);
    cr_assert_eq(mph_record_type_set_range_i64(t, b, 0, 1), MPH_ERR_TYPE);
    cr_assert_eq(mph_record_type_set_range_f64(t, a, 0, 1), MPH_ERR_TYPE);
    cr_assert_eq(mph_record_type_set_elem_max_len(t, a, 1), MPH_ERR_TYPE);
    cr_assert_eq(mph_record_type_set_elem_max_len(t, arr, 1), MPH_ERR_TYPE);
    cr_assert_eq(mph_record_type_set_elem_range_i64(t, arr, 0, 9), MPH_OK);
    cr_assert_eq(mph_record_type_set_range_i64(t, a, 5, 1), MPH_ERR_INVALID);
    cr_assert_eq(mph_record_type_set_default_str(t, b, "\xff", 1),
                 MPH_ERR_UTF8);
    cr_assert_eq(mph_record_type_set_optional(t, 99), MPH_ERR_RANGE);
    /* Defaults and limits must agree, whichever comes first. */
    cr_assert_eq(mph_record_type_set_range_i64(t, a, 0, 10), MPH_OK);
    cr_assert_eq(mph_record_type_set_default_i64(t, a, 11), MPH_ERR_SCHEMA);
    cr_assert_eq(mph_record_type_set_default_i64(t, a, 10), MPH_OK);
    cr_assert_eq(mph_record_type_set_range_i64(t, a, 0, 9), MPH_ERR_SCHEMA);
    cr_assert_eq(mph_record_type_set_default_str(t, b, "hello", 5), MPH_OK);
    cr_assert_eq(mph_record_type_set_max_len(t, b, 4), MPH_ERR_SCHEMA);
    cr_assert_eq(mph_record_type_set_max_len(t, b, 5), MPH_OK);
    /* Introspection. */
    size_t idx;
    cr_assert_eq(mph_record_type_field(t, "b", &idx), MPH_OK);
    cr_assert_eq(idx, b);
    cr_assert_eq(mph_record_type_field(t, "zz", &idx), MPH_ERR_NOENT);
    cr_assert_str_eq(mph_record_type_name(t), "T");
    cr_assert_eq(mph_record_type_nfields(t), 3);
    cr_assert_str_eq(mph_record_type_field_name(t, arr), "arr");
    cr_assert_null(mph_record_type_field_name(t, 3));
    cr_assert_eq(mph_record_type_field_type(t, arr), MPH_FIELD_ARRAY);
    cr_assert_eq(mph_record_type_field_type(t, 7), 0);
    /* Frozen by the first record. */
    mph_record_t *r = mph_record_new(t, err, sizeof err);
    cr_assert_not_null(r);
    cr_assert_eq(mph_record_type_add(t, "c", MPH_FIELD_I64, &idx),
                 MPH_ERR_STATE);
    cr_assert_eq(mph_record_type_set_optional(t, a), MPH_ERR_STATE);
    mph_record_destroy(r);
    mph_record_type_destroy(t);
    mph_record_type_destroy(NULL);
    mph_record_destroy(NULL);
}

Test(record, field_limit_and_name_lookup)
{
    mph_record_type_t *t = mph_record_type_new("Wide", err, sizeof err);
    char name[16];
    for (int i = 0; i < MPH_RECORD_MAX_FIELDS; i++) {
        size_t idx;
        snprintf(name, sizeof name, "f%d", (i * 7919) % 1000);
        snprintf(name, sizeof name, "f%03d", i);
        cr_assert_eq(mph_record_type_add(t, name, MPH_FIELD_I64, &idx), MPH_OK);
        cr_assert_eq(idx, (size_t)i);
    }
    size_t idx;
    cr_assert_eq(mph_record_type_add(t, "one_more", MPH_FIELD_I64, &idx),
                 MPH_ERR_RANGE);
    for (int i = MPH_RECORD_MAX_FIELDS - 1; i >= 0; i--) {
        snprintf(name, sizeof name, "f%03d", i);
        cr_assert_eq(mph_record_type_field(t, name, &idx), MPH_OK);
        cr_assert_eq(idx, (size_t)i);
    }
    /* Decoding a wide record in reverse field order. */
    char *doc = malloc(16 * MPH_RECORD_MAX_FIELDS + 2);
    size_t off = 0;
    doc[off++] = '{';
    for (int i = MPH_RECORD_MAX_FIELDS - 1; i >= 0; i--)
        off += (size_t)sprintf(doc + off, "\"f%03d\":%d%s", i, i, i ? "," : "");
    doc[off++] = '}';
    mph_record_t *r = NULL;
    cr_assert_eq(mph_record_decode(t, P, doc, off, &r, err, sizeof err), MPH_OK,
                 "%s", err);
    int64_t v;
    cr_assert_eq(mph_record_get_i64(r, 200, &v), MPH_OK);
    cr_assert_eq(v, 200);
    mph_record_destroy(r);
    free(doc);
    mph_record_type_destroy(t);
}

/* ---- Building and encoding ---- */

Test(record, build_encode_decode)
{
    types_t t;
    make_types(&t);
    mph_record_t *r = mph_record_new(t.view, err, sizeof err);
    mph_record_t *u, *a, *it;
    cr_assert_eq(mph_record_set_record(r, t.v_user, &u), MPH_OK);
    cr_assert_eq(mph_record_set_str(u, t.u_name, "z\"oe", 4), MPH_OK);
    cr_assert_eq(mph_record_set_i64(u, t.u_age, 41), MPH_OK);
    cr_assert_eq(mph_record_set_record(u, t.u_address, &a), MPH_OK);
    cr_assert_eq(mph_record_set_str(a, t.a_city, "Lyon", 4), MPH_OK);
    cr_assert_eq(mph_record_set_i64(r, t.v_page, 7), MPH_OK);
    cr_assert_eq(mph_record_set_timestamp(r, t.v_ts, 1795752000123LL), MPH_OK);
    cr_assert_eq(mph_record_set_bytes(r, t.v_blob, "\x01\x02\x03", 3), MPH_OK);
    cr_assert_eq(mph_record_set_array(r, t.v_items, 2), MPH_OK);
    cr_assert_eq(mph_record_array_edit_record(r, t.v_items, 0, &it), MPH_OK);
    cr_assert_eq(mph_record_set_str(it, t.i_name, "pen", 3), MPH_OK);
    cr_assert_eq(mph_record_array_edit_record(r, t.v_items, 1, &it), MPH_OK);
    cr_assert_eq(mph_record_set_str(it, t.i_name, "ink", 3), MPH_OK);
    cr_assert_eq(mph_record_set_i64(it, t.i_qty, 5), MPH_OK);
    cr_assert_eq(mph_record_set_array(r, t.v_tags, 1), MPH_OK);
    cr_assert_eq(mph_record_array_set_str(r, t.v_tags, 0, "new", 3), MPH_OK);
    cr_assert_eq(mph_record_encode(r, W, err, sizeof err), MPH_OK, "%s", err);
    const char *json;
    size_t n;
    cr_assert_eq(mph_jsonw_finish(W, &json, &n), MPH_OK);
    const char *want =
        "{\"user\":{\"name\":\"z\\\"oe\",\"age\":41,\"address\":{\"city\":"
        "\"Lyon\"}},"
        "\"page\":7,\"ratio\":0.5,\"ok\":true,\"blob\":\"AQID\","
        "\"ts\":\"2026-11-27T04:00:00.123Z\",\"tags\":[\"new\"],"
        "\"items\":[{\"name\":\"pen\",\"qty\":1},{\"name\":\"ink\",\"qty\":5}],"
        "\"lang\":\"en\"}";
    cr_assert_eq(n, strlen(want), "%.*s", (int)n, json);
    cr_assert(memcmp(json, want, n) == 0, "%.*s", (int)n, json);
    mph_record_t *back = NULL;
    cr_assert_eq(mph_record_decode(t.view, P, json, n, &back, err, sizeof err),
                 MPH_OK, "%s", err);
    cr_assert(mph_record_equal(r, back));
    cr_assert_eq(mph_record_set_i64(back, t.v_page, 8), MPH_OK);
    cr_assert(!mph_record_equal(r, back));
    cr_assert(!mph_record_equal(r, NULL));
    mph_record_destroy(back);
    mph_record_destroy(r);
    free_types(&t);
}

Test(record, setters_check_types_and_limits)
{
    types_t t;
    make_types(&t);
    mph_record_t *r = mph_record_new(t.view, err, sizeof err);
    mph_record_t *u;
    cr_assert_eq(mph_record_set_record(r, t.v_user, &u), MPH_OK);
    cr_assert_eq(mph_record_set_str(u, t.u_name, "01234567890123456", 17),
                 MPH_ERR_SCHEMA);
    cr_assert_eq(mph_record_set_str(u, t.u_name, "\xff", 1), MPH_ERR_UTF8);
    cr_assert_eq(mph_record_set_i64(u, t.u_age, 151), MPH_ERR_SCHEMA);
    cr_assert_eq(mph_record_set_i64(u, t.u_name, 1), MPH_ERR_TYPE);
    cr_assert_eq(mph_record_set_str(u, t.u_age, "1", 1), MPH_ERR_TYPE);
    cr_assert_eq(mph_record_set_f64(r, t.v_ratio, NAN), MPH_ERR_RANGE);
    cr_assert_eq(mph_record_set_f64(r, t.v_ratio, INFINITY), MPH_ERR_RANGE);
    cr_assert_eq(mph_record_set_f64(r, t.v_ratio, 2.0), MPH_ERR_SCHEMA);
    cr_assert_eq(mph_record_set_timestamp(r, t.v_ts, 253402300800000LL),
                 MPH_ERR_RANGE);
    cr_assert_eq(mph_record_set_timestamp(r, t.v_page, 0), MPH_ERR_TYPE);
    cr_assert_eq(mph_record_set_i64(r, t.v_ts, 5), MPH_OK,
                 "i64 setter takes timestamps");
    cr_assert_eq(mph_record_set_bytes(r, t.v_blob, NULL, 65), MPH_ERR_INVALID);
    char big[65] = {0};
    cr_assert_eq(mph_record_set_bytes(r, t.v_blob, big, 65), MPH_ERR_SCHEMA);
    cr_assert_eq(mph_record_set_array(r, t.v_tags, 11), MPH_ERR_SCHEMA);
    cr_assert_eq(mph_record_set_array(r, t.v_page, 1), MPH_ERR_TYPE);
    cr_assert_eq(mph_record_array_set_str(r, t.v_tags, 0, "x", 1),
                 MPH_ERR_NOENT);
    cr_assert_eq(mph_record_set_array(r, t.v_tags, 2), MPH_OK);
    cr_assert_eq(mph_record_array_set_str(r, t.v_tags, 2, "x", 1),
                 MPH_ERR_RANGE);
    cr_assert_eq(mph_record_array_set_str(r, t.v_tags, 0, "123456789", 9),
                 MPH_ERR_SCHEMA);
    cr_assert_eq(mph_record_array_set_i64(r, t.v_tags, 0, 1), MPH_ERR_TYPE);
    cr_assert_eq(mph_record_set_str(r, t.v_tags, "x", 1), MPH_ERR_TYPE);
    cr_assert_eq(mph_record_set_str(r, 99, "x", 1), MPH_ERR_RANGE);
    /* Unset: back to the default, or absent. */
    double d;
    cr_assert_eq(mph_record_set_f64(r, t.v_ratio, 0.25), MPH_OK);
    cr_assert_eq(mph_record_unset(r, t.v_ratio), MPH_OK);
    cr_assert_eq(mph_record_get_f64(r, t.v_ratio, &d), MPH_OK);
    cr_assert_eq(d, 0.5);
    cr_assert_eq(mph_record_unset(r, t.v_tags), MPH_OK);
    cr_assert(!mph_record_has(r, t.v_tags));
    /* Clear: back to a new record. */
    cr_assert_eq(mph_record_set_i64(r, t.v_page, 3), MPH_OK);
    mph_record_clear(r);
    cr_assert(!mph_record_has(r, t.v_page));
    cr_assert(mph_record_has(r, t.v_lang));
    mph_record_destroy(r);
    free_types(&t);
}

Test(record, encode_refuses_incomplete_records)
{
    types_t t;
    make_types(&t);
    mph_record_t *r = mph_record_new(t.view, err, sizeof err);
    mph_record_t *u;
    cr_assert_eq(mph_record_set_record(r, t.v_user, &u), MPH_OK);
    cr_assert_eq(mph_record_set_i64(u, t.u_age, 3), MPH_OK);
    cr_assert_eq(mph_record_set_i64(r, t.v_page, 1), MPH_OK);
    cr_assert_eq(mph_record_set_timestamp(r, t.v_ts, 0), MPH_OK);
    cr_assert_eq(mph_record_encode(r, W, err, sizeof err), MPH_ERR_SCHEMA);
    cr_assert_str_eq(err, "user.name: required field missing");
    size_t n;
    mph_jsonw_data(W, &n);
    cr_assert_eq(n, 0, "nothing written");
    cr_assert_eq(mph_record_set_str(u, t.u_name, "x", 1), MPH_OK);
    /* Unfilled array elements are checked too. */
    cr_assert_eq(mph_record_set_array(r, t.v_items, 1), MPH_OK);
    cr_assert_eq(mph_record_encode(r, W, err, sizeof err), MPH_ERR_SCHEMA);
    cr_assert_str_eq(err, "items.0.name: required field missing");
    mph_record_t *it;
    cr_assert_eq(mph_record_array_edit_record(r, t.v_items, 0, &it), MPH_OK);
    cr_assert_eq(mph_record_set_str(it, t.i_name, "a", 1), MPH_OK);
    cr_assert_eq(mph_record_encode(r, W, err, sizeof err), MPH_OK, "%s", err);
    /* The writer must accept a value. */
    cr_assert_eq(mph_record_encode(r, W, err, sizeof err), MPH_ERR_STATE);
    mph_record_destroy(r);
    free_types(&t);
}

Test(record, records_inside_a_writer_array)
{
    types_t t;
    make_types(&t);
    mph_record_t *a = mph_record_new(t.addr, err, sizeof err);
    cr_assert_eq(mph_record_set_str(a, t.a_city, "A", 1), MPH_OK);
    cr_assert_eq(mph_jsonw_array_begin(W), MPH_OK);
    cr_assert_eq(mph_record_encode(a, W, err, sizeof err), MPH_OK);
    cr_assert_eq(mph_record_encode(a, W, err, sizeof err), MPH_OK);
    cr_assert_eq(mph_jsonw_array_end(W), MPH_OK);
    const char *s;
    size_t n;
    cr_assert_eq(mph_jsonw_finish(W, &s, &n), MPH_OK);
    cr_assert_eq(n, strlen("[{\"city\":\"A\"},{\"city\":\"A\"}]"));
    mph_record_destroy(a);
    free_types(&t);
}

/* ---- Timestamps ---- */

Test(record, timestamp_parsing)
{
    static const struct {
        const char *s;
        int64_t ms;
    } good[] = {
        {"1970-01-01T00:00:00Z", 0},
        {"1970-01-01T00:00:00.001Z", 1},
        {"1969-12-31T23:59:59.999Z", -1},
        {"2026-11-27T04:00:00.123Z", 1795752000123LL},
        {"2026-11-27T05:00:00.123+01:00", 1795752000123LL},
        {"2026-11-26T22:30:00.123-0530", 1795752000123LL},
        {"2026-11-27t04:00:00.1234567z", 1795752000123LL},
        {"2026-11-27 04:00:00.12Z", 1795752000120LL},
        {"2000-02-29T00:00:00Z", 951782400000LL},
        {"0000-01-01T00:00:00Z", -62167219200000LL},
        {"9999-12-31T23:59:59.999Z", 253402300799999LL},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int64_t ms = 0;
        cr_assert_eq(
            mph_record_timestamp_parse(good[i].s, strlen(good[i].s), &ms),
            MPH_OK, "%s", good[i].s);
        cr_assert_eq(ms, good[i].ms, "%s: %lld", good[i].s, (long long)ms);
    }
    static const char *bad[] = {
        "2026-11-27T04:00:00",       "2026-11-27",
        "2026-13-01T00:00:00Z",      "2026-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",      "2026-11-27T24:00:00Z",
        "2026-11-27T23:60:00Z",      "2026-11-27T23:59:60Z",
        "2026-11-27T04:00:00.Z",     "2026-11-27T04:00:00+1:00",
        "2026-11-27T04:00:00+01:60", "2026-11-27T04:00:00Zjunk",
        "2026/11/27T04:00:00Z",      "+2026-11-27T04:00:00Z",
        "2026-00-10T00:00:00Z",      "2026-01-00T00:00:00Z",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms;
        cr_assert_eq(mph_record_timestamp_parse(bad[i], strlen(bad[i]), &ms),
                     MPH_ERR_INVALID, "%s", bad[i]);
    }
    int64_t ms;
    cr_assert_eq(
        mph_record_timestamp_parse("0000-01-01T00:00:00+01:00", 25, &ms),
        MPH_ERR_RANGE);
    cr_assert_eq(
        mph_record_timestamp_parse("9999-12-31T23:59:59-01:00", 25, &ms),
        MPH_ERR_RANGE);
}

Test(record, timestamp_format_round_trip)
{
    char out[25];
    cr_assert_eq(mph_record_timestamp_format(1795752000123LL, out), MPH_OK);
    out[24] = '\0';
    cr_assert_str_eq(out, "2026-11-27T04:00:00.123Z");
    cr_assert_eq(mph_record_timestamp_format(-1, out), MPH_OK);
    cr_assert_str_eq(out, "1969-12-31T23:59:59.999Z");
    cr_assert_eq(mph_record_timestamp_format(-62167219200001LL, out),
                 MPH_ERR_RANGE);
    cr_assert_eq(mph_record_timestamp_format(253402300800000LL, out),
                 MPH_ERR_RANGE);
    /* Random instants: format agrees with gmtime and parses back. */
    uint64_t x = 1;
    for (int i = 0; i < 20000; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        int64_t span = 253402300799999LL + 62167219200000LL + 1;
        int64_t ms = (int64_t)((x >> 1) % (uint64_t)span) - 62167219200000LL;
        cr_assert_eq(mph_record_timestamp_format(ms, out), MPH_OK);
        int64_t back;
        cr_assert_eq(mph_record_timestamp_parse(out, 24, &back), MPH_OK, "%s",
                     out);
        cr_assert_eq(back, ms, "%s", out);
        time_t secs = (time_t)(ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000));
        struct tm tm;
        cr_assert_not_null(gmtime_r(&secs, &tm));
        char want[96];
        snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, (int)(ms - (int64_t)secs * 1000));
        cr_assert_str_eq(out, want);
    }
}

/* ---- Reuse: no allocation per event in steady state ---- */

static volatile long allocs;
#if !defined(__SANITIZE_ADDRESS__)
/* Counting interposers over glibc's allocator (this test program only). */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
void *malloc(size_t n)
{
    allocs++;
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b)
{
    allocs++;
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n)
{
    allocs++;
    return __libc_realloc(p, n);
}
void *aligned_alloc(size_t al, size_t n)
{
    allocs++;
    return __libc_memalign(al, n);
}
int posix_memalign(void **out, size_t al, size_t n)
{
    allocs++;
    void *p = __libc_memalign(al, n);
    if (p == NULL)
        return 12; /* ENOMEM */
    *out = p;
    return 0;
}
#define COUNTING 1
#else
#define COUNTING 0
#endif

Test(record, steady_state_decoding_does_not_allocate)
{
    if (!COUNTING)
        cr_skip_test("allocation counting is off under AddressSanitizer");
    types_t t;
    make_types(&t);
    mph_record_t *r = NULL;
    size_t len = strlen(VIEW);
    char docs[2][600];
    snprintf(docs[0], sizeof docs[0], "%s", VIEW);
    snprintf(docs[1], sizeof docs[1],
             "{\"user\":{\"name\":\"b\\u00e9\",\"age\":9},\"page\":1,\"ts\":5,"
             "\"items\":[]}");
    /* Warm up: the arena, the parser and the writer grow to fit (the
     * first decode allocates the record: proof that counting works). */
    long start = allocs;
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(decode(t.view, docs[i & 1], &r), MPH_OK, "%s", err);
        mph_jsonw_reset(W);
        cr_assert_eq(mph_record_encode(r, W, err, sizeof err), MPH_OK);
    }
    long before = allocs;
    cr_assert_gt(before, start, "the allocation counter counts");
    mph_err_t worst = MPH_OK;
    for (int i = 0; i < 1000; i++) {
        const char *d = docs[i & 1];
        mph_err_t e = mph_record_decode(t.view, P, d, i & 1 ? strlen(d) : len,
                                        &r, err, sizeof err);
        if (e == MPH_OK) {
            mph_jsonw_reset(W);
            e = mph_record_encode(r, W, err, sizeof err);
        }
        if (e == MPH_OK)
            e = mph__record_validate(t.view, P, d, strlen(d), err, sizeof err);
        if (e != MPH_OK)
            worst = e;
    }
    long after = allocs;
    cr_assert_eq(worst, MPH_OK, "%s", err);
    cr_assert_eq(after - before, 0,
                 "%ld allocations in 1000 decode+encode cycles",
                 after - before);
    mph_record_destroy(r);
    free_types(&t);
}

/* ---- Round trip of random records ---- */

static uint64_t rs;
static uint64_t rnd(void)
{
    uint64_t z = (rs += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static size_t rand_text(char *buf, size_t max)
{
    static const char *pieces[] = {"a",        "Z",
                                   "\"",       "\\",
                                   "\n",       "\x01",
                                   "\xc3\xa9", "\xf0\x9f\x98\x80",
                                   " ",        "\xe2\x80\xa8",
                                   "9"};
    size_t n = 0, parts = rnd() % 6;
    for (size_t i = 0; i < parts; i++) {
        const char *p = pieces[rnd() % 11];
        size_t l = strlen(p);
        if (n + l > max)
            break;
        memcpy(buf + n, p, l);
        n += l;
    }
    return n;
}

static double rand_double(void)
{
    switch (rnd() % 4) {
    case 0:
        return (double)(int64_t)(rnd() % 1000) - 500;
    case 1: {
        double d;
        uint64_t b = rnd();
        memcpy(&d, &b, sizeof d);
        return isfinite(d) ? d : 0.0;
    }
    case 2:
        return -0.0;
    default:
        return (double)rnd() / (double)UINT64_MAX;
    }
}

static int64_t rand_ts(void)
{
    return (int64_t)(rnd() % 253402300799999ULL) -
           (int64_t)(rnd() % 62167219200000ULL);
}

static void fill_user(const types_t *t, mph_record_t *u)
{
    char s[64];
    size_t n = rand_text(s, 16);
    cr_assert_eq(mph_record_set_str(u, t->u_name, s, n), MPH_OK);
    cr_assert_eq(mph_record_set_i64(u, t->u_age, (int64_t)(rnd() % 151)),
                 MPH_OK);
    if (rnd() & 1) {
        mph_record_t *a;
        cr_assert_eq(mph_record_set_record(u, t->u_address, &a), MPH_OK);
        n = rand_text(s, 40);
        cr_assert_eq(mph_record_set_str(a, t->a_city, s, n), MPH_OK);
        if (rnd() & 1) {
            n = rand_text(s, 40);
            cr_assert_eq(mph_record_set_str(a, t->a_zip, s, n), MPH_OK);
        }
    }
}

static void random_view(const types_t *t, mph_record_t *r)
{
    char s[64];
    size_t n;
    mph_record_clear(r);
    mph_record_t *u;
    cr_assert_eq(mph_record_set_record(r, t->v_user, &u), MPH_OK);
    fill_user(t, u);
    cr_assert_eq(mph_record_set_i64(r, t->v_page, (int64_t)rnd()), MPH_OK);
    if (rnd() & 1)
        cr_assert_eq(
            mph_record_set_f64(r, t->v_ratio, (double)(rnd() % 1001) / 1000.0),
            MPH_OK);
    if (rnd() & 1)
        cr_assert_eq(mph_record_set_bool(r, t->v_ok, rnd() & 1), MPH_OK);
    if (rnd() & 1) {
        unsigned char b[64];
        n = rnd() % 65;
        for (size_t i = 0; i < n; i++)
            b[i] = (unsigned char)rnd();
        cr_assert_eq(mph_record_set_bytes(r, t->v_blob, b, n), MPH_OK);
    }
    cr_assert_eq(mph_record_set_timestamp(r, t->v_ts, rand_ts()), MPH_OK);
    if (rnd() & 1) {
        size_t k = rnd() % 11;
        cr_assert_eq(mph_record_set_array(r, t->v_tags, k), MPH_OK);
        for (size_t i = 0; i < k; i++) {
            n = rand_text(s, 8);
            cr_assert_eq(mph_record_array_set_str(r, t->v_tags, i, s, n),
                         MPH_OK);
        }
    }
    if (rnd() & 1) {
        size_t k = rnd() % 4;
        cr_assert_eq(mph_record_set_array(r, t->v_items, k), MPH_OK);
        for (size_t i = 0; i < k; i++) {
            mph_record_t *it;
            cr_assert_eq(mph_record_array_edit_record(r, t->v_items, i, &it),
                         MPH_OK);
            n = rand_text(s, 30);
            cr_assert_eq(mph_record_set_str(it, t->i_name, s, n), MPH_OK);
            if (rnd() & 1)
                cr_assert_eq(mph_record_set_i64(it, t->i_qty, (int64_t)rnd()),
                             MPH_OK);
        }
    }
    if (rnd() & 1) {
        size_t k = rnd() % 5;
        cr_assert_eq(mph_record_set_array(r, t->v_scores, k), MPH_OK);
        for (size_t i = 0; i < k; i++)
            cr_assert_eq(
                mph_record_array_set_f64(r, t->v_scores, i, rand_double()),
                MPH_OK);
    }
    if (rnd() & 1) {
        n = rand_text(s, 60);
        cr_assert_eq(mph_record_set_str(r, t->v_note, s, n), MPH_OK);
    }
    if (rnd() & 1) {
        size_t k = rnd() % 3;
        cr_assert_eq(mph_record_set_array(r, t->v_times, k), MPH_OK);
        for (size_t i = 0; i < k; i++)
            cr_assert_eq(mph_record_array_set_i64(r, t->v_times, i, rand_ts()),
                         MPH_OK);
    }
}

Test(record, random_records_round_trip, .timeout = 30)
{
    types_t t;
    make_types(&t);
    mph_record_t *r = mph_record_new(t.view, err, sizeof err);
    mph_record_t *back = NULL;
    mph_jsonw_t *w2 = mph_jsonw_new(0, err, sizeof err);
    rs = 2026;
    for (int iter = 0; iter < 3000; iter++) {
        random_view(&t, r);
        mph_jsonw_reset(W);
        cr_assert_eq(mph_record_encode(r, W, err, sizeof err), MPH_OK, "%s",
                     err);
        const char *json;
        size_t n;
        cr_assert_eq(mph_jsonw_finish(W, &json, &n), MPH_OK);
        cr_assert_eq(
            mph_record_decode(t.view, P, json, n, &back, err, sizeof err),
            MPH_OK, "%s: %.*s", err, (int)n, json);
        cr_assert(mph_record_equal(r, back), "iteration %d: %.*s", iter, (int)n,
                  json);
        /* Encoding the decoded record gives the same text. */
        mph_jsonw_reset(w2);
        cr_assert_eq(mph_record_encode(back, w2, err, sizeof err), MPH_OK);
        const char *json2;
        size_t n2;
        cr_assert_eq(mph_jsonw_finish(w2, &json2, &n2), MPH_OK);
        cr_assert(n == n2 && memcmp(json, json2, n) == 0, "%.*s\n%.*s", (int)n,
                  json, (int)n2, json2);
    }
    mph_jsonw_destroy(w2);
    mph_record_destroy(back);
    mph_record_destroy(r);
    free_types(&t);
}

/* Mutated encodings: validation and decoding always agree, and never
 * crash. */
Test(record, mutated_inputs_validate_like_they_decode, .timeout = 30)
{
    types_t t;
    make_types(&t);
    mph_record_t *r = mph_record_new(t.view, err, sizeof err);
    mph_record_t *back = NULL;
    static const char alphabet[] = "{}[],:\"\\ 0123456789-.etrufalsnZT=+/";
    char buf[4096];
    rs = 99;
    int decoded = 0;
    for (int iter = 0; iter < 3000; iter++) {
        random_view(&t, r);
        mph_jsonw_reset(W);
        cr_assert_eq(mph_record_encode(r, W, err, sizeof err), MPH_OK);
        const char *json;
        size_t n;
        cr_assert_eq(mph_jsonw_finish(W, &json, &n), MPH_OK);
        if (n > sizeof buf - 8)
            continue;
        memcpy(buf, json, n);
        int muts = (int)(rnd() % 3);
        for (int m = 0; m < muts; m++)
            buf[rnd() % n] = alphabet[rnd() % (sizeof alphabet - 1)];
        char verr[512], derr[512];
        mph_err_t v =
            mph__record_validate(t.view, P, buf, n, verr, sizeof verr);
        mph_err_t d =
            mph_record_decode(t.view, P, buf, n, &back, derr, sizeof derr);
        cr_assert_eq(v, d, "%s vs %s on %.*s", verr, derr, (int)n, buf);
        cr_assert_str_eq(verr, derr);
        cr_assert(d == MPH_OK || d == MPH_ERR_DECODE || d == MPH_ERR_SCHEMA ||
                      d == MPH_ERR_UTF8,
                  "%s", mph_err_str(d));
        if (d == MPH_OK)
            decoded++;
    }
    cr_assert_gt(decoded, 1000);
    mph_record_destroy(back);
    mph_record_destroy(r);
    free_types(&t);
}
