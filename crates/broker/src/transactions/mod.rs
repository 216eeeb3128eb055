//! Transactions (issue 12). `coordinator.rs` is the transaction coordinator's state machine without I/O; the
//! handlers, `__transaction_state` and marker writing build on it.

pub mod coordinator;
pub mod driver;
pub mod markers;
pub mod record;
pub mod store;
