//! EndTxn: the producer commits or aborts its transaction. Answered once the decision is persisted in
//! `__transaction_state`; the markers are written to the transaction's partitions after that.

use std::sync::Arc;

use strom_protocol::kafka::messages::{EndTxnRequest, EndTxnResponse};

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
    let outcome = driver::end_txn(
        &state,
        request.transactional_id.0.as_str(),
        producer,
        request.committed,
    )
    .await;
    let code = outcome.err().unwrap_or(0);
    EndTxnResponse::default().with_error_code(crate::transactions::for_version(code, version, 2))
}
