//! Produce: validate and append each partition's batches in request order, then answer once the acks level is
//! met. acks=1 answers when the batches are in the leader's log; acks=all (-1) answers when they are fsynced on
//! the leader and every in-sync replica has them (the high watermark passed them), and refuses the write up front
//! when the ISR is smaller than `min.insync.replicas`; acks=0 gets no response.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use strom_log::AppendOutcome;
use strom_protocol::kafka::messages::produce_response::{
    PartitionProduceResponse, TopicProduceResponse,
};
use strom_protocol::kafka::messages::{ProduceRequest, ProduceResponse, ResponseKind, TopicName};
use strom_protocol::kafka::ResponseError;

use super::{str_bytes, Handled};
use crate::clock::now_ms;
use crate::partition::{LeaderAppend, Partition, PartitionError};
use crate::server::BrokerState;
use crate::transactions::verification;

/// A partition whose ack must wait for its fsync up to `offset` and, for acks=all, for its high watermark.
struct FlushWait {
    partition: Arc<Partition>,
    offset: i64,
    topic_index: usize,
    partition_index: usize,
    /// acks=all: the ISR must hold the records, and still hold `min.insync.replicas` replicas.
    replicated: Option<usize>,
    /// The leader epoch the records were written at (or found at, for a retried batch).
    leader_epoch: i32,
}

pub fn handle(state: &Arc<BrokerState>, request: ProduceRequest, version: i16) -> Handled {
    match coordinator_check(state, &request, version) {
        None => handle_verified(state, request, version, &Verified::new()),
        Some(check) => {
            let state = state.clone();
            Box::pin(async move {
                let verified = check.run(&state).await;
                handle_verified(&state, request, version, &verified).await
            })
        }
    }
}

/// The answers of a remote transaction coordinator for this request's partitions: 0 for a partition verified to
/// be in the producer's ongoing transaction, else the coordinator's error code.
type Verified = HashMap<(String, i32), i16>;

/// The partitions of a transactional produce request whose transaction is not open here yet: they need the
/// coordinator's word before their first batch is taken. Under transaction version 2 (Produce v12+, KIP-890 part
/// 2) the producer sends no AddPartitionsToTxn: the coordinator adds them now, here or on its broker. Before it,
/// a coordinator on another broker verifies them (one on this broker is asked as each batch is appended).
struct CoordinatorCheck {
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
    partitions: Vec<(String, i32)>,
    add: bool,
    remote: bool,
}

impl CoordinatorCheck {
    async fn run(self, state: &Arc<BrokerState>) -> Verified {
        let codes = if self.remote {
            verification::ask_remote(
                state,
                &self.transactional_id,
                self.producer_id,
                self.producer_epoch,
                &self.partitions,
                !self.add,
            )
            .await
        } else {
            let producer = crate::transactions::coordinator::ProducerIdAndEpoch {
                producer_id: self.producer_id,
                producer_epoch: self.producer_epoch,
            };
            let code = crate::transactions::driver::add_partitions(
                state,
                &self.transactional_id,
                producer,
                &self.partitions,
            )
            .await
            .err()
            .unwrap_or(0);
            vec![code; self.partitions.len()]
        };
        self.partitions.into_iter().zip(codes).collect()
    }
}

/// What `request` needs of its transaction coordinator before its batches are appended, if anything.
fn coordinator_check(
    state: &Arc<BrokerState>,
    request: &ProduceRequest,
    version: i16,
) -> Option<CoordinatorCheck> {
    let id = request.transactional_id.as_ref()?.0.as_str();
    let add = version >= 12;
    let remote = match state.transactions.with(id, |_| ()) {
        Err(code) if code == ResponseError::NotCoordinator.code() => true,
        // Verified batch by batch as they are appended.
        _ if !add => return None,
        _ => false,
    };
    let mut producer = None;
    let mut partitions = Vec::new();
    for topic_data in &request.topic_data {
        let Some(topic) = state.topics.get(topic_data.name.0.as_str()) else {
            continue;
        };
        for data in &topic_data.partition_data {
            let Some(header) = data
                .records
                .as_ref()
                .and_then(|r| strom_log::BatchHeader::parse(r).ok())
                .filter(|h| h.is_transactional())
            else {
                continue;
            };
            let Some(partition) = topic.partition(data.index) else {
                continue;
            };
            if !partition.in_transaction(header.producer_id, header.producer_epoch) {
                producer = Some((header.producer_id, header.producer_epoch));
                partitions.push((topic_data.name.0.to_string(), data.index));
            }
        }
    }
    let (producer_id, producer_epoch) = producer?;
    Some(CoordinatorCheck {
        transactional_id: id.to_string(),
        producer_id,
        producer_epoch,
        partitions,
        add,
        remote,
    })
}

fn handle_verified(
    state: &Arc<BrokerState>,
    request: ProduceRequest,
    version: i16,
    verified: &Verified,
) -> Handled {
    let acks = request.acks;
    let mut waits = Vec::new();
    let mut responses = Vec::with_capacity(request.topic_data.len());
    let valid_acks = matches!(acks, -1..=1);
    let transactional_id = request.transactional_id.as_ref().map(|id| id.0.to_string());

    for (topic_index, topic_data) in request.topic_data.into_iter().enumerate() {
        let topic = state.topics.get(topic_data.name.0.as_str());
        let mut partition_responses = Vec::with_capacity(topic_data.partition_data.len());
        for (partition_index, data) in topic_data.partition_data.into_iter().enumerate() {
            let response = PartitionProduceResponse::default()
                .with_index(data.index)
                .with_base_offset(-1);
            let fail = |code: i16, message: Option<String>| {
                let mut r = response.clone().with_error_code(code);
                if version >= 8 {
                    r = r.with_error_message(message.map(str_bytes));
                }
                r
            };
            if !valid_acks {
                partition_responses.push(fail(ResponseError::InvalidRequiredAcks.code(), None));
                continue;
            }
            let Some((partition, settings)) = topic
                .as_ref()
                .and_then(|t| t.partition(data.index).map(|p| (p.clone(), &t.settings)))
            else {
                let code = topic
                    .as_ref()
                    .map_or(ResponseError::UnknownTopicOrPartition.code(), |t| {
                        t.partition_error(data.index)
                    });
                partition_responses.push(fail(code, None));
                continue;
            };
            let min_isr = settings.min_insync_replicas.max(1) as usize;
            if acks == -1 {
                let isr = partition.isr_size().unwrap_or(0);
                if isr < min_isr {
                    partition_responses.push(fail(
                        ResponseError::NotEnoughReplicas.code(),
                        Some(format!(
                            "min.insync.replicas={min_isr} but the in-sync replica set has {isr}"
                        )),
                    ));
                    continue;
                }
            }
            let Some(records) = data.records else {
                partition_responses.push(fail(
                    ResponseError::InvalidRecord.code(),
                    Some("no record batch".into()),
                ));
                continue;
            };
            if let Err((code, message)) = verify_transactional(
                state,
                transactional_id.as_deref(),
                topic_data.name.0.as_str(),
                &partition,
                &records,
                verified,
            ) {
                partition_responses.push(fail(code, Some(message)));
                continue;
            }
            // `compression.type` other than `producer`: batches in another codec are rewritten into the topic's.
            let records = match settings.codec() {
                None => records,
                Some(codec) => match strom_log::recompress(records, codec) {
                    Ok(records) => records,
                    Err(e) => {
                        partition_responses.push(fail(e.kafka_error_code(), Some(e.to_string())));
                        continue;
                    }
                },
            };
            match partition.append(records, now_ms(), settings.flush_messages) {
                Ok(LeaderAppend {
                    outcome:
                        AppendOutcome::Appended {
                            base_offset,
                            last_offset,
                            log_append_time,
                            log_start_offset,
                        },
                    must_flush,
                    leader_epoch,
                }) => {
                    let mut r = response
                        .with_base_offset(base_offset)
                        .with_log_append_time_ms(log_append_time);
                    if version >= 5 {
                        r = r.with_log_start_offset(log_start_offset);
                    }
                    partition_responses.push(r);
                    if acks == -1 || must_flush {
                        state.flusher.request(partition.clone());
                        waits.push(FlushWait {
                            partition,
                            offset: last_offset + 1,
                            topic_index,
                            partition_index,
                            replicated: (acks == -1).then_some(min_isr),
                            leader_epoch,
                        });
                    }
                }
                Ok(LeaderAppend {
                    outcome:
                        AppendOutcome::Duplicate {
                            base_offset,
                            last_offset,
                            log_start_offset,
                        },
                    leader_epoch,
                    ..
                }) => {
                    // Rare (a producer's retry of a batch whose answer it lost, often across a leader change),
                    // and the offsets it names are the producer's record of where its batch is: worth a line.
                    tracing::info!(partition = %partition.name(), base_offset, last_offset, leader_epoch, "answered a retried batch with the offsets it was appended at");
                    let mut r = response
                        .with_base_offset(base_offset)
                        .with_log_append_time_ms(-1);
                    if version >= 5 {
                        r = r.with_log_start_offset(log_start_offset);
                    }
                    partition_responses.push(r);
                    // A retry of a batch that an earlier request appended: ack it like that request would be.
                    if acks == -1 {
                        state.flusher.request(partition.clone());
                        waits.push(FlushWait {
                            partition,
                            offset: last_offset + 1,
                            topic_index,
                            partition_index,
                            replicated: Some(min_isr),
                            leader_epoch,
                        });
                    }
                }
                Err(e) => {
                    let code = error_code(&e);
                    tracing::debug!(partition = %partition.name(), error = %e, "produce rejected");
                    partition_responses.push(fail(code, Some(e.to_string())));
                }
            }
        }
        responses.push(
            TopicProduceResponse::default()
                // A copy, not a slice of the request frame: once the records are appended nothing refers to the
                // frame, so the connection can reuse its read buffer instead of allocating (and page-faulting) a
                // fresh one for every produce request.
                .with_name(TopicName(str_bytes(topic_data.name.0.as_str())))
                .with_partition_responses(partition_responses),
        );
    }

    if acks == 0 {
        return Box::pin(async { None });
    }
    let response = ProduceResponse::default().with_responses(responses);
    if waits.is_empty() {
        return Box::pin(async move { Some(ResponseKind::Produce(response)) });
    }
    let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
    Box::pin(async move {
        let mut response = response;
        let deadline = tokio::time::Instant::now() + timeout;
        for wait in waits {
            let p = &wait.partition;
            let done = tokio::time::timeout_at(deadline, async {
                let flushed = p.wait_flushed(wait.offset).await;
                let replicated = match wait.replicated {
                    Some(_) => p.wait_replicated(wait.leader_epoch, wait.offset).await,
                    None => true,
                };
                flushed && replicated
            })
            .await;
            let r =
                &mut response.responses[wait.topic_index].partition_responses[wait.partition_index];
            match done {
                Ok(true) => {
                    let isr = p.isr_size().unwrap_or(0);
                    if wait.replicated.is_some_and(|min| isr < min) {
                        // In the log and on every in-sync replica, but the ISR shrank below the minimum meanwhile:
                        // Kafka's answer, which the producer retries (its idempotence makes the retry a no-op).
                        r.error_code = ResponseError::NotEnoughReplicasAfterAppend.code();
                    }
                }
                Ok(false) => r.error_code = ResponseError::NotLeaderOrFollower.code(),
                Err(_) => r.error_code = ResponseError::RequestTimedOut.code(),
            }
        }
        Some(ResponseKind::Produce(response))
    })
}

pub(crate) fn error_code(e: &PartitionError) -> i16 {
    e.kafka_error_code()
}

/// A transactional write must belong to an ongoing transaction that holds the partition (KIP-890's server-side
/// defence against a late write reopening a finished transaction): asked of the coordinator when it runs here,
/// taken from `verified` (the remote coordinator's answers) for a transaction's first batch on this partition when
/// it runs elsewhere; a later batch of a transaction already open here needs no check.
fn verify_transactional(
    state: &Arc<BrokerState>,
    transactional_id: Option<&str>,
    topic: &str,
    partition: &Partition,
    records: &bytes::Bytes,
    verified: &Verified,
) -> Result<(), (i16, String)> {
    let header = strom_log::BatchHeader::parse(records).ok();
    let transactional = header.is_some_and(|h| h.is_transactional());
    let Some(id) = transactional_id else {
        return if transactional {
            Err((
                ResponseError::TransactionalIdAuthorizationFailed.code(),
                "transactional records need the producer's transactional id".into(),
            ))
        } else {
            Ok(())
        };
    };
    let Some(header) = header.filter(|_| transactional) else {
        return Err((
            ResponseError::InvalidRecord.code(),
            format!("a produce request of transactional id {id} holds non-transactional records"),
        ));
    };
    let index = partition.index;
    let code = match verified.get(&(topic.to_string(), index)) {
        Some(code) => *code,
        None => match verification::check_local(
            state,
            id,
            header.producer_id,
            header.producer_epoch,
            topic,
            index,
        ) {
            Ok(Ok(())) => 0,
            Ok(Err(code)) => code,
            // Coordinated elsewhere and not asked: the transaction was already open here.
            Err(code) if code == ResponseError::NotCoordinator.code() => 0,
            Err(code) => code,
        },
    };
    if code == 0 {
        return Ok(());
    }
    let code_for_producer = verification::produce_error(code);
    let message = if code_for_producer == ResponseError::NotEnoughReplicas.code() {
        format!("the transaction coordinator of {id} cannot verify {topic}-{index} now (error {code}); retry")
    } else {
        format!("{topic}-{index} is not in an ongoing transaction of {id} (error {code})")
    };
    Err((code_for_producer, message))
}
