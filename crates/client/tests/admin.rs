//! The admin client against a real Strom broker: records deleted below an offset, offsets listed by spec
//! (earliest, latest, timestamp), and the cluster description.

use strom_broker::{Broker, BrokerConfig};
use strom_client::admin::{Admin, NewTopic, OffsetSpec};
use strom_client::{Producer, ProducerConfig, ProducerRecord};
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_list_offsets_and_describe_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        ..BrokerConfig::default()
    };
    let broker = Broker::start(config, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .await
        .unwrap();
    let bootstrap = broker.local_addr().to_string();

    let admin = Admin::connect(&bootstrap).await.unwrap();
    let created = admin
        .create_topics(&[NewTopic::new("trimmed").partitions(1)], false)
        .await
        .unwrap();
    created[0].result.as_ref().expect("topic created");

    let producer = Producer::new(ProducerConfig::new(&bootstrap))
        .await
        .unwrap();
    let t0 = 1_700_000_000_000i64;
    let mut deliveries = Vec::new();
    for i in 0..20i64 {
        let record = ProducerRecord::new("trimmed")
            .key("k")
            .value(format!("v{i}"))
            .timestamp(t0 + i * 1000)
            .partition(0);
        deliveries.push(producer.send(record).await.unwrap());
    }
    for d in deliveries {
        d.await.expect("delivered");
    }

    let partition = [("trimmed".to_string(), 0)];
    let latest = admin
        .list_offsets(&partition, OffsetSpec::Latest)
        .await
        .unwrap();
    assert_eq!(latest[0].result.as_ref().unwrap().offset, Some(20));
    let at = admin
        .list_offsets(&partition, OffsetSpec::Timestamp(t0 + 7_500))
        .await
        .unwrap();
    let at = at[0].result.as_ref().unwrap();
    assert_eq!((at.offset, at.timestamp), (Some(8), Some(t0 + 8_000)));
    let past_end = admin
        .list_offsets(&partition, OffsetSpec::Timestamp(t0 + 60_000))
        .await
        .unwrap();
    assert_eq!(past_end[0].result.as_ref().unwrap().offset, None);

    let deleted = admin
        .delete_records(&[("trimmed".to_string(), 0, 12)])
        .await
        .unwrap();
    assert_eq!(deleted[0].result.as_ref().copied().unwrap(), 12);
    let earliest = admin
        .list_offsets(&partition, OffsetSpec::Earliest)
        .await
        .unwrap();
    assert_eq!(earliest[0].result.as_ref().unwrap().offset, Some(12));
    let beyond = admin
        .delete_records(&[("trimmed".to_string(), 0, 500)])
        .await
        .unwrap();
    let err = beyond[0]
        .result
        .as_ref()
        .expect_err("past the high watermark");
    assert_eq!(err.kafka_code().map(|e| e.code()), Some(1), "{err}");
    let unknown = admin
        .delete_records(&[("nope".to_string(), 0, 1)])
        .await
        .unwrap();
    assert!(unknown[0].result.is_err());

    let cluster = admin.describe_cluster().await.unwrap();
    assert_eq!(cluster.brokers.len(), 1);
    assert_eq!(cluster.controller_id, 1);
    assert!(cluster
        .cluster_id
        .as_deref()
        .is_some_and(|id| !id.is_empty()));

    producer.close().await;
    broker.shutdown().await;
}
