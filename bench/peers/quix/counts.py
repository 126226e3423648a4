"""Latest count of a few words in the Quix Streams peer's changelog.

  counts.py BROKER CHANGELOG WORDS_FILE

Reads the changelog topic from the beginning to its end offsets
(read_committed, as bench/peers/run reads every changelog), keeps the last
value of each key b"<word>|n" (see peer.py) and prints "word<TAB>count" for
every word of WORDS_FILE that has one. A key whose latest record has no
value (a deletion) has no count.
"""
import json
import sys

from confluent_kafka import Consumer, TopicPartition

broker, topic, words_path = sys.argv[1:4]
words = [w for w in open(words_path, encoding="utf-8").read().split("\n") if w]
want = {w.encode("utf-8") + b"|n": w for w in words}
c = Consumer({"bootstrap.servers": broker.removeprefix("kafka://"),
              "group.id": "mephisto-bench-quix-counts",
              "enable.auto.commit": False,
              "isolation.level": "read_committed"})
meta = c.list_topics(topic, timeout=30).topics.get(topic)
if meta is None or meta.error is not None or not meta.partitions:
    raise SystemExit(f"counts.py: no topic {topic}")
ends = {}
for p in meta.partitions:
    _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
    if high > 0:
        ends[p] = high
c.assign([TopicPartition(topic, p, 0) for p in ends])
latest = {}
idle = 0
while ends and idle < 300:  # 30 s without a record: give up
    m = c.poll(0.1)
    if m is None:
        idle += 1
        continue
    idle = 0
    if m.error():
        continue
    if m.key() in want:
        latest[want[m.key()]] = m.value()
    if m.offset() + 1 >= ends.get(m.partition(), 0):
        ends.pop(m.partition(), None)
c.close()
for w in words:
    v = latest.get(w)
    if v is not None:
        print(f"{w}\t{json.loads(v)}")
