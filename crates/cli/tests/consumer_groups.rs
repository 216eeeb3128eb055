//! Consumer groups with real clients: librdkafka members sharing partitions, groups reading independently,
//! committed offsets surviving `kill -9` of the broker, cooperative and static membership.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::group::{produce, wait_for_assignments, wait_processed, Member, Processed};
use common::process::BrokerProcess;
use common::{client_config, TestBroker};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;

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
    // "In time" is within the session timeout. Kafka's default of 45 s rather than the members' usual 6 s: the
    // restart below (closing one librdkafka consumer, starting another, joining) must fit in it even on a busy
    // machine, and nothing here waits for a session to expire.
    let session = ("session.timeout.ms", "45000");
    let steady = Member::start(
        0,
        &broker.bootstrap(),
        "statics",
        "static",
        &[("group.instance.id", "steady"), session],
        processed.clone(),
    );
    let mut restarting = Member::start(
        1,
        &broker.bootstrap(),
        "statics",
        "static",
        &[("group.instance.id", "restarting"), session],
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
        &[("group.instance.id", "restarting"), session],
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

#[test]
fn auto_commit_consumers_resume_where_the_group_left_off() {
    let broker = broker_for_groups();
    produce(&broker.bootstrap(), "auto", 1, 50);
    let consumer = |bootstrap: &str| -> BaseConsumer {
        let consumer: BaseConsumer = client_config(bootstrap)
            .set("group.id", "auto-committers")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "100")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&["auto"]).unwrap();
        consumer
    };
    let first = consumer(&broker.bootstrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = 0;
    while seen < 50 {
        assert!(Instant::now() < deadline, "consumed {seen} of 50");
        if let Some(m) = first.poll(Duration::from_millis(100)) {
            m.unwrap();
            seen += 1;
        }
    }
    // Closing the consumer commits the last positions (librdkafka commits on close when auto-commit is on).
    drop(first);
    let state = broker.broker().state();
    let lag =
        strom_broker::offsets::lag::group_lag(&state.topics, &state.offsets, "auto-committers");
    assert_eq!((lag[0].committed, lag[0].lag), (50, 0));

    produce(&broker.bootstrap(), "auto", 1, 10);
    let second = consumer(&broker.bootstrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let first_offset = loop {
        assert!(Instant::now() < deadline, "nothing consumed after resuming");
        if let Some(m) = second.poll(Duration::from_millis(100)) {
            break m.unwrap().offset();
        }
    };
    assert_eq!(first_offset, 50);
}

#[test]
fn a_group_re_forms_after_a_broker_restart_and_finishes_the_work() {
    let temp = tempfile::tempdir().unwrap();
    // Declared before the members so that it is dropped after them, when the test fails too: dropping a
    // librdkafka group consumer closes it, and that close can wait forever for a group coordinator that is gone.
    let restarted: TestBroker;
    let broker = TestBroker::start_in(temp.path(), |c| c.group_initial_rebalance_delay_ms = 200);
    let addr = broker.addr;
    broker.create_topic("restarting", 2, &[]);
    produce(&broker.bootstrap(), "restarting", 2, 100);
    let processed: Processed = Arc::default();
    let members: Vec<Member> = (0..2)
        .map(|i| {
            Member::start(
                i,
                &broker.bootstrap(),
                "restart-group",
                "restarting",
                &[],
                processed.clone(),
            )
        })
        .collect();
    wait_processed(&processed, 200);
    let committed_before = {
        let state = broker.broker().state();
        // Async commits may still be in flight; what is committed now must not be lost by the restart.
        strom_broker::offsets::lag::group_lag(&state.topics, &state.offsets, "restart-group")
    };
    drop(broker.stop());
    // Same address, same data: the members reconnect on their own, get UNKNOWN_MEMBER_ID and rejoin.
    restarted = TestBroker::start_at(temp.path(), addr, |c| {
        c.group_initial_rebalance_delay_ms = 200
    });
    let broker = &restarted;
    let state = broker.broker().state();
    let after_restart =
        strom_broker::offsets::lag::group_lag(&state.topics, &state.offsets, "restart-group");
    for before in &committed_before {
        let now = after_restart
            .iter()
            .find(|l| l.partition == before.partition)
            .expect("offsets survived");
        assert!(now.committed >= before.committed);
    }
    produce(&broker.bootstrap(), "restarting", 2, 50);
    let refs: Vec<&Member> = members.iter().collect();
    wait_for_assignments(&refs, "one partition each again", |a| {
        a.iter().all(|s| s.len() == 1)
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen: BTreeSet<(i32, i64)> = processed
            .lock()
            .unwrap()
            .iter()
            .map(|(_, p, o, _)| (*p, *o))
            .collect();
        if seen.len() == 300 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processed {} distinct records of 300",
            seen.len()
        );
        std::thread::park_timeout(Duration::from_millis(50));
    }
}
