//! Kafka framing: every request and response is a 4-byte big-endian length followed by that many bytes.
//!
//! The connection layer calls [`check`] on whatever it has buffered. It answers "need more bytes", "a whole
//! frame of n bytes is here", or an error, and it looks only at the prefix, so the length is validated against
//! `socket.request.max.bytes` before a single byte of the body is allocated.

use thiserror::Error;

/// Size of the length prefix in front of every frame.
pub const LENGTH_PREFIX: usize = 4;

/// Why a frame was refused. Both are fatal for the connection, as in Kafka.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("request of {size} bytes exceeds socket.request.max.bytes ({max})")]
    TooLarge { size: usize, max: usize },
    #[error("negative request size {0}")]
    Negative(i32),
}

/// Checks the buffered bytes of a connection.
///
/// Returns `Ok(None)` while the prefix or the body is still incomplete, and `Ok(Some(n))` when a frame whose body
/// is `n` bytes is fully buffered (the caller then consumes `LENGTH_PREFIX + n` bytes).
pub fn check(buf: &[u8], max_size: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..LENGTH_PREFIX) else {
        return Ok(None);
    };
    let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if size < 0 {
        return Err(FrameError::Negative(size));
    }
    let size = size as usize;
    if size > max_size {
        return Err(FrameError::TooLarge {
            size,
            max: max_size,
        });
    }
    if buf.len() - LENGTH_PREFIX < size {
        return Ok(None);
    }
    Ok(Some(size))
}

/// How many bytes of a frame are known to be needed, for reserving buffer space: only ever the announced size of
/// an already validated prefix, never more.
pub fn announced_size(buf: &[u8], max_size: usize) -> Option<usize> {
    let prefix = buf.get(..LENGTH_PREFIX)?;
    let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    usize::try_from(size).ok().filter(|s| *s <= max_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_prefix_needs_more() {
        assert_eq!(check(&[], 100), Ok(None));
        assert_eq!(check(&[0, 0, 0], 100), Ok(None));
    }

    #[test]
    fn incomplete_body_needs_more() {
        assert_eq!(check(&[0, 0, 0, 5, 1, 2], 100), Ok(None));
    }

    #[test]
    fn whole_frame_is_reported() {
        assert_eq!(check(&[0, 0, 0, 2, 1, 2, 9], 100), Ok(Some(2)));
    }

    #[test]
    fn oversized_frame_is_refused_before_the_body_arrives() {
        assert_eq!(
            check(&[0x7f, 0xff, 0xff, 0xff], 100),
            Err(FrameError::TooLarge {
                size: i32::MAX as usize,
                max: 100
            })
        );
        assert_eq!(announced_size(&[0x7f, 0xff, 0xff, 0xff], 100), None);
    }

    #[test]
    fn negative_size_is_refused() {
        assert_eq!(
            check(&[0xff, 0xff, 0xff, 0xff], 100),
            Err(FrameError::Negative(-1))
        );
    }
}
