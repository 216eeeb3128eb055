//! The async driver of the group coordinators: one task owns both state machines, the classic
//! [`GroupCoordinator`] and the KIP-848 [`ConsumerGroupCoordinator`], feeds them requests in arrival order, sleeps
//! exactly until the earlier of their next deadlines (session and rebalance timeouts) and routes each output back
//! to the request waiting for it.
//!
//! Both kinds of group live in one task so a group id is checked against both at once: a group id is either
//! classic or consumer. A JoinGroup for a consumer group with members is refused (INCONSISTENT_GROUP_PROTOCOL), a
//! ConsumerGroupHeartbeat for a classic group with members too (GROUP_ID_NOT_FOUND, "not a consumer group", as
//! Kafka 3.7 without online migration); an *empty* group of the other kind is dropped and the id taken over.
//!
//! The state machine measures time in milliseconds since the driver started (a monotonic clock), so wall-clock
//! jumps cannot expire sessions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::groups::consumer::{
    ConsumerEvent, ConsumerGroupConfig, ConsumerGroupCoordinator, ConsumerOutput, Heartbeat,
    HeartbeatResponse, TopicInfo, TopicLookup,
};
use crate::groups::{error, Event, GroupConfig, GroupCoordinator, GroupState, Output, ReplyId};
use crate::topics::Topics;

type Inspect = Box<dyn FnOnce(&mut GroupCoordinator) + Send>;
type InspectBoth = Box<dyn FnOnce(&mut GroupCoordinator, &mut ConsumerGroupCoordinator) + Send>;
type UpdateBoth = Box<dyn FnOnce(u64, &mut GroupCoordinator, &mut ConsumerGroupCoordinator) + Send>;

/// The topic view of the consumer coordinator: the broker's in-memory registry, read without I/O.
pub type SharedTopics = Arc<dyn TopicLookup + Send + Sync>;

impl TopicLookup for Topics {
    fn topic(&self, name: &str) -> Option<TopicInfo> {
        self.get(name).map(|t| TopicInfo {
            id: t.id,
            partitions: t.partition_count(),
        })
    }
}

enum Command {
    Request(
        Box<dyn FnOnce(ReplyId) -> Event + Send>,
        oneshot::Sender<Output>,
    ),
    Consumer(Box<Heartbeat>, oneshot::Sender<HeartbeatResponse>),
    Inspect(Inspect),
    InspectBoth(InspectBoth),
    UpdateBoth(UpdateBoth),
}

/// A handle to the coordinator task; cheap to clone.
#[derive(Clone)]
pub struct GroupDriver {
    tx: mpsc::UnboundedSender<Command>,
}

impl GroupDriver {
    pub fn start(
        config: GroupConfig,
        consumer_config: ConsumerGroupConfig,
        topics: SharedTopics,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let coordinators = Coordinators {
            classic: GroupCoordinator::new(config),
            consumer: ConsumerGroupCoordinator::new(consumer_config),
            topics,
        };
        tokio::spawn(run(coordinators, rx, shutdown));
        Self { tx }
    }

    /// Queues a ConsumerGroupHeartbeat; the receiver errors if the coordinator stopped.
    pub fn consumer_heartbeat(&self, request: Heartbeat) -> oneshot::Receiver<HeartbeatResponse> {
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(Command::Consumer(Box::new(request), tx));
        rx
    }

    /// Like [`inspect`](Self::inspect), with both coordinators (questions about any group id).
    pub fn inspect_both<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut GroupCoordinator, &mut ConsumerGroupCoordinator) -> T + Send + 'static,
    ) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        let inspect: InspectBoth = Box::new(move |c, k| {
            let _ = tx.send(f(c, k));
        });
        let _ = self.tx.send(Command::InspectBoth(inspect));
        rx
    }

    /// Like [`inspect_both`](Self::inspect_both), for a change that needs the coordinators' clock (a commit
    /// restarting a member's session).
    pub fn update_both<T: Send + 'static>(
        &self,
        f: impl FnOnce(u64, &mut GroupCoordinator, &mut ConsumerGroupCoordinator) -> T + Send + 'static,
    ) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        let update: UpdateBoth = Box::new(move |now, c, k| {
            let _ = tx.send(f(now, c, k));
        });
        let _ = self.tx.send(Command::UpdateBoth(update));
        rx
    }

    /// Queues one request event now (so requests reach the coordinator in arrival order) and returns where its
    /// answer will arrive. The receiver errors if the coordinator stopped (broker shutdown).
    pub fn submit(
        &self,
        event: impl FnOnce(ReplyId) -> Event + Send + 'static,
    ) -> oneshot::Receiver<Output> {
        let (tx, rx) = oneshot::channel();
        // On a send error the receiver sees the dropped sender: "coordinator not available".
        let _ = self.tx.send(Command::Request(Box::new(event), tx));
        rx
    }

    /// Queues `f` to run on the coordinator between two events (admin queries, commit validation).
    pub fn inspect<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut GroupCoordinator) -> T + Send + 'static,
    ) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        let inspect: Inspect = Box::new(move |c| {
            let _ = tx.send(f(c));
        });
        let _ = self.tx.send(Command::Inspect(inspect));
        rx
    }
}

struct Coordinators {
    classic: GroupCoordinator,
    consumer: ConsumerGroupCoordinator,
    topics: SharedTopics,
}

impl Coordinators {
    fn next_deadline(&self) -> Option<u64> {
        match (self.classic.next_deadline(), self.consumer.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A classic request, unless its group id belongs to a consumer group with members.
    fn classic(&mut self, now: u64, event: Event) -> Vec<Output> {
        if let Event::Join {
            reply,
            group_id,
            member_id,
            ..
        } = &event
        {
            if self.consumer.has_members(group_id) {
                return vec![Output::Join {
                    reply: *reply,
                    error: error::INCONSISTENT_GROUP_PROTOCOL,
                    generation_id: -1,
                    protocol_type: None,
                    protocol_name: None,
                    leader: String::new(),
                    member_id: member_id.clone(),
                    skip_assignment: false,
                    members: Vec::new(),
                }];
            }
            // An empty consumer group gives its id up to the classic group.
            let _ = self.consumer.delete_group(group_id);
        }
        self.classic.handle(now, event)
    }

    fn consumer(
        &mut self,
        now: u64,
        request: Heartbeat,
    ) -> (HeartbeatResponse, Vec<ConsumerOutput>) {
        match self.classic.group_state(&request.group_id) {
            Some(GroupState::Empty) | Some(GroupState::Dead) => {
                let _ = self.classic.delete_group(&request.group_id);
            }
            Some(_) => {
                let message = format!("Group {} is not a consumer group.", request.group_id);
                let response = HeartbeatResponse::error_for(
                    error::GROUP_ID_NOT_FOUND,
                    message,
                    &request.member_id,
                );
                return (response, Vec::new());
            }
            None => {}
        }
        let outputs = self.consumer.handle(
            now,
            ConsumerEvent::Heartbeat { reply: 0, request },
            self.topics.as_ref(),
        );
        let mut response = None;
        let mut rest = Vec::new();
        for output in outputs {
            match output {
                ConsumerOutput::Heartbeat { response: r, .. } => response = Some(r),
                other => rest.push(other),
            }
        }
        let response = response.expect("the consumer coordinator answers every heartbeat");
        (response, rest)
    }
}

async fn run(
    mut coordinators: Coordinators,
    mut rx: mpsc::UnboundedReceiver<Command>,
    mut shutdown: watch::Receiver<bool>,
) {
    let start = Instant::now();
    let now_ms = move || start.elapsed().as_millis() as u64;
    let mut waiting: HashMap<ReplyId, oneshot::Sender<Output>> = HashMap::new();
    let mut next_reply: ReplyId = 0;
    loop {
        let deadline = coordinators
            .next_deadline()
            .map(|ms| start + Duration::from_millis(ms));
        let outputs = tokio::select! {
            command = rx.recv() => match command {
                Some(Command::Request(event, reply)) => {
                    next_reply += 1;
                    waiting.insert(next_reply, reply);
                    coordinators.classic(now_ms(), event(next_reply))
                }
                Some(Command::Consumer(request, reply)) => {
                    let (response, changes) = coordinators.consumer(now_ms(), *request);
                    let _ = reply.send(response);
                    changes.iter().for_each(log_consumer_change);
                    Vec::new()
                }
                Some(Command::Inspect(f)) => {
                    f(&mut coordinators.classic);
                    Vec::new()
                }
                Some(Command::InspectBoth(f)) => {
                    f(&mut coordinators.classic, &mut coordinators.consumer);
                    Vec::new()
                }
                Some(Command::UpdateBoth(f)) => {
                    f(now_ms(), &mut coordinators.classic, &mut coordinators.consumer);
                    Vec::new()
                }
                None => return,
            },
            _ = sleep_until_deadline(deadline) => {
                let now = now_ms();
                let topics = coordinators.topics.clone();
                coordinators.consumer.tick(now, topics.as_ref()).iter().for_each(log_consumer_change);
                coordinators.classic.tick(now)
            }
            _ = shutdown.changed() => return,
        };
        for output in outputs {
            match output.reply() {
                Some(id) => {
                    if let Some(reply) = waiting.remove(&id) {
                        // The requester may have gone (connection closed); nothing to do then.
                        let _ = reply.send(output);
                    }
                }
                None => log_change(&output),
            }
        }
    }
}

async fn sleep_until_deadline(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => futures::future::pending().await,
    }
}

fn log_change(output: &Output) {
    if let Output::GroupChanged {
        group_id,
        state,
        generation_id,
    } = output
    {
        tracing::info!(group = %group_id, state = state.as_kafka_str(), generation = generation_id, "group changed");
    }
}

fn log_consumer_change(output: &ConsumerOutput) {
    match output {
        ConsumerOutput::GroupChanged {
            group_id,
            state,
            group_epoch,
        } => {
            tracing::info!(group = %group_id, state = state.as_kafka_str(), epoch = group_epoch, "consumer group changed")
        }
        ConsumerOutput::MemberRemoved {
            group_id,
            member_id,
            reason,
        } => {
            tracing::info!(group = %group_id, member = %member_id, reason, "consumer group member removed")
        }
        ConsumerOutput::Heartbeat { .. } => {}
    }
}
