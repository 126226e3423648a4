/*
 * Small helpers shared by the option objects of topics and tables: string
 * slots and lists of topic configs (name, value, ..., NULL).
 * @locality the caller's (options are built on the controlling thread)
 */
#ifndef MPH_RUNTIME_OPTS_H
#define MPH_RUNTIME_OPTS_H

#include <stddef.h>

#include "mephisto/common.h"

/* Replaces *slot with a copy of v. */
mph_err_t mph__opts_str(char **slot, const char *v);
/* Sets name to value in the list (replacing an earlier value). */
mph_err_t mph__opts_pair(char ***list, size_t *n, const char *name, const char *value);
void mph__opts_pairs_free(char **list, size_t n);
/* Validates a codec name for option `name` (key_codec, value_codec) and
 * stores it in *slot; errstr says "<name>: <reason>" on failure. */
mph_err_t mph__opts_codec(const char *name, const char *value, char **slot, char *errstr,
                          size_t errstr_size);

#endif
