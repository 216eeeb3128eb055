use proptest::prelude::*;

use super::*;

const LAG: u64 = 10_000;

/// Leader 1 with followers 2 and 3, all in sync, the log empty.
fn three() -> LeaderState {
    LeaderState::new(1, 0, vec![1, 2, 3], vec![1, 2, 3], 0, 0, LAG, 0)
}

#[test]
fn the_high_watermark_is_the_smallest_log_end_offset_in_the_isr() {
    let mut l = three();
    assert_eq!(
        l.on_append(10).high_watermark,
        None,
        "followers have nothing yet"
    );
    l.on_follower_fetch(2, 10, 1);
    assert_eq!(l.high_watermark(), 0);
    let e = l.on_follower_fetch(3, 7, 2);
    assert_eq!(e.high_watermark, Some(7));
    assert!(l.is_replicated(7) && !l.is_replicated(8));
    l.on_follower_fetch(3, 10, 3);
    assert_eq!(l.high_watermark(), 10);
}

#[test]
fn a_replica_added_by_a_reassignment_joins_the_isr_once_caught_up_and_a_removed_one_is_forgotten() {
    let mut l = three();
    l.on_append(10);
    l.on_follower_fetch(2, 10, 1);
    l.on_follower_fetch(3, 10, 1);
    assert_eq!(l.high_watermark(), 10);
    // Replica 4 comes, 3 is leaving: until the reassignment completes, 3 stays in the ISR.
    l.set_replicas(vec![1, 2, 4, 3], 2);
    assert_eq!(
        l.on_follower_fetch(4, 0, 3).propose_isr,
        None,
        "not caught up yet"
    );
    assert_eq!(
        l.on_follower_fetch(4, 10, 4).propose_isr,
        Some(vec![1, 2, 3, 4])
    );
    l.on_isr_committed(vec![1, 2, 3, 4]);
    // Completed: 3 is gone from replicas and ISR, and its fetches no longer count.
    l.set_replicas(vec![1, 2, 4], 5);
    l.on_isr_committed(vec![1, 2, 4]);
    assert!(l.follower(3).is_none());
    l.on_append(20);
    l.on_follower_fetch(3, 20, 6);
    l.on_follower_fetch(2, 20, 6);
    assert_eq!(l.high_watermark(), 10, "replica 4 has not fetched past 10");
    l.on_follower_fetch(4, 20, 7);
    assert_eq!(l.high_watermark(), 20);
}

#[test]
fn the_high_watermark_stays_while_the_isr_is_smaller_than_min_insync_replicas() {
    let mut l = three();
    l.set_min_isr(2);
    l.on_append(10);
    l.on_follower_fetch(2, 10, 1);
    l.on_follower_fetch(3, 10, 1);
    assert_eq!(l.high_watermark(), 10);
    // Followers 2 and 3 leave the ISR: what the leader alone has is not committed, so a replica that left
    // (eligible to lead, KIP-966) holds every committed record.
    l.on_isr_committed(vec![1]);
    assert_eq!(l.on_append(20).high_watermark, None);
    assert_eq!(l.high_watermark(), 10);
    // Back to two: it moves again.
    l.on_follower_fetch(2, 20, 2);
    l.on_isr_committed(vec![1, 2]);
    assert_eq!(l.high_watermark(), 20);
    // min.insync.replicas larger than the replicas counts as all of them.
    let mut single = LeaderState::new(1, 0, vec![1], vec![1], 0, 0, LAG, 0);
    single.set_min_isr(2);
    assert_eq!(single.on_append(5).high_watermark, Some(5));
}

#[test]
fn a_follower_that_stops_catching_up_leaves_the_isr_and_the_leader_never_does() {
    let mut l = three();
    l.on_append(5);
    l.on_follower_fetch(2, 5, 100);
    l.on_follower_fetch(3, 5, 100);
    // Follower 3 goes quiet; 2 keeps fetching.
    for t in (1_000..=10_100).step_by(1_000) {
        l.on_follower_fetch(2, 5, t);
    }
    assert_eq!(
        l.tick(10_100).propose_isr,
        None,
        "not yet past the lag time"
    );
    let e = l.tick(10_200);
    assert_eq!(e.propose_isr, Some(vec![1, 2]));
    assert_eq!(
        l.tick(30_000),
        Effects::default(),
        "one change in flight at a time"
    );
    l.on_isr_committed(vec![1, 2]);
    // With 2 gone quiet too, the ISR shrinks to the leader, never to nothing.
    let e = l.tick(60_000);
    assert_eq!(e.propose_isr, Some(vec![1]));
}

#[test]
fn a_removal_advances_the_high_watermark_only_once_committed() {
    let mut l = three();
    l.on_append(10);
    l.on_follower_fetch(2, 10, 1);
    l.on_follower_fetch(3, 4, 1);
    assert_eq!(l.high_watermark(), 4);
    // Follower 2 keeps up; follower 3 stays at 4 past the lag time.
    l.on_follower_fetch(2, 10, 19_000);
    assert_eq!(l.tick(20_000).propose_isr, Some(vec![1, 2]));
    assert_eq!(l.high_watermark(), 4, "the removal is not committed yet");
    assert_eq!(l.on_isr_committed(vec![1, 2]).high_watermark, Some(10));
}

#[test]
fn a_follower_joins_once_it_reaches_the_high_watermark_and_holds_it_back_while_joining() {
    let mut l = LeaderState::new(1, 3, vec![1, 2], vec![1], 20, 20, LAG, 0);
    l.on_append(30);
    assert_eq!(l.high_watermark(), 30, "the leader alone is the ISR");
    assert_eq!(
        l.on_follower_fetch(2, 15, 1).propose_isr,
        None,
        "below the epoch start and the HW"
    );
    let e = l.on_follower_fetch(2, 30, 2);
    assert_eq!(e.propose_isr, Some(vec![1, 2]));
    // While the expansion is pending, the new member already holds the high watermark back.
    l.on_append(40);
    assert_eq!(l.high_watermark(), 30);
    l.on_follower_fetch(2, 35, 3);
    assert_eq!(l.high_watermark(), 35);
    l.on_isr_committed(vec![1, 2]);
    assert!(l.has_min_isr(2));
}

#[derive(Debug, Clone)]
enum Step {
    Append(i64),
    Fetch(i32, i64),
    Tick(u64),
    Commit,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1i64..50).prop_map(Step::Append),
        (2i32..=3, 0i64..60).prop_map(|(r, back)| Step::Fetch(r, back)),
        (1u64..8_000).prop_map(Step::Tick),
        Just(Step::Commit),
    ]
}

proptest! {
    /// Whatever happens, the high watermark never moves back, never passes the leader's log end, and every
    /// member of the committed ISR holds everything below it (what acks=all relies on).
    #[test]
    fn the_high_watermark_is_monotonic_and_held_by_every_isr_member(steps in proptest::collection::vec(step(), 1..200)) {
        let mut l = three();
        let (mut leo, mut now, mut hw) = (0i64, 0u64, 0i64);
        let mut pending: Option<Vec<i32>> = None;
        for s in steps {
            let effects = match s {
                Step::Append(n) => { leo += n; l.on_append(leo) }
                // A follower fetches some way behind the leader (never ahead).
                Step::Fetch(r, back) => {
                    let have = l.follower(r).map_or(0, |p| p.log_end_offset.max(0));
                    let offset = (leo - back).max(have);
                    l.on_follower_fetch(r, offset, now)
                }
                Step::Tick(dt) => { now += dt; l.tick(now) }
                Step::Commit => match pending.take() {
                    Some(isr) => l.on_isr_committed(isr),
                    None => Effects::default(),
                },
            };
            if let Some(isr) = effects.propose_isr { pending = Some(isr); }
            prop_assert!(l.high_watermark() >= hw, "moved back");
            hw = l.high_watermark();
            prop_assert!(hw <= leo);
            for r in l.isr() {
                if r != 1 {
                    prop_assert!(l.follower(r).unwrap().log_end_offset >= hw || hw == 0,
                        "ISR member {} has {} below the high watermark {}", r, l.follower(r).unwrap().log_end_offset, hw);
                }
            }
            prop_assert!(l.isr().contains(&1));
        }
    }
}
