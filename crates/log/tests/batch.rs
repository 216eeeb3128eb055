//! `split_batches` and `BatchHeader`: framing, CRC, magic and count validation on client input.

mod common;

use bytes::{Bytes, BytesMut};
use common::{encode, rec, simple, ALL_CODECS};
use proptest::prelude::*;
use strom_log::{split_batches, BatchError, BatchHeader, Compression, TimestampType};

fn two_batches() -> Bytes {
    let mut b = BytesMut::new();
    b.extend_from_slice(&simple(3, 100));
    b.extend_from_slice(&encode(
        &[rec("a", "b", 7)],
        Compression::Gzip,
        Some((9, 2, 40)),
    ));
    b.freeze()
}

fn put_crc(b: &mut [u8]) {
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
}

#[test]
fn splits_and_parses_headers_for_every_codec() {
    for codec in ALL_CODECS {
        let b = encode(
            &[rec("k", "v", 5), rec("k2", "v2", 9)],
            codec,
            Some((12, 1, 100)),
        );
        let batches = split_batches(&b).unwrap();
        assert_eq!(batches.len(), 1);
        let (h, bytes) = &batches[0];
        assert_eq!(bytes, &b);
        assert_eq!(h.compression(), codec);
        assert_eq!((h.records_count, h.last_offset_delta), (2, 1));
        assert_eq!((h.base_timestamp, h.max_timestamp), (5, 9));
        assert_eq!(
            (
                h.producer_id,
                h.producer_epoch,
                h.base_sequence,
                h.last_sequence()
            ),
            (12, 1, 100, 101)
        );
        assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
        assert!(!h.is_transactional() && !h.is_control());
        assert_eq!(h.total_size(), b.len());
        assert_eq!(h.last_offset(), h.base_offset + 1);
    }
}

#[test]
fn zero_copy_slices_of_the_request() {
    let b = two_batches();
    let batches = split_batches(&b).unwrap();
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[0].1.as_ptr(), b.as_ptr());
    assert_eq!(batches[0].1.len() + batches[1].1.len(), b.len());
}

#[test]
fn every_truncated_prefix_fails_cleanly() {
    let b = two_batches();
    let first_len = split_batches(&b).unwrap()[0].1.len();
    for cut in 1..b.len() {
        let prefix = b.slice(..cut);
        if cut == first_len {
            assert_eq!(split_batches(&prefix).unwrap().len(), 1);
            continue;
        }
        match split_batches(&prefix) {
            Err(BatchError::Truncated { .. }) => {}
            other => panic!("prefix of {cut} bytes: {other:?}"),
        }
    }
}

#[test]
fn bad_crc_is_corrupt() {
    let mut b = simple(2, 0).to_vec();
    let last = b.len() - 1;
    b[last] ^= 0x40;
    assert!(matches!(
        split_batches(&Bytes::from(b)),
        Err(BatchError::CrcMismatch { .. })
    ));
}

#[test]
fn old_magic_is_unsupported() {
    let mut b = simple(1, 0).to_vec();
    b[16] = 1;
    assert_eq!(
        split_batches(&Bytes::from(b)),
        Err(BatchError::UnsupportedMagic(1))
    );
    assert_eq!(
        BatchHeader::parse(&[0u8; 17]),
        Err(BatchError::UnsupportedMagic(0))
    );
}

#[test]
fn count_mismatch_is_invalid_record() {
    let mut b = simple(3, 0).to_vec();
    b[23..27].copy_from_slice(&5i32.to_be_bytes());
    put_crc(&mut b);
    assert!(matches!(
        split_batches(&Bytes::from(b)),
        Err(BatchError::InvalidRecord(_))
    ));
}

#[test]
fn short_batch_length_is_rejected() {
    let mut b = simple(1, 0).to_vec();
    b[8..12].copy_from_slice(&10i32.to_be_bytes());
    assert_eq!(
        split_batches(&Bytes::from(b)),
        Err(BatchError::InvalidLength(10))
    );
}

proptest! {
    #[test]
    fn random_truncation_never_panics_and_never_yields_a_partial_batch(cut in 0usize..400, codec in 0usize..5) {
        let b = encode(&[rec("key", "value-value", 1), rec("k", "v", 2)], ALL_CODECS[codec], None);
        let cut = cut.min(b.len());
        let res = split_batches(&b.slice(..cut));
        if cut == 0 {
            prop_assert_eq!(res.map(|v| v.len()), Ok(0));
        } else if cut == b.len() {
            prop_assert!(res.is_ok());
        } else {
            prop_assert!(matches!(res, Err(BatchError::Truncated { .. })), "cut {}: {:?}", cut, res);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = split_batches(&Bytes::from(data.clone()));
        let _ = BatchHeader::parse(&data);
    }
}
