//! The metadata log on disk: it must hold exactly what `DurableState::persist` models, survive reopening, cut a
//! torn tail, refuse damaged synced data, finish a snapshot a crash interrupted, and carry a real node across a
//! restart.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use proptest::prelude::*;
use raft::eraftpb::{Entry, HardState, Snapshot};
use strom_metadata::{
    generate_cluster_id, DiskError, DurableState, MetaProperties, MetadataDisk, MetadataRecord,
    PersistOp, ProposalId, QuorumConfig, QuorumNode, RecordBatch,
};

const LOG: &str = "raft.log";
const SNAPSHOT: &str = "raft.snapshot";

fn entry(index: u64, term: u64) -> Entry {
    let mut e = Entry {
        index,
        term,
        ..Default::default()
    };
    e.set_data(format!("entry {index} of term {term}").into_bytes().into());
    if index.is_multiple_of(3) {
        e.set_context(vec![index as u8; 3].into());
    }
    e
}

fn snapshot_of(model: &DurableState, index: u64, term: u64) -> Snapshot {
    let mut s = Snapshot::default();
    s.set_data(format!("image at {index}").into_bytes().into());
    let meta = s.mut_metadata();
    meta.index = index;
    meta.term = term;
    meta.set_conf_state(model.snapshot.get_metadata().get_conf_state().clone());
    s
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..Default::default()
    }
}

fn snapshot_index(model: &DurableState) -> u64 {
    model.snapshot.get_metadata().index
}

fn last_index(model: &DurableState) -> u64 {
    snapshot_index(model) + model.entries.len() as u64
}

fn term_at(model: &DurableState, index: u64) -> u64 {
    let s = snapshot_index(model);
    if index == s {
        model.snapshot.get_metadata().term
    } else {
        model.entries[(index - s - 1) as usize].term
    }
}

/// An abstract step, made concrete against the model so that every op is one Raft could ask for.
#[derive(Debug, Clone)]
enum Step {
    /// Append `count` entries, replacing the last `back` entries (a new leader's log) when `back > 0`.
    Append {
        back: u64,
        count: u64,
    },
    HardState {
        vote: u64,
        commit: u64,
    },
    /// Compact at an index chosen from `at` among the entries.
    Compact {
        at: u64,
    },
    /// A snapshot from the leader `ahead` entries past our snapshot (possibly past our whole log).
    Install {
        ahead: u64,
    },
    /// End the current persist call here.
    Call,
    /// End the call and reopen the directory.
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..3u64, 1..4u64).prop_map(|(back, count)| Step::Append { back, count }),
        3 => (0..3u64, any::<u64>()).prop_map(|(vote, commit)| Step::HardState { vote, commit }),
        1 => any::<u64>().prop_map(|at| Step::Compact { at }),
        1 => (0..8u64).prop_map(|ahead| Step::Install { ahead }),
        3 => Just(Step::Call),
        1 => Just(Step::Reopen),
    ]
}

/// The ops of one step, applied to `model` as they are produced. `term` is the newest term seen.
fn concrete(step: &Step, model: &mut DurableState, term: &mut u64) -> Vec<PersistOp> {
    let s = snapshot_index(model);
    let last = last_index(model);
    let ops = match *step {
        Step::Append { back, count } => {
            let back = back.min(last - s);
            if back > 0 {
                *term += 1;
            }
            let first = last + 1 - back;
            let mut ops = Vec::new();
            // A node takes up a term (durably) before it holds entries of that term.
            if model.hard_state.term < *term {
                let mut hs = model.hard_state.clone();
                hs.term = *term;
                ops.push(PersistOp::HardState(hs));
            }
            ops.push(PersistOp::Entries(
                (first..first + count).map(|i| entry(i, *term)).collect(),
            ));
            ops
        }
        Step::HardState { vote, commit } => {
            let commit = s + commit % (last - s + 1);
            vec![PersistOp::HardState(hard_state(*term, vote, commit))]
        }
        Step::Compact { at } => {
            if last == s {
                return Vec::new();
            }
            let index = s + 1 + at % (last - s);
            let mut ops = Vec::new();
            // Raft compacts only what it applied, so only what is committed.
            if model.hard_state.commit < index {
                let mut hs = model.hard_state.clone();
                hs.commit = index;
                ops.push(PersistOp::HardState(hs));
            }
            ops.push(PersistOp::Compact(snapshot_of(
                model,
                index,
                term_at(model, index),
            )));
            ops
        }
        Step::Install { ahead } => {
            *term += 1;
            let index = s + 1 + ahead;
            // As QuorumNode::install_snapshot: the hard state follows, raised to the snapshot.
            let mut hs = model.hard_state.clone();
            hs.commit = hs.commit.max(index);
            hs.term = hs.term.max(*term);
            vec![
                PersistOp::InstallSnapshot(snapshot_of(model, index, *term)),
                PersistOp::HardState(hs),
            ]
        }
        Step::Call | Step::Reopen => Vec::new(),
    };
    for op in &ops {
        model.persist(op);
    }
    ops
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn the_disk_holds_what_the_model_holds(steps in prop::collection::vec(step(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut model = DurableState::initial(&[0, 1, 2]);
        let mut disk = MetadataDisk::open(dir.path()).unwrap();
        prop_assert_eq!(disk.load().unwrap(), None);
        disk.create(&model).unwrap();
        prop_assert_eq!(disk.load().unwrap(), Some(model.clone()));
        let mut term = 1;
        let mut call = Vec::new();
        for step in steps.iter().chain([&Step::Call]) {
            call.extend(concrete(step, &mut model, &mut term));
            if matches!(step, Step::Call | Step::Reopen) {
                disk.persist(&call).unwrap();
                call.clear();
                if matches!(step, Step::Reopen) {
                    disk = MetadataDisk::open(dir.path()).unwrap();
                }
                prop_assert_eq!(disk.load().unwrap(), Some(model.clone()), "after {:?}", steps);
            }
        }
        drop(disk);
        let reopened = MetadataDisk::open(dir.path()).unwrap();
        prop_assert_eq!(reopened.load().unwrap(), Some(model.clone()));
    }
}

/// A directory with a snapshot at 0 and entries 1..=5 of term 1, synced.
fn five_entries(dir: &Path) -> (MetadataDisk, DurableState) {
    let mut state = DurableState::initial(&[0]);
    let mut disk = MetadataDisk::open(dir).unwrap();
    disk.create(&state).unwrap();
    let ops = [
        PersistOp::Entries((1..=5).map(|i| entry(i, 1)).collect()),
        PersistOp::HardState(hard_state(1, 1, 3)),
    ];
    disk.persist(&ops).unwrap();
    for op in &ops {
        state.persist(op);
    }
    (disk, state)
}

fn log_len(dir: &Path) -> u64 {
    fs::metadata(dir.join(LOG)).unwrap().len()
}

fn first_n(state: &DurableState, n: usize) -> DurableState {
    let mut prefix = state.clone();
    prefix.entries.truncate(n);
    prefix
}

#[test]
fn a_torn_tail_is_cut_and_the_log_goes_on_from_there() {
    let dir = tempfile::tempdir().unwrap();
    let (disk, state) = five_entries(dir.path());
    drop(disk);
    let full = log_len(dir.path());
    // A crash part way through writing the fifth entry.
    let file = OpenOptions::new()
        .write(true)
        .open(dir.path().join(LOG))
        .unwrap();
    file.set_len(full - 5).unwrap();
    drop(file);

    let mut disk = MetadataDisk::open(dir.path()).unwrap();
    assert_eq!(disk.load().unwrap(), Some(first_n(&state, 4)));
    assert!(
        log_len(dir.path()) < full - 5,
        "the torn frame is cut off the file"
    );
    disk.persist(&[PersistOp::Entries(vec![entry(5, 2), entry(6, 2)])])
        .unwrap();
    let mut expected = first_n(&state, 4);
    expected.entries.extend([entry(5, 2), entry(6, 2)]);
    assert_eq!(
        MetadataDisk::open(dir.path()).unwrap().load().unwrap(),
        Some(expected)
    );
}

#[test]
fn garbage_or_zeros_after_the_last_entry_are_a_torn_tail() {
    for tail in [
        b"\x00\x00\x01\x00garbage that is no frame".to_vec(),
        vec![0; 4096],
        vec![0, 0, 0],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (disk, state) = five_entries(dir.path());
        drop(disk);
        let full = log_len(dir.path());
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG))
            .unwrap();
        file.write_all(&tail).unwrap();
        drop(file);
        let disk = MetadataDisk::open(dir.path()).unwrap();
        assert_eq!(disk.load().unwrap(), Some(state));
        assert_eq!(log_len(dir.path()), full);
    }
}

#[test]
fn a_damaged_entry_followed_by_valid_ones_is_an_error_naming_the_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (disk, _) = five_entries(dir.path());
    drop(disk);
    let path = dir.path().join(LOG);
    let mut bytes = fs::read(&path).unwrap();
    // Header (8) + first frame (8 + payload); flip a byte inside the second entry's payload.
    let first_payload = u32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let second = 8 + 8 + first_payload;
    bytes[second + 12] ^= 0x40;
    fs::write(&path, &bytes).unwrap();

    let err = MetadataDisk::open(dir.path())
        .err()
        .expect("a damaged middle entry is refused");
    assert!(
        matches!(&err, DiskError::Corrupt { path: p, offset, .. } if *p == path && *offset == second as u64),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains(&format!("byte {second}")), "{message}");
    assert_eq!(fs::read(&path).unwrap(), bytes, "nothing was cut");

    // Damage to the length field is found the same way.
    bytes[second + 12] ^= 0x40;
    bytes[second] = 0x7f;
    fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        MetadataDisk::open(dir.path()),
        Err(DiskError::Corrupt { offset, .. }) if offset == second as u64
    ));
}

#[test]
fn a_log_that_does_not_follow_its_snapshot_is_an_error() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (disk_a, _) = five_entries(a.path());
    let (mut disk_b, state_b) = five_entries(b.path());
    disk_b
        .persist(&[PersistOp::Compact(snapshot_of(&state_b, 3, 1))])
        .unwrap();
    drop((disk_a, disk_b));
    // B's log starts at 4; A's snapshot is at 0.
    fs::copy(b.path().join(LOG), a.path().join(LOG)).unwrap();
    let err = MetadataDisk::open(a.path())
        .err()
        .expect("a gap is refused");
    assert!(
        matches!(
            err,
            DiskError::Gap {
                expected: 1,
                found: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(LOG), "{err}");
}

#[test]
fn a_compaction_cut_short_by_a_crash_keeps_the_entries_after_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (disk, state) = five_entries(dir.path());
    drop(disk);
    // The snapshot was renamed into place; the log was not rewritten yet.
    let other = tempfile::tempdir().unwrap();
    let (mut compacted, _) = five_entries(other.path());
    compacted
        .persist(&[PersistOp::Compact(snapshot_of(&state, 3, 1))])
        .unwrap();
    fs::copy(other.path().join(SNAPSHOT), dir.path().join(SNAPSHOT)).unwrap();

    let disk = MetadataDisk::open(dir.path()).unwrap();
    let mut expected = state.clone();
    expected.persist(&PersistOp::Compact(snapshot_of(&state, 3, 1)));
    assert_eq!(disk.load().unwrap(), Some(expected));
}

#[test]
fn a_leader_snapshot_cut_short_by_a_crash_replaces_the_whole_log_and_raises_the_hard_state() {
    let dir = tempfile::tempdir().unwrap();
    let (disk, state) = five_entries(dir.path());
    drop(disk);
    // A snapshot at 4 of term 2: this log's entry 4 has term 1, so the snapshot replaced it.
    let other = tempfile::tempdir().unwrap();
    let mut installed = MetadataDisk::open(other.path()).unwrap();
    installed
        .persist(&[PersistOp::InstallSnapshot(snapshot_of(&state, 4, 2))])
        .unwrap();
    fs::copy(other.path().join(SNAPSHOT), dir.path().join(SNAPSHOT)).unwrap();

    let disk = MetadataDisk::open(dir.path()).unwrap();
    let loaded = disk.load().unwrap().unwrap();
    assert_eq!(loaded.snapshot, snapshot_of(&state, 4, 2));
    assert!(loaded.entries.is_empty());
    assert_eq!(loaded.hard_state, hard_state(2, 1, 4));
}

#[test]
fn changes_are_refused_before_the_initial_state_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let mut disk = MetadataDisk::open(&dir.path().join("not/yet/there")).unwrap();
    assert!(matches!(
        disk.persist(&[PersistOp::HardState(hard_state(1, 1, 0))]),
        Err(DiskError::NotCreated { .. })
    ));
    disk.persist(&[]).unwrap();
    assert_eq!(disk.load().unwrap(), None);
    let state = DurableState::initial(&[0]);
    disk.create(&state).unwrap();
    assert!(matches!(
        disk.create(&state),
        Err(DiskError::AlreadyCreated { .. })
    ));
    assert!(matches!(
        disk.persist(&[PersistOp::Entries(vec![entry(2, 1)])]),
        Err(DiskError::BadAppend { .. })
    ));
    assert_eq!(disk.load().unwrap(), Some(state));
}

#[test]
fn a_refused_call_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut disk, state) = five_entries(dir.path());
    // The second append would leave a gap after the first.
    let refused = [
        PersistOp::Entries(vec![entry(6, 1)]),
        PersistOp::Entries(vec![entry(8, 1)]),
    ];
    let err = disk.persist(&refused).unwrap_err();
    assert!(matches!(err, DiskError::BadAppend { .. }), "{err:?}");
    assert_eq!(disk.load().unwrap(), Some(state.clone()));
    disk.persist(&refused[..1]).unwrap();
    let mut expected = state;
    expected.persist(&refused[0]);
    assert_eq!(disk.load().unwrap(), Some(expected));
}

#[test]
fn a_damaged_snapshot_or_hard_state_is_an_error_naming_the_file() {
    for name in [SNAPSHOT, "raft.hardstate"] {
        let dir = tempfile::tempdir().unwrap();
        let (disk, _) = five_entries(dir.path());
        drop(disk);
        let path = dir.path().join(name);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let err = MetadataDisk::open(dir.path()).err().expect("refused");
        assert!(
            matches!(&err, DiskError::Corrupt { path: p, .. } if *p == path),
            "{err:?}"
        );
        assert!(err.to_string().contains("checksum"), "{err}");
    }
}

#[test]
fn meta_properties_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(MetaProperties::read(dir.path()).unwrap(), None);
    let id = MetaProperties {
        cluster_id: generate_cluster_id(),
        node_id: 3,
    };
    id.write(dir.path()).unwrap();
    assert_eq!(MetaProperties::read(dir.path()).unwrap(), Some(id.clone()));
    let text = fs::read_to_string(dir.path().join("meta.properties")).unwrap();
    assert!(text.contains("version=1\n"), "{text}");
    assert!(
        text.contains(&format!("cluster.id={}\n", id.cluster_id)),
        "{text}"
    );
    assert!(text.contains("node.id=3\n"), "{text}");
}

#[test]
fn meta_properties_as_kafka_writes_them_are_read() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("meta.properties"),
        "#\n#Thu Jan 04 10:00:00 UTC 2024\nnode.id=1\ndirectory.id=4kRvo2TTSumGT7n2LqW9SQ\n\
         version=1\ncluster.id=MkU3OEVBNTcwNTJENDM2Qk\n",
    )
    .unwrap();
    assert_eq!(
        MetaProperties::read(dir.path()).unwrap(),
        Some(MetaProperties {
            cluster_id: "MkU3OEVBNTcwNTJENDM2Qk".into(),
            node_id: 1
        })
    );
}

#[test]
fn a_malformed_meta_properties_is_an_error_naming_the_file_and_the_problem() {
    for (text, problem) in [
        ("version=1\nnode.id=1\n", "no cluster.id"),
        ("version=1\ncluster.id=abc\n", "no node.id"),
        (
            "version=1\ncluster.id=abc\nnode.id=one\n",
            "line 3: node.id 'one'",
        ),
        (
            "version=0\nbroker.id=1\ncluster.id=abc\n",
            "version 0 is not supported",
        ),
        ("cluster.id=abc\nnode.id=1\n", "no version"),
        ("version=1\njunk\n", "line 2: expected key=value"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.properties");
        fs::write(&path, text).unwrap();
        let err = MetaProperties::read(dir.path()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains(problem), "{message} should say {problem}");
    }
}

#[test]
fn cluster_ids_are_kafka_style_base64_uuids() {
    let ids: Vec<String> = (0..100).map(|_| generate_cluster_id()).collect();
    for id in &ids {
        assert_eq!(id.len(), 22, "{id}");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{id}"
        );
        assert!(!id.starts_with('-'), "{id}");
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len());
}

fn topic(name: &str) -> RecordBatch {
    let topic_id = format!("id-{name}");
    RecordBatch::new(vec![
        MetadataRecord::Topic {
            name: name.into(),
            topic_id: topic_id.clone(),
        },
        MetadataRecord::Partition {
            topic_id,
            partition: 0,
            replicas: vec![0],
            isr: vec![0],
            leader: 0,
            leader_epoch: 0,
        },
    ])
}

/// Runs `node` until `done`, making every output durable before looking at the next.
fn run(
    node: &mut QuorumNode,
    disk: &mut MetadataDisk,
    mut done: impl FnMut(&QuorumNode, &[(ProposalId, bool)]) -> bool,
) {
    let mut resolved = Vec::new();
    for _ in 0..1_000 {
        node.tick();
        let out = node.poll();
        disk.persist(&out.persist).unwrap();
        resolved.extend(out.proposals.iter().map(|(id, r)| (*id, r.is_ok())));
        if done(node, &resolved) {
            return;
        }
    }
    panic!("the node did not get there in 1,000 ticks");
}

#[test]
fn a_single_node_restarts_from_its_disk_with_its_topics() {
    // The second run compacts every few entries, so the restart goes through a snapshot on disk too.
    for snapshot_after_entries in [1024, 3] {
        let data_dir = tempfile::tempdir().unwrap();
        let dir = data_dir.path().join("__cluster_metadata-0");
        let mut config = QuorumConfig::new(0, vec![0], 1);
        config.snapshot_after_entries = snapshot_after_entries;
        let mut disk = MetadataDisk::open(&dir).unwrap();
        let initial = DurableState::initial(&[0]);
        disk.create(&initial).unwrap();
        let mut node = QuorumNode::restart(config.clone(), initial).unwrap();
        run(&mut node, &mut disk, |node, _| node.is_leader());

        let names = ["orders", "payments", "audit", "clicks", "views"];
        let ids: Vec<ProposalId> = names
            .iter()
            .map(|name| node.propose(&topic(name)).unwrap())
            .collect();
        run(&mut node, &mut disk, |_, resolved| {
            ids.iter().all(|id| resolved.iter().any(|(r, _)| r == id))
        });
        assert_eq!(node.image().topics.len(), names.len());
        let image = node.image().clone();
        drop((node, disk));

        let disk = MetadataDisk::open(&dir).unwrap();
        let durable = disk.load().unwrap().expect("the node wrote its log");
        if snapshot_after_entries == 3 {
            assert!(
                durable.snapshot.get_metadata().index > 0,
                "compacted on the way"
            );
        }
        let mut node = QuorumNode::restart(config, durable).unwrap();
        node.poll();
        for name in names {
            assert!(
                node.image().topics.contains_key(name),
                "{name} after restart"
            );
        }
        // The restarted single voter leads at once, and its new term's empty entry is one more index applied.
        assert_eq!(node.image().topics, image.topics);
        assert!(node.image().applied_index >= image.applied_index);
    }
}
