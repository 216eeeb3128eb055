//! The records of `__consumer_offsets`, in Apache Kafka's own layout so existing tools can read the topic.
//!
//! Key (offset commit, key version 1), big-endian:
//! ```text
//! version: i16 = 1 | group: i16 length + UTF-8 | topic: i16 length + UTF-8 | partition: i32
//! ```
//! Value (value version 3):
//! ```text
//! version: i16 = 3 | offset: i64 | leader_epoch: i32 (-1 unknown) | metadata: i16 length + UTF-8 | commit_timestamp: i64
//! ```
//! A record with the key and a null value is a tombstone: the committed offset was deleted (OffsetDelete,
//! DeleteGroups), and compaction eventually removes both. Keys of other versions (Kafka's group metadata records,
//! version 2) are skipped when loading: Strom re-forms group membership after a restart instead of storing it.

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub const OFFSET_KEY_VERSION: i16 = 1;
pub const OFFSET_VALUE_VERSION: i16 = 3;

/// Which committed offset a record is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OffsetKey {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

pub fn encode_key(key: &OffsetKey) -> Bytes {
    let mut buf = BytesMut::with_capacity(10 + key.group.len() + key.topic.len());
    buf.put_i16(OFFSET_KEY_VERSION);
    put_string(&mut buf, &key.group);
    put_string(&mut buf, &key.topic);
    buf.put_i32(key.partition);
    buf.freeze()
}

pub fn encode_value(value: &CommittedOffset) -> Bytes {
    let mut buf = BytesMut::with_capacity(26 + value.metadata.len());
    buf.put_i16(OFFSET_VALUE_VERSION);
    buf.put_i64(value.offset);
    buf.put_i32(value.leader_epoch);
    put_string(&mut buf, &value.metadata);
    buf.put_i64(value.commit_timestamp);
    buf.freeze()
}

/// Decodes an offset-commit key; `None` for other key versions (group metadata) or malformed bytes.
pub fn decode_key(mut buf: Bytes) -> Option<OffsetKey> {
    if buf.remaining() < 2 || buf.get_i16() != OFFSET_KEY_VERSION {
        return None;
    }
    let group = get_string(&mut buf)?;
    let topic = get_string(&mut buf)?;
    if buf.remaining() < 4 {
        return None;
    }
    Some(OffsetKey {
        group,
        topic,
        partition: buf.get_i32(),
    })
}

/// Decodes a value of versions 1 and 3 (the layouts Kafka writes today); `None` if malformed.
pub fn decode_value(mut buf: Bytes) -> Option<CommittedOffset> {
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16();
    if buf.remaining() < 8 {
        return None;
    }
    let offset = buf.get_i64();
    let leader_epoch = if version >= 3 {
        if buf.remaining() < 4 {
            return None;
        }
        buf.get_i32()
    } else {
        -1
    };
    let metadata = get_string(&mut buf)?;
    if buf.remaining() < 8 {
        return None;
    }
    let commit_timestamp = buf.get_i64();
    Some(CommittedOffset {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
    })
}

fn put_string(buf: &mut BytesMut, s: &str) {
    // Group ids, topic names and metadata are bounded well below i16::MAX by the request decoder's checks.
    let len = s.len().min(i16::MAX as usize);
    buf.put_i16(len as i16);
    buf.put_slice(&s.as_bytes()[..len]);
}

fn get_string(buf: &mut Bytes) -> Option<String> {
    if buf.remaining() < 2 {
        return None;
    }
    let len = buf.get_i16();
    let len = usize::try_from(len).ok()?;
    if buf.remaining() < len {
        return None;
    }
    String::from_utf8(buf.split_to(len).to_vec()).ok()
}

/// Java's `String.hashCode`, which Kafka uses to place a group on an offsets-topic partition.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// Kafka's `Utils.abs(groupId.hashCode()) % partitions`.
pub fn partition_for_group(group: &str, partitions: i32) -> i32 {
    let h = java_string_hash(group);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn keys_and_values_roundtrip(group in ".{0,40}", topic in "[a-z._-]{1,40}", partition in any::<i32>(),
                                     offset in any::<i64>(), epoch in any::<i32>(), metadata in ".{0,40}", ts in any::<i64>()) {
            let key = OffsetKey { group, topic, partition };
            prop_assert_eq!(decode_key(encode_key(&key)), Some(key));
            let value = CommittedOffset { offset, leader_epoch: epoch, metadata, commit_timestamp: ts };
            prop_assert_eq!(decode_value(encode_value(&value)), Some(value));
        }

        #[test]
        fn truncated_records_never_decode_or_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_key(Bytes::from(bytes.clone()));
            let _ = decode_value(Bytes::from(bytes));
        }
    }

    #[test]
    fn every_truncated_prefix_is_rejected() {
        let key = encode_key(&OffsetKey {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
        });
        let value = encode_value(&CommittedOffset {
            offset: 5,
            leader_epoch: 0,
            metadata: "m".into(),
            commit_timestamp: 9,
        });
        for cut in 0..key.len() {
            assert_eq!(decode_key(key.slice(..cut)), None);
        }
        for cut in 0..value.len() {
            assert_eq!(decode_value(value.slice(..cut)), None);
        }
    }

    #[test]
    fn group_placement_matches_javas_string_hash() {
        // Values of "abc".hashCode() and "".hashCode() in Java.
        assert_eq!(java_string_hash("abc"), 96354);
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(partition_for_group("abc", 50), 96354 % 50);
        // A hash of i32::MIN maps to partition 0 (Utils.abs), and negative hashes are made positive.
        assert!((0..50).contains(&partition_for_group("polygenelubricants", 50)));
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for_group("polygenelubricants", 50), 0);
    }
}
