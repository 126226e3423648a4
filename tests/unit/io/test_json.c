/* Tests of the JSON shim (include/mephisto/json.h over simdjson on-demand). */
// ctest-timeout: 60
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mephisto/json.h"
#include "io/json.h"

static mph_json_parser_t *P;

static void setup(void)
{
    char err[128];
    P = mph_json_parser_new(0, err, sizeof err);
    cr_assert_not_null(P, "%s", err);
}

static void teardown(void)
{
    mph_json_parser_destroy(P);
    P = NULL;
}

TestSuite(json, .init = setup, .fini = teardown, .timeout = 10);

/* Parses a NUL-terminated document without padding (the copy path). */
static mph_err_t parse(const char *s)
{
    return mph_json_parse(P, s, strlen(s), strlen(s));
}

static const char *DOC =
    "{\"user\":\"alice\",\"page\":42,\"ratio\":0.25,\"ok\":true,\"none\":null,"
    "\"big\":18446744073709551615,\"neg\":-9223372036854775808,"
    "\"user_obj\":{\"name\":\"Al\",\"address\":{\"city\":\"Paris\",\"zip\":"
    "\"75001\"}},"
    "\"items\":[{\"name\":\"a\"},{\"name\":\"b\"},{\"name\":\"c\"},{\"name\":"
    "\"d\"}],"
    "\"3\":\"three\",\"empty_obj\":{},\"empty_arr\":[]}";

static void expect_str(mph_json_val_t from, const char *path, const char *want)
{
    const char *s = NULL;
    size_t n = 0;
    mph_err_t err = mph_json_get_str(P, from, path, &s, &n);
    cr_assert_eq(err, MPH_OK, "%s: %s (%s)", path, mph_err_str(err),
                 mph_json_last_error(P));
    cr_assert_eq(n, strlen(want), "%s: length %zu", path, n);
    cr_assert(memcmp(s, want, n) == 0, "%s: %.*s", path, (int)n, s);
}

Test(json, scalars_by_field)
{
    cr_assert_eq(parse(DOC), MPH_OK);
    expect_str(MPH_JSON_ROOT, "user", "alice");
    int64_t i;
    cr_assert_eq(mph_json_get_i64(P, MPH_JSON_ROOT, "page", &i), MPH_OK);
    cr_assert_eq(i, 42);
    double d;
    cr_assert_eq(mph_json_get_f64(P, MPH_JSON_ROOT, "ratio", &d), MPH_OK);
    cr_assert_eq(d, 0.25);
    cr_assert_eq(mph_json_get_f64(P, MPH_JSON_ROOT, "page", &d), MPH_OK);
    cr_assert_eq(d, 42.0);
    bool b = false;
    cr_assert_eq(mph_json_get_bool(P, MPH_JSON_ROOT, "ok", &b), MPH_OK);
    cr_assert(b);
    cr_assert_eq(mph_json_get_is_null(P, MPH_JSON_ROOT, "none", &b), MPH_OK);
    cr_assert(b);
    cr_assert_eq(mph_json_get_is_null(P, MPH_JSON_ROOT, "ok", &b), MPH_OK);
    cr_assert(!b);
    uint64_t u;
    cr_assert_eq(mph_json_get_u64(P, MPH_JSON_ROOT, "big", &u), MPH_OK);
    cr_assert_eq(u, UINT64_MAX);
    cr_assert_eq(mph_json_get_i64(P, MPH_JSON_ROOT, "neg", &i), MPH_OK);
    cr_assert_eq(i, INT64_MIN);
}

Test(json, types)
{
    static const struct {
        const char *path;
        mph_json_type_t t;
    } cases[] = {{"user", MPH_JSON_STRING}, {"page", MPH_JSON_NUMBER},
                 {"ok", MPH_JSON_BOOL},     {"none", MPH_JSON_NULL},
                 {"items", MPH_JSON_ARRAY}, {"user_obj", MPH_JSON_OBJECT},
                 {"", MPH_JSON_OBJECT}};
    cr_assert_eq(parse(DOC), MPH_OK);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mph_json_val_t v;
        mph_json_type_t t;
        cr_assert_eq(mph_json_find(P, MPH_JSON_ROOT, cases[i].path, &v),
                     MPH_OK);
        cr_assert_eq(mph_json_type(P, v, &t), MPH_OK);
        cr_assert_eq(t, cases[i].t, "%s", cases[i].path);
    }
}

Test(json, nested_paths_and_indexes)
{
    cr_assert_eq(parse(DOC), MPH_OK);
    expect_str(MPH_JSON_ROOT, "user_obj.address.city", "Paris");
    expect_str(MPH_JSON_ROOT, "items.3.name", "d");
    expect_str(MPH_JSON_ROOT, "items.0.name", "a");
    expect_str(MPH_JSON_ROOT, "user_obj.name", "Al");
    /* A digit segment names a field on an object. */
    expect_str(MPH_JSON_ROOT, "3", "three");
    /* Relative to a handle. */
    mph_json_val_t addr;
    cr_assert_eq(
        mph_json_get_object(P, MPH_JSON_ROOT, "user_obj.address", &addr),
        MPH_OK);
    expect_str(addr, "zip", "75001");
    expect_str(addr, "city", "Paris");
    expect_str(addr, "zip", "75001");
    mph_json_val_t items, it;
    cr_assert_eq(mph_json_get_array(P, MPH_JSON_ROOT, "items", &items), MPH_OK);
    cr_assert_eq(mph_json_index(P, items, 2, &it), MPH_OK);
    expect_str(it, "name", "c");
    cr_assert_eq(mph_json_index(P, items, 1, &it), MPH_OK);
    expect_str(it, "name", "b");
}

Test(json, any_order_lookups)
{
    cr_assert_eq(parse(DOC), MPH_OK);
    /* Reverse document order, repeated, interleaved with nested paths. */
    for (int round = 0; round < 3; round++) {
        expect_str(MPH_JSON_ROOT, "3", "three");
        expect_str(MPH_JSON_ROOT, "items.2.name", "c");
        expect_str(MPH_JSON_ROOT, "user_obj.address.zip", "75001");
        int64_t page;
        cr_assert_eq(mph_json_get_i64(P, MPH_JSON_ROOT, "page", &page), MPH_OK);
        cr_assert_eq(page, 42);
        expect_str(MPH_JSON_ROOT, "items.1.name", "b");
        expect_str(MPH_JSON_ROOT, "user", "alice");
        expect_str(MPH_JSON_ROOT, "items.3.name", "d");
        expect_str(MPH_JSON_ROOT, "user_obj.address.city", "Paris");
    }
}

Test(json, missing_and_wrong_type)
{
    mph_json_val_t v;
    const char *s;
    size_t n;
    int64_t i;
    cr_assert_eq(parse(DOC), MPH_OK);
    cr_assert_eq(mph_json_find(P, MPH_JSON_ROOT, "nope", &v), MPH_ERR_NOENT);
    cr_assert_eq(mph_json_find(P, MPH_JSON_ROOT, "user_obj.address.street", &v),
                 MPH_ERR_NOENT);
    cr_assert_eq(mph_json_find(P, MPH_JSON_ROOT, "items.4", &v), MPH_ERR_NOENT);
    cr_assert_eq(
        mph_json_find(P, MPH_JSON_ROOT, "items.99999999999999999999999", &v),
        MPH_ERR_NOENT);
    cr_assert_eq(mph_json_find(P, MPH_JSON_ROOT, "empty_arr.0", &v),
                 MPH_ERR_NOENT);
    cr_assert_eq(mph_json_find(P, MPH_JSON_ROOT, "empty_obj.a", &v),
                 MPH_ERR_NOENT);
    cr_assert_eq(mph_json_find(P, MPH_JSON_ROOT, "items.x", &v), MPH_ERR_TYPE);
    cr_assert_eq(mph_json_find(P, MPH_JSON_ROOT, "user.x", &v), MPH_ERR_TYPE);
    cr_assert_eq(mph_json_find(P, MPH_JSON_ROOT, "page.0", &v), MPH_ERR_TYPE);
    cr_assert_eq(mph_json_get_str(P, MPH_JSON_ROOT, "page", &s, &n),
                 MPH_ERR_TYPE);
    cr_assert_eq(mph_json_get_i64(P, MPH_JSON_ROOT, "user", &i), MPH_ERR_TYPE);
    cr_assert_eq(mph_json_get_i64(P, MPH_JSON_ROOT, "ratio", &i), MPH_ERR_TYPE);
    cr_assert_eq(mph_json_get_array(P, MPH_JSON_ROOT, "user_obj", &v),
                 MPH_ERR_TYPE);
    cr_assert_eq(mph_json_get_object(P, MPH_JSON_ROOT, "items", &v),
                 MPH_ERR_TYPE);
    bool b;
    cr_assert_eq(mph_json_get_bool(P, MPH_JSON_ROOT, "none", &b), MPH_ERR_TYPE);
    cr_assert_eq(mph_json_field(P, MPH_JSON_ROOT, "items", 5, &v), MPH_OK);
    cr_assert_eq(mph_json_field(P, v, "a", 1, &v), MPH_ERR_TYPE);
    cr_assert_eq(mph_json_index(P, MPH_JSON_ROOT, 0, &v), MPH_ERR_TYPE);
    /* The document is still fine after all these misses. */
    expect_str(MPH_JSON_ROOT, "items.3.name", "d");
    expect_str(MPH_JSON_ROOT, "user", "alice");
}

Test(json, invalid_paths_and_names)
{
    mph_json_val_t v;
    cr_assert_eq(parse(DOC), MPH_OK);
    cr_assert_eq(mph_json_find(P, MPH_JSON_ROOT, "a..b", &v), MPH_ERR_INVALID);
    cr_assert_eq(mph_json_find(P, MPH_JSON_ROOT, ".user", &v), MPH_ERR_INVALID);
    cr_assert_eq(mph_json_find(P, MPH_JSON_ROOT, "user.", &v), MPH_ERR_INVALID);
    cr_assert_eq(mph_json_find(P, MPH_JSON_ROOT, "us\"er", &v),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph_json_find(P, MPH_JSON_ROOT, "us\\er", &v),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph_json_field(P, MPH_JSON_ROOT, "a\"", 2, &v),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph_json_find(NULL, MPH_JSON_ROOT, "user", &v),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph_json_find(P, MPH_JSON_ROOT, "user", NULL),
                 MPH_ERR_INVALID);
    expect_str(MPH_JSON_ROOT, "user", "alice");
}

Test(json, field_names_with_dots_and_long_names)
{
    char doc[600], name[300];
    memset(name, 'k', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    snprintf(doc, sizeof doc, "{\"a.b\":1,\"%s\":2,\"%.*s\":3}", name, 200,
             name);
    cr_assert_eq(parse(doc), MPH_OK);
    mph_json_val_t v;
    int64_t i;
    cr_assert_eq(mph_json_field(P, MPH_JSON_ROOT, "a.b", 3, &v), MPH_OK);
    cr_assert_eq(mph_json_i64(P, v, &i), MPH_OK);
    cr_assert_eq(i, 1);
    cr_assert_eq(mph_json_get_i64(P, MPH_JSON_ROOT, name, &i), MPH_OK);
    cr_assert_eq(i, 2);
    cr_assert_eq(mph_json_field(P, MPH_JSON_ROOT, name, 200, &v), MPH_OK);
    cr_assert_eq(mph_json_i64(P, v, &i), MPH_OK);
    cr_assert_eq(i, 3);
    /* A longer key than any in the document: not found, no overread. */
    char longer[400];
    memset(longer, 'k', sizeof longer);
    cr_assert_eq(mph_json_field(P, MPH_JSON_ROOT, longer, sizeof longer, &v),
                 MPH_ERR_NOENT);
}

Test(json, stale_handles)
{
    mph_json_val_t user, addr, page;
    const char *s;
    size_t n;
    cr_assert_eq(parse(DOC), MPH_OK);
    cr_assert_eq(mph_json_find(P, MPH_JSON_ROOT, "user_obj", &user), MPH_OK);
    cr_assert_eq(mph_json_find(P, user, "address", &addr), MPH_OK);
    /* A lookup on user retires addr, not user. */
    cr_assert_eq(mph_json_get_str(P, user, "name", &s, &n), MPH_OK);
    cr_assert_eq(mph_json_get_str(P, addr, "city", &s, &n), MPH_ERR_STATE);
    cr_assert_eq(mph_json_get_str(P, user, "address.city", &s, &n), MPH_OK);
    /* A lookup on the root retires user. */
    cr_assert_eq(mph_json_find(P, MPH_JSON_ROOT, "page", &page), MPH_OK);
    cr_assert_eq(mph_json_get_str(P, user, "name", &s, &n), MPH_ERR_STATE);
    /* Even a failed lookup retires the handles obtained before. */
    cr_assert_eq(mph_json_find(P, MPH_JSON_ROOT, "nope", &user), MPH_ERR_NOENT);
    int64_t i;
    cr_assert_eq(mph_json_i64(P, page, &i), MPH_ERR_STATE);
    /* A new document retires everything. */
    cr_assert_eq(mph_json_find(P, MPH_JSON_ROOT, "page", &page), MPH_OK);
    cr_assert_eq(parse(DOC), MPH_OK);
    cr_assert_eq(mph_json_i64(P, page, &i), MPH_ERR_STATE);
    cr_assert_eq(mph_json_i64(P, (mph_json_val_t)12345, &i), MPH_ERR_STATE);
    /* The root handle always names the current document. */
    expect_str(MPH_JSON_ROOT, "user", "alice");
}

Test(json, scalar_handle_rereadable)
{
    mph_json_val_t u;
    const char *s1, *s2;
    size_t n1, n2;
    cr_assert_eq(parse(DOC), MPH_OK);
    cr_assert_eq(mph_json_find(P, MPH_JSON_ROOT, "user", &u), MPH_OK);
    cr_assert_eq(mph_json_str(P, u, &s1, &n1), MPH_OK);
    cr_assert_eq(mph_json_str(P, u, &s2, &n2), MPH_OK);
    cr_assert_eq(s1, s2);
    cr_assert_eq(n1, n2);
    int64_t i;
    cr_assert_eq(mph_json_i64(P, u, &i), MPH_ERR_TYPE);
    cr_assert_eq(mph_json_str(P, u, &s2, &n2), MPH_OK);
}

Test(json, object_iteration)
{
    static const char *keys[] = {"a", "b\"q", "c\xc3\xa9", "d"};
    cr_assert_eq(parse("{\"a\":1,\"b\\\"q\":[1,2,{\"x\":3}],\"c\\u00e9\":{"
                       "\"y\":\"z\"},\"d\":null}"),
                 MPH_OK);
    for (int pass = 0; pass < 2; pass++) {
        const char *k;
        size_t kn;
        mph_json_val_t v;
        mph_err_t err;
        int count = 0;
        while ((err = mph_json_object_next(P, MPH_JSON_ROOT, &k, &kn, &v)) ==
               MPH_OK) {
            cr_assert_lt(count, 4);
            cr_assert_eq(kn, strlen(keys[count]));
            cr_assert(memcmp(k, keys[count], kn) == 0, "key %d: %.*s", count,
                      (int)kn, k);
            mph_json_type_t t;
            cr_assert_eq(mph_json_type(P, v, &t), MPH_OK);
            if (count == 2) {
                /* Nested iteration inside the outer one. */
                const char *k2;
                size_t kn2;
                mph_json_val_t v2;
                cr_assert_eq(mph_json_object_next(P, v, &k2, &kn2, &v2),
                             MPH_OK);
                cr_assert_eq(kn2, 1);
                cr_assert_eq(k2[0], 'y');
                cr_assert_eq(mph_json_object_next(P, v, &k2, &kn2, &v2),
                             MPH_ERR_NOENT);
            }
            count++;
        }
        cr_assert_eq(err, MPH_ERR_NOENT);
        cr_assert_eq(count, 4);
    }
    /* Lookups after iteration work and wrap around. */
    int64_t a;
    cr_assert_eq(mph_json_get_i64(P, MPH_JSON_ROOT, "a", &a), MPH_OK);
    cr_assert_eq(a, 1);
    cr_assert_eq(mph_json_get_i64(P, MPH_JSON_ROOT, "b\"q.0", &a),
                 MPH_ERR_INVALID);
}

Test(json, lookup_during_iteration_is_reported)
{
    const char *k;
    size_t kn;
    mph_json_val_t v;
    int64_t i;
    cr_assert_eq(parse("{\"a\":1,\"b\":2,\"c\":3}"), MPH_OK);
    cr_assert_eq(mph_json_object_next(P, MPH_JSON_ROOT, &k, &kn, &v), MPH_OK);
    cr_assert_eq(mph_json_get_i64(P, MPH_JSON_ROOT, "c", &i), MPH_OK);
    cr_assert_eq(i, 3);
    cr_assert_eq(mph_json_object_next(P, MPH_JSON_ROOT, &k, &kn, &v),
                 MPH_ERR_STATE);
    /* The next call starts again at the first field. */
    cr_assert_eq(mph_json_object_next(P, MPH_JSON_ROOT, &k, &kn, &v), MPH_OK);
    cr_assert_eq(k[0], 'a');
    cr_assert_eq(mph_json_object_next(P, MPH_JSON_ROOT, &k, &kn, &v), MPH_OK);
    cr_assert_eq(k[0], 'b');
}

Test(json, array_iteration_and_index_share_position)
{
    mph_json_val_t arr, v;
    int64_t x;
    cr_assert_eq(parse("{\"a\":[10,[1,2],{\"k\":1},13,14]}"), MPH_OK);
    cr_assert_eq(mph_json_get_array(P, MPH_JSON_ROOT, "a", &arr), MPH_OK);
    cr_assert_eq(mph_json_array_next(P, arr, &v), MPH_OK);
    cr_assert_eq(mph_json_i64(P, v, &x), MPH_OK);
    cr_assert_eq(x, 10);
    /* Element 1 is an array we only partly read. */
    cr_assert_eq(mph_json_array_next(P, arr, &v), MPH_OK);
    mph_json_val_t inner;
    cr_assert_eq(mph_json_array_next(P, v, &inner), MPH_OK);
    cr_assert_eq(mph_json_index(P, arr, 3, &v), MPH_OK);
    cr_assert_eq(mph_json_i64(P, v, &x), MPH_OK);
    cr_assert_eq(x, 13);
    cr_assert_eq(mph_json_array_next(P, arr, &v), MPH_OK);
    cr_assert_eq(mph_json_i64(P, v, &x), MPH_OK);
    cr_assert_eq(x, 14);
    cr_assert_eq(mph_json_array_next(P, arr, &v), MPH_ERR_NOENT);
    /* After the end, iteration starts again. */
    cr_assert_eq(mph_json_array_next(P, arr, &v), MPH_OK);
    cr_assert_eq(mph_json_i64(P, v, &x), MPH_OK);
    cr_assert_eq(x, 10);
    /* Backwards by index. */
    for (int i = 4; i >= 0; i--) {
        cr_assert_eq(mph_json_index(P, arr, (size_t)i, &v), MPH_OK);
        if (i == 0 || i >= 3) {
            cr_assert_eq(mph_json_i64(P, v, &x), MPH_OK);
            cr_assert_eq(x, i == 0 ? 10 : 10 + i);
        }
    }
    /* Same index twice. */
    cr_assert_eq(mph_json_index(P, arr, 4, &v), MPH_OK);
    cr_assert_eq(mph_json_index(P, arr, 4, &v), MPH_OK);
    cr_assert_eq(mph_json_i64(P, v, &x), MPH_OK);
    cr_assert_eq(x, 14);
    size_t count;
    cr_assert_eq(mph_json_count(P, arr, &count), MPH_OK);
    cr_assert_eq(count, 5);
    cr_assert_eq(mph_json_array_next(P, arr, &v), MPH_OK);
    cr_assert_eq(mph_json_i64(P, v, &x), MPH_OK);
    cr_assert_eq(x, 10);
}

Test(json, empty_containers)
{
    const char *k;
    size_t kn, count;
    mph_json_val_t v, e;
    cr_assert_eq(parse(DOC), MPH_OK);
    cr_assert_eq(mph_json_get_object(P, MPH_JSON_ROOT, "empty_obj", &v),
                 MPH_OK);
    cr_assert_eq(mph_json_object_next(P, v, &k, &kn, &e), MPH_ERR_NOENT);
    cr_assert_eq(mph_json_count(P, v, &count), MPH_OK);
    cr_assert_eq(count, 0);
    cr_assert_eq(mph_json_get_array(P, MPH_JSON_ROOT, "empty_arr", &v), MPH_OK);
    cr_assert_eq(mph_json_array_next(P, v, &e), MPH_ERR_NOENT);
    cr_assert_eq(mph_json_array_next(P, v, &e), MPH_ERR_NOENT);
    cr_assert_eq(mph_json_count(P, v, &count), MPH_OK);
    cr_assert_eq(count, 0);
}

Test(json, root_scalars_and_arrays)
{
    int64_t i;
    const char *s;
    size_t n;
    bool b;
    mph_json_val_t v;
    cr_assert_eq(parse("  42 "), MPH_OK);
    cr_assert_eq(mph_json_i64(P, MPH_JSON_ROOT, &i), MPH_OK);
    cr_assert_eq(i, 42);
    cr_assert_eq(mph_json_i64(P, MPH_JSON_ROOT, &i), MPH_OK);
    cr_assert_eq(mph_json_find(P, MPH_JSON_ROOT, "a", &v), MPH_ERR_TYPE);
    cr_assert_eq(mph_json_validate(P), MPH_OK);
    cr_assert_eq(parse("\"hi\\tthere\""), MPH_OK);
    cr_assert_eq(mph_json_str(P, MPH_JSON_ROOT, &s, &n), MPH_OK);
    cr_assert_eq(n, 8);
    cr_assert(memcmp(s, "hi\tthere", 8) == 0);
    cr_assert_eq(parse("true"), MPH_OK);
    cr_assert_eq(mph_json_bool(P, MPH_JSON_ROOT, &b), MPH_OK);
    cr_assert(b);
    cr_assert_eq(parse("null"), MPH_OK);
    cr_assert_eq(mph_json_is_null(P, MPH_JSON_ROOT, &b), MPH_OK);
    cr_assert(b);
    cr_assert_eq(parse("[5,6,7]"), MPH_OK);
    cr_assert_eq(mph_json_get_i64(P, MPH_JSON_ROOT, "2", &i), MPH_OK);
    cr_assert_eq(i, 7);
    cr_assert_eq(mph_json_get_i64(P, MPH_JSON_ROOT, "0", &i), MPH_OK);
    cr_assert_eq(i, 5);
    cr_assert_eq(mph_json_get_i64(P, MPH_JSON_ROOT, "1", &i), MPH_OK);
    cr_assert_eq(i, 6);
    cr_assert_eq(mph_json_get_i64(P, MPH_JSON_ROOT, "3", &i), MPH_ERR_NOENT);
}

Test(json, numbers)
{
    int64_t i;
    uint64_t u;
    double d;
    cr_assert_eq(
        parse("{\"max\":9223372036854775807,\"over\":9223372036854775808,"
              "\"under\":-9223372036854775809,\"m1\":-1,\"u_over\":"
              "18446744073709551616,"
              "\"exp\":1e3,\"frac\":-0.5,\"tiny\":4.9e-324,\"huge\":1."
              "7976931348623157e308,"
              "\"negz\":-0.0,\"bigint\":123456789012345678901234567890}"),
        MPH_OK);
    cr_assert_eq(mph_json_get_i64(P, MPH_JSON_ROOT, "max", &i), MPH_OK);
    cr_assert_eq(i, INT64_MAX);
    cr_assert_eq(mph_json_get_i64(P, MPH_JSON_ROOT, "over", &i), MPH_ERR_RANGE);
    cr_assert_eq(mph_json_get_u64(P, MPH_JSON_ROOT, "over", &u), MPH_OK);
    cr_assert_eq(u, (uint64_t)INT64_MAX + 1);
    cr_assert_eq(mph_json_get_i64(P, MPH_JSON_ROOT, "under", &i),
                 MPH_ERR_RANGE);
    cr_assert_eq(mph_json_get_u64(P, MPH_JSON_ROOT, "m1", &u), MPH_ERR_RANGE);
    cr_assert_eq(mph_json_get_u64(P, MPH_JSON_ROOT, "u_over", &u),
                 MPH_ERR_RANGE);
    cr_assert_eq(mph_json_get_i64(P, MPH_JSON_ROOT, "exp", &i), MPH_ERR_TYPE);
    cr_assert_eq(mph_json_get_f64(P, MPH_JSON_ROOT, "exp", &d), MPH_OK);
    cr_assert_eq(d, 1000.0);
    cr_assert_eq(mph_json_get_f64(P, MPH_JSON_ROOT, "frac", &d), MPH_OK);
    cr_assert_eq(d, -0.5);
    cr_assert_eq(mph_json_get_f64(P, MPH_JSON_ROOT, "tiny", &d), MPH_OK);
    cr_assert_eq(d, 4.9e-324);
    cr_assert_eq(mph_json_get_f64(P, MPH_JSON_ROOT, "huge", &d), MPH_OK);
    cr_assert_eq(d, 1.7976931348623157e308);
    cr_assert_eq(mph_json_get_f64(P, MPH_JSON_ROOT, "negz", &d), MPH_OK);
    cr_assert(d == 0.0 && 1.0 / d < 0);
    cr_assert_eq(mph_json_get_f64(P, MPH_JSON_ROOT, "bigint", &d), MPH_OK);
    cr_assert_eq(d, 123456789012345678901234567890.0);
    cr_assert_eq(mph_json_get_i64(P, MPH_JSON_ROOT, "bigint", &i),
                 MPH_ERR_RANGE);
    cr_assert_eq(mph_json_validate(P), MPH_OK);
    /* A long integer as the whole document (found by fuzz_json). */
    const char *longint =
        "1111111111111111111111111111111111111111111111111111111111111111111";
    cr_assert_eq(parse(longint), MPH_OK);
    cr_assert_eq(mph_json_i64(P, MPH_JSON_ROOT, &i), MPH_ERR_RANGE);
    cr_assert_eq(mph_json_u64(P, MPH_JSON_ROOT, &u), MPH_ERR_RANGE);
    cr_assert_eq(mph_json_f64(P, MPH_JSON_ROOT, &d), MPH_OK);
    cr_assert_eq(d, strtod(longint, NULL));
    cr_assert_eq(mph_json_validate(P), MPH_OK);
    /* Out of the double range: malformed for simdjson, and it poisons. */
    cr_assert_eq(parse("{\"x\":1e400,\"y\":1}"), MPH_OK);
    cr_assert_eq(mph_json_get_f64(P, MPH_JSON_ROOT, "x", &d), MPH_ERR_DECODE);
    cr_assert_eq(mph_json_get_i64(P, MPH_JSON_ROOT, "y", &i), MPH_ERR_DECODE);
}

Test(json, string_escapes)
{
    const char *s, *s2;
    size_t n, n2;
    cr_assert_eq(parse("{\"e\":\"a\\\"b\\\\c\\/"
                       "d\\b\\f\\n\\r\\t\\u00e9\\u20ac\\ud83d\\ude00\","
                       "\"plain\":\"xyz\"}"),
                 MPH_OK);
    const char want[] =
        "a\"b\\c/d\b\f\n\r\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    cr_assert_eq(mph_json_get_str(P, MPH_JSON_ROOT, "e", &s, &n), MPH_OK);
    cr_assert_eq(n, sizeof want - 1);
    cr_assert(memcmp(s, want, n) == 0);
    /* Reading it again gives the same copy (no arena growth). */
    for (int i = 0; i < 1000; i++) {
        cr_assert_eq(mph_json_get_str(P, MPH_JSON_ROOT, "e", &s2, &n2), MPH_OK);
        cr_assert_eq(s2, s);
    }
    cr_assert(memcmp(s, want, n) == 0);
    cr_assert_eq(mph_json_get_str(P, MPH_JSON_ROOT, "plain", &s, &n), MPH_OK);
    cr_assert_eq(n, 3);
    cr_assert_eq(mph_json_validate(P), MPH_OK);
}

Test(json, invalid_escapes_are_decode_errors)
{
    static const char *bad[] = {
        "{\"s\":\"\\x\"}",
        "{\"s\":\"\\u12\"}",
        "{\"s\":\"\\ud800\"}",
        "{\"s\":\"\\udc00x\"}",
        "{\"s\":\"\\ud800\\u0041\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *s;
        size_t n;
        cr_assert_eq(parse(bad[i]), MPH_OK, "%s", bad[i]);
        cr_assert_eq(mph_json_get_str(P, MPH_JSON_ROOT, "s", &s, &n),
                     MPH_ERR_DECODE, "%s", bad[i]);
        cr_assert_eq(parse(bad[i]), MPH_OK);
        cr_assert_eq(mph_json_validate(P), MPH_ERR_DECODE, "%s", bad[i]);
    }
}

Test(json, padded_and_unpadded_paths)
{
    size_t len = strlen(DOC);
    char *padded = malloc(len + MPH_JSON_PADDING);
    memcpy(padded, DOC, len);
    memset(padded + len, 'x',
           MPH_JSON_PADDING); /* padding content does not matter */
    const char *s;
    size_t n;

    cr_assert_eq(mph_json_parse(P, padded, len, len + MPH_JSON_PADDING),
                 MPH_OK);
    cr_assert(mph_json_parsed_in_place(P));
    cr_assert_eq(mph_json_get_str(P, MPH_JSON_ROOT, "user", &s, &n), MPH_OK);
    cr_assert(s >= padded && s < padded + len,
              "in place: points into the caller's buffer");
    cr_assert_eq(mph_json_validate(P), MPH_OK);

    cr_assert_eq(mph_json_parse(P, padded, len, len + MPH_JSON_PADDING - 1),
                 MPH_OK);
    cr_assert(!mph_json_parsed_in_place(P));
    cr_assert_eq(mph_json_get_str(P, MPH_JSON_ROOT, "user", &s, &n), MPH_OK);
    cr_assert(s < padded || s >= padded + len + MPH_JSON_PADDING,
              "copy: points into the copy");
    cr_assert_eq(n, 5);
    cr_assert(memcmp(s, "alice", 5) == 0);
    /* The copy is independent of the caller's buffer. */
    memset(padded, ' ', len);
    cr_assert(memcmp(s, "alice", 5) == 0);
    cr_assert_eq(mph_json_parse(P, padded, len, len - 1), MPH_ERR_INVALID);
    free(padded);
}

Test(json, copy_buffer_grows_and_is_reused)
{
    /* Documents of growing and shrinking sizes through one parser. */
    size_t cap = 70000;
    char *doc = malloc(cap);
    for (int round = 0; round < 40; round++) {
        size_t fill = (size_t)((round * 7919) % 60000);
        int len = snprintf(doc, cap, "{\"pad\":\"");
        memset(doc + len, 'p', fill);
        len += (int)fill;
        len += snprintf(doc + len, cap - (size_t)len, "\",\"n\":%d}", round);
        cr_assert_eq(mph_json_parse(P, doc, (size_t)len, (size_t)len), MPH_OK);
        int64_t n;
        cr_assert_eq(mph_json_get_i64(P, MPH_JSON_ROOT, "n", &n), MPH_OK);
        cr_assert_eq(n, round);
        const char *s;
        size_t sl;
        cr_assert_eq(mph_json_get_str(P, MPH_JSON_ROOT, "pad", &s, &sl),
                     MPH_OK);
        cr_assert_eq(sl, fill);
    }
    free(doc);
}

Test(json, raw_text)
{
    const char *s;
    size_t n;
    mph_json_val_t v;
    cr_assert_eq(
        parse("{\"a\" : { \"b\" : [1, 2] } , \"c\":  12.5  , \"d\":\"x\"}"),
        MPH_OK);
    cr_assert_eq(mph_json_find(P, MPH_JSON_ROOT, "a", &v), MPH_OK);
    cr_assert_eq(mph_json_raw(P, v, &s, &n), MPH_OK);
    cr_assert_eq(n, strlen("{ \"b\" : [1, 2] }"));
    cr_assert(memcmp(s, "{ \"b\" : [1, 2] }", n) == 0, "%.*s", (int)n, s);
    /* The object stays usable after its raw text was taken. */
    int64_t i;
    cr_assert_eq(mph_json_get_i64(P, v, "b.1", &i), MPH_OK);
    cr_assert_eq(i, 2);
    cr_assert_eq(mph_json_find(P, MPH_JSON_ROOT, "c", &v), MPH_OK);
    cr_assert_eq(mph_json_raw(P, v, &s, &n), MPH_OK);
    cr_assert_eq(n, 4);
    cr_assert(memcmp(s, "12.5", 4) == 0);
    cr_assert_eq(mph_json_find(P, MPH_JSON_ROOT, "d", &v), MPH_OK);
    cr_assert_eq(mph_json_raw(P, v, &s, &n), MPH_OK);
    cr_assert_eq(n, 3);
    cr_assert_eq(mph_json_raw(P, MPH_JSON_ROOT, &s, &n), MPH_OK);
    cr_assert_eq(s[0], '{');
    cr_assert_eq(s[n - 1], '}');
    cr_assert_eq(mph_json_get_i64(P, MPH_JSON_ROOT, "a.b.0", &i), MPH_OK);
    cr_assert_eq(i, 1);
}

Test(json, validate_accepts_valid_documents)
{
    static const char *good[] = {
        "{}",
        "[]",
        "0",
        "-0",
        "\"\"",
        "true",
        "false",
        "null",
        " {\"a\":[]} \n",
        "[1,-2.5e10,\"x\",{\"y\":[null,true,false,{}]}]",
        "{\"k\\u0041\":\"\\ud83d\\ude00\",\"n\":[[[[[[1]]]]]]}",
        "123456789012345678901234567890",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        cr_assert_eq(parse(good[i]), MPH_OK, "%s", good[i]);
        cr_assert_eq(mph_json_validate(P), MPH_OK, "%s: %s", good[i],
                     mph_json_last_error(P));
        /* Lookups work after validation. */
        mph_json_type_t t;
        cr_assert_eq(mph_json_type(P, MPH_JSON_ROOT, &t), MPH_OK);
        cr_assert_eq(mph_json_validate(P), MPH_OK, "twice: %s", good[i]);
    }
}

Test(json, validate_rejects_malformed_documents)
{
    static const char *bad[] = {
        "{\"a\":1} x",
        "{\"a\":1}}",
        "[1,2]]",
        "{\"a\":[1,tru]}",
        "{\"a\":[1,2}",
        "{\"a\" 1}",
        "{\"a\":1,}",
        "[1,]",
        "[1 2]",
        "{\"a\":nul}",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":-}",
        "{a:1}",
        "42 43",
        "\"x\" y",
        "{\"a\":\"\\x\"}",
        "{\"a\":{\"b\":1}",
        "[",
        "{",
        "{\"a\":1e400}",
        "{\"\\q\":1}",
        "[truex]",
        "{\"a\":fals}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mph_err_t err = parse(bad[i]);
        if (err == MPH_OK)
            err = mph_json_validate(P);
        cr_assert_eq(err, MPH_ERR_DECODE, "%s: %s", bad[i], mph_err_str(err));
        /* Poisoned: every further read reports it. */
        mph_json_type_t t;
        if (parse(bad[i]) == MPH_OK) {
            cr_assert_eq(mph_json_validate(P), MPH_ERR_DECODE);
            cr_assert_eq(mph_json_type(P, MPH_JSON_ROOT, &t), MPH_ERR_DECODE);
            cr_assert_neq(mph_json_last_error(P)[0], '\0');
        }
    }
}

/* simdjson 3.0.1 takes a root "nulll" for null when the byte after it is a
 * space (found by fuzz_json: the in-place path accepted it). */
Test(json, root_atoms_are_exact_in_both_paths)
{
    static const char *bad[] = {"nulll", "nullx", "truee", "falsee", "nul"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len = strlen(bad[i]);
        char *padded = malloc(len + MPH_JSON_PADDING);
        memcpy(padded, bad[i], len);
        memset(padded + len, ' ', MPH_JSON_PADDING);
        bool b;
        cr_assert_eq(mph_json_parse(P, padded, len, len + MPH_JSON_PADDING),
                     MPH_OK);
        cr_assert_eq(mph_json_validate(P), MPH_ERR_DECODE, "%s in place",
                     bad[i]);
        cr_assert_eq(mph_json_parse(P, padded, len, len + MPH_JSON_PADDING),
                     MPH_OK);
        if (bad[i][0] == 'n')
            cr_assert_eq(mph_json_is_null(P, MPH_JSON_ROOT, &b), MPH_ERR_DECODE,
                         "%s", bad[i]);
        else
            cr_assert_eq(mph_json_bool(P, MPH_JSON_ROOT, &b), MPH_ERR_DECODE,
                         "%s", bad[i]);
        cr_assert_eq(parse(bad[i]), MPH_OK);
        cr_assert_eq(mph_json_validate(P), MPH_ERR_DECODE, "%s copied", bad[i]);
        free(padded);
    }
    bool b = false;
    cr_assert_eq(parse("null "), MPH_OK);
    cr_assert_eq(mph_json_is_null(P, MPH_JSON_ROOT, &b), MPH_OK);
    cr_assert(b);
    cr_assert_eq(parse("false\n"), MPH_OK);
    cr_assert_eq(mph_json_bool(P, MPH_JSON_ROOT, &b), MPH_OK);
    cr_assert(!b);
    cr_assert_eq(parse("[true,false,null]"), MPH_OK);
    cr_assert_eq(mph_json_validate(P), MPH_OK);
}

Test(json, lazy_lookups_do_not_validate_unread_parts)
{
    const char *s;
    size_t n;
    cr_assert_eq(parse("{\"user\":\"a\",\"junk\":[tru]}"), MPH_OK);
    cr_assert_eq(mph_json_get_str(P, MPH_JSON_ROOT, "user", &s, &n), MPH_OK);
    cr_assert_eq(mph_json_validate(P), MPH_ERR_DECODE);
}

Test(json, error_offset)
{
    cr_assert_eq(parse("{\"a\":1,\"b\":[1,2 3]}"), MPH_OK);
    cr_assert_eq(mph_json_validate(P), MPH_ERR_DECODE);
    size_t off = mph_json_last_error_offset(P);
    cr_assert(off != SIZE_MAX && off <= strlen("{\"a\":1,\"b\":[1,2 3]}"),
              "offset %zu", off);
    cr_assert_eq(parse(DOC), MPH_OK);
    cr_assert_eq(mph_json_last_error_offset(P), SIZE_MAX);
}

Test(json, parse_errors)
{
    cr_assert_eq(parse(""), MPH_ERR_DECODE);
    cr_assert_eq(parse("   "), MPH_ERR_DECODE);
    mph_json_type_t t;
    cr_assert_eq(mph_json_type(P, MPH_JSON_ROOT, &t), MPH_ERR_DECODE);
    cr_assert_eq(parse("{\"a\":\"\x01\"}"),
                 MPH_ERR_DECODE); /* unescaped control */
    cr_assert_eq(parse("{\"a\":\"abc}"), MPH_ERR_DECODE); /* unclosed string */
    cr_assert_eq(parse("{\"a\":\"\xff\"}"), MPH_ERR_UTF8);
    cr_assert_eq(parse("{\"a\":\"\xed\xa0\x80\"}"),
                 MPH_ERR_UTF8); /* surrogate */
    cr_assert_eq(parse("{\"a\":\"\xc0\x80\"}"),
                 MPH_ERR_UTF8); /* overlong NUL */
    cr_assert_eq(mph_json_parse(P, NULL, 3, 3), MPH_ERR_INVALID);
    cr_assert_eq(mph_json_parse(NULL, "{}", 2, 2), MPH_ERR_INVALID);
    cr_assert_eq(mph_json_validate(NULL), MPH_ERR_INVALID);
    /* Nothing parsed on a fresh parser. */
    char err[64];
    mph_json_parser_t *q = mph_json_parser_new(0, err, sizeof err);
    cr_assert_eq(mph_json_type(q, MPH_JSON_ROOT, &t), MPH_ERR_STATE);
    mph_json_parser_destroy(q);
    mph_json_parser_destroy(NULL);
}

Test(json, document_size_limit)
{
    char err[64];
    mph_json_parser_t *q = mph_json_parser_new(32, err, sizeof err);
    cr_assert_not_null(q, "%s", err);
    const char *small = "{\"a\":1}";
    const char *big = "{\"a\":\"0123456789012345678901234567890123456789\"}";
    cr_assert_eq(mph_json_parse(q, small, strlen(small), strlen(small)),
                 MPH_OK);
    cr_assert_eq(mph_json_parse(q, big, strlen(big), strlen(big)),
                 MPH_ERR_RANGE);
    cr_assert_eq(mph_json_parse(q, small, strlen(small), strlen(small)),
                 MPH_OK);
    mph_json_parser_destroy(q);
}

static char *nested(int depth)
{
    char *s = malloc((size_t)depth * 2 + 2);
    for (int i = 0; i < depth; i++)
        s[i] = '[';
    s[depth] = '1';
    for (int i = 0; i < depth; i++)
        s[depth + 1 + i] = ']';
    s[2 * depth + 1] = '\0';
    return s;
}

Test(json, nesting_limit)
{
    char *ok = nested(MPH_JSON_MAX_DEPTH - 1);
    char *deep = nested(MPH_JSON_MAX_DEPTH + 10);
    cr_assert_eq(parse(ok), MPH_OK);
    cr_assert_eq(mph_json_validate(P), MPH_OK);
    cr_assert_eq(parse(deep), MPH_OK);
    cr_assert_eq(mph_json_validate(P), MPH_ERR_DECODE);
    /* Lookups stop at the limit with a range error. */
    cr_assert_eq(parse(deep), MPH_OK);
    mph_json_val_t v = MPH_JSON_ROOT;
    mph_err_t err = MPH_OK;
    int steps = 0;
    while ((err = mph_json_index(P, v, 0, &v)) == MPH_OK)
        steps++;
    cr_assert_eq(err, MPH_ERR_RANGE);
    cr_assert_eq(steps, MPH_JSON_MAX_DEPTH);
    free(ok);
    free(deep);
}

Test(json, utf8_validation)
{
    static const struct {
        const char *s;
        size_t n;
        bool ok;
    } cases[] = {
        {"", 0, true},
        {"hello", 5, true},
        {"caf\xc3\xa9", 5, true},
        {"\xe2\x82\xac", 3, true},
        {"\xf0\x9f\x98\x80", 4, true},
        {"\xf4\x8f\xbf\xbf", 4, true}, /* U+10FFFF */
        {"\x00", 1, true},
        {"\xc0\x80", 2, false},         /* overlong NUL */
        {"\xc1\xbf", 2, false},         /* overlong */
        {"\xe0\x80\x80", 3, false},     /* overlong 3-byte */
        {"\xf0\x80\x80\x80", 4, false}, /* overlong 4-byte */
        {"\xed\xa0\x80", 3, false},     /* U+D800 surrogate */
        {"\xed\xbf\xbf", 3, false},     /* U+DFFF surrogate */
        {"\xf4\x90\x80\x80", 4, false}, /* above U+10FFFF */
        {"\xf8\x88\x80\x80\x80", 5, false},
        {"\x80", 1, false},     /* lone continuation */
        {"\xc3", 1, false},     /* truncated */
        {"\xe2\x82", 2, false}, /* truncated */
        {"a\xffz", 3, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_assert_eq(mph_json_utf8_valid(cases[i].s, cases[i].n), cases[i].ok,
                     "case %zu", i);
    /* Long inputs take the SIMD path. */
    char buf[1000];
    memset(buf, 'a', sizeof buf);
    cr_assert(mph_json_utf8_valid(buf, sizeof buf));
    buf[700] = (char)0xc0;
    buf[701] = (char)0x80;
    cr_assert(!mph_json_utf8_valid(buf, sizeof buf));
    cr_assert(!mph_json_utf8_valid(NULL, 1));
}

/* No C++ exception crosses into C: a bad_alloc, or any other exception,
 * thrown inside the shim comes back as an error code, and the parser works
 * for the next document. */
Test(json, exceptions_become_error_codes)
{
    /* A real allocation of the shim (growing the copy buffer) fails. */
    size_t len = 100000;
    char *big = malloc(len);
    memset(big, ' ', len);
    big[0] = '[';
    big[len - 1] = ']';
    mph__json_inject_fault(P, MPH__JSON_FAULT_ALLOC);
    cr_assert_eq(mph_json_parse(P, big, len, len), MPH_ERR_NOMEM);
    cr_assert_str_eq(mph_json_last_error(P), "out of memory");
    mph__json_inject_fault(P, MPH__JSON_FAULT_OTHER);
    cr_assert_eq(mph_json_parse(P, big, len, len), MPH_ERR_INTERNAL);
    cr_assert_eq(mph_json_parse(P, big, len, len), MPH_OK);
    free(big);

    /* The arena allocation for an escaped string fails. */
    cr_assert_eq(parse("{\"s\":\"a\\nb\"}"), MPH_OK);
    mph__json_inject_fault(P, MPH__JSON_FAULT_ALLOC);
    const char *s;
    size_t n;
    cr_assert_eq(mph_json_get_str(P, MPH_JSON_ROOT, "s", &s, &n),
                 MPH_ERR_NOMEM);
    /* The document is then poisoned, the next one is fine. */
    cr_assert_eq(mph_json_get_str(P, MPH_JSON_ROOT, "s", &s, &n),
                 MPH_ERR_NOMEM);
    cr_assert_eq(parse("{\"s\":\"a\\nb\"}"), MPH_OK);
    cr_assert_eq(mph_json_get_str(P, MPH_JSON_ROOT, "s", &s, &n), MPH_OK);
    cr_assert_eq(n, 3);
}

Test(json, every_entry_point_is_guarded)
{
    mph_json_val_t v;
    const char *s;
    size_t n;
    int64_t i;
    uint64_t u;
    double d;
    bool b;
    mph_json_type_t t;
#define EXPECT_NOMEM(call)                                                     \
    do {                                                                       \
        cr_assert_eq(parse(DOC), MPH_OK);                                      \
        mph__json_inject_fault(P, MPH__JSON_FAULT_ENTRY);                      \
        cr_assert_eq((call), MPH_ERR_NOMEM, #call);                            \
        cr_assert_eq(parse(DOC), MPH_OK);                                      \
        cr_assert_eq(mph_json_get_i64(P, MPH_JSON_ROOT, "page", &i), MPH_OK);  \
    } while (0)
    EXPECT_NOMEM(mph_json_parse(P, DOC, strlen(DOC), strlen(DOC)));
    EXPECT_NOMEM(mph_json_validate(P));
    EXPECT_NOMEM(mph_json_find(P, MPH_JSON_ROOT, "user", &v));
    EXPECT_NOMEM(mph_json_field(P, MPH_JSON_ROOT, "user", 4, &v));
    EXPECT_NOMEM(mph_json_index(P, MPH_JSON_ROOT, 0, &v));
    EXPECT_NOMEM(mph_json_type(P, MPH_JSON_ROOT, &t));
    EXPECT_NOMEM(mph_json_str(P, MPH_JSON_ROOT, &s, &n));
    EXPECT_NOMEM(mph_json_i64(P, MPH_JSON_ROOT, &i));
    EXPECT_NOMEM(mph_json_u64(P, MPH_JSON_ROOT, &u));
    EXPECT_NOMEM(mph_json_f64(P, MPH_JSON_ROOT, &d));
    EXPECT_NOMEM(mph_json_bool(P, MPH_JSON_ROOT, &b));
    EXPECT_NOMEM(mph_json_is_null(P, MPH_JSON_ROOT, &b));
    EXPECT_NOMEM(mph_json_raw(P, MPH_JSON_ROOT, &s, &n));
    EXPECT_NOMEM(mph_json_count(P, MPH_JSON_ROOT, &n));
    EXPECT_NOMEM(mph_json_get_str(P, MPH_JSON_ROOT, "user", &s, &n));
    EXPECT_NOMEM(mph_json_get_i64(P, MPH_JSON_ROOT, "page", &i));
    EXPECT_NOMEM(mph_json_get_u64(P, MPH_JSON_ROOT, "page", &u));
    EXPECT_NOMEM(mph_json_get_f64(P, MPH_JSON_ROOT, "page", &d));
    EXPECT_NOMEM(mph_json_get_bool(P, MPH_JSON_ROOT, "ok", &b));
    EXPECT_NOMEM(mph_json_get_is_null(P, MPH_JSON_ROOT, "none", &b));
    EXPECT_NOMEM(mph_json_get_array(P, MPH_JSON_ROOT, "items", &v));
    EXPECT_NOMEM(mph_json_get_object(P, MPH_JSON_ROOT, "user_obj", &v));
    EXPECT_NOMEM(mph_json_object_next(P, MPH_JSON_ROOT, &s, &n, &v));
    EXPECT_NOMEM(mph_json_array_next(P, MPH_JSON_ROOT, &v));
    EXPECT_NOMEM(mph__json_check_value(P, MPH_JSON_ROOT));
    EXPECT_NOMEM(mph__json_check_end(P));
#undef EXPECT_NOMEM
}

Test(json, check_value_and_end)
{
    const char *k;
    size_t kn;
    mph_json_val_t v;
    cr_assert_eq(parse("{\"a\":[1,{\"b\":2}],\"c\":\"d\"}"), MPH_OK);
    while (mph_json_object_next(P, MPH_JSON_ROOT, &k, &kn, &v) == MPH_OK)
        cr_assert_eq(mph__json_check_value(P, v), MPH_OK);
    cr_assert_eq(mph__json_check_end(P), MPH_OK);
    cr_assert_eq(parse("{\"a\":[1,{\"b\":tru}],\"c\":\"d\"}"), MPH_OK);
    cr_assert_eq(mph_json_object_next(P, MPH_JSON_ROOT, &k, &kn, &v), MPH_OK);
    cr_assert_eq(mph__json_check_value(P, v), MPH_ERR_DECODE);
    cr_assert_eq(parse("{\"a\":1} {\"b\":2}"), MPH_OK);
    cr_assert_eq(mph__json_check_end(P), MPH_ERR_DECODE);
    cr_assert_eq(parse("{\"a\":1}   "), MPH_OK);
    cr_assert_eq(mph__json_check_end(P), MPH_OK);
}

/* ---- Mutation stress: arbitrary bytes never crash the shim. ---- */

static uint64_t rng_state;
static uint64_t rnd(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Reads every value reachable from v through the C API. */
static mph_err_t walk(mph_json_val_t v, int depth)
{
    mph_json_type_t t;
    mph_err_t err = mph_json_type(P, v, &t);
    if (err)
        return err;
    const char *s;
    size_t n;
    mph_json_val_t c;
    switch (t) {
    case MPH_JSON_OBJECT:
        while ((err = mph_json_object_next(P, v, &s, &n, &c)) == MPH_OK)
            if ((err = walk(c, depth + 1)) != MPH_OK)
                return err;
        return err == MPH_ERR_NOENT ? MPH_OK : err;
    case MPH_JSON_ARRAY:
        while ((err = mph_json_array_next(P, v, &c)) == MPH_OK)
            if ((err = walk(c, depth + 1)) != MPH_OK)
                return err;
        return err == MPH_ERR_NOENT ? MPH_OK : err;
    case MPH_JSON_STRING:
        return mph_json_str(P, v, &s, &n);
    case MPH_JSON_NUMBER: {
        double d;
        int64_t i;
        err = mph_json_i64(P, v, &i);
        if (err == MPH_ERR_TYPE || err == MPH_ERR_RANGE)
            err = mph_json_f64(P, v, &d);
        return err;
    }
    case MPH_JSON_BOOL: {
        bool b;
        return mph_json_bool(P, v, &b);
    }
    case MPH_JSON_NULL: {
        bool b;
        return mph_json_is_null(P, v, &b);
    }
    }
    return MPH_ERR_INTERNAL;
}

Test(json, mutated_documents_never_crash, .timeout = 30)
{
    static const char *seeds[] = {
        "{\"user\":\"alice\",\"page\":42,\"tags\":[\"a\",\"b\\n\"],\"geo\":{"
        "\"lat\":1.5,\"ok\":true}}",
        "[1,2,[3,[4,{\"k\":null}]],\"\\u00e9\",-0.5e3,false]",
        "{\"a\":{\"b\":{\"c\":{\"d\":[[],{},\"\"]}}}}",
    };
    static const char alphabet[] =
        "{}[],:\"\\ \t\n0123456789-+.eEtrufalsn\xc3\xa9\x80";
    char buf[256];
    rng_state = 12345;
    for (int iter = 0; iter < 6000; iter++) {
        const char *seed = seeds[iter % 3];
        size_t len = strlen(seed);
        memcpy(buf, seed, len);
        int muts = iter % 10 == 0 ? 0 : 1 + (int)(rnd() % 4);
        for (int m = 0; m < muts; m++) {
            size_t pos = (size_t)(rnd() % len);
            switch (rnd() % 3) {
            case 0:
                buf[pos] = alphabet[rnd() % (sizeof alphabet - 1)];
                break;
            case 1: /* delete */
                memmove(buf + pos, buf + pos + 1, len - pos - 1);
                len--;
                break;
            default: /* insert */
                if (len + 1 < sizeof buf) {
                    memmove(buf + pos + 1, buf + pos, len - pos);
                    buf[pos] = alphabet[rnd() % (sizeof alphabet - 1)];
                    len++;
                }
            }
            if (len == 0)
                break;
        }
        mph_err_t err = mph_json_parse(P, buf, len, len);
        if (err != MPH_OK) {
            cr_assert(err == MPH_ERR_DECODE || err == MPH_ERR_UTF8, "%d", err);
            continue;
        }
        mph_err_t werr = walk(MPH_JSON_ROOT, 0);
        cr_assert(werr == MPH_OK || werr == MPH_ERR_DECODE ||
                      werr == MPH_ERR_UTF8 || werr == MPH_ERR_RANGE,
                  "walk: %s (%s) on %.*s", mph_err_str(werr),
                  mph_json_last_error(P), (int)len, buf);
        /* Random lookups in any order. */
        static const char *paths[] = {"user", "tags.1",  "geo.lat",
                                      "0",    "2.1.1.k", "a.b.c.d.2"};
        for (int k = 0; k < 6; k++) {
            const char *s;
            size_t n;
            (void)mph_json_get_str(P, MPH_JSON_ROOT, paths[rnd() % 6], &s, &n);
        }
        /* Random operations on random (possibly stale) handles. */
        cr_assert_eq(mph_json_parse(P, buf, len, len), MPH_OK);
        mph_json_val_t pool[8] = {MPH_JSON_ROOT};
        int npool = 1;
        for (int k = 0; k < 40; k++) {
            mph_json_val_t h = pool[rnd() % (uint64_t)npool],
                           out = MPH_JSON_ROOT;
            const char *s;
            size_t n;
            int64_t i64;
            mph_err_t e = MPH_OK;
            switch (rnd() % 9) {
            case 0:
                e = mph_json_find(P, h, paths[rnd() % 6], &out);
                break;
            case 1:
                e = mph_json_index(P, h, (size_t)(rnd() % 4), &out);
                break;
            case 2:
                e = mph_json_object_next(P, h, &s, &n, &out);
                break;
            case 3:
                e = mph_json_array_next(P, h, &out);
                break;
            case 4:
                e = mph_json_raw(P, h, &s, &n);
                break;
            case 5:
                e = mph_json_count(P, h, &n);
                break;
            case 6:
                e = mph_json_str(P, h, &s, &n);
                break;
            case 7:
                e = mph_json_i64(P, h, &i64);
                break;
            default:
                e = mph__json_check_value(P, h);
                break;
            }
            if (e == MPH_OK && out != MPH_JSON_ROOT)
                pool[npool < 8 ? npool++ : (int)(rnd() % 8)] = out;
        }
        mph_err_t verr = mph_json_validate(P);
        /* A document that validates also walks cleanly. */
        if (verr == MPH_OK) {
            cr_assert_eq(mph_json_parse(P, buf, len, len), MPH_OK);
            cr_assert_eq(walk(MPH_JSON_ROOT, 0), MPH_OK, "%.*s", (int)len, buf);
        }
    }
}
