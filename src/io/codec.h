/*
 * io/codec.h — the codecs of topic keys and values (internal: the runtime
 * calls these; users name a codec by string in topic options).
 *
 *   raw      any bytes (including none)
 *   string   UTF-8 text, validated
 *   json     exactly one well-formed JSON document (fully validated)
 *   i64      exactly 8 bytes, a big-endian two's complement int64, as Kafka's
 *            LongSerializer writes it
 *   record   a JSON object that decodes with a record type (mephisto/record.h)
 *
 * mph__codec_validate() is the dead-letter decision: MPH_OK, or an error code
 * with a short human reason in errbuf (the mph.error header of a
 * dead-lettered record).
 *
 * Thread safety: all functions may be called from any thread; validate uses
 * the given parser, which belongs to the calling thread.
 */
#ifndef MPH_IO_CODEC_H
#define MPH_IO_CODEC_H

#include "mephisto/common.h"
#include "mephisto/json.h"
#include "mephisto/record.h"
#include "mephisto/codec.h"

typedef enum mph_codec {
    MPH_CODEC_RAW = 0,
    MPH_CODEC_STRING = 1,
    MPH_CODEC_JSON = 2,
    MPH_CODEC_I64 = 3,
    MPH_CODEC_RECORD = 4,
    MPH_CODEC_USER = 5 /* registered with mph_codec_register */
} mph_codec_t;

/* Size of an i64-encoded value. */
#define MPH_CODEC_I64_SIZE 8

/* The codec called name ("raw", "string", "json", "i64", or MPH_CODEC_USER
 * for a name some app registered with mph_codec_register: which app's is
 * resolved where the app is known). MPH_ERR_NOENT with "unknown codec 'x'
 * (known: raw, string, json, i64, or one registered with
 * mph_codec_register)" in errbuf for any other name, MPH_ERR_INVALID for
 * NULL. Record codecs are not named: the
 * runtime uses MPH_CODEC_RECORD with the topic's record type. */
mph_err_t mph__codec_lookup(const char *name, mph_codec_t *out, char *errbuf,
                            size_t errbuf_size);

/* "raw", "string", "json", "i64", "record"; "?" for anything else. */
const char *mph__codec_name(mph_codec_t codec);

/* Whether bytes[0..len) is a valid value for codec. record_type is
 * required for MPH_CODEC_RECORD and ignored otherwise; parser is used by
 * json and record (and is left holding the document: after a successful
 * json validation its reader is rewound, ready for lookups without parsing
 * again). Errors: MPH_ERR_UTF8 (string), MPH_ERR_DECODE (json, i64 of
 * another size, record that is not JSON), MPH_ERR_SCHEMA (record),
 * MPH_ERR_NOMEM, MPH_ERR_INVALID (NULL bytes with len > 0, no parser or
 * record type where one is needed). errbuf (may be NULL) receives the reason
 * on error and "" on success. @locality owner of parser */
mph_err_t mph__codec_validate(mph_codec_t codec,
                              const mph_record_type_t *record_type,
                              mph_json_parser_t *parser, const void *bytes,
                              size_t len, char *errbuf, size_t errbuf_size);

/* v as 8 big-endian bytes (1 -> 00 00 00 00 00 00 00 01, -1 -> ff x 8). */
void mph__codec_i64_encode(int64_t v, unsigned char out[MPH_CODEC_I64_SIZE]);

/* The int64 of 8 big-endian bytes; MPH_ERR_DECODE when len != 8,
 * MPH_ERR_INVALID for NULL. */
mph_err_t mph__codec_i64_decode(const void *bytes, size_t len, int64_t *out);

/* --- user codecs (mph_codec_register, mephisto/codec.h) ---
 *
 * A process-wide list of (owner, name) entries, owner being the app that
 * registered them (opaque here: io does not know apps). Registration and
 * lookups happen while apps are declared (a mutex guards the list); the
 * worker then calls an entry's functions through the pointer its topic or
 * table resolved, without the list. */
typedef struct mph__codec_user {
    const void *owner;
    char *name;
    mph_codec_decode_fn *decode;
    mph_codec_encode_fn *encode;
    void *opaque;
    struct mph__codec_user *next;
} mph__codec_user_t;

/* Adds an entry; MPH_ERR_EXISTS when owner has name already or name is a
 * built-in codec, MPH_ERR_INVALID for a bad name, MPH_ERR_NOMEM. */
mph_err_t mph__codec_user_add(const void *owner, const char *name,
                              mph_codec_decode_fn *decode,
                              mph_codec_encode_fn *encode, void *opaque,
                              mph__codec_user_t **out);
/* Unlinks and frees e (NULL: no-op). */
void mph__codec_user_remove(mph__codec_user_t *e);
/* owner's entry called name, or NULL. */
const mph__codec_user_t *mph__codec_user_find(const void *owner,
                                              const char *name);

/* The bytes an encode function appends to. */
struct mph_codec_out {
    unsigned char *p;
    size_t len, cap;
};

#endif /* MPH_IO_CODEC_H */
