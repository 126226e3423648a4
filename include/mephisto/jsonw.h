/*
 * mephisto/jsonw.h — writing JSON into a reusable buffer.
 *
 * A writer builds one JSON value at a time into a growable buffer that it
 * owns; mph_jsonw_reset() empties it without freeing, so a writer reused for
 * every event allocates nothing once the buffer is large enough. Commas and
 * colons are inserted automatically from the nesting the writer tracks:
 *
 *     mph_jsonw_object_begin(w);
 *     mph_jsonw_key(w, "user", 4);   mph_jsonw_str(w, user, user_len);
 *     mph_jsonw_key(w, "page", 4);   mph_jsonw_i64(w, page);
 *     mph_jsonw_key(w, "tags", 4);   mph_jsonw_array_begin(w);
 *         mph_jsonw_str(w, "a", 1);  mph_jsonw_str(w, "b", 1);
 *     mph_jsonw_array_end(w);
 *     mph_jsonw_object_end(w);
 *     mph_jsonw_finish(w, &json, &len);  //
 * {"user":"...","page":3,"tags":["a","b"]}
 *
 * Output is compact (no whitespace). Strings must be valid UTF-8 and are
 * passed through, with '"', '\' and control characters escaped (\n, \t, ...
 * or \u00XX). Integers and strings are formatted without printf. Doubles are
 * written in the shortest form that parses back to the same double, with
 * ".0" added to integral values so readers keep them as floats (3.0, 1e+300,
 * 5e-324, -0.0); NaN and infinities have no JSON form (MPH_ERR_RANGE).
 *
 * Errors leave the writer as it was before the call, so a caller may recover:
 * MPH_ERR_STATE for misuse (a value inside an object without a key, a key
 * outside an object, two keys in a row, closing the wrong or no container, a
 * second top-level value, finishing an incomplete value), MPH_ERR_UTF8 for a
 * string that is not valid UTF-8, MPH_ERR_RANGE for NaN/infinity or nesting
 * deeper than MPH_JSONW_MAX_DEPTH, MPH_ERR_NOMEM, MPH_ERR_INVALID for NULL
 * arguments (a NULL pointer with length 0 is an empty string).
 *
 * Thread safety: a writer belongs to one thread at a time
 * (@locality the thread that owns w).
 */
#ifndef MEPHISTO_JSONW_H
#define MEPHISTO_JSONW_H

#include "mephisto/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Deepest nesting of arrays and objects a writer accepts. */
#define MPH_JSONW_MAX_DEPTH 256

typedef struct mph_jsonw mph_jsonw_t;

/* A new empty writer whose buffer starts with initial_capacity bytes (0: a
 * small default). Owned; destroy with mph_jsonw_destroy(). NULL with a
 * message in errstr when out of memory. @locality any */
MPH_EXPORT mph_jsonw_t *mph_jsonw_new(size_t initial_capacity, char *errstr,
                                      size_t errstr_size);
/* NULL is a no-op. */
MPH_EXPORT void mph_jsonw_destroy(mph_jsonw_t *w);

/* Empties the writer for the next value; keeps the buffer. */
MPH_EXPORT void mph_jsonw_reset(mph_jsonw_t *w);

MPH_EXPORT mph_err_t mph_jsonw_object_begin(mph_jsonw_t *w);
MPH_EXPORT mph_err_t mph_jsonw_object_end(mph_jsonw_t *w);
MPH_EXPORT mph_err_t mph_jsonw_array_begin(mph_jsonw_t *w);
MPH_EXPORT mph_err_t mph_jsonw_array_end(mph_jsonw_t *w);

/* The key of the next member of the current object; escaped like a string.
 * The key bytes are copied. */
MPH_EXPORT mph_err_t mph_jsonw_key(mph_jsonw_t *w, const char *key, size_t len);

/* Values. Each is a top-level value, an array element, or the value of the
 * key written just before. Bytes passed in are copied. */
MPH_EXPORT mph_err_t mph_jsonw_str(mph_jsonw_t *w, const char *s, size_t len);
MPH_EXPORT mph_err_t mph_jsonw_i64(mph_jsonw_t *w, int64_t v);
MPH_EXPORT mph_err_t mph_jsonw_u64(mph_jsonw_t *w, uint64_t v);
MPH_EXPORT mph_err_t mph_jsonw_f64(mph_jsonw_t *w, double v);
MPH_EXPORT mph_err_t mph_jsonw_bool(mph_jsonw_t *w, bool v);
MPH_EXPORT mph_err_t mph_jsonw_null(mph_jsonw_t *w);
/* bytes[0..len) as a base64 string (RFC 4648 alphabet, with padding), the
 * JSON form of binary data. */
MPH_EXPORT mph_err_t mph_jsonw_base64(mph_jsonw_t *w, const void *bytes,
                                      size_t len);
/* A fragment of JSON text written as one value, as is. The caller
 * guarantees it is exactly one well-formed JSON value (it is not checked;
 * mph_json_validate() can check it first); MPH_ERR_INVALID when len is 0. */
MPH_EXPORT mph_err_t mph_jsonw_raw(mph_jsonw_t *w, const char *json,
                                   size_t len);

/* True when one complete top-level value has been written. */
MPH_EXPORT bool mph_jsonw_complete(const mph_jsonw_t *w);

/* The text written so far (not NUL-terminated), borrowed until the next
 * call that changes w. Usable at any time, e.g. for debugging. */
MPH_EXPORT const char *mph_jsonw_data(const mph_jsonw_t *w, size_t *len);

/* The finished value: MPH_ERR_STATE unless mph_jsonw_complete(w). The
 * text is borrowed until the next call that changes w. */
MPH_EXPORT mph_err_t mph_jsonw_finish(const mph_jsonw_t *w, const char **json,
                                      size_t *len);

#ifdef __cplusplus
}
#endif
#endif /* MEPHISTO_JSONW_H */
