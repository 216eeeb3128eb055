//! A stream thread: one group member (its own consumer and producer) running the tasks of the partitions it is
//! assigned, on an OS thread of its own with a single-threaded tokio runtime (tasks are not `Send`: their
//! processors never leave the thread that built them).
//!
//! The loop: poll; when the assignment changed, close the tasks of partitions that left and create, restore
//! and initialize those of new partitions; process each task's records (by timestamp across its partitions,
//! in offset order within each); send what the tasks wrote; fire wall-clock punctuations; commit every
//! `commit.interval.ms` and before the consumer rejoins the group.
//!
//! A commit (at-least-once) is: send everything buffered and wait until the broker acknowledged all of it
//! (outputs and changelogs), flush the stores, then commit the next input offsets, with the task's stream time
//! and its changelogs' end offsets as the commit's metadata. A crash between two commits loses nothing: the
//! input since the last commit is processed again, so its outputs may appear twice (the duplicates are bounded
//! by what one commit interval processes: a large poll is committed in between, every thousand records, when a
//! commit is due). The state does not count it twice: a restarted task replays its changelogs only up to the
//! committed offsets (the updates after them came from the input being processed again), and resumes at the
//! committed stream time, so windows that had closed stay closed. (Kafka Streams' at-least-once restores to
//! the changelogs' ends, so its aggregates can count replayed records twice.)
//!
//! Under `processing.guarantee=exactly_once_v2` the thread's producer is transactional (`transactional.id` =
//! `<application.id>-<process id>-<thread>`, the process id kept in the state directory) and its consumers read
//! committed records only. A commit is one transaction: what the tasks wrote since the last commit (outputs,
//! repartition records, changelogs) and their input offsets (`send_offsets_to_transaction`, checked against the
//! group generation) commit together, or not at all. When a commit fails (a record not delivered, the group moved
//! on, the producer fenced) the transaction is aborted and every task is revived: its stores restored from the
//! changelogs (read committed: exactly the committed updates) and its inputs rewound to the committed offsets, so
//! the aborted work is done again once. A task error stops the thread as at-least-once does; closing its producer
//! aborts the open transaction. A crash leaves the transaction open; the restarted instance's producer (same
//! transactional.id) aborts it before it writes, and its tasks restore from the committed changelogs.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use strom_client::consumer::{
    Consumer, ConsumerConfig, ConsumerRecord, OffsetAndMetadata, OffsetReset, TopicPartition,
};
use strom_client::{Acks, DeliveryReport, Producer, ProducerConfig, ProducerRecord};
use tokio::time::Instant;

use super::state_dir;
use super::Shared;
use crate::config::{DeserializationHandler, ProcessingGuarantee};
use crate::processor::{PunctuationType, TaskId};
use crate::record::{OutputRecord, PartitionChoice, RawRecord};
use crate::store::{InMemoryBytes, PersistentBytes, Store, StoreSpec};
use crate::task::{Task, TaskError};
use parking_lot::Mutex;

/// Opens a store of a task: in memory (empty), or on disk under `dir`, wiped first unless `checkpoint` vouches
/// for its contents.
pub(crate) fn open_store(
    dir: &std::path::Path,
    spec: &StoreSpec,
    checkpoint: &BTreeMap<String, i64>,
    application_id: &str,
) -> Result<Arc<Store>, String> {
    if !spec.persistent {
        return Ok(Store::new(spec.clone(), Box::new(InMemoryBytes::default())));
    }
    let store_dir = dir.join(&spec.name);
    if spec.logged && !checkpoint.contains_key(&spec.changelog_topic(application_id)) {
        // Unknown contents (a crash, or a first start): start empty and restore everything.
        if store_dir.exists() {
            std::fs::remove_dir_all(&store_dir)
                .map_err(|e| format!("wipe {}: {e}", store_dir.display()))?;
        }
    }
    Ok(Store::new(
        spec.clone(),
        Box::new(PersistentBytes::open(&store_dir)?),
    ))
}

/// Why a stream thread stopped.
pub(crate) type Fatal = String;

struct Running {
    task: Task,
    /// The next offset to commit per input partition: the committed one at start, then after each record.
    offsets: BTreeMap<TopicPartition, i64>,
    /// The end offset of each of the task's changelog partitions as far as this thread knows it (after restore,
    /// then from acknowledged writes): what a commit vouches the stores hold.
    changelog_ends: BTreeMap<String, i64>,
}

/// What a task commits with its input offsets (the offset commit's metadata, JSON): its stream time, and the
/// changelog offsets its stores held at the commit. A restore replays changelogs only up to those offsets: what
/// follows them came from input that will be processed again, and replaying it too would count it twice.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct CommitMetadata {
    stream_time: i64,
    changelogs: BTreeMap<String, i64>,
}

/// How long a thread waits before it polls again after a retriable failure.
pub(crate) const RETRY_BACKOFF: std::time::Duration = std::time::Duration::from_millis(500);

/// Consecutive failed commits after which a thread stops with an error.
const MAX_FAILED_COMMITS: u32 = 10;

/// How long a thread waits for another thread of its instance to finish closing a task it takes over.
const TAKEOVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Records processed between two checks of whether a commit is due (a poll can return a large backlog).
const COMMIT_CHECK_RECORDS: usize = 1_000;

pub(crate) struct StreamThread {
    shared: Arc<Shared>,
    index: usize,
    consumer: Consumer,
    restorer: Consumer,
    producer: Producer,
    tasks: BTreeMap<TaskId, Running>,
    assignment: BTreeSet<TopicPartition>,
    /// Deliveries not yet known to have succeeded.
    /// What became of everything the tasks wrote since the thread started.
    report: Arc<DeliveryReport>,
    /// Something was processed since the last commit.
    dirty: bool,
    next_commit: Instant,
    /// Commits that failed since the last one that succeeded.
    failed_commits: u32,
    /// Offsets of acknowledged changelog writes since the last commit: (changelog, partition) → next offset.
    acknowledged: BTreeMap<TopicPartition, i64>,
    /// processing.guarantee=exactly_once_v2: the producer is transactional.
    eos: bool,
    /// Exactly-once: a transaction is open on the producer.
    in_transaction: bool,
    /// Exactly-once: how many times the tasks were revived after an aborted transaction.
    revivals: u64,
    /// Exactly-once: why the open transaction cannot commit (a record the producer refused); the next commit
    /// aborts it.
    doomed: Option<String>,
}

/// How long the coordinator keeps a stream thread's transaction open without a commit: Kafka Streams' 10 s under
/// exactly-once, so a crashed instance that does not come back holds read_committed readers for no longer.
const EOS_TRANSACTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl StreamThread {
    pub async fn start(shared: Arc<Shared>, index: usize) -> Result<Self, Fatal> {
        let config = &shared.config;
        let name = format!("{}-StreamThread-{}", config.client_id, index + 1);
        let mut cc = ConsumerConfig::new(&config.bootstrap_servers);
        cc.client_id = format!("{name}-consumer");
        cc.auto_offset_reset = OffsetReset::Earliest;
        cc.session_timeout = config.session_timeout;
        cc.heartbeat_interval = config.heartbeat_interval;
        cc.fetch_max_wait = config.poll.min(cc.fetch_max_wait);
        config
            .clients
            .apply_to_consumer(crate::config::ConsumerKind::Main, &mut cc)
            .map_err(|e| format!("{name}: {e}"))?;
        // What the runtime needs, over any setting: it is the group, and it commits itself.
        cc.group_id = Some(config.application_id.clone());
        cc.enable_auto_commit = false;
        cc.allow_auto_create_topics = false;
        // Poll returns before each rejoin, so the loop commits before partitions can move.
        cc.return_before_rejoin = true;
        cc.subscription_user_data = Some(
            super::MemberInfo {
                instance: shared.instance_id.clone(),
                server: config.application_server.clone(),
            }
            .encode(),
        );
        let eos = config.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2;
        if eos {
            cc.isolation_level = strom_client::consumer::IsolationLevel::ReadCommitted;
        }
        let mut consumer = Consumer::new(cc)
            .await
            .map_err(|e| format!("{name}: consumer: {e}"))?;
        consumer
            .subscribe(&shared.topology.source_topics(&config.application_id))
            .map_err(|e| format!("{name}: subscribe: {e}"))?;
        let restorer = super::changelog_reader(
            config,
            crate::config::ConsumerKind::Restore,
            format!("{name}-restore-consumer"),
        )
        .await
        .map_err(|e| format!("{name}: restore consumer: {e}"))?;
        let producer = new_producer(&shared, index).await?;
        Ok(Self {
            shared,
            index,
            consumer,
            restorer,
            producer,
            tasks: BTreeMap::new(),
            assignment: BTreeSet::new(),
            report: DeliveryReport::new(),
            dirty: false,
            next_commit: Instant::now(),
            failed_commits: 0,
            acknowledged: BTreeMap::new(),
            eos,
            in_transaction: false,
            revivals: 0,
            doomed: None,
        })
    }

    /// Runs until the application closes, or a fatal error.
    pub async fn run(mut self) -> Result<(), Fatal> {
        let result = self.run_loop().await;
        if result.is_ok() {
            if let Err(e) = self.commit().await {
                tracing::warn!(error = %e, "final commit failed");
            }
        }
        // Under exactly-once a store holds what the last commit vouches for only if nothing followed it.
        let clean = result.is_ok() && !(self.eos && self.dirty);
        let tasks: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in tasks {
            self.close_task(id, clean).await;
        }
        if let Err(e) = self.consumer.close().await {
            tracing::debug!(error = %e, "leaving the group failed");
        }
        self.producer.close().await;
        result
    }

    async fn run_loop(&mut self) -> Result<(), Fatal> {
        let interval = self.shared.config.effective_commit_interval();
        self.next_commit = Instant::now() + interval;
        while !self.shared.closing() {
            if self.consumer.rebalance_pending() {
                // Hand over what was processed before the partitions may move.
                self.commit().await?;
            }
            let records = match self.consumer.poll(self.shared.config.poll).await {
                Ok(records) => records,
                // A broker restarting or a leader moving: the consumer finds its way again.
                Err(e) if e.is_retriable() => {
                    tracing::warn!(thread = self.index + 1, error = %e, "poll failed; retrying");
                    tokio::time::sleep(RETRY_BACKOFF).await;
                    continue;
                }
                Err(e) => return Err(format!("poll: {e}")),
            };
            let assignment: BTreeSet<TopicPartition> =
                self.consumer.assignment().into_iter().collect();
            if assignment != self.assignment {
                self.shared.set_thread_ready(self.index, false);
                self.reassign(assignment).await?;
            }
            // Rebalancing while the group is (the poll returned before rejoining), running once tasks are open.
            self.shared
                .set_thread_ready(self.index, !self.consumer.rebalance_pending());
            self.process(records).await?;
            let now = now_ms();
            for running in self.tasks.values_mut() {
                running
                    .task
                    .punctuate(PunctuationType::WallClockTime, now)
                    .map_err(|e| e.to_string())?;
            }
            self.send_outputs().await?;
            self.commit_if_due().await?;
        }
        Ok(())
    }

    async fn commit_if_due(&mut self) -> Result<(), Fatal> {
        if Instant::now() >= self.next_commit {
            self.commit().await?;
            self.next_commit = Instant::now() + self.shared.config.effective_commit_interval();
        }
        Ok(())
    }

    /// Closes the tasks of partitions that left, creates and restores those of new partitions.
    async fn reassign(&mut self, assignment: BTreeSet<TopicPartition>) -> Result<(), Fatal> {
        let app = &self.shared.config.application_id;
        let wanted: BTreeSet<TaskId> = assignment
            .iter()
            .filter_map(|tp| {
                let sub = self.shared.topology.subtopology_of(app, &tp.topic)?;
                Some(TaskId {
                    subtopology: sub.id,
                    partition: tp.partition,
                })
            })
            .collect();
        let gone: Vec<TaskId> = self
            .tasks
            .keys()
            .filter(|id| !wanted.contains(id))
            .copied()
            .collect();
        if !gone.is_empty() {
            if self.eos {
                // Their work commits in the transaction before they leave (or is aborted and undone).
                self.commit().await?;
            } else {
                // Outputs of tasks that leave must not be lost with them.
                self.flush_outputs().await?;
            }
        }
        // A task that leaves with work since the last commit (the commit before the rejoin failed) is closed
        // unclean: no checkpoint, no standby; its next owner restores from the commit.
        let clean = !self.dirty;
        for id in gone {
            self.close_task(id, clean).await;
        }
        for id in wanted {
            if !self.tasks.contains_key(&id) {
                self.open_task(id).await?;
            }
        }
        tracing::info!(
            thread = self.index + 1,
            tasks = ?self.tasks.keys().map(ToString::to_string).collect::<Vec<_>>(),
            "assignment"
        );
        self.assignment = assignment;
        Ok(())
    }

    async fn open_task(&mut self, id: TaskId) -> Result<(), Fatal> {
        self.take_ownership(id).await?;
        let result = self.open_owned_task(id).await;
        if result.is_err() {
            self.shared.owners.lock().remove(&id);
        }
        result
    }

    /// Waits until no other thread of this instance owns task `id` (one moving here is still being closed),
    /// then owns it.
    async fn take_ownership(&self, id: TaskId) -> Result<(), Fatal> {
        let deadline = Instant::now() + TAKEOVER_TIMEOUT;
        loop {
            {
                let mut owners = self.shared.owners.lock();
                match owners.get(&id) {
                    Some(&other) if other != self.index => {}
                    _ => {
                        owners.insert(id, self.index);
                        return Ok(());
                    }
                }
            }
            if self.shared.closing() || Instant::now() >= deadline {
                return Err(format!("task {id}: still owned by another stream thread"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    async fn open_owned_task(&mut self, id: TaskId) -> Result<(), Fatal> {
        let shared = self.shared.clone();
        let config = &shared.config;
        let dir = state_dir::task_dir(&config.state_dir, &config.application_id, id);
        let mut checkpoint = state_dir::take_checkpoint(&dir);
        let app = shared.app.clone();
        let (committed, limits) = self.committed_state(id).await?;
        // A standby of this task hands over its stores, caught up to its positions: only the rest is replayed.
        // Not if it read past what the last commit vouches for: those updates will be made again.
        let standby = shared.standbys.lock().remove(&id).filter(|s| {
            s.positions
                .iter()
                .all(|(topic, at)| limits.get(topic).is_none_or(|limit| at <= limit))
        });
        if checkpoint
            .iter()
            .any(|(topic, at)| limits.get(topic).is_some_and(|limit| at > limit))
        {
            checkpoint.clear();
        }
        let from_standby = standby.is_some();
        let reuse = Mutex::new(match standby {
            Some(s) => {
                checkpoint = s.positions;
                s.stores
            }
            None => HashMap::new(),
        });
        let stores = |spec: &StoreSpec, _: TaskId| -> Result<Arc<Store>, String> {
            if let Some(store) = reuse.lock().remove(&spec.name) {
                return Ok(store);
            }
            open_store(&dir, spec, &checkpoint, &app)
        };
        let mut task = Task::new(&shared.topology, id, &app, &stores, &shared.globals)
            .map_err(|e| e.to_string())?;
        let (restored, changelog_ends) = self.restore(&task, &checkpoint, &limits).await?;
        if let Some(stream_time) = committed.as_ref().map(|c| c.stream_time) {
            task.set_stream_time(stream_time);
        }
        if from_standby {
            tracing::info!(task = %id, restored, "task taken over from its standby");
        }
        shared
            .restored_records
            .fetch_add(restored, std::sync::atomic::Ordering::Relaxed);
        task.init(now_ms());
        for (name, store) in task.own_stores() {
            shared.registry.add(name, id.partition, store.clone());
        }
        tracing::info!(task = %id, restored, "task started");
        let offsets = self.committed_offsets(id).await?;
        self.tasks.insert(
            id,
            Running {
                task,
                offsets,
                changelog_ends,
            },
        );
        Ok(())
    }

    /// The input partitions of task `id` in this thread's assignment.
    fn inputs_of(&self, id: TaskId) -> Vec<TopicPartition> {
        let app = &self.shared.config.application_id;
        self.consumer
            .assignment()
            .into_iter()
            .filter(|tp| {
                tp.partition == id.partition
                    && self
                        .shared
                        .topology
                        .subtopology_of(app, &tp.topic)
                        .is_some_and(|s| s.id == id.subtopology)
            })
            .collect()
    }

    /// What the task's last commit recorded, and how far each changelog may be replayed: to the committed
    /// offsets; to the end when the task has no commit (never committed, or the group's offsets expired: the
    /// changelog is then the only copy of the state) or the commit carries no metadata (another committer).
    async fn committed_state(
        &self,
        id: TaskId,
    ) -> Result<(Option<CommitMetadata>, BTreeMap<String, i64>), Fatal> {
        let committed = self
            .consumer
            .committed_with_metadata(&self.inputs_of(id))
            .await
            .map_err(|e| format!("committed offsets of task {id}: {e}"))?;
        let metadata = committed
            .values()
            .flatten()
            .find_map(|c| serde_json::from_str::<CommitMetadata>(&c.metadata).ok());
        // Under exactly-once the changelogs hold, read committed, exactly what the committed offsets vouch for:
        // they are replayed to their ends.
        let limits = match &metadata {
            Some(m) if !self.eos => m.changelogs.clone(),
            _ => BTreeMap::new(),
        };
        Ok((metadata, limits))
    }

    /// The committed input offsets of task `id` (the positions a commit repeats until records are processed).
    async fn committed_offsets(&self, id: TaskId) -> Result<BTreeMap<TopicPartition, i64>, Fatal> {
        let committed = self
            .consumer
            .committed(&self.inputs_of(id))
            .await
            .map_err(|e| format!("committed offsets of task {id}: {e}"))?;
        Ok(committed
            .into_iter()
            .filter_map(|(tp, o)| o.map(|o| (tp, o)))
            .collect())
    }

    /// Replays each logged store's changelog partition (from the checkpoint, if any) up to its end.
    async fn restore(
        &mut self,
        task: &Task,
        checkpoint: &BTreeMap<String, i64>,
        limits: &BTreeMap<String, i64>,
    ) -> Result<(u64, BTreeMap<String, i64>), Fatal> {
        let mut ends = BTreeMap::new();
        let app = &self.shared.config.application_id;
        let mut restored = 0;
        for store in task.own_stores().map(|(_, s)| s) {
            let spec = store.spec();
            if !spec.logged {
                continue;
            }
            let tp = TopicPartition::new(spec.changelog_topic(app), task.id().partition);
            let fail = |e: strom_client::Error| format!("restoring {} from {tp}: {e}", spec.name);
            self.restorer.assign([tp.clone()]).await.map_err(fail)?;
            self.restorer
                .seek_to_end(std::slice::from_ref(&tp))
                .await
                .map_err(fail)?;
            let end = self.restorer.position(&tp).unwrap_or(0);
            let end = limits.get(&tp.topic).map_or(end, |limit| end.min(*limit));
            ends.insert(tp.topic.clone(), end);
            match checkpoint.get(&tp.topic) {
                Some(&offset) => self.restorer.seek(&tp, offset).map_err(fail)?,
                _ => self
                    .restorer
                    .seek_to_beginning(std::slice::from_ref(&tp))
                    .await
                    .map_err(fail)?,
            }
            while self.restorer.position(&tp).is_some_and(|p| p < end) {
                if self.shared.closing() {
                    return Err(format!("closed while restoring {}", spec.name));
                }
                let records = match self
                    .restorer
                    .poll(std::time::Duration::from_millis(200))
                    .await
                {
                    Ok(records) => records,
                    Err(e) if e.is_retriable() => {
                        tracing::warn!(error = %e, "restore poll failed; retrying");
                        tokio::time::sleep(RETRY_BACKOFF).await;
                        continue;
                    }
                    Err(e) => return Err(fail(e)),
                };
                for r in records {
                    if let (Some(key), true) = (r.key, r.offset < end) {
                        store.restore(key, r.value);
                        restored += 1;
                    }
                }
            }
        }
        self.restorer
            .assign(Vec::new())
            .await
            .map_err(|e| format!("restore consumer: {e}"))?;
        Ok((restored, ends))
    }

    /// Closes a task and gives up its ownership. Clean: its persistent stores get a checkpoint at the
    /// changelogs' ends, and with standbys on, its stores stay as a standby.
    async fn close_task(&mut self, id: TaskId, clean: bool) {
        self.close_owned_task(id, clean).await;
        self.shared.owners.lock().remove(&id);
    }

    async fn close_owned_task(&mut self, id: TaskId, clean: bool) {
        let Some(mut running) = self.tasks.remove(&id) else {
            return;
        };
        running.task.close();
        for (name, _) in running.task.own_stores() {
            self.shared.registry.remove(name, id.partition);
        }
        let persistent = running
            .task
            .own_stores()
            .map(|(_, s)| s)
            .any(|s| s.spec().persistent);
        let standby = self.shared.config.num_standby_replicas > 0
            && running.task.own_stores().any(|(_, s)| s.spec().logged);
        if !clean || !(persistent || standby) || running.task.flush().is_err() {
            return;
        }
        let config = &self.shared.config;
        let mut offsets = BTreeMap::new();
        for store in running.task.own_stores().map(|(_, s)| s) {
            let spec = store.spec();
            if !spec.logged {
                continue;
            }
            let tp =
                TopicPartition::new(spec.changelog_topic(&config.application_id), id.partition);
            if self.restorer.assign([tp.clone()]).await.is_err()
                || self
                    .restorer
                    .seek_to_end(std::slice::from_ref(&tp))
                    .await
                    .is_err()
            {
                return;
            }
            if let Some(end) = self.restorer.position(&tp) {
                offsets.insert(tp.topic, end);
            }
        }
        let _ = self.restorer.assign(Vec::new()).await;
        if standby {
            // Kept as a standby, caught up to the changelogs' ends; the standby thread drops it if this instance
            // is not one of the task's standbys.
            let stores = running
                .task
                .own_stores()
                .map(|(n, s)| (n.clone(), s.clone()))
                .collect();
            self.shared.standbys.lock().insert(
                id,
                super::standby::StandbyTask {
                    stores,
                    positions: offsets.clone(),
                },
            );
        }
        if persistent {
            let persistent_offsets: BTreeMap<String, i64> = running
                .task
                .own_stores()
                .filter(|(_, s)| s.spec().persistent)
                .filter_map(|(_, s)| {
                    let topic = s.spec().changelog_topic(&config.application_id);
                    offsets.get(&topic).map(|o| (topic, *o))
                })
                .collect();
            let dir = state_dir::task_dir(&config.state_dir, &config.application_id, id);
            if let Err(e) = state_dir::write_checkpoint(&dir, id.partition, &persistent_offsets) {
                tracing::warn!(task = %id, error = %e, "cannot write the checkpoint; the next start restores in full");
            }
        }
    }

    /// Processes a poll's records, committing in between when a commit falls due (a poll may return a backlog).
    async fn process(&mut self, records: Vec<ConsumerRecord>) -> Result<(), Fatal> {
        let revivals = self.revivals;
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let chunk: Vec<ConsumerRecord> = records.by_ref().take(COMMIT_CHECK_RECORDS).collect();
            self.process_chunk(chunk).await?;
            self.commit_if_due().await?;
            if self.revivals != revivals {
                // The tasks went back to their last commit and the consumer with them: the rest of this poll
                // comes again.
                break;
            }
        }
        Ok(())
    }

    /// Processes records: per task, by timestamp across its partitions, in offset order within each.
    async fn process_chunk(&mut self, records: Vec<ConsumerRecord>) -> Result<(), Fatal> {
        let app = self.shared.config.application_id.clone();
        // The consumer hands out each partition's records together and in order: one queue per run of a
        // partition, its task looked up once.
        let mut by_task: BTreeMap<TaskId, Vec<(TopicPartition, VecDeque<ConsumerRecord>)>> =
            BTreeMap::new();
        let mut last: Option<(TaskId, usize)> = None;
        for r in records {
            if let Some((id, at)) = last {
                let (tp, queue) = &mut by_task.get_mut(&id).expect("grouped")[at];
                if tp.partition == r.partition && *tp.topic == *r.topic {
                    queue.push_back(r);
                    continue;
                }
            }
            let Some(sub) = self.shared.topology.subtopology_of(&app, &r.topic) else {
                continue;
            };
            let id = TaskId {
                subtopology: sub.id,
                partition: r.partition,
            };
            let tp = TopicPartition::new(&*r.topic, r.partition);
            let queues = by_task.entry(id).or_default();
            let at = match queues.iter().position(|(t, _)| *t == tp) {
                Some(at) => at,
                None => {
                    queues.push((tp, VecDeque::new()));
                    queues.len() - 1
                }
            };
            queues[at].1.push_back(r);
            last = Some((id, at));
        }
        let lenient =
            self.shared.config.deserialization_handler == DeserializationHandler::LogAndContinue;
        for (id, mut queues) in by_task {
            let Some(running) = self.tasks.get_mut(&id) else {
                continue;
            };
            let dropped_before = running.task.dropped_records();
            let mut next_offsets: Vec<Option<i64>> = vec![None; queues.len()];
            loop {
                let next = queues
                    .iter_mut()
                    .enumerate()
                    .filter(|(_, (_, q))| !q.is_empty())
                    .min_by_key(|(_, (_, q))| q.front().map(|r| r.timestamp));
                let Some((at, (_, queue))) = next else {
                    break;
                };
                let r = queue.pop_front().expect("non-empty");
                next_offsets[at] = Some(r.offset + 1);
                let raw = RawRecord {
                    topic: r.topic,
                    partition: r.partition,
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                };
                match running.task.process(raw) {
                    Ok(()) => {}
                    Err(e @ TaskError::Deserialization { .. }) if lenient => {
                        tracing::warn!(error = %e, "skipping a record that does not deserialize");
                        self.shared
                            .skipped_records
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            for ((tp, _), next) in queues.into_iter().zip(next_offsets) {
                if let Some(next) = next {
                    running.offsets.insert(tp, next);
                    self.dirty = true;
                }
            }
            self.shared.dropped_records.fetch_add(
                running.task.dropped_records() - dropped_before,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        self.send_outputs().await
    }

    /// Hands what the tasks wrote to the producer.
    async fn send_outputs(&mut self) -> Result<(), Fatal> {
        let outputs: Vec<OutputRecord> = self
            .tasks
            .values_mut()
            .flat_map(|r| r.task.take_output())
            .collect();
        if outputs.is_empty() {
            return Ok(());
        }
        if self.eos {
            if self.doomed.is_some() {
                // The transaction aborts at the next commit and its input is processed again.
                return Ok(());
            }
            self.begin_transaction()?;
        }
        for out in outputs {
            self.dirty = true;
            let mut record = ProducerRecord {
                topic: out.topic.clone(),
                key: out.key,
                value: out.value,
                headers: out.headers,
                timestamp: Some(out.timestamp.max(0)),
                partition: None,
            };
            record.partition = match out.partition {
                PartitionChoice::Default => None,
                PartitionChoice::Fixed(p) => Some(p),
                PartitionChoice::Custom(choose) => {
                    let cluster = self.producer.cluster();
                    let count = match cluster.partition_count(&record.topic) {
                        Some(count) => count,
                        None => cluster
                            .wait_for_topic(&record.topic, std::time::Duration::from_secs(60))
                            .await
                            .map_err(|e| format!("sink topic {}: {e}", record.topic))?
                            .partition_count(),
                    };
                    Some(choose(count as u32) as i32)
                }
            };
            if let Err(e) = self.producer.send_with_report(record, &self.report).await {
                if self.eos {
                    tracing::warn!(thread = self.index + 1, error = %e, "the transaction cannot take a record; it will be aborted");
                    self.doomed = Some(format!("writing to {}: {e}", out.topic));
                    return Ok(());
                }
                return Err(format!("writing to {}: {e}", out.topic));
            }
        }
        Ok(())
    }

    /// Waits until everything sent so far is acknowledged. A failed delivery is fatal: its input offsets must
    /// not be committed.
    async fn flush_outputs(&mut self) -> Result<(), Fatal> {
        self.producer.flush().await;
        if let Some(e) = self.report.error() {
            return Err(format!(
                "a record the application wrote was not acknowledged: {e}"
            ));
        }
        for (topic, partition, next) in self.report.take_next_offsets() {
            if topic.ends_with("-changelog") {
                let at = self
                    .acknowledged
                    .entry(TopicPartition::new(topic, partition))
                    .or_default();
                *at = (*at).max(next);
            }
        }
        Ok(())
    }

    /// Outputs acknowledged, stores flushed, then input offsets committed (at-least-once; exactly-once commits
    /// with [`commit_transaction`](Self::commit_transaction)).
    async fn commit(&mut self) -> Result<(), Fatal> {
        if self.eos {
            return self.commit_transaction().await;
        }
        if !self.dirty {
            return Ok(());
        }
        self.send_outputs().await?;
        self.flush_outputs().await?;
        let acknowledged = std::mem::take(&mut self.acknowledged);
        let mut offsets = BTreeMap::new();
        for running in self.tasks.values_mut() {
            running.task.flush().map_err(|e| e.to_string())?;
            let partition = running.task.id().partition;
            for (topic, end) in running.changelog_ends.iter_mut() {
                if let Some(&at) = acknowledged.get(&TopicPartition::new(topic.clone(), partition))
                {
                    *end = (*end).max(at);
                }
            }
            let metadata = serde_json::to_string(&CommitMetadata {
                stream_time: running.task.stream_time(),
                changelogs: running.changelog_ends.clone(),
            })
            .expect("commit metadata serializes");
            offsets.extend(running.offsets.iter().map(|(tp, o)| {
                (
                    tp.clone(),
                    OffsetAndMetadata {
                        offset: *o,
                        metadata: metadata.clone(),
                    },
                )
            }));
        }
        if offsets.is_empty() {
            self.dirty = false;
            return Ok(());
        }
        match self
            .consumer
            .commit_offsets_with_metadata_sync(&offsets)
            .await
        {
            Ok(()) => {
                self.dirty = false;
                self.failed_commits = 0;
            }
            // The group moved on (a rebalance): the partitions' next owner processes from the last commit.
            // Failing again and again is something else, and going on without commits would replay ever more.
            Err(e) => {
                self.failed_commits += 1;
                if self.failed_commits >= MAX_FAILED_COMMITS {
                    return Err(format!(
                        "{MAX_FAILED_COMMITS} commits in a row failed, the last: {e}"
                    ));
                }
                tracing::warn!(thread = self.index + 1, error = %e, "commit failed");
            }
        }
        Ok(())
    }

    /// Exactly-once: opens the thread's transaction if none is open.
    fn begin_transaction(&mut self) -> Result<(), Fatal> {
        if !self.in_transaction {
            self.producer
                .begin_transaction()
                .map_err(|e| format!("begin_transaction: {e}"))?;
            self.in_transaction = true;
        }
        Ok(())
    }

    /// Exactly-once commit: stores flushed, the input offsets (with the tasks' stream times) sent to the
    /// transaction, which then commits with every record the tasks wrote. On failure the transaction is aborted
    /// and the tasks are revived from their last commit.
    async fn commit_transaction(&mut self) -> Result<(), Fatal> {
        if !self.dirty {
            return Ok(());
        }
        self.send_outputs().await?;
        let mut offsets = BTreeMap::new();
        for running in self.tasks.values_mut() {
            running.task.flush().map_err(|e| e.to_string())?;
            let metadata = serde_json::to_string(&CommitMetadata {
                stream_time: running.task.stream_time(),
                changelogs: BTreeMap::new(),
            })
            .expect("commit metadata serializes");
            offsets.extend(running.offsets.iter().map(|(tp, o)| {
                (
                    tp.clone(),
                    OffsetAndMetadata {
                        offset: *o,
                        metadata: metadata.clone(),
                    },
                )
            }));
        }
        let result = match self.doomed.take() {
            Some(why) => Err(why),
            None => self.commit_offsets_and_records(&offsets).await,
        };
        match result {
            Ok(()) => {
                self.in_transaction = false;
                self.dirty = false;
                self.failed_commits = 0;
                // Acknowledged offsets are for at-least-once's restore limits; drop them.
                drop(self.report.take_next_offsets());
                Ok(())
            }
            Err(e) => {
                tracing::warn!(thread = self.index + 1, error = %e, "commit failed; aborting the transaction");
                self.abort_and_revive(e).await
            }
        }
    }

    async fn commit_offsets_and_records(
        &mut self,
        offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
    ) -> Result<(), String> {
        self.begin_transaction()?;
        if !offsets.is_empty() {
            let group = self
                .consumer
                .group_metadata()
                .map_err(|e| format!("group metadata: {e}"))?;
            self.producer
                .send_offsets_to_transaction(offsets, &group)
                .await
                .map_err(|e| format!("send_offsets_to_transaction: {e}"))?;
        }
        self.producer
            .commit_transaction()
            .await
            .map_err(|e| format!("commit_transaction: {e}"))
    }

    /// Aborts the open transaction and revives every task from its last commit: stores restored from the
    /// changelogs (read committed), inputs rewound to the committed offsets. A fenced producer is replaced.
    async fn abort_and_revive(&mut self, cause: String) -> Result<(), Fatal> {
        self.failed_commits += 1;
        if self.failed_commits >= MAX_FAILED_COMMITS {
            return Err(format!(
                "{MAX_FAILED_COMMITS} commits in a row failed, the last: {cause}"
            ));
        }
        if self.in_transaction && !self.producer.is_fenced() {
            if let Err(e) = self.producer.abort_transaction().await {
                if !self.producer.is_fenced() {
                    return Err(format!("abort_transaction after {cause}: {e}"));
                }
            }
        }
        self.in_transaction = false;
        self.doomed = None;
        if self.producer.is_fenced() {
            tracing::warn!(
                thread = self.index + 1,
                "the producer was fenced; starting a new one"
            );
            let fresh = new_producer(&self.shared, self.index).await?;
            std::mem::replace(&mut self.producer, fresh).close().await;
        }
        self.report = DeliveryReport::new();
        self.revivals += 1;
        if self.shared.closing() {
            // Closing: the tasks close unclean (dirty), and their next owner restores them.
            return Ok(());
        }
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for &id in &ids {
            self.close_task(id, false).await;
        }
        self.dirty = false;
        for id in ids {
            self.open_task(id).await?;
            self.rewind(id).await?;
        }
        Ok(())
    }

    /// Sets the consumer's positions of task `id`'s inputs back to its committed offsets (the beginning where
    /// none was committed: `auto.offset.reset=earliest`).
    async fn rewind(&mut self, id: TaskId) -> Result<(), Fatal> {
        let offsets = self
            .tasks
            .get(&id)
            .map(|r| r.offsets.clone())
            .unwrap_or_default();
        for tp in self.inputs_of(id) {
            let result = match offsets.get(&tp) {
                Some(&offset) => self.consumer.seek(&tp, offset),
                None => {
                    self.consumer
                        .seek_to_beginning(std::slice::from_ref(&tp))
                        .await
                }
            };
            result.map_err(|e| format!("rewinding {tp}: {e}"))?;
        }
        Ok(())
    }
}

/// The stream thread's producer: transactional under exactly-once (initialized, which fences an older producer
/// of the same thread and aborts the transaction it left open).
async fn new_producer(shared: &Shared, index: usize) -> Result<Producer, Fatal> {
    let config = &shared.config;
    let name = format!("{}-StreamThread-{}", config.client_id, index + 1);
    let mut pc = ProducerConfig::new(&config.bootstrap_servers);
    pc.client_id = format!("{name}-producer");
    pc.acks = Acks::All;
    // Kafka Streams' producer default: batches fill for up to 100 ms (commits flush them sooner).
    pc.linger = std::time::Duration::from_millis(100);
    if shared.process_id.is_some() {
        pc.transaction_timeout = EOS_TRANSACTION_TIMEOUT;
    }
    config
        .clients
        .apply_to_producer(&mut pc)
        .map_err(|e| format!("{name}: {e}"))?;
    if let Some(process_id) = &shared.process_id {
        pc.transactional_id = Some(format!(
            "{}-{process_id}-{}",
            config.application_id,
            index + 1
        ));
    }
    let producer = Producer::new(pc)
        .await
        .map_err(|e| format!("{name}: producer: {e}"))?;
    if shared.process_id.is_some() {
        producer
            .init_transactions()
            .await
            .map_err(|e| format!("{name}: init_transactions: {e}"))?;
    }
    Ok(producer)
}
