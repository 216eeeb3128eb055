//! One module per `strom` subcommand.

pub mod broker;
