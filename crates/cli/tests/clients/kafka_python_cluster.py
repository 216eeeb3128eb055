#!/usr/bin/env python3
"""kafka-python against a Strom cluster: produce through one broker, consume through another.

Usage: kafka_python_cluster.py PRODUCE_BOOTSTRAP CONSUME_BOOTSTRAP RECORDS TOPIC...

For each topic (created beforehand, partitions led by several brokers), produces RECORDS keyed records with the
producer bootstrapped from PRODUCE_BOOTSTRAP only, then reads every partition from the beginning with a consumer
bootstrapped from CONSUME_BOOTSTRAP only: both must follow the Metadata to the leaders on the other brokers.
Checks that every record arrives exactly once, with its key and value, at the partition and offset its
acknowledgement named, and that the partitions hold nothing else (end offsets sum to RECORDS). Exits 0 on
success; 1 with what differed; 2 if kafka-python is missing or the wrong version.

Run by crates/cli/tests/cluster.rs.
"""

import sys
import time

REQUIRED = "3.0.12"
INSTALL = f"pip install kafka-python=={REQUIRED} aiokafka==0.14.0"

try:
    import kafka
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
except ImportError as e:
    print(f"kafka-python is not installed ({e}); install it with: {INSTALL}", file=sys.stderr)
    sys.exit(2)
if kafka.__version__ != REQUIRED:
    print(f"kafka-python {kafka.__version__} is installed, the test pins {REQUIRED}; run: {INSTALL}",
          file=sys.stderr)
    sys.exit(2)

DEADLINE_S = 60


class Mismatch(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Mismatch(what)


def produce(bootstrap, topic, records):
    producer = KafkaProducer(bootstrap_servers=bootstrap, client_id="strom-cluster-producer", acks="all",
                             linger_ms=5, request_timeout_ms=20000, retries=5)
    try:
        futures = [(f"py-{topic}-{i}".encode(), f"value-{i}".encode()) for i in range(records)]
        futures = [(key, value, producer.send(topic, key=key, value=value)) for key, value in futures]
        producer.flush(timeout=DEADLINE_S)
        acked = {}
        for key, value, f in futures:
            md = f.get(timeout=DEADLINE_S)
            check((md.partition, md.offset) not in acked.values(),
                  f"two records acknowledged at {topic}[{md.partition}]@{md.offset}")
            acked[key] = (md.partition, md.offset)
        return acked
    finally:
        producer.close(timeout=10)


def consume(bootstrap, topic, records, acked):
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="strom-cluster-consumer", group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest", request_timeout_ms=20000,
                             fetch_max_wait_ms=200)
    try:
        deadline = time.monotonic() + DEADLINE_S
        partitions = None
        while not partitions:
            check(time.monotonic() < deadline, f"no partitions for {topic} through {bootstrap}")
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                time.sleep(0.1)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        got = []
        while len(got) < records:
            if time.monotonic() > deadline:
                raise Mismatch(f"{topic}: timed out after {len(got)} of {records} records")
            for batch in consumer.poll(timeout_ms=500).values():
                got.extend(batch)
        ends = consumer.end_offsets(tps, timeout_ms=20000)
        check(sum(ends.values()) == records,
              f"{topic}: end offsets {ends} hold {sum(ends.values())} records, {records} were produced")
        seen = {}
        for r in got:
            check(r.key not in seen, f"{topic}: key {r.key!r} delivered twice "
                                     f"({seen.get(r.key)} and {(r.partition, r.offset)})")
            seen[r.key] = (r.partition, r.offset)
            check(r.key in acked, f"{topic}: unexpected key {r.key!r}")
            i = int(r.key.decode().rsplit("-", 1)[1])
            check(r.value == f"value-{i}".encode(), f"{topic}: key {r.key!r} has value {r.value!r}")
            check(acked[r.key] == (r.partition, r.offset),
                  f"{topic}: key {r.key!r} read at {(r.partition, r.offset)}, acknowledged at {acked[r.key]}")
        check(len(seen) == records, f"{topic}: {len(seen)} distinct keys of {records}")
        used = sorted({p for p, _ in seen.values()})
        check(used == sorted(partitions),
              f"{topic}: records in partitions {used}, want every partition (so every leader) {sorted(partitions)}")
        return used
    finally:
        consumer.close()


def main():
    if len(sys.argv) < 5:
        print(f"usage: {sys.argv[0]} PRODUCE_BOOTSTRAP CONSUME_BOOTSTRAP RECORDS TOPIC...", file=sys.stderr)
        return 2
    produce_bootstrap, consume_bootstrap, records = sys.argv[1], sys.argv[2], int(sys.argv[3])
    try:
        for topic in sys.argv[4:]:
            acked = produce(produce_bootstrap, topic, records)
            partitions = consume(consume_bootstrap, topic, records, acked)
            print(f"ok: {topic}: {records} records produced through {produce_bootstrap}, each read once "
                  f"through {consume_bootstrap} (partitions {partitions})")
    except Mismatch as e:
        print(f"MISMATCH: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
