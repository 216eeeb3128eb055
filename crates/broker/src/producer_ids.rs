//! Producer id allocation for InitProducerId.
//!
//! Ids come from blocks the controller hands out through the metadata log (one record per block), so no two
//! brokers, and no restarted broker, ever hand out the same id; the cost of a crash is at most one unused block.

use parking_lot::Mutex;

use crate::server::BrokerState;
use crate::topics::TopicError;

const BLOCK: i64 = 1000;

pub struct ProducerIds {
    /// Next id to hand out and the end of the reserved block.
    range: Mutex<(i64, i64)>,
    /// One block request at a time.
    refill: tokio::sync::Mutex<()>,
}

impl ProducerIds {
    pub fn new() -> Self {
        Self {
            range: Mutex::new((0, 0)),
            refill: tokio::sync::Mutex::new(()),
        }
    }

    pub async fn next(&self, state: &BrokerState) -> Result<i64, TopicError> {
        loop {
            {
                let mut range = self.range.lock();
                if range.0 < range.1 {
                    let id = range.0;
                    range.0 += 1;
                    return Ok(id);
                }
            }
            let _refill = self.refill.lock().await;
            let empty = {
                let range = self.range.lock();
                range.0 >= range.1
            };
            if empty {
                let first = state.allocate_producer_ids(BLOCK).await?;
                *self.range.lock() = (first, first + BLOCK);
            }
        }
    }
}

impl Default for ProducerIds {
    fn default() -> Self {
        Self::new()
    }
}
