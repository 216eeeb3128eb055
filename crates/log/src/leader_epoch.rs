//! The leader epoch cache: at which offset each leader epoch's data starts in this log (KIP-101).
//!
//! A replica asks its leader "where does my latest epoch end in your log?" (OffsetForLeaderEpoch) and truncates
//! to the answer, instead of trusting its own high watermark, which can lose or diverge data across two quick
//! leader changes. The cache is the data for that answer: one entry per epoch that wrote to the log, ordered by
//! epoch, with strictly increasing epochs and strictly increasing start offsets. Epoch `e` covers
//! `[start(e), start(next entry))`, the latest one up to the log end offset.
//!
//! This module is pure: the log persists the entries in `leader-epoch-checkpoint` (see checkpoint.rs) after
//! every change, and before writing the data that caused it, so the file never lags the data on disk.

/// One leader epoch and the first offset written in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// The epochs of one partition's log, oldest first. See the module doc for the invariants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

/// Kafka's answer for an epoch the log knows nothing about (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET).
const UNDEFINED: (i32, i64) = (-1, -1);

impl LeaderEpochCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a cache from entries read from disk, in file order. A damaged or hand-edited file can hold entries
    /// that break the invariants; they are replayed through [`LeaderEpochCache::assign`], as Kafka does when it
    /// loads the checkpoint, so a later entry wins over an earlier one with a start offset that is not below it,
    /// and an entry whose epoch is not above every earlier one is dropped.
    pub fn from_entries(entries: Vec<EpochEntry>) -> Self {
        let mut cache = Self::new();
        for e in entries {
            cache.assign(e.epoch, e.start_offset);
        }
        cache
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` starts at `start_offset`. Only a newer epoch is recorded: a batch of an older epoch
    /// (a leader still writing what it accepted before it learned of a newer one) changes nothing. Negative
    /// values are "unknown" in Kafka's protocol and are ignored too. Entries starting at or after
    /// `start_offset` describe data that is no longer in the log (it was truncated and is being overwritten),
    /// so they are removed first. Returns whether the cache changed.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || start_offset < 0 || self.latest_epoch().is_some_and(|l| epoch <= l) {
            return false;
        }
        let keep = self
            .entries
            .partition_point(|e| e.start_offset < start_offset);
        self.entries.truncate(keep);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// The OffsetForLeaderEpoch answer for `epoch`: the largest known epoch <= `epoch` and the offset where it
    /// ends, which is the start offset of the next known epoch, or `log_end_offset` if it is the latest.
    /// `(-1, -1)` when the cache is empty or `epoch` is older than every known epoch.
    ///
    /// Kafka answers an epoch newer than every known one with `(-1, -1)`, because its leader records its epoch
    /// when elected. Here an epoch is recorded at its first append, so a newer epoch may simply not have
    /// written yet, and the latest epoch with the log end offset is the truthful answer.
    pub fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> (i32, i64) {
        let after = self.entries.partition_point(|e| e.epoch <= epoch);
        if after == 0 {
            return UNDEFINED;
        }
        let floor = self.entries[after - 1].epoch;
        let end = self
            .entries
            .get(after)
            .map_or(log_end_offset, |next| next.start_offset);
        (floor, end)
    }

    /// The log was truncated to `end_offset`: epochs starting at or after it have no data left.
    /// Returns whether the cache changed.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let keep = self
            .entries
            .partition_point(|e| e.start_offset < end_offset);
        let changed = keep < self.entries.len();
        self.entries.truncate(keep);
        changed
    }

    /// The log start offset moved to `start_offset`: epochs whose data lies wholly below it are dropped, and the
    /// epoch holding `start_offset` now starts there. The latest epoch is never dropped this way, even if
    /// all of the log's data is gone, so the leader still knows where its current epoch stands.
    /// Returns whether the cache changed.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let at_or_below = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        if at_or_below == 0 {
            return false;
        }
        let holder = at_or_below - 1;
        let changed = holder > 0 || self.entries[holder].start_offset != start_offset;
        self.entries.drain(..holder);
        self.entries[0].start_offset = start_offset;
        changed
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(epoch: i32, start_offset: i64) -> EpochEntry {
        EpochEntry {
            epoch,
            start_offset,
        }
    }

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::new();
        for &(epoch, start) in entries {
            assert!(c.assign(epoch, start), "assign({epoch}, {start})");
        }
        c
    }

    #[test]
    fn assign_records_only_newer_epochs() {
        let mut c = LeaderEpochCache::new();
        assert_eq!(c.latest_epoch(), None);
        assert!(c.assign(0, 0));
        assert!(!c.assign(0, 5), "same epoch again");
        assert!(c.assign(2, 10));
        assert!(!c.assign(1, 20), "older epoch");
        assert!(!c.assign(-1, 30), "unknown epoch");
        assert!(!c.assign(7, -1), "unknown offset");
        assert_eq!(c.entries(), &[entry(0, 0), entry(2, 10)]);
        assert_eq!(c.latest_epoch(), Some(2));
    }

    #[test]
    fn assign_removes_entries_at_or_after_the_new_start() {
        let mut c = cache(&[(0, 0), (2, 10), (3, 20)]);
        assert!(c.assign(4, 10));
        assert_eq!(c.entries(), &[entry(0, 0), entry(4, 10)]);
        assert!(c.assign(5, 5));
        assert_eq!(c.entries(), &[entry(0, 0), entry(5, 5)]);
    }

    #[test]
    fn from_entries_sanitises_like_replayed_assigns() {
        let c = LeaderEpochCache::from_entries(vec![
            entry(1, 0),
            entry(3, 10),
            entry(2, 15),
            entry(4, 10),
            entry(6, 30),
            entry(-1, 40),
        ]);
        assert_eq!(c.entries(), &[entry(1, 0), entry(4, 10), entry(6, 30)]);
    }

    #[test]
    fn end_offset_for_answers_like_offset_for_leader_epoch() {
        let c = cache(&[(0, 0), (2, 2), (5, 4)]);
        assert_eq!(c.end_offset_for(0, 7), (0, 2));
        assert_eq!(c.end_offset_for(1, 7), (0, 2));
        assert_eq!(c.end_offset_for(2, 7), (2, 4));
        assert_eq!(c.end_offset_for(4, 7), (2, 4));
        assert_eq!(c.end_offset_for(5, 7), (5, 7));
        assert_eq!(c.end_offset_for(9, 7), (5, 7));
        assert_eq!(c.end_offset_for(-1, 7), UNDEFINED);
        assert_eq!(cache(&[(3, 0)]).end_offset_for(2, 7), UNDEFINED);
        assert_eq!(LeaderEpochCache::new().end_offset_for(0, 0), UNDEFINED);
    }

    #[test]
    fn truncate_from_end_drops_epochs_without_data() {
        let mut c = cache(&[(0, 0), (2, 10), (3, 20)]);
        assert!(!c.truncate_from_end(21));
        assert!(c.truncate_from_end(20));
        assert_eq!(c.entries(), &[entry(0, 0), entry(2, 10)]);
        assert!(c.truncate_from_end(3));
        assert_eq!(c.entries(), &[entry(0, 0)]);
        assert!(c.truncate_from_end(0));
        assert!(c.entries().is_empty());
    }

    #[test]
    fn truncate_from_start_keeps_the_epoch_holding_the_new_start() {
        let mut c = cache(&[(0, 0), (2, 10), (3, 20)]);
        assert!(!c.truncate_from_start(0));
        assert!(c.truncate_from_start(5));
        assert_eq!(c.entries(), &[entry(0, 5), entry(2, 10), entry(3, 20)]);
        assert!(c.truncate_from_start(10));
        assert_eq!(c.entries(), &[entry(2, 10), entry(3, 20)]);
        assert!(!c.truncate_from_start(10));
        assert!(c.truncate_from_start(100));
        assert_eq!(c.entries(), &[entry(3, 100)]);
        let mut later = cache(&[(4, 50)]);
        assert!(
            !later.truncate_from_start(10),
            "nothing below the first epoch"
        );
        assert_eq!(later.entries(), &[entry(4, 50)]);
        c.clear();
        assert_eq!(c.latest_epoch(), None);
    }

    /// The model: a log whose every offset in `[start, end)` carries the epoch it was written in, plus the epoch
    /// the cache keeps when start-truncation removed every offset.
    #[derive(Debug, Default)]
    struct Model {
        start: i64,
        epochs: Vec<i32>,
        carried: Option<i32>,
    }

    impl Model {
        fn end(&self) -> i64 {
            self.start + self.epochs.len() as i64
        }

        /// Each run of equal epochs starts an entry; with no offsets, the carried epoch starts at `start`.
        fn entries(&self) -> Vec<EpochEntry> {
            if self.epochs.is_empty() {
                return self
                    .carried
                    .map(|epoch| vec![entry(epoch, self.start)])
                    .unwrap_or_default();
            }
            let mut out: Vec<EpochEntry> = Vec::new();
            for (i, &epoch) in self.epochs.iter().enumerate() {
                if out.last().is_none_or(|e| e.epoch != epoch) {
                    out.push(entry(epoch, self.start + i as i64));
                }
            }
            out
        }

        /// Straight from the definition, offset by offset.
        fn end_offset_for(&self, epoch: i32) -> (i32, i64) {
            if self.epochs.is_empty() {
                return match self.carried {
                    Some(c) if c <= epoch => (c, self.end()),
                    _ => UNDEFINED,
                };
            }
            let Some(floor) = self.epochs.iter().copied().filter(|&e| e <= epoch).max() else {
                return UNDEFINED;
            };
            let end = self
                .epochs
                .iter()
                .position(|&e| e > epoch)
                .map_or(self.end(), |i| self.start + i as i64);
            (floor, end)
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Append `count` offsets in the latest epoch + `epoch_step`.
        Append { epoch_step: i32, count: i64 },
        /// Truncate the end to a point chosen as a fraction (per mille) of the log.
        TruncateEnd(u16),
        /// Move the start to a point chosen as a fraction (per mille) of the log.
        TruncateStart(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0i32..3, 1i64..5).prop_map(|(epoch_step, count)| Op::Append { epoch_step, count }),
            1 => (0u16..=1000).prop_map(Op::TruncateEnd),
            1 => (0u16..=1000).prop_map(Op::TruncateStart),
        ]
    }

    proptest! {
        #[test]
        fn cache_matches_a_per_offset_model(ops in proptest::collection::vec(op(), 1..40)) {
            let mut cache = LeaderEpochCache::new();
            let mut model = Model::default();
            for op in ops {
                let span = model.epochs.len() as i64;
                match op {
                    Op::Append { epoch_step, count } => {
                        let epoch = cache.latest_epoch().map_or(epoch_step, |l| l + epoch_step);
                        cache.assign(epoch, model.end());
                        model.epochs.extend(std::iter::repeat_n(epoch, count as usize));
                        model.carried = None;
                    }
                    Op::TruncateEnd(per_mille) => {
                        // Like Log::truncate_to: an offset at or below the log start empties everything.
                        let to = model.start + span * i64::from(per_mille) / 1000;
                        cache.truncate_from_end(to);
                        model.epochs.truncate((to - model.start) as usize);
                        if model.epochs.is_empty() {
                            model.carried = None;
                        }
                    }
                    Op::TruncateStart(per_mille) => {
                        let to = model.start + span * i64::from(per_mille) / 1000;
                        cache.truncate_from_start(to);
                        if let Some(&last) = model.epochs.last() {
                            if to == model.end() {
                                model.carried = Some(last);
                            }
                        }
                        model.epochs.drain(..(to - model.start) as usize);
                        model.start = to;
                    }
                }
                prop_assert_eq!(cache.entries(), &model.entries()[..]);
                let top = cache.latest_epoch().unwrap_or(0) + 2;
                for epoch in -1..=top {
                    let answer = cache.end_offset_for(epoch, model.end());
                    prop_assert_eq!(answer, model.end_offset_for(epoch), "epoch {}", epoch);
                }
            }
        }
    }
}
