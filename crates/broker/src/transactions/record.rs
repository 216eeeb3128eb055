//! The records of `__transaction_state`, in Apache Kafka's layout (key version 0, value version 0) so Kafka's
//! tools can read the topic. Big-endian; strings are an i16 length and UTF-8.
//!
//! Key:
//! ```text
//! version: i16 = 0 | transactional_id: string
//! ```
//! Value:
//! ```text
//! version: i16 = 0 | producer_id: i64 | producer_epoch: i16 | transaction_timeout_ms: i32 | state: i8
//! | partitions: i32 count (-1: null), each: topic: string | partition ids: i32 count, each i32
//! | last_update_timestamp_ms: i64 | start_timestamp_ms: i64
//! ```
//! A key with a null value is a tombstone: the transactional id expired (`transactional.id.expiration.ms`).
//! The id lives on partition `abs(java hashCode(transactional_id)) % partitions`, like a group's offsets.

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::coordinator::{TxnMetadata, TxnState};

pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 0;

/// The `__transaction_state` partition of `transactional_id` (Kafka's placement).
pub fn partition_for(transactional_id: &str, partitions: i32) -> i32 {
    crate::offsets::record::partition_for_group(transactional_id, partitions)
}

pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + transactional_id.len());
    buf.put_i16(KEY_VERSION);
    put_string(&mut buf, transactional_id);
    buf.freeze()
}

pub fn encode_value(m: &TxnMetadata) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(VALUE_VERSION);
    buf.put_i64(m.producer_id);
    buf.put_i16(m.producer_epoch);
    buf.put_i32(m.timeout_ms);
    buf.put_i8(m.state.code());
    // Grouped by topic, as Kafka writes them.
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, partition) in &m.partitions {
        match topics.last_mut() {
            Some((t, ps)) if *t == topic.as_str() => ps.push(*partition),
            _ => topics.push((topic, vec![*partition])),
        }
    }
    buf.put_i32(topics.len() as i32);
    for (topic, partitions) in topics {
        put_string(&mut buf, topic);
        buf.put_i32(partitions.len() as i32);
        for p in partitions {
            buf.put_i32(p);
        }
    }
    buf.put_i64(m.last_update_ms);
    buf.put_i64(m.start_ms);
    buf.freeze()
}

/// The transactional id of a key; `None` for another version or malformed bytes.
pub fn decode_key(mut buf: Bytes) -> Option<String> {
    if buf.remaining() < 2 || buf.get_i16() != KEY_VERSION {
        return None;
    }
    get_string(&mut buf)
}

/// A value of version 0 (and the leading fields of the later flexible versions are not read: `None`).
pub fn decode_value(transactional_id: &str, mut buf: Bytes) -> Option<TxnMetadata> {
    if buf.remaining() < 2 || buf.get_i16() != VALUE_VERSION {
        return None;
    }
    if buf.remaining() < 8 + 2 + 4 + 1 + 4 {
        return None;
    }
    let producer_id = buf.get_i64();
    let producer_epoch = buf.get_i16();
    let timeout_ms = buf.get_i32();
    let state = TxnState::from_code(buf.get_i8())?;
    let count = buf.get_i32();
    let mut partitions = BTreeSet::new();
    for _ in 0..count.max(0) {
        let topic = get_string(&mut buf)?;
        if buf.remaining() < 4 {
            return None;
        }
        let n = buf.get_i32();
        if n < 0 || buf.remaining() < n as usize * 4 {
            return None;
        }
        for _ in 0..n {
            partitions.insert((topic.clone(), buf.get_i32()));
        }
    }
    if buf.remaining() < 16 {
        return None;
    }
    Some(TxnMetadata {
        transactional_id: transactional_id.to_string(),
        producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        last_update_ms: buf.get_i64(),
        start_ms: buf.get_i64(),
    })
}

fn put_string(buf: &mut BytesMut, s: &str) {
    let len = s.len().min(i16::MAX as usize);
    buf.put_i16(len as i16);
    buf.put_slice(&s.as_bytes()[..len]);
}

fn get_string(buf: &mut Bytes) -> Option<String> {
    if buf.remaining() < 2 {
        return None;
    }
    let len = usize::try_from(buf.get_i16()).ok()?;
    if buf.remaining() < len {
        return None;
    }
    String::from_utf8(buf.split_to(len).to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata() -> TxnMetadata {
        TxnMetadata {
            transactional_id: "orders-tx".into(),
            producer_id: 4_000,
            producer_epoch: 7,
            timeout_ms: 60_000,
            state: TxnState::PrepareCommit,
            partitions: [
                ("a".to_string(), 2),
                ("a".to_string(), 0),
                ("b".to_string(), 1),
            ]
            .into_iter()
            .collect(),
            start_ms: 1_700_000_000_000,
            last_update_ms: 1_700_000_000_500,
        }
    }

    #[test]
    fn keys_and_values_roundtrip_in_kafka_s_layout() {
        let m = metadata();
        let key = encode_key(&m.transactional_id);
        assert_eq!(&key[..], b"\x00\x00\x00\x09orders-tx");
        assert_eq!(decode_key(key).as_deref(), Some("orders-tx"));
        let value = encode_value(&m);
        // version, producer id, epoch, timeout, state, then 2 topics.
        assert_eq!(&value[..2], &[0, 0]);
        assert_eq!(&value[2..10], &4_000i64.to_be_bytes());
        assert_eq!(&value[10..12], &7i16.to_be_bytes());
        assert_eq!(&value[12..16], &60_000i32.to_be_bytes());
        assert_eq!(value[16], 2, "PrepareCommit");
        assert_eq!(&value[17..21], &2i32.to_be_bytes());
        assert_eq!(decode_value("orders-tx", value), Some(m));
    }

    #[test]
    fn truncated_or_foreign_records_never_decode() {
        let value = encode_value(&metadata());
        for cut in 0..value.len() {
            assert_eq!(decode_value("x", value.slice(..cut)), None, "cut at {cut}");
        }
        let key = encode_key("x");
        for cut in 0..key.len() {
            assert_eq!(decode_key(key.slice(..cut)), None);
        }
        let mut other = BytesMut::from(&value[..]);
        other[1] = 1;
        assert_eq!(decode_value("x", other.freeze()), None, "a later version");
    }

    #[test]
    fn placement_is_kafka_s() {
        // Kafka: Utils.abs("my-transactional-id".hashCode()) % 50.
        let h = crate::offsets::record::java_string_hash("my-transactional-id");
        assert_eq!(
            partition_for("my-transactional-id", 50),
            h.unsigned_abs() as i32 % 50
        );
    }
}
