//! `KafkaStreams` against an in-process broker: internal topics, commits, restore, scale-out, queries.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::{latest, long, TestBroker};
use strom_streams::{
    KafkaStreams, Materialized, State, StreamsBuilder, StreamsConfig, StreamsError,
};

const WAIT: Duration = Duration::from_secs(120);

/// Counts values per key (after re-keying by value, so through a repartition topic).
fn counting_topology() -> strom_streams::Topology {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("words")
        .group_by(|_, w| w.clone())
        .count(Materialized::named("counts"))
        .to_stream()
        .to("word-counts");
    b.build()
}

fn config(broker: &TestBroker, app: &str, state: &std::path::Path) -> StreamsConfig {
    let mut c = StreamsConfig::new(app, &broker.bootstrap);
    c.commit_interval = Duration::from_millis(200);
    c.state_dir = state.to_path_buf();
    c.session_timeout = Duration::from_secs(6);
    c.heartbeat_interval = Duration::from_millis(500);
    c
}

fn words(n: usize, distinct: usize, from: usize) -> Vec<(Option<Bytes>, Option<Bytes>, i64)> {
    (from..from + n)
        .map(|i| {
            (
                Some(Bytes::from(format!("k{i}"))),
                Some(Bytes::from(format!("w{}", i % distinct))),
                1_000 + i as i64,
            )
        })
        .collect()
}

/// Waits until `streams` reports `state`, naming the last state seen on timeout.
async fn wait_for_state(streams: &KafkaStreams, state: State) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = streams.state();
        if now == state {
            return;
        }
        assert!(
            !matches!(now, State::Error(_)) && tokio::time::Instant::now() < deadline,
            "waiting for {state:?}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn expected_counts(total: usize, distinct: usize) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for i in 0..total {
        *m.entry(format!("w{}", i % distinct)).or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_counts_through_a_repartition_topic_and_restores_its_state_after_a_restart()
{
    common::init_logs();
    let broker = TestBroker::start().await;
    broker.create_topic("words", 6).await;
    let state = tempfile::tempdir().unwrap();
    let mut streams = KafkaStreams::new(
        counting_topology(),
        config(&broker, "counter", state.path()),
    )
    .unwrap();
    streams.start().await.unwrap();
    broker.produce("words", words(600, 10, 0)).await;
    let expected = expected_counts(600, 10);
    let out = broker
        .read_until("word-counts", WAIT, |r| latest(r, long) == expected)
        .await;
    assert!(out.len() >= 600, "an update per input record");
    // Internal topics exist with Kafka Streams' names and the input's partition count.
    let admin = strom_client::admin::Admin::connect(&broker.bootstrap)
        .await
        .unwrap();
    let topics: Vec<String> = admin
        .list_topics(false)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert!(
        topics.contains(&"counter-counts-repartition".to_string()),
        "{topics:?}"
    );
    assert!(
        topics.contains(&"counter-counts-changelog".to_string()),
        "{topics:?}"
    );
    wait_for_state(&streams, State::Running).await;
    let store = streams.key_value_store::<String, i64>("counts").unwrap();
    assert_eq!(store.get(&"w3".to_string()).unwrap(), Some(60));
    assert_eq!(store.all().len(), 10);
    streams.close().await;
    assert_eq!(streams.state(), State::NotRunning);

    // A new instance (in-memory stores: empty) restores the counts from the changelog and goes on from there.
    let mut streams = KafkaStreams::new(
        counting_topology(),
        config(&broker, "counter", state.path()),
    )
    .unwrap();
    streams.start().await.unwrap();
    broker.produce("words", words(100, 10, 600)).await;
    let expected = expected_counts(700, 10);
    broker
        .read_until("word-counts", WAIT, |r| latest(r, long) == expected)
        .await;
    streams.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_split_the_tasks_and_the_survivor_takes_them_all_with_their_state() {
    let broker = TestBroker::start().await;
    broker.create_topic("words", 6).await;
    let (s1, s2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut c1 = config(&broker, "scaler", s1.path());
    c1.application_server = Some("host-a:1".into());
    let mut c2 = config(&broker, "scaler", s2.path());
    c2.application_server = Some("host-b:2".into());
    let mut a = KafkaStreams::new(counting_topology(), c1).unwrap();
    a.start().await.unwrap();
    wait_for_state(&a, State::Running).await;
    let mut b = KafkaStreams::new(counting_topology(), c2).unwrap();
    b.start().await.unwrap();
    broker.produce("words", words(1_200, 30, 0)).await;
    let expected = expected_counts(1_200, 30);
    broker
        .read_until("word-counts", WAIT, |r| latest(r, long) == expected)
        .await;
    // Both instances hold part of the 6 partitions of each sub-topology, none twice.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (pa, pb) = (a.local_partitions(), b.local_partitions());
        if !pa.is_empty() && !pb.is_empty() && pa.is_disjoint(&pb) && pa.len() + pb.len() == 6 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "tasks not split: {pa:?} / {pb:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Queries: each key is answered by the instance that holds it, and metadata names that instance.
    let key = "w7".to_string();
    let meta = a.query_metadata_for_key("counts", &key).await.unwrap();
    let (holder, other) = if a.local_partitions().contains(&meta.partition) {
        (&a, &b)
    } else {
        (&b, &a)
    };
    assert_eq!(
        holder
            .key_value_store::<String, i64>("counts")
            .unwrap()
            .get(&key)
            .unwrap(),
        Some(40)
    );
    assert!(matches!(
        other
            .key_value_store::<String, i64>("counts")
            .unwrap()
            .get(&key),
        Err(StreamsError::NotLocal { .. })
    ));
    let host = if std::ptr::eq(holder, &a) {
        "host-a:1"
    } else {
        "host-b:2"
    };
    assert_eq!(meta.active_host.as_deref(), Some(host));

    // One instance leaves: the other takes every task, restores their state, and counts on from it.
    b.close().await;
    broker.produce("words", words(300, 30, 1_200)).await;
    let expected = expected_counts(1_500, 30);
    broker
        .read_until("word-counts", WAIT, |r| latest(r, long) == expected)
        .await;
    wait_for_state(&a, State::Running).await;
    assert_eq!(a.local_partitions().len(), 6);
    assert_eq!(
        a.key_value_store::<String, i64>("counts")
            .unwrap()
            .get(&key)
            .unwrap(),
        Some(50)
    );
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_does_not_deserialize_is_skipped_or_stops_the_application_by_name() {
    let broker = TestBroker::start().await;
    broker.create_topic("numbers", 3).await;
    let topology = || {
        let b = StreamsBuilder::new();
        b.stream::<String, i64>("numbers")
            .map_values(|v| v * 2)
            .to("doubled");
        b.build()
    };
    let bad = |key: &str| {
        (
            Some(Bytes::from(key.to_string())),
            Some(Bytes::from_static(b"xx")),
            1,
        )
    };
    let good = |key: &str, v: i64| {
        (
            Some(Bytes::from(key.to_string())),
            Some(Bytes::copy_from_slice(&v.to_be_bytes())),
            2,
        )
    };
    broker
        .produce(
            "numbers",
            vec![
                good("a", 1),
                bad("a"),
                good("a", 2),
                good("b", 3),
                good("c", 4),
            ],
        )
        .await;

    let state = tempfile::tempdir().unwrap();
    let mut c = config(&broker, "lenient", state.path());
    c.set(
        "default.deserialization.exception.handler",
        "LogAndContinueExceptionHandler",
    )
    .unwrap();
    let mut lenient = KafkaStreams::new(topology(), c).unwrap();
    lenient.start().await.unwrap();
    let out = broker.read_until("doubled", WAIT, |r| r.len() >= 4).await;
    let mut values: Vec<i64> = out.iter().map(|r| long(&r.value)).collect();
    values.sort();
    assert_eq!(values, vec![2, 4, 6, 8]);
    assert_eq!(lenient.skipped_records(), 1);
    lenient.close().await;

    let mut strict =
        KafkaStreams::new(topology(), config(&broker, "strict", state.path())).unwrap();
    strict.start().await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let message = loop {
        if let State::Error(e) = strict.state() {
            break e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "strict app did not fail: {:?}",
            strict.state()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        message.contains("numbers-") && message.contains("does not deserialize"),
        "{message}"
    );
    strict.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_table_is_loaded_on_every_instance_before_processing() {
    let broker = TestBroker::start().await;
    broker.create_topic("countries", 2).await;
    broker.create_topic("logins", 3).await;
    let kv = |k: &str, v: &str| {
        (
            Some(Bytes::from(k.to_string())),
            Some(Bytes::from(v.to_string())),
            1,
        )
    };
    broker
        .produce(
            "countries",
            vec![kv("se", "Sweden"), kv("no", "Norway"), kv("fi", "Finland")],
        )
        .await;
    broker
        .produce(
            "logins",
            vec![
                kv("u1", "se"),
                kv("u2", "fi"),
                kv("u3", "dk"),
                kv("u4", "no"),
            ],
        )
        .await;
    let b = StreamsBuilder::new();
    let countries = b.global_table::<String, String>("countries", Materialized::named("countries"));
    b.stream::<String, String>("logins")
        .join_global(&countries, |_, code| code.clone(), |_, name| name.clone())
        .to("login-countries");
    let state = tempfile::tempdir().unwrap();
    let mut streams =
        KafkaStreams::new(b.build(), config(&broker, "globals", state.path())).unwrap();
    streams.start().await.unwrap();
    // The global store was bootstrapped before the stream threads started: no login missed its country.
    let out = broker
        .read_until("login-countries", WAIT, |r| r.len() >= 3)
        .await;
    let joined = latest(&out, common::text);
    let expected: BTreeMap<String, String> =
        [("u1", "Sweden"), ("u2", "Finland"), ("u4", "Norway")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    assert_eq!(joined, expected);
    let store = streams
        .key_value_store::<String, String>("countries")
        .unwrap();
    assert_eq!(store.all().len(), 3);
    // Updates keep flowing into the global store.
    broker.produce("countries", vec![kv("dk", "Denmark")]).await;
    broker.produce("logins", vec![kv("u5", "dk")]).await;
    broker
        .read_until("login-countries", WAIT, |r| {
            r.iter().any(|r| common::text(&r.value) == "Denmark")
        })
        .await;
    streams.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_key_join_works_across_tables_with_different_partition_counts() {
    let broker = TestBroker::start().await;
    broker.create_topic("orders", 6).await;
    broker.create_topic("customers", 3).await;
    let kv = |k: String, v: String| (Some(Bytes::from(k)), Some(Bytes::from(v)), 1);
    broker
        .produce(
            "customers",
            (0..20)
                .map(|c| kv(format!("c{c}"), format!("name{c}")))
                .collect(),
        )
        .await;
    broker
        .produce(
            "orders",
            (0..200)
                .map(|o| kv(format!("o{o}"), format!("c{}", o % 20)))
                .collect(),
        )
        .await;
    let b = StreamsBuilder::new();
    let orders = b.table::<String, String>("orders", Materialized::default());
    let customers = b.table::<String, String>("customers", Materialized::default());
    orders
        .join_foreign_key(&customers, |c| c.clone(), |_, name| name.clone())
        .to_stream()
        .to("order-customers");
    let state = tempfile::tempdir().unwrap();
    let mut streams = KafkaStreams::new(b.build(), config(&broker, "fk", state.path())).unwrap();
    streams.start().await.unwrap();
    let expected: BTreeMap<String, String> = (0..200)
        .map(|o| (format!("o{o}"), format!("name{}", o % 20)))
        .collect();
    broker
        .read_until("order-customers", WAIT, |r| {
            latest(r, common::text) == expected
        })
        .await;
    // A customer renamed reaches every order of that customer.
    broker
        .produce("customers", vec![kv("c3".into(), "renamed".into())])
        .await;
    let mut expected = expected;
    for o in (3..200).step_by(20) {
        expected.insert(format!("o{o}"), "renamed".into());
    }
    broker
        .read_until("order-customers", WAIT, |r| {
            latest(r, common::text) == expected
        })
        .await;
    streams.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_stores_restart_from_their_checkpoint_and_restore_in_full_without_one() {
    let broker = TestBroker::start().await;
    broker.create_topic("words", 3).await;
    let topology = || {
        let b = StreamsBuilder::new();
        b.stream::<String, String>("words")
            .group_by(|_, w| w.clone())
            .count(Materialized::named("counts").persistent())
            .to_stream()
            .to("word-counts");
        b.build()
    };
    let state = tempfile::tempdir().unwrap();
    let mut c = config(&broker, "durable", state.path());
    c.num_stream_threads = 2;
    let mut streams = KafkaStreams::new(topology(), c.clone()).unwrap();
    streams.start().await.unwrap();
    broker.produce("words", words(300, 10, 0)).await;
    let expected = expected_counts(300, 10);
    broker
        .read_until("word-counts", WAIT, |r| latest(r, long) == expected)
        .await;
    streams.close().await;

    // Clean restart: the stores on disk are trusted up to their checkpoints; nothing is replayed.
    let mut streams = KafkaStreams::new(topology(), c.clone()).unwrap();
    streams.start().await.unwrap();
    wait_for_state(&streams, State::Running).await;
    assert_eq!(streams.local_partitions().len(), 3);
    assert_eq!(streams.restored_records(), 0);
    let store = streams.key_value_store::<String, i64>("counts").unwrap();
    assert_eq!(store.get(&"w1".to_string()).unwrap(), Some(30));
    streams.close().await;

    // Without checkpoints (as after a crash) the stores are wiped and restored from the changelogs: the counts
    // are right, not doubled.
    let mut removed = 0;
    for entry in walk(state.path()) {
        if entry.file_name().is_some_and(|n| n == ".checkpoint") {
            std::fs::remove_file(&entry).unwrap();
            removed += 1;
        }
    }
    assert_eq!(
        removed, 3,
        "a checkpoint per task of the counting sub-topology"
    );
    let mut streams = KafkaStreams::new(topology(), c).unwrap();
    streams.start().await.unwrap();
    broker.produce("words", words(100, 10, 300)).await;
    let expected = expected_counts(400, 10);
    broker
        .read_until("word-counts", WAIT, |r| latest(r, long) == expected)
        .await;
    assert!(
        streams.restored_records() >= 10,
        "restored {}",
        streams.restored_records()
    );
    streams.close().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_replica_takes_over_a_task_without_replaying_its_changelog() {
    common::init_logs();
    let broker = TestBroker::start().await;
    broker.create_topic("words", 4).await;
    let (s1, s2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut c1 = config(&broker, "standing", s1.path());
    c1.num_standby_replicas = 1;
    let mut c2 = config(&broker, "standing", s2.path());
    c2.num_standby_replicas = 1;
    let mut a = KafkaStreams::new(counting_topology(), c1).unwrap();
    a.start().await.unwrap();
    wait_for_state(&a, State::Running).await;
    let mut b = KafkaStreams::new(counting_topology(), c2).unwrap();
    b.start().await.unwrap();
    broker.produce("words", words(800, 40, 0)).await;
    let expected = expected_counts(800, 40);
    broker
        .read_until("word-counts", WAIT, |r| latest(r, long) == expected)
        .await;
    // Each instance keeps standbys of exactly the other's active tasks, caught up with their changelogs.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (active_a, active_b) = (a.local_partitions(), b.local_partitions());
        let (standby_a, standby_b) = (a.standby_partitions(), b.standby_partitions());
        if !active_b.is_empty()
            && standby_a == active_b
            && standby_b == active_a
            && a.standbys_caught_up().await.unwrap()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "standbys: a active {active_a:?} standby {standby_a:?}; b active {active_b:?} standby {standby_b:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let restored_before = a.restored_records();
    b.close().await;
    broker.produce("words", words(200, 40, 800)).await;
    let expected = expected_counts(1_000, 40);
    broker
        .read_until("word-counts", WAIT, |r| latest(r, long) == expected)
        .await;
    wait_for_state(&a, State::Running).await;
    assert_eq!(a.local_partitions().len(), 4);
    // B's tasks came from A's standbys: nothing of their changelogs was replayed (B wrote nothing after A's
    // standbys caught up).
    assert_eq!(a.restored_records(), restored_before);
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_task_keeps_its_stream_time_so_closed_windows_stay_closed() {
    let broker = TestBroker::start().await;
    broker.create_topic("clicks", 1).await;
    let topology = || {
        let b = StreamsBuilder::new();
        b.stream::<String, String>("clicks")
            .group_by_key()
            .windowed_by(strom_streams::TimeWindows::of_size_with_no_grace(
                Duration::from_secs(10),
            ))
            .count(Materialized::named("per-10s"))
            .to_stream()
            .map(|w, n| (format!("{}@{}", w.key, w.window.start), n.unwrap_or(0)))
            .to("click-counts");
        b.build()
    };
    let click = |ts: i64| (Some(Bytes::from("u")), Some(Bytes::from("c")), ts);
    let state = tempfile::tempdir().unwrap();
    let mut streams =
        KafkaStreams::new(topology(), config(&broker, "clock", state.path())).unwrap();
    streams.start().await.unwrap();
    broker
        .produce("clicks", vec![click(1_000), click(2_000), click(100_000)])
        .await;
    broker
        .read_until("click-counts", WAIT, |r| r.len() >= 3)
        .await;
    streams.close().await;

    // After the restart a click for [0, 10 s) is late (stream time is 100 s): dropped, not counted into a
    // window the first run had closed.
    let mut streams =
        KafkaStreams::new(topology(), config(&broker, "clock", state.path())).unwrap();
    streams.start().await.unwrap();
    broker
        .produce("clicks", vec![click(3_000), click(101_000)])
        .await;
    let out = broker
        .read_until("click-counts", WAIT, |r| {
            r.iter()
                .any(|r| common::text(&r.key) == "u@100000" && long(&r.value) == 2)
        })
        .await;
    let early: Vec<i64> = out
        .iter()
        .filter(|r| common::text(&r.key) == "u@0")
        .map(|r| long(&r.value))
        .collect();
    assert_eq!(early, vec![1, 2], "the late click was not counted");
    assert_eq!(streams.dropped_records(), 1);
    streams.close().await;
}
