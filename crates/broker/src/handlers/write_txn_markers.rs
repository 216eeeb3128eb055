//! WriteTxnMarkers: a transaction coordinator on another broker asks this one, as the leader of some of a
//! transaction's partitions, to write the transaction's markers there. Answered per partition once each marker is
//! flushed and on its ISR (NOT_LEADER_OR_FOLLOWER where this broker does not lead; INVALID_PRODUCER_EPOCH or
//! TRANSACTION_COORDINATOR_FENCED for a marker from an older producer or coordinator epoch, which writes nothing).

use std::sync::Arc;

use strom_log::txn::{ControlType, Marker};
use strom_protocol::kafka::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use strom_protocol::kafka::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use crate::server::BrokerState;
use crate::transactions::markers::write_local;

pub async fn handle(
    state: Arc<BrokerState>,
    request: WriteTxnMarkersRequest,
    _version: i16,
) -> WriteTxnMarkersResponse {
    let mut results = Vec::with_capacity(request.markers.len());
    for m in request.markers {
        let marker = Marker {
            control: if m.transaction_result {
                ControlType::Commit
            } else {
                ControlType::Abort
            },
            coordinator_epoch: m.coordinator_epoch,
        };
        let partitions: Vec<(String, i32)> = m
            .topics
            .iter()
            .flat_map(|t| {
                t.partition_indexes
                    .iter()
                    .map(|p| (t.name.0.to_string(), *p))
            })
            .collect();
        let codes = write_local(
            &state,
            m.producer_id.0,
            m.producer_epoch,
            marker,
            &partitions,
        )
        .await;
        let mut codes = codes.into_iter();
        let topics = m
            .topics
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partition_indexes
                    .iter()
                    .map(|p| {
                        WritableTxnMarkerPartitionResult::default()
                            .with_partition_index(*p)
                            .with_error_code(codes.next().unwrap_or(0))
                    })
                    .collect();
                WritableTxnMarkerTopicResult::default()
                    .with_name(t.name)
                    .with_partitions(partitions)
            })
            .collect();
        results.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(results)
}
