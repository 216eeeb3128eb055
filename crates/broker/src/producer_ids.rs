//! Producer id allocation for InitProducerId.
//!
//! Ids come from blocks reserved in the durable metadata (one write per block), so a restarted broker never hands
//! out an id twice; the cost of a crash is at most one unused block.

use parking_lot::Mutex;

use crate::topics::{TopicError, Topics};

const BLOCK: i64 = 1000;

pub struct ProducerIds {
    /// Next id to hand out and the end of the reserved block.
    range: Mutex<(i64, i64)>,
}

impl ProducerIds {
    pub fn new() -> Self {
        Self {
            range: Mutex::new((0, 0)),
        }
    }

    pub fn next(&self, topics: &Topics) -> Result<i64, TopicError> {
        let mut range = self.range.lock();
        if range.0 >= range.1 {
            let first = topics.reserve_producer_ids(BLOCK)?;
            *range = (first, first + BLOCK);
        }
        let id = range.0;
        range.0 += 1;
        Ok(id)
    }
}

impl Default for ProducerIds {
    fn default() -> Self {
        Self::new()
    }
}
