//! EndTxn: the producer commits or aborts its transaction. Answered once the decision is persisted in
//! `__transaction_state`; the markers are written to the transaction's partitions after that. From v5
//! (transaction version 2) the transaction ends with the next producer epoch, returned to the producer.

use std::sync::Arc;

use strom_protocol::kafka::messages::{EndTxnRequest, EndTxnResponse, ProducerId};

use crate::server::BrokerState;
use crate::transactions::coordinator::ProducerIdAndEpoch;
use crate::transactions::driver;

pub async fn handle(
    state: Arc<BrokerState>,
    request: EndTxnRequest,
    version: i16,
) -> EndTxnResponse {
    let producer = ProducerIdAndEpoch {
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
    };
    // v5+ is transaction version 2 (KIP-890 part 2): the epoch is bumped and answered.
    let transaction_version_2 = version >= 5;
    let outcome = driver::end_txn(
        &state,
        request.transactional_id.0.as_str(),
        producer,
        request.committed,
        transaction_version_2,
    )
    .await;
    let code = outcome.err().unwrap_or(0);
    let response = EndTxnResponse::default()
        .with_error_code(crate::transactions::for_version(code, version, 2))
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    match outcome {
        Ok((producer_id, producer_epoch)) if transaction_version_2 => response
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch),
        _ => response,
    }
}
