//! Property tests: topologies under the test driver against naive models of the same computation, over random
//! keys, timestamps and arrival orders (out of order within and beyond the grace period).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use strom_streams::{
    JoinWindows, Materialized, SessionWindows, SlidingWindows, StreamsBuilder, TimeWindows,
    TopologyTestDriver, Windowed,
};

/// Records as (key, timestamp, value): few keys, timestamps that jump back and forth.
fn records(max_ts: i64) -> impl Strategy<Value = Vec<(u8, i64, i64)>> {
    prop::collection::vec((0u8..3, 0..max_ts, -50i64..50), 1..60)
}

fn key(k: u8) -> String {
    format!("k{k}")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Hopping-window sums with grace: a record counts in a window unless the window had closed (end + grace at
    /// or before the largest timestamp seen so far).
    #[test]
    fn hopping_window_sums_match_the_model(input in records(100_000), grace in 0i64..20_000) {
        let windows = TimeWindows::of_size_and_grace(Duration::from_secs(10), Duration::from_millis(grace as u64))
            .advance_by(Duration::from_secs(5));
        let b = StreamsBuilder::new();
        b.stream::<String, i64>("in")
            .group_by_key()
            .windowed_by(windows)
            .aggregate(|| 0i64, |_, v, sum| sum + v, Materialized::named("sums"))
            .to_stream()
            .to("out");
        let mut d = TopologyTestDriver::new(b.build());
        let mut model: BTreeMap<(String, i64), i64> = BTreeMap::new();
        let mut observed = i64::MIN;
        let mut dropped = 0;
        for &(k, ts, v) in &input {
            d.pipe("in", key(k), v, ts);
            observed = observed.max(ts);
            let mut counted = false;
            for w in windows.windows_for(ts) {
                if w.end > observed - grace {
                    *model.entry((key(k), w.start)).or_default() += v;
                    counted = true;
                }
            }
            dropped += u64::from(!counted);
        }
        // The latest update per window is the model's sum (retention only drops windows long closed).
        let mut latest: BTreeMap<(String, i64), i64> = BTreeMap::new();
        for (w, sum) in d.read_key_values::<Windowed<String>, Option<i64>>("out") {
            latest.insert((w.key, w.window.start), sum.unwrap());
        }
        prop_assert_eq!(latest, model);
        prop_assert_eq!(d.dropped_records(), dropped);
    }

    /// Sessions: with a grace longer than the input spans, a key's records closer than the gap form one session,
    /// whatever the arrival order.
    #[test]
    fn sessions_match_the_model(input in records(60_000)) {
        let gap = 5_000;
        let b = StreamsBuilder::new();
        b.stream::<String, i64>("in")
            .group_by_key()
            .windowed_by_session(SessionWindows::of_inactivity_gap_and_grace(
                Duration::from_millis(gap as u64),
                Duration::from_secs(3600),
            ))
            .count(Materialized::named("sessions"))
            .to_stream()
            .to("out");
        let mut d = TopologyTestDriver::new(b.build());
        for &(k, ts, v) in &input {
            d.pipe("in", key(k), v, ts);
        }
        let mut by_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for &(k, ts, _) in &input {
            by_key.entry(key(k)).or_default().push(ts);
        }
        let mut model = BTreeSet::new();
        for (k, mut times) in by_key {
            times.sort();
            let (mut start, mut end, mut n) = (times[0], times[0], 0i64);
            for t in times {
                if t - end > gap {
                    model.insert((k.clone(), start, end, n));
                    start = t;
                    n = 0;
                }
                end = t;
                n += 1;
            }
            model.insert((k, start, end, n));
        }
        let stored: BTreeSet<(String, i64, i64, i64)> = d
            .session_store::<String, i64>("sessions")
            .all()
            .into_iter()
            .map(|(w, n)| (w.key, w.window.start, w.window.end, n))
            .collect();
        prop_assert_eq!(stored, model);
    }

    /// Sliding windows: every window [t - D, t] ending at a record, and [t + 1, t + 1 + D] after a record that
    /// has a later one within D, holds the sum of the records inside it.
    #[test]
    fn sliding_window_sums_match_the_model(input in records(2_000)) {
        let diff = 100;
        let b = StreamsBuilder::new();
        b.stream::<String, i64>("in")
            .group_by_key()
            .windowed_by_sliding(SlidingWindows::of_time_difference_and_grace(
                Duration::from_millis(diff as u64),
                Duration::from_secs(3600),
            ))
            .aggregate(|| 0i64, |_, v, sum| sum + v, Materialized::named("sums"))
            .to_stream()
            .to("out");
        let mut d = TopologyTestDriver::new(b.build());
        for &(k, ts, v) in &input {
            d.pipe("in", key(k), v, ts);
        }
        let mut model: BTreeMap<(String, i64), i64> = BTreeMap::new();
        for &(k, t, _) in &input {
            let mine: Vec<&(u8, i64, i64)> = input.iter().filter(|r| r.0 == k).collect();
            let mut starts = vec![t - diff];
            if mine.iter().any(|r| r.1 > t && r.1 <= t + 1 + diff) {
                starts.push(t + 1);
            }
            for s in starts {
                let sum = mine.iter().filter(|r| (s..=s + diff).contains(&r.1)).map(|r| r.2).sum();
                model.insert((key(k), s), sum);
            }
        }
        let mut latest: BTreeMap<(String, i64), i64> = BTreeMap::new();
        for (w, sum) in d.read_key_values::<Windowed<String>, Option<i64>>("out") {
            prop_assert_eq!(w.window.end - w.window.start, diff);
            latest.insert((w.key, w.window.start), sum.unwrap());
        }
        prop_assert_eq!(latest, model);
    }

    /// A windowed inner join with a grace longer than the input spans: every pair of records with equal keys at
    /// most the window apart joins exactly once, whichever side arrives first.
    #[test]
    fn windowed_inner_joins_match_the_model(
        left in records(30_000),
        right in records(30_000),
        order in prop::collection::vec(any::<bool>(), 120),
    ) {
        let window = 2_000;
        let b = StreamsBuilder::new();
        let l = b.stream::<String, i64>("left");
        let r = b.stream::<String, i64>("right");
        l.join_windowed(
            &r,
            |a, b| (a * 1000 + b).to_string(),
            JoinWindows::of_time_difference_and_grace(Duration::from_millis(window as u64), Duration::from_secs(3600)),
        )
        .to("out");
        let mut d = TopologyTestDriver::new(b.build());
        // Interleave the two inputs in a random order; values are made unique per side.
        let (mut li, mut ri) = (0, 0);
        let mut lv = Vec::new();
        let mut rv = Vec::new();
        for take_left in order.iter().copied().chain(std::iter::repeat_n(true, 120)) {
            if take_left && li < left.len() || ri >= right.len() {
                if li >= left.len() { break; }
                let (k, ts, _) = left[li];
                let v = li as i64;
                d.pipe("left", key(k), v, ts);
                lv.push((k, ts, v));
                li += 1;
            } else {
                let (k, ts, _) = right[ri];
                let v = ri as i64;
                d.pipe("right", key(k), v, ts);
                rv.push((k, ts, v));
                ri += 1;
            }
        }
        let mut model = Vec::new();
        for &(k1, t1, v1) in &lv {
            for &(k2, t2, v2) in &rv {
                if k1 == k2 && (t1 - t2).abs() <= window {
                    model.push((key(k1), (v1 * 1000 + v2).to_string()));
                }
            }
        }
        model.sort();
        let mut out = d.read_key_values::<String, String>("out");
        out.sort();
        prop_assert_eq!(out, model);
    }

    /// Counting through a repartition topic equals counting directly.
    #[test]
    fn grouped_counts_match_the_model(input in records(1_000)) {
        let b = StreamsBuilder::new();
        b.stream::<String, i64>("in")
            .group_by(|_, v| v.rem_euclid(7))
            .count(Materialized::named("counts"));
        let mut d = TopologyTestDriver::new(b.build());
        let mut model: BTreeMap<i64, i64> = BTreeMap::new();
        for &(k, ts, v) in &input {
            d.pipe("in", key(k), v, ts);
            *model.entry(v.rem_euclid(7)).or_default() += 1;
        }
        let stored: BTreeMap<i64, i64> = d.key_value_store::<i64, i64>("counts").all().into_iter().collect();
        prop_assert_eq!(stored, model);
    }
}
