/*
 * Unit tests of the topic names the runtime accepts (src/runtime/topic.c):
 * Kafka's rule for declared topics and for the names derived from app_id
 * and table or repartition names, on an app that is never started.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "mephisto.h"
#include "runtime/topic.h"

TestSuite(topic, .timeout = 10);

static mph_app_t *test_app(const char *app_id)
{
    char err[256];
    mph_conf_t *conf = mph_conf_new();
    cr_assert_not_null(conf);
    cr_assert_eq(mph_conf_set(conf, "app_id", app_id, err, sizeof err), MPH_OK,
                 "%s", err);
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(app, "%s", err);
    return app;
}

Test(topic, name_rule_is_kafkas)
{
    char err[256];
    char longest[250], too_long[251];
    memset(longest, 'a', 249);
    longest[249] = '\0';
    memset(too_long, 'a', 250);
    too_long[250] = '\0';
    static const char *const good[] = {"a",   "orders", "a.b_c-D9",
                                       "..a", "_",      "-"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        cr_expect_eq(mph__topic_name_check(good[i], err, sizeof err), MPH_OK,
                     "%s: %s", good[i], err);
    cr_expect_eq(mph__topic_name_check(longest, err, sizeof err), MPH_OK, "%s",
                 err);

    static const struct {
        const char *name, *want;
    } bad[] = {
        {"", "topic '': must not be empty"},
        {".", "topic '.': must not be '.' or '..'"},
        {"..", "topic '..': must not be '.' or '..'"},
        {"bad topic/name",
         "topic 'bad topic/name': ' ' at position 4 is not allowed"},
        {"a/b", "topic 'a/b': '/' at position 2 is not allowed"},
        {"x\x1b[2J", "topic 'x\\x1b[2J': '\\x1b' at position 2 is not allowed"},
        {"caf\xc3\xa9",
         "topic 'caf\xc3\xa9': '\\xc3' at position 4 is not allowed"},
        {"a:b", "topic 'a:b': ':' at position 2"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        cr_expect_eq(mph__topic_name_check(bad[i].name, err, sizeof err),
                     MPH_ERR_INVALID, "%s", bad[i].name);
        cr_expect(!strncmp(err, bad[i].want, strlen(bad[i].want)),
                  "got %s, want %s", err, bad[i].want);
        cr_expect_null(strchr(err, 0x1b), "%s", err);
    }
    cr_expect_eq(mph__topic_name_check(too_long, err, sizeof err),
                 MPH_ERR_INVALID);
    cr_expect_not_null(strstr(err, "is longer than 249 characters"), "%s", err);
}

Test(topic, declared_and_derived_names_follow_the_rule)
{
    char err[256];
    mph_app_t *app = test_app("app");
    cr_expect_null(mph_topic_new(app, "bad topic/name", NULL, err, sizeof err));
    cr_expect_not_null(strstr(err, "' ' at position 4 is not allowed"), "%s",
                       err);
    cr_expect_null(mph_topic_new(app, "..", NULL, err, sizeof err));
    cr_expect_not_null(mph_topic_new(app, "good.topic", NULL, err, sizeof err),
                       "%s", err);

    /* <app_id>-<name>-repartition */
    cr_expect_null(
        mph_topic_repartition(app, "by user", NULL, err, sizeof err));
    cr_expect_not_null(strstr(err, "topic 'app-by user-repartition'"), "%s",
                       err);
    cr_expect_not_null(
        mph_topic_repartition(app, "by_user", NULL, err, sizeof err), "%s",
        err);

    /* <app_id>-<table>-changelog: the characters and the length. */
    cr_expect_null(mph_table_new(app, "word counts", NULL, err, sizeof err));
    cr_expect_not_null(
        strstr(err, "changelog topic 'app-word counts-changelog'"), "%s", err);
    char name[201];
    memset(name, 't', 200);
    name[200] = '\0';
    mph_app_destroy(app);

    char app_id[201];
    memset(app_id, 'a', 200);
    app_id[200] = '\0';
    app = test_app(app_id);
    cr_expect_null(mph_table_new(app, name, NULL, err, sizeof err));
    cr_expect_not_null(strstr(err, "is longer than 249 characters"), "%s", err);
    cr_expect_not_null(mph_table_new(app, "counts", NULL, err, sizeof err),
                       "%s", err);
    mph_app_destroy(app);
}
