/* Unit tests of src/runtime/join.c that need no broker: declaration checks,
 * counters, and the start-time co-partitioning check run
 * on an app whose topics' partition counts are set by hand. */
#include <criterion/criterion.h>
#include <string.h>

#include "mephisto.h"
#include "runtime/app.h"
#include "runtime/join.h"
#include "runtime/table.h"

TestSuite(join, .timeout = 20);

static mph_err_t joiner(mph_event_t *ev, const void *key, size_t klen,
                        const void *l, size_t ll, const void *r, size_t rl,
                        mph_join_out_t *out, void *opaque)
{
    (void)ev, (void)key, (void)klen, (void)l, (void)ll, (void)r, (void)rl,
        (void)opaque;
    return mph_join_out_set(out, "x", 1);
}

typedef struct fixture {
    mph_app_t *app;
    mph_topic_t *a, *b, *out;
    mph_table_t *t1, *t2;
} fixture_t;

static fixture_t fx(void)
{
    char err[256];
    mph_conf_t *conf = mph_conf_new();
    cr_assert_eq(mph_conf_set(conf, "app_id", "unit-join", err, sizeof err),
                 MPH_OK, "%s", err);
    cr_assert_eq(mph_conf_set(conf, "workers", "2", err, sizeof err), MPH_OK,
                 "%s", err);
    cr_assert_eq(mph_conf_set(conf, "topic_partitions", "4", err, sizeof err),
                 MPH_OK, "%s", err);
    fixture_t f;
    f.app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(f.app, "%s", err);
    f.a = mph_topic_new(f.app, "a", NULL, err, sizeof err);
    f.b = mph_topic_new(f.app, "b", NULL, err, sizeof err);
    f.out = mph_topic_new(f.app, "out", NULL, err, sizeof err);
    f.t1 = mph_table_new(f.app, "t1", NULL, err, sizeof err);
    f.t2 = mph_table_new(f.app, "t2", NULL, err, sizeof err);
    cr_assert(f.a && f.b && f.out && f.t1 && f.t2, "%s", err);
    return f;
}

/* What prepare_topics does at start: the broker's partition counts. */
static void set_parts(mph_topic_t *t, int n)
{
    t->partitions = n;
}

Test(join, declarations_checked)
{
    fixture_t f = fx();
    char err[256];
    err[0] = 0;
    cr_expect_null(mph_join_windowed(f.app, "w", f.a, f.a, MPH_JOIN_INNER, 1, 1,
                                     0, f.out, joiner, NULL, err, sizeof err));
    cr_expect(strstr(err, "two different topics"), "%s", err);
    cr_expect_null(mph_join_windowed(f.app, "w", f.a, f.b, MPH_JOIN_INNER, 1,
                                     -1, 0, f.out, joiner, NULL, err,
                                     sizeof err));
    cr_expect(strstr(err, "after_ms"), "%s", err);
    cr_expect_null(mph_join_windowed(f.app, "w", f.a, f.b, MPH_JOIN_INNER, 1, 1,
                                     ((int64_t)1 << 41) + 1, f.out, joiner,
                                     NULL, err, sizeof err));
    cr_expect_null(mph_join_windowed(f.app, "w", f.a, f.b, MPH_JOIN_INNER, 1, 1,
                                     0, f.out, NULL, NULL, err, sizeof err));
    cr_expect(strstr(err, "joiner"), "%s", err);
    cr_expect_null(mph_join_windowed(f.app, "w", f.a, f.b, MPH_JOIN_INNER, 1, 1,
                                     0, NULL, joiner, NULL, err, sizeof err));
    cr_expect_null(mph_join_windowed(f.app, "w", f.a, f.b, (mph_join_kind_t)7,
                                     1, 1, 0, f.out, joiner, NULL, err,
                                     sizeof err));
    cr_expect(strstr(err, "kind"), "%s", err);
    mph_join_t *w =
        mph_join_windowed(f.app, "w", f.a, f.b, MPH_JOIN_OUTER, 1, 1, 0, f.out,
                          joiner, NULL, err, sizeof err);
    cr_assert_not_null(w, "%s", err);
    cr_expect_str_eq(mph_join_name(w), "w");
    cr_assert_not_null(mph_join_store(w));
    cr_expect_str_eq(mph_table_name(mph_join_store(w)), "w-join");
    cr_expect_null(mph_join_windowed(f.app, "w", f.a, f.b, MPH_JOIN_INNER, 1, 1,
                                     0, f.out, joiner, NULL, err, sizeof err));
    cr_expect(strstr(err, "already declared"), "%s", err);

    cr_expect_null(mph_join_stream_table(f.app, "st", f.a, f.t1, MPH_JOIN_OUTER,
                                         f.out, joiner, NULL, err, sizeof err),
                   "outer is stream–stream only");
    mph_join_t *st =
        mph_join_stream_table(f.app, "st", f.a, f.t1, MPH_JOIN_LEFT, f.out,
                              joiner, NULL, err, sizeof err);
    cr_assert_not_null(st, "%s", err);
    cr_expect_null(mph_join_store(st));
    cr_expect_null(mph_join_tables(f.app, "tt", f.t1, f.t1, MPH_JOIN_INNER,
                                   f.out, joiner, NULL, err, sizeof err));
    cr_expect(strstr(err, "two different tables"), "%s", err);
    cr_expect_null(mph_join_tables(f.app, "tt", f.t1, f.t2, MPH_JOIN_OUTER,
                                   f.out, joiner, NULL, err, sizeof err));
    mph_join_t *tt = mph_join_tables(f.app, "tt", f.t1, f.t2, MPH_JOIN_INNER,
                                     f.out, joiner, NULL, err, sizeof err);
    cr_assert_not_null(tt, "%s", err);
    cr_expect(f.t1->joined && f.t2->joined);

    for (int s = 0; s < MPH_JOIN_STAT__COUNT; s++)
        cr_expect_eq(mph_join_stat(tt, (mph_join_stat_t)s), 0);
    cr_expect_eq(mph_join_stat(tt, MPH_JOIN_STAT__COUNT), -1);
    cr_expect_eq(mph_join_stat(NULL, MPH_JOIN_STAT_LATE), -1);
    mph_app_destroy(f.app);
}

static mph_err_t noop(mph_event_t *ev, void *opaque)
{
    (void)ev, (void)opaque;
    return MPH_OK;
}

/* A join whose agent cannot be declared (its name is an agent's already)
 * fails, leaves nothing to check at start, and is freed with the app. */
Test(join, failed_declaration_leaves_no_join)
{
    fixture_t f = fx();
    char err[256];
    cr_assert_not_null(
        mph_agent_new(f.app, "taken", f.a, noop, NULL, err, sizeof err));
    err[0] = 0;
    cr_expect_null(mph_join_stream_table(f.app, "taken", f.a, f.t1,
                                         MPH_JOIN_INNER, f.out, joiner, NULL,
                                         err, sizeof err));
    cr_expect(err[0], "an error is given");
    cr_expect_null(mph_join_windowed(f.app, "taken", f.a, f.b, MPH_JOIN_INNER,
                                     1, 1, 0, f.out, joiner, NULL, err,
                                     sizeof err));
    cr_expect_null(f.app->joins);
    set_parts(f.a, 8); /* would not be co-partitioned with t1 (4 shards) */
    cr_expect_eq(mph__joins_prepare(f.app, err, sizeof err), MPH_OK, "%s", err);
    mph_app_destroy(f.app);
}

Test(join, copartitioning_checked)
{
    char err[256];
    /* stream–stream: 4 and 4 partitions, the buffer follows them */
    fixture_t f = fx();
    mph_join_t *w =
        mph_join_windowed(f.app, "w", f.a, f.b, MPH_JOIN_INNER, 1, 1, 0, f.out,
                          joiner, NULL, err, sizeof err);
    cr_assert_not_null(w, "%s", err);
    set_parts(f.a, 6);
    set_parts(f.b, 6);
    cr_expect_eq(mph__joins_prepare(f.app, err, sizeof err), MPH_OK, "%s", err);
    cr_expect_eq(mph_join_store(w)->opts.partitions, 6);
    set_parts(f.b, 3);
    err[0] = 0;
    cr_expect_eq(mph__joins_prepare(f.app, err, sizeof err), MPH_ERR_INVALID);
    cr_expect(
        strstr(err,
               "a (6 partitions) and b (3 partitions) are not co-partitioned"),
        "%s", err);
    mph_app_destroy(f.app);

    /* stream–table: the table's shards (topic_partitions 4) vs the stream */
    f = fx();
    cr_assert_not_null(mph_join_stream_table(f.app, "st", f.a, f.t1,
                                             MPH_JOIN_INNER, f.out, joiner,
                                             NULL, err, sizeof err));
    set_parts(f.a, 4);
    cr_expect_eq(mph__joins_prepare(f.app, err, sizeof err), MPH_OK, "%s", err);
    set_parts(f.a, 8);
    cr_expect_eq(mph__joins_prepare(f.app, err, sizeof err), MPH_ERR_INVALID);
    cr_expect(strstr(err, "t1-changelog (4 partitions)") &&
                  strstr(err, "a (8 partitions)"),
              "%s", err);
    mph_app_destroy(f.app);

    /* table–table: shard counts; windowed tables refused */
    f = fx();
    mph_table_opts_t *o = mph_table_opts_new();
    mph_table_opts_set(o, "partitions", "2", NULL, 0);
    mph_table_t *t3 = mph_table_new(f.app, "t3", o, err, sizeof err);
    mph_table_opts_destroy(o);
    cr_assert_not_null(mph_join_tables(f.app, "tt", f.t1, t3, MPH_JOIN_LEFT,
                                       f.out, joiner, NULL, err, sizeof err));
    cr_expect_eq(mph__joins_prepare(f.app, err, sizeof err), MPH_ERR_INVALID);
    cr_expect(strstr(err, "t3-changelog (2 partitions)"), "%s", err);
    mph_app_destroy(f.app);

    f = fx();
    cr_assert_not_null(mph_table_tumbling(f.t2, 1000, 0, err, sizeof err), "%s",
                       err);
    cr_assert_not_null(mph_join_tables(f.app, "tt", f.t1, f.t2, MPH_JOIN_INNER,
                                       f.out, joiner, NULL, err, sizeof err));
    cr_expect_eq(mph__joins_prepare(f.app, err, sizeof err), MPH_ERR_INVALID);
    cr_expect(strstr(err, "t2 is windowed"), "%s", err);
    mph_app_destroy(f.app);
}
