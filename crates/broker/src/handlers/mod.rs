//! The router: one Kafka API, one handler module. [`handle`] is the table from request type to handler.
//!
//! Handlers do all ordered work (appends, topic changes) before they return, and return a future only for what
//! may wait (an fsync for acks=all, a fetch long poll); see `connection.rs` for why.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::future::BoxFuture;
use strom_protocol::kafka::messages::{RequestKind, ResponseKind};
use strom_protocol::kafka::protocol::StrBytes;
use strom_protocol::Request;

use crate::server::BrokerState;

mod add_offsets_to_txn;
mod add_partitions_to_txn;
mod alter_configs;
mod alter_partition_reassignments;
mod api_versions;
mod consumer_group_describe;
mod consumer_group_heartbeat;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod describe_log_dirs;
mod describe_producers;
mod describe_quorum;
mod describe_transactions;
mod elect_leaders;
mod end_txn;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod incremental_alter_configs;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod list_partition_reassignments;
mod list_transactions;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
mod sync_group;
mod txn_offset_commit;
mod write_txn_markers;

/// A response to come; `None` means the request gets no response (acks=0 produce).
pub type Handled = BoxFuture<'static, Option<ResponseKind>>;

fn ready(response: impl Into<ResponseKind>) -> Handled {
    let response = response.into();
    Box::pin(async move { Some(response) })
}

pub fn handle(state: &Arc<BrokerState>, request: Request, peer: SocketAddr) -> Handled {
    let v = request.api_version;
    // Built only for the two APIs that record the member's client id and host (a format per request otherwise).
    let client_id = request.client_id;
    let client = || join_group::ClientInfo::new(client_id.as_deref(), peer);
    match request.body {
        RequestKind::ApiVersions(r) => ready(api_versions::handle(r, v)),
        RequestKind::Metadata(r) => {
            let state = state.clone();
            Box::pin(async move { Some(metadata::handle(state, r, v).await.into()) })
        }
        RequestKind::Produce(r) => produce::handle(state, r, v),
        RequestKind::Fetch(r) => fetch::handle(state.clone(), r, v),
        RequestKind::ListOffsets(r) => ready(list_offsets::handle(state, r, v)),
        RequestKind::CreateTopics(r) => {
            let state = state.clone();
            Box::pin(async move { Some(create_topics::handle(state, r, v).await.into()) })
        }
        RequestKind::DeleteTopics(r) => {
            let state = state.clone();
            Box::pin(async move { Some(delete_topics::handle(state, r, v).await.into()) })
        }
        RequestKind::CreatePartitions(r) => {
            let state = state.clone();
            Box::pin(async move { Some(create_partitions::handle(state, r, v).await.into()) })
        }
        RequestKind::DescribeConfigs(r) => ready(describe_configs::handle(state, r, v)),
        RequestKind::AlterConfigs(r) => {
            let state = state.clone();
            Box::pin(async move { Some(alter_configs::handle(state, r, v).await.into()) })
        }
        RequestKind::IncrementalAlterConfigs(r) => {
            let state = state.clone();
            Box::pin(
                async move { Some(incremental_alter_configs::handle(state, r, v).await.into()) },
            )
        }
        RequestKind::DescribeCluster(r) => ready(describe_cluster::handle(state, r, v)),
        RequestKind::DeleteRecords(r) => ready(delete_records::handle(state, r, v)),
        RequestKind::DescribeQuorum(r) => {
            let state = state.clone();
            Box::pin(async move { Some(describe_quorum::handle(state, r, v).await.into()) })
        }
        RequestKind::ElectLeaders(r) => {
            let state = state.clone();
            Box::pin(async move { Some(elect_leaders::handle(state, r, v).await.into()) })
        }
        RequestKind::AlterPartitionReassignments(r) => {
            let state = state.clone();
            Box::pin(async move {
                Some(
                    alter_partition_reassignments::handle(state, r, v)
                        .await
                        .into(),
                )
            })
        }
        RequestKind::ListPartitionReassignments(r) => {
            ready(list_partition_reassignments::handle(state, r, v))
        }
        RequestKind::DescribeLogDirs(r) => ready(describe_log_dirs::handle(state, r, v)),
        RequestKind::InitProducerId(r) => {
            let state = state.clone();
            Box::pin(async move { Some(init_producer_id::handle(state, r, v).await.into()) })
        }
        RequestKind::AddPartitionsToTxn(r) => {
            let state = state.clone();
            Box::pin(async move { Some(add_partitions_to_txn::handle(state, r, v).await.into()) })
        }
        RequestKind::AddOffsetsToTxn(r) => {
            let state = state.clone();
            Box::pin(async move { Some(add_offsets_to_txn::handle(state, r, v).await.into()) })
        }
        RequestKind::TxnOffsetCommit(r) => {
            let state = state.clone();
            Box::pin(async move { Some(txn_offset_commit::handle(state, r, v).await.into()) })
        }
        RequestKind::WriteTxnMarkers(r) => {
            let state = state.clone();
            Box::pin(async move { Some(write_txn_markers::handle(state, r, v).await.into()) })
        }
        RequestKind::EndTxn(r) => {
            let state = state.clone();
            Box::pin(async move { Some(end_txn::handle(state, r, v).await.into()) })
        }
        RequestKind::DescribeTransactions(r) => ready(describe_transactions::handle(state, r, v)),
        RequestKind::ListTransactions(r) => ready(list_transactions::handle(state, r, v)),
        RequestKind::DescribeProducers(r) => ready(describe_producers::handle(state, r, v)),
        RequestKind::OffsetForLeaderEpoch(r) => ready(offset_for_leader_epoch::handle(state, r, v)),
        RequestKind::FindCoordinator(r) => {
            let state = state.clone();
            Box::pin(async move { Some(find_coordinator::handle(state, r, v).await.into()) })
        }
        RequestKind::JoinGroup(r) => join_group::handle(state, r, v, client()),
        RequestKind::SyncGroup(r) => sync_group::handle(state, r, v),
        RequestKind::Heartbeat(r) => heartbeat::handle(state, r, v),
        RequestKind::LeaveGroup(r) => leave_group::handle(state, r, v),
        RequestKind::OffsetCommit(r) => offset_commit::handle(state, r, v),
        RequestKind::OffsetFetch(r) => ready(offset_fetch::handle(state, r, v)),
        RequestKind::OffsetDelete(r) => offset_delete::handle(state, r, v),
        RequestKind::ListGroups(r) => list_groups::handle(state, r, v),
        RequestKind::DescribeGroups(r) => describe_groups::handle(state, r, v),
        RequestKind::DeleteGroups(r) => delete_groups::handle(state, r, v),
        RequestKind::ConsumerGroupHeartbeat(r) => {
            consumer_group_heartbeat::handle(state, r, v, client())
        }
        RequestKind::ConsumerGroupDescribe(r) => consumer_group_describe::handle(state, r, v),
        other => {
            // decode_request only yields APIs in SUPPORTED_APIS, and every one of them has an arm above.
            tracing::error!(request = ?std::mem::discriminant(&other), "no handler for a decoded request");
            Box::pin(async { None })
        }
    }
}

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
