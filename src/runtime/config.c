/*
 * Configuration: the property table, validation, files and the environment.
 *
 * DESIGN
 * One static table (props[] below) is the single source of truth for every
 * mephisto setting: its type, default, allowed values and documentation.
 * mph_conf_set() validates against it, mph_conf_print_help() renders it as
 * --help-config text or as docs/configuration.md, and the unit test compares
 * that page byte for byte with the committed one, so the docs cannot drift.
 *
 * A conf stores only what was set explicitly, as one array of (name, value)
 * pairs sorted by name: lookups are binary searches, mph_conf_foreach() walks
 * it in name order, and a table setting that was never set reads as its
 * static default. Every value is validated and canonicalised before it is
 * stored (integers in decimal, booleans as true/false, enums in the table's
 * spelling), so readers never see a value the table would reject.
 *
 * kafka.<prop> values are checked by librdkafka itself on a throwaway
 * rd_kafka_conf_t created for each call: setting is not on any event path,
 * and a fresh conf keeps one check from depending on an earlier one.
 *
 * Loading a file or the environment validates every entry first and applies
 * them only when all are valid, so a bad line leaves the conf unchanged
 * (and returned strings stay valid).
 *
 * Never: log from here (callers report errors), or keep global state; a conf
 * is plain data that may be read from any thread once built.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "mephisto/conf.h"
#include "runtime/config.h"
#include "state/store_rocksdb.h"

/* ------------------------------------------------------------------------
 * The property table
 * ------------------------------------------------------------------------ */

typedef enum ptype {
    T_STRING,
    T_INT,
    T_BOOL,
    T_ENUM,
    T_CPULIST,
    T_BROKER
} ptype_t;

static const char *const type_names[] = {"string", "int",     "bool",
                                         "enum",   "cpulist", "broker"};

struct prop;
/* Extra validation for a string setting: writes "<name>: <reason>". */
typedef mph_err_t(check_fn)(const struct prop *p, const char *value,
                            char *errstr, size_t errstr_size);

struct prop {
    const char *name;
    ptype_t type;
    const char *dflt;
    const char *choices; /* enums: "a|b|c" */
    int64_t min, max;    /* ints: inclusive range */
    const char *doc;     /* Markdown: `code` spans are stripped for text */
    check_fn *check;     /* strings: extra validation, or NULL */
    const char *values;  /* strings: what is allowed, for the docs */
};

static check_fn check_app_id, check_nonempty, check_ipv4, check_instance_id;

#define APP_ID_MAX      200
#define INSTANCE_ID_MAX 249

static const struct prop props[] = {
    {.name = "app_id",
     .type = T_STRING,
     .dflt = "",
     .check = check_app_id,
     .values = "letters, digits, '.', '_' and '-'; at most 200 characters",
     .doc = "The application's id. It is the Kafka consumer group id and "
            "prefixes every topic the app creates "
            "(`<app_id>-<table>-changelog`, `<app_id>-<name>-repartition`, "
            "`<app_id>-dead-letter`), so processes with the same `app_id` "
            "share the work and the state. Required: an app refuses to "
            "start while it is empty."},
    {.name = "broker",
     .type = T_BROKER,
     .dflt = "kafka://127.0.0.1:9092",
     .doc = "The Kafka cluster. `kafka://host:port[,host:port...]` lists "
            "bootstrap brokers (IPv6 hosts in brackets, `[::1]:9092`). "
            "`mock://N` starts librdkafka's in-process mock cluster with N "
            "brokers (`mock://` means 1) for demos and quick tests; it keeps "
            "only about 5 MB per partition, cannot run `exactly_once`, and "
            "is never a benchmark target."},
    {.name = "workers",
     .type = T_INT,
     .dflt = "0",
     .min = 0,
     .max = 1024,
     .doc = "Worker threads, each owning a share of the partitions with its "
            "own io_uring, queue and producer. 0 means one per CPU in `cpus` "
            "(or per CPU the process may run on, when `cpus` is empty) times "
            "`threads_per_core`. Partition p lives on worker p mod "
            "`workers`: after a change, local table state of moved "
            "partitions is restored from the changelogs."},
    {.name = "cpus",
     .type = T_CPULIST,
     .dflt = "",
     .doc = "CPUs to pin worker threads to, as a Linux CPU list such as "
            "`0-3,6,8-9` (each CPU at most once). Workers are placed "
            "`threads_per_core` at a time on the listed CPUs in ascending order. "
            "Empty: workers are not pinned."},
    {.name = "threads_per_core",
     .type = T_INT,
     .dflt = "1",
     .min = 1,
     .max = 64,
     .doc = "Worker threads per CPU of `cpus` (or per available CPU) when "
            "`workers` is 0, and how many consecutive workers share each "
            "pinned CPU."},
    {.name = "processing_guarantee",
     .type = T_ENUM,
     .dflt = "at_least_once",
     .choices = "at_least_once|exactly_once",
     .doc = "`at_least_once` commits a partition's offset only up to the "
            "point where every event was processed and every record it "
            "caused was acknowledged, so a crash replays events but never "
            "loses them. `exactly_once` puts outputs, changelog records and "
            "input offsets of each commit interval in one transaction of a "
            "per-worker transactional producer (`transactional.id` "
            "`<app_id>-<process id>-w<worker>`; the process id is "
            "`group_instance_id` when set, else a random id kept in "
            "`<datadir>/<app_id>/process-id`), every consumer of the app "
            "reads `read_committed`, an aborted transaction rolls the "
            "worker's tables back and processes its records again, and "
            "`commit_interval_ms` defaults to 100. Readers of the outputs "
            "must read `read_committed` too. It needs a real broker with "
            "transactions (Kafka 2.5 or later): the start fails, naming this "
            "setting, when the broker cannot run them. See "
            "[tables](tables.md#exactly-once)."},
    {.name = "commit_interval_ms",
     .type = T_INT,
     .dflt = "1000",
     .min = 10,
     .max = 3600000,
     .doc = "How often, in milliseconds, each worker commits: its offsets "
            "(`at_least_once`) or its open transaction (`exactly_once`, "
            "where the default is 100 unless this is set). "
            "Shorter means less to replay after a crash and, with "
            "`exactly_once`, less end-to-end latency, for more broker "
            "requests."},
    {.name = "commit_every",
     .type = T_INT,
     .dflt = "10000",
     .min = 1,
     .max = 100000000,
     .doc = "A worker also commits once it has processed this many events "
            "since its last commit, whichever comes first of this and "
            "`commit_interval_ms`. Under `exactly_once` only when set: "
            "there every commit is a transaction, and the interval alone "
            "decides by default."},
    {.name = "stream_buffer_max",
     .type = T_INT,
     .dflt = "500000",
     .min = 16,
     .max = 10000000,
     .doc = "Records a worker may have queued (fetched but not yet "
            "processed): librdkafka stops fetching the worker's partitions "
            "while this many wait and fetches again as the worker drains "
            "them (it sets `kafka.queued.min.messages`, which overrides). "
            "This bounds memory per worker and pushes back on the broker "
            "when agents or outputs are slower than input; librdkafka's "
            "`kafka.queued.max.messages.kbytes` (64 MiB) bounds the same "
            "queue in bytes. Keep it at a second or more of the worker's "
            "throughput: librdkafka looks at a partition over the bound "
            "again only up to 1 s later, so a small value starves the "
            "worker (100000 ran the count benchmark at 160k records/s, "
            "500000 at 335k). A queue over 4 times this "
            "(a larger `kafka.queued.min.messages`) pauses the partitions "
            "until it falls below it."},
    {.name = "datadir",
     .type = T_STRING,
     .dflt = "mephisto-data",
     .check = check_nonempty,
     .values = "a non-empty path",
     .doc = "Directory for local state, created if missing: each `rocksdb` "
            "table keeps one RocksDB instance per worker in "
            "`<datadir>/<app_id>/<table>/w<worker>/`, and the app marks "
            "`<datadir>/<app_id>/` as its own with the file "
            "`.mephisto-state` (`mephisto reset` deletes only a directory "
            "that carries it). Relative paths are relative to the working "
            "directory."},
    {.name = "store",
     .type = T_ENUM,
     .dflt = "memory",
     .choices = "memory|rocksdb",
     .doc = "Where table shards live. `memory` keeps them in RAM and rebuilds "
            "them from their changelogs at every start. `rocksdb` keeps them "
            "on disk under `datadir` behind a bounded in-memory cache "
            "(`table_cache_max_keys`), so tables may be larger than RAM and a "
            "restart replays only the changelog tail."},
    {.name = "log_level",
     .type = T_ENUM,
     .dflt = "info",
     .choices = "error|warn|info|debug",
     .doc = "The least severe log lines written to stderr."},
    {.name = "log_format",
     .type = T_ENUM,
     .dflt = "text",
     .choices = "text|json",
     .doc = "`text` writes lines for people; `json` writes one JSON object "
            "per line (`ts`, `level`, `thread`, `msg`) for log collectors."},
    {.name = "shutdown_timeout_ms",
     .type = T_INT,
     .dflt = "30000",
     .min = 0,
     .max = 3600000,
     .doc = "On a graceful stop, how long in milliseconds to wait for events "
            "in flight, outstanding acknowledgements and the final commit "
            "before stopping anyway; 0 stops without waiting. Events not "
            "committed are processed again by their next owner."},
    {.name = "window_idle_close_ms",
     .type = T_INT,
     .dflt = "0",
     .min = 0,
     .max = 86400000,
     .doc = "When above 0: a partition that has processed no record for "
            "this many milliseconds of wall-clock time has the stream time "
            "of its windowed tables moved to the wall clock, so windows "
            "that are then due close (their `on_close` fires, on the "
            "owning worker, with a punctuator's handle) instead of waiting "
            "for the next record. Checked every quarter of it (10 ms to "
            "1 s). Records that arrive later with older timestamps are "
            "late for the windows closed meanwhile. 0 (default): windows "
            "close only when a record moves stream time."},
    {.name = "on_agent_error",
     .type = T_ENUM,
     .dflt = "log",
     .choices = "log|stop",
     .doc = "When an agent callback fails on an event: `log` logs it "
            "(rate-limited), counts it in stats and treats the event as "
            "processed; `stop` stops the app without committing past the "
            "event, so it is processed again after a restart."},
    {.name = "on_decode_error",
     .type = T_ENUM,
     .dflt = "dead_letter",
     .choices = "dead_letter|skip|fail",
     .doc = "For topics that do not set their own: what happens to a record "
            "whose key or value does not decode with the topic's codec. "
            "`dead_letter` sends the raw record to `<app_id>-dead-letter` "
            "with headers naming the error, source topic, partition and "
            "offset; `skip` counts and logs it; `fail` stops the app without "
            "committing past it."},
    {.name = "on_send_error",
     .type = T_ENUM,
     .dflt = "dead_letter",
     .choices = "dead_letter|skip|fail",
     .doc = "For topics that do not set their own: what happens to a record "
            "an agent sends there that can never be written (larger than the "
            "topic's `max.message.bytes`, or refused by the broker as "
            "invalid). `dead_letter` sends the source record to "
            "`<app_id>-dead-letter` with headers naming the error, the "
            "output topic and the source topic, partition and offset "
            "(truncated, with `mph.truncated`, when too large itself); `skip` "
            "counts and logs it; `fail` stops the app without committing past "
            "the source record. Transient errors are never handled here: "
            "they are retried in order until they succeed."},
    {.name = "assignor",
     .type = T_ENUM,
     .dflt = "range",
     .choices = "range|cooperative-sticky|roundrobin",
     .doc = "The consumer group's partition assignment strategy "
            "(librdkafka's `partition.assignment.strategy`). `range` gives "
            "partition p of every topic with equal partition counts to the "
            "same process, which tables need; `cooperative-sticky` moves "
            "fewer partitions on a rebalance and suits stateless apps; "
            "`roundrobin` spreads partitions of all topics evenly."},
    {.name = "group_instance_id",
     .type = T_STRING,
     .dflt = "",
     .check = check_instance_id,
     .values = "letters, digits, '.', '_' and '-'; at most 249 characters",
     .doc = "Static group membership id (librdkafka's `group.instance.id`), "
            "unique per process: a process restarting within "
            "`session_timeout_ms` gets its partitions back without a "
            "rebalance. Empty: dynamic membership."},
    {.name = "session_timeout_ms",
     .type = T_INT,
     .dflt = "10000",
     .min = 1000,
     .max = 3600000,
     .doc = "Consumer group session timeout in milliseconds (librdkafka's "
            "`session.timeout.ms`): a process silent for this long leaves "
            "the group and its partitions are reassigned. The broker bounds "
            "it with `group.min.session.timeout.ms` and "
            "`group.max.session.timeout.ms`."},
    {.name = "topic_partitions",
     .type = T_INT,
     .dflt = "8",
     .min = 1,
     .max = 100000,
     .doc = "Partitions of the topics the app creates that follow no source "
            "(repartition and dead-letter topics). A changelog topic always "
            "gets the partition count of its table's source topic."},
    {.name = "topic_replication_factor",
     .type = T_INT,
     .dflt = "1",
     .min = 1,
     .max = 32767,
     .doc = "Replication factor of every topic the app creates (changelog, "
            "repartition and dead-letter topics). At most the number of "
            "brokers; 3 is usual in production."},
    {.name = "table_cache_max_keys",
     .type = T_INT,
     .dflt = "100000",
     .min = 0,
     .max = 1000000000,
     .doc = "For `rocksdb` tables: the most keys each table shard (one table, "
            "one partition) keeps in memory in front of RocksDB; keys "
            "written since the last commit stay until it. 0 means "
            "unbounded."},
    {.name = "rocksdb_block_cache_mb",
     .type = T_INT,
     .dflt = "64",
     .min = 0,
     .max = 1048576,
     .doc = "Size in MiB of the RocksDB block cache shared by all tables of "
            "the process; 0 disables it."},
    {.name = "recovery_batch_records",
     .type = T_INT,
     .dflt = "100000",
     .min = 1000,
     .max = 10000000,
     .doc = "Changelog records per RocksDB WriteBatch (written without WAL) "
            "while a table shard is recovered. Larger batches recover faster "
            "and hold more memory."},
    {.name = "num_standby_replicas",
     .type = T_INT,
     .dflt = "0",
     .min = 0,
     .max = 16,
     .doc = "Warm copies of each table shard kept by other members of the "
            "group (Kafka Streams' `num.standby.replicas`). After every "
            "rebalance each member reads the group's assignments and, in a "
            "fixed member order, places a partition's standbys on the next "
            "members that do not own it; a standby tails the changelog with a "
            "consumer of its own, so a take-over replays only the tail after "
            "the standby's checkpoint. Costs one changelog read and the "
            "shard's memory (or disk) per standby; nothing on the event path. "
            "See docs/tables.md."},
    {.name = "rpc_enabled",
     .type = T_BOOL,
     .dflt = "false",
     .doc = "Agent RPC (mph_agent_ask): create this process's reply topic "
            "`<app_id>-reply-<instance>` at start and read it on one thread. "
            "instance is `group_instance_id` when set (the topic is kept and "
            "reused by the next start), else a random id per start (the topic "
            "is deleted on a graceful stop). Not needed to answer asks or to "
            "cast."},
    {.name = "web_enabled",
     .type = T_BOOL,
     .dflt = "true",
     .doc = "Serve HTTP on `web_bind`:`web_port`: `/stats`, `/metrics`, "
            "`/health`, `/ready`, `/router` and `/tables/<name>/<key>`."},
    {.name = "web_port",
     .type = T_INT,
     .dflt = "6066",
     .min = 0,
     .max = 65535,
     .doc = "TCP port of the web server; 0 picks a free port, which is "
            "logged at start."},
    {.name = "web_bind",
     .type = T_STRING,
     .dflt = "127.0.0.1",
     .check = check_ipv4,
     .values = "an IPv4 address",
     .doc = "The IPv4 address the web server listens on; `0.0.0.0` means "
            "every interface."},
    {.name = "web_max_connections",
     .type = T_INT,
     .dflt = "2048",
     .min = 1,
     .max = 65536,
     .doc = "Connections the web server holds at once (each costs a file "
            "descriptor). Beyond it a new connection closes the oldest one "
            "still waiting for its request."},
    {.name = "web_max_per_address",
     .type = T_INT,
     .dflt = "256",
     .min = 1,
     .max = 65536,
     .doc = "Connections one client address may hold on the web server. "
            "Beyond it a new connection from that address closes its oldest "
            "one still waiting for its request, so a client holding slow "
            "connections cannot keep a prompt request (a health probe) out. "
            "Keep it below `web_max_connections` so that one address "
            "cannot take every slot."},
    {.name = "web_header_timeout_ms",
     .type = T_INT,
     .dflt = "10000",
     .min = 100,
     .max = 3600000,
     .doc = "Milliseconds a web client has to send a complete request "
            "(request line, headers and any body), counted from the "
            "connection's start or the end of its previous request; then "
            "the connection is closed however slowly it is still sending. "
            "The 10 s idle timeout alone restarts on every byte."},
    {.name = "producer_linger_ms",
     .type = T_INT,
     .dflt = "5",
     .min = 0,
     .max = 10000,
     .doc = "How long in milliseconds a worker's producer waits to fill a "
            "batch before sending it (librdkafka's `linger.ms`). More means "
            "bigger batches and fewer requests; less means lower latency. "
            "Unset, it follows `profile`: 5 under `throughput`, 0 under "
            "`latency`."},
    /* Latency profile and the worker's wait: a contiguous block (profile,
     * busy_poll_us, io_wait). */
    {.name = "profile",
     .type = T_ENUM,
     .dflt = "throughput",
     .choices = "throughput|latency",
     .doc = "Client settings tuned for one goal. `throughput` batches: "
            "producers linger 5 ms, the consumer's fetch waits up to 100 ms "
            "on the broker. `latency` sends and fetches at once: producer "
            "`linger.ms` 0, Nagle's algorithm off on every connection "
            "(`socket.nagle.disable`), consumer `fetch.wait.max.ms` 10. Under "
            "both a worker sleeps in the kernel until its queue's io-event "
            "fd, its mailbox or its timer wakes it, so an idle worker costs "
            "no CPU, and each wake-up serves the producer (delivery reports) "
            "and the queue together; reports alone wake it only while "
            "something waits for them (a table flush, a repair, "
            "exactly_once), otherwise they are served within 5 ms. Anything set "
            "explicitly wins over the profile: `producer_linger_ms`, "
            "`kafka.linger.ms`, `kafka.socket.nagle.disable`, "
            "`kafka.fetch.wait.max.ms`."},
    {.name = "busy_poll_us",
     .type = T_INT,
     .dflt = "0",
     .min = 0,
     .max = 60000000,
     .doc = "Microseconds a worker keeps polling its queue (without sleeping) "
            "after the last record it handled (and after it started), before "
            "it waits in the kernel again. It saves the wake-up (a few microseconds to tens of "
            "microseconds, more when the CPU idled into a deep sleep state) "
            "of a record that comes soon after the previous one. The cost is "
            "CPU: a worker that gets a record at least every `busy_poll_us` "
            "uses a whole core however little it processes. 0 (the "
            "default) never spins: a worker sleeps as soon as its queue is "
            "empty. Use it only with `profile=latency`, pinned workers "
            "(`cpus`) and cores to spare. (Under valgrind, whose threads "
            "stop while one waits in `io_uring_enter`, use `io_wait=poll` "
            "instead: docs/benchmarks.md.)"},
    {.name = "io_wait",
     .type = T_ENUM,
     .dflt = "auto",
     .choices = "auto|uring|poll",
     .doc = "How an idle worker waits for its queue, mailbox and timer. "
            "`uring`: one io_uring per worker (a worker that cannot create "
            "one fails to start). `poll`: ppoll(2) on the same eventfds, "
            "a system call per wait like the ring's, for sandboxes that "
            "refuse io_uring (container seccomp profiles, "
            "`kernel.io_uring_disabled`) and for valgrind, which stops every "
            "thread while one waits in `io_uring_enter`. `auto` (the "
            "default): io_uring, or ppoll with a warning in the log when "
            "the kernel refuses io_uring. The records, commits and wake-ups "
            "are the same under each."},
    {.name = "producer_buffer_max_bytes",
     .type = T_INT,
     .dflt = "67108864",
     .min = 4194304,
     .max = 2147483647,
     .doc = "Per worker: how many bytes of record values its producer may "
            "hold before the broker acknowledged them (librdkafka's "
            "`queue.buffering.max.kbytes`; the message bound is one record "
            "per 512 bytes, at least 10,000). When it is full the worker stops "
            "processing and "
            "serves acknowledgements until there is room again "
            "(back-pressure), so a slow or absent broker costs at most this "
            "much per worker (plus about 200 bytes of bookkeeping per "
            "record). Raised to twice the largest record a topic accepts when "
            "lower. /stats reports it as `producer_buffer_max_bytes`."},
    {.name = "max_poll_batch",
     .type = T_INT,
     .dflt = "1024",
     .min = 1,
     .max = 1000000,
     .doc = "The most events a worker drains from its queue at once before "
            "it serves timers and commits and waits again. Bigger batches "
            "cost less per event; smaller ones keep timers and commits "
            "punctual."},
};

#define NPROPS (sizeof props / sizeof props[0])

/* Environment variables mephisto's tools and tests read for themselves;
 * mph_conf_load_env() skips them. A trailing '*' matches any suffix. */
static const struct {
    const char *name;
    const char *used_by;
} env_ignored[] = {
    {"MEPHISTO_TEST_*", "test suites (e.g. `MEPHISTO_TEST_BROKERS`)"},
    {"MEPHISTO_KAFKA_PORT", "`tools/kafka`"},
    {"MEPHISTO_KAFKA_DIR", "`tools/kafka`"},
    {"MEPHISTO_KAFKA_HEAP", "`tools/kafka`"},
    {"MEPHISTO_KAFKA_TIMEOUT", "`tools/kafka`"},
    {"MEPHISTO_SOURCE_DIR", "ctest, for tests"},
    {"MEPHISTO_BUILD_DIR", "ctest, for tests"},
    {"MEPHISTO_REGEN_DOCS", "`runtime/test_config`, to rewrite this page"},
    {"MEPHISTO_EXAMPLES_DIR", "`mephisto demo`, to find the word-count plugin"},
};

#define ENV_PREFIX "MEPHISTO_"

/* ------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------ */

static void seterr(char *errstr, size_t errstr_size, const char *fmt, ...)
    MPH_PRINTF(3, 4);

static void seterr(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    if (!errstr || errstr_size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
}

/* Length of the valid UTF-8 sequence of a printable character at s (2 to
 * 4), or 0 when s starts no such sequence: a stray continuation byte, an
 * overlong or truncated sequence, a surrogate, a C1 control (U+0080 to
 * U+009F, which some terminals obey like ESC) or an invisible format
 * character. */
static size_t utf8_printable_len(const unsigned char *s)
{
    size_t n;
    uint32_t cp;
    if (s[0] < 0xc2)
        return 0; /* ASCII is handled by the caller; 0x80-0xc1 are invalid */
    if (s[0] < 0xe0)
        n = 2, cp = s[0] & 0x1fu;
    else if (s[0] < 0xf0)
        n = 3, cp = s[0] & 0x0fu;
    else if (s[0] < 0xf5)
        n = 4, cp = s[0] & 0x07u;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f))
        return 0;
    /* Invisible format characters that reorder or hide text: zero-width
     * and direction marks, line/paragraph separators, bidi embeddings,
     * overrides and isolates, the byte order mark. */
    if ((cp >= 0x200b && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202e) ||
        (cp >= 0x2066 && cp <= 0x2069) || cp == 0xfeff)
        return 0;
    return n;
}

char *mph_conf_escape(char *dst, size_t dst_size, const char *src)
{
    if (!dst || dst_size == 0)
        return dst;
    size_t w = 0;
    const unsigned char *s = (const unsigned char *)(src ? src : "(null)");
    while (*s) {
        char esc[8];
        const char *out = (const char *)s;
        size_t n = 1;
        if (*s >= 0x20 && *s < 0x7f) {
            s++;
        } else if (*s >= 0x80 && (n = utf8_printable_len(s)) > 0) {
            s += n;
        } else {
            snprintf(esc, sizeof esc, "\\x%02x", *s);
            out = esc;
            n = 4;
            s++;
        }
        if (w + n >= dst_size)
            break;
        memcpy(dst + w, out, n);
        w += n;
    }
    dst[w] = '\0';
    return dst;
}

/* Escapes errstr in place (see mph_conf_escape()): every message of this
 * file passes through it before it is returned, so a value echoed in it
 * reaches no terminal raw. */
static void errstr_escape(char *errstr, size_t errstr_size)
{
    if (!errstr || errstr_size == 0)
        return;
    char *copy = strdup(errstr);
    if (copy) {
        mph_conf_escape(errstr, errstr_size, copy);
        free(copy);
        return;
    }
    for (char *c = errstr; *c; c++) /* out of memory: blank them */
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
}

static const struct prop *prop_find(const char *name)
{
    for (size_t i = 0; i < NPROPS; i++) {
        if (strcmp(props[i].name, name) == 0)
            return &props[i];
    }
    return NULL;
}

/* Strict decimal integer: optional '-', digits, nothing else. */
static bool parse_i64(const char *s, int64_t *out)
{
    const char *p = s;
    if (*p == '-')
        p++;
    if (!isdigit((unsigned char)*p))
        return false;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

static bool parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

/* Finds value among "a|b|c" ignoring case; copies the table's spelling into
 * out (NUL-terminated). */
static bool enum_match(const char *choices, const char *value, char *out,
                       size_t out_size)
{
    size_t vlen = strlen(value);
    const char *c = choices;
    while (*c) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (len == vlen && strncasecmp(c, value, len) == 0 && len < out_size) {
            memcpy(out, c, len);
            out[len] = '\0';
            return true;
        }
        c += len + (bar ? 1 : 0);
    }
    return false;
}

/* Optimal string alignment distance (insert, delete, substitute, swap two
 * neighbours), ignoring case. SIZE_MAX for names too long to matter. */
static size_t edit_distance(const char *a, const char *b)
{
    enum { CAP = 64 };
    size_t la = strlen(a), lb = strlen(b);
    if (la >= CAP || lb >= CAP)
        return SIZE_MAX;
    unsigned char d[CAP][CAP];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (unsigned char)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (unsigned char)j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]);
            int cb = tolower((unsigned char)b[j - 1]);
            unsigned best = d[i - 1][j - 1] + (ca != cb);
            if (d[i - 1][j] + 1u < best)
                best = d[i - 1][j] + 1u;
            if (d[i][j - 1] + 1u < best)
                best = d[i][j - 1] + 1u;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb &&
                d[i - 2][j - 2] + 1u < best)
                best = d[i - 2][j - 2] + 1u;
            d[i][j] = (unsigned char)best;
        }
    }
    return d[la][lb];
}

/* The table setting closest to name within 2 edits, or NULL. */
static const char *suggest(const char *name)
{
    const char *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; i < NPROPS; i++) {
        size_t d = edit_distance(name, props[i].name);
        if (d < best_d) {
            best_d = d;
            best = props[i].name;
        }
    }
    return best;
}

/* ------------------------------------------------------------------------
 * Value checks
 * ------------------------------------------------------------------------ */

static bool is_id_char(int c)
{
    return isalnum(c) || c == '.' || c == '_' || c == '-';
}

/* Kafka's rule for topic names and group instance ids. */
static mph_err_t check_id(const struct prop *p, const char *value, size_t max,
                          bool empty_ok, char *errstr, size_t errstr_size)
{
    size_t len = strlen(value);
    if (len == 0 && !empty_ok) {
        seterr(errstr, errstr_size, "%s: must not be empty", p->name);
        return MPH_ERR_INVALID;
    }
    if (len > max) {
        seterr(errstr, errstr_size,
               "%s: must be at most %zu characters, got %zu", p->name, max,
               len);
        return MPH_ERR_INVALID;
    }
    for (const char *c = value; *c; c++) {
        if (!is_id_char((unsigned char)*c)) {
            seterr(errstr, errstr_size,
                   "%s: must contain only letters, digits, '.', '_' and '-', "
                   "got '%s'",
                   p->name, value);
            return MPH_ERR_INVALID;
        }
    }
    return MPH_OK;
}

static mph_err_t check_app_id(const struct prop *p, const char *value,
                              char *errstr, size_t errstr_size)
{
    /* Empty means "not set": the app, not the conf, insists on it. The id
     * names a directory under datadir, so "." and ".." are refused. */
    if (!strcmp(value, ".") || !strcmp(value, "..")) {
        seterr(errstr, errstr_size, "%s: must not be '.' or '..' (it names a directory)",
               p->name);
        return MPH_ERR_INVALID;
    }
    return check_id(p, value, APP_ID_MAX, true, errstr, errstr_size);
}

static mph_err_t check_instance_id(const struct prop *p, const char *value,
                                   char *errstr, size_t errstr_size)
{
    return check_id(p, value, INSTANCE_ID_MAX, true, errstr, errstr_size);
}

static mph_err_t check_nonempty(const struct prop *p, const char *value,
                                char *errstr, size_t errstr_size)
{
    if (*value == '\0') {
        seterr(errstr, errstr_size, "%s: must not be empty", p->name);
        return MPH_ERR_INVALID;
    }
    return MPH_OK;
}

static mph_err_t check_ipv4(const struct prop *p, const char *value,
                            char *errstr, size_t errstr_size)
{
    struct in_addr addr;
    if (inet_pton(AF_INET, value, &addr) != 1) {
        seterr(errstr, errstr_size,
               "%s: must be an IPv4 address such as 127.0.0.1, got '%s'",
               p->name, value);
        return MPH_ERR_INVALID;
    }
    return MPH_OK;
}

/* Reads up to 9 digits at *pp; more digits saturate to a huge value. */
static bool read_uint(const char **pp, long *out)
{
    const char *p = *pp;
    long v = 0;
    if (!isdigit((unsigned char)*p))
        return false;
    for (; isdigit((unsigned char)*p); p++)
        v = v > 100000000 ? v : v * 10 + (*p - '0');
    *pp = p;
    *out = v;
    return true;
}

mph_err_t mph__conf_cpulist_parse(const char *list, uint16_t *cpus, size_t cap,
                                  size_t *count, char *errstr,
                                  size_t errstr_size)
{
    uint64_t bits[(MPH__CONF_CPU_MAX + 1) / 64] = {0};
    if (!list || !count) {
        seterr(errstr, errstr_size, "no CPU list");
        return MPH_ERR_INVALID;
    }
    const char *p = list;
    while (*p) {
        long lo, hi;
        if (!read_uint(&p, &lo))
            goto syntax;
        hi = lo;
        if (*p == '-') {
            p++;
            if (!read_uint(&p, &hi))
                goto syntax;
        }
        if (lo > MPH__CONF_CPU_MAX || hi > MPH__CONF_CPU_MAX) {
            seterr(errstr, errstr_size,
                   "CPUs must be between 0 and %d, got '%s'", MPH__CONF_CPU_MAX,
                   list);
            return MPH_ERR_INVALID;
        }
        if (hi < lo) {
            seterr(errstr, errstr_size, "range %ld-%ld is reversed, got '%s'",
                   lo, hi, list);
            return MPH_ERR_INVALID;
        }
        for (long c = lo; c <= hi; c++) {
            uint64_t bit = UINT64_C(1) << (c % 64);
            if (bits[c / 64] & bit) {
                seterr(errstr, errstr_size, "CPU %ld is listed twice, got '%s'",
                       c, list);
                return MPH_ERR_INVALID;
            }
            bits[c / 64] |= bit;
        }
        if (*p == ',' && p[1] != '\0')
            p++;
        else if (*p != '\0')
            goto syntax;
    }
    size_t n = 0;
    for (long c = 0; c <= MPH__CONF_CPU_MAX; c++) {
        if (bits[c / 64] & (UINT64_C(1) << (c % 64))) {
            if (cpus && n < cap)
                cpus[n] = (uint16_t)c;
            n++;
        }
    }
    *count = n;
    return MPH_OK;

syntax:
    seterr(errstr, errstr_size,
           "must be a CPU list such as 0-3,6,8-9, got '%s'", list);
    return MPH_ERR_INVALID;
}

static bool is_host_char(int c)
{
    return isalnum(c) || c == '.' || c == '-' || c == '_';
}

static bool is_ipv6_char(int c)
{
    return isxdigit(c) || c == ':' || c == '.';
}

/* Checks one "host:port" or "[v6]:port" of length len. */
static const char *check_hostport(const char *s, size_t len)
{
    const char *colon;
    if (len == 0)
        return "empty host:port entry";
    if (s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close || close == s + 1)
            return "bad [IPv6] host";
        for (const char *c = s + 1; c < close; c++) {
            if (!is_ipv6_char((unsigned char)*c))
                return "bad [IPv6] host";
        }
        if (close + 1 == s + len || close[1] != ':')
            return "missing :port after the host";
        colon = close + 1;
    } else {
        colon = NULL;
        for (const char *c = s; c < s + len; c++) {
            if (*c == ':')
                colon = c;
        }
        if (!colon)
            return "missing :port after the host";
        if (colon == s)
            return "empty host";
        for (const char *c = s; c < colon; c++) {
            if (!is_host_char((unsigned char)*c))
                return "host names may contain only letters, digits, '.', "
                       "'-' and '_'";
        }
    }
    const char *p = colon + 1;
    long port;
    if (!read_uint(&p, &port) || p != s + len || port < 1 || port > 65535)
        return "port must be an integer between 1 and 65535";
    return NULL;
}

mph_err_t mph__conf_broker_parse(const char *url, mph__conf_broker_t *out,
                                 char *errstr, size_t errstr_size)
{
    const char *reason;
    if (!url || !out) {
        seterr(errstr, errstr_size, "no broker url");
        return MPH_ERR_INVALID;
    }
    if (strncmp(url, "mock://", 7) == 0) {
        const char *p = url + 7;
        long n = 1;
        if (*p != '\0' &&
            (!read_uint(&p, &n) || *p != '\0' || n < 1 || n > 16)) {
            reason = "mock://N needs N between 1 and 16";
            goto bad;
        }
        out->mock_brokers = (int)n;
        out->bootstrap = NULL;
        return MPH_OK;
    }
    if (strncmp(url, "kafka://", 8) != 0) {
        reason = "must be kafka://host:port[,host:port...], mock:// or "
                 "mock://N";
        goto bad;
    }
    const char *s = url + 8;
    if (*s == '\0') {
        reason = "kafka:// needs at least one host:port";
        goto bad;
    }
    for (;;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        reason = check_hostport(s, len);
        if (reason)
            goto bad;
        if (!comma)
            break;
        s = comma + 1;
    }
    out->mock_brokers = 0;
    out->bootstrap = url + 8;
    return MPH_OK;

bad:
    seterr(errstr, errstr_size, "%s, got '%s'", reason, url);
    return MPH_ERR_INVALID;
}

/* Validates value for table property p; on success *canon is a malloc'd
 * canonical copy. */
static mph_err_t validate_prop(const struct prop *p, const char *value,
                               char **canon, char *errstr, size_t errstr_size)
{
    char buf[512];
    mph_err_t err;
    switch (p->type) {
    case T_INT: {
        int64_t v;
        if (!parse_i64(value, &v) || v < p->min || v > p->max) {
            seterr(errstr, errstr_size,
                   "%s: must be an integer between %lld and %lld, got '%s'",
                   p->name, (long long)p->min, (long long)p->max, value);
            return MPH_ERR_INVALID;
        }
        snprintf(buf, sizeof buf, "%lld", (long long)v);
        break;
    }
    case T_BOOL: {
        bool v;
        if (!parse_bool(value, &v)) {
            seterr(errstr, errstr_size,
                   "%s: must be true or false (or 1/0, yes/no, on/off), got "
                   "'%s'",
                   p->name, value);
            return MPH_ERR_INVALID;
        }
        snprintf(buf, sizeof buf, "%s", v ? "true" : "false");
        break;
    }
    case T_ENUM:
        if (!enum_match(p->choices, value, buf, sizeof buf)) {
            seterr(errstr, errstr_size, "%s: must be one of %s, got '%s'",
                   p->name, p->choices, value);
            return MPH_ERR_INVALID;
        }
        break;
    case T_CPULIST: {
        size_t n;
        err = mph__conf_cpulist_parse(value, NULL, 0, &n, buf, sizeof buf);
        if (err != MPH_OK) {
            seterr(errstr, errstr_size, "%s: %s", p->name, buf);
            return err;
        }
        *canon = strdup(value);
        return *canon ? MPH_OK : MPH_ERR_NOMEM;
    }
    case T_BROKER: {
        mph__conf_broker_t b;
        err = mph__conf_broker_parse(value, &b, buf, sizeof buf);
        if (err != MPH_OK) {
            seterr(errstr, errstr_size, "%s: %s", p->name, buf);
            return err;
        }
        *canon = strdup(value);
        return *canon ? MPH_OK : MPH_ERR_NOMEM;
    }
    case T_STRING:
        if (p->check) {
            err = p->check(p, value, errstr, errstr_size);
            if (err != MPH_OK)
                return err;
        }
        *canon = strdup(value);
        return *canon ? MPH_OK : MPH_ERR_NOMEM;
    }
    *canon = strdup(buf);
    return *canon ? MPH_OK : MPH_ERR_NOMEM;
}

static mph_err_t validate_kafka(const char *name, const char *value,
                                char *errstr, size_t errstr_size)
{
    char rkerr[512] = "";
    rd_kafka_conf_t *rk = rd_kafka_conf_new();
    if (!rk) {
        seterr(errstr, errstr_size, "%s: out of memory", name);
        return MPH_ERR_NOMEM;
    }
    rd_kafka_conf_res_t res = rd_kafka_conf_set(rk, name + strlen("kafka."),
                                                value, rkerr, sizeof rkerr);
    rd_kafka_conf_destroy(rk);
    if (res == RD_KAFKA_CONF_OK)
        return MPH_OK;
    /* librdkafka sometimes ends its message with a newline. */
    size_t len = strlen(rkerr);
    while (len > 0 && isspace((unsigned char)rkerr[len - 1]))
        rkerr[--len] = '\0';
    seterr(errstr, errstr_size, "%s: %s", name,
           len ? rkerr : "rejected by librdkafka");
    return res == RD_KAFKA_CONF_UNKNOWN ? MPH_ERR_NOENT : MPH_ERR_INVALID;
}

/* Dotted names: non-empty parts of [A-Za-z0-9_-] separated by single dots,
 * at least two parts. */
static bool dotted_name_ok(const char *name)
{
    bool part_empty = true;
    for (const char *c = name; *c; c++) {
        if (*c == '.') {
            if (part_empty)
                return false;
            part_empty = true;
        } else if (isalnum((unsigned char)*c) || *c == '_' || *c == '-') {
            part_empty = false;
        } else {
            return false;
        }
    }
    return !part_empty;
}

/* Validates name=value; on success *canon is the malloc'd value to store. */
static mph_err_t validate(const char *name, const char *value, char **canon,
                          char *errstr, size_t errstr_size)
{
    *canon = NULL;
    if (*name == '\0') {
        seterr(errstr, errstr_size, "(empty name): a setting needs a name");
        return MPH_ERR_INVALID;
    }
    if (strchr(name, '.') == NULL) {
        const struct prop *p = prop_find(name);
        if (!p) {
            const char *s = suggest(name);
            if (s)
                seterr(errstr, errstr_size,
                       "%s: unknown setting (did you mean %s?)", name, s);
            else
                seterr(errstr, errstr_size, "%s: unknown setting", name);
            return MPH_ERR_NOENT;
        }
        return validate_prop(p, value, canon, errstr, errstr_size);
    }
    if (!dotted_name_ok(name)) {
        seterr(errstr, errstr_size,
               "%s: bad name: dotted names are <prefix>.<name>, parts of "
               "letters, digits, '_' and '-' joined by single dots",
               name);
        return MPH_ERR_INVALID;
    }
    if (strncmp(name, "kafka.", 6) == 0) {
        mph_err_t err = validate_kafka(name, value, errstr, errstr_size);
        if (err != MPH_OK)
            return err;
    }
    if (strncmp(name, "rocksdb.", 8) == 0) {
        /* Checked against the store's option table on a throwaway conf,
         * whatever `store` is: a name the store would refuse at open is
         * refused now, not ignored while the store is memory. */
        mph__rstore_conf_t *rc = mph__rstore_conf_new();
        if (!rc) {
            seterr(errstr, errstr_size, "%s: out of memory", name);
            return MPH_ERR_NOMEM;
        }
        mph_err_t err =
            mph__rstore_conf_set(rc, name, value, errstr, errstr_size);
        mph__rstore_conf_destroy(rc);
        if (err != MPH_OK)
            return err;
    }
    /* <app>.<name> belongs to the app. Dotted values are stored verbatim. */
    *canon = strdup(value);
    return *canon ? MPH_OK : MPH_ERR_NOMEM;
}

/* ------------------------------------------------------------------------
 * The conf: explicitly set names, sorted
 * ------------------------------------------------------------------------ */

struct entry {
    char *name;
    char *value;
};

struct mph_conf {
    struct entry *v;
    size_t n, cap;
};

/* Index of name, or -(insertion point) - 1. */
static ptrdiff_t entry_find(const mph_conf_t *conf, const char *name)
{
    size_t lo = 0, hi = conf->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(conf->v[mid].name, name);
        if (c == 0)
            return (ptrdiff_t)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -(ptrdiff_t)lo - 1;
}

static mph_err_t reserve(mph_conf_t *conf, size_t more)
{
    if (conf->n + more <= conf->cap)
        return MPH_OK;
    size_t cap = conf->cap ? conf->cap : 16;
    while (cap < conf->n + more)
        cap *= 2;
    struct entry *v = realloc(conf->v, cap * sizeof *v);
    if (!v)
        return MPH_ERR_NOMEM;
    conf->v = v;
    conf->cap = cap;
    return MPH_OK;
}

/* Moves e (both strings owned) into conf. Capacity must be reserved; never
 * fails. A replaced value is freed. */
static void entry_put(mph_conf_t *conf, struct entry e)
{
    ptrdiff_t i = entry_find(conf, e.name);
    if (i >= 0) {
        free(conf->v[i].value);
        conf->v[i].value = e.value;
        free(e.name);
        return;
    }
    size_t at = (size_t)(-i - 1);
    memmove(&conf->v[at + 1], &conf->v[at], (conf->n - at) * sizeof e);
    conf->v[at] = e;
    conf->n++;
}

/* A batch of validated entries, applied all together or not at all. */
struct pending {
    struct entry *v;
    size_t n, cap;
};

static void pending_free(struct pending *pd)
{
    for (size_t i = 0; i < pd->n; i++) {
        free(pd->v[i].name);
        free(pd->v[i].value);
    }
    free(pd->v);
    pd->v = NULL;
    pd->n = pd->cap = 0;
}

/* Validates name=value and queues it. */
static mph_err_t pending_add(struct pending *pd, const char *name,
                             const char *value, char *errstr,
                             size_t errstr_size)
{
    char *canon;
    mph_err_t err = validate(name, value, &canon, errstr, errstr_size);
    if (err != MPH_OK)
        return err;
    if (pd->n == pd->cap) {
        size_t cap = pd->cap ? pd->cap * 2 : 16;
        struct entry *v = realloc(pd->v, cap * sizeof *v);
        if (!v)
            goto nomem_canon;
        pd->v = v;
        pd->cap = cap;
    }
    char *dup = strdup(name);
    if (!dup)
        goto nomem_canon;
    pd->v[pd->n++] = (struct entry){dup, canon};
    return MPH_OK;

nomem_canon:
    free(canon);
    seterr(errstr, errstr_size, "%s: out of memory", name);
    return MPH_ERR_NOMEM;
}

/* Moves every queued entry into conf, in queue order (later wins). */
static mph_err_t pending_apply(mph_conf_t *conf, struct pending *pd,
                               char *errstr, size_t errstr_size)
{
    if (reserve(conf, pd->n) != MPH_OK) {
        seterr(errstr, errstr_size, "out of memory");
        pending_free(pd);
        return MPH_ERR_NOMEM;
    }
    for (size_t i = 0; i < pd->n; i++)
        entry_put(conf, pd->v[i]);
    free(pd->v);
    pd->v = NULL;
    pd->n = pd->cap = 0;
    return MPH_OK;
}

mph_conf_t *mph_conf_new(void)
{
    return calloc(1, sizeof(mph_conf_t));
}

mph_conf_t *mph_conf_dup(const mph_conf_t *conf)
{
    if (!conf)
        return NULL;
    mph_conf_t *copy = mph_conf_new();
    if (!copy)
        return NULL;
    if (reserve(copy, conf->n) != MPH_OK)
        goto fail_copy;
    for (size_t i = 0; i < conf->n; i++) {
        char *name = strdup(conf->v[i].name);
        char *value = strdup(conf->v[i].value);
        if (!name || !value) {
            free(name);
            free(value);
            goto fail_copy;
        }
        copy->v[copy->n++] = (struct entry){name, value};
    }
    return copy;

fail_copy:
    mph_conf_destroy(copy);
    return NULL;
}

void mph_conf_destroy(mph_conf_t *conf)
{
    if (!conf)
        return;
    for (size_t i = 0; i < conf->n; i++) {
        free(conf->v[i].name);
        free(conf->v[i].value);
    }
    free(conf->v);
    free(conf);
}

static mph_err_t conf_set_raw(mph_conf_t *conf, const char *name,
                              const char *value, char *errstr,
                              size_t errstr_size)
{
    if (!conf || !name || !value) {
        seterr(errstr, errstr_size, "%s: %s is NULL",
               name ? name : "mph_conf_set",
               !conf   ? "conf"
               : !name ? "name"
                       : "value");
        return MPH_ERR_INVALID;
    }
    struct pending pd = {0};
    mph_err_t err = pending_add(&pd, name, value, errstr, errstr_size);
    if (err != MPH_OK)
        return err;
    return pending_apply(conf, &pd, errstr, errstr_size);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' ||
           c == '\f';
}

/* Trims [*s, *e) of surrounding whitespace. */
static void trim(const char **s, const char **e)
{
    while (*s < *e && is_space(**s))
        (*s)++;
    while (*e > *s && is_space((*e)[-1]))
        (*e)--;
}

static mph_err_t conf_set_pair_raw(mph_conf_t *conf, const char *pair,
                                   char *errstr, size_t errstr_size)
{
    if (!conf || !pair) {
        seterr(errstr, errstr_size, "mph_conf_set_pair: %s is NULL",
               !conf ? "conf" : "pair");
        return MPH_ERR_INVALID;
    }
    const char *eq = strchr(pair, '=');
    if (!eq) {
        seterr(errstr, errstr_size, "%s: expected name=value", pair);
        return MPH_ERR_INVALID;
    }
    const char *s = pair, *e = eq;
    trim(&s, &e);
    char *name = strndup(s, (size_t)(e - s));
    if (!name) {
        seterr(errstr, errstr_size, "%s: out of memory", pair);
        return MPH_ERR_NOMEM;
    }
    mph_err_t err = MPH_ERR_INVALID;
    if (*name == '\0')
        seterr(errstr, errstr_size, "%s: expected name=value", pair);
    else
        err = mph_conf_set(conf, name, eq + 1, errstr, errstr_size);
    free(name);
    return err;
}

const char *mph_conf_get(const mph_conf_t *conf, const char *name)
{
    if (!conf || !name)
        return NULL;
    ptrdiff_t i = entry_find(conf, name);
    if (i >= 0)
        return conf->v[i].value;
    const struct prop *p = prop_find(name);
    return p ? p->dflt : NULL;
}

int64_t mph_conf_get_int(const mph_conf_t *conf, const char *name, int64_t dflt)
{
    const char *v = mph_conf_get(conf, name);
    int64_t out;
    return v && parse_i64(v, &out) ? out : dflt;
}

bool mph_conf_get_bool(const mph_conf_t *conf, const char *name, bool dflt)
{
    const char *v = mph_conf_get(conf, name);
    bool out;
    return v && parse_bool(v, &out) ? out : dflt;
}

bool mph_conf_is_set(const mph_conf_t *conf, const char *name)
{
    return conf && name && entry_find(conf, name) >= 0;
}

void mph_conf_foreach(const mph_conf_t *conf, const char *prefix,
                      mph_conf_foreach_fn *fn, void *opaque)
{
    if (!conf || !fn)
        return;
    if (!prefix)
        prefix = "";
    size_t plen = strlen(prefix);
    for (size_t i = 0; i < conf->n; i++) {
        if (strncmp(conf->v[i].name, prefix, plen) == 0)
            fn(conf->v[i].name, conf->v[i].value, opaque);
    }
}

/* ------------------------------------------------------------------------
 * Files
 * ------------------------------------------------------------------------ */

/* Parses one line in place. Returns 0 for a blank or comment line, 1 with
 * *name and *value pointing into line, or -1 with a reason in errstr
 * ("<name>: <reason>" or "<reason>"). */
static int parse_line(char *line, char **name, char **value, char *errstr,
                      size_t errstr_size)
{
    char *p = line;
    while (is_space(*p))
        p++;
    if (*p == '\0' || *p == '#')
        return 0;
    char *eq = strchr(p, '=');
    if (!eq) {
        char *end = p + strlen(p);
        while (end > p && is_space(end[-1]))
            *--end = '\0';
        seterr(errstr, errstr_size, "expected name = value, got '%s'", p);
        return -1;
    }
    char *nend = eq;
    while (nend > p && is_space(nend[-1]))
        nend--;
    *nend = '\0';
    if (*p == '\0') {
        seterr(errstr, errstr_size, "missing setting name before '='");
        return -1;
    }
    *name = p;

    char *v = eq + 1;
    while (is_space(*v))
        v++;
    if (*v == '"') {
        /* Quoted: \" and \\ are escapes; other backslashes are literal. */
        char *r = v + 1, *w = v;
        for (;;) {
            if (*r == '\0') {
                seterr(errstr, errstr_size, "%s: unterminated quoted value",
                       *name);
                return -1;
            }
            if (*r == '"')
                break;
            if (*r == '\\' && (r[1] == '"' || r[1] == '\\'))
                r++;
            *w++ = *r++;
        }
        char *after = r + 1;
        *w = '\0';
        while (is_space(*after))
            after++;
        if (*after != '\0' && *after != '#') {
            seterr(errstr, errstr_size,
                   "%s: unexpected text after the closing quote", *name);
            return -1;
        }
        *value = v;
        return 1;
    }
    /* Unquoted: a '#' at the start or after whitespace begins a comment. */
    char *end = v;
    for (char *c = v; *c; c++) {
        if (*c == '#' && (c == v || is_space(c[-1])))
            break;
        end = c + 1;
    }
    while (end > v && is_space(end[-1]))
        end--;
    *end = '\0';
    *value = v;
    return 1;
}

/* getline() with a limit: reads one line (with its newline, if any) into
 * *buf. Returns its length, -1 at the end of the file or on a read error
 * (nothing read), or -2 when the line holds more than max bytes before its
 * newline: then at most max + 1 bytes were kept, however long the line (a
 * file with no newline, /dev/zero) and the rest is not read. */
static ssize_t getline_max(char **buf, size_t *cap, FILE *f, size_t max)
{
    size_t len = 0;
    int c;
    flockfile(f);
    while ((c = getc_unlocked(f)) != EOF) {
        if (len + 2 > *cap) {
            size_t ncap = *cap ? *cap * 2 : 256;
            if (ncap > max + 2)
                ncap = max + 2;
            char *nb = realloc(*buf, ncap);
            if (!nb) {
                funlockfile(f);
                errno = ENOMEM;
                return -1;
            }
            *buf = nb;
            *cap = ncap;
        }
        (*buf)[len++] = (char)c;
        if (c == '\n')
            break;
        if (len > max) {
            funlockfile(f);
            (*buf)[len] = '\0';
            return -2;
        }
    }
    funlockfile(f);
    if (len == 0)
        return -1;
    (*buf)[len] = '\0';
    return (ssize_t)len;
}

static mph_err_t conf_load_file_raw(mph_conf_t *conf, const char *path,
                                    char *errstr, size_t errstr_size)
{
    if (!conf || !path) {
        seterr(errstr, errstr_size, "mph_conf_load_file: %s is NULL",
               !conf ? "conf" : "path");
        return MPH_ERR_INVALID;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        seterr(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return MPH_ERR_IO;
    }
    struct pending pd = {0};
    char *line = NULL;
    size_t line_cap = 0;
    char why[1024];
    mph_err_t err = MPH_OK;
    for (unsigned long lineno = 1;; lineno++) {
        errno = 0;
        ssize_t len = getline_max(&line, &line_cap, f, MPH_CONF_LINE_MAX);
        if (len == -2) {
            seterr(errstr, errstr_size,
                   "%s:%lu: line longer than %d bytes (is it a config file?)",
                   path, lineno, MPH_CONF_LINE_MAX);
            err = MPH_ERR_INVALID;
            break;
        }
        if (len < 0) {
            if (ferror(f) || errno == ENOMEM) {
                seterr(errstr, errstr_size, "%s:%lu: %s", path, lineno,
                       strerror(errno ? errno : EIO));
                err = MPH_ERR_IO;
            }
            break;
        }
        char *text = line;
        if (lineno == 1 && strncmp(text, "\xEF\xBB\xBF", 3) == 0)
            text += 3; /* a UTF-8 byte order mark */
        if (strlen(text) != (size_t)len - (size_t)(text - line)) {
            seterr(errstr, errstr_size, "%s:%lu: NUL byte in line", path,
                   lineno);
            err = MPH_ERR_INVALID;
            break;
        }
        char *name, *value;
        int r = parse_line(text, &name, &value, why, sizeof why);
        if (r == 1)
            err = pending_add(&pd, name, value, why, sizeof why);
        else if (r < 0)
            err = MPH_ERR_INVALID;
        if (err != MPH_OK) {
            seterr(errstr, errstr_size, "%s:%lu: %s", path, lineno, why);
            break;
        }
    }
    free(line);
    fclose(f);
    if (err != MPH_OK) {
        pending_free(&pd);
        return err;
    }
    return pending_apply(conf, &pd, errstr, errstr_size);
}

/* ------------------------------------------------------------------------
 * The environment
 * ------------------------------------------------------------------------ */

extern char **environ;

static bool env_is_ignored(const char *var, size_t name_len)
{
    for (size_t i = 0; i < sizeof env_ignored / sizeof env_ignored[0]; i++) {
        const char *pat = env_ignored[i].name;
        size_t plen = strlen(pat);
        if (pat[plen - 1] == '*') {
            if (name_len >= plen - 1 && strncmp(var, pat, plen - 1) == 0)
                return true;
        } else if (name_len == plen && strncmp(var, pat, plen) == 0) {
            return true;
        }
    }
    return false;
}

/* MEPHISTO_<NAME> → name: lower-cased, "__" read as '.'. */
static char *env_to_name(const char *s, size_t len)
{
    char *name = malloc(len + 1);
    if (!name)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '_' && i + 1 < len && s[i + 1] == '_') {
            name[n++] = '.';
            i++;
        } else {
            name[n++] = (char)tolower((unsigned char)s[i]);
        }
    }
    name[n] = '\0';
    return name;
}

struct env_item {
    const char *var; /* "MEPHISTO_X=value", borrowed from environ */
    size_t var_len;  /* length of "MEPHISTO_X" */
};

static int env_item_cmp(const void *a, const void *b)
{
    const struct env_item *x = a, *y = b;
    return strcmp(x->var, y->var);
}

static mph_err_t conf_load_env_raw(mph_conf_t *conf, char *errstr,
                                   size_t errstr_size)
{
    if (!conf) {
        seterr(errstr, errstr_size, "mph_conf_load_env: conf is NULL");
        return MPH_ERR_INVALID;
    }
    const size_t plen = strlen(ENV_PREFIX);
    size_t n = 0;
    for (char **e = environ; e && *e; e++)
        n += strncmp(*e, ENV_PREFIX, plen) == 0;
    struct env_item *items = calloc(n ? n : 1, sizeof *items);
    if (!items) {
        seterr(errstr, errstr_size, "out of memory");
        return MPH_ERR_NOMEM;
    }
    size_t k = 0;
    for (char **e = environ; e && *e && k < n; e++) {
        const char *eq = strchr(*e, '=');
        if (strncmp(*e, ENV_PREFIX, plen) != 0 || !eq)
            continue;
        if (env_is_ignored(*e, (size_t)(eq - *e)))
            continue;
        items[k++] = (struct env_item){*e, (size_t)(eq - *e)};
    }
    /* environ's order is arbitrary; sorting makes a clash (two spellings of
     * one name) resolve the same way every time. */
    qsort(items, k, sizeof *items, env_item_cmp);

    struct pending pd = {0};
    char why[1024];
    mph_err_t err = MPH_OK;
    for (size_t i = 0; i < k && err == MPH_OK; i++) {
        const char *var = items[i].var;
        size_t vlen = items[i].var_len;
        char *name = env_to_name(var + plen, vlen - plen);
        if (!name) {
            err = MPH_ERR_NOMEM;
            seterr(errstr, errstr_size, "out of memory");
            break;
        }
        if (*name == '\0') {
            err = MPH_ERR_INVALID;
            seterr(errstr, errstr_size, "%.*s: no setting name after %s",
                   (int)vlen, var, ENV_PREFIX);
        } else {
            err = pending_add(&pd, name, var + vlen + 1, why, sizeof why);
            if (err == MPH_ERR_NOENT && strchr(name, '.') == NULL &&
                (strncmp(name, "kafka_", 6) == 0 ||
                 strncmp(name, "rocksdb_", 8) == 0))
                seterr(errstr, errstr_size,
                       "%.*s: %s; librdkafka and RocksDB properties are "
                       "written with '.' as \"__\", as in "
                       "MEPHISTO_KAFKA__LINGER__MS",
                       (int)vlen, var, why);
            else if (err != MPH_OK)
                seterr(errstr, errstr_size, "%.*s: %s", (int)vlen, var, why);
        }
        free(name);
    }
    free(items);
    if (err != MPH_OK) {
        pending_free(&pd);
        return err;
    }
    return pending_apply(conf, &pd, errstr, errstr_size);
}

/* ------------------------------------------------------------------------
 * The public setters: every message they return is escaped
 * ------------------------------------------------------------------------ */

mph_err_t mph_conf_set(mph_conf_t *conf, const char *name, const char *value,
                       char *errstr, size_t errstr_size)
{
    mph_err_t err = conf_set_raw(conf, name, value, errstr, errstr_size);
    if (err != MPH_OK)
        errstr_escape(errstr, errstr_size);
    return err;
}

mph_err_t mph_conf_set_pair(mph_conf_t *conf, const char *pair, char *errstr,
                            size_t errstr_size)
{
    mph_err_t err = conf_set_pair_raw(conf, pair, errstr, errstr_size);
    if (err != MPH_OK)
        errstr_escape(errstr, errstr_size);
    return err;
}

mph_err_t mph_conf_load_file(mph_conf_t *conf, const char *path, char *errstr,
                             size_t errstr_size)
{
    mph_err_t err = conf_load_file_raw(conf, path, errstr, errstr_size);
    if (err != MPH_OK)
        errstr_escape(errstr, errstr_size);
    return err;
}

mph_err_t mph_conf_load_env(mph_conf_t *conf, char *errstr, size_t errstr_size)
{
    mph_err_t err = conf_load_env_raw(conf, errstr, errstr_size);
    if (err != MPH_OK)
        errstr_escape(errstr, errstr_size);
    return err;
}

/* ------------------------------------------------------------------------
 * The table, for help and docs
 * ------------------------------------------------------------------------ */

bool mph_conf_property(size_t index, const char **name, const char **type,
                       const char **dflt, const char **choices,
                       const char **doc)
{
    if (index >= NPROPS)
        return false;
    const struct prop *p = &props[index];
    if (name)
        *name = p->name;
    if (type)
        *type = type_names[p->type];
    if (dflt)
        *dflt = p->dflt;
    if (choices)
        *choices = p->choices ? p->choices : "";
    if (doc)
        *doc = p->doc;
    return true;
}

bool mph__conf_property_range(size_t index, int64_t *min, int64_t *max)
{
    if (index >= NPROPS || props[index].type != T_INT)
        return false;
    if (min)
        *min = props[index].min;
    if (max)
        *max = props[index].max;
    return true;
}

int mph__conf_worker_count(const mph_conf_t *conf)
{
    int64_t workers = mph_conf_get_int(conf, "workers", 0);
    if (workers > 0)
        return (int)workers;
    int64_t per_cpu = mph_conf_get_int(conf, "threads_per_core", 1);
    const char *list = mph_conf_get(conf, "cpus");
    size_t ncpu = 0;
    if (!list ||
        mph__conf_cpulist_parse(list, NULL, 0, &ncpu, NULL, 0) != MPH_OK)
        ncpu = 0;
    if (ncpu == 0) {
        cpu_set_t set;
        long online;
        if (sched_getaffinity(0, sizeof set, &set) == 0)
            ncpu = (size_t)CPU_COUNT(&set);
        else if ((online = sysconf(_SC_NPROCESSORS_ONLN)) > 0)
            ncpu = (size_t)online;
    }
    int64_t n = (int64_t)(ncpu ? ncpu : 1) * (per_cpu > 0 ? per_cpu : 1);
    return n > 1024 ? 1024 : (int)n;
}

/* The "allowed values" of p, as Markdown. */
static void fput_values(FILE *out, const struct prop *p, bool markdown)
{
    const char *q = markdown ? "`" : "";
    switch (p->type) {
    case T_INT:
        fprintf(out, "%lld .. %lld", (long long)p->min, (long long)p->max);
        break;
    case T_BOOL:
        fprintf(out, "%strue%s, %sfalse%s", q, q, q, q);
        break;
    case T_ENUM:
        for (const char *c = p->choices; *c;) {
            const char *bar = strchr(c, '|');
            int len = bar ? (int)(bar - c) : (int)strlen(c);
            fprintf(out, "%s%s%.*s%s", c == p->choices ? "" : ", ", q, len, c,
                    q);
            c += len + (bar ? 1 : 0);
        }
        break;
    case T_CPULIST:
        fprintf(out, "CPU list, CPUs 0 .. %d", MPH__CONF_CPU_MAX);
        break;
    case T_BROKER:
        fprintf(out,
                "%skafka://host:port[,host:port...]%s, %smock://%s, "
                "%smock://N%s (N 1 .. 16)",
                q, q, q, q, q, q);
        break;
    case T_STRING:
        fputs(p->values ? p->values : "any", out);
        break;
    }
}

/* Writes text (Markdown) with `code` backticks removed when !markdown, and
 * '|' escaped when markdown (the text goes into a table cell). */
static void fput_md(FILE *out, const char *text, bool markdown)
{
    for (const char *c = text; *c; c++) {
        if (!markdown && *c == '`')
            continue;
        if (markdown && *c == '|')
            fputc('\\', out);
        fputc(*c, out);
    }
}

/* Writes text without backticks, wrapped at width; the first line is
 * indented by first, the others by indent. */
static void fput_wrapped(FILE *out, const char *text, int first, int indent,
                         int width)
{
    bool first_line = true;
    int col = 0;
    const char *w = text;
    while (*w) {
        while (*w == ' ')
            w++;
        if (!*w)
            break;
        const char *e = w;
        int len = 0;
        for (; *e && *e != ' '; e++)
            len += *e != '`';
        if (col > 0 && col + 1 + len > width) {
            fputc('\n', out);
            col = 0;
        }
        if (col == 0) {
            int in = first_line ? first : indent;
            first_line = false;
            fprintf(out, "%*s", in, "");
            col = in;
        } else {
            fputc(' ', out);
            col++;
        }
        for (const char *c = w; c < e; c++) {
            if (*c != '`')
                fputc(*c, out);
        }
        col += len;
        w = e;
    }
    if (col > 0)
        fputc('\n', out);
}

static void print_text(FILE *out)
{
    int name_w = 4;
    for (size_t i = 0; i < NPROPS; i++) {
        int nl = (int)strlen(props[i].name);
        name_w = nl > name_w ? nl : name_w;
    }
    fputs("mephisto settings. Set them in a config file (name = value), in\n"
          "MEPHISTO_<NAME> environment variables or with --set name=value;\n"
          "later sources win. Reference: docs/configuration.md.\n\n",
          out);
    fprintf(out, "%-*s  %-7s  %s\n", name_w, "NAME", "TYPE", "DEFAULT");
    for (size_t i = 0; i < NPROPS; i++) {
        const struct prop *p = &props[i];
        fprintf(out, "%-*s  %-7s  %s\n", name_w, p->name, type_names[p->type],
                *p->dflt ? p->dflt : "(empty)");
        fput_wrapped(out, p->doc, 4, 4, 78);
        char values[256];
        FILE *mem = fmemopen(values, sizeof values, "w");
        if (mem) {
            fputs("Values: ", mem);
            fput_values(mem, p, false);
            fputc('.', mem);
            fclose(mem);
            values[sizeof values - 1] = '\0';
            fput_wrapped(out, values, 4, 4, 78);
        }
        fputc('\n', out);
    }
    fputs("Other names:\n", out);
    fput_wrapped(out,
                 "kafka.<prop>: a librdkafka property (see librdkafka's "
                 "CONFIGURATION.md), checked by librdkafka when set and given "
                 "to the Kafka clients mephisto creates. Refused when a "
                 "client is made: properties mephisto owns (group.id, "
                 "enable.auto.commit, ...), and values that break "
                 "processing_guarantee (acks other than all, "
                 "enable.idempotence=false; isolation.level=read_uncommitted "
                 "under exactly_once).",
                 2, 4, 78);
    fput_wrapped(out,
                 "rocksdb.<prop>: a RocksDB option for the state stores, "
                 "one of those mephisto supports, checked when set whatever "
                 "store is.",
                 2, 4, 78);
    fput_wrapped(out,
                 "<app>.<name>: any other dotted name, the app's own "
                 "setting, e.g. wordcount.input_topic.",
                 2, 4, 78);
    fputs("\nEnvironment:\n", out);
    fput_wrapped(out,
                 "MEPHISTO_<NAME> sets <name>: lower-cased, with \"__\" read "
                 "as '.', e.g. MEPHISTO_WORKERS=4, "
                 "MEPHISTO_KAFKA__LINGER__MS=20 (kafka.linger.ms), "
                 "MEPHISTO_WORDCOUNT__INPUT_TOPIC=words.",
                 2, 4, 78);
    fputs("  Skipped, as tools' and tests' own:\n", out);
    for (size_t i = 0; i < sizeof env_ignored / sizeof env_ignored[0]; i++)
        fprintf(out, "    %s\n", env_ignored[i].name);
}

static void print_markdown(FILE *out)
{
    fputs("<!-- Generated from the property table in src/runtime/config.c by "
          "mph_conf_print_help(out, true); do not edit. Regenerate with:\n"
          "     MEPHISTO_REGEN_DOCS=1 build/tests/runtime_test_config "
          "--filter 'config/docs_current'\n"
          "     The unit test runtime/test_config fails while this page is out "
          "of date. -->\n"
          "# Configuration\n"
          "\n"
          "Every mephisto setting, with its type, default and allowed values. "
          "One property table in `src/runtime/config.c` validates each value "
          "when it is set, prints `mephisto --help-config`, and generates "
          "this page.\n"
          "\n"
          "## Setting values\n"
          "\n"
          "A configuration (`mph_conf_t`, `include/mephisto/conf.h`) starts "
          "with every default. Settings come from, lowest precedence first:\n"
          "\n"
          "1. the defaults below;\n"
          "2. a config file (`mph_conf_load_file()`) or code "
          "(`mph_conf_set(conf, \"workers\", \"4\", errstr, sizeof errstr)`);\n"
          "3. environment variables `MEPHISTO_<NAME>` "
          "(`mph_conf_load_env()`);\n"
          "4. command-line flags `--set name=value` "
          "(`mph_conf_set_pair()`).\n"
          "\n"
          "A later value replaces an earlier one; the `mephisto` CLI applies "
          "the sources in this order. Every value is checked when it is set. "
          "A rejected value leaves the configuration unchanged, and the "
          "error names the setting, then the reason:\n"
          "\n"
          "```\n"
          "workers: must be an integer between 0 and 1024, got 'abc'\n"
          "wokers: unknown setting (did you mean workers?)\n"
          "kafka.acks: Invalid value for configuration property "
          "\"request.required.acks\"\n"
          "```\n"
          "\n"
          "Values are kept in a canonical form: integers in decimal, booleans "
          "as `true` or `false` (`1`/`0`, `yes`/`no` and `on`/`off` are "
          "accepted, in any case), enum values as spelt below (accepted in "
          "any case).\n"
          "\n"
          "## Names\n"
          "\n"
          "| Name | Meaning |\n"
          "|---|---|\n"
          "| `<name>` | A mephisto setting from the table below. Any other "
          "name without a dot is an error. |\n"
          "| `kafka.<prop>` | A librdkafka property (see librdkafka's "
          "`CONFIGURATION.md`), given verbatim to the Kafka clients mephisto "
          "creates. librdkafka checks it when it is set, so a bad property or "
          "value is rejected with librdkafka's reason. When a client is made, "
          "properties mephisto owns (`group.id`, `bootstrap.servers`, "
          "`enable.auto.commit`, `enable.auto.offset.store`) are refused, and "
          "so are values that break `processing_guarantee`: `acks` (or "
          "`request.required.acks`) other than `all`, "
          "`enable.idempotence=false`, and under `exactly_once` "
          "`isolation.level=read_uncommitted`; the error names the setting, "
          "the value and the guarantee: `kafka.acks=0: breaks "
          "processing_guarantee=at_least_once (records could be lost "
          "unacknowledged); use all`. |\n"
          "| `rocksdb.<prop>` | A RocksDB option for the state stores: one of "
          "those the RocksDB store supports (`write_buffer_size`, "
          "`max_open_files`, `compression`, ...), checked when it is set, "
          "whatever `store` is, so a misspelt name is an error even while "
          "tables live in memory. |\n"
          "| `<app>.<name>` | Any other dotted name: the app's own setting "
          "(e.g. `wordcount.input_topic`), stored verbatim for the app to "
          "read with `mph_conf_get()`. |\n"
          "\n"
          "Dotted names are made of letters, digits, `_` and `-`, in "
          "non-empty parts joined by single dots.\n"
          "\n"
          "## Config files\n"
          "\n"
          "One `name = value` per line. Blank lines are ignored; `#` starts a "
          "comment at the start of a line or after whitespace. Whitespace "
          "around names and values is dropped. A value in double quotes keeps "
          "its spaces and `#` characters; inside the quotes `\\\"` is a quote "
          "and `\\\\` a backslash. The whole file is checked before any of it "
          "is applied; an error names the file and line:\n"
          "`app.conf:3: workers: must be an integer between 0 and 1024, got "
          "'many'`. A line may hold at most 1 MiB (1048576 bytes, "
          "`MPH_CONF_LINE_MAX`): a longer one (say, a file with no newline) "
          "is an error, `app.conf:1: line longer than 1048576 bytes`, and is "
          "not read into memory.\n"
          "\n"
          "Errors echo the values they refuse with control characters, DEL "
          "and bytes that are not UTF-8 written as `\\xNN` "
          "(`mph_conf_escape()`), "
          "so a value cannot drive the terminal it is printed on.\n"
          "\n"
          "```\n"
          "# wordcount.conf\n"
          "app_id = wordcount\n"
          "broker = kafka://kafka1:9092,kafka2:9092\n"
          "workers = 4            # or 0: one per CPU\n"
          "kafka.linger.ms = 20\n"
          "wordcount.banner = \"  # words #  \"\n"
          "```\n"
          "\n"
          "## Environment variables\n"
          "\n"
          "`mph_conf_load_env()` reads every variable whose name starts with "
          "`MEPHISTO_`. The rest of the name, lower-cased, with each `__` "
          "read as `.`, is the setting's name; a single `_` stays `_`.\n"
          "\n"
          "| Variable | Setting |\n"
          "|---|---|\n"
          "| `MEPHISTO_WORKERS=4` | `workers = 4` |\n"
          "| `MEPHISTO_APP_ID=wordcount` | `app_id = wordcount` |\n"
          "| `MEPHISTO_KAFKA__LINGER__MS=20` | `kafka.linger.ms = 20` |\n"
          "| `MEPHISTO_KAFKA__QUEUE__BUFFERING__MAX__KBYTES=65536` | "
          "`kafka.queue.buffering.max.kbytes = 65536` |\n"
          "| `MEPHISTO_ROCKSDB__MAX_OPEN_FILES=512` | "
          "`rocksdb.max_open_files = 512` |\n"
          "| `MEPHISTO_WORDCOUNT__INPUT_TOPIC=words` | "
          "`wordcount.input_topic = words` |\n"
          "\n"
          "Any other `MEPHISTO_` variable must name a valid setting with a "
          "valid value, so a misspelt variable stops start-up instead of "
          "being ignored. The variables are checked together and applied "
          "only if all are valid. These are read by tools and tests, and "
          "skipped:\n"
          "\n",
          out);
    for (size_t i = 0; i < sizeof env_ignored / sizeof env_ignored[0]; i++)
        fprintf(out, "- `%s`: %s\n", env_ignored[i].name,
                env_ignored[i].used_by);
    fputs("\n"
          "## Settings\n"
          "\n"
          "| Setting | Type | Default | Values | Description |\n"
          "|---|---|---|---|---|\n",
          out);
    for (size_t i = 0; i < NPROPS; i++) {
        const struct prop *p = &props[i];
        fprintf(out, "| `%s` | %s | ", p->name, type_names[p->type]);
        if (*p->dflt)
            fprintf(out, "`%s`", p->dflt);
        else
            fputs("*(empty)*", out);
        fputs(" | ", out);
        fput_values(out, p, true);
        fputs(" | ", out);
        fput_md(out, p->doc, true);
        fputs(" |\n", out);
    }
}

void mph_conf_print_help(FILE *out, bool markdown)
{
    if (!out)
        return;
    if (markdown)
        print_markdown(out);
    else
        print_text(out);
}
