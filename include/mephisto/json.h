/*
 * mephisto/json.h — reading JSON: simdjson's on-demand parser behind a C API.
 *
 * A parser (mph_json_parser_t) is owned by one thread and reused for every
 * document that thread reads; after the first few documents it allocates
 * nothing. mph_json_parse() indexes a document (simdjson "stage 1": UTF-8
 * and string structure are checked for the whole input); values are then
 * read lazily, only where the caller looks:
 *
 *     mph_json_parse(p, buf, len, len);            // copies: buf unpadded
 *     mph_json_get_str(p, MPH_JSON_ROOT, "user", &s, &n);
 *     mph_json_get_i64(p, MPH_JSON_ROOT, "page", &page);
 *     mph_json_get_str(p, MPH_JSON_ROOT, "items.3.name", &s, &n);
 *
 * Because reading is lazy, a document that is malformed where nobody looks
 * (e.g. {"user":"a","junk":[tru]}) is not reported by lookups that do not
 * cross the bad part. mph_json_validate() walks the whole document once when
 * that matters (the `json` codec does; a record decode checks everything it
 * reads and every field it skips).
 *
 * ## Values and handles
 *
 * A value is named by an mph_json_val_t handle. MPH_JSON_ROOT is the root of
 * the current document; other handles come from lookups (mph_json_find,
 * mph_json_field, mph_json_index) and iteration (mph_json_object_next,
 * mph_json_array_next). simdjson's on-demand API reads forward only, so a
 * handle stays usable only while the reader has not left it. The rule:
 *
 *   Every lookup or iteration step on a value v (and on MPH_JSON_ROOT) ends
 *   the life of all handles previously obtained through v, whether or not the
 *   step succeeds. Handles to v and to v's ancestors stay valid.
 *
 * Using a handle after that returns MPH_ERR_STATE (detection is by a serial
 * number in the handle, so it never reads a stale position). Lookups on the
 * same object may come in any order: fields are found with simdjson's
 * find_field_unordered(), which searches from the current position to the
 * end of the object and then wraps around to its start. Cost: fields in
 * document order cost one forward scan in total; each out-of-order lookup
 * rescans the object from where the reader stands (values are skipped by
 * their structure, not parsed). An array index lookup continues from the
 * last element obtained from that array, or restarts at element 0 for a
 * smaller index: reading elements in increasing order is linear in total,
 * random order costs O(index) each.
 *
 * Field names in lookups are compared with the key as written in the JSON
 * text: a key spelled with escapes ("\u0070age") is not found by "page".
 * Iteration returns keys unescaped. A name in a lookup may not contain '"' or
 * '\' (MPH_ERR_INVALID).
 *
 * Paths are field names joined by '.', e.g. "user.address.city"; a segment
 * made of digits indexes an array ("items.3.name") and names a field when the
 * value is an object. The empty path names the value itself. Fields whose
 * names contain '.' are reached with mph_json_field().
 *
 * ## Strings
 *
 * Strings come back as pointer + length, not NUL-terminated, valid UTF-8 with
 * escapes resolved. They are borrowed until the next mph_json_parse() with
 * this parser or mph_json_parser_destroy(); a string without escapes points
 * into the parsed bytes (the caller's buffer when parsed in place, so that
 * buffer must stay alive as long), a string with escapes into an arena of the
 * parser that is reused from one document to the next.
 *
 * ## Errors
 *
 * simdjson's errors become mph_err_t: MPH_ERR_DECODE malformed JSON,
 * MPH_ERR_UTF8 invalid UTF-8, MPH_ERR_NOENT missing field or array index out
 * of bounds, MPH_ERR_TYPE a value of another type than asked, MPH_ERR_RANGE a
 * number that does not fit the type asked (or a document larger than the
 * parser's limit, or nesting deeper than MPH_JSON_MAX_DEPTH), MPH_ERR_STATE a
 * stale handle or no document parsed, MPH_ERR_INVALID a bad argument or path,
 * MPH_ERR_NOMEM. After MPH_ERR_DECODE or MPH_ERR_UTF8 the document is
 * poisoned: every later call on it returns the same error until the next
 * parse. mph_json_last_error() says more about the last error. No C++
 * exception ever leaves these functions.
 *
 * Thread safety: a parser and everything read from it belong to the thread
 * that uses it (@locality the thread that owns the parser; typically one
 * parser per worker thread). Different parsers may be used concurrently.
 * mph_json_utf8_valid() may be called from any thread.
 */
#ifndef MEPHISTO_JSON_H
#define MEPHISTO_JSON_H

#include "mephisto/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes that must be readable (any content) after a document for it to be
 * parsed in place without a copy. Equal to simdjson's SIMDJSON_PADDING. */
#define MPH_JSON_PADDING 64

/* Deepest nesting a lookup or mph_json_validate() follows. */
#define MPH_JSON_MAX_DEPTH 256

/* Document size limit of a parser created with max_doc_bytes 0. */
#define MPH_JSON_DEFAULT_MAX_DOC ((size_t)64 << 20)

/* The functions of this header never throw; C++ callers see noexcept. */
#ifndef MPH_NOEXCEPT
#ifdef __cplusplus
#define MPH_NOEXCEPT noexcept
#else
#define MPH_NOEXCEPT
#endif
#endif

typedef struct mph_json_parser mph_json_parser_t;

/* A value of the current document. An integer handle, not a pointer: copy it
 * freely; its validity is defined above. */
typedef uint64_t mph_json_val_t;

/* The root value of the current document. */
#define MPH_JSON_ROOT ((mph_json_val_t)0)

typedef enum mph_json_type {
    MPH_JSON_NULL = 1,
    MPH_JSON_BOOL = 2,
    MPH_JSON_NUMBER = 3,
    MPH_JSON_STRING = 4,
    MPH_JSON_ARRAY = 5,
    MPH_JSON_OBJECT = 6
} mph_json_type_t;

/* A new parser for documents of at most max_doc_bytes (0: the default,
 * MPH_JSON_DEFAULT_MAX_DOC). Owned; destroy with mph_json_parser_destroy().
 * NULL with a message in errstr when out of memory.
 * @locality any (the new parser then belongs to one thread at a time) */
MPH_EXPORT mph_json_parser_t *
mph_json_parser_new(size_t max_doc_bytes, char *errstr,
                    size_t errstr_size) MPH_NOEXCEPT;

/* Frees the parser; everything borrowed from it dies. NULL is a no-op. */
MPH_EXPORT void mph_json_parser_destroy(mph_json_parser_t *p) MPH_NOEXCEPT;

/* Parses buf[0..len) as the parser's current document, ending the previous
 * one (all its handles and strings). readable is how many bytes starting at
 * buf may be read: when readable >= len + MPH_JSON_PADDING the document is
 * parsed in place (buf is borrowed until the next parse and must not change),
 * otherwise it is copied into the parser's own padded buffer (grown as
 * needed, kept for the next documents). buf is never written.
 * Errors: MPH_ERR_DECODE (empty or malformed input found by indexing),
 * MPH_ERR_UTF8, MPH_ERR_RANGE (len above the parser's limit), MPH_ERR_NOMEM,
 * MPH_ERR_INVALID (NULL p, or NULL buf with len > 0, or readable < len).
 * @locality owner of p */
MPH_EXPORT mph_err_t mph_json_parse(mph_json_parser_t *p, const void *buf,
                                    size_t len, size_t readable) MPH_NOEXCEPT;

/* True when the current document was parsed in place (no copy). */
MPH_EXPORT bool
mph_json_parsed_in_place(const mph_json_parser_t *p) MPH_NOEXCEPT;

/* Checks that the whole current document is exactly one well-formed JSON
 * value: every token, string escape and number, nesting at most
 * MPH_JSON_MAX_DEPTH, nothing but whitespace after it. Cost: one pass over
 * all values. Afterwards the reader is rewound: all handles but
 * MPH_JSON_ROOT end, lookups start afresh, strings already returned stay
 * valid. Errors: MPH_ERR_DECODE, MPH_ERR_UTF8, MPH_ERR_STATE (nothing
 * parsed), MPH_ERR_NOMEM. @locality owner of p */
MPH_EXPORT mph_err_t mph_json_validate(mph_json_parser_t *p) MPH_NOEXCEPT;

/* Lookups. from is MPH_JSON_ROOT or a valid handle; *out receives the handle
 * of the value found and is untouched on error. */

/* The value at path below from (see "Paths" above). MPH_ERR_NOENT missing
 * field or index, MPH_ERR_TYPE a segment applied to a scalar or a non-digit
 * segment to an array, MPH_ERR_INVALID an empty segment ("a..b") or a
 * segment containing '"' or '\'. */
MPH_EXPORT mph_err_t mph_json_find(mph_json_parser_t *p, mph_json_val_t from,
                                   const char *path,
                                   mph_json_val_t *out) MPH_NOEXCEPT;
/* The field named name[0..name_len) of object obj (any bytes but '"' and
 * '\', '.' included). MPH_ERR_TYPE when obj is not an object. */
MPH_EXPORT mph_err_t mph_json_field(mph_json_parser_t *p, mph_json_val_t obj,
                                    const char *name, size_t name_len,
                                    mph_json_val_t *out) MPH_NOEXCEPT;
/* Element index of array arr. MPH_ERR_NOENT past the end, MPH_ERR_TYPE when
 * arr is not an array. */
MPH_EXPORT mph_err_t mph_json_index(mph_json_parser_t *p, mph_json_val_t arr,
                                    size_t index,
                                    mph_json_val_t *out) MPH_NOEXCEPT;

/* Reading a value. Outputs are written only on success. */

MPH_EXPORT mph_err_t mph_json_type(mph_json_parser_t *p, mph_json_val_t v,
                                   mph_json_type_t *out) MPH_NOEXCEPT;
/* A string value (see "Strings" for the lifetime). */
MPH_EXPORT mph_err_t mph_json_str(mph_json_parser_t *p, mph_json_val_t v,
                                  const char **s, size_t *len) MPH_NOEXCEPT;
/* An integer that fits int64_t: MPH_ERR_TYPE for 1.5 or 1e3, MPH_ERR_RANGE
 * beyond the range. */
MPH_EXPORT mph_err_t mph_json_i64(mph_json_parser_t *p, mph_json_val_t v,
                                  int64_t *out) MPH_NOEXCEPT;
/* An integer that fits uint64_t: MPH_ERR_RANGE for negative or too large. */
MPH_EXPORT mph_err_t mph_json_u64(mph_json_parser_t *p, mph_json_val_t v,
                                  uint64_t *out) MPH_NOEXCEPT;
/* Any number, as the nearest double. MPH_ERR_DECODE when it is out of the
 * double range (1e400). */
MPH_EXPORT mph_err_t mph_json_f64(mph_json_parser_t *p, mph_json_val_t v,
                                  double *out) MPH_NOEXCEPT;
MPH_EXPORT mph_err_t mph_json_bool(mph_json_parser_t *p, mph_json_val_t v,
                                   bool *out) MPH_NOEXCEPT;
/* *out = whether v is null (MPH_OK either way for well-formed values). */
MPH_EXPORT mph_err_t mph_json_is_null(mph_json_parser_t *p, mph_json_val_t v,
                                      bool *out) MPH_NOEXCEPT;
/* The JSON text of v, without surrounding whitespace, borrowed like a
 * string. For an array or object this reads to its end (its iteration and
 * the handles obtained through it end). The text is not validated. */
MPH_EXPORT mph_err_t mph_json_raw(mph_json_parser_t *p, mph_json_val_t v,
                                  const char **s, size_t *len) MPH_NOEXCEPT;
/* Number of elements of an array or fields of an object (one scan; ends the
 * handles obtained through v and restarts its iteration). */
MPH_EXPORT mph_err_t mph_json_count(mph_json_parser_t *p, mph_json_val_t v,
                                    size_t *out) MPH_NOEXCEPT;

/* Lookup and read in one call: mph_json_find(p, from, path) then the read.
 * path NULL or "" reads from itself. */
MPH_EXPORT mph_err_t mph_json_get_str(mph_json_parser_t *p, mph_json_val_t from,
                                      const char *path, const char **s,
                                      size_t *len) MPH_NOEXCEPT;
MPH_EXPORT mph_err_t mph_json_get_i64(mph_json_parser_t *p, mph_json_val_t from,
                                      const char *path,
                                      int64_t *out) MPH_NOEXCEPT;
MPH_EXPORT mph_err_t mph_json_get_u64(mph_json_parser_t *p, mph_json_val_t from,
                                      const char *path,
                                      uint64_t *out) MPH_NOEXCEPT;
MPH_EXPORT mph_err_t mph_json_get_f64(mph_json_parser_t *p, mph_json_val_t from,
                                      const char *path,
                                      double *out) MPH_NOEXCEPT;
MPH_EXPORT mph_err_t mph_json_get_bool(mph_json_parser_t *p,
                                       mph_json_val_t from, const char *path,
                                       bool *out) MPH_NOEXCEPT;
MPH_EXPORT mph_err_t mph_json_get_is_null(mph_json_parser_t *p,
                                          mph_json_val_t from, const char *path,
                                          bool *out) MPH_NOEXCEPT;
/* The array or object at path (MPH_ERR_TYPE if it is something else). */
MPH_EXPORT mph_err_t mph_json_get_array(mph_json_parser_t *p,
                                        mph_json_val_t from, const char *path,
                                        mph_json_val_t *out) MPH_NOEXCEPT;
MPH_EXPORT mph_err_t mph_json_get_object(mph_json_parser_t *p,
                                         mph_json_val_t from, const char *path,
                                         mph_json_val_t *out) MPH_NOEXCEPT;

/* Iteration. Each call yields the next field (key unescaped, borrowed like a
 * string) or element and returns MPH_OK, or returns MPH_ERR_NOENT after the
 * last one; the call after MPH_ERR_NOENT starts again at the first. The
 * handle yielded by one call ends with the next call on the same container.
 *
 *     while ((err = mph_json_object_next(p, obj, &k, &klen, &v)) == MPH_OK)
 *         ...;
 *     if (err != MPH_ERR_NOENT) ...the document is malformed...
 *
 * A lookup on an object in the middle of iterating it ends the iteration:
 * the next mph_json_object_next() returns MPH_ERR_STATE and the one after it
 * starts again. Array iteration and mph_json_index() share one position:
 * mph_json_array_next() yields the element after the last one obtained from
 * that array either way. */
MPH_EXPORT mph_err_t mph_json_object_next(mph_json_parser_t *p,
                                          mph_json_val_t obj, const char **key,
                                          size_t *key_len,
                                          mph_json_val_t *val) MPH_NOEXCEPT;
MPH_EXPORT mph_err_t mph_json_array_next(mph_json_parser_t *p,
                                         mph_json_val_t arr,
                                         mph_json_val_t *val) MPH_NOEXCEPT;

/* A static description of the parser's last error ("" after success), e.g.
 * "The JSON document has an improper structure: ...". Never NULL. */
MPH_EXPORT const char *
mph_json_last_error(const mph_json_parser_t *p) MPH_NOEXCEPT;

/* Byte offset in the document near which the last MPH_ERR_DECODE was
 * found, or SIZE_MAX when unknown. */
MPH_EXPORT size_t mph_json_last_error_offset(const mph_json_parser_t *p)
    MPH_NOEXCEPT;

/* True when buf[0..len) is valid UTF-8 (no overlong forms, no surrogates,
 * nothing above U+10FFFF). simdjson's validate_utf8. @locality any */
MPH_EXPORT bool mph_json_utf8_valid(const void *buf, size_t len) MPH_NOEXCEPT;

#ifdef __cplusplus
}
#endif
#endif /* MEPHISTO_JSON_H */
