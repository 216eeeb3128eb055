//! Metadata: brokers, controller, and topics with their partitions, creating topics on first use when both the
//! broker (`auto.create.topics.enable`) and the request (`allow_auto_topic_creation`, v4+) allow it.

use std::sync::Arc;

use strom_protocol::kafka::ResponseError;

use strom_protocol::kafka::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use strom_protocol::kafka::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};

use super::str_bytes;
use crate::server::BrokerState;
use crate::topics::{Topic, TopicError};

pub async fn handle(
    state: Arc<BrokerState>,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let state = &state;
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let wants_all = match &request.topics {
        None => true,
        Some(t) => t.is_empty() && version == 0,
    };
    let allow_auto_create = version < 4 || request.allow_auto_topic_creation;
    let topics = if wants_all {
        state
            .topics
            .all()
            .iter()
            .map(|t| describe_topic(state, t, version))
            .collect()
    } else {
        let lookups = request
            .topics
            .unwrap_or_default()
            .into_iter()
            .map(|requested| async move {
                let by_name = requested.name.as_ref().map(|n| n.0.to_string());
                match by_name {
                    Some(name) => lookup(state, &name, allow_auto_create, version).await,
                    None => {
                        let found = state
                            .topics
                            .all()
                            .into_iter()
                            .find(|t| t.id == requested.topic_id);
                        match found {
                            Some(t) => describe_topic(state, &t, version),
                            None => MetadataResponseTopic::default()
                                .with_name(None)
                                .with_topic_id(requested.topic_id)
                                .with_error_code(ResponseError::UnknownTopicId.code()),
                        }
                    }
                }
            });
        futures::future::join_all(lookups).await
    };
    // Taken after the lookups, so brokers that auto-created topics name are listed.
    let image = state.cluster.image();
    let brokers: Vec<MetadataResponseBroker> = image
        .live_brokers()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.broker_id))
                .with_host(str_bytes(b.endpoint.host.clone()))
                .with_port(i32::from(b.endpoint.port))
                .with_rack(b.rack.clone().map(str_bytes))
        })
        .collect();
    let controller = state.cluster.controller_for_clients(&image);
    let mut response = MetadataResponse::default()
        .with_brokers(brokers)
        .with_topics(topics)
        .with_controller_id(BrokerId(controller));
    if version >= 2 {
        response = response.with_cluster_id(Some(str_bytes(state.cluster_id.clone())));
    }
    response
}

async fn lookup(
    state: &Arc<BrokerState>,
    name: &str,
    allow_auto_create: bool,
    version: i16,
) -> MetadataResponseTopic {
    if let Err(e) = crate::topics::validate_topic_name(name) {
        return error_topic(name, e.code());
    }
    let result = if allow_auto_create {
        state.get_or_auto_create(name).await
    } else {
        Ok(state.topics.get(name))
    };
    match result {
        Ok(Some(topic)) => describe_topic(state, &topic, version),
        Ok(None) => error_topic(name, ResponseError::UnknownTopicOrPartition.code()),
        Err(e @ TopicError::InvalidName { .. }) => error_topic(name, e.code()),
        Err(e) => {
            tracing::warn!(topic = name, error = %e, "auto-creating topic failed");
            error_topic(name, e.code())
        }
    }
}

fn error_topic(name: &str, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(name))))
        .with_error_code(code)
}

fn describe_topic(state: &BrokerState, topic: &Topic, version: i16) -> MetadataResponseTopic {
    let image = state.cluster.image();
    let fenced = |b: &i32| image.brokers.get(b).is_none_or(|r| r.fenced);
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let partitions = topic
        .slots
        .iter()
        .enumerate()
        .map(|(index, slot)| {
            let mut partition = MetadataResponsePartition::default()
                .with_partition_index(index as i32)
                .with_leader_id(BrokerId(slot.leader))
                .with_replica_nodes(ids(&slot.replicas))
                .with_isr_nodes(ids(&slot.isr));
            if slot.leader < 0 {
                partition = partition.with_error_code(ResponseError::LeaderNotAvailable.code());
            }
            if version >= 5 {
                let offline: Vec<i32> = slot.replicas.iter().copied().filter(fenced).collect();
                partition = partition.with_offline_replicas(ids(&offline));
            }
            if version >= 7 {
                partition = partition.with_leader_epoch(slot.leader_epoch);
            }
            partition
        })
        .collect();
    let mut described = MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(topic.name.to_string()))))
        .with_is_internal(matches!(
            &*topic.name,
            "__consumer_offsets" | "__transaction_state"
        ))
        .with_partitions(partitions);
    if version >= 10 {
        described = described.with_topic_id(topic.id);
    }
    described
}
