/*
 * Helpers shared by mephisto's tests: which broker to use, unique names,
 * temporary directories.
 *
 * Integration tests take the broker from MEPHISTO_TEST_BROKERS
 * ("127.0.0.1:9092" or "kafka://127.0.0.1:9092"); unset, they use the
 * in-process mock cluster ("mock://1").
 */
#ifndef MPH_TEST_SUPPORT_H
#define MPH_TEST_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The `broker` setting for this run: "kafka://..." or "mock://1". Static. */
const char *mph_test_broker(void);
/* True when the run uses a real broker. */
bool mph_test_real_broker(void);
/* Writes "<prefix>-<pid>-<time>-<counter>" into buf: unique per call. */
const char *mph_test_unique(const char *prefix, char *buf, size_t size);
/* Creates a fresh temporary directory and returns its path (static per call
 * site is not required: buf is the caller's). */
const char *mph_test_tmpdir(const char *prefix, char *buf, size_t size);
/* rm -rf path (only below /tmp). */
void mph_test_rmrf(const char *path);
/* Deterministic PRNG (splitmix64). */
uint64_t mph_test_rand(uint64_t *state);

#endif
