//! A Strom cluster of three real `strom broker` processes, each a broker and a controller voting in the Raft
//! metadata quorum, as an operator runs it: formatted with `strom storage format`, configured with Kafka's key
//! names, driven with real clients and with `kill -9` and SIGTERM.
//!
//! Replication itself (acks=all across brokers, failover, truncation) is tested in `replication.rs`; here a
//! partition of replication factor 1 whose leader is down stays offline until that broker returns (no
//! out-of-sync replica is ever elected).
//!
//! Needs `python3` with kafka-python 3.0.12 for the kafka-python half of the first test (`scripts/test-deps`
//! installs it); a missing package fails that test with the hint.

mod common;
#[path = "clients/support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{
    create_topic, describe_cluster, describe_output, describe_quorum, metadata, random_cluster_id,
    rdkafka_roundtrip, wait_until, wait_until_every, with_port_retry, Layout, MetadataView,
    PortTaken, TestCluster, TopicView, FAST_FAILURE_DETECTION,
};
use common::process::{BrokerProcess, Starting};

/// For tests that need no failure detection: a quick first election, and sessions long enough that a loaded
/// machine never fences a live broker while the test works with it.
const STEADY: &[&str] = &[
    "controller.quorum.election.timeout.ms=500",
    "broker.heartbeat.interval.ms=200",
    "broker.session.timeout.ms=10000",
];

const INSTALL: &str = "install kafka-python with `python3 -m pip install kafka-python==3.0.12` \
                       (or run scripts/test-deps)";

/// `strom topic create` through node `via`; returns the new topic's id.
#[track_caller]
fn create_topic_cli(
    cluster: &TestCluster,
    via: i32,
    name: &str,
    partitions: i32,
    rf: i16,
) -> String {
    let out = cluster.strom(
        via,
        &[
            "--format",
            "json",
            "topic",
            "create",
            name,
            "--partitions",
            &partitions.to_string(),
            "--replication-factor",
            &rf.to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "strom topic create {name} through node {via}:\n{}",
        describe_output(&out)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("JSON from topic create");
    assert_eq!(json["partitions"], partitions, "{json}");
    assert_eq!(json["replication_factor"], rf, "{json}");
    json["topic_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no topic_id in {json}"))
        .to_string()
}

/// Waits until every node in `nodes` lists every topic of `expected` (name -> id) with that id and no error,
/// and returns what the first of them reports.
#[track_caller]
fn wait_topics_on(
    nodes: &[i32],
    cluster: &TestCluster,
    expected: &BTreeMap<String, String>,
) -> MetadataView {
    let mut first = None;
    for &id in nodes {
        let view = wait_until(
            &format!("node {id}'s Metadata to list {:?}", expected.keys()),
            Duration::from_secs(30),
            || {
                let view = metadata(cluster.addr(id))?;
                for (name, topic_id) in expected {
                    match view.topics.get(name) {
                        Some(t) if t.error_code == 0 && &t.topic_id == topic_id => {}
                        other => return Err(format!("{name}: {other:?}")),
                    }
                }
                Ok(view)
            },
        );
        first.get_or_insert(view);
    }
    first.expect("at least one node")
}

/// Leaders of `topic` spread evenly over the three brokers, and each partition's replicas: `rf` distinct brokers of the cluster,
/// the leader first among them; the ISR holds the leader and only replicas (followers join it as they catch up).
#[track_caller]
fn assert_spread(name: &str, topic: &TopicView, partitions: i32, rf: usize) {
    assert_eq!(
        topic.partitions.len(),
        partitions as usize,
        "{name}: {topic:?}"
    );
    let mut led: BTreeMap<i32, i32> = BTreeMap::new();
    for p in topic.partitions.values() {
        *led.entry(p.leader).or_default() += 1;
    }
    let even = partitions / 3;
    assert_eq!(
        led,
        BTreeMap::from([(1, even), (2, even), (3, even)]),
        "{name}: leaders spread evenly over the three brokers: {topic:?}"
    );
    for (index, p) in &topic.partitions {
        let distinct: BTreeSet<i32> = p.replicas.iter().copied().collect();
        assert_eq!(
            p.replicas.len(),
            rf,
            "{name}[{index}] replicas {:?}",
            p.replicas
        );
        assert_eq!(
            distinct.len(),
            rf,
            "{name}[{index}] replicas distinct: {:?}",
            p.replicas
        );
        assert!(
            distinct.is_subset(&BTreeSet::from([1, 2, 3])),
            "{name}[{index}] {p:?}"
        );
        assert_eq!(
            p.replicas[0], p.leader,
            "{name}[{index}] led by its first replica: {p:?}"
        );
        assert!(
            p.isr.contains(&p.leader) && p.isr.iter().all(|r| p.replicas.contains(r)),
            "{name}[{index}] ISR holds the leader and only replicas: {p:?}"
        );
        assert_eq!(p.error_code, 0, "{name}[{index}] {p:?}");
    }
}

#[test]
fn clients_bootstrapped_from_one_node_follow_leaders_on_every_node() {
    let cluster = TestCluster::start(3, STEADY);
    const RECORDS: usize = 300;
    let mut expected = BTreeMap::new();
    for (name, rf) in [("rd-rf1", 1), ("rd-rf3", 3), ("py-rf1", 1), ("py-rf3", 3)] {
        expected.insert(name.to_string(), create_topic_cli(&cluster, 1, name, 6, rf));
    }
    wait_topics_on(&[1, 2, 3], &cluster, &expected);
    // Followers of the new, empty partitions are caught up at once and join the ISR.
    let view = wait_until_every(
        "every partition's ISR to hold all its replicas on every node",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || {
            let mut first = None;
            for id in [1, 2, 3] {
                let view = metadata(cluster.addr(id))?;
                for name in expected.keys() {
                    for (i, p) in &view.topic(name).partitions {
                        let (mut isr, mut replicas) = (p.isr.clone(), p.replicas.clone());
                        isr.sort_unstable();
                        replicas.sort_unstable();
                        if isr != replicas {
                            return Err(format!("node {id}: {name}[{i}] {p:?}"));
                        }
                    }
                }
                first.get_or_insert(view);
            }
            Ok(first.expect("three nodes"))
        },
    );
    assert_eq!(view.brokers, BTreeSet::from([1, 2, 3]), "{view:?}");
    for (name, rf) in [("rd-rf1", 1), ("rd-rf3", 3), ("py-rf1", 1), ("py-rf3", 3)] {
        assert_spread(name, view.topic(name), 6, rf);
    }
    // Every node serves the same committed image.
    for id in [2, 3] {
        let other = metadata(cluster.addr(id)).unwrap();
        for name in expected.keys() {
            assert_eq!(other.topic(name), view.topic(name), "node {id} on {name}");
        }
    }

    for topic in ["rd-rf1", "rd-rf3"] {
        rdkafka_roundtrip(
            &cluster.bootstrap(2),
            &cluster.bootstrap(3),
            topic,
            6,
            RECORDS,
        );
    }

    let script = support::clients_dir().join("kafka_python_cluster.py");
    let finished = support::run(
        Command::new("python3")
            .arg(&script)
            .arg(cluster.bootstrap(2))
            .arg(cluster.bootstrap(3))
            .arg(RECORDS.to_string())
            .args(["py-rf1", "py-rf3"])
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        None,
        Duration::from_secs(240),
        INSTALL,
    );
    finished.assert_client_success(INSTALL);
    print!("{}", finished.stdout);
}

#[test]
fn killing_the_active_controller_elects_another_and_the_node_catches_up_when_back() {
    let mut cluster = TestCluster::start(3, FAST_FAILURE_DETECTION);
    let mut expected = BTreeMap::new();
    expected.insert(
        "before-rf3".to_string(),
        create_topic_cli(&cluster, 1, "before-rf3", 6, 3),
    );
    expected.insert(
        "before-rf1".to_string(),
        create_topic_cli(&cluster, 2, "before-rf1", 6, 1),
    );
    let before = wait_topics_on(&[1, 2, 3], &cluster, &expected);

    let old = cluster.active_controller(1);
    let old_epoch = describe_quorum(cluster.addr(1)).unwrap().epoch;
    let survivors: Vec<i32> = cluster.ids().into_iter().filter(|id| *id != old).collect();
    cluster.kill_9(old);
    let killed_at = Instant::now();
    let new = wait_until_every(
        &format!(
            "node {} to name a live leader other than the killed node {old}",
            survivors[0]
        ),
        Duration::from_secs(30),
        Duration::from_millis(20),
        || match describe_quorum(cluster.addr(survivors[0])) {
            Ok(q) if q.leader != old && survivors.contains(&q.leader) => Ok(q),
            Ok(q) => Err(format!("{q:?}")),
            Err(e) => Err(e),
        },
    );
    let election = killed_at.elapsed();
    eprintln!(
        "ELECTION: kill -9 of active controller {old} -> node {} names new leader {} (epoch {} -> {}) after {} ms",
        survivors[0],
        new.leader,
        old_epoch,
        new.epoch,
        election.as_millis()
    );
    assert!(
        election < Duration::from_secs(15),
        "election took {election:?}"
    );
    assert!(new.epoch > old_epoch, "a new term: {old_epoch} -> {new:?}");
    wait_until(
        &format!("node {} to agree on leader {}", survivors[1], new.leader),
        Duration::from_secs(30),
        || match describe_quorum(cluster.addr(survivors[1])) {
            Ok(q) if q.leader == new.leader => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );

    // What was committed before the kill is all there, under the same ids.
    let after = wait_topics_on(&survivors, &cluster, &expected);
    for name in expected.keys() {
        assert_eq!(
            after.topic(name).partitions.len(),
            before.topic(name).partitions.len(),
            "{name}"
        );
        assert_eq!(
            after.topic(name).topic_id,
            before.topic(name).topic_id,
            "{name}"
        );
    }

    // The new controller notices the dead broker (its session expires) and fences it.
    wait_until(
        &format!("broker {old} to be fenced"),
        Duration::from_secs(30),
        || match describe_cluster(cluster.addr(survivors[0])) {
            Ok((running, fenced)) if fenced.contains(&old) && !running.contains(&old) => Ok(()),
            other => Err(format!("(running, fenced) = {other:?}")),
        },
    );

    // The metadata quorum takes writes again.
    let during = create_topic_cli(&cluster, survivors[1], "created-while-down", 4, 2);
    expected.insert("created-while-down".to_string(), during.clone());
    let view = wait_topics_on(&survivors, &cluster, &expected);
    let placed: BTreeSet<i32> = view
        .topic("created-while-down")
        .partitions
        .values()
        .flat_map(|p| p.replicas.iter().copied())
        .collect();
    assert!(
        !placed.contains(&old),
        "no replica on the fenced broker: {placed:?}"
    );

    // The killed node comes back on its data directory and ports, and catches up.
    cluster.restart(old);
    let caught_up = metadata(cluster.addr(old)).unwrap();
    for (name, id) in &expected {
        assert_eq!(
            &caught_up.topic(name).topic_id,
            id,
            "node {old} after its restart: {name}"
        );
    }
    let quorum = wait_until(
        &format!("node {old}'s lag to reach 0"),
        Duration::from_secs(30),
        || match describe_quorum(cluster.addr(old)) {
            Ok(q) if q.lag(old) == Some(0) && q.voters.len() == 3 => Ok(q),
            other => Err(format!("{other:?}")),
        },
    );
    assert_ne!(quorum.leader, old, "{quorum:?}");
    // `strom cluster quorum` shows the same through the restarted node.
    wait_until(
        &format!("`strom cluster quorum` to show node {old} with lag 0"),
        Duration::from_secs(30),
        || {
            let out = cluster.strom(old, &["--format", "json", "cluster", "quorum"]);
            if !out.status.success() {
                return Err(describe_output(&out));
            }
            let json: serde_json::Value =
                serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
            let voters = json["voters"].as_array().ok_or_else(|| json.to_string())?;
            let lag_0 = voters.iter().any(|v| v["id"] == old && v["lag"] == 0);
            if voters.len() == 3 && lag_0 && json["leader_id"] == quorum.leader {
                Ok(())
            } else {
                Err(json.to_string())
            }
        },
    );
    wait_until(
        &format!("broker {old} to be running again"),
        Duration::from_secs(30),
        || match describe_cluster(cluster.addr(survivors[0])) {
            Ok((running, fenced)) if running == BTreeSet::from([1, 2, 3]) && fenced.is_empty() => {
                Ok(())
            }
            other => Err(format!("(running, fenced) = {other:?}")),
        },
    );
}

#[test]
fn without_a_quorum_topic_creation_fails_cleanly_and_metadata_still_answers() {
    let mut cluster = TestCluster::start(3, STEADY);
    let mut expected = BTreeMap::new();
    expected.insert(
        "existing".to_string(),
        create_topic_cli(&cluster, 1, "existing", 6, 3),
    );
    wait_topics_on(&[1, 2, 3], &cluster, &expected);

    // Kill the active controller and one follower. The survivor must know it has no quorum before the test
    // asks it for anything: had it been the leader, a write reaching its log in the moments before it steps
    // down could still commit once a quorum is back, which is Raft working, not a half-applied request.
    let leader = cluster.active_controller(1);
    let ids = cluster.ids();
    let survivor = *ids.iter().find(|id| **id != leader).unwrap();
    let other = *ids
        .iter()
        .find(|id| **id != leader && **id != survivor)
        .unwrap();
    cluster.kill_9(leader);
    cluster.kill_9(other);
    let no_leader = wait_until(
        &format!("node {survivor} to see no quorum"),
        Duration::from_secs(30),
        || match describe_quorum(cluster.addr(survivor)) {
            Err(e) => Ok(e),
            Ok(q) => Err(format!("still {q:?}")),
        },
    );
    eprintln!("node {survivor} without a quorum: {no_leader}");

    // The CLI waits out the admin timeout (30 s), so it runs while the rest is checked.
    let cli = {
        let bootstrap = cluster.bootstrap(survivor);
        std::thread::spawn(move || {
            let started = Instant::now();
            let out = common::cluster::strom(
                &bootstrap,
                &[
                    "topic",
                    "create",
                    "lost-cli",
                    "--partitions",
                    "3",
                    "--replication-factor",
                    "1",
                ],
            );
            (out, started.elapsed())
        })
    };

    // A client asking for a short timeout hears why, in time.
    let asked = Instant::now();
    let (code, message, _) = create_topic(cluster.addr(survivor), "lost-raw", 3, 1, 2000).unwrap();
    let answered = asked.elapsed();
    eprintln!("CreateTopics(timeout_ms=2000) without a quorum: code {code} after {answered:?}: {message:?}");
    assert_eq!(code, 7, "REQUEST_TIMED_OUT; message {message:?}");
    let message = message.unwrap_or_default().to_lowercase();
    assert!(
        message.contains("controller") || message.contains("quorum"),
        "the message names the missing controller quorum: {message}"
    );
    assert!(
        answered < Duration::from_secs(15),
        "answered after {answered:?}"
    );

    // Metadata still answers from the last committed image.
    let view = metadata(cluster.addr(survivor)).unwrap();
    let existing = view.topic("existing");
    assert_eq!(existing.error_code, 0, "{existing:?}");
    assert_eq!(existing.partitions.len(), 6, "{existing:?}");
    assert_eq!(existing.topic_id, expected["existing"]);
    assert!(!view.topics.contains_key("lost-raw"), "{view:?}");

    let (out, took) = cli.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    eprintln!(
        "strom topic create without a quorum, after {took:?}: {}",
        stderr.trim()
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    let lower = stderr.to_lowercase();
    assert!(
        ["controller", "quorum", "timed out"]
            .iter()
            .any(|w| lower.contains(w)),
        "the CLI's error names the missing quorum or the timeout: {stderr}"
    );

    // A quorum again: nothing of the failed creations was half-applied.
    cluster.restart(leader);
    let up = [survivor, leader];
    for id in up {
        wait_until(
            &format!("node {id} to see a leader"),
            Duration::from_secs(30),
            || describe_quorum(cluster.addr(id)),
        );
    }
    let view = wait_topics_on(&up, &cluster, &expected);
    for id in up {
        let view = metadata(cluster.addr(id)).unwrap();
        for lost in ["lost-cli", "lost-raw"] {
            assert!(
                !view.topics.contains_key(lost),
                "node {id} lists {lost}: {view:?}"
            );
        }
    }
    assert_eq!(view.topic("existing").topic_id, expected["existing"]);
    // The names were never taken: creating them now works.
    create_topic_cli(&cluster, survivor, "lost-cli", 3, 1);
    let (code, message, _) = create_topic(cluster.addr(leader), "lost-raw", 3, 1, 20000).unwrap();
    assert_eq!(code, 0, "{message:?}");
}

/// The contents of every file under `dir`, by path.
fn snapshot(dir: &std::path::Path) -> BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// What a node that must never get ready ends up showing: a line of its own or its peers' logs, or its exit.
enum Seen {
    Lines(Vec<String>),
    Exited(common::process::StartFailure),
}

/// Starts nodes 1 and 2 of `layout` (they form a quorum of two) and node 3, prepared by the test to be refused,
/// and waits until node 3's log and a peer's log each have a line matching `refusal`.
fn start_with_a_refused_node(
    layout: Layout,
    cluster_id: String,
    refusal: impl Fn(&str) -> bool,
) -> Result<(TestCluster, Seen), PortTaken> {
    let mut cluster = TestCluster::launched(layout, cluster_id);
    cluster.try_wait_ready(1)?;
    cluster.try_wait_ready(2)?;
    let seen = wait_until(
        "node 3 and its peers to log the refusal",
        Duration::from_secs(60),
        || {
            if let Some(status) = cluster.starting(3).try_exit() {
                let starting = cluster.take_starting(3);
                let (_, log) = starting.wait_exit(Duration::from_secs(10));
                return Ok(Seen::Exited(common::process::StartFailure {
                    status: Some(status),
                    log,
                }));
            }
            let own: Vec<String> = cluster.log(3).into_iter().filter(|l| refusal(l)).collect();
            let peers: Vec<String> = [1, 2]
                .iter()
                .flat_map(|id| cluster.log(*id))
                .filter(|l| refusal(l))
                .collect();
            if own.is_empty() || peers.is_empty() {
                return Err(format!("node 3: {own:?}; nodes 1 and 2: {peers:?}"));
            }
            Ok(Seen::Lines(own.into_iter().chain(peers).collect()))
        },
    );
    match seen {
        Seen::Exited(failure) if failure.port_taken() => Err(PortTaken(failure)),
        seen => Ok((cluster, seen)),
    }
}

/// Node 3 stays out: still running, never ready, never registered; nodes 1 and 2 carry on as a cluster of two.
#[track_caller]
fn assert_kept_out(cluster: &mut TestCluster, seen: Seen) -> Vec<String> {
    let lines = match seen {
        Seen::Lines(lines) => lines,
        Seen::Exited(failure) => panic!("node 3 exited instead of being refused: {failure}"),
    };
    assert!(
        !cluster
            .log(3)
            .iter()
            .any(|l| l.contains("Strom broker ready")),
        "node 3 must not get ready: {:?}",
        cluster.log(3)
    );
    assert_eq!(
        cluster.starting(3).try_exit(),
        None,
        "node 3 keeps running (and trying)"
    );
    for id in [1, 2] {
        wait_until(
            &format!("node {id} to list brokers 1 and 2 only"),
            Duration::from_secs(30),
            || {
                let view = metadata(cluster.addr(id))?;
                let (running, fenced) = describe_cluster(cluster.addr(id))?;
                let two = BTreeSet::from([1, 2]);
                if view.brokers == two && running == two && fenced.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "Metadata brokers {:?}, running {running:?}, fenced {fenced:?}",
                        view.brokers
                    ))
                }
            },
        );
    }
    // The two still take writes.
    create_topic_cli(cluster, 1, "two-nodes", 2, 2);
    lines
}

#[test]
fn a_node_formatted_for_another_cluster_is_refused_and_its_data_left_alone() {
    let (mut cluster, seen, theirs, before) = with_port_retry(|| {
        let layout = Layout::new(3, STEADY);
        let (ours, theirs) = (random_cluster_id(), random_cluster_id());
        assert_ne!(ours, theirs);
        for id in [1, 2] {
            assert!(layout.format(id, &ours).status.success());
        }
        assert!(layout.format(3, &theirs).status.success());
        let before: Vec<_> = layout.nodes.iter().map(|n| snapshot(&n.data_dir)).collect();
        let (ours2, theirs2) = (ours.clone(), theirs.clone());
        let (cluster, seen) = start_with_a_refused_node(layout, ours, move |l| {
            l.contains(&ours2) && l.contains(&theirs2) && l.contains("refus")
        })?;
        Ok((cluster, seen, theirs, before))
    });
    let ours = cluster.cluster_id.clone();
    let lines = assert_kept_out(&mut cluster, seen);
    eprintln!("cluster id mismatch, as logged:\n{}", lines.join("\n"));
    assert!(
        lines.iter().any(
            |l| l.contains(&format!("node 3 belongs to cluster {theirs}"))
                && l.contains(&format!("belongs to cluster {ours}"))
        ),
        "a message names both cluster ids: {lines:#?}"
    );
    // Stop node 3 (no wait: it would never exit on its own); its identity on disk is what it was formatted with.
    cluster.take_starting(3).wait_exit(Duration::ZERO);
    let meta = std::fs::read(cluster.node(3).meta_properties()).unwrap();
    assert_eq!(
        meta,
        before[2][&cluster.node(3).meta_properties()],
        "node 3's meta.properties unchanged"
    );
    for (i, n) in cluster.layout.nodes.iter().enumerate() {
        assert_eq!(
            std::fs::read(n.meta_properties()).unwrap(),
            before[i][&n.meta_properties()],
            "node {}'s meta.properties unchanged",
            n.id
        );
    }
    assert!(String::from_utf8_lossy(&meta).contains(&theirs));
}

#[test]
fn a_node_listing_other_voters_is_refused() {
    let (mut cluster, seen, ours, theirs) = with_port_retry(|| {
        let layout = Layout::new(3, STEADY);
        let cluster_id = random_cluster_id();
        layout.format_all(&cluster_id);
        let fourth = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let voters = layout.voters();
        let more = format!("{voters},4@127.0.0.1:{fourth}");
        layout.write_config(3, &more, &[]);
        // As the nodes send them: sorted `id@host:port`.
        let sorted = |v: &str| {
            let mut v: Vec<&str> = v.split(',').collect();
            v.sort_unstable();
            v.join(",")
        };
        let (ours, theirs) = (sorted(&voters), sorted(&more));
        let (a, b) = (ours.clone(), theirs.clone());
        let (cluster, seen) = start_with_a_refused_node(layout, cluster_id, move |l| {
            l.contains(&a) && l.contains(&b) && l.contains("controller.quorum.voters")
        })?;
        Ok((cluster, seen, ours, theirs))
    });
    let lines = assert_kept_out(&mut cluster, seen);
    eprintln!("voter list mismatch, as logged:\n{}", lines.join("\n"));
    assert!(
        lines.iter().any(
            |l| l.contains(&format!("node 3 has controller.quorum.voters={theirs}"))
                && l.contains(&format!("has {ours}"))
        ),
        "a message names both voter lists: {lines:#?}"
    );
}

#[test]
fn a_data_dir_formatted_for_another_node_id_is_refused() {
    let (status, log, layout, before) = with_port_retry(|| {
        let layout = Layout::new(3, STEADY);
        layout.format_all(&random_cluster_id());
        let before = snapshot(&layout.node(3).data_dir);
        // Node 2's config (its id and ports) on node 3's data directory.
        let config = layout.node(2).config.clone();
        let data = format!("log.dirs={}", layout.node(3).data_dir.display());
        let starting: Starting = BrokerProcess::launch(&[
            "--config".as_ref(),
            config.as_os_str(),
            "--set".as_ref(),
            data.as_ref(),
        ]);
        let (status, log) = starting.wait_exit(Duration::from_secs(60));
        let failure = common::process::StartFailure { status, log };
        if failure.port_taken() {
            return Err(PortTaken(failure));
        }
        let status = failure.status.unwrap_or_else(|| {
            panic!("the broker kept running on a data directory of another node: {failure}")
        });
        Ok((status, failure.log, layout, before))
    });
    let log = log.join("\n");
    eprintln!("node.id mismatch: {status}:\n{log}");
    assert!(!status.success(), "{status}");
    assert!(
        log.contains("formatted for node.id 3") && log.contains("configured as node.id 2"),
        "the error names both ids: {log}"
    );
    assert_eq!(
        snapshot(&layout.node(3).data_dir),
        before,
        "nothing in node 3's data directory changed"
    );
}

#[test]
fn an_unformatted_node_of_a_multi_voter_cluster_refuses_to_start() {
    let (status, log, layout) = with_port_retry(|| {
        let layout = Layout::new(3, STEADY);
        let (status, log) = layout.launch(1).wait_exit(Duration::from_secs(60));
        let failure = common::process::StartFailure { status, log };
        if failure.port_taken() {
            return Err(PortTaken(failure));
        }
        let status = failure
            .status
            .unwrap_or_else(|| panic!("an unformatted node kept running: {failure}"));
        Ok((status, failure.log, layout))
    });
    let log = log.join("\n");
    assert!(!status.success(), "{status}");
    assert!(
        log.contains("is not formatted") && log.contains("strom storage format"),
        "{log}"
    );
    assert!(
        !layout.node(1).meta_properties().exists(),
        "starting did not invent a cluster id"
    );
}

#[test]
fn formatting_a_formatted_dir_fails_and_changes_nothing() {
    let layout = Layout::new(1, &[]);
    let first = random_cluster_id();
    let out = layout.format(1, &first);
    assert!(out.status.success(), "{}", describe_output(&out));
    let meta = layout.node(1).meta_properties();
    let before = std::fs::read(&meta).unwrap();
    assert!(String::from_utf8_lossy(&before).contains(&first));
    for again in [random_cluster_id(), first.clone()] {
        let out = layout.format(1, &again);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
        assert!(
            stderr.contains("already formatted") && stderr.contains(&first),
            "names the problem and the cluster id on disk: {stderr}"
        );
        assert_eq!(
            std::fs::read(&meta).unwrap(),
            before,
            "meta.properties unchanged"
        );
    }
}

/// `strom cluster info --format json` through node `via`: broker id -> state.
fn cluster_info(cluster: &TestCluster, via: i32) -> Result<BTreeMap<i64, String>, String> {
    let out = cluster.strom(via, &["--format", "json", "cluster", "info"]);
    if !out.status.success() {
        return Err(describe_output(&out));
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    Ok(json["brokers"]
        .as_array()
        .ok_or_else(|| json.to_string())?
        .iter()
        .map(|b| {
            (
                b["id"].as_i64().unwrap_or(-1),
                b["state"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect())
}

#[test]
fn sigterm_moves_leadership_off_a_broker_before_it_exits_and_it_leads_again_after_restart() {
    // Sessions far longer than the test's waits: only a controlled shutdown can fence the broker this soon.
    // Heartbeats every 10 ms, so that the broker's regular heartbeats often overlap its controlled shutdown, as
    // they can at any interval: the shutdown must hold even then.
    const SESSION: Duration = Duration::from_secs(60);
    let mut cluster = TestCluster::start(
        3,
        &[
            "controller.quorum.election.timeout.ms=500",
            "broker.heartbeat.interval.ms=10",
            "broker.session.timeout.ms=60000",
            // Leadership moves back to preferred replicas soon after they return.
            "leader.imbalance.check.interval.seconds=1",
        ],
    );
    let mut expected = BTreeMap::new();
    expected.insert(
        "cs-rf1".to_string(),
        create_topic_cli(&cluster, 1, "cs-rf1", 6, 1),
    );
    expected.insert(
        "cs-rf3".to_string(),
        create_topic_cli(&cluster, 1, "cs-rf3", 6, 3),
    );
    wait_topics_on(&[1, 2, 3], &cluster, &expected);
    wait_until(
        "the followers of cs-rf3 to join its ISR",
        Duration::from_secs(30),
        || {
            let view = metadata(cluster.addr(1))?;
            match view
                .topic("cs-rf3")
                .partitions
                .values()
                .find(|p| p.isr.len() != 3)
            {
                None => Ok(()),
                Some(p) => Err(format!("{p:?}")),
            }
        },
    );
    let controller = cluster.active_controller(1);
    let victim = *cluster.ids().iter().find(|id| **id != controller).unwrap();
    let before = metadata(cluster.addr(controller)).unwrap();
    let led = before.led_by(victim);
    assert!(
        !led.is_empty(),
        "broker {victim} leads partitions: {before:?}"
    );

    let process = cluster.sigterm(victim);
    let asked = Instant::now();
    let (status, log) = process.wait_exit_within(Duration::from_secs(60));
    eprintln!(
        "SIGTERM of broker {victim} (controller {controller}): exited {status} after {} ms",
        asked.elapsed().as_millis()
    );
    assert!(
        status.success(),
        "exit 0 after a controlled shutdown: {status}\n{}",
        log.join("\n")
    );
    assert!(
        log.iter()
            .any(|l| l
                .contains("controlled shutdown: the controller moved leadership off this broker")),
        "the controller confirmed before the broker stopped:\n{}",
        log.join("\n")
    );

    let view = wait_until(
        &format!("no partition led by broker {victim}"),
        Duration::from_secs(20),
        || {
            let view = metadata(cluster.addr(controller))?;
            match view.led_by(victim) {
                s if s.is_empty() => Ok(view),
                s => Err(format!(
                    "still leads {s:?}; (running, fenced) = {:?}",
                    describe_cluster(cluster.addr(controller))
                )),
            }
        },
    );
    for (topic, p) in &led {
        let now = &view.topic(topic).partitions[p];
        if topic == "cs-rf1" {
            // No other replica: the partition waits for its broker.
            assert_eq!(now.leader, -1, "{topic}[{p}]");
        } else {
            // Another in-sync replica took over, and the stopped broker left the ISR.
            assert!(
                now.leader != victim && now.leader >= 0 && !now.isr.contains(&victim),
                "{topic}[{p}]: {now:?}"
            );
        }
    }
    wait_until(
        &format!("`strom cluster info` to show broker {victim} fenced"),
        Duration::from_secs(20),
        || match cluster_info(&cluster, controller)? {
            b if b.get(&i64::from(victim)).map(String::as_str) == Some("fenced") => Ok(()),
            b => Err(format!("{b:?}")),
        },
    );
    assert!(
        asked.elapsed() < SESSION,
        "seen within the session timeout, so by controlled shutdown: {:?}",
        asked.elapsed()
    );

    cluster.restart(victim);
    wait_until(
        &format!("`strom cluster info` to show broker {victim} running"),
        Duration::from_secs(30),
        || match cluster_info(&cluster, controller)? {
            b if b.values().all(|s| s == "running") && b.len() == 3 => Ok(()),
            b => Err(format!("{b:?}")),
        },
    );
    // Its partitions of cs-rf1 at once; those of cs-rf3 once it is back in their ISR and the controller's leader
    // rebalance hands them back to their preferred replica.
    wait_until(
        &format!("broker {victim} to lead {led:?} again"),
        Duration::from_secs(30),
        || {
            let now = metadata(cluster.addr(controller))?.led_by(victim);
            if now == led {
                Ok(())
            } else {
                Err(format!("leads {now:?}"))
            }
        },
    );
    // The restarted broker says the same once it has applied the same metadata (on a busy machine it may be a
    // moment behind the controller).
    wait_until(
        &format!("broker {victim}'s own metadata to show it leading {led:?}"),
        Duration::from_secs(30),
        || {
            let now = metadata(cluster.addr(victim))?.led_by(victim);
            if now == led {
                Ok(())
            } else {
                Err(format!("leads {now:?}"))
            }
        },
    );
}
