/*
 * json_baseline.h — bare simdjson on-demand (json_baseline.cc), the json
 * scenario's baseline, callable from C.
 */
#ifndef MPH_BENCH_JSON_BASELINE_H
#define MPH_BENCH_JSON_BASELINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Parses recs[i][0..lens[i]) for i < n (each followed by padding readable
 * bytes) and reads "user" (string) and "seq" (uint64); adds their length and
 * value to *checksum. Returns 0, or -1 on the first malformed record. */
int bench_simdjson_decode(const char *const *recs, const size_t *lens, size_t n,
                          size_t padding, uint64_t *checksum)
#ifdef __cplusplus
    noexcept
#endif
    ;

#ifdef __cplusplus
}
#endif
#endif
