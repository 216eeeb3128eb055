//! The task that drives this node's [`QuorumNode`]: ticks it on the clock, steps it with messages from peers,
//! proposes what the [`Controller`] decides while this node leads, makes its output durable before anything
//! leaves the node, sends its messages, applies what commits, and publishes the new image.
//!
//! One task owns the node, so the Raft state needs no lock; everything else talks to it through [`Command`]s.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use strom_metadata::{
    codes, Applied, Controller, ControllerConfig, ControllerError, ControllerReply,
    ControllerRequest, Decision, MetadataDisk, MetadataImage, ProposalError, ProposalId,
    QuorumNode, QuorumStatus, RaftMessage, RecordBatch, Rejected,
};
use tokio::sync::{mpsc, oneshot, watch};

use super::peers::Peers;

pub type ControllerResult = Result<(ControllerReply, u64), ControllerError>;

pub enum Command {
    Raft(RaftMessage),
    Controller {
        request: ControllerRequest,
        reply: oneshot::Sender<ControllerResult>,
    },
    Status {
        reply: oneshot::Sender<QuorumStatus>,
    },
    /// Hand leadership to another voter before this node stops.
    Resign,
    /// A broker-only node asks for what was committed after `from`; answered when there is something.
    FetchMetadata {
        from: u64,
        reply: oneshot::Sender<Fetched>,
    },
}

/// The image (when `from` is older than the log kept), the batches after it, and the leader.
pub type Fetched = (Option<MetadataImage>, Vec<(u64, RecordBatch)>, Option<i32>);

/// The most entries one fetch returns.
const MAX_FETCH_ENTRIES: usize = 1000;

/// Called with every batch of committed entries, after the image has them and before it is published: the
/// broker opens and removes partition logs here, so whoever sees the new image finds the logs in place.
pub type OnApplied = Arc<dyn Fn(&MetadataImage, &[Applied]) + Send + Sync>;

pub struct QuorumDriver {
    pub node: QuorumNode,
    pub disk: Arc<Mutex<MetadataDisk>>,
    pub peers: Peers,
    pub controller_config: ControllerConfig,
    pub tick: Duration,
    pub image_tx: watch::Sender<Arc<MetadataImage>>,
    pub leader_tx: watch::Sender<Option<i32>>,
    pub on_applied: OnApplied,
}

struct Pending {
    reply: ControllerReply,
    to: Option<oneshot::Sender<ControllerResult>>,
    batch: RecordBatch,
    /// The term it was proposed in: only the current term's proposals can still commit in proposal order.
    term: u64,
}

struct Running {
    d: QuorumDriver,
    controller: Option<Controller>,
    /// This node's proposals not yet committed, in log order.
    pending: BTreeMap<ProposalId, Pending>,
    /// The committed image with every pending proposal applied: what the log will say once they commit. The
    /// controller decides against it (as KRaft's controller does against its uncommitted state), so a decision
    /// never contradicts one proposed just before it. `None` when nothing is pending.
    speculative: Option<MetadataImage>,
    /// Metadata fetches waiting for the next commit.
    parked: Vec<(u64, oneshot::Sender<Fetched>)>,
    started: Instant,
}

impl QuorumDriver {
    pub fn spawn(
        self,
        mut commands: mpsc::Receiver<Command>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut r = Running {
                d: self,
                controller: None,
                pending: BTreeMap::new(),
                speculative: None,
                parked: Vec::new(),
                started: Instant::now(),
            };
            let mut ticker = tokio::time::interval(r.d.tick);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // What the log already committed is applied before anything else happens.
            if let Err(e) = r.process().await {
                tracing::error!(error = %e, "the metadata log cannot be written; this node stops taking part in the quorum");
                return;
            }
            loop {
                tokio::select! {
                    _ = ticker.tick() => r.tick(),
                    command = commands.recv() => match command {
                        Some(c) => r.command(c),
                        None => break,
                    },
                    _ = shutdown.changed() => break,
                }
                // Take whatever else is queued, so one fsync covers it all.
                while let Ok(c) = commands.try_recv() {
                    r.command(c);
                }
                if let Err(e) = r.process().await {
                    tracing::error!(error = %e, "the metadata log cannot be written; this node stops taking part in the quorum");
                    break;
                }
            }
            r.fail_pending();
        })
    }
}

impl Running {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The state the controller decides against (see `speculative`).
    fn decision_image(&self) -> &MetadataImage {
        self.speculative.as_ref().unwrap_or(self.d.node.image())
    }

    /// Rebuilds `speculative` from the committed image and what is still pending.
    fn respeculate(&mut self) {
        if self.pending.is_empty() {
            self.speculative = None;
            return;
        }
        let term = self.d.node.term();
        if !self.pending.values().any(|p| p.term == term) {
            self.speculative = None;
            return;
        }
        let mut image = self.d.node.image().clone();
        for p in self.pending.values().filter(|p| p.term == term) {
            let index = image.applied_index + 1;
            if image.apply_batch(index, &p.batch).is_err() {
                image.skip(index);
            }
        }
        self.speculative = Some(image);
    }

    fn tick(&mut self) {
        self.d.node.tick();
        let now = self.now_ms();
        // Each batch is decided against the image with the earlier ones applied (`propose` adds them to the
        // decision image), so the controller is asked again until it has nothing more.
        loop {
            let Some(controller) = self.controller.as_mut() else {
                return;
            };
            let image = self.speculative.as_ref().unwrap_or(self.d.node.image());
            let batches = controller.tick(now, image);
            if batches.is_empty() {
                return;
            }
            for batch in batches {
                tracing::info!(records = ?batch.records.first(), "controller timer");
                self.propose(batch, ControllerReply::Done, None);
            }
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Raft(m) => self.d.node.step(m),
            Command::Status { reply } => {
                let _ = reply.send(self.d.node.status());
            }
            Command::FetchMetadata { from, reply } => match self.fetched(from) {
                Some(f) => {
                    let _ = reply.send(f);
                }
                None => {
                    self.parked.retain(|(_, r)| !r.is_closed());
                    self.parked.push((from, reply));
                }
            },
            Command::Resign => {
                let status = self.d.node.status();
                if self.d.node.is_leader() {
                    let me = self.d.node.node_id();
                    if let Some(to) = status
                        .voters
                        .iter()
                        .filter(|v| v.node_id != me)
                        .max_by_key(|v| v.matched_index)
                    {
                        self.d.node.transfer_leadership(to.node_id);
                    }
                }
            }
            Command::Controller { request, reply } => {
                let now = self.now_ms();
                let image = self.speculative.as_ref().unwrap_or(self.d.node.image());
                let Some(controller) = self.controller.as_mut() else {
                    let _ = reply.send(Err(not_controller(self.d.node.leader())));
                    return;
                };
                match controller.handle(now, image, request) {
                    Ok(Decision::Reply(r)) => {
                        let _ = reply.send(Ok((r, self.d.node.image().applied_index)));
                    }
                    Ok(Decision::Propose(batch, r)) => self.propose(batch, r, Some(reply)),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
        }
    }

    /// What a follower of the metadata log at `from` lacks, or `None` when it has everything applied here.
    fn fetched(&self, from: u64) -> Option<Fetched> {
        let image = self.d.node.image();
        let leader = self.d.node.leader();
        if from >= image.applied_index {
            return None;
        }
        let log = self.d.node.log();
        if from < log.snapshot_index() {
            return Some((Some(image.clone()), Vec::new(), leader));
        }
        let batches = log.batches(from, image.applied_index, MAX_FETCH_ENTRIES);
        Some((None, batches, leader))
    }

    fn propose(
        &mut self,
        batch: RecordBatch,
        reply: ControllerReply,
        to: Option<oneshot::Sender<ControllerResult>>,
    ) {
        let mut next = self.decision_image().clone();
        let index = next.applied_index + 1;
        if let Err(r) = next.apply_batch(index, &batch) {
            // It would be rejected when it commits: say so now instead of writing it to the log.
            if let Some(to) = to {
                let _ = to.send(Err(rejected(r)));
            }
            return;
        }
        match self.d.node.propose(&batch) {
            Ok(id) => {
                self.pending.insert(
                    id,
                    Pending {
                        reply,
                        to,
                        batch,
                        term: self.d.node.term(),
                    },
                );
                self.speculative = Some(next);
            }
            Err(e) => {
                tracing::debug!(error = %e, "proposal refused");
                if let Some(to) = to {
                    let _ = to.send(Err(not_controller(self.d.node.leader())));
                }
            }
        }
    }

    async fn process(&mut self) -> std::io::Result<()> {
        let out = self.d.node.poll();
        if !out.persist.is_empty() {
            let disk = self.d.disk.clone();
            let ops = out.persist;
            tokio::task::spawn_blocking(move || disk.lock().persist(&ops))
                .await
                .map_err(std::io::Error::other)?
                .map_err(std::io::Error::other)?;
        }
        let settled = !out.applied.is_empty() || !out.proposals.is_empty();
        for m in out.messages {
            self.d.peers.send(m);
        }
        if !out.applied.is_empty() {
            let image = self.d.node.image().clone();
            let on_applied = self.d.on_applied.clone();
            let applied = out.applied;
            let image = tokio::task::spawn_blocking(move || {
                on_applied(&image, &applied);
                image
            })
            .await
            .map_err(std::io::Error::other)?;
            self.d.image_tx.send_replace(Arc::new(image));
            for (from, reply) in std::mem::take(&mut self.parked) {
                match self.fetched(from) {
                    Some(f) => {
                        let _ = reply.send(f);
                    }
                    None => self.parked.push((from, reply)),
                }
            }
        }
        for (id, result) in out.proposals {
            let Some(Pending { reply, to, .. }) = self.pending.remove(&id) else {
                continue;
            };
            let result = result.map(|index| (reply, index)).map_err(|e| match e {
                ProposalError::Rejected(r) => rejected(r),
                other => ControllerError::new(codes::NOT_CONTROLLER, other.to_string()),
            });
            if let Some(to) = to {
                let _ = to.send(result);
            }
        }
        let leader = self.d.node.leader();
        self.d.leader_tx.send_if_modified(|current| {
            let changed = *current != leader;
            *current = leader;
            changed
        });
        if settled {
            self.respeculate();
        }
        // A new leader's controller waits until the entries of earlier terms are applied: until then the image
        // is not the state its proposals will follow.
        match (self.d.node.is_leader(), self.controller.is_some()) {
            (true, false) if self.d.node.is_settled_leader() => {
                tracing::info!(
                    node = self.d.node.node_id(),
                    term = self.d.node.term(),
                    "this node is the active controller"
                );
                self.controller = Some(Controller::new(
                    self.d.controller_config.clone(),
                    self.d.node.image(),
                    self.now_ms(),
                ));
            }
            (false, true) => {
                tracing::info!(leader = ?leader, "this node is no longer the active controller");
                self.controller = None;
                self.pending_lost();
            }
            _ => {}
        }
        Ok(())
    }

    /// Leadership is lost: whether the pending proposals commit is unknown (a new leader may keep or drop them),
    /// so the speculation built on them goes; their requesters hear when the log decides, or time out.
    fn pending_lost(&mut self) {
        self.speculative = None;
    }

    fn fail_pending(&mut self) {
        for (_, Pending { to, .. }) in std::mem::take(&mut self.pending) {
            if let Some(to) = to {
                let _ = to.send(Err(ControllerError::new(
                    codes::NOT_CONTROLLER,
                    "this node is shutting down",
                )));
            }
        }
    }
}

pub fn not_controller(leader: Option<i32>) -> ControllerError {
    ControllerError::new(
        codes::NOT_CONTROLLER,
        match leader {
            Some(l) => format!("this node is not the active controller; node {l} is"),
            None => "the metadata quorum has no leader right now".to_string(),
        },
    )
}

fn rejected(r: Rejected) -> ControllerError {
    let code = match &r {
        Rejected::TopicExists(_) => codes::TOPIC_ALREADY_EXISTS,
        Rejected::UnknownTopic(_)
        | Rejected::UnknownTopicId(_)
        | Rejected::UnknownPartition { .. } => codes::UNKNOWN_TOPIC_OR_PARTITION,
        Rejected::StaleBrokerEpoch { .. } => codes::STALE_BROKER_EPOCH,
        // Raced with another proposal of the same kind: asking again gets a fresh decision.
        Rejected::StaleProducerIds { .. } | Rejected::PartitionExists { .. } => {
            codes::NOT_CONTROLLER
        }
        Rejected::Undecodable { .. } => codes::UNKNOWN_SERVER_ERROR,
    };
    ControllerError::new(code, r.to_string())
}
