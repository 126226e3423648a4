/*
 * Unit tests of the configuration module (src/runtime/config.c).
 *
 * docs/configuration.md is generated from the property table; the test
 * config/docs_current fails while it is stale. To rewrite it:
 *   MEPHISTO_REGEN_DOCS=1 build/tests/runtime_test_config \
 *       --filter 'config/docs_current'
 */
// ctest-timeout: 30
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "mephisto/conf.h"
#include "runtime/config.h"

TestSuite(config, .timeout = 10);

static mph_conf_t *conf;
static char err[1024];

static void setup(void)
{
    conf = mph_conf_new();
    cr_assert_not_null(conf);
    err[0] = '\0';
}

static void teardown(void)
{
    mph_conf_destroy(conf);
    conf = NULL;
}

/* Sets name=value, expecting success, and returns the stored value. */
static const char *set_ok(const char *name, const char *value)
{
    mph_err_t e = mph_conf_set(conf, name, value, err, sizeof err);
    cr_assert_eq(e, MPH_OK, "%s=%s: %s (%d)", name, value, err, e);
    return mph_conf_get(conf, name);
}

/* Sets name=value, expecting code and the exact message (NULL: any). */
static void set_bad(const char *name, const char *value, mph_err_t code,
                    const char *msg)
{
    const char *before = mph_conf_get(conf, name);
    char *saved = before ? strdup(before) : NULL;
    bool was_set = mph_conf_is_set(conf, name);
    err[0] = '\0';
    mph_err_t e = mph_conf_set(conf, name, value, err, sizeof err);
    cr_assert_eq(e, code, "%s=%s: got %d (%s), want %d", name, value, e, err,
                 code);
    if (msg)
        cr_assert_str_eq(err, msg);
    /* Every message starts with the setting's name. */
    cr_assert_eq(strncmp(err, name, strlen(name)), 0, "%s", err);
    cr_assert_eq(strncmp(err + strlen(name), ": ", 2), 0, "%s", err);
    /* And the conf is unchanged. */
    cr_assert_eq(mph_conf_is_set(conf, name), was_set);
    const char *after = mph_conf_get(conf, name);
    if (saved)
        cr_assert_str_eq(after, saved);
    else
        cr_assert_null(after);
    free(saved);
}

static char *write_temp(const char *text)
{
    char *path = strdup("/tmp/mph_test_config_XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0, "mkstemp: %s", strerror(errno));
    size_t len = strlen(text);
    cr_assert_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

/* Removes every MEPHISTO_* variable so env tests see only their own. */
static void clear_mephisto_env(void)
{
    extern char **environ;
    for (;;) {
        char **e = environ;
        while (e && *e && strncmp(*e, "MEPHISTO_", 9) != 0)
            e++;
        if (!e || !*e)
            return;
        char name[256];
        size_t len = strcspn(*e, "=");
        cr_assert_lt(len, sizeof name);
        memcpy(name, *e, len);
        name[len] = '\0';
        unsetenv(name);
    }
}

/* ------------------------------------------------------------------------ */

Test(config, defaults, .init = setup, .fini = teardown)
{
    const char *name, *type, *dflt, *choices, *doc;
    size_t n = 0;
    for (size_t i = 0;
         mph_conf_property(i, &name, &type, &dflt, &choices, &doc); i++, n++) {
        cr_assert_str_eq(mph_conf_get(conf, name), dflt, "%s", name);
        cr_assert_not(mph_conf_is_set(conf, name), "%s", name);
    }
    cr_assert_geq(n, 29);
    cr_assert_str_eq(mph_conf_get(conf, "app_id"), "");
    cr_assert_str_eq(mph_conf_get(conf, "broker"), "kafka://127.0.0.1:9092");
    cr_assert_str_eq(mph_conf_get(conf, "processing_guarantee"),
                     "at_least_once");
    cr_assert_eq(mph_conf_get_int(conf, "workers", -1), 0);
    cr_assert_eq(mph_conf_get_int(conf, "commit_interval_ms", -1), 1000);
    cr_assert_eq(mph_conf_get_int(conf, "web_port", -1), 6066);
    cr_assert_eq(mph_conf_get_bool(conf, "web_enabled", false), true);
    cr_assert_str_eq(mph_conf_get(conf, "web_bind"), "127.0.0.1");
    cr_assert_null(mph_conf_get(conf, "kafka.linger.ms"));
    cr_assert_null(mph_conf_get(conf, "rocksdb.max_open_files"));
    cr_assert_null(mph_conf_get(conf, "wordcount.input_topic"));
    cr_assert_null(mph_conf_get(conf, "no_such_setting"));
}

Test(config, table_has_required_settings)
{
    static const char *const want[] = {
        "app_id",
        "broker",
        "workers",
        "cpus",
        "threads_per_core",
        "processing_guarantee",
        "commit_interval_ms",
        "commit_every",
        "stream_buffer_max",
        "datadir",
        "store",
        "log_level",
        "log_format",
        "shutdown_timeout_ms",
        "on_agent_error",
        "on_decode_error",
        "assignor",
        "group_instance_id",
        "session_timeout_ms",
        "topic_partitions",
        "topic_replication_factor",
        "table_cache_max_keys",
        "rocksdb_block_cache_mb",
        "recovery_batch_records",
        "web_enabled",
        "web_port",
        "web_bind",
        "producer_linger_ms",
        "max_poll_batch",
    };
    for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
        const char *name;
        bool found = false;
        for (size_t i = 0; mph_conf_property(i, &name, NULL, NULL, NULL, NULL);
             i++)
            found = found || strcmp(name, want[w]) == 0;
        cr_assert(found, "%s missing from the table", want[w]);
    }
}

Test(config, property_table_is_consistent)
{
    static const char *const types[] = {"string", "int",     "bool",
                                        "enum",   "cpulist", "broker"};
    const char *name, *type, *dflt, *choices, *doc;
    size_t i;
    for (i = 0; mph_conf_property(i, &name, &type, &dflt, &choices, &doc);
         i++) {
        bool known = false;
        for (size_t t = 0; t < 6; t++)
            known = known || strcmp(type, types[t]) == 0;
        cr_assert(known, "%s: type %s", name, type);
        cr_assert_eq(strcmp(type, "enum") == 0, *choices != '\0', "%s", name);
        cr_assert_gt(strlen(doc), 20, "%s has no doc", name);
        cr_assert_null(strchr(name, '.'), "%s", name);
        int64_t min, max;
        cr_assert_eq(mph__conf_property_range(i, &min, &max),
                     strcmp(type, "int") == 0, "%s", name);
        /* Each default is a valid value of its own setting. */
        mph_conf_t *c = mph_conf_new();
        cr_assert_eq(mph_conf_set(c, name, dflt, err, sizeof err), MPH_OK, "%s",
                     err);
        cr_assert_str_eq(mph_conf_get(c, name), dflt);
        mph_conf_destroy(c);
        /* Names are unique. */
        const char *other;
        for (size_t j = 0; j < i; j++) {
            mph_conf_property(j, &other, NULL, NULL, NULL, NULL);
            cr_assert_str_neq(name, other);
        }
    }
    cr_assert_not(mph_conf_property(i, &name, &type, &dflt, &choices, &doc));
    cr_assert_not(mph_conf_property(1000000, NULL, NULL, NULL, NULL, NULL));
    cr_assert_not(mph__conf_property_range(1000000, NULL, NULL));
}

Test(config, int_values, .init = setup, .fini = teardown)
{
    cr_assert_str_eq(set_ok("workers", "4"), "4");
    cr_assert_eq(mph_conf_get_int(conf, "workers", -1), 4);
    cr_assert_str_eq(set_ok("workers", "0"), "0");
    cr_assert_str_eq(set_ok("workers", "1024"), "1024");
    cr_assert_str_eq(set_ok("workers", "007"), "7");
    cr_assert_str_eq(set_ok("commit_interval_ms", "3600000"), "3600000");

    set_bad("workers", "abc", MPH_ERR_INVALID,
            "workers: must be an integer between 0 and 1024, got 'abc'");
    set_bad("workers", "-1", MPH_ERR_INVALID,
            "workers: must be an integer between 0 and 1024, got '-1'");
    set_bad("workers", "1025", MPH_ERR_INVALID,
            "workers: must be an integer between 0 and 1024, got '1025'");
    set_bad("workers", "", MPH_ERR_INVALID,
            "workers: must be an integer between 0 and 1024, got ''");
    set_bad("workers", " 4", MPH_ERR_INVALID, NULL);
    set_bad("workers", "4 ", MPH_ERR_INVALID, NULL);
    set_bad("workers", "4x", MPH_ERR_INVALID, NULL);
    set_bad("workers", "+4", MPH_ERR_INVALID, NULL);
    set_bad("workers", "0x10", MPH_ERR_INVALID, NULL);
    set_bad("workers", "99999999999999999999", MPH_ERR_INVALID, NULL);
    set_bad("commit_interval_ms", "9", MPH_ERR_INVALID,
            "commit_interval_ms: must be an integer between 10 and 3600000, "
            "got '9'");
    set_bad("web_port", "65536", MPH_ERR_INVALID,
            "web_port: must be an integer between 0 and 65535, got '65536'");
    cr_assert_str_eq(mph_conf_get(conf, "workers"), "7");
}

Test(config, bool_values, .init = setup, .fini = teardown)
{
    static const char *const yes[] = {"true", "TRUE", "1", "yes",
                                      "Yes",  "on",   "ON"};
    static const char *const no[] = {"false", "False", "0",  "no",
                                     "NO",    "off",   "Off"};
    for (size_t i = 0; i < 7; i++) {
        cr_assert_str_eq(set_ok("web_enabled", no[i]), "false");
        cr_assert_eq(mph_conf_get_bool(conf, "web_enabled", true), false);
        cr_assert_str_eq(set_ok("web_enabled", yes[i]), "true");
        cr_assert_eq(mph_conf_get_bool(conf, "web_enabled", false), true);
    }
    set_bad("web_enabled", "maybe", MPH_ERR_INVALID,
            "web_enabled: must be true or false (or 1/0, yes/no, on/off), "
            "got 'maybe'");
    set_bad("web_enabled", "", MPH_ERR_INVALID, NULL);
    set_bad("web_enabled", "2", MPH_ERR_INVALID, NULL);
    set_bad("web_enabled", "truee", MPH_ERR_INVALID, NULL);
}

Test(config, enum_values, .init = setup, .fini = teardown)
{
    cr_assert_str_eq(set_ok("processing_guarantee", "exactly_once"),
                     "exactly_once");
    cr_assert_str_eq(set_ok("processing_guarantee", "AT_LEAST_ONCE"),
                     "at_least_once");
    cr_assert_str_eq(set_ok("assignor", "cooperative-sticky"),
                     "cooperative-sticky");
    cr_assert_str_eq(set_ok("assignor", "RoundRobin"), "roundrobin");
    cr_assert_str_eq(set_ok("store", "rocksdb"), "rocksdb");
    cr_assert_str_eq(set_ok("log_level", "debug"), "debug");
    cr_assert_str_eq(set_ok("log_format", "json"), "json");
    cr_assert_str_eq(set_ok("on_agent_error", "stop"), "stop");
    cr_assert_str_eq(set_ok("on_decode_error", "skip"), "skip");
    cr_assert_str_eq(set_ok("on_decode_error", "fail"), "fail");

    set_bad("processing_guarantee", "twice", MPH_ERR_INVALID,
            "processing_guarantee: must be one of at_least_once|exactly_once, "
            "got 'twice'");
    set_bad("store", "disk", MPH_ERR_INVALID,
            "store: must be one of memory|rocksdb, got 'disk'");
    set_bad("assignor", "cooperative", MPH_ERR_INVALID, NULL);
    set_bad("assignor", "range|roundrobin", MPH_ERR_INVALID, NULL);
    set_bad("log_level", "", MPH_ERR_INVALID, NULL);
    set_bad("log_level", "warning ", MPH_ERR_INVALID, NULL);
}

Test(config, cpulist_values, .init = setup, .fini = teardown)
{
    cr_assert_str_eq(set_ok("cpus", "0-3,6,8-9"), "0-3,6,8-9");
    cr_assert_str_eq(set_ok("cpus", "4095"), "4095");
    cr_assert_str_eq(set_ok("cpus", "0"), "0");
    cr_assert_str_eq(set_ok("cpus", "7,1-2"), "7,1-2");
    cr_assert_str_eq(set_ok("cpus", ""), "");

    set_bad("cpus", "a", MPH_ERR_INVALID,
            "cpus: must be a CPU list such as 0-3,6,8-9, got 'a'");
    set_bad("cpus", "0-3,4096", MPH_ERR_INVALID,
            "cpus: CPUs must be between 0 and 4095, got '0-3,4096'");
    set_bad("cpus", "3-1", MPH_ERR_INVALID,
            "cpus: range 3-1 is reversed, got '3-1'");
    set_bad("cpus", "0-3,2", MPH_ERR_INVALID,
            "cpus: CPU 2 is listed twice, got '0-3,2'");
    set_bad("cpus", "99999999999999", MPH_ERR_INVALID, NULL);
    set_bad("cpus", "0-", MPH_ERR_INVALID, NULL);
    set_bad("cpus", "-1", MPH_ERR_INVALID, NULL);
    set_bad("cpus", "1,", MPH_ERR_INVALID, NULL);
    set_bad("cpus", ",1", MPH_ERR_INVALID, NULL);
    set_bad("cpus", "1,,2", MPH_ERR_INVALID, NULL);
    set_bad("cpus", "0 - 3", MPH_ERR_INVALID, NULL);
    set_bad("cpus", "0-3:2", MPH_ERR_INVALID, NULL);
}

Test(config, cpulist_parse)
{
    uint16_t cpus[8];
    size_t n = 99;
    cr_assert_eq(
        mph__conf_cpulist_parse("8-9,0-2,6", cpus, 8, &n, err, sizeof err),
        MPH_OK);
    cr_assert_eq(n, 6);
    static const uint16_t want[] = {0, 1, 2, 6, 8, 9};
    for (size_t i = 0; i < 6; i++)
        cr_assert_eq(cpus[i], want[i]);
    /* More CPUs than room: the count is still exact. */
    cr_assert_eq(mph__conf_cpulist_parse("0-99", cpus, 8, &n, NULL, 0), MPH_OK);
    cr_assert_eq(n, 100);
    cr_assert_eq(cpus[7], 7);
    cr_assert_eq(mph__conf_cpulist_parse("", cpus, 8, &n, NULL, 0), MPH_OK);
    cr_assert_eq(n, 0);
    cr_assert_eq(mph__conf_cpulist_parse("x", cpus, 8, &n, NULL, 0),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph__conf_cpulist_parse(NULL, cpus, 8, &n, NULL, 0),
                 MPH_ERR_INVALID);
}

Test(config, broker_values, .init = setup, .fini = teardown)
{
    static const char *const good[] = {
        "kafka://127.0.0.1:9092",
        "kafka://localhost:1",
        "kafka://a:1,b.example.com:65535,c-d_e:9092",
        "kafka://[::1]:9092",
        "kafka://[fe80::1]:9092,10.0.0.1:9093",
        "mock://",
        "mock://1",
        "mock://16",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        cr_assert_str_eq(set_ok("broker", good[i]), good[i]);

    set_bad("broker", "kafka://h:0", MPH_ERR_INVALID,
            "broker: port must be an integer between 1 and 65535, got "
            "'kafka://h:0'");
    set_bad("broker", "mock://17", MPH_ERR_INVALID,
            "broker: mock://N needs N between 1 and 16, got 'mock://17'");
    set_bad("broker", "localhost:9092", MPH_ERR_INVALID,
            "broker: must be kafka://host:port[,host:port...], mock:// or "
            "mock://N, got 'localhost:9092'");
    static const char *const bad[] = {
        "",
        "kafka://",
        "kafka://host",
        "kafka://:9092",
        "kafka://h:65536",
        "kafka://h:",
        "kafka://h:12a",
        "kafka://h:1,",
        "kafka://,h:1",
        "kafka://h h:1",
        "kafka://h/x:1",
        "kafka://[]:1",
        "kafka://[::1]",
        "kafka://[::1]x:1",
        "kafka://[zz]:1",
        "mock://0",
        "mock://x",
        "mock://1x",
        "MOCK://",
        "http://h:1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        set_bad("broker", bad[i], MPH_ERR_INVALID, NULL);
}

Test(config, broker_parse)
{
    mph__conf_broker_t b;
    cr_assert_eq(mph__conf_broker_parse("kafka://a:1,b:2", &b, err, sizeof err),
                 MPH_OK);
    cr_assert_eq(b.mock_brokers, 0);
    cr_assert_str_eq(b.bootstrap, "a:1,b:2");
    cr_assert_eq(mph__conf_broker_parse("mock://", &b, err, sizeof err),
                 MPH_OK);
    cr_assert_eq(b.mock_brokers, 1);
    cr_assert_null(b.bootstrap);
    cr_assert_eq(mph__conf_broker_parse("mock://3", &b, err, sizeof err),
                 MPH_OK);
    cr_assert_eq(b.mock_brokers, 3);
    cr_assert_eq(mph__conf_broker_parse("nope", &b, err, sizeof err),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph__conf_broker_parse(NULL, &b, NULL, 0), MPH_ERR_INVALID);
}

Test(config, string_values, .init = setup, .fini = teardown)
{
    cr_assert_str_eq(set_ok("app_id", "word-count.v1_2"), "word-count.v1_2");
    cr_assert_str_eq(set_ok("app_id", ""), "");
    cr_assert(mph_conf_is_set(conf, "app_id"));
    char id[202];
    memset(id, 'a', 200);
    id[200] = '\0';
    cr_assert_str_eq(set_ok("app_id", id), id);
    id[200] = 'a';
    id[201] = '\0';
    set_bad("app_id", id, MPH_ERR_INVALID,
            "app_id: must be at most 200 characters, got 201");
    set_bad("app_id", "my app", MPH_ERR_INVALID,
            "app_id: must contain only letters, digits, '.', '_' and '-', "
            "got 'my app'");
    set_bad("app_id", "a/b", MPH_ERR_INVALID, NULL);
    set_bad("app_id", "caf\xc3\xa9", MPH_ERR_INVALID, NULL);

    cr_assert_str_eq(set_ok("group_instance_id", "host-1"), "host-1");
    cr_assert_str_eq(set_ok("group_instance_id", ""), "");
    set_bad("group_instance_id", "host 1", MPH_ERR_INVALID, NULL);

    cr_assert_str_eq(set_ok("web_bind", "0.0.0.0"), "0.0.0.0");
    cr_assert_str_eq(set_ok("web_bind", "10.1.2.3"), "10.1.2.3");
    set_bad("web_bind", "localhost", MPH_ERR_INVALID,
            "web_bind: must be an IPv4 address such as 127.0.0.1, got "
            "'localhost'");
    set_bad("web_bind", "::1", MPH_ERR_INVALID, NULL);
    set_bad("web_bind", "256.1.1.1", MPH_ERR_INVALID, NULL);
    set_bad("web_bind", "", MPH_ERR_INVALID, NULL);

    cr_assert_str_eq(set_ok("datadir", "/var/lib/my app"), "/var/lib/my app");
    set_bad("datadir", "", MPH_ERR_INVALID, "datadir: must not be empty");
}

Test(config, unknown_names_and_suggestions, .init = setup, .fini = teardown)
{
    set_bad("wokers", "1", MPH_ERR_NOENT,
            "wokers: unknown setting (did you mean workers?)");
    set_bad("wrokers", "1", MPH_ERR_NOENT,
            "wrokers: unknown setting (did you mean workers?)");
    set_bad("Workers", "1", MPH_ERR_NOENT,
            "Workers: unknown setting (did you mean workers?)");
    set_bad("comit_intervl_ms", "1", MPH_ERR_NOENT,
            "comit_intervl_ms: unknown setting (did you mean "
            "commit_interval_ms?)");
    set_bad("cpu", "1", MPH_ERR_NOENT,
            "cpu: unknown setting (did you mean cpus?)");
    set_bad("frobnicate", "1", MPH_ERR_NOENT, "frobnicate: unknown setting");
    set_bad("completely_unrelated_name", "1", MPH_ERR_NOENT,
            "completely_unrelated_name: unknown setting");
    err[0] = '\0';
    cr_assert_eq(mph_conf_set(conf, "", "1", err, sizeof err), MPH_ERR_INVALID);
    cr_assert_neq(err[0], '\0');
}

Test(config, kafka_passthrough, .init = setup, .fini = teardown)
{
    cr_assert_str_eq(set_ok("kafka.linger.ms", "5"), "5");
    cr_assert(mph_conf_is_set(conf, "kafka.linger.ms"));
    cr_assert_eq(mph_conf_get_int(conf, "kafka.linger.ms", -1), 5);
    cr_assert_str_eq(set_ok("kafka.acks", "all"), "all");
    cr_assert_str_eq(set_ok("kafka.enable.idempotence", "true"), "true");
    cr_assert_str_eq(set_ok("kafka.client.id", "my client"), "my client");

    set_bad("kafka.no.such.prop", "1", MPH_ERR_NOENT,
            "kafka.no.such.prop: No such configuration property: "
            "\"no.such.prop\"");
    set_bad("kafka.acks", "banana", MPH_ERR_INVALID,
            "kafka.acks: Invalid value for configuration property "
            "\"request.required.acks\"");
    /* librdkafka's own trailing newline is not passed on. */
    set_bad("kafka.linger.ms", "-5", MPH_ERR_INVALID, NULL);
    cr_assert_str_eq(err,
                     "kafka.linger.ms: Configuration property "
                     "\"queue.buffering.max.ms\" value -5 is outside allowed "
                     "range 0..900000");
    set_bad("kafka.dr_msg_cb", "x", MPH_ERR_INVALID, NULL);
    cr_assert_str_eq(mph_conf_get(conf, "kafka.acks"), "all");
    cr_assert_str_eq(mph_conf_get(conf, "kafka.linger.ms"), "5");
}

Test(config, rocksdb_and_app_settings, .init = setup, .fini = teardown)
{
    cr_assert_str_eq(set_ok("rocksdb.max_open_files", "512"), "512");
    /* rocksdb.<prop> is checked when set, whatever the store: a name the
     * RocksDB store does not know is refused even while store=memory. */
    cr_assert_str_eq(set_ok("store", "memory"), "memory");
    set_bad("rocksdb.anything_goes", "  x  ", MPH_ERR_INVALID,
            "rocksdb.anything_goes: unknown or unsupported option");
    set_bad("rocksdb.max_open_files", "many", MPH_ERR_INVALID,
            "rocksdb.max_open_files: \"many\" is not an integer");
    set_ok("store", "rocksdb");
    set_bad("rocksdb.write_bufer_size", "1m", MPH_ERR_INVALID, NULL);
    cr_assert_str_eq(set_ok("rocksdb.write_buffer_size", "8m"), "8m");
    cr_assert_str_eq(set_ok("wordcount.input_topic", "words"), "words");
    cr_assert_str_eq(set_ok("wordcount.nested.name-2", ""), "");
    cr_assert_str_eq(set_ok("workers.x", "not an int"), "not an int");

    static const char *const bad[] = {"kafka.", "rocksdb.", "wordcount.",
                                      ".x",     "a..b",     "a.b c",
                                      "a.b=c",  "a.b/c",    "."};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        set_bad(bad[i], "v", MPH_ERR_INVALID, NULL);
    err[0] = '\0';
    mph_conf_set(conf, "a..b", "v", err, sizeof err);
    cr_assert_str_eq(err,
                     "a..b: bad name: dotted names are <prefix>.<name>, parts "
                     "of letters, digits, '_' and '-' joined by single dots");
}

Test(config, typed_getters, .init = setup, .fini = teardown)
{
    set_ok("wordcount.n", "42");
    set_ok("wordcount.neg", "-7");
    set_ok("wordcount.word", "abc");
    set_ok("wordcount.flag", "Yes");
    cr_assert_eq(mph_conf_get_int(conf, "wordcount.n", -1), 42);
    cr_assert_eq(mph_conf_get_int(conf, "wordcount.neg", 0), -7);
    cr_assert_eq(mph_conf_get_int(conf, "wordcount.word", -1), -1);
    cr_assert_eq(mph_conf_get_int(conf, "wordcount.missing", 99), 99);
    cr_assert_eq(mph_conf_get_int(conf, "nonsense", 5), 5);
    cr_assert_eq(mph_conf_get_int(conf, "store", 5), 5);
    cr_assert_eq(mph_conf_get_bool(conf, "wordcount.flag", false), true);
    cr_assert_eq(mph_conf_get_bool(conf, "wordcount.word", true), true);
    cr_assert_eq(mph_conf_get_bool(conf, "wordcount.word", false), false);
    cr_assert_eq(mph_conf_get_bool(conf, "nonsense", true), true);
    cr_assert_eq(mph_conf_get_int(conf, "table_cache_max_keys", 0), 100000);
}

Test(config, is_set, .init = setup, .fini = teardown)
{
    cr_assert_not(mph_conf_is_set(conf, "workers"));
    set_ok("workers", "0"); /* the default, but set explicitly */
    cr_assert(mph_conf_is_set(conf, "workers"));
    cr_assert_not(mph_conf_is_set(conf, "kafka.linger.ms"));
    set_ok("kafka.linger.ms", "1");
    cr_assert(mph_conf_is_set(conf, "kafka.linger.ms"));
    cr_assert_not(mph_conf_is_set(conf, "nonsense"));
}

Test(config, values_stay_valid_until_reset, .init = setup, .fini = teardown)
{
    const char *w = set_ok("wordcount.a", "first");
    for (int i = 0; i < 200; i++) {
        char name[32];
        snprintf(name, sizeof name, "app.n%03d", i);
        set_ok(name, "x");
    }
    cr_assert_str_eq(w, "first");
    cr_assert_eq(mph_conf_get(conf, "wordcount.a"), w);
    set_ok("wordcount.a", "second");
    cr_assert_str_eq(mph_conf_get(conf, "wordcount.a"), "second");
}

struct seen {
    char names[64][64];
    char values[64][64];
    size_t n;
};

static void collect(const char *name, const char *value, void *opaque)
{
    struct seen *s = opaque;
    cr_assert_lt(s->n, 64);
    snprintf(s->names[s->n], 64, "%s", name);
    snprintf(s->values[s->n], 64, "%s", value);
    s->n++;
}

Test(config, foreach_order_and_prefix, .init = setup, .fini = teardown)
{
    set_ok("workers", "2");
    set_ok("wordcount.topic", "t");
    set_ok("kafka.linger.ms", "3");
    set_ok("app_id", "x");
    set_ok("kafka.acks", "all");
    set_ok("rocksdb.max_open_files", "90");
    set_ok("workers", "3");

    struct seen s = {0};
    mph_conf_foreach(conf, "", collect, &s);
    static const char *const all[] = {
        "app_id",          "kafka.acks",
        "kafka.linger.ms", "rocksdb.max_open_files",
        "wordcount.topic", "workers"};
    cr_assert_eq(s.n, 6);
    for (size_t i = 0; i < 6; i++)
        cr_assert_str_eq(s.names[i], all[i]);
    cr_assert_str_eq(s.values[5], "3");

    memset(&s, 0, sizeof s);
    mph_conf_foreach(conf, NULL, collect, &s);
    cr_assert_eq(s.n, 6);

    memset(&s, 0, sizeof s);
    mph_conf_foreach(conf, "kafka.", collect, &s);
    cr_assert_eq(s.n, 2);
    cr_assert_str_eq(s.names[0], "kafka.acks");
    cr_assert_str_eq(s.values[0], "all");
    cr_assert_str_eq(s.names[1], "kafka.linger.ms");

    memset(&s, 0, sizeof s);
    mph_conf_foreach(conf, "wordcount.", collect, &s);
    cr_assert_eq(s.n, 1);
    cr_assert_str_eq(s.values[0], "t");

    memset(&s, 0, sizeof s);
    mph_conf_foreach(conf, "nothing.", collect, &s);
    cr_assert_eq(s.n, 0);
}

Test(config, dup_is_deep, .init = setup, .fini = teardown)
{
    set_ok("workers", "2");
    set_ok("kafka.linger.ms", "3");
    set_ok("wordcount.topic", "t");
    mph_conf_t *copy = mph_conf_dup(conf);
    cr_assert_not_null(copy);
    set_ok("workers", "5");
    set_ok("wordcount.topic", "u");
    set_ok("wordcount.other", "o");
    cr_assert_str_eq(mph_conf_get(copy, "workers"), "2");
    cr_assert_str_eq(mph_conf_get(copy, "kafka.linger.ms"), "3");
    cr_assert_str_eq(mph_conf_get(copy, "wordcount.topic"), "t");
    cr_assert_null(mph_conf_get(copy, "wordcount.other"));
    cr_assert_not(mph_conf_is_set(copy, "app_id"));
    cr_assert_str_eq(mph_conf_get(copy, "store"), "memory");
    cr_assert_eq(mph_conf_set(copy, "store", "rocksdb", err, sizeof err),
                 MPH_OK);
    cr_assert_str_eq(mph_conf_get(conf, "store"), "memory");
    mph_conf_destroy(copy);

    mph_conf_t *empty = mph_conf_new();
    mph_conf_t *copy2 = mph_conf_dup(empty);
    cr_assert_not_null(copy2);
    mph_conf_destroy(empty);
    mph_conf_destroy(copy2);
}

Test(config, set_pair, .init = setup, .fini = teardown)
{
    cr_assert_eq(mph_conf_set_pair(conf, "workers=4", err, sizeof err), MPH_OK);
    cr_assert_str_eq(mph_conf_get(conf, "workers"), "4");
    cr_assert_eq(mph_conf_set_pair(conf, " store =rocksdb", err, sizeof err),
                 MPH_OK);
    cr_assert_str_eq(mph_conf_get(conf, "store"), "rocksdb");
    cr_assert_eq(mph_conf_set_pair(conf, "wordcount.expr=a=b", err, sizeof err),
                 MPH_OK);
    cr_assert_str_eq(mph_conf_get(conf, "wordcount.expr"), "a=b");
    cr_assert_eq(mph_conf_set_pair(conf, "app_id=", err, sizeof err), MPH_OK);
    cr_assert(mph_conf_is_set(conf, "app_id"));

    cr_assert_eq(mph_conf_set_pair(conf, "workers", err, sizeof err),
                 MPH_ERR_INVALID);
    cr_assert_str_eq(err, "workers: expected name=value");
    cr_assert_eq(mph_conf_set_pair(conf, "=4", err, sizeof err),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph_conf_set_pair(conf, "workers=x", err, sizeof err),
                 MPH_ERR_INVALID);
    cr_assert_str_eq(err,
                     "workers: must be an integer between 0 and 1024, got 'x'");
    cr_assert_eq(mph_conf_set_pair(conf, "wokers=1", err, sizeof err),
                 MPH_ERR_NOENT);
    cr_assert_str_eq(mph_conf_get(conf, "workers"), "4");
}

Test(config, load_file_good, .init = setup, .fini = teardown)
{
    char *path =
        write_temp("\xEF\xBB\xBF# a comment\n"
                   "\n"
                   "   \t\n"
                   "app_id = wordcount\n"
                   "  workers=4   # trailing comment\n"
                   "broker\t=\tmock://3\r\n"
                   "kafka.linger.ms = 20\n"
                   "wordcount.banner = \"  # words #  \"\n"
                   "wordcount.escaped = \"say \\\"hi\\\" \\\\ C:\\dir\"\n"
                   "wordcount.hash = a#b\n"
                   "wordcount.empty =\n"
                   "wordcount.quoted_empty = \"\" # nothing\n"
                   "  # indented comment = not a setting\n"
                   "store = rocksdb\n"
                   "store = memory\n"
                   "web_enabled = off");
    cr_assert_eq(mph_conf_load_file(conf, path, err, sizeof err), MPH_OK, "%s",
                 err);
    cr_assert_str_eq(mph_conf_get(conf, "app_id"), "wordcount");
    cr_assert_str_eq(mph_conf_get(conf, "workers"), "4");
    cr_assert_str_eq(mph_conf_get(conf, "broker"), "mock://3");
    cr_assert_str_eq(mph_conf_get(conf, "kafka.linger.ms"), "20");
    cr_assert_str_eq(mph_conf_get(conf, "wordcount.banner"), "  # words #  ");
    cr_assert_str_eq(mph_conf_get(conf, "wordcount.escaped"),
                     "say \"hi\" \\ C:\\dir");
    cr_assert_str_eq(mph_conf_get(conf, "wordcount.hash"), "a#b");
    cr_assert_str_eq(mph_conf_get(conf, "wordcount.empty"), "");
    cr_assert_str_eq(mph_conf_get(conf, "wordcount.quoted_empty"), "");
    cr_assert_str_eq(mph_conf_get(conf, "store"), "memory");
    cr_assert_eq(mph_conf_get_bool(conf, "web_enabled", true), false);
    struct seen s = {0};
    mph_conf_foreach(conf, "", collect, &s);
    cr_assert_eq(s.n, 11);
    unlink(path);
    free(path);
}

static void load_bad(const char *text, mph_err_t code, const char *suffix)
{
    char *path = write_temp(text);
    err[0] = '\0';
    cr_assert_eq(mph_conf_load_file(conf, path, err, sizeof err), code, "%s",
                 err);
    char want[1024];
    snprintf(want, sizeof want, "%s:%s", path, suffix);
    cr_assert_str_eq(err, want);
    unlink(path);
    free(path);
}

Test(config, load_file_bad, .init = setup, .fini = teardown)
{
    set_ok("workers", "1");
    load_bad("app_id = a\n# ok\nworkers = many\nstore = rocksdb\n",
             MPH_ERR_INVALID,
             "3: workers: must be an integer between 0 and 1024, got 'many'");
    /* Nothing of a bad file is applied. */
    cr_assert_not(mph_conf_is_set(conf, "app_id"));
    cr_assert_str_eq(mph_conf_get(conf, "workers"), "1");

    load_bad("app_id = a\ngarbage here\n", MPH_ERR_INVALID,
             "2: expected name = value, got 'garbage here'");
    load_bad("\n\nwokers = 2\n", MPH_ERR_NOENT,
             "3: wokers: unknown setting (did you mean workers?)");
    load_bad(" = 2\n", MPH_ERR_INVALID, "1: missing setting name before '='");
    load_bad("wordcount.x = \"open\n", MPH_ERR_INVALID,
             "1: wordcount.x: unterminated quoted value");
    load_bad("wordcount.x = \"a\" b\n", MPH_ERR_INVALID,
             "1: wordcount.x: unexpected text after the closing quote");
    load_bad("workers = \"4\" # quoted int\nkafka.acks = banana\n",
             MPH_ERR_INVALID,
             "2: kafka.acks: Invalid value for configuration property "
             "\"request.required.acks\"");
    cr_assert_str_eq(mph_conf_get(conf, "workers"), "1");

    cr_assert_eq(
        mph_conf_load_file(conf, "/nonexistent/mph.conf", err, sizeof err),
        MPH_ERR_IO);
    cr_assert_str_eq(err, "/nonexistent/mph.conf: No such file or directory");
}

/* A line longer than MPH_CONF_LINE_MAX is refused with its line number,
 * without reading the rest of it (a file with no newline, /dev/zero, would
 * otherwise grow memory without bound). */
Test(config, load_file_caps_line_length, .init = setup, .fini = teardown)
{
    size_t n = MPH_CONF_LINE_MAX;
    char *text = malloc(n + 64);
    cr_assert_not_null(text);
    /* A value that fits: the line is exactly MPH_CONF_LINE_MAX bytes. */
    int head = snprintf(text, n + 64, "workers = 2\nwordcount.x = ");
    memset(text + head, 'v', n - (size_t)(head - 12));
    strcpy(text + head + (n - (size_t)(head - 12)), "\n");
    char *path = write_temp(text);
    cr_assert_eq(mph_conf_load_file(conf, path, err, sizeof err), MPH_OK, "%s",
                 err);
    cr_assert_eq(strlen(mph_conf_get(conf, "wordcount.x")), n - 14);
    unlink(path);
    free(path);

    /* One byte more, and no newline at all after it. */
    teardown();
    setup();
    text[head + (n - (size_t)(head - 12))] = 'v';
    text[head + (n - (size_t)(head - 12)) + 1] = '\0';
    load_bad(text, MPH_ERR_INVALID,
             "2: line longer than 1048576 bytes (is it a config file?)");
    cr_assert_not(mph_conf_is_set(conf, "workers"));
    free(text);

    cr_assert_eq(mph_conf_load_file(conf, "/dev/zero", err, sizeof err),
                 MPH_ERR_INVALID);
    cr_assert_str_eq(
        err,
        "/dev/zero:1: line longer than 1048576 bytes (is it a config file?)");
}

/* Values echoed in errors cannot drive a terminal: control characters, DEL,
 * C1 controls and invalid UTF-8 come back as \xNN. */
Test(config, errors_escape_control_characters, .init = setup, .fini = teardown)
{
    char out[128];
    cr_assert_str_eq(
        mph_conf_escape(out, sizeof out,
                        "a\x1b[2Jb\r\n\x7f \xc3\xa9\xc2\x9b\xff\\"),
        "a\\x1b[2Jb\\x0d\\x0a\\x7f \xc3\xa9\\xc2\\x9b\\xff\\");
    char twice[128];
    cr_assert_str_eq(mph_conf_escape(twice, sizeof twice, out), out,
                     "escaping is idempotent");
    cr_assert_str_eq(mph_conf_escape(out, 6, "abc\x1b"), "abc",
                     "an escape that does not fit is left out whole");
    cr_assert_str_eq(
        mph_conf_escape(out, sizeof out, "\xe2\x82\xac\xed\xa0\x80"),
        "\xe2\x82\xac\\xed\\xa0\\x80", "a surrogate is not UTF-8");
    cr_assert_str_eq(mph_conf_escape(out, sizeof out,
                                     "a\xe2\x80\xae"
                                     "b"),
                     "a\\xe2\\x80\\xae"
                     "b",
                     "a bidi override is escaped");

    set_bad("app_id", "x\x1b[2J", MPH_ERR_INVALID,
            "app_id: must contain only letters, digits, '.', '_' and '-', got "
            "'x\\x1b[2J'");
    set_bad("log_level", "\x1b]0;pwned\x07", MPH_ERR_INVALID,
            "log_level: must be one of error|warn|info|debug, got "
            "'\\x1b]0;pwned\\x07'");
    set_bad("kafka.acks", "\x1b[2J", MPH_ERR_INVALID, NULL);
    cr_assert_null(strchr(err, 0x1b), "%s", err);

    char *path = write_temp("workers = 1\nbroker = \x1b[2J\n");
    cr_assert_eq(mph_conf_load_file(conf, path, err, sizeof err),
                 MPH_ERR_INVALID);
    cr_assert_null(strchr(err, 0x1b), "%s", err);
    cr_assert_not_null(strstr(err, "\\x1b[2J"), "%s", err);
    unlink(path);
    free(path);

    clear_mephisto_env();
    setenv("MEPHISTO_WORKERS", "\x1b[2J", 1);
    cr_assert_eq(mph_conf_load_env(conf, err, sizeof err), MPH_ERR_INVALID);
    unsetenv("MEPHISTO_WORKERS");
    cr_assert_null(strchr(err, 0x1b), "%s", err);
    cr_assert_not_null(strstr(err, "\\x1b[2J"), "%s", err);
}

Test(config, load_env_good, .init = setup, .fini = teardown)
{
    clear_mephisto_env();
    setenv("MEPHISTO_WORKERS", "3", 1);
    setenv("MEPHISTO_APP_ID", "envapp", 1);
    setenv("MEPHISTO_WEB_ENABLED", "no", 1);
    setenv("MEPHISTO_KAFKA__LINGER__MS", "7", 1);
    setenv("MEPHISTO_KAFKA__QUEUE__BUFFERING__MAX__KBYTES", "65536", 1);
    setenv("MEPHISTO_ROCKSDB__MAX_OPEN_FILES", "512", 1);
    setenv("MEPHISTO_WORDCOUNT__INPUT_TOPIC", "words=many", 1);
    /* Tool and test variables are not settings. */
    setenv("MEPHISTO_TEST_BROKERS", "kafka://x:1", 1);
    setenv("MEPHISTO_TEST_ANYTHING", "?", 1);
    setenv("MEPHISTO_KAFKA_PORT", "9999", 1);
    setenv("MEPHISTO_KAFKA_DIR", "/tmp/k", 1);
    setenv("MEPHISTO_KAFKA_HEAP", "1g", 1);
    setenv("MEPHISTO_KAFKA_TIMEOUT", "90", 1);
    setenv("MEPHISTO_SOURCE_DIR", "/src", 1);
    setenv("MEPHISTO_BUILD_DIR", "/build", 1);
    setenv("MEPHISTO_REGEN_DOCS", "0", 1);
    setenv("NOT_MEPHISTO_WORKERS", "9", 1);

    cr_assert_eq(mph_conf_load_env(conf, err, sizeof err), MPH_OK, "%s", err);
    cr_assert_str_eq(mph_conf_get(conf, "workers"), "3");
    cr_assert_str_eq(mph_conf_get(conf, "app_id"), "envapp");
    cr_assert_str_eq(mph_conf_get(conf, "web_enabled"), "false");
    cr_assert_str_eq(mph_conf_get(conf, "kafka.linger.ms"), "7");
    cr_assert_str_eq(mph_conf_get(conf, "kafka.queue.buffering.max.kbytes"),
                     "65536");
    cr_assert_str_eq(mph_conf_get(conf, "rocksdb.max_open_files"), "512");
    cr_assert_str_eq(mph_conf_get(conf, "wordcount.input_topic"), "words=many");
    struct seen s = {0};
    mph_conf_foreach(conf, "", collect, &s);
    cr_assert_eq(s.n, 7);
    clear_mephisto_env();
    unsetenv("NOT_MEPHISTO_WORKERS");
}

Test(config, load_env_bad, .init = setup, .fini = teardown)
{
    clear_mephisto_env();
    setenv("MEPHISTO_APP_ID", "envapp", 1);
    setenv("MEPHISTO_WORKERS", "abc", 1);
    cr_assert_eq(mph_conf_load_env(conf, err, sizeof err), MPH_ERR_INVALID);
    cr_assert_str_eq(err, "MEPHISTO_WORKERS: workers: must be an integer "
                          "between 0 and 1024, got 'abc'");
    /* All or nothing. */
    cr_assert_not(mph_conf_is_set(conf, "app_id"));
    unsetenv("MEPHISTO_WORKERS");

    setenv("MEPHISTO_WOKERS", "2", 1);
    cr_assert_eq(mph_conf_load_env(conf, err, sizeof err), MPH_ERR_NOENT);
    cr_assert_str_eq(err, "MEPHISTO_WOKERS: wokers: unknown setting (did you "
                          "mean workers?)");
    unsetenv("MEPHISTO_WOKERS");

    setenv("MEPHISTO_KAFKA_LINGER_MS", "2", 1);
    cr_assert_eq(mph_conf_load_env(conf, err, sizeof err), MPH_ERR_NOENT);
    cr_assert_str_eq(err,
                     "MEPHISTO_KAFKA_LINGER_MS: kafka_linger_ms: unknown "
                     "setting; librdkafka and RocksDB properties are written "
                     "with '.' as \"__\", as in MEPHISTO_KAFKA__LINGER__MS");
    unsetenv("MEPHISTO_KAFKA_LINGER_MS");

    setenv("MEPHISTO_KAFKA__NO__SUCH__PROP", "2", 1);
    cr_assert_eq(mph_conf_load_env(conf, err, sizeof err), MPH_ERR_NOENT);
    cr_assert_str_eq(err, "MEPHISTO_KAFKA__NO__SUCH__PROP: kafka.no.such.prop: "
                          "No such configuration property: \"no.such.prop\"");
    unsetenv("MEPHISTO_KAFKA__NO__SUCH__PROP");

    setenv("MEPHISTO_", "2", 1);
    cr_assert_eq(mph_conf_load_env(conf, err, sizeof err), MPH_ERR_INVALID);
    cr_assert_str_eq(err, "MEPHISTO_: no setting name after MEPHISTO_");
    unsetenv("MEPHISTO_");

    cr_assert_eq(mph_conf_load_env(conf, err, sizeof err), MPH_OK, "%s", err);
    cr_assert_str_eq(mph_conf_get(conf, "app_id"), "envapp");
    clear_mephisto_env();
}

Test(config, null_arguments, .init = setup, .fini = teardown)
{
    cr_assert_eq(mph_conf_set(NULL, "workers", "1", err, sizeof err),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph_conf_set(conf, NULL, "1", err, sizeof err),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph_conf_set(conf, "workers", NULL, err, sizeof err),
                 MPH_ERR_INVALID);
    cr_assert_str_eq(err, "workers: value is NULL");
    cr_assert_eq(mph_conf_set(conf, "workers", "x", NULL, 0), MPH_ERR_INVALID);
    cr_assert_eq(mph_conf_set(conf, "wokers", "x", NULL, 100), MPH_ERR_NOENT);
    char tiny[4] = "zzz";
    cr_assert_eq(mph_conf_set(conf, "workers", "x", tiny, 0), MPH_ERR_INVALID);
    cr_assert_str_eq(tiny, "zzz");
    cr_assert_eq(mph_conf_set(conf, "workers", "x", tiny, sizeof tiny),
                 MPH_ERR_INVALID);
    cr_assert_str_eq(tiny, "wor");
    cr_assert_eq(mph_conf_set_pair(NULL, "a=b", err, sizeof err),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph_conf_set_pair(conf, NULL, err, sizeof err),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph_conf_load_file(NULL, "/x", err, sizeof err),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph_conf_load_file(conf, NULL, err, sizeof err),
                 MPH_ERR_INVALID);
    cr_assert_eq(mph_conf_load_env(NULL, err, sizeof err), MPH_ERR_INVALID);
    cr_assert_null(mph_conf_get(NULL, "workers"));
    cr_assert_null(mph_conf_get(conf, NULL));
    cr_assert_eq(mph_conf_get_int(NULL, "workers", 17), 17);
    cr_assert_eq(mph_conf_get_int(conf, NULL, 17), 17);
    cr_assert_eq(mph_conf_get_bool(NULL, "web_enabled", false), false);
    cr_assert_not(mph_conf_is_set(NULL, "workers"));
    cr_assert_not(mph_conf_is_set(conf, NULL));
    mph_conf_foreach(NULL, "", collect, NULL);
    mph_conf_foreach(conf, "", NULL, NULL);
    cr_assert_null(mph_conf_dup(NULL));
    mph_conf_destroy(NULL);
    mph_conf_print_help(NULL, true);
    mph_conf_print_help(NULL, false);
    cr_assert(mph_conf_property(0, NULL, NULL, NULL, NULL, NULL));
}

Test(config, worker_count, .init = setup, .fini = teardown)
{
    set_ok("workers", "5");
    cr_assert_eq(mph__conf_worker_count(conf), 5);
    set_ok("workers", "0");
    set_ok("cpus", "0-3");
    set_ok("threads_per_core", "2");
    cr_assert_eq(mph__conf_worker_count(conf), 8);
    set_ok("cpus", "");
    cpu_set_t set;
    cr_assert_eq(sched_getaffinity(0, sizeof set, &set), 0);
    cr_assert_eq(mph__conf_worker_count(conf), 2 * CPU_COUNT(&set));
    set_ok("cpus", "0-4095");
    set_ok("threads_per_core", "64");
    cr_assert_eq(mph__conf_worker_count(conf), 1024);
}

static char *render(bool markdown, size_t *len)
{
    char *buf = NULL;
    FILE *mem = open_memstream(&buf, len);
    cr_assert_not_null(mem);
    mph_conf_print_help(mem, markdown);
    cr_assert_eq(fclose(mem), 0);
    return buf;
}

Test(config, help_text)
{
    size_t len;
    char *text = render(false, &len);
    cr_assert_gt(len, 1000);
    cr_assert_null(strchr(text, '`'), "text help has Markdown in it");
    const char *name, *type, *dflt;
    int width = 4; /* the name column is as wide as the longest name */
    for (size_t i = 0; mph_conf_property(i, &name, &type, &dflt, NULL, NULL);
         i++)
        width = (int)strlen(name) > width ? (int)strlen(name) : width;
    for (size_t i = 0; mph_conf_property(i, &name, &type, &dflt, NULL, NULL);
         i++) {
        /* "name  type  default" at the start of a line, in columns. */
        char row[256];
        snprintf(row, sizeof row, "\n%-*s  %-7s  %s\n", width, name, type,
                 *dflt ? dflt : "(empty)");
        cr_assert_not_null(strstr(text, row), "no row for %s", name);
    }
    cr_assert_not_null(strstr(text, "    Values: 0 .. 1024.\n"));
    cr_assert_not_null(
        strstr(text, "    Values: at_least_once, exactly_once.\n"));
    cr_assert_not_null(strstr(text, "MEPHISTO_KAFKA__LINGER__MS"));
    cr_assert_not_null(strstr(text, "kafka.<prop>"));
    /* Every line fits in 80 columns. */
    for (const char *l = text; *l;) {
        const char *nl = strchr(l, '\n');
        cr_assert_not_null(nl);
        cr_assert_leq(nl - l, 80, "long line: %.*s", (int)(nl - l), l);
        l = nl + 1;
    }
    free(text);
}

Test(config, markdown_lists_every_setting)
{
    size_t len;
    char *md = render(true, &len);
    const char *name;
    for (size_t i = 0; mph_conf_property(i, &name, NULL, NULL, NULL, NULL);
         i++) {
        char cell[128];
        snprintf(cell, sizeof cell, "\n| `%s` | ", name);
        cr_assert_not_null(strstr(md, cell), "no row for %s", name);
    }
    cr_assert_not_null(strstr(md, "| `at_least_once`, `exactly_once` |"));
    cr_assert_not_null(strstr(md, "`MEPHISTO_TEST_*`"));
    /* Table rows keep to their five columns: no stray unescaped '|'. */
    for (const char *l = strstr(md, "| `app_id` |"); l && *l;) {
        const char *nl = strchr(l, '\n');
        int bars = 0;
        for (const char *c = l; c < nl; c++)
            bars += *c == '|' && c[-1] != '\\';
        cr_assert_eq(bars, 6, "%.*s", (int)(nl - l), l);
        l = nl + 1;
    }
    free(md);
}

/* docs/configuration.md must be what mph_conf_print_help(out, true)
 * writes. MEPHISTO_REGEN_DOCS=1 rewrites it instead of failing. */
Test(config, docs_current)
{
    char path[4096];
    const char *src = getenv("MEPHISTO_SOURCE_DIR");
    if (src && *src) {
        snprintf(path, sizeof path, "%s/docs/configuration.md", src);
    } else {
        /* Outside ctest: this file's own path leads to the tree. */
        const char *self = __FILE__;
        const char *tail = strstr(self, "tests/unit/runtime/test_config.c");
        if (!tail || self[0] != '/')
            cr_skip_test("MEPHISTO_SOURCE_DIR is not set");
        snprintf(path, sizeof path, "%.*sdocs/configuration.md",
                 (int)(tail - self), self);
    }
    size_t len;
    char *md = render(true, &len);

    const char *regen = getenv("MEPHISTO_REGEN_DOCS");
    if (regen && strcmp(regen, "1") == 0) {
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f, "%s: %s", path, strerror(errno));
        cr_assert_eq(fwrite(md, 1, len, f), len);
        cr_assert_eq(fclose(f), 0);
        cr_log_info("rewrote %s", path);
        free(md);
        return;
    }

    const char *how = "regenerate with: MEPHISTO_REGEN_DOCS=1 "
                      "<build>/tests/runtime_test_config "
                      "--filter 'config/docs_current'";
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s: %s; %s", path, strerror(errno), how);
    char *disk = malloc(len + 2);
    cr_assert_not_null(disk);
    size_t got = fread(disk, 1, len + 1, f);
    fclose(f);
    size_t at = 0;
    while (at < got && at < len && disk[at] == md[at])
        at++;
    cr_assert(got == len && at == len,
              "%s is out of date with the property table (first difference "
              "at byte %zu); %s",
              path, at, how);
    free(disk);
    free(md);
}
