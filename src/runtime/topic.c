/* Topics and their options. Declared on the controlling thread before start. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ck_pr.h>

#include "io/codec.h"
#include "mephisto/conf.h"
#include "runtime/app.h"
#include "runtime/opts.h"
#include "runtime/topic.h"

mph_err_t mph__topic_name_check(const char *name, char *errstr, size_t errstr_size)
{
    char shown[96];
    const char *why = NULL;
    size_t len = name ? strlen(name) : 0;
    size_t bad = 0;
    if (len == 0)
        why = "must not be empty";
    else if (len > MPH__TOPIC_NAME_MAX)
        why = "is longer than 249 characters";
    else if (!strcmp(name, ".") || !strcmp(name, ".."))
        why = "must not be '.' or '..'";
    else
        for (bad = 0; bad < len; bad++) {
            unsigned char c = (unsigned char)name[bad];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-')) {
                why = "";
                break;
            }
        }
    if (!why)
        return MPH_OK;
    if (errstr && errstr_size) {
        mph_conf_escape(shown, sizeof shown, name ? name : "");
        if (*why) {
            snprintf(errstr, errstr_size,
                     "topic '%s': %s (Kafka's rule: 1 to 249 letters, digits, '.', '_' and '-')",
                     shown, why);
        } else {
            char c[8];
            char one[2] = {name[bad], '\0'};
            mph_conf_escape(c, sizeof c, one);
            snprintf(errstr, errstr_size,
                     "topic '%s': '%s' at position %zu is not allowed (Kafka's rule: 1 to 249 "
                     "letters, digits, '.', '_' and '-')",
                     shown, c, bad + 1);
        }
    }
    return MPH_ERR_INVALID;
}

static const char *const policies[] = {"dead_letter", "skip", "fail", NULL};

static int index_of(const char *const *list, const char *v)
{
    for (int i = 0; list[i]; i++)
        if (strcmp(list[i], v) == 0)
            return i;
    return -1;
}

mph_topic_opts_t *mph_topic_opts_new(void)
{
    mph_topic_opts_t *o = calloc(1, sizeof *o);
    if (o) {
        o->create = -1;
        o->on_decode_error = -1;
        o->on_send_error = -1;
    }
    return o;
}

void mph_topic_opts_destroy(mph_topic_opts_t *o)
{
    if (!o)
        return;
    free(o->key_codec);
    free(o->value_codec);
    mph__opts_pairs_free(o->configs, o->nconfigs);
    free(o);
}

static mph_err_t parse_int(const char *name, const char *v, int min, int max, int *out,
                           char *errstr, size_t errstr_size)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (!*v || *end || n < min || n > max) {
        snprintf(errstr, errstr_size, "%s: must be an integer between %d and %d, got '%s'", name,
                 min, max, v);
        return MPH_ERR_INVALID;
    }
    *out = (int)n;
    return MPH_OK;
}

static int parse_bool(const char *v)
{
    if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes") || !strcasecmp(v, "on"))
        return 1;
    if (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no") ||
        !strcasecmp(v, "off"))
        return 0;
    return -1;
}

mph_err_t mph_topic_opts_set(mph_topic_opts_t *o, const char *name, const char *value,
                             char *errstr, size_t errstr_size)
{
    char tmp[256];
    if (!errstr || !errstr_size) {
        errstr = tmp;
        errstr_size = sizeof tmp;
    }
    if (!o || !name || !value) {
        snprintf(errstr, errstr_size, "topic option: NULL argument");
        return MPH_ERR_INVALID;
    }
    if (!strcmp(name, "key_codec") || !strcmp(name, "value_codec")) {
        mph_err_t err = mph__opts_codec(name, value,
                                        name[0] == 'k' ? &o->key_codec : &o->value_codec,
                                        errstr, errstr_size);
        if (!err && name[0] == 'v')
            o->record = NULL;
        return err;
    }
    if (!strcmp(name, "partitions"))
        return parse_int(name, value, 1, 100000, &o->partitions, errstr, errstr_size);
    if (!strcmp(name, "replication"))
        return parse_int(name, value, 1, 32767, &o->replication, errstr, errstr_size);
    if (!strcmp(name, "create")) {
        int b = parse_bool(value);
        if (b < 0) {
            snprintf(errstr, errstr_size, "create: must be true or false, got '%s'", value);
            return MPH_ERR_INVALID;
        }
        o->create = b;
        return MPH_OK;
    }
    if (!strcmp(name, "on_decode_error")) {
        int p = index_of(policies, value);
        if (p < 0) {
            snprintf(errstr, errstr_size,
                     "on_decode_error: must be dead_letter, skip or fail, got '%s'", value);
            return MPH_ERR_INVALID;
        }
        o->on_decode_error = p;
        return MPH_OK;
    }
    if (!strcmp(name, "on_send_error")) {
        int p = index_of(policies, value);
        if (p < 0) {
            snprintf(errstr, errstr_size,
                     "on_send_error: must be dead_letter, skip or fail, got '%s'", value);
            return MPH_ERR_INVALID;
        }
        o->on_send_error = p;
        return MPH_OK;
    }
    if (!strncmp(name, "config.", 7) && name[7]) {
        return mph__opts_pair(&o->configs, &o->nconfigs, name + 7, value);
    }
    snprintf(errstr, errstr_size,
             "%s: unknown topic option (key_codec, value_codec, partitions, replication, "
             "create, on_decode_error, on_send_error, config.<name>)",
             name);
    return MPH_ERR_NOENT;
}

mph_err_t mph_topic_opts_set_record(mph_topic_opts_t *opts, const mph_record_type_t *type)
{
    if (!opts || !type)
        return MPH_ERR_INVALID;
    opts->record = type;
    free(opts->value_codec);
    opts->value_codec = NULL;
    return MPH_OK;
}

static int codec_of(const char *name)
{
    mph_codec_t c = MPH_CODEC_RAW;
    if (name)
        mph__codec_lookup(name, &c, NULL, 0);
    return (int)c;
}

static mph_err_t opts_copy(mph_topic_opts_t *dst, const mph_topic_opts_t *src)
{
    mph_topic_opts_t *o = dst;
    o->create = -1;
    o->on_decode_error = -1;
    o->on_send_error = -1;
    if (!src)
        return MPH_OK;
    o->partitions = src->partitions;
    o->replication = src->replication;
    o->create = src->create;
    o->on_decode_error = src->on_decode_error;
    o->on_send_error = src->on_send_error;
    o->record = src->record;
    if ((src->key_codec && mph__opts_str(&o->key_codec, src->key_codec)) ||
        (src->value_codec && mph__opts_str(&o->value_codec, src->value_codec)))
        return MPH_ERR_NOMEM;
    for (size_t i = 0; i < src->nconfigs; i++) {
        char name[512];
        snprintf(name, sizeof name, "config.%s", src->configs[2 * i]);
        if (mph_topic_opts_set(o, name, src->configs[2 * i + 1], NULL, 0))
            return MPH_ERR_NOMEM;
    }
    return MPH_OK;
}

static bool opts_agree(const mph_topic_opts_t *a, const mph_topic_opts_t *b)
{
    if (!b)
        return true;
    const char *ak = a->key_codec ? a->key_codec : "raw", *bk = b->key_codec ? b->key_codec : "raw";
    const char *av = a->value_codec ? a->value_codec : "raw";
    const char *bv = b->value_codec ? b->value_codec : "raw";
    return !strcmp(ak, bk) && !strcmp(av, bv) && a->partitions == b->partitions;
}

mph_topic_t *mph_topic_new(mph_app_t *app, const char *name, const mph_topic_opts_t *opts,
                           char *errstr, size_t errstr_size)
{
    char tmp[256];
    if (!errstr || !errstr_size) {
        errstr = tmp;
        errstr_size = sizeof tmp;
    }
    if (!app) {
        snprintf(errstr, errstr_size, "topic: app is NULL");
        return NULL;
    }
    if (mph__topic_name_check(name, errstr, errstr_size) != MPH_OK)
        return NULL;
    if (ck_pr_load_int(&app->state) != APP_NEW) {
        snprintf(errstr, errstr_size, "topic %s: declare topics before the app starts", name);
        return NULL;
    }
    int idx = mph__app_topic_index(app, name);
    if (idx >= 0) {
        mph_topic_t *t = app->topics[idx];
        if (opts_agree(&t->opts, opts))
            return t;
        snprintf(errstr, errstr_size, "topic %s: declared twice with different options", name);
        return NULL;
    }
    mph_topic_t *t = calloc(1, sizeof *t);
    mph_topic_t **arr = realloc(app->topics, (app->ntopics + 1) * sizeof *arr);
    if (!t || !arr) {
        free(t);
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    app->topics = arr;
    t->app = app;
    t->name = strdup(name);
    if (!t->name || opts_copy(&t->opts, opts) != MPH_OK) {
        mph__topic_free(t);
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    t->create = t->opts.create == 1;
    t->key_codec = codec_of(t->opts.key_codec);
    t->value_codec = t->opts.record ? MPH_CODEC_RECORD : codec_of(t->opts.value_codec);
    /* A registered codec is this app's (mph_codec_register). */
    if ((t->key_codec == MPH_CODEC_USER &&
         !(t->ukey = mph__codec_user_find(app, t->opts.key_codec))) ||
        (t->value_codec == MPH_CODEC_USER &&
         !(t->uvalue = mph__codec_user_find(app, t->opts.value_codec)))) {
        snprintf(errstr, errstr_size, "topic %s: codec '%s' is not registered on this app", name,
                 t->key_codec == MPH_CODEC_USER && !t->ukey ? t->opts.key_codec
                                                            : t->opts.value_codec);
        mph__topic_free(t);
        return NULL;
    }
    t->index = (int)app->ntopics;
    app->topics[app->ntopics++] = t;
    return t;
}

void mph__topic_free(mph_topic_t *t)
{
    if (!t)
        return;
    free(t->name);
    free(t->opts.key_codec);
    free(t->opts.value_codec);
    mph__opts_pairs_free(t->opts.configs, t->opts.nconfigs);
    free(t->agents);
    free(t);
}

const char *mph_topic_name(const mph_topic_t *topic)
{
    return topic->name;
}

int mph_topic_partitions(const mph_topic_t *topic)
{
    return topic->partitions;
}

mph_topic_t *mph_app_topic(const mph_app_t *app, const char *name)
{
    int idx = mph__app_topic_index(app, name);
    return idx >= 0 ? app->topics[idx] : NULL;
}

mph_topic_t *mph_topic_repartition(mph_app_t *app, const char *name, const mph_topic_opts_t *opts,
                                   char *errstr, size_t errstr_size)
{
    char tmp[256];
    if (!errstr || !errstr_size) {
        errstr = tmp;
        errstr_size = sizeof tmp;
    }
    if (!app || !name || !*name) {
        snprintf(errstr, errstr_size, "repartition: a name is required");
        return NULL;
    }
    char full[512];
    snprintf(full, sizeof full, "%s-%s-repartition", app->app_id, name);
    mph_topic_opts_t *o = mph_topic_opts_new();
    if (!o || opts_copy(o, opts) != MPH_OK) {
        mph_topic_opts_destroy(o);
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    o->create = 1;
    mph_topic_t *t = mph_topic_new(app, full, o, errstr, errstr_size);
    mph_topic_opts_destroy(o);
    if (t)
        t->internal = true;
    return t;
}
