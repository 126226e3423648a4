/*
 * libFuzzer target for records: arbitrary bytes decoded as a record of a
 * type that uses every field kind. Validation alone must agree with
 * decoding; a decoded record must encode, decode back to an equal record,
 * and encode to the same text. Aborts on any inconsistency.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/record.h"
#include "mephisto/json.h"
#include "mephisto/jsonw.h"
#include "mephisto/record.h"

static mph_json_parser_t *P;
static mph_jsonw_t *W, *W2;
static mph_record_type_t *item, *view;
static mph_record_t *rec, *back;

static void check(int cond)
{
    if (!cond)
        abort();
}

static void make_types(void)
{
    size_t i;
    item = mph_record_type_new("Item", NULL, 0);
    view = mph_record_type_new("View", NULL, 0);
    check(item != NULL && view != NULL);
    check(mph_record_type_add(item, "name", MPH_FIELD_STRING, &i) == MPH_OK);
    check(mph_record_type_set_max_len(item, i, 32) == MPH_OK);
    check(mph_record_type_add(item, "qty", MPH_FIELD_I64, &i) == MPH_OK);
    check(mph_record_type_set_default_i64(item, i, 1) == MPH_OK);
    check(mph_record_type_set_range_i64(item, i, -1000, 1000) == MPH_OK);

    check(mph_record_type_add(view, "user", MPH_FIELD_STRING, &i) == MPH_OK);
    check(mph_record_type_add(view, "page", MPH_FIELD_I64, &i) == MPH_OK);
    check(mph_record_type_add(view, "ratio", MPH_FIELD_F64, &i) == MPH_OK);
    check(mph_record_type_set_default_f64(view, i, 0.5) == MPH_OK);
    check(mph_record_type_add(view, "ok", MPH_FIELD_BOOL, &i) == MPH_OK);
    check(mph_record_type_set_optional(view, i) == MPH_OK);
    check(mph_record_type_add(view, "blob", MPH_FIELD_BYTES, &i) == MPH_OK);
    check(mph_record_type_set_optional(view, i) == MPH_OK);
    check(mph_record_type_add(view, "ts", MPH_FIELD_TIMESTAMP, &i) == MPH_OK);
    check(mph_record_type_set_default_i64(view, i, 0) == MPH_OK);
    check(mph_record_type_add_record(view, "item", item, &i) == MPH_OK);
    check(mph_record_type_set_optional(view, i) == MPH_OK);
    check(mph_record_type_add_array(view, "items", MPH_FIELD_RECORD, item, &i) == MPH_OK);
    check(mph_record_type_set_optional(view, i) == MPH_OK);
    check(mph_record_type_set_max_len(view, i, 16) == MPH_OK);
    check(mph_record_type_add_array(view, "tags", MPH_FIELD_STRING, NULL, &i) == MPH_OK);
    check(mph_record_type_set_optional(view, i) == MPH_OK);
    check(mph_record_type_add_array(view, "times", MPH_FIELD_TIMESTAMP, NULL, &i) == MPH_OK);
    check(mph_record_type_set_optional(view, i) == MPH_OK);
    check(mph_record_type_add_array(view, "scores", MPH_FIELD_F64, NULL, &i) == MPH_OK);
    check(mph_record_type_set_optional(view, i) == MPH_OK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (P == NULL) {
        P = mph_json_parser_new(1 << 20, NULL, 0);
        W = mph_jsonw_new(0, NULL, 0);
        W2 = mph_jsonw_new(0, NULL, 0);
        check(P != NULL && W != NULL && W2 != NULL);
        make_types();
    }
    char verr[256], derr[256];
    mph_err_t v = mph__record_validate(view, P, data, size, verr, sizeof verr);
    mph_err_t d = mph_record_decode(view, P, data, size, &rec, derr, sizeof derr);
    check(v == d);
    check(strcmp(verr, derr) == 0);
    check(d == MPH_OK || d == MPH_ERR_DECODE || d == MPH_ERR_SCHEMA || d == MPH_ERR_UTF8);
    if (d != MPH_OK)
        return 0;
    mph_jsonw_reset(W);
    check(mph_record_encode(rec, W, NULL, 0) == MPH_OK);
    const char *out;
    size_t n;
    check(mph_jsonw_finish(W, &out, &n) == MPH_OK);
    check(mph_record_decode(view, P, out, n, &back, derr, sizeof derr) == MPH_OK);
    check(mph_record_equal(rec, back));
    mph_jsonw_reset(W2);
    check(mph_record_encode(back, W2, NULL, 0) == MPH_OK);
    const char *out2;
    size_t n2;
    check(mph_jsonw_finish(W2, &out2, &n2) == MPH_OK);
    check(n == n2 && memcmp(out, out2, n) == 0);
    return 0;
}
