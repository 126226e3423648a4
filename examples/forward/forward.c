/*
 * forward — the smallest useful mephisto app: every record of one topic is
 * copied, unchanged (key, value, headers), to another.
 *
 * Build it as a plugin (the build does: build/examples/libforward.so) and
 * run it with
 *
 *   mephisto worker --app build/examples/libforward.so \
 *       --set forward.input_topic=orders --set forward.output_topic=orders-copy
 *
 * Settings (app settings, read with mph_app_get):
 *   forward.input_topic    the source topic (default "forward-in")
 *   forward.output_topic   the sink topic (default "forward-out")
 * Both topics are created at start when missing (topic option create=true),
 * with the topic_partitions setting's partition count.
 *
 * docs/quickstart.md explains this file line by line.
 */
#include <string.h>

#include <mephisto.h>

/* The agent: called on a worker thread for every record of the input
 * topic. opaque is the output topic, handed over in mephisto_app_init. */
static mph_err_t forward(mph_event_t *ev, void *opaque)
{
    mph_topic_t *out = opaque;
    return mph_event_forward(ev, out);
}

/* A setting's value, or dflt when it is not set. */
static const char *setting(mph_app_t *app, const char *name, const char *dflt)
{
    const char *v = mph_app_get(app, name);
    return v && *v ? v : dflt;
}

/* Declares a topic that is created at start if it does not exist. */
static mph_topic_t *declare(mph_app_t *app, const char *name)
{
    char err[256];
    mph_topic_opts_t *opts = mph_topic_opts_new();
    if (!opts) {
        mph_log(MPH_LOG_ERROR, "forward: out of memory");
        return NULL;
    }
    mph_topic_t *t = NULL;
    if (mph_topic_opts_set(opts, "create", "true", err, sizeof err) == MPH_OK)
        t = mph_topic_new(app, name, opts, err, sizeof err);
    if (!t)
        mph_log(MPH_LOG_ERROR, "forward: topic %s: %s", name, err);
    mph_topic_opts_destroy(opts);
    return t;
}

/* The entry point `mephisto worker` calls: declare topics and agents. A
 * non-zero return makes the worker exit with status 3. */
int mephisto_app_init(mph_app_t *app)
{
    const char *in_name = setting(app, "forward.input_topic", "forward-in");
    const char *out_name = setting(app, "forward.output_topic", "forward-out");
    if (strcmp(in_name, out_name) == 0) {
        mph_log(MPH_LOG_ERROR,
                "forward: forward.input_topic and forward.output_topic are "
                "both '%s'; "
                "forwarding a topic to itself would loop forever",
                in_name);
        return -1;
    }
    mph_topic_t *in = declare(app, in_name);
    mph_topic_t *out = declare(app, out_name);
    if (!in || !out)
        return -1;
    char err[256];
    if (!mph_agent_new(app, "forward", in, forward, out, err, sizeof err)) {
        mph_log(MPH_LOG_ERROR, "forward: agent: %s", err);
        return -1;
    }
    mph_log(MPH_LOG_INFO, "forward: %s -> %s", in_name, out_name);
    return 0;
}
