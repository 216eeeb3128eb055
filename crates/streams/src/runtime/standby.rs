//! Standby replicas (`num.standby.replicas`): copies of other instances' task stores, kept current by following
//! their changelogs, so that a task moving here replays only the tail it missed.
//!
//! Which instance keeps which standbys is computed the same way on every instance from the group's membership
//! (DescribeGroups: each member's assignment, and its instance id in the subscription's user data): for each
//! stateful task, the `num.standby.replicas` instances that follow the task's active instance in instance-id
//! order. The standby thread recomputes that every `poll.ms`·10, follows the changelog partitions of its
//! standbys with a consumer of its own, and applies what it reads under the standby map's lock, so a stream
//! thread that takes a standby over (removing it under the same lock) owns stores nobody else writes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use strom_client::admin::Admin;
use strom_client::consumer::{Consumer, TopicPartition};

use super::{state_dir, thread::open_store, MemberInfo, Shared};
use crate::processor::TaskId;
use crate::store::Store;

/// A standby copy of a task's logged stores, and the changelog offsets they hold everything below.
pub(crate) struct StandbyTask {
    pub stores: HashMap<String, Arc<Store>>,
    /// Changelog topic → next offset to apply.
    pub positions: BTreeMap<String, i64>,
}

/// The tasks `me` keeps standbys of: for each task, the `replicas` instances after its active one in id order.
pub(crate) fn standby_tasks(
    active: &BTreeMap<TaskId, String>,
    instances: &BTreeSet<String>,
    me: &str,
    replicas: usize,
) -> BTreeSet<TaskId> {
    let ring: Vec<&String> = instances.iter().collect();
    let mut mine = BTreeSet::new();
    for (task, owner) in active {
        let Some(at) = ring.iter().position(|i| *i == owner) else {
            continue;
        };
        let followers = (1..ring.len())
            .take(replicas)
            .map(|step| ring[(at + step) % ring.len()]);
        if followers.into_iter().any(|i| i == me) {
            mine.insert(*task);
        }
    }
    mine
}

pub(crate) async fn run(shared: Arc<Shared>) -> Result<(), String> {
    let config = &shared.config;
    let admin = Admin::connect(&config.bootstrap_servers)
        .await
        .map_err(|e| format!("standby thread: {e}"))?;
    let mut consumer = super::changelog_reader(
        config,
        crate::config::ConsumerKind::Restore,
        format!("{}-StandbyThread", config.client_id),
    )
    .await?;
    let app = config.application_id.clone();
    let stateful: BTreeMap<u32, Vec<String>> = shared
        .topology
        .subtopologies()
        .iter()
        .map(|s| {
            let logged = s
                .stores
                .iter()
                .filter(|n| shared.topology.store(n).is_some_and(|spec| spec.logged))
                .cloned()
                .collect::<Vec<_>>();
            (s.id, logged)
        })
        .filter(|(_, stores)| !stores.is_empty())
        .collect();
    let mut next_check = tokio::time::Instant::now();
    while !shared.closing() {
        if tokio::time::Instant::now() >= next_check {
            next_check = tokio::time::Instant::now() + config.poll * 10;
            match wanted(&shared, &admin, &stateful).await {
                Ok((wanted, active_here)) => {
                    // Standbys only save restore time: a failure here costs a later restore, never state.
                    if let Err(e) =
                        reconcile(&shared, &mut consumer, &wanted, &active_here, &stateful).await
                    {
                        tracing::warn!(error = %e, "standby tasks not updated");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "standby assignment unknown for now"),
            }
        }
        let records = match consumer.poll(config.poll).await {
            Ok(records) => records,
            Err(e) if e.is_retriable() => {
                tracing::warn!(error = %e, "standby poll failed; retrying");
                tokio::time::sleep(super::thread::RETRY_BACKOFF).await;
                continue;
            }
            Err(e) => return Err(format!("standby consumer: {e}")),
        };
        if records.is_empty() {
            continue;
        }
        let mut standbys = shared.standbys.lock();
        for r in records {
            let task = TaskId {
                subtopology: changelog_subtopology(&shared, &app, &r.topic).unwrap_or(u32::MAX),
                partition: r.partition,
            };
            let Some(standby) = standbys.get_mut(&task) else {
                continue;
            };
            let store = shared
                .topology
                .stores()
                .find(|s| s.changelog_topic(&app) == *r.topic)
                .and_then(|s| standby.stores.get(&s.name));
            if let (Some(store), Some(key)) = (store, r.key) {
                store.restore(key, r.value);
                standby.positions.insert(r.topic.to_string(), r.offset + 1);
            }
        }
    }
    Ok(())
}

fn changelog_subtopology(shared: &Shared, app: &str, topic: &str) -> Option<u32> {
    let spec = shared
        .topology
        .stores()
        .find(|s| s.changelog_topic(app) == topic)?;
    shared
        .topology
        .subtopology_of_store(&spec.name)
        .map(|s| s.id)
}

/// The standby tasks this instance should keep, and the tasks the group assigned to it, from the group's current
/// membership.
async fn wanted(
    shared: &Shared,
    admin: &Admin,
    stateful: &BTreeMap<u32, Vec<String>>,
) -> Result<(BTreeSet<TaskId>, BTreeSet<TaskId>), String> {
    let app = &shared.config.application_id;
    let group = admin.describe_group(app).await.map_err(|e| e.to_string())?;
    // During a rebalance members show no assignment: keep everything until the group is stable again.
    if group.state != "Stable" {
        return Err(format!("group {app} is {}", group.state));
    }
    let mut active = BTreeMap::new();
    let mut instances = BTreeSet::new();
    for member in &group.members {
        let Some(info) = member.user_data.as_deref().and_then(MemberInfo::decode) else {
            continue;
        };
        instances.insert(info.instance.clone());
        for assigned in &member.assignment {
            let Some(sub) = shared.topology.subtopology_of(app, &assigned.topic) else {
                continue;
            };
            if !stateful.contains_key(&sub.id) {
                continue;
            }
            for &partition in &assigned.partitions {
                active.insert(
                    TaskId {
                        subtopology: sub.id,
                        partition,
                    },
                    info.instance.clone(),
                );
            }
        }
    }
    let mut tasks = standby_tasks(
        &active,
        &instances,
        &shared.instance_id,
        shared.config.num_standby_replicas,
    );
    let active_here: BTreeSet<TaskId> = active
        .iter()
        .filter(|(_, i)| **i == shared.instance_id)
        .map(|(t, _)| *t)
        .collect();
    // A task active here needs no new standby here.
    tasks.retain(|t| !active_here.contains(t));
    Ok((tasks, active_here))
}

/// Drops standbys no longer wanted, creates the new ones, and points the consumer at their changelogs. A standby
/// of a task the group just gave this instance is kept (and followed) until a stream thread takes it over: the
/// group may show the new assignment before the thread has acted on it.
async fn reconcile(
    shared: &Shared,
    consumer: &mut Consumer,
    wanted: &BTreeSet<TaskId>,
    active_here: &BTreeSet<TaskId>,
    stateful: &BTreeMap<u32, Vec<String>>,
) -> Result<(), String> {
    let config = &shared.config;
    let app = &config.application_id;
    let mut partitions = Vec::new();
    let mut seeks = Vec::new();
    {
        let owned: BTreeSet<TaskId> = shared.owners.lock().keys().copied().collect();
        let mut standbys = shared.standbys.lock();
        standbys.retain(|task, _| wanted.contains(task) || active_here.contains(task));
        let kept: Vec<TaskId> = standbys.keys().copied().collect();
        for task in wanted
            .iter()
            .chain(kept.iter().filter(|t| !wanted.contains(t)))
        {
            let names = &stateful[&task.subtopology];
            if !standbys.contains_key(task) {
                // A task a stream thread of this instance owns keeps its directory to itself.
                if owned.contains(task) {
                    continue;
                }
                // A persistent store closed cleanly here is reused from its checkpoint; any other is wiped.
                let dir = state_dir::task_dir(&config.state_dir, app, *task);
                let checkpoint = state_dir::take_checkpoint(&dir);
                let mut standby = StandbyTask {
                    stores: HashMap::new(),
                    positions: BTreeMap::new(),
                };
                for name in names {
                    let spec = shared
                        .topology
                        .store(name)
                        .expect("a store of the topology");
                    let store = open_store(&dir, spec, &checkpoint, app)?;
                    let topic = spec.changelog_topic(app);
                    if let (true, Some(&at)) = (spec.persistent, checkpoint.get(&topic)) {
                        standby.positions.insert(topic, at);
                    }
                    standby.stores.insert(name.clone(), store);
                }
                standbys.insert(*task, standby);
            }
            let standby = standbys.get_mut(task).expect("just ensured");
            for name in names {
                let spec = shared
                    .topology
                    .store(name)
                    .expect("a store of the topology");
                let tp = TopicPartition::new(spec.changelog_topic(app), task.partition);
                let at = *standby.positions.entry(tp.topic.clone()).or_insert(0);
                seeks.push((tp.clone(), at));
                partitions.push(tp);
            }
        }
    }
    let before: BTreeSet<TopicPartition> = consumer.assignment().into_iter().collect();
    consumer
        .assign(partitions.clone())
        .await
        .map_err(|e| format!("standby consumer: {e}"))?;
    for (tp, at) in seeks {
        // Only partitions new to the consumer: the others continue from where it is.
        if !before.contains(&tp) {
            consumer
                .seek(&tp, at)
                .map_err(|e| format!("standby consumer: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_task_has_its_standbys_on_the_instances_after_its_owner() {
        let task = |p| TaskId {
            subtopology: 1,
            partition: p,
        };
        let active: BTreeMap<TaskId, String> = [(task(0), "a"), (task(1), "b"), (task(2), "c")]
            .into_iter()
            .map(|(t, i)| (t, i.to_string()))
            .collect();
        let instances: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            standby_tasks(&active, &instances, "b", 1),
            BTreeSet::from([task(0)])
        );
        assert_eq!(
            standby_tasks(&active, &instances, "a", 1),
            BTreeSet::from([task(2)])
        );
        assert_eq!(
            standby_tasks(&active, &instances, "a", 2),
            BTreeSet::from([task(1), task(2)])
        );
        // More replicas than other instances: every other instance, never the owner.
        assert_eq!(
            standby_tasks(&active, &instances, "a", 5),
            BTreeSet::from([task(1), task(2)])
        );
        let alone: BTreeSet<String> = ["a"].iter().map(|s| s.to_string()).collect();
        assert!(standby_tasks(&active, &alone, "a", 1).is_empty());
    }
}
