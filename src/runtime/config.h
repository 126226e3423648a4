/*
 * runtime/config.h — internal helpers of the configuration module for the
 * runtime (app start, worker pool, Kafka clients). The public API is
 * include/mephisto/conf.h; these read values the table has already
 * validated, so they fail only on values that bypassed mph_conf_set().
 */
#ifndef MPH_RUNTIME_CONFIG_H
#define MPH_RUNTIME_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "mephisto/conf.h"

/* Highest CPU number a `cpus` list may name. */
#define MPH__CONF_CPU_MAX 4095

/* Parses a cpulist ("0-3,6,8-9"; "" is the empty list) into cpus[],
 * ascending, each CPU once. *count receives the number of CPUs even when it
 * exceeds cap (then only the first cap are written). Errors: MPH_ERR_INVALID
 * with "<reason>, got '<list>'" in errstr (no setting name).
 * @locality any */
mph_err_t mph__conf_cpulist_parse(const char *list, uint16_t *cpus, size_t cap,
                                  size_t *count, char *errstr,
                                  size_t errstr_size);

/* A parsed `broker` setting. */
typedef struct mph__conf_broker {
    int mock_brokers;      /* > 0: start librdkafka's mock cluster with this
                              many brokers; 0: a real cluster */
    const char *bootstrap; /* real cluster: "host:port[,host:port...]" for
                              bootstrap.servers, borrowed from the url passed
                              in (a suffix of it); NULL for mock */
} mph__conf_broker_t;

/* Parses "kafka://host:port[,...]", "mock://" (1 broker) or "mock://N".
 * Errors: MPH_ERR_INVALID with "<reason>, got '<url>'" in errstr.
 * @locality any */
mph_err_t mph__conf_broker_parse(const char *url, mph__conf_broker_t *out,
                                 char *errstr, size_t errstr_size);

/* The number of worker threads conf asks for: `workers` when > 0, else
 * (CPUs in `cpus`, or CPUs in the process's affinity mask when `cpus` is
 * empty) times `threads_per_core`, at most 1024. At least 1.
 * @locality any (conf read-only) */
int mph__conf_worker_count(const mph_conf_t *conf);

/* The inclusive range of an int property of the table (what
 * mph_conf_property() does not report). False past the end or when the
 * property is not an int. @locality any */
bool mph__conf_property_range(size_t index, int64_t *min, int64_t *max);

#endif /* MPH_RUNTIME_CONFIG_H */
