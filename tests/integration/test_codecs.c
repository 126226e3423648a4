/*
 * Codecs both ways (mephisto/codec.h): an agent sends i64, string, json and
 * record values with mph_event_send_<codec>; agents on topics declared with
 * the matching codecs decode them back, and must see what was sent (the
 * record decodes to an equal record). Encoding errors send nothing.
 * Runs on the mock cluster or MEPHISTO_TEST_BROKERS.
 */
// ctest-timeout: 120
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ck_pr.h>

#include "mephisto.h"
#include "mph_test.h"

static mph_test_cluster_t *cluster;

static void setup(void)
{
    cluster = mph_test_cluster_new();
}

static void teardown(void)
{
    mph_test_cluster_destroy(cluster);
}

TestSuite(codecs, .init = setup, .fini = teardown, .timeout = 110);

struct ctx {
    mph_topic_t *t_i64, *t_str, *t_json, *t_rec;
    mph_record_type_t *type;
    size_t f_user, f_page, f_ts;
    mph_record_t *sent;
    /* results, written by workers, read by the test (ck_pr) */
    int send_errs[4]; /* utf8, schema, json state, 0 */
    int got_i64, got_str, got_json, got_rec;
    int64_t i64;
    char str[64], json[64];
    int rec_equal;
};

static mph_err_t produce(mph_event_t *ev, void *opaque)
{
    struct ctx *c = opaque;
    mph_err_t e;
    if ((e = mph_event_send_i64(ev, c->t_i64, MPH_PARTITION_ANY, "k", 1, -1234567890123LL)))
        return e;
    if ((e = mph_event_send_string(ev, c->t_str, MPH_PARTITION_ANY, "k", 1, "h\xc3\xa9llo", 6)))
        return e;
    ck_pr_store_int(&c->send_errs[0],
                    mph_event_send_string(ev, c->t_str, MPH_PARTITION_ANY, "k", 1, "\xff", 1));
    mph_jsonw_t *w = mph_jsonw_new(0, NULL, 0);
    mph_jsonw_object_begin(w);
    mph_jsonw_key(w, "a", 1);
    mph_jsonw_i64(w, 1);
    ck_pr_store_int(&c->send_errs[2],
                    mph_event_send_json(ev, c->t_json, MPH_PARTITION_ANY, "k", 1, w));
    mph_jsonw_object_end(w);
    e = mph_event_send_json(ev, c->t_json, MPH_PARTITION_ANY, "k", 1, w);
    mph_jsonw_destroy(w);
    if (e)
        return e;
    if ((e = mph_event_send_record(ev, c->t_rec, MPH_PARTITION_ANY, "k", 1, c->sent)))
        return e;
    mph_record_t *partial = mph_record_new(c->type, NULL, 0);
    mph_record_set_str(partial, c->f_user, "u", 1);
    ck_pr_store_int(&c->send_errs[1],
                    mph_event_send_record(ev, c->t_rec, MPH_PARTITION_ANY, "k", 1, partial));
    mph_record_destroy(partial);
    return MPH_OK;
}

static mph_err_t on_i64(mph_event_t *ev, void *opaque)
{
    struct ctx *c = opaque;
    int64_t v;
    cr_assert_eq(mph_event_value_i64(ev, &v), MPH_OK);
    c->i64 = v;
    ck_pr_fence_store();
    ck_pr_inc_int(&c->got_i64);
    return MPH_OK;
}

static mph_err_t on_str(mph_event_t *ev, void *opaque)
{
    struct ctx *c = opaque;
    size_t n;
    const char *v = mph_event_value(ev, &n);
    snprintf(c->str, sizeof c->str, "%.*s", (int)n, v);
    ck_pr_fence_store();
    ck_pr_inc_int(&c->got_str);
    return MPH_OK;
}

static mph_err_t on_json(mph_event_t *ev, void *opaque)
{
    struct ctx *c = opaque;
    size_t n;
    const char *v = mph_event_value(ev, &n);
    snprintf(c->json, sizeof c->json, "%.*s", (int)n, v);
    ck_pr_fence_store();
    ck_pr_inc_int(&c->got_json);
    return MPH_OK;
}

static mph_err_t on_rec(mph_event_t *ev, void *opaque)
{
    struct ctx *c = opaque;
    const mph_record_t *r = mph_event_record(ev);
    ck_pr_store_int(&c->rec_equal, r && mph_record_equal(r, c->sent));
    ck_pr_fence_store();
    ck_pr_inc_int(&c->got_rec);
    return MPH_OK;
}

static mph_topic_t *topic(mph_app_t *app, const char *base, const char *codec,
                          const mph_record_type_t *type, char *name, size_t nlen)
{
    char err[512];
    mph_test_unique(base, name, nlen);
    mph_test_create_topic(cluster, name, 2);
    mph_topic_opts_t *o = mph_topic_opts_new();
    if (codec)
        cr_assert_eq(mph_topic_opts_set(o, "value_codec", codec, err, sizeof err), MPH_OK);
    if (type)
        cr_assert_eq(mph_topic_opts_set_record(o, type), MPH_OK);
    cr_assert_eq(mph_topic_opts_set(o, "on_decode_error", "fail", err, sizeof err), MPH_OK);
    mph_topic_t *t = mph_topic_new(app, name, o, err, sizeof err);
    mph_topic_opts_destroy(o);
    cr_assert_not_null(t, "%s", err);
    return t;
}

Test(codecs, sends_encode_and_topics_decode_back)
{
    char err[512], app_id[128], names[5][160];
    struct ctx *c = calloc(1, sizeof *c);
    c->type = mph_record_type_new("PageView", err, sizeof err);
    cr_assert_eq(mph_record_type_add(c->type, "user", MPH_FIELD_STRING, &c->f_user), MPH_OK);
    cr_assert_eq(mph_record_type_add(c->type, "page", MPH_FIELD_STRING, &c->f_page), MPH_OK);
    cr_assert_eq(mph_record_type_add(c->type, "ts", MPH_FIELD_TIMESTAMP, &c->f_ts), MPH_OK);
    cr_assert_eq(mph_record_type_set_optional(c->type, c->f_ts), MPH_OK);
    c->sent = mph_record_new(c->type, err, sizeof err);
    mph_record_set_str(c->sent, c->f_user, "u\xc3\xa9", 3);
    mph_record_set_str(c->sent, c->f_page, "/a\"b", 4);
    mph_record_set_i64(c->sent, c->f_ts, 1700000000123LL);

    mph_test_unique("codecs", app_id, sizeof app_id);
    mph_conf_t *conf = mph_conf_new();
    const char *kv[] = {"broker", cluster->broker, "app_id", app_id, "log_level", "warn",
                        "workers", "2", NULL};
    for (const char **p = kv; *p; p += 2)
        cr_assert_eq(mph_conf_set(conf, p[0], p[1], err, sizeof err), MPH_OK, "%s", err);
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(app, "%s", err);
    mph_topic_t *in = topic(app, "codecs-in", NULL, NULL, names[0], sizeof names[0]);
    c->t_i64 = topic(app, "codecs-i64", "i64", NULL, names[1], sizeof names[1]);
    c->t_str = topic(app, "codecs-str", "string", NULL, names[2], sizeof names[2]);
    c->t_json = topic(app, "codecs-json", "json", NULL, names[3], sizeof names[3]);
    c->t_rec = topic(app, "codecs-rec", NULL, c->type, names[4], sizeof names[4]);
    cr_assert_not_null(mph_agent_new(app, "produce", in, produce, c, err, sizeof err));
    cr_assert_not_null(mph_agent_new(app, "i64", c->t_i64, on_i64, c, err, sizeof err));
    cr_assert_not_null(mph_agent_new(app, "str", c->t_str, on_str, c, err, sizeof err));
    cr_assert_not_null(mph_agent_new(app, "json", c->t_json, on_json, c, err, sizeof err));
    cr_assert_not_null(mph_agent_new(app, "rec", c->t_rec, on_rec, c, err, sizeof err));
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    mph_test_produce(cluster, names[0], 0, "x", 1, "go", 2);
    mph_test_flush(cluster);
    for (int i = 0; i < 600; i++) {
        if (ck_pr_load_int(&c->got_i64) && ck_pr_load_int(&c->got_str) &&
            ck_pr_load_int(&c->got_json) && ck_pr_load_int(&c->got_rec))
            break;
        usleep(100000);
    }
    /* a little longer: anything sent by mistake would arrive too */
    usleep(500000);
    ck_pr_fence_load();
    cr_expect_eq(mph_app_stop(app), MPH_OK);
    cr_expect_eq(c->got_i64, 1);
    cr_expect_eq(c->i64, -1234567890123LL);
    cr_expect_eq(c->got_str, 1, "the invalid string was not sent");
    cr_expect_str_eq(c->str, "h\xc3\xa9llo");
    cr_expect_eq(c->got_json, 1, "the incomplete document was not sent");
    cr_expect_str_eq(c->json, "{\"a\":1}");
    cr_expect_eq(c->got_rec, 1, "the record without its page was not sent");
    cr_expect_eq(c->rec_equal, 1, "the record decodes back equal");
    cr_expect_eq(c->send_errs[0], MPH_ERR_UTF8);
    cr_expect_eq(c->send_errs[1], MPH_ERR_SCHEMA);
    cr_expect_eq(c->send_errs[2], MPH_ERR_STATE);
    mph_app_destroy(app);
    mph_record_destroy(c->sent);
    mph_record_type_destroy(c->type);
    free(c);
}

/* --- a codec of one's own: "upper" accepts only upper-case ASCII and
 * encodes by upper-casing ------------------------------------------------- */

static mph_err_t upper_decode(const void *bytes, size_t len, void *opaque, char *errbuf,
                              size_t errbuf_size)
{
    const unsigned char *b = bytes;
    ck_pr_inc_int((int *)opaque);
    for (size_t i = 0; i < len; i++)
        if (b[i] < 'A' || b[i] > 'Z') {
            snprintf(errbuf, errbuf_size, "byte %zu is not A-Z", i);
            return MPH_ERR_DECODE;
        }
    return MPH_OK;
}

static mph_err_t upper_encode(const void *in, size_t len, mph_codec_out_t *out, void *opaque,
                              char *errbuf, size_t errbuf_size)
{
    (void)opaque;
    const unsigned char *b = in;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = b[i] >= 'a' && b[i] <= 'z' ? (unsigned char)(b[i] - 32) : b[i];
        if (c < 'A' || c > 'Z') {
            snprintf(errbuf, errbuf_size, "'%c' has no upper case", c);
            return MPH_ERR_DECODE;
        }
        mph_err_t e = mph_codec_out_append(out, &c, 1);
        if (e)
            return e;
    }
    return MPH_OK;
}

struct uctx {
    mph_topic_t *up;
    mph_table_t *table;
    int decodes;
    int sent_bad, set_bad, set_good;
    int got;
    char seen[8][16];
};

static mph_err_t u_produce(mph_event_t *ev, void *opaque)
{
    struct uctx *c = opaque;
    mph_err_t e = mph_event_send_encoded(ev, c->up, 0, "k", 1, "hello", 5);
    if (e)
        return e;
    ck_pr_store_int(&c->sent_bad, mph_event_send_encoded(ev, c->up, 0, "k", 1, "no!", 3));
    /* raw bytes the codec refuses, sent without encoding: dead-lettered */
    if ((e = mph_event_send(ev, c->up, 0, "k", 1, "lower", 5, NULL, 0)))
        return e;
    return mph_event_send_encoded(ev, c->up, 0, "k", 1, "Bye", 3);
}

static mph_err_t u_receive(mph_event_t *ev, void *opaque)
{
    struct uctx *c = opaque;
    size_t n;
    const char *v = mph_event_value(ev, &n);
    int i = ck_pr_load_int(&c->got);
    if (i < 8)
        snprintf(c->seen[i], sizeof c->seen[i], "%.*s", (int)n, v);
    /* the table's value codec is "upper" too */
    ck_pr_store_int(&c->set_bad, mph_table_set(ev, c->table, "k", 1, "bad", 3));
    ck_pr_store_int(&c->set_good, mph_table_set(ev, c->table, "k", 1, v, n));
    ck_pr_fence_store();
    ck_pr_inc_int(&c->got);
    return MPH_OK;
}

Test(codecs, a_registered_codec_on_a_topic_and_a_table)
{
    char err[512], app_id[128], in_name[160], up_name[160];
    struct uctx *c = calloc(1, sizeof *c);
    mph_test_unique("ucodec", app_id, sizeof app_id);
    mph_conf_t *conf = mph_conf_new();
    const char *kv[] = {"broker", cluster->broker, "app_id", app_id, "log_level", "error",
                        "topic_partitions", "1", NULL};
    for (const char **p = kv; *p; p += 2)
        cr_assert_eq(mph_conf_set(conf, p[0], p[1], err, sizeof err), MPH_OK, "%s", err);
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(app, "%s", err);

    /* registration errors */
    cr_expect_eq(mph_codec_register(app, "json", upper_decode, NULL, NULL), MPH_ERR_EXISTS);
    cr_expect_eq(mph_codec_register(app, "bad name", upper_decode, NULL, NULL), MPH_ERR_INVALID);
    cr_expect_eq(mph_codec_register(app, "none", NULL, NULL, NULL), MPH_ERR_INVALID);
    cr_assert_eq(mph_codec_register(app, "upper", upper_decode, upper_encode, &c->decodes),
                 MPH_OK);
    cr_expect_eq(mph_codec_register(app, "upper", upper_decode, NULL, NULL), MPH_ERR_EXISTS);
    mph_topic_opts_t *o = mph_topic_opts_new();
    cr_expect_eq(mph_topic_opts_set(o, "value_codec", "lower", err, sizeof err), MPH_ERR_INVALID);
    cr_expect(strstr(err, "mph_codec_register"), "%s", err);

    mph_test_unique("ucodec-in", in_name, sizeof in_name);
    mph_test_unique("ucodec-up", up_name, sizeof up_name);
    mph_test_create_topic(cluster, in_name, 1);
    mph_test_create_topic(cluster, up_name, 1);
    char cl[300];
    snprintf(cl, sizeof cl, "%s-words-changelog", app_id);
    mph_test_create_topic(cluster, cl, 1); /* the mock cannot create it */
    mph_topic_t *in = mph_topic_new(app, in_name, NULL, err, sizeof err);
    cr_assert_not_null(in, "%s", err);
    cr_assert_eq(mph_topic_opts_set(o, "value_codec", "upper", err, sizeof err), MPH_OK, "%s",
                 err);
    cr_assert_eq(mph_topic_opts_set(o, "on_decode_error", "skip", err, sizeof err), MPH_OK);
    c->up = mph_topic_new(app, up_name, o, err, sizeof err);
    mph_topic_opts_destroy(o);
    cr_assert_not_null(c->up, "%s", err);
    mph_table_opts_t *to = mph_table_opts_new();
    cr_assert_eq(mph_table_opts_set(to, "value_codec", "upper", err, sizeof err), MPH_OK);
    c->table = mph_table_new(app, "words", to, err, sizeof err);
    mph_table_opts_destroy(to);
    cr_assert_not_null(c->table, "%s", err);
    cr_assert_not_null(mph_agent_new(app, "produce", in, u_produce, c, err, sizeof err));
    cr_assert_not_null(mph_agent_new(app, "receive", c->up, u_receive, c, err, sizeof err));

    /* another app does not see this app's codec */
    mph_conf_t *conf2 = mph_conf_new();
    cr_assert_eq(mph_conf_set(conf2, "broker", cluster->broker, err, sizeof err), MPH_OK);
    cr_assert_eq(mph_conf_set(conf2, "app_id", "other", err, sizeof err), MPH_OK);
    mph_app_t *other = mph_app_new(conf2, err, sizeof err);
    mph_topic_opts_t *o2 = mph_topic_opts_new();
    cr_assert_eq(mph_topic_opts_set(o2, "value_codec", "upper", err, sizeof err), MPH_OK);
    cr_expect_null(mph_topic_new(other, up_name, o2, err, sizeof err));
    cr_expect(strstr(err, "not registered on this app"), "%s", err);
    mph_topic_opts_destroy(o2);
    mph_app_destroy(other);

    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    cr_expect_eq(mph_codec_register(app, "late", upper_decode, NULL, NULL), MPH_ERR_STATE);
    mph_test_produce(cluster, in_name, 0, "x", 1, "go", 2);
    mph_test_flush(cluster);
    for (int i = 0; i < 600 && ck_pr_load_int(&c->got) < 2; i++)
        usleep(100000);
    usleep(500000); /* "lower" would have arrived by now, had it passed */
    ck_pr_fence_load();
    mph_table_t *t = c->table;
    void *v = NULL;
    size_t vl = 0;
    mph_err_t le = mph_table_lookup(app, t, "k", 1, &v, &vl, 5000);
    cr_expect_eq(mph_app_stop(app), MPH_OK);
    cr_expect_eq(c->got, 2, "HELLO and BYE arrive; 'lower' is refused by decode");
    cr_expect_str_eq(c->seen[0], "HELLO");
    cr_expect_str_eq(c->seen[1], "BYE");
    cr_expect_eq(c->sent_bad, MPH_ERR_DECODE, "encode refused '!'");
    cr_expect_eq(c->set_bad, MPH_ERR_DECODE, "the table refuses 'bad'");
    cr_expect_eq(c->set_good, MPH_OK);
    cr_expect_eq(le, MPH_OK);
    cr_expect(vl == 3 && v && !memcmp(v, "BYE", 3));
    free(v);
    cr_expect_geq(ck_pr_load_int(&c->decodes), 3);
    mph_app_destroy(app);
    free(c);
}
