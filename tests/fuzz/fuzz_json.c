/*
 * libFuzzer target for the JSON shim and writer: arbitrary bytes through
 * mph_json_parse (copy and in-place paths), full validation, lookups and
 * iteration in orders chosen by the input, and a re-encoding with the writer
 * that must itself be valid JSON and stable. Aborts on any inconsistency.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "mephisto/json.h"
#include "mephisto/jsonw.h"

static mph_json_parser_t *P;
static mph_jsonw_t *W, *W2;

static void check(int cond)
{
    if (!cond)
        abort();
}

/* Writes the value v of P's document into w; MPH_OK or the shim's error. */
static mph_err_t rewrite(mph_json_val_t v, mph_jsonw_t *w)
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
        check(mph_jsonw_object_begin(w) == MPH_OK);
        while ((err = mph_json_object_next(P, v, &s, &n, &c)) == MPH_OK) {
            check(mph_jsonw_key(w, s, n) == MPH_OK);
            if ((err = rewrite(c, w)) != MPH_OK)
                return err;
        }
        if (err != MPH_ERR_NOENT)
            return err;
        check(mph_jsonw_object_end(w) == MPH_OK);
        return MPH_OK;
    case MPH_JSON_ARRAY:
        check(mph_jsonw_array_begin(w) == MPH_OK);
        while ((err = mph_json_array_next(P, v, &c)) == MPH_OK)
            if ((err = rewrite(c, w)) != MPH_OK)
                return err;
        if (err != MPH_ERR_NOENT)
            return err;
        check(mph_jsonw_array_end(w) == MPH_OK);
        return MPH_OK;
    case MPH_JSON_STRING:
        if ((err = mph_json_str(P, v, &s, &n)) != MPH_OK)
            return err;
        check(mph_jsonw_str(w, s, n) == MPH_OK);
        return MPH_OK;
    case MPH_JSON_NUMBER: {
        int64_t i;
        uint64_t u;
        double d;
        if ((err = mph_json_i64(P, v, &i)) == MPH_OK)
            return mph_jsonw_i64(w, i);
        if ((err = mph_json_u64(P, v, &u)) == MPH_OK)
            return mph_jsonw_u64(w, u);
        if ((err = mph_json_f64(P, v, &d)) != MPH_OK)
            return err;
        check(mph_jsonw_f64(w, d) == MPH_OK);
        return MPH_OK;
    }
    case MPH_JSON_BOOL: {
        bool b;
        if ((err = mph_json_bool(P, v, &b)) != MPH_OK)
            return err;
        return mph_jsonw_bool(w, b);
    }
    case MPH_JSON_NULL: {
        bool b;
        if ((err = mph_json_is_null(P, v, &b)) != MPH_OK)
            return err;
        check(b);
        return mph_jsonw_null(w);
    }
    }
    abort();
}

/* Operations chosen by the input on handles of the current document. */
static void random_ops(const uint8_t *ops, size_t n)
{
    static const char *paths[] = {"a", "0", "a.b", "1.a", "a.0.b", "", "x.y.z", "0.0.0"};
    mph_json_val_t pool[8] = {MPH_JSON_ROOT};
    int npool = 1;
    for (size_t k = 0; k + 1 < n && k < 64; k += 2) {
        mph_json_val_t h = pool[ops[k] % npool], out = MPH_JSON_ROOT;
        const char *s;
        size_t len;
        int64_t i;
        mph_err_t e;
        switch (ops[k + 1] % 10) {
        case 0: e = mph_json_find(P, h, paths[ops[k] % 8], &out); break;
        case 1: e = mph_json_index(P, h, ops[k] % 5, &out); break;
        case 2: e = mph_json_object_next(P, h, &s, &len, &out); break;
        case 3: e = mph_json_array_next(P, h, &out); break;
        case 4: e = mph_json_raw(P, h, &s, &len); break;
        case 5: e = mph_json_count(P, h, &len); break;
        case 6: e = mph_json_str(P, h, &s, &len); break;
        case 7: e = mph_json_i64(P, h, &i); break;
        case 8: e = mph__json_check_value(P, h); break;
        default: e = mph__json_check_end(P); break;
        }
        if (e == MPH_OK && out != MPH_JSON_ROOT)
            pool[npool < 8 ? npool++ : ops[k] % 8] = out;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (P == NULL) {
        P = mph_json_parser_new(1 << 20, NULL, 0);
        W = mph_jsonw_new(0, NULL, 0);
        W2 = mph_jsonw_new(0, NULL, 0);
        check(P != NULL && W != NULL && W2 != NULL);
    }
    /* Copy path, then full validation. */
    mph_err_t perr = mph_json_parse(P, data, size, size);
    mph_err_t verr = perr ? perr : mph_json_validate(P);

    /* In-place path must agree. */
    uint8_t *padded = malloc(size + MPH_JSON_PADDING);
    check(padded != NULL);
    if (size)
        memcpy(padded, data, size);
    memset(padded + size, '}', MPH_JSON_PADDING);
    mph_err_t perr2 = mph_json_parse(P, padded, size, size + MPH_JSON_PADDING);
    check(perr2 == perr);
    check(mph_json_parsed_in_place(P) == (perr2 == MPH_OK));
    mph_err_t verr2 = perr2 ? perr2 : mph_json_validate(P);
    check(verr2 == verr);

    if (verr == MPH_OK) {
        /* A valid document walks cleanly and re-encodes to valid JSON that
         * re-encodes to itself. */
        mph_jsonw_reset(W);
        check(rewrite(MPH_JSON_ROOT, W) == MPH_OK);
        const char *out;
        size_t n;
        check(mph_jsonw_finish(W, &out, &n) == MPH_OK);
        check(mph_json_parse(P, out, n, n) == MPH_OK);
        check(mph_json_validate(P) == MPH_OK);
        mph_jsonw_reset(W2);
        check(rewrite(MPH_JSON_ROOT, W2) == MPH_OK);
        const char *out2;
        size_t n2;
        check(mph_jsonw_finish(W2, &out2, &n2) == MPH_OK);
        check(n == n2 && memcmp(out, out2, n) == 0);
    }
    /* Arbitrary operations, valid document or not. */
    if (perr == MPH_OK && mph_json_parse(P, padded, size, size + MPH_JSON_PADDING) == MPH_OK)
        random_ops(data, size);
    free(padded);
    (void)mph_json_utf8_valid(data, size);
    return 0;
}
