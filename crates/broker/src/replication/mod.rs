//! Partition replication: followers copy their leader's log by fetching from it, the leader tracks them, computes
//! the high watermark and keeps the ISR in the metadata log.
//!
//! - `leader.rs`: the leader's view of its followers as a state machine without I/O (high watermark, ISR
//!   shrink and expansion). `Partition` holds one while it leads.
//! - `follower.rs`: what a follower does with one partition's fetch response, without I/O.
//! - `fetcher.rs`: one task per leader broker this broker follows partitions of, fetching with Kafka's Fetch
//!   (replica id set) over an ordinary client connection.
//! - [`ReplicaManager`] (here): starts and stops fetchers as leadership moves, ticks leaders (ISR shrink), sends
//!   their ISR changes to the controller (AlterPartition) and checkpoints high watermarks.

pub mod fetcher;
pub mod follower;
pub mod leader;
pub mod quota;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use strom_metadata::codes;
use strom_metadata::ControllerRequest;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cluster::Cluster;
use crate::config::BrokerConfig;
use crate::partition::{IsrProposal, Partition};
use crate::topics::Topics;

/// Milliseconds on a monotonic clock (replica lag is measured on it, never on the wall clock).
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// How long an ISR change may take to reach the controller before the leader gives up on it.
const ALTER_PARTITION_TIMEOUT: Duration = Duration::from_secs(10);

/// The pause before an ISR change the controller failed to handle is sent again.
const ALTER_PARTITION_RETRY_BACKOFF: Duration = Duration::from_millis(200);

pub struct ReplicaManager {
    config: Arc<BrokerConfig>,
    topics: Arc<Topics>,
    cluster: Arc<Cluster>,
    /// The replication throttles (`quota.rs`): the leader's in the Fetch handler, the follower's in `fetcher.rs`.
    pub quotas: Arc<quota::ReplicationQuotas>,
}

impl ReplicaManager {
    pub fn new(
        config: Arc<BrokerConfig>,
        topics: Arc<Topics>,
        cluster: Arc<Cluster>,
        quotas: Arc<quota::ReplicationQuotas>,
    ) -> Arc<Self> {
        Arc::new(Self {
            quotas,
            config,
            topics,
            cluster,
        })
    }

    /// Runs the fetchers and the leaders' clock until `shutdown`.
    pub fn start(self: &Arc<Self>, shutdown: watch::Receiver<bool>) {
        tokio::spawn(self.clone().manage_fetchers(shutdown.clone()));
        tokio::spawn(self.clone().tick_leaders(shutdown));
    }

    /// Sends a leader's ISR change to the controller, as Kafka's AlterPartitionManager does: the committed change
    /// reaches the leader through the metadata image (`Partition::become_leader`). Without an answer the outcome
    /// is unknown (the change may be committed), so the proposal stays pending and is sent again while it is
    /// still this leader's pending change; falling back to the ISR of this broker's own, possibly older, metadata
    /// could let the high watermark pass a replica the controller already counts in the ISR. A refusal at the
    /// proposal's partition epoch (INELIGIBLE_REPLICA, INVALID_REQUEST: the controller checks the epochs first)
    /// sends the leader back to the ISR it holds; a stale epoch or leadership means this broker's metadata is
    /// behind, and the image settles it; anything else is sent again after a pause.
    pub fn propose_isr(self: &Arc<Self>, partition: Arc<Partition>, proposal: IsrProposal) {
        let this = self.clone();
        tokio::spawn(async move {
            let request = ControllerRequest::AlterPartition {
                broker_id: this.config.node_id,
                topic_id: partition.topic_id.to_string(),
                partition: partition.index,
                leader_epoch: proposal.leader_epoch,
                partition_epoch: proposal.partition_epoch,
                isr: proposal.isr.clone(),
            };
            loop {
                tracing::info!(partition = %partition.name(), isr = ?proposal.isr, leader_epoch = proposal.leader_epoch, partition_epoch = proposal.partition_epoch, "proposing ISR change");
                let error = match this
                    .cluster
                    .request(request.clone(), ALTER_PARTITION_TIMEOUT)
                    .await
                {
                    Ok(_) => {
                        // This broker's image is now at least where the controller was when it answered. A
                        // committed change moved the partition epoch, and applying it cleared the proposal. If
                        // the epoch did not move, the controller had nothing to change (the committed ISR is
                        // already the proposed one): the leader takes it, or the proposal would stay pending for
                        // good and no later ISR change could start.
                        partition.isr_proposal_unchanged(&proposal);
                        return;
                    }
                    Err(e) => e,
                };
                tracing::info!(partition = %partition.name(), isr = ?proposal.isr, error = %error, "ISR change not accepted");
                match error.code {
                    codes::INELIGIBLE_REPLICA | codes::INVALID_REQUEST => {
                        partition.isr_proposal_refused(&proposal);
                        return;
                    }
                    codes::FENCED_LEADER_EPOCH
                    | codes::INVALID_UPDATE_VERSION
                    | codes::NOT_LEADER_OR_FOLLOWER
                    | codes::UNKNOWN_TOPIC_OR_PARTITION => return,
                    _ if partition.isr_proposal_pending(&proposal) => {
                        if error.code != codes::REQUEST_TIMED_OUT
                            && error.code != codes::NOT_CONTROLLER
                        {
                            tokio::time::sleep(ALTER_PARTITION_RETRY_BACKOFF).await;
                        }
                        continue;
                    }
                    _ => return,
                }
            }
        });
    }

    /// Keeps one fetcher per broker that leads a partition this broker follows.
    async fn manage_fetchers(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut image = self.cluster.image_watch();
        let mut fetchers: HashMap<i32, JoinHandle<()>> = HashMap::new();
        loop {
            let mut leaders: Vec<i32> = self
                .followed()
                .into_iter()
                .map(|(leader, _, _)| leader)
                .collect();
            leaders.sort_unstable();
            leaders.dedup();
            fetchers.retain(|leader, task| {
                let keep = leaders.contains(leader) && !task.is_finished();
                if !keep {
                    task.abort();
                }
                keep
            });
            for leader in leaders {
                fetchers.entry(leader).or_insert_with(|| {
                    tokio::spawn(fetcher::run(self.clone(), leader, shutdown.clone()))
                });
            }
            tokio::select! {
                changed = image.changed() => if changed.is_err() { break },
                _ = shutdown.changed() => break,
            }
        }
        for (_, task) in fetchers {
            task.abort();
        }
    }

    /// Every partition this broker follows: (leader, leader epoch, partition).
    pub(crate) fn followed(&self) -> Vec<(i32, i32, Arc<Partition>)> {
        let mut out = Vec::new();
        for topic in self.topics.all() {
            for p in &topic.local {
                if let Some((leader, epoch)) = p.following() {
                    if leader >= 0 && leader != self.config.node_id {
                        out.push((leader, epoch, p.clone()));
                    }
                }
            }
        }
        out
    }

    /// The leaders' clock: ISR shrinks for followers that stopped keeping up, and high watermark checkpoints.
    async fn tick_leaders(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let period =
            Duration::from_millis((self.config.replica_lag_time_max_ms / 4).clamp(10, 1000));
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let checkpoint_every =
            Duration::from_millis(self.config.replica_high_watermark_checkpoint_interval_ms);
        let mut last_checkpoint = Instant::now();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => break,
            }
            let now = now_ms();
            for topic in self.topics.all() {
                for p in &topic.led {
                    if let Some(proposal) = p.tick(now) {
                        self.propose_isr(p.clone(), proposal);
                    }
                }
            }
            if last_checkpoint.elapsed() >= checkpoint_every {
                last_checkpoint = Instant::now();
                let topics = self.topics.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    for topic in topics.all() {
                        for p in &topic.local {
                            match p.checkpoint_high_watermark() {
                                // Deleted (its topic was) since the list was taken: nothing to checkpoint.
                                Ok(()) | Err(crate::partition::PartitionError::Closed(_)) => {}
                                Err(e) => {
                                    tracing::warn!(partition = %p.name(), error = %e, "cannot checkpoint the high watermark")
                                }
                            }
                        }
                    }
                })
                .await;
            }
        }
    }

    pub(crate) fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub(crate) fn cluster(&self) -> &Cluster {
        &self.cluster
    }
}
