#!/usr/bin/env python3
"""A kafka-python consumer-group member that a test can kill -9 mid-stream.

Usage: kafka_python_group_member.py BOOTSTRAP GROUP TOPIC [PROCESSING_MS]

Joins GROUP (classic protocol, range assignor, session timeout 6 s), and for every record prints
`PROCESSED <partition> <offset>`, commits synchronously, then prints `COMMITTED <partition> <offset+1>`. After
each rebalance it prints `ASSIGNED <p,p,...>`. Every line is flushed at once so the test sees exactly how far it
got when it is killed. PROCESSING_MS (default 0) is how long "processing" each record takes, so a test can
kill the member while work is left. Exits 2 if kafka-python is missing or the wrong version.
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
    processing_s = int(sys.argv[4]) / 1000 if len(sys.argv) > 4 else 0
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
    while True:
        for tp, records in consumer.poll(timeout_ms=200).items():
            for record in records:
                time.sleep(processing_s)
                say(f"PROCESSED {tp.partition} {record.offset}")
                consumer.commit()
                say(f"COMMITTED {tp.partition} {record.offset + 1}")


if __name__ == "__main__":
    main()
