//! Traffic between the replicas: the leader's side (produce, serving a follower's fetch, AlterPartition), the
//! follower's side (fetching and applying the answer), and the network that carries it.

use bytes::Bytes;
use strom_broker::replication::follower::{self, Action, FetchedPartition, FollowerLog};
use strom_broker::replication::leader::Effects;
use strom_metadata::{codes, ControllerRequest};

use crate::cluster::*;
use crate::replica::{decode, encode, AckWait, AlterCall, InFlightFetch, Rec, Role, RECORD_BYTES};

// Kafka error codes the fetch path answers with.
const NONE: i16 = follower::NONE;
const OFFSET_OUT_OF_RANGE: i16 = follower::OFFSET_OUT_OF_RANGE;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const LEADER_NOT_AVAILABLE: i16 = 5;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const FENCED_LEADER_EPOCH: i16 = 74;
const UNKNOWN_LEADER_EPOCH: i16 = 76;

/// `Partition::check_leader_epoch`.
pub fn check_leader_epoch(ours: i32, theirs: i32) -> Result<(), i16> {
    if theirs < 0 || theirs == ours {
        Ok(())
    } else if theirs > ours {
        Err(UNKNOWN_LEADER_EPOCH)
    } else {
        Err(FENCED_LEADER_EPOCH)
    }
}

impl Sim {
    // ---- The leader's side ------------------------------------------------------------------------------

    /// `Partition::apply` and `ReplicaManager::propose_isr`: publish the high watermark, send an ISR change.
    pub fn apply_effects(&mut self, i: usize, effects: Effects) {
        let b = &mut self.brokers[i];
        b.publish(effects.high_watermark);
        let Some(isr) = effects.propose_isr else {
            return;
        };
        let Role::Leader {
            state,
            partition_epoch,
        } = &b.role
        else {
            return;
        };
        let request = ControllerRequest::AlterPartition {
            broker_id: b.id,
            topic_id: TOPIC_ID.into(),
            partition: 0,
            leader_epoch: state.leader_epoch(),
            partition_epoch: *partition_epoch,
            isr: isr.clone(),
        };
        let id = b.id;
        let call = self.send_alter(i, request);
        self.note(format!("broker {id} proposes ISR {isr:?} (call {call})"));
    }

    pub fn send_alter(&mut self, i: usize, request: ControllerRequest) -> u64 {
        let call = self.next_call;
        self.next_call += 1;
        let b = &mut self.brokers[i];
        b.alter_calls.push(AlterCall {
            call,
            sent_ms: self.now,
            request: request.clone(),
        });
        self.net.push(Msg::Alter {
            from: b.id,
            call,
            request,
        });
        call
    }

    /// No answer from the controller within ALTER_PARTITION_TIMEOUT.
    pub fn alter_timed_out(&mut self, i: usize, call: AlterCall) {
        let id = self.brokers[i].id;
        // As `ReplicaManager::propose_isr` (Kafka's AlterPartitionManager): the outcome is unknown, so the proposal stays pending
        // and is sent again while this broker leads at its epoch; the answer or the metadata settles it.
        let ControllerRequest::AlterPartition { leader_epoch, .. } = call.request else {
            unreachable!("only AlterPartition calls are kept")
        };
        let b = &self.brokers[i];
        if b.leader_state().map(|s| s.leader_epoch()) != Some(leader_epoch) {
            return;
        }
        let again = self.send_alter(i, call.request);
        self.note(format!(
            "broker {id}: AlterPartition call {} timed out; sent again as {again}",
            call.call
        ));
    }

    /// The controller refused an ISR change.
    pub fn alter_refused(&mut self, i: usize, code: i16) {
        // As `propose_isr` (Kafka's Partition.handleAlterPartitionError): only INELIGIBLE_REPLICA says for sure that the
        // proposal was not applied at the current partition epoch, so only then does the leader fall back to
        // its last committed ISR. Any other refusal means its metadata is behind: the pending ISR stays until
        // the metadata arrives.
        self.stats.refused_alters += 1;
        if code == codes::INELIGIBLE_REPLICA {
            let b = &mut self.brokers[i];
            if let Role::Leader { state, .. } = &mut b.role {
                let isr = state.isr();
                let effects = state.on_isr_committed(isr);
                b.publish(effects.high_watermark);
            }
        }
    }

    /// `handlers/produce.rs` with acks=all.
    pub fn produce_random(&mut self) {
        let leaders: Vec<usize> = (0..3)
            .filter(|i| self.brokers[*i].serving() && self.brokers[*i].leader_state().is_some())
            .collect();
        let Some(i) = self.rng.pick(&leaders) else {
            return;
        };
        let count = self.rng.range(1, 3) as usize;
        let current_epoch = partition(&self.image).leader_epoch;
        let b = &mut self.brokers[i];
        let Role::Leader { state, .. } = &mut b.role else {
            unreachable!()
        };
        let id = b.id;
        if !state.has_min_isr(MIN_INSYNC_REPLICAS) {
            let isr = state.isr();
            self.note(format!(
                "produce to {id}: NOT_ENOUGH_REPLICAS (isr {isr:?})"
            ));
            return;
        }
        let epoch = state.leader_epoch();
        let first = b.log.leo();
        let mut records = Vec::with_capacity(count);
        for k in 0..count {
            let rec = Rec {
                epoch,
                id: self.origins.len() as u64,
            };
            self.origins.push((first + k as i64, epoch));
            records.push(rec);
        }
        b.log.append_as_leader(&records);
        let end = b.log.leo();
        let Role::Leader { state, .. } = &mut b.role else {
            unreachable!()
        };
        let effects = state.on_append(end);
        b.waits.push(AckWait {
            end,
            first,
            records,
            deadline_ms: self.now + PRODUCE_TIMEOUT_MS,
        });
        self.stats.produced += count as u64;
        if epoch < current_epoch {
            self.stats.zombie_appends += 1;
        }
        self.apply_effects(i, effects);
        self.note(format!(
            "produce to {id} at epoch {epoch}: offsets {first}..{end}"
        ));
    }

    /// `handlers/fetch.rs` for a follower's fetch: `follower_fetched`, then `read_one`.
    #[allow(clippy::too_many_arguments)]
    pub fn serve_fetch(
        &mut self,
        l: usize,
        from: i32,
        current_leader_epoch: i32,
        fetch_offset: i64,
        last_fetched_epoch: i32,
    ) -> FetchedPartition {
        let failed = |code| FetchedPartition {
            error_code: code,
            high_watermark: -1,
            log_start_offset: -1,
            diverging_epoch: None,
            records: None,
        };
        let now = self.now;
        let b = &mut self.brokers[l];
        // `Topic::partition`: only a broker whose metadata says it leads serves the partition.
        let Some(image) = &b.image else {
            return failed(UNKNOWN_TOPIC_OR_PARTITION);
        };
        let slot_leader = partition(image).leader;
        if slot_leader != b.id {
            return failed(if slot_leader < 0 {
                LEADER_NOT_AVAILABLE
            } else {
                NOT_LEADER_OR_FOLLOWER
            });
        }
        let epoch_check = check_leader_epoch(b.leader_epoch, current_leader_epoch);
        let mut diverging = None;
        if epoch_check.is_ok() {
            if last_fetched_epoch >= 0 {
                let end = b.log.end_offset_for_epoch(last_fetched_epoch);
                diverging = follower::diverging_epoch(last_fetched_epoch, fetch_offset, end);
            }
            if diverging.is_none() {
                let Role::Leader { state, .. } = &mut b.role else {
                    return failed(NOT_LEADER_OR_FOLLOWER);
                };
                let effects = state.on_follower_fetch(from, fetch_offset, now);
                self.apply_effects(l, effects);
            }
        }
        let b = &self.brokers[l];
        let answer = FetchedPartition {
            error_code: NONE,
            high_watermark: b.hw,
            log_start_offset: 0,
            diverging_epoch: None,
            records: Some(Bytes::new()),
        };
        if let Err(code) = epoch_check {
            return FetchedPartition {
                error_code: code,
                ..answer
            };
        }
        if diverging.is_some() {
            self.stats.diverging += 1;
            return FetchedPartition {
                diverging_epoch: diverging,
                ..answer
            };
        }
        let leo = b.log.leo();
        if fetch_offset < 0 || fetch_offset > leo {
            return FetchedPartition {
                error_code: OFFSET_OUT_OF_RANGE,
                ..answer
            };
        }
        let end = leo.min(fetch_offset + self.rng.range(1, MAX_RECORDS_PER_FETCH) as i64);
        let records = encode(
            &self.brokers[l].log.records[fetch_offset as usize..end as usize],
            fetch_offset,
        );
        FetchedPartition {
            records: Some(records),
            ..answer
        }
    }

    // ---- The follower's side ----------------------------------------------------------------------------

    /// The fetcher's round: a follower with no fetch in flight to its leader sends one.
    pub fn send_fetch(&mut self, i: usize) -> bool {
        let now = self.now;
        let b = &self.brokers[i];
        let Role::Follower {
            leader,
            leader_epoch,
        } = b.role
        else {
            return false;
        };
        let leader_live = b
            .image
            .as_ref()
            .and_then(|im| im.brokers.get(&leader))
            .is_some_and(|r| !r.fenced);
        if !b.serving() || leader < 0 || leader == b.id || !leader_live {
            return false;
        }
        if b.fetches.iter().any(|f| f.leader == leader) {
            return false;
        }
        let fetch_offset = b.log.leo();
        let last_fetched_epoch = b.log.epochs.latest_epoch().unwrap_or(-1);
        let call = self.next_call;
        self.next_call += 1;
        let id = b.id;
        self.brokers[i].fetches.push(InFlightFetch {
            call,
            leader,
            leader_epoch,
            fetch_offset,
            sent_ms: now,
        });
        self.net.push(Msg::Fetch {
            from: id,
            to: leader,
            call,
            current_leader_epoch: leader_epoch,
            fetch_offset,
            last_fetched_epoch,
        });
        true
    }

    pub fn fetch_random(&mut self) {
        let start = self.rng.below(3) as usize;
        for k in 0..3 {
            if self.send_fetch((start + k) % 3) {
                return;
            }
        }
    }

    /// `fetcher::apply` and the `Partition` methods it calls.
    pub fn apply_fetch_response(
        &mut self,
        i: usize,
        fetch: InFlightFetch,
        response: FetchedPartition,
    ) {
        let b = &mut self.brokers[i];
        let id = b.id;
        let leader_hw = response.high_watermark;
        let action = follower::decide(&b.log, fetch.fetch_offset, response);
        // `Partition::check_following`, under the role lock in the real code.
        let following = matches!(b.role, Role::Follower { leader_epoch, .. } if leader_epoch == fetch.leader_epoch);
        let leo_before = b.log.leo();
        // `fetcher::apply`: every action, CaughtUp included, applies only while this replica still follows at
        // the fetch's leader epoch (`Partition::follow_leader_offsets` checks it for the high watermark).
        let mut reset = None;
        let result = match &action {
            Action::Retry(code) => Err(format!("retry ({code})")),
            _ if !following => Err(format!(
                "no longer a follower at leader epoch {}",
                fetch.leader_epoch
            )),
            Action::CaughtUp => Ok(()),
            Action::Append(bytes) => b.log.append_replicated(&decode(bytes.clone())),
            Action::Truncate(offset) => {
                b.log.truncate_to(*offset);
                b.hw = b.hw.min(b.log.leo());
                Ok(())
            }
            Action::Reset(offset) => {
                reset = Some(*offset);
                Err("reset".into())
            }
        };
        if let Some(offset) = reset {
            self.fail(format!(
                "follower {id} told to Reset({offset}) although every log starts at 0"
            ));
        }
        if result.is_err() && !following {
            self.stats.stale_responses += 1;
        }
        let b = &mut self.brokers[i];
        if result.is_ok() {
            // `Partition::follow_leader_offsets`.
            let hw = leader_hw.min(b.log.leo());
            if hw >= 0 {
                b.hw = hw;
            }
            match action {
                Action::Append(_) | Action::CaughtUp if following => {
                    b.converged_with = Some((fetch.leader, fetch.leader_epoch));
                }
                _ => b.converged_with = None,
            }
        }
        let leo = b.log.leo();
        let hw = b.hw;
        self.stats.truncated_records += (leo_before - leo).max(0) as u64;
        let outcome = match &result {
            Ok(()) => "applied".to_string(),
            Err(e) => format!("not applied: {e}"),
        };
        self.note(format!(
            "broker {id} <- fetch reply from {} (e{} at {}): {} {outcome}; leo {leo} hw {hw}",
            fetch.leader,
            fetch.leader_epoch,
            fetch.fetch_offset,
            describe_action(&action)
        ));
    }

    // ---- The network ------------------------------------------------------------------------------------

    pub fn deliver_random(&mut self) {
        if self.net.is_empty() {
            return;
        }
        let k = self.rng.below(self.net.len() as u64) as usize;
        let msg = self.net.swap_remove(k);
        self.deliver(msg);
    }

    pub fn drop_random(&mut self) {
        if self.net.is_empty() {
            return;
        }
        let k = self.rng.below(self.net.len() as u64) as usize;
        let msg = self.net.swap_remove(k);
        self.note(format!("lost: {}", describe_msg(&msg)));
    }

    pub fn deliver(&mut self, msg: Msg) {
        match msg {
            Msg::Fetch {
                from,
                to,
                call,
                current_leader_epoch,
                fetch_offset,
                last_fetched_epoch,
            } => {
                let l = idx(to);
                if !self.brokers[l].serving() {
                    return;
                }
                let response = self.serve_fetch(
                    l,
                    from,
                    current_leader_epoch,
                    fetch_offset,
                    last_fetched_epoch,
                );
                self.note(format!(
                    "leader {to} serves fetch from {from} (cle {current_leader_epoch}, offset {fetch_offset}, lfe {last_fetched_epoch}): error {} hw {} diverging {:?} records {}",
                    response.error_code,
                    response.high_watermark,
                    response.diverging_epoch,
                    response.records.as_ref().map_or(0, |r| r.len() / RECORD_BYTES)
                ));
                let inc = self.brokers[idx(from)].incarnation;
                self.net.push(Msg::FetchReply {
                    from: to,
                    to: from,
                    inc,
                    call,
                    response,
                });
            }
            Msg::FetchReply {
                to,
                inc,
                call,
                response,
                ..
            } => {
                let i = idx(to);
                let b = &mut self.brokers[i];
                if !b.up || b.incarnation != inc {
                    return;
                }
                let Some(k) = b.fetches.iter().position(|f| f.call == call) else {
                    return;
                };
                let fetch = b.fetches.swap_remove(k);
                self.apply_fetch_response(i, fetch, response);
            }
            Msg::Alter {
                from,
                call,
                request,
            } => {
                let b = &self.brokers[idx(from)];
                if b.isolated(self.now) {
                    self.note(format!("AlterPartition call {call} from {from} lost"));
                    return;
                }
                let inc = b.incarnation;
                let result = self.request(request).map(|_| ()).map_err(|e| e.code);
                self.note(format!(
                    "controller answers AlterPartition call {call} from {from}: {result:?}"
                ));
                self.net.push(Msg::AlterReply {
                    to: from,
                    inc,
                    call,
                    result,
                });
            }
            Msg::AlterReply {
                to,
                inc,
                call,
                result,
            } => {
                let i = idx(to);
                let b = &mut self.brokers[i];
                if !b.up || b.incarnation != inc || b.isolated(self.now) {
                    return;
                }
                let Some(k) = b.alter_calls.iter().position(|c| c.call == call) else {
                    return;
                };
                b.alter_calls.swap_remove(k);
                if let Err(code) = result {
                    self.alter_refused(i, code);
                }
            }
        }
    }
}

pub fn describe_action(action: &Action) -> String {
    match action {
        Action::Append(bytes) => {
            let records = decode(bytes.clone());
            format!(
                "Append {}..{}",
                records.first().map_or(0, |r| r.0),
                records.last().map_or(0, |r| r.0 + 1)
            )
        }
        other => format!("{other:?}"),
    }
}

pub fn describe_msg(msg: &Msg) -> String {
    match msg {
        Msg::Fetch { from, to, call, .. } => format!("fetch {call} {from} -> {to}"),
        Msg::FetchReply { from, to, call, .. } => format!("fetch reply {call} {from} -> {to}"),
        Msg::Alter { from, call, .. } => format!("AlterPartition {call} from {from}"),
        Msg::AlterReply { to, call, .. } => format!("AlterPartition reply {call} to {to}"),
    }
}
