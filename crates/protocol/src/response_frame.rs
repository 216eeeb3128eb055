//! [`ResponseFrame`]: an encoded response as a sequence of `Bytes` chunks, so a fetch response's record batches
//! reach the socket without being copied into one contiguous buffer first.
//!
//! The chunks are the encoded header and fields, interleaved with the `records` of fetched partitions exactly as
//! the log returned them (see [`crate::codec::encode_response_frame`]). The type implements [`Buf`] with
//! [`Buf::chunks_vectored`], so a writer hands all chunks to one vectored write. [`ResponseFrame::append`] queues
//! one frame behind another: that is how a connection gathers the responses that are ready at the same time into
//! one system call.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

/// Encoded response bytes, length prefix included, as chunks in wire order.
///
/// Invariant: no chunk is empty, and `remaining` is the sum of the chunk lengths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseFrame {
    chunks: VecDeque<Bytes>,
    remaining: usize,
}

impl ResponseFrame {
    /// Adds `chunk` at the end.
    pub(crate) fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.remaining += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Queues the chunks of `next` behind these, so both go out in wire order.
    pub fn append(&mut self, next: ResponseFrame) {
        self.remaining += next.remaining;
        self.chunks.extend(next.chunks);
    }

    /// The chunks in wire order, none of them empty.
    pub fn chunks(&self) -> impl Iterator<Item = &Bytes> {
        self.chunks.iter()
    }

    /// Total bytes left to write.
    pub fn len(&self) -> usize {
        self.remaining
    }

    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    /// The whole frame in one buffer (copies every chunk): for clients and tests, not the serving path.
    pub fn to_contiguous(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.remaining);
        for chunk in &self.chunks {
            out.extend_from_slice(chunk);
        }
        out.freeze()
    }
}

impl From<Bytes> for ResponseFrame {
    fn from(bytes: Bytes) -> Self {
        let mut frame = ResponseFrame::default();
        frame.push(bytes);
        frame
    }
}

impl From<BytesMut> for ResponseFrame {
    fn from(bytes: BytesMut) -> Self {
        bytes.freeze().into()
    }
}

impl Buf for ResponseFrame {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.chunks.front().map_or(&[], |c| c.as_ref())
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(
            cnt <= self.remaining,
            "cannot advance {cnt} bytes past the {} remaining",
            self.remaining
        );
        self.remaining -= cnt;
        while cnt > 0 {
            let front = self
                .chunks
                .front_mut()
                .expect("remaining counts the chunks' bytes");
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.chunks.pop_front();
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut filled = 0;
        for (slot, chunk) in dst.iter_mut().zip(&self.chunks) {
            *slot = IoSlice::new(chunk);
            filled += 1;
        }
        filled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(parts: &[&'static [u8]]) -> ResponseFrame {
        let mut f = ResponseFrame::default();
        for p in parts {
            f.push(Bytes::from_static(p));
        }
        f
    }

    #[test]
    fn empty_chunks_are_not_kept() {
        let f = frame(&[b"", b"ab", b"", b"c"]);
        assert_eq!(f.chunks().count(), 2);
        assert_eq!(f.len(), 3);
    }

    #[test]
    fn advance_crosses_chunk_boundaries() {
        let mut f = frame(&[b"abc", b"de", b"fgh"]);
        f.advance(4);
        assert_eq!(f.chunk(), b"e");
        assert_eq!(f.remaining(), 4);
        f.advance(1);
        assert_eq!(f.chunk(), b"fgh");
        f.advance(3);
        assert!(!f.has_remaining());
        assert_eq!(f.chunk(), b"");
    }

    #[test]
    fn chunks_vectored_fills_at_most_dst_len_in_order() {
        let mut f = frame(&[b"ab", b"cd", b"ef"]);
        f.advance(1);
        let mut slices = [IoSlice::new(&[]); 2];
        assert_eq!(f.chunks_vectored(&mut slices), 2);
        assert_eq!(&*slices[0], b"b");
        assert_eq!(&*slices[1], b"cd");
    }

    #[test]
    fn append_keeps_wire_order() {
        let mut f = frame(&[b"ab"]);
        f.append(frame(&[b"cd", b"e"]));
        assert_eq!(f.len(), 5);
        assert_eq!(f.to_contiguous(), Bytes::from_static(b"abcde"));
        assert_eq!(f.copy_to_bytes(5), Bytes::from_static(b"abcde"));
    }
}
