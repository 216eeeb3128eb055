#!/usr/bin/env python3
"""End-to-end round trip through a Strom broker with aiokafka (asyncio client).

Usage: aiokafka_roundtrip.py BOOTSTRAP   (e.g. 127.0.0.1:9092)

Creates topics with aiokafka's AIOKafkaAdminClient, produces keyed records with headers and explicit timestamps
(uncompressed and gzip; aiokafka's other codecs need the extra cramjam package), then reads them back with
assign()/seek() -- no consumer group, the broker does not serve group APIs yet -- and checks every partition,
offset, key, value, header and timestamp, plus ListOffsets (beginning, end, by time). Exits 0 on success; on any
mismatch prints what differed and exits 1. Exits 2 if aiokafka is missing or the wrong version.

Run by crates/cli/tests/python_clients.rs, which also checks the gzip topic's batches on disk are gzip.
"""

import asyncio
import sys

REQUIRED = "0.14.0"
INSTALL = f"pip install kafka-python==3.0.12 aiokafka=={REQUIRED}"

try:
    import aiokafka
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
    from aiokafka.structs import TopicPartition
except ImportError as e:
    print(f"aiokafka is not installed ({e}); install it with: {INSTALL}", file=sys.stderr)
    sys.exit(2)
if aiokafka.__version__ != REQUIRED:
    print(f"aiokafka {aiokafka.__version__} is installed, the test pins {REQUIRED}; run: {INSTALL}",
          file=sys.stderr)
    sys.exit(2)

PARTITIONS = 3
RECORDS = 60
BASE_TS = 1_700_000_000_000
# codec -> topic. aiokafka supports snappy/lz4/zstd only with the cramjam package, which is not installed here.
TOPICS = {None: "aiokafka-plain", "gzip": "aiokafka-gzip"}
TIMEOUT_S = 60


class Mismatch(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Mismatch(what)


def expected_records(codec):
    """The records to send: (partition, key, value, headers, timestamp)."""
    out = []
    for i in range(RECORDS):
        # Compressible values, so gzip batches are smaller than the plain ones.
        key = f"key-{i}".encode() if i != 7 else None  # one null key
        value = (f"value-{i}-" + "abcdefgh" * (i % 9 + 4)).encode() if i != 11 else None  # one null value
        headers = [("trace", f"t{i}".encode()), ("codec", (codec or "none").encode()), ("empty", b"")]
        out.append((i % PARTITIONS, key, value, headers, BASE_TS + 7 * i))
    return out


async def create_topics(bootstrap):
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="strom-test-admin",
                                request_timeout_ms=20000)
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(topic, PARTITIONS, 1, topic_configs={"retention.ms": "3600000"})
             for topic in TOPICS.values()], timeout_ms=20000)
        print(f"aiokafka {aiokafka.__version__}: {type(response).__name__} v{response.API_VERSION}")
        for t in response.to_object()["topic_errors"]:
            check(t["error_code"] == 0, f"CreateTopics {t['topic']}: error {t['error_code']} {t.get('error_message')}")
        described = {t["topic"]: t for t in await admin.describe_topics(list(TOPICS.values()))}
        for topic in TOPICS.values():
            check(topic in described, f"describe_topics does not list {topic}: {sorted(described)}")
            t = described[topic]
            check(t["error_code"] == 0, f"describe_topics {topic}: error {t['error_code']}")
            partitions = sorted(p["partition"] for p in t["partitions"])
            check(partitions == list(range(PARTITIONS)), f"{topic} partitions: {partitions}")
        check(set(TOPICS.values()) <= set(await admin.list_topics()), "list_topics misses a created topic")
        topic = TOPICS["gzip"]
        configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": None})])
        entries = [entry for r in configs for res in r.to_object()["resources"] for entry in res["config_entries"]]
        values = {e["config_names"]: e["config_value"] for e in entries}
        check(values.get("retention.ms") == "3600000", f"DescribeConfigs {topic} retention.ms: {entries}")
    finally:
        await admin.close()


async def produce(bootstrap, codec, topic):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id=f"strom-test-producer-{codec}",
                                compression_type=codec, acks="all" if codec else 1, linger_ms=5,
                                enable_idempotence=codec is not None, request_timeout_ms=20000)
    await producer.start()
    try:
        expected = expected_records(codec)
        futures = [await producer.send(topic, key=key, value=value, headers=headers, partition=partition,
                                       timestamp_ms=ts)
                   for partition, key, value, headers, ts in expected]
        placed = {}
        for i, md in enumerate(await asyncio.wait_for(asyncio.gather(*futures), TIMEOUT_S)):
            partition, _, _, _, ts = expected[i]
            check(md.topic == topic and md.partition == partition,
                  f"record {i} acknowledged on {md.topic}[{md.partition}], sent to {topic}[{partition}]")
            # The broker answers log_append_time -1 (CreateTime topic). aiokafka 0.14.0 then copies the *first*
            # record's timestamp into every later record's metadata of the same batch (BatchBuilder.done
            # overwrites its `timestamp` loop variable), so md.timestamp is not checked per record here; the
            # consumed timestamps are.
            check(md.timestamp_type == 0, f"record {i} acknowledged with timestamp type {md.timestamp_type}, "
                  "want 0 (CreateTime: the broker answered log_append_time -1)")
            placed[i] = md.offset
        for p in range(PARTITIONS):
            offsets = [placed[i] for i in range(RECORDS) if i % PARTITIONS == p]
            check(offsets == list(range(len(offsets))), f"{topic}[{p}] acknowledged offsets {offsets}")
        return placed
    finally:
        await producer.stop()


async def consume_and_check(bootstrap, codec, topic, placed):
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id=f"strom-test-consumer-{codec}",
                                group_id=None, enable_auto_commit=False, auto_offset_reset="none",
                                request_timeout_ms=20000, fetch_max_wait_ms=200)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        per_partition = RECORDS // PARTITIONS
        beginning = await consumer.beginning_offsets(tps)
        check(beginning == {tp: 0 for tp in tps}, f"beginning_offsets {beginning}")
        end = await consumer.end_offsets(tps)
        check(end == {tp: per_partition for tp in tps}, f"end_offsets {end}")

        # offsets_for_times: partition 1 holds i = 1, 4, 7, ... at offsets 0, 1, 2, ... with ts BASE_TS + 7 * i.
        tp1 = TopicPartition(topic, 1)
        found = (await consumer.offsets_for_times({tp1: BASE_TS + 7 * 4 + 1}))[tp1]
        check(found is not None and found.offset == 2 and found.timestamp == BASE_TS + 7 * 7,
              f"offsets_for_times(ts of i=4 plus 1) on {topic}[1]: {found}, want offset 2 ts {BASE_TS + 49}")
        beyond = (await consumer.offsets_for_times({tp1: BASE_TS + 10 ** 6}))[tp1]
        check(beyond is None, f"offsets_for_times past the last record: {beyond}, want None")

        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        got = await asyncio.wait_for(read(consumer, RECORDS), TIMEOUT_S)
        check(len(got) == RECORDS, f"consumed {len(got)} records, want {RECORDS}")
        by_place = {(r.partition, r.offset): r for r in got}
        check(len(by_place) == RECORDS, "a (partition, offset) was delivered twice")
        for i, (partition, key, value, headers, ts) in enumerate(expected_records(codec)):
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
        again = await asyncio.wait_for(read(consumer, per_partition - 5), TIMEOUT_S)
        check([r.offset for r in again] == list(range(5, per_partition)),
              f"after seek({topic}[2], 5): offsets {[r.offset for r in again]}")
        check(again[0].key == f"key-{2 + 3 * 5}".encode(), f"after seek: first key {again[0].key!r}")
        position = await consumer.position(tp2)
        check(position == per_partition, f"position after reading to the end: {position}")
    finally:
        await consumer.stop()


async def read(consumer, count):
    got = []
    while len(got) < count:
        for records in (await consumer.getmany(timeout_ms=500)).values():
            got.extend(records)
    return got


async def run(bootstrap):
    await create_topics(bootstrap)
    for codec, topic in TOPICS.items():
        placed = await produce(bootstrap, codec, topic)
        await consume_and_check(bootstrap, codec, topic, placed)
        print(f"ok: {topic} ({codec or 'uncompressed'}): {RECORDS} records round-tripped")


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} BOOTSTRAP", file=sys.stderr)
        return 2
    try:
        asyncio.run(asyncio.wait_for(run(sys.argv[1]), 4 * TIMEOUT_S))
    except Mismatch as e:
        print(f"MISMATCH: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
