"""The Faust peer of mephisto's benchmark (bench/peers/run): word count.

The same app as mephisto's examples/wordcount, written the Faust way (as
Faust's own word-count example): one agent reads UTF-8 lines and sends
every word, keyed by itself, to a repartition topic; a second agent reads
that topic and counts each word in a Table (RocksDB store through rocksdict,
changelog topic <app_id>-word_counts-changelog, values JSON numbers).

A word is a maximal run of bytes that are not ASCII whitespace, counted as
written: bytes.split() with no argument splits on exactly those six bytes,
as examples/wordcount does.

Settings come from the environment so that bench/peers/run drives every
peer the same way:

  PEER_BROKER      kafka://127.0.0.1:9092
  PEER_APP_ID      consumer group / app id (unique per run)
  PEER_INPUT       input topic of lines (exists, filled by
                   `mephisto-bench tool load --text`)
  PEER_PARTITIONS  partitions of the input; the repartition topic and the
                   table's changelog get as many
  PEER_LINGER_MS   producer linger, as mephisto's producer_linger_ms (5)
  PEER_STATE_DIR   where the RocksDB store lives
  PEER_GUARANTEE   at_least_once (the default) or exactly_once (Faust's
                   processing_guarantee: a transactional producer per
                   partition, read_committed consumers)
  PEER_COMMIT_INTERVAL_MS  commit interval (1000), as mephisto's
                   commit_interval_ms
  PEER_DUMP        (the state-takeover check, tests/integration/
                   test_faust_migration.c) a file: once the table is
                   recovered from its changelog, write every word and its
                   count there ("word<TAB>count" lines, words as UTF-8, then
                   a line "END") and exit; nothing else is done with the
                   input, which is expected to be consumed already
"""
import os

import faust

BROKER = os.environ.get("PEER_BROKER", "kafka://127.0.0.1:9092")
APP_ID = os.environ["PEER_APP_ID"]
INPUT = os.environ["PEER_INPUT"]
PARTITIONS = int(os.environ.get("PEER_PARTITIONS", "8"))
LINGER_MS = int(os.environ.get("PEER_LINGER_MS", "5"))
STATE_DIR = os.environ.get("PEER_STATE_DIR", "faust-state")
GUARANTEE = os.environ.get("PEER_GUARANTEE", "at_least_once")
COMMIT_INTERVAL_MS = int(os.environ.get("PEER_COMMIT_INTERVAL_MS", "1000"))
if GUARANTEE not in ("at_least_once", "exactly_once"):
    raise SystemExit(f"PEER_GUARANTEE must be at_least_once or exactly_once, "
                     f"not {GUARANTEE!r}")

app = faust.App(
    APP_ID,
    broker=BROKER,
    web_enabled=False,
    # The worker command binds its web server even so: on a free port
    # (PEER_WEB_PORT, from bench/peers/run), not 6066, which another Faust
    # on the machine may hold.
    web_bind="127.0.0.1",
    web_port=int(os.environ.get("PEER_WEB_PORT", "6066")),
    store="rocksdb://",
    datadir=STATE_DIR,
    topic_partitions=PARTITIONS,
    # Settings that matter for a fair comparison, as mephisto's defaults:
    producer_acks=-1,                    # acks=all
    producer_linger=LINGER_MS / 1000.0,  # seconds
    processing_guarantee=GUARANTEE,
    broker_commit_interval=COMMIT_INTERVAL_MS / 1000.0,  # seconds
    broker_commit_every=10000,           # commit_every=10000
    consumer_auto_offset_reset="earliest",
    topic_disable_leader=True,
)

lines = app.topic(INPUT, key_type=bytes, value_type=bytes,
                  key_serializer="raw", value_serializer="raw")
# Named as mephisto and Kafka Streams name theirs, so that bench/peers/run
# watches the same thing for every peer.
words = app.topic(f"{APP_ID}-words-repartition", key_type=bytes,
                  value_type=bytes, key_serializer="raw",
                  value_serializer="raw", partitions=PARTITIONS,
                  internal=True)
# Keys raw bytes and values JSON: the app's default key_serializer ("raw")
# and value_serializer ("json").
word_counts = app.Table("word_counts", default=int, partitions=PARTITIONS,
                        key_type=bytes, value_type=int)


@app.agent(lines)
async def split(stream):
    """lines -> words, each sent keyed by the word."""
    async for line in stream:
        for word in line.split():
            await words.send(key=word, value=b"")


@app.agent(words)
async def count(stream):
    """words -> word_counts[word] += 1, on the partition owning the word."""
    async for word, _ in stream.items():
        word_counts[word] += 1


DUMP = os.environ.get("PEER_DUMP")
if DUMP:
    @app.timer(0.2)
    async def dump():
        """Faust reading back a changelog: the recovered table, then exit."""
        rec = app.tables.recovery
        assigned = {tp.partition for tp in app.consumer.assignment()
                    if tp.topic == INPUT}
        # Recovered, and of every partition (an empty first assignment
        # also marks recovery completed).
        if (not rec.completed.is_set() or rec.in_recovery
                or assigned != set(range(PARTITIONS))):
            return
        tmp = DUMP + ".tmp"
        with open(tmp, "wb") as f:
            for word, n in sorted(word_counts.items()):
                f.write(word + b"\t" + str(n).encode() + b"\n")
            f.write(b"END\n")
        os.rename(tmp, DUMP)
        os._exit(0)


if __name__ == "__main__":
    app.main()
