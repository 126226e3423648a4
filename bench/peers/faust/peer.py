"""The Faust peer of mephisto's benchmark (bench/peers/run).

Reads records of the bench's input topic, decodes the JSON field "user" of
each (the same work as mephisto's passthrough agent) and forwards key and
value to the output topic. Settings come from the environment so that
bench/peers/run drives every peer the same way:

  PEER_BROKER    kafka://127.0.0.1:9092
  PEER_APP_ID    consumer group / app id (unique per run)
  PEER_INPUT     input topic (exists, filled by `mephisto-bench tool load`)
  PEER_OUTPUT    output topic (exists)
  PEER_LINGER_MS producer linger, as mephisto's producer_linger_ms (5)

The per-record work lives in process(); a word count replaces it with a
split into a repartition topic and a Table, once every peer runs one.
"""
import json
import os

import faust

BROKER = os.environ.get("PEER_BROKER", "kafka://127.0.0.1:9092")
APP_ID = os.environ["PEER_APP_ID"]
INPUT = os.environ["PEER_INPUT"]
OUTPUT = os.environ["PEER_OUTPUT"]
LINGER_MS = int(os.environ.get("PEER_LINGER_MS", "5"))

app = faust.App(
    APP_ID,
    broker=BROKER,
    web_enabled=False,
    # Settings that matter for a fair comparison, as mephisto's defaults:
    producer_acks=-1,                    # acks=all
    producer_linger=LINGER_MS / 1000.0,  # seconds
    broker_commit_interval=1.0,          # commit_interval_ms=1000
    broker_commit_every=10000,           # commit_every=10000
    consumer_auto_offset_reset="earliest",
    topic_allow_declare=False,
    topic_disable_leader=True,
)

source = app.topic(INPUT, key_type=bytes, value_type=bytes, value_serializer="raw",
                   key_serializer="raw")
sink = app.topic(OUTPUT, key_type=bytes, value_type=bytes, value_serializer="raw",
                 key_serializer="raw")


def process(value: bytes) -> str:
    """The per-record work: decode one JSON field."""
    return json.loads(value)["user"]


@app.agent(source)
async def forward(stream):
    async for key, value in stream.items():
        process(value)
        await sink.send(key=key, value=value)


if __name__ == "__main__":
    app.main()
