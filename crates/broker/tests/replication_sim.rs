//! A seeded, deterministic simulation of one partition's replication across three brokers, without I/O.
//!
//! The real state machines run unchanged: the leader's `LeaderState` (high watermark, ISR shrink and
//! expansion), the follower's `follower::decide` and the leader's `follower::diverging_epoch` (KIP-320), a
//! `LeaderEpochCache` per replica, and the metadata `Controller` with its `MetadataImage` (registration,
//! heartbeats and fencing, AlterPartition, leader election from the ISR, preferred-leader rebalance). The glue
//! between them mirrors the broker's, file by file: `Partition` (roles, publishing the high watermark,
//! `follow_leader_offsets`), `handlers/fetch.rs` (a follower's fetch at the leader), `replication/fetcher.rs`
//! (applying the answer), `ReplicaManager::propose_isr` (AlterPartition and its 10 s timeout), `topics.rs`
//! (metadata into roles), `handlers/produce.rs` (acks=all and min.insync.replicas), `cluster/lifecycle.rs`
//! and `server.rs` (register, heartbeat, serve only once unfenced). When one of those changes, the glue here
//! (`cluster.rs`, `traffic.rs`) must follow.
//!
//! # The model
//! - Brokers 1, 2 and 3 host one partition with replicas [1, 2, 3] and min.insync.replicas = 2. The controller
//!   is one always-available node that commits what it decides at once (the quorum's own faults are simulated
//!   in `crates/metadata/tests/simulation.rs`).
//! - A replica's log is a `Vec` of records (leader epoch, unique id), one record per batch, from offset 0 (no
//!   retention: the log start offset stays 0, so `Reset` never happens), plus its `LeaderEpochCache`.
//! - A crash is a process crash: the log survives whole (the page cache survives the process, and the leader
//!   fsyncs before an acks=all reply anyway), and so does the metadata log, which the restarted broker applies
//!   first. Its memory goes: role and leader state, broker epoch, fetches and AlterPartition calls in flight,
//!   waiting producers. It restarts from its last high watermark checkpoint (every 5 s), capped at its log end
//!   offset, and serves nothing (no produce, no fetch, no fetcher, no leader tick) until the controller
//!   unfences it: while its old session lives, the controller refuses its registration. Losing unflushed data
//!   to a power cut is not modelled: neither Kafka nor Strom promise durability when the last in-sync replica
//!   loses unflushed records (KIP-966), so these invariants would not hold.
//! - A broker applies the metadata at random moments, up to any committed entry after its own (an observer's
//!   fetch may end anywhere), often the latest. A broker can be cut off from the controller for 3 to 20 s: no
//!   heartbeats, no metadata, no AlterPartition. The controller then fences it and elects another leader from
//!   the ISR, while the old one, unaware, still acts as leader (a zombie) for followers as far behind as it.
//! - Brokers and controller talk through a bag of messages: a step delivers any one (so messages are delayed
//!   and overtake each other) or, rarely, loses one. Answers to a crashed broker are lost; requests it sent may
//!   still arrive. A follower gives up on a fetch after 5 s (the real fetcher waits 30.5 s; shorter so that
//!   a few hundred steps see it) and fetches again, so a leader may see an old fetch after a newer one. A
//!   leader answers a fetch at once (no long poll). A fetch answer that arrives after the follower's role
//!   changed is still applied as `fetcher::apply` would (the fetcher for that leader lives on while it has
//!   other partitions to fetch): only `Partition`'s role checks stop it.
//! - Producers send acks=all batches of 1 to 3 records to any broker that believes it leads. A record is
//!   *acknowledged* once that broker's published high watermark passes it while it still leads, with at least
//!   min.insync.replicas in its ISR then; NOT_ENOUGH_REPLICAS, NOT_ENOUGH_REPLICAS_AFTER_APPEND,
//!   NOT_LEADER_OR_FOLLOWER and a 30 s timeout do not count, and producers do not retry.
//! - Timing: heartbeats and leader ticks whenever time advances (50 ms to 1 s per step), broker sessions of
//!   9 s, `replica.lag.time.max.ms` = 10 s, preferred-leader rebalance every 20 s.
//!
//! # Invariants, checked after every step
//! 1. At most one broker leads each leader epoch, in the committed metadata and among brokers acting as leader;
//!    the committed leader epoch never decreases, nor does a broker's role epoch within one process. The
//!    committed metadata never makes a fenced broker the leader, and keeps one in the ISR only as the last
//!    member of an offline partition (the controller's own rule).
//! 2. A leader's published high watermark never decreases within one leadership (broker, process, epoch).
//!    Every record below an acting leader's high watermark is *committed*: all such prefixes agree offset by
//!    offset, and a broker acting as leader at epoch E holds, at the same offset with the same epoch, every
//!    record committed by a leader of epoch <= E (a zombie of an older epoch may lack newer commits).
//! 3. Every acknowledged record, and indeed every committed one, is at its offset with its epoch in the log of
//!    every member of the committed ISR (down members included: their logs survive).
//! 4. (a) Below min(its own high watermark, its log end offset), every replica holds exactly the committed
//!    records, so any two replicas are identical below the smaller of their two bounds. (b) A follower whose
//!    last applied answer (Append or CaughtUp) came from its current leader at its current epoch, while that
//!    leader still leads at that epoch, holds an exact prefix of the leader's log. Also: every record stays at
//!    the offset and epoch it was produced with, epochs never decrease along a log, and each log's epoch cache
//!    matches its records.
//! 5. When the faults stop the run heals (every broker up and reachable, messages delivered in order, rounds
//!    of metadata and fetches until the ISR is full and the high watermark reaches the log end), and then
//!    every replica's log and epoch cache equal the leader's, whose log holds each record at most once and
//!    every acknowledged record at its offset.
//!
//! # Bugs it found (fixed)
//! 1. `ReplicaManager::propose_isr`: when AlterPartition timed out the leader fell back to the ISR in its own
//!    metadata although the change might have committed, then acknowledged records a committed ISR member
//!    lacked (seeds 104 and 120 lost one once that member was elected). Now, as in Kafka, an unknown outcome
//!    keeps the proposal pending and sends it again; only INELIGIBLE_REPLICA reverts to the committed ISR.
//! 2. `Controller::tick`: the fences of several brokers whose sessions expired in one tick were decided against
//!    one image, so the second undid the first's election and could make a fenced broker the leader (seed 19).
//!    Now each call fences one broker and the caller asks again with the image that includes it.
//! 3. `fetcher::apply` / `Partition::follow_leader_offsets`: a CaughtUp answer from a deposed leader overwrote
//!    the high watermark of a replica that led by then (seed 13975). Now it applies only while the replica still
//!    follows at the fetch's leader epoch.
//!
//! # Running
//! `cargo test -p strom-broker --test replication_sim` runs seeds 0..1000 of 400 steps (a few seconds in a
//! debug build). `STROM_SIM_SEEDS=N` runs N seeds, `STROM_SIM_STEPS=N` sets the steps, and `STROM_SIM_SEED=S`
//! replays seed S printing its whole trace (add `-- --nocapture`). A failure names its seed, the state, and
//! the last 30 events.

// The root of a test crate looks for modules beside it; these live in the folder named after it.
#[path = "replication_sim/checks.rs"]
mod checks;
#[path = "replication_sim/cluster.rs"]
mod cluster;
#[path = "replication_sim/replica.rs"]
mod replica;
#[path = "replication_sim/traffic.rs"]
mod traffic;

use std::panic::{catch_unwind, AssertUnwindSafe};

use cluster::{Sim, Stats, DEFAULT_SEEDS, DEFAULT_STEPS};

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {value:?}")),
    )
}

/// Runs one seed: its counters and a description of its end state and last events, or on a violation (or a
/// panic) the report naming the seed.
fn run_seed(seed: u64, steps: usize, verbose: bool) -> Result<(Stats, String), String> {
    let mut sim = Sim::new(seed, verbose);
    let outcome = catch_unwind(AssertUnwindSafe(|| sim.run(steps)));
    let error = match outcome {
        Ok(Ok(())) => return Ok((sim.stats, sim.report("passed"))),
        Ok(Err(violation)) => violation,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            format!("panicked: {message}")
        }
    };
    Err(sim.report(&error))
}

#[test]
fn replication_keeps_every_acknowledged_record_through_faults() {
    let steps = env_number("STROM_SIM_STEPS").map_or(DEFAULT_STEPS, |s| s as usize);
    if let Some(seed) = env_number("STROM_SIM_SEED") {
        match run_seed(seed, steps, true) {
            Ok((stats, _)) => println!("seed {seed} passed: {stats:?}"),
            Err(report) => panic!("{report}"),
        }
        return;
    }
    let seeds = env_number("STROM_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
    let mut total = Stats::default();
    for seed in 0..seeds {
        match run_seed(seed, steps, false) {
            Ok((stats, _)) => total.add(&stats),
            Err(report) => panic!("{report}"),
        }
    }
    println!("{seeds} seeds x {steps} steps: {total:?}");
    // The faults and their consequences must actually happen, and often, or the runs prove little: each at
    // least once per ten seeds (a default run sees each several times per seed, except deposed leaders' appends
    // and diverging answers, about once per two seeds).
    if seeds >= 100 {
        for (what, count) in [
            ("acknowledged records", total.acked),
            ("leader changes", total.leader_changes),
            ("fences", total.fences),
            ("ISR shrinks", total.isr_shrinks),
            ("ISR expansions", total.isr_expansions),
            ("crashes", total.crashes),
            ("diverging-epoch answers", total.diverging),
            ("truncated records", total.truncated_records),
            ("appends by a deposed leader", total.zombie_appends),
            (
                "elections from eligible leader replicas",
                total.elr_elections,
            ),
        ] {
            assert!(
                count * 10 >= seeds,
                "{seeds} seeds produced only {count} {what}: the simulation no longer exercises them"
            );
        }
    }
}

#[test]
fn a_seed_replays_identically() {
    let first = run_seed(7, 200, false).expect("seed 7 passes");
    let second = run_seed(7, 200, false).expect("seed 7 passes");
    assert_eq!(format!("{:?}", first.0), format!("{:?}", second.0));
    assert_eq!(first.1, second.1);
}
