//! The server-side assignors: from the members' subscriptions, the subscribed topics and the previous target,
//! compute the next target assignment. Pure functions; ties are broken by member id so results are
//! deterministic.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::api::{Assignment, AssignorName, TopicInfo};

/// member id -> the topic names it subscribes to.
pub type Subscriptions = BTreeMap<String, BTreeSet<String>>;

/// The next target assignment: an entry (possibly empty) for every member.
pub fn assign(
    assignor: AssignorName,
    members: &Subscriptions,
    topics: &BTreeMap<String, TopicInfo>,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    match assignor {
        AssignorName::Uniform => uniform(members, topics, previous),
        AssignorName::Range => range(members, topics),
    }
}

/// Per topic, the subscribed members sorted by id get contiguous ranges; the first `partitions % members` get
/// one extra. Deviation: Kafka's server-side range assignor also tries to keep partitions where they are when
/// the member count changes; this one is the plain co-partitioning layout (identical for equal member sets).
fn range(
    members: &Subscriptions,
    topics: &BTreeMap<String, TopicInfo>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    for (name, info) in topics {
        let subscribers: Vec<&String> = members
            .iter()
            .filter(|(_, s)| s.contains(name))
            .map(|(m, _)| m)
            .collect();
        if subscribers.is_empty() || info.partitions <= 0 {
            continue;
        }
        let n = subscribers.len() as i32;
        let (share, extra) = (info.partitions / n, info.partitions % n);
        let mut start = 0;
        for (i, member) in subscribers.iter().enumerate() {
            let len = share + i32::from((i as i32) < extra);
            if len > 0 {
                let entry = out.get_mut(*member).expect("member listed");
                entry.entry(info.id).or_default().extend(start..start + len);
            }
            start += len;
        }
    }
    out
}

/// Balanced and sticky. Every partition of a subscribed topic goes to a subscriber; members keep what they had
/// in the previous target where still valid; then partitions move, one at a time, from the most loaded member
/// to an eligible member with at least two fewer, until no such move exists. With identical subscriptions this
/// leaves every member within one partition of the others, and moves only the partitions that must move.
fn uniform(
    members: &Subscriptions,
    topics: &BTreeMap<String, TopicInfo>,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    let names_by_id: BTreeMap<Uuid, (&String, i32)> = topics
        .iter()
        .map(|(name, info)| (info.id, (name, info.partitions)))
        .collect();
    let eligible = |member: &str, topic: &Uuid| {
        names_by_id
            .get(topic)
            .is_some_and(|(name, _)| members.get(member).is_some_and(|s| s.contains(*name)))
    };
    let mut out: BTreeMap<String, BTreeSet<(Uuid, i32)>> = members
        .keys()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    let mut taken: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    for (member, assignment) in previous {
        let Some(mine) = out.get_mut(member) else {
            continue;
        };
        for (topic, partitions) in assignment {
            let Some((_, count)) = names_by_id.get(topic) else {
                continue;
            };
            if !eligible(member, topic) {
                continue;
            }
            for &p in partitions {
                if p < *count && taken.insert((*topic, p)) {
                    mine.insert((*topic, p));
                }
            }
        }
    }
    for (topic, (_, count)) in &names_by_id {
        for p in 0..*count {
            if taken.contains(&(*topic, p)) {
                continue;
            }
            let least = out
                .iter()
                .filter(|(m, _)| eligible(m, topic))
                .min_by_key(|(m, owned)| (owned.len(), (*m).clone()))
                .map(|(m, _)| m.clone());
            if let Some(member) = least {
                out.get_mut(&member).expect("member").insert((*topic, p));
                taken.insert((*topic, p));
            }
        }
    }
    // Each move lowers the sum of squared loads, so this ends.
    loop {
        let mut by_load: Vec<(usize, String)> =
            out.iter().map(|(m, o)| (o.len(), m.clone())).collect();
        by_load.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut moved = None;
        'search: for (load, from) in &by_load {
            for &(topic, p) in out[from].iter().rev() {
                let to = by_load
                    .iter()
                    .filter(|(l, m)| l + 2 <= *load && eligible(m, &topic))
                    .min_by_key(|(l, m)| (*l, m.clone()));
                if let Some((_, to)) = to {
                    moved = Some((from.clone(), to.clone(), (topic, p)));
                    break 'search;
                }
            }
        }
        let Some((from, to, partition)) = moved else {
            break;
        };
        out.get_mut(&from).expect("member").remove(&partition);
        out.get_mut(&to).expect("member").insert(partition);
    }
    out.into_iter()
        .map(|(m, owned)| {
            let mut a = Assignment::new();
            for (topic, p) in owned {
                a.entry(topic).or_default().insert(p);
            }
            (m, a)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(list: &[(&str, u128, i32)]) -> BTreeMap<String, TopicInfo> {
        list.iter()
            .map(|(n, id, p)| {
                (
                    n.to_string(),
                    TopicInfo {
                        id: Uuid::from_u128(*id),
                        partitions: *p,
                    },
                )
            })
            .collect()
    }

    fn subs(list: &[(&str, &[&str])]) -> Subscriptions {
        list.iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(BTreeSet::len).sum()
    }

    #[test]
    fn uniform_balances_and_moves_only_what_must_move() {
        let t = topics(&[("work", 1, 6)]);
        let one = assign(
            AssignorName::Uniform,
            &subs(&[("a", &["work"])]),
            &t,
            &BTreeMap::new(),
        );
        assert_eq!(count(&one["a"]), 6);
        let two = assign(
            AssignorName::Uniform,
            &subs(&[("a", &["work"]), ("b", &["work"])]),
            &t,
            &one,
        );
        assert_eq!(count(&two["a"]), 3);
        assert_eq!(count(&two["b"]), 3);
        let three = assign(
            AssignorName::Uniform,
            &subs(&[("a", &["work"]), ("b", &["work"]), ("c", &["work"])]),
            &t,
            &two,
        );
        for m in ["a", "b", "c"] {
            assert_eq!(count(&three[m]), 2, "{m}");
            let before = &two.get(m).cloned().unwrap_or_default();
            for (topic, ps) in &three[m] {
                if m != "c" {
                    assert!(ps.is_subset(&before[topic]), "{m} kept its own partitions");
                }
            }
        }
    }

    #[test]
    fn uniform_respects_heterogeneous_subscriptions() {
        let t = topics(&[("x", 1, 4), ("y", 2, 2)]);
        let out = assign(
            AssignorName::Uniform,
            &subs(&[("a", &["x"]), ("b", &["x", "y"])]),
            &t,
            &BTreeMap::new(),
        );
        assert!(!out["a"].contains_key(&Uuid::from_u128(2)));
        assert_eq!(count(&out["a"]) + count(&out["b"]), 6);
        assert_eq!(count(&out["a"]), 3);
    }

    #[test]
    fn range_gives_contiguous_ranges_by_member_id() {
        let t = topics(&[("x", 1, 5)]);
        let out = assign(
            AssignorName::Range,
            &subs(&[("b", &["x"]), ("a", &["x"])]),
            &t,
            &BTreeMap::new(),
        );
        let x = Uuid::from_u128(1);
        assert_eq!(out["a"][&x], BTreeSet::from([0, 1, 2]));
        assert_eq!(out["b"][&x], BTreeSet::from([3, 4]));
    }
}
