//! A group member that dies without leaving (kafka-python in a child process, `kill -9`): within its session
//! timeout the surviving librdkafka member owns every partition and continues from the committed offsets —
//! nothing committed is processed again, the record processed but not committed is processed again, and nothing
//! is skipped.

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::group::{produce, wait_for_assignments, Member, Processed};
use common::TestBroker;

/// How long any one step may take. Each step waits on its event; this only bounds a step that never happens.
const STEP_DEADLINE: Duration = Duration::from_secs(60);

/// Records the child commits before it stops (its share is 100).
const STOP_AFTER: usize = 20;

/// What the child member printed, line by line.
#[derive(Default)]
struct ChildLog {
    processed: BTreeMap<i32, Vec<i64>>,
    committed: BTreeMap<i32, i64>,
    assigned: BTreeSet<i32>,
    /// The record it processed and then stopped without committing.
    stopped_at: Option<(i32, i64)>,
    last_processed: Option<(i32, i64)>,
    /// The latest lines, for failure messages.
    recent: VecDeque<String>,
}

impl ChildLog {
    fn record(&mut self, line: &str) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["ASSIGNED"] => self.assigned.clear(),
            ["ASSIGNED", parts] => {
                self.assigned = parts.split(',').filter_map(|p| p.parse().ok()).collect()
            }
            ["PROCESSED", p, o] => {
                let (p, o) = (p.parse().unwrap(), o.parse().unwrap());
                self.processed.entry(p).or_default().push(o);
                self.last_processed = Some((p, o));
            }
            ["COMMITTED", p, o] => {
                self.committed
                    .insert(p.parse().unwrap(), o.parse().unwrap());
            }
            ["STOPPED"] => self.stopped_at = self.last_processed,
            _ => {}
        }
        if self.recent.len() == 10 {
            self.recent.pop_front();
        }
        self.recent.push_back(line.to_string());
    }
}

/// The kafka-python member (`tests/clients/kafka_python_group_member.py`) in its child process.
struct ChildMember {
    child: Child,
    log: Arc<Mutex<ChildLog>>,
    /// One message per line printed, so waiters wake on what the child does.
    lines: mpsc::Receiver<()>,
    stderr: Option<JoinHandle<String>>,
}

impl ChildMember {
    fn spawn(bootstrap: &str, group: &str, topic: &str) -> Self {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/kafka_python_group_member.py"
        );
        let mut child = Command::new("python3")
            .args([script, bootstrap, group, topic, &STOP_AFTER.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs (kafka-python 3.0.12 is installed by scripts/test-deps)");
        let log: Arc<Mutex<ChildLog>> = Arc::default();
        let (line_tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    log.lock().unwrap().record(&line);
                    let _ = line_tx.send(());
                }
            });
        }
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Self {
            child,
            log,
            lines,
            stderr: Some(stderr),
        }
    }

    /// Waits, woken by every line the child prints, until `done` holds for what it printed and the survivor's
    /// assignment. Fails at once if the child exits, and after [`STEP_DEADLINE`] with what was seen.
    fn wait_until(
        &mut self,
        what: &str,
        survivor: &Member,
        done: impl Fn(&ChildLog, &BTreeSet<i32>) -> bool,
    ) {
        let deadline = Instant::now() + STEP_DEADLINE;
        loop {
            let survivor_assigned = survivor.tracker.assigned();
            if done(&self.log.lock().unwrap(), &survivor_assigned) {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                let stderr = self.stderr.take().map(|t| t.join().unwrap());
                panic!(
                    "the kafka-python member exited ({status}) while waiting for {what}{}\n{}--- its stderr ---\n{}",
                    if status.code() == Some(2) {
                        "; install the Python clients with scripts/test-deps"
                    } else {
                        ""
                    },
                    self.seen(&survivor_assigned),
                    stderr.unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {STEP_DEADLINE:?} waiting for {what}\n{}",
                self.seen(&survivor_assigned)
            );
            let _ = self.lines.recv_timeout(Duration::from_millis(100));
        }
    }

    fn seen(&self, survivor_assigned: &BTreeSet<i32>) -> String {
        let log = self.log.lock().unwrap();
        format!(
            "survivor assigned {survivor_assigned:?}; child assigned {:?}, committed {:?}\n--- child's last \
             lines ---\n{}\n",
            log.assigned,
            log.committed,
            log.recent.iter().cloned().collect::<Vec<_>>().join("\n")
        )
    }

    /// SIGKILL: no LeaveGroup, no last commit.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the child member");
        self.child.wait().unwrap();
    }
}

impl Drop for ChildMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_killed_member_s_partitions_move_to_the_survivor_from_the_committed_offsets() {
    let broker = TestBroker::start_with(|c| c.group_initial_rebalance_delay_ms = 200);
    broker.create_topic("failover", 4, &[]);
    let mut child = ChildMember::spawn(&broker.bootstrap(), "failover-group", "failover");
    let processed: Processed = Arc::default();
    let survivor = Member::start(
        0,
        &broker.bootstrap(),
        "failover-group",
        "failover",
        &[],
        processed.clone(),
    );
    // The python member may start well after the survivor (on a busy machine, seconds later): the survivor
    // then owns all four until the child joins and the group rebalances.
    child.wait_until(
        "the group to settle with two partitions on each member",
        &survivor,
        |log, survivor| {
            log.assigned.len() == 2 && survivor.len() == 2 && log.assigned.is_disjoint(survivor)
        },
    );
    let child_partitions = child.log.lock().unwrap().assigned.clone();

    produce(&broker.bootstrap(), "failover", 4, 50);
    child.wait_until(
        &format!("the child member to commit {STOP_AFTER} records and stop"),
        &survivor,
        |log, _| log.stopped_at.is_some(),
    );
    child.kill();
    let killed_at = Instant::now();
    // What the survivor processed so far: on a busy machine a late heartbeat can move the child's partitions to
    // the survivor and back before the kill, and what it read then is not the takeover checked below.
    let processed_before_kill = processed.lock().unwrap().len();
    // The group's committed offsets now, before the child's session expires: the child owned its partitions
    // last, so they are its last commits (a commit from an older generation is refused).
    let committed_at_kill =
        group_committed(&broker.bootstrap(), "failover-group", &child_partitions);

    wait_for_assignments(&[&survivor], "all 4 partitions on the survivor", |a| {
        a[0].len() == 4
    });
    let takeover = killed_at.elapsed();
    // The child's session timeout is 6 s; only its expiry can hand its partitions over.
    assert!(
        takeover < Duration::from_secs(30),
        "took over in {takeover:?}"
    );

    // The survivor reads each partition to its end (50 records each).
    let deadline = Instant::now() + STEP_DEADLINE;
    loop {
        let last: BTreeMap<i32, i64> = {
            let processed = processed.lock().unwrap();
            child_partitions
                .iter()
                .map(|p| {
                    let last = processed
                        .iter()
                        .filter(|(_, q, _, _)| q == p)
                        .map(|(_, _, o, _)| *o)
                        .max();
                    (*p, last.unwrap_or(-1))
                })
                .collect()
        };
        if last.values().all(|o| *o == 49) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "survivor did not finish the killed member's partitions; last offset processed of each: {last:?}"
        );
        std::thread::park_timeout(Duration::from_millis(50));
    }
    drop(survivor);

    let log = child.log.lock().unwrap();
    let processed = processed.lock().unwrap();
    let earlier: Vec<_> = processed[..processed_before_kill]
        .iter()
        .filter(|(_, q, _, _)| child_partitions.contains(q))
        .map(|(_, q, o, _)| (*q, *o))
        .collect();
    if !earlier.is_empty() {
        eprintln!(
            "the survivor owned some of the child's partitions for a while before the kill: {} records ({:?}...)",
            earlier.len(),
            &earlier[..earlier.len().min(5)]
        );
    }
    for p in &child_partitions {
        let committed = log.committed.get(p).copied().unwrap_or(0);
        assert_eq!(
            committed_at_kill.get(p).copied().unwrap_or(0),
            committed,
            "partition {p}: the group's committed offset at the kill is the child's last commit"
        );
        let survivor_offsets: BTreeSet<i64> = processed[processed_before_kill..]
            .iter()
            .filter(|(_, q, _, _)| q == p)
            .map(|(_, _, o, _)| *o)
            .collect();
        // Every commit of the child covered all its positions, so the group's committed offset of `p` is the
        // last one it printed for `p` (none: auto.offset.reset=earliest).
        assert_eq!(
            survivor_offsets,
            (committed..50).collect(),
            "partition {p}: the survivor starts exactly at the committed offset {committed} (the child processed \
             {:?}) and has no gaps",
            log.processed.get(p)
        );
    }
    let (p, o) = log.stopped_at.unwrap();
    assert_eq!(
        log.committed.get(&p).copied().unwrap_or(0),
        o,
        "the child stopped after processing {p}@{o} without committing it"
    );
}

/// The group's committed offsets of `partitions` of topic `failover` (none: absent), as OffsetFetch answers.
fn group_committed(bootstrap: &str, group: &str, partitions: &BTreeSet<i32>) -> BTreeMap<i32, i64> {
    let committed = common::group_committed(
        bootstrap,
        group,
        "failover",
        partitions.iter().copied(),
        Duration::from_secs(30),
    )
    .expect("OffsetFetch");
    committed
        .into_iter()
        .filter_map(|(p, offset)| match offset {
            Ok(rdkafka::Offset::Offset(o)) => Some((p, o)),
            _ => None,
        })
        .collect()
}
