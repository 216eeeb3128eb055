//! The simulated cluster: its parameters, the event mix, the controller and metadata, time and faults.

use std::collections::{BTreeMap, VecDeque};

use strom_broker::replication::follower::FetchedPartition;
use strom_broker::replication::leader::LeaderState;
use strom_metadata::{
    codes, Controller, ControllerConfig, ControllerError, ControllerReply, ControllerRequest,
    Decision, Endpoint, MetadataImage, MetadataRecord, PartitionImage, RecordBatch,
};

use crate::replica::{Broker, Rec, Rng, Role};

pub const BROKERS: [i32; 3] = [1, 2, 3];
pub const TOPIC: &str = "events";
pub const TOPIC_ID: &str = "topic-events";
pub const MIN_INSYNC_REPLICAS: usize = 2;
/// `replica.lag.time.max.ms`, shorter than the default 30 s so that shrinks happen within a run.
pub const LAG_TIME_MAX_MS: u64 = 10_000;
/// `broker.session.timeout.ms` (the default).
pub const SESSION_TIMEOUT_MS: u64 = 9_000;
/// `leader.imbalance.check.interval.seconds`, shortened, so preferred-leader elections happen in a run.
pub const REBALANCE_INTERVAL_MS: u64 = 20_000;
/// `ReplicaManager`'s ALTER_PARTITION_TIMEOUT.
pub const ALTER_PARTITION_TIMEOUT_MS: u64 = 10_000;
pub const FETCH_TIMEOUT_MS: u64 = 5_000;
/// The produce request's `timeout.ms` (the Java client's default `request.timeout.ms`).
pub const PRODUCE_TIMEOUT_MS: u64 = 30_000;
/// `replica.high.watermark.checkpoint.interval.ms` (the default).
pub const HW_CHECKPOINT_INTERVAL_MS: u64 = 5_000;
pub const MAX_RECORDS_PER_FETCH: u64 = 4;
pub const DEFAULT_SEEDS: u64 = 1_000;
pub const DEFAULT_STEPS: usize = 400;
pub const HEAL_ROUNDS: usize = 200;
pub const TRACE_TAIL: usize = 30;

#[derive(Debug, Clone, Copy)]
pub enum Event {
    /// One message in flight reaches its destination (any one: messages overtake each other).
    Deliver,
    /// A follower with no fetch in flight to its leader sends one.
    Fetch,
    Produce,
    /// 50 ms to 1 s pass: heartbeats, leader ticks, checkpoints, timeouts, the controller's tick.
    Advance,
    /// One broker catches up with the metadata.
    Propagate,
    /// One message in flight is lost.
    Lose,
    Crash,
    Restart,
    /// One broker loses its connection to the controller for 3 to 20 s.
    Isolate,
}

/// How often each event is picked, relative to the others: mostly traffic, with a fault every few dozen steps
/// so that a run sees a few leader changes and still acknowledges records between them.
pub const EVENTS: [(Event, u64); 9] = [
    (Event::Deliver, 330),
    (Event::Fetch, 220),
    (Event::Produce, 130),
    (Event::Advance, 150),
    (Event::Propagate, 120),
    (Event::Lose, 12),
    (Event::Crash, 10),
    (Event::Restart, 20),
    (Event::Isolate, 10),
];

#[derive(Debug)]
pub enum Msg {
    Fetch {
        from: i32,
        to: i32,
        call: u64,
        current_leader_epoch: i32,
        fetch_offset: i64,
        last_fetched_epoch: i32,
    },
    FetchReply {
        from: i32,
        to: i32,
        inc: u32,
        call: u64,
        response: FetchedPartition,
    },
    Alter {
        from: i32,
        call: u64,
        request: ControllerRequest,
    },
    AlterReply {
        to: i32,
        inc: u32,
        call: u64,
        result: Result<(), i16>,
    },
}

impl Msg {
    /// Whether this message is bound for `broker` (lost when it crashes: its connections are gone).
    pub fn is_for(&self, broker: i32) -> bool {
        match self {
            Msg::Fetch { to, .. } | Msg::FetchReply { to, .. } | Msg::AlterReply { to, .. } => {
                *to == broker
            }
            Msg::Alter { .. } => false,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub produced: u64,
    pub acked: u64,
    pub leader_changes: u64,
    pub fences: u64,
    pub isr_shrinks: u64,
    pub isr_expansions: u64,
    pub crashes: u64,
    pub diverging: u64,
    pub truncated_records: u64,
    pub zombie_appends: u64,
    pub refused_alters: u64,
    pub stale_responses: u64,
    /// Leaders elected from the eligible leader replicas (KIP-966), not the ISR.
    pub elr_elections: u64,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.produced += o.produced;
        self.acked += o.acked;
        self.leader_changes += o.leader_changes;
        self.fences += o.fences;
        self.isr_shrinks += o.isr_shrinks;
        self.isr_expansions += o.isr_expansions;
        self.crashes += o.crashes;
        self.diverging += o.diverging;
        self.truncated_records += o.truncated_records;
        self.zombie_appends += o.zombie_appends;
        self.refused_alters += o.refused_alters;
        self.elr_elections += o.elr_elections;
        self.stale_responses += o.stale_responses;
    }
}

pub fn partition(image: &MetadataImage) -> &PartitionImage {
    &image.topics[TOPIC].partitions[&0]
}

pub fn idx(broker: i32) -> usize {
    (broker - 1) as usize
}

pub struct Sim {
    pub seed: u64,
    pub rng: Rng,
    pub verbose: bool,
    pub step: usize,
    pub now: u64,
    pub brokers: Vec<Broker>,
    pub controller: Controller,
    pub image: MetadataImage,
    pub index: u64,
    /// The image after each committed index, for brokers that are behind.
    pub history: Vec<MetadataImage>,
    pub net: Vec<Msg>,
    pub next_call: u64,
    /// Offset and epoch each record id was produced at.
    pub origins: Vec<(i64, i32)>,
    /// (offset, record) acknowledged to a producer.
    pub acked: Vec<(i64, Rec)>,
    /// The committed records by offset, with the epoch of the first leader that covered each.
    pub committed: Vec<(Rec, i32)>,
    pub epoch_leaders: BTreeMap<i32, i32>,
    pub violation: Option<String>,
    pub trace: VecDeque<String>,
    pub stats: Stats,
}

impl Sim {
    pub fn new(seed: u64, verbose: bool) -> Self {
        let image = MetadataImage::default();
        let config = ControllerConfig {
            session_timeout_ms: SESSION_TIMEOUT_MS,
            default_partitions: 1,
            default_replication_factor: 3,
            leader_rebalance: Some((REBALANCE_INTERVAL_MS, 10)),
            min_insync_replicas: MIN_INSYNC_REPLICAS as i32,
            // The simulation checks that no acknowledged record is lost: only clean elections.
            unclean_leader_election: false,
        };
        let controller = Controller::new(config, &image, 0);
        Self {
            seed,
            rng: Rng(seed),
            verbose,
            step: 0,
            now: 0,
            brokers: BROKERS.iter().map(|id| Broker::new(*id)).collect(),
            controller,
            history: vec![image.clone()],
            image,
            index: 0,
            net: Vec::new(),
            next_call: 0,
            origins: Vec::new(),
            acked: Vec::new(),
            committed: Vec::new(),
            epoch_leaders: BTreeMap::new(),
            violation: None,
            trace: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn note(&mut self, event: String) {
        let line = format!("#{} t={} {event}", self.step, self.now);
        if self.verbose {
            println!("{line}");
        }
        if self.trace.len() == TRACE_TAIL {
            self.trace.pop_front();
        }
        self.trace.push_back(line);
    }

    pub fn fail(&mut self, violation: String) {
        self.violation.get_or_insert(violation);
    }

    pub fn run(&mut self, steps: usize) -> Result<(), String> {
        self.set_up();
        self.after_step()?;
        for step in 1..=steps {
            self.step = step;
            self.random_event();
            self.after_step()?;
        }
        self.step = steps + 1;
        self.heal()?;
        self.check_healed()
    }

    /// Three registered, unfenced brokers and the topic, led by broker 1 with the ISR [1].
    pub fn set_up(&mut self) {
        for i in 0..BROKERS.len() {
            self.heartbeat(i);
        }
        for i in 0..BROKERS.len() {
            self.propagate(i, true);
            self.heartbeat(i);
        }
        let create = ControllerRequest::CreateTopic {
            name: TOPIC.into(),
            topic_id: TOPIC_ID.into(),
            partitions: 1,
            replication_factor: 3,
            assignments: Some(vec![BROKERS.to_vec()]),
            configs: Default::default(),
            validate_only: false,
        };
        self.request(create).expect("the topic is created");
        for i in 0..BROKERS.len() {
            self.propagate(i, true);
        }
    }

    pub fn random_event(&mut self) {
        let total: u64 = EVENTS.iter().map(|(_, w)| w).sum();
        let mut roll = self.rng.below(total);
        let event = EVENTS
            .iter()
            .find(|(_, w)| {
                let hit = roll < *w;
                roll = roll.saturating_sub(*w);
                hit
            })
            .map(|(e, _)| *e)
            .expect("the roll falls within the total");
        match event {
            Event::Deliver => self.deliver_random(),
            Event::Fetch => self.fetch_random(),
            Event::Produce => self.produce_random(),
            Event::Advance => {
                let ms = self.rng.range(50, 1_000);
                self.advance(ms);
            }
            Event::Propagate => {
                let i = self.rng.below(3) as usize;
                self.propagate(i, false);
            }
            Event::Lose => self.drop_random(),
            Event::Crash => {
                let up: Vec<usize> = (0..3).filter(|i| self.brokers[*i].up).collect();
                if let Some(i) = self.rng.pick(&up) {
                    self.crash(i);
                }
            }
            Event::Restart => {
                let down: Vec<usize> = (0..3).filter(|i| !self.brokers[*i].up).collect();
                if let Some(i) = self.rng.pick(&down) {
                    self.restart(i);
                }
            }
            Event::Isolate => {
                let i = self.rng.below(3) as usize;
                let ms = self.rng.range(3_000, 20_000);
                self.brokers[i].isolated_until_ms = self.now + ms;
                self.note(format!(
                    "broker {} cut off from the controller for {ms} ms",
                    self.brokers[i].id
                ));
            }
        }
    }

    // ---- The controller -------------------------------------------------------------------------------

    pub fn request(
        &mut self,
        request: ControllerRequest,
    ) -> Result<ControllerReply, ControllerError> {
        match self.controller.handle(self.now, &self.image, request)? {
            Decision::Reply(reply) => Ok(reply),
            Decision::Propose(batch, reply) => {
                self.commit(&batch)
                    .map_err(|e| ControllerError::new(codes::UNKNOWN_SERVER_ERROR, e))?;
                Ok(reply)
            }
        }
    }

    /// Commits a batch as the metadata log would, and checks the partition's leader epochs (invariant 1).
    pub fn commit(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let before = self
            .image
            .topics
            .get(TOPIC)
            .map(|_| partition(&self.image).clone());
        self.index += 1;
        let applied = self.image.apply_batch(self.index, batch);
        if applied.is_err() {
            self.image.skip(self.index);
        }
        self.history.push(self.image.clone());
        if let Err(e) = applied {
            return Err(e.to_string());
        }
        for r in &batch.records {
            if let MetadataRecord::FenceBroker { broker_id, .. } = r {
                self.stats.fences += 1;
                self.note(format!("controller fences broker {broker_id}"));
            }
        }
        let Some(after) = self
            .image
            .topics
            .get(TOPIC)
            .map(|_| partition(&self.image).clone())
        else {
            return Ok(());
        };
        if let Some(before) = before {
            if after.leader_epoch < before.leader_epoch {
                self.fail(format!(
                    "committed leader epoch went back from {} to {}",
                    before.leader_epoch, after.leader_epoch
                ));
            }
            if after.leader_epoch > before.leader_epoch {
                self.stats.leader_changes += 1;
                if !before.isr.contains(&after.leader) && before.elr.contains(&after.leader) {
                    self.stats.elr_elections += 1;
                }
            }
            if after.isr.len() < before.isr.len() {
                self.stats.isr_shrinks += 1;
            } else if after.isr.len() > before.isr.len() {
                self.stats.isr_expansions += 1;
            }
            if (after.leader, after.leader_epoch, &after.isr)
                != (before.leader, before.leader_epoch, &before.isr)
            {
                self.note(format!(
                    "committed: leader {} epoch {} isr {:?} (partition epoch {})",
                    after.leader, after.leader_epoch, after.isr, after.partition_epoch
                ));
            }
        }
        if after.leader >= 0 {
            self.claim_epoch(after.leader_epoch, after.leader, "committed metadata");
        }
        // A fenced broker leads nothing, and stays in an ISR only as the last member of an offline partition
        // (records.rs, `leaders_away_from`).
        let fenced = |b: &i32| self.image.brokers.get(b).is_none_or(|r| r.fenced);
        if fenced(&after.leader) && after.leader >= 0 {
            self.fail(format!(
                "committed metadata makes fenced broker {} the leader (epoch {}, isr {:?})",
                after.leader, after.leader_epoch, after.isr
            ));
        } else if after.isr.iter().any(fenced) && (after.leader >= 0 || after.isr.len() > 1) {
            self.fail(format!(
                "committed metadata keeps a fenced broker in the ISR {:?} of a partition led by {}",
                after.isr, after.leader
            ));
        }
        Ok(())
    }

    pub fn claim_epoch(&mut self, epoch: i32, leader: i32, by: &str) {
        let known = *self.epoch_leaders.entry(epoch).or_insert(leader);
        if known != leader {
            self.fail(format!(
                "two leaders for leader epoch {epoch}: {known} and {leader} ({by})"
            ));
        }
    }

    /// `BrokerLifecycle::heartbeat`: register first if this process has no broker epoch yet.
    pub fn heartbeat(&mut self, i: usize) {
        let b = &self.brokers[i];
        if !b.up || b.isolated(self.now) {
            return;
        }
        let (id, inc) = (b.id, b.incarnation);
        let epoch = match b.broker_epoch {
            Some(epoch) => epoch,
            None => {
                let register = ControllerRequest::RegisterBroker {
                    broker_id: id,
                    incarnation_id: format!("broker-{id}-{inc}"),
                    endpoint: Endpoint {
                        host: "sim".into(),
                        port: 9000 + id as u16,
                    },
                    rack: None,
                    // A crash here keeps the log (no power loss), so either answer is true of the data; an
                    // unclean one only takes the broker out of the eligible leader replicas, which must be safe.
                    clean_shutdown: self.rng.below(2) == 0,
                };
                match self.request(register) {
                    Ok(_) => {
                        let epoch = self.image.brokers[&id].broker_epoch;
                        self.brokers[i].broker_epoch = Some(epoch);
                        self.note(format!("broker {id} registers with broker epoch {epoch}"));
                        epoch
                    }
                    Err(e) => {
                        self.note(format!("broker {id} registration refused: {}", e.code));
                        return;
                    }
                }
            }
        };
        let applied_index = self.brokers[i]
            .image
            .as_ref()
            .map_or(0, |im| im.applied_index);
        let heartbeat = ControllerRequest::Heartbeat {
            broker_id: id,
            broker_epoch: epoch,
            applied_index,
            want_shutdown: false,
        };
        match self.request(heartbeat) {
            Ok(ControllerReply::Heartbeat { fenced: false, .. }) => self.brokers[i].joined = true,
            Ok(_) => {}
            Err(e) if e.code == codes::STALE_BROKER_EPOCH => self.brokers[i].broker_epoch = None,
            Err(_) => {}
        }
    }

    // ---- Metadata reaching a broker (topics.rs reconcile) ---------------------------------------------

    /// The broker applies what it fetched of the metadata log: up to the latest committed entry, or (in a
    /// random step) to any committed entry after its own, as an observer's fetch may end anywhere.
    pub fn propagate(&mut self, i: usize, to_latest: bool) {
        let b = &self.brokers[i];
        if !b.up || b.isolated(self.now) {
            return;
        }
        let current = b.image.as_ref().map_or(0, |im| im.applied_index);
        if current >= self.index {
            return;
        }
        let target = if to_latest || self.rng.below(2) == 0 {
            self.index
        } else {
            self.rng.range(current + 1, self.index)
        };
        self.brokers[i].image = Some(self.history[target as usize].clone());
        self.reconcile(i);
    }

    /// `Topics::reconcile`: the role the broker's metadata gives it.
    pub fn reconcile(&mut self, i: usize) {
        let Some(p) = self.brokers[i]
            .image
            .as_ref()
            .and_then(|im| im.topics.get(TOPIC).map(|_| partition(im).clone()))
        else {
            return;
        };
        if p.leader == self.brokers[i].id {
            self.become_leader(i, &p);
        } else {
            self.become_follower(i, p.leader, p.leader_epoch);
        }
    }

    /// `Partition::become_leader`.
    pub fn become_leader(&mut self, i: usize, p: &PartitionImage) {
        let now = self.now;
        let b = &mut self.brokers[i];
        let high_watermark = match &mut b.role {
            Role::Leader {
                state,
                partition_epoch,
            } if state.leader_epoch() == p.leader_epoch => {
                state.set_min_isr(MIN_INSYNC_REPLICAS);
                if *partition_epoch != p.partition_epoch {
                    *partition_epoch = p.partition_epoch;
                    state.on_isr_committed(p.isr.clone());
                }
                state.high_watermark()
            }
            _ => {
                let leo = b.log.leo();
                let mut state = LeaderState::new(
                    b.id,
                    p.leader_epoch,
                    p.replicas.clone(),
                    p.isr.clone(),
                    leo,
                    b.hw,
                    LAG_TIME_MAX_MS,
                    now,
                );
                b.leader_epoch = p.leader_epoch;
                state.set_min_isr(MIN_INSYNC_REPLICAS);
                let high_watermark = state.high_watermark();
                b.role = Role::Leader {
                    state,
                    partition_epoch: p.partition_epoch,
                };
                b.replicated.1 = true;
                b.converged_with = None;
                let line = format!(
                    "broker {} leads at epoch {} (leo {leo}, hw {}, isr {:?})",
                    b.id, p.leader_epoch, b.hw, p.isr
                );
                self.note(line);
                high_watermark
            }
        };
        self.brokers[i].publish(Some(high_watermark));
    }

    /// `Partition::become_follower`.
    pub fn become_follower(&mut self, i: usize, leader: i32, leader_epoch: i32) {
        let b = &mut self.brokers[i];
        if matches!(b.role, Role::Follower { leader: l, leader_epoch: e } if l == leader && e == leader_epoch)
        {
            return;
        }
        b.leader_epoch = leader_epoch;
        b.role = Role::Follower {
            leader,
            leader_epoch,
        };
        b.replicated.1 = false;
        b.converged_with = None;
        let line = format!("broker {} follows {leader} at epoch {leader_epoch}", b.id);
        self.note(line);
    }

    // ---- Time -----------------------------------------------------------------------------------------

    /// Time passes: heartbeats, leader ticks (ISR shrinks), high watermark checkpoints, timeouts, and the
    /// controller's own tick (fencing silent brokers, preferred-leader rebalance).
    pub fn advance(&mut self, ms: u64) {
        self.now += ms;
        let now = self.now;
        self.note(format!("{ms} ms pass"));
        for i in 0..self.brokers.len() {
            self.heartbeat(i);
            if !self.brokers[i].serving() {
                continue;
            }
            let b = &mut self.brokers[i];
            if let Role::Leader { state, .. } = &mut b.role {
                let effects = state.tick(now);
                self.apply_effects(i, effects);
            }
            let b = &mut self.brokers[i];
            if now - b.last_checkpoint_ms >= HW_CHECKPOINT_INTERVAL_MS {
                b.checkpointed_hw = b.hw;
                b.last_checkpoint_ms = now;
            }
            b.fetches.retain(|f| now - f.sent_ms < FETCH_TIMEOUT_MS);
            let (expired, waiting) = std::mem::take(&mut b.alter_calls)
                .into_iter()
                .partition(|c| now - c.sent_ms >= ALTER_PARTITION_TIMEOUT_MS);
            b.alter_calls = waiting;
            for call in expired {
                self.alter_timed_out(i, call);
            }
        }
        // As the quorum driver does: each batch is committed before the controller is asked again, so every
        // fence is decided against the image with the earlier ones applied.
        loop {
            let batches = self.controller.tick(now, &self.image);
            if batches.is_empty() {
                break;
            }
            for batch in batches {
                // A fence of a broker epoch that is gone is refused as a whole, as on the real log.
                let _ = self.commit(&batch);
            }
        }
    }

    // ---- Faults -----------------------------------------------------------------------------------------

    pub fn crash(&mut self, i: usize) {
        self.stats.crashes += 1;
        let b = &mut self.brokers[i];
        let id = b.id;
        b.up = false;
        b.joined = false;
        b.broker_epoch = None;
        b.role = Role::Unassigned;
        b.replicated.1 = false;
        b.fetches.clear();
        b.alter_calls.clear();
        b.waits.clear();
        b.converged_with = None;
        b.leadership_hw = None;
        self.net.retain(|m| !m.is_for(id));
        self.note(format!("broker {id} crashes"));
    }

    /// `Partition::open` after a crash: the log as it was, the checkpointed high watermark.
    pub fn restart(&mut self, i: usize) {
        let now = self.now;
        let b = &mut self.brokers[i];
        b.up = true;
        b.incarnation += 1;
        b.hw = b.checkpointed_hw.min(b.log.leo());
        b.replicated = (b.hw, false);
        b.leader_epoch = 0;
        b.last_role_epoch = -1;
        b.last_checkpoint_ms = now;
        b.isolated_until_ms = 0;
        let line = format!(
            "broker {} restarts (leo {}, hw {})",
            b.id,
            b.log.leo(),
            b.hw
        );
        self.note(line);
        // The metadata it had is on disk and applied before anything else happens (cluster/mod.rs).
        self.reconcile(i);
    }
}
