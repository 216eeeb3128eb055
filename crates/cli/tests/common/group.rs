//! Consumer-group members for tests: librdkafka consumers in their own threads that record what they process and
//! every rebalance they see.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::{client_config, delivered, enqueue};

/// What one member saw: its current assignment and every revocation.
#[derive(Default)]
pub struct Tracker {
    pub state: Mutex<TrackerState>,
    pub changed: Condvar,
}

#[derive(Default)]
pub struct TrackerState {
    pub assigned: BTreeSet<i32>,
    pub revocations: Vec<BTreeSet<i32>>,
}

impl Tracker {
    pub fn assigned(&self) -> BTreeSet<i32> {
        self.state.lock().unwrap().assigned.clone()
    }

    pub fn revocations(&self) -> Vec<BTreeSet<i32>> {
        self.state.lock().unwrap().revocations.clone()
    }
}

pub struct TrackingContext(pub Arc<Tracker>);

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
pub type Processed = Arc<Mutex<Vec<(usize, i32, i64, String)>>>;

pub struct Member {
    pub tracker: Arc<Tracker>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Member {
    /// A group member that processes every record and commits it (asynchronously) right after.
    pub fn start(
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
                                .or_else(|e| if is_transient(&e) { Ok(()) } else { Err(e) })
                                .expect("commit");
                        }
                        // Losing the broker (a restart) is reported and recovered from by librdkafka itself.
                        Some(Err(e)) if is_transient(&e) => {}
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

    pub fn stop(&mut self) {
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
pub fn wait_for_assignments(
    members: &[&Member],
    what: &str,
    done: impl Fn(&[BTreeSet<i32>]) -> bool,
) {
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

pub fn produce(bootstrap: &str, topic: &str, partitions: i32, per_partition: usize) {
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

pub fn wait_processed(processed: &Processed, count: usize) {
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

fn is_transient(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode::{AllBrokersDown, BrokerTransportFailure};
    matches!(
        e.rdkafka_error_code(),
        Some(AllBrokersDown | BrokerTransportFailure)
    )
}
