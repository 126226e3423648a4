/*
 * JSON writer: see include/mephisto/jsonw.h.
 *
 * DESIGN
 *
 * The writer keeps one byte of state per open container (is it an object,
 * does it have members yet, is a key waiting for its value) and decides
 * commas and colons from it. Every call first checks that it is allowed and
 * reserves all the bytes it will write, then writes and updates the state,
 * so a failing call changes nothing.
 *
 * Integers and strings are formatted by hand: they are on the per-event
 * path, and printf is slow and locale-dependent. Doubles use snprintf with
 * "%.15g", "%.16g", "%.17g" in turn and keep the first that strtod reads
 * back exactly; that is the shortest round-tripping form, because any
 * decimal of at most 15 significant digits that rounds to a normal double is
 * what %.15g prints for it (half an ulp is below half a unit of the 15th
 * digit). Subnormals have fewer significant bits and get a binary search
 * over the precision instead. Both calls run under the "C" locale (uselocale),
 * so a process locale with a decimal comma cannot leak into the JSON.
 */
#include <float.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mephisto/json.h"
#include "mephisto/jsonw.h"

enum {
    F_OBJECT = 1, /* the container is an object (else an array) */
    F_ITEMS = 2,  /* it has at least one member/element: next needs a comma */
    F_KEY = 4     /* object: a key was written, its value is due */
};

struct mph_jsonw {
    char *buf;
    size_t len, cap;
    unsigned depth;
    bool done; /* the top-level value is complete */
    unsigned char frames[MPH_JSONW_MAX_DEPTH];
};

/* Escape of each byte: 0 none, 'u' as \u00XX, else the letter after '\'. */
static const unsigned char ESC[256] = {
    ['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't',
    [0x00] = 'u', [0x01] = 'u', [0x02] = 'u', [0x03] = 'u', [0x04] = 'u',
    [0x05] = 'u', [0x06] = 'u', [0x07] = 'u', [0x0b] = 'u', [0x0e] = 'u',
    [0x0f] = 'u', [0x10] = 'u', [0x11] = 'u', [0x12] = 'u', [0x13] = 'u',
    [0x14] = 'u', [0x15] = 'u', [0x16] = 'u', [0x17] = 'u', [0x18] = 'u',
    [0x19] = 'u', [0x1a] = 'u', [0x1b] = 'u', [0x1c] = 'u', [0x1d] = 'u',
    [0x1e] = 'u', [0x1f] = 'u', ['"'] = '"',  ['\\'] = '\\'};

static const char HEX[] = "0123456789abcdef";
static const char B64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

mph_jsonw_t *mph_jsonw_new(size_t initial_capacity, char *errstr,
                           size_t errstr_size)
{
    mph_jsonw_t *w = calloc(1, sizeof *w);
    if (w == NULL)
        goto fail;
    w->cap = initial_capacity ? initial_capacity : 256;
    w->buf = malloc(w->cap);
    if (w->buf == NULL)
        goto free_writer;
    return w;
free_writer:
    free(w);
fail:
    if (errstr != NULL && errstr_size > 0)
        snprintf(errstr, errstr_size, "out of memory");
    return NULL;
}

void mph_jsonw_destroy(mph_jsonw_t *w)
{
    if (w == NULL)
        return;
    free(w->buf);
    free(w);
}

void mph_jsonw_reset(mph_jsonw_t *w)
{
    if (w == NULL)
        return;
    w->len = 0;
    w->depth = 0;
    w->done = false;
}

/* Room for extra more bytes. */
static mph_err_t reserve(mph_jsonw_t *w, size_t extra)
{
    if (extra > SIZE_MAX / 2 - w->len)
        return MPH_ERR_NOMEM;
    size_t need = w->len + extra;
    if (need <= w->cap)
        return MPH_OK;
    size_t ncap = w->cap ? w->cap : 256;
    while (ncap < need)
        ncap *= 2;
    char *nb = realloc(w->buf, ncap);
    if (nb == NULL)
        return MPH_ERR_NOMEM;
    w->buf = nb;
    w->cap = ncap;
    return MPH_OK;
}

/* May a value come now? *comma: whether a ',' must precede it. */
static mph_err_t value_allowed(const mph_jsonw_t *w, size_t *comma)
{
    if (w->depth == 0) {
        *comma = 0;
        return w->done ? MPH_ERR_STATE : MPH_OK;
    }
    unsigned char f = w->frames[w->depth - 1];
    if (f & F_OBJECT) {
        *comma = 0; /* written with the key */
        return (f & F_KEY) ? MPH_OK : MPH_ERR_STATE;
    }
    *comma = (f & F_ITEMS) ? 1 : 0;
    return MPH_OK;
}

/* State after a complete value (scalar or closed container). */
static void value_written(mph_jsonw_t *w)
{
    if (w->depth == 0) {
        w->done = true;
        return;
    }
    unsigned char *f = &w->frames[w->depth - 1];
    if (*f & F_OBJECT)
        *f &= (unsigned char)~F_KEY;
    else
        *f |= F_ITEMS;
}

/* Writes a scalar's bytes (already known) with its comma. */
static mph_err_t put_scalar(mph_jsonw_t *w, const char *text, size_t n)
{
    size_t comma;
    mph_err_t err = value_allowed(w, &comma);
    if (err == MPH_OK)
        err = reserve(w, comma + n);
    if (err)
        return err;
    if (comma)
        w->buf[w->len++] = ',';
    memcpy(w->buf + w->len, text, n);
    w->len += n;
    value_written(w);
    return MPH_OK;
}

/* Length of s once escaped, quotes excluded. */
static size_t escaped_len(const unsigned char *s, size_t n)
{
    size_t out = n;
    for (size_t i = 0; i < n; i++) {
        unsigned char e = ESC[s[i]];
        if (e)
            out += e == 'u' ? 5 : 1;
    }
    return out;
}

/* Writes "s" escaped; room was reserved. */
static void put_quoted(mph_jsonw_t *w, const unsigned char *s, size_t n,
                       size_t esc_len)
{
    char *o = w->buf + w->len;
    *o++ = '"';
    if (esc_len == n) {
        if (n > 0)
            memcpy(o, s, n);
        o += n;
    } else {
        for (size_t i = 0; i < n; i++) {
            unsigned char c = s[i], e = ESC[c];
            if (!e) {
                *o++ = (char)c;
            } else if (e == 'u') {
                memcpy(o, "\\u00", 4);
                o[4] = HEX[c >> 4];
                o[5] = HEX[c & 15];
                o += 6;
            } else {
                o[0] = '\\';
                o[1] = (char)e;
                o += 2;
            }
        }
    }
    *o++ = '"';
    w->len = (size_t)(o - w->buf);
}

static mph_err_t check_text(const char *s, size_t n)
{
    if (s == NULL && n > 0)
        return MPH_ERR_INVALID;
    return mph_json_utf8_valid(s, n) ? MPH_OK : MPH_ERR_UTF8;
}

static mph_err_t begin(mph_jsonw_t *w, bool object)
{
    if (w == NULL)
        return MPH_ERR_INVALID;
    size_t comma;
    mph_err_t err = value_allowed(w, &comma);
    if (err)
        return err;
    if (w->depth >= MPH_JSONW_MAX_DEPTH)
        return MPH_ERR_RANGE;
    if ((err = reserve(w, comma + 1)) != MPH_OK)
        return err;
    if (comma)
        w->buf[w->len++] = ',';
    w->buf[w->len++] = object ? '{' : '[';
    w->frames[w->depth++] = object ? F_OBJECT : 0;
    return MPH_OK;
}

static mph_err_t end(mph_jsonw_t *w, bool object)
{
    if (w == NULL)
        return MPH_ERR_INVALID;
    if (w->depth == 0)
        return MPH_ERR_STATE;
    unsigned char f = w->frames[w->depth - 1];
    if (((f & F_OBJECT) != 0) != object || (f & F_KEY))
        return MPH_ERR_STATE;
    mph_err_t err = reserve(w, 1);
    if (err)
        return err;
    w->buf[w->len++] = object ? '}' : ']';
    w->depth--;
    value_written(w);
    return MPH_OK;
}

mph_err_t mph_jsonw_object_begin(mph_jsonw_t *w)
{
    return begin(w, true);
}

mph_err_t mph_jsonw_object_end(mph_jsonw_t *w)
{
    return end(w, true);
}

mph_err_t mph_jsonw_array_begin(mph_jsonw_t *w)
{
    return begin(w, false);
}

mph_err_t mph_jsonw_array_end(mph_jsonw_t *w)
{
    return end(w, false);
}

mph_err_t mph_jsonw_key(mph_jsonw_t *w, const char *key, size_t len)
{
    if (w == NULL || (key == NULL && len > 0))
        return MPH_ERR_INVALID;
    if (w->depth == 0)
        return MPH_ERR_STATE;
    unsigned char *f = &w->frames[w->depth - 1];
    if (!(*f & F_OBJECT) || (*f & F_KEY))
        return MPH_ERR_STATE;
    mph_err_t err = check_text(key, len);
    if (err)
        return err;
    const unsigned char *k = (const unsigned char *)key;
    size_t esc = escaped_len(k, len);
    size_t comma = (*f & F_ITEMS) ? 1 : 0;
    if ((err = reserve(w, comma + esc + 3)) != MPH_OK)
        return err;
    if (comma)
        w->buf[w->len++] = ',';
    put_quoted(w, k, len, esc);
    w->buf[w->len++] = ':';
    *f |= F_KEY | F_ITEMS;
    return MPH_OK;
}

mph_err_t mph_jsonw_str(mph_jsonw_t *w, const char *s, size_t len)
{
    if (w == NULL || (s == NULL && len > 0))
        return MPH_ERR_INVALID;
    size_t comma;
    mph_err_t err = value_allowed(w, &comma);
    if (err == MPH_OK)
        err = check_text(s, len);
    if (err)
        return err;
    const unsigned char *u = (const unsigned char *)s;
    size_t esc = escaped_len(u, len);
    if ((err = reserve(w, comma + esc + 2)) != MPH_OK)
        return err;
    if (comma)
        w->buf[w->len++] = ',';
    put_quoted(w, u, len, esc);
    value_written(w);
    return MPH_OK;
}

/* Decimal digits of v at the end of buf[0..20); returns the first. */
static char *format_u64(char buf[20], uint64_t v)
{
    char *p = buf + 20;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return p;
}

mph_err_t mph_jsonw_u64(mph_jsonw_t *w, uint64_t v)
{
    if (w == NULL)
        return MPH_ERR_INVALID;
    char buf[20];
    char *p = format_u64(buf, v);
    return put_scalar(w, p, (size_t)(buf + 20 - p));
}

mph_err_t mph_jsonw_i64(mph_jsonw_t *w, int64_t v)
{
    if (w == NULL)
        return MPH_ERR_INVALID;
    char buf[21];
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    char *p = format_u64(buf + 1, mag);
    if (v < 0)
        *--p = '-';
    return put_scalar(w, p, (size_t)(buf + 21 - p));
}

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void)
{
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

mph_err_t mph_jsonw_f64(mph_jsonw_t *w, double v)
{
    if (w == NULL)
        return MPH_ERR_INVALID;
    if (!isfinite(v))
        return MPH_ERR_RANGE;
    pthread_once(&c_locale_once, c_locale_init);
    if (c_locale == (locale_t)0)
        return MPH_ERR_NOMEM;
    char buf[320]; /* %.17g needs at most 24; sized for what the compiler can prove */
    int n = 0;
    locale_t old = uselocale(c_locale);
    if (v != 0 && fabs(v) < DBL_MIN) {
        /* Subnormal: fewer significant bits, so the shortest form may have
         * fewer than 15 digits without %.15g printing it. Round-tripping is
         * monotonic in the precision: binary search the smallest. */
        int lo = 1, hi = 17;
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            snprintf(buf, sizeof buf - 2, "%.*g", mid, v);
            if (strtod(buf, NULL) == v)
                hi = mid;
            else
                lo = mid + 1;
        }
        n = snprintf(buf, sizeof buf - 2, "%.*g", lo, v);
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            n = snprintf(buf, sizeof buf - 2, "%.*g", prec, v);
            if (strtod(buf, NULL) == v)
                break;
        }
    }
    uselocale(old);
    if (n <= 0 || (size_t)n >= sizeof buf - 2)
        return MPH_ERR_INTERNAL;
    if (strpbrk(buf, ".e") == NULL) {
        buf[n++] = '.';
        buf[n++] = '0';
    }
    return put_scalar(w, buf, (size_t)n);
}

mph_err_t mph_jsonw_bool(mph_jsonw_t *w, bool v)
{
    if (w == NULL)
        return MPH_ERR_INVALID;
    return v ? put_scalar(w, "true", 4) : put_scalar(w, "false", 5);
}

mph_err_t mph_jsonw_null(mph_jsonw_t *w)
{
    if (w == NULL)
        return MPH_ERR_INVALID;
    return put_scalar(w, "null", 4);
}

mph_err_t mph_jsonw_base64(mph_jsonw_t *w, const void *bytes, size_t len)
{
    if (w == NULL || (bytes == NULL && len > 0))
        return MPH_ERR_INVALID;
    if (len > (SIZE_MAX / 2) / 4 * 3)
        return MPH_ERR_NOMEM;
    size_t comma;
    mph_err_t err = value_allowed(w, &comma);
    size_t out = (len + 2) / 3 * 4;
    if (err == MPH_OK)
        err = reserve(w, comma + out + 2);
    if (err)
        return err;
    if (comma)
        w->buf[w->len++] = ',';
    const unsigned char *b = bytes;
    char *o = w->buf + w->len;
    *o++ = '"';
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t x = (uint32_t)b[i] << 16 | (uint32_t)b[i + 1] << 8 | b[i + 2];
        o[0] = B64[x >> 18];
        o[1] = B64[(x >> 12) & 63];
        o[2] = B64[(x >> 6) & 63];
        o[3] = B64[x & 63];
        o += 4;
    }
    if (i < len) {
        uint32_t x = (uint32_t)b[i] << 16;
        if (i + 1 < len)
            x |= (uint32_t)b[i + 1] << 8;
        o[0] = B64[x >> 18];
        o[1] = B64[(x >> 12) & 63];
        o[2] = i + 1 < len ? B64[(x >> 6) & 63] : '=';
        o[3] = '=';
        o += 4;
    }
    *o++ = '"';
    w->len = (size_t)(o - w->buf);
    value_written(w);
    return MPH_OK;
}

mph_err_t mph_jsonw_raw(mph_jsonw_t *w, const char *json, size_t len)
{
    if (w == NULL || json == NULL || len == 0)
        return MPH_ERR_INVALID;
    return put_scalar(w, json, len);
}

bool mph_jsonw_complete(const mph_jsonw_t *w)
{
    return w != NULL && w->done && w->depth == 0;
}

const char *mph_jsonw_data(const mph_jsonw_t *w, size_t *len)
{
    if (w == NULL) {
        if (len != NULL)
            *len = 0;
        return "";
    }
    if (len != NULL)
        *len = w->len;
    return w->buf;
}

mph_err_t mph_jsonw_finish(const mph_jsonw_t *w, const char **json, size_t *len)
{
    if (w == NULL || json == NULL || len == NULL)
        return MPH_ERR_INVALID;
    if (!mph_jsonw_complete(w))
        return MPH_ERR_STATE;
    *json = w->buf;
    *len = w->len;
    return MPH_OK;
}
