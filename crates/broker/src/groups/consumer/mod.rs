//! The KIP-848 consumer group protocol (ConsumerGroupHeartbeat, ConsumerGroupDescribe) as a state machine
//! without I/O, next to the classic coordinator in the parent module.
//!
//! Members join, stay and leave by heartbeating; the broker computes every member's *target* assignment
//! (server-side assignors, `assignors`) and each member *reconciles* towards it (`reconcile`): partitions it
//! must lose are revoked first and only then handed to their new owner, so no partition ever has two owners,
//! and members that keep a partition keep consuming it through the whole rebalance.
//!
//! The driver feeds [`ConsumerEvent`]s with the current time and a [`TopicLookup`] (the topic → id and
//! partition count view; read on every heartbeat, so new topics and partitions lead to a new target
//! assignment) and sends back the [`ConsumerOutput`]s. Timers (session and rebalance timeouts) are deadlines:
//! sleep until [`ConsumerGroupCoordinator::next_deadline`], then call [`ConsumerGroupCoordinator::tick`].
//!
//! Layout: `api` (the vocabulary), `coordinator` (validation, routing, deadline index, admin queries), `group`
//! (one group: epochs, target, ownership), `member`, `reconcile` (one member's next step), `assignors`
//! (uniform, range). As with classic groups, membership is kept in memory only.

mod api;
mod assignors;
mod coordinator;
mod group;
mod member;
mod reconcile;
#[cfg(test)]
mod tests;

pub use api::{
    error, Assignment, AssignorName, ConsumerEvent, ConsumerGroupConfig, ConsumerGroupDescription,
    ConsumerGroupState, ConsumerMemberDescription, ConsumerOutput, DescribedPartitions, Heartbeat,
    HeartbeatResponse, TopicInfo, TopicLookup, JOIN_EPOCH, LEAVE_EPOCH, STATIC_LEAVE_EPOCH,
};
pub use coordinator::ConsumerGroupCoordinator;
