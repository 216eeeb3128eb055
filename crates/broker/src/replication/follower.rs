//! What a follower does with one partition of a fetch response from its leader, without I/O.
//!
//! The follower fetches at its log end offset and names the leader epoch of its last batch
//! (`last_fetched_epoch`). The leader answers with records, or with a *diverging epoch* (KIP-320, as Kafka's
//! followers use it since 2.7): its own end offset for the largest epoch it has at or below the follower's. The
//! follower then truncates to the point where both logs are known to agree:
//! - if it has that epoch too, to the smaller of the two end offsets for it;
//! - if it does not, to its own end offset for the largest epoch below it, and asks again (each round removes
//!   at least one epoch, so this ends);
//! - if the leader knows no epoch that old, everything goes and the follower copies the leader's log from its
//!   start (an out-of-range answer then moves it to the leader's log start offset).
//!
//! A follower never keeps a record the leader does not have at the same offset and epoch, which is what makes
//! the replicas' logs identical below the high watermark.

use bytes::Bytes;

/// Error codes a follower handles itself.
pub const NONE: i16 = 0;
pub const OFFSET_OUT_OF_RANGE: i16 = 1;

/// One partition of the leader's fetch response, as the follower needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedPartition {
    pub error_code: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// (epoch, end offset) when the leader found the follower's log diverging.
    pub diverging_epoch: Option<(i32, i64)>,
    pub records: Option<Bytes>,
}

/// What the follower's log must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Append the leader's batches, then take its high watermark and log start offset.
    Append(Bytes),
    /// Remove everything at or above this offset.
    Truncate(i64),
    /// Drop the whole log and restart it empty at the leader's log start offset.
    Reset(i64),
    /// Up to date: take the leader's high watermark and log start offset.
    CaughtUp,
    /// The leader cannot serve this fetch now (stale metadata on one side, or it is not the leader): try again
    /// after a pause.
    Retry(i16),
}

/// The follower's log as the decision needs it.
pub trait FollowerLog {
    fn log_end_offset(&self) -> i64;
    /// Kafka's OffsetForLeaderEpoch answer from the follower's own log (see `strom_log::LeaderEpochCache`).
    fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64);
}

/// The leader's side of KIP-320: given its own answer for the follower's last fetched epoch (the largest epoch
/// at or below it, and where that ends in the leader's log), whether the follower's log diverges, and the
/// (epoch, end offset) to tell it. A follower that has fetched nothing yet (`last_fetched_epoch` < 0) is not
/// checked.
pub fn diverging_epoch(
    last_fetched_epoch: i32,
    fetch_offset: i64,
    leader_end_for_epoch: (i32, i64),
) -> Option<(i32, i64)> {
    let (epoch, end) = leader_end_for_epoch;
    (last_fetched_epoch >= 0 && (epoch != last_fetched_epoch || end < fetch_offset))
        .then_some((epoch, end))
}

/// Decides what to do with `response` for a fetch sent at `fetch_offset`.
pub fn decide(log: &impl FollowerLog, fetch_offset: i64, response: FetchedPartition) -> Action {
    match response.error_code {
        NONE => {}
        OFFSET_OUT_OF_RANGE => {
            return if fetch_offset < response.log_start_offset {
                Action::Reset(response.log_start_offset)
            } else {
                // Past the leader's end without a divergence found (the follower's epochs were lost): keep only
                // what the leader has committed.
                Action::Truncate(response.high_watermark.max(0).min(log.log_end_offset()))
            };
        }
        other => return Action::Retry(other),
    }
    if let Some((epoch, end_offset)) = response.diverging_epoch {
        let leo = log.log_end_offset();
        if end_offset < 0 || epoch < 0 {
            return Action::Truncate(0);
        }
        let (local_epoch, local_end) = log.end_offset_for_epoch(epoch);
        let target = if local_epoch < 0 || local_end < 0 {
            0
        } else {
            end_offset.min(local_end)
        };
        return Action::Truncate(target.min(leo));
    }
    match response.records {
        Some(records) if !records.is_empty() => Action::Append(records),
        _ => Action::CaughtUp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A follower log as (epoch, start offset) entries and an end offset.
    struct Model {
        epochs: Vec<(i32, i64)>,
        end: i64,
    }

    impl FollowerLog for Model {
        fn log_end_offset(&self) -> i64 {
            self.end
        }
        fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
            let Some(i) = self.epochs.iter().rposition(|(e, _)| *e <= epoch) else {
                return (-1, -1);
            };
            let end = self.epochs.get(i + 1).map_or(self.end, |(_, start)| *start);
            (self.epochs[i].0, end)
        }
    }

    fn diverging(epoch: i32, end: i64) -> FetchedPartition {
        FetchedPartition {
            error_code: NONE,
            high_watermark: 0,
            log_start_offset: 0,
            diverging_epoch: Some((epoch, end)),
            records: None,
        }
    }

    #[test]
    fn a_follower_with_the_epoch_truncates_to_the_smaller_end() {
        // Follower: epoch 1 from 0, epoch 3 from 10, ends at 15. Leader: epoch 3 ends at 12.
        let log = Model {
            epochs: vec![(1, 0), (3, 10)],
            end: 15,
        };
        assert_eq!(decide(&log, 15, diverging(3, 12)), Action::Truncate(12));
    }

    #[test]
    fn a_follower_without_the_epoch_truncates_to_its_own_end_of_the_earlier_one() {
        // Follower has epochs 1 (0..10) and 2 (10..15); the leader never had 2 and answers epoch 1 ending at 11.
        let log = Model {
            epochs: vec![(1, 0), (2, 10)],
            end: 15,
        };
        assert_eq!(decide(&log, 15, diverging(1, 11)), Action::Truncate(10));
    }

    #[test]
    fn unknown_history_goes_entirely() {
        let log = Model {
            epochs: vec![(4, 0)],
            end: 5,
        };
        assert_eq!(decide(&log, 5, diverging(-1, -1)), Action::Truncate(0));
        assert_eq!(decide(&log, 5, diverging(2, 3)), Action::Truncate(0));
    }

    #[test]
    fn out_of_range_below_the_leaders_start_resets() {
        let log = Model {
            epochs: vec![],
            end: 3,
        };
        let response = FetchedPartition {
            error_code: OFFSET_OUT_OF_RANGE,
            high_watermark: 100,
            log_start_offset: 50,
            diverging_epoch: None,
            records: None,
        };
        assert_eq!(decide(&log, 3, response), Action::Reset(50));
    }

    #[test]
    fn records_are_appended_and_errors_retried() {
        let log = Model {
            epochs: vec![(0, 0)],
            end: 3,
        };
        let mut response = FetchedPartition {
            error_code: NONE,
            high_watermark: 3,
            log_start_offset: 0,
            diverging_epoch: None,
            records: Some(Bytes::from_static(b"batch")),
        };
        assert_eq!(
            decide(&log, 3, response.clone()),
            Action::Append(Bytes::from_static(b"batch"))
        );
        response.records = Some(Bytes::new());
        assert_eq!(decide(&log, 3, response.clone()), Action::CaughtUp);
        response.error_code = 74;
        assert_eq!(decide(&log, 3, response), Action::Retry(74));
    }
}
