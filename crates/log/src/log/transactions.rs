//! The transaction side of a partition's log (see `txn.rs`): markers written by the transaction coordinator, the
//! last stable offset, and the aborted transactions a `read_committed` fetch lists.

use crate::batch::{stamp_offset_and_epoch, BatchHeader};
use crate::error::{AppendError, LogError};
use crate::producer_state::ActiveProducer;
use crate::txn::{marker_batch, AbortedTxn, Marker};

use super::{AppendOptions, Log};

impl Log {
    /// Appends the marker that ends `producer_id`'s transaction on this partition (WriteTxnMarkers). Refused
    /// with `InvalidProducerEpoch` for an epoch older than the producer's, and `TransactionCoordinatorFenced`
    /// for a coordinator epoch older than the last marker's. A marker for a producer with no open transaction
    /// here is written all the same (the coordinator may retry, or the transaction wrote nothing here): it
    /// completes nothing, and an abort lists an empty range. Returns the marker's offset.
    pub fn append_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        marker: Marker,
        opts: AppendOptions,
    ) -> Result<i64, AppendError> {
        self.producers
            .validate_marker(producer_id, producer_epoch, marker.coordinator_epoch)?;
        let offset = self.log_end_offset();
        let mut batch = marker_batch(producer_id, producer_epoch, marker, opts.now_ms).to_vec();
        stamp_offset_and_epoch(&mut batch, offset, opts.leader_epoch);
        let header = BatchHeader::parse(&batch)?;
        let epoch = opts.leader_epoch;
        if epoch >= 0 && self.epochs.latest_epoch().is_none_or(|l| epoch > l) {
            self.update_epochs(|c| c.assign(epoch, offset))?;
        }
        if self
            .active()
            .should_roll(&self.config, batch.len() as u64, 1, offset, opts.now_ms)
        {
            self.roll(opts.now_ms)?;
        }
        self.active_mut()
            .append(&[&batch], &[header], opts.now_ms)?;
        self.track_appended(&header, Some(marker))?;
        Ok(offset)
    }

    /// Records a batch just appended to the active segment in the producer state (`marker`: what a control batch
    /// says); the transaction an abort marker ends goes into that segment's aborted-transaction index.
    pub(super) fn track_appended(
        &mut self,
        header: &BatchHeader,
        marker: Option<Marker>,
    ) -> Result<(), LogError> {
        if let Some(aborted) = self.producers.update(header, marker) {
            self.active_mut().txn_index_mut().append(aborted)?;
        }
        Ok(())
    }

    /// The first offset of the earliest transaction still open here, if any: `read_committed` fetches stop
    /// below it (the last stable offset is the smaller of it and the high watermark).
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.producers
            .first_unstable_offset()
            .map(|o| o.max(self.log_start_offset))
    }

    /// The last stable offset for a high watermark: no record of an open transaction lies below it.
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        self.first_unstable_offset()
            .map_or(high_watermark, |o| o.min(high_watermark))
    }

    /// Whether `producer_id` at `epoch` has a transaction open here: its next transactional batch continues that
    /// transaction, which its coordinator already verified holds this partition.
    pub fn in_transaction(&self, producer_id: i64, epoch: i16) -> bool {
        self.producers.in_transaction(producer_id, epoch)
    }

    /// Producer id and first offset of every transaction open here (DescribeProducers).
    pub fn open_transactions(&self) -> Vec<(i64, i64)> {
        self.producers.open_transactions()
    }

    /// Every producer with state here (DescribeProducers), each with the max timestamp of its last batch read
    /// from that batch's header (-1 once the batch is gone from the log).
    pub fn active_producers(&self) -> Result<Vec<ActiveProducer>, LogError> {
        let mut producers = self.producers.active_producers();
        for p in &mut producers {
            if let Some(offset) = p.last_offset {
                if let Some(h) = self.batch_header_at(offset)? {
                    p.last_timestamp = h.max_timestamp;
                }
            }
        }
        Ok(producers)
    }

    /// The header of the batch holding `offset`, if the log still has it (a headers-only read).
    fn batch_header_at(&self, offset: i64) -> Result<Option<BatchHeader>, LogError> {
        if offset >= self.log_end_offset() {
            return Ok(None);
        }
        let i = self
            .segments
            .partition_point(|s| s.base_offset() <= offset)
            .saturating_sub(1);
        Ok(self.segments[i]
            .find_position(offset)?
            .map(|(_, h)| h)
            .filter(|h| h.base_offset <= offset))
    }

    /// The aborted transactions with records in `[from, upper)`, for a `read_committed` fetch from `from` that
    /// returned data below `upper` (Kafka's rule): their marker is at or after `from`, so in the segment holding
    /// `from` or a later one, and their first batch is below `upper`.
    pub fn aborted_transactions(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        let first = self.segments.partition_point(|s| s.next_offset() <= from);
        let mut out = Vec::new();
        for segment in &self.segments[first..] {
            segment.txn_index().collect(from, upper, &mut out);
        }
        out
    }
}
