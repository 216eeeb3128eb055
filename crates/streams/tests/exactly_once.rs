//! `processing.guarantee=exactly_once_v2` against an in-process broker: a stateful topology (a count, through a
//! repartition topic or not) writes each update exactly once to its output as read_committed readers see it, also
//! when a stream thread dies in the middle of a transaction and the application is restarted: the dead thread's
//! outputs and changelog writes are aborted, the state is restored from what was committed, and the input since
//! the last commit is processed again, once.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{long, text, TestBroker};
use strom_client::consumer::{ConsumerRecord, IsolationLevel};
use strom_streams::{KafkaStreams, Materialized, State, StreamsBuilder, StreamsConfig};

const WAIT: Duration = Duration::from_secs(120);

/// Set while the first run of the crash test must die on the record "boom".
static CRASH_ON_BOOM: AtomicBool = AtomicBool::new(false);

/// Counts words (values) per word: re-keyed through a repartition topic, or (`keyed`: the input's key is the
/// word already) in one sub-topology, whose task then writes its changelog and output in one transaction.
fn counting_topology(keyed: bool) -> strom_streams::Topology {
    let b = StreamsBuilder::new();
    let words = b.stream::<String, String>("eos-words").peek(|_, w| {
        if w == "boom" && CRASH_ON_BOOM.load(Ordering::SeqCst) {
            panic!("a stream thread dies in the middle of its transaction");
        }
    });
    let grouped = if keyed {
        words.group_by_key()
    } else {
        words.group_by(|_, w| w.clone())
    };
    grouped
        .count(Materialized::named("eos-counts"))
        .to_stream()
        .to("eos-word-counts");
    b.build()
}

async fn broker() -> TestBroker {
    TestBroker::start_with(|c| {
        c.transaction_state_log_num_partitions = 3;
        c.offsets_topic_num_partitions = 3;
    })
    .await
}

fn config(broker: &TestBroker, app: &str, state: &std::path::Path) -> StreamsConfig {
    let mut c = StreamsConfig::new(app, &broker.bootstrap);
    c.set("processing.guarantee", "exactly_once_v2").unwrap();
    c.state_dir = state.to_path_buf();
    c.session_timeout = Duration::from_secs(6);
    c.heartbeat_interval = Duration::from_millis(500);
    c
}

/// Inputs `from..from + n`, the word `w<i % distinct>` as the value, and as the key too when `keyed`.
fn words(
    n: usize,
    distinct: usize,
    from: usize,
    keyed: bool,
) -> Vec<(Option<Bytes>, Option<Bytes>, i64)> {
    (from..from + n)
        .map(|i| {
            let word = format!("w{}", i % distinct);
            let key = if keyed { word.clone() } else { format!("k{i}") };
            (
                Some(Bytes::from(key)),
                Some(Bytes::from(word)),
                1_000 + i as i64,
            )
        })
        .collect()
}

/// Per word, the counts in the order the output has them.
fn updates(records: &[ConsumerRecord]) -> BTreeMap<String, Vec<i64>> {
    let mut m: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in records {
        m.entry(text(&r.key)).or_default().push(long(&r.value));
    }
    m
}

/// Each word counted 1, 2, ... n once, in order: what `total` inputs of `distinct` words yield exactly once.
fn expected(total: usize, distinct: usize) -> BTreeMap<String, Vec<i64>> {
    let mut n: BTreeMap<String, i64> = BTreeMap::new();
    for i in 0..total {
        *n.entry(format!("w{}", i % distinct)).or_default() += 1;
    }
    n.into_iter().map(|(w, n)| (w, (1..=n).collect())).collect()
}

/// Reads the output read_committed until it holds `count` updates, then half a second more (nothing else may
/// come).
async fn committed_output(broker: &TestBroker, count: usize) -> Vec<ConsumerRecord> {
    let full_since = std::sync::Mutex::new(None::<tokio::time::Instant>);
    broker
        .read_at(
            "eos-word-counts",
            IsolationLevel::ReadCommitted,
            WAIT,
            |r| {
                if r.len() < count {
                    return false;
                }
                let since = *full_since
                    .lock()
                    .unwrap()
                    .get_or_insert_with(tokio::time::Instant::now);
                r.len() > count || since.elapsed() >= Duration::from_millis(500)
            },
        )
        .await
}

async fn wait_for(streams: &KafkaStreams, done: impl Fn(&State) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = streams.state();
        if done(&now) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "state stayed {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_topology_writes_each_update_exactly_once() {
    common::init_logs();
    let broker = broker().await;
    broker.create_topic("eos-words", 2).await;
    let state = tempfile::tempdir().unwrap();
    let mut streams = KafkaStreams::new(
        counting_topology(false),
        config(&broker, "eos-app", state.path()),
    )
    .unwrap();
    streams.start().await.unwrap();
    broker.produce("eos-words", words(300, 10, 0, false)).await;
    let out = committed_output(&broker, 300).await;
    assert_eq!(updates(&out), expected(300, 10));
    // The store agrees.
    let counts = streams
        .key_value_store::<String, i64>("eos-counts")
        .unwrap();
    assert_eq!(counts.get(&"w3".to_string()).unwrap(), Some(30));
    streams.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_that_dies_mid_transaction_and_restarts_writes_no_duplicates() {
    common::init_logs();
    let broker = broker().await;
    broker.create_topic("eos-words", 2).await;
    let state = tempfile::tempdir().unwrap();
    // Commits far apart: only closing commits, and a transaction stays open until then.
    let rare_commits = || {
        let mut c = config(&broker, "eos-crash", state.path());
        c.commit_interval = Duration::from_secs(600);
        c
    };

    // First run: 100 inputs, committed when it closes.
    let mut first = KafkaStreams::new(counting_topology(true), rare_commits()).unwrap();
    first.start().await.unwrap();
    broker.produce("eos-words", words(100, 10, 0, true)).await;
    broker
        .read_until("eos-word-counts", WAIT, |r| r.len() >= 100)
        .await;
    first.close().await;
    assert_eq!(
        updates(&committed_output(&broker, 100).await),
        expected(100, 10)
    );

    // Second run: 100 more, whose updates reach the output and the changelog inside the open transaction
    // (read_uncommitted sees them), then "boom" kills the thread before it commits.
    CRASH_ON_BOOM.store(true, Ordering::SeqCst);
    let mut second = KafkaStreams::new(counting_topology(true), rare_commits()).unwrap();
    second.start().await.unwrap();
    broker.produce("eos-words", words(100, 10, 100, true)).await;
    broker
        .read_until("eos-word-counts", WAIT, |r| r.len() >= 200)
        .await;
    let boom = vec![(Some(Bytes::from("boom")), Some(Bytes::from("boom")), 5_000)];
    broker.produce("eos-words", boom).await;
    wait_for(&second, |s| matches!(s, State::Error(_))).await;
    second.close().await;
    drop(second);
    CRASH_ON_BOOM.store(false, Ordering::SeqCst);

    // Third run, same state directory and so the same transactional ids: the dead thread's transaction is
    // aborted, the state restored as the first run committed it, and the second run's input counted once.
    let mut third = KafkaStreams::new(
        counting_topology(true),
        config(&broker, "eos-crash", state.path()),
    )
    .unwrap();
    third.start().await.unwrap();
    broker.produce("eos-words", words(100, 10, 200, true)).await;
    let out = committed_output(&broker, 301).await;
    let mut want = expected(300, 10);
    want.insert("boom".into(), vec![1]);
    assert_eq!(updates(&out), want);
    let counts = third.key_value_store::<String, i64>("eos-counts").unwrap();
    assert_eq!(counts.get(&"w4".to_string()).unwrap(), Some(30));
    // The second run's updates are in the log, aborted: read_uncommitted has them besides.
    broker
        .read_until("eos-word-counts", WAIT, |r| r.len() >= 401)
        .await;
    third.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_whose_producer_is_fenced_aborts_revives_its_tasks_and_counts_on_exactly_once() {
    common::init_logs();
    let broker = broker().await;
    broker.create_topic("eos-words", 2).await;
    let state = tempfile::tempdir().unwrap();
    let mut streams = KafkaStreams::new(
        counting_topology(false),
        config(&broker, "eos-fence", state.path()),
    )
    .unwrap();
    streams.start().await.unwrap();
    broker.produce("eos-words", words(100, 10, 0, false)).await;
    committed_output(&broker, 100).await;

    // Another producer takes the stream thread's transactional.id: the thread's next transaction fails fenced.
    let process_id =
        std::fs::read_to_string(state.path().join("eos-fence").join("process-id")).unwrap();
    let mut pc = strom_client::ProducerConfig::new(&broker.bootstrap);
    pc.set(
        "transactional.id",
        &format!("eos-fence-{}-1", process_id.trim()),
    )
    .unwrap();
    let usurper = strom_client::Producer::new(pc).await.unwrap();
    usurper.init_transactions().await.unwrap();

    broker
        .produce("eos-words", words(200, 10, 100, false))
        .await;
    let out = committed_output(&broker, 300).await;
    assert_eq!(updates(&out), expected(300, 10));
    assert!(
        !matches!(streams.state(), State::Error(_)),
        "{:?}",
        streams.state()
    );
    // The thread took the id back with a new producer: the usurper is fenced in turn.
    usurper.begin_transaction().unwrap();
    usurper
        .send(strom_client::ProducerRecord::new("eos-words").value("late"))
        .await
        .unwrap();
    let err = usurper.commit_transaction().await.unwrap_err();
    assert!(usurper.is_fenced(), "{err}");
    streams.close().await;
}
