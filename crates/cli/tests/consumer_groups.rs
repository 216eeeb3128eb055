//! Consumer groups with real clients: librdkafka members sharing partitions, groups reading independently,
//! committed offsets surviving `kill -9` of the broker, cooperative and static membership.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::process::BrokerProcess;
use common::{client_config, delivered, enqueue, TestBroker};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// What one member saw: its current assignment and every revocation.
#[derive(Default)]
struct Tracker {
    state: Mutex<TrackerState>,
    changed: Condvar,
}

#[derive(Default)]
struct TrackerState {
    assigned: BTreeSet<i32>,
    revocations: Vec<BTreeSet<i32>>,
}

impl Tracker {
    fn assigned(&self) -> BTreeSet<i32> {
        self.state.lock().unwrap().assigned.clone()
    }

    fn revocations(&self) -> Vec<BTreeSet<i32>> {
        self.state.lock().unwrap().revocations.clone()
    }
}

struct TrackingContext(Arc<Tracker>);

impl ClientContext for TrackingContext {}

impl ConsumerContext for TrackingContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut state = self.0.state.lock().unwrap();
        match rebalance {
            Rebalance::Assign(tpl) => state
                .assigned
                .extend(tpl.elements().iter().map(|e| e.partition())),
            Rebalance::Revoke(tpl) => {
                let revoked: BTreeSet<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                state.assigned.retain(|p| !revoked.contains(p));
                state.revocations.push(revoked);
            }
            Rebalance::Error(e) => panic!("rebalance error: {e}"),
        }
        self.0.changed.notify_all();
    }
}

/// (member, partition, offset, value) of every record processed.
type Processed = Arc<Mutex<Vec<(usize, i32, i64, String)>>>;

struct Member {
    tracker: Arc<Tracker>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Member {
    /// A group member that processes every record and commits it (asynchronously) right after.
    fn start(
        id: usize,
        bootstrap: &str,
        group: &str,
        topic: &str,
        extra: &[(&str, &str)],
        processed: Processed,
    ) -> Self {
        let tracker = Arc::new(Tracker::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut config = client_config(bootstrap);
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500");
        for (k, v) in extra {
            config.set(*k, *v);
        }
        let consumer: BaseConsumer<TrackingContext> = config
            .create_with_context(TrackingContext(tracker.clone()))
            .expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match consumer.poll(Duration::from_millis(50)) {
                        Some(Ok(m)) => {
                            let value = String::from_utf8_lossy(m.payload().unwrap_or_default())
                                .to_string();
                            processed
                                .lock()
                                .unwrap()
                                .push((id, m.partition(), m.offset(), value));
                            consumer
                                .commit_message(&m, CommitMode::Async)
                                .expect("commit");
                        }
                        Some(Err(e)) => panic!("member {id}: {e}"),
                        None => {}
                    }
                }
                let _ = consumer.commit_consumer_state(CommitMode::Sync);
            })
        };
        Self {
            tracker,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("member thread");
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits (on the members' rebalance notifications) until `done` holds for their assignments.
fn wait_for_assignments(members: &[&Member], what: &str, done: impl Fn(&[BTreeSet<i32>]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let current: Vec<BTreeSet<i32>> = members.iter().map(|m| m.tracker.assigned()).collect();
        if done(&current) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; assignments: {current:?}"
        );
        let t = &members[0].tracker;
        let guard = t.state.lock().unwrap();
        let _ = t
            .changed
            .wait_timeout(guard, Duration::from_millis(100))
            .unwrap();
    }
}

fn produce(bootstrap: &str, topic: &str, partitions: i32, per_partition: usize) {
    let producer: FutureProducer = client_config(bootstrap)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let futures: Vec<_> = (0..partitions)
        .flat_map(|p| (0..per_partition).map(move |i| (p, i)))
        .map(|(p, i)| {
            enqueue(
                &producer,
                FutureRecord::to(topic)
                    .partition(p)
                    .key("k")
                    .payload(&format!("{p}-{i}")),
            )
        })
        .collect();
    for f in futures {
        delivered(f).expect("delivered");
    }
}

fn wait_processed(processed: &Processed, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while processed.lock().unwrap().len() < count {
        assert!(
            Instant::now() < deadline,
            "processed {} of {count}",
            processed.lock().unwrap().len()
        );
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

fn broker_for_groups() -> TestBroker {
    TestBroker::start_with(|c| c.group_initial_rebalance_delay_ms = 200)
}

#[test]
fn three_members_own_two_partitions_each_and_process_every_record_once() {
    let broker = broker_for_groups();
    broker.create_topic("work", 6, &[]);
    let processed: Processed = Arc::default();
    let members: Vec<Member> = (0..3)
        .map(|i| {
            Member::start(
                i,
                &broker.bootstrap(),
                "workers",
                "work",
                &[],
                processed.clone(),
            )
        })
        .collect();
    let refs: Vec<&Member> = members.iter().collect();
    wait_for_assignments(&refs, "2 partitions each", |a| {
        a.iter().all(|s| s.len() == 2)
    });
    let all: BTreeSet<i32> = members.iter().flat_map(|m| m.tracker.assigned()).collect();
    assert_eq!(
        all,
        (0..6).collect(),
        "every partition has exactly one owner"
    );

    produce(&broker.bootstrap(), "work", 6, 1000);
    wait_processed(&processed, 6000);
    drop(members);
    let processed = processed.lock().unwrap();
    let unique: BTreeSet<(i32, i64)> = processed.iter().map(|(_, p, o, _)| (*p, *o)).collect();
    assert_eq!(unique.len(), 6000);
    assert_eq!(processed.len(), 6000, "no record processed twice");
}

#[test]
fn two_groups_read_the_same_topic_independently() {
    let broker = broker_for_groups();
    broker.create_topic("shared", 3, &[]);
    produce(&broker.bootstrap(), "shared", 3, 100);
    let orders: Processed = Arc::default();
    let analytics: Processed = Arc::default();
    let a = Member::start(
        0,
        &broker.bootstrap(),
        "orders",
        "shared",
        &[],
        orders.clone(),
    );
    let b = Member::start(
        1,
        &broker.bootstrap(),
        "analytics",
        "shared",
        &[],
        analytics.clone(),
    );
    wait_processed(&orders, 300);
    wait_processed(&analytics, 300);
    drop((a, b));
    for processed in [orders, analytics] {
        let seen: BTreeSet<(i32, i64)> = processed
            .lock()
            .unwrap()
            .iter()
            .map(|(_, p, o, _)| (*p, *o))
            .collect();
        assert_eq!(seen.len(), 300);
    }
}

#[test]
fn cooperative_sticky_members_keep_the_partitions_that_do_not_move() {
    let broker = broker_for_groups();
    broker.create_topic("sticky", 4, &[]);
    let processed: Processed = Arc::default();
    let cooperative = [("partition.assignment.strategy", "cooperative-sticky")];
    let first = Member::start(
        0,
        &broker.bootstrap(),
        "coop",
        "sticky",
        &cooperative,
        processed.clone(),
    );
    wait_for_assignments(&[&first], "all 4 partitions on the first member", |a| {
        a[0].len() == 4
    });
    let second = Member::start(
        1,
        &broker.bootstrap(),
        "coop",
        "sticky",
        &cooperative,
        processed.clone(),
    );
    wait_for_assignments(&[&first, &second], "2 + 2", |a| {
        a[0].len() == 2 && a[1].len() == 2
    });
    let revocations = first.tracker.revocations();
    assert!(!revocations.is_empty());
    for revoked in revocations {
        assert!(
            revoked.len() <= 2,
            "cooperative rebalancing revoked only moving partitions, got {revoked:?}"
        );
    }
}

#[test]
fn a_static_member_that_restarts_in_time_causes_no_rebalance() {
    let broker = broker_for_groups();
    broker.create_topic("static", 4, &[]);
    let processed: Processed = Arc::default();
    let steady = Member::start(
        0,
        &broker.bootstrap(),
        "statics",
        "static",
        &[("group.instance.id", "steady")],
        processed.clone(),
    );
    let mut restarting = Member::start(
        1,
        &broker.bootstrap(),
        "statics",
        "static",
        &[("group.instance.id", "restarting")],
        processed.clone(),
    );
    wait_for_assignments(&[&steady, &restarting], "2 + 2", |a| {
        a[0].len() == 2 && a[1].len() == 2
    });
    let before = restarting.tracker.assigned();
    let steady_revocations = steady.tracker.revocations().len();
    // A static member leaving without LeaveGroup (librdkafka does not send one for static members) and coming back
    // with the same group.instance.id inside its session timeout gets its partitions back without a rebalance.
    restarting.stop();
    let again = Member::start(
        2,
        &broker.bootstrap(),
        "statics",
        "static",
        &[("group.instance.id", "restarting")],
        processed.clone(),
    );
    wait_for_assignments(&[&again], "the same partitions back", |a| a[0] == before);
    assert_eq!(
        steady.tracker.revocations().len(),
        steady_revocations,
        "the other member saw no rebalance"
    );
}

#[test]
fn committed_offsets_survive_kill_9_of_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let args = |dir: &std::path::Path| -> Vec<std::ffi::OsString> {
        vec![
            "--data-dir".into(),
            dir.as_os_str().into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--set".into(),
            "group.initial.rebalance.delay.ms=0".into(),
        ]
    };
    let spawn = |dir: &std::path::Path| {
        let args = args(dir);
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        BrokerProcess::spawn(&refs)
    };
    let broker = spawn(dir.path());
    let bootstrap = broker.addr.to_string();
    produce(&bootstrap, "resume", 1, 100);
    {
        let consumer: BaseConsumer = client_config(&bootstrap)
            .set("group.id", "resumers")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&["resume"]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "no record consumed");
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m.unwrap();
                if m.offset() == 59 {
                    consumer.commit_message(&m, CommitMode::Sync).unwrap();
                    break;
                }
            }
        }
    }
    broker.kill_9();

    let broker = spawn(dir.path());
    let bootstrap = broker.addr.to_string();
    let consumer: BaseConsumer = client_config(&bootstrap)
        .set("group.id", "resumers")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["resume"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        assert!(
            Instant::now() < deadline,
            "no record consumed after restart"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            break m.unwrap().offset();
        }
    };
    assert_eq!(
        first, 60,
        "the new member resumes exactly at the committed offset"
    );
    let committed = consumer.committed(Duration::from_secs(10)).unwrap();
    let offsets: BTreeMap<i32, rdkafka::Offset> = committed
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset()))
        .collect();
    assert_eq!(offsets.get(&0), Some(&rdkafka::Offset::Offset(60)));
}
