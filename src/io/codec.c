/* Codecs of topic keys and values: see io/codec.h. */
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "mephisto/json.h"
#include "io/codec.h"
#include "io/record.h"

static const char *const NAMES[] = {"raw", "string", "json",
                                    "i64", "record", "user"};

static pthread_mutex_t users_lock = PTHREAD_MUTEX_INITIALIZER;
static mph__codec_user_t *users;

static bool user_known(const char *name)
{
    bool found = false;
    pthread_mutex_lock(&users_lock);
    for (mph__codec_user_t *e = users; e && !found; e = e->next)
        found = !strcmp(e->name, name);
    pthread_mutex_unlock(&users_lock);
    return found;
}

mph_err_t mph__codec_lookup(const char *name, mph_codec_t *out, char *errbuf,
                            size_t errbuf_size)
{
    if (name == NULL || out == NULL)
        return MPH_ERR_INVALID;
    if (!strcmp(name, "user") || !strcmp(name, "record"))
        goto unknown;
    for (int c = MPH_CODEC_RAW; c <= MPH_CODEC_I64; c++) {
        if (strcmp(name, NAMES[c]) == 0) {
            *out = (mph_codec_t)c;
            return MPH_OK;
        }
    }
    if (user_known(name)) {
        *out = MPH_CODEC_USER;
        return MPH_OK;
    }
unknown:
    if (errbuf != NULL && errbuf_size > 0)
        snprintf(errbuf, errbuf_size,
                 "unknown codec '%s' (known: raw, string, json, i64, or one "
                 "registered with "
                 "mph_codec_register)",
                 name);
    return MPH_ERR_NOENT;
}

mph_err_t mph__codec_user_add(const void *owner, const char *name,
                              mph_codec_decode_fn *decode,
                              mph_codec_encode_fn *encode, void *opaque,
                              mph__codec_user_t **out)
{
    if (!owner || !name || !*name || strlen(name) > 100 || (!decode && !encode))
        return MPH_ERR_INVALID;
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
              (*c >= '0' && *c <= '9') || *c == '_' || *c == '-' || *c == '.'))
            return MPH_ERR_INVALID;
    for (int c = MPH_CODEC_RAW; c <= MPH_CODEC_USER; c++)
        if (!strcmp(name, NAMES[c]))
            return MPH_ERR_EXISTS;
    if (mph__codec_user_find(owner, name))
        return MPH_ERR_EXISTS;
    mph__codec_user_t *e = calloc(1, sizeof *e);
    if (!e || !(e->name = strdup(name))) {
        free(e);
        return MPH_ERR_NOMEM;
    }
    e->owner = owner;
    e->decode = decode;
    e->encode = encode;
    e->opaque = opaque;
    pthread_mutex_lock(&users_lock);
    e->next = users;
    users = e;
    pthread_mutex_unlock(&users_lock);
    *out = e;
    return MPH_OK;
}

void mph__codec_user_remove(mph__codec_user_t *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&users_lock);
    for (mph__codec_user_t **pp = &users; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    pthread_mutex_unlock(&users_lock);
    free(e->name);
    free(e);
}

const mph__codec_user_t *mph__codec_user_find(const void *owner,
                                              const char *name)
{
    const mph__codec_user_t *found = NULL;
    pthread_mutex_lock(&users_lock);
    for (mph__codec_user_t *e = users; e && !found; e = e->next)
        if (e->owner == owner && !strcmp(e->name, name))
            found = e;
    pthread_mutex_unlock(&users_lock);
    return found;
}

mph_err_t mph_codec_out_append(mph_codec_out_t *out, const void *bytes,
                               size_t len)
{
    if (!out || (!bytes && len))
        return MPH_ERR_INVALID;
    if (out->len + len > out->cap || !out->p) {
        size_t cap = out->cap ? out->cap : 256;
        while (cap < out->len + len)
            cap *= 2;
        unsigned char *p = realloc(out->p, cap);
        if (!p)
            return MPH_ERR_NOMEM;
        out->p = p;
        out->cap = cap;
    }
    if (len)
        memcpy(out->p + out->len, bytes, len);
    out->len += len;
    return MPH_OK;
}

const char *mph__codec_name(mph_codec_t codec)
{
    if ((int)codec < MPH_CODEC_RAW || codec > MPH_CODEC_USER)
        return "?";
    return NAMES[codec];
}

static mph_err_t reason(mph_err_t err, char *errbuf, size_t errbuf_size,
                        const char *fmt, ...) MPH_PRINTF(4, 5);

static mph_err_t reason(mph_err_t err, char *errbuf, size_t errbuf_size,
                        const char *fmt, ...)
{
    if (errbuf != NULL && errbuf_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errbuf, errbuf_size, fmt, ap);
        va_end(ap);
    }
    return err;
}

static mph_err_t validate_json(mph_json_parser_t *p, const void *bytes,
                               size_t len, char *errbuf, size_t errbuf_size)
{
    mph_err_t err = mph_json_parse(p, bytes, len, len);
    if (err == MPH_OK)
        err = mph_json_validate(p);
    if (err == MPH_OK)
        return MPH_OK;
    if (err == MPH_ERR_RANGE)
        return reason(
            MPH_ERR_DECODE, errbuf, errbuf_size,
            "JSON document of %zu bytes is larger than the parser's limit",
            len);
    if (err == MPH_ERR_NOMEM)
        return reason(err, errbuf, errbuf_size, "out of memory");
    const char *what =
        err == MPH_ERR_UTF8 ? "invalid UTF-8 in JSON" : "invalid JSON";
    size_t off = mph_json_last_error_offset(p);
    if (off != SIZE_MAX)
        return reason(err, errbuf, errbuf_size, "%s at byte %zu: %s", what, off,
                      mph_json_last_error(p));
    return reason(err, errbuf, errbuf_size, "%s: %s", what,
                  mph_json_last_error(p));
}

mph_err_t mph__codec_validate(mph_codec_t codec,
                              const mph_record_type_t *record_type,
                              mph_json_parser_t *parser, const void *bytes,
                              size_t len, char *errbuf, size_t errbuf_size)
{
    if (errbuf != NULL && errbuf_size > 0)
        errbuf[0] = '\0';
    if (bytes == NULL && len > 0)
        return reason(MPH_ERR_INVALID, errbuf, errbuf_size, "NULL bytes");
    switch (codec) {
    case MPH_CODEC_RAW:
        return MPH_OK;
    case MPH_CODEC_STRING:
        if (mph_json_utf8_valid(bytes, len))
            return MPH_OK;
        return reason(MPH_ERR_UTF8, errbuf, errbuf_size,
                      "string codec: invalid UTF-8");
    case MPH_CODEC_JSON:
        if (parser == NULL)
            return reason(MPH_ERR_INVALID, errbuf, errbuf_size,
                          "json codec needs a parser");
        return validate_json(parser, bytes, len, errbuf, errbuf_size);
    case MPH_CODEC_I64:
        if (len == MPH_CODEC_I64_SIZE)
            return MPH_OK;
        return reason(MPH_ERR_DECODE, errbuf, errbuf_size,
                      "i64 codec: expected 8 bytes, got %zu", len);
    case MPH_CODEC_USER:
        return reason(
            MPH_ERR_INVALID, errbuf, errbuf_size,
            "a registered codec is checked with its own decode function");
    case MPH_CODEC_RECORD:
        if (parser == NULL || record_type == NULL)
            return reason(MPH_ERR_INVALID, errbuf, errbuf_size,
                          "record codec needs a parser and a record type");
        return mph__record_validate(record_type, parser, bytes, len, errbuf,
                                    errbuf_size);
    }
    return reason(MPH_ERR_INVALID, errbuf, errbuf_size, "unknown codec %d",
                  (int)codec);
}

void mph__codec_i64_encode(int64_t v, unsigned char out[MPH_CODEC_I64_SIZE])
{
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < MPH_CODEC_I64_SIZE; i++)
        out[i] = (unsigned char)(u >> (56 - 8 * i));
}

mph_err_t mph__codec_i64_decode(const void *bytes, size_t len, int64_t *out)
{
    if ((bytes == NULL && len > 0) || out == NULL)
        return MPH_ERR_INVALID;
    if (len != MPH_CODEC_I64_SIZE)
        return MPH_ERR_DECODE;
    const unsigned char *b = bytes;
    uint64_t u = 0;
    for (int i = 0; i < MPH_CODEC_I64_SIZE; i++)
        u = u << 8 | b[i];
    int64_t v;
    memcpy(&v, &u, sizeof v);
    *out = v;
    return MPH_OK;
}
