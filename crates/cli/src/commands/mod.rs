//! One module per `strom` subcommand.

pub mod bench;
pub mod broker;
pub mod cluster;
pub mod consume;
pub mod dev_cluster;
pub mod group;
pub mod produce;
pub mod storage;
pub mod topic;
pub mod transactions;
