#!/usr/bin/env python3
"""kafka-python's admin client against a Strom broker: describe_cluster() (which reads DescribeCluster v1's
endpoint_type and broke against brokers serving only v0) and the metadata it reports.

Usage: kafka_python_admin.py BOOTSTRAP EXPECTED_BROKER_COUNT
Exits 0 on success, 1 on a mismatch (printing what differed), 2 if kafka-python is missing or the wrong version.
Run by crates/cli/tests/python_admin.rs.
"""

import sys

REQUIRED = "3.0.12"
INSTALL = f"pip install kafka-python=={REQUIRED} aiokafka==0.14.0"

try:
    import kafka
    from kafka import KafkaAdminClient
except ImportError as e:
    print(f"kafka-python is not installed ({e}); install it with: {INSTALL}", file=sys.stderr)
    sys.exit(2)
if kafka.__version__ != REQUIRED:
    print(f"kafka-python {kafka.__version__} is installed, the test pins {REQUIRED}; run: {INSTALL}",
          file=sys.stderr)
    sys.exit(2)

bootstrap, expected = sys.argv[1], int(sys.argv[2])
admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
cluster = admin.describe_cluster()
print(cluster)
brokers = cluster["brokers"]
if len(brokers) != expected:
    print(f"expected {expected} brokers, describe_cluster() listed {brokers}", file=sys.stderr)
    sys.exit(1)
if not cluster["cluster_id"]:
    print("describe_cluster() returned no cluster id", file=sys.stderr)
    sys.exit(1)
ids = {b["broker_id"] for b in brokers}
if cluster["controller_id"] not in ids:
    print(f"controller {cluster['controller_id']} is not among the brokers {ids}", file=sys.stderr)
    sys.exit(1)
if any(b["is_fenced"] for b in brokers):
    print(f"a live broker is reported fenced: {brokers}", file=sys.stderr)
    sys.exit(1)
admin.close()
