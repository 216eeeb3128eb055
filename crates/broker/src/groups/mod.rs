//! The classic consumer-group coordinator (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), as a state machine
//! without I/O.
//!
//! The driver feeds in [`Event`]s with the current time and acts on the [`Output`]s: each output answers one
//! parked request ([`ReplyId`]) or reports a group change. Timers are deadlines, not sleeps: after every call
//! the driver sleeps until [`GroupCoordinator::next_deadline`] (or the next request) and then calls
//! [`GroupCoordinator::tick`]. Group membership lives in memory only; offsets and their topic are the driver's.
//!
//! Layout: `api` (the vocabulary), `coordinator` (routing and the deadline index), `group` (one group's state
//! and the rebalance core), `join` and `requests` (the per-API rules on a group), `member`, `protocol`
//! (protocol vote, consumer subscription decoding).
//!
//! Driver obligations: every [`ReplyId`] handed in is answered exactly once, possibly by a later `handle` or
//! `tick`; outputs are in the order the driver should send them. Membership is not persisted: after a broker
//! restart members get UNKNOWN_MEMBER_ID and rejoin (Kafka would reload the group from `__consumer_offsets`).
//!
//! The rules follow Kafka's classic group coordinator; each deliberate difference is documented where it is
//! implemented (look for "Deviation").
//!
//! The KIP-848 consumer protocol has its own coordinator in [`consumer`]; the driver runs both in one task, and a
//! group id belongs to one of them at a time.

mod api;
pub mod consumer;
mod coordinator;
mod group;
mod join;
mod member;
mod protocol;
mod rebalance;
mod requests;
#[cfg(test)]
mod tests;

pub use api::{
    error, leave_error_v0, Event, GroupConfig, GroupDescription, GroupListing, GroupState,
    JoinMember, MemberDescription, Output, ReplyId, NEW_MEMBER_JOIN_TIMEOUT_MS,
};
pub use coordinator::GroupCoordinator;
pub use protocol::{subscription_topics, CONSUMER_PROTOCOL_TYPE};
