//! The global thread: fills every global store from all partitions of its topic (the topic is the store's
//! changelog), first up to the end offsets it finds at start (stream threads start only after this bootstrap, so
//! their first joins see the whole table), then keeps following the topic.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use strom_client::consumer::TopicPartition;
use tokio::sync::oneshot;

use super::Shared;
use crate::config::DeserializationHandler;
use crate::store::Store;
use crate::topology::GlobalStore;

pub(crate) async fn run(
    shared: Arc<Shared>,
    bootstrapped: oneshot::Sender<Result<(), String>>,
) -> Result<(), String> {
    let mut bootstrapped = Some(bootstrapped);
    let result = follow(&shared, &mut bootstrapped).await;
    if let (Err(e), Some(tx)) = (&result, bootstrapped.take()) {
        let _ = tx.send(Err(e.clone()));
    }
    result
}

async fn follow(
    shared: &Arc<Shared>,
    bootstrapped: &mut Option<oneshot::Sender<Result<(), String>>>,
) -> Result<(), String> {
    let config = &shared.config;
    let mut consumer = super::changelog_reader(
        config,
        crate::config::ConsumerKind::Global,
        format!("{}-GlobalStreamThread", config.client_id),
    )
    .await?;
    let mut stores: HashMap<String, (Arc<Store>, &GlobalStore)> = HashMap::new();
    let mut partitions = Vec::new();
    for global in shared.topology.global_stores() {
        let info = consumer
            .cluster()
            .wait_for_topic(&global.topic, Duration::from_secs(30))
            .await
            .map_err(|e| format!("global table topic {}: {e}", global.topic))?;
        for p in 0..info.partition_count() as i32 {
            partitions.push(TopicPartition::new(global.topic.clone(), p));
        }
        stores.insert(
            global.topic.clone(),
            (shared.globals[&global.spec.name].clone(), global),
        );
    }
    consumer
        .assign(partitions.clone())
        .await
        .map_err(|e| format!("global consumer: {e}"))?;
    consumer
        .seek_to_end(&partitions)
        .await
        .map_err(|e| format!("global consumer: {e}"))?;
    let ends: BTreeMap<TopicPartition, i64> = partitions
        .iter()
        .map(|tp| (tp.clone(), consumer.position(tp).unwrap_or(0)))
        .collect();
    consumer
        .seek_to_beginning(&partitions)
        .await
        .map_err(|e| format!("global consumer: {e}"))?;
    while !shared.closing() {
        if bootstrapped.is_some()
            && ends
                .iter()
                .all(|(tp, end)| consumer.position(tp).is_some_and(|p| p >= *end))
        {
            tracing::info!(stores = stores.len(), "global stores bootstrapped");
            if let Some(tx) = bootstrapped.take() {
                let _ = tx.send(Ok(()));
            }
        }
        let records = match consumer.poll(config.poll).await {
            Ok(records) => records,
            // A broker restarting or a leader moving: the global stores catch up once it is back.
            Err(e) if e.is_retriable() => {
                tracing::warn!(error = %e, "global poll failed; retrying");
                tokio::time::sleep(super::thread::RETRY_BACKOFF).await;
                continue;
            }
            Err(e) => return Err(format!("global consumer: {e}")),
        };
        for r in records {
            let Some((store, global)) = stores.get(&*r.topic) else {
                continue;
            };
            if let Err(e) = (global.check)(r.key.as_deref(), r.value.as_deref()) {
                let e = format!(
                    "global table record {}-{}@{} does not deserialize: {e}",
                    r.topic, r.partition, r.offset
                );
                match config.deserialization_handler {
                    DeserializationHandler::LogAndContinue => {
                        tracing::warn!(error = %e, "skipping a record that does not deserialize");
                        shared
                            .skipped_records
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        continue;
                    }
                    DeserializationHandler::LogAndFail => return Err(e),
                }
            }
            if let Some(key) = r.key {
                store.restore(key, r.value);
            }
        }
    }
    Ok(())
}
