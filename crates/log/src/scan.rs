//! Sequential batch-by-batch reading of a segment's `.log` file, for recovery, index rebuilds, producer-state
//! rebuilds and compaction. Reads are positional (`read_exact_at`) through a window buffer, so scanning never
//! moves a shared file cursor and a 1 KiB batch costs no syscall of its own.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::batch::{verify_crc, BatchHeader};
use crate::error::{IoContext, LogError};

/// How much is read at once: large enough to amortise syscalls over many small batches.
const WINDOW: usize = 64 * 1024;

/// What the scanner checks and returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanMode {
    /// Header framing only; `bytes` is empty. For data already validated (producer-state rebuild).
    Headers,
    /// Header framing and CRC; `bytes` holds the whole batch.
    Verified,
}

pub(crate) enum Step<'a> {
    Batch {
        position: u64,
        header: BatchHeader,
        bytes: &'a [u8],
    },
    /// The bytes at `position` are not a whole valid batch (torn write, garbage, bit flip).
    Invalid {
        position: u64,
        reason: String,
    },
    End,
}

pub(crate) struct BatchScanner<'f> {
    file: &'f File,
    path: &'f Path,
    end: u64,
    pos: u64,
    window: Vec<u8>,
    window_start: u64,
    /// How much one read takes at least.
    read_size: usize,
    mode: ScanMode,
}

impl<'f> BatchScanner<'f> {
    /// Scans `[start, end)` of `file`; `end` is the log size the caller trusts (the file may be longer).
    pub(crate) fn new(
        file: &'f File,
        path: &'f Path,
        start: u64,
        end: u64,
        mode: ScanMode,
    ) -> Self {
        BatchScanner {
            file,
            path,
            end,
            pos: start,
            window: Vec::new(),
            window_start: 0,
            read_size: WINDOW,
            mode,
        }
    }

    /// Reads `read_size` bytes at a time instead of [`WINDOW`]: for a short scan, such as finding a fetch's
    /// position from the nearest index entry (at most `index.interval.bytes` away).
    pub(crate) fn with_read_size(mut self, read_size: usize) -> Self {
        self.read_size = read_size.clamp(BatchHeader::SIZE, WINDOW);
        self
    }

    fn ensure(&mut self, pos: u64, len: usize) -> Result<&[u8], LogError> {
        let window_end = self.window_start + self.window.len() as u64;
        if pos < self.window_start || pos + len as u64 > window_end {
            let read_len = len.max(self.read_size).min((self.end - pos) as usize);
            self.window.resize(read_len, 0);
            self.file
                .read_exact_at(&mut self.window, pos)
                .at(self.path)?;
            self.window_start = pos;
        }
        let from = (pos - self.window_start) as usize;
        Ok(&self.window[from..from + len])
    }

    pub(crate) fn next_batch(&mut self) -> Result<Step<'_>, LogError> {
        let position = self.pos;
        if position >= self.end {
            return Ok(Step::End);
        }
        let available = (self.end - position) as usize;
        let head = self.ensure(position, available.min(BatchHeader::SIZE))?;
        let header = match BatchHeader::parse(head) {
            Ok(h) => h,
            Err(e) => {
                return Ok(Step::Invalid {
                    position,
                    reason: e.to_string(),
                })
            }
        };
        let total = header.total_size();
        if total > available {
            return Ok(Step::Invalid {
                position,
                reason: format!(
                    "batch of {total} bytes but only {available} bytes left in the file"
                ),
            });
        }
        let next = position + total as u64;
        match self.mode {
            ScanMode::Headers => {
                self.pos = next;
                Ok(Step::Batch {
                    position,
                    header,
                    bytes: &[],
                })
            }
            ScanMode::Verified => {
                let bytes = self.ensure(position, total)?;
                if let Err(e) = verify_crc(&header, bytes) {
                    return Ok(Step::Invalid {
                        position,
                        reason: e.to_string(),
                    });
                }
                self.pos = next;
                let bytes = self.ensure(position, total)?;
                Ok(Step::Batch {
                    position,
                    header,
                    bytes,
                })
            }
        }
    }
}
