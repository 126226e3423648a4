/*
 * mephisto/record.h — typed records (Faust's faust.Record) for JSON values.
 *
 * A record type names fields with a type, required or optional (with or
 * without a default), and limits:
 *
 *     mph_record_type_t *view = mph_record_type_new("PageView", err, sizeof
 * err); size_t f_user, f_page, f_ts, f_tags; mph_record_type_add(view, "user",
 * MPH_FIELD_STRING, &f_user); mph_record_type_set_max_len(view, f_user, 64);
 *     mph_record_type_add(view, "page", MPH_FIELD_I64, &f_page);
 *     mph_record_type_set_range_i64(view, f_page, 0, 1000000);
 *     mph_record_type_add(view, "ts", MPH_FIELD_TIMESTAMP, &f_ts);
 *     mph_record_type_add_array(view, "tags", MPH_FIELD_STRING, NULL, &f_tags);
 *     mph_record_type_set_optional(view, f_tags);
 *
 * Decoding validates a JSON value once against the type; afterwards fields
 * are read by index (looked up by name once, at setup) with typed getters:
 *
 *     mph_record_t *rec = NULL;    // allocated by the first decode, then
 * reused if (mph_record_decode(view, parser, bytes, len, &rec, err, sizeof
 * err))
 *         ...err is e.g. "page: 300 above max 150"...
 *     mph_record_get_str(rec, f_user, &user, &user_len);
 *     mph_record_get_i64(rec, f_page, &page);
 *
 * Field types and their JSON forms:
 *   MPH_FIELD_STRING     string (valid UTF-8; max_len counts bytes)
 *   MPH_FIELD_I64        integer number that fits int64_t (1.0 and 1e3 are
 *                        not integers)
 *   MPH_FIELD_F64        any number
 *   MPH_FIELD_BOOL       true / false
 *   MPH_FIELD_BYTES      base64 string (RFC 4648 alphabet, padding optional
 *                        when decoding, written with padding); max_len counts
 *                        decoded bytes
 *   MPH_FIELD_TIMESTAMP  ISO-8601 / RFC 3339 string with an offset
 *                        ("2026-11-27T04:00:00.123Z", "...T05:00:00+01:00";
 *                        fractions beyond milliseconds are truncated) or an
 *                        integer of epoch milliseconds; stored as epoch
 *                        milliseconds (int64), years 0000 to 9999 UTC;
 *                        written as "YYYY-MM-DDTHH:MM:SS.mmmZ"
 *   MPH_FIELD_RECORD     object decoded with another record type
 *   MPH_FIELD_ARRAY      array whose elements all have one of the types
 *                        above but ARRAY (no null elements); max_len
 *                        counts elements
 *
 * Fields are required unless made optional. A required field that is
 * missing or null is an error. An optional field that is missing or null
 * takes its default if it has one (and mph_record_has() is then true), else
 * it is absent (mph_record_has() false, getters MPH_ERR_NOENT). JSON members
 * that are not fields are ignored, but must still be well-formed; a JSON
 * object naming the same field twice is an error. Decoding a whole document
 * also rejects trailing content, so a decoded record implies a valid JSON
 * document.
 *
 * Errors of decoding are MPH_ERR_DECODE (not JSON), MPH_ERR_UTF8,
 * MPH_ERR_SCHEMA (valid JSON that breaks the type) and MPH_ERR_NOMEM, with a
 * message in errbuf naming the field path and the reason:
 * "page: required field missing", "user.age: 300 above max 150",
 * "items.3.name: expected string, got number".
 *
 * Memory: strings, bytes, arrays and nested records of a record live in an
 * arena owned by the record. Decoding copies strings there (they do not
 * borrow from the input or the parser: a record stays valid after the parser
 * moves on). Each decode into a record, and mph_record_clear(), recycles the
 * arena, so decoding every event into the same record allocates nothing once
 * the arena has grown to fit. Pointers returned by getters are borrowed until
 * the record is next decoded into, cleared or destroyed; setters copy what
 * they are given (repeated sets grow the arena until the next clear).
 *
 * Thread safety: build a type on one thread; once a record of it exists
 * (mph_record_new, a decode, or mph_record_type_freeze) the type is frozen,
 * immutable, and may be used from any thread at once. A record belongs to
 * one thread at a time (@locality the thread that owns the record). A type
 * must outlive its records and the types that nest it.
 */
#ifndef MEPHISTO_RECORD_H
#define MEPHISTO_RECORD_H

#include "mephisto/common.h"
#include "mephisto/json.h"
#include "mephisto/jsonw.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most fields a record type may have. */
#define MPH_RECORD_MAX_FIELDS 256

typedef struct mph_record_type mph_record_type_t;
typedef struct mph_record mph_record_t;

typedef enum mph_field_type {
    MPH_FIELD_STRING = 1,
    MPH_FIELD_I64 = 2,
    MPH_FIELD_F64 = 3,
    MPH_FIELD_BOOL = 4,
    MPH_FIELD_BYTES = 5,
    MPH_FIELD_TIMESTAMP = 6,
    MPH_FIELD_RECORD = 7,
    MPH_FIELD_ARRAY = 8
} mph_field_type_t;

/* ---- Record types (setup; @locality the thread building the type) ---- */

/* A new empty type; name (copied) appears in messages. Owned; destroy with
 * mph_record_type_destroy() after its records and the types nesting it.
 * NULL with errstr when out of memory or name is NULL/empty. */
MPH_EXPORT mph_record_type_t *
mph_record_type_new(const char *name, char *errstr, size_t errstr_size);
/* NULL is a no-op. */
MPH_EXPORT void mph_record_type_destroy(mph_record_type_t *type);

/* Adds a required field of a scalar type (STRING, I64, F64, BOOL, BYTES,
 * TIMESTAMP); *idx receives its index (fields are numbered 0, 1, ... in the
 * order added, which is also the order they are written in).
 * MPH_ERR_INVALID bad name (empty, not UTF-8, containing '"' or '\') or
 * type, MPH_ERR_EXISTS name taken, MPH_ERR_RANGE more than
 * MPH_RECORD_MAX_FIELDS, MPH_ERR_STATE the type is frozen, MPH_ERR_NOMEM. */
MPH_EXPORT mph_err_t mph_record_type_add(mph_record_type_t *type,
                                         const char *name,
                                         mph_field_type_t field_type,
                                         size_t *idx);
/* Adds a required field holding a record of type sub (borrowed: sub must
 * outlive type; it is frozen with type). */
MPH_EXPORT mph_err_t mph_record_type_add_record(mph_record_type_t *type,
                                                const char *name,
                                                const mph_record_type_t *sub,
                                                size_t *idx);
/* Adds a required array field whose elements have elem_type (any but
 * ARRAY); elem_sub is the record type of the elements when elem_type is
 * RECORD, else NULL. */
MPH_EXPORT mph_err_t mph_record_type_add_array(
    mph_record_type_t *type, const char *name, mph_field_type_t elem_type,
    const mph_record_type_t *elem_sub, size_t *idx);

/* Makes field idx optional (absent when missing or null). Errors for all
 * field modifiers: MPH_ERR_RANGE bad idx, MPH_ERR_STATE frozen,
 * MPH_ERR_TYPE the modifier does not apply to the field's type,
 * MPH_ERR_SCHEMA a default outside the field's limits (or limits that
 * exclude the default). */
MPH_EXPORT mph_err_t mph_record_type_set_optional(mph_record_type_t *type,
                                                  size_t idx);
/* Makes field idx optional with a default: I64 or TIMESTAMP (epoch ms). */
MPH_EXPORT mph_err_t mph_record_type_set_default_i64(mph_record_type_t *type,
                                                     size_t idx, int64_t value);
/* F64 (finite). */
MPH_EXPORT mph_err_t mph_record_type_set_default_f64(mph_record_type_t *type,
                                                     size_t idx, double value);
MPH_EXPORT mph_err_t mph_record_type_set_default_bool(mph_record_type_t *type,
                                                      size_t idx, bool value);
/* STRING (valid UTF-8) or BYTES; copied. */
MPH_EXPORT mph_err_t mph_record_type_set_default_str(mph_record_type_t *type,
                                                     size_t idx,
                                                     const char *value,
                                                     size_t len);
/* Most bytes of a STRING, decoded bytes of BYTES, elements of an ARRAY. */
MPH_EXPORT mph_err_t mph_record_type_set_max_len(mph_record_type_t *type,
                                                 size_t idx, size_t max_len);
/* Inclusive bounds of an I64 or TIMESTAMP (epoch ms) field. */
MPH_EXPORT mph_err_t mph_record_type_set_range_i64(mph_record_type_t *type,
                                                   size_t idx, int64_t min,
                                                   int64_t max);
/* Inclusive bounds of an F64 field. */
MPH_EXPORT mph_err_t mph_record_type_set_range_f64(mph_record_type_t *type,
                                                   size_t idx, double min,
                                                   double max);
/* The same limits for each element of an ARRAY field. */
MPH_EXPORT mph_err_t mph_record_type_set_elem_max_len(mph_record_type_t *type,
                                                      size_t idx,
                                                      size_t max_len);
MPH_EXPORT mph_err_t mph_record_type_set_elem_range_i64(mph_record_type_t *type,
                                                        size_t idx, int64_t min,
                                                        int64_t max);
MPH_EXPORT mph_err_t mph_record_type_set_elem_range_f64(mph_record_type_t *type,
                                                        size_t idx, double min,
                                                        double max);

/* Freezes type and the types it nests (idempotent). Records and decodes do
 * it themselves; call it before sharing a type between threads that only
 * decode. @locality any once frozen */
MPH_EXPORT void mph_record_type_freeze(mph_record_type_t *type);

/* ---- Type introspection (@locality any) ---- */

/* The index of the field called name: MPH_OK, or MPH_ERR_NOENT. Look
 * fields up once at setup, then use indexes per event. */
MPH_EXPORT mph_err_t mph_record_type_field(const mph_record_type_t *type,
                                           const char *name, size_t *idx);
MPH_EXPORT const char *mph_record_type_name(const mph_record_type_t *type);
MPH_EXPORT size_t mph_record_type_nfields(const mph_record_type_t *type);
/* Name of field idx (borrowed from the type), NULL if idx is out of range. */
MPH_EXPORT const char *mph_record_type_field_name(const mph_record_type_t *type,
                                                  size_t idx);
/* Type of field idx, 0 if idx is out of range. */
MPH_EXPORT mph_field_type_t
mph_record_type_field_type(const mph_record_type_t *type, size_t idx);

/* ---- Records ---- */

/* A new record of type: fields with a default hold it, others are absent.
 * Owned; destroy with mph_record_destroy(). NULL with errstr on failure.
 * Freezes type. */
MPH_EXPORT mph_record_t *mph_record_new(const mph_record_type_t *type,
                                        char *errstr, size_t errstr_size);
/* NULL is a no-op. */
MPH_EXPORT void mph_record_destroy(mph_record_t *rec);
/* Back to the state of mph_record_new(); recycles the arena. */
MPH_EXPORT void mph_record_clear(mph_record_t *rec);
MPH_EXPORT const mph_record_type_t *mph_record_type_of(const mph_record_t *rec);

/* Decodes the JSON document bytes[0..len) (copied into the parser, which it
 * uses as its current document) into *rec: a new record when *rec is NULL
 * (owned by the caller; on failure none is left), else *rec is reused, and
 * must be of this type (MPH_ERR_INVALID otherwise); after a failure its
 * contents are unspecified but it can be decoded into again. errbuf (may be
 * NULL) receives "<field path>: <reason>". Errors: see the top of this file,
 * and MPH_ERR_INVALID for NULL arguments. @locality owner of parser and rec */
MPH_EXPORT mph_err_t mph_record_decode(const mph_record_type_t *type,
                                       mph_json_parser_t *parser,
                                       const void *bytes, size_t len,
                                       mph_record_t **rec, char *errbuf,
                                       size_t errbuf_size);
/* The same from value v of the parser's current document (MPH_JSON_ROOT
 * after the caller's own mph_json_parse(), padded or not, or a nested
 * object). For MPH_JSON_ROOT trailing content is an error too. */
MPH_EXPORT mph_err_t mph_record_decode_value(const mph_record_type_t *type,
                                             mph_json_parser_t *parser,
                                             mph_json_val_t v,
                                             mph_record_t **rec, char *errbuf,
                                             size_t errbuf_size);

/* Writes rec as one JSON object value into w (a top-level value, array
 * element or member value, see jsonw.h): fields in declaration order,
 * absent optional fields left out. MPH_ERR_SCHEMA (with errbuf) when a
 * required field is absent, anywhere inside; then nothing is written.
 * Writer errors (MPH_ERR_STATE, MPH_ERR_NOMEM) leave w with a partial
 * value: reset it. @locality owner of rec and w */
MPH_EXPORT mph_err_t mph_record_encode(const mph_record_t *rec, mph_jsonw_t *w,
                                       char *errbuf, size_t errbuf_size);

/* True when both records have the same type and the same fields present
 * with equal values (doubles compared bit for bit). */
MPH_EXPORT bool mph_record_equal(const mph_record_t *a, const mph_record_t *b);

/* ---- Reading fields. Errors of every getter: MPH_ERR_RANGE bad idx (or
 * element index), MPH_ERR_TYPE the field has another type, MPH_ERR_NOENT
 * the field is absent. Outputs are written only on success. ---- */

/* Whether field idx holds a value (false also for a bad idx). */
MPH_EXPORT bool mph_record_has(const mph_record_t *rec, size_t idx);
/* STRING: UTF-8 bytes, not NUL-terminated. */
MPH_EXPORT mph_err_t mph_record_get_str(const mph_record_t *rec, size_t idx,
                                        const char **s, size_t *len);
/* BYTES: the decoded bytes. */
MPH_EXPORT mph_err_t mph_record_get_bytes(const mph_record_t *rec, size_t idx,
                                          const void **bytes, size_t *len);
/* I64, or TIMESTAMP (epoch ms). */
MPH_EXPORT mph_err_t mph_record_get_i64(const mph_record_t *rec, size_t idx,
                                        int64_t *out);
MPH_EXPORT mph_err_t mph_record_get_f64(const mph_record_t *rec, size_t idx,
                                        double *out);
MPH_EXPORT mph_err_t mph_record_get_bool(const mph_record_t *rec, size_t idx,
                                         bool *out);
/* TIMESTAMP only: epoch milliseconds. */
MPH_EXPORT mph_err_t mph_record_get_timestamp(const mph_record_t *rec,
                                              size_t idx, int64_t *epoch_ms);
/* RECORD: the nested record, borrowed from rec. */
MPH_EXPORT mph_err_t mph_record_get_record(const mph_record_t *rec, size_t idx,
                                           const mph_record_t **sub);

/* ARRAY fields: the length, then elements by index i. */
MPH_EXPORT mph_err_t mph_record_array_len(const mph_record_t *rec, size_t idx,
                                          size_t *len);
MPH_EXPORT mph_err_t mph_record_array_get_str(const mph_record_t *rec,
                                              size_t idx, size_t i,
                                              const char **s, size_t *len);
MPH_EXPORT mph_err_t mph_record_array_get_bytes(const mph_record_t *rec,
                                                size_t idx, size_t i,
                                                const void **bytes,
                                                size_t *len);
/* I64 or TIMESTAMP elements. */
MPH_EXPORT mph_err_t mph_record_array_get_i64(const mph_record_t *rec,
                                              size_t idx, size_t i,
                                              int64_t *out);
MPH_EXPORT mph_err_t mph_record_array_get_f64(const mph_record_t *rec,
                                              size_t idx, size_t i,
                                              double *out);
MPH_EXPORT mph_err_t mph_record_array_get_bool(const mph_record_t *rec,
                                               size_t idx, size_t i, bool *out);
MPH_EXPORT mph_err_t mph_record_array_get_record(const mph_record_t *rec,
                                                 size_t idx, size_t i,
                                                 const mph_record_t **sub);

/* By name: a field lookup (linear in the number of fields) and the getter.
 * For code that reads a field once; per event, use indexes. MPH_ERR_NOENT
 * also for an unknown name. */
MPH_EXPORT mph_err_t mph_record_get_str_by_name(const mph_record_t *rec,
                                                const char *name,
                                                const char **s, size_t *len);
MPH_EXPORT mph_err_t mph_record_get_i64_by_name(const mph_record_t *rec,
                                                const char *name, int64_t *out);
MPH_EXPORT mph_err_t mph_record_get_f64_by_name(const mph_record_t *rec,
                                                const char *name, double *out);
MPH_EXPORT mph_err_t mph_record_get_bool_by_name(const mph_record_t *rec,
                                                 const char *name, bool *out);
MPH_EXPORT mph_err_t mph_record_get_record_by_name(const mph_record_t *rec,
                                                   const char *name,
                                                   const mph_record_t **sub);

/* ---- Building records. Setters check the field's type and limits:
 * MPH_ERR_RANGE bad idx, MPH_ERR_TYPE wrong type, MPH_ERR_SCHEMA outside
 * the limits, MPH_ERR_UTF8 invalid string, MPH_ERR_RANGE NaN/infinity or a
 * timestamp outside years 0000-9999, MPH_ERR_NOMEM. On error the field is
 * unchanged. ---- */

MPH_EXPORT mph_err_t mph_record_set_str(mph_record_t *rec, size_t idx,
                                        const char *s, size_t len);
MPH_EXPORT mph_err_t mph_record_set_bytes(mph_record_t *rec, size_t idx,
                                          const void *bytes, size_t len);
/* I64, or TIMESTAMP (as mph_record_set_timestamp). */
MPH_EXPORT mph_err_t mph_record_set_i64(mph_record_t *rec, size_t idx,
                                        int64_t value);
MPH_EXPORT mph_err_t mph_record_set_f64(mph_record_t *rec, size_t idx,
                                        double value);
MPH_EXPORT mph_err_t mph_record_set_bool(mph_record_t *rec, size_t idx,
                                         bool value);
MPH_EXPORT mph_err_t mph_record_set_timestamp(mph_record_t *rec, size_t idx,
                                              int64_t epoch_ms);
/* RECORD: replaces the field with a new nested record (defaults applied)
 * and gives it back to be filled; it belongs to rec. */
MPH_EXPORT mph_err_t mph_record_set_record(mph_record_t *rec, size_t idx,
                                           mph_record_t **sub);
/* Makes the field absent, or gives it back its default. */
MPH_EXPORT mph_err_t mph_record_unset(mph_record_t *rec, size_t idx);

/* ARRAY: replaces the field with an array of len elements (zero, empty
 * string/bytes, false, or new nested records with their defaults), to be
 * set one by one. */
MPH_EXPORT mph_err_t mph_record_set_array(mph_record_t *rec, size_t idx,
                                          size_t len);
MPH_EXPORT mph_err_t mph_record_array_set_str(mph_record_t *rec, size_t idx,
                                              size_t i, const char *s,
                                              size_t len);
MPH_EXPORT mph_err_t mph_record_array_set_bytes(mph_record_t *rec, size_t idx,
                                                size_t i, const void *bytes,
                                                size_t len);
/* I64 or TIMESTAMP elements. */
MPH_EXPORT mph_err_t mph_record_array_set_i64(mph_record_t *rec, size_t idx,
                                              size_t i, int64_t value);
MPH_EXPORT mph_err_t mph_record_array_set_f64(mph_record_t *rec, size_t idx,
                                              size_t i, double value);
MPH_EXPORT mph_err_t mph_record_array_set_bool(mph_record_t *rec, size_t idx,
                                               size_t i, bool value);
/* The nested record of element i, to be filled (it belongs to rec). */
MPH_EXPORT mph_err_t mph_record_array_edit_record(mph_record_t *rec, size_t idx,
                                                  size_t i, mph_record_t **sub);

/* ---- Timestamps ---- */

/* Parses an ISO-8601 / RFC 3339 timestamp with offset into epoch ms (the
 * rules of MPH_FIELD_TIMESTAMP). MPH_ERR_INVALID if it is not one,
 * MPH_ERR_RANGE outside years 0000-9999. @locality any */
MPH_EXPORT mph_err_t mph_record_timestamp_parse(const char *s, size_t len,
                                                int64_t *epoch_ms);
/* Writes epoch_ms as "YYYY-MM-DDTHH:MM:SS.mmmZ" (24 bytes, no NUL) into
 * out. MPH_ERR_RANGE outside years 0000-9999. @locality any */
MPH_EXPORT mph_err_t mph_record_timestamp_format(int64_t epoch_ms,
                                                 char out[24]);

#ifdef __cplusplus
}
#endif
#endif /* MEPHISTO_RECORD_H */
