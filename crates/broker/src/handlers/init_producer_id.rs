//! InitProducerId for idempotent producers: a fresh producer id with epoch 0, or (v3+, KIP-360) the same id with
//! a bumped epoch when the client presents its current id and epoch. With a transactional id the transaction
//! coordinator answers (see `transactions/`): the id's producer id with the next epoch, which fences the previous
//! producer of that transactional id.

use std::sync::Arc;

use strom_protocol::kafka::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use strom_protocol::kafka::ResponseError;

use crate::server::BrokerState;

pub async fn handle(
    state: Arc<BrokerState>,
    request: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default();
    if let Some(transactional_id) = request.transactional_id.as_ref() {
        let expected = (request.producer_id.0 >= 0 && request.producer_epoch >= 0).then_some(
            crate::transactions::coordinator::ProducerIdAndEpoch {
                producer_id: request.producer_id.0,
                producer_epoch: request.producer_epoch,
            },
        );
        return match crate::transactions::driver::init_producer_id(
            &state,
            transactional_id.0.as_str(),
            request.transaction_timeout_ms,
            expected,
        )
        .await
        {
            Ok((id, epoch)) => response
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(epoch),
            Err(code) => response
                .with_error_code(crate::transactions::for_version(code, version, 4))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        };
    }
    if request.producer_id.0 >= 0
        && request.producer_epoch >= 0
        && request.producer_epoch < i16::MAX - 1
    {
        return response
            .with_producer_id(request.producer_id)
            .with_producer_epoch(request.producer_epoch + 1);
    }
    match state.producer_ids.next(&state).await {
        Ok(id) => response
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::warn!(error = %e, "cannot allocate a producer id");
            // Retriable for the client: the quorum may be electing a leader.
            response.with_error_code(ResponseError::CoordinatorNotAvailable.code())
        }
    }
}
