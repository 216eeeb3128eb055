//! DescribeQuorum for `__cluster_metadata-0`: the active controller, its epoch (the Raft term), the high
//! watermark (commit index) and each voter's log end offset, as the active controller sees them; what
//! `kafka-metadata-quorum.sh describe --status` and `strom cluster quorum` show. Any broker answers, asking the
//! active controller.

use std::sync::Arc;

use strom_protocol::kafka::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use strom_protocol::kafka::messages::{
    BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
};
use strom_protocol::kafka::ResponseError;

use super::str_bytes;
use crate::server::BrokerState;

pub const METADATA_TOPIC: &str = "__cluster_metadata";

pub async fn handle(
    state: Arc<BrokerState>,
    request: DescribeQuorumRequest,
    version: i16,
) -> DescribeQuorumResponse {
    let status = state.cluster.quorum_status().await;
    let topics = request
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let data = PartitionData::default().with_partition_index(p.partition_index);
                    if t.topic_name.0.as_str() != METADATA_TOPIC || p.partition_index != 0 {
                        return data.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    }
                    match &status {
                        Err(e) => {
                            let data = data
                                .with_error_code(ResponseError::NotLeaderOrFollower.code())
                                .with_leader_id(BrokerId(-1));
                            if version >= 2 {
                                data.with_error_message(Some(str_bytes(e.message.clone())))
                            } else {
                                data
                            }
                        }
                        Ok(s) => data
                            .with_leader_id(BrokerId(s.leader.unwrap_or(-1)))
                            .with_leader_epoch(s.term as i32)
                            .with_high_watermark(s.commit_index as i64)
                            .with_current_voters(
                                s.voters
                                    .iter()
                                    .map(|v| {
                                        ReplicaState::default()
                                            .with_replica_id(BrokerId(v.node_id))
                                            .with_log_end_offset(v.matched_index as i64)
                                            .with_last_fetch_timestamp(-1)
                                            .with_last_caught_up_timestamp(-1)
                                    })
                                    .collect(),
                            )
                            .with_observers(Vec::new()),
                    }
                })
                .collect();
            TopicData::default()
                .with_topic_name(TopicName(t.topic_name.0.clone()))
                .with_partitions(partitions)
        })
        .collect();
    let mut response = DescribeQuorumResponse::default().with_topics(topics);
    if version >= 2 {
        let nodes = state
            .cluster
            .voter_endpoints()
            .into_iter()
            .map(|(id, host, port)| {
                Node::default()
                    .with_node_id(BrokerId(id))
                    .with_listeners(vec![Listener::default()
                        .with_name(str_bytes("CONTROLLER"))
                        .with_host(str_bytes(host))
                        .with_port(port)])
            })
            .collect();
        response = response.with_nodes(nodes);
    }
    response
}
