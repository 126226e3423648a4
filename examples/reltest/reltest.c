/*
 * reltest — the app under test of the reliability suite
 * (tests/reliability/, docs/reliability.md). It is a test plugin, not an
 * example to copy from; it lives under examples/ only so that the build
 * makes it a plugin (build/examples/libreltest.so) like the examples.
 *
 * Contract (the suite's checker relies on every line of it):
 *   input    topic `reltest.input_topic` (default "reltest-in"), created
 *            with `reltest.partitions` partitions (default 8) if missing.
 *            Keys are strings ("k<N>"); values are JSON objects
 *            {"id": unique int, "key": "k<N>", "seq": per-key sequence
 *            number, "ts": epoch ms}. Key codec string, value codec json:
 *            a record whose key is null or not UTF-8, or whose value is null
 *            or not one well-formed JSON document, never reaches the agent;
 *            the app's on_decode_error policy handles it (default
 *            dead_letter: `<app_id>-dead-letter`).
 *   output   every valid input record is forwarded unchanged (key, value,
 *            headers) to `reltest.output_topic` (default "reltest-out"),
 *            created if missing.
 *   tables   `counts`  (i64 per key): records seen with that key;
 *            `maxseq`  (i64 per key): the largest "seq" seen (-1 before
 *            any). Both follow the app's `store` setting; their changelogs
 *            are `<app_id>-counts-changelog` and `<app_id>-maxseq-changelog`
 *            (values 8-byte big-endian i64).
 *
 * A valid record without an integer "seq" fails the agent (counted in
 * /stats as an agent error) after it was forwarded and counted.
 *
 *   mephisto worker --app build/examples/libreltest.so --set app_id=rel \
 *       --set store=rocksdb --set reltest.input_topic=rel-in
 */
#include <stdlib.h>
#include <string.h>

#include <mephisto.h>

struct reltest {
    mph_topic_t *out;
    mph_table_t *counts;
    mph_table_t *maxseq;
};

static void be64(int64_t v, unsigned char out[8])
{
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++)
        out[i] = (unsigned char)(u >> (56 - 8 * i));
}

/* The agent: forward, count, keep the largest sequence number. */
static mph_err_t handle(mph_event_t *ev, void *opaque)
{
    struct reltest *rt = opaque;
    mph_err_t err = mph_event_forward(ev, rt->out);
    if (err)
        return err;
    size_t klen;
    const void *key = mph_event_key(ev, &klen);
    err = mph_table_incr(ev, rt->counts, key, klen, 1, NULL);
    if (err)
        return err;
    mph_json_parser_t *p = mph_event_json(ev, &err);
    if (!p)
        return err ? err : MPH_ERR_DECODE;
    int64_t seq;
    err = mph_json_get_i64(p, MPH_JSON_ROOT, "seq", &seq);
    if (err)
        return err;
    int64_t cur;
    err = mph_table_get_i64(ev, rt->maxseq, key, klen, &cur);
    if (err || seq <= cur)
        return err;
    unsigned char v[8];
    be64(seq, v);
    return mph_table_set(ev, rt->maxseq, key, klen, v, sizeof v);
}

static const char *setting(mph_app_t *app, const char *name, const char *dflt)
{
    const char *v = mph_app_get(app, name);
    return v && *v ? v : dflt;
}

static mph_table_t *declare_table(mph_app_t *app, const char *name,
                                  const char *dflt, char *err, size_t errsz)
{
    mph_table_opts_t *o = mph_table_opts_new();
    mph_table_t *t = NULL;
    if (o &&
        mph_table_opts_set(o, "key_codec", "string", err, errsz) == MPH_OK &&
        mph_table_opts_set(o, "value_codec", "i64", err, errsz) == MPH_OK &&
        mph_table_opts_set(o, "default", dflt, err, errsz) == MPH_OK)
        t = mph_table_new(app, name, o, err, errsz);
    mph_table_opts_destroy(o);
    return t;
}

int mephisto_app_init(mph_app_t *app)
{
    char err[512] = "out of memory";
    const char *in_name = setting(app, "reltest.input_topic", "reltest-in");
    const char *out_name = setting(app, "reltest.output_topic", "reltest-out");
    const char *parts = setting(app, "reltest.partitions", "8");
    struct reltest *rt = calloc(1, sizeof *rt);
    if (!rt || mph_app_keep(app, rt, free) != MPH_OK) {
        free(rt);
        goto fail;
    }
    if (strcmp(in_name, out_name) == 0) {
        strcpy(err, "input and output topic are the same");
        goto fail;
    }
    mph_topic_opts_t *o = mph_topic_opts_new();
    mph_topic_t *in = NULL;
    if (o &&
        mph_topic_opts_set(o, "create", "true", err, sizeof err) == MPH_OK &&
        mph_topic_opts_set(o, "partitions", parts, err, sizeof err) == MPH_OK &&
        mph_topic_opts_set(o, "key_codec", "string", err, sizeof err) ==
            MPH_OK &&
        mph_topic_opts_set(o, "value_codec", "json", err, sizeof err) == MPH_OK)
        in = mph_topic_new(app, in_name, o, err, sizeof err);
    mph_topic_opts_destroy(o);
    if (!in)
        goto fail;
    o = mph_topic_opts_new();
    if (o &&
        mph_topic_opts_set(o, "create", "true", err, sizeof err) == MPH_OK &&
        mph_topic_opts_set(o, "partitions", parts, err, sizeof err) == MPH_OK)
        rt->out = mph_topic_new(app, out_name, o, err, sizeof err);
    mph_topic_opts_destroy(o);
    if (!rt->out)
        goto fail;
    rt->counts = declare_table(app, "counts", "0", err, sizeof err);
    if (!rt->counts)
        goto fail;
    rt->maxseq = declare_table(app, "maxseq", "-1", err, sizeof err);
    if (!rt->maxseq)
        goto fail;
    if (!mph_agent_new(app, "reltest", in, handle, rt, err, sizeof err))
        goto fail;
    mph_log(MPH_LOG_INFO, "reltest: %s -> %s, tables counts and maxseq",
            in_name, out_name);
    return 0;
fail:
    mph_log(MPH_LOG_ERROR, "reltest: %s", err);
    return -1;
}
