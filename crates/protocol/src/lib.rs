//! The Kafka wire protocol as Strom speaks it, without I/O.
//!
//! Message types come from the `kafka-protocol` crate (re-exported as [`kafka`]); this crate adds what a broker
//! needs around them: frame checking before allocation ([`frame`]), the table of APIs and versions Strom serves
//! ([`apis`]), and request decoding / response encoding that never panics on hostile bytes ([`codec`]).
//! Responses are encoded as a [`ResponseFrame`] of chunks, so fetched record batches go to the socket without
//! another copy.

pub mod apis;
pub mod codec;
pub mod frame;
pub mod response_frame;
mod splice_buf;

pub use kafka_protocol as kafka;

pub use apis::{ApiSupport, SUPPORTED_APIS};
pub use codec::{decode_request, encode_response, encode_response_frame, DecodeError, Request};
pub use frame::{FrameError, LENGTH_PREFIX};
pub use response_frame::ResponseFrame;
pub use splice_buf::SPLICE_MIN_BYTES;
