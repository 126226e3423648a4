#include <stdlib.h>
#include <string.h>

#include <stdio.h>

#include "io/codec.h"
#include "runtime/opts.h"

mph_err_t mph__opts_str(char **slot, const char *v)
{
    char *c = strdup(v);
    if (!c)
        return MPH_ERR_NOMEM;
    free(*slot);
    *slot = c;
    return MPH_OK;
}

mph_err_t mph__opts_pair(char ***list, size_t *n, const char *name, const char *value)
{
    for (size_t i = 0; i < *n; i++)
        if (!strcmp((*list)[2 * i], name))
            return mph__opts_str(&(*list)[2 * i + 1], value);
    char **c = realloc(*list, (*n * 2 + 3) * sizeof *c);
    if (!c)
        return MPH_ERR_NOMEM;
    *list = c;
    c[*n * 2] = strdup(name);
    c[*n * 2 + 1] = strdup(value);
    c[*n * 2 + 2] = NULL;
    if (!c[*n * 2] || !c[*n * 2 + 1]) {
        free(c[*n * 2]);
        free(c[*n * 2 + 1]);
        c[*n * 2] = NULL;
        return MPH_ERR_NOMEM;
    }
    (*n)++;
    return MPH_OK;
}

void mph__opts_pairs_free(char **list, size_t n)
{
    for (size_t i = 0; list && i < n * 2; i++)
        free(list[i]);
    free(list);
}

mph_err_t mph__opts_codec(const char *name, const char *value, char **slot, char *errstr,
                          size_t errstr_size)
{
    mph_codec_t c;
    char why[200];
    if (mph__codec_lookup(value, &c, why, sizeof why) != MPH_OK) {
        snprintf(errstr, errstr_size, "%s: %s", name, why);
        return MPH_ERR_INVALID;
    }
    return mph__opts_str(slot, value);
}
