//! [`SpliceBuf`]: the encoding target that turns a response into a [`ResponseFrame`] without copying registered
//! `Bytes` (a fetch response's record batches).
//!
//! The `kafka-protocol` encoders write a `Bytes` field with one `put_slice` of the whole value. `SpliceBuf`
//! recognises such a call by pointer and length: when the slice is exactly one of the registered `Bytes`, it
//! records a splice (a clone of that `Bytes`, a reference count, no copy) at the current position instead of
//! copying. Everything else goes into `head`, one contiguous `BytesMut`. A pointer and length equal to a live
//! registered `Bytes` mean the same memory, so a match is always byte-correct whichever field produced it.
//!
//! Positions ([`ByteBufMut::offset`], `seek`, `range`) are logical: they count spliced bytes too, exactly as if
//! everything had been copied. The message encoders never seek or take ranges (only record batch encoding and
//! snappy compression do, into their own buffers), but the codec patches the length prefix through `range`, and
//! for the rest `SpliceBuf` stays correct: a `range` or a backward `seek` that touches a splice first copies that
//! splice into `head` (giving up zero-copy for it, never correctness).

use std::collections::HashMap;
use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

use crate::response_frame::ResponseFrame;

/// Registered `Bytes` shorter than this are copied like any other field. Copying a few hundred bytes costs about
/// what one more iovec entry and reference count cost, and a fetch of many partitions holding small batches stays
/// a few large chunks instead of hundreds of tiny ones (a vectored write takes a bounded number of chunks per
/// system call).
pub const SPLICE_MIN_BYTES: usize = 1024;

/// A `Bytes` value placed at a position of the encoded output without being copied.
#[derive(Debug)]
struct Splice {
    /// Where it goes, as a position in `head`: it comes before `head[at..]`.
    at: usize,
    bytes: Bytes,
}

#[derive(Debug, Default)]
pub(crate) struct SpliceBuf {
    head: BytesMut,
    /// Ordered by `at`.
    splices: Vec<Splice>,
    /// Sum of the splices' lengths: logical offset = head.len() + spliced_len.
    spliced_len: usize,
    /// (pointer, length) of each registered `Bytes`.
    candidates: HashMap<(usize, usize), Bytes>,
}

impl SpliceBuf {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        SpliceBuf {
            head: BytesMut::with_capacity(capacity),
            ..SpliceBuf::default()
        }
    }

    /// Makes a later `put_slice` of exactly these bytes a splice instead of a copy (if large enough to be worth it).
    pub(crate) fn register(&mut self, bytes: &Bytes) {
        if bytes.len() >= SPLICE_MIN_BYTES {
            self.candidates
                .insert((bytes.as_ptr() as usize, bytes.len()), bytes.clone());
        }
    }

    /// The encoded output as chunks: head segments between the splices, in order.
    pub(crate) fn finish(self) -> ResponseFrame {
        let mut head = self.head;
        let mut frame = ResponseFrame::default();
        let mut taken = 0;
        for splice in self.splices {
            frame.push(head.split_to(splice.at - taken).freeze());
            taken = splice.at;
            frame.push(splice.bytes);
        }
        frame.push(head.freeze());
        frame
    }

    /// Copies into `head` every splice overlapping the logical `range`, so that range is contiguous in `head`.
    /// Returns how many spliced bytes precede `range.start` afterwards (logical position - this = head position).
    fn materialize(&mut self, range: Range<usize>) -> usize {
        let overlaps = |logical_start: usize, len: usize| {
            logical_start < range.end && range.start < logical_start + len
        };
        let mut before = 0;
        let mut any = false;
        for s in &self.splices {
            any |= overlaps(s.at + before, s.bytes.len());
            before += s.bytes.len();
        }
        if any {
            let mut head = BytesMut::with_capacity(self.head.len() + self.spliced_len);
            let mut kept = Vec::with_capacity(self.splices.len());
            let (mut copied, mut before, mut inserted) = (0, 0, 0);
            for s in std::mem::take(&mut self.splices) {
                let len = s.bytes.len();
                if overlaps(s.at + before, len) {
                    head.extend_from_slice(&self.head[copied..s.at]);
                    head.extend_from_slice(&s.bytes);
                    copied = s.at;
                    inserted += len;
                } else {
                    kept.push(Splice {
                        at: s.at + inserted,
                        bytes: s.bytes,
                    });
                }
                before += len;
            }
            head.extend_from_slice(&self.head[copied..]);
            self.head = head;
            self.splices = kept;
            self.spliced_len -= inserted;
        }
        let mut preceding = 0;
        for s in &self.splices {
            if s.at + preceding + s.bytes.len() > range.start {
                break;
            }
            preceding += s.bytes.len();
        }
        preceding
    }
}

// SAFETY: `BufMut` is an unsafe trait because `advance_mut` may expose uninitialised bytes. Every method here
// forwards to `head`, a `BytesMut`, with the caller's own arguments, so the contract is upheld exactly as
// `BytesMut` upholds it; `put_slice` either records a splice (no memory written) or calls the safe
// `extend_from_slice`. This is the one exception to the workspace's `deny(unsafe_code)`: `ByteBufMut`, the
// trait the `kafka-protocol` encoders write to, requires `BufMut`, and intercepting `put_slice` is only possible
// in an implementation of it.
#[allow(unsafe_code)]
unsafe impl BufMut for SpliceBuf {
    fn remaining_mut(&self) -> usize {
        self.head.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller guarantees the next `cnt` bytes of `chunk_mut()` (that is, of `head`) are initialised.
        unsafe { self.head.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.head.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if src.len() >= SPLICE_MIN_BYTES {
            if let Some(bytes) = self.candidates.get(&(src.as_ptr() as usize, src.len())) {
                self.spliced_len += bytes.len();
                self.splices.push(Splice {
                    at: self.head.len(),
                    bytes: bytes.clone(),
                });
                return;
            }
        }
        self.head.extend_from_slice(src);
    }
}

impl ByteBufMut for SpliceBuf {
    fn offset(&self) -> usize {
        self.head.len() + self.spliced_len
    }

    fn seek(&mut self, offset: usize) {
        let end = self.offset();
        if offset >= end {
            // Like `BytesMut`: seeking forward leaves zeroes (a gap to be filled later).
            self.head.resize(self.head.len() + (offset - end), 0);
        } else {
            let preceding = self.materialize(offset..end);
            // Splices wholly past `offset` were materialized too; none remain beyond it.
            self.head.truncate(offset - preceding);
        }
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let preceding = self.materialize(r.clone());
        &mut self.head[r.start - preceding..r.end - preceding]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big(fill: u8) -> Bytes {
        Bytes::from(vec![fill; SPLICE_MIN_BYTES + 3])
    }

    fn spliced(parts: &[&Bytes], registered: &[&Bytes]) -> SpliceBuf {
        let mut buf = SpliceBuf::default();
        for r in registered {
            buf.register(r);
        }
        for p in parts {
            buf.put_u8(0xAA);
            buf.put_slice(p);
        }
        buf
    }

    fn contiguous(parts: &[&Bytes]) -> BytesMut {
        let mut buf = BytesMut::new();
        for p in parts {
            buf.put_u8(0xAA);
            buf.put_slice(p);
        }
        buf
    }

    #[test]
    fn registered_bytes_are_spliced_not_copied() {
        let (a, b) = (big(1), big(2));
        let frame = spliced(&[&a, &b], &[&a, &b]).finish();
        let chunks: Vec<_> = frame.chunks().collect();
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[1].as_ptr(), a.as_ptr());
        assert_eq!(chunks[3].as_ptr(), b.as_ptr());
        assert_eq!(frame.to_contiguous(), contiguous(&[&a, &b]).freeze());
    }

    #[test]
    fn unregistered_equal_content_and_small_bytes_are_copied() {
        let a = big(1);
        let twin = big(1);
        let small = Bytes::from(vec![7u8; 10]);
        let frame = spliced(&[&twin, &small], &[&a, &small]).finish();
        assert_eq!(frame.chunks().count(), 1);
        assert_eq!(frame.to_contiguous(), contiguous(&[&twin, &small]).freeze());
    }

    #[test]
    fn gaps_and_ranges_over_splices_stay_byte_correct() {
        let (a, b) = (big(1), big(2));
        let mut buf = SpliceBuf::default();
        buf.register(&a);
        buf.register(&b);
        let mut reference = BytesMut::new();
        for out in [&mut buf as &mut dyn GapWriter, &mut reference] {
            out.write(&a, &b);
        }
        assert_eq!(buf.offset(), reference.len());
        assert_eq!(buf.finish().to_contiguous(), reference.freeze());
    }

    #[test]
    fn seeking_back_into_a_splice_truncates_it() {
        let (a, b) = (big(1), big(2));
        let mut buf = spliced(&[&a, &b], &[&a, &b]);
        let mut reference = contiguous(&[&a, &b]);
        let cut = 1 + a.len() + 1 + 5;
        buf.seek(cut);
        ByteBufMut::seek(&mut reference, cut);
        buf.put_slice(b"tail");
        reference.put_slice(b"tail");
        let frame = buf.finish();
        assert_eq!(frame.chunks().nth(1).unwrap().as_ptr(), a.as_ptr());
        assert_eq!(frame.to_contiguous(), reference.freeze());
    }

    /// What a record batch encoder does: a size gap filled after the body, and a checksum over a range.
    trait GapWriter {
        fn write(&mut self, a: &Bytes, b: &Bytes);
    }
    impl<T: ByteBufMut> GapWriter for T {
        fn write(&mut self, a: &Bytes, b: &Bytes) {
            self.put_u8(9);
            self.put_slice(a);
            let size = self.put_gap(4);
            let start = self.offset();
            self.put_slice(b);
            self.put_slice(b"after");
            let end = self.offset();
            let sum = self
                .range(start..end)
                .iter()
                .map(|&x| u32::from(x))
                .sum::<u32>();
            let len = u32::try_from(end - start).unwrap();
            self.gap_buf(size).copy_from_slice(&len.to_be_bytes());
            self.put_u32(sum);
            self.range(1..3).copy_from_slice(b"xy");
        }
    }
}
