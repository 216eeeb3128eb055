//! ListTransactions (KIP-664; v1 adds KIP-994's duration filter, v2 KIP-1152's transactional id pattern): the
//! transactional ids this broker coordinates, with their producer id and state, as Kafka lists them: filtered by
//! state names (a name that is not one of Kafka's states is echoed in `unknown_state_filters` and matches
//! nothing), by producer ids, from v1 by how long the transaction has been running, and from v2 by a regular
//! expression the whole id must match (INVALID_REGULAR_EXPRESSION when it does not compile); Dead ids (being
//! expired) are never listed. The whole listing is
//! COORDINATOR_LOAD_IN_PROGRESS while a `__transaction_state` partition this broker leads is still loading.

use std::sync::Arc;

use strom_protocol::kafka::messages::list_transactions_response::TransactionState;
use strom_protocol::kafka::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};
use strom_protocol::kafka::ResponseError;

use super::str_bytes;
use crate::clock::now_ms;
use crate::server::BrokerState;
use crate::transactions::coordinator::{TxnMetadata, TxnState};

/// Kafka's state names. PrepareEpochFence is a state of Kafka's coordinator that Strom's never holds (it fences
/// by aborting with the next epoch, PrepareAbort): a known name that matches no transaction.
const KNOWN_ONLY_TO_KAFKA: &[&str] = &["PrepareEpochFence"];

fn state_named(name: &str) -> Option<TxnState> {
    (0..=6)
        .filter_map(TxnState::from_code)
        .find(|s| s.name() == name)
}

pub fn handle(
    state: &Arc<BrokerState>,
    request: ListTransactionsRequest,
    version: i16,
) -> ListTransactionsResponse {
    // Empty or null: no filter. Matched against the whole id, as Java's `Matcher::matches`.
    let pattern = match request
        .transactional_id_pattern
        .as_ref()
        .filter(|p| version >= 2 && !p.is_empty())
    {
        None => None,
        Some(p) => match regex::Regex::new(&format!("^(?:{})$", p.as_str())) {
            Ok(r) => Some(r),
            Err(_) => {
                return ListTransactionsResponse::default()
                    .with_error_code(ResponseError::InvalidRegularExpression.code())
            }
        },
    };
    let transactions = match state.transactions.coordinated() {
        Ok(t) => t,
        Err(code) => return ListTransactionsResponse::default().with_error_code(code),
    };
    let mut states = Vec::new();
    let mut unknown = Vec::new();
    for name in &request.state_filters {
        match state_named(name.as_str()) {
            Some(s) => states.push(s),
            None if KNOWN_ONLY_TO_KAFKA.contains(&name.as_str()) => {}
            None => unknown.push(name.clone()),
        }
    }
    let producer_ids: Vec<i64> = request.producer_id_filters.iter().map(|p| p.0).collect();
    // Before v1 the field is not on the wire and decodes as its default, -1 (no filter).
    let duration = if version >= 1 {
        request.duration_filter
    } else {
        -1
    };
    let now = now_ms();
    let included = |m: &TxnMetadata| {
        m.state != TxnState::Dead
            && (producer_ids.is_empty() || producer_ids.contains(&m.producer_id))
            && (request.state_filters.is_empty() || states.contains(&m.state))
            // Kafka's rule, start time -1 (no transaction yet) included: running longer than the filter.
            && (duration < 0 || now - m.start_ms > duration)
            && pattern.as_ref().is_none_or(|r| r.is_match(&m.transactional_id))
    };
    let mut listed: Vec<TransactionState> = transactions
        .iter()
        .filter(|m| included(m))
        .map(|m| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(str_bytes(m.transactional_id.as_str())))
                .with_producer_id(ProducerId(m.producer_id))
                .with_transaction_state(str_bytes(m.state.name()))
        })
        .collect();
    listed.sort_by(|a, b| a.transactional_id.0.cmp(&b.transactional_id.0));
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(listed)
}
