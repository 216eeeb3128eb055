//! Transactions in the log (issue 12): the control batches that end a transaction (its commit or abort marker),
//! and the aborted transactions that a `read_committed` fetch lists so the client can drop their records.
//!
//! A transactional producer's batches carry the transactional attribute; the first one of a transaction opens it
//! on the partition and holds the last stable offset (LSO) at its offset until the transaction coordinator writes
//! the marker. The marker is a control batch of one record:
//! ```text
//! attributes: transactional | control, uncompressed; producer id and epoch of the transaction; base sequence -1
//! record key   = version i16 (0) | type i16 (0 abort, 1 commit)
//! record value = version i16 (0) | coordinator epoch i32
//! ```
//! An aborted transaction is remembered as Kafka's `AbortedTxn`: producer id, first offset (its first batch),
//! last offset (its marker) and the LSO after the marker. The producer state keeps them (see
//! `producer_state.rs`), so they are in its snapshot and rebuilt by the same replay of the log.

use bytes::{BufMut, Bytes, BytesMut};

use crate::batch::{compute_crc, BatchHeader, CONTROL_BIT, TRANSACTIONAL_BIT};
use crate::record::batch_records;

/// What a control batch says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlType {
    Abort,
    Commit,
}

impl ControlType {
    fn code(self) -> i16 {
        match self {
            ControlType::Abort => 0,
            ControlType::Commit => 1,
        }
    }
}

/// A transaction's end, as the coordinator writes it to each partition the transaction touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub control: ControlType,
    /// The epoch of the transaction coordinator that wrote it: a marker from an older coordinator (one that lost
    /// its `__transaction_state` partition) is fenced.
    pub coordinator_epoch: i32,
}

/// A transaction whose marker was an abort: `read_committed` fetches skip its records from `first_offset` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// The offset of the transaction's first batch on this partition (its marker's, if it wrote none).
    pub first_offset: i64,
    /// The offset of its abort marker.
    pub last_offset: i64,
    /// The last stable offset once the marker was written.
    pub last_stable_offset: i64,
}

/// Reads the marker of a control batch (whole, header included). Control record keys Kafka does not know are an
/// error; so is a batch that is not a control batch.
pub fn parse_marker(header: &BatchHeader, batch: &Bytes) -> Result<Marker, String> {
    if !header.is_control() {
        return Err("not a control batch".into());
    }
    let records = batch_records(header, batch)?;
    let [record] = records.as_slice() else {
        return Err(format!(
            "a control batch holds one record, this one {}",
            records.len()
        ));
    };
    let key = record.key.as_deref().unwrap_or_default();
    if key.len() < 4 {
        return Err(format!("control record key of {} bytes", key.len()));
    }
    let version = i16::from_be_bytes([key[0], key[1]]);
    if version != 0 {
        return Err(format!("control record key version {version}"));
    }
    let control = match i16::from_be_bytes([key[2], key[3]]) {
        0 => ControlType::Abort,
        1 => ControlType::Commit,
        other => return Err(format!("control record type {other}")),
    };
    let value = record.value.as_deref().unwrap_or_default();
    let coordinator_epoch = match value.get(2..6) {
        Some(v) => i32::from_be_bytes(v.try_into().expect("4 bytes")),
        None => -1,
    };
    Ok(Marker {
        control,
        coordinator_epoch,
    })
}

fn put_varint(out: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.put_u8(z as u8);
            return;
        }
        out.put_u8((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

/// Encodes the control batch of `marker` for the transaction of `producer_id`/`producer_epoch`, with base offset 0
/// and leader epoch -1 for the log to stamp.
pub fn marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    marker: Marker,
    timestamp_ms: i64,
) -> Bytes {
    let mut key = BytesMut::with_capacity(4);
    key.put_i16(0);
    key.put_i16(marker.control.code());
    let mut value = BytesMut::with_capacity(6);
    value.put_i16(0);
    value.put_i32(marker.coordinator_epoch);
    let mut record = BytesMut::new();
    record.put_i8(0); // attributes
    put_varint(&mut record, 0); // timestamp delta
    put_varint(&mut record, 0); // offset delta
    put_varint(&mut record, key.len() as i64);
    record.put_slice(&key);
    put_varint(&mut record, value.len() as i64);
    record.put_slice(&value);
    put_varint(&mut record, 0); // headers
    let mut records = BytesMut::new();
    put_varint(&mut records, record.len() as i64);
    records.put_slice(&record);

    let mut batch = BytesMut::with_capacity(BatchHeader::SIZE + records.len());
    batch.put_i64(0); // base offset
    batch.put_i32((BatchHeader::SIZE - 12 + records.len()) as i32);
    batch.put_i32(-1); // partition leader epoch
    batch.put_i8(2); // magic
    batch.put_u32(0); // crc, below
    batch.put_i16(TRANSACTIONAL_BIT | CONTROL_BIT); // uncompressed, CreateTime
    batch.put_i32(0); // last offset delta
    batch.put_i64(timestamp_ms);
    batch.put_i64(timestamp_ms);
    batch.put_i64(producer_id);
    batch.put_i16(producer_epoch);
    batch.put_i32(-1); // base sequence
    batch.put_i32(1); // records
    batch.put_slice(&records);
    let crc = compute_crc(&batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_batch_parses_back_with_a_valid_crc() {
        for control in [ControlType::Abort, ControlType::Commit] {
            let marker = Marker {
                control,
                coordinator_epoch: 7,
            };
            let batch = marker_batch(42, 3, marker, 1_700_000_000_000);
            let header = BatchHeader::parse(&batch).unwrap();
            crate::batch::verify_crc(&header, &batch).unwrap();
            assert!(header.is_control() && header.is_transactional());
            assert_eq!(header.producer_id, 42);
            assert_eq!(header.producer_epoch, 3);
            assert_eq!(header.records_count, 1);
            assert_eq!(header.total_size(), batch.len());
            assert_eq!(parse_marker(&header, &batch).unwrap(), marker);
        }
    }

    #[test]
    fn a_data_batch_or_an_unknown_control_type_is_not_a_marker() {
        let batch = marker_batch(
            1,
            0,
            Marker {
                control: ControlType::Commit,
                coordinator_epoch: 0,
            },
            0,
        );
        let mut header = BatchHeader::parse(&batch).unwrap();
        header.attributes &= !CONTROL_BIT;
        assert!(parse_marker(&header, &batch).is_err());
    }
}
