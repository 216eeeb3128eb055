//! How many tasks each sub-topology has and which internal topics the application needs (sans I/O).
//!
//! Kafka Streams' rules: a sub-topology has as many tasks as its source topics have partitions (the most of
//! them); a repartition topic gets the task count of the sub-topology that writes it; a changelog gets the
//! task count of the sub-topology that owns the store. Sub-topologies that join (they have stores and more than
//! one source topic) need their source topics co-partitioned: equal partition counts.

use std::collections::BTreeMap;

use crate::topology::{TopicName, Topology};

/// A topic the application creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalTopic {
    pub name: String,
    pub partitions: i32,
    pub configs: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Tasks (partitions) per sub-topology, by sub-topology id.
    pub tasks: Vec<i32>,
    pub internal_topics: Vec<InternalTopic>,
}

/// Plans the application given the partition counts of its external source topics.
pub fn plan(
    topology: &Topology,
    application_id: &str,
    external: &BTreeMap<String, i32>,
) -> Result<Plan, String> {
    let subs = topology.subtopologies();
    let mut tasks: Vec<Option<i32>> = vec![None; subs.len()];
    let mut repartition: BTreeMap<String, i32> = BTreeMap::new();
    // Sub-topologies fed by repartition topics wait for the ones that write them: iterate to a fixed point.
    for _ in 0..=subs.len() {
        let mut changed = false;
        for sub in subs {
            if tasks[sub.id as usize].is_some() {
                continue;
            }
            let mut counts = Vec::new();
            let mut known = true;
            for topic in &sub.source_topics {
                match topic {
                    TopicName::External(t) => match external.get(t) {
                        Some(&n) => counts.push((t.clone(), n)),
                        None => return Err(format!("source topic {t} does not exist")),
                    },
                    // Takes this sub-topology's count, decided by its other sources.
                    TopicName::Internal(name) if topology.reader_partitioned.contains(name) => {}
                    TopicName::Internal(name) => match repartition.get(name) {
                        Some(&n) => counts.push((topic.resolve(application_id), n)),
                        None => known = false,
                    },
                }
            }
            if !known {
                continue;
            }
            let n = counts.iter().map(|(_, n)| *n).max().unwrap_or(1);
            for topic in &sub.source_topics {
                if let TopicName::Internal(name) = topic {
                    if topology.reader_partitioned.contains(name) {
                        repartition.insert(name.clone(), n);
                    }
                }
            }
            if !sub.stores.is_empty() && counts.iter().any(|(_, c)| *c != n) {
                return Err(format!(
                    "the source topics of sub-topology {} are joined but not co-partitioned: {}",
                    sub.id,
                    counts
                        .iter()
                        .map(|(t, c)| format!("{t} has {c} partitions"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            tasks[sub.id as usize] = Some(n);
            for sink in &sub.sink_topics {
                if let TopicName::Internal(name) = sink {
                    if !topology.reader_partitioned.contains(name) {
                        repartition.insert(name.clone(), n);
                    }
                }
            }
            changed = true;
        }
        if !changed {
            break;
        }
    }
    let tasks: Vec<i32> = tasks
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            t.ok_or_else(|| format!("sub-topology {i} reads a repartition topic nothing writes"))
        })
        .collect::<Result<_, _>>()?;
    let mut internal_topics: Vec<InternalTopic> = repartition
        .iter()
        .map(|(name, &partitions)| InternalTopic {
            name: TopicName::Internal(name.clone()).resolve(application_id),
            partitions,
            configs: vec![("cleanup.policy".into(), "delete".into())],
        })
        .collect();
    for spec in topology.stores().filter(|s| s.logged) {
        let sub = topology
            .subtopology_of_store(&spec.name)
            .ok_or_else(|| format!("state store {} is used by no processor", spec.name))?;
        internal_topics.push(InternalTopic {
            name: spec.changelog_topic(application_id),
            partitions: tasks[sub.id as usize],
            configs: spec.changelog_configs(),
        });
    }
    Ok(Plan {
        tasks,
        internal_topics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Materialized, StreamsBuilder};

    #[test]
    fn repartition_and_changelog_topics_take_the_writers_task_count() {
        let b = StreamsBuilder::new();
        let orders = b.stream::<String, i64>("orders");
        orders
            .select_key(|_, v| v.to_string())
            .group_by_key()
            .count(Materialized::named("by-amount"))
            .to_stream()
            .to("out");
        let topology = b.build();
        let counts = BTreeMap::from([("orders".to_string(), 6)]);
        let plan = plan(&topology, "app", &counts).unwrap();
        assert_eq!(plan.tasks, vec![6, 6]);
        let names: Vec<(&str, i32)> = plan
            .internal_topics
            .iter()
            .map(|t| (t.name.as_str(), t.partitions))
            .collect();
        assert_eq!(
            names,
            vec![
                ("app-by-amount-repartition", 6),
                ("app-by-amount-changelog", 6)
            ]
        );
        assert!(plan.internal_topics[1]
            .configs
            .contains(&("cleanup.policy".into(), "compact".into())));
        assert!(super::plan(&topology, "app", &BTreeMap::new())
            .unwrap_err()
            .contains("orders does not exist"));
    }

    #[test]
    fn foreign_key_join_topics_take_the_partition_count_of_the_side_that_reads_them() {
        let b = StreamsBuilder::new();
        let orders = b.table::<String, String>("orders", Materialized::default());
        let customers = b.table::<String, String>("customers", Materialized::default());
        orders
            .join_foreign_key(&customers, |o| o.clone(), |o, c| format!("{o}{c}"))
            .to_stream()
            .to("out");
        let topology = b.build();
        let counts = BTreeMap::from([("orders".to_string(), 6), ("customers".to_string(), 3)]);
        let plan = plan(&topology, "app", &counts).unwrap();
        let partitions = |suffix: &str| {
            plan.internal_topics
                .iter()
                .find(|t| t.name.ends_with(suffix))
                .unwrap_or_else(|| panic!("no topic ending in {suffix}: {plan:?}"))
                .partitions
        };
        assert_eq!(partitions("subscription-registration-repartition"), 3);
        assert_eq!(partitions("subscription-response-repartition"), 6);
    }

    #[test]
    fn joined_topics_must_be_co_partitioned() {
        let b = StreamsBuilder::new();
        let table = b.table::<String, String>("customers", Materialized::default());
        b.stream::<String, String>("orders")
            .join(&table, |o, c| format!("{o}{c}"))
            .to("out");
        let counts = BTreeMap::from([("orders".to_string(), 6), ("customers".to_string(), 3)]);
        let err = plan(&b.build(), "app", &counts).unwrap_err();
        assert!(err.contains("not co-partitioned"), "{err}");
    }
}
