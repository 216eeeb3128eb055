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
    ///
    /// The file is read straight into `out`'s tail and the bytes past the last whole batch are cut off again, so
    /// record bytes are copied once, by the `pread`.
    pub(crate) fn read_into(
        &self,
        position: u64,
        max_bytes: usize,
        max_offset: i64,
        oversized_ok: bool,
        out: &mut Vec<u8>,
    ) -> Result<bool, LogError> {
        let available = (self.size - position) as usize;
        let start = out.len();
        let wanted = available.min(max_bytes);
        out.resize(start + wanted, 0);
        if let Err(e) = self.log.read_exact_at(&mut out[start..], position) {
            out.truncate(start);
            return Err(e).at(&self.log_path);
        }
        let mut used = 0usize;
        let mut reached_end = false;
        loop {
            if position as usize + used == self.size as usize {
                reached_end = true;
                break;
            }
            let rest = &out[start + used..];
            if rest.len() < LOG_OVERHEAD {
                break;
            }
            let base = be_i64(rest, 0);
            let length = be_i32(rest, 8);
            if base >= max_offset {
                break;
            }
            let total = length.max(0) as usize + LOG_OVERHEAD;
            if total > rest.len() {
                break;
            }
            used += total;
        }
        out.truncate(start + used);
        if used == 0 && !reached_end && oversized_ok && available >= LOG_OVERHEAD {
            let head = self.read_bytes(position, LOG_OVERHEAD)?;
            let (base, length) = (be_i64(&head, 0), be_i32(&head, 8));
            if base < max_offset {
                let total = (length.max(0) as usize + LOG_OVERHEAD).min(available);
                out.resize(start + total, 0);
                if let Err(e) = self.log.read_exact_at(&mut out[start..], position) {
                    out.truncate(start);
                    return Err(e).at(&self.log_path);
                }
            }
        }
        Ok(reached_end)
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
