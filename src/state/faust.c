/*
 * Faust's changelog encoding (see state/faust.h for the forms).
 *
 * DESIGN: a pure translation between the bytes a shard holds and the bytes
 * faust-streaming's json serializer writes, with no state of its own but the
 * caller's scratch (a JSON parser and writers reused for every record, so
 * nothing is allocated per record once they have grown). It never trusts a
 * changelog record: anything that is not in the expected form is a decode
 * error naming what was expected, never a crash. The window prefix of a
 * storage key is the layout of runtime/window.h (8 bytes big-endian with the
 * sign bit flipped), repeated here because state/ may not include runtime/;
 * tests/unit/state/test_faust.c checks that both agree.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/codec.h"
#include "mephisto/json.h"
#include "mephisto/jsonw.h"
#include "state/faust.h"

#define WINDOW_PREFIX 8

typedef struct buf {
    unsigned char *p;
    size_t len, cap;
} buf_t;

struct mph__faust_scratch {
    mph_json_parser_t *parser;
    mph_jsonw_t *kw, *vw;
    buf_t kb, vb, sb;
};

static mph_err_t why(mph_err_t err, char *errbuf, size_t n, const char *fmt,
                     ...) MPH_PRINTF(4, 5);

static mph_err_t why(mph_err_t err, char *errbuf, size_t n, const char *fmt,
                     ...)
{
    if (errbuf && n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errbuf, n, fmt, ap);
        va_end(ap);
    }
    return err;
}

static mph_err_t buf_put(buf_t *b, const void *p, size_t n)
{
    if (b->len + n > b->cap || !b->p) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        unsigned char *q = realloc(b->p, cap);
        if (!q)
            return MPH_ERR_NOMEM;
        b->p = q;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
    return MPH_OK;
}

bool mph__faust_kind_of(const char *codec, mph__faust_kind_t *out)
{
    static const struct {
        const char *name;
        mph__faust_kind_t kind;
    } map[] = {{"raw", MPH__FAUST_RAW},
               {"string", MPH__FAUST_STRING},
               {"i64", MPH__FAUST_I64},
               {"json", MPH__FAUST_JSON},
               {"record", MPH__FAUST_JSON}};
    if (!codec) {
        *out = MPH__FAUST_RAW;
        return true;
    }
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(codec, map[i].name)) {
            *out = map[i].kind;
            return true;
        }
    return false;
}

mph_err_t mph__faust_fmt_check(const mph__faust_fmt_t *fmt, char *errbuf,
                               size_t n)
{
    if (fmt->window_ms > 0 && fmt->key == MPH__FAUST_RAW)
        return why(MPH_ERR_INVALID, errbuf, n,
                   "format=faust: a windowed table needs key_codec string, i64 "
                   "or json "
                   "(Faust writes the bytes key of a windowed table as its "
                   "Python repr, "
                   "which does not read back)");
    if (fmt->ns && fmt->value != MPH__FAUST_JSON)
        return why(
            MPH_ERR_INVALID, errbuf, n,
            "faust_namespace: only for tables whose value_codec is json");
    return MPH_OK;
}

mph__faust_scratch_t *mph__faust_scratch_new(void)
{
    mph__faust_scratch_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->parser = mph_json_parser_new(0, NULL, 0);
    s->kw = mph_jsonw_new(256, NULL, 0);
    s->vw = mph_jsonw_new(256, NULL, 0);
    if (!s->parser || !s->kw || !s->vw) {
        mph__faust_scratch_destroy(s);
        return NULL;
    }
    return s;
}

void mph__faust_scratch_destroy(mph__faust_scratch_t *s)
{
    if (!s)
        return;
    mph_json_parser_destroy(s->parser);
    mph_jsonw_destroy(s->kw);
    mph_jsonw_destroy(s->vw);
    free(s->kb.p);
    free(s->vb.p);
    free(s->sb.p);
    free(s);
}

/* --- writing ------------------------------------------------------------ */

/* The next code point of UTF-8 p[0..n) at *i (advanced); -1 when invalid
 * (the whole string was validated first, so only as a guard). */
static long utf8_next(const unsigned char *p, size_t n, size_t *i)
{
    unsigned char c = p[*i];
    int len = c < 0x80             ? 1
              : (c & 0xe0) == 0xc0 ? 2
              : (c & 0xf0) == 0xe0 ? 3
              : (c & 0xf8) == 0xf0 ? 4
                                   : 0;
    if (!len || *i + (size_t)len > n)
        return -1;
    long cp = len == 1   ? c
              : len == 2 ? (c & 0x1f)
              : len == 3 ? (c & 0x0f)
                         : (c & 0x07);
    for (int k = 1; k < len; k++)
        cp = cp << 6 | (p[*i + (size_t)k] & 0x3f);
    *i += (size_t)len;
    return cp;
}

/* A JSON string as Python's json.dumps writes it (ensure_ascii, Faust's
 * default without orjson): ASCII only, \uXXXX (lowercase hex, surrogate
 * pairs above U+FFFF) for the rest, so that a key mephisto writes is the
 * same Kafka key as Faust's and compaction replaces it. */
static mph_err_t write_str_ascii(mph__faust_scratch_t *s, mph_jsonw_t *w,
                                 const void *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *b = p;
    if (!mph_json_utf8_valid(p, n))
        return MPH_ERR_UTF8;
    s->sb.len = 0;
    mph_err_t err = buf_put(&s->sb, "\"", 1);
    for (size_t i = 0; !err && i < n;) {
        unsigned char c = b[i];
        const char *esc = c == '"'    ? "\\\""
                          : c == '\\' ? "\\\\"
                          : c == '\n' ? "\\n"
                          : c == '\r' ? "\\r"
                          : c == '\t' ? "\\t"
                          : c == '\b' ? "\\b"
                          : c == '\f' ? "\\f"
                                      : NULL;
        if (esc) {
            err = buf_put(&s->sb, esc, 2);
            i++;
            continue;
        }
        if (c >= 0x20 && c < 0x7f) {
            err = buf_put(&s->sb, &b[i++], 1);
            continue;
        }
        long cp = utf8_next(b, n, &i);
        if (cp < 0)
            return MPH_ERR_UTF8;
        unsigned units[2] = {(unsigned)cp, 0};
        int nu = 1;
        if (cp > 0xffff) {
            cp -= 0x10000;
            units[0] = 0xd800 | (unsigned)(cp >> 10);
            units[1] = 0xdc00 | (unsigned)(cp & 0x3ff);
            nu = 2;
        }
        for (int u = 0; !err && u < nu; u++) {
            char e[6] = {'\\',
                         'u',
                         hex[units[u] >> 12 & 15],
                         hex[units[u] >> 8 & 15],
                         hex[units[u] >> 4 & 15],
                         hex[units[u] & 15]};
            err = buf_put(&s->sb, e, 6);
        }
    }
    if (!err)
        err = buf_put(&s->sb, "\"", 1);
    if (!err)
        err = mph_jsonw_raw(w, (const char *)s->sb.p, s->sb.len);
    return err;
}

/* Writes one scalar of kind (not raw) as a JSON value into w. */
static mph_err_t write_scalar(mph__faust_scratch_t *s, mph_jsonw_t *w,
                              mph__faust_kind_t kind, const void *p, size_t n,
                              const char *what, char *errbuf, size_t en)
{
    mph_err_t err;
    switch (kind) {
    case MPH__FAUST_STRING:
        err = write_str_ascii(s, w, p, n);
        if (err == MPH_ERR_UTF8)
            return why(err, errbuf, en,
                       "format=faust: %s is not valid UTF-8 (string codec)",
                       what);
        return err;
    case MPH__FAUST_I64: {
        int64_t v;
        if (mph__codec_i64_decode(p, n, &v) != MPH_OK)
            return why(MPH_ERR_TYPE, errbuf, en,
                       "format=faust: %s of %zu bytes is not an i64 (8 bytes)",
                       what, n);
        return mph_jsonw_i64(w, v);
    }
    case MPH__FAUST_JSON:
        err = mph_jsonw_raw(w, p, n);
        if (err)
            return why(err, errbuf, en,
                       "format=faust: %s is not one JSON value", what);
        return MPH_OK;
    case MPH__FAUST_RAW:
        break;
    }
    return why(MPH_ERR_INVALID, errbuf, en,
               "format=faust: %s: bytes have no JSON form", what);
}

mph_err_t mph__faust_key_encode(const mph__faust_fmt_t *fmt,
                                mph__faust_scratch_t *s, const void *key,
                                size_t klen, const void **out, size_t *outlen,
                                char *errbuf, size_t en)
{
    const unsigned char *k = key;
    if (fmt->window_ms <= 0 && fmt->key == MPH__FAUST_RAW) {
        *out = key;
        *outlen = klen;
        return MPH_OK;
    }
    mph_jsonw_reset(s->kw);
    mph_err_t err;
    if (fmt->window_ms > 0) {
        if (klen < WINDOW_PREFIX)
            return MPH_ERR_NOENT; /* the window meta key */
        uint64_t u = 0;
        for (int i = 0; i < WINDOW_PREFIX; i++)
            u = u << 8 | k[i];
        u ^= UINT64_C(1) << 63;
        int64_t start;
        memcpy(&start, &u, sizeof start);
        double start_s = (double)start / 1000.0;
        /* As Faust computes it: end = start + size - 0.1, in float seconds. */
        double end_s = start_s + (double)fmt->window_ms / 1000.0 - 0.1;
        if ((err = mph_jsonw_array_begin(s->kw)) ||
            (err = write_scalar(s, s->kw, fmt->key, k + WINDOW_PREFIX,
                                klen - WINDOW_PREFIX, "key", errbuf, en)) ||
            (err = mph_jsonw_array_begin(s->kw)) ||
            (err = mph_jsonw_f64(s->kw, start_s)) ||
            (err = mph_jsonw_f64(s->kw, end_s)) ||
            (err = mph_jsonw_array_end(s->kw)) ||
            (err = mph_jsonw_array_end(s->kw)))
            return err;
    } else if ((err = write_scalar(s, s->kw, fmt->key, key, klen, "key", errbuf,
                                   en))) {
        return err;
    }
    const char *j;
    if ((err = mph_jsonw_finish(s->kw, &j, outlen)))
        return err;
    *out = j;
    return MPH_OK;
}

/* val + "__faust":{"ns":...} as its last member, when val is an object that
 * lacks one. */
static mph_err_t add_namespace(const mph__faust_fmt_t *fmt,
                               mph__faust_scratch_t *s, const void *val,
                               size_t vlen, const void **out, size_t *outlen,
                               char *errbuf, size_t en)
{
    mph_json_type_t type;
    mph_json_val_t v;
    size_t count;
    mph_err_t err = mph_json_parse(s->parser, val, vlen, vlen);
    if (!err)
        err = mph_json_validate(s->parser);
    if (err)
        return why(MPH_ERR_TYPE, errbuf, en,
                   "format=faust: a json value is not valid JSON");
    if (mph_json_type(s->parser, MPH_JSON_ROOT, &type) ||
        type != MPH_JSON_OBJECT ||
        mph_json_field(s->parser, MPH_JSON_ROOT, "__faust", 7, &v) !=
            MPH_ERR_NOENT ||
        mph_json_count(s->parser, MPH_JSON_ROOT, &count)) {
        *out = val; /* not a record, or it carries its namespace already */
        *outlen = vlen;
        return MPH_OK;
    }
    const char *p = val;
    size_t end = vlen;
    while (end > 0 && p[end - 1] != '}')
        end--;
    if (end == 0)
        return why(MPH_ERR_TYPE, errbuf, en,
                   "format=faust: a json object without '}'");
    mph_jsonw_reset(s->vw);
    const char *ns;
    size_t nslen;
    if ((err = mph_jsonw_str(s->vw, fmt->ns, strlen(fmt->ns))) ||
        (err = mph_jsonw_finish(s->vw, &ns, &nslen)))
        return err;
    s->vb.len = 0;
    static const char member[] = "\"__faust\":{\"ns\":";
    if ((err = buf_put(&s->vb, p, end - 1)) ||
        (count && (err = buf_put(&s->vb, ",", 1))) ||
        (err = buf_put(&s->vb, member, sizeof member - 1)) ||
        (err = buf_put(&s->vb, ns, nslen)) || (err = buf_put(&s->vb, "}}", 2)))
        return err;
    *out = s->vb.p;
    *outlen = s->vb.len;
    return MPH_OK;
}

mph_err_t mph__faust_value_encode(const mph__faust_fmt_t *fmt,
                                  mph__faust_scratch_t *s, const void *val,
                                  size_t vlen, const void **out, size_t *outlen,
                                  char *errbuf, size_t en)
{
    if (fmt->value == MPH__FAUST_RAW ||
        (fmt->value == MPH__FAUST_JSON && !fmt->ns)) {
        *out = val;
        *outlen = vlen;
        return MPH_OK;
    }
    if (fmt->value == MPH__FAUST_JSON)
        return add_namespace(fmt, s, val, vlen, out, outlen, errbuf, en);
    mph_jsonw_reset(s->vw);
    mph_err_t err =
        write_scalar(s, s->vw, fmt->value, val, vlen, "value", errbuf, en);
    const char *j;
    if (!err)
        err = mph_jsonw_finish(s->vw, &j, outlen);
    if (!err)
        *out = j;
    return err;
}

/* --- reading ------------------------------------------------------------ */

static const char *kind_name(mph__faust_kind_t k)
{
    return k == MPH__FAUST_STRING ? "a JSON string"
           : k == MPH__FAUST_I64  ? "a JSON integer"
                                  : "a JSON value";
}

/* Appends value v of the parser's document, read as kind, to b. */
static mph_err_t read_scalar(mph__faust_scratch_t *s, mph_json_val_t v,
                             mph__faust_kind_t kind, buf_t *b, const char *what,
                             char *errbuf, size_t en)
{
    const char *str;
    size_t n;
    int64_t i;
    mph_err_t err;
    switch (kind) {
    case MPH__FAUST_STRING:
        if (mph_json_str(s->parser, v, &str, &n))
            break;
        return buf_put(b, str, n);
    case MPH__FAUST_I64: {
        if ((err = mph_json_i64(s->parser, v, &i)))
            break;
        unsigned char be[MPH_CODEC_I64_SIZE];
        mph__codec_i64_encode(i, be);
        return buf_put(b, be, sizeof be);
    }
    case MPH__FAUST_JSON:
        if (mph_json_raw(s->parser, v, &str, &n))
            break;
        return buf_put(b, str, n);
    case MPH__FAUST_RAW:
        return why(MPH_ERR_INVALID, errbuf, en,
                   "format=faust: %s: bytes have no JSON form", what);
    }
    return why(MPH_ERR_DECODE, errbuf, en, "format=faust: %s is not %s", what,
               kind_name(kind));
}

static mph_err_t parse(mph__faust_scratch_t *s, const void *p, size_t n,
                       const char *what, char *errbuf, size_t en)
{
    mph_err_t err = mph_json_parse(s->parser, p, n, n);
    if (!err)
        err = mph_json_validate(s->parser);
    if (err)
        return why(MPH_ERR_DECODE, errbuf, en,
                   "format=faust: %s is not JSON (%s)", what,
                   mph_json_last_error(s->parser));
    return MPH_OK;
}

/* Float seconds -> integer ms, rounded; false when out of range. */
static bool seconds_to_ms(double sec, int64_t *ms)
{
    double x = sec * 1000.0;
    if (!(x > -9.0e15 && x < 9.0e15))
        return false;
    *ms = (int64_t)(x + (x >= 0 ? 0.5 : -0.5));
    return true;
}

mph_err_t mph__faust_key_decode(const mph__faust_fmt_t *fmt,
                                mph__faust_scratch_t *s, const void *key,
                                size_t klen, const void **out, size_t *outlen,
                                char *errbuf, size_t en)
{
    if (fmt->window_ms <= 0 && fmt->key == MPH__FAUST_RAW) {
        *out = key;
        *outlen = klen;
        return MPH_OK;
    }
    mph_err_t err = parse(s, key, klen, "key", errbuf, en);
    if (err)
        return err;
    s->kb.len = 0;
    if (fmt->window_ms <= 0) {
        if ((err = read_scalar(s, MPH_JSON_ROOT, fmt->key, &s->kb, "key",
                               errbuf, en)))
            return err;
        *out = s->kb.p;
        *outlen = s->kb.len;
        return MPH_OK;
    }
    /* [key, [start, end]] */
    mph_json_val_t k, range, start;
    double start_s;
    int64_t start_ms;
    size_t n;
    if (mph_json_count(s->parser, MPH_JSON_ROOT, &n) || n != 2 ||
        mph_json_index(s->parser, MPH_JSON_ROOT, 0, &k))
        return why(MPH_ERR_DECODE, errbuf, en,
                   "format=faust: a windowed key is not [key, [start, end]]");
    unsigned char prefix[WINDOW_PREFIX] = {0};
    if ((err = buf_put(&s->kb, prefix, sizeof prefix)) ||
        (err = read_scalar(s, k, fmt->key, &s->kb, "the key of a windowed key",
                           errbuf, en)))
        return err;
    if (mph_json_index(s->parser, MPH_JSON_ROOT, 1, &range) ||
        mph_json_index(s->parser, range, 0, &start) ||
        mph_json_f64(s->parser, start, &start_s) ||
        !seconds_to_ms(start_s, &start_ms))
        return why(MPH_ERR_DECODE, errbuf, en,
                   "format=faust: a windowed key is not [key, [start, end]] "
                   "with start in "
                   "seconds");
    uint64_t u;
    memcpy(&u, &start_ms, sizeof u);
    u ^= UINT64_C(1) << 63;
    for (int i = 0; i < WINDOW_PREFIX; i++)
        s->kb.p[i] = (unsigned char)(u >> (56 - 8 * i));
    *out = s->kb.p;
    *outlen = s->kb.len;
    return MPH_OK;
}

mph_err_t mph__faust_value_decode(const mph__faust_fmt_t *fmt,
                                  mph__faust_scratch_t *s, const void *val,
                                  size_t vlen, const void **out, size_t *outlen,
                                  char *errbuf, size_t en)
{
    if (fmt->value == MPH__FAUST_RAW) {
        *out = val;
        *outlen = vlen;
        return MPH_OK;
    }
    mph_err_t err = parse(s, val, vlen, "value", errbuf, en);
    if (err)
        return err;
    if (fmt->value == MPH__FAUST_JSON) {
        /* Kept as written, "__faust" included: record types skip it. */
        *out = val;
        *outlen = vlen;
        return MPH_OK;
    }
    s->vb.len = 0;
    if ((err = read_scalar(s, MPH_JSON_ROOT, fmt->value, &s->vb, "value",
                           errbuf, en)))
        return err;
    *out = s->vb.p;
    *outlen = s->vb.len;
    return MPH_OK;
}
