"""The Quix Streams peer of mephisto's benchmark (bench/peers/run): word count.

The same app as mephisto's examples/wordcount, written the Quix Streams way:
a StreamingDataFrame on the input topic splits each UTF-8 line into words
(one row per word, `apply(..., expand=True)`), `group_by` re-keys every
word by itself through a repartition topic, and a stateful `update` counts
it in the RocksDB state store, whose changes go to a changelog topic.

A word is a maximal run of bytes that are not ASCII whitespace, counted as
written: bytes.split() with no argument splits on exactly those six bytes,
as examples/wordcount does.

Quix Streams names its internal topics itself
(`repartition__<group>--<input>--words`, `changelog__<group>--...--default`),
so the peer writes them to PEER_TOPICS_FILE ("repartition<TAB>name" and
"changelog<TAB>name" lines) before it starts processing: bench/peers/run
watches and checks those. The count of a word lives under the state key
b"n" of its message key, so its changelog record's key is
b"<word>|n" and its value the count as a JSON number.

Settings come from the environment, as for the other peers:

  PEER_BROKER      kafka://127.0.0.1:9092
  PEER_APP_ID      consumer group (unique per run)
  PEER_INPUT       input topic of lines (exists, filled by
                   `mephisto-bench tool load --text`); the internal topics
                   get as many partitions (Quix Streams copies its config)
  PEER_LINGER_MS   producer linger, as mephisto's producer_linger_ms (5)
  PEER_STATE_DIR   where the RocksDB state lives
  PEER_GUARANTEE   at_least_once (the default) or exactly_once (Quix
                   Streams' processing_guarantee "exactly-once")
  PEER_COMMIT_INTERVAL_MS  commit interval (1000), as mephisto's
                   commit_interval_ms
  PEER_TOPICS_FILE where to write the internal topics' names
"""
import os

from quixstreams import Application

BROKER = os.environ.get("PEER_BROKER", "kafka://127.0.0.1:9092")
APP_ID = os.environ["PEER_APP_ID"]
INPUT = os.environ["PEER_INPUT"]
LINGER_MS = int(os.environ.get("PEER_LINGER_MS", "5"))
STATE_DIR = os.environ.get("PEER_STATE_DIR", "quix-state")
GUARANTEE = os.environ.get("PEER_GUARANTEE", "at_least_once")
COMMIT_INTERVAL_MS = int(os.environ.get("PEER_COMMIT_INTERVAL_MS", "1000"))
TOPICS_FILE = os.environ.get("PEER_TOPICS_FILE", "quix.topics")
if GUARANTEE not in ("at_least_once", "exactly_once"):
    raise SystemExit(f"PEER_GUARANTEE must be at_least_once or exactly_once, "
                     f"not {GUARANTEE!r}")
if not BROKER.startswith("kafka://"):
    raise SystemExit(f"PEER_BROKER must be kafka://host:port, not {BROKER!r}")

app = Application(
    broker_address=BROKER[len("kafka://"):],
    consumer_group=APP_ID,
    auto_offset_reset="earliest",
    state_dir=STATE_DIR,
    # Settings that matter for a fair comparison, as mephisto's defaults:
    commit_interval=COMMIT_INTERVAL_MS / 1000.0,  # seconds
    commit_every=10000,                           # commit_every=10000
    processing_guarantee=("exactly-once" if GUARANTEE == "exactly_once"
                          else "at-least-once"),
    producer_extra_config={"linger.ms": LINGER_MS, "acks": "all",
                           "enable.idempotence": True},
    use_changelog_topics=True,
    loglevel="WARNING",
)

lines = app.topic(INPUT, key_deserializer="bytes", value_deserializer="bytes")
sdf = app.dataframe(lines)
# lines -> one row per word
sdf = sdf.apply(lambda line: line.split(), expand=True)
# re-keyed by the word through the repartition topic, raw bytes both ways
sdf = sdf.group_by(lambda word: word, name="words",
                   key_serializer="bytes", key_deserializer="bytes",
                   value_serializer="bytes", value_deserializer="bytes")


def count(word, state):
    """word_counts[word] += 1, on the partition owning the word."""
    state.set(b"n", state.get(b"n", 0) + 1)


sdf = sdf.update(count, stateful=True)

# The internal topics' names, for bench/peers/run (see above). The
# changelog is named when the store registers, at run time; its name
# follows the TopicManager's scheme for this stream and the default store.
tm = app._topic_manager
repartition = next(iter(tm.repartition_topics))
changelog = tm._internal_name("changelog", sdf.stream_id, "default")
with open(TOPICS_FILE + ".tmp", "w", encoding="utf-8") as f:
    f.write(f"repartition\t{repartition}\nchangelog\t{changelog}\n")
os.replace(TOPICS_FILE + ".tmp", TOPICS_FILE)

if __name__ == "__main__":
    app.run()
