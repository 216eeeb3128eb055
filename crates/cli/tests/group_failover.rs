//! A group member that dies without leaving (kafka-python in a child process, `kill -9`): within its session
//! timeout the surviving librdkafka member owns every partition and continues from the committed offsets —
//! nothing committed is processed again and nothing is skipped.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::group::{produce, wait_for_assignments, Member, Processed};
use common::TestBroker;

/// What the child member printed, line by line.
#[derive(Default)]
struct ChildLog {
    processed: BTreeMap<i32, Vec<i64>>,
    committed: BTreeMap<i32, i64>,
    assigned: BTreeSet<i32>,
}

#[test]
fn a_killed_member_s_partitions_move_to_the_survivor_from_the_committed_offsets() {
    let broker = TestBroker::start_with(|c| c.group_initial_rebalance_delay_ms = 200);
    broker.create_topic("failover", 4, &[]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/kafka_python_group_member.py"
    );
    let mut child = Command::new("python3")
        .args([
            script,
            &broker.bootstrap(),
            "failover-group",
            "failover",
            "20",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs (kafka-python 3.0.12 is installed by .ci/run)");
    let log: Arc<Mutex<ChildLog>> = Arc::default();
    let (line_tx, line_rx) = mpsc::channel::<String>();
    {
        let log = log.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let words: Vec<&str> = line.split_whitespace().collect();
                let mut log = log.lock().unwrap();
                match words.as_slice() {
                    ["ASSIGNED"] => log.assigned.clear(),
                    ["ASSIGNED", parts] => {
                        log.assigned = parts.split(',').filter_map(|p| p.parse().ok()).collect()
                    }
                    ["PROCESSED", p, o] => log
                        .processed
                        .entry(p.parse().unwrap())
                        .or_default()
                        .push(o.parse().unwrap()),
                    ["COMMITTED", p, o] => {
                        log.committed.insert(p.parse().unwrap(), o.parse().unwrap());
                    }
                    _ => {}
                }
                drop(log);
                let _ = line_tx.send(line);
            }
        });
    }

    let processed: Processed = Arc::default();
    let survivor = Member::start(
        0,
        &broker.bootstrap(),
        "failover-group",
        "failover",
        &[],
        processed.clone(),
    );
    // Wait until the group settled with two partitions on each member.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let child_has_two = log.lock().unwrap().assigned.len() == 2;
        if child_has_two && survivor.tracker.assigned().len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "group did not settle: survivor {:?}",
            survivor.tracker.assigned()
        );
        let _ = line_rx.recv_timeout(Duration::from_millis(100));
    }
    let child_partitions = log.lock().unwrap().assigned.clone();

    produce(&broker.bootstrap(), "failover", 4, 50);
    // Let the child commit part of its share, then kill it without a LeaveGroup.
    let deadline = Instant::now() + Duration::from_secs(60);
    while log.lock().unwrap().committed.values().sum::<i64>() < 20 {
        assert!(
            Instant::now() < deadline,
            "the child member committed nothing"
        );
        let _ = line_rx.recv_timeout(Duration::from_millis(100));
    }
    child.kill().expect("SIGKILL the child member");
    child.wait().unwrap();
    let killed_at = Instant::now();

    wait_for_assignments(&[&survivor], "all 4 partitions on the survivor", |a| {
        a[0].len() == 4
    });
    let takeover = killed_at.elapsed();
    assert!(
        takeover < Duration::from_secs(30),
        "took over in {takeover:?}"
    );

    // The survivor reads each partition to its end (50 records each).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = {
            let processed = processed.lock().unwrap();
            child_partitions
                .iter()
                .all(|p| processed.iter().any(|(_, q, o, _)| q == p && *o == 49))
        };
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "survivor did not finish the killed member's partitions"
        );
        std::thread::park_timeout(Duration::from_millis(50));
    }
    drop(survivor);

    let log = log.lock().unwrap();
    let processed = processed.lock().unwrap();
    for p in &child_partitions {
        let committed = log.committed.get(p).copied().unwrap_or(0);
        let child_max = log
            .processed
            .get(p)
            .and_then(|o| o.iter().max().copied())
            .unwrap_or(-1);
        let survivor_offsets: BTreeSet<i64> = processed
            .iter()
            .filter(|(_, q, _, _)| q == p)
            .map(|(_, _, o, _)| *o)
            .collect();
        let first = *survivor_offsets
            .first()
            .expect("survivor processed the partition");
        assert!(
            first >= committed,
            "partition {p}: offset {first} was committed by the killed member, yet re-delivered"
        );
        assert!(
            first <= child_max + 1,
            "partition {p}: survivor started at {first}, skipping after {child_max}"
        );
        assert_eq!(
            survivor_offsets,
            (first..50).collect(),
            "partition {p}: no gaps"
        );
    }
}
