/*
 * Word count, the Faust way: lines → words → group_by(word) → table.
 *
 * Contract (so anyone can drive it):
 *   input   UTF-8 lines on topic `wordcount-lines` (setting
 *           wordcount.input_topic), created if missing
 *   words   a word is a maximal run of bytes that are not ASCII whitespace,
 *           counted exactly as written (no case folding)
 *   output  table `word_counts` (i64), readable at
 *           /tables/word_counts/<url-encoded word> as a JSON number
 *
 * The store (memory or rocksdb) follows the app's `store` setting.
 *
 *   mephisto worker --app build/examples/libwordcount.so --set store=rocksdb
 */
#include <mephisto.h>
#include <stdio.h>
#include <stdlib.h>

struct wordcount {
    mph_topic_t *words;
    mph_table_t *counts;
};


static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* lines → words, each sent keyed by the word to the repartition topic. */
static mph_err_t split(mph_event_t *ev, void *opaque)
{
    struct wordcount *w = opaque;
    size_t len;
    const unsigned char *line = mph_event_value(ev, &len);
    size_t i = 0;
    while (i < len) {
        while (i < len && is_space(line[i]))
            i++;
        size_t start = i;
        while (i < len && !is_space(line[i]))
            i++;
        if (i > start) {
            mph_err_t err = mph_event_send(ev, w->words, MPH_PARTITION_ANY, line + start,
                                           i - start, NULL, 0, NULL, 0);
            if (err)
                return err;
        }
    }
    return MPH_OK;
}

/* words → table[word] += 1, on the shard that owns the word. */
static mph_err_t count(mph_event_t *ev, void *opaque)
{
    struct wordcount *w = opaque;
    size_t len;
    const void *word = mph_event_key(ev, &len);
    return mph_table_incr(ev, w->counts, word, len, 1, NULL);
}

int mephisto_app_init(mph_app_t *app)
{
    char err[512] = "out of memory";
    struct wordcount *wc = calloc(1, sizeof *wc);
    if (!wc || mph_app_keep(app, wc, free) != MPH_OK) {
        free(wc);
        goto fail;
    }
    const char *input = mph_app_get(app, "wordcount.input_topic");
    mph_topic_opts_t *opts = mph_topic_opts_new();
    mph_topic_opts_set(opts, "create", "true", NULL, 0);
    mph_topic_opts_set(opts, "value_codec", "string", NULL, 0);
    mph_topic_t *lines = mph_topic_new(app, input ? input : "wordcount-lines", opts, err, sizeof err);
    mph_topic_opts_destroy(opts);
    if (!lines)
        goto fail;
    wc->words = mph_topic_repartition(app, "words", NULL, err, sizeof err);
    if (!wc->words)
        goto fail;
    mph_table_opts_t *topts = mph_table_opts_new();
    mph_table_opts_set(topts, "value_codec", "i64", NULL, 0);
    mph_table_opts_set(topts, "key_codec", "string", NULL, 0);
    mph_table_opts_set(topts, "default", "0", NULL, 0);
    wc->counts = mph_table_new(app, "word_counts", topts, err, sizeof err);
    mph_table_opts_destroy(topts);
    if (!wc->counts)
        goto fail;
    if (!mph_agent_new(app, "split", lines, split, wc, err, sizeof err) ||
        !mph_agent_new(app, "count", wc->words, count, wc, err, sizeof err))
        goto fail;
    return 0;
fail:
    mph_log(MPH_LOG_ERROR, "wordcount: %s", err);
    return -1;
}
