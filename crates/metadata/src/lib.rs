//! Strom's cluster metadata: the records of the metadata log, the image every node builds from them, and one
//! node of the Raft quorum that agrees on the log — all without I/O, so the whole quorum runs under a seeded
//! simulator in tests (`tests/simulation.rs`).
//!
//! Why raft-rs (TiKV's `raft` crate) and not openraft: raft-rs is a pure state machine — messages, ticks and
//! proposals in; entries to persist, messages to send and committed entries out — with no runtime, timers or
//! storage calls of its own. That is exactly the sans-I/O shape this project requires of its algorithms, and it
//! lets a simulator drive several nodes deterministically from one seed, drop, delay and duplicate their
//! messages and crash them between any two steps. openraft owns its tasks and timers on a runtime, which makes
//! a replayable message-level simulation much harder. raft-rs has run TiKV's production clusters for years.

mod controller;
mod disk;
mod image;
mod quorum;
mod records;
mod storage;

pub use controller::{
    codes, imbalanced_partitions, Controller, ControllerConfig, ControllerError, ControllerReply,
    ControllerRequest, Decision,
};
pub use disk::{generate_cluster_id, DiskError, MetaProperties, MetadataDisk};
pub use image::{Applied, BrokerRegistration, MetadataImage, PartitionImage, Rejected, TopicImage};
pub use quorum::{
    node_id, raft_id, DurableState, Output, PersistOp, ProposalError, ProposalId, QuorumConfig,
    QuorumError, QuorumNode, QuorumStatus, VoterStatus,
};
pub use records::{Configs, Endpoint, MetadataRecord, RecordBatch};
pub use storage::QuorumLog;

/// raft-rs's message type, as carried between controllers.
pub use raft::eraftpb::Message as RaftMessage;

/// A Raft message's bytes on the wire between controllers (raft-rs's protobuf encoding).
pub fn encode_raft_message(message: &RaftMessage) -> Vec<u8> {
    protobuf::Message::write_to_bytes(message).expect("raft messages always encode")
}

pub fn decode_raft_message(bytes: &[u8]) -> Result<RaftMessage, String> {
    <RaftMessage as protobuf::Message>::parse_from_bytes(bytes).map_err(|e| e.to_string())
}
