#!/usr/bin/env python3
"""End-to-end round trip through a Strom broker with kafka-python (pure Python client).

Usage: kafka_python_roundtrip.py BOOTSTRAP   (e.g. 127.0.0.1:9092)

Creates topics with KafkaAdminClient, produces keyed records with headers and explicit timestamps (uncompressed
and gzip; kafka-python's other codecs need extra packages), then reads them back with assign()/seek() -- no
consumer group, the broker does not serve group APIs yet -- and checks every partition, offset, key, value,
header and timestamp, plus ListOffsets (beginning, end, by time). Exits 0 on success; on any mismatch prints what
differed and exits 1. Exits 2 if kafka-python is missing or the wrong version.

Run by crates/cli/tests/python_clients.rs, which also checks the gzip topic's batches on disk are gzip.
"""

import sys
import time

REQUIRED = "3.0.12"
INSTALL = f"pip install kafka-python=={REQUIRED} aiokafka==0.14.0"

try:
    import kafka
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
except ImportError as e:
    print(f"kafka-python is not installed ({e}); install it with: {INSTALL}", file=sys.stderr)
    sys.exit(2)
if kafka.__version__ != REQUIRED:
    print(f"kafka-python {kafka.__version__} is installed, the test pins {REQUIRED}; run: {INSTALL}",
          file=sys.stderr)
    sys.exit(2)

PARTITIONS = 3
RECORDS = 60
BASE_TS = 1_700_000_000_000
# codec -> topic. kafka-python supports snappy/lz4/zstd only with extra packages (python-snappy, lz4,
# zstandard), which this test does not install.
TOPICS = {None: "kafka-python-plain", "gzip": "kafka-python-gzip"}
DEADLINE_S = 60


class Mismatch(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Mismatch(what)


def expected_records(codec):
    """The records to send: (partition, key, value, headers, timestamp)."""
    out = []
    for i in range(RECORDS):
        # Compressible values, so the producer's "send compressed only if smaller" rule keeps gzip on.
        key = f"key-{i}".encode() if i != 7 else None  # one null key
        value = (f"value-{i}-" + "abcdefgh" * (i % 9 + 4)).encode() if i != 11 else None  # one null value
        # kafka-python refuses None header values on send, so no null header here.
        headers = [("trace", f"t{i}".encode()), ("codec", (codec or "none").encode()), ("empty", b"")]
        out.append((i % PARTITIONS, key, value, headers, BASE_TS + 7 * i))
    return out


def create_topics(bootstrap):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="strom-test-admin", request_timeout_ms=20000)
    try:
        print(f"kafka-python {kafka.__version__}: admin inferred broker version {admin._manager.broker_version}")
        specs = {topic: {"num_partitions": PARTITIONS, "replication_factor": 1,
                         "configs": {"retention.ms": "3600000"}}
                 for topic in TOPICS.values()}
        result = admin.create_topics(specs, timeout_ms=20000)
        for t in result["topics"]:
            check(t["error_code"] == 0, f"CreateTopics {t['name']}: error {t['error_code']} {t.get('error_message')}")
        described = {t["name"]: t for t in admin.describe_topics(list(TOPICS.values()))}
        for topic in TOPICS.values():
            check(topic in described, f"describe_topics does not list {topic}: {sorted(described)}")
            t = described[topic]
            check(t["error_code"] == 0, f"describe_topics {topic}: error {t['error_code']}")
            partitions = sorted(p["partition_index"] for p in t["partitions"])
            check(partitions == list(range(PARTITIONS)), f"{topic} partitions: {partitions}")
        check(set(TOPICS.values()) <= set(admin.list_topics()), "list_topics misses a created topic")
    finally:
        admin.close()


def produce(bootstrap, codec, topic):
    producer = KafkaProducer(bootstrap_servers=bootstrap, client_id=f"strom-test-producer-{codec}",
                             compression_type=codec, acks="all" if codec else 1, linger_ms=5,
                             request_timeout_ms=20000)
    print(f"producer ({codec}): inferred broker version {producer.config['api_version']}")
    try:
        futures = []
        for partition, key, value, headers, ts in expected_records(codec):
            futures.append(producer.send(topic, key=key, value=value, headers=headers, partition=partition,
                                         timestamp_ms=ts))
        producer.flush(timeout=30)
        placed = {}
        for i, f in enumerate(futures):
            md = f.get(timeout=30)
            partition, _, _, _, ts = expected_records(codec)[i]
            check(md.topic == topic and md.partition == partition,
                  f"record {i} acknowledged on {md.topic}[{md.partition}], sent to {topic}[{partition}]")
            check(md.timestamp == ts, f"record {i} acknowledged with timestamp {md.timestamp}, sent {ts}")
            placed[i] = md.offset
        # Offsets are dense per partition, in send order.
        for p in range(PARTITIONS):
            offsets = [placed[i] for i in range(RECORDS) if i % PARTITIONS == p]
            check(offsets == list(range(len(offsets))), f"{topic}[{p}] acknowledged offsets {offsets}")
        return placed
    finally:
        producer.close(timeout=10)


def consume_and_check(bootstrap, codec, topic, placed):
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id=f"strom-test-consumer-{codec}",
                             group_id=None, enable_auto_commit=False, auto_offset_reset="none",
                             request_timeout_ms=20000, fetch_max_wait_ms=200)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        per_partition = RECORDS // PARTITIONS
        check(consumer.beginning_offsets(tps, timeout_ms=20000) == {tp: 0 for tp in tps},
              f"beginning_offsets {consumer.beginning_offsets(tps)}")
        check(consumer.end_offsets(tps, timeout_ms=20000) == {tp: per_partition for tp in tps},
              f"end_offsets {consumer.end_offsets(tps)}")

        # offsets_for_times: partition 1 holds i = 1, 4, 7, ... at offsets 0, 1, 2, ... with ts BASE_TS + 7 * i.
        tp1 = TopicPartition(topic, 1)
        found = consumer.offsets_for_times({tp1: BASE_TS + 7 * 4 + 1}, timeout_ms=20000)[tp1]
        check(found is not None and found.offset == 2 and found.timestamp == BASE_TS + 7 * 7,
              f"offsets_for_times(ts of i=4 plus 1) on {topic}[1]: {found}, want offset 2 ts {BASE_TS + 49}")
        beyond = consumer.offsets_for_times({tp1: BASE_TS + 10 ** 6}, timeout_ms=20000)[tp1]
        check(beyond is None, f"offsets_for_times past the last record: {beyond}, want None")

        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        got = poll_until(consumer, RECORDS)
        expected = expected_records(codec)
        check(len(got) == RECORDS, f"consumed {len(got)} records, want {RECORDS}")
        by_place = {(r.partition, r.offset): r for r in got}
        check(len(by_place) == RECORDS, "a (partition, offset) was delivered twice")
        for i, (partition, key, value, headers, ts) in enumerate(expected):
            r = by_place.get((partition, placed[i]))
            check(r is not None, f"record {i} ({topic}[{partition}]@{placed[i]}) was not consumed")
            where = f"{topic}[{partition}]@{placed[i]} (record {i})"
            check(r.topic == topic, f"{where}: topic {r.topic}")
            check(r.key == key, f"{where}: key {r.key!r}, want {key!r}")
            check(r.value == value, f"{where}: value {r.value!r}, want {value!r}")
            check(list(r.headers) == headers, f"{where}: headers {r.headers!r}, want {headers!r}")
            check(r.timestamp == ts, f"{where}: timestamp {r.timestamp}, want {ts}")
            check(r.timestamp_type == 0, f"{where}: timestamp type {r.timestamp_type}, want 0 (CreateTime)")

        # seek() into the middle of a partition starts exactly there.
        tp2 = TopicPartition(topic, 2)
        consumer.assign([tp2])
        consumer.seek(tp2, 5)
        again = poll_until(consumer, per_partition - 5)
        check([r.offset for r in again] == list(range(5, per_partition)),
              f"after seek({topic}[2], 5): offsets {[r.offset for r in again]}")
        check(again[0].key == f"key-{2 + 3 * 5}".encode(), f"after seek: first key {again[0].key!r}")
        check(consumer.position(tp2) == per_partition, f"position after reading to the end: {consumer.position(tp2)}")
    finally:
        consumer.close()


def poll_until(consumer, count):
    deadline = time.monotonic() + DEADLINE_S
    got = []
    while len(got) < count:
        if time.monotonic() > deadline:
            raise Mismatch(f"timed out after {len(got)} of {count} records: "
                           f"{[(r.partition, r.offset) for r in got]}")
        for records in consumer.poll(timeout_ms=500).values():
            got.extend(records)
    return got


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} BOOTSTRAP", file=sys.stderr)
        return 2
    bootstrap = sys.argv[1]
    try:
        create_topics(bootstrap)
        for codec, topic in TOPICS.items():
            placed = produce(bootstrap, codec, topic)
            consume_and_check(bootstrap, codec, topic, placed)
            print(f"ok: {topic} ({codec or 'uncompressed'}): {RECORDS} records round-tripped")
    except Mismatch as e:
        print(f"MISMATCH: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
