#!/usr/bin/env python3
"""A consume-transform-produce application with confluent-kafka's transactions (exactly-once processing).

Usage: confluent_kafka_eos_app.py BOOTSTRAP INPUT OUTPUT GROUP TRANSACTIONAL_ID COMMIT_EVERY

Reads INPUT in the consumer group GROUP at isolation.level=read_committed without auto-commit, writes each record
to OUTPUT with the same key and the value followed by b"|eos", and every COMMIT_EVERY records (or when the input
runs dry) commits a transaction holding those outputs and the consumer's positions (send_offsets_to_transaction).
TRANSACTIONAL_ID is fixed per application instance: a restarted instance fences the one before it, whose open
transaction the coordinator aborts, and goes on from the offsets the last committed transaction carried. It is
also the consumer's group.instance.id (static membership), so the restarted consumer takes the killed one's
place in the group at once instead of waiting for its session to time out.

Prints one line per committed transaction ("committed N total T", T counting this run only) and "done" once it
has read every assigned partition to its end with nothing left uncommitted, then exits 0. Exits 1 on an error it
cannot handle, 2 if confluent-kafka is missing or the wrong version.

Run (and killed with SIGKILL at random points) by crates/cli/tests/exactly_once.rs.
"""

import sys

REQUIRED = "2.16.1"
INSTALL = f"pip install confluent-kafka=={REQUIRED}"

try:
    import confluent_kafka
    from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
except ImportError as e:
    print(f"confluent-kafka is not installed ({e}); install it with: {INSTALL}", file=sys.stderr)
    sys.exit(2)
if confluent_kafka.__version__ != REQUIRED:
    print(f"confluent-kafka {confluent_kafka.__version__} is installed, the test pins {REQUIRED}; run: {INSTALL}",
          file=sys.stderr)
    sys.exit(2)

TIMEOUT_S = 30


def main():
    bootstrap, input_topic, output_topic, group, transactional_id, commit_every = sys.argv[1:7]
    commit_every = int(commit_every)
    common = {"bootstrap.servers": bootstrap, "broker.address.family": "v4"}

    producer = Producer({
        **common,
        "transactional.id": transactional_id,
        "transaction.timeout.ms": 10000,
        "linger.ms": 5,
    })
    # Before the consumer reads its committed offsets: this fences the killed instance and completes or aborts its
    # transaction, so the offsets are those of the last committed transaction.
    producer.init_transactions(TIMEOUT_S)

    consumer = Consumer({
        **common,
        "group.id": group,
        "group.instance.id": transactional_id,
        "session.timeout.ms": 10000,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
    })

    state = {"in_txn": False, "pending": 0, "total": 0}
    at_end = set()

    def abort_open_transaction():
        if state["in_txn"]:
            producer.abort_transaction(TIMEOUT_S)
            state["in_txn"], state["pending"] = False, 0

    def on_revoke(_consumer, _partitions):
        # The positions of the partitions given back are reset to their committed offsets on the next assignment,
        # so what this transaction read is read again: its outputs must not commit.
        abort_open_transaction()
        at_end.clear()

    def rewind():
        """After an abort: go back to the committed offsets, so the aborted transaction's input is read again."""
        assignment = consumer.assignment()
        for tp in consumer.committed(assignment, timeout=TIMEOUT_S):
            offset = tp.offset if tp.offset >= 0 else confluent_kafka.OFFSET_BEGINNING
            consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
        at_end.clear()

    def commit():
        if not state["in_txn"]:
            return
        try:
            producer.send_offsets_to_transaction(
                consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), TIMEOUT_S)
            producer.commit_transaction(TIMEOUT_S)
        except KafkaException as e:
            error = e.args[0]
            if error.fatal() or not error.txn_requires_abort():
                raise
            print(f"aborting after {error}", flush=True)
            abort_open_transaction()
            rewind()
            return
        state["total"] += state["pending"]
        print(f"committed {state['pending']} total {state['total']}", flush=True)
        state["in_txn"], state["pending"] = False, 0

    consumer.subscribe([input_topic], on_revoke=on_revoke)
    while True:
        msg = consumer.poll(0.2)
        if msg is None:
            commit()
        elif msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                raise KafkaException(msg.error())
            at_end.add(msg.partition())
        else:
            at_end.discard(msg.partition())
            if not state["in_txn"]:
                producer.begin_transaction()
                state["in_txn"] = True
            producer.produce(output_topic, key=msg.key(), value=msg.value() + b"|eos")
            state["pending"] += 1
            if state["pending"] >= commit_every:
                commit()
        producer.poll(0)
        assignment = {tp.partition for tp in consumer.assignment()}
        if assignment and assignment <= at_end:
            commit()
            if not state["in_txn"] and assignment <= at_end:
                break
    print("done", flush=True)
    consumer.close()


if __name__ == "__main__":
    try:
        main()
    except KafkaException as e:
        print(f"failed: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
