//! The Strom broker.
