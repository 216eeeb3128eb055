//! The Strom Rust client: producer, consumer and admin over the public Kafka protocol.
