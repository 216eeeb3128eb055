//! The invariants, checked after every step, and the healing at the end of a run (numbered as in the crate
//! doc).

use crate::cluster::*;
use crate::replica::{Broker, Role};

impl Sim {
    pub fn after_step(&mut self) -> Result<(), String> {
        self.resolve_acks();
        let mut violations = Vec::new();
        self.check_leaderships(&mut violations);
        self.check_committed(&mut violations);
        self.check_acknowledged_on_isr(&mut violations);
        self.check_agreement(&mut violations);
        self.check_log_shapes(&mut violations);
        for v in violations {
            self.fail(v);
        }
        match self.violation.take() {
            Some(v) => Err(v),
            None => Ok(()),
        }
    }

    /// acks=all producers: `wait_replicated`, then the min.insync.replicas check at reply time.
    fn resolve_acks(&mut self) {
        let now = self.now;
        let mut acked = Vec::new();
        let mut notes = Vec::new();
        for b in self.brokers.iter_mut().filter(|b| b.up) {
            let (hw, leading) = b.replicated;
            let isr = b.leader_state().map_or(0, |s| s.isr().len());
            let id = b.id;
            b.waits.retain(|w| {
                let outcome = if hw >= w.end {
                    if isr >= MIN_INSYNC_REPLICAS {
                        acked.extend(
                            w.records
                                .iter()
                                .enumerate()
                                .map(|(k, r)| (w.first + k as i64, *r)),
                        );
                        "acknowledged"
                    } else {
                        "NOT_ENOUGH_REPLICAS_AFTER_APPEND"
                    }
                } else if !leading {
                    "NOT_LEADER_OR_FOLLOWER"
                } else if now >= w.deadline_ms {
                    "REQUEST_TIMED_OUT"
                } else {
                    return true;
                };
                notes.push(format!(
                    "broker {id}: offsets {}..{} {outcome}",
                    w.first, w.end
                ));
                false
            });
        }
        self.stats.acked += acked.len() as u64;
        self.acked.extend(acked);
        for n in notes {
            self.note(n);
        }
    }

    /// 1 (one leader per epoch, epochs only grow) and the first half of 2 (a leadership's high watermark
    /// never goes back). The committed metadata's side of 1 is checked as it commits (`Sim::commit`).
    fn check_leaderships(&mut self, violations: &mut Vec<String>) {
        let mut claims = Vec::new();
        for b in self.brokers.iter_mut().filter(|b| b.up) {
            if let Some(epoch) = b.role_epoch() {
                if epoch < b.last_role_epoch {
                    violations.push(format!(
                        "broker {}'s leader epoch went back from {} to {epoch}",
                        b.id, b.last_role_epoch
                    ));
                }
                b.last_role_epoch = epoch;
            }
            let Some(epoch) = b.leader_state().map(|s| s.leader_epoch()) else {
                b.leadership_hw = None;
                continue;
            };
            claims.push((epoch, b.id));
            if let Some((e, hw)) = b.leadership_hw {
                if e == epoch && b.hw < hw {
                    violations.push(format!(
                        "leader {} at epoch {epoch}: high watermark went back from {hw} to {}",
                        b.id, b.hw
                    ));
                }
            }
            b.leadership_hw = Some((epoch, b.hw));
        }
        for (epoch, leader) in claims {
            self.claim_epoch(epoch, leader, "acting leader");
        }
    }

    /// 2: what any acting leader's high watermark covers is committed, all such prefixes agree, and a leader at
    /// epoch E holds everything committed at epochs up to E.
    fn check_committed(&mut self, violations: &mut Vec<String>) {
        let leaders = || {
            self.brokers
                .iter()
                .filter(|b| b.up)
                .filter_map(|b| b.leader_state().map(|s| (b, s.leader_epoch())))
        };
        let mut newly = Vec::new();
        for (b, epoch) in leaders() {
            if b.hw > b.log.leo() {
                violations.push(format!(
                    "leader {} has high watermark {} past its log end offset {}",
                    b.id,
                    b.hw,
                    b.log.leo()
                ));
                continue;
            }
            let covered = &b.log.records[..b.hw as usize];
            let known = covered.len().min(self.committed.len());
            if let Some(o) = (0..known).find(|o| covered[*o] != self.committed[*o].0) {
                violations.push(format!(
                    "leader {} (epoch {epoch}, hw {}) has {:?} at offset {o} where {:?} was committed",
                    b.id, b.hw, covered[o], self.committed[o].0
                ));
            }
            if covered.len() > self.committed.len() + newly.len() {
                newly = covered[self.committed.len()..]
                    .iter()
                    .map(|r| (*r, epoch))
                    .collect();
            }
        }
        self.committed.extend(newly);
        for (b, epoch) in leaders() {
            let missing = self
                .committed
                .iter()
                .enumerate()
                .find(|(o, (c, at))| *at <= epoch && b.log.records.get(*o) != Some(c));
            if let Some((o, (c, at))) = missing {
                violations.push(format!(
                    "leader {} at epoch {epoch} lacks {c:?} at offset {o}, committed at epoch {at}; it has {:?}",
                    b.id,
                    b.log.records.get(o)
                ));
            }
        }
    }

    /// 3: every acknowledged record, indeed every committed one, is on every member of the committed ISR.
    fn check_acknowledged_on_isr(&self, violations: &mut Vec<String>) {
        let p = partition(&self.image);
        for member in &p.isr {
            let log = &self.brokers[idx(*member)].log.records;
            let missing = self
                .acked
                .iter()
                .find(|(o, r)| log.get(*o as usize) != Some(r));
            if let Some((o, r)) = missing {
                violations.push(format!(
                    "acknowledged {r:?} at offset {o} is not on ISR member {member} (isr {:?}), which has {:?}",
                    p.isr,
                    log.get(*o as usize)
                ));
                continue;
            }
            // A follower joins the ISR only once it holds the leader's log as of its election, which holds
            // everything committed before; what is committed later is on the whole ISR by definition.
            let missing =
                (0..self.committed.len()).find(|o| log.get(*o) != Some(&self.committed[*o].0));
            if let Some(o) = missing {
                violations.push(format!(
                    "committed {:?} at offset {o} is not on ISR member {member} (isr {:?}), which has {:?}",
                    self.committed[o].0,
                    p.isr,
                    log.get(o)
                ));
            }
        }
    }

    /// 4a: below its own high watermark every replica holds the committed records; 4b: a follower converged
    /// with its current leader holds a prefix of the leader's log.
    fn check_agreement(&self, violations: &mut Vec<String>) {
        for b in &self.brokers {
            let bound = b.known_hw().min(b.log.leo()).max(0) as usize;
            if bound > self.committed.len() {
                violations.push(format!(
                    "broker {} has high watermark {bound} past the {} committed records",
                    b.id,
                    self.committed.len()
                ));
            } else if let Some(o) = (0..bound).find(|o| b.log.records[*o] != self.committed[*o].0) {
                violations.push(format!(
                    "broker {} (hw {bound}) has {:?} at offset {o} where {:?} is committed",
                    b.id, b.log.records[o], self.committed[o].0
                ));
            }
        }
        for f in self.brokers.iter().filter(|b| b.up) {
            let Some(leader) = self.converged_leader(f) else {
                continue;
            };
            let n = f.log.records.len();
            if n > leader.log.records.len() || f.log.records[..] != leader.log.records[..n] {
                violations.push(format!(
                    "follower {} converged with leader {} but its log (leo {n}) is not a prefix of the leader's (leo {})",
                    f.id,
                    leader.id,
                    leader.log.leo()
                ));
            }
        }
    }

    /// The leader `f` converged with, if `f` still follows it at that epoch and it still leads at it.
    fn converged_leader(&self, f: &Broker) -> Option<&Broker> {
        let (leader, epoch) = f.converged_with?;
        let follows = matches!(f.role, Role::Follower { leader: l, leader_epoch: e } if l == leader && e == epoch);
        let b = &self.brokers[idx(leader)];
        let leads = b.up && b.leader_state().is_some_and(|s| s.leader_epoch() == epoch);
        (follows && leads).then_some(b)
    }

    /// Records stay at the offset and epoch they were produced with, epochs never decrease along a log, and
    /// each log's epoch cache matches its records.
    fn check_log_shapes(&self, violations: &mut Vec<String>) {
        for b in &self.brokers {
            let mut runs: Vec<(i32, i64)> = Vec::new();
            for (o, r) in b.log.records.iter().enumerate() {
                let origin = self.origins[r.id as usize];
                if origin != (o as i64, r.epoch) {
                    violations.push(format!(
                        "broker {} has {r:?} at offset {o}; it was produced at {origin:?}",
                        b.id
                    ));
                    break;
                }
                match runs.last() {
                    Some((e, _)) if *e > r.epoch => {
                        violations.push(format!(
                            "broker {}'s log goes back from epoch {e} to {} at offset {o}",
                            b.id, r.epoch
                        ));
                        break;
                    }
                    Some((e, _)) if *e == r.epoch => {}
                    _ => runs.push((r.epoch, o as i64)),
                }
            }
            let cached: Vec<(i32, i64)> = b
                .log
                .epochs
                .entries()
                .iter()
                .map(|e| (e.epoch, e.start_offset))
                .collect();
            if cached != runs {
                violations.push(format!(
                    "broker {}'s epoch cache {cached:?} does not match its records {runs:?}",
                    b.id
                ));
            }
        }
    }

    /// Faults stop: every broker up and reachable, every message delivered in order, rounds of metadata and
    /// fetches until the replicas converge (invariant 5 then checks them).
    pub fn heal(&mut self) -> Result<(), String> {
        self.note("faults stop; healing".into());
        for i in 0..self.brokers.len() {
            self.brokers[i].isolated_until_ms = 0;
            if !self.brokers[i].up {
                self.restart(i);
            }
        }
        for _ in 0..HEAL_ROUNDS {
            self.advance(500);
            for i in 0..self.brokers.len() {
                self.propagate(i, true);
                self.send_fetch(i);
            }
            while !self.net.is_empty() {
                let msg = self.net.remove(0);
                self.deliver(msg);
            }
            self.after_step()?;
            if self.healed() {
                return Ok(());
            }
        }
        Err(format!("no convergence after {HEAL_ROUNDS} healing rounds"))
    }

    /// Every broker knows the latest metadata, the full ISR holds the leader's whole log, and the high
    /// watermark has reached its end.
    fn healed(&self) -> bool {
        let p = partition(&self.image);
        if p.leader < 0 || p.isr.len() != BROKERS.len() {
            return false;
        }
        let leader = &self.brokers[idx(p.leader)];
        let leads = leader
            .leader_state()
            .is_some_and(|s| s.leader_epoch() == p.leader_epoch);
        leads
            && leader.hw == leader.log.leo()
            && self.brokers.iter().all(|b| {
                b.image.as_ref().map(|im| im.applied_index) == Some(self.image.applied_index)
                    && b.log.records == leader.log.records
            })
    }

    /// 5: every replica's log and epoch cache equal the leader's, which holds each record at most once and
    /// every acknowledged one at its offset.
    pub fn check_healed(&self) -> Result<(), String> {
        let leader = &self.brokers[idx(partition(&self.image).leader)];
        for b in &self.brokers {
            if b.log.records != leader.log.records || b.log.epochs != leader.log.epochs {
                return Err(format!(
                    "after healing, broker {}'s log differs from leader {}'s",
                    b.id, leader.id
                ));
            }
        }
        let mut seen = vec![false; self.origins.len()];
        for r in &leader.log.records {
            if std::mem::replace(&mut seen[r.id as usize], true) {
                return Err(format!("record {r:?} is in the log twice"));
            }
        }
        for (o, r) in &self.acked {
            if leader.log.records.get(*o as usize) != Some(r) {
                return Err(format!(
                    "acknowledged {r:?} at offset {o} was lost: the healed log has {:?}",
                    leader.log.records.get(*o as usize)
                ));
            }
        }
        Ok(())
    }

    /// What a failure prints: the violation, how to replay it, the state, and the last events.
    pub fn report(&self, error: &str) -> String {
        let p = partition(&self.image);
        let mut out = format!(
            "replication simulation, seed {seed}: {error}\n\
             replay: STROM_SIM_SEED={seed} cargo test -p strom-broker --test replication_sim -- --nocapture\n\
             metadata: leader {} epoch {} isr {:?}; {} records committed, {} acknowledged\n",
            p.leader,
            p.leader_epoch,
            p.isr,
            self.committed.len(),
            self.acked.len(),
            seed = self.seed,
        );
        for b in &self.brokers {
            out.push_str(&b.describe());
            out.push('\n');
        }
        out.push_str(&format!("last {} events:\n", self.trace.len()));
        for line in &self.trace {
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}
