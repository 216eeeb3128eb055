//! Property: any sequence of appends, flushes and clean or unclean reopens reads back exactly what was appended.

mod common;

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use strom_log::{Log, LogConfig};

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: usize,
        codec: usize,
        value_len: usize,
    },
    Flush,
    ReopenClean,
    ReopenUnclean,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..6, 0usize..5, 0usize..80).prop_map(|(records, codec, value_len)| Op::Append { records, codec, value_len }),
        1 => Just(Op::Flush),
        1 => Just(Op::ReopenClean),
        1 => Just(Op::ReopenUnclean),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn appends_survive_reopens(ops in proptest::collection::vec(op(), 1..40), segment_bytes in 200u64..2_000, interval in 0usize..500) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { segment_bytes, index_interval_bytes: interval, ..LogConfig::default() };
        let mut log = Some(Log::open(dir.path(), config.clone(), 0).unwrap());
        let mut sent: Vec<Bytes> = Vec::new();
        let mut next = 0i64;
        for op in ops {
            match op {
                Op::Append { records, codec, value_len } => {
                    let recs: Vec<Rec> = (0..records).map(|i| rec(&format!("k{i}"), &"v".repeat(value_len), next + i as i64)).collect();
                    let b = encode(&recs, ALL_CODECS[codec], None);
                    let l = log.as_mut().unwrap();
                    prop_assert_eq!(appended(l.append(b.clone(), opts(0)).unwrap()), (next, next + records as i64 - 1));
                    next += records as i64;
                    sent.push(b);
                }
                Op::Flush => log.as_mut().unwrap().flush().unwrap(),
                Op::ReopenClean => {
                    log.take().unwrap().close().unwrap();
                    log = Some(Log::open(dir.path(), config.clone(), 0).unwrap());
                }
                Op::ReopenUnclean => {
                    drop(log.take());
                    log = Some(Log::open(dir.path(), config.clone(), 0).unwrap());
                }
            }
            let l = log.as_ref().unwrap();
            prop_assert_eq!(l.log_end_offset(), next);
        }
        let l = log.as_ref().unwrap();
        let stored = stored_batches(&read_all(l));
        prop_assert_eq!(stored.len(), sent.len());
        for ((_, s), b) in stored.iter().zip(&sent) {
            prop_assert!(same_except_offset(s, b));
        }
        // Every offset reads the batch that holds it.
        for offset in 0..next {
            let r = l.read(offset, 1, i64::MAX, true).unwrap();
            let (h, _) = &stored_batches(&r.records)[0];
            prop_assert!(h.base_offset <= offset && offset <= h.last_offset());
        }
    }
}
