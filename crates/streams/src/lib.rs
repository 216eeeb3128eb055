//! Strom Streams: continuous processing of Kafka topics as a Rust library, on the Strom client, against any
//! Kafka-compatible broker.
//!
//! - [`StreamsBuilder`] and the DSL ([`KStream`], [`KTable`], grouped and windowed streams, joins,
//!   `suppress`) build a [`Topology`]; the Processor API ([`Processor`], [`ProcessorContext`]) is beneath it.
//! - [`KafkaStreams`] runs a topology: `application.id` is the consumer group, one task per input partition,
//!   state stores backed by changelog topics and restored when a task starts on an instance, at-least-once
//!   commits (outputs acknowledged and stores flushed before input offsets are committed) or, with
//!   `processing.guarantee=exactly_once_v2`, one transaction per commit holding outputs, changelogs and input
//!   offsets.
//! - [`TopologyTestDriver`] runs a topology without a broker.
//!
//! ```
//! use strom_streams::{Materialized, StreamsBuilder, TopologyTestDriver};
//!
//! let builder = StreamsBuilder::new();
//! builder
//!     .stream::<String, String>("words")
//!     .flat_map_values(|line| line.split(' ').map(str::to_string).collect::<Vec<_>>())
//!     .group_by(|_, word| word.clone())
//!     .count(Materialized::named("counts"))
//!     .to_stream()
//!     .to("word-counts");
//! let mut driver = TopologyTestDriver::new(builder.build());
//! driver.pipe("words", String::new(), "a b a".to_string(), 0);
//! let counts = driver.read_key_values::<String, Option<i64>>("word-counts");
//! assert_eq!(counts.last(), Some(&("a".to_string(), Some(2))));
//! assert_eq!(driver.key_value_store::<String, i64>("counts").get(&"b".to_string()), Some(1));
//! ```

pub mod config;
pub mod dsl;
pub mod processor;
pub mod record;
pub mod runtime;

pub mod serdes;
pub mod store;
mod task;
pub mod test_driver;
pub mod topology;

pub use config::{ClientOverrides, DeserializationHandler, ProcessingGuarantee, StreamsConfig};
pub use dsl::window::{JoinWindows, SessionWindows, SlidingWindows, TimeWindows, Window, Windowed};
pub use dsl::{Change, KStream, KTable, Materialized, StreamsBuilder};
pub use processor::{Processor, ProcessorContext, PunctuationType, TaskId};
pub use record::Record;
pub use runtime::{KafkaStreams, KeyQueryMetadata, State, StreamsError};

pub use serdes::{DefaultSerde, Json, Serde, SerdeError};
pub use task::TaskError;
pub use test_driver::TopologyTestDriver;
pub use topology::Topology;
