//! The KIP-848 consumer group protocol with a real client: librdkafka (2.12.1, bundled by the rdkafka crate)
//! with `group.protocol=consumer`. Members join by heartbeating and the broker assigns partitions; a member
//! joining or leaving moves only the partitions that must move.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use common::group::{produce, wait_processed, Processed, Tracker, TrackingContext};
use common::{client_config, TestBroker};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;

fn broker() -> TestBroker {
    // A short heartbeat interval: reconciliation advances one heartbeat at a time.
    TestBroker::start_with(|c| c.group_consumer_heartbeat_interval_ms = 300)
}

/// A consumer-protocol member processing and committing every record in its own thread.
struct Member {
    tracker: Arc<Tracker>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Member {
    fn start(id: usize, bootstrap: &str, group: &str, topic: &str, processed: Processed) -> Self {
        let tracker = Arc::new(Tracker::default());
        let stop = Arc::new(AtomicBool::new(false));
        let consumer: BaseConsumer<TrackingContext> = client_config(bootstrap)
            .set("group.id", group)
            .set("group.protocol", "consumer")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
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
                                .commit_message(&m, CommitMode::Sync)
                                .expect("commit");
                        }
                        Some(Err(e)) => panic!("member {id}: {e}"),
                        None => {}
                    }
                }
                consumer.unsubscribe();
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

fn wait_for(members: &[&Member], what: &str, done: impl Fn(&[BTreeSet<i32>]) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let current: Vec<BTreeSet<i32>> = members.iter().map(|m| m.tracker.assigned()).collect();
        if done(&current) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
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

fn unique(processed: &Processed) -> BTreeSet<(i32, i64)> {
    processed
        .lock()
        .unwrap()
        .iter()
        .map(|(_, p, o, _)| (*p, *o))
        .collect()
}

#[test]
fn three_members_get_two_partitions_each_and_process_every_record_once() {
    let broker = broker();
    broker.create_topic("work", 6, &[]);
    let processed: Processed = Arc::default();
    let members: Vec<Member> = (0..3)
        .map(|i| Member::start(i, &broker.bootstrap(), "kip848", "work", processed.clone()))
        .collect();
    let refs: Vec<&Member> = members.iter().collect();
    wait_for(&refs, "2 partitions each", |a| {
        a.iter().all(|s| s.len() == 2)
    });
    let all: BTreeSet<i32> = members.iter().flat_map(|m| m.tracker.assigned()).collect();
    assert_eq!(all, (0..6).collect(), "every partition has one owner");

    let groups = broker
        .consumer(&[])
        .fetch_group_list(Some("kip848"), Duration::from_secs(10))
        .expect("list groups");
    let group = &groups.groups()[0];
    assert_eq!(group.protocol_type(), "consumer");
    assert_eq!(group.state(), "Stable");

    produce(&broker.bootstrap(), "work", 6, 1000);
    wait_processed(&processed, 6000);
    drop(members);
    assert_eq!(unique(&processed).len(), 6000);
    assert_eq!(
        processed.lock().unwrap().len(),
        6000,
        "no record processed twice"
    );
}

#[test]
fn a_joining_member_takes_only_the_partitions_that_move() {
    let broker = broker();
    broker.create_topic("moves", 6, &[]);
    let processed: Processed = Arc::default();
    let first = Member::start(0, &broker.bootstrap(), "movers", "moves", processed.clone());
    wait_for(&[&first], "all 6 on the first member", |a| a[0].len() == 6);
    let second = Member::start(1, &broker.bootstrap(), "movers", "moves", processed.clone());
    wait_for(&[&first, &second], "3 + 3", |a| {
        a[0].len() == 3 && a[1].len() == 3
    });
    let revocations = first.tracker.revocations();
    assert!(!revocations.is_empty());
    for revoked in &revocations {
        assert!(
            revoked.len() <= 3,
            "only moving partitions revoked: {revoked:?}"
        );
    }
    let kept = first.tracker.assigned();
    let moved = second.tracker.assigned();
    assert!(kept.is_disjoint(&moved));
}

#[test]
fn a_leaving_member_hands_its_partitions_over() {
    let broker = broker();
    broker.create_topic("handover", 4, &[]);
    let processed: Processed = Arc::default();
    let stays = Member::start(
        0,
        &broker.bootstrap(),
        "handover",
        "handover",
        processed.clone(),
    );
    let mut goes = Member::start(
        1,
        &broker.bootstrap(),
        "handover",
        "handover",
        processed.clone(),
    );
    wait_for(&[&stays, &goes], "2 + 2", |a| {
        a[0].len() == 2 && a[1].len() == 2
    });
    goes.stop();
    wait_for(&[&stays], "all 4 on the remaining member", |a| {
        a[0].len() == 4
    });
    produce(&broker.bootstrap(), "handover", 4, 50);
    wait_processed(&processed, 200);
    assert_eq!(unique(&processed).len(), 200);
}

#[test]
fn committed_offsets_resume_in_a_new_member() {
    let broker = broker();
    broker.create_topic("resume", 2, &[]);
    produce(&broker.bootstrap(), "resume", 2, 100);
    let processed: Processed = Arc::default();
    let mut first = Member::start(
        0,
        &broker.bootstrap(),
        "resumers",
        "resume",
        processed.clone(),
    );
    wait_processed(&processed, 200);
    first.stop();
    produce(&broker.bootstrap(), "resume", 2, 30);
    let later: Processed = Arc::default();
    let _second = Member::start(1, &broker.bootstrap(), "resumers", "resume", later.clone());
    wait_processed(&later, 60);
    let offsets: BTreeSet<i64> = later
        .lock()
        .unwrap()
        .iter()
        .map(|(_, _, o, _)| *o)
        .collect();
    assert!(
        offsets.iter().all(|o| *o >= 100),
        "resumed after the commits: {offsets:?}"
    );
    assert_eq!(later.lock().unwrap().len(), 60);
}
