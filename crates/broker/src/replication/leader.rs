//! A partition leader's view of its followers, without I/O: the high watermark and the in-sync replica set.
//!
//! Kafka's rules, as the leader applies them:
//! - A follower's fetch at offset `o` says it has every record below `o` (its log end offset). It is *caught up*
//!   at that moment if `o` reaches the leader's log end offset as of the follower's previous fetch, so a follower
//!   that keeps fetching under steady load counts as caught up even though new records keep arriving.
//! - The high watermark is the smallest log end offset among the ISR, the leader included, and never moves back.
//! - A follower outside the ISR joins it (an expansion proposed to the controller) once its log end offset
//!   reaches the high watermark and it has caught up with the leader's current epoch.
//! - An ISR follower not caught up for `replica.lag.time.max.ms` leaves it (a shrink proposed to the
//!   controller); the leader always stays.
//! - One ISR change is in flight at a time. Until the controller commits it, the high watermark is computed over
//!   the *maximal* ISR (the current one plus a pending addition), so a shrink never advances the high watermark
//!   on the strength of a removal that may not commit, and an added follower already holds it back (KIP-497's
//!   reasoning).
//!
//! `Partition` feeds fetches, appends, ticks and committed metadata in, and acts on what comes out: publish the
//! high watermark, wake acks=all producers and consumers, send the proposed ISR to the controller.

use std::collections::{BTreeMap, BTreeSet};

/// What one follower has, as the leader last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    pub log_end_offset: i64,
    pub last_fetch_ms: u64,
    /// When it last was caught up (see the module doc); 0 if never.
    pub last_caught_up_ms: u64,
    /// The leader's log end offset when this follower last fetched.
    leader_end_at_last_fetch: i64,
}

/// Outputs: a new high watermark to publish, and an ISR change to propose.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Effects {
    pub high_watermark: Option<i64>,
    pub propose_isr: Option<Vec<i32>>,
}

#[derive(Debug, Clone)]
pub struct LeaderState {
    leader_id: i32,
    leader_epoch: i32,
    /// The leader's log end offset when it became leader: a follower must reach it to join the ISR, so it has
    /// everything of earlier epochs the new leader kept.
    epoch_start_offset: i64,
    replicas: Vec<i32>,
    isr: BTreeSet<i32>,
    /// The ISR proposed and not yet committed.
    pending_isr: Option<BTreeSet<i32>>,
    followers: BTreeMap<i32, FollowerProgress>,
    log_end_offset: i64,
    high_watermark: i64,
    lag_time_max_ms: u64,
    /// The high watermark advances only while the ISR holds this many replicas (KIP-966): so a replica that left
    /// a smaller ISR holds every committed record and may lead if the ISR is lost (an eligible leader replica).
    min_isr: usize,
}

impl LeaderState {
    /// A leader taking over at `now_ms` with its log ending at `log_end_offset`. The high watermark starts where
    /// the previous one was known to be (a new leader never exposes less than what consumers saw).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        leader_id: i32,
        leader_epoch: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        log_end_offset: i64,
        high_watermark: i64,
        lag_time_max_ms: u64,
        now_ms: u64,
    ) -> Self {
        let followers = replicas
            .iter()
            .filter(|r| **r != leader_id)
            .map(|r| {
                (
                    *r,
                    FollowerProgress {
                        log_end_offset: -1,
                        last_fetch_ms: now_ms,
                        // Followers in the ISR get a full lag window to show up before they are removed.
                        last_caught_up_ms: now_ms,
                        leader_end_at_last_fetch: log_end_offset,
                    },
                )
            })
            .collect();
        Self {
            leader_id,
            leader_epoch,
            epoch_start_offset: log_end_offset,
            replicas,
            isr: isr.into_iter().collect(),
            pending_isr: None,
            followers,
            log_end_offset,
            high_watermark: high_watermark.min(log_end_offset),
            lag_time_max_ms,
            min_isr: 1,
        }
    }

    /// `min.insync.replicas` for this partition (capped at its replicas): below it the high watermark stays.
    pub fn set_min_isr(&mut self, min_isr: usize) -> Effects {
        self.min_isr = min_isr.clamp(1, self.replicas.len().max(1));
        Effects {
            high_watermark: self.advance_high_watermark(),
            propose_isr: None,
        }
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The ISR change proposed and not yet committed, if any.
    pub fn pending_isr(&self) -> Option<Vec<i32>> {
        self.pending_isr
            .as_ref()
            .map(|p| p.iter().copied().collect())
    }

    pub fn isr(&self) -> Vec<i32> {
        self.isr.iter().copied().collect()
    }

    pub fn follower(&self, id: i32) -> Option<&FollowerProgress> {
        self.followers.get(&id)
    }

    /// Whether an acks=all write may be accepted: the ISR holds at least `min_insync_replicas` replicas
    /// (NOT_ENOUGH_REPLICAS otherwise).
    pub fn has_min_isr(&self, min_insync_replicas: usize) -> bool {
        self.isr.len() >= min_insync_replicas
    }

    /// Records below `offset` are on every ISR member: an acks=all write ending there may be acknowledged.
    pub fn is_replicated(&self, offset: i64) -> bool {
        self.high_watermark >= offset
    }

    /// The leader appended: its log now ends at `log_end_offset`.
    pub fn on_append(&mut self, log_end_offset: i64) -> Effects {
        self.log_end_offset = self.log_end_offset.max(log_end_offset);
        Effects {
            high_watermark: self.advance_high_watermark(),
            propose_isr: None,
        }
    }

    /// A follower fetched at `fetch_offset`. Fetches from replicas this partition does not have are ignored
    /// (the handler answers them with NOT_LEADER_OR_FOLLOWER before they get here).
    pub fn on_follower_fetch(&mut self, replica: i32, fetch_offset: i64, now_ms: u64) -> Effects {
        let leader_end = self.log_end_offset;
        let Some(progress) = self.followers.get_mut(&replica) else {
            return Effects::default();
        };
        if fetch_offset >= progress.leader_end_at_last_fetch || fetch_offset >= leader_end {
            progress.last_caught_up_ms = now_ms;
        }
        progress.log_end_offset = fetch_offset.min(leader_end);
        progress.last_fetch_ms = now_ms;
        progress.leader_end_at_last_fetch = leader_end;
        let mut effects = Effects {
            high_watermark: self.advance_high_watermark(),
            propose_isr: None,
        };
        let progress = self.followers[&replica];
        if self.pending_isr.is_none()
            && !self.isr.contains(&replica)
            && progress.log_end_offset >= self.high_watermark
            && progress.log_end_offset >= self.epoch_start_offset
        {
            let mut next = self.isr.clone();
            next.insert(replica);
            effects.propose_isr = Some(next.iter().copied().collect());
            self.pending_isr = Some(next);
        }
        effects
    }

    /// Time passes: ISR followers that have not caught up for `replica.lag.time.max.ms` are proposed for removal.
    pub fn tick(&mut self, now_ms: u64) -> Effects {
        if self.pending_isr.is_some() {
            return Effects::default();
        }
        let lagging: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|r| *r != self.leader_id)
            .filter(|r| {
                self.followers.get(r).is_none_or(|p| {
                    now_ms.saturating_sub(p.last_caught_up_ms) > self.lag_time_max_ms
                })
            })
            .collect();
        if lagging.is_empty() {
            return Effects::default();
        }
        let next: BTreeSet<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|r| !lagging.contains(r))
            .collect();
        let propose = next.iter().copied().collect();
        self.pending_isr = Some(next);
        Effects {
            high_watermark: None,
            propose_isr: Some(propose),
        }
    }

    /// The partition's replicas changed under this leader (a reassignment): new replicas become followers the
    /// leader tracks (they join the ISR once caught up, as any follower), replicas gone are forgotten. The ISR
    /// comes with [`LeaderState::on_isr_committed`].
    pub fn set_replicas(&mut self, replicas: Vec<i32>, now_ms: u64) {
        let leader_end = self.log_end_offset;
        self.followers.retain(|r, _| replicas.contains(r));
        for r in replicas.iter().filter(|r| **r != self.leader_id) {
            self.followers.entry(*r).or_insert(FollowerProgress {
                log_end_offset: -1,
                last_fetch_ms: now_ms,
                last_caught_up_ms: now_ms,
                leader_end_at_last_fetch: leader_end,
            });
        }
        self.replicas = replicas;
    }

    /// The controller committed (or refused: pass the ISR it holds) an ISR for this partition.
    pub fn on_isr_committed(&mut self, isr: Vec<i32>) -> Effects {
        self.isr = isr.into_iter().collect();
        self.pending_isr = None;
        Effects {
            high_watermark: self.advance_high_watermark(),
            propose_isr: None,
        }
    }

    fn advance_high_watermark(&mut self) -> Option<i64> {
        if self.isr.len() < self.min_isr {
            return None;
        }
        // The maximal ISR without building it (this runs on every append): duplicates do not change a minimum.
        let min = self
            .isr
            .iter()
            .chain(self.pending_isr.iter().flatten())
            .map(|r| {
                if *r == self.leader_id {
                    self.log_end_offset
                } else {
                    self.followers.get(r).map_or(-1, |p| p.log_end_offset)
                }
            })
            .min()
            .unwrap_or(self.log_end_offset);
        if min > self.high_watermark {
            self.high_watermark = min;
            Some(min)
        } else {
            None
        }
    }

    pub fn replicas(&self) -> &[i32] {
        &self.replicas
    }
}

#[cfg(test)]
mod tests;
