//! Transactions (issue 12). `coordinator.rs` is the transaction coordinator's state machine without I/O; the
//! handlers, `__transaction_state` and marker writing build on it.

pub mod coordinator;
pub mod driver;
pub mod markers;
pub mod record;
pub mod store;
pub mod verification;

/// An error code as a client of request `version` understands it: PRODUCER_FENCED (KIP-588) exists from
/// `fenced_since` (InitProducerId v4, AddPartitionsToTxn, AddOffsetsToTxn and EndTxn v2); older versions get
/// INVALID_PRODUCER_EPOCH for it, as Kafka answers them.
pub fn for_version(code: i16, version: i16, fenced_since: i16) -> i16 {
    use strom_protocol::kafka::ResponseError;
    if code == ResponseError::ProducerFenced.code() && version < fenced_since {
        ResponseError::InvalidProducerEpoch.code()
    } else {
        code
    }
}
