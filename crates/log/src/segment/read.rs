//! The read side of a segment: fetch reads and record-level timestamp lookups.

use bytes::Bytes;
use std::os::unix::fs::FileExt;

use super::Segment;
use crate::batch::{be_i32, be_i64, BatchHeader, LOG_OVERHEAD};
use crate::error::{IoContext, LogError};
use crate::record::batch_records;
use crate::scan::{BatchScanner, ScanMode, Step};

impl Segment {
    pub(crate) fn read_bytes(&self, position: u64, len: usize) -> Result<Vec<u8>, LogError> {
        let mut buf = vec![0u8; len];
        self.log
            .read_exact_at(&mut buf, position)
            .at(&self.log_path)?;
        Ok(buf)
    }

    /// Reads whole batches from `position` into `out`, at most `max_bytes`, stopping before a batch whose base
    /// offset is >= `max_offset`. If `oversized_ok` and the first batch alone exceeds `max_bytes`, it is read
    /// whole (KIP-74). Returns true if the end of the segment was reached (the caller may continue with the next).
    pub(crate) fn read_into(
        &self,
        position: u64,
        max_bytes: usize,
        max_offset: i64,
        oversized_ok: bool,
        out: &mut Vec<u8>,
    ) -> Result<bool, LogError> {
        let available = (self.size - position) as usize;
        let chunk = self.read_bytes(position, available.min(max_bytes))?;
        let mut used = 0usize;
        loop {
            if position as usize + used == self.size as usize {
                out.extend_from_slice(&chunk[..used]);
                return Ok(true);
            }
            let rest = &chunk[used..];
            if rest.len() < LOG_OVERHEAD {
                break;
            }
            let base = be_i64(rest, 0);
            let length = be_i32(rest, 8);
            if base >= max_offset {
                out.extend_from_slice(&chunk[..used]);
                return Ok(false);
            }
            let total = length.max(0) as usize + LOG_OVERHEAD;
            if total > rest.len() {
                break;
            }
            used += total;
        }
        if used == 0 && oversized_ok && available >= LOG_OVERHEAD {
            let head = self.read_bytes(position, LOG_OVERHEAD)?;
            let length = i32::from_be_bytes([head[8], head[9], head[10], head[11]]);
            let total = (length.max(0) as usize + LOG_OVERHEAD).min(available);
            out.extend_from_slice(&self.read_bytes(position, total)?);
            return Ok(false);
        }
        out.extend_from_slice(&chunk[..used]);
        Ok(false)
    }

    /// First record at or after `min_offset` with timestamp >= `ts` in this segment: (offset, timestamp).
    pub(crate) fn find_timestamp(
        &self,
        ts: i64,
        min_offset: i64,
    ) -> Result<Option<(i64, i64)>, LogError> {
        if self.max_timestamp < ts {
            return Ok(None);
        }
        let from = self
            .time_index
            .lookup_before(ts)
            .map_or(self.base_offset, |e| {
                self.base_offset + i64::from(e.relative_offset)
            })
            .max(min_offset);
        let Some((start, _)) = self.find_position(from)? else {
            return Ok(None);
        };
        let mut scanner = BatchScanner::new(
            &self.log,
            &self.log_path,
            start,
            self.size,
            ScanMode::Headers,
        );
        loop {
            match scanner.next_batch()? {
                Step::Batch {
                    position, header, ..
                } if header.max_timestamp >= ts && header.records_count > 0 => {
                    let found = self
                        .first_record_where(position, &header, |o, t| o >= min_offset && t >= ts)?;
                    if found.is_some() {
                        return Ok(found);
                    }
                }
                Step::Batch { .. } => {}
                Step::End => return Ok(None),
                Step::Invalid { position, reason } => return Err(self.corrupt(position, reason)),
            }
        }
    }

    /// The first record holding this segment's largest timestamp.
    pub(crate) fn max_timestamp_record(&self) -> Result<Option<(i64, i64)>, LogError> {
        if self.max_timestamp < 0 {
            return Ok(None);
        }
        let max = self.max_timestamp;
        let Some((position, header)) = self.find_position(self.offset_of_max_timestamp)? else {
            return Ok(None);
        };
        self.first_record_where(position, &header, |_, t| t == max)
    }

    fn first_record_where(
        &self,
        position: u64,
        header: &BatchHeader,
        pred: impl Fn(i64, i64) -> bool,
    ) -> Result<Option<(i64, i64)>, LogError> {
        let bytes = Bytes::from(self.read_bytes(position, header.total_size())?);
        let records = batch_records(header, &bytes).map_err(|r| self.corrupt(position, r))?;
        Ok(records
            .iter()
            .map(|r| (r.offset(header), r.timestamp(header)))
            .find(|&(o, t)| pred(o, t)))
    }
}
