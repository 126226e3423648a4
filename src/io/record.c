/*
 * Record types and records: see include/mephisto/record.h.
 *
 * DESIGN
 *
 * A type is an array of field definitions (name, spec, optional/default)
 * plus its field indexes sorted by name for lookups. It is built on one
 * thread and frozen (a ck_pr flag) when first used; a frozen type is never
 * written again, so decoders on many threads share it without locks.
 *
 * A record is one allocation: the record header, one value slot per field
 * and a presence bitmap. Everything else it holds (string copies, decoded
 * bytes, arrays, nested records, which have the same layout) comes from an
 * arena owned by the top-level record. Decoding into a record recycles the
 * arena first: after a few events the arena is as large as the largest event
 * needs (when it grew, the recycle merges its chunks into one), and decoding
 * allocates nothing more. Defaults of strings and bytes point into the type,
 * which outlives its records, so they are not copied.
 *
 * Decoding walks the JSON object once with the shim's iteration
 * (mph_json_object_next), matches each key to a field (the next declared
 * field first, since producers usually write fields in order, then a binary
 * search), reads the value with the field's typed reader and checks the
 * limits. Members that are not fields are validated with
 * mph__json_check_value() and dropped, and the end of the document is
 * checked, so a successful decode implies a well-formed document. The same
 * walk runs without a record to validate only (the codecs' dead-letter
 * decision). Messages are formatted only on error, from a stack of the
 * field names and array indexes being decoded.
 */
#include <ck_pr.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mephisto/json.h"
#include "mephisto/jsonw.h"
#include "mephisto/record.h"
#include "io/json.h"
#include "io/record.h"

/* Epoch milliseconds of 0000-01-01T00:00:00.000Z and
 * 9999-12-31T23:59:59.999Z. */
#define TS_MIN (-62167219200000LL)
#define TS_MAX (253402300799999LL)

/* What a value must be: a field, or the elements of an array field. */
struct spec {
    mph_field_type_t type;
    const mph_record_type_t *sub; /* RECORD */
    bool has_max_len;
    bool has_irange;
    bool has_frange;
    size_t max_len;
    int64_t imin, imax;
    double fmin, fmax;
};

struct field {
    char *name;
    size_t name_len;
    struct spec s; /* the field (type ARRAY for arrays) */
    struct spec e; /* the elements of an ARRAY field */
    bool optional;
    bool has_default;
    int64_t dflt_i; /* I64, TIMESTAMP */
    double dflt_f;
    bool dflt_b;
    char *dflt_s; /* STRING, BYTES: owned */
    size_t dflt_n;
};

struct mph_record_type {
    char *name;
    struct field *fields;
    size_t nfields;
    size_t cap;
    size_t *by_name; /* field indexes sorted by (name_len, name) */
    uint8_t frozen;  /* ck_pr */
};

union val {
    int64_t i;
    double f;
    bool b;
    struct {
        const char *p;
        size_t n;
    } s;
    mph_record_t *r;
    struct {
        union val *v;
        size_t n;
    } a;
};

struct chunk {
    struct chunk *next;
    size_t cap;
    size_t used;
    size_t pad; /* keeps the data after the header 16-byte aligned */
};

struct arena {
    struct chunk *head;
    struct chunk *cur;
};

struct mph_record {
    const mph_record_type_t *type;
    struct arena *arena; /* the top-level record's */
    union val *vals;
    uint64_t *present;
    bool owns_arena;
};

#define ALIGN16(n) (((n) + 15) & ~(size_t)15)
#define WORDS(n)   (((n) + 63) / 64)

/* ------------------------------------------------------------------------
 * Arena
 * ------------------------------------------------------------------------ */

static void *arena_alloc(struct arena *a, size_t n)
{
    n = ALIGN16(n ? n : 1);
    struct chunk *c = a->cur;
    while (c != NULL) {
        if (c->cap - c->used >= n) {
            void *p = (char *)(c + 1) + c->used;
            c->used += n;
            a->cur = c;
            return p;
        }
        if (c->next == NULL)
            break;
        c = c->next;
        c->used = 0;
    }
    size_t cap = c != NULL ? 2 * c->cap : 1024;
    if (cap < n)
        cap = n;
    struct chunk *nc = malloc(sizeof *nc + cap);
    if (nc == NULL)
        return NULL;
    nc->next = NULL;
    nc->cap = cap;
    nc->used = n;
    if (c != NULL)
        c->next = nc;
    else
        a->head = nc;
    a->cur = nc;
    return nc + 1;
}

static void arena_free_chunks(struct chunk *c)
{
    while (c != NULL) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
}

/* Recycles the arena; merges its chunks into one if it grew. */
static void arena_reset(struct arena *a)
{
    if (a->head != NULL && a->head->next != NULL) {
        size_t total = 0;
        for (struct chunk *c = a->head; c != NULL; c = c->next)
            total += c->cap;
        struct chunk *one = malloc(sizeof *one + total);
        if (one != NULL) {
            arena_free_chunks(a->head);
            one->next = NULL;
            one->cap = total;
            a->head = one;
        }
    }
    if (a->head != NULL)
        a->head->used = 0;
    a->cur = a->head;
}

static const char *arena_copy(struct arena *a, const void *src, size_t n)
{
    if (n == 0)
        return "";
    char *p = arena_alloc(a, n);
    if (p != NULL)
        memcpy(p, src, n);
    return p;
}

/* ------------------------------------------------------------------------
 * Timestamps
 * ------------------------------------------------------------------------ */

/* Days since 1970-01-01 of a proleptic Gregorian date (the well-known
 * era-based conversion; exact for all years). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static bool leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && leap(y) ? 29 : dm[m - 1];
}

static bool digits(const char *s, size_t k, int *out)
{
    int v = 0;
    for (size_t i = 0; i < k; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

mph_err_t mph_record_timestamp_parse(const char *s, size_t n, int64_t *epoch_ms)
{
    int y, mo, d, h, mi, se, ms = 0, oh = 0, om = 0, sign = 0;
    if (s == NULL || epoch_ms == NULL || n < 20)
        return MPH_ERR_INVALID;
    if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
        s[7] != '-' || !digits(s + 8, 2, &d) ||
        (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) ||
        s[16] != ':' || !digits(s + 17, 2, &se))
        return MPH_ERR_INVALID;
    size_t i = 19;
    if (s[i] == '.') {
        size_t start = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            if (i - start < 3)
                ms = ms * 10 + (s[i] - '0');
            i++;
        }
        if (i == start)
            return MPH_ERR_INVALID;
        for (size_t k = i - start; k < 3; k++)
            ms *= 10;
    }
    if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < n && (s[i] == '+' || s[i] == '-')) {
        sign = s[i] == '+' ? 1 : -1;
        if (n - i == 6 && s[i + 3] == ':' && digits(s + i + 1, 2, &oh) &&
            digits(s + i + 4, 2, &om))
            i += 6;
        else if (n - i == 5 && digits(s + i + 1, 2, &oh) &&
                 digits(s + i + 3, 2, &om))
            i += 5;
        else
            return MPH_ERR_INVALID;
    } else {
        return MPH_ERR_INVALID;
    }
    if (i != n || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) ||
        h > 23 || mi > 59 || se > 59 || oh > 23 || om > 59)
        return MPH_ERR_INVALID;
    int64_t t =
        days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + mi * 60 + se;
    t = t * 1000 + ms - (int64_t)sign * ((int64_t)oh * 3600 + om * 60) * 1000;
    if (t < TS_MIN || t > TS_MAX)
        return MPH_ERR_RANGE;
    *epoch_ms = t;
    return MPH_OK;
}

static void put2(char *o, int v)
{
    o[0] = (char)('0' + v / 10);
    o[1] = (char)('0' + v % 10);
}

mph_err_t mph_record_timestamp_format(int64_t epoch_ms, char out[24])
{
    if (out == NULL)
        return MPH_ERR_INVALID;
    if (epoch_ms < TS_MIN || epoch_ms > TS_MAX)
        return MPH_ERR_RANGE;
    int64_t days = epoch_ms >= 0 ? epoch_ms / 86400000
                                 : -((-epoch_ms + 86399999) / 86400000);
    int64_t rem = epoch_ms - days * 86400000;
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    int yy = (int)y;
    put2(out, yy / 100);
    put2(out + 2, yy % 100);
    out[4] = '-';
    put2(out + 5, m);
    out[7] = '-';
    put2(out + 8, d);
    out[10] = 'T';
    put2(out + 11, (int)(rem / 3600000));
    out[13] = ':';
    put2(out + 14, (int)(rem / 60000 % 60));
    out[16] = ':';
    put2(out + 17, (int)(rem / 1000 % 60));
    out[19] = '.';
    int frac = (int)(rem % 1000);
    out[20] = (char)('0' + frac / 100);
    put2(out + 21, frac % 100);
    out[23] = 'Z';
    return MPH_OK;
}

/* ------------------------------------------------------------------------
 * Base64 (RFC 4648 alphabet; decoding accepts missing padding)
 * ------------------------------------------------------------------------ */

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decodes s[0..n) into out (NULL: only checks); *outlen is the decoded
 * size. False when s is not base64. */
static bool b64_decode(const char *s, size_t n, unsigned char *out,
                       size_t *outlen)
{
    size_t pad = 0;
    if (n > 0 && s[n - 1] == '=')
        pad = n > 1 && s[n - 2] == '=' ? 2 : 1;
    size_t m = n - pad;
    if (m % 4 == 1 || (pad > 0 && (n % 4 != 0 || m % 4 != 4 - pad)))
        return false;
    *outlen = m / 4 * 3 + (m % 4 ? m % 4 - 1 : 0);
    size_t o = 0;
    for (size_t i = 0; i < m; i += 4) {
        uint32_t x = 0;
        size_t k = m - i < 4 ? m - i : 4;
        for (size_t j = 0; j < k; j++) {
            int v = b64_value((unsigned char)s[i + j]);
            if (v < 0)
                return false;
            x |= (uint32_t)v << (18 - 6 * j);
        }
        if (out != NULL) {
            out[o] = (unsigned char)(x >> 16);
            if (k > 2)
                out[o + 1] = (unsigned char)(x >> 8);
            if (k > 3)
                out[o + 2] = (unsigned char)x;
        }
        o += k - 1;
    }
    return true;
}

/* ------------------------------------------------------------------------
 * Types
 * ------------------------------------------------------------------------ */

static bool frozen(const mph_record_type_t *t)
{
    return ck_pr_load_8((uint8_t *)&t->frozen) != 0;
}

void mph_record_type_freeze(mph_record_type_t *t)
{
    if (t == NULL || frozen(t))
        return;
    for (size_t i = 0; i < t->nfields; i++) {
        struct field *f = &t->fields[i];
        if (f->s.sub != NULL)
            mph_record_type_freeze((mph_record_type_t *)f->s.sub);
        if (f->e.sub != NULL)
            mph_record_type_freeze((mph_record_type_t *)f->e.sub);
    }
    ck_pr_store_8(&t->frozen, 1);
}

mph_record_type_t *mph_record_type_new(const char *name, char *errstr,
                                       size_t errstr_size)
{
    if (name == NULL || *name == '\0') {
        if (errstr != NULL && errstr_size > 0)
            snprintf(errstr, errstr_size, "record type needs a name");
        return NULL;
    }
    mph_record_type_t *t = calloc(1, sizeof *t);
    if (t == NULL)
        goto fail;
    t->name = strdup(name);
    if (t->name == NULL)
        goto free_type;
    return t;
free_type:
    free(t);
fail:
    if (errstr != NULL && errstr_size > 0)
        snprintf(errstr, errstr_size, "out of memory");
    return NULL;
}

void mph_record_type_destroy(mph_record_type_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nfields; i++) {
        free(t->fields[i].name);
        free(t->fields[i].dflt_s);
    }
    free(t->fields);
    free(t->by_name);
    free(t->name);
    free(t);
}

static int name_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn)
        return an < bn ? -1 : 1;
    return memcmp(a, b, an);
}

/* Binary search in by_name: the index of the field called k, or SIZE_MAX;
 * *pos receives the insertion position. */
static size_t find_name(const mph_record_type_t *t, const char *k, size_t kn,
                        size_t *pos)
{
    size_t lo = 0, hi = t->nfields;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct field *f = &t->fields[t->by_name[mid]];
        int c = name_cmp(f->name, f->name_len, k, kn);
        if (c == 0) {
            if (pos != NULL)
                *pos = mid;
            return t->by_name[mid];
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (pos != NULL)
        *pos = lo;
    return SIZE_MAX;
}

static bool scalar_type(mph_field_type_t ft)
{
    return ft >= MPH_FIELD_STRING && ft <= MPH_FIELD_TIMESTAMP;
}

static mph_err_t add_field(mph_record_type_t *t, const char *name,
                           struct spec s, struct spec e, size_t *idx)
{
    if (t == NULL || name == NULL)
        return MPH_ERR_INVALID;
    if (frozen(t))
        return MPH_ERR_STATE;
    size_t n = strlen(name);
    if (n == 0 || !mph_json_utf8_valid(name, n) ||
        strpbrk(name, "\"\\") != NULL)
        return MPH_ERR_INVALID;
    size_t pos;
    if (find_name(t, name, n, &pos) != SIZE_MAX)
        return MPH_ERR_EXISTS;
    if (t->nfields >= MPH_RECORD_MAX_FIELDS)
        return MPH_ERR_RANGE;
    if (t->nfields == t->cap) {
        size_t ncap = t->cap ? 2 * t->cap : 8;
        struct field *nf = realloc(t->fields, ncap * sizeof *nf);
        if (nf == NULL)
            return MPH_ERR_NOMEM;
        t->fields = nf;
        size_t *nb = realloc(t->by_name, ncap * sizeof *nb);
        if (nb == NULL)
            return MPH_ERR_NOMEM;
        t->by_name = nb;
        t->cap = ncap;
    }
    struct field *f = &t->fields[t->nfields];
    memset(f, 0, sizeof *f);
    f->name = strdup(name);
    if (f->name == NULL)
        return MPH_ERR_NOMEM;
    f->name_len = n;
    f->s = s;
    f->e = e;
    memmove(&t->by_name[pos + 1], &t->by_name[pos],
            (t->nfields - pos) * sizeof(size_t));
    t->by_name[pos] = t->nfields;
    if (idx != NULL)
        *idx = t->nfields;
    t->nfields++;
    return MPH_OK;
}

mph_err_t mph_record_type_add(mph_record_type_t *t, const char *name,
                              mph_field_type_t ft, size_t *idx)
{
    if (!scalar_type(ft))
        return MPH_ERR_INVALID;
    struct spec s = {.type = ft}, e = {0};
    return add_field(t, name, s, e, idx);
}

mph_err_t mph_record_type_add_record(mph_record_type_t *t, const char *name,
                                     const mph_record_type_t *sub, size_t *idx)
{
    if (sub == NULL)
        return MPH_ERR_INVALID;
    struct spec s = {.type = MPH_FIELD_RECORD, .sub = sub}, e = {0};
    return add_field(t, name, s, e, idx);
}

mph_err_t mph_record_type_add_array(mph_record_type_t *t, const char *name,
                                    mph_field_type_t elem,
                                    const mph_record_type_t *elem_sub,
                                    size_t *idx)
{
    if (!(scalar_type(elem) || elem == MPH_FIELD_RECORD) ||
        (elem == MPH_FIELD_RECORD) != (elem_sub != NULL))
        return MPH_ERR_INVALID;
    struct spec s = {.type = MPH_FIELD_ARRAY},
                e = {.type = elem, .sub = elem_sub};
    return add_field(t, name, s, e, idx);
}

/* The field idx of a type being built. */
static mph_err_t editable(mph_record_type_t *t, size_t idx, struct field **f)
{
    if (t == NULL)
        return MPH_ERR_INVALID;
    if (idx >= t->nfields)
        return MPH_ERR_RANGE;
    if (frozen(t))
        return MPH_ERR_STATE;
    *f = &t->fields[idx];
    return MPH_OK;
}

/* Does the default of f satisfy its limits? */
static bool default_fits(const struct field *f)
{
    if (!f->has_default)
        return true;
    const struct spec *s = &f->s;
    switch (s->type) {
    case MPH_FIELD_I64:
    case MPH_FIELD_TIMESTAMP:
        return !s->has_irange || (f->dflt_i >= s->imin && f->dflt_i <= s->imax);
    case MPH_FIELD_F64:
        return !s->has_frange || (f->dflt_f >= s->fmin && f->dflt_f <= s->fmax);
    case MPH_FIELD_STRING:
    case MPH_FIELD_BYTES:
        return !s->has_max_len || f->dflt_n <= s->max_len;
    default:
        return true;
    }
}

mph_err_t mph_record_type_set_optional(mph_record_type_t *t, size_t idx)
{
    struct field *f;
    mph_err_t err = editable(t, idx, &f);
    if (err)
        return err;
    f->optional = true;
    return MPH_OK;
}

/* Installs a default after the type check; rolls back if it breaks the
 * limits. */
static mph_err_t set_default(struct field *f, const struct field *candidate)
{
    struct field saved = *f;
    f->has_default = true;
    f->optional = true;
    f->dflt_i = candidate->dflt_i;
    f->dflt_f = candidate->dflt_f;
    f->dflt_b = candidate->dflt_b;
    f->dflt_n = candidate->dflt_n;
    if (!default_fits(f)) {
        *f = saved;
        return MPH_ERR_SCHEMA;
    }
    return MPH_OK;
}

mph_err_t mph_record_type_set_default_i64(mph_record_type_t *t, size_t idx,
                                          int64_t v)
{
    struct field *f;
    mph_err_t err = editable(t, idx, &f);
    if (err)
        return err;
    if (f->s.type != MPH_FIELD_I64 && f->s.type != MPH_FIELD_TIMESTAMP)
        return MPH_ERR_TYPE;
    if (f->s.type == MPH_FIELD_TIMESTAMP && (v < TS_MIN || v > TS_MAX))
        return MPH_ERR_RANGE;
    struct field c = {.dflt_i = v};
    return set_default(f, &c);
}

mph_err_t mph_record_type_set_default_f64(mph_record_type_t *t, size_t idx,
                                          double v)
{
    struct field *f;
    mph_err_t err = editable(t, idx, &f);
    if (err)
        return err;
    if (f->s.type != MPH_FIELD_F64)
        return MPH_ERR_TYPE;
    if (!isfinite(v))
        return MPH_ERR_RANGE;
    struct field c = {.dflt_f = v};
    return set_default(f, &c);
}

mph_err_t mph_record_type_set_default_bool(mph_record_type_t *t, size_t idx,
                                           bool v)
{
    struct field *f;
    mph_err_t err = editable(t, idx, &f);
    if (err)
        return err;
    if (f->s.type != MPH_FIELD_BOOL)
        return MPH_ERR_TYPE;
    struct field c = {.dflt_b = v};
    return set_default(f, &c);
}

mph_err_t mph_record_type_set_default_str(mph_record_type_t *t, size_t idx,
                                          const char *v, size_t len)
{
    struct field *f;
    mph_err_t err = editable(t, idx, &f);
    if (err)
        return err;
    if (v == NULL && len > 0)
        return MPH_ERR_INVALID;
    if (f->s.type != MPH_FIELD_STRING && f->s.type != MPH_FIELD_BYTES)
        return MPH_ERR_TYPE;
    if (f->s.type == MPH_FIELD_STRING && !mph_json_utf8_valid(v, len))
        return MPH_ERR_UTF8;
    struct field c = {.dflt_n = len};
    char *copy = malloc(len ? len : 1);
    if (copy == NULL)
        return MPH_ERR_NOMEM;
    if (len > 0)
        memcpy(copy, v, len);
    char *old = f->dflt_s;
    err = set_default(f, &c);
    if (err) {
        free(copy);
        return err;
    }
    f->dflt_s = copy;
    free(old);
    return MPH_OK;
}

/* Applies a limit to the field (elem false) or its elements (elem true);
 * kind: 0 max_len, 1 i64 range, 2 f64 range. */
static mph_err_t set_limit(mph_record_type_t *t, size_t idx, bool elem,
                           int kind, size_t max_len, int64_t imin, int64_t imax,
                           double fmin, double fmax)
{
    struct field *f;
    mph_err_t err = editable(t, idx, &f);
    if (err)
        return err;
    if (elem && f->s.type != MPH_FIELD_ARRAY)
        return MPH_ERR_TYPE;
    struct spec *s = elem ? &f->e : &f->s;
    struct spec saved = *s;
    switch (kind) {
    case 0:
        if (s->type != MPH_FIELD_STRING && s->type != MPH_FIELD_BYTES &&
            s->type != MPH_FIELD_ARRAY)
            return MPH_ERR_TYPE;
        s->has_max_len = true;
        s->max_len = max_len;
        break;
    case 1:
        if (s->type != MPH_FIELD_I64 && s->type != MPH_FIELD_TIMESTAMP)
            return MPH_ERR_TYPE;
        if (imin > imax)
            return MPH_ERR_INVALID;
        s->has_irange = true;
        s->imin = imin;
        s->imax = imax;
        break;
    default:
        if (s->type != MPH_FIELD_F64)
            return MPH_ERR_TYPE;
        if (isnan(fmin) || isnan(fmax) || fmin > fmax)
            return MPH_ERR_INVALID;
        s->has_frange = true;
        s->fmin = fmin;
        s->fmax = fmax;
        break;
    }
    if (!elem && !default_fits(f)) {
        *s = saved;
        return MPH_ERR_SCHEMA;
    }
    return MPH_OK;
}

mph_err_t mph_record_type_set_max_len(mph_record_type_t *t, size_t idx,
                                      size_t max_len)
{
    return set_limit(t, idx, false, 0, max_len, 0, 0, 0, 0);
}

mph_err_t mph_record_type_set_range_i64(mph_record_type_t *t, size_t idx,
                                        int64_t min, int64_t max)
{
    return set_limit(t, idx, false, 1, 0, min, max, 0, 0);
}

mph_err_t mph_record_type_set_range_f64(mph_record_type_t *t, size_t idx,
                                        double min, double max)
{
    return set_limit(t, idx, false, 2, 0, 0, 0, min, max);
}

mph_err_t mph_record_type_set_elem_max_len(mph_record_type_t *t, size_t idx,
                                           size_t max_len)
{
    return set_limit(t, idx, true, 0, max_len, 0, 0, 0, 0);
}

mph_err_t mph_record_type_set_elem_range_i64(mph_record_type_t *t, size_t idx,
                                             int64_t min, int64_t max)
{
    return set_limit(t, idx, true, 1, 0, min, max, 0, 0);
}

mph_err_t mph_record_type_set_elem_range_f64(mph_record_type_t *t, size_t idx,
                                             double min, double max)
{
    return set_limit(t, idx, true, 2, 0, 0, 0, min, max);
}

mph_err_t mph_record_type_field(const mph_record_type_t *t, const char *name,
                                size_t *idx)
{
    if (t == NULL || name == NULL || idx == NULL)
        return MPH_ERR_INVALID;
    size_t i = find_name(t, name, strlen(name), NULL);
    if (i == SIZE_MAX)
        return MPH_ERR_NOENT;
    *idx = i;
    return MPH_OK;
}

const char *mph_record_type_name(const mph_record_type_t *t)
{
    return t != NULL ? t->name : NULL;
}

size_t mph_record_type_nfields(const mph_record_type_t *t)
{
    return t != NULL ? t->nfields : 0;
}

const char *mph_record_type_field_name(const mph_record_type_t *t, size_t idx)
{
    return t != NULL && idx < t->nfields ? t->fields[idx].name : NULL;
}

mph_field_type_t mph_record_type_field_type(const mph_record_type_t *t,
                                            size_t idx)
{
    return t != NULL && idx < t->nfields ? t->fields[idx].s.type
                                         : (mph_field_type_t)0;
}

/* ------------------------------------------------------------------------
 * Records
 * ------------------------------------------------------------------------ */

static size_t record_size(const mph_record_type_t *t)
{
    return ALIGN16(sizeof(mph_record_t)) +
           ALIGN16(t->nfields * sizeof(union val)) +
           WORDS(t->nfields) * sizeof(uint64_t);
}

static void apply_default(mph_record_t *r, size_t idx)
{
    const struct field *f = &r->type->fields[idx];
    union val *v = &r->vals[idx];
    switch (f->s.type) {
    case MPH_FIELD_I64:
    case MPH_FIELD_TIMESTAMP:
        v->i = f->dflt_i;
        break;
    case MPH_FIELD_F64:
        v->f = f->dflt_f;
        break;
    case MPH_FIELD_BOOL:
        v->b = f->dflt_b;
        break;
    default:
        v->s.p = f->dflt_s;
        v->s.n = f->dflt_n;
        break;
    }
    r->present[idx / 64] |= (uint64_t)1 << (idx % 64);
}

/* Lays out a record over mem (record_size(t) bytes), all fields absent. */
static mph_record_t *record_init(void *mem, const mph_record_type_t *t,
                                 struct arena *a)
{
    mph_record_t *r = mem;
    r->type = t;
    r->arena = a;
    r->vals = (union val *)((char *)mem + ALIGN16(sizeof *r));
    r->present =
        (uint64_t *)((char *)r->vals + ALIGN16(t->nfields * sizeof(union val)));
    r->owns_arena = false;
    memset(r->vals, 0, t->nfields * sizeof(union val));
    memset(r->present, 0, WORDS(t->nfields) * sizeof(uint64_t));
    return r;
}

static void record_defaults(mph_record_t *r)
{
    for (size_t i = 0; i < r->type->nfields; i++)
        if (r->type->fields[i].has_default)
            apply_default(r, i);
}

/* A nested record in the arena, with its defaults. */
static mph_record_t *record_nested(struct arena *a, const mph_record_type_t *t)
{
    void *mem = arena_alloc(a, record_size(t));
    if (mem == NULL)
        return NULL;
    mph_record_t *r = record_init(mem, t, a);
    record_defaults(r);
    return r;
}

mph_record_t *mph_record_new(const mph_record_type_t *type, char *errstr,
                             size_t errstr_size)
{
    if (type == NULL) {
        if (errstr != NULL && errstr_size > 0)
            snprintf(errstr, errstr_size, "record type is NULL");
        return NULL;
    }
    mph_record_type_freeze((mph_record_type_t *)type);
    void *mem = malloc(record_size(type));
    if (mem == NULL)
        goto fail;
    struct arena *a = calloc(1, sizeof *a);
    if (a == NULL)
        goto free_mem;
    mph_record_t *r = record_init(mem, type, a);
    r->owns_arena = true;
    record_defaults(r);
    return r;
free_mem:
    free(mem);
fail:
    if (errstr != NULL && errstr_size > 0)
        snprintf(errstr, errstr_size, "out of memory");
    return NULL;
}

void mph_record_destroy(mph_record_t *r)
{
    if (r == NULL || !r->owns_arena)
        return;
    arena_free_chunks(r->arena->head);
    free(r->arena);
    free(r);
}

/* Recycles the arena and makes every field absent. */
static void record_reset(mph_record_t *r)
{
    arena_reset(r->arena);
    memset(r->present, 0, WORDS(r->type->nfields) * sizeof(uint64_t));
}

void mph_record_clear(mph_record_t *r)
{
    if (r == NULL)
        return;
    record_reset(r);
    memset(r->vals, 0, r->type->nfields * sizeof(union val));
    record_defaults(r);
}

const mph_record_type_t *mph_record_type_of(const mph_record_t *r)
{
    return r != NULL ? r->type : NULL;
}

/* ------------------------------------------------------------------------
 * Decoding
 * ------------------------------------------------------------------------ */

struct frame {
    const char *name; /* NULL for an array index */
    size_t name_len;
    size_t index;
};

struct dctx {
    mph_json_parser_t *p;
    const mph_record_type_t *root;
    struct arena *arena; /* NULL when only validating */
    char *errbuf;
    size_t errsz;
    int depth;
    struct frame path[MPH_JSON_MAX_DEPTH + 2];
};

static const char *json_type_name(mph_json_type_t t)
{
    switch (t) {
    case MPH_JSON_NULL:
        return "null";
    case MPH_JSON_BOOL:
        return "boolean";
    case MPH_JSON_NUMBER:
        return "number";
    case MPH_JSON_STRING:
        return "string";
    case MPH_JSON_ARRAY:
        return "array";
    case MPH_JSON_OBJECT:
        return "object";
    }
    return "?";
}

static const char *field_type_name(mph_field_type_t t)
{
    switch (t) {
    case MPH_FIELD_STRING:
        return "string";
    case MPH_FIELD_I64:
        return "integer";
    case MPH_FIELD_F64:
        return "number";
    case MPH_FIELD_BOOL:
        return "boolean";
    case MPH_FIELD_BYTES:
        return "base64 string";
    case MPH_FIELD_TIMESTAMP:
        return "timestamp (ISO-8601 string or epoch milliseconds)";
    case MPH_FIELD_RECORD:
        return "object";
    case MPH_FIELD_ARRAY:
        return "array";
    }
    return "?";
}

/* Writes "<path>: " into buf; returns the length written (clamped). */
static size_t format_path(const struct dctx *c, char *buf, size_t size)
{
    buf[0] = '\0';
    if (c->depth == 0) {
        snprintf(buf, size, "%s: ", c->root->name);
        return strlen(buf);
    }
    size_t off = 0;
    for (int i = 0; i < c->depth && off + 1 < size; i++) {
        const struct frame *f = &c->path[i];
        if (f->name != NULL)
            snprintf(buf + off, size - off, "%s%.*s", i ? "." : "",
                     (int)f->name_len, f->name);
        else
            snprintf(buf + off, size - off, "%s%zu", i ? "." : "", f->index);
        off = strlen(buf);
    }
    if (off + 1 < size)
        snprintf(buf + off, size - off, ": ");
    return strlen(buf);
}

static mph_err_t fail(struct dctx *c, mph_err_t err, const char *fmt, ...)
    MPH_PRINTF(3, 4);

static mph_err_t fail(struct dctx *c, mph_err_t err, const char *fmt, ...)
{
    if (c->errbuf != NULL && c->errsz > 0) {
        c->errbuf[0] = '\0';
        size_t off = format_path(c, c->errbuf, c->errsz);
        if (off < c->errsz) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(c->errbuf + off, c->errsz - off, fmt, ap);
            va_end(ap);
        }
    }
    return err;
}

/* A failure of the JSON shim: malformed input (or no memory). */
static mph_err_t json_fail(struct dctx *c, mph_err_t err)
{
    size_t off = mph_json_last_error_offset(c->p);
    const char *what = err == MPH_ERR_UTF8 ? "invalid UTF-8" : "invalid JSON";
    if (err == MPH_ERR_NOMEM)
        return fail(c, err, "out of memory");
    if (err != MPH_ERR_DECODE && err != MPH_ERR_UTF8) {
        /* RANGE/STATE from the shim here mean nesting beyond its limit. */
        return fail(c, err == MPH_ERR_RANGE ? MPH_ERR_DECODE : err, "%s: %s",
                    what, mph_json_last_error(c->p));
    }
    if (off != SIZE_MAX)
        return fail(c, err, "%s at byte %zu: %s", what, off,
                    mph_json_last_error(c->p));
    return fail(c, err, "%s: %s", what, mph_json_last_error(c->p));
}

static mph_err_t push(struct dctx *c, const char *name, size_t name_len,
                      size_t index)
{
    if (c->depth >= (int)(sizeof c->path / sizeof c->path[0]))
        return fail(c, MPH_ERR_SCHEMA, "nesting too deep");
    c->path[c->depth].name = name;
    c->path[c->depth].name_len = name_len;
    c->path[c->depth].index = index;
    c->depth++;
    return MPH_OK;
}

static mph_err_t decode_object(struct dctx *c, const mph_record_type_t *t,
                               mph_json_val_t v, mph_record_t *r);

static mph_err_t check_i64(struct dctx *c, const struct spec *s, int64_t x)
{
    if (s->has_irange && x < s->imin)
        return fail(c, MPH_ERR_SCHEMA, "%lld below min %lld", (long long)x,
                    (long long)s->imin);
    if (s->has_irange && x > s->imax)
        return fail(c, MPH_ERR_SCHEMA, "%lld above max %lld", (long long)x,
                    (long long)s->imax);
    return MPH_OK;
}

/* Decodes value v by spec s into out (NULL: validate only). */
static mph_err_t decode_spec(struct dctx *c, const struct spec *s,
                             mph_json_val_t v, union val *out)
{
    mph_json_type_t jt;
    mph_err_t err = mph_json_type(c->p, v, &jt);
    if (err)
        return json_fail(c, err);
    mph_json_type_t want;
    switch (s->type) {
    case MPH_FIELD_STRING:
    case MPH_FIELD_BYTES:
        want = MPH_JSON_STRING;
        break;
    case MPH_FIELD_I64:
    case MPH_FIELD_F64:
        want = MPH_JSON_NUMBER;
        break;
    case MPH_FIELD_BOOL:
        want = MPH_JSON_BOOL;
        break;
    case MPH_FIELD_TIMESTAMP:
        want = jt == MPH_JSON_NUMBER ? MPH_JSON_NUMBER : MPH_JSON_STRING;
        break;
    case MPH_FIELD_RECORD:
        want = MPH_JSON_OBJECT;
        break;
    default:
        want = MPH_JSON_ARRAY;
        break;
    }
    if (jt != want)
        return fail(c, MPH_ERR_SCHEMA, "expected %s, got %s",
                    field_type_name(s->type), json_type_name(jt));

    switch (s->type) {
    case MPH_FIELD_STRING:
    case MPH_FIELD_BYTES: {
        const char *str;
        size_t n;
        if ((err = mph_json_str(c->p, v, &str, &n)) != MPH_OK)
            return json_fail(c, err);
        if (s->type == MPH_FIELD_STRING) {
            if (s->has_max_len && n > s->max_len)
                return fail(c, MPH_ERR_SCHEMA, "length %zu above max %zu", n,
                            s->max_len);
            if (out != NULL) {
                out->s.p = arena_copy(c->arena, str, n);
                out->s.n = n;
                if (out->s.p == NULL)
                    return fail(c, MPH_ERR_NOMEM, "out of memory");
            }
            return MPH_OK;
        }
        size_t dn;
        if (!b64_decode(str, n, NULL, &dn))
            return fail(c, MPH_ERR_SCHEMA, "invalid base64");
        if (s->has_max_len && dn > s->max_len)
            return fail(c, MPH_ERR_SCHEMA, "%zu bytes above max %zu", dn,
                        s->max_len);
        if (out != NULL) {
            unsigned char *b =
                dn ? arena_alloc(c->arena, dn) : (unsigned char *)"";
            if (b == NULL)
                return fail(c, MPH_ERR_NOMEM, "out of memory");
            if (dn)
                b64_decode(str, n, b, &dn);
            out->s.p = (const char *)b;
            out->s.n = dn;
        }
        return MPH_OK;
    }
    case MPH_FIELD_I64: {
        int64_t x;
        err = mph_json_i64(c->p, v, &x);
        if (err == MPH_ERR_TYPE)
            return fail(c, MPH_ERR_SCHEMA,
                        "expected integer, got a fractional number");
        if (err == MPH_ERR_RANGE)
            return fail(c, MPH_ERR_SCHEMA, "integer out of range");
        if (err)
            return json_fail(c, err);
        if ((err = check_i64(c, s, x)) != MPH_OK)
            return err;
        if (out != NULL)
            out->i = x;
        return MPH_OK;
    }
    case MPH_FIELD_F64: {
        double x;
        if ((err = mph_json_f64(c->p, v, &x)) != MPH_OK)
            return json_fail(c, err);
        if (s->has_frange && x < s->fmin)
            return fail(c, MPH_ERR_SCHEMA, "%.17g below min %.17g", x, s->fmin);
        if (s->has_frange && x > s->fmax)
            return fail(c, MPH_ERR_SCHEMA, "%.17g above max %.17g", x, s->fmax);
        if (out != NULL)
            out->f = x;
        return MPH_OK;
    }
    case MPH_FIELD_BOOL: {
        bool x;
        if ((err = mph_json_bool(c->p, v, &x)) != MPH_OK)
            return json_fail(c, err);
        if (out != NULL)
            out->b = x;
        return MPH_OK;
    }
    case MPH_FIELD_TIMESTAMP: {
        int64_t ms;
        if (jt == MPH_JSON_NUMBER) {
            err = mph_json_i64(c->p, v, &ms);
            if (err == MPH_ERR_TYPE || err == MPH_ERR_RANGE)
                return fail(c, MPH_ERR_SCHEMA,
                            "expected integer epoch milliseconds");
            if (err)
                return json_fail(c, err);
            if (ms < TS_MIN || ms > TS_MAX)
                return fail(c, MPH_ERR_SCHEMA,
                            "timestamp out of range (years 0000-9999)");
        } else {
            const char *str;
            size_t n;
            if ((err = mph_json_str(c->p, v, &str, &n)) != MPH_OK)
                return json_fail(c, err);
            err = mph_record_timestamp_parse(str, n, &ms);
            if (err == MPH_ERR_RANGE)
                return fail(c, MPH_ERR_SCHEMA,
                            "timestamp out of range (years 0000-9999)");
            if (err)
                return fail(c, MPH_ERR_SCHEMA,
                            "not an ISO-8601 timestamp with offset: \"%.*s\"",
                            (int)(n > 40 ? 40 : n), str);
        }
        if ((err = check_i64(c, s, ms)) != MPH_OK)
            return err;
        if (out != NULL)
            out->i = ms;
        return MPH_OK;
    }
    case MPH_FIELD_RECORD: {
        mph_record_t *sub = NULL;
        if (out != NULL) {
            void *mem = arena_alloc(c->arena, record_size(s->sub));
            if (mem == NULL)
                return fail(c, MPH_ERR_NOMEM, "out of memory");
            sub = record_init(mem, s->sub, c->arena);
            out->r = sub;
        }
        return decode_object(c, s->sub, v, sub);
    }
    default:
        break;
    }
    /* MPH_FIELD_ARRAY: s is the field, the element spec comes with it. */
    return MPH_ERR_INTERNAL;
}

static mph_err_t decode_array(struct dctx *c, const struct field *f,
                              mph_json_val_t v, union val *out)
{
    mph_json_type_t jt;
    mph_err_t err = mph_json_type(c->p, v, &jt);
    if (err)
        return json_fail(c, err);
    if (jt != MPH_JSON_ARRAY)
        return fail(c, MPH_ERR_SCHEMA, "expected array, got %s",
                    json_type_name(jt));
    size_t n;
    if ((err = mph_json_count(c->p, v, &n)) != MPH_OK)
        return json_fail(c, err);
    if (f->s.has_max_len && n > f->s.max_len)
        return fail(c, MPH_ERR_SCHEMA, "%zu elements above max %zu", n,
                    f->s.max_len);
    union val *vals = NULL;
    if (out != NULL) {
        vals = n ? arena_alloc(c->arena, n * sizeof *vals) : NULL;
        if (n && vals == NULL)
            return fail(c, MPH_ERR_NOMEM, "out of memory");
        out->a.v = vals;
        out->a.n = n;
    }
    mph_json_val_t ev;
    for (size_t i = 0; i < n; i++) {
        if ((err = mph_json_array_next(c->p, v, &ev)) != MPH_OK)
            return json_fail(c, err == MPH_ERR_NOENT ? MPH_ERR_DECODE : err);
        if ((err = push(c, NULL, 0, i)) != MPH_OK)
            return err;
        err = decode_spec(c, &f->e, ev, vals ? &vals[i] : NULL);
        if (err)
            return err;
        c->depth--;
    }
    return MPH_OK;
}

/* The field called key[0..n): the one after the previous match first. */
static size_t match_field(const mph_record_type_t *t, const char *key, size_t n,
                          size_t *hint)
{
    if (*hint < t->nfields) {
        const struct field *f = &t->fields[*hint];
        if (f->name_len == n && memcmp(f->name, key, n) == 0)
            return (*hint)++;
    }
    size_t i = find_name(t, key, n, NULL);
    if (i != SIZE_MAX)
        *hint = i + 1;
    return i;
}

static mph_err_t decode_object(struct dctx *c, const mph_record_type_t *t,
                               mph_json_val_t v, mph_record_t *r)
{
    mph_json_type_t jt;
    mph_err_t err = mph_json_type(c->p, v, &jt);
    if (err)
        return json_fail(c, err);
    if (jt != MPH_JSON_OBJECT)
        return fail(c, MPH_ERR_SCHEMA, "expected object, got %s",
                    json_type_name(jt));
    uint64_t seen[WORDS(MPH_RECORD_MAX_FIELDS)] = {0};
    size_t hint = 0;
    const char *key;
    size_t klen;
    mph_json_val_t fv;
    while ((err = mph_json_object_next(c->p, v, &key, &klen, &fv)) == MPH_OK) {
        size_t idx = match_field(t, key, klen, &hint);
        if (idx == SIZE_MAX) {
            if ((err = mph__json_check_value(c->p, fv)) != MPH_OK)
                return json_fail(c, err);
            continue;
        }
        const struct field *f = &t->fields[idx];
        if ((err = push(c, f->name, f->name_len, 0)) != MPH_OK)
            return err;
        uint64_t bit = (uint64_t)1 << (idx % 64);
        if (seen[idx / 64] & bit)
            return fail(c, MPH_ERR_SCHEMA, "field appears twice");
        seen[idx / 64] |= bit;
        bool isnull;
        if ((err = mph_json_is_null(c->p, fv, &isnull)) != MPH_OK)
            return json_fail(c, err);
        if (isnull) {
            if (!f->optional)
                return fail(c, MPH_ERR_SCHEMA, "required field is null");
            if (r != NULL && f->has_default)
                apply_default(r, idx);
        } else {
            union val *out = r != NULL ? &r->vals[idx] : NULL;
            err = f->s.type == MPH_FIELD_ARRAY ? decode_array(c, f, fv, out)
                                               : decode_spec(c, &f->s, fv, out);
            if (err)
                return err;
            if (r != NULL)
                r->present[idx / 64] |= bit;
        }
        c->depth--;
    }
    if (err != MPH_ERR_NOENT)
        return json_fail(c, err);
    for (size_t i = 0; i < t->nfields; i++) {
        if (seen[i / 64] & ((uint64_t)1 << (i % 64)))
            continue;
        const struct field *f = &t->fields[i];
        if (f->has_default) {
            if (r != NULL)
                apply_default(r, i);
        } else if (!f->optional) {
            if ((err = push(c, f->name, f->name_len, 0)) != MPH_OK)
                return err;
            return fail(c, MPH_ERR_SCHEMA, "required field missing");
        }
    }
    return MPH_OK;
}

/* Decodes value v of the parser's document into *rec (r == NULL: validate
 * only, rec unused). */
static mph_err_t decode_top(const mph_record_type_t *type, mph_json_parser_t *p,
                            mph_json_val_t v, mph_record_t **rec, bool build,
                            char *errbuf, size_t errbuf_size)
{
    struct dctx local;
    struct dctx *c = &local;
    c->p = p;
    c->root = type;
    c->errbuf = errbuf;
    c->errsz = errbuf_size;
    c->depth = 0;
    c->arena = NULL;
    if (errbuf != NULL && errbuf_size > 0)
        errbuf[0] = '\0';
    mph_record_type_freeze((mph_record_type_t *)type);
    mph_record_t *r = NULL;
    bool fresh = false;
    if (build) {
        r = *rec;
        if (r == NULL) {
            r = mph_record_new(type, NULL, 0);
            if (r == NULL)
                return fail(c, MPH_ERR_NOMEM, "out of memory");
            fresh = true;
        } else if (r->type != type || !r->owns_arena) {
            return fail(c, MPH_ERR_INVALID, "record of another type");
        }
        record_reset(r);
        c->arena = r->arena;
    }
    mph_err_t err = decode_object(c, type, v, r);
    if (err == MPH_OK && v == MPH_JSON_ROOT) {
        mph_err_t e = mph__json_check_end(p);
        if (e)
            err = json_fail(c, e);
    }
    if (build) {
        if (err != MPH_OK && fresh)
            mph_record_destroy(r);
        else
            *rec = r;
    }
    return err;
}

mph_err_t mph_record_decode(const mph_record_type_t *type, mph_json_parser_t *p,
                            const void *bytes, size_t len, mph_record_t **rec,
                            char *errbuf, size_t errbuf_size)
{
    if (type == NULL || p == NULL || rec == NULL || (bytes == NULL && len > 0))
        return MPH_ERR_INVALID;
    mph_err_t err = mph_json_parse(p, bytes, len, len);
    if (err) {
        if (errbuf != NULL && errbuf_size > 0)
            snprintf(errbuf, errbuf_size, "%s: %s",
                     err == MPH_ERR_UTF8 ? "invalid UTF-8" : "invalid JSON",
                     mph_json_last_error(p));
        return err == MPH_ERR_RANGE ? MPH_ERR_DECODE : err;
    }
    return decode_top(type, p, MPH_JSON_ROOT, rec, true, errbuf, errbuf_size);
}

mph_err_t mph_record_decode_value(const mph_record_type_t *type,
                                  mph_json_parser_t *p, mph_json_val_t v,
                                  mph_record_t **rec, char *errbuf,
                                  size_t errbuf_size)
{
    if (type == NULL || p == NULL || rec == NULL)
        return MPH_ERR_INVALID;
    return decode_top(type, p, v, rec, true, errbuf, errbuf_size);
}

mph_err_t mph__record_validate(const mph_record_type_t *type,
                               mph_json_parser_t *p, const void *bytes,
                               size_t len, char *errbuf, size_t errbuf_size)
{
    if (type == NULL || p == NULL || (bytes == NULL && len > 0))
        return MPH_ERR_INVALID;
    mph_err_t err = mph_json_parse(p, bytes, len, len);
    if (err) {
        if (errbuf != NULL && errbuf_size > 0)
            snprintf(errbuf, errbuf_size, "%s: %s",
                     err == MPH_ERR_UTF8 ? "invalid UTF-8" : "invalid JSON",
                     mph_json_last_error(p));
        return err == MPH_ERR_RANGE ? MPH_ERR_DECODE : err;
    }
    return decode_top(type, p, MPH_JSON_ROOT, NULL, false, errbuf, errbuf_size);
}

/* ------------------------------------------------------------------------
 * Encoding
 * ------------------------------------------------------------------------ */

static bool is_present(const mph_record_t *r, size_t idx)
{
    return (r->present[idx / 64] >> (idx % 64)) & 1;
}

/* A present value within its spec's limits? */
static bool value_fits(const struct spec *s, const union val *v)
{
    switch (s->type) {
    case MPH_FIELD_STRING:
    case MPH_FIELD_BYTES:
        return !s->has_max_len || v->s.n <= s->max_len;
    case MPH_FIELD_I64:
    case MPH_FIELD_TIMESTAMP:
        return !s->has_irange || (v->i >= s->imin && v->i <= s->imax);
    case MPH_FIELD_F64:
        return !s->has_frange || (v->f >= s->fmin && v->f <= s->fmax);
    default:
        return true;
    }
}

static mph_err_t check_complete(struct dctx *c, const mph_record_t *r);

static mph_err_t check_elem(struct dctx *c, const struct spec *s,
                            const union val *v)
{
    if (!value_fits(s, v))
        return fail(c, MPH_ERR_SCHEMA, "value outside the field's limits");
    if (s->type == MPH_FIELD_RECORD)
        return check_complete(c, v->r);
    return MPH_OK;
}

/* Every required field present and every value within its limits. */
static mph_err_t check_complete(struct dctx *c, const mph_record_t *r)
{
    const mph_record_type_t *t = r->type;
    for (size_t i = 0; i < t->nfields; i++) {
        const struct field *f = &t->fields[i];
        mph_err_t err = push(c, f->name, f->name_len, 0);
        if (err)
            return err;
        if (!is_present(r, i)) {
            if (!f->optional)
                return fail(c, MPH_ERR_SCHEMA, "required field missing");
        } else if (f->s.type == MPH_FIELD_ARRAY) {
            const union val *v = &r->vals[i];
            if (f->s.has_max_len && v->a.n > f->s.max_len)
                return fail(c, MPH_ERR_SCHEMA, "%zu elements above max %zu",
                            v->a.n, f->s.max_len);
            for (size_t k = 0; k < v->a.n; k++) {
                if ((err = push(c, NULL, 0, k)) != MPH_OK)
                    return err;
                if ((err = check_elem(c, &f->e, &v->a.v[k])) != MPH_OK)
                    return err;
                c->depth--;
            }
        } else if ((err = check_elem(c, &f->s, &r->vals[i])) != MPH_OK) {
            return err;
        }
        c->depth--;
    }
    return MPH_OK;
}

static mph_err_t write_record(const mph_record_t *r, mph_jsonw_t *w);

static mph_err_t write_value(const struct spec *s, const union val *v,
                             mph_jsonw_t *w)
{
    switch (s->type) {
    case MPH_FIELD_STRING:
        return mph_jsonw_str(w, v->s.p, v->s.n);
    case MPH_FIELD_BYTES:
        return mph_jsonw_base64(w, v->s.p, v->s.n);
    case MPH_FIELD_I64:
        return mph_jsonw_i64(w, v->i);
    case MPH_FIELD_F64:
        return mph_jsonw_f64(w, v->f);
    case MPH_FIELD_BOOL:
        return mph_jsonw_bool(w, v->b);
    case MPH_FIELD_TIMESTAMP: {
        char ts[24];
        mph_err_t err = mph_record_timestamp_format(v->i, ts);
        return err ? err : mph_jsonw_str(w, ts, sizeof ts);
    }
    case MPH_FIELD_RECORD:
        return write_record(v->r, w);
    default:
        return MPH_ERR_INTERNAL;
    }
}

static mph_err_t write_record(const mph_record_t *r, mph_jsonw_t *w)
{
    const mph_record_type_t *t = r->type;
    mph_err_t err = mph_jsonw_object_begin(w);
    for (size_t i = 0; err == MPH_OK && i < t->nfields; i++) {
        if (!is_present(r, i))
            continue;
        const struct field *f = &t->fields[i];
        const union val *v = &r->vals[i];
        if ((err = mph_jsonw_key(w, f->name, f->name_len)) != MPH_OK)
            break;
        if (f->s.type != MPH_FIELD_ARRAY) {
            err = write_value(&f->s, v, w);
            continue;
        }
        err = mph_jsonw_array_begin(w);
        for (size_t k = 0; err == MPH_OK && k < v->a.n; k++)
            err = write_value(&f->e, &v->a.v[k], w);
        if (err == MPH_OK)
            err = mph_jsonw_array_end(w);
    }
    return err ? err : mph_jsonw_object_end(w);
}

mph_err_t mph_record_encode(const mph_record_t *r, mph_jsonw_t *w, char *errbuf,
                            size_t errbuf_size)
{
    if (r == NULL || w == NULL)
        return MPH_ERR_INVALID;
    struct dctx c = {.root = r->type, .errbuf = errbuf, .errsz = errbuf_size};
    if (errbuf != NULL && errbuf_size > 0)
        errbuf[0] = '\0';
    mph_err_t err = check_complete(&c, r);
    if (err)
        return err;
    return write_record(r, w);
}

static bool value_equal(const struct spec *s, const union val *a,
                        const union val *b)
{
    switch (s->type) {
    case MPH_FIELD_STRING:
    case MPH_FIELD_BYTES:
        return a->s.n == b->s.n && memcmp(a->s.p, b->s.p, a->s.n) == 0;
    case MPH_FIELD_I64:
    case MPH_FIELD_TIMESTAMP:
        return a->i == b->i;
    case MPH_FIELD_F64:
        return memcmp(&a->f, &b->f, sizeof a->f) == 0;
    case MPH_FIELD_BOOL:
        return a->b == b->b;
    case MPH_FIELD_RECORD:
        return mph_record_equal(a->r, b->r);
    default:
        return false;
    }
}

bool mph_record_equal(const mph_record_t *a, const mph_record_t *b)
{
    if (a == NULL || b == NULL || a->type != b->type)
        return false;
    const mph_record_type_t *t = a->type;
    for (size_t i = 0; i < t->nfields; i++) {
        bool pa = is_present(a, i), pb = is_present(b, i);
        if (pa != pb)
            return false;
        if (!pa)
            continue;
        const struct field *f = &t->fields[i];
        const union val *va = &a->vals[i], *vb = &b->vals[i];
        if (f->s.type != MPH_FIELD_ARRAY) {
            if (!value_equal(&f->s, va, vb))
                return false;
            continue;
        }
        if (va->a.n != vb->a.n)
            return false;
        for (size_t k = 0; k < va->a.n; k++)
            if (!value_equal(&f->e, &va->a.v[k], &vb->a.v[k]))
                return false;
    }
    return true;
}

/* ------------------------------------------------------------------------
 * Getters
 * ------------------------------------------------------------------------ */

/* Field idx of rec if present and of type t1 or t2. */
static mph_err_t field_get(const mph_record_t *r, size_t idx,
                           mph_field_type_t t1, mph_field_type_t t2,
                           const union val **v)
{
    if (r == NULL)
        return MPH_ERR_INVALID;
    if (idx >= r->type->nfields)
        return MPH_ERR_RANGE;
    mph_field_type_t ft = r->type->fields[idx].s.type;
    if (ft != t1 && ft != t2)
        return MPH_ERR_TYPE;
    if (!is_present(r, idx))
        return MPH_ERR_NOENT;
    *v = &r->vals[idx];
    return MPH_OK;
}

/* Element i of array field idx whose elements have type t1 or t2. */
static mph_err_t elem_get(const mph_record_t *r, size_t idx, size_t i,
                          mph_field_type_t t1, mph_field_type_t t2,
                          const union val **v)
{
    const union val *a;
    mph_err_t err = field_get(r, idx, MPH_FIELD_ARRAY, MPH_FIELD_ARRAY, &a);
    if (err)
        return err;
    mph_field_type_t et = r->type->fields[idx].e.type;
    if (et != t1 && et != t2)
        return MPH_ERR_TYPE;
    if (i >= a->a.n)
        return MPH_ERR_RANGE;
    *v = &a->a.v[i];
    return MPH_OK;
}

bool mph_record_has(const mph_record_t *r, size_t idx)
{
    return r != NULL && idx < r->type->nfields && is_present(r, idx);
}

mph_err_t mph_record_get_str(const mph_record_t *r, size_t idx, const char **s,
                             size_t *len)
{
    const union val *v;
    if (s == NULL || len == NULL)
        return MPH_ERR_INVALID;
    mph_err_t err = field_get(r, idx, MPH_FIELD_STRING, MPH_FIELD_STRING, &v);
    if (err)
        return err;
    *s = v->s.p;
    *len = v->s.n;
    return MPH_OK;
}

mph_err_t mph_record_get_bytes(const mph_record_t *r, size_t idx,
                               const void **b, size_t *len)
{
    const union val *v;
    if (b == NULL || len == NULL)
        return MPH_ERR_INVALID;
    mph_err_t err = field_get(r, idx, MPH_FIELD_BYTES, MPH_FIELD_BYTES, &v);
    if (err)
        return err;
    *b = v->s.p;
    *len = v->s.n;
    return MPH_OK;
}

mph_err_t mph_record_get_i64(const mph_record_t *r, size_t idx, int64_t *out)
{
    const union val *v;
    if (out == NULL)
        return MPH_ERR_INVALID;
    mph_err_t err = field_get(r, idx, MPH_FIELD_I64, MPH_FIELD_TIMESTAMP, &v);
    if (err)
        return err;
    *out = v->i;
    return MPH_OK;
}

mph_err_t mph_record_get_f64(const mph_record_t *r, size_t idx, double *out)
{
    const union val *v;
    if (out == NULL)
        return MPH_ERR_INVALID;
    mph_err_t err = field_get(r, idx, MPH_FIELD_F64, MPH_FIELD_F64, &v);
    if (err)
        return err;
    *out = v->f;
    return MPH_OK;
}

mph_err_t mph_record_get_bool(const mph_record_t *r, size_t idx, bool *out)
{
    const union val *v;
    if (out == NULL)
        return MPH_ERR_INVALID;
    mph_err_t err = field_get(r, idx, MPH_FIELD_BOOL, MPH_FIELD_BOOL, &v);
    if (err)
        return err;
    *out = v->b;
    return MPH_OK;
}

mph_err_t mph_record_get_timestamp(const mph_record_t *r, size_t idx,
                                   int64_t *epoch_ms)
{
    const union val *v;
    if (epoch_ms == NULL)
        return MPH_ERR_INVALID;
    mph_err_t err =
        field_get(r, idx, MPH_FIELD_TIMESTAMP, MPH_FIELD_TIMESTAMP, &v);
    if (err)
        return err;
    *epoch_ms = v->i;
    return MPH_OK;
}

mph_err_t mph_record_get_record(const mph_record_t *r, size_t idx,
                                const mph_record_t **sub)
{
    const union val *v;
    if (sub == NULL)
        return MPH_ERR_INVALID;
    mph_err_t err = field_get(r, idx, MPH_FIELD_RECORD, MPH_FIELD_RECORD, &v);
    if (err)
        return err;
    *sub = v->r;
    return MPH_OK;
}

mph_err_t mph_record_array_len(const mph_record_t *r, size_t idx, size_t *len)
{
    const union val *v;
    if (len == NULL)
        return MPH_ERR_INVALID;
    mph_err_t err = field_get(r, idx, MPH_FIELD_ARRAY, MPH_FIELD_ARRAY, &v);
    if (err)
        return err;
    *len = v->a.n;
    return MPH_OK;
}

mph_err_t mph_record_array_get_str(const mph_record_t *r, size_t idx, size_t i,
                                   const char **s, size_t *len)
{
    const union val *v;
    if (s == NULL || len == NULL)
        return MPH_ERR_INVALID;
    mph_err_t err = elem_get(r, idx, i, MPH_FIELD_STRING, MPH_FIELD_STRING, &v);
    if (err)
        return err;
    *s = v->s.p;
    *len = v->s.n;
    return MPH_OK;
}

mph_err_t mph_record_array_get_bytes(const mph_record_t *r, size_t idx,
                                     size_t i, const void **b, size_t *len)
{
    const union val *v;
    if (b == NULL || len == NULL)
        return MPH_ERR_INVALID;
    mph_err_t err = elem_get(r, idx, i, MPH_FIELD_BYTES, MPH_FIELD_BYTES, &v);
    if (err)
        return err;
    *b = v->s.p;
    *len = v->s.n;
    return MPH_OK;
}

mph_err_t mph_record_array_get_i64(const mph_record_t *r, size_t idx, size_t i,
                                   int64_t *out)
{
    const union val *v;
    if (out == NULL)
        return MPH_ERR_INVALID;
    mph_err_t err = elem_get(r, idx, i, MPH_FIELD_I64, MPH_FIELD_TIMESTAMP, &v);
    if (err)
        return err;
    *out = v->i;
    return MPH_OK;
}

mph_err_t mph_record_array_get_f64(const mph_record_t *r, size_t idx, size_t i,
                                   double *out)
{
    const union val *v;
    if (out == NULL)
        return MPH_ERR_INVALID;
    mph_err_t err = elem_get(r, idx, i, MPH_FIELD_F64, MPH_FIELD_F64, &v);
    if (err)
        return err;
    *out = v->f;
    return MPH_OK;
}

mph_err_t mph_record_array_get_bool(const mph_record_t *r, size_t idx, size_t i,
                                    bool *out)
{
    const union val *v;
    if (out == NULL)
        return MPH_ERR_INVALID;
    mph_err_t err = elem_get(r, idx, i, MPH_FIELD_BOOL, MPH_FIELD_BOOL, &v);
    if (err)
        return err;
    *out = v->b;
    return MPH_OK;
}

mph_err_t mph_record_array_get_record(const mph_record_t *r, size_t idx,
                                      size_t i, const mph_record_t **sub)
{
    const union val *v;
    if (sub == NULL)
        return MPH_ERR_INVALID;
    mph_err_t err = elem_get(r, idx, i, MPH_FIELD_RECORD, MPH_FIELD_RECORD, &v);
    if (err)
        return err;
    *sub = v->r;
    return MPH_OK;
}

static mph_err_t by_name(const mph_record_t *r, const char *name, size_t *idx)
{
    if (r == NULL || name == NULL)
        return MPH_ERR_INVALID;
    return mph_record_type_field(r->type, name, idx);
}

mph_err_t mph_record_get_str_by_name(const mph_record_t *r, const char *name,
                                     const char **s, size_t *len)
{
    size_t idx;
    mph_err_t err = by_name(r, name, &idx);
    return err ? err : mph_record_get_str(r, idx, s, len);
}

mph_err_t mph_record_get_i64_by_name(const mph_record_t *r, const char *name,
                                     int64_t *out)
{
    size_t idx;
    mph_err_t err = by_name(r, name, &idx);
    return err ? err : mph_record_get_i64(r, idx, out);
}

mph_err_t mph_record_get_f64_by_name(const mph_record_t *r, const char *name,
                                     double *out)
{
    size_t idx;
    mph_err_t err = by_name(r, name, &idx);
    return err ? err : mph_record_get_f64(r, idx, out);
}

mph_err_t mph_record_get_bool_by_name(const mph_record_t *r, const char *name,
                                      bool *out)
{
    size_t idx;
    mph_err_t err = by_name(r, name, &idx);
    return err ? err : mph_record_get_bool(r, idx, out);
}

mph_err_t mph_record_get_record_by_name(const mph_record_t *r, const char *name,
                                        const mph_record_t **sub)
{
    size_t idx;
    mph_err_t err = by_name(r, name, &idx);
    return err ? err : mph_record_get_record(r, idx, sub);
}

/* ------------------------------------------------------------------------
 * Setters
 * ------------------------------------------------------------------------ */

/* Where a setter writes: a field (i == SIZE_MAX) or an array element. */
static mph_err_t target(mph_record_t *r, size_t idx, size_t i,
                        const struct spec **s, union val **v)
{
    if (r == NULL)
        return MPH_ERR_INVALID;
    if (idx >= r->type->nfields)
        return MPH_ERR_RANGE;
    const struct field *f = &r->type->fields[idx];
    if (i == SIZE_MAX) {
        if (f->s.type == MPH_FIELD_ARRAY)
            return MPH_ERR_TYPE;
        *s = &f->s;
        *v = &r->vals[idx];
        return MPH_OK;
    }
    if (f->s.type != MPH_FIELD_ARRAY)
        return MPH_ERR_TYPE;
    if (!is_present(r, idx))
        return MPH_ERR_NOENT;
    if (i >= r->vals[idx].a.n)
        return MPH_ERR_RANGE;
    *s = &f->e;
    *v = &r->vals[idx].a.v[i];
    return MPH_OK;
}

static void mark(mph_record_t *r, size_t idx)
{
    r->present[idx / 64] |= (uint64_t)1 << (idx % 64);
}

static mph_err_t set_text(mph_record_t *r, size_t idx, size_t i,
                          mph_field_type_t want, const void *data, size_t len)
{
    const struct spec *s;
    union val *v;
    mph_err_t err = target(r, idx, i, &s, &v);
    if (err)
        return err;
    if (s->type != want)
        return MPH_ERR_TYPE;
    if (data == NULL && len > 0)
        return MPH_ERR_INVALID;
    if (want == MPH_FIELD_STRING && !mph_json_utf8_valid(data, len))
        return MPH_ERR_UTF8;
    if (s->has_max_len && len > s->max_len)
        return MPH_ERR_SCHEMA;
    const char *copy = arena_copy(r->arena, data, len);
    if (copy == NULL)
        return MPH_ERR_NOMEM;
    v->s.p = copy;
    v->s.n = len;
    if (i == SIZE_MAX)
        mark(r, idx);
    return MPH_OK;
}

static mph_err_t set_int(mph_record_t *r, size_t idx, size_t i,
                         bool timestamp_only, int64_t value)
{
    const struct spec *s;
    union val *v;
    mph_err_t err = target(r, idx, i, &s, &v);
    if (err)
        return err;
    if (s->type != MPH_FIELD_TIMESTAMP &&
        (timestamp_only || s->type != MPH_FIELD_I64))
        return MPH_ERR_TYPE;
    if (s->type == MPH_FIELD_TIMESTAMP && (value < TS_MIN || value > TS_MAX))
        return MPH_ERR_RANGE;
    if (s->has_irange && (value < s->imin || value > s->imax))
        return MPH_ERR_SCHEMA;
    v->i = value;
    if (i == SIZE_MAX)
        mark(r, idx);
    return MPH_OK;
}

static mph_err_t set_double(mph_record_t *r, size_t idx, size_t i, double value)
{
    const struct spec *s;
    union val *v;
    mph_err_t err = target(r, idx, i, &s, &v);
    if (err)
        return err;
    if (s->type != MPH_FIELD_F64)
        return MPH_ERR_TYPE;
    if (!isfinite(value))
        return MPH_ERR_RANGE;
    if (s->has_frange && (value < s->fmin || value > s->fmax))
        return MPH_ERR_SCHEMA;
    v->f = value;
    if (i == SIZE_MAX)
        mark(r, idx);
    return MPH_OK;
}

static mph_err_t set_boolean(mph_record_t *r, size_t idx, size_t i, bool value)
{
    const struct spec *s;
    union val *v;
    mph_err_t err = target(r, idx, i, &s, &v);
    if (err)
        return err;
    if (s->type != MPH_FIELD_BOOL)
        return MPH_ERR_TYPE;
    v->b = value;
    if (i == SIZE_MAX)
        mark(r, idx);
    return MPH_OK;
}

static mph_err_t set_sub(mph_record_t *r, size_t idx, size_t i,
                         mph_record_t **sub)
{
    const struct spec *s;
    union val *v;
    if (sub == NULL)
        return MPH_ERR_INVALID;
    mph_err_t err = target(r, idx, i, &s, &v);
    if (err)
        return err;
    if (s->type != MPH_FIELD_RECORD)
        return MPH_ERR_TYPE;
    if (i != SIZE_MAX) {
        /* set_array made it already: give it back to be edited. */
        *sub = v->r;
        return MPH_OK;
    }
    mph_record_t *n = record_nested(r->arena, s->sub);
    if (n == NULL)
        return MPH_ERR_NOMEM;
    v->r = n;
    mark(r, idx);
    *sub = n;
    return MPH_OK;
}

mph_err_t mph_record_set_str(mph_record_t *r, size_t idx, const char *s,
                             size_t len)
{
    return set_text(r, idx, SIZE_MAX, MPH_FIELD_STRING, s, len);
}

mph_err_t mph_record_set_bytes(mph_record_t *r, size_t idx, const void *b,
                               size_t len)
{
    return set_text(r, idx, SIZE_MAX, MPH_FIELD_BYTES, b, len);
}

mph_err_t mph_record_set_i64(mph_record_t *r, size_t idx, int64_t value)
{
    return set_int(r, idx, SIZE_MAX, false, value);
}

mph_err_t mph_record_set_f64(mph_record_t *r, size_t idx, double value)
{
    return set_double(r, idx, SIZE_MAX, value);
}

mph_err_t mph_record_set_bool(mph_record_t *r, size_t idx, bool value)
{
    return set_boolean(r, idx, SIZE_MAX, value);
}

mph_err_t mph_record_set_timestamp(mph_record_t *r, size_t idx,
                                   int64_t epoch_ms)
{
    return set_int(r, idx, SIZE_MAX, true, epoch_ms);
}

mph_err_t mph_record_set_record(mph_record_t *r, size_t idx, mph_record_t **sub)
{
    return set_sub(r, idx, SIZE_MAX, sub);
}

mph_err_t mph_record_unset(mph_record_t *r, size_t idx)
{
    if (r == NULL)
        return MPH_ERR_INVALID;
    if (idx >= r->type->nfields)
        return MPH_ERR_RANGE;
    r->present[idx / 64] &= ~((uint64_t)1 << (idx % 64));
    if (r->type->fields[idx].has_default)
        apply_default(r, idx);
    return MPH_OK;
}

mph_err_t mph_record_set_array(mph_record_t *r, size_t idx, size_t len)
{
    if (r == NULL)
        return MPH_ERR_INVALID;
    if (idx >= r->type->nfields)
        return MPH_ERR_RANGE;
    const struct field *f = &r->type->fields[idx];
    if (f->s.type != MPH_FIELD_ARRAY)
        return MPH_ERR_TYPE;
    if (f->s.has_max_len && len > f->s.max_len)
        return MPH_ERR_SCHEMA;
    if (len > SIZE_MAX / sizeof(union val))
        return MPH_ERR_NOMEM;
    union val *vals = NULL;
    if (len > 0) {
        vals = arena_alloc(r->arena, len * sizeof *vals);
        if (vals == NULL)
            return MPH_ERR_NOMEM;
        memset(vals, 0, len * sizeof *vals);
        for (size_t k = 0; k < len; k++) {
            if (f->e.type == MPH_FIELD_STRING || f->e.type == MPH_FIELD_BYTES) {
                vals[k].s.p = "";
            } else if (f->e.type == MPH_FIELD_RECORD) {
                vals[k].r = record_nested(r->arena, f->e.sub);
                if (vals[k].r == NULL)
                    return MPH_ERR_NOMEM;
            }
        }
    }
    r->vals[idx].a.v = vals;
    r->vals[idx].a.n = len;
    mark(r, idx);
    return MPH_OK;
}

mph_err_t mph_record_array_set_str(mph_record_t *r, size_t idx, size_t i,
                                   const char *s, size_t len)
{
    return i == SIZE_MAX ? MPH_ERR_RANGE
                         : set_text(r, idx, i, MPH_FIELD_STRING, s, len);
}

mph_err_t mph_record_array_set_bytes(mph_record_t *r, size_t idx, size_t i,
                                     const void *b, size_t len)
{
    return i == SIZE_MAX ? MPH_ERR_RANGE
                         : set_text(r, idx, i, MPH_FIELD_BYTES, b, len);
}

mph_err_t mph_record_array_set_i64(mph_record_t *r, size_t idx, size_t i,
                                   int64_t value)
{
    return i == SIZE_MAX ? MPH_ERR_RANGE : set_int(r, idx, i, false, value);
}

mph_err_t mph_record_array_set_f64(mph_record_t *r, size_t idx, size_t i,
                                   double value)
{
    return i == SIZE_MAX ? MPH_ERR_RANGE : set_double(r, idx, i, value);
}

mph_err_t mph_record_array_set_bool(mph_record_t *r, size_t idx, size_t i,
                                    bool value)
{
    return i == SIZE_MAX ? MPH_ERR_RANGE : set_boolean(r, idx, i, value);
}

mph_err_t mph_record_array_edit_record(mph_record_t *r, size_t idx, size_t i,
                                       mph_record_t **sub)
{
    return i == SIZE_MAX ? MPH_ERR_RANGE : set_sub(r, idx, i, sub);
}
