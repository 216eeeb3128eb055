//! The metadata quorum under a seeded, message-level simulator.
//!
//! Each seed runs 3 or 5 [`QuorumNode`]s on a simulated clock. Every message between them may be dropped,
//! duplicated or delayed (which reorders them); nodes are cut off from the rest and healed; nodes crash (losing
//! everything not on their simulated disk) and restart from that disk. A client proposes topic creations to
//! random nodes throughout. After every step the invariants are checked:
//! - at most one leader per term, ever;
//! - committed entries are never lost or reordered: every entry any node applies at index i has the same term
//!   and data as every other node's entry at i;
//! - every node's image is the image of a prefix of that one log (nodes at the same applied index agree);
//! - every proposal acknowledged to the client is in the log at the index it was acknowledged at.
//!
//! After the chaos the network heals and every node restarts; then a leader must exist, every node must apply
//! the whole log, every acknowledged topic must be in every node's image, and a new proposal must commit.
//!
//! `STROM_SIM_SEEDS=N` runs N seeds (default 1,000); `STROM_SIM_SEED=S` replays one. A failure names its seed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strom_metadata::{
    node_id, Applied, DurableState, MetadataImage, MetadataRecord, ProposalError, ProposalId,
    QuorumConfig, QuorumNode, RaftMessage, RecordBatch,
};

const TICK_MS: u64 = 10;
const CHAOS_MS: u64 = 3_000;
const HEAL_MS: u64 = 3_000;

#[derive(Debug)]
enum Event {
    Tick(usize),
    Deliver(RaftMessage),
    Restart(usize),
    Propose,
    Heal,
}

struct Sim {
    seed: u64,
    rng: StdRng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    events: HashMap<usize, Event>,
    next_event: usize,
    voters: Vec<i32>,
    nodes: Vec<Option<QuorumNode>>,
    disks: Vec<DurableState>,
    /// Nodes cut off from every other node.
    isolated: HashSet<usize>,
    chaos: bool,
    // What the invariants are checked against.
    leaders_by_term: HashMap<u64, i32>,
    committed: BTreeMap<u64, (u64, RecordBatch)>,
    images: BTreeMap<u64, MetadataImage>,
    in_flight: HashMap<(usize, ProposalId), String>,
    acked: BTreeMap<u64, String>,
    next_topic: u64,
    acked_after_heal: usize,
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = if rng.gen_bool(0.2) { 5 } else { 3 };
        let voters: Vec<i32> = (0..n).collect();
        let disks = vec![DurableState::initial(&voters); n as usize];
        let mut sim = Self {
            seed,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            next_event: 0,
            voters,
            nodes: Vec::new(),
            disks,
            isolated: HashSet::new(),
            chaos: true,
            leaders_by_term: HashMap::new(),
            committed: BTreeMap::new(),
            images: BTreeMap::new(),
            in_flight: HashMap::new(),
            acked: BTreeMap::new(),
            next_topic: 0,
            acked_after_heal: 0,
        };
        for i in 0..n as usize {
            let node = sim.start(i);
            sim.nodes.push(Some(node));
            let phase = sim.rng.gen_range(0..TICK_MS);
            sim.schedule(phase, Event::Tick(i));
        }
        sim.schedule(5, Event::Propose);
        sim.schedule(CHAOS_MS, Event::Heal);
        sim
    }

    fn start(&mut self, i: usize) -> QuorumNode {
        let mut config = QuorumConfig::new(i as i32, self.voters.clone(), self.rng.gen());
        // Small, so snapshots, compaction and snapshot installs happen in most runs.
        config.snapshot_after_entries = self.rng.gen_range(5..40);
        QuorumNode::restart(config, self.disks[i].clone())
            .unwrap_or_else(|e| panic!("seed {}: node {i} restart: {e}", self.seed))
    }

    fn schedule(&mut self, after: u64, event: Event) {
        let id = self.next_event;
        self.next_event += 1;
        self.events.insert(id, event);
        self.seq += 1;
        self.queue.push(Reverse((self.now + after, self.seq, id)));
    }

    fn run(&mut self) {
        let end = CHAOS_MS + HEAL_MS;
        while let Some(Reverse((at, _, id))) = self.queue.pop() {
            if at > end {
                break;
            }
            self.now = at;
            let event = self.events.remove(&id).expect("scheduled");
            self.handle(event);
            self.check_leaders();
        }
        self.check_converged();
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Tick(i) => {
                if let Some(node) = self.nodes[i].as_mut() {
                    node.tick();
                    self.drive(i);
                    self.schedule(TICK_MS, Event::Tick(i));
                }
                if self.chaos {
                    self.maybe_fault(i);
                }
            }
            Event::Deliver(message) => {
                let to = node_id(message.to) as usize;
                if let Some(node) = self.nodes[to].as_mut() {
                    node.step(message);
                    self.drive(to);
                }
            }
            Event::Restart(i) => {
                if self.nodes[i].is_none() {
                    let node = self.start(i);
                    self.nodes[i] = Some(node);
                    self.drive(i);
                    self.schedule(TICK_MS, Event::Tick(i));
                }
            }
            Event::Propose => {
                let i = self.rng.gen_range(0..self.nodes.len());
                if let Some(node) = self.nodes[i].as_mut() {
                    let name = format!("t{}", self.next_topic);
                    self.next_topic += 1;
                    let batch = RecordBatch::new(vec![MetadataRecord::Topic {
                        name: name.clone(),
                        topic_id: name.clone(),
                    }]);
                    match node.propose(&batch) {
                        Ok(id) => {
                            self.in_flight.insert((i, id), name);
                            self.drive(i);
                        }
                        Err(ProposalError::NotLeader { .. }) | Err(ProposalError::Dropped(_)) => {}
                        Err(e) => panic!("seed {}: propose: {e}", self.seed),
                    }
                }
                let gap = self.rng.gen_range(1..60);
                // The client stops half a second before the end, so followers can learn the last commit.
                if self.now + gap < CHAOS_MS + HEAL_MS - 500 {
                    self.schedule(gap, Event::Propose);
                }
            }
            Event::Heal => {
                self.chaos = false;
                self.isolated.clear();
                for i in 0..self.nodes.len() {
                    if self.nodes[i].is_none() {
                        self.schedule(1, Event::Restart(i));
                    }
                }
            }
        }
    }

    fn maybe_fault(&mut self, i: usize) {
        let r: f64 = self.rng.gen();
        if r < 0.002 {
            // Crash: everything not on disk is gone, and so are the messages on their way to it.
            if self.nodes[i].take().is_some() {
                let down_for = self.rng.gen_range(50..1_000);
                self.schedule(down_for, Event::Restart(i));
            }
        } else if r < 0.004 {
            self.isolated.insert(i);
        } else if r < 0.008 {
            self.isolated.remove(&i);
        }
    }

    /// Polls node `i` and does what a driver must: persist, then send; then checks what it applied.
    fn drive(&mut self, i: usize) {
        let node = self.nodes[i].as_mut().expect("live");
        let out = node.poll();
        for op in &out.persist {
            self.disks[i].persist(op);
        }
        for message in out.messages {
            let to = node_id(message.to) as usize;
            if self.chaos {
                if self.isolated.contains(&i) || self.isolated.contains(&to) {
                    continue;
                }
                if self.rng.gen_bool(0.05) {
                    continue;
                }
                if self.rng.gen_bool(0.03) {
                    let delay = self.rng.gen_range(1..80);
                    self.schedule(delay, Event::Deliver(message.clone()));
                }
            }
            let delay = self.rng.gen_range(1..if self.chaos { 40 } else { 5 });
            self.schedule(delay, Event::Deliver(message));
        }
        self.check_applied(i, &out.applied);
        for (id, result) in out.proposals {
            let name = self.in_flight.remove(&(i, id)).expect("a proposal we made");
            if let Ok(index) = result {
                if !self.chaos {
                    self.acked_after_heal += 1;
                }
                let previous = self.acked.insert(index, name.clone());
                assert!(
                    previous.is_none(),
                    "seed {}: two proposals acknowledged at index {index}: {previous:?} and {name}",
                    self.seed
                );
                let (_, batch) = self.committed.get(&index).unwrap_or_else(|| {
                    panic!(
                        "seed {}: {name} acknowledged at {index}, which no node applied",
                        self.seed
                    )
                });
                assert!(
                    matches!(&batch.records[..], [MetadataRecord::Topic { name: n, .. }] if *n == name),
                    "seed {}: {name} acknowledged at {index}, which holds {batch:?}",
                    self.seed
                );
            }
        }
    }

    /// Every entry node `i` has applied matches the one committed log, and its image is that log's image.
    fn check_applied(&mut self, i: usize, applied_now: &[Applied]) {
        let node = self.nodes[i].as_ref().expect("live");
        let applied = node.image().applied_index;
        for entry in applied_now {
            let this = (entry.term, entry.batch.clone());
            match self.committed.get(&entry.index) {
                Some(committed) => assert_eq!(
                    committed, &this,
                    "seed {}: node {i} applied a different entry at index {} than another node",
                    self.seed, entry.index
                ),
                None => {
                    assert!(
                        entry.index <= node.commit_index(),
                        "seed {}: node {i} applied {} above its commit index",
                        self.seed,
                        entry.index
                    );
                    self.committed.insert(entry.index, this);
                }
            }
        }
        match self.images.get(&applied) {
            Some(image) => assert_eq!(
                image,
                node.image(),
                "seed {}: node {i}'s image at index {applied} differs from another node's",
                self.seed
            ),
            None => {
                self.images.insert(applied, node.image().clone());
            }
        }
    }

    fn check_leaders(&mut self) {
        for node in self.nodes.iter().flatten() {
            if node.is_leader() {
                let leader = *self
                    .leaders_by_term
                    .entry(node.term())
                    .or_insert(node.node_id());
                assert_eq!(
                    leader,
                    node.node_id(),
                    "seed {}: two leaders in term {}",
                    self.seed,
                    node.term()
                );
            }
        }
    }

    fn check_converged(&mut self) {
        let leaders: Vec<i32> = self
            .nodes
            .iter()
            .flatten()
            .filter(|n| n.is_leader())
            .map(|n| n.node_id())
            .collect();
        assert_eq!(
            leaders.len(),
            1,
            "seed {}: leaders after healing: {leaders:?}",
            self.seed
        );
        let applied: Vec<u64> = self
            .nodes
            .iter()
            .map(|n| n.as_ref().expect("all restarted").image().applied_index)
            .collect();
        assert!(
            applied.windows(2).all(|w| w[0] == w[1]),
            "seed {}: nodes did not converge after healing: applied {applied:?}",
            self.seed
        );
        for node in self.nodes.iter().flatten() {
            for (index, name) in &self.acked {
                assert!(
                    node.image().topics.contains_key(name),
                    "seed {}: {name}, acknowledged at {index}, is missing from node {}",
                    self.seed,
                    node.node_id()
                );
            }
        }
        assert!(
            self.acked_after_heal > 0,
            "seed {}: no proposal committed after the network healed ({} before)",
            self.seed,
            self.acked.len()
        );
    }
}

fn run_seed(seed: u64) {
    Sim::new(seed).run();
}

#[test]
fn the_metadata_quorum_keeps_its_invariants_under_faults() {
    let seeds: Vec<u64> = match std::env::var("STROM_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("STROM_SIM_SEED is a number")],
        Err(_) => {
            let n: u64 = std::env::var("STROM_SIM_SEEDS")
                .map(|n| n.parse().expect("STROM_SIM_SEEDS is a number"))
                .unwrap_or(1_000);
            (0..n).collect()
        }
    };
    let failures: Vec<(u64, String)> = std::thread::scope(|s| {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let seeds = &seeds;
                s.spawn(move || {
                    let mut failures = Vec::new();
                    for &seed in seeds.iter().skip(w).step_by(workers) {
                        if let Err(panic) = std::panic::catch_unwind(|| run_seed(seed)) {
                            let message = panic
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default();
                            failures.push((seed, message));
                        }
                    }
                    failures
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed; replay one with STROM_SIM_SEED=<seed> cargo test -p strom-metadata --test simulation:\n{}",
        failures.len(),
        seeds.len(),
        failures
            .iter()
            .map(|(seed, message)| format!("  seed {seed}: {message}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
