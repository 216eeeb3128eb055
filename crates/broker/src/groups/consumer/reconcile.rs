//! Member reconciliation (KIP-848's "current assignment builder"): how a member's current assignment moves
//! towards its target, one heartbeat at a time, without a partition ever being owned by two members.
//!
//! A member first gives up what it must lose: those partitions stay *pending revocation* (still owned) until the
//! member heartbeats without them. Only then does it move to the target epoch and receive new partitions, and a
//! partition still owned by another member (assigned or pending revocation there) is held back as *unreleased*
//! until that member releases it.

use super::api::Assignment;

/// Where a member stands with respect to its target assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// The member owns exactly its target at the target epoch.
    Stable,
    /// The member was asked to revoke partitions and has not confirmed yet.
    UnrevokedPartitions,
    /// The member is at the target epoch but waits for partitions other members still own.
    UnreleasedPartitions,
}

/// The part of a member that reconciliation changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciliation {
    pub state: MemberState,
    pub epoch: i32,
    pub assigned: Assignment,
    pub pending_revocation: Assignment,
}

impl Reconciliation {
    /// A member that just joined (or rejoined with epoch 0): owns nothing.
    pub fn joining() -> Self {
        Self {
            state: MemberState::Stable,
            epoch: 0,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
        }
    }

    pub fn is_reconciled_to(&self, target_epoch: i32) -> bool {
        self.state == MemberState::Stable && self.epoch == target_epoch
    }
}

/// One reconciliation step for a member that heartbeats.
///
/// `owned` is what the member reports owning (`None`: not sent, so it is assumed to still own everything it
/// was given); `owned_by_other(topic, partition)` tells whether another member currently owns a partition.
pub fn reconcile(
    current: &Reconciliation,
    target_epoch: i32,
    target: &Assignment,
    owned: Option<&Assignment>,
    owned_by_other: impl Fn(&uuid::Uuid, i32) -> bool,
) -> Reconciliation {
    match current.state {
        MemberState::Stable if current.epoch == target_epoch => current.clone(),
        MemberState::Stable | MemberState::UnreleasedPartitions => next(
            current.epoch,
            &current.assigned,
            target_epoch,
            target,
            owned,
            owned_by_other,
        ),
        MemberState::UnrevokedPartitions => {
            if still_owns_any(owned, &current.pending_revocation) {
                return current.clone();
            }
            // Revocation confirmed: any further revocation needs a new epoch, so the client can tell the new
            // request apart from the one it just answered.
            next(
                current.epoch + 1,
                &current.assigned,
                target_epoch,
                target,
                owned,
                owned_by_other,
            )
        }
    }
}

fn still_owns_any(owned: Option<&Assignment>, partitions: &Assignment) -> bool {
    let Some(owned) = owned else {
        return true;
    };
    partitions.iter().any(|(topic, ps)| {
        owned
            .get(topic)
            .is_some_and(|o| ps.iter().any(|p| o.contains(p)))
    })
}

fn next(
    epoch: i32,
    assigned: &Assignment,
    target_epoch: i32,
    target: &Assignment,
    owned: Option<&Assignment>,
    owned_by_other: impl Fn(&uuid::Uuid, i32) -> bool,
) -> Reconciliation {
    let mut keep = Assignment::new();
    let mut revoke = Assignment::new();
    let mut add = Assignment::new();
    let mut unreleased = false;
    for (topic, partitions) in assigned {
        let wanted = target.get(topic);
        for &p in partitions {
            let side = if wanted.is_some_and(|w| w.contains(&p)) {
                &mut keep
            } else {
                &mut revoke
            };
            side.entry(*topic).or_default().insert(p);
        }
    }
    for (topic, partitions) in target {
        let have = assigned.get(topic);
        for &p in partitions {
            if have.is_some_and(|h| h.contains(&p)) {
                continue;
            }
            if owned_by_other(topic, p) {
                unreleased = true;
            } else {
                add.entry(*topic).or_default().insert(p);
            }
        }
    }
    if !revoke.is_empty() && still_owns_any(owned, &revoke) {
        return Reconciliation {
            state: MemberState::UnrevokedPartitions,
            epoch,
            assigned: keep,
            pending_revocation: revoke,
        };
    }
    for (topic, partitions) in add {
        keep.entry(topic).or_default().extend(partitions);
    }
    Reconciliation {
        state: if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        },
        epoch: target_epoch,
        assigned: keep,
        pending_revocation: Assignment::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use uuid::Uuid;

    use super::*;

    fn a(topic: Uuid, ps: &[i32]) -> Assignment {
        let mut out = Assignment::new();
        out.insert(topic, ps.iter().copied().collect::<BTreeSet<_>>());
        out
    }

    #[test]
    fn a_joining_member_gets_free_partitions_and_the_target_epoch() {
        let t = Uuid::from_u128(1);
        let r = reconcile(
            &Reconciliation::joining(),
            3,
            &a(t, &[0, 1]),
            Some(&Assignment::new()),
            |_, _| false,
        );
        assert_eq!(r.state, MemberState::Stable);
        assert_eq!(r.epoch, 3);
        assert_eq!(r.assigned, a(t, &[0, 1]));
    }

    #[test]
    fn partitions_owned_elsewhere_are_held_back() {
        let t = Uuid::from_u128(1);
        let r = reconcile(
            &Reconciliation::joining(),
            3,
            &a(t, &[0, 1]),
            Some(&Assignment::new()),
            |_, p| p == 1,
        );
        assert_eq!(r.state, MemberState::UnreleasedPartitions);
        assert_eq!(r.epoch, 3);
        assert_eq!(r.assigned, a(t, &[0]));
    }

    #[test]
    fn revocation_comes_first_and_keeps_the_epoch_until_confirmed() {
        let t = Uuid::from_u128(1);
        let stable = Reconciliation {
            state: MemberState::Stable,
            epoch: 2,
            assigned: a(t, &[0, 1, 2]),
            pending_revocation: Assignment::new(),
        };
        let owned = a(t, &[0, 1, 2]);
        let r = reconcile(&stable, 3, &a(t, &[0, 3]), Some(&owned), |_, _| false);
        assert_eq!(r.state, MemberState::UnrevokedPartitions);
        assert_eq!(r.epoch, 2);
        assert_eq!(r.assigned, a(t, &[0]));
        assert_eq!(r.pending_revocation, a(t, &[1, 2]));
        // Still owning a revoked partition: no progress.
        assert_eq!(
            reconcile(&r, 3, &a(t, &[0, 3]), Some(&a(t, &[0, 2])), |_, _| false),
            r
        );
        assert_eq!(reconcile(&r, 3, &a(t, &[0, 3]), None, |_, _| false), r);
        // Confirmed: the new partition arrives with the target epoch.
        let done = reconcile(&r, 3, &a(t, &[0, 3]), Some(&a(t, &[0])), |_, _| false);
        assert_eq!(done.state, MemberState::Stable);
        assert_eq!(done.epoch, 3);
        assert_eq!(done.assigned, a(t, &[0, 3]));
    }

    #[test]
    fn a_member_that_already_dropped_the_partitions_skips_revocation() {
        let t = Uuid::from_u128(1);
        let stable = Reconciliation {
            state: MemberState::Stable,
            epoch: 2,
            assigned: a(t, &[0, 1]),
            pending_revocation: Assignment::new(),
        };
        let r = reconcile(&stable, 3, &a(t, &[0]), Some(&a(t, &[0])), |_, _| false);
        assert_eq!(r.state, MemberState::Stable);
        assert_eq!(r.epoch, 3);
        assert_eq!(r.assigned, a(t, &[0]));
    }
}
