/*
 * state/faust.h — the changelog records of a table with `format=faust`: keys
 * and values as faust-streaming's json serializer writes them, so that a
 * mephisto table can take over a Faust table's changelog and Faust can read
 * back what mephisto wrote (docs/migrating-from-faust.md).
 *
 * Only the changelog is in Faust's encoding: shards keep mephisto's own
 * forms (i64 values as 8 big-endian bytes, window starts as the 8-byte
 * prefix of window.h), so agents, lookups and the web see a format=faust
 * table like any other. Records are translated where they cross the
 * changelog: on produce (runtime/table.c) and on recovery (recovery.c).
 *
 * What Faust writes, by the mephisto codec of the table's keys and values:
 *
 *   codec    Faust type  changelog bytes
 *   raw      bytes       the bytes themselves (Faust skips serializers for
 *                        bytes keys and values)
 *   string   str         a JSON string: "word" (read back with any escapes;
 *                        written UTF-8 unescaped, as orjson does)
 *   i64      int         a JSON integer: 42 (8 big-endian bytes in the shard)
 *   json     any         the JSON document itself
 *   json     Record      with a namespace (table option faust_namespace): a
 *                        JSON object carrying Faust's "__faust": {"ns": ...}
 *                        member, which is ignored on read (kept in the shard;
 *                        record types skip unknown members) and kept on
 *                        write: an object that lacks it gets the namespace
 *                        added as its last member
 *
 * Windowed tables: Faust's key is the JSON array [key, [start, end]] with the
 * window bounds as float seconds, end = start + size - 0.1 (faust/types/
 * windows.py). Keys are then string, i64 or json (Faust writes a bytes key of
 * a windowed table as its Python repr, which does not read back). The
 * window's meta record (stream time, closing progress) has no Faust form
 * and is not written to a format=faust changelog; after a takeover stream
 * time starts again from the next event.
 *
 * Errors are MPH_ERR_DECODE (a changelog record that is not in this form:
 * recovery stops with the record's topic, partition and offset) or
 * MPH_ERR_UTF8 / MPH_ERR_TYPE (a value the table holds that has no Faust
 * form), with the reason in errbuf.
 *
 * Thread safety: a format is immutable once built and may be shared; a
 * scratch belongs to one thread (@locality owner of the scratch). Outputs
 * are borrowed from the scratch until its next call of the same kind
 * (key or value).
 */
#ifndef MPH_STATE_FAUST_H
#define MPH_STATE_FAUST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mephisto/common.h"

typedef enum mph__faust_kind {
    MPH__FAUST_RAW = 0,
    MPH__FAUST_STRING = 1,
    MPH__FAUST_I64 = 2,
    MPH__FAUST_JSON = 3
} mph__faust_kind_t;

typedef struct mph__faust_fmt {
    mph__faust_kind_t key, value;
    int64_t window_ms; /* > 0: a windowed table of windows this long */
    const char
        *ns; /* json values: record namespace added on write; NULL: none */
} mph__faust_fmt_t;

/* The kind of a mephisto codec name (NULL: raw); false for an unknown one
 * ("record" is json). */
bool mph__faust_kind_of(const char *codec, mph__faust_kind_t *out);

/* Whether fmt can be written and read: MPH_ERR_INVALID with the reason
 * ("windowed tables need key_codec string, i64 or json ...") otherwise. */
mph_err_t mph__faust_fmt_check(const mph__faust_fmt_t *fmt, char *errbuf,
                               size_t errbuf_size);

typedef struct mph__faust_scratch mph__faust_scratch_t;
/* NULL when out of memory. */
mph__faust_scratch_t *mph__faust_scratch_new(void);
void mph__faust_scratch_destroy(mph__faust_scratch_t *s);

/* A shard key as its changelog key. MPH_ERR_NOENT: the key has no Faust form
 * and is not written (a windowed table's meta key). */
mph_err_t mph__faust_key_encode(const mph__faust_fmt_t *fmt,
                                mph__faust_scratch_t *s, const void *key,
                                size_t klen, const void **out, size_t *outlen,
                                char *errbuf, size_t errbuf_size);
/* A shard value as its changelog value. */
mph_err_t mph__faust_value_encode(const mph__faust_fmt_t *fmt,
                                  mph__faust_scratch_t *s, const void *val,
                                  size_t vlen, const void **out, size_t *outlen,
                                  char *errbuf, size_t errbuf_size);
/* A changelog key as the shard key. */
mph_err_t mph__faust_key_decode(const mph__faust_fmt_t *fmt,
                                mph__faust_scratch_t *s, const void *key,
                                size_t klen, const void **out, size_t *outlen,
                                char *errbuf, size_t errbuf_size);
/* A changelog value (not a tombstone) as the shard value. */
mph_err_t mph__faust_value_decode(const mph__faust_fmt_t *fmt,
                                  mph__faust_scratch_t *s, const void *val,
                                  size_t vlen, const void **out, size_t *outlen,
                                  char *errbuf, size_t errbuf_size);

#endif
