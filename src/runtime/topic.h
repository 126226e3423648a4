/*
 * runtime/topic.h — what topic.c offers the rest of the runtime besides the
 * public mephisto/topic.h: Kafka's rule for topic names, for the names the
 * runtime derives (changelogs, repartition topics) as for declared ones.
 */
#ifndef MPH_RUNTIME_TOPIC_H
#define MPH_RUNTIME_TOPIC_H

#include <stdbool.h>
#include <stddef.h>

#include "mephisto/common.h"

/* Longest topic name Kafka accepts. */
#define MPH__TOPIC_NAME_MAX 249

/* Checks name against Kafka's rule: 1 to 249 characters of [a-zA-Z0-9._-],
 * neither "." nor "..". On failure returns MPH_ERR_INVALID and writes
 * "topic '<name>': <reason>" (the name escaped, see mph_conf_escape()).
 * @locality any */
mph_err_t mph__topic_name_check(const char *name, char *errstr,
                                size_t errstr_size);

#endif /* MPH_RUNTIME_TOPIC_H */
