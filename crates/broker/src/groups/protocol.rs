//! Protocol questions about a group: which protocol wins the vote, and which topics a consumer group reads.

use std::collections::BTreeSet;

use bytes::{Buf, Bytes};
use strom_protocol::kafka::messages::ConsumerProtocolSubscription;
use strom_protocol::kafka::protocol::Decodable;

use super::member::Member;

/// The protocol type of groups formed by Kafka consumers, whose metadata is a `ConsumerProtocolSubscription`.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// Highest `ConsumerProtocolSubscription` version this build can decode. Newer versions only append fields, so
/// (like Kafka's `ConsumerProtocol`) a newer payload is read with the newest schema we know.
const MAX_SUBSCRIPTION_VERSION: i16 = 3;

/// Kafka's rule: the candidates are the protocols every member supports; each member votes for its most
/// preferred candidate and the most votes win. Kafka breaks ties by hash order; here a tie goes to the
/// candidate the earliest-joined member prefers, so the choice is deterministic. `None` if nothing is
/// supported by all (the join checks prevent that for a non-empty group).
pub(crate) fn select_protocol<'a>(
    members: impl Iterator<Item = &'a Member> + Clone,
) -> Option<String> {
    let first = members.clone().next()?;
    let candidates: Vec<&str> = first
        .protocols
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| members.clone().all(|m| m.supports(name)))
        .collect();
    // `candidates` is in the first member's order of preference, so the first maximum is the tie-break.
    let mut votes = vec![0usize; candidates.len()];
    for member in members {
        if let Some(choice) = member.vote(&candidates) {
            if let Some(i) = candidates.iter().position(|c| *c == choice) {
                votes[i] += 1;
            }
        }
    }
    let mut best: Option<usize> = None;
    for (i, count) in votes.iter().enumerate() {
        if best.is_none_or(|b| *count > votes[b]) {
            best = Some(i);
        }
    }
    best.map(|i| candidates[i].to_string())
}

/// The topics in one consumer subscription: a big-endian i16 version followed by the
/// `ConsumerProtocolSubscription` body at that version. `None` if it does not decode.
pub fn subscription_topics(metadata: &Bytes) -> Option<Vec<String>> {
    let mut buf = metadata.clone();
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16();
    if version < 0 {
        return None;
    }
    let subscription =
        ConsumerProtocolSubscription::decode(&mut buf, version.min(MAX_SUBSCRIPTION_VERSION))
            .ok()?;
    Some(subscription.topics.iter().map(|t| t.to_string()).collect())
}

/// The union of the members' subscribed topics for `protocol`, as Kafka computes it for OffsetDelete: only for
/// consumer groups, empty for a group without members, `None` when a member's metadata cannot be decoded.
/// Computed on demand (Kafka caches it at each new generation), so it includes members that joined since.
pub(crate) fn subscribed_topics<'a>(
    protocol_type: Option<&str>,
    protocol_name: Option<&str>,
    mut members: impl Iterator<Item = &'a Member>,
) -> Option<BTreeSet<String>> {
    if protocol_type != Some(CONSUMER_PROTOCOL_TYPE) {
        return None;
    }
    let Some(first) = members.next() else {
        return Some(BTreeSet::new());
    };
    let protocol = protocol_name?;
    let mut topics = BTreeSet::new();
    for member in std::iter::once(first).chain(members) {
        if !member.supports(protocol) {
            return None;
        }
        topics.extend(subscription_topics(&member.metadata(protocol))?);
    }
    Some(topics)
}
