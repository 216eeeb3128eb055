//! Partition replication (issue 10 builds on this): the algorithms as state machines without I/O, first the
//! leader's view of its followers (`leader.rs`). Nothing in the broker drives them yet.

pub mod leader;
