//! The active controller's decisions, without I/O: which records a request or the passing of time calls for.
//!
//! Only the quorum leader runs a [`Controller`]; it turns broker registrations and heartbeats, admin requests
//! and expired broker sessions into record batches to propose. It reads the committed [`MetadataImage`] and
//! never changes it: the records take effect when the log commits them (and a batch that no longer fits then is
//! rejected as a whole, see `image.rs`). Broker sessions (last heartbeat times) are soft state: a new leader
//! starts every registered broker's session afresh, as KRaft does.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::image::{MetadataImage, PartitionImage};
use crate::records::{Configs, Endpoint, MetadataRecord, RecordBatch};

/// Kafka error codes the controller answers with.
pub mod codes {
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const NOT_CONTROLLER: i16 = 41;
    pub const INVALID_REQUEST: i16 = 42;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const STALE_BROKER_EPOCH: i16 = 77;
    pub const ELECTION_NOT_NEEDED: i16 = 84;
    pub const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;
    pub const PREFERRED_LEADER_NOT_AVAILABLE: i16 = 80;
    pub const INVALID_UPDATE_VERSION: i16 = 95;
    pub const DUPLICATE_BROKER_REGISTRATION: i16 = 101;
    pub const INELIGIBLE_REPLICA: i16 = 107;
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerRequest {
    RegisterBroker {
        broker_id: i32,
        incarnation_id: String,
        endpoint: Endpoint,
        rack: Option<String>,
        /// Whether the broker's previous life ended in a clean shutdown (see `MetadataRecord::RegisterBroker`).
        #[serde(default)]
        clean_shutdown: bool,
    },
    /// `applied_index`: how far the broker has applied the metadata log.
    Heartbeat {
        broker_id: i32,
        broker_epoch: u64,
        applied_index: u64,
        want_shutdown: bool,
    },
    /// `partitions` / `replication_factor` of -1 mean the defaults; `assignments` (replica lists per partition)
    /// replaces both.
    CreateTopic {
        name: String,
        topic_id: String,
        partitions: i32,
        replication_factor: i16,
        assignments: Option<Vec<Vec<i32>>>,
        configs: Configs,
        validate_only: bool,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    },
    /// Sets `set` and removes `remove`; with `replace`, every override not in `set` is removed (AlterConfigs).
    AlterTopicConfigs {
        name: String,
        set: Configs,
        remove: Vec<String>,
        replace: bool,
        validate_only: bool,
    },
    /// Dynamic broker configs of `resource` (a broker id, or "" for every broker): sets `set` and removes
    /// `remove`; with `replace`, every dynamic config of the resource not in `set` is removed (AlterConfigs). The
    /// broker that received the request validated the keys and values.
    AlterBrokerConfigs {
        resource: String,
        set: Configs,
        remove: Vec<String>,
        replace: bool,
        validate_only: bool,
    },
    AllocateProducerIds {
        broker_id: i32,
        count: i64,
    },
    /// A partition leader's ISR change (Kafka's AlterPartition): accepted only from the current leader at the
    /// current leader epoch and partition epoch, so a change computed from stale state is refused.
    AlterPartition {
        broker_id: i32,
        topic_id: String,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    },
    /// Moves leadership of each partition to its preferred replica (the first in its replica list) where that
    /// replica is live and in sync (Kafka's ElectLeaders with PREFERRED). `None`: every partition.
    ElectPreferredLeaders {
        partitions: Option<Vec<(String, i32)>>,
    },
    /// Kafka's AlterPartitionReassignments: per partition, the target replicas (`None` cancels the reassignment
    /// in progress). With `allow_replication_factor_change` false, a target of another size is refused.
    AlterReassignments {
        partitions: Vec<(String, i32, Option<Vec<i32>>)>,
        allow_replication_factor_change: bool,
    },
}

/// What the controller answers once the records it proposed (if any) are committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerReply {
    /// The broker's epoch is the log index its RegisterBroker record committed at.
    Registered,
    Heartbeat {
        fenced: bool,
        shutdown_ready: bool,
    },
    ProducerIds {
        first: i64,
        count: i64,
    },
    /// Per requested partition: `None` when it is (or will be, once committed) led by its preferred replica, or
    /// the error code and message saying why not.
    Elections(Vec<((String, i32), Option<ControllerError>)>),
    /// Per requested partition: `None` when the reassignment (or its cancellation) is accepted, or why not.
    Reassignments(Vec<((String, i32), Option<ControllerError>)>),
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct ControllerError {
    pub code: i16,
    pub message: String,
}

impl ControllerError {
    pub fn new(code: i16, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The controller's answer to a request: records to commit first (then the reply), or the reply now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Propose(RecordBatch, ControllerReply),
    Reply(ControllerReply),
}

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// `broker.session.timeout.ms`: a broker not heard from for this long is fenced.
    pub session_timeout_ms: u64,
    /// `num.partitions`
    pub default_partitions: i32,
    /// `default.replication.factor`
    pub default_replication_factor: i16,
    /// `auto.leader.rebalance.enable`: (`leader.imbalance.check.interval.seconds` in ms,
    /// `leader.imbalance.per.broker.percentage`).
    pub leader_rebalance: Option<(u64, u32)>,
    /// `min.insync.replicas` (the broker default; a topic's own setting wins): below it, replicas leaving the ISR
    /// become eligible leader replicas (KIP-966).
    pub min_insync_replicas: i32,
    /// `unclean.leader.election.enable` (the broker default; a topic's own setting wins): when no in-sync or
    /// eligible replica is alive, a live out-of-sync replica may lead, losing the committed records it lacks.
    pub unclean_leader_election: bool,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            session_timeout_ms: 9_000,
            default_partitions: 1,
            default_replication_factor: 1,
            leader_rebalance: Some((300_000, 10)),
            min_insync_replicas: 1,
            unclean_leader_election: false,
        }
    }
}

pub struct Controller {
    config: ControllerConfig,
    /// Last heartbeat per (broker id, broker epoch).
    sessions: HashMap<i32, (u64, u64)>,
    /// Brokers this controller has itself heard a heartbeat from (not only inherited from the image).
    heard: HashMap<i32, u64>,
    /// (broker, epoch) that asked for a controlled shutdown: never unfenced again in that epoch.
    shutting_down: std::collections::HashSet<(i32, u64)>,
    /// Fences proposed and not yet seen committed, with when, so a slow commit is not proposed again each tick.
    fencing: HashMap<(i32, u64), u64>,
    /// Producer ids handed out by proposals not yet committed.
    producer_id_reserved: i64,
    /// When the leader balance was last checked.
    last_rebalance_check: u64,
}

impl Controller {
    /// A controller taking over at `now_ms`: every registered broker gets a full session from now.
    pub fn new(config: ControllerConfig, image: &MetadataImage, now_ms: u64) -> Self {
        let sessions = image
            .brokers
            .values()
            .map(|b| (b.broker_id, (b.broker_epoch, now_ms)))
            .collect();
        Self {
            config,
            sessions,
            heard: HashMap::new(),
            shutting_down: Default::default(),
            fencing: HashMap::new(),
            producer_id_reserved: image.next_producer_id,
            last_rebalance_check: now_ms,
        }
    }

    pub fn handle(
        &mut self,
        now_ms: u64,
        image: &MetadataImage,
        request: ControllerRequest,
    ) -> Result<Decision, ControllerError> {
        match request {
            ControllerRequest::RegisterBroker {
                broker_id,
                incarnation_id,
                endpoint,
                rack,
                clean_shutdown,
            } => {
                // Another process with this node id is registered and heartbeating: two brokers must not share
                // an id. A broker that restarted after a crash gets in once its old session expires.
                if let Some(existing) = image.brokers.get(&broker_id) {
                    let alive = self
                        .heard
                        .get(&broker_id)
                        .is_some_and(|epoch| *epoch == existing.broker_epoch)
                        && self.sessions.get(&broker_id).is_some_and(|(epoch, last)| {
                            *epoch == existing.broker_epoch
                                && now_ms.saturating_sub(*last) < self.config.session_timeout_ms
                        });
                    if alive && !existing.fenced && existing.incarnation_id != incarnation_id {
                        return Err(ControllerError::new(
                            codes::DUPLICATE_BROKER_REGISTRATION,
                            format!(
                                "another broker with node.id {broker_id} (at {}:{}) is registered and alive; node ids must be unique (a restarted broker is let in once the old session of {} ms expires)",
                                existing.endpoint.host, existing.endpoint.port, self.config.session_timeout_ms
                            ),
                        ));
                    }
                }
                let mut records = vec![MetadataRecord::RegisterBroker {
                    broker_id,
                    incarnation_id,
                    endpoint,
                    rack,
                    clean_shutdown,
                }];
                // Whatever the previous incarnation led, it leads no more; after an unclean shutdown its copies
                // are no longer eligible to lead either.
                records.extend(leaders_away_from(
                    image,
                    broker_id,
                    &self.config,
                    clean_shutdown,
                ));
                Ok(Decision::Propose(
                    RecordBatch::new(records),
                    ControllerReply::Registered,
                ))
            }
            ControllerRequest::Heartbeat {
                broker_id,
                broker_epoch,
                applied_index,
                want_shutdown,
            } => {
                let broker = image
                    .brokers
                    .get(&broker_id)
                    .filter(|b| b.broker_epoch == broker_epoch)
                    .ok_or_else(|| {
                        ControllerError::new(
                            codes::STALE_BROKER_EPOCH,
                            format!("broker {broker_id} epoch {broker_epoch} is not registered; register again"),
                        )
                    })?;
                self.sessions.insert(broker_id, (broker_epoch, now_ms));
                self.heard.insert(broker_id, broker_epoch);
                if want_shutdown {
                    self.shutting_down.insert((broker_id, broker_epoch));
                }
                let shutting_down = self.shutting_down.contains(&(broker_id, broker_epoch));
                if want_shutdown && !broker.fenced {
                    let mut records = vec![MetadataRecord::FenceBroker {
                        broker_id,
                        broker_epoch,
                    }];
                    records.extend(leaders_away_from(image, broker_id, &self.config, true));
                    return Ok(Decision::Propose(
                        RecordBatch::new(records),
                        ControllerReply::Heartbeat {
                            fenced: true,
                            shutdown_ready: true,
                        },
                    ));
                }
                if broker.fenced && !shutting_down && applied_index >= broker_epoch {
                    let mut records = vec![MetadataRecord::UnfenceBroker {
                        broker_id,
                        broker_epoch,
                    }];
                    records.extend(leaders_back_to(image, broker_id, &self.config));
                    return Ok(Decision::Propose(
                        RecordBatch::new(records),
                        ControllerReply::Heartbeat {
                            fenced: false,
                            shutdown_ready: false,
                        },
                    ));
                }
                Ok(Decision::Reply(ControllerReply::Heartbeat {
                    fenced: broker.fenced,
                    shutdown_ready: want_shutdown && broker.fenced,
                }))
            }
            ControllerRequest::CreateTopic {
                name,
                topic_id,
                partitions,
                replication_factor,
                assignments,
                configs,
                validate_only,
            } => {
                if image.topics.contains_key(&name) {
                    return Err(ControllerError::new(
                        codes::TOPIC_ALREADY_EXISTS,
                        format!("topic '{name}' already exists"),
                    ));
                }
                let assignments = match assignments {
                    Some(a) => {
                        validate_assignments(image, 0, &a, None)?;
                        a
                    }
                    None => {
                        let partitions = match partitions {
                            -1 => self.config.default_partitions,
                            p => p,
                        };
                        if partitions < 1 {
                            return Err(ControllerError::new(
                                codes::INVALID_PARTITIONS,
                                format!(
                                    "number of partitions must be at least 1, got {partitions}"
                                ),
                            ));
                        }
                        let rf = match replication_factor {
                            -1 => self.config.default_replication_factor,
                            rf => rf,
                        };
                        place(image, &name, 0, partitions, rf)?
                    }
                };
                if validate_only {
                    return Ok(Decision::Reply(ControllerReply::Done));
                }
                let mut records = vec![MetadataRecord::Topic {
                    name: name.clone(),
                    topic_id: topic_id.clone(),
                }];
                records.extend(partition_records(image, &topic_id, 0, assignments));
                records.extend(configs.into_iter().map(|(key, value)| {
                    MetadataRecord::TopicConfig {
                        topic: name.clone(),
                        key,
                        value: Some(value),
                    }
                }));
                Ok(Decision::Propose(
                    RecordBatch::new(records),
                    ControllerReply::Done,
                ))
            }
            ControllerRequest::DeleteTopic { name } => {
                let topic = known_topic(image, &name)?;
                Ok(Decision::Propose(
                    RecordBatch::new(vec![MetadataRecord::RemoveTopic {
                        topic_id: topic.topic_id.clone(),
                    }]),
                    ControllerReply::Done,
                ))
            }
            ControllerRequest::CreatePartitions {
                name,
                count,
                assignments,
                validate_only,
            } => {
                let topic = known_topic(image, &name)?;
                let current = topic.partitions.len() as i32;
                if count <= current {
                    return Err(ControllerError::new(
                        codes::INVALID_PARTITIONS,
                        format!("topic '{name}' has {current} partitions; the new count must be larger, got {count}"),
                    ));
                }
                let rf = topic
                    .partitions
                    .values()
                    .next()
                    .map_or(1, |p| p.replicas.len() as i16);
                let assignments = match assignments {
                    Some(a) => {
                        if a.len() as i32 != count - current {
                            return Err(ControllerError::new(
                                codes::INVALID_REPLICA_ASSIGNMENT,
                                format!(
                                    "{} assignments given for {} new partitions",
                                    a.len(),
                                    count - current
                                ),
                            ));
                        }
                        validate_assignments(image, current, &a, Some(rf as usize))?;
                        a
                    }
                    None => place(image, &name, current, count - current, rf)?,
                };
                if validate_only {
                    return Ok(Decision::Reply(ControllerReply::Done));
                }
                Ok(Decision::Propose(
                    RecordBatch::new(partition_records(
                        image,
                        &topic.topic_id,
                        current,
                        assignments,
                    )),
                    ControllerReply::Done,
                ))
            }
            ControllerRequest::AlterTopicConfigs {
                name,
                set,
                remove,
                replace,
                validate_only,
            } => {
                let topic = known_topic(image, &name)?;
                if validate_only {
                    return Ok(Decision::Reply(ControllerReply::Done));
                }
                // Turning unclean leader election on elects the offline partitions it allows at once.
                let unclean_on = set
                    .get("unclean.leader.election.enable")
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
                let mut records: Vec<MetadataRecord> = Vec::new();
                let removed: Vec<String> = if replace {
                    topic
                        .configs
                        .keys()
                        .filter(|k| !set.contains_key(*k))
                        .cloned()
                        .collect()
                } else {
                    remove
                        .into_iter()
                        .filter(|k| topic.configs.contains_key(k))
                        .collect()
                };
                records.extend(removed.into_iter().map(|key| MetadataRecord::TopicConfig {
                    topic: name.clone(),
                    key,
                    value: None,
                }));
                records.extend(
                    set.into_iter()
                        .map(|(key, value)| MetadataRecord::TopicConfig {
                            topic: name.clone(),
                            key,
                            value: Some(value),
                        }),
                );
                if unclean_on {
                    records.extend(unclean_elections_of(image, topic));
                }
                if records.is_empty() {
                    return Ok(Decision::Reply(ControllerReply::Done));
                }
                Ok(Decision::Propose(
                    RecordBatch::new(records),
                    ControllerReply::Done,
                ))
            }
            ControllerRequest::AlterBrokerConfigs {
                resource,
                set,
                remove,
                replace,
                validate_only,
            } => {
                if !resource.is_empty() && resource.parse::<i32>().is_err() {
                    return Err(ControllerError::new(
                        codes::INVALID_REQUEST,
                        format!("broker resource {resource:?} is neither a broker id nor \"\" (every broker)"),
                    ));
                }
                if validate_only {
                    return Ok(Decision::Reply(ControllerReply::Done));
                }
                let current = image.broker_configs.get(&resource);
                let has = |k: &String| current.is_some_and(|c| c.contains_key(k));
                let removed: Vec<String> = if replace {
                    current
                        .into_iter()
                        .flat_map(|c| c.keys())
                        .filter(|k| !set.contains_key(*k))
                        .cloned()
                        .collect()
                } else {
                    remove.into_iter().filter(|k| has(k)).collect()
                };
                let mut records: Vec<MetadataRecord> = removed
                    .into_iter()
                    .map(|key| MetadataRecord::BrokerConfig {
                        resource: resource.clone(),
                        key,
                        value: None,
                    })
                    .collect();
                records.extend(
                    set.into_iter()
                        .map(|(key, value)| MetadataRecord::BrokerConfig {
                            resource: resource.clone(),
                            key,
                            value: Some(value),
                        }),
                );
                if records.is_empty() {
                    return Ok(Decision::Reply(ControllerReply::Done));
                }
                Ok(Decision::Propose(
                    RecordBatch::new(records),
                    ControllerReply::Done,
                ))
            }
            ControllerRequest::AllocateProducerIds { broker_id, count } => {
                if count < 1 {
                    return Err(ControllerError::new(
                        codes::INVALID_REQUEST,
                        "a producer id block holds at least one id",
                    ));
                }
                let first = self.producer_id_reserved.max(image.next_producer_id);
                self.producer_id_reserved = first + count;
                Ok(Decision::Propose(
                    RecordBatch::new(vec![MetadataRecord::ProducerIds {
                        broker_id,
                        next_producer_id: first + count,
                    }]),
                    ControllerReply::ProducerIds { first, count },
                ))
            }
            ControllerRequest::AlterPartition {
                broker_id,
                topic_id,
                partition,
                leader_epoch,
                partition_epoch,
                isr,
            } => alter_partition(
                image,
                broker_id,
                &topic_id,
                partition,
                leader_epoch,
                partition_epoch,
                isr,
                self.config.min_insync_replicas,
            ),
            ControllerRequest::ElectPreferredLeaders { partitions } => {
                Ok(elect_preferred_leaders(image, partitions))
            }
            ControllerRequest::AlterReassignments {
                partitions,
                allow_replication_factor_change,
            } => Ok(alter_reassignments(
                image,
                partitions,
                allow_replication_factor_change,
            )),
        }
    }

    /// Fences a broker whose session expired at `now_ms` (one batch: the fence and its leaderships moved away),
    /// or else runs the leader rebalance when it is due. At most one fence per call: its elections are decided
    /// against `image`, so the caller proposes the batch and calls again with the image that includes it until
    /// nothing is returned (two fences decided against one image would each undo the other's elections).
    pub fn tick(&mut self, now_ms: u64, image: &MetadataImage) -> Vec<RecordBatch> {
        self.fencing.retain(|(id, epoch), _| {
            image
                .brokers
                .get(id)
                .is_some_and(|b| b.broker_epoch == *epoch && !b.fenced)
        });
        let mut batches = Vec::new();
        for broker in image.live_brokers() {
            let last = match self.sessions.get(&broker.broker_id) {
                Some((epoch, last)) if *epoch == broker.broker_epoch => *last,
                // Registered or unfenced through another controller's term: its session starts now.
                _ => {
                    self.sessions
                        .insert(broker.broker_id, (broker.broker_epoch, now_ms));
                    now_ms
                }
            };
            if now_ms.saturating_sub(last) < self.config.session_timeout_ms {
                continue;
            }
            let key = (broker.broker_id, broker.broker_epoch);
            if let Some(at) = self.fencing.get(&key) {
                if now_ms.saturating_sub(*at) < self.config.session_timeout_ms {
                    continue;
                }
            }
            self.fencing.insert(key, now_ms);
            let mut records = vec![MetadataRecord::FenceBroker {
                broker_id: broker.broker_id,
                broker_epoch: broker.broker_epoch,
            }];
            records.extend(leaders_away_from(
                image,
                broker.broker_id,
                &self.config,
                true,
            ));
            batches.push(RecordBatch::new(records));
            break;
        }
        if let Some((interval, percentage)) = self.config.leader_rebalance {
            if batches.is_empty() && now_ms.saturating_sub(self.last_rebalance_check) >= interval {
                self.last_rebalance_check = now_ms;
                if let Some(batch) = rebalance_leaders(image, percentage) {
                    batches.push(batch);
                }
            }
        }
        batches
    }

    /// When the next [`Controller::tick`] may have something to do.
    pub fn next_deadline(&self, image: &MetadataImage) -> Option<u64> {
        let sessions = image
            .live_brokers()
            .filter_map(|b| self.sessions.get(&b.broker_id))
            .map(|(_, last)| last + self.config.session_timeout_ms)
            .min();
        let rebalance = self
            .config
            .leader_rebalance
            .map(|(interval, _)| self.last_rebalance_check + interval);
        sessions.into_iter().chain(rebalance).min()
    }
}

#[allow(clippy::too_many_arguments)]
fn alter_partition(
    image: &MetadataImage,
    broker_id: i32,
    topic_id: &str,
    partition: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    isr: Vec<i32>,
    default_min_isr: i32,
) -> Result<Decision, ControllerError> {
    let unknown = || {
        ControllerError::new(
            codes::UNKNOWN_TOPIC_OR_PARTITION,
            format!("partition {partition} of topic id {topic_id} does not exist"),
        )
    };
    let topic = image.topic_by_id(topic_id).ok_or_else(unknown)?;
    let p = topic.partitions.get(&partition).ok_or_else(unknown)?;
    let name = format!("{}-{partition}", topic.name);
    if p.leader != broker_id {
        return Err(ControllerError::new(
            codes::NOT_LEADER_OR_FOLLOWER,
            format!(
                "broker {broker_id} does not lead {name} (leader: {})",
                p.leader
            ),
        ));
    }
    if leader_epoch != p.leader_epoch {
        return Err(ControllerError::new(
            codes::FENCED_LEADER_EPOCH,
            format!(
                "{name}: leader epoch {leader_epoch} is not the current {}",
                p.leader_epoch
            ),
        ));
    }
    if partition_epoch != p.partition_epoch {
        return Err(ControllerError::new(
            codes::INVALID_UPDATE_VERSION,
            format!(
                "{name}: partition epoch {partition_epoch} is not the current {}",
                p.partition_epoch
            ),
        ));
    }
    let mut isr = isr;
    isr.sort_unstable();
    isr.dedup();
    if !isr.contains(&broker_id) || isr.iter().any(|r| !p.replicas.contains(r)) {
        return Err(ControllerError::new(
            codes::INVALID_REQUEST,
            format!(
                "{name}: ISR {isr:?} must hold the leader and only replicas of {:?}",
                p.replicas
            ),
        ));
    }
    let live = |b: &i32| image.brokers.get(b).is_some_and(|r| !r.fenced);
    if let Some(b) = isr.iter().find(|b| !p.isr.contains(b) && !live(b)) {
        return Err(ControllerError::new(
            codes::INELIGIBLE_REPLICA,
            format!("{name}: broker {b} is fenced or not registered and cannot join the ISR"),
        ));
    }
    let mut current = p.isr.clone();
    current.sort_unstable();
    if current == isr {
        return Ok(Decision::Reply(ControllerReply::Done));
    }
    // Replicas leaving an ISR smaller than min.insync.replicas stay eligible to lead (KIP-966).
    let elr = elr_after(p, &isr, min_isr(topic, p, default_min_isr), true);
    // The change that brings the last target replica into the ISR completes a reassignment in progress.
    let mut records = match reassignment_completion(image, topic_id, partition, p, &isr) {
        Some(records) => records,
        None => vec![MetadataRecord::PartitionChange {
            topic_id: topic_id.to_string(),
            partition,
            leader: p.leader,
            isr,
        }],
    };
    if elr != p.elr {
        records.push(MetadataRecord::PartitionElr {
            topic_id: topic_id.to_string(),
            partition,
            elr,
        });
    }
    Ok(Decision::Propose(
        RecordBatch::new(records),
        ControllerReply::Done,
    ))
}

/// Kafka's AlterPartitionReassignments, per partition: the new replicas join as followers first (the partition's
/// replicas become the target plus those leaving); once every target replica is in the ISR, the reassignment
/// completes (in this batch if they already are, else with the AlterPartition that gets them there): the
/// leaving replicas go, leadership moves off a leaving leader to an in-sync target replica. A cancellation
/// goes back to the replicas from before.
fn alter_reassignments(
    image: &MetadataImage,
    partitions: Vec<(String, i32, Option<Vec<i32>>)>,
    allow_replication_factor_change: bool,
) -> Decision {
    let mut records = Vec::new();
    let mut results = Vec::with_capacity(partitions.len());
    for (topic, index, target) in partitions {
        let outcome = image
            .topics
            .get(&topic)
            .and_then(|t| t.partitions.get(&index).map(|p| (t, p)))
            .ok_or_else(|| {
                ControllerError::new(
                    codes::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("{topic}-{index} does not exist"),
                )
            })
            .and_then(|(t, p)| {
                let name = format!("{topic}-{index}");
                match target {
                    Some(target) => reassign(
                        image,
                        &t.topic_id,
                        index,
                        p,
                        &name,
                        target,
                        allow_replication_factor_change,
                    ),
                    None if p.is_reassigning() => {
                        cancel_reassignment(image, &t.topic_id, index, p, &name)
                    }
                    None => Err(ControllerError::new(
                        codes::NO_REASSIGNMENT_IN_PROGRESS,
                        format!("{name} has no reassignment in progress to cancel"),
                    )),
                }
            });
        match outcome {
            Ok(change) => {
                records.extend(change);
                results.push(((topic, index), None));
            }
            Err(e) => results.push(((topic, index), Some(e))),
        }
    }
    let reply = ControllerReply::Reassignments(results);
    if records.is_empty() {
        Decision::Reply(reply)
    } else {
        Decision::Propose(RecordBatch::new(records), reply)
    }
}

fn reassign(
    image: &MetadataImage,
    topic_id: &str,
    index: i32,
    p: &PartitionImage,
    name: &str,
    target: Vec<i32>,
    allow_replication_factor_change: bool,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    validate_assignments(image, index, std::slice::from_ref(&target), None)
        .map_err(|e| ControllerError::new(e.code, format!("{name}: {}", e.message)))?;
    let original = p.original_replicas();
    if !allow_replication_factor_change && target.len() != original.len() {
        return Err(ControllerError::new(
            codes::INVALID_REPLICATION_FACTOR,
            format!(
                "{name}: the target has {} replicas and the partition {}; changing the replication factor was not allowed",
                target.len(),
                original.len()
            ),
        ));
    }
    let adding: Vec<i32> = target
        .iter()
        .copied()
        .filter(|r| !original.contains(r))
        .collect();
    let removing: Vec<i32> = original
        .iter()
        .copied()
        .filter(|r| !target.contains(r))
        .collect();
    let replicas: Vec<i32> = target.iter().chain(&removing).copied().collect();
    let mut next = p.clone();
    next.replicas = replicas.clone();
    next.adding_replicas = adding.clone();
    next.removing_replicas = removing.clone();
    // Already in sync (only removals or a new order): done at once.
    if let Some(done) = reassignment_completion(image, topic_id, index, &next, &p.isr) {
        return Ok(done);
    }
    // Replicas that left the target in an earlier reassignment and are not coming back leave the ISR now.
    let isr: Vec<i32> = p
        .isr
        .iter()
        .copied()
        .filter(|r| replicas.contains(r))
        .collect();
    if isr.is_empty() {
        return Err(ControllerError::new(
            codes::INVALID_REPLICA_ASSIGNMENT,
            format!(
                "{name}: no in-sync replica {:?} is among {replicas:?}",
                p.isr
            ),
        ));
    }
    let mut records = Vec::new();
    if isr != p.isr {
        records.push(MetadataRecord::PartitionChange {
            topic_id: topic_id.to_string(),
            partition: index,
            leader: if isr.contains(&p.leader) {
                p.leader
            } else {
                isr[0]
            },
            isr,
        });
    }
    records.push(MetadataRecord::PartitionReplicas {
        topic_id: topic_id.to_string(),
        partition: index,
        replicas,
        adding,
        removing,
    });
    Ok(records)
}

/// The records that complete `p`'s reassignment once its ISR is `isr`, if every target replica is in it: the
/// ISR keeps only target replicas, a leaving leader hands over to the first live in-sync target replica.
fn reassignment_completion(
    image: &MetadataImage,
    topic_id: &str,
    index: i32,
    p: &PartitionImage,
    isr: &[i32],
) -> Option<Vec<MetadataRecord>> {
    if !p.is_reassigning() {
        return None;
    }
    let target = p.target_replicas();
    if !target.iter().all(|r| isr.contains(r)) {
        return None;
    }
    Some(final_assignment(image, topic_id, index, p, target, isr))
}

/// A cancellation: back to the replicas from before the reassignment, keeping the ISR's members among them.
/// Refused when none of them is in sync (going back would leave the partition without an in-sync replica).
fn cancel_reassignment(
    image: &MetadataImage,
    topic_id: &str,
    index: i32,
    p: &PartitionImage,
    name: &str,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let original = p.original_replicas();
    if !original.iter().any(|r| p.isr.contains(r)) {
        return Err(ControllerError::new(
            codes::INVALID_REPLICA_ASSIGNMENT,
            format!(
                "{name}: none of the original replicas {original:?} is in sync (ISR {:?}); the reassignment cannot be cancelled now",
                p.isr
            ),
        ));
    }
    Ok(final_assignment(
        image, topic_id, index, p, original, &p.isr,
    ))
}

/// The records that end a reassignment with `replicas` (and the ISR members among them).
fn final_assignment(
    image: &MetadataImage,
    topic_id: &str,
    index: i32,
    p: &PartitionImage,
    replicas: Vec<i32>,
    isr: &[i32],
) -> Vec<MetadataRecord> {
    let live = |b: &i32| image.brokers.get(b).is_some_and(|r| !r.fenced);
    // Never empty: the callers check that an in-sync replica stays.
    let next_isr: Vec<i32> = isr
        .iter()
        .copied()
        .filter(|r| replicas.contains(r))
        .collect();
    let leader = if replicas.contains(&p.leader) && next_isr.contains(&p.leader) {
        p.leader
    } else {
        replicas
            .iter()
            .copied()
            .find(|r| next_isr.contains(r) && live(r))
            .unwrap_or(-1)
    };
    let mut records = Vec::new();
    if leader != p.leader || next_isr != p.isr {
        records.push(MetadataRecord::PartitionChange {
            topic_id: topic_id.to_string(),
            partition: index,
            leader,
            isr: next_isr,
        });
    }
    records.push(MetadataRecord::PartitionReplicas {
        topic_id: topic_id.to_string(),
        partition: index,
        replicas,
        adding: Vec::new(),
        removing: Vec::new(),
    });
    records
}

fn elect_preferred_leaders(
    image: &MetadataImage,
    partitions: Option<Vec<(String, i32)>>,
) -> Decision {
    let requested: Vec<(String, i32)> = partitions.unwrap_or_else(|| {
        image
            .topics
            .values()
            .flat_map(|t| t.partitions.keys().map(|i| (t.name.clone(), *i)))
            .collect()
    });
    let live = |b: &i32| image.brokers.get(b).is_some_and(|r| !r.fenced);
    let mut records = Vec::new();
    let mut results = Vec::with_capacity(requested.len());
    for (topic, index) in requested {
        let Some((t, p)) = image
            .topics
            .get(&topic)
            .and_then(|t| t.partitions.get(&index).map(|p| (t, p)))
        else {
            let e = ControllerError::new(
                codes::UNKNOWN_TOPIC_OR_PARTITION,
                format!("{topic}-{index} does not exist"),
            );
            results.push(((topic, index), Some(e)));
            continue;
        };
        let preferred = p.replicas[0];
        let outcome = if p.leader == preferred {
            Some(ControllerError::new(
                codes::ELECTION_NOT_NEEDED,
                format!("{topic}-{index} is led by its preferred replica {preferred}"),
            ))
        } else if !p.isr.contains(&preferred) || !live(&preferred) {
            Some(ControllerError::new(
                codes::PREFERRED_LEADER_NOT_AVAILABLE,
                format!("{topic}-{index}: preferred replica {preferred} is not live and in sync"),
            ))
        } else {
            records.push(MetadataRecord::PartitionChange {
                topic_id: t.topic_id.clone(),
                partition: index,
                leader: preferred,
                isr: p.isr.clone(),
            });
            None
        };
        results.push(((topic, index), outcome));
    }
    let reply = ControllerReply::Elections(results);
    if records.is_empty() {
        Decision::Reply(reply)
    } else {
        Decision::Propose(RecordBatch::new(records), reply)
    }
}

/// Kafka's automatic leader rebalance: for each broker whose share of partitions it prefers but does not lead
/// exceeds `percentage`, moves the leadership of those partitions back to it (where it is live and in sync).
fn rebalance_leaders(image: &MetadataImage, percentage: u32) -> Option<RecordBatch> {
    let mut preferred: BTreeMap<i32, (u32, u32)> = BTreeMap::new();
    for t in image.topics.values() {
        for p in t.partitions.values() {
            if let Some(first) = p.replicas.first() {
                let entry = preferred.entry(*first).or_default();
                entry.0 += 1;
                if p.leader != *first {
                    entry.1 += 1;
                }
            }
        }
    }
    let imbalanced: Vec<i32> = preferred
        .into_iter()
        .filter(|(_, (total, off))| *off > 0 && off * 100 > total * percentage)
        .map(|(broker, _)| broker)
        .collect();
    let partitions: Vec<(String, i32)> = imbalanced_partitions(image)
        .into_iter()
        .filter(|(topic, index)| {
            image.topics[topic].partitions[index]
                .replicas
                .first()
                .is_some_and(|b| imbalanced.contains(b))
        })
        .collect();
    if partitions.is_empty() {
        return None;
    }
    match elect_preferred_leaders(image, Some(partitions)) {
        Decision::Propose(batch, _) => Some(batch),
        Decision::Reply(_) => None,
    }
}

/// Partitions not led by their preferred replica although it is live and in sync (what the automatic leader
/// rebalance moves back, `auto.leader.rebalance.enable`).
pub fn imbalanced_partitions(image: &MetadataImage) -> Vec<(String, i32)> {
    let live = |b: &i32| image.brokers.get(b).is_some_and(|r| !r.fenced);
    image
        .topics
        .values()
        .flat_map(|t| {
            t.partitions.iter().filter_map(|(i, p)| {
                let preferred = *p.replicas.first()?;
                (p.leader != preferred && p.isr.contains(&preferred) && live(&preferred))
                    .then(|| (t.name.clone(), *i))
            })
        })
        .collect()
}

fn known_topic<'a>(
    image: &'a MetadataImage,
    name: &str,
) -> Result<&'a crate::image::TopicImage, ControllerError> {
    image.topics.get(name).ok_or_else(|| {
        ControllerError::new(
            codes::UNKNOWN_TOPIC_OR_PARTITION,
            format!("topic '{name}' does not exist"),
        )
    })
}

/// New partitions from `first`, led by their first replica. The ISR starts as the leader alone: a follower
/// joins it once it has copied the leader's log (partition replication's job), never by assumption.
fn partition_records(
    image: &MetadataImage,
    topic_id: &str,
    first: i32,
    assignments: Vec<Vec<i32>>,
) -> Vec<MetadataRecord> {
    assignments
        .into_iter()
        .enumerate()
        .map(|(i, replicas)| {
            let leader = replicas
                .iter()
                .copied()
                .find(|r| image.brokers.get(r).is_some_and(|b| !b.fenced))
                .unwrap_or(-1);
            let isr = if leader >= 0 {
                vec![leader]
            } else {
                vec![replicas[0]]
            };
            MetadataRecord::Partition {
                topic_id: topic_id.to_string(),
                partition: first + i as i32,
                replicas,
                isr,
                leader,
                leader_epoch: 0,
            }
        })
        .collect()
}

/// Replica lists for partitions `first`, `first + 1`, ...: each non-empty, of `rf` replicas (default: the first
/// list's length), naming registered brokers, none twice.
fn validate_assignments(
    image: &MetadataImage,
    first: i32,
    assignments: &[Vec<i32>],
    rf: Option<usize>,
) -> Result<(), ControllerError> {
    let invalid = |m: String| Err(ControllerError::new(codes::INVALID_REPLICA_ASSIGNMENT, m));
    if assignments.is_empty() {
        return invalid("no partitions assigned".into());
    }
    let rf = rf.unwrap_or(assignments[0].len());
    for (p, replicas) in (first..).zip(assignments) {
        if replicas.is_empty() {
            return invalid(format!("partition {p} has no replicas"));
        }
        if replicas.len() != rf {
            return invalid(format!(
                "partition {p} has {} replicas; every partition needs {rf}",
                replicas.len()
            ));
        }
        let mut sorted = replicas.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != replicas.len() {
            return invalid(format!("partition {p} names a broker twice: {replicas:?}"));
        }
        if let Some(b) = replicas.iter().find(|b| !image.brokers.contains_key(b)) {
            return invalid(format!(
                "partition {p} is assigned to broker {b}, which is not registered"
            ));
        }
    }
    Ok(())
}

/// Replica placement over the live brokers, as Kafka spreads them: brokers ordered so racks alternate, the first
/// replica of partition p on broker (start + p), the others on the next brokers with a shift that grows every
/// full round, so leaders and followers both spread evenly. `start` comes from the topic name, so the placement
/// is a pure function of the image and the request.
fn place(
    image: &MetadataImage,
    name: &str,
    first: i32,
    count: i32,
    rf: i16,
) -> Result<Vec<Vec<i32>>, ControllerError> {
    let brokers = rack_alternating(image);
    let n = brokers.len();
    if rf < 1 || rf as usize > n {
        return Err(ControllerError::new(
            codes::INVALID_REPLICATION_FACTOR,
            format!(
                "replication factor {rf} is not between 1 and the {n} available broker{}",
                if n == 1 { "" } else { "s" }
            ),
        ));
    }
    let start = name
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
        % n;
    let rack = |b: i32| image.brokers.get(&b).and_then(|r| r.rack.as_deref());
    let racks: std::collections::BTreeSet<_> = brokers.iter().map(|b| rack(*b)).collect();
    Ok((first..first + count)
        .map(|p| {
            let p = p as usize;
            let leader = (start + p) % n;
            let shift = if n > 1 { p / n % (n - 1) } else { 0 };
            let mut replicas = vec![brokers[leader]];
            for j in 0..(rf as usize - 1) {
                // The other brokers, from this replica's shifted position on.
                let candidates: Vec<i32> = (0..n - 1)
                    .map(|k| brokers[(leader + 1 + (shift + j + k) % (n - 1)) % n])
                    .filter(|b| !replicas.contains(b))
                    .collect();
                let used: std::collections::BTreeSet<_> =
                    replicas.iter().map(|b| rack(*b)).collect();
                let pick = candidates
                    .iter()
                    .copied()
                    .find(|b| used.len() >= racks.len() || !used.contains(&rack(*b)))
                    .unwrap_or(candidates[0]);
                replicas.push(pick);
            }
            replicas
        })
        .collect())
}

/// Live broker ids, ordered so that consecutive brokers are on different racks where racks allow.
fn rack_alternating(image: &MetadataImage) -> Vec<i32> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
    for b in image.live_brokers() {
        by_rack
            .entry(b.rack.as_deref())
            .or_default()
            .push(b.broker_id);
    }
    let mut racks: Vec<std::collections::VecDeque<i32>> =
        by_rack.into_values().map(Into::into).collect();
    let mut order = Vec::new();
    while racks.iter().any(|r| !r.is_empty()) {
        for rack in racks.iter_mut() {
            if let Some(b) = rack.pop_front() {
                order.push(b);
            }
        }
    }
    order
}

/// `min.insync.replicas` for partition `p` of `topic` (its own setting, else the broker default), never more than
/// its replicas.
fn min_isr(topic: &crate::image::TopicImage, p: &PartitionImage, default: i32) -> usize {
    let configured = topic
        .configs
        .get("min.insync.replicas")
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(default)
        .max(1) as usize;
    configured.min(p.replicas.len().max(1))
}

/// The eligible leader replicas once `p`'s ISR is `isr` (KIP-966): once the ISR is back at `min_isr` they are no
/// longer needed; below it, the replicas that left the ISR join them (if `eligible`: a broker whose shutdown was
/// unclean may have lost records and never joins). ISR members are never in it.
fn elr_after(p: &PartitionImage, isr: &[i32], min_isr: usize, eligible: bool) -> Vec<i32> {
    if isr.len() >= min_isr {
        return Vec::new();
    }
    let mut elr: Vec<i32> = p.elr.iter().copied().filter(|r| !isr.contains(r)).collect();
    if eligible {
        for r in p.isr.iter().filter(|r| !isr.contains(r)) {
            if !elr.contains(r) {
                elr.push(*r);
            }
        }
    }
    elr
}

/// Whether `topic` lets an out-of-sync replica lead (`unclean.leader.election.enable`, the topic's own setting
/// over the broker default).
fn unclean_allowed(topic: &crate::image::TopicImage, default: bool) -> bool {
    topic
        .configs
        .get("unclean.leader.election.enable")
        .map_or(default, |v| v.trim().eq_ignore_ascii_case("true"))
}

/// An unclean election of `p` (Kafka's `unclean.leader.election.enable`): `leader` leads alone, and the eligible
/// leader replicas are cleared, since they may hold committed records the new leader lacks and must follow it.
fn unclean_election(
    topic: &crate::image::TopicImage,
    index: i32,
    p: &PartitionImage,
    leader: i32,
) -> Vec<MetadataRecord> {
    tracing::warn!(
        topic = %topic.name,
        partition = index,
        leader,
        isr = ?p.isr,
        "unclean leader election: no in-sync or eligible replica is alive; records committed but missing on \
         the new leader are lost"
    );
    let mut records = vec![MetadataRecord::PartitionChange {
        topic_id: topic.topic_id.clone(),
        partition: index,
        leader,
        isr: vec![leader],
    }];
    if !p.elr.is_empty() {
        records.push(MetadataRecord::PartitionElr {
            topic_id: topic.topic_id.clone(),
            partition: index,
            elr: Vec::new(),
        });
    }
    records
}

/// Unclean elections of `topic`'s offline partitions that have a live replica, none of their in-sync or eligible
/// replicas being alive: what setting `unclean.leader.election.enable=true` on it does at once, as in Kafka.
fn unclean_elections_of(
    image: &MetadataImage,
    topic: &crate::image::TopicImage,
) -> Vec<MetadataRecord> {
    let live = |b: &i32| image.brokers.get(b).is_some_and(|r| !r.fenced);
    let mut records = Vec::new();
    for (index, p) in &topic.partitions {
        if p.leader != -1 || p.isr.iter().any(live) || p.elr.iter().any(live) {
            continue;
        }
        if let Some(leader) = p.replicas.iter().copied().find(live) {
            records.extend(unclean_election(topic, *index, p, leader));
        }
    }
    records
}

/// Partition changes that take leadership and ISR membership away from a broker that is fenced or gone (or, with
/// `eligible` false, came back from an unclean shutdown: then also its place among the eligible leader replicas).
/// A partition whose last in-sync replica it was is led by a live eligible leader replica if there is one
/// (KIP-966: it holds every committed record); otherwise, unless its topic allows an unclean election, it goes
/// offline (leader -1) and keeps the broker in its ISR, so that broker leads it again when it returns: no replica
/// that may lack a committed record is elected.
fn leaders_away_from(
    image: &MetadataImage,
    broker_id: i32,
    config: &ControllerConfig,
    eligible: bool,
) -> Vec<MetadataRecord> {
    let default_min_isr = config.min_insync_replicas;
    let live = |b: &i32| *b != broker_id && image.brokers.get(b).is_some_and(|r| !r.fenced);
    let mut records = Vec::new();
    for topic in image.topics.values() {
        for (index, p) in &topic.partitions {
            let in_elr = p.elr.contains(&broker_id);
            // Untouched unless it leads, is in sync, or (after an unclean shutdown) is eligible.
            let leaves_elr = in_elr && !eligible;
            if p.leader != broker_id && !p.isr.contains(&broker_id) && !leaves_elr {
                continue;
            }
            let mut isr: Vec<i32> = p.isr.iter().copied().filter(|b| *b != broker_id).collect();
            let mut elr: Vec<i32>;
            let leader;
            if isr.is_empty() {
                let candidates: Vec<i32> =
                    p.elr.iter().copied().filter(|b| *b != broker_id).collect();
                match candidates.iter().copied().find(live) {
                    Some(e) => {
                        leader = e;
                        isr = vec![e];
                        elr = candidates.into_iter().filter(|b| *b != e).collect();
                        if eligible && p.isr.contains(&broker_id) {
                            elr.push(broker_id);
                        }
                    }
                    None => {
                        let unclean = p
                            .replicas
                            .iter()
                            .copied()
                            .find(live)
                            .filter(|_| unclean_allowed(topic, config.unclean_leader_election));
                        if let Some(r) = unclean {
                            records.extend(unclean_election(topic, *index, p, r));
                            continue;
                        }
                        isr = vec![broker_id];
                        leader = if p.leader == broker_id { -1 } else { p.leader };
                        elr = if eligible { p.elr.clone() } else { candidates };
                    }
                }
            } else {
                elr = elr_after(p, &isr, min_isr(topic, p, default_min_isr), eligible);
                if !eligible {
                    elr.retain(|b| *b != broker_id);
                }
                leader = if p.leader == broker_id {
                    isr.iter().copied().find(live).unwrap_or(-1)
                } else {
                    p.leader
                };
            }
            if leader != p.leader || isr != p.isr {
                records.push(MetadataRecord::PartitionChange {
                    topic_id: topic.topic_id.clone(),
                    partition: *index,
                    leader,
                    isr: isr.clone(),
                });
            }
            elr.retain(|b| !isr.contains(b));
            if elr != p.elr {
                records.push(MetadataRecord::PartitionElr {
                    topic_id: topic.topic_id.clone(),
                    partition: *index,
                    elr,
                });
            }
        }
    }
    records
}

/// Offline partitions that a broker back from a fence can lead: those whose ISR holds it, those whose ISR has no
/// live member while it is among their eligible leader replicas, and (where the topic allows unclean elections)
/// those with no live in-sync or eligible replica that it holds a replica of.
fn leaders_back_to(
    image: &MetadataImage,
    broker_id: i32,
    config: &ControllerConfig,
) -> Vec<MetadataRecord> {
    let live = |b: &i32| *b == broker_id || image.brokers.get(b).is_some_and(|r| !r.fenced);
    let mut records = Vec::new();
    for topic in image.topics.values() {
        for (index, p) in &topic.partitions {
            if p.leader != -1 {
                continue;
            }
            let isr = if p.isr.contains(&broker_id) {
                p.isr.clone()
            } else if p.elr.contains(&broker_id) && !p.isr.iter().any(live) {
                vec![broker_id]
            } else {
                // A topic that allows unclean elections: with no live in-sync or eligible replica, the returning
                // broker leads if it holds a replica.
                let waits = !p.isr.iter().any(live) && !p.elr.iter().any(live);
                if waits
                    && p.replicas.contains(&broker_id)
                    && unclean_allowed(topic, config.unclean_leader_election)
                {
                    records.extend(unclean_election(topic, *index, p, broker_id));
                }
                continue;
            };
            records.push(MetadataRecord::PartitionChange {
                topic_id: topic.topic_id.clone(),
                partition: *index,
                leader: broker_id,
                isr,
            });
        }
    }
    records
}
