/*
 * JSON shim: simdjson 3.0.1's on-demand API behind the C API of
 * include/mephisto/json.h. The only C++ file of mephisto.
 *
 * DESIGN
 *
 * On-demand reads forward only: a simdjson value is a position in one shared
 * iterator, and using a value after the iterator left it reads garbage (in
 * release builds simdjson does not check). The C API therefore hands out
 * integer handles and keeps the simdjson objects here, in one slot per
 * nesting depth: slot 0 is the document, slot d+1 holds the value last
 * obtained from the container in slot d. A lookup or iteration step on slot d
 * moves the iterator inside d only, so it retires every slot deeper than d
 * (p->top = d) and fills slot d+1 with a fresh serial number. A handle is
 * (serial << 12 | depth) and is valid while depth <= top and the slot still
 * carries its serial. Scalars are re-read from their start token, which
 * simdjson allows; containers are opened once per slot and then reset or
 * continued, never reopened, because reopening a container the iterator has
 * left is what simdjson cannot do.
 *
 * Object lookups search from the reader's position to the end of the
 * object and, if that fails, reset to the object's start and search again
 * (two ordered find_field() calls). simdjson's find_field_unordered() does
 * the same in one call, but its wrap-around loop assumes a well-formed
 * object (SIMDJSON_ASSUME) and reads past the end of a malformed one. An
 * array keeps one iterator position that index lookups and array_next share. An
 * object lookup in the middle of iterating the same object would leave the
 * iterator at an arbitrary field, so it marks the iteration broken and the next
 * object_next reports MPH_ERR_STATE.
 *
 * Strings: simdjson's get_string() unescapes every string into the parser's
 * string buffer, which is sized for one pass over the document; reading the
 * same string again, or after a rewind, writes past it or overwrites
 * earlier results. So strings are read raw: a string without a backslash is
 * returned as a pointer into the parsed bytes (no copy), one with escapes is
 * unescaped with parser::unescape() into an arena of this file that lives
 * until the next parse, and a small cache keyed by the raw position keeps
 * repeated reads of the same string from growing the arena.
 *
 * Errors: simdjson is used through error codes; every extern "C" function is
 * noexcept and runs its body inside guarded(), which turns any exception
 * (std::bad_alloc from our buffers above all) into an mph_err_t. After a
 * malformed-input error simdjson may have abandoned its iterator (it clears
 * its parser pointer, and a rewind would then crash), so such errors poison
 * the document: every later call returns the saved error without touching
 * simdjson until the next parse.
 *
 * Must never: let an exception escape; call get_string()/unescaped_key();
 * rewind after a poisoning error; open a container slot twice.
 */
#include <simdjson.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <string_view>

#include "mephisto/json.h"
#include "io/json.h"

/* The per-event path (parse, lookup, read) is a chain of small helpers;
 * forcing them inline keeps the shim within 2x of simdjson used directly. */
#define HOT inline __attribute__((always_inline))

namespace od = simdjson::ondemand;
using simdjson::error_code;

static_assert(MPH_JSON_PADDING >= simdjson::SIMDJSON_PADDING,
              "MPH_JSON_PADDING must cover simdjson's padding");
static_assert(MPH_JSON_MAX_DEPTH < 4096, "depth must fit the handle's 12 bits");

namespace
{

constexpr unsigned kDepthBits = 12;
constexpr uint64_t kDepthMask = (uint64_t(1) << kDepthBits) - 1;
constexpr uint64_t kSerialMask = (uint64_t(1) << (64 - kDepthBits)) - 1;
constexpr size_t kInitialCapacity = 16 * 1024;
constexpr size_t kMinChunk = 4096;
constexpr size_t kCacheSize = 64;

/* What the slot's container was opened as. */
enum : uint8_t { K_UNOPENED, K_OBJECT, K_ARRAY };

/* Iteration state of an opened container.
 *   IT_FRESH   the iterator stands at the container's start
 *   IT_DIRTY   somewhere inside or past it: reset before iterating
 *   IT_AT      (arrays) at element pos, not handed out yet
 *   IT_TAKEN   at element/field pos, handed out as slot d+1
 *   IT_END     past the end
 *   IT_BROKEN  (objects) a lookup happened while iterating */
enum : uint8_t { IT_FRESH, IT_DIRTY, IT_AT, IT_TAKEN, IT_END, IT_BROKEN };

struct slot {
    uint64_t serial = 0;
    od::value val;
    od::object obj;
    od::array arr;
    od::object_iterator oit;
    od::array_iterator ait;
    size_t pos = 0;
    uint8_t kind = K_UNOPENED;
    uint8_t it = IT_FRESH;
};

struct chunk {
    uint8_t *mem;
    size_t cap;
};

struct cache_entry {
    uint64_t gen;
    const uint8_t *raw;
    const char *s;
    size_t n;
};

} // namespace

struct mph_json_parser {
    explicit mph_json_parser(size_t max) : parser(max), max_doc(max)
    {
    }
    ~mph_json_parser()
    {
        delete[] pad;
        for (size_t i = 0; i < nchunks; i++)
            delete[] chunks[i].mem;
        delete[] chunks;
        delete[] slots;
    }
    mph_json_parser(const mph_json_parser &) = delete;
    mph_json_parser &operator=(const mph_json_parser &) = delete;

    od::parser parser;
    od::document doc;
    size_t max_doc;

    /* The padded copy of an unpadded document. */
    uint8_t *pad = nullptr;
    size_t pad_cap = 0;
    const uint8_t *input = nullptr;
    size_t input_len = 0;
    bool in_place = false;
    bool parsed = false;

    /* Poisoning error of the current document (SUCCESS when healthy). */
    error_code fatal = simdjson::SUCCESS;
    const char *last_msg = "";
    size_t last_off = SIZE_MAX;

    slot *slots = nullptr; /* MPH_JSON_MAX_DEPTH + 1 */
    size_t top = 0;
    uint64_t serial = 0;
    uint64_t gen = 0;

    /* Arena for unescaped strings: chunks[cur] is filled up to used. */
    chunk *chunks = nullptr;
    size_t nchunks = 0, chunks_cap = 0, cur = 0, used = 0;
    cache_entry cache[kCacheSize] = {};

    int fault = MPH__JSON_FAULT_NONE;
};

typedef mph_json_parser P;

namespace
{

/* ------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------ */

mph_err_t map_err(error_code e)
{
    switch (e) {
    case simdjson::SUCCESS:
        return MPH_OK;
    case simdjson::MEMALLOC:
        return MPH_ERR_NOMEM;
    case simdjson::CAPACITY:
        return MPH_ERR_RANGE;
    case simdjson::UTF8_ERROR:
        return MPH_ERR_UTF8;
    case simdjson::INCORRECT_TYPE:
        return MPH_ERR_TYPE;
    case simdjson::NUMBER_OUT_OF_RANGE:
        return MPH_ERR_RANGE;
    case simdjson::INDEX_OUT_OF_BOUNDS:
        return MPH_ERR_NOENT;
    case simdjson::NO_SUCH_FIELD:
        return MPH_ERR_NOENT;
    case simdjson::OUT_OF_ORDER_ITERATION:
        return MPH_ERR_STATE;
    case simdjson::INSUFFICIENT_PADDING:
        return MPH_ERR_INVALID;
    case simdjson::INVALID_JSON_POINTER:
        return MPH_ERR_INVALID;
    case simdjson::INVALID_URI_FRAGMENT:
        return MPH_ERR_INVALID;
    case simdjson::IO_ERROR:
        return MPH_ERR_IO;
    case simdjson::UNSUPPORTED_ARCHITECTURE:
        return MPH_ERR_INTERNAL;
    case simdjson::UNINITIALIZED:
        return MPH_ERR_INTERNAL;
    case simdjson::UNEXPECTED_ERROR:
        return MPH_ERR_INTERNAL;
    case simdjson::PARSER_IN_USE:
        return MPH_ERR_INTERNAL;
    case simdjson::TAPE_ERROR:
    case simdjson::DEPTH_ERROR:
    case simdjson::STRING_ERROR:
    case simdjson::T_ATOM_ERROR:
    case simdjson::F_ATOM_ERROR:
    case simdjson::N_ATOM_ERROR:
    case simdjson::NUMBER_ERROR:
    case simdjson::EMPTY:
    case simdjson::UNESCAPED_CHARS:
    case simdjson::UNCLOSED_STRING:
    case simdjson::INCOMPLETE_ARRAY_OR_OBJECT:
    case simdjson::SCALAR_DOCUMENT_AS_VALUE:
    case simdjson::OUT_OF_BOUNDS:
    case simdjson::TRAILING_CONTENT:
        return MPH_ERR_DECODE;
    default:
        return MPH_ERR_INTERNAL;
    }
}

/* Errors after which simdjson's iterator may not be used again. */
bool is_fatal(error_code e)
{
    switch (map_err(e)) {
    case MPH_ERR_TYPE:
    case MPH_ERR_NOENT:
    case MPH_ERR_RANGE:
    case MPH_ERR_INVALID:
        return false;
    default:
        return true;
    }
}

/* Records e as the last error (poisoning the document when fatal). */
mph_err_t fail(P *p, error_code e)
{
    p->last_msg = simdjson::error_message(e);
    if (is_fatal(e) && p->fatal == simdjson::SUCCESS) {
        p->fatal = e;
        p->last_off = SIZE_MAX;
        const char *loc = nullptr;
        if (p->parsed &&
            p->doc.current_location().get(loc) == simdjson::SUCCESS &&
            loc >= reinterpret_cast<const char *>(p->input) &&
            loc <= reinterpret_cast<const char *>(p->input) + p->input_len)
            p->last_off =
                size_t(loc - reinterpret_cast<const char *>(p->input));
    }
    return map_err(e);
}

mph_err_t fail_msg(P *p, mph_err_t err, const char *msg)
{
    p->last_msg = msg;
    return err;
}

/* ------------------------------------------------------------------------
 * Memory: every allocation of the shim goes through here (fault injection).
 * ------------------------------------------------------------------------ */

uint8_t *alloc_bytes(P *p, size_t n)
{
    if (p->fault == MPH__JSON_FAULT_ALLOC) {
        p->fault = MPH__JSON_FAULT_NONE;
        throw std::bad_alloc();
    }
    if (p->fault == MPH__JSON_FAULT_OTHER) {
        p->fault = MPH__JSON_FAULT_NONE;
        throw 42;
    }
    return new uint8_t[n];
}

void arena_reset(P *p)
{
    p->cur = 0;
    p->used = 0;
}

/* At least n contiguous writable bytes at the arena's current position. */
uint8_t *arena_reserve(P *p, size_t n)
{
    while (p->cur < p->nchunks) {
        chunk &c = p->chunks[p->cur];
        if (c.cap - p->used >= n)
            return c.mem + p->used;
        p->cur++;
        p->used = 0;
    }
    if (p->nchunks == p->chunks_cap) {
        size_t ncap = p->chunks_cap ? 2 * p->chunks_cap : 4;
        chunk *nc =
            reinterpret_cast<chunk *>(alloc_bytes(p, ncap * sizeof(chunk)));
        if (p->nchunks)
            std::memcpy(nc, p->chunks, p->nchunks * sizeof(chunk));
        delete[] reinterpret_cast<uint8_t *>(p->chunks);
        p->chunks = nc;
        p->chunks_cap = ncap;
    }
    size_t last = p->nchunks ? p->chunks[p->nchunks - 1].cap : 0;
    size_t cap = n > 2 * last ? n : 2 * last;
    if (cap < kMinChunk)
        cap = kMinChunk;
    p->chunks[p->nchunks].mem = alloc_bytes(p, cap);
    p->chunks[p->nchunks].cap = cap;
    p->cur = p->nchunks++;
    p->used = 0;
    return p->chunks[p->cur].mem;
}

void arena_commit(P *p, size_t n)
{
    p->used += n;
}

/* ------------------------------------------------------------------------
 * Strings
 * ------------------------------------------------------------------------ */

/* The string whose raw text starts at raw (just after the opening quote) and
 * whose closing quote lies before end. commit=false only checks it. */
error_code finish_str(P *p, const uint8_t *raw, const uint8_t *end,
                      const char **s, size_t *n, bool commit)
{
    if (end <= raw)
        return simdjson::STRING_ERROR;
    size_t span = size_t(end - raw);
    const void *q = std::memchr(raw, '"', span);
    if (q == nullptr)
        return simdjson::STRING_ERROR;
    size_t qlen = size_t(static_cast<const uint8_t *>(q) - raw);
    if (std::memchr(raw, '\\', qlen) == nullptr) {
        *s = reinterpret_cast<const char *>(raw);
        *n = qlen;
        return simdjson::SUCCESS;
    }
    cache_entry &ce =
        p->cache[(reinterpret_cast<uintptr_t>(raw) >> 2) % kCacheSize];
    if (ce.gen == p->gen && ce.raw == raw) {
        *s = ce.s;
        *n = ce.n;
        return simdjson::SUCCESS;
    }
    uint8_t *dst = arena_reserve(p, span + simdjson::SIMDJSON_PADDING);
    uint8_t *w = dst;
    std::string_view out;
    error_code e = p->parser.unescape(od::raw_json_string(raw), w).get(out);
    if (e)
        return e;
    if (commit) {
        arena_commit(p, size_t(w - dst));
        ce.gen = p->gen;
        ce.raw = raw;
        ce.s = out.data();
        ce.n = out.size();
    }
    *s = out.data();
    *n = out.size();
    return simdjson::SUCCESS;
}

std::string_view token_of(od::value &v)
{
    return v.raw_json_token();
}

std::string_view token_of(od::document &d)
{
    std::string_view t;
    if (d.raw_json_token().get(t))
        return std::string_view();
    return t;
}

/* A string: the type check and the reader's advance from simdjson, the
 * text from the raw token. Advancing matters: an unread scalar is skipped by
 * simdjson's structural skip, which mistakes a string followed by ':' for a
 * key and so hides malformed documents. */
template <class V>
HOT error_code read_str(P *p, V &v, const char **s, size_t *n, bool commit)
{
    od::raw_json_string rs;
    error_code e = v.get_raw_json_string().get(rs);
    if (e)
        return e;
    std::string_view tok = token_of(v);
    const uint8_t *raw = reinterpret_cast<const uint8_t *>(rs.raw());
    const uint8_t *end =
        reinterpret_cast<const uint8_t *>(tok.data()) + tok.size();
    /* Short strings: one pass for the closing quote or a backslash. */
    const uint8_t *lim = end - raw > 32 ? raw + 32 : end;
    for (const uint8_t *q = raw; q < lim; q++) {
        if (*q == '"') {
            *s = reinterpret_cast<const char *>(raw);
            *n = size_t(q - raw);
            return simdjson::SUCCESS;
        }
        if (*q == '\\')
            break;
    }
    return finish_str(p, raw, end, s, n, commit);
}

/* simdjson 3.0.1 answers INCORRECT_TYPE both for "1.5 is not an integer"
 * and for "99999999999999999999 does not fit" and for malformed numbers such
 * as "-.5": tell them apart so that callers get TYPE, RANGE or DECODE. */
template <class V>
error_code classify_number_error(V &x, error_code e, bool want_integer)
{
    /* A root number longer than simdjson's copy buffer for integers comes
     * back as NUMBER_ERROR even when it is a well-formed big integer. */
    if (e != simdjson::INCORRECT_TYPE &&
        !(e == simdjson::NUMBER_ERROR && want_integer))
        return e;
    od::json_type t;
    if (x.type().get(t) != simdjson::SUCCESS || t != od::json_type::number)
        return e;
    double d;
    error_code e2 = x.get_double().get(d);
    if (e2 != simdjson::SUCCESS)
        return e2 == simdjson::INCORRECT_TYPE ? simdjson::NUMBER_ERROR : e2;
    if (!want_integer)
        return simdjson::NUMBER_ERROR;
    std::string_view tok = token_of(x);
    for (char c : tok)
        if (c == '.' || c == 'e' || c == 'E')
            return simdjson::INCORRECT_TYPE;
    return simdjson::NUMBER_OUT_OF_RANGE;
}

/* Whether the token of v, without trailing whitespace, is exactly atom.
 * simdjson 3.0.1's root scalar checks look at the wrong byte after an atom
 * ("nulll" followed by a space is null, "falsee" is false), so atoms are
 * confirmed on their token. */
template <class V> bool atom_exact(V &v, std::string_view atom)
{
    std::string_view tok = token_of(v);
    size_t n = tok.size();
    while (n > 0 && (tok[n - 1] == ' ' || tok[n - 1] == '\t' ||
                     tok[n - 1] == '\n' || tok[n - 1] == '\r'))
        n--;
    return tok.substr(0, n) == atom;
}

/* A value whose type is null: SUCCESS if it is exactly the atom null.
 * simdjson's answer is confirmed on the token both ways: its root check
 * also rejects "null " followed by a NUL byte (our copy's padding). */
template <class V> error_code read_null(V &v)
{
    bool isnull = false;
    error_code e = v.is_null().get(isnull);
    if (e && e != simdjson::INCORRECT_TYPE)
        return e;
    return atom_exact(v, "null") ? simdjson::SUCCESS : simdjson::N_ATOM_ERROR;
}

/* A boolean; T_ATOM_ERROR for something that starts like one but is not. */
template <class V> error_code read_bool(V &v, bool *out)
{
    bool b;
    error_code e = v.get_bool().get(b);
    od::json_type t;
    if (e == simdjson::INCORRECT_TYPE && v.type().get(t) == simdjson::SUCCESS &&
        t == od::json_type::boolean)
        return simdjson::T_ATOM_ERROR;
    if (e)
        return e;
    if (!atom_exact(v, b ? "true" : "false"))
        return simdjson::T_ATOM_ERROR;
    *out = b;
    return simdjson::SUCCESS;
}

/* ------------------------------------------------------------------------
 * Slots and handles
 * ------------------------------------------------------------------------ */

inline mph_json_val_t make_handle(uint64_t serial, size_t depth)
{
    return (serial << kDepthBits) | uint64_t(depth);
}

/* Checks that a document is current and healthy and that h is live; gives
 * its depth. */
HOT mph_err_t resolve(P *p, mph_json_val_t h, size_t *depth)
{
    if (p->fatal != simdjson::SUCCESS) {
        p->last_msg = simdjson::error_message(p->fatal);
        return map_err(p->fatal);
    }
    if (!p->parsed)
        return fail_msg(p, MPH_ERR_STATE, "no document parsed");
    if (h == MPH_JSON_ROOT) {
        *depth = 0;
        return MPH_OK;
    }
    size_t d = size_t(h & kDepthMask);
    if (d == 0 || d > p->top || p->slots[d].serial != (h >> kDepthBits))
        return fail_msg(p, MPH_ERR_STATE, "stale JSON value handle");
    *depth = d;
    return MPH_OK;
}

/* Retires the children of slot d and fills slot d+1 with v. */
mph_err_t too_deep(P *p)
{
    return fail_msg(p, MPH_ERR_RANGE,
                    "JSON nesting deeper than MPH_JSON_MAX_DEPTH");
}

HOT mph_json_val_t push_child(P *p, size_t d, const od::value &v)
{
    slot &c = p->slots[d + 1];
    uint64_t s = ++p->serial & kSerialMask;
    if (s == 0)
        s = ++p->serial & kSerialMask;
    c.serial = s;
    c.val = v;
    c.kind = K_UNOPENED;
    c.it = IT_FRESH;
    c.pos = 0;
    p->top = d + 1;
    return make_handle(s, d + 1);
}

template <class F> HOT error_code with_value(P *p, size_t d, F &&f)
{
    if (d == 0)
        return f(p->doc);
    return f(p->slots[d].val);
}

HOT error_code type_of(P *p, size_t d, od::json_type *t)
{
    slot &s = p->slots[d];
    if (s.kind == K_OBJECT) {
        *t = od::json_type::object;
        return simdjson::SUCCESS;
    }
    if (s.kind == K_ARRAY) {
        *t = od::json_type::array;
        return simdjson::SUCCESS;
    }
    return with_value(p, d, [&](auto &v) { return v.type().get(*t); });
}

HOT error_code open_object(P *p, size_t d)
{
    slot &s = p->slots[d];
    if (s.kind == K_OBJECT)
        return simdjson::SUCCESS;
    if (s.kind == K_ARRAY)
        return simdjson::INCORRECT_TYPE;
    error_code e =
        d == 0 ? p->doc.get_object().get(s.obj) : s.val.get_object().get(s.obj);
    if (e)
        return e;
    s.kind = K_OBJECT;
    s.it = IT_FRESH;
    return simdjson::SUCCESS;
}

error_code open_array(P *p, size_t d)
{
    slot &s = p->slots[d];
    if (s.kind == K_ARRAY)
        return simdjson::SUCCESS;
    if (s.kind == K_OBJECT)
        return simdjson::INCORRECT_TYPE;
    error_code e =
        d == 0 ? p->doc.get_array().get(s.arr) : s.val.get_array().get(s.arr);
    if (e)
        return e;
    s.kind = K_ARRAY;
    s.it = IT_FRESH;
    return simdjson::SUCCESS;
}

/* The field key of the object in slot d; the child goes to slot d+1. */
HOT error_code step_field(P *p, size_t d, std::string_view key,
                          mph_json_val_t *out)
{
    error_code e = open_object(p, d);
    if (e)
        return e;
    slot &s = p->slots[d];
    p->top = d;
    bool from_start = s.it == IT_FRESH;
    s.it = s.it == IT_TAKEN || s.it == IT_BROKEN ? IT_BROKEN : IT_DIRTY;
    /* An unordered lookup made of two ordered ones: from here to the end,
     * then from the start. Not find_field_unordered(): its wrap-around scan
     * assumes a well-formed object (SIMDJSON_ASSUME) and runs off the end of
     * a malformed one. */
    od::value v;
    e = s.obj.find_field(key).get(v);
    if (e == simdjson::NO_SUCH_FIELD && !from_start) {
        bool nonempty;
        e = s.obj.reset().get(nonempty);
        if (!e)
            e = s.obj.find_field(key).get(v);
    }
    if (e)
        return e;
    *out = push_child(p, d, v);
    return simdjson::SUCCESS;
}

/* Element i of the array in slot d (opened); the child goes to slot d+1.
 * The caller checked d < MPH_JSON_MAX_DEPTH, as for step_field. */
error_code step_index(P *p, size_t d, size_t i, mph_json_val_t *out)
{
    slot &s = p->slots[d];
    p->top = d;
    error_code e;
    bool restart = s.it == IT_FRESH || s.it == IT_DIRTY || s.it == IT_END ||
                   i < s.pos || (i == s.pos && s.it == IT_TAKEN);
    if (restart) {
        if (s.it != IT_FRESH) {
            bool nonempty;
            e = s.arr.reset().get(nonempty);
            if (e)
                return e;
        }
        e = s.arr.begin().get(s.ait);
        if (e)
            return e;
        s.pos = 0;
        s.it = IT_AT;
    } else if (s.it == IT_TAKEN) {
        ++s.ait;
        ++s.pos;
        s.it = IT_AT;
    }
    /* s.it == IT_AT: the iterator stands at element s.pos (or at the end). */
    for (;;) {
        if (!(s.ait != s.ait)) {
            s.it = IT_END;
            return simdjson::INDEX_OUT_OF_BOUNDS;
        }
        od::value v;
        e = (*s.ait).get(v);
        if (e)
            return e;
        if (s.pos == i) {
            s.it = IT_TAKEN;
            *out = push_child(p, d, v);
            return simdjson::SUCCESS;
        }
        ++s.ait;
        ++s.pos;
    }
}

/* A lookup key may not contain '"' (simdjson compares raw keys and would
 * read past the key's closing quote) nor '\' (never equal to a raw key). */
bool key_ok(const char *k, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (k[i] == '"' || k[i] == '\\')
            return false;
    return true;
}

bool parse_index(const char *s, size_t n, size_t *out)
{
    if (n == 0)
        return false;
    size_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        size_t dgt = size_t(s[i] - '0');
        if (v > (SIZE_MAX - dgt) / 10)
            v = SIZE_MAX; /* beyond any array: NOENT */
        else
            v = v * 10 + dgt;
    }
    *out = v;
    return true;
}

/* Resolves from and walks path below it; *depth receives the slot of the
 * value found (from's own slot for an empty path). */
HOT mph_err_t lookup(P *p, mph_json_val_t from, const char *path, size_t *depth)
{
    size_t d = 0;
    mph_err_t err = resolve(p, from, &d);
    if (err)
        return err;
    if (path == nullptr || *path == '\0') {
        *depth = d;
        return MPH_OK;
    }
    /* Syntax first, so that "a..b" is invalid whatever the document holds. */
    const char *c = path;
    bool seg_start = true;
    for (;; c++) {
        char ch = *c;
        if (ch == '.' || ch == '\0') {
            if (seg_start)
                return fail_msg(p, MPH_ERR_INVALID,
                                "empty segment in JSON path");
            if (ch == '\0')
                break;
            seg_start = true;
        } else if (ch == '"' || ch == '\\') {
            return fail_msg(p, MPH_ERR_INVALID,
                            "JSON path segment contains '\"' or '\\'");
        } else {
            seg_start = false;
        }
    }
    const char *end = c;
    const char *s = path;
    mph_json_val_t h;
    for (;;) {
        const char *dot = s;
        while (dot < end && *dot != '.')
            dot++;
        size_t n = size_t(dot - s);
        if (d >= MPH_JSON_MAX_DEPTH)
            return too_deep(p);
        slot &sl = p->slots[d];
        error_code e;
        if (sl.kind == K_OBJECT) {
            e = step_field(p, d, std::string_view(s, n), &h);
        } else {
            od::json_type t;
            e = type_of(p, d, &t);
            if (e)
                return fail(p, e);
            if (t == od::json_type::object) {
                e = step_field(p, d, std::string_view(s, n), &h);
            } else if (t == od::json_type::array) {
                size_t idx;
                if (!parse_index(s, n, &idx))
                    return fail_msg(
                        p, MPH_ERR_TYPE,
                        "JSON path: non-numeric segment on an array");
                e = open_array(p, d);
                if (!e)
                    e = step_index(p, d, idx, &h);
            } else {
                return fail_msg(p, MPH_ERR_TYPE,
                                "JSON path: segment applied to a scalar");
            }
        }
        if (e)
            return fail(p, e);
        d++;
        if (dot == end)
            break;
        s = dot + 1;
    }
    *depth = d;
    return MPH_OK;
}

mph_json_val_t handle_of(P *p, size_t d)
{
    return d == 0 ? MPH_JSON_ROOT : make_handle(p->slots[d].serial, d);
}

/* ------------------------------------------------------------------------
 * Full validation
 * ------------------------------------------------------------------------ */

error_code check_value(P *p, od::value &v, size_t depth);

error_code check_object(P *p, od::object &o, size_t depth)
{
    if (depth > MPH_JSON_MAX_DEPTH)
        return simdjson::DEPTH_ERROR;
    for (auto fr : o) {
        od::field f;
        error_code e = std::move(fr).get(f);
        if (e)
            return e;
        od::value &fv = f.value();
        std::string_view vt = fv.raw_json_token();
        const char *ks;
        size_t kn;
        e = finish_str(p, reinterpret_cast<const uint8_t *>(f.key().raw()),
                       reinterpret_cast<const uint8_t *>(vt.data()), &ks, &kn,
                       false);
        if (e)
            return e;
        e = check_value(p, fv, depth + 1);
        if (e)
            return e;
    }
    return simdjson::SUCCESS;
}

error_code check_array(P *p, od::array &a, size_t depth)
{
    if (depth > MPH_JSON_MAX_DEPTH)
        return simdjson::DEPTH_ERROR;
    for (auto er : a) {
        od::value ev;
        error_code e = std::move(er).get(ev);
        if (e)
            return e;
        e = check_value(p, ev, depth + 1);
        if (e)
            return e;
    }
    return simdjson::SUCCESS;
}

/* A scalar (v is an od::value or the document); containers are the
 * caller's. Wrong-type answers from simdjson mean malformed atoms here. */
template <class V> error_code check_scalar(P *p, V &v, od::json_type t)
{
    error_code e = simdjson::SUCCESS;
    switch (t) {
    case od::json_type::string: {
        const char *s;
        size_t n;
        return read_str(p, v, &s, &n, false);
    }
    case od::json_type::number: {
        double x;
        e = v.get_double().get(x);
        return e == simdjson::INCORRECT_TYPE ? simdjson::NUMBER_ERROR : e;
    }
    case od::json_type::boolean: {
        bool b;
        return read_bool(v, &b);
    }
    case od::json_type::null:
        return read_null(v);
    default:
        return simdjson::TAPE_ERROR;
    }
}

error_code check_value(P *p, od::value &v, size_t depth)
{
    od::json_type t;
    error_code e = v.type().get(t);
    if (e)
        return e;
    if (t == od::json_type::object) {
        od::object o;
        e = v.get_object().get(o);
        return e ? e : check_object(p, o, depth);
    }
    if (t == od::json_type::array) {
        od::array a;
        e = v.get_array().get(a);
        return e ? e : check_array(p, a, depth);
    }
    return check_scalar(p, v, t);
}

/* Validates the value in slot d, opening it into the slot if it is a
 * container so that the slot stays coherent. */
error_code check_slot(P *p, size_t d)
{
    slot &s = p->slots[d];
    od::json_type t;
    error_code e = type_of(p, d, &t);
    if (e)
        return e;
    p->top = d;
    if (t == od::json_type::object) {
        e = open_object(p, d);
        if (!e && s.it != IT_FRESH) {
            bool nonempty;
            e = s.obj.reset().get(nonempty);
        }
        if (e)
            return e;
        s.it = IT_END;
        return check_object(p, s.obj, d);
    }
    if (t == od::json_type::array) {
        e = open_array(p, d);
        if (!e && s.it != IT_FRESH) {
            bool nonempty;
            e = s.arr.reset().get(nonempty);
        }
        if (e)
            return e;
        s.it = IT_END;
        return check_array(p, s.arr, d);
    }
    return with_value(p, d, [&](auto &v) { return check_scalar(p, v, t); });
}

/* Nothing but whitespace after the root value (read to its end first,
 * without validating what is skipped). */
error_code check_end(P *p)
{
    slot &s = p->slots[0];
    od::json_type t;
    std::string_view raw;
    error_code e = type_of(p, 0, &t);
    if (e)
        return e;
    p->top = 0;
    if (t == od::json_type::object || t == od::json_type::array) {
        e = t == od::json_type::object ? open_object(p, 0) : open_array(p, 0);
        if (!e && s.it != IT_END)
            e = t == od::json_type::object ? s.obj.raw_json().get(raw)
                                           : s.arr.raw_json().get(raw);
        if (e)
            return e;
        s.it = IT_END;
    } else {
        /* A scalar root is re-readable; consuming it again is a no-op. */
        e = p->doc.raw_json().get(raw);
        if (e)
            return e;
    }
    const char *loc;
    e = p->doc.current_location().get(loc);
    if (e == simdjson::OUT_OF_BOUNDS)
        return simdjson::SUCCESS;
    if (e)
        return e;
    return simdjson::TRAILING_CONTENT;
}

/* Makes the document's reader start again (only when not poisoned). */
void rewind_doc(P *p)
{
    p->doc.rewind();
    slot &s = p->slots[0];
    s.kind = K_UNOPENED;
    s.it = IT_FRESH;
    p->top = 0;
}

/* ------------------------------------------------------------------------
 * Parsing
 * ------------------------------------------------------------------------ */

mph_err_t do_parse(P *p, const void *buf, size_t len, size_t readable)
{
    p->parsed = false;
    p->fatal = simdjson::SUCCESS;
    p->last_msg = "";
    p->last_off = SIZE_MAX;
    p->top = 0;
    p->gen++;
    p->slots[0].kind = K_UNOPENED;
    p->slots[0].it = IT_FRESH;
    arena_reset(p);
    p->input = nullptr;
    p->input_len = 0;
    if (buf == nullptr && len > 0)
        return fail_msg(p, MPH_ERR_INVALID, "NULL buffer");
    if (readable < len)
        return fail_msg(p, MPH_ERR_INVALID, "readable < len");
    if (len > p->max_doc)
        return fail_msg(p, MPH_ERR_RANGE,
                        "JSON document larger than the parser's limit");

    /* Grow simdjson's buffers geometrically so that slowly growing
     * documents do not reallocate each time. */
    if (len > p->parser.capacity()) {
        size_t want = 2 * p->parser.capacity();
        if (want < len)
            want = len;
        if (want > p->max_doc)
            want = p->max_doc;
        error_code e = p->parser.allocate(want);
        if (e)
            return fail(p, e);
    }

    size_t cap;
    if (readable - len >= MPH_JSON_PADDING) {
        p->input = static_cast<const uint8_t *>(buf);
        p->in_place = true;
        cap = readable;
    } else {
        if (p->pad_cap < len + MPH_JSON_PADDING) {
            size_t want = 2 * p->pad_cap;
            if (want < len + MPH_JSON_PADDING)
                want = len + MPH_JSON_PADDING;
            uint8_t *nb = alloc_bytes(p, want);
            delete[] p->pad;
            p->pad = nb;
            p->pad_cap = want;
        }
        if (len > 0)
            std::memcpy(p->pad, buf, len);
        std::memset(p->pad + len, 0, MPH_JSON_PADDING);
        p->input = p->pad;
        p->in_place = false;
        cap = len + MPH_JSON_PADDING;
    }
    p->input_len = len;
    error_code e =
        p->parser.iterate(reinterpret_cast<const char *>(p->input), len, cap)
            .get(p->doc);
    if (e) {
        /* Not parsed: no location to report. */
        p->last_msg = simdjson::error_message(e);
        p->fatal = e;
        return map_err(e);
    }
    p->parsed = true;
    return MPH_OK;
}

/* Runs f, turning any C++ exception into an error code. */
template <class F> mph_err_t guarded(P *p, F &&f) noexcept
{
    try {
        if (p != nullptr && p->fault == MPH__JSON_FAULT_ENTRY) {
            p->fault = MPH__JSON_FAULT_NONE;
            throw std::bad_alloc();
        }
        return f();
    } catch (const std::bad_alloc &) {
        if (p != nullptr) {
            p->last_msg = "out of memory";
            if (p->parsed && p->fatal == simdjson::SUCCESS)
                p->fatal = simdjson::MEMALLOC;
        }
        return MPH_ERR_NOMEM;
    } catch (...) {
        if (p != nullptr) {
            p->last_msg =
                "internal error: unexpected C++ exception in the JSON shim";
            if (p->parsed && p->fatal == simdjson::SUCCESS)
                p->fatal = simdjson::UNEXPECTED_ERROR;
        }
        return MPH_ERR_INTERNAL;
    }
}

/* Reads slot d's value with f (a generic lambda taking od::value& or
 * od::document&) after resolving h. */
template <class F> mph_err_t read_value(P *p, mph_json_val_t h, F &&f)
{
    size_t d = 0;
    mph_err_t err = resolve(p, h, &d);
    if (err)
        return err;
    error_code e = with_value(p, d, f);
    return e ? fail(p, e) : MPH_OK;
}

/* Lookup and read in one guarded call: f reads the value in slot d. */
template <class F>
mph_err_t get_at(mph_json_parser_t *p, mph_json_val_t from, const char *path,
                 F &&f) noexcept
{
    return guarded(p, [&]() -> mph_err_t {
        size_t d = 0;
        mph_err_t err = lookup(p, from, path, &d);
        if (err)
            return err;
        error_code e = with_value(p, d, f);
        return e ? fail(p, e) : MPH_OK;
    });
}

void set_errstr(char *errstr, size_t size, const char *msg)
{
    if (errstr != nullptr && size > 0)
        std::snprintf(errstr, size, "%s", msg);
}

} // namespace

/* ------------------------------------------------------------------------
 * The C API
 * ------------------------------------------------------------------------ */

extern "C" {

mph_json_parser_t *mph_json_parser_new(size_t max_doc_bytes, char *errstr,
                                       size_t errstr_size) noexcept
{
    try {
        size_t max = max_doc_bytes ? max_doc_bytes : MPH_JSON_DEFAULT_MAX_DOC;
        std::unique_ptr<P> p(new P(max));
        p->slots = new slot[MPH_JSON_MAX_DEPTH + 1];
        error_code e =
            p->parser.allocate(kInitialCapacity < max ? kInitialCapacity : max);
        if (e) {
            set_errstr(errstr, errstr_size, simdjson::error_message(e));
            return nullptr;
        }
        return p.release();
    } catch (const std::bad_alloc &) {
        set_errstr(errstr, errstr_size, "out of memory");
    } catch (...) {
        set_errstr(errstr, errstr_size,
                   "internal error creating the JSON parser");
    }
    return nullptr;
}

void mph_json_parser_destroy(mph_json_parser_t *p) noexcept
{
    try {
        delete p;
    } catch (...) {
        /* Destructors of simdjson and of our buffers do not throw. */
    }
}

mph_err_t mph_json_parse(mph_json_parser_t *p, const void *buf, size_t len,
                         size_t readable) noexcept
{
    if (p == nullptr)
        return MPH_ERR_INVALID;
    return guarded(p, [&] { return do_parse(p, buf, len, readable); });
}

bool mph_json_parsed_in_place(const mph_json_parser_t *p) noexcept
{
    return p != nullptr && p->parsed && p->in_place;
}

mph_err_t mph_json_validate(mph_json_parser_t *p) noexcept
{
    if (p == nullptr)
        return MPH_ERR_INVALID;
    return guarded(p, [&]() -> mph_err_t {
        size_t d = 0;
        mph_err_t err = resolve(p, MPH_JSON_ROOT, &d);
        if (err)
            return err;
        /* Start from the top whatever was read before. */
        rewind_doc(p);
        error_code e = check_slot(p, 0);
        if (!e)
            e = check_end(p);
        if (e)
            return fail(p, e);
        rewind_doc(p);
        return MPH_OK;
    });
}

mph_err_t mph_json_find(mph_json_parser_t *p, mph_json_val_t from,
                        const char *path, mph_json_val_t *out) noexcept
{
    if (p == nullptr || out == nullptr)
        return MPH_ERR_INVALID;
    return guarded(p, [&]() -> mph_err_t {
        size_t d = 0;
        mph_err_t err = lookup(p, from, path, &d);
        if (err)
            return err;
        *out = d == 0 ? from : handle_of(p, d);
        return MPH_OK;
    });
}

mph_err_t mph_json_field(mph_json_parser_t *p, mph_json_val_t obj,
                         const char *name, size_t name_len,
                         mph_json_val_t *out) noexcept
{
    if (p == nullptr || out == nullptr || (name == nullptr && name_len > 0))
        return MPH_ERR_INVALID;
    return guarded(p, [&]() -> mph_err_t {
        size_t d = 0;
        mph_err_t err = resolve(p, obj, &d);
        if (err)
            return err;
        if (!key_ok(name, name_len))
            return fail_msg(p, MPH_ERR_INVALID,
                            "JSON field name contains '\"' or '\\'");
        if (d >= MPH_JSON_MAX_DEPTH)
            return too_deep(p);
        error_code e = step_field(p, d, std::string_view(name, name_len), out);
        return e ? fail(p, e) : MPH_OK;
    });
}

mph_err_t mph_json_index(mph_json_parser_t *p, mph_json_val_t arr, size_t index,
                         mph_json_val_t *out) noexcept
{
    if (p == nullptr || out == nullptr)
        return MPH_ERR_INVALID;
    return guarded(p, [&]() -> mph_err_t {
        size_t d = 0;
        mph_err_t err = resolve(p, arr, &d);
        if (err)
            return err;
        if (d >= MPH_JSON_MAX_DEPTH)
            return too_deep(p);
        error_code e = open_array(p, d);
        if (!e)
            e = step_index(p, d, index, out);
        return e ? fail(p, e) : MPH_OK;
    });
}

mph_err_t mph_json_type(mph_json_parser_t *p, mph_json_val_t v,
                        mph_json_type_t *out) noexcept
{
    if (p == nullptr || out == nullptr)
        return MPH_ERR_INVALID;
    return guarded(p, [&]() -> mph_err_t {
        size_t d = 0;
        mph_err_t err = resolve(p, v, &d);
        if (err)
            return err;
        od::json_type t;
        error_code e = type_of(p, d, &t);
        if (e)
            return fail(p, e);
        switch (t) {
        case od::json_type::null:
            *out = MPH_JSON_NULL;
            break;
        case od::json_type::boolean:
            *out = MPH_JSON_BOOL;
            break;
        case od::json_type::number:
            *out = MPH_JSON_NUMBER;
            break;
        case od::json_type::string:
            *out = MPH_JSON_STRING;
            break;
        case od::json_type::array:
            *out = MPH_JSON_ARRAY;
            break;
        case od::json_type::object:
            *out = MPH_JSON_OBJECT;
            break;
        default:
            return fail(p, simdjson::TAPE_ERROR);
        }
        return MPH_OK;
    });
}

mph_err_t mph_json_str(mph_json_parser_t *p, mph_json_val_t v, const char **s,
                       size_t *len) noexcept
{
    if (p == nullptr || s == nullptr || len == nullptr)
        return MPH_ERR_INVALID;
    return guarded(p, [&] {
        return read_value(
            p, v, [&](auto &x) { return read_str(p, x, s, len, true); });
    });
}

mph_err_t mph_json_i64(mph_json_parser_t *p, mph_json_val_t v,
                       int64_t *out) noexcept
{
    if (p == nullptr || out == nullptr)
        return MPH_ERR_INVALID;
    return guarded(p, [&] {
        return read_value(p, v, [&](auto &x) {
            return classify_number_error(x, x.get_int64().get(*out), true);
        });
    });
}

mph_err_t mph_json_u64(mph_json_parser_t *p, mph_json_val_t v,
                       uint64_t *out) noexcept
{
    if (p == nullptr || out == nullptr)
        return MPH_ERR_INVALID;
    return guarded(p, [&] {
        return read_value(p, v, [&](auto &x) {
            return classify_number_error(x, x.get_uint64().get(*out), true);
        });
    });
}

mph_err_t mph_json_f64(mph_json_parser_t *p, mph_json_val_t v,
                       double *out) noexcept
{
    if (p == nullptr || out == nullptr)
        return MPH_ERR_INVALID;
    return guarded(p, [&] {
        return read_value(p, v, [&](auto &x) {
            return classify_number_error(x, x.get_double().get(*out), false);
        });
    });
}

mph_err_t mph_json_bool(mph_json_parser_t *p, mph_json_val_t v,
                        bool *out) noexcept
{
    if (p == nullptr || out == nullptr)
        return MPH_ERR_INVALID;
    return guarded(p, [&] {
        return read_value(p, v, [&](auto &x) { return read_bool(x, out); });
    });
}

mph_err_t mph_json_is_null(mph_json_parser_t *p, mph_json_val_t v,
                           bool *out) noexcept
{
    if (p == nullptr || out == nullptr)
        return MPH_ERR_INVALID;
    return guarded(p, [&]() -> mph_err_t {
        size_t d = 0;
        mph_err_t err = resolve(p, v, &d);
        if (err)
            return err;
        od::json_type t;
        error_code e = type_of(p, d, &t);
        if (e)
            return fail(p, e);
        if (t != od::json_type::null) {
            *out = false;
            return MPH_OK;
        }
        e = with_value(p, d, [&](auto &x) { return read_null(x); });
        if (e)
            return fail(p, e);
        *out = true;
        return MPH_OK;
    });
}

mph_err_t mph_json_raw(mph_json_parser_t *p, mph_json_val_t v, const char **s,
                       size_t *len) noexcept
{
    if (p == nullptr || s == nullptr || len == nullptr)
        return MPH_ERR_INVALID;
    return guarded(p, [&]() -> mph_err_t {
        size_t d = 0;
        mph_err_t err = resolve(p, v, &d);
        if (err)
            return err;
        od::json_type t;
        error_code e = type_of(p, d, &t);
        if (e)
            return fail(p, e);
        slot &sl = p->slots[d];
        std::string_view raw;
        if (t == od::json_type::object || t == od::json_type::array) {
            e = t == od::json_type::object ? open_object(p, d)
                                           : open_array(p, d);
            if (e)
                return fail(p, e);
            p->top = d;
            e = t == od::json_type::object ? sl.obj.raw_json().get(raw)
                                           : sl.arr.raw_json().get(raw);
            if (e)
                return fail(p, e);
            sl.it = IT_END;
        } else {
            raw = d == 0 ? token_of(p->doc) : token_of(sl.val);
            if (raw.empty())
                return fail(p, simdjson::TAPE_ERROR);
        }
        size_t n = raw.size();
        while (n > 0 && (raw[n - 1] == ' ' || raw[n - 1] == '\t' ||
                         raw[n - 1] == '\n' || raw[n - 1] == '\r'))
            n--;
        *s = raw.data();
        *len = n;
        return MPH_OK;
    });
}

mph_err_t mph_json_count(mph_json_parser_t *p, mph_json_val_t v,
                         size_t *out) noexcept
{
    if (p == nullptr || out == nullptr)
        return MPH_ERR_INVALID;
    return guarded(p, [&]() -> mph_err_t {
        size_t d = 0;
        mph_err_t err = resolve(p, v, &d);
        if (err)
            return err;
        od::json_type t;
        error_code e = type_of(p, d, &t);
        if (e)
            return fail(p, e);
        slot &s = p->slots[d];
        bool nonempty;
        p->top = d;
        if (t == od::json_type::object) {
            e = open_object(p, d);
            if (!e && s.it != IT_FRESH)
                e = s.obj.reset().get(nonempty);
            if (!e)
                e = s.obj.count_fields().get(*out);
        } else if (t == od::json_type::array) {
            e = open_array(p, d);
            if (!e && s.it != IT_FRESH)
                e = s.arr.reset().get(nonempty);
            if (!e)
                e = s.arr.count_elements().get(*out);
        } else {
            e = simdjson::INCORRECT_TYPE;
        }
        if (e)
            return fail(p, e);
        s.it = IT_FRESH; /* count_* leave the reader at the start */
        return MPH_OK;
    });
}

mph_err_t mph_json_get_str(mph_json_parser_t *p, mph_json_val_t from,
                           const char *path, const char **s,
                           size_t *len) noexcept
{
    if (p == nullptr || s == nullptr || len == nullptr)
        return MPH_ERR_INVALID;
    return get_at(p, from, path,
                  [&](auto &x) { return read_str(p, x, s, len, true); });
}

mph_err_t mph_json_get_i64(mph_json_parser_t *p, mph_json_val_t from,
                           const char *path, int64_t *out) noexcept
{
    if (p == nullptr || out == nullptr)
        return MPH_ERR_INVALID;
    return get_at(p, from, path, [&](auto &x) {
        return classify_number_error(x, x.get_int64().get(*out), true);
    });
}

mph_err_t mph_json_get_u64(mph_json_parser_t *p, mph_json_val_t from,
                           const char *path, uint64_t *out) noexcept
{
    if (p == nullptr || out == nullptr)
        return MPH_ERR_INVALID;
    return get_at(p, from, path, [&](auto &x) {
        return classify_number_error(x, x.get_uint64().get(*out), true);
    });
}

mph_err_t mph_json_get_f64(mph_json_parser_t *p, mph_json_val_t from,
                           const char *path, double *out) noexcept
{
    if (p == nullptr || out == nullptr)
        return MPH_ERR_INVALID;
    return get_at(p, from, path, [&](auto &x) {
        return classify_number_error(x, x.get_double().get(*out), false);
    });
}

mph_err_t mph_json_get_bool(mph_json_parser_t *p, mph_json_val_t from,
                            const char *path, bool *out) noexcept
{
    mph_json_val_t v;
    mph_err_t err = mph_json_find(p, from, path, &v);
    return err ? err : mph_json_bool(p, v, out);
}

mph_err_t mph_json_get_is_null(mph_json_parser_t *p, mph_json_val_t from,
                               const char *path, bool *out) noexcept
{
    mph_json_val_t v;
    mph_err_t err = mph_json_find(p, from, path, &v);
    return err ? err : mph_json_is_null(p, v, out);
}

static mph_err_t get_container(mph_json_parser_t *p, mph_json_val_t from,
                               const char *path, mph_json_type_t want,
                               mph_json_val_t *out) noexcept
{
    mph_json_val_t v;
    mph_json_type_t t;
    mph_err_t err = mph_json_find(p, from, path, &v);
    if (!err)
        err = mph_json_type(p, v, &t);
    if (err)
        return err;
    if (t != want) {
        p->last_msg = want == MPH_JSON_ARRAY ? "not an array" : "not an object";
        return MPH_ERR_TYPE;
    }
    *out = v;
    return MPH_OK;
}

mph_err_t mph_json_get_array(mph_json_parser_t *p, mph_json_val_t from,
                             const char *path, mph_json_val_t *out) noexcept
{
    if (p == nullptr || out == nullptr)
        return MPH_ERR_INVALID;
    return get_container(p, from, path, MPH_JSON_ARRAY, out);
}

mph_err_t mph_json_get_object(mph_json_parser_t *p, mph_json_val_t from,
                              const char *path, mph_json_val_t *out) noexcept
{
    if (p == nullptr || out == nullptr)
        return MPH_ERR_INVALID;
    return get_container(p, from, path, MPH_JSON_OBJECT, out);
}

mph_err_t mph_json_object_next(mph_json_parser_t *p, mph_json_val_t obj,
                               const char **key, size_t *key_len,
                               mph_json_val_t *val) noexcept
{
    if (p == nullptr || key == nullptr || key_len == nullptr || val == nullptr)
        return MPH_ERR_INVALID;
    return guarded(p, [&]() -> mph_err_t {
        size_t d = 0;
        mph_err_t err = resolve(p, obj, &d);
        if (err)
            return err;
        if (d >= MPH_JSON_MAX_DEPTH)
            return too_deep(p);
        error_code e = open_object(p, d);
        if (e)
            return fail(p, e);
        slot &s = p->slots[d];
        p->top = d;
        if (s.it == IT_BROKEN) {
            s.it = IT_DIRTY;
            return fail_msg(p, MPH_ERR_STATE,
                            "object looked up while being iterated");
        }
        if (s.it == IT_TAKEN) {
            ++s.oit;
        } else {
            if (s.it != IT_FRESH) {
                bool nonempty;
                e = s.obj.reset().get(nonempty);
                if (e)
                    return fail(p, e);
            }
            e = s.obj.begin().get(s.oit);
            if (e)
                return fail(p, e);
        }
        if (!(s.oit != s.oit)) {
            s.it = IT_END;
            p->last_msg = "";
            return MPH_ERR_NOENT;
        }
        od::field f;
        e = (*s.oit).get(f);
        if (e)
            return fail(p, e);
        s.it = IT_TAKEN;
        od::value &fv = f.value();
        std::string_view vt = fv.raw_json_token();
        const char *ks;
        size_t kn;
        e = finish_str(p, reinterpret_cast<const uint8_t *>(f.key().raw()),
                       reinterpret_cast<const uint8_t *>(vt.data()), &ks, &kn,
                       true);
        if (e)
            return fail(p, e);
        *key = ks;
        *key_len = kn;
        *val = push_child(p, d, fv);
        return MPH_OK;
    });
}

mph_err_t mph_json_array_next(mph_json_parser_t *p, mph_json_val_t arr,
                              mph_json_val_t *val) noexcept
{
    if (p == nullptr || val == nullptr)
        return MPH_ERR_INVALID;
    return guarded(p, [&]() -> mph_err_t {
        size_t d = 0;
        mph_err_t err = resolve(p, arr, &d);
        if (err)
            return err;
        if (d >= MPH_JSON_MAX_DEPTH)
            return too_deep(p);
        error_code e = open_array(p, d);
        if (e)
            return fail(p, e);
        slot &s = p->slots[d];
        size_t next = s.it == IT_TAKEN ? s.pos + 1 : s.it == IT_AT ? s.pos : 0;
        e = step_index(p, d, next, val);
        if (e == simdjson::INDEX_OUT_OF_BOUNDS) {
            p->last_msg = "";
            return MPH_ERR_NOENT;
        }
        return e ? fail(p, e) : MPH_OK;
    });
}

const char *mph_json_last_error(const mph_json_parser_t *p) noexcept
{
    return p != nullptr && p->last_msg != nullptr ? p->last_msg : "";
}

size_t mph_json_last_error_offset(const mph_json_parser_t *p) noexcept
{
    return p != nullptr ? p->last_off : SIZE_MAX;
}

bool mph_json_utf8_valid(const void *buf, size_t len) noexcept
{
    if (len == 0)
        return true;
    if (buf == nullptr)
        return false;
    return simdjson::validate_utf8(static_cast<const char *>(buf), len);
}

mph_err_t mph__json_check_value(mph_json_parser_t *p, mph_json_val_t v) noexcept
{
    if (p == nullptr)
        return MPH_ERR_INVALID;
    return guarded(p, [&]() -> mph_err_t {
        size_t d = 0;
        mph_err_t err = resolve(p, v, &d);
        if (err)
            return err;
        error_code e = check_slot(p, d);
        return e ? fail(p, e) : MPH_OK;
    });
}

mph_err_t mph__json_check_end(mph_json_parser_t *p) noexcept
{
    if (p == nullptr)
        return MPH_ERR_INVALID;
    return guarded(p, [&]() -> mph_err_t {
        size_t d = 0;
        mph_err_t err = resolve(p, MPH_JSON_ROOT, &d);
        if (err)
            return err;
        error_code e = check_end(p);
        return e ? fail(p, e) : MPH_OK;
    });
}

void mph__json_inject_fault(mph_json_parser_t *p, int fault) noexcept
{
    if (p != nullptr)
        p->fault = fault;
}

} /* extern "C" */
