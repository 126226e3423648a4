/*
 * Deterministic input records. Record seq of the stream seeded by `seed` is
 * a pure function of (seed, seq, keys, size, ts): any thread can make any
 * record, and two runs with the same flags produce the same bytes (ts aside,
 * which the latency scenario sets to the send time).
 *
 * Layout (ts always 19 digits at byte 6, so a consumer reads it without a
 * JSON parser; seq follows at byte 32):
 *   {"ts":1732700000000000000,"seq":42,"user":"u000017","page":"/p/311",
 *    "text":"w12 w7 w931 w0","pad":"xxxx"}
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define TS_MIN     1000000000000000000LL
#define SEQ_OFFSET 32

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

size_t bench_record(char *buf, size_t size, char *key, uint64_t seed,
                    uint64_t seq, int keys, int64_t ts_ns)
{
    uint64_t h = mix(seed ^ mix(seq));
    uint64_t h2 = mix(h);
    int user = (int)(h % (uint64_t)(keys > 0 ? keys : 1));
    if (ts_ns < TS_MIN)
        ts_ns = TS_MIN;
    char head[BENCH_MIN_RECORD + 1];
    int n = snprintf(
        head, sizeof head,
        "{\"ts\":%019lld,\"seq\":%llu,\"user\":\"u%06d\",\"page\":\"/p/%d\","
        "\"text\":\"w%d w%d w%d w%d\",\"pad\":\"",
        (long long)ts_ns, (unsigned long long)seq, user, (int)(h2 % 1000),
        (int)((h2 >> 10) % 1000), (int)((h2 >> 20) % 1000),
        (int)((h2 >> 30) % 1000), (int)((h2 >> 40) % 1000));
    if (size < BENCH_MIN_RECORD)
        size = BENCH_MIN_RECORD;
    /* n + pad + 2 ("\"}") == size */
    size_t pad = size - (size_t)n - 2;
    memcpy(buf, head, (size_t)n);
    memset(buf + n, 'x', pad);
    buf[n + pad] = '"';
    buf[n + pad + 1] = '}';
    int kl = snprintf(key, 16, "u%06d", user);
    (void)kl;
    return strlen(key);
}

bool bench_record_parse(const void *buf, size_t len, int64_t *ts_ns,
                        uint64_t *seq)
{
    const char *p = buf;
    if (len < SEQ_OFFSET + 2 || memcmp(p, "{\"ts\":", 6) != 0 ||
        memcmp(p + BENCH_TS_OFFSET + 19, ",\"seq\":", 7) != 0)
        return false;
    int64_t ts = 0;
    for (int i = 0; i < 19; i++) {
        char c = p[BENCH_TS_OFFSET + i];
        if (c < '0' || c > '9')
            return false;
        ts = ts * 10 + (c - '0');
    }
    uint64_t s = 0;
    size_t i = SEQ_OFFSET;
    if (p[i] < '0' || p[i] > '9')
        return false;
    for (; i < len && p[i] >= '0' && p[i] <= '9'; i++)
        s = s * 10 + (uint64_t)(p[i] - '0');
    *ts_ns = ts;
    *seq = s;
    return true;
}

size_t bench_table_key(char *key, long i)
{
    return (size_t)snprintf(key, BENCH_TABLE_KEY_MAX, "key%09ld", i);
}

int64_t bench_table_value_of(long i)
{
    /* Distinct per key and not its index, so a shifted key shows. */
    return (int64_t)i * 7919 + 13;
}

void bench_table_value(unsigned char out[8], long i)
{
    uint64_t u = (uint64_t)bench_table_value_of(i);
    for (int b = 0; b < 8; b++)
        out[b] = (unsigned char)(u >> (56 - 8 * b));
}
