//! A broker's life as the controller sees it: register (fenced), heartbeat until unfenced, heartbeat while
//! running, and on shutdown ask to be fenced first so leadership moves away before the process stops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use strom_metadata::{codes, ControllerReply, ControllerRequest, Endpoint};
use tokio::sync::watch;

use super::Cluster;

pub struct BrokerLifecycle {
    cluster: Arc<Cluster>,
    broker_id: i32,
    endpoint: Endpoint,
    rack: Option<String>,
    interval: Duration,
    incarnation_id: String,
    epoch: AtomicU64,
    /// When a refused registration was last logged.
    warned: parking_lot::Mutex<Option<std::time::Instant>>,
    /// Set once controlled shutdown begins: every heartbeat from then on asks to stay fenced.
    shutting_down: std::sync::atomic::AtomicBool,
    /// Whether this broker's previous life ended in a clean shutdown (told to the controller at registration).
    clean_shutdown: bool,
}

impl BrokerLifecycle {
    pub fn new(
        cluster: Arc<Cluster>,
        endpoint: Endpoint,
        rack: Option<String>,
        interval: Duration,
        clean_shutdown: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            broker_id: cluster.node_id,
            cluster,
            endpoint,
            rack,
            interval,
            incarnation_id: uuid::Uuid::new_v4().to_string(),
            epoch: AtomicU64::new(0),
            warned: parking_lot::Mutex::new(None),
            shutting_down: std::sync::atomic::AtomicBool::new(false),
            clean_shutdown,
        })
    }

    /// Registers and heartbeats until the controller unfences this broker, so that the broker is listed in
    /// Metadata and can lead partitions when it says it is ready. Waits as long as it takes a quorum to exist.
    pub async fn join(&self, shutdown: &mut watch::Receiver<bool>) -> bool {
        loop {
            if *shutdown.borrow() {
                return false;
            }
            match self.heartbeat(false).await {
                Some(ControllerReply::Heartbeat { fenced: false, .. }) => return true,
                _ => {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                        _ = shutdown.changed() => return false,
                    }
                }
            }
        }
    }

    /// Heartbeats every `broker.heartbeat.interval.ms` until shutdown.
    pub fn spawn(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(me.interval) => {}
                    _ = shutdown.changed() => return,
                }
                me.heartbeat(false).await;
            }
        });
    }

    /// Controlled shutdown: asks to be fenced (moving leadership off this broker) and waits, boundedly, for
    /// the controller to confirm.
    pub async fn shut_down(&self) {
        // The periodic heartbeat must not undo the fence by asking to be unfenced in the meantime.
        self.shutting_down.store(true, Ordering::Release);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            if let Some(ControllerReply::Heartbeat {
                shutdown_ready: true,
                ..
            }) = self.heartbeat(true).await
            {
                tracing::info!(
                    "controlled shutdown: the controller moved leadership off this broker"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::warn!("controlled shutdown: no answer from the controller; stopping anyway");
    }

    async fn heartbeat(&self, want_shutdown: bool) -> Option<ControllerReply> {
        let want_shutdown = want_shutdown || self.shutting_down.load(Ordering::Acquire);
        let mut epoch = self.epoch.load(Ordering::Acquire);
        if epoch == 0 {
            epoch = self.register().await?;
        }
        let request = ControllerRequest::Heartbeat {
            broker_id: self.broker_id,
            broker_epoch: epoch,
            applied_index: self.cluster.image().applied_index,
            want_shutdown,
        };
        match self.cluster.request(request, self.timeout()).await {
            Ok((reply, _)) => Some(reply),
            Err(e) if e.code == codes::STALE_BROKER_EPOCH => {
                tracing::info!(
                    "the controller no longer knows this broker's epoch; registering again"
                );
                self.epoch.store(0, Ordering::Release);
                None
            }
            Err(e) => {
                tracing::debug!(error = %e, "heartbeat failed");
                None
            }
        }
    }

    async fn register(&self) -> Option<u64> {
        let request = ControllerRequest::RegisterBroker {
            broker_id: self.broker_id,
            incarnation_id: self.incarnation_id.clone(),
            endpoint: self.endpoint.clone(),
            rack: self.rack.clone(),
            clean_shutdown: self.clean_shutdown,
        };
        match self.cluster.request(request, self.timeout()).await {
            Ok((_, index)) => {
                tracing::info!(broker_epoch = index, "registered with the controller");
                self.epoch.store(index, Ordering::Release);
                Some(index)
            }
            Err(e) if e.code == codes::DUPLICATE_BROKER_REGISTRATION => {
                let mut warned = self.warned.lock();
                if warned.is_none_or(|at| at.elapsed() > Duration::from_secs(5)) {
                    tracing::error!(
                        "the controller refuses this broker's registration: {}",
                        e.message
                    );
                    *warned = Some(std::time::Instant::now());
                }
                None
            }
            Err(e) => {
                tracing::debug!(error = %e, "registration failed");
                None
            }
        }
    }

    fn timeout(&self) -> Duration {
        self.interval.max(Duration::from_secs(2))
    }
}
