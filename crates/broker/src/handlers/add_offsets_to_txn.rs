//! AddOffsetsToTxn: the group's `__consumer_offsets` partition joins the transaction, so the transaction's
//! marker reaches the offsets that TxnOffsetCommit writes there.

use std::sync::Arc;

use strom_protocol::kafka::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use strom_protocol::kafka::ResponseError;

use crate::offsets::record::partition_for_group;
use crate::offsets::OFFSETS_TOPIC;
use crate::server::BrokerState;
use crate::transactions::coordinator::ProducerIdAndEpoch;
use crate::transactions::driver;

pub async fn handle(
    state: Arc<BrokerState>,
    request: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let response = AddOffsetsToTxnResponse::default();
    let group = request.group_id.0.as_str();
    if group.is_empty() {
        return response.with_error_code(ResponseError::InvalidGroupId.code());
    }
    let topic = match state.ensure_offsets_topic().await {
        Ok(topic) => topic,
        Err(e) => {
            tracing::warn!(error = %e, "cannot create the offsets topic");
            return response.with_error_code(ResponseError::CoordinatorNotAvailable.code());
        }
    };
    let partition = (
        OFFSETS_TOPIC.to_string(),
        partition_for_group(group, topic.partition_count()),
    );
    let producer = ProducerIdAndEpoch {
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
    };
    let outcome = driver::add_partitions(
        &state,
        request.transactional_id.0.as_str(),
        producer,
        &[partition],
    )
    .await;
    let code = outcome.err().unwrap_or(0);
    response.with_error_code(crate::transactions::for_version(code, version, 2))
}
