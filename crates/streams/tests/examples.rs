//! The examples' topologies end to end against an in-process broker, with known input (out-of-order records
//! within and past the grace period) and exact expected output; the metric aggregation killed with SIGKILL in
//! the middle of its input, in a child process, then restarted; and its clean failover to another instance.
// Each example brings the runner the examples share (examples/common), so this file loads it once per example.
#![allow(clippy::duplicate_mod)]

mod common;

#[path = "../examples/enrichment.rs"]
#[allow(dead_code)]
mod enrichment;
#[path = "../examples/fraud_detection.rs"]
#[allow(dead_code)]
mod fraud_detection;
#[path = "../examples/live_dashboard.rs"]
#[allow(dead_code)]
mod live_dashboard;
#[path = "../examples/metric_aggregation.rs"]
#[allow(dead_code)]
mod metric_aggregation;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::{long, text, TestBroker};
use serde::Serialize;
use strom_client::consumer::ConsumerRecord;
use strom_client::{Producer, ProducerConfig, ProducerRecord};
use strom_streams::{Json, KafkaStreams, State, StreamsConfig, Topology};

const WAIT: Duration = Duration::from_secs(180);

fn config(bootstrap: &str, app: &str, state: &Path) -> StreamsConfig {
    let mut c = StreamsConfig::new(app, bootstrap);
    c.commit_interval = Duration::from_millis(200);
    c.state_dir = state.to_path_buf();
    c.session_timeout = Duration::from_secs(6);
    c.heartbeat_interval = Duration::from_millis(500);
    c
}

async fn start(topology: Topology, config: StreamsConfig) -> KafkaStreams {
    let mut streams = KafkaStreams::new(topology, config).unwrap();
    streams.start().await.unwrap();
    streams
}

fn key(k: &str) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(k.as_bytes()))
}

fn json<T: Serialize>(value: &T) -> Option<Bytes> {
    Some(Bytes::from(serde_json::to_vec(value).unwrap()))
}

fn decode<T: serde::de::DeserializeOwned>(r: &ConsumerRecord) -> T {
    serde_json::from_slice(r.value.as_deref().expect("a value")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fraud_detection_alerts_from_the_fourth_payment_in_a_minute_and_drops_payments_past_grace()
{
    use fraud_detection::{Alert, Payment, FRAUD_ALERTS, PAYMENTS};
    let broker = TestBroker::start().await;
    broker.create_topic(PAYMENTS, 6).await;
    broker.create_topic(FRAUD_ALERTS, 6).await;
    // Every payment counted late is accepted even if all cards share a partition (its window closes, end plus
    // 10 s grace, after every payment before it); every one dropped is past grace by its own card's payments.
    let payments = [
        ("card-a", 1_000),
        ("card-a", 5_000),
        ("card-b", 10_000),
        ("card-b", 11_000),
        ("card-b", 12_000),
        ("card-a", 20_000),
        ("card-c", 40_000),
        ("card-c", 45_000),
        ("card-a", 50_000), // a's 4th in [0, 60 s): alert
        ("card-c", 59_999),
        ("card-c", 60_000),
        ("card-a", 65_000),
        ("card-a", 55_000), // late, within grace (closes at 70 s): a's 5th in [0, 60 s), alert
        ("card-b", 61_000),
        ("card-b", 62_000),
        ("card-a", 75_000),
        ("card-a", 30_000), // past grace: dropped
        ("card-c", 80_000),
        ("card-c", 90_000),
        ("card-c", 100_000), // c's 4th in [60 s, 120 s): alert
        ("card-d", 121_000),
        ("card-d", 130_000),
        ("card-d", 140_000),
        ("card-d", 150_000), // d's 4th in [120 s, 180 s): alert
        ("card-d", 200_000),
        ("card-d", 170_000), // past grace (closed at 190 s): dropped
    ];
    let input = payments
        .iter()
        .enumerate()
        .map(|(i, (card, ts))| {
            let payment = Payment {
                amount_cents: 1_000 + i as i64,
                merchant: format!("merchant-{}", i % 3),
            };
            (key(card), json(&payment), *ts)
        })
        .collect();
    broker.produce(PAYMENTS, input).await;

    let state = tempfile::tempdir().unwrap();
    let app = "fraud-test";
    let mut streams = start(
        fraud_detection::topology(),
        config(&broker.bootstrap, app, state.path()),
    )
    .await;
    broker.wait_until_committed(app, &[PAYMENTS], WAIT).await;
    let records = broker.read_all(FRAUD_ALERTS, WAIT).await;
    let mut alerts: Vec<Alert> = records
        .iter()
        .map(|r| {
            let alert: Alert = decode(r);
            assert_eq!(text(&r.key), alert.card, "alerts are keyed by card");
            alert
        })
        .collect();
    alerts.sort_by_key(|a| (a.card.clone(), a.window_start, a.payments));
    let alert = |card: &str, start: i64, payments: i64| Alert {
        card: card.into(),
        window_start: start,
        window_end: start + 60_000,
        payments,
    };
    assert_eq!(
        alerts,
        vec![
            alert("card-a", 0, 4),
            alert("card-a", 0, 5),
            alert("card-c", 60_000, 4),
            alert("card-d", 120_000, 4),
        ]
    );
    streams.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_dashboard_counts_views_per_page_and_window_as_they_arrive() {
    use live_dashboard::{PAGE_VIEWS, PAGE_VIEW_COUNTS};
    let broker = TestBroker::start().await;
    broker.create_topic(PAGE_VIEWS, 6).await;
    broker.create_topic(PAGE_VIEW_COUNTS, 6).await;
    let view = |user: &str, page: &str, ts: i64| (key(user), key(page), ts);
    let state = tempfile::tempdir().unwrap();
    let app = "dashboard-test";
    let mut streams = start(
        live_dashboard::topology(),
        config(&broker.bootstrap, app, state.path()),
    )
    .await;

    // Out of order but none late: the first window closes at 15 s (10 s + 5 s grace), after all of these.
    broker
        .produce(
            PAGE_VIEWS,
            vec![
                view("u1", "/home", 1_000),
                view("u2", "/home", 2_000),
                view("u3", "/cart", 3_000),
                view("u1", "/home", 12_000),
                view("u2", "/home", 4_000),
                view("u3", "/search", 9_999),
                view("u1", "/cart", 10_000),
                view("u2", "/search", 14_000),
                view("u3", "/home", 8_000),
            ],
        )
        .await;
    // /home's task sees 21 s: its [0, 10 s) window is closed, [10 s, 20 s) open until 25 s.
    broker
        .produce(PAGE_VIEWS, vec![view("u1", "/home", 21_000)])
        .await;
    broker
        .read_until(PAGE_VIEW_COUNTS, WAIT, |r| {
            r.iter().any(|r| text(&r.key) == "/home@20000")
        })
        .await;
    broker
        .produce(
            PAGE_VIEWS,
            vec![
                view("u1", "/home", 8_500),  // past grace: dropped
                view("u1", "/home", 17_000), // late, within grace
                view("u1", "/home", 22_000),
            ],
        )
        .await;

    let repartition = format!("{app}-{}-repartition", live_dashboard::COUNTS_STORE);
    broker
        .wait_until_committed(app, &[PAGE_VIEWS, &repartition], WAIT)
        .await;
    let mut updates: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in broker.read_all(PAGE_VIEW_COUNTS, WAIT).await {
        updates
            .entry(text(&r.key))
            .or_default()
            .push(long(&r.value));
    }
    let expected: BTreeMap<String, Vec<i64>> = [
        ("/home@0", vec![1, 2, 3, 4]),
        ("/home@10000", vec![1, 2]),
        ("/home@20000", vec![1, 2]),
        ("/cart@0", vec![1]),
        ("/cart@10000", vec![1]),
        ("/search@0", vec![1]),
        ("/search@10000", vec![1]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(updates, expected);
    streams.close().await;
}

/// Min, max, sum and count of readings: the test's own arithmetic, independent of the example's.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Agg {
    min: f64,
    max: f64,
    sum: f64,
    count: i64,
}

impl Agg {
    fn of(reading: f64) -> Self {
        Self {
            min: reading,
            max: reading,
            sum: reading,
            count: 1,
        }
    }

    fn add(&mut self, reading: f64) {
        self.min = self.min.min(reading);
        self.max = self.max.max(reading);
        self.sum += reading;
        self.count += 1;
    }

    /// The stats as a reader of the output topic sees them: serde_json parses a float to within one ulp of
    /// what it printed (without its `float_roundtrip` feature), so exact values go through JSON too.
    fn stats(&self) -> metric_aggregation::Stats {
        let exact = metric_aggregation::Stats {
            min: self.min,
            max: self.max,
            avg: self.sum / self.count as f64,
            count: self.count,
        };
        serde_json::from_slice(&serde_json::to_vec(&exact).unwrap()).unwrap()
    }
}

const SIZE_MS: i64 = 60_000;
const ADVANCE_MS: i64 = 10_000;
const GRACE_MS: i64 = 30_000;

/// The starts of the hopping windows that contain `ts`, earliest first.
fn window_starts(ts: i64) -> Vec<i64> {
    let last = ts - ts.rem_euclid(ADVANCE_MS);
    (0..SIZE_MS / ADVANCE_MS)
        .rev()
        .map(|k| last - k * ADVANCE_MS)
        // Windows start at 0 or later, as Kafka's.
        .filter(|start| *start >= 0)
        .collect()
}

/// Event time of the large tests' first reading: an hour in, so every reading counts in all six windows.
const EPOCH_MS: i64 = 3_600_000;

/// The windows each reading counts in, in processing order: a window closes once the largest timestamp seen
/// (by one clock for all hosts, or one per host) reaches its end plus grace.
fn metric_model(readings: &[(&str, i64, f64)], one_clock: bool) -> Vec<(String, f64)> {
    let mut clocks: BTreeMap<&str, i64> = BTreeMap::new();
    let mut applied = Vec::new();
    for (host, ts, reading) in readings {
        let clock = clocks
            .entry(if one_clock { "" } else { host })
            .or_insert(*ts);
        *clock = (*clock).max(*ts);
        for start in window_starts(*ts) {
            if start + SIZE_MS > *clock - GRACE_MS {
                applied.push((format!("{host}@{start}"), *reading));
            }
        }
    }
    applied
}

fn aggregate(applied: &[(String, f64)]) -> BTreeMap<String, Agg> {
    let mut out: BTreeMap<String, Agg> = BTreeMap::new();
    for (key, reading) in applied {
        out.entry(key.clone())
            .and_modify(|a| a.add(*reading))
            .or_insert_with(|| Agg::of(*reading));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_aggregation_keeps_min_max_avg_per_host_in_hopping_windows() {
    use metric_aggregation::{Stats, METRICS, METRIC_STATS};
    let broker = TestBroker::start().await;
    broker.create_topic(METRICS, 6).await;
    broker.create_topic(METRIC_STATS, 6).await;
    // Readings are small integers (sums exact in f64, in any order). Late ones are late by their own host's
    // clock, so the result does not depend on which hosts share a partition (checked below).
    let readings = [
        ("web-1", 0, 1.0),
        ("web-2", 5_000, 10.0),
        ("web-1", 10_000, 2.0),
        ("web-2", 15_000, 30.0),
        ("web-1", 20_000, 3.0),
        ("web-1", 65_000, 4.0),
        ("web-1", 25_000, 5.0), // closes at 35 s: out of its window [-30 s, 30 s), in the five others
        ("web-1", 2_000, 6.0),  // in [-20 s, 40 s), [-10 s, 50 s), [0, 60 s) only
        ("web-2", 70_000, 20.0),
        ("web-2", 8_000, 40.0), // closes at 40 s: in [-10 s, 50 s), [0, 60 s) only
        ("web-2", 300_000, 50.0),
        ("web-2", 100_000, 60.0), // closes at 270 s: every window of it closed, dropped
    ]
    // Times above are relative to an hour in, so windows "before 0" exist (Kafka's start at the epoch).
    .map(|(host, t, v)| (host, EPOCH_MS + t, v));
    let applied = metric_model(&readings, false);
    assert_eq!(
        applied,
        metric_model(&readings, true),
        "the input's late readings must be late whether or not the hosts share a partition"
    );
    let expected: BTreeMap<String, Stats> = aggregate(&applied)
        .into_iter()
        .map(|(k, a)| (k, a.stats()))
        .collect();
    assert_eq!(
        expected.len(),
        12 + 19,
        "web-1 counts in 12 windows, web-2 in 19"
    );
    let input = readings
        .iter()
        .map(|(host, ts, v)| {
            (
                key(host),
                Some(Bytes::copy_from_slice(&v.to_be_bytes())),
                *ts,
            )
        })
        .collect();
    broker.produce(METRICS, input).await;

    let state = tempfile::tempdir().unwrap();
    let app = "metrics-test";
    let mut streams = start(
        metric_aggregation::topology(),
        config(&broker.bootstrap, app, state.path()),
    )
    .await;
    broker.wait_until_committed(app, &[METRICS], WAIT).await;
    let records = broker.read_all(METRIC_STATS, WAIT).await;
    assert_eq!(
        records.len(),
        applied.len(),
        "one update per window a reading counts in"
    );
    let latest: BTreeMap<String, Stats> =
        records.iter().map(|r| (text(&r.key), decode(r))).collect();
    assert_eq!(latest, expected);
    streams.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrichment_joins_each_order_with_its_customer_as_of_then() {
    use enrichment::{
        Customer, EnrichedOrder, Order, CUSTOMERS, CUSTOMERS_STORE, ENRICHED_ORDERS, ORDERS,
    };
    let broker = TestBroker::start().await;
    for topic in [ORDERS, CUSTOMERS, ENRICHED_ORDERS] {
        broker.create_topic(topic, 6).await;
    }
    let state = tempfile::tempdir().unwrap();
    let app = "enrichment-test";
    let mut streams = start(
        enrichment::topology(),
        config(&broker.bootstrap, app, state.path()),
    )
    .await;
    let customer = |name: &str, tier: &str| Customer {
        name: name.into(),
        tier: tier.into(),
    };
    let order = |id: &str, amount_cents: i64| {
        json(&Order {
            order_id: id.into(),
            amount_cents,
        })
    };
    // Waits until the table holds exactly `expected` (the join reads it as of each order).
    let table_is = |expected: BTreeMap<String, Customer>| {
        let streams = &streams;
        async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let now: BTreeMap<String, Customer> = streams
                    .key_value_store::<String, Json<Customer>>(CUSTOMERS_STORE)
                    .unwrap()
                    .all()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                if now == expected {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline
                        && !matches!(streams.state(), State::Error(_)),
                    "customers table: {now:?}, expected {expected:?} ({:?})",
                    streams.state()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    let mut table = BTreeMap::new();
    for (id, name, tier) in [
        ("c-1", "Ada", "gold"),
        ("c-2", "Grace", "silver"),
        ("c-3", "Linus", "bronze"),
    ] {
        table.insert(id.to_string(), customer(name, tier));
        broker
            .produce(
                CUSTOMERS,
                vec![(key(id), json(&customer(name, tier)), 1_000)],
            )
            .await;
    }
    table_is(table.clone()).await;
    broker
        .produce(
            ORDERS,
            vec![
                (key("c-1"), order("o-1", 1_000), 2_000),
                (key("c-2"), order("o-2", 2_000), 2_001),
                (key("c-9"), order("o-3", 3_000), 2_002), // nobody knows c-9 yet
                (key("c-3"), order("o-4", 4_000), 2_003),
            ],
        )
        .await;
    broker.wait_until_committed(app, &[ORDERS], WAIT).await;

    // c-1 moves up a tier, c-2 is deleted (a tombstone), c-9 appears.
    broker
        .produce(
            CUSTOMERS,
            vec![
                (key("c-1"), json(&customer("Ada", "platinum")), 3_000),
                (key("c-2"), None, 3_000),
                (key("c-9"), json(&customer("Barbara", "gold")), 3_000),
            ],
        )
        .await;
    table.insert("c-1".into(), customer("Ada", "platinum"));
    table.remove("c-2");
    table.insert("c-9".into(), customer("Barbara", "gold"));
    table_is(table).await;
    broker
        .produce(
            ORDERS,
            vec![
                (key("c-1"), order("o-5", 5_000), 4_000),
                (key("c-2"), order("o-6", 6_000), 4_001),
                (key("c-9"), order("o-7", 7_000), 4_002),
            ],
        )
        .await;
    broker.wait_until_committed(app, &[ORDERS], WAIT).await;

    let mut enriched: Vec<EnrichedOrder> = broker
        .read_all(ENRICHED_ORDERS, WAIT)
        .await
        .iter()
        .map(|r| {
            let e: EnrichedOrder = decode(r);
            assert_eq!(text(&r.key), e.customer_id, "keyed by customer");
            e
        })
        .collect();
    enriched.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    let row = |order: &str, customer_id: &str, amount_cents: i64, who: Option<(&str, &str)>| {
        EnrichedOrder {
            order_id: order.into(),
            customer_id: customer_id.into(),
            amount_cents,
            customer: who.map(|(name, tier)| customer(name, tier)),
        }
    };
    assert_eq!(
        enriched,
        vec![
            row("o-1", "c-1", 1_000, Some(("Ada", "gold"))),
            row("o-2", "c-2", 2_000, Some(("Grace", "silver"))),
            row("o-3", "c-9", 3_000, None),
            row("o-4", "c-3", 4_000, Some(("Linus", "bronze"))),
            row("o-5", "c-1", 5_000, Some(("Ada", "platinum"))),
            row("o-6", "c-2", 6_000, None),
            row("o-7", "c-9", 7_000, Some(("Barbara", "gold"))),
        ]
    );
    streams.close().await;
}

const CHILD_BOOTSTRAP: &str = "STROM_STREAMS_CHILD_BOOTSTRAP";
const CHILD_STATE_DIR: &str = "STROM_STREAMS_CHILD_STATE_DIR";
const CHILD_APP_ID: &str = "STROM_STREAMS_CHILD_APP_ID";
const CHILD_TEST: &str = "metric_aggregation_child_process";

/// The child process of `metric_aggregation_recovers_from_sigkill_...`: runs the example's topology until it
/// is killed. Run on its own (without the child's environment), it returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_aggregation_child_process() {
    let (Ok(bootstrap), Ok(state_dir), Ok(app)) = (
        std::env::var(CHILD_BOOTSTRAP),
        std::env::var(CHILD_STATE_DIR),
        std::env::var(CHILD_APP_ID),
    ) else {
        return;
    };
    let c = config(&bootstrap, &app, Path::new(&state_dir));
    let mut streams = start(metric_aggregation::topology(), c).await;
    // Until killed; a child whose test is gone (its parent exited) stops by itself.
    let parent = std::os::unix::process::parent_id();
    while std::os::unix::process::parent_id() == parent {
        if let State::Error(e) = streams.state() {
            panic!("child application failed: {e}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    streams.close().await;
}

/// A child process running the metric aggregation; killed (SIGKILL) when dropped.
struct Child(std::process::Child);

impl Child {
    fn spawn(bootstrap: &str, state_dir: &Path, app: &str) -> Self {
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD_BOOTSTRAP, bootstrap)
            .env(CHILD_STATE_DIR, state_dir)
            .env(CHILD_APP_ID, app)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Self(child)
    }

    /// SIGKILL (what `Child::kill` sends on Unix): no commit, no flush, no leaving the group.
    fn kill(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_aggregation_recovers_from_sigkill_in_the_middle_of_its_input() {
    use metric_aggregation::{Stats, METRICS, METRIC_STATS};
    const HOSTS: usize = 200;
    const READINGS: usize = 100;
    const N: usize = HOSTS * READINGS;
    const CHUNK: usize = 100;
    // 1,000 readings a second: the application keeps up on a busy machine, so each poll brings what arrived
    // since the previous one (the consumer has no max.poll.records: a backlog would come in one poll).
    const PACE: Duration = Duration::from_millis(100);
    let broker = TestBroker::start().await;
    broker.create_topic(METRICS, 6).await;
    broker.create_topic(METRIC_STATS, 6).await;
    // Each host reports once per second of event time, timestamps increasing: nothing is late, every reading
    // counts in its six windows, so a run without a crash writes exactly 6 N updates.
    let mut readings = Vec::with_capacity(N);
    for i in 0..READINGS {
        for h in 0..HOSTS {
            let value = ((i * 7 + h * 13) % 101) as f64;
            readings.push((
                format!("host-{h:03}"),
                EPOCH_MS + (i * 1_000 + h) as i64,
                value,
            ));
        }
    }
    let no_crash_updates = 6 * N;

    let app = "metrics-kill";
    let state = tempfile::tempdir().unwrap();
    let mut child = Child::spawn(&broker.bootstrap, state.path(), app);
    let input: Vec<ProducerRecord> = readings
        .iter()
        .map(|(host, ts, v)| {
            ProducerRecord::new(METRICS)
                .key(host.clone())
                .value(v.to_be_bytes().to_vec())
                .timestamp(*ts)
        })
        .collect();
    let bootstrap = broker.bootstrap.clone();
    let produced = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let acknowledged = produced.clone();
    let producing = tokio::spawn(async move {
        let producer = Producer::new(ProducerConfig::new(&bootstrap))
            .await
            .unwrap();
        let mut pace = tokio::time::interval(PACE);
        for chunk in input.chunks(CHUNK) {
            pace.tick().await;
            let mut deliveries = Vec::new();
            for r in chunk {
                deliveries.push(producer.send(r.clone()).await.unwrap());
            }
            for d in deliveries {
                d.await.unwrap();
            }
            acknowledged.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
        }
        producer.close().await;
    });

    let deadline = tokio::time::Instant::now() + WAIT;
    let written = |ends: BTreeMap<i32, i64>| ends.values().sum::<i64>() as usize;
    // Killed once a quarter is through, at a moment it has written updates of readings it has not committed.
    loop {
        let n = written(broker.end_offsets(METRIC_STATS).await);
        let committed: i64 = broker.committed(app, METRICS).await.values().sum();
        if n >= no_crash_updates / 4 && n > 6 * committed as usize {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the child wrote {n} updates in {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill();
    let killed = tokio::time::Instant::now();
    // A chunk in flight may have reached the broker unacknowledged: one more chunk is an upper bound.
    let produced_at_kill = produced.load(std::sync::atomic::Ordering::Relaxed) + CHUNK;

    // The dead member leaves the group when its session times out; its last commit is final then.
    let admin = strom_client::admin::Admin::connect(&broker.bootstrap)
        .await
        .unwrap();
    while !admin.describe_group(app).await.unwrap().members.is_empty() {
        assert!(
            killed.elapsed() < WAIT,
            "the killed member is still in the group"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let committed = broker.committed(app, METRICS).await;
    let committed_total: i64 = committed.values().sum();
    let written_by_first = written(broker.end_offsets(METRIC_STATS).await);
    assert!(
        (committed_total as usize) < N,
        "killed after the end: {committed_total} of {N} readings committed"
    );

    let _second = Child::spawn(&broker.bootstrap, state.path(), app);
    let restarted_in = killed.elapsed();
    loop {
        let now: i64 = broker.committed(app, METRICS).await.values().sum();
        if now > committed_total {
            break;
        }
        assert!(
            killed.elapsed() < WAIT,
            "the second child committed nothing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resumed_in = killed.elapsed();
    producing.await.unwrap();
    broker.wait_until_committed(app, &[METRICS], WAIT).await;
    let caught_up_in = killed.elapsed();
    let records = broker.read_all(METRIC_STATS, WAIT).await;
    let observed: BTreeMap<String, Stats> =
        records.iter().map(|r| (text(&r.key), decode(r))).collect();

    // Outputs: those of the readings committed before the kill once, those of the rest once by the second
    // child, and the first child's outputs of readings past its last commit once more: nothing else repeats.
    let duplicates = records.len() - no_crash_updates;
    assert_eq!(duplicates, written_by_first - 6 * committed_total as usize);
    // Only readings that existed and were not committed can repeat. The first child keeps up with 1,000
    // readings a second and commits every 200 ms after the poll in progress, so those are the readings of
    // about one commit interval and a poll (300 at most in our runs, two suites at once included). 2,000
    // readings, 2 s of input or 10 commit intervals, leaves a slow machine ten times that; more would mean
    // commits that do not happen.
    let uncommitted = produced_at_kill - committed_total as usize;
    assert!(
        duplicates <= 6 * uncommitted.min(2_000),
        "{duplicates} duplicate updates; {uncommitted} readings were uncommitted at the kill"
    );

    // Each window's readings (one host, so one partition) in offset order.
    let mut windows: BTreeMap<String, (i32, Vec<(i64, f64)>)> = BTreeMap::new();
    for r in broker.read_all(METRICS, WAIT).await {
        let reading = f64::from_be_bytes(r.value.as_deref().unwrap().try_into().unwrap());
        for start in window_starts(r.timestamp) {
            let w = windows
                .entry(format!("{}@{start}", text(&r.key)))
                .or_insert_with(|| (r.partition, Vec::new()));
            w.1.push((r.offset, reading));
        }
    }
    assert_eq!(
        observed.keys().collect::<Vec<_>>(),
        windows.keys().collect::<Vec<_>>(),
        "no window lost, none invented"
    );
    // State: every window holds each of its readings exactly once. The restarted task replays its changelogs
    // only up to the offsets its last commit recorded, so the updates of readings processed after that commit
    // are not in its stores when those readings are processed again.
    for (key, (_, readings)) in &mut windows {
        readings.sort_by_key(|(offset, _)| *offset);
        let mut agg = Agg::of(readings[0].1);
        for (_, reading) in &readings[1..] {
            agg.add(*reading);
        }
        assert_eq!(observed[key], agg.stats(), "{key}: {readings:?}");
    }
    println!(
        "kill -9: {N} readings, {no_crash_updates} updates without a crash; killed after {written_by_first} \
         updates with {committed_total} readings committed; {} updates in the end: {duplicates} duplicates \
         ({} readings' worth), final state of all {} windows exact; second child started {:.1} s after the kill (the dead member's session \
         timeout), committed new progress {:.1} s after it started, caught up with the input {:.1} s after the \
         kill",
        records.len(),
        duplicates / 6,
        observed.len(),
        restarted_in.as_secs_f64(),
        (resumed_in - restarted_in).as_secs_f64(),
        caught_up_in.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_aggregation_fails_over_cleanly_to_the_other_instance_with_the_same_results() {
    use metric_aggregation::{Stats, METRICS, METRIC_STATS};
    const HOSTS: usize = 50;
    const READINGS: usize = 100;
    let broker = TestBroker::start().await;
    broker.create_topic(METRICS, 6).await;
    broker.create_topic(METRIC_STATS, 6).await;
    let mut readings = Vec::new();
    for i in 0..READINGS {
        for h in 0..HOSTS {
            let value = ((i * 11 + h * 5) % 97) as f64;
            readings.push((
                format!("host-{h:02}"),
                EPOCH_MS + (i * 1_000 + h) as i64,
                value,
            ));
        }
    }
    let updates: Vec<(String, f64)> = readings
        .iter()
        .flat_map(|(h, ts, v)| {
            window_starts(*ts)
                .into_iter()
                .map(move |s| (format!("{h}@{s}"), *v))
        })
        .collect();
    let expected: BTreeMap<String, Stats> = aggregate(&updates)
        .into_iter()
        .map(|(k, a)| (k, a.stats()))
        .collect();

    let app = "metrics-failover";
    let (s1, s2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut stays = start(
        metric_aggregation::topology(),
        config(&broker.bootstrap, app, s1.path()),
    )
    .await;
    let mut leaves = start(
        metric_aggregation::topology(),
        config(&broker.bootstrap, app, s2.path()),
    )
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while stays.local_partitions().is_empty() || leaves.local_partitions().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "tasks not split: {:?} / {:?}",
            stays.local_partitions(),
            leaves.local_partitions()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Half the input before the second instance leaves, half after: it stops in the middle of the stream.
    let input = |rs: &[(String, i64, f64)]| {
        rs.iter()
            .map(|(h, ts, v)| (key(h), Some(Bytes::copy_from_slice(&v.to_be_bytes())), *ts))
            .collect()
    };
    let (first, second) = readings.split_at(readings.len() / 2);
    broker.produce(METRICS, input(first)).await;
    broker
        .read_until(METRIC_STATS, WAIT, |r| r.len() >= first.len())
        .await;
    leaves.close().await;
    broker.produce(METRICS, input(second)).await;
    broker.wait_until_committed(app, &[METRICS], WAIT).await;
    let records = broker.read_all(METRIC_STATS, WAIT).await;
    let observed: BTreeMap<String, Stats> =
        records.iter().map(|r| (text(&r.key), decode(r))).collect();
    // A clean close commits what was processed and the survivor restores exactly that state: no reading is
    // applied twice and no update is written twice.
    assert_eq!(observed, expected);
    assert_eq!(records.len(), updates.len(), "no duplicate updates");
    stays.close().await;
}
