#!/usr/bin/env python3
"""A kafka-python consumer-group member that a test can kill -9 mid-stream.

Usage: kafka_python_group_member.py BOOTSTRAP GROUP TOPIC [STOP_AFTER]

Joins GROUP (classic protocol, range assignor, session timeout 6 s), and for every record prints
`PROCESSED <partition> <offset>`, commits synchronously, then prints `COMMITTED <partition> <offset+1>`. After
each rebalance it prints `ASSIGNED <p,p,...>`. Every line is flushed at once so the test sees exactly how far it
got. With STOP_AFTER, once that many records are committed it processes one more record without committing it,
prints `STOPPED` and stays in the group (kafka-python heartbeats from its network thread) until it is killed: the
test kills it at that event, with work processed but not committed, instead of racing it. Exits 2 if
kafka-python is missing or the wrong version.
"""

import sys
import time

REQUIRED = "3.0.12"
try:
    import kafka
    from kafka import KafkaConsumer
    from kafka.consumer.subscription_state import ConsumerRebalanceListener
except ImportError as e:
    print(f"kafka-python is not installed ({e}); install it with: pip install kafka-python=={REQUIRED}",
          file=sys.stderr)
    sys.exit(2)
if kafka.__version__ != REQUIRED:
    print(f"kafka-python {kafka.__version__} is installed, the test pins {REQUIRED}", file=sys.stderr)
    sys.exit(2)


def say(line):
    print(line, flush=True)


class Listener(ConsumerRebalanceListener):
    def on_partitions_revoked(self, revoked):
        pass

    def on_partitions_assigned(self, assigned):
        say("ASSIGNED " + ",".join(str(tp.partition) for tp in sorted(assigned, key=lambda tp: tp.partition)))


def main():
    bootstrap, group, topic = sys.argv[1:4]
    stop_after = int(sys.argv[4]) if len(sys.argv) > 4 else None
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        max_poll_records=1,
    )
    consumer.subscribe([topic], listener=Listener())
    committed = 0
    while True:
        for tp, records in consumer.poll(timeout_ms=200).items():
            for record in records:
                say(f"PROCESSED {tp.partition} {record.offset}")
                if stop_after is not None and committed >= stop_after:
                    say("STOPPED")
                    while True:
                        time.sleep(3600)
                consumer.commit()
                committed += 1
                say(f"COMMITTED {tp.partition} {record.offset + 1}")


if __name__ == "__main__":
    main()
