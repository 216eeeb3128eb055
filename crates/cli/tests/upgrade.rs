//! A data directory from the single-node layout (metadata in `cluster-metadata.json`) is upgraded to the Raft
//! metadata log on its first start: same cluster id, topics with their ids, configs and records, and the old file
//! kept aside as `cluster-metadata.json.migrated`.

mod common;

use common::{consume, delivered, enqueue, TestBroker};
use rdkafka::producer::FutureRecord;
use rdkafka::Offset;

#[test]
fn a_single_node_data_directory_is_upgraded_with_its_topics_configs_and_records() {
    let dir = tempfile::tempdir().unwrap();
    // Records written by today's broker, in a topic directory the old layout would have had too.
    let broker = TestBroker::start_in(dir.path(), |_| {});
    broker.create_topic("orders", 2, &[("retention.ms", "3600000")]);
    let producer = broker.producer(&[]);
    for i in 0..10 {
        let value = format!("order-{i}");
        delivered(enqueue(
            &producer,
            FutureRecord::<(), _>::to("orders")
                .partition(i % 2)
                .payload(&value),
        ))
        .unwrap();
    }
    let topic_id = broker.broker().state().topics.get("orders").unwrap().id;
    drop(producer);
    broker.stop();

    // Turn the directory into the single-node layout: no metadata log, no meta.properties, the JSON document.
    std::fs::remove_dir_all(dir.path().join("__cluster_metadata-0")).unwrap();
    std::fs::remove_file(dir.path().join("meta.properties")).unwrap();
    for p in 0..2 {
        std::fs::remove_file(dir.path().join(format!("orders-{p}/partition.metadata"))).unwrap();
    }
    let legacy = serde_json::json!({
        "cluster_id": "legacy-cluster-id",
        "node_id": 1,
        "next_producer_id": 5000,
        "topics": {"orders": {"topic_id": topic_id.to_string(), "partitions": 2,
                              "configs": {"retention.ms": "3600000"}}},
    });
    std::fs::write(dir.path().join("cluster-metadata.json"), legacy.to_string()).unwrap();

    let broker = TestBroker::start_in(dir.path(), |_| {});
    let state = broker.broker().state().clone();
    assert_eq!(state.cluster_id, "legacy-cluster-id");
    let topic = state.topics.get("orders").expect("orders upgraded");
    assert_eq!(topic.id, topic_id);
    assert_eq!(topic.partition_count(), 2);
    assert_eq!(
        topic.overrides.get("retention.ms").map(String::as_str),
        Some("3600000")
    );
    assert!(state.cluster.image().next_producer_id >= 5000);
    assert!(!dir.path().join("cluster-metadata.json").exists());
    assert!(dir.path().join("cluster-metadata.json.migrated").exists());
    let consumer = broker.consumer(&[]);
    let read = consume(&consumer, "orders", &[0, 1], Offset::Beginning, 10);
    assert_eq!(read.len(), 10);
    drop(consumer);
    broker.stop();

    // The next start reads the log; nothing is upgraded twice.
    let broker = TestBroker::start_in(dir.path(), |_| {});
    assert_eq!(broker.broker().state().cluster_id, "legacy-cluster-id");
    assert!(broker.broker().state().topics.get("orders").is_some());
    broker.stop();
}

#[test]
fn a_single_node_file_of_another_node_id_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = r#"{"cluster_id":"c","node_id":7,"next_producer_id":0,"topics":{}}"#;
    std::fs::write(dir.path().join("cluster-metadata.json"), legacy).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let err = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = strom_broker::BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        match strom_broker::Broker::start(config, listener).await {
            Ok(_) => panic!("a file of node 7 must not start node 1"),
            Err(e) => e.to_string(),
        }
    });
    assert!(
        err.contains("node.id 7") && err.contains("node.id 1"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("cluster-metadata.json")).unwrap(),
        legacy
    );
    assert!(!dir.path().join("meta.properties").exists());
    assert!(!dir.path().join("__cluster_metadata-0").exists());
}
